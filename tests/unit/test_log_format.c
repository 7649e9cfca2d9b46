/*
 * The v2 on-disk format (issue 9, items 4 to 7), each test the regression test of one defect:
 *
 * - missing_newest_segment: a roll seals the old segment once the new one is durable and
 *   named; after `rm` of the newest segment the open (and log_scan) refuses with
 *   missing_segment naming it, where it used to start with fewer records. Salvage unseals and
 *   goes on from there.
 * - sealed_successor_header_damaged: a newest segment with no batch and a damaged header
 *   is not taken for a torn roll when its predecessor's seal names it.
 * - every_roll_crash_point: for every op of a workload that rolls, the power-loss images open
 *   (no crash is reported as a missing segment), and once opened (recovery writes a seal a
 *   crash left unwritten) removing the newest segment is detected.
 * - interval_synced_damage: in the interval mode, damage below a later batch's recorded sync
 *   point is corruption, not a torn tail (every batch of that mode used to be cut as one);
 *   damage in the last, unsynced batch is still a torn tail.
 * - forged_batch_in_body: a job body carrying a batch header forged with the old, predictable
 *   seed (the segment id) no longer turns a torn tail into LOG_ECORRUPT.
 * - v1_directory_reads: a directory written in the v1 format (built here by a small v1
 *   writer) opens, replays, takes appends and rolls; the v1 segment gets sealed.
 * - first_segment_*: no free space, or ENOSPC at the preallocation or at the zero fill, fails
 *   the open with one clear message and leaves no partial segment file.
 * - roll_checks_space: a roll (and the spare) check the free space before preallocating.
 *
 * Everything runs on memfs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "batch.h"
#include "check.h"
#include "fault_backend.h"
#include "log.h"
#include "memfs_backend.h"
#include "segment.h"

#define KIB 1024u
#define FMT_SEGMENT_BYTES (64u * KIB)
#define FMT_BATCH_BYTES (16u * KIB)
#define FMT_RECORD_BYTES 1500u
#define FMT_TURNS_MAX 10000 /* bounds every drive loop; a few hundred are used */

struct fmt {
    int64_t now_ns;
    uint64_t durable_end;
    uint64_t synced_end;
    int poison;
    uint64_t replayed;
    uint64_t replay_bad;
};

static int64_t fmt_now(void *ctx)
{
    return ((struct fmt *)ctx)->now_ns;
}

static void fmt_durable(void *ctx, uint64_t end, enum log_durability level, int error)
{
    struct fmt *f = ctx;
    if (error != 0) {
        f->poison = error;
        return;
    }
    if (end > f->durable_end)
        f->durable_end = end;
    if (level == LOG_DURABLE_SYNCED && end > f->synced_end)
        f->synced_end = end;
}

static void fmt_config(struct fmt *f, struct log_config *config)
{
    log_config_defaults(config);
    config->dir = ".";
    config->segment_size_bytes = FMT_SEGMENT_BYTES;
    config->batch_size_bytes_max = FMT_BATCH_BYTES;
    config->compress = false;
    config->on_durable = fmt_durable;
    config->now_ns = fmt_now;
    config->ctx = f;
}

/* Record seq's bytes: its seq, repeated. */
static void fmt_body(uint64_t seq, uint8_t *body, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++)
        body[i] = (uint8_t)(seq * 7 + i / 64);
}

static int fmt_replay(void *ctx, const struct log_record *rec)
{
    struct fmt *f = ctx;
    static uint8_t body[FMT_RECORD_BYTES];
    fmt_body(rec->pos.seq, body, FMT_RECORD_BYTES);
    bool ok = rec->len == FMT_RECORD_BYTES && memcmp(body, rec->data, rec->len) == 0 &&
              rec->pos.seq == f->replayed + 1;
    if (!ok)
        f->replay_bad++;
    f->replayed = rec->pos.seq;
    return 0;
}

static int fmt_open(struct fmt *f, struct io_backend *io, struct log_config *config,
                    struct log_recovery_report *report, struct log **log)
{
    f->replayed = 0;
    f->replay_bad = 0;
    return log_open(config, io, fmt_replay, f, NULL, NULL, report, log);
}

/* Open the image with sync_mode: recovery must refuse it as corrupt, naming reason. The
 * backend is destroyed. */
