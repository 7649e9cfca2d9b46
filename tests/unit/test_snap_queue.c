/* Snapshot entries copied only when their queue changed (snap_queue.h): an unchanged queue's
 * entry is kept with its ready age refreshed, any event on the queue (put, reserve, ack,
 * delayed job coming due, pause) copies it again, and an entry of another queue, or of a
 * queue forgotten and created again with other numbers, is never kept. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "queue_fake.h"
#include "snap_queue.h"

static uint64_t put_at(struct queue_state *s, const char *name, int64_t ms, int64_t delay_ms)
{
    struct queue_put_args args = {.queue = name, .queue_len = (uint32_t)strlen(name),
                                  .ttr_ms = 1000, .body = "b", .body_len = 1,
                                  .delay_ms = delay_ms, .max_attempts = -1};
    uint64_t id, seq;
    bool dup;
    REQUIRE(queue_put(s, &args, at_ms(ms), &id, &dup, &seq) == 0);
    queue_durable(s, UINT64_MAX, at_ms(ms));
    return id;
}

static struct job *reserve_at(struct queue_state *s, const char *name, int64_t ms)
{
    struct queue_reserver r = {.queues = {queue_find(s, name, (uint32_t)strlen(name))},
                               .queue_count = 1, .count_max = 1,
                               .deadline_ns = at_ms(ms).mono_ns, .detach = true};
    struct job *jobs[1];
    return queue_reserve(s, &r, at_ms(ms), jobs) == 1 ? jobs[0] : NULL;
}

static void test_unchanged_kept_changed_copied(void)
{
    struct queue_state *s = state_new();
    put_at(s, "a", 10, 0);
    put_at(s, "a", 11, 0);
    struct queue *a = queue_find(s, "a", 1);
    struct snap_queue *q = calloc(1, sizeof(*q));
    REQUIRE(q != NULL);
    CHECK(snap_queue_fill(q, a, at_ms(20))); /* zeros: copied */
    CHECK_EQ(q->stats.ready, 2);
    CHECK_EQ(q->stats.oldest_ready_age_ms, 10);
    CHECK_EQ(q->metrics.puts, 2);
    CHECK(!snap_queue_fill(q, a, at_ms(50))); /* nothing happened: kept */
    CHECK_EQ(q->stats.oldest_ready_age_ms, 40); /* but the age moved with the clock */
    CHECK_EQ(strcmp(q->name, "a"), 0);
    struct job *job = reserve_at(s, "a", 60);
    REQUIRE(job != NULL);
    CHECK(snap_queue_fill(q, a, at_ms(61)));
    CHECK_EQ(q->stats.ready, 1);
    CHECK_EQ(q->stats.reserved, 1);
    CHECK_EQ(q->metrics.deliveries, 1);
    CHECK_EQ(q->metrics.wait_us.count, 1);
    CHECK_EQ(q->stats.oldest_ready_age_ms, 50); /* the second job, ready since 11 */
    CHECK(!snap_queue_fill(q, a, at_ms(62)));
    REQUIRE(queue_ack(s, job->id, queue_job_x(job)->lease_token, NULL, 0, at_ms(70), NULL) == 0);
    CHECK(snap_queue_fill(q, a, at_ms(71)));
    CHECK_EQ(q->metrics.acks, 1);
    CHECK_EQ(q->metrics.process_us.count, 1);
    CHECK_EQ(q->stats.reserved, 0);
    /* A delayed job coming due moves no counter, but the counts change. */
    put_at(s, "a", 80, 100);
    CHECK(snap_queue_fill(q, a, at_ms(81)));
    CHECK_EQ(q->stats.delayed, 1);
    CHECK(!snap_queue_fill(q, a, at_ms(82)));
    queue_tick(s, at_ms(181));
    CHECK(snap_queue_fill(q, a, at_ms(182)));
    CHECK_EQ(q->stats.delayed, 0);
    CHECK_EQ(q->stats.ready, 2);
    /* Paused and resumed: the flag is in the key. */
    a->paused = true;
    CHECK(snap_queue_fill(q, a, at_ms(183)));
    CHECK(q->stats.paused);
    a->paused = false;
    CHECK(snap_queue_fill(q, a, at_ms(184)));
    CHECK(!q->stats.paused);
    free(q);
    queue_state_destroy(s);
}

static void test_other_queue_never_kept(void)
{
    struct queue_state *s = state_new();
    put_at(s, "aa", 10, 0);
    put_at(s, "bb", 10, 0); /* the very same numbers as aa */
    struct snap_queue *q = calloc(1, sizeof(*q));
    REQUIRE(q != NULL);
    CHECK(snap_queue_fill(q, queue_find(s, "aa", 2), at_ms(20)));
    CHECK(snap_queue_fill(q, queue_find(s, "bb", 2), at_ms(20))); /* same key, other name */
    CHECK_EQ(strcmp(q->name, "bb"), 0);
    CHECK(!snap_queue_fill(q, queue_find(s, "bb", 2), at_ms(20)));
    CHECK(snap_queue_fill(q, queue_find(s, "aa", 2), at_ms(20)));
    CHECK_EQ(strcmp(q->name, "aa"), 0);
    free(q);
    queue_state_destroy(s);
}

int main(void)
{
    RUN_TEST(test_unchanged_kept_changed_copied);
    RUN_TEST(test_other_queue_never_kept);
    return check_exit();
}
