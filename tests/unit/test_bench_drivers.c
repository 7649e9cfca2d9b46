/* Each spool-bench driver encodes the exact bytes its protocol defines, and parses every
 * reply correctly however the byte stream is split: a prefix of a reply is "incomplete"
 * (never an error, never a wrong answer), the whole reply is consumed exactly, and bytes that
 * cannot be a reply are refused. */
#include "check.h"
#include "driver.h"
#include "wire_frame.h"
#include "wire_message.h"

#include <errno.h>

static struct bench_reply reply;

static struct bench_conn_info info_for(enum bench_role role)
{
    struct bench_conn_info info = {.role = role, .index = 3, .ttr_s = 60};
    snprintf(info.queue, sizeof(info.queue), "q1");
    snprintf(info.group, sizeof(info.group), "g");
    snprintf(info.consumer, sizeof(info.consumer), "c3");
    return info;
}

/* The bytes an encode call appended, as a NUL-terminated string for comparison. */
static void check_bytes(struct bench_buf *out, const char *want, size_t want_len)
{
    CHECK_EQ(bench_buf_pending(out), want_len);
    if (bench_buf_pending(out) == want_len)
        CHECK(memcmp(bench_buf_start(out), want, want_len) == 0);
    else
        fprintf(stderr, "got: %.*s\n", (int)bench_buf_pending(out), bench_buf_start(out));
    bench_buf_consume(out, bench_buf_pending(out));
}

#define CHECK_BYTES(out, literal) check_bytes(out, literal, sizeof(literal) - 1)

/* Parse text (one reply followed by trailing bytes that belong to the next one) fed at every
 * split point: every strict prefix of the reply is incomplete, the full one consumes exactly
 * reply_len bytes. */
static void check_splits(const struct bench_driver *driver, const struct bench_conn_info *info,
                         enum bench_frame_kind kind, const char *text, size_t text_len,
                         size_t reply_len)
{
    for (size_t k = 0; k < reply_len; k++) {
        int64_t rc = driver->parse(info, kind, (const uint8_t *)text, k, &reply);
        if (rc != 0)
            fprintf(stderr, "%s: prefix %zu of %zu gave %lld\n", driver->name, k, reply_len,
                    (long long)rc);
        CHECK_EQ(rc, 0);
    }
    CHECK_EQ(driver->parse(info, kind, (const uint8_t *)text, text_len, &reply),
             (int64_t)reply_len);
}

static void check_malformed(const struct bench_driver *driver, enum bench_frame_kind kind,
                            const char *text)
{
    struct bench_conn_info info = info_for(BENCH_CONSUMER);
    int64_t rc = driver->parse(&info, kind, (const uint8_t *)text, strlen(text), &reply);
    if (rc != -EPROTO)
        fprintf(stderr, "%s accepted malformed %s\n", driver->name, text);
    CHECK_EQ(rc, -EPROTO);
}

static void test_beanstalkd_encoding(void)
{
    const struct bench_driver *d = &bench_driver_beanstalkd;
    struct bench_buf out;
    REQUIRE(bench_buf_init(&out, 16, 1 << 20) == 0);
    struct bench_conn_info producer = info_for(BENCH_PRODUCER), consumer = info_for(BENCH_CONSUMER);
    uint32_t replies = 0;
    CHECK_EQ(d->encode_setup(&producer, 0, &out, &replies), 0);
    CHECK_EQ(replies, 1);
    CHECK_BYTES(&out, "use q1\r\n");
    CHECK_EQ(d->encode_setup(&consumer, 0, &out, &replies), 0);
    CHECK_EQ(replies, 2);
    CHECK_BYTES(&out, "watch q1\r\nignore default\r\n");
    CHECK_EQ(d->encode_put(&producer, 0, &out, (const uint8_t *)"ab\r\ncd", 3, 2, &replies), 0);
    CHECK_EQ(replies, 2);
    CHECK_BYTES(&out, "put 1024 0 60 3\r\nab\r\r\nput 1024 0 60 3\r\n\ncd\r\n");
    CHECK_EQ(d->encode_reserve(&consumer, 0, &out, 2, 1500, &replies), 0);
    CHECK_EQ(replies, 2);
    CHECK_BYTES(&out, "reserve-with-timeout 2\r\nreserve-with-timeout 2\r\n");
    struct bench_job jobs[2] = {{.id = 7}, {.id = 18446744073709551615ull}};
    CHECK_EQ(d->encode_ack(&consumer, 0, &out, jobs, 2, &replies), 0);
    CHECK_EQ(replies, 2);
    CHECK_BYTES(&out, "delete 7\r\ndelete 18446744073709551615\r\n");
    bench_buf_free(&out);
}

