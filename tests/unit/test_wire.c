/*
 * Unit tests of the wire codec (src/wire): every message round-trips with the size
 * docs/PROTOCOL.md gives it; every truncation of every message is refused without reading out
 * of bounds (each payload is copied into an exact-size heap block so ASan sees any overread);
 * oversized lengths and counts are refused before allocation; unknown opcodes, bad magic,
 * trailing bytes, bad names and flag bits get their documented errors; random bytes never
 * crash the decoder and whatever decodes re-encodes to the same bytes.
 */
#include <errno.h>

#include "check.h"
#include "wire_message.h"

static const uint8_t body_bytes[] = "the body of a job";
static const uint8_t result_bytes[] = "result!";

/* One sample message per opcode, every field set to a distinct non-zero value. */
struct sample {
    uint16_t op;
    union wire_msg msg;
    size_t payload_size; /* as computed from PROTOCOL.md, by hand */
};

static struct wire_job_spec sample_jobs[2];
static struct wire_ack sample_acks[3];
static struct wire_put_result sample_put_results[2];
static struct wire_delivery sample_deliveries[2];
static uint16_t sample_codes[3] = {0, 9, 8};
static struct wire_queue_stats sample_queue_stats[2];
static struct wire_queue_entry sample_queue_entries[2];

static struct wire_job_spec job_spec(const char *queue, uint32_t priority)
{
    struct wire_job_spec j = {
        .queue = wire_bytes_str(queue),
        .flags = WIRE_PUT_MAX_ATTEMPTS,
        .priority = priority,
        .delay_ms = 1500,
        .ttr_ms = 30000,
        .max_attempts = 7,
        .ttl_ms = 86400000,
        .key = wire_bytes_str("key-1"),
        .body = wire_bytes_of(body_bytes, sizeof body_bytes - 1),
    };
    return j;
}

/* Bytes of a job spec: 35 fixed + queue + key + body. */
static size_t job_spec_size(const struct wire_job_spec *j)
{
    return 35 + j->queue.len + j->key.len + j->body.len;
}

static void build_arrays(void)
{
    sample_jobs[0] = job_spec("mail", 5);
    sample_jobs[1] = job_spec("video.transcode", 1);
    sample_jobs[1].key = wire_bytes_str("");
    for (int i = 0; i < 3; i++) {
        sample_acks[i].id = 100 + (uint64_t)i;
        sample_acks[i].lease = 0xABCDEF0000 + (uint64_t)i;
        sample_acks[i].result = wire_bytes_of(result_bytes, (size_t)i * 2);
    }
    sample_put_results[0] = (struct wire_put_result){.id = 41, .flags = 0};
    sample_put_results[1] = (struct wire_put_result){.id = 42, .flags = WIRE_PUT_DUPLICATE};
    for (int i = 0; i < 2; i++) {
        sample_deliveries[i] =
            (struct wire_delivery){.id = 7 + (uint64_t)i,
                                   .lease = 0x1122334455667788u,
                                   .attempt = 2,
                                   .priority = 9,
                                   .deadline_ms = 1790000000000u,
                                   .queue = wire_bytes_str(i ? "b" : "mail"),
                                   .body = wire_bytes_of(body_bytes, sizeof body_bytes - 1)};
        sample_queue_stats[i] =
            (struct wire_queue_stats){.name = wire_bytes_str(i ? "q:2" : "mail"),
                                      .flags = (uint8_t)i,
                                      .ready = 1,
                                      .delayed = 2,
                                      .reserved = 3,
                                      .dead = 4,
                                      .total_put = 5,
                                      .oldest_ready_age_ms = 6,
                                      .ack_floor = 7,
                                      .ttr_ms = 8,
                                      .max_attempts = 9};
        sample_queue_entries[i] = (struct wire_queue_entry){
            .name = wire_bytes_str(i ? "q-2" : "mail"), .flags = (uint8_t)i};
    }
}

static size_t build_samples(struct sample *s)
{
    size_t n = 0;
    build_arrays();
    s[n++] = (struct sample){
        WIRE_OP_HELLO,
        {.hello = {WIRE_MAGIC, 1, 3, wire_bytes_str("cli"), wire_bytes_str("secret")}},
        4 + 2 + 2 + 2 + 3 + 2 + 6};
    s[n++] = (struct sample){WIRE_OP_PING, {.durable_reply = {0}}, 0};
    s[n++] = (struct sample){WIRE_OP_PUT, {.put = job_spec("mail", 3)}, 0};
    s[n - 1].payload_size = job_spec_size(&s[n - 1].msg.put);
    s[n++] = (struct sample){WIRE_OP_PUT_BATCH,
                             {.put_batch = {2, sample_jobs}},
                             4 + job_spec_size(&sample_jobs[0]) + job_spec_size(&sample_jobs[1])};
    struct wire_reserve r = {
        .count_max = 10, .timeout_ms = 5000, .flags = WIRE_RESERVE_DETACH, .queue_count = 2};
    r.queues[0] = wire_bytes_str("mail");
    r.queues[1] = wire_bytes_str("video");
    s[n++] = (struct sample){WIRE_OP_RESERVE, {.reserve = r}, 4 + 4 + 1 + 1 + 5 + 6};
    s[n++] = (struct sample){WIRE_OP_ACK, {.ack = sample_acks[2]}, 8 + 8 + 4 + 4};
    s[n++] =
        (struct sample){WIRE_OP_ACK_BATCH, {.ack_batch = {3, sample_acks}}, 4 + 3 * 20 + 0 + 2 + 4};
    s[n++] = (struct sample){
        WIRE_OP_RELEASE,
        {.release = {5, 6, 7000, WIRE_RELEASE_PRIORITY, 8, wire_bytes_str("exit 1")}},
        8 + 8 + 8 + 1 + 4 + 2 + 6};
    s[n++] = (struct sample){WIRE_OP_TOUCH, {.touch = {5, 6, 60000}}, 8 + 8 + 4};
    s[n++] =
        (struct sample){WIRE_OP_BURY, {.bury = {5, 6, wire_bytes_str("exit 3")}}, 8 + 8 + 2 + 6};
    s[n++] = (struct sample){WIRE_OP_KICK, {.kick = {wire_bytes_str("mail"), 10}}, 5 + 4};
    s[n++] = (struct sample){WIRE_OP_KICK_JOB, {.job_ref = {77}}, 8};
    s[n++] = (struct sample){WIRE_OP_PEEK, {.job_ref = {78}}, 8};
    s[n++] = (struct sample){
        WIRE_OP_PEEK_NEXT, {.peek_next = {wire_bytes_str("mail"), WIRE_STATE_DEAD}}, 5 + 1};
    s[n++] = (struct sample){WIRE_OP_DELETE, {.job_ref = {79}}, 8};
    s[n++] = (struct sample){WIRE_OP_WAIT, {.wait = {80, 2500}}, 8 + 4};
    s[n++] = (struct sample){WIRE_OP_STATUS, {.job_ref = {81}}, 8};
    s[n++] = (struct sample){WIRE_OP_STATS, {.queue_ref = {wire_bytes_str("")}}, 1};
    s[n++] = (struct sample){WIRE_OP_QUEUES, {.durable_reply = {0}}, 0};
    s[n++] = (struct sample){WIRE_OP_PAUSE, {.queue_ref = {wire_bytes_str("mail")}}, 5};
    s[n++] = (struct sample){WIRE_OP_RESUME, {.queue_ref = {wire_bytes_str("mail")}}, 5};
    s[n++] = (struct sample){WIRE_OP_PURGE, {.queue_ref = {wire_bytes_str("mail")}}, 5};
    s[n++] =
        (struct sample){WIRE_OP_QUEUE_CONFIG,
                        {.queue_config = {wire_bytes_str("mail"), WIRE_CONFIG_FLAGS_ALL, 9000, 3}},
                        5 + 1 + 4 + 4};
    s[n++] = (struct sample){
        WIRE_OP_DELETE_QUEUE,
        {.delete_queue = {wire_bytes_str("mail"), WIRE_DELETE_QUEUE_FORCE}}, 5 + 1};
    return n;
}

