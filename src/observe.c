/*
 * The loop's side of the HTTP listener (observe.h): the eventfd the loop reads through its
 * ring, snapshots built on request, and commands run as if a client had sent them.
 */
#include "observe.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "server.h"
#include "slog.h"

/* Dead jobs one queue contributes to a snapshot: a queue with a poison storm must not hide
 * every other queue's dead jobs from the page. */
#define OBSERVE_DEAD_PER_QUEUE 20

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the eventfd, read through the loop's ring ---- */

static void event_arm(struct observe *observe)
{
    struct io_uring *ring = &observe->server->ring;
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (sqe == NULL) {
        (void)io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
    }
    SPOOL_ASSERT(sqe != NULL);
    io_uring_prep_read(sqe, observe->event_fd, &observe->event_value,
                       sizeof(observe->event_value), 0);
    io_uring_sqe_set_data(sqe, &observe->event_completion);
}

static void event_complete(struct io_completion *completion, const struct io_uring_cqe *cqe)
{
    struct observe *observe = (struct observe *)(void *)((char *)completion -
                                                         offsetof(struct observe,
                                                                  event_completion));
    (void)cqe;
    observe->event_fired = true; /* observe_turn re-arms the read */
}

static void event_signal(struct observe *observe)
{
    uint64_t one = 1;
    ssize_t n = write(observe->event_fd, &one, sizeof(one));
    (void)n; /* a full counter (2^64 - 2 unread wakes) still wakes the loop */
}

/* ---- snapshots ---- */

/* Queues a snapshot walk visits per loop turn: a changed one is about 700 bytes copied and a
 * cache miss or two, an unchanged one only compared (snap_queue.h), some 150 ns under load.
 * What a turn adds is what the requests served after it wait: with a scrape a second, the
 * walk's turns are about 1% of the loop's, the very requests a put p99 is made of, so the
 * addition must be small beside a put's own latency (a loaded p99 of a few ms): 256 queues are
 * at most some 0.1 ms (40 us unchanged). 10,000 queues take 40 turns, a few ms on a busy loop,
 * what a once-a-second page can wait; the walk's total cost does not change. */
#define OBSERVE_SNAPSHOT_STEP_QUEUES 256
/* Walks begun again because queues were forgotten under them, at most, per snapshot. */
#define OBSERVE_WALK_RESTARTS 2

struct snap_build {
    struct snapshot *snap;
    struct queue_time now;
};

static void snap_dead_add(struct snapshot *snap, const struct queue *queue)
{
    uint32_t taken = 0;
    for (struct list_link *l = queue->dead.next;
         l != &queue->dead && taken < OBSERVE_DEAD_PER_QUEUE && snap->dead_count < OBSERVE_DEAD_MAX;
         l = l->next, taken++) {
        const struct job *job = LIST_ENTRY(l, struct job_ext, state_link)->job;
        struct snap_dead *d = &snap->dead[snap->dead_count++];
        d->id = job->id;
        memcpy(d->queue, queue->name, queue->name_len + 1);
        d->attempts = job->attempts;
        d->settled_ms = queue_job_x(job)->settled_ms;
        uint32_t n = queue_job_x(job)->reason_len < OBSERVE_REASON_MAX
                         ? queue_job_x(job)->reason_len
                         : OBSERVE_REASON_MAX;
        if (n > 0)
            memcpy(d->reason, queue_job_x(job)->reason, n);
        d->reason[n] = '\0';
    }
}

static void snap_queue_add(void *ctx, struct queue *queue)
{
    struct snap_build *b = ctx;
    struct snapshot *snap = b->snap;
    if (snap->queue_count == snap->queue_capacity)
        return; /* created during the walk, beyond the slack: in the next snapshot */
    struct snap_queue *q = &snap->queues[snap->queue_count++];
    snap->queues_copied += snap_queue_fill(q, queue, b->now);
    if (queue->stats.dead > 0)
        snap_dead_add(snap, queue);
}

