/*
 * The queue state's side of compaction (compact.h drives it): a walk of every job in bounded
 * steps, and the RELOCATE record that copies one live job forward.
 *
 * A copy states the job as a restart would see it (docs/RECORDS.md, RELOCATE): a reserved
 * job as ready (its lease does not survive a restart), a delayed job with its run-at, a dead
 * one with its reason and settle time, and its attempts, priority and ttl as they are now. Its
 * position moves to the copy only once the copy is durable (compact.c, queue_job_move), so a
 * body is never read back from a record that is not on disk yet.
 */
#include "queue_internal.h"

#include <string.h>

bool queue_jobs_step(struct queue_state *state, size_t *cursor, uint32_t pages_max,
                     void (*fn)(void *ctx, struct job *job), void *ctx)
{
    SPOOL_ASSERT(cursor != NULL && fn != NULL);
    const struct idmap *pages = &state->jobs.pages;
    if (pages->entries == NULL)
        return true;
    size_t slots = pages->mask + 1;
    uint32_t visited = 0;
    /* The page map may have grown or shifted an entry since the last step: a page is then
     * visited twice or missed this time, which a walk of compaction tolerates (a job moved
     * already is no longer in a target segment; one missed waits for the next cycle). */
    while (*cursor < slots && visited < pages_max) {
        const struct idmap_entry *entry = &pages->entries[(*cursor)++];
        if (entry->id == 0)
            continue;
        visited++;
        struct jobtab_page *page = entry->value;
        for (uint32_t i = 0; i < JOBTAB_PAGE_SLOTS; i++) {
            if (page->slots[i] != NULL)
                fn(ctx, page->slots[i]);
        }
    }
    return *cursor >= slots;
}

bool queue_job_copyable(const struct job *job)
{
    return queue_job_live(job) && job->state != JOB_PENDING;
}

static void relocate_fill(const struct job *job, const void *body, uint32_t body_len,
                          struct record_relocate *rel)
{
    memset(rel, 0, sizeof(*rel));
    const struct job_ext *x = queue_job_x(job); /* zeroes when the job has no extension */
    rel->put = (struct record_put){
        .id = job->id,
        .priority = job->priority,
        .max_attempts = job->max_attempts,
        .ttr_ms = queue_job_ttr_ms(job),
        .created_ms = job->created_ms,
        .run_at_ms = job->state == JOB_DELAYED ? x->run_at_ms : 0,
        .expires_at_ms = x->expires_at_ms,
        .queue = job->queue->name,
        .queue_len = job->queue->name_len,
        .body = body,
        .body_len = body_len,
    };
    rel->attempts = job->attempts;
    rel->state = job->state == JOB_DELAYED ? RECORD_STATE_DELAYED
                 : job->state == JOB_DEAD  ? RECORD_STATE_DEAD
                                           : RECORD_STATE_READY;
    if (job->state == JOB_DEAD) {
        rel->settled_ms = x->settled_ms;
        rel->reason = x->reason;
        rel->reason_len = x->reason != NULL ? x->reason_len : 0;
        if (rel->reason_len > LIMIT_REASON_MAX_BYTES)
            rel->reason_len = LIMIT_REASON_MAX_BYTES;
    }
}

uint64_t queue_job_relocate_size(const struct job *job)
{
    struct record_relocate rel;
    relocate_fill(job, NULL, job->body_len, &rel);
    return record_relocate_size(&rel);
}

int queue_job_relocate(struct queue_state *state, const struct job *job, const void *body,
                       uint32_t body_len, uint8_t *buf, size_t buf_len, struct log_pos *pos)
{
    SPOOL_ASSERT(queue_job_copyable(job));
    SPOOL_ASSERT(body_len == job->body_len);
    struct record_relocate rel;
    relocate_fill(job, body, body_len, &rel);
    size_t len = record_relocate_size(&rel);
    SPOOL_ASSERT(len <= buf_len);
    size_t n = record_relocate_encode(&rel, buf);
    SPOOL_ASSERT(n == len);
    return queue_emit(state, RECORD_RELOCATE, buf, n, pos);
}

bool queue_job_move_durable(struct queue_state *state, uint64_t id, uint64_t old_seq,
                            struct log_pos pos)
{
    struct job *job = jobtab_get(&state->jobs, id);
    if (job == NULL || !queue_job_copyable(job) || queue_job_pos(job).seq != old_seq)
        return false;
    /* The segment counts may take up to two new entries (the copy's segment, and the one the
     * count cache hands back): out of memory, the job simply stays where it is, safe. */
    if (idmap_reserve(&state->segments, 2) != 0)
        return false;
    queue_job_move(state, job, pos);
    return true;
}
