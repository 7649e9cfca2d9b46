/*
 * Checkpoint file encoding, verification and synchronous loading (layout in checkpoint.h).
 * Writing is asynchronous and lives in log.c, which owns the op chain.
 */
#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "log.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "on-disk integers are little-endian");

struct checkpoint_fixed {
    uint32_t magic;
    uint16_t version;
    uint16_t flags;
    uint32_t segment_count;
    uint32_t payload_len;
    uint64_t anchor_seq;
    uint64_t anchor_segment_id;
    uint64_t created_unix_ns;
    uint64_t reserved;
};
_Static_assert(sizeof(struct checkpoint_fixed) == CHECKPOINT_FIXED_SIZE, "fixed part 48 bytes");
_Static_assert(offsetof(struct checkpoint_fixed, segment_count) == 8, "count at 8");
_Static_assert(offsetof(struct checkpoint_fixed, payload_len) == 12, "payload_len at 12");
_Static_assert(offsetof(struct checkpoint_fixed, anchor_seq) == 16, "anchor at 16");
_Static_assert(offsetof(struct checkpoint_fixed, anchor_segment_id) == 24, "anchor seg at 24");
_Static_assert(offsetof(struct checkpoint_fixed, created_unix_ns) == 32, "created at 32");

size_t checkpoint_head_size(uint32_t segment_count)
{
    return CHECKPOINT_FIXED_SIZE + (size_t)segment_count * 8;
}

size_t checkpoint_encoded_size(uint32_t segment_count, uint32_t payload_len)
{
    return CHECKPOINT_FIXED_SIZE + (size_t)segment_count * 8 + payload_len + 8;
}

void checkpoint_encode_head(const struct checkpoint_info *info, const uint64_t *segment_ids,
                            uint8_t *out)
{
    SPOOL_ASSERT(info->segment_count <= CHECKPOINT_SEGMENTS_MAX);
    SPOOL_ASSERT(info->payload_len <= CHECKPOINT_PAYLOAD_MAX);
    struct checkpoint_fixed fixed = {
        .magic = CHECKPOINT_MAGIC,
        .version = CHECKPOINT_VERSION,
        .segment_count = info->segment_count,
        .payload_len = info->payload_len,
        .anchor_seq = info->anchor_seq,
        .anchor_segment_id = info->anchor_segment_id,
        .created_unix_ns = info->created_unix_ns,
    };
    memcpy(out, &fixed, sizeof(fixed));
    if (info->segment_count > 0)
        memcpy(out + sizeof(fixed), segment_ids, (size_t)info->segment_count * 8);
}

uint64_t checkpoint_hash(const uint8_t *head, size_t head_len, const void *payload,
                         uint32_t payload_len)
{
    XXH3_state_t *state = XXH3_createState();
    SPOOL_ASSERT(state != NULL);
    XXH_errorcode rc = XXH3_64bits_reset_withSeed(state, CHECKPOINT_HASH_SEED);
    if (rc == XXH_OK)
        rc = XXH3_64bits_update(state, head, head_len);
    if (rc == XXH_OK && payload_len > 0)
        rc = XXH3_64bits_update(state, payload, payload_len);
    SPOOL_ASSERT(rc == XXH_OK);
    uint64_t hash = XXH3_64bits_digest(state);
    XXH3_freeState(state);
    return hash;
}

void checkpoint_encode(const struct checkpoint_info *info, const uint64_t *segment_ids,
                       const void *payload, uint8_t *out)
{
    checkpoint_encode_head(info, segment_ids, out);
    size_t off = checkpoint_head_size(info->segment_count);
    if (info->payload_len > 0)
        memcpy(out + off, payload, info->payload_len);
    off += info->payload_len;
    uint64_t hash = XXH3_64bits_withSeed(out, off, CHECKPOINT_HASH_SEED);
    memcpy(out + off, &hash, sizeof(hash));
    SPOOL_ASSERT(off + 8 == checkpoint_encoded_size(info->segment_count, info->payload_len));
}

uint64_t checkpoint_segment_id(const struct checkpoint_info *info, uint32_t index)
{
    SPOOL_ASSERT(index < info->segment_count);
    uint64_t id;
    memcpy(&id, (const uint8_t *)info->segment_ids + (size_t)index * 8, sizeof(id));
    return id;
}

/* The anchor's segment is one of the listed segments and starts at or below anchor_seq (the
 * writer always lists the current segment, so the list is never empty). Recovery deletes
 * every unlisted segment below anchor_segment_id as a leftover of a drop: a value it cannot
 * trust must not get that far. */
