/*
 * A latency histogram with bounded relative error and fixed memory (log-linear buckets, in
 * the manner of HdrHistogram).
 *
 * Values are unsigned 64-bit integers (the load generator records nanoseconds). Values below
 * 2^HISTOGRAM_SUB_BITS+1 (256) each have their own bucket, so they are exact. Above that, each
 * power-of-two range [2^m, 2^(m+1)) is split into 2^HISTOGRAM_SUB_BITS (128) equal buckets of
 * width 2^(m-7): a bucket's width is at most 1/128 of any value in it. A percentile reports the
 * midpoint of the bucket holding the value of that rank, clamped to the recorded min and max,
 * so it is within 1/256 (0.4%) of some recorded value of that bucket and within 1/128 (0.8%) of
 * the exact value of that rank: inside the 1% the benchmark promises.
 *
 * Index layout: index v for v < 256; for v >= 256 with most significant bit m (8..63),
 * index = 256 + (m - 8) * 128 + ((v >> (m - 7)) - 128). The largest index is 7423, so the
 * table is 7424 counters (58 KiB) whatever is recorded. Recording is a clz, a shift and an
 * increment; no allocation, no floating point.
 *
 * Percentiles use the nearest-rank definition: the value of rank ceil(p/100 * count) in
 * sorted order (rank 1 for p = 0); p = 100 returns the exact maximum.
 */
#ifndef SPOOL_BENCH_HISTOGRAM_H
#define SPOOL_BENCH_HISTOGRAM_H

#include <stdint.h>

#define HISTOGRAM_SUB_BITS 7
#define HISTOGRAM_SUB_COUNT (1u << HISTOGRAM_SUB_BITS) /* 128 buckets per power of two */
/* 256 exact buckets, then 128 per power of two for msb 8..63 (56 powers). */
#define HISTOGRAM_BUCKET_COUNT (2u * HISTOGRAM_SUB_COUNT + (64u - 8u) * HISTOGRAM_SUB_COUNT)

struct histogram {
    uint64_t count;
    uint64_t min; /* UINT64_MAX while empty */
    uint64_t max;
    uint64_t buckets[HISTOGRAM_BUCKET_COUNT];
};

void histogram_reset(struct histogram *histogram);
void histogram_record(struct histogram *histogram, uint64_t value);
/* Add every value of from into into. */
void histogram_merge(struct histogram *into, const struct histogram *from);
/* The value at percentile percent (0..100); 0 when empty. */
uint64_t histogram_percentile(const struct histogram *histogram, double percent);

/* The nearest rank (1..count) of percent among count sorted values; count must be > 0. */
uint64_t histogram_rank(uint64_t count, double percent);

/* Exposed for the unit test: the bucket of a value, and a bucket's lowest value and width. */
uint32_t histogram_bucket_index(uint64_t value);
uint64_t histogram_bucket_low(uint32_t index);
uint64_t histogram_bucket_width(uint32_t index);

#endif
