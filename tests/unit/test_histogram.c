/* The histogram's percentiles stay within 1% of the exact sorted values for known
 * distributions, merging equals recording everything in one, and the bucket layout is
 * contiguous (every value lands in the bucket whose range holds it). */
#include "check.h"
#include "histogram.h"

#include <math.h>

#define SAMPLE_COUNT 200000 /* enough that p99.9 is 200 values deep: a stable rank */

static const double percents[] = {0.0, 1.0, 50.0, 90.0, 99.0, 99.9, 100.0};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void) /* xorshift64*: deterministic, so a failure reproduces */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static double rng_unit(void) /* in (0, 1] */
{
    return ((double)(rng_next() >> 11) + 1.0) / 9007199254740992.0;
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void check_against_sorted(uint64_t *values, uint32_t count, const char *what)
{
    static struct histogram h;
    histogram_reset(&h);
    for (uint32_t i = 0; i < count; i++)
        histogram_record(&h, values[i]);
    qsort(values, count, sizeof(values[0]), compare_u64);
    CHECK_EQ(h.count, count);
    CHECK_EQ(h.max, values[count - 1]);
    CHECK_EQ(h.min, values[0]);
    for (size_t i = 0; i < sizeof(percents) / sizeof(percents[0]); i++) {
        uint64_t exact = values[histogram_rank(count, percents[i]) - 1];
        uint64_t got = histogram_percentile(&h, percents[i]);
        double error = fabs((double)got - (double)exact) / (double)(exact > 0 ? exact : 1);
        if (error > 0.01)
            fprintf(stderr, "%s p%.1f: got %llu exact %llu\n", what, percents[i],
                    (unsigned long long)got, (unsigned long long)exact);
        CHECK(error <= 0.01);
    }
}

static void test_uniform(void)
{
    static uint64_t values[SAMPLE_COUNT];
    for (uint32_t i = 0; i < SAMPLE_COUNT; i++)
        values[i] = 1000 + rng_next() % 10000000; /* 1 us .. 10 ms in ns */
    check_against_sorted(values, SAMPLE_COUNT, "uniform");
}

static void test_exponential(void)
{
    static uint64_t values[SAMPLE_COUNT];
    for (uint32_t i = 0; i < SAMPLE_COUNT; i++)
        values[i] = (uint64_t)(-log(rng_unit()) * 150000.0); /* mean 150 us */
    check_against_sorted(values, SAMPLE_COUNT, "exponential");
}

static void test_constant(void)
{
    static uint64_t values[SAMPLE_COUNT];
    for (uint32_t i = 0; i < SAMPLE_COUNT; i++)
        values[i] = 123457;
    check_against_sorted(values, SAMPLE_COUNT, "constant");
    struct histogram h;
    histogram_reset(&h);
    histogram_record(&h, 123457);
    CHECK_EQ(histogram_percentile(&h, 50.0), 123457); /* clamped to min/max: exact */
}

static void test_small_values_exact_and_huge_values_fit(void)
{
    static uint64_t values[1000];
    for (uint32_t i = 0; i < 1000; i++)
        values[i] = i % 256;
    check_against_sorted(values, 1000, "small");
    struct histogram h;
    histogram_reset(&h);
    histogram_record(&h, UINT64_MAX);
    histogram_record(&h, 0);
    CHECK_EQ(histogram_bucket_index(UINT64_MAX), HISTOGRAM_BUCKET_COUNT - 1);
    CHECK_EQ(histogram_percentile(&h, 100.0), UINT64_MAX);
    CHECK_EQ(histogram_percentile(&h, 50.0), 0);
    histogram_reset(&h);
    CHECK_EQ(histogram_percentile(&h, 99.0), 0);
}

static void test_buckets_are_contiguous(void)
{
    for (uint32_t i = 0; i + 1 < HISTOGRAM_BUCKET_COUNT; i++) {
        uint64_t low = histogram_bucket_low(i), width = histogram_bucket_width(i);
        REQUIRE(histogram_bucket_low(i + 1) == low + width);
        REQUIRE(histogram_bucket_index(low) == i);
        REQUIRE(histogram_bucket_index(low + width - 1) == i);
        /* The error bound: a bucket is at most 1/128 of its lowest value wide. */
        if (low >= 256)
            REQUIRE(width * 128 <= low);
    }
}

static void test_merge_equals_single(void)
{
    static struct histogram a, b, all;
    histogram_reset(&a);
    histogram_reset(&b);
    histogram_reset(&all);
    for (uint32_t i = 0; i < 50000; i++) {
        uint64_t v = rng_next() % 5000000;
        histogram_record(i % 3 ? &a : &b, v);
        histogram_record(&all, v);
    }
    histogram_merge(&a, &b);
    CHECK_EQ(a.count, all.count);
    CHECK_EQ(a.min, all.min);
    CHECK_EQ(a.max, all.max);
    CHECK(memcmp(a.buckets, all.buckets, sizeof(a.buckets)) == 0);
    for (size_t i = 0; i < sizeof(percents) / sizeof(percents[0]); i++)
        CHECK_EQ(histogram_percentile(&a, percents[i]), histogram_percentile(&all, percents[i]));
}

int main(void)
{
    RUN_TEST(test_uniform);
    RUN_TEST(test_exponential);
    RUN_TEST(test_constant);
    RUN_TEST(test_small_values_exact_and_huge_values_fit);
    RUN_TEST(test_buckets_are_contiguous);
    RUN_TEST(test_merge_equals_single);
    return check_exit();
}