static void snap_server(struct snapshot *snap, struct server *server)
{
    snap->taken_wall_ms = queue_time_wall_ms(server->now);
    snap->taken_mono_ms = mono_ms();
    snap->server = server->metrics;
    snap->beanstalk_enabled = server->config.beanstalk_enabled;
    queue_totals_get(server->queues, &snap->totals);
    queue_body_stats_get(server->queues, &snap->bodies);
    snap->body_fetch = (struct body_fetch_stats){0};
    snap->compact = (struct compact_stats){0};
    if (server->compactor != NULL)
        compactor_stats_get(server->compactor, &snap->compact);
    if (server->fetcher != NULL)
        body_fetch_stats_get(server->fetcher, &snap->body_fetch);
    snap->uptime_ms = snap->taken_mono_ms - server->started_ms;
    snap->connections = server->conn_count;
    snap->handshakes = server->handshake_count;
    snap->conn_input_bytes = snap->conn_output_bytes = snap->conn_buffer_bytes = 0;
    for (struct list_link *l = server->conns.next; l != &server->conns; l = l->next) {
        const struct conn *conn = LIST_ENTRY(l, struct conn, link);
        snap->conn_input_bytes += conn->in_end - conn->in_start;
        snap->conn_output_bytes += conn_out_pending(conn);
        snap->conn_buffer_bytes += conn->in_cap + conn->out.cap + conn->sending.cap;
    }
    snap->commits = server->commits;
    snap->log_appended_bytes = server->log_bytes;
    snap->log_segments = log_segment_count(server->log);
    snap->segment_size_bytes = server->config.segment_size_bytes;
    snap->next_seq = log_next_seq(server->log);
    snap->durable_seq_end = log_durable_seq_end(server->log);
    struct statvfs vfs;
    if (statvfs(server->config.data_dir, &vfs) == 0) {
        snap->disk_free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
        snap->disk_total_bytes = (uint64_t)vfs.f_blocks * vfs.f_frsize;
    }
    snap->space_low = server_space_low(server);
    snap->log_space_low = log_space_low(server->log);
    snap->reserve_short = server->reserve_short;
    snap->checkpoint_age_ms = snap->taken_mono_ms - server->checkpoint_last_ms;
    snap->checkpoint_pending_bytes = server->checkpoint_bytes;
    snap->checkpoint_payload_bytes = server->checkpoint_payload_bytes;
    snap->stopping = server->stopping;
    snap->sync_mode = server->config.sync_mode == LOG_SYNC_ALWAYS ? "always"
                      : server->config.sync_mode == LOG_SYNC_NONE ? "none" : "interval";
}

static void snapshot_free(struct snapshot *snap)
{
    free(snap->queues);
    free(snap->dead);
    free(snap);
}

/* A snapshot nobody reads any more (its last reference dropped under the mutex): kept as the
 * spare if there is none, else returned for the caller to free outside the lock. */
static struct snapshot *snapshot_retire(struct observe *observe, struct snapshot *snap)
{
    if (observe->spare != NULL)
        return snap;
    observe->spare = snap;
    return NULL;
}

/* Arrays for capacity queues: the spare's if large enough (a queue count that grew by more
 * than its slack makes new ones, with an eighth to spare). NULL without memory. */
static struct snapshot *snapshot_alloc(struct observe *observe, uint32_t capacity)
{
    pthread_mutex_lock(&observe->mutex);
    struct snapshot *snap = observe->spare;
    observe->spare = NULL;
    pthread_mutex_unlock(&observe->mutex);
    if (snap != NULL && snap->queue_capacity >= capacity) {
        struct snap_queue *queues = snap->queues;
        struct snap_dead *dead = snap->dead;
        uint32_t queue_capacity = snap->queue_capacity;
        memset(snap, 0, sizeof(*snap));
        snap->queues = queues;
        snap->dead = dead;
        snap->queue_capacity = queue_capacity;
        return snap;
    }
    if (snap != NULL)
        snapshot_free(snap);
    snap = calloc(1, sizeof(*snap));
    if (snap == NULL)
        return NULL;
    snap->queue_capacity = capacity + capacity / 8 + 1;
    /* zeros: an entry is either a whole earlier one or matches no queue (snap_queue.h) */
    snap->queues = calloc(snap->queue_capacity, sizeof(*snap->queues));
    snap->dead = malloc(OBSERVE_DEAD_MAX * sizeof(*snap->dead));
    if (snap->queues == NULL || snap->dead == NULL) {
        snapshot_free(snap);
        return NULL; /* the waiter times out and serves the previous one */
    }
    return snap;
}

