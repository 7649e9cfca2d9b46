/*
 * Open-addressing hash maps (see map.h). Out of memory aborts.
 *
 * Each map hashes with its own seed. Linear probing with one shared hash function degrades
 * badly when one map's entries are inserted into another in the first map's slot order (a
 * checkpoint written by walking one map and loaded into a fresh, smaller one): the keys arrive
 * clustered by hash and the runs grow quadratically. Distinct seeds break that correlation.
 */
#include "map.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_fail.h"
#include "assert.h"

#define MAP_CAPACITY_MIN 16 /* a power of two; small maps stay one cache-friendly block */
/* idmap: ids are handed out in sequence (jobs, connections, segments), so consecutive ids get
 * consecutive slots within a run of IDMAP_RUN_IDS; only the runs are spread by the hash. A
 * run is one cache line (4 entries of 16 bytes, the table aligned to lines), so a producer's
 * puts miss the cache once per 4 ids instead of once per id, and growing the table copies
 * lines, not scattered entries. Runs that collide cost a few probes within a line or two;
 * strided ids (all equal modulo 4, or modulo large powers of two) still spread by run. */
#define IDMAP_RUN_BITS 2
#define IDMAP_LINE_BYTES 64
#define IDMAP_RUN_IDS (1u << IDMAP_RUN_BITS)
_Static_assert(IDMAP_RUN_IDS * sizeof(struct idmap_entry) == IDMAP_LINE_BYTES,
               "a run of ids fills one cache line");
/* Runs that land near each other merge into one probe sequence, and a removal shifts back
 * everything up to the next empty slot: so idmap doubles at half full (strmap at 3/4), which
 * keeps those sequences a few runs long for 16 more bytes per entry. */

/* Seeds: a counter spread by the golden ratio, distinct for every map of the process. */
static uint64_t map_seed_next(void)
{
    static uint64_t counter;
    counter += 0x9e3779b97f4a7c15ull;
    return counter;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* FNV-1a from the seed, then mixed; never 0 (0 marks an empty slot). */
static uint64_t hash_bytes(uint64_t seed, const char *key, uint32_t len)
{
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (uint32_t i = 0; i < len; i++) {
        h ^= (uint8_t)key[i];
        h *= 0x100000001b3ull;
    }
    h = mix64(h);
    return h == 0 ? 1 : h;
}

void idmap_init(struct idmap *map)
{
    map->entries = NULL;
    map->mask = 0;
    map->count = 0;
    map->seed = map_seed_next();
}

void idmap_free(struct idmap *map)
{
    free(map->entries);
    idmap_init(map);
}

/* Grow to capacity (a power of two above the count); false when out of memory (unchanged). */
static bool idmap_grow_to(struct idmap *map, size_t capacity)
{
    struct idmap_entry *old = map->entries;
    size_t old_capacity = old == NULL ? 0 : map->mask + 1;
    SPOOL_ASSERT(capacity > old_capacity);
    /* Cache-line aligned, so that a run of ids is one line. */
    size_t bytes = capacity * sizeof(*map->entries);
    struct idmap_entry *entries = alloc_fail_now() ? NULL : aligned_alloc(IDMAP_LINE_BYTES, bytes);
    if (entries == NULL)
        return false;
    map->entries = entries;
    memset(map->entries, 0, bytes);
    map->mask = capacity - 1;
    map->count = 0;
    for (size_t i = 0; i < old_capacity; i++)
        if (old[i].id != 0)
            (void)idmap_put(map, old[i].id, old[i].value); /* ids are distinct */
    free(old);
    return true;
}

static void idmap_grow(struct idmap *map)
{
    bool ok = idmap_grow_to(map, map->entries == NULL ? MAP_CAPACITY_MIN : (map->mask + 1) * 2);
    SPOOL_ASSERT(ok); /* out of memory where nothing was reserved */
}

int idmap_reserve(struct idmap *map, size_t extra)
{
    size_t capacity = map->entries == NULL ? 0 : map->mask + 1;
    size_t want = capacity == 0 ? MAP_CAPACITY_MIN : capacity;
    while ((map->count + extra) * 2 > want)
        want *= 2; /* at most half full, as idmap_put keeps it */
    if (want == capacity)
        return 0;
    return idmap_grow_to(map, want) ? 0 : -ENOMEM;
}

/* The slot an id probes from: its run's hashed place, then its position in the run. */
static size_t idmap_home(const struct idmap *map, uint64_t id)
{
    uint64_t run = mix64((id >> IDMAP_RUN_BITS) ^ map->seed);
    return (size_t)((run << IDMAP_RUN_BITS) | (id & (IDMAP_RUN_IDS - 1))) & map->mask;
}

static size_t idmap_find(const struct idmap *map, uint64_t id, bool *found)
{
    size_t i = idmap_home(map, id);
    while (map->entries[i].id != 0 && map->entries[i].id != id)
        i = (i + 1) & map->mask;
    *found = map->entries[i].id == id;
    return i;
}

void *idmap_get(const struct idmap *map, uint64_t id)
{
    if (map->entries == NULL || id == 0)
        return NULL;
    bool found;
    size_t i = idmap_find(map, id, &found);
    return found ? map->entries[i].value : NULL;
}

void *idmap_put(struct idmap *map, uint64_t id, void *value)
{
    SPOOL_ASSERT(id != 0);
    if (map->entries == NULL || (map->count + 1) * 2 > map->mask + 1)
        idmap_grow(map);
    bool found;
    size_t i = idmap_find(map, id, &found);
    void *old = found ? map->entries[i].value : NULL;
    if (!found)
        map->count++;
    map->entries[i].id = id;
    map->entries[i].value = value;
    return old;
}

void *idmap_remove(struct idmap *map, uint64_t id)
{
    if (map->entries == NULL || id == 0)
        return NULL;
    bool found;
    size_t i = idmap_find(map, id, &found);
    if (!found)
        return NULL;
    void *value = map->entries[i].value;
    /* Backward shift: pull later members of the probe run into the hole. */
    size_t hole = i;
    /* Neighbours in a probe run are mostly ids of one run: hash each run once. */
    uint64_t last_run = map->entries[i].id >> IDMAP_RUN_BITS;
    size_t last_base = idmap_home(map, last_run << IDMAP_RUN_BITS);
    for (size_t j = (i + 1) & map->mask; map->entries[j].id != 0; j = (j + 1) & map->mask) {
        uint64_t next = map->entries[j].id;
        if (next >> IDMAP_RUN_BITS != last_run) {
            last_run = next >> IDMAP_RUN_BITS;
            last_base = idmap_home(map, last_run << IDMAP_RUN_BITS);
        }
        size_t home = (last_base | (size_t)(next & (IDMAP_RUN_IDS - 1))) & map->mask;
        bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            map->entries[hole] = map->entries[j];
            hole = j;
        }
    }
    map->entries[hole].id = 0;
    map->entries[hole].value = NULL;
    map->count--;
    return value;
}

