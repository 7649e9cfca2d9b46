/*
 * The state at the end of the log, computed by the broker's own state machine (src/queue.h):
 * the checkpoint payload first, then every record at or after its anchor, then
 * queue_recover_finish, exactly as spoold recovers. Bodies of jobs the checkpoint holds are
 * taken from their PUT records (queue_job_pos); a PUT that is not readable (damage) leaves the
 * body missing and is counted.
 *
 * A bound on seq (seq_end) gives the state at a point in time: what point-in-time salvage
 * keeps. A checkpoint anchored past that point cannot be used (it already reflects later
 * records), so the state is then rebuilt from the records alone, which is exact as long as no
 * segment before the point was dropped by retention (the salvage report says when it was).
 */
#include "spool_log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct body_fill {
    struct job **jobs;
    size_t count;
    size_t capacity;
};

static void body_fill_collect(void *ctx, struct job *job)
{
    struct body_fill *fill = ctx;
    if (fill->count == fill->capacity) {
        fill->capacity = fill->capacity == 0 ? 256 : fill->capacity * 2;
        fill->jobs = realloc(fill->jobs, fill->capacity * sizeof(*fill->jobs));
        SPOOL_ASSERT(fill->jobs != NULL);
    }
    fill->jobs[fill->count++] = job;
}

static int job_seq_compare(const void *a, const void *b)
{
    const struct job *x = *(struct job *const *)a, *y = *(struct job *const *)b;
    return x->pos_seq < y->pos_seq ? -1 : x->pos_seq > y->pos_seq;
}

/* Bodies of the jobs the checkpoint holds, from their PUT records, in log order so each batch
 * is read back once. */
static void body_fill(struct logstate *state, struct logdir *dir)
{
    struct body_fill fill = {0};
    queue_each_unloaded(state->queues, body_fill_collect, &fill);
    if (fill.count > 1)
        qsort(fill.jobs, fill.count, sizeof(*fill.jobs), job_seq_compare);
    for (size_t i = 0; i < fill.count; i++) {
        struct job *job = fill.jobs[i];
        const struct logdir_rec *r = logdir_find(dir, job->pos_seq);
        struct record rec;
        const void *body = NULL;
        uint32_t body_len = 0;
        /* The job's PUT, or compaction's copy of it (RELOCATE). */
        if (r == NULL || logdir_decode(dir, r, &rec) != 0 || !record_body(&rec, &body, &body_len) ||
            rec.id != job->id || body_len != job->body_len) {
            uint64_t *ids = realloc(state->missing_ids, (state->bodies_missing + 1) * sizeof(*ids));
            SPOOL_ASSERT(ids != NULL);
            state->missing_ids = ids;
            state->missing_ids[state->bodies_missing++] = job->id;
            continue;
        }
        queue_body_loaded(state->queues, job, body, body_len);
    }
    free(fill.jobs);
    if (state->bodies_missing > 1)
        qsort(state->missing_ids, state->bodies_missing, sizeof(uint64_t), u64_compare);
}

int logstate_build(struct logstate *state, struct logdir *dir, uint64_t seq_end,
                   bool use_checkpoint)
{
    memset(state, 0, sizeof(*state));
    struct queue_config config;
    queue_config_defaults(&config);
    state->queues = queue_state_create(&config);
    state->now_ms = wall_ms();
    state->now = (struct queue_time){.wall_ns = state->now_ms * QUEUE_NS_PER_MS,
                                     .mono_ns = state->now_ms * QUEUE_NS_PER_MS};
    uint64_t from = 0;
    if (use_checkpoint && dir->has_checkpoint && dir->checkpoint_anchor_seq <= seq_end) {
        int rc = queue_checkpoint_load(state->queues, dir->checkpoint_payload, dir->checkpoint_len,
                                       state->now);
        if (rc != 0) {
            fprintf(stderr, "spool-log: the checkpoint's queue state does not decode (%d)\n", rc);
            return LOG_ECORRUPT;
        }
        state->checkpoint_used = true;
        from = dir->checkpoint_anchor_seq;
    }
    for (size_t i = 0; i < dir->rec_count; i++) {
        const struct logdir_rec *r = &dir->recs[i];
        if (r->seq < from || r->seq >= seq_end)
            continue;
        struct log_record lr = {
            .pos = {.seq = r->seq, .segment_id = r->segment_id, .batch_offset = r->offset},
            .type = r->type,
            .len = r->len,
            .data = logdir_rec_bytes(dir, r)};
        int rc = lr.data == NULL ? LOG_ECORRUPT : queue_replay(state->queues, &lr, state->now);
        if (rc != 0) {
            fprintf(stderr, "spool-log: record seq=%llu type=%u does not decode\n",
                    (unsigned long long)r->seq, r->type);
            return rc;
        }
    }
    queue_recover_finish(state->queues, state->now);
    body_fill(state, dir);
    return 0;
}

void logstate_free(struct logstate *state)
{
    queue_state_destroy(state->queues);
    free(state->missing_ids);
    memset(state, 0, sizeof(*state));
}

struct live_collect {
    struct job **jobs;
    size_t count;
    size_t capacity;
};

static void live_collect_job(void *ctx, struct job *job)
{
    struct live_collect *lc = ctx;
    if (lc->count == lc->capacity) {
        lc->capacity = lc->capacity == 0 ? 256 : lc->capacity * 2;
        lc->jobs = realloc(lc->jobs, lc->capacity * sizeof(*lc->jobs));
        SPOOL_ASSERT(lc->jobs != NULL);
    }
    lc->jobs[lc->count++] = job;
}

static int job_id_compare(const void *a, const void *b)
{
    const struct job *x = *(struct job *const *)a, *y = *(struct job *const *)b;
    return x->id < y->id ? -1 : x->id > y->id;
}

struct job **logstate_live_jobs(const struct logstate *state, size_t *count)
{
    struct live_collect lc = {0};
    queue_each_live(state->queues, live_collect_job, &lc);
    if (lc.count > 1)
        qsort(lc.jobs, lc.count, sizeof(*lc.jobs), job_id_compare);
    *count = lc.count;
    if (lc.jobs == NULL)
        lc.jobs = malloc(sizeof(*lc.jobs));
    SPOOL_ASSERT(lc.jobs != NULL);
    return lc.jobs;
}
