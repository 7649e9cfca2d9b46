/*
 * spool-log salvage DIR --out NEWDIR [--mode point-in-time|skip-corrupt]: build a new, valid
 * data directory from a damaged one, and say exactly what was lost. DIR is only read.
 *
 * Modes. point-in-time (the default) keeps the state as of just before the first damage: the
 * state machine gets the records below the first lost seq (with the checkpoint when its anchor
 * is below that point). skip-corrupt keeps every record that verifies, past damage too (see
 * the resync in spool_log_dir.c), on top of the checkpoint: newer, but a job whose settling
 * record was lost reappears (at-least-once: a duplicate, never a loss).
 *
 * The new directory is written by the engine itself (log_open, log_append, log_checkpoint):
 * one QUEUE_META per queue, then for each live job in id order its PUT (original id, queue,
 * priority, ttr, max_attempts, created/run-at/expiry times, idempotency key, body), a LEASE
 * carrying its attempt count when non-zero, and a BURY with its reason when dead. Then a
 * checkpoint of the whole state (next job id, keys, attempts) anchored after those records, so
 * ids are never reused and spoold recovers without replaying. A job whose body cannot be read
 * (its PUT lies in damage and only the checkpoint knew the job) is dropped and reported.
 *
 * The report (stdout and NEWDIR/salvage-report.txt) lists every lost seq range with the jobs it
 * affected, every job live at the end of the readable log that the salvaged state lacks, and
 * every job the salvaged state holds that the readable log had settled (it will run again).
 */
#include "spool_log.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SALVAGE_REPORT_NAME "salvage-report.txt"

struct salvage {
    const char *out_path;
    bool skip_corrupt;
    struct logdir dir;
    struct logstate kept; /* what the new directory holds */
    struct logstate full; /* every record that verifies: the reference for "lost" */
    FILE *report;
    uint64_t cut; /* point-in-time: first lost seq */
    struct io_backend *out_backend;
    struct log *log;
    uint64_t durable_end;
    int log_error;
    bool checkpoint_done;
    int checkpoint_error;
    uint64_t records_written;
    uint64_t jobs_written;
    uint64_t jobs_lost;
};

/* Print to stdout and to the report file. */
__attribute__((format(printf, 2, 3))) static void say(struct salvage *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    vprintf(fmt, ap);
    if (s->report != NULL)
        vfprintf(s->report, fmt, ap2);
    va_end(ap2);
    va_end(ap);
}

