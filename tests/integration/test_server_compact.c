/* Compaction against the real spoold (src/compact.h): with 1 MiB segments, one buried and one
 * delayed job sit in the first segment while thousands of 8 KiB jobs are put and acked behind
 * them. Compaction copies the two forward and the checkpoint it asks for drops the old
 * segments: segment 1 is gone while the server runs, and the two jobs keep their state,
 * attempts, reason, priority, run-at and body, also after a clean restart and after kill -9
 * (some of them in the middle of another round of churn and compaction). A job acked after its
 * copy stays acked across kill -9. spool-log why-retained explains every segment left. */
#include <spool/client.h>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "churn.h"
#include "spoold_harness.h"

static struct spoold server;
/* A body cache of one byte: every peek and delivery reads its body back from the log, so the
 * checks below read the copies (RELOCATE records), not bodies kept in RAM since the put. */
static const char *const args[] = {"--segment-size",
                                   "1m",
                                   "--max-job-size",
                                   "64k",
                                   "--checkpoint-bytes",
                                   "256k",
                                   "--body-cache",
                                   "1",
                                   NULL};

#define BODY_BYTES 8192
/* 3.5 segments of 1 MiB in put + ack pairs of ~8 KiB. */
#define JOBS 460
#define ROUND 50
/* Compaction surveys once a second, then a checkpoint drops the segment: 20 s is plenty on a
 * loaded CI machine. */
#define WAIT_MS 20000
/* kill -9 rounds during churn and compaction, each at another point of the cycle. */
#define CRASH_ROUNDS 4

static uint64_t buried_id;
static uint64_t delayed_id;
static uint64_t delayed_ready_at_ms;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static spool_client *client(void)
{
    spool_client *c = NULL;
    REQUIRE(spool_connect(server.addr, 5000, &c) == 0);
    return c;
}



static bool first_segment_exists(void)
{
    char first[700];
    snprintf(first, sizeof(first), "%s/%020d.seg", server.data, 1);
    return access(first, F_OK) == 0;
}

static bool wait_first_segment_gone(void)
{
    int64_t deadline = now_ms() + WAIT_MS;
    while (first_segment_exists() && now_ms() < deadline)
        usleep(20 * 1000);
    return !first_segment_exists();
}

/* The two pinned jobs, as they were put and buried, with their bodies. */
static void check_pinned(void)
{
    spool_client *c = client();
    struct spool_job *job = NULL;
    REQUIRE(spool_peek(c, buried_id, &job) == 0);
    CHECK_EQ(job->state, SPOOL_STATE_DEAD);
    CHECK(strcmp(job->queue, "stuck") == 0);
    CHECK(strcmp(job->reason, "poison pill") == 0);
    CHECK_EQ(job->attempts, 1);
    CHECK_EQ(job->priority, 7);
    CHECK(job->body_len == 11 && memcmp(job->body, "buried body", 11) == 0);
    spool_job_free(job);
    job = NULL;
    REQUIRE(spool_peek(c, delayed_id, &job) == 0);
    CHECK_EQ(job->state, SPOOL_STATE_DELAYED);
    CHECK(strcmp(job->queue, "later") == 0);
    CHECK_EQ(job->priority, 3);
    CHECK_EQ(job->ready_at_ms, delayed_ready_at_ms);
    CHECK(job->body_len == 12 && memcmp(job->body, "delayed body", 12) == 0);
    spool_job_free(job);
    spool_close(c);
}

static void put_pinned(void)
{
    spool_client *c = client();
    struct spool_job_spec stuck = {
        .queue = "stuck", .priority = 7, .body = "buried body", .body_len = 11};
    REQUIRE(spool_put(c, &stuck, &buried_id) == 0);
    const char *queues[1] = {"stuck"};
    struct spool_delivery *d = NULL;
    size_t got = 0;
    REQUIRE(spool_reserve(c, queues, 1, 1, 0, 0, &d, &got) == 0);
    REQUIRE(got == 1 && d->id == buried_id);
    REQUIRE(spool_bury(c, d->id, d->lease, "poison pill") == 0);
    spool_deliveries_free(d);
    struct spool_job_spec later = {.queue = "later",
                                   .priority = 3,
                                   .delay_ms = 3600 * 1000,
                                   .body = "delayed body",
                                   .body_len = 12};
    REQUIRE(spool_put(c, &later, &delayed_id) == 0);
    struct spool_job *job = NULL;
    REQUIRE(spool_status(c, delayed_id, &job) == 0);
    delayed_ready_at_ms = job->ready_at_ms;
    CHECK(delayed_ready_at_ms > 0);
    spool_job_free(job);
    spool_close(c);
}

