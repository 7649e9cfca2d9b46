/* The job's representation (queue.h): an 80-byte core for every job and an extension only
 * while a rare field is in use. Each transition allocates or frees the extension as the
 * state needs, the body pointer follows it (the body cache writes to wherever it is), the
 * packed log position round-trips at its limits, and the ready-age buckets give the oldest
 * ready job's age without a link per job and stay few. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "queue_fake.h"

static uint64_t put_args(struct queue_state *s, struct queue_put_args args, int64_t ms)
{
    args.queue = "q";
    args.queue_len = 1;
    args.body = "body";
    args.body_len = 4;
    if (args.max_attempts == 0)
        args.max_attempts = -1;
    uint64_t id, seq;
    bool dup;
    REQUIRE(queue_put(s, &args, at_ms(ms), &id, &dup, &seq) == 0);
    queue_durable(s, UINT64_MAX, at_ms(ms));
    return id;
}

static uint64_t put_plain(struct queue_state *s, int64_t ms)
{
    return put_args(s, (struct queue_put_args){0}, ms);
}

static struct job *reserve_at(struct queue_state *s, int64_t ms)
{
    struct queue_reserver r = {.queues = {queue_find(s, "q", 1)},
                               .queue_count = 1,
                               .count_max = 1,
                               .deadline_ns = at_ms(ms).mono_ns,
                               .detach = true};
    struct job *jobs[1];
    return queue_reserve(s, &r, at_ms(ms), jobs) == 1 ? jobs[0] : NULL;
}

static void test_core_sizes(void)
{
    CHECK_EQ(sizeof(struct job), 80);
    CHECK(sizeof(struct job_ext) <= 192);
}

/* READY without delay, ttl, reason or waiters: no extension; every other state has one. */
static void test_ext_follows_every_transition(void)
{
    struct queue_state *s = state_new();
    uint64_t id = put_plain(s, 1);
    struct job *job = queue_job_find(s, id);
    CHECK(job->state == JOB_READY && queue_job_ext_of(job) == NULL);
    CHECK(reserve_at(s, 2) == job);
    CHECK(job->state == JOB_RESERVED && queue_job_ext_of(job) != NULL);
    uint64_t token = queue_job_x(job)->lease_token;
    CHECK(token != 0);
    /* release without an error: READY again, the extension goes */
    CHECK_EQ(queue_release(s, id, token, 0, UINT32_MAX, NULL, 0, at_ms(3), NULL), 0);
    CHECK(job->state == JOB_READY && queue_job_ext_of(job) == NULL);
    /* release with an error: the reason is shown while READY, so it stays */
    CHECK(reserve_at(s, 4) == job);
    token = queue_job_x(job)->lease_token;
    CHECK_EQ(queue_release(s, id, token, 0, UINT32_MAX, "oops", 4, at_ms(5), NULL), 0);
    CHECK(job->state == JOB_READY && queue_job_ext_of(job) != NULL);
    CHECK_EQ(queue_job_x(job)->reason_len, 4);
    /* bury: DEAD with a reason and a settle time */
    CHECK(reserve_at(s, 6) == job);
    token = queue_job_x(job)->lease_token;
    CHECK_EQ(queue_bury(s, id, token, "bad", 3, at_ms(7), NULL), 0);
    CHECK(job->state == JOB_DEAD && queue_job_ext_of(job) != NULL);
    CHECK_EQ(queue_job_x(job)->settled_ms, 7);
    /* kick: a fresh start clears the reason, so READY carries nothing again */
    CHECK_EQ(queue_kick_job(s, id, at_ms(8), NULL), 0);
    CHECK(job->state == JOB_READY && queue_job_ext_of(job) == NULL);
    /* ack: DONE keeps its result and settle time in the extension */
    CHECK(reserve_at(s, 9) == job);
    token = queue_job_x(job)->lease_token;
    CHECK_EQ(queue_ack(s, id, token, "42", 2, at_ms(10), NULL), 0);
    CHECK(job->state == JOB_DONE && queue_job_ext_of(job) != NULL);
    CHECK(queue_job_x(job)->result_len == 2 && memcmp(queue_job_x(job)->result, "42", 2) == 0);
    CHECK_EQ(queue_job_x(job)->settled_ms, 10);
    struct queue_job_status st;
    REQUIRE(queue_status(s, id, &st));
    CHECK(st.state == JOB_DONE && st.result_len == 2 && st.settled_ms == 10);
    queue_state_destroy(s);
}

/* A run-at, a ttl or a long ttr needs the extension from the put on; a delayed job that came
 * due keeps its run-at (shown and checkpointed). */
