/* The body cache: its byte bound, eviction order, owners told of evictions, and the queue
 * state's use of it (bodies of puts cached, evicted ones missing, read-back ones cached). */
#include <stdio.h>
#include <string.h>

#include "body_cache.h"
#include "check.h"
#include "queue.h"

#define OWNERS 64

static void fill(uint8_t *buf, uint32_t len, uint32_t seed)
{
    for (uint32_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seed * 31 + i);
}

/* The cache never holds more than its bound; the oldest go first; owners see NULL. */
static void test_bound_and_order(void)
{
    struct body_cache cache;
    uint64_t max = 10 * body_cache_cost(100);
    body_cache_init(&cache, max, NULL);
    uint8_t *owners[OWNERS] = {0};
    uint8_t body[100];
    for (uint32_t i = 0; i < OWNERS; i++) {
        fill(body, sizeof(body), i);
        REQUIRE(body_cache_put(&cache, &owners[i], body, sizeof(body)) == 0);
        CHECK(cache.bytes <= max);
        CHECK(owners[i] != NULL); /* the newest is never the one evicted while it fits */
    }
    CHECK_EQ(cache.count, 10);
    CHECK_EQ(cache.evictions, OWNERS - 10);
    for (uint32_t i = 0; i < OWNERS; i++) {
        if (i < OWNERS - 10) {
            CHECK(owners[i] == NULL);
            continue;
        }
        fill(body, sizeof(body), i);
        REQUIRE(owners[i] != NULL);
        CHECK(memcmp(owners[i], body, sizeof(body)) == 0);
    }
    /* The oldest goes first. */
    REQUIRE(body_cache_put(&cache, &owners[0], body, sizeof(body)) == 0);
    CHECK(owners[OWNERS - 10] == NULL);
    CHECK(owners[OWNERS - 9] != NULL);
    /* Drop frees and clears; dropping an evicted one does nothing. */
    uint64_t before = cache.bytes;
    body_cache_drop(&cache, &owners[OWNERS - 2]);
    CHECK(owners[OWNERS - 2] == NULL);
    CHECK_EQ(cache.bytes, before - body_cache_cost(100));
    body_cache_drop(&cache, &owners[1]);
    CHECK_EQ(cache.bytes, before - body_cache_cost(100));
    /* Shrinking the bound evicts at once; trim_to goes lower still. */
    body_cache_set_max(&cache, 3 * body_cache_cost(100));
    CHECK_EQ(cache.count, 3);
    CHECK_EQ(body_cache_trim_to(&cache, body_cache_cost(100)), 2 * body_cache_cost(100));
    CHECK_EQ(cache.count, 1);
    body_cache_destroy(&cache);
    for (uint32_t i = 0; i < OWNERS; i++)
        CHECK(owners[i] == NULL); /* destroy tells the owners too */
}

/* A body larger than the whole bound is not kept; an empty body is; 0 means unbounded. */
static void test_edges(void)
{
    struct body_cache cache;
    body_cache_init(&cache, body_cache_cost(10), NULL);
    uint8_t big[64] = {1};
    uint8_t *a = NULL, *b = NULL;
    REQUIRE(body_cache_put(&cache, &a, big, sizeof(big)) == 0);
    CHECK(a == NULL);
    CHECK_EQ(cache.bytes, 0);
    REQUIRE(body_cache_put(&cache, &b, NULL, 0) == 0);
    CHECK(b != NULL);
    body_cache_drop(&cache, &b);
    CHECK_EQ(cache.count, 0);
    body_cache_destroy(&cache);

    body_cache_init(&cache, 0, NULL);
    uint8_t *owners[OWNERS] = {0};
    for (uint32_t i = 0; i < OWNERS; i++)
        REQUIRE(body_cache_put(&cache, &owners[i], big, sizeof(big)) == 0);
    CHECK_EQ(cache.count, OWNERS);
    CHECK_EQ(cache.evictions, 0);
    for (uint32_t i = 0; i < OWNERS; i++)
        body_cache_drop(&cache, &owners[i]);
    body_cache_destroy(&cache);
}

