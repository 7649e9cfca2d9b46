/*
 * Batches: the unit of group commit, one aligned write.
 *
 * A batch starts at a 4096-aligned offset of a segment file and is padded with zeros to the
 * next 4096 boundary. It is a 64-byte header followed by the stored payload (the records,
 * possibly lz4-compressed). Layout (all integers little-endian; docs/FORMAT.md):
 *
 *   0  u32 magic            BATCH_MAGIC
 *   4  u16 version          BATCH_VERSION
 *   6  u8  codec            0 none, 1 lz4 block
 *   7  u8  flags            bit 0 BATCH_FLAG_UNSYNCED, bit 1 BATCH_FLAG_SEAL (v2); others 0
 *   8  u32 record_count     >= 1 (0 exactly for a seal)
 *  12  u32 stored_len       payload bytes on disk after the header
 *  16  u32 raw_len          payload bytes after decompression (== stored_len for codec 0)
 *  20  u32 v1: total_len    64 + stored_len rounded up to 4096: the bytes the batch occupies
 *          v2: synced_blocks the segment was fdatasync'ed below offset synced_blocks * 4096
 *                           when this batch was built (its sync point; total_len is derived)
 *  24  u64 base_seq         seq of the first record; record i has seq base_seq + i (a seal:
 *                           the successor segment's id)
 *  32  u64 segment_id       the segment the batch was written for
 *  40  u64 prev_batch_hash  header_hash of the previous batch, or the segment header's hash
 *  48  u64 payload_hash     XXH3-64 of the stored payload, seeded with the segment's seed
 *  56  u64 header_hash      XXH3-64 of bytes 0..55, seeded with the segment's seed
 *
 * The seed is the segment's hash_seed (a random value in a v2 segment header) or, in a v1
 * segment, its segment_id. Batch and segment versions are independent: a v2 batch may sit in
 * a v1 segment (the current segment of a log written by an older build), seeded with its id.
 *
 * Records in the raw payload, packed back to back: [u32 len][u8 type][3 zero bytes][len bytes].
 *
 * Invariants: a header that passes batch_header_check() has consistent lengths (record_count
 * records of at least 8 bytes fit raw_len; total_len is the aligned size of stored_len), so a
 * reader may trust it to size its reads. Payload bytes are decompressed only after the
 * payload hash verified, and only with LZ4_decompress_safe. struct batch_header is the decoded
 * form: its first 64 bytes are the v1 image, synced_blocks and hash_seed follow in memory.
 */
#ifndef SPOOL_STORAGE_BATCH_H
#define SPOOL_STORAGE_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "assert.h"

#define BATCH_MAGIC 0x54425053u /* "SPBT" as little-endian bytes */
#define BATCH_VERSION 2u
#define BATCH_VERSION_V1 1u /* still read: total_len at offset 20, no sync point, no seal */
#define BATCH_HEADER_SIZE 64u
#define BATCH_ALIGN 4096u
#define BATCH_RECORD_HEADER_SIZE 8u
/* Compressing less than 1 KiB rarely saves a block and costs a call per commit. */
#define BATCH_COMPRESS_MIN_BYTES 1024u
/* The largest batch any reader accepts: total_len is a u32 and a batch never spans more than
 * one segment; 256 MiB bounds the buffer a damaged-but-hash-valid header could ask for. */
#define BATCH_TOTAL_BYTES_LIMIT (256u * 1024u * 1024u)

/* Written in the interval or none mode: later batches may reach the disk before this one is
 * synced, so a hole before such a batch at the end of the newest segment is a torn tail, not
 * damage (in the always mode every batch is fdatasync'ed before the next is written). */
#define BATCH_FLAG_UNSYNCED 0x01u
/* v2: the seal of a segment (no records, base_seq names the successor segment), written
 * durably after the successor's header is durable and named, before any batch goes into the
 * successor: a newest segment that is sealed proves that a newer one existed. */
#define BATCH_FLAG_SEAL 0x02u

enum batch_codec {
    BATCH_CODEC_NONE = 0,
    BATCH_CODEC_LZ4 = 1,
};

