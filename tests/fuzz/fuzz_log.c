/*
 * Fuzz target for the log reader: arbitrary bytes as segment files and a checkpoint file, fed
 * to the decoder recovery uses. Nothing may crash, assert, read outside a buffer (run under
 * ASan) or loop; every input is either accepted or rejected with an error.
 *
 * Input layout (little-endian):
 *
 *   0  u8  flags      FUZZ_LOG_FIX, FUZZ_LOG_RECOVER, FUZZ_LOG_SALVAGE, FUZZ_LOG_SPARE
 *   1  u32 ckpt_len   bytes of the checkpoint file that follow (0: no checkpoint; clamped)
 *   5  u32 seg1_len   bytes of the first segment file after it (clamped)
 *   9  ...            checkpoint bytes, first segment, then the second segment (the rest;
 *                     absent when empty)
 *
 * Each segment file is named by the segment_id in its header (bytes 8..15), or 1 and 2 when
 * that is 0 or not a valid name. With FUZZ_LOG_FIX, every hash is recomputed before decoding
 * (the segment header hash, each batch's payload and header hash and prev-hash link, the link
 * from the second segment to the first, the checkpoint hash), so mutations reach the field
 * checks, lz4 and the record walk instead of stopping at a hash.
 *
 * What runs on every input:
 *   1. the decoders directly, on exact-size heap copies (ASan sees a read one byte past):
 *      checkpoint_decode, segment_header_check, and for every 4096-aligned block
 *      batch_header_check, then batch_payload_valid and batch_payload_decode (lz4 safe
 *      decompress + record walk) when the header verified; a decoded payload must walk into
 *      exactly record_count records that fill raw_len;
 *   2. log_scan over an in-memory directory (memfs) holding the files, touching every byte of
 *      every record handed out;
 *   3. with FUZZ_LOG_RECOVER (and segment sizes small enough for memory): log_open (recovery,
 *      with salvage when FUZZ_LOG_SALVAGE, with a spare segment when FUZZ_LOG_SPARE), then
 *      one append and log_close; a recovery that
 *      succeeded must leave a log that log_scan finds sound and that ends with that append.
 *
 * Built two ways: with clang -fsanitize=fuzzer as a libFuzzer target (see meson.build), and,
 * in every build, with fuzz_replay.c (suite 'fuzz'). Both start from the seeds gen_log_corpus.c
 * makes at build time from real engine output, plus tests/fuzz/corpus/log/regressions.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "batch.h"
#include "checkpoint.h"
#include "log.h"
#include "memfs_backend.h"
#include "segment.h"

#define FUZZ_LOG_FIX 0x01u
#define FUZZ_LOG_RECOVER 0x02u
#define FUZZ_LOG_SALVAGE 0x04u
#define FUZZ_LOG_SPARE 0x08u
#define FUZZ_LOG_PREFIX_SIZE 9u
/* Recovery preallocates the newest segment to its header's size in memory: keep that small
 * so one input cannot ask memfs for gigabytes (the bound is the fuzzer's, not the engine's). */
#define FUZZ_LOG_RECOVER_SEGMENT_MAX (1u << 20)
/* The engine's configuration for recovery: the smallest sizes it accepts, so inputs stay
 * small and a roll happens after a few appends. */
#define FUZZ_LOG_SEGMENT_SIZE (32u * 1024)
#define FUZZ_LOG_BATCH_SIZE (8u * 1024)
#define FUZZ_LOG_RECORD_TYPE 0x5a
#define FUZZ_LOG_APPEND_BODY "appended after recovery"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_file {
    uint8_t *data; /* a mutable copy */
    size_t size;
    uint64_t id; /* segments: the id it is named by */
};

static void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz_log: %s\n", what);
    abort();
}

static uint32_t fuzz_le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static uint64_t fuzz_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static void *fuzz_copy(const void *p, size_t n, size_t size)
{
    uint8_t *c = malloc(size > 0 ? size : 1);
    if (c == NULL)
        fuzz_fail("out of memory");
    memset(c, 0, size);
    if (n > 0)
        memcpy(c, p, n < size ? n : size);
    return c;
}