/* NEWDIR must be new (or empty) and not DIR itself. */
static int salvage_out_prepare(const char *in, const char *out)
{
    struct stat a, b;
    if (stat(in, &a) == 0 && stat(out, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        return -EEXIST;
    if (mkdir(out, 0750) == 0)
        return 0;
    if (errno != EEXIST)
        return -errno;
    DIR *d = opendir(out);
    if (d == NULL)
        return -errno;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            rc = -ENOTEMPTY;
    closedir(d);
    return rc;
}

/* ---- writing through the engine ---- */

static void salvage_on_durable(void *ctx, uint64_t end, enum log_durability level, int error)
{
    struct salvage *s = ctx;
    (void)level;
    if (error != 0)
        s->log_error = error;
    else if (end > s->durable_end)
        s->durable_end = end;
}

/* Drive the engine until everything appended is durable. */
static int salvage_drain(struct salvage *s)
{
    while (s->log_error == 0 && !log_idle(s->log)) {
        log_tick(s->log);
        int rc = io_backend_poll(s->out_backend, true);
        if (rc < 0)
            return rc;
    }
    return s->log_error;
}

static int salvage_append(struct salvage *s, uint8_t type, const void *data, uint32_t len,
                          struct log_pos *pos)
{
    struct log_pos ignored;
    for (;;) {
        int rc = log_append(s->log, type, data, len, pos != NULL ? pos : &ignored);
        if (rc != -ENOBUFS) {
            s->records_written += rc == 0;
            return rc;
        }
        rc = salvage_drain(s); /* the open batch is full: commit it, then retry */
        if (rc != 0)
            return rc;
    }
}

static int salvage_open_log(struct salvage *s)
{
    int rc = posix_backend_create(s->out_path, true, &s->out_backend);
    if (rc != 0)
        return rc;
    struct log_config config;
    log_config_defaults(&config);
    config.dir = s->out_path;
    /* Keep the source's segment size (the operator chose it), and a batch bound the engine
     * accepts for it. */
    if (s->dir.segment_count > 0 && s->dir.segments[0].header_ok)
        config.segment_size_bytes = s->dir.segments[0].header.segment_size;
    if (config.batch_size_bytes_max > config.segment_size_bytes / 4)
        config.batch_size_bytes_max = (uint32_t)(config.segment_size_bytes / 4);
    config.on_durable = salvage_on_durable;
    config.ctx = s;
    struct log_recovery_report report;
    memset(&report, 0, sizeof(report));
    void *checkpoint = NULL;
    uint32_t checkpoint_len = 0;
    rc = log_open(&config, s->out_backend, NULL, NULL, &checkpoint, &checkpoint_len, &report,
                  &s->log);
    free(checkpoint);
    return rc;
}

struct meta_walk {
    struct salvage *s;
    int rc;
};

static void salvage_meta_one(void *ctx, struct queue *queue)
{
    struct meta_walk *w = ctx;
    if (w->rc != 0)
        return;
    struct record_meta meta = {.name = queue->name,
                               .name_len = queue->name_len,
                               .paused = queue->paused,
                               .default_max_attempts = queue->default_max_attempts,
                               .default_ttr_ms = queue->default_ttr_ms,
                               .max_jobs = queue->max_jobs,
                               .max_bytes = queue->max_bytes};
    uint8_t buf[RECORD_META_FIXED + LIMIT_QUEUE_NAME_MAX_BYTES];
    size_t len = record_meta_encode(&meta, buf);
    w->rc = salvage_append(w->s, RECORD_QUEUE_META, buf, (uint32_t)len, NULL);
}

/* The idempotency key of a job's original PUT (none when unknown). */
static void job_key(struct salvage *s, const struct job *job, const char **key, uint32_t *key_len)
{
    *key = NULL;
    *key_len = 0;
    const struct logdir_rec *r = logdir_find(&s->dir, job->pos_seq);
    struct record rec;
    if (r != NULL && r->type == RECORD_PUT && logdir_decode(&s->dir, r, &rec) == 0 &&
        rec.id == job->id) {
        *key = rec.u.put.key;
        *key_len = rec.u.put.key_len;
    }
}

static int salvage_job(struct salvage *s, struct job *job)
{
    struct record_put put = {.id = job->id,
                             .priority = job->priority,
                             .max_attempts = job->max_attempts,
                             .ttr_ms = queue_job_ttr_ms(job),
                             .created_ms = job->created_ms,
                             .run_at_ms =
                                 job->state == JOB_DELAYED ? queue_job_x(job)->run_at_ms : 0,
                             .expires_at_ms = queue_job_x(job)->expires_at_ms,
                             .queue = job->queue->name,
                             .queue_len = job->queue->name_len,
                             .body = queue_job_body(job),
                             .body_len = job->body_len};
    job_key(s, job, &put.key, &put.key_len);
    uint8_t *buf = malloc(record_put_size(&put));
    SPOOL_ASSERT(buf != NULL);
    size_t len = record_put_encode(&put, buf);
    struct log_pos pos;
    int rc = salvage_append(s, RECORD_PUT, buf, (uint32_t)len, &pos);
    free(buf);
    if (rc != 0)
        return rc;
    queue_job_set_pos(job, pos); /* the checkpoint points at the body's new home */
    uint8_t small[RECORD_BURY_FIXED + LIMIT_REASON_MAX_BYTES];
    if (rc == 0 && job->attempts > 0) {
        len = record_lease_encode(job->id, job->attempts, small);
        rc = salvage_append(s, RECORD_LEASE, small, (uint32_t)len, NULL);
    }
    if (rc == 0 && job->state == JOB_DEAD) {
        uint32_t reason_len = queue_job_x(job)->reason_len < LIMIT_REASON_MAX_BYTES
                                  ? queue_job_x(job)->reason_len
                                  : LIMIT_REASON_MAX_BYTES;
        len = record_bury_encode(job->id, queue_job_x(job)->settled_ms, queue_job_x(job)->reason,
                                 reason_len, small);
        rc = salvage_append(s, RECORD_BURY, small, (uint32_t)len, NULL);
    }
    s->jobs_written += rc == 0;
    return rc;
}

static void salvage_checkpoint_done(void *ctx, int error)
{
    struct salvage *s = ctx;
    s->checkpoint_done = true;
    s->checkpoint_error = error;
}

static int salvage_checkpoint(struct salvage *s)
{
    uint8_t *payload = NULL;
    uint32_t len = 0;
    int rc = queue_checkpoint_encode(s->kept.queues, &payload, &len);
    if (rc != 0)
        return rc;
    rc = log_checkpoint(s->log, log_next_seq(s->log), payload, len, NULL, 0,
                        salvage_checkpoint_done, s);
    free(payload);
    while (rc == 0 && !s->checkpoint_done) {
        log_tick(s->log);
        rc = io_backend_poll(s->out_backend, true);
        rc = rc < 0 ? rc : 0;
    }
    return rc != 0 ? rc : s->checkpoint_error;
}

/* Jobs without a readable body cannot be written: drop them from the state (the report lists
 * them: they are live in the full state and absent from the kept one). */
static void salvage_drop_bodiless(struct salvage *s, struct job **jobs, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        struct job *job = jobs[i];
        if (queue_job_body(job) != NULL || job->body_len == 0)
            continue;
        int rc = queue_delete(s->kept.queues, job->id, s->kept.now, NULL);
        SPOOL_ASSERT(rc == 0); /* after recovery no job is reserved */
        jobs[i] = NULL;
    }
}

static int salvage_write(struct salvage *s)
{
    int rc = salvage_open_log(s);
    if (rc != 0)
        return rc;
    size_t count;
    struct job **jobs = logstate_live_jobs(&s->kept, &count);
    salvage_drop_bodiless(s, jobs, count);
    struct meta_walk walk = {.s = s};
    queue_each(s->kept.queues, salvage_meta_one, &walk);
    rc = walk.rc;
    for (size_t i = 0; i < count && rc == 0; i++)
        if (jobs[i] != NULL)
            rc = salvage_job(s, jobs[i]);
    free(jobs);
    if (rc == 0)
        rc = salvage_drain(s);
    if (rc == 0)
        rc = salvage_checkpoint(s);
    int close_rc = log_close(s->log);
    s->log = NULL;
    return rc != 0 ? rc : close_rc;
}

/* ---- the report ---- */

struct lost {
    uint64_t id;
    const char *reason;
};

static int lost_compare(const void *a, const void *b)
{
    const struct lost *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Ids that a surviving ACK or DELETE settled: a lost PUT of such a job loses nothing. */
static uint64_t *settled_ids(const struct logdir *dir, size_t *count)
{
    uint64_t *ids = malloc((dir->rec_count + 1) * sizeof(*ids));
    SPOOL_ASSERT(ids != NULL);
    size_t n = 0;
    for (size_t i = 0; i < dir->rec_count; i++) {
        const struct logdir_rec *r = &dir->recs[i];
        if ((r->type == RECORD_ACK || r->type == RECORD_DELETE) && r->decodes)
            ids[n++] = r->job_id;
    }
    if (n > 1)
        qsort(ids, n, sizeof(*ids), u64_compare);
    *count = n;
    return ids;
}

static bool state_live(const struct logstate *st, uint64_t id)
{
    struct queue_job_status status;
    return queue_status(st->queues, id, &status) && !job_state_settled(status.state);
}

static bool state_done(const struct logstate *st, uint64_t id)
{
    struct queue_job_status status;
    return queue_status(st->queues, id, &status) && status.state == JOB_DONE;
}

static void salvage_report_ranges(struct salvage *s)
{
    for (size_t i = 0; i < s->dir.damage_count; i++) {
        const struct logdir_damage *d = &s->dir.damages[i];
        char range[64];
        say(s, "lost_range seq=%s", logdir_seq_range(&d->d, range, sizeof(range)));
        say(s, " segment=%llu offset=%llu kind=%s jobs_affected=%u\n",
            (unsigned long long)d->d.segment_id, (unsigned long long)d->d.offset,
            log_damage_name(d->d.kind), d->job_count);
    }
    if (!s->skip_corrupt && s->cut != UINT64_MAX && s->dir.rec_count > 0 &&
        s->dir.recs[s->dir.rec_count - 1].seq >= s->cut)
        say(s,
            "lost_range seq=%llu..%llu kind=after_first_damage (records that verify but "
            "follow the cut)\n",
            (unsigned long long)s->cut, (unsigned long long)s->dir.recs[s->dir.rec_count - 1].seq);
}

/* Every job live in the readable log or named by damage, that the new directory lacks. */
static void salvage_report_jobs(struct salvage *s)
{
    size_t count;
    struct job **full = logstate_live_jobs(&s->full, &count);
    size_t cap = count + 1;
    for (size_t i = 0; i < s->dir.damage_count; i++)
        cap += s->dir.damages[i].job_count;
    struct lost *lost = malloc(cap * sizeof(*lost));
    SPOOL_ASSERT(lost != NULL);
    size_t n = 0, settled_count;
    uint64_t *settled = settled_ids(&s->dir, &settled_count);
    for (size_t i = 0; i < count; i++) {
        if (state_live(&s->kept, full[i]->id))
            continue;
        bool bodiless = queue_job_body(full[i]) == NULL && full[i]->body_len > 0;
        lost[n++] = (struct lost){full[i]->id, bodiless ? "body_unreadable" : "after_cut"};
    }
    for (size_t i = 0; i < s->dir.damage_count; i++) {
        const struct logdir_damage *d = &s->dir.damages[i];
        for (uint32_t k = 0; k < d->job_count; k++) {
            uint64_t id = d->job_ids[k];
            if (!state_live(&s->kept, id) && !state_done(&s->full, id) &&
                !ids_contain(settled, settled_count, id))
                lost[n++] = (struct lost){id, "in_damage"};
        }
    }
    if (n > 1)
        qsort(lost, n, sizeof(*lost), lost_compare);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && lost[i].id == lost[i - 1].id)
            continue;
        say(s, "lost_job id=%llu reason=%s\n", (unsigned long long)lost[i].id, lost[i].reason);
        s->jobs_lost++;
    }
    free(settled);
    free(lost);
    free(full);
    struct job **kept = logstate_live_jobs(&s->kept, &count);
    for (size_t i = 0; i < count; i++)
        if (state_done(&s->full, kept[i]->id))
            say(s, "reappears id=%llu (acked after the cut: it will run again)\n",
                (unsigned long long)kept[i]->id);
    free(kept);
}

