/*
 * job_pool: fixed-size blocks for the broker's jobs, carved from large chunks.
 *
 * A job and its inline body are one block (queue.c). Under a producer at full speed the
 * broker allocates one block per job, ~350 bytes: through calloc that was ~300 instructions
 * per job, and the heap's growth page-faulted one 4 KiB page every ~12 jobs. The pool maps
 * JOB_POOL_CHUNK_BYTES at a time with MAP_POPULATE (the kernel fills the pages in one call
 * instead of one fault each), hands out blocks by bumping a pointer, and keeps freed blocks
 * on a free list per size class for reuse.
 *
 * Size classes: a request is rounded up to JOB_POOL_GRAIN bytes; class c serves blocks of
 * (c + 1) * JOB_POOL_GRAIN bytes, up to JOB_POOL_BLOCK_MAX. Larger requests are the caller's
 * to allocate elsewhere (job_pool_fits).
 *
 * Prefaulting (job_pool_prefault_start, the server's choice). Mapping with MAP_POPULATE still
 * costs the kernel's page allocation and clearing, on the loop thread: under a producer at full
 * speed that was a fifth of the loop's time. With prefaulting a helper thread keeps up to
 * JOB_POOL_READY_MAX populated chunks ready, and a new chunk is taken from them (a mutex, once
 * per ~3000 jobs); when none is ready the loop maps one itself, as without. The helper touches
 * nothing but the chunks it maps: the queue state stays the loop's alone.
 *
 * Memory is returned to the system only by job_pool_destroy: a backlog that drains leaves its
 * blocks on the free lists for the next one (glibc's heap mostly keeps such memory too).
 * Under AddressSanitizer free blocks and the unused tail of a chunk are poisoned, so a use
 * after job_pool_free is still reported.
 */
#ifndef SPOOL_SRC_JOB_POOL_H
#define SPOOL_SRC_JOB_POOL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Block sizes are multiples of this: 16-byte alignment (what malloc gives), and 32 keeps the
 * rounding waste under 10% of a ~350-byte job. */
#define JOB_POOL_GRAIN 32u
/* The largest block: room for a job struct (~250 bytes) and then some (bodies are kept apart,
 * in the body cache: body_cache.h). */
#define JOB_POOL_BLOCK_MAX 640u
#define JOB_POOL_CLASSES (JOB_POOL_BLOCK_MAX / JOB_POOL_GRAIN)
/* 1 MiB: ~3000 jobs per map call, and small enough that an idle server's first chunk is
 * negligible. */
#define JOB_POOL_CHUNK_BYTES ((size_t)1024 * 1024)
/* Chunks the prefault helper keeps ready: 8 MiB, ~40 ms of a producer at full speed, which
 * the helper refills faster than that. */
#define JOB_POOL_READY_MAX 8u

struct job_pool_prefault {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* the helper waits here for room, or to stop */
    void *ready[JOB_POOL_READY_MAX];
    uint32_t ready_count;
    bool stop;
};

struct job_pool {
    void *free_lists[JOB_POOL_CLASSES]; /* a free block's first word links the next */
    uint8_t *bump;                      /* next unused byte of the newest chunk */
    size_t bump_left;
    void **chunks; /* every chunk mapped, for job_pool_destroy */
    size_t chunk_count;
    size_t chunk_cap;
    struct job_pool_prefault *prefault; /* NULL unless job_pool_prefault_start ran */
    uint64_t chunks_prefaulted;         /* taken from the helper (for tests) */
    uint64_t free_bytes; /* bytes of the blocks on the free lists: resident, but reusable */
    size_t free_counts[JOB_POOL_CLASSES]; /* blocks on each free list */
    size_t held[JOB_POOL_CLASSES]; /* of those, held for job_pool_alloc by job_pool_reserve */
};

void job_pool_init(struct job_pool *pool);
/* Start the prefault helper thread; 0 or a negative errno (the pool then works without). */
int job_pool_prefault_start(struct job_pool *pool);
/* Unmap every chunk (stopping the helper first): all blocks become invalid. */
void job_pool_destroy(struct job_pool *pool);
/* True if a block of size bytes comes from the pool. */
bool job_pool_fits(size_t size);
/* Hold at least count blocks of size (counting those held already) for the next
 * job_pool_alloc calls of that size, so that they cannot fail: the put path holds a job's
 * block before it logs the put, a batch all of its blocks. 0, or -ENOMEM (holds unchanged;
 * blocks made meanwhile stay on the free list). job_pool_try_alloc does not take held blocks;
 * a hold not used (a put whose log append failed) serves the next put. */
int job_pool_reserve(struct job_pool *pool, size_t size, size_t count)
    __attribute__((warn_unused_result));
/* A zeroed block of at least size bytes (job_pool_fits(size)): a held one if any; aborts if
 * none is held and the system has no memory left. */
void *job_pool_alloc(struct job_pool *pool, size_t size);
/* The same, or NULL when the system has no memory for a new chunk (the body cache: a body
 * it cannot keep stays in the log). */
void *job_pool_try_alloc(struct job_pool *pool, size_t size);
/* Return a block obtained with the same size. */
void job_pool_free(struct job_pool *pool, void *block, size_t size);

#endif
