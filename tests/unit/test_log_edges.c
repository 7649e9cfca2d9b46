/*
 * Edge cases of the engine found by review and fuzzing, each the test of one fix:
 *
 * - close_waits_for_ops_during_enospc: log_close while a roll waits for disk space must still
 *   wait for every other op in flight (a read, a checkpoint) before freeing the log; it used
 *   to return at once, leaving the backend with ops that point into freed memory.
 * - segment_size_bounded: a segment header whose hash verifies but whose segment_size is
 *   absurd (beyond SEGMENT_SIZE_MAX) is bad fields, not a size to preallocate and walk.
 *
 * - salvage_refuses_missing_listed_segment: salvage of a log whose checkpoint lists a segment
 *   that is gone, with no verified segment before it, must refuse (FORMAT.md); it used to
 *   "succeed" by setting every segment aside and starting over at seq 1 under the same
 *   checkpoint, so each later salvage open set aside again what had been appended since.
 *
 * - checkpoint_anchor_listed: a checkpoint whose anchor_segment_id is not a listed segment
 *   at or below anchor_seq is bad; recovery used to trust it and delete every unlisted
 *   segment below it as a leftover of a drop.
 *
 * - batch_stored_len_at_limit: a hash-valid batch header whose stored_len lies within 64 bytes
 *   of BATCH_TOTAL_BYTES_LIMIT is bad fields; checking it used to trip the assert in
 *   batch_align_up (an assert on bytes from disk). Found by fuzz_log.
 * - read_across_drop: a read in flight while a checkpoint drops its segment completes with the
 *   record (the fd stays open until the read is done, then is closed: no leak), and a read
 *   of the dropped segment afterwards is -ENOENT.
 * - spare_segment_rolls / spare_segment_low: with config.spare_segment, rolls go into the
 *   preallocated spare (rename, no new space), a new spare follows each roll, a log written
 *   so reopens intact; when the spare cannot be made, log_space_low() says so while appends
 *   still commit, and it clears once a spare is made again.
 *
 * - spare_segment_io_uring: the same rolls through the production backend on a real
 *   directory (rename through the ring), then a reopen through the POSIX one.
 * - direct_open_transient: a direct open that fails with EMFILE leaves that segment's commits
 *   buffered; the next segment commits direct again (it used to be off for good).
 * - zero_spare_chunks_durable: the spare's zero fill writes chunks that are each durable as
 *   they land; it used to leave the whole segment to one fdatasync, whose flush every commit
 *   behind it waited for (a put p99 of ~50 ms while a backlog of 4 KiB jobs grew).
 *
 * Everything else runs on memfs, whose ops stay in flight until polled, as a ring's do.
 */
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <xxhash.h>

#include "check.h"
#include "batch.h"
#include "checkpoint.h"
#include "fault_backend.h"
#include "log.h"
#include "memfs_backend.h"
#include "segment.h"

#define KIB 1024u
#define EDGE_SEGMENT_BYTES (64u * KIB)
#define EDGE_BATCH_BYTES (16u * KIB)
#define EDGE_RECORD_BYTES 1500u
#define EDGE_TURNS_MAX 10000 /* bounds every drive loop; a few hundred are used */

struct edge {
    struct memfs *fs;
    struct io_backend *io; /* the fault wrapper around memfs */
    struct log *log;
    int64_t now_ns;
    uint64_t durable_end;
    int poison;
    int read_error;
    uint32_t reads_done;
    int ckpt_error;
    uint32_t ckpts_done;
};

static int64_t edge_now(void *ctx)
{
    return ((struct edge *)ctx)->now_ns;
}

static void edge_durable(void *ctx, uint64_t end, enum log_durability level, int error)
{
    struct edge *e = ctx;
    (void)level;
    if (error != 0)
        e->poison = error;
    else if (end > e->durable_end)
        e->durable_end = end;
}

static void edge_read_done(void *ctx, int error, const struct log_record *record)
{
    struct edge *e = ctx;
    e->reads_done++;
    e->read_error = error;
    if (error == 0)
        CHECK_EQ(record->len, EDGE_RECORD_BYTES);
}

static void edge_ckpt_done(void *ctx, int error)
{
    struct edge *e = ctx;
    e->ckpts_done++;
    e->ckpt_error = error;
}

static void edge_config(struct edge *e, struct log_config *config)
{
    log_config_defaults(config);
    config->dir = ".";
    config->segment_size_bytes = EDGE_SEGMENT_BYTES;
    config->batch_size_bytes_max = EDGE_BATCH_BYTES;
    config->compress = false;
    config->on_durable = edge_durable;
    config->now_ns = edge_now;
    config->ctx = e;
}

/* A fresh memfs log behind a fault wrapper that fails the fail_at-th op of mask. */
static void edge_open(struct edge *e, uint32_t mask, uint64_t fail_at)
{
    memset(e, 0, sizeof(*e));
    e->now_ns = 1000000000;
    e->fs = memfs_create();
    struct fault_config fault = {.kind = FAULT_ENOSPC, .op_mask = mask, .fail_at = fail_at};
    e->io = fault_backend_create(memfs_io(e->fs), &fault);
    struct log_config config;
    edge_config(e, &config);
    REQUIRE(log_open(&config, e->io, NULL, NULL, NULL, NULL, NULL, &e->log) == 0);
}

