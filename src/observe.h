/*
 * The loop's side of the HTTP listener: snapshots out, commands in.
 *
 * The HTTP server (http.c) runs in its own threads and never touches the queue state. It asks
 * the loop for two things through struct observe, whose mutex guards every field below marked
 * "shared", and an eventfd that the loop reads through its io_uring (so a request wakes the
 * loop like any other completion, and the loop never blocks on the HTTP side):
 *
 *   - a snapshot: a copy of every number /metrics and /api/v1 show (server counters, each
 *     queue's stats and counters, the oldest dead jobs). The loop builds one only when asked
 *     (observe_snapshot_get), copying a bounded number of queues per turn (so 10,000 queues
 *     never stall one turn: a snapshot is then a walk over a few turns, like a checkpoint,
 *     not one instant), and publishes it by a pointer swap; a
 *     snapshot younger than OBSERVE_SNAPSHOT_REUSE_MS is served again without asking. It is
 *     immutable once published and freed by its last reader (reference count).
 *   - commands (pause, resume, kick, delete, look a job up): queued, run by the loop at its
 *     next turn like a request, and answered once the records they logged are durable (the
 *     same rule as the binary protocol's replies). The HTTP thread waits for the answer with
 *     a timeout; a command whose waiter gave up is freed by the loop when it finishes.
 *
 * Nothing here runs on the hot path: a turn with no HTTP request costs one flag test.
 */
#ifndef SPOOL_SRC_OBSERVE_H
#define SPOOL_SRC_OBSERVE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "body_fetch.h"
#include "compact.h"
#include "io.h"
#include "list.h"
#include "metrics.h"
#include "queue.h"
#include "record.h"
#include "snap_queue.h"

struct server;

/* A snapshot younger than this is served again: a dashboard and a Prometheus scrape arriving
 * together cost the loop one copy, and a client polling in a loop cannot make the loop copy
 * every queue more than 20 times a second. */
#define OBSERVE_SNAPSHOT_REUSE_MS 50
/* How long an HTTP request waits for the loop (a snapshot, a command's durable answer): a
 * loop turn is bounded to milliseconds, a commit to a second on a troubled disk. */
#define OBSERVE_WAIT_MS 5000
/* Dead jobs a snapshot carries (oldest deaths first, across queues): what a page shows and
 * an operator can kick one by one; the counts per queue are exact regardless. */
#define OBSERVE_DEAD_MAX 100
/* Reason bytes kept per dead job in a snapshot (the whole reason is in GET /api/v1/jobs/ID). */
#define OBSERVE_REASON_MAX 256
/* Commands queued at once: an operator clicks; more than this waiting is a runaway script. */
#define OBSERVE_COMMANDS_MAX 64


struct snap_dead {
    uint64_t id;
    char queue[LIMIT_QUEUE_NAME_MAX_BYTES + 1];
    uint32_t attempts;
    int64_t settled_ms; /* Unix ms */
    char reason[OBSERVE_REASON_MAX + 1];
};

struct snapshot {
    uint32_t refs;             /* shared (observe.mutex) */
    int64_t taken_wall_ms;     /* Unix ms */
    int64_t taken_mono_ms;
    int64_t build_ns;          /* what building this snapshot took the loop, all turns */
    uint32_t build_turns;      /* loop turns the walk took */
    uint32_t queues_copied;    /* entries copied in full (the others had not changed) */
    struct server_metrics server;
    struct queue_totals totals;
    int64_t uptime_ms;
    uint32_t connections;
    uint32_t handshakes;
    uint64_t conn_input_bytes;  /* unparsed input all connections hold */
    uint64_t conn_output_bytes; /* replies all connections have not been sent yet */
    uint64_t conn_buffer_bytes; /* buffer memory all connections have allocated */
    uint64_t commits;
    uint64_t log_appended_bytes;
    uint32_t log_segments;
    uint64_t segment_size_bytes;
    uint64_t next_seq;
    uint64_t durable_seq_end;
    uint64_t disk_free_bytes;
    uint64_t disk_total_bytes;
    bool space_low;             /* puts refused with DISK_FULL */
    bool log_space_low;
    bool reserve_short;
    int64_t checkpoint_age_ms;  /* since the last checkpoint began (or the start) */
    uint64_t checkpoint_pending_bytes; /* log written since it */
    uint64_t checkpoint_payload_bytes;
    bool stopping;
    bool beanstalk_enabled;     /* --beanstalk: its counters are shown */
    struct queue_body_stats bodies;        /* the body cache (--body-cache) */
    struct body_fetch_stats body_fetch;    /* bodies read back from the log for deliveries */
    struct compact_stats compact;          /* compaction (compact.h) */
    const char *sync_mode;      /* static string */
    uint32_t queue_count;
    uint32_t queue_capacity;    /* of queues[] (a recycled snapshot's arrays are reused) */
    struct snap_queue *queues;  /* unsorted */
    uint32_t dead_count;
    struct snap_dead *dead;
};

