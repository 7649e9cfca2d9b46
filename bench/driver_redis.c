/*
 * The Redis Streams driver (RESP2).
 *
 * A queue is a stream; consumers share one consumer group created at setup with
 * `XGROUP CREATE <stream> <group> 0 MKSTREAM` (a -BUSYGROUP answer means another connection
 * made it first, which is fine). Producers `XADD <stream> * b <body>` (one field, "b"),
 * answered with the entry id as a bulk string; a frame of B puts is B pipelined XADDs. In
 * closed-loop e2e, `XADD <stream> MAXLEN ~ <n> * b <body>`, n far above what the run leaves
 * unconsumed (loadgen.c): acked entries stay in a stream until trimmed, and a queue run on
 * Redis Streams trims so, or its memory grows with every job ever put and its AOF is
 * rewritten ever larger (8 rewrites and 384 MB for 3.5 M entries of 100 B in 30 s, measured
 * untrimmed).
 * Consumers `XREADGROUP GROUP <group> <consumer> COUNT <B> [BLOCK <ms>] STREAMS <stream> >`,
 * answered with a nil array on timeout or [[stream, [[id, [field, value, ...]], ...]]], and
 * ack with one `XACK <stream> <group> <id>...` answered by the number of entries acked.
 *
 * Parsing first measures one complete RESP value without interpreting it (resp_scan: an
 * iterative count of the elements still owed, no recursion), then walks it with a cursor that
 * checks every type it expects. Lengths are clamped before use: at most RESP_ELEMENTS_MAX
 * elements in an array and RESP_BULK_BYTES_MAX bytes in a bulk string.
 */
#include "driver.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* A header line is a type byte and a signed 64-bit decimal: 21 bytes. Error and status lines
 * carry text; Redis keeps those short. 4 KiB is generous for both. */
#define RESP_LINE_BYTES_MAX 4096
/* Redis's own proto-max-bulk-len default is 512 MiB. */
#define RESP_BULK_BYTES_MAX (512ll * 1024 * 1024)
/* A reply the benchmark asks for holds at most BENCH_BATCH_MAX entries of a few elements. */
#define RESP_ELEMENTS_MAX (1ll << 20)

static int put_array(struct bench_buf *out, uint32_t n)
{
    return bench_buf_printf(out, "*%u\r\n", n);
}

static int put_bulk(struct bench_buf *out, const void *data, size_t len)
{
    int rc = bench_buf_printf(out, "$%zu\r\n", len);
    if (rc == 0)
        rc = bench_buf_append(out, data, len);
    return rc != 0 ? rc : bench_buf_append(out, "\r\n", 2);
}

static int put_str(struct bench_buf *out, const char *s)
{
    return put_bulk(out, s, strlen(s));
}

static int encode_setup(const struct bench_conn_info *info, uint64_t tag, struct bench_buf *out,
                        uint32_t *replies)
{
    if (info->role == BENCH_PRODUCER) {
        *replies = 0;
        return 0;
    }
    static const char *const words[] = {"XGROUP", "CREATE", NULL, NULL, "0", "MKSTREAM"};
    int rc = put_array(out, 6);
    for (size_t i = 0; i < 6 && rc == 0; i++)
        rc = put_str(out, i == 2 ? info->queue : i == 3 ? info->group : words[i]);
    *replies = 1;
    return rc;
}

static int encode_put(const struct bench_conn_info *info, uint64_t tag, struct bench_buf *out,
                      const uint8_t *bodies, uint32_t size, uint32_t count, uint32_t *replies)
{
    char maxlen_text[24];
    bool trim = info->stream_maxlen > 0;
    if (trim) /* formatted once a frame, and only where it is sent */
        snprintf(maxlen_text, sizeof(maxlen_text), "%llu",
                 (unsigned long long)info->stream_maxlen);
    for (uint32_t i = 0; i < count; i++) {
        int rc = put_array(out, trim ? 8 : 5);
        if (rc == 0)
            rc = put_str(out, "XADD");
        if (rc == 0)
            rc = put_str(out, info->queue);
        if (rc == 0 && trim)
            rc = put_str(out, "MAXLEN");
        if (rc == 0 && trim)
            rc = put_str(out, "~");
        if (rc == 0 && trim)
            rc = put_str(out, maxlen_text);
        if (rc == 0)
            rc = put_str(out, "*");
        if (rc == 0)
            rc = put_str(out, "b");
        if (rc == 0)
            rc = put_bulk(out, bodies + (size_t)i * size, size);
        if (rc != 0)
            return rc;
    }
    *replies = count;
    return 0;
}