static void edge_destroy(struct edge *e)
{
    io_backend_destroy(e->io);
    io_backend_destroy(memfs_io(e->fs));
}

/* Append and commit until the engine refuses with LOG_ENOSPC (a roll found the disk full). */
static int edge_fill_until_enospc(struct edge *e)
{
    static uint8_t body[EDGE_RECORD_BYTES];
    for (int turn = 0; turn < EDGE_TURNS_MAX; turn++) {
        memset(body, (int)(log_next_seq(e->log) & 0xff), sizeof(body));
        int rc = log_append(e->log, 1, body, sizeof(body), NULL);
        if (rc == LOG_ENOSPC)
            return rc;
        if (rc != 0 && rc != -ENOBUFS)
            return rc;
        log_tick(e->log);
        if (io_backend_poll(e->io, true) < 0)
            return -EIO;
    }
    return 0;
}

static void test_close_waits_for_ops_during_enospc(void)
{
    struct edge e;
    /* log_open makes segment 1 with one fallocate; the roll to segment 2 makes the second. */
    edge_open(&e, FAULT_OP_BIT(IO_FALLOCATE), 2);
    REQUIRE(edge_fill_until_enospc(&e) == LOG_ENOSPC);
    CHECK_EQ(e.poison, 0);
    CHECK(e.durable_end > 1);
    /* A read of a durable record and a checkpoint, both in flight (memfs runs them on poll). */
    struct log_pos pos = {.seq = 1, .segment_id = 1, .batch_offset = 4096};
    REQUIRE(log_read(e.log, &pos, edge_read_done, &e) == 0);
    static const char payload[] = "state";
    REQUIRE(log_checkpoint(e.log, e.durable_end, payload, sizeof(payload), NULL, 0,
                           edge_ckpt_done, &e) == 0);
    CHECK_EQ(e.reads_done, 0);
    /* The roll waits far in the future: close must still finish the read and the checkpoint
     * before it frees them, and say that the waiting batch did not become durable. */
    CHECK_EQ(log_close(e.log), LOG_ENOSPC);
    CHECK_EQ(e.reads_done, 1);
    CHECK_EQ(e.read_error, 0);
    CHECK_EQ(e.ckpts_done, 1);
    CHECK_EQ(e.ckpt_error, 0);
    CHECK_EQ(e.io->ops->in_flight(e.io), 0);
    edge_destroy(&e);
}

/* A segment file holding only a header (hash computed) with the given size field. */
static void edge_plant_segment(struct memfs *fs, uint64_t id, uint64_t segment_size)
{
    static uint8_t block[SEGMENT_HEADER_SIZE];
    struct segment_header h = {.segment_id = id, .segment_size = segment_size, .hash_seed = 9};
    segment_header_encode(&h, block);
    char name[SEGMENT_NAME_LEN + 1];
    segment_name(id, name);
    memfs_put_file(fs, name, block, sizeof(block));
}

static void test_segment_size_bounded(void)
{
    static uint8_t block[SEGMENT_HEADER_SIZE];
    struct segment_header h = {.segment_id = 1, .segment_size = SEGMENT_SIZE_MAX, .hash_seed = 9};
    segment_header_encode(&h, block);
    struct segment_header out;
    CHECK_EQ(segment_header_check(block, 1, &out), SEGMENT_OK);
    h = (struct segment_header){.segment_id = 1, .segment_size = 1ull << 50, .hash_seed = 9};
    segment_header_encode(&h, block);
    CHECK_EQ(segment_header_check(block, 1, &out), SEGMENT_BAD_FIELDS);
    /* Recovery does not adopt such a segment and preallocate a petabyte for it: holding no
     * valid batch, it is a roll that never became durable, and the log starts afresh with a
     * segment of the configured size. */
    struct memfs *fs = memfs_create();
    edge_plant_segment(fs, 1, 1ull << 50);
    struct edge e = {.now_ns = 1};
    struct log_config config;
    edge_config(&e, &config);
    config.on_durable = NULL;
    struct log *log = NULL;
    REQUIRE(log_open(&config, memfs_io(fs), NULL, NULL, NULL, NULL, NULL, &log) == 0);
    CHECK_EQ(log_append(log, 1, "x", 1, NULL), 0);
    CHECK_EQ(log_close(log), 0);
    const uint8_t *data;
    uint64_t size = 0;
    CHECK(memfs_file(fs, "00000000000000000001.seg", &data, &size));
    CHECK(size <= EDGE_SEGMENT_BYTES);
    io_backend_destroy(memfs_io(fs));
    /* Nor may a configuration ask for one. */
    edge_config(&e, &config);
    config.segment_size_bytes = SEGMENT_SIZE_MAX + 4096;
    fs = memfs_create();
    CHECK_EQ(log_open(&config, memfs_io(fs), NULL, NULL, NULL, NULL, NULL, &log), -EINVAL);
    io_backend_destroy(memfs_io(fs));
}

