/*
 * A small test harness: CHECK macros that report file:line and the values compared, a count of
 * failures, and helpers for temp directories. Each test program is one executable whose exit
 * code meson reads (0 pass, 77 skip, anything else fail).
 */
#ifndef SPOOL_TEST_CHECK_H
#define SPOOL_TEST_CHECK_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int check_failures;

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);          \
            check_failures++;                                                                 \
        }                                                                                     \
    } while (0)

#define CHECK_EQ(a, b)                                                                        \
    do {                                                                                      \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                       \
        if (check_a_ != check_b_) {                                                           \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld vs %lld)\n", __FILE__,    \
                    __LINE__, #a, #b, check_a_, check_b_);                                    \
            check_failures++;                                                                 \
        }                                                                                     \
    } while (0)

/* Stop the test at once: later checks would only repeat the failure. */
#define REQUIRE(cond)                                                                         \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond);        \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

#define RUN_TEST(fn)                                                                          \
    do {                                                                                      \
        int check_before_ = check_failures;                                                   \
        fn();                                                                                 \
        fprintf(stderr, "%s %s\n", check_failures == check_before_ ? "ok  " : "FAIL", #fn);   \
    } while (0)

/* Make a fresh directory under $TMPDIR (or /tmp); returns a malloc'ed path. */
char *check_tmpdir(const char *tag);
/* Remove a directory tree made by check_tmpdir (files only one level deep). */
void check_rmdir(const char *path);

static inline int check_exit(void)
{
    return check_failures == 0 ? 0 : 1;
}

#endif
