/* Retention against the real spoold: with 1 MiB segments, put one job that stays unacked, then
 * put and ack more than three segments' worth; after a checkpoint (the one a clean stop
 * writes), the fully settled segments are gone while the unacked job's segment stays, and
 * the job comes back after a restart with its body read from that segment. */
#include <spool/client.h>

#include <unistd.h>

#include "check.h"
#include "spoold_harness.h"

static struct spoold server;
static const char *const args[] = {"--segment-size", "1m", "--max-job-size", "64k", NULL};

#define BODY_BYTES 8192
/* 3.5 segments of 1 MiB in put + ack pairs of ~8 KiB. */
#define JOBS 460
#define ROUND 50

static spool_client *client(void)
{
    spool_client *c = NULL;
    REQUIRE(spool_connect(server.addr, 5000, &c) == 0);
    return c;
}

static void put_and_ack_many(spool_client *c)
{
    static char body[BODY_BYTES];
    uint32_t x = 2463534242u;
    const char *queues[1] = {"churn"};
    for (int done = 0; done < JOBS; done += ROUND) {
        for (int i = 0; i < ROUND; i++) {
            /* Incompressible bodies, so lz4 does not shrink the log below three segments. */
            for (size_t k = 0; k < sizeof(body); k++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                body[k] = (char)x;
            }
            struct spool_job_spec spec = {.queue = "churn", .body = body,
                                          .body_len = sizeof(body)};
            REQUIRE(spool_pipeline_put(c, &spec, NULL) == 0);
        }
        struct spool_reply r;
        while (spool_pipeline_pending(c) > 0) {
            REQUIRE(spool_pipeline_recv(c, &r) == 0);
            REQUIRE(r.error == 0);
        }
        struct spool_delivery *d = NULL;
        size_t got = 0;
        REQUIRE(spool_reserve(c, queues, 1, ROUND, 0, 0, &d, &got) == 0);
        REQUIRE(got > 0);
        struct spool_ack_item items[ROUND];
        for (size_t i = 0; i < got; i++)
            items[i] = (struct spool_ack_item){.id = d[i].id, .lease = d[i].lease};
        REQUIRE(spool_ack_batch(c, items, got, NULL) == 0);
        spool_deliveries_free(d);
    }
}

static void test_settled_segments_deleted_pinned_segment_kept(void)
{
    spool_client *c = client();
    struct spool_job_spec keep = {.queue = "pinned", .body = "still here", .body_len = 10};
    uint64_t kept = 0;
    REQUIRE(spool_put(c, &keep, &kept) == 0);
    put_and_ack_many(c);
    spool_close(c);
    int before = spoold_count_files(&server, ".seg");
    CHECK(before >= 4);
    REQUIRE(spoold_stop(&server) == 0);
    int after = spoold_count_files(&server, ".seg");
    fprintf(stderr, "segments before checkpoint %d, after %d\n", before, after);
    CHECK_EQ(after, 2); /* the pinned first segment and the current one */
    char first[700];
    snprintf(first, sizeof(first), "%s/%020d.seg", server.data, 1);
    CHECK(access(first, F_OK) == 0);
    REQUIRE(spoold_restart(&server, args) == 0);
    c = client();
    const char *queues[1] = {"pinned"};
    struct spool_delivery *d = NULL;
    size_t got = 0;
    REQUIRE(spool_reserve(c, queues, 1, 1, 0, 0, &d, &got) == 0);
    REQUIRE(got == 1);
    CHECK_EQ(d->id, kept);
    CHECK(d->body_len == 10 && memcmp(d->body, "still here", 10) == 0);
    CHECK_EQ(spool_ack(c, d->id, d->lease, NULL, 0), 0);
    spool_deliveries_free(d);
    struct spool_stats *st = NULL;
    REQUIRE(spool_stats(c, "churn", &st) == 0);
    CHECK_EQ(st->queues[0].ready + st->queues[0].reserved + st->queues[0].dead, 0);
    spool_stats_free(st);
    spool_close(c);
}

int main(void)
{
    if (spoold_start(&server, "retention", args) != 0)
        return 1;
    RUN_TEST(test_settled_segments_deleted_pinned_segment_kept);
    CHECK_EQ(spoold_stop(&server), 0);
    spoold_cleanup(&server);
    return check_exit();
}
