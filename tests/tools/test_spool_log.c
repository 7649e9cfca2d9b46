/*
 * spool-log on directories written by the engine the way spoold writes them (gen.c): every
 * command on a clean directory, verify on each kind of damage (kind and location), dump of
 * lz4 batches, and salvage whose output opens cleanly with log_open and holds every
 * undamaged live job with its body.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch.h"
#include "check.h"
#include "gen.h"

static const char *tool;
static struct gen clean; /* the standard workload, shared read-only by the tests */

static int run2(char **out, const char *a, const char *b)
{
    const char *argv[] = {tool, a, b, NULL};
    return gen_run(argv, out);
}

static void b64(const uint8_t *p, uint32_t len, char *out)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint32_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *out++ = al[v >> 18];
        *out++ = al[(v >> 12) & 63];
        *out++ = al[(v >> 6) & 63];
        *out++ = al[v & 63];
    }
    if (len - i > 0) {
        uint32_t v = (uint32_t)p[i] << 16 | (len - i == 2 ? (uint32_t)p[i + 1] << 8 : 0);
        *out++ = al[v >> 18];
        *out++ = al[(v >> 12) & 63];
        *out++ = len - i == 2 ? al[(v >> 6) & 63] : '=';
        *out++ = '=';
    }
    *out = '\0';
}

static void test_verify_clean(void)
{
    char *out;
    CHECK_EQ(run2(&out, "verify", clean.dir), 0);
    char want[64];
    snprintf(want, sizeof(want), "jobs_live=%d ", GEN_LIVE);
    CHECK(strncmp(out, "OK segments=", 12) == 0);
    CHECK(strstr(out, want) != NULL);
    CHECK(strstr(out, "CORRUPTION") == NULL);
    free(out);
}

static void test_dump_filters_and_lz4_bodies(void)
{
    /* The workload must have produced lz4 batches, or this test proves nothing. */
    uint64_t ids[64];
    uint32_t n = gen_segments(clean.dir, ids, 64);
    REQUIRE(n >= 3);
    int lz4 = 0;
    for (uint32_t s = 0; s < n; s++) {
        struct gen_batch b[64];
        uint32_t count = gen_batches(clean.dir, ids[s], b, 64);
        for (uint32_t i = 0; i < count; i++)
            lz4 += b[i].codec == BATCH_CODEC_LZ4;
    }
    CHECK(lz4 > 0);
    char *out;
    const char *argv[] = {tool, "dump", clean.dir, "--type", "put", "--bodies", NULL};
    CHECK_EQ(gen_run(argv, &out), 0);
    CHECK_EQ(gen_count_lines(out, "\"type\":\"PUT\""), GEN_PUTS);
    for (uint64_t id = 1; id <= GEN_PUTS; id++) {
        uint8_t body[GEN_BODY_MAX];
        uint32_t len = gen_body(id, body, sizeof(body));
        char enc[GEN_BODY_MAX * 2], want[GEN_BODY_MAX * 2 + 64];
        b64(body, len, enc);
        snprintf(want, sizeof(want), "\"job\":%llu,", (unsigned long long)id);
        const char *line = strstr(out, want);
        REQUIRE(line != NULL);
        snprintf(want, sizeof(want), "\"body_len\":%u,\"body\":\"%s\"}", len, enc);
        const char *eol = strchr(line, '\n');
        const char *hit = strstr(line, want);
        CHECK(hit != NULL && hit < eol);
    }
    free(out);
    const char *argv2[] = {tool, "dump", clean.dir, "--queue", "beta", "--type", "PUT", NULL};
    CHECK_EQ(gen_run(argv2, &out), 0);
    CHECK_EQ(gen_count_lines(out, "\"queue\":\"beta\""), GEN_BETA_PUTS + 1);
    CHECK_EQ(gen_count_lines(out, "\"seq\""), GEN_BETA_PUTS + 1);
    free(out);
    const char *argv3[] = {tool, "dump", clean.dir, "--from", "5", "--to", "9", NULL};
    CHECK_EQ(gen_run(argv3, &out), 0);
    CHECK_EQ(gen_count_lines(out, "\"seq\""), 5);
    CHECK(strstr(out, "\"seq\":5,") != NULL && strstr(out, "\"seq\":9,") != NULL);
    CHECK(strstr(out, "\"body\"") == NULL);
    free(out);
    const char *argv4[] = {tool, "dump", clean.dir, "--type", "nonsense", NULL};
    CHECK_EQ(gen_run(argv4, &out), 3);
    free(out);
}

/* Find the first job with a record of type in the generator's state: acked / dead. */
static void test_explain(void)
{
    char *out;
    /* Job 1 was the first reserved from alpha (priority 0, lowest id): acked. */
    const char *argv[] = {tool, "explain", clean.dir, "1", NULL};
    CHECK_EQ(gen_run(argv, &out), 0);
    CHECK(strstr(out, " PUT queue=alpha") != NULL);
    CHECK(strstr(out, " LEASE attempt=1") != NULL);
    CHECK(strstr(out, " ACK result=\"done-1\"") != NULL);
    CHECK(strstr(out, "state: done") != NULL);
    free(out);
    /* The last put is delayed in beta. */
    char id[32];
    snprintf(id, sizeof(id), "%d", GEN_PUTS);
    const char *argv2[] = {tool, "explain", clean.dir, id, NULL};
    CHECK_EQ(gen_run(argv2, &out), 0);
    CHECK(strstr(out, "state: delayed queue=beta") != NULL);
    free(out);
    const char *argv3[] = {tool, "explain", clean.dir, "99999", NULL};
    CHECK_EQ(gen_run(argv3, &out), 1);
    CHECK(strstr(out, "state: unknown") != NULL);
    free(out);
    /* Some job of the workload is dead with reason boom. */
    int dead_seen = 0;
    for (uint64_t j = 1; j <= GEN_PUTS && !dead_seen; j++) {
        struct queue_job_status st;
        if (!queue_status(clean.qs, j, &st) || st.state != JOB_DEAD)
            continue;
        snprintf(id, sizeof(id), "%llu", (unsigned long long)j);
        const char *argv4[] = {tool, "explain", clean.dir, id, NULL};
        CHECK_EQ(gen_run(argv4, &out), 0);
        CHECK(strstr(out, " BURY reason=\"boom\"") != NULL);
        CHECK(strstr(out, "state: dead") != NULL);
        free(out);
        dead_seen = 1;
    }
    CHECK(dead_seen);
}

