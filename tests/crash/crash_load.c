/*
 * crash_load: the load generator of the kill -9 test (test_kill9.c drives it, check_history.py
 * judges what it wrote). It talks to spoold through libspool only, like any user would.
 *
 * Run mode: producer threads put jobs (single puts and put batches, a third of them with
 * idempotency keys and retried after an unknown outcome) whose bodies identify themselves
 * ("spool-crash KEY len=N\n" then filler derived from the key) and consumer threads
 * reserve them and then, chosen at random per delivery: ack (sometimes with a result, sometimes
 * in an ack batch), release or fail (back to ready after a short delay), touch then ack, let the
 * lease run out (then ack late with the stale token), or close the connection while holding
 * everything just reserved. Every thread has its own connection and its own history file. The
 * run lasts until SIGTERM (or --run-ms); spoold may be killed at any moment meanwhile: a call
 * that fails on the connection is recorded as an unknown outcome and the thread reconnects with
 * backoff, reading the server's address from the ready file each time (it changes per start).
 *
 * Drain mode: one consumer reserves and acks every job left until the queue is empty (ready,
 * delayed and reserved all zero), within --drain-ms, and records `drain.done` or
 * `drain.incomplete`.
 *
 * History (one file per thread, NAME.hist, each line flushed at once so nothing written is lost
 * whatever happens to spoold): a first line "# crash-history v1 worker=NAME", then
 * "T_NS EVENT key=value ..." with T_NS from CLOCK_MONOTONIC (one clock for every process of the
 * machine, so the driver's kill records and every worker's lines can be ordered). Events:
 *   put.inv key= hash= len= ttr= [batch= [idem=1] retry=N]   put.ok key= id= [dup=1]
 *   put.fail|put.unknown key= err=
 *   reserve.inv n=   reserve.ok count=   reserve.fail|reserve.unknown err=
 *   got id= lease= attempt= key= hash= len= inv=T_NS   (inv: when that reserve was sent)
 *   ack.inv|ack.ok|ack.fail|ack.unknown id= lease= [err=] [batch=1]
 *   release.inv|.ok|.fail|.unknown id= lease= kind=release|fail [err=]
 *   touch.inv|.ok|.fail|.unknown id= lease= [err=]
 *   expire id= lease=            (this worker lets the lease run out)
 *   disconnect ids=ID,ID         (this worker closes its connection holding those jobs)
 *   connect.ok addr=   connect.fail err=   connlost err=
 *   drain.done ready= delayed= reserved= dead=   drain.incomplete ready= delayed= reserved=
 * A "fail" outcome is a definite refusal by the server (nothing was done); "unknown" is a lost
 * connection or a timeout, after which the request may or may not have taken effect.
 *
 * Usage: crash_load --ready FILE --history DIR --seed N (--run-ms MS | --drain NAME
 *        [--drain-ms MS]) [--producers N] [--consumers N]
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crash_util.h"

#include <spool/client.h>

/* The one queue of the test. */
#define LOAD_QUEUE "crash"
/* Lease length of every job: short, so that leases left to expire come back within the run,
 * yet several times a loaded machine's worst round trip so that most acks are in time. */
#define LOAD_TTR_MS 400u
/* Thread counts: two cores are shared with the server and other tests, so a few of each. */
#define LOAD_THREADS_MAX 16
#define LOAD_PRODUCERS_DEFAULT 2
#define LOAD_CONSUMERS_DEFAULT 4
/* Jobs in one put batch, at most (the protocol allows 4096; a few keep frames small). */
#define LOAD_BATCH_MAX 16
/* Body sizes: mostly small, sometimes a few KiB (lz4 is tried from 1 KiB). */
#define LOAD_BODY_MAX 6000
/* The body's head ("spool-crash KEY len=N\n") fits in this many bytes; bodies are never
 * shorter. */
#define LOAD_BODY_HEAD_MAX 48
/* Producers wait while this many jobs are put but not acked, so that consumers keep up and
 * the drain stays short. */
