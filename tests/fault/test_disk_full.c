/*
 * A real full disk: a small tmpfs, filled by the storage engine alone and by the real spoold.
 *
 * Needs root (mount). The test moves itself into a private mount namespace first, so the
 * tmpfs mounts vanish with the process (and the spoold it started, which shares the
 * namespace) even if it is killed; it also unmounts them itself at the end. Not root, or no
 * mount namespace, or no tmpfs: exit 77 (skipped).
 *
 * engine_enospc: segments of 1 MiB on an 8 MiB tmpfs, with a 1 MiB ballast file. Append and
 *   commit until log_append refuses with LOG_ENOSPC: never a poisoning error, never an assert.
 *   Delete the ballast: the engine's roll retry succeeds and appends work again. Close, fill
 *   again, and reopen: every record the engine reported durable is there, byte for byte.
 *
 * engine_headroom: the same with config.spare_segment, driven the way a broker keeps headroom:
 *   "puts" (3000-byte records) only while log_space_low() is false, then "acks" (64-byte
 *   records) for half a segment more: every ack must commit (no LOG_ENOSPC), and reopening
 *   finds everything reported durable.
 *
 * server_disk_full: spoold with 4 MiB segments on a 48 MiB tmpfs and the default checkpoint
 *   settings. Its log keeps a spare segment and it keeps a checkpoint reserve. Put 4000-byte
 *   incompressible jobs until a put fails: it must fail with DISK_FULL (retryable), promptly,
 *   while the server stays up; more puts and a batch are refused on the same connection and
 *   the server logs one warning for it; reserve, touch, release, bury, delete and ack of
 *   existing jobs must still work; after most jobs are acked puts must work again (the server
 *   checkpoints on its own to drop their segments); after a restart every acknowledged put
 *   that was not acked is still there and no acked job is ready again.
 *
 * server_disk_full_tight: the same on 45.5 MiB, where only 0.5 MiB are free once the spare
 *   cannot be made: the checkpoint must be given the server's checkpoint reserve.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spool/client.h>
#include <spool/error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "log.h"
#include "spoold_harness.h"

#define TEST_EXIT_SKIP 77
/* Engine: 8 MiB hold the first segment, six more and most of a seventh once the 1 MiB
 * ballast is counted, so the disk fills after a few hundred 3000-byte records. */
#define ENGINE_TMPFS_OPTIONS "size=8m"
#define ENGINE_SEGMENT_BYTES (1024u * 1024)
#define ENGINE_BATCH_BYTES (64u * 1024)
#define ENGINE_RECORD_BYTES 3000u
#define ENGINE_RECORDS_MAX 20000u /* 8 MiB / 3000 B is ~2800: a bound, never reached */
#define ENGINE_ACK_BYTES 64u
/* Half a segment of acks after space went low: well inside the one segment of headroom. */
#define ENGINE_ACKS (ENGINE_SEGMENT_BYTES / 2 / (ENGINE_ACK_BYTES + 8))
/* Server: 48 MiB and 4 MiB segments, as a small production disk would be, in miniature.
 * With the 1 MiB checkpoint reserve, 3 MiB are free when the spare cannot be made: the
 * checkpoint fits beside it (without the reserve nothing would be free: no checkpoint, no
 * space back). On 45.5 MiB only 0.5 MiB are free then: the reserve is given to the checkpoint. */
#define SERVER_TMPFS_OPTIONS "size=48m"
#define SERVER_TMPFS_TIGHT_OPTIONS "size=46592k"
#define SERVER_JOB_BYTES 4000u
#define SERVER_PUTS_MAX 20000u /* 48 MiB / 4000 B is ~12600: a bound, never reached */
#define SERVER_IO_TIMEOUT_MS 5000
#define SERVER_PHASE_MS 60000 /* every loop below ends within this */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Deterministic incompressible bytes for record/job i. */
static void fill_body(uint8_t *p, size_t n, uint64_t i)
{
    uint64_t x = 0x9E3779B97F4A7C15ull * (i + 1);
    for (size_t k = 0; k < n; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[k] = (uint8_t)(x >> 24);
    }
}