static void test_stats_and_why_retained(void)
{
    char *out;
    CHECK_EQ(run2(&out, "stats", clean.dir), 0);
    char want[128];
    snprintf(want, sizeof(want), "queue=alpha live_jobs=%d ", GEN_ALPHA_PUTS - GEN_ACKED);
    CHECK(strstr(out, want) != NULL);
    snprintf(want, sizeof(want), "queue=beta live_jobs=%d ", GEN_BETA_PUTS + 1);
    CHECK(strstr(out, want) != NULL);
    CHECK(strstr(out, "ack=15 ") != NULL); /* counted once per queue line, alpha's */
    CHECK(strstr(out, "compression_ratio=") != NULL);
    uint64_t ids[64];
    uint32_t n = gen_segments(clean.dir, ids, 64);
    CHECK_EQ(gen_count_lines(out, "segment="), (int)n);
    free(out);
    CHECK_EQ(run2(&out, "why-retained", clean.dir), 0);
    CHECK_EQ(gen_count_lines(out, "segment="), (int)n);
    CHECK(strstr(out, "reason=live_jobs") != NULL);
    CHECK(strstr(out, "queue=alpha state=dead") != NULL);
    free(out);
}

/* A checkpoint that drops segments: why-retained distinguishes the reasons, and the tools
 * still see every live job (the checkpoint holds what the dropped segments said). */
static void put_ack(struct gen *g, int count)
{
    for (int i = 0; i < count; i++) {
        gen_put(g, "q", 0, 0);
        gen_commit(g);
        struct job *job = gen_reserve(g, "q");
        REQUIRE(job != NULL);
        REQUIRE(queue_ack(g->qs, job->id, queue_job_x(job)->lease_token, NULL, 0, g->now, NULL) ==
                0);
        gen_commit(g);
    }
}

/* dump shows a QUEUE_META's pause and whether it is a timed one (beanstalkd's pause-tube,
 * which replay does not restore). */
static void test_dump_queue_meta(void)
{
    struct gen g;
    gen_open(&g, "tools-meta", 32 * 1024);
    struct record_meta meta = {.name = "held", .name_len = 4, .paused = true,
                               .pause_timed = true, .default_max_attempts = UINT32_MAX};
    REQUIRE(queue_set_meta(g.qs, &meta, g.now, NULL) == 0);
    meta = (struct record_meta){.name = "kept", .name_len = 4, .paused = true,
                                .default_max_attempts = UINT32_MAX};
    REQUIRE(queue_set_meta(g.qs, &meta, g.now, NULL) == 0);
    gen_commit(&g);
    gen_close(&g);
    char *out;
    const char *argv[] = {tool, "dump", g.dir, "--type", "queue_meta", NULL};
    CHECK_EQ(gen_run(argv, &out), 0);
    CHECK(strstr(out, "\"queue\":\"held\",\"paused\":true,\"pause_timed\":true") != NULL);
    CHECK(strstr(out, "\"queue\":\"kept\",\"paused\":true,\"pause_timed\":false") != NULL);
    free(out);
    gen_free(&g);
}

static void test_checkpointed_directory(void)
{
    struct gen g;
    gen_open(&g, "tools-ckpt", 32 * 1024);
    gen_put(&g, "keep", 0, 0); /* job 1 stays live and pins the first segment */
    gen_commit(&g);
    put_ack(&g, 40);
    gen_checkpoint(&g);
    put_ack(&g, 30); /* seals the segment that was current at the checkpoint */
    gen_put(&g, "keep", 0, 0);
    gen_commit(&g);
    gen_close(&g);
    char *out;
    CHECK_EQ(run2(&out, "verify", g.dir), 0);
    CHECK(strstr(out, "jobs_live=2 ") != NULL);
    free(out);
    CHECK_EQ(run2(&out, "why-retained", g.dir), 0);
    /* One small job in a 32 KiB segment: far below the compaction threshold. */
    CHECK(strstr(out, "segment=1 retained=yes reason=waiting_for_compaction live_jobs=1 ") !=
          NULL);
    CHECK(strstr(out, "compaction=waiting threshold_percent=25 queues=keep\n") != NULL);
    CHECK(strstr(out, "  job=1 queue=keep state=ready") != NULL);
    CHECK(strstr(out, "reason=newer_than_checkpoint") != NULL);
    uint64_t ids[64];
    uint32_t n = gen_segments(g.dir, ids, 64);
    CHECK_EQ(gen_count_lines(out, "segment="), (int)n);
    CHECK_EQ(gen_count_lines(out, "reason=live_jobs"), 1); /* the current one's job */
    CHECK_EQ(gen_count_lines(out, "compaction=no_current"), 1);
    REQUIRE(n >= 3);
    CHECK(ids[1] > 40); /* the segments between were dropped by the checkpoint */
    free(out);
    /* A job whose records were all dropped with their segments: seq 2 + 3 (j - 2) is its
     * PUT, past segment 1's end and before the next segment on disk. */
    uint64_t j = 2 + (ids[1] - 2) / 3 - 1;
    char id[32];
    snprintf(id, sizeof(id), "%llu", (unsigned long long)j);
    const char *argv[] = {tool, "explain", g.dir, id, NULL};
    CHECK_EQ(gen_run(argv, &out), 1);
    CHECK(strstr(out, "state: unknown") != NULL);
    free(out);
    gen_free(&g);
}