#define LOAD_BACKLOG_MAX 400
/* Tries of a put with idempotency keys whose outcome stays unknown: a few restarts' worth. */
#define LOAD_PUT_TRIES_MAX 8u
/* Jobs per reserve in run mode and in the drain. */
#define LOAD_RESERVE_MAX 3u
#define LOAD_DRAIN_RESERVE_MAX 64u
/* Reserve waits this long, so a consumer sees the stop flag a few times a second. */
#define LOAD_RESERVE_WAIT_MS 200u
/* Per-call I/O timeout: far above any healthy reply, it only frees a thread stuck on a
 * half-dead socket. */
#define LOAD_IO_TIMEOUT_MS 10000
/* Reconnect backoff: from 5 ms doubling to 200 ms (a restart takes tens of ms). */
#define LOAD_BACKOFF_MIN_MS 5
#define LOAD_BACKOFF_MAX_MS 200
/* Release delays (and put delays) up to this many ms: short, so the drain need not wait. */
#define LOAD_DELAY_MAX_MS 30u
/* An ack's result: "done ID". */
#define LOAD_RESULT_MAX 32

enum load_role { ROLE_PRODUCER, ROLE_CONSUMER, ROLE_DRAIN };

struct load_config {
    const char *ready_path;
    const char *history_dir;
    uint64_t seed;
    int64_t run_ms;
    int64_t drain_ms;
    const char *drain_name;
    int producers;
    int consumers;
};

struct worker {
    enum load_role role;
    int index;
    char name[32];
    FILE *hist;
    spool_client *client;
    uint64_t rng;
    uint64_t seq;   /* producers: next job number */
    int backoff_ms; /* next reconnect wait */
    const struct load_config *config;
    int exit_code;
};

static atomic_bool load_stop;
/* Jobs put (OK) minus jobs acked (OK), over all threads: the producers' throttle. */
static atomic_long load_backlog;

static uint32_t rng_below(uint64_t *state, uint32_t bound)
{
    return (uint32_t)(rng_next(state) % bound);
}

static uint64_t fnv1a64(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* One history line, flushed at once: the time, then the event text. */
__attribute__((format(printf, 2, 3))) static void hist(struct worker *w, const char *fmt, ...)
{
    fprintf(w->hist, "%" PRId64 " ", now_ns());
    va_list ap;
    va_start(ap, fmt);
    vfprintf(w->hist, fmt, ap);
    va_end(ap);
    fputc('\n', w->hist);
    fflush(w->hist);
}

/* A lost connection or a timeout: the request may or may not have been applied, and the
 * connection is unusable. Everything else from the server is a definite answer. */
static bool error_is_unknown(int rc)
{
    return rc == SPOOL_E_CONNECTION_CLOSED || rc == SPOOL_E_PROTOCOL || rc == SPOOL_E_TIMED_OUT ||
           rc == SPOOL_E_INTERNAL || (rc < 0 && rc > -4096);
}

static void worker_drop_connection(struct worker *w, int rc)
{
    hist(w, "connlost err=%s", spool_error_name(rc));
    spool_close(w->client);
    w->client = NULL;
}

static int read_address(const char *path, char *addr, size_t size)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -errno;
    bool ok = fgets(addr, (int)size, f) != NULL;
    fclose(f);
    addr[strcspn(addr, "\n")] = '\0';
    return ok && strchr(addr, ':') != NULL ? 0 : -ENOENT;
}

static bool worker_stopping(const struct worker *w, int64_t deadline_ns)
{
    if (w->role == ROLE_DRAIN)
        return now_ns() > deadline_ns;
    return atomic_load(&load_stop);
}