/* A checkpoint file listing ids (anchor at anchor_seq, anchor segment anchor_id). */
static void edge_plant_checkpoint(struct memfs *fs, uint64_t anchor_seq, uint64_t anchor_id,
                                  const uint64_t *ids, uint32_t count)
{
    struct checkpoint_info info = {.anchor_seq = anchor_seq, .anchor_segment_id = anchor_id,
                                   .segment_count = count, .payload_len = 4};
    size_t size = checkpoint_encoded_size(count, 4);
    uint8_t *buf = malloc(size);
    REQUIRE(buf != NULL);
    checkpoint_encode(&info, ids, "ckpt", buf);
    memfs_put_file(fs, CHECKPOINT_NAME, buf, size);
    free(buf);
}

static int edge_open_salvage(struct memfs *fs, struct log_recovery_report *report,
                             struct log **log)
{
    struct edge e = {.now_ns = 1};
    struct log_config config;
    edge_config(&e, &config);
    config.on_durable = NULL;
    config.salvage = true;
    return log_open(&config, memfs_io(fs), NULL, NULL, NULL, NULL, report, log);
}

static void test_salvage_refuses_missing_listed_segment(void)
{
    struct memfs *fs = memfs_create();
    static const uint64_t ids[] = {1, 7};
    edge_plant_checkpoint(fs, 1, 1, ids, 2);
    struct log_recovery_report report;
    struct log *log = NULL;
    int rc = edge_open_salvage(fs, &report, &log);
    CHECK_EQ(rc, LOG_ECORRUPT);
    CHECK(strstr(report.message, "missing_segment") != NULL);
    if (rc == 0)
        CHECK_EQ(log_close(log), 0); /* it "salvaged" into an empty log under that checkpoint */
    io_backend_destroy(memfs_io(fs));
}

/* Append count records and close, leaving segments on memfs. */
static uint64_t edge_write(struct memfs *fs, uint32_t count)
{
    struct edge e = {.now_ns = 1};
    struct log_config config;
    edge_config(&e, &config);
    config.on_durable = NULL;
    struct log *log = NULL;
    REQUIRE(log_open(&config, memfs_io(fs), NULL, NULL, NULL, NULL, NULL, &log) == 0);
    static uint8_t body[EDGE_RECORD_BYTES];
    for (uint32_t i = 0; i < count;) {
        int rc = log_append(log, 1, body, sizeof(body), NULL);
        if (rc == -ENOBUFS) {
            log_tick(log);
            REQUIRE(io_backend_poll(memfs_io(fs), true) >= 0);
            continue;
        }
        REQUIRE(rc == 0);
        i++;
    }
    uint64_t segments = log_segment_count(log);
    REQUIRE(log_close(log) == 0);
    return segments;
}

static void test_checkpoint_anchor_listed(void)
{
    struct memfs *written = memfs_create();
    REQUIRE(edge_write(written, 100) >= 3);
    /* A copy with an empty op log, so a file can be planted in it. */
    struct memfs *fs = memfs_image(written, memfs_op_count(written), MEMFS_IMAGE_ALL, 0);
    io_backend_destroy(memfs_io(written));
    uint64_t ids[3];
    uint32_t n = 0;
    for (uint32_t i = 0; i < memfs_file_count(fs) && n < 3; i++) {
        uint64_t id;
        if (segment_name_parse(memfs_file_name(fs, i), &id))
            ids[n++] = id;
    }
    REQUIRE(n == 3);
    /* Lists only the newest segment but names an anchor segment past it: trusting it made
     * recovery delete the two older segments, records and all. */
    edge_plant_checkpoint(fs, ids[2], ids[2] + 1, &ids[2], 1);
    struct edge e = {.now_ns = 1};
    struct log_config config;
    edge_config(&e, &config);
    config.on_durable = NULL;
    struct log_recovery_report report;
    struct log *log = NULL;
    int rc = log_open(&config, memfs_io(fs), NULL, NULL, NULL, NULL, &report, &log);
    CHECK_EQ(rc, LOG_ECORRUPT);
    CHECK(strstr(report.message, "bad_checkpoint") != NULL);
    if (rc == 0)
        CHECK_EQ(log_close(log), 0);
    const uint8_t *data;
    uint64_t size;
    char name[SEGMENT_NAME_LEN + 1];
    segment_name(ids[0], name);
    CHECK(memfs_file(fs, name, &data, &size));
    /* The decoder itself: unlisted, above the anchor, a zero anchor. */
    struct checkpoint_info info = {.anchor_seq = 50, .anchor_segment_id = 42,
                                   .segment_count = 2};
    uint64_t list[2] = {1, 42};
    uint8_t buf[128];
    char detail[160];
    struct checkpoint_info out;
    checkpoint_encode(&info, list, NULL, buf);
    CHECK_EQ(checkpoint_decode(buf, checkpoint_encoded_size(2, 0), &out, detail, sizeof(detail)),
             0);
    info.anchor_segment_id = 7;
    checkpoint_encode(&info, list, NULL, buf);
    CHECK_EQ(checkpoint_decode(buf, checkpoint_encoded_size(2, 0), &out, detail, sizeof(detail)),
             LOG_ECORRUPT);
    info.anchor_segment_id = 42;
    info.anchor_seq = 41;
    checkpoint_encode(&info, list, NULL, buf);
    CHECK_EQ(checkpoint_decode(buf, checkpoint_encoded_size(2, 0), &out, detail, sizeof(detail)),
             LOG_ECORRUPT);
    info.anchor_seq = 0;
    info.anchor_segment_id = 1;
    checkpoint_encode(&info, list, NULL, buf);
    CHECK_EQ(checkpoint_decode(buf, checkpoint_encoded_size(2, 0), &out, detail, sizeof(detail)),
             LOG_ECORRUPT);
    io_backend_destroy(memfs_io(fs));
}

