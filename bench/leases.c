/*
 * spool-bench leases: the cost of a lease's way in and out with many leases held, as a worker
 * pool that holds many jobs (long jobs, large fetch batches) makes it.
 *
 *   spool-bench leases [--leases N] [--reps R]
 *
 * Each round measures, in this process:
 * - the lease set alone: N elements the size of a job's extension, their deadlines rising as a
 *   broker's leases of one ttr do, pushed and then removed oldest first (acks in the order of
 *   delivery), once into the runs the broker uses (runheap.h) and once into a plain binary
 *   heap, the structure before it, in alternating order: runheap_ns and heap_ns per element;
 * - the broker: N jobs put and reserved in batches of 256 (a deadline 1 us after the last),
 *   then acked in the order delivered: ack_ns per ack (the whole queue_ack: lookup, token
 *   check, the record's encoding into a fake log, the done list).
 *
 * One line, medians of the rounds:
 *
 *   RESULT mode=leases leases=N reps=R runheap_ns=.. heap_ns=.. heap_over_runheap=.. ack_ns=..
 */
#include "leases.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "heap.h"
#include "queue.h"
#include "runheap.h"

#define LEASES_MAX 10000000u
#define LEASES_REPS_MAX 99u
#define LEASES_RESERVE_BATCH 256u
#define LEASES_TTR_NS (60 * (int64_t)1000000000)

/* As big as a job's extension (what the broker's lease set holds), key and links first. */
struct lease_item {
    int64_t deadline_ns;
    uint32_t slot;
    struct list_link link;
    uint8_t rest[sizeof(struct job_ext) - 32];
};
_Static_assert(sizeof(struct lease_item) == sizeof(struct job_ext), "lease_item: an extension");

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool item_less(const void *a, const void *b)
{
    const struct lease_item *x = a, *y = b;
    return x->deadline_ns < y->deadline_ns;
}

static void items_reset(struct lease_item *items, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        items[i].deadline_ns = (int64_t)i * 1000 + LEASES_TTR_NS;
        items[i].slot = HEAP_NONE;
        list_init(&items[i].link);
    }
}

/* ns per element: push all, then remove all oldest first. */
static double time_runheap(struct lease_item *items, uint32_t n)
{
    struct runheap rh;
    runheap_init(&rh, item_less, offsetof(struct lease_item, slot),
                 offsetof(struct lease_item, link));
    items_reset(items, n);
    double t0 = now_s();
    for (uint32_t i = 0; i < n; i++)
        runheap_push(&rh, &items[i]);
    for (uint32_t i = 0; i < n; i++)
        runheap_remove(&rh, &items[i]);
    double dt = now_s() - t0;
    runheap_free(&rh);
    return dt / n * 1e9;
}

static double time_heap(struct lease_item *items, uint32_t n)
{
    struct heap heap;
    heap_init(&heap, item_less, offsetof(struct lease_item, slot));
    items_reset(items, n);
    double t0 = now_s();
    for (uint32_t i = 0; i < n; i++)
        heap_push(&heap, &items[i]);
    for (uint32_t i = 0; i < n; i++)
        heap_remove(&heap, &items[i]);
    double dt = now_s() - t0;
    heap_free(&heap);
    return dt / n * 1e9;
}

static uint64_t fake_seq;

static int fake_emit(void *ctx, uint8_t type, const void *data, uint32_t len, struct log_pos *pos)
{
    (void)ctx;
    (void)type;
    (void)data;
    (void)len;
    pos->seq = ++fake_seq;
    pos->segment_id = 1;
    pos->batch_offset = 4096;
    return 0;
}

static struct queue_time at_ns(int64_t ns)
{
    return (struct queue_time){.wall_ns = ns, .mono_ns = ns};
}