/* A checkpoint that dropped nothing: the sealed segments below its anchor with no live job
 * are named deletable. */
static void test_why_retained_deletable(void)
{
    struct gen g;
    gen_open(&g, "tools-deletable", 32 * 1024);
    put_ack(&g, 30);
    gen_checkpoint_keep(&g);
    gen_put(&g, "q", 0, 0);
    gen_commit(&g);
    gen_close(&g);
    char *out;
    CHECK_EQ(run2(&out, "why-retained", g.dir), 0);
    uint64_t ids[64];
    uint32_t n = gen_segments(g.dir, ids, 64);
    REQUIRE(n >= 3);
    CHECK(strstr(out, "segment=1 retained=no reason=deletable") != NULL);
    CHECK(gen_count_lines(out, "retained=no reason=deletable") >= (int)n - 2);
    free(out);
    char seg[32];
    snprintf(seg, sizeof(seg), "%llu", (unsigned long long)ids[n - 1]);
    const char *argv[] = {tool, "why-retained", g.dir, seg, NULL};
    CHECK_EQ(gen_run(argv, &out), 0);
    CHECK_EQ(gen_count_lines(out, "segment="), 1);
    CHECK(strstr(out, "retained=yes reason=live_jobs live_jobs=1") != NULL);
    free(out);
    const char *argv2[] = {tool, "why-retained", g.dir, "999999", NULL};
    CHECK_EQ(gen_run(argv2, &out), 1);
    free(out);
    gen_free(&g);
}

/* ---- damage ---- */

struct target {
    char *dir;
    uint64_t segment;
    struct gen_batch batch;
    uint64_t other_segment;
    struct gen_batch other;
};

/* A copy of the clean directory and a batch in the middle of a sealed segment. */
static void target_pick(struct target *t, const char *tag)
{
    t->dir = gen_copy_dir(clean.dir, tag);
    uint64_t ids[64];
    uint32_t n = gen_segments(t->dir, ids, 64);
    REQUIRE(n >= 3);
    struct gen_batch b[64];
    uint32_t count = gen_batches(t->dir, ids[1], b, 64);
    REQUIRE(count >= 3);
    t->segment = ids[1];
    t->batch = b[1];
    count = gen_batches(t->dir, ids[2], b, 64);
    REQUIRE(count >= 1);
    t->other_segment = ids[2];
    t->other = b[0];
}

static void file_patch(const char *dir, uint64_t segment, uint64_t offset, const void *bytes,
                       size_t len)
{
    char *path = gen_segment_path(dir, segment);
    int fd = open(path, O_RDWR);
    REQUIRE(fd >= 0);
    REQUIRE(pwrite(fd, bytes, len, (off_t)offset) == (ssize_t)len);
    close(fd);
    free(path);
}

static void file_read(const char *dir, uint64_t segment, uint64_t offset, void *bytes, size_t len)
{
    char *path = gen_segment_path(dir, segment);
    int fd = open(path, O_RDONLY);
    REQUIRE(fd >= 0);
    REQUIRE(pread(fd, bytes, len, (off_t)offset) == (ssize_t)len);
    close(fd);
    free(path);
}

/* verify exits with code and prints a line with prefix, location and kind. */
static char *verify_expect(const char *dir, int code, const char *prefix, uint64_t segment,
                           uint64_t offset, const char *kind)
{
    char *out;
    CHECK_EQ(run2(&out, "verify", dir), code);
    char want[256];
    snprintf(want, sizeof(want), "%s segment=%llu offset=%llu seq=", prefix,
             (unsigned long long)segment, (unsigned long long)offset);
    const char *line = strstr(out, want);
    if (line == NULL)
        fprintf(stderr, "want '%s' in:\n%s", want, out);
    CHECK(line != NULL);
    snprintf(want, sizeof(want), "kind=%s ", kind);
    CHECK(line != NULL && strstr(line, want) != NULL);
    return out;
}

static void test_verify_bit_flip(void)
{
    struct target t;
    target_pick(&t, "tools-flip");
    uint8_t byte;
    file_read(t.dir, t.segment, t.batch.offset + BATCH_HEADER_SIZE + 10, &byte, 1);
    byte ^= 0x10;
    file_patch(t.dir, t.segment, t.batch.offset + BATCH_HEADER_SIZE + 10, &byte, 1);
    char *out = verify_expect(t.dir, 2, "CORRUPTION", t.segment, t.batch.offset, "bad_payload");
    char want[96];
    snprintf(want, sizeof(want), "seq=%llu..%llu ", (unsigned long long)t.batch.base_seq,
             (unsigned long long)(t.batch.base_seq + t.batch.record_count - 1));
    CHECK(strstr(out, want) != NULL);
    CHECK(strstr(out, "jobs_affected=0 ") == NULL);
    CHECK_EQ(gen_count_lines(out, "CORRUPTION"), 1); /* one region, not one per symptom */
    free(out);
    /* Resync: every record but the damaged batch's is still dumped. */
    const char *argv[] = {tool, "dump", t.dir, NULL};
    CHECK_EQ(gen_run(argv, &out), 0);
    char *all;
    const char *argv2[] = {tool, "dump", clean.dir, NULL};
    CHECK_EQ(gen_run(argv2, &all), 0);
    CHECK_EQ(gen_count_lines(out, "\"seq\""),
             gen_count_lines(all, "\"seq\"") - (int)t.batch.record_count);
    free(all);
    free(out);
    check_rmdir(t.dir);
    free(t.dir);
}

