/* The engine through its public API on real files: group commit, back pressure, rolls,
 * replay, reads, checkpoints, the lock and the durability modes. */
#include "batch.h"
#include "fault_backend.h"
#include "log_util.h"

#include <liburing.h>

#include <sys/stat.h>
#include <unistd.h>

#define KIB 1024u

static void test_append_commit_durable(void)
{
    struct tlog t;
    tlog_init(&t, "log-basic", 1024 * KIB, 64 * KIB);
    REQUIRE(tlog_open(&t) == 0);
    CHECK_EQ(log_next_seq(t.log), 1);
    CHECK_EQ(log_durable_seq_end(t.log), 1);
    CHECK_EQ(log_segment_count(t.log), 1);
    CHECK_EQ(log_current_segment_id(t.log), 1);
    tlog_append_upto(&t, 11, 100);
    CHECK_EQ(log_durable_seq_end(t.log), 1);
    CHECK(!log_idle(t.log));
    tlog_drain(&t);
    CHECK_EQ(log_durable_seq_end(t.log), 11);
    CHECK_EQ(t.durable_end, 11);
    CHECK_EQ(t.last_level, LOG_DURABLE_SYNCED);
    CHECK_EQ(t.durable_calls, 1);
    CHECK_EQ(log_record_footprint(10), 18);
    struct log_pos pos;
    uint8_t big[1];
    CHECK_EQ(log_append(t.log, 1, big, 64 * KIB, &pos), LOG_ETOOBIG);
    tlog_destroy(&t);
}

struct batch_offsets {
    uint64_t offsets[LOG_COMMITS_IN_FLIGHT_MAX + 4];
    uint32_t count;
};

static int note_batch_offset(void *ctx, uint64_t segment_id, uint64_t offset, uint64_t base_seq,
                             uint32_t record_count, uint32_t stored_len, uint32_t raw_len,
                             uint8_t codec)
{
    struct batch_offsets *b = ctx;
    if (b->count < sizeof(b->offsets) / sizeof(b->offsets[0]))
        b->offsets[b->count] = offset;
    b->count++;
    return 0;
}

/* The sync point (batch_synced_floor) of the batch at offset of segment 1's file in dir. */
static uint64_t batch_sync_point(const char *dir, uint64_t offset)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/00000000000000000001.seg", dir);
    FILE *f = fopen(path, "rb");
    REQUIRE(f != NULL);
    uint8_t block[BATCH_HEADER_SIZE];
    REQUIRE(fseek(f, (long)offset, SEEK_SET) == 0);
    REQUIRE(fread(block, 1, sizeof(block), f) == sizeof(block));
    fclose(f);
    struct batch_header h;
    batch_header_decode(block, &h);
    return batch_synced_floor(&h, offset);
}

/* Group commit with LOG_COMMITS_IN_FLIGHT_MAX commits in flight: each tick with records puts
 * one more out until every slot is taken, the next batch waits for a slot, and a batch built
 * while earlier ones were in flight records the oldest of them as its sync point, not itself. */
static void test_group_commit(void)
{
    enum { FLIGHTS = LOG_COMMITS_IN_FLIGHT_MAX, PER_BATCH = 100 };
    struct tlog t;
    tlog_init(&t, "log-group", 1024 * KIB, 64 * KIB);
    REQUIRE(tlog_open(&t) == 0);
    uint64_t end = 1;
    for (uint32_t i = 0; i <= FLIGHTS; i++) {
        end += PER_BATCH;
        tlog_append_upto(&t, end, 100);
        log_tick(t.log); /* batch i goes out beside the others; the last one finds no slot */
    }
    CHECK_EQ(log_durable_seq_end(t.log), 1);
    /* Every write and sync completes: the batches land in order, and the one that waited
     * starts the moment the first has landed. */
    REQUIRE(io_backend_poll(t.io, true) >= 0);
    CHECK_EQ(log_durable_seq_end(t.log), end - PER_BATCH);
    CHECK(!log_idle(t.log));
    tlog_drain(&t);
    CHECK_EQ(log_durable_seq_end(t.log), end);
    CHECK_EQ(t.durable_calls, FLIGHTS + 1);
    tlog_close(&t);
    struct io_backend *io;
    REQUIRE(posix_backend_create(t.dir, false, &io) == 0);
    struct batch_offsets b = {0};
    struct log_scan_callbacks cb = {.batch = note_batch_offset, .ctx = &b};
    CHECK_EQ(log_scan(io, &cb), 0);
    io_backend_destroy(io);
    REQUIRE(b.count == FLIGHTS + 1);
    /* Batch 0 (nothing in flight before it) claims its own offset; batches 1.. built while
     * batch 0 was in flight claim batch 0's; the last, started once batch 0 landed while
     * batch 1 was still in flight, claims batch 1's. */
    CHECK_EQ(batch_sync_point(t.dir, b.offsets[0]), b.offsets[0]);
    for (uint32_t i = 1; i < FLIGHTS; i++)
        CHECK_EQ(batch_sync_point(t.dir, b.offsets[i]), b.offsets[0]);
    CHECK_EQ(batch_sync_point(t.dir, b.offsets[FLIGHTS]), b.offsets[1]);
    tlog_destroy(&t);
}