/* ---- FUZZ_LOG_FIX: make hashes match whatever the fields say ---- */

/* Re-seal the batches of a segment from offset 4096 on, with the segment's hash seed; returns
 * the last header hash. A header of a version the encoder does not write is left as it is
 * (the reader must refuse it, which is worth fuzzing too). */
static uint64_t fuzz_fix_batches(struct fuzz_file *f, uint64_t seed, uint64_t prev_hash)
{
    for (size_t off = SEGMENT_HEADER_SIZE; off + BATCH_HEADER_SIZE <= f->size;) {
        uint8_t *b = f->data + off;
        size_t step = BATCH_ALIGN;
        if (fuzz_le32(b) == BATCH_MAGIC) {
            struct batch_header h;
            batch_header_decode(b, &h);
            if (h.version != BATCH_VERSION && h.version != BATCH_VERSION_V1) {
                off += step;
                continue;
            }
            h.segment_id = f->id;
            h.prev_batch_hash = prev_hash;
            h.hash_seed = seed;
            if (h.stored_len <= f->size - off - BATCH_HEADER_SIZE)
                h.payload_hash = XXH3_64bits_withSeed(b + BATCH_HEADER_SIZE, h.stored_len, seed);
            batch_header_encode(&h, b);
            prev_hash = h.header_hash;
            if (h.total_len >= BATCH_ALIGN && h.total_len % BATCH_ALIGN == 0)
                step = h.total_len;
        }
        if (step > f->size - off)
            break;
        off += step;
    }
    return prev_hash;
}

static uint64_t fuzz_fix_segment(struct fuzz_file *f, uint64_t prev_last_hash)
{
    if (f->size < SEGMENT_HEADER_USED)
        return 0;
    uint8_t *p = f->data;
    memcpy(p + 8, &f->id, sizeof(f->id));
    if (prev_last_hash != 0)
        memcpy(p + 32, &prev_last_hash, sizeof(prev_last_hash));
    uint64_t hash = XXH3_64bits_withSeed(p, 56, f->id);
    memcpy(p + 56, &hash, sizeof(hash));
    /* A v2 header carries the seed of its batches at offset 48; v1 seeds with the id. */
    uint64_t seed = f->id;
    uint16_t version;
    memcpy(&version, p + 4, sizeof(version));
    if (version == SEGMENT_VERSION || version == SEGMENT_VERSION_V2)
        memcpy(&seed, p + 48, sizeof(seed));
    return fuzz_fix_batches(f, seed, hash);
}

static void fuzz_fix_checkpoint(struct fuzz_file *f)
{
    if (f->size < 8)
        return;
    uint64_t hash = XXH3_64bits_withSeed(f->data, f->size - 8, CHECKPOINT_HASH_SEED);
    memcpy(f->data + f->size - 8, &hash, sizeof(hash));
}

/* ---- 1. the decoders, directly ---- */

static void fuzz_checkpoint_decode(const struct fuzz_file *f)
{
    uint8_t *copy = fuzz_copy(f->data, f->size, f->size);
    struct checkpoint_info info;
    char detail[160];
    int rc = checkpoint_decode(copy, f->size, &info, detail, sizeof(detail));
    if (rc == 0) {
        uint64_t sum = 0;
        for (uint32_t i = 0; i < info.segment_count; i++)
            sum += checkpoint_segment_id(&info, i);
        for (uint32_t i = 0; i < info.payload_len; i++)
            sum += info.payload[i];
        if (info.payload + info.payload_len + 8 != copy + f->size)
            fuzz_fail("checkpoint payload does not end 8 bytes before the file");
        (void)sum;
    } else if (rc != LOG_ECORRUPT && rc != LOG_EVERSION) {
        fuzz_fail("checkpoint_decode returned an unexpected code");
    }
    free(copy);
}