/* Own mount namespace with private propagation: our mounts never leak to the host. */
static bool namespace_enter(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "skip: not root (mount needs it)\n");
        return false;
    }
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        fprintf(stderr, "skip: no private mount namespace: %s\n", strerror(errno));
        return false;
    }
    return true;
}

static bool tmpfs_mount(const char *dir, const char *options)
{
    if (mount("tmpfs", dir, "tmpfs", 0, options) != 0) {
        fprintf(stderr, "skip: mount tmpfs on %s: %s\n", dir, strerror(errno));
        return false;
    }
    return true;
}

static void tmpfs_unmount(const char *dir)
{
    if (umount2(dir, MNT_DETACH) != 0)
        fprintf(stderr, "umount %s: %s\n", dir, strerror(errno));
}

/* What fills a directory: each file's allocated bytes, and the file system's free bytes. */
static void dir_report(const char *dir)
{
    struct statvfs vfs;
    if (statvfs(dir, &vfs) == 0)
        fprintf(stderr, "  %s: %llu of %llu KiB free\n", dir,
                (unsigned long long)vfs.f_bavail * vfs.f_frsize / 1024,
                (unsigned long long)vfs.f_blocks * vfs.f_frsize / 1024);
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[1024];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.' && stat(path, &st) == 0)
            fprintf(stderr, "  %-28s size %10lld allocated %10lld\n", e->d_name,
                    (long long)st.st_size, (long long)st.st_blocks * 512);
    }
    closedir(d);
}

/* ---- the engine alone ---- */

struct engine_run {
    uint64_t durable_end; /* records below are durable, as on_durable reported */
    int poison;
};

static void engine_on_durable(void *ctx, uint64_t end, enum log_durability level, int error)
{
    struct engine_run *run = ctx;
    if (error != 0) {
        run->poison = error;
        return;
    }
    CHECK_EQ(level, LOG_DURABLE_SYNCED);
    if (end > run->durable_end)
        run->durable_end = end;
}

struct engine_verify {
    uint64_t next; /* the seq expected next */
    uint64_t bad;
};

static int engine_verify_record(void *ctx, const struct log_record *rec)
{
    struct engine_verify *v = ctx;
    static uint8_t want[ENGINE_RECORD_BYTES];
    bool len_ok = rec->len == ENGINE_RECORD_BYTES || rec->len == ENGINE_ACK_BYTES;
    if (len_ok)
        fill_body(want, rec->len, rec->pos.seq);
    if (rec->pos.seq != v->next || !len_ok || memcmp(rec->data, want, rec->len) != 0)
        v->bad++;
    v->next = rec->pos.seq + 1;
    return 0;
}

static int engine_open(const char *dir, bool spare, struct engine_run *run,
                       struct engine_verify *verify, struct io_backend **io, struct log **log)
{
    int rc = posix_backend_create(dir, true, io);
    if (rc != 0)
        return rc;
    struct log_config config;
    log_config_defaults(&config);
    config.dir = dir;
    config.segment_size_bytes = ENGINE_SEGMENT_BYTES;
    config.batch_size_bytes_max = ENGINE_BATCH_BYTES;
    config.compress = false;
    config.spare_segment = spare;
    config.on_durable = engine_on_durable;
    config.ctx = run;
    *verify = (struct engine_verify){.next = 1};
    rc = log_open(&config, *io, engine_verify_record, verify, NULL, NULL, NULL, log);
    if (rc != 0) {
        io_backend_destroy(*io);
        *io = NULL;
    }
    return rc;
}

/* Drive the engine until nothing is in flight or it stops making progress (a roll waiting
 * for space): at most deadline_ms. */
