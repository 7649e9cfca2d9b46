/*
 * wire_message.h: every request and reply of the spool protocol as a C struct, and the one
 * encoder/decoder pair both spoold and libspool use (docs/PROTOCOL.md has the bytes).
 *
 * Decoding is zero-copy: a struct wire_bytes points into the payload it was decoded from and
 * is valid only while that buffer is. Batches (PUT_BATCH, ACK_BATCH and the arrays in replies)
 * are decoded into one malloc'ed array whose size is bounded before allocation by both its
 * count limit and the bytes left in the payload; wire_msg_free releases it. Everything else
 * decodes without allocating.
 *
 * Decode errors: SPOOL_E_BAD_FRAME when the payload is structurally wrong (truncated, a length
 * running past the end, trailing bytes); SPOOL_E_BAD_REQUEST when it is well-formed but a
 * field is out of range (queue name charset or length, count 0, bad state); SPOOL_E_TOO_LARGE
 * when a count or a size is above its WIRE_*_MAX limit; SPOOL_E_UNKNOWN_OP for an opcode
 * without a message; -ENOMEM. On error nothing needs freeing.
 *
 * Field encodings used below (see PROTOCOL.md): name8 = u8 length + bytes (queue names,
 * keys), text16 = u16 length + bytes, blob32 = u32 length + bytes.
 */
#ifndef SPOOL_WIRE_MESSAGE_H
#define SPOOL_WIRE_MESSAGE_H

#include "wire_frame.h"

/* A byte string on the wire; not NUL-terminated; points into a frame or caller memory. */
struct wire_bytes {
    const uint8_t *data;
    uint32_t len;
};

/* A view of a C string (NULL gives the empty string). */
struct wire_bytes wire_bytes_str(const char *s);
/* A view of caller memory. */
struct wire_bytes wire_bytes_of(const void *data, size_t len);
/* True if the bytes equal the C string s. */
bool wire_bytes_eq(struct wire_bytes b, const char *s);
/* True for 1..200 bytes of [A-Za-z0-9._:-]. */
bool wire_queue_name_valid(struct wire_bytes name);

/* ---- requests ---- */

#define WIRE_HELLO_SIZE_MIN 12 /* magic, version_min, version_max, two empty strings */
/* And at most: both strings of WIRE_TEXT_SIZE_MAX bytes. A frame before HELLO that is larger
 * is refused at its header (conn.c), never buffered. */
#define WIRE_HELLO_SIZE_MAX (8u + 2u * (2u + WIRE_TEXT_SIZE_MAX))

struct wire_hello { /* WIRE_OP_HELLO */
    uint32_t magic; /* WIRE_MAGIC */
    uint16_t version_min;
    uint16_t version_max;
    struct wire_bytes client_name; /* text16, informational */
    struct wire_bytes auth;        /* text16, shared secret or empty */
};

/* wire_job_spec.flags */
#define WIRE_PUT_RUN_AT 0x01       /* delay_ms holds an absolute time (Unix ms), not a delay */
#define WIRE_PUT_MAX_ATTEMPTS 0x02 /* max_attempts is set (else the queue default) */
#define WIRE_PUT_FLAGS_ALL 0x03

struct wire_job_spec {       /* WIRE_OP_PUT, and each job of WIRE_OP_PUT_BATCH */
    struct wire_bytes queue; /* name8 */
    uint8_t flags;           /* WIRE_PUT_* */
    uint32_t priority;       /* lower first */
    uint64_t delay_ms;       /* delay, or run-at Unix ms with WIRE_PUT_RUN_AT; 0 = now */
    uint32_t ttr_ms;         /* lease length; 0 = the queue default */
    uint32_t max_attempts;   /* with WIRE_PUT_MAX_ATTEMPTS; 0 = unlimited */
    uint64_t ttl_ms;         /* expire unreserved after this long; 0 = never */
    struct wire_bytes key;   /* name8 idempotency key; empty = none */
    struct wire_bytes body;  /* blob32 */
};

struct wire_put_batch {         /* WIRE_OP_PUT_BATCH */
    uint32_t count;             /* 1 .. WIRE_BATCH_COUNT_MAX */
    struct wire_job_spec *jobs; /* decode: malloc'ed, see wire_msg_free */
};

