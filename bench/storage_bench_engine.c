/*
 * The engine half of `spool-bench storage`: records through storage/log.h on the io_uring
 * backend (the production path), LOG_SYNC_ALWAYS, one commit of appends_per_commit records
 * at a time: append them all, log_tick() starts the commit (one aligned write + fdatasync),
 * then poll the ring until on_durable covers them. The log lives in a fresh subdirectory of
 * --dir that is removed afterwards. Opening (which creates and preallocates the first segment)
 * is not timed; segment rolls during the run are, as they are part of the engine's cost.
 */
#include <dirent.h>
#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "storage_bench_internal.h"

/* Ring entries: the engine has at most a write and an fdatasync (plus a roll's few ops) in
 * flight; 64 leaves room. */
#define RING_ENTRIES 64
#define RECORD_TYPE 1 /* the engine does not interpret types; any value will do */

struct engine_run {
    uint64_t durable_seq_end;
    int error;
};

static void on_durable(void *ctx, uint64_t durable_seq_end, enum log_durability level, int error)
{
    struct engine_run *run = ctx;
    (void)level;
    if (error != 0)
        run->error = error;
    else
        run->durable_seq_end = durable_seq_end;
}

/* Remove the files of the benchmark's log directory (one level, as the engine makes it). */
static void remove_dir(const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL)
        return;
    struct dirent *e;
    char file[4096];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
        unlink(file);
    }
    closedir(d);
    rmdir(path);
}

/* Append and commit every record; the caller has opened the log. */
static int engine_append_all(const struct storage_bench_config *cfg, struct log *log,
                             struct io_backend *backend, struct engine_run *run,
                             const uint8_t *payload, struct storage_bench_result *result)
{
    uint64_t left = cfg->record_count;
    while (left > 0) {
        uint64_t n = left < cfg->appends_per_commit ? left : cfg->appends_per_commit;
        for (uint64_t i = 0; i < n; i++) {
            struct log_pos pos;
            const uint8_t *data = payload + (i % 64) * 61; /* vary the bytes a little */
            int rc = log_append(log, RECORD_TYPE, data, cfg->record_size_bytes, &pos);
            if (rc != 0)
                return rc;
        }
        uint64_t want = log_next_seq(log);
        log_tick(log);
        while (run->durable_seq_end < want && run->error == 0) {
            int rc = io_backend_poll(backend, true);
            if (rc < 0)
                return rc;
            log_tick(log);
        }
        if (run->error != 0)
            return run->error;
        left -= n;
        result->commits++;
        result->records += n;
    }
    return 0;
}

static int engine_open(const struct storage_bench_config *cfg, const char *dir,
                       struct io_backend *backend, struct engine_run *run, struct log **log)
{
    struct log_config lc;
    log_config_defaults(&lc);
    lc.dir = dir;
    lc.sync_mode = LOG_SYNC_ALWAYS;
    lc.on_durable = on_durable;
    lc.ctx = run;
    /* One commit must fit one batch: size the batch for appends_per_commit records. */
    uint64_t need =
        (uint64_t)cfg->appends_per_commit * log_record_footprint(cfg->record_size_bytes) + 4096;
    if (need > lc.batch_size_bytes_max) {
        if (need > lc.segment_size_bytes / 4)
            return LOG_ETOOBIG;
        lc.batch_size_bytes_max = (uint32_t)need;
    }
    struct log_recovery_report report;
    void *checkpoint = NULL;
    uint32_t checkpoint_len = 0;
    int rc = log_open(&lc, backend, NULL, NULL, &checkpoint, &checkpoint_len, &report, log);
    free(checkpoint);
    return rc;
}

int storage_bench_run_engine(const struct storage_bench_config *cfg,
                             struct storage_bench_result *result)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/engine-bench-%d", cfg->dir, (int)getpid());
    remove_dir(dir);
    /* Incompressible bytes, as a job body usually is: lz4 is tried and does not pay. */
    uint8_t *payload = malloc((size_t)cfg->record_size_bytes + 64 * 61);
    if (payload == NULL)
        return -ENOMEM;
    storage_bench_fill_random(payload, (size_t)cfg->record_size_bytes + 64 * 61);
    struct io_uring ring;
    int rc = io_uring_queue_init(RING_ENTRIES, &ring, 0);
    if (rc != 0) {
        free(payload);
        return rc;
    }
    struct io_backend *backend = NULL;
    struct log *log = NULL;
    struct engine_run run = {0};
    rc = io_uring_backend_create(&ring, dir, true, &backend);
    if (rc == 0)
        rc = engine_open(cfg, dir, backend, &run, &log);
    if (rc == 0) {
        double start = storage_bench_now_s();
        rc = engine_append_all(cfg, log, backend, &run, payload, result);
        result->seconds = storage_bench_now_s() - start;
    }
    if (log != NULL) {
        int close_rc = log_close(log);
        rc = rc != 0 ? rc : close_rc;
    }
    io_backend_destroy(backend);
    io_uring_queue_exit(&ring);
    remove_dir(dir);
    free(payload);
    return rc;
}

const char *storage_bench_strerror(int error)
{
    return error <= LOG_ECORRUPT ? log_strerror(error) : strerror(-error);
}