static void fmt_expect_corrupt(struct memfs *fs, enum log_sync_mode sync_mode,
                               const char *reason)
{
    struct fmt f = {.now_ns = 1};
    struct log_config config;
    fmt_config(&f, &config);
    config.sync_mode = sync_mode;
    struct log_recovery_report report;
    struct log *log = NULL;
    int rc = fmt_open(&f, memfs_io(fs), &config, &report, &log);
    CHECK_EQ(rc, LOG_ECORRUPT);
    CHECK(strstr(report.message, reason) != NULL);
    if (rc == 0)
        CHECK_EQ(log_close(log), 0);
    io_backend_destroy(memfs_io(fs));
}

/* Append records until next_seq reaches upto, committing whenever the batch is full. */
static void fmt_append_upto(struct log *log, struct io_backend *io, uint64_t upto)
{
    static uint8_t body[FMT_RECORD_BYTES];
    for (int turn = 0; turn < FMT_TURNS_MAX && log_next_seq(log) < upto; turn++) {
        fmt_body(log_next_seq(log), body, sizeof(body));
        int rc = log_append(log, 1, body, sizeof(body), NULL);
        if (rc == -ENOBUFS) {
            log_tick(log);
            REQUIRE(io_backend_poll(io, true) >= 0);
            continue;
        }
        REQUIRE(rc == 0);
    }
    REQUIRE(log_next_seq(log) == upto);
}

/* Commit what is open and wait until the engine is idle. */
static void fmt_settle(struct log *log, struct io_backend *io)
{
    for (int turn = 0; turn < FMT_TURNS_MAX; turn++) {
        log_tick(log);
        if (io->ops->in_flight(io) > 0)
            REQUIRE(io_backend_poll(io, true) >= 0);
        if (log_idle(log))
            break;
    }
    REQUIRE(log_idle(log));
}

/* A log of records [1, upto) on fs, closed; returns its segment count. */
static uint32_t fmt_write(struct memfs *fs, uint64_t upto)
{
    struct fmt f = {.now_ns = 1};
    struct log_config config;
    fmt_config(&f, &config);
    struct log *log = NULL;
    REQUIRE(fmt_open(&f, memfs_io(fs), &config, NULL, &log) == 0);
    fmt_append_upto(log, memfs_io(fs), upto);
    uint32_t count = log_segment_count(log);
    REQUIRE(log_close(log) == 0);
    return count;
}

static void fmt_unlink(struct memfs *fs, const char *name)
{
    struct io_op op = {.kind = IO_UNLINK};
    snprintf(op.path, sizeof(op.path), "%s", name);
    REQUIRE(io_sync(memfs_io(fs), &op) == 0);
}

/* The newest segment file's id (0 if none). */
static uint64_t fmt_newest_segment(const struct memfs *fs)
{
    uint64_t newest = 0;
    for (uint32_t i = 0; i < memfs_file_count(fs); i++) {
        uint64_t id;
        if (segment_name_parse(memfs_file_name(fs, i), &id) && id > newest)
            newest = id;
    }
    return newest;
}

static uint32_t fmt_segment_files(const struct memfs *fs)
{
    uint32_t count = 0;
    for (uint32_t i = 0; i < memfs_file_count(fs); i++) {
        uint64_t id;
        count += segment_name_parse(memfs_file_name(fs, i), &id) ? 1u : 0u;
    }
    return count;
}

/* Patch bytes of a file in place (through the backend, so its op log stays coherent). */
static void fmt_patch(struct memfs *fs, uint64_t segment_id, uint64_t offset, const void *data,
                      uint32_t len)
{
    char name[SEGMENT_NAME_LEN + 1];
    segment_name(segment_id, name);
    int fd = io_sync_open(memfs_io(fs), name, O_RDWR, 0);
    REQUIRE(fd >= 0);
    REQUIRE(io_sync_pwrite(memfs_io(fs), fd, data, len, offset) == (int64_t)len);
    REQUIRE(io_sync_simple(memfs_io(fs), IO_FDATASYNC, fd) == 0);
    REQUIRE(io_sync_simple(memfs_io(fs), IO_CLOSE, fd) == 0);
}

struct fmt_damage_seen {
    enum log_damage_kind kind;
    uint64_t segment_id;
    uint32_t count;
};

static void fmt_scan_damage(void *ctx, const struct log_damage *damage)
{
    struct fmt_damage_seen *seen = ctx;
    if (seen->count++ == 0) {
        seen->kind = damage->kind;
        seen->segment_id = damage->segment_id;
    }
}

