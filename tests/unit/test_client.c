/*
 * Unit tests of libspool against a scripted fake server: a thread on 127.0.0.1 port 0 that
 * speaks the wire codec and answers from a small script (not the real spoold, which the
 * integration suite covers). Checks the handshake, every call's request fields and reply
 * handling, server errors as SPOOL_E_* codes, ownership of returned memory (run under ASan),
 * pipelining with replies sent in reverse order, blocking calls mixed with pipelined
 * requests, a server that closes, a non-spool peer, and connect timeouts/refusals.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "spool/client.h"
#include "wire_message.h"

struct fake {
    int listen_fd;
    int port;
    pthread_t thread;
    int mode; /* 0 spool, 1 close after hello, 2 speak HTTP, 3 mute after hello,
                 4 answer after hello with a frame above the announced maximum */
    uint64_t last_put_priority;
    uint64_t last_reserve_flags;
    uint32_t last_ack_result_len;
    char last_release_reason[64];
};

static void fake_send_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

static struct wire_job_info fake_job(uint64_t id)
{
    struct wire_job_info j = {.id = id,
                              .state = WIRE_STATE_DONE,
                              .queue = wire_bytes_str("mail"),
                              .attempts = 2,
                              .max_attempts = 10,
                              .ttr_ms = 30000,
                              .created_ms = 5,
                              .finished_ms = 6,
                              .result = wire_bytes_str("ok!"),
                              .body = wire_bytes_str("peeked")};
    return j;
}

/* Answer one request into out. */
static void fake_answer(struct fake *f, const struct wire_header *h, const union wire_msg *m,
                        struct wire_buf *out)
{
    union wire_msg r;
    memset(&r, 0, sizeof r);
    uint16_t reply = (uint16_t)(h->opcode | WIRE_OP_REPLY);
    int rc = 0;
    struct wire_delivery d[2];
    struct wire_queue_stats qs = {.name = wire_bytes_str("mail"),
                                  .ready = 3,
                                  .total_put = 9,
                                  .oldest_ready_age_ms = 42,
                                  .ack_floor = 77,
                                  .ttr_ms = 30000};
    struct wire_queue_entry qe[2] = {{wire_bytes_str("a"), 0}, {wire_bytes_str("b"), 1}};
    uint16_t codes[4] = {0};
    struct wire_put_result results[8];
    switch (h->opcode) {
    case WIRE_OP_HELLO:
        r.hello_reply = (struct wire_hello_reply){1, 65536, 30000, 1, wire_bytes_str("fake")};
        break;
    case WIRE_OP_PUT:
        if (wire_bytes_eq(m->put.queue, "full")) {
            REQUIRE(wire_encode_error(out, h->request_id, SPOOL_E_QUEUE_FULL, NULL) == 0);
            return;
        }
        f->last_put_priority = m->put.priority;
        r.put_reply = (struct wire_put_reply){2, {1000 + h->request_id, 0}};
        break;
    case WIRE_OP_PUT_BATCH:
        for (uint32_t i = 0; i < m->put_batch.count && i < 8; i++)
            results[i] = (struct wire_put_result){500 + i, (uint8_t)(i == 1)};
        r.put_batch_reply = (struct wire_put_batch_reply){2, m->put_batch.count, results};
        break;
    case WIRE_OP_RESERVE:
        f->last_reserve_flags = m->reserve.flags;
        for (int i = 0; i < 2; i++)
            d[i] = (struct wire_delivery){.id = 7 + (uint64_t)i,
                                          .lease = 99,
                                          .attempt = 1,
                                          .deadline_ms = 123,
                                          .queue = m->reserve.queues[m->reserve.queue_count - 1],
                                          .body = wire_bytes_str(i ? "second" : "first")};
        r.reserve_reply.count = wire_bytes_eq(m->reserve.queues[0], "empty")
                                    ? 0
                                    : (m->reserve.count_max < 2 ? m->reserve.count_max : 2);
        r.reserve_reply.deliveries = d;
        break;
    case WIRE_OP_ACK:
        f->last_ack_result_len = m->ack.result.len;
        if (m->ack.lease != 99)
            rc = SPOOL_E_LEASE_EXPIRED;
        r.durable_reply.durability = 2;
        break;
    case WIRE_OP_ACK_BATCH:
        for (uint32_t i = 0; i < m->ack_batch.count && i < 4; i++)
            codes[i] = m->ack_batch.acks[i].lease == 99 ? 0 : wire_error_to_wire(SPOOL_E_NOT_FOUND);
        r.ack_batch_reply = (struct wire_ack_batch_reply){2, m->ack_batch.count, codes};
        break;
    case WIRE_OP_RELEASE:
        snprintf(f->last_release_reason, sizeof f->last_release_reason, "%.*s",
                 (int)m->release.reason.len, (const char *)m->release.reason.data);
        r.durable_reply.durability = 2;
        break;
    case WIRE_OP_TOUCH:
        r.touch_reply = (struct wire_touch_reply){1, 5000 + m->touch.extend_ms};
        break;
    case WIRE_OP_KICK:
    case WIRE_OP_PURGE:
        r.count_reply = (struct wire_count_reply){2, 4};
        break;
    case WIRE_OP_PEEK:
    case WIRE_OP_STATUS:
    case WIRE_OP_WAIT:
        if (m->job_ref.id == 404)
            rc = SPOOL_E_NOT_FOUND;
        r.job_info = fake_job(m->job_ref.id);
        break;
    case WIRE_OP_STATS:
        r.stats_reply = (struct wire_stats_reply){
            .server = {.uptime_ms = 11, .total_put = 9}, .queue_count = 1, .queues = &qs};
        break;
    case WIRE_OP_QUEUES:
        r.queues_reply = (struct wire_queues_reply){.count = 2, .queues = qe};
        break;
    default:
        r.durable_reply.durability = 1;
        break;
    }
    if (rc != 0)
        REQUIRE(wire_encode_error(out, h->request_id, rc, "scripted") == 0);
    else
        REQUIRE(wire_encode(out, reply, h->request_id, &r) == 0);
}

