/*
 * Time in the queue state machine: the tick that runs due timers (delayed jobs becoming
 * ready, lease expiries, ttls, timeouts of blocked reserves and job waiters, the idempotency
 * window), the next deadline for the loop's single timer, job waiters, status and stats.
 *
 * A tick handles at most tick_work_max events so one loop turn stays short under a burst of
 * expiries; whatever is left is due at once, so queue_next_deadline_ns returns a time in the
 * past and the loop comes straight back.
 *
 * Every timer compares monotonic ns (queue.h: two clocks). The conversions from Unix ms are
 * here, and they round one way only: a deadline is never earlier than the time it stands for.
 */
#include "queue_internal.h"

#include <stdlib.h>
#include <string.h>

int64_t queue_add_sat(int64_t a, int64_t b)
{
    SPOOL_ASSERT(b >= 0);
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

int64_t queue_mono_at(struct queue_time now, int64_t wall_ms)
{
    SPOOL_ASSERT(now.mono_ns >= 0); /* CLOCK_MONOTONIC; a fake clock must be one too */
    if (wall_ms > INT64_MAX / QUEUE_NS_PER_MS)
        return INT64_MAX;
    int64_t at_ns = wall_ms > 0 ? wall_ms * QUEUE_NS_PER_MS : 0; /* before 1970: long past */
    if (now.wall_ns < 0 && at_ns > INT64_MAX + now.wall_ns)
        return INT64_MAX;
    int64_t ahead_ns = at_ns - now.wall_ns;
    if (ahead_ns > 0)
        return queue_add_sat(now.mono_ns, ahead_ns);
    return now.mono_ns + ahead_ns; /* in the past: due at once (no overflow: mono_ns >= 0) */
}

int64_t queue_wall_ms_after(struct queue_time now, int64_t delta_ms)
{
    SPOOL_ASSERT(delta_ms >= 0);
    int64_t ms = now.wall_ns / QUEUE_NS_PER_MS; /* toward zero: the ceiling when negative */
    int64_t up = now.wall_ns % QUEUE_NS_PER_MS > 0 ? 1 : 0;
    int64_t at_ms = queue_add_sat(queue_add_sat(ms, up), delta_ms);
    SPOOL_ASSERT(at_ms >= ms);
    return at_ms;
}

static void status_fill(const struct job *job, struct queue_job_status *out)
{
    memset(out, 0, sizeof(*out));
    out->id = job->id;
    out->state = job->state;
    out->attempts = job->attempts;
    out->created_ms = job->created_ms;
    const struct job_ext *ext = queue_job_x(job);
    out->settled_ms = ext->settled_ms;
    if (job->state == JOB_DONE) {
        out->result = ext->result;
        out->result_len = ext->result_len;
    }
    if (job->state == JOB_DEAD) {
        out->reason = ext->reason;
        out->reason_len = ext->reason_len;
    }
}

bool queue_status(struct queue_state *state, uint64_t id, struct queue_job_status *out)
{
    struct job *job = jobtab_get(&state->jobs, id);
    if (job == NULL)
        return false;
    status_fill(job, out);
    if (job->state == JOB_PENDING)
        out->state = queue_job_x(job)->run_at_ms > 0 ? JOB_DELAYED : JOB_READY;
    return true;
}

static void waiter_finish(struct queue_state *state, struct queue_job_waiter *waiter,
                          bool found, const struct queue_job_status *status)
{
    list_unlink(&waiter->link);
    if (heap_contains(&state->waiter_timeouts, waiter))
        heap_remove(&state->waiter_timeouts, waiter);
    waiter->waiting = false;
    waiter->wake(waiter, found, status);
}

void queue_notify_waiters(struct queue_state *state, struct job *job, bool found)
{
    struct queue_job_status status;
    status_fill(job, &status);
    if (queue_job_ext_of(job) == NULL)
        return; /* no waiters */
    struct list_link *link;
    while ((link = list_first(&queue_job_ext_of(job)->waiters)) != NULL)
        waiter_finish(state, LIST_ENTRY(link, struct queue_job_waiter, link), found, &status);
}

bool queue_wait(struct queue_state *state, struct queue_job_waiter *waiter,
                struct queue_time now, bool *found, struct queue_job_status *out)
{
    list_init(&waiter->link);
    waiter->timeout_slot = HEAP_NONE;
    waiter->waiting = false;
    struct job *job = jobtab_get(&state->jobs, waiter->job_id);
    *found = job != NULL;
    if (job == NULL)
        return true;
    status_fill(job, out);
    if (job_state_settled(job->state) || job->state == JOB_DEAD ||
        waiter->deadline_ns <= now.mono_ns) {
        if (job->state == JOB_PENDING)
            out->state = queue_job_x(job)->run_at_ms > 0 ? JOB_DELAYED : JOB_READY;
        return true;
    }
    /* No memory to remember the waiter: answer now with the job's state, as at a timeout. */
    if (queue_job_ext_prepare(state, job) != 0)
        return true;
    list_insert_tail(&queue_job_ext_of(job)->waiters, &waiter->link);
    heap_push(&state->waiter_timeouts, waiter);
    waiter->waiting = true;
    return false;
}

void queue_wait_cancel(struct queue_state *state, struct queue_job_waiter *waiter)
{
    if (!waiter->waiting)
        return;
    list_unlink(&waiter->link);
    if (heap_contains(&state->waiter_timeouts, waiter))
        heap_remove(&state->waiter_timeouts, waiter);
    waiter->waiting = false;
}

/* A waiter timed out: answer with the job's current state. */
static void waiter_timeout(struct queue_state *state, struct queue_job_waiter *waiter)
{
    struct job *job = jobtab_get(&state->jobs, waiter->job_id);
    SPOOL_ASSERT(job != NULL); /* removal wakes every waiter first */
    struct queue_job_status status;
    status_fill(job, &status);
    if (job->state == JOB_PENDING)
        status.state = queue_job_x(job)->run_at_ms > 0 ? JOB_DELAYED : JOB_READY;
    waiter_finish(state, waiter, true, &status);
}

/* Keys leave in put order: their windows are equally long, so they end in that order too
 * (up to a wall clock step between two puts, which only keeps a later key a little longer). */
static void idem_expire(struct queue_state *state, struct queue_time now, uint32_t *budget)
{
    struct list_link *link;
    while (*budget > 0 && (link = list_first(&state->idem_order)) != NULL) {
        struct idem *idem = LIST_ENTRY(link, struct idem, order);
        if (idem->expires_ns > now.mono_ns)
            break;
        queue_idem_free(state, idem);
        (*budget)--;
    }
}

static void tick_jobs(struct queue_state *state, struct queue_time now, uint32_t *budget)
{
    struct job *job;
    struct job_ext *ext;
    while (*budget > 0 && (ext = heap_top(&state->delay_heap)) != NULL &&
           ext->timer_ns <= now.mono_ns) {
        job = ext->job;
        queue_job_leave(state, job);
        queue_job_enter_ready(state, job, now);
        (*budget)--;
    }
    while (*budget > 0 && (ext = runheap_top(&state->leases)) != NULL &&
           ext->timer_ns <= now.mono_ns) {
        queue_lease_expire(state, ext->job, now);
        (*budget)--;
    }
    while (*budget > 0 && (ext = heap_top(&state->ttl_heap)) != NULL &&
           ext->expires_at_ns <= now.mono_ns) {
        job = ext->job;
        if (job->state == JOB_RESERVED || job->state == JOB_PENDING)
            heap_remove(&state->ttl_heap, ext); /* back in when the lease ends */
        else if (!queue_ttl_expire(state, job))
            break; /* the log refuses records now: the next tick retries */
        (*budget)--;
    }
}

void queue_tick(struct queue_state *state, struct queue_time now)
{
    uint32_t budget = state->config.tick_work_max;
    tick_jobs(state, now, &budget);
    /* Serve before timing reservers out: a job that became ready this tick goes to a waiting
     * reserver even if its timeout is also due. */
    queue_serve(state, now);
    struct queue_reserver *reserver;
    while (budget > 0 && (reserver = heap_top(&state->reserver_timeouts)) != NULL &&
           reserver->deadline_ns <= now.mono_ns) {
        queue_reserver_cancel(state, reserver);
        reserver->wake(reserver, NULL, 0);
        budget--;
    }
    struct queue_job_waiter *waiter;
    while (budget > 0 && (waiter = heap_top(&state->waiter_timeouts)) != NULL &&
           waiter->deadline_ns <= now.mono_ns) {
        waiter_timeout(state, waiter);
        budget--;
    }
    idem_expire(state, now, &budget);
    queue_idle_sweep(state, &budget);
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

int64_t queue_next_deadline_ns(const struct queue_state *state)
{
    int64_t next = INT64_MAX;
    const struct job_ext *ext;
    if ((ext = heap_top(&state->delay_heap)) != NULL)
        next = min64(next, ext->timer_ns);
    if ((ext = runheap_top(&state->leases)) != NULL)
        next = min64(next, ext->timer_ns);
    if ((ext = heap_top(&state->ttl_heap)) != NULL)
        next = min64(next, ext->expires_at_ns);
    const struct queue_reserver *reserver = heap_top(&state->reserver_timeouts);
    if (reserver != NULL)
        next = min64(next, reserver->deadline_ns);
    const struct queue_job_waiter *waiter = heap_top(&state->waiter_timeouts);
    if (waiter != NULL)
        next = min64(next, waiter->deadline_ns);
    struct list_link *link = list_first(&state->idem_order);
    if (link != NULL)
        next = min64(next, LIST_ENTRY(link, struct idem, order)->expires_ns);
    return next;
}

/* 1 ms, or this fraction of the oldest bucket's age: a 0.1% error on the age. */
#define QUEUE_READY_AGE_SPLIT 1024

static struct queue_ready_bucket *ready_bucket_at(const struct queue_ready_age *age, uint32_t index)
{
    SPOOL_ASSERT(index < age->count);
    return &age->ring[(age->head + index) & (age->capacity - 1)];
}

static void ready_age_grow(struct queue_ready_age *age)
{
    uint32_t capacity = age->capacity == 0 ? 8 : age->capacity * 2;
    SPOOL_ASSERT(capacity > age->capacity);
    struct queue_ready_bucket *ring = malloc(capacity * sizeof(*ring));
    SPOOL_ASSERT(ring != NULL); /* a few KiB per queue: the broker's bounded structures */
    for (uint32_t i = 0; i < age->count; i++)
        ring[i] = *ready_bucket_at(age, i);
    free(age->ring);
    age->ring = ring;
    age->head = 0;
    age->capacity = capacity;
}

void queue_ready_age_enter(struct queue *queue, struct job *job, int64_t now_ns)
{
    struct queue_ready_age *age = &queue->ready_age;
    if (age->count > 0) {
        struct queue_ready_bucket *newest = ready_bucket_at(age, age->count - 1);
        int64_t oldest_age_ns = now_ns - ready_bucket_at(age, 0)->since_ns;
        int64_t width_ns = oldest_age_ns / QUEUE_READY_AGE_SPLIT;
        if (width_ns < QUEUE_NS_PER_MS)
            width_ns = QUEUE_NS_PER_MS;
        /* A clock read before the newest bucket's (a test's, or a replay's) joins it too. */
        if (now_ns - newest->since_ns < width_ns) {
            newest->count++;
            job->ready_bucket = age->first + age->count - 1;
            return;
        }
    }
    if (age->count == age->capacity)
        ready_age_grow(age);
    age->count++;
    *ready_bucket_at(age, age->count - 1) = (struct queue_ready_bucket){now_ns, 1};
    job->ready_bucket = age->first + age->count - 1;
}

void queue_ready_age_leave(struct queue *queue, struct job *job)
{
    struct queue_ready_age *age = &queue->ready_age;
    uint32_t index = job->ready_bucket - age->first; /* numbers wrap: a difference */
    struct queue_ready_bucket *bucket = ready_bucket_at(age, index);
    SPOOL_ASSERT(bucket->count > 0);
    bucket->count--;
    while (age->count > 0 && ready_bucket_at(age, 0)->count == 0) {
        age->head = (age->head + 1) & (age->capacity - 1);
        age->count--;
        age->first++;
    }
}

int64_t queue_oldest_ready_since_ns(const struct queue *queue)
{
    const struct queue_ready_age *age = &queue->ready_age;
    return age->count == 0 ? 0 : ready_bucket_at(age, 0)->since_ns;
}

void queue_stats_get(const struct queue *queue, struct queue_time now, struct queue_stats *out)
{
    *out = queue->stats;
    out->paused = queue->paused;
    out->oldest_ready_age_ms = 0;
    if (queue->stats.ready > 0) {
        int64_t age_ns = now.mono_ns - queue_oldest_ready_since_ns(queue);
        out->oldest_ready_age_ms = age_ns > 0 ? age_ns / QUEUE_NS_PER_MS : 0;
    }
    out->ack_floor = queue->seg_count == 0 ? 0 : queue->segs[0].segment_id;
}

void queue_totals_get(const struct queue_state *state, struct queue_totals *out)
{
    *out = state->totals;
    out->keys = state->keys.count;
}

void queue_each(struct queue_state *state, void (*fn)(void *ctx, struct queue *queue), void *ctx)
{
    STRMAP_EACH(&state->queues, entry) fn(ctx, entry->value);
}

bool queue_each_step(struct queue_state *state, size_t *cursor, uint32_t max,
                     void (*fn)(void *ctx, struct queue *queue), void *ctx)
{
    const struct strmap *map = &state->queues;
    if (map->entries == NULL)
        return true;
    size_t slots = map->mask + 1;
    uint32_t visited = 0;
    while (*cursor < slots && visited < max) {
        const struct strmap_entry *entry = &map->entries[(*cursor)++];
        if (entry->hash == 0)
            continue;
        fn(ctx, entry->value);
        visited++;
    }
    return *cursor >= slots;
}

uint64_t queue_walk_stamp(const struct queue_state *state)
{
    /* The table moves or resizes when it is rebuilt; a removal shifts entries but lowers the
     * count, which the caller sees in queue_totals. */
    return (uint64_t)(uintptr_t)state->queues.entries ^ ((uint64_t)state->queues.mask << 48);
}
