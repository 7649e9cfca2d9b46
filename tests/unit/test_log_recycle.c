/*
 * Recycled segments (log_spare.c, scan.c; FORMAT.md "Recycled segments"): a segment a
 * checkpoint drops becomes the next spare by renames (to segment.recycle, then to
 * segment.spare) instead of an unlink, so a roll into it needs no
 * zero fill; its header says SEGMENT_FLAG_RECYCLED, and past its written part lie the older
 * segment's bytes.
 *
 * - recycle_roll: a dropped segment is renamed away at once (never unlinked), a later roll
 *   goes into it with the flag, stale bytes follow the end; a reopen reads every record, sees
 *   no torn tail and writes nothing (no zero fill of the rest).
 * - recycle_torn_tail: a batch whose payload did not land whole, over stale bytes, is cut
 *   (its own extent only, not the stale bytes after it), and the next open is clean.
 * - recycle_damage: a bad batch below a later batch of the recycled segment is still damage.
 * - recycle_unsealed_predecessor: a crash between a roll's rename and its seal leaves a
 *   recycled segment unsealed before the newest, stale bytes after its end: recovery seals it.
 * - commit_stats: the commit timings that found the tail recycling removes.
 *
 * All on memfs, whose ops stay in flight until polled, as a ring's do.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "check.h"
#include "log.h"
#include "memfs_backend.h"
#include "segment.h"

#define KIB 1024u
#define RC_SEGMENT_BYTES (64u * KIB)
#define RC_BATCH_BYTES (16u * KIB)
#define RC_RECORD_BYTES 1500u
#define RC_TURNS_MAX 10000 /* bounds every drive loop; a few hundred are used */

struct rc {
    struct memfs *fs;
    struct log *log;
    int64_t now_ns;
    uint64_t durable_end;
    int poison;
    uint32_t ckpts_done;
    int ckpt_error;
    uint64_t replay_next; /* the seq the next replayed record must have */
    uint64_t replay_bad;
    struct log_recovery_report report;
};

static int64_t rc_now(void *ctx)
{
    return ((struct rc *)ctx)->now_ns;
}

static void rc_durable(void *ctx, uint64_t end, enum log_durability level, int error)
{
    struct rc *t = ctx;
    (void)level;
    if (error != 0)
        t->poison = error;
    else if (end > t->durable_end)
        t->durable_end = end;
}

static void rc_ckpt_done(void *ctx, int error)
{
    struct rc *t = ctx;
    t->ckpts_done++;
    t->ckpt_error = error;
}

static int rc_replay(void *ctx, const struct log_record *rec)
{
    struct rc *t = ctx;
    const uint8_t *p = rec->data;
    if (t->replay_next == 0)
        t->replay_next = rec->pos.seq; /* from the checkpoint's anchor, wherever that is */
    if (rec->pos.seq != t->replay_next || rec->len != RC_RECORD_BYTES ||
        p[0] != (uint8_t)(rec->pos.seq & 0xff) || p[rec->len - 1] != p[0])
        t->replay_bad++;
    t->replay_next = rec->pos.seq + 1;
    return 0;
}

/* Open (recover) the log on t->fs; replay starts at from_seq (0: at the checkpoint's
 * anchor, wherever that is). */
static int rc_open(struct rc *t, uint64_t from_seq)
{
    struct log_config config;
    log_config_defaults(&config);
    config.dir = ".";
    config.segment_size_bytes = RC_SEGMENT_BYTES;
    config.batch_size_bytes_max = RC_BATCH_BYTES;
    config.compress = false;
    config.spare_segment = true;
    config.on_durable = rc_durable;
    config.now_ns = rc_now;
    config.ctx = t;
    t->replay_next = from_seq;
    t->replay_bad = 0;
    return log_open(&config, memfs_io(t->fs), rc_replay, t, NULL, NULL, &t->report, &t->log);
}

static void rc_settle(struct rc *t)
{
    for (int turn = 0; turn < RC_TURNS_MAX; turn++) {
        log_tick(t->log);
        if (log_idle(t->log))
            return;
        REQUIRE(io_backend_poll(memfs_io(t->fs), true) >= 0);
    }
    REQUIRE(!"the log did not settle");
}