static int salvage_args(int argc, char **argv, struct salvage *s)
{
    if (argc < 2)
        return -1;
    for (int i = 2; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--out") == 0 && v != NULL) {
            s->out_path = v;
        } else if (strcmp(argv[i], "--mode") == 0 && v != NULL &&
                   (strcmp(v, "point-in-time") == 0 || strcmp(v, "skip-corrupt") == 0)) {
            s->skip_corrupt = strcmp(v, "skip-corrupt") == 0;
        } else {
            return -1;
        }
        i++;
    }
    return s->out_path == NULL ? -1 : 0;
}

static int salvage_run(struct salvage *s, const char *in)
{
    int rc = logdir_load(&s->dir, in);
    if (rc != 0)
        return rc;
    s->cut = s->skip_corrupt ? UINT64_MAX : logdir_first_lost_seq(&s->dir);
    rc = logstate_build(&s->full, &s->dir, UINT64_MAX, true);
    if (rc == 0)
        rc = logstate_build(&s->kept, &s->dir, s->cut, true);
    if (rc != 0)
        return rc;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", s->out_path, SALVAGE_REPORT_NAME);
    s->report = fopen(path, "w");
    if (s->report == NULL)
        return -errno;
    say(s, "salvage source=%s out=%s mode=%s\n", in, s->out_path,
        s->skip_corrupt ? "skip-corrupt" : "point-in-time");
    if (s->dir.has_checkpoint && !s->kept.checkpoint_used)
        say(s,
            "warning: the checkpoint (anchor seq %llu) lies past the cut; the state is "
            "rebuilt from the records alone: a job whose ack was in a segment already "
            "dropped by retention may reappear\n",
            (unsigned long long)s->dir.checkpoint_anchor_seq);
    salvage_report_ranges(s);
    rc = salvage_write(s);
    if (rc != 0)
        return rc;
    salvage_report_jobs(s);
    say(s, "summary kept_jobs=%llu lost_jobs=%llu lost_ranges=%zu records_written=%llu\n",
        (unsigned long long)s->jobs_written, (unsigned long long)s->jobs_lost, s->dir.damage_count,
        (unsigned long long)s->records_written);
    return 0;
}

int cmd_salvage(int argc, char **argv)
{
    struct salvage s;
    memset(&s, 0, sizeof(s));
    if (salvage_args(argc, argv, &s) != 0) {
        fprintf(stderr, "usage: spool-log salvage DIR --out NEWDIR "
                        "[--mode point-in-time|skip-corrupt]\n");
        return EXIT_USAGE;
    }
    int rc = salvage_out_prepare(argv[1], s.out_path);
    if (rc != 0) {
        fprintf(stderr,
                "spool-log salvage: %s: %s (it must be a new or empty directory, "
                "not DIR)\n",
                s.out_path, strerror(-rc));
        return EXIT_USAGE;
    }
    rc = salvage_run(&s, argv[1]);
    if (rc != 0)
        fprintf(stderr, "spool-log salvage: failed: %s\n", log_strerror(rc));
    if (s.report != NULL && fclose(s.report) != 0 && rc == 0)
        rc = -EIO;
    if (s.full.queues != NULL)
        logstate_free(&s.full);
    if (s.kept.queues != NULL)
        logstate_free(&s.kept);
    io_backend_destroy(s.out_backend);
    logdir_free(&s.dir);
    return rc != 0 ? EXIT_CORRUPT : EXIT_CLEAN;
}
