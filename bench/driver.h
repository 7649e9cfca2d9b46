/*
 * The interface every target's protocol driver implements, so that one load generator
 * (loadgen.c) runs the same workload against spool, beanstalkd and Redis Streams.
 *
 * A driver is pure encoding and parsing: it never touches a socket or a clock. The generator
 * asks it to append the bytes of a request frame (setup, a put of B jobs, a reserve of up to
 * B jobs, an ack of B jobs) to a connection's output buffer; the driver says how many replies
 * that frame will draw. Replies come back in order on each connection (every target answers
 * pipelined requests in order), so the generator keeps a FIFO of frames and hands the driver
 * the kind of the frame at its head together with the bytes read so far; the driver parses at
 * most one reply and returns how many bytes it used, 0 when the reply is not complete yet (the
 * generator reads more and asks again from the same place), or a negative errno when the
 * bytes cannot be a reply (the connection is then dropped and the run fails loudly).
 *
 * Drivers whose protocol carries a request id (spool) are "tagged": the generator passes every
 * frame's tag to the encoder, the parser reports the tag of each reply, and replies may come
 * in any order; the kind passed to parse is then only a hint the driver may ignore. The tag's
 * low TAG bits name the generator's frame slot.
 *
 * Job bodies handed back in a reply point into the generator's input buffer and are valid
 * only until the next parse call. A job is identified by two integers whose meaning is the
 * driver's (beanstalkd: job id; Redis: stream id ms and seq; spool: job id and lease token).
 */
#ifndef SPOOL_BENCH_DRIVER_H
#define SPOOL_BENCH_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "assert.h"

/* Jobs per frame: --batch is clamped to this. 1024 is the storage issue's largest batch, and
 * keeps a reply's job table (24 bytes each) at 24 KiB. */
#define BENCH_BATCH_MAX 1024u

/* A byte buffer with a consumed prefix [0, head) and pending bytes [head, len). It grows on
 * demand up to cap_max, so a runaway reply fails instead of eating memory. */
struct bench_buf {
    uint8_t *data;
    size_t head;
    size_t len;
    size_t cap;
    size_t cap_max;
};

SPOOL_MUST_USE int bench_buf_init(struct bench_buf *buf, size_t cap, size_t cap_max);
void bench_buf_free(struct bench_buf *buf);
/* Make room for extra more bytes after len; 0 or -ENOBUFS past cap_max, -ENOMEM. */
SPOOL_MUST_USE int bench_buf_reserve(struct bench_buf *buf, size_t extra);
SPOOL_MUST_USE int bench_buf_append(struct bench_buf *buf, const void *data, size_t len);
/* Append printf-formatted text (no terminating NUL kept). */
SPOOL_MUST_USE int bench_buf_printf(struct bench_buf *buf, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
void bench_buf_consume(struct bench_buf *buf, size_t len);
static inline size_t bench_buf_pending(const struct bench_buf *buf)
{
    return buf->len - buf->head;
}
static inline const uint8_t *bench_buf_start(const struct bench_buf *buf)
{
    return buf->data + buf->head;
}

enum bench_role { BENCH_PRODUCER = 0, BENCH_CONSUMER };

enum bench_frame_kind {
    BENCH_FRAME_SETUP = 0,
    BENCH_FRAME_PUT,
    BENCH_FRAME_RESERVE,
    BENCH_FRAME_ACK
};

/* What a driver knows about the connection it encodes for. */
struct bench_conn_info {
    enum bench_role role;
    uint32_t index;    /* connection number, unique across roles */
    char queue[64];    /* the queue / tube / stream this connection works on */
    char group[32];    /* the consumer group (Redis) */
    char consumer[32]; /* a consumer name unique within the group (Redis) */
    uint32_t ttr_s;    /* the visibility timeout to ask for, seconds */
    uint64_t stream_maxlen; /* Redis: XADD MAXLEN ~ this (trim acked entries); 0: no trim */
};

struct bench_job {
    uint64_t id;
    uint64_t id2;
    const uint8_t *body; /* into the input buffer: valid until the next parse */
    uint32_t body_len;
};

enum bench_reply_kind {
    BENCH_REPLY_OK = 1, /* a setup, put or ack request succeeded; count jobs confirmed */
    BENCH_REPLY_JOBS,   /* a reserve handed out count jobs (count >= 1) */
    BENCH_REPLY_EMPTY,  /* a reserve found nothing before its timeout */
    BENCH_REPLY_ERROR,  /* the server refused the request: error holds its words */
};

struct bench_reply {
    enum bench_reply_kind kind;
    uint32_t count;
    uint32_t failed; /* OK replies to batches: jobs of the batch refused one by one */
    uint64_t tag;    /* tagged drivers: the request id this reply answers */
    struct bench_job jobs[BENCH_BATCH_MAX];
    char error[96];
};

struct bench_driver {
    const char *name;
    uint16_t default_port;
    bool tagged; /* replies carry the request's tag and may arrive out of order */
    /* A reserve of count jobs is one request that waits for the first job and then returns
     * up to count (XREADGROUP COUNT, spool RESERVE); false when it is count requests that
     * would each wait in turn (beanstalkd). */
    bool reserve_batches;
    /* Requests a connection sends before its first job (may add nothing: *replies = 0). */
    int (*encode_setup)(const struct bench_conn_info *info, uint64_t tag, struct bench_buf *out,
                        uint32_t *replies);
    /* Put count bodies of size bytes each, laid out back to back in bodies. */
    int (*encode_put)(const struct bench_conn_info *info, uint64_t tag, struct bench_buf *out,
                      const uint8_t *bodies, uint32_t size, uint32_t count, uint32_t *replies);
    /* Reserve up to count jobs, waiting at most block_ms for the first. */
    int (*encode_reserve)(const struct bench_conn_info *info, uint64_t tag, struct bench_buf *out,
                          uint32_t count, uint32_t block_ms, uint32_t *replies);
    /* Acknowledge (delete) count jobs this connection reserved. */
    int (*encode_ack)(const struct bench_conn_info *info, uint64_t tag, struct bench_buf *out,
                      const struct bench_job *jobs, uint32_t count, uint32_t *replies);
    /* Parse one reply to a frame of kind: bytes used, 0 incomplete, negative errno malformed. */
    int64_t (*parse)(const struct bench_conn_info *info, enum bench_frame_kind kind,
                     const uint8_t *in, size_t len, struct bench_reply *reply);
};

extern const struct bench_driver bench_driver_beanstalkd;
extern const struct bench_driver bench_driver_redis;
extern const struct bench_driver bench_driver_spool;

/* The driver called name, or NULL. */
const struct bench_driver *bench_driver_find(const char *name);

#endif
