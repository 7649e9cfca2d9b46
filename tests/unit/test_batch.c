/* Batch and segment header codecs: round trips with and without lz4, hashes, seeds, zeros. */
#include "batch.h"
#include "check.h"
#include "segment.h"

#include <stdlib.h>

#define BUF_SIZE (64u * 1024u)
/* A v2 segment's random seed, fixed for the test. */
#define SEED 0x5eed5eed12345678ull

static uint8_t *buf_new(void)
{
    uint8_t *p = aligned_alloc(4096, BUF_SIZE);
    REQUIRE(p != NULL);
    memset(p, 0xAB, BUF_SIZE);
    return p;
}

/* Fill an open buffer with count records; compressible or random bodies. */
static uint32_t fill_records(uint8_t *open_buf, uint32_t count, uint32_t len, bool random)
{
    uint8_t body[2048];
    REQUIRE(len <= sizeof(body));
    uint32_t off = 0;
    for (uint32_t i = 0; i < count; i++) {
        for (uint32_t j = 0; j < len; j++)
            body[j] = random ? (uint8_t)rand() : (uint8_t)('a' + (i + j / 16) % 7);
        off = batch_record_put(open_buf + BATCH_HEADER_SIZE, off, (uint8_t)(i % 5), body, len);
    }
    return off;
}

static void roundtrip(bool compress, bool random, uint32_t count, uint32_t len,
                      uint8_t expect_codec)
{
    uint8_t *open_buf = buf_new(), *spare = buf_new(), *scratch = buf_new();
    srand(7);
    uint32_t raw_len = fill_records(open_buf, count, len, random);
    uint8_t raw_copy[BUF_SIZE];
    memcpy(raw_copy, open_buf + BATCH_HEADER_SIZE, raw_len);
    struct batch_seal_args args = {.base_seq = 100, .segment_id = 42, .prev_batch_hash = 9,
                                   .record_count = count, .raw_len = raw_len,
                                   .hash_seed = SEED, .synced_offset = 3 * 4096,
                                   .compress = compress};
    uint8_t *out;
    struct batch_header h;
    batch_seal(open_buf, spare, BUF_SIZE, &args, &out, &h);
    CHECK_EQ(h.codec, expect_codec);
    CHECK_EQ(h.total_len % BATCH_ALIGN, 0);
    CHECK_EQ(h.raw_len, raw_len);
    if (expect_codec == BATCH_CODEC_LZ4)
        CHECK(h.stored_len <= raw_len - raw_len / 8);
    struct batch_header d;
    REQUIRE(batch_header_check_seeded(out, 42, SEED, &d) == BATCH_OK);
    CHECK_EQ(d.base_seq, 100);
    CHECK_EQ(d.version, BATCH_VERSION);
    CHECK_EQ(d.synced_blocks, 3);
    CHECK_EQ(d.total_len, h.total_len); /* derived from stored_len in v2 */
    CHECK_EQ(batch_synced_floor(&d, 5 * 4096), 3 * 4096);
    CHECK_EQ(d.prev_batch_hash, 9);
    CHECK_EQ(d.record_count, count);
    REQUIRE(batch_payload_valid(&d, out + BATCH_HEADER_SIZE));
    const uint8_t *raw = batch_payload_decode(&d, out + BATCH_HEADER_SIZE, scratch, BUF_SIZE);
    REQUIRE(raw != NULL);
    CHECK(memcmp(raw, raw_copy, raw_len) == 0);
    struct batch_cursor cur = {.raw = raw, .raw_len = d.raw_len};
    uint8_t type;
    const uint8_t *data;
    uint32_t n, i = 0;
    while (batch_cursor_next(&cur, &type, &data, &n)) {
        CHECK_EQ(type, i % 5);
        CHECK_EQ(n, len);
        i++;
    }
    CHECK_EQ(i, count);
    /* Padding is zero. */
    for (uint32_t k = BATCH_HEADER_SIZE + d.stored_len; k < d.total_len; k++)
        if (out[k] != 0) {
            CHECK(out[k] == 0);
            break;
        }
    free(open_buf);
    free(spare);
    free(scratch);
}

static void test_roundtrip_plain(void)
{
    roundtrip(false, false, 50, 100, BATCH_CODEC_NONE);
    roundtrip(true, false, 3, 10, BATCH_CODEC_NONE); /* under 1 KiB: never compressed */
    roundtrip(false, false, 1, 0, BATCH_CODEC_NONE);
}