/* Connect (again) with backoff, reading the address anew each try. false once stopping. */
static bool worker_connect(struct worker *w, int64_t deadline_ns)
{
    while (w->client == NULL) {
        if (worker_stopping(w, deadline_ns))
            return false;
        char addr[128];
        int rc = read_address(w->config->ready_path, addr, sizeof(addr));
        if (rc == 0) {
            struct spool_connect_options opts = {
                .timeout_ms = 2000, .io_timeout_ms = LOAD_IO_TIMEOUT_MS, .client_name = w->name};
            rc = spool_connect_opts(addr, &opts, &w->client);
        }
        if (rc == 0) {
            hist(w, "connect.ok addr=%s", addr);
            w->backoff_ms = LOAD_BACKOFF_MIN_MS;
            return true;
        }
        hist(w, "connect.fail err=%s", spool_error_name(rc));
        sleep_ms(w->backoff_ms);
        w->backoff_ms =
            w->backoff_ms * 2 > LOAD_BACKOFF_MAX_MS ? LOAD_BACKOFF_MAX_MS : w->backoff_ms * 2;
    }
    return true;
}

/* ---- producers ---- */

struct load_job {
    char key[48];
    unsigned char body[LOAD_BODY_MAX];
    size_t body_len;
    uint64_t hash;
};

/* A body that names its key and length, then filler: half the time a repeated pattern (so lz4
 * compresses the batch), else bytes drawn from the key's own generator. */
static void job_make(struct worker *w, struct load_job *job)
{
    snprintf(job->key, sizeof(job->key), "p%d.%" PRIu64, w->index, w->seq++);
    uint32_t pick = rng_below(&w->rng, 10);
    uint32_t extra_max = pick < 7 ? 400 : LOAD_BODY_MAX - LOAD_BODY_HEAD_MAX;
    size_t len = LOAD_BODY_HEAD_MAX + rng_below(&w->rng, extra_max);
    int head =
        snprintf((char *)job->body, LOAD_BODY_HEAD_MAX, "spool-crash %s len=%zu\n", job->key, len);
    if (head < 0 || head >= LOAD_BODY_HEAD_MAX)
        abort(); /* keys are short: "p" + a thread index + "." + a sequence number */
    uint64_t filler = fnv1a64(job->key, strlen(job->key));
    bool pattern = rng_below(&w->rng, 2) == 0;
    for (size_t i = (size_t)head; i < len; i++)
        job->body[i] = pattern ? (unsigned char)('a' + i % 26) : (unsigned char)rng_next(&filler);
    job->body_len = len;
    job->hash = fnv1a64(job->body, len);
}

static struct spool_job_spec job_spec(struct worker *w, const struct load_job *job)
{
    return (struct spool_job_spec){
        .queue = LOAD_QUEUE,
        .body = job->body,
        .body_len = job->body_len,
        .priority = rng_below(&w->rng, 4),
        .delay_ms = rng_below(&w->rng, 10) == 0 ? rng_below(&w->rng, LOAD_DELAY_MAX_MS) : 0,
        .ttr_ms = LOAD_TTR_MS,
        .max_attempts = SPOOL_ATTEMPTS_UNLIMITED,
    };
}

static void put_outcome(struct worker *w, const struct load_job *job, int rc,
                        const struct spool_put_result *result)
{
    if (rc == 0) {
        hist(w, "put.ok key=%s id=%" PRIu64 "%s", job->key, result->id,
             result->duplicate ? " dup=1" : "");
        if (!result->duplicate)
            atomic_fetch_add(&load_backlog, 1);
    } else if (error_is_unknown(rc)) {
        hist(w, "put.unknown key=%s err=%s", job->key, spool_error_name(rc));
    } else {
        hist(w, "put.fail key=%s err=%s", job->key, spool_error_name(rc));
    }
}

/* Send one put (count 1) or put batch and record it; attempt > 0 is a retry of the same
 * request with the same idempotency keys. */