/* Open a log that must refuse with missing_segment naming missing_id; log_scan agrees. */
static void fmt_expect_missing(struct memfs *fs, uint64_t missing_id)
{
    struct fmt f = {.now_ns = 1};
    struct log_config config;
    fmt_config(&f, &config);
    struct log_recovery_report report;
    struct log *log = NULL;
    int rc = fmt_open(&f, memfs_io(fs), &config, &report, &log);
    CHECK_EQ(rc, LOG_ECORRUPT);
    if (rc == 0) {
        CHECK_EQ(log_close(log), 0);
        return;
    }
    char id[24];
    snprintf(id, sizeof(id), "%020llu", (unsigned long long)missing_id);
    CHECK(strstr(report.message, "missing_segment") != NULL);
    CHECK(strstr(report.message, id) != NULL);
    struct fmt_damage_seen seen = {0};
    struct log_scan_callbacks cb = {.damage = fmt_scan_damage, .ctx = &seen};
    CHECK_EQ(log_scan(memfs_io(fs), &cb), LOG_ECORRUPT);
    CHECK_EQ(seen.kind, LOG_DAMAGE_MISSING_SEGMENT);
    CHECK_EQ(seen.segment_id, missing_id);
}

static void test_missing_newest_segment(void)
{
    struct memfs *fs = memfs_create();
    REQUIRE(fmt_write(fs, 200) >= 3);
    uint64_t newest = fmt_newest_segment(fs);
    char name[SEGMENT_NAME_LEN + 1];
    segment_name(newest, name);
    fmt_unlink(fs, name);
    fmt_expect_missing(fs, newest);
    /* Salvage is the operator's way on: it unseals, and the log goes on from the cut. */
    struct fmt f = {.now_ns = 1};
    struct log_config config;
    fmt_config(&f, &config);
    config.salvage = true;
    struct log_recovery_report report;
    struct log *log = NULL;
    REQUIRE(fmt_open(&f, memfs_io(fs), &config, &report, &log) == 0);
    CHECK(report.salvaged);
    CHECK_EQ(report.salvage_seq_lost_from, newest);
    CHECK_EQ(log_next_seq(log), newest);
    CHECK_EQ(f.replayed, newest - 1);
    CHECK_EQ(f.replay_bad, 0);
    fmt_append_upto(log, memfs_io(fs), newest + 5);
    REQUIRE(log_close(log) == 0);
    config.salvage = false;
    REQUIRE(fmt_open(&f, memfs_io(fs), &config, &report, &log) == 0);
    CHECK_EQ(f.replayed, newest + 4);
    CHECK_EQ(f.replay_bad, 0);
    REQUIRE(log_close(log) == 0);
    io_backend_destroy(memfs_io(fs));
}

/* The newest segment holds no batch and its header no longer verifies: without the seal
 * that is a roll torn by a crash (deleted), but its predecessor's seal proves the header was
 * durable: damage, refused (recovery used to delete it, then assert on the sealed segment). */
static void test_sealed_successor_header_damaged(void)
{
    struct memfs *fs = memfs_create();
    REQUIRE(fmt_write(fs, 200) >= 3);
    uint64_t newest = fmt_newest_segment(fs);
    static uint8_t zero[FMT_SEGMENT_BYTES];
    fmt_patch(fs, newest, SEGMENT_HEADER_SIZE, zero, FMT_SEGMENT_BYTES - SEGMENT_HEADER_SIZE);
    uint8_t byte = 0x77;
    fmt_patch(fs, newest, 20, &byte, 1);
    fmt_expect_corrupt(fs, LOG_SYNC_ALWAYS, "bad_segment_header");
}

/* One power-loss image at k: it opens; after a close, the newest segment's loss is seen. */
static void fmt_check_image(const struct memfs *fs, uint64_t k, enum memfs_image_kind kind,
                            uint64_t seed)
{
    struct memfs *img = memfs_image(fs, k, kind, seed);
    struct fmt f = {.now_ns = 1};
    struct log_config config;
    fmt_config(&f, &config);
    struct log_recovery_report report;
    struct log *log = NULL;
    int rc = fmt_open(&f, memfs_io(img), &config, &report, &log);
    if (rc != 0)
        fprintf(stderr, "image at op %llu: %s: %s\n", (unsigned long long)k, log_strerror(rc),
                report.message);
    CHECK_EQ(rc, 0);
    if (rc == 0) {
        CHECK_EQ(f.replay_bad, 0);
        REQUIRE(log_close(log) == 0);
        if (fmt_segment_files(img) >= 2) {
            uint64_t newest = fmt_newest_segment(img);
            char name[SEGMENT_NAME_LEN + 1];
            segment_name(newest, name);
            fmt_unlink(img, name);
            fmt_expect_missing(img, newest);
        }
    }
    io_backend_destroy(memfs_io(img));
}