static void engine_drive(struct log *log, struct io_backend *io, int64_t deadline_ms)
{
    while (now_ms() < deadline_ms) {
        log_tick(log);
        if (log_idle(log) || log_error(log) != 0)
            return;
        if (io->ops->in_flight(io) == 0) {
            usleep(10000); /* a roll waits for its retry time */
            if (log_idle(log))
                return;
            continue;
        }
        if (io_backend_poll(io, true) < 0)
            return;
    }
}

/* One record of the workload's shape (so verification stays uniform); the append's result. */
static int log_enospc_probe(struct log *log)
{
    static uint8_t body[ENGINE_RECORD_BYTES];
    fill_body(body, sizeof(body), log_next_seq(log));
    return log_append(log, 1, body, sizeof(body), NULL);
}

/* Append until the engine refuses; returns the refusal. */
static int engine_fill(struct log *log, struct io_backend *io, uint64_t *appended)
{
    static uint8_t body[ENGINE_RECORD_BYTES];
    int64_t deadline = now_ms() + SERVER_PHASE_MS;
    for (uint32_t i = 0; i < ENGINE_RECORDS_MAX && now_ms() < deadline; i++) {
        uint64_t seq = log_next_seq(log);
        fill_body(body, sizeof(body), seq);
        struct log_pos pos;
        int rc = log_append(log, 1, body, sizeof(body), &pos);
        if (rc == -ENOBUFS) {
            engine_drive(log, io, now_ms() + 2000);
            continue;
        }
        if (rc != 0)
            return rc;
        (*appended)++;
        if (i % 8 == 7) /* a few records per commit, as a busy server would make */
            engine_drive(log, io, now_ms() + 2000);
    }
    return 0;
}

static void engine_enospc(const char *base)
{
    char dir[600], ballast[700];
    snprintf(dir, sizeof(dir), "%s/engine", base);
    snprintf(ballast, sizeof(ballast), "%s/ballast", dir);
    REQUIRE(mkdir(dir, 0750) == 0);
    if (!tmpfs_mount(dir, ENGINE_TMPFS_OPTIONS))
        exit(TEST_EXIT_SKIP);
    int fd = open(ballast, O_WRONLY | O_CREAT, 0640);
    REQUIRE(fd >= 0);
    REQUIRE(posix_fallocate(fd, 0, ENGINE_SEGMENT_BYTES) == 0);
    close(fd);

    struct engine_run run = {0};
    struct engine_verify verify;
    struct io_backend *io;
    struct log *log;
    REQUIRE(engine_open(dir, false, &run, &verify, &io, &log) == 0);
    uint64_t appended = 0;
    int rc = engine_fill(log, io, &appended);
    fprintf(stderr, "engine: %llu records appended, %llu durable, then: %s\n",
            (unsigned long long)appended, (unsigned long long)run.durable_end,
            log_strerror(rc));
    CHECK_EQ(rc, LOG_ENOSPC);
    CHECK_EQ(run.poison, 0);
    CHECK_EQ(log_error(log), 0);
    CHECK(run.durable_end > 1);

    /* Space comes back: the roll is retried and appends go on. */
    REQUIRE(unlink(ballast) == 0);
    int64_t deadline = now_ms() + 5000;
    while (now_ms() < deadline && log_enospc_probe(log) == LOG_ENOSPC)
        engine_drive(log, io, now_ms() + 200);
    uint64_t before = run.durable_end;
    rc = engine_fill(log, io, &appended);
    CHECK_EQ(rc, LOG_ENOSPC);
    CHECK_EQ(run.poison, 0);
    CHECK(run.durable_end > before + 100); /* a whole segment more became durable */
    uint64_t durable = run.durable_end;
    rc = log_close(log); /* a batch still waits for space: its records are not durable */
    CHECK(rc == 0 || rc == LOG_ENOSPC);
    io_backend_destroy(io);

    /* Reopen: everything reported durable is there, intact, in order. */
    REQUIRE(engine_open(dir, false, &run, &verify, &io, &log) == 0);
    fprintf(stderr, "engine: reopened with %llu records (%llu reported durable), %llu bad\n",
            (unsigned long long)(verify.next - 1), (unsigned long long)(durable - 1),
            (unsigned long long)verify.bad);
    CHECK(verify.next >= durable);
    CHECK_EQ(verify.bad, 0);
    CHECK_EQ(log_close(log), 0);
    io_backend_destroy(io);
    tmpfs_unmount(dir);
}

