/* Crash safety against the real spoold: kill -9 it while puts and acks are in flight, restart
 * on the same data directory, and check the contract: every put whose reply said OK is present
 * (delivered now) or was acked; no job whose ack got OK is delivered again. Three rounds, then
 * a clean stop (checkpoint) and a last restart. */
#include <spool/client.h>

#include <unistd.h>

#include "check.h"
#include "spoold_harness.h"

/* Jobs per round: enough to keep several group commits in flight at the kill, small enough
 * for a few seconds per round on a 2-core machine. */
#define ROUND_PUTS 400
#define ROUNDS 3
#define IDS_MAX (ROUNDS * ROUND_PUTS * 2 + 64)

static struct spoold server;
static uint64_t acknowledged[IDS_MAX]; /* puts whose reply was OK */
static size_t acknowledged_count;
static uint64_t acked[IDS_MAX]; /* acks whose reply was OK */
static size_t acked_count;
/* Acks sent whose reply never came (the kill): each may or may not have become durable. */
static uint64_t ack_sent[IDS_MAX];
static size_t ack_sent_count;

static bool contains(const uint64_t *set, size_t count, uint64_t id)
{
    for (size_t i = 0; i < count; i++)
        if (set[i] == id)
            return true;
    return false;
}

static spool_client *client(void)
{
    spool_client *c = NULL;
    REQUIRE(spool_connect(server.addr, 5000, &c) == 0);
    return c;
}

/* Drain pipelined replies until the connection dies or nothing is outstanding. */
static void collect_replies(spool_client *c)
{
    struct spool_reply r;
    while (spool_pipeline_pending(c) > 0 && spool_pipeline_recv(c, &r) == 0) {
        if (r.error != 0)
            continue;
        if (r.opcode == 0x0010 && acknowledged_count < IDS_MAX)
            acknowledged[acknowledged_count++] = r.id;
        if (r.opcode == 0x0013 && acked_count < IDS_MAX)
            acked[acked_count++] = r.id;
    }
}

static void pipeline_puts(spool_client *c, int count, int round)
{
    char body[64];
    for (int i = 0; i < count; i++) {
        snprintf(body, sizeof(body), "round %d job %d", round, i);
        struct spool_job_spec spec = {.queue = "crash", .body = body, .body_len = strlen(body)};
        REQUIRE(spool_pipeline_put(c, &spec, NULL) == 0);
    }
    REQUIRE(spool_pipeline_flush(c) == 0);
}

/* Reserve and ack some of what is there, blocking; the acks whose reply is OK are recorded. */
static void ack_some(spool_client *w, size_t count)
{
    const char *queues[1] = {"crash"};
    struct spool_delivery *d = NULL;
    size_t got = 0;
    REQUIRE(spool_reserve(w, queues, 1, (uint32_t)count, 0, 0, &d, &got) == 0);
    for (size_t i = 0; i < got; i++)
        if (spool_ack(w, d[i].id, d[i].lease, NULL, 0) == 0 && acked_count < IDS_MAX)
            acked[acked_count++] = d[i].id;
    spool_deliveries_free(d);
}

static void load_then_kill(int round)
{
    spool_client *p = client();
    spool_client *w = client();
    pipeline_puts(p, ROUND_PUTS / 2, round);
    /* Half the replies, then acks, then more puts and pipelined acks in flight at the kill. */
    struct spool_reply r;
    for (int i = 0; i < ROUND_PUTS / 4 && spool_pipeline_recv(p, &r) == 0; i++)
        if (r.error == 0 && acknowledged_count < IDS_MAX)
            acknowledged[acknowledged_count++] = r.id;
    ack_some(w, 40);
    const char *queues[1] = {"crash"};
    struct spool_delivery *d = NULL;
    size_t got = 0;
    REQUIRE(spool_reserve(w, queues, 1, 20, 0, 0, &d, &got) == 0);
    for (size_t i = 0; i < got; i++) {
        REQUIRE(spool_pipeline_ack(w, d[i].id, d[i].lease, NULL, 0, NULL) == 0);
        if (ack_sent_count < IDS_MAX)
            ack_sent[ack_sent_count++] = d[i].id;
    }
    spool_deliveries_free(d);
    REQUIRE(spool_pipeline_flush(w) == 0);
    pipeline_puts(p, ROUND_PUTS / 2, round);
    usleep(2000); /* let the server be mid-commit */
    spoold_kill(&server);
    collect_replies(p);
    collect_replies(w);
    spool_close(p);
    spool_close(w);
}

