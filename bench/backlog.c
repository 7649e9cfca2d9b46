/*
 * spool-bench backlog: what a parked backlog costs (issue 11). It starts its own spoold in a
 * temp directory (127.0.0.1, port 0), fills it with --jobs jobs of --size bytes with batched
 * puts, reads the server's RSS, drains the first half (reserve 256, one ack batch each: the
 * bodies the cache kept from the puts), stops it cleanly (SIGTERM: a checkpoint), starts it
 * again and times how long until it listens, then drains the other half (every body read back
 * from the log: a restart caches none) and stops it. One line:
 *
 *   RESULT bench=backlog jobs=N size=S body_cache=B put_jobs_per_s=.. rss_bytes=..
 *          rss_bytes_per_job=.. drain_before_jobs_per_s=.. ready_s=..
 *          restart_rss_bytes_per_job=.. drain_jobs_per_s=.. cold=0|1 random=0|1
 *          drain_waits=.. drain_batch_reads=.. drain_prefetch_reads=.. commit_io=..
 *
 * rss_bytes_per_job is (RSS full - RSS empty) / jobs, with the server's body cache at
 * --body-cache (default 1m, so the figure is the per-job cost beyond the cache). With a cache
 * that holds every body (--body-cache 1g), drain_before_jobs_per_s is a drain from memory and
 * drain_jobs_per_s one from the log. With --cold the restart also finds the log out of the
 * page cache (cold=1 in the RESULT line): between the stop and the start every file of the data
 * directory is fsync'ed and dropped from the page cache with posix_fadvise(POSIX_FADV_DONTNEED)
 * (no root needed, and only this run's files are touched), so the drain after the restart reads
 * its bodies from the disk, as after a reboot; and the first drain starts only once the fill's
 * writeback is done (syncfs), so that both drains are timed on a quiet disk. drain_waits is how
 * many reserves of the drain after the restart had to wait for a read of the log (from the
 * server's stop line), drain_batch_reads how many batches it read, drain_prefetch_reads how
 * many of those read-ahead issued: figures that CPU contention does not blur. --random makes the
 * bodies incompressible, so that the log is as large as they are. --spoold-arg passes one more
 * argument to spoold at both starts (repeatable: --spoold-arg=--direct-io --spoold-arg=off),
 * and commit_io= is the stop line's word for how its commits were written.
 */
#include "backlog.h"

#include <spool/client.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Jobs per put batch: 1000 jobs of 100 bytes are ~130 KiB, well inside the default 2 MiB
 * frame; larger bodies get fewer so a batch stays under BACKLOG_BATCH_BYTES_MAX. */
#define BACKLOG_BATCH_JOBS_MAX 1000
#define BACKLOG_BATCH_BYTES_MAX (1536u * 1024)
/* Jobs per reserve while draining: the server's largest reserve. */
#define BACKLOG_RESERVE_COUNT 256
/* How long spoold may take to start listening: a restart of 10M jobs must fit. */
#define BACKLOG_START_TIMEOUT_S 600
/* --spoold-arg may be given this many times. */
#define BACKLOG_SPOOLD_ARGS_MAX 16

struct backlog_config {
    uint64_t jobs;
    uint32_t size;
    const char *spoold;
    const char *dir;
    const char *body_cache;
    bool cold;
    bool random; /* incompressible bodies (lz4 saves nothing: the log is as large as they) */
    /* --spoold-arg: passed to spoold after ours, at both starts (--direct-io off, ...) */
    const char *spoold_args[BACKLOG_SPOOLD_ARGS_MAX];
    uint32_t spoold_arg_count;
};

struct backlog_server {
    pid_t pid;
    char dir[256];
    char data[300];
    char ready[300];
    char log[300];
    char addr[64];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Start spoold; returns seconds until its ready file appeared, or a negative number. */
static double server_start(struct backlog_server *s, const struct backlog_config *cfg)
{
    unlink(s->ready);
    double t0 = now_s();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        FILE *log = freopen(s->log, "a", stderr);
        (void)log;
        /* spoold, its six of ours, --body-cache and its value, the caller's, NULL */
        const char *args[1 + 6 + 2 + BACKLOG_SPOOLD_ARGS_MAX + 1];
        uint32_t n = 0;
        args[n++] = cfg->spoold;
        args[n++] = "--data";
        args[n++] = s->data;
        args[n++] = "--listen";
        args[n++] = "127.0.0.1:0";
        args[n++] = "--ready-file";
        args[n++] = s->ready;
        /* "none": no --body-cache at all (a spoold from before the body cache). */
        if (strcmp(cfg->body_cache, "none") != 0) {
            args[n++] = "--body-cache";
            args[n++] = cfg->body_cache;
        }
        for (uint32_t i = 0; i < cfg->spoold_arg_count; i++)
            args[n++] = cfg->spoold_args[i];
        args[n] = NULL;
        execv(cfg->spoold, (char *const *)args);
        _exit(127);
    }
    s->pid = pid;
    for (;;) {
        FILE *f = fopen(s->ready, "r");
        if (f != NULL) {
            bool ok = fgets(s->addr, sizeof(s->addr), f) != NULL;
            fclose(f);
            s->addr[strcspn(s->addr, "\n")] = '\0';
            if (ok && s->addr[0] != '\0')
                return now_s() - t0;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            fprintf(stderr, "spool-bench: spoold exited at start (log: %s)\n", s->log);
            s->pid = 0;
            return -1;
        }
        if (now_s() - t0 > BACKLOG_START_TIMEOUT_S)
            return -1;
        usleep(1000);
    }
}

