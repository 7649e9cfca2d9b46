/*
 * spool-log replay DIR --to HOST:PORT: re-put jobs of a log into a running server through
 * libspool.
 *
 * Which jobs: by default those live at the end of the log (ready, delayed, or reserved when
 * the log ends; dead ones only with --dead), as the broker's state machine computes it; with
 * --all, every PUT record in the seq range instead, as it was put. --from/--to-seq bound the
 * PUT's seq, --queue picks one queue.
 *
 * What is kept: queue, priority (the current one, after releases), the remaining delay
 * (run_at - now, or none when already due), ttr, max_attempts, the remaining ttl (a job whose
 * ttl has run out is skipped and counted), and the body. Attempt counts start again at zero
 * on the target (the protocol has no way to set them). Each put carries the idempotency key
 * PREFIX + original job id ("spool-log:" unless --key-prefix), so a second run within the
 * server's idempotency window enqueues nothing: the server answers with the first run's ids.
 *
 * Puts go in batches (spool_put_batch) bounded in count and bytes so one request stays well
 * under the server's frame limit; a batch refused as too large is retried one job at a time.
 */
#include "spool_log.h"

#include <spool/client.h>
#include <stdlib.h>
#include <string.h>

/* Jobs per put request: enough to amortize a commit, small enough for one frame. */
#define REPLAY_BATCH_JOBS_MAX 128u
/* Body bytes per put request: a quarter of the default 4 MiB frame limit. */
#define REPLAY_BATCH_BYTES_MAX (1u << 20)
/* Progress line every this many jobs. */
#define REPLAY_PROGRESS_EVERY 1000u
#define REPLAY_KEY_LEN_MAX 96u

struct replay_job {
    uint64_t id;
    struct spool_job_spec spec;
    uint8_t *body; /* a copy: a PUT's bytes are only valid until the next batch is read */
    char queue[LIMIT_QUEUE_NAME_MAX_BYTES + 1];
    char key[REPLAY_KEY_LEN_MAX];
};

struct replay_opts {
    const char *dir;
    const char *address;
    const char *queue;
    const char *key_prefix;
    uint64_t from;
    uint64_t to;
    bool all;
    bool dead;
};

struct replay_counts {
    uint64_t selected;
    uint64_t put;
    uint64_t duplicate;
    uint64_t expired;
    uint64_t no_body;
    uint64_t failed;
};

struct replay_ctx {
    struct replay_opts opts;
    struct replay_counts counts;
    spool_client *client;
    struct replay_job *batch;
    size_t batch_count;
    size_t batch_bytes;
    int64_t now_ms;
};

static void replay_progress(const struct replay_ctx *r, bool final)
{
    const struct replay_counts *c = &r->counts;
    fprintf(stderr,
            "replay: %s%llu/%llu jobs: put=%llu already_present=%llu expired=%llu "
            "no_body=%llu failed=%llu\n",
            final ? "done " : "", (unsigned long long)(c->put + c->duplicate + c->failed),
            (unsigned long long)c->selected, (unsigned long long)c->put,
            (unsigned long long)c->duplicate, (unsigned long long)c->expired,
            (unsigned long long)c->no_body, (unsigned long long)c->failed);
}

static void replay_result(struct replay_ctx *r, int rc, const struct spool_put_result *res,
                          uint64_t id)
{
    uint64_t before = r->counts.put + r->counts.duplicate + r->counts.failed;
    if (rc != 0) {
        r->counts.failed++;
        fprintf(stderr, "replay: job %llu: %s\n", (unsigned long long)id, spool_strerror(rc));
    } else if (res->duplicate) {
        r->counts.duplicate++;
    } else {
        r->counts.put++;
    }
    if ((before + 1) % REPLAY_PROGRESS_EVERY == 0)
        replay_progress(r, false);
}

static void replay_batch_clear(struct replay_ctx *r)
{
    for (size_t i = 0; i < r->batch_count; i++)
        free(r->batch[i].body);
    r->batch_count = 0;
    r->batch_bytes = 0;
}