#define WIRE_RESERVE_DETACH 0x01 /* leases outlive the connection (until their deadline) */
#define WIRE_RESERVE_FLAGS_ALL 0x01

struct wire_reserve {    /* WIRE_OP_RESERVE */
    uint32_t count_max;  /* 1 .. LIMIT_RESERVE_MAX_JOBS */
    uint32_t timeout_ms; /* block up to this long for the first job; 0 = poll */
    uint8_t flags;       /* WIRE_RESERVE_* */
    uint8_t queue_count; /* 1 .. LIMIT_RESERVE_MAX_QUEUES */
    struct wire_bytes queues[LIMIT_RESERVE_MAX_QUEUES];
};

struct wire_ack { /* WIRE_OP_ACK, and each item of WIRE_OP_ACK_BATCH */
    uint64_t id;
    uint64_t lease;
    struct wire_bytes result; /* blob32, up to LIMIT_RESULT_MAX_BYTES */
};

struct wire_ack_batch { /* WIRE_OP_ACK_BATCH */
    uint32_t count;     /* 1 .. WIRE_BATCH_COUNT_MAX */
    struct wire_ack *acks;
};

#define WIRE_RELEASE_PRIORITY 0x01 /* set a new priority (else keep the job's) */
#define WIRE_RELEASE_FLAGS_ALL 0x01

struct wire_release { /* WIRE_OP_RELEASE */
    uint64_t id;
    uint64_t lease;
    uint64_t delay_ms;
    uint8_t flags;
    uint32_t priority;
    struct wire_bytes reason; /* text16: the worker's error, kept if the job later goes dead */
};

struct wire_touch { /* WIRE_OP_TOUCH */
    uint64_t id;
    uint64_t lease;
    uint32_t extend_ms; /* new deadline = now + this; 0 = now + the job's ttr */
};

struct wire_bury { /* WIRE_OP_BURY */
    uint64_t id;
    uint64_t lease;
    struct wire_bytes reason; /* text16, up to LIMIT_REASON_MAX_BYTES */
};

struct wire_kick { /* WIRE_OP_KICK: up to count dead jobs of a queue back to ready */
    struct wire_bytes queue;
    uint32_t count; /* >= 1 */
};

struct wire_job_ref { /* WIRE_OP_KICK_JOB, PEEK, DELETE, STATUS */
    uint64_t id;
};

struct wire_peek_next { /* WIRE_OP_PEEK_NEXT */
    struct wire_bytes queue;
    uint8_t state; /* WIRE_STATE_READY, _DELAYED or _DEAD */
};

struct wire_wait { /* WIRE_OP_WAIT */
    uint64_t id;
    uint32_t timeout_ms; /* 0 = answer at once with the current state */
};

struct wire_queue_ref { /* WIRE_OP_PAUSE, RESUME, PURGE */
    struct wire_bytes queue;
};

/* WIRE_OP_STATS (every version) and WIRE_OP_QUEUES (version 2; empty in version 1). Version 2
 * pages the queues in name order: those after cursor, at most limit of them (0: as many as
 * fit one frame); the reply's next_cursor resumes after its last queue. */
struct wire_page {
    struct wire_bytes queue;  /* STATS: one queue; empty = the server and every queue */
    struct wire_bytes cursor; /* v2: empty = from the first name */
    uint32_t limit;           /* v2: queues at most in the reply; 0 = as many as fit */
};

#define WIRE_DELETE_QUEUE_FORCE 0x01 /* delete its jobs too (else a queue with jobs: WRONG_STATE) */
#define WIRE_DELETE_QUEUE_FLAGS_ALL 0x01

struct wire_delete_queue { /* WIRE_OP_DELETE_QUEUE */
    struct wire_bytes queue;
    uint8_t flags; /* WIRE_DELETE_QUEUE_* */
};

#define WIRE_CONFIG_TTR 0x01
#define WIRE_CONFIG_MAX_ATTEMPTS 0x02
#define WIRE_CONFIG_FLAGS_ALL 0x03

struct wire_queue_config { /* WIRE_OP_QUEUE_CONFIG: set a queue's defaults */
    struct wire_bytes queue;
    uint8_t flags; /* which of the fields below to set */
    uint32_t ttr_ms;
    uint32_t max_attempts;
};

/* ---- replies ---- */

