/* Recovery on damaged files: torn tails at every offset of the last batch are cut and nothing
 * else is; damage anywhere else (sealed segments, bad-then-valid in the newest segment, broken
 * chains, missing segments, a bad checkpoint) refuses to open with a report naming segment and
 * offset, and salvage cuts there. */
#include "log_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#define KIB 1024u

static uint8_t *file_read(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    REQUIRE(fd >= 0);
    struct stat st;
    REQUIRE(fstat(fd, &st) == 0);
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    REQUIRE(buf != NULL);
    REQUIRE(pread(fd, buf, (size_t)st.st_size, 0) == st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return buf;
}

static void file_write(const char *path, const uint8_t *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT, 0640);
    REQUIRE(fd >= 0);
    REQUIRE(pwrite(fd, buf, len, 0) == (ssize_t)len);
    REQUIRE(ftruncate(fd, (off_t)len) == 0);
    close(fd);
}

static void file_patch(const char *path, uint64_t offset, const void *bytes, size_t n)
{
    int fd = open(path, O_WRONLY);
    REQUIRE(fd >= 0);
    REQUIRE(pwrite(fd, bytes, n, (off_t)offset) == (ssize_t)n);
    close(fd);
}

static void file_truncate(const char *path, uint64_t len)
{
    REQUIRE(truncate(path, (off_t)len) == 0);
}

/* Batches found by log_scan. */
struct batch_list {
    uint32_t count;
    uint64_t segment[4096];
    uint64_t offset[4096];
    uint64_t base_seq[4096];
    uint32_t records[4096];
    uint32_t stored_len[4096];
    uint8_t codec[4096];
    int damage;
    enum log_damage_kind first_damage;
};

static int list_batch(void *ctx, uint64_t segment_id, uint64_t offset, uint64_t base_seq,
                      uint32_t record_count, uint32_t stored_len, uint32_t raw_len,
                      uint8_t codec)
{
    struct batch_list *l = ctx;
    REQUIRE(l->count < 4096);
    l->segment[l->count] = segment_id;
    l->offset[l->count] = offset;
    l->base_seq[l->count] = base_seq;
    l->records[l->count] = record_count;
    l->stored_len[l->count] = stored_len;
    l->codec[l->count] = codec;
    l->count++;
    return 0;
}

static void list_damage(void *ctx, const struct log_damage *d)
{
    struct batch_list *l = ctx;
    if (l->damage++ == 0)
        l->first_damage = d->kind;
}

static int scan_dir(const char *dir, struct batch_list *l)
{
    memset(l, 0, sizeof(*l));
    struct io_backend *io;
    REQUIRE(posix_backend_create(dir, false, &io) == 0);
    struct log_scan_callbacks cb = {.batch = list_batch, .damage = list_damage, .ctx = l};
    int rc = log_scan(io, &cb);
    io_backend_destroy(io);
    return rc;
}

/* Commit records [next, upto) as one batch. */
static void commit_batch(struct tlog *t, uint64_t upto, uint32_t max)
{
    tlog_append_upto(t, upto, max);
    tlog_drain(t);
    REQUIRE(log_durable_seq_end(t->log) == upto);
}

/* ---- torn tail ---- */

struct torn_case {
    struct tlog t;
    uint8_t *image;  /* the newest segment as written */
    size_t image_len;
    uint64_t segment_id;
    uint64_t batch_offset;
    uint64_t batch_end;   /* 64 + stored_len: past it lies only padding */
    uint64_t base_seq;    /* of the last batch */
    uint64_t next_seq;    /* after it */
};

