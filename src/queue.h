/*
 * The queue state machine: every job of every named queue, and every rule of the contract
 * (DESIGN.md) that can be stated without I/O. Pure: no sockets, no files, no clock. Time is
 * passed in (struct queue_time: both clocks, read together by the caller; tests pass a fake
 * pair), and every change that must survive a crash is handed to an emit callback as a
 * record (record.h) before it is applied; the server's emit appends to the log, tests record.
 *
 * Two clocks. Every timer (a delayed job's run-at, a lease deadline, a ttl, the timeouts of
 * blocked reserves and job waiters, the idempotency window) runs on the monotonic clock, in
 * ns, so a step of the wall clock moves none of them. Unix milliseconds (the wall clock) are
 * kept only for what is persisted or sent: created, run-at, expiry and settle times, and a
 * lease's deadline as told to the worker. A Unix-ms time becomes a monotonic deadline when a
 * job is put, released, replayed or loaded (queue_mono_at), rounded so that nothing fires
 * early: a delay, ttl or lease of d ms ends no sooner than d ms after it began, and a lease
 * ends no sooner than the (rounded up) deadline its worker was given.
 *
 * Job states: PENDING (put, not yet durable: invisible) -> READY | DELAYED; READY -> RESERVED
 * (a lease: token, deadline, attempt); RESERVED -> DONE (ack) | READY/DELAYED (release, lease
 * expiry, owner gone) | DEAD (bury, or attempts reached max_attempts); DEAD -> READY (kick);
 * any non-reserved -> gone (delete, purge) | EXPIRED (its ttl ran out). DONE and EXPIRED jobs
 * are remembered (for wait and status; DONE with its result) up to done_keep_max, oldest
 * forgotten first.
 *
 * Invariants: a job is in exactly the containers of its state (ready heap + a ready-age bucket;
 * delayed heap + global delay heap; the leases (runheap.h) + owner list; dead list; pending
 * ring); a job has an extension (struct job_ext) whenever it is not READY or PENDING, and while
 * READY only if it has a run-at, a ttl, a reason, waiters or a ttr past 32 bits (a backlog of
 * plain ready jobs costs its 80-byte core, a heap slot and a job-table slot: about 100 bytes);
 * lease tokens are never reused (a bijective mix of a counter and a seed); blocked reservers
 * are served in arrival order; an emit that fails leaves the state exactly as it was.
 *
 * Records emitted: PUT, LEASE (lazily: nobody waits for it; if the batch is full it is
 * skipped, so a crash may undercount attempts), ACK, RELEASE, BURY (also for max_attempts),
 * KICK, DELETE (client or ttl), QUEUE_META, PURGE. TOUCH is not emitted: leases never survive a
 * restart, so an extended deadline has nothing to persist. Replay (queue_replay) applies the
 * same records without emitting; afterwards every lease is void and its job ready.
 */
#ifndef SPOOL_SRC_QUEUE_H
#define SPOOL_SRC_QUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include "assert.h"
#include "heap.h"
#include "list.h"
#include "log.h"
#include "map.h"
#include "metrics.h"
#include "record.h"
#include "siphash.h"

/* Errors of the state machine, in a band of their own below the log's. */
enum queue_error {
    QUEUE_ENOTFOUND = -10201,  /* no such job (or queue) */
    QUEUE_ELEASE = -10202,     /* the lease token is stale: the lease expired or moved on */
    QUEUE_EFULL = -10203,      /* the queue's job or byte limit is reached (retryable) */
    QUEUE_EINVAL = -10204,     /* a bad argument: queue name, sizes */
    QUEUE_ESTATE = -10205,     /* the job is not in a state that allows this (delete reserved) */
    QUEUE_ETOOBIG = -10206,    /* larger than the queue's limits even when empty: never fits */
    QUEUE_ETOOMANY = -10207,   /* a new queue would exceed queues_max */
    QUEUE_ENOMEM = -10208,     /* no memory to hold another job: refused before it is logged
                                * (queue_memory.c); answered as QUEUE_FULL (retryable) */
};

const char *queue_strerror(int error);

enum job_state {
    JOB_PENDING = 0,
    JOB_READY,
    JOB_DELAYED,
    JOB_RESERVED,
    JOB_DEAD,
    JOB_DONE,
    JOB_EXPIRED, /* its ttl ran out before an ack: remembered like DONE, without a result */
};

/* DONE or EXPIRED: no longer live, remembered (for wait and status) until forgotten. */
static inline bool job_state_settled(enum job_state state)
{
    return state == JOB_DONE || state == JOB_EXPIRED;
}

const char *job_state_name(enum job_state state);

/* A connection, as far as leases care: the reserved jobs it holds (not the detached ones). */
struct queue_owner {
    struct list_link jobs;
};

struct queue;

struct queue_segment_count {
    uint64_t segment_id;
    uint64_t count;
};

/* READY jobs by when they became ready, in buckets (queue_timer.c): oldest_ready_age_ms without
 * a list through every ready job. A bucket holds the jobs that became ready within its width
 * of its first one; the width is 1 ms, or 1/QUEUE_READY_AGE_SPLIT of the oldest bucket's age
 * when larger, so the age is exact to that and the buckets stay few (about QUEUE_READY_AGE_SPLIT
 * per doubling of the oldest age, a few tens of thousands at most). A ring, oldest first. */
