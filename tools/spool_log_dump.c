/*
 * spool-log dump and explain: records as JSON lines, and the history of one job.
 *
 * dump prints one JSON object per record that verified, in seq order, with the location of
 * its batch (segment = the segment's first seq, as in its file name; offset = the batch's byte
 * offset in that file), the decoded fields of its type, and with --bodies the body (PUT) or
 * result (ACK) in base64. Records recovered past damage (see spool_log_dir.c) carry
 * "resynced":true. Records that refer to a job by id get the job's queue from its PUT (or
 * from the checkpoint when the PUT was dropped by retention).
 *
 * explain prints every record that names the job, then its state at the end of the log as the
 * broker's state machine computes it.
 */
#include "spool_log.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

void put_index_build(struct put_index *px, const struct logdir *dir)
{
    px->ids = malloc((dir->rec_count + 1) * sizeof(*px->ids));
    px->recs = malloc((dir->rec_count + 1) * sizeof(*px->recs));
    SPOOL_ASSERT(px->ids != NULL && px->recs != NULL);
    px->count = 0;
    px->sorted = true;
    uint64_t last = 0;
    for (size_t i = 0; i < dir->rec_count; i++) {
        const struct logdir_rec *r = &dir->recs[i];
        if (r->type != RECORD_PUT || !r->decodes)
            continue;
        /* Ids grow with seq, so the array is sorted; if a damaged log breaks that, lookups
         * fall back to a linear search rather than a wrong answer. */
        px->sorted = px->sorted && r->job_id > last;
        last = r->job_id;
        px->ids[px->count] = r->job_id;
        px->recs[px->count++] = i;
    }
}