/* commits_in_flight 1: the second commit waits for the first, as before pipelining; and a
 * value out of range is refused at open. */
static void test_one_commit_in_flight(void)
{
    struct tlog t;
    tlog_init(&t, "log-one-flight", 1024 * KIB, 64 * KIB);
    t.config.commits_in_flight = 1;
    REQUIRE(tlog_open(&t) == 0);
    tlog_append_upto(&t, 2, 100);
    log_tick(t.log); /* commit 1 in flight */
    tlog_append_upto(&t, 202, 100);
    log_tick(t.log); /* no second commit while one is in flight */
    REQUIRE(io_backend_poll(t.io, true) >= 0); /* commit 1 lands; commit 2 starts */
    CHECK_EQ(log_durable_seq_end(t.log), 2);
    tlog_drain(&t);
    CHECK_EQ(log_durable_seq_end(t.log), 202);
    CHECK_EQ(t.durable_calls, 2);
    tlog_close(&t);
    tlog_destroy(&t);
    for (uint32_t bad = 0; bad <= LOG_COMMITS_IN_FLIGHT_MAX + 1; bad += LOG_COMMITS_IN_FLIGHT_MAX + 1) {
        tlog_init(&t, "log-flight-bad", 1024 * KIB, 64 * KIB);
        t.config.commits_in_flight = bad;
        CHECK_EQ(tlog_open(&t), -EINVAL);
        tlog_destroy(&t);
    }
}

static void test_back_pressure(void)
{
    struct tlog t;
    tlog_init(&t, "log-enobufs", 256 * KIB, 16 * KIB);
    REQUIRE(tlog_open(&t) == 0);
    uint8_t body[1000] = {0};
    struct log_pos pos;
    int n = 0, r;
    while ((r = log_append(t.log, 1, body, sizeof(body), &pos)) == 0)
        n++;
    CHECK_EQ(r, -ENOBUFS);
    CHECK_EQ(n, (16 * KIB - 64) / 1008);
    CHECK_EQ(log_next_seq(t.log), (uint64_t)n + 1);
    tlog_drain(&t);
    CHECK_EQ(log_durable_seq_end(t.log), (uint64_t)n + 1);
    CHECK_EQ(log_append(t.log, 1, body, sizeof(body), &pos), 0);
    CHECK_EQ(pos.seq, (uint64_t)n + 1);
    tlog_destroy(&t);
}

/* 64 KiB segments, 16 KiB batches: thousands of records over many segments. */
static void test_roll_and_replay(void)
{
    struct tlog t;
    tlog_init(&t, "log-roll", 64 * KIB, 16 * KIB);
    t.config.compress = false; /* many segments */
    REQUIRE(tlog_open(&t) == 0);
    tlog_append_upto(&t, 3001, 700);
    tlog_drain(&t);
    CHECK_EQ(log_durable_seq_end(t.log), 3001);
    uint32_t segments = log_segment_count(t.log);
    CHECK(segments > 10);
    for (uint32_t i = 1; i < segments; i++)
        CHECK(log_segment_id(t.log, i) > log_segment_id(t.log, i - 1));
    tlog_close(&t);
    struct replay_check rc = {.next = 1, .max = 700};
    REQUIRE(tlog_open_replay(&t, &rc) == 0);
    CHECK_EQ(rc.count, 3000);
    CHECK_EQ(rc.bad, 0);
    CHECK_EQ(log_next_seq(t.log), 3001);
    CHECK_EQ(log_segment_count(t.log), segments);
    CHECK(!t.report.torn_tail);
    CHECK_EQ(t.report.record_count, 3000);
    /* Appends continue where the log ended, and survive another reopen. */
    tlog_append_upto(&t, 3501, 700);
    tlog_drain(&t);
    tlog_close(&t);
    rc = (struct replay_check){.next = 1, .max = 700};
    REQUIRE(tlog_open_replay(&t, &rc) == 0);
    CHECK_EQ(rc.count, 3500);
    CHECK_EQ(rc.bad, 0);
    tlog_destroy(&t);
}

