/*
 * spoold's runtime: one thread, one io_uring for network and disk, one log, one queue state.
 *
 * Who owns what. struct server owns the ring, the listening socket, the signalfd, the buffer
 * ring that receives feed from, the log (storage/log.h) and the queue state (queue.h). Each
 * struct conn owns its socket, its input bytes (at most one frame beyond what it has parsed),
 * its output buffer (bounded: reading stops while it is above CONN_OUT_HIGH), the requests it
 * has blocked (reserves, waits) and its leases (queue_owner).
 *
 * Durability. A request that logged records gets its reply held in server.held (FIFO in seq
 * order, since appends are serialized) until the log's durable watermark passes its last
 * record; the reply's first payload byte then says which level was reached. Requests that
 * logged nothing answer at once. A put becomes reservable only from queue_durable, called with
 * the same watermark.
 *
 * Back pressure. When the log's open batch is full (log_append -ENOBUFS), the request is left
 * unparsed in its connection's input, the connection goes to server.stalled, and is run again
 * after the next durable watermark. A connection whose output is above CONN_OUT_HIGH stops
 * reading until it drains, and its blocked reserves are paused (queue_reserver_pause: no job
 * is handed to a connection that is not reading its replies) until its output is below
 * CONN_OUT_LOW.
 *
 * Every CQE's user_data is a struct io_completion (io.h): the engine's ops and ours are
 * dispatched the same way.
 *
 * The walk of one PUT, one loop turn after another (server_run):
 *   1. socket: a recv CQE appends the bytes to the conn's input (conn.c conn_recv_complete);
 *      the conn goes to server.runnable.
 *   2. handler: conns_run -> conn_run decodes the frame (wire/) and calls handle_put through
 *      the opcode table (handlers.c), which checks admission (size, disk, memory).
 *   3. queue: queue_put validates, encodes a PUT record and emits it; the job is PENDING
 *      (not reservable). The call returns the record's seq (queue_logged for the other
 *      calls): the handler takes the reply's horizon from it, not from the server.
 *   4. log: server_emit appends the record to the log's open batch (log_append; -ENOBUFS when
 *      the batch is full: the frame stays unparsed and the conn stalls until the commit).
 *   5. reply held: reply_after encodes the reply into server.held with seq_end = seq + 1.
 *   6. fsync: log_tick at the turn's end starts the commit: the batch's write, and its linked
 *      fdatasync under --sync always (up to LOG_COMMITS_IN_FLIGHT_MAX of them in flight, each
 *      reported in log order), later under interval or never (storage/log.h); each
 *      completion reports the written and synced watermarks (on_durable ->
 *      durability_marks_report).
 *   7. reply: the next turn's durable_apply calls queue_durable (the job becomes READY and is
 *      served to waiting reserves) and handler_release_held, which patches the level reached
 *      into the reply's durability byte and queues it on the conn's output; conn_send_next
 *      sends it.
 */
#ifndef SPOOL_SRC_SERVER_H
#define SPOOL_SRC_SERVER_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/signalfd.h>

#include "beanstalk.h"
#include "compact.h"
#include "config.h"
#include "durability.h"
#include "list.h"
#include "log.h"
#include "map.h"
#include "memwatch.h"
#include "queue.h"
#include "wire_message.h"

/* Receive buffers: 128 of 16 KiB (2 MiB) lent to the kernel through one buffer ring; a recv
 * copies out of its buffer at once and returns it, so 128 covers 128 connections receiving in
 * the same turn, and more simply wait a turn (-ENOBUFS re-arms). */
#define SERVER_RECV_BUFFERS 128
#define SERVER_RECV_BUFFER_SIZE (16 * 1024)
#define SERVER_RECV_GROUP 1
/* A connection's receive is multishot where the kernel can bound one by bytes (sqe->optlen,
 * added in 2025; probed at start, server.c): armed once, it posts a completion per read until
 * it has delivered this much, then ends, and is armed again if the connection still wants
 * input. So a connection that should stop reading takes in at most this much more (plus one
 * buffer: the last read may fill a whole one), with no cancel racing the kernel. */
