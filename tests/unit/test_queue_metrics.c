/* The per-queue counters and histograms of /metrics (struct queue_metrics, metrics.h): each
 * transition of the state machine counts where it happens, and the wait (put to first
 * delivery) and processing (delivery to ack) histograms see the times the clock says. */
#include "check.h"
#include "queue.h"
#include "queue_fake.h"

static uint64_t put_at(struct queue_state *s, int64_t ms, int64_t ttl_ms, int64_t max_attempts)
{
    struct queue_put_args args = {.queue = "m", .queue_len = 1, .ttr_ms = 1000, .body = "b",
                                  .body_len = 1, .ttl_ms = ttl_ms, .max_attempts = max_attempts};
    uint64_t id, seq;
    bool dup;
    REQUIRE(queue_put(s, &args, at_ms(ms), &id, &dup, &seq) == 0);
    queue_durable(s, UINT64_MAX, at_ms(ms));
    return id;
}

static struct job *reserve_at(struct queue_state *s, int64_t ms, struct queue_owner *owner)
{
    struct queue_reserver r = {.queues = {queue_find(s, "m", 1)}, .queue_count = 1,
                               .count_max = 1, .deadline_ns = at_ms(ms).mono_ns,
                               .owner = owner, .detach = owner == NULL};
    struct job *jobs[1];
    return queue_reserve(s, &r, at_ms(ms), jobs) == 1 ? jobs[0] : NULL;
}

/* The bucket an observation of us microseconds lands in. */
static uint32_t bucket_of(uint64_t us)
{
    uint32_t i = 0;
    while (i < metrics_queue_time_us.count && us > metrics_queue_time_us.le[i])
        i++;
    return i;
}

static void test_wait_and_processing_histograms(void)
{
    struct queue_state *s = state_new();
    uint64_t id = put_at(s, 1000, 0, -1);
    struct job *job = reserve_at(s, 1250, NULL); /* waited 250 ms */
    REQUIRE(job != NULL);
    REQUIRE(queue_ack(s, id, queue_job_x(job)->lease_token, NULL, 0, at_ms(1290), NULL) ==
            0); /* held 40 ms */
    const struct queue_metrics *m = &queue_find(s, "m", 1)->metrics;
    CHECK_EQ(m->puts, 1);
    CHECK_EQ(m->deliveries, 1);
    CHECK_EQ(m->acks, 1);
    CHECK_EQ(m->wait_us.count, 1);
    CHECK_EQ(m->wait_us.sum, 250000);
    CHECK_EQ(m->wait_us.buckets[bucket_of(250000)], 1);
    CHECK_EQ(m->process_us.count, 1);
    CHECK_EQ(m->process_us.sum, 40000);
    CHECK_EQ(m->process_us.buckets[bucket_of(40000)], 1);
    queue_state_destroy(s);
}

static void test_each_transition_counts(void)
{
    struct queue_state *s = state_new();
    struct queue_owner owner;
    queue_owner_init(&owner);
    uint64_t a = put_at(s, 0, 0, -1);
    struct job *job = reserve_at(s, 1, NULL);
    REQUIRE(job != NULL && job->id == a);
    REQUIRE(queue_release(s, a, queue_job_x(job)->lease_token, 0, UINT32_MAX, NULL, 0, at_ms(2),
                          NULL) == 0);
    job = reserve_at(s, 3, NULL); /* a second delivery: no second wait observation */
    REQUIRE(job != NULL);
    REQUIRE(queue_bury(s, a, queue_job_x(job)->lease_token, "bad", 3, at_ms(4), NULL) == 0);
    REQUIRE(queue_kick_job(s, a, at_ms(5), NULL) == 0);
    REQUIRE(queue_delete(s, a, at_ms(6), NULL) == 0);
    uint64_t b = put_at(s, 10, 0, 1); /* one attempt */
    job = reserve_at(s, 11, &owner);
    REQUIRE(job != NULL && job->id == b);
    queue_owner_release(s, &owner, at_ms(12)); /* its worker went away: out of attempts */
    uint64_t c = put_at(s, 20, 0, -1);
    job = reserve_at(s, 21, NULL);
    REQUIRE(job != NULL && job->id == c);
    queue_tick(s, at_ms(21 + 1000 + 1)); /* the lease's deadline passes */
    put_at(s, 30, 50, -1);
    queue_tick(s, at_ms(30 + 50 + 1)); /* the ttl runs out */
    const struct queue_metrics *m = &queue_find(s, "m", 1)->metrics;
    CHECK_EQ(m->puts, 4);
    CHECK_EQ(m->deliveries, 4);
    CHECK_EQ(m->wait_us.count, 3); /* a, b, c: first deliveries only */
    CHECK_EQ(m->releases, 1);
    CHECK_EQ(m->buries, 1);
    CHECK_EQ(m->kicked, 1);
    CHECK_EQ(m->deleted, 1);
    CHECK_EQ(m->lease_expiries, 2); /* b's worker gone, c's deadline */
    CHECK_EQ(m->dead_lettered, 2);  /* a buried, b out of attempts */
    CHECK_EQ(m->expired, 1);
    CHECK_EQ(m->acks, 0);
    CHECK_EQ(m->process_us.count, 0);
    queue_state_destroy(s);
}

int main(void)
{
    RUN_TEST(test_wait_and_processing_histograms);
    RUN_TEST(test_each_transition_counts);
    return check_exit();
}