/* Rolls into the spare: count the renames of "segment.spare" among the ops that ran. */
static uint32_t edge_spare_renames(const struct memfs *fs)
{
    uint32_t renames = 0;
    for (uint64_t i = 0; i < memfs_op_count(fs); i++) {
        struct memfs_op_info info;
        memfs_op_get(fs, i, &info);
        if (info.kind == IO_RENAME && info.result == 0 && strcmp(info.path, "segment.spare") == 0)
            renames++;
    }
    return renames;
}

/* Append count records of EDGE_RECORD_BYTES (content from seq), committing as it goes. */
static void edge_append_n(struct edge *e, uint32_t count)
{
    static uint8_t body[EDGE_RECORD_BYTES];
    for (uint32_t i = 0, turns = 0; i < count && turns < EDGE_TURNS_MAX; turns++) {
        memset(body, (int)(log_next_seq(e->log) & 0xff), sizeof(body));
        int rc = log_append(e->log, 1, body, sizeof(body), NULL);
        if (rc == 0) {
            i++;
            continue;
        }
        REQUIRE(rc == -ENOBUFS);
        log_tick(e->log);
        REQUIRE(io_backend_poll(e->io, true) >= 0);
    }
}

static void edge_open_spare_sized(struct edge *e, uint32_t mask, uint64_t fail_at,
                                  uint64_t segment_bytes)
{
    memset(e, 0, sizeof(*e));
    e->now_ns = 1000000000;
    e->fs = memfs_create();
    struct fault_config fault = {.kind = FAULT_ENOSPC, .op_mask = mask, .fail_at = fail_at};
    e->io = fault_backend_create(memfs_io(e->fs), &fault);
    struct log_config config;
    edge_config(e, &config);
    config.spare_segment = true;
    config.segment_size_bytes = segment_bytes;
    REQUIRE(log_open(&config, e->io, NULL, NULL, NULL, NULL, NULL, &e->log) == 0);
    /* Let the first spare be made (and zero-filled) before the first roll needs it. */
    log_tick(e->log);
    while (!log_idle(e->log))
        REQUIRE(io_backend_poll(e->io, true) >= 0);
}

static void edge_open_spare(struct edge *e, uint32_t mask, uint64_t fail_at)
{
    edge_open_spare_sized(e, mask, fail_at, EDGE_SEGMENT_BYTES);
}

struct edge_count {
    uint64_t next;
    uint64_t bad;
};

static int edge_count_record(void *ctx, const struct log_record *rec)
{
    struct edge_count *c = ctx;
    const uint8_t *p = rec->data;
    if (rec->pos.seq != c->next || rec->len != EDGE_RECORD_BYTES ||
        p[0] != (uint8_t)(rec->pos.seq & 0xff) || p[rec->len - 1] != p[0])
        c->bad++;
    c->next = rec->pos.seq + 1;
    return 0;
}

/* Reopen fs's durable image and count the records it holds (each checked as appended). */
static uint64_t edge_durable_records(struct edge *e)
{
    struct memfs *image = memfs_image(e->fs, memfs_op_count(e->fs), MEMFS_IMAGE_DURABLE, 0);
    struct log_config config;
    edge_config(e, &config);
    config.on_durable = NULL;
    struct edge_count count = {.next = 1};
    struct log *log;
    REQUIRE(log_open(&config, memfs_io(image), edge_count_record, &count, NULL, NULL, NULL,
                     &log) == 0);
    CHECK_EQ(count.bad, 0);
    CHECK_EQ(log_close(log), 0);
    io_backend_destroy(memfs_io(image));
    return count.next - 1;
}

static void edge_settle(struct edge *e);

static void test_spare_segment_rolls(void)
{
    struct edge e;
    edge_open_spare(&e, FAULT_OPS_ALL, 0);
    edge_append_n(&e, 200); /* about five segments of 64 KiB */
    CHECK(log_segment_count(e.log) >= 4);
    CHECK(!log_space_low(e.log));
    CHECK_EQ(log_close(e.log), 0);
    uint32_t renames = edge_spare_renames(e.fs);
    CHECK(renames >= 3); /* every roll after the first spare was made took one */
    /* The log reads back whole, from a crash image too (the spare is never read). */
    CHECK_EQ(edge_durable_records(&e), 200);
    edge_destroy(&e);
}

/* The always mode commits through one direct fd of the current segment (the old one's closed
 * at each roll, the last at close), each write durable on completion; where the file system
 * refuses direct I/O, or the config turns it off, through buffered writes and fdatasyncs.
 * Every record reported durable is in the power-loss image either way. */