struct queue_ready_bucket {
    int64_t since_ns; /* monotonic: its first job's */
    uint64_t count;   /* its jobs still READY */
};
struct queue_ready_age {
    struct queue_ready_bucket *ring;
    uint32_t head; /* index of the oldest */
    uint32_t count;
    uint32_t capacity; /* a power of two */
    uint32_t first;    /* the number of the oldest (numbers wrap: compared by difference) */
};

/*
 * A job is a compact core (struct job), allocated for every job, with what a READY job needs:
 * scheduling (priority, id, attempts, ttr), its log position and its body's length. The rest
 * (struct job_ext) is allocated only while some field of it is in use: a lease (RESERVED), a
 * delay (a run-at, also after it passed: it is shown and checkpointed), a ttl, a death or a
 * worker's error (reason), a settle (DONE/EXPIRED: result, time) or waiters. So a backlog of
 * jobs put without delay or ttl costs the core alone. job->ext is NULL or the extension; read
 * it through queue_job_x (zeroes when absent); queue.c allocates it (queue_job_ext) and frees
 * it when a job becomes READY again without needing it (queue_job_ext_trim).
 *
 * The core's fields are ordered so that no padding is left: 80 bytes, an 80-byte block of the
 * job pool (grain 16). Per READY job, RSS is that, 8 bytes of its queue's ready heap and ~8.5
 * of the job table (jobtab.h): ~97 bytes at 10M jobs (was 248 + 16 + 10 before the split).
 */
struct job_ext {
    struct job *job; /* the core it extends: the timer heaps hold extensions */
    /* The job's body pointer while it has an extension (queue_job_body_slot): the core's one
     * pointer then points here. */
    uint8_t *body;
    uint64_t ttr_ms;        /* when the core's does not hold it (QUEUE_TTR_IN_EXT) */
    int64_t run_at_ms;      /* Unix ms, as logged: when it becomes ready (0: at once) */
    int64_t deadline_ms;    /* RESERVED: lease deadline, Unix ms, as told to the worker */
    int64_t expires_at_ms;  /* Unix ms, as logged; 0: no ttl */
    int64_t settled_ms;     /* DONE / DEAD / EXPIRED: when, Unix ms */
    /* Timers, on the monotonic clock (ns). timer_ns goes with timer_slot: DELAYED, run_at_ms's
     * instant (also set while PENDING with a run-at); RESERVED, the lease deadline. */
    int64_t timer_ns;
    int64_t expires_at_ns; /* expires_at_ms's instant (ttl heap) */
    uint64_t lease_token;  /* RESERVED: current lease */
    char *reason;    /* DEAD: why; otherwise the worker's last error, if any */
    uint8_t *result; /* DONE: ack result */
    struct queue_owner *owner; /* RESERVED and not detached */
    uint32_t reason_len;
    uint32_t result_len;
    uint32_t timer_slot; /* global delay heap (DELAYED) or the leases' heap (RESERVED, in no run) */
    uint32_t ttl_slot;   /* ttl heap */
    int64_t lease_start_ns;      /* RESERVED: when the lease began (processing-time metric) */
    struct list_link waiters;    /* queue_job_waiter.link */
    /* A job is never RESERVED and settled at once: one link serves both lists. */
    union {
        struct list_link done_link;  /* DONE / EXPIRED: in the state's done list, oldest first */
        struct list_link lease_link; /* RESERVED: in a run of the state's leases (runheap.h) */
    };
    struct list_link state_link; /* RESERVED: owner's list; DEAD: queue's dead list */
};

/* A ttr the core's 32 bits do not hold (49.7 days and more: beanstalkd's ttr is in seconds)
 * is in the extension. */
#define QUEUE_TTR_IN_EXT UINT32_MAX
/* Batches start at multiples of this (BATCH_ALIGN, storage/batch.h): the core keeps a batch's
 * offset in these units, in QUEUE_POS_PAGE_BITS bits (segments up to 32 GiB; the server's are
 * at most CONFIG_SEGMENT_MAX, 1 GiB). */
#define QUEUE_POS_ALIGN 4096u
#define QUEUE_POS_PAGE_BITS 23

struct job {
    uint64_t id;
    struct queue *queue;
    /* With has_ext, the extension (which holds the body pointer); without, the body while the
     * state's body cache holds it (body_cache.h: the cache sets it to NULL when it evicts the
     * body), NULL: read it back from pos. Through queue_job_body / queue_job_ext_of. */
    union {
        uint8_t *body;
        struct job_ext *ext;
    } ref;
    int64_t created_ms; /* Unix ms */
    /* The PUT record's struct log_pos, packed (queue_job_pos): the seq, how far the segment's
     * first seq lies below it, and the batch's offset in QUEUE_POS_ALIGN units. */
    uint64_t pos_seq;
    uint32_t pos_segment_back;
    uint32_t pos_batch_page : QUEUE_POS_PAGE_BITS;
    uint32_t has_ext : 1;
    uint32_t state : 8; /* enum job_state */
    uint32_t priority;
    uint32_t attempts;     /* deliveries so far */
    uint32_t max_attempts; /* 0: unlimited */
    uint32_t ttr_ms_core;  /* the ttr (queue_job_ttr_ms), or QUEUE_TTR_IN_EXT */
    uint32_t body_len;
    uint32_t queue_slot;       /* ready or delayed heap of the queue */
    uint32_t checkpoint_epoch; /* the checkpoint walk that captured it (queue_checkpoint.c) */
    uint32_t ready_bucket;     /* READY: the number of its bucket of queue->ready_age */
};
_Static_assert(sizeof(struct job) == 80, "a job takes one 80-byte block of the job pool");

