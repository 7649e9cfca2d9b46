/* The containers under the queue state machine, against simple reference models under random
 * operation sequences: the slot-tracking heap, the runs in front of it (runheap), the id map
 * and the string map (both with backward-shift deletion, where an off-by-one loses entries
 * silently), and the job table (pages that come and go, and cached pages that must not outlive
 * their page). */
#include <stdlib.h>

#include "check.h"
#include "heap.h"
#include "jobtab.h"
#include "map.h"
#include "runheap.h"

struct item {
    uint64_t key;
    uint32_t slot;
    bool in;
    struct list_link link; /* runheap only */
};

static bool item_less(const void *a, const void *b)
{
    const struct item *x = a, *y = b;
    return x->key < y->key;
}

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void test_heap_matches_model(void)
{
    enum { N = 512, OPS = 20000 };
    static struct item items[N];
    struct heap heap;
    heap_init(&heap, item_less, offsetof(struct item, slot));
    for (int i = 0; i < N; i++)
        items[i] = (struct item){.key = 0, .slot = HEAP_NONE};
    for (int op = 0; op < OPS; op++) {
        /* High bits: in consecutive xorshift outputs the low bits are tied together, and
         * (rng() % N, then rng() % 4) never drew a removal of a member. */
        struct item *it = &items[(rng() >> 32) % N];
        switch ((rng() >> 32) % 4) {
        case 0:
        case 1:
            if (!it->in) {
                it->key = rng() % 1000;
                heap_push(&heap, it);
                it->in = true;
            }
            break;
        case 2:
            if (it->in) {
                heap_remove(&heap, it);
                it->in = false;
                CHECK_EQ(it->slot, HEAP_NONE);
            }
            break;
        default:
            if (it->in) {
                it->key = rng() % 1000;
                heap_fix(&heap, it);
            }
            break;
        }
        /* The top is a minimum of the members. */
        struct item *top = heap_top(&heap);
        uint64_t min = UINT64_MAX;
        uint32_t members = 0;
        for (int i = 0; i < N; i++) {
            if (items[i].in) {
                members++;
                if (items[i].key < min)
                    min = items[i].key;
                CHECK(heap_contains(&heap, &items[i]));
            }
        }
        CHECK_EQ(heap.count, members);
        /* The whole order, not only the top: no item is less than its parent. */
        for (uint32_t k = 1; k < heap.count; k++) {
            const struct item *child = heap.items[k], *parent = heap.items[(k - 1) / 2];
            if (child->key < parent->key) {
                CHECK(child->key >= parent->key);
                break;
            }
            CHECK_EQ(child->slot, k);
        }
        if (members > 0)
            CHECK(top != NULL && top->key == min);
        else
            CHECK(top == NULL);
    }
    heap_free(&heap);
}

/* Each run sorted, every member in exactly one place (a run or the heap), the count right, and
 * the top a minimum of the members. */
static void runheap_check(const struct runheap *rh, struct item *items, int n)
{
    uint32_t members = 0, in_runs = 0;
    uint64_t min = UINT64_MAX;
    for (int i = 0; i < n; i++) {
        if (!items[i].in) {
            CHECK(!list_linked(&items[i].link));
            CHECK_EQ(items[i].slot, HEAP_NONE);
            continue;
        }
        members++;
        if (items[i].key < min)
            min = items[i].key;
        CHECK(list_linked(&items[i].link) != heap_contains(&rh->heap, &items[i]));
    }
    for (int r = 0; r < RUNHEAP_RUNS; r++) {
        const struct item *prev = NULL;
        for (const struct list_link *l = rh->runs[r].next; l != &rh->runs[r]; l = l->next) {
            const struct item *it = LIST_ENTRY(l, struct item, link);
            CHECK(prev == NULL || prev->key <= it->key);
            prev = it;
            in_runs++;
        }
    }
    CHECK_EQ(rh->count, members);
    CHECK_EQ(in_runs + rh->heap.count, members);
    const struct item *top = runheap_top(rh);
    if (members > 0)
        CHECK(top != NULL && top->key == min);
    else
        CHECK(top == NULL);
}

static void runheap_items_init(struct item *items, int n)
{
    for (int i = 0; i < n; i++) {
        items[i] = (struct item){.key = 0, .slot = HEAP_NONE};
        list_init(&items[i].link);
    }
}

/* Random keys, and keys that mostly rise (a clock plus one of a few ttrs, as lease deadlines
 * do), under pushes, removals and re-keys (a lease touched). */
