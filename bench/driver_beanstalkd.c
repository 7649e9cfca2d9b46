/*
 * The beanstalkd text protocol driver (protocol.txt of beanstalkd 1.12).
 *
 * Producers `use TUBE` once, then put: `put <pri> <delay> <ttr> <bytes>\r\n<body>\r\n`,
 * answered `INSERTED <id>\r\n`. Consumers `watch TUBE` and `ignore default`, then
 * `reserve-with-timeout <s>\r\n`, answered `RESERVED <id> <bytes>\r\n<body>\r\n` or
 * `TIMED_OUT\r\n` (or `DEADLINE_SOON\r\n`, which hands out nothing), and ack with
 * `delete <id>\r\n`, answered `DELETED\r\n`. The protocol has no batches: a frame of B jobs is
 * B pipelined commands drawing B replies, which beanstalkd answers in order.
 *
 * Every reply starts with a line of at most LINE_BYTES_MAX bytes; a longer line, a number
 * that does not parse, or a word no command can answer with is malformed (-EPROTO).
 */
#include "driver.h"

#include <errno.h>
#include <string.h>

/* beanstalkd's longest reply line is "RESERVED <u64> <u32>" (~40 bytes); its own request
 * line limit is 224. Anything past 256 bytes without CRLF is not beanstalkd. */
#define LINE_BYTES_MAX 256
/* beanstalkd's -z maximum job size is at most 2^30 - 1 in practice; refuse larger. */
#define BODY_BYTES_MAX (1u << 30)
#define PUT_PRIORITY 1024 /* the default priority beanstalkd clients use */

static int encode_setup(const struct bench_conn_info *info, uint64_t tag, struct bench_buf *out,
                        uint32_t *replies)
{
    if (info->role == BENCH_PRODUCER) {
        *replies = 1;
        return bench_buf_printf(out, "use %s\r\n", info->queue);
    }
    *replies = 2;
    int rc = bench_buf_printf(out, "watch %s\r\n", info->queue);
    return rc != 0 ? rc : bench_buf_printf(out, "ignore default\r\n");
}

static int encode_put(const struct bench_conn_info *info, uint64_t tag, struct bench_buf *out,
                      const uint8_t *bodies, uint32_t size, uint32_t count, uint32_t *replies)
{
    for (uint32_t i = 0; i < count; i++) {
        int rc = bench_buf_printf(out, "put %u 0 %u %u\r\n", PUT_PRIORITY, info->ttr_s, size);
        if (rc == 0)
            rc = bench_buf_append(out, bodies + (size_t)i * size, size);
        if (rc == 0)
            rc = bench_buf_append(out, "\r\n", 2);
        if (rc != 0)
            return rc;
    }
    *replies = count;
    return 0;
}

static int encode_reserve(const struct bench_conn_info *info, uint64_t tag, struct bench_buf *out,
                          uint32_t count, uint32_t block_ms, uint32_t *replies)
{
    (void)info;
    uint32_t timeout_s = (block_ms + 999) / 1000;
    for (uint32_t i = 0; i < count; i++) {
        int rc = bench_buf_printf(out, "reserve-with-timeout %u\r\n", timeout_s);
        if (rc != 0)
            return rc;
    }
    *replies = count;
    return 0;
}

static int encode_ack(const struct bench_conn_info *info, uint64_t tag, struct bench_buf *out,
                      const struct bench_job *jobs, uint32_t count, uint32_t *replies)
{
    (void)info;
    for (uint32_t i = 0; i < count; i++) {
        int rc = bench_buf_printf(out, "delete %llu\r\n", (unsigned long long)jobs[i].id);
        if (rc != 0)
            return rc;
    }
    *replies = count;
    return 0;
}

/* Parse a decimal u64 at *p (stopping at end or a non-digit); false if none or overflow. */
static bool parse_u64(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    if (s == end || *s < '0' || *s > '9')
        return false;
    while (s < end && *s >= '0' && *s <= '9') {
        uint64_t digit = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - digit) / 10)
            return false;
        v = v * 10 + digit;
        s++;
    }
    *p = s;
    *out = v;
    return true;
}

static bool line_is(const char *line, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len == n && memcmp(line, word, n) == 0;
}

/* "WORD <u64>" exactly. */
static bool line_word_u64(const char *line, size_t len, const char *word, uint64_t *value)
{
    size_t n = strlen(word);
    if (len <= n + 1 || memcmp(line, word, n) != 0 || line[n] != ' ')
        return false;
    const char *p = line + n + 1;
    return parse_u64(&p, line + len, value) && p == line + len;
}

