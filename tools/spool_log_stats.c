/*
 * spool-log stats and why-retained: where the bytes of a log go, and why each segment is kept.
 *
 * A record is "live" when it is the PUT of a job that is live at the end of the log (any state
 * but done): that is what pins its segment. Every other record's bytes are dead (superseded
 * history that a checkpoint makes unnecessary). Bytes are record footprints in the raw payload
 * (8-byte record header + record), so per-segment live + dead = raw payload bytes, and the
 * compression ratio is raw payload bytes / stored batch bytes.
 *
 * Retention mirrors the server (src/server.c): a segment may be deleted when it is sealed
 * (not the newest), holds no live job's PUT (or RELOCATE: compaction's copy), and all its
 * records lie below the checkpoint's anchor; compaction (src/compact.h) copies the live jobs
 * of a sealed segment whose live bytes are below COMPACT_LIVE_PERCENT of its size. why-retained
 * names the first reason that keeps each segment.
 */
#include "spool_log.h"

#include "batch.h"
#include "compact.h"

#include <stdlib.h>
#include <string.h>

/* Jobs listed per segment by why-retained: the rest are counted. */
#define WHY_JOBS_SHOWN_MAX 100
/* Queues named on a segment's line: enough to point at the culprit. */
#define WHY_QUEUES_SHOWN_MAX 8

static const char *type_names[] = {"?",    "put",  "lease",  "ack",        "release", "touch",
                                   "bury", "kick", "delete", "queue_meta", "purge",
                                   "delete_queue", "relocate"};
#define TYPE_SLOTS (sizeof(type_names) / sizeof(type_names[0]))

struct bucket {
    uint64_t live_jobs;
    uint64_t by_state[JOB_EXPIRED + 1];
    uint64_t live_bytes;
    uint64_t dead_bytes;
    uint64_t records[TYPE_SLOTS];
};

struct stats_queue {
    char name[LIMIT_QUEUE_NAME_MAX_BYTES + 1];
    struct bucket b;
};

struct stats_ctx {
    struct logdir dir;
    struct logstate state;
    struct put_index puts;
    struct job **live;
    size_t live_count;
    struct stats_queue *queues;
    size_t queue_count;
    struct bucket *segs; /* parallel to dir.segments */
};

