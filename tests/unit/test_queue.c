/* The queue state machine, driven with an injected clock and a recording emit: every rule of
 * the contract that needs no I/O, plus replay of the recorded log and checkpoint round trips. */
#include "check.h"
#include "le.h"
#include "queue.h"

#include <errno.h>

/* A fake log: keeps every emitted record, assigns seqs, can refuse (back pressure). */
#define FAKE_RECORDS_MAX 4096
struct fake_log {
    uint8_t type[FAKE_RECORDS_MAX];
    uint8_t *data[FAKE_RECORDS_MAX];
    uint32_t len[FAKE_RECORDS_MAX];
    struct log_pos pos[FAKE_RECORDS_MAX];
    uint32_t count;
    uint64_t segment_id;
    uint64_t seq_base; /* seqs start after it: a segment's first seq is at most its records' */
    int fail; /* nonzero: refuse with this error */
};

static struct fake_log fake;

/* The clock pair at ms on both clocks: most tests need no clock step. */
static struct queue_time T(int64_t ms)
{
    return (struct queue_time){.wall_ns = ms * QUEUE_NS_PER_MS, .mono_ns = ms * QUEUE_NS_PER_MS};
}

/* The next timer, in ms of T()'s clocks (INT64_MAX if none). */
static int64_t next_deadline_ms(const struct queue_state *s)
{
    int64_t ns = queue_next_deadline_ns(s);
    return ns == INT64_MAX ? INT64_MAX : ns / QUEUE_NS_PER_MS;
}

static int fake_emit(void *ctx, uint8_t type, const void *data, uint32_t len,
                     struct log_pos *pos)
{
    struct fake_log *log = ctx;
    if (log->fail != 0)
        return log->fail;
    REQUIRE(log->count < FAKE_RECORDS_MAX);
    uint32_t i = log->count++;
    log->type[i] = type;
    log->data[i] = malloc(len);
    memcpy(log->data[i], data, len);
    log->len[i] = len;
    pos->seq = log->seq_base + i + 1;
    pos->segment_id = log->segment_id;
    pos->batch_offset = 4096;
    log->pos[i] = *pos;
    return 0;
}

static void fake_reset(void)
{
    for (uint32_t i = 0; i < fake.count; i++)
        free(fake.data[i]);
    memset(&fake, 0, sizeof(fake));
    fake.segment_id = 1;
}

static uint32_t fake_count_type(uint8_t type)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < fake.count; i++)
        n += fake.type[i] == type;
    return n;
}

static struct queue_state *make_state(void)
{
    fake_reset();
    struct queue_config config;
    queue_config_defaults(&config);
    config.emit = fake_emit;
    config.emit_ctx = &fake;
    return queue_state_create(&config);
}

static uint64_t put_full_at(struct queue_state *s, const char *queue, uint32_t priority,
                            int64_t delay_ms, int64_t ttl_ms, int64_t max_attempts,
                            const char *key, struct queue_time now)
{
    struct queue_put_args args = {
        .queue = queue, .queue_len = (uint32_t)strlen(queue), .priority = priority,
        .delay_ms = delay_ms, .ttl_ms = ttl_ms, .max_attempts = max_attempts,
        .key = key, .key_len = key ? (uint32_t)strlen(key) : 0,
        .body = "body", .body_len = 4, .ttr_ms = 1000,
    };
    uint64_t id = 0, seq = 0;
    bool dup = false;
    REQUIRE(queue_put(s, &args, now, &id, &dup, &seq) == 0);
    return id;
}

static uint64_t put_full(struct queue_state *s, const char *queue, uint32_t priority,
                         int64_t delay_ms, int64_t ttl_ms, int64_t max_attempts, const char *key,
                         int64_t now)
{
    return put_full_at(s, queue, priority, delay_ms, ttl_ms, max_attempts, key, T(now));
}

static uint64_t put(struct queue_state *s, const char *queue, uint32_t priority, int64_t now)
{
    uint64_t id = put_full(s, queue, priority, 0, 0, -1, NULL, now);
    queue_durable(s, UINT64_MAX, T(now));
    return id;
}

static struct job *reserve1_at(struct queue_state *s, const char *queue, struct queue_time now,
                               struct queue_owner *owner)
{
    struct queue_reserver r = {0};
    r.queues[0] = queue_find(s, queue, (uint32_t)strlen(queue));
    if (r.queues[0] == NULL)
        return NULL;
    r.queue_count = 1;
    r.count_max = 1;
    r.deadline_ns = now.mono_ns; /* poll */
    r.owner = owner;
    r.detach = owner == NULL;
    struct job *jobs[1];
    return queue_reserve(s, &r, now, jobs) == 1 ? jobs[0] : NULL;
}

static struct job *reserve1(struct queue_state *s, const char *queue, int64_t now,
                            struct queue_owner *owner)
{
    return reserve1_at(s, queue, T(now), owner);
}

static void test_put_invisible_until_durable_then_lifecycle(void)
{
    struct queue_state *s = make_state();
    uint64_t id = put_full(s, "q", 0, 0, 0, -1, NULL, 100);
    CHECK_EQ(id, 1);
    CHECK(reserve1(s, "q", 100, NULL) == NULL); /* pending: not reservable */
    queue_durable(s, 1, T(100));                  /* seq 1 not yet durable */
    CHECK(reserve1(s, "q", 100, NULL) == NULL);
    queue_durable(s, 2, T(100));
    struct job *job = reserve1(s, "q", 110, NULL);
    REQUIRE(job != NULL);
    CHECK_EQ(job->id, id);
    CHECK_EQ(job->attempts, 1);
    CHECK_EQ(queue_job_x(job)->deadline_ms, 1110);
    CHECK(queue_job_x(job)->lease_token != 0);
    CHECK(job->body_len == 4 && memcmp(queue_job_body(job), "body", 4) == 0);
    uint64_t token = queue_job_x(job)->lease_token;
    CHECK_EQ(queue_ack(s, id, token + 1, NULL, 0, T(120), NULL), QUEUE_ELEASE);
    CHECK_EQ(queue_ack(s, 999, token, NULL, 0, T(120), NULL), QUEUE_ENOTFOUND);
    CHECK_EQ(queue_ack(s, id, token, "res", 3, T(120), NULL), 0);
    CHECK_EQ(queue_ack(s, id, token, "res", 3, T(121), NULL), QUEUE_ELEASE); /* already settled */
    struct queue_job_status st;
    REQUIRE(queue_status(s, id, &st));
    CHECK_EQ(st.state, JOB_DONE);
    CHECK(st.result_len == 3 && memcmp(st.result, "res", 3) == 0);
    CHECK_EQ(fake_count_type(RECORD_PUT), 1);
    CHECK_EQ(fake_count_type(RECORD_LEASE), 1);
    CHECK_EQ(fake_count_type(RECORD_ACK), 1);
    queue_state_destroy(s);
}

static void test_priority_then_fifo(void)
{
    struct queue_state *s = make_state();
    uint64_t a = put(s, "q", 5, 0);
    uint64_t b = put(s, "q", 1, 0);
    uint64_t c = put(s, "q", 5, 0);
    uint64_t d = put(s, "q", 1, 0);
    uint64_t order[4] = {b, d, a, c};
    for (int i = 0; i < 4; i++) {
        struct job *job = reserve1(s, "q", 1, NULL);
        REQUIRE(job != NULL);
        CHECK_EQ(job->id, order[i]);
    }
    CHECK(reserve1(s, "q", 1, NULL) == NULL);
    queue_state_destroy(s);
}

static void test_reserve_queue_preference_and_count(void)
{
    struct queue_state *s = make_state();
    uint64_t low = put(s, "second", 0, 0);
    uint64_t x = put(s, "first", 9, 0);
    uint64_t y = put(s, "first", 9, 0);
    struct queue_reserver r = {.queues = {queue_find(s, "first", 5), queue_find(s, "second", 6)},
                               .queue_count = 2, .count_max = 3, .detach = true};
    struct job *jobs[3];
    CHECK_EQ(queue_reserve(s, &r, T(0), jobs), 3);
    CHECK_EQ(jobs[0]->id, x); /* the first queue wins despite its worse priority */
    CHECK_EQ(jobs[1]->id, y);
    CHECK_EQ(jobs[2]->id, low);
    queue_state_destroy(s);
}

/* A reserve gets as many jobs as it asked for, up to the one shared limit: the queue used to
 * clamp at 256 while the wire let clients ask for 1024, and they silently got fewer. */
static void test_reserve_count_limit_not_clamped(void)
{
    struct queue_state *s = make_state();
    for (uint32_t i = 0; i < LIMIT_RESERVE_MAX_JOBS + 1; i++)
        put(s, "q", 0, 0);
    struct queue_reserver r = {.queues = {queue_find(s, "q", 1)}, .queue_count = 1,
                               .count_max = LIMIT_RESERVE_MAX_JOBS, .detach = true};
    static struct job *jobs[LIMIT_RESERVE_MAX_JOBS];
    CHECK_EQ(queue_reserve(s, &r, T(0), jobs), LIMIT_RESERVE_MAX_JOBS);
    CHECK(reserve1(s, "q", 0, NULL) != NULL); /* the one left over */
    CHECK(reserve1(s, "q", 0, NULL) == NULL);
    queue_state_destroy(s);
}

/* Idempotency keys: 255 bytes (what the wire's u8 prefix carries) is the limit everywhere; the
 * queue took 256 before, a key no client could send. */
static void test_key_limit_shared(void)
{
    struct queue_state *s = make_state();
    char key[LIMIT_KEY_MAX_BYTES + 2];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = 0;
    struct queue_put_args args = {.queue = "q", .queue_len = 1, .key = key,
                                  .key_len = LIMIT_KEY_MAX_BYTES + 1, .body = "b", .body_len = 1,
                                  .ttr_ms = 1000, .max_attempts = -1};
    uint64_t id = 0, seq = 0;
    bool dup = false;
    CHECK_EQ(queue_put(s, &args, T(0), &id, &dup, &seq), QUEUE_EINVAL);
    args.key_len = LIMIT_KEY_MAX_BYTES;
    CHECK_EQ(queue_put(s, &args, T(0), &id, &dup, &seq), 0);
    CHECK(id != 0);
    queue_state_destroy(s);
}

static void test_delay_and_ttl(void)
{
    struct queue_state *s = make_state();
    uint64_t id = put_full(s, "q", 0, 500, 0, -1, NULL, 1000);
    queue_durable(s, UINT64_MAX, T(1000));
    struct queue_stats st;
    queue_stats_get(queue_find(s, "q", 1), T(1000), &st);
    CHECK_EQ(st.delayed, 1);
    CHECK_EQ(next_deadline_ms(s), 1500);
    CHECK(queue_peek_next(s, "q", 1, JOB_DELAYED) != NULL);
    queue_tick(s, T(1499));
    CHECK(reserve1(s, "q", 1499, NULL) == NULL);
    queue_tick(s, T(1500));
    struct job *job = reserve1(s, "q", 1500, NULL);
    REQUIRE(job != NULL);
    CHECK_EQ(job->id, id);
    /* ttl: gone at expiry when not reserved. */
    uint64_t t = put_full(s, "q", 0, 0, 200, -1, NULL, 2000);
    queue_durable(s, UINT64_MAX, T(2000));
    queue_tick(s, T(2199));
    CHECK(queue_peek_id(s, t) != NULL);
    queue_tick(s, T(2200));
    CHECK(queue_peek_id(s, t) == NULL);
    CHECK_EQ(queue_delete(s, t, T(2200), NULL), QUEUE_ENOTFOUND);
    /* Issue 10 item 9: remembered as EXPIRED (settled at its expiry), counted in the queue. */
    struct queue_job_status status;
    REQUIRE(queue_status(s, t, &status));
    CHECK_EQ(status.state, JOB_EXPIRED);
    CHECK_EQ(status.settled_ms, 2200);
    queue_stats_get(queue_find(s, "q", 1), T(2200), &st);
    CHECK_EQ(st.expired, 1);
    /* ttl while reserved: kept until the lease ends, then removed. */
    uint64_t r = put_full(s, "r", 0, 0, 100, -1, NULL, 3000);
    queue_durable(s, UINT64_MAX, T(3000));
    struct job *held = reserve1(s, "r", 3000, NULL);
    REQUIRE(held != NULL && held->id == r);
    queue_tick(s, T(3150));
    CHECK(queue_peek_id(s, r) != NULL);
    CHECK_EQ(
        queue_release(s, r, queue_job_x(held)->lease_token, 0, UINT32_MAX, NULL, 0, T(3160), NULL),
        0);
    queue_tick(s, T(3161));
    CHECK(queue_peek_id(s, r) == NULL);
    queue_state_destroy(s);
}

/* Issue 9: a ttl expiry changes what the next checkpoint saves, so it is not best-effort:
 * while the log refuses records (back pressure) the job stays, still due, and it goes only
 * with its DELETE logged. A checkpoint taken meanwhile still lists it. */