static size_t build_reply_samples(struct sample *s, size_t n)
{
    const uint16_t R = WIRE_OP_REPLY;
    s[n++] = (struct sample){
        WIRE_OP_HELLO | R,
        {.hello_reply = {1, 2097152, 1048576, 1790000000000u, wire_bytes_str("spoold 0.1.0")}},
        2 + 4 + 4 + 8 + 2 + 12};
    s[n++] = (struct sample){WIRE_OP_PING | R, {.durable_reply = {0}}, 0};
    s[n++] = (struct sample){WIRE_OP_PUT | R,
                             {.put_reply = {WIRE_DURABLE_SYNCED, {12345, WIRE_PUT_DUPLICATE}}},
                             1 + 8 + 1};
    s[n++] = (struct sample){WIRE_OP_PUT_BATCH | R,
                             {.put_batch_reply = {WIRE_DURABLE_WRITTEN, 2, sample_put_results}},
                             1 + 4 + 2 * 9};
    s[n++] = (struct sample){WIRE_OP_RESERVE | R,
                             {.reserve_reply = {2, sample_deliveries}},
                             4 + 2 * (32 + 4 + 17) + 5 + 2};
    s[n++] = (struct sample){WIRE_OP_RESERVE | R, {.reserve_reply = {0, NULL}}, 4};
    s[n++] = (struct sample){WIRE_OP_ACK | R, {.durable_reply = {WIRE_DURABLE_SYNCED}}, 1};
    s[n++] = (struct sample){WIRE_OP_ACK_BATCH | R,
                             {.ack_batch_reply = {WIRE_DURABLE_SYNCED, 3, sample_codes}},
                             1 + 4 + 6};
    s[n++] = (struct sample){WIRE_OP_TOUCH | R, {.touch_reply = {1, 1790000000001u}}, 9};
    s[n++] = (struct sample){WIRE_OP_KICK | R, {.count_reply = {2, 17}}, 9};
    struct wire_job_info j = {.id = 9,
                              .state = WIRE_STATE_DEAD,
                              .queue = wire_bytes_str("mail"),
                              .priority = 4,
                              .attempts = 10,
                              .max_attempts = 10,
                              .ttr_ms = 30000,
                              .created_ms = 1,
                              .ready_at_ms = 2,
                              .deadline_ms = 3,
                              .finished_ms = 4,
                              .reason = wire_bytes_str("max_attempts"),
                              .result = wire_bytes_of(result_bytes, 7),
                              .body = wire_bytes_of(body_bytes, sizeof body_bytes - 1)};
    s[n++] = (struct sample){
        WIRE_OP_PEEK | R, {.job_info = j}, 8 + 1 + 5 + 16 + 32 + 2 + 12 + 4 + 7 + 4 + 17};
    struct wire_stats_reply st = {
        .server = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, .queue_count = 2, .queues = sample_queue_stats};
    s[n++] = (struct sample){
        WIRE_OP_STATS | R, {.stats_reply = st}, 8 + 4 + 8 * 8 + 4 + (67 + 3) + (67 + 2)};
    s[n++] = (struct sample){WIRE_OP_QUEUES | R,
                             {.queues_reply = {2, sample_queue_entries}},
                             4 + (1 + 4 + 1) + (1 + 3 + 1)};
    s[n++] = (struct sample){WIRE_OP_PURGE | R, {.count_reply = {2, 3}}, 9};
    s[n++] = (struct sample){WIRE_OP_DELETE_QUEUE | R, {.count_reply = {2, 4}}, 9};
    const uint16_t durable_ops[] = {WIRE_OP_RELEASE,     WIRE_OP_BURY,  WIRE_OP_KICK_JOB,
                                    WIRE_OP_DELETE,      WIRE_OP_PAUSE, WIRE_OP_RESUME,
                                    WIRE_OP_QUEUE_CONFIG};
    for (size_t i = 0; i < sizeof durable_ops / sizeof durable_ops[0]; i++)
        s[n++] = (struct sample){(uint16_t)(durable_ops[i] | R), {.durable_reply = {2}}, 1};
    const uint16_t info_ops[] = {WIRE_OP_PEEK_NEXT, WIRE_OP_WAIT, WIRE_OP_STATUS};
    j.body = wire_bytes_str("");
    j.state = WIRE_STATE_DONE;
    j.queue = wire_bytes_str(""); /* allowed in a job info: a finished job's queue may be gone */
    for (size_t i = 0; i < sizeof info_ops / sizeof info_ops[0]; i++)
        s[n++] = (struct sample){
            (uint16_t)(info_ops[i] | R), {.job_info = j}, 8 + 1 + 1 + 16 + 32 + 2 + 12 + 4 + 7 + 4};
    s[n++] = (struct sample){
        WIRE_OP_ERROR, {.error = {9, wire_bytes_str("lease 5 is stale")}}, 2 + 2 + 16};
    return n;
}

#define SAMPLES_MAX 64

