/* Job records: round trips of every type, a pinned version-1 sample, and rejection of
 * truncated, extended, mis-versioned and garbage input (the decoder spool-log relies on). */
#include "check.h"
#include "record.h"

static uint8_t buf[4096];

static void test_put_roundtrip(void)
{
    struct record_put put = {
        .id = 42, .priority = 7, .max_attempts = 3, .ttr_ms = 30000, .created_ms = 1000,
        .run_at_ms = 5000, .expires_at_ms = 90000, .queue = "emails.high", .queue_len = 11,
        .key = "k-1", .key_len = 3, .body = "hello", .body_len = 5,
    };
    size_t n = record_put_encode(&put, buf);
    CHECK_EQ(n, record_put_size(&put));
    CHECK_EQ(n, RECORD_PUT_FIXED + 11 + 3 + 5);
    struct record r;
    REQUIRE(record_decode(RECORD_PUT, buf, n, &r) == 0);
    CHECK_EQ(r.id, 42);
    CHECK_EQ(r.u.put.priority, 7);
    CHECK_EQ(r.u.put.max_attempts, 3);
    CHECK_EQ(r.u.put.ttr_ms, 30000);
    CHECK_EQ(r.u.put.created_ms, 1000);
    CHECK_EQ(r.u.put.run_at_ms, 5000);
    CHECK_EQ(r.u.put.expires_at_ms, 90000);
    CHECK(r.u.put.queue_len == 11 && memcmp(r.u.put.queue, "emails.high", 11) == 0);
    CHECK(r.u.put.key_len == 3 && memcmp(r.u.put.key, "k-1", 3) == 0);
    CHECK(r.u.put.body_len == 5 && memcmp(r.u.put.body, "hello", 5) == 0);
    /* Every truncation and a one-byte extension are rejected. */
    for (size_t len = 0; len < n; len++)
        CHECK_EQ(record_decode(RECORD_PUT, buf, len, &r), RECORD_EINVAL);
    buf[n] = 0;
    CHECK_EQ(record_decode(RECORD_PUT, buf, n + 1, &r), RECORD_EINVAL);
    /* A bad queue name inside a well-formed record is rejected. */
    buf[RECORD_PUT_FIXED] = ' ';
    CHECK_EQ(record_decode(RECORD_PUT, buf, n, &r), RECORD_EINVAL);
}

static void test_small_records_roundtrip(void)
{
    struct record r;
    size_t n = record_lease_encode(9, 4, buf);
    REQUIRE(record_decode(RECORD_LEASE, buf, n, &r) == 0);
    CHECK(r.id == 9 && r.u.lease.attempt == 4);
    n = record_ack_encode(9, 1790000000123, "ok!", 3, buf);
    REQUIRE(record_decode(RECORD_ACK, buf, n, &r) == 0);
    CHECK(r.id == 9 && r.u.ack.result_len == 3 && memcmp(r.u.ack.result, "ok!", 3) == 0);
    CHECK(r.version == RECORD_ACK_VERSION && r.u.ack.settled_ms == 1790000000123);
    n = record_ack_encode(10, 5, NULL, 0, buf);
    REQUIRE(record_decode(RECORD_ACK, buf, n, &r) == 0);
    CHECK(r.id == 10 && r.u.ack.result_len == 0 && r.u.ack.settled_ms == 5);
    n = record_release_encode(11, 99, 123456, buf);
    REQUIRE(record_decode(RECORD_RELEASE, buf, n, &r) == 0);
    CHECK(r.id == 11 && r.u.release.priority == 99 && r.u.release.run_at_ms == 123456);
    n = record_touch_encode(12, 777, buf);
    REQUIRE(record_decode(RECORD_TOUCH, buf, n, &r) == 0);
    CHECK(r.id == 12 && r.u.touch.deadline_ms == 777);
    n = record_bury_encode(13, 77, "boom", 4, buf);
    REQUIRE(record_decode(RECORD_BURY, buf, n, &r) == 0);
    CHECK(r.id == 13 && r.u.bury.reason_len == 4 && memcmp(r.u.bury.reason, "boom", 4) == 0);
    CHECK(r.version == RECORD_BURY_VERSION && r.u.bury.settled_ms == 77);
    n = record_kick_encode(14, buf);
    REQUIRE(record_decode(RECORD_KICK, buf, n, &r) == 0);
    CHECK_EQ(r.id, 14);
    n = record_delete_encode(15, RECORD_DELETE_TTL, buf);
    REQUIRE(record_decode(RECORD_DELETE, buf, n, &r) == 0);
    CHECK(r.id == 15 && r.u.del.cause == RECORD_DELETE_TTL);
    struct record_meta meta = {.name = "q", .name_len = 1, .paused = true,
                               .default_max_attempts = 5, .default_ttr_ms = 100,
                               .max_jobs = 10, .max_bytes = 1000};
    n = record_meta_encode(&meta, buf);
    REQUIRE(record_decode(RECORD_QUEUE_META, buf, n, &r) == 0);
    CHECK(r.u.meta.paused && r.u.meta.default_max_attempts == 5);
    CHECK(r.u.meta.default_ttr_ms == 100 && r.u.meta.max_jobs == 10);
    CHECK(r.u.meta.max_bytes == 1000 && r.u.meta.name_len == 1);
    n = record_purge_encode("abc", 3, buf);
    REQUIRE(record_decode(RECORD_PURGE, buf, n, &r) == 0);
    CHECK(r.u.purge.name_len == 3 && memcmp(r.u.purge.name, "abc", 3) == 0);
}