static int producer_send(struct worker *w, const struct load_job *jobs,
                         const struct spool_job_spec *specs, size_t count, uint64_t batch_no,
                         unsigned attempt)
{
    for (size_t i = 0; i < count; i++) {
        char extra[64] = "";
        if (count > 1 || specs[i].key != NULL)
            snprintf(extra, sizeof(extra), " batch=b%" PRIu64 "%s retry=%u", batch_no,
                     specs[i].key != NULL ? " idem=1" : "", attempt);
        hist(w, "put.inv key=%s hash=%016" PRIx64 " len=%zu ttr=%u%s", jobs[i].key, jobs[i].hash,
             jobs[i].body_len, LOAD_TTR_MS, extra);
    }
    struct spool_put_result results[LOAD_BATCH_MAX] = {{0}};
    int rc = count > 1 ? spool_put_batch(w->client, specs, count, results)
                       : spool_put(w->client, &specs[0], &results[0].id);
    for (size_t i = 0; i < count; i++)
        put_outcome(w, &jobs[i], rc, &results[i]);
    if (error_is_unknown(rc))
        worker_drop_connection(w, rc);
    else if (rc != 0)
        sleep_ms(10); /* QUEUE_FULL, DISK_FULL, BUSY: back off a little */
    return rc;
}

/* One put or one put batch of 2..LOAD_BATCH_MAX jobs. A third of them carry idempotency keys
 * (the job's own key) and are retried, as a careful client would, after an unknown outcome:
 * the server must answer a retry of a put that landed with the original id, never make a
 * second job. */
static void producer_step(struct worker *w, struct load_job *jobs, uint64_t batch_no)
{
    size_t count = rng_below(&w->rng, 3) == 0 ? 2 + rng_below(&w->rng, LOAD_BATCH_MAX - 1) : 1;
    bool keyed = rng_below(&w->rng, 3) == 0;
    struct spool_job_spec specs[LOAD_BATCH_MAX];
    for (size_t i = 0; i < count; i++) {
        job_make(w, &jobs[i]);
        specs[i] = job_spec(w, &jobs[i]);
        specs[i].key = keyed ? jobs[i].key : NULL;
    }
    for (unsigned attempt = 0; attempt < LOAD_PUT_TRIES_MAX; attempt++) {
        int rc = producer_send(w, jobs, specs, count, batch_no, attempt);
        if (!keyed || !error_is_unknown(rc) || !worker_connect(w, 0))
            return;
    }
}

static void *producer_main(void *arg)
{
    struct worker *w = arg;
    struct load_job *jobs = malloc(sizeof(*jobs) * LOAD_BATCH_MAX);
    if (jobs == NULL) {
        w->exit_code = 1;
        return NULL;
    }
    uint64_t batch_no = 0;
    while (!atomic_load(&load_stop)) {
        if (atomic_load(&load_backlog) > LOAD_BACKLOG_MAX) {
            sleep_ms(5);
            continue;
        }
        if (!worker_connect(w, 0))
            break;
        producer_step(w, jobs, batch_no++);
    }
    free(jobs);
    return NULL;
}

/* ---- consumers ---- */

/* What a consumer does with one delivery. */
enum load_action { ACT_ACK, ACT_ACK_RESULT, ACT_RELEASE, ACT_FAIL, ACT_TOUCH_ACK, ACT_EXPIRE };

static enum load_action action_pick(struct worker *w)
{
    uint32_t r = rng_below(&w->rng, 100);
    if (r < 35)
        return ACT_ACK;
    if (r < 60)
        return ACT_ACK_RESULT;
    if (r < 72)
        return ACT_RELEASE;
    if (r < 80)
        return ACT_FAIL;
    if (r < 95)
        return ACT_TOUCH_ACK;
    return ACT_EXPIRE;
}

/* The key named at the head of a body, or "?" if the head is not one of ours. */
static void body_key(const struct spool_delivery *d, char *key, size_t size)
{
    static const char prefix[] = "spool-crash ";
    size_t n = sizeof(prefix) - 1;
    snprintf(key, size, "?");
    if (d->body_len <= n || memcmp(d->body, prefix, n) != 0)
        return;
    const char *start = (const char *)d->body + n;
    size_t len = 0;
    while (n + len < d->body_len && len + 1 < size && start[len] != ' ' && start[len] != '\n' &&
           start[len] > ' ' && start[len] < 127)
        len++;
    if (len > 0) {
        memcpy(key, start, len);
        key[len] = '\0';
    }
}

