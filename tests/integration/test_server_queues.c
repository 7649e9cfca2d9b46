/* Queues as a bounded resource and the lifetime of what they hold (issue 10, items 4, 5, 9),
 * through the real spoold on 127.0.0.1: --max-queues and the forgetting of empty queues,
 * DELETE_QUEUE across a crash and a clean restart, idempotency keys scoped per queue and
 * bounded by --max-idempotency-keys, and jobs whose ttl ran out remembered as expired. */
#include <spool/client.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "spoold_harness.h"
#include "wire_message.h"

static spool_client *client_of(const struct spoold *s)
{
    spool_client *c = NULL;
    int rc = spool_connect(s->addr, 5000, &c);
    if (rc != 0)
        fprintf(stderr, "connect %s: %s\n", s->addr, spool_strerror(rc));
    REQUIRE(rc == 0);
    return c;
}

static uint64_t put(spool_client *c, const char *queue, const char *key, int *duplicate)
{
    struct spool_job_spec spec = {.queue = queue, .body = "b", .body_len = 1, .key = key};
    struct spool_put_result r = {0};
    REQUIRE(spool_put_batch(c, &spec, 1, &r) == 0);
    if (duplicate != NULL)
        *duplicate = r.duplicate;
    return r.id;
}

static size_t queue_count(spool_client *c)
{
    struct spool_queue_info *q = NULL;
    size_t count = 0;
    REQUIRE(spool_queues(c, &q, &count) == 0);
    spool_queues_free(q);
    return count;
}

static bool queue_listed(spool_client *c, const char *name)
{
    struct spool_queue_info *q = NULL;
    size_t count = 0;
    REQUIRE(spool_queues(c, &q, &count) == 0);
    bool found = false;
    for (size_t i = 0; i < count; i++)
        found = found || strcmp(q[i].name, name) == 0;
    spool_queues_free(q);
    return found;
}

/* Item 4: a put naming one queue too many is TOO_MANY_QUEUES; reserves of names nobody uses
 * create nothing that stays; an emptied queue without settings is forgotten (room again),
 * a configured one is kept. */
static void test_queue_limit_and_forgetting(void)
{
    struct spoold s;
    static const char *const args[] = {"--max-queues", "4", NULL};
    REQUIRE(spoold_start(&s, "queue-limit", args) == 0);
    spool_client *c = client_of(&s);
    /* 40 polls and a blocking reserve that times out, each on a name never put to. */
    char name[32];
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof name, "typo-%d", i);
        const char *queues[1] = {name};
        struct spool_delivery *d = NULL;
        size_t count = 9;
        CHECK_EQ(spool_reserve(c, queues, 1, 1, i == 39 ? 50 : 0, 0, &d, &count), 0);
        CHECK_EQ(count, 0);
    }
    CHECK_EQ(queue_count(c), 0);
    uint64_t ids[4];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "q%d", i);
        ids[i] = put(c, name, NULL, NULL);
    }
    struct spool_job_spec more = {.queue = "q4", .body = "b", .body_len = 1};
    uint64_t id;
    CHECK_EQ(spool_put(c, &more, &id), SPOOL_E_TOO_MANY_QUEUES);
    const char *q4[1] = {"q4"};
    struct spool_delivery *d = NULL;
    size_t count = 0;
    CHECK_EQ(spool_reserve(c, q4, 1, 1, 0, 0, &d, &count), SPOOL_E_TOO_MANY_QUEUES);
    CHECK_EQ(spool_ping(c), 0); /* the connection stays usable */
    /* A batch naming one new queue too many is refused whole, before any of it is logged. */
    struct spool_job_spec batch[3] = {{.queue = "q0", .body = "1", .body_len = 1},
                                      {.queue = "q5", .body = "2", .body_len = 1},
                                      {.queue = "q1", .body = "3", .body_len = 1}};
    CHECK_EQ(spool_put_batch(c, batch, 3, NULL), SPOOL_E_TOO_MANY_QUEUES);
    struct spool_stats *before = NULL;
    REQUIRE(spool_stats(c, NULL, &before) == 0);
    CHECK_EQ(before->ready, 4);
    spool_stats_free(before);
    /* q0 configured (kept when empty), q1 emptied (forgotten): room for q4. */
    REQUIRE(spool_queue_set_defaults(c, "q0", 5000, -1) == 0);
    REQUIRE(spool_delete(c, ids[0]) == 0);
    REQUIRE(spool_delete(c, ids[1]) == 0);
    CHECK_EQ(spool_ping(c), 0); /* a loop turn: its tick forgets the idle queue */
    CHECK(queue_listed(c, "q0"));
    CHECK(!queue_listed(c, "q1"));
    CHECK_EQ(spool_put(c, &more, &id), 0);
    struct spool_stats *st = NULL;
    REQUIRE(spool_stats(c, NULL, &st) == 0);
    CHECK_EQ(st->queue_count, 4);
    spool_stats_free(st);
    spool_close(c);
    CHECK_EQ(spoold_stop(&s), 0);
    spoold_cleanup(&s);
}