struct wire_hello_reply {    /* WIRE_OP_HELLO | REPLY */
    uint16_t version;        /* the negotiated version */
    uint32_t frame_size_max; /* the largest frame the server accepts and sends */
    uint32_t job_size_max;
    uint64_t server_time_ms;       /* Unix ms, to judge deadlines against */
    struct wire_bytes server_name; /* text16, e.g. "spoold 0.1.0" */
};

#define WIRE_PUT_DUPLICATE 0x01 /* the idempotency key was seen: id is the original job */

struct wire_put_result {
    uint64_t id;
    uint8_t flags; /* WIRE_PUT_DUPLICATE */
};

struct wire_put_reply { /* PUT | REPLY */
    uint8_t durability;
    struct wire_put_result job;
};

struct wire_put_batch_reply { /* PUT_BATCH | REPLY: one result per job, in order */
    uint8_t durability;
    uint32_t count;
    struct wire_put_result *jobs;
};

struct wire_delivery {
    uint64_t id;
    uint64_t lease;
    uint32_t attempt; /* 1 on first delivery */
    uint32_t priority;
    uint64_t deadline_ms; /* Unix ms when the lease expires */
    struct wire_bytes queue;
    struct wire_bytes body;
};

struct wire_reserve_reply { /* RESERVE | REPLY: 0 deliveries on timeout */
    uint32_t count;
    struct wire_delivery *deliveries;
};

struct wire_durable_reply { /* ACK, RELEASE, BURY, KICK_JOB, DELETE, PAUSE, RESUME,
                               QUEUE_CONFIG | REPLY */
    uint8_t durability;
};

struct wire_ack_batch_reply { /* ACK_BATCH | REPLY: one wire code per ack (0 = OK) */
    uint8_t durability;
    uint32_t count;
    uint16_t *codes;
};

struct wire_touch_reply { /* TOUCH | REPLY */
    uint8_t durability;
    uint64_t deadline_ms;
};

struct wire_count_reply { /* KICK, PURGE | REPLY */
    uint8_t durability;
    uint64_t count;
};

struct wire_job_info { /* PEEK, PEEK_NEXT, STATUS, WAIT | REPLY */
    uint64_t id;
    uint8_t state; /* WIRE_STATE_* */
    struct wire_bytes queue;
    uint32_t priority;
    uint32_t attempts;
    uint32_t max_attempts;
    uint32_t ttr_ms;
    uint64_t created_ms;      /* Unix ms of the put */
    uint64_t ready_at_ms;     /* when it is (or was) due */
    uint64_t deadline_ms;     /* lease deadline while reserved, else 0 */
    uint64_t finished_ms;     /* when it was acked or went dead, else 0 */
    struct wire_bytes reason; /* text16: why it is dead */
    struct wire_bytes result; /* blob32: the ack's result (WAIT, STATUS of a done job) */
    struct wire_bytes body;   /* blob32: PEEK and PEEK_NEXT only */
};

struct wire_server_stats {
    uint64_t uptime_ms;
    uint32_t connections;
    uint64_t commits;
    uint64_t log_bytes;
    uint64_t ready, delayed, reserved, dead;
    uint64_t total_put;
    uint64_t total_acked;
    /* version 2 */
    uint32_t queues;       /* queues the server knows (all pages) */
    uint64_t expired;      /* jobs whose ttl ran out, since start */
    uint64_t keys;         /* idempotency keys remembered now */
    uint64_t keys_evicted; /* keys forgotten early at --max-idempotency-keys, since start */
};

#define WIRE_QUEUE_PAUSED 0x01

struct wire_queue_stats {
    struct wire_bytes name;
    uint8_t flags; /* WIRE_QUEUE_PAUSED */
    uint64_t ready, delayed, reserved, dead;
    uint64_t total_put;
    uint64_t oldest_ready_age_ms;
    uint64_t ack_floor;
    uint32_t ttr_ms;       /* default */
    uint32_t max_attempts; /* default */
    uint64_t expired;      /* version 2: expired jobs still remembered */
};

struct wire_stats_reply { /* STATS | REPLY */
    struct wire_server_stats server;
    uint32_t queue_count;
    struct wire_queue_stats *queues;
    struct wire_bytes next_cursor; /* version 2: empty = the last page */
};

struct wire_queue_entry {
    struct wire_bytes name;
    uint8_t flags; /* WIRE_QUEUE_PAUSED */
};