static void test_ttl_delete_not_skipped(void)
{
    struct queue_state *s = make_state();
    uint64_t t = put_full(s, "q", 0, 0, 100, -1, NULL, 1000);
    queue_durable(s, UINT64_MAX, T(1000));
    uint32_t deletes = fake_count_type(RECORD_DELETE);
    fake.fail = -ENOBUFS;
    queue_tick(s, T(1100));
    CHECK(queue_peek_id(s, t) != NULL);
    CHECK_EQ(fake_count_type(RECORD_DELETE), deletes);
    CHECK(next_deadline_ms(s) <= 1100); /* still due */
    struct queue_totals totals;
    queue_totals_get(s, &totals);
    CHECK_EQ(totals.jobs, 1);
    fake.fail = 0;
    queue_tick(s, T(1101));
    CHECK(queue_peek_id(s, t) == NULL);
    CHECK_EQ(fake_count_type(RECORD_DELETE), deletes + 1);
    queue_state_destroy(s);
}

static void test_lease_expiry_redelivery_and_max_attempts(void)
{
    struct queue_state *s = make_state();
    uint64_t id = put_full(s, "q", 0, 0, 0, 2, NULL, 0);
    queue_durable(s, UINT64_MAX, T(0));
    struct job *job = reserve1(s, "q", 0, NULL);
    REQUIRE(job != NULL);
    uint64_t first = queue_job_x(job)->lease_token;
    queue_tick(s, T(999));
    CHECK_EQ(job->state, JOB_RESERVED);
    queue_tick(s, T(1000));
    CHECK_EQ(job->state, JOB_READY);
    CHECK_EQ(job->attempts, 1);
    job = reserve1(s, "q", 1000, NULL);
    REQUIRE(job != NULL && job->id == id);
    CHECK_EQ(job->attempts, 2);
    CHECK(queue_job_x(job)->lease_token != first);
    CHECK_EQ(queue_ack(s, id, first, NULL, 0, T(1001), NULL), QUEUE_ELEASE);
    queue_tick(s, T(2000)); /* second expiry = last attempt: dead */
    CHECK_EQ(job->state, JOB_DEAD);
    CHECK(queue_job_x(job)->reason_len == 12 &&
          memcmp(queue_job_x(job)->reason, "max_attempts", 12) == 0);
    CHECK(queue_peek_next(s, "q", 1, JOB_DEAD) == job);
    CHECK_EQ(queue_kick_job(s, id, T(2001), NULL), 0);
    CHECK_EQ(job->state, JOB_READY);
    CHECK_EQ(job->attempts, 0);
    CHECK_EQ(queue_kick_job(s, id, T(2001), NULL), QUEUE_ESTATE);
    CHECK_EQ(queue_kick_job(s, 777, T(2001), NULL), QUEUE_ENOTFOUND);
    queue_state_destroy(s);
}

static void test_release_touch_bury_kick_delete(void)
{
    struct queue_state *s = make_state();
    uint64_t id = put_full(s, "q", 3, 0, 0, 3, NULL, 0);
    uint64_t other = put_full(s, "q", 4, 0, 0, 3, NULL, 0);
    queue_durable(s, UINT64_MAX, T(0));
    struct job *job = reserve1(s, "q", 0, NULL);
    REQUIRE(job != NULL && job->id == id);
    int64_t deadline = 0;
    CHECK_EQ(queue_touch(s, id, queue_job_x(job)->lease_token, 5000, T(500), &deadline), 0);
    CHECK_EQ(deadline, 5500);
    queue_tick(s, T(1000)); /* the old deadline passed: touch kept it */
    CHECK_EQ(job->state, JOB_RESERVED);
    CHECK_EQ(queue_delete(s, id, T(1000), NULL), QUEUE_ESTATE);
    CHECK_EQ(queue_release(s, id, queue_job_x(job)->lease_token, 100, 9, NULL, 0, T(1000), NULL),
             0);
    CHECK_EQ(job->state, JOB_DELAYED);
    CHECK_EQ(job->priority, 9);
    queue_tick(s, T(1100));
    struct job *next = reserve1(s, "q", 1100, NULL);
    REQUIRE(next != NULL);
    CHECK_EQ(next->id, other); /* priority 4 before the released 9 */
    CHECK_EQ(queue_bury(s, other, queue_job_x(next)->lease_token, "bad input", 9, T(1100), NULL),
             0);
    CHECK_EQ(next->state, JOB_DEAD);
    job = reserve1(s, "q", 1100, NULL);
    REQUIRE(job != NULL && job->id == id);
    CHECK_EQ(queue_bury(s, id, queue_job_x(job)->lease_token, "again", 5, T(1101), NULL), 0);
    uint32_t kicked = 0;
    CHECK_EQ(queue_kick(s, "q", 1, 1, T(1200), &kicked, NULL), 0);
    CHECK_EQ(kicked, 1);
    CHECK_EQ(next->state, JOB_READY); /* oldest death first */
    CHECK_EQ(queue_kick(s, "q", 1, 10, T(1200), &kicked, NULL), 0);
    CHECK_EQ(kicked, 1);
    CHECK_EQ(queue_delete(s, id, T(1300), NULL), 0);
    CHECK(queue_peek_id(s, id) == NULL);
    CHECK_EQ(queue_delete(s, id, T(1300), NULL), QUEUE_ENOTFOUND);
    queue_state_destroy(s);
}

static void test_release_on_last_attempt_buries(void)
{
    struct queue_state *s = make_state();
    uint64_t id = put_full(s, "q", 0, 0, 0, 1, NULL, 0);
    queue_durable(s, UINT64_MAX, T(0));
    struct job *job = reserve1(s, "q", 0, NULL);
    REQUIRE(job != NULL);
    CHECK_EQ(
        queue_release(s, id, queue_job_x(job)->lease_token, 0, UINT32_MAX, "boom", 4, T(1), NULL),
        0);
    CHECK_EQ(job->state, JOB_DEAD);
    CHECK(queue_job_x(job)->reason_len == 18 &&
          memcmp(queue_job_x(job)->reason, "max_attempts: boom", 18) == 0);
    CHECK_EQ(fake_count_type(RECORD_BURY), 1);
    CHECK_EQ(fake_count_type(RECORD_RELEASE), 0);
    queue_state_destroy(s);
}

static void test_idempotency_window(void)
{
    struct queue_state *s = make_state();
    uint64_t a = put_full(s, "q", 0, 0, 0, -1, "key-1", 0);
    struct queue_put_args args = {.queue = "q", .queue_len = 1, .key = "key-1", .key_len = 5,
                                  .body = "x", .body_len = 1, .max_attempts = -1};
    uint64_t id = 0, seq = 0;
    bool dup = false;
    CHECK_EQ(queue_put(s, &args, T(1000), &id, &dup, &seq), 0);
    CHECK(dup);
    CHECK_EQ(id, a);
    CHECK_EQ(seq, 1); /* the reply waits for the original's record */
    CHECK_EQ(fake_count_type(RECORD_PUT), 1);
    int64_t window = 24LL * 3600 * 1000;
    queue_tick(s, T(window));
    CHECK_EQ(queue_put(s, &args, T(window), &id, &dup, &seq), 0);
    CHECK(!dup);
    CHECK(id != a);
    queue_state_destroy(s);
}

/* ack_floor is a lower bound of the oldest live PUT's seq: the first seq of the oldest segment
 * holding a live job of the queue (seqs here start above the segment ids, as in a log). */
static void test_stats_ack_floor_and_segments(void)
{
    struct queue_state *s = make_state();
    fake.seq_base = 100;
    uint64_t a = put(s, "q", 0, 0);
    fake.segment_id = 2;
    put(s, "q", 0, 10);
    put_full(s, "q", 0, 1000, 0, -1, NULL, 20);
    queue_durable(s, UINT64_MAX, T(20));
    CHECK_EQ(queue_segment_live(s, 1), 1);
    CHECK_EQ(queue_segment_live(s, 2), 2);
    struct queue_stats st;
    queue_stats_get(queue_find(s, "q", 1), T(100), &st);
    CHECK_EQ(st.ready, 2);
    CHECK_EQ(st.delayed, 1);
    CHECK_EQ(st.total_put, 3);
    CHECK_EQ(st.oldest_ready_age_ms, 100);
    CHECK_EQ(st.ack_floor, 1);
    struct job *job = reserve1(s, "q", 100, NULL);
    REQUIRE(job != NULL && job->id == a);
    queue_stats_get(queue_find(s, "q", 1), T(100), &st);
    CHECK_EQ(st.reserved, 1);
    CHECK_EQ(st.ready, 1);
    CHECK_EQ(queue_ack(s, a, queue_job_x(job)->lease_token, NULL, 0, T(100), NULL), 0);
    CHECK_EQ(queue_segment_live(s, 1), 0);
    queue_stats_get(queue_find(s, "q", 1), T(100), &st);
    CHECK_EQ(st.ack_floor, 2); /* the segment of the oldest live job's PUT */
    CHECK_EQ(st.oldest_ready_age_ms, 90);
    CHECK(st.ack_floor <= queue_peek_next(s, "q", 1, JOB_READY)->pos_seq);
    uint64_t ready_id = queue_peek_next(s, "q", 1, JOB_READY)->id;
    CHECK_EQ(queue_delete(s, ready_id, T(100), NULL), 0);
    queue_stats_get(queue_find(s, "q", 1), T(100), &st);
    CHECK_EQ(st.ack_floor, 2); /* the delayed job is still in segment 2 */
    CHECK_EQ(queue_delete(s, queue_peek_next(s, "q", 1, JOB_DELAYED)->id, T(100), NULL), 0);
    queue_stats_get(queue_find(s, "q", 1), T(100), &st);
    CHECK_EQ(st.ack_floor, 0); /* nothing live */
    struct queue_totals totals;
    queue_totals_get(s, &totals);
    CHECK_EQ(totals.jobs, 0);
    CHECK_EQ(totals.queues, 1);
    queue_state_destroy(s);
}

struct wake_log {
    int calls;
    uint64_t ids[8];
    uint32_t count;
    int order;
};
static int wake_sequence;

static void record_wake(struct queue_reserver *r, struct job **jobs, uint32_t count)
{
    struct wake_log *log = r->ctx;
    log->calls++;
    log->count = count;
    log->order = ++wake_sequence;
    for (uint32_t i = 0; i < count && i < 8; i++)
        log->ids[i] = jobs[i]->id;
}

/* A detached reserver of one job from one queue, woken into log. */
static struct queue_reserver one_job_reserver(struct queue *q, int64_t deadline_ms,
                                              struct wake_log *log)
{
    return (struct queue_reserver){.queues = {q}, .queue_count = 1, .count_max = 1,
                                   .deadline_ns = T(deadline_ms).mono_ns, .wake = record_wake,
                                   .ctx = log, .detach = true};
}

static void test_blocked_reservers_fair_across_queues(void)
{
    struct queue_state *s = make_state();
    struct queue *a, *b;
    REQUIRE(queue_get(s, "a", 1, &a) == 0);
    REQUIRE(queue_get(s, "b", 1, &b) == 0);
    struct wake_log l1 = {0}, l2 = {0}, l3 = {0};
    struct queue_reserver r1 = {.queues = {a, b}, .queue_count = 2, .count_max = 2,
                                .deadline_ns = T(5000).mono_ns, .wake = record_wake, .ctx = &l1,
                                .detach = true};
    struct queue_reserver r2 = one_job_reserver(b, 5000, &l2);
    struct queue_reserver r3 = one_job_reserver(b, 300, &l3);
    struct job *jobs[4];
    CHECK_EQ(queue_reserve(s, &r1, T(0), jobs), 0);
    CHECK_EQ(queue_reserve(s, &r2, T(0), jobs), 0);
    CHECK_EQ(queue_reserve(s, &r3, T(0), jobs), 0);
    uint64_t j1 = put(s, "b", 0, 10); /* first arrival (r1) gets it */
    CHECK_EQ(l1.calls, 1);
    CHECK_EQ(l1.count, 1);
    CHECK_EQ(l1.ids[0], j1);
    CHECK_EQ(l2.calls, 0);
    uint64_t j2 = put(s, "b", 0, 20);
    CHECK_EQ(l2.calls, 1);
    CHECK_EQ(l2.ids[0], j2);
    CHECK_EQ(next_deadline_ms(s), 300);
    queue_tick(s, T(300)); /* r3 times out empty */
    CHECK_EQ(l3.calls, 1);
    CHECK_EQ(l3.count, 0);
    /* Issue 10: "a" is empty and nobody waits on it any more: the tick forgot it. */
    CHECK(queue_find(s, "a", 1) == NULL);
    put(s, "a", 0, 400); /* nobody waits: stays ready */
    CHECK_EQ(l1.calls, 1);
    struct queue_stats st;
    a = queue_find(s, "a", 1);
    REQUIRE(a != NULL);
    queue_stats_get(a, T(400), &st);
    CHECK_EQ(st.ready, 1);
    /* A canceled reserver is never woken. */
    struct wake_log l4 = {0};
    struct queue_reserver r4 = one_job_reserver(b, 5000, &l4);
    CHECK_EQ(queue_reserve(s, &r4, T(400), jobs), 0);
    queue_reserver_cancel(s, &r4);
    put(s, "b", 0, 500);
    CHECK_EQ(l4.calls, 0);
    queue_state_destroy(s);
}

/* A paused reserver is passed over (the next one in line gets the job, or it stays ready), is
 * still woken empty at its deadline, and after resume is served from the back of the line. */
