/*
 * spool-log against directories written by the real spoold (127.0.0.1 port 0, temp dirs,
 * stopped by pid through the integration harness): verify while the server holds the
 * directory and after it stopped, dump (lz4 batches show the original bodies), explain,
 * stats; replay twice into a fresh server (each live job exactly once, delays kept); salvage
 * whose output spoold starts on, holding every live job.
 */
#include <stdarg.h>
#include <spool/client.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "gen.h"
#include "spoold_harness.h"

/* Small enough that a restart's body reads stay well under the engine's reads in flight. */
#define PUTS 110 /* more live jobs than the log reads at once (64): restart must read them all */
#define ACKS 10
#define LIVE (PUTS - ACKS)
#define BETA_PUTS (PUTS / 3) /* n % 3 == 2 goes to beta */
#define ALPHA_LIVE (PUTS - BETA_PUTS - ACKS) /* the acks are all alpha's */

#define RUN_TEST_ARG(fn, arg)                                                                      \
    do {                                                                                           \
        int before_ = check_failures;                                                              \
        fn(arg);                                                                                   \
        fprintf(stderr, "%s %s\n", check_failures == before_ ? "ok  " : "FAIL", #fn);              \
    } while (0)

static const char *tool;
static const char *const small_segments[] = {"--segment-size", "1m", "--max-job-size", "64k", NULL};

/* Body of the i-th put: mostly compressible (so batches go through lz4), every fifth not. */
static uint32_t body_of(int i, char *buf, uint32_t cap)
{
    uint32_t len = 1500 + (uint32_t)i * 10;
    REQUIRE(len <= cap);
    uint64_t x = (uint64_t)i * 0x9E3779B97F4A7C15ull + 3;
    for (uint32_t k = 0; k < len; k++) {
        if (i % 5 != 0) {
            buf[k] = (char)('A' + (i + k / 32) % 26);
        } else {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[k] = (char)('a' + x % 26);
        }
    }
    return len;
}

/* Index of the put whose body this is, or -1. */
static int body_index(const void *body, size_t len)
{
    char buf[4096];
    for (int i = 0; i < PUTS; i++) {
        uint32_t n = body_of(i, buf, sizeof(buf));
        if (n == len && memcmp(buf, body, n) == 0)
            return i;
    }
    return -1;
}

/* True if out contains the text that fmt and its numbers make. */
static bool contains_line_with(const char *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static bool contains_line_with(const char *out, const char *fmt, ...)
{
    char want[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof(want), fmt, ap);
    va_end(ap);
    return strstr(out, want) != NULL;
}

static uint64_t ids[PUTS];

/* Fill the source server: PUTS jobs in batches of 10 (queue alpha, and beta for every third),
 * the last one delayed an hour; then reserve and ack ACKS jobs of alpha. */
static void fill(struct spoold *s)
{
    spool_client *c;
    REQUIRE(spool_connect(s->addr, 5000, &c) == 0);
    static char bodies[PUTS][4096];
    struct spool_job_spec specs[10];
    struct spool_put_result results[10];
    for (int i = 0; i < PUTS; i += 10) {
        for (int k = 0; k < 10; k++) {
            int n = i + k;
            memset(&specs[k], 0, sizeof(specs[k]));
            specs[k].queue = n % 3 == 2 ? "beta" : "alpha";
            specs[k].body = bodies[n];
            specs[k].body_len = body_of(n, bodies[n], sizeof(bodies[n]));
            specs[k].priority = (uint32_t)(n % 4);
            specs[k].delay_ms = n == PUTS - 1 ? 3600 * 1000 : 0;
        }
        REQUIRE(spool_put_batch(c, specs, 10, results) == 0);
        for (int k = 0; k < 10; k++)
            ids[i + k] = results[k].id;
    }
    const char *alpha[] = {"alpha"};
    struct spool_delivery *d = NULL;
    size_t count = 0;
    REQUIRE(spool_reserve(c, alpha, 1, ACKS, 0, 0, &d, &count) == 0);
    REQUIRE(count == ACKS);
    for (size_t k = 0; k < count; k++)
        REQUIRE(spool_ack(c, d[k].id, d[k].lease, "fine", 4) == 0);
    spool_deliveries_free(d);
    spool_close(c);
}

static int run(char **out, const char *a, const char *b)
{
    const char *argv[] = {tool, a, b, NULL};
    return gen_run(argv, out);
}

static void check_offline_commands(const struct spoold *s)
{
    char *out;
    CHECK_EQ(run(&out, "verify", s->data), 0);
    CHECK(contains_line_with(out, "jobs_live=%d ", LIVE));
    free(out);
    const char *argv[] = {tool, "dump", s->data, "--type", "put", "--bodies", NULL};
    CHECK_EQ(gen_run(argv, &out), 0);
    CHECK_EQ(gen_count_lines(out, "\"type\":\"PUT\""), PUTS);
    CHECK(strstr(out, "\"body\":\"QUJD") != NULL || strstr(out, "\"body\":\"") != NULL);
    free(out);
    char id[32];
    snprintf(id, sizeof(id), "%llu", (unsigned long long)ids[0]);
    const char *argv2[] = {tool, "explain", s->data, id, NULL};
    CHECK_EQ(gen_run(argv2, &out), 0);
    CHECK(strstr(out, " ACK result=\"fine\"") != NULL);
    CHECK(strstr(out, "state: done") != NULL);
    free(out);
    CHECK_EQ(run(&out, "stats", s->data), 0);
    CHECK(contains_line_with(out, "queue=beta live_jobs=%d ", BETA_PUTS));
    CHECK(contains_line_with(out, "queue=alpha live_jobs=%d ", ALPHA_LIVE));
    free(out);
    CHECK_EQ(run(&out, "why-retained", s->data), 0);
    CHECK(strstr(out, "reason=live_jobs") != NULL);
    free(out);
}

/* The bodies in the dump decode to the originals: compare base64 of each put. */
static void check_dump_bodies(const struct spoold *s)
{
    uint64_t segs[64];
    uint32_t n = gen_segments(s->data, segs, 64);
    int lz4 = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct gen_batch b[256];
        uint32_t count = gen_batches(s->data, segs[i], b, 256);
        for (uint32_t k = 0; k < count; k++)
            lz4 += b[k].codec == 1;
    }
    CHECK(lz4 > 0); /* else this test would not show lz4 bodies */
    char *out;
    const char *argv[] = {tool, "dump", s->data, "--type", "PUT", "--bodies", NULL};
    REQUIRE(gen_run(argv, &out) == 0);
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    int matched = 0;
    for (int i = 0; i < PUTS; i++) {
        char body[4096], enc[8192];
        uint32_t len = body_of(i, body, sizeof(body));
        char *o = enc;
        uint32_t k = 0;
        for (; k + 3 <= len; k += 3) {
            uint32_t v = (uint32_t)(uint8_t)body[k] << 16 | (uint32_t)(uint8_t)body[k + 1] << 8 |
                         (uint8_t)body[k + 2];
            *o++ = al[v >> 18];
            *o++ = al[(v >> 12) & 63];
            *o++ = al[(v >> 6) & 63];
            *o++ = al[v & 63];
        }
        *o = '\0'; /* the prefix of whole triples is enough to identify the body */
        matched += strstr(out, enc) != NULL;
    }
    CHECK_EQ(matched, PUTS);
    free(out);
}

/* Every job on the target once: reserve everything ready and check bodies and counts. */
static void check_target(const struct spoold *t, int want_ready, int want_delayed)
{
    spool_client *c;
    REQUIRE(spool_connect(t->addr, 5000, &c) == 0);
    struct spool_stats *st = NULL;
    REQUIRE(spool_stats(c, NULL, &st) == 0);
    CHECK_EQ(st->ready, (uint64_t)want_ready);
    CHECK_EQ(st->delayed, (uint64_t)want_delayed);
    spool_stats_free(st);
    const char *queues[] = {"alpha", "beta"};
    struct spool_delivery *d = NULL;
    size_t count = 0;
    REQUIRE(spool_reserve(c, queues, 2, 1000, 0, 0, &d, &count) == 0);
    CHECK_EQ(count, (size_t)want_ready);
    int seen[PUTS] = {0};
    for (size_t k = 0; k < count; k++) {
        int i = body_index(d[k].body, d[k].body_len);
        CHECK(i >= 0);
        if (i >= 0) {
            CHECK_EQ(seen[i], 0);
            seen[i]++;
            CHECK_EQ(d[k].priority, (uint32_t)(i % 4));
            CHECK_EQ(strcmp(d[k].queue, i % 3 == 2 ? "beta" : "alpha"), 0);
        }
    }
    spool_deliveries_free(d);
    spool_close(c);
}

static void test_replay_twice(const struct spoold *src)
{
    struct spoold t;
    REQUIRE(spoold_start(&t, "tools-replay", NULL) == 0);
    char *out;
    const char *argv[] = {tool, "replay", src->data, "--to", t.addr, NULL};
    CHECK_EQ(gen_run_all(argv, &out), 0);
    CHECK(contains_line_with(out, "put=%d already_present=0", LIVE));
    free(out);
    CHECK_EQ(gen_run_all(argv, &out), 0);
    CHECK(contains_line_with(out, "put=0 already_present=%d", LIVE));
    free(out);
    check_target(&t, LIVE - 1, 1);
    /* --all re-puts every PUT of the range with the same keys: the beta jobs are all there
     * already; of alpha, only the ACKS acked ones are new. */
    const char *argv2[] = {tool,    "replay",  src->data, "--to", t.addr,
                           "--all", "--queue", "beta",    NULL};
    CHECK_EQ(gen_run_all(argv2, &out), 0);
    CHECK(contains_line_with(out, "put=0 already_present=%d", BETA_PUTS));
    free(out);
    const char *argv3[] = {tool,    "replay",  src->data, "--to", t.addr,
                           "--all", "--queue", "alpha",   NULL};
    CHECK_EQ(gen_run_all(argv3, &out), 0);
    CHECK(contains_line_with(out, "put=%d already_present=%d", ACKS, ALPHA_LIVE));
    free(out);
    /* Every job there now carries one of the original bodies (the 10 new ones included). */
    spool_client *c;
    REQUIRE(spool_connect(t.addr, 5000, &c) == 0);
    const char *alpha[] = {"alpha"};
    struct spool_delivery *d = NULL;
    size_t count = 0;
    REQUIRE(spool_reserve(c, alpha, 1, 1000, 0, 0, &d, &count) == 0);
    CHECK_EQ(count, (size_t)(ALPHA_LIVE - 1 + ACKS)); /* the last put is delayed */
    for (size_t k = 0; k < count; k++)
        CHECK(body_index(d[k].body, d[k].body_len) >= 0);
    spool_deliveries_free(d);
    spool_close(c);
    const char *argv4[] = {tool, "replay", src->data, "--to", "127.0.0.1:1", NULL};
    CHECK_EQ(gen_run_all(argv4, &out), 2);
    CHECK(strstr(out, "cannot connect") != NULL);
    free(out);
    CHECK_EQ(spoold_stop(&t), 0);
    spoold_cleanup(&t);
}

static void empty_dir(const char *path)
{
    DIR *d = opendir(path);
    REQUIRE(d != NULL);
    struct dirent *e;
    char file[1200];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
        REQUIRE(unlink(file) == 0);
    }
    closedir(d);
}