/* Append records (content from their seq) until the log reaches seq end, then settle. */
static void rc_append_upto(struct rc *t, uint64_t end)
{
    static uint8_t body[RC_RECORD_BYTES];
    for (int turn = 0; turn < RC_TURNS_MAX && log_next_seq(t->log) < end; turn++) {
        memset(body, (int)(log_next_seq(t->log) & 0xff), sizeof(body));
        int rc = log_append(t->log, 1, body, sizeof(body), NULL);
        REQUIRE(rc == 0 || rc == -ENOBUFS);
        if (rc == -ENOBUFS) {
            log_tick(t->log);
            REQUIRE(io_backend_poll(memfs_io(t->fs), true) >= 0);
        }
    }
    rc_settle(t);
    REQUIRE(log_next_seq(t->log) == end);
}

/* Append until the log has rolled once more. */
static void rc_append_roll(struct rc *t)
{
    uint64_t current = log_current_segment_id(t->log);
    for (int turn = 0; turn < RC_TURNS_MAX && log_current_segment_id(t->log) == current; turn++)
        rc_append_upto(t, log_next_seq(t->log) + 1);
    REQUIRE(log_current_segment_id(t->log) != current);
}

/* Checkpoint at the durable end, dropping the oldest segment. */
static void rc_checkpoint_drop_oldest(struct rc *t)
{
    REQUIRE(log_segment_count(t->log) >= 2);
    uint64_t drop[1] = {log_segment_id(t->log, 0)};
    uint32_t before = t->ckpts_done;
    REQUIRE(log_checkpoint(t->log, log_durable_seq_end(t->log), "s", 1, drop, 1, rc_ckpt_done,
                           t) == 0);
    rc_settle(t);
    REQUIRE(t->ckpts_done == before + 1);
    CHECK_EQ(t->ckpt_error, 0);
}

static bool rc_header(const struct memfs *fs, uint64_t id, struct segment_header *h)
{
    char name[SEGMENT_NAME_LEN + 1];
    segment_name(id, name);
    const uint8_t *data;
    uint64_t size;
    return memfs_file(fs, name, &data, &size) && segment_header_check(data, id, h) == SEGMENT_OK;
}

/* Ops of kind on path among [from, to) that succeeded. */
static uint32_t rc_ops(const struct memfs *fs, enum io_op_kind kind, const char *path,
                       uint64_t from)
{
    uint32_t n = 0;
    for (uint64_t i = from; i < memfs_op_count(fs); i++) {
        struct memfs_op_info info;
        memfs_op_get(fs, i, &info);
        if (info.kind == kind && info.result >= 0 &&
            (path == NULL || (info.path != NULL && strcmp(info.path, path) == 0)))
            n++;
    }
    return n;
}

/*
 * Build a log whose newest segment is recycled (its file held segment 1) and holds a few
 * batches, with segment 1's stale bytes after them. Returns the newest segment's id.
 */
static uint64_t rc_build(struct rc *t)
{
    memset(t, 0, sizeof(*t));
    t->now_ns = 1000000000;
    t->fs = memfs_create();
    REQUIRE(rc_open(t, 1) == 0);
    rc_settle(t);                  /* the first spare: a fresh, zero-filled one */
    rc_append_roll(t);             /* segment 1 full, into the fresh spare */
    rc_checkpoint_drop_oldest(t);  /* segment 1 dropped: kept for the spare */
    CHECK_EQ(rc_ops(t->fs, IO_UNLINK, "00000000000000000001.seg", 0), 0);
    const uint8_t *data;
    uint64_t size;
    CHECK(!memfs_file(t->fs, "00000000000000000001.seg", &data, &size)); /* gone at once */
    CHECK(memfs_file(t->fs, "segment.recycle", &data, &size));
    rc_append_roll(t);             /* into a fresh spare made meanwhile; then 1 is recycled */
    CHECK_EQ(rc_ops(t->fs, IO_RENAME, "00000000000000000001.seg", 0), 1);
    CHECK_EQ(rc_ops(t->fs, IO_RENAME, "segment.recycle", 0), 1);
    rc_append_roll(t);             /* into the recycled file */
    CHECK_EQ(log_commit_stats(t->log)->spares_reused, 1);
    CHECK(log_commit_stats(t->log)->spares_zeroed >= 1);
    uint64_t newest = log_current_segment_id(t->log);
    rc_append_upto(t, log_next_seq(t->log) + 6); /* a few batches, far less than segment 1 */
    struct segment_header h;
    REQUIRE(rc_header(t->fs, newest, &h));
    CHECK_EQ(h.version, SEGMENT_VERSION);
    CHECK(segment_recycled(&h));
    return newest;
}