#define SERVER_RECV_CREDIT (4u * SERVER_RECV_BUFFER_SIZE)
/* Ring size: room for a recv and a send per active connection per turn plus the log's few. */
#define SERVER_RING_ENTRIES 1024
/* Frames one connection may run per loop turn before others get theirs: fairness bound. */
#define CONN_FRAMES_PER_TURN 256
/* Output above this stops reading from the connection until the peer drains it: 4 MiB is two
 * default frames, enough to keep a pipeline full without letting a slow reader grow memory. */
#define CONN_OUT_HIGH (4u * 1024 * 1024)
/* Paused reserves resume when the connection's unsent output drops below this. */
#define CONN_OUT_LOW (CONN_OUT_HIGH / 2)
/* An empty buffer a connection keeps between requests, at most: one large request or reply
 * grows its buffer to a few MiB (doubling), and the sweep frees empty ones above this so an idle
 * connection does not hold that for its lifetime (conn_trim). 64 KiB covers a pipeline of small
 * requests without a reallocation. */
#define CONN_BUF_KEEP (64u * 1024)
/* How long a peer gets to take its replies: a closing connection's last ones are dropped this
 * long after it began closing; and the shortest window over which, while memory is above the
 * bound, a connection holding CONN_BUF_KEEP or more of them is judged (conn_sweep). */
#define CONN_UNREAD_MS 5000
/* Above the memory bound, a connection whose peer would take longer than this to take the
 * replies it holds, at the pace it took them over the last CONN_UNREAD_MS or more, is closed. */
#define CONN_DRAIN_MAX_MS 30000
/* Jobs a checkpoint walk encodes per loop turn: at ~100 bytes and a cache miss or two each,
 * 4096 is a few hundred microseconds, which is what a turn may add to request latency; a
 * backlog of a million jobs is walked in a few hundred turns. */
#define SERVER_CHECKPOINT_STEP_JOBS 4096
/* Log bytes per live job between checkpoints, at least (server.c checkpoint_due). A walk
 * costs a few hundred ns per live job; a job's PUT takes about 190 bytes of log, so 416 bytes
 * per live job spaces walks by about two puts per job walked: under a growing backlog the
 * walks then take about 5% of the loop (at one put per job walked, 208 bytes, they took 10%).
 * The price: up to 416 bytes of log per live job to replay after a crash, and segments whose
 * jobs are all gone wait that much longer to be deleted (a low disk starts a checkpoint at
 * once whatever this says). */
#define SERVER_CHECKPOINT_LOG_PER_JOB 416u
/* A checkpoint that compaction asks for (to drop the segments it emptied) begins no sooner
 * than this many times the last walk's duration after the last checkpoint began: walks then
 * take at most 1/20 (5%) of the loop, as SERVER_CHECKPOINT_LOG_PER_JOB aims for. With a small
 * state a walk takes no time and the checkpoint comes at once. */
#define SERVER_COMPACT_CHECKPOINT_SPACING 20
/* Refusals (BUSY, auth failures) are logged at most once per interval with a count: an
 * attacker must not be able to flood the log. */
#define CONN_LOG_INTERVAL_MS 1000
/* Blocked reserves and waits per connection: a worker blocks on a handful; more is abuse. */
#define CONN_BLOCKED_MAX 1024

struct server;

/* One kind of refusal logged at most once per CONN_LOG_INTERVAL_MS, with a count. */
struct conn_log_limit {
    uint64_t count;  /* refusals since the last line */
    int64_t next_ms; /* no line before this time (server_now_ms) */
};

