/*
 * alloc_fail: failure injection for the allocations of the broker's bounded structures (heap
 * and idmap growth, jobtab pages, job pool chunks), so that tests can check that the put path
 * refuses cleanly when memory runs out (issue 11 item 4) instead of aborting.
 *
 * Off unless a test arms it: then the next n allocations that ask succeed and every one after
 * fails, until it is disarmed. One load and compare per allocation of these structures (they
 * grow rarely: a heap doubles, a page per 32 jobs, a chunk per ~4000 jobs): nothing on the hot
 * path. Only the loop thread asks (the prefault helper of the job pool does not).
 */
#ifndef SPOOL_SRC_ALLOC_FAIL_H
#define SPOOL_SRC_ALLOC_FAIL_H

#include <stdbool.h>
#include <stdint.h>

extern int64_t alloc_fail_countdown; /* < 0: off */

/* True if this allocation must fail (the caller then behaves as if malloc returned NULL). */
static inline bool alloc_fail_now(void)
{
    if (alloc_fail_countdown < 0)
        return false;
    if (alloc_fail_countdown == 0)
        return true;
    alloc_fail_countdown--;
    return false;
}

/* Let n more allocations succeed, then fail all; n < 0 disarms. */
void alloc_fail_after(int64_t n);

#endif