/* Decode buf[0..len) as a payload of op, from an exact-size heap copy (ASan sees overreads). */
static int decode_exact(uint16_t op, const uint8_t *buf, size_t len, union wire_msg *out)
{
    uint8_t *copy = malloc(len > 0 ? len : 1);
    REQUIRE(copy != NULL);
    if (len > 0)
        memcpy(copy, buf, len);
    int rc = wire_decode(op, len > 0 ? copy : NULL, len, out);
    /* Decoded views point into copy: re-encode before freeing it, so callers get bytes. */
    if (rc == 0) {
        struct wire_buf again;
        wire_buf_init(&again, WIRE_FRAME_SIZE_LIMIT);
        int erc = wire_encode(&again, op, 1, out);
        CHECK_EQ(erc, 0);
        CHECK_EQ(again.len, WIRE_HEADER_SIZE + len);
        if (erc == 0 && again.len == WIRE_HEADER_SIZE + len)
            CHECK(memcmp(again.data + WIRE_HEADER_SIZE, buf, len) == 0);
        wire_buf_free(&again);
        wire_msg_free(op, out);
    }
    free(copy);
    return rc;
}

static void test_round_trip_every_message(void)
{
    struct sample s[SAMPLES_MAX];
    size_t n = build_reply_samples(s, build_samples(s));
    size_t ops_seen = 0;
    for (size_t i = 0; i < n; i++) {
        struct wire_buf b;
        wire_buf_init(&b, WIRE_FRAME_SIZE_MAX_DEFAULT);
        REQUIRE(wire_encode(&b, s[i].op, 1000 + i, &s[i].msg) == 0);
        if (b.len != WIRE_HEADER_SIZE + s[i].payload_size)
            fprintf(stderr, "op 0x%04x: %zu bytes, PROTOCOL.md says %zu\n", s[i].op,
                    b.len - WIRE_HEADER_SIZE, s[i].payload_size);
        CHECK_EQ(b.len, WIRE_HEADER_SIZE + s[i].payload_size);
        struct wire_header h;
        REQUIRE(wire_header_decode(b.data, b.len, WIRE_FRAME_SIZE_MAX_DEFAULT, &h) == 0);
        CHECK_EQ(h.frame_size, b.len);
        CHECK_EQ(h.opcode, s[i].op);
        CHECK_EQ(h.flags, 0);
        CHECK_EQ(h.request_id, 1000 + i);
        union wire_msg m;
        CHECK_EQ(decode_exact(h.opcode, b.data + WIRE_HEADER_SIZE, b.len - WIRE_HEADER_SIZE, &m),
                 0);
        CHECK(wire_op_known(s[i].op));
        CHECK(wire_op_name(s[i].op) != NULL);
        wire_buf_free(&b);
    }
    /* Every opcode the codec knows has a sample above. */
    for (uint32_t op = 0; op <= 0xFFFF; op++) {
        if (!wire_op_known((uint16_t)op))
            continue;
        bool found = false;
        for (size_t i = 0; i < n; i++)
            found = found || s[i].op == op;
        if (!found)
            fprintf(stderr, "no sample for op 0x%04x\n", op);
        CHECK(found);
        ops_seen++;
    }
    CHECK_EQ(ops_seen, 2 * 24 + 1);
}

/* Version 2 layouts (issue 10): STATS and QUEUES page with a cursor and a limit, their replies
 * carry next_cursor and the new counters, and a job info may say EXPIRED; version 1 keeps its
 * layouts (a v1 peer rejects EXPIRED, and a v1 STATS request has no cursor). */
static void test_version_2_layouts(void)
{
    const uint16_t R = WIRE_OP_REPLY;
    build_arrays();
    struct {
        uint16_t op;
        union wire_msg msg;
        size_t v1_size, v2_size;
    } c[5];
    memset(c, 0, sizeof(c));
    c[0].op = WIRE_OP_STATS;
    c[0].msg.page = (struct wire_page){wire_bytes_str(""), wire_bytes_str("mail"), 100};
    c[0].v1_size = 1;
    c[0].v2_size = 1 + 5 + 4;
    c[1].op = WIRE_OP_QUEUES;
    c[1].msg.page = (struct wire_page){wire_bytes_str(""), wire_bytes_str("m"), 0};
    c[1].v1_size = 0;
    c[1].v2_size = 2 + 4;
    c[2].op = WIRE_OP_STATS | R;
    c[2].msg.stats_reply = (struct wire_stats_reply){
        .server = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}, .queue_count = 2,
        .queues = sample_queue_stats, .next_cursor = wire_bytes_str("q:2")};
    c[2].v1_size = 8 + 4 + 8 * 8 + 4 + (67 + 3) + (67 + 2);
    c[2].v2_size = c[2].v1_size + 4 + 3 * 8 + 2 * 8 + 4;
    c[3].op = WIRE_OP_QUEUES | R;
    c[3].msg.queues_reply = (struct wire_queues_reply){2, sample_queue_entries,
                                                       wire_bytes_str("q-2")};
    c[3].v1_size = 4 + (1 + 4 + 1) + (1 + 3 + 1);
    c[3].v2_size = c[3].v1_size + 4;
    c[4].op = WIRE_OP_STATUS | R;
    c[4].msg.job_info = (struct wire_job_info){.id = 9, .state = WIRE_STATE_EXPIRED,
                                               .queue = wire_bytes_str("q")};
    c[4].v1_size = c[4].v2_size = 8 + 1 + 2 + 16 + 32 + 2 + 4 + 4;
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        for (uint16_t v = 1; v <= 2; v++) {
            struct wire_buf b;
            wire_buf_init(&b, WIRE_FRAME_SIZE_MAX_DEFAULT);
            REQUIRE(wire_encode_v(&b, v, c[i].op, 5, &c[i].msg) == 0);
            CHECK_EQ(b.len - WIRE_HEADER_SIZE, v == 1 ? c[i].v1_size : c[i].v2_size);
            union wire_msg m;
            int rc = wire_decode_v(v, c[i].op, b.data + WIRE_HEADER_SIZE,
                                   b.len - WIRE_HEADER_SIZE, &m);
            if (c[i].op == (WIRE_OP_STATUS | R) && v == 1) {
                CHECK_EQ(rc, SPOOL_E_BAD_REQUEST); /* no EXPIRED in version 1 */
            } else {
                CHECK_EQ(rc, 0);
                if (rc == 0)
                    wire_msg_free(c[i].op, &m);
            }
            /* The other version's bytes do not decode as this one's (lengths differ). */
            if (c[i].v1_size != c[i].v2_size) {
                rc = wire_decode_v(v == 1 ? 2 : 1, c[i].op, b.data + WIRE_HEADER_SIZE,
                                   b.len - WIRE_HEADER_SIZE, &m);
                CHECK(rc != 0);
            }
            wire_buf_free(&b);
        }
    }
    /* Decoded v2 fields come back. */
    struct wire_buf b;
    wire_buf_init(&b, WIRE_FRAME_SIZE_MAX_DEFAULT);
    REQUIRE(wire_encode_v(&b, 2, c[2].op, 5, &c[2].msg) == 0);
    union wire_msg m;
    REQUIRE(wire_decode_v(2, c[2].op, b.data + 16, b.len - 16, &m) == 0);
    CHECK_EQ(m.stats_reply.server.queues, 11);
    CHECK_EQ(m.stats_reply.server.keys_evicted, 14);
    CHECK(wire_bytes_eq(m.stats_reply.next_cursor, "q:2"));
    CHECK_EQ(m.stats_reply.queues[1].expired, 0);
    wire_msg_free(c[2].op, &m);
    wire_buf_free(&b);
}

