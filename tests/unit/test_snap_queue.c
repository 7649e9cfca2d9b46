/* Snapshot entries copied only when their queue changed (snap_queue.h): an unchanged queue's
 * entry is kept with its ready age refreshed, any event on the queue (put, reserve, ack,
 * delayed job coming due, pause) copies it again, and an entry of another queue, or of a
 * queue forgotten and created again with other numbers, is never kept. */
#include <stdio.h>
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
    REQUIRE(queue_ack(s, job->id, job->lease_token, NULL, 0, at_ms(70), NULL) == 0);
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

/* n entries named by fmt with i, in the order perm gives (a shuffle, no table order). */
static struct snap_queue *entries_new(uint32_t n)
{
    struct snap_queue *e = calloc(n, sizeof(*e));
    REQUIRE(e != NULL);
    for (uint32_t i = 0; i < n; i++) /* i * 7919 mod n: a permutation for n prime to 7919 */
        snprintf(e[i].name, sizeof(e[i].name), "q-%05u", (unsigned)((i * 7919u) % n));
    return e;
}

static void test_select_first_labels_the_first_names_in_order(void)
{
    const uint32_t n = 1000, k = 37;
    struct snap_queue *e = entries_new(n);
    const struct snap_queue **qs = calloc(n, sizeof(*qs));
    REQUIRE(qs != NULL);
    for (uint32_t i = 0; i < n; i++)
        qs[i] = &e[i];
    CHECK_EQ(snap_queue_select_first(qs, n, k), k);
    for (uint32_t i = 0; i < k; i++) { /* q-00000 .. q-00036, sorted */
        char want[16];
        snprintf(want, sizeof(want), "q-%05u", (unsigned)i);
        CHECK_EQ(strcmp(qs[i]->name, want), 0);
    }
    /* The rest: every other entry exactly once, none of the first names. */
    bool *seen = calloc(n, sizeof(*seen));
    REQUIRE(seen != NULL);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t idx = (uint32_t)(qs[i] - e);
        REQUIRE(idx < n);
        CHECK(!seen[idx]);
        seen[idx] = true;
        if (i >= k)
            CHECK(strcmp(qs[i]->name, "q-00037") >= 0);
    }
    /* k at or above n: everything, sorted; k = 0: nothing labelled. */
    CHECK_EQ(snap_queue_select_first(qs, n, n + 5), n);
    for (uint32_t i = 1; i < n; i++)
        CHECK(strcmp(qs[i - 1]->name, qs[i]->name) < 0);
    CHECK_EQ(snap_queue_select_first(qs, n, 0), 0);
    free(seen);
    free(qs);
    free(e);
}

static void test_unique_drops_repeated_names(void)
{
    /* A walk that saw b twice (a reshuffle) and c twice (forgotten and made again: another
     * entry, the same name): one of each is kept, the first, in the order given. */
    const char *names[] = {"a", "b", "c", "b", "d", "c", "b"};
    const uint32_t n = sizeof(names) / sizeof(names[0]);
    struct snap_queue *e = calloc(n, sizeof(*e));
    const struct snap_queue **qs = calloc(n, sizeof(*qs));
    REQUIRE(e != NULL && qs != NULL);
    for (uint32_t i = 0; i < n; i++) {
        strcpy(e[i].name, names[i]);
        qs[i] = &e[i];
    }
    CHECK_EQ(snap_queue_unique(qs, n), 4);
    CHECK(qs[0] == &e[0] && qs[1] == &e[1] && qs[2] == &e[2] && qs[3] == &e[4]);
    /* No repeats: all kept (10,000, past the table's first sizes). */
    const uint32_t big = 10000;
    struct snap_queue *many = entries_new(big);
    const struct snap_queue **ms = calloc(big, sizeof(*ms));
    REQUIRE(ms != NULL);
    for (uint32_t i = 0; i < big; i++)
        ms[i] = &many[i];
    CHECK_EQ(snap_queue_unique(ms, big), big);
    CHECK_EQ(snap_queue_unique(ms, 0), 0);
    free(ms);
    free(many);
    free(qs);
    free(e);
}

int main(void)
{
    RUN_TEST(test_unchanged_kept_changed_copied);
    RUN_TEST(test_other_queue_never_kept);
    RUN_TEST(test_select_first_labels_the_first_names_in_order);
    RUN_TEST(test_unique_drops_repeated_names);
    return check_exit();
}
