/*
 * Reading job bodies back from the log for a delivery (RESERVE, PEEK) whose jobs' bodies are
 * not in the body cache (body_cache.h).
 *
 * A fetch copies the bodies it needs: the cached ones at once (an eviction meanwhile must not
 * take them away), the others from reads of their batches. Reads are per batch, not per job:
 * every job of every fetch that needs a batch waits on one log_read_batch of it (one read, one
 * hash check, one decompression), and every other live job of that batch whose body is not
 * cached gets it cached on the way (a FIFO backlog is delivered in the order it was put, so
 * the rest of the batch is what the next reserves want). At most LOG_READS_MAX reads are in
 * flight (the log's read slots); the others wait in order and go when a slot frees. A read of
 * a record the log cannot hand out yet (-EAGAIN: written, not yet synced) waits for the next
 * loop turn.
 *
 * When every body of a fetch has arrived, its done callback runs (from a completion, or from
 * body_fetch_pump: never inside body_fetch_start). The state may have moved on meanwhile (the
 * connection closed, a lease expired, the job was deleted): the callback looks each job up by
 * id again and decides. An error (a read error, a batch that does not verify, a record that is
 * not the job's PUT) is in fetch->error with the job it concerns; the callback reports it.
 *
 * Memory: a fetch holds copies of at most one reply frame of bodies; connections bound their
 * fetches with their blocked requests (CONN_BLOCKED_MAX).
 */
#ifndef SPOOL_SRC_BODY_FETCH_H
#define SPOOL_SRC_BODY_FETCH_H

#include <stdbool.h>
#include <stdint.h>

#include "log.h"
#include "queue.h"

struct server;
struct body_fetch;
typedef void (*body_fetch_done_fn)(struct server *server, struct body_fetch *fetch);

struct body_fetch_job {
    uint64_t id;
    uint64_t lease_token; /* the lease at the start (0 when not reserved): the reply checks it */
    struct log_pos pos;   /* of the job's PUT */
    uint32_t len;
    uint8_t *body; /* the copy (malloc'ed, freed with the fetch); NULL until it arrives */
};

struct body_fetch {
    body_fetch_done_fn done;
    uint64_t conn_id;
    uint64_t request_id;
    uint16_t opcode;
    int error;               /* 0, or the first error: then error_job says which job */
    uint32_t error_job;
    uint32_t missing;        /* bodies still to arrive (or to fail) */
    uint32_t count;
    struct body_fetch_job jobs[];
};

struct body_fetcher;

/* The server's fetcher (server.c creates it after recovery; NULL: -ENOMEM). */
struct body_fetcher *body_fetcher_create(struct server *server);
/* The server goes away (its connections first): reads still in flight end without calling
 * their fetches' done, and no new read is issued. Then the log closes (waiting for those
 * reads), then body_fetcher_destroy. */
void body_fetcher_close(struct body_fetcher *fetcher);
void body_fetcher_destroy(struct body_fetcher *fetcher);

/* True if some job's body is not cached: the reply must wait for a fetch. */
bool body_fetch_needed(struct job *const *jobs, uint32_t count);

/* Fetch the bodies of jobs (all live) and call done when they are in. 0, or -ENOMEM (nothing
 * started). The fetch belongs to the fetcher until done returns. */
SPOOL_MUST_USE int body_fetch_start(struct body_fetcher *fetcher, struct job *const *jobs,
                                    uint32_t count, body_fetch_done_fn done, uint64_t conn_id,
                                    uint64_t request_id, uint16_t opcode);

/* Issue waiting reads as slots free (the server calls it every loop turn). */
void body_fetch_pump(struct body_fetcher *fetcher);

/* No fetch in progress (shutdown waits for this). */
bool body_fetch_idle(const struct body_fetcher *fetcher);

/* A fetch failed (fetch->error): log it, and unless it is only out of memory (-ENOMEM: a
 * warning; the job's lease runs out as usual), begin the server's stop with an error exit. A
 * read error or a batch that does not verify is damage under an acknowledged job: like
 * recovery (FORMAT.md) the server does not go on past it, and the job stays in the log (never
 * dropped) for `spool-log verify` to report. The caller answers its request (INTERNAL, or its
 * protocol's word for it). */
void body_fetch_fail_stop(struct server *server, const struct body_fetch *fetch);

struct body_fetch_stats {
    uint64_t fetches;      /* deliveries that waited for bodies */
    uint64_t batch_reads;  /* batches read back */
    uint64_t bodies_read;  /* bodies those reads cached or handed out */
    uint64_t errors;
    uint64_t prefetch_reads; /* batch reads planned by read-ahead (body_prefetch.h) */
    uint32_t prefetch_inflight; /* of those, not yet done */
};
void body_fetch_stats_get(const struct body_fetcher *fetcher, struct body_fetch_stats *out);

#endif
