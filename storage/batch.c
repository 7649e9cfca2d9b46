/*
 * Batch encoding and decoding (layout in batch.h and docs/FORMAT.md).
 *
 * The on-disk header is the in-memory struct batch_header copied byte for byte: the static
 * asserts below pin every offset, and the build refuses a big-endian host, so the bytes are
 * little-endian as documented. Sealing checks its own output by decoding it again, the
 * "check a batch before it is written" half of the pair whose other half is every read.
 */
#include "batch.h"

#include <errno.h>
#include <stdlib.h>
#include <lz4.h>
#include <string.h>
#include <xxhash.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "on-disk integers are little-endian");
/* The first 64 bytes of the decoded struct are the on-disk image (offset 20 is total_len in
 * v1 and synced_blocks in v2, swapped by encode and decode). */
_Static_assert(offsetof(struct batch_header, synced_blocks) == BATCH_HEADER_SIZE,
               "batch header is 64 bytes on disk");
_Static_assert(offsetof(struct batch_header, magic) == 0, "magic at 0");
_Static_assert(offsetof(struct batch_header, version) == 4, "version at 4");
_Static_assert(offsetof(struct batch_header, codec) == 6, "codec at 6");
_Static_assert(offsetof(struct batch_header, flags) == 7, "flags at 7");
_Static_assert(offsetof(struct batch_header, record_count) == 8, "record_count at 8");
_Static_assert(offsetof(struct batch_header, stored_len) == 12, "stored_len at 12");
_Static_assert(offsetof(struct batch_header, raw_len) == 16, "raw_len at 16");
_Static_assert(offsetof(struct batch_header, total_len) == 20, "total_len at 20");
_Static_assert(offsetof(struct batch_header, base_seq) == 24, "base_seq at 24");
_Static_assert(offsetof(struct batch_header, segment_id) == 32, "segment_id at 32");
_Static_assert(offsetof(struct batch_header, prev_batch_hash) == 40, "prev hash at 40");
_Static_assert(offsetof(struct batch_header, payload_hash) == 48, "payload hash at 48");
_Static_assert(offsetof(struct batch_header, header_hash) == 56, "header hash at 56");

const char *batch_check_name(enum batch_check check)
{
    switch (check) {
    case BATCH_OK:
        return "ok";
    case BATCH_ZERO:
        return "zero";
    case BATCH_BAD_MAGIC:
        return "bad magic";
    case BATCH_BAD_HASH:
        return "bad header hash";
    case BATCH_BAD_FIELDS:
        return "bad header fields";
    }
    return "unknown";
}

uint32_t batch_record_put(uint8_t *payload, uint32_t offset, uint8_t type, const void *data,
                          uint32_t len)
{
    uint8_t head[BATCH_RECORD_HEADER_SIZE] = {0};
    memcpy(head, &len, sizeof(len));
    head[4] = type;
    memcpy(payload + offset, head, sizeof(head));
    if (len > 0)
        memcpy(payload + offset + BATCH_RECORD_HEADER_SIZE, data, len);
    return offset + BATCH_RECORD_HEADER_SIZE + len;
}

static uint64_t batch_header_hash(const void *block, uint64_t seed)
{
    return XXH3_64bits_withSeed(block, offsetof(struct batch_header, header_hash), seed);
}

void batch_header_encode(struct batch_header *header, void *block)
{
    SPOOL_ASSERT(header->version == BATCH_VERSION || header->version == BATCH_VERSION_V1);
    memcpy(block, header, BATCH_HEADER_SIZE);
    if (header->version != BATCH_VERSION_V1)
        memcpy((uint8_t *)block + offsetof(struct batch_header, total_len),
               &header->synced_blocks, sizeof(header->synced_blocks));
    header->header_hash = batch_header_hash(block, header->hash_seed);
    memcpy((uint8_t *)block + offsetof(struct batch_header, header_hash), &header->header_hash,
           sizeof(header->header_hash));
}