/* Flip bits of one byte of segment id at offset (durably, through the backend). */
static void rc_patch(struct memfs *fs, uint64_t id, uint64_t offset, uint8_t xor)
{
    char name[SEGMENT_NAME_LEN + 1];
    segment_name(id, name);
    const uint8_t *data;
    uint64_t size;
    REQUIRE(memfs_file(fs, name, &data, &size));
    REQUIRE(offset < size);
    uint8_t byte = data[offset] ^ xor;
    int fd = io_sync_open(memfs_io(fs), name, O_RDWR, 0);
    REQUIRE(fd >= 0);
    REQUIRE(io_sync_pwrite(memfs_io(fs), fd, &byte, 1, offset) == 1);
    REQUIRE(io_sync_simple(memfs_io(fs), IO_FDATASYNC, fd) == 0);
    REQUIRE(io_sync_simple(memfs_io(fs), IO_CLOSE, fd) == 0);
}

/* The last batch of segment id: its offset and header. */
static uint64_t rc_last_batch(const struct memfs *fs, uint64_t id, struct batch_header *last)
{
    char name[SEGMENT_NAME_LEN + 1];
    segment_name(id, name);
    const uint8_t *data;
    uint64_t size;
    REQUIRE(memfs_file(fs, name, &data, &size));
    struct segment_header sh;
    REQUIRE(segment_header_check(data, id, &sh) == SEGMENT_OK);
    uint64_t off = SEGMENT_HEADER_SIZE, last_off = 0;
    struct batch_header h;
    while (off + BATCH_ALIGN <= size &&
           batch_header_check_seeded(data + off, id, segment_hash_seed(&sh), &h) == BATCH_OK) {
        *last = h;
        last_off = off;
        off += h.total_len;
    }
    REQUIRE(last_off != 0);
    return last_off;
}

/* The offset after the last batch (or seal) of segment id: the end of its written part. */
static uint64_t rc_end_offset(const struct memfs *fs, uint64_t id)
{
    struct batch_header last;
    return rc_last_batch(fs, id, &last) + last.total_len;
}

static void test_recycle_roll(void)
{
    struct rc t;
    uint64_t newest = rc_build(&t);
    uint64_t end_seq = log_next_seq(t.log);
    /* Stale bytes of segment 1 lie after the newest segment's last batch. */
    uint64_t end = rc_end_offset(t.fs, newest);
    char name[SEGMENT_NAME_LEN + 1];
    segment_name(newest, name);
    const uint8_t *data;
    uint64_t size;
    REQUIRE(memfs_file(t.fs, name, &data, &size));
    REQUIRE(end + BATCH_ALIGN <= size);
    uint32_t magic;
    memcpy(&magic, data + end, sizeof(magic));
    CHECK_EQ(magic, BATCH_MAGIC);
    REQUIRE(log_close(t.log) == 0);
    CHECK_EQ(t.poison, 0);
    /* A clean reopen: every record since the checkpoint, no torn tail, no zero fill. */
    uint64_t ops = memfs_op_count(t.fs);
    REQUIRE(rc_open(&t, 0) == 0);
    CHECK(!t.report.torn_tail);
    CHECK_EQ(t.replay_bad, 0);
    CHECK_EQ(t.replay_next, end_seq);
    CHECK_EQ(log_next_seq(t.log), end_seq);
    CHECK_EQ(rc_ops(t.fs, IO_WRITE, NULL, ops), 0);
    /* And the log goes on: more rolls, recycled ones too, and a reopen. */
    rc_checkpoint_drop_oldest(&t);
    rc_append_roll(&t);
    rc_append_roll(&t);
    end_seq = log_next_seq(t.log);
    REQUIRE(log_close(t.log) == 0);
    REQUIRE(rc_open(&t, 0) == 0);
    CHECK(!t.report.torn_tail);
    CHECK_EQ(t.replay_bad, 0);
    CHECK_EQ(log_next_seq(t.log), end_seq);
    REQUIRE(log_close(t.log) == 0);
    io_backend_destroy(memfs_io(t.fs));
}