static void test_direct_commits(void)
{
    for (int variant = 0; variant < 3; variant++) {
        bool offered = variant != 1, configured = variant != 2;
        struct edge e;
        memset(&e, 0, sizeof(e));
        e.now_ns = 1000000000;
        e.fs = memfs_create();
        memfs_set_direct(e.fs, offered);
        struct fault_config fault = {.kind = FAULT_ENOSPC, .op_mask = FAULT_OPS_ALL};
        e.io = fault_backend_create(memfs_io(e.fs), &fault);
        struct log_config config;
        edge_config(&e, &config);
        config.direct_io = configured;
        REQUIRE(log_open(&config, e.io, NULL, NULL, NULL, NULL, NULL, &e.log) == 0);
        uint32_t open_max = 0;
        for (int i = 0; i < 20; i++) {
            edge_append_n(&e, 10);
            if (memfs_direct_open(e.fs) > open_max)
                open_max = memfs_direct_open(e.fs);
        }
        CHECK(log_segment_count(e.log) >= 4); /* rolls happened under it */
        CHECK_EQ(open_max, offered && configured ? 1u : 0u);
        edge_settle(&e);
        CHECK_EQ(e.durable_end, 201);
        CHECK_EQ(log_close(e.log), 0);
        CHECK_EQ(memfs_direct_open(e.fs), 0);
        CHECK_EQ(edge_durable_records(&e), 200);
        edge_destroy(&e);
    }
}

static void test_spare_segment_low(void)
{
    struct edge e;
    /* Fallocates: 1 for segment 1 at open, 2 for the first spare; fail the second spare. */
    edge_open_spare(&e, FAULT_OP_BIT(IO_FALLOCATE), 3);
    edge_append_n(&e, 60); /* past the first roll: it takes spare 1, spare 2 fails */
    log_tick(e.log);
    while (!log_idle(e.log))
        REQUIRE(io_backend_poll(e.io, true) >= 0);
    CHECK(fault_backend_fired(e.io));
    CHECK(log_space_low(e.log));
    CHECK_EQ(log_error(e.log), 0);
    CHECK_EQ(e.poison, 0);
    /* Appends still commit while space is low: that is the headroom acks use. */
    uint64_t before = e.durable_end;
    edge_append_n(&e, 10);
    log_tick(e.log);
    while (!log_idle(e.log))
        REQUIRE(io_backend_poll(e.io, true) >= 0);
    CHECK(e.durable_end >= before + 10);
    /* The retry makes a spare: no longer low. */
    e.now_ns += 200 * 1000000;
    log_tick(e.log);
    while (!log_idle(e.log))
        REQUIRE(io_backend_poll(e.io, true) >= 0);
    CHECK(!log_space_low(e.log));
    CHECK_EQ(log_close(e.log), 0);
    edge_destroy(&e);
}

static void test_spare_segment_io_uring(void)
{
    char msg[256];
    if (io_uring_probe_available(msg, sizeof(msg)) != 0) {
        fprintf(stderr, "skip: %s\n", msg);
        return;
    }
    struct io_uring ring;
    REQUIRE(io_uring_queue_init(64, &ring, 0) == 0);
    char *dir = check_tmpdir("log-spare-uring");
    REQUIRE(dir != NULL);
    struct edge e = {.now_ns = 1000000000};
    REQUIRE(io_uring_backend_create(&ring, dir, true, &e.io) == 0);
    struct log_config config;
    edge_config(&e, &config);
    config.dir = dir;
    config.spare_segment = true;
    REQUIRE(log_open(&config, e.io, NULL, NULL, NULL, NULL, NULL, &e.log) == 0);
    static uint8_t body[EDGE_RECORD_BYTES];
    for (uint32_t i = 0, turns = 0; i < 200 && turns < EDGE_TURNS_MAX; turns++) {
        memset(body, (int)(log_next_seq(e.log) & 0xff), sizeof(body));
        int rc = log_append(e.log, 1, body, sizeof(body), NULL);
        if (rc == 0) {
            i++;
            continue;
        }
        REQUIRE(rc == -ENOBUFS);
        log_tick(e.log);
        REQUIRE(io_backend_poll(e.io, true) >= 0);
    }
    CHECK(log_segment_count(e.log) >= 4);
    CHECK(!log_space_low(e.log));
    CHECK_EQ(log_close(e.log), 0);
    CHECK_EQ(e.poison, 0);
    io_backend_destroy(e.io);
    io_uring_queue_exit(&ring);
    struct io_backend *io;
    REQUIRE(posix_backend_create(dir, false, &io) == 0);
    config.spare_segment = false;
    config.on_durable = NULL;
    struct edge_count count = {.next = 1};
    struct log *log;
    REQUIRE(log_open(&config, io, edge_count_record, &count, NULL, NULL, NULL, &log) == 0);
    CHECK_EQ(count.next, 201);
    CHECK_EQ(count.bad, 0);
    CHECK_EQ(log_close(log), 0);
    io_backend_destroy(io);
    char path[600];
    snprintf(path, sizeof(path), "%s/segment.spare", dir);
    unlink(path);
    check_rmdir(dir);
    free(dir);
}