static void test_verify_zeroed_block(void)
{
    struct target t;
    target_pick(&t, "tools-zero");
    uint8_t zero[BATCH_ALIGN];
    memset(zero, 0, sizeof(zero));
    file_patch(t.dir, t.segment, t.batch.offset, zero, sizeof(zero));
    char *out = verify_expect(t.dir, 2, "CORRUPTION", t.segment, t.batch.offset, "bad_header");
    char want[96];
    snprintf(want, sizeof(want), "seq=%llu..%llu ", (unsigned long long)t.batch.base_seq,
             (unsigned long long)(t.batch.base_seq + t.batch.record_count - 1));
    CHECK(strstr(out, want) != NULL);
    free(out);
    check_rmdir(t.dir);
    free(t.dir);
}

static void test_verify_misplaced_block(void)
{
    struct target t;
    target_pick(&t, "tools-misplaced");
    uint8_t block[BATCH_ALIGN];
    file_read(t.dir, t.other_segment, t.other.offset, block, sizeof(block));
    file_patch(t.dir, t.segment, t.batch.offset, block, sizeof(block));
    char *out = verify_expect(t.dir, 2, "CORRUPTION", t.segment, t.batch.offset, "bad_header");
    free(out);
    check_rmdir(t.dir);
    free(t.dir);
}

static void test_verify_truncated_tail(void)
{
    char *dir = gen_copy_dir(clean.dir, "tools-torn");
    uint64_t ids[64];
    uint32_t n = gen_segments(dir, ids, 64);
    struct gen_batch b[64];
    uint32_t count = gen_batches(dir, ids[n - 1], b, 64);
    REQUIRE(count >= 1);
    char *path = gen_segment_path(dir, ids[n - 1]);
    REQUIRE(truncate(path, (off_t)(b[count - 1].offset + 100)) == 0);
    free(path);
    char *out = verify_expect(dir, 1, "TORN_TAIL", ids[n - 1], b[count - 1].offset, "torn_tail");
    CHECK(strstr(out, "CORRUPTION") == NULL);
    CHECK(strstr(out, "\nTORN segments=") != NULL);
    free(out);
    check_rmdir(dir);
    free(dir);
}

static void test_verify_missing_segment(void)
{
    char *dir = gen_copy_dir(clean.dir, "tools-missing");
    uint64_t ids[64];
    uint32_t n = gen_segments(dir, ids, 64);
    REQUIRE(n >= 3);
    char *path = gen_segment_path(dir, ids[1]);
    REQUIRE(unlink(path) == 0);
    free(path);
    char *out = verify_expect(dir, 2, "CORRUPTION", ids[1], 0, "missing_segment");
    char want[96];
    snprintf(want, sizeof(want), "seq=%llu..%llu ", (unsigned long long)ids[1],
             (unsigned long long)(ids[2] - 1));
    CHECK(strstr(out, want) != NULL);
    CHECK(strstr(out, "jobs_affected=0 ") == NULL); /* the PUTs in it are inferred */
    free(out);
    check_rmdir(dir);
    free(dir);
}

/* A stale older copy of a block: batch k's whole block written again where batch k+1 was
 * (both single-block batches). It verifies, but its seqs are behind: a seq gap there, and
 * exactly batch k+1's seqs are lost. */
static void test_verify_stale_block(void)
{
    char *dir = gen_copy_dir(clean.dir, "tools-stale");
    uint64_t ids[64];
    uint32_t n = gen_segments(dir, ids, 64);
    struct gen_batch b[64];
    uint32_t count = gen_batches(dir, ids[1], b, 64);
    uint32_t k = 0;
    while (k + 2 < count && (b[k].total_len != BATCH_ALIGN || b[k + 1].total_len != BATCH_ALIGN))
        k++;
    REQUIRE(n >= 3 && k + 2 < count);
    uint8_t block[BATCH_ALIGN];
    file_read(dir, ids[1], b[k].offset, block, sizeof(block));
    file_patch(dir, ids[1], b[k + 1].offset, block, sizeof(block));
    char *out = verify_expect(dir, 2, "CORRUPTION", ids[1], b[k + 1].offset, "seq_gap");
    char want[96];
    snprintf(want, sizeof(want), "seq=%llu..%llu ", (unsigned long long)b[k + 1].base_seq,
             (unsigned long long)(b[k + 1].base_seq + b[k + 1].record_count - 1));
    CHECK(strstr(out, want) != NULL);
    CHECK_EQ(gen_count_lines(out, "CORRUPTION"), 1);
    free(out);
    check_rmdir(dir);
    free(dir);
}

/* The newest segment removed (after kill -9, before any checkpoint: issue 9): the segment
 * before it is sealed and names it, so verify reports it missing (it used to say OK). */
static void test_verify_missing_newest_segment(void)
{
    char *dir = gen_copy_dir(clean.dir, "tools-rmnewest");
    uint64_t ids[64];
    uint32_t n = gen_segments(dir, ids, 64);
    REQUIRE(n >= 3);
    char *path = gen_segment_path(dir, ids[n - 1]);
    REQUIRE(unlink(path) == 0);
    free(path);
    char *out = verify_expect(dir, 2, "CORRUPTION", ids[n - 1], 0, "missing_segment");
    CHECK(strstr(out, "CORRUPT segments=") != NULL);
    free(out);
    check_rmdir(dir);
    free(dir);
}

/* A damaged segment header: reported at offset 0; its batches verify on their own (seeded by
 * the seed field at offset 48, still intact), so nothing is lost and every record is still
 * dumped. */
