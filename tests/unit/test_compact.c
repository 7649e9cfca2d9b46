/* Compaction's pure parts: the threshold policy, the RELOCATE a job's state makes, the moves
 * that follow a durable copy, and what replay does with a copy (move a known job, rebuild one
 * whose PUT is gone, never bring back a job it knows to be gone). The compactor's loop over a
 * real log, with every I/O fault, runs in tests/fault/test_broker_faults.c. */
#include "check.h"
#include "compact.h"
#include "log_util.h"
#include "queue_fake.h"
#include "record.h"

#include <string.h>

static void test_policy(void)
{
    const uint64_t mib = 1024 * 1024;
    const uint32_t p = COMPACT_LIVE_PERCENT;
    CHECK(!compact_segment_wanted(0, mib, p)); /* empty: retention's, not compaction's */
    CHECK(compact_segment_wanted(1, mib, p));
    CHECK(compact_segment_wanted(mib / 4 - 1, mib, p));
    CHECK(!compact_segment_wanted(mib / 4, mib, p)); /* 25% exactly stays */
    CHECK(!compact_segment_wanted(mib, mib, p));
    /* No overflow at the largest segments the format allows (1 TiB). */
    CHECK(compact_segment_wanted(1ull << 37, 1ull << 40, p));
    CHECK(!compact_segment_wanted(1ull << 38, 1ull << 40, p));
    CHECK(!compact_segment_wanted(1, mib, 0)); /* --compact-percent 0: off */
    CHECK(compact_segment_wanted(mib / 2 - 1, mib, COMPACT_LIVE_PERCENT_MAX));
}

static uint64_t put_job(struct queue_state *qs, const char *queue, int64_t delay_ms,
                        const char *body, int64_t now)
{
    struct queue_put_args args = {.queue = queue,
                                  .queue_len = (uint32_t)strlen(queue),
                                  .priority = 5,
                                  .delay_ms = delay_ms,
                                  .max_attempts = -1,
                                  .body = body,
                                  .body_len = (uint32_t)strlen(body)};
    uint64_t id = 0, seq = 0;
    bool dup = false;
    REQUIRE(queue_put(qs, &args, at_ms(now), &id, &dup, &seq) == 0);
    queue_durable(qs, UINT64_MAX, at_ms(now));
    return id;
}

static struct job *reserve_one(struct queue_state *qs, const char *queue, int64_t now)
{
    struct queue_reserver r;
    memset(&r, 0, sizeof(r));
    r.queues[0] = queue_find(qs, queue, (uint32_t)strlen(queue));
    REQUIRE(r.queues[0] != NULL);
    r.queue_count = 1;
    r.count_max = 1;
    r.detach = true;
    struct job *jobs[1];
    REQUIRE(queue_reserve(qs, &r, at_ms(now), jobs) == 1);
    return jobs[0];
}

/* What the copy of each kind of job says: a reserved job is copied ready (its lease does not
 * survive a restart), a delayed one keeps its run-at, a dead one its reason and time. */
static void test_relocate_from_state(void)
{
    struct queue_state *qs = state_new();
    int64_t now = 1700000000000;
    uint64_t ready = put_job(qs, "a", 0, "r-body", now);
    uint64_t delayed = put_job(qs, "a", 60000, "d-body", now);
    uint64_t dead = put_job(qs, "b", 0, "x-body", now);
    struct job *job = reserve_one(qs, "b", now);
    REQUIRE(job->id == dead);
    REQUIRE(queue_bury(qs, dead, queue_job_x(job)->lease_token, "bad", 3, at_ms(now + 5), NULL) ==
            0);
    job = reserve_one(qs, "a", now);
    REQUIRE(job->id == ready); /* now reserved */
    uint8_t buf[512];
    uint64_t ids[3] = {ready, delayed, dead};
    uint8_t states[3] = {RECORD_STATE_READY, RECORD_STATE_DELAYED, RECORD_STATE_DEAD};
    for (int i = 0; i < 3; i++) {
        job = queue_job_find(qs, ids[i]);
        REQUIRE(job != NULL && queue_job_copyable(job));
        uint64_t before = fake_seq_next;
        struct log_pos pos;
        REQUIRE(queue_job_relocate(qs, job, "zz-bod", 6, buf, sizeof(buf), &pos) == 0);
        CHECK_EQ(pos.seq, before + 1);
        CHECK_EQ(queue_job_pos(job).seq < pos.seq, 1); /* not moved before it is durable */
        struct record rec;
        uint32_t len = (uint32_t)queue_job_relocate_size(job);
        REQUIRE(record_decode(RECORD_RELOCATE, buf, len, &rec) == 0);
        CHECK_EQ(rec.id, ids[i]);
        CHECK_EQ(rec.u.relocate.state, states[i]);
        CHECK_EQ(rec.u.relocate.put.priority, 5);
    }
    struct record rec;
    job = queue_job_find(qs, dead);
    REQUIRE(queue_job_relocate(qs, job, "x-body", 6, buf, sizeof(buf), &(struct log_pos){0}) == 0);
    REQUIRE(record_decode(RECORD_RELOCATE, buf, (uint32_t)queue_job_relocate_size(job), &rec) == 0);
    CHECK(rec.u.relocate.reason_len == 3 && memcmp(rec.u.relocate.reason, "bad", 3) == 0);
    CHECK_EQ(rec.u.relocate.settled_ms, now + 5);
    CHECK_EQ(rec.u.relocate.attempts, 1);
    job = queue_job_find(qs, delayed);
    REQUIRE(queue_job_relocate(qs, job, "d-body", 6, buf, sizeof(buf), &(struct log_pos){0}) == 0);
    REQUIRE(record_decode(RECORD_RELOCATE, buf, (uint32_t)queue_job_relocate_size(job), &rec) == 0);
    CHECK_EQ(rec.u.relocate.put.run_at_ms, now + 60000);
    queue_state_destroy(qs);
}

