/*
 * Runs in front of a binary heap (see runheap.h).
 */
#include "runheap.h"

#include "assert.h"

static struct list_link *link_of(const struct runheap *rh, const void *item)
{
    return (struct list_link *)(void *)((char *)(uintptr_t)item + rh->link_offset);
}

static void *item_of(const struct runheap *rh, const struct list_link *link)
{
    return (char *)(uintptr_t)link - rh->link_offset;
}

void runheap_init(struct runheap *rh, bool (*less)(const void *a, const void *b),
                  size_t index_offset, size_t link_offset)
{
    heap_init(&rh->heap, less, index_offset);
    for (int i = 0; i < RUNHEAP_RUNS; i++)
        list_init(&rh->runs[i]);
    rh->link_offset = link_offset;
    rh->count = 0;
}

void runheap_free(struct runheap *rh)
{
    heap_free(&rh->heap);
    for (int i = 0; i < RUNHEAP_RUNS; i++)
        list_init(&rh->runs[i]);
    rh->count = 0;
}

int runheap_reserve(struct runheap *rh, uint32_t extra)
{
    return heap_reserve(&rh->heap, extra);
}

int runheap_room(struct runheap *rh, uint64_t total)
{
    return heap_room(&rh->heap, total);
}

/* The run whose last element is the greatest not above item (the tightest fit, so that runs
 * with room for smaller keys stay free for them), else an empty run, else -1: the heap. */
static int run_for(const struct runheap *rh, const void *item)
{
    int fit = -1, empty = -1;
    const void *fit_last = NULL;
    for (int i = 0; i < RUNHEAP_RUNS; i++) {
        if (list_empty(&rh->runs[i])) {
            if (empty < 0)
                empty = i;
            continue;
        }
        const void *last = item_of(rh, rh->runs[i].prev);
        if (rh->heap.less(item, last))
            continue;
        if (fit < 0 || rh->heap.less(fit_last, last)) {
            fit = i;
            fit_last = last;
        }
    }
    return fit >= 0 ? fit : empty;
}

void runheap_push(struct runheap *rh, void *item)
{
    struct list_link *link = link_of(rh, item);
    SPOOL_ASSERT(!list_linked(link));
    int run = run_for(rh, item);
    if (run >= 0)
        list_insert_tail(&rh->runs[run], link);
    else
        heap_push(&rh->heap, item);
    rh->count++;
}

void runheap_remove(struct runheap *rh, void *item)
{
    struct list_link *link = link_of(rh, item);
    SPOOL_ASSERT(rh->count > 0);
    if (list_linked(link))
        list_unlink(link);
    else
        heap_remove(&rh->heap, item);
    rh->count--;
}

void runheap_fix(struct runheap *rh, void *item)
{
    runheap_remove(rh, item);
    runheap_push(rh, item);
}

void *runheap_top(const struct runheap *rh)
{
    void *top = heap_top(&rh->heap);
    for (int i = 0; i < RUNHEAP_RUNS; i++) {
        if (list_empty(&rh->runs[i]))
            continue;
        void *first = item_of(rh, rh->runs[i].next);
        if (top == NULL || rh->heap.less(first, top))
            top = first;
    }
    return top;
}
