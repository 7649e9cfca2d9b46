/*
 * beanstalkd's text protocol on a second listener (--beanstalk HOST:PORT), over the same
 * queues, log and event loop as the binary protocol (docs/BEANSTALKD.md).
 *
 * A beanstalk connection is a struct conn whose `bs` is set: conn.c hands its input to
 * beanstalk_conn_run instead of the frame parser, and its sends, receives, limits, leases
 * (queue_owner) and lifetime are the native ones. Tubes are spool queues; a reserved job is
 * leased to the connection's owner, so closing the connection releases it.
 *
 * Order. beanstalkd answers pipelined commands in order, and a reply that confirms a change
 * (INSERTED, DELETED, RELEASED, BURIED, KICKED, TOUCHED, PAUSED) goes out only once the
 * records it logged are durable at the server's --sync level. So a connection's replies pass
 * through its own FIFO of held chunks: a reply is appended to the output directly only when
 * nothing is held before it; otherwise it waits behind the last held chunk, and
 * beanstalk_release_held (each new durable watermark) moves the durable head of every FIFO
 * to the output.
 *
 * Blocking. A reserve that finds nothing waits (queue_reserver) and the connection parses no
 * further command until it is answered, as in beanstalkd. Its deadline is the earlier of its
 * timeout and one second before the soonest lease deadline of a job the connection holds;
 * woken at the latter it answers DEADLINE_SOON.
 */
#ifndef SPOOL_SRC_BEANSTALK_H
#define SPOOL_SRC_BEANSTALK_H

#include <stdbool.h>
#include <stdint.h>

#include "io.h"
#include "list.h"
#include "map.h"
#include "queue.h"

struct conn;
struct server;

/* beanstalkd's LINE_BUF_SIZE: a command line with its CRLF is at most 224 bytes. */
#define BEANSTALK_LINE_MAX 224
/* Tubes one connection may watch: the queues one reserve can wait on (queue.h). */
#define BEANSTALK_WATCH_MAX LIMIT_RESERVE_MAX_QUEUES
/* beanstalkd's safety margin: DEADLINE_SOON within the last second of a TTR. */
#define BEANSTALK_SAFETY_MARGIN_MS 1000
/* Held reply bytes of one connection above which it parses no more commands until some are
 * released: a pipelining producer's INSERTED lines (~20 bytes each) are bounded as its input
 * is. 64 KiB is a few thousand puts in flight, more than one commit takes. */
#define BEANSTALK_HELD_BYTES_HIGH (64u * 1024)

/* The commands, in the order of beanstalkd's stats (cmd-put first): counters index by it. */
enum beanstalk_cmd {
    BS_CMD_PUT,
    BS_CMD_PEEK,
    BS_CMD_PEEK_READY,
    BS_CMD_PEEK_DELAYED,
    BS_CMD_PEEK_BURIED,
    BS_CMD_RESERVE,
    BS_CMD_RESERVE_WITH_TIMEOUT,
    BS_CMD_DELETE,
    BS_CMD_RELEASE,
    BS_CMD_USE,
    BS_CMD_WATCH,
    BS_CMD_IGNORE,
    BS_CMD_BURY,
    BS_CMD_KICK,
    BS_CMD_TOUCH,
    BS_CMD_STATS,
    BS_CMD_STATS_JOB,
    BS_CMD_STATS_TUBE,
    BS_CMD_LIST_TUBES,
    BS_CMD_LIST_TUBE_USED,
    BS_CMD_LIST_TUBES_WATCHED,
    BS_CMD_PAUSE_TUBE,
    BS_CMD_COUNTED, /* the commands below are not in beanstalkd's stats */
    BS_CMD_RESERVE_JOB = BS_CMD_COUNTED,
    BS_CMD_KICK_JOB,
    BS_CMD_QUIT,
    BS_CMD_COUNT,
};

/* What the text protocol keeps of a tube besides the queue: its users and pause timer. */
struct beanstalk_tube {
    char name[LIMIT_QUEUE_NAME_MAX_BYTES + 1];
    uint32_t name_len;
    uint32_t using_count;
    uint32_t watching_count;
    uint32_t waiting_count;
    uint64_t cmd_delete;
    uint64_t cmd_pause_tube;
    int64_t pause_s;         /* of the last pause-tube */
    int64_t pause_until_ns;  /* monotonic; 0: not paused by pause-tube */
};

/* A reply waiting for durability (or behind one that waits). */
struct beanstalk_chunk {
    struct list_link link;
    uint64_t seq_end; /* out once durable.written_end >= seq_end (0: at once) */
    size_t len;
    uint8_t data[];
};

struct beanstalk_conn {
    struct conn *conn;    struct beanstalk_tube *use;
    struct beanstalk_tube *watch[BEANSTALK_WATCH_MAX];
    uint32_t watch_count;
    struct list_link held;     /* struct beanstalk_chunk, in reply order */
    size_t held_bytes;
    struct list_link held_link; /* beanstalk_state.holding while held is not empty */
    uint64_t skip_bytes;       /* input to discard (a put refused before its body) */
    const char *skip_reply;    /* then send this */
    bool discarding;           /* a line over BEANSTALK_LINE_MAX: drop up to its CRLF */
    bool waiting;              /* a reserve is blocked: parse nothing more */
    bool fetching;             /* a reply waits for a job body read back: parse nothing more */
    uint64_t body_missing;     /* the put at the head waits for this much more of its body */
    bool rewait;               /* woken early with nothing to say: wait again at the next run */
    bool producer, worker;     /* has put / has reserved (stats) */
    int64_t timeout_ns;        /* the blocked reserve's own deadline (monotonic) */
    struct queue_reserver reserver;
};