static void record_got(struct worker *w, const struct spool_delivery *d, int64_t inv_ns)
{
    char key[48];
    body_key(d, key, sizeof(key));
    hist(w,
         "got id=%" PRIu64 " lease=%" PRIu64 " attempt=%" PRIu32 " key=%s hash=%016" PRIx64
         " len=%zu inv=%" PRId64,
         d->id, d->lease, d->attempt, key, fnv1a64(d->body, d->body_len), d->body_len, inv_ns);
}

/* Record a definite or unknown outcome of a call on a lease; false if the connection is gone
 * (the caller stops using it). */
static bool lease_outcome(struct worker *w, const char *op, const struct spool_delivery *d, int rc,
                          const char *extra)
{
    if (rc == 0) {
        hist(w, "%s.ok id=%" PRIu64 " lease=%" PRIu64 "%s", op, d->id, d->lease, extra);
        return true;
    }
    const char *kind = error_is_unknown(rc) ? "unknown" : "fail";
    hist(w, "%s.%s id=%" PRIu64 " lease=%" PRIu64 " err=%s%s", op, kind, d->id, d->lease,
         spool_error_name(rc), extra);
    if (error_is_unknown(rc)) {
        worker_drop_connection(w, rc);
        return false;
    }
    return true;
}

static bool consumer_ack(struct worker *w, const struct spool_delivery *d, bool with_result)
{
    char result[LOAD_RESULT_MAX];
    int n = with_result ? snprintf(result, sizeof(result), "done %" PRIu64, d->id) : 0;
    hist(w, "ack.inv id=%" PRIu64 " lease=%" PRIu64, d->id, d->lease);
    int rc = spool_ack(w->client, d->id, d->lease, with_result ? result : NULL, (size_t)n);
    if (rc == 0)
        atomic_fetch_sub(&load_backlog, 1);
    return lease_outcome(w, "ack", d, rc, "");
}

static bool consumer_release(struct worker *w, const struct spool_delivery *d, bool fail)
{
    const char *kind = fail ? " kind=fail" : " kind=release";
    uint64_t delay_ms = rng_below(&w->rng, LOAD_DELAY_MAX_MS);
    hist(w, "release.inv id=%" PRIu64 " lease=%" PRIu64 "%s", d->id, d->lease, kind);
    int rc = fail ? spool_fail(w->client, d->id, d->lease, delay_ms, "crash test failure")
                  : spool_release(w->client, d->id, d->lease, delay_ms, -1);
    return lease_outcome(w, "release", d, rc, kind);
}

static bool consumer_touch_ack(struct worker *w, const struct spool_delivery *d)
{
    hist(w, "touch.inv id=%" PRIu64 " lease=%" PRIu64, d->id, d->lease);
    int rc = spool_touch(w->client, d->id, d->lease, 0, NULL);
    if (!lease_outcome(w, "touch", d, rc, ""))
        return false;
    return consumer_ack(w, d, false);
}