/* Each encoder's output, truncated or extended by one byte, is rejected. */
static void test_every_type_rejects_wrong_length(void)
{
    static uint8_t out[256];
    struct record r;
    struct record_meta meta = {.name = "q", .name_len = 1};
    struct {
        uint8_t type;
        size_t len;
    } cases[9];
    size_t count = 0;
    for (uint8_t type = RECORD_LEASE; type <= RECORD_PURGE; type++) {
        size_t n = 0;
        switch (type) {
        case RECORD_LEASE: n = record_lease_encode(1, 1, out); break;
        case RECORD_ACK: n = record_ack_encode(1, 2, "r", 1, out); break;
        case RECORD_RELEASE: n = record_release_encode(1, 0, 0, out); break;
        case RECORD_TOUCH: n = record_touch_encode(1, 0, out); break;
        case RECORD_BURY: n = record_bury_encode(1, 2, "x", 1, out); break;
        case RECORD_KICK: n = record_kick_encode(1, out); break;
        case RECORD_DELETE: n = record_delete_encode(1, 0, out); break;
        case RECORD_QUEUE_META: n = record_meta_encode(&meta, out); break;
        default: n = record_purge_encode("q", 1, out); break;
        }
        cases[count].type = type;
        cases[count].len = n;
        count++;
        REQUIRE(record_decode(type, out, n, &r) == 0);
        for (size_t len = 0; len < n; len++)
            CHECK_EQ(record_decode(type, out, len, &r), RECORD_EINVAL);
        out[n] = 0;
        CHECK_EQ(record_decode(type, out, n + 1, &r), RECORD_EINVAL);
        /* A future version is refused, not misread; so is version 0. */
        CHECK_EQ(out[0], record_version(type));
        out[0] = (uint8_t)(record_version(type) + 1);
        CHECK_EQ(record_decode(type, out, n, &r), RECORD_EINVAL);
        out[0] = 0;
        CHECK_EQ(record_decode(type, out, n, &r), RECORD_EINVAL);
    }
    CHECK_EQ(count, 9);
    CHECK_EQ(cases[0].len, RECORD_LEASE_SIZE);
}

static void test_garbage_and_unknown_types(void)
{
    struct record r;
    uint8_t junk[128];
    uint32_t x = 12345;
    int accepted = 0;
    for (int round = 0; round < 2000; round++) {
        for (size_t i = 0; i < sizeof(junk); i++) {
            x = x * 1103515245u + 12345u;
            junk[i] = (uint8_t)(x >> 16);
        }
        junk[0] = RECORD_VERSION;
        uint8_t type = (uint8_t)(1 + round % 10);
        size_t len = (size_t)(x % sizeof(junk));
        if (record_decode(type, junk, len, &r) == 0)
            accepted++;
    }
    /* Random bytes almost never form a record whose lengths all agree and padding is zero. */
    CHECK(accepted < 20);
    uint8_t ok[16];
    size_t n = record_kick_encode(1, ok);
    CHECK_EQ(record_decode(0, ok, n, &r), RECORD_EINVAL);
    CHECK_EQ(record_decode(11, ok, n, &r), RECORD_EINVAL);
    CHECK_EQ(record_decode(255, ok, n, &r), RECORD_EINVAL);
    /* Job id 0 is never issued. */
    n = record_kick_encode(0, ok);
    CHECK_EQ(record_decode(RECORD_KICK, ok, n, &r), RECORD_EINVAL);
    CHECK(strcmp(record_type_name(RECORD_PUT), "PUT") == 0);
    CHECK(strcmp(record_type_name(200), "UNKNOWN") == 0);
}

