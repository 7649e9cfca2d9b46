/* No memory cliff (issue 11 item 4): with the Nth allocation of the broker's bounded
 * structures made to fail (alloc_fail.h), a put is refused with QUEUE_ENOMEM before anything
 * is logged, and leaves the state as it was; puts work again once memory does; reserves, acks
 * and deletes go on while every allocation fails. Also the pieces: heap_reserve, idmap_reserve,
 * jobtab_reserve and job_pool_reserve make room that later inserts use without allocating. */
#include <string.h>

#include "alloc_fail.h"
#include "check.h"
#include "heap.h"
#include "job_pool.h"
#include "jobtab.h"
#include "map.h"
#include "queue_fake.h"
#include "runheap.h"

struct item {
    uint32_t key;
    uint32_t slot;
};

static bool item_less(const void *a, const void *b)
{
    return ((const struct item *)a)->key < ((const struct item *)b)->key;
}

static void test_heap_reserve(void)
{
    struct heap h;
    heap_init(&h, item_less, offsetof(struct item, slot));
    alloc_fail_after(0);
    CHECK_EQ(heap_reserve(&h, 10), -ENOMEM);
    CHECK_EQ(h.capacity, 0);
    alloc_fail_after(-1);
    REQUIRE(heap_reserve(&h, 100) == 0);
    CHECK(h.capacity >= 100);
    static struct item items[100];
    alloc_fail_after(0); /* every push fits what was reserved: none allocates */
    for (uint32_t i = 0; i < 100; i++) {
        items[i] = (struct item){.key = 100 - i, .slot = HEAP_NONE};
        heap_push(&h, &items[i]);
    }
    CHECK_EQ(heap_reserve(&h, 0), 0);
    CHECK_EQ(((struct item *)heap_top(&h))->key, 1);
    alloc_fail_after(-1);
    heap_free(&h);
}

/* heap_room and runheap_room count what is already held: room for a total, not for more on
 * top of it. A lease runheap holding everything in its runs still gets heap room for all of
 * it, since any lease may move to the heap; pushes within the room allocate nothing. */
struct linked_item {
    uint32_t key;
    uint32_t slot;
    struct list_link link;
};

static bool linked_less(const void *a, const void *b)
{
    return ((const struct linked_item *)a)->key < ((const struct linked_item *)b)->key;
}

static void test_room_for_a_total(void)
{
    static struct item items[300];
    struct heap h;
    heap_init(&h, item_less, offsetof(struct item, slot));
    for (uint32_t i = 0; i < 10; i++) {
        items[i] = (struct item){.key = i, .slot = HEAP_NONE};
        heap_push(&h, &items[i]);
    }
    alloc_fail_after(0);
    CHECK_EQ(heap_room(&h, 5), 0); /* it holds more than that already */
    alloc_fail_after(-1);
    REQUIRE(heap_room(&h, 300) == 0);
    CHECK(h.capacity >= 300);
    alloc_fail_after(0);
    for (uint32_t i = 10; i < 300; i++) {
        items[i] = (struct item){.key = 300 - i, .slot = HEAP_NONE};
        heap_push(&h, &items[i]);
    }
    CHECK_EQ(heap_room(&h, h.capacity), 0);
    CHECK_EQ(heap_room(&h, (uint64_t)h.capacity + 1), -ENOMEM); /* past it: must allocate */
    alloc_fail_after(-1);
    CHECK_EQ(heap_room(&h, (uint64_t)UINT32_MAX + 300), -ENOMEM);
    heap_free(&h);

    enum { N = 100 };
    static struct linked_item leases[N];
    struct runheap rh;
    runheap_init(&rh, linked_less, offsetof(struct linked_item, slot),
                 offsetof(struct linked_item, link));
    for (uint32_t i = 0; i < N; i++) {
        leases[i] = (struct linked_item){.key = i < N / 2 ? 1000 + i : N - i, .slot = HEAP_NONE};
        list_init(&leases[i].link);
    }
    for (uint32_t i = 0; i < N / 2; i++)
        runheap_push(&rh, &leases[i]); /* rising keys: one run, the heap stays empty */
    CHECK_EQ(rh.heap.count, 0);
    REQUIRE(runheap_room(&rh, N) == 0);
    CHECK(rh.heap.capacity >= N);
    alloc_fail_after(0);
    for (uint32_t i = N / 2; i < N; i++)
        runheap_push(&rh, &leases[i]); /* falling keys: most go to the heap */
    CHECK(rh.heap.count > 0);
    CHECK_EQ(rh.count, N);
    CHECK_EQ(((struct linked_item *)runheap_top(&rh))->key, 1);
    alloc_fail_after(-1);
    runheap_free(&rh);
}