static void test_beanstalkd_parsing(void)
{
    const struct bench_driver *d = &bench_driver_beanstalkd;
    struct bench_conn_info c = info_for(BENCH_CONSUMER);
    static const char reserved[] = "RESERVED 42 5\r\nhe\r\no\r\nINSERTED 1\r\n";
    check_splits(d, &c, BENCH_FRAME_RESERVE, reserved, sizeof(reserved) - 1, 22);
    CHECK_EQ(reply.kind, BENCH_REPLY_JOBS);
    CHECK_EQ(reply.count, 1);
    CHECK_EQ(reply.jobs[0].id, 42);
    CHECK_EQ(reply.jobs[0].body_len, 5);
    CHECK(memcmp(reply.jobs[0].body, "he\r\no", 5) == 0);
    static const char timed_out[] = "TIMED_OUT\r\n";
    check_splits(d, &c, BENCH_FRAME_RESERVE, timed_out, sizeof(timed_out) - 1, 11);
    CHECK_EQ(reply.kind, BENCH_REPLY_EMPTY);
    static const char inserted[] = "INSERTED 99\r\nINS";
    check_splits(d, &c, BENCH_FRAME_PUT, inserted, sizeof(inserted) - 1, 13);
    CHECK_EQ(reply.kind, BENCH_REPLY_OK);
    CHECK_EQ(reply.count, 1);
    static const char deleted[] = "DELETED\r\n";
    check_splits(d, &c, BENCH_FRAME_ACK, deleted, sizeof(deleted) - 1, 9);
    CHECK_EQ(reply.kind, BENCH_REPLY_OK);
    static const char watching[] = "WATCHING 1\r\n";
    check_splits(d, &c, BENCH_FRAME_SETUP, watching, sizeof(watching) - 1, 12);
    CHECK_EQ(reply.kind, BENCH_REPLY_OK);
    static const char not_found[] = "NOT_FOUND\r\n";
    check_splits(d, &c, BENCH_FRAME_ACK, not_found, sizeof(not_found) - 1, 11);
    CHECK_EQ(reply.kind, BENCH_REPLY_ERROR);
    CHECK(strcmp(reply.error, "NOT_FOUND") == 0);
    static const char buried[] = "BURIED 5\r\n";
    check_splits(d, &c, BENCH_FRAME_PUT, buried, sizeof(buried) - 1, 10);
    CHECK_EQ(reply.kind, BENCH_REPLY_ERROR);
    check_malformed(d, BENCH_FRAME_PUT, "INSERTED x\r\n");
    check_malformed(d, BENCH_FRAME_PUT, "DELETED\r\n");
    check_malformed(d, BENCH_FRAME_RESERVE, "RESERVED 1 3\r\nabcXY");
    check_malformed(d, BENCH_FRAME_RESERVE, "RESERVED 1 99999999999999999999\r\n");
    check_malformed(d, BENCH_FRAME_ACK, "HELLO\r\n");
    char longline[300];
    memset(longline, 'A', sizeof(longline) - 1);
    longline[sizeof(longline) - 1] = '\0';
    check_malformed(d, BENCH_FRAME_ACK, longline);
}