void batch_header_decode(const void *block, struct batch_header *out)
{
    memset(out, 0, sizeof(*out));
    memcpy(out, block, BATCH_HEADER_SIZE);
    if (out->version == BATCH_VERSION_V1)
        return;
    /* v2: offset 20 is the sync point; the length it held in v1 follows from stored_len. */
    out->synced_blocks = out->total_len;
    uint64_t need = (uint64_t)BATCH_HEADER_SIZE + out->stored_len;
    out->total_len = need <= BATCH_TOTAL_BYTES_LIMIT ? batch_align_up(need) : 0;
}

uint64_t batch_synced_floor(const struct batch_header *header, uint64_t offset)
{
    if (header->version != BATCH_VERSION_V1)
        return (uint64_t)header->synced_blocks * BATCH_ALIGN;
    return (header->flags & BATCH_FLAG_UNSYNCED) != 0 ? BATCH_ALIGN : offset;
}

void batch_seal_marker(void *block, uint64_t segment_id, uint64_t hash_seed,
                       uint64_t successor_id, uint64_t prev_batch_hash,
                       struct batch_header *header)
{
    SPOOL_ASSERT(successor_id > segment_id);
    memset(block, 0, BATCH_ALIGN);
    *header = (struct batch_header){
        .magic = BATCH_MAGIC,
        .version = BATCH_VERSION,
        .codec = BATCH_CODEC_NONE,
        .flags = BATCH_FLAG_SEAL,
        .total_len = BATCH_ALIGN,
        .base_seq = successor_id,
        .segment_id = segment_id,
        .prev_batch_hash = prev_batch_hash,
        .payload_hash = XXH3_64bits_withSeed(NULL, 0, hash_seed),
        .hash_seed = hash_seed,
    };
    batch_header_encode(header, block);
    struct batch_header check;
    SPOOL_ASSERT(batch_header_check_seeded(block, segment_id, hash_seed, &check) == BATCH_OK);
    SPOOL_ASSERT(memcmp(&check, header, sizeof(check)) == 0);
}

/* Try lz4 into spare; the stored length, or 0 when it does not save at least 1/8. */
static uint32_t batch_compress(const uint8_t *raw, uint32_t raw_len, uint8_t *dst,
                               uint32_t dst_size)
{
    if (raw_len < BATCH_COMPRESS_MIN_BYTES)
        return 0;
    uint32_t limit = raw_len - raw_len / 8;
    if (limit > dst_size)
        limit = dst_size;
    int n = LZ4_compress_fast((const char *)raw, (char *)dst, (int)raw_len, (int)limit,
                              BATCH_LZ4_ACCELERATION);
    return n > 0 ? (uint32_t)n : 0;
}

/* Whether to run lz4 on this batch; a batch under the minimum is never tried nor counted. */
static bool batch_lz4_gate_open(struct batch_lz4_gate *gate, uint32_t raw_len)
{
    if (raw_len < BATCH_COMPRESS_MIN_BYTES)
        return false;
    if (gate == NULL)
        return true;
    if (gate->skip_left == 0)
        return true;
    gate->skip_left--;
    gate->skipped++;
    return false;
}

static void batch_lz4_gate_note(struct batch_lz4_gate *gate, bool paid)
{
    if (gate == NULL)
        return;
    gate->attempts++;
    SPOOL_ASSERT(gate->skip_left == 0);
    if (paid) {
        gate->misses = 0;
        gate->skip_span = 0;
        return;
    }
    if (gate->misses < BATCH_LZ4_MISSES_BEFORE_SKIP)
        gate->misses++;
    if (gate->misses < BATCH_LZ4_MISSES_BEFORE_SKIP)
        return;
    gate->skip_span = gate->skip_span == 0 ? 1 : gate->skip_span * 2;
    if (gate->skip_span > BATCH_LZ4_SKIP_SPAN_MAX)
        gate->skip_span = BATCH_LZ4_SKIP_SPAN_MAX;
    gate->skip_left = gate->skip_span;
}