static void test_jobtab_and_idmap_reserve(void)
{
    struct jobtab tab;
    jobtab_init(&tab);
    struct job *fake = (struct job *)(void *)&tab; /* jobtab keeps pointers, never reads them */
    alloc_fail_after(0);
    CHECK_EQ(jobtab_reserve(&tab, 1, 1000), -ENOMEM);
    CHECK_EQ(tab.count, 0);
    alloc_fail_after(5); /* a few pages, then none: the next try goes on from them */
    CHECK_EQ(jobtab_reserve(&tab, 1, 1000), -ENOMEM);
    CHECK_EQ(tab.spare_count, 5);
    alloc_fail_after(-1);
    REQUIRE(jobtab_reserve(&tab, 1, 1000) == 0);
    alloc_fail_after(0);
    for (uint64_t id = 1; id <= 1000; id++)
        CHECK(jobtab_put(&tab, id, fake) == NULL);
    CHECK_EQ(tab.count, 1000);
    CHECK(jobtab_get(&tab, 777) == fake);
    CHECK_EQ(jobtab_reserve(&tab, 1, 1000), 0); /* there already: nothing to allocate */
    alloc_fail_after(-1);
    jobtab_free(&tab);
    struct idmap map;
    idmap_init(&map);
    REQUIRE(idmap_reserve(&map, 5000) == 0);
    alloc_fail_after(0);
    for (uint64_t id = 1; id <= 5000; id++)
        (void)idmap_put(&map, id * 7919, &map);
    CHECK_EQ(idmap_reserve(&map, 100000), -ENOMEM);
    CHECK(idmap_get(&map, 7919 * 4000) == &map);
    alloc_fail_after(-1);
    idmap_free(&map);
}

static void test_job_pool_reserve(void)
{
    struct job_pool pool;
    job_pool_init(&pool);
    alloc_fail_after(0);
    CHECK_EQ(job_pool_reserve(&pool, 256, 10), -ENOMEM);
    CHECK(job_pool_try_alloc(&pool, 256) == NULL);
    alloc_fail_after(-1);
    REQUIRE(job_pool_reserve(&pool, 256, 10000) == 0); /* more than a chunk holds */
    REQUIRE(job_pool_reserve(&pool, 256, 3) == 0);      /* held already */
    alloc_fail_after(0);
    /* try_alloc (the body cache) leaves held blocks alone: it needs a new chunk, and fails. */
    for (int i = 0; i < 20000 && job_pool_try_alloc(&pool, 256) != NULL; i++) {
    }
    CHECK(job_pool_try_alloc(&pool, 256) == NULL);
    for (int i = 0; i < 10000; i++)
        CHECK(job_pool_alloc(&pool, 256) != NULL); /* the held ones: no allocation */
    alloc_fail_after(-1);
    job_pool_destroy(&pool);
}

static int64_t now_ms = 1700000000000;

static uint32_t keyed_puts; /* puts given a fresh idempotency key (its idem and map room) */

