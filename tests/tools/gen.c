/* Test helpers for spool-log (see gen.h). */
#include "gen.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "check.h"
#include "segment.h"

uint32_t gen_body(uint64_t id, uint8_t *buf, uint32_t cap)
{
    if (id % 3 != 0) {
        uint32_t len = 1200 + (uint32_t)(id % 7) * 100;
        REQUIRE(len <= cap);
        for (uint32_t i = 0; i < len; i++)
            buf[i] = (uint8_t)('a' + (id + i / 16) % 20);
        return len;
    }
    uint32_t len = 100 + (uint32_t)(id % 50);
    uint64_t x = id * 0x9E3779B97F4A7C15ull + 7;
    for (uint32_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
    return len;
}

static void gen_on_durable(void *ctx, uint64_t end, enum log_durability level, int error)
{
    struct gen *g = ctx;
    (void)level;
    if (error != 0)
        g->error = error;
    else if (end > g->durable_end)
        g->durable_end = end;
}

static void gen_drain(struct gen *g)
{
    while (g->error == 0 && !log_idle(g->log)) {
        log_tick(g->log);
        REQUIRE(io_backend_poll(g->io, true) >= 0);
    }
    REQUIRE(g->error == 0);
}

static int gen_emit(void *ctx, uint8_t type, const void *data, uint32_t len, struct log_pos *pos)
{
    struct gen *g = ctx;
    for (;;) {
        int rc = log_append(g->log, type, data, len, pos);
        if (rc != -ENOBUFS)
            return rc;
        gen_drain(g);
    }
}

void gen_open(struct gen *g, const char *tag, uint64_t segment_size)
{
    memset(g, 0, sizeof(*g));
    g->dir = check_tmpdir(tag);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    g->now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    g->now = (struct queue_time){.wall_ns = g->now_ms * QUEUE_NS_PER_MS,
                                 .mono_ns = g->now_ms * QUEUE_NS_PER_MS};
    REQUIRE(posix_backend_create(g->dir, true, &g->io) == 0);
    struct log_config config;
    log_config_defaults(&config);
    config.dir = g->dir;
    config.segment_size_bytes = segment_size;
    config.batch_size_bytes_max = (uint32_t)(segment_size / 4);
    config.on_durable = gen_on_durable;
    config.ctx = g;
    struct log_recovery_report report;
    void *ckpt = NULL;
    uint32_t ckpt_len = 0;
    REQUIRE(log_open(&config, g->io, NULL, NULL, &ckpt, &ckpt_len, &report, &g->log) == 0);
    free(ckpt);
    struct queue_config qc;
    queue_config_defaults(&qc);
    qc.emit = gen_emit;
    qc.emit_ctx = g;
    g->qs = queue_state_create(&qc);
    g->next_id = 1;
}

uint64_t gen_put(struct gen *g, const char *queue, uint32_t priority, int64_t delay_ms)
{
    /* Bodies are a function of the job id; ids are dense from 1, so the next is known. */
    uint8_t body[GEN_BODY_MAX];
    struct queue_put_args args = {.queue = queue,
                                  .queue_len = (uint32_t)strlen(queue),
                                  .priority = priority,
                                  .delay_ms = delay_ms,
                                  .max_attempts = -1,
                                  .ttr_ms = 30000,
                                  .body = body};
    args.body_len = gen_body(g->next_id, body, sizeof(body));
    uint64_t id = 0, seq = 0;
    bool dup = false;
    REQUIRE(queue_put(g->qs, &args, g->now, &id, &dup, &seq) == 0);
    REQUIRE(id == g->next_id);
    g->next_id++;
    return id;
}

struct job *gen_reserve(struct gen *g, const char *queue)
{
    struct queue_reserver r;
    memset(&r, 0, sizeof(r));
    r.queues[0] = queue_find(g->qs, queue, (uint32_t)strlen(queue));
    REQUIRE(r.queues[0] != NULL);
    r.queue_count = 1;
    r.count_max = 1;
    r.deadline_ns = g->now.mono_ns;
    r.detach = true;
    struct job *jobs[1];
    return queue_reserve(g->qs, &r, g->now, jobs) == 1 ? jobs[0] : NULL;
}

void gen_commit(struct gen *g)
{
    gen_drain(g);
    queue_durable(g->qs, g->durable_end, g->now);
}

static void gen_checkpoint_done(void *ctx, int error)
{
    int *done = ctx;
    *done = error == 0 ? 1 : -1;
}

static void gen_checkpoint_drop(struct gen *g, bool drop_any)
{
    gen_commit(g);
    uint8_t *payload = NULL;
    uint32_t len = 0;
    REQUIRE(queue_checkpoint_encode(g->qs, &payload, &len) == 0);
    uint64_t drop[64];
    uint32_t drop_count = 0;
    uint32_t count = log_segment_count(g->log);
    uint64_t current = log_current_segment_id(g->log);
    for (uint32_t i = 0; drop_any && i + 1 < count && drop_count < 64; i++) {
        uint64_t id = log_segment_id(g->log, i);
        if (id != current && queue_segment_live(g->qs, id) == 0)
            drop[drop_count++] = id;
    }
    int done = 0;
    REQUIRE(log_checkpoint(g->log, log_next_seq(g->log), payload, len, drop, drop_count,
                           gen_checkpoint_done, &done) == 0);
    free(payload);
    while (done == 0) {
        log_tick(g->log);
        REQUIRE(io_backend_poll(g->io, true) >= 0);
    }
    REQUIRE(done == 1);
}

void gen_checkpoint(struct gen *g)
{
    gen_checkpoint_drop(g, true);
}

void gen_checkpoint_keep(struct gen *g)
{
    gen_checkpoint_drop(g, false);
}

void gen_close(struct gen *g)
{
    if (g->log != NULL)
        REQUIRE(log_close(g->log) == 0);
    g->log = NULL;
    io_backend_destroy(g->io);
    g->io = NULL;
}

void gen_free(struct gen *g)
{
    gen_close(g);
    queue_state_destroy(g->qs);
    check_rmdir(g->dir);
    free(g->dir);
}

void gen_standard(struct gen *g, const char *tag)
{
    gen_open(g, tag, 32 * 1024);
    for (int i = 0; i < GEN_ALPHA_PUTS + GEN_BETA_PUTS; i++) {
        gen_put(g, i % 3 == 2 ? "beta" : "alpha", (uint32_t)(i % 4), 0);
        if (i % 2 == 1)
            gen_commit(g);
    }
    gen_commit(g);
    for (int i = 0; i < 20; i++) {
        struct job *job = gen_reserve(g, "alpha");
        REQUIRE(job != NULL);
        char result[32];
        int n = snprintf(result, sizeof(result), "done-%llu", (unsigned long long)job->id);
        if (i < GEN_ACKED)
            REQUIRE(queue_ack(g->qs, job->id, queue_job_x(job)->lease_token, result, (uint32_t)n,
                              g->now, NULL) == 0);
        else if (i < GEN_ACKED + 3)
            REQUIRE(queue_release(g->qs, job->id, queue_job_x(job)->lease_token, 3600 * 1000,
                                  UINT32_MAX, NULL, 0, g->now, NULL) == 0);
        else
            REQUIRE(queue_bury(g->qs, job->id, queue_job_x(job)->lease_token, "boom", 4, g->now,
                               NULL) == 0);
        if (i % 3 == 0)
            gen_commit(g);
    }
    gen_put(g, "beta", 7, 3600 * 1000);
    gen_commit(g);
}

bool gen_live(struct gen *g, uint64_t id)
{
    struct queue_job_status st;
    return queue_status(g->qs, id, &st) && !job_state_settled(st.state);
}

/* ---- files ---- */

static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY);
    REQUIRE(in >= 0);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    REQUIRE(out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        REQUIRE(write(out, buf, (size_t)n) == n);
    REQUIRE(n == 0);
    close(in);
    close(out);
}

