/*
 * The beanstalkd listener and its connections: accept, cut command lines, keep replies in
 * order behind the durable watermark, and the pause-tube timers (model in beanstalk.h;
 * commands in beanstalk_cmd.c, YAML replies in beanstalk_yaml.c).
 *
 * Input. A command is a line of at most BEANSTALK_LINE_MAX bytes ending in CRLF; a put's body
 * follows it. A line that reaches the limit without a CRLF is dropped, and so is the input up
 * to the next CRLF, which is then answered BAD_FORMAT (as beanstalkd does: it drops a full
 * line buffer and answers when the line ends). A put refused before its body (JOB_TOO_BIG,
 * DRAINING) has its body skipped as it arrives, then the answer is sent.
 */
#include "beanstalk.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "server.h"
#include "slog.h"

/* A connection's input may hold --max-frame bytes and config.c keeps --max-job-size at least
 * WIRE_JOB_OVERHEAD_MAX below it: so a put's line and its largest body always fit at once. */
_Static_assert(BEANSTALK_LINE_MAX + 2 <= WIRE_JOB_OVERHEAD_MAX,
               "a put line and its body's CRLF fit the room a frame leaves beyond a job");

/* After a failed accept (out of descriptors) wait this long, as the native listener does. */
#define BEANSTALK_ACCEPT_RETRY_MS 100

static void bs_accept_complete(struct io_completion *completion, const struct io_uring_cqe *cqe)
{
    struct beanstalk_listener *l = (struct beanstalk_listener *)(void *)((char *)completion -
                                   offsetof(struct beanstalk_listener, accept_completion));
    struct server *server = l->server;
    if (!(cqe->flags & IORING_CQE_F_MORE))
        l->armed = false; /* re-armed by beanstalk_tick */
    if (cqe->res >= 0) {
        if (server->stopping)
            close(cqe->res);
        else
            conn_accepted_beanstalk(server, cqe->res);
    } else if (cqe->res != -ECANCELED) {
        slog_warn("msg=\"beanstalk accept failed\" error=\"%s\" retry_ms=%d",
                  strerror(-cqe->res), BEANSTALK_ACCEPT_RETRY_MS);
        if (!(cqe->flags & IORING_CQE_F_MORE))
            l->retry_ms = server_now_ms() + BEANSTALK_ACCEPT_RETRY_MS;
    }
}

static void bs_accept_arm(struct server *server)
{
    struct beanstalk_listener *l = &server->beanstalk->listener;
    if (l->fd < 0)
        return;
    if (server->stopping) {
        if (l->armed && !l->canceled) {
            struct io_uring_sqe *sqe = server_sqe(server);
            io_uring_prep_cancel(sqe, &l->accept_completion, 0);
            io_uring_sqe_set_data(sqe, NULL);
            l->canceled = true;
        }
        return;
    }
    if (l->armed || (l->retry_ms != 0 && server_now_ms() < l->retry_ms))
        return;
    l->retry_ms = 0;
    struct io_uring_sqe *sqe = server_sqe(server);
    io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data(sqe, &l->accept_completion);
    l->armed = true;
}

int beanstalk_start(struct server *server)
{
    if (!server->config.beanstalk_enabled)
        return 0;
    struct beanstalk_state *bs = calloc(1, sizeof(*bs));
    SPOOL_ASSERT(bs != NULL);
    struct beanstalk_listener *l = &bs->listener;
    l->fd = -1;
    l->server = server;
    strmap_init(&bs->tubes);
    list_init(&bs->holding);
    uint8_t raw[8] = {0};
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        memset(raw, 0, sizeof(raw)); /* the id is a label, not a secret */
    for (int i = 0; i < 8; i++)
        snprintf(bs->id + 2 * i, 3, "%02x", raw[i]);
    server->beanstalk = bs;
    /* beanstalkd always has the default tube. */
    struct queue *queue;
    int rc = queue_get(server->queues, "default", 7, &queue);
    SPOOL_ASSERT(rc == 0);
    queue_pin(queue); /* for good: beanstalkd's default tube always exists */
    char addr[300];
    rc = server_listen(server, server->config.beanstalk_host, server->config.beanstalk_port,
                       &l->fd, addr, sizeof(addr));
    if (rc != 0)
        return rc;
    l->accept_completion.complete = bs_accept_complete;
    bs_accept_arm(server);
    slog_info("msg=\"beanstalk listening\" addr=%s", addr);
    snprintf(server->beanstalk_addr, sizeof(server->beanstalk_addr), "%s", addr);
    return 0;
}