/* Ack several deliveries in one ACK_BATCH: each item succeeds or fails on its own. */
static bool consumer_ack_batch(struct worker *w, const struct spool_delivery *const *ds,
                               size_t count)
{
    struct spool_ack_item items[LOAD_DRAIN_RESERVE_MAX] = {{0}};
    int codes[LOAD_DRAIN_RESERVE_MAX];
    if (count > LOAD_DRAIN_RESERVE_MAX)
        abort();
    for (size_t i = 0; i < count; i++) {
        /* A code the call leaves untouched counts as unknown, never as success. */
        codes[i] = SPOOL_E_PROTOCOL;
        items[i] = (struct spool_ack_item){.id = ds[i]->id, .lease = ds[i]->lease};
        hist(w, "ack.inv id=%" PRIu64 " lease=%" PRIu64 " batch=1", ds[i]->id, ds[i]->lease);
    }
    int rc = spool_ack_batch(w->client, items, count, codes);
    bool connected = true;
    for (size_t i = 0; i < count; i++) {
        /* A connection error leaves codes untouched: every item is unknown. */
        int item_rc = error_is_unknown(rc) ? rc : codes[i];
        if (item_rc == 0)
            atomic_fetch_sub(&load_backlog, 1);
        if (!connected) {
            hist(w, "ack.unknown id=%" PRIu64 " lease=%" PRIu64 " err=%s batch=1", ds[i]->id,
                 ds[i]->lease, spool_error_name(item_rc));
            continue;
        }
        connected = lease_outcome(w, "ack", ds[i], item_rc, " batch=1");
    }
    return connected;
}

/* Close the connection while holding every job of this reserve: the server must release them
 * at once. */
static void consumer_disconnect(struct worker *w, const struct spool_delivery *ds, size_t count)
{
    char ids[LOAD_RESERVE_MAX * 24] = "";
    size_t used = 0;
    for (size_t i = 0; i < count && used < sizeof(ids); i++)
        used +=
            (size_t)snprintf(ids + used, sizeof(ids) - used, "%s%" PRIu64, i ? "," : "", ds[i].id);
    hist(w, "disconnect ids=%s", ids);
    spool_close(w->client);
    w->client = NULL;
}

/* Let the leases of expired[] run out on an open connection, then ack them late: the stale
 * token must be refused unless nobody else took the job meanwhile. */
static bool consumer_expire(struct worker *w, const struct spool_delivery *const *expired,
                            size_t count)
{
    if (count == 0)
        return true;
    sleep_ms(LOAD_TTR_MS + 100);
    for (size_t i = 0; i < count; i++)
        if (!consumer_ack(w, expired[i], false))
            return false;
    return true;
}

/* Handle one reserve's deliveries, each with its own action. false if the connection died. */
static bool consumer_handle(struct worker *w, const struct spool_delivery *ds, size_t count)
{
    const struct spool_delivery *batch[LOAD_RESERVE_MAX];
    const struct spool_delivery *expired[LOAD_RESERVE_MAX];
    size_t batch_count = 0;
    size_t expired_count = 0;
    bool use_batch = rng_below(&w->rng, 2) == 0;
    for (size_t i = 0; i < count; i++) {
        const struct spool_delivery *d = &ds[i];
        bool ok = true;
        switch (action_pick(w)) {
        case ACT_ACK:
            if (use_batch)
                batch[batch_count++] = d;
            else
                ok = consumer_ack(w, d, false);
            break;
        case ACT_ACK_RESULT:
            ok = consumer_ack(w, d, true);
            break;
        case ACT_RELEASE:
            ok = consumer_release(w, d, false);
            break;
        case ACT_FAIL:
            ok = consumer_release(w, d, true);
            break;
        case ACT_TOUCH_ACK:
            ok = consumer_touch_ack(w, d);
            break;
        case ACT_EXPIRE:
            hist(w, "expire id=%" PRIu64 " lease=%" PRIu64, d->id, d->lease);
            expired[expired_count++] = d;
            break;
        }
        if (!ok)
            return false;
    }
    if (batch_count > 0 && !consumer_ack_batch(w, batch, batch_count))
        return false;
    return consumer_expire(w, expired, expired_count);
}

