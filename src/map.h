/*
 * Hash maps of the broker: job id -> job (idmap) and name/key -> object (strmap).
 *
 * Open addressing with linear probing and backward-shift deletion (no tombstones, so a map
 * that churns through millions of short-lived jobs never degrades). The table doubles when it
 * is 3/4 full (idmap: 1/2, see map.c), keeping probe runs short. strmap does not copy keys: each key's bytes must live
 * as long as its entry (they belong to the value: a queue's name, a job's key).
 */
#ifndef SPOOL_SRC_MAP_H
#define SPOOL_SRC_MAP_H

#include <stdint.h>
#include <stddef.h>

struct idmap_entry {
    uint64_t id; /* 0: empty (job ids and segment ids start at 1) */
    void *value;
};

struct idmap {
    struct idmap_entry *entries;
    size_t mask;
    size_t count;
    uint64_t seed; /* per map: see map.c */
};

void idmap_init(struct idmap *map);
void idmap_free(struct idmap *map);
void *idmap_get(const struct idmap *map, uint64_t id);
/* Insert or replace; returns the value replaced, or NULL when id was absent (one probe
 * where a get before the put would take two). */
void *idmap_put(struct idmap *map, uint64_t id, void *value);
/* Room for extra more ids without allocating: 0, or -ENOMEM (nothing changed). idmap_put of a
 * new id otherwise aborts when the table cannot grow. */
int idmap_reserve(struct idmap *map, size_t extra) __attribute__((warn_unused_result));
/* Remove; returns the old value or NULL. */
void *idmap_remove(struct idmap *map, uint64_t id);

struct strmap_entry {
    uint64_t hash; /* 0: empty */
    const char *key;
    uint32_t key_len;
    void *value;
};

struct strmap {
    struct strmap_entry *entries;
    size_t mask;
    size_t count;
    uint64_t seed;
};

void strmap_init(struct strmap *map);
void strmap_free(struct strmap *map);
void *strmap_get(const struct strmap *map, const char *key, uint32_t key_len);
/* Insert or replace; a new key aborts when the table cannot grow (unless strmap_reserve made
 * room for it). */
void strmap_put(struct strmap *map, const char *key, uint32_t key_len, void *value);
/* Room for extra more keys without allocating: 0, or -ENOMEM (nothing changed). */
int strmap_reserve(struct strmap *map, size_t extra) __attribute__((warn_unused_result));
void *strmap_remove(struct strmap *map, const char *key, uint32_t key_len);

/* Walk every entry (order unspecified); the map must not change during the walk. */
#define STRMAP_EACH(map, entry)                                                               \
    for (struct strmap_entry *entry = (map)->entries;                                         \
         (map)->entries != NULL && entry <= (map)->entries + (map)->mask; entry++)            \
        if (entry->hash != 0)

#define IDMAP_EACH(map, entry)                                                                \
    for (struct idmap_entry *entry = (map)->entries;                                          \
         (map)->entries != NULL && entry <= (map)->entries + (map)->mask; entry++)            \
        if (entry->id != 0)

#endif
