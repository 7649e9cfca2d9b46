/* Bucket bounds of the histograms of metrics.h. */
#include "metrics.h"

static const uint64_t queue_time_le[] = {
    100,       250,       500,        1000,       2500,       5000,       10000,
    25000,     50000,     100000,     250000,     500000,     1000000,    2500000,
    5000000,   10000000,  30000000,   60000000,   300000000,  1800000000, 3600000000,
};
static const uint64_t commit_le[] = {
    50,    100,   150,   200,    300,    500,    750,    1000,   2000,
    5000,  10000, 25000, 50000,  100000, 250000, 500000, 1000000,
};
static const uint64_t records_le[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};

#define COUNT_OF(a) ((uint32_t)(sizeof(a) / sizeof((a)[0])))
_Static_assert(COUNT_OF(queue_time_le) <= METRICS_BUCKETS_MAX, "queue time buckets");
_Static_assert(COUNT_OF(commit_le) <= METRICS_BUCKETS_MAX, "commit buckets");
_Static_assert(COUNT_OF(records_le) <= METRICS_BUCKETS_MAX, "record buckets");

const struct metrics_bounds metrics_queue_time_us = {queue_time_le, COUNT_OF(queue_time_le)};
const struct metrics_bounds metrics_commit_us = {commit_le, COUNT_OF(commit_le)};
const struct metrics_bounds metrics_commit_records = {records_le, COUNT_OF(records_le)};
