/*
 * wire_frame.h: the frame layer of the spool protocol, shared by spoold and libspool.
 *
 * Every message in either direction is one frame: a 16-byte header followed by a payload.
 * All integers are little-endian. docs/PROTOCOL.md is the contract; this header mirrors it.
 *
 *   offset size field
 *        0    4 frame_size   total bytes of the frame, header included (16 .. frame max)
 *        4    2 opcode       WIRE_OP_*; replies set bit 15 (WIRE_OP_REPLY) on the request's op
 *        6    2 flags        reserved: sent as 0, ignored on receipt
 *        8    8 request_id   chosen by the client; the reply carries the same value
 *
 * The frame size is checked against the receiver's maximum before anything is allocated for
 * the payload, so a hostile length costs nothing. The codec never does I/O: it turns a byte
 * buffer with a length into a header or message (never reading past the length) and turns
 * messages into bytes in a wire_buf.
 *
 * Error codes are the SPOOL_E_* of <spool/error.h>; on the wire an error travels as the
 * positive wire code (SPOOL_E_X == -(SPOOL_ERROR_BASE + wire code)).
 */
#ifndef SPOOL_WIRE_FRAME_H
#define SPOOL_WIRE_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <spool/error.h>

#include "spool_limits.h"

#define WIRE_MUST_USE __attribute__((warn_unused_result))

/* "SPOL" read as a little-endian u32: the first field of HELLO, so a stray client (HTTP,
 * beanstalkd text) is recognised at its first frame and refused with BAD_FRAME. */
#define WIRE_MAGIC 0x4C4F5053u

/* Protocol versions this codec speaks. A peer negotiates the highest common version; see
 * "Versions" in docs/PROTOCOL.md for the rule on old versions. */
#define WIRE_VERSION 2
#define WIRE_VERSION_MIN 1

#define WIRE_HEADER_SIZE 16

/* Default maximum frame: one job body of the default maximum job size (1 MiB) plus every
 * fixed field of a PUT with room to spare, doubled so a small batch of large jobs or a reserve
 * of several still fits. Servers may configure another value (--max-frame). */
#define WIRE_FRAME_SIZE_MAX_DEFAULT (2u * 1024 * 1024)
/* Hard ceiling on any configured frame maximum: a receiver buffers one whole frame, and 64 MiB
 * per connection is already more than a broker should hold for one message. */
#define WIRE_FRAME_SIZE_LIMIT (64u * 1024 * 1024)
/* Smallest allowed frame maximum: a default-size HELLO and error reply must always fit. */
#define WIRE_FRAME_SIZE_MIN 4096u
/* Default maximum job body (--max-job-size). */
#define WIRE_JOB_SIZE_MAX_DEFAULT (1024u * 1024)
/* Everything in a PUT or a delivery besides the body is below this (fixed fields, a 200-byte
 * queue name, a 255-byte key): a frame maximum of job max + this always carries one job. */
#define WIRE_JOB_OVERHEAD_MAX 1024u

/*
 * Field limits, checked by the decoder. Counts bound the array a decoder allocates: with the
 * largest decoded item (a job spec, ~80 bytes in memory) a 4096-item batch costs ~330 KiB,
 * the same order as the 2 MiB frame it came in, and a batch that big already amortises one
 * round trip and one group commit over thousands of jobs, so larger buys nothing.
 */
/* Queue name, idempotency key, ack result, reason, queues and jobs per reserve: the limits
 * shared with the records and the queue, in common/spool_limits.h. */
#define WIRE_TEXT_SIZE_MAX 1024u /* error message, client and server names, auth */
#define WIRE_BATCH_COUNT_MAX 4096u /* jobs per PUT_BATCH, acks per ACK_BATCH (see above) */
/* Queue entries in one STATS or QUEUES reply: 65535 x 67 bytes fits the 64 MiB frame ceiling
 * (the server stops at its own frame maximum). */
#define WIRE_STATS_QUEUES_MAX 65535u

/* Opcodes. Requests are 0x0001..0x7FFE; a reply has the request's opcode | WIRE_OP_REPLY; an
 * error reply to any request is WIRE_OP_ERROR. Values are frozen once released. */