/* Small bodies come from the pool: counted by their block, freed back to it, reused. */
static void test_pooled(void)
{
    struct job_pool pool;
    job_pool_init(&pool);
    struct body_cache cache;
    body_cache_init(&cache, 4 * 128, &pool);
    uint8_t *owners[OWNERS] = {0};
    uint8_t body[90]; /* 32 + 90 bytes: one 128-byte block */
    for (uint32_t i = 0; i < OWNERS; i++) {
        fill(body, sizeof(body), i);
        REQUIRE(body_cache_put(&cache, &owners[i], body, sizeof(body)) == 0);
        CHECK(cache.bytes <= 4 * 128);
    }
    CHECK_EQ(cache.count, 4);
    CHECK_EQ(cache.bytes, 4 * 128);
    CHECK(pool.free_bytes > 0); /* evicted blocks wait in the pool for the next bodies */
    fill(body, sizeof(body), OWNERS - 1);
    CHECK(memcmp(owners[OWNERS - 1], body, sizeof(body)) == 0);
    /* A body too large for a pool block is malloc'ed. */
    static uint8_t big[1000];
    uint8_t *big_owner = NULL;
    body_cache_set_max(&cache, 0);
    REQUIRE(body_cache_put(&cache, &big_owner, big, sizeof(big)) == 0);
    CHECK_EQ(cache.bytes, 4 * 128 + body_cache_cost(sizeof(big)));
    body_cache_destroy(&cache);
    job_pool_destroy(&pool);
}

static struct queue_time t0(void)
{
    return (struct queue_time){.wall_ns = 1700000000000LL * 1000000, .mono_ns = 1000000000};
}

/* The queue state keeps the newest bodies within its bound; an evicted one is missing until
 * read back (queue_body_loaded), and a done job's body is dropped. */
static void test_queue_bounded(void)
{
    struct queue_config config;
    queue_config_defaults(&config);
    config.body_cache_bytes_max = 8 * 256; /* a 200-byte body takes a 256-byte pool block */
    struct queue_state *s = queue_state_create(&config);
    struct queue_time now = t0();
    uint64_t ids[32];
    uint8_t body[200];
    for (uint32_t i = 0; i < 32; i++) {
        fill(body, sizeof(body), i);
        struct queue_put_args args = {.queue = "q", .queue_len = 1, .max_attempts = -1,
                                      .body = body, .body_len = sizeof(body)};
        bool dup;
        uint64_t seq;
        REQUIRE(queue_put(s, &args, now, &ids[i], &dup, &seq) == 0);
    }
    queue_durable(s, UINT64_MAX, now);
    struct queue_body_stats stats;
    queue_body_stats_get(s, &stats);
    CHECK_EQ(stats.count, 8);
    CHECK(stats.bytes <= stats.bytes_max);
    uint32_t unloaded = 0;
    for (uint32_t i = 0; i < 32; i++) {
        struct job *job = queue_job_find(s, ids[i]);
        REQUIRE(job != NULL);
        CHECK_EQ(job->body_len, sizeof(body));
        CHECK(queue_job_body_missing(job) == (i < 24));
        unloaded += queue_job_body_missing(job);
    }
    CHECK_EQ(unloaded, 24);
    /* Read back: cached again (evicting the oldest cached), with the right bytes. */
    struct job *first = queue_job_find(s, ids[0]);
    fill(body, sizeof(body), 0);
    queue_body_loaded(s, first, body, sizeof(body));
    REQUIRE(queue_job_body(first) != NULL);
    CHECK(memcmp(queue_job_body(first), body, sizeof(body)) == 0);
    CHECK(queue_job_body_missing(queue_job_find(s, ids[24])));
    /* Delivered and acked: the body goes. */
    struct queue *q = queue_find(s, "q", 1);
    struct queue_owner owner;
    queue_owner_init(&owner);
    struct queue_reserver r = {.queues = {q}, .queue_count = 1, .count_max = 1,
                               .deadline_ns = now.mono_ns, .owner = &owner};
    struct job *got[1];
    REQUIRE(queue_reserve(s, &r, now, got) == 1);
    CHECK(got[0] == first);
    REQUIRE(queue_ack(s, first->id, queue_job_x(first)->lease_token, NULL, 0, now, NULL) == 0);
    CHECK(queue_job_body(first) == NULL && !queue_job_body_missing(first));
    queue_body_stats_get(s, &stats);
    CHECK_EQ(stats.count, 7);
    queue_state_destroy(s);
}

int main(void)
{
    RUN_TEST(test_bound_and_order);
    RUN_TEST(test_edges);
    RUN_TEST(test_pooled);
    RUN_TEST(test_queue_bounded);
    return check_exit();
}