/* Append one record of len bytes (content from its seq), driving commits when the batch is
 * full; the append's result. */
static int engine_append(struct log *log, struct io_backend *io, uint32_t len)
{
    static uint8_t body[ENGINE_RECORD_BYTES];
    for (int tries = 0; tries < 100; tries++) {
        fill_body(body, len, log_next_seq(log));
        int rc = log_append(log, 1, body, len, NULL);
        if (rc != -ENOBUFS)
            return rc;
        engine_drive(log, io, now_ms() + 2000);
    }
    return -ENOBUFS;
}

static void engine_headroom(const char *base)
{
    char dir[600];
    snprintf(dir, sizeof(dir), "%s/headroom", base);
    REQUIRE(mkdir(dir, 0750) == 0);
    if (!tmpfs_mount(dir, ENGINE_TMPFS_OPTIONS))
        exit(TEST_EXIT_SKIP);
    struct engine_run run = {0};
    struct engine_verify verify;
    struct io_backend *io;
    struct log *log;
    REQUIRE(engine_open(dir, true, &run, &verify, &io, &log) == 0);
    engine_drive(log, io, now_ms() + 2000); /* the first spare */
    uint32_t puts = 0;
    int rc = 0;
    int64_t deadline = now_ms() + SERVER_PHASE_MS;
    while (rc == 0 && !log_space_low(log) && puts < ENGINE_RECORDS_MAX && now_ms() < deadline) {
        rc = engine_append(log, io, ENGINE_RECORD_BYTES);
        puts += rc == 0;
        if (puts % 8 == 0)
            engine_drive(log, io, now_ms() + 2000);
    }
    engine_drive(log, io, now_ms() + 2000);
    fprintf(stderr, "headroom: %u puts admitted before space went low (%s)\n", puts,
            log_strerror(rc));
    CHECK_EQ(rc, 0);
    CHECK(log_space_low(log));
    uint32_t acks = 0;
    for (; acks < ENGINE_ACKS && rc == 0; acks++) {
        rc = engine_append(log, io, ENGINE_ACK_BYTES);
        if (acks % 64 == 63)
            engine_drive(log, io, now_ms() + 2000);
    }
    engine_drive(log, io, now_ms() + 2000);
    fprintf(stderr, "headroom: %u acks while space was low: %s\n", acks, log_strerror(rc));
    CHECK_EQ(rc, 0);
    CHECK_EQ(run.poison, 0);
    CHECK_EQ(run.durable_end, log_next_seq(log)); /* every ack committed */
    uint64_t durable = run.durable_end;
    CHECK_EQ(log_close(log), 0);
    io_backend_destroy(io);
    REQUIRE(engine_open(dir, true, &run, &verify, &io, &log) == 0);
    CHECK(verify.next >= durable);
    CHECK_EQ(verify.bad, 0);
    CHECK_EQ(log_close(log), 0);
    io_backend_destroy(io);
    tmpfs_unmount(dir);
}

/* ---- the server ---- */

struct server_jobs {
    uint64_t *ids; /* acknowledged puts, in order */
    uint32_t count;
    uint32_t acked; /* ids[0, acked) were acked */
};