static void test_salvage_starts_under_spoold(const struct spoold *src)
{
    struct spoold t;
    REQUIRE(spoold_start(&t, "tools-salvage", small_segments) == 0);
    REQUIRE(spoold_stop(&t) == 0);
    empty_dir(t.data);
    char *out;
    const char *argv[] = {tool, "salvage", src->data, "--out", t.data, NULL};
    CHECK_EQ(gen_run(argv, &out), 0);
    CHECK(contains_line_with(out, "summary kept_jobs=%d lost_jobs=0 lost_ranges=0", LIVE));
    free(out);
    REQUIRE(spoold_restart(&t, small_segments) == 0);
    check_target(&t, LIVE - 1, 1);
    /* New ids continue after the original ones. */
    spool_client *c;
    REQUIRE(spool_connect(t.addr, 5000, &c) == 0);
    struct spool_job_spec spec = {.queue = "alpha", .body = "x", .body_len = 1};
    uint64_t id = 0;
    REQUIRE(spool_put(c, &spec, &id) == 0);
    CHECK(id > ids[PUTS - 1]);
    spool_close(c);
    CHECK_EQ(spoold_stop(&t), 0);
    spoold_cleanup(&t);
}

/* A server's directory with a flipped bit in a batch of puts: skip-corrupt salvage starts under
 * spoold with exactly the jobs its report says it kept, each with its original body. */