struct conn {
    struct server *server;
    uint64_t id;
    int fd;
    struct io_completion recv_completion;
    struct io_completion send_completion;
    bool recv_armed;
    bool send_armed;
    bool closing;           /* no more input; close once output is flushed */
    bool released;          /* its blocked requests and leases were given back */
    bool hello_done;
    uint16_t version;       /* the protocol version HELLO negotiated */
    int64_t accepted_ms;    /* for --handshake-timeout */
    struct list_link handshake_link; /* server.handshaking while !hello_done */
    bool stalled;           /* a request waits for log space */
    int64_t input_ms;       /* when input last arrived (for --frame-timeout) */
    /* CONN_UNREAD_MS: closing, when it began; open, the start of the window its draining is
     * judged over, with what it had sent by then */
    int64_t output_ms;
    uint64_t output_window_sent;
    uint64_t output_sent; /* bytes sent to the peer in all */
    uint8_t *in;            /* unparsed input bytes in[in_start, in_end) */
    uint64_t discard_left;  /* bytes of a refused put still to drop as they arrive */
    size_t in_start;
    size_t in_end;
    size_t in_cap;
    struct wire_buf out;     /* replies appended here */
    struct wire_buf sending; /* in flight to the kernel: never appended to */
    size_t sent;             /* bytes of sending already sent */
    struct queue_owner owner;
    struct list_link blocked; /* struct blocked_request.link */
    uint32_t blocked_count;
    /* Bytes of bodies being read back for its replies (body_fetch): they count with its
     * unsent output toward conn_out_high, or pipelined reserves and peeks of bodies not in
     * the cache would each add up to a frame of replies at once when their reads land. */
    uint64_t fetch_bytes;
    bool reserves_paused;     /* output above CONN_OUT_HIGH: blocked reserves paused */
    struct list_link link;     /* server.conns */
    struct list_link run_link; /* server.runnable or server.stalled */
    struct list_link flush_link; /* server.to_flush: output to send at the end of the turn */
    /* An ACK_BATCH cut short by back pressure resumes here (a PUT_BATCH never is: handlers.c). */
    uint32_t batch_done;
    uint64_t batch_request_id;
    uint64_t batch_seq_end; /* horizon of the records logged by the rounds so far */
    void *batch_results;
    /* Accepted on the --beanstalk listener: speaks beanstalkd's text protocol (beanstalk.h);
     * bs is its protocol state until the connection is released. */
    bool beanstalk;
    struct beanstalk_conn *bs;
};

/* The version the connection's frames use (version 1 layouts before HELLO, whose own layout
 * is the same in every version). */
static inline uint16_t conn_wire_version(const struct conn *conn)
{
    return conn->version != 0 ? conn->version : WIRE_VERSION_MIN;
}

/* A reply waiting for durability. */
struct held_reply {
    struct list_link link;
    uint64_t conn_id;
    uint64_t seq_end; /* released when durable.written_end >= seq_end */
    size_t len;
    bool pooled; /* data holds HELD_REPLY_POOLED_BYTES: back to server.held_free when done */
    uint8_t data[];
};

/* Most held replies (PUT: 26 bytes, ACK_BATCH of 32 acks: 85) fit a pooled node, reused
 * instead of a malloc and free per reply; bigger ones are allocated to size. */
#define HELD_REPLY_POOLED_BYTES 96u
/* Free pooled nodes kept: the replies two commits hold at the throughput measured (a few
 * hundred), with room to spare; past it a node goes back to malloc. 2048 x ~150 bytes. */
#define HELD_REPLY_FREE_MAX 2048u