/* A durable copy moves the job and its segment count; a job acked, or moved already, stays. */
static void test_move_durable(void)
{
    struct queue_state *qs = state_new();
    int64_t now = 1700000000000;
    uint64_t a = put_job(qs, "q", 0, "aaaa", now);
    uint64_t b = put_job(qs, "q", 0, "bbbb", now);
    CHECK_EQ(queue_segment_live(qs, 1), 2);
    struct log_pos to = {.seq = 100, .segment_id = 90, .batch_offset = 8192};
    uint64_t old_seq = queue_job_pos(queue_job_find(qs, a)).seq;
    CHECK(!queue_job_move_durable(qs, a, old_seq + 7, to)); /* its body is elsewhere now */
    CHECK(queue_job_move_durable(qs, a, old_seq, to));
    CHECK_EQ(queue_job_pos(queue_job_find(qs, a)).segment_id, 90);
    CHECK_EQ(queue_segment_live(qs, 1), 1);
    CHECK_EQ(queue_segment_live(qs, 90), 1);
    CHECK(!queue_job_move_durable(qs, a, old_seq, to)); /* a second time: moved already */
    struct job *job = reserve_one(qs, "q", now);
    REQUIRE(job->id == a);
    REQUIRE(queue_ack(qs, a, queue_job_x(job)->lease_token, NULL, 0, at_ms(now), NULL) == 0);
    CHECK_EQ(queue_segment_live(qs, 90), 0);
    uint64_t b_seq = queue_job_pos(queue_job_find(qs, b)).seq;
    job = reserve_one(qs, "q", now);
    REQUIRE(job->id == b);
    REQUIRE(queue_ack(qs, b, queue_job_x(job)->lease_token, NULL, 0, at_ms(now), NULL) == 0);
    to.seq = 101;
    CHECK(!queue_job_move_durable(qs, b, b_seq, to)); /* acked after its copy: stays done */
    CHECK_EQ(queue_segment_live(qs, 90), 0);
    queue_state_destroy(qs);
}

static void walk_count(void *ctx, struct job *job)
{
    (void)job;
    (*(uint32_t *)ctx)++;
}

/* The stepped walk sees every job once when nothing changes, a few pages at a time. */
static void test_jobs_step(void)
{
    struct queue_state *qs = state_new();
    for (int i = 0; i < 1000; i++)
        (void)put_job(qs, "q", 0, "x", 1700000000000);
    size_t cursor = 0;
    uint32_t seen = 0, steps = 0;
    while (!queue_jobs_step(qs, &cursor, 2, walk_count, &seen))
        steps++;
    CHECK_EQ(seen, 1000);
    CHECK(steps >= 1000 / (2 * 32) - 1); /* two pages of 32 jobs a step */
    queue_state_destroy(qs);
}

static struct log_record replay_rec(uint8_t type, const uint8_t *data, size_t len, uint64_t seq,
                                    uint64_t segment_id)
{
    return (struct log_record){.pos = {.seq = seq, .segment_id = segment_id, .batch_offset = 4096},
                               .type = type,
                               .len = (uint32_t)len,
                               .data = data};
}

static size_t relocate_bytes(uint64_t id, uint8_t state, const char *reason, uint8_t *out)
{
    struct record_relocate rel = {
        .put = {.id = id,
                .priority = 4,
                .max_attempts = 9,
                .ttr_ms = 1000,
                .created_ms = 1700000000000,
                .queue = "q",
                .queue_len = 1,
                .body = "copied",
                .body_len = 6},
        .state = state,
        .attempts = 2,
        .settled_ms = 1700000000500,
        .reason = reason,
        .reason_len = reason != NULL ? (uint32_t)strlen(reason) : 0,
    };
    return record_relocate_encode(&rel, out);
}

/* Replay: PUT then RELOCATE moves the job to the copy; a RELOCATE whose PUT is gone (a
 * dropped segment, no checkpoint used) rebuilds the job as copied; a RELOCATE after the job's
 * ACK, or of an id below what the state has numbered, brings nothing back. */