static void test_every_roll_crash_point(void)
{
    for (int mode = 0; mode < 2; mode++) {
        struct memfs *fs = memfs_create();
        struct fmt f = {.now_ns = 1};
        struct log_config config;
        fmt_config(&f, &config);
        config.spare_segment = mode == 1;
        struct log *log = NULL;
        REQUIRE(fmt_open(&f, memfs_io(fs), &config, NULL, &log) == 0);
        fmt_append_upto(log, memfs_io(fs), 90); /* three rolls of 64 KiB segments */
        fmt_settle(log, memfs_io(fs));
        REQUIRE(log_segment_count(log) >= 3);
        REQUIRE(log_close(log) == 0);
        for (uint64_t k = 0; k <= memfs_op_count(fs); k++) {
            fmt_check_image(fs, k, MEMFS_IMAGE_DURABLE, 0);
            fmt_check_image(fs, k, MEMFS_IMAGE_CRASH, k * 31 + 7);
            fmt_check_image(fs, k, MEMFS_IMAGE_CRASH_UNORDERED, k * 17 + 3);
        }
        io_backend_destroy(memfs_io(fs));
    }
}

/* Offsets of the batches of a segment, read back with the engine's scanner. */
struct fmt_batches {
    uint64_t segment_id;
    uint64_t offset[64];
    uint64_t base_seq[64];
    uint32_t count;
};

static int fmt_list_batch(void *ctx, uint64_t segment_id, uint64_t offset, uint64_t base_seq,
                          uint32_t record_count, uint32_t stored_len, uint32_t raw_len,
                          uint8_t codec)
{
    struct fmt_batches *b = ctx;
    (void)record_count, (void)stored_len, (void)raw_len, (void)codec;
    if (segment_id == b->segment_id && b->count < 64) {
        b->offset[b->count] = offset;
        b->base_seq[b->count++] = base_seq;
    }
    return 0;
}

static void fmt_list_batches(struct memfs *fs, uint64_t segment_id, struct fmt_batches *b)
{
    memset(b, 0, sizeof(*b));
    b->segment_id = segment_id;
    struct log_scan_callbacks cb = {.batch = fmt_list_batch, .ctx = b};
    REQUIRE(log_scan(memfs_io(fs), &cb) == 0);
}

/* Interval mode: three batches, an fdatasync, a fourth batch; closed without a final sync
 * reported (log_close syncs, but the batches' recorded sync points are what counts). */
static void fmt_write_interval(struct memfs *fs)
{
    struct fmt f = {.now_ns = 1};
    struct log_config config;
    fmt_config(&f, &config);
    config.sync_mode = LOG_SYNC_INTERVAL;
    config.sync_interval_ms = 5;
    struct log *log = NULL;
    REQUIRE(fmt_open(&f, memfs_io(fs), &config, NULL, &log) == 0);
    static uint8_t body[FMT_RECORD_BYTES];
    for (uint64_t seq = 1; seq <= 4; seq++) {
        fmt_body(seq, body, sizeof(body));
        REQUIRE(log_append(log, 1, body, sizeof(body), NULL) == 0);
        fmt_settle(log, memfs_io(fs)); /* one batch per record */
        if (seq == 3) {
            f.now_ns += 10 * 1000 * 1000; /* the interval fdatasync covers batches 1..3 */
            fmt_settle(log, memfs_io(fs));
            REQUIRE(f.synced_end == 4);
        }
    }
    REQUIRE(f.durable_end == 5);
    REQUIRE(log_close(log) == 0);
}