struct batch_header {
    uint32_t magic;
    uint16_t version;
    uint8_t codec;
    uint8_t flags;
    uint32_t record_count;
    uint32_t stored_len;
    uint32_t raw_len;
    uint32_t total_len;
    uint64_t base_seq;
    uint64_t segment_id;
    uint64_t prev_batch_hash;
    uint64_t payload_hash;
    uint64_t header_hash;
    /* Decoded only (not at these offsets on disk): */
    uint32_t synced_blocks; /* v2: the sync point, in 4096-byte blocks; v1: 0 */
    uint32_t unused;        /* 0 */
    uint64_t hash_seed;     /* the seed the hashes were checked (or made) with */
};

/* What a header block turned out to be. */
enum batch_check {
    BATCH_OK = 0,
    BATCH_ZERO,       /* all 64 header bytes zero: the clean end of a preallocated segment */
    BATCH_BAD_MAGIC,  /* neither zero nor a batch */
    BATCH_BAD_HASH,   /* magic right, header hash wrong (torn, flipped, or another seed) */
    BATCH_BAD_FIELDS, /* hash right but fields inconsistent (a newer version, a bug) */
};

const char *batch_check_name(enum batch_check check);

static inline uint32_t batch_align_up(uint64_t n)
{
    SPOOL_ASSERT(n <= BATCH_TOTAL_BYTES_LIMIT);
    return (uint32_t)((n + BATCH_ALIGN - 1) & ~(uint64_t)(BATCH_ALIGN - 1));
}

/* Bytes a record of len takes in the raw payload. */
static inline uint32_t batch_record_footprint(uint32_t len)
{
    return BATCH_RECORD_HEADER_SIZE + len;
}

/* Append one record at payload + offset; returns the offset after it. The caller checked
 * that it fits. */
uint32_t batch_record_put(uint8_t *payload, uint32_t offset, uint8_t type, const void *data,
                          uint32_t len);

/*
 * Whether lz4 has paid lately, so that a stream of incompressible payloads (random or
 * already-compressed bodies) does not pay for a compression attempt on every batch only to
 * throw the result away. After BATCH_LZ4_MISSES_BEFORE_SKIP attempts in a row that did not save
 * 1/8, batches are stored without trying, for a span that doubles with every further miss (1, 2,
 * 4, ... BATCH_LZ4_SKIP_SPAN_MAX batches); the first attempt that pays clears it all. So a
 * steady incompressible stream tries one batch in BATCH_LZ4_SKIP_SPAN_MAX + 1, and a stream
 * that turns compressible is compressed again within that many batches. Only the decision
 * changes: a batch is stored compressed or plain exactly as before (docs/FORMAT.md), and
 * readers never see the difference. Zero-initialized is the starting state.
 */
struct batch_lz4_gate {
    uint32_t misses;    /* attempts in a row that did not pay */
    uint32_t skip_span; /* the span set at the last miss past the threshold (0: none yet) */
    uint32_t skip_left; /* batches still to store without an attempt */
    uint64_t attempts;  /* lz4 runs, for tests and statistics */
    uint64_t skipped;   /* batches stored plain without an attempt */
};

/* Three misses in a row are noise (a batch of small records, one odd producer); four say the
 * stream is incompressible. */
#define BATCH_LZ4_MISSES_BEFORE_SKIP 4u
/* One attempt in 65 batches costs 1/65 of always trying (noise next to the batch's hash and
 * write), and at a few thousand commits per second a stream that turns compressible is
 * compressed again within tens of milliseconds. */
#define BATCH_LZ4_SKIP_SPAN_MAX 64u

/* lz4's acceleration (1 is LZ4_compress_default): how fast its match search skips ahead
 * through bytes that do not match, which is most of a batch of random bodies between its
 * repetitive record headers. Measured on batches spoold wrote (2026-12-05): with 100-byte
 * random bodies 6 compresses 3-4x faster than 1 for the same ratio (1.84 and 2.15 either
 * way); with JSON-like bodies it stores 1-2% more bytes at 1 KiB and 4 KiB, 10% more at
 * 100 bytes (ratio 6.1 instead of 6.7). The format is the same lz4 block either way. */
#define BATCH_LZ4_ACCELERATION 6

