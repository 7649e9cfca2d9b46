/*
 * spool/client.h: libspool, the C client of the spool job queue server (spoold).
 *
 * A spool_client is one TCP connection speaking the protocol of docs/PROTOCOL.md. Every call
 * below is blocking: it sends one request and returns when its reply has arrived (or an
 * error). A client is not thread-safe: use one per thread, or serialise calls on it.
 *
 * Errors: every int-returning call returns 0 on success, a negative errno for a system error
 * (-ECONNREFUSED, -ENOMEM, -EPIPE, ...) or an SPOOL_E_* code of <spool/error.h>; the server's
 * errors arrive as their SPOOL_E_* code (SPOOL_E_NOT_FOUND, SPOOL_E_LEASE_EXPIRED, ...). After
 * an I/O or protocol error (SPOOL_E_CONNECTION_CLOSED, SPOOL_E_PROTOCOL, SPOOL_E_TIMED_OUT,
 * negative errno from the socket) the connection is unusable: every later call returns
 * SPOOL_E_CONNECTION_CLOSED; spool_close it and connect again. Server errors about a request
 * (NOT_FOUND, LEASE_EXPIRED, QUEUE_FULL, ...) leave the connection usable.
 *
 * Memory: input pointers are only read during the call. Memory returned through an out
 * pointer belongs to the caller and is released with the free function named in the call's
 * comment (one call frees the whole result, strings and bodies included). Output pointers are
 * left untouched on error.
 *
 * Times: *_ms durations are milliseconds; deadline_ms, created_ms and similar are absolute Unix
 * times in milliseconds on the server's clock.
 */
#ifndef SPOOL_CLIENT_H
#define SPOOL_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque connection handle. */
typedef struct spool_client spool_client;

/* Where spoold listens by default. */
#define SPOOL_DEFAULT_ADDRESS "127.0.0.1:7711"

/* Durability a mutating reply reached (see spool_last_durability). */
enum spool_durability {
    SPOOL_DURABLE_NONE = 0,    /* applied in memory only */
    SPOOL_DURABLE_WRITTEN = 1, /* in the server's page cache: survives a server crash */
    SPOOL_DURABLE_SYNCED = 2,  /* fdatasync'ed: survives power loss */
};

/* A job's state. */
enum spool_job_state {
    SPOOL_STATE_UNKNOWN = 0,
    SPOOL_STATE_READY = 1,
    SPOOL_STATE_DELAYED = 2,
    SPOOL_STATE_RESERVED = 3,
    SPOOL_STATE_DEAD = 4,
    SPOOL_STATE_DONE = 5, /* acked */
    SPOOL_STATE_EXPIRED = 6, /* its ttl ran out before an ack (protocol version 2; a version 1
                                server says SPOOL_STATE_DEAD with reason "expired") */
};

/* "ready", "delayed", "reserved", "dead", "done", "expired" or "unknown"; static storage. */
SPOOL_API const char *spool_state_name(int state);

/* ---- connections ---- */

struct spool_connect_options {
    int timeout_ms;          /* connect + handshake; <= 0 means 5000 */
    int io_timeout_ms;       /* per call, added to a reserve/wait timeout; <= 0 = no limit */
    const char *auth;        /* shared secret, or NULL */
    const char *client_name; /* shown in server logs; NULL = "libspool" */
    int protocol_max;        /* newest protocol version to offer; <= 0 = the newest this
                                library speaks (SPOOL_PROTOCOL_VERSION); 1 behaves as a
                                version 1 client (tests, old-server checks) */
};

/* The newest wire protocol version this library speaks (docs/PROTOCOL.md). */
#define SPOOL_PROTOCOL_VERSION 2

/*
 * Connect to address ("HOST:PORT", "[V6ADDR]:PORT"; NULL = SPOOL_DEFAULT_ADDRESS) and do the
 * handshake, within timeout_ms (<= 0 means 5000). On success *out is a new client owned by the
 * caller (release with spool_close). Errors: SPOOL_E_RESOLVE, SPOOL_E_TIMED_OUT,
 * -ECONNREFUSED and other socket errors, SPOOL_E_VERSION_UNSUPPORTED, SPOOL_E_AUTH_FAILED,
 * SPOOL_E_PROTOCOL (not a spool server), SPOOL_E_INVALID_ARGUMENT (malformed address), -ENOMEM.
 */