/* Serve one connection; replies to all frames of one read go out in reverse order. */
static void fake_serve(struct fake *f, int fd)
{
    uint8_t buf[1 << 17];
    size_t have = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + have, sizeof buf - have, 0);
        if (n <= 0)
            return;
        have += (size_t)n;
        struct wire_buf frames[64];
        size_t count = 0;
        size_t off = 0;
        struct wire_header h;
        while (count < 64 && wire_header_decode(buf + off, have - off, 65536, &h) == 0 &&
               have - off >= h.frame_size) {
            union wire_msg m;
            REQUIRE(wire_decode(h.opcode, buf + off + 16, h.frame_size - 16, &m) == 0);
            wire_buf_init(&frames[count], 65536);
            fake_answer(f, &h, &m, &frames[count++]);
            wire_msg_free(h.opcode, &m);
            off += h.frame_size;
            if (f->mode >= 3 && h.opcode != WIRE_OP_HELLO) {
                wire_buf_free(&frames[--count]);
                if (f->mode == 4) {
                    uint8_t huge[16];
                    struct wire_header big = {
                        .frame_size = 1u << 20, .opcode = 0x8002, .request_id = h.request_id};
                    wire_header_encode(huge, &big);
                    fake_send_all(fd, huge, sizeof huge);
                }
                continue;
            }
            if (f->mode == 1 && h.opcode == WIRE_OP_HELLO) {
                fake_send_all(fd, frames[0].data, frames[0].len);
                wire_buf_free(&frames[0]);
                return;
            }
        }
        memmove(buf, buf + off, have - off);
        have -= off;
        for (size_t i = count; i-- > 0;) {
            fake_send_all(fd, frames[i].data, frames[i].len);
            wire_buf_free(&frames[i]);
        }
    }
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    int fd = accept(f->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    if (f->mode == 2) {
        const char *http = "HTTP/1.1 400 Bad Request\r\n\r\n";
        fake_send_all(fd, (const uint8_t *)http, strlen(http));
        uint8_t sink[256];
        while (recv(fd, sink, sizeof sink, 0) > 0) {
        }
    } else {
        fake_serve(f, fd);
    }
    close(fd);
    return NULL;
}