static void test_interval_synced_damage(void)
{
    struct memfs *fs = memfs_create();
    fmt_write_interval(fs);
    struct fmt_batches b;
    fmt_list_batches(fs, 1, &b);
    REQUIRE(b.count == 4);
    /* A flipped payload byte in batch 2, which was fdatasync'ed (batch 4 records it). */
    uint8_t garbage = 0x5a;
    fmt_patch(fs, 1, b.offset[1] + 200, &garbage, 1);
    fmt_expect_corrupt(fs, LOG_SYNC_INTERVAL, "bad_payload");
    /* The same damage in batch 4, written after the last fdatasync: a torn tail. */
    fs = memfs_create();
    fmt_write_interval(fs);
    fmt_list_batches(fs, 1, &b);
    REQUIRE(b.count == 4);
    fmt_patch(fs, 1, b.offset[3] + 200, &garbage, 1);
    struct fmt f = {.now_ns = 1};
    struct log_config config;
    fmt_config(&f, &config);
    config.sync_mode = LOG_SYNC_INTERVAL;
    struct log_recovery_report report;
    struct log *log = NULL;
    REQUIRE(fmt_open(&f, memfs_io(fs), &config, &report, &log) == 0);
    CHECK(report.torn_tail);
    CHECK_EQ(f.replayed, 3);
    REQUIRE(log_close(log) == 0);
    io_backend_destroy(memfs_io(fs));
}

/* A v1 batch header at 4096-aligned offset `at` of a body that starts at body_offset in the
 * file: what anyone could compute under the v1 seed (the segment id). */
static void fmt_forge_header(uint8_t *body, uint64_t body_offset, uint64_t at,
                             uint64_t segment_id)
{
    struct batch_header h = {
        .magic = BATCH_MAGIC, .version = BATCH_VERSION_V1, .codec = BATCH_CODEC_NONE,
        .record_count = 1, .stored_len = 8, .raw_len = 8, .total_len = BATCH_ALIGN,
        .base_seq = 1000, .segment_id = segment_id, .prev_batch_hash = 1,
        .payload_hash = 2, .hash_seed = segment_id,
    };
    batch_header_encode(&h, body + (at - body_offset));
}

static void test_forged_batch_in_body(void)
{
    struct memfs *fs = memfs_create();
    struct fmt f = {.now_ns = 1};
    struct log_config config;
    fmt_config(&f, &config);
    struct log *log = NULL;
    REQUIRE(fmt_open(&f, memfs_io(fs), &config, NULL, &log) == 0);
    static uint8_t body[FMT_RECORD_BYTES];
    fmt_body(1, body, sizeof(body));
    REQUIRE(log_append(log, 1, body, sizeof(body), NULL) == 0);
    fmt_settle(log, memfs_io(fs));
    /* Batch 2 (at 8192) holds one record whose body spans the block at 12288 and carries a
     * forged header there. */
    static uint8_t big[2 * BATCH_ALIGN];
    memset(big, 0x33, sizeof(big));
    uint64_t body_offset = 2 * BATCH_ALIGN + BATCH_HEADER_SIZE + BATCH_RECORD_HEADER_SIZE;
    fmt_forge_header(big, body_offset, 3 * BATCH_ALIGN, 1);
    struct log_pos pos;
    REQUIRE(log_append(log, 2, big, sizeof(big), &pos) == 0);
    REQUIRE(pos.batch_offset == 2 * BATCH_ALIGN);
    fmt_settle(log, memfs_io(fs));
    REQUIRE(log_close(log) == 0);
    /* A crash tore batch 2's header: a torn tail, whatever its body says. */
    uint8_t torn = 0xee;
    fmt_patch(fs, 1, 2 * BATCH_ALIGN + 10, &torn, 1);
    struct log_recovery_report report;
    int rc = fmt_open(&f, memfs_io(fs), &config, &report, &log);
    if (rc != 0)
        fprintf(stderr, "forged batch: %s: %s\n", log_strerror(rc), report.message);
    CHECK_EQ(rc, 0);
    if (rc == 0) {
        CHECK(report.torn_tail);
        CHECK_EQ(f.replayed, 1);
        REQUIRE(log_close(log) == 0);
    }
    io_backend_destroy(memfs_io(fs));
}

/* ---- writers of older versions (v1, v2), for the upgrade tests ---- */

/* The seed of every v2 segment planted here (v1 seeds with the segment id). */
#define FMT_V2_SEED 0x5eed5eed5eedull

static uint64_t fmt_seed(uint16_t version, uint64_t id)
{
    return version == SEGMENT_VERSION_V1 ? id : FMT_V2_SEED + id;
}

/* A segment header of version (1 or 2) with flags (reserved in both: 0 unless a test wants
 * a bad one). */