static inline struct job_ext *queue_job_ext_of(const struct job *job)
{
    return job->has_ext ? job->ref.ext : NULL;
}
/* The body while the body cache holds it; NULL: in the log only. */
static inline uint8_t *queue_job_body(const struct job *job)
{
    return job->has_ext ? job->ref.ext->body : job->ref.body;
}
/* Where the job's body pointer is, for the body cache (body_cache.h: the entry's owner). */
static inline uint8_t **queue_job_body_slot(struct job *job)
{
    return job->has_ext ? &job->ref.ext->body : &job->ref.body;
}
static inline uint64_t queue_job_ttr_ms(const struct job *job)
{
    return job->ttr_ms_core != QUEUE_TTR_IN_EXT ? job->ttr_ms_core : job->ref.ext->ttr_ms;
}

/* The job's extension, or one whose every field is zero (and whose waiters list is empty). */
extern const struct job_ext queue_job_ext_none;
static inline const struct job_ext *queue_job_x(const struct job *job)
{
    return job->has_ext ? job->ref.ext : &queue_job_ext_none;
}

/* Ready jobs with a priority below this are "urgent" (beanstalkd's current-jobs-urgent):
 * counted as they enter and leave the ready heap, so stats never walk it. */
#define QUEUE_URGENT_PRIORITY 1024u

struct queue_stats {
    uint64_t ready;
    uint64_t ready_urgent; /* of them, priority below QUEUE_URGENT_PRIORITY */
    uint64_t delayed;
    uint64_t reserved;
    uint64_t dead;
    uint64_t pending; /* put, not yet durable */
    uint64_t total_put;
    int64_t oldest_ready_age_ms; /* 0 when nothing is ready */
    /* A lower bound of the seq of the oldest live job's PUT: the first seq of the oldest
     * segment that holds the PUT of a live job of the queue; 0: nothing live. */
    uint64_t ack_floor;
    uint64_t bytes;              /* body bytes of live jobs */
    uint64_t expired;            /* EXPIRED jobs still remembered (done_keep_max) */
    uint64_t settled;            /* DONE and EXPIRED jobs still remembered: they name it */
    bool paused;
};

struct queue {
    char name[LIMIT_QUEUE_NAME_MAX_BYTES + 1];
    uint32_t name_len;
    bool paused;
    bool pause_timed; /* paused by beanstalkd's pause-tube: not restored by a restart */
    uint64_t default_ttr_ms;       /* 0: the state's default */
    uint32_t default_max_attempts; /* UINT32_MAX: the state's default */
    uint64_t max_jobs;             /* 0: unlimited */
    uint64_t max_bytes;
    struct heap ready;   /* (priority, id) */
    struct heap delayed; /* (run_at, id) */
    struct queue_ready_age ready_age; /* READY jobs by when they became ready */
    struct list_link dead;            /* DEAD jobs (their extensions), oldest death first */
    /* Live jobs per segment of their PUT, ascending by segment (queue_segs_add): ack_floor.
     * A few entries per queue (the segments its live jobs span), not one per job. */
    struct queue_segment_count *segs;
    uint32_t seg_count;
    uint32_t seg_capacity;
    struct list_link reservers;   /* queue_reserver links, arrival order */
    struct list_link serve_link;  /* in the state's list of queues with reservers to serve */
    struct queue_stats stats;
    struct queue_metrics metrics; /* counters since start (metrics.h), for /metrics */
    uint32_t checkpoint_index; /* scratch: position in the checkpoint being written */
    uint32_t reserver_refs;    /* waiting reservers that name it (paused ones included) */
    uint32_t pins; /* front ends that name it (a beanstalkd connection's used or watched tube) */
    struct list_link idle_link; /* in the state's list of queues to forget if idle */
};

/* Queues per reserve and jobs per reserve: LIMIT_RESERVE_MAX_QUEUES, LIMIT_RESERVE_MAX_JOBS
 * (common/spool_limits.h), the same limits the wire decoder enforces. */

struct queue_reserver;
typedef void (*queue_reserver_fn)(struct queue_reserver *reserver, struct job **jobs,
                                  uint32_t count);

struct queue_reserver_link {
    struct list_link link; /* in queue->reservers */
    struct queue_reserver *reserver;
};

/* A blocked reserve. The caller owns it and keeps it alive until woken or canceled. */
struct queue_reserver {
    struct queue *queues[LIMIT_RESERVE_MAX_QUEUES];
    uint32_t queue_count;
    uint32_t count_max;
    uint64_t bytes_max;  /* stop adding jobs past this many body+name bytes; 0: no limit */
    int64_t deadline_ns; /* monotonic: give up at; woken with count 0 (queue_time_after_ns) */
    bool detach;
    struct queue_owner *owner;
    queue_reserver_fn wake; /* jobs are valid during the call only */
    void *ctx;
    /* private */
    struct queue_reserver_link links[LIMIT_RESERVE_MAX_QUEUES];
    uint32_t timeout_slot;
    bool waiting;
    bool paused; /* waiting, but out of its queues' lines (queue_reserver_pause) */
};

