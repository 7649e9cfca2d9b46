/*
 * Recovery of the queue state: replay of log records (the checkpoint payload that replay
 * starts from is queue_checkpoint.c).
 *
 * Replay applies records in seq order without emitting. It is lenient about records that no
 * longer match a job (a record for a job that a later checkpoint already settled cannot
 * occur, but a LEASE after a skipped BURY can): such records are ignored, never fatal. It is
 * strict about bytes: a record that does not decode stops recovery (the log verified its
 * checksum, so it is a bug or a version this build does not know, not disk damage).
 * After replay (queue_recover_finish) every job is visible and no lease exists: a job whose
 * last attempts were all delivered goes dead with reason max_attempts, the same outcome the
 * expiry of its last lease would have had.
 *
 * Bodies: the unloaded ones (after a checkpoint load or an eviction) are found and read back
 * through queue_each_unloaded and queue_body_loaded.
 */
#include "queue_internal.h"

#include <stdlib.h>
#include <string.h>

static const char reason_max_attempts[] = "max_attempts";

/* 0, or QUEUE_ENOMEM: no memory for the job (the start stops with a message). */
static int replay_put(struct queue_state *state, const struct record *rec,
                      const struct log_pos *pos, struct queue_time now)
{
    const struct record_put *put = &rec->u.put;
    if (jobtab_get(&state->jobs, put->id) != NULL || put->id < state->next_id)
        return 0; /* already known (a checkpoint covered it) or settled and forgotten */
    struct queue *queue;
    int rc = queue_get(state, put->queue, put->queue_len, &queue);
    if (rc == 0)
        rc = queue_job_reserve(state, queue, put->id, put->run_at_ms != 0,
                               put->expires_at_ms != 0, 1);
    if (rc != 0)
        return rc == QUEUE_ENOMEM ? rc : 0;
    struct job *job = queue_job_new(state, queue, put->id, put->body, put->body_len, true);
    job->priority = put->priority;
    job->max_attempts = put->max_attempts;
    queue_job_set_ttr(state, job, put->ttr_ms);
    job->created_ms = put->created_ms;
    queue_job_set_run_at(state, job, put->run_at_ms, now);
    queue_job_set_expires_at(state, job, put->expires_at_ms, now);
    queue_job_set_pos(job, *pos);
    queue_job_account(state, job);
    queue_job_place(state, job, now);
    if (put->key_len > 0 &&
        queue_add_sat(put->created_ms, state->config.idempotency_window_ms) >
            queue_time_wall_ms(now))
        queue_idem_add(state, put->queue, put->queue_len, put->key, put->key_len, put->id,
                       put->created_ms, now, NULL);
    return 0;
}

/* A RELOCATE (compaction's copy): a known live job's body now lives at pos. A job replay does
 * not know was either settled or deleted before the copy's anchor (a checkpoint or the replay
 * of the log before it says so, and replay_put's id test keeps it gone), or its PUT was in a
 * segment dropped after the copy and the checkpoint that covered it is not used (salvage):
 * then the copy rebuilds it, as it was when copied. 0, or QUEUE_ENOMEM (as replay_put). */
static int replay_relocate(struct queue_state *state, const struct record *rec,
                           const struct log_pos *pos, struct queue_time now)
{
    const struct record_relocate *rel = &rec->u.relocate;
    struct job *job = jobtab_get(&state->jobs, rec->id);
    if (job != NULL) {
        if (!queue_job_live(job) || pos->seq <= queue_job_pos(job).seq)
            return 0;
        /* The segment counts may take two new entries (queue_job_move_durable). */
        if (idmap_reserve(&state->segments, 2) != 0)
            return QUEUE_ENOMEM;
        queue_job_move(state, job, *pos);
        return 0;
    }
    struct record put = {.type = RECORD_PUT, .version = RECORD_VERSION, .id = rec->id};
    put.u.put = rel->put;
    int rc = replay_put(state, &put, pos, now);
    job = jobtab_get(&state->jobs, rec->id);
    if (rc != 0 || job == NULL)
        return rc; /* out of memory; or settled and forgotten, or its queue cannot be made */
    job->attempts = rel->attempts;
    if (rel->state == RECORD_STATE_DEAD) {
        queue_job_leave(state, job);
        queue_job_enter_dead(state, job, rel->reason, rel->reason_len, rel->settled_ms);
    }
    return 0;
}

