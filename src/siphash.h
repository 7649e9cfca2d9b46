/*
 * siphash: SipHash-2-4 (Aumasson and Bernstein, 2012), a keyed pseudo-random function of
 * 64-bit output. spoold uses it where a value handed to one client must not let that client
 * predict another's: lease tokens are siphash(key, job id, attempt, counter) under a 128-bit
 * key drawn from getrandom(2) at start, which no client ever sees.
 */
#ifndef SPOOL_SIPHASH_H
#define SPOOL_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

struct siphash_key {
    uint64_t k0;
    uint64_t k1;
};

/* SipHash-2-4 of len bytes at data under key (the reference algorithm, little-endian). */
uint64_t siphash24(const struct siphash_key *key, const void *data, size_t len);

#endif