static void test_verify_bad_segment_header(void)
{
    char *dir = gen_copy_dir(clean.dir, "tools-seghdr");
    uint64_t ids[64];
    REQUIRE(gen_segments(dir, ids, 64) >= 3);
    uint8_t byte;
    file_read(dir, ids[1], 20, &byte, 1);
    byte ^= 0x40;
    file_patch(dir, ids[1], 20, &byte, 1);
    char *out = verify_expect(dir, 2, "CORRUPTION", ids[1], 0, "bad_segment_header");
    CHECK(strstr(out, "seq=none ") != NULL);
    free(out);
    char *all;
    CHECK_EQ(run2(&out, "dump", dir), 0);
    CHECK_EQ(run2(&all, "dump", clean.dir), 0);
    CHECK_EQ(gen_count_lines(out, "\"seq\""), gen_count_lines(all, "\"seq\""));
    free(all);
    free(out);
    check_rmdir(dir);
    free(dir);
}

static void test_verify_bad_checkpoint_and_bad_dir(void)
{
    struct gen g;
    gen_open(&g, "tools-badckpt", 32 * 1024);
    gen_put(&g, "q", 0, 0);
    gen_checkpoint(&g);
    gen_put(&g, "q", 0, 0);
    gen_commit(&g);
    gen_close(&g);
    char *out;
    CHECK_EQ(run2(&out, "verify", g.dir), 0);
    CHECK(strstr(out, "checkpoint=2\n") != NULL);
    free(out);
    char path[4096];
    snprintf(path, sizeof(path), "%s/checkpoint", g.dir);
    FILE *f = fopen(path, "r+");
    REQUIRE(f != NULL);
    REQUIRE(fseek(f, 20, SEEK_SET) == 0);
    int c = fgetc(f);
    REQUIRE(fseek(f, 20, SEEK_SET) == 0);
    fputc(c ^ 1, f);
    fclose(f);
    CHECK_EQ(run2(&out, "verify", g.dir), 2);
    CHECK(strstr(out, "CORRUPTION segment=0 offset=0 ") != NULL);
    CHECK(strstr(out, "kind=bad_checkpoint ") != NULL);
    free(out);
    gen_free(&g);
    CHECK_EQ(run2(&out, "verify", "/nonexistent/spool-dir"), 3);
    free(out);
}

/* ---- salvage ---- */

struct opened {
    struct queue_state *qs;
    struct log *log;
    struct io_backend *io;
    int reads;
    int read_errors;
};

static int opened_replay(void *ctx, const struct log_record *r)
{
    struct opened *o = ctx;
    return queue_replay(o->qs, r, (struct queue_time){0, 0});
}

static void opened_body(void *ctx, int error, const struct log_record *r)
{
    struct opened *o = ctx;
    o->reads--;
    (void)r;
    if (error != 0)
        o->read_errors++;
}

struct body_job {
    struct opened *o;
    struct job *job;
};

static void body_done(void *ctx, int error, const struct log_record *r)
{
    struct body_job *bj = ctx;
    struct record rec;
    if (error == 0 && record_decode(r->type, r->data, r->len, &rec) == 0 && rec.id == bj->job->id)
        queue_body_loaded(bj->o->qs, bj->job, rec.u.put.body, rec.u.put.body_len);
    opened_body(bj->o, error, r);
    free(bj);
}

/* Jobs whose body is still on disk, read back in waves: the engine allows 64 reads in
 * flight (LOG_READS_MAX). */
#define OPENED_READS_MAX 64

struct unloaded {
    struct job **jobs;
    size_t count;
};

static void unloaded_add(void *ctx, struct job *job)
{
    struct unloaded *u = ctx;
    u->jobs = realloc(u->jobs, (u->count + 1) * sizeof(*u->jobs));
    REQUIRE(u->jobs != NULL);
    u->jobs[u->count++] = job;
}

static void bodies_read(struct opened *o)
{
    struct unloaded u = {0};
    queue_each_unloaded(o->qs, unloaded_add, &u);
    for (size_t i = 0; i < u.count || o->reads > 0;) {
        while (i < u.count && o->reads < OPENED_READS_MAX) {
            struct body_job *bj = malloc(sizeof(*bj));
            REQUIRE(bj != NULL);
            bj->o = o;
            bj->job = u.jobs[i++];
            struct log_pos pos = queue_job_pos(bj->job); /* log_read copies it */
            REQUIRE(log_read(o->log, &pos, body_done, bj) == 0);
            o->reads++;
        }
        REQUIRE(io_backend_poll(o->io, true) >= 0);
    }
    free(u.jobs);
}

/* Open dir exactly as spoold recovers it (log_open, checkpoint, replay, bodies read back). */
static int open_as_server(const char *dir, struct opened *o)
{
    memset(o, 0, sizeof(*o));
    struct queue_config qc;
    queue_config_defaults(&qc);
    o->qs = queue_state_create(&qc);
    REQUIRE(posix_backend_create(dir, false, &o->io) == 0);
    struct log_config config;
    log_config_defaults(&config);
    config.dir = dir;
    struct log_recovery_report report;
    void *ckpt = NULL;
    uint32_t ckpt_len = 0;
    int rc = log_open(&config, o->io, opened_replay, o, &ckpt, &ckpt_len, &report, &o->log);
    if (rc != 0)
        return rc;
    CHECK(!report.torn_tail);
    if (ckpt != NULL)
        REQUIRE(queue_checkpoint_load(o->qs, ckpt, ckpt_len, (struct queue_time){0, 0}) == 0);
    free(ckpt);
    queue_recover_finish(o->qs, (struct queue_time){0, 0});
    bodies_read(o);
    CHECK_EQ(o->read_errors, 0);
    return 0;
}

static void opened_close(struct opened *o)
{
    if (o->log != NULL)
        CHECK_EQ(log_close(o->log), 0);
    io_backend_destroy(o->io);
    queue_state_destroy(o->qs);
}

static bool body_matches(struct job *job)
{
    uint8_t body[GEN_BODY_MAX];
    uint32_t len = gen_body(job->id, body, sizeof(body));
    return queue_job_body(job) != NULL && job->body_len == len &&
           memcmp(queue_job_body(job), body, len) == 0;
}