static void test_paused_reserver(void)
{
    struct queue_state *s = make_state();
    struct queue *a;
    REQUIRE(queue_get(s, "a", 1, &a) == 0);
    struct wake_log l1 = {0}, l2 = {0}, l3 = {0};
    struct queue_reserver r1 = one_job_reserver(a, 5000, &l1);
    struct queue_reserver r2 = one_job_reserver(a, 5000, &l2);
    struct queue_reserver r3 = one_job_reserver(a, 300, &l3);
    struct job *jobs[4];
    CHECK_EQ(queue_reserve(s, &r1, T(0), jobs), 0);
    CHECK_EQ(queue_reserve(s, &r2, T(0), jobs), 0);
    CHECK_EQ(queue_reserve(s, &r3, T(0), jobs), 0);
    queue_reserver_pause(s, &r1);
    queue_reserver_pause(s, &r1); /* twice: no effect */
    queue_reserver_pause(s, &r3);
    uint64_t j1 = put(s, "a", 0, 10); /* r1 is first but paused: r2 gets it */
    CHECK_EQ(l1.calls, 0);
    CHECK_EQ(l2.calls, 1);
    CHECK_EQ(l2.ids[0], j1);
    uint64_t j2 = put(s, "a", 0, 20); /* only paused reservers left: stays ready */
    CHECK_EQ(l1.calls, 0);
    CHECK_EQ(l3.calls, 0);
    struct queue_stats st;
    queue_stats_get(a, T(20), &st);
    CHECK_EQ(st.ready, 1);
    queue_tick(s, T(300)); /* a paused reserver's deadline still runs */
    CHECK_EQ(l3.calls, 1);
    CHECK_EQ(l3.count, 0);
    queue_reserver_resume(s, &r3); /* no longer waiting: nothing */
    queue_reserver_resume(s, &r1);
    queue_tick(s, T(310)); /* served at the next queue_serve */
    CHECK_EQ(l1.calls, 1);
    CHECK_EQ(l1.count, 1);
    CHECK_EQ(l1.ids[0], j2);
    queue_state_destroy(s);
}

struct wait_log {
    int calls;
    bool found;
    struct queue_job_status status;
    char result[16];
};

static void record_wait(struct queue_job_waiter *w, bool found, const struct queue_job_status *st)
{
    struct wait_log *log = w->ctx;
    log->calls++;
    log->found = found;
    log->status = *st;
    if (st->result_len > 0 && st->result_len < sizeof(log->result))
        memcpy(log->result, st->result, st->result_len);
}

static void test_wait_on_job(void)
{
    struct queue_state *s = make_state();
    uint64_t id = put(s, "q", 0, 0);
    struct wait_log log = {0};
    struct queue_job_waiter w = {.job_id = id, .deadline_ns = T(1000).mono_ns, .wake = record_wait,
                                 .ctx = &log};
    bool found;
    struct queue_job_status st;
    CHECK(!queue_wait(s, &w, T(0), &found, &st));
    struct job *job = reserve1(s, "q", 0, NULL);
    REQUIRE(job != NULL);
    CHECK_EQ(queue_ack(s, id, queue_job_x(job)->lease_token, "done!", 5, T(10), NULL), 0);
    CHECK_EQ(log.calls, 1);
    CHECK(log.found);
    CHECK_EQ(log.status.state, JOB_DONE);
    CHECK(strcmp(log.result, "done!") == 0);
    /* Already done: answered at once. */
    CHECK(queue_wait(s, &w, T(20), &found, &st));
    CHECK(found && st.state == JOB_DONE);
    /* Timeout answers the current state. */
    uint64_t id2 = put(s, "q", 0, 30);
    struct wait_log log2 = {0};
    struct queue_job_waiter w2 = {.job_id = id2, .deadline_ns = T(100).mono_ns, .wake = record_wait,
                                  .ctx = &log2};
    CHECK(!queue_wait(s, &w2, T(30), &found, &st));
    queue_tick(s, T(100));
    CHECK_EQ(log2.calls, 1);
    CHECK_EQ(log2.status.state, JOB_READY);
    /* Unknown job. */
    struct queue_job_waiter w3 = {.job_id = 4242, .deadline_ns = T(1000).mono_ns,
                                  .wake = record_wait};
    CHECK(queue_wait(s, &w3, T(0), &found, &st));
    CHECK(!found);
    /* Deleted while waited on: woken not found. */
    struct wait_log log4 = {0};
    struct queue_job_waiter w4 = {.job_id = id2, .deadline_ns = T(1000).mono_ns,
                                  .wake = record_wait, .ctx = &log4};
    CHECK(!queue_wait(s, &w4, T(200), &found, &st));
    CHECK_EQ(queue_delete(s, id2, T(200), NULL), 0);
    CHECK_EQ(log4.calls, 1);
    CHECK(!log4.found);
    queue_state_destroy(s);
}

static void test_owner_release_keeps_detached(void)
{
    struct queue_state *s = make_state();
    uint64_t a = put(s, "q", 0, 0);
    uint64_t b = put(s, "q", 1, 0);
    struct queue_owner owner;
    queue_owner_init(&owner);
    struct job *ja = reserve1(s, "q", 0, &owner);
    struct job *jb = reserve1(s, "q", 0, NULL); /* detached */
    REQUIRE(ja != NULL && jb != NULL);
    CHECK_EQ(ja->id, a);
    CHECK_EQ(jb->id, b);
    queue_owner_release(s, &owner, T(5));
    CHECK_EQ(ja->state, JOB_READY);
    CHECK_EQ(ja->attempts, 1);
    CHECK_EQ(jb->state, JOB_RESERVED);
    queue_state_destroy(s);
}

/* A call says what it logged (struct queue_logged): one past the seq of its last record, the
 * handler's reply waits for; 0 when it logged nothing (a refused call, a kick of nothing),
 * so the handler replies at once. */
static void test_calls_return_what_they_logged(void)
{
    struct queue_state *s = make_state();
    uint64_t id = put(s, "q", 0, 0);
    struct job *job = reserve1(s, "q", 0, NULL);
    REQUIRE(job != NULL && job->id == id);
    struct queue_logged logged = {.seq_end = 99};
    CHECK_EQ(queue_ack(s, id, queue_job_x(job)->lease_token + 1, NULL, 0, T(1), &logged),
             QUEUE_ELEASE);
    CHECK_EQ(logged.seq_end, 0);
    CHECK_EQ(queue_release(s, id, queue_job_x(job)->lease_token, 0, 0, NULL, 0, T(1), &logged), 0);
    CHECK_EQ(fake.type[fake.count - 1], RECORD_RELEASE);
    CHECK_EQ(logged.seq_end, fake.pos[fake.count - 1].seq + 1);
    job = reserve1(s, "q", 1, NULL);
    REQUIRE(job != NULL && job->id == id);
    CHECK_EQ(queue_bury(s, id, queue_job_x(job)->lease_token, "x", 1, T(2), &logged), 0);
    CHECK_EQ(logged.seq_end, fake.count + 1); /* fake seqs: the record's index + 1 */
    uint32_t kicked = 0;
    CHECK_EQ(queue_kick(s, "none", 4, 1, T(3), &kicked, &logged), 0);
    CHECK_EQ(logged.seq_end, 0);
    CHECK_EQ(queue_kick_job(s, id, T(4), &logged), 0);
    CHECK_EQ(fake.type[fake.count - 1], RECORD_KICK);
    CHECK_EQ(logged.seq_end, fake.count + 1);
    CHECK_EQ(queue_delete(s, 999, T(5), &logged), QUEUE_ENOTFOUND);
    CHECK_EQ(logged.seq_end, 0);
    queue_state_destroy(s);
}

static void test_back_pressure_changes_nothing(void)
{
    struct queue_state *s = make_state();
    uint64_t id = put(s, "q", 0, 0);
    struct job *job = reserve1(s, "q", 0, NULL);
    REQUIRE(job != NULL);
    fake.fail = -ENOBUFS;
    struct queue_put_args args = {.queue = "q", .queue_len = 1, .body = "x", .body_len = 1,
                                  .max_attempts = -1, .key = "k", .key_len = 1};
    uint64_t nid, seq;
    bool dup;
    CHECK_EQ(queue_put(s, &args, T(1), &nid, &dup, &seq), -ENOBUFS);
    CHECK_EQ(queue_ack(s, id, queue_job_x(job)->lease_token, NULL, 0, T(1), NULL), -ENOBUFS);
    CHECK_EQ(job->state, JOB_RESERVED);
    CHECK_EQ(queue_release(s, id, queue_job_x(job)->lease_token, 0, 0, NULL, 0, T(1), NULL),
             -ENOBUFS);
    CHECK_EQ(queue_bury(s, id, queue_job_x(job)->lease_token, "x", 1, T(1), NULL), -ENOBUFS);
    CHECK_EQ(job->state, JOB_RESERVED);
    fake.fail = 0;
    /* The refused put did not register its key. */
    CHECK_EQ(queue_put(s, &args, T(2), &nid, &dup, &seq), 0);
    CHECK(!dup);
    CHECK_EQ(queue_ack(s, id, queue_job_x(job)->lease_token, NULL, 0, T(2), NULL), 0);
    queue_state_destroy(s);
}

static void test_limits_and_validation(void)
{
    struct queue_state *s = make_state();
    struct record_meta meta = {.name = "lim", .name_len = 3, .max_jobs = 2,
                               .default_max_attempts = UINT32_MAX};
    CHECK_EQ(queue_set_meta(s, &meta, T(0), NULL), 0);
    struct queue_put_args args = {.queue = "lim", .queue_len = 3, .body = "x", .body_len = 1,
                                  .max_attempts = -1};
    uint64_t id, seq;
    bool dup;
    CHECK_EQ(queue_put(s, &args, T(0), &id, &dup, &seq), 0);
    CHECK_EQ(queue_put(s, &args, T(0), &id, &dup, &seq), 0);
    CHECK_EQ(queue_put(s, &args, T(0), &id, &dup, &seq), QUEUE_EFULL);
    /* Pending (not yet durable) puts count against the limit too. */
    CHECK_EQ(queue_room_for(s, "lim", 3, 1, 1), QUEUE_EFULL);
    queue_durable(s, UINT64_MAX, T(0));
    CHECK_EQ(queue_room_for(s, "lim", 3, 1, 1), QUEUE_EFULL);
    CHECK_EQ(queue_room_for(s, "fresh", 5, 1000, 1000), 0); /* no limit configured */
    /* More than the limit even when empty can never fit: TOO_LARGE, not QUEUE_FULL. */
    CHECK_EQ(queue_room_for(s, "lim", 3, 3, 3), QUEUE_ETOOBIG);
    args.queue = "bad name";
    args.queue_len = 8;
    CHECK_EQ(queue_put(s, &args, T(0), &id, &dup, &seq), QUEUE_EINVAL);
    args.queue = "ok";
    args.queue_len = 2;
    args.delay_ms = -1;
    CHECK_EQ(queue_put(s, &args, T(0), &id, &dup, &seq), QUEUE_EINVAL);
    queue_state_destroy(s);
}

/* Puts alternating between queues whose names share a prefix each land in their own queue
 * (the last-queue lookup cache must compare whole names). */
static void test_put_queue_lookup_cache(void)
{
    struct queue_state *s = make_state();
    uint64_t a1 = put(s, "ab", 0, 0);
    uint64_t b1 = put(s, "a", 0, 0);
    uint64_t a2 = put(s, "ab", 0, 0);
    uint64_t c1 = put(s, "abc", 0, 0);
    CHECK(queue_job_find(s, a1)->queue == queue_find(s, "ab", 2));
    CHECK(queue_job_find(s, b1)->queue == queue_find(s, "a", 1));
    CHECK(queue_job_find(s, a2)->queue == queue_find(s, "ab", 2));
    CHECK(queue_job_find(s, c1)->queue == queue_find(s, "abc", 3));
    CHECK(queue_find(s, "a", 1) != queue_find(s, "ab", 2));
    struct queue_stats st;
    queue_stats_get(queue_find(s, "ab", 2), T(0), &st);
    CHECK_EQ(st.total_put, 2);
    CHECK(queue_find(s, "zz", 2) == NULL);
    CHECK(queue_find(s, "ab", 2) != NULL); /* a miss does not spoil the cache */
    queue_state_destroy(s);
}

static struct queue_state *replay_all(int64_t now);

/* Bodies live in the job's own allocation up to a size, in their own beyond it: either way a
 * reserve hands out the bytes put, an ack lets them go, and replay rebuilds them. */