/* The version-1 bytes are a contract: this sample was produced by the first encoder and must
 * keep decoding to the same fields in every later version. */
static void test_version1_sample(void)
{
    static const uint8_t sample[] = {
        0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, /* v1, queue_len 1, key_len 0 */
        0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* id 5 */
        0x02, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, /* priority 2, max_attempts 10 */
        0x30, 0x75, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* ttr 30000 */
        0xe8, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* created 1000 */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* run_at 0 */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* expires 0 */
        0x02, 0x00, 0x00, 0x00, 'q', 'h', 'i',          /* body_len 2, "q", "hi" */
    };
    struct record r;
    REQUIRE(record_decode(RECORD_PUT, sample, sizeof(sample), &r) == 0);
    CHECK_EQ(r.id, 5);
    CHECK_EQ(r.u.put.priority, 2);
    CHECK_EQ(r.u.put.max_attempts, 10);
    CHECK_EQ(r.u.put.ttr_ms, 30000);
    CHECK_EQ(r.u.put.created_ms, 1000);
    CHECK(r.u.put.key == NULL && r.u.put.key_len == 0);
    CHECK(r.u.put.body_len == 2 && memcmp(r.u.put.body, "hi", 2) == 0);
    struct record_put put = r.u.put;
    uint8_t again[sizeof(sample)];
    CHECK_EQ(record_put_encode(&put, again), sizeof(sample));
    CHECK(memcmp(again, sample, sizeof(sample)) == 0);
}

/* ACK and BURY version 1, as the first encoder wrote them (no settle time): they must decode
 * forever, with settled_ms unknown (0) and version 1 reported so replay knows. */
static void test_version1_ack_bury_samples(void)
{
    static const uint8_t ack[] = {
        0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, /* v1, result_len 2 */
        0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* id 7 */
        'o',  'k',                                      /* result */
    };
    static const uint8_t bury[] = {
        0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, /* v1, reason_len 3 */
        0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* id 8 */
        'b',  'a',  'd',                                /* reason */
    };
    struct record r;
    REQUIRE(record_decode(RECORD_ACK, ack, sizeof(ack), &r) == 0);
    CHECK(r.id == 7 && r.version == 1 && r.u.ack.settled_ms == 0);
    CHECK(r.u.ack.result_len == 2 && memcmp(r.u.ack.result, "ok", 2) == 0);
    REQUIRE(record_decode(RECORD_BURY, bury, sizeof(bury), &r) == 0);
    CHECK(r.id == 8 && r.version == 1 && r.u.bury.settled_ms == 0);
    CHECK(r.u.bury.reason_len == 3 && memcmp(r.u.bury.reason, "bad", 3) == 0);
    /* Version 1 lengths under a version-2 byte are refused (the settle time is missing). */
    uint8_t relabeled[sizeof(ack)];
    memcpy(relabeled, ack, sizeof(ack));
    relabeled[0] = 2;
    CHECK_EQ(record_decode(RECORD_ACK, relabeled, sizeof(relabeled), &r), RECORD_EINVAL);
}

/* ACK and BURY version 2 (settled_ms at offset 16), pinned byte for byte: the encoder writes
 * exactly these bytes and the decoder reads them back. */
static void test_version2_ack_bury_samples(void)
{
    static const uint8_t ack[] = {
        0x02, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, /* v2, result_len 2 */
        0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* id 7 */
        0x7b, 0x6c, 0x50, 0xc4, 0xa0, 0x01, 0x00, 0x00, /* settled 1790000000123 */
        'o',  'k',                                      /* result */
    };
    static const uint8_t bury[] = {
        0x02, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, /* v2, reason_len 3 */
        0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* id 8 */
        0x7b, 0x6c, 0x50, 0xc4, 0xa0, 0x01, 0x00, 0x00, /* settled 1790000000123 */
        'b',  'a',  'd',                                /* reason */
    };
    struct record r;
    REQUIRE(record_decode(RECORD_ACK, ack, sizeof(ack), &r) == 0);
    CHECK(r.id == 7 && r.version == 2 && r.u.ack.settled_ms == 1790000000123);
    CHECK(r.u.ack.result_len == 2 && memcmp(r.u.ack.result, "ok", 2) == 0);
    REQUIRE(record_decode(RECORD_BURY, bury, sizeof(bury), &r) == 0);
    CHECK(r.id == 8 && r.version == 2 && r.u.bury.settled_ms == 1790000000123);
    CHECK(r.u.bury.reason_len == 3 && memcmp(r.u.bury.reason, "bad", 3) == 0);
    uint8_t again[64];
    CHECK_EQ(record_ack_encode(7, 1790000000123, "ok", 2, again), sizeof(ack));
    CHECK(memcmp(again, ack, sizeof(ack)) == 0);
    CHECK_EQ(record_bury_encode(8, 1790000000123, "bad", 3, again), sizeof(bury));
    CHECK(memcmp(again, bury, sizeof(bury)) == 0);
}

