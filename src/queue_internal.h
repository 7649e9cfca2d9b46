/*
 * Private to the queue state machine (queue*.c): the state itself and the job
 * transitions that both client operations and replay use. Nothing outside those files may
 * include it.
 */
#ifndef SPOOL_SRC_QUEUE_INTERNAL_H
#define SPOOL_SRC_QUEUE_INTERNAL_H

#include "body_cache.h"
#include "job_pool.h"
#include "jobtab.h"
#include "queue.h"
#include "runheap.h"

/* An idempotency key seen within the window, scoped to its queue: the map key (and key) is the
 * queue name, a 0 byte (never in a name) and the client's key. Owns those bytes. */
struct idem {
    char *key;
    uint32_t key_len;   /* queue_len + 1 + the client key's length */
    uint32_t queue_len; /* the name's bytes at the front of key */
    uint64_t job_id;
    int64_t created_ms;     /* Unix ms (the checkpoint keeps it) */
    int64_t expires_ns;     /* monotonic: the end of its window */
    struct list_link order; /* oldest first */
};

struct queue_state {
    struct queue_config config;
    struct jobtab jobs;     /* id -> job (live and remembered DONE) */
    struct strmap queues;   /* name -> queue */
    struct strmap keys;     /* idempotency key -> idem */
    struct list_link idem_order;
    struct heap delay_heap; /* DELAYED jobs by run-at (timer_slot) */
    struct runheap leases;  /* RESERVED jobs by deadline (timer_slot, lease_link) */
    struct heap ttl_heap;   /* jobs with a ttl by expiry (ttl_slot) */
    struct heap reserver_timeouts;
    struct heap waiter_timeouts;
    /* PENDING jobs in seq order (a ring: put appends, queue_durable takes from the front; no
     * other way out of PENDING), so that no job carries a link for its few ms there. */
    struct job **pending;
    uint32_t pending_head;
    uint32_t pending_count;
    uint32_t pending_capacity; /* a power of two */
    struct list_link done;    /* DONE jobs, oldest first */
    uint64_t done_count;
    uint64_t done_bytes; /* result bytes held by DONE jobs */
    struct list_link to_serve; /* queues that gained ready jobs while reservers wait */
    struct list_link idle;     /* queues that may have become idle (queue_forget.c) */
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
    /* seq of the last record emitted: a call's struct queue_logged is what moved it */
    uint64_t emit_seq_max;
    struct queue_totals totals;
    struct job_pool pool; /* every job's block: see job_pool.h */
    struct body_cache bodies; /* the bodies kept in RAM (body_cache.h) */
    /* queue_counts.c: job id -> struct queue_job_counts, only for jobs with a count. */
    struct idmap job_counts;
    uint64_t job_timeouts; /* leases that ran out, since the start */
};

/* Memory for count new jobs of queue, of ids first_id.. (queue_memory.c): their blocks held,
 * their pages and heap slots there, so that queue_job_new and placing them cannot fail. 0 or
 * QUEUE_ENOMEM.
 * Replay and checkpoint loads call it too: a log with more jobs than memory holds stops the
 * start with a message instead of an abort. */
int queue_job_reserve(struct queue_state *state, struct queue *queue, uint64_t first_id,
                      bool delayed, bool ttl, uint32_t count) __attribute__((warn_unused_result));
/* A new PENDING job with its body (copied into the body cache, which may evict it), or,
 * without body_known, one whose body is not loaded (body NULL; the caller sets body_len). */
struct job *queue_job_new(struct queue_state *state, struct queue *queue, uint64_t id,
                          const void *body, uint32_t body_len, bool body_known);
/* Compaction (compact.h): the job's body now lives in the record at pos (a RELOCATE, newer
 * than its current one): recount its segment and, while a checkpoint walk runs, let the walk
 * capture the old position first (replay from the walk's anchor moves it again). */