static char *salvage(const char *dir, const char *mode, int *code)
{
    char *out_dir = check_tmpdir("tools-salvaged");
    char *out;
    const char *argv[] = {tool, "salvage", dir, "--out", out_dir, "--mode", mode, NULL};
    *code = gen_run(argv, &out);
    free(out);
    return out_dir;
}

static void test_salvage_clean_keeps_everything(void)
{
    int code;
    char *out_dir = salvage(clean.dir, "point-in-time", &code);
    CHECK_EQ(code, 0);
    struct opened o;
    REQUIRE(open_as_server(out_dir, &o) == 0);
    for (uint64_t id = 1; id <= GEN_PUTS; id++) {
        struct job *job = queue_peek_id(o.qs, id);
        struct queue_job_status want;
        REQUIRE(queue_status(clean.qs, id, &want) == (job != NULL) || want.state == JOB_DONE);
        if (!gen_live(&clean, id)) {
            CHECK(job == NULL);
            continue;
        }
        REQUIRE(job != NULL);
        CHECK(body_matches(job));
        CHECK_EQ(job->state == JOB_DEAD, want.state == JOB_DEAD);
        CHECK_EQ(job->attempts, want.attempts);
    }
    /* Ids are never reused: the next put gets the next id of the original. */
    struct queue_put_args args = {.queue = "alpha", .queue_len = 5, .max_attempts = -1};
    uint64_t id = 0, seq = 0;
    bool dup;
    REQUIRE(queue_put(o.qs, &args, (struct queue_time){0, 0}, &id, &dup, &seq) == 0);
    CHECK_EQ(id, GEN_PUTS + 1);
    opened_close(&o);
    char *out;
    CHECK_EQ(run2(&out, "verify", out_dir), 0);
    free(out);
    /* Refuses a non-empty output directory, and DIR itself. */
    const char *argv[] = {tool, "salvage", clean.dir, "--out", out_dir, NULL};
    CHECK_EQ(gen_run(argv, &out), 3);
    free(out);
    const char *argv2[] = {tool, "salvage", clean.dir, "--out", clean.dir, NULL};
    CHECK_EQ(gen_run(argv2, &out), 3);
    free(out);
    check_rmdir(out_dir);
    free(out_dir);
}

/* A torn tail: point-in-time salvage keeps everything before it and says what it cut. */
static void test_salvage_torn_tail(void)
{
    char *dir = gen_copy_dir(clean.dir, "tools-salvtorn");
    uint64_t ids[64];
    uint32_t n = gen_segments(dir, ids, 64);
    struct gen_batch b[64];
    uint32_t count = gen_batches(dir, ids[n - 1], b, 64);
    REQUIRE(count >= 1);
    char *path = gen_segment_path(dir, ids[n - 1]);
    REQUIRE(truncate(path, (off_t)(b[count - 1].offset + 100)) == 0);
    free(path);
    int code;
    char *out_dir = salvage(dir, "point-in-time", &code);
    CHECK_EQ(code, 0);
    char report[8192];
    snprintf(report, sizeof(report), "%s/salvage-report.txt", out_dir);
    FILE *f = fopen(report, "r");
    REQUIRE(f != NULL);
    size_t len = fread(report, 1, sizeof(report) - 1, f);
    report[len] = '\0';
    fclose(f);
    char want[128];
    snprintf(want, sizeof(want), "lost_range seq=%llu..",
             (unsigned long long)b[count - 1].base_seq);
    CHECK(strstr(report, want) != NULL);
    CHECK(strstr(report, "kind=torn_tail") != NULL);
    struct opened o;
    REQUIRE(open_as_server(out_dir, &o) == 0);
    for (uint64_t id = 1; id <= GEN_PUTS; id++) {
        struct job *job = queue_peek_id(o.qs, id);
        if (job != NULL)
            CHECK(body_matches(job));
        if (id <= 10 && gen_live(&clean, id))
            CHECK(job != NULL);
    }
    opened_close(&o);
    check_rmdir(out_dir);
    free(out_dir);
    check_rmdir(dir);
    free(dir);
}

/* Jobs named in the verify output's job_ids lists. */
static bool affected(const char *verify_out, uint64_t id)
{
    const char *p = verify_out;
    while ((p = strstr(p, "job_ids=")) != NULL) {
        p += 8;
        while (*p >= '0' && *p <= '9') {
            uint64_t v = strtoull(p, (char **)&p, 10);
            if (v == id)
                return true;
            if (*p == ',')
                p++;
        }
    }
    return false;
}