/* The listening socket and its multishot accept. */
struct beanstalk_listener {
    struct server *server;
    int fd; /* -1: none */
    struct io_completion accept_completion;
    bool armed;
    bool canceled; /* the accept was canceled at shutdown */
    int64_t retry_ms; /* after a failed accept: not before this time (server_now_ms) */
};

struct beanstalk_state {
    struct beanstalk_listener listener;
    uint64_t cmd_counts[BS_CMD_COUNTED];
    uint64_t total_connections;
    uint32_t connections;
    uint32_t waiting;
    uint32_t producers, workers;
    struct strmap tubes;    /* name -> struct beanstalk_tube (beanstalk_tube_forget_unused) */
    struct list_link holding; /* beanstalk_conn.held_link */
    uint32_t paused_tubes;  /* with pause_until_ns set */
    char id[17];            /* stats `id`: random hex, per process */
};

/* Listener and state (beanstalk.c). */
SPOOL_MUST_USE int beanstalk_start(struct server *server);
void beanstalk_destroy(struct server *server);
/* A connection accepted on the beanstalk listener: becomes a beanstalk connection. */
void beanstalk_conn_init(struct conn *conn);
/* Parse and run commands from the connection's input (at most cmds_max). */
void beanstalk_conn_run(struct conn *conn, uint32_t cmds_max);
/* Give back its blocked reserve and tube references; free its held replies. */
void beanstalk_conn_closed(struct conn *conn);
/* A new durable watermark: held replies that it covers go out, in order. */
void beanstalk_release_held(struct server *server);
/* Timers of the text protocol (pause-tube): run those due; the next deadline (monotonic ns,
 * INT64_MAX if none). */
void beanstalk_tick(struct server *server);
int64_t beanstalk_next_deadline_ns(const struct server *server);

/* For the command handlers (beanstalk_cmd.c) and the YAML replies (beanstalk_yaml.c). */
/* One more (delta > 0) or one fewer connection names the tube in *count (its using_count or
 * watching_count); its queue, which must exist, is pinned while named (queue_forget.c). One
 * fewer may free the tube (beanstalk_tube_forget_unused): tube is not to be used after. */
void beanstalk_tube_count(struct server *server, struct beanstalk_tube *tube, uint32_t *count,
                          int delta);
/* The tube's record, made if there is none. */
struct beanstalk_tube *beanstalk_tube_get(struct server *server, const char *name,
                                          uint32_t len);
/* Free the tube's record if nothing refers to it and beanstalkd would no longer show the
 * tube: no connection uses, watches or waits on it, no pause-tube runs, and its queue is
 * gone or holds nothing a tube shows (beanstalk_tube_exists). Its counters go with it, as
 * beanstalkd's do with the tube. Else a client naming new tubes (`use a1`, `use a2`, ...)
 * would grow the tube map for the life of the process. */
void beanstalk_tube_forget_unused(struct server *server, struct beanstalk_tube *tube);
/* Forget the records beanstalk_tube_forget_unused missed (a pause that ran out, a queue
 * drained by the native protocol): a few per call, from the server's sweep. */
void beanstalk_sweep(struct server *server);
/* Send bytes in order after everything before them; seq_end: they wait for it to be
 * durable too (0: nothing logged). */
void beanstalk_out(struct conn *conn, uint64_t seq_end, const void *data, size_t len);
/* beanstalkd's error replies, as counted in server metrics.bs_errors (METRICS_BS_ERRORS). */
extern const char *const beanstalk_error_words[];
/* A command's name (e.g. "put") by enum bs_command, NULL if none (beanstalk_cmd.c). */
const char *beanstalk_cmd_name(uint32_t cmd);
/* A "WORD ...\r\n" line (printf format, without the CRLF). */
void beanstalk_reply(struct conn *conn, uint64_t seq_end, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "<head> <len>\r\n<data>\r\n" (FOUND, RESERVED, OK). */
void beanstalk_reply_data(struct conn *conn, const char *head, const void *data, size_t len);
/* Stop parsing until the next durable watermark (the log's open batch is full). */
void beanstalk_stall(struct conn *conn);

/* Commands (beanstalk_cmd.c): run one line (without its CRLF). Returns how many bytes after
 * the line it consumed (a put's body), 0, or -1 when the command must wait for more input
 * (the body is not all here) or for log space (nothing was done: the line stays). */
int beanstalk_cmd_run(struct conn *conn, const char *line, size_t line_len,
                      const uint8_t *rest, size_t rest_len);
/* A blocked reserve: wait or answer (beanstalk_cmd.c). */
void beanstalk_reserve_wake(struct queue_reserver *reserver, struct job **jobs,
                            uint32_t count);
/* The reserve woken with nothing to say (a lease it watched went away): wait again. */
void beanstalk_reserve_again(struct conn *conn);

/* The queue's settings as a QUEUE_META record, paused or not (pause-tube and its timer). */
void beanstalk_meta_paused(const struct queue *queue, bool paused, struct record_meta *meta);

/* YAML replies (beanstalk_yaml.c). */
void beanstalk_yaml_stats(struct conn *conn);
void beanstalk_yaml_stats_job(struct conn *conn, const struct job *job);
void beanstalk_yaml_stats_tube(struct conn *conn, struct queue *queue);
void beanstalk_yaml_list_tubes(struct conn *conn);
/* Whether beanstalkd would have this tube: jobs, users, watchers or waiters, or default. */
bool beanstalk_tube_exists(const struct queue *queue);
void beanstalk_yaml_list_watched(struct conn *conn);

#endif