static int replay_flush(struct replay_ctx *r)
{
    if (r->batch_count == 0)
        return 0;
    struct spool_job_spec specs[REPLAY_BATCH_JOBS_MAX];
    struct spool_put_result results[REPLAY_BATCH_JOBS_MAX];
    for (size_t i = 0; i < r->batch_count; i++)
        specs[i] = r->batch[i].spec;
    int rc = spool_put_batch(r->client, specs, r->batch_count, results);
    if (rc == SPOOL_E_TOO_LARGE || rc == SPOOL_E_QUEUE_FULL || rc == SPOOL_E_BAD_REQUEST) {
        /* All or nothing was refused: retry one at a time so each job gets its own answer. */
        for (size_t i = 0; i < r->batch_count; i++) {
            struct spool_put_result one = {0};
            int one_rc = spool_put_batch(r->client, &specs[i], 1, &one);
            replay_result(r, one_rc, &one, r->batch[i].id);
        }
    } else if (rc != 0) {
        fprintf(stderr, "replay: put failed: %s\n", spool_strerror(rc));
        replay_batch_clear(r);
        return rc;
    } else {
        for (size_t i = 0; i < r->batch_count; i++)
            replay_result(r, 0, &results[i], r->batch[i].id);
    }
    replay_batch_clear(r);
    return 0;
}

/* Queue one job for the next batch; flushes first when it would not fit. */
static int replay_add(struct replay_ctx *r, uint64_t id, const char *queue, uint32_t queue_len,
                      const struct spool_job_spec *spec)
{
    if (r->batch_count == REPLAY_BATCH_JOBS_MAX ||
        (r->batch_count > 0 && r->batch_bytes + spec->body_len > REPLAY_BATCH_BYTES_MAX)) {
        int rc = replay_flush(r);
        if (rc != 0)
            return rc;
    }
    struct replay_job *j = &r->batch[r->batch_count++];
    j->id = id;
    j->spec = *spec;
    memcpy(j->queue, queue, queue_len);
    j->queue[queue_len] = '\0';
    snprintf(j->key, sizeof(j->key), "%s%llu", r->opts.key_prefix, (unsigned long long)id);
    j->spec.queue = j->queue;
    j->spec.key = j->key;
    j->body = malloc(spec->body_len == 0 ? 1 : spec->body_len);
    SPOOL_ASSERT(j->body != NULL);
    if (spec->body_len > 0)
        memcpy(j->body, spec->body, spec->body_len);
    j->spec.body = j->body;
    r->batch_bytes += spec->body_len;
    return 0;
}

static bool queue_matches(const struct replay_opts *o, const char *name, uint32_t len)
{
    return o->queue == NULL || (strlen(o->queue) == len && memcmp(o->queue, name, len) == 0);
}

/* Fill the timing fields of spec; false when the job's ttl has already run out. */
static bool replay_times(struct replay_ctx *r, struct spool_job_spec *spec, int64_t run_at_ms,
                         int64_t expires_at_ms)
{
    if (run_at_ms > r->now_ms)
        spec->delay_ms = (uint64_t)(run_at_ms - r->now_ms);
    if (expires_at_ms != 0) {
        if (expires_at_ms <= r->now_ms) {
            r->counts.expired++;
            return false;
        }
        spec->ttl_ms = (uint64_t)(expires_at_ms - r->now_ms);
    }
    return true;
}

static void spec_limits(struct spool_job_spec *spec, uint64_t ttr_ms, uint32_t max_attempts)
{
    spec->ttr_ms = ttr_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ttr_ms;
    spec->max_attempts = max_attempts == 0 ? SPOOL_ATTEMPTS_UNLIMITED : max_attempts;
}

static int replay_live(struct replay_ctx *r, const struct logstate *state)
{
    size_t count;
    struct job **jobs = logstate_live_jobs(state, &count);
    int rc = 0;
    for (size_t i = 0; i < count && rc == 0; i++) {
        struct job *job = jobs[i];
        if (job->pos_seq < r->opts.from || job->pos_seq > r->opts.to ||
            !queue_matches(&r->opts, job->queue->name, job->queue->name_len) ||
            (job->state == JOB_DEAD && !r->opts.dead))
            continue;
        r->counts.selected++;
        if (queue_job_body(job) == NULL && job->body_len > 0) {
            r->counts.no_body++;
            fprintf(stderr, "replay: job %llu: body not readable (damage), skipped\n",
                    (unsigned long long)job->id);
            continue;
        }
        struct spool_job_spec spec = {
            .body = queue_job_body(job), .body_len = job->body_len, .priority = job->priority};
        spec_limits(&spec, queue_job_ttr_ms(job), job->max_attempts);
        int64_t run_at = job->state == JOB_DELAYED ? queue_job_x(job)->run_at_ms : 0;
        if (!replay_times(r, &spec, run_at, queue_job_x(job)->expires_at_ms))
            continue;
        rc = replay_add(r, job->id, job->queue->name, job->queue->name_len, &spec);
    }
    free(jobs);
    return rc;
}

