/* The job bodies spool-bench puts (see bodies.h). */
#include "bodies.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assert.h"

/* The pool of random and json bodies: 8 MiB is 128 times lz4's 64 KiB match window, so no job
 * of a batch can be matched against another (windows repeat only after the whole pool), and it
 * is small next to what a server under test uses. It holds at least two windows of a batch. */
#define POOL_BYTES_MIN (8u << 20)
/* The seed of the xorshift: fixed so that runs put the same bytes. */
#define BODY_SEED 0x9e3779b97f4a7c15ull
/* json: `{"ts":"` then 16 hex digits of the send time, then `"`: 24 bytes. */
#define JSON_STAMP_OFFSET 7u
#define JSON_STAMP_DIGITS 16u
#define JSON_STAMP_BYTES (JSON_STAMP_OFFSET + JSON_STAMP_DIGITS + 1u)
/* One json body's fields before the padded note: well under this. */
#define JSON_HEAD_BYTES_MAX 512u

static const char *const body_names[] = {"random", "x", "json"};

const char *bench_body_name(enum bench_body_kind kind)
{
    SPOOL_ASSERT((size_t)kind < sizeof(body_names) / sizeof(body_names[0]));
    return body_names[kind];
}

bool bench_body_parse(const char *name, enum bench_body_kind *kind)
{
    for (size_t i = 0; i < sizeof(body_names) / sizeof(body_names[0]); i++) {
        if (strcmp(name, body_names[i]) == 0) {
            *kind = (enum bench_body_kind)i;
            return true;
        }
    }
    return false;
}

static uint64_t xorshift64(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

/* [a-z0-9]: printable, and without an entropy coder lz4 cannot shrink it. */
static void fill_random(uint8_t *out, size_t len, uint64_t *rng)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)alphabet[(xorshift64(rng) >> 32) % (sizeof(alphabet) - 1)];
}

/* One JSON-like job of exactly size bytes: the usual fields of an event job, values drawn per
 * job, a note of words padding it to size; truncated (JSON-prefixed text) when size is less
 * than its fields. */
static void fill_json(uint8_t *out, uint32_t size, uint64_t *rng)
{
    static const char *const events[] = {"signup", "login",          "purchase",    "refund",
                                         "logout", "password_reset", "invite_sent", "page_view"};
    static const char *const plans[] = {"free", "pro", "team", "enterprise"};
    static const char *const countries[] = {"DE", "US", "FR", "JP", "BR", "IN", "GB", "NL"};
    static const char *const words[] = {"alpha", "retry", "queue", "worker", "batch", "green",
                                        "order", "mail",  "ship",  "cart",   "north", "delta"};
#define PICK(a) (a[xorshift64(rng) % (sizeof(a) / sizeof(a[0]))])
    char head[JSON_HEAD_BYTES_MAX];
    uint64_t user = xorshift64(rng) % 10000000u;
    int n = snprintf(head, sizeof(head),
                     "{\"ts\":\"%016llx\",\"user_id\":%llu,\"event\":\"%s\",\"email\":"
                     "\"user%llu@example.com\",\"attrs\":{\"plan\":\"%s\",\"country\":\"%s\","
                     "\"amount_cents\":%llu,\"note\":\"",
                     0ull, (unsigned long long)user, PICK(events), (unsigned long long)user,
                     PICK(plans), PICK(countries), (unsigned long long)(xorshift64(rng) % 100000));
    SPOOL_ASSERT(n > 0 && (size_t)n < sizeof(head));
    static const char tail[] = "\"}}";
    size_t tail_len = sizeof(tail) - 1;
    if ((size_t)n + tail_len > size) {
        memcpy(out, head, size);
        return;
    }
    memcpy(out, head, (size_t)n);
    size_t at = (size_t)n, end = size - tail_len;
    while (at < end) {
        const char *w = PICK(words);
        size_t len = strlen(w);
        for (size_t i = 0; i <= len && at < end; i++)
            out[at++] = i < len ? (uint8_t)w[i] : ' ';
    }
#undef PICK
    memcpy(out + end, tail, tail_len);
}

int bench_bodies_init(struct bench_bodies *b, enum bench_body_kind kind, uint32_t size,
                      uint32_t batch)
{
    SPOOL_ASSERT(size > 0 && batch > 0);
    *b = (struct bench_bodies){.kind = kind, .size = size, .batch = batch, .slots = batch};
    if (kind != BENCH_BODY_X) {
        uint64_t for_pool = (POOL_BYTES_MIN + size - 1) / size;
        b->slots = for_pool > 2ull * batch ? (uint32_t)for_pool : 2 * batch;
    }
    b->pool = malloc((size_t)b->slots * size + 1);
    if (b->pool == NULL)
        return -ENOMEM;
    uint64_t rng = BODY_SEED;
    for (uint32_t i = 0; i < b->slots; i++) {
        uint8_t *body = b->pool + (size_t)i * size;
        if (kind == BENCH_BODY_X)
            memset(body, 'x', size);
        else if (kind == BENCH_BODY_RANDOM)
            fill_random(body, size, &rng);
        else
            fill_json(body, size, &rng);
    }
    return 0;
}

void bench_bodies_free(struct bench_bodies *b)
{
    free(b->pool);
    b->pool = NULL;
}

uint8_t *bench_bodies_window(struct bench_bodies *b, uint32_t count)
{
    SPOOL_ASSERT(count <= b->batch);
    if (b->kind == BENCH_BODY_X)
        return b->pool;
    if (b->next + count > b->slots)
        b->next = 0;
    uint8_t *w = b->pool + (size_t)b->next * b->size;
    b->next += count;
    return w;
}

void bench_bodies_stamp(const struct bench_bodies *b, uint8_t *body, int64_t t_ns)
{
    if (b->kind != BENCH_BODY_JSON) {
        if (b->size >= sizeof(t_ns))
            memcpy(body, &t_ns, sizeof(t_ns));
        return;
    }
    if (b->size < JSON_STAMP_BYTES)
        return;
    static const char hex[] = "0123456789abcdef";
    uint64_t v = (uint64_t)t_ns;
    for (uint32_t i = 0; i < JSON_STAMP_DIGITS; i++)
        body[JSON_STAMP_OFFSET + JSON_STAMP_DIGITS - 1 - i] = (uint8_t)hex[(v >> (4 * i)) & 15];
}

bool bench_bodies_read_stamp(enum bench_body_kind kind, const uint8_t *body, size_t len,
                             int64_t *t_ns)
{
    if (kind != BENCH_BODY_JSON) {
        if (len < sizeof(*t_ns))
            return false;
        memcpy(t_ns, body, sizeof(*t_ns));
        return true;
    }
    if (len < JSON_STAMP_BYTES)
        return false;
    uint64_t v = 0;
    for (uint32_t i = 0; i < JSON_STAMP_DIGITS; i++) {
        uint8_t c = body[JSON_STAMP_OFFSET + i];
        uint64_t d = c >= 'a' ? (uint64_t)(c - 'a' + 10) : (uint64_t)(c - '0');
        v = v << 4 | (d & 15);
    }
    *t_ns = (int64_t)v;
    return true;
}
