/* SipHash-2-4 against the reference vectors of the paper (Appendix A) and the reference
 * implementation's vectors.h: key 00..0f, messages 00..(n-1). */
#include <stdint.h>

#include "check.h"
#include "siphash.h"

static const struct siphash_key ref_key = {0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};

static uint64_t hash_prefix(size_t len)
{
    uint8_t msg[64];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)i;
    return siphash24(&ref_key, msg, len);
}

static void test_reference_vectors(void)
{
    CHECK(hash_prefix(0) == 0x726fdb47dd0e0e31ull);
    CHECK(hash_prefix(1) == 0x74f839c593dc67fdull);
    CHECK(hash_prefix(8) == 0x93f5f5799a932462ull);
    CHECK(hash_prefix(15) == 0xa129ca6149be45e5ull); /* the paper's example */
}

static void test_key_changes_everything(void)
{
    struct siphash_key other = ref_key;
    other.k1 ^= 1;
    uint8_t msg[24] = {1};
    CHECK(siphash24(&ref_key, msg, sizeof(msg)) != siphash24(&other, msg, sizeof(msg)));
}

int main(void)
{
    test_reference_vectors();
    test_key_changes_everything();
    return check_exit();
}