const struct logdir_rec *put_index_find(const struct put_index *px, const struct logdir *dir,
                                        uint64_t id)
{
    if (!px->sorted) {
        for (size_t i = 0; i < px->count; i++)
            if (px->ids[i] == id)
                return &dir->recs[px->recs[i]];
        return NULL;
    }
    size_t lo = 0, hi = px->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (px->ids[mid] == id)
            return &dir->recs[px->recs[mid]];
        if (px->ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

void put_index_free(struct put_index *px)
{
    free(px->ids);
    free(px->recs);
}

struct dump_ctx {
    struct logdir *dir;
    struct logstate state;
    bool state_ok;
    struct put_index puts;
    bool bodies;
};

/* The queue a job belongs to: from its PUT, else from the end state (checkpoint). */
static bool job_queue(struct dump_ctx *ctx, uint64_t id, const char **name, uint32_t *len)
{
    const struct logdir_rec *put = put_index_find(&ctx->puts, ctx->dir, id);
    const struct logdir_name *queue = put != NULL ? logdir_rec_queue(ctx->dir, put) : NULL;
    if (queue != NULL) {
        *name = queue->name;
        *len = queue->len;
        return true;
    }
    struct job *job = ctx->state_ok ? queue_peek_id(ctx->state.queues, id) : NULL;
    if (job == NULL)
        return false;
    *name = job->queue->name;
    *len = job->queue->name_len;
    return true;
}

static const char *relocate_state_name(uint8_t state)
{
    return state == RECORD_STATE_DELAYED ? "delayed"
           : state == RECORD_STATE_DEAD  ? "dead"
                                         : "ready";
}

static void dump_put(struct dump_ctx *ctx, const struct record_put *p)
{
    printf(",\"queue\":");
    json_string(stdout, p->queue, p->queue_len);
    printf(",\"job\":%llu,\"priority\":%u,\"max_attempts\":%u,\"ttr_ms\":%llu,"
           "\"created_ms\":%lld,\"run_at_ms\":%lld,\"expires_at_ms\":%lld",
           (unsigned long long)p->id, p->priority, p->max_attempts, (unsigned long long)p->ttr_ms,
           (long long)p->created_ms, (long long)p->run_at_ms, (long long)p->expires_at_ms);
    if (p->key_len > 0) {
        printf(",\"key\":");
        json_string(stdout, p->key, p->key_len);
    }
    printf(",\"body_len\":%u", p->body_len);
    if (ctx->bodies) {
        printf(",\"body\":\"");
        base64_write(stdout, p->body, p->body_len);
        printf("\"");
    }
}

/* Compaction's copy: the PUT's fields as the job has them now, its state and attempts. */
static void dump_relocate(struct dump_ctx *ctx, const struct record_relocate *rel)
{
    dump_put(ctx, &rel->put);
    printf(",\"state\":\"%s\",\"attempts\":%u", relocate_state_name(rel->state),
           rel->attempts);
    if (rel->state == RECORD_STATE_DEAD) {
        printf(",\"settled_ms\":%lld,\"reason\":", (long long)rel->settled_ms);
        json_string(stdout, rel->reason, rel->reason_len);
    }
}

static void dump_meta(const struct record_meta *m)
{
    printf(",\"queue\":");
    json_string(stdout, m->name, m->name_len);
    /* pause_timed: a beanstalkd pause-tube, which replay does not restore (RECORDS.md). */
    printf(",\"paused\":%s,\"pause_timed\":%s,\"default_ttr_ms\":%llu,"
           "\"default_max_attempts\":%u,\"max_jobs\":%llu,\"max_bytes\":%llu",
           m->paused ? "true" : "false", m->paused && m->pause_timed ? "true" : "false",
           (unsigned long long)m->default_ttr_ms,
           m->default_max_attempts, (unsigned long long)m->max_jobs,
           (unsigned long long)m->max_bytes);
}

/* The fields of a record that names a job (everything but PUT, QUEUE_META, PURGE). */
static void dump_job_fields(struct dump_ctx *ctx, const struct record *rec)
{
    const char *queue;
    uint32_t queue_len;
    if (job_queue(ctx, rec->id, &queue, &queue_len)) {
        printf(",\"queue\":");
        json_string(stdout, queue, queue_len);
    }
    printf(",\"job\":%llu", (unsigned long long)rec->id);
    switch (rec->type) {
    case RECORD_LEASE:
        printf(",\"attempt\":%u", rec->u.lease.attempt);
        break;
    case RECORD_ACK:
        printf(",\"result_len\":%u", rec->u.ack.result_len);
        if (ctx->bodies) {
            printf(",\"result\":\"");
            base64_write(stdout, rec->u.ack.result, rec->u.ack.result_len);
            printf("\"");
        }
        break;
    case RECORD_RELEASE:
        printf(",\"priority\":%u,\"run_at_ms\":%lld", rec->u.release.priority,
               (long long)rec->u.release.run_at_ms);
        break;
    case RECORD_TOUCH:
        printf(",\"deadline_ms\":%lld", (long long)rec->u.touch.deadline_ms);
        break;
    case RECORD_BURY:
        printf(",\"reason\":");
        json_string(stdout, rec->u.bury.reason, rec->u.bury.reason_len);
        break;
    case RECORD_DELETE:
        printf(",\"cause\":\"%s\"", rec->u.del.cause == RECORD_DELETE_TTL ? "ttl" : "client");
        break;
    default:
        break;
    }
}

static void dump_record(struct dump_ctx *ctx, const struct logdir_rec *r, const struct record *rec,
                        bool decoded)
{
    printf("{\"segment\":%llu,\"offset\":%llu,\"seq\":%llu,\"type\":\"%s\"",
           (unsigned long long)r->segment_id, (unsigned long long)r->offset,
           (unsigned long long)r->seq, record_type_name(r->type));
    if (!decoded)
        printf(",\"type_byte\":%u,\"len\":%u,\"error\":\"does not decode\"", r->type, r->len);
    else if (rec->type == RECORD_PUT)
        dump_put(ctx, &rec->u.put);
    else if (rec->type == RECORD_RELOCATE)
        dump_relocate(ctx, &rec->u.relocate);
    else if (rec->type == RECORD_QUEUE_META)
        dump_meta(&rec->u.meta);
    else if (rec->type == RECORD_PURGE || rec->type == RECORD_DELETE_QUEUE) {
        printf(",\"queue\":");
        json_string(stdout, rec->u.purge.name, rec->u.purge.name_len);
    } else
        dump_job_fields(ctx, rec);
    if (r->resynced)
        printf(",\"resynced\":true");
    printf("}\n");
}

struct dump_filter {
    uint64_t from;
    uint64_t to;
    const char *queue;
    int type;     /* -1: any */
    uint64_t job; /* 0: any */
};

static int type_parse(const char *name)
{
    for (int t = 1; t < 256; t++) {
        const char *n = record_type_name((uint8_t)t);
        if (strcmp(n, "UNKNOWN") == 0)
            break;
        if (strcasecmp(n, name) == 0)
            return t;
    }
    return -1;
}

static bool dump_wanted(struct dump_ctx *ctx, const struct dump_filter *f,
                        const struct logdir_rec *r, const struct record *rec, bool decoded)
{
    if (r->seq < f->from || r->seq > f->to)
        return false;
    if (f->type >= 0 && r->type != f->type)
        return false;
    if (f->queue == NULL)
        return true;
    if (!decoded)
        return false;
    const char *name = NULL;
    uint32_t len = 0;
    if (rec->type == RECORD_PUT) {
        name = rec->u.put.queue;
        len = rec->u.put.queue_len;
    } else if (rec->type == RECORD_QUEUE_META) {
        name = rec->u.meta.name;
        len = rec->u.meta.name_len;
    } else if (rec->type == RECORD_PURGE || rec->type == RECORD_DELETE_QUEUE) {
        name = rec->u.purge.name;
        len = rec->u.purge.name_len;
    } else if (!job_queue(ctx, rec->id, &name, &len)) {
        return false;
    }
    return len == strlen(f->queue) && memcmp(name, f->queue, len) == 0;
}

static int dump_open(struct dump_ctx *ctx, struct logdir *dir, const char *path)
{
    memset(ctx, 0, sizeof(*ctx));
    if (logdir_load(dir, path) != 0)
        return EXIT_USAGE;
    ctx->dir = dir;
    ctx->state_ok = logstate_build(&ctx->state, dir, UINT64_MAX, true) == 0;
    put_index_build(&ctx->puts, dir);
    return 0;
}

static void dump_close(struct dump_ctx *ctx, struct logdir *dir)
{
    put_index_free(&ctx->puts);
    logstate_free(&ctx->state);
    logdir_free(dir);
}

static int dump_args(int argc, char **argv, struct dump_filter *f, bool *bodies)
{
    *f = (struct dump_filter){.to = UINT64_MAX, .type = -1};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (strcmp(a, "--bodies") == 0) {
            *bodies = true;
        } else if (strcmp(a, "--from") == 0 && has_value && arg_u64(argv[i + 1], &f->from)) {
            i++;
        } else if (strcmp(a, "--to") == 0 && has_value && arg_u64(argv[i + 1], &f->to)) {
            i++;
        } else if (strcmp(a, "--queue") == 0 && has_value) {
            f->queue = argv[++i];
        } else if (strcmp(a, "--type") == 0 && has_value &&
                   (f->type = type_parse(argv[i + 1])) > 0) {
            i++;
        } else {
            fprintf(stderr, "spool-log dump: bad argument '%s'\n", a);
            return -1;
        }
    }
    return 0;
}

int cmd_dump(int argc, char **argv)
{
    struct dump_filter filter;
    bool bodies = false;
    if (argc < 2 || dump_args(argc, argv, &filter, &bodies) != 0) {
        fprintf(stderr, "usage: spool-log dump DIR [--from SEQ] [--to SEQ] [--queue Q] "
                        "[--type T] [--bodies]\n");
        return EXIT_USAGE;
    }
    struct logdir dir;
    struct dump_ctx ctx;
    if (dump_open(&ctx, &dir, argv[1]) != 0) {
        logdir_free(&dir);
        return EXIT_USAGE;
    }
    ctx.bodies = bodies;
    for (size_t i = 0; i < dir.rec_count; i++) {
        const struct logdir_rec *r = &dir.recs[i];
        if (r->seq < filter.from || r->seq > filter.to ||
            (filter.type >= 0 && r->type != filter.type))
            continue; /* cheap filters first: no read-back of PUT bodies */
        struct record rec;
        bool decoded = logdir_decode(&dir, r, &rec) == 0;
        if (dump_wanted(&ctx, &filter, r, &rec, decoded))
            dump_record(&ctx, r, &rec, decoded);
    }
    int rc = fflush(stdout) == 0 ? EXIT_CLEAN : EXIT_USAGE;
    dump_close(&ctx, &dir);
    return rc;
}

/* ---- explain ---- */

static void explain_record(const struct logdir_rec *r, const struct record *rec)
{
    printf("  seq=%llu segment=%llu offset=%llu %s", (unsigned long long)r->seq,
           (unsigned long long)r->segment_id, (unsigned long long)r->offset,
           record_type_name(r->type));
    switch (rec->type) {
    case RECORD_PUT:
        printf(" queue=%.*s priority=%u max_attempts=%u ttr_ms=%llu created_ms=%lld "
               "run_at_ms=%lld expires_at_ms=%lld body_len=%u",
               (int)rec->u.put.queue_len, rec->u.put.queue, rec->u.put.priority,
               rec->u.put.max_attempts, (unsigned long long)rec->u.put.ttr_ms,
               (long long)rec->u.put.created_ms, (long long)rec->u.put.run_at_ms,
               (long long)rec->u.put.expires_at_ms, rec->u.put.body_len);
        if (rec->u.put.key_len > 0) {
            printf(" key=");
            json_string(stdout, rec->u.put.key, rec->u.put.key_len);
        }
        break;
    case RECORD_RELOCATE:
        printf(" queue=%.*s state=%s attempts=%u priority=%u run_at_ms=%lld body_len=%u "
               "(compaction's copy: the body lives here now)",
               (int)rec->u.relocate.put.queue_len, rec->u.relocate.put.queue,
               relocate_state_name(rec->u.relocate.state), rec->u.relocate.attempts,
               rec->u.relocate.put.priority, (long long)rec->u.relocate.put.run_at_ms,
               rec->u.relocate.put.body_len);
        break;
    case RECORD_LEASE:
        printf(" attempt=%u", rec->u.lease.attempt);
        break;
    case RECORD_ACK:
        printf(" result=");
        json_string(stdout, rec->u.ack.result, rec->u.ack.result_len);
        break;
    case RECORD_RELEASE:
        printf(" priority=%u run_at_ms=%lld", rec->u.release.priority,
               (long long)rec->u.release.run_at_ms);
        break;
    case RECORD_TOUCH:
        printf(" deadline_ms=%lld", (long long)rec->u.touch.deadline_ms);
        break;
    case RECORD_BURY:
        printf(" reason=");
        json_string(stdout, rec->u.bury.reason, rec->u.bury.reason_len);
        break;
    case RECORD_DELETE:
        printf(" cause=%s", rec->u.del.cause == RECORD_DELETE_TTL ? "ttl" : "client");
        break;
    default:
        break;
    }
    printf("%s\n", r->resynced ? " (recovered past damage)" : "");
}

/* The state line: from the state machine when it still knows the job, else from history. */
static void explain_state(struct dump_ctx *ctx, uint64_t id, uint8_t last_type, bool put_seen)
{
    struct job *job = ctx->state_ok ? queue_peek_id(ctx->state.queues, id) : NULL;
    if (job != NULL) {
        printf("state: %s queue=%.*s attempts=%u priority=%u", job_state_name(job->state),
               (int)job->queue->name_len, job->queue->name, job->attempts, job->priority);
        if (job->state == JOB_DELAYED)
            printf(" ready_in_ms=%lld",
                   (long long)(queue_job_x(job)->run_at_ms - ctx->state.now_ms));
        if (job->state == JOB_DEAD)
            printf(" reason=\"%.*s\"", (int)queue_job_x(job)->reason_len,
                   queue_job_x(job)->reason ? queue_job_x(job)->reason : "");
        if (last_type == RECORD_LEASE)
            printf(" (reserved when the log ends; a restart voids the lease)");
        printf("\n");
    } else if (last_type == RECORD_ACK) {
        printf("state: done (acked)\n");
    } else if (last_type == RECORD_DELETE) {
        printf("state: deleted\n");
    } else if (!put_seen && last_type == 0) {
        printf("state: unknown: no record of this job is on disk\n");
    } else {
        printf("state: gone (purged, or settled and forgotten)\n");
    }
}

int cmd_explain(int argc, char **argv)
{
    uint64_t id;
    if (argc != 3 || !arg_u64(argv[2], &id) || id == 0) {
        fprintf(stderr, "usage: spool-log explain DIR JOB\n");
        return EXIT_USAGE;
    }
    struct logdir dir;
    struct dump_ctx ctx;
    if (dump_open(&ctx, &dir, argv[1]) != 0) {
        logdir_free(&dir);
        return EXIT_USAGE;
    }
    printf("job %llu\n", (unsigned long long)id);
    uint8_t last_type = 0;
    bool put_seen = false;
    for (size_t i = 0; i < dir.rec_count; i++) {
        struct record rec;
        const struct logdir_rec *r = &dir.recs[i];
        if (r->job_id != id || logdir_decode(&dir, r, &rec) != 0)
            continue;
        put_seen = put_seen || rec.type == RECORD_PUT;
        if (rec.type != RECORD_TOUCH)
            last_type = rec.type;
        explain_record(r, &rec);
    }
    if (!put_seen)
        printf("  (no PUT record on disk: its segment was dropped after a checkpoint, or lost "
               "to damage)\n");
    explain_state(&ctx, id, last_type, put_seen);
    bool known =
        put_seen || last_type != 0 || (ctx.state_ok && queue_peek_id(ctx.state.queues, id));
    dump_close(&ctx, &dir);
    return known ? EXIT_CLEAN : EXIT_TORN;
}