static spool_client *server_connect(const struct spoold *s)
{
    struct spool_connect_options opts = {.timeout_ms = 5000,
                                         .io_timeout_ms = SERVER_IO_TIMEOUT_MS};
    spool_client *c = NULL;
    int rc = spool_connect_opts(s->addr, &opts, &c);
    if (rc != 0) {
        fprintf(stderr, "connect %s: %s\n", s->addr, spool_strerror(rc));
        return NULL;
    }
    return c;
}

static int server_put(spool_client *c, uint64_t i, uint64_t *id)
{
    static uint8_t body[SERVER_JOB_BYTES];
    fill_body(body, sizeof(body), i);
    struct spool_job_spec job = {.queue = "fill", .body = body, .body_len = sizeof(body)};
    return spool_put(c, &job, id);
}

/* How many lines of the server's log contain text. */
static int log_count(const char *path, const char *text)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        n += strstr(line, text) != NULL;
    fclose(f);
    return n;
}

/* Copy the server's log lines about disk space and checkpoints to stderr: what the episode
 * looked like, pass or fail. */
static void log_echo(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    char line[1024];
    while (fgets(line, sizeof(line), f) != NULL)
        if (strstr(line, "disk") != NULL || strstr(line, "checkpoint") != NULL ||
            strstr(line, "recovered") != NULL)
            fprintf(stderr, "  spoold: %s", line);
    fclose(f);
}

/* Bytes allocated to data/name once at least want (waiting up to 2 s: the server makes the
 * file from its loop), or what it has then (-1: no such file). */
static long long file_allocated(const struct spoold *s, const char *name, long long want)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", s->data, name);
    int64_t deadline = now_ms() + 2000;
    struct stat st;
    for (;;) {
        bool found = stat(path, &st) == 0;
        if ((found && (long long)st.st_blocks * 512 >= want) || now_ms() > deadline)
            return found ? (long long)st.st_blocks * 512 : -1;
        usleep(10000);
    }
}

/* The jobs of queue "side": a worker's other operations on a full disk. */
#define SIDE_JOBS 4

static void side_put(spool_client *c, uint64_t *ids)
{
    for (uint32_t i = 0; i < SIDE_JOBS; i++) {
        struct spool_job_spec job = {.queue = "side", .body = "x", .body_len = 1};
        REQUIRE(spool_put(c, &job, &ids[i]) == 0);
    }
}

/* While puts are refused: reserve three, touch and release the first, bury the second and
 * delete it, ack the third, delete the fourth (ready), then reserve the first again and ack
 * it (so that no side job pins the oldest segment). Every call must succeed. */
static void side_work(spool_client *c, const uint64_t *ids)
{
    static const char *const queues[] = {"side"};
    struct spool_delivery *d = NULL;
    size_t n = 0;
    CHECK_EQ(spool_reserve(c, queues, 1, 3, 0, 0, &d, &n), 0);
    CHECK_EQ(n, 3);
    if (n != 3) {
        spool_deliveries_free(d);
        return;
    }
    CHECK_EQ(d[0].id, ids[0]);
    CHECK_EQ(spool_touch(c, d[0].id, d[0].lease, 60000, NULL), 0);
    CHECK_EQ(spool_release(c, d[0].id, d[0].lease, 0, -1), 0);
    CHECK_EQ(spool_bury(c, d[1].id, d[1].lease, "disk full test"), 0);
    CHECK_EQ(spool_delete(c, d[1].id), 0);
    CHECK_EQ(spool_ack(c, d[2].id, d[2].lease, NULL, 0), 0);
    CHECK_EQ(spool_delete(c, ids[3]), 0);
    spool_deliveries_free(d);
    d = NULL;
    CHECK_EQ(spool_reserve(c, queues, 1, 1, 0, 0, &d, &n), 0);
    CHECK_EQ(n, 1);
    if (n == 1) {
        CHECK_EQ(d[0].id, ids[0]);
        CHECK_EQ(spool_ack(c, d[0].id, d[0].lease, NULL, 0), 0);
    }
    spool_deliveries_free(d);
}

