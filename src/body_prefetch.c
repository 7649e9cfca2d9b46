/*
 * Read-ahead planning (body_prefetch.h): a walk of the ready order, batch by batch.
 */
#include "body_prefetch.h"

#include <string.h>

void body_prefetch_budget_get(struct body_prefetch_budget *out, uint64_t inflight_bytes,
                              uint32_t inflight_reads, uint64_t cache_bytes,
                              uint64_t cache_bytes_max)
{
    SPOOL_ASSERT(inflight_reads <= BODY_PREFETCH_READS_MAX);
    uint64_t bytes = inflight_bytes >= BODY_PREFETCH_INFLIGHT_BYTES_MAX
                         ? 0
                         : BODY_PREFETCH_INFLIGHT_BYTES_MAX - inflight_bytes;
    if (cache_bytes_max != 0) {
        uint64_t share = cache_bytes_max / BODY_PREFETCH_CACHE_SHARE;
        uint64_t used = cache_bytes + inflight_bytes;
        uint64_t room = used >= share ? 0 : share - used;
        if (room < bytes)
            bytes = room;
    }
    out->bytes = bytes;
    out->reads = BODY_PREFETCH_READS_MAX - inflight_reads;
}

struct plan_walk {
    struct body_prefetch_plan *plan;
    const struct body_prefetch_budget *budget;
    uint64_t planned_bytes;
    struct body_prefetch_batch cur; /* the batch being gathered */
    struct job *cur_first;          /* its first job in the walk; NULL: none */
    bool cur_skip;                  /* being read or planned already: only passed over */
};

static bool plan_has(const struct body_prefetch_plan *plan, const struct log_pos *pos)
{
    for (uint32_t i = 0; i < plan->count; i++)
        if (body_prefetch_same_batch(&plan->batches[i].pos, pos))
            return true;
    return false;
}

/* Plan the gathered batch; false (and the plan stops there) when it does not fit. */
static bool plan_commit(struct plan_walk *w)
{
    struct body_prefetch_plan *plan = w->plan;
    if (w->cur_first == NULL || w->cur_skip)
        return true;
    if (plan->count == w->budget->reads || w->planned_bytes + w->cur.bytes > w->budget->bytes) {
        plan->stop = BODY_PREFETCH_BUDGET;
        plan->resume = w->cur_first;
        plan->resume_bytes = w->cur.bytes;
        return false;
    }
    plan->batches[plan->count++] = w->cur;
    w->planned_bytes += w->cur.bytes;
    SPOOL_ASSERT(w->planned_bytes <= w->budget->bytes);
    return true;
}

void body_prefetch_plan(struct body_prefetch_plan *plan, const struct body_prefetch_budget *budget,
                        struct job *first, body_prefetch_reading_fn reading, void *ctx)
{
    SPOOL_ASSERT(budget->reads <= BODY_PREFETCH_READS_MAX);
    memset(plan, 0, sizeof(*plan));
    struct plan_walk w = {.plan = plan, .budget = budget};
    struct job *job = first;
    uint64_t ahead_bytes = 0;
    for (; job != NULL; plan->visited++) {
        uint64_t bytes = (uint64_t)job->body_len + BODY_PREFETCH_RECORD_BYTES;
        if (plan->visited == BODY_PREFETCH_WALK_MAX ||
            ahead_bytes + bytes > BODY_PREFETCH_AHEAD_BYTES_MAX) {
            if (!plan_commit(&w))
                return;
            plan->stop = BODY_PREFETCH_WINDOW;
            plan->resume = job; /* the batch gathered so far is planned, or being read */
            return;
        }
        ahead_bytes += bytes;
        SPOOL_ASSERT(job->state == JOB_READY);
        if (queue_job_body_missing(job)) {
            struct log_pos pos = queue_job_pos(job);
            if (w.cur_first != NULL && body_prefetch_same_batch(&w.cur.pos, &pos)) {
                w.cur.bytes += bytes;
            } else {
                if (!plan_commit(&w))
                    return;
                w.cur = (struct body_prefetch_batch){.pos = pos, .bytes = bytes};
                w.cur_first = job;
                w.cur_skip = plan_has(plan, &pos) || reading(ctx, &pos);
            }
        }
        job = queue_ready_next(job);
    }
    if (!plan_commit(&w))
        return;
    plan->stop = BODY_PREFETCH_END;
    plan->resume = NULL;
}