static void test_bodies_inline_and_separate(void)
{
    static const uint32_t sizes[] = {0, 1, 255, 256, 257, 4096};
    enum { N = sizeof(sizes) / sizeof(sizes[0]) };
    static uint8_t bodies[N][4096];
    struct queue_state *s = make_state();
    uint64_t ids[N];
    for (uint32_t i = 0; i < N; i++) {
        memset(bodies[i], 'a' + (int)i, sizes[i]);
        struct queue_put_args args = {.queue = "b", .queue_len = 1, .body = bodies[i],
                                      .body_len = sizes[i], .max_attempts = -1};
        uint64_t seq;
        bool dup;
        REQUIRE(queue_put(s, &args, T(0), &ids[i], &dup, &seq) == 0);
    }
    queue_durable(s, UINT64_MAX, T(0));
    struct queue_state *r = replay_all(0);
    for (uint32_t i = 0; i < N; i++) {
        struct job *rj = queue_peek_id(r, ids[i]);
        REQUIRE(rj != NULL && queue_job_body(rj) != NULL);
        CHECK(rj->body_len == sizes[i] && memcmp(queue_job_body(rj), bodies[i], sizes[i]) == 0);
        struct job *j = reserve1(s, "b", 1, NULL);
        REQUIRE(j != NULL && j->id == ids[i] && queue_job_body(j) != NULL);
        CHECK(j->body_len == sizes[i] && memcmp(queue_job_body(j), bodies[i], sizes[i]) == 0);
        CHECK_EQ(queue_ack(s, j->id, queue_job_x(j)->lease_token, NULL, 0, T(1), NULL), 0);
        CHECK(queue_job_body(queue_job_find(s, ids[i])) == NULL); /* DONE: the body is not kept */
    }
    queue_state_destroy(r);
    queue_state_destroy(s);
}

static void test_pause_resume_and_purge(void)
{
    struct queue_state *s = make_state();
    put(s, "q", 0, 0);
    struct record_meta meta = {.name = "q", .name_len = 1, .paused = true,
                               .default_max_attempts = UINT32_MAX};
    CHECK_EQ(queue_set_meta(s, &meta, T(0), NULL), 0);
    CHECK(reserve1(s, "q", 0, NULL) == NULL);
    struct wake_log l = {0};
    struct queue_reserver r = {.queues = {queue_find(s, "q", 1)}, .queue_count = 1,
                               .count_max = 1, .deadline_ns = T(1000).mono_ns, .wake = record_wake,
                               .ctx = &l, .detach = true};
    struct job *jobs[1];
    CHECK_EQ(queue_reserve(s, &r, T(0), jobs), 0);
    meta.paused = false;
    CHECK_EQ(queue_set_meta(s, &meta, T(1), NULL), 0);
    CHECK_EQ(l.calls, 1); /* resume serves the blocked reserver */
    put(s, "q", 0, 2);
    put(s, "q", 0, 2);
    uint64_t deleted = 0;
    CHECK_EQ(queue_purge(s, "q", 1, T(3), &deleted, NULL), 0);
    CHECK_EQ(deleted, 2);
    struct queue_stats st;
    queue_stats_get(queue_find(s, "q", 1), T(3), &st);
    CHECK_EQ(st.ready, 0);
    CHECK_EQ(st.reserved, 1);
    CHECK_EQ(queue_purge(s, "nope", 4, T(3), &deleted, NULL), QUEUE_ENOTFOUND);
    queue_state_destroy(s);
}

static void test_lease_tokens_unique(void)
{
    struct queue_state *s = make_state();
    enum { N = 2000 };
    static uint64_t tokens[N];
    uint64_t id = put_full(s, "q", 0, 0, 0, 0, NULL, 0);
    queue_durable(s, UINT64_MAX, T(0));
    for (int i = 0; i < N; i++) {
        struct job *job = reserve1(s, "q", i, NULL);
        REQUIRE(job != NULL && job->id == id);
        tokens[i] = queue_job_x(job)->lease_token;
        CHECK_EQ(
            queue_release(s, id, queue_job_x(job)->lease_token, 0, UINT32_MAX, NULL, 0, T(i), NULL),
            0);
    }
    int dups = 0;
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            dups += tokens[i] == tokens[j];
    CHECK_EQ(dups, 0);
    queue_state_destroy(s);
}

/* Replay the fake log into a fresh state. */
static struct queue_state *replay_all_at(struct queue_time now)
{
    struct queue_config config;
    queue_config_defaults(&config);
    struct queue_state *r = queue_state_create(&config);
    for (uint32_t i = 0; i < fake.count; i++) {
        struct log_record rec = {.pos = fake.pos[i], .type = fake.type[i], .len = fake.len[i],
                                 .data = fake.data[i]};
        REQUIRE(queue_replay(r, &rec, now) == 0);
    }
    queue_recover_finish(r, now);
    return r;
}

static struct queue_state *replay_all(int64_t now)
{
    return replay_all_at(T(now));
}

/* The ready jobs below QUEUE_URGENT_PRIORITY, by a walk of the ready heap. */
static uint64_t urgent_walked(const struct queue *queue)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < queue->ready.count; i++)
        n += ((const struct job *)queue->ready.items[i])->priority < QUEUE_URGENT_PRIORITY;
    return n;
}

/* stats.ready_urgent follows jobs into and out of the ready heap, their priority changed on
 * the way (release, bury with a priority) across the threshold both ways: always what a walk
 * of the heap counts, and the same after a replay of the log. */
static void test_ready_urgent_counted(void)
{
    struct queue_state *s = make_state();
    static const uint32_t pris[] = {0, QUEUE_URGENT_PRIORITY - 1, QUEUE_URGENT_PRIORITY, 70000};
    uint64_t ids[4];
    for (int i = 0; i < 4; i++)
        ids[i] = put_full(s, "u", pris[i], 0, 0, 5, NULL, 0);
    struct queue *q = queue_find(s, "u", 1);
    REQUIRE(q != NULL);
    CHECK_EQ(q->stats.ready_urgent, 0); /* pending: not ready yet */
    queue_durable(s, UINT64_MAX, T(0));
    CHECK_EQ(q->stats.ready_urgent, 2);
    struct job *a = reserve1(s, "u", 0, NULL); /* priority 0 */
    REQUIRE(a != NULL && a->id == ids[0]);
    CHECK_EQ(q->stats.ready_urgent, 1);
    /* Released not urgent, and the 70000 one back urgent. */
    CHECK_EQ(queue_release(s, a->id, queue_job_x(a)->lease_token, 0, 5000, NULL, 0, T(1), NULL),
             0);
    CHECK_EQ(q->stats.ready_urgent, 1);
    struct job *b = reserve1(s, "u", 1, NULL); /* 1023 */
    struct job *c = reserve1(s, "u", 1, NULL); /* 1024 */
    struct job *d = reserve1(s, "u", 1, NULL); /* 5000, the released one */
    struct job *e = reserve1(s, "u", 1, NULL); /* 70000 */
    REQUIRE(b != NULL && c != NULL && d != NULL && e != NULL && e->id == ids[3]);
    CHECK_EQ(q->stats.ready_urgent, 0);
    CHECK_EQ(queue_release(s, e->id, queue_job_x(e)->lease_token, 0, 7, NULL, 0, T(2), NULL), 0);
    CHECK_EQ(queue_release(s, c->id, queue_job_x(c)->lease_token, 50, 1, NULL, 0, T(2), NULL),
             0); /* delayed: not ready, not counted */
    CHECK_EQ(q->stats.ready_urgent, 1);
    queue_tick(s, T(100)); /* the delay ran out */
    CHECK_EQ(q->stats.ready_urgent, 2);
    CHECK_EQ(queue_bury(s, b->id, queue_job_x(b)->lease_token, "x", 1, T(100), NULL), 0);
    uint32_t kicked = 0;
    CHECK_EQ(queue_kick(s, "u", 1, 5, T(100), &kicked, NULL), 0);
    CHECK_EQ(kicked, 1);
    CHECK_EQ(q->stats.ready_urgent, 3); /* 1023 kicked back */
    CHECK_EQ(queue_delete(s, b->id, T(101), NULL), 0);
    CHECK_EQ(queue_ack(s, d->id, queue_job_x(d)->lease_token, NULL, 0, T(101), NULL), 0);
    CHECK_EQ(q->stats.ready_urgent, 2);
    CHECK_EQ(q->stats.ready_urgent, urgent_walked(q));
    struct queue_state *r = replay_all(200);
    struct queue *rq = queue_find(r, "u", 1);
    REQUIRE(rq != NULL);
    CHECK_EQ(rq->stats.ready_urgent, urgent_walked(rq));
    CHECK_EQ(rq->stats.ready_urgent, 2);
    queue_state_destroy(r);
    queue_state_destroy(s);
}

static void test_replay_rebuilds_state_leases_void(void)
{
    struct queue_state *s = make_state();
    uint64_t acked = put(s, "q", 0, 0);
    uint64_t leased = put_full(s, "q", 1, 0, 0, 5, NULL, 0);
    uint64_t dead = put(s, "q", 2, 0);
    uint64_t released = put(s, "q", 3, 0);
    uint64_t spent = put_full(s, "q", 4, 0, 0, 1, NULL, 0);
    uint64_t kicked = put_full(s, "k", 0, 0, 0, 1, NULL, 0);
    uint64_t deleted = put(s, "q", 9, 0);
    queue_durable(s, UINT64_MAX, T(0));
    struct job *j = reserve1(s, "q", 0, NULL);
    CHECK_EQ(queue_ack(s, acked, queue_job_x(j)->lease_token, "r", 1, T(1), NULL), 0);
    j = reserve1(s, "q", 1, NULL);
    REQUIRE(j->id == leased); /* leased at crash time */
    j = reserve1(s, "q", 1, NULL);
    CHECK_EQ(queue_bury(s, dead, queue_job_x(j)->lease_token, "why", 3, T(2), NULL), 0);
    j = reserve1(s, "q", 2, NULL);
    CHECK_EQ(queue_release(s, released, queue_job_x(j)->lease_token, 0, 7, NULL, 0, T(3), NULL), 0);
    j = reserve1(s, "q", 3, NULL);
    REQUIRE(j->id == spent); /* its only attempt, unacked at crash time */
    j = reserve1(s, "k", 3, NULL);
    queue_tick(s, T(3 + 1000)); /* k's job expires into dead */
    CHECK_EQ(queue_kick_job(s, kicked, T(1100), NULL), 0);
    CHECK_EQ(queue_delete(s, deleted, T(1100), NULL), 0);
    struct queue_state *r = replay_all(5000);
    CHECK(queue_peek_id(r, acked) == NULL);
    struct queue_job_status st;
    REQUIRE(queue_status(r, acked, &st));
    CHECK_EQ(st.state, JOB_DONE);
    struct job *x = queue_peek_id(r, leased);
    REQUIRE(x != NULL);
    CHECK_EQ(x->state, JOB_READY); /* lease void */
    CHECK_EQ(x->attempts, 1);      /* attempt count kept */
    x = queue_peek_id(r, dead);
    REQUIRE(x != NULL);
    CHECK_EQ(x->state, JOB_DEAD);
    CHECK(queue_job_x(x)->reason_len == 3 && memcmp(queue_job_x(x)->reason, "why", 3) == 0);
    x = queue_peek_id(r, released);
    REQUIRE(x != NULL);
    CHECK(x->state == JOB_READY && x->priority == 7);
    x = queue_peek_id(r, spent);
    REQUIRE(x != NULL);
    CHECK_EQ(x->state, JOB_DEAD);
    x = queue_peek_id(r, kicked);
    REQUIRE(x != NULL);
    CHECK(x->state == JOB_READY && x->attempts == 0);
    CHECK(queue_peek_id(r, deleted) == NULL);
    CHECK(x->body_len == 4 && memcmp(queue_job_body(x), "body", 4) == 0);
    /* New ids continue after the replayed ones. */
    uint64_t nid, seq;
    bool dup;
    struct queue_put_args args = {.queue = "q", .queue_len = 1, .body = "x", .body_len = 1,
                                  .max_attempts = -1};
    CHECK_EQ(queue_put(r, &args, T(6000), &nid, &dup, &seq), 0);
    CHECK_EQ(nid, deleted + 1);
    queue_state_destroy(r);
    queue_state_destroy(s);
}

/* The beanstalkd protocol's reserve-job and kicks of delayed jobs (queue.c): a ready, delayed
 * or dead job is leased by id to its owner; a pending or reserved one is not found. A delayed
 * job kicked is ready at once, and stays ready after replay (its RELEASE record). */