/* After the restart: the acked side jobs are done, the deleted ones gone. */
static void side_verify(spool_client *c, const uint64_t *ids)
{
    for (uint32_t i = 0; i < SIDE_JOBS; i++) {
        struct spool_job *job = NULL;
        int rc = spool_status(c, ids[i], &job);
        bool done = rc == 0 && job->state == SPOOL_STATE_DONE;
        bool ready = rc == 0 && job->state == SPOOL_STATE_READY;
        spool_job_free(job);
        CHECK(!ready);
        if (i == 0 || i == 2)
            CHECK(done);
    }
}

/* Put until refused; returns the refusal and how long it took to arrive. */
static int server_fill(spool_client *c, struct server_jobs *jobs, int64_t *refusal_ms)
{
    int64_t deadline = now_ms() + SERVER_PHASE_MS;
    while (jobs->count < SERVER_PUTS_MAX && now_ms() < deadline) {
        int64_t t0 = now_ms();
        uint64_t id;
        int rc = server_put(c, jobs->count, &id);
        if (rc != 0) {
            *refusal_ms = now_ms() - t0;
            return rc;
        }
        jobs->ids[jobs->count++] = id;
    }
    return 0;
}

/* Reserve and ack the oldest jobs until jobs->acked reaches target; returns the first error. */
static int server_ack_oldest(spool_client *c, struct server_jobs *jobs, uint32_t target)
{
    static const char *const queues[] = {"fill"};
    int64_t deadline = now_ms() + SERVER_PHASE_MS;
    while (jobs->acked < target && now_ms() < deadline) {
        struct spool_delivery *d = NULL;
        size_t n = 0;
        uint32_t want = target - jobs->acked < 256 ? target - jobs->acked : 256;
        int rc = spool_reserve(c, queues, 1, want, 0, 0, &d, &n);
        if (rc != 0)
            return rc;
        if (n == 0)
            return -ENOENT;
        for (size_t k = 0; k < n; k++) {
            CHECK_EQ(d[k].id, jobs->ids[jobs->acked]); /* FIFO: the oldest first */
            rc = spool_ack(c, d[k].id, d[k].lease, NULL, 0);
            if (rc != 0) {
                spool_deliveries_free(d);
                return rc;
            }
            jobs->acked++;
        }
        spool_deliveries_free(d);
    }
    return jobs->acked == target ? 0 : -ETIMEDOUT;
}

/* After acks free space, puts must work again (once a checkpoint dropped segments). */
static int server_put_again(spool_client *c, struct server_jobs *jobs)
{
    int64_t deadline = now_ms() + 20000;
    int rc = -ETIMEDOUT;
    while (now_ms() < deadline) {
        uint64_t id;
        rc = server_put(c, jobs->count, &id);
        if (rc == 0) {
            jobs->ids[jobs->count++] = id;
            return 0;
        }
        if (rc != SPOOL_E_DISK_FULL)
            return rc;
        usleep(100000);
    }
    return rc;
}

/* After a restart: every put acknowledged and not acked is still there, ready; no acked job
 * is ready again. */
static void server_verify(spool_client *c, const struct server_jobs *jobs)
{
    uint32_t missing = 0, resurrected = 0;
    for (uint32_t i = 0; i < jobs->count; i++) {
        struct spool_job *job = NULL;
        int rc = spool_status(c, jobs->ids[i], &job);
        bool ready = rc == 0 && job->state == SPOOL_STATE_READY;
        if (i < jobs->acked && ready)
            resurrected++;
        if (i >= jobs->acked && !ready)
            missing++;
        spool_job_free(job);
    }
    fprintf(stderr, "server: after restart %u of %u unacked jobs missing, %u acked jobs ready "
                    "again\n", missing, jobs->count - jobs->acked, resurrected);
    CHECK_EQ(missing, 0);
    CHECK_EQ(resurrected, 0);
}

/* A usable client: c itself, or a new connection when c timed out or was closed (NULL when
 * the server does not answer a handshake either). */