static int checkpoint_anchor_check(const struct checkpoint_info *info, char *detail,
                                   size_t detail_len)
{
    bool listed = false;
    for (uint32_t i = 0; i < info->segment_count && !listed; i++)
        listed = checkpoint_segment_id(info, i) == info->anchor_segment_id;
    if (info->anchor_seq == 0 || !listed || info->anchor_segment_id > info->anchor_seq) {
        snprintf(detail, detail_len,
                 "checkpoint anchor segment %llu is not a listed segment at or below seq %llu",
                 (unsigned long long)info->anchor_segment_id,
                 (unsigned long long)info->anchor_seq);
        return LOG_ECORRUPT;
    }
    return 0;
}

int checkpoint_decode(const uint8_t *buf, size_t len, struct checkpoint_info *out,
                      char *detail, size_t detail_len)
{
    struct checkpoint_fixed fixed;
    if (len < CHECKPOINT_FIXED_SIZE + 8) {
        snprintf(detail, detail_len, "checkpoint file too short (%zu bytes)", len);
        return LOG_ECORRUPT;
    }
    memcpy(&fixed, buf, sizeof(fixed));
    if (fixed.magic != CHECKPOINT_MAGIC) {
        snprintf(detail, detail_len, "checkpoint magic wrong");
        return LOG_ECORRUPT;
    }
    if (fixed.version != CHECKPOINT_VERSION) {
        snprintf(detail, detail_len, "checkpoint version %u unknown", fixed.version);
        return LOG_EVERSION;
    }
    if (fixed.segment_count > CHECKPOINT_SEGMENTS_MAX ||
        fixed.payload_len > CHECKPOINT_PAYLOAD_MAX ||
        checkpoint_encoded_size(fixed.segment_count, fixed.payload_len) != len) {
        snprintf(detail, detail_len, "checkpoint lengths inconsistent with its size %zu", len);
        return LOG_ECORRUPT;
    }
    uint64_t hash;
    memcpy(&hash, buf + len - 8, sizeof(hash));
    if (hash != XXH3_64bits_withSeed(buf, len - 8, CHECKPOINT_HASH_SEED)) {
        snprintf(detail, detail_len, "checkpoint hash wrong");
        return LOG_ECORRUPT;
    }
    *out = (struct checkpoint_info){
        .anchor_seq = fixed.anchor_seq,
        .anchor_segment_id = fixed.anchor_segment_id,
        .created_unix_ns = fixed.created_unix_ns,
        .segment_count = fixed.segment_count,
        .payload_len = fixed.payload_len,
        .segment_ids = (const uint64_t *)(const void *)(buf + CHECKPOINT_FIXED_SIZE),
        .payload = buf + CHECKPOINT_FIXED_SIZE + (size_t)fixed.segment_count * 8,
    };
    for (uint32_t i = 1; i < out->segment_count; i++) {
        if (checkpoint_segment_id(out, i - 1) >= checkpoint_segment_id(out, i)) {
            snprintf(detail, detail_len, "checkpoint segment list not ascending");
            return LOG_ECORRUPT;
        }
    }
    return checkpoint_anchor_check(out, detail, detail_len);
}

/* Read the whole open file fd of size bytes into a new buffer. */
static int checkpoint_read_all(struct io_backend *backend, int fd, uint64_t size, uint8_t **buf)
{
    uint8_t *p = malloc(size > 0 ? size : 1);
    if (p == NULL)
        return -ENOMEM;
    uint64_t done = 0;
    while (done < size) {
        int64_t n = io_sync_pread(backend, fd, p + done, size - done, done);
        if (n <= 0) {
            free(p);
            return n < 0 ? (int)n : -EIO;
        }
        done += (uint64_t)n;
    }
    *buf = p;
    return 0;
}

int checkpoint_load(struct io_backend *backend, uint8_t **buf, struct checkpoint_info *info,
                    char *detail, size_t detail_len)
{
    int fd = io_sync_open(backend, CHECKPOINT_NAME, O_RDONLY, 0);
    if (fd < 0)
        return fd;
    struct io_op op = {.kind = IO_SIZE, .fd = fd};
    int rc = (int)io_sync(backend, &op);
    uint64_t limit = checkpoint_encoded_size(CHECKPOINT_SEGMENTS_MAX, CHECKPOINT_PAYLOAD_MAX);
    if (rc == 0 && op.size > limit) {
        snprintf(detail, detail_len, "checkpoint file too large (%llu bytes)",
                 (unsigned long long)op.size);
        rc = LOG_ECORRUPT;
    }
    if (rc == 0)
        rc = checkpoint_read_all(backend, fd, op.size, buf);
    if (rc == 0) {
        rc = checkpoint_decode(*buf, op.size, info, detail, detail_len);
        if (rc != 0) {
            free(*buf);
            *buf = NULL;
        }
    }
    int close_rc = io_sync_simple(backend, IO_CLOSE, fd);
    (void)close_rc; /* a read-only fd: nothing to lose on a close error */
    return rc;
}