static void test_runheap_matches_model(void)
{
    enum { N = 256, OPS = 20000 };
    static struct item items[N];
    for (int rising = 0; rising < 2; rising++) {
        struct runheap rh;
        runheap_init(&rh, item_less, offsetof(struct item, slot), offsetof(struct item, link));
        runheap_items_init(items, N);
        uint64_t clock = 0;
        static const uint64_t ttrs[] = {30, 1000, 60000};
        for (int op = 0; op < OPS; op++) {
            struct item *it = &items[(rng() >> 32) % N];
            clock += (rng() >> 32) % 3;
            uint64_t key = rising ? clock + ttrs[(rng() >> 32) % 3] : rng() % 1000;
            switch ((rng() >> 32) % 4) {
            case 0:
            case 1:
                if (!it->in) {
                    it->key = key;
                    runheap_push(&rh, it);
                    it->in = true;
                }
                break;
            case 2:
                if (it->in) {
                    runheap_remove(&rh, it);
                    it->in = false;
                }
                break;
            default:
                if (it->in) {
                    it->key = key;
                    runheap_fix(&rh, it);
                }
                break;
            }
            runheap_check(&rh, items, N);
        }
        runheap_free(&rh);
    }
}

/* What the runs are for: leases of up to RUNHEAP_RUNS ttrs, taken as the clock moves, never
 * reach the heap, whatever order they leave in; a deadline below every run's last does. */
static void test_runheap_in_order_skips_heap(void)
{
    enum { N = 600 };
    static struct item items[N];
    struct runheap rh;
    runheap_init(&rh, item_less, offsetof(struct item, slot), offsetof(struct item, link));
    runheap_items_init(items, N);
    static const uint64_t ttrs[RUNHEAP_RUNS] = {5000, 30, 700, 100000};
    for (int i = 0; i < N; i++) {
        items[i].key = 1000 + (uint64_t)i + ttrs[i % RUNHEAP_RUNS];
        runheap_push(&rh, &items[i]);
        items[i].in = true;
        CHECK_EQ(rh.heap.count, 0);
    }
    runheap_check(&rh, items, N);
    for (int i = 0; i < N; i += 3) { /* acks out of order */
        runheap_remove(&rh, &items[i]);
        items[i].in = false;
    }
    CHECK_EQ(rh.heap.count, 0);
    runheap_check(&rh, items, N);
    items[0].key = 1; /* before every run's last: the heap */
    runheap_push(&rh, &items[0]);
    items[0].in = true;
    CHECK_EQ(rh.heap.count, 1);
    runheap_check(&rh, items, N);
    CHECK(runheap_top(&rh) == &items[0]);
    runheap_free(&rh);
}

static void test_idmap_matches_model(void)
{
    enum { IDS = 3000, OPS = 60000 };
    static void *model[IDS + 1];
    struct idmap map;
    idmap_init(&map);
    size_t count = 0;
    for (int op = 0; op < OPS; op++) {
        /* Dense ids collide in runs, which is what stresses backward shifts. */
        uint64_t id = 1 + rng() % IDS;
        void *value = (void *)(uintptr_t)(rng() | 1);
        if (rng() % 3 != 0) {
            if (model[id] == NULL)
                count++;
            model[id] = value;
            idmap_put(&map, id, value);
        } else {
            void *old = idmap_remove(&map, id);
            CHECK(old == model[id]);
            if (model[id] != NULL)
                count--;
            model[id] = NULL;
        }
        CHECK_EQ(map.count, count);
        uint64_t probe = 1 + rng() % IDS;
        CHECK(idmap_get(&map, probe) == model[probe]);
    }
    for (uint64_t id = 1; id <= IDS; id++)
        CHECK(idmap_get(&map, id) == model[id]);
    size_t walked = 0;
    IDMAP_EACH(&map, entry) walked++;
    CHECK_EQ(walked, count);
    CHECK(idmap_get(&map, 0) == NULL);
    idmap_free(&map);
}

/* Ids in sequence share runs of slots, so strided ids (all equal modulo the run length, or
 * modulo large powers of two) are the patterns that crowd probes together: they must still be
 * found, removed with backward shifts, and walked exactly once. */