static void test_batch_stored_len_at_limit(void)
{
    static const uint32_t lens[] = {BATCH_TOTAL_BYTES_LIMIT, BATCH_TOTAL_BYTES_LIMIT - 1,
                                    BATCH_TOTAL_BYTES_LIMIT - BATCH_HEADER_SIZE + 1};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        struct batch_header h = {
            .magic = BATCH_MAGIC, .version = BATCH_VERSION, .codec = BATCH_CODEC_NONE,
            .record_count = 1, .stored_len = lens[i], .raw_len = lens[i],
            .total_len = BATCH_TOTAL_BYTES_LIMIT, .base_seq = 1, .segment_id = 1,
            .hash_seed = 1,
        };
        uint8_t block[BATCH_HEADER_SIZE];
        batch_header_encode(&h, block);
        struct batch_header out;
        CHECK_EQ(batch_header_check(block, 1, &out), BATCH_BAD_FIELDS);
    }
    /* The largest batch that is allowed still checks. */
    uint32_t stored = BATCH_TOTAL_BYTES_LIMIT - BATCH_HEADER_SIZE;
    struct batch_header h = {
        .magic = BATCH_MAGIC, .version = BATCH_VERSION, .codec = BATCH_CODEC_NONE,
        .record_count = 1, .stored_len = stored, .raw_len = stored,
        .total_len = BATCH_TOTAL_BYTES_LIMIT, .base_seq = 1, .segment_id = 1, .hash_seed = 1,
    };
    uint8_t block[BATCH_HEADER_SIZE];
    batch_header_encode(&h, block);
    struct batch_header out;
    CHECK_EQ(batch_header_check(block, 1, &out), BATCH_OK);
}

static void test_read_across_drop(void)
{
    struct edge e;
    edge_open(&e, FAULT_OPS_ALL, 0);
    static uint8_t body[EDGE_RECORD_BYTES];
    for (int turn = 0; turn < EDGE_TURNS_MAX && log_segment_count(e.log) < 3; turn++) {
        memset(body, (int)(log_next_seq(e.log) & 0xff), sizeof(body));
        int rc = log_append(e.log, 1, body, sizeof(body), NULL);
        REQUIRE(rc == 0 || rc == -ENOBUFS);
        log_tick(e.log);
        REQUIRE(io_backend_poll(e.io, true) >= 0);
    }
    log_tick(e.log);
    while (!log_idle(e.log))
        REQUIRE(io_backend_poll(e.io, true) >= 0);
    REQUIRE(log_segment_count(e.log) >= 3);
    uint64_t first = log_segment_id(e.log, 0);
    struct log_pos pos = {.seq = 1, .segment_id = first, .batch_offset = 4096};
    uint64_t drop[1] = {first};
    REQUIRE(log_checkpoint(e.log, log_durable_seq_end(e.log), "s", 1, drop, 1, edge_ckpt_done,
                           &e) == 0);
    /* Keep a read of the segment in flight at every poll, so one spans the drop. */
    uint32_t reads = 0, errors = 0;
    bool gone = false;
    for (int turn = 0; turn < EDGE_TURNS_MAX && !log_idle(e.log); turn++) {
        if (!gone && e.reads_done == reads) {
            int rc = log_read(e.log, &pos, edge_read_done, &e);
            gone = rc == -ENOENT;
            reads += rc == 0;
        }
        errors += e.read_error != 0;
        REQUIRE(io_backend_poll(e.io, true) >= 0);
    }
    CHECK(reads >= 3);
    CHECK_EQ(e.reads_done, reads);
    CHECK_EQ(errors, 0);
    CHECK_EQ(e.ckpts_done, 1);
    CHECK_EQ(e.ckpt_error, 0);
    CHECK_EQ(log_read(e.log, &pos, edge_read_done, &e), -ENOENT);
    const uint8_t *data;
    uint64_t size;
    CHECK(!memfs_file(e.fs, "00000000000000000001.seg", &data, &size));
    /* Its fd was closed once the last read was done (its CLOSE is its last op). */
    uint32_t inode = 0;
    bool opened = false;
    uint64_t last_read = 0, close_at = 0;
    for (uint64_t i = 0; i < memfs_op_count(e.fs); i++) {
        struct memfs_op_info info;
        memfs_op_get(e.fs, i, &info);
        if (info.kind == IO_OPEN && info.result >= 0 && info.path != NULL &&
            strcmp(info.path, "00000000000000000001.seg") == 0) {
            inode = info.inode;
            opened = true;
        }
        if (opened && info.inode == inode && info.kind == IO_READ)
            last_read = i;
        if (opened && info.inode == inode && info.kind == IO_CLOSE && info.result == 0)
            close_at = i;
    }
    CHECK(opened);
    CHECK(close_at > last_read);
    CHECK_EQ(log_close(e.log), 0);
    edge_destroy(&e);
}

/* Bytes written to the file opened (created) as name, among ops [from, to). */
static uint64_t edge_bytes_written(const struct memfs *fs, const char *name, uint64_t from,
                                   uint64_t to)
{
    uint32_t inode = UINT32_MAX;
    uint64_t bytes = 0;
    for (uint64_t i = 0; i < to; i++) {
        struct memfs_op_info info;
        memfs_op_get(fs, i, &info);
        if (info.kind == IO_OPEN && info.result >= 0 && strcmp(info.path, name) == 0)
            inode = info.inode;
        if (i >= from && info.kind == IO_WRITE && info.result > 0 && info.inode == inode)
            bytes += (uint64_t)info.result;
    }
    return bytes;
}