static struct job *live_find(const struct stats_ctx *s, uint64_t id)
{
    size_t lo = 0, hi = s->live_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->live[mid]->id == id)
            return s->live[mid];
        if (s->live[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static struct bucket *queue_bucket(struct stats_ctx *s, const char *name, uint32_t len)
{
    for (size_t i = 0; i < s->queue_count; i++)
        if (strlen(s->queues[i].name) == len && memcmp(s->queues[i].name, name, len) == 0)
            return &s->queues[i].b;
    s->queues = realloc(s->queues, (s->queue_count + 1) * sizeof(*s->queues));
    SPOOL_ASSERT(s->queues != NULL);
    struct stats_queue *q = &s->queues[s->queue_count++];
    memset(q, 0, sizeof(*q));
    memcpy(q->name, name, len < LIMIT_QUEUE_NAME_MAX_BYTES ? len : LIMIT_QUEUE_NAME_MAX_BYTES);
    return &q->b;
}

static struct bucket *seg_bucket(struct stats_ctx *s, uint64_t id)
{
    uint32_t lo = 0, hi = s->dir.segment_count; /* segments are sorted by id */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->dir.segments[mid].id == id)
            return &s->segs[mid];
        if (s->dir.segments[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* The queue a record belongs to (NULL when unknown). */
static struct bucket *record_queue(struct stats_ctx *s, const struct logdir_rec *r)
{
    const struct logdir_name *name = logdir_rec_queue(&s->dir, r);
    if (name == NULL && r->job_id != 0) {
        const struct logdir_rec *put = put_index_find(&s->puts, &s->dir, r->job_id);
        name = put != NULL ? logdir_rec_queue(&s->dir, put) : NULL;
    }
    if (name != NULL)
        return queue_bucket(s, name->name, name->len);
    struct job *job = r->job_id != 0 ? live_find(s, r->job_id) : NULL;
    return job != NULL ? queue_bucket(s, job->queue->name, job->queue->name_len) : NULL;
}

static void stats_account(struct stats_ctx *s)
{
    for (size_t i = 0; i < s->live_count; i++) {
        struct job *job = s->live[i];
        struct bucket *q = queue_bucket(s, job->queue->name, job->queue->name_len);
        struct bucket *g = seg_bucket(s, queue_job_pos(job).segment_id);
        q->live_jobs++;
        q->by_state[job->state]++;
        if (g != NULL) {
            g->live_jobs++;
            g->by_state[job->state]++;
        }
    }
    for (size_t i = 0; i < s->dir.rec_count; i++) {
        const struct logdir_rec *r = &s->dir.recs[i];
        struct bucket *q = r->decodes ? record_queue(s, r) : NULL;
        struct bucket *g = seg_bucket(s, r->segment_id);
        uint64_t bytes = 8 + (uint64_t)r->len;
        bool body = r->type == RECORD_PUT || r->type == RECORD_RELOCATE;
        struct job *job = r->decodes && body ? live_find(s, r->job_id) : NULL;
        bool live = job != NULL && queue_job_pos(job).seq == r->seq;
        size_t slot = r->type < TYPE_SLOTS ? r->type : 0;
        struct bucket *targets[2] = {q, g};
        for (int t = 0; t < 2; t++) {
            if (targets[t] == NULL)
                continue;
            targets[t]->records[slot]++;
            if (live)
                targets[t]->live_bytes += bytes;
            else
                targets[t]->dead_bytes += bytes;
        }
    }
}

static void bucket_print(const struct bucket *b)
{
    printf(" live_jobs=%llu ready=%llu delayed=%llu dead=%llu live_bytes=%llu dead_bytes=%llu",
           (unsigned long long)b->live_jobs, (unsigned long long)b->by_state[JOB_READY],
           (unsigned long long)b->by_state[JOB_DELAYED], (unsigned long long)b->by_state[JOB_DEAD],
           (unsigned long long)b->live_bytes, (unsigned long long)b->dead_bytes);
    for (size_t t = 1; t < TYPE_SLOTS; t++)
        printf(" %s=%llu", type_names[t], (unsigned long long)b->records[t]);
    if (b->records[0] > 0)
        printf(" unknown=%llu", (unsigned long long)b->records[0]);
}

static int stats_open(struct stats_ctx *s, const char *path)
{
    memset(s, 0, sizeof(*s));
    if (logdir_load(&s->dir, path) != 0)
        return -1;
    if (logstate_build(&s->state, &s->dir, UINT64_MAX, true) != 0)
        return -1;
    put_index_build(&s->puts, &s->dir);
    s->live = logstate_live_jobs(&s->state, &s->live_count);
    s->segs = calloc(s->dir.segment_count + 1, sizeof(*s->segs));
    SPOOL_ASSERT(s->segs != NULL);
    stats_account(s);
    return 0;
}

static void stats_close(struct stats_ctx *s)
{
    free(s->live);
    free(s->queues);
    free(s->segs);
    if (s->puts.ids != NULL)
        put_index_free(&s->puts);
    logstate_free(&s->state);
    logdir_free(&s->dir);
}

int cmd_stats(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: spool-log stats DIR\n");
        return EXIT_USAGE;
    }
    struct stats_ctx s;
    if (stats_open(&s, argv[1]) != 0) {
        stats_close(&s);
        return EXIT_USAGE;
    }
    for (size_t i = 0; i < s.queue_count; i++) {
        printf("queue=%s", s.queues[i].name);
        bucket_print(&s.queues[i].b);
        printf("\n");
    }
    for (uint32_t i = 0; i < s.dir.segment_count; i++) {
        const struct logdir_segment *seg = &s.dir.segments[i];
        double ratio = seg->stored_bytes > 0
                           ? (double)(seg->raw_bytes + BATCH_HEADER_SIZE * seg->batch_count) /
                                 (double)seg->stored_bytes
                           : 1.0;
        printf("segment=%llu batches=%llu records=%llu stored_bytes=%llu raw_bytes=%llu "
               "compression_ratio=%.2f",
               (unsigned long long)seg->id, (unsigned long long)seg->batch_count,
               (unsigned long long)seg->record_count, (unsigned long long)seg->stored_bytes,
               (unsigned long long)seg->raw_bytes, ratio);
        bucket_print(&s.segs[i]);
        printf("\n");
    }
    uint64_t stored = 0, raw = 0;
    for (uint32_t i = 0; i < s.dir.segment_count; i++) {
        stored += s.dir.segments[i].stored_bytes;
        raw += s.dir.segments[i].raw_bytes + BATCH_HEADER_SIZE * s.dir.segments[i].batch_count;
    }
    printf("total segments=%u batches=%zu records=%zu queues=%zu live_jobs=%zu "
           "compression_ratio=%.2f damaged=%s\n",
           s.dir.segment_count, s.dir.batch_count, s.dir.rec_count, s.queue_count, s.live_count,
           stored > 0 ? (double)raw / (double)stored : 1.0, s.dir.damage_count > 0 ? "yes" : "no");
    stats_close(&s);
    return EXIT_CLEAN;
}

/* ---- why-retained ---- */

/* The queues of the jobs that pin a segment, comma separated (the first few). */
static void why_queues(const struct stats_ctx *s, uint64_t segment_id)
{
    const struct queue *shown[WHY_QUEUES_SHOWN_MAX];
    uint32_t count = 0;
    printf(" queues=");
    for (size_t i = 0; i < s->live_count && count < WHY_QUEUES_SHOWN_MAX; i++) {
        const struct job *job = s->live[i];
        if (queue_job_pos(job).segment_id != segment_id)
            continue;
        bool seen = false;
        for (uint32_t q = 0; q < count && !seen; q++)
            seen = shown[q] == job->queue;
        if (seen)
            continue;
        printf("%s%.*s", count > 0 ? "," : "", (int)job->queue->name_len, job->queue->name);
        shown[count++] = job->queue;
    }
}

/* A segment kept for its live jobs: why compaction has not copied them (yet). */
static void why_live(struct stats_ctx *s, uint32_t index)
{
    const struct logdir_segment *seg = &s->dir.segments[index];
    const struct bucket *b = &s->segs[index];
    bool newest = index + 1 == s->dir.segment_count;
    uint64_t size = seg->header.segment_size > 0 ? seg->header.segment_size : seg->file_size;
    bool wanted = size > 0 && compact_segment_wanted(b->live_bytes, size, COMPACT_LIVE_PERCENT);
    const char *reason = !newest && wanted ? "waiting_for_compaction" : "live_jobs";
    const char *compaction = newest   ? "no_current"
                             : wanted ? "waiting"
                                      : "no_above_threshold";
    printf("retained=yes reason=%s live_jobs=%llu live_bytes=%llu live_percent=%.1f "
           "compaction=%s threshold_percent=%u",
           reason, (unsigned long long)b->live_jobs, (unsigned long long)b->live_bytes,
           size > 0 ? 100.0 * (double)b->live_bytes / (double)size : 0.0, compaction,
           COMPACT_LIVE_PERCENT);
    why_queues(s, seg->id);
    printf("\n");
    uint64_t shown = 0;
    for (size_t i = 0; i < s->live_count; i++) {
        struct job *job = s->live[i];
        if (queue_job_pos(job).segment_id != seg->id)
            continue;
        if (shown++ == WHY_JOBS_SHOWN_MAX) {
            printf("  ... and %llu more\n",
                   (unsigned long long)(b->live_jobs - WHY_JOBS_SHOWN_MAX));
            break;
        }
        printf("  job=%llu queue=%.*s state=%s age_ms=%lld seq=%llu\n",
               (unsigned long long)job->id, (int)job->queue->name_len, job->queue->name,
               job_state_name(job->state), (long long)(s->state.now_ms - job->created_ms),
               (unsigned long long)queue_job_pos(job).seq);
    }
}

static void why_segment(struct stats_ctx *s, uint32_t index)
{
    const struct logdir_segment *seg = &s->dir.segments[index];
    bool newest = index + 1 == s->dir.segment_count;
    printf("segment=%llu ", (unsigned long long)seg->id);
    if (s->segs[index].live_jobs > 0) {
        why_live(s, index);
        return;
    }
    if (newest) {
        printf("retained=yes reason=current (the segment being written)\n");
        return;
    }
    uint64_t next_id = s->dir.segments[index + 1].id;
    if (!s->dir.has_checkpoint || next_id > s->dir.checkpoint_anchor_seq) {
        printf("retained=yes reason=newer_than_checkpoint (records up to seq %llu, checkpoint "
               "anchor %llu)\n",
               (unsigned long long)(next_id - 1),
               (unsigned long long)(s->dir.has_checkpoint ? s->dir.checkpoint_anchor_seq : 0));
        return;
    }
    printf("retained=no reason=deletable (no live job, covered by the checkpoint; the server "
           "drops it at its next checkpoint)\n");
}

int cmd_why_retained(int argc, char **argv)
{
    uint64_t only = 0;
    if (argc < 2 || argc > 3 || (argc == 3 && !arg_u64(argv[2], &only))) {
        fprintf(stderr, "usage: spool-log why-retained DIR [SEGMENT]\n");
        return EXIT_USAGE;
    }
    struct stats_ctx s;
    if (stats_open(&s, argv[1]) != 0) {
        stats_close(&s);
        return EXIT_USAGE;
    }
    bool found = false;
    for (uint32_t i = 0; i < s.dir.segment_count; i++) {
        if (argc == 3 && s.dir.segments[i].id != only)
            continue;
        found = true;
        why_segment(&s, i);
    }
    if (argc == 3 && !found)
        fprintf(stderr, "spool-log: no segment %llu in %s\n", (unsigned long long)only, argv[1]);
    stats_close(&s);
    return argc == 3 && !found ? EXIT_TORN : EXIT_CLEAN;
}
