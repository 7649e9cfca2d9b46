/*
 * Assertions used across spool.
 *
 * SPOOL_ASSERT is always on, in every build type: an invariant that does not hold means the
 * process can no longer be trusted with durable data, so it stops with file:line:function
 * instead of going on. SPOOL_DEBUG_ASSERT is for checks that cost O(n) and runs only in builds
 * with SPOOL_DEBUG defined (the test builds).
 *
 * Operating errors (bad input, a corrupt segment, ENOSPC) are never asserted: they are
 * returned and reported. Assertions are for programmer errors only.
 */
#ifndef SPOOL_ASSERT_H
#define SPOOL_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

__attribute__((noreturn, cold)) static inline void spool_assert_fail(const char *expr,
                                                                    const char *file, int line,
                                                                    const char *func)
{
    fprintf(stderr, "level=fatal msg=\"assertion failed\" expr=\"%s\" at=%s:%d func=%s\n", expr,
            file, line, func);
    fflush(stderr);
    abort();
}

#define SPOOL_ASSERT(expr)                                                                    \
    ((expr) ? (void)0 : spool_assert_fail(#expr, __FILE__, __LINE__, __func__))

#ifdef SPOOL_DEBUG
#define SPOOL_DEBUG_ASSERT(expr) SPOOL_ASSERT(expr)
#else
#define SPOOL_DEBUG_ASSERT(expr) ((void)0)
#endif

#define SPOOL_MUST_USE __attribute__((warn_unused_result))

#endif