/* After a restart: everything acknowledged and not acked is delivered, nothing acked is. */
static void verify_and_drain(void)
{
    spool_client *c = client();
    const char *queues[1] = {"crash"};
    size_t delivered_count = 0;
    for (;;) {
        struct spool_delivery *d = NULL;
        size_t got = 0;
        REQUIRE(spool_reserve(c, queues, 1, 512, 0, 0, &d, &got) == 0);
        if (got == 0)
            break;
        for (size_t i = 0; i < got; i++) {
            CHECK(!contains(acked, acked_count, d[i].id)); /* an acked job came back */
            delivered_count++;
            if (spool_ack(c, d[i].id, d[i].lease, NULL, 0) == 0 && acked_count < IDS_MAX)
                acked[acked_count++] = d[i].id;
        }
        spool_deliveries_free(d);
    }
    /* A put acknowledged OK is delivered now, or its ack was sent (an ack in flight at the
     * kill may have become durable without its reply getting out). */
    size_t lost = 0;
    for (size_t i = 0; i < acknowledged_count; i++)
        if (!contains(acked, acked_count, acknowledged[i]) &&
            !contains(ack_sent, ack_sent_count, acknowledged[i]))
            lost++;
    CHECK_EQ(lost, 0);
    fprintf(stderr, "delivered after restart %zu\n", delivered_count);
    spool_close(c);
}

static void test_kill9_under_load(void)
{
    for (int round = 0; round < ROUNDS; round++) {
        load_then_kill(round);
        REQUIRE(spoold_restart(&server, NULL) == 0);
        verify_and_drain();
    }
    CHECK(acknowledged_count >= ROUNDS * ROUND_PUTS / 4);
    fprintf(stderr, "acknowledged puts %zu, acked %zu\n", acknowledged_count, acked_count);
}

static void test_clean_stop_checkpoints_and_restarts(void)
{
    spool_client *c = client();
    struct spool_job_spec spec = {.queue = "kept", .body = "survives", .body_len = 8,
                                  .priority = 3};
    uint64_t id = 0;
    REQUIRE(spool_put(c, &spec, &id) == 0);
    /* An acked job's result outlives a clean restart (the checkpoint remembers it). */
    struct spool_job_spec done_spec = {.queue = "finished", .body = "f", .body_len = 1};
    uint64_t done = 0;
    REQUIRE(spool_put(c, &done_spec, &done) == 0);
    const char *fq[1] = {"finished"};
    struct spool_delivery *fd = NULL;
    size_t fgot = 0;
    REQUIRE(spool_reserve(c, fq, 1, 1, 0, 0, &fd, &fgot) == 0);
    REQUIRE(fgot == 1);
    REQUIRE(spool_ack(c, fd->id, fd->lease, "the answer", 10) == 0);
    spool_deliveries_free(fd);
    spool_close(c);
    REQUIRE(spoold_stop(&server) == 0);
    CHECK(spoold_log_contains(&server, "msg=checkpoint"));
    REQUIRE(spoold_restart(&server, NULL) == 0);
    c = client();
    struct spool_job *job = NULL;
    REQUIRE(spool_status(c, done, &job) == 0);
    CHECK_EQ(job->state, SPOOL_STATE_DONE);
    CHECK(job->result_len == 10 && memcmp(job->result, "the answer", 10) == 0);
    CHECK(strcmp(job->queue, "finished") == 0);
    spool_job_free(job);
    const char *queues[1] = {"kept"};
    struct spool_delivery *d = NULL;
    size_t got = 0;
    REQUIRE(spool_reserve(c, queues, 1, 1, 0, 0, &d, &got) == 0);
    REQUIRE(got == 1);
    CHECK_EQ(d->id, id);
    CHECK_EQ(d->priority, 3);
    CHECK(d->body_len == 8 && memcmp(d->body, "survives", 8) == 0);
    spool_deliveries_free(d);
    /* New ids never reuse old ones. */
    uint64_t next = 0;
    REQUIRE(spool_put(c, &spec, &next) == 0);
    CHECK(next > id);
    spool_close(c);
}