/* Damage in the log's first batch: no PUT before the region bounds the guess of the jobs it
 * held, and a server's ids start near now_ms * 1024 (1.8e15), so verify once walked every id
 * from 1 up to the first PUT after it (months of CPU; seen as a hang of the verify-while-
 * writing test when its first verify read a block as it was written). It finishes, and reports
 * the damage. */
static void test_verify_first_batch_damaged(const struct spoold *src)
{
    char *copy = gen_copy_dir(src->data, "tools-firstdmg");
    struct gen_batch b[256];
    REQUIRE(gen_batches(copy, 1, b, 256) >= 2);
    char *path = gen_segment_path(copy, 1);
    FILE *f = fopen(path, "r+b");
    REQUIRE(f != NULL);
    REQUIRE(fseek(f, (long)(b[0].offset + 100), SEEK_SET) == 0);
    int c = fgetc(f);
    REQUIRE(fseek(f, (long)(b[0].offset + 100), SEEK_SET) == 0);
    fputc(c ^ 0x20, f);
    fclose(f);
    free(path);
    const char *argv[] = {"/usr/bin/timeout", "30", tool, "verify", copy, NULL};
    char *out;
    CHECK_EQ(gen_run(argv, &out), 2); /* corruption found; 124 if it ran out of time */
    CHECK(strstr(out, "CORRUPTION") != NULL);
    free(out);
    check_rmdir(copy);
    free(copy);
}