static spool_client *server_usable(const struct spoold *s, spool_client *c, int last_rc)
{
    if (last_rc != SPOOL_E_TIMED_OUT && last_rc != SPOOL_E_CONNECTION_CLOSED)
        return c;
    spool_close(c);
    c = server_connect(s);
    if (c == NULL)
        fprintf(stderr, "server: does not answer a new connection\n");
    return c;
}

/* SIGTERM, then up to 10 s for a clean exit; SIGKILL if it does not come. True if clean. */
static bool server_stop_bounded(struct spoold *s)
{
    kill(s->pid, SIGTERM);
    int64_t deadline = now_ms() + 10000;
    while (now_ms() < deadline) {
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            fprintf(stderr, "server: SIGTERM: exit status %d\n", WEXITSTATUS(status));
            return WIFEXITED(status) && WEXITSTATUS(status) == 0;
        }
        usleep(20000);
    }
    fprintf(stderr, "server: SIGTERM: still running after 10 s; SIGKILL\n");
    spoold_kill(s);
    return false;
}

static void server_disk_full_on(const char *base, const char *tag, const char *tmpfs_options,
                                bool reserve_released)
{
    struct spoold s;
    memset(&s, 0, sizeof(s));
    snprintf(s.dir, sizeof(s.dir), "%s", base);
    snprintf(s.data, sizeof(s.data), "%s/data", base);
    snprintf(s.ready, sizeof(s.ready), "%s/ready", base);
    snprintf(s.log, sizeof(s.log), "%s/spoold-%s.log", base, tag); /* not on the full disk */
    REQUIRE(mkdir(s.data, 0750) == 0 || errno == EEXIST);
    if (!tmpfs_mount(s.data, tmpfs_options))
        exit(TEST_EXIT_SKIP);
    /* The default checkpoint period (60 s) and bytes (64 MiB, above the disk): puts come back
     * only if the server checkpoints on its own when space is low and a segment can go. */
    static const char *const args[] = {"--segment-size", "4194304", "--max-job-size", "65536",
                                       NULL};
    REQUIRE(spoold_restart(&s, args) == 0);
    /* The log keeps its next segment reserved, and the server its checkpoint's space. */
    CHECK_EQ(file_allocated(&s, "segment.spare", 4194304), 4194304);
    CHECK(file_allocated(&s, "spoold.reserve", 1) > 0);
    spool_client *c = server_connect(&s);
    REQUIRE(c != NULL);
    struct server_jobs jobs = {.ids = calloc(SERVER_PUTS_MAX + 16, sizeof(uint64_t))};
    REQUIRE(jobs.ids != NULL);
    uint64_t side[SIDE_JOBS];
    side_put(c, side);

    int64_t refusal_ms = 0;
    int rc = server_fill(c, &jobs, &refusal_ms);
    fprintf(stderr, "server: %u puts acknowledged, then %s (%d) after %lld ms\n", jobs.count,
            spool_strerror(rc), rc, (long long)refusal_ms);
    dir_report(s.data);
    CHECK_EQ(rc, SPOOL_E_DISK_FULL);
    CHECK(spool_error_is_retryable(rc));
    CHECK(refusal_ms < SERVER_IO_TIMEOUT_MS);
    CHECK(kill(s.pid, 0) == 0);
    c = server_usable(&s, c, rc);
    CHECK(c != NULL);

    /* Refused again, batches too, on the same connection; one warning for the episode. */
    if (c != NULL) {
        for (uint32_t i = 0; i < 20; i++) {
            uint64_t id;
            CHECK_EQ(server_put(c, jobs.count, &id), SPOOL_E_DISK_FULL);
        }
        struct spool_job_spec batch[2] = {{.queue = "fill", .body = "a", .body_len = 1},
                                          {.queue = "side", .body = "b", .body_len = 1}};
        CHECK_EQ(spool_put_batch(c, batch, 2, NULL), SPOOL_E_DISK_FULL);
        CHECK_EQ(log_count(s.log, "puts refused with DISK_FULL"), 1);
        side_work(c, side);
    }

    /* Workers go on while puts are refused: ack three quarters, oldest first. */
    if (c != NULL) {
        CHECK_EQ(spool_ping(c), 0);
        uint32_t target = jobs.count - jobs.count / 4;
        rc = server_ack_oldest(c, &jobs, target);
        fprintf(stderr, "server: acked %u of %u jobs while the disk was full: %s\n",
                jobs.acked, target, spool_strerror(rc));
        CHECK_EQ(rc, 0);
        c = server_usable(&s, c, rc);
    }
    if (c != NULL) {
        rc = server_put_again(c, &jobs);
        fprintf(stderr, "server: put after the acks: %s\n", spool_strerror(rc));
        CHECK_EQ(rc, 0);
    }
    spool_close(c);
    CHECK(server_stop_bounded(&s));
    /* Each episode is logged once when it begins and once when it ends. */
    int episodes = log_count(s.log, "puts refused with DISK_FULL");
    int ends = log_count(s.log, "puts admitted again");
    fprintf(stderr, "server: %d disk-space episodes logged, %d ends\n", episodes, ends);
    CHECK(episodes >= 1);
    CHECK(ends >= 1);
    CHECK(episodes <= ends + 1);
    CHECK_EQ(log_count(s.log, "checkpoint reserve released") > 0, reserve_released);

    /* Whatever happened, a restart on the same (full) disk has every acknowledged put. */
    REQUIRE(spoold_restart(&s, args) == 0);
    c = server_connect(&s);
    REQUIRE(c != NULL);
    server_verify(c, &jobs);
    side_verify(c, side);
    spool_close(c);
    CHECK(server_stop_bounded(&s));
    log_echo(s.log);
    if (check_failures > 0)
        fprintf(stderr, "server log kept at %s\n", s.log);
    free(jobs.ids);
    tmpfs_unmount(s.data);
}