/* A checkpoint that leaves more bodies on disk than the log reads at once (64): restart
 * reads them all back in a bounded window (it used to fail with EBUSY) and in order. */
#define MANY_BODIES 300
static void test_restart_reads_back_many_bodies(void)
{
    spool_client *c = client();
    char body[32];
    for (int i = 0; i < MANY_BODIES; i++) {
        int len = snprintf(body, sizeof(body), "many-%d", i);
        struct spool_job_spec spec = {.queue = "many", .body = body, .body_len = (size_t)len};
        uint64_t id = 0;
        REQUIRE(spool_put(c, &spec, &id) == 0);
    }
    spool_close(c);
    REQUIRE(spoold_stop(&server) == 0);
    REQUIRE(spoold_restart(&server, NULL) == 0);
    c = client();
    const char *queues[1] = {"many"};
    int seen = 0;
    while (seen < MANY_BODIES) {
        struct spool_delivery *d = NULL;
        size_t got = 0;
        REQUIRE(spool_reserve(c, queues, 1, 50, 0, 0, &d, &got) == 0);
        REQUIRE(got > 0);
        for (size_t i = 0; i < got; i++, seen++) {
            int len = snprintf(body, sizeof(body), "many-%d", seen);
            CHECK(d[i].body_len == (size_t)len && memcmp(d[i].body, body, (size_t)len) == 0);
            CHECK_EQ(spool_ack(c, d[i].id, d[i].lease, NULL, 0), 0);
        }
        spool_deliveries_free(d);
    }
    CHECK_EQ(seen, MANY_BODIES);
    spool_close(c);
}

/* Queue settings (pause, defaults) survive a crash (replayed from QUEUE_META records) and a
 * clean stop (carried by the checkpoint). */
static void check_settings_kept(void)
{
    spool_client *c = client();
    struct spool_stats *st = NULL;
    REQUIRE(spool_stats(c, "settings", &st) == 0);
    REQUIRE(st->queue_count == 1);
    CHECK(st->queues[0].paused);
    CHECK_EQ(st->queues[0].ttr_ms, 1234);
    CHECK_EQ(st->queues[0].max_attempts, 3);
    CHECK_EQ(st->queues[0].ready, 1);
    spool_stats_free(st);
    const char *queues[1] = {"settings"};
    struct spool_delivery *d = NULL;
    size_t got = 0;
    REQUIRE(spool_reserve(c, queues, 1, 1, 0, 0, &d, &got) == 0);
    CHECK_EQ(got, 0); /* still paused */
    spool_close(c);
}

static void test_queue_settings_survive(void)
{
    spool_client *c = client();
    REQUIRE(spool_queue_set_defaults(c, "settings", 1234, 3) == 0);
    struct spool_job_spec spec = {.queue = "settings", .body = "s", .body_len = 1};
    uint64_t id = 0;
    REQUIRE(spool_put(c, &spec, &id) == 0);
    REQUIRE(spool_pause(c, "settings") == 0);
    spool_close(c);
    spoold_kill(&server);
    REQUIRE(spoold_restart(&server, NULL) == 0);
    check_settings_kept();
    REQUIRE(spoold_stop(&server) == 0);
    REQUIRE(spoold_restart(&server, NULL) == 0);
    check_settings_kept();
}

