/*
 * Private to the queue state machine (queue.c, queue_replay.c): the state itself and the job
 * transitions that both client operations and replay use. Nothing outside those files may
 * include it.
 */
#ifndef SPOOL_SRC_QUEUE_INTERNAL_H
#define SPOOL_SRC_QUEUE_INTERNAL_H

#include "job_pool.h"
#include "jobtab.h"
#include "queue.h"

/* An idempotency key seen within the window. Owns its key bytes. */
struct idem {
    char *key;
    uint32_t key_len;
    uint64_t job_id;
    int64_t created_ms;
    struct list_link order; /* oldest first */
};

struct queue_state {
    struct queue_config config;
    struct jobtab jobs;     /* id -> job (live and remembered DONE) */
    struct strmap queues;   /* name -> queue */
    struct strmap keys;     /* idempotency key -> idem */
    struct list_link idem_order;
    struct heap delay_heap; /* DELAYED jobs by run-at (timer_slot) */
    struct heap lease_heap; /* RESERVED jobs by deadline (timer_slot) */
    struct heap ttl_heap;   /* jobs with a ttl by expiry (ttl_slot) */
    struct heap reserver_timeouts;
    struct heap waiter_timeouts;
    struct list_link pending; /* PENDING jobs in seq order */
    struct list_link done;    /* DONE jobs, oldest first */
    uint64_t done_count;
    uint64_t done_bytes; /* result bytes held by DONE jobs */
    struct list_link to_serve; /* queues that gained ready jobs while reservers wait */
    struct idmap segments;     /* segment id -> live job count (as uintptr_t) */
    uint64_t segment_cache_id; /* a count change not yet in segments (segment_add) */
    int64_t segment_cache_delta;
    uint64_t next_id;
    uint64_t lease_counter;
    /* The queue the last lookup by name found: a producer's puts name the same queue over and
     * over, and this skips the name's validation and hashing for them (queues are never
     * freed before the state, so the pointer stays valid). */
    struct queue *last_queue;
    /* Where records are encoded before the emit copies them into the log: grown to the
     * largest record seen (a PUT of the largest body), reused, freed with the state. */
    uint8_t *record_buf;
    size_t record_buf_cap;
    struct checkpoint_walk *walk; /* a checkpoint being taken, or NULL */
    uint32_t checkpoint_epoch;    /* of the last walk begun */
    bool replaying;
    struct queue_totals totals;
    struct job_pool pool; /* every job's block (with its inline body): see job_pool.h */
};

/* A new PENDING job with its body (copied, inline when small), or, without body_known, one
 * whose body is not loaded yet (body NULL; the caller sets body_len). */
struct job *queue_job_new(struct queue_state *state, struct queue *queue, uint64_t id,
                          const void *body, uint32_t body_len, bool body_known);
/* Count a new job's body bytes, its segment and the queue's total_put (pos, body_len set). */
void queue_job_account(struct queue_state *state, struct job *job);
void queue_job_enter_ready(struct queue_state *state, struct job *job, int64_t now_ms);
void queue_job_enter_delayed(struct queue_state *state, struct job *job, int64_t run_at_ms);
void queue_job_enter_dead(struct queue_state *state, struct job *job, const char *reason,
                          uint32_t reason_len, int64_t now_ms);
/* Leave the containers of the current state (the job stays live). */
void queue_job_leave(struct queue_state *state, struct job *job);
/* Gone for good (delete, ttl, purge): free it and wake its waiters with found = false. */
void queue_job_remove(struct queue_state *state, struct job *job);
void queue_job_done(struct queue_state *state, struct job *job, const void *result,
                    uint32_t result_len, int64_t now_ms);
/* Make a visible state for a job read from the log or a checkpoint. */
void queue_job_place(struct queue_state *state, struct job *job, int64_t now_ms);
void queue_idem_add(struct queue_state *state, const char *key, uint32_t key_len,
                    uint64_t job_id, int64_t created_ms);
void queue_apply_meta(struct queue *queue, const struct record_meta *meta);
void queue_purge_apply(struct queue_state *state, struct queue *queue);
void queue_serve(struct queue_state *state, int64_t now_ms);
/* Timers (queue_timer.c) call these transitions of queue.c. */
void queue_lease_expire(struct queue_state *state, struct job *job, int64_t now_ms);
/* TTL ran out for a job not reserved: gone once its DELETE is logged. False when the emit
 * was refused (back pressure, a full disk): the job is untouched, still due. */
bool queue_ttl_expire(struct queue_state *state, struct job *job);
/* The job settled (DONE, DEAD) or is gone (found false): wake every waiter on it. */
void queue_notify_waiters(struct queue_state *state, struct job *job, bool found);
/* While a checkpoint walk runs: capture a job as it is now, before it changes, if the walk
 * wants it and has not captured it yet; and keep the walk's cursor off a job that leaves its
 * queue's live list. */
void queue_checkpoint_capture(struct queue_state *state, struct job *job);
void queue_checkpoint_unlink(struct queue_state *state, struct job *job);

#endif
