/*
 * jobtab (see jobtab.h). Out of memory aborts, as the broker's other allocations do.
 *
 * Invariants: a page is in the page map exactly while its live count is > 0, and live counts
 * its non-NULL slots; count is the sum of the live counts; last is the page of last_key when
 * last_key != 0 (and is dropped with its page).
 */
#include "jobtab.h"

#include <stdlib.h>

#include "assert.h"

static uint64_t jobtab_key(uint64_t id)
{
    return (id >> JOBTAB_PAGE_BITS) + 1;
}

void jobtab_init(struct jobtab *tab)
{
    idmap_init(&tab->pages);
    tab->last_key = 0;
    tab->last = NULL;
    tab->count = 0;
}

void jobtab_free(struct jobtab *tab)
{
    IDMAP_EACH(&tab->pages, entry) free(entry->value);
    idmap_free(&tab->pages);
    jobtab_init(tab);
}

static struct jobtab_page *jobtab_page(struct jobtab *tab, uint64_t key)
{
    if (key != tab->last_key) {
        struct jobtab_page *page = idmap_get(&tab->pages, key);
        if (page == NULL)
            return NULL;
        tab->last_key = key;
        tab->last = page;
    }
    return tab->last;
}

struct job *jobtab_get(struct jobtab *tab, uint64_t id)
{
    struct jobtab_page *page = jobtab_page(tab, jobtab_key(id));
    return page == NULL ? NULL : page->slots[id & (JOBTAB_PAGE_SLOTS - 1)];
}

struct job *jobtab_put(struct jobtab *tab, uint64_t id, struct job *job)
{
    SPOOL_ASSERT(job != NULL);
    uint64_t key = jobtab_key(id);
    struct jobtab_page *page = jobtab_page(tab, key);
    if (page == NULL) {
        page = calloc(1, sizeof(*page));
        SPOOL_ASSERT(page != NULL);
        (void)idmap_put(&tab->pages, key, page);
        tab->last_key = key;
        tab->last = page;
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
        if (tab->last_key == key) {
            tab->last_key = 0;
            tab->last = NULL;
        }
    }
    return old;
}