void batch_seal(uint8_t *open_buf, uint8_t *spare_buf, uint32_t buf_size,
                const struct batch_seal_args *args, uint8_t **out, struct batch_header *header)
{
    SPOOL_ASSERT(args->record_count > 0);
    SPOOL_ASSERT((args->flags & ~BATCH_FLAG_UNSYNCED) == 0);
    SPOOL_ASSERT(args->synced_offset % BATCH_ALIGN == 0);
    SPOOL_ASSERT(args->synced_offset / BATCH_ALIGN <= UINT32_MAX);
    SPOOL_ASSERT(args->raw_len >= args->record_count * BATCH_RECORD_HEADER_SIZE);
    SPOOL_ASSERT(BATCH_HEADER_SIZE + (uint64_t)args->raw_len <= buf_size);
    uint8_t *buf = open_buf;
    uint32_t stored_len = args->raw_len;
    uint8_t codec = BATCH_CODEC_NONE;
    if (args->compress && batch_lz4_gate_open(args->gate, args->raw_len)) {
        uint32_t n = batch_compress(open_buf + BATCH_HEADER_SIZE, args->raw_len,
                                    spare_buf + BATCH_HEADER_SIZE, buf_size - BATCH_HEADER_SIZE);
        batch_lz4_gate_note(args->gate, n > 0);
        if (n > 0) {
            buf = spare_buf;
            stored_len = n;
            codec = BATCH_CODEC_LZ4;
        }
    }
    uint32_t total = batch_align_up((uint64_t)BATCH_HEADER_SIZE + stored_len);
    SPOOL_ASSERT(total <= buf_size);
    memset(buf + BATCH_HEADER_SIZE + stored_len, 0, total - BATCH_HEADER_SIZE - stored_len);
    *header = (struct batch_header){
        .magic = BATCH_MAGIC,
        .version = BATCH_VERSION,
        .codec = codec,
        .flags = args->flags,
        .record_count = args->record_count,
        .stored_len = stored_len,
        .raw_len = args->raw_len,
        .total_len = total,
        .base_seq = args->base_seq,
        .segment_id = args->segment_id,
        .prev_batch_hash = args->prev_batch_hash,
        .payload_hash =
            XXH3_64bits_withSeed(buf + BATCH_HEADER_SIZE, stored_len, args->hash_seed),
        .synced_blocks = (uint32_t)(args->synced_offset / BATCH_ALIGN),
        .hash_seed = args->hash_seed,
    };
    batch_header_encode(header, buf);
    /* Check before write: the bytes decode back to the same header. The payload hash is not
     * computed a second time: the header that decodes back equal names the very bytes, length
     * and seed hashed above, so a second pass over the payload (a few microseconds per
     * commit of 30 KiB) could only disagree if XXH3 did. Readers verify it (log_read.c,
     * scan.c), and test_batch checks it after every seal. */
    struct batch_header check;
    SPOOL_ASSERT(batch_header_check_seeded(buf, args->segment_id, args->hash_seed, &check) ==
                 BATCH_OK);
    SPOOL_ASSERT(memcmp(&check, header, sizeof(check)) == 0);
    *out = buf;
}

static bool batch_all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

/* Version-specific fields: the flags, the record count and where the length lives. */
static bool batch_version_fields_valid(const struct batch_header *h)
{
    if (h->version == BATCH_VERSION_V1)
        return (h->flags & ~BATCH_FLAG_UNSYNCED) == 0 && h->record_count > 0 &&
               h->total_len == batch_align_up((uint64_t)BATCH_HEADER_SIZE + h->stored_len);
    if (h->version != BATCH_VERSION || (h->flags & ~(BATCH_FLAG_UNSYNCED | BATCH_FLAG_SEAL)) != 0)
        return false;
    if ((h->flags & BATCH_FLAG_SEAL) != 0)
        return h->record_count == 0 && h->stored_len == 0 && h->codec == BATCH_CODEC_NONE &&
               h->base_seq > h->segment_id;
    return h->record_count > 0;
}

