/* Log-linear latency histogram: layout and error bound are explained in histogram.h. */
#include "histogram.h"

#include <math.h>
#include <string.h>

#include "assert.h"

_Static_assert(HISTOGRAM_BUCKET_COUNT == 7424, "bucket layout changed: update histogram.h");

void histogram_reset(struct histogram *histogram)
{
    memset(histogram, 0, sizeof(*histogram));
    histogram->min = UINT64_MAX;
}

uint32_t histogram_bucket_index(uint64_t value)
{
    if (value < 2u * HISTOGRAM_SUB_COUNT)
        return (uint32_t)value;
    uint32_t msb = 63u - (uint32_t)__builtin_clzll(value);
    SPOOL_ASSERT(msb >= HISTOGRAM_SUB_BITS + 1);
    uint32_t shift = msb - HISTOGRAM_SUB_BITS;
    uint32_t sub = (uint32_t)(value >> shift) - HISTOGRAM_SUB_COUNT;
    SPOOL_ASSERT(sub < HISTOGRAM_SUB_COUNT);
    return 2u * HISTOGRAM_SUB_COUNT + (msb - (HISTOGRAM_SUB_BITS + 1)) * HISTOGRAM_SUB_COUNT + sub;
}

uint64_t histogram_bucket_low(uint32_t index)
{
    SPOOL_ASSERT(index < HISTOGRAM_BUCKET_COUNT);
    if (index < 2u * HISTOGRAM_SUB_COUNT)
        return index;
    uint32_t rest = index - 2u * HISTOGRAM_SUB_COUNT;
    uint32_t shift = rest / HISTOGRAM_SUB_COUNT + 1;
    uint64_t sub = HISTOGRAM_SUB_COUNT + rest % HISTOGRAM_SUB_COUNT;
    return sub << shift;
}

uint64_t histogram_bucket_width(uint32_t index)
{
    SPOOL_ASSERT(index < HISTOGRAM_BUCKET_COUNT);
    if (index < 2u * HISTOGRAM_SUB_COUNT)
        return 1;
    return (uint64_t)1 << ((index - 2u * HISTOGRAM_SUB_COUNT) / HISTOGRAM_SUB_COUNT + 1);
}

void histogram_record(struct histogram *histogram, uint64_t value)
{
    histogram->buckets[histogram_bucket_index(value)]++;
    histogram->count++;
    if (value < histogram->min)
        histogram->min = value;
    if (value > histogram->max)
        histogram->max = value;
}

void histogram_merge(struct histogram *into, const struct histogram *from)
{
    if (from->count == 0)
        return;
    for (uint32_t i = 0; i < HISTOGRAM_BUCKET_COUNT; i++)
        into->buckets[i] += from->buckets[i];
    into->count += from->count;
    if (from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
}

uint64_t histogram_rank(uint64_t count, double percent)
{
    /* Shave a relative 1e-9 so that 99.9% of 1000 is rank 999, not 1000 by rounding. */
    double exact = percent / 100.0 * (double)count;
    uint64_t rank = (uint64_t)ceil(exact - exact * 1e-9);
    if (rank == 0)
        rank = 1;
    if (rank > count)
        rank = count;
    return rank;
}

uint64_t histogram_percentile(const struct histogram *histogram, double percent)
{
    SPOOL_ASSERT(percent >= 0.0 && percent <= 100.0);
    if (histogram->count == 0)
        return 0;
    if (percent >= 100.0)
        return histogram->max;
    uint64_t rank = histogram_rank(histogram->count, percent);
    uint64_t seen = 0;
    for (uint32_t i = 0; i < HISTOGRAM_BUCKET_COUNT; i++) {
        seen += histogram->buckets[i];
        if (seen < rank)
            continue;
        uint64_t mid = histogram_bucket_low(i) + (histogram_bucket_width(i) - 1) / 2;
        if (mid < histogram->min)
            mid = histogram->min;
        if (mid > histogram->max)
            mid = histogram->max;
        return mid;
    }
    SPOOL_ASSERT(!"histogram counts do not add up to count");
    return histogram->max;
}