static void test_ext_for_delay_ttl_and_long_ttr(void)
{
    struct queue_state *s = state_new();
    uint64_t delayed = put_args(s, (struct queue_put_args){.delay_ms = 50}, 1);
    uint64_t ttl = put_args(s, (struct queue_put_args){.ttl_ms = 1000}, 1);
    uint64_t long_ttr_ms = 100ull * 24 * 3600 * 1000; /* 100 days: more than 32 bits of ms */
    uint64_t ttr = put_args(s, (struct queue_put_args){.ttr_ms = long_ttr_ms}, 1);
    struct job *d = queue_job_find(s, delayed);
    CHECK(d->state == JOB_DELAYED && queue_job_ext_of(d) != NULL);
    CHECK_EQ(queue_job_x(d)->run_at_ms, 51);
    queue_tick(s, at_ms(60));
    CHECK(d->state == JOB_READY && queue_job_ext_of(d) != NULL);
    CHECK_EQ(queue_job_x(d)->run_at_ms, 51);
    struct job *t = queue_job_find(s, ttl);
    CHECK(queue_job_ext_of(t) != NULL && queue_job_x(t)->expires_at_ms == 1001);
    struct job *l = queue_job_find(s, ttr);
    CHECK(queue_job_ext_of(l) != NULL);
    CHECK_EQ(queue_job_ttr_ms(l), long_ttr_ms);
    /* the long ttr keeps the extension through a lease and back */
    queue_tick(s, at_ms(2000)); /* the ttl job expires */
    CHECK(t->state == JOB_EXPIRED);
    struct job *got;
    while ((got = reserve_at(s, 2001)) != NULL && got != l) {
    }
    REQUIRE(got == l);
    CHECK(queue_job_x(l)->deadline_ms >= 2001 + (int64_t)long_ttr_ms);
    CHECK_EQ(queue_release(s, ttr, queue_job_x(l)->lease_token, 0, UINT32_MAX, NULL, 0, at_ms(2002),
                           NULL),
             0);
    CHECK(l->state == JOB_READY && queue_job_ext_of(l) != NULL);
    CHECK_EQ(queue_job_ttr_ms(l), long_ttr_ms);
    /* and through a checkpoint */
    uint8_t *payload;
    uint32_t len;
    REQUIRE(queue_checkpoint_encode(s, &payload, &len) == 0);
    struct queue_state *r = state_new();
    REQUIRE(queue_checkpoint_load(r, payload, len, at_ms(2003)) == 0);
    CHECK_EQ(queue_job_ttr_ms(queue_job_find(r, ttr)), long_ttr_ms);
    CHECK_EQ(queue_job_x(queue_job_find(r, delayed))->run_at_ms, 51);
    free(payload);
    queue_state_destroy(r);
    queue_state_destroy(s);
}

/* A waiter needs the extension (its list lives there); the job keeps it until it settles. */
static void wake_count(struct queue_job_waiter *waiter, bool found,
                       const struct queue_job_status *status)
{
    (void)found;
    (void)status;
    (*(int *)waiter->ctx)++;
}

static void test_ext_for_waiters(void)
{
    struct queue_state *s = state_new();
    uint64_t id = put_plain(s, 1);
    struct job *job = queue_job_find(s, id);
    int woken = 0;
    struct queue_job_waiter w = {
        .job_id = id, .deadline_ns = at_ms(1000).mono_ns, .wake = wake_count, .ctx = &woken};
    bool found;
    struct queue_job_status st;
    CHECK(!queue_wait(s, &w, at_ms(1), &found, &st));
    CHECK(queue_job_ext_of(job) != NULL);
    CHECK(reserve_at(s, 2) == job);
    CHECK_EQ(queue_ack(s, id, queue_job_x(job)->lease_token, NULL, 0, at_ms(3), NULL), 0);
    CHECK_EQ(woken, 1);
    queue_state_destroy(s);
}

/* The body pointer moves into the extension and back; the cache still finds it to evict. */
static void test_body_follows_ext(void)
{
    struct queue_config config;
    queue_config_defaults(&config);
    config.emit = fake_emit;
    config.body_cache_bytes_max = 1u << 20;
    fake_seq_next = 0;
    struct queue_state *s = queue_state_create(&config);
    uint64_t id = put_plain(s, 1);
    struct job *job = queue_job_find(s, id);
    REQUIRE(queue_job_body(job) != NULL);
    CHECK_EQ(memcmp(queue_job_body(job), "body", 4), 0);
    CHECK(reserve_at(s, 2) == job);
    REQUIRE(queue_job_ext_of(job) != NULL);
    CHECK(queue_job_body(job) != NULL && memcmp(queue_job_body(job), "body", 4) == 0);
    CHECK_EQ(
        queue_release(s, id, queue_job_x(job)->lease_token, 0, UINT32_MAX, NULL, 0, at_ms(3), NULL),
        0);
    REQUIRE(queue_job_ext_of(job) == NULL);
    CHECK(queue_job_body(job) != NULL && memcmp(queue_job_body(job), "body", 4) == 0);
    CHECK(queue_body_cache_trim(s, 0) > 0); /* evicts: writes NULL where the pointer is now */
    CHECK(queue_job_body(job) == NULL);
    CHECK(queue_job_body_missing(job));
    CHECK(reserve_at(s, 4) == job); /* with an extension now: the body is read back into it */
    queue_body_loaded(s, job, "body", 4);
    CHECK(queue_job_body(job) != NULL && memcmp(queue_job_body(job), "body", 4) == 0);
    CHECK(queue_body_cache_trim(s, 0) > 0);
    CHECK(queue_job_body(job) == NULL);
    queue_state_destroy(s);
}