/* Status of a job, for status, wait and peek answers. */
struct queue_job_status {
    uint64_t id;
    enum job_state state;
    uint32_t attempts;
    int64_t created_ms;
    int64_t settled_ms;
    const void *result; /* DONE */
    uint32_t result_len;
    const char *reason; /* DEAD */
    uint32_t reason_len;
};

struct queue_job_waiter;
/* found false: the job is gone (deleted, forgotten). status valid during the call only. */
typedef void (*queue_job_waiter_fn)(struct queue_job_waiter *waiter, bool found,
                                    const struct queue_job_status *status);

struct queue_job_waiter {
    uint64_t job_id;
    int64_t deadline_ns; /* monotonic (queue_time_after_ns) */
    queue_job_waiter_fn wake;
    void *ctx;
    /* private */
    struct list_link link;
    uint32_t timeout_slot;
    bool waiting;
};

/* What one call logged, filled by the calls that log records (a NULL pointer: not wanted).
 * seq_end: one past the seq of the last record the call appended, the durable watermark its
 * reply waits for (durability.h); 0 when it appended nothing (the reply goes at once). */
struct queue_logged {
    uint64_t seq_end;
};

/* Where records go. 0 and *pos set, or a negative error (then nothing is applied). */
typedef int (*queue_emit_fn)(void *ctx, uint8_t type, const void *data, uint32_t len,
                             struct log_pos *pos);

/* Now: the wall clock (CLOCK_REALTIME) and the monotonic clock (CLOCK_MONOTONIC), in ns,
 * read together, the wall clock first (so a run-at converted with them is never early). */
struct queue_time {
    int64_t wall_ns;
    int64_t mono_ns;
};

#define QUEUE_NS_PER_MS 1000000

/* Unix ms of now (rounded down: a created or settle time). */
static inline int64_t queue_time_wall_ms(struct queue_time now)
{
    int64_t ms = now.wall_ns / QUEUE_NS_PER_MS;
    return now.wall_ns % QUEUE_NS_PER_MS < 0 ? ms - 1 : ms;
}

/* The monotonic instant ms after now (a timeout of a reserve or a wait), saturated. */
static inline int64_t queue_time_after_ns(struct queue_time now, uint64_t ms)
{
    if (ms > (uint64_t)(INT64_MAX - now.mono_ns) / QUEUE_NS_PER_MS)
        return INT64_MAX;
    return now.mono_ns + (int64_t)ms * QUEUE_NS_PER_MS;
}

struct queue_config {
    uint64_t default_ttr_ms;        /* 30 s */
    uint32_t default_max_attempts;  /* 10; 0 = unlimited */
    int64_t idempotency_window_ms;  /* 24 h */
    uint64_t idempotency_keys_max;  /* keys remembered at most (oldest forgotten first) */
    uint64_t max_jobs_per_queue;    /* 0: unlimited (a queue's own limit wins when set) */
    uint64_t max_bytes_per_queue;   /* 0: unlimited */
    uint32_t done_keep_max;         /* DONE jobs remembered for wait/status */
    uint64_t queues_max;            /* queues at most (QUEUE_ETOOMANY past it); 0: no limit */
    uint32_t tick_work_max;         /* timer events handled per queue_tick */
    struct siphash_key lease_key;   /* secret key of the lease-token PRF */
    bool prefault;                  /* a helper thread maps job memory ahead (job_pool.h) */
    /* Bound of the body cache in bytes (body_cache.h); 0: every body stays in RAM (tools and
     * tests that replay a log). */
    uint64_t body_cache_bytes_max;
    queue_emit_fn emit;
    void *emit_ctx;
};

void queue_config_defaults(struct queue_config *config);

struct queue_state;

struct queue_state *queue_state_create(const struct queue_config *config);
void queue_state_destroy(struct queue_state *state);
/* Change where records go (the server sets the log after replay). */
void queue_set_emit(struct queue_state *state, queue_emit_fn emit, void *ctx);

struct queue_put_args {
    const char *queue;
    uint32_t queue_len;
    uint32_t priority;
    int64_t delay_ms;        /* or */
    int64_t run_at_ms;       /* absolute; 0: use delay_ms */
    uint64_t ttr_ms;         /* 0: the queue's default */
    int64_t max_attempts;    /* -1: the queue's default; 0: unlimited */
    int64_t ttl_ms;          /* 0: none */
    const char *key;
    uint32_t key_len;
    const void *body;
    uint32_t body_len;
};

/* The arguments queue_put would refuse with QUEUE_EINVAL (0 when valid): a batch checks every
 * job before it puts the first. */
SPOOL_MUST_USE int queue_put_check(const struct queue_state *state,
                                   const struct queue_put_args *args);

/* Put a job (PENDING until queue_durable covers its record). *id: the new job's id, or with
 * *duplicate the id of the job that first used the key within the window; *seq: the PUT
 * record's seq (the reply waits for it to be durable). Errors: QUEUE_EINVAL, QUEUE_EFULL,
 * an emit error. */
SPOOL_MUST_USE int queue_put(struct queue_state *state, const struct queue_put_args *args,
                             struct queue_time now, uint64_t *id, bool *duplicate,
                             uint64_t *seq);

/* Would the queue (created on first use) take jobs more jobs of bytes body bytes under its
 * limits? 0, QUEUE_EFULL (not now: retry later) or QUEUE_ETOOBIG (more than its limits even
 * when empty). PUT_BATCH asks before logging any job of the batch. */
