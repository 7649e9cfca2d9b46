/*
 * libspool_put: the C side of bench_put.py. Times COUNT single spool_put round trips of SIZE-byte
 * bodies on one connection (after WARMUP untimed ones) and prints
 *   RESULT client=libspool op=put count=N p50_us=.. p90_us=.. p99_us=.. jobs_per_s=..
 * Usage: libspool_put HOST:PORT QUEUE COUNT SIZE WARMUP
 * Built by bench_put.py with the system C compiler against build/src/client/libspool.so.
 */
#include <spool/client.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOST:PORT QUEUE COUNT SIZE WARMUP\n", argv[0]);
        return 2;
    }
    size_t count = strtoul(argv[3], NULL, 10), size = strtoul(argv[4], NULL, 10);
    size_t warmup = strtoul(argv[5], NULL, 10);
    spool_client *c;
    int rc = spool_connect(argv[1], 5000, &c);
    if (rc != 0) {
        fprintf(stderr, "connect: %s\n", spool_strerror(rc));
        return 1;
    }
    char *body = malloc(size + 1);
    double *lat = malloc(count * sizeof *lat);
    if (body == NULL || lat == NULL)
        return 1;
    memset(body, 'x', size);
    struct spool_job_spec job = {.queue = argv[2], .body = body, .body_len = size};
    double start = 0;
    for (size_t i = 0; i < warmup + count; i++) {
        if (i == warmup)
            start = now_us();
        double t0 = now_us();
        rc = spool_put(c, &job, NULL);
        if (rc != 0) {
            fprintf(stderr, "put: %s\n", spool_strerror(rc));
            return 1;
        }
        if (i >= warmup)
            lat[i - warmup] = now_us() - t0;
    }
    double seconds = (now_us() - start) / 1e6;
    qsort(lat, count, sizeof *lat, cmp_double);
    printf("RESULT client=libspool op=put count=%zu p50_us=%.1f p90_us=%.1f p99_us=%.1f "
           "jobs_per_s=%.0f\n",
           count, lat[count / 2], lat[count * 9 / 10], lat[count * 99 / 100], count / seconds);
    spool_close(c);
    free(body);
    free(lat);
    return 0;
}