/* A decoded payload: exactly record_count records filling raw_len, every byte readable. */
static void fuzz_walk(const struct batch_header *h, const uint8_t *raw)
{
    struct batch_cursor cursor = {.raw = raw, .raw_len = h->raw_len};
    uint8_t type;
    const uint8_t *data;
    uint32_t len;
    uint32_t count = 0;
    uint64_t sum = 0;
    while (batch_cursor_next(&cursor, &type, &data, &len)) {
        if (data < raw || data + len > raw + h->raw_len)
            fuzz_fail("record outside the payload");
        for (uint32_t i = 0; i < len; i++)
            sum += data[i];
        count++;
    }
    if (count != h->record_count || cursor.offset != h->raw_len)
        fuzz_fail("decoded payload does not walk into record_count records");
    (void)sum;
}

static void fuzz_batch_decode(const struct fuzz_file *f, size_t off, const struct batch_header *h)
{
    size_t avail = f->size - off - BATCH_HEADER_SIZE;
    /* Bytes past the end of a file read as zero, as in scan.c. */
    uint8_t *stored = fuzz_copy(f->data + off + BATCH_HEADER_SIZE,
                                avail < h->stored_len ? avail : h->stored_len, h->stored_len);
    if (batch_payload_valid(h, stored)) {
        uint8_t *scratch = h->codec == BATCH_CODEC_LZ4 ? fuzz_copy(NULL, 0, h->raw_len) : NULL;
        const uint8_t *raw = batch_payload_decode(h, stored, scratch, scratch ? h->raw_len : 0);
        if (raw != NULL)
            fuzz_walk(h, raw);
        free(scratch);
    }
    free(stored);
}

static void fuzz_segment_decode(const struct fuzz_file *f)
{
    uint8_t *block = fuzz_copy(f->data, f->size, SEGMENT_HEADER_SIZE);
    struct segment_header sh;
    enum segment_check sc = segment_header_check(block, f->id, &sh);
    free(block);
    /* A v2 segment seeds its batch hashes with its header's random seed: without it no batch
     * of a v2 image would verify here, and the payload decoder would go unfuzzed. A header
     * that does not check falls back to the v1 seed (the segment id). */
    uint64_t seed = sc == SEGMENT_OK ? segment_hash_seed(&sh) : f->id;
    for (size_t off = SEGMENT_HEADER_SIZE; off < f->size; off += BATCH_ALIGN) {
        uint8_t *head = fuzz_copy(f->data + off, f->size - off, BATCH_HEADER_SIZE);
        struct batch_header h;
        enum batch_check bc = batch_header_check_seeded(head, f->id, seed, &h);
        free(head);
        if (bc != BATCH_OK)
            continue;
        if (h.total_len != batch_align_up((uint64_t)BATCH_HEADER_SIZE + h.stored_len))
            fuzz_fail("a checked header with an inconsistent total_len");
        if (off + BATCH_HEADER_SIZE <= f->size)
            fuzz_batch_decode(f, off, &h);
    }
}

/* ---- 2 and 3. the scanner and recovery, over an in-memory directory ---- */

struct fuzz_scan {
    uint64_t records;
    uint64_t last_seq;
    uint8_t last_type;
    uint32_t last_len;
    uint64_t sum;
};

static int fuzz_scan_record(void *ctx, const struct log_record *rec)
{
    struct fuzz_scan *s = ctx;
    const uint8_t *p = rec->data;
    for (uint32_t i = 0; i < rec->len; i++)
        s->sum += p[i];
    s->records++;
    s->last_seq = rec->pos.seq;
    s->last_type = rec->type;
    s->last_len = rec->len;
    return 0;
}

static bool fuzz_verbose; /* FUZZ_LOG_VERBOSE set: print every damage (to debug a finding) */

static void fuzz_scan_damage(void *ctx, const struct log_damage *damage)
{
    (void)ctx;
    if (fuzz_verbose)
        fprintf(stderr, "fuzz_log: damage %s segment %llu offset %llu seq %llu..%llu: %s\n",
                log_damage_name(damage->kind), (unsigned long long)damage->segment_id,
                (unsigned long long)damage->offset, (unsigned long long)damage->seq_first,
                (unsigned long long)damage->seq_last, damage->detail);
    if (damage->kind == LOG_DAMAGE_NONE || strlen(log_damage_name(damage->kind)) == 0)
        fuzz_fail("damage without a kind");
}

