/*
 * Counters and histograms for /metrics (http.c), kept by the loop thread as plain integers:
 * an increment or a histogram observation on the hot path is a few instructions with no lock
 * and no atomic, because only the loop thread writes them. The HTTP thread never reads them
 * directly; it reads a copy the loop publishes (observe.h).
 *
 * A histogram keeps one count per bucket (not cumulative; the renderer sums them as
 * Prometheus wants), a count and a sum, in integer units (microseconds for durations, plain
 * numbers for sizes). Bucket bounds are static tables below; an observation finds its bucket
 * by a linear scan of at most METRICS_BUCKETS_MAX bounds.
 */
#ifndef SPOOL_SRC_METRICS_H
#define SPOOL_SRC_METRICS_H

#include <stdint.h>

/* Bounds per histogram, at most: the tables below have 13 to 21; 24 leaves room without
 * making each per-queue histogram larger than 200 bytes. */
#define METRICS_BUCKETS_MAX 24

struct metrics_hist {
    uint64_t buckets[METRICS_BUCKETS_MAX + 1]; /* the last one: above every bound (+Inf) */
    uint64_t count;
    uint64_t sum;
};

struct metrics_bounds {
    const uint64_t *le; /* ascending upper bounds, in the histogram's unit */
    uint32_t count;
};

#define METRICS_COUNT_OF(a) ((uint32_t)(sizeof(a) / sizeof((a)[0])))

/* Time a job waits and a worker holds it, in us: from a tenth of a millisecond (a worker
 * blocked on reserve picks a job up at once) to an hour (a backlog an operator must see).
 * The tables are static in every file that includes this header: a few hundred bytes, and no
 * source file of its own for the broker library to list. */
static const uint64_t metrics_queue_time_le[] = {
    100,      250,      500,      1000,     2500,      5000,       10000,
    25000,    50000,    100000,   250000,   500000,    1000000,    2500000,
    5000000,  10000000, 30000000, 60000000, 300000000, 1800000000, 3600000000,
};
/* A commit (write + fdatasync), in us: 50 us (a fast NVMe) to 1 s (a disk in trouble). */
static const uint64_t metrics_commit_le[] = {
    50,   100,   150,   200,   300,    500,    750,    1000,   2000,
    5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,
};
/* Records per commit: powers of two up to 4096 (a full 1 MiB batch of small records). */
static const uint64_t metrics_records_le[] = {1,  2,   4,   8,    16,   32,  64,
                                              128, 256, 512, 1024, 2048, 4096};
_Static_assert(METRICS_COUNT_OF(metrics_queue_time_le) <= METRICS_BUCKETS_MAX, "buckets");
_Static_assert(METRICS_COUNT_OF(metrics_commit_le) <= METRICS_BUCKETS_MAX, "buckets");
_Static_assert(METRICS_COUNT_OF(metrics_records_le) <= METRICS_BUCKETS_MAX, "buckets");

static const struct metrics_bounds metrics_queue_time_us = {
    metrics_queue_time_le, METRICS_COUNT_OF(metrics_queue_time_le)};
static const struct metrics_bounds metrics_commit_us = {metrics_commit_le,
                                                        METRICS_COUNT_OF(metrics_commit_le)};
static const struct metrics_bounds metrics_commit_records = {
    metrics_records_le, METRICS_COUNT_OF(metrics_records_le)};

static inline void metrics_hist_observe(struct metrics_hist *h, const struct metrics_bounds *b,
                                        uint64_t value)
{
    uint32_t i = 0;
    while (i < b->count && value > b->le[i])
        i++;
    h->buckets[i]++;
    h->count++;
    h->sum += value;
}

/* Per queue (struct queue.metrics), since this process started: replay counts nothing. */
struct queue_metrics {
    uint64_t puts;
    uint64_t deliveries;     /* leases handed out, every attempt */
    uint64_t acks;
    uint64_t releases;       /* by the worker */
    uint64_t buries;         /* by the worker */
    uint64_t lease_expiries; /* deadline passed or the worker's connection went away */
    uint64_t dead_lettered;  /* went dead: buried, or out of attempts */
    uint64_t expired;        /* ttl ran out */
    uint64_t kicked;
    uint64_t deleted;        /* by a client */
    struct metrics_hist wait_us;    /* put to first delivery */
    struct metrics_hist process_us; /* delivery to ack */
};

/* Opcodes counted one by one (requests 0x0001..0x0025 today; a larger one counts under the
 * last slot). 64 keeps the array one cache-friendly kilobyte apart from the error codes. */
#define METRICS_OPCODES 64
/* Wire error codes are 1..99 (wire_frame.h). */
#define METRICS_ERROR_CODES 100

/* Beanstalkd listener lines (beanstalk_cmd.c) by command (enum bs_command, beanstalk.h: 25
 * today), the last slot for lines naming no command; 32 leaves room for a few more. */
#define METRICS_BS_COMMANDS 32
#define METRICS_BS_UNKNOWN (METRICS_BS_COMMANDS - 1)
/* Beanstalkd error replies by word (beanstalk_error_words, beanstalk.c). */
#define METRICS_BS_ERRORS 9

/* Why a connection was closed for a peer that stopped: the label of
 * spool_connections_timed_out_total. */
enum metrics_conn_timeout {
    METRICS_TIMEOUT_HANDSHAKE, /* no HELLO within --handshake-timeout */
    METRICS_TIMEOUT_FRAME,     /* a started frame stalled for --frame-timeout */
    METRICS_TIMEOUT_CLOSING,   /* closing, its last replies untaken for CONN_UNREAD_MS */
    METRICS_TIMEOUT_MEMORY,    /* above the memory bound, replies untaken for CONN_UNREAD_MS */
    METRICS_CONN_TIMEOUTS
};

/* Server-wide counters (struct server.metrics). */
struct server_metrics {
    uint64_t requests[METRICS_OPCODES];   /* frames handled, by opcode */
    uint64_t errors[METRICS_ERROR_CODES]; /* error replies, by wire code */
    uint64_t bs_requests[METRICS_BS_COMMANDS]; /* beanstalkd lines, by command */
    uint64_t bs_errors[METRICS_BS_ERRORS];     /* beanstalkd error replies, by word */
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t connections_accepted;
    uint64_t connections_timed_out[METRICS_CONN_TIMEOUTS]; /* closed by a timeout, by cause */
    uint64_t input_max_bytes;           /* the most unparsed input one connection has held */
    uint64_t commit_bytes;
    struct metrics_hist commit_us;      /* one group commit: write (+ fdatasync) */
    struct metrics_hist commit_records; /* records in one commit */
    int64_t recovery_ns;                /* log open, replay and body reload at start */
};

/* One more frame handled with opcode (one above the counted range counts under the last slot). */
static inline void metrics_count_request(struct server_metrics *m, uint16_t opcode)
{
    m->requests[opcode < METRICS_OPCODES ? opcode : METRICS_OPCODES - 1]++;
}

#endif
