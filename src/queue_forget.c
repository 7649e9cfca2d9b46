/*
 * Queues come and go: a queue is created by the first request that names it (a put, a
 * reserve, a config) and forgotten once it holds nothing worth keeping, so that the number of
 * queues is bounded by what they hold (and by queues_max), not by every name ever used. A
 * reserve or a status poll of a typo, or a producer that names a queue per job, would
 * otherwise grow the queue map, STATS and QUEUES without bound.
 *
 * A queue is idle when it has no live job (pending included), no remembered DONE or EXPIRED
 * job (they point to it), no waiting reserver (paused ones included: they point to it), no
 * pin (a beanstalkd connection's used or watched tube exists while named), and no setting of
 * its own (paused, defaults, limits): forgetting it changes nothing a client
 * can observe except its total_put counter and its place in STATS/QUEUES. Every change that
 * may make a queue idle marks it (queue_idle_mark); queue_tick looks at the marked ones and
 * frees the idle ones. Marking is cheap and may be wrong (the sweep checks); freeing happens
 * only in the tick, never in the middle of a request that may hold the queue's pointer, and
 * not while a checkpoint walk holds pointers to every queue of its anchor.
 *
 * DELETE_QUEUE (queue_delete_queue) is the explicit form: it deletes the queue's jobs (with
 * force, reserved ones too), its idempotency keys and its settings, logged as one
 * DELETE_QUEUE record that replay applies the same way; the empty queue is then forgotten.
 */
#include "queue_internal.h"

#include <stdlib.h>
#include <string.h>

void queue_idle_mark(struct queue_state *state, struct queue *queue)
{
    if (!list_linked(&queue->idle_link))
        list_insert_tail(&state->idle, &queue->idle_link);
}

void queue_pin(struct queue *queue)
{
    SPOOL_ASSERT(queue->pins < UINT32_MAX);
    queue->pins++;
}

void queue_unpin(struct queue_state *state, struct queue *queue)
{
    SPOOL_ASSERT(queue->pins > 0);
    if (--queue->pins == 0)
        queue_idle_mark(state, queue);
}

static bool queue_idle(const struct queue *queue)
{
    return queue_live_count(queue) == 0 && queue->stats.settled == 0 && queue->reserver_refs == 0 &&
           queue->pins == 0 && list_empty(&queue->reservers) && !queue->paused &&
           queue->default_ttr_ms == 0 && queue->default_max_attempts == UINT32_MAX &&
           queue->max_jobs == 0 && queue->max_bytes == 0;
}

static void queue_forget(struct queue_state *state, struct queue *queue)
{
    SPOOL_ASSERT(queue_idle(queue));
    SPOOL_ASSERT(state->walk == NULL);
    void *removed = strmap_remove(&state->queues, queue->name, queue->name_len);
    SPOOL_ASSERT(removed == queue);
    if (list_linked(&queue->serve_link))
        list_unlink(&queue->serve_link);
    if (state->last_queue == queue)
        state->last_queue = NULL;
    heap_free(&queue->ready);
    heap_free(&queue->delayed);
    SPOOL_ASSERT(state->totals.queues > 0);
    state->totals.queues--;
    free(queue->segs);
    free(queue->ready_age.ring);
    free(queue);
}

void queue_idle_sweep(struct queue_state *state, uint32_t *budget)
{
    if (state->walk != NULL)
        return; /* the walk holds every queue of its anchor: after it */
    struct list_link *link;
    while (*budget > 0 && (link = list_first(&state->idle)) != NULL) {
        struct queue *queue = LIST_ENTRY(link, struct queue, idle_link);
        list_unlink(link);
        if (queue_idle(queue))
            queue_forget(state, queue);
        (*budget)--;
    }
}

/* Every job of the queue goes (a reserved one's lease goes stale with it), the done and
 * expired ones it remembers too, then its keys and settings: the queue is as if never used,
 * and the next tick forgets it. */
void queue_delete_queue_apply(struct queue_state *state, struct queue *queue)
{
    uint32_t count = 0;
    struct job **jobs = queue_jobs_of(state, queue, &count);
    for (uint32_t i = 0; i < count; i++)
        if (jobs[i]->state != JOB_PENDING)
            queue_job_remove(state, jobs[i]);
    free(jobs);
    queue_idem_forget_queue(state, queue);
    queue_done_forget_queue(state, queue);
    queue->paused = false;
    queue->default_ttr_ms = 0;
    queue->default_max_attempts = UINT32_MAX;
    queue->max_jobs = 0;
    queue->max_bytes = 0;
    queue_idle_mark(state, queue);
}

static int delete_queue(struct queue_state *state, const char *name, uint32_t name_len, bool force,
                        struct queue_time now, uint64_t *deleted)
{
    (void)now;
    *deleted = 0;
    if (!record_queue_name_valid(name, name_len))
        return QUEUE_EINVAL;
    struct queue *queue = queue_find(state, name, name_len);
    if (queue == NULL)
        return QUEUE_ENOTFOUND;
    /* A pending job's put has not been answered yet: its producer waits for a durable
     * record, so neither form deletes under it. */
    if (queue->stats.pending > 0 || (!force && queue_live_count(queue) > 0))
        return QUEUE_ESTATE;
    uint8_t buf[RECORD_PURGE_FIXED + LIMIT_QUEUE_NAME_MAX_BYTES];
    size_t len = record_delete_queue_encode(name, name_len, buf);
    int err = queue_emit(state, RECORD_DELETE_QUEUE, buf, len, NULL);
    if (err != 0)
        return err;
    const struct queue_stats *s = &queue->stats;
    uint64_t before = s->ready + s->delayed + s->reserved + s->dead;
    queue_delete_queue_apply(state, queue);
    *deleted = before - (s->ready + s->delayed + s->reserved + s->dead);
    return 0;
}

int queue_delete_queue(struct queue_state *state, const char *name, uint32_t name_len, bool force,
                       struct queue_time now, uint64_t *deleted, struct queue_logged *logged)
{
    uint64_t mark = state->emit_seq_max;
    int err = delete_queue(state, name, name_len, force, now, deleted);
    queue_logged_since(state, mark, logged);
    return err;
}