struct server {
    struct server_config config;
    struct io_uring ring;
    struct io_backend *backend;
    struct log *log;
    struct queue_state *queues;
    struct body_fetcher *fetcher; /* bodies read back for deliveries (body_fetch.h) */
    struct compactor *compactor;  /* copies live jobs out of mostly dead segments (compact.h) */
    /* Both clocks, read once per loop turn as the wait returns, before any completion or
     * request of the turn is handled: the queue's "now" for all of them (queue.h). A lease
     * granted in the turn counts its ttr from this reading. */
    struct queue_time now;
    int listen_fd;
    struct io_completion accept_completion;
    bool accept_armed;
    int64_t accept_retry_ms; /* after a failed accept: not before this time */
    int64_t sweep_ms;        /* next check for stalled partial frames */
    int signal_fd;
    struct io_completion signal_completion;
    struct signalfd_siginfo siginfo;
    struct io_uring_buf_ring *buf_ring;
    uint8_t *buf_base;
    bool recv_multishot; /* receives are multishot, bounded by SERVER_RECV_CREDIT (conn.c) */
    struct io_completion recv_probe_completion; /* ring_setup's probe of that bound */
    struct idmap conns_by_id;
    struct list_link conns;
    struct list_link zombies; /* closed conns, freed at the end of the loop turn */
    uint32_t conn_count;      /* every open connection, handshaking ones included */
    uint32_t handshake_count; /* of which still before HELLO (server.handshaking) */
    struct conn_log_limit busy_log; /* BUSY refusals */
    struct conn_log_limit auth_log; /* AUTH_FAILED at HELLO */
    /* the periodic count of jobs gone dead and expired (server.c jobs_report) */
    int64_t report_next_ms;
    uint64_t report_went_dead, report_expired;
    struct list_link handshaking; /* conns before HELLO, oldest first */
    uint64_t next_conn_id;
    struct list_link runnable; /* conns with input to parse */
    struct list_link stalled;  /* conns waiting for log space */
    struct list_link held;     /* held_reply, seq order */
    struct list_link held_free; /* pooled held_reply nodes not in use */
    uint32_t held_free_count;
    struct wire_buf reply_scratch; /* where held replies are encoded before they are copied */
    struct list_link to_flush; /* conns given output outside their own run (conn_flush_later) */
    /* What the log reported: written and synced watermarks apart, so that a reply claims
     * SYNCED only when its own records were fdatasync'ed (durability.h). */
    struct durability_marks durable;
    uint64_t durable_applied; /* written watermark the loop has acted on */
    int64_t stop_started_ms;
    bool log_full;
    int fatal_error;
    bool stopping;
    int stop_error; /* a stop begun on an error (a job body unreadable): server_run returns it */
    /* checkpoints */
    bool checkpoint_in_flight; /* the log is writing one */
    uint64_t checkpoint_anchor; /* of the walk in progress (queue_checkpoint_active) */
    int64_t checkpoint_started_ns;
    uint32_t checkpoint_turns;  /* loop turns the walk in progress has taken */
    bool checkpoint_walked;     /* the walk is complete: the payload waits for its anchor */
    bool checkpoint_failed; /* the last attempt could not start (shutdown does not retry) */
    int64_t checkpoint_last_ms;
    uint64_t checkpoint_bytes; /* log bytes appended since the last checkpoint */
    uint64_t checkpoint_jobs;      /* live jobs the last checkpoint walked */
    uint64_t checkpoint_walk_jobs; /* live jobs at the anchor of the walk in progress */
    uint64_t checkpoint_payload_bytes; /* size of the last snapshot */
    int64_t checkpoint_walk_ms_last;   /* how long the last walk took (compaction's spacing) */
    /* disk headroom: while server_space_low(), puts are refused with DISK_FULL (handlers.c) */
    bool space_low;              /* the episode the loop has seen begin (logged once) */
    uint64_t puts_refused_space; /* jobs refused in the episode in progress */
    /* the memory bound: while server_memory_low(), puts are refused with QUEUE_FULL */
    struct memwatch memory;
    int reserve_fd;              /* the checkpoint's space (server.c), or -1 */
    uint64_t reserve_bytes;      /* the largest size it was made to */
    bool reserve_short;          /* it could not be made as large as the next checkpoint */
    /* stats */
    struct server_metrics metrics; /* for /metrics (metrics.h, via queue.h): loop thread only */
    struct observe *observe;       /* the HTTP listener's side of the loop (observe.h) */
    int64_t started_ms;
    uint64_t commits;
    uint64_t log_bytes;
    uint64_t total_acked;
    /* the beanstalkd listener (beanstalk.h), NULL without --beanstalk */
    struct beanstalk_state *beanstalk;
    char beanstalk_addr[300]; /* HOST:PORT it listens on, for the ready file */
};

/* Monotonic ms for the server's own periods (checkpoint interval, sweeps, handshake and
 * frame timeouts, accept retry, uptime): a step of the wall clock moves none of them. The
 * queue state takes both clocks (server->now, queue.h: its timers run on the monotonic one,
 * Unix ms stay on disk and on the wire). */
int64_t server_now_ms(void);
/* server_now_ms() as it was at the start of this loop turn (server->now, read once a turn). */
static inline int64_t server_turn_ms(const struct server *server)
{
    return server->now.mono_ns / 1000000;
}

/* The disk headroom is used: the log cannot reserve its next segment (log_space_low) or the
 * next checkpoint has no space reserved. New jobs are refused while this is true. */
bool server_space_low(const struct server *server);

/* Resident memory is above the bound (memwatch.h): new jobs are refused while this is true. */
bool server_memory_low(const struct server *server);
/* Above three quarters of the memory bound (or low): connections are read less far ahead. */
bool server_memory_tight(const struct server *server);

/* Bind and listen on host:port (a non-blocking multishot accept is armed by the caller);
 * *fd and addr ("HOST:PORT" as bound, port 0 resolved) set. */
SPOOL_MUST_USE int server_listen(struct server *server, const char *host, uint16_t port,
                                 int *fd, char *addr, size_t addr_len);