int queue_room_for(const struct queue_state *state, const char *name, uint32_t name_len,
                   uint64_t jobs, uint64_t bytes);

/* Could new_queues queues that do not exist yet be created now (queues_max)? 0 or
 * QUEUE_ETOOMANY; PUT_BATCH asks before logging any job. queue_known: does it exist? */
int queue_room_for_queues(const struct queue_state *state, uint64_t new_queues);
bool queue_known(const struct queue_state *state, const char *name, uint32_t name_len);

/* Records with seq < durable_seq_end are durable: their PENDING jobs become visible. */
void queue_durable(struct queue_state *state, uint64_t durable_seq_end, struct queue_time now);

/* A front end names the queue (a beanstalkd connection uses or watches its tube, which must
 * exist even when empty): it is not forgotten while pinned. Each pin is undone by one unpin. */
void queue_pin(struct queue *queue);
void queue_unpin(struct queue_state *state, struct queue *queue);

/* Reserve up to reserver->count_max jobs now (at most LIMIT_RESERVE_MAX_JOBS: the caller
 * checked it, and jobs holds that many). Returns how many were written to jobs (>= 0;
 * the leases are taken). With none and a deadline in the future, the reserver is queued and
 * reserver->wake runs later (with jobs, or with 0 at the deadline). */
uint32_t queue_reserve(struct queue_state *state, struct queue_reserver *reserver,
                       struct queue_time now, struct job **jobs);
void queue_reserver_cancel(struct queue_state *state, struct queue_reserver *reserver);
/* Take a waiting reserver out of its queues' lines without canceling it (its owner cannot take
 * more output now): no job is handed to it, its deadline still runs. Resume puts it back, at
 * the end of the lines, to be served at the next queue_tick. Both do nothing to a reserver
 * that is not waiting, or already in that state. */
void queue_reserver_pause(struct queue_state *state, struct queue_reserver *reserver);
void queue_reserver_resume(struct queue_state *state, struct queue_reserver *reserver);

/* Look a queue up by name (NULL if never used); create it (QUEUE_EINVAL on a bad name). */
struct queue *queue_find(struct queue_state *state, const char *name, uint32_t name_len);
SPOOL_MUST_USE int queue_get(struct queue_state *state, const char *name, uint32_t name_len,
                             struct queue **out);

/* Memory for count puts like args into queue, made sure of before the first is logged (a
 * batch: once per job, before any is put): the job blocks are held, and the page and heap
 * slots they need exist. 0, or QUEUE_ENOMEM (nothing logged or applied; counted in
 * totals.puts_refused_memory). queue_put calls it itself with count 1. */
SPOOL_MUST_USE int queue_put_reserve(struct queue_state *state, struct queue *queue,
                                     const struct queue_put_args *args, uint32_t count);

/* Lease operations: QUEUE_ENOTFOUND (unknown job), QUEUE_ELEASE (token stale), emit errors. */
SPOOL_MUST_USE int queue_ack(struct queue_state *state, uint64_t id, uint64_t token,
                             const void *result, uint32_t result_len, struct queue_time now,
                             struct queue_logged *logged);
/* priority: UINT32_MAX keeps the job's. error (may be empty): the worker's failure text, kept
 * for the dead reason if the job later runs out of attempts. Reaching max_attempts buries
 * instead, with reason "max_attempts" or "max_attempts: <last error>". */
SPOOL_MUST_USE int queue_release(struct queue_state *state, uint64_t id, uint64_t token,
                                 int64_t delay_ms, uint32_t priority, const char *error,
                                 uint32_t error_len, struct queue_time now,
                                 struct queue_logged *logged);
/* extend_ms: 0 = the job's ttr. Sets *deadline_ms (Unix ms, rounded up, for the worker). */
SPOOL_MUST_USE int queue_touch(struct queue_state *state, uint64_t id, uint64_t token,
                               uint64_t extend_ms, struct queue_time now,
                               int64_t *deadline_ms);
SPOOL_MUST_USE int queue_bury(struct queue_state *state, uint64_t id, uint64_t token,
                              const char *reason, uint32_t reason_len, struct queue_time now,
                              struct queue_logged *logged);

/* Kick one dead job by id (QUEUE_ESTATE if not dead). */
SPOOL_MUST_USE int queue_kick_job(struct queue_state *state, uint64_t id,
                                  struct queue_time now, struct queue_logged *logged);
/* Kick up to count dead jobs of a queue, oldest first; *kicked = how many. */
SPOOL_MUST_USE int queue_kick(struct queue_state *state, const char *name, uint32_t name_len,
                              uint32_t count, struct queue_time now, uint32_t *kicked,
                              struct queue_logged *logged);
/* The beanstalkd protocol's reserve-job: lease one job by id to owner, whatever queue it is
 * in, when it is ready, delayed or dead (QUEUE_ENOTFOUND otherwise). */
SPOOL_MUST_USE int queue_reserve_job(struct queue_state *state, uint64_t id,
                                     struct queue_owner *owner, struct queue_time now,
                                     struct job **out);
/* The beanstalkd protocol's bury <id> <pri>: queue_bury that also sets the priority. */
SPOOL_MUST_USE int queue_bury_priority(struct queue_state *state, uint64_t id, uint64_t token,
                                       uint32_t priority, const char *reason,
                                       uint32_t reason_len, struct queue_time now,
                                       struct queue_logged *logged);