void beanstalk_destroy(struct server *server)
{
    struct beanstalk_state *bs = server->beanstalk;
    if (bs == NULL)
        return;
    if (bs->listener.fd >= 0)
        close(bs->listener.fd);
    STRMAP_EACH(&bs->tubes, e)
        free(e->value);
    strmap_free(&bs->tubes);
    free(bs);
    server->beanstalk = NULL;
}

struct beanstalk_tube *beanstalk_tube_get(struct server *server, const char *name, uint32_t len)
{
    struct beanstalk_state *bs = server->beanstalk;
    SPOOL_ASSERT(len >= 1 && len <= LIMIT_QUEUE_NAME_MAX_BYTES);
    struct beanstalk_tube *tube = strmap_get(&bs->tubes, name, len);
    if (tube != NULL)
        return tube;
    tube = calloc(1, sizeof(*tube));
    SPOOL_ASSERT(tube != NULL);
    memcpy(tube->name, name, len);
    tube->name_len = len;
    strmap_put(&bs->tubes, tube->name, len, tube);
    return tube;
}

static bool bs_tube_unused(struct server *server, const struct beanstalk_tube *tube)
{
    if (tube->using_count + tube->watching_count + tube->waiting_count > 0 ||
        tube->pause_until_ns != 0)
        return false;
    const struct queue *queue = queue_find(server->queues, tube->name, tube->name_len);
    return queue == NULL || !beanstalk_tube_exists(queue);
}

void beanstalk_tube_forget_unused(struct server *server, struct beanstalk_tube *tube)
{
    if (!bs_tube_unused(server, tube))
        return;
    struct beanstalk_tube *removed =
        strmap_remove(&server->beanstalk->tubes, tube->name, tube->name_len);
    SPOOL_ASSERT(removed == tube);
    free(tube);
}

/* Records looked at per sweep: the map must not change during a walk, so the unused ones are
 * gathered first and freed after. */
#define BS_SWEEP_TUBES 64

void beanstalk_sweep(struct server *server)
{
    struct beanstalk_state *state = server->beanstalk;
    if (state == NULL)
        return;
    struct beanstalk_tube *unused[BS_SWEEP_TUBES];
    uint32_t n = 0;
    STRMAP_EACH(&state->tubes, e) {
        if (n == BS_SWEEP_TUBES)
            break;
        if (bs_tube_unused(server, e->value))
            unused[n++] = e->value;
    }
    for (uint32_t i = 0; i < n; i++)
        beanstalk_tube_forget_unused(server, unused[i]);
}

void beanstalk_conn_init(struct conn *conn)
{
    struct beanstalk_state *state = conn->server->beanstalk;
    struct beanstalk_conn *bs = calloc(1, sizeof(*bs));
    SPOOL_ASSERT(bs != NULL);
    list_init(&bs->held);
    list_init(&bs->held_link);
    bs->conn = conn;
    struct beanstalk_tube *def = beanstalk_tube_get(conn->server, "default", 7);
    bs->use = def;
    bs->watch[0] = def;
    bs->watch_count = 1;
    beanstalk_tube_count(conn->server, def, &def->using_count, 1);
    beanstalk_tube_count(conn->server, def, &def->watching_count, 1);
    conn->bs = bs;
    state->total_connections++;
    state->connections++;
}

void beanstalk_tube_count(struct server *server, struct beanstalk_tube *tube, uint32_t *count,
                          int delta)
{
    struct queue *queue = queue_find(server->queues, tube->name, tube->name_len);
    SPOOL_ASSERT(queue != NULL); /* made before it was named, and pinned while named */
    if (delta > 0) {
        (*count)++;
        queue_pin(queue);
    } else {
        SPOOL_ASSERT(*count > 0);
        (*count)--;
        queue_unpin(server->queues, queue);
        beanstalk_tube_forget_unused(server, tube);
    }
}

