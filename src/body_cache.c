/*
 * The byte-bounded cache of job bodies (body_cache.h: ownership, eviction order).
 */
#include "body_cache.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static struct body_cache_entry *entry_of(uint8_t *data)
{
    SPOOL_ASSERT(data != NULL);
    return (struct body_cache_entry *)(void *)(data - offsetof(struct body_cache_entry, data));
}

void body_cache_init(struct body_cache *cache, uint64_t bytes_max, struct job_pool *pool)
{
    memset(cache, 0, sizeof(*cache));
    list_init(&cache->lru);
    cache->bytes_max = bytes_max;
    cache->pool = pool;
}

static uint64_t entry_cost(const struct body_cache_entry *entry)
{
    return entry->block_size != 0 ? entry->block_size : body_cache_cost(entry->len);
}

uint64_t body_cache_cost(uint32_t len)
{
    return (uint64_t)len + sizeof(struct body_cache_entry) + BODY_CACHE_MALLOC_OVERHEAD;
}

static void entry_free(struct body_cache *cache, struct body_cache_entry *entry)
{
    uint64_t cost = entry_cost(entry);
    SPOOL_ASSERT(cache->bytes >= cost);
    SPOOL_ASSERT(cache->count > 0);
    cache->bytes -= cost;
    cache->count--;
    list_unlink(&entry->lru);
    if (entry->block_size != 0)
        job_pool_free(cache->pool, entry, entry->block_size);
    else
        free(entry);
}

void body_cache_destroy(struct body_cache *cache)
{
    struct list_link *link;
    while ((link = list_first(&cache->lru)) != NULL) {
        struct body_cache_entry *entry = LIST_ENTRY(link, struct body_cache_entry, lru);
        *entry->owner = NULL;
        entry_free(cache, entry);
    }
    SPOOL_ASSERT(cache->count == 0);
    SPOOL_ASSERT(cache->bytes == 0);
}

uint64_t body_cache_trim_to(struct body_cache *cache, uint64_t bytes)
{
    uint64_t before = cache->bytes;
    struct list_link *link;
    while (cache->bytes > bytes && (link = list_first(&cache->lru)) != NULL) {
        struct body_cache_entry *entry = LIST_ENTRY(link, struct body_cache_entry, lru);
        SPOOL_ASSERT(*entry->owner == entry->data);
        *entry->owner = NULL;
        entry_free(cache, entry);
        cache->evictions++;
    }
    return before - cache->bytes;
}

static void trim(struct body_cache *cache)
{
    if (cache->bytes_max != 0)
        (void)body_cache_trim_to(cache, cache->bytes_max);
}

void body_cache_set_max(struct body_cache *cache, uint64_t bytes_max)
{
    cache->bytes_max = bytes_max;
    trim(cache);
}

int body_cache_put(struct body_cache *cache, uint8_t **owner, const void *body, uint32_t len)
{
    SPOOL_ASSERT(owner != NULL);
    SPOOL_ASSERT(*owner == NULL);
    size_t size = sizeof(struct body_cache_entry) + (size_t)len;
    bool pooled = cache->pool != NULL && job_pool_fits(size);
    struct body_cache_entry *entry = pooled ? job_pool_try_alloc(cache->pool, size)
                                            : malloc(size);
    if (entry == NULL) {
        cache->put_failures++;
        return -ENOMEM;
    }
    /* The pool's block: the size rounded up to its grain. */
    entry->block_size =
        pooled ? (uint16_t)((size + JOB_POOL_GRAIN - 1) / JOB_POOL_GRAIN * JOB_POOL_GRAIN) : 0;
    entry->owner = owner;
    entry->len = len;
    if (len > 0)
        memcpy(entry->data, body, len);
    list_insert_tail(&cache->lru, &entry->lru);
    cache->bytes += entry_cost(entry);
    cache->count++;
    cache->inserts++;
    *owner = entry->data;
    trim(cache);
    return 0;
}

void body_cache_rehome(struct body_cache *cache, uint8_t **from, uint8_t **to)
{
    (void)cache;
    SPOOL_ASSERT(from != NULL && to != NULL);
    SPOOL_ASSERT(*to == NULL);
    if (*from == NULL)
        return;
    struct body_cache_entry *entry = entry_of(*from);
    SPOOL_ASSERT(entry->owner == from);
    entry->owner = to;
    *to = *from;
    *from = NULL;
}

void body_cache_drop(struct body_cache *cache, uint8_t **owner)
{
    SPOOL_ASSERT(owner != NULL);
    if (*owner == NULL)
        return;
    struct body_cache_entry *entry = entry_of(*owner);
    SPOOL_ASSERT(entry->owner == owner);
    *owner = NULL;
    entry_free(cache, entry);
}