/* Field-by-field checks of a few decoded messages: a field dropped by both directions would
 * still round-trip, so compare against the values that went in. */
static void test_decoded_fields(void)
{
    struct sample s[SAMPLES_MAX];
    size_t n = build_reply_samples(s, build_samples(s));
    for (size_t i = 0; i < n; i++) {
        struct wire_buf b;
        wire_buf_init(&b, WIRE_FRAME_SIZE_MAX_DEFAULT);
        REQUIRE(wire_encode(&b, s[i].op, 1, &s[i].msg) == 0);
        union wire_msg m;
        REQUIRE(wire_decode(s[i].op, b.data + 16, b.len - 16, &m) == 0);
        const union wire_msg *e = &s[i].msg;
        switch (s[i].op) {
        case WIRE_OP_PUT_BATCH:
            CHECK_EQ(m.put_batch.count, 2);
            CHECK(wire_bytes_eq(m.put_batch.jobs[1].queue, "video.transcode"));
            CHECK_EQ(m.put_batch.jobs[0].priority, 5);
            CHECK_EQ(m.put_batch.jobs[0].delay_ms, 1500);
            CHECK_EQ(m.put_batch.jobs[0].ttr_ms, 30000);
            CHECK_EQ(m.put_batch.jobs[0].max_attempts, 7);
            CHECK_EQ(m.put_batch.jobs[0].ttl_ms, 86400000);
            CHECK_EQ(m.put_batch.jobs[0].flags, WIRE_PUT_MAX_ATTEMPTS);
            CHECK(wire_bytes_eq(m.put_batch.jobs[0].key, "key-1"));
            CHECK(wire_bytes_eq(m.put_batch.jobs[0].body, "the body of a job"));
            break;
        case WIRE_OP_RESERVE:
            CHECK_EQ(m.reserve.count_max, 10);
            CHECK_EQ(m.reserve.timeout_ms, 5000);
            CHECK_EQ(m.reserve.flags, WIRE_RESERVE_DETACH);
            CHECK_EQ(m.reserve.queue_count, 2);
            CHECK(wire_bytes_eq(m.reserve.queues[1], "video"));
            break;
        case WIRE_OP_RELEASE:
            CHECK_EQ(m.release.delay_ms, 7000);
            CHECK_EQ(m.release.priority, 8);
            CHECK_EQ(m.release.lease, 6);
            CHECK(wire_bytes_eq(m.release.reason, "exit 1"));
            break;
        case WIRE_OP_RESERVE | WIRE_OP_REPLY:
            CHECK_EQ(m.reserve_reply.count, e->reserve_reply.count);
            if (m.reserve_reply.count == 2) {
                CHECK_EQ(m.reserve_reply.deliveries[1].id, 8);
                CHECK_EQ(m.reserve_reply.deliveries[1].lease, 0x1122334455667788u);
                CHECK_EQ(m.reserve_reply.deliveries[1].attempt, 2);
                CHECK_EQ(m.reserve_reply.deliveries[1].deadline_ms, 1790000000000u);
                CHECK(wire_bytes_eq(m.reserve_reply.deliveries[1].queue, "b"));
            }
            break;
        case WIRE_OP_PEEK | WIRE_OP_REPLY:
            CHECK_EQ(m.job_info.state, WIRE_STATE_DEAD);
            CHECK_EQ(m.job_info.finished_ms, 4);
            CHECK(wire_bytes_eq(m.job_info.reason, "max_attempts"));
            CHECK(wire_bytes_eq(m.job_info.result, "result!"));
            break;
        case WIRE_OP_STATS | WIRE_OP_REPLY:
            CHECK_EQ(m.stats_reply.server.total_acked, 10);
            CHECK_EQ(m.stats_reply.queues[1].ack_floor, 7);
            CHECK_EQ(m.stats_reply.queues[1].max_attempts, 9);
            CHECK(wire_bytes_eq(m.stats_reply.queues[1].name, "q:2"));
            break;
        case WIRE_OP_ACK_BATCH | WIRE_OP_REPLY:
            CHECK_EQ(m.ack_batch_reply.codes[1], 9);
            CHECK_EQ(wire_error_from_wire(m.ack_batch_reply.codes[1]), SPOOL_E_LEASE_EXPIRED);
            break;
        case WIRE_OP_ERROR:
            CHECK_EQ(m.error.code, 9);
            CHECK(wire_bytes_eq(m.error.message, "lease 5 is stale"));
            break;
        default:
            break;
        }
        wire_msg_free(s[i].op, &m);
        wire_buf_free(&b);
    }
}

/* Every proper prefix of every payload fails to decode, and never reads past its length. */
static void test_truncated_at_every_length(void)
{
    struct sample s[SAMPLES_MAX];
    size_t n = build_reply_samples(s, build_samples(s));
    for (size_t i = 0; i < n; i++) {
        struct wire_buf b;
        wire_buf_init(&b, WIRE_FRAME_SIZE_MAX_DEFAULT);
        REQUIRE(wire_encode(&b, s[i].op, 1, &s[i].msg) == 0);
        size_t payload = b.len - WIRE_HEADER_SIZE;
        for (size_t cut = 0; cut < payload; cut++) {
            union wire_msg m;
            int rc = decode_exact(s[i].op, b.data + WIRE_HEADER_SIZE, cut, &m);
            if (rc != SPOOL_E_BAD_FRAME)
                fprintf(stderr, "op 0x%04x cut %zu: %d\n", s[i].op, cut, rc);
            CHECK_EQ(rc, SPOOL_E_BAD_FRAME);
        }
        /* One byte too many is trailing garbage. */
        uint8_t *longer = malloc(payload + 1);
        REQUIRE(longer != NULL);
        memcpy(longer, b.data + WIRE_HEADER_SIZE, payload);
        longer[payload] = 0;
        union wire_msg m;
        CHECK_EQ(decode_exact(s[i].op, longer, payload + 1, &m), SPOOL_E_BAD_FRAME);
        free(longer);
        /* Headers cut short ask for more bytes. */
        struct wire_header h;
        for (size_t cut = 0; cut < WIRE_HEADER_SIZE; cut++)
            CHECK_EQ(wire_header_decode(b.data, cut, WIRE_FRAME_SIZE_MAX_DEFAULT, &h), -EAGAIN);
        wire_buf_free(&b);
    }
}