static int encode_reserve(const struct bench_conn_info *info, uint64_t tag, struct bench_buf *out,
                          uint32_t count, uint32_t block_ms, uint32_t *replies)
{
    char count_text[16], block_text[16];
    snprintf(count_text, sizeof(count_text), "%u", count);
    snprintf(block_text, sizeof(block_text), "%u", block_ms);
    /* BLOCK 0 would wait forever: without a wait, leave BLOCK out. */
    const char *words[] = {"XREADGROUP", "GROUP",     info->group, info->consumer,
                           "COUNT",      count_text,  "BLOCK",     block_text,
                           "STREAMS",    info->queue, ">"};
    uint32_t n = sizeof(words) / sizeof(words[0]);
    int rc = put_array(out, block_ms > 0 ? n : n - 2);
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        if (block_ms == 0 && (i == 6 || i == 7))
            continue;
        rc = put_str(out, words[i]);
    }
    *replies = 1;
    return rc;
}

static int encode_ack(const struct bench_conn_info *info, uint64_t tag, struct bench_buf *out,
                      const struct bench_job *jobs, uint32_t count, uint32_t *replies)
{
    int rc = put_array(out, 3 + count);
    if (rc == 0)
        rc = put_str(out, "XACK");
    if (rc == 0)
        rc = put_str(out, info->queue);
    if (rc == 0)
        rc = put_str(out, info->group);
    for (uint32_t i = 0; i < count && rc == 0; i++) {
        char id[48];
        int n = snprintf(id, sizeof(id), "%llu-%llu", (unsigned long long)jobs[i].id,
                         (unsigned long long)jobs[i].id2);
        rc = put_bulk(out, id, (size_t)n);
    }
    *replies = 1;
    return rc;
}

/* One header line at *pos: its type byte and, for '*', '$' and ':', its number. Returns 1,
 * 0 when the line is not complete, -EPROTO. For '+' and '-' the text is [*pos+1, eol). */
static int resp_line(const uint8_t *in, size_t len, size_t *pos, char *type, long long *number,
                     size_t *text_end)
{
    size_t start = *pos,
           limit = len - start < RESP_LINE_BYTES_MAX ? len : start + RESP_LINE_BYTES_MAX;
    size_t eol = start;
    while (eol + 1 < limit && !(in[eol] == '\r' && in[eol + 1] == '\n'))
        eol++;
    if (eol + 1 >= limit)
        return limit == len ? 0 : -EPROTO;
    *type = (char)in[start];
    *text_end = eol;
    *number = 0;
    if (*type == '*' || *type == '$' || *type == ':') {
        size_t i = start + 1;
        bool negative = i < eol && in[i] == '-';
        i += negative;
        if (i == eol || eol - i > 18)
            return -EPROTO;
        long long v = 0;
        for (; i < eol; i++) {
            if (in[i] < '0' || in[i] > '9')
                return -EPROTO;
            v = v * 10 + (in[i] - '0');
        }
        *number = negative ? -v : v;
    } else if (*type != '+' && *type != '-') {
        return -EPROTO;
    }
    *pos = eol + 2;
    return 1;
}

/* Measure one complete value starting at in[0]: its length, 0 if incomplete, -EPROTO. */
static int64_t resp_scan(const uint8_t *in, size_t len)
{
    size_t pos = 0;
    long long owed = 1;
    while (owed > 0) {
        char type;
        long long n;
        size_t text_end;
        int rc = resp_line(in, len, &pos, &type, &n, &text_end);
        if (rc <= 0)
            return rc;
        owed--;
        if (type == '$' && n >= 0) {
            if (n > RESP_BULK_BYTES_MAX)
                return -EPROTO;
            if (len - pos < (size_t)n + 2)
                return 0;
            if (in[pos + (size_t)n] != '\r' || in[pos + (size_t)n + 1] != '\n')
                return -EPROTO;
            pos += (size_t)n + 2;
        } else if (type == '*' && n > 0) {
            if (n > RESP_ELEMENTS_MAX || owed > RESP_ELEMENTS_MAX)
                return -EPROTO;
            owed += n;
        } else if ((type == '$' || type == '*') && n < -1) {
            return -EPROTO;
        }
    }
    return (int64_t)pos;
}

/* Cursor over a value resp_scan has measured: every read checks the type it expects. */
struct cursor {
    const uint8_t *in;
    size_t len;
    size_t pos;
};

static bool cursor_header(struct cursor *c, char want, long long *n)
{
    char type;
    size_t text_end;
    return resp_line(c->in, c->len, &c->pos, &type, n, &text_end) == 1 && type == want;
}

static bool cursor_bulk(struct cursor *c, const uint8_t **data, size_t *n)
{
    long long len;
    if (!cursor_header(c, '$', &len) || len < 0 || c->len - c->pos < (size_t)len + 2)
        return false;
    *data = c->in + c->pos;
    *n = (size_t)len;
    c->pos += (size_t)len + 2;
    return true;
}

/* Skip one value whose header is next (for fields the benchmark does not read). */
static bool cursor_skip(struct cursor *c)
{
    int64_t n = resp_scan(c->in + c->pos, c->len - c->pos);
    if (n <= 0)
        return false;
    c->pos += (size_t)n;
    return true;
}