enum observe_cmd_kind {
    OBSERVE_PAUSE,
    OBSERVE_RESUME,
    OBSERVE_KICK_QUEUE, /* up to count dead jobs of queue */
    OBSERVE_KICK_JOB,
    OBSERVE_DELETE_JOB,
    OBSERVE_JOB_GET,
};

struct observe_cmd {
    struct list_link link;
    enum observe_cmd_kind kind;
    char queue[LIMIT_QUEUE_NAME_MAX_BYTES + 1];
    uint32_t queue_len;
    uint64_t id;
    uint32_t count;
    /* the answer: an HTTP status and a JSON body (malloc'ed) */
    int status;
    char *body;
    uint64_t seq_end; /* loop only: answered once durable.written_end >= this */
    bool done;        /* shared */
    bool abandoned;   /* shared: the waiter gave up; whoever comes last frees */
};

struct observe {
    struct server *server;      /* loop only */
    int event_fd;
    struct io_completion event_completion;
    uint64_t event_value;
    bool event_fired;           /* loop only */
    struct snapshot *building;  /* loop only: a walk in progress (observe.c) */
    size_t walk_cursor;
    uint64_t walk_stamp;
    uint64_t walk_queues;
    uint32_t walk_restarts;
    struct list_link held;      /* loop only: commands waiting for durability */
    struct http *http;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    /* shared */
    struct snapshot *current;
    struct snapshot *spare;     /* the last one freed, kept for the next build: its pages
                                   stay mapped, so a build copies and does not fault */
    uint64_t generation;        /* of current */
    bool want_snapshot;
    bool stale;                 /* an action ran since current was taken: do not reuse it */
    bool closing;               /* no more waiting: the server stops */
    struct list_link commands;
    uint32_t command_count;
};

/* Start the HTTP listener when configured: 0 (also when disabled, or when the default address
 * is taken: then a warning), or a negative error when an explicit --http cannot be served. */
SPOOL_MUST_USE int observe_start(struct server *server);
/* Once per loop turn, after requests ran: run queued commands, build a snapshot when asked,
 * answer commands whose records are durable. */
void observe_turn(struct server *server);
/* A snapshot walk is in progress: the loop must turn again at once, not wait for I/O. */
bool observe_busy(const struct server *server);
/* Stop the HTTP threads (waiters get 503) and free everything. */
void observe_stop(struct server *server);

/* HTTP side. A snapshot no older than OBSERVE_SNAPSHOT_REUSE_MS (or the last one, if the loop
 * did not answer in time; NULL if there is none): release it with observe_snapshot_put. */
struct snapshot *observe_snapshot_get(struct observe *observe);
void observe_snapshot_put(struct observe *observe, struct snapshot *snapshot);
/* Run cmd (malloc'ed) in the loop and wait for its answer: true with cmd->status and
 * cmd->body set (the caller frees both cmd and body), false when the loop did not answer in
 * time or the server is stopping (cmd then belongs to the loop). */
bool observe_command(struct observe *observe, struct observe_cmd *cmd);

#endif
