/* Retention against the real spoold: with 1 MiB segments, put one job that stays unacked, then
 * put and ack more than three segments' worth; after a checkpoint (the one a clean stop
 * writes), the fully settled segments are gone while the unacked job's segment stays, and
 * the job comes back after a restart with its body read from that segment. */
#include <spool/client.h>

#include <unistd.h>

#include "check.h"
#include "churn.h"
#include "spoold_harness.h"

static struct spoold server;
static const char *const args[] = {"--segment-size", "1m", "--max-job-size", "64k",
                                   "--max-queue-jobs", "100", NULL};

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


static void test_settled_segments_deleted_pinned_segment_kept(void)
{
    spool_client *c = client();
    struct spool_job_spec keep = {.queue = "pinned", .body = "still here", .body_len = 10};
    uint64_t kept = 0;
    REQUIRE(spool_put(c, &keep, &kept) == 0);
    churn_put_and_ack(c, "churn", JOBS, ROUND, BODY_BYTES, 2463534242u);
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


/* A 1 MiB segment makes a 256 KiB commit batch: 40 pipelined puts of 60 KiB fill it many times
 * over, so the server must stall reading and resume after each commit, answering every put. */
static void test_back_pressure_burst_all_answered(void)
{
    spool_client *c = client();
    static char bodies[40][60 * 1024];
    uint32_t x = 88172645u;
    for (int i = 0; i < 40; i++) {
        churn_fill_random(bodies[i], sizeof(bodies[i]), &x);
        struct spool_job_spec spec = {.queue = "burst", .body = bodies[i],
                                      .body_len = sizeof(bodies[i])};
        REQUIRE(spool_pipeline_put(c, &spec, NULL) == 0);
    }
    int ok = 0;
    struct spool_reply r;
    while (spool_pipeline_pending(c) > 0 && spool_pipeline_recv(c, &r) == 0)
        ok += r.error == 0;
    CHECK_EQ(ok, 40);
    const char *queues[1] = {"burst"};
    for (int i = 0; i < 40; i++) {
        struct spool_delivery *d = NULL;
        size_t got = 0;
        REQUIRE(spool_reserve(c, queues, 1, 1, 0, 0, &d, &got) == 0);
        REQUIRE(got == 1);
        CHECK(d->body_len == sizeof(bodies[i]) && memcmp(d->body, bodies[i], d->body_len) == 0);
        CHECK_EQ(spool_ack(c, d->id, d->lease, NULL, 0), 0);
        spool_deliveries_free(d);
    }
    spool_close(c);
}

/* A batch that would pass the queue's job limit is refused whole; one that fits goes in. 101
 * jobs against a limit of 100 can never fit: TOO_LARGE (QUEUE_FULL would say retry later). */
static void test_batch_over_queue_limit_is_all_or_nothing(void)
{
    spool_client *c = client();
    static struct spool_job_spec jobs[101];
    for (int i = 0; i < 101; i++)
        jobs[i] = (struct spool_job_spec){.queue = "limited", .body = "x", .body_len = 1};
    CHECK_EQ(spool_put_batch(c, jobs, 101, NULL), SPOOL_E_TOO_LARGE);
    struct spool_stats *st = NULL;
    CHECK_EQ(spool_stats(c, "limited", &st), SPOOL_E_NOT_FOUND); /* nothing went in */
    CHECK_EQ(spool_put_batch(c, jobs, 100, NULL), 0);
    uint64_t id;
    CHECK_EQ(spool_put(c, &jobs[0], &id), SPOOL_E_QUEUE_FULL);
    REQUIRE(spool_stats(c, "limited", &st) == 0);
    CHECK_EQ(st->queues[0].ready, 100);
    spool_stats_free(st);
    uint64_t purged = 0;
    CHECK_EQ(spool_purge(c, "limited", &purged), 0);
    CHECK_EQ(purged, 100);
    spool_close(c);
}

/* While running: a checkpoint every 256 KiB of log deletes settled segments without a stop. */
static void test_periodic_checkpoint_while_running(void)
{
    struct spoold other = server;
    static const char *const auto_args[] = {"--segment-size", "1m", "--max-job-size", "64k",
                                            "--checkpoint-bytes", "256k", NULL};
    REQUIRE(spoold_start(&server, "retention-auto", auto_args) == 0);
    spool_client *c = client();
    churn_put_and_ack(c, "churn", JOBS, ROUND, BODY_BYTES, 2463534242u);
    spool_close(c);
    int segments = 0;
    for (int i = 0; i < 200; i++) { /* up to 2 s for the last checkpoint to land */
        segments = spoold_count_files(&server, ".seg");
        if (segments <= 2)
            break;
        usleep(10 * 1000);
    }
    CHECK(segments <= 2);
    CHECK(spoold_log_contains(&server, "msg=checkpoint"));
    CHECK_EQ(spoold_stop(&server), 0);
    spoold_cleanup(&server);
    server = other;
}

int main(void)
{
    if (spoold_start(&server, "retention", args) != 0)
        return 1;
    RUN_TEST(test_settled_segments_deleted_pinned_segment_kept);
    RUN_TEST(test_back_pressure_burst_all_answered);
    RUN_TEST(test_batch_over_queue_limit_is_all_or_nothing);
    RUN_TEST(test_periodic_checkpoint_while_running);
    CHECK_EQ(spoold_stop(&server), 0);
    spoold_cleanup(&server);
    return check_exit();
}
