/*
 * Churn for the retention and compaction tests: put jobs with incompressible bodies (so lz4
 * does not shrink the log) into one queue, pipelined round jobs at a time, reserving and acking
 * each round, so that the log fills with segments whose jobs are all settled. And a drain:
 * reserve and ack every job a queue holds.
 */
#ifndef SPOOL_TEST_CHURN_H
#define SPOOL_TEST_CHURN_H

#include <spool/client.h>

#include <stdint.h>
#include <stdlib.h>

#include "check.h"

/* Bytes of xorshift32 from *x. */
static inline void churn_fill_random(char *body, size_t len, uint32_t *x)
{
    for (size_t k = 0; k < len; k++) {
        *x ^= *x << 13;
        *x ^= *x >> 17;
        *x ^= *x << 5;
        body[k] = (char)*x;
    }
}

static inline void churn_put_and_ack(spool_client *c, const char *queue, uint32_t jobs,
                                     uint32_t round, size_t body_len, uint32_t seed)
{
    char *body = malloc(body_len);
    struct spool_ack_item *items = calloc(round, sizeof(*items));
    REQUIRE(body != NULL && items != NULL);
    uint32_t x = seed;
    const char *queues[1] = {queue};
    for (uint32_t done = 0; done < jobs; done += round) {
        for (uint32_t i = 0; i < round; i++) {
            churn_fill_random(body, body_len, &x);
            struct spool_job_spec spec = {.queue = queue, .body = body, .body_len = body_len};
            REQUIRE(spool_pipeline_put(c, &spec, NULL) == 0);
        }
        struct spool_reply r;
        while (spool_pipeline_pending(c) > 0) {
            REQUIRE(spool_pipeline_recv(c, &r) == 0);
            REQUIRE(r.error == 0);
        }
        struct spool_delivery *d = NULL;
        size_t got = 0;
        REQUIRE(spool_reserve(c, queues, 1, round, 0, 0, &d, &got) == 0);
        REQUIRE(got > 0);
        for (size_t i = 0; i < got; i++)
            items[i] = (struct spool_ack_item){.id = d[i].id, .lease = d[i].lease};
        REQUIRE(spool_ack_batch(c, items, got, NULL) == 0);
        spool_deliveries_free(d);
    }
    free(items);
    free(body);
}

/* Reserve and ack every ready job of queue, 256 at a time, until a reserve finds none; the
 * number of jobs acked. */
static inline size_t churn_drain(spool_client *c, const char *queue)
{
    const char *queues[1] = {queue};
    size_t drained = 0;
    for (;;) {
        struct spool_delivery *d = NULL;
        size_t got = 0;
        REQUIRE(spool_reserve(c, queues, 1, 256, 0, 0, &d, &got) == 0);
        if (got == 0)
            return drained;
        drained += got;
        struct spool_ack_item items[256];
        for (size_t k = 0; k < got; k++)
            items[k] = (struct spool_ack_item){.id = d[k].id, .lease = d[k].lease};
        REQUIRE(spool_ack_batch(c, items, got, NULL) == 0);
        spool_deliveries_free(d);
    }
}

#endif