static int server_stop(struct backlog_server *s)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, SIGTERM);
    int status = 0;
    waitpid(s->pid, &status, 0);
    s->pid = 0;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static uint64_t server_rss(const struct backlog_server *s)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/statm", (int)s->pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    unsigned long long size = 0, resident = 0;
    int n = fscanf(f, "%llu %llu", &size, &resident);
    fclose(f);
    return n == 2 ? resident * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

/* Drop one file from the page cache: fsync first (dirty pages are not dropped). */
static int file_drop_cached(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    if (rc == 0)
        rc = -posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
    return rc;
}

/* Every regular file of the (stopped) server's data directory out of the page cache. */
static int data_drop_cached(const struct backlog_server *s)
{
    DIR *dir = opendir(s->data);
    if (dir == NULL)
        return -errno;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL && rc == 0) {
        if (e->d_type != DT_REG)
            continue;
        char path[600];
        snprintf(path, sizeof(path), "%s/%s", s->data, e->d_name);
        rc = file_drop_cached(path);
        if (rc != 0)
            fprintf(stderr, "spool-bench: drop %s from the page cache: %s\n", path, strerror(-rc));
    }
    closedir(dir);
    return rc;
}

/* The word after key in the last line of the server's log that has it, into out ("-": none):
 * commit_io= of the stop line says how the commits were written (direct or buffered). */
static void log_word(const struct backlog_server *s, const char *key, char *out, size_t size)
{
    snprintf(out, size, "-");
    FILE *f = fopen(s->log, "r");
    if (f == NULL)
        return;
    char line[2048];
    while (fgets(line, sizeof(line), f) != NULL) {
        const char *at = strstr(line, key);
        if (at != NULL) {
            at += strlen(key);
            snprintf(out, size, "%.*s", (int)strcspn(at, " \n"), at);
        }
    }
    fclose(f);
}

/* The number after key in the last line of the server's log that has it (0: none): the stop
 * line of the body cache says how many deliveries waited for a read (fetches=) and how many
 * batch reads read-ahead made (prefetch_reads=, 0 for a spoold without it). */
static uint64_t log_counter(const struct backlog_server *s, const char *key)
{
    char word[32];
    log_word(s, key, word, sizeof(word));
    return strtoull(word, NULL, 10);
}

static int fill(spool_client *c, const struct backlog_config *cfg)
{
    uint32_t per_batch = BACKLOG_BATCH_BYTES_MAX / (cfg->size + 64);
    if (per_batch > BACKLOG_BATCH_JOBS_MAX)
        per_batch = BACKLOG_BATCH_JOBS_MAX;
    if (per_batch == 0)
        per_batch = 1;
    /* One body per job of a batch: random ones differ from each other, so that the batch's
     * compression (within one batch only) finds nothing to share. */
    size_t bodies = cfg->random ? per_batch : 1;
    char *body = malloc((size_t)cfg->size * bodies + 1);
    struct spool_job_spec *specs = calloc(per_batch, sizeof(*specs));
    if (body == NULL || specs == NULL) {
        free(body);
        free(specs);
        return -ENOMEM;
    }
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < (size_t)cfg->size * bodies; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
        body[i] = cfg->random ? (char)(x >> 32) : (char)('a' + i % 26);
    }
    for (uint32_t k = 0; k < per_batch; k++)
        specs[k] = (struct spool_job_spec){
            .queue = "backlog", .body = body + (cfg->random ? (size_t)k * cfg->size : 0),
            .body_len = cfg->size};
    int rc = 0;
    for (uint64_t done = 0; done < cfg->jobs && rc == 0;) {
        uint64_t n = cfg->jobs - done < per_batch ? cfg->jobs - done : per_batch;
        rc = spool_put_batch(c, specs, n, NULL);
        done += n;
    }
    free(body);
    free(specs);
    return rc;
}

