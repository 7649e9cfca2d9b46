/*
 * memwatch: spoold's memory bound (`--max-memory`, or the cgroup's memory.max found at start).
 *
 * What is bounded is the process's resident memory (RSS, /proc/self/statm): what the kernel's
 * OOM killer and a cgroup count. It is read at most every MEMWATCH_SAMPLE_NS. When it is above
 * the bound, the server first gives memory back (it evicts bodies from the body cache and hands
 * free heap pages to the kernel), and puts are refused with QUEUE_FULL while it stays above;
 * reserves, acks, deletes and everything else go on, and they are what brings memory down.
 * Puts are admitted again once RSS is below the bound by MEMWATCH_RESUME_FRACTION of it, so a
 * server at the edge does not flap with every sample. From MEMWATCH_TIGHT_FRACTION below the
 * bound on, memory is tight: puts are still admitted, but connections are read less far ahead.
 *
 * With a cgroup limit and no --max-memory, the bound is the limit less an eighth: the page
 * cache of the log's segments is charged to the cgroup too, and the kernel reclaims it, but
 * only while the process leaves it some room.
 */
#ifndef SPOOL_SRC_MEMWATCH_H
#define SPOOL_SRC_MEMWATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "assert.h"

/* RSS is read every 10 ms at most: one read of /proc/self/statm costs a few microseconds, so
 * this is well under 0.1% of the loop, and a producer at 200,000 puts a second adds about
 * 2,000 jobs (well under a MiB) between two reads. */
#define MEMWATCH_SAMPLE_NS (10 * 1000 * 1000)
/* Puts resume below the bound less 1/16 of it. */
#define MEMWATCH_RESUME_FRACTION 16
/* Above the bound less a quarter of it, memory is tight: connections are read less far ahead
 * (conn.c), so that clients which send and never read cannot take the last quarter, and with it
 * every producer's puts. */
#define MEMWATCH_TIGHT_FRACTION 4
/* The share of a cgroup limit left to the page cache and the kernel: an eighth. */
#define MEMWATCH_CGROUP_HEADROOM_FRACTION 8
/* Where cgroup v2 says the limit of the cgroup spoold runs in. */
#define MEMWATCH_CGROUP_MAX_PATH "/sys/fs/cgroup/memory.max"

struct memwatch {
    uint64_t bound_bytes; /* 0: no bound */
    bool bound_from_cgroup;
    int statm_fd;         /* /proc/self/statm, or -1 */
    uint64_t page_bytes;
    int64_t next_sample_ns;
    uint64_t rss_bytes;   /* the last reading */
    bool low;             /* above the bound: puts refused */
    bool tight;           /* above the bound less MEMWATCH_TIGHT_FRACTION of it, or low */
    uint64_t puts_refused; /* in the episode in progress */
    int64_t next_trim_ns;  /* memory is handed back to the kernel at most once a second */
};

/* The text of a cgroup v2 memory.max: a number of bytes, or "max" (*limit_bytes = 0: none).
 * 0, or -EINVAL for anything else. */
SPOOL_MUST_USE int memwatch_parse_limit(const char *text, uint64_t *limit_bytes);

/* The bound: max_memory_bytes when set, else the cgroup limit read from cgroup_max_path (may be
 * NULL, or absent: no bound) less MEMWATCH_CGROUP_HEADROOM_FRACTION. */
void memwatch_init(struct memwatch *watch, uint64_t max_memory_bytes,
                   const char *cgroup_max_path);
void memwatch_close(struct memwatch *watch);

/* Read RSS if a reading is due at now_ns (monotonic). True if it read one (watch->rss_bytes). */
bool memwatch_sample(struct memwatch *watch, int64_t now_ns);

/* Decide from a reading: true while memory is low (above the bound, or not yet back below the
 * resume level). Sets watch->low and watch->tight. */
bool memwatch_update(struct memwatch *watch, uint64_t rss_bytes);

#endif
