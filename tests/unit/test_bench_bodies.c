/* spool-bench's bodies (bench/bodies.c): random ones differ from job to job and lz4 cannot
 * shrink a batch of them, x ones are lz4's best case, json ones are JSON objects whose values
 * vary (and compress), and the send stamp reads back from every kind. */
#include "bodies.h"
#include "check.h"

#include <lz4.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 64u /* jobs per window: one put frame of a batching producer */

/* lz4's output over its input for count bodies of size bytes at bodies. */
static double lz4_ratio(const uint8_t *bodies, size_t bytes)
{
    int cap = LZ4_compressBound((int)bytes);
    char *out = malloc((size_t)cap);
    CHECK(out != NULL);
    int n = LZ4_compress_default((const char *)bodies, out, (int)bytes, cap);
    free(out);
    CHECK(n > 0);
    return (double)n / (double)bytes;
}

static void test_random_differs_and_does_not_compress(void)
{
    struct bench_bodies b;
    CHECK_EQ(bench_bodies_init(&b, BENCH_BODY_RANDOM, 100, BATCH), 0);
    uint8_t *w1 = bench_bodies_window(&b, BATCH);
    uint8_t *w2 = bench_bodies_window(&b, BATCH);
    CHECK(w1 != w2);
    CHECK(lz4_ratio(w1, (size_t)BATCH * 100) > 0.9);
    for (uint32_t i = 0; i + 1 < BATCH; i++)
        CHECK(memcmp(w1 + (size_t)i * 100, w1 + (size_t)(i + 1) * 100, 100) != 0);
    CHECK(memcmp(w1, w2, 100) != 0);
    for (size_t i = 0; i < (size_t)BATCH * 100; i++)
        CHECK((w1[i] >= 'a' && w1[i] <= 'z') || (w1[i] >= '0' && w1[i] <= '9'));
    bench_bodies_free(&b);
}

static void test_x_is_one_byte_and_compresses(void)
{
    struct bench_bodies b;
    CHECK_EQ(bench_bodies_init(&b, BENCH_BODY_X, 100, BATCH), 0);
    uint8_t *w = bench_bodies_window(&b, BATCH);
    for (size_t i = 0; i < (size_t)BATCH * 100; i++)
        CHECK_EQ(w[i], 'x');
    CHECK(lz4_ratio(w, (size_t)BATCH * 100) < 0.1);
    bench_bodies_free(&b);
}

/* A JSON object check enough for the generator's output: starts with '{', braces balance
 * outside strings, strings hold no quote, backslash or control byte, and it ends at the last. */
static bool looks_like_json_object(const uint8_t *s, size_t len)
{
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] == '\\' || s[i] > 0x7e)
            return false;
        if (s[i] == '"')
            in_string = !in_string;
        else if (!in_string && s[i] == '{')
            depth++;
        else if (!in_string && s[i] == '}' && --depth == 0)
            return i == len - 1;
    }
    return false;
}

static void test_json_is_json_and_varies(void)
{
    struct bench_bodies b;
    CHECK_EQ(bench_bodies_init(&b, BENCH_BODY_JSON, 300, BATCH), 0);
    uint8_t *w = bench_bodies_window(&b, BATCH);
    for (uint32_t i = 0; i < BATCH; i++) {
        uint8_t *body = w + (size_t)i * 300;
        bench_bodies_stamp(&b, body, 1234567890123ll + i);
        CHECK(looks_like_json_object(body, 300));
        CHECK(memcmp(body, "{\"ts\":\"", 7) == 0);
        CHECK(memmem(body, 300, "\"user_id\":", 10) != NULL);
        int64_t t = 0;
        CHECK(bench_bodies_read_stamp(BENCH_BODY_JSON, body, 300, &t));
        CHECK_EQ(t, 1234567890123ll + i);
        if (i > 0) /* past the stamp, the values differ too */
            CHECK(memcmp(body + 24, body - 300 + 24, 276) != 0);
    }
    double ratio = lz4_ratio(w, (size_t)BATCH * 300);
    CHECK(ratio < 0.8); /* repeated keys: compression has something to do */
    CHECK(ratio > 0.1); /* but not one repeated byte */
    bench_bodies_free(&b);
}

static void test_json_short_is_a_prefix_without_stamp(void)
{
    struct bench_bodies b;
    CHECK_EQ(bench_bodies_init(&b, BENCH_BODY_JSON, 20, BATCH), 0);
    uint8_t *w = bench_bodies_window(&b, 1);
    bench_bodies_stamp(&b, w, 42);
    CHECK(memcmp(w, "{\"ts\":\"0000000000000", 20) == 0);
    int64_t t;
    CHECK(!bench_bodies_read_stamp(BENCH_BODY_JSON, w, 20, &t));
    bench_bodies_free(&b);
}

static void test_raw_stamp_and_names(void)
{
    struct bench_bodies b;
    CHECK_EQ(bench_bodies_init(&b, BENCH_BODY_RANDOM, 8, 1), 0);
    uint8_t *w = bench_bodies_window(&b, 1);
    bench_bodies_stamp(&b, w, -5);
    int64_t t = 0;
    CHECK(bench_bodies_read_stamp(BENCH_BODY_RANDOM, w, 8, &t));
    CHECK_EQ(t, -5);
    CHECK(!bench_bodies_read_stamp(BENCH_BODY_X, w, 7, &t));
    bench_bodies_free(&b);
    enum bench_body_kind k;
    CHECK(bench_body_parse("json", &k) && k == BENCH_BODY_JSON);
    CHECK(bench_body_parse("x", &k) && k == BENCH_BODY_X);
    CHECK(bench_body_parse("random", &k) && k == BENCH_BODY_RANDOM);
    CHECK(!bench_body_parse("zip", &k));
    CHECK(strcmp(bench_body_name(BENCH_BODY_JSON), "json") == 0);
}

int main(void)
{
    RUN_TEST(test_random_differs_and_does_not_compress);
    RUN_TEST(test_x_is_one_byte_and_compresses);
    RUN_TEST(test_json_is_json_and_varies);
    RUN_TEST(test_json_short_is_a_prefix_without_stamp);
    RUN_TEST(test_raw_stamp_and_names);
    return check_exit();
}
