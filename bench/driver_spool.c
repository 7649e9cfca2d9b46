/*
 * The spool driver: frames of docs/PROTOCOL.md, encoded and decoded by the one wire codec
 * spoold and libspool share (src/wire), so the benchmark never writes the wire format twice.
 *
 * Setup is HELLO. A put frame of one job is PUT, of more PUT_BATCH (all or nothing); a reserve
 * frame is one RESERVE of up to B jobs from the connection's queue; an ack frame of one job is
 * ACK, of more ACK_BATCH (each ack succeeds or fails on its own: refused ones are reported in
 * reply->failed). Each frame is one request, so it draws one reply, which carries the frame's
 * tag as its request id: spool answers puts and acks when their group commit is durable and
 * reserves when jobs are there, so replies come back in any order.
 *
 * The codec encodes into its own wire_buf; the frame is then copied into the connection's
 * output buffer (a memcpy of bytes that are about to be sent anyway).
 */
#include "driver.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "wire_frame.h"
#include "wire_message.h"

#define PUT_PRIORITY 1024 /* the same priority the beanstalkd driver uses */

/* One scratch buffer: spool-bench is single-threaded and copies each frame out at once. */
static struct wire_buf scratch;

static int encode(uint16_t opcode, uint64_t tag, const union wire_msg *msg, struct bench_buf *out)
{
    if (scratch.size_max == 0)
        wire_buf_init(&scratch, WIRE_FRAME_SIZE_MAX_DEFAULT);
    scratch.len = 0;
    int rc = wire_encode(&scratch, opcode, tag, msg);
    if (rc != 0)
        return rc == SPOOL_E_TOO_LARGE ? -EMSGSIZE : rc;
    return bench_buf_append(out, scratch.data, scratch.len);
}

static int encode_setup(const struct bench_conn_info *info, uint64_t tag, struct bench_buf *out,
                        uint32_t *replies)
{
    (void)info;
    union wire_msg msg = {.hello = {.magic = WIRE_MAGIC,
                                    .version_min = WIRE_VERSION_MIN,
                                    .version_max = WIRE_VERSION,
                                    .client_name = wire_bytes_str("spool-bench"),
                                    .auth = wire_bytes_str("")}};
    *replies = 1;
    return encode(WIRE_OP_HELLO, tag, &msg, out);
}

static struct wire_job_spec job_spec(const struct bench_conn_info *info, const uint8_t *body,
                                     uint32_t size)
{
    return (struct wire_job_spec){.queue = wire_bytes_str(info->queue),
                                  .priority = PUT_PRIORITY,
                                  .ttr_ms = info->ttr_s * 1000u,
                                  .key = wire_bytes_str(""),
                                  .body = wire_bytes_of(body, size)};
}

static int encode_put(const struct bench_conn_info *info, uint64_t tag, struct bench_buf *out,
                      const uint8_t *bodies, uint32_t size, uint32_t count, uint32_t *replies)
{
    static struct wire_job_spec jobs[BENCH_BATCH_MAX];
    SPOOL_ASSERT(count >= 1 && count <= BENCH_BATCH_MAX);
    *replies = 1;
    if (count == 1) {
        union wire_msg msg = {.put = job_spec(info, bodies, size)};
        return encode(WIRE_OP_PUT, tag, &msg, out);
    }
    for (uint32_t i = 0; i < count; i++)
        jobs[i] = job_spec(info, bodies + (size_t)i * size, size);
    union wire_msg msg = {.put_batch = {.count = count, .jobs = jobs}};
    return encode(WIRE_OP_PUT_BATCH, tag, &msg, out);
}

static int encode_reserve(const struct bench_conn_info *info, uint64_t tag, struct bench_buf *out,
                          uint32_t count, uint32_t block_ms, uint32_t *replies)
{
    union wire_msg msg = {
        .reserve = {.count_max = count, .timeout_ms = block_ms, .queue_count = 1}};
    msg.reserve.queues[0] = wire_bytes_str(info->queue);
    *replies = 1;
    return encode(WIRE_OP_RESERVE, tag, &msg, out);
}