char *gen_copy_dir(const char *dir, const char *tag)
{
    char *copy = check_tmpdir(tag);
    DIR *d = opendir(dir);
    REQUIRE(d != NULL);
    struct dirent *e;
    char a[4096], b[4096];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "LOCK") == 0)
            continue;
        snprintf(a, sizeof(a), "%s/%s", dir, e->d_name);
        snprintf(b, sizeof(b), "%s/%s", copy, e->d_name);
        copy_file(a, b);
    }
    closedir(d);
    return copy;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

uint32_t gen_segments(const char *dir, uint64_t *ids, uint32_t max)
{
    DIR *d = opendir(dir);
    REQUIRE(d != NULL);
    struct dirent *e;
    uint32_t n = 0;
    uint64_t id;
    while ((e = readdir(d)) != NULL)
        if (segment_name_parse(e->d_name, &id) && n < max)
            ids[n++] = id;
    closedir(d);
    qsort(ids, n, sizeof(*ids), u64_cmp);
    return n;
}

char *gen_segment_path(const char *dir, uint64_t segment_id)
{
    char name[SEGMENT_NAME_LEN + 1];
    segment_name(segment_id, name);
    char *path = malloc(strlen(dir) + sizeof(name) + 2);
    REQUIRE(path != NULL);
    sprintf(path, "%s/%s", dir, name);
    return path;
}