/* Begin a walk: the arrays for every queue known now (plus slack for those created during
 * the walk). False without memory. */
static bool snapshot_begin(struct observe *observe)
{
    struct queue_totals totals;
    queue_totals_get(observe->server->queues, &totals);
    struct snapshot *snap = snapshot_alloc(observe, (uint32_t)totals.queues);
    if (snap == NULL)
        return false;
    observe->building = snap;
    observe->walk_cursor = 0;
    observe->walk_stamp = queue_walk_stamp(observe->server->queues);
    observe->walk_queues = totals.queues;
    observe->walk_restarts = 0;
    return true;
}

/* One turn's share of the walk; the finished snapshot (server numbers as of this turn), or
 * NULL while queues remain. A table rebuilt or shrunk under the walk starts it again. */
static struct snapshot *snapshot_step(struct observe *observe)
{
    struct server *server = observe->server;
    struct snapshot *snap = observe->building;
    struct queue_totals totals;
    queue_totals_get(server->queues, &totals);
    /* A rebuilt table invalidates the cursor: begin again. A forgotten queue (the count went
     * down) may have shifted one behind the cursor: begin again too, but at most
     * OBSERVE_WALK_RESTARTS times, so that a churn of short-lived queues cannot keep the
     * walk from ever finishing (the price: one queue missing from one snapshot). */
    bool rebuilt = queue_walk_stamp(server->queues) != observe->walk_stamp;
    bool shrunk = totals.queues < observe->walk_queues;
    if (rebuilt || (shrunk && observe->walk_restarts < OBSERVE_WALK_RESTARTS)) {
        observe->walk_restarts++;
        snap->queue_count = 0;
        snap->dead_count = 0;
        observe->walk_cursor = 0;
        observe->walk_stamp = queue_walk_stamp(server->queues);
        observe->walk_queues = totals.queues;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct snap_build b = {.snap = snap, .now = server->now};
    bool complete = queue_each_step(server->queues, &observe->walk_cursor,
                                    OBSERVE_SNAPSHOT_STEP_QUEUES, snap_queue_add, &b);
    if (complete) {
        uint32_t queue_count = snap->queue_count, dead_count = snap->dead_count;
        uint32_t copied = snap->queues_copied;
        int64_t build_ns = snap->build_ns;
        snap_server(snap, server); /* fills the header fields; the arrays stay */
        snap->queue_count = queue_count;
        snap->dead_count = dead_count;
        snap->queues_copied = copied;
        snap->build_ns = build_ns;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    snap->build_ns += (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec);
    snap->build_turns++;
    if (!complete)
        return NULL;
    observe->building = NULL;
    snap->refs = 1; /* observe.current's */
    return snap;
}

/* Publish a new snapshot: swap the pointer, drop the old one's reference. */
static void snapshot_publish(struct observe *observe, struct snapshot *snap)
{
    struct snapshot *old;
    pthread_mutex_lock(&observe->mutex);
    old = observe->current;
    observe->current = snap;
    observe->generation++;
    observe->want_snapshot = false;
    observe->stale = false;
    struct snapshot *dropped = old != NULL && --old->refs == 0 ? snapshot_retire(observe, old)
                                                                 : NULL;
    pthread_cond_broadcast(&observe->cond);
    pthread_mutex_unlock(&observe->mutex);
    if (dropped != NULL)
        snapshot_free(dropped);
}

static bool snapshot_fresh(const struct observe *observe, int64_t now_ms)
{
    return observe->current != NULL && !observe->stale &&
           now_ms - observe->current->taken_mono_ms < OBSERVE_SNAPSHOT_REUSE_MS;
}

struct snapshot *observe_snapshot_get(struct observe *observe)
{
    pthread_mutex_lock(&observe->mutex);
    if (!snapshot_fresh(observe, mono_ms()) && !observe->closing) {
        uint64_t generation = observe->generation;
        if (!observe->want_snapshot) {
            observe->want_snapshot = true;
            event_signal(observe);
        }
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += OBSERVE_WAIT_MS / 1000;
        while (observe->generation == generation && !observe->closing) {
            if (pthread_cond_timedwait(&observe->cond, &observe->mutex, &deadline) == ETIMEDOUT)
                break;
        }
    }
    struct snapshot *snap = observe->current;
    if (snap != NULL)
        snap->refs++;
    pthread_mutex_unlock(&observe->mutex);
    return snap;
}

void observe_snapshot_put(struct observe *observe, struct snapshot *snap)
{
    if (snap == NULL)
        return;
    pthread_mutex_lock(&observe->mutex);
    struct snapshot *dropped = --snap->refs == 0 ? snapshot_retire(observe, snap) : NULL;
    pthread_mutex_unlock(&observe->mutex);
    if (dropped != NULL)
        snapshot_free(dropped);
}

/* ---- commands ---- */

bool observe_command(struct observe *observe, struct observe_cmd *cmd)
{
    pthread_mutex_lock(&observe->mutex);
    if (observe->closing || observe->command_count >= OBSERVE_COMMANDS_MAX) {
        pthread_mutex_unlock(&observe->mutex);
        cmd->status = 503;
        cmd->body = NULL;
        return true; /* answered: the caller still owns cmd */
    }
    cmd->done = false;
    cmd->abandoned = false;
    list_insert_tail(&observe->commands, &cmd->link);
    observe->command_count++;
    event_signal(observe);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += OBSERVE_WAIT_MS / 1000;
    while (!cmd->done && !observe->closing) {
        if (pthread_cond_timedwait(&observe->cond, &observe->mutex, &deadline) == ETIMEDOUT)
            break;
    }
    bool done = cmd->done;
    if (!done)
        cmd->abandoned = true; /* the loop frees it when it gets to it */
    pthread_mutex_unlock(&observe->mutex);
    return done;
}

/* The answer is ready: hand it to its waiter, or free it if the waiter is gone. */
static void command_finish(struct observe *observe, struct observe_cmd *cmd)
{
    pthread_mutex_lock(&observe->mutex);
    bool abandoned = cmd->abandoned;
    cmd->done = true;
    observe->stale = true; /* a change the next page load must see: no reuse of the last one */
    pthread_cond_broadcast(&observe->cond);
    pthread_mutex_unlock(&observe->mutex);
    if (abandoned) {
        free(cmd->body);
        free(cmd);
    }
}

static void command_answer(struct observe_cmd *cmd, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void command_answer(struct observe_cmd *cmd, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *body = NULL;
    if (vasprintf(&body, fmt, ap) < 0)
        body = NULL;
    va_end(ap);
    cmd->status = status;
    cmd->body = body;
}

/* A queue error as an HTTP answer. */
static void command_error(struct observe_cmd *cmd, int error)
{
    int status = error == QUEUE_ENOTFOUND ? 404 : error == QUEUE_ESTATE ? 409
                 : error == QUEUE_EINVAL ? 400 : 500;
    command_answer(cmd, status, "{\"error\":\"%s\"}",
                   status == 404 ? "not found" : status == 409 ? "wrong state"
                   : status == 400 ? "bad request" : "internal error");
}

static int command_pause(struct server *server, struct observe_cmd *cmd,
                         struct queue_logged *logged)
{
    struct queue *queue = queue_find(server->queues, cmd->queue, cmd->queue_len);
    if (queue == NULL)
        return QUEUE_ENOTFOUND; /* a page never creates queues */
    struct record_meta meta = {
        .name = queue->name, .name_len = queue->name_len,
        .paused = cmd->kind == OBSERVE_PAUSE,
        .default_max_attempts = queue->default_max_attempts,
        .default_ttr_ms = queue->default_ttr_ms, .max_jobs = queue->max_jobs,
        .max_bytes = queue->max_bytes,
    };
    int rc = queue_set_meta(server->queues, &meta, server->now, logged);
    if (rc == 0)
        command_answer(cmd, 200, "{\"queue\":\"%s\",\"paused\":%s}", queue->name,
                       meta.paused ? "true" : "false");
    return rc;
}

/* Run one command; -ENOBUFS: the log's batch is full, run it again after the commit.
 * *logged: what it logged (its answer waits for that to be durable). */
static int command_run(struct server *server, struct observe_cmd *cmd,
                       struct queue_logged *logged)
{
    int rc;
    uint32_t kicked = 0;
    switch (cmd->kind) {
    case OBSERVE_PAUSE:
    case OBSERVE_RESUME:
        return command_pause(server, cmd, logged);
    case OBSERVE_KICK_QUEUE:
        if (queue_find(server->queues, cmd->queue, cmd->queue_len) == NULL)
            return QUEUE_ENOTFOUND;
        rc = queue_kick(server->queues, cmd->queue, cmd->queue_len, cmd->count, server->now,
                        &kicked, logged);
        if (rc == 0 || kicked > 0)
            command_answer(cmd, 200, "{\"kicked\":%u}", kicked);
        return kicked > 0 ? 0 : rc;
    case OBSERVE_KICK_JOB:
        rc = queue_kick_job(server->queues, cmd->id, server->now, logged);
        if (rc == 0)
            command_answer(cmd, 200, "{\"id\":%llu,\"kicked\":1}", (unsigned long long)cmd->id);
        return rc;
    case OBSERVE_DELETE_JOB:
        rc = queue_delete(server->queues, cmd->id, server->now, logged);
        if (rc == 0)
            command_answer(cmd, 200, "{\"id\":%llu,\"deleted\":true}",
                           (unsigned long long)cmd->id);
        return rc;
    case OBSERVE_JOB_GET:
        return http_job_json(server->queues, cmd) ? 0 : QUEUE_ENOTFOUND;
    }
    SPOOL_ASSERT(false);
    return 0;
}

/* Take the queued commands and run them; those that logged records wait in held. */
static void commands_run(struct observe *observe)
{
    struct server *server = observe->server;
    for (;;) {
        if (server->log_full)
            return; /* the rest waits for the commit (observe_turn runs every turn) */
        pthread_mutex_lock(&observe->mutex);
        struct list_link *link = list_first(&observe->commands);
        if (link != NULL) {
            list_unlink(link);
            observe->command_count--;
        }
        pthread_mutex_unlock(&observe->mutex);
        if (link == NULL)
            return;
        struct observe_cmd *cmd = LIST_ENTRY(link, struct observe_cmd, link);
        struct queue_logged logged = {0};
        int rc = server->stopping ? 0 : command_run(server, cmd, &logged);
        if (server->stopping)
            command_answer(cmd, 503, "{\"error\":\"the server is stopping\"}");
        if (rc == -ENOBUFS) {
            pthread_mutex_lock(&observe->mutex); /* back to the front: order kept */
            list_insert_tail(observe->commands.next, &cmd->link); /* before the first */
            observe->command_count++;
            pthread_mutex_unlock(&observe->mutex);
            return;
        }
        if (rc != 0)
            command_error(cmd, rc);
        cmd->seq_end = logged.seq_end;
        list_insert_tail(&observe->held, &cmd->link);
    }
}

/* Answer the held commands whose records are durable (seq order: they were run in order). */
static void held_release(struct observe *observe)
{
    struct list_link *link;
    while ((link = list_first(&observe->held)) != NULL) {
        struct observe_cmd *cmd = LIST_ENTRY(link, struct observe_cmd, link);
        if (cmd->seq_end > observe->server->durable.written_end)
            return;
        list_unlink(link);
        command_finish(observe, cmd);
    }
}

void observe_turn(struct server *server)
{
    struct observe *observe = server->observe;
    if (observe == NULL)
        return;
    if (observe->event_fired) {
        observe->event_fired = false;
        event_arm(observe);
        commands_run(observe);
        pthread_mutex_lock(&observe->mutex);
        bool want = observe->want_snapshot;
        pthread_mutex_unlock(&observe->mutex);
        if (want && observe->building == NULL && !snapshot_begin(observe)) {
            /* out of memory: the waiters time out; the next request asks again */
            pthread_mutex_lock(&observe->mutex);
            observe->want_snapshot = false;
            pthread_mutex_unlock(&observe->mutex);
        }
    } else if (!server->log_full &&
               __atomic_load_n(&observe->command_count, __ATOMIC_RELAXED) > 0) {
        commands_run(observe); /* ones left behind by a full batch (a racy read is fine) */
    }
    if (observe->building != NULL) {
        struct snapshot *snap = snapshot_step(observe);
        if (snap != NULL)
            snapshot_publish(observe, snap);
    }
    held_release(observe);
}

bool observe_busy(const struct server *server)
{
    return server->observe != NULL && server->observe->building != NULL;
}

/* ---- start and stop ---- */

int observe_start(struct server *server)
{
    const struct server_config *config = &server->config;
    if (!config->http_enabled)
        return 0;
    struct observe *observe = calloc(1, sizeof(*observe));
    if (observe == NULL)
        return -ENOMEM;
    observe->server = server;
    observe->event_completion.complete = event_complete;
    list_init(&observe->held);
    list_init(&observe->commands);
    pthread_mutex_init(&observe->mutex, NULL);
    pthread_cond_init(&observe->cond, NULL);
    observe->event_fd = eventfd(0, EFD_CLOEXEC);
    if (observe->event_fd < 0) {
        int rc = -errno;
        free(observe);
        return rc;
    }
    server->observe = observe;
    char addr[300];
    int rc = http_start(observe, config, addr, sizeof(addr), &observe->http);
    if (rc != 0) {
        observe_stop(server);
        if (config->http_explicit) {
            slog_error("msg=\"cannot serve HTTP\" addr=%s:%u error=\"%s\"", config->http_host,
                       config->http_port, strerror(-rc));
            return rc;
        }
        slog_warn("msg=\"HTTP listener off: the default address is taken (use --http)\" "
                  "addr=%s:%u error=\"%s\"", config->http_host, config->http_port,
                  strerror(-rc));
        return 0;
    }
    event_arm(observe);
    slog_info("msg=\"http listening\" addr=%s", addr);
    if (config->http_ready_file != NULL) {
        char tmp[4096];
        FILE *f = NULL;
        if (snprintf(tmp, sizeof(tmp), "%s.tmp", config->http_ready_file) < (int)sizeof(tmp))
            f = fopen(tmp, "w");
        bool ok = f != NULL && fprintf(f, "%s\n", addr) > 0;
        if (f != NULL)
            ok &= fclose(f) == 0;
        if (!ok || rename(tmp, config->http_ready_file) != 0) {
            slog_error("msg=\"cannot write the HTTP ready file\" path=%s",
                       config->http_ready_file);
            return -EIO;
        }
    }
    return 0;
}

void observe_stop(struct server *server)
{
    struct observe *observe = server->observe;
    if (observe == NULL)
        return;
    pthread_mutex_lock(&observe->mutex);
    observe->closing = true; /* waiters give up at once */
    pthread_cond_broadcast(&observe->cond);
    pthread_mutex_unlock(&observe->mutex);
    if (observe->http != NULL)
        http_stop(observe->http); /* joins the HTTP threads: nobody waits any more */
    struct list_link *link;
    while ((link = list_first(&observe->commands)) != NULL ||
           (link = list_first(&observe->held)) != NULL) {
        struct observe_cmd *cmd = LIST_ENTRY(link, struct observe_cmd, link);
        list_unlink(link);
        free(cmd->body);
        free(cmd); /* abandoned: its waiter returned 503 */
    }
    if (observe->current != NULL && --observe->current->refs == 0)
        snapshot_free(observe->current);
    if (observe->spare != NULL)
        snapshot_free(observe->spare);
    if (observe->building != NULL)
        snapshot_free(observe->building);
    close(observe->event_fd);
    pthread_mutex_destroy(&observe->mutex);
    pthread_cond_destroy(&observe->cond);
    free(observe);
    server->observe = NULL;
}