void queue_job_move(struct queue_state *state, struct job *job, struct log_pos pos);
/* Count a new job's body bytes, its segment and the queue's total_put (pos, body_len set). */
void queue_job_account(struct queue_state *state, struct job *job);
void queue_job_enter_ready(struct queue_state *state, struct job *job, struct queue_time now);
/* settled_ms: Unix ms of the death (now, or the logged time at replay). */
void queue_job_enter_dead(struct queue_state *state, struct job *job, const char *reason,
                          uint32_t reason_len, int64_t settled_ms);
/* Leave the containers of the current state (the job stays live). */
void queue_job_leave(struct queue_state *state, struct job *job);
/* Gone for good (delete, ttl, purge): free it and wake its waiters with found = false. */
void queue_job_remove(struct queue_state *state, struct job *job);
void queue_job_done(struct queue_state *state, struct job *job, const void *result,
                    uint32_t result_len, int64_t settled_ms);
/* The ttl ran out (settled_ms: the logged expiry): EXPIRED, remembered like a DONE job. */
void queue_job_expired(struct queue_state *state, struct job *job, int64_t settled_ms);
/* Set a job's logged times (Unix ms; 0: none) and their monotonic instants as of now. */
/* Set a run-at or a ttl (0: none). A nonzero one needs the job's extension (queue_job_ext). */
void queue_job_set_run_at(struct queue_state *state, struct job *job, int64_t run_at_ms,
                          struct queue_time now);
void queue_job_set_expires_at(struct queue_state *state, struct job *job, int64_t expires_at_ms,
                              struct queue_time now);
/* The job's extension (queue.h), allocated when it has none. _prepare is the one for paths
 * that must not abort: 0, or QUEUE_EFULL (no memory) with nothing changed, before anything
 * is logged; then queue_job_ext finds it. queue_job_ext itself aborts when there is no
 * memory: replay and internal transitions, whose job had one already or which cannot refuse.
 * _adopt attaches one allocated earlier (job_pool_try_alloc of sizeof(struct job_ext)).
 * _trim frees it when the job, about to be READY, uses none of its fields (a backlog of
 * ready jobs carries none). */
int queue_job_ext_prepare(struct queue_state *state, struct job *job);
struct job_ext *queue_job_ext(struct queue_state *state, struct job *job);
void queue_job_ext_adopt(struct queue_state *state, struct job *job, struct job_ext *ext);
/* Set the ttr: in the core, or in the extension when 32 bits do not hold it. */
void queue_job_set_ttr(struct queue_state *state, struct job *job, uint64_t ttr_ms);
void queue_job_ext_trim(struct queue_state *state, struct job *job);
/* Make a visible state for a job: delayed until timer_ns if it has a run-at still ahead. */
void queue_job_place(struct queue_state *state, struct job *job, struct queue_time now);
/* Remember a key of a queue (a no-op if already known). At idempotency_keys_max keys the
 * oldest is forgotten first (counted in totals.keys_evicted). spare: the memory for it from
 * queue_idem_alloc (taken, used or freed), or NULL to allocate here, aborting on failure (replay
 * and checkpoint load). */
void queue_idem_add(struct queue_state *state, const char *queue, uint32_t queue_len,
                    const char *key, uint32_t key_len, uint64_t job_id, int64_t created_ms,
                    struct queue_time now, struct idem *spare);
/* An idem with room for a scoped key of scoped_len bytes, one block, and the key map's room
 * for it: taken by a put before its record is logged, so that remembering the key cannot fail
 * afterwards. NULL: no memory. */
struct idem *queue_idem_alloc(struct queue_state *state, uint32_t scoped_len);
/* Forget every key of a queue (PURGE, DELETE_QUEUE). */
void queue_idem_forget_queue(struct queue_state *state, const struct queue *queue);
void queue_idem_free(struct queue_state *state, struct idem *idem);
void queue_apply_meta(struct queue *queue, const struct record_meta *meta);
void queue_purge_apply(struct queue_state *state, struct queue *queue);
void queue_serve(struct queue_state *state, struct queue_time now);
/* Emit a record (nothing during replay: it is in the log already); 0 or the emit's error. */
int queue_emit(struct queue_state *state, uint8_t type, const void *data, size_t len,
               struct log_pos *pos);