struct wire_queues_reply { /* QUEUES | REPLY */
    uint32_t count;
    struct wire_queue_entry *queues;
    struct wire_bytes next_cursor; /* version 2: empty = the last page */
};

struct wire_error_reply {      /* WIRE_OP_ERROR */
    uint16_t code;             /* wire code: see wire_error_from_wire */
    struct wire_bytes message; /* text16, human-readable */
};

/* Any message; which member is live follows from the opcode (table in PROTOCOL.md). PING,
 * PING|REPLY and QUEUES have an empty payload and use no member. */
union wire_msg {
    struct wire_hello hello;
    struct wire_job_spec put;
    struct wire_put_batch put_batch;
    struct wire_reserve reserve;
    struct wire_ack ack;
    struct wire_ack_batch ack_batch;
    struct wire_release release;
    struct wire_touch touch;
    struct wire_bury bury;
    struct wire_kick kick;
    struct wire_job_ref job_ref;
    struct wire_peek_next peek_next;
    struct wire_wait wait;
    struct wire_queue_ref queue_ref;
    struct wire_page page;
    struct wire_delete_queue delete_queue;
    struct wire_queue_config queue_config;
    struct wire_hello_reply hello_reply;
    struct wire_put_reply put_reply;
    struct wire_put_batch_reply put_batch_reply;
    struct wire_reserve_reply reserve_reply;
    struct wire_durable_reply durable_reply;
    struct wire_ack_batch_reply ack_batch_reply;
    struct wire_touch_reply touch_reply;
    struct wire_count_reply count_reply;
    struct wire_job_info job_info;
    struct wire_stats_reply stats_reply;
    struct wire_queues_reply queues_reply;
    struct wire_error_reply error;
};

/* True if opcode (request, reply or ERROR) has a message in this protocol version. */
bool wire_op_known(uint16_t opcode);

/*
 * Append one whole frame (header + payload) for msg under opcode to b. msg may be NULL for
 * the empty-payload messages. Returns 0; SPOOL_E_TOO_LARGE if the frame would exceed
 * b->size_max or a field exceeds its limit (nothing appended); -ENOMEM; SPOOL_E_UNKNOWN_OP.
 * Encoding checks lengths only; semantic validity is the decoder's job on the other side.
 */
WIRE_MUST_USE int wire_encode(struct wire_buf *b, uint16_t opcode, uint64_t request_id,
                              const union wire_msg *msg);

/* Append an error frame: code is an SPOOL_E_* (see wire_error_to_wire), message may be NULL
 * (then the code's standard sentence is sent) and is cut to WIRE_TEXT_SIZE_MAX. */
WIRE_MUST_USE int wire_encode_error(struct wire_buf *b, uint64_t request_id, int code,
                                    const char *message);

/* wire_encode for a connection that negotiated version (1 .. WIRE_VERSION; what
 * wire_encode does is version 1): a layout that version 2 changed (STATS, QUEUES and their
 * replies, the EXPIRED job state) is written as that version has it. */
WIRE_MUST_USE int wire_encode_v(struct wire_buf *b, uint16_t version, uint16_t opcode,
                                uint64_t request_id, const union wire_msg *msg);

/*
 * Decode payload[0..len) (the bytes after the header) of a frame with opcode into *out.
 * Returns 0 or an error as described at the top of this file. On success, batch arrays in
 * *out are owned by the caller: release them with wire_msg_free(opcode, out).
 */
WIRE_MUST_USE int wire_decode(uint16_t opcode, const uint8_t *payload, size_t len,
                              union wire_msg *out);

/* wire_decode in the layouts of a negotiated version (see wire_encode_v). */
WIRE_MUST_USE int wire_decode_v(uint16_t version, uint16_t opcode, const uint8_t *payload,
                                size_t len, union wire_msg *out);

/* wire_decode through the generic field walk only, without the fast paths (job specs): for
 * the tests that hold each fast path to the walk. Same contract as wire_decode. */
WIRE_MUST_USE int wire_decode_walk(uint16_t opcode, const uint8_t *payload, size_t len,
                                   union wire_msg *out);

/* Free what wire_decode allocated for this opcode (safe on any decoded message). */
void wire_msg_free(uint16_t opcode, union wire_msg *msg);

#endif