static int put(struct queue_state *state, const char *queue, int64_t delay_ms, int64_t ttl_ms)
{
    struct queue_put_args args = {.queue = queue, .queue_len = (uint32_t)strlen(queue),
                                  .max_attempts = -1, .body = "body", .body_len = 4,
                                  .delay_ms = delay_ms, .ttl_ms = ttl_ms};
    char key[32];
    if (delay_ms == 0 && ttl_ms == 0 && keyed_puts++ % 2 == 0) {
        args.key_len = (uint32_t)snprintf(key, sizeof(key), "k%u", keyed_puts);
        args.key = key;
    }
    uint64_t id, seq;
    bool dup;
    int rc = queue_put(state, &args, at_ms(now_ms), &id, &dup, &seq);
    if (rc == 0)
        queue_durable(state, fake_seq_next + 1, at_ms(now_ms));
    return rc;
}

/* Reserve up to n jobs of queue and ack them; returns how many. */
static uint32_t drain(struct queue_state *state, const char *queue, uint32_t n)
{
    struct queue_owner owner;
    queue_owner_init(&owner);
    struct queue_reserver r = {.queues = {queue_find(state, queue, (uint32_t)strlen(queue))},
                               .queue_count = 1, .count_max = n, .deadline_ns = 0,
                               .owner = &owner};
    REQUIRE(r.queues[0] != NULL);
    struct job *jobs[LIMIT_RESERVE_MAX_JOBS];
    uint32_t got = queue_reserve(state, &r, at_ms(now_ms), jobs);
    uint64_t ids[LIMIT_RESERVE_MAX_JOBS], tokens[LIMIT_RESERVE_MAX_JOBS];
    for (uint32_t k = 0; k < got; k++) {
        ids[k] = jobs[k]->id;
        tokens[k] = queue_job_x(jobs[k])->lease_token;
    }
    for (uint32_t k = 0; k < got; k++)
        REQUIRE(queue_ack(state, ids[k], tokens[k], NULL, 0, at_ms(now_ms), NULL) == 0);
    return got;
}

/* The Nth allocation fails, for every N up to past the last one a run of puts makes: each put
 * either succeeds or is refused with nothing logged and nothing changed. */
static void test_put_refused_cleanly(void)
{
    uint32_t refusals = 0;
    for (int64_t n = 0; n < 60; n++) {
        struct queue_state *state = state_new();
        REQUIRE(put(state, "q", 0, 0) == 0); /* the queue exists, with its first job */
        alloc_fail_after(n);
        uint32_t ok = 1;
        int rc = 0;
        for (int i = 0; i < 5000 && rc == 0; i++) {
            uint64_t seq_before = fake_seq_next;
            struct queue_totals before, after;
            queue_totals_get(state, &before);
            rc = put(state, i % 3 == 0 ? "q" : "r", i % 5 == 0 ? 1000 : 0, i % 7 == 0 ? 60000 : 0);
            queue_totals_get(state, &after);
            if (rc == 0) {
                ok++;
                continue;
            }
            CHECK_EQ(rc, QUEUE_ENOMEM);
            CHECK_EQ(fake_seq_next, seq_before); /* nothing logged */
            CHECK_EQ(after.jobs, before.jobs);   /* nothing applied */
            CHECK_EQ(after.puts_refused_memory, before.puts_refused_memory + 1);
            refusals++;
        }
        /* Everything but puts goes on while no allocation succeeds. */
        struct queue_stats st;
        queue_stats_get(queue_find(state, "q", 1), at_ms(now_ms), &st);
        uint32_t acked = drain(state, "q", 16);
        CHECK(acked > 0);
        CHECK(acked == 16 || acked == st.ready);
        /* Memory is back: puts are accepted again and every job is there. */
        alloc_fail_after(-1);
        CHECK_EQ(put(state, "q", 0, 0), 0);
        struct queue_totals totals;
        queue_totals_get(state, &totals);
        CHECK_EQ(totals.jobs, ok + 1 - acked);
        queue_state_destroy(state);
    }
    CHECK(refusals > 50);
}

int main(void)
{
    RUN_TEST(test_heap_reserve);
    RUN_TEST(test_room_for_a_total);
    RUN_TEST(test_jobtab_and_idmap_reserve);
    RUN_TEST(test_job_pool_reserve);
    RUN_TEST(test_put_refused_cleanly);
    return check_exit();
}
