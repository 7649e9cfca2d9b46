/* The job pool under random alloc/free sequences against a model: every live block is zeroed
 * when handed out, 16-byte aligned, and never overlaps another live block (each is filled
 * with its own byte pattern and checked before it is freed); freed blocks are reused; the
 * pool crosses many chunks. Under ASan a use after free of a pooled block is reported. */
#include <string.h>
#include <time.h>

#include "check.h"
#include "job_pool.h"

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

enum { SLOTS = 4096 };

struct slot {
    uint8_t *block;
    size_t size;
    uint8_t fill;
};

static bool block_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

static bool block_filled(const uint8_t *p, size_t n, uint8_t fill)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != fill)
            return false;
    return true;
}

static void test_pool_matches_model(void)
{
    static struct slot slots[SLOTS];
    struct job_pool pool;
    job_pool_init(&pool);
    size_t live_bytes_max = 0, live_bytes = 0;
    for (int iter = 0; iter < 200000; iter++) {
        struct slot *s = &slots[rng() % SLOTS];
        if (s->block != NULL) {
            CHECK(block_filled(s->block, s->size, s->fill));
            job_pool_free(&pool, s->block, s->size);
            live_bytes -= s->size;
            s->block = NULL;
            continue;
        }
        s->size = 1 + rng() % JOB_POOL_BLOCK_MAX;
        s->block = job_pool_alloc(&pool, s->size);
        REQUIRE(s->block != NULL);
        CHECK_EQ((uintptr_t)s->block % 16, 0);
        CHECK(block_zero(s->block, s->size));
        s->fill = (uint8_t)(1 + rng() % 255);
        memset(s->block, s->fill, s->size);
        live_bytes += s->size;
        if (live_bytes > live_bytes_max)
            live_bytes_max = live_bytes;
    }
    for (size_t i = 0; i < SLOTS; i++)
        if (slots[i].block != NULL)
            CHECK(block_filled(slots[i].block, slots[i].size, slots[i].fill));
    /* Reuse: ~1.3 MiB live at most, so without free lists 200k allocations would need far more
     * than this many chunks. */
    CHECK(pool.chunk_count >= 1);
    CHECK(pool.chunk_count * JOB_POOL_CHUNK_BYTES < 2 * live_bytes_max + 4 * JOB_POOL_CHUNK_BYTES);
    job_pool_destroy(&pool);
    CHECK_EQ(pool.chunk_count, 0);
}

/* A freed block comes back for the same size class, zeroed again. */
static void test_free_then_reuse(void)
{
    struct job_pool pool;
    job_pool_init(&pool);
    uint8_t *a = job_pool_alloc(&pool, 300);
    memset(a, 0xAB, 300);
    job_pool_free(&pool, a, 300);
    uint8_t *b = job_pool_alloc(&pool, 290); /* same 32-byte class as 300 */
    CHECK(b == a);
    CHECK(block_zero(b, 290));
    uint8_t *c = job_pool_alloc(&pool, 300);
    CHECK(c != a);
    job_pool_free(&pool, NULL, 300); /* a no-op, like free(NULL) */
    job_pool_destroy(&pool);
}

static void test_fits(void)
{
    CHECK(!job_pool_fits(0));
    CHECK(job_pool_fits(1));
    CHECK(job_pool_fits(JOB_POOL_BLOCK_MAX));
    CHECK(!job_pool_fits(JOB_POOL_BLOCK_MAX + 1));
}

/* Many blocks of the largest class: the pool maps chunk after chunk, no block straddles two
 * (each stays writable end to end, checked by the fill pattern). */
static void test_many_chunks(void)
{
    enum { COUNT = 3 * JOB_POOL_CHUNK_BYTES / JOB_POOL_BLOCK_MAX + 7 };
    static uint8_t *blocks[COUNT];
    struct job_pool pool;
    job_pool_init(&pool);
    for (size_t i = 0; i < COUNT; i++) {
        blocks[i] = job_pool_alloc(&pool, JOB_POOL_BLOCK_MAX);
        memset(blocks[i], (int)(i % 251) + 1, JOB_POOL_BLOCK_MAX);
    }
    CHECK(pool.chunk_count >= 4);
    for (size_t i = 0; i < COUNT; i++)
        CHECK(block_filled(blocks[i], JOB_POOL_BLOCK_MAX, (uint8_t)(i % 251 + 1)));
    job_pool_destroy(&pool);
}

static uint32_t prefault_ready(struct job_pool *pool)
{
    pthread_mutex_lock(&pool->prefault->lock);
    uint32_t n = pool->prefault->ready_count;
    pthread_mutex_unlock(&pool->prefault->lock);
    return n;
}

/* With the prefault helper: it fills its ready chunks, new chunks come from them (zeroed,
 * writable end to end), it refills after a take, and destroy stops it and unmaps what it
 * still held (ASan and valgrind would see a leak or a use after unmap). */
static void test_prefault(void)
{
    enum { COUNT = 3 * JOB_POOL_CHUNK_BYTES / JOB_POOL_BLOCK_MAX + 7 };
    static uint8_t *blocks[COUNT];
    struct job_pool pool;
    job_pool_init(&pool);
    REQUIRE(job_pool_prefault_start(&pool) == 0);
    struct timespec nap = {.tv_nsec = 10 * 1000 * 1000};
    for (int i = 0; i < 500 && prefault_ready(&pool) < JOB_POOL_READY_MAX; i++)
        nanosleep(&nap, NULL);
    CHECK_EQ(prefault_ready(&pool), JOB_POOL_READY_MAX);
    for (size_t i = 0; i < COUNT; i++) {
        blocks[i] = job_pool_alloc(&pool, JOB_POOL_BLOCK_MAX);
        CHECK(block_filled(blocks[i], JOB_POOL_BLOCK_MAX, 0));
        memset(blocks[i], (int)(i % 251) + 1, JOB_POOL_BLOCK_MAX);
    }
    CHECK(pool.chunks_prefaulted >= 4);
    for (size_t i = 0; i < COUNT; i++)
        CHECK(block_filled(blocks[i], JOB_POOL_BLOCK_MAX, (uint8_t)(i % 251 + 1)));
    for (int i = 0; i < 500 && prefault_ready(&pool) < JOB_POOL_READY_MAX; i++)
        nanosleep(&nap, NULL);
    CHECK_EQ(prefault_ready(&pool), JOB_POOL_READY_MAX);
    job_pool_destroy(&pool);
    CHECK(pool.prefault == NULL);
}

int main(void)
{
    RUN_TEST(test_pool_matches_model);
    RUN_TEST(test_free_then_reuse);
    RUN_TEST(test_fits);
    RUN_TEST(test_many_chunks);
    RUN_TEST(test_prefault);
    return check_exit();
}
