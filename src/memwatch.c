/*
 * The memory bound (memwatch.h): reading the cgroup limit and the process's RSS, and the
 * decision with its hysteresis.
 */
#include "memwatch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int memwatch_parse_limit(const char *text, uint64_t *limit_bytes)
{
    if (strcmp(text, "max") == 0 || strcmp(text, "max\n") == 0) {
        *limit_bytes = 0;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || text[0] < '0' || text[0] > '9' ||
        (*end != '\0' && strcmp(end, "\n") != 0) || v == 0)
        return -EINVAL;
    *limit_bytes = v;
    return 0;
}

/* The cgroup's limit, or 0 when there is none (no cgroup v2, "max", unreadable). */
static uint64_t cgroup_limit(const char *path)
{
    if (path == NULL)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char text[64];
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    text[n] = '\0';
    uint64_t limit = 0;
    if (memwatch_parse_limit(text, &limit) != 0)
        return 0;
    return limit;
}

void memwatch_init(struct memwatch *watch, uint64_t max_memory_bytes,
                   const char *cgroup_max_path)
{
    memset(watch, 0, sizeof(*watch));
    watch->statm_fd = -1;
    long page = sysconf(_SC_PAGESIZE);
    watch->page_bytes = page > 0 ? (uint64_t)page : 4096;
    if (max_memory_bytes != 0) {
        watch->bound_bytes = max_memory_bytes;
    } else {
        uint64_t limit = cgroup_limit(cgroup_max_path);
        watch->bound_bytes = limit - limit / MEMWATCH_CGROUP_HEADROOM_FRACTION;
        watch->bound_from_cgroup = limit != 0;
    }
    if (watch->bound_bytes != 0)
        watch->statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
}

void memwatch_close(struct memwatch *watch)
{
    if (watch->statm_fd >= 0)
        close(watch->statm_fd);
    watch->statm_fd = -1;
}

bool memwatch_sample(struct memwatch *watch, int64_t now_ns)
{
    if (watch->statm_fd < 0 || now_ns < watch->next_sample_ns)
        return false;
    watch->next_sample_ns = now_ns + MEMWATCH_SAMPLE_NS;
    char text[128];
    ssize_t n = pread(watch->statm_fd, text, sizeof(text) - 1, 0);
    if (n <= 0)
        return false;
    text[n] = '\0';
    unsigned long long size_pages = 0, resident_pages = 0;
    if (sscanf(text, "%llu %llu", &size_pages, &resident_pages) != 2)
        return false;
    watch->rss_bytes = (uint64_t)resident_pages * watch->page_bytes;
    return true;
}

bool memwatch_update(struct memwatch *watch, uint64_t rss_bytes)
{
    SPOOL_ASSERT(watch != NULL);
    if (watch->bound_bytes == 0) {
        watch->low = watch->tight = false;
        return false;
    }
    uint64_t resume = watch->bound_bytes - watch->bound_bytes / MEMWATCH_RESUME_FRACTION;
    if (rss_bytes > watch->bound_bytes)
        watch->low = true;
    else if (rss_bytes < resume)
        watch->low = false;
    watch->tight =
        watch->low || rss_bytes > watch->bound_bytes - watch->bound_bytes / MEMWATCH_TIGHT_FRACTION;
    return watch->low;
}