/* Drive ticks and completions until the engine is idle. */
static void edge_settle(struct edge *e)
{
    for (int turn = 0; turn < EDGE_TURNS_MAX; turn++) {
        log_tick(e->log);
        if (log_idle(e->log))
            return;
        REQUIRE(io_backend_poll(e->io, true) >= 0);
    }
    REQUIRE(!"the log did not settle");
}

/*
 * zero_segments (the default): the first segment is filled with zeros at open, the spare
 * before it is ready, and the current segment's unused rest again on reopen; the log reads
 * back whole afterwards.
 */
static void test_zero_segments(void)
{
    struct edge e;
    edge_open_spare(&e, FAULT_OPS_ALL, 0);
    uint64_t ops_open = memfs_op_count(e.fs);
    CHECK(edge_bytes_written(e.fs, "00000000000000000001.seg", 0, ops_open) >=
          EDGE_SEGMENT_BYTES); /* zeros after the header block, then the header */
    CHECK_EQ(edge_bytes_written(e.fs, "segment.spare", 0, ops_open), EDGE_SEGMENT_BYTES);
    struct memfs_op_info last;
    memfs_op_get(e.fs, ops_open - 1, &last);
    CHECK_EQ(last.kind, IO_FDATASYNC); /* the spare's zeros are durable before it is ready */
    edge_append_n(&e, 10);
    edge_settle(&e);
    CHECK_EQ(e.durable_end, 11);
    CHECK_EQ(log_close(e.log), 0);
    /* Reopen on the same files: the rest of segment 1 after its 10 records is zeroed. */
    struct log_config config;
    edge_config(&e, &config);
    config.spare_segment = true;
    uint64_t ops_before = memfs_op_count(e.fs);
    struct edge_count count = {.next = 1};
    REQUIRE(log_open(&config, e.io, edge_count_record, &count, NULL, NULL, NULL, &e.log) == 0);
    CHECK_EQ(count.next, 11);
    CHECK_EQ(count.bad, 0);
    uint64_t zeroed = 0;
    for (uint64_t i = ops_before; i < memfs_op_count(e.fs); i++) {
        struct memfs_op_info info;
        memfs_op_get(e.fs, i, &info);
        if (info.kind == IO_WRITE && info.result > 0)
            zeroed += (uint64_t)info.result;
    }
    CHECK(zeroed > 0 && zeroed < EDGE_SEGMENT_BYTES - 10 * EDGE_RECORD_BYTES);
    edge_append_n(&e, 60); /* rolls into the zeroed spare */
    edge_settle(&e);
    CHECK_EQ(e.durable_end, 71);
    CHECK_EQ(e.poison, 0);
    CHECK_EQ(log_close(e.log), 0);
    edge_destroy(&e);
}

/* A direct open that fails for a passing reason (out of fds) costs only that segment its
 * direct commits, buffered and fdatasync'ed meanwhile; the next segment opens one again. It
 * used to turn direct I/O off for good, as a file system without O_DIRECT does (EINVAL). */
static void test_direct_open_transient(void)
{
    struct edge e;
    edge_open(&e, FAULT_OPS_ALL, 0);
    memfs_fail_direct_opens(e.fs, 1, -EMFILE); /* the direct fd opens at the first commit */
    edge_append_n(&e, 10); /* segment 1: its open failed */
    CHECK_EQ(log_segment_count(e.log), 1);
    CHECK_EQ(memfs_direct_open(e.fs), 0);
    uint32_t appended = 10;
    while (log_segment_count(e.log) < 3 && appended < 200) {
        edge_append_n(&e, 10);
        appended += 10;
    }
    CHECK(log_segment_count(e.log) >= 3);
    CHECK_EQ(memfs_direct_open(e.fs), 1);
    CHECK_EQ(log_commit_stats(e.log)->direct_fallbacks, 1);
    edge_settle(&e);
    CHECK_EQ(e.durable_end, appended + 1);
    CHECK_EQ(log_close(e.log), 0);
    CHECK_EQ(memfs_direct_open(e.fs), 0);
    CHECK_EQ(edge_durable_records(&e), appended);
    edge_destroy(&e);
}

/* The spare's zeros go out a chunk at a time, each durable as it lands (IO_OP_DSYNC, which
 * memfs records as the write and then its sync): no flush behind them waits for more than one
 * chunk (log_spare.c). */
static void test_zero_spare_chunks_durable(void)
{
    struct edge e;
    edge_open_spare_sized(&e, FAULT_OPS_ALL, 0, 2 * 1024 * KIB + 512 * KIB);
    uint32_t spare = 0, writes = 0, synced = 0;
    bool opened = false;
    for (uint64_t i = 0; i < memfs_op_count(e.fs); i++) {
        struct memfs_op_info info, next;
        memfs_op_get(e.fs, i, &info);
        if (info.kind == IO_OPEN && info.result >= 0 && strcmp(info.path, "segment.spare") == 0) {
            spare = info.inode;
            opened = true;
        }
        if (!opened || info.kind != IO_WRITE || info.inode != spare || info.result <= 0)
            continue;
        writes++;
        if (i + 1 < memfs_op_count(e.fs)) {
            memfs_op_get(e.fs, i + 1, &next);
            synced += next.kind == IO_FDATASYNC && next.inode == spare;
        }
    }
    CHECK(opened);
    CHECK_EQ(writes, 3); /* 1 MiB, 1 MiB, 512 KiB */
    CHECK_EQ(synced, writes);
    CHECK(!log_space_low(e.log));
    CHECK_EQ(log_close(e.log), 0);
    edge_destroy(&e);
}