/* What a call logged since mark (state->emit_seq_max at its start), into *logged (NULL: the
 * caller does not want it). Every record counts, a LEASE its queue_serve emitted too, so
 * that the reply never claims durability before everything the call logged is durable. */
static inline void queue_logged_since(const struct queue_state *state, uint64_t mark,
                                      struct queue_logged *logged)
{
    if (logged != NULL)
        logged->seq_end = state->emit_seq_max > mark ? state->emit_seq_max + 1 : 0;
}
/* queue_forget.c: a queue that may have nothing left to keep (no job, remembered job,
 * waiting reserver or setting) is looked at by the next queue_tick, and forgotten if so. */
void queue_idle_mark(struct queue_state *state, struct queue *queue);
void queue_idle_sweep(struct queue_state *state, uint32_t *budget);
void queue_delete_queue_apply(struct queue_state *state, struct queue *queue);
/* Forget the remembered DONE and EXPIRED jobs of a queue (DELETE_QUEUE): at most
 * done_keep_max of them are walked. */
void queue_done_forget_queue(struct queue_state *state, struct queue *queue);
/* queue_counts.c: count an event of a live job (not during replay); drop its counts. */
enum queue_count_event { QUEUE_COUNT_TIMEOUT, QUEUE_COUNT_RELEASE, QUEUE_COUNT_BURY, QUEUE_COUNT_KICK };
void queue_count_event(struct queue_state *state, uint64_t id, enum queue_count_event event);
void queue_count_drop(struct queue_state *state, uint64_t id);
/* Timers (queue_timer.c) call these transitions of queue.c. */
void queue_lease_expire(struct queue_state *state, struct job *job, struct queue_time now);
/* TTL ran out for a job not reserved: gone once its DELETE is logged. False when the emit
 * was refused (back pressure, a full disk): the job is untouched, still due. */
bool queue_ttl_expire(struct queue_state *state, struct job *job);
/* The job settled (DONE, DEAD) or is gone (found false): wake every waiter on it. */
void queue_notify_waiters(struct queue_state *state, struct job *job, bool found);
/* Time (queue_timer.c). The monotonic instant of a Unix-ms time, never before it: now's
 * monotonic reading plus how far the time is ahead of (or behind) now's wall reading, exact
 * in ns; INT64_MAX for times past the year 2262. */
int64_t queue_mono_at(struct queue_time now, int64_t wall_ms);
/* Unix ms at least delta_ms after now, rounded up to the next whole ms (saturated): the
 * run-at of a delay, the expiry of a ttl, a lease deadline. */
int64_t queue_wall_ms_after(struct queue_time now, int64_t delta_ms);
/* a + b for b >= 0, saturated at INT64_MAX. */
int64_t queue_add_sat(int64_t a, int64_t b);

/* While a checkpoint walk runs: capture a job as it is now, before it changes, if the walk
 * wants it and has not captured it yet. */
void queue_checkpoint_capture(struct queue_state *state, struct job *job);
/* queue_timer.c: a job enters or leaves READY, for its queue's oldest ready age. */
void queue_ready_age_enter(struct queue *queue, struct job *job, int64_t now_ns);
void queue_ready_age_leave(struct queue *queue, struct job *job);
/* Count a live job in (delta 1) or out of (-1) its queue's segment counts (queue->segs). */
void queue_segs_add(struct queue *queue, uint64_t segment_id, int64_t delta);
/* The live jobs of a queue, malloc'ed (the caller frees; *count of them): a walk of every
 * job, for the rare whole-queue operations (purge, delete-queue). */
struct job **queue_jobs_of(struct queue_state *state, const struct queue *queue, uint32_t *count);

#endif
