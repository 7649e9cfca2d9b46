/*
 * Memory for a put, taken before its record is logged (issue 11 item 4: no memory cliff).
 *
 * A put that is logged must be applied: its record is in the log, and replay would apply it
 * anyway. So everything applying it allocates is made sure of first: the job's block (held in
 * the job pool), its jobtab page and page-map slot, a slot of its segment's count, and room in
 * every heap it may enter (queue_job_place at durable time; later moves between ready and
 * delayed). When any of it fails, the put is refused with QUEUE_ENOMEM: nothing logged,
 * nothing applied; the room already made stays for the next put. What it allocates is kept,
 * never freed by a refusal, so reserves, acks and deletes, which allocate nothing of it, go on.
 *
 * The ready heap of a queue gets room for every live job of the queue: a job leaves it when
 * reserved and comes back when released, kicked or its lease runs out, and none of those may
 * fail for want of a slot. The lease heap gets room for every live job, so that a reserve
 * never lacks a slot either (queue_reserve stops short, without an abort, if it ever does).
 * Heaps grow by doubling, so this costs no allocation per put, and a slot costs 8 bytes of
 * address space, resident only once used. The delayed and ttl heaps get room for the put
 * itself: a release with a delay into a full delayed heap still grows it (and aborts if that
 * fails), a path outside the put's.
 */
#include "queue_internal.h"

static uint64_t queue_live_jobs(const struct queue *queue)
{
    const struct queue_stats *s = &queue->stats;
    return s->ready + s->delayed + s->reserved + s->dead + s->pending;
}

int queue_job_reserve(struct queue_state *state, struct queue *queue, uint64_t first_id,
                      bool delayed, bool ttl, uint32_t count)
{
    SPOOL_ASSERT(count > 0);
    int rc = heap_room(&queue->ready, queue_live_jobs(queue) + count);
    if (rc == 0)
        rc = runheap_room(&state->leases, state->totals.jobs + count);
    if (rc == 0 && delayed)
        rc = heap_reserve(&queue->delayed, count);
    if (rc == 0 && delayed)
        rc = heap_reserve(&state->delay_heap, count);
    if (rc == 0 && ttl)
        rc = heap_reserve(&state->ttl_heap, count);
    if (rc == 0)
        rc = jobtab_reserve(&state->jobs, first_id, count);
    if (rc == 0)
        rc = idmap_reserve(&state->segments, 1); /* a put may open a segment's count */
    if (rc == 0)
        rc = job_pool_reserve(&state->pool, sizeof(struct job), count);
    return rc == 0 ? 0 : QUEUE_ENOMEM;
}

int queue_put_reserve(struct queue_state *state, struct queue *queue,
                      const struct queue_put_args *args, uint32_t count)
{
    bool delayed = args->run_at_ms != 0 || args->delay_ms > 0;
    int rc = queue_job_reserve(state, queue, state->next_id, delayed, args->ttl_ms > 0, count);
    if (rc != 0)
        state->totals.puts_refused_memory++;
    return rc;
}