static void test_redis_encoding(void)
{
    const struct bench_driver *d = &bench_driver_redis;
    struct bench_buf out;
    REQUIRE(bench_buf_init(&out, 16, 1 << 20) == 0);
    struct bench_conn_info producer = info_for(BENCH_PRODUCER), consumer = info_for(BENCH_CONSUMER);
    uint32_t replies = 9;
    CHECK_EQ(d->encode_setup(&producer, 0, &out, &replies), 0);
    CHECK_EQ(replies, 0);
    CHECK_BYTES(&out, "");
    CHECK_EQ(d->encode_setup(&consumer, 0, &out, &replies), 0);
    CHECK_EQ(replies, 1);
    CHECK_BYTES(&out, "*6\r\n$6\r\nXGROUP\r\n$6\r\nCREATE\r\n$2\r\nq1\r\n$1\r\ng\r\n$1\r\n0\r\n"
                      "$8\r\nMKSTREAM\r\n");
    CHECK_EQ(d->encode_put(&producer, 0, &out, (const uint8_t *)"xyzw", 2, 2, &replies), 0);
    CHECK_EQ(replies, 2);
    CHECK_BYTES(&out, "*5\r\n$4\r\nXADD\r\n$2\r\nq1\r\n$1\r\n*\r\n$1\r\nb\r\n$2\r\nxy\r\n"
                      "*5\r\n$4\r\nXADD\r\n$2\r\nq1\r\n$1\r\n*\r\n$1\r\nb\r\n$2\r\nzw\r\n");
    struct bench_conn_info trimmed = producer;
    trimmed.stream_maxlen = 131072;
    CHECK_EQ(d->encode_put(&trimmed, 0, &out, (const uint8_t *)"xy", 2, 1, &replies), 0);
    CHECK_BYTES(&out, "*8\r\n$4\r\nXADD\r\n$2\r\nq1\r\n$6\r\nMAXLEN\r\n$1\r\n~\r\n"
                      "$6\r\n131072\r\n$1\r\n*\r\n$1\r\nb\r\n$2\r\nxy\r\n");
    CHECK_EQ(d->encode_reserve(&consumer, 0, &out, 16, 1000, &replies), 0);
    CHECK_EQ(replies, 1);
    CHECK_BYTES(&out, "*11\r\n$10\r\nXREADGROUP\r\n$5\r\nGROUP\r\n$1\r\ng\r\n$2\r\nc3\r\n"
                      "$5\r\nCOUNT\r\n$2\r\n16\r\n$5\r\nBLOCK\r\n$4\r\n1000\r\n$7\r\nSTREAMS\r\n"
                      "$2\r\nq1\r\n$1\r\n>\r\n");
    CHECK_EQ(d->encode_reserve(&consumer, 0, &out, 1, 0, &replies), 0);
    CHECK_BYTES(&out, "*9\r\n$10\r\nXREADGROUP\r\n$5\r\nGROUP\r\n$1\r\ng\r\n$2\r\nc3\r\n"
                      "$5\r\nCOUNT\r\n$1\r\n1\r\n$7\r\nSTREAMS\r\n$2\r\nq1\r\n$1\r\n>\r\n");
    struct bench_job jobs[2] = {{.id = 1700000000123ull, .id2 = 0}, {.id = 5, .id2 = 12}};
    CHECK_EQ(d->encode_ack(&consumer, 0, &out, jobs, 2, &replies), 0);
    CHECK_EQ(replies, 1);
    CHECK_BYTES(&out, "*5\r\n$4\r\nXACK\r\n$2\r\nq1\r\n$1\r\ng\r\n$15\r\n1700000000123-0\r\n"
                      "$4\r\n5-12\r\n");
    bench_buf_free(&out);
}

