/*
 * A binary min-heap of pointers that tracks each element's slot inside the element (at
 * index_offset, a uint32_t), so any element can be removed or re-keyed in O(log n) without a
 * search. The broker keeps several: ready jobs by (priority, id), delayed jobs by run-at,
 * reserved jobs by lease deadline, jobs by ttl expiry, blocked clients by timeout. An element
 * in no heap holds HEAP_NONE in its slot.
 */
#ifndef SPOOL_SRC_HEAP_H
#define SPOOL_SRC_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HEAP_NONE UINT32_MAX

struct heap {
    void **items;
    uint32_t count;
    uint32_t capacity;
    bool (*less)(const void *a, const void *b);
    size_t index_offset; /* offsetof(element, its uint32_t slot) */
};

void heap_init(struct heap *heap, bool (*less)(const void *a, const void *b),
               size_t index_offset);
void heap_free(struct heap *heap);
/* Room for extra more items without allocating: 0, or -ENOMEM (nothing changed). The put path
 * reserves before it logs, so that a put the memory cannot hold is refused, not aborted. */
int heap_reserve(struct heap *heap, uint32_t extra) __attribute__((warn_unused_result));
/* Room for total items in all, those it holds included: heap_reserve by the difference. */
int heap_room(struct heap *heap, uint64_t total) __attribute__((warn_unused_result));
/* Out of memory aborts: callers that cannot fail reserve first (heap_reserve). */
void heap_push(struct heap *heap, void *item);
void heap_remove(struct heap *heap, void *item);
/* Restore order after the item's key changed. */
void heap_fix(struct heap *heap, void *item);
bool heap_contains(const struct heap *heap, const void *item);

static inline void *heap_top(const struct heap *heap)
{
    return heap->count > 0 ? heap->items[0] : NULL;
}

#endif