static void fmt_old_segment_header(uint8_t *block, uint16_t version, uint64_t id,
                                   uint64_t prev_id, uint64_t prev_hash, uint16_t flags,
                                   uint64_t *header_hash)
{
    struct segment_header h = {
        .magic = SEGMENT_MAGIC, .version = version, .flags = flags, .segment_id = id,
        .segment_size = FMT_SEGMENT_BYTES, .prev_segment_id = prev_id,
        .prev_last_batch_hash = prev_hash, .created_unix_ns = 1,
        .hash_seed = version == SEGMENT_VERSION_V1 ? 0 : fmt_seed(version, id),
    };
    memset(block, 0, SEGMENT_HEADER_SIZE);
    memcpy(block, &h, sizeof(h));
    *header_hash = XXH3_64bits_withSeed(block, 56, id); /* both: seeded with the id */
    memcpy(block + 56, header_hash, sizeof(*header_hash));
}

/* One batch of version (1 or 2) of records [seq, seq + count) at file + offset; a v2 one in
 * the always mode (its sync point its own offset). Returns its header hash. */
static uint64_t fmt_old_batch(uint8_t *file, uint16_t version, uint64_t offset, uint64_t id,
                              uint64_t seq, uint32_t count, uint64_t prev_hash, uint32_t *total)
{
    static uint8_t open_buf[FMT_BATCH_BYTES], spare[FMT_BATCH_BYTES], body[FMT_RECORD_BYTES];
    uint32_t raw = 0;
    for (uint32_t i = 0; i < count; i++) {
        fmt_body(seq + i, body, sizeof(body));
        raw = batch_record_put(open_buf + BATCH_HEADER_SIZE, raw, 1, body, sizeof(body));
    }
    bool v1 = version == SEGMENT_VERSION_V1;
    struct batch_seal_args args = {.base_seq = seq, .segment_id = id, .prev_batch_hash = prev_hash,
                                   .record_count = count, .raw_len = raw,
                                   .hash_seed = fmt_seed(version, id),
                                   .synced_offset = v1 ? 0 : offset};
    uint8_t *out;
    struct batch_header h;
    batch_seal(open_buf, spare, sizeof(open_buf), &args, &out, &h);
    if (v1) {
        h.version = BATCH_VERSION_V1; /* total_len at offset 20, no sync point */
        h.synced_blocks = 0;
        batch_header_encode(&h, out);
    }
    memcpy(file + offset, out, h.total_len);
    *total = h.total_len;
    return h.header_hash;
}

/* Two segments of version (1 or 2) as the builds of that version wrote them: 1 holds records
 * 1..12, 13 holds 13..20. v2 seals segment 1 (v1 had no seal); flags goes into segment 13's
 * header (0 is the only valid value in both versions). */
static void fmt_plant_old(struct memfs *fs, uint16_t version, uint16_t flags)
{
    static uint8_t file[FMT_SEGMENT_BYTES];
    uint64_t seq = 1, hash = 0, offset;
    uint32_t total;
    for (uint64_t id = 1; id <= 13; id += 12) {
        memset(file, 0, sizeof(file));
        fmt_old_segment_header(file, version, id, id == 1 ? 0 : 1, hash, id == 13 ? flags : 0,
                               &hash);
        offset = SEGMENT_HEADER_SIZE;
        uint64_t end = id == 1 ? 13 : 21;
        while (seq < end) {
            uint32_t count = end - seq < 4 ? (uint32_t)(end - seq) : 4u;
            hash = fmt_old_batch(file, version, offset, id, seq, count, hash, &total);
            offset += total;
            seq += count;
        }
        if (id == 1 && version != SEGMENT_VERSION_V1) {
            struct batch_header seal;
            batch_seal_marker(file + offset, 1, fmt_seed(version, 1), 13, hash, &seal);
        }
        char name[SEGMENT_NAME_LEN + 1];
        segment_name(id, name);
        memfs_put_file(fs, name, file, sizeof(file));
    }
}

/* Plant a directory of version (fmt_plant_old) in fs and open it: all 20 records replay. */
static struct log *fmt_open_old(struct memfs *fs, uint16_t version, struct fmt *f,
                                struct log_config *config, struct log_recovery_report *report)
{
    fmt_plant_old(fs, version, 0);
    fmt_config(f, config);
    struct log *log = NULL;
    int rc = fmt_open(f, memfs_io(fs), config, report, &log);
    if (rc != 0)
        fprintf(stderr, "v%u open: %s: %s\n", version, log_strerror(rc), report->message);
    REQUIRE(rc == 0);
    CHECK_EQ(f->replayed, 20);
    CHECK_EQ(f->replay_bad, 0);
    return log;
}