static void replay_job_record(struct queue_state *state, const struct record *rec,
                              struct queue_time now)
{
    struct job *job = jobtab_get(&state->jobs, rec->id);
    if (job == NULL || job_state_settled(job->state))
        return;
    switch (rec->type) {
    case RECORD_LEASE:
        if (rec->u.lease.attempt > job->attempts)
            job->attempts = rec->u.lease.attempt;
        break;
    case RECORD_ACK: /* version 1 carries no settle time: replay's clock is all there is */
        queue_job_done(state, job, rec->u.ack.result, rec->u.ack.result_len,
                       rec->version >= 2 ? rec->u.ack.settled_ms : queue_time_wall_ms(now));
        break;
    case RECORD_RELEASE:
        queue_job_leave(state, job);
        job->priority = rec->u.release.priority;
        queue_job_set_run_at(state, job, rec->u.release.run_at_ms, now);
        queue_job_place(state, job, now);
        break;
    case RECORD_BURY:
        queue_job_leave(state, job);
        queue_job_enter_dead(state, job, rec->u.bury.reason, rec->u.bury.reason_len,
                             rec->version >= 2 ? rec->u.bury.settled_ms
                                               : queue_time_wall_ms(now));
        break;
    case RECORD_KICK:
        /* A kick resets attempts, whether or not the death before it was logged. */
        job->attempts = 0;
        if (job->state == JOB_DEAD) {
            queue_job_leave(state, job);
            queue_job_enter_ready(state, job, now);
        }
        break;
    case RECORD_DELETE:
        if (rec->u.del.cause == RECORD_DELETE_TTL && queue_job_x(job)->expires_at_ms != 0)
            queue_job_expired(state, job, queue_job_ext_of(job)->expires_at_ms);
        else
            queue_job_remove(state, job);
        break;
    default: /* TOUCH: leases do not survive a restart */
        break;
    }
}

int queue_replay(struct queue_state *state, const struct log_record *record, struct queue_time now)
{
    struct record rec;
    int err = record_decode(record->type, record->data, record->len, &rec);
    if (err != 0)
        return err;
    state->replaying = true;
    struct queue *queue;
    switch (rec.type) {
    case RECORD_PUT:
        err = replay_put(state, &rec, &record->pos, now);
        break;
    case RECORD_RELOCATE:
        err = replay_relocate(state, &rec, &record->pos, now);
        break;
    case RECORD_QUEUE_META:
        if (queue_get(state, rec.u.meta.name, rec.u.meta.name_len, &queue) == 0) {
            queue_apply_meta(queue, &rec.u.meta);
            if (queue->pause_timed) /* pause-tube's timer is gone: as beanstalkd, unpaused */
                queue->paused = queue->pause_timed = false;
        }
        break;
    case RECORD_PURGE:
        queue = queue_find(state, rec.u.purge.name, rec.u.purge.name_len);
        if (queue != NULL)
            queue_purge_apply(state, queue);
        break;
    case RECORD_DELETE_QUEUE:
        queue = queue_find(state, rec.u.purge.name, rec.u.purge.name_len);
        if (queue != NULL)
            queue_delete_queue_apply(state, queue);
        break;
    default:
        replay_job_record(state, &rec, now);
        break;
    }
    state->replaying = false;
    return err;
}

void queue_recover_finish(struct queue_state *state, struct queue_time now)
{
    /* Anything still pending was read from the log, so it is durable. */
    queue_durable(state, UINT64_MAX, now);
    struct job **over = NULL;
    size_t count = 0, capacity = 0;
    JOBTAB_EACH(&state->jobs, job)
    {
        bool spent = job->max_attempts != 0 && job->attempts >= job->max_attempts;
        if (!spent || (job->state != JOB_READY && job->state != JOB_DELAYED))
            continue;
        if (count == capacity) {
            capacity = capacity == 0 ? 64 : capacity * 2;
            over = realloc(over, capacity * sizeof(*over));
            SPOOL_ASSERT(over != NULL);
        }
        over[count++] = job;
    }
    for (size_t i = 0; i < count; i++) {
        queue_job_leave(state, over[i]);
        queue_job_enter_dead(state, over[i], reason_max_attempts,
                             sizeof(reason_max_attempts) - 1, queue_time_wall_ms(now));
    }
    free(over);
}

void queue_each_unloaded(struct queue_state *state, void (*fn)(void *ctx, struct job *job),
                         void *ctx)
{
    JOBTAB_EACH(&state->jobs, job)
    {
        if (queue_job_body_missing(job))
            fn(ctx, job);
    }
}

void queue_body_loaded(struct queue_state *state, struct job *job, const void *body,
                       uint32_t len)
{
    SPOOL_ASSERT(len == job->body_len);
    SPOOL_ASSERT(queue_job_live(job));
    if (queue_job_body(job) == NULL)
        body_cache_put(&state->bodies, queue_job_body_slot(job), body,
                       len); /* -ENOMEM: see above */
}

void queue_body_stats_get(const struct queue_state *state, struct queue_body_stats *out)
{
    out->bytes = state->bodies.bytes;
    out->bytes_max = state->bodies.bytes_max;
    out->count = state->bodies.count;
    out->evictions = state->bodies.evictions;
}

uint64_t queue_memory_reusable(const struct queue_state *state)
{
    return state->pool.free_bytes;
}

uint64_t queue_body_cache_trim(struct queue_state *state, uint64_t bytes)
{
    return body_cache_trim_to(&state->bodies, bytes);
}