static void test_reserve_job_and_kick_delayed(void)
{
    struct queue_state *s = make_state();
    struct queue_owner owner;
    queue_owner_init(&owner);
    uint64_t ready = put(s, "b", 5, 0);
    uint64_t delayed = put_full(s, "b", 6, 60000, 0, -1, NULL, 0);
    uint64_t pending = put_full(s, "b", 7, 0, 0, -1, NULL, 0); /* not durable yet */
    queue_durable(s, fake.count, T(0)); /* every record but the last */
    struct job *j = NULL;
    CHECK_EQ(queue_reserve_job(s, pending, &owner, T(1), &j), QUEUE_ENOTFOUND);
    CHECK_EQ(queue_reserve_job(s, 999, &owner, T(1), &j), QUEUE_ENOTFOUND);
    CHECK_EQ(queue_reserve_job(s, delayed, &owner, T(1), &j), 0);
    REQUIRE(j != NULL && j->id == delayed);
    CHECK(j->state == JOB_RESERVED && queue_job_x(j)->owner == &owner && j->attempts == 1);
    CHECK_EQ(queue_reserve_job(s, delayed, &owner, T(1), &j), QUEUE_ENOTFOUND); /* reserved */
    CHECK_EQ(queue_bury(s, delayed, queue_job_x(j)->lease_token, "x", 1, T(2), NULL), 0);
    CHECK_EQ(queue_reserve_job(s, delayed, &owner, T(3), &j), 0); /* dead: leased too */
    CHECK_EQ(j->state, JOB_RESERVED);
    CHECK_EQ(queue_release(s, delayed, queue_job_x(j)->lease_token, 60000, UINT32_MAX, NULL, 0,
                           T(4), NULL),
             0);
    CHECK_EQ(queue_peek_id(s, delayed)->state, JOB_DELAYED);
    CHECK_EQ(queue_kick_delayed_job(s, ready, T(5), NULL), QUEUE_ESTATE);
    CHECK_EQ(queue_kick_delayed_job(s, 999, T(5), NULL), QUEUE_ENOTFOUND);
    uint32_t kicked = 0;
    CHECK_EQ(queue_kick_delayed(s, "b", 1, 10, T(5), &kicked, NULL), 0);
    CHECK_EQ(kicked, 1);
    CHECK_EQ(queue_peek_id(s, delayed)->state, JOB_READY);
    CHECK_EQ(queue_kick_delayed(s, "nosuch", 6, 10, T(5), &kicked, NULL), 0);
    CHECK_EQ(kicked, 0);
    uint64_t later = put_full(s, "b", 8, 60000, 0, -1, NULL, 6);
    queue_durable(s, UINT64_MAX, T(6));
    CHECK_EQ(queue_kick_delayed_job(s, later, T(7), NULL), 0);
    CHECK_EQ(queue_peek_id(s, later)->state, JOB_READY);
    queue_owner_release(s, &owner, T(8));
    struct queue_state *r = replay_all(9);
    CHECK_EQ(queue_peek_id(r, delayed)->state, JOB_READY);
    CHECK_EQ(queue_peek_id(r, later)->state, JOB_READY);
    CHECK_EQ(queue_peek_id(r, ready)->state, JOB_READY);
    queue_state_destroy(r);
    queue_state_destroy(s);
}

/* A crash right after settling: replay long afterwards keeps each job's settle time (ACK and
 * BURY version 2 carry it; the expiry of a last attempt logs its BURY with it too), not the
 * time of the replay. */
static void test_replay_keeps_settle_times(void)
{
    struct queue_state *s = make_state();
    uint64_t acked = put(s, "q", 0, 0);
    uint64_t buried = put(s, "q", 1, 0);
    uint64_t spent = put_full(s, "q", 2, 0, 0, 1, NULL, 0);
    queue_durable(s, UINT64_MAX, T(0));
    struct job *j = reserve1(s, "q", 10, NULL);
    CHECK_EQ(queue_ack(s, acked, queue_job_x(j)->lease_token, "r", 1, T(1700000000123), NULL), 0);
    j = reserve1(s, "q", 10, NULL);
    CHECK_EQ(queue_bury(s, buried, queue_job_x(j)->lease_token, "why", 3, T(1700000000456), NULL),
             0);
    j = reserve1(s, "q", 20, NULL);
    REQUIRE(j != NULL && j->id == spent);
    queue_tick(s, T(20 + 1000)); /* its only lease expires: dead at 1020 */
    struct queue_job_status st;
    REQUIRE(queue_status(s, spent, &st));
    CHECK(st.state == JOB_DEAD && st.settled_ms == 1020);
    struct queue_state *r = replay_all(1800000000000);
    REQUIRE(queue_status(r, acked, &st));
    CHECK_EQ(st.state, JOB_DONE);
    CHECK_EQ(st.settled_ms, 1700000000123);
    REQUIRE(queue_status(r, buried, &st));
    CHECK_EQ(st.state, JOB_DEAD);
    CHECK_EQ(st.settled_ms, 1700000000456);
    REQUIRE(queue_status(r, spent, &st));
    CHECK_EQ(st.state, JOB_DEAD);
    CHECK_EQ(st.settled_ms, 1020);
    queue_state_destroy(r);
    queue_state_destroy(s);
}

/* A clock pair: Unix ms on the wall clock and ms on the monotonic clock, each plus some ns. */
static struct queue_time clocks(int64_t wall_ms, int64_t mono_ms, int64_t extra_ns)
{
    return (struct queue_time){.wall_ns = wall_ms * QUEUE_NS_PER_MS + extra_ns,
                               .mono_ns = mono_ms * QUEUE_NS_PER_MS + extra_ns};
}

#define WALL_BASE_MS 1700000000000LL
#define HOUR_MS (3600LL * 1000)

/* A job's state, or -1 when the state machine no longer knows it (a failed check, not a
 * stop: the rest of the test still runs). */
static int state_of(struct queue_state *s, uint64_t id)
{
    struct job *job = queue_job_find(s, id);
    return job == NULL ? -1 : (int)job->state;
}

/* The wall clock jumps 48 hours ahead, then 1 hour back, while the monotonic clock runs on:
 * every timer (a delay, a ttl, a lease, a blocked reserve's timeout, the idempotency window)
 * fires when its span has passed on the monotonic clock, neither sooner nor later. */
static void test_wall_clock_steps_move_no_timer(void)
{
    struct queue_state *s = make_state();
    struct queue_time t0 = clocks(WALL_BASE_MS, 50, 0);
    uint64_t delayed = put_full_at(s, "d", 0, 500, 0, -1, NULL, t0); /* ready at mono 550 */
    uint64_t ttl = put_full_at(s, "t", 0, 0, 300, -1, NULL, t0);     /* gone at mono 350 */
    uint64_t leased = put_full_at(s, "l", 0, 0, 0, -1, NULL, t0);    /* ttr 1000: 1050 */
    uint64_t keyed = put_full_at(s, "k", 0, 0, 0, -1, "key-1", t0);
    queue_durable(s, UINT64_MAX, t0);
    struct job *held = reserve1_at(s, "l", t0, NULL);
    REQUIRE(held != NULL && held->id == leased);
    CHECK_EQ(queue_job_x(held)->deadline_ms,
             WALL_BASE_MS + 1000); /* told to the worker in Unix ms */
    struct queue *none;
    REQUIRE(queue_get(s, "none", 4, &none) == 0);
    struct wake_log log = {0};
    struct queue_reserver waiting = one_job_reserver(none, 0, &log);
    waiting.deadline_ns = clocks(0, 200, 0).mono_ns; /* a 150 ms reserve timeout */
    struct job *jobs[1];
    CHECK_EQ(queue_reserve(s, &waiting, t0, jobs), 0);
    /* 48 hours ahead on the wall, 10 ms on the monotonic clock: nothing is due. */
    struct queue_time ahead = clocks(WALL_BASE_MS + 48 * HOUR_MS, 60, 0);
    queue_tick(s, ahead);
    CHECK_EQ(state_of(s, delayed), JOB_DELAYED);
    CHECK_EQ(state_of(s, ttl), JOB_READY);
    CHECK_EQ(state_of(s, leased), JOB_RESERVED);
    CHECK_EQ(log.calls, 0);
    uint64_t id = 0, seq = 0;
    bool dup = false;
    struct queue_put_args again = {.queue = "k", .queue_len = 1, .key = "key-1", .key_len = 5,
                                   .body = "b", .body_len = 1, .max_attempts = -1};
    REQUIRE(queue_put(s, &again, ahead, &id, &dup, &seq) == 0);
    CHECK(dup && id == keyed); /* the key's 24 h window has not passed */
    CHECK(next_deadline_ms(s) == 200);
    /* One hour back on the wall: each timer fires at its monotonic instant all the same. */
    int64_t back_ms = WALL_BASE_MS - HOUR_MS;
    queue_tick(s, clocks(back_ms, 199, 999999));
    CHECK_EQ(log.calls, 0);
    queue_tick(s, clocks(back_ms, 200, 0));
    CHECK(log.calls == 1 && log.count == 0);
    queue_tick(s, clocks(back_ms, 349, 999999));
    CHECK_EQ(state_of(s, ttl), JOB_READY);
    queue_tick(s, clocks(back_ms, 350, 0));
    CHECK_EQ(state_of(s, ttl), JOB_EXPIRED);
    queue_tick(s, clocks(back_ms, 549, 999999));
    CHECK_EQ(state_of(s, delayed), JOB_DELAYED);
    queue_tick(s, clocks(back_ms, 550, 0));
    CHECK_EQ(state_of(s, delayed), JOB_READY);
    queue_tick(s, clocks(back_ms, 1049, 999999));
    CHECK_EQ(state_of(s, leased), JOB_RESERVED);
    queue_tick(s, clocks(back_ms, 1050, 0));
    CHECK_EQ(state_of(s, leased), JOB_READY);
    queue_state_destroy(s);
}

/* Reserved, touched, delayed and ttl'd at 0.9 ms past a whole wall-clock ms: the lease ends no
 * sooner than its full ttr after it began (nor before the deadline the worker was told), and
 * the delay and the ttl run their full span too. Truncating now to ms would end each 0.9 ms
 * early. */
static void test_lease_never_ends_before_ttr(void)
{
    struct queue_state *s = make_state();
    const int64_t sub_ns = 900000; /* 0.9 ms */
    struct queue_time t0 = clocks(WALL_BASE_MS, 5000, sub_ns);
    uint64_t id = put_full_at(s, "q", 0, 0, 0, -1, NULL, t0);
    queue_durable(s, UINT64_MAX, t0);
    struct job *job = reserve1_at(s, "q", t0, NULL);
    REQUIRE(job != NULL && job->id == id);
    /* The worker's deadline is rounded up: at least ttr (1000 ms) after the reserve. */
    CHECK(queue_job_x(job)->deadline_ms * QUEUE_NS_PER_MS >= t0.wall_ns + 1000 * QUEUE_NS_PER_MS);
    CHECK_EQ(queue_job_x(job)->deadline_ms, WALL_BASE_MS + 1001);
    /* 1 ns short of the full ttr on either clock: still held. */
    queue_tick(s, clocks(WALL_BASE_MS + 1000, 6000, sub_ns - 1));
    CHECK_EQ(state_of(s, id), JOB_RESERVED);
    /* The full ttr and a whole ms more (the rounding): over. */
    queue_tick(s, clocks(WALL_BASE_MS + 1001, 6001, sub_ns));
    CHECK_EQ(state_of(s, id), JOB_READY);
    /* Touch at 0.9 ms past a ms: the extension runs in full as well. */
    struct queue_time t1 = clocks(WALL_BASE_MS + 2000, 7000, sub_ns);
    job = reserve1_at(s, "q", t1, NULL);
    REQUIRE(job != NULL);
    int64_t deadline_ms = 0;
    CHECK_EQ(queue_touch(s, id, queue_job_x(job)->lease_token, 50,
                         clocks(WALL_BASE_MS + 2500, 7500, sub_ns), &deadline_ms),
             0);
    CHECK_EQ(deadline_ms, WALL_BASE_MS + 2551);
    queue_tick(s, clocks(WALL_BASE_MS + 2550, 7550, sub_ns - 1));
    CHECK_EQ(state_of(s, id), JOB_RESERVED);
    queue_tick(s, clocks(WALL_BASE_MS + 2551, 7551, sub_ns));
    CHECK_EQ(state_of(s, id), JOB_READY);
    queue_state_destroy(s);
    /* The delay and the ttl, 1 ns short of 10 ms, then at their rounded-up end. */
    s = make_state();
    uint64_t later = put_full_at(s, "d", 0, 10, 0, -1, NULL, t0);
    uint64_t brief = put_full_at(s, "t", 0, 0, 10, -1, NULL, t0);
    queue_durable(s, UINT64_MAX, t0);
    queue_tick(s, clocks(WALL_BASE_MS + 10, 5010, sub_ns - 1));
    CHECK_EQ(state_of(s, later), JOB_DELAYED);
    CHECK_EQ(state_of(s, brief), JOB_READY);
    queue_tick(s, clocks(WALL_BASE_MS + 11, 5011, 0));
    CHECK_EQ(state_of(s, later), JOB_READY);
    CHECK_EQ(state_of(s, brief), JOB_EXPIRED);
    queue_state_destroy(s);
}

/* Replay after a crash (a new boot: the monotonic clock restarted near 0) turns the logged
 * Unix-ms run-at and expiry into monotonic deadlines once; a wall clock step after that moves
 * neither. */
static void test_replay_converts_times_once(void)
{
    struct queue_state *s = make_state();
    struct queue_time t0 = clocks(WALL_BASE_MS, 900000, 0);
    uint64_t delayed = put_full_at(s, "d", 0, 500, 0, -1, NULL, t0); /* Unix ms +500 */
    uint64_t ttl = put_full_at(s, "t", 0, 0, 800, -1, NULL, t0);     /* Unix ms +800 */
    queue_durable(s, UINT64_MAX, t0);
    /* Back up 100 ms of wall time later, at monotonic 7 ms. */
    struct queue_time boot = clocks(WALL_BASE_MS + 100, 7, 0);
    struct queue_state *r = replay_all_at(boot);
    CHECK_EQ(state_of(r, delayed), JOB_DELAYED);
    CHECK_EQ(next_deadline_ms(r), 7 + 400);
    int64_t jumped_ms = WALL_BASE_MS + 24 * HOUR_MS; /* then the wall clock jumps */
    queue_tick(r, clocks(jumped_ms, 406, 999999));
    CHECK_EQ(state_of(r, delayed), JOB_DELAYED);
    CHECK_EQ(state_of(r, ttl), JOB_READY);
    queue_tick(r, clocks(jumped_ms, 407, 0));
    CHECK_EQ(state_of(r, delayed), JOB_READY);
    queue_tick(r, clocks(jumped_ms, 706, 999999));
    CHECK_EQ(state_of(r, ttl), JOB_READY);
    queue_tick(r, clocks(jumped_ms, 707, 0));
    CHECK_EQ(state_of(r, ttl), JOB_EXPIRED);
    queue_state_destroy(r);
    queue_state_destroy(s);
}

