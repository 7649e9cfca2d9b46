/*
 * The queue state machine (contract and invariants in queue.h): job transitions, client
 * operations, blocked reservers and job waiters. Replay is in queue_replay.c, the checkpoint
 * payload in queue_checkpoint.c; timers and stats in queue_timer.c.
 *
 * Every client operation follows one order: validate, encode its record, emit, and only when
 * the emit succeeded change the state. So an emit refused for back pressure (-ENOBUFS) leaves
 * nothing half done and the server can simply retry the request later. Internal transitions
 * (lease expiry, a dead job after its last attempt) emit best-effort: replay derives the
 * same outcome from PUT and LEASE records, so a skipped record loses nothing but log detail.
 * A ttl expiry is not one of them: it takes the job out of the state the next checkpoint
 * saves, so its DELETE is logged first, like a client's delete, or the job stays (issue 9).
 *
 * Allocation failure aborts (the Redis zmalloc stance): every structure here is bounded by
 * the number of live jobs, which the per-queue limits and the disk bound. A job's extension
 * (queue.h) is the exception on the client paths that take one (a put with a delay, ttl or
 * long ttr; a reserve; a wait): it is allocated before anything is logged, and its failure is
 * QUEUE_EFULL (a put or a beanstalkd reserve-job refused, retryable, as under the memory
 * bound), a reserve that delivers fewer jobs, or a wait answered at once.
 */
#include "queue_internal.h"

#include "alloc_fail.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "le.h"

#define QUEUE_DEFAULT_TTR_MS 30000
#define QUEUE_DEFAULT_MAX_ATTEMPTS 10
#define QUEUE_DEFAULT_IDEM_WINDOW_MS (24LL * 3600 * 1000)
/* Idempotency keys remembered at most (--max-idempotency-keys): one costs its struct (64
 * bytes), a map slot (~24) and its bytes (queue name + key, ~60 typical, 456 at most), so
 * 1 Mi keys is ~150 MiB typical, ~550 MiB worst; and it covers a day's window at 12 keyed
 * puts a second, or an hour's at 290. Past it the oldest key goes first, which only shortens
 * the window of the oldest puts. */
#define QUEUE_DEFAULT_IDEM_KEYS_MAX (1024u * 1024)
/* Queues at most (--max-queues). An idle queue costs its struct (~400 bytes), two empty heaps
 * and a map slot, ~0.5 KiB: 64 Ki of them is ~32 MiB, little beside the jobs. Deployments name
 * tens to thousands of queues; a client that names one per job or per typo hits the limit
 * with a clear error (TOO_MANY_QUEUES) long before memory runs out, and empty queues without
 * settings are forgotten anyway (queue_forget.c). */
#define QUEUE_DEFAULT_QUEUES_MAX 65536u
/* DONE jobs remembered for wait/status: at ~270 bytes each (core and extension) plus
 * results, a few MiB. */
#define QUEUE_DEFAULT_DONE_KEEP 10000
/* ... and at most this many result bytes among them: results may be 64 KiB each, and 10,000
 * of those would be 640 MiB of memory nobody asked the server to hold. */
#define QUEUE_DONE_BYTES_MAX (64u * 1024 * 1024)
/* Timer events per tick: enough to drain a burst of expiries in a few turns while keeping
 * one loop turn short (each event is O(log n)). */
#define QUEUE_DEFAULT_TICK_WORK 4096

/* A record buffer on the stack must hold any fixed-size record plus a reason or result. */
#define QUEUE_RECORD_SMALL_MAX (RECORD_BURY_FIXED + LIMIT_REASON_MAX_BYTES)

static const char reason_max_attempts[] = "max_attempts";

/* Bytes of a delivery besides its body and queue name in a reply frame (ids, lease, attempt,
 * priority, deadline, length prefixes), rounded up. */
#define QUEUE_DELIVERY_OVERHEAD 64

const char *queue_strerror(int error)
{
    switch (error) {
    case QUEUE_ENOTFOUND: return "NOT_FOUND";
    case QUEUE_ELEASE: return "LEASE_EXPIRED";
    case QUEUE_EFULL: return "QUEUE_FULL";
    case QUEUE_EINVAL: return "INVALID";
    case QUEUE_ESTATE: return "WRONG_STATE";
    case QUEUE_ETOOBIG: return "TOO_LARGE";
    case QUEUE_ETOOMANY: return "TOO_MANY_QUEUES";
    case QUEUE_ENOMEM: return "OUT_OF_MEMORY";
    default: return "UNKNOWN";
    }
}

const char *job_state_name(enum job_state state)
{
    static const char *const names[] = {"pending", "ready", "delayed", "reserved", "dead",
                                        "done", "expired"};
    SPOOL_ASSERT((unsigned)state < sizeof(names) / sizeof(names[0]));
    return names[state];
}

static void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count, size);
    SPOOL_ASSERT(p != NULL);
    return p;
}

static void *xmemdup(const void *src, size_t len)
{
    void *p = malloc(len == 0 ? 1 : len);
    SPOOL_ASSERT(p != NULL);
    if (len > 0)
        memcpy(p, src, len);
    return p;
}

static bool ready_less(const void *a, const void *b)
{
    const struct job *x = a, *y = b;
    return x->priority != y->priority ? x->priority < y->priority : x->id < y->id;
}

/* A queue's delayed heap holds jobs (a DELAYED job has its extension). */
static bool delayed_less(const void *a, const void *b)
{
    const struct job *x = a, *y = b;
    int64_t xt = queue_job_ext_of(x)->timer_ns, yt = queue_job_ext_of(y)->timer_ns;
    return xt != yt ? xt < yt : x->id < y->id;
}

/* The global delay, lease and ttl heaps hold extensions (their slots live there). */
static bool timer_less(const void *a, const void *b)
{
    const struct job_ext *x = a, *y = b;
    return x->timer_ns != y->timer_ns ? x->timer_ns < y->timer_ns : x->job->id < y->job->id;
}

static bool ttl_less(const void *a, const void *b)
{
    const struct job_ext *x = a, *y = b;
    return x->expires_at_ns != y->expires_at_ns ? x->expires_at_ns < y->expires_at_ns
                                                : x->job->id < y->job->id;
}

static bool reserver_less(const void *a, const void *b)
{
    const struct queue_reserver *x = a, *y = b;
    return x->deadline_ns < y->deadline_ns;
}

static bool waiter_less(const void *a, const void *b)
{
    const struct queue_job_waiter *x = a, *y = b;
    return x->deadline_ns < y->deadline_ns;
}

void queue_config_defaults(struct queue_config *config)
{
    memset(config, 0, sizeof(*config));
    config->default_ttr_ms = QUEUE_DEFAULT_TTR_MS;
    config->default_max_attempts = QUEUE_DEFAULT_MAX_ATTEMPTS;
    config->idempotency_window_ms = QUEUE_DEFAULT_IDEM_WINDOW_MS;
    config->idempotency_keys_max = QUEUE_DEFAULT_IDEM_KEYS_MAX;
    config->queues_max = QUEUE_DEFAULT_QUEUES_MAX;
    config->done_keep_max = QUEUE_DEFAULT_DONE_KEEP;
    config->tick_work_max = QUEUE_DEFAULT_TICK_WORK;
    /* A fixed key for tests; spoold draws its own from getrandom(2) (server.c). */
    config->lease_key = (struct siphash_key){0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};
}

struct queue_state *queue_state_create(const struct queue_config *config)
{
    struct queue_state *state = xcalloc(1, sizeof(*state));
    state->config = *config;
    if (state->config.tick_work_max == 0)
        state->config.tick_work_max = QUEUE_DEFAULT_TICK_WORK;
    jobtab_init(&state->jobs);
    job_pool_init(&state->pool);
    body_cache_init(&state->bodies, config->body_cache_bytes_max, &state->pool);
    int prefault_rc = config->prefault ? job_pool_prefault_start(&state->pool) : 0;
    if (prefault_rc != 0)
        fprintf(stderr, "level=warn msg=\"no prefault thread: job memory is mapped on the "
                        "loop\" error=\"%s\"\n", strerror(-prefault_rc));
    strmap_init(&state->queues);
    strmap_init(&state->keys);
    list_init(&state->idem_order);
    heap_init(&state->delay_heap, timer_less, offsetof(struct job_ext, timer_slot));
    runheap_init(&state->leases, timer_less, offsetof(struct job_ext, timer_slot),
                 offsetof(struct job_ext, lease_link));
    heap_init(&state->ttl_heap, ttl_less, offsetof(struct job_ext, ttl_slot));
    heap_init(&state->reserver_timeouts, reserver_less,
              offsetof(struct queue_reserver, timeout_slot));
    heap_init(&state->waiter_timeouts, waiter_less,
              offsetof(struct queue_job_waiter, timeout_slot));
    list_init(&state->done);
    list_init(&state->to_serve);
    list_init(&state->idle);
    idmap_init(&state->segments);
    idmap_init(&state->job_counts);
    state->next_id = 1;
    return state;
}

const struct job_ext queue_job_ext_none = {.timer_slot = HEAP_NONE, .ttl_slot = HEAP_NONE};

void queue_job_ext_adopt(struct queue_state *state, struct job *job, struct job_ext *ext)
{
    SPOOL_ASSERT(!job->has_ext);
    memset(ext, 0, sizeof(*ext));
    ext->job = job;
    ext->timer_slot = HEAP_NONE;
    ext->ttl_slot = HEAP_NONE;
    list_init(&ext->waiters);
    list_init(&ext->done_link);
    list_init(&ext->state_link);
    /* The core's one pointer becomes the extension's: the body pointer moves in. */
    body_cache_rehome(&state->bodies, &job->ref.body, &ext->body);
    job->ref.ext = ext;
    job->has_ext = 1;
}

/* An extension for job, attached; NULL when the system has no memory for it. */
static struct job_ext *ext_try_attach(struct queue_state *state, struct job *job)
{
    SPOOL_ASSERT(!job->has_ext);
    struct job_ext *ext = job_pool_try_alloc(&state->pool, sizeof(*ext));
    if (ext == NULL)
        return NULL;
    queue_job_ext_adopt(state, job, ext);
    return ext;
}