static int drain(spool_client *c, uint64_t jobs)
{
    const char *queues[1] = {"backlog"};
    struct spool_ack_item items[BACKLOG_RESERVE_COUNT];
    uint64_t got_total = 0;
    while (got_total < jobs) {
        struct spool_delivery *d = NULL;
        size_t got = 0;
        uint64_t want = jobs - got_total < BACKLOG_RESERVE_COUNT ? jobs - got_total
                                                                 : BACKLOG_RESERVE_COUNT;
        int rc = spool_reserve(c, queues, 1, (uint32_t)want, 1000, 0, &d, &got);
        if (rc != 0)
            return rc;
        if (got == 0)
            return -ENODATA;
        for (size_t k = 0; k < got; k++)
            items[k] = (struct spool_ack_item){.id = d[k].id, .lease = d[k].lease};
        rc = spool_ack_batch(c, items, got, NULL);
        spool_deliveries_free(d);
        if (rc != 0)
            return rc;
        got_total += got;
    }
    return 0;
}

static int connect_to(const struct backlog_server *s, spool_client **c)
{
    int rc = spool_connect(s->addr, 10000, c);
    if (rc != 0)
        fprintf(stderr, "spool-bench: connect %s: %s\n", s->addr, spool_strerror(rc));
    return rc;
}

static int run(const struct backlog_config *cfg, struct backlog_server *s)
{
    if (server_start(s, cfg) < 0)
        return 1;
    spool_client *c = NULL;
    if (connect_to(s, &c) != 0)
        return 1;
    uint64_t rss_empty = server_rss(s);
    double t0 = now_s();
    int rc = fill(c, cfg);
    double put_s = now_s() - t0;
    if (rc != 0) {
        fprintf(stderr, "spool-bench: put: %s\n", spool_strerror(rc));
        return 1;
    }
    uint64_t rss_full = server_rss(s);
    /* The fill leaves the kernel writing back the log (gigabytes with large bodies): the first
     * drain's fsyncs would wait behind it, and the cached drain would look slower than the
     * cold one. With --cold both drains are timed on a quiet disk. */
    if (cfg->cold) {
        int dfd = open(s->data, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)syncfs(dfd);
            close(dfd);
        }
    }
    uint64_t first_half = cfg->jobs / 2;
    t0 = now_s();
    rc = drain(c, first_half);
    double drain_before_s = now_s() - t0;
    spool_close(c);
    if (rc != 0) {
        fprintf(stderr, "spool-bench: drain: %s\n", spool_strerror(rc));
        return 1;
    }
    if (server_stop(s) != 0)
        return 1;
    if (cfg->cold && data_drop_cached(s) != 0)
        return 1;
    double ready_s = server_start(s, cfg);
    if (ready_s < 0 || connect_to(s, &c) != 0)
        return 1;
    uint64_t rss_restarted = server_rss(s);
    uint64_t second_half = cfg->jobs - first_half;
    t0 = now_s();
    rc = drain(c, second_half);
    double drain_s = now_s() - t0;
    spool_close(c);
    if (rc != 0) {
        fprintf(stderr, "spool-bench: drain: %s\n", spool_strerror(rc));
        return 1;
    }
    server_stop(s);
    /* The log is appended to by both runs: the last stop line is the second run's. */
    uint64_t waits = log_counter(s, " fetches=");
    uint64_t reads = log_counter(s, " batch_reads=");
    uint64_t ahead = log_counter(s, " prefetch_reads=");
    char commit_io[32];
    log_word(s, " commit_io=", commit_io, sizeof(commit_io));
    double jobs = (double)cfg->jobs;
    printf("RESULT bench=backlog jobs=%llu size=%u body_cache=%s put_jobs_per_s=%.0f "
           "rss_bytes=%llu rss_bytes_per_job=%.1f drain_before_jobs_per_s=%.0f ready_s=%.3f "
           "restart_rss_bytes_per_job=%.1f drain_jobs_per_s=%.0f cold=%d random=%d "
           "drain_waits=%llu drain_batch_reads=%llu drain_prefetch_reads=%llu commit_io=%s\n",
           (unsigned long long)cfg->jobs, cfg->size, cfg->body_cache, jobs / put_s,
           (unsigned long long)rss_full, ((double)rss_full - (double)rss_empty) / jobs,
           (double)first_half / drain_before_s, ready_s,
           ((double)rss_restarted - (double)rss_empty) / (double)second_half,
           (double)second_half / drain_s, cfg->cold ? 1 : 0, cfg->random ? 1 : 0,
           (unsigned long long)waits, (unsigned long long)reads, (unsigned long long)ahead,
           commit_io);
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: spool-bench backlog --jobs N [--size BYTES] [--body-cache BYTES|none]\n"
            "                          [--cold] [--random] [--spoold PATH] [--dir DIR]\n"
            "                          [--spoold-arg ARG]...\n"
            "  starts its own spoold (default: $SPOOLD, else spoold next to spool-bench's\n"
            "  build: ../src/spoold), fills N jobs, restarts it, drains them; one RESULT line\n"
            "  --spoold-arg ARG: one more argument for spoold, at both starts (up to 16; e.g.\n"
            "                    --spoold-arg=--direct-io --spoold-arg=off)\n"
            "  --cold: drop the log from the page cache before the restart\n"
            "  --random: incompressible bodies (default: text that lz4 shrinks)\n");
}