/* Item 4: DELETE_QUEUE refuses a queue with jobs unless forced; forced, it deletes every job
 * (a reserved one's ack is then NOT_FOUND), its keys and its settings, and it stays deleted
 * through a crash (replay of its record) and a clean restart (the checkpoint). */
static void test_delete_queue(void)
{
    struct spoold s;
    REQUIRE(spoold_start(&s, "delete-queue", NULL) == 0);
    spool_client *c = client_of(&s);
    uint64_t keyed = put(c, "dq", "k1", NULL);
    put(c, "dq", NULL, NULL);
    put(c, "dq", NULL, NULL);
    uint64_t acked = put(c, "dq", NULL, NULL); /* done before the delete: forgotten with it */
    {
        const char *dq1[1] = {"dq"};
        struct spool_delivery *first = NULL;
        size_t n = 0;
        REQUIRE(spool_reserve(c, dq1, 1, 4, 1000, 0, &first, &n) == 0);
        for (size_t i = 0; i < n; i++) {
            if (first[i].id == acked)
                REQUIRE(spool_ack(c, acked, first[i].lease, "r", 1) == 0);
            else
                REQUIRE(spool_release(c, first[i].id, first[i].lease, 0, -1) == 0);
        }
        CHECK_EQ(n, 4);
        spool_deliveries_free(first);
    }
    uint64_t kept = put(c, "other", NULL, NULL);
    REQUIRE(spool_queue_set_defaults(c, "dq", 7000, 3) == 0);
    const char *dq[1] = {"dq"};
    struct spool_delivery *d = NULL;
    size_t count = 0;
    REQUIRE(spool_reserve(c, dq, 1, 1, 1000, SPOOL_RESERVE_DETACH, &d, &count) == 0);
    REQUIRE(count == 1);
    uint64_t deleted = 99;
    CHECK_EQ(spool_queue_delete(c, "dq", 0, &deleted), SPOOL_E_WRONG_STATE);
    CHECK_EQ(spool_queue_delete(c, "nope", 1, &deleted), SPOOL_E_NOT_FOUND);
    CHECK_EQ(spool_queue_delete(c, "dq", 1, &deleted), 0);
    CHECK_EQ(deleted, 3);
    CHECK_EQ(spool_ack(c, d[0].id, d[0].lease, NULL, 0), SPOOL_E_NOT_FOUND);
    spool_deliveries_free(d);
    struct spool_job *job = NULL;
    CHECK_EQ(spool_status(c, keyed, &job), SPOOL_E_NOT_FOUND);
    CHECK_EQ(spool_status(c, acked, &job), SPOOL_E_NOT_FOUND);
    CHECK(!queue_listed(c, "dq"));
    /* Its key is free again: the same key in the same queue is a new job. */
    int dup = 1;
    uint64_t again = put(c, "dq", "k1", &dup);
    CHECK(again != keyed && dup == 0);
    /* And its settings went with it. */
    struct spool_stats *st = NULL;
    REQUIRE(spool_stats(c, "dq", &st) == 0);
    CHECK(st->queue_count == 1 && st->queues[0].ttr_ms == 30000);
    spool_stats_free(st);
    CHECK_EQ(spool_queue_delete(c, "dq", 1, &deleted), 0);
    CHECK_EQ(deleted, 1);
    spool_close(c);
    /* A crash: replay applies DELETE_QUEUE again. */
    spoold_kill(&s);
    REQUIRE(spoold_restart(&s, NULL) == 0);
    c = client_of(&s);
    CHECK(!queue_listed(c, "dq"));
    CHECK_EQ(spool_status(c, again, &job), SPOOL_E_NOT_FOUND);
    REQUIRE(spool_status(c, kept, &job) == 0);
    spool_job_free(job);
    spool_close(c);
    /* A clean stop: the checkpoint has no trace of it either. */
    CHECK_EQ(spoold_stop(&s), 0);
    REQUIRE(spoold_restart(&s, NULL) == 0);
    c = client_of(&s);
    CHECK(!queue_listed(c, "dq"));
    CHECK_EQ(queue_count(c), 1);
    dup = 1;
    CHECK(put(c, "dq", "k1", &dup) != keyed && dup == 0);
    spool_close(c);
    CHECK_EQ(spoold_stop(&s), 0);
    spoold_cleanup(&s);
}

