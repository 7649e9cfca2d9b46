/*
 * body_cache: the job bodies kept in RAM, bounded in bytes (`--body-cache`).
 *
 * Bodies live in the log (DESIGN.md). The cache holds the ones likely to be delivered soon: a
 * put's body (so a job delivered right after its put reads nothing back), and the bodies a
 * read from the log brought in with the one a delivery needed (the rest of its batch, which a
 * FIFO drain delivers next). Everything else is read back from its batch when it is
 * delivered or peeked (src/body_fetch.c).
 *
 * Ownership. An entry is one allocation: a header and the body bytes. Its owner (a job) keeps
 * a pointer to the bytes in one place (`*owner`, job->body); the cache writes NULL there when
 * it evicts the entry, so the owner learns "not cached" by reading its own field, without a
 * lookup. The owner hands the entry back with body_cache_drop when it no longer needs the
 * body (ack, delete, forget).
 *
 * Eviction. Entries are evicted oldest first whenever the cached bytes exceed bytes_max: the
 * newest puts stay. Any body may be evicted, even the body of a put not yet durable: such a
 * job is invisible until its record is durable, and a delivery that finds its record not yet
 * readable waits for the watermark (body_fetch.c). A delivered body is not moved: in a FIFO
 * drain it is the oldest already, and touching it (and its neighbours' links) on every
 * delivery cost the hot path more than it saved.
 *
 * Bytes are counted with the entry's header and an allocator overhead, so that bytes_max bounds
 * the memory the cache takes, not only the body bytes. bytes_max 0 means unbounded (tools and
 * tests that keep every body, like spool-log replay).
 */
#ifndef SPOOL_SRC_BODY_CACHE_H
#define SPOOL_SRC_BODY_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "assert.h"
#include "job_pool.h"
#include "list.h"

/* What malloc adds to each allocation, on average (glibc: an 8-byte size word, 16-byte
 * rounding): counted so that many large bodies do not overrun the bound. */
#define BODY_CACHE_MALLOC_OVERHEAD 16u

struct body_cache_entry {
    struct list_link lru; /* in cache->lru */
    uint8_t **owner;      /* holds data; set to NULL on eviction */
    uint32_t len;
    uint16_t block_size;  /* of its job_pool block; 0: malloc'ed */
    uint8_t data[];
};

struct body_cache {
    struct list_link lru; /* every entry, next to evict first */
    uint64_t bytes;       /* counted bytes of every entry */
    uint64_t bytes_max;   /* 0: unbounded */
    uint64_t count;
    /* counters, for stats */
    uint64_t evictions;
    uint64_t inserts;
    uint64_t put_failures; /* bodies not kept for want of memory */
    /* Small bodies come from this pool (a bump pointer over prefaulted chunks: a put's body
     * costs no malloc and no page fault on the loop); larger ones, or all with NULL, from
     * malloc. Blocks go back to the pool, which keeps them for the next bodies. */
    struct job_pool *pool;
};

/* pool: may be NULL (every body malloc'ed); else it must outlive the cache. */
void body_cache_init(struct body_cache *cache, uint64_t bytes_max, struct job_pool *pool);
/* Free every entry (owners are not told: the state they live in goes away with the cache). */
void body_cache_destroy(struct body_cache *cache);
/* Change the bound (and evict down to it). */
void body_cache_set_max(struct body_cache *cache, uint64_t bytes_max);

/* The bytes an entry of a body of len bytes counts for (a malloc'ed one; a pooled one counts
 * its block, which is no larger). */
uint64_t body_cache_cost(uint32_t len);

/* Copy body into a new entry owned by *owner (which must be NULL), the newest, and set *owner
 * to its bytes; then evict down to the bound (the new entry too, if it alone is above it).
 * 0, or -ENOMEM (nothing changed but put_failures: the body stays in the log only, which is
 * where a delivery reads it from; callers may ignore the result). */
int body_cache_put(struct body_cache *cache, uint8_t **owner, const void *body, uint32_t len);
/* The owner no longer needs its body: free the entry, *owner = NULL. Nothing if *owner is
 * NULL (not cached). */
void body_cache_drop(struct body_cache *cache, uint8_t **owner);
/* The owner's pointer moves from *from to *to (a job's body pointer moves between its core
 * and its extension, queue.h): *to = *from, *from = NULL, and the entry, if any, now writes
 * to *to when it evicts. *to must be NULL. */
void body_cache_rehome(struct body_cache *cache, uint8_t **from, uint8_t **to);
/* Evict entries until the cache is within bytes (its bound, or a lower target under memory
 * pressure). Returns the bytes freed. */
uint64_t body_cache_trim_to(struct body_cache *cache, uint64_t bytes);

#endif