/* The position packs into the core at the limits of its fields, and a checkpoint's that does
 * not is refused as damage rather than trusted. */
static void test_pos_packs_at_limits(void)
{
    struct job job = {0};
    struct log_pos pos = {.seq = (1ull << 40) + UINT32_MAX,
                          .segment_id = 1ull << 40,
                          .batch_offset =
                              (uint64_t)((1u << QUEUE_POS_PAGE_BITS) - 1) * QUEUE_POS_ALIGN};
    CHECK(queue_pos_packable(pos));
    job.state = JOB_DEAD;
    queue_job_set_pos(&job, pos);
    struct log_pos back = queue_job_pos(&job);
    CHECK_EQ(back.seq, pos.seq);
    CHECK_EQ(back.segment_id, pos.segment_id);
    CHECK_EQ(back.batch_offset, pos.batch_offset);
    CHECK(job.state == JOB_DEAD && !job.has_ext); /* the neighbouring bits are untouched */
    struct log_pos zero = {0};
    CHECK(queue_pos_packable(zero));
    struct log_pos far = pos;
    far.seq = far.segment_id + UINT32_MAX + 1ull;
    CHECK(!queue_pos_packable(far));
    struct log_pos before = {.seq = 5, .segment_id = 6, .batch_offset = 4096};
    CHECK(!queue_pos_packable(before));
    struct log_pos odd = {.seq = 5, .segment_id = 1, .batch_offset = 4096 + 8};
    CHECK(!queue_pos_packable(odd));
    struct log_pos big = {.seq = 5,
                          .segment_id = 1,
                          .batch_offset = (uint64_t)QUEUE_POS_ALIGN << QUEUE_POS_PAGE_BITS};
    CHECK(!queue_pos_packable(big));
}

/* A live job moved to a new position (compaction) moves its count in its queue's segment
 * counts: ack_floor follows it, and its later removal finds it there. */
static void test_moved_job_moves_ack_floor(void)
{
    struct queue_state *s = state_new();
    uint64_t a = put_plain(s, 1);
    uint64_t b = put_plain(s, 1);
    struct queue *q = queue_find(s, "q", 1);
    struct job *ja = queue_job_find(s, a);
    struct log_pos home = queue_job_pos(ja);
    queue_job_set_pos(ja, (struct log_pos){100, 5, 4096});
    struct queue_stats st;
    queue_stats_get(q, at_ms(2), &st);
    CHECK_EQ(st.ack_floor, 1); /* b is still in segment 1 */
    CHECK_EQ(queue_delete(s, b, at_ms(2), NULL), 0);
    queue_stats_get(q, at_ms(2), &st);
    CHECK_EQ(st.ack_floor, 5);
    /* Back home before it goes: the state's own segment counts (retention) were not moved,
     * that is the mover's part. */
    queue_job_set_pos(ja, home);
    queue_stats_get(q, at_ms(2), &st);
    CHECK_EQ(st.ack_floor, 1);
    CHECK_EQ(queue_delete(s, a, at_ms(2), NULL), 0);
    queue_stats_get(q, at_ms(2), &st);
    CHECK_EQ(st.ack_floor, 0);
    CHECK_EQ(q->seg_count, 0);
    queue_state_destroy(s);
}

/* oldest_ready_age_ms without a per-job link: right when the oldest leaves out of order, and
 * the buckets stay few when jobs become ready one ms apart for a long time. */
