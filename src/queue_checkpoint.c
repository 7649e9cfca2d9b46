/*
 * The checkpoint payload codec: the queue state as of an anchor, encoded incrementally by a
 * walk (queue_checkpoint_begin/step/finish) and loaded back at startup (queue_checkpoint_load);
 * log replay (queue_replay.c) then applies the records after the anchor.
 *
 * Checkpoint payload (little-endian; QUEUE_CHECKPOINT_VERSION; upgrade rule: a new version
 * adds fields at the end of a section and bumps the version; loaders keep reading old ones):
 *   header  u32 magic "SPQS", u16 version, u16 pad, u64 next_id, u64 lease_counter,
 *           u32 queue_count, u32 idem_count, u64 job_count, u32 done_count, u32 pad (48)
 *   queue   u16 name_len, u8 flags(bit0 paused), u8 pad, u32 default_max_attempts,
 *           u64 default_ttr_ms, u64 max_jobs, u64 max_bytes, u64 total_put, name  (40 + len)
 *   job     u64 id, u32 queue_index, u8 state, u8 pad, u16 reason_len, u32 priority,
 *           u32 attempts, u32 max_attempts, u32 body_len, u64 ttr_ms, i64 created_ms,
 *           i64 run_at_ms, i64 expires_at_ms, i64 settled_ms, u64 seq, u64 segment_id,
 *           u64 batch_offset, reason                                             (104 + len)
 *   idem    u16 key_len, u16 pad, u32 pad, u64 job_id, i64 created_ms, key       (24 + len)
 *   done    (version 2) u64 id, u32 queue_index, u32 attempts, u32 max_attempts,
 *           u32 result_len, u64 ttr_ms, i64 created_ms, i64 settled_ms, u32 priority,
 *           u32 pad, result                                                        (56 + len)
 * Version 2 adds u32 done_count at header offset 40 (header 48 bytes) and the done section
 * (acked jobs remembered for wait/status, oldest first); version 1 payloads still load.
 * Version 3 (written now) packs the job section: each job is u8 state, then LEB128 varints
 *           id (zigzag delta from the previous job's), queue_index, priority, attempts,
 *           max_attempts, body_len, ttr_ms, created_ms (zigzag delta), run_at_ms,
 *           expires_at_ms, settled_ms, seq (zigzag delta), segment_id (zigzag delta),
 *           batch_offset (zigzag delta), and for a DEAD job reason_len and the reason
 *           (deltas start from 0 at the first job). About 20 bytes a job where the fixed
 *           layout took 104: a checkpoint's size is what the disk writes again and again as a
 *           backlog grows (a full snapshot at every 64 MiB or twice its size of log), and
 *           what a restart reads. Versions 1 and 2 still load.
 * Version 4 scopes idempotency keys to their queue: an idem entry is u16 key_len, u8
 *           queue_len, u8 pad[5], u64 job_id, i64 created_ms, queue name, key (24 + lens);
 *           and a done entry's byte 52 holds its state (5 done, 6 expired: a job whose ttl
 *           ran out, remembered like a done one). Loading versions 1..3, a key is scoped to
 *           the queue of its job, and dropped when that job is no longer known (its window
 *           could then only catch a retry of a put whose job is already forgotten).
 * Jobs are saved READY, DELAYED or DEAD (a reserved job is saved ready: leases do not
 * survive a restart). Bodies stay in the log; the loader leaves them unloaded.
 */
#include "queue_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "le.h"

#define QUEUE_CHECKPOINT_MAGIC 0x53515053u /* "SPQS" */
#define QUEUE_CHECKPOINT_VERSION 4
#define QUEUE_CHECKPOINT_HEADER_V1 40
#define QUEUE_CHECKPOINT_HEADER 48
#define QUEUE_CHECKPOINT_DONE_FIXED 56
#define QUEUE_CHECKPOINT_QUEUE_FIXED 40
#define QUEUE_CHECKPOINT_JOB_FIXED 104
#define QUEUE_CHECKPOINT_IDEM_FIXED 24
/* A version 3 job: the state byte and 14 varints of at least one byte each. */
#define QUEUE_CHECKPOINT_JOB_V3_MIN 15
/* ... and what one typically takes, to size the walk's buffer up front. */
#define QUEUE_CHECKPOINT_JOB_V3_TYPICAL 24
/* A varint of a u64 takes at most 10 bytes (7 bits each). */
#define VARINT_BYTES_MAX 10

struct cursor {
    const uint8_t *p;
    size_t left;
    bool bad;
};

static const uint8_t *take(struct cursor *c, size_t n)
{
    if (c->bad || c->left < n) {
        c->bad = true;
        return NULL;
    }
    const uint8_t *p = c->p;
    c->p += n;
    c->left -= n;
    return p;
}