static void test_recycle_torn_tail(void)
{
    struct rc t;
    uint64_t newest = rc_build(&t);
    REQUIRE(log_close(t.log) == 0);
    /* The last batch's payload did not land whole (a flipped byte stands for stale bytes
     * under it): a torn tail, cut over its own extent only (not the stale bytes after it). */
    struct batch_header h;
    uint64_t last = rc_last_batch(t.fs, newest, &h);
    rc_patch(t.fs, newest, last + BATCH_HEADER_SIZE + 100, 0x5a);
    REQUIRE(rc_open(&t, 0) == 0);
    CHECK(t.report.torn_tail);
    CHECK_EQ(t.report.torn_segment_id, newest);
    CHECK_EQ(t.report.torn_offset, last);
    CHECK_EQ(t.report.torn_bytes, h.total_len);
    CHECK_EQ(t.replay_bad, 0);
    CHECK_EQ(log_next_seq(t.log), h.base_seq);
    REQUIRE(log_close(t.log) == 0);
    /* Cut for good: the next open is clean. */
    REQUIRE(rc_open(&t, 0) == 0);
    CHECK(!t.report.torn_tail);
    CHECK_EQ(log_next_seq(t.log), h.base_seq);
    REQUIRE(log_close(t.log) == 0);
    /* A torn header of the segment's own (its id still there, its hash wrong) is cut too. */
    last = rc_last_batch(t.fs, newest, &h);
    rc_patch(t.fs, newest, last + 50, 0x01);
    REQUIRE(rc_open(&t, 0) == 0);
    CHECK(t.report.torn_tail);
    CHECK_EQ(t.report.torn_offset, last);
    CHECK_EQ(log_next_seq(t.log), h.base_seq);
    REQUIRE(log_close(t.log) == 0);
    io_backend_destroy(memfs_io(t.fs));
}

static void test_recycle_damage(void)
{
    struct rc t;
    uint64_t newest = rc_build(&t);
    REQUIRE(log_close(t.log) == 0);
    /* The first batch of the recycled segment goes bad: later batches' sync points lie
     * beyond it, so it was durable once: damage, not a torn tail. */
    rc_patch(t.fs, newest, SEGMENT_HEADER_SIZE + BATCH_HEADER_SIZE + 100, 0x5a);
    CHECK_EQ(rc_open(&t, 0), LOG_ECORRUPT);
    CHECK(strstr(t.report.message, "bad_payload") != NULL);
    /* Its header gone instead (stale-looking: no magic): still damage. */
    rc_patch(t.fs, newest, SEGMENT_HEADER_SIZE + BATCH_HEADER_SIZE + 100, 0x5a);
    rc_patch(t.fs, newest, SEGMENT_HEADER_SIZE, 0xff);
    CHECK_EQ(rc_open(&t, 0), LOG_ECORRUPT);
    CHECK(strstr(t.report.message, "followed by a valid batch") != NULL);
    io_backend_destroy(memfs_io(t.fs));
}

/* A crash after the roll into a recycled file named it, before the old segment's seal: the
 * old segment (recycled too) ends unsealed at stale bytes; recovery seals it. */
