/*
 * Compaction (compact.h): survey, collect, copy, move; then a checkpoint drops the segments.
 *
 * Phases of a cycle, each a bounded step per loop turn:
 *   SURVEY   walk the job table, summing the live bytes (the RELOCATE size each live job would
 *            take) of every sealed segment;
 *   COLLECT  walk it again, listing the distinct batches that hold a target's live jobs;
 *   COPY     read those batches back (log_read_batch) and append a RELOCATE for each job of a
 *            target whose body is in it and that is still live and still there;
 *   then the moves: each copy, once durable (log_durable_seq_end past it), moves its job
 *   (queue_job_move_durable), in seq order. When every read and move is done, targets left
 *   without a live job ask for a checkpoint.
 * The walks and the reads only look; copies are checked against the job as it is when the
 * batch arrives (it may have been acked or moved meanwhile), moves against it when durable.
 */
#include "compact.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "logfmt.h"

/* A record's bytes in a batch: the log's 8-byte record header and the record. */
#define COMPACT_RECORD_HEADER_BYTES 8u

enum compact_phase {
    COMPACT_IDLE = 0,
    COMPACT_SURVEY,
    COMPACT_COLLECT,
    COMPACT_COPY,
};

struct compact_seg {
    uint64_t id;
    uint64_t live_bytes;
    uint64_t live_jobs;
};

struct compact_move {
    uint64_t id;
    uint64_t old_seq;
    struct log_pos pos;
};

struct compactor {
    struct log *log;
    struct queue_state *queues;
    uint64_t segment_bytes;
    uint32_t live_percent;
    enum compact_phase phase;
    bool stopped;
    bool checkpoint_wanted;
    int64_t next_survey_ms;
    int64_t survey_interval_ms;
    size_t cursor;
    /* SURVEY: every sealed segment of the log, ascending; after it, the average live bytes
     * per job each had (the next pre-check's estimate). */
    struct compact_seg *segs;
    uint32_t seg_count;
    uint64_t targets[COMPACT_TARGETS_MAX];
    uint32_t target_count;
    struct log_pos *batches; /* COLLECT: sorted and made unique before COPY */
    uint32_t batch_count;
    uint32_t batch_next;
    uint32_t reads;
    struct compact_move *moves;
    uint32_t move_count;
    uint32_t move_next;
    uint8_t *buf;
    size_t buf_cap;
    struct compact_stats stats;
};

bool compact_segment_wanted(uint64_t live_bytes, uint64_t segment_bytes, uint32_t live_percent)
{
    SPOOL_ASSERT(segment_bytes > 0);
    SPOOL_ASSERT(live_percent <= COMPACT_LIVE_PERCENT_MAX);
    return live_bytes > 0 && live_bytes * 100u < segment_bytes * live_percent;
}

struct compactor *compactor_create(struct log *log, struct queue_state *queues,
                                   uint64_t segment_bytes, uint32_t live_percent)
{
    SPOOL_ASSERT(log != NULL && queues != NULL && segment_bytes > 0);
    SPOOL_ASSERT(live_percent <= COMPACT_LIVE_PERCENT_MAX);
    struct compactor *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->log = log;
    c->queues = queues;
    c->segment_bytes = segment_bytes;
    c->live_percent = live_percent;
    c->survey_interval_ms = COMPACT_SURVEY_INTERVAL_MS;
    c->batches = malloc(COMPACT_BATCHES_MAX * sizeof(*c->batches));
    c->moves = malloc(COMPACT_MOVES_MAX * sizeof(*c->moves));
    if (c->batches == NULL || c->moves == NULL) {
        compactor_destroy(c);
        return NULL;
    }
    return c;
}

void compactor_set_survey_interval(struct compactor *c, int64_t interval_ms)
{
    SPOOL_ASSERT(interval_ms >= 0);
    c->survey_interval_ms = interval_ms;
}

void compactor_stop(struct compactor *c)
{
    c->stopped = true;
}