/* Item 5: a key names a job within its queue: the same key in another queue is a new job,
 * across a crash (replay) and a clean restart (checkpoint version 4). */
static void test_keys_scoped_per_queue(void)
{
    struct spoold s;
    REQUIRE(spoold_start(&s, "keys-scoped", NULL) == 0);
    spool_client *c = client_of(&s);
    int dup = 1;
    uint64_t a = put(c, "a", "order-17", &dup);
    CHECK_EQ(dup, 0);
    uint64_t b = put(c, "b", "order-17", &dup);
    CHECK(b != a && dup == 0);
    CHECK(put(c, "a", "order-17", &dup) == a && dup == 1);
    CHECK(put(c, "b", "order-17", &dup) == b && dup == 1);
    spool_close(c);
    for (int round = 0; round < 2; round++) {
        if (round == 0)
            spoold_kill(&s);
        else
            CHECK_EQ(spoold_stop(&s), 0);
        REQUIRE(spoold_restart(&s, NULL) == 0);
        c = client_of(&s);
        CHECK(put(c, "a", "order-17", &dup) == a && dup == 1);
        CHECK(put(c, "b", "order-17", &dup) == b && dup == 1);
        uint64_t fresh = put(c, round == 0 ? "c" : "d", "order-17", &dup);
        CHECK(fresh != a && fresh != b && dup == 0);
        spool_close(c);
    }
    CHECK_EQ(spoold_stop(&s), 0);
    spoold_cleanup(&s);
}

/* Item 5: at --max-idempotency-keys the oldest key goes first, counted in STATS; a purge
 * frees its queue's keys. */
static void test_keys_bounded(void)
{
    struct spoold s;
    static const char *const args[] = {"--max-idempotency-keys", "3", NULL};
    REQUIRE(spoold_start(&s, "keys-bounded", args) == 0);
    spool_client *c = client_of(&s);
    int dup = 1;
    uint64_t k1 = put(c, "q", "k1", &dup);
    put(c, "q", "k2", &dup);
    uint64_t k3 = put(c, "q", "k3", &dup);
    uint64_t k4 = put(c, "q", "k4", &dup); /* k1 evicted */
    CHECK(put(c, "q", "k4", &dup) == k4 && dup == 1);
    CHECK(put(c, "q", "k3", &dup) == k3 && dup == 1);
    uint64_t k1_again = put(c, "q", "k1", &dup); /* a new job; k2 evicted */
    CHECK(k1_again != k1 && dup == 0);
    struct spool_stats *st = NULL;
    REQUIRE(spool_stats(c, NULL, &st) == 0);
    CHECK_EQ(st->keys, 3);
    CHECK_EQ(st->keys_evicted, 2);
    spool_stats_free(st);
    uint64_t purged = 0;
    REQUIRE(spool_purge(c, "q", &purged) == 0);
    CHECK_EQ(purged, 5);
    REQUIRE(spool_stats(c, NULL, &st) == 0);
    CHECK_EQ(st->keys, 0);
    spool_stats_free(st);
    CHECK(put(c, "q", "k4", &dup) != k4 && dup == 0);
    spool_close(c);
    CHECK_EQ(spoold_stop(&s), 0);
    spoold_cleanup(&s);
}