static void test_salvage_damaged(void)
{
    struct target t;
    target_pick(&t, "tools-salv");
    uint8_t byte;
    file_read(t.dir, t.segment, t.batch.offset + BATCH_HEADER_SIZE + 10, &byte, 1);
    byte ^= 0x01;
    file_patch(t.dir, t.segment, t.batch.offset + BATCH_HEADER_SIZE + 10, &byte, 1);
    char *verify_out;
    CHECK_EQ(run2(&verify_out, "verify", t.dir), 2);
    int code;
    char *skip_dir = salvage(t.dir, "skip-corrupt", &code);
    CHECK_EQ(code, 0);
    struct opened o;
    REQUIRE(open_as_server(skip_dir, &o) == 0);
    int kept = 0;
    for (uint64_t id = 1; id <= GEN_PUTS; id++) {
        struct job *job = queue_peek_id(o.qs, id);
        if (gen_live(&clean, id) && !affected(verify_out, id)) {
            CHECK(job != NULL); /* every undamaged live job is kept */
            kept++;
        }
        if (job != NULL)
            CHECK(body_matches(job));
    }
    CHECK(kept > GEN_LIVE / 2);
    opened_close(&o);
    char report[4096];
    snprintf(report, sizeof(report), "%s/salvage-report.txt", skip_dir);
    FILE *f = fopen(report, "r");
    REQUIRE(f != NULL);
    size_t n = fread(report, 1, sizeof(report) - 1, f);
    report[n] = '\0';
    fclose(f);
    char want[128];
    snprintf(want, sizeof(want), "lost_range seq=%llu..%llu segment=%llu offset=%llu",
             (unsigned long long)t.batch.base_seq,
             (unsigned long long)(t.batch.base_seq + t.batch.record_count - 1),
             (unsigned long long)t.segment, (unsigned long long)t.batch.offset);
    CHECK(strstr(report, want) != NULL);
    CHECK(strstr(report, "summary kept_jobs=") != NULL);
    char *pit_dir = salvage(t.dir, "point-in-time", &code);
    CHECK_EQ(code, 0);
    REQUIRE(open_as_server(pit_dir, &o) == 0);
    for (uint64_t id = 1; id <= GEN_PUTS; id++) {
        struct job *job = queue_peek_id(o.qs, id);
        if (job != NULL)
            CHECK(body_matches(job));
        if (id < 5 && gen_live(&clean, id)) /* put long before the damage */
            CHECK(job != NULL);
    }
    opened_close(&o);
    char *out;
    CHECK_EQ(run2(&out, "verify", pit_dir), 0);
    free(out);
    free(verify_out);
    check_rmdir(skip_dir);
    check_rmdir(pit_dir);
    check_rmdir(t.dir);
    free(skip_dir);
    free(pit_dir);
    free(t.dir);
}

/* With a checkpoint: a live job that only the checkpoint and a damaged PUT know of cannot be
 * salvaged (no body); the report names it, the rest is kept, the output opens cleanly. */
static void test_salvage_checkpoint_body_lost(void)
{
    struct gen g;
    gen_open(&g, "tools-ckbody", 32 * 1024);
    gen_put(&g, "keep", 0, 0); /* job 1: live, its PUT alone in the first batch */
    gen_commit(&g);
    gen_put(&g, "keep", 0, 0); /* job 2: live too, in the next batch */
    gen_commit(&g);
    put_ack(&g, 20);
    gen_checkpoint(&g);
    gen_close(&g);
    struct gen_batch b[64];
    REQUIRE(gen_batches(g.dir, 1, b, 64) >= 2);
    REQUIRE(b[0].base_seq == 1 && b[0].record_count == 1);
    uint8_t byte;
    file_read(g.dir, 1, b[0].offset + BATCH_HEADER_SIZE + 9, &byte, 1);
    byte ^= 0x08;
    file_patch(g.dir, 1, b[0].offset + BATCH_HEADER_SIZE + 9, &byte, 1);
    char *out = verify_expect(g.dir, 2, "CORRUPTION", 1, b[0].offset, "bad_payload");
    CHECK(strstr(out, "seq=1..1 ") != NULL);
    /* The checkpoint still holds job 1, whose body is gone: spoold could not load it. */
    CHECK(strstr(out, "kind=bad_checkpoint jobs_affected=1 job_ids=1 ") != NULL);
    free(out);
    int code;
    char *out_dir = salvage(g.dir, "skip-corrupt", &code);
    CHECK_EQ(code, 0);
    char path[4096];
    snprintf(path, sizeof(path), "%s/salvage-report.txt", out_dir);
    FILE *f = fopen(path, "r");
    REQUIRE(f != NULL);
    char report[4096];
    size_t n = fread(report, 1, sizeof(report) - 1, f);
    report[n] = '\0';
    fclose(f);
    CHECK(strstr(report, "lost_job id=1 reason=body_unreadable") != NULL);
    CHECK(strstr(report, "summary kept_jobs=1 lost_jobs=1 ") != NULL);
    struct opened o;
    REQUIRE(open_as_server(out_dir, &o) == 0);
    CHECK(queue_peek_id(o.qs, 1) == NULL);
    struct job *job = queue_peek_id(o.qs, 2);
    CHECK(job != NULL && body_matches(job));
    opened_close(&o);
    check_rmdir(out_dir);
    free(out_dir);
    gen_free(&g);
}

/* Random damage, a few kinds at once: verify never crashes and says clean only when it is;
 * dump reads what verifies; salvage (both modes) always writes a directory that verifies clean,
 * opens as spoold opens it, and holds only jobs with their original bodies. Deterministic
 * (fixed seed), bounded in rounds. */
#define RANDOM_ROUNDS 24

static uint64_t rnd_state = 0x2545F4914F6CDD1Dull;

static uint64_t rnd(uint64_t n)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return n == 0 ? 0 : rnd_state % n;
}

/* Read what is there (a damaged file may be shorter): the rest reads as zero. */
static void file_read_any(const char *dir, uint64_t segment, uint64_t offset, void *bytes,
                          size_t len)
{
    char *path = gen_segment_path(dir, segment);
    int fd = open(path, O_RDONLY);
    REQUIRE(fd >= 0);
    memset(bytes, 0, len);
    REQUIRE(pread(fd, bytes, len, (off_t)offset) >= 0);
    close(fd);
    free(path);
}

static void damage_checkpoint(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/checkpoint", dir);
    FILE *f = fopen(path, "r+b");
    if (f == NULL)
        return;
    REQUIRE(fseek(f, 0, SEEK_END) == 0);
    long size = ftell(f);
    if (size > 0) {
        long at = (long)rnd((uint64_t)size);
        REQUIRE(fseek(f, at, SEEK_SET) == 0);
        int c = fgetc(f);
        REQUIRE(fseek(f, at, SEEK_SET) == 0);
        fputc(c ^ (1 << rnd(8)), f);
    }
    fclose(f);
}