/* "<ms>-<seq>" */
static bool parse_stream_id(const uint8_t *s, size_t n, uint64_t *ms, uint64_t *seq)
{
    uint64_t parts[2] = {0, 0};
    size_t part = 0, digits = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '-' && part == 0 && digits > 0) {
            part = 1;
            digits = 0;
        } else if (s[i] >= '0' && s[i] <= '9' && digits < 19) {
            parts[part] = parts[part] * 10 + (uint64_t)(s[i] - '0');
            digits++;
        } else {
            return false;
        }
    }
    *ms = parts[0];
    *seq = parts[1];
    return part == 1 && digits > 0;
}

/* One stream entry [id, [field, value, ...] or nil] into reply->jobs. */
static bool parse_entry(struct cursor *c, struct bench_reply *reply)
{
    long long n, fields;
    const uint8_t *id;
    size_t id_len;
    if (!cursor_header(c, '*', &n) || n != 2 || !cursor_bulk(c, &id, &id_len))
        return false;
    if (reply->count >= BENCH_BATCH_MAX)
        return false;
    struct bench_job *job = &reply->jobs[reply->count++];
    *job = (struct bench_job){0};
    if (!parse_stream_id(id, id_len, &job->id, &job->id2))
        return false;
    if (!cursor_header(c, '*', &fields) || fields < -1 || (fields > 0 && fields % 2 != 0))
        return false; /* fields == -1: the entry was deleted; it still needs its ack */
    for (long long i = 0; i < fields; i += 2) {
        const uint8_t *name, *value;
        size_t name_len, value_len;
        if (!cursor_bulk(c, &name, &name_len) || !cursor_bulk(c, &value, &value_len))
            return false;
        if (name_len == 1 && name[0] == 'b' && value_len <= UINT32_MAX) {
            job->body = value;
            job->body_len = (uint32_t)value_len;
        }
    }
    return true;
}

/* [[stream, [entry, ...]], ...] */
static bool parse_read_reply(struct cursor *c, struct bench_reply *reply)
{
    long long streams, n, entries;
    reply->count = 0;
    if (!cursor_header(c, '*', &streams))
        return false;
    for (long long s = 0; s < streams; s++) {
        if (!cursor_header(c, '*', &n) || n != 2 || !cursor_skip(c) ||
            !cursor_header(c, '*', &entries))
            return false;
        for (long long e = 0; e < entries; e++)
            if (!parse_entry(c, reply))
                return false;
    }
    reply->kind = reply->count > 0 ? BENCH_REPLY_JOBS : BENCH_REPLY_EMPTY;
    return true;
}

static void copy_error(struct bench_reply *reply, const uint8_t *in, size_t text_end)
{
    size_t n = text_end - 1 < sizeof(reply->error) - 1 ? text_end - 1 : sizeof(reply->error) - 1;
    memcpy(reply->error, in + 1, n);
    reply->error[n] = '\0';
    reply->kind = BENCH_REPLY_ERROR;
    reply->count = 0;
}

static int64_t parse(const struct bench_conn_info *info, enum bench_frame_kind kind,
                     const uint8_t *in, size_t len, struct bench_reply *reply)
{
    (void)info;
    int64_t total = resp_scan(in, len);
    if (total <= 0)
        return total;
    struct cursor c = {.in = in, .len = (size_t)total, .pos = 0};
    char type;
    long long n;
    size_t text_end;
    if (resp_line(in, (size_t)total, &c.pos, &type, &n, &text_end) != 1)
        return -EPROTO;
    reply->count = 0;
    reply->kind = BENCH_REPLY_OK;
    if (type == '-') {
        static const char busy[] = "-BUSYGROUP";
        if (kind == BENCH_FRAME_SETUP && text_end >= sizeof(busy) - 1 &&
            memcmp(in, busy, sizeof(busy) - 1) == 0)
            return total;
        copy_error(reply, in, text_end);
        return total;
    }
    bool ok = false;
    switch (kind) {
    case BENCH_FRAME_SETUP:
        ok = type == '+';
        break;
    case BENCH_FRAME_PUT:
        ok = type == '$' && n > 0;
        reply->count = 1;
        break;
    case BENCH_FRAME_ACK:
        ok = type == ':' && n >= 0;
        reply->count = (uint32_t)(n >= 0 && n <= BENCH_BATCH_MAX ? n : 0);
        break;
    case BENCH_FRAME_RESERVE:
        reply->kind = BENCH_REPLY_EMPTY;
        if ((type == '*' || type == '$') && n == -1)
            ok = true;
        else if (type == '*') {
            c.pos = 0;
            ok = parse_read_reply(&c, reply);
        }
        break;
    }
    return ok ? total : -EPROTO;
}

const struct bench_driver bench_driver_redis = {
    .name = "redis",
    .tagged = false,
    .reserve_batches = true,
    .default_port = 6379,
    .encode_setup = encode_setup,
    .encode_put = encode_put,
    .encode_reserve = encode_reserve,
    .encode_ack = encode_ack,
    .parse = parse,
};