static void test_header_limits(void)
{
    uint8_t raw[WIRE_HEADER_SIZE];
    struct wire_header h = {.frame_size = 15, .opcode = WIRE_OP_PUT, .request_id = 9};
    struct wire_header out;
    wire_header_encode(raw, &h);
    CHECK_EQ(raw[0], 15);
    CHECK_EQ(wire_header_decode(raw, sizeof raw, 4096, &out), SPOOL_E_BAD_FRAME);
    CHECK_EQ(out.request_id, 9);
    CHECK_EQ(out.opcode, WIRE_OP_PUT);
    raw[0] = 0;
    CHECK_EQ(wire_header_decode(raw, sizeof raw, 4096, &out), SPOOL_E_BAD_FRAME);
    h.frame_size = 4097;
    wire_header_encode(raw, &h);
    CHECK_EQ(wire_header_decode(raw, sizeof raw, 4096, &out), SPOOL_E_TOO_LARGE);
    CHECK_EQ(out.request_id, 9);
    h.frame_size = 0xFFFFFFFFu;
    wire_header_encode(raw, &h);
    CHECK_EQ(wire_header_decode(raw, sizeof raw, WIRE_FRAME_SIZE_LIMIT, &out), SPOOL_E_TOO_LARGE);
    h.frame_size = 4096;
    wire_header_encode(raw, &h);
    CHECK_EQ(wire_header_decode(raw, sizeof raw, 4096, &out), 0);
    CHECK_EQ(out.frame_size, 4096);
    h.frame_size = 16;
    wire_header_encode(raw, &h);
    CHECK_EQ(wire_header_decode(raw, sizeof raw, 4096, &out), 0);
}

/* A payload for op with its first u32 (a count) replaced and nothing after it. */
static int decode_count_only(uint16_t op, uint32_t count, const uint8_t *prefix, size_t prefix_len)
{
    uint8_t buf[128];
    REQUIRE(prefix_len + 4 <= sizeof buf);
    if (prefix_len > 0)
        memcpy(buf, prefix, prefix_len);
    buf[prefix_len] = (uint8_t)count;
    buf[prefix_len + 1] = (uint8_t)(count >> 8);
    buf[prefix_len + 2] = (uint8_t)(count >> 16);
    buf[prefix_len + 3] = (uint8_t)(count >> 24);
    union wire_msg m;
    return decode_exact(op, buf, prefix_len + 4, &m);
}

static void test_oversized_lengths_and_counts(void)
{
    /* Counts above the limit: TOO_LARGE; within it but beyond the bytes: BAD_FRAME (nothing
     * allocated for them: ASan/LSan would show a leak or a huge allocation). */
    CHECK_EQ(decode_count_only(WIRE_OP_PUT_BATCH, 0xFFFFFFFFu, NULL, 0), SPOOL_E_TOO_LARGE);
    CHECK_EQ(decode_count_only(WIRE_OP_PUT_BATCH, WIRE_BATCH_COUNT_MAX + 1, NULL, 0),
             SPOOL_E_TOO_LARGE);
    CHECK_EQ(decode_count_only(WIRE_OP_PUT_BATCH, WIRE_BATCH_COUNT_MAX, NULL, 0),
             SPOOL_E_BAD_FRAME);
    CHECK_EQ(decode_count_only(WIRE_OP_PUT_BATCH, 0, NULL, 0), SPOOL_E_BAD_REQUEST);
    CHECK_EQ(decode_count_only(WIRE_OP_ACK_BATCH, 4000, NULL, 0), SPOOL_E_BAD_FRAME);
    CHECK_EQ(decode_count_only(WIRE_OP_RESERVE | WIRE_OP_REPLY, 1000, NULL, 0), SPOOL_E_BAD_FRAME);
    CHECK_EQ(decode_count_only(WIRE_OP_STATS | WIRE_OP_REPLY, 70000, (const uint8_t[76]){0}, 76),
             SPOOL_E_TOO_LARGE);
    /* A blob length running past the end. */
    uint8_t ack[20] = {1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x7F};
    union wire_msg m;
    CHECK_EQ(decode_exact(WIRE_OP_ACK, ack, sizeof ack, &m), SPOOL_E_TOO_LARGE);
    ack[19] = 0;
    ack[18] = 0;
    ack[17] = 0;
    ack[16] = 5; /* 5 bytes announced, 0 present */
    CHECK_EQ(decode_exact(WIRE_OP_ACK, ack, sizeof ack, &m), SPOOL_E_BAD_FRAME);
    /* A result above 64 KiB is refused by the encoder too. */
    static uint8_t big[LIMIT_RESULT_MAX_BYTES + 1];
    struct wire_buf b;
    wire_buf_init(&b, WIRE_FRAME_SIZE_MAX_DEFAULT);
    union wire_msg a = {.ack = {1, 2, wire_bytes_of(big, sizeof big)}};
    CHECK_EQ(wire_encode(&b, WIRE_OP_ACK, 1, &a), SPOOL_E_TOO_LARGE);
    CHECK_EQ(b.len, 0);
    /* A frame above the buffer's frame maximum: refused, nothing appended. */
    union wire_msg p = {.put = job_spec("mail", 1)};
    static uint8_t body[8192];
    p.put.body = wire_bytes_of(body, sizeof body);
    wire_buf_free(&b);
    wire_buf_init(&b, 4096);
    REQUIRE(wire_encode(&b, WIRE_OP_PING, 1, NULL) == 0);
    CHECK_EQ(wire_encode(&b, WIRE_OP_PUT, 2, &p), SPOOL_E_TOO_LARGE);
    CHECK_EQ(b.len, WIRE_HEADER_SIZE);
    wire_buf_free(&b);
}

