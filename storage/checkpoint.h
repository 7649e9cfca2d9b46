/*
 * The checkpoint file: an opaque payload from the caller (queue state) anchored at a seq, plus
 * the list of segments that existed when it was written (after its drops), so recovery can
 * tell a legitimately dropped segment from a missing one.
 *
 * It is written whole to "checkpoint.tmp", fdatasync'ed, renamed over "checkpoint", and the
 * directory fsync'ed; a leftover "checkpoint.tmp" is an interrupted write and is deleted.
 * Layout (little-endian; docs/FORMAT.md):
 *
 *   0  u32 magic              CHECKPOINT_MAGIC
 *   4  u16 version            CHECKPOINT_VERSION
 *   6  u16 flags              0 (reserved)
 *   8  u32 segment_count      entries in segment_ids
 *  12  u32 payload_len
 *  16  u64 anchor_seq         the payload reflects every record < anchor_seq
 *  24  u64 anchor_segment_id  the newest listed segment whose id <= anchor_seq
 *  32  u64 created_unix_ns    informational
 *  40  u64 reserved           0
 *  48  u64 segment_ids[segment_count], ascending
 *  ..  payload_len bytes of payload
 *  ..  u64 hash               XXH3-64 of every byte before it, seeded with CHECKPOINT_HASH_SEED
 */
#ifndef SPOOL_STORAGE_CHECKPOINT_H
#define SPOOL_STORAGE_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "assert.h"
#include "io.h"

#define CHECKPOINT_MAGIC 0x4b435053u /* "SPCK" as little-endian bytes */
#define CHECKPOINT_VERSION 1u
#define CHECKPOINT_HASH_SEED 0x73706f6f6c636b70ull /* "spoolckp" */
#define CHECKPOINT_FIXED_SIZE 48u
#define CHECKPOINT_NAME "checkpoint"
#define CHECKPOINT_TMP_NAME "checkpoint.tmp"
/* 2^20 segments of the smallest size is already 16 GiB of log; of the default size 64 TiB. */
#define CHECKPOINT_SEGMENTS_MAX (1u << 20)
/* The payload is the broker's compact queue state; 256 MiB bounds what open will allocate
 * for a file whose length field is damaged. */
#define CHECKPOINT_PAYLOAD_MAX (256u * 1024u * 1024u)

struct checkpoint_info {
    uint64_t anchor_seq;
    uint64_t anchor_segment_id;
    uint64_t created_unix_ns;
    uint32_t segment_count;
    uint32_t payload_len;
    const uint64_t *segment_ids; /* into the decoded buffer (may be unaligned: use memcpy) */
    const uint8_t *payload;
};

size_t checkpoint_encoded_size(uint32_t segment_count, uint32_t payload_len);

/* Serialize into out (checkpoint_encoded_size bytes). */
void checkpoint_encode(const struct checkpoint_info *info, const uint64_t *segment_ids,
                       const void *payload, uint8_t *out);

/* The same bytes in three pieces, so a large payload is written from where it already is:
 * the head (fixed part and segment ids, checkpoint_head_size bytes), the payload, then the
 * 8-byte hash that checkpoint_hash computes over head and payload. */
size_t checkpoint_head_size(uint32_t segment_count);
void checkpoint_encode_head(const struct checkpoint_info *info, const uint64_t *segment_ids,
                            uint8_t *out);
uint64_t checkpoint_hash(const uint8_t *head, size_t head_len, const void *payload,
                         uint32_t payload_len);

/* Verify and parse; 0, LOG_ECORRUPT (with a reason in detail) or LOG_EVERSION. */
SPOOL_MUST_USE int checkpoint_decode(const uint8_t *buf, size_t len,
                                     struct checkpoint_info *out, char *detail,
                                     size_t detail_len);

/* The i-th listed segment id. */
uint64_t checkpoint_segment_id(const struct checkpoint_info *info, uint32_t index);

/* Synchronously read "checkpoint": 0 with *buf (malloc'ed, the caller frees) and *info,
 * -ENOENT when there is none, LOG_ECORRUPT / LOG_EVERSION / a negative errno otherwise. */
SPOOL_MUST_USE int checkpoint_load(struct io_backend *backend, uint8_t **buf,
                                   struct checkpoint_info *info, char *detail,
                                   size_t detail_len);

#endif
