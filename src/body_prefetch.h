/*
 * body_prefetch: which batches to read ahead of a drain from the log (the policy; body_fetch.c
 * issues the reads).
 *
 * After a restart no body is cached, and a drain reads every batch back when a delivery asks
 * for it: one read at a time, each waiting for the disk when the page cache is cold. Read-ahead
 * walks the queue's ready jobs from its head (queue_ready_first/next: the heap's top, then the
 * queue's next READY jobs in id order, within one priority the order the ready heap
 * delivers), and plans reads of the batches that hold the next bodies not cached, so that
 * they are in the body cache before they are asked for. A read brings every
 * live body of its batch into the cache (body_fetch.c).
 *
 * The window. Read-ahead covers only the next BODY_PREFETCH_WALK_MAX jobs and at most
 * BODY_PREFETCH_AHEAD_BYTES_MAX of them: enough to hide the disk's latency, and small, because
 * reading further ahead only fills the cache with bodies that wait. (Measured: reading half a
 * 5 GiB cache ahead of a drain of 4 KiB bodies made it 2.5 times slower, the allocator
 * searching its free lists among hundreds of MiB of bodies freed out of order.)
 *
 * Bounds. Reads in flight for read-ahead are at most BODY_PREFETCH_READS_MAX and their
 * estimated bytes at most BODY_PREFETCH_INFLIGHT_BYTES_MAX; the cache with what is in flight
 * stays within 1/BODY_PREFETCH_CACHE_SHARE of its bound (the rest is for puts: a read-ahead
 * that filled the cache would evict the oldest bodies, the very ones a FIFO drain wants
 * first). Read-ahead bodies are ordinary cache entries: evictable, dropped on ack. A batch
 * already being read, or already planned, is never planned again. The walk stops at the first
 * batch that does not fit, and batches are planned in the order they are wanted.
 *
 * A batch's bytes are estimated from the jobs seen in the walk (body length plus
 * BODY_PREFETCH_RECORD_BYTES each): jobs of other queues in the same batch are not counted,
 * an underestimate the share of the cache left for puts absorbs.
 */
#ifndef SPOOL_SRC_BODY_PREFETCH_H
#define SPOOL_SRC_BODY_PREFETCH_H

#include <stdbool.h>
#include <stdint.h>

#include "log.h"
#include "queue.h"

/* A few MiB in flight keep the disk busy: this machine's virtio disk reads 128 KiB in about
 * 150 us (850 MB/s), so 4 MiB is ~5 ms of reading, many times its latency, and a small part of
 * the default 256 MiB cache. */
#define BODY_PREFETCH_INFLIGHT_BYTES_MAX (4u * 1024 * 1024)
/* A quarter of the log's LOG_READS_MAX (64) read slots: deliveries that miss keep the rest. */
#define BODY_PREFETCH_READS_MAX 16
/* The window in jobs, which is also the jobs visited per walk: a walk runs on the loop, and
 * 4096 visits cost ~50 us at worst; at 300,000 deliveries a second that is 13 ms of drain
 * ahead, and a batch of 100-byte puts holds ~1000 jobs, so the window spans a few batches. */
#define BODY_PREFETCH_WALK_MAX 4096
/* Job-table ids a walk may look at to find those jobs (queue_ready_next): a queue interleaved
 * with others costs the walk the ids between its jobs, and this bounds that to ~100 us of
 * lookups on the loop (a walk then ends early, which read-ahead tolerates). */
#define BODY_PREFETCH_SCAN_IDS_MAX (4u * BODY_PREFETCH_WALK_MAX)
/* The window in bytes: 16 MiB is ~20 ms of this disk (850 MB/s) and of a drain of 4 KiB bodies
 * at 200,000 a second: more than a read's latency, little of the cache. */
#define BODY_PREFETCH_AHEAD_BYTES_MAX (16u * 1024 * 1024)
/* Read-ahead fills at most half the cache (with what is in flight). */
#define BODY_PREFETCH_CACHE_SHARE 2
/* What a body costs beyond its bytes: its record's header in the batch and its cache entry
 * (body_cache.h: a 32-byte header and the allocator's 16). */
#define BODY_PREFETCH_RECORD_BYTES 64

struct body_prefetch_budget {
    uint64_t bytes; /* that may still be read ahead */
    uint32_t reads; /* that may still be issued */
};

/* The budget left: reads and estimated bytes in flight for read-ahead, and the body cache's
 * bytes and bound (0: unbounded). */
void body_prefetch_budget_get(struct body_prefetch_budget *out, uint64_t inflight_bytes,
                              uint32_t inflight_reads, uint64_t cache_bytes,
                              uint64_t cache_bytes_max);

struct body_prefetch_batch {
    struct log_pos pos; /* of the first job seen of it (segment_id, batch_offset name it) */
    uint64_t bytes;     /* estimated */
};

enum body_prefetch_stop {
    BODY_PREFETCH_END,    /* the ready order ended inside the window */
    BODY_PREFETCH_WINDOW, /* the window is covered (cached, being read, or planned) */
    BODY_PREFETCH_BUDGET, /* the next batch does not fit the budget (resume_bytes) */
};

struct body_prefetch_plan {
    struct body_prefetch_batch batches[BODY_PREFETCH_READS_MAX];
    uint32_t count;
    enum body_prefetch_stop stop;
    uint32_t visited;      /* jobs walked */
    struct job *resume;    /* the first job not covered (NULL with BODY_PREFETCH_END) */
    uint64_t resume_bytes; /* BODY_PREFETCH_BUDGET: the estimate that did not fit */
};

/* A read of the batch at pos is issued or waiting already. */
typedef bool (*body_prefetch_reading_fn)(void *ctx, const struct log_pos *pos);
/* The READY job delivered after job, as far as can be guessed (queue_ready_next); NULL: end. */
typedef struct job *(*body_prefetch_next_fn)(void *ctx, const struct job *job);

/* Walk the ready order from first (READY, or NULL: the queue's head, for the window to mean
 * what it says) and plan the reads of the batches of the bodies not cached, within the window
 * and the budget. */
void body_prefetch_plan(struct body_prefetch_plan *plan, const struct body_prefetch_budget *budget,
                        struct job *first, body_prefetch_next_fn next,
                        body_prefetch_reading_fn reading, void *ctx);

static inline bool body_prefetch_same_batch(const struct log_pos *a, const struct log_pos *b)
{
    return a->segment_id == b->segment_id && a->batch_offset == b->batch_offset;
}

#endif