static void test_unknown_opcodes(void)
{
    uint16_t unknown[] = {0x0000, 0x0003, 0x000F, 0x0027, 0x7FFF, 0x8000, 0x8003, 0xFFFE};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        union wire_msg m;
        uint8_t payload[8] = {0};
        CHECK(!wire_op_known(unknown[i]));
        CHECK_EQ(wire_decode(unknown[i], payload, sizeof payload, &m), SPOOL_E_UNKNOWN_OP);
        struct wire_buf b;
        wire_buf_init(&b, 4096);
        CHECK_EQ(wire_encode(&b, unknown[i], 1, &m), SPOOL_E_UNKNOWN_OP);
        CHECK_EQ(b.len, 0);
        wire_buf_free(&b);
    }
    CHECK(wire_op_name(0x0003) == NULL);
    CHECK(strcmp(wire_op_name(WIRE_OP_ERROR), "ERROR") == 0);
    CHECK(strcmp(wire_op_name(WIRE_OP_PUT | WIRE_OP_REPLY), "PUT") == 0);
}

static void test_invalid_fields(void)
{
    union wire_msg m;
    struct wire_buf b;
    wire_buf_init(&b, 4096);
    /* Bad magic. */
    union wire_msg hello = {.hello = {0x12345678, 1, 1, {0}, {0}}};
    REQUIRE(wire_encode(&b, WIRE_OP_HELLO, 1, &hello) == 0);
    CHECK_EQ(decode_exact(WIRE_OP_HELLO, b.data + 16, b.len - 16, &m), SPOOL_E_BAD_FRAME);
    b.len = 0;
    /* Queue names: charset, empty, 201 bytes (the encoder refuses above 200). */
    const char *bad_names[] = {"", "has space", "slash/", "nul\x01", "caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        union wire_msg k = {.kick = {wire_bytes_str(bad_names[i]), 1}};
        REQUIRE(wire_encode(&b, WIRE_OP_KICK, 1, &k) == 0);
        CHECK_EQ(decode_exact(WIRE_OP_KICK, b.data + 16, b.len - 16, &m), SPOOL_E_BAD_REQUEST);
        b.len = 0;
    }
    char long_name[202];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[201] = 0;
    union wire_msg k = {.kick = {wire_bytes_str(long_name), 1}};
    CHECK_EQ(wire_encode(&b, WIRE_OP_KICK, 1, &k), SPOOL_E_BAD_REQUEST);
    long_name[200] = 0;
    k.kick.queue = wire_bytes_str(long_name);
    REQUIRE(wire_encode(&b, WIRE_OP_KICK, 1, &k) == 0);
    CHECK_EQ(decode_exact(WIRE_OP_KICK, b.data + 16, b.len - 16, &m), 0);
    /* ... and a hand-made 201-byte name on the wire. */
    uint8_t raw[1 + 201 + 4] = {201};
    memset(raw + 1, 'a', 201);
    CHECK_EQ(decode_exact(WIRE_OP_KICK, raw, sizeof raw, &m), SPOOL_E_BAD_REQUEST);
    /* A name of 201..255 bytes is a bad field (BAD_REQUEST, as PROTOCOL.md says), not a size
     * limit, in a PUT and in each job of a PUT_BATCH too; one cut short is a bad frame. */
    for (uint32_t len = 201; len <= 255; len += 54) {
        char name[256];
        memset(name, 'q', len);
        name[len] = 0;
        union wire_msg put = {.put = {.queue = {(const uint8_t *)name, len}}};
        struct wire_buf pb;
        wire_buf_init(&pb, WIRE_FRAME_SIZE_MAX_DEFAULT);
        CHECK_EQ(wire_encode(&pb, WIRE_OP_PUT, 1, &put), SPOOL_E_BAD_REQUEST);
        uint8_t frame[1 + 255 + 64] = {0};
        frame[0] = (uint8_t)len;
        memset(frame + 1, 'q', len);
        size_t frame_len = 1 + len + 35 - 1; /* the rest of the fixed part, empty key, body */
        CHECK_EQ(decode_exact(WIRE_OP_PUT, frame, frame_len, &m), SPOOL_E_BAD_REQUEST);
        CHECK_EQ(decode_exact(WIRE_OP_PUT, frame, len, &m), SPOOL_E_BAD_FRAME);
        wire_buf_free(&pb);
    }
    b.len = 0;
    /* Unknown flag bits, kick count 0, bad peek state. */
    union wire_msg r = {.release = {1, 2, 0, 0x80, 0, {0}}};
    REQUIRE(wire_encode(&b, WIRE_OP_RELEASE, 1, &r) == 0);
    CHECK_EQ(decode_exact(WIRE_OP_RELEASE, b.data + 16, b.len - 16, &m), SPOOL_E_BAD_REQUEST);
    b.len = 0;
    k.kick = (struct wire_kick){wire_bytes_str("q"), 0};
    REQUIRE(wire_encode(&b, WIRE_OP_KICK, 1, &k) == 0);
    CHECK_EQ(decode_exact(WIRE_OP_KICK, b.data + 16, b.len - 16, &m), SPOOL_E_BAD_REQUEST);
    b.len = 0;
    union wire_msg pn = {.peek_next = {wire_bytes_str("q"), WIRE_STATE_DONE}};
    REQUIRE(wire_encode(&b, WIRE_OP_PEEK_NEXT, 1, &pn) == 0);
    CHECK_EQ(decode_exact(WIRE_OP_PEEK_NEXT, b.data + 16, b.len - 16, &m), SPOOL_E_BAD_REQUEST);
    b.len = 0;
    /* Reserve: zero queues and too many are refused by the encoder. */
    union wire_msg rs = {.reserve = {.count_max = 1, .queue_count = 0}};
    CHECK_EQ(wire_encode(&b, WIRE_OP_RESERVE, 1, &rs), SPOOL_E_INVALID_ARGUMENT);
    rs.reserve.queue_count = LIMIT_RESERVE_MAX_QUEUES + 1;
    CHECK_EQ(wire_encode(&b, WIRE_OP_RESERVE, 1, &rs), SPOOL_E_TOO_LARGE);
    CHECK_EQ(b.len, 0);
    /* Jobs per reserve: the limit itself decodes, one more is TOO_LARGE from the decoder (the
     * queue below asserts it, it no longer clamps). count_max is the payload's first u32. */
    rs.reserve = (struct wire_reserve){.count_max = LIMIT_RESERVE_MAX_JOBS, .queue_count = 1};
    rs.reserve.queues[0] = wire_bytes_str("q");
    REQUIRE(wire_encode(&b, WIRE_OP_RESERVE, 1, &rs) == 0);
    CHECK_EQ(decode_exact(WIRE_OP_RESERVE, b.data + 16, b.len - 16, &m), 0);
    CHECK_EQ(m.reserve.count_max, LIMIT_RESERVE_MAX_JOBS);
    uint32_t over = LIMIT_RESERVE_MAX_JOBS + 1;
    b.data[16] = (uint8_t)over;
    b.data[17] = (uint8_t)(over >> 8);
    CHECK_EQ(decode_exact(WIRE_OP_RESERVE, b.data + 16, b.len - 16, &m), SPOOL_E_TOO_LARGE);
    rs.reserve.count_max = over;
    b.len = 0;
    CHECK_EQ(wire_encode(&b, WIRE_OP_RESERVE, 1, &rs), SPOOL_E_TOO_LARGE);
    wire_buf_free(&b);
}

