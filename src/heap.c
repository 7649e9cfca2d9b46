/*
 * Binary heap (see heap.h). Sift loops are iterative and bounded by the heap's depth.
 */
#include "heap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_fail.h"
#include "assert.h"

static uint32_t *slot(const struct heap *heap, const void *item)
{
    return (uint32_t *)(void *)((char *)(uintptr_t)item + heap->index_offset);
}

static void place(struct heap *heap, uint32_t index, void *item)
{
    heap->items[index] = item;
    *slot(heap, item) = index;
}

static void sift_up(struct heap *heap, uint32_t index)
{
    void *item = heap->items[index];
    while (index > 0) {
        uint32_t parent = (index - 1) / 2;
        if (!heap->less(item, heap->items[parent]))
            break;
        place(heap, index, heap->items[parent]);
        index = parent;
    }
    place(heap, index, item);
}

/* The smaller of index's children, or heap->count when it has none. */
static uint32_t smaller_child(const struct heap *heap, uint32_t index)
{
    uint32_t child = 2 * index + 1;
    if (child >= heap->count)
        return heap->count;
    if (child + 1 < heap->count && heap->less(heap->items[child + 1], heap->items[child]))
        child++;
    return child;
}

static void sift_down(struct heap *heap, uint32_t index)
{
    void *item = heap->items[index];
    for (;;) {
        uint32_t child = smaller_child(heap, index);
        if (child == heap->count || !heap->less(heap->items[child], item))
            break;
        place(heap, index, heap->items[child]);
        index = child;
    }
    place(heap, index, item);
}

void heap_init(struct heap *heap, bool (*less)(const void *a, const void *b), size_t index_offset)
{
    heap->items = NULL;
    heap->count = 0;
    heap->capacity = 0;
    heap->less = less;
    heap->index_offset = index_offset;
}

void heap_free(struct heap *heap)
{
    free(heap->items);
    heap->items = NULL;
    heap->count = 0;
    heap->capacity = 0;
}

bool heap_contains(const struct heap *heap, const void *item)
{
    uint32_t index = *slot(heap, item);
    return index < heap->count && heap->items[index] == item;
}

int heap_room(struct heap *heap, uint64_t total)
{
    if (total <= heap->count)
        return 0;
    if (total - heap->count > UINT32_MAX)
        return -ENOMEM;
    return heap_reserve(heap, (uint32_t)(total - heap->count));
}

int heap_reserve(struct heap *heap, uint32_t extra)
{
    if (heap->capacity - heap->count >= extra)
        return 0;
    uint64_t need = (uint64_t)heap->count + extra;
    if (need >= HEAP_NONE)
        return -ENOMEM; /* slots are uint32_t, HEAP_NONE excluded */
    uint64_t capacity = heap->capacity == 0 ? 64 : heap->capacity;
    while (capacity < need)
        capacity *= 2; /* doubling: amortized O(1) pushes */
    if (capacity >= HEAP_NONE)
        capacity = HEAP_NONE - 1;
    if (alloc_fail_now())
        return -ENOMEM;
    /* Not realloc: it would copy the whole old capacity, making room that was reserved but
     * never used resident (the lease heap keeps room for every live job: 8 bytes a job of
     * address space, which must stay address space). Only the items are copied. */
    void **items = malloc((size_t)capacity * sizeof(*items));
    if (items == NULL)
        return -ENOMEM;
    if (heap->count > 0)
        memcpy(items, heap->items, (size_t)heap->count * sizeof(*items));
    free(heap->items);
    heap->items = items;
    heap->capacity = (uint32_t)capacity;
    SPOOL_ASSERT(heap->capacity - heap->count >= extra);
    return 0;
}

void heap_push(struct heap *heap, void *item)
{
    SPOOL_ASSERT(*slot(heap, item) == HEAP_NONE);
    if (heap->count == heap->capacity) {
        int rc = heap_reserve(heap, 1);
        SPOOL_ASSERT(rc == 0); /* out of memory where nothing was reserved */
    }
    heap->items[heap->count] = item;
    *slot(heap, item) = heap->count;
    heap->count++;
    sift_up(heap, heap->count - 1);
}

/* Fill the hole at index with item, known not to be less than the hole's parent. The item
 * comes from the heap's end, so it is usually among the largest (a deadline set later, a job
 * put later) and sinks to the bottom: the hole walks down along the smaller children first,
 * one comparison per level instead of sift_down's two, and the item then rises from the
 * bottom, rarely more than a step (Floyd). It stops at index at the latest: not less than
 * the parent there. */
static void sift_hole(struct heap *heap, uint32_t index, void *item)
{
    for (uint32_t child; (child = smaller_child(heap, index)) != heap->count; index = child)
        place(heap, index, heap->items[child]);
    heap->items[index] = item;
    sift_up(heap, index);
}

void heap_remove(struct heap *heap, void *item)
{
    SPOOL_ASSERT(heap_contains(heap, item));
    uint32_t index = *slot(heap, item);
    heap->count--;
    if (index != heap->count) {
        void *last = heap->items[heap->count];
        if (index > 0 && heap->less(last, heap->items[(index - 1) / 2])) {
            place(heap, index, last);
            sift_up(heap, index);
        } else {
            sift_hole(heap, index, last);
        }
    }
    *slot(heap, item) = HEAP_NONE;
}

void heap_fix(struct heap *heap, void *item)
{
    SPOOL_ASSERT(heap_contains(heap, item));
    uint32_t index = *slot(heap, item);
    if (index > 0 && heap->less(item, heap->items[(index - 1) / 2]))
        sift_up(heap, index);
    else
        sift_down(heap, index);
}