static int encode_ack(const struct bench_conn_info *info, uint64_t tag, struct bench_buf *out,
                      const struct bench_job *jobs, uint32_t count, uint32_t *replies)
{
    static struct wire_ack acks[BENCH_BATCH_MAX];
    (void)info;
    SPOOL_ASSERT(count >= 1 && count <= BENCH_BATCH_MAX);
    for (uint32_t i = 0; i < count; i++)
        acks[i] =
            (struct wire_ack){.id = jobs[i].id, .lease = jobs[i].id2, .result = wire_bytes_str("")};
    *replies = 1;
    if (count == 1) {
        union wire_msg msg = {.ack = acks[0]};
        return encode(WIRE_OP_ACK, tag, &msg, out);
    }
    union wire_msg msg = {.ack_batch = {.count = count, .acks = acks}};
    return encode(WIRE_OP_ACK_BATCH, tag, &msg, out);
}

static void error_reply(const struct wire_error_reply *e, struct bench_reply *reply)
{
    int code = wire_error_from_wire(e->code);
    const char *name = wire_error_name(code);
    snprintf(reply->error, sizeof(reply->error), "%s: %.*s", name != NULL ? name : "?",
             (int)(e->message.len < 64 ? e->message.len : 64), (const char *)e->message.data);
    reply->kind = BENCH_REPLY_ERROR;
}

/* Fill reply from a decoded message; false if the opcode is not one the benchmark sends. */
static bool fill_reply(uint16_t opcode, const union wire_msg *msg, struct bench_reply *reply)
{
    reply->kind = BENCH_REPLY_OK;
    switch (opcode) {
    case WIRE_OP_ERROR:
        error_reply(&msg->error, reply);
        return true;
    case WIRE_OP_HELLO | WIRE_OP_REPLY:
        return true;
    case WIRE_OP_PUT | WIRE_OP_REPLY:
    case WIRE_OP_ACK | WIRE_OP_REPLY:
        reply->count = 1;
        return true;
    case WIRE_OP_PUT_BATCH | WIRE_OP_REPLY:
        reply->count = msg->put_batch_reply.count;
        return reply->count <= BENCH_BATCH_MAX;
    case WIRE_OP_ACK_BATCH | WIRE_OP_REPLY:
        if (msg->ack_batch_reply.count > BENCH_BATCH_MAX)
            return false;
        for (uint32_t i = 0; i < msg->ack_batch_reply.count; i++) {
            if (msg->ack_batch_reply.codes[i] == 0)
                reply->count++;
            else
                reply->failed++;
        }
        return true;
    case WIRE_OP_RESERVE | WIRE_OP_REPLY: {
        const struct wire_reserve_reply *r = &msg->reserve_reply;
        if (r->count > BENCH_BATCH_MAX)
            return false;
        for (uint32_t i = 0; i < r->count; i++)
            reply->jobs[i] = (struct bench_job){.id = r->deliveries[i].id,
                                                .id2 = r->deliveries[i].lease,
                                                .body = r->deliveries[i].body.data,
                                                .body_len = r->deliveries[i].body.len};
        reply->count = r->count;
        reply->kind = r->count > 0 ? BENCH_REPLY_JOBS : BENCH_REPLY_EMPTY;
        return true;
    }
    }
    return false;
}

static int64_t parse(const struct bench_conn_info *info, enum bench_frame_kind kind,
                     const uint8_t *in, size_t len, struct bench_reply *reply)
{
    (void)info;
    (void)kind; /* replies name themselves by opcode and request id */
    struct wire_header h;
    int rc = wire_header_decode(in, len, WIRE_FRAME_SIZE_LIMIT, &h);
    if (rc == -EAGAIN)
        return 0;
    if (rc != 0)
        return -EPROTO;
    if (len < h.frame_size)
        return 0;
    union wire_msg msg;
    if (wire_decode(h.opcode, in + WIRE_HEADER_SIZE, h.frame_size - WIRE_HEADER_SIZE, &msg) != 0)
        return -EPROTO;
    reply->count = 0;
    reply->failed = 0;
    reply->tag = h.request_id;
    bool ok = fill_reply(h.opcode, &msg, reply);
    wire_msg_free(h.opcode, &msg);
    return ok ? (int64_t)h.frame_size : -EPROTO;
}

const struct bench_driver bench_driver_spool = {
    .name = "spool",
    .tagged = true,
    .reserve_batches = true,
    .default_port = 7711,
    .encode_setup = encode_setup,
    .encode_put = encode_put,
    .encode_reserve = encode_reserve,
    .encode_ack = encode_ack,
    .parse = parse,
};