void beanstalk_conn_closed(struct conn *conn)
{
    struct beanstalk_conn *bs = conn->bs;
    struct beanstalk_state *state = conn->server->beanstalk;
    if (bs == NULL)
        return;
    if (bs->waiting) {
        queue_reserver_cancel(conn->server->queues, &bs->reserver);
        for (uint32_t i = 0; i < bs->watch_count; i++)
            bs->watch[i]->waiting_count--;
        state->waiting--;
    }
    beanstalk_tube_count(conn->server, bs->use, &bs->use->using_count, -1);
    for (uint32_t i = 0; i < bs->watch_count; i++)
        beanstalk_tube_count(conn->server, bs->watch[i], &bs->watch[i]->watching_count, -1);
    state->producers -= bs->producer;
    state->workers -= bs->worker;
    state->connections--;
    struct list_link *link;
    while ((link = list_first(&bs->held)) != NULL) {
        list_unlink(link);
        free(LIST_ENTRY(link, struct beanstalk_chunk, link));
    }
    if (list_linked(&bs->held_link))
        list_unlink(&bs->held_link);
    free(bs);
    conn->bs = NULL;
}

/* ---- output in order ---- */

static void out_append(struct conn *conn, const void *data, size_t len)
{
    if (wire_buf_reserve(&conn->out, len) != 0) {
        slog_error("msg=\"beanstalk reply dropped: out of memory\" conn=%llu",
                   (unsigned long long)conn->id);
        return;
    }
    memcpy(conn->out.data + conn->out.len, data, len);
    conn->out.len += len;
}

void beanstalk_out(struct conn *conn, uint64_t seq_end, const void *data, size_t len)
{
    struct beanstalk_conn *bs = conn->bs;
    struct server *server = conn->server;
    bool durable = seq_end == 0 || durability_marks_level(&server->durable, seq_end) != 0;
    if (list_empty(&bs->held) && durable) {
        out_append(conn, data, len);
        return;
    }
    struct beanstalk_chunk *chunk = malloc(sizeof(*chunk) + len);
    SPOOL_ASSERT(chunk != NULL);
    chunk->seq_end = seq_end;
    if (!list_empty(&bs->held)) { /* never before the reply it follows */
        struct beanstalk_chunk *tail = LIST_ENTRY(bs->held.prev, struct beanstalk_chunk, link);
        if (tail->seq_end > chunk->seq_end)
            chunk->seq_end = tail->seq_end;
    } else {
        list_insert_tail(&server->beanstalk->holding, &bs->held_link);
    }
    chunk->len = len;
    memcpy(chunk->data, data, len);
    list_insert_tail(&bs->held, &chunk->link);
    bs->held_bytes += len;
}

const char *const beanstalk_error_words[METRICS_BS_ERRORS] = {
    "BAD_FORMAT",  "UNKNOWN_COMMAND", "NOT_FOUND",     "OUT_OF_MEMORY", "INTERNAL_ERROR",
    "DRAINING",    "JOB_TOO_BIG",     "EXPECTED_CRLF", "NOT_IGNORED",
};

/* Counts an error reply for /metrics (every error goes out through beanstalk_reply). */
static void reply_count(struct conn *conn, const char *line, size_t len)
{
    for (uint32_t i = 0; i < METRICS_BS_ERRORS; i++) {
        size_t n = strlen(beanstalk_error_words[i]);
        if (len >= n && memcmp(line, beanstalk_error_words[i], n) == 0 &&
            (len == n || line[n] == ' ')) {
            conn->server->metrics.bs_errors[i]++;
            return;
        }
    }
}