static void count_unloaded(void *ctx, struct job *job)
{
    (void)job;
    (*(int *)ctx)++;
}

/* A checkpoint keeps each queue's live jobs in put order: after loading, the oldest live job
 * (ack_floor, what retention follows) is the same as before, however the job map hashes. */
static void test_checkpoint_keeps_live_order(void)
{
    struct queue_state *s = make_state();
    uint64_t first = 0;
    for (int i = 0; i < 200; i++) {
        uint64_t id = put(s, "ordered", 0, 0);
        if (i == 0)
            first = id;
    }
    queue_durable(s, UINT64_MAX, T(0));
    struct queue_stats before;
    queue_stats_get(queue_find(s, "ordered", 7), T(0), &before);
    uint8_t *payload;
    uint32_t len;
    REQUIRE(queue_checkpoint_encode(s, &payload, &len) == 0);
    struct queue_config config;
    queue_config_defaults(&config);
    struct queue_state *r = queue_state_create(&config);
    REQUIRE(queue_checkpoint_load(r, payload, len, T(0)) == 0);
    struct queue_stats after;
    queue_stats_get(queue_find(r, "ordered", 7), T(0), &after);
    CHECK_EQ(after.ack_floor, before.ack_floor);
    CHECK_EQ(after.ack_floor, queue_job_pos(queue_peek_id(s, first)).segment_id);
    CHECK(after.ack_floor <= queue_peek_id(s, first)->pos_seq);
    free(payload);
    queue_state_destroy(r);
    queue_state_destroy(s);
}

static void test_checkpoint_roundtrip(void)
{
    struct queue_state *s = make_state();
    uint64_t a = put(s, "alpha", 3, 0);
    uint64_t b = put_full(s, "beta", 1, 10000, 0, 4, "idem", 0);
    uint64_t c = put(s, "alpha", 2, 0);
    queue_durable(s, UINT64_MAX, T(0));
    struct job *j = reserve1(s, "alpha", 0, NULL);
    REQUIRE(j->id == c);
    CHECK_EQ(queue_bury(s, c, queue_job_x(j)->lease_token, "poison", 6, T(1), NULL), 0);
    j = reserve1(s, "alpha", 1, NULL); /* a: reserved at checkpoint time */
    REQUIRE(j->id == a);
    uint64_t done = put(s, "gamma", 0, 1); /* acked with a result: remembered */
    struct job *g = reserve1(s, "gamma", 1, NULL);
    REQUIRE(g != NULL && g->id == done);
    CHECK_EQ(queue_ack(s, done, queue_job_x(g)->lease_token, "42", 2, T(2), NULL), 0);
    /* Issue 10: a job whose ttl ran out is saved as EXPIRED (version 4), and keys per queue. */
    uint64_t gone = put_full(s, "delta", 0, 0, 5, -1, "idem", 2);
    queue_durable(s, UINT64_MAX, T(2));
    queue_tick(s, T(7));
    REQUIRE(state_of(s, gone) == JOB_EXPIRED);
    uint8_t *payload;
    uint32_t len;
    REQUIRE(queue_checkpoint_encode(s, &payload, &len) == 0);
    struct queue_config config;
    queue_config_defaults(&config);
    struct queue_state *r = queue_state_create(&config);
    REQUIRE(queue_checkpoint_load(r, payload, len, T(100)) == 0);
    struct queue_job_status gone_status;
    REQUIRE(queue_status(r, gone, &gone_status));
    CHECK_EQ(gone_status.state, JOB_EXPIRED);
    CHECK_EQ(gone_status.settled_ms, 7);
    struct queue_stats delta_stats;
    queue_stats_get(queue_find(r, "delta", 5), T(100), &delta_stats);
    CHECK_EQ(delta_stats.expired, 1);
    { /* and what was loaded saves again */
        uint8_t *again;
        uint32_t again_len;
        REQUIRE(queue_checkpoint_encode(r, &again, &again_len) == 0);
        struct queue_state *r2 = queue_state_create(&config);
        CHECK_EQ(queue_checkpoint_load(r2, again, again_len, T(100)), 0);
        queue_state_destroy(r2);
        free(again);
    }
    struct job *x = queue_peek_id(r, a);
    REQUIRE(x != NULL);
    CHECK(x->state == JOB_READY && x->attempts == 1 && queue_job_body(x) == NULL &&
          x->body_len == 4);
    x = queue_peek_id(r, b);
    REQUIRE(x != NULL);
    CHECK(x->state == JOB_DELAYED && queue_job_x(x)->run_at_ms == 10000 && x->max_attempts == 4);
    x = queue_peek_id(r, c);
    REQUIRE(x != NULL);
    CHECK(x->state == JOB_DEAD && queue_job_x(x)->reason_len == 6);
    CHECK_EQ(queue_segment_live(r, 1), 3);
    struct queue_job_status done_status;
    REQUIRE(queue_status(r, done, &done_status));
    CHECK_EQ(done_status.state, JOB_DONE);
    CHECK(done_status.result_len == 2 && memcmp(done_status.result, "42", 2) == 0);
    CHECK(queue_job_find(r, done)->queue == queue_find(r, "gamma", 5));
    struct queue_stats st;
    queue_stats_get(queue_find(r, "alpha", 5), T(100), &st);
    CHECK_EQ(st.total_put, 2);
    int unloaded = 0;
    queue_each_unloaded(r, count_unloaded, &unloaded);
    CHECK_EQ(unloaded, 3);
    x = queue_peek_id(r, a);
    queue_body_loaded(r, x, "body", 4);
    CHECK(queue_job_body(x) != NULL && memcmp(queue_job_body(x), "body", 4) == 0);
    /* The idempotency key survives. */
    struct queue_put_args args = {.queue = "beta", .queue_len = 4, .key = "idem", .key_len = 4,
                                  .body = "x", .body_len = 1, .max_attempts = -1};
    uint64_t id, seq;
    bool dup;
    CHECK_EQ(queue_put(r, &args, T(200), &id, &dup, &seq), 0);
    CHECK(dup && id == b);
    args.queue = "delta"; /* the same key in another queue is its own */
    args.queue_len = 5;
    CHECK_EQ(queue_put(r, &args, T(200), &id, &dup, &seq), 0);
    CHECK(dup && id == gone);
    /* Every truncation is refused; so is a flipped magic. */
    for (uint32_t n = 0; n < len; n += 7) {
        struct queue_state *t = queue_state_create(&config);
        CHECK_EQ(queue_checkpoint_load(t, payload, n, T(100)), RECORD_EINVAL);
        queue_state_destroy(t);
    }
    payload[0] ^= 1;
    struct queue_state *t = queue_state_create(&config);
    CHECK_EQ(queue_checkpoint_load(t, payload, len, T(100)), RECORD_EINVAL);
    queue_state_destroy(t);
    free(payload);
    queue_state_destroy(r);
    queue_state_destroy(s);
}

/* Random byte flips in a valid checkpoint: the loader refuses or accepts, never crashes or
 * reads out of bounds (the sanitizer build checks the latter). */
/* A version-1 checkpoint payload (no done section, 40-byte header) still loads. */
/* Issue 10: a version 3 checkpoint (keys global, done entries without a state byte) still
 * loads: a key is scoped to its job's queue, one whose job is unknown is dropped, and a done
 * entry is DONE. Bytes made by hand in the version 3 layout of RECORDS.md. */
static void test_checkpoint_version3_loads(void)
{
    uint8_t p[256];
    memset(p, 0, sizeof(p));
    le_put_u32(p, 0x53515053u); /* "SPQS" */
    le_put_u16(p + 4, 3);
    le_put_u64(p + 8, 100);      /* next_id */
    le_put_u32(p + 24, 1);       /* queue_count */
    le_put_u32(p + 28, 2);       /* idem_count */
    le_put_u64(p + 32, 0);       /* job_count */
    le_put_u32(p + 40, 1);       /* done_count */
    uint8_t *q = p + 48;         /* queue "mail" */
    le_put_u16(q, 4);
    le_put_u32(q + 4, UINT32_MAX);
    memcpy(q + 40, "mail", 4);
    uint8_t *k = q + 44; /* key "k1" of job 50 (the done job), "k2" of job 60 (unknown) */
    le_put_u16(k, 2);
    le_put_u64(k + 8, 50);
    le_put_u64(k + 16, (uint64_t)WALL_BASE_MS);
    memcpy(k + 24, "k1", 2);
    k += 26;
    le_put_u16(k, 2);
    le_put_u64(k + 8, 60);
    le_put_u64(k + 16, (uint64_t)WALL_BASE_MS);
    memcpy(k + 24, "k2", 2);
    uint8_t *d = k + 26; /* done job 50 of queue 0, result "ok" */
    le_put_u64(d, 50);
    le_put_u32(d + 20, 2);
    le_put_u64(d + 40, (uint64_t)WALL_BASE_MS + 5);
    d[52] = 0xEE; /* pad in version 3: ignored */
    memcpy(d + 56, "ok", 2);
    uint32_t len = (uint32_t)(d + 58 - p);
    struct queue_config config;
    queue_config_defaults(&config);
    struct queue_state *r = queue_state_create(&config);
    struct queue_time now = clocks(WALL_BASE_MS + 10, 10, 0);
    REQUIRE(queue_checkpoint_load(r, p, len, now) == 0);
    struct queue_job_status st;
    REQUIRE(queue_status(r, 50, &st));
    CHECK_EQ(st.state, JOB_DONE);
    CHECK(st.result_len == 2 && memcmp(st.result, "ok", 2) == 0);
    struct queue_totals totals;
    queue_totals_get(r, &totals);
    CHECK_EQ(totals.keys, 1);
    struct queue_put_args args = {.queue = "mail", .queue_len = 4, .key = "k1", .key_len = 2,
                                  .body = "x", .body_len = 1, .max_attempts = -1};
    uint64_t id, seq;
    bool dup;
    CHECK_EQ(queue_put(r, &args, now, &id, &dup, &seq), 0);
    CHECK(dup && id == 50);
    args.queue = "other"; /* scoped to mail now */
    args.queue_len = 5;
    CHECK_EQ(queue_put(r, &args, now, &id, &dup, &seq), 0);
    CHECK(!dup && id == 100);
    queue_state_destroy(r);
}

/* Issue 10: a queue with a waiting reserver, paused or not, is kept (the reserver points to
 * it); once the reserver is gone and the queue is empty it is forgotten; a queue limit refuses
 * a new name but not an existing one. */
static void test_idle_queues_forgotten(void)
{
    struct queue_config config;
    queue_config_defaults(&config);
    config.queues_max = 2;
    struct queue_state *s = queue_state_create(&config); /* nothing here is logged */
    struct queue *w;
    REQUIRE(queue_get(s, "w", 1, &w) == 0);
    struct wake_log log = {0};
    struct queue_reserver r = one_job_reserver(w, 5000, &log);
    struct job *jobs[4];
    CHECK_EQ(queue_reserve(s, &r, T(0), jobs), 0);
    queue_reserver_pause(s, &r);
    queue_tick(s, T(1));
    CHECK(queue_find(s, "w", 1) == w); /* paused, still waiting: kept */
    struct queue *x;
    REQUIRE(queue_get(s, "x", 1, &x) == 0);
    struct queue *y = NULL;
    CHECK_EQ(queue_get(s, "y", 1, &y), QUEUE_ETOOMANY);
    CHECK_EQ(queue_get(s, "x", 1, &x), 0);
    queue_tick(s, T(2)); /* x: empty, nobody waits: forgotten */
    CHECK(queue_find(s, "x", 1) == NULL);
    queue_reserver_resume(s, &r);
    queue_reserver_cancel(s, &r);
    queue_tick(s, T(3));
    CHECK(queue_find(s, "w", 1) == NULL);
    struct queue_totals totals;
    queue_totals_get(s, &totals);
    CHECK_EQ(totals.queues, 0);
    CHECK_EQ(log.calls, 0);
    queue_state_destroy(s);
}

/* Issue 10: DELETE_QUEUE, forced, deletes reserved jobs too, and replay of the log ends in the
 * same state (no queue, no job, the key free). */
