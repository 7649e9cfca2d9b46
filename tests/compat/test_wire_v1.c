/*
 * Compatibility: frames written by protocol version 1 (the .bin files of tests/compat/wire-v1, made
 * by the v1 codec and never regenerated) must keep decoding, with the same field values, and
 * re-encode to the same bytes. A layout change that silently reinterprets old bytes fails
 * here; a deliberate one needs a new protocol version and a new golden directory, with this
 * one kept (docs/PROTOCOL.md, "Versions").
 */
#include <stdio.h>

#include "check.h"
#include "wire_message.h"

static const char *golden_dir;

/* Read a golden frame; decode it into *m (caller frees with wire_msg_free); the file bytes
 * stay in *buf (caller frees) since decoded views point into them. */
static int load(const char *name, struct wire_header *h, union wire_msg *m, uint8_t **buf)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.bin", golden_dir, name);
    FILE *f = fopen(path, "rb");
    REQUIRE(f != NULL);
    static uint8_t data[65536];
    size_t len = fread(data, 1, sizeof data, f);
    fclose(f);
    *buf = malloc(len);
    REQUIRE(*buf != NULL);
    memcpy(*buf, data, len);
    REQUIRE(wire_header_decode(*buf, len, WIRE_FRAME_SIZE_MAX_DEFAULT, h) == 0);
    REQUIRE(h->frame_size == len);
    int rc = wire_decode(h->opcode, *buf + WIRE_HEADER_SIZE, len - WIRE_HEADER_SIZE, m);
    if (rc == 0) {
        struct wire_buf again;
        wire_buf_init(&again, WIRE_FRAME_SIZE_MAX_DEFAULT);
        CHECK_EQ(wire_encode(&again, h->opcode, h->request_id, m), 0);
        CHECK(again.len == len && memcmp(again.data, *buf, len) == 0);
        wire_buf_free(&again);
    }
    return rc;
}

static void test_requests(void)
{
    struct wire_header h;
    union wire_msg m;
    uint8_t *buf;
    REQUIRE(load("hello", &h, &m, &buf) == 0);
    CHECK_EQ(h.opcode, WIRE_OP_HELLO);
    CHECK_EQ(m.hello.magic, WIRE_MAGIC);
    CHECK(wire_bytes_eq(m.hello.client_name, "cli"));
    free(buf);
    REQUIRE(load("put", &h, &m, &buf) == 0);
    CHECK_EQ(h.request_id, 7);
    CHECK(wire_bytes_eq(m.put.queue, "mail"));
    CHECK_EQ(m.put.flags, 3);
    CHECK_EQ(m.put.priority, 5);
    CHECK_EQ(m.put.delay_ms, 100);
    CHECK_EQ(m.put.ttr_ms, 1000);
    CHECK_EQ(m.put.max_attempts, 3);
    CHECK_EQ(m.put.ttl_ms, 9);
    CHECK(wire_bytes_eq(m.put.key, "k"));
    CHECK(wire_bytes_eq(m.put.body, "body"));
    free(buf);
    REQUIRE(load("put_batch", &h, &m, &buf) == 0);
    CHECK_EQ(m.put_batch.count, 2);
    wire_msg_free(h.opcode, &m);
    free(buf);
    REQUIRE(load("reserve", &h, &m, &buf) == 0);
    CHECK_EQ(m.reserve.count_max, 4);
    CHECK_EQ(m.reserve.flags, WIRE_RESERVE_DETACH);
    CHECK(wire_bytes_eq(m.reserve.queues[1], "b.c"));
    free(buf);
    REQUIRE(load("release", &h, &m, &buf) == 0);
    CHECK_EQ(m.release.delay_ms, 3);
    CHECK_EQ(m.release.priority, 4);
    CHECK(wire_bytes_eq(m.release.reason, "exit 1"));
    free(buf);
    const char *others[] = {"ack_batch", "bury", "queue_config"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        CHECK_EQ(load(others[i], &h, &m, &buf), 0);
        wire_msg_free(h.opcode, &m);
        free(buf);
    }
}

static void test_replies(void)
{
    struct wire_header h;
    union wire_msg m;
    uint8_t *buf;
    REQUIRE(load("reserve_reply", &h, &m, &buf) == 0);
    CHECK_EQ(h.opcode, WIRE_OP_RESERVE | WIRE_OP_REPLY);
    REQUIRE(m.reserve_reply.count == 2);
    CHECK_EQ(m.reserve_reply.deliveries[1].lease, 7);
    CHECK_EQ(m.reserve_reply.deliveries[1].deadline_ms, 10);
    CHECK(wire_bytes_eq(m.reserve_reply.deliveries[1].body, "yy"));
    wire_msg_free(h.opcode, &m);
    free(buf);
    REQUIRE(load("job_info", &h, &m, &buf) == 0);
    CHECK_EQ(m.job_info.state, WIRE_STATE_DONE);
    CHECK(wire_bytes_eq(m.job_info.result, "ok"));
    free(buf);
    REQUIRE(load("error", &h, &m, &buf) == 0);
    CHECK_EQ(wire_error_from_wire(m.error.code), SPOOL_E_LEASE_EXPIRED);
    free(buf);
    REQUIRE(load("stats_reply", &h, &m, &buf) == 0);
    CHECK_EQ(m.stats_reply.queue_count, 1);
    wire_msg_free(h.opcode, &m);
    free(buf);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s GOLDEN_DIR\n", argv[0]);
        return 2;
    }
    golden_dir = argv[1];
    RUN_TEST(test_requests);
    RUN_TEST(test_replies);
    return check_exit();
}
