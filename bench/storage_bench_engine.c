/*
 * The engine half of `spool-bench storage`. Until the storage engine (storage/log.c) is part
 * of the build, this run is refused with a clear message; --raw works on its own.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "storage_bench_internal.h"

int storage_bench_run_engine(const struct storage_bench_config *config,
                             struct storage_bench_result *result)
{
    (void)config;
    (void)result;
    fprintf(stderr, "spool-bench storage: this build has no storage engine yet; use --raw\n");
    return -ENOSYS;
}

const char *storage_bench_strerror(int error)
{
    return strerror(-error);
}
