/* Snapshot entries copied only when their queue changed (snap_queue.h). */
#include "snap_queue.h"

#include <string.h>

static void key_of(const struct queue *queue, struct snap_queue_key *k)
{
    const struct queue_stats *s = &queue->stats;
    const struct queue_metrics *m = &queue->metrics;
    *k = (struct snap_queue_key){
        .ready = s->ready, .delayed = s->delayed, .reserved = s->reserved, .dead = s->dead,
        .pending = s->pending, .total_put = s->total_put, .bytes = s->bytes,
        .expired = s->expired, .settled = s->settled, .puts = m->puts,
        .deliveries = m->deliveries, .acks = m->acks, .releases = m->releases,
        .buries = m->buries, .lease_expiries = m->lease_expiries,
        .dead_lettered = m->dead_lettered, .expired_total = m->expired, .kicked = m->kicked,
        .deleted = m->deleted, .name_len = queue->name_len, .paused = queue->paused};
}

static int64_t oldest_ready_since_ns(const struct queue *queue)
{
    return queue_oldest_ready_since_ns(queue);
}

bool snap_queue_fill(struct snap_queue *q, const struct queue *queue, struct queue_time now)
{
    struct snap_queue_key key;
    key_of(queue, &key);
    bool same = memcmp(&key, &q->key, sizeof(key)) == 0 &&
                memcmp(q->name, queue->name, queue->name_len + 1) == 0;
    if (!same) {
        memcpy(q->name, queue->name, queue->name_len + 1);
        queue_stats_get(queue, now, &q->stats);
        q->metrics = queue->metrics;
        q->key = key;
        q->oldest_ready_since_ns = oldest_ready_since_ns(queue);
        return true;
    }
    /* The same jobs are ready (the key says so): the oldest one's age moved with the clock. */
    int64_t age_ns = q->stats.ready == 0 ? 0 : now.mono_ns - q->oldest_ready_since_ns;
    q->stats.oldest_ready_age_ms = age_ns > 0 ? age_ns / QUEUE_NS_PER_MS : 0;
    return false;
}