static void test_salvage_damaged_starts_under_spoold(const struct spoold *src)
{
    char *copy = gen_copy_dir(src->data, "tools-srvdmg");
    struct gen_batch b[256];
    uint32_t count = gen_batches(copy, 1, b, 256);
    REQUIRE(count >= 4);
    uint32_t k = 1;
    while (k + 1 < count && b[k].record_count < 10) /* a batch of one put request */
        k++;
    REQUIRE(k + 1 < count);
    char *path = gen_segment_path(copy, 1);
    FILE *f = fopen(path, "r+b");
    REQUIRE(f != NULL);
    REQUIRE(fseek(f, (long)(b[k].offset + 100), SEEK_SET) == 0);
    int c = fgetc(f);
    REQUIRE(fseek(f, (long)(b[k].offset + 100), SEEK_SET) == 0);
    fputc(c ^ 0x20, f);
    fclose(f);
    free(path);
    char *out;
    CHECK_EQ(run(&out, "verify", copy), 2);
    free(out);
    struct spoold t;
    REQUIRE(spoold_start(&t, "tools-salvage2", small_segments) == 0);
    REQUIRE(spoold_stop(&t) == 0);
    empty_dir(t.data);
    const char *argv[] = {tool, "salvage", copy, "--out", t.data, "--mode", "skip-corrupt", NULL};
    CHECK_EQ(gen_run(argv, &out), 0);
    const char *summary = strstr(out, "summary kept_jobs=");
    REQUIRE(summary != NULL);
    int kept = atoi(summary + strlen("summary kept_jobs="));
    CHECK(kept < LIVE && kept >= LIVE - 10);
    CHECK(strstr(out, "lost_range seq=") != NULL);
    free(out);
    REQUIRE(spoold_restart(&t, small_segments) == 0);
    spool_client *cl;
    REQUIRE(spool_connect(t.addr, 5000, &cl) == 0);
    struct spool_stats *st = NULL;
    REQUIRE(spool_stats(cl, NULL, &st) == 0);
    CHECK_EQ(st->ready + st->delayed, (uint64_t)kept);
    spool_stats_free(st);
    const char *queues[] = {"alpha", "beta"};
    struct spool_delivery *d = NULL;
    size_t n = 0;
    REQUIRE(spool_reserve(cl, queues, 2, 1000, 0, 0, &d, &n) == 0);
    int seen[PUTS] = {0};
    for (size_t i = 0; i < n; i++) {
        int idx = body_index(d[i].body, d[i].body_len);
        CHECK(idx >= 0);
        if (idx >= 0)
            CHECK_EQ(seen[idx]++, 0);
    }
    spool_deliveries_free(d);
    spool_close(cl);
    CHECK_EQ(spoold_stop(&t), 0);
    spoold_cleanup(&t);
    check_rmdir(copy);
    free(copy);
}