static void test_redis_parsing(void)
{
    const struct bench_driver *d = &bench_driver_redis;
    struct bench_conn_info c = info_for(BENCH_CONSUMER);
    static const char read_reply[] = "*1\r\n*2\r\n$2\r\nq1\r\n*2\r\n"
                                     "*2\r\n$5\r\n123-4\r\n*2\r\n$1\r\nb\r\n$3\r\na\r\n\r\n"
                                     "*2\r\n$5\r\n124-0\r\n*-1\r\n"
                                     ":1\r\n";
    size_t read_len = sizeof(read_reply) - 1 - 4;
    check_splits(d, &c, BENCH_FRAME_RESERVE, read_reply, sizeof(read_reply) - 1, read_len);
    CHECK_EQ(reply.kind, BENCH_REPLY_JOBS);
    CHECK_EQ(reply.count, 2);
    CHECK_EQ(reply.jobs[0].id, 123);
    CHECK_EQ(reply.jobs[0].id2, 4);
    CHECK_EQ(reply.jobs[0].body_len, 3);
    CHECK(memcmp(reply.jobs[0].body, "a\r\n", 3) == 0);
    CHECK_EQ(reply.jobs[1].id, 124);
    CHECK(reply.jobs[1].body == NULL); /* a deleted entry: still acked, no body */
    static const char nil[] = "*-1\r\n";
    check_splits(d, &c, BENCH_FRAME_RESERVE, nil, sizeof(nil) - 1, 5);
    CHECK_EQ(reply.kind, BENCH_REPLY_EMPTY);
    static const char id[] = "$15\r\n1700000000123-0\r\n+OK";
    check_splits(d, &c, BENCH_FRAME_PUT, id, sizeof(id) - 1, 22);
    CHECK_EQ(reply.kind, BENCH_REPLY_OK);
    CHECK_EQ(reply.count, 1);
    static const char acked[] = ":17\r\n";
    check_splits(d, &c, BENCH_FRAME_ACK, acked, sizeof(acked) - 1, 5);
    CHECK_EQ(reply.kind, BENCH_REPLY_OK);
    CHECK_EQ(reply.count, 17);
    static const char busy[] = "-BUSYGROUP Consumer Group name already exists\r\n";
    check_splits(d, &c, BENCH_FRAME_SETUP, busy, sizeof(busy) - 1, sizeof(busy) - 1);
    CHECK_EQ(reply.kind, BENCH_REPLY_OK);
    static const char oom[] = "-OOM command not allowed\r\n";
    check_splits(d, &c, BENCH_FRAME_PUT, oom, sizeof(oom) - 1, sizeof(oom) - 1);
    CHECK_EQ(reply.kind, BENCH_REPLY_ERROR);
    CHECK(strncmp(reply.error, "OOM", 3) == 0);
    check_malformed(d, BENCH_FRAME_PUT, ":12\r\n");
    check_malformed(d, BENCH_FRAME_ACK, "$2\r\nabXY");
    check_malformed(d, BENCH_FRAME_ACK, "!3\r\n");
    check_malformed(d, BENCH_FRAME_RESERVE,
                    "*1\r\n*2\r\n$2\r\nq1\r\n*1\r\n*2\r\n$3\r\nabc\r\n*0\r\n");
    check_malformed(d, BENCH_FRAME_RESERVE, "*1\r\n:5\r\n");
    check_malformed(d, BENCH_FRAME_ACK, "*-2\r\n");
}

static void test_buffer_limits(void)
{
    struct bench_buf buf;
    REQUIRE(bench_buf_init(&buf, 4, 16) == 0);
    CHECK_EQ(bench_buf_append(&buf, "0123456789", 10), 0);
    bench_buf_consume(&buf, 8);
    CHECK_EQ(bench_buf_append(&buf, "abcdefghijklmn", 14), 0); /* fits after sliding down */
    CHECK_EQ(bench_buf_pending(&buf), 16);
    CHECK(memcmp(bench_buf_start(&buf), "89abcdefghijklmn", 16) == 0);
    CHECK_EQ(bench_buf_append(&buf, "x", 1), -ENOBUFS);
    bench_buf_free(&buf);
    CHECK(bench_driver_find("redis") == &bench_driver_redis);
    CHECK(bench_driver_find("beanstalkd") == &bench_driver_beanstalkd);
    CHECK(bench_driver_find("spool") == &bench_driver_spool);
    CHECK(bench_driver_find("nope") == NULL);
}

/* Decode the one frame the spool driver appended to out, with the shared codec. */
static uint16_t decode_spool_frame(struct bench_buf *out, uint64_t tag, union wire_msg *msg)
{
    struct wire_header h;
    REQUIRE(wire_header_decode(bench_buf_start(out), bench_buf_pending(out), WIRE_FRAME_SIZE_LIMIT,
                               &h) == 0);
    CHECK_EQ(h.frame_size, bench_buf_pending(out));
    CHECK_EQ(h.request_id, tag);
    REQUIRE(wire_decode(h.opcode, bench_buf_start(out) + WIRE_HEADER_SIZE,
                        h.frame_size - WIRE_HEADER_SIZE, msg) == 0);
    return h.opcode;
}

