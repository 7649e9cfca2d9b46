/* The edge of spoold as an attacker sees it (issue 10): capabilities a client holds must not
 * reveal anyone else's. Each test drives the real spoold on 127.0.0.1 through libspool. */
#include <spool/client.h>

#include <string.h>

#include "check.h"
#include "spoold_harness.h"

static struct spoold server;

static spool_client *client(void)
{
    spool_client *c = NULL;
    int rc = spool_connect(server.addr, 5000, &c);
    if (rc != 0)
        fprintf(stderr, "connect %s: %s\n", server.addr, spool_strerror(rc));
    REQUIRE(rc == 0);
    return c;
}

static struct spool_delivery *reserve_one(spool_client *c, const char *queue)
{
    const char *queues[1] = {queue};
    struct spool_delivery *d = NULL;
    size_t count = 0;
    REQUIRE(spool_reserve(c, queues, 1, 1, 1000, 0, &d, &count) == 0);
    REQUIRE(count == 1);
    return d;
}

/* Inverse of x ^= x >> shift on 64 bits. */
static uint64_t unxorshift(uint64_t y, int shift)
{
    uint64_t x = y;
    for (int s = shift; s < 64; s += shift)
        x ^= y >> s;
    return x;
}

/* Inverse of an odd constant modulo 2^64 (Newton's iteration doubles the correct bits). */
static uint64_t mul_inverse(uint64_t c)
{
    uint64_t inv = c;
    for (int i = 0; i < 6; i++)
        inv *= 2 - c * inv;
    return inv;
}

static uint64_t splitmix_finalize(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t splitmix_unfinalize(uint64_t token)
{
    uint64_t x = unxorshift(token, 31);
    x = unxorshift(x * mul_inverse(0x94d049bb133111ebull), 27);
    return unxorshift(x * mul_inverse(0xbf58476d1ce4e5b9ull), 30);
}

/* Worker A holds a delivery and guesses worker B's lease from its own, the way tokens used
 * to be made (splitmix64 of a counter plus a seed: invertible, so one token gave the counter
 * and every next token). With keyed tokens the guess must fail, and B's ack still works. */
static void test_lease_tokens_unguessable_from_another(void)
{
    REQUIRE(splitmix_unfinalize(splitmix_finalize(12345)) == 12345); /* the attack is sound */
    spool_client *a = client();
    spool_client *b = client();
    uint64_t ids[2];
    for (int i = 0; i < 2; i++) {
        struct spool_job_spec spec = {.queue = "edge-lease", .body = "x", .body_len = 1};
        REQUIRE(spool_put(a, &spec, &ids[i]) == 0);
    }
    struct spool_delivery *da = reserve_one(a, "edge-lease");
    struct spool_delivery *db = reserve_one(b, "edge-lease");
    uint64_t guesses[4] = {
        splitmix_finalize(splitmix_unfinalize(da->lease) + 1),
        splitmix_finalize(splitmix_unfinalize(da->lease) - 1),
        da->lease + 1,
        da->lease ^ 1,
    };
    for (size_t i = 0; i < 4; i++) {
        CHECK(guesses[i] != db->lease);
        int rc = spool_ack(a, db->id, guesses[i], NULL, 0);
        CHECK(rc == SPOOL_E_LEASE_EXPIRED);
    }
    CHECK_EQ(spool_ack(b, db->id, db->lease, NULL, 0), 0);
    CHECK_EQ(spool_ack(a, da->id, da->lease, NULL, 0), 0);
    spool_deliveries_free(da);
    spool_deliveries_free(db);
    spool_close(a);
    spool_close(b);
}

/* Many deliveries of one job (released each time): every token differs. */
static void test_lease_tokens_distinct(void)
{
    spool_client *c = client();
    struct spool_job_spec spec = {.queue = "edge-distinct", .body = "x", .body_len = 1,
                                  .max_attempts = SPOOL_ATTEMPTS_UNLIMITED};
    uint64_t id;
    REQUIRE(spool_put(c, &spec, &id) == 0);
    uint64_t seen[64];
    for (size_t i = 0; i < 64; i++) {
        struct spool_delivery *d = reserve_one(c, "edge-distinct");
        seen[i] = d->lease;
        CHECK(d->lease != 0);
        for (size_t j = 0; j < i; j++)
            CHECK(seen[j] != seen[i]);
        CHECK_EQ(spool_release(c, d->id, d->lease, 0, -1), 0);
        spool_deliveries_free(d);
    }
    spool_close(c);
}

int main(void)
{
    if (spoold_start(&server, "edge", NULL) != 0)
        return 1;
    RUN_TEST(test_lease_tokens_unguessable_from_another);
    RUN_TEST(test_lease_tokens_distinct);
    CHECK_EQ(spoold_stop(&server), 0);
    spoold_cleanup(&server);
    return check_exit();
}