/* The error words beanstalkd may answer any command with, or a put / delete with. */
static bool line_is_error(const char *line, size_t len)
{
    static const char *const words[] = {
        "OUT_OF_MEMORY", "INTERNAL_ERROR", "BAD_FORMAT", "UNKNOWN_COMMAND", "JOB_TOO_BIG",
        "EXPECTED_CRLF", "DRAINING",       "NOT_FOUND",  "NOT_IGNORED",
    };
    uint64_t id;
    if (line_word_u64(line, len, "BURIED", &id))
        return true;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (line_is(line, len, words[i]))
            return true;
    return false;
}

/* A RESERVED reply: the line has been found; the body follows. */
static int64_t parse_reserved(const char *line, size_t line_len, const uint8_t *in, size_t len,
                              struct bench_reply *reply)
{
    const char *p = line + strlen("RESERVED ");
    const char *end = line + line_len;
    uint64_t id, bytes;
    if (!parse_u64(&p, end, &id) || p == end || *p++ != ' ' || !parse_u64(&p, end, &bytes) ||
        p != end || bytes > BODY_BYTES_MAX)
        return -EPROTO;
    size_t body_at = line_len + 2;
    if (len < body_at + bytes + 2)
        return 0;
    if (in[body_at + bytes] != '\r' || in[body_at + bytes + 1] != '\n')
        return -EPROTO;
    reply->kind = BENCH_REPLY_JOBS;
    reply->count = 1;
    reply->jobs[0] =
        (struct bench_job){.id = id, .body = in + body_at, .body_len = (uint32_t)bytes};
    return (int64_t)(body_at + bytes + 2);
}

static bool parse_line_for(enum bench_frame_kind kind, const char *line, size_t n,
                           struct bench_reply *reply)
{
    uint64_t value;
    reply->count = 0;
    switch (kind) {
    case BENCH_FRAME_SETUP:
        reply->kind = BENCH_REPLY_OK;
        return (n > 6 && memcmp(line, "USING ", 6) == 0) ||
               line_word_u64(line, n, "WATCHING", &value);
    case BENCH_FRAME_PUT:
        reply->kind = BENCH_REPLY_OK;
        reply->count = 1;
        return line_word_u64(line, n, "INSERTED", &value);
    case BENCH_FRAME_RESERVE:
        reply->kind = BENCH_REPLY_EMPTY;
        return line_is(line, n, "TIMED_OUT") || line_is(line, n, "DEADLINE_SOON");
    case BENCH_FRAME_ACK:
        reply->kind = BENCH_REPLY_OK;
        reply->count = 1;
        return line_is(line, n, "DELETED");
    }
    return false;
}

static int64_t parse(const struct bench_conn_info *info, enum bench_frame_kind kind,
                     const uint8_t *in, size_t len, struct bench_reply *reply)
{
    (void)info;
    size_t scan = len < LINE_BYTES_MAX ? len : LINE_BYTES_MAX;
    const uint8_t *cr = NULL;
    for (size_t i = 0; i + 1 < scan && cr == NULL; i++)
        if (in[i] == '\r' && in[i + 1] == '\n')
            cr = in + i;
    if (cr == NULL)
        return len >= LINE_BYTES_MAX ? -EPROTO : 0;
    const char *line = (const char *)in;
    size_t n = (size_t)(cr - in);
    if (kind == BENCH_FRAME_RESERVE && n > 9 && memcmp(line, "RESERVED ", 9) == 0)
        return parse_reserved(line, n, in, len, reply);
    if (!parse_line_for(kind, line, n, reply)) {
        if (!line_is_error(line, n))
            return -EPROTO;
        reply->kind = BENCH_REPLY_ERROR;
        reply->count = 0;
        size_t copy = n < sizeof(reply->error) - 1 ? n : sizeof(reply->error) - 1;
        memcpy(reply->error, line, copy);
        reply->error[copy] = '\0';
    }
    return (int64_t)(n + 2);
}

const struct bench_driver bench_driver_beanstalkd = {
    .name = "beanstalkd",
    .tagged = false,
    .reserve_batches = false,
    .default_port = 11300,
    .encode_setup = encode_setup,
    .encode_put = encode_put,
    .encode_reserve = encode_reserve,
    .encode_ack = encode_ack,
    .parse = parse,
};
