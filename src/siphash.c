/*
 * SipHash-2-4, written from the paper's description: four 64-bit words of state, two
 * compression rounds per 8-byte message word, four finalization rounds. The last word holds
 * the remaining 0..7 bytes and the length mod 256 in its top byte.
 */
#include "siphash.h"

#include <string.h>

#include "le.h"

static inline uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

struct sip_state {
    uint64_t v0, v1, v2, v3;
};

static void sip_round(struct sip_state *s)
{
    s->v0 += s->v1;
    s->v1 = rotl(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = rotl(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = rotl(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = rotl(s->v2, 32);
}

static void sip_compress(struct sip_state *s, uint64_t m)
{
    s->v3 ^= m;
    sip_round(s);
    sip_round(s);
    s->v0 ^= m;
}

uint64_t siphash24(const struct siphash_key *key, const void *data, size_t len)
{
    struct sip_state s = {
        .v0 = key->k0 ^ 0x736f6d6570736575ull,
        .v1 = key->k1 ^ 0x646f72616e646f6dull,
        .v2 = key->k0 ^ 0x6c7967656e657261ull,
        .v3 = key->k1 ^ 0x7465646279746573ull,
    };
    const uint8_t *p = data;
    size_t whole = len & ~(size_t)7;
    for (size_t i = 0; i < whole; i += 8)
        sip_compress(&s, le_get_u64(p + i));
    uint8_t last[8] = {0};
    memcpy(last, p + whole, len - whole);
    last[7] = (uint8_t)len;
    sip_compress(&s, le_get_u64(last));
    s.v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        sip_round(&s);
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}