/* Item 9: a job whose ttl ran out is EXPIRED (status, wait, a waiter blocked before the
 * expiry), counted in its queue's stats, and still so after a crash and a clean restart. */
static void test_ttl_expiry_is_remembered(void)
{
    struct spoold s;
    REQUIRE(spoold_start(&s, "expired", NULL) == 0);
    spool_client *c = client_of(&s);
    struct spool_job_spec spec = {.queue = "ttl", .body = "t", .body_len = 1, .ttl_ms = 300};
    uint64_t id = 0;
    REQUIRE(spool_put(c, &spec, &id) == 0);
    struct spool_job *job = NULL;
    REQUIRE(spool_wait(c, id, 5000, &job) == 0); /* blocked until the expiry */
    CHECK_EQ(job->state, SPOOL_STATE_EXPIRED);
    CHECK(job->finished_ms >= job->created_ms + 300);
    uint64_t finished_ms = job->finished_ms;
    spool_job_free(job);
    REQUIRE(spool_status(c, id, &job) == 0);
    CHECK_EQ(job->state, SPOOL_STATE_EXPIRED);
    CHECK(strcmp(job->queue, "ttl") == 0);
    spool_job_free(job);
    CHECK_EQ(spool_peek(c, id, &job), SPOOL_E_NOT_FOUND); /* no longer a job to peek at */
    CHECK_EQ(spool_delete(c, id), SPOOL_E_NOT_FOUND);
    struct spool_stats *st = NULL;
    REQUIRE(spool_stats(c, "ttl", &st) == 0);
    CHECK_EQ(st->queues[0].expired, 1);
    CHECK_EQ(st->queues[0].ready, 0);
    CHECK_EQ(st->expired, 1);
    spool_stats_free(st);
    spool_close(c);
    for (int round = 0; round < 2; round++) {
        if (round == 0)
            spoold_kill(&s); /* replay: the DELETE (cause ttl) record makes it expired */
        else
            CHECK_EQ(spoold_stop(&s), 0); /* the checkpoint keeps it */
        REQUIRE(spoold_restart(&s, NULL) == 0);
        c = client_of(&s);
        REQUIRE(spool_wait(c, id, 0, &job) == 0);
        CHECK_EQ(job->state, SPOOL_STATE_EXPIRED);
        CHECK_EQ(job->finished_ms, finished_ms);
        spool_job_free(job);
        REQUIRE(spool_stats(c, "ttl", &st) == 0);
        CHECK_EQ(st->queues[0].expired, 1);
        spool_stats_free(st);
        spool_close(c);
    }
    CHECK_EQ(spoold_stop(&s), 0);
    spoold_cleanup(&s);
}

/* ---- raw frames, for what libspool does not expose (a page's limit and cursor) ---- */