static void test_spool_encoding(void)
{
    const struct bench_driver *d = &bench_driver_spool;
    struct bench_buf out;
    REQUIRE(bench_buf_init(&out, 16, 1 << 20) == 0);
    struct bench_conn_info c = info_for(BENCH_CONSUMER);
    union wire_msg msg;
    uint32_t replies = 0;
    CHECK(d->tagged);
    CHECK_EQ(d->encode_setup(&c, 5, &out, &replies), 0);
    CHECK_EQ(replies, 1);
    CHECK_EQ(decode_spool_frame(&out, 5, &msg), WIRE_OP_HELLO);
    CHECK_EQ(msg.hello.magic, WIRE_MAGIC);
    CHECK(msg.hello.version_min <= WIRE_VERSION && msg.hello.version_max >= WIRE_VERSION);
    bench_buf_consume(&out, bench_buf_pending(&out));

    CHECK_EQ(d->encode_put(&c, 6, &out, (const uint8_t *)"abc", 3, 1, &replies), 0);
    CHECK_EQ(replies, 1);
    CHECK_EQ(decode_spool_frame(&out, 6, &msg), WIRE_OP_PUT);
    CHECK(wire_bytes_eq(msg.put.queue, "q1"));
    CHECK_EQ(msg.put.ttr_ms, 60000);
    CHECK(msg.put.body.len == 3 && memcmp(msg.put.body.data, "abc", 3) == 0);
    bench_buf_consume(&out, bench_buf_pending(&out));

    CHECK_EQ(d->encode_put(&c, 7, &out, (const uint8_t *)"abcdef", 2, 3, &replies), 0);
    CHECK_EQ(replies, 1);
    CHECK_EQ(decode_spool_frame(&out, 7, &msg), WIRE_OP_PUT_BATCH);
    CHECK_EQ(msg.put_batch.count, 3);
    CHECK(memcmp(msg.put_batch.jobs[2].body.data, "ef", 2) == 0);
    CHECK(wire_bytes_eq(msg.put_batch.jobs[1].queue, "q1"));
    wire_msg_free(WIRE_OP_PUT_BATCH, &msg);
    bench_buf_consume(&out, bench_buf_pending(&out));

    CHECK_EQ(d->encode_reserve(&c, 8, &out, 16, 1000, &replies), 0);
    CHECK_EQ(decode_spool_frame(&out, 8, &msg), WIRE_OP_RESERVE);
    CHECK_EQ(msg.reserve.count_max, 16);
    CHECK_EQ(msg.reserve.timeout_ms, 1000);
    CHECK_EQ(msg.reserve.queue_count, 1);
    CHECK(wire_bytes_eq(msg.reserve.queues[0], "q1"));
    bench_buf_consume(&out, bench_buf_pending(&out));

    struct bench_job jobs[2] = {{.id = 11, .id2 = 111}, {.id = 12, .id2 = 112}};
    CHECK_EQ(d->encode_ack(&c, 9, &out, jobs, 1, &replies), 0);
    CHECK_EQ(decode_spool_frame(&out, 9, &msg), WIRE_OP_ACK);
    CHECK(msg.ack.id == 11 && msg.ack.lease == 111);
    bench_buf_consume(&out, bench_buf_pending(&out));
    CHECK_EQ(d->encode_ack(&c, 10, &out, jobs, 2, &replies), 0);
    CHECK_EQ(decode_spool_frame(&out, 10, &msg), WIRE_OP_ACK_BATCH);
    CHECK(msg.ack_batch.count == 2 && msg.ack_batch.acks[1].lease == 112);
    wire_msg_free(WIRE_OP_ACK_BATCH, &msg);
    bench_buf_free(&out);
}

/* A reply frame made by the shared codec, followed by 3 bytes of the next frame. */
static size_t spool_reply(struct wire_buf *b, uint16_t opcode, uint64_t tag,
                          const union wire_msg *m)
{
    b->len = 0;
    REQUIRE(wire_encode(b, opcode, tag, m) == 0);
    size_t len = b->len;
    REQUIRE(wire_buf_reserve(b, 3) == 0);
    memcpy(b->data + b->len, "\x20\0\0", 3);
    b->len += 3;
    return len;
}