static void damage_random(const char *dir)
{
    uint64_t ids[64];
    uint32_t n = gen_segments(dir, ids, 64);
    REQUIRE(n > 0);
    uint64_t seg = ids[rnd(n)];
    struct gen_batch b[64];
    uint32_t count = gen_batches(dir, seg, b, 64);
    uint64_t end = count > 0 ? b[count - 1].offset + b[count - 1].total_len : 8192;
    uint64_t off = rnd(end);
    uint8_t block[BATCH_ALIGN];
    switch (rnd(6)) {
    case 0: /* bit flip */
        file_read_any(dir, seg, off, block, 1);
        block[0] ^= (uint8_t)(1u << rnd(8));
        file_patch(dir, seg, off, block, 1);
        break;
    case 1: /* zeroed block */
        memset(block, 0, sizeof(block));
        file_patch(dir, seg, off & ~(uint64_t)(BATCH_ALIGN - 1), block, sizeof(block));
        break;
    case 2: { /* a block copied from elsewhere (maybe another segment) */
        uint64_t from = ids[rnd(n)];
        file_read_any(dir, from, (rnd(end) & ~(uint64_t)(BATCH_ALIGN - 1)), block, sizeof(block));
        file_patch(dir, seg, off & ~(uint64_t)(BATCH_ALIGN - 1), block, sizeof(block));
        break;
    }
    case 3: { /* truncated */
        char *path = gen_segment_path(dir, seg);
        REQUIRE(truncate(path, (off_t)off) == 0);
        free(path);
        break;
    }
    case 4:
        damage_checkpoint(dir);
        break;
    default: { /* missing */
        char *path = gen_segment_path(dir, seg);
        REQUIRE(unlink(path) == 0);
        free(path);
        break;
    }
    }
}

static void salvage_round(const char *dir, const char *mode, uint64_t id_end)
{
    int code;
    char *out_dir = salvage(dir, mode, &code);
    CHECK_EQ(code, 0);
    char *out;
    CHECK_EQ(run2(&out, "verify", out_dir), 0);
    free(out);
    struct opened o;
    CHECK_EQ(open_as_server(out_dir, &o), 0);
    for (uint64_t id = 1; id < id_end; id++) {
        struct job *job = queue_peek_id(o.qs, id);
        if (job != NULL)
            CHECK(body_matches(job));
    }
    opened_close(&o);
    check_rmdir(out_dir);
    free(out_dir);
}

static void random_rounds(const char *base, uint64_t id_end, int rounds)
{
    for (int round = 0; round < rounds; round++) {
        char *dir = gen_copy_dir(base, "tools-random");
        uint64_t kinds = 1 + rnd(3);
        for (uint64_t k = 0; k < kinds; k++)
            damage_random(dir);
        char *out;
        int code = run2(&out, "verify", dir);
        CHECK(code == 0 || code == 1 || code == 2);
        CHECK((code == 0) == (strncmp(out, "OK ", 3) == 0 || strstr(out, "\nOK ") != NULL));
        free(out);
        CHECK_EQ(run2(&out, "dump", dir), 0);
        free(out);
        CHECK_EQ(run2(&out, "stats", dir), 0);
        free(out);
        salvage_round(dir, "skip-corrupt", id_end);
        salvage_round(dir, "point-in-time", id_end);
        check_rmdir(dir);
        free(dir);
    }
}

static void test_random_damage(void)
{
    /* SPOOL_LOG_RANDOM_ROUNDS and _SEED explore further by hand; the suite runs the default. */
    const char *rounds_env = getenv("SPOOL_LOG_RANDOM_ROUNDS");
    const char *seed_env = getenv("SPOOL_LOG_RANDOM_SEED");
    int rounds = rounds_env != NULL ? atoi(rounds_env) : RANDOM_ROUNDS;
    if (seed_env != NULL)
        rnd_state = strtoull(seed_env, NULL, 10) | 1;
    random_rounds(clean.dir, GEN_PUTS + 1, rounds);
    /* And a log with a checkpoint that dropped segments (the checkpoint may be hit too). */
    struct gen g;
    gen_open(&g, "tools-randckpt", 32 * 1024);
    gen_put(&g, "keep", 0, 0);
    gen_commit(&g);
    put_ack(&g, 40);
    gen_put(&g, "keep", 0, 0);
    gen_checkpoint(&g);
    put_ack(&g, 20);
    gen_put(&g, "keep", 0, 0);
    gen_commit(&g);
    gen_close(&g);
    random_rounds(g.dir, g.next_id, rounds);
    gen_free(&g);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_spool_log PATH-TO-spool-log\n");
        return 1;
    }
    tool = argv[1];
    gen_standard(&clean, "tools-clean");
    gen_close(&clean);
    RUN_TEST(test_verify_clean);
    RUN_TEST(test_dump_filters_and_lz4_bodies);
    RUN_TEST(test_explain);
    RUN_TEST(test_stats_and_why_retained);
    RUN_TEST(test_dump_queue_meta);
    RUN_TEST(test_checkpointed_directory);
    RUN_TEST(test_why_retained_deletable);
    RUN_TEST(test_verify_bit_flip);
    RUN_TEST(test_verify_zeroed_block);
    RUN_TEST(test_verify_misplaced_block);
    RUN_TEST(test_verify_truncated_tail);
    RUN_TEST(test_verify_missing_segment);
    RUN_TEST(test_verify_stale_block);
    RUN_TEST(test_verify_bad_segment_header);
    RUN_TEST(test_verify_missing_newest_segment);
    RUN_TEST(test_verify_bad_checkpoint_and_bad_dir);
    RUN_TEST(test_salvage_clean_keeps_everything);
    RUN_TEST(test_salvage_damaged);
    RUN_TEST(test_salvage_checkpoint_body_lost);
    RUN_TEST(test_salvage_torn_tail);
    RUN_TEST(test_random_damage);
    gen_free(&clean);
    return check_exit();
}