static int fuzz_scan(struct io_backend *io, struct fuzz_scan *s)
{
    memset(s, 0, sizeof(*s));
    struct log_scan_callbacks cb = {.record = fuzz_scan_record, .damage = fuzz_scan_damage,
                                    .ctx = s};
    return log_scan(io, &cb);
}

static struct memfs *fuzz_memfs(const struct fuzz_file *ckpt, const struct fuzz_file *segs,
                                uint32_t seg_count)
{
    struct memfs *fs = memfs_create();
    if (ckpt->size > 0)
        memfs_put_file(fs, CHECKPOINT_NAME, ckpt->data, ckpt->size);
    for (uint32_t i = 0; i < seg_count; i++) {
        char name[SEGMENT_NAME_LEN + 1];
        segment_name(segs[i].id, name);
        memfs_put_file(fs, name, segs[i].data, segs[i].size);
    }
    return fs;
}

static int fuzz_replay_record(void *ctx, const struct log_record *rec)
{
    struct fuzz_scan *s = ctx;
    return fuzz_scan_record(s, rec);
}

/* Is the last record replayed the one appended at pos? (Its seq is at least any valid
 * checkpoint's anchor, so it is always replayed.) */
static bool fuzz_ends_with_append(const struct fuzz_scan *s, const struct log_pos *pos)
{
    return s->records > 0 && s->last_seq == pos->seq && s->last_type == FUZZ_LOG_RECORD_TYPE &&
           s->last_len == sizeof(FUZZ_LOG_APPEND_BODY);
}

/* Recovery, one append, close; then the log must scan sound and end with that append. */
static void fuzz_recover(struct memfs *fs, bool salvage, bool spare)
{
    struct io_backend *io = memfs_io(fs);
    struct log_config config;
    log_config_defaults(&config);
    config.dir = ".";
    config.segment_size_bytes = FUZZ_LOG_SEGMENT_SIZE;
    config.batch_size_bytes_max = FUZZ_LOG_BATCH_SIZE;
    config.salvage = salvage;
    config.spare_segment = spare;
    struct fuzz_scan replayed = {0};
    void *ckpt = NULL;
    uint32_t ckpt_len = 0;
    struct log_recovery_report report;
    struct log *log;
    int rc = log_open(&config, io, fuzz_replay_record, &replayed, &ckpt, &ckpt_len, &report,
                      &log);
    free(ckpt);
    if (fuzz_verbose)
        fprintf(stderr, "fuzz_log: recovery: %s (%s)\n", log_strerror(rc), report.message);
    if (rc != 0)
        return; /* rejected: fine, as long as it said so */
    if (spare) {
        log_tick(log); /* the spare is made now, so a roll for this append goes into it */
        while (!log_idle(log))
            if (io_backend_poll(io, true) < 0)
                fuzz_fail("memfs poll failed");
    }
    static const char body[] = FUZZ_LOG_APPEND_BODY;
    struct log_pos pos;
    rc = log_append(log, FUZZ_LOG_RECORD_TYPE, body, sizeof(body), &pos);
    if (rc != 0 || pos.seq != report.next_seq)
        fuzz_fail("append after a successful recovery failed");
    if (log_close(log) != 0)
        fuzz_fail("close after a successful recovery failed");
    /* Without salvage the log must now be sound to the read-only scanner too. (Salvage
     * leaves a bad checkpoint in place, by design, until the next one replaces it.) */
    struct fuzz_scan s;
    rc = salvage ? 0 : fuzz_scan(io, &s);
    if (rc != 0) {
        fprintf(stderr, "fuzz_log: scan after recovery: %s\n", log_strerror(rc));
        fuzz_fail("recovery left a log that does not scan sound");
    }
    /* And it opens again, the same way, ending with the append. */
    struct fuzz_scan again = {0};
    rc = log_open(&config, io, fuzz_replay_record, &again, &ckpt, &ckpt_len, &report, &log);
    free(ckpt);
    if (rc != 0) {
        fprintf(stderr, "fuzz_log: reopen after recovery: %s (%s)\n", log_strerror(rc),
                report.message);
        fuzz_fail("a recovered log does not open again");
    }
    if (log_close(log) != 0)
        fuzz_fail("close after the second open failed");
    if (!fuzz_ends_with_append(&again, &pos))
        fuzz_fail("the append after recovery is not the last record of the log");
}