/* The exact bytes of the example in docs/PROTOCOL.md. */
static void test_protocol_md_example(void)
{
    static const uint8_t hello[] = {0x1C, 0, 0,    0,    0x01, 0,    0, 0, 1, 0, 0, 0, 0, 0,
                                    0,    0, 0x53, 0x50, 0x4F, 0x4C, 1, 0, 1, 0, 0, 0, 0, 0};
    static const uint8_t put[] = {
        0x39, 0,   0,   0,   0x10, 0,  0, 0, 2, 0, 0, 0, 0, 0, 0, 0, /* header */
        4,    'm', 'a', 'i', 'l',                                    /* queue */
        0,    0,   0,   0,   0,                                      /* flags, priority */
        0,    0,   0,   0,   0,    0,  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* delay, ttr, max_attempts */
        0,    0,   0,   0,   0,    0,  0, 0, 0,                      /* ttl, key */
        2,    0,   0,   0,   'h',  'i'};                             /* body */
    static const uint8_t reply[] = {0x1A, 0, 0, 0, 0x10, 0x80, 0, 0, 2, 0, 0, 0, 0,
                                    0,    0, 0, 2, 7,    0,    0, 0, 0, 0, 0, 0, 0};
    struct wire_buf b;
    wire_buf_init(&b, 4096);
    union wire_msg m = {.hello = {WIRE_MAGIC, 1, 1, wire_bytes_str(""), wire_bytes_str("")}};
    REQUIRE(wire_encode(&b, WIRE_OP_HELLO, 1, &m) == 0);
    CHECK_EQ(b.len, sizeof hello);
    CHECK(b.len == sizeof hello && memcmp(b.data, hello, sizeof hello) == 0);
    b.len = 0;
    m.put = (struct wire_job_spec){.queue = wire_bytes_str("mail"), .body = wire_bytes_str("hi")};
    REQUIRE(wire_encode(&b, WIRE_OP_PUT, 2, &m) == 0);
    CHECK_EQ(b.len, sizeof put);
    CHECK(b.len == sizeof put && memcmp(b.data, put, sizeof put) == 0);
    b.len = 0;
    m.put_reply = (struct wire_put_reply){WIRE_DURABLE_SYNCED, {7, 0}};
    REQUIRE(wire_encode(&b, WIRE_OP_PUT | WIRE_OP_REPLY, 2, &m) == 0);
    CHECK_EQ(b.len, sizeof reply);
    CHECK(b.len == sizeof reply && memcmp(b.data, reply, sizeof reply) == 0);
    wire_buf_free(&b);
}

static void test_errors(void)
{
    CHECK(strcmp(wire_error_name(SPOOL_E_LEASE_EXPIRED), "LEASE_EXPIRED") == 0);
    CHECK(strcmp(wire_error_name(SPOOL_E_NOT_FOUND), "NOT_FOUND") == 0);
    CHECK(strcmp(wire_error_name(SPOOL_E_QUEUE_FULL), "QUEUE_FULL") == 0);
    CHECK(strcmp(wire_error_name(SPOOL_E_INTERNAL), "INTERNAL") == 0);
    CHECK(strcmp(wire_error_name(SPOOL_E_INVALID_ARGUMENT), "INVALID_ARGUMENT") == 0);
    CHECK(wire_error_name(-ENOENT) == NULL);
    CHECK(strcmp(wire_error_name(SPOOL_E_TOO_MANY_QUEUES), "TOO_MANY_QUEUES") == 0);
    CHECK(wire_error_name(SPOOL_E_TOO_MANY_QUEUES - 1) == NULL);
    for (int code = 1; code <= 16; code++) {
        int e = wire_error_from_wire((uint16_t)code);
        CHECK_EQ(e, -(SPOOL_ERROR_BASE + code));
        CHECK_EQ(wire_error_to_wire(e), code);
        CHECK(wire_error_text(e) != NULL);
    }
    CHECK_EQ(wire_error_from_wire(999), SPOOL_E_INTERNAL);
    CHECK_EQ(wire_error_to_wire(-EIO), 15);
    CHECK_EQ(wire_error_to_wire(SPOOL_E_TIMED_OUT), 15);
    /* An error frame carries the code and the standard sentence when no message is given. */
    struct wire_buf b;
    wire_buf_init(&b, 4096);
    REQUIRE(wire_encode_error(&b, 77, SPOOL_E_NOT_FOUND, NULL) == 0);
    union wire_msg m;
    REQUIRE(wire_decode(WIRE_OP_ERROR, b.data + 16, b.len - 16, &m) == 0);
    CHECK_EQ(m.error.code, 8);
    CHECK(wire_bytes_eq(m.error.message, "no such job or queue"));
    wire_buf_free(&b);
}

/* Bounded random input: never a crash; anything that decodes re-encodes to the same bytes
 * (decode_exact checks), i.e. the encoding is canonical. */