int queue_job_ext_prepare(struct queue_state *state, struct job *job)
{
    if (!job->has_ext && ext_try_attach(state, job) == NULL)
        return QUEUE_EFULL;
    return 0;
}

struct job_ext *queue_job_ext(struct queue_state *state, struct job *job)
{
    if (job->has_ext)
        return job->ref.ext;
    struct job_ext *ext = ext_try_attach(state, job);
    SPOOL_ASSERT(ext != NULL); /* the paths that must not abort called queue_job_ext_prepare */
    return ext;
}

/* Free the job's extension: it is in no heap and has no waiters, or the state is being
 * destroyed. Its body pointer moves back to the core. */
static void ext_free(struct queue_state *state, struct job *job)
{
    struct job_ext *ext = queue_job_ext_of(job);
    if (ext == NULL)
        return;
    SPOOL_ASSERT(ext->job == job);
    free(ext->reason);
    free(ext->result);
    job->has_ext = 0;
    job->ref.body = NULL;
    body_cache_rehome(&state->bodies, &ext->body, &job->ref.body);
    job_pool_free(&state->pool, ext, sizeof(*ext));
}

/* A READY job keeps its extension only for what READY still shows: a run-at, a ttl, the
 * worker's last error, waiters. The rest of its fields are zero again (nothing reads a lease,
 * a deadline or a settle time of a READY job). */
void queue_job_ext_trim(struct queue_state *state, struct job *job)
{
    struct job_ext *ext = queue_job_ext_of(job);
    if (ext == NULL)
        return;
    /* out of the delay heap and the leases (their heap and runs) */
    SPOOL_ASSERT(ext->timer_slot == HEAP_NONE && !list_linked(&ext->lease_link));
    if (ext->run_at_ms != 0 || ext->expires_at_ms != 0 || ext->reason != NULL ||
        !list_empty(&ext->waiters) || job->ttr_ms_core == QUEUE_TTR_IN_EXT)
        return;
    SPOOL_ASSERT(ext->ttl_slot == HEAP_NONE); /* no ttl */
    ext_free(state, job);
}

static void job_free(struct queue_state *state, struct job *job)
{
    queue_count_drop(state, job->id);
    body_cache_drop(&state->bodies, queue_job_body_slot(job));
    ext_free(state, job);
    job_pool_free(&state->pool, job, sizeof(*job));
}

void queue_state_destroy(struct queue_state *state)
{
    if (state == NULL)
        return;
    JOBTAB_EACH(&state->jobs, job) job_free(state, job);
    STRMAP_EACH(&state->queues, entry)
    {
        struct queue *queue = entry->value;
        heap_free(&queue->ready);
        heap_free(&queue->delayed);
        free(queue->segs);
        free(queue->ready_age.ring);
        free(queue);
    }
    STRMAP_EACH(&state->keys, entry)
    {
        free(entry->value); /* an idem and its key are one block (idem_alloc) */
    }
    jobtab_free(&state->jobs);
    strmap_free(&state->queues);
    strmap_free(&state->keys);
    idmap_free(&state->segments);
    free(state->pending);
    heap_free(&state->delay_heap);
    runheap_free(&state->leases);
    idmap_free(&state->job_counts); /* empty: job_free dropped every entry */
    heap_free(&state->ttl_heap);
    heap_free(&state->reserver_timeouts);
    heap_free(&state->waiter_timeouts);
    queue_checkpoint_abort(state);
    free(state->record_buf);
    body_cache_destroy(&state->bodies); /* empty: every job dropped its body */
    job_pool_destroy(&state->pool);
    free(state);
}

void queue_set_emit(struct queue_state *state, queue_emit_fn emit, void *ctx)
{
    state->config.emit = emit;
    state->config.emit_ctx = ctx;
}

/* Emit a record; during replay nothing is emitted (the record is already in the log). */
static int emit(struct queue_state *state, uint8_t type, const void *data, size_t len,
                struct log_pos *pos)
{
    struct log_pos ignored;
    if (pos == NULL)
        pos = &ignored;
    memset(pos, 0, sizeof(*pos));
    if (state->replaying || state->config.emit == NULL)
        return 0;
    SPOOL_ASSERT(len <= UINT32_MAX);
    int err = state->config.emit(state->config.emit_ctx, type, data, (uint32_t)len, pos);
    if (err == 0) {
        SPOOL_ASSERT(pos->seq > state->emit_seq_max);
        state->emit_seq_max = pos->seq;
    }
    return err;
}

int queue_emit(struct queue_state *state, uint8_t type, const void *data, size_t len,
               struct log_pos *pos)
{
    return emit(state, type, data, len, pos);
}

/* The queue of the last lookup, if it has this name (NULL otherwise). */
static struct queue *queue_cached(const struct queue_state *state, const char *name,
                                  uint32_t name_len)
{
    struct queue *queue = state->last_queue;
    if (queue != NULL && queue->name_len == name_len && memcmp(queue->name, name, name_len) == 0)
        return queue;
    return NULL;
}

struct queue *queue_find(struct queue_state *state, const char *name, uint32_t name_len)
{
    struct queue *queue = queue_cached(state, name, name_len);
    if (queue != NULL)
        return queue;
    queue = strmap_get(&state->queues, name, name_len);
    if (queue != NULL)
        state->last_queue = queue;
    return queue;
}

int queue_get(struct queue_state *state, const char *name, uint32_t name_len, struct queue **out)
{
    struct queue *queue = queue_cached(state, name, name_len);
    if (queue != NULL) { /* its name was checked when it was created */
        *out = queue;
        return 0;
    }
    if (!record_queue_name_valid(name, name_len))
        return QUEUE_EINVAL;
    queue = queue_find(state, name, name_len);
    if (queue == NULL) {
        /* Replay and checkpoint loads recreate what was there: the limit is for new names. */
        if (!state->replaying && state->config.queues_max != 0 &&
            state->queues.count >= state->config.queues_max)
            return QUEUE_ETOOMANY;
        queue = strmap_reserve(&state->queues, 1) == 0 ? calloc(1, sizeof(*queue)) : NULL;
        if (queue == NULL)
            return QUEUE_ENOMEM; /* a put naming a new queue is refused like any other */
        memcpy(queue->name, name, name_len);
        queue->name_len = name_len;
        queue->default_max_attempts = UINT32_MAX;
        heap_init(&queue->ready, ready_less, offsetof(struct job, queue_slot));
        heap_init(&queue->delayed, delayed_less, offsetof(struct job, queue_slot));
        list_init(&queue->dead);
        list_init(&queue->reservers);
        list_init(&queue->serve_link);
        list_init(&queue->idle_link);
        strmap_put(&state->queues, queue->name, name_len, queue);
        queue_idle_mark(state, queue); /* a reserve or a failed put may leave it empty */
        state->totals.queues++;
        state->last_queue = queue;
    }
    *out = queue;
    return 0;
}

/* Apply the cached count change to the map. */
static void segment_flush(struct queue_state *state)
{
    if (state->segment_cache_delta == 0)
        return;
    uint64_t id = state->segment_cache_id;
    uintptr_t count = (uintptr_t)idmap_get(&state->segments, id);
    SPOOL_ASSERT(state->segment_cache_delta > 0 ||
                 count >= (uintptr_t)-state->segment_cache_delta);
    count = (uintptr_t)((int64_t)count + state->segment_cache_delta);
    state->segment_cache_delta = 0;
    if (count == 0)
        idmap_remove(&state->segments, id);
    else
        idmap_put(&state->segments, id, (void *)count);
}

/* Count a job into (delta 1) or out of (delta -1) the segment of its PUT record. A producer's
 * jobs go to one segment at a time, so changes gather in a one-segment cache and reach the
 * map when another segment comes up: one map update per run instead of one per job. */
static void segment_add(struct queue_state *state, uint64_t segment_id, int64_t delta)
{
    if (segment_id == 0)
        return; /* tests without a log */
    if (segment_id != state->segment_cache_id) {
        segment_flush(state);
        state->segment_cache_id = segment_id;
    }
    state->segment_cache_delta += delta;
    SPOOL_DEBUG_ASSERT((int64_t)queue_segment_live(state, segment_id) >= 0);
}

/* The first index of queue->segs whose segment is >= segment_id. Jobs are put in log order,
 * so the newest segment answers most calls. */