/* Reopen after the upgrade test's appends (up to seq 120): all 119 records replay. */
static void fmt_reopen_upgraded(struct memfs *fs, struct fmt *f, struct log_config *config,
                                struct log_recovery_report *report)
{
    struct log *log = NULL;
    REQUIRE(fmt_open(f, memfs_io(fs), config, report, &log) == 0);
    CHECK_EQ(f->replayed, 119);
    CHECK_EQ(f->replay_bad, 0);
    REQUIRE(log_close(log) == 0);
}

static void test_v1_directory_reads(void)
{
    struct memfs *fs = memfs_create();
    struct fmt f = {.now_ns = 1};
    struct log_config config;
    struct log_recovery_report report;
    struct log *log = fmt_open_old(fs, SEGMENT_VERSION_V1, &f, &config, &report);
    CHECK_EQ(log_next_seq(log), 21);
    /* Appends go on in the v1 segment (v2 batches seeded with its id), then roll into v2. */
    fmt_append_upto(log, memfs_io(fs), 120);
    fmt_settle(log, memfs_io(fs));
    CHECK(log_segment_count(log) >= 4);
    REQUIRE(log_close(log) == 0);
    fmt_reopen_upgraded(fs, &f, &config, &report);
    /* The v1 segment 13 was sealed by its roll: losing what followed it is detected. */
    uint64_t newest;
    while ((newest = fmt_newest_segment(fs)) > 13) {
        char name[SEGMENT_NAME_LEN + 1];
        segment_name(newest, name);
        fmt_unlink(fs, name);
    }
    uint64_t successor = 0;
    const uint8_t *data;
    uint64_t size;
    REQUIRE(memfs_file(fs, "00000000000000000013.seg", &data, &size));
    for (uint64_t off = SEGMENT_HEADER_SIZE; off + BATCH_ALIGN <= size; off += BATCH_ALIGN) {
        struct batch_header h;
        if (batch_header_check(data + off, 13, &h) == BATCH_OK &&
            (h.flags & BATCH_FLAG_SEAL) != 0)
            successor = h.base_seq;
    }
    REQUIRE(successor > 13);
    fmt_expect_missing(fs, successor);
    io_backend_destroy(memfs_io(fs));
}

/* A v2 directory opens as it is under v3 (which only gave the header's flags a meaning):
 * every record replays, appends go on in the v2 segment and roll into v3 ones. */
static void test_v2_directory_reads(void)
{
    struct memfs *fs = memfs_create();
    struct fmt f = {.now_ns = 1};
    struct log_config config;
    struct log_recovery_report report;
    struct log *log = fmt_open_old(fs, SEGMENT_VERSION_V2, &f, &config, &report);
    CHECK(!report.torn_tail);
    fmt_append_upto(log, memfs_io(fs), 120);
    fmt_settle(log, memfs_io(fs));
    CHECK(log_segment_count(log) >= 3);
    uint64_t newest = log_current_segment_id(log);
    REQUIRE(log_close(log) == 0);
    const uint8_t *data;
    uint64_t size;
    char name[SEGMENT_NAME_LEN + 1];
    segment_name(newest, name);
    REQUIRE(memfs_file(fs, name, &data, &size));
    struct segment_header h;
    REQUIRE(segment_header_check(data, newest, &h) == SEGMENT_OK);
    CHECK_EQ(h.version, SEGMENT_VERSION);
    fmt_reopen_upgraded(fs, &f, &config, &report);
    io_backend_destroy(memfs_io(fs));
    /* v2 reserved the flags: a v2 header that sets one is damage, not a recycled segment. */
    fs = memfs_create();
    fmt_plant_old(fs, SEGMENT_VERSION_V2, SEGMENT_FLAG_RECYCLED);
    fmt_expect_corrupt(fs, LOG_SYNC_ALWAYS, "bad_segment_header");
}

/* ---- free space ---- */