/* One reserve: NULL deliveries and 0 on a timeout; -1 if the connection died. */
static int consumer_reserve(struct worker *w, uint32_t count_max, uint32_t wait_ms,
                            struct spool_delivery **out, size_t *count_out)
{
    static const char *const queues[] = {LOAD_QUEUE};
    int64_t inv_ns = now_ns();
    hist(w, "reserve.inv n=%" PRIu32, count_max);
    int rc = spool_reserve(w->client, queues, 1, count_max, wait_ms, 0, out, count_out);
    if (rc != 0) {
        hist(w, "reserve.%s err=%s", error_is_unknown(rc) ? "unknown" : "fail",
             spool_error_name(rc));
        if (error_is_unknown(rc)) {
            worker_drop_connection(w, rc);
            return -1;
        }
        *out = NULL;
        *count_out = 0;
        sleep_ms(10);
        return 0;
    }
    hist(w, "reserve.ok count=%zu", *count_out);
    for (size_t i = 0; i < *count_out; i++)
        record_got(w, &(*out)[i], inv_ns);
    return 0;
}

static void *consumer_main(void *arg)
{
    struct worker *w = arg;
    while (!atomic_load(&load_stop)) {
        if (!worker_connect(w, 0))
            break;
        struct spool_delivery *ds = NULL;
        size_t count = 0;
        uint32_t want = 1 + rng_below(&w->rng, LOAD_RESERVE_MAX);
        if (consumer_reserve(w, want, LOAD_RESERVE_WAIT_MS, &ds, &count) != 0)
            continue;
        if (count > 0 && rng_below(&w->rng, 100) < 5)
            consumer_disconnect(w, ds, count);
        else if (count > 0)
            consumer_handle(w, ds, count);
        spool_deliveries_free(ds);
    }
    spool_close(w->client);
    w->client = NULL;
    return NULL;
}

/* ---- drain ---- */

/* The queue's counts, or -1 (recorded) if stats failed. */
static int drain_stats(struct worker *w, struct spool_queue_stats *qs)
{
    struct spool_stats *stats = NULL;
    int rc = spool_stats(w->client, LOAD_QUEUE, &stats);
    if (rc == SPOOL_E_NOT_FOUND) { /* nothing was ever put */
        *qs = (struct spool_queue_stats){0};
        return 0;
    }
    if (rc != 0 || stats->queue_count != 1) {
        hist(w, "stats.fail err=%s", spool_error_name(rc));
        if (error_is_unknown(rc))
            worker_drop_connection(w, rc);
        spool_stats_free(stats);
        return -1;
    }
    *qs = stats->queues[0];
    spool_stats_free(stats);
    return 0;
}

/* Reserve and ack until the queue holds nothing, within the drain time. */
static void drain_main(struct worker *w)
{
    int64_t deadline_ns = now_ns() + w->config->drain_ms * 1000000ll;
    struct spool_queue_stats qs = {0};
    while (now_ns() < deadline_ns && worker_connect(w, deadline_ns)) {
        struct spool_delivery *ds = NULL;
        size_t count = 0;
        if (consumer_reserve(w, LOAD_DRAIN_RESERVE_MAX, 500, &ds, &count) != 0)
            continue;
        if (count > 0) {
            const struct spool_delivery *ptrs[LOAD_DRAIN_RESERVE_MAX];
            for (size_t i = 0; i < count; i++)
                ptrs[i] = &ds[i];
            consumer_ack_batch(w, ptrs, count);
            spool_deliveries_free(ds);
            continue;
        }
        if (drain_stats(w, &qs) != 0)
            continue;
        if (qs.ready + qs.delayed + qs.reserved == 0) {
            hist(w, "drain.done ready=0 delayed=0 reserved=0 dead=%" PRIu64, qs.dead);
            return;
        }
    }
    hist(w, "drain.incomplete ready=%" PRIu64 " delayed=%" PRIu64 " reserved=%" PRIu64, qs.ready,
         qs.delayed, qs.reserved);
    w->exit_code = 1;
}

/* ---- main ---- */