struct writer {
    uint8_t *buf;
    size_t len;
    size_t capacity;
};

static uint8_t *reserve(struct writer *w, size_t n)
{
    if (w->len + n > w->capacity) {
        size_t capacity = w->capacity == 0 ? 4096 : w->capacity;
        while (capacity < w->len + n)
            capacity *= 2;
        w->buf = realloc(w->buf, capacity);
        SPOOL_ASSERT(w->buf != NULL);
        w->capacity = capacity;
    }
    uint8_t *p = w->buf + w->len;
    w->len += n;
    return p;
}

static void encode_queue(struct writer *w, const struct queue *queue)
{
    uint8_t *p = reserve(w, QUEUE_CHECKPOINT_QUEUE_FIXED + queue->name_len);
    memset(p, 0, QUEUE_CHECKPOINT_QUEUE_FIXED);
    le_put_u16(p, (uint16_t)queue->name_len);
    p[2] = queue->paused && !queue->pause_timed ? 1 : 0; /* a pause-tube ends at a restart */
    le_put_u32(p + 4, queue->default_max_attempts);
    le_put_u64(p + 8, queue->default_ttr_ms);
    le_put_u64(p + 16, queue->max_jobs);
    le_put_u64(p + 24, queue->max_bytes);
    le_put_u64(p + 32, queue->stats.total_put);
    memcpy(p + QUEUE_CHECKPOINT_QUEUE_FIXED, queue->name, queue->name_len);
}

/* The fields of the previous job in a version 3 job section (deltas are taken from them). */
struct job_prev {
    uint64_t id;
    int64_t created_ms;
    uint64_t seq;
    uint64_t segment_id;
    uint64_t batch_offset;
};

static uint64_t zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* A job as saved: PENDING (at an anchor not yet durable) and RESERVED are saved ready (the
 * loader places a job by its run_at, and leases do not survive a restart). */
static void encode_job(struct writer *w, const struct job *job, uint32_t queue_index,
                       struct job_prev *prev)
{
    enum job_state saved = job->state == JOB_DEAD      ? JOB_DEAD
                           : job->state == JOB_DELAYED ? JOB_DELAYED
                                                       : JOB_READY;
    const struct job_ext *ext = queue_job_x(job);
    uint32_t reason_len = saved == JOB_DEAD ? ext->reason_len : 0;
    uint8_t *start = reserve(w, 1 + 15 * VARINT_BYTES_MAX + reason_len);
    uint8_t *p = start;
    *p++ = (uint8_t)saved;
    p = put_varint(p, zigzag((int64_t)(job->id - prev->id)));
    p = put_varint(p, queue_index);
    p = put_varint(p, job->priority);
    p = put_varint(p, job->attempts);
    p = put_varint(p, job->max_attempts);
    p = put_varint(p, job->body_len);
    p = put_varint(p, queue_job_ttr_ms(job));
    /* In u64: two created times far apart (a fuzzed or hand-made log) must not overflow. */
    p = put_varint(p, zigzag((int64_t)((uint64_t)job->created_ms - (uint64_t)prev->created_ms)));
    p = put_varint(p, (uint64_t)ext->run_at_ms);
    p = put_varint(p, (uint64_t)ext->expires_at_ms);
    p = put_varint(p, (uint64_t)ext->settled_ms);
    p = put_varint(p, zigzag((int64_t)(queue_job_pos(job).seq - prev->seq)));
    p = put_varint(p, zigzag((int64_t)(queue_job_pos(job).segment_id - prev->segment_id)));
    p = put_varint(p, zigzag((int64_t)(queue_job_pos(job).batch_offset - prev->batch_offset)));
    if (saved == JOB_DEAD) {
        p = put_varint(p, reason_len);
        if (reason_len > 0)
            memcpy(p, ext->reason, reason_len);
        p += reason_len;
    }
    struct log_pos pos = queue_job_pos(job);
    *prev = (struct job_prev){.id = job->id, .created_ms = job->created_ms, .seq = pos.seq,
                              .segment_id = pos.segment_id, .batch_offset = pos.batch_offset};
    w->len -= (size_t)(1 + 15 * VARINT_BYTES_MAX + reason_len) - (size_t)(p - start);
}

