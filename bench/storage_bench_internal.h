/* Shared by storage_bench.c (raw writes, printing) and storage_bench_engine.c (the engine). */
#ifndef SPOOL_BENCH_STORAGE_BENCH_INTERNAL_H
#define SPOOL_BENCH_STORAGE_BENCH_INTERNAL_H

#include <stddef.h>

#include "storage_bench.h"

struct storage_bench_result {
    uint64_t records;
    uint64_t commits;
    double seconds;
};

double storage_bench_now_s(void);
/* Pseudo-random (incompressible) bytes, the same sequence every run. */
void storage_bench_fill_random(uint8_t *buf, size_t len);
/* 0 or a negative errno / log error code. */
int storage_bench_run_engine(const struct storage_bench_config *config,
                             struct storage_bench_result *result);
const char *storage_bench_strerror(int error);

#endif
