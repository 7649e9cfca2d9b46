/* The read-ahead policy (src/body_prefetch.c) over a hand-built ready order: batches planned in
 * the order the jobs are wanted, each once (not when a read of it exists, not twice when its
 * jobs are not adjacent), cached bodies passed over, and every bound kept: bytes in flight,
 * reads in flight, the cache's share, jobs visited per walk. Where it stops, the next walk
 * starts. */
#include <string.h>

#include "body_prefetch.h"
#include "check.h"

#define JOBS 6000
#define BODY 100
#define COST (BODY + BODY_PREFETCH_RECORD_BYTES)

static struct queue q;
static struct job jobs[JOBS];
static uint8_t cached_body[1];

/* Job i is in batch batch_of[i]: offsets 4096 apart in segment 1. */
static void build(uint32_t count, uint32_t per_batch)
{
    memset(&q, 0, sizeof(q));
    list_init(&q.ready_order);
    memset(jobs, 0, sizeof(jobs));
    for (uint32_t i = 0; i < count; i++) {
        struct job *job = &jobs[i];
        job->id = i + 1;
        job->queue = &q;
        job->state = JOB_READY;
        job->body_len = BODY;
        queue_job_set_pos(job, (struct log_pos){.seq = i + 1, .segment_id = 1,
                                                .batch_offset = 4096 * (1 + i / per_batch)});
        list_insert_tail(&q.ready_order, &job->state_link);
    }
}

static uint64_t reading_offset; /* a read of the batch at this offset exists (0: none) */
static bool reading(void *ctx, const struct log_pos *pos)
{
    CHECK(ctx == &q);
    return pos->batch_offset == reading_offset;
}

static struct body_prefetch_budget budget(uint64_t bytes, uint32_t reads)
{
    return (struct body_prefetch_budget){.bytes = bytes, .reads = reads};
}

/* Everything fits: one read per batch, in order, with its estimate; the walk ends. */
static void test_plans_in_order(void)
{
    build(50, 10);
    reading_offset = 0;
    struct body_prefetch_budget b = budget(1 << 20, BODY_PREFETCH_READS_MAX);
    struct body_prefetch_plan plan;
    body_prefetch_plan(&plan, &b, queue_ready_first(&q), reading, &q);
    CHECK_EQ(plan.count, 5);
    for (uint32_t i = 0; i < plan.count; i++) {
        CHECK_EQ(plan.batches[i].pos.batch_offset, 4096 * (i + 1));
        CHECK_EQ(plan.batches[i].bytes, 10 * COST);
    }
    CHECK_EQ(plan.stop, BODY_PREFETCH_END);
    CHECK(plan.resume == NULL);
}

/* Cached bodies, a batch being read, and a batch met again later are not planned. */
static void test_no_duplicates(void)
{
    build(40, 10);
    for (uint32_t i = 0; i < 10; i++)
        jobs[i].body = cached_body; /* batch 1: cached */
    reading_offset = 4096 * 2;      /* batch 2: being read */
    /* Move job 35 (batch 4) to right after batch 3's first job: batch 4 then batch 3 again. */
    list_unlink(&jobs[35].state_link);
    struct list_link *after = &jobs[20].state_link;
    jobs[35].state_link.prev = after;
    jobs[35].state_link.next = after->next;
    after->next->prev = &jobs[35].state_link;
    after->next = &jobs[35].state_link;
    struct body_prefetch_budget b = budget(1 << 20, BODY_PREFETCH_READS_MAX);
    struct body_prefetch_plan plan;
    body_prefetch_plan(&plan, &b, queue_ready_first(&q), reading, &q);
    CHECK_EQ(plan.count, 2);
    CHECK_EQ(plan.batches[0].pos.batch_offset, 4096 * 3);
    CHECK_EQ(plan.batches[1].pos.batch_offset, 4096 * 4);
    CHECK_EQ(plan.stop, BODY_PREFETCH_END);
    reading_offset = 0;
}

/* The bytes bound: the batch that does not fit is where the plan stops and resumes. */
static void test_bytes_bound(void)
{
    build(50, 10);
    reading_offset = 0;
    struct body_prefetch_budget b = budget(25 * COST, BODY_PREFETCH_READS_MAX);
    struct body_prefetch_plan plan;
    body_prefetch_plan(&plan, &b, queue_ready_first(&q), reading, &q);
    CHECK_EQ(plan.count, 2);
    CHECK_EQ(plan.stop, BODY_PREFETCH_BUDGET);
    CHECK(plan.resume == &jobs[20]);
    CHECK_EQ(plan.resume_bytes, 10 * COST);
    /* Nothing fits: nothing planned, the first batch is where to resume. */
    b = budget(5 * COST, BODY_PREFETCH_READS_MAX);
    body_prefetch_plan(&plan, &b, queue_ready_first(&q), reading, &q);
    CHECK_EQ(plan.count, 0);
    CHECK(plan.resume == &jobs[0]);
}