/* One cut: restore the image, damage from p (truncate or zero), recover, check. */
static void torn_one(struct torn_case *c, uint64_t p, bool truncate_file, bool append_after)
{
    char *path = tlog_path(&c->t, c->segment_id);
    file_write(path, c->image, c->image_len);
    if (truncate_file) {
        file_truncate(path, p);
    } else {
        uint8_t zero[16 * 1024] = {0};
        uint64_t n = c->batch_offset + 16 * KIB - p;
        file_patch(path, p, zero, n);
    }
    bool intact = p >= c->batch_end;
    bool torn = p > c->batch_offset && !intact;
    uint64_t expect_next = intact ? c->next_seq : c->base_seq;
    struct replay_check rc = {.next = 1, .max = 1500};
    int r = tlog_open_replay(&c->t, &rc);
    CHECK_EQ(r, 0);
    if (r != 0) {
        fprintf(stderr, "cut at %llu (%s): %s\n", (unsigned long long)p,
                truncate_file ? "truncate" : "zero", c->t.report.message);
        return;
    }
    CHECK_EQ(rc.bad, 0);
    CHECK_EQ(rc.count, expect_next - 1);
    CHECK_EQ(log_next_seq(c->t.log), expect_next);
    CHECK_EQ(c->t.report.torn_tail, torn);
    if (torn) {
        CHECK_EQ(c->t.report.torn_segment_id, c->segment_id);
        CHECK_EQ(c->t.report.torn_offset, c->batch_offset);
    }
    if (append_after) {
        commit_batch(&c->t, expect_next + 3, 1500);
        tlog_close(&c->t);
        rc = (struct replay_check){.next = 1, .max = 1500};
        REQUIRE(tlog_open_replay(&c->t, &rc) == 0);
        CHECK_EQ(rc.count, expect_next + 2);
        CHECK_EQ(rc.bad, 0);
        CHECK(!c->t.report.torn_tail);
    }
    tlog_close(&c->t);
}

static void torn_setup(struct torn_case *c, bool compress)
{
    tlog_init(&c->t, "recovery-torn", 256 * KIB, 16 * KIB);
    c->t.config.compress = compress;
    REQUIRE(tlog_open(&c->t) == 0);
    for (uint64_t upto = 11; upto <= 101; upto += 10)
        commit_batch(&c->t, upto, 1500);
    c->base_seq = log_next_seq(c->t.log);
    commit_batch(&c->t, c->base_seq + 5, 1500); /* a few KiB: the batch to tear */
    c->next_seq = c->base_seq + 5;
    c->segment_id = log_current_segment_id(c->t.log);
    tlog_close(&c->t);
    struct batch_list *l = malloc(sizeof(*l));
    REQUIRE(l != NULL);
    CHECK_EQ(scan_dir(c->t.dir, l), 0);
    REQUIRE(l->count > 0 && l->base_seq[l->count - 1] == c->base_seq);
    c->batch_offset = l->offset[l->count - 1];
    c->batch_end = c->batch_offset + 64 + l->stored_len[l->count - 1];
    CHECK_EQ(l->codec[l->count - 1], compress ? 1 : 0);
    free(l);
    c->image = file_read(tlog_path(&c->t, c->segment_id), &c->image_len);
}

static void torn_sweep(bool compress)
{
    struct torn_case c;
    torn_setup(&c, compress);
    uint64_t end = c.batch_offset + ((c.batch_end - c.batch_offset + 4095) & ~4095ull);
    REQUIRE(end - c.batch_offset >= 4096);
    int cases = 0;
    for (uint64_t p = c.batch_offset; p < end; p += p < c.batch_offset + 64 ? 1 : 13) {
        bool append_after = cases % 16 == 0;
        torn_one(&c, p, true, append_after);
        torn_one(&c, p, false, false);
        cases++;
    }
    torn_one(&c, c.batch_end - 1, true, true);
    torn_one(&c, c.batch_end, false, true);
    fprintf(stderr, "torn tail: %d cut offsets x 2, batch of %llu bytes\n", cases,
            (unsigned long long)(c.batch_end - c.batch_offset));
    free(c.image);
    tlog_destroy(&c.t);
}

static void test_torn_tail_every_offset(void)
{
    torn_sweep(false);
}

static void test_torn_tail_compressed(void)
{
    torn_sweep(true);
}

/* ---- corruption in sealed segments ---- */

struct sealed_case {
    struct tlog t;
    struct batch_list *l;
    uint64_t sealed_id;     /* a segment with a successor */
    uint32_t first_batch;   /* its batches in l: [first_batch, end_batch) */
    uint32_t end_batch;
    char saved[4096];
    uint8_t *image;         /* the sealed segment as written */
    size_t image_len;
};

