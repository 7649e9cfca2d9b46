/*
 * `spool-bench storage`: the storage engine's throughput with group commit (issue 2's
 * benchmark), and the same bytes written with plain pwrite + fdatasync per commit in the same
 * process (--raw), so the engine's overhead over the disk is one ratio from one invocation.
 */
#ifndef SPOOL_BENCH_STORAGE_BENCH_H
#define SPOOL_BENCH_STORAGE_BENCH_H

#include <stdbool.h>
#include <stdint.h>

/* Rounds of one invocation: each is a whole run, so a handful is plenty. */
#define STORAGE_BENCH_REPS_MAX 15

struct storage_bench_config {
    const char *dir;             /* a directory the benchmark may fill; made if missing */
    uint32_t record_size_bytes;  /* default 4096 */
    uint32_t appends_per_commit; /* default 64 */
    uint64_t record_count;       /* default 100000 */
    bool run_engine;             /* default true */
    bool run_raw;                /* --raw: only raw; --compare: both */
    uint32_t reps; /* rounds (alternating with --compare); default 1, 3 with --compare */
};

void storage_bench_config_defaults(struct storage_bench_config *config);

/* Run and print RESULT line(s); the process exit code. */
int storage_bench_main(const struct storage_bench_config *config);

#endif