/* verify while the server is writing: it may see a torn tail (a batch being written, a segment
 * being created), never damage, and never fails to read. A child process puts jobs (bounded
 * in count and time) while verify runs again and again. */
#define BUSY_PUTS 1000
#define BUSY_VERIFIES_MAX 40

static void test_verify_while_writing(void)
{
    struct spoold s;
    const char *const args[] = {
        "--segment-size", "1m", "--max-job-size", "64k", "--checkpoint-bytes", "1m", NULL};
    REQUIRE(spoold_start(&s, "tools-busy", args) == 0);
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        spool_client *c;
        if (spool_connect(s.addr, 5000, &c) != 0)
            _exit(1);
        static char body[2000];
        memset(body, 'x', sizeof(body));
        struct spool_job_spec spec = {.queue = "busy", .body = body, .body_len = sizeof(body)};
        for (int i = 0; i < BUSY_PUTS; i++) {
            if (spool_put(c, &spec, NULL) != 0)
                _exit(1);
            if (i % 4 == 0) { /* settle most of them, so retention drops segments */
                const char *q[] = {"busy"};
                struct spool_delivery *d = NULL;
                size_t n = 0;
                if (spool_reserve(c, q, 1, 4, 0, 0, &d, &n) == 0)
                    for (size_t k = 0; k < n; k++)
                        (void)spool_ack(c, d[k].id, d[k].lease, NULL, 0);
                spool_deliveries_free(d);
            }
        }
        spool_close(c);
        _exit(0);
    }
    int corrupt = 0, unreadable = 0, torn = 0, runs = 0, status = 0;
    bool child_done = false;
    while (!child_done && runs < BUSY_VERIFIES_MAX) {
        char *out;
        int code = run(&out, "verify", s.data);
        runs++;
        if (code == 2) {
            corrupt++;
            fprintf(stderr, "verify while writing:\n%s", out);
        }
        unreadable += code == 3;
        torn += code == 1;
        free(out);
        pid_t w = waitpid(child, &status, WNOHANG);
        REQUIRE(w >= 0);
        child_done = w == child;
    }
    if (!child_done)
        REQUIRE(waitpid(child, &status, 0) == child);
    fprintf(stderr, "verify ran %d times while writing (%d torn tails seen)\n", runs, torn);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_EQ(corrupt, 0);
    CHECK_EQ(unreadable, 0);
    CHECK_EQ(spoold_stop(&s), 0);
    char *out;
    CHECK_EQ(run(&out, "verify", s.data), 0);
    free(out);
    spoold_cleanup(&s);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_spool_log_server PATH-TO-spool-log\n");
        return 1;
    }
    if (getenv("SPOOLD") == NULL) {
        fprintf(stderr, "SPOOLD not set: skipped\n");
        return 77;
    }
    tool = argv[1];
    struct spoold src;
    REQUIRE(spoold_start(&src, "tools-src", small_segments) == 0);
    fill(&src);
    /* While the server holds the directory: read-only, no lock. */
    char *out;
    int code = run(&out, "verify", src.data);
    CHECK_EQ(code, 0);
    CHECK(contains_line_with(out, "jobs_live=%d ", LIVE));
    free(out);
    REQUIRE(spoold_stop(&src) == 0);
    RUN_TEST_ARG(check_offline_commands, &src);
    RUN_TEST_ARG(check_dump_bodies, &src);
    RUN_TEST_ARG(test_replay_twice, &src);
    RUN_TEST_ARG(test_salvage_starts_under_spoold, &src);
    RUN_TEST_ARG(test_salvage_damaged_starts_under_spoold, &src);
    RUN_TEST_ARG(test_verify_first_batch_damaged, &src);
    spoold_cleanup(&src);
    RUN_TEST(test_verify_while_writing);
    return check_exit();
}
