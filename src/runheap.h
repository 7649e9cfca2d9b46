/*
 * A min-heap for keys that mostly arrive in order: lease deadlines. Most leases of a broker
 * share one ttr, so each new deadline is the largest yet, and the oldest lease is the one
 * acked first. A binary heap pays O(log n) for each removal there, over cold elements. Here
 * up to RUNHEAP_RUNS sorted lists ("runs", as in patience sorting) take the elements that
 * arrive in order, appended and unlinked in O(1); an element that fits no run (its key is
 * less than every run's last) goes to an ordinary heap. The minimum is the least of the
 * runs' first elements and the heap's top, so a few ttrs in use stay O(1) and any order of
 * keys stays correct, at worst at the heap's cost plus RUNHEAP_RUNS comparisons a push or top.
 *
 * An element carries a list link (at link_offset) and a heap slot (the heap's index_offset):
 * in a run, its link is linked and its slot is HEAP_NONE; in the heap, the reverse; in
 * neither, both rest (a link pointing at itself, HEAP_NONE).
 */
#ifndef SPOOL_SRC_RUNHEAP_H
#define SPOOL_SRC_RUNHEAP_H

#include "heap.h"
#include "list.h"

#define RUNHEAP_RUNS 4

struct runheap {
    struct heap heap;                    /* what fits no run */
    struct list_link runs[RUNHEAP_RUNS]; /* each sorted by less, least first */
    size_t link_offset;                  /* offsetof(element, its struct list_link) */
    uint32_t count;                      /* in the runs and the heap */
};

void runheap_init(struct runheap *rh, bool (*less)(const void *a, const void *b),
                  size_t index_offset, size_t link_offset);
void runheap_free(struct runheap *rh);
/* Room for extra more items without allocating (they may all go to the heap): 0 or -ENOMEM. */
int runheap_reserve(struct runheap *rh, uint32_t extra) __attribute__((warn_unused_result));
/* Room for total items in all, in the runs and the heap, however they are spread: any of them
 * may go to the heap, so the heap gets room for all. */
int runheap_room(struct runheap *rh, uint64_t total) __attribute__((warn_unused_result));
/* Out of memory aborts, as heap_push: callers that cannot fail reserve first. */
void runheap_push(struct runheap *rh, void *item);
void runheap_remove(struct runheap *rh, void *item);
/* Restore order after the item's key changed. */
void runheap_fix(struct runheap *rh, void *item);
void *runheap_top(const struct runheap *rh);

#endif