static void sealed_setup(struct sealed_case *c, const char *tag, bool compress)
{
    tlog_init(&c->t, tag, 64 * KIB, 16 * KIB);
    c->t.config.compress = compress;
    REQUIRE(tlog_open(&c->t) == 0);
    for (uint64_t upto = 5; upto <= 400; upto += 4)
        commit_batch(&c->t, upto, 1500);
    REQUIRE(log_segment_count(c->t.log) >= 4);
    c->sealed_id = log_segment_id(c->t.log, 1);
    tlog_close(&c->t);
    c->l = malloc(sizeof(*c->l));
    REQUIRE(c->l != NULL);
    CHECK_EQ(scan_dir(c->t.dir, c->l), 0);
    c->first_batch = 0;
    while (c->l->segment[c->first_batch] != c->sealed_id)
        c->first_batch++;
    c->end_batch = c->first_batch;
    while (c->l->segment[c->end_batch] == c->sealed_id)
        c->end_batch++;
    REQUIRE(c->end_batch - c->first_batch >= 3);
    c->image = file_read(tlog_path(&c->t, c->sealed_id), &c->image_len);
}

static void sealed_restore(struct sealed_case *c)
{
    file_write(tlog_path(&c->t, c->sealed_id), c->image, c->image_len);
}

static void sealed_free(struct sealed_case *c)
{
    free(c->l);
    free(c->image);
    tlog_destroy(&c->t);
}

/* The open must refuse, naming the segment and the offset; log_scan must report it too. */
static void expect_corrupt(struct sealed_case *c, uint64_t segment_id, uint64_t offset,
                           const char *what)
{
    struct replay_check rc = {.next = 1, .max = 1500};
    int r = tlog_open_replay(&c->t, &rc);
    CHECK_EQ(r, LOG_ECORRUPT);
    char want[128];
    snprintf(want, sizeof(want), "segment %020llu offset %llu ", (unsigned long long)segment_id,
             (unsigned long long)offset);
    if (strstr(c->t.report.message, want) == NULL) {
        fprintf(stderr, "%s: message \"%s\" lacks \"%s\"\n", what, c->t.report.message, want);
        CHECK(false);
    }
    CHECK_EQ(rc.bad, 0);
    if (r == 0)
        tlog_close(&c->t);
    else
        tlog_close(&c->t);
    struct batch_list *l = malloc(sizeof(*l));
    REQUIRE(l != NULL);
    CHECK_EQ(scan_dir(c->t.dir, l), LOG_ECORRUPT);
    CHECK(l->damage >= 1);
    CHECK(l->first_damage != LOG_DAMAGE_TORN_TAIL);
    free(l);
}

/* Salvage opens, keeps everything before the damage, and appends continue. */
static void expect_salvage(struct sealed_case *c, uint64_t lost_from_max)
{
    c->t.config.salvage = true;
    struct replay_check rc = {.next = 1, .max = 1500};
    int r = tlog_open_replay(&c->t, &rc);
    c->t.config.salvage = false;
    CHECK_EQ(r, 0);
    if (r != 0)
        return;
    CHECK(c->t.report.salvaged);
    CHECK(c->t.report.salvage_seq_lost_from <= lost_from_max);
    CHECK_EQ(rc.bad, 0);
    CHECK_EQ(rc.count, c->t.report.salvage_seq_lost_from - 1);
    uint64_t next = log_next_seq(c->t.log);
    CHECK_EQ(next, c->t.report.salvage_seq_lost_from);
    commit_batch(&c->t, next + 2, 1500);
    tlog_close(&c->t);
    rc = (struct replay_check){.next = 1, .max = 1500};
    CHECK_EQ(tlog_open_replay(&c->t, &rc), 0);
    CHECK_EQ(rc.count, next + 1);
    tlog_close(&c->t);
}

static void test_sealed_bit_flips(void)
{
    struct sealed_case c;
    sealed_setup(&c, "recovery-flip", false);
    uint32_t b = c.first_batch + 1;
    uint64_t off = c.l->offset[b];
    uint64_t points[] = {off + 3, off + 30, off + 60, off + 64, off + 64 + c.l->stored_len[b] / 2,
                         off + 64 + c.l->stored_len[b] - 1};
    for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++) {
        sealed_restore(&c);
        uint8_t byte = c.image[points[i]] ^ 0x04;
        file_patch(tlog_path(&c.t, c.sealed_id), points[i], &byte, 1);
        expect_corrupt(&c, c.sealed_id, off, "bit flip");
        /* log_scan goes on past the damage: every other batch is still listed. */
        struct batch_list *l = malloc(sizeof(*l));
        REQUIRE(l != NULL);
        CHECK_EQ(scan_dir(c.t.dir, l), LOG_ECORRUPT);
        CHECK_EQ(l->count, c.l->count - 1);
        CHECK_EQ(l->damage, 1);
        free(l);
    }
    expect_salvage(&c, c.l->base_seq[b]);
    sealed_free(&c);
}