SPOOL_API int spool_connect(const char *address, int timeout_ms, spool_client **out);

/* spool_connect with options (NULL = defaults). */
SPOOL_API int spool_connect_opts(const char *address, const struct spool_connect_options *opts,
                                 spool_client **out);

/* Close the connection and free the client (NULL is a no-op). Leases this connection holds
 * (unless reserved with SPOOL_RESERVE_DETACH) are released by the server at once. */
SPOOL_API void spool_close(spool_client *c);

/* Durability (enum spool_durability) reported by the last successful mutating call. */
SPOOL_API int spool_last_durability(const spool_client *c);

/* Largest job body the server accepts (from the handshake). */
SPOOL_API size_t spool_job_size_max(const spool_client *c);

/* Round trip with no effect. Errors: connection errors (SPOOL_E_CONNECTION_CLOSED,
 * SPOOL_E_TIMED_OUT with an io timeout, negative errno). */
SPOOL_API int spool_ping(spool_client *c);

/* ---- producing ---- */

/* spool_job_spec.max_attempts value for "no limit". */
#define SPOOL_ATTEMPTS_UNLIMITED UINT32_MAX

/* A job to put. Zero-initialise, then set queue and body: every other zero means default. */
struct spool_job_spec {
    const char *queue;     /* 1..200 bytes of [A-Za-z0-9._:-] */
    const void *body;      /* body_len bytes (may be NULL when body_len is 0) */
    size_t body_len;       /* up to spool_job_size_max() */
    uint32_t priority;     /* lower runs first; FIFO within a priority */
    uint64_t delay_ms;     /* ready after this delay */
    uint64_t run_at_ms;    /* if non-zero: ready at this Unix ms (delay_ms is ignored) */
    uint32_t ttr_ms;       /* lease length; 0 = queue default (30 s) */
    uint32_t max_attempts; /* 0 = queue default (10); SPOOL_ATTEMPTS_UNLIMITED = no limit */
    uint64_t ttl_ms;       /* drop the job if not done this long after the put; 0 = never */
    const char *key;       /* idempotency key (<= 255 bytes), or NULL */
};

/*
 * Put one job; *id_out (may be NULL) receives its id. A repeated idempotency key returns the
 * original job's id and enqueues nothing. Errors: SPOOL_E_TOO_LARGE (body above the server's
 * job maximum), SPOOL_E_BAD_REQUEST (queue name), SPOOL_E_QUEUE_FULL, SPOOL_E_DISK_FULL,
 * SPOOL_E_INVALID_ARGUMENT (NULL queue), connection errors.
 */
SPOOL_API int spool_put(spool_client *c, const struct spool_job_spec *job, uint64_t *id_out);

struct spool_put_result {
    uint64_t id;
    int duplicate; /* 1 if the idempotency key was seen: id is the original job */
};

/*
 * Put count jobs (1..4096) in one request, all or nothing; results (may be NULL) receives
 * count entries in order. The batch must fit in one frame of the server's maximum
 * (SPOOL_E_TOO_LARGE otherwise: split it). Errors as spool_put.
 */
SPOOL_API int spool_put_batch(spool_client *c, const struct spool_job_spec *jobs, size_t count,
                              struct spool_put_result *results);

/* ---- consuming ---- */

/* spool_reserve flag: the leases survive this connection's close (until their deadline), so
 * another process may ack them (the CLI's `spool reserve` uses it). */
#define SPOOL_RESERVE_DETACH 0x01u

struct spool_delivery {
    uint64_t id;
    uint64_t lease;   /* token for ack/release/touch/bury */
    uint32_t attempt; /* 1 on the first delivery */
    uint32_t priority;
    uint64_t deadline_ms; /* the lease expires at this Unix ms unless touched */
    const char *queue;    /* NUL-terminated */
    const void *body;     /* body_len bytes, followed by a NUL byte (not counted) */
    size_t body_len;
};