enum wire_op {
    WIRE_OP_HELLO = 0x0001,
    WIRE_OP_PING = 0x0002,
    WIRE_OP_PUT = 0x0010,
    WIRE_OP_PUT_BATCH = 0x0011,
    WIRE_OP_RESERVE = 0x0012,
    WIRE_OP_ACK = 0x0013,
    WIRE_OP_ACK_BATCH = 0x0014,
    WIRE_OP_RELEASE = 0x0015,
    WIRE_OP_TOUCH = 0x0016,
    WIRE_OP_BURY = 0x0017,
    WIRE_OP_KICK = 0x0018,
    WIRE_OP_KICK_JOB = 0x0019,
    WIRE_OP_PEEK = 0x001A,
    WIRE_OP_PEEK_NEXT = 0x001B,
    WIRE_OP_DELETE = 0x001C,
    WIRE_OP_WAIT = 0x001D,
    WIRE_OP_STATUS = 0x001E,
    WIRE_OP_STATS = 0x0020,
    WIRE_OP_QUEUES = 0x0021,
    WIRE_OP_PAUSE = 0x0022,
    WIRE_OP_RESUME = 0x0023,
    WIRE_OP_PURGE = 0x0024,
    WIRE_OP_QUEUE_CONFIG = 0x0025,
    WIRE_OP_DELETE_QUEUE = 0x0026, /* a new opcode: any version (old servers: UNKNOWN_OP) */
    WIRE_OP_REPLY = 0x8000,
    WIRE_OP_ERROR = 0xFFFF,
};

/* How far a mutating request got before its reply (first byte of such replies). */
enum wire_durability {
    WIRE_DURABLE_NONE = 0,    /* applied in memory only (nothing needed logging) */
    WIRE_DURABLE_WRITTEN = 1, /* written to the log, in the OS page cache: survives kill -9 */
    WIRE_DURABLE_SYNCED = 2,  /* written and fdatasync'ed: survives power loss */
};

/* A job's state as reported by STATUS, PEEK and WAIT. */
enum wire_job_state {
    WIRE_STATE_UNKNOWN = 0,
    WIRE_STATE_READY = 1,
    WIRE_STATE_DELAYED = 2,
    WIRE_STATE_RESERVED = 3,
    WIRE_STATE_DEAD = 4,
    WIRE_STATE_DONE = 5, /* acked */
    /* Protocol version 2: its ttl ran out before an ack (a version 1 peer is told DEAD with
     * reason "expired"). */
    WIRE_STATE_EXPIRED = 6,
};

struct wire_header {
    uint32_t frame_size; /* header included */
    uint16_t opcode;
    uint16_t flags;
    uint64_t request_id;
};

/*
 * Decode the header at buf[0..len). Returns 0 and fills *out; -EAGAIN if len < 16 (read
 * more); SPOOL_E_BAD_FRAME if frame_size < 16; SPOOL_E_TOO_LARGE if frame_size >
 * frame_size_max. On BAD_FRAME/TOO_LARGE *out is still filled (the request id is known), so
 * the receiver can address its one error frame before closing. Never reads past len.
 */
WIRE_MUST_USE int wire_header_decode(const uint8_t *buf, size_t len, uint32_t frame_size_max,
                                     struct wire_header *out);
/* Write the 16 header bytes, fields as given (no validation: tests forge bad ones with it). */
void wire_header_encode(uint8_t out[WIRE_HEADER_SIZE], const struct wire_header *h);

/*
 * A growable output buffer. Encoders append whole frames; data[0..len) is ready to send.
 * size_max is the largest single frame the buffer accepts (the peer's frame maximum): a frame
 * above it fails with SPOOL_E_TOO_LARGE and nothing is appended. The total held is the
 * caller's to bound (it may hold many frames). The buffer owns data (malloc'ed);
 * wire_buf_free releases it. Not thread-safe.
 */
struct wire_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t size_max;
};

void wire_buf_init(struct wire_buf *b, size_t size_max);
void wire_buf_free(struct wire_buf *b);
/* Forget the first n bytes (sent), keeping the rest at the front. */
void wire_buf_consume(struct wire_buf *b, size_t n);
/* Make room for n more bytes; 0 or -ENOMEM. */
WIRE_MUST_USE int wire_buf_reserve(struct wire_buf *b, size_t n);

/* Wire code (1..99) of an SPOOL_E_* sent on the wire, or SPOOL_E_INTERNAL's for anything
 * else (a negative errno is never leaked to clients as such). */
uint16_t wire_error_to_wire(int error);
/* SPOOL_E_* for a received wire code; a code this build does not know maps to
 * SPOOL_E_INTERNAL (a newer server's new error is still an error). */
int wire_error_from_wire(uint16_t code);
/* "LEASE_EXPIRED" for SPOOL_E_LEASE_EXPIRED; NULL for a code outside the band. */
const char *wire_error_name(int error);
/* A sentence for an SPOOL_E_* code; NULL for a code outside the band. */
const char *wire_error_text(int error);

/* "PUT", "RESERVE", ...; "PUT_REPLY" style for replies; NULL for an unknown opcode. */
const char *wire_op_name(uint16_t opcode);

#endif
