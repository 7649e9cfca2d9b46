/*
 * Compatibility: frames of protocol version 2 (tests/compat/wire-v2, made once by the v2 codec
 * and never regenerated) keep decoding as version 2, with the same field values, and re-encode
 * to the same bytes. Version 2 changed the layouts of STATS and QUEUES (a cursor and a limit;
 * replies with next_cursor and new counters) and added the EXPIRED job state; DELETE_QUEUE
 * is a new opcode. The v1 frames of tests/compat/wire-v1 keep their own test: a server speaks
 * both (docs/PROTOCOL.md, "Versions").
 */
#include <stdio.h>

#include "check.h"
#include "wire_message.h"

static const char *golden_dir;

/* Read a golden frame and decode it as version `version` into *m (free with wire_msg_free);
 * the bytes stay in *buf (decoded views point into them). On success it must re-encode to
 * the same bytes. */
static int load(const char *name, uint16_t version, struct wire_header *h, union wire_msg *m,
                uint8_t **buf)
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
    int rc = wire_decode_v(version, h->opcode, *buf + WIRE_HEADER_SIZE, len - WIRE_HEADER_SIZE, m);
    if (rc == 0) {
        struct wire_buf again;
        wire_buf_init(&again, WIRE_FRAME_SIZE_MAX_DEFAULT);
        CHECK_EQ(wire_encode_v(&again, version, h->opcode, h->request_id, m), 0);
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
    REQUIRE(load("stats", 2, &h, &m, &buf) == 0);
    CHECK_EQ(h.opcode, WIRE_OP_STATS);
    CHECK_EQ(m.page.queue.len, 0);
    CHECK(wire_bytes_eq(m.page.cursor, "mail"));
    CHECK_EQ(m.page.limit, 50);
    free(buf);
    REQUIRE(load("queues", 2, &h, &m, &buf) == 0);
    CHECK(wire_bytes_eq(m.page.cursor, "a.b"));
    CHECK_EQ(m.page.limit, 0);
    free(buf);
    REQUIRE(load("delete_queue", 2, &h, &m, &buf) == 0);
    CHECK(wire_bytes_eq(m.delete_queue.queue, "old:q"));
    CHECK_EQ(m.delete_queue.flags, WIRE_DELETE_QUEUE_FORCE);
    free(buf);
    /* A new opcode: the same bytes in version 1. */
    REQUIRE(load("delete_queue", 1, &h, &m, &buf) == 0);
    free(buf);
    /* Version 1 layouts do not take version 2 bytes. */
    CHECK(load("stats", 1, &h, &m, &buf) != 0);
    free(buf);
}

static void test_replies(void)
{
    struct wire_header h;
    union wire_msg m;
    uint8_t *buf;
    REQUIRE(load("stats_reply", 2, &h, &m, &buf) == 0);
    CHECK_EQ(m.stats_reply.server.uptime_ms, 100);
    CHECK_EQ(m.stats_reply.server.queues, 700);
    CHECK_EQ(m.stats_reply.server.expired, 11);
    CHECK_EQ(m.stats_reply.server.keys, 12);
    CHECK_EQ(m.stats_reply.server.keys_evicted, 13);
    REQUIRE(m.stats_reply.queue_count == 2);
    CHECK(wire_bytes_eq(m.stats_reply.queues[1].name, "q:2"));
    CHECK_EQ(m.stats_reply.queues[0].expired, 10);
    CHECK_EQ(m.stats_reply.queues[1].max_attempts, 19);
    CHECK_EQ(m.stats_reply.queues[1].expired, 20);
    CHECK(wire_bytes_eq(m.stats_reply.next_cursor, "q:2"));
    wire_msg_free(h.opcode, &m);
    free(buf);
    REQUIRE(load("queues_reply", 2, &h, &m, &buf) == 0);
    REQUIRE(m.queues_reply.count == 2);
    CHECK(wire_bytes_eq(m.queues_reply.queues[0].name, "a.c"));
    CHECK_EQ(m.queues_reply.queues[1].flags, WIRE_QUEUE_PAUSED);
    CHECK(wire_bytes_eq(m.queues_reply.next_cursor, "b"));
    wire_msg_free(h.opcode, &m);
    free(buf);
    REQUIRE(load("delete_queue_reply", 2, &h, &m, &buf) == 0);
    CHECK_EQ(m.count_reply.count, 5);
    free(buf);
    REQUIRE(load("job_info_expired", 2, &h, &m, &buf) == 0);
    CHECK_EQ(m.job_info.state, WIRE_STATE_EXPIRED);
    CHECK_EQ(m.job_info.finished_ms, 1700000000500u);
    free(buf);
    /* Version 1 has no EXPIRED state: a version 1 peer is never sent one. */
    CHECK_EQ(load("job_info_expired", 1, &h, &m, &buf), SPOOL_E_BAD_REQUEST);
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