static void test_idmap_strided_ids(void)
{
    static const uint64_t strides[] = {1, 4, 16, 17, 64, 4096, 1u << 20};
    for (size_t k = 0; k < sizeof(strides) / sizeof(strides[0]); k++) {
        enum { N = 4000 };
        struct idmap map;
        idmap_init(&map);
        for (uint64_t i = 1; i <= N; i++)
            CHECK(idmap_put(&map, i * strides[k], (void *)(uintptr_t)i) == NULL);
        for (uint64_t i = 1; i <= N; i += 2)
            CHECK(idmap_remove(&map, i * strides[k]) == (void *)(uintptr_t)i);
        for (uint64_t i = 1; i <= N; i++) {
            void *want = i % 2 == 0 ? (void *)(uintptr_t)i : NULL;
            CHECK(idmap_get(&map, i * strides[k]) == want);
        }
        CHECK(idmap_put(&map, 2 * strides[k], (void *)(uintptr_t)7) == (void *)(uintptr_t)2);
        size_t walked = 0;
        IDMAP_EACH(&map, entry) walked++;
        CHECK_EQ(walked, N / 2);
        CHECK_EQ(map.count, N / 2);
        idmap_free(&map);
    }
}

static void test_strmap_matches_model(void)
{
    enum { KEYS = 500, OPS = 20000 };
    static char names[KEYS][16];
    static void *model[KEYS];
    for (int i = 0; i < KEYS; i++)
        snprintf(names[i], sizeof(names[i]), "q%d", i);
    struct strmap map;
    strmap_init(&map);
    for (int op = 0; op < OPS; op++) {
        int k = (int)(rng() % KEYS);
        uint32_t len = (uint32_t)strlen(names[k]);
        if (rng() % 3 != 0) {
            void *value = (void *)(uintptr_t)(rng() | 1);
            model[k] = value;
            strmap_put(&map, names[k], len, value);
        } else {
            CHECK(strmap_remove(&map, names[k], len) == model[k]);
            model[k] = NULL;
        }
        int probe = (int)(rng() % KEYS);
        CHECK(strmap_get(&map, names[probe], (uint32_t)strlen(names[probe])) == model[probe]);
    }
    /* A prefix is a different key. */
    CHECK(strmap_get(&map, "q", 1) == NULL);
    strmap_free(&map);
}

/* jobtab against an array model: ids clustered in a few ranges (pages fill and empty again),
 * with far-apart ids too; every page freed when its last job goes. */
static void test_jobtab_matches_model(void)
{
    enum { IDS = 4000, OPS = 80000 };
    static struct job *model[IDS];
    static const uint64_t bases[] = {1, 1000000, (uint64_t)1 << 40};
    struct jobtab tab;
    jobtab_init(&tab);
    size_t count = 0;
    for (int op = 0; op < OPS; op++) {
        uint32_t i = (uint32_t)(rng() % IDS);
        uint64_t id = bases[i % 3] + i / 3;
        struct job *value = (struct job *)(uintptr_t)((rng() | 1) << 3);
        if (rng() % 2 == 0) {
            struct job *old = jobtab_put(&tab, id, value);
            CHECK(old == model[i]);
            if (model[i] == NULL)
                count++;
            model[i] = value;
        } else {
            struct job *old = jobtab_remove(&tab, id);
            CHECK(old == model[i]);
            if (model[i] != NULL)
                count--;
            model[i] = NULL;
        }
        CHECK_EQ(tab.count, count);
        uint32_t p = (uint32_t)(rng() % IDS);
        CHECK(jobtab_get(&tab, bases[p % 3] + p / 3) == model[p]);
    }
    size_t walked = 0;
    JOBTAB_EACH(&tab, job)
    {
        CHECK(job != NULL);
        walked++;
    }
    CHECK_EQ(walked, count);
    /* Empty every page: none may stay, and no cached page may answer for a freed one. */
    for (uint32_t i = 0; i < IDS; i++) {
        uint64_t id = bases[i % 3] + i / 3;
        CHECK(jobtab_remove(&tab, id) == model[i]);
        CHECK(jobtab_get(&tab, id) == NULL);
    }
    CHECK_EQ(tab.count, 0);
    CHECK_EQ(tab.pages.count, 0);
    CHECK(jobtab_get(&tab, 5) == NULL);
    struct job *one = (struct job *)(uintptr_t)0x1000;
    CHECK(jobtab_put(&tab, 5, one) == NULL);
    CHECK(jobtab_get(&tab, 5) == one);
    CHECK(jobtab_get(&tab, 6) == NULL);
    CHECK_EQ(tab.pages.count, 1);
    jobtab_free(&tab);
    CHECK_EQ(tab.count, 0);
}

int main(void)
{
    RUN_TEST(test_heap_matches_model);
    RUN_TEST(test_runheap_matches_model);
    RUN_TEST(test_runheap_in_order_skips_heap);
    RUN_TEST(test_idmap_matches_model);
    RUN_TEST(test_idmap_strided_ids);
    RUN_TEST(test_strmap_matches_model);
    RUN_TEST(test_jobtab_matches_model);
    return check_exit();
}