struct read_result {
    int calls;
    int error;
    bool match;
    uint64_t seq;
};

static void read_done(void *ctx, int error, const struct log_record *record)
{
    struct read_result *r = ctx;
    r->calls++;
    r->error = error;
    r->match = error == 0 && record->pos.seq == r->seq && rec_matches(record, 3000);
}

static void read_done_1500(void *ctx, int error, const struct log_record *record)
{
    struct read_result *r = ctx;
    r->calls++;
    r->error = error;
    r->match = error == 0 && record->pos.seq == r->seq && rec_matches(record, 1500);
}

/* Append records 1..count-1 (generator lengths < 3000), keeping each one's location. */
static void append_with_pos(struct tlog *t, struct log_pos *pos, uint64_t count)
{
    uint8_t buf[65536];
    for (uint64_t seq = 1; seq < count; seq++) {
        uint32_t len = rec_len(seq, 3000);
        rec_fill(seq, buf, len);
        int r;
        while ((r = log_append(t->log, rec_type(seq), buf, len, &pos[seq])) == -ENOBUFS) {
            log_tick(t->log);
            REQUIRE(io_backend_poll(t->io, true) >= 0);
        }
        REQUIRE(r == 0);
    }
}

static void test_read_old_segments(void)
{
    struct tlog t;
    tlog_init(&t, "log-read", 64 * KIB, 16 * KIB);
    t.config.compress = true;
    REQUIRE(tlog_open(&t) == 0);
    struct log_pos pos[600];
    append_with_pos(&t, pos, 600);
    struct read_result res = {.seq = 599};
    CHECK_EQ(log_read(t.log, &pos[599], read_done, &res), -EAGAIN); /* not durable yet */
    tlog_drain(&t);
    CHECK(log_segment_count(t.log) > 5);
    for (uint64_t seq = 1; seq < 600; seq += 7) {
        res = (struct read_result){.seq = seq};
        REQUIRE(log_read(t.log, &pos[seq], read_done, &res) == 0);
        CHECK_EQ(res.calls, 0); /* never from inside the call */
        tlog_drain(&t);
        CHECK_EQ(res.calls, 1);
        CHECK_EQ(res.error, 0);
        CHECK(res.match);
    }
    /* A wrong location is refused, not misread. */
    struct log_pos bad = pos[10];
    bad.seq = pos[590].seq;
    res = (struct read_result){.seq = bad.seq};
    REQUIRE(log_read(t.log, &bad, read_done, &res) == 0);
    tlog_drain(&t);
    CHECK_EQ(res.error, LOG_ECORRUPT);
    bad = pos[10];
    bad.segment_id = 2; /* no segment starts at seq 2 */
    CHECK_EQ(log_read(t.log, &bad, read_done, &res), -ENOENT);
    tlog_destroy(&t);
}

struct batch_read_result {
    int each_calls;
    int done_calls;
    int error;
    uint64_t first_seq, last_seq;
    bool match; /* every record in seq order with the bytes appended */
    bool same_batch;
    struct log_pos want;
};

static void batch_each(void *ctx, const struct log_record *record)
{
    struct batch_read_result *r = ctx;
    if (r->each_calls == 0)
        r->first_seq = record->pos.seq;
    else if (record->pos.seq != r->last_seq + 1)
        r->match = false;
    r->last_seq = record->pos.seq;
    r->each_calls++;
    if (!rec_matches(record, 3000))
        r->match = false;
    if (record->pos.segment_id != r->want.segment_id ||
        record->pos.batch_offset != r->want.batch_offset)
        r->same_batch = false;
}