/* Field consistency of a header whose hash verified. */
static bool batch_fields_valid(const struct batch_header *h)
{
    if (h->codec != BATCH_CODEC_NONE && h->codec != BATCH_CODEC_LZ4)
        return false;
    if (h->codec == BATCH_CODEC_NONE && h->stored_len != h->raw_len)
        return false;
    /* The whole batch, header included, within the limit: batch_align_up asserts on more. */
    if (h->raw_len > BATCH_TOTAL_BYTES_LIMIT ||
        (uint64_t)BATCH_HEADER_SIZE + h->stored_len > BATCH_TOTAL_BYTES_LIMIT)
        return false;
    if (!batch_version_fields_valid(h))
        return false;
    if ((uint64_t)h->record_count * BATCH_RECORD_HEADER_SIZE > h->raw_len)
        return false;
    return h->base_seq != 0 && h->base_seq <= UINT64_MAX - h->record_count;
}

enum batch_check batch_header_check_seeded(const void *block, uint64_t segment_id,
                                           uint64_t hash_seed, struct batch_header *out)
{
    SPOOL_ASSERT(block != NULL);
    if (batch_all_zero(block, BATCH_HEADER_SIZE))
        return BATCH_ZERO;
    batch_header_decode(block, out);
    out->hash_seed = hash_seed;
    if (out->magic != BATCH_MAGIC)
        return BATCH_BAD_MAGIC;
    if (out->header_hash != batch_header_hash(block, hash_seed))
        return BATCH_BAD_HASH;
    if (out->segment_id != segment_id || !batch_fields_valid(out))
        return BATCH_BAD_FIELDS;
    return BATCH_OK;
}

enum batch_check batch_header_check(const void *block, uint64_t segment_id,
                                    struct batch_header *out)
{
    return batch_header_check_seeded(block, segment_id, segment_id, out);
}

bool batch_payload_valid(const struct batch_header *header, const void *stored)
{
    return XXH3_64bits_withSeed(stored, header->stored_len, header->hash_seed) ==
           header->payload_hash;
}

const uint8_t *batch_payload_decode(const struct batch_header *header, const uint8_t *stored,
                                    uint8_t *scratch, uint32_t scratch_size)
{
    const uint8_t *raw = stored;
    if (header->codec == BATCH_CODEC_LZ4) {
        SPOOL_ASSERT(scratch_size >= header->raw_len);
        int n = LZ4_decompress_safe((const char *)stored, (char *)scratch,
                                    (int)header->stored_len, (int)header->raw_len);
        if (n < 0 || (uint32_t)n != header->raw_len)
            return NULL;
        raw = scratch;
    }
    struct batch_cursor cursor = {.raw = raw, .raw_len = header->raw_len};
    uint32_t count = 0;
    uint8_t type;
    const uint8_t *data;
    uint32_t len;
    while (count < header->record_count && batch_cursor_next(&cursor, &type, &data, &len))
        count++;
    if (count != header->record_count || cursor.offset != header->raw_len)
        return NULL;
    return raw;
}

bool batch_cursor_next(struct batch_cursor *cursor, uint8_t *type, const uint8_t **data,
                       uint32_t *len)
{
    SPOOL_ASSERT(cursor->offset <= cursor->raw_len);
    uint32_t left = cursor->raw_len - cursor->offset;
    if (left < BATCH_RECORD_HEADER_SIZE)
        return false;
    const uint8_t *p = cursor->raw + cursor->offset;
    uint32_t n;
    memcpy(&n, p, sizeof(n));
    if (p[5] != 0 || p[6] != 0 || p[7] != 0 || n > left - BATCH_RECORD_HEADER_SIZE)
        return false;
    *type = p[4];
    *data = p + BATCH_RECORD_HEADER_SIZE;
    *len = n;
    cursor->offset += BATCH_RECORD_HEADER_SIZE + n;
    return true;
}

int batch_buffer_grow(uint8_t **buf, uint32_t *size, uint32_t need)
{
    if (*size >= need)
        return 0;
    uint8_t *p = realloc(*buf, need);
    if (p == NULL)
        return -ENOMEM;
    *buf = p;
    *size = need;
    return 0;
}