void strmap_init(struct strmap *map)
{
    map->entries = NULL;
    map->mask = 0;
    map->count = 0;
    map->seed = map_seed_next();
}

void strmap_free(struct strmap *map)
{
    free(map->entries);
    strmap_init(map);
}

/* Double the table (or make the first): false, nothing changed, when calloc fails. */
static bool strmap_grow(struct strmap *map)
{
    size_t capacity = map->entries == NULL ? MAP_CAPACITY_MIN : (map->mask + 1) * 2;
    struct strmap_entry *fresh = alloc_fail_now() ? NULL : calloc(capacity, sizeof(*fresh));
    if (fresh == NULL)
        return false;
    struct strmap_entry *old = map->entries;
    size_t old_capacity = old == NULL ? 0 : map->mask + 1;
    map->entries = fresh;
    map->mask = capacity - 1;
    map->count = 0;
    for (size_t i = 0; i < old_capacity; i++)
        if (old[i].hash != 0)
            strmap_put(map, old[i].key, old[i].key_len, old[i].value);
    free(old);
    return true;
}

/* strmap_put grows before the insert that would pass three quarters full. */
static bool strmap_fits(const struct strmap *map, size_t extra)
{
    return map->entries != NULL && (map->count + extra) * 4 <= (map->mask + 1) * 3;
}

int strmap_reserve(struct strmap *map, size_t extra)
{
    while (!strmap_fits(map, extra))
        if (!strmap_grow(map))
            return -ENOMEM;
    return 0;
}

static size_t strmap_find(const struct strmap *map, uint64_t hash, const char *key,
                          uint32_t key_len, bool *found)
{
    size_t i = hash & map->mask;
    for (;;) {
        const struct strmap_entry *e = &map->entries[i];
        if (e->hash == 0) {
            *found = false;
            return i;
        }
        if (e->hash == hash && e->key_len == key_len && memcmp(e->key, key, key_len) == 0) {
            *found = true;
            return i;
        }
        i = (i + 1) & map->mask;
    }
}

void *strmap_get(const struct strmap *map, const char *key, uint32_t key_len)
{
    if (map->entries == NULL)
        return NULL;
    bool found;
    size_t i = strmap_find(map, hash_bytes(map->seed, key, key_len), key, key_len, &found);
    return found ? map->entries[i].value : NULL;
}

void strmap_put(struct strmap *map, const char *key, uint32_t key_len, void *value)
{
    if (!strmap_fits(map, 1))
        SPOOL_ASSERT(strmap_grow(map)); /* callers that must not abort strmap_reserve first */
    uint64_t hash = hash_bytes(map->seed, key, key_len);
    bool found;
    size_t i = strmap_find(map, hash, key, key_len, &found);
    if (!found)
        map->count++;
    map->entries[i] = (struct strmap_entry){hash, key, key_len, value};
}

void *strmap_remove(struct strmap *map, const char *key, uint32_t key_len)
{
    if (map->entries == NULL)
        return NULL;
    bool found;
    size_t i = strmap_find(map, hash_bytes(map->seed, key, key_len), key, key_len, &found);
    if (!found)
        return NULL;
    void *value = map->entries[i].value;
    size_t hole = i;
    for (size_t j = (i + 1) & map->mask; map->entries[j].hash != 0; j = (j + 1) & map->mask) {
        size_t home = map->entries[j].hash & map->mask;
        bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            map->entries[hole] = map->entries[j];
            hole = j;
        }
    }
    memset(&map->entries[hole], 0, sizeof(map->entries[hole]));
    map->count--;
    return value;
}