static void test_recycle_unsealed_predecessor(void)
{
    struct rc t;
    rc_build(&t);
    /* Roll (dropping the oldest segment each time) until two recycled segments follow one
     * another: the current one and its predecessor. */
    struct segment_header h, ph;
    bool both = false;
    for (int round = 0; round < 8 && !both; round++) {
        rc_checkpoint_drop_oldest(&t);
        rc_append_roll(&t);
        REQUIRE(rc_header(t.fs, log_current_segment_id(t.log), &h));
        both = segment_recycled(&h) && rc_header(t.fs, h.prev_segment_id, &ph) &&
               segment_recycled(&ph);
    }
    REQUIRE(both);
    uint64_t end_seq = log_next_seq(t.log);
    REQUIRE(log_close(t.log) == 0);
    /* Take back the predecessor's seal: its magic gone, it reads as a stale block. */
    uint64_t prev = h.prev_segment_id;
    struct batch_header last;
    uint64_t seal = rc_last_batch(t.fs, prev, &last);
    REQUIRE((last.flags & BATCH_FLAG_SEAL) != 0);
    rc_patch(t.fs, prev, seal, 0xff);
    REQUIRE(rc_open(&t, 0) == 0);
    CHECK(!t.report.torn_tail);
    CHECK_EQ(t.replay_bad, 0);
    CHECK_EQ(log_next_seq(t.log), end_seq);
    REQUIRE(log_close(t.log) == 0);
    uint64_t seal_again = rc_last_batch(t.fs, prev, &last);
    CHECK_EQ(seal_again, seal);
    CHECK((last.flags & BATCH_FLAG_SEAL) != 0); /* recovery wrote the seal again */
    io_backend_destroy(memfs_io(t.fs));
}

/* The commit timings (log_commit_stats): every commit lands in the histogram; a slow one is
 * counted, and attributed to what ran beside it (here a roll, then a checkpoint). */
static void test_commit_stats(void)
{
    struct rc t;
    memset(&t, 0, sizeof(t));
    t.now_ns = 1000000000;
    t.fs = memfs_create();
    REQUIRE(rc_open(&t, 1) == 0);
    rc_settle(&t);
    rc_append_upto(&t, 11);
    const struct log_commit_stats *st = log_commit_stats(t.log);
    CHECK(st->commits >= 1);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < LOG_COMMIT_HIST_BUCKETS; i++)
        sum += st->hist[i];
    CHECK_EQ(sum, st->commits);
    CHECK_EQ(st->slow, 0); /* the injected clock stood still */
    /* A commit whose completion comes 20 ms (of the injected clock) after its start. */
    static uint8_t body[RC_RECORD_BYTES];
    memset(body, 11, sizeof(body));
    REQUIRE(log_append(t.log, 1, body, sizeof(body), NULL) == 0);
    log_tick(t.log); /* starts the commit */
    t.now_ns += 20 * 1000 * 1000;
    rc_settle(&t);
    CHECK_EQ(st->slow, 1);
    CHECK(st->max_ns >= 20 * 1000 * 1000);
    CHECK_EQ(st->slow_checkpoint + st->slow_roll + st->slow_spare_zero + st->slow_read, 0);
    /* A slow commit while a checkpoint runs, and a slow roll. */
    rc_append_roll(&t);
    memset(body, (int)(log_next_seq(t.log) & 0xff), sizeof(body));
    REQUIRE(log_append(t.log, 1, body, sizeof(body), NULL) == 0);
    uint64_t drop[1] = {log_segment_id(t.log, 0)};
    REQUIRE(log_checkpoint(t.log, log_durable_seq_end(t.log), "s", 1, drop, 1, rc_ckpt_done,
                           &t) == 0);
    log_tick(t.log);
    t.now_ns += 20 * 1000 * 1000;
    rc_settle(&t);
    CHECK_EQ(st->slow, 2);
    CHECK_EQ(st->slow_checkpoint, 1);
    uint64_t current = log_current_segment_id(t.log);
    for (int turn = 0; turn < RC_TURNS_MAX && log_current_segment_id(t.log) == current;
         turn++) {
        memset(body, (int)(log_next_seq(t.log) & 0xff), sizeof(body));
        int rc = log_append(t.log, 1, body, sizeof(body), NULL);
        REQUIRE(rc == 0 || rc == -ENOBUFS);
        log_tick(t.log);
        t.now_ns += 20 * 1000 * 1000; /* every commit slow: the roll's too */
        REQUIRE(io_backend_poll(memfs_io(t.fs), true) >= 0);
    }
    rc_settle(&t);
    CHECK(st->slow_roll >= 1);
    CHECK_EQ(log_close(t.log), 0);
    io_backend_destroy(memfs_io(t.fs));
}

int main(void)
{
    RUN_TEST(test_recycle_roll);
    RUN_TEST(test_recycle_torn_tail);
    RUN_TEST(test_recycle_damage);
    RUN_TEST(test_recycle_unsealed_predecessor);
    RUN_TEST(test_commit_stats);
    return check_exit();
}