static void batch_done(void *ctx, int error, const struct log_record *record)
{
    struct batch_read_result *r = ctx;
    r->done_calls++;
    r->error = error;
    if (record != NULL)
        r->match = false;
}

/* log_read_batch hands over every record of the batch that holds pos, once, in seq order,
 * with the batch's location; a bad location gets done(LOG_ECORRUPT) and no record. */
static void test_read_batch(void)
{
    struct tlog t;
    tlog_init(&t, "log-read-batch", 64 * KIB, 16 * KIB);
    t.config.compress = true;
    REQUIRE(tlog_open(&t) == 0);
    struct log_pos pos[300];
    append_with_pos(&t, pos, 300);
    tlog_drain(&t);
    for (uint64_t seq = 1; seq < 300; seq += 13) {
        struct batch_read_result res = {.match = true, .same_batch = true, .want = pos[seq]};
        REQUIRE(log_read_batch(t.log, &pos[seq], batch_each, batch_done, &res) == 0);
        CHECK_EQ(res.done_calls, 0);
        tlog_drain(&t);
        CHECK_EQ(res.done_calls, 1);
        CHECK_EQ(res.error, 0);
        CHECK(res.match && res.same_batch);
        CHECK(res.first_seq <= seq && seq <= res.last_seq);
        /* The batch is whole: its neighbours in the log are in other batches. */
        uint64_t count = 0;
        for (uint64_t s2 = 1; s2 < 300; s2++)
            if (pos[s2].segment_id == pos[seq].segment_id &&
                pos[s2].batch_offset == pos[seq].batch_offset)
                count++;
        CHECK_EQ((uint64_t)res.each_calls, count);
    }
    struct log_pos bad = pos[10];
    bad.seq = pos[290].seq;
    struct batch_read_result res = {.match = true, .same_batch = true, .want = bad};
    REQUIRE(log_read_batch(t.log, &bad, batch_each, batch_done, &res) == 0);
    tlog_drain(&t);
    CHECK_EQ(res.error, LOG_ECORRUPT);
    CHECK_EQ(res.each_calls, 0);
    tlog_destroy(&t);
}