static void test_roundtrip_lz4(void)
{
    roundtrip(true, false, 50, 1000, BATCH_CODEC_LZ4);
}

static void test_incompressible_stays_plain(void)
{
    roundtrip(true, true, 20, 2000, BATCH_CODEC_NONE);
}

/* Seal count records of len bytes (random or compressible) through gate; the codec used.
 * Every batch must still decode to what was put in, whichever way the gate went. */
static uint8_t seal_gated(struct batch_lz4_gate *gate, bool random, uint32_t count, uint32_t len)
{
    static uint8_t open_buf[BUF_SIZE], spare[BUF_SIZE], scratch[BUF_SIZE];
    uint32_t raw_len = fill_records(open_buf, count, len, random);
    struct batch_seal_args args = {.base_seq = 1, .segment_id = 1, .prev_batch_hash = 5,
                                   .record_count = count, .raw_len = raw_len,
                                   .hash_seed = SEED, .compress = true, .gate = gate};
    uint8_t *out;
    struct batch_header h, d;
    batch_seal(open_buf, spare, BUF_SIZE, &args, &out, &h);
    REQUIRE(batch_header_check_seeded(out, 1, SEED, &d) == BATCH_OK);
    REQUIRE(batch_payload_valid(&d, out + BATCH_HEADER_SIZE));
    CHECK(batch_payload_decode(&d, out + BATCH_HEADER_SIZE, scratch, BUF_SIZE) != NULL);
    return h.codec;
}

/* Incompressible batches stop being tried after a few misses, then are tried again at a
 * doubling interval capped at BATCH_LZ4_SKIP_SPAN_MAX; one that pays reopens the gate. */
static void test_lz4_gate_backs_off(void)
{
    struct batch_lz4_gate gate = {0};
    srand(11);
    for (uint32_t i = 0; i < BATCH_LZ4_MISSES_BEFORE_SKIP; i++)
        CHECK_EQ(seal_gated(&gate, true, 20, 200), BATCH_CODEC_NONE);
    CHECK_EQ(gate.attempts, BATCH_LZ4_MISSES_BEFORE_SKIP);
    CHECK_EQ(gate.skipped, 0);
    CHECK_EQ(gate.skip_left, 1);
    /* A long incompressible run: attempts thin out to one per SKIP_SPAN_MAX + 1 batches. */
    for (uint32_t i = 0; i < 2000; i++)
        CHECK_EQ(seal_gated(&gate, true, 20, 200), BATCH_CODEC_NONE);
    uint64_t total = BATCH_LZ4_MISSES_BEFORE_SKIP + 2000;
    CHECK_EQ(gate.attempts + gate.skipped, total);
    CHECK(gate.attempts < BATCH_LZ4_MISSES_BEFORE_SKIP + 7 + 2000 / BATCH_LZ4_SKIP_SPAN_MAX);
    CHECK(gate.attempts > 2000 / (BATCH_LZ4_SKIP_SPAN_MAX + 1));
    CHECK_EQ(gate.skip_span, BATCH_LZ4_SKIP_SPAN_MAX);
    /* The stream turns compressible: compressed again within one span, and from then on
     * every batch is (the gate is open again). */
    uint32_t plain = 0;
    while (seal_gated(&gate, false, 20, 200) == BATCH_CODEC_NONE) {
        plain++;
        REQUIRE(plain <= BATCH_LZ4_SKIP_SPAN_MAX);
    }
    CHECK_EQ(gate.misses, 0);
    CHECK_EQ(gate.skip_left, 0);
    for (uint32_t i = 0; i < 50; i++)
        CHECK_EQ(seal_gated(&gate, false, 20, 200), BATCH_CODEC_LZ4);
}

/* Misses must be in a row, and batches too small to try never count. */
static void test_lz4_gate_needs_misses_in_a_row(void)
{
    struct batch_lz4_gate gate = {0};
    srand(12);
    for (uint32_t round = 0; round < 20; round++) {
        for (uint32_t i = 0; i + 1 < BATCH_LZ4_MISSES_BEFORE_SKIP; i++)
            CHECK_EQ(seal_gated(&gate, true, 20, 200), BATCH_CODEC_NONE);
        CHECK_EQ(seal_gated(&gate, true, 3, 10), BATCH_CODEC_NONE); /* under 1 KiB */
        CHECK_EQ(seal_gated(&gate, false, 20, 200), BATCH_CODEC_LZ4);
    }
    CHECK_EQ(gate.skipped, 0);
    CHECK_EQ(gate.attempts, 20 * BATCH_LZ4_MISSES_BEFORE_SKIP);
    /* No gate: every batch is tried, as before. */
    for (uint32_t i = 0; i < 10; i++)
        CHECK_EQ(seal_gated(NULL, true, 20, 200), BATCH_CODEC_NONE);
    CHECK_EQ(seal_gated(NULL, false, 20, 200), BATCH_CODEC_LZ4);
}

