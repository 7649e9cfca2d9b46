/*
 * One queue's numbers in an HTTP snapshot (observe.h), and the copy that skips a queue whose
 * numbers have not changed since the entry was last written.
 *
 * Snapshots recycle their arrays (observe.c): the entry a walk is about to write usually holds
 * what the same queue looked like one or two snapshots ago. An entry is self-describing (the
 * queue's name and its change key), so it can be kept whenever both still match the queue,
 * whichever snapshot wrote it; only the ready age, which moves with the clock, is refreshed.
 */
#ifndef SPOOL_SNAP_QUEUE_H
#define SPOOL_SNAP_QUEUE_H

#include <stdbool.h>

#include "queue.h"

/* What changes whenever anything an entry shows changes. Every event on a queue either moves
 * a monotonic counter (puts, deliveries, acks, ..., total_put) or moves a job between states
 * without one (delayed to ready: the counts change and never come back without a counter
 * moving); the histograms only grow with deliveries and acks; pause, bytes and the
 * remembered done jobs are compared as they are. */
struct snap_queue_key {
    uint64_t ready, delayed, reserved, dead, pending, total_put, bytes, expired, settled;
    uint64_t puts, deliveries, acks, releases, buries, lease_expiries, dead_lettered;
    uint64_t expired_total, kicked, deleted;
    uint64_t name_len, paused; /* 64 bits: no padding, keys are compared with memcmp */
};

struct snap_queue {
    char name[LIMIT_QUEUE_NAME_MAX_BYTES + 1];
    struct queue_stats stats;
    struct queue_metrics metrics;
    struct snap_queue_key key;  /* the queue's, when this entry was written */
    int64_t oldest_ready_since_ns; /* the oldest ready job's (monotonic clock) */
};

/* Make q show queue as of now: copied in full, or (when q already held this queue's numbers,
 * unchanged since) only its ready age refreshed. Returns true when it copied. q must hold
 * either a whole earlier entry or zeros. */
bool snap_queue_fill(struct snap_queue *q, const struct queue *queue, struct queue_time now);

/* Keep the first entry of each name in qs[0..n), in their order (a walk over several turns
 * may, in a rare table reshuffle, visit a queue twice, or see one forgotten and made again);
 * returns how many are left, or -ENOMEM. Linear: a hash table of the names under a key drawn
 * at random once per process (names are chosen by clients: no crafted set of names can make
 * the probe runs long), not a sort by name. */
SPOOL_MUST_USE int64_t snap_queue_unique(const struct snap_queue **qs, uint32_t n);

/* Move the k entries of qs[0..n) whose names sort first to qs[0..k), in name order, and the
 * others to qs[k..n) in no particular order (what /metrics labels and what it folds); returns
 * min(n, k). About n comparisons against the largest name kept, plus k log k: with 10,000
 * queues and k = 200 a tenth of sorting them all. */
uint32_t snap_queue_select_first(const struct snap_queue **qs, uint32_t n, uint32_t k);

#endif