/* The reads bound. */
static void test_reads_bound(void)
{
    build(JOBS, 10);
    reading_offset = 0;
    struct body_prefetch_budget b = budget(UINT64_MAX, BODY_PREFETCH_READS_MAX);
    struct body_prefetch_plan plan;
    body_prefetch_plan(&plan, &b, queue_ready_first(&q), reading, &q);
    CHECK_EQ(plan.count, BODY_PREFETCH_READS_MAX);
    CHECK_EQ(plan.stop, BODY_PREFETCH_BUDGET);
    CHECK(plan.resume == &jobs[10 * BODY_PREFETCH_READS_MAX]);
    b = budget(UINT64_MAX, 3);
    body_prefetch_plan(&plan, &b, &jobs[100], reading, &q); /* a walk from further on */
    CHECK_EQ(plan.count, 3);
    CHECK_EQ(plan.batches[0].pos.batch_offset, 4096 * 11);
    CHECK(plan.resume == &jobs[130]);
}

/* The walk bound: a long run of cached bodies ends a walk with nothing planned. */
static void test_walk_bound(void)
{
    build(JOBS, 10);
    reading_offset = 0;
    for (uint32_t i = 0; i < BODY_PREFETCH_WALK_MAX + 100; i++)
        jobs[i].body = cached_body;
    struct body_prefetch_budget b = budget(UINT64_MAX, BODY_PREFETCH_READS_MAX);
    struct body_prefetch_plan plan;
    body_prefetch_plan(&plan, &b, queue_ready_first(&q), reading, &q);
    CHECK_EQ(plan.count, 0);
    CHECK_EQ(plan.stop, BODY_PREFETCH_WINDOW);
    CHECK(plan.resume == &jobs[BODY_PREFETCH_WALK_MAX]);
}

/* The window in bytes: 1 MiB bodies, two a batch: 15 of them fill the 16 MiB window, so 8
 * batches are planned (the 8th for its first job) and the walk stops at the 16th job. */
static void test_window_bytes(void)
{
    build(100, 2);
    reading_offset = 0;
    for (uint32_t i = 0; i < 100; i++)
        jobs[i].body_len = 1024 * 1024;
    struct body_prefetch_budget b = budget(UINT64_MAX, BODY_PREFETCH_READS_MAX);
    struct body_prefetch_plan plan;
    body_prefetch_plan(&plan, &b, queue_ready_first(&q), reading, &q);
    CHECK_EQ(BODY_PREFETCH_AHEAD_BYTES_MAX / (1024 * 1024 + BODY_PREFETCH_RECORD_BYTES), 15);
    CHECK_EQ(plan.count, 8);
    CHECK_EQ(plan.stop, BODY_PREFETCH_WINDOW);
    CHECK(plan.resume == &jobs[15]);
    CHECK_EQ(plan.visited, 15);
}

/* The budget: in-flight bytes and reads, and the cache's share of its bound. */
static void test_budget(void)
{
    struct body_prefetch_budget b;
    body_prefetch_budget_get(&b, 0, 0, 0, 0);
    CHECK_EQ(b.bytes, BODY_PREFETCH_INFLIGHT_BYTES_MAX);
    CHECK_EQ(b.reads, BODY_PREFETCH_READS_MAX);
    body_prefetch_budget_get(&b, 1000, 4, 0, 0);
    CHECK_EQ(b.bytes, BODY_PREFETCH_INFLIGHT_BYTES_MAX - 1000);
    CHECK_EQ(b.reads, BODY_PREFETCH_READS_MAX - 4);
    body_prefetch_budget_get(&b, BODY_PREFETCH_INFLIGHT_BYTES_MAX, 1, 0, 0);
    CHECK_EQ(b.bytes, 0);
    /* A 1 MiB cache: read-ahead fills half of it, what is in flight counted. */
    body_prefetch_budget_get(&b, 0, 0, 0, 1 << 20);
    CHECK_EQ(b.bytes, (1 << 20) / BODY_PREFETCH_CACHE_SHARE);
    body_prefetch_budget_get(&b, 100000, 1, 200000, 1 << 20);
    CHECK_EQ(b.bytes, (1 << 20) / BODY_PREFETCH_CACHE_SHARE - 300000);
    body_prefetch_budget_get(&b, 0, 0, (1 << 20) / BODY_PREFETCH_CACHE_SHARE, 1 << 20);
    CHECK_EQ(b.bytes, 0);
    body_prefetch_budget_get(&b, 0, 0, 1 << 20, 1 << 20); /* full of puts */
    CHECK_EQ(b.bytes, 0);
}

int main(void)
{
    RUN_TEST(test_plans_in_order);
    RUN_TEST(test_no_duplicates);
    RUN_TEST(test_bytes_bound);
    RUN_TEST(test_reads_bound);
    RUN_TEST(test_walk_bound);
    RUN_TEST(test_window_bytes);
    RUN_TEST(test_budget);
    return check_exit();
}