/* The beanstalkd protocol's kick of delayed jobs: make one (QUEUE_ESTATE if not delayed), or
 * up to count of a queue, soonest first, ready now (logged as a RELEASE without run-at). */
SPOOL_MUST_USE int queue_kick_delayed_job(struct queue_state *state, uint64_t id,
                                          struct queue_time now, struct queue_logged *logged);
SPOOL_MUST_USE int queue_kick_delayed(struct queue_state *state, const char *name,
                                      uint32_t name_len, uint32_t count, struct queue_time now,
                                      uint32_t *kicked, struct queue_logged *logged);
/* What beanstalkd's stats-job counts of a job since the server started (queue_counts.c):
 * leases that ran out, releases, buries, kicks (of dead or delayed jobs). */
struct queue_job_counts {
    uint32_t timeouts;
    uint32_t releases;
    uint32_t buries;
    uint32_t kicks;
};
void queue_job_counts_get(const struct queue_state *state, uint64_t id,
                          struct queue_job_counts *out);
/* Leases that ran out since the server started (beanstalkd's job-timeouts). */
uint64_t queue_job_timeouts(const struct queue_state *state);
/* Delete a non-reserved job (QUEUE_ESTATE when reserved). */
SPOOL_MUST_USE int queue_delete(struct queue_state *state, uint64_t id,
                                struct queue_time now, struct queue_logged *logged);
/* Delete a queue (logged as DELETE_QUEUE): its jobs, keys and settings. A queue with live
 * jobs is QUEUE_ESTATE unless force, which deletes them all, reserved ones included (their
 * leases go stale); *deleted = how many. QUEUE_ENOTFOUND for a queue never used. */
SPOOL_MUST_USE int queue_delete_queue(struct queue_state *state, const char *name,
                                      uint32_t name_len, bool force, struct queue_time now,
                                      uint64_t *deleted, struct queue_logged *logged);
/* Delete every non-reserved job of a queue; *deleted = how many. */
SPOOL_MUST_USE int queue_purge(struct queue_state *state, const char *name, uint32_t name_len,
                               struct queue_time now, uint64_t *deleted,
                               struct queue_logged *logged);
/* Pause or resume, set defaults and limits (logged as QUEUE_META). */
SPOOL_MUST_USE int queue_set_meta(struct queue_state *state, const struct record_meta *meta,
                                  struct queue_time now, struct queue_logged *logged);

/* Peek: a job by id (any state but PENDING), or a queue's next ready / delayed / dead. */
struct job *queue_peek_id(struct queue_state *state, uint64_t id);
struct job *queue_peek_next(struct queue_state *state, const char *name, uint32_t name_len,
                            enum job_state which);

/* Any job the state knows, DONE and PENDING included (NULL if unknown or forgotten). */
struct job *queue_job_find(struct queue_state *state, uint64_t id);

/* Status of a job: false if unknown. */
bool queue_status(struct queue_state *state, uint64_t id, struct queue_job_status *out);
/* Wait for a job to be DONE or DEAD. Returns true if it already is (or is unknown: then
 * *found is false) and fills *out; else the waiter is queued (wake at settle or deadline). */
bool queue_wait(struct queue_state *state, struct queue_job_waiter *waiter,
                struct queue_time now, bool *found, struct queue_job_status *out);
void queue_wait_cancel(struct queue_state *state, struct queue_job_waiter *waiter);

/* A connection closed: its (non-detached) leases end now, as if expired. */
void queue_owner_init(struct queue_owner *owner);
void queue_owner_release(struct queue_state *state, struct queue_owner *owner,
                         struct queue_time now);

/* Run every timer due at now (delays, lease expiries, ttls, waiter timeouts, idempotency
 * window), at most tick_work_max events; then the next deadline on the monotonic clock
 * (INT64_MAX if none). */
void queue_tick(struct queue_state *state, struct queue_time now);
int64_t queue_next_deadline_ns(const struct queue_state *state);

/* A queue's effective defaults (its own, else the state's). */
void queue_defaults_get(const struct queue_state *state, const struct queue *queue,
                        uint64_t *ttr_ms, uint32_t *max_attempts);

/* Stats. */
void queue_stats_get(const struct queue *queue, struct queue_time now,
                     struct queue_stats *out);
struct queue_totals {
    uint64_t queues;
    uint64_t ready, delayed, reserved, dead, pending;
    uint64_t jobs; /* live jobs */
    /* Since this process started (replay excluded): jobs that went dead (buried, or out of
     * attempts) and jobs whose ttl ran out. */
    uint64_t went_dead, expired;
    /* Idempotency keys remembered now, and forgotten before their window ended because
     * idempotency_keys_max was reached (since this process started). */
    uint64_t keys, keys_evicted;
    /* Puts refused (QUEUE_ENOMEM) because memory for their job could not be allocated. */
    uint64_t puts_refused_memory;
};
void queue_totals_get(const struct queue_state *state, struct queue_totals *out);
/* The queues whose names sort after cursor (cursor_len 0: every queue), in name order (byte
 * order, a prefix first): *out is malloc'ed (the caller frees it) and valid until the next
 * queue_tick, which may forget idle queues. Returns their count. */