/* Everything a batch header needs besides its payload. */
struct batch_seal_args {
    uint64_t base_seq;
    uint64_t segment_id;
    uint64_t prev_batch_hash;
    uint32_t record_count;
    uint32_t raw_len;  /* raw payload bytes at open_buf + BATCH_HEADER_SIZE */
    uint64_t hash_seed;      /* the segment's seed (segment_hash_seed) */
    uint64_t synced_offset;  /* the segment is fdatasync'ed below this offset (4096-aligned) */
    uint8_t flags;     /* BATCH_FLAG_UNSYNCED or 0 */
    bool compress;     /* try lz4 (used only when it pays) */
    struct batch_lz4_gate *gate; /* with compress: skip attempts while lz4 does not pay;
                                    NULL: try every batch */
};

/*
 * Turn the open buffer (header space + raw records) into a finished batch: compress into
 * spare when it pays, fill the header, zero the padding, and verify the result by decoding
 * it again. Both buffers hold buf_size bytes. *out is open_buf or spare_buf (whichever holds
 * the batch); *header receives the header. Never fails: a batch that does not decode back is
 * a bug and asserts.
 */
void batch_seal(uint8_t *open_buf, uint8_t *spare_buf, uint32_t buf_size,
                const struct batch_seal_args *args, uint8_t **out, struct batch_header *header);

/*
 * Fill block (BATCH_ALIGN bytes) with the seal of segment_id: a v2 batch of no records flagged
 * BATCH_FLAG_SEAL, base_seq = successor_id, linked to prev_batch_hash (the last batch's hash).
 * Its non-zero bytes are the first 64, so a write of it lands whole or not at all on any
 * disk that writes 512-byte sectors atomically.
 */
void batch_seal_marker(void *block, uint64_t segment_id, uint64_t hash_seed,
                       uint64_t successor_id, uint64_t prev_batch_hash,
                       struct batch_header *header);

/* Parse and verify a 64-byte header block written for segment_id, with the hashes seeded by
 * hash_seed (segment_hash_seed of its segment). */
SPOOL_MUST_USE enum batch_check batch_header_check_seeded(const void *block, uint64_t segment_id,
                                                          uint64_t hash_seed,
                                                          struct batch_header *out);

/* The same with seed = segment_id: the seed of every batch of a v1 segment. */
SPOOL_MUST_USE enum batch_check batch_header_check(const void *block, uint64_t segment_id,
                                                   struct batch_header *out);

/* The offset below which the segment was fdatasync'ed when the batch at offset was built:
 * v2, its recorded sync point; v1, its own offset for a batch of the always mode (each one
 * was durable before the next was written) and 4096 (nothing known) for an unsynced one. A
 * batch never claims a sync point beyond itself: the caller treats that as damage. */
uint64_t batch_synced_floor(const struct batch_header *header, uint64_t offset);

/* Verify the stored payload's hash. */
SPOOL_MUST_USE bool batch_payload_valid(const struct batch_header *header, const void *stored);

/*
 * Produce the raw payload of a batch whose payload hash verified: stored itself for codec 0,
 * else decompressed into scratch (scratch_size >= raw_len). Then walk the records and check
 * that exactly record_count of them fill raw_len. Returns the raw payload, or NULL when
 * decompression or the record walk fails (damage).
 */
SPOOL_MUST_USE const uint8_t *batch_payload_decode(const struct batch_header *header,
                                                   const uint8_t *stored, uint8_t *scratch,
                                                   uint32_t scratch_size);

/* A cursor over the records of a decoded raw payload. */
struct batch_cursor {
    const uint8_t *raw;
    uint32_t raw_len;
    uint32_t offset;
};

/* Next record; false at the end or on a malformed record (batch_payload_decode rejects
 * those, so after it false means the end). */
bool batch_cursor_next(struct batch_cursor *cursor, uint8_t *type, const uint8_t **data,
                       uint32_t *len);

/* Serialize a header into 64 bytes (computing header_hash with header->hash_seed, in the
 * layout of header->version) / read one back without checks (total_len derived for v2, 0 when
 * stored_len is out of range). */
void batch_header_encode(struct batch_header *header, void *block);
void batch_header_decode(const void *block, struct batch_header *out);

/* Grow *buf (realloc) to at least need bytes, updating *size: the read path and the scanner
 * keep one buffer each that grows to the largest batch seen. 0 or -ENOMEM. */
SPOOL_MUST_USE int batch_buffer_grow(uint8_t **buf, uint32_t *size, uint32_t need);

#endif