static void test_delete_queue_replays(void)
{
    fake_reset();
    struct queue_state *s = make_state();
    uint64_t a = put_full(s, "dq", 0, 0, 0, -1, "key", 0);
    uint64_t b = put(s, "dq", 0, 0);
    uint64_t other = put(s, "keep", 0, 0);
    queue_durable(s, UINT64_MAX, T(0));
    struct job *held = reserve1(s, "dq", 1, NULL);
    REQUIRE(held != NULL && held->id == a);
    uint64_t token = queue_job_x(held)->lease_token;
    uint64_t deleted = 0;
    CHECK_EQ(queue_delete_queue(s, "dq", 2, false, T(2), &deleted, NULL), QUEUE_ESTATE);
    CHECK_EQ(queue_delete_queue(s, "nq", 2, true, T(2), &deleted, NULL), QUEUE_ENOTFOUND);
    CHECK_EQ(queue_delete_queue(s, "dq", 2, true, T(2), &deleted, NULL), 0);
    CHECK_EQ(deleted, 2);
    CHECK_EQ(queue_ack(s, a, token, NULL, 0, T(3), NULL), QUEUE_ENOTFOUND);
    CHECK(queue_job_find(s, b) == NULL);
    queue_tick(s, T(3));
    CHECK(queue_find(s, "dq", 2) == NULL);
    struct queue_state *r = replay_all_at(T(10));
    queue_tick(r, T(10));
    CHECK(queue_find(r, "dq", 2) == NULL);
    CHECK(queue_job_find(r, a) == NULL && queue_job_find(r, b) == NULL);
    CHECK(queue_job_find(r, other) != NULL);
    uint64_t again = put_full(r, "dq", 0, 0, 0, -1, "key", 20);
    CHECK(again != a);
    queue_state_destroy(r);
    queue_state_destroy(s);
}

static void test_checkpoint_version1_loads(void)
{
    uint8_t v1[40] = {0x53, 0x50, 0x51, 0x53, 0x01, 0x00, 0x00, 0x00, /* "SPQS", version 1 */
                      0x07, 0, 0, 0, 0, 0, 0, 0,                      /* next_id 7 */
                      0x03, 0, 0, 0, 0, 0, 0, 0};                     /* lease_counter 3 */
    struct queue_config config;
    queue_config_defaults(&config);
    struct queue_state *r = queue_state_create(&config);
    REQUIRE(queue_checkpoint_load(r, v1, sizeof(v1), T(0)) == 0);
    struct queue_put_args args = {.queue = "q", .queue_len = 1, .body = "x", .body_len = 1,
                                  .max_attempts = -1};
    uint64_t id, seq;
    bool dup;
    CHECK_EQ(queue_put(r, &args, T(0), &id, &dup, &seq), 0);
    CHECK_EQ(id, 7);
    v1[4] = 9; /* a version from the future is refused */
    struct queue_state *t = queue_state_create(&config);
    CHECK_EQ(queue_checkpoint_load(t, v1, sizeof(v1), T(0)), RECORD_EINVAL);
    queue_state_destroy(t);
    queue_state_destroy(r);
}

/* DONE jobs are remembered for wait/status only up to done_keep_max, oldest forgotten first. */
static void test_done_jobs_bounded(void)
{
    fake_reset();
    struct queue_config config;
    queue_config_defaults(&config);
    config.emit = fake_emit;
    config.emit_ctx = &fake;
    config.done_keep_max = 2;
    struct queue_state *s = queue_state_create(&config);
    uint64_t ids[3];
    for (int i = 0; i < 3; i++) {
        ids[i] = put(s, "q", 0, i);
        struct job *j = reserve1(s, "q", i, NULL);
        REQUIRE(j != NULL && j->id == ids[i]);
        CHECK_EQ(queue_ack(s, ids[i], queue_job_x(j)->lease_token, "r", 1, T(i), NULL), 0);
    }
    struct queue_job_status st;
    CHECK(!queue_status(s, ids[0], &st));
    CHECK(queue_status(s, ids[1], &st) && st.state == JOB_DONE);
    CHECK(queue_status(s, ids[2], &st) && st.state == JOB_DONE);
    queue_state_destroy(s);
}

static void test_checkpoint_mutations_never_crash(void)
{
    struct queue_state *s = make_state();
    put_full(s, "alpha", 3, 0, 0, -1, "k1", 0);
    put_full(s, "beta", 1, 5000, 1000, 4, NULL, 0);
    queue_durable(s, UINT64_MAX, T(0));
    struct job *j = reserve1(s, "alpha", 0, NULL);
    REQUIRE(j != NULL);
    CHECK_EQ(queue_bury(s, j->id, queue_job_x(j)->lease_token, "dead", 4, T(1), NULL), 0);
    uint8_t *payload;
    uint32_t len;
    REQUIRE(queue_checkpoint_encode(s, &payload, &len) == 0);
    struct queue_config config;
    queue_config_defaults(&config);
    uint32_t x = 7;
    int accepted = 0;
    for (int round = 0; round < 3000; round++) {
        uint8_t *copy = malloc(len);
        memcpy(copy, payload, len);
        for (int flips = 0; flips < 1 + round % 4; flips++) {
            x = x * 1103515245u + 12345u;
            copy[(x >> 8) % len] ^= (uint8_t)(1u << (x % 8));
        }
        struct queue_state *t = queue_state_create(&config);
        accepted += queue_checkpoint_load(t, copy, len, T(100)) == 0;
        queue_state_destroy(t);
        free(copy);
    }
    CHECK(accepted < 3000); /* most flips land in fields that are checked */
    free(payload);
    queue_state_destroy(s);
}

/* A version-2 payload (fixed 104-byte job records) still loads now that version 3 packs the
 * job section: one queue, one dead job and one delayed job, every field checked. */
static void test_checkpoint_version2_loads(void)
{
    uint8_t v2[48 + 40 + 2 + 2 * 104 + 3];
    memset(v2, 0, sizeof(v2));
    le_put_u32(v2, 0x53515053u); /* "SPQS" */
    le_put_u16(v2 + 4, 2);
    le_put_u64(v2 + 8, 50);      /* next_id */
    le_put_u64(v2 + 16, 9);      /* lease_counter */
    le_put_u32(v2 + 24, 1);      /* queues */
    le_put_u64(v2 + 32, 2);      /* jobs */
    uint8_t *q = v2 + 48;
    le_put_u16(q, 2);
    le_put_u32(q + 4, UINT32_MAX);
    le_put_u64(q + 32, 7); /* total_put */
    memcpy(q + 40, "qq", 2);
    uint8_t *j = q + 42;
    le_put_u64(j, 41);
    j[12] = JOB_DEAD;
    le_put_u16(j + 14, 3);
    le_put_u32(j + 16, 5);       /* priority */
    le_put_u32(j + 20, 2);       /* attempts */
    le_put_u32(j + 24, 3);       /* max_attempts */
    le_put_u32(j + 28, 100);     /* body_len */
    le_put_u64(j + 32, 30000);   /* ttr */
    le_put_u64(j + 40, 1000);    /* created */
    le_put_u64(j + 64, 1500);    /* settled */
    le_put_u64(j + 72, 77);      /* seq */
    le_put_u64(j + 80, 1);       /* segment */
    le_put_u64(j + 88, 8192);    /* batch_offset */
    uint8_t *k = j + 104;
    memcpy(k, "why", 3);
    k += 3;
    le_put_u64(k, 42);
    k[12] = JOB_DELAYED;
    le_put_u32(k + 28, 4);
    le_put_u64(k + 48, 900000);  /* run_at */
    le_put_u64(k + 72, 78);
    le_put_u64(k + 80, 1);
    le_put_u64(k + 88, 8192);
    struct queue_config config;
    queue_config_defaults(&config);
    struct queue_state *r = queue_state_create(&config);
    REQUIRE(queue_checkpoint_load(r, v2, sizeof(v2), T(2000)) == 0);
    struct job *x = queue_peek_id(r, 41);
    REQUIRE(x != NULL);
    CHECK(x->state == JOB_DEAD && queue_job_x(x)->reason_len == 3 &&
          memcmp(queue_job_x(x)->reason, "why", 3) == 0);
    CHECK(x->priority == 5 && x->attempts == 2 && x->max_attempts == 3);
    CHECK(x->body_len == 100 && queue_job_ttr_ms(x) == 30000 && x->created_ms == 1000);
    CHECK(x->pos_seq == 77 && queue_job_pos(x).segment_id == 1 &&
          queue_job_pos(x).batch_offset == 8192);
    x = queue_peek_id(r, 42);
    REQUIRE(x != NULL);
    CHECK(x->state == JOB_DELAYED && queue_job_x(x)->run_at_ms == 900000 && x->pos_seq == 78);
    struct queue_stats st;
    queue_stats_get(queue_find(r, "qq", 2), T(2000), &st);
    CHECK_EQ(st.total_put, 7);
    queue_state_destroy(r);
}

/* Version 3 packs jobs: a payload of many plain jobs takes a fraction of the fixed layout,
 * and every field (large values, deltas that go down as well as up) comes back. */
static void test_checkpoint_v3_compact_roundtrip(void)
{
    struct queue_state *s = make_state();
    for (int i = 0; i < 1000; i++)
        put_full(s, i % 2 ? "p" : "q", i % 3 == 0 ? UINT32_MAX - 1 : (uint32_t)i,
                 i % 5 == 0 ? 1000000000000LL : 0, i % 7 == 0 ? 5000 : 0, i % 4, NULL,
                 (int64_t)(1700000000000LL - i * 13));
    queue_durable(s, UINT64_MAX, T(1700000000000LL));
    uint8_t *payload;
    uint32_t len;
    REQUIRE(queue_checkpoint_encode(s, &payload, &len) == 0);
    CHECK(len < 1000 * 40); /* the fixed layout took 104 bytes a job */
    struct queue_config config;
    queue_config_defaults(&config);
    struct queue_state *r = queue_state_create(&config);
    REQUIRE(queue_checkpoint_load(r, payload, len, T(1700000000000LL)) == 0);
    for (uint64_t id = 1; id <= 1000; id++) {
        struct job *a = queue_job_find(s, id), *b = queue_job_find(r, id);
        REQUIRE(a != NULL && b != NULL);
        CHECK(a->priority == b->priority && a->max_attempts == b->max_attempts);
        CHECK(a->created_ms == b->created_ms &&
              queue_job_x(a)->run_at_ms == queue_job_x(b)->run_at_ms);
        CHECK(queue_job_x(a)->expires_at_ms == queue_job_x(b)->expires_at_ms &&
              queue_job_ttr_ms(a) == queue_job_ttr_ms(b));
        CHECK(a->pos_seq == b->pos_seq &&
              queue_job_pos(a).batch_offset == queue_job_pos(b).batch_offset);
        CHECK(a->state == b->state && a->queue->name[0] == b->queue->name[0]);
    }
    free(payload);
    queue_state_destroy(r);
    queue_state_destroy(s);
}

/* ---- the checkpoint walk: a payload taken while the state changes ---- */

static uint32_t walk_rand(uint32_t *x)
{
    *x = *x * 1103515245u + 12345u;
    return *x >> 8;
}

/* Replay the fake log's records [from, count) into r, then finish recovery. */
static void replay_from(struct queue_state *r, uint32_t from, int64_t now)
{
    for (uint32_t i = from; i < fake.count; i++) {
        struct log_record rec = {.pos = fake.pos[i], .type = fake.type[i], .len = fake.len[i],
                                 .data = fake.data[i]};
        REQUIRE(queue_replay(r, &rec, T(now)) == 0);
    }
    queue_recover_finish(r, T(now));
}

/* Two states hold the same jobs, in the same states, and the same per-queue counts. */
static void check_same_state(struct queue_state *a, struct queue_state *b, uint64_t id_max)
{
    for (uint64_t id = 1; id <= id_max; id++) {
        struct queue_job_status sa, sb;
        bool fa = queue_status(a, id, &sa), fb = queue_status(b, id, &sb);
        CHECK_EQ(fa, fb);
        if (!fa || !fb)
            continue;
        CHECK_EQ(sa.state, sb.state);
        CHECK_EQ(sa.attempts, sb.attempts);
        struct job *ja = queue_job_find(a, id), *jb = queue_job_find(b, id);
        REQUIRE(ja != NULL && jb != NULL);
        CHECK_EQ(ja->priority, jb->priority);
        if (sa.state != JOB_DONE) { /* the done section keeps neither: nothing to run or read */
            CHECK_EQ(queue_job_x(ja)->run_at_ms, queue_job_x(jb)->run_at_ms);
            CHECK_EQ(ja->pos_seq, jb->pos_seq);
        }
        CHECK(ja->queue->name_len == jb->queue->name_len &&
              memcmp(ja->queue->name, jb->queue->name, ja->queue->name_len) == 0);
        if (sa.state == JOB_DEAD)
            CHECK(queue_job_x(ja)->reason_len == queue_job_x(jb)->reason_len &&
                  memcmp(queue_job_x(ja)->reason, queue_job_x(jb)->reason,
                         queue_job_x(ja)->reason_len) == 0);
    }
    static const char *const names[] = {"wa", "wb", "wc"};
    for (int q = 0; q < 3; q++) {
        struct queue *qa = queue_find(a, names[q], 2), *qb = queue_find(b, names[q], 2);
        CHECK_EQ(qa == NULL, qb == NULL);
        if (qa == NULL || qb == NULL)
            continue;
        struct queue_stats x, y;
        queue_stats_get(qa, T(0), &x);
        queue_stats_get(qb, T(0), &y);
        CHECK(x.ready == y.ready && x.delayed == y.delayed && x.dead == y.dead);
        CHECK(x.total_put == y.total_put && x.bytes == y.bytes);
    }
    CHECK_EQ(queue_segment_live(a, 1), queue_segment_live(b, 1));
}