uint32_t queue_page(struct queue_state *state, const char *cursor, uint32_t cursor_len,
                    struct queue ***out);
/* Call fn for each queue (order unspecified). */
void queue_each(struct queue_state *state, void (*fn)(void *ctx, struct queue *queue),
                void *ctx);
/* The same walk in steps, over several loop turns: call fn for at most max more queues from
 * *cursor (0 to begin), true once every queue was visited. Queues may be added between steps:
 * one added behind the cursor is missed, and when the table is rebuilt (queue_walk_stamp
 * changes) the walk must begin again, or it may visit a queue twice. */
bool queue_each_step(struct queue_state *state, size_t *cursor, uint32_t max,
                     void (*fn)(void *ctx, struct queue *queue), void *ctx);
uint64_t queue_walk_stamp(const struct queue_state *state);

/* Call fn for each live job (queue_job_live; order unspecified); fn must not change the
 * state. */
void queue_each_live(struct queue_state *state, void (*fn)(void *ctx, struct job *job), void *ctx);
/* The monotonic instant the oldest READY job of the queue became ready (to within the
 * width of its bucket, queue_ready_age); 0 when none is ready. */
int64_t queue_oldest_ready_since_ns(const struct queue *queue);
/* Live jobs of a queue (every state but DONE and EXPIRED). */
uint64_t queue_live_count(const struct queue *queue);
/* Compaction (compact.h). Walk every job the state knows (settled ones too) in steps: fn for
 * the jobs of at most pages_max more pages of the job table from *cursor (0 to begin); true
 * once the walk is complete. fn must not add or remove jobs. A table that grows between steps
 * makes the walk see some jobs twice or miss some: fine for compaction, not for an exact count. */
bool queue_jobs_step(struct queue_state *state, size_t *cursor, uint32_t pages_max,
                     void (*fn)(void *ctx, struct job *job), void *ctx);
/* A job whose body compaction may copy: live and durable (not PENDING). */
bool queue_job_copyable(const struct job *job);
/* Bytes of the RELOCATE that would copy the job. */
uint64_t queue_job_relocate_size(const struct job *job);
/* Emit the RELOCATE that copies a copyable job with its body (read back from its record) into
 * buf (at least queue_job_relocate_size bytes); *pos: the copy's location. The job's position
 * does not change here: queue_job_move_durable, once the copy is durable. 0 or the emit's
 * error (then nothing was logged). */
SPOOL_MUST_USE int queue_job_relocate(struct queue_state *state, const struct job *job,
                                      const void *body, uint32_t body_len, uint8_t *buf,
                                      size_t buf_len, struct log_pos *pos);
/* The copy of job id at pos is durable: if the job is still live and its body still at
 * old_seq, it now lives at pos (the segment counts follow). False when the job moved on
 * (acked, deleted: nothing to do). */
bool queue_job_move_durable(struct queue_state *state, uint64_t id, uint64_t old_seq,
                            struct log_pos pos);

/* Retention: live jobs whose PUT lives in a segment. */
uint64_t queue_segment_live(const struct queue_state *state, uint64_t segment_id);

/* Recovery: apply one log record (no emit). RECORD_EINVAL on a malformed record. */
SPOOL_MUST_USE int queue_replay(struct queue_state *state, const struct log_record *record,
                                struct queue_time now);
/* After replay: every job visible; over-attempted jobs buried (emitted). */
void queue_recover_finish(struct queue_state *state, struct queue_time now);

/*
 * Job ids are unique for the life of a data directory, not dense: a start numbers its jobs
 * from at least now_ms * QUEUE_IDS_PER_MS (queue_ids_floor), so ids never go back even when
 * recovery lost the log that held the highest ones (a removed newest segment, a torn tail cut
 * in the interval and none modes, a salvage), as long as the wall clock does not step back.
 * 1024 ids per ms: a counter that starts at the clock's floor stays below the next start's
 * floor unless it averaged more than a million puts a second; ids stay below 2^53 (exact in a
 * JavaScript number) until the year 2248.
 */
#define QUEUE_IDS_PER_MS 1024u
/* The largest id a floor may reach: 2^53, the integers a double holds exactly. */
#define QUEUE_ID_FLOOR_MAX (1ull << 53)
/* After recovery, before the first put: next id = max(recovered next id, the floor). */
void queue_ids_floor(struct queue_state *state, int64_t now_ms);
/* The id the next put will get (for tests and the recovery log line). */
uint64_t queue_next_id(const struct queue_state *state);

/* Checkpoint payload: the whole state (bodies excluded: they stay in the log), as of an
 * anchor, taken incrementally while the state goes on changing (queue_checkpoint.c):
 * begin fixes the anchor (every record emitted so far is reflected, nothing after), step
 * encodes up to jobs_max more live jobs and returns true once every job of the anchor is in,
 * finish hands out the payload (malloc'ed, the caller frees; -EFBIG past 4 GiB). One walk at a
 * time; abort drops one. queue_checkpoint_encode does all three at once. */
void queue_checkpoint_begin(struct queue_state *state);
bool queue_checkpoint_step(struct queue_state *state, uint32_t jobs_max);
/* The segments a payload needs: the distinct segment ids of the PUT records of the jobs it
 * records as live (their bodies are read back from there at restart), ascending. Retention
 * may drop a segment only if it is not among them (retention.h). ids is malloc'ed. */