/* Seal one compressible batch into out_buf; returns its header. */
static struct batch_header seal_one(uint8_t *open_buf, uint8_t *spare, uint8_t **out)
{
    uint32_t raw_len = fill_records(open_buf, 20, 500, false);
    struct batch_seal_args args = {.base_seq = 1, .segment_id = 1, .prev_batch_hash = 5,
                                   .record_count = 20, .raw_len = raw_len, .hash_seed = SEED,
                                   .compress = true};
    struct batch_header h;
    batch_seal(open_buf, spare, BUF_SIZE, &args, out, &h);
    return h;
}

static void test_header_and_payload_hash(void)
{
    uint8_t *open_buf = buf_new(), *spare = buf_new(), *out;
    struct batch_header h = seal_one(open_buf, spare, &out), d;
    /* Every single-bit flip of the header is caught. */
    for (uint32_t bit = 0; bit < BATCH_HEADER_SIZE * 8; bit++) {
        out[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        CHECK(batch_header_check_seeded(out, 1, SEED, &d) != BATCH_OK);
        out[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    REQUIRE(batch_header_check_seeded(out, 1, SEED, &d) == BATCH_OK);
    out[BATCH_HEADER_SIZE + h.stored_len / 2] ^= 0x10;
    CHECK(!batch_payload_valid(&d, out + BATCH_HEADER_SIZE));
    free(open_buf);
    free(spare);
}

static void test_other_seed_rejected(void)
{
    uint8_t *open_buf = buf_new(), *spare = buf_new(), *out;
    struct batch_header d;
    (void)seal_one(open_buf, spare, &out);
    /* The segment's seed, not its id, makes a batch verify: a body that carries a batch's
     * bytes cannot forge one without knowing the seed. */
    CHECK_EQ(batch_header_check_seeded(out, 1, SEED + 1, &d), BATCH_BAD_HASH);
    CHECK_EQ(batch_header_check(out, 1, &d), BATCH_BAD_HASH);
    CHECK_EQ(batch_header_check_seeded(out, 2, SEED, &d), BATCH_BAD_FIELDS);
    CHECK_EQ(batch_header_check_seeded(out, 1, SEED, &d), BATCH_OK);
    free(open_buf);
    free(spare);
}

static void test_zero_is_clean_end(void)
{
    uint8_t block[4096] = {0};
    struct batch_header d;
    CHECK_EQ(batch_header_check(block, 1, &d), BATCH_ZERO);
    block[63] = 1;
    CHECK_EQ(batch_header_check(block, 1, &d), BATCH_BAD_MAGIC);
}

static void test_bad_lz4_rejected(void)
{
    /* A payload whose hash is right but whose lz4 stream is garbage must fail safely. */
    uint8_t *scratch = buf_new();
    uint8_t stored[64];
    memset(stored, 0xFF, sizeof(stored));
    struct batch_header h = {.codec = BATCH_CODEC_LZ4, .stored_len = 64, .raw_len = 4000,
                             .record_count = 1};
    CHECK(batch_payload_decode(&h, stored, scratch, BUF_SIZE) == NULL);
    free(scratch);
}

/* A seal: no records, flagged, names the successor, chained, and checks only with the seed. */
static void test_seal_marker(void)
{
    uint8_t *block = buf_new();
    struct batch_header h, d;
    batch_seal_marker(block, 10, SEED, 25, 777, &h);
    REQUIRE(batch_header_check_seeded(block, 10, SEED, &d) == BATCH_OK);
    CHECK_EQ(d.flags, BATCH_FLAG_SEAL);
    CHECK_EQ(d.record_count, 0);
    CHECK_EQ(d.base_seq, 25);
    CHECK_EQ(d.prev_batch_hash, 777);
    CHECK_EQ(d.total_len, BATCH_ALIGN);
    CHECK(batch_payload_valid(&d, block + BATCH_HEADER_SIZE));
    for (uint32_t k = BATCH_HEADER_SIZE; k < BATCH_ALIGN; k++)
        if (block[k] != 0) {
            CHECK(block[k] == 0); /* only the first sector carries bytes */
            break;
        }
    CHECK_EQ(batch_header_check_seeded(block, 10, SEED ^ 1, &d), BATCH_BAD_HASH);
    free(block);
}

/* A v1 batch (total_len at offset 20, seeded with the segment id) still reads. */
static void test_v1_batch_reads(void)
{
    uint8_t block[BATCH_HEADER_SIZE];
    struct batch_header h = {
        .magic = BATCH_MAGIC, .version = BATCH_VERSION_V1, .codec = BATCH_CODEC_NONE,
        .flags = BATCH_FLAG_UNSYNCED, .record_count = 1, .stored_len = 100, .raw_len = 100,
        .total_len = 4096, .base_seq = 7, .segment_id = 5, .hash_seed = 5,
    };
    batch_header_encode(&h, block);
    uint32_t at20;
    memcpy(&at20, block + 20, sizeof(at20));
    CHECK_EQ(at20, 4096);
    struct batch_header d;
    REQUIRE(batch_header_check(block, 5, &d) == BATCH_OK);
    CHECK_EQ(d.version, BATCH_VERSION_V1);
    CHECK_EQ(d.total_len, 4096);
    CHECK_EQ(d.synced_blocks, 0);
    CHECK_EQ(batch_synced_floor(&d, 8192), 4096); /* unsynced: nothing known */
    h.flags = 0;
    batch_header_encode(&h, block);
    REQUIRE(batch_header_check(block, 5, &d) == BATCH_OK);
    CHECK_EQ(batch_synced_floor(&d, 8192), 8192); /* always mode: all before it */
    /* v1 knows no seal and no empty batch. */
    h.record_count = 0;
    h.raw_len = h.stored_len = 0;
    batch_header_encode(&h, block);
    CHECK_EQ(batch_header_check(block, 5, &d), BATCH_BAD_FIELDS);
}

static void test_segment_header(void)
{
    uint8_t block[SEGMENT_HEADER_SIZE];
    struct segment_header h = {.segment_id = 77, .segment_size = 1u << 20,
                               .prev_segment_id = 10, .prev_last_batch_hash = 1234,
                               .hash_seed = SEED};
    segment_header_encode(&h, block);
    struct segment_header d;
    CHECK_EQ(segment_header_check(block, 77, &d), SEGMENT_OK);
    CHECK_EQ(d.version, SEGMENT_VERSION);
    CHECK_EQ(segment_hash_seed(&d), SEED);
    CHECK_EQ(d.prev_last_batch_hash, 1234);
    CHECK_EQ(d.header_hash, h.header_hash);
    CHECK_EQ(segment_header_check(block, 78, &d), SEGMENT_BAD_HASH);
    block[20] ^= 1;
    CHECK_EQ(segment_header_check(block, 77, &d), SEGMENT_BAD_HASH);
    block[4] = 9;
    CHECK_EQ(segment_header_check(block, 77, &d), SEGMENT_BAD_VERSION);
    memset(block, 0, sizeof(block));
    CHECK_EQ(segment_header_check(block, 77, &d), SEGMENT_ZERO);
    char name[SEGMENT_NAME_LEN + 1];
    segment_name(77, name);
    CHECK(strcmp(name, "00000000000000000077.seg") == 0);
    uint64_t id = 0;
    CHECK(segment_name_parse(name, &id));
    CHECK_EQ(id, 77);
    CHECK(!segment_name_parse("00000000000000000077.seg.tmp", &id));
    CHECK(!segment_name_parse("0000000000000000007x.seg", &id));
    CHECK(!segment_name_parse("00000000000000000000.seg", &id));
    CHECK(!segment_name_parse("checkpoint", &id));
}

int main(void)
{
    RUN_TEST(test_roundtrip_plain);
    RUN_TEST(test_roundtrip_lz4);
    RUN_TEST(test_incompressible_stays_plain);
    RUN_TEST(test_lz4_gate_backs_off);
    RUN_TEST(test_lz4_gate_needs_misses_in_a_row);
    RUN_TEST(test_header_and_payload_hash);
    RUN_TEST(test_other_seed_rejected);
    RUN_TEST(test_zero_is_clean_end);
    RUN_TEST(test_bad_lz4_rejected);
    RUN_TEST(test_segment_header);
    RUN_TEST(test_seal_marker);
    RUN_TEST(test_v1_batch_reads);
    return check_exit();
}