static uint32_t queue_segs_lower(const struct queue *queue, uint64_t segment_id)
{
    uint32_t n = queue->seg_count;
    if (n > 0 && queue->segs[n - 1].segment_id == segment_id)
        return n - 1;
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (queue->segs[mid].segment_id < segment_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

void queue_segs_add(struct queue *queue, uint64_t segment_id, int64_t delta)
{
    SPOOL_ASSERT(delta == 1 || delta == -1);
    uint32_t at = queue_segs_lower(queue, segment_id);
    struct queue_segment_count *seg = at < queue->seg_count ? &queue->segs[at] : NULL;
    if (seg != NULL && seg->segment_id == segment_id) {
        SPOOL_ASSERT(delta > 0 || seg->count > 0);
        seg->count = (uint64_t)((int64_t)seg->count + delta);
        if (seg->count == 0) {
            memmove(seg, seg + 1, (queue->seg_count - at - 1) * sizeof(*seg));
            queue->seg_count--;
        }
        return;
    }
    SPOOL_ASSERT(delta > 0); /* a job leaving counted itself in its segment */
    if (queue->seg_count == queue->seg_capacity) {
        queue->seg_capacity = queue->seg_capacity == 0 ? 4 : queue->seg_capacity * 2;
        queue->segs = realloc(queue->segs, queue->seg_capacity * sizeof(*queue->segs));
        SPOOL_ASSERT(queue->segs != NULL);
    }
    memmove(queue->segs + at + 1, queue->segs + at, (queue->seg_count - at) * sizeof(*queue->segs));
    queue->segs[at] = (struct queue_segment_count){.segment_id = segment_id, .count = 1};
    queue->seg_count++;
}

struct job **queue_jobs_of(struct queue_state *state, const struct queue *queue, uint32_t *count)
{
    uint64_t want = queue_live_count(queue);
    SPOOL_ASSERT(want <= UINT32_MAX);
    struct job **jobs = xcalloc(want + 1, sizeof(*jobs));
    uint32_t n = 0;
    JOBTAB_EACH(&state->jobs, job)
    {
        if (job->queue == queue && queue_job_live(job)) {
            SPOOL_ASSERT(n < want);
            jobs[n++] = job;
        }
    }
    SPOOL_ASSERT(n == want);
    *count = n;
    return jobs;
}

void queue_job_set_pos(struct job *job, struct log_pos pos)
{
    SPOOL_ASSERT(queue_pos_packable(pos)); /* a checkpoint's are checked when loaded */
    /* Counted: queue_job_account ran after the first position (put, replay, load). */
    bool counted = job->pos_seq != 0 && job->queue != NULL && queue_job_live(job);
    uint64_t old_segment_id = queue_job_pos(job).segment_id;
    job->pos_seq = pos.seq;
    job->pos_segment_back = (uint32_t)(pos.seq - pos.segment_id);
    job->pos_batch_page =
        (uint32_t)(pos.batch_offset / QUEUE_POS_ALIGN) & ((1u << QUEUE_POS_PAGE_BITS) - 1);
    if (counted && old_segment_id != pos.segment_id) {
        queue_segs_add(job->queue, old_segment_id, -1);
        queue_segs_add(job->queue, pos.segment_id, 1);
    }
}

uint64_t queue_live_count(const struct queue *queue)
{
    const struct queue_stats *s = &queue->stats;
    return s->pending + s->ready + s->delayed + s->reserved + s->dead;
}

void queue_each_live(struct queue_state *state, void (*fn)(void *ctx, struct job *job), void *ctx)
{
    JOBTAB_EACH(&state->jobs, job)
    {
        if (queue_job_live(job))
            fn(ctx, job);
    }
}

uint64_t queue_segment_live(const struct queue_state *state, uint64_t segment_id)
{
    int64_t count = (int64_t)(uintptr_t)idmap_get(&state->segments, segment_id);
    if (segment_id == state->segment_cache_id)
        count += state->segment_cache_delta;
    return (uint64_t)count;
}

void queue_job_move(struct queue_state *state, struct job *job, struct log_pos pos)
{
    SPOOL_ASSERT(queue_job_live(job) && job->state != JOB_PENDING);
    SPOOL_ASSERT(pos.seq > queue_job_pos(job).seq); /* a copy is always newer */
    if (state->walk != NULL)
        queue_checkpoint_capture(state, job); /* the walk saves the position of its anchor */
    segment_add(state, queue_job_pos(job).segment_id, -1);
    queue_job_set_pos(job, pos);
    segment_add(state, pos.segment_id, 1);
}

_Static_assert(sizeof(struct job) <= JOB_POOL_BLOCK_MAX, "a job must fit a job_pool block");

static struct job *job_block(struct queue_state *state, size_t size)
{
    return job_pool_alloc(&state->pool, size);
}

struct job *queue_job_new(struct queue_state *state, struct queue *queue, uint64_t id,
                          const void *body, uint32_t body_len, bool body_known)
{
    struct job *job = job_block(state, sizeof(*job));
    if (body_known) {
        job->body_len = body_len;
        /* Out of memory: the body is in the log (or about to be), where a delivery reads it
         * back from; refusing the put now would be worse than a read later. */
        body_cache_put(&state->bodies, queue_job_body_slot(job), body, body_len);
    }
    job->id = id;
    job->queue = queue;
    job->state = JOB_PENDING;
    job->queue_slot = HEAP_NONE;
    struct job *replaced = jobtab_put(&state->jobs, id, job);
    SPOOL_ASSERT(replaced == NULL); /* ids are never reused */
    if (id >= state->next_id)
        state->next_id = id + 1;
    state->totals.jobs++;
    return job;
}

/* Called once the job's pos and body_len are set. */
void queue_job_account(struct queue_state *state, struct job *job)
{
    segment_add(state, queue_job_pos(job).segment_id, 1);
    queue_segs_add(job->queue, queue_job_pos(job).segment_id, 1);
    job->queue->stats.bytes += job->body_len;
    job->queue->stats.total_put++;
}

static void ttl_track(struct queue_state *state, struct job *job)
{
    struct job_ext *ext = queue_job_ext_of(job);
    if (ext != NULL && ext->expires_at_ms != 0 && !heap_contains(&state->ttl_heap, ext))
        heap_push(&state->ttl_heap, ext);
}

static void mark_serve(struct queue_state *state, struct queue *queue)
{
    if (!list_empty(&queue->reservers) && !list_linked(&queue->serve_link))
        list_insert_tail(&state->to_serve, &queue->serve_link);
}

void queue_job_enter_ready(struct queue_state *state, struct job *job, struct queue_time now)
{
    struct queue *queue = job->queue;
    job->state = JOB_READY;
    queue_job_ext_trim(state, job);
    heap_push(&queue->ready, job);
    queue_ready_age_enter(queue, job, now.mono_ns);
    queue->stats.ready++;
    queue->stats.ready_urgent += job->priority < QUEUE_URGENT_PRIORITY;
    state->totals.ready++;
    ttl_track(state, job);
    mark_serve(state, queue);
}

/* Until job->timer_ns (queue_job_set_run_at). */
static void job_enter_delayed(struct queue_state *state, struct job *job)
{
    SPOOL_ASSERT(queue_job_ext_of(job) != NULL && queue_job_ext_of(job)->run_at_ms != 0);
    job->state = JOB_DELAYED;
    heap_push(&job->queue->delayed, job);
    heap_push(&state->delay_heap, queue_job_ext_of(job));
    job->queue->stats.delayed++;
    state->totals.delayed++;
    ttl_track(state, job);
}

void queue_job_enter_dead(struct queue_state *state, struct job *job, const char *reason,
                          uint32_t reason_len, int64_t settled_ms)
{
    struct job_ext *ext = queue_job_ext(state, job);
    job->state = JOB_DEAD;
    ext->settled_ms = settled_ms;
    free(ext->reason);
    ext->reason = xmemdup(reason, reason_len);
    ext->reason_len = reason_len;
    list_insert_tail(&job->queue->dead, &ext->state_link);
    job->queue->stats.dead++;
    state->totals.dead++;
    ttl_track(state, job);
    queue_notify_waiters(state, job, true);
}

static void job_enter_reserved(struct queue_state *state, struct job *job,
                               struct queue_owner *owner, int64_t deadline_ms,
                               struct queue_time now)
{
    struct job_ext *ext = queue_job_ext_of(job); /* lease() prepared it */
    SPOOL_ASSERT(ext != NULL);
    job->state = JOB_RESERVED;
    ext->deadline_ms = deadline_ms;
    /* The monotonic instant of the deadline the worker is told: at least ttr from now (the
     * deadline was rounded up from now's wall reading) and not before that deadline. */
    ext->timer_ns = queue_mono_at(now, deadline_ms);
    SPOOL_ASSERT(ext->timer_ns >= now.mono_ns);
    ext->owner = owner;
    runheap_push(&state->leases, ext);
    if (owner != NULL)
        list_insert_tail(&owner->jobs, &ext->state_link);
    job->queue->stats.reserved++;
    state->totals.reserved++;
}

void queue_job_leave(struct queue_state *state, struct job *job)
{
    struct queue *queue = job->queue;
    if (state->walk != NULL) /* every change of a job starts here: capture it first */
        queue_checkpoint_capture(state, job);
    switch (job->state) {
    case JOB_PENDING: /* queue_durable took it off the pending ring */
        state->totals.pending--;
        queue->stats.pending--;
        break;
    case JOB_READY:
        heap_remove(&queue->ready, job);
        queue_ready_age_leave(queue, job);
        queue->stats.ready--;
        queue->stats.ready_urgent -= job->priority < QUEUE_URGENT_PRIORITY;
        state->totals.ready--;
        break;
    case JOB_DELAYED:
        heap_remove(&queue->delayed, job);
        heap_remove(&state->delay_heap, queue_job_ext_of(job));
        queue->stats.delayed--;
        state->totals.delayed--;
        break;
    case JOB_RESERVED:
        runheap_remove(&state->leases, queue_job_ext_of(job));
        if (queue_job_ext_of(job)->owner != NULL)
            list_unlink(&queue_job_ext_of(job)->state_link);
        queue_job_ext_of(job)->owner = NULL;
        queue_job_ext_of(job)->lease_token = 0;
        queue->stats.reserved--;
        state->totals.reserved--;
        break;
    case JOB_DEAD:
        list_unlink(&queue_job_ext_of(job)->state_link);
        queue->stats.dead--;
        state->totals.dead--;
        break;
    case JOB_DONE:
    case JOB_EXPIRED:
        SPOOL_ASSERT(!"a settled job is in no state container");
    }
}

/* Stop being live: out of the queue's live list, the segment counts and the ttl heap. */
static void job_unlive(struct queue_state *state, struct job *job)
{
    segment_add(state, queue_job_pos(job).segment_id, -1);
    queue_segs_add(job->queue, queue_job_pos(job).segment_id, -1);
    SPOOL_ASSERT(job->queue->stats.bytes >= job->body_len);
    job->queue->stats.bytes -= job->body_len;
    if (queue_job_ext_of(job) != NULL && heap_contains(&state->ttl_heap, queue_job_ext_of(job)))
        heap_remove(&state->ttl_heap, queue_job_ext_of(job));
    state->totals.jobs--;
    queue_idle_mark(state, job->queue);
}

void queue_job_remove(struct queue_state *state, struct job *job)
{
    queue_job_leave(state, job);
    job_unlive(state, job);
    jobtab_remove(&state->jobs, job->id);
    queue_notify_waiters(state, job, false);
    job_free(state, job);
}

static void done_trim(struct queue_state *state)
{
    while (state->done_count > state->config.done_keep_max ||
           state->done_bytes > QUEUE_DONE_BYTES_MAX) {
        struct job *old = LIST_ENTRY(list_first(&state->done), struct job_ext, done_link)->job;
        list_unlink(&queue_job_ext_of(old)->done_link);
        jobtab_remove(&state->jobs, old->id);
        SPOOL_ASSERT(old->queue->stats.settled > 0);
        old->queue->stats.settled--;
        if (old->state == JOB_EXPIRED)
            old->queue->stats.expired--;
        queue_idle_mark(state, old->queue);
        state->done_count--;
        state->done_bytes -= queue_job_ext_of(old)->result_len;
        job_free(state, old);
    }
}

void queue_done_forget_queue(struct queue_state *state, struct queue *queue)
{
    struct list_link *link = state->done.next;
    while (link != &state->done && queue->stats.settled > 0) {
        struct job *old = LIST_ENTRY(link, struct job_ext, done_link)->job;
        link = link->next;
        if (old->queue != queue)
            continue;
        list_unlink(&queue_job_ext_of(old)->done_link);
        jobtab_remove(&state->jobs, old->id);
        queue->stats.settled--;
        if (old->state == JOB_EXPIRED)
            queue->stats.expired--;
        state->done_count--;
        state->done_bytes -= queue_job_ext_of(old)->result_len;
        job_free(state, old);
    }
    SPOOL_ASSERT(queue->stats.settled == 0);
    SPOOL_ASSERT(queue->stats.expired == 0);
}

void queue_job_done(struct queue_state *state, struct job *job, const void *result,
                    uint32_t result_len, int64_t settled_ms)
{
    queue_job_leave(state, job);
    job_unlive(state, job);
    struct job_ext *ext = queue_job_ext(state, job); /* a RESERVED job has one */
    job->state = JOB_DONE;
    ext->settled_ms = settled_ms;
    queue_count_drop(state, job->id);
    body_cache_drop(&state->bodies, queue_job_body_slot(job));
    if (result_len > 0) {
        ext->result = xmemdup(result, result_len);
        ext->result_len = result_len;
    }
    list_insert_tail(&state->done, &ext->done_link);
    state->done_count++;
    state->done_bytes += ext->result_len;
    job->queue->stats.settled++;
    queue_notify_waiters(state, job, true);
    done_trim(state);
}

void queue_job_expired(struct queue_state *state, struct job *job, int64_t settled_ms)
{
    queue_job_leave(state, job);
    job_unlive(state, job);
    job->state = JOB_EXPIRED;
    struct job_ext *ext = queue_job_ext(state, job); /* a job with a ttl has one */
    ext->settled_ms = settled_ms;
    queue_count_drop(state, job->id);
    body_cache_drop(&state->bodies, queue_job_body_slot(job));
    list_insert_tail(&state->done, &ext->done_link);
    state->done_count++;
    job->queue->stats.settled++;
    job->queue->stats.expired++;
    queue_notify_waiters(state, job, true);
    done_trim(state);
}

void queue_job_set_ttr(struct queue_state *state, struct job *job, uint64_t ttr_ms)
{
    if (ttr_ms < QUEUE_TTR_IN_EXT) {
        job->ttr_ms_core = (uint32_t)ttr_ms;
        return;
    }
    queue_job_ext(state, job)->ttr_ms = ttr_ms;
    job->ttr_ms_core = QUEUE_TTR_IN_EXT;
}

void queue_job_set_run_at(struct queue_state *state, struct job *job, int64_t run_at_ms,
                          struct queue_time now)
{
    if (run_at_ms == 0 && !job->has_ext)
        return;
    struct job_ext *ext = queue_job_ext(state, job);
    ext->run_at_ms = run_at_ms;
    ext->timer_ns = run_at_ms != 0 ? queue_mono_at(now, run_at_ms) : 0;
}

void queue_job_set_expires_at(struct queue_state *state, struct job *job, int64_t expires_at_ms,
                              struct queue_time now)
{
    if (expires_at_ms == 0 && !job->has_ext)
        return;
    struct job_ext *ext = queue_job_ext(state, job);
    ext->expires_at_ms = expires_at_ms;
    ext->expires_at_ns = expires_at_ms != 0 ? queue_mono_at(now, expires_at_ms) : 0;
}

/* timer_ns was set with run_at_ms (queue_job_set_run_at), when the job was put, released or
 * read back: a wall clock step since then does not move it. */
void queue_job_place(struct queue_state *state, struct job *job, struct queue_time now)
{
    if (queue_job_ext_of(job) != NULL && queue_job_ext_of(job)->run_at_ms != 0 &&
        queue_job_ext_of(job)->timer_ns > now.mono_ns)
        job_enter_delayed(state, job);
    else
        queue_job_enter_ready(state, job, now);
}

/* Bytes of a scoped key: the queue name, a 0 byte, the client's key. */
#define IDEM_SCOPED_LEN_MAX (LIMIT_QUEUE_NAME_MAX_BYTES + 1 + LIMIT_KEY_MAX_BYTES)

static uint32_t idem_scoped(char *out, const char *queue, uint32_t queue_len, const char *key,
                            uint32_t key_len)
{
    SPOOL_ASSERT(queue_len <= LIMIT_QUEUE_NAME_MAX_BYTES);
    SPOOL_ASSERT(key_len <= LIMIT_KEY_MAX_BYTES);
    memcpy(out, queue, queue_len);
    out[queue_len] = 0;
    memcpy(out + queue_len + 1, key, key_len);
    return queue_len + 1 + key_len;
}

void queue_idem_free(struct queue_state *state, struct idem *idem)
{
    list_unlink(&idem->order);
    strmap_remove(&state->keys, idem->key, idem->key_len);
    free(idem);
}

struct idem *queue_idem_alloc(struct queue_state *state, uint32_t scoped_len)
{
    if (strmap_reserve(&state->keys, 1) != 0)
        return NULL;
    struct idem *idem = alloc_fail_now() ? NULL : malloc(sizeof(*idem) + scoped_len);
    if (idem == NULL)
        return NULL;
    memset(idem, 0, sizeof(*idem));
    idem->key = (char *)(idem + 1);
    return idem;
}

void queue_idem_add(struct queue_state *state, const char *queue, uint32_t queue_len,
                    const char *key, uint32_t key_len, uint64_t job_id, int64_t created_ms,
                    struct queue_time now, struct idem *spare)
{
    char scoped[IDEM_SCOPED_LEN_MAX];
    uint32_t scoped_len = idem_scoped(scoped, queue, queue_len, key, key_len);
    if (strmap_get(&state->keys, scoped, scoped_len) != NULL) {
        free(spare);
        return;
    }
    uint64_t keys_max = state->config.idempotency_keys_max;
    while (keys_max != 0 && state->keys.count >= keys_max) {
        queue_idem_free(state, LIST_ENTRY(list_first(&state->idem_order), struct idem, order));
        state->totals.keys_evicted++;
    }
    struct idem *idem = spare != NULL ? spare : queue_idem_alloc(state, scoped_len);
    SPOOL_ASSERT(idem != NULL); /* replay and checkpoint load: as every structure here */
    memcpy(idem->key, scoped, scoped_len);
    idem->key_len = scoped_len;
    idem->queue_len = queue_len;
    idem->job_id = job_id;
    idem->created_ms = created_ms;
    idem->expires_ns =
        queue_mono_at(now, queue_add_sat(created_ms, state->config.idempotency_window_ms));
    list_insert_tail(&state->idem_order, &idem->order);
    strmap_put(&state->keys, idem->key, scoped_len, idem);
}

/* A walk of every key: PURGE and DELETE_QUEUE are rare operator actions, and a per-queue list
 * would put a link in every key for them. */
void queue_idem_forget_queue(struct queue_state *state, const struct queue *queue)
{
    struct list_link *link = state->idem_order.next;
    while (link != &state->idem_order) {
        struct idem *idem = LIST_ENTRY(link, struct idem, order);
        link = link->next;
        if (idem->queue_len == queue->name_len &&
            memcmp(idem->key, queue->name, queue->name_len) == 0)
            queue_idem_free(state, idem);
    }
}

static uint64_t effective_ttr(const struct queue_state *state, const struct queue *queue,
                              uint64_t ttr_ms)
{
    if (ttr_ms != 0)
        return ttr_ms;
    return queue->default_ttr_ms != 0 ? queue->default_ttr_ms : state->config.default_ttr_ms;
}

static uint32_t effective_max_attempts(const struct queue_state *state,
                                       const struct queue *queue, int64_t max_attempts)
{
    if (max_attempts >= 0)
        return max_attempts > UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)max_attempts;
    return queue->default_max_attempts != UINT32_MAX ? queue->default_max_attempts
                                                      : state->config.default_max_attempts;
}

void queue_defaults_get(const struct queue_state *state, const struct queue *queue,
                        uint64_t *ttr_ms, uint32_t *max_attempts)
{
    *ttr_ms = effective_ttr(state, queue, 0);
    *max_attempts = effective_max_attempts(state, queue, -1);
}

/* More jobs or bytes than the queue's limits allow even when it is empty: waiting for room
 * would not help, so this is TOO_LARGE, not the retryable QUEUE_FULL. */
static bool never_fits(const struct queue_state *state, const struct queue *queue, uint64_t jobs,
                       uint64_t bytes)
{
    uint64_t max_jobs = state->config.max_jobs_per_queue;
    uint64_t max_bytes = state->config.max_bytes_per_queue;
    if (queue != NULL && queue->max_jobs != 0)
        max_jobs = queue->max_jobs;
    if (queue != NULL && queue->max_bytes != 0)
        max_bytes = queue->max_bytes;
    return (max_jobs != 0 && jobs > max_jobs) || (max_bytes != 0 && bytes > max_bytes);
}

static bool room_for(const struct queue_state *state, const struct queue *queue, uint64_t jobs,
                     uint64_t bytes)
{
    uint64_t max_jobs = state->config.max_jobs_per_queue;
    uint64_t max_bytes = state->config.max_bytes_per_queue;
    uint64_t live = 0, used = 0;
    if (queue != NULL) {
        const struct queue_stats *s = &queue->stats;
        if (queue->max_jobs != 0)
            max_jobs = queue->max_jobs;
        if (queue->max_bytes != 0)
            max_bytes = queue->max_bytes;
        live = s->ready + s->delayed + s->reserved + s->dead + s->pending;
        used = s->bytes;
    }
    if (max_jobs != 0 && live + jobs > max_jobs)
        return false;
    return max_bytes == 0 || used + bytes <= max_bytes;
}

/* 0, QUEUE_EFULL or QUEUE_ETOOBIG (see queue_room_for). */
static int room_check(const struct queue_state *state, const struct queue *queue, uint64_t jobs,
                      uint64_t bytes)
{
    if (never_fits(state, queue, jobs, bytes))
        return QUEUE_ETOOBIG;
    return room_for(state, queue, jobs, bytes) ? 0 : QUEUE_EFULL;
}

int queue_room_for(const struct queue_state *state, const char *name, uint32_t name_len,
                   uint64_t jobs, uint64_t bytes)
{
    return room_check(state, strmap_get(&state->queues, name, name_len), jobs, bytes);
}

int queue_room_for_queues(const struct queue_state *state, uint64_t new_queues)
{
    uint64_t max = state->config.queues_max;
    if (max != 0 && new_queues > 0 && state->queues.count + new_queues > max)
        return QUEUE_ETOOMANY;
    return 0;
}

bool queue_known(const struct queue_state *state, const char *name, uint32_t name_len)
{
    return strmap_get(&state->queues, name, name_len) != NULL;
}

/* An earlier put with the same key, still within the window. */
static bool put_duplicate(struct queue_state *state, const struct queue_put_args *args,
                          struct queue_time now, uint64_t *id, uint64_t *seq)
{
    if (args->key_len == 0)
        return false;
    char scoped[IDEM_SCOPED_LEN_MAX];
    uint32_t scoped_len =
        idem_scoped(scoped, args->queue, args->queue_len, args->key, args->key_len);
    struct idem *idem = strmap_get(&state->keys, scoped, scoped_len);
    if (idem == NULL || idem->expires_ns <= now.mono_ns)
        return false;
    *id = idem->job_id;
    struct job *job = jobtab_get(&state->jobs, idem->job_id);
    *seq = job != NULL ? queue_job_pos(job).seq : 0;
    return true;
}

/* A buffer of at least len bytes for encoding one record (valid until the next call), or NULL
 * when it cannot grow (a put is refused then; it grows once, to the largest record). */
static uint8_t *record_buf_try(struct queue_state *state, size_t len)
{
    if (len > state->record_buf_cap) {
        size_t cap = state->record_buf_cap == 0 ? 4096 : state->record_buf_cap;
        while (cap < len)
            cap *= 2;
        uint8_t *buf = realloc(state->record_buf, cap);
        if (buf == NULL)
            return NULL;
        state->record_buf = buf;
        state->record_buf_cap = cap;
    }
    return state->record_buf;
}

static uint8_t *record_buf(struct queue_state *state, size_t len)
{
    uint8_t *buf = record_buf_try(state, len);
    SPOOL_ASSERT(buf != NULL); /* an ack's record: no larger than the largest put's, mostly */
    return buf;
}

/* The name of the queue the last put used was checked then: only other names are checked. */
static int put_validate(const struct queue_state *state, const struct queue_put_args *args)
{
    if (queue_cached(state, args->queue, args->queue_len) == NULL &&
        !record_queue_name_valid(args->queue, args->queue_len))
        return QUEUE_EINVAL;
    if (args->key_len > LIMIT_KEY_MAX_BYTES || args->body_len > RECORD_BODY_LEN_MAX)
        return QUEUE_EINVAL;
    if (args->delay_ms < 0 || args->ttl_ms < 0 || args->run_at_ms < 0)
        return QUEUE_EINVAL;
    return 0;
}

void queue_ids_floor(struct queue_state *state, int64_t now_ms)
{
    if (now_ms <= 0)
        return; /* a clock before 1970: nothing to floor by (the recovered counter stands) */
    uint64_t floor = (uint64_t)now_ms < QUEUE_ID_FLOOR_MAX / QUEUE_IDS_PER_MS
                         ? (uint64_t)now_ms * QUEUE_IDS_PER_MS
                         : QUEUE_ID_FLOOR_MAX;
    if (floor > state->next_id)
        state->next_id = floor;
    SPOOL_ASSERT(state->next_id >= floor);
}

uint64_t queue_next_id(const struct queue_state *state)
{
    return state->next_id;
}

/* Room for one more PENDING job: taken before a put logs anything. */
static int pending_reserve(struct queue_state *state)
{
    if (state->pending_count < state->pending_capacity)
        return 0;
    uint32_t capacity = state->pending_capacity == 0 ? 64 : state->pending_capacity * 2;
    SPOOL_ASSERT(capacity > state->pending_capacity);
    struct job **ring = malloc(capacity * sizeof(*ring));
    if (ring == NULL)
        return QUEUE_EFULL; /* no memory: refused as the memory bound refuses, retryable */
    for (uint32_t i = 0; i < state->pending_count; i++)
        ring[i] = state->pending[(state->pending_head + i) & (state->pending_capacity - 1)];
    free(state->pending);
    state->pending = ring;
    state->pending_head = 0;
    state->pending_capacity = capacity;
    return 0;
}

static void pending_push(struct queue_state *state, struct job *job)
{
    SPOOL_ASSERT(state->pending_count < state->pending_capacity); /* pending_reserve */
    SPOOL_ASSERT(state->pending_count == 0 ||
                 queue_job_pos(state->pending[(state->pending_head + state->pending_count - 1) &
                                              (state->pending_capacity - 1)])
                         .seq <= queue_job_pos(job).seq); /* seq order (0: tests without a log) */
    uint32_t at = (state->pending_head + state->pending_count) & (state->pending_capacity - 1);
    state->pending[at] = job;
    state->pending_count++;
}

int queue_put_check(const struct queue_state *state, const struct queue_put_args *args)
{
    return put_validate(state, args);
}

/* Give back what a refused put had taken for its job before logging (NULL: nothing of that
 * kind). */
static void put_spares_free(struct queue_state *state, struct job_ext *ext, struct idem *idem)
{
    if (ext != NULL)
        job_pool_free(&state->pool, ext, sizeof(*ext));
    free(idem);
}

/* A put refused for want of memory before anything was logged: QUEUE_ENOMEM (answered as
 * QUEUE_FULL, retryable, as the memory bound refuses), counted like queue_put_reserve's. */
static int put_no_memory(struct queue_state *state, struct job_ext *ext, struct idem *idem)
{
    put_spares_free(state, ext, idem);
    state->totals.puts_refused_memory++;
    return QUEUE_ENOMEM;
}

int queue_put(struct queue_state *state, const struct queue_put_args *args,
              struct queue_time now, uint64_t *id, bool *duplicate, uint64_t *seq)
{
    int err = put_validate(state, args);
    if (err != 0)
        return err;
    *duplicate = put_duplicate(state, args, now, id, seq);
    if (*duplicate)
        return 0;
    struct queue *queue;
    err = queue_get(state, args->queue, args->queue_len, &queue);
    if (err != 0)
        return err;
    err = room_check(state, queue, 1, args->body_len);
    if (err == 0)
        err = queue_put_reserve(state, queue, args, 1);
    if (err != 0)
        return err;
    struct record_put put = {
        .id = state->next_id, .priority = args->priority,
        .max_attempts = effective_max_attempts(state, queue, args->max_attempts),
        .ttr_ms = effective_ttr(state, queue, args->ttr_ms),
        .created_ms = queue_time_wall_ms(now),
        .run_at_ms = args->run_at_ms != 0 ? args->run_at_ms
                     : args->delay_ms > 0 ? queue_wall_ms_after(now, args->delay_ms) : 0,
        .expires_at_ms = args->ttl_ms > 0 ? queue_wall_ms_after(now, args->ttl_ms) : 0,
        .queue = args->queue, .queue_len = args->queue_len, .key = args->key,
        .key_len = args->key_len, .body = args->body, .body_len = args->body_len,
    };
    if (pending_reserve(state) != 0)
        return put_no_memory(state, NULL, NULL);
    /* A run-at, a ttl or a long ttr needs the job's extension, and a key its idem: taken before
     * anything is logged, so that no memory is left to want once the PUT is in the log. */
    struct job_ext *ext = NULL;
    if (put.run_at_ms != 0 || put.expires_at_ms != 0 || put.ttr_ms >= QUEUE_TTR_IN_EXT) {
        ext = job_pool_try_alloc(&state->pool, sizeof(*ext));
        if (ext == NULL)
            return put_no_memory(state, NULL, NULL);
    }
    struct idem *idem = NULL;
    if (args->key_len > 0) {
        idem = queue_idem_alloc(state, args->queue_len + 1 + args->key_len);
        if (idem == NULL)
            return put_no_memory(state, ext, NULL);
    }
    size_t len = record_put_size(&put);
    uint8_t *buf = record_buf_try(state, len);
    if (buf == NULL)
        return put_no_memory(state, ext, idem);
    record_put_encode(&put, buf);
    struct log_pos pos;
    err = emit(state, RECORD_PUT, buf, len, &pos);
    if (err != 0) {
        put_spares_free(state, ext, idem);
        return err; /* the block held for the job serves the next put */
    }
    struct job *job = queue_job_new(state, queue, put.id, args->body, args->body_len, true);
    if (ext != NULL)
        queue_job_ext_adopt(state, job, ext);
    job->priority = put.priority;
    job->max_attempts = put.max_attempts;
    queue_job_set_ttr(state, job, put.ttr_ms);
    job->created_ms = put.created_ms;
    queue_job_set_run_at(state, job, put.run_at_ms, now);
    queue_job_set_expires_at(state, job, put.expires_at_ms, now);
    queue_job_set_pos(job, pos);
    queue_job_account(state, job);
    pending_push(state, job);
    state->totals.pending++;
    queue->stats.pending++;
    queue->metrics.puts++;
    if (args->key_len > 0)
        queue_idem_add(state, args->queue, args->queue_len, args->key, args->key_len, job->id,
                       put.created_ms, now, idem);
    *id = job->id;
    *seq = pos.seq;
    return 0;
}

void queue_durable(struct queue_state *state, uint64_t durable_seq_end, struct queue_time now)
{
    while (state->pending_count > 0) {
        struct job *job = state->pending[state->pending_head];
        if (queue_job_pos(job).seq >= durable_seq_end)
            break;
        state->pending_head = (state->pending_head + 1) & (state->pending_capacity - 1);
        state->pending_count--;
        queue_job_leave(state, job);
        queue_job_place(state, job, now);
    }
    queue_serve(state, now);
}

/* A duration in ms (a ttr from a client or the log), clamped into int64_t for time sums. */
static int64_t ms_signed(uint64_t ms)
{
    return ms > INT64_MAX ? INT64_MAX : (int64_t)ms;
}

/* A lease token is a capability: whoever presents it may ack, release, touch or bury the
 * delivery. It is a keyed PRF (SipHash-2-4) of (job id, attempt, counter) under a key drawn at
 * start and never shown, so a token a client holds says nothing about any other token, past
 * or next. The counter makes tokens of one job's deliveries distinct even at equal attempts
 * (a KICK resets attempts). 0 means "no lease", so it is skipped. */
static uint64_t lease_token_next(struct queue_state *state, const struct job *job)
{
    uint64_t token;
    do {
        uint8_t in[24];
        le_put_u64(in, job->id);
        le_put_u64(in + 8, job->attempts);
        le_put_u64(in + 16, ++state->lease_counter);
        token = siphash24(&state->config.lease_key, in, sizeof(in));
    } while (token == 0);
    return token;
}

/* The next job for this reserver: the reserver lists its queues in order of preference, so
 * the first queue (not paused) with a ready job gives its best (priority, id). */
static struct job *reserve_pick(struct queue_reserver *reserver)
{
    for (uint32_t i = 0; i < reserver->queue_count; i++) {
        struct queue *queue = reserver->queues[i];
        struct job *top = queue->paused ? NULL : heap_top(&queue->ready);
        if (top != NULL)
            return top;
    }
    return NULL;
}

/* The job has its extension (queue_job_ext_prepare): a lease needs it. */
static void lease(struct queue_state *state, struct job *job, struct queue_reserver *reserver,
                  struct queue_time now)
{
    SPOOL_ASSERT(queue_job_ext_of(job) != NULL);
    queue_job_leave(state, job);
    struct queue_metrics *m = &job->queue->metrics;
    m->deliveries++;
    if (job->attempts == 0) {
        int64_t waited_ms = queue_time_wall_ms(now) - job->created_ms;
        metrics_hist_observe(&m->wait_us, &metrics_queue_time_us,
                             waited_ms > 0 ? (uint64_t)waited_ms * 1000 : 0);
    }
    queue_job_ext_of(job)->lease_start_ns = now.mono_ns; /* the processing time's start */
    job->attempts++;
    queue_job_ext_of(job)->lease_token = lease_token_next(state, job);
    job_enter_reserved(state, job, reserver->detach ? NULL : reserver->owner,
                       queue_wall_ms_after(now, ms_signed(queue_job_ttr_ms(job))), now);
    uint8_t buf[RECORD_LEASE_SIZE];
    size_t len = record_lease_encode(job->id, job->attempts, buf);
    /* Lazy and best-effort: the reply does not wait, and a full batch only costs the count
     * of this delivery after a crash (documented in OPERATIONS.md). */
    (void)emit(state, RECORD_LEASE, buf, len, NULL);
}

static uint32_t reserve_now(struct queue_state *state, struct queue_reserver *reserver,
                            struct queue_time now, struct job **jobs)
{
    uint32_t count = 0;
    uint32_t count_max = reserver->count_max == 0 ? 1 : reserver->count_max;
    /* The front ends refuse more (the wire decoder with TOO_LARGE); no silent clamp here. */
    SPOOL_ASSERT(count_max <= LIMIT_RESERVE_MAX_JOBS);
    uint64_t bytes = 0;
    while (count < count_max) {
        struct job *job = reserve_pick(reserver);
        if (job == NULL || runheap_reserve(&state->leases, 1) != 0)
            break; /* out of memory for a lease: fewer jobs now, the rest stay ready */
        /* One reply frame carries them all: the first job always goes, later ones only while
         * they fit the caller's byte budget. */
        uint64_t cost = (uint64_t)job->body_len + job->queue->name_len + QUEUE_DELIVERY_OVERHEAD;
        if (count > 0 && reserver->bytes_max != 0 && bytes + cost > reserver->bytes_max)
            break;
        /* No memory for the lease's extension: deliver what we have (nothing is logged yet
         * for this job); the reserver waits for memory as it would for a ready job. */
        if (queue_job_ext_prepare(state, job) != 0)
            break;
        bytes += cost;
        lease(state, job, reserver, now);
        jobs[count++] = job;
    }
    return count;
}

static void reserver_unlink(struct queue_state *state, struct queue_reserver *reserver)
{
    SPOOL_ASSERT(reserver->waiting);
    if (!reserver->paused)
        for (uint32_t i = 0; i < reserver->queue_count; i++)
            list_unlink(&reserver->links[i].link);
    for (uint32_t i = 0; i < reserver->queue_count; i++) {
        SPOOL_ASSERT(reserver->queues[i]->reserver_refs > 0);
        reserver->queues[i]->reserver_refs--;
        queue_idle_mark(state, reserver->queues[i]);
    }
    reserver->paused = false;
    if (heap_contains(&state->reserver_timeouts, reserver))
        heap_remove(&state->reserver_timeouts, reserver);
    reserver->waiting = false;
}

uint32_t queue_reserve(struct queue_state *state, struct queue_reserver *reserver,
                       struct queue_time now, struct job **jobs)
{
    SPOOL_ASSERT(reserver->queue_count >= 1);
    SPOOL_ASSERT(reserver->queue_count <= LIMIT_RESERVE_MAX_QUEUES);
    reserver->waiting = false;
    reserver->paused = false;
    reserver->timeout_slot = HEAP_NONE;
    uint32_t count = reserve_now(state, reserver, now, jobs);
    if (count > 0 || reserver->deadline_ns <= now.mono_ns)
        return count;
    for (uint32_t i = 0; i < reserver->queue_count; i++) {
        reserver->links[i].reserver = reserver;
        list_insert_tail(&reserver->queues[i]->reservers, &reserver->links[i].link);
        reserver->queues[i]->reserver_refs++;
    }
    heap_push(&state->reserver_timeouts, reserver);
    reserver->waiting = true;
    return 0;
}

void queue_reserver_cancel(struct queue_state *state, struct queue_reserver *reserver)
{
    if (reserver->waiting)
        reserver_unlink(state, reserver);
}

void queue_reserver_pause(struct queue_state *state, struct queue_reserver *reserver)
{
    (void)state;
    if (!reserver->waiting || reserver->paused)
        return;
    for (uint32_t i = 0; i < reserver->queue_count; i++)
        list_unlink(&reserver->links[i].link);
    reserver->paused = true;
}

void queue_reserver_resume(struct queue_state *state, struct queue_reserver *reserver)
{
    if (!reserver->waiting || !reserver->paused)
        return;
    for (uint32_t i = 0; i < reserver->queue_count; i++) {
        list_insert_tail(&reserver->queues[i]->reservers, &reserver->links[i].link);
        mark_serve(state, reserver->queues[i]);
    }
    reserver->paused = false;
}

/* Hand ready jobs of marked queues to their blocked reservers, first come first served. */
void queue_serve(struct queue_state *state, struct queue_time now)
{
    struct job *jobs[LIMIT_RESERVE_MAX_JOBS];
    struct list_link *link;
    while ((link = list_first(&state->to_serve)) != NULL) {
        struct queue *queue = LIST_ENTRY(link, struct queue, serve_link);
        list_unlink(link);
        while (!queue->paused && queue->stats.ready > 0 && !list_empty(&queue->reservers)) {
            struct list_link *first = list_first(&queue->reservers);
            struct queue_reserver *reserver =
                LIST_ENTRY(first, struct queue_reserver_link, link)->reserver;
            SPOOL_ASSERT(reserver != NULL);
            reserver_unlink(state, reserver);
            uint32_t count = reserve_now(state, reserver, now, jobs);
            SPOOL_ASSERT(count > 0);
            reserver->wake(reserver, jobs, count);
        }
    }
}

/* The reserved job holding this lease: QUEUE_ENOTFOUND or QUEUE_ELEASE otherwise. */
static int leased_job(struct queue_state *state, uint64_t id, uint64_t token, struct job **out)
{
    struct job *job = jobtab_get(&state->jobs, id);
    if (job == NULL || job->state == JOB_PENDING)
        return QUEUE_ENOTFOUND;
    if (job->state != JOB_RESERVED || queue_job_ext_of(job)->lease_token != token || token == 0)
        return QUEUE_ELEASE;
    *out = job;
    return 0;
}

static int ack(struct queue_state *state, uint64_t id, uint64_t token, const void *result,
               uint32_t result_len, struct queue_time now)
{
    if (result_len > LIMIT_RESULT_MAX_BYTES)
        return QUEUE_EINVAL;
    struct job *job;
    int err = leased_job(state, id, token, &job);
    if (err != 0)
        return err;
    uint8_t *buf = record_buf(state, RECORD_ACK_FIXED + (size_t)result_len);
    int64_t settled_ms = queue_time_wall_ms(now);
    size_t len = record_ack_encode(id, settled_ms, result, result_len, buf);
    err = emit(state, RECORD_ACK, buf, len, NULL);
    if (err != 0)
        return err;
    struct queue_metrics *m = &job->queue->metrics;
    m->acks++;
    int64_t held_ns =
        now.mono_ns - queue_job_ext_of(job)->lease_start_ns; /* since the lease (lease()) */
    metrics_hist_observe(&m->process_us, &metrics_queue_time_us,
                         held_ns > 0 ? (uint64_t)held_ns / 1000 : 0);
    queue_job_done(state, job, result, result_len, settled_ms);
    return 0;
}

int queue_ack(struct queue_state *state, uint64_t id, uint64_t token, const void *result,
              uint32_t result_len, struct queue_time now, struct queue_logged *logged)
{
    uint64_t mark = state->emit_seq_max;
    int err = ack(state, id, token, result, result_len, now);
    queue_logged_since(state, mark, logged);
    return err;
}

static bool out_of_attempts(const struct job *job)
{
    return job->max_attempts != 0 && job->attempts >= job->max_attempts;
}

static int bury_emit(struct queue_state *state, uint64_t id, const char *reason,
                     uint32_t reason_len, int64_t settled_ms)
{
    uint8_t buf[QUEUE_RECORD_SMALL_MAX];
    size_t len = record_bury_encode(id, settled_ms, reason, reason_len, buf);
    queue_count_event(state, id, QUEUE_COUNT_BURY);
    return emit(state, RECORD_BURY, buf, len, NULL);
}

/* The dead reason for a job out of attempts: "max_attempts", plus the worker's last error. */
static uint32_t spent_reason(const struct job *job, const char *error, uint32_t error_len,
                             char *out)
{
    uint32_t n = sizeof(reason_max_attempts) - 1;
    memcpy(out, reason_max_attempts, n);
    if (error_len == 0)
        return n;
    uint32_t room = LIMIT_REASON_MAX_BYTES - n - 2;
    uint32_t take = error_len < room ? error_len : room;
    memcpy(out + n, ": ", 2);
    memmove(out + n + 2, error, take);
    (void)job;
    return n + 2 + take;
}

static int release(struct queue_state *state, uint64_t id, uint64_t token, int64_t delay_ms,
                   uint32_t priority, const char *error, uint32_t error_len,
                   struct queue_time now)
{
    if (delay_ms < 0 || error_len > LIMIT_REASON_MAX_BYTES)
        return QUEUE_EINVAL;
    struct job *job;
    int err = leased_job(state, id, token, &job);
    if (err != 0)
        return err;
    if (out_of_attempts(job)) {
        char reason[LIMIT_REASON_MAX_BYTES];
        uint32_t reason_len = spent_reason(job, error, error_len, reason);
        err = bury_emit(state, id, reason, reason_len, queue_time_wall_ms(now));
        if (err != 0)
            return err;
        job->queue->metrics.releases++;
        job->queue->metrics.dead_lettered++;
        queue_job_leave(state, job);
        queue_job_enter_dead(state, job, reason, reason_len, queue_time_wall_ms(now));
        state->totals.went_dead++;
        return 0;
    }
    uint32_t new_priority = priority == UINT32_MAX ? job->priority : priority;
    int64_t run_at_ms = delay_ms > 0 ? queue_wall_ms_after(now, delay_ms) : 0;
    uint8_t buf[RECORD_RELEASE_SIZE];
    size_t len = record_release_encode(id, new_priority, run_at_ms, buf);
    err = emit(state, RECORD_RELEASE, buf, len, NULL);
    if (err != 0)
        return err;
    queue_count_event(state, id, QUEUE_COUNT_RELEASE);
    job->queue->metrics.releases++;
    queue_job_leave(state, job);
    if (error_len > 0) {
        free(queue_job_ext_of(job)->reason);
        queue_job_ext_of(job)->reason = xmemdup(error, error_len);
        queue_job_ext_of(job)->reason_len = error_len;
    }
    job->priority = new_priority;
    queue_job_set_run_at(state, job, run_at_ms, now);
    queue_job_place(state, job, now);
    queue_serve(state, now);
    return 0;
}

int queue_release(struct queue_state *state, uint64_t id, uint64_t token, int64_t delay_ms,
                  uint32_t priority, const char *error, uint32_t error_len, struct queue_time now,
                  struct queue_logged *logged)
{
    uint64_t mark = state->emit_seq_max;
    int err = release(state, id, token, delay_ms, priority, error, error_len, now);
    queue_logged_since(state, mark, logged);
    return err;
}

int queue_touch(struct queue_state *state, uint64_t id, uint64_t token, uint64_t extend_ms,
                struct queue_time now, int64_t *deadline_ms)
{
    struct job *job;
    int err = leased_job(state, id, token, &job);
    if (err != 0)
        return err;
    uint64_t extend = extend_ms != 0 ? extend_ms : queue_job_ttr_ms(job);
    struct job_ext *ext = queue_job_ext_of(job);
    ext->deadline_ms = queue_wall_ms_after(now, ms_signed(extend));
    ext->timer_ns = queue_mono_at(now, ext->deadline_ms);
    runheap_fix(&state->leases, ext);
    *deadline_ms = ext->deadline_ms;
    return 0;
}

static int bury(struct queue_state *state, uint64_t id, uint64_t token, const char *reason,
                uint32_t reason_len, struct queue_time now)
{
    if (reason_len > LIMIT_REASON_MAX_BYTES)
        return QUEUE_EINVAL;
    struct job *job;
    int err = leased_job(state, id, token, &job);
    if (err != 0)
        return err;
    err = bury_emit(state, id, reason, reason_len, queue_time_wall_ms(now));
    if (err != 0)
        return err;
    job->queue->metrics.buries++;
    job->queue->metrics.dead_lettered++;
    queue_job_leave(state, job);
    queue_job_enter_dead(state, job, reason, reason_len, queue_time_wall_ms(now));
    state->totals.went_dead++;
    return 0;
}

int queue_bury(struct queue_state *state, uint64_t id, uint64_t token, const char *reason,
               uint32_t reason_len, struct queue_time now, struct queue_logged *logged)
{
    uint64_t mark = state->emit_seq_max;
    int err = bury(state, id, token, reason, reason_len, now);
    queue_logged_since(state, mark, logged);
    return err;
}

/* Kick: a fresh set of attempts (a redrive), ready at once. */
static int kick_one(struct queue_state *state, struct job *job, struct queue_time now)
{
    SPOOL_ASSERT(job->state == JOB_DEAD);
    uint8_t buf[RECORD_KICK_SIZE];
    size_t len = record_kick_encode(job->id, buf);
    int err = emit(state, RECORD_KICK, buf, len, NULL);
    if (err != 0)
        return err;
    queue_count_event(state, job->id, QUEUE_COUNT_KICK);
    job->queue->metrics.kicked++;
    queue_job_leave(state, job);
    job->attempts = 0;
    free(queue_job_ext_of(job)
             ->reason); /* a fresh start: the old death is no longer its last error */
    queue_job_ext_of(job)->reason = NULL;
    queue_job_ext_of(job)->reason_len = 0;
    queue_job_enter_ready(state, job, now);
    return 0;
}

static int kick_job(struct queue_state *state, uint64_t id, struct queue_time now)
{
    struct job *job = jobtab_get(&state->jobs, id);
    if (job == NULL || job->state == JOB_PENDING)
        return QUEUE_ENOTFOUND;
    if (job->state != JOB_DEAD)
        return QUEUE_ESTATE;
    int err = kick_one(state, job, now);
    if (err == 0)
        queue_serve(state, now);
    return err;
}

int queue_kick_job(struct queue_state *state, uint64_t id, struct queue_time now,
                   struct queue_logged *logged)
{
    uint64_t mark = state->emit_seq_max;
    int err = kick_job(state, id, now);
    queue_logged_since(state, mark, logged);
    return err;
}

static int kick(struct queue_state *state, const char *name, uint32_t name_len, uint32_t count,
                struct queue_time now, uint32_t *kicked)
{
    *kicked = 0;
    struct queue *queue = queue_find(state, name, name_len);
    if (queue == NULL)
        return record_queue_name_valid(name, name_len) ? 0 : QUEUE_EINVAL;
    int err = 0;
    struct list_link *link;
    while (*kicked < count && (link = list_first(&queue->dead)) != NULL) {
        err = kick_one(state, LIST_ENTRY(link, struct job_ext, state_link)->job, now);
        if (err != 0)
            break;
        (*kicked)++;
    }
    queue_serve(state, now);
    /* A partial kick is a success: the count says how far it got. */
    return *kicked > 0 ? 0 : err;
}

int queue_kick(struct queue_state *state, const char *name, uint32_t name_len, uint32_t count,
               struct queue_time now, uint32_t *kicked, struct queue_logged *logged)
{
    uint64_t mark = state->emit_seq_max;
    int err = kick(state, name, name_len, count, now, kicked);
    queue_logged_since(state, mark, logged);
    return err;
}

static int delete_job(struct queue_state *state, uint64_t id, struct queue_time now)
{
    (void)now;
    struct job *job = jobtab_get(&state->jobs, id);
    if (job == NULL || job->state == JOB_PENDING || job_state_settled(job->state))
        return QUEUE_ENOTFOUND;
    if (job->state == JOB_RESERVED)
        return QUEUE_ESTATE;
    uint8_t buf[RECORD_DELETE_SIZE];
    size_t len = record_delete_encode(id, RECORD_DELETE_CLIENT, buf);
    int err = emit(state, RECORD_DELETE, buf, len, NULL);
    if (err != 0)
        return err;
    job->queue->metrics.deleted++;
    queue_job_remove(state, job);
    return 0;
}

int queue_delete(struct queue_state *state, uint64_t id, struct queue_time now,
                 struct queue_logged *logged)
{
    uint64_t mark = state->emit_seq_max;
    int err = delete_job(state, id, now);
    queue_logged_since(state, mark, logged);
    return err;
}

/* Delete every READY, DELAYED and DEAD job of the queue (reserved ones are being worked on;
 * pending ones are not yet acknowledged to their producer). */
void queue_purge_apply(struct queue_state *state, struct queue *queue)
{
    uint32_t count = 0;
    struct job **jobs = queue_jobs_of(state, queue, &count);
    for (uint32_t i = 0; i < count; i++)
        if (jobs[i]->state == JOB_READY || jobs[i]->state == JOB_DELAYED ||
            jobs[i]->state == JOB_DEAD)
            queue_job_remove(state, jobs[i]);
    free(jobs);
    queue_idem_forget_queue(state, queue);
}

static int purge(struct queue_state *state, const char *name, uint32_t name_len,
                 struct queue_time now, uint64_t *deleted)
{
    (void)now;
    *deleted = 0;
    if (!record_queue_name_valid(name, name_len))
        return QUEUE_EINVAL;
    struct queue *queue = queue_find(state, name, name_len);
    if (queue == NULL)
        return QUEUE_ENOTFOUND;
    uint8_t buf[RECORD_PURGE_FIXED + LIMIT_QUEUE_NAME_MAX_BYTES];
    size_t len = record_purge_encode(name, name_len, buf);
    int err = emit(state, RECORD_PURGE, buf, len, NULL);
    if (err != 0)
        return err;
    uint64_t before = queue->stats.ready + queue->stats.delayed + queue->stats.dead;
    queue_purge_apply(state, queue);
    *deleted = before - (queue->stats.ready + queue->stats.delayed + queue->stats.dead);
    return 0;
}

int queue_purge(struct queue_state *state, const char *name, uint32_t name_len,
                struct queue_time now, uint64_t *deleted, struct queue_logged *logged)
{
    uint64_t mark = state->emit_seq_max;
    int err = purge(state, name, name_len, now, deleted);
    queue_logged_since(state, mark, logged);
    return err;
}

void queue_apply_meta(struct queue *queue, const struct record_meta *meta)
{
    /* Settings back to the defaults may leave it idle: the next set_meta or tick looks. */
    queue->paused = meta->paused;
    queue->pause_timed = meta->paused && meta->pause_timed;
    queue->default_ttr_ms = meta->default_ttr_ms;
    queue->default_max_attempts = meta->default_max_attempts;
    queue->max_jobs = meta->max_jobs;
    queue->max_bytes = meta->max_bytes;
}

static int set_meta(struct queue_state *state, const struct record_meta *meta,
                    struct queue_time now)
{
    struct queue *queue;
    int err = queue_get(state, meta->name, meta->name_len, &queue);
    if (err != 0)
        return err;
    uint8_t buf[RECORD_META_FIXED + LIMIT_QUEUE_NAME_MAX_BYTES];
    size_t len = record_meta_encode(meta, buf);
    err = emit(state, RECORD_QUEUE_META, buf, len, NULL);
    if (err != 0)
        return err;
    queue_apply_meta(queue, meta);
    queue_idle_mark(state, queue);
    mark_serve(state, queue);
    queue_serve(state, now);
    return 0;
}

int queue_set_meta(struct queue_state *state, const struct record_meta *meta, struct queue_time now,
                   struct queue_logged *logged)
{
    uint64_t mark = state->emit_seq_max;
    int err = set_meta(state, meta, now);
    queue_logged_since(state, mark, logged);
    return err;
}

struct job *queue_job_find(struct queue_state *state, uint64_t id)
{
    return jobtab_get(&state->jobs, id);
}

struct job *queue_ready_next(struct queue_state *state, const struct job *job,
                             uint32_t *ids_left)
{
    SPOOL_ASSERT(job->state == JOB_READY);
    uint32_t scan = *ids_left < QUEUE_READY_NEXT_SCAN_IDS ? *ids_left : QUEUE_READY_NEXT_SCAN_IDS;
    for (uint64_t id = job->id + 1; scan > 0 && id < state->next_id; id++, scan--) {
        (*ids_left)--;
        struct job *next = jobtab_get(&state->jobs, id);
        if (next != NULL && next->queue == job->queue && next->state == JOB_READY)
            return next;
    }
    return NULL;
}

struct job *queue_peek_id(struct queue_state *state, uint64_t id)
{
    struct job *job = jobtab_get(&state->jobs, id);
    if (job == NULL || job->state == JOB_PENDING || job_state_settled(job->state))
        return NULL;
    return job;
}

struct job *queue_peek_next(struct queue_state *state, const char *name, uint32_t name_len,
                            enum job_state which)
{
    struct queue *queue = queue_find(state, name, name_len);
    if (queue == NULL)
        return NULL;
    switch (which) {
    case JOB_READY: return heap_top(&queue->ready);
    case JOB_DELAYED: return heap_top(&queue->delayed);
    case JOB_DEAD: {
        struct list_link *link = list_first(&queue->dead);
        return link == NULL ? NULL : LIST_ENTRY(link, struct job_ext, state_link)->job;
    }
    default: return NULL;
    }
}

void queue_owner_init(struct queue_owner *owner)
{
    list_init(&owner->jobs);
}

/* A lease ended without an ack (expiry, owner gone): ready again, or dead when it was the last
 * attempt. The BURY is best-effort: replay derives dead from the attempt count. */
static void lease_end(struct queue_state *state, struct job *job, struct queue_time now)
{
    queue_job_leave(state, job);
    if (out_of_attempts(job)) {
        char reason[LIMIT_REASON_MAX_BYTES];
        uint32_t reason_len =
            spent_reason(job, queue_job_x(job)->reason, queue_job_x(job)->reason_len, reason);
        (void)bury_emit(state, job->id, reason, reason_len, queue_time_wall_ms(now));
        queue_job_enter_dead(state, job, reason, reason_len, queue_time_wall_ms(now));
        state->totals.went_dead++;
        job->queue->metrics.dead_lettered++;
    } else {
        queue_job_enter_ready(state, job, now);
    }
}

void queue_owner_release(struct queue_state *state, struct queue_owner *owner,
                         struct queue_time now)
{
    struct list_link *link;
    while ((link = list_first(&owner->jobs)) != NULL) {
        struct job *job = LIST_ENTRY(link, struct job_ext, state_link)->job;
        job->queue->metrics.lease_expiries++;
        lease_end(state, job, now);
    }
    queue_serve(state, now);
}

void queue_lease_expire(struct queue_state *state, struct job *job, struct queue_time now)
{
    queue_count_event(state, job->id, QUEUE_COUNT_TIMEOUT);
    job->queue->metrics.lease_expiries++;
    lease_end(state, job, now);
}

bool queue_ttl_expire(struct queue_state *state, struct job *job)
{
    struct queue *queue = job->queue; /* the job may be freed below */
    uint8_t buf[RECORD_DELETE_SIZE];
    size_t len = record_delete_encode(job->id, RECORD_DELETE_TTL, buf);
    if (emit(state, RECORD_DELETE, buf, len, NULL) != 0)
        return false; /* the job stays, due at once: the next tick tries again */
    /* Settled at its logged expiry, so a replay of the DELETE says the same time. */
    queue_job_expired(state, job, queue_job_ext_of(job)->expires_at_ms);
    state->totals.expired++;
    queue->metrics.expired++;
    return true;
}

/* ---- for the beanstalkd protocol (beanstalk.h): a job by id, delayed jobs kicked ---- */

int queue_reserve_job(struct queue_state *state, uint64_t id, struct queue_owner *owner,
                      struct queue_time now, struct job **out)
{
    SPOOL_ASSERT(owner != NULL);
    struct job *job = jobtab_get(&state->jobs, id);
    if (job == NULL || (job->state != JOB_READY && job->state != JOB_DELAYED &&
                        job->state != JOB_DEAD))
        return QUEUE_ENOTFOUND;
    int err = queue_job_ext_prepare(state, job);
    if (err != 0)
        return err;
    struct queue_reserver reserver = {.owner = owner};
    lease(state, job, &reserver, now);
    SPOOL_ASSERT(job->state == JOB_RESERVED);
    *out = job;
    return 0;
}

/* A delayed job made ready now: logged as a RELEASE with no run-at (replay places it ready
 * whatever state it was in), so a restart keeps it ready. */
static int kick_delayed_one(struct queue_state *state, struct job *job, struct queue_time now)
{
    SPOOL_ASSERT(job->state == JOB_DELAYED);
    uint8_t buf[RECORD_RELEASE_SIZE];
    size_t len = record_release_encode(job->id, job->priority, 0, buf);
    int err = emit(state, RECORD_RELEASE, buf, len, NULL);
    if (err != 0)
        return err;
    queue_count_event(state, job->id, QUEUE_COUNT_KICK);
    queue_job_leave(state, job);
    queue_job_set_run_at(state, job, 0, now);
    queue_job_place(state, job, now);
    SPOOL_ASSERT(job->state == JOB_READY);
    return 0;
}

static int kick_delayed_job(struct queue_state *state, uint64_t id, struct queue_time now)
{
    struct job *job = jobtab_get(&state->jobs, id);
    if (job == NULL || job->state == JOB_PENDING)
        return QUEUE_ENOTFOUND;
    if (job->state != JOB_DELAYED)
        return QUEUE_ESTATE;
    int err = kick_delayed_one(state, job, now);
    if (err == 0)
        queue_serve(state, now);
    return err;
}

int queue_kick_delayed_job(struct queue_state *state, uint64_t id, struct queue_time now,
                           struct queue_logged *logged)
{
    uint64_t mark = state->emit_seq_max;
    int err = kick_delayed_job(state, id, now);
    queue_logged_since(state, mark, logged);
    return err;
}

static int kick_delayed(struct queue_state *state, const char *name, uint32_t name_len,
                        uint32_t count, struct queue_time now, uint32_t *kicked)
{
    *kicked = 0;
    struct queue *queue = queue_find(state, name, name_len);
    if (queue == NULL)
        return record_queue_name_valid(name, name_len) ? 0 : QUEUE_EINVAL;
    int err = 0;
    struct job *job;
    while (*kicked < count && (job = heap_top(&queue->delayed)) != NULL) {
        err = kick_delayed_one(state, job, now);
        if (err != 0)
            break;
        (*kicked)++;
    }
    queue_serve(state, now);
    return *kicked > 0 ? 0 : err;
}

int queue_kick_delayed(struct queue_state *state, const char *name, uint32_t name_len,
                       uint32_t count, struct queue_time now, uint32_t *kicked,
                       struct queue_logged *logged)
{
    uint64_t mark = state->emit_seq_max;
    int err = kick_delayed(state, name, name_len, count, now, kicked);
    queue_logged_since(state, mark, logged);
    return err;
}

/* beanstalkd's bury <id> <pri>: the new priority is logged as a RELEASE without run-at just
 * before the BURY (replay applies both in order, so no record format changes); a job whose
 * priority stays is buried as by queue_bury. */
static int bury_priority(struct queue_state *state, uint64_t id, uint64_t token, uint32_t priority,
                         const char *reason, uint32_t reason_len, struct queue_time now)
{
    if (reason_len > LIMIT_REASON_MAX_BYTES)
        return QUEUE_EINVAL;
    struct job *job;
    int err = leased_job(state, id, token, &job);
    if (err != 0 || job->priority == priority)
        return err != 0 ? err : queue_bury(state, id, token, reason, reason_len, now, NULL);
    uint8_t buf[RECORD_RELEASE_SIZE];
    size_t len = record_release_encode(id, priority, 0, buf);
    err = emit(state, RECORD_RELEASE, buf, len, NULL);
    if (err != 0)
        return err;
    job->priority = priority; /* a reserved job is ordered by its deadline: nothing to fix */
    return queue_bury(state, id, token, reason, reason_len, now, NULL);
}

int queue_bury_priority(struct queue_state *state, uint64_t id, uint64_t token, uint32_t priority,
                        const char *reason, uint32_t reason_len, struct queue_time now,
                        struct queue_logged *logged)
{
    uint64_t mark = state->emit_seq_max;
    int err = bury_priority(state, id, token, priority, reason, reason_len, now);
    queue_logged_since(state, mark, logged);
    return err;
}