void beanstalk_reply(struct conn *conn, uint64_t seq_end, const char *fmt, ...)
{
    char line[BEANSTALK_LINE_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
    va_end(ap);
    SPOOL_ASSERT(n > 0 && (size_t)n < sizeof(line) - 2); /* replies are short words */
    reply_count(conn, line, (size_t)n);
    line[n] = '\r';
    line[n + 1] = '\n';
    beanstalk_out(conn, seq_end, line, (size_t)n + 2);
}

void beanstalk_reply_data(struct conn *conn, const char *head, const void *data, size_t len)
{
    char line[BEANSTALK_LINE_MAX];
    int n = snprintf(line, sizeof(line), "%s %zu\r\n", head, len);
    SPOOL_ASSERT(n > 0 && (size_t)n < sizeof(line));
    struct beanstalk_conn *bs = conn->bs;
    if (list_empty(&bs->held)) { /* the common case: no copy through a chunk */
        out_append(conn, line, (size_t)n);
        if (len > 0)
            out_append(conn, data, len);
        out_append(conn, "\r\n", 2);
        return;
    }
    size_t total = (size_t)n + len + 2;
    uint8_t *buf = malloc(total);
    SPOOL_ASSERT(buf != NULL);
    memcpy(buf, line, (size_t)n);
    if (len > 0)
        memcpy(buf + n, data, len);
    memcpy(buf + n + len, "\r\n", 2);
    beanstalk_out(conn, 0, buf, total);
    free(buf);
}

void beanstalk_release_held(struct server *server)
{
    struct beanstalk_state *state = server->beanstalk;
    if (state == NULL)
        return;
    struct list_link *l = state->holding.next;
    while (l != &state->holding) {
        struct beanstalk_conn *bs = LIST_ENTRY(l, struct beanstalk_conn, held_link);
        l = l->next;
        struct conn *conn = NULL;
        struct list_link *link;
        while ((link = list_first(&bs->held)) != NULL) {
            struct beanstalk_chunk *chunk = LIST_ENTRY(link, struct beanstalk_chunk, link);
            if (durability_marks_level(&server->durable, chunk->seq_end) == 0)
                break;
            list_unlink(link);
            bs->held_bytes -= chunk->len;
            if (conn == NULL)
                conn = bs->conn;
            out_append(conn, chunk->data, chunk->len);
            free(chunk);
        }
        if (list_empty(&bs->held))
            list_unlink(&bs->held_link);
        if (conn != NULL) {
            conn_flush_later(conn);
            conn_make_runnable(conn); /* it may have stopped parsing at the held bound */
        }
    }
}

void beanstalk_stall(struct conn *conn)
{
    conn_stall(conn);
}

/* ---- input ---- */

/* Consume n bytes of input. */
static void in_consume(struct conn *conn, size_t n)
{
    SPOOL_ASSERT(n <= conn->in_end - conn->in_start);
    conn->in_start += n;
}

/* Skip a refused put's body, then answer. 1: done, 0: more to skip. */
static int bs_skip(struct conn *conn)
{
    struct beanstalk_conn *bs = conn->bs;
    size_t avail = conn->in_end - conn->in_start;
    size_t n = avail < bs->skip_bytes ? avail : (size_t)bs->skip_bytes;
    in_consume(conn, n);
    bs->skip_bytes -= n;
    if (bs->skip_bytes > 0)
        return 0;
    beanstalk_reply(conn, 0, "%s", bs->skip_reply);
    return 1;
}

/* Drop input up to the CRLF that ends an overlong line, then BAD_FORMAT. */
static int bs_discard(struct conn *conn)
{
    const uint8_t *p = conn->in + conn->in_start;
    size_t avail = conn->in_end - conn->in_start;
    const uint8_t *crlf = memmem(p, avail, "\r\n", 2);
    if (crlf == NULL) { /* keep a last CR: its LF may come next */
        in_consume(conn, avail > 0 && p[avail - 1] == '\r' ? avail - 1 : avail);
        return 0;
    }
    in_consume(conn, (size_t)(crlf - p) + 2);
    conn->bs->discarding = false;
    beanstalk_reply(conn, 0, "BAD_FORMAT");
    return 1;
}

/* One step: 1 progressed, 0 wait (for input, log space, a reserve, or closing). */
static int bs_step(struct conn *conn)
{
    struct beanstalk_conn *bs = conn->bs;
    if (bs->skip_bytes > 0)
        return bs_skip(conn);
    if (bs->discarding)
        return bs_discard(conn);
    const uint8_t *p = conn->in + conn->in_start;
    size_t avail = conn->in_end - conn->in_start;
    size_t scan = avail < BEANSTALK_LINE_MAX ? avail : BEANSTALK_LINE_MAX;
    const uint8_t *crlf = memmem(p, scan, "\r\n", 2);
    if (crlf == NULL) {
        if (avail < BEANSTALK_LINE_MAX)
            return 0;
        in_consume(conn, BEANSTALK_LINE_MAX);
        bs->discarding = true;
        return 1;
    }
    size_t line_len = (size_t)(crlf - p);
    int rc = beanstalk_cmd_run(conn, (const char *)p, line_len, crlf + 2, avail - line_len - 2);
    if (rc < 0 || conn->closing)
        return 0;
    in_consume(conn, line_len + 2 + (size_t)rc);
    return 1;
}

void beanstalk_conn_run(struct conn *conn, uint32_t cmds_max)
{
    struct beanstalk_conn *bs = conn->bs;
    SPOOL_ASSERT(bs != NULL);
    if (bs->rewait) {
        bs->rewait = false;
        beanstalk_reserve_again(conn);
    }
    /* Said again by the put at the head if it still waits for its body (that ends the run). */
    bs->body_missing = 0;
    uint32_t cmds = 0;
    int rc = 1;
    size_t out_high = conn_out_high(conn);
    while (cmds < cmds_max && !conn->closing && !conn->stalled && !bs->waiting && !bs->fetching &&
           conn->out.len < out_high && bs->held_bytes < BEANSTALK_HELD_BYTES_HIGH &&
           conn->in_start < conn->in_end && (rc = bs_step(conn)) == 1)
        cmds++;
    if (conn->closing)
        return;
    if (conn->in_start == conn->in_end)
        conn->in_start = conn->in_end = 0;
    if (rc == 1 && cmds == cmds_max)
        conn_make_runnable(conn); /* more to do: after the others had their turn */
    conn_flush(conn);
    conn_arm_recv(conn);
}

/* ---- pause-tube timers ---- */

/* Unpause a tube whose pause-tube delay ran out: false if the log has no room now. */
static bool bs_unpause(struct server *server, struct beanstalk_tube *tube)
{
    struct queue *queue = queue_find(server->queues, tube->name, tube->name_len);
    if (queue != NULL && queue->paused) {
        struct record_meta meta;
        beanstalk_meta_paused(queue, false, &meta);
        if (queue_set_meta(server->queues, &meta, server->now, NULL) != 0)
            return false; /* the next turn tries again */
    }
    tube->pause_until_ns = 0;
    server->beanstalk->paused_tubes--;
    return true;
}

void beanstalk_tick(struct server *server)
{
    struct beanstalk_state *state = server->beanstalk;
    if (state == NULL)
        return;
    bs_accept_arm(server);
    if (state->paused_tubes == 0 || server->stopping)
        return;
    STRMAP_EACH(&state->tubes, e) {
        struct beanstalk_tube *tube = e->value;
        if (tube->pause_until_ns != 0 && tube->pause_until_ns <= server->now.mono_ns)
            (void)bs_unpause(server, tube);
    }
}

int64_t beanstalk_next_deadline_ns(const struct server *server)
{
    const struct beanstalk_state *state = server->beanstalk;
    int64_t next = INT64_MAX;
    if (state == NULL)
        return next;
    const struct beanstalk_listener *l = &state->listener;
    if (!l->armed && l->retry_ms != 0)
        next = l->retry_ms * 1000000; /* server_now_ms is monotonic ms too */
    if (state->paused_tubes == 0)
        return next;
    STRMAP_EACH(&state->tubes, e) {
        const struct beanstalk_tube *tube = e->value;
        if (tube->pause_until_ns != 0 && tube->pause_until_ns < next)
            next = tube->pause_until_ns;
    }
    return next;
}