void compactor_destroy(struct compactor *c)
{
    if (c == NULL)
        return;
    SPOOL_ASSERT(c->reads == 0);
    free(c->segs);
    free(c->batches);
    free(c->moves);
    free(c->buf);
    free(c);
}

static struct compact_seg *seg_find(const struct compactor *c, uint64_t id)
{
    uint32_t lo = 0, hi = c->seg_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (c->segs[mid].id == id)
            return &c->segs[mid];
        if (c->segs[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static bool is_target(const struct compactor *c, uint64_t segment_id)
{
    for (uint32_t i = 0; i < c->target_count; i++) {
        if (c->targets[i] == segment_id)
            return true;
    }
    return false;
}

/* Could a sealed segment be below the threshold? Its live job count times the average bytes
 * a job had there at the last survey (or the smallest a copy can be, never surveyed). */
static bool survey_worth(const struct compactor *c)
{
    uint32_t count = log_segment_count(c->log);
    uint64_t current = log_current_segment_id(c->log);
    for (uint32_t i = 0; i < count; i++) {
        uint64_t id = log_segment_id(c->log, i);
        uint64_t jobs = queue_segment_live(c->queues, id);
        if (id == current || jobs == 0)
            continue;
        const struct compact_seg *seen = seg_find(c, id);
        uint64_t per_job = RECORD_RELOCATE_FIXED + COMPACT_RECORD_HEADER_BYTES + 1;
        if (seen != NULL && seen->live_jobs > 0)
            per_job = seen->live_bytes / seen->live_jobs;
        if (compact_segment_wanted(jobs * per_job, c->segment_bytes, c->live_percent))
            return true;
    }
    return false;
}

static void survey_begin(struct compactor *c)
{
    uint32_t count = log_segment_count(c->log);
    uint64_t current = log_current_segment_id(c->log);
    struct compact_seg *segs = realloc(c->segs, (count + 1) * sizeof(*segs));
    if (segs == NULL)
        return; /* out of memory: try at the next survey */
    c->segs = segs;
    c->seg_count = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t id = log_segment_id(c->log, i);
        if (id != current)
            c->segs[c->seg_count++] = (struct compact_seg){.id = id};
    }
    c->cursor = 0;
    c->phase = COMPACT_SURVEY;
}

static void survey_job(void *ctx, struct job *job)
{
    struct compactor *c = ctx;
    if (!queue_job_copyable(job))
        return;
    struct compact_seg *seg = seg_find(c, queue_job_pos(job).segment_id);
    if (seg == NULL)
        return;
    seg->live_jobs++;
    seg->live_bytes += queue_job_relocate_size(job) + COMPACT_RECORD_HEADER_BYTES;
}

/* The survey is complete: the emptiest wanted segments become the targets, as many as fit in
 * one segment's worth of copies (at least one), so that a cycle needs no more new disk than
 * one segment roll before the checkpoint after it gives back several. */
static void targets_pick(struct compactor *c)
{
    c->target_count = 0;
    uint64_t bytes = 0;
    for (;;) {
        struct compact_seg *best = NULL;
        for (uint32_t i = 0; i < c->seg_count; i++) {
            struct compact_seg *s = &c->segs[i];
            if (!compact_segment_wanted(s->live_bytes, c->segment_bytes, c->live_percent) ||
                is_target(c, s->id))
                continue;
            if (best == NULL || s->live_bytes < best->live_bytes)
                best = s;
        }
        if (best == NULL || c->target_count == COMPACT_TARGETS_MAX ||
            (c->target_count > 0 && bytes + best->live_bytes > c->segment_bytes))
            break;
        bytes += best->live_bytes;
        c->targets[c->target_count++] = best->id;
    }
}

static void collect_job(void *ctx, struct job *job)
{
    struct compactor *c = ctx;
    if (!queue_job_copyable(job) || c->batch_count == COMPACT_BATCHES_MAX)
        return;
    struct log_pos pos = queue_job_pos(job);
    if (!is_target(c, pos.segment_id))
        return;
    if (c->batch_count > 0) {
        const struct log_pos *last = &c->batches[c->batch_count - 1];
        if (last->segment_id == pos.segment_id && last->batch_offset == pos.batch_offset)
            return; /* the common case: jobs of one batch side by side in the table */
    }
    c->batches[c->batch_count++] = pos;
}

static int pos_compare(const void *a, const void *b)
{
    const struct log_pos *x = a, *y = b;
    if (x->segment_id != y->segment_id)
        return x->segment_id < y->segment_id ? -1 : 1;
    if (x->batch_offset != y->batch_offset)
        return x->batch_offset < y->batch_offset ? -1 : 1;
    return 0;
}

/* Sorted by location, one entry per batch (the read finds every job of it). */
static void batches_unique(struct compactor *c)
{
    if (c->batch_count > 1)
        qsort(c->batches, c->batch_count, sizeof(*c->batches), pos_compare);
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->batch_count; i++) {
        if (n > 0 && pos_compare(&c->batches[n - 1], &c->batches[i]) == 0)
            continue;
        c->batches[n++] = c->batches[i];
    }
    c->batch_count = n;
    c->batch_next = 0;
}

static bool buf_reserve(struct compactor *c, size_t len)
{
    if (len <= c->buf_cap)
        return true;
    uint8_t *buf = realloc(c->buf, len);
    if (buf == NULL)
        return false;
    c->buf = buf;
    c->buf_cap = len;
    return true;
}

/* A record of a batch read back: copy the job whose body it holds, if that job is still live,
 * in a target, and its body still here. */
static void copy_each(void *ctx, const struct log_record *record)
{
    struct compactor *c = ctx;
    /* A disk short of space keeps what is left for acks and deletes (log_space_low). */
    if (c->stopped || c->move_count == COMPACT_MOVES_MAX || log_space_low(c->log) ||
        (record->type != RECORD_PUT && record->type != RECORD_RELOCATE))
        return;
    struct record rec;
    const void *body;
    uint32_t body_len;
    if (record_decode(record->type, record->data, record->len, &rec) != 0 ||
        !record_body(&rec, &body, &body_len))
        return;
    struct job *job = queue_job_find(c->queues, rec.id);
    if (job == NULL || !queue_job_copyable(job) || queue_job_pos(job).seq != record->pos.seq ||
        !is_target(c, record->pos.segment_id) || job->body_len != body_len)
        return;
    size_t len = queue_job_relocate_size(job);
    struct log_pos pos;
    if (!buf_reserve(c, len) ||
        queue_job_relocate(c->queues, job, body, body_len, c->buf, c->buf_cap, &pos) != 0)
        return; /* the log is full or refusing: the job waits for the next cycle */
    c->moves[c->move_count++] =
        (struct compact_move){.id = rec.id, .old_seq = record->pos.seq, .pos = pos};
    c->stats.jobs_copied++;
    c->stats.bytes_copied += len + COMPACT_RECORD_HEADER_BYTES;
}

static void copy_done(void *ctx, int error, const struct log_record *record)
{
    (void)record;
    struct compactor *c = ctx;
    SPOOL_ASSERT(c->reads > 0);
    c->reads--;
    if (error != 0 && error != -ENOENT) {
        /* A batch that does not verify holds acknowledged jobs: their delivery reports it
         * and stops the server (body_fetch.h); compaction only leaves them where they are. */
        c->stats.read_errors++;
        logfmt("warn", "msg=\"compaction could not read a batch\" error=\"%s\"",
               log_strerror(error));
    }
}

/* Issue the reads the slots allow; true once every batch was read. */
static bool copy_step(struct compactor *c)
{
    while (c->batch_next < c->batch_count && c->reads < COMPACT_READS_MAX && !c->stopped) {
        const struct log_pos *pos = &c->batches[c->batch_next];
        int rc = log_read_batch(c->log, pos, copy_each, copy_done, c);
        if (rc == -EBUSY || rc == -EAGAIN)
            break; /* the slots are the deliveries' first: next turn */
        c->batch_next++;
        if (rc == 0)
            c->reads++; /* -ENOENT: the segment went (its jobs went before it) */
    }
    return c->batch_next == c->batch_count && c->reads == 0;
}

/* A move whose copy is durable waits: the next turn should come at once. */
static bool move_ready(const struct compactor *c)
{
    return c->move_next < c->move_count &&
           c->moves[c->move_next].pos.seq < log_durable_seq_end(c->log);
}

/* Move each job whose copy is durable, at most COMPACT_MOVES_PER_TURN; true once none
 * waits. */
static bool moves_apply(struct compactor *c)
{
    uint64_t durable_end = log_durable_seq_end(c->log);
    uint32_t moved = 0;
    while (c->move_next < c->move_count && c->moves[c->move_next].pos.seq < durable_end &&
           moved++ < COMPACT_MOVES_PER_TURN) {
        const struct compact_move *m = &c->moves[c->move_next++];
        (void)queue_job_move_durable(c->queues, m->id, m->old_seq, m->pos);
    }
    return c->move_next == c->move_count;
}

static void cycle_finish(struct compactor *c)
{
    uint32_t emptied = 0;
    for (uint32_t i = 0; i < c->target_count; i++) {
        if (queue_segment_live(c->queues, c->targets[i]) == 0)
            emptied++;
    }
    c->stats.segments_compacted += emptied;
    if (emptied > 0)
        c->checkpoint_wanted = true;
    logfmt("info", "msg=compaction segments=%u emptied=%u jobs_copied=%u", c->target_count, emptied,
           c->move_count);
    c->target_count = 0;
    c->batch_count = c->batch_next = 0;
    c->move_count = c->move_next = 0;
    c->phase = COMPACT_IDLE;
}

void compactor_tick(struct compactor *c, int64_t now_ms)
{
    switch (c->phase) {
    case COMPACT_IDLE:
        if (c->stopped || c->live_percent == 0 || now_ms < c->next_survey_ms)
            return;
        c->next_survey_ms = now_ms + c->survey_interval_ms;
        if (survey_worth(c))
            survey_begin(c);
        return;
    case COMPACT_SURVEY:
        if (!queue_jobs_step(c->queues, &c->cursor, COMPACT_PAGES_PER_TURN, survey_job, c))
            return;
        targets_pick(c);
        c->phase = c->target_count > 0 ? COMPACT_COLLECT : COMPACT_IDLE;
        c->cursor = 0;
        c->batch_count = 0;
        if (c->target_count > 0)
            c->stats.cycles++;
        return;
    case COMPACT_COLLECT:
        if (!queue_jobs_step(c->queues, &c->cursor, COMPACT_PAGES_PER_TURN, collect_job, c))
            return;
        batches_unique(c);
        c->phase = COMPACT_COPY;
        return;
    case COMPACT_COPY:
        if (copy_step(c) && moves_apply(c))
            cycle_finish(c);
        else
            (void)moves_apply(c);
        return;
    }
}

int64_t compactor_timeout_ms(const struct compactor *c, int64_t now_ms)
{
    switch (c->phase) {
    case COMPACT_IDLE:
        if (c->stopped || c->live_percent == 0)
            return INT64_MAX; /* off: no survey to wake the loop for */
        return c->next_survey_ms > now_ms ? c->next_survey_ms - now_ms : 0;
    case COMPACT_SURVEY:
    case COMPACT_COLLECT:
        return 0;
    case COMPACT_COPY:
        /* Reads and commits complete through the ring and wake the loop; reads that found
         * no slot retry on the next turn, which some completion brings. */
        if (move_ready(c))
            return 0;
        return c->batch_next < c->batch_count && c->reads == 0 ? 1 : INT64_MAX;
    }
    return INT64_MAX;
}

bool compactor_checkpoint_wanted(const struct compactor *c)
{
    return c->checkpoint_wanted;
}

void compactor_checkpoint_begun(struct compactor *c)
{
    c->checkpoint_wanted = false;
}

void compactor_stats_get(const struct compactor *c, struct compact_stats *out)
{
    *out = c->stats;
}