/* spoold of the same build tree: <build>/bench/spool-bench -> <build>/src/spoold. */
static const char *default_spoold(char *buf, size_t size)
{
    const char *env = getenv("SPOOLD");
    if (env != NULL)
        return env;
    ssize_t n = readlink("/proc/self/exe", buf, size - 32);
    if (n <= 0)
        return "spoold";
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (slash == NULL)
        return "spoold";
    strcpy(slash, "/../src/spoold");
    return buf;
}

static int parse(int argc, char **argv, struct backlog_config *cfg)
{
    static const struct option options[] = {
        {"jobs", required_argument, NULL, 'j'},   {"size", required_argument, NULL, 's'},
        {"spoold", required_argument, NULL, 'p'}, {"dir", required_argument, NULL, 'd'},
        {"body-cache", required_argument, NULL, 'b'}, {"help", no_argument, NULL, 'h'},
        {"cold", no_argument, NULL, 'c'},         {"random", no_argument, NULL, 'r'},
        {"spoold-arg", required_argument, NULL, 'a'}, {NULL, 0, NULL, 0}};
    int opt;
    optind = 2;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        char *end = NULL;
        switch (opt) {
        case 'j': cfg->jobs = strtoull(optarg, &end, 10); break;
        case 's': cfg->size = (uint32_t)strtoul(optarg, &end, 10); break;
        case 'p': cfg->spoold = optarg; break;
        case 'd': cfg->dir = optarg; break;
        case 'b': cfg->body_cache = optarg; break;
        case 'c': cfg->cold = true; break;
        case 'r': cfg->random = true; break;
        case 'a':
            if (cfg->spoold_arg_count == BACKLOG_SPOOLD_ARGS_MAX) {
                fprintf(stderr, "spool-bench backlog: more than %u --spoold-arg\n",
                        BACKLOG_SPOOLD_ARGS_MAX);
                return -EINVAL;
            }
            cfg->spoold_args[cfg->spoold_arg_count++] = optarg;
            break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -EINVAL;
        }
        if (end != NULL && *end != '\0') {
            fprintf(stderr, "spool-bench backlog: bad number \"%s\"\n", optarg);
            return -EINVAL;
        }
    }
    if (optind != argc || cfg->jobs < 2 || cfg->size > 1024 * 1024) {
        usage(stderr);
        return -EINVAL;
    }
    return 0;
}

int backlog_main(int argc, char **argv)
{
    static char spoold_buf[PATH_MAX];
    struct backlog_config cfg = {.size = 100, .dir = "/tmp", .body_cache = "1m"};
    cfg.spoold = default_spoold(spoold_buf, sizeof(spoold_buf));
    if (parse(argc, argv, &cfg) != 0)
        return 2;
    struct backlog_server s = {0};
    snprintf(s.dir, sizeof(s.dir), "%s/spool-bench-backlog-XXXXXX", cfg.dir);
    if (mkdtemp(s.dir) == NULL) {
        fprintf(stderr, "spool-bench: mkdtemp %s: %s\n", s.dir, strerror(errno));
        return 1;
    }
    snprintf(s.data, sizeof(s.data), "%s/data", s.dir);
    snprintf(s.ready, sizeof(s.ready), "%s/ready", s.dir);
    snprintf(s.log, sizeof(s.log), "%s/spoold.log", s.dir);
    int rc = run(&cfg, &s);
    if (s.pid > 0)
        server_stop(&s);
    if (rc == 0) {
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s.dir);
        if (system(cmd) != 0)
            fprintf(stderr, "spool-bench: could not remove %s\n", s.dir);
    } else {
        fprintf(stderr, "spool-bench: kept %s (spoold.log)\n", s.dir);
    }
    return rc;
}