static void fake_start(struct fake *f, int mode)
{
    memset(f, 0, sizeof *f);
    f->mode = mode;
    f->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(f->listen_fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    REQUIRE(bind(f->listen_fd, (struct sockaddr *)&a, sizeof a) == 0);
    REQUIRE(listen(f->listen_fd, 4) == 0);
    socklen_t len = sizeof a;
    REQUIRE(getsockname(f->listen_fd, (struct sockaddr *)&a, &len) == 0);
    f->port = ntohs(a.sin_port);
    REQUIRE(pthread_create(&f->thread, NULL, fake_main, f) == 0);
}

static void fake_stop(struct fake *f)
{
    shutdown(f->listen_fd, SHUT_RDWR);
    pthread_join(f->thread, NULL);
    close(f->listen_fd);
}

static spool_client *connect_fake(struct fake *f)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", f->port);
    spool_client *c = NULL;
    int rc = spool_connect(addr, 2000, &c);
    if (rc != 0)
        fprintf(stderr, "connect: %s\n", spool_error_name(rc));
    REQUIRE(rc == 0);
    return c;
}

static void test_produce_and_consume(void)
{
    struct fake f;
    fake_start(&f, 0);
    spool_client *c = connect_fake(&f);
    CHECK_EQ(spool_job_size_max(c), 30000);
    CHECK_EQ(spool_ping(c), 0);
    struct spool_job_spec job = {.queue = "mail", .body = "hello", .body_len = 5, .priority = 7};
    uint64_t id = 0;
    CHECK_EQ(spool_put(c, &job, &id), 0);
    CHECK(id > 1000);
    CHECK_EQ(f.last_put_priority, 7);
    CHECK_EQ(spool_last_durability(c), SPOOL_DURABLE_SYNCED);
    job.queue = "full";
    CHECK_EQ(spool_put(c, &job, &id), SPOOL_E_QUEUE_FULL);
    job.queue = "bad name";
    CHECK_EQ(spool_put(c, &job, &id), SPOOL_E_INVALID_ARGUMENT);
    struct spool_job_spec jobs[3] = {{.queue = "a"}, {.queue = "b", .key = "k"}, {.queue = "c"}};
    struct spool_put_result results[3];
    CHECK_EQ(spool_put_batch(c, jobs, 3, results), 0);
    CHECK_EQ(results[0].id, 500);
    CHECK_EQ(results[1].duplicate, 1);
    CHECK_EQ(results[2].duplicate, 0);

    const char *queues[] = {"other", "mail"};
    struct spool_delivery *d = NULL;
    size_t n = 0;
    CHECK_EQ(spool_reserve(c, queues, 2, 5, 100, SPOOL_RESERVE_DETACH, &d, &n), 0);
    REQUIRE(n == 2 && d != NULL);
    CHECK_EQ(f.last_reserve_flags, WIRE_RESERVE_DETACH);
    CHECK_EQ(d[1].id, 8);
    CHECK_EQ(d[0].lease, 99);
    CHECK(strcmp(d[0].queue, "mail") == 0);
    CHECK_EQ(d[1].body_len, 6);
    CHECK(strcmp(d[1].body, "second") == 0);
    CHECK_EQ(spool_ack(c, d[0].id, d[0].lease, "result", 6), 0);
    CHECK_EQ(f.last_ack_result_len, 6);
    CHECK_EQ(spool_ack(c, d[0].id, 12345, NULL, 0), SPOOL_E_LEASE_EXPIRED);
    struct spool_ack_item items[2] = {{8, 99, NULL, 0}, {9, 1, NULL, 0}};
    int codes[2];
    CHECK_EQ(spool_ack_batch(c, items, 2, codes), SPOOL_E_NOT_FOUND);
    CHECK_EQ(codes[0], 0);
    CHECK_EQ(codes[1], SPOOL_E_NOT_FOUND);
    spool_deliveries_free(d);
    const char *empty[] = {"empty"};
    d = (struct spool_delivery *)&n; /* must be overwritten with NULL */
    CHECK_EQ(spool_reserve(c, empty, 1, 5, 0, 0, &d, &n), 0);
    CHECK_EQ(n, 0);
    CHECK(d == NULL);
    uint64_t deadline = 0;
    CHECK_EQ(spool_touch(c, 8, 99, 250, &deadline), 0);
    CHECK_EQ(deadline, 5250);
    CHECK_EQ(spool_release(c, 8, 99, 10, -1), 0);
    CHECK_EQ(spool_fail(c, 8, 99, 10, "exit status 3"), 0);
    CHECK(strcmp(f.last_release_reason, "exit status 3") == 0);
    CHECK_EQ(spool_bury(c, 8, 99, "broken"), 0);
    spool_close(c);
    fake_stop(&f);
}