/* spool-log COMMAND DIR [ARG...] on the live directory; its stdout in out. */
static int run_tool(char *out, size_t out_len, const char *command, const char *arg1,
                    const char *arg2)
{
    const char *bin = getenv("SPOOL_LOG");
    REQUIRE(bin != NULL);
    char path[700];
    snprintf(path, sizeof(path), "%s/why.txt", server.dir);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0)
            dup2(fd, STDOUT_FILENO);
        execl(bin, bin, command, server.data, arg1, arg2, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    FILE *f = fopen(path, "r");
    REQUIRE(f != NULL);
    size_t n = fread(out, 1, out_len - 1, f);
    out[n] = 0;
    fclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_pinned_segment_compacted(void)
{
    put_pinned();
    spool_client *c = client();
    churn_put_and_ack(c, "churn", JOBS, ROUND, BODY_BYTES, 2463534242u);
    spool_close(c);
    CHECK(wait_first_segment_gone());
    CHECK(spoold_log_contains(&server, "msg=compaction"));
    CHECK(spoold_count_files(&server, ".seg") <= 3);
    check_pinned();
    /* Offline: every segment kept is explained, and none holds the two jobs' old copies. */
    static char why[64 * 1024];
    CHECK_EQ(run_tool(why, sizeof(why), "why-retained", NULL, NULL), 0);
    CHECK(strstr(why, "segment=1 ") == NULL);
    CHECK(strstr(why, "queues=") != NULL);
    CHECK(strstr(why, "state=dead") != NULL && strstr(why, "state=delayed") != NULL);
    /* dump shows the copies (the dead one with its reason); verify reads every live body. */
    CHECK_EQ(run_tool(why, sizeof(why), "dump", "--type", "relocate"), 0);
    CHECK(strstr(why, "\"type\":\"RELOCATE\"") != NULL);
    CHECK(strstr(why, "\"state\":\"dead\",\"attempts\":1") != NULL);
    CHECK(strstr(why, "\"reason\":\"poison pill\"") != NULL);
    CHECK(strstr(why, "\"state\":\"delayed\"") != NULL);
    int rc = run_tool(why, sizeof(why), "verify", NULL, NULL);
    CHECK(rc == 0 || rc == 1); /* a live directory's growing tail may read as torn */
    CHECK(strstr(why, "jobs_live=2 ") != NULL);
}

static void test_clean_restart(void)
{
    REQUIRE(spoold_stop(&server) == 0);
    REQUIRE(spoold_restart(&server, args) == 0);
    check_pinned();
}

/* kill -9 at a different moment of churn and compaction each round: the pinned jobs survive
 * every one, with their bodies, wherever their latest copy is. */
static void test_kill9_during_compaction(void)
{
    for (int round = 0; round < CRASH_ROUNDS; round++) {
        spool_client *c = client();
        churn_put_and_ack(c, "churn", JOBS, ROUND, BODY_BYTES, 88172645u + (uint32_t)round);
        spool_close(c);
        usleep((useconds_t)(round * 400 * 1000)); /* 0, 0.4, 0.8, 1.2 s into the cycle */
        spoold_kill(&server);
        REQUIRE(spoold_restart(&server, args) == 0);
        check_pinned();
    }
}

/* After compaction has moved it, an ack of the job is final: kill -9 does not bring it back. */
static void test_ack_after_copy_stays_acked(void)
{
    spool_client *c = client();
    churn_put_and_ack(c, "churn", JOBS, ROUND, BODY_BYTES, 1234567u);
    int64_t deadline = now_ms() + WAIT_MS;
    /* Wait for the copy: the segment the buried job was last in fills no longer, so it is
     * compacted; a compaction line newer than the restart says it ran. */
    while (now_ms() < deadline && !spoold_log_contains(&server, "msg=compaction"))
        usleep(20 * 1000);
    CHECK(spoold_log_contains(&server, "msg=compaction"));
    uint64_t kicked = 0;
    REQUIRE(spool_kick(c, "stuck", 1, &kicked) == 0);
    CHECK_EQ(kicked, 1);
    const char *queues[1] = {"stuck"};
    struct spool_delivery *d = NULL;
    size_t got = 0;
    REQUIRE(spool_reserve(c, queues, 1, 1, 1000, 0, &d, &got) == 0);
    REQUIRE(got == 1 && d->id == buried_id);
    CHECK(d->body_len == 11 && memcmp(d->body, "buried body", 11) == 0);
    CHECK_EQ(spool_ack(c, d->id, d->lease, NULL, 0), 0);
    spool_deliveries_free(d);
    spool_close(c);
    spoold_kill(&server);
    REQUIRE(spoold_restart(&server, args) == 0);
    c = client();
    struct spool_job *job = NULL;
    int rc = spool_status(c, buried_id, &job);
    CHECK(rc == SPOOL_E_NOT_FOUND || (rc == 0 && job->state == SPOOL_STATE_DONE));
    spool_job_free(job);
    struct spool_stats *st = NULL;
    REQUIRE(spool_stats(c, "stuck", &st) == 0);
    CHECK_EQ(st->queues[0].ready + st->queues[0].reserved + st->queues[0].dead, 0);
    spool_stats_free(st);
    job = NULL;
    REQUIRE(spool_peek(c, delayed_id, &job) == 0);
    CHECK(job->body_len == 12 && memcmp(job->body, "delayed body", 12) == 0);
    spool_job_free(job);
    spool_close(c);
}

int main(void)
{
    if (spoold_start(&server, "compact", args) != 0)
        return 1;
    RUN_TEST(test_pinned_segment_compacted);
    RUN_TEST(test_clean_restart);
    RUN_TEST(test_kill9_during_compaction);
    RUN_TEST(test_ack_after_copy_stays_acked);
    CHECK_EQ(spoold_stop(&server), 0);
    spoold_cleanup(&server);
    return check_exit();
}