/* A delay is an absolute time in the log: after kill -9 and a restart the job is still
 * delayed, and becomes ready when it was due, not a full delay later. */
static void test_delay_survives_crash(void)
{
    spool_client *c = client();
    struct spool_job_spec spec = {.queue = "later", .body = "l", .body_len = 1,
                                  .delay_ms = 1500};
    uint64_t id = 0;
    REQUIRE(spool_put(c, &spec, &id) == 0);
    spool_close(c);
    spoold_kill(&server);
    REQUIRE(spoold_restart(&server, NULL) == 0);
    c = client();
    struct spool_job *job = NULL;
    REQUIRE(spool_status(c, id, &job) == 0);
    CHECK_EQ(job->state, SPOOL_STATE_DELAYED);
    uint64_t due = job->ready_at_ms;
    spool_job_free(job);
    const char *queues[1] = {"later"};
    struct spool_delivery *d = NULL;
    size_t got = 0;
    REQUIRE(spool_reserve(c, queues, 1, 1, 5000, 0, &d, &got) == 0);
    REQUIRE(got == 1);
    CHECK_EQ(d->id, id);
    CHECK(d->deadline_ms >= due); /* delivered at or after the original due time */
    spool_deliveries_free(d);
    spool_close(c);
}

/* The finished time of one job, as spoold reports it now. */
static uint64_t finished_ms_of(spool_client *c, uint64_t id, int state)
{
    struct spool_job *job = NULL;
    REQUIRE(spool_status(c, id, &job) == 0);
    CHECK_EQ(job->state, state);
    uint64_t finished = job->finished_ms;
    spool_job_free(job);
    CHECK(finished > 0);
    return finished;
}

/* A done and a dead job keep their finished time across kill -9: it is the moment they
 * settled (logged in the ACK and the BURY), not the moment the restart replayed them. */
static void test_finished_time_survives_crash(void)
{
    spool_client *c = client();
    struct spool_job_spec spec = {.queue = "settle", .body = "s", .body_len = 1};
    uint64_t ids[2] = {0, 0};
    REQUIRE(spool_put(c, &spec, &ids[0]) == 0);
    REQUIRE(spool_put(c, &spec, &ids[1]) == 0);
    const char *queues[1] = {"settle"};
    struct spool_delivery *d = NULL;
    size_t got = 0;
    REQUIRE(spool_reserve(c, queues, 1, 2, 5000, 0, &d, &got) == 0);
    REQUIRE(got == 2);
    REQUIRE(spool_ack(c, d[0].id, d[0].lease, "r", 1) == 0);
    REQUIRE(spool_bury(c, d[1].id, d[1].lease, "no") == 0);
    uint64_t done_id = d[0].id, dead_id = d[1].id;
    spool_deliveries_free(d);
    uint64_t done_ms = finished_ms_of(c, done_id, SPOOL_STATE_DONE);
    uint64_t dead_ms = finished_ms_of(c, dead_id, SPOOL_STATE_DEAD);
    spool_close(c);
    usleep(100 * 1000); /* so that a restart's clock cannot equal the settle times */
    spoold_kill(&server);
    REQUIRE(spoold_restart(&server, NULL) == 0);
    c = client();
    CHECK_EQ(finished_ms_of(c, done_id, SPOOL_STATE_DONE), done_ms);
    CHECK_EQ(finished_ms_of(c, dead_id, SPOOL_STATE_DEAD), dead_ms);
    spool_close(c);
}

int main(void)
{
    if (spoold_start(&server, "restart", NULL) != 0)
        return 1;
    RUN_TEST(test_kill9_under_load);
    RUN_TEST(test_clean_stop_checkpoints_and_restarts);
    RUN_TEST(test_restart_reads_back_many_bodies);
    RUN_TEST(test_queue_settings_survive);
    RUN_TEST(test_delay_survives_crash);
    RUN_TEST(test_finished_time_survives_crash);
    CHECK_EQ(spoold_stop(&server), 0);
    spoold_cleanup(&server);
    return check_exit();
}