static void test_replay(void)
{
    struct queue_state *qs = state_new();
    int64_t now = 1700000001000;
    uint8_t put_buf[256], rel_buf[256], ack_buf[64];
    struct record_put put = {.id = 10,
                             .priority = 4,
                             .queue = "q",
                             .queue_len = 1,
                             .created_ms = 1700000000000,
                             .body = "copied",
                             .body_len = 6};
    size_t n = record_put_encode(&put, put_buf);
    struct log_record r = replay_rec(RECORD_PUT, put_buf, n, 1, 1);
    REQUIRE(queue_replay(qs, &r, at_ms(now)) == 0);
    n = relocate_bytes(10, RECORD_STATE_READY, NULL, rel_buf);
    r = replay_rec(RECORD_RELOCATE, rel_buf, n, 50, 40);
    REQUIRE(queue_replay(qs, &r, at_ms(now)) == 0);
    struct job *job = queue_job_find(qs, 10);
    REQUIRE(job != NULL);
    CHECK_EQ(queue_job_pos(job).seq, 50);
    CHECK_EQ(queue_segment_live(qs, 1), 0);
    CHECK_EQ(queue_segment_live(qs, 40), 1);
    /* The PUT of job 20 was dropped with its segment: the copy rebuilds it, dead. */
    n = relocate_bytes(20, RECORD_STATE_DEAD, "poison", rel_buf);
    r = replay_rec(RECORD_RELOCATE, rel_buf, n, 51, 40);
    REQUIRE(queue_replay(qs, &r, at_ms(now)) == 0);
    job = queue_job_find(qs, 20);
    REQUIRE(job != NULL);
    struct queue_job_status status;
    REQUIRE(queue_status(qs, 20, &status));
    CHECK_EQ(status.state, JOB_DEAD);
    CHECK_EQ(status.attempts, 2);
    CHECK_EQ(status.settled_ms, 1700000000500);
    CHECK(status.reason_len == 6 && memcmp(status.reason, "poison", 6) == 0);
    CHECK(job->body_len == 6 && memcmp(queue_job_body(job), "copied", 6) == 0);
    CHECK_EQ(queue_segment_live(qs, 40), 2);
    /* Job 10 acked: a later copy of it (which a correct server never writes) is ignored. */
    n = record_ack_encode(10, now, NULL, 0, ack_buf);
    r = replay_rec(RECORD_ACK, ack_buf, n, 52, 40);
    REQUIRE(queue_replay(qs, &r, at_ms(now)) == 0);
    n = relocate_bytes(10, RECORD_STATE_READY, NULL, rel_buf);
    r = replay_rec(RECORD_RELOCATE, rel_buf, n, 53, 40);
    REQUIRE(queue_replay(qs, &r, at_ms(now)) == 0);
    job = queue_job_find(qs, 10);
    CHECK(job == NULL || job_state_settled(job->state));
    /* An id below the next id the state numbers (settled and forgotten) stays gone. */
    n = relocate_bytes(15, RECORD_STATE_READY, NULL, rel_buf);
    r = replay_rec(RECORD_RELOCATE, rel_buf, n, 54, 40);
    REQUIRE(queue_replay(qs, &r, at_ms(now)) == 0);
    CHECK(queue_job_find(qs, 15) == NULL);
    queue_state_destroy(qs);
}

/* The compactor's idle wake-ups: a survey once an interval when on, never when off (an
 * off compactor that asked for turns at once would spin the loop). */
static void test_timeout(void)
{
    struct tlog t;
    tlog_init(&t, "compact-timeout", 64 * 1024, 16 * 1024);
    REQUIRE(tlog_open(&t) == 0);
    struct queue_state *qs = state_new();
    struct compactor *off = compactor_create(t.log, qs, 64 * 1024, 0);
    struct compactor *on = compactor_create(t.log, qs, 64 * 1024, COMPACT_LIVE_PERCENT);
    REQUIRE(off != NULL && on != NULL);
    CHECK_EQ(compactor_timeout_ms(off, 5000), INT64_MAX);
    compactor_tick(off, 5000);
    CHECK_EQ(compactor_timeout_ms(off, 5000), INT64_MAX);
    CHECK_EQ(compactor_timeout_ms(on, 5000), 0); /* never surveyed: due */
    compactor_tick(on, 5000); /* nothing to compact: idle until the next interval */
    CHECK_EQ(compactor_timeout_ms(on, 5000), COMPACT_SURVEY_INTERVAL_MS);
    CHECK_EQ(compactor_timeout_ms(on, 5000 + COMPACT_SURVEY_INTERVAL_MS), 0);
    compactor_stop(on);
    CHECK_EQ(compactor_timeout_ms(on, 9000), INT64_MAX);
    compactor_destroy(off);
    compactor_destroy(on);
    queue_state_destroy(qs);
    tlog_destroy(&t);
}

int main(void)
{
    RUN_TEST(test_timeout);
    RUN_TEST(test_policy);
    RUN_TEST(test_relocate_from_state);
    RUN_TEST(test_move_durable);
    RUN_TEST(test_jobs_step);
    RUN_TEST(test_replay);
    return check_exit();
}