static bool fuzz_recoverable(const struct fuzz_file *segs, uint32_t seg_count)
{
    for (uint32_t i = 0; i < seg_count; i++) {
        uint64_t size = segs[i].size >= 24 ? fuzz_le64(segs[i].data + 16) : 0;
        if (size > FUZZ_LOG_RECOVER_SEGMENT_MAX || segs[i].size > FUZZ_LOG_RECOVER_SEGMENT_MAX)
            return false;
    }
    return true;
}

/* ---- the entry point ---- */

static uint64_t fuzz_segment_id(const uint8_t *p, size_t n, uint64_t fallback)
{
    if (n < 16)
        return fallback;
    uint64_t id = fuzz_le64(p + 8);
    char name[SEGMENT_NAME_LEN + 1];
    segment_name(id, name);
    uint64_t parsed;
    if (id == 0 || !segment_name_parse(name, &parsed) || parsed != id)
        return fallback;
    return id;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < FUZZ_LOG_PREFIX_SIZE)
        return 0;
    fuzz_verbose = getenv("FUZZ_LOG_VERBOSE") != NULL;
    uint8_t flags = data[0];
    size_t rest = size - FUZZ_LOG_PREFIX_SIZE;
    const uint8_t *p = data + FUZZ_LOG_PREFIX_SIZE;
    size_t ckpt_len = fuzz_le32(data + 1);
    ckpt_len = ckpt_len < rest ? ckpt_len : rest;
    size_t seg1_len = fuzz_le32(data + 5);
    seg1_len = seg1_len < rest - ckpt_len ? seg1_len : rest - ckpt_len;
    size_t seg2_len = rest - ckpt_len - seg1_len;

    struct fuzz_file ckpt = {.data = fuzz_copy(p, ckpt_len, ckpt_len), .size = ckpt_len};
    struct fuzz_file segs[2];
    uint32_t seg_count = 0;
    const uint8_t *seg_data[2] = {p + ckpt_len, p + ckpt_len + seg1_len};
    size_t seg_len[2] = {seg1_len, seg2_len};
    for (uint32_t i = 0; i < 2; i++) {
        if (seg_len[i] == 0)
            continue;
        uint64_t id = fuzz_segment_id(seg_data[i], seg_len[i], i + 1);
        if (seg_count == 1 && id == segs[0].id)
            id = segs[0].id + 1; /* two files cannot share a name */
        segs[seg_count++] = (struct fuzz_file){
            .data = fuzz_copy(seg_data[i], seg_len[i], seg_len[i]), .size = seg_len[i], .id = id};
    }
    if (flags & FUZZ_LOG_FIX) {
        uint64_t last = 0;
        for (uint32_t i = 0; i < seg_count; i++)
            last = fuzz_fix_segment(&segs[i], i > 0 ? last : 0);
        fuzz_fix_checkpoint(&ckpt);
    }

    fuzz_checkpoint_decode(&ckpt);
    for (uint32_t i = 0; i < seg_count; i++)
        fuzz_segment_decode(&segs[i]);

    struct memfs *fs = fuzz_memfs(&ckpt, segs, seg_count);
    struct fuzz_scan s;
    int rc = fuzz_scan(memfs_io(fs), &s);
    if (rc > 0)
        fuzz_fail("log_scan returned a positive code");
    if ((flags & FUZZ_LOG_RECOVER) && fuzz_recoverable(segs, seg_count))
        fuzz_recover(fs, (flags & FUZZ_LOG_SALVAGE) != 0, (flags & FUZZ_LOG_SPARE) != 0);
    io_backend_destroy(memfs_io(fs));

    free(ckpt.data);
    for (uint32_t i = 0; i < seg_count; i++)
        free(segs[i].data);
    return 0;
}