static void test_queue_names(void)
{
    CHECK(record_queue_name_valid("a", 1));
    CHECK(record_queue_name_valid("A-z_0.9:x", 9));
    CHECK(!record_queue_name_valid("", 0));
    CHECK(!record_queue_name_valid("a b", 3));
    CHECK(!record_queue_name_valid("a\\b", 3));
    CHECK(record_queue_name_valid("a+/;.$_()", 9)); /* beanstalkd's extra tube name bytes */
    char name[LIMIT_QUEUE_NAME_MAX_BYTES + 1];
    memset(name, 'x', sizeof(name));
    CHECK(record_queue_name_valid(name, LIMIT_QUEUE_NAME_MAX_BYTES));
    CHECK(!record_queue_name_valid(name, LIMIT_QUEUE_NAME_MAX_BYTES + 1));
    /* Every byte value, one at a time and at the end of a valid name: exactly the set. */
    for (int c = 0; c < 256; c++) {
        bool want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == ':' || c == '-' || c == '+' || c == '/' ||
                    c == ';' || c == '$' || c == '(' || c == ')';
        char one = (char)c;
        char tail[3] = {'q', 'q', (char)c};
        CHECK_EQ(record_queue_name_valid(&one, 1), want);
        CHECK_EQ(record_queue_name_valid(tail, 3), want);
    }
}

/* QUEUE_META version 1 (no TIMED flag) still decodes; version 1 with bit 1 set is refused;
 * version 2 pins pause-tube's TIMED flag byte for byte. */
static void test_queue_meta_versions(void)
{
    static const uint8_t v1[] = {
        0x01, 0x01, 0x01, 0x00, 0x05, 0x00, 0x00, 0x00, /* v1, paused, name_len 1, attempts 5 */
        0x64, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* default_ttr_ms 100 */
        0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* max_jobs 10 */
        0xe8, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* max_bytes 1000 */
        'q',
    };
    struct record r;
    REQUIRE(record_decode(RECORD_QUEUE_META, v1, sizeof(v1), &r) == 0);
    CHECK(r.version == 1 && r.u.meta.paused && !r.u.meta.pause_timed);
    CHECK(r.u.meta.default_max_attempts == 5 && r.u.meta.default_ttr_ms == 100);
    CHECK(r.u.meta.max_jobs == 10 && r.u.meta.max_bytes == 1000 && r.u.meta.name_len == 1);
    uint8_t bad[sizeof(v1)];
    memcpy(bad, v1, sizeof(v1));
    bad[1] = RECORD_META_PAUSED | RECORD_META_TIMED; /* bit 1 did not exist in version 1 */
    CHECK_EQ(record_decode(RECORD_QUEUE_META, bad, sizeof(bad), &r), RECORD_EINVAL);
    struct record_meta meta = {.name = "q", .name_len = 1, .paused = true, .pause_timed = true,
                               .default_max_attempts = 5, .default_ttr_ms = 100,
                               .max_jobs = 10, .max_bytes = 1000};
    uint8_t out[64];
    size_t n = record_meta_encode(&meta, out);
    REQUIRE(n == sizeof(v1));
    CHECK(out[0] == 2 && out[1] == (RECORD_META_PAUSED | RECORD_META_TIMED));
    CHECK(memcmp(out + 2, v1 + 2, sizeof(v1) - 2) == 0);
    REQUIRE(record_decode(RECORD_QUEUE_META, out, n, &r) == 0);
    CHECK(r.version == 2 && r.u.meta.paused && r.u.meta.pause_timed);
    out[1] = 0x04; /* an unknown flag is refused at version 2 too */
    CHECK_EQ(record_decode(RECORD_QUEUE_META, out, n, &r), RECORD_EINVAL);
}