/*
 * Reserve up to count_max (1..1024) jobs from the queues (1..16, in order of preference),
 * waiting up to timeout_ms for the first (0 = do not wait). On success *out is an array of
 * *count_out deliveries in one allocation, released with spool_deliveries_free; on timeout
 * *count_out is 0 and *out NULL (not an error). Errors: SPOOL_E_BAD_REQUEST (queue name),
 * SPOOL_E_INVALID_ARGUMENT, connection errors.
 */
SPOOL_API int spool_reserve(spool_client *c, const char *const *queues, size_t queue_count,
                            uint32_t count_max, uint32_t timeout_ms, unsigned flags,
                            struct spool_delivery **out, size_t *count_out);

/* Free what spool_reserve returned (NULL is a no-op). */
SPOOL_API void spool_deliveries_free(struct spool_delivery *deliveries);

/*
 * Acknowledge a delivery: the job is done and never delivered again. result (result_len <=
 * 64 KiB, may be NULL when 0) is kept for spool_wait/spool_status. Errors:
 * SPOOL_E_LEASE_EXPIRED (the lease is stale), SPOOL_E_NOT_FOUND, SPOOL_E_TOO_LARGE,
 * connection errors.
 */
SPOOL_API int spool_ack(spool_client *c, uint64_t id, uint64_t lease, const void *result,
                        size_t result_len);

struct spool_ack_item {
    uint64_t id;
    uint64_t lease;
    const void *result;
    size_t result_len;
};

/*
 * Ack count (1..4096) deliveries in one request; each succeeds or fails on its own. codes
 * (may be NULL) receives count results: 0 or an SPOOL_E_* code. Returns 0 if every ack
 * succeeded, else the first failing item's code (or a connection error, then codes is
 * untouched).
 */
SPOOL_API int spool_ack_batch(spool_client *c, const struct spool_ack_item *items, size_t count,
                              int *codes);

/* Give a delivery back: ready again after delay_ms, with a new priority if priority >= 0
 * (else the job keeps its own). Errors: SPOOL_E_LEASE_EXPIRED, SPOOL_E_NOT_FOUND, connection
 * errors. */
SPOOL_API int spool_release(spool_client *c, uint64_t id, uint64_t lease, uint64_t delay_ms,
                            int64_t priority);

/* Release after a failed attempt: ready again after delay_ms, priority kept, and reason (the
 * worker's error text, NULL = none, <= 1024 bytes) recorded: if this was the job's last
 * attempt it goes dead with this reason. Errors as spool_release, and SPOOL_E_TOO_LARGE. */
SPOOL_API int spool_fail(spool_client *c, uint64_t id, uint64_t lease, uint64_t delay_ms,
                         const char *reason);

/* Extend a lease to now + extend_ms (0 = the job's ttr); *deadline_ms_out (may be NULL) gets
 * the new deadline. Errors: SPOOL_E_LEASE_EXPIRED, SPOOL_E_NOT_FOUND, connection errors. */
SPOOL_API int spool_touch(spool_client *c, uint64_t id, uint64_t lease, uint32_t extend_ms,
                          uint64_t *deadline_ms_out);

/* Move a delivery to the dead state with reason (NULL = none, <= 1024 bytes). Errors:
 * SPOOL_E_LEASE_EXPIRED, SPOOL_E_NOT_FOUND, SPOOL_E_TOO_LARGE, connection errors. */
SPOOL_API int spool_bury(spool_client *c, uint64_t id, uint64_t lease, const char *reason);

/* ---- managing jobs ---- */

/* Move up to count (>= 1) dead jobs of queue back to ready, oldest first; *kicked_out (may be
 * NULL) gets how many moved. Errors: SPOOL_E_BAD_REQUEST, connection errors. */
SPOOL_API int spool_kick(spool_client *c, const char *queue, uint32_t count, uint64_t *kicked_out);

/* Move one dead or delayed job to ready. Errors: SPOOL_E_NOT_FOUND, SPOOL_E_WRONG_STATE,
 * connection errors. */
SPOOL_API int spool_kick_job(spool_client *c, uint64_t id);

/* Delete a ready, delayed or dead job. Errors: SPOOL_E_NOT_FOUND, SPOOL_E_WRONG_STATE (it is
 * reserved), connection errors. */