static void test_queries(void)
{
    struct fake f;
    fake_start(&f, 0);
    spool_client *c = connect_fake(&f);
    struct spool_job *job = NULL;
    CHECK_EQ(spool_status(c, 5, &job), 0);
    REQUIRE(job != NULL);
    CHECK_EQ(job->id, 5);
    CHECK_EQ(job->state, SPOOL_STATE_DONE);
    CHECK(strcmp(spool_state_name(job->state), "done") == 0);
    CHECK(strcmp(job->queue, "mail") == 0);
    CHECK(strcmp(job->result, "ok!") == 0);
    CHECK_EQ(job->attempts, 2);
    spool_job_free(job);
    job = NULL;
    CHECK_EQ(spool_wait(c, 404, 10, &job), SPOOL_E_NOT_FOUND);
    CHECK(job == NULL);
    CHECK_EQ(spool_peek(c, 6, &job), 0);
    CHECK(job != NULL && strcmp(job->body, "peeked") == 0);
    spool_job_free(job);
    struct spool_stats *st = NULL;
    CHECK_EQ(spool_stats(c, "mail", &st), 0);
    REQUIRE(st != NULL && st->queue_count == 1);
    CHECK_EQ(st->uptime_ms, 11);
    CHECK(strcmp(st->queues[0].name, "mail") == 0);
    CHECK_EQ(st->queues[0].oldest_ready_age_ms, 42);
    CHECK_EQ(st->queues[0].ack_floor, 77);
    spool_stats_free(st);
    struct spool_queue_info *q = NULL;
    size_t n = 0;
    CHECK_EQ(spool_queues(c, &q, &n), 0);
    CHECK_EQ(n, 2);
    CHECK(q != NULL && strcmp(q[1].name, "b") == 0 && q[1].paused == 1 && q[2].name == NULL);
    spool_queues_free(q);
    uint64_t count = 0;
    CHECK_EQ(spool_kick(c, "mail", 10, &count), 0);
    CHECK_EQ(count, 4);
    CHECK_EQ(spool_purge(c, "mail", &count), 0);
    CHECK_EQ(spool_pause(c, "mail"), 0);
    CHECK_EQ(spool_resume(c, "mail"), 0);
    CHECK_EQ(spool_queue_set_defaults(c, "mail", 1000, 3), 0);
    CHECK_EQ(spool_delete(c, 5), 0);
    CHECK_EQ(spool_kick_job(c, 5), 0);
    spool_close(c);
    fake_stop(&f);
}

/* Pipelined puts come back in reverse order; a blocking call in between keeps them. */
static void test_pipelining(void)
{
    struct fake f;
    fake_start(&f, 0);
    spool_client *c = connect_fake(&f);
    struct spool_job_spec job = {.queue = "mail", .body = "x", .body_len = 1};
    uint64_t ids[10];
    for (int i = 0; i < 10; i++)
        CHECK_EQ(spool_pipeline_put(c, &job, &ids[i]), 0);
    CHECK_EQ(spool_pipeline_pending(c), 10);
    CHECK_EQ(spool_pipeline_flush(c), 0);
    bool seen[10] = {false};
    for (int i = 0; i < 10; i++) {
        struct spool_reply r;
        REQUIRE(spool_pipeline_recv(c, &r) == 0);
        CHECK_EQ(r.error, 0);
        CHECK_EQ(r.id, 1000 + r.request_id);
        for (int k = 0; k < 10; k++)
            if (ids[k] == r.request_id) {
                CHECK(!seen[k]);
                seen[k] = true;
            }
    }
    for (int k = 0; k < 10; k++)
        CHECK(seen[k]);
    CHECK_EQ(spool_pipeline_pending(c), 0);
    struct spool_reply r;
    CHECK_EQ(spool_pipeline_recv(c, &r), SPOOL_E_INVALID_ARGUMENT);
    /* Three pipelined acks (one stale), then a blocking put: its reply may come before or
     * after theirs; either way all four are answered. */
    CHECK_EQ(spool_pipeline_ack(c, 1, 99, NULL, 0, NULL), 0);
    CHECK_EQ(spool_pipeline_ack(c, 2, 98, NULL, 0, NULL), 0);
    CHECK_EQ(spool_pipeline_ack(c, 3, 99, "r", 1, NULL), 0);
    uint64_t id = 0;
    CHECK_EQ(spool_put(c, &job, &id), 0);
    CHECK(id > 1000);
    int errors = 0;
    for (int i = 0; i < 3; i++) {
        REQUIRE(spool_pipeline_recv(c, &r) == 0);
        errors += r.error == SPOOL_E_LEASE_EXPIRED;
    }
    CHECK_EQ(errors, 1);
    spool_close(c);
    fake_stop(&f);
}