static void test_spool_parsing(void)
{
    const struct bench_driver *d = &bench_driver_spool;
    struct bench_conn_info c = info_for(BENCH_CONSUMER);
    struct wire_buf b;
    wire_buf_init(&b, WIRE_FRAME_SIZE_MAX_DEFAULT);
    struct wire_delivery deliveries[2] = {
        {.id = 1,
         .lease = 91,
         .attempt = 1,
         .queue = wire_bytes_str("q1"),
         .body = wire_bytes_str("hello")},
        {.id = 2,
         .lease = 92,
         .attempt = 1,
         .queue = wire_bytes_str("q1"),
         .body = wire_bytes_str("")},
    };
    union wire_msg m = {.reserve_reply = {.count = 2, .deliveries = deliveries}};
    size_t n = spool_reply(&b, WIRE_OP_RESERVE | WIRE_OP_REPLY, 77, &m);
    check_splits(d, &c, BENCH_FRAME_RESERVE, (const char *)b.data, b.len, n);
    CHECK_EQ(reply.kind, BENCH_REPLY_JOBS);
    CHECK_EQ(reply.tag, 77);
    CHECK_EQ(reply.count, 2);
    CHECK(reply.jobs[0].id == 1 && reply.jobs[0].id2 == 91 && reply.jobs[0].body_len == 5);
    CHECK(memcmp(reply.jobs[0].body, "hello", 5) == 0);
    CHECK(reply.jobs[1].id == 2 && reply.jobs[1].id2 == 92);

    m = (union wire_msg){.reserve_reply = {.count = 0}};
    n = spool_reply(&b, WIRE_OP_RESERVE | WIRE_OP_REPLY, 78, &m);
    check_splits(d, &c, BENCH_FRAME_RESERVE, (const char *)b.data, b.len, n);
    CHECK_EQ(reply.kind, BENCH_REPLY_EMPTY);

    m = (union wire_msg){.put_reply = {.durability = WIRE_DURABLE_SYNCED, .job = {.id = 5}}};
    n = spool_reply(&b, WIRE_OP_PUT | WIRE_OP_REPLY, 79, &m);
    check_splits(d, &c, BENCH_FRAME_PUT, (const char *)b.data, b.len, n);
    CHECK(reply.kind == BENCH_REPLY_OK && reply.count == 1 && reply.tag == 79);

    uint16_t codes[3] = {0, 9 /* LEASE_EXPIRED */, 0};
    m = (union wire_msg){.ack_batch_reply = {.durability = 2, .count = 3, .codes = codes}};
    n = spool_reply(&b, WIRE_OP_ACK_BATCH | WIRE_OP_REPLY, 80, &m);
    check_splits(d, &c, BENCH_FRAME_ACK, (const char *)b.data, b.len, n);
    CHECK(reply.kind == BENCH_REPLY_OK && reply.count == 2 && reply.failed == 1);

    m = (union wire_msg){.error = {.code = 11, .message = wire_bytes_str("queue q1 is full")}};
    n = spool_reply(&b, WIRE_OP_ERROR, 81, &m);
    check_splits(d, &c, BENCH_FRAME_PUT, (const char *)b.data, b.len, n);
    CHECK_EQ(reply.kind, BENCH_REPLY_ERROR);
    CHECK(strstr(reply.error, "QUEUE_FULL") != NULL);
    CHECK_EQ(reply.tag, 81);

    /* A reply the benchmark never asks for, and a frame shorter than its header. */
    m = (union wire_msg){.count_reply = {.count = 1}};
    spool_reply(&b, WIRE_OP_KICK | WIRE_OP_REPLY, 82, &m);
    CHECK_EQ(d->parse(&c, BENCH_FRAME_PUT, b.data, b.len, &reply), -EPROTO);
    static const uint8_t runt[16] = {8, 0, 0, 0, 0x10, 0x80};
    CHECK_EQ(d->parse(&c, BENCH_FRAME_PUT, runt, sizeof(runt), &reply), -EPROTO);
    wire_buf_free(&b);
}

int main(void)
{
    RUN_TEST(test_beanstalkd_encoding);
    RUN_TEST(test_beanstalkd_parsing);
    RUN_TEST(test_redis_encoding);
    RUN_TEST(test_redis_parsing);
    RUN_TEST(test_spool_encoding);
    RUN_TEST(test_spool_parsing);
    RUN_TEST(test_buffer_limits);
    return check_exit();
}