static int raw_connect(const struct spoold *s)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(s->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static bool recv_exact(int fd, void *data, size_t len)
{
    uint8_t *p = data;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Send one request in version `version` and decode its reply into *r (payload in buf). */
static void raw_call(int fd, uint16_t version, uint16_t op, const union wire_msg *m,
                     union wire_msg *r, uint8_t *buf, size_t cap)
{
    struct wire_buf b;
    wire_buf_init(&b, WIRE_FRAME_SIZE_LIMIT);
    REQUIRE(wire_encode_v(&b, version, op, 9, m) == 0);
    REQUIRE(send(fd, b.data, b.len, MSG_NOSIGNAL) == (ssize_t)b.len);
    wire_buf_free(&b);
    uint8_t head[WIRE_HEADER_SIZE];
    REQUIRE(recv_exact(fd, head, sizeof(head)));
    struct wire_header h;
    REQUIRE(wire_header_decode(head, sizeof(head), WIRE_FRAME_SIZE_LIMIT, &h) == 0);
    size_t len = h.frame_size - WIRE_HEADER_SIZE;
    REQUIRE(len <= cap && recv_exact(fd, buf, len));
    REQUIRE(h.opcode == (op | WIRE_OP_REPLY));
    REQUIRE(wire_decode_v(version, h.opcode, buf, len, r) == 0);
}

/* Item 4, protocol version 2: a STATS or QUEUES page holds at most `limit` queues, in name
 * order, after the cursor; next_cursor names its last queue while more follow, and is empty
 * on the last page. HELLO offering 1..2 gets 2; offering 1..1 gets 1. */
static void test_paging_by_cursor_and_limit(void)
{
    struct spoold s;
    REQUIRE(spoold_start(&s, "paging", NULL) == 0);
    spool_client *c = client_of(&s);
    const char *names[] = {"b", "a", "c:1", "c", "a.b"}; /* sorted: a a.b b c c:1 */
    for (size_t i = 0; i < 5; i++)
        put(c, names[i], NULL, NULL);
    spool_close(c);
    static uint8_t buf[1 << 16];
    int fd = raw_connect(&s);
    union wire_msg m = {.hello = {.magic = WIRE_MAGIC, .version_min = 1, .version_max = 2}};
    union wire_msg r;
    raw_call(fd, 1, WIRE_OP_HELLO, &m, &r, buf, sizeof buf);
    CHECK_EQ(r.hello_reply.version, 2);
    const char *want[] = {"a", "a.b", "b", "c", "c:1"};
    char cursor[256] = "";
    size_t seen = 0;
    for (int page = 0; page < 3; page++) {
        m = (union wire_msg){.page = {.cursor = wire_bytes_str(cursor), .limit = 2}};
        raw_call(fd, 2, WIRE_OP_STATS, &m, &r, buf, sizeof buf);
        CHECK_EQ(r.stats_reply.server.queues, 5);
        CHECK_EQ(r.stats_reply.server.total_put, 5); /* every queue's, not the page's */
        CHECK_EQ(r.stats_reply.queue_count, page < 2 ? 2 : 1);
        for (uint32_t i = 0; i < r.stats_reply.queue_count && seen < 5; i++)
            CHECK(wire_bytes_eq(r.stats_reply.queues[i].name, want[seen++]));
        struct wire_bytes next = r.stats_reply.next_cursor;
        CHECK(page < 2 ? wire_bytes_eq(next, want[2 * page + 1]) : next.len == 0);
        memcpy(cursor, next.data, next.len);
        cursor[next.len] = 0;
        wire_msg_free(WIRE_OP_STATS | WIRE_OP_REPLY, &r);
    }
    CHECK_EQ(seen, 5);
    m = (union wire_msg){.page = {.cursor = wire_bytes_str("b"), .limit = 0}};
    raw_call(fd, 2, WIRE_OP_QUEUES, &m, &r, buf, sizeof buf);
    REQUIRE(r.queues_reply.count == 2);
    CHECK(wire_bytes_eq(r.queues_reply.queues[0].name, "c"));
    CHECK_EQ(r.queues_reply.next_cursor.len, 0);
    wire_msg_free(WIRE_OP_QUEUES | WIRE_OP_REPLY, &r);
    close(fd);
    /* A version 1 client gets version 1 layouts: every queue in one reply, no cursor. */
    fd = raw_connect(&s);
    m = (union wire_msg){.hello = {.magic = WIRE_MAGIC, .version_min = 1, .version_max = 1}};
    raw_call(fd, 1, WIRE_OP_HELLO, &m, &r, buf, sizeof buf);
    CHECK_EQ(r.hello_reply.version, 1);
    m = (union wire_msg){.page = {.queue = wire_bytes_str("")}};
    raw_call(fd, 1, WIRE_OP_STATS, &m, &r, buf, sizeof buf);
    CHECK_EQ(r.stats_reply.queue_count, 5);
    wire_msg_free(WIRE_OP_STATS | WIRE_OP_REPLY, &r);
    close(fd);
    CHECK_EQ(spoold_stop(&s), 0);
    spoold_cleanup(&s);
}

int main(void)
{
    RUN_TEST(test_queue_limit_and_forgetting);
    RUN_TEST(test_delete_queue);
    RUN_TEST(test_keys_scoped_per_queue);
    RUN_TEST(test_keys_bounded);
    RUN_TEST(test_ttl_expiry_is_remembered);
    RUN_TEST(test_paging_by_cursor_and_limit);
    return check_exit();
}