static void test_sealed_zeroed_block(void)
{
    struct sealed_case c;
    sealed_setup(&c, "recovery-zero", false);
    uint8_t zero[4096] = {0};
    /* A block in the middle: the walk stops at a zero header with valid batches after it. */
    uint32_t b = c.first_batch + 1;
    file_patch(tlog_path(&c.t, c.sealed_id), c.l->offset[b], zero, sizeof(zero));
    expect_corrupt(&c, c.sealed_id, c.l->offset[b], "zeroed middle block");
    /* The last batch's first block (its pre-write state): the segment ends early. */
    sealed_restore(&c);
    uint32_t last = c.end_batch - 1;
    file_patch(tlog_path(&c.t, c.sealed_id), c.l->offset[last], zero, sizeof(zero));
    expect_corrupt(&c, c.sealed_id, c.l->offset[last], "zeroed last batch");
    /* The segment header. */
    sealed_restore(&c);
    file_patch(tlog_path(&c.t, c.sealed_id), 0, zero, sizeof(zero));
    expect_corrupt(&c, c.sealed_id, 0, "zeroed segment header");
    sealed_restore(&c);
    file_patch(tlog_path(&c.t, c.sealed_id), c.l->offset[b], zero, sizeof(zero));
    expect_salvage(&c, c.l->base_seq[b]);
    sealed_free(&c);
}

static void test_sealed_copied_chunk(void)
{
    struct sealed_case c;
    sealed_setup(&c, "recovery-copy", true);
    /* A batch of this segment copied over another of the same segment: valid alone, but out
     * of the seq and hash chain. */
    uint32_t src = c.first_batch, dst = c.first_batch + 2;
    file_patch(tlog_path(&c.t, c.sealed_id), c.l->offset[dst], c.image + c.l->offset[src], 4096);
    expect_corrupt(&c, c.sealed_id, c.l->offset[dst], "chunk from the same segment");
    /* The first block of another segment's batch: seeded with another id, rejected. */
    sealed_restore(&c);
    size_t other_len;
    uint8_t *other = file_read(tlog_path(&c.t, c.l->segment[0]), &other_len);
    file_patch(tlog_path(&c.t, c.sealed_id), c.l->offset[dst], other + 4096, 4096);
    free(other);
    expect_corrupt(&c, c.sealed_id, c.l->offset[dst], "chunk from another segment");
    sealed_free(&c);
}

/* A stale copy of a block: the same offset of the same segment id from an older generation
 * of the log (same seed, same seqs, different chain). */
static void test_sealed_stale_generation(void)
{
    struct sealed_case old, c;
    sealed_setup(&old, "recovery-stale-old", false);
    sealed_setup(&c, "recovery-stale", false);
    REQUIRE(old.sealed_id == c.sealed_id);
    uint32_t b = c.first_batch + 1;
    REQUIRE(old.l->offset[b] == c.l->offset[b]);
    uint64_t off = c.l->offset[b];
    file_patch(tlog_path(&c.t, c.sealed_id), off, old.image + off, 4096);
    expect_corrupt(&c, c.sealed_id, off, "stale block");
    sealed_free(&old);
    sealed_free(&c);
}

/* In the newest segment, an invalid batch followed by a valid one is damage, not a tail. */
static void test_newest_bad_then_valid(void)
{
    struct sealed_case c;
    sealed_setup(&c, "recovery-newest", false);
    uint32_t last = c.l->count - 1;
    uint64_t newest = c.l->segment[last];
    uint32_t b = last;
    while (b > 0 && c.l->segment[b - 1] == newest)
        b--;
    REQUIRE(last - b >= 2); /* at least three batches in the newest segment */
    uint8_t junk = 0x5A;
    file_patch(tlog_path(&c.t, newest), c.l->offset[b + 1] + 100, &junk, 1);
    expect_corrupt(&c, newest, c.l->offset[b + 1], "bad then valid");
    CHECK(strstr(c.t.report.message, "a valid batch follows") != NULL);
    sealed_free(&c);
}

