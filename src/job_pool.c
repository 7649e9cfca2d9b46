/*
 * job_pool.c: size-class free lists over chunks mapped with MAP_POPULATE, by the loop or ahead
 * of it by the prefault helper (see job_pool.h).
 *
 * Invariants: every block handed out lies inside one chunk in pool->chunks; a block is either
 * handed out, on exactly one free list (the one of its size class), or part of the bump
 * region; bump_left is a multiple of JOB_POOL_GRAIN, so every block starts JOB_POOL_GRAIN
 * aligned within a page-aligned chunk.
 */
#include "job_pool.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "alloc_fail.h"
#include "assert.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POOL_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define POOL_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POOL_POISON(p, n) ((void)(p), (void)(n))
#define POOL_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

void job_pool_init(struct job_pool *pool)
{
    memset(pool, 0, sizeof *pool);
}

static void *pool_map_chunk(void)
{
    void *chunk = mmap(NULL, JOB_POOL_CHUNK_BYTES, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    return chunk == MAP_FAILED ? NULL : chunk;
}

/* The helper: keep ready[] full, mapping outside the lock. */
static void *pool_prefault_main(void *arg)
{
    struct job_pool_prefault *pf = arg;
    pthread_mutex_lock(&pf->lock);
    while (!pf->stop) {
        if (pf->ready_count == JOB_POOL_READY_MAX) {
            pthread_cond_wait(&pf->wake, &pf->lock);
            continue;
        }
        pthread_mutex_unlock(&pf->lock);
        void *chunk = pool_map_chunk();
        pthread_mutex_lock(&pf->lock);
        if (chunk == NULL) {
            /* No memory now: the loop maps (and fails) on its own; retry when woken. */
            pthread_cond_wait(&pf->wake, &pf->lock);
            continue;
        }
        SPOOL_ASSERT(pf->ready_count < JOB_POOL_READY_MAX);
        pf->ready[pf->ready_count++] = chunk;
    }
    pthread_mutex_unlock(&pf->lock);
    return NULL;
}

int job_pool_prefault_start(struct job_pool *pool)
{
    SPOOL_ASSERT(pool->prefault == NULL);
    struct job_pool_prefault *pf = calloc(1, sizeof(*pf));
    if (pf == NULL)
        return -ENOMEM;
    /* Each step's failure is reported (a negative errno) and undoes the steps before it: the
     * pool then works without the helper. */
    int rc = pthread_mutex_init(&pf->lock, NULL);
    if (rc != 0) {
        free(pf);
        return -rc;
    }
    rc = pthread_cond_init(&pf->wake, NULL);
    if (rc != 0) {
        pthread_mutex_destroy(&pf->lock);
        free(pf);
        return -rc;
    }
    /* The helper starts with every signal blocked, so that signals (SIGTERM, SIGINT, which
     * the server takes through its signalfd) are never delivered to it. */
    sigset_t all, old;
    sigfillset(&all);
    rc = pthread_sigmask(SIG_SETMASK, &all, &old);
    if (rc == 0) {
        rc = pthread_create(&pf->thread, NULL, pool_prefault_main, pf);
        int restore = pthread_sigmask(SIG_SETMASK, &old, NULL);
        SPOOL_ASSERT(restore == 0); /* a mask the thread had a moment ago */
    }
    if (rc != 0) {
        pthread_cond_destroy(&pf->wake);
        pthread_mutex_destroy(&pf->lock);
        free(pf);
        return -rc;
    }
    pool->prefault = pf;
    return 0;
}

static void pool_prefault_stop(struct job_pool *pool)
{
    struct job_pool_prefault *pf = pool->prefault;
    if (pf == NULL)
        return;
    pthread_mutex_lock(&pf->lock);
    pf->stop = true;
    pthread_cond_signal(&pf->wake);
    pthread_mutex_unlock(&pf->lock);
    pthread_join(pf->thread, NULL);
    for (uint32_t i = 0; i < pf->ready_count; i++)
        munmap(pf->ready[i], JOB_POOL_CHUNK_BYTES);
    pthread_cond_destroy(&pf->wake);
    pthread_mutex_destroy(&pf->lock);
    free(pf);
    pool->prefault = NULL;
}

/* A ready chunk from the helper, or NULL when it has none. */
static void *pool_prefault_take(struct job_pool *pool)
{
    struct job_pool_prefault *pf = pool->prefault;
    if (pf == NULL)
        return NULL;
    void *chunk = NULL;
    pthread_mutex_lock(&pf->lock);
    if (pf->ready_count > 0)
        chunk = pf->ready[--pf->ready_count];
    pthread_cond_signal(&pf->wake);
    pthread_mutex_unlock(&pf->lock);
    if (chunk != NULL)
        pool->chunks_prefaulted++;
    return chunk;
}

void job_pool_destroy(struct job_pool *pool)
{
    pool_prefault_stop(pool);
    for (size_t i = 0; i < pool->chunk_count; i++) {
        POOL_UNPOISON(pool->chunks[i], JOB_POOL_CHUNK_BYTES);
        munmap(pool->chunks[i], JOB_POOL_CHUNK_BYTES);
    }
    free(pool->chunks);
    job_pool_init(pool);
}

bool job_pool_fits(size_t size)
{
    return size > 0 && size <= JOB_POOL_BLOCK_MAX;
}

static size_t pool_class(size_t size)
{
    SPOOL_ASSERT(job_pool_fits(size));
    return (size - 1) / JOB_POOL_GRAIN;
}

/* Map a new chunk and make it the bump region (the old region's tail is abandoned: less
 * than one block). False when the system has no memory for it (nothing changed). */
static bool pool_chunk_new(struct job_pool *pool)
{
    if (pool->chunk_count == pool->chunk_cap) {
        size_t cap = pool->chunk_cap == 0 ? 16 : pool->chunk_cap * 2;
        void **chunks = realloc(pool->chunks, cap * sizeof *chunks);
        if (chunks == NULL)
            return false;
        pool->chunks = chunks;
        pool->chunk_cap = cap;
    }
    if (alloc_fail_now())
        return false;
    void *chunk = pool_prefault_take(pool);
    if (chunk == NULL)
        chunk = pool_map_chunk();
    if (chunk == NULL)
        return false;
    POOL_POISON(chunk, JOB_POOL_CHUNK_BYTES);
    pool->chunks[pool->chunk_count++] = chunk;
    pool->bump = chunk;
    pool->bump_left = JOB_POOL_CHUNK_BYTES;
    return true;
}

/* The first block of class c's free list. */
static void *pool_free_pop(struct job_pool *pool, size_t c, size_t block_size)
{
    void *block = pool->free_lists[c];
    SPOOL_ASSERT(block != NULL && pool->free_counts[c] > 0);
    POOL_UNPOISON(block, block_size);
    void *next;
    memcpy(&next, block, sizeof next);
    pool->free_lists[c] = next;
    pool->free_counts[c]--;
    SPOOL_ASSERT(pool->free_bytes >= block_size);
    pool->free_bytes -= block_size;
    memset(block, 0, block_size);
    return block;
}

void *job_pool_alloc(struct job_pool *pool, size_t size)
{
    size_t c = pool_class(size);
    if (pool->held[c] > 0) {
        pool->held[c]--;
        return pool_free_pop(pool, c, (c + 1) * JOB_POOL_GRAIN);
    }
    void *block = job_pool_try_alloc(pool, size);
    SPOOL_ASSERT(block != NULL); /* out of memory where nothing was reserved */
    return block;
}

int job_pool_reserve(struct job_pool *pool, size_t size, size_t count)
{
    size_t c = pool_class(size);
    size_t block_size = (c + 1) * JOB_POOL_GRAIN;
    if (pool->held[c] >= count)
        return 0;
    /* Carve blocks off the bump region (mapping chunks as needed) onto the free list until
     * it has count blocks to hold. */
    while (pool->free_counts[c] < count) {
        if (pool->bump_left < block_size && !pool_chunk_new(pool))
            return -ENOMEM;
        void *block = pool->bump;
        pool->bump += block_size;
        pool->bump_left -= block_size;
        POOL_UNPOISON(block, block_size);
        job_pool_free(pool, block, size);
    }
    pool->held[c] = count;
    return 0;
}

void *job_pool_try_alloc(struct job_pool *pool, size_t size)
{
    size_t c = pool_class(size);
    size_t block_size = (c + 1) * JOB_POOL_GRAIN;
    void *block;
    if (pool->free_counts[c] > pool->held[c]) {
        block = pool_free_pop(pool, c, block_size);
    } else { /* never used since the chunk was mapped: still the zeroes mmap gave */
        if (pool->bump_left < block_size && !pool_chunk_new(pool))
            return NULL;
        block = pool->bump;
        pool->bump += block_size;
        pool->bump_left -= block_size;
        POOL_UNPOISON(block, block_size);
    }
    return block;
}

void job_pool_free(struct job_pool *pool, void *block, size_t size)
{
    if (block == NULL)
        return;
    size_t c = pool_class(size);
    memcpy(block, &pool->free_lists[c], sizeof(void *));
    pool->free_lists[c] = block;
    pool->free_counts[c]++;
    pool->free_bytes += (c + 1) * JOB_POOL_GRAIN;
    POOL_POISON((uint8_t *)block + sizeof(void *), (c + 1) * JOB_POOL_GRAIN - sizeof(void *));
}