static void test_random_payloads(void)
{
    struct sample s[SAMPLES_MAX];
    size_t n = build_reply_samples(s, build_samples(s));
    uint64_t x = 0x9E3779B97F4A7C15u;
    int decoded = 0;
    for (int iter = 0; iter < 20000; iter++) {
        const struct sample *smp = &s[(size_t)iter % n];
        struct wire_buf b;
        wire_buf_init(&b, WIRE_FRAME_SIZE_MAX_DEFAULT);
        REQUIRE(wire_encode(&b, smp->op, 1, &smp->msg) == 0);
        size_t payload = b.len - WIRE_HEADER_SIZE;
        /* Flip a few bytes of a valid payload: near-valid input reaches deep paths. */
        for (int k = 0; k < 3 && payload > 0; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.data[WIRE_HEADER_SIZE + x % payload] = (uint8_t)(x >> 32);
        }
        union wire_msg m;
        if (decode_exact(smp->op, b.data + WIRE_HEADER_SIZE, payload, &m) == 0)
            decoded++;
        wire_buf_free(&b);
    }
    CHECK(decoded > 0);
}

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static bool bytes_same(struct wire_bytes a, struct wire_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

static bool job_specs_same(const struct wire_job_spec *a, const struct wire_job_spec *b)
{
    return bytes_same(a->queue, b->queue) && a->flags == b->flags &&
           a->priority == b->priority && a->delay_ms == b->delay_ms && a->ttr_ms == b->ttr_ms &&
           a->max_attempts == b->max_attempts && a->ttl_ms == b->ttl_ms &&
           bytes_same(a->key, b->key) && bytes_same(a->body, b->body);
}

/* A random job spec whose bytes live in pool (names are mostly valid, sometimes not). */
static void random_job_spec(uint64_t *x, struct wire_job_spec *j, uint8_t *pool, size_t pool_size)
{
    for (size_t i = 0; i < pool_size; i++)
        pool[i] = (xorshift(x) % 8 == 0) ? (uint8_t)xorshift(x) : (uint8_t)('a' + xorshift(x) % 26);
    uint64_t r = xorshift(x);
    j->queue = wire_bytes_of(pool, r % 4 == 0 ? xorshift(x) % (LIMIT_QUEUE_NAME_MAX_BYTES + 1)
                                              : 1 + xorshift(x) % 12);
    j->flags = (uint8_t)(xorshift(x) % 5);
    j->priority = (uint32_t)xorshift(x);
    j->delay_ms = xorshift(x);
    j->ttr_ms = (uint32_t)xorshift(x);
    j->max_attempts = (uint32_t)xorshift(x);
    j->ttl_ms = xorshift(x);
    j->key = wire_bytes_of(pool + 256, xorshift(x) % 3 == 0 ? xorshift(x) % 256 : 0);
    j->body = wire_bytes_of(pool + 512, xorshift(x) % 300);
}

/*
 * The PUT / PUT_BATCH fast path (job_spec_read) against the generic walk (wire_decode_walk):
 * random frames, then mutated (bytes flipped, cut short, extended), must give the same result
 * code and, when they decode, the same jobs. Every outcome is reached (checked at the end).
 */
static void test_job_spec_fast_path_agrees(void)
{
    enum { JOBS_MAX = 8, POOL_SIZE = 1024 };
    static uint8_t pool[JOBS_MAX][POOL_SIZE];
    uint64_t x = 0xD1B54A32D192ED03u;
    int seen_ok = 0, seen_frame = 0, seen_request = 0, seen_large = 0;
    for (int iter = 0; iter < 30000; iter++) {
        struct wire_job_spec jobs[JOBS_MAX];
        uint32_t count = 1 + (uint32_t)(xorshift(&x) % JOBS_MAX);
        for (uint32_t i = 0; i < count; i++)
            random_job_spec(&x, &jobs[i], pool[i], POOL_SIZE);
        bool batch = xorshift(&x) % 4 != 0;
        uint16_t op = batch ? WIRE_OP_PUT_BATCH : WIRE_OP_PUT;
        union wire_msg msg;
        if (batch)
            msg.put_batch = (struct wire_put_batch){.count = count, .jobs = jobs};
        else
            msg.put = jobs[0];
        struct wire_buf b;
        wire_buf_init(&b, WIRE_FRAME_SIZE_MAX_DEFAULT);
        REQUIRE(wire_encode(&b, op, 1, &msg) == 0);
        REQUIRE(wire_buf_reserve(&b, 8) == 0); /* room to extend the payload below */
        size_t len = b.len - WIRE_HEADER_SIZE;
        uint8_t *payload = b.data + WIRE_HEADER_SIZE;
        uint64_t how = xorshift(&x) % 8;
        for (uint64_t k = 0; how < 4 && k <= how && len > 0; k++)
            payload[xorshift(&x) % len] = (uint8_t)xorshift(&x);
        if (how == 4 || how == 5)
            len = xorshift(&x) % (len + 1);
        if (how == 6)
            len += 1 + xorshift(&x) % 8;
        union wire_msg fast, walk;
        int rc_fast = wire_decode(op, payload, len, &fast);
        int rc_walk = wire_decode_walk(op, payload, len, &walk);
        CHECK_EQ(rc_fast, rc_walk);
        if (rc_fast == 0 && rc_walk == 0) {
            seen_ok++;
            if (batch) {
                CHECK_EQ(fast.put_batch.count, walk.put_batch.count);
                for (uint32_t i = 0; i < fast.put_batch.count && i < walk.put_batch.count; i++)
                    CHECK(job_specs_same(&fast.put_batch.jobs[i], &walk.put_batch.jobs[i]));
            } else {
                CHECK(job_specs_same(&fast.put, &walk.put));
            }
            wire_msg_free(op, &fast);
            wire_msg_free(op, &walk);
        }
        seen_frame += rc_walk == SPOOL_E_BAD_FRAME;
        seen_request += rc_walk == SPOOL_E_BAD_REQUEST;
        seen_large += rc_walk == SPOOL_E_TOO_LARGE;
        wire_buf_free(&b);
    }
    CHECK(seen_ok > 1000);
    CHECK(seen_frame > 100);
    CHECK(seen_request > 100);
    CHECK(seen_large > 10);
}

/* The name table against the charset written out, for every byte, alone and inside a name;
 * and the length bounds. */
static void test_queue_name_bytes(void)
{
    for (int c = 0; c < 256; c++) {
        bool expect = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' || c == '-';
        uint8_t name[3] = {'a', (uint8_t)c, 'b'};
        CHECK_EQ(wire_queue_name_valid(wire_bytes_of(name + 1, 1)), expect);
        CHECK_EQ(wire_queue_name_valid(wire_bytes_of(name, 3)), expect);
    }
    uint8_t long_name[LIMIT_QUEUE_NAME_MAX_BYTES + 1];
    memset(long_name, 'q', sizeof long_name);
    CHECK(wire_queue_name_valid(wire_bytes_of(long_name, LIMIT_QUEUE_NAME_MAX_BYTES)));
    CHECK(!wire_queue_name_valid(wire_bytes_of(long_name, LIMIT_QUEUE_NAME_MAX_BYTES + 1)));
    CHECK(!wire_queue_name_valid(wire_bytes_of(long_name, 0)));
}

int main(void)
{
    RUN_TEST(test_round_trip_every_message);
    RUN_TEST(test_decoded_fields);
    RUN_TEST(test_truncated_at_every_length);
    RUN_TEST(test_header_limits);
    RUN_TEST(test_oversized_lengths_and_counts);
    RUN_TEST(test_unknown_opcodes);
    RUN_TEST(test_version_2_layouts);
    RUN_TEST(test_invalid_fields);
    RUN_TEST(test_protocol_md_example);
    RUN_TEST(test_errors);
    RUN_TEST(test_random_payloads);
    RUN_TEST(test_job_spec_fast_path_agrees);
    RUN_TEST(test_queue_name_bytes);
    return check_exit();
}