static void test_ready_age_buckets(void)
{
    struct queue_state *s = state_new();
    uint64_t a = put_plain(s, 10);
    uint64_t b = put_plain(s, 20);
    put_plain(s, 30);
    struct queue *q = queue_find(s, "q", 1);
    struct queue_stats st;
    queue_stats_get(q, at_ms(100), &st);
    CHECK_EQ(st.oldest_ready_age_ms, 90);
    CHECK_EQ(queue_delete(s, b, at_ms(100), NULL), 0); /* not the oldest: no change */
    queue_stats_get(q, at_ms(100), &st);
    CHECK_EQ(st.oldest_ready_age_ms, 90);
    CHECK_EQ(queue_delete(s, a, at_ms(100), NULL), 0);
    queue_stats_get(q, at_ms(100), &st);
    CHECK_EQ(st.oldest_ready_age_ms, 70);
    CHECK_EQ(q->ready_age.count, 1); /* emptied buckets at the front are gone */
    /* 100,000 jobs 1 ms apart: the width grows with the oldest age, the buckets stay few */
    for (int64_t ms = 1000; ms < 101000; ms++)
        put_plain(s, ms);
    CHECK(q->ready_age.count < 8 * 1024);
    queue_stats_get(q, at_ms(101000), &st);
    CHECK_EQ(st.oldest_ready_age_ms, 100970); /* the job of ms 30, exact */
    queue_state_destroy(s);
}

static uint64_t put_in(struct queue_state *s, const char *queue, int64_t ms)
{
    struct queue_put_args args = {.queue = queue, .queue_len = (uint32_t)strlen(queue),
                                  .body = "b", .body_len = 1, .max_attempts = -1};
    uint64_t id, seq;
    bool dup;
    REQUIRE(queue_put(s, &args, at_ms(ms), &id, &dup, &seq) == 0);
    queue_durable(s, UINT64_MAX, at_ms(ms));
    return id;
}

/* Read-ahead's walk (queue_ready_next): the next READY job of the same queue in id order,
 * past other queues' jobs and jobs not READY; NULL when none is within the scan or the walk's
 * id budget is spent. */
static void test_ready_next_walks_the_queue(void)
{
    struct queue_state *s = state_new();
    uint64_t a1 = put_in(s, "a", 1);
    put_in(s, "b", 1);
    uint64_t a2 = put_in(s, "a", 1);
    uint64_t a3 = put_in(s, "a", 1);
    struct queue *qa = queue_find(s, "a", 1);
    CHECK(queue_ready_first(qa) == queue_job_find(s, a1));
    uint32_t ids_left = 100;
    CHECK(queue_ready_next(s, queue_job_find(s, a1), &ids_left) == queue_job_find(s, a2));
    CHECK_EQ(ids_left, 98); /* looked at b's job, then a2 */
    /* a2 reserved: the walk passes over it */
    struct queue_reserver r = {.queues = {qa}, .queue_count = 1, .count_max = 2,
                               .deadline_ns = at_ms(2).mono_ns, .detach = true};
    struct job *got[2];
    REQUIRE(queue_reserve(s, &r, at_ms(2), got) == 2); /* a1, a2 */
    CHECK(queue_ready_first(qa) == queue_job_find(s, a3));
    CHECK(queue_ready_next(s, queue_job_find(s, a3), &ids_left) == NULL);
    /* More than the scan's worth of other jobs between two of a's: the walk ends there. */
    for (uint32_t i = 0; i < QUEUE_READY_NEXT_SCAN_IDS; i++)
        put_in(s, "b", 3);
    uint64_t a4 = put_in(s, "a", 3);
    ids_left = UINT32_MAX;
    CHECK(queue_ready_next(s, queue_job_find(s, a3), &ids_left) == NULL);
    CHECK_EQ(ids_left, UINT32_MAX - QUEUE_READY_NEXT_SCAN_IDS);
    /* The walk's budget: 1 id (b's job) finds nothing and is spent, 0 looks at nothing, 2
     * (b's job, then a5) finds a5. */
    put_in(s, "b", 3);
    uint64_t a5 = put_in(s, "a", 3);
    ids_left = 1;
    CHECK(queue_ready_next(s, queue_job_find(s, a4), &ids_left) == NULL);
    CHECK_EQ(ids_left, 0);
    CHECK(queue_ready_next(s, queue_job_find(s, a4), &ids_left) == NULL);
    ids_left = 2;
    CHECK(queue_ready_next(s, queue_job_find(s, a4), &ids_left) == queue_job_find(s, a5));
    queue_state_destroy(s);
}

int main(void)
{
    RUN_TEST(test_core_sizes);
    RUN_TEST(test_ext_follows_every_transition);
    RUN_TEST(test_ext_for_delay_ttl_and_long_ttr);
    RUN_TEST(test_ext_for_waiters);
    RUN_TEST(test_body_follows_ext);
    RUN_TEST(test_pos_packs_at_limits);
    RUN_TEST(test_moved_job_moves_ack_floor);
    RUN_TEST(test_ready_age_buckets);
    RUN_TEST(test_ready_next_walks_the_queue);
    return check_exit();
}