static void test_missing_middle_segment(void)
{
    struct sealed_case c;
    sealed_setup(&c, "recovery-missing", false);
    CHECK_EQ(unlink(tlog_path(&c.t, c.sealed_id)), 0);
    struct replay_check rc = {.next = 1, .max = 1500};
    CHECK_EQ(tlog_open_replay(&c.t, &rc), LOG_ECORRUPT);
    CHECK(strstr(c.t.report.message, "missing_segment") != NULL);
    tlog_close(&c.t);
    sealed_free(&c);
}

static void test_torn_roll_deleted(void)
{
    struct sealed_case c;
    sealed_setup(&c, "recovery-roll", false);
    uint64_t next_id = c.l->base_seq[c.l->count - 1] + c.l->records[c.l->count - 1];
    uint8_t *zero = calloc(1, 64 * KIB);
    file_write(tlog_path(&c.t, next_id), zero, 64 * KIB); /* created, header never durable */
    free(zero);
    struct replay_check rc = {.next = 1, .max = 1500};
    REQUIRE(tlog_open_replay(&c.t, &rc) == 0);
    CHECK_EQ(log_next_seq(c.t.log), next_id);
    CHECK_EQ(rc.count, next_id - 1);
    commit_batch(&c.t, next_id + 30, 1500); /* rolls into next_id again */
    tlog_close(&c.t);
    rc = (struct replay_check){.next = 1, .max = 1500};
    REQUIRE(tlog_open_replay(&c.t, &rc) == 0);
    CHECK_EQ(rc.count, next_id + 29);
    tlog_close(&c.t);
    sealed_free(&c);
}

static void ckpt_done(void *ctx, int error)
{
    *(int *)ctx = error == 0 ? 1 : error;
}

static void test_bad_checkpoint(void)
{
    struct tlog t;
    tlog_init(&t, "recovery-ckpt", 64 * KIB, 16 * KIB);
    REQUIRE(tlog_open(&t) == 0);
    commit_batch(&t, 50, 1500);
    int done = 0;
    REQUIRE(log_checkpoint(t.log, 20, "abc", 3, NULL, 0, ckpt_done, &done) == 0);
    tlog_drain(&t);
    CHECK_EQ(done, 1);
    tlog_close(&t);
    char path[4200];
    snprintf(path, sizeof(path), "%s/checkpoint", t.dir);
    uint8_t junk = 0xEE;
    file_patch(path, 20, &junk, 1);
    CHECK_EQ(tlog_open(&t), LOG_ECORRUPT);
    CHECK(strstr(t.report.message, "bad_checkpoint") != NULL);
    /* A leftover temp file is not damage. */
    snprintf(path, sizeof(path), "%s/checkpoint.tmp", t.dir);
    file_write(path, (const uint8_t *)"half", 4);
    t.config.salvage = true;
    struct replay_check rc = {.next = 1, .max = 1500};
    CHECK_EQ(tlog_open_replay(&t, &rc), 0);
    CHECK_EQ(rc.count, 49);
    tlog_close(&t);
    CHECK(access(path, F_OK) != 0);
    tlog_destroy(&t);
}

static void test_newer_version_refused(void)
{
    struct tlog t;
    tlog_init(&t, "recovery-version", 64 * KIB, 16 * KIB);
    REQUIRE(tlog_open(&t) == 0);
    commit_batch(&t, 10, 100);
    tlog_close(&t);
    uint8_t version[2] = {4, 0}; /* SEGMENT_VERSION + 1 */
    file_patch(tlog_path(&t, 1), 4, version, sizeof(version));
    CHECK_EQ(tlog_open(&t), LOG_EVERSION);
    CHECK(strstr(t.report.message, "version 4") != NULL);
    tlog_destroy(&t);
}

/* Interval mode: writes after the last fdatasync may reach the disk out of order, so a hole
 * followed only by unsynced batches is a torn tail there (everything from the hole is cut). */