/* Remembered DONE jobs, oldest first, so the loader rebuilds the same forgetting order. */
static uint32_t encode_done(struct writer *w, const struct queue_state *state)
{
    uint32_t count = 0;
    for (struct list_link *l = state->done.next; l != &state->done; l = l->next) {
        const struct job_ext *ext = LIST_ENTRY(l, struct job_ext, done_link);
        const struct job *job = ext->job; /* a settled job has its extension */
        uint8_t *p = reserve(w, QUEUE_CHECKPOINT_DONE_FIXED + ext->result_len);
        memset(p, 0, QUEUE_CHECKPOINT_DONE_FIXED);
        le_put_u64(p, job->id);
        le_put_u32(p + 8, job->queue->checkpoint_index);
        le_put_u32(p + 12, job->attempts);
        le_put_u32(p + 16, job->max_attempts);
        le_put_u32(p + 20, ext->result_len);
        le_put_u64(p + 24, queue_job_ttr_ms(job));
        le_put_u64(p + 32, (uint64_t)job->created_ms);
        le_put_u64(p + 40, (uint64_t)ext->settled_ms);
        le_put_u32(p + 48, job->priority);
        p[52] = (uint8_t)job->state;
        if (ext->result_len > 0)
            memcpy(p + QUEUE_CHECKPOINT_DONE_FIXED, ext->result, ext->result_len);
        count++;
    }
    return count;
}

/*
 * The payload is taken incrementally, so that the loop never stops for a snapshot of every
 * live job. queue_checkpoint_begin fixes the anchor (the state reflects exactly the records
 * emitted so far) and encodes at once what is small or bounded: the header's counters, the
 * queues, the idempotency keys and the remembered DONE jobs. The live jobs that exist at the
 * anchor are then encoded by queue_checkpoint_step, a bounded number per call, walking the
 * job table's pages as they were at the anchor (their keys, sorted: the jobs come up in id
 * order); meanwhile the state keeps changing. Two rules keep the result exactly the state at
 * the anchor:
 *   - every change of a job starts with queue_job_leave, which first captures the job as it
 *     was (queue_checkpoint_capture) if the walk has not reached it yet; a job is captured
 *     once (its checkpoint_epoch says so);
 *   - jobs created after the anchor (id >= the anchor's next_id) are never captured; every
 *     job of the anchor is on a page that existed then (ids are handed out ascending, and a
 *     page is freed only once empty), so the walk of the anchor's pages meets each of them
 *     that is still there.
 * A job PENDING at the anchor is captured like any other (saved ready or delayed by its
 * run_at); the server writes the payload only once the anchor is durable.
 */
struct checkpoint_walk {
    uint32_t epoch;
    uint64_t next_id;            /* jobs with id >= next_id came after the anchor */
    struct writer main;          /* header, queues, then jobs as captured */
    struct writer tail;          /* idempotency keys and DONE jobs, as of the anchor */
    uint64_t job_count;
    struct job_prev prev;        /* the last job encoded (version 3 deltas) */
    uint32_t done_count;
    struct queue **queues;       /* the queues at the anchor, in checkpoint_index order */
    uint32_t queue_count;
    uint64_t *pages; /* jobtab page keys at the anchor, ascending */
    size_t page_count;
    size_t page_at;                    /* the page being walked */
    uint32_t slot_at;                  /* its next slot */
    struct queue_segment_set segments; /* of the jobs encoded so far */
};

void queue_segment_set_free(struct queue_segment_set *set)
{
    free(set->ids);
    memset(set, 0, sizeof(*set));
}