static void ckpt_done(void *ctx, int error)
{
    int *out = ctx;
    *out = error == 0 ? 1 : error;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void test_checkpoint_drop_reopen(void)
{
    struct tlog t;
    tlog_init(&t, "log-ckpt", 64 * KIB, 16 * KIB);
    REQUIRE(tlog_open(&t) == 0);
    tlog_append_upto(&t, 2001, 700);
    tlog_drain(&t);
    uint32_t n = log_segment_count(t.log);
    REQUIRE(n >= 6);
    uint64_t ids[64];
    for (uint32_t i = 0; i < n; i++)
        ids[i] = log_segment_id(t.log, i);
    uint64_t anchor = ids[4] + 3; /* inside segment 4: segments 0..3 are all below it */
    /* Out of order, and not the first: 3 and 1 go, 0 and 2 stay. */
    uint64_t drop[2] = {ids[3], ids[1]};
    uint64_t bad_drop[1] = {ids[4]};
    int done = 0;
    CHECK_EQ(log_checkpoint(t.log, anchor, "state", 5, bad_drop, 1, ckpt_done, &done), -EINVAL);
    CHECK_EQ(log_checkpoint(t.log, log_durable_seq_end(t.log) + 1, "s", 1, NULL, 0, ckpt_done,
                            &done), -EINVAL);
    REQUIRE(log_checkpoint(t.log, anchor, "state", 5, drop, 2, ckpt_done, &done) == 0);
    CHECK_EQ(log_checkpoint(t.log, anchor, "x", 1, NULL, 0, ckpt_done, &done), -EBUSY);
    CHECK_EQ(done, 0);
    tlog_drain(&t);
    CHECK_EQ(done, 1);
    CHECK_EQ(log_segment_count(t.log), n - 2);
    CHECK(!file_exists(tlog_path(&t, ids[3])));
    CHECK(!file_exists(tlog_path(&t, ids[1])));
    CHECK(file_exists(tlog_path(&t, ids[2])));
    tlog_append_upto(&t, 2201, 700);
    tlog_drain(&t);
    tlog_close(&t);

    struct replay_check rc = {.next = anchor, .max = 700};
    REQUIRE(tlog_open_replay(&t, &rc) == 0);
    CHECK_EQ(rc.count, 2200 - anchor + 1);
    CHECK_EQ(rc.bad, 0);
    CHECK_EQ(t.ckpt_len, 5);
    CHECK(t.ckpt != NULL && memcmp(t.ckpt, "state", 5) == 0);
    for (uint32_t i = 0; i < log_segment_count(t.log); i++)
        CHECK(log_segment_id(t.log, i) != ids[1] && log_segment_id(t.log, i) != ids[3]);
    tlog_close(&t);

    /* A dropped segment whose unlink was lost comes back: recovery deletes it again. */
    char *path = strdup(tlog_path(&t, ids[2]));
    char *again = strdup(tlog_path(&t, ids[1]));
    char cmd[8300];
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", path, again);
    CHECK_EQ(system(cmd), 0); /* any bytes: it is not listed, older than the anchor */
    rc = (struct replay_check){.next = anchor, .max = 700};
    REQUIRE(tlog_open_replay(&t, &rc) == 0);
    CHECK(!file_exists(again));
    CHECK_EQ(rc.bad, 0);
    tlog_close(&t);

    /* A listed segment that is missing is damage, not something to skip. */
    CHECK_EQ(unlink(path), 0);
    CHECK_EQ(tlog_open(&t), LOG_ECORRUPT);
    CHECK(strstr(t.report.message, "missing_segment") != NULL);
    t.config.salvage = true; /* nothing verified to keep before that damage: still refused */
    CHECK_EQ(tlog_open(&t), LOG_ECORRUPT);
    t.config.salvage = false;
    free(path);
    free(again);
    tlog_destroy(&t);
}

static void test_second_open_locked(void)
{
    struct tlog t;
    tlog_init(&t, "log-lock", 256 * KIB, 16 * KIB);
    REQUIRE(tlog_open(&t) == 0);
    struct io_backend *io2;
    REQUIRE(posix_backend_create(t.dir, false, &io2) == 0);
    struct log *log2 = NULL;
    CHECK_EQ(log_open(&t.config, io2, NULL, NULL, NULL, NULL, NULL, &log2), LOG_ELOCKED);
    CHECK(log2 == NULL);
    io_backend_destroy(io2);
    tlog_destroy(&t);
}

static void test_interval_and_none_modes(void)
{
    struct tlog t;
    tlog_init(&t, "log-interval", 256 * KIB, 16 * KIB);
    t.config.sync_mode = LOG_SYNC_INTERVAL;
    t.config.sync_interval_ms = 50;
    t.now = 1000000000;
    REQUIRE(tlog_open(&t) == 0);
    tlog_append_upto(&t, 11, 100);
    tlog_drain(&t);
    CHECK_EQ(t.durable_end, 11);
    CHECK_EQ(t.last_level, LOG_DURABLE_WRITTEN);
    CHECK_EQ(log_next_deadline_ns(t.log), 1000000000 + 50 * 1000000);
    t.now += 49 * 1000000;
    log_tick(t.log);
    tlog_drain(&t);
    CHECK_EQ(t.last_level, LOG_DURABLE_WRITTEN);
    t.now += 1000000;
    log_tick(t.log);
    tlog_drain(&t);
    CHECK_EQ(t.last_level, LOG_DURABLE_SYNCED);
    CHECK_EQ(t.durable_end, 11);
    CHECK_EQ(log_next_deadline_ns(t.log), INT64_MAX);
    /* A checkpoint anchored above the synced watermark syncs the log first. */
    tlog_append_upto(&t, 16, 100);
    tlog_drain(&t);
    CHECK_EQ(t.last_level, LOG_DURABLE_WRITTEN);
    int done = 0;
    REQUIRE(log_checkpoint(t.log, 16, "i", 1, NULL, 0, ckpt_done, &done) == 0);
    tlog_drain(&t);
    CHECK_EQ(done, 1);
    CHECK_EQ(t.last_level, LOG_DURABLE_SYNCED);
    CHECK_EQ(log_next_deadline_ns(t.log), INT64_MAX);
    tlog_destroy(&t);

    tlog_init(&t, "log-none", 256 * KIB, 16 * KIB);
    t.config.sync_mode = LOG_SYNC_NONE;
    REQUIRE(tlog_open(&t) == 0);
    tlog_append_upto(&t, 21, 100);
    tlog_drain(&t);
    CHECK_EQ(t.durable_end, 21);
    CHECK_EQ(t.last_level, LOG_DURABLE_WRITTEN);
    CHECK_EQ(log_next_deadline_ns(t.log), INT64_MAX);
    tlog_close(&t);
    struct replay_check rc = {.next = 1, .max = 100};
    t.config.sync_mode = LOG_SYNC_ALWAYS;
    REQUIRE(tlog_open_replay(&t, &rc) == 0);
    CHECK_EQ(rc.count, 20);
    tlog_destroy(&t);
}

static void test_bad_config(void)
{
    struct tlog t;
    tlog_init(&t, "log-config", 64 * KIB, 32 * KIB); /* batch > segment / 4 */
    CHECK_EQ(tlog_open(&t), -EINVAL);
    tlog_config(&t, 64 * KIB + 100, 16 * KIB);
    CHECK_EQ(tlog_open(&t), -EINVAL);
    tlog_destroy(&t);
}

/* Open t's log through a fault wrapper around a fresh POSIX backend. */
static struct io_backend *open_faulty(struct tlog *t, const struct fault_config *fault,
                                      struct io_backend **inner)
{
    REQUIRE(posix_backend_create(t->dir, true, inner) == 0);
    struct io_backend *io = fault_backend_create(*inner, fault);
    t->io = io;
    /* The faults count the commits' ops: no zero-fill writes and syncs before them
     * (test_zero_segments covers those). */
    t->config.zero_segments = false;
    int rc = log_open(&t->config, io, NULL, NULL, NULL, NULL, &t->report, &t->log);
    if (rc != 0)
        fprintf(stderr, "open through the fault backend: %s\n", log_strerror(rc));
    REQUIRE(rc == 0);
    t->durable_end = log_durable_seq_end(t->log);
    t->durable_calls = 0;
    return io;
}

static void close_faulty(struct tlog *t, struct io_backend *inner, int expect)
{
    CHECK_EQ(log_close(t->log), expect);
    t->log = NULL;
    io_backend_destroy(t->io);
    io_backend_destroy(inner);
    t->io = NULL;
}

static void reopen_count(struct tlog *t, uint64_t records, uint32_t max)
{
    struct replay_check rc = {.next = 1, .max = max};
    REQUIRE(tlog_open_replay(t, &rc) == 0);
    CHECK_EQ(rc.count, records);
    CHECK_EQ(rc.bad, 0);
    tlog_close(t);
}

static void test_short_write_completed(void)
{
    struct tlog t;
    tlog_init(&t, "log-short", 256 * KIB, 64 * KIB);
    REQUIRE(tlog_open(&t) == 0); /* make segment 1 */
    tlog_close(&t);
    struct io_backend *inner;
    struct fault_config fault = {.kind = FAULT_SHORT_WRITE, .op_mask = FAULT_OPS_WRITES,
                                 .fail_at = 1};
    struct io_backend *io = open_faulty(&t, &fault, &inner);
    tlog_append_upto(&t, 101, 1000);
    tlog_drain(&t);
    CHECK(fault_backend_fired(io));
    CHECK_EQ(log_error(t.log), 0);
    CHECK_EQ(log_durable_seq_end(t.log), 101);
    CHECK_EQ(t.durable_calls, 1);
    close_faulty(&t, inner, 0);
    reopen_count(&t, 100, 1000);
    tlog_destroy(&t);
}

/* A checkpoint handed over without a copy (log_checkpoint_give) is written in three pieces
 * (head, payload, hash); a short write inside any of them is completed, and the file reads
 * back whole. The payload belongs to the log, also when the call is refused. */
static void test_checkpoint_give_pieces(void)
{
    enum { PAYLOAD = 100 * 1024 };
    for (uint32_t fail_at = 1; fail_at <= 3; fail_at++) {
        struct tlog t;
        tlog_init(&t, "log-give", 256 * KIB, 64 * KIB);
        REQUIRE(tlog_open(&t) == 0);
        tlog_append_upto(&t, 21, 100);
        tlog_drain(&t);
        tlog_close(&t);
        struct io_backend *inner;
        struct fault_config fault = {.kind = FAULT_SHORT_WRITE, .op_mask = FAULT_OPS_WRITES,
                                     .fail_at = fail_at};
        struct io_backend *io = open_faulty(&t, &fault, &inner);
        uint8_t *payload = malloc(PAYLOAD);
        REQUIRE(payload != NULL);
        for (uint32_t i = 0; i < PAYLOAD; i++)
            payload[i] = (uint8_t)(i * 7 + i / 251);
        uint8_t *refused = malloc(16); /* freed by the log although refused */
        int done = 0;
        CHECK_EQ(log_checkpoint_give(t.log, log_durable_seq_end(t.log) + 1, refused, 16, NULL, 0,
                                     ckpt_done, &done), -EINVAL);
        REQUIRE(log_checkpoint_give(t.log, 21, payload, PAYLOAD, NULL, 0, ckpt_done, &done) ==
                0);
        tlog_drain(&t);
        CHECK_EQ(done, 1);
        CHECK(fault_backend_fired(io));
        close_faulty(&t, inner, 0);
        struct replay_check rc = {.next = 21, .max = 100};
        REQUIRE(tlog_open_replay(&t, &rc) == 0);
        CHECK_EQ(rc.count, 0);
        REQUIRE(t.ckpt_len == PAYLOAD);
        bool same = true;
        for (uint32_t i = 0; i < PAYLOAD; i++)
            same = same && ((const uint8_t *)t.ckpt)[i] == (uint8_t)(i * 7 + i / 251);
        CHECK(same);
        tlog_close(&t);
        tlog_destroy(&t);
    }
}

static void test_fdatasync_error_poisons(void)
{
    struct tlog t;
    tlog_init(&t, "log-eio", 256 * KIB, 64 * KIB);
    REQUIRE(tlog_open(&t) == 0);
    tlog_append_upto(&t, 11, 100);
    tlog_drain(&t);
    tlog_close(&t);
    struct io_backend *inner;
    /* Sync 1 is recovery's fdatasync of the newest segment; sync 2 is the commit's. */
    struct fault_config fault = {.kind = FAULT_EIO, .op_mask = FAULT_OPS_SYNCS, .fail_at = 2};
    open_faulty(&t, &fault, &inner);
    tlog_append_upto(&t, 21, 100);
    tlog_drain(&t);
    CHECK_EQ(t.error, -EIO);
    CHECK_EQ(t.durable_calls, 1);
    CHECK_EQ(log_error(t.log), -EIO);
    CHECK_EQ(log_durable_seq_end(t.log), 11); /* nothing reported durable that was not */
    struct log_pos pos;
    CHECK_EQ(log_append(t.log, 1, "x", 1, &pos), -EIO);
    log_tick(t.log); /* never retried */
    CHECK_EQ(t.durable_calls, 1);
    close_faulty(&t, inner, -EIO);
    struct replay_check rc = {.next = 1, .max = 100};
    REQUIRE(tlog_open_replay(&t, &rc) == 0);
    CHECK(rc.count >= 10); /* the failed batch may or may not have reached the disk */
    CHECK_EQ(rc.bad, 0);
    tlog_destroy(&t);
}

static void test_enospc_on_roll(void)
{
    struct tlog t;
    tlog_init(&t, "log-enospc", 64 * KIB, 16 * KIB);
    t.now = 1000000000;
    /* Dry run: how many opens does log_open make on a fresh directory? */
    struct io_backend *inner;
    struct fault_config none = {.kind = FAULT_EIO, .op_mask = FAULT_OP_BIT(IO_OPEN),
                                .fail_at = UINT64_MAX};
    struct io_backend *io = open_faulty(&t, &none, &inner);
    uint64_t opens = fault_backend_matched(io);
    close_faulty(&t, inner, 0);
    check_rmdir(t.dir);
    REQUIRE(mkdir(t.dir, 0750) == 0);

    struct fault_config fault = {.kind = FAULT_ENOSPC, .op_mask = FAULT_OP_BIT(IO_OPEN),
                                 .fail_at = opens + 1};
    io = open_faulty(&t, &fault, &inner);
    uint8_t body[1500];
    struct log_pos pos;
    int r = 0, enospc = 0, timed = 0;
    for (int turn = 0; turn < 10000 && log_next_seq(t.log) < 300; turn++) {
        uint64_t seq = log_next_seq(t.log);
        rec_fill(seq, body, rec_len(seq, 1500));
        r = log_append(t.log, rec_type(seq), body, rec_len(seq, 1500), &pos);
        if (r == LOG_ENOSPC) {
            enospc++;
            if (log_next_deadline_ns(t.log) <= t.now + 100 * 1000000)
                timed++; /* a retry is scheduled (or, if not, one is already in flight) */
            t.now += 50 * 1000000;
        } else if (r == -ENOBUFS || r == 0) {
            if (r == 0)
                continue;
        } else {
            CHECK_EQ(r, 0);
            break;
        }
        log_tick(t.log);
        REQUIRE(io_backend_poll(io, true) >= 0);
    }
    tlog_drain(&t);
    CHECK(fault_backend_fired(io));
    CHECK(enospc > 0);
    CHECK(timed > 0);
    CHECK_EQ(log_error(t.log), 0);
    CHECK_EQ(log_durable_seq_end(t.log), log_next_seq(t.log));
    uint64_t records = log_next_seq(t.log) - 1;
    close_faulty(&t, inner, 0);
    struct replay_check rc = {.next = 1, .max = 1500};
    REQUIRE(tlog_open_replay(&t, &rc) == 0);
    CHECK_EQ(rc.count, records);
    CHECK_EQ(rc.bad, 0);
    tlog_destroy(&t);
}

/* The production backend: the same workload through io_uring (skipped where unavailable). */
static void test_io_uring_roll_replay_read(void)
{
    char msg[256];
    if (io_uring_probe_available(msg, sizeof(msg)) != 0) {
        fprintf(stderr, "skip: %s\n", msg);
        return;
    }
    struct io_uring ring;
    REQUIRE(io_uring_queue_init(64, &ring, 0) == 0);
    struct tlog t;
    tlog_init(&t, "log-uring", 64 * KIB, 16 * KIB);
    REQUIRE(io_uring_backend_create(&ring, t.dir, true, &t.io) == 0);
    REQUIRE(tlog_open(&t) == 0);
    uint8_t buf[2000];
    struct log_pos first;
    rec_fill(1, buf, rec_len(1, 1500));
    REQUIRE(log_append(t.log, rec_type(1), buf, rec_len(1, 1500), &first) == 0);
    tlog_append_upto(&t, 1001, 1500);
    tlog_drain(&t);
    CHECK_EQ(log_durable_seq_end(t.log), 1001);
    CHECK(log_segment_count(t.log) > 3);
    struct read_result res = {.seq = 1};
    REQUIRE(log_read(t.log, &first, read_done_1500, &res) == 0);
    tlog_drain(&t);
    CHECK_EQ(res.calls, 1);
    CHECK(res.match);
    tlog_close(&t);
    REQUIRE(io_uring_backend_create(&ring, t.dir, false, &t.io) == 0);
    struct replay_check rc = {.next = 1, .max = 1500};
    REQUIRE(tlog_open_replay(&t, &rc) == 0);
    CHECK_EQ(rc.count, 1000);
    CHECK_EQ(rc.bad, 0);
    tlog_destroy(&t);
    io_uring_queue_exit(&ring);
}

int main(void)
{
    RUN_TEST(test_append_commit_durable);
    RUN_TEST(test_group_commit);
    RUN_TEST(test_one_commit_in_flight);
    RUN_TEST(test_back_pressure);
    RUN_TEST(test_roll_and_replay);
    RUN_TEST(test_read_old_segments);
    RUN_TEST(test_read_batch);
    RUN_TEST(test_checkpoint_drop_reopen);
    RUN_TEST(test_second_open_locked);
    RUN_TEST(test_interval_and_none_modes);
    RUN_TEST(test_bad_config);
    RUN_TEST(test_short_write_completed);
    RUN_TEST(test_checkpoint_give_pieces);
    RUN_TEST(test_fdatasync_error_poisons);
    RUN_TEST(test_enospc_on_roll);
    RUN_TEST(test_io_uring_roll_replay_read);
    return check_exit();
}
