/*
 * job_pool.c: size-class free lists over chunks mapped with MAP_POPULATE (see job_pool.h).
 *
 * Invariants: every block handed out lies inside one chunk in pool->chunks; a block is either
 * handed out, on exactly one free list (the one of its size class), or part of the bump
 * region; bump_left is a multiple of JOB_POOL_GRAIN, so every block starts JOB_POOL_GRAIN
 * aligned within a page-aligned chunk.
 */
#include "job_pool.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../storage/assert.h"

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

void job_pool_destroy(struct job_pool *pool)
{
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
 * than one block). */
static void pool_chunk_new(struct job_pool *pool)
{
    if (pool->chunk_count == pool->chunk_cap) {
        size_t cap = pool->chunk_cap == 0 ? 16 : pool->chunk_cap * 2;
        void **chunks = realloc(pool->chunks, cap * sizeof *chunks);
        SPOOL_ASSERT(chunks != NULL);
        pool->chunks = chunks;
        pool->chunk_cap = cap;
    }
    void *chunk = mmap(NULL, JOB_POOL_CHUNK_BYTES, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    SPOOL_ASSERT(chunk != MAP_FAILED);
    POOL_POISON(chunk, JOB_POOL_CHUNK_BYTES);
    pool->chunks[pool->chunk_count++] = chunk;
    pool->bump = chunk;
    pool->bump_left = JOB_POOL_CHUNK_BYTES;
}

void *job_pool_alloc(struct job_pool *pool, size_t size)
{
    size_t c = pool_class(size);
    size_t block_size = (c + 1) * JOB_POOL_GRAIN;
    void *block = pool->free_lists[c];
    if (block != NULL) {
        POOL_UNPOISON(block, block_size);
        void *next;
        memcpy(&next, block, sizeof next);
        pool->free_lists[c] = next;
        memset(block, 0, block_size);
    } else { /* never used since the chunk was mapped: still the zeroes mmap gave */
        if (pool->bump_left < block_size)
            pool_chunk_new(pool);
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
    POOL_POISON((uint8_t *)block + sizeof(void *), (c + 1) * JOB_POOL_GRAIN - sizeof(void *));
}