static int replay_all(struct replay_ctx *r, struct logdir *dir)
{
    int rc = 0;
    for (size_t i = 0; i < dir->rec_count && rc == 0; i++) {
        const struct logdir_rec *lr = &dir->recs[i];
        struct record rec;
        if (lr->type != RECORD_PUT || lr->seq < r->opts.from || lr->seq > r->opts.to ||
            logdir_decode(dir, lr, &rec) != 0)
            continue;
        const struct record_put *p = &rec.u.put;
        if (!queue_matches(&r->opts, p->queue, p->queue_len))
            continue;
        r->counts.selected++;
        struct spool_job_spec spec = {
            .body = p->body, .body_len = p->body_len, .priority = p->priority};
        spec_limits(&spec, p->ttr_ms, p->max_attempts);
        if (!replay_times(r, &spec, p->run_at_ms, p->expires_at_ms))
            continue;
        rc = replay_add(r, p->id, p->queue, p->queue_len, &spec);
    }
    return rc;
}

static int replay_args(int argc, char **argv, struct replay_opts *o)
{
    *o = (struct replay_opts){.to = UINT64_MAX, .key_prefix = "spool-log:"};
    if (argc < 2)
        return -1;
    o->dir = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--all") == 0)
            o->all = true;
        else if (strcmp(a, "--dead") == 0)
            o->dead = true;
        else if (strcmp(a, "--to") == 0 && v != NULL && ++i)
            o->address = v;
        else if (strcmp(a, "--queue") == 0 && v != NULL && ++i)
            o->queue = v;
        else if (strcmp(a, "--key-prefix") == 0 && v != NULL && strlen(v) < 64 && ++i)
            o->key_prefix = v;
        else if (strcmp(a, "--from") == 0 && arg_u64(v, &o->from))
            i++;
        else if (strcmp(a, "--to-seq") == 0 && arg_u64(v, &o->to))
            i++;
        else
            return -1;
    }
    return o->address == NULL ? -1 : 0;
}

int cmd_replay(int argc, char **argv)
{
    struct replay_ctx r;
    memset(&r, 0, sizeof(r));
    if (replay_args(argc, argv, &r.opts) != 0) {
        fprintf(stderr, "usage: spool-log replay DIR --to HOST:PORT [--queue Q] [--from SEQ] "
                        "[--to-seq SEQ] [--all] [--dead] [--key-prefix P]\n");
        return EXIT_USAGE;
    }
    struct logdir dir;
    struct logstate state;
    memset(&state, 0, sizeof(state));
    int rc = logdir_load(&dir, r.opts.dir);
    if (rc == 0 && !r.opts.all)
        rc = logstate_build(&state, &dir, UINT64_MAX, true);
    if (rc == 0 && dir.damage_count > 0)
        fprintf(stderr, "replay: warning: %s is damaged (run verify); replaying what verifies\n",
                r.opts.dir);
    if (rc == 0) {
        rc = spool_connect(r.opts.address, 5000, &r.client);
        if (rc != 0)
            fprintf(stderr, "replay: cannot connect to %s: %s\n", r.opts.address,
                    spool_strerror(rc));
    }
    if (rc == 0) {
        r.batch = calloc(REPLAY_BATCH_JOBS_MAX, sizeof(*r.batch));
        SPOOL_ASSERT(r.batch != NULL);
        r.now_ms = state.queues != NULL ? state.now_ms : wall_ms();
        rc = r.opts.all ? replay_all(&r, &dir) : replay_live(&r, &state);
        if (rc == 0)
            rc = replay_flush(&r);
        replay_progress(&r, true);
    }
    spool_close(r.client);
    if (r.batch != NULL)
        replay_batch_clear(&r);
    free(r.batch);
    if (state.queues != NULL)
        logstate_free(&state);
    logdir_free(&dir);
    if (rc != 0)
        return EXIT_CORRUPT;
    return r.counts.failed > 0 || r.counts.no_body > 0 ? EXIT_TORN : EXIT_CLEAN;
}