static int worker_open(struct worker *w, const struct load_config *config, enum load_role role,
                       int index, const char *name)
{
    *w = (struct worker){
        .role = role, .index = index, .config = config, .backoff_ms = LOAD_BACKOFF_MIN_MS};
    snprintf(w->name, sizeof(w->name), "%s", name);
    w->rng = config->seed * 1000003u + (uint64_t)index * 7919u + (uint64_t)role;
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s.hist", config->history_dir, name);
    w->hist = fopen(path, "a");
    if (w->hist == NULL) {
        fprintf(stderr, "crash_load: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(w->hist, "# crash-history v1 worker=%s\n", name);
    fflush(w->hist);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: crash_load --ready FILE --history DIR --seed N (--run-ms MS | "
                    "--drain NAME [--drain-ms MS]) [--producers N] [--consumers N]\n");
    exit(2);
}

static void parse_args(int argc, char **argv, struct load_config *c)
{
    *c = (struct load_config){.run_ms = -1,
                              .drain_ms = 30000,
                              .producers = LOAD_PRODUCERS_DEFAULT,
                              .consumers = LOAD_CONSUMERS_DEFAULT};
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *name = argv[i];
        const char *value = argv[i + 1];
        if (strcmp(name, "--ready") == 0)
            c->ready_path = value;
        else if (strcmp(name, "--history") == 0)
            c->history_dir = value;
        else if (strcmp(name, "--seed") == 0)
            c->seed = strtoull(value, NULL, 10);
        else if (strcmp(name, "--run-ms") == 0)
            c->run_ms = strtoll(value, NULL, 10);
        else if (strcmp(name, "--drain") == 0)
            c->drain_name = value;
        else if (strcmp(name, "--drain-ms") == 0)
            c->drain_ms = strtoll(value, NULL, 10);
        else if (strcmp(name, "--producers") == 0)
            c->producers = atoi(value);
        else if (strcmp(name, "--consumers") == 0)
            c->consumers = atoi(value);
        else
            usage();
    }
    if (argc % 2 == 0 || c->ready_path == NULL || c->history_dir == NULL || c->producers < 0 ||
        c->consumers < 0 || c->producers + c->consumers > LOAD_THREADS_MAX ||
        (c->drain_name == NULL && c->run_ms <= 0 && c->run_ms != -1))
        usage();
}

/* Wait for SIGTERM (or the run time), then tell every thread to stop. */
static void run_wait(const struct load_config *config, const sigset_t *set)
{
    if (config->run_ms < 0) {
        int sig;
        sigwait(set, &sig);
    } else {
        struct timespec ts = {.tv_sec = config->run_ms / 1000,
                              .tv_nsec = (config->run_ms % 1000) * 1000000};
        while (sigtimedwait(set, NULL, &ts) < 0 && errno == EINTR) {
        }
    }
    atomic_store(&load_stop, true);
}

static int run_main(const struct load_config *config)
{
    static struct worker workers[LOAD_THREADS_MAX];
    pthread_t threads[LOAD_THREADS_MAX];
    int count = config->producers + config->consumers;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    for (int i = 0; i < count; i++) {
        bool producer = i < config->producers;
        int index = producer ? i : i - config->producers;
        char name[32];
        snprintf(name, sizeof(name), "%s%d", producer ? "producer" : "consumer", index);
        if (worker_open(&workers[i], config, producer ? ROLE_PRODUCER : ROLE_CONSUMER, index,
                        name) != 0 ||
            pthread_create(&threads[i], NULL, producer ? producer_main : consumer_main,
                           &workers[i]) != 0) {
            fprintf(stderr, "crash_load: cannot start %s\n", name);
            exit(1);
        }
    }
    run_wait(config, &set);
    int code = 0;
    for (int i = 0; i < count; i++) {
        pthread_join(threads[i], NULL);
        code |= workers[i].exit_code;
        fclose(workers[i].hist);
    }
    return code;
}

int main(int argc, char **argv)
{
    struct load_config config;
    parse_args(argc, argv, &config);
    signal(SIGPIPE, SIG_IGN);
    if (config.drain_name == NULL)
        return run_main(&config);
    struct worker w;
    if (worker_open(&w, &config, ROLE_DRAIN, 0, config.drain_name) != 0)
        return 1;
    drain_main(&w);
    spool_close(w.client);
    fclose(w.hist);
    return w.exit_code;
}