SPOOL_API int spool_delete(spool_client *c, uint64_t id);

/* A job as PEEK, STATUS and WAIT report it. Strings are NUL-terminated; body and result are
 * followed by a NUL byte not counted in their length. */
struct spool_job {
    uint64_t id;
    int state; /* enum spool_job_state */
    const char *queue;
    uint32_t priority;
    uint32_t attempts; /* deliveries so far */
    uint32_t max_attempts;
    uint32_t ttr_ms;
    uint64_t created_ms;
    uint64_t ready_at_ms;
    uint64_t deadline_ms; /* while reserved, else 0 */
    uint64_t finished_ms; /* when done or dead, else 0 */
    const char *reason;   /* why it is dead, "" otherwise */
    const void *result;   /* the ack's result (done jobs) */
    size_t result_len;
    const void *body; /* peek only; empty for status and wait */
    size_t body_len;
};

/* Free a job returned by spool_peek, spool_peek_next, spool_status or spool_wait (NULL is a
 * no-op). */
SPOOL_API void spool_job_free(struct spool_job *job);

/* A job with its body by id. On success *out is the caller's (spool_job_free). Errors:
 * SPOOL_E_NOT_FOUND, connection errors. */
SPOOL_API int spool_peek(spool_client *c, uint64_t id, struct spool_job **out);

/* The next job of queue in state (SPOOL_STATE_READY: next to be delivered; _DELAYED: next due;
 * _DEAD: oldest). Errors: SPOOL_E_NOT_FOUND (none), SPOOL_E_BAD_REQUEST, connection errors. */
SPOOL_API int spool_peek_next(spool_client *c, const char *queue, int state,
                              struct spool_job **out);

/* State, attempts, times (and result, when done) of a job. Errors: SPOOL_E_NOT_FOUND,
 * connection errors. */
SPOOL_API int spool_status(spool_client *c, uint64_t id, struct spool_job **out);

/* Wait up to timeout_ms for a job to be done (acked: with its result) or dead; on timeout
 * returns 0 with the job's current state. Errors: SPOOL_E_NOT_FOUND, connection errors. */
SPOOL_API int spool_wait(spool_client *c, uint64_t id, uint32_t timeout_ms, struct spool_job **out);

/* ---- queues and the server ---- */

struct spool_queue_stats {
    const char *name;
    int paused;
    uint64_t ready, delayed, reserved, dead;
    uint64_t total_put;
    uint64_t oldest_ready_age_ms;
    uint64_t ack_floor;    /* log sequence number below which every job of the queue is settled */
    uint32_t ttr_ms;       /* default */
    uint32_t max_attempts; /* default; 0 = unlimited */
    uint64_t expired;      /* expired jobs the server still remembers (protocol 2, else 0) */
};

struct spool_stats {
    uint64_t uptime_ms;
    uint32_t connections;
    uint64_t commits;
    uint64_t log_bytes;
    uint64_t ready, delayed, reserved, dead; /* all queues */
    uint64_t total_put;
    uint64_t total_acked;
    size_t queue_count;
    struct spool_queue_stats *queues;
    /* Protocol version 2 (0 from a version 1 server). */
    uint64_t expired;      /* jobs whose ttl ran out since the server started */
    uint64_t keys;         /* idempotency keys remembered */
    uint64_t keys_evicted; /* keys forgotten early at the server's --max-idempotency-keys */
};

/* Server statistics and those of one queue (queue non-NULL) or of every queue (NULL). With
 * protocol version 2 every queue is fetched, page by page (in name order); a version 1 server
 * answers with as many as fit one frame. *out is the caller's (spool_stats_free). Errors:
 * SPOOL_E_NOT_FOUND (no such queue), SPOOL_E_BAD_REQUEST, connection errors. */
SPOOL_API int spool_stats(spool_client *c, const char *queue, struct spool_stats **out);
SPOOL_API void spool_stats_free(struct spool_stats *stats);

struct spool_queue_info {
    const char *name;
    int paused;
};

/* Every queue the server knows (protocol version 2: fetched page by page, in name order; a
 * version 1 server answers with as many as fit one frame). On success *out is an array of
 * *count_out entries followed by one with a NULL name, in one allocation (spool_queues_free).
 * Errors: connection errors. */
