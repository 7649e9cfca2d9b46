/* Snapshot entries copied only when their queue changed (snap_queue.h). */
#include "snap_queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "siphash.h"

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
    struct list_link *link = list_first(&queue->ready_order);
    return link == NULL ? 0 : LIST_ENTRY(link, struct job, state_link)->ready_since_ns;
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

/* ---- for the renderer ---- */

static struct siphash_key unique_key;
static pthread_once_t unique_key_once = PTHREAD_ONCE_INIT;

static void unique_key_init(void)
{
    if (getrandom(&unique_key, sizeof(unique_key), 0) != (ssize_t)sizeof(unique_key)) {
        /* No entropy (never on Linux >= 3.17): a clock-derived key still varies per run. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        unique_key.k0 = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull;
        unique_key.k1 = (uint64_t)ts.tv_sec ^ (uint64_t)getpid();
    }
}

int64_t snap_queue_unique(const struct snap_queue **qs, uint32_t n)
{
    pthread_once(&unique_key_once, unique_key_init);
    /* Slots: a power of two at least twice n, so probe runs stay short. */
    size_t slots = 16;
    while (slots < 2 * (size_t)n)
        slots *= 2;
    uint32_t *table = calloc(slots, sizeof(*table)); /* index in qs + 1; 0: empty */
    if (table == NULL)
        return -ENOMEM;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct snap_queue *q = qs[i];
        size_t len = strlen(q->name);
        size_t slot = siphash24(&unique_key, q->name, len) & (slots - 1);
        bool repeat = false;
        for (; table[slot] != 0; slot = (slot + 1) & (slots - 1)) {
            if (strcmp(qs[table[slot] - 1]->name, q->name) == 0) {
                repeat = true;
                break;
            }
        }
        if (repeat)
            continue;
        qs[kept] = q;
        table[slot] = ++kept; /* qs[kept - 1] */
    }
    free(table);
    SPOOL_ASSERT(kept <= n);
    return kept;
}

static int name_cmp(const void *a, const void *b)
{
    const struct snap_queue *const *qa = a;
    const struct snap_queue *const *qb = b;
    return strcmp((*qa)->name, (*qb)->name);
}

/* heap[0..k) is a max-heap by name but for heap[i]: sift it down into place. */
static void heap_sift_down(const struct snap_queue **heap, uint32_t k, uint32_t i)
{
    for (;;) {
        uint32_t largest = i, l = 2 * i + 1, r = 2 * i + 2;
        if (l < k && strcmp(heap[l]->name, heap[largest]->name) > 0)
            largest = l;
        if (r < k && strcmp(heap[r]->name, heap[largest]->name) > 0)
            largest = r;
        if (largest == i)
            return;
        const struct snap_queue *t = heap[i];
        heap[i] = heap[largest];
        heap[largest] = t;
        i = largest;
    }
}

uint32_t snap_queue_select_first(const struct snap_queue **qs, uint32_t n, uint32_t k)
{
    if (k >= n) {
        qsort(qs, n, sizeof(*qs), name_cmp);
        return n;
    }
    if (k == 0)
        return 0;
    /* qs[0..k): a max-heap of the smallest names so far; a smaller one replaces its top. */
    for (uint32_t i = k / 2; i-- > 0;)
        heap_sift_down(qs, k, i);
    for (uint32_t i = k; i < n; i++) {
        if (strcmp(qs[i]->name, qs[0]->name) >= 0)
            continue;
        const struct snap_queue *t = qs[0];
        qs[0] = qs[i];
        qs[i] = t;
        heap_sift_down(qs, k, 0);
    }
    qsort(qs, k, sizeof(*qs), name_cmp);
    return k;
}
