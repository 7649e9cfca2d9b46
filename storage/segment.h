/*
 * Segment files: the log is a directory of them, each named by its first seq
 * ("%020llu.seg"), preallocated to segment_size, written append-only in 4096-aligned batches.
 *
 * The first 4096 bytes are the segment header; the first 64 carry data, the rest are zero.
 * Layout (little-endian; docs/FORMAT.md):
 *
 *   0  u32 magic                 SEGMENT_MAGIC
 *   4  u16 version               SEGMENT_VERSION
 *   6  u16 flags                 v3: bit 0 SEGMENT_FLAG_RECYCLED; v1, v2: reserved, 0
 *   8  u64 segment_id            the seq of its first record (== the file name)
 *  16  u64 segment_size          preallocated size in bytes
 *  24  u64 prev_segment_id       the segment before it, 0 for the first segment of a log
 *  32  u64 prev_last_batch_hash  header_hash of the previous segment's last batch, 0 if none
 *  40  u64 created_unix_ns       wall clock at creation (informational)
 *  48  u64 hash_seed             v2: random, non-zero (getrandom): the seed of every batch
 *                                hash in this segment; v1: reserved, 0 (the seed is segment_id)
 *  56  u64 header_hash           XXH3-64 of bytes 0..55 seeded with segment_id
 *
 * Version 2 gave offset 48 its meaning; version 3 gave the flags one: a recycled segment's
 * file held an older segment, so past its written part lie that segment's stale bytes, not
 * zeros (scan.c ends such a segment at the first block that is not a batch of its own).
 * Readers keep reading v1 and v2 segments (a log upgraded in place holds them until
 * checkpoints drop them). The seed is secret from clients, so
 * a job body that carries the bytes of a batch cannot make them verify as one.
 *
 * Invariants: a segment is followed by its successor only when it is sealed: its last batch
 * ends at seq successor_id - 1 and its header_hash is the successor's prev_last_batch_hash.
 * The first batch of a segment links (prev_batch_hash) to the segment header's hash.
 */
#ifndef SPOOL_STORAGE_SEGMENT_H
#define SPOOL_STORAGE_SEGMENT_H

#include <stdbool.h>
#include <stdint.h>

#include "assert.h"

#define SEGMENT_MAGIC 0x47535053u /* "SPSG" as little-endian bytes */
#define SEGMENT_VERSION 3u
#define SEGMENT_VERSION_V2 2u /* still read: flags reserved (0) */
#define SEGMENT_VERSION_V1 1u /* still read: offset 48 reserved, batches seeded with the id */
/* v3: the file held an older segment; bytes past the written part are stale, not zero. */
#define SEGMENT_FLAG_RECYCLED 0x1u
#define SEGMENT_HEADER_SIZE 4096u /* one block, so batches start aligned */
#define SEGMENT_HEADER_USED 64u
/* A segment holds its header and at least one batch of the smallest size. */
#define SEGMENT_SIZE_MIN (4u * 4096u)
/* The largest segment_size a header may name (1 TiB): a hash-valid header naming more is
 * damage, not a size to preallocate or to add offsets to. (spoold's --segment-size is bounded
 * far lower, CONFIG_SEGMENT_MAX; this bound is the format's.) */
#define SEGMENT_SIZE_MAX (1ull << 40)
#define SEGMENT_NAME_LEN 24u /* 20 digits + ".seg" */

struct segment_header {
    uint32_t magic;
    uint16_t version;
    uint16_t flags;
    uint64_t segment_id;
    uint64_t segment_size;
    uint64_t prev_segment_id;
    uint64_t prev_last_batch_hash;
    uint64_t created_unix_ns;
    uint64_t hash_seed;
    uint64_t header_hash;
};

enum segment_check {
    SEGMENT_OK = 0,
    SEGMENT_ZERO,        /* all zero: created but its header never became durable */
    SEGMENT_BAD_MAGIC,
    SEGMENT_BAD_VERSION, /* a format this build does not read */
    SEGMENT_BAD_HASH,
    SEGMENT_BAD_FIELDS,  /* id differs from the file name, or sizes out of range */
};

const char *segment_check_name(enum segment_check check);

/* Fill a 4096-byte block with a header of SEGMENT_VERSION (computing header_hash into
 * *header); header->hash_seed must be non-zero (segment_seed_new); header->flags is kept
 * (SEGMENT_FLAG_RECYCLED or 0). */
void segment_header_encode(struct segment_header *header, void *block);

/* Verify a header block read from the file named for segment_id. */
SPOOL_MUST_USE enum segment_check segment_header_check(const void *block, uint64_t segment_id,
                                                       struct segment_header *out);

/* The segment's file held an older segment (v3 flag): stale bytes may follow its end. */
bool segment_recycled(const struct segment_header *header);

/* The seed of the batch hashes of a segment whose header checked OK. */
uint64_t segment_hash_seed(const struct segment_header *header);

/* A new random, non-zero seed (getrandom; a clock-and-address mix if it fails, which only
 * weakens protection against forged batches, never correctness). */
uint64_t segment_seed_new(void);

/* "%020llu.seg"; name has room for SEGMENT_NAME_LEN + 1 bytes. */
void segment_name(uint64_t segment_id, char *name);

/* Parse a file name made by segment_name; false for anything else. */
SPOOL_MUST_USE bool segment_name_parse(const char *name, uint64_t *segment_id);

#endif
