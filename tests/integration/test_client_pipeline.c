/*
 * libspool's pipelined API against the real spoold: many puts sent before any reply is read,
 * replies matched by request id whatever their order; acks pipelined the same way, with one
 * stale lease among them answered on its own; blocking calls mixed with outstanding
 * pipelined requests; and put_batch / ack_batch round trips. Bounded: 2000 jobs.
 */
#include <spool/client.h>

#include "check.h"
#include "spoold_harness.h"

#define PIPELINE_JOBS 2000

static struct spoold server;

static spool_client *client(void)
{
    spool_client *c = NULL;
    int rc = spool_connect(server.addr, 5000, &c);
    if (rc != 0)
        fprintf(stderr, "connect %s: %s\n", server.addr, spool_error_name(rc));
    REQUIRE(rc == 0);
    return c;
}

static uint64_t request_ids[PIPELINE_JOBS];
static uint64_t job_ids[PIPELINE_JOBS];

/* Index of request id r in request_ids, or -1. */
static int request_index(uint64_t r)
{
    for (int i = 0; i < PIPELINE_JOBS; i++) {
        if (request_ids[i] == r)
            return i;
    }
    return -1;
}

static void test_pipelined_puts_and_acks(void)
{
    spool_client *c = client();
    char body[32];
    for (int i = 0; i < PIPELINE_JOBS; i++) {
        snprintf(body, sizeof body, "job-%d", i);
        struct spool_job_spec spec = {.queue = "pipe", .body = body, .body_len = strlen(body)};
        REQUIRE(spool_pipeline_put(c, &spec, &request_ids[i]) == 0);
    }
    CHECK_EQ(spool_pipeline_pending(c), PIPELINE_JOBS);
    REQUIRE(spool_pipeline_flush(c) == 0);
    int answered = 0;
    while (spool_pipeline_pending(c) > 0) {
        struct spool_reply r;
        REQUIRE(spool_pipeline_recv(c, &r) == 0);
        CHECK_EQ(r.error, 0);
        CHECK_EQ(r.opcode, 0x0010);
        int i = request_index(r.request_id);
        REQUIRE(i >= 0);
        CHECK_EQ(job_ids[i], 0); /* answered once */
        job_ids[i] = r.id;
        answered++;
    }
    CHECK_EQ(answered, PIPELINE_JOBS);
    /* Reserve them all (FIFO: same order as the puts) and ack pipelined. */
    const char *queues[1] = {"pipe"};
    int acked = 0, stale_seen = 0;
    for (int got_total = 0; got_total < PIPELINE_JOBS;) {
        struct spool_delivery *d = NULL;
        size_t n = 0;
        REQUIRE(spool_reserve(c, queues, 1, 500, 1000, 0, &d, &n) == 0);
        REQUIRE(n > 0);
        for (size_t k = 0; k < n; k++) {
            CHECK_EQ(d[k].id, job_ids[got_total + (int)k]);
            /* The very first ack presents a wrong lease: it must fail alone. */
            uint64_t lease = got_total + k == 0 ? d[k].lease + 1 : d[k].lease;
            REQUIRE(spool_pipeline_ack(c, d[k].id, lease, NULL, 0, NULL) == 0);
        }
        got_total += (int)n;
        spool_deliveries_free(d);
        /* A blocking call while acks are outstanding: their replies are kept for recv. */
        REQUIRE(spool_ping(c) == 0);
    }
    while (spool_pipeline_pending(c) > 0) {
        struct spool_reply r;
        REQUIRE(spool_pipeline_recv(c, &r) == 0);
        if (r.error == SPOOL_E_LEASE_EXPIRED)
            stale_seen++;
        else if (r.error == 0)
            acked++;
        else
            fprintf(stderr, "ack: %s\n", spool_error_name(r.error));
    }
    CHECK_EQ(stale_seen, 1);
    CHECK_EQ(acked, PIPELINE_JOBS - 1);
    struct spool_stats *s = NULL;
    REQUIRE(spool_stats(c, "pipe", &s) == 0);
    CHECK_EQ(s->queues[0].reserved, 1); /* the one with the stale ack, still leased */
    CHECK_EQ(s->queues[0].ready, 0);
    spool_stats_free(s);
    spool_close(c);
}

static void test_batches(void)
{
    spool_client *c = client();
    struct spool_job_spec jobs[3] = {
        {.queue = "batch", .body = "a", .body_len = 1},
        {.queue = "batch", .body = "b", .body_len = 1, .key = "batch-key"},
        {.queue = "batch", .body = "c", .body_len = 1, .key = "batch-key-2"},
    };
    struct spool_put_result res[3];
    REQUIRE(spool_put_batch(c, jobs, 3, res) == 0);
    CHECK(res[0].id != 0 && res[1].id != res[0].id && res[2].id != res[1].id);
    CHECK_EQ(res[1].duplicate, 0);
    struct spool_put_result again[3];
    REQUIRE(spool_put_batch(c, jobs, 3, again) == 0);
    CHECK_EQ(again[1].id, res[1].id); /* the key was seen: same job */
    CHECK_EQ(again[1].duplicate, 1);
    const char *queues[1] = {"batch"};
    struct spool_delivery *d = NULL;
    size_t n = 0;
    REQUIRE(spool_reserve(c, queues, 1, 10, 1000, 0, &d, &n) == 0);
    CHECK_EQ(n, 4); /* a, b, c and the second a (no key) */
    struct spool_ack_item items[4];
    for (size_t k = 0; k < n && k < 4; k++)
        items[k] = (struct spool_ack_item){d[k].id, d[k].lease, "r", 1};
    items[0].lease ^= 1;
    int codes[4] = {99, 99, 99, 99};
    CHECK_EQ(spool_ack_batch(c, items, n, codes), SPOOL_E_LEASE_EXPIRED);
    CHECK_EQ(codes[0], SPOOL_E_LEASE_EXPIRED);
    CHECK_EQ(codes[1], 0);
    CHECK_EQ(codes[3], 0);
    spool_deliveries_free(d);
    spool_close(c);
}

int main(void)
{
    if (spoold_start(&server, "client-pipeline", NULL) != 0)
        return 1;
    RUN_TEST(test_pipelined_puts_and_acks);
    RUN_TEST(test_batches);
    CHECK_EQ(spoold_stop(&server), 0);
    spoold_cleanup(&server);
    return check_exit();
}