/* One random operation on s at time now (held: leases kept open, by job id and token). */
static void walk_random_op(struct queue_state *s, uint32_t *x, int64_t now, uint64_t held[][2],
                           uint32_t *held_count)
{
    static const char *const names[] = {"wa", "wb", "wc"};
    const char *queue = names[walk_rand(x) % 3];
    uint32_t op = walk_rand(x) % 10;
    if (op <= 2) { /* a put: pending until the next durable call */
        put_full(s, queue, walk_rand(x) % 4, op == 0 ? 50 : 0, 0, op == 1 ? 2 : -1, NULL, now);
        return;
    }
    if (op == 3) {
        queue_durable(s, UINT64_MAX, T(now));
        return;
    }
    if (op == 4) {
        queue_tick(s, T(now)); /* delays become ready, leases expire */
        return;
    }
    if (op == 5 && *held_count > 0) { /* settle a lease held since earlier */
        uint32_t k = walk_rand(x) % *held_count;
        uint64_t id = held[k][0], token = held[k][1];
        held[k][0] = held[--*held_count][0];
        held[k][1] = held[*held_count][1];
        uint32_t how = walk_rand(x) % 3;
        int rc = how == 0   ? queue_ack(s, id, token, "r", 1, T(now), NULL)
                 : how == 1 ? queue_release(s, id, token, walk_rand(x) % 2 ? 30 : 0, 9, "e", 1,
                                            T(now), NULL)
                            : queue_bury(s, id, token, "poison", 6, T(now), NULL);
        CHECK(rc == 0 || rc == QUEUE_ELEASE); /* expired meanwhile */
        return;
    }
    if (op == 6) { /* kick a dead job, or delete a job that is not reserved */
        uint32_t kicked;
        CHECK_EQ(queue_kick(s, queue, 2, 1, T(now), &kicked, NULL), 0);
        struct job *victim = queue_peek_next(s, queue, 2, JOB_READY);
        if (victim != NULL && walk_rand(x) % 2)
            CHECK_EQ(queue_delete(s, victim->id, T(now), NULL), 0);
        return;
    }
    struct job *job = reserve1(s, queue, now, NULL);
    if (job == NULL)
        return;
    if (op == 7 || *held_count >= 64) {
        CHECK_EQ(queue_ack(s, job->id, queue_job_x(job)->lease_token, NULL, 0, T(now), NULL), 0);
        return;
    }
    held[*held_count][0] = job->id;
    held[*held_count][1] = queue_job_x(job)->lease_token;
    ++*held_count;
}

/* A checkpoint taken by a walk of one job per step, while random operations change the state
 * between steps, plus the records logged after its anchor, rebuild exactly the state that the
 * whole log rebuilds: the walk captured every job as it was at the anchor. */
static void test_checkpoint_walk_while_changing(void)
{
    for (uint32_t seed = 1; seed <= 40; seed++) {
        struct queue_state *s = make_state();
        uint32_t x = seed;
        uint64_t held[64][2];
        uint32_t held_count = 0;
        int64_t now = 0;
        for (int i = 0; i < 60; i++)
            walk_random_op(s, &x, now += 3, held, &held_count);
        uint32_t anchor = fake.count; /* records [0, anchor) are in the payload */
        queue_checkpoint_begin(s);
        CHECK(queue_checkpoint_active(s));
        bool complete = false;
        while (!complete) {
            for (uint32_t k = walk_rand(&x) % 4; k > 0; k--)
                walk_random_op(s, &x, now += 3, held, &held_count);
            complete = queue_checkpoint_step(s, 1);
        }
        for (int i = 0; i < 20; i++)
            walk_random_op(s, &x, now += 3, held, &held_count);
        uint8_t *payload;
        uint32_t len;
        REQUIRE(queue_checkpoint_finish(s, &payload, &len, NULL) == 0);
        CHECK(!queue_checkpoint_active(s));
        int64_t later = now + 10;
        struct queue_state *whole = replay_all(later);
        struct queue_config config;
        queue_config_defaults(&config);
        struct queue_state *r = queue_state_create(&config);
        REQUIRE(queue_checkpoint_load(r, payload, len, T(later)) == 0);
        replay_from(r, anchor, later);
        check_same_state(whole, r, fake.count + 1);
        free(payload);
        queue_state_destroy(r);
        queue_state_destroy(whole);
        queue_state_destroy(s);
    }
}

/* Issue 9: a checkpoint hands out the segments its payload needs: those of the PUT records
 * of the jobs it saves as live, each once, ascending, whatever the order the walk met them
 * in; a job acked after the anchor still counts, one acked before does not. */
static void test_checkpoint_segments(void)
{
    struct queue_state *s = make_state();
    static const uint64_t segments[] = {7, 3, 3, 9, 5, 3, 11};
    uint64_t ids[sizeof(segments) / sizeof(segments[0])];
    fake.seq_base = 100; /* above every segment id */
    for (size_t i = 0; i < sizeof(segments) / sizeof(segments[0]); i++) {
        fake.segment_id = segments[i];
        ids[i] = put(s, "q", 0, 1);
    }
    struct job *gone = reserve1(s, "q", 1, NULL); /* acked before the anchor: segment 7 */
    REQUIRE(gone != NULL && gone->id == ids[0]);
    CHECK_EQ(queue_ack(s, gone->id, queue_job_x(gone)->lease_token, NULL, 0, T(1), NULL), 0);
    queue_checkpoint_begin(s);
    CHECK(!queue_checkpoint_step(s, 1));
    struct job *late = reserve1(s, "q", 2, NULL); /* acked after the anchor: segment 3 */
    REQUIRE(late != NULL && late->id == ids[1]);
    CHECK_EQ(queue_ack(s, late->id, queue_job_x(late)->lease_token, NULL, 0, T(2), NULL), 0);
    CHECK(queue_checkpoint_step(s, 100));
    uint8_t *payload;
    uint32_t len;
    struct queue_segment_set needed;
    REQUIRE(queue_checkpoint_finish(s, &payload, &len, &needed) == 0);
    static const uint64_t want[] = {3, 5, 9, 11};
    CHECK_EQ(needed.count, sizeof(want) / sizeof(want[0]));
    for (uint32_t i = 0; i < needed.count && i < sizeof(want) / sizeof(want[0]); i++)
        CHECK_EQ(needed.ids[i], want[i]);
    CHECK(!queue_segment_set_has(&needed, 7));
    CHECK(queue_segment_set_has(&needed, 11));
    queue_segment_set_free(&needed);
    free(payload);
    queue_state_destroy(s);
}

/* The job the walk would visit next leaves its queue (deleted, or acked into the DONE list):
 * the walk goes on with the job after it and misses none. */
static void test_checkpoint_walk_cursor_job_leaves(void)
{
    for (int acked = 0; acked <= 1; acked++) {
        struct queue_state *s = make_state();
        uint64_t ids[6];
        for (int i = 0; i < 6; i++)
            ids[i] = put(s, "q", i == 1 ? 0 : 5, 0); /* ids[1] is reserved first */
        queue_checkpoint_begin(s);
        CHECK(!queue_checkpoint_step(s, 1)); /* ids[0] in, ids[1] next */
        if (acked) {
            struct job *j = reserve1(s, "q", 1, NULL);
            REQUIRE(j != NULL && j->id == ids[1]);
            CHECK_EQ(queue_ack(s, j->id, queue_job_x(j)->lease_token, NULL, 0, T(1), NULL), 0);
        } else {
            CHECK_EQ(queue_delete(s, ids[1], T(1), NULL), 0);
        }
        CHECK(queue_checkpoint_step(s, 100));
        uint8_t *payload;
        uint32_t len;
        REQUIRE(queue_checkpoint_finish(s, &payload, &len, NULL) == 0);
        struct queue_config config;
        queue_config_defaults(&config);
        struct queue_state *r = queue_state_create(&config);
        REQUIRE(queue_checkpoint_load(r, payload, len, T(1)) == 0);
        for (int i = 0; i < 6; i++)
            CHECK(queue_peek_id(r, ids[i]) != NULL); /* all six were live at the anchor */
        free(payload);
        queue_state_destroy(r);
        queue_state_destroy(s);
    }
}

/* An aborted walk leaves nothing behind, and a new one can begin. */
static void test_checkpoint_walk_abort(void)
{
    struct queue_state *s = make_state();
    for (int i = 0; i < 10; i++)
        put(s, "q", 0, 0);
    queue_checkpoint_begin(s);
    CHECK(!queue_checkpoint_step(s, 3));
    queue_checkpoint_abort(s);
    CHECK(!queue_checkpoint_active(s));
    struct job *j = reserve1(s, "q", 1, NULL);
    REQUIRE(j != NULL);
    CHECK_EQ(queue_ack(s, j->id, queue_job_x(j)->lease_token, NULL, 0, T(1), NULL), 0);
    uint8_t *payload;
    uint32_t len;
    REQUIRE(queue_checkpoint_encode(s, &payload, &len) == 0);
    struct queue_config config;
    queue_config_defaults(&config);
    struct queue_state *r = queue_state_create(&config);
    REQUIRE(queue_checkpoint_load(r, payload, len, T(1)) == 0);
    struct queue_totals totals;
    queue_totals_get(r, &totals);
    CHECK_EQ(totals.jobs, 9);
    free(payload);
    queue_state_destroy(r);
    queue_state_destroy(s);
}

/* Ids after a restart start at the clock's floor (Unix ms x 1024) or the recovered counter,
 * whichever is higher, and never pass 2^53 (queue_ids_floor). */
static void test_ids_floor(void)
{
    struct queue_state *s = make_state();
    int64_t now = 1764900000000; /* 2025-12 */
    uint64_t first = put(s, "ids", 0, now);
    CHECK_EQ(first, 1);
    queue_ids_floor(s, now);
    uint64_t next = put(s, "ids", 0, now);
    CHECK_EQ(next, (uint64_t)now * QUEUE_IDS_PER_MS);
    CHECK(next < QUEUE_ID_FLOOR_MAX);
    CHECK_EQ(put(s, "ids", 0, now), next + 1); /* consecutive within a run */
    queue_ids_floor(s, now - 5000);             /* a floor below the counter: no change */
    CHECK_EQ(queue_next_id(s), next + 2);
    queue_ids_floor(s, INT64_MAX / 2); /* a clock far in the future: clamped to 2^53 */
    CHECK_EQ(queue_next_id(s), QUEUE_ID_FLOOR_MAX);
    queue_ids_floor(s, -1);
    CHECK_EQ(queue_next_id(s), QUEUE_ID_FLOOR_MAX);
    queue_state_destroy(s);
}

int main(void)
{
    RUN_TEST(test_put_invisible_until_durable_then_lifecycle);
    RUN_TEST(test_priority_then_fifo);
    RUN_TEST(test_reserve_count_limit_not_clamped);
    RUN_TEST(test_key_limit_shared);
    RUN_TEST(test_ids_floor);
    RUN_TEST(test_put_queue_lookup_cache);
    RUN_TEST(test_bodies_inline_and_separate);
    RUN_TEST(test_reserve_queue_preference_and_count);
    RUN_TEST(test_delay_and_ttl);
    RUN_TEST(test_ttl_delete_not_skipped);
    RUN_TEST(test_lease_expiry_redelivery_and_max_attempts);
    RUN_TEST(test_reserve_job_and_kick_delayed);
    RUN_TEST(test_release_touch_bury_kick_delete);
    RUN_TEST(test_ready_urgent_counted);
    RUN_TEST(test_release_on_last_attempt_buries);
    RUN_TEST(test_idempotency_window);
    RUN_TEST(test_stats_ack_floor_and_segments);
    RUN_TEST(test_blocked_reservers_fair_across_queues);
    RUN_TEST(test_paused_reserver);
    RUN_TEST(test_wait_on_job);
    RUN_TEST(test_owner_release_keeps_detached);
    RUN_TEST(test_back_pressure_changes_nothing);
    RUN_TEST(test_calls_return_what_they_logged);
    RUN_TEST(test_limits_and_validation);
    RUN_TEST(test_pause_resume_and_purge);
    RUN_TEST(test_lease_tokens_unique);
    RUN_TEST(test_replay_rebuilds_state_leases_void);
    RUN_TEST(test_replay_keeps_settle_times);
    RUN_TEST(test_wall_clock_steps_move_no_timer);
    RUN_TEST(test_lease_never_ends_before_ttr);
    RUN_TEST(test_replay_converts_times_once);
    RUN_TEST(test_checkpoint_roundtrip);
    RUN_TEST(test_checkpoint_keeps_live_order);
    RUN_TEST(test_checkpoint_mutations_never_crash);
    RUN_TEST(test_done_jobs_bounded);
    RUN_TEST(test_idle_queues_forgotten);
    RUN_TEST(test_delete_queue_replays);
    RUN_TEST(test_checkpoint_version1_loads);
    RUN_TEST(test_checkpoint_version3_loads);
    RUN_TEST(test_checkpoint_version2_loads);
    RUN_TEST(test_checkpoint_v3_compact_roundtrip);
    RUN_TEST(test_checkpoint_walk_while_changing);
    RUN_TEST(test_checkpoint_walk_cursor_job_leaves);
    RUN_TEST(test_checkpoint_segments);
    RUN_TEST(test_checkpoint_walk_abort);
    fake_reset();
    return check_exit();
}