/* A submission queue entry of the server's ring (the queue is submitted first when full). */
struct io_uring_sqe *server_sqe(struct server *server);

/* Lifecycle (server.c). */
SPOOL_MUST_USE int server_start(struct server *server, const struct server_config *config);
int server_run(struct server *server);
void server_destroy(struct server *server);

/* Connections (conn.c). */
void conn_accepted(struct server *server, int fd);
/* Accepted on the beanstalk listener: no handshake, the connection limit applies at once. */
void conn_accepted_beanstalk(struct server *server, int fd);
/* Leave the request unparsed and run the connection again after the next durable watermark
 * (the log's open batch is full). */
void conn_stall(struct conn *conn);
void conn_close(struct conn *conn);
void conn_run(struct conn *conn, uint32_t frames_max);
void conn_flush(struct conn *conn);
/* Output appended outside the connection's own run (released replies, woken reserves and
 * waits): sent once at the end of the turn with whatever else the turn gives it, not one send
 * per reply (a send in flight would hold the rest back for a whole turn). */
void conn_flush_later(struct conn *conn);
void conns_flush(struct server *server);
void conn_make_runnable(struct conn *conn);
void conn_arm_recv(struct conn *conn);
/* Receive buffer bid of the ring's SERVER_RECV_BUFFERS. */
uint8_t *server_recv_buffer(const struct server *server, uint16_t bid);
/* Give receive buffer bid back to the kernel's ring. */
void server_recv_buffer_return(struct server *server, uint16_t bid);
/* Close connections whose started frame has not progressed within --frame-timeout. */
void conn_sweep(struct server *server, int64_t now_ms);
/* Free the connection's empty buffers above CONN_BUF_KEEP (conn_sweep calls it). */
void conn_trim(struct conn *conn);
struct conn *conn_by_id(struct server *server, uint64_t id);
void conn_error(struct conn *conn, uint64_t request_id, int code, const char *message);
/* A framing-level error: one error frame, then stop reading, flush and close. */
void conn_fail(struct conn *conn, uint64_t request_id, int code, const char *message);
/* "ADDR:PORT" of the connection's peer (IPv4 or IPv6), or "unknown:0". */
void conn_peer_name(const struct conn *conn, char *out, size_t size);
/* HELLO accepted: leave the handshake pool. False if the connection limit is full (the
 * connection was refused with BUSY and is closing). */
bool conn_handshake_done(struct conn *conn);
/* Log a refusal of conn (msg, why, its peer address) unless one of this kind was logged less
 * than CONN_LOG_INTERVAL_MS ago; the line counts those passed over since the last. */
void conn_log_refusal(struct conn *conn, struct conn_log_limit *limit, const char *msg,
                      const char *why);

/* Handlers (handlers.c). HANDLER_AGAIN: the log is full, nothing was done, run the frame
 * again after the next durable watermark. */
#define HANDLER_AGAIN 1
int handler_dispatch(struct conn *conn, const struct wire_header *header, union wire_msg *msg);
bool handler_known(uint16_t opcode);
/* Above the memory bound: refuse a put of job_count jobs with QUEUE_FULL (the error frame is
 * queued) and count them; true when refused. */
bool handler_put_refused_for_memory(struct conn *conn, uint64_t request_id, uint32_t job_count);
/* Release held replies up to the durable watermark. */
void handler_release_held(struct server *server);
/* A connection goes away: cancel its blocked requests. */
void handler_conn_closed(struct conn *conn);
/* Shutdown begins: answer every blocked RESERVE and WAIT with SHUTTING_DOWN. */
void handler_shutting_down(struct server *server);
/* Bytes of output the connection has not sent yet. */
size_t conn_out_pending(const struct conn *conn);
/* What it owes its peer: that, and the bodies being read back for its replies (fetch_bytes).
 * This is what its reading and its blocked reserves are held against. */
size_t conn_out_owed(const struct conn *conn);
/* Unsent output at which the connection stops being read (CONN_OUT_HIGH; less while memory is
 * tight). */
size_t conn_out_high(const struct conn *conn);
/* Its output drained: resume its paused reserves (once below CONN_OUT_LOW). */
void handler_conn_drained(struct conn *conn);

/* Records to the log (server.c): the queue state's emit. */
int server_emit(void *ctx, uint8_t type, const void *data, uint32_t len, struct log_pos *pos);

#endif