/* ns per queue_ack with n leases held, or a negative number if the state machine refused. */
static double time_acks(uint32_t n, uint64_t *ids, uint64_t *tokens)
{
    struct queue_config config;
    queue_config_defaults(&config);
    config.emit = fake_emit;
    struct queue_state *state = queue_state_create(&config);
    struct queue_owner owner;
    queue_owner_init(&owner);
    int64_t t = 1000000000;
    double ns = -1;
    for (uint32_t i = 0; i < n; i++) {
        struct queue_put_args args = {.queue = "leases",
                                      .queue_len = 6,
                                      .body = "0123456789",
                                      .body_len = 10,
                                      .ttr_ms = LEASES_TTR_NS / 1000000,
                                      .max_attempts = -1};
        uint64_t id, seq;
        bool duplicate;
        if (queue_put(state, &args, at_ns(t), &id, &duplicate, &seq) != 0)
            goto out;
    }
    queue_durable(state, UINT64_MAX, at_ns(t));
    for (uint32_t held = 0; held < n;) {
        struct queue_reserver reserver = {.queues = {queue_find(state, "leases", 6)},
                                          .queue_count = 1,
                                          .count_max = LEASES_RESERVE_BATCH,
                                          .owner = &owner,
                                          .deadline_ns = t};
        struct job *jobs[LEASES_RESERVE_BATCH];
        t += 1000;
        uint32_t got = queue_reserve(state, &reserver, at_ns(t), jobs);
        if (got == 0)
            goto out;
        for (uint32_t j = 0; j < got && held < n; j++, held++) {
            ids[held] = jobs[j]->id;
            tokens[held] = queue_job_ext_of(jobs[j])->lease_token;
        }
    }
    double t0 = now_s();
    for (uint32_t i = 0; i < n; i++) {
        struct queue_logged logged;
        if (queue_ack(state, ids[i], tokens[i], NULL, 0, at_ns(t), &logged) != 0)
            goto out;
    }
    ns = (now_s() - t0) / n * 1e9;
out:
    queue_state_destroy(state);
    return ns;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, uint32_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int leases_parse(int argc, char **argv, uint32_t *leases, uint32_t *reps)
{
    static const struct option opts[] = {
        {"leases", required_argument, NULL, 'n'},
        {"reps", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    optind = 2;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        unsigned long v = 0;
        switch (opt) {
        case 'n':
        case 'r':
            v = strtoul(optarg, &end, 10);
            if (end == optarg || *end != '\0' || optarg[0] == '-') {
                fprintf(stderr, "spool-bench leases: bad number \"%s\"\n", optarg);
                return -1;
            }
            if (opt == 'n')
                *leases = v > LEASES_MAX ? 0 : (uint32_t)v;
            else
                *reps = v > LEASES_REPS_MAX ? 0 : (uint32_t)v;
            break;
        case 'h':
            printf("usage: spool-bench leases [--leases N] [--reps R]\n");
            exit(0);
        default:
            return -1;
        }
    }
    if (optind != argc || *leases == 0 || *reps == 0) {
        fprintf(stderr, "spool-bench leases: --leases 1..%u, --reps 1..%u\n", LEASES_MAX,
                LEASES_REPS_MAX);
        return -1;
    }
    return 0;
}

int leases_main(int argc, char **argv)
{
    uint32_t n = 100000, reps = 3;
    if (leases_parse(argc, argv, &n, &reps) != 0)
        return 2;
    struct lease_item *items = malloc((size_t)n * sizeof(*items));
    uint64_t *ids = malloc((size_t)n * sizeof(*ids));
    uint64_t *tokens = malloc((size_t)n * sizeof(*tokens));
    double *runs = malloc(reps * sizeof(double)), *heaps = malloc(reps * sizeof(double));
    double *acks = malloc(reps * sizeof(double));
    int rc = 1;
    if (items == NULL || ids == NULL || tokens == NULL || runs == NULL || heaps == NULL ||
        acks == NULL) {
        fprintf(stderr, "spool-bench leases: out of memory\n");
        goto out;
    }
    for (uint32_t r = 0; r < reps; r++) {
        if (r % 2 == 0) {
            runs[r] = time_runheap(items, n);
            heaps[r] = time_heap(items, n);
        } else {
            heaps[r] = time_heap(items, n);
            runs[r] = time_runheap(items, n);
        }
        acks[r] = time_acks(n, ids, tokens);
        if (acks[r] < 0) {
            fprintf(stderr, "spool-bench leases: the queue refused a put, reserve or ack\n");
            goto out;
        }
    }
    double run_ns = median(runs, reps), heap_ns = median(heaps, reps);
    printf("RESULT mode=leases leases=%u reps=%u runheap_ns=%.2f heap_ns=%.2f "
           "heap_over_runheap=%.2f ack_ns=%.2f\n",
           n, reps, run_ns, heap_ns, heap_ns / run_ns, median(acks, reps));
    rc = 0;
out:
    free(items);
    free(ids);
    free(tokens);
    free(runs);
    free(heaps);
    free(acks);
    return rc;
}