static void fmt_expect_no_segment_left(struct io_backend *io, struct memfs *fs, int fault,
                                       uint32_t mask, uint64_t free_bytes, const char *what)
{
    struct fmt f = {.now_ns = 1};
    struct log_config config;
    fmt_config(&f, &config);
    memfs_set_free_bytes(fs, free_bytes);
    struct fault_config fc = {.kind = (enum fault_kind)fault, .op_mask = mask, .fail_at = 1};
    struct io_backend *wrapped = fault != 0 ? fault_backend_create(io, &fc) : io;
    struct log_recovery_report report;
    struct log *log = NULL;
    int rc = fmt_open(&f, wrapped, &config, &report, &log);
    CHECK(rc == -ENOSPC);
    if (rc == 0)
        CHECK_EQ(log_close(log), 0);
    CHECK(strstr(report.message, what) != NULL);
    CHECK(strchr(report.message, '\n') == NULL);
    CHECK_EQ(fmt_segment_files(fs), 0);
    if (wrapped != io)
        io_backend_destroy(wrapped);
}

static void test_first_segment_no_space(void)
{
    struct memfs *fs = memfs_create();
    fmt_expect_no_segment_left(memfs_io(fs), fs, 0, 0, FMT_SEGMENT_BYTES / 2,
                               "not enough free disk space for a segment of 65536 bytes");
    for (uint64_t i = 0; i < memfs_op_count(fs); i++) { /* refused before any file was made */
        struct memfs_op_info info;
        memfs_op_get(fs, i, &info);
        CHECK(info.kind != IO_OPEN || strstr(info.path, ".seg") == NULL);
    }
    io_backend_destroy(memfs_io(fs));
}

static void test_first_segment_enospc_fallocate(void)
{
    struct memfs *fs = memfs_create();
    fmt_expect_no_segment_left(memfs_io(fs), fs, FAULT_ENOSPC, FAULT_OP_BIT(IO_FALLOCATE), 0,
                               "the partial file was removed");
    io_backend_destroy(memfs_io(fs));
}

static void test_first_segment_enospc_zero_fill(void)
{
    struct memfs *fs = memfs_create();
    fmt_expect_no_segment_left(memfs_io(fs), fs, FAULT_ENOSPC, FAULT_OPS_WRITES, 0,
                               "the partial file was removed");
    io_backend_destroy(memfs_io(fs));
}

static void test_roll_checks_space(void)
{
    struct memfs *fs = memfs_create();
    struct fmt f = {.now_ns = 1};
    struct log_config config;
    fmt_config(&f, &config);
    config.spare_segment = true;
    REQUIRE(fmt_write(fs, 2) == 1);
    memfs_set_free_bytes(fs, FMT_SEGMENT_BYTES / 2); /* the first segment is already there */
    struct log *log = NULL;
    REQUIRE(fmt_open(&f, memfs_io(fs), &config, NULL, &log) == 0);
    static uint8_t body[FMT_RECORD_BYTES];
    int rc = 0;
    for (int turn = 0; turn < FMT_TURNS_MAX && rc != LOG_ENOSPC; turn++) {
        rc = log_append(log, 1, body, sizeof(body), NULL);
        log_tick(log);
        if (memfs_io(fs)->ops->in_flight(memfs_io(fs)) > 0)
            REQUIRE(io_backend_poll(memfs_io(fs), true) >= 0);
    }
    CHECK_EQ(rc, LOG_ENOSPC);
    CHECK(log_space_low(log));
    CHECK_EQ(fmt_segment_files(fs), 1);
    const uint8_t *data;
    uint64_t size = 0;
    if (memfs_file(fs, "segment.spare", &data, &size))
        CHECK_EQ(size, 0); /* never preallocated */
    /* Space comes back: the roll retries and goes through. */
    memfs_set_free_bytes(fs, 1ull << 30);
    f.now_ns += 1000ll * 1000 * 1000;
    fmt_settle(log, memfs_io(fs));
    CHECK_EQ(log_append(log, 1, body, sizeof(body), NULL), 0);
    fmt_settle(log, memfs_io(fs));
    CHECK_EQ(fmt_segment_files(fs), 2);
    REQUIRE(log_close(log) == 0);
    io_backend_destroy(memfs_io(fs));
}

int main(void)
{
    RUN_TEST(test_missing_newest_segment);
    RUN_TEST(test_sealed_successor_header_damaged);
    RUN_TEST(test_every_roll_crash_point);
    RUN_TEST(test_interval_synced_damage);
    RUN_TEST(test_forged_batch_in_body);
    RUN_TEST(test_v1_directory_reads);
    RUN_TEST(test_v2_directory_reads);
    RUN_TEST(test_first_segment_no_space);
    RUN_TEST(test_first_segment_enospc_fallocate);
    RUN_TEST(test_first_segment_enospc_zero_fill);
    RUN_TEST(test_roll_checks_space);
    return check_exit();
}
