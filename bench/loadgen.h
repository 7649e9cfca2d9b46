/*
 * The load generator: one thread, one epoll loop, P producer and C consumer connections to
 * one server, each with up to D request frames outstanding, speaking the server's protocol
 * through a driver (driver.h).
 *
 * Modes. produce: producers put jobs; latency is put sent -> put confirmed. consume: producers
 * first fill the queues with N jobs (not measured), then consumers drain them: reserve, then
 * ack what came back; latency is reserve sent -> ack confirmed. e2e: producers and consumers
 * at once; latency is put -> put confirmed, and "deliver" latency is the send time stamped in
 * each body -> the reserve reply carrying it.
 *
 * Closed loop (default): a connection sends its next frame as soon as it has fewer than D
 * outstanding (in e2e, also only while the backlog of jobs put but not yet acked stays within
 * twice what the consumers can hold in flight, so the run measures a steady state). Open
 * loop (rate > 0): job k is due at start + k / rate whatever the server does, and its latency is
 * measured from that intended time, so a stalled server shows its queueing delay instead of hiding
 * it (coordinated omission).
 *
 * The run ends after count jobs (count > 0) or duration seconds after warmup; producers then
 * stop and the loop drains what is outstanding (consumers keep going until every confirmed
 * put has been acked, in e2e), bounded by LOADGEN_DRAIN_S.
 */
#ifndef SPOOL_BENCH_LOADGEN_H
#define SPOOL_BENCH_LOADGEN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "bodies.h"
#include "driver.h"
#include "histogram.h"

/* How long the end of a run may take to drain outstanding work before the jobs still
 * missing are counted as errors: a durable broker answers within milliseconds; 10 s covers
 * a backlog of a few seconds of work at the slowest target. */
#define LOADGEN_DRAIN_S 10.0

enum loadgen_mode { LOADGEN_PRODUCE = 0, LOADGEN_CONSUME, LOADGEN_E2E };

struct loadgen_config {
    const struct bench_driver *driver;
    const char *target; /* the name printed in RESULT */
    enum loadgen_mode mode;
    const char *host;
    uint16_t port;
    uint32_t producers;
    uint32_t consumers;
    uint32_t depth; /* frames outstanding per connection */
    uint32_t batch; /* jobs per put frame, <= BENCH_BATCH_MAX */
    /* Jobs a consumer asks for per reserve (and acks per ack frame), <= BENCH_BATCH_MAX;
     * 0 = batch. Apart from batch so a comparison can fetch in batches while it still puts
     * one job per request. */
    uint32_t fetch_batch;
    uint32_t size;  /* body bytes */
    enum bench_body_kind body; /* what the bodies hold (bodies.h); printed in RESULT */
    uint32_t queues;
    double duration_s; /* used when count == 0 */
    uint64_t count;    /* jobs to put (produce, e2e) or to pre-fill and drain (consume) */
    double rate;       /* jobs/s over all producers; 0 = closed loop */
    double warmup_s;   /* duration runs only */
    int server_pid;    /* 0 = do not measure server CPU */
    bool progress;     /* a line on stderr once a second */
    uint32_t ttr_s;    /* visibility timeout asked for reserved jobs */
    char queue_prefix[32];
};

/* The fetch batch config asks for (fetch_batch, or batch when it is 0). */
uint32_t loadgen_fetch_batch(const struct loadgen_config *config);

void loadgen_config_defaults(struct loadgen_config *config);

struct loadgen_result {
    uint64_t jobs;       /* jobs completed in the measured window */
    double seconds;      /* the measured window */
    uint64_t produced;   /* puts confirmed, whole run */
    uint64_t consumed;   /* acks confirmed, whole run */
    uint64_t errors;     /* error replies, plus jobs put but never consumed (e2e) */
    double server_cpu_s; /* < 0 when not measured */
    struct histogram latency;
    struct histogram deliver;
    /* Open loop: how late the generator itself sent each job after its intended time. If this
     * is not small next to the latencies, the generator, not the server, set them. */
    struct histogram send_lag;
};

/* Run one benchmark. 0, or a negative errno when the run could not be carried out (connect
 * failed, the server broke the protocol, setup was refused); a message is on stderr. */
SPOOL_MUST_USE int loadgen_run(const struct loadgen_config *config, struct loadgen_result *result);

/* The RESULT line. */
void loadgen_print_result(FILE *out, const struct loadgen_config *config,
                          const struct loadgen_result *result);

const char *loadgen_mode_name(enum loadgen_mode mode);

#endif