static void server_disk_full(const char *base)
{
    server_disk_full_on(base, "roomy", SERVER_TMPFS_OPTIONS, false);
}

static void server_disk_full_tight(const char *base)
{
    server_disk_full_on(base, "tight", SERVER_TMPFS_TIGHT_OPTIONS, true);
}

#define RUN_TEST_ARG(fn, arg)                                                                 \
    do {                                                                                      \
        int before_ = check_failures;                                                         \
        fn(arg);                                                                              \
        fprintf(stderr, "%s %s\n", check_failures == before_ ? "ok  " : "FAIL", #fn);          \
    } while (0)

/* Usage: test_disk_full [engine|server] (default: both). */
int main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "all";
    if (!namespace_enter())
        return TEST_EXIT_SKIP;
    char *base = check_tmpdir("disk-full");
    REQUIRE(base != NULL);
    if (strcmp(which, "server") != 0) {
        RUN_TEST_ARG(engine_enospc, base);
        RUN_TEST_ARG(engine_headroom, base);
    }
    if (strcmp(which, "engine") != 0) {
        RUN_TEST_ARG(server_disk_full, base);
        RUN_TEST_ARG(server_disk_full_tight, base);
    }
    if (check_failures == 0) {
        char path[700];
        snprintf(path, sizeof(path), "%s/spoold-roomy.log", base);
        unlink(path);
        snprintf(path, sizeof(path), "%s/spoold-tight.log", base);
        unlink(path);
        snprintf(path, sizeof(path), "%s/ready", base);
        unlink(path);
        snprintf(path, sizeof(path), "%s/engine", base);
        rmdir(path);
        snprintf(path, sizeof(path), "%s/headroom", base);
        rmdir(path);
        snprintf(path, sizeof(path), "%s/data", base);
        rmdir(path);
        rmdir(base);
    }
    free(base);
    return check_exit();
}