/* The first index whose id is >= segment_id. */
static uint32_t segment_set_lower(const struct queue_segment_set *set, uint64_t segment_id)
{
    uint32_t lo = 0, hi = set->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (set->ids[mid] < segment_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool queue_segment_set_has(const struct queue_segment_set *set, uint64_t segment_id)
{
    uint32_t at = segment_set_lower(set, segment_id);
    return at < set->count && set->ids[at] == segment_id;
}

/* Jobs are walked in id order, so their segments come up in runs, mostly ascending: the
 * newest id answers most calls; the rest is a binary search and, once per segment, an insert
 * (a log has at most a few thousand segments). */
static void segment_set_add(struct queue_segment_set *set, uint64_t segment_id)
{
    if (segment_id == 0)
        return; /* tests without a log */
    if (set->count > 0 && set->ids[set->count - 1] == segment_id)
        return;
    uint32_t at = segment_set_lower(set, segment_id);
    if (at < set->count && set->ids[at] == segment_id)
        return;
    if (set->count == set->capacity) {
        set->capacity = set->capacity == 0 ? 64 : set->capacity * 2;
        set->ids = realloc(set->ids, set->capacity * sizeof(*set->ids));
        SPOOL_ASSERT(set->ids != NULL);
    }
    memmove(set->ids + at + 1, set->ids + at, (set->count - at) * sizeof(*set->ids));
    set->ids[at] = segment_id;
    set->count++;
    SPOOL_ASSERT(at == 0 || set->ids[at - 1] < segment_id);
}

static void encode_idem(struct writer *w, const struct queue_state *state)
{
    STRMAP_EACH(&state->keys, entry)
    {
        const struct idem *idem = entry->value;
        uint32_t key_len = idem->key_len - idem->queue_len - 1;
        uint8_t *p = reserve(w, QUEUE_CHECKPOINT_IDEM_FIXED + idem->queue_len + key_len);
        memset(p, 0, QUEUE_CHECKPOINT_IDEM_FIXED);
        le_put_u16(p, (uint16_t)key_len);
        p[2] = (uint8_t)idem->queue_len;
        le_put_u64(p + 8, idem->job_id);
        le_put_u64(p + 16, (uint64_t)idem->created_ms);
        memcpy(p + QUEUE_CHECKPOINT_IDEM_FIXED, idem->key, idem->queue_len);
        memcpy(p + QUEUE_CHECKPOINT_IDEM_FIXED + idem->queue_len, idem->key + idem->queue_len + 1,
               key_len);
    }
}

bool queue_checkpoint_active(const struct queue_state *state)
{
    return state->walk != NULL;
}

static int page_key_compare(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The keys of the job table's pages now, ascending. */
static void walk_pages_take(struct checkpoint_walk *walk, struct queue_state *state)
{
    const struct idmap *pages = &state->jobs.pages;
    walk->pages = malloc((pages->count + 1) * sizeof(*walk->pages));
    SPOOL_ASSERT(walk->pages != NULL);
    IDMAP_EACH(pages, entry) walk->pages[walk->page_count++] = entry->id;
    SPOOL_ASSERT(walk->page_count == pages->count);
    qsort(walk->pages, walk->page_count, sizeof(*walk->pages), page_key_compare);
}

void queue_checkpoint_begin(struct queue_state *state)
{
    SPOOL_ASSERT(state->walk == NULL);
    struct checkpoint_walk *walk = calloc(1, sizeof(*walk));
    SPOOL_ASSERT(walk != NULL);
    walk->epoch = ++state->checkpoint_epoch;
    walk->next_id = state->next_id;
    walk->queue_count = (uint32_t)state->queues.count;
    walk->queues = calloc(walk->queue_count + 1u, sizeof(*walk->queues));
    SPOOL_ASSERT(walk->queues != NULL);
    /* Sized for every live job up front: growing a buffer of tens of MiB copies it. */
    walk->main.capacity = QUEUE_CHECKPOINT_HEADER + (size_t)walk->queue_count *
                          (QUEUE_CHECKPOINT_QUEUE_FIXED + LIMIT_QUEUE_NAME_MAX_BYTES) +
                          (size_t)state->totals.jobs * QUEUE_CHECKPOINT_JOB_V3_TYPICAL;
    walk->main.buf = malloc(walk->main.capacity);
    SPOOL_ASSERT(walk->main.buf != NULL);
    uint8_t *h = reserve(&walk->main, QUEUE_CHECKPOINT_HEADER);
    memset(h, 0, QUEUE_CHECKPOINT_HEADER);
    le_put_u32(h, QUEUE_CHECKPOINT_MAGIC);
    le_put_u16(h + 4, QUEUE_CHECKPOINT_VERSION);
    le_put_u64(h + 8, state->next_id);
    le_put_u64(h + 16, state->lease_counter);
    le_put_u32(h + 24, walk->queue_count);
    le_put_u32(h + 28, (uint32_t)state->keys.count);
    uint32_t index = 0;
    STRMAP_EACH(&state->queues, entry)
    {
        struct queue *queue = entry->value;
        queue->checkpoint_index = index;
        walk->queues[index++] = queue;
        encode_queue(&walk->main, queue);
    }
    encode_idem(&walk->tail, state);
    walk->done_count = encode_done(&walk->tail, state);
    walk_pages_take(walk, state);
    state->walk = walk;
}

void queue_checkpoint_capture(struct queue_state *state, struct job *job)
{
    struct checkpoint_walk *walk = state->walk;
    SPOOL_ASSERT(walk != NULL);
    if (job->id >= walk->next_id || job->checkpoint_epoch == walk->epoch)
        return;
    SPOOL_ASSERT(!job_state_settled(job->state)); /* settled ones went to the tail */
    job->checkpoint_epoch = walk->epoch;
    encode_job(&walk->main, job, job->queue->checkpoint_index, &walk->prev);
    segment_set_add(&walk->segments, queue_job_pos(job).segment_id);
    walk->job_count++;
}

/* Every slot counts against jobs_max, empty or not, so a step's work stays bounded. */
bool queue_checkpoint_step(struct queue_state *state, uint32_t jobs_max)
{
    struct checkpoint_walk *walk = state->walk;
    SPOOL_ASSERT(walk != NULL);
    uint32_t visited = 0;
    while (walk->page_at < walk->page_count && visited < jobs_max) {
        uint64_t first_id = (walk->pages[walk->page_at] - 1) << JOBTAB_PAGE_BITS;
        struct job *job = jobtab_get(&state->jobs, first_id + walk->slot_at);
        if (job != NULL && job->id < walk->next_id && queue_job_live(job))
            queue_checkpoint_capture(state, job);
        visited++;
        if (++walk->slot_at == JOBTAB_PAGE_SLOTS) {
            walk->slot_at = 0;
            walk->page_at++;
        }
    }
    return walk->page_at == walk->page_count;
}

static void walk_free(struct checkpoint_walk *walk)
{
    free(walk->main.buf);
    free(walk->tail.buf);
    free(walk->queues);
    free(walk->pages);
    queue_segment_set_free(&walk->segments);
    free(walk);
}

void queue_checkpoint_abort(struct queue_state *state)
{
    if (state->walk == NULL)
        return;
    walk_free(state->walk);
    state->walk = NULL;
}

int queue_checkpoint_finish(struct queue_state *state, uint8_t **out, uint32_t *out_len,
                            struct queue_segment_set *segments)
{
    struct checkpoint_walk *walk = state->walk;
    SPOOL_ASSERT(walk != NULL);
    SPOOL_ASSERT(walk->page_at == walk->page_count); /* queue_checkpoint_step said done */
    state->walk = NULL;
    size_t len = walk->main.len + walk->tail.len;
    if (len > UINT32_MAX) {
        walk_free(walk);
        return -EFBIG;
    }
    if (walk->tail.len > 0)
        memcpy(reserve(&walk->main, walk->tail.len), walk->tail.buf, walk->tail.len);
    le_put_u64(walk->main.buf + 32, walk->job_count);
    le_put_u32(walk->main.buf + 40, walk->done_count);
    *out = walk->main.buf;
    *out_len = (uint32_t)len;
    walk->main.buf = NULL;
    if (segments != NULL) {
        *segments = walk->segments;
        memset(&walk->segments, 0, sizeof(walk->segments));
    }
    walk_free(walk);
    return 0;
}

int queue_checkpoint_encode(struct queue_state *state, uint8_t **out, uint32_t *out_len)
{
    queue_checkpoint_begin(state);
    bool complete = queue_checkpoint_step(state, UINT32_MAX);
    SPOOL_ASSERT(complete);
    return queue_checkpoint_finish(state, out, out_len, NULL);
}

static int load_queues(struct queue_state *state, struct cursor *c, uint32_t count,
                       struct queue **queues)
{
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *p = take(c, QUEUE_CHECKPOINT_QUEUE_FIXED);
        if (p == NULL)
            return RECORD_EINVAL;
        uint16_t name_len = le_get_u16(p);
        const uint8_t *name = take(c, name_len);
        if (name == NULL || (p[2] & ~1u) != 0)
            return RECORD_EINVAL;
        struct queue *queue;
        if (queue_get(state, (const char *)name, name_len, &queue) != 0)
            return RECORD_EINVAL;
        queue->paused = p[2] & 1;
        queue->default_max_attempts = le_get_u32(p + 4);
        queue->default_ttr_ms = le_get_u64(p + 8);
        queue->max_jobs = le_get_u64(p + 16);
        queue->max_bytes = le_get_u64(p + 24);
        queues[i] = queue;
        /* total_put counts again as jobs are accounted; set the rest after loading jobs */
        queue->checkpoint_index = i;
        queue->stats.total_put = le_get_u64(p + 32);
    }
    return 0;
}

/* A loaded job goes back to the state the checkpoint saved. A READY job stays ready even
 * when its run-at is ahead of now (a KICK makes a job ready without touching its run-at, and
 * the wall clock may have stepped back): re-placing it by run-at would delay it again. */
static void load_job_place(struct queue_state *state, struct job *job, uint32_t saved,
                           struct queue_time now)
{
    if (saved == JOB_READY)
        queue_job_enter_ready(state, job, now);
    else
        queue_job_place(state, job, now);
}

/* A job of a version 1 or 2 payload (fixed layout). */
static int load_job(struct queue_state *state, struct cursor *c, struct queue **queues,
                    uint32_t queue_count, struct queue_time now)
{
    const uint8_t *p = take(c, QUEUE_CHECKPOINT_JOB_FIXED);
    if (p == NULL)
        return RECORD_EINVAL;
    uint64_t id = le_get_u64(p);
    uint32_t queue_index = le_get_u32(p + 8);
    uint8_t saved = p[12];
    uint16_t reason_len = le_get_u16(p + 14);
    const uint8_t *reason = take(c, reason_len);
    struct log_pos pos = {.seq = le_get_u64(p + 72),
                          .segment_id = le_get_u64(p + 80),
                          .batch_offset = le_get_u64(p + 88)};
    if (reason == NULL || id == 0 || id > RECORD_ID_MAX || queue_index >= queue_count ||
        !queue_pos_packable(pos) || jobtab_get(&state->jobs, id) != NULL ||
        (saved != JOB_READY && saved != JOB_DELAYED && saved != JOB_DEAD))
        return RECORD_EINVAL;
    if (queue_job_reserve(state, queues[queue_index], id, saved == JOB_DELAYED, true, 1) != 0)
        return QUEUE_ENOMEM; /* the start stops with a message (server.c) */
    struct job *job = queue_job_new(state, queues[queue_index], id, NULL, 0, false);
    job->priority = le_get_u32(p + 16);
    job->attempts = le_get_u32(p + 20);
    job->max_attempts = le_get_u32(p + 24);
    job->body_len = le_get_u32(p + 28);
    queue_job_set_ttr(state, job, le_get_u64(p + 32));
    job->created_ms = (int64_t)le_get_u64(p + 40);
    queue_job_set_run_at(state, job, (int64_t)le_get_u64(p + 48), now);
    queue_job_set_expires_at(state, job, (int64_t)le_get_u64(p + 56), now);
    int64_t settled_ms = (int64_t)le_get_u64(p + 64);
    queue_job_set_pos(job, pos);
    queue_job_account(state, job);
    job->queue->stats.total_put--; /* the checkpoint's total_put already counts it */
    if (saved == JOB_DEAD)
        queue_job_enter_dead(state, job, (const char *)reason, reason_len, settled_ms);
    else
        load_job_place(state, job, saved, now);
    return 0;
}

/* A LEB128 varint: false when the bytes end first or it runs past 10 bytes / 64 bits. */
static bool take_varint(struct cursor *c, uint64_t *out)
{
    uint64_t v = 0;
    for (uint32_t i = 0; i < VARINT_BYTES_MAX; i++) {
        const uint8_t *b = take(c, 1);
        if (b == NULL)
            return false;
        if (i == VARINT_BYTES_MAX - 1 && *b > 1)
            return false; /* the 10th byte holds bit 63 only */
        v |= (uint64_t)(*b & 0x7f) << (7 * i);
        if ((*b & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    c->bad = true;
    return false;
}

/* The fields of a version 3 job, in their order on disk (state byte and reason apart). */
enum { V3_ID, V3_QUEUE, V3_PRIORITY, V3_ATTEMPTS, V3_MAX_ATTEMPTS, V3_BODY_LEN, V3_TTR,
       V3_CREATED, V3_RUN_AT, V3_EXPIRES, V3_SETTLED, V3_SEQ, V3_SEGMENT, V3_OFFSET, V3_FIELDS };

static int load_job_v3(struct queue_state *state, struct cursor *c, struct queue **queues,
                       uint32_t queue_count, struct queue_time now, struct job_prev *prev)
{
    const uint8_t *state_byte = take(c, 1);
    uint64_t f[V3_FIELDS];
    for (uint32_t i = 0; state_byte != NULL && i < V3_FIELDS; i++)
        if (!take_varint(c, &f[i]))
            return RECORD_EINVAL;
    if (state_byte == NULL)
        return RECORD_EINVAL;
    uint8_t saved = *state_byte;
    uint64_t reason_len = 0;
    const uint8_t *reason = NULL;
    if (saved == JOB_DEAD && (!take_varint(c, &reason_len) || reason_len > UINT16_MAX ||
                              (reason = take(c, (size_t)reason_len)) == NULL))
        return RECORD_EINVAL;
    uint64_t id = prev->id + (uint64_t)unzigzag(f[V3_ID]);
    struct log_pos pos = {.seq = prev->seq + (uint64_t)unzigzag(f[V3_SEQ]),
                          .segment_id = prev->segment_id + (uint64_t)unzigzag(f[V3_SEGMENT]),
                          .batch_offset = prev->batch_offset + (uint64_t)unzigzag(f[V3_OFFSET])};
    if (id == 0 || id > RECORD_ID_MAX || f[V3_QUEUE] >= queue_count || !queue_pos_packable(pos) ||
        jobtab_get(&state->jobs, id) != NULL ||
        (saved != JOB_READY && saved != JOB_DELAYED && saved != JOB_DEAD) ||
        f[V3_PRIORITY] > UINT32_MAX || f[V3_ATTEMPTS] > UINT32_MAX ||
        f[V3_MAX_ATTEMPTS] > UINT32_MAX || f[V3_BODY_LEN] > UINT32_MAX)
        return RECORD_EINVAL;
    if (queue_job_reserve(state, queues[f[V3_QUEUE]], id, saved == JOB_DELAYED, true, 1) != 0)
        return QUEUE_ENOMEM; /* the start stops with a message (server.c) */
    struct job *job = queue_job_new(state, queues[f[V3_QUEUE]], id, NULL, 0, false);
    job->priority = (uint32_t)f[V3_PRIORITY];
    job->attempts = (uint32_t)f[V3_ATTEMPTS];
    job->max_attempts = (uint32_t)f[V3_MAX_ATTEMPTS];
    job->body_len = (uint32_t)f[V3_BODY_LEN];
    queue_job_set_ttr(state, job, f[V3_TTR]);
    job->created_ms = (int64_t)((uint64_t)prev->created_ms + (uint64_t)unzigzag(f[V3_CREATED]));
    queue_job_set_run_at(state, job, (int64_t)f[V3_RUN_AT], now);
    queue_job_set_expires_at(state, job, (int64_t)f[V3_EXPIRES], now);
    queue_job_set_pos(job, pos);
    *prev = (struct job_prev){.id = id, .created_ms = job->created_ms, .seq = pos.seq,
                              .segment_id = pos.segment_id, .batch_offset = pos.batch_offset};
    queue_job_account(state, job);
    job->queue->stats.total_put--; /* the checkpoint's total_put already counts it */
    if (saved == JOB_DEAD)
        queue_job_enter_dead(state, job, (const char *)reason, (uint32_t)reason_len,
                             (int64_t)f[V3_SETTLED]);
    else
        load_job_place(state, job, saved, now);
    return 0;
}

/* One key of a version 4 payload, scoped to the queue it names. */
static int load_idem_v4(struct queue_state *state, struct cursor *c, struct queue_time now)
{
    const uint8_t *p = take(c, QUEUE_CHECKPOINT_IDEM_FIXED);
    const uint8_t *name = p == NULL ? NULL : take(c, p[2]);
    const uint8_t *key = name == NULL ? NULL : take(c, le_get_u16(p));
    if (key == NULL || le_get_u16(p) > LIMIT_KEY_MAX_BYTES ||
        !record_queue_name_valid((const char *)name, p[2]))
        return RECORD_EINVAL;
    int64_t created_ms = (int64_t)le_get_u64(p + 16);
    if (queue_add_sat(created_ms, state->config.idempotency_window_ms) > queue_time_wall_ms(now))
        queue_idem_add(state, (const char *)name, p[2], (const char *)key, le_get_u16(p),
                       le_get_u64(p + 8), created_ms, now, NULL);
    return 0;
}

/* One key of a version 1..3 payload (keys were global then): scoped to its job's queue, so
 * this runs after the live and the done jobs are loaded; a key whose job is unknown goes. */
static int load_idem_v3(struct queue_state *state, struct cursor *c, struct queue_time now)
{
    const uint8_t *p = take(c, QUEUE_CHECKPOINT_IDEM_FIXED);
    const uint8_t *key = p == NULL ? NULL : take(c, le_get_u16(p));
    if (key == NULL || le_get_u16(p) > LIMIT_KEY_MAX_BYTES)
        return RECORD_EINVAL;
    int64_t created_ms = (int64_t)le_get_u64(p + 16);
    const struct job *job = jobtab_get(&state->jobs, le_get_u64(p + 8));
    if (job != NULL &&
        queue_add_sat(created_ms, state->config.idempotency_window_ms) > queue_time_wall_ms(now))
        queue_idem_add(state, job->queue->name, job->queue->name_len, (const char *)key,
                       le_get_u16(p), job->id, created_ms, now, NULL);
    return 0;
}

static int load_idem(struct queue_state *state, struct cursor *c, uint32_t count,
                     uint16_t version, struct queue_time now)
{
    int err = 0;
    for (uint32_t i = 0; i < count && err == 0; i++)
        err = version >= 4 ? load_idem_v4(state, c, now) : load_idem_v3(state, c, now);
    return err;
}

/* Step over count keys of a version 1..3 payload (to load them after the done jobs). */
static int skip_idem_v3(struct cursor *c, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *p = take(c, QUEUE_CHECKPOINT_IDEM_FIXED);
        if (p == NULL || take(c, le_get_u16(p)) == NULL)
            return RECORD_EINVAL;
    }
    return 0;
}

static int load_done(struct queue_state *state, struct cursor *c, uint32_t count,
                     struct queue **queues, uint32_t queue_count, uint16_t version)
{
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *p = take(c, QUEUE_CHECKPOINT_DONE_FIXED);
        uint32_t result_len = p == NULL ? 0 : le_get_u32(p + 20);
        const uint8_t *result = p == NULL ? NULL : take(c, result_len);
        if (result == NULL || result_len > LIMIT_RESULT_MAX_BYTES)
            return RECORD_EINVAL;
        uint64_t id = le_get_u64(p);
        uint32_t queue_index = le_get_u32(p + 8);
        enum job_state saved = version >= 4 ? (enum job_state)p[52] : JOB_DONE;
        if (id == 0 || id > RECORD_ID_MAX || queue_index >= queue_count ||
            jobtab_get(&state->jobs, id) != NULL || !job_state_settled(saved) ||
            (saved == JOB_EXPIRED && result_len > 0))
            return RECORD_EINVAL;
        if (job_pool_reserve(&state->pool, sizeof(struct job), 1) != 0 ||
            jobtab_reserve(&state->jobs, id, 1) != 0)
            return QUEUE_ENOMEM;
        struct job *job = job_pool_alloc(&state->pool, sizeof(*job)); /* freed by job_free */
        *job = (struct job){
            .id = id,
            .queue = queues[queue_index],
            .state = saved,
            .attempts = le_get_u32(p + 12),
            .max_attempts = le_get_u32(p + 16),
            .created_ms = (int64_t)le_get_u64(p + 32),
            .priority = le_get_u32(p + 48),
            .queue_slot = HEAP_NONE,
        };
        struct job_ext *ext = queue_job_ext(state, job);
        queue_job_set_ttr(state, job, le_get_u64(p + 24));
        ext->settled_ms = (int64_t)le_get_u64(p + 40);
        if (result_len > 0) {
            ext->result = malloc(result_len);
            SPOOL_ASSERT(ext->result != NULL);
            memcpy(ext->result, result, result_len);
            ext->result_len = result_len;
        }
        (void)jobtab_put(&state->jobs, id, job);
        list_insert_tail(&state->done, &ext->done_link);
        state->done_count++;
        state->done_bytes += result_len;
        job->queue->stats.settled++;
        if (saved == JOB_EXPIRED)
            job->queue->stats.expired++;
    }
    return 0;
}

int queue_checkpoint_load(struct queue_state *state, const void *data, uint32_t len,
                          struct queue_time now)
{
    struct cursor c = {data, len, false};
    const uint8_t *h = take(&c, QUEUE_CHECKPOINT_HEADER_V1);
    uint16_t version = h == NULL ? 0 : le_get_u16(h + 4);
    if (h == NULL || le_get_u32(h) != QUEUE_CHECKPOINT_MAGIC || version < 1 ||
        version > QUEUE_CHECKPOINT_VERSION)
        return RECORD_EINVAL;
    uint32_t done_count = 0;
    if (version >= 2) {
        const uint8_t *h2 = take(&c, QUEUE_CHECKPOINT_HEADER - QUEUE_CHECKPOINT_HEADER_V1);
        if (h2 == NULL)
            return RECORD_EINVAL;
        done_count = le_get_u32(h2);
    }
    uint32_t queue_count = le_get_u32(h + 24);
    uint32_t idem_count = le_get_u32(h + 28);
    uint64_t job_count = le_get_u64(h + 32);
    /* Clamp declared counts by the bytes present before allocating anything. */
    if ((uint64_t)queue_count * QUEUE_CHECKPOINT_QUEUE_FIXED > c.left ||
        job_count * (version >= 3 ? QUEUE_CHECKPOINT_JOB_V3_MIN : QUEUE_CHECKPOINT_JOB_FIXED) > c.left ||
        (uint64_t)done_count * QUEUE_CHECKPOINT_DONE_FIXED > c.left)
        return RECORD_EINVAL;
    struct queue **queues = calloc(queue_count + 1u, sizeof(*queues));
    SPOOL_ASSERT(queues != NULL);
    /* Loading recreates what was there: not subject to queues_max (a restart with a lower
     * --max-queues keeps every saved queue; only new names are refused). */
    bool replaying = state->replaying;
    state->replaying = true;
    int err = load_queues(state, &c, queue_count, queues);
    state->replaying = replaying;
    struct job_prev prev = {0};
    for (uint64_t i = 0; err == 0 && i < job_count; i++)
        err = version >= 3 ? load_job_v3(state, &c, queues, queue_count, now, &prev)
                           : load_job(state, &c, queues, queue_count, now);
    struct cursor idem_at = c;
    if (err == 0)
        err = version >= 4 ? load_idem(state, &c, idem_count, version, now)
                           : skip_idem_v3(&c, idem_count);
    if (err == 0)
        err = load_done(state, &c, done_count, queues, queue_count, version);
    if (err == 0 && version < 4)
        err = load_idem(state, &idem_at, idem_count, version, now);
    free(queues);
    if (err == QUEUE_ENOMEM)
        return err; /* the payload is fine: the memory is not (server.c says so) */
    if (err != 0 || c.left != 0)
        return RECORD_EINVAL;
    uint64_t next_id = le_get_u64(h + 8);
    if (next_id > RECORD_ID_MAX + 1)
        return RECORD_EINVAL;
    if (next_id > state->next_id)
        state->next_id = next_id;
    state->lease_counter = le_get_u64(h + 16);
    return 0;
}