/* RELOCATE: a round trip of a dead job's copy, its body reachable through record_body, the
 * bytes of a ready job pinned (the layout is a contract), and rejection of bad states,
 * truncations and extensions. */
static void test_relocate(void)
{
    struct record_relocate rel = {
        .put = {.id = 77, .priority = 9, .max_attempts = 5, .ttr_ms = 1500,
                .created_ms = 1790000000000, .run_at_ms = 1790000005000,
                .expires_at_ms = 1790000090000, .queue = "q.dead", .queue_len = 6,
                .body = "payload", .body_len = 7},
        .state = RECORD_STATE_DEAD, .attempts = 5, .settled_ms = 1790000001000,
        .reason = "boom", .reason_len = 4,
    };
    size_t n = record_relocate_encode(&rel, buf);
    CHECK_EQ(n, RECORD_RELOCATE_FIXED + 6 + 4 + 7);
    CHECK_EQ(n, record_relocate_size(&rel));
    struct record r;
    REQUIRE(record_decode(RECORD_RELOCATE, buf, n, &r) == 0);
    CHECK_EQ(r.id, 77);
    const struct record_relocate *d = &r.u.relocate;
    CHECK(d->state == RECORD_STATE_DEAD && d->attempts == 5);
    CHECK_EQ(d->settled_ms, 1790000001000);
    CHECK(d->reason_len == 4 && memcmp(d->reason, "boom", 4) == 0);
    CHECK(d->put.priority == 9 && d->put.max_attempts == 5 && d->put.ttr_ms == 1500);
    CHECK(d->put.created_ms == 1790000000000 && d->put.run_at_ms == 1790000005000);
    CHECK(d->put.expires_at_ms == 1790000090000 && d->put.key_len == 0);
    CHECK(d->put.queue_len == 6 && memcmp(d->put.queue, "q.dead", 6) == 0);
    const void *body;
    uint32_t body_len;
    REQUIRE(record_body(&r, &body, &body_len));
    CHECK(body_len == 7 && memcmp(body, "payload", 7) == 0);
    for (size_t len = 0; len < n; len++)
        CHECK_EQ(record_decode(RECORD_RELOCATE, buf, len, &r), RECORD_EINVAL);
    CHECK_EQ(record_decode(RECORD_RELOCATE, buf, n + 1, &r), RECORD_EINVAL);
    buf[1] = 3; /* no such state (reserved is saved ready) */
    CHECK_EQ(record_decode(RECORD_RELOCATE, buf, n, &r), RECORD_EINVAL);
    buf[1] = RECORD_STATE_DEAD;
    buf[6] = 1; /* padding */
    CHECK_EQ(record_decode(RECORD_RELOCATE, buf, n, &r), RECORD_EINVAL);
    buf[6] = 0;
    REQUIRE(record_decode(RECORD_RELOCATE, buf, n, &r) == 0);
    CHECK(!record_body(&(struct record){.type = RECORD_ACK}, &body, &body_len));
    CHECK(strcmp(record_type_name(RECORD_RELOCATE), "RELOCATE") == 0);

    static const uint8_t sample[] = {
        0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, /* v1, ready, queue_len 1, reason 0 */
        0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* id 5 */
        0x02, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, /* priority 2, max_attempts 10 */
        0x30, 0x75, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* ttr 30000 */
        0xe8, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* created 1000 */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* run_at 0 */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* expires 0 */
        0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, /* body_len 2, attempts 3 */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* settled 0 */
        'q',  'h',  'i',                                /* queue "q", body "hi" */
    };
    REQUIRE(record_decode(RECORD_RELOCATE, sample, sizeof(sample), &r) == 0);
    CHECK(r.id == 5 && r.u.relocate.state == RECORD_STATE_READY && r.u.relocate.attempts == 3);
    uint8_t again[sizeof(sample)];
    CHECK_EQ(record_relocate_encode(&r.u.relocate, again), sizeof(sample));
    CHECK(memcmp(again, sample, sizeof(sample)) == 0);
}

int main(void)
{
    RUN_TEST(test_relocate);
    RUN_TEST(test_put_roundtrip);
    RUN_TEST(test_small_records_roundtrip);
    RUN_TEST(test_every_type_rejects_wrong_length);
    RUN_TEST(test_garbage_and_unknown_types);
    RUN_TEST(test_version1_sample);
    RUN_TEST(test_version1_ack_bury_samples);
    RUN_TEST(test_version2_ack_bury_samples);
    RUN_TEST(test_queue_names);
    RUN_TEST(test_queue_meta_versions);
    return check_exit();
}
