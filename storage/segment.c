/*
 * Segment header encoding and file names (layout in segment.h and docs/FORMAT.md). Like
 * batch headers, the bytes are the struct itself, pinned by static asserts.
 */
#include "segment.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <xxhash.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "on-disk integers are little-endian");
_Static_assert(sizeof(struct segment_header) == SEGMENT_HEADER_USED, "segment header 64 bytes");
_Static_assert(offsetof(struct segment_header, version) == 4, "version at 4");
_Static_assert(offsetof(struct segment_header, flags) == 6, "flags at 6");
_Static_assert(offsetof(struct segment_header, segment_id) == 8, "segment_id at 8");
_Static_assert(offsetof(struct segment_header, segment_size) == 16, "segment_size at 16");
_Static_assert(offsetof(struct segment_header, prev_segment_id) == 24, "prev id at 24");
_Static_assert(offsetof(struct segment_header, prev_last_batch_hash) == 32, "prev hash at 32");
_Static_assert(offsetof(struct segment_header, created_unix_ns) == 40, "created at 40");
_Static_assert(offsetof(struct segment_header, hash_seed) == 48, "hash seed at 48");
_Static_assert(offsetof(struct segment_header, header_hash) == 56, "header hash at 56");

const char *segment_check_name(enum segment_check check)
{
    switch (check) {
    case SEGMENT_OK:
        return "ok";
    case SEGMENT_ZERO:
        return "zero header";
    case SEGMENT_BAD_MAGIC:
        return "bad magic";
    case SEGMENT_BAD_VERSION:
        return "unknown version";
    case SEGMENT_BAD_HASH:
        return "bad header hash";
    case SEGMENT_BAD_FIELDS:
        return "bad header fields";
    }
    return "unknown";
}

static uint64_t segment_header_hash(const void *block, uint64_t segment_id)
{
    return XXH3_64bits_withSeed(block, offsetof(struct segment_header, header_hash), segment_id);
}

void segment_header_encode(struct segment_header *header, void *block)
{
    SPOOL_ASSERT(header->segment_id > 0);
    SPOOL_ASSERT(header->prev_segment_id < header->segment_id);
    SPOOL_ASSERT(header->hash_seed != 0);
    header->magic = SEGMENT_MAGIC;
    SPOOL_ASSERT((header->flags & ~SEGMENT_FLAG_RECYCLED) == 0);
    header->version = SEGMENT_VERSION;
    memset(block, 0, SEGMENT_HEADER_SIZE);
    memcpy(block, header, sizeof(*header));
    header->header_hash = segment_header_hash(block, header->segment_id);
    memcpy((uint8_t *)block + offsetof(struct segment_header, header_hash),
           &header->header_hash, sizeof(header->header_hash));
}

enum segment_check segment_header_check(const void *block, uint64_t segment_id,
                                        struct segment_header *out)
{
    const uint8_t *p = block;
    bool zero = true;
    for (uint32_t i = 0; i < SEGMENT_HEADER_USED && zero; i++)
        zero = p[i] == 0;
    if (zero)
        return SEGMENT_ZERO;
    memcpy(out, block, sizeof(*out));
    if (out->magic != SEGMENT_MAGIC)
        return SEGMENT_BAD_MAGIC;
    /* The version sits at a fixed offset in every version, so a newer file is named as such
     * instead of being called corrupt. */
    if (out->version != SEGMENT_VERSION && out->version != SEGMENT_VERSION_V2 &&
        out->version != SEGMENT_VERSION_V1)
        return SEGMENT_BAD_VERSION;
    if (out->header_hash != segment_header_hash(block, segment_id))
        return SEGMENT_BAD_HASH;
    /* v1: offset 48 is reserved (zero); v2: the seed, never zero. */
    bool seed_ok = out->version == SEGMENT_VERSION_V1 ? out->hash_seed == 0 : out->hash_seed != 0;
    /* v3 gave bit 0 a meaning; every other flag bit, and any flag before v3, is damage. */
    uint16_t flags_known = out->version == SEGMENT_VERSION ? SEGMENT_FLAG_RECYCLED : 0;
    if (out->segment_id != segment_id || (out->flags & ~flags_known) != 0 || !seed_ok ||
        out->prev_segment_id >= segment_id || out->segment_size < SEGMENT_SIZE_MIN ||
        out->segment_size > SEGMENT_SIZE_MAX || out->segment_size % SEGMENT_HEADER_SIZE != 0)
        return SEGMENT_BAD_FIELDS;
    return SEGMENT_OK;
}

bool segment_recycled(const struct segment_header *header)
{
    return header->version >= SEGMENT_VERSION && (header->flags & SEGMENT_FLAG_RECYCLED) != 0;
}

uint64_t segment_hash_seed(const struct segment_header *header)
{
    SPOOL_ASSERT(header->segment_id > 0);
    if (header->version == SEGMENT_VERSION_V1)
        return header->segment_id;
    SPOOL_ASSERT(header->hash_seed != 0);
    return header->hash_seed;
}

uint64_t segment_seed_new(void)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = XXH3_64bits_withSeed(&ts, sizeof(ts), (uint64_t)(uintptr_t)&seed);
    }
    return seed != 0 ? seed : 1;
}

void segment_name(uint64_t segment_id, char *name)
{
    snprintf(name, SEGMENT_NAME_LEN + 1, "%020llu.seg", (unsigned long long)segment_id);
}

bool segment_name_parse(const char *name, uint64_t *segment_id)
{
    if (strlen(name) != SEGMENT_NAME_LEN || strcmp(name + 20, ".seg") != 0)
        return false;
    uint64_t id = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        uint64_t digit = (uint64_t)(name[i] - '0');
        if (id > (UINT64_MAX - digit) / 10)
            return false;
        id = id * 10 + digit;
    }
    if (id == 0)
        return false;
    *segment_id = id;
    return true;
}
