/*
 * jobtab: job id -> job, for ids handed out in sequence.
 *
 * Why not the idmap. Under a producer at full speed the broker holds millions of jobs, and a
 * hash table of them costs 32 bytes per job at half load, plus a rehash and a fresh table at
 * every doubling: the page faults of those tables were a fifth of the loop's time. Ids are
 * consecutive (the broker numbers jobs), so jobtab keeps them in pages of JOBTAB_PAGE_SLOTS
 * pointers, found through a small idmap of pages (one entry per page) with the last few pages
 * used cached: 8 bytes per job and one allocation per 32 jobs, nothing ever rehashed but the
 * page map, which is 32 times smaller. A few, because the broker walks ids in several places at
 * once: puts at the newest, acks a few hundred behind, the done list's trim at the oldest
 * remembered; with one cached page, each of them missed it after the others.
 *
 * A page lives while it holds a job. The cost of a job whose neighbours are all gone (a long
 * delay among short jobs) is its page, about 270 bytes, a few times its 80-byte core.
 */
#ifndef SPOOL_SRC_JOBTAB_H
#define SPOOL_SRC_JOBTAB_H

#include <stddef.h>
#include <stdint.h>

#include "map.h"

struct job;

#define JOBTAB_PAGE_BITS 5
#define JOBTAB_PAGE_SLOTS (1u << JOBTAB_PAGE_BITS)

struct jobtab_page {
    uint32_t live; /* slots not NULL */
    struct job *slots[JOBTAB_PAGE_SLOTS];
};

#define JOBTAB_CACHED 4

struct jobtab {
    struct idmap pages; /* (id >> JOBTAB_PAGE_BITS) + 1 -> page */
    /* Pages looked up lately: cached[i] is the page of cached_key[i], unless that is 0. */
    uint64_t cached_key[JOBTAB_CACHED];
    struct jobtab_page *cached[JOBTAB_CACHED];
    uint32_t cache_next; /* the entry the next miss replaces (round robin) */
    size_t count;
    /* Pages allocated ahead by jobtab_reserve, in no map (linked through slots[0]). */
    struct jobtab_page *spare;
    size_t spare_count;
};

void jobtab_init(struct jobtab *tab);
/* Free the pages (not the jobs). */
void jobtab_free(struct jobtab *tab);
struct job *jobtab_get(struct jobtab *tab, uint64_t id);
/* Room to insert the ids first_id .. first_id + count - 1 without allocating (their pages and
 * the page map's slots): 0, or -ENOMEM (what was allocated stays spare, for the next try).
 * Otherwise jobtab_put aborts when memory runs out. */
int jobtab_reserve(struct jobtab *tab, uint64_t first_id, uint64_t count)
    __attribute__((warn_unused_result));
/* Insert or replace (job != NULL); returns the job replaced, or NULL. */
struct job *jobtab_put(struct jobtab *tab, uint64_t id, struct job *job);
/* Remove; returns the job removed, or NULL. */
struct job *jobtab_remove(struct jobtab *tab, uint64_t id);

/* Walk every job (order unspecified); the table must not change during the walk, and the
 * body may use continue but not break (it leaves only the innermost loop). */
#define JOBTAB_EACH(tab, job)                                                                 \
    IDMAP_EACH(&(tab)->pages, jobtab_entry_)                                                   \
    for (struct job **jobtab_slot_ = ((struct jobtab_page *)jobtab_entry_->value)->slots;     \
         jobtab_slot_ < ((struct jobtab_page *)jobtab_entry_->value)->slots + JOBTAB_PAGE_SLOTS; \
         jobtab_slot_++)                                                                       \
        for (struct job *job = *jobtab_slot_; job != NULL; job = NULL)

#endif
