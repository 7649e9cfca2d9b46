/*
 * jobtab (see jobtab.h). Out of memory aborts unless jobtab_reserve made room first (the put
 * path does, so that a put the memory cannot hold is refused instead).
 *
 * Invariants: a page is in the page map exactly while its live count is > 0, and live counts
 * its non-NULL slots; count is the sum of the live counts; cached[i] is the page of
 * cached_key[i] when that is not 0, and an entry is dropped with its page.
 */
#include "jobtab.h"

#include <errno.h>
#include <stdlib.h>

#include "alloc_fail.h"
#include "assert.h"

static uint64_t jobtab_key(uint64_t id)
{
    return (id >> JOBTAB_PAGE_BITS) + 1;
}

static void jobtab_cache_clear(struct jobtab *tab)
{
    for (uint32_t i = 0; i < JOBTAB_CACHED; i++) {
        tab->cached_key[i] = 0;
        tab->cached[i] = NULL;
    }
    tab->cache_next = 0;
}

static void jobtab_cache_add(struct jobtab *tab, uint64_t key, struct jobtab_page *page)
{
    uint32_t i = tab->cache_next++ % JOBTAB_CACHED;
    tab->cached_key[i] = key;
    tab->cached[i] = page;
}

void jobtab_init(struct jobtab *tab)
{
    idmap_init(&tab->pages);
    jobtab_cache_clear(tab);
    tab->count = 0;
    tab->spare = NULL;
    tab->spare_count = 0;
}

void jobtab_free(struct jobtab *tab)
{
    while (tab->spare != NULL) {
        struct jobtab_page *page = tab->spare;
        tab->spare = (struct jobtab_page *)(void *)page->slots[0];
        free(page);
    }
    tab->spare_count = 0;
    IDMAP_EACH(&tab->pages, entry) free(entry->value);
    idmap_free(&tab->pages);
    jobtab_init(tab);
}

static struct jobtab_page *jobtab_page(struct jobtab *tab, uint64_t key)
{
    for (uint32_t i = 0; i < JOBTAB_CACHED; i++)
        if (tab->cached_key[i] == key)
            return tab->cached[i];
    struct jobtab_page *page = idmap_get(&tab->pages, key);
    if (page != NULL)
        jobtab_cache_add(tab, key, page);
    return page;
}

struct job *jobtab_get(struct jobtab *tab, uint64_t id)
{
    struct jobtab_page *page = jobtab_page(tab, jobtab_key(id));
    return page == NULL ? NULL : page->slots[id & (JOBTAB_PAGE_SLOTS - 1)];
}

int jobtab_reserve(struct jobtab *tab, uint64_t first_id, uint64_t count)
{
    if (count == 0)
        return 0;
    uint64_t missing = 0;
    for (uint64_t key = jobtab_key(first_id); key <= jobtab_key(first_id + count - 1); key++)
        missing += jobtab_page(tab, key) == NULL;
    while (tab->spare_count < missing) {
        struct jobtab_page *page = alloc_fail_now() ? NULL : calloc(1, sizeof(*page));
        if (page == NULL)
            return -ENOMEM;
        page->slots[0] = (struct job *)(void *)tab->spare;
        tab->spare = page;
        tab->spare_count++;
    }
    return idmap_reserve(&tab->pages, missing);
}

/* A zeroed page: a spare one, else a new one (aborts when out of memory: not reserved). */
static struct jobtab_page *jobtab_page_new(struct jobtab *tab)
{
    struct jobtab_page *page = tab->spare;
    if (page != NULL) {
        tab->spare = (struct jobtab_page *)(void *)page->slots[0];
        tab->spare_count--;
        page->slots[0] = NULL;
        return page;
    }
    page = alloc_fail_now() ? NULL : calloc(1, sizeof(*page));
    SPOOL_ASSERT(page != NULL); /* out of memory where nothing was reserved */
    return page;
}

struct job *jobtab_put(struct jobtab *tab, uint64_t id, struct job *job)
{
    SPOOL_ASSERT(job != NULL);
    uint64_t key = jobtab_key(id);
    struct jobtab_page *page = jobtab_page(tab, key);
    if (page == NULL) {
        page = jobtab_page_new(tab);
        SPOOL_ASSERT(page->live == 0);
        (void)idmap_put(&tab->pages, key, page);
        jobtab_cache_add(tab, key, page);
    }
    struct job **slot = &page->slots[id & (JOBTAB_PAGE_SLOTS - 1)];
    struct job *old = *slot;
    if (old == NULL) {
        SPOOL_ASSERT(page->live < JOBTAB_PAGE_SLOTS);
        page->live++;
        tab->count++;
    }
    *slot = job;
    return old;
}

struct job *jobtab_remove(struct jobtab *tab, uint64_t id)
{
    uint64_t key = jobtab_key(id);
    struct jobtab_page *page = jobtab_page(tab, key);
    if (page == NULL)
        return NULL;
    struct job **slot = &page->slots[id & (JOBTAB_PAGE_SLOTS - 1)];
    struct job *old = *slot;
    if (old == NULL)
        return NULL;
    *slot = NULL;
    SPOOL_ASSERT(page->live > 0 && tab->count > 0);
    tab->count--;
    if (--page->live == 0) {
        (void)idmap_remove(&tab->pages, key);
        free(page);
        for (uint32_t i = 0; i < JOBTAB_CACHED; i++)
            if (tab->cached_key[i] == key)
                tab->cached_key[i] = 0;
    }
    return old;
}