struct queue_segment_set {
    uint64_t *ids;
    uint32_t count;
    uint32_t capacity;
};
void queue_segment_set_free(struct queue_segment_set *set);
bool queue_segment_set_has(const struct queue_segment_set *set, uint64_t segment_id);
/* segments (may be NULL) receives the payload's segment set; the caller frees both. */
SPOOL_MUST_USE int queue_checkpoint_finish(struct queue_state *state, uint8_t **out,
                                           uint32_t *out_len,
                                           struct queue_segment_set *segments);
void queue_checkpoint_abort(struct queue_state *state);
bool queue_checkpoint_active(const struct queue_state *state);
SPOOL_MUST_USE int queue_checkpoint_encode(struct queue_state *state, uint8_t **out,
                                           uint32_t *out_len);
SPOOL_MUST_USE int queue_checkpoint_load(struct queue_state *state, const void *data,
                                         uint32_t len, struct queue_time now);
/* Live jobs whose body is not in RAM (after a checkpoint load, or evicted): call fn for each. */
void queue_each_unloaded(struct queue_state *state, void (*fn)(void *ctx, struct job *job),
                         void *ctx);
/* A body read back from the log: keep it in the body cache (len must be the job's body_len;
 * nothing if the job has its body already, or the cache has no memory for it: the body stays
 * in the log, and the caller uses its own copy). */
void queue_body_loaded(struct queue_state *state, struct job *job, const void *body,
                       uint32_t len);
/* A job that still has a body in the log (not settled for good): only these are delivered
 * or peeked with a body. Named states rather than "not DONE", so that a settled state added
 * later does not count as live by default. */
static inline bool queue_job_live(const struct job *job)
{
    switch (job->state) {
    case JOB_PENDING:
    case JOB_READY:
    case JOB_DELAYED:
    case JOB_RESERVED:
    case JOB_DEAD: return true;
    default: return false;
    }
}
/* Where the job's PUT (or the record that last carried its body) is in the log. Read and set
 * it through here: the job table may store it packed. */
static inline struct log_pos queue_job_pos(const struct job *job)
{
    return (struct log_pos){.seq = job->pos_seq,
                            .segment_id = job->pos_seq - job->pos_segment_back,
                            .batch_offset = (uint64_t)job->pos_batch_page * QUEUE_POS_ALIGN};
}
/* A segment holds fewer than 2^32 records and bytes (the server's segments are at most
 * CONFIG_SEGMENT_MAX, 1 GiB, and a record takes more than one byte), so both differences fit:
 * a position the log gives that does not is a programmer error; a checkpoint's is checked
 * with queue_pos_packable (a damaged payload is refused, not trusted). */
static inline bool queue_pos_packable(struct log_pos pos)
{
    return pos.segment_id <= pos.seq && pos.seq - pos.segment_id <= UINT32_MAX &&
           pos.batch_offset % QUEUE_POS_ALIGN == 0 &&
           pos.batch_offset / QUEUE_POS_ALIGN < (1u << QUEUE_POS_PAGE_BITS);
}
/* A live job given a new position (compaction copied its body forward) moves its count in its
 * queue's segment counts too (ack_floor); the state's per-segment counts (queue_segment_live,
 * retention) are the mover's to update. */
void queue_job_set_pos(struct job *job, struct log_pos pos);
/* A live job whose body must be read back from the log before it can be sent. */
static inline bool queue_job_body_missing(const struct job *job)
{
    return queue_job_body(job) == NULL && queue_job_live(job);
}
/* READY jobs about in the order the ready heap delivers them, for body read-ahead
 * (body_prefetch.h), which needs a good guess of which bodies a drain wants next (a batch read
 * too early is evictable, one missed is read on demand). The first is the heap's top; the one
 * after job (READY) is the next READY job of its queue in id order, found within
 * QUEUE_READY_NEXT_SCAN_IDS ids (NULL: none that near): for a backlog at one priority that is
 * the delivery order itself. */
static inline struct job *queue_ready_first(const struct queue *queue)
{
    return queue->ready.count > 0 ? queue->ready.items[0] : NULL;
}
/* Ids looked at per step: a queue whose jobs are interleaved with more than ~1000 other jobs
 * each ends its read-ahead early rather than walk the job table for it. *ids_left bounds a
 * whole walk's ids (decremented; NULL is returned once it is 0), so that a walk over many
 * steps stays cheap on the loop however the queues interleave. */
#define QUEUE_READY_NEXT_SCAN_IDS 1024u
struct job *queue_ready_next(struct queue_state *state, const struct job *job,
                             uint32_t *ids_left);
/* The body cache's figures, for stats. */
struct queue_body_stats {
    uint64_t bytes;     /* counted bytes held (bodies and their overhead) */
    uint64_t bytes_max; /* the bound; 0: unbounded */
    uint64_t count;     /* bodies held */
    uint64_t evictions;
};
void queue_body_stats_get(const struct queue_state *state, struct queue_body_stats *out);
/* Bytes of job memory that is resident but free for the next jobs (the job pool keeps the
 * blocks of gone jobs for reuse instead of returning them): the memory bound subtracts it. */
uint64_t queue_memory_reusable(const struct queue_state *state);
/* Under memory pressure: evict bodies until the cache holds at most bytes. Returns the bytes
 * freed. */
uint64_t queue_body_cache_trim(struct queue_state *state, uint64_t bytes);

#endif