SPOOL_API int spool_queues(spool_client *c, struct spool_queue_info **out, size_t *count_out);
SPOOL_API void spool_queues_free(struct spool_queue_info *queues);

/* Stop / restart deliveries from a queue (puts are still accepted); a queue not seen before
 * is created (so it can be paused before its first put). Errors: SPOOL_E_INVALID_ARGUMENT
 * (queue name), connection errors. */
SPOOL_API int spool_pause(spool_client *c, const char *queue);
SPOOL_API int spool_resume(spool_client *c, const char *queue);

/* Delete every ready, delayed and dead job of queue (reserved ones stay); *purged_out (may be
 * NULL) gets how many (0 for an unknown queue). Errors: SPOOL_E_INVALID_ARGUMENT, connection
 * errors. */
SPOOL_API int spool_purge(spool_client *c, const char *queue, uint64_t *purged_out);

/* Delete a queue: its jobs, idempotency keys and settings. Without force a queue that still
 * has jobs is refused with SPOOL_E_WRONG_STATE; with force its jobs go too, reserved ones
 * included (their workers' acks then get SPOOL_E_NOT_FOUND). *deleted_out (may be NULL) gets
 * how many jobs were deleted. Errors: SPOOL_E_NOT_FOUND (no such queue), SPOOL_E_WRONG_STATE,
 * SPOOL_E_INVALID_ARGUMENT (queue name), SPOOL_E_UNKNOWN_OP (a server without DELETE_QUEUE),
 * connection errors. */
SPOOL_API int spool_queue_delete(spool_client *c, const char *queue, int force,
                                 uint64_t *deleted_out);

/* The protocol version negotiated with the server (1 or 2). */
SPOOL_API int spool_protocol_version(const spool_client *c);

/* Set a queue's defaults for later puts: ttr_ms (0 = keep) and max_attempts (< 0 = keep, 0 =
 * unlimited); creates the queue if needed. Errors: SPOOL_E_INVALID_ARGUMENT, connection
 * errors. */
SPOOL_API int spool_queue_set_defaults(spool_client *c, const char *queue, uint32_t ttr_ms,
                                       int64_t max_attempts);

/* ---- pipelining (lower level, for load generators) ---- */

/*
 * Queue requests without waiting, send them with spool_pipeline_flush, and read replies with
 * spool_pipeline_recv as they come (possibly out of order: match request_id). Blocking calls
 * may be mixed in: replies to pipelined requests that arrive meanwhile are kept for
 * spool_pipeline_recv. At most SPOOL_PIPELINE_MAX requests may be outstanding.
 */
#define SPOOL_PIPELINE_MAX 65536

struct spool_reply {
    uint64_t request_id;
    uint16_t opcode; /* the request's opcode (0 when error is set: match by request_id) */
    int error;       /* 0 or the server's SPOOL_E_* */
    int durability;  /* enum spool_durability */
    uint64_t id;     /* PUT: the job id */
};

/* Queue a PUT / ACK; *request_id_out (may be NULL) gets its id. Errors: SPOOL_E_BUSY (too
 * many outstanding), SPOOL_E_TOO_LARGE, SPOOL_E_INVALID_ARGUMENT, -ENOMEM. */
SPOOL_API int spool_pipeline_put(spool_client *c, const struct spool_job_spec *job,
                                 uint64_t *request_id_out);
SPOOL_API int spool_pipeline_ack(spool_client *c, uint64_t id, uint64_t lease, const void *result,
                                 size_t result_len, uint64_t *request_id_out);
/* Send everything queued. Errors: connection errors. */
SPOOL_API int spool_pipeline_flush(spool_client *c);
/* Flush, then block for the next reply to a pipelined request. A server error for that
 * request is reported in out->error with 0 returned. Errors: SPOOL_E_INVALID_ARGUMENT (nothing
 * outstanding), connection errors. */
SPOOL_API int spool_pipeline_recv(spool_client *c, struct spool_reply *out);
/* Pipelined requests whose replies have not been returned by spool_pipeline_recv. */
SPOOL_API size_t spool_pipeline_pending(const spool_client *c);

#ifdef __cplusplus
}
#endif

#endif