static void test_interval_hole_is_torn_tail(void)
{
    struct tlog t;
    tlog_init(&t, "recovery-interval", 256 * KIB, 16 * KIB);
    t.config.sync_mode = LOG_SYNC_INTERVAL;
    t.config.sync_interval_ms = 1000;
    REQUIRE(tlog_open(&t) == 0);
    for (uint64_t upto = 5; upto <= 41; upto += 4)
        commit_batch(&t, upto, 1500);
    tlog_close(&t);
    struct batch_list *l = malloc(sizeof(*l));
    REQUIRE(l != NULL);
    CHECK_EQ(scan_dir(t.dir, l), 0);
    REQUIRE(l->count >= 6);
    uint32_t hole = l->count - 4;
    uint8_t zero[4096] = {0};
    file_patch(tlog_path(&t, 1), l->offset[hole], zero, sizeof(zero));
    t.config.sync_mode = LOG_SYNC_ALWAYS; /* the rule follows the batches' flags, not the mode */
    struct replay_check rc = {.next = 1, .max = 1500};
    REQUIRE(tlog_open_replay(&t, &rc) == 0);
    CHECK(t.report.torn_tail);
    CHECK_EQ(t.report.torn_offset, l->offset[hole]);
    char want[64];
    snprintf(want, sizeof(want), "seq %llu..%llu", (unsigned long long)l->base_seq[hole],
             (unsigned long long)(l->base_seq[l->count - 1] + l->records[l->count - 1] - 1));
    CHECK(strstr(t.report.message, want) != NULL);
    CHECK_EQ(rc.count, l->base_seq[hole] - 1);
    CHECK_EQ(log_next_seq(t.log), l->base_seq[hole]);
    commit_batch(&t, l->base_seq[hole] + 3, 1500);
    tlog_close(&t);
    rc = (struct replay_check){.next = 1, .max = 1500};
    REQUIRE(tlog_open_replay(&t, &rc) == 0);
    CHECK_EQ(rc.count, l->base_seq[hole] + 2);
    CHECK(!t.report.torn_tail);
    tlog_close(&t);
    /* The batch appended in always mode after the cut proves what precedes it was durable:
     * a hole before it is damage again. */
    CHECK_EQ(scan_dir(t.dir, l), 0);
    file_patch(tlog_path(&t, 1), l->offset[1], zero, sizeof(zero));
    CHECK_EQ(tlog_open(&t), LOG_ECORRUPT);
    free(l);
    tlog_destroy(&t);
}

/* Salvage never cuts below a checkpoint's anchor: the state would hold lost records and new
 * appends would reuse seqs that replay skips. */
static void test_salvage_refuses_below_anchor(void)
{
    struct sealed_case c;
    sealed_setup(&c, "recovery-salvage-anchor", false);
    REQUIRE(tlog_open(&c.t) == 0);
    int done = 0;
    REQUIRE(log_checkpoint(c.t.log, log_durable_seq_end(c.t.log), "s", 1, NULL, 0, ckpt_done,
                           &done) == 0);
    tlog_drain(&c.t);
    CHECK_EQ(done, 1);
    tlog_close(&c.t);
    uint8_t junk = 0x77;
    file_patch(tlog_path(&c.t, c.sealed_id), c.l->offset[c.first_batch + 1] + 70, &junk, 1);
    c.t.config.salvage = true;
    CHECK_EQ(tlog_open(&c.t), LOG_ECORRUPT);
    c.t.config.salvage = false;
    CHECK_EQ(tlog_open(&c.t), LOG_ECORRUPT);
    sealed_free(&c);
}

int main(void)
{
    RUN_TEST(test_torn_tail_every_offset);
    RUN_TEST(test_torn_tail_compressed);
    RUN_TEST(test_sealed_bit_flips);
    RUN_TEST(test_sealed_zeroed_block);
    RUN_TEST(test_sealed_copied_chunk);
    RUN_TEST(test_sealed_stale_generation);
    RUN_TEST(test_newest_bad_then_valid);
    RUN_TEST(test_missing_middle_segment);
    RUN_TEST(test_torn_roll_deleted);
    RUN_TEST(test_bad_checkpoint);
    RUN_TEST(test_newer_version_refused);
    RUN_TEST(test_interval_hole_is_torn_tail);
    RUN_TEST(test_salvage_refuses_below_anchor);
    return check_exit();
}