uint32_t gen_batches(const char *dir, uint64_t segment_id, struct gen_batch *out, uint32_t max)
{
    char *path = gen_segment_path(dir, segment_id);
    int fd = open(path, O_RDONLY);
    REQUIRE(fd >= 0);
    uint8_t block[BATCH_ALIGN];
    uint32_t n = 0;
    uint64_t off = SEGMENT_HEADER_SIZE;
    /* Batches are seeded with the segment's seed (v2: random, in its header). */
    struct segment_header sh;
    uint64_t seed = segment_id;
    if (pread(fd, block, sizeof(block), 0) == (ssize_t)sizeof(block) &&
        segment_header_check(block, segment_id, &sh) == SEGMENT_OK)
        seed = segment_hash_seed(&sh);
    while (n < max && pread(fd, block, sizeof(block), (off_t)off) == (ssize_t)sizeof(block)) {
        struct batch_header h;
        if (batch_header_check_seeded(block, segment_id, seed, &h) != BATCH_OK ||
            (h.flags & BATCH_FLAG_SEAL) != 0)
            break;
        out[n++] = (struct gen_batch){.offset = off,
                                      .base_seq = h.base_seq,
                                      .record_count = h.record_count,
                                      .total_len = h.total_len,
                                      .codec = h.codec};
        off += h.total_len;
    }
    close(fd);
    free(path);
    return n;
}

static int gen_run_fds(const char *const *argv, char **out, bool with_stderr)
{
    char path[] = "/tmp/spool-gen-out-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    unlink(path);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        dup2(fd, 1);
        if (with_stderr)
            dup2(fd, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    off_t size = lseek(fd, 0, SEEK_END);
    REQUIRE(size >= 0);
    *out = malloc((size_t)size + 1);
    REQUIRE(*out != NULL);
    REQUIRE(pread(fd, *out, (size_t)size, 0) == size);
    (*out)[size] = '\0';
    close(fd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int gen_run(const char *const *argv, char **out)
{
    return gen_run_fds(argv, out, false);
}

int gen_run_all(const char *const *argv, char **out)
{
    return gen_run_fds(argv, out, true);
}

int gen_count_lines(const char *text, const char *needle)
{
    int n = 0;
    const char *line = text;
    while (*line != '\0') {
        const char *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
        const char *hit = strstr(line, needle);
        if (hit != NULL && hit < line + len)
            n++;
        line += len + (end != NULL);
    }
    return n;
}