static void test_connection_failures(void)
{
    /* A server that closes after the handshake. */
    struct fake f;
    fake_start(&f, 1);
    spool_client *c = connect_fake(&f);
    CHECK_EQ(spool_ping(c), SPOOL_E_CONNECTION_CLOSED);
    CHECK_EQ(spool_ping(c), SPOOL_E_CONNECTION_CLOSED); /* stays broken */
    spool_close(c);
    fake_stop(&f);
    /* A server that stops answering: the io timeout fires, and the client stays broken. */
    fake_start(&f, 3);
    char addr3[64];
    snprintf(addr3, sizeof addr3, "127.0.0.1:%d", f.port);
    struct spool_connect_options opts = {.timeout_ms = 2000, .io_timeout_ms = 200};
    c = NULL;
    REQUIRE(spool_connect_opts(addr3, &opts, &c) == 0);
    CHECK_EQ(spool_ping(c), SPOOL_E_TIMED_OUT);
    CHECK_EQ(spool_ping(c), SPOOL_E_CONNECTION_CLOSED);
    spool_close(c);
    fake_stop(&f);
    /* A reply frame above the server's own announced maximum is a protocol error. */
    fake_start(&f, 4);
    c = connect_fake(&f);
    CHECK_EQ(spool_ping(c), SPOOL_E_PROTOCOL);
    spool_close(c);
    fake_stop(&f);
    /* A peer that is not spool. */
    fake_start(&f, 2);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", f.port);
    c = NULL;
    CHECK_EQ(spool_connect(addr, 2000, &c), SPOOL_E_PROTOCOL);
    CHECK(c == NULL);
    fake_stop(&f);
    /* Nobody listening: the port we just closed. */
    CHECK_EQ(spool_connect(addr, 2000, &c), -ECONNREFUSED);
    CHECK_EQ(spool_connect("no-port", 100, &c), SPOOL_E_INVALID_ARGUMENT);
    CHECK_EQ(spool_connect("127.0.0.1:x1", 100, &c), SPOOL_E_INVALID_ARGUMENT);
    /* A listener that never accepts nor answers: the handshake times out. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    REQUIRE(bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 1) == 0);
    socklen_t len = sizeof a;
    REQUIRE(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(a.sin_port));
    CHECK_EQ(spool_connect(addr, 200, &c), SPOOL_E_TIMED_OUT);
    close(fd);
}

static void test_error_names(void)
{
    CHECK(strcmp(spool_error_name(SPOOL_E_LEASE_EXPIRED), "LEASE_EXPIRED") == 0);
    CHECK(strcmp(spool_error_name(SPOOL_E_CONNECTION_CLOSED), "CONNECTION_CLOSED") == 0);
    CHECK(strcmp(spool_error_name(-ECONNREFUSED), "ECONNREFUSED") == 0);
    CHECK(strcmp(spool_error_name(0), "OK") == 0);
    CHECK(strcmp(spool_error_name(-99999), "UNKNOWN") == 0);
    CHECK(strcmp(spool_strerror(-ENOENT), "No such file or directory") == 0);
    CHECK(strcmp(spool_strerror(SPOOL_E_NOT_FOUND), "no such job or queue") == 0);
    CHECK(spool_error_is_retryable(SPOOL_E_QUEUE_FULL));
    CHECK(!spool_error_is_retryable(SPOOL_E_NOT_FOUND));
}

int main(void)
{
    RUN_TEST(test_produce_and_consume);
    RUN_TEST(test_queries);
    RUN_TEST(test_pipelining);
    RUN_TEST(test_connection_failures);
    RUN_TEST(test_error_names);
    return check_exit();
}
