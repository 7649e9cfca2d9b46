/*
 * What the kill -9 suite's driver (test_kill9.c) and load generator (crash_load.c) share: the
 * monotonic clock their history lines are stamped with (both sides must use the same one, so
 * the checker can order a kill against a delivery), a sleep that survives signals, and the
 * seeded generator that makes a run reproducible from its printed seed.
 */
#ifndef SPOOL_TESTS_CRASH_UTIL_H
#define SPOOL_TESTS_CRASH_UTIL_H

#include <errno.h>
#include <stdint.h>
#include <time.h>

static inline int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static inline void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* splitmix64: a good spread from any seed, even 0. */
static inline uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#endif
