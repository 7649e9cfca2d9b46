/*
 * `spool-bench storage` (see storage_bench.h). Both runs write record_count records of
 * record_size_bytes, appends_per_commit of them per commit, one commit at a time, and time
 * the whole; the engine run goes through log_append / log_tick and waits for on_durable
 * (LOG_SYNC_ALWAYS: write + fdatasync), the raw run does one pwrite of the same payload bytes
 * and one fdatasync per commit, appending to a fresh file in the same directory. Both write
 * incompressible bytes. The files are removed afterwards.
 */
#include "storage_bench.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "assert.h"
#include "storage_bench_internal.h"

void storage_bench_config_defaults(struct storage_bench_config *config)
{
    memset(config, 0, sizeof(*config));
    config->record_size_bytes = 4096;
    config->appends_per_commit = 64;
    config->record_count = 100000;
    config->run_engine = true;
    config->reps = 1;
}

double storage_bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void storage_bench_fill_random(uint8_t *buf, size_t len)
{
    uint64_t x = 0x9e3779b97f4a7c15ull; /* xorshift64: cheap, and lz4 finds nothing in it */
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (uint8_t)(x >> 24);
    }
}

/* Write len bytes at offset, finishing short writes. */
static int pwrite_all(int fd, const uint8_t *data, size_t len, off_t offset)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, data, len, offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        data += n;
        len -= (size_t)n;
        offset += n;
    }
    return 0;
}

static int run_raw(const struct storage_bench_config *cfg, struct storage_bench_result *result)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/raw-bench.dat", cfg->dir);
    size_t commit_bytes = (size_t)cfg->appends_per_commit * cfg->record_size_bytes;
    uint8_t *buf = malloc(commit_bytes);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (buf == NULL || fd < 0) {
        int error = buf == NULL ? -ENOMEM : -errno;
        free(buf);
        return error;
    }
    storage_bench_fill_random(buf, commit_bytes); /* the same kind of bytes as the engine's */
    uint64_t left = cfg->record_count;
    off_t offset = 0;
    int rc = 0;
    double start = storage_bench_now_s();
    while (left > 0 && rc == 0) {
        uint64_t n = left < cfg->appends_per_commit ? left : cfg->appends_per_commit;
        size_t bytes = (size_t)n * cfg->record_size_bytes;
        rc = pwrite_all(fd, buf, bytes, offset);
        if (rc == 0 && fdatasync(fd) != 0)
            rc = -errno;
        offset += (off_t)bytes;
        left -= n;
        result->commits++;
    }
    result->seconds = storage_bench_now_s() - start;
    result->records = cfg->record_count - left;
    close(fd);
    unlink(path);
    free(buf);
    return rc;
}

static void print_result(const char *kind, const struct storage_bench_config *cfg,
                         const struct storage_bench_result *r)
{
    double s = r->seconds > 0 ? r->seconds : 1e-9;
    printf("RESULT bench=storage mode=%s size=%u appends_per_commit=%u records=%llu "
           "seconds=%.3f records_per_s=%.0f mb_per_s=%.1f commits_per_s=%.0f\n",
           kind, cfg->record_size_bytes, cfg->appends_per_commit, (unsigned long long)r->records,
           r->seconds, (double)r->records / s,
           (double)r->records * cfg->record_size_bytes / s / 1e6, (double)r->commits / s);
}

static double rate_mb_per_s(const struct storage_bench_config *cfg,
                            const struct storage_bench_result *r)
{
    return r->seconds > 0 ? (double)r->records * cfg->record_size_bytes / r->seconds / 1e6 : 0;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One run of kind (engine or raw): its RESULT line and its MB/s in *mb_per_s. */
static int run_one(const struct storage_bench_config *cfg, bool engine, double *mb_per_s)
{
    struct storage_bench_result r = {0};
    int rc = engine ? storage_bench_run_engine(cfg, &r) : run_raw(cfg, &r);
    if (rc != 0) {
        fprintf(stderr, "spool-bench storage: %s run failed: %s\n", engine ? "engine" : "raw",
                storage_bench_strerror(rc));
        return rc;
    }
    print_result(engine ? "engine" : "raw", cfg, &r);
    fflush(stdout);
    *mb_per_s = rate_mb_per_s(cfg, &r);
    return 0;
}

/*
 * With both kinds, the runs alternate (engine, raw, engine, raw, ...) for reps rounds and the
 * ratio is that of the medians: a disk shared with other work changes speed from one second to
 * the next, and alternating spreads that over both kinds instead of charging it to one.
 */
int storage_bench_main(const struct storage_bench_config *config)
{
    if (config->dir == NULL) {
        fprintf(stderr, "spool-bench storage: --dir DIR is required\n");
        return 2;
    }
    if (mkdir(config->dir, 0750) != 0 && errno != EEXIST) {
        fprintf(stderr, "spool-bench storage: mkdir %s: %s\n", config->dir, strerror(errno));
        return 1;
    }
    double engine[STORAGE_BENCH_REPS_MAX], raw[STORAGE_BENCH_REPS_MAX];
    SPOOL_ASSERT(config->reps >= 1 && config->reps <= STORAGE_BENCH_REPS_MAX);
    for (uint32_t i = 0; i < config->reps; i++) {
        if (config->run_engine && run_one(config, true, &engine[i]) != 0)
            return 1;
        if (config->run_raw && run_one(config, false, &raw[i]) != 0)
            return 1;
    }
    if (config->run_engine && config->run_raw) {
        qsort(engine, config->reps, sizeof(double), compare_double);
        qsort(raw, config->reps, sizeof(double), compare_double);
        double e = engine[config->reps / 2], r = raw[config->reps / 2];
        printf("RESULT bench=storage_ratio size=%u appends_per_commit=%u reps=%u "
               "engine_mb_per_s=%.1f raw_mb_per_s=%.1f engine_over_raw=%.2f\n",
               config->record_size_bytes, config->appends_per_commit, config->reps, e, r,
               r > 0 ? e / r : 0);
    }
    return 0;
}