/* A spare whose zero-fill fails (the disk filled up meanwhile) is a missing reservation, not
 * a poisoned log: space is low until a later attempt succeeds. */
static void test_zero_spare_fails(void)
{
    /* Count the writes an open makes before the spare's first zero write. */
    struct edge dry;
    memset(&dry, 0, sizeof(dry));
    dry.fs = memfs_create();
    dry.io = fault_backend_create(memfs_io(dry.fs), &(struct fault_config){.kind = FAULT_NONE});
    struct log_config config;
    edge_config(&dry, &config);
    REQUIRE(log_open(&config, dry.io, NULL, NULL, NULL, NULL, NULL, &dry.log) == 0);
    uint64_t writes_at_open = 0;
    for (uint64_t i = 0; i < memfs_op_count(dry.fs); i++) {
        struct memfs_op_info info;
        memfs_op_get(dry.fs, i, &info);
        writes_at_open += info.kind == IO_WRITE;
    }
    CHECK_EQ(log_close(dry.log), 0);
    edge_destroy(&dry);

    struct edge e;
    edge_open_spare(&e, FAULT_OP_BIT(IO_WRITE), writes_at_open + 1);
    CHECK(fault_backend_fired(e.io));
    CHECK(log_space_low(e.log));
    CHECK_EQ(log_error(e.log), 0);
    edge_append_n(&e, 5); /* commits still work */
    edge_settle(&e);
    CHECK_EQ(e.durable_end, 6);
    e.now_ns += 200 * 1000000; /* the retry makes (and zero-fills) a spare */
    edge_settle(&e);
    CHECK(!log_space_low(e.log));
    CHECK_EQ(e.poison, 0);
    CHECK_EQ(log_close(e.log), 0);
    edge_destroy(&e);
}

/* log_append_lazy: a lazy record starts no commit; it rides with the next urgent one, or goes
 * out once it has waited 50 ms, or when the batch is full, or at close. */
static void test_lazy_append(void)
{
    struct edge e;
    edge_open(&e, FAULT_OPS_ALL, 0);
    static uint8_t body[EDGE_RECORD_BYTES];
    REQUIRE(log_append_lazy(e.log, 1, body, sizeof(body), NULL) == 0);
    log_tick(e.log);
    CHECK_EQ(io_backend_poll(e.io, false), 0); /* nothing submitted */
    CHECK_EQ(log_durable_seq_end(e.log), 1);
    CHECK_EQ(log_next_deadline_ns(e.log), e.now_ns + 50 * 1000000);
    /* An urgent append takes it along. */
    REQUIRE(log_append(e.log, 1, body, sizeof(body), NULL) == 0);
    edge_settle(&e);
    CHECK_EQ(log_durable_seq_end(e.log), 3);
    /* Alone, it goes out at its deadline. */
    REQUIRE(log_append_lazy(e.log, 1, body, sizeof(body), NULL) == 0);
    e.now_ns += 49 * 1000000;
    log_tick(e.log);
    CHECK_EQ(io_backend_poll(e.io, false), 0);
    CHECK_EQ(log_durable_seq_end(e.log), 3);
    e.now_ns += 1000000;
    edge_settle(&e);
    CHECK_EQ(log_durable_seq_end(e.log), 4);
    /* A full batch of lazy records commits at once: someone waits for room. */
    int rc = 0;
    uint32_t appended = 0;
    while ((rc = log_append_lazy(e.log, 1, body, sizeof(body), NULL)) == 0)
        appended++;
    CHECK_EQ(rc, -ENOBUFS);
    edge_settle(&e);
    CHECK_EQ(log_durable_seq_end(e.log), 4 + appended);
    /* And close flushes what is left. */
    REQUIRE(log_append_lazy(e.log, 1, body, sizeof(body), NULL) == 0);
    CHECK_EQ(log_close(e.log), 0);
    CHECK_EQ(e.durable_end, 5 + appended);
    CHECK_EQ(e.poison, 0);
    edge_destroy(&e);
}

int main(void)
{
    RUN_TEST(test_close_waits_for_ops_during_enospc);
    RUN_TEST(test_salvage_refuses_missing_listed_segment);
    RUN_TEST(test_segment_size_bounded);
    RUN_TEST(test_direct_commits);
    RUN_TEST(test_checkpoint_anchor_listed);
    RUN_TEST(test_batch_stored_len_at_limit);
    RUN_TEST(test_read_across_drop);
    RUN_TEST(test_spare_segment_rolls);
    RUN_TEST(test_spare_segment_low);
    RUN_TEST(test_spare_segment_io_uring);
    RUN_TEST(test_zero_segments);
    RUN_TEST(test_zero_spare_chunks_durable);
    RUN_TEST(test_direct_open_transient);
    RUN_TEST(test_zero_spare_fails);
    RUN_TEST(test_lazy_append);
    return check_exit();
}
