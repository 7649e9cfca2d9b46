/*
 * Request handlers, dispatched through a table indexed by opcode.
 *
 * A handler turns one decoded request into calls on the queue state and one reply. Replies
 * to requests that logged records are held until the log's durable watermark covers the last
 * record the request appended (the queue call says which: struct queue_logged); the watermark's
 * level is patched into the reply's first payload byte (the `durability` field of every such
 * reply) when it is released. A request that logged nothing answers at once with NONE.
 *
 * Back pressure: a queue operation that fails with -ENOBUFS changed nothing, and the handler
 * returns HANDLER_AGAIN so the frame runs again after the next commit. ACK_BATCH remembers
 * how far it got in the connection and resumes there; PUT_BATCH waits whole before its first
 * job (all or nothing, handle_put_batch).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "body_fetch.h"
#include "server.h"
#include "slog.h"

/* A reserve or wait that blocks. */
struct blocked_request {
    struct list_link link; /* conn.blocked */
    struct conn *conn;
    uint64_t request_id;
    bool is_wait;
    struct queue_reserver reserver;
    struct queue_job_waiter waiter;
};

typedef int (*handler_fn)(struct conn *conn, const struct wire_header *h, union wire_msg *m);

static int map_error(int error)
{
    switch (error) {
    case QUEUE_ENOTFOUND: return SPOOL_E_NOT_FOUND;
    case QUEUE_ELEASE: return SPOOL_E_LEASE_EXPIRED;
    case QUEUE_EFULL: return SPOOL_E_QUEUE_FULL;
    case QUEUE_ENOMEM: return SPOOL_E_QUEUE_FULL;
    case QUEUE_EINVAL: return SPOOL_E_BAD_REQUEST;
    case QUEUE_ESTATE: return SPOOL_E_WRONG_STATE;
    case QUEUE_ETOOBIG: return SPOOL_E_TOO_LARGE;
    case QUEUE_ETOOMANY: return SPOOL_E_TOO_MANY_QUEUES;
    case LOG_ENOSPC: return SPOOL_E_DISK_FULL;
    case LOG_ETOOBIG: return SPOOL_E_TOO_LARGE;
    default: return SPOOL_E_INTERNAL;
    }
}

/* The result of a queue call: 0, HANDLER_AGAIN, or an error frame already queued (1 + err). */
static int queue_result(struct conn *conn, uint64_t request_id, int error)
{
    if (error == -ENOBUFS)
        return HANDLER_AGAIN;
    if (error == LOG_EPOISONED || (error < 0 && error > -4096 && error != -ENOBUFS)) {
        slog_error("msg=\"log refused a record\" error=\"%s\"", log_strerror(error));
        conn->server->fatal_error = error;
    }
    conn_error(conn, request_id, map_error(error), NULL);
    return 0;
}

static void reply(struct conn *conn, uint16_t opcode, uint64_t request_id, union wire_msg *msg)
{
    int rc = wire_encode_v(&conn->out, conn_wire_version(conn), opcode | WIRE_OP_REPLY,
                           request_id, msg);
    if (rc != 0) {
        slog_error("msg=\"reply not encoded\" op=%s error=%d", wire_op_name(opcode), rc);
        conn_error(conn, request_id, SPOOL_E_INTERNAL, "reply too large");
    }
}

static uint8_t wire_level(enum log_durability level)
{
    return level == LOG_DURABLE_SYNCED ? WIRE_DURABLE_SYNCED : WIRE_DURABLE_WRITTEN;
}

/* A node for a held reply of len bytes: a pooled one when it fits (server.held_free). */
static struct held_reply *held_alloc(struct server *server, size_t len)
{
    if (len <= HELD_REPLY_POOLED_BYTES) {
        struct list_link *link = list_first(&server->held_free);
        struct held_reply *held;
        if (link != NULL) {
            list_unlink(link);
            SPOOL_ASSERT(server->held_free_count > 0);
            server->held_free_count--;
            held = LIST_ENTRY(link, struct held_reply, link);
        } else {
            held = malloc(sizeof(*held) + HELD_REPLY_POOLED_BYTES);
            SPOOL_ASSERT(held != NULL);
        }
        held->pooled = true;
        return held;
    }
    struct held_reply *held = malloc(sizeof(*held) + len);
    SPOOL_ASSERT(held != NULL);
    held->pooled = false;
    return held;
}

static void held_release(struct server *server, struct held_reply *held)
{
    if (held->pooled && server->held_free_count < HELD_REPLY_FREE_MAX) {
        list_insert_tail(&server->held_free, &held->link);
        server->held_free_count++;
        return;
    }
    free(held);
}

/* Reply once every record up to seq_end (exclusive) is durable; seq_end 0: nothing was
 * logged, reply now with NONE. */
static void reply_after(struct conn *conn, uint16_t opcode, uint64_t request_id,
                        union wire_msg *msg, uint64_t seq_end)
{
    struct server *server = conn->server;
    uint8_t *durability = &msg->durable_reply.durability; /* first byte of every such reply */
    if (seq_end == 0) {
        *durability = WIRE_DURABLE_NONE;
        reply(conn, opcode, request_id, msg);
        return;
    }
    enum log_durability level = durability_marks_level(&server->durable, seq_end);
    if (level != 0) {
        *durability = wire_level(level);
        reply(conn, opcode, request_id, msg);
        return;
    }
    *durability = WIRE_DURABLE_NONE;
    /* Encoded into the server's scratch buffer (kept between replies: no allocation), then
     * copied into the held reply. */
    struct wire_buf *tmp = &server->reply_scratch;
    tmp->len = 0;
    if (wire_encode_v(tmp, conn_wire_version(conn), opcode | WIRE_OP_REPLY, request_id, msg) !=
        0) {
        conn_error(conn, request_id, SPOOL_E_INTERNAL, "reply too large");
        return;
    }
    struct held_reply *held = held_alloc(server, tmp->len);
    held->conn_id = conn->id;
    held->seq_end = seq_end;
    held->len = tmp->len;
    memcpy(held->data, tmp->data, tmp->len);
    /* Appends are serialized, so seq_end never goes below the tail's: FIFO order holds...
     * except for a duplicate put waiting on an older record: insert it in order. */
    struct list_link *at = server->held.prev;
    while (at != &server->held && LIST_ENTRY(at, struct held_reply, link)->seq_end > seq_end)
        at = at->prev;
    list_insert_tail(at->next, &held->link);
}

void handler_release_held(struct server *server)
{
    struct list_link *link;
    while ((link = list_first(&server->held)) != NULL) {
        struct held_reply *held = LIST_ENTRY(link, struct held_reply, link);
        enum log_durability level = durability_marks_level(&server->durable, held->seq_end);
        if (level == 0)
            break;
        list_unlink(link);
        struct conn *conn = conn_by_id(server, held->conn_id);
        if (conn != NULL && !conn->closing) {
            held->data[WIRE_HEADER_SIZE] = wire_level(level);
            if (wire_buf_reserve(&conn->out, held->len) == 0) {
                memcpy(conn->out.data + conn->out.len, held->data, held->len);
                conn->out.len += held->len;
            }
            conn_flush_later(conn);
        }
        held_release(server, held);
    }
}

static uint8_t state_to_wire(enum job_state state)
{
    switch (state) {
    case JOB_PENDING:
    case JOB_READY: return WIRE_STATE_READY;
    case JOB_DELAYED: return WIRE_STATE_DELAYED;
    case JOB_RESERVED: return WIRE_STATE_RESERVED;
    case JOB_DEAD: return WIRE_STATE_DEAD;
    case JOB_DONE: return WIRE_STATE_DONE;
    case JOB_EXPIRED: return WIRE_STATE_EXPIRED;
    }
    return WIRE_STATE_UNKNOWN;
}

static const char reason_expired[] = "expired";

/* Version 1 has no EXPIRED state: such a job is told DEAD, with reason "expired" (what a v1
 * client does with a dead job, stop waiting and report it, is right for it too). */
static void job_info_for_version(uint16_t version, struct wire_job_info *info)
{
    if (info->state == WIRE_STATE_EXPIRED && version < 2) {
        info->state = WIRE_STATE_DEAD;
        info->reason = wire_bytes_of(reason_expired, sizeof(reason_expired) - 1);
    }
}

static void job_info_fill(const struct job *job, bool with_body, struct wire_job_info *info)
{
    memset(info, 0, sizeof(*info));
    info->id = job->id;
    info->state = state_to_wire(job->state);
    info->queue = wire_bytes_of(job->queue->name, job->queue->name_len);
    info->priority = job->priority;
    info->attempts = job->attempts;
    info->max_attempts = job->max_attempts;
    info->ttr_ms =
        queue_job_ttr_ms(job) > UINT32_MAX ? UINT32_MAX : (uint32_t)queue_job_ttr_ms(job);
    info->created_ms = (uint64_t)job->created_ms;
    info->ready_at_ms =
        (uint64_t)(queue_job_x(job)->run_at_ms > 0 ? queue_job_x(job)->run_at_ms : job->created_ms);
    info->deadline_ms = job->state == JOB_RESERVED ? (uint64_t)queue_job_x(job)->deadline_ms : 0;
    info->finished_ms = (uint64_t)queue_job_x(job)->settled_ms;
    if (job->state == JOB_DEAD)
        info->reason = wire_bytes_of(queue_job_x(job)->reason, queue_job_x(job)->reason_len);
    if (job->state == JOB_DONE)
        info->result = wire_bytes_of(queue_job_x(job)->result, queue_job_x(job)->result_len);
    if (with_body && queue_job_body(job) != NULL)
        info->body = wire_bytes_of(queue_job_body(job), job->body_len);
}

/* ---- handshake and trivia ---- */

/* With --auth-file, HELLO must carry the secret; compared in constant time so the reply's
 * timing says nothing about how much of a guess was right. */
static bool auth_ok(const struct server_config *config, struct wire_bytes given)
{
    if (config->auth_secret_len == 0)
        return true;
    uint8_t diff = given.len == config->auth_secret_len ? 0 : 1;
    for (uint32_t i = 0; i < config->auth_secret_len; i++) {
        uint8_t g = i < given.len ? given.data[i] : 0;
        diff |= (uint8_t)(g ^ (uint8_t)config->auth_secret[i]);
    }
    return diff == 0;
}

/* At --log-level debug: who connected. The name is the client's own text: bytes that could
 * break a logfmt line (quotes, backslashes, control bytes) are shown as '?'. */
static void hello_log(struct conn *conn, struct wire_bytes name)
{
    char clean[WIRE_TEXT_SIZE_MAX + 1];
    uint32_t len = name.len < WIRE_TEXT_SIZE_MAX ? name.len : WIRE_TEXT_SIZE_MAX;
    for (uint32_t i = 0; i < len; i++) {
        uint8_t ch = name.data[i];
        clean[i] = ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\' ? '?' : (char)ch;
    }
    clean[len] = '\0';
    char peer[64];
    conn_peer_name(conn, peer, sizeof(peer));
    slog_debug("msg=\"client connected\" conn=%llu name=\"%s\" peer=%s",
               (unsigned long long)conn->id, clean, peer);
}

static int handle_hello(struct conn *conn, const struct wire_header *h, union wire_msg *m)
{
    if (conn->hello_done) {
        conn_fail(conn, h->request_id, SPOOL_E_HANDSHAKE_REQUIRED, "second HELLO");
        return 0;
    }
    if (m->hello.magic != WIRE_MAGIC) {
        conn_fail(conn, h->request_id, SPOOL_E_BAD_FRAME, "wrong magic");
        return 0;
    }
    if (!auth_ok(&conn->server->config, m->hello.auth)) {
        conn_log_refusal(conn, &conn->server->auth_log, "authentication failed",
                         "wrong shared secret at HELLO");
        conn_fail(conn, h->request_id, SPOOL_E_AUTH_FAILED, NULL);
        return 0;
    }
    uint16_t low = m->hello.version_min > WIRE_VERSION_MIN ? m->hello.version_min
                                                            : WIRE_VERSION_MIN;
    uint16_t high = m->hello.version_max < WIRE_VERSION ? m->hello.version_max : WIRE_VERSION;
    if (low > high) {
        char text[64];
        snprintf(text, sizeof(text), "server speaks %u..%u", (unsigned)WIRE_VERSION_MIN,
                 (unsigned)WIRE_VERSION);
        conn_fail(conn, h->request_id, SPOOL_E_VERSION_UNSUPPORTED, text);
        return 0;
    }
    if (!conn_handshake_done(conn))
        return 0;
    conn->version = high;
    if (slog_debug_enabled)
        hello_log(conn, m->hello.client_name);
    union wire_msg r = {.hello_reply = {
                            .version = high,
                            .frame_size_max = conn->server->config.frame_size_max,
                            .job_size_max = conn->server->config.job_size_max,
                            .server_time_ms = (uint64_t)queue_time_wall_ms(conn->server->now),
                            .server_name = wire_bytes_str("spoold " SPOOLD_VERSION),
                        }};
    reply(conn, h->opcode, h->request_id, &r);
    return 0;
}

static int handle_ping(struct conn *conn, const struct wire_header *h, union wire_msg *m)
{
    (void)m;
    reply(conn, h->opcode, h->request_id, NULL);
    return 0;
}

/* ---- put ---- */

static void put_args(const struct wire_job_spec *spec, struct queue_put_args *args)
{
    memset(args, 0, sizeof(*args));
    args->queue = (const char *)spec->queue.data;
    args->queue_len = spec->queue.len;
    args->priority = spec->priority;
    if (spec->flags & WIRE_PUT_RUN_AT)
        args->run_at_ms = spec->delay_ms > INT64_MAX ? INT64_MAX : (int64_t)spec->delay_ms;
    else
        args->delay_ms = spec->delay_ms > INT32_MAX * 1000ull ? INT32_MAX * 1000ll
                                                               : (int64_t)spec->delay_ms;
    args->ttr_ms = spec->ttr_ms;
    args->max_attempts = (spec->flags & WIRE_PUT_MAX_ATTEMPTS) ? (int64_t)spec->max_attempts : -1;
    args->ttl_ms = spec->ttl_ms > INT32_MAX * 1000ull ? INT32_MAX * 1000ll
                                                       : (int64_t)spec->ttl_ms;
    args->key = (const char *)spec->key.data;
    args->key_len = spec->key.len;
    args->body = spec->body.data;
    args->body_len = spec->body.len;
}

/* Put one job; *result filled. The put's record (or a duplicate's original) raises
 * *seq_end, the horizon its reply waits for. */
static int put_one(struct conn *conn, const struct wire_job_spec *spec, struct queue_time now,
                   struct wire_put_result *result, uint64_t *seq_end)
{
    struct queue_put_args args;
    put_args(spec, &args);
    uint64_t id = 0, seq = 0;
    bool duplicate = false;
    int rc = queue_put(conn->server->queues, &args, now, &id, &duplicate, &seq);
    if (rc != 0)
        return rc;
    result->id = id;
    result->flags = duplicate ? WIRE_PUT_DUPLICATE : 0;
    if (seq != 0 && seq + 1 > *seq_end)
        *seq_end = seq + 1;
    return 0;
}

/* Admission against the disk: while the log cannot reserve its next segment (or a roll waits
 * for space, or the next checkpoint has no space reserved), new jobs are refused with a
 * definite, retryable DISK_FULL, so that what is already queued can still be reserved, acked
 * and deleted: those records are small and land in the current segment and the spare
 * (STYLE.md: reserve log space at admission). True when refused (the error frame is queued). */
static bool put_refused_for_space(struct conn *conn, uint64_t request_id, uint32_t job_count)
{
    struct server *server = conn->server;
    if (!server_space_low(server))
        return false;
    server->puts_refused_space += job_count;
    conn_error(conn, request_id, SPOOL_E_DISK_FULL,
               "disk space low: puts refused until acks and a checkpoint free a segment");
    return true;
}

/* Admission against memory: above the bound (memwatch.h) new jobs are refused with a definite,
 * retryable QUEUE_FULL, while reserves, acks and deletes, which bring memory down, go on. True
 * when refused (the error frame is queued). */
bool handler_put_refused_for_memory(struct conn *conn, uint64_t request_id, uint32_t job_count)
{
    struct server *server = conn->server;
    if (!server_memory_low(server))
        return false;
    server->memory.puts_refused += job_count;
    conn_error(conn, request_id, SPOOL_E_QUEUE_FULL,
               "memory bound reached (--max-memory or the cgroup limit): puts refused until "
               "jobs are acked or deleted");
    return true;
}

static int handle_put(struct conn *conn, const struct wire_header *h, union wire_msg *m)
{
    if (m->put.body.len > conn->server->config.job_size_max) {
        conn_error(conn, h->request_id, SPOOL_E_TOO_LARGE, "body above --max-job-size");
        return 0;
    }
    if (put_refused_for_space(conn, h->request_id, 1) ||
        handler_put_refused_for_memory(conn, h->request_id, 1))
        return 0;
    uint64_t seq_end = 0;
    union wire_msg r = {0};
    int rc = put_one(conn, &m->put, conn->server->now, &r.put_reply.job, &seq_end);
    if (rc != 0)
        return queue_result(conn, h->request_id, rc);
    reply_after(conn, h->opcode, h->request_id, &r, seq_end);
    return 0;
}

static void batch_forget(struct conn *conn)
{
    free(conn->batch_results);
    conn->batch_results = NULL;
    conn->batch_done = 0;
    conn->batch_seq_end = 0;
}

/* Distinct queues a batch is summed over on the stack; a batch naming more queues (up to
 * WIRE_BATCH_COUNT_MAX) is summed in a heap array sized by its job count. */
#define BATCH_QUEUES_INLINE 64

struct batch_sum {
    struct wire_bytes name;
    uint64_t jobs, bytes;
};

/* Every queue of the batch has room for all of the batch's jobs to it: the check is exact
 * whatever the number of queues, so no put of an admitted batch fails for room. */
/* The batch against the limits of each queue it names and the queue limit: 0, QUEUE_EFULL,
 * QUEUE_ETOOBIG or QUEUE_ETOOMANY. */
static int batch_room(const struct queue_state *state, const struct wire_put_batch *batch)
{
    struct batch_sum inline_sums[BATCH_QUEUES_INLINE];
    struct batch_sum *sums = inline_sums;
    uint32_t n = 0, cap = BATCH_QUEUES_INLINE;
    for (uint32_t i = 0; i < batch->count; i++) {
        const struct wire_job_spec *job = &batch->jobs[i];
        uint32_t k = 0;
        while (k < n && !(sums[k].name.len == job->queue.len &&
                          memcmp(sums[k].name.data, job->queue.data, job->queue.len) == 0))
            k++;
        if (k == cap) { /* more queues than the stack holds: at most one per job */
            SPOOL_ASSERT(sums == inline_sums);
            cap = batch->count;
            sums = malloc(cap * sizeof(*sums));
            SPOOL_ASSERT(sums != NULL);
            memcpy(sums, inline_sums, sizeof(inline_sums));
        }
        if (k == n)
            sums[n++] = (struct batch_sum){.name = job->queue};
        sums[k].jobs++;
        sums[k].bytes += job->body.len;
    }
    int room = 0;
    uint64_t new_queues = 0;
    for (uint32_t k = 0; k < n && room == 0; k++) {
        room = queue_room_for(state, (const char *)sums[k].name.data, sums[k].name.len,
                              sums[k].jobs, sums[k].bytes);
        new_queues += !queue_known(state, (const char *)sums[k].name.data, sums[k].name.len);
    }
    if (room == 0) /* a put creating one queue too many would fail half way through */
        room = queue_room_for_queues(state, new_queues);
    if (sums != inline_sums)
        free(sums);
    return room;
}

/* Memory for every job of the batch, made sure of before any is put (queue_put_reserve), so
 * that no put of an admitted batch fails for it: 0, or QUEUE_ENOMEM. */
static int batch_memory(struct queue_state *state, const struct wire_put_batch *batch)
{
    for (uint32_t i = 0; i < batch->count; i++) {
        struct queue_put_args args;
        put_args(&batch->jobs[i], &args);
        struct queue *queue;
        int rc = queue_get(state, args.queue, args.queue_len, &queue);
        if (rc == 0)
            rc = queue_put_reserve(state, queue, &args, batch->count);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Log bytes the batch's PUT records take (log_record_footprint of each, a duplicate's
 * included: an upper bound). */
static uint64_t batch_log_bytes(const struct wire_put_batch *batch)
{
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < batch->count; i++) {
        const struct wire_job_spec *job = &batch->jobs[i];
        uint64_t len = RECORD_PUT_FIXED + (uint64_t)job->queue.len + job->key.len +
                       job->body.len;
        bytes += log_record_footprint((uint32_t)len);
    }
    return bytes;
}

/* What stops a batch before any of it is logged: 0 (admitted), HANDLER_AGAIN (the open log
 * batch lacks room for all of it: nothing done, run again after the next commit), or
 * BATCH_REFUSED (an error frame queued). */
#define BATCH_REFUSED (-1)
static int put_batch_admit(struct conn *conn, uint64_t request_id,
                           const struct wire_put_batch *batch)
{
    struct server *server = conn->server;
    for (uint32_t i = 0; i < batch->count; i++) {
        if (batch->jobs[i].body.len > server->config.job_size_max) {
            conn_error(conn, request_id, SPOOL_E_TOO_LARGE, "body above --max-job-size");
            return BATCH_REFUSED;
        }
        struct queue_put_args args;
        put_args(&batch->jobs[i], &args);
        if (queue_put_check(server->queues, &args) != 0) {
            conn_error(conn, request_id, SPOOL_E_BAD_REQUEST, "a job of the batch is invalid");
            return BATCH_REFUSED;
        }
    }
    uint64_t log_bytes = batch_log_bytes(batch);
    if (log_bytes > log_batch_room_max(server->log)) {
        conn_error(conn, request_id, SPOOL_E_TOO_LARGE,
                   "batch above one log commit (a quarter of --segment-size): split it");
        return BATCH_REFUSED;
    }
    if (put_refused_for_space(conn, request_id, batch->count) ||
        handler_put_refused_for_memory(conn, request_id, batch->count))
        return BATCH_REFUSED;
    int room = batch_room(server->queues, batch);
    if (room != 0) {
        conn_error(conn, request_id, map_error(room),
                   room == QUEUE_ETOOBIG    ? "the batch is larger than a queue's limits"
                   : room == QUEUE_ETOOMANY ? "the batch names more new queues than "
                                              "--max-queues leaves room for"
                                            : "the batch exceeds a queue limit");
        return BATCH_REFUSED;
    }
    room = batch_memory(server->queues, batch);
    if (room != 0) {
        conn_error(conn, request_id, map_error(room),
                   "no memory for the batch's jobs: puts refused until memory frees");
        return BATCH_REFUSED;
    }
    if (server->log_full || log_bytes > log_open_room(server->log)) {
        /* Keep record order: nothing jumps the waiting batch. The open batch is committed
         * at once when a record in it is waited for, else within the log's lazy bound. */
        server->log_full = true;
        return HANDLER_AGAIN;
    }
    return 0;
}

/* PUT_BATCH: all or nothing, always. Every body, queue limit and the disk headroom are
 * checked, and the open log batch must hold every record, before the first job is put; then
 * the jobs are put in one go, in one loop turn, so they land in one commit: no put can fail
 * half way (nothing else runs in between), and a crash keeps all of them or none. A batch
 * that must wait for log space waits whole, and is checked again when it runs again. */
static int handle_put_batch(struct conn *conn, const struct wire_header *h, union wire_msg *m)
{
    const struct wire_put_batch *batch = &m->put_batch;
    int rc = put_batch_admit(conn, h->request_id, batch);
    if (rc == BATCH_REFUSED)
        return 0;
    if (rc == HANDLER_AGAIN)
        return HANDLER_AGAIN;
    SPOOL_ASSERT(rc == 0);
    struct wire_put_result *results = calloc(batch->count, sizeof(*results));
    if (results == NULL) /* before any put: the batch is refused whole */
        return queue_result(conn, h->request_id, QUEUE_ENOMEM);
    struct queue_time now = conn->server->now; /* one clock pair per turn: its jobs arrived together */
    uint64_t seq_end = 0;
    for (uint32_t i = 0; i < batch->count; i++) {
        rc = put_one(conn, &batch->jobs[i], now, &results[i], &seq_end);
        /* Admission covered every way a put fails: arguments, room, disk, log space; the
         * log's error and ENOSPC state change only in completions, never inside this loop.
         * So only the first put may fail (the log poisoned or out of space meanwhile). */
        SPOOL_ASSERT(rc == 0 || i == 0);
        if (rc != 0) {
            free(results);
            return queue_result(conn, h->request_id, rc);
        }
    }
    union wire_msg r = {.put_batch_reply = {.count = batch->count, .jobs = results}};
    reply_after(conn, h->opcode, h->request_id, &r, seq_end);
    free(results);
    return 0;
}

/* ---- reserve ---- */

static struct wire_delivery delivery_of(const struct job *job, const uint8_t *body)
{
    return (struct wire_delivery){
        .id = job->id,
        .lease = queue_job_x(job)->lease_token,
        .attempt = job->attempts,
        .priority = job->priority,
        .deadline_ms = (uint64_t)queue_job_x(job)->deadline_ms,
        .queue = wire_bytes_of(job->queue->name, job->queue->name_len),
        .body = wire_bytes_of(body, job->body_len),
    };
}

/* Every body is cached (body_fetch_needed said so). */
static void reserve_reply(struct conn *conn, uint64_t request_id, struct job **jobs,
                          uint32_t count)
{
    struct wire_delivery deliveries[LIMIT_RESERVE_MAX_JOBS];
    SPOOL_ASSERT(count <= LIMIT_RESERVE_MAX_JOBS);
    for (uint32_t i = 0; i < count; i++) {
        SPOOL_ASSERT(!queue_job_body_missing(jobs[i]));
        deliveries[i] = delivery_of(jobs[i], queue_job_body(jobs[i]));
    }
    union wire_msg r = {.reserve_reply = {.count = count, .deliveries = deliveries}};
    reply(conn, WIRE_OP_RESERVE, request_id, &r);
}

/* A fetch that failed: the server's reaction (body_fetch_fail_stop), then this request's
 * answer: BUSY when only memory was short, INTERNAL for damage. */
static void fetch_failed(struct server *server, struct conn *conn, const struct body_fetch *fetch)
{
    body_fetch_fail_stop(server, fetch);
    if (conn == NULL || conn->closing)
        return;
    if (fetch->error == -ENOMEM)
        conn_error(conn, fetch->request_id, SPOOL_E_BUSY, "no memory to read job bodies");
    else
        conn_error(conn, fetch->request_id, SPOOL_E_INTERNAL,
                   "a job body could not be read back from the log; the server stops");
    conn_flush_later(conn);
}

/* The connection that asked, if still there; it had counted the fetch as blocked. */
static struct conn *fetch_conn(struct server *server, const struct body_fetch *fetch)
{
    struct conn *conn = conn_by_id(server, fetch->conn_id);
    if (conn == NULL)
        return NULL;
    SPOOL_ASSERT(conn->blocked_count > 0);
    conn->blocked_count--;
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < fetch->count; i++)
        bytes += fetch->jobs[i].len;
    SPOOL_ASSERT(conn->fetch_bytes >= bytes);
    conn->fetch_bytes -= bytes;
    return conn;
}

/* A fetch for conn started: its bodies count toward the connection's output (fetch_bytes)
 * until it settles (fetch_conn). */
static void fetch_started(struct conn *conn, struct job *const *jobs, uint32_t count)
{
    conn->blocked_count++;
    for (uint32_t i = 0; i < count; i++)
        conn->fetch_bytes += jobs[i]->body_len;
}

/* A fetch is done: the connection to answer with its bodies, or NULL when there is none (it
 * closed) or the fetch failed (then reported, fetch_failed). */
static struct conn *fetch_settle(struct server *server, struct body_fetch *fetch)
{
    struct conn *conn = fetch_conn(server, fetch);
    if (fetch->error != 0) {
        fetch_failed(server, conn, fetch);
        return NULL;
    }
    return conn == NULL || conn->closing ? NULL : conn;
}

static void conn_reserves_pause(struct conn *conn, bool pause);

/* Its blocked reserves are handed no more jobs once it owes CONN_OUT_HIGH (conn_out_owed): a
 * connection that does not read its replies cannot take the queue with it. */
static void reserves_pause_if_owing(struct conn *conn)
{
    if (!conn->reserves_paused && conn_out_owed(conn) >= CONN_OUT_HIGH)
        conn_reserves_pause(conn, true);
}

/* Bodies are in: send what is still this connection's. A job whose lease moved on meanwhile
 * (expired, or released when a connection closed) is left out: it is someone else's now. */
static void reserve_fetched(struct server *server, struct body_fetch *fetch)
{
    struct conn *conn = fetch_settle(server, fetch);
    if (conn == NULL)
        return;
    struct wire_delivery deliveries[LIMIT_RESERVE_MAX_JOBS];
    SPOOL_ASSERT(fetch->count <= LIMIT_RESERVE_MAX_JOBS);
    uint32_t count = 0;
    for (uint32_t i = 0; i < fetch->count; i++) {
        const struct body_fetch_job *fj = &fetch->jobs[i];
        struct job *job = queue_job_find(server->queues, fj->id);
        if (job == NULL || job->state != JOB_RESERVED ||
            queue_job_x(job)->lease_token != fj->lease_token)
            continue;
        SPOOL_ASSERT(fj->body != NULL); /* a job still there got its body or failed the fetch */
        deliveries[count++] = delivery_of(job, fj->body);
    }
    union wire_msg r = {.reserve_reply = {.count = count, .deliveries = deliveries}};
    reply(conn, WIRE_OP_RESERVE, fetch->request_id, &r);
    conn_flush_later(conn);
    reserves_pause_if_owing(conn);
}

/* Send the jobs now if their bodies are cached, else once they are read back (a fetch counts
 * as one of the connection's blocked requests until then). */
static void reserve_deliver(struct conn *conn, uint64_t request_id, struct job **jobs,
                            uint32_t count)
{
    struct server *server = conn->server;
    if (!body_fetch_needed(jobs, count)) {
        reserve_reply(conn, request_id, jobs, count);
        return;
    }
    if (body_fetch_start(server->fetcher, jobs, count, reserve_fetched, conn->id, request_id,
                         WIRE_OP_RESERVE) != 0) {
        /* The leases stand and run out as usual: the jobs come back, nothing is lost. */
        conn_error(conn, request_id, SPOOL_E_BUSY, "no memory to read job bodies");
        return;
    }
    fetch_started(conn, jobs, count);
}

static void blocked_free(struct blocked_request *blocked)
{
    struct conn *conn = blocked->conn;
    list_unlink(&blocked->link);
    SPOOL_ASSERT(conn->blocked_count > 0);
    conn->blocked_count--;
    free(blocked);
}

/* Pause (output above CONN_OUT_HIGH: hand the connection no more jobs until it drains; its
 * reserves' deadlines still run, and their empty replies are small) or resume every blocked
 * reserve of the connection. */
static void conn_reserves_pause(struct conn *conn, bool pause)
{
    conn->reserves_paused = pause;
    for (struct list_link *l = conn->blocked.next; l != &conn->blocked; l = l->next) {
        struct blocked_request *b = LIST_ENTRY(l, struct blocked_request, link);
        if (b->is_wait)
            continue;
        if (pause)
            queue_reserver_pause(conn->server->queues, &b->reserver);
        else
            queue_reserver_resume(conn->server->queues, &b->reserver);
    }
}

void handler_conn_drained(struct conn *conn)
{
    if (!conn->reserves_paused || conn->closing || conn_out_owed(conn) >= CONN_OUT_LOW)
        return;
    conn_reserves_pause(conn, false); /* the loop's queue_tick in this turn serves them */
}

static void reserve_wake(struct queue_reserver *reserver, struct job **jobs, uint32_t count)
{
    struct blocked_request *blocked = reserver->ctx;
    struct conn *conn = blocked->conn;
    uint64_t request_id = blocked->request_id;
    blocked_free(blocked);
    reserve_deliver(conn, request_id, jobs, count);
    conn_flush_later(conn);
    reserves_pause_if_owing(conn);
}

/* A request that would block while the server stops gets SHUTTING_DOWN instead. */
static bool refuse_if_stopping(struct conn *conn, uint64_t request_id)
{
    if (!conn->server->stopping)
        return false;
    conn_error(conn, request_id, SPOOL_E_SHUTTING_DOWN, "the server is stopping");
    return true;
}

static struct blocked_request *blocked_new(struct conn *conn, uint64_t request_id)
{
    struct blocked_request *blocked = calloc(1, sizeof(*blocked));
    SPOOL_ASSERT(blocked != NULL);
    blocked->conn = conn;
    blocked->request_id = request_id;
    list_insert_tail(&conn->blocked, &blocked->link);
    conn->blocked_count++;
    return blocked;
}

/* The reserver a RESERVE describes, polling (deadline now); 0 or a queue error. Only the
 * fields a poll reads are set: the links are used only by a reserver that waits. */
static int reserver_from(struct conn *conn, const struct wire_reserve *req, struct queue_time now,
                         struct queue_reserver *r)
{
    struct server *server = conn->server;
    for (uint32_t i = 0; i < req->queue_count; i++) {
        int rc = queue_get(server->queues, (const char *)req->queues[i].data,
                           req->queues[i].len, &r->queues[i]);
        if (rc != 0)
            return rc;
    }
    r->queue_count = req->queue_count;
    r->count_max = req->count_max;
    r->bytes_max = server->config.frame_size_max - WIRE_HEADER_SIZE - 64;
    r->deadline_ns = now.mono_ns;
    r->detach = (req->flags & WIRE_RESERVE_DETACH) != 0;
    r->owner = &conn->owner;
    r->wake = NULL;
    r->ctx = NULL;
    return 0;
}

/* RESERVE: a poll on the stack first; only a reserve that finds nothing and may wait gets a
 * blocked request (allocated, linked to its queues until woken or canceled). */
static int handle_reserve(struct conn *conn, const struct wire_header *h, union wire_msg *m)
{
    struct server *server = conn->server;
    const struct wire_reserve *req = &m->reserve;
    if (conn->blocked_count >= CONN_BLOCKED_MAX) {
        conn_error(conn, h->request_id, SPOOL_E_BUSY, "too many blocked requests");
        return 0;
    }
    struct queue_time now = server->now;
    struct queue_reserver poll;
    int rc = reserver_from(conn, req, now, &poll);
    if (rc != 0)
        return queue_result(conn, h->request_id, rc);
    struct job *jobs[LIMIT_RESERVE_MAX_JOBS];
    uint32_t count = queue_reserve(server->queues, &poll, now, jobs);
    SPOOL_ASSERT(!poll.waiting); /* its deadline is now */
    if (count > 0 || req->timeout_ms == 0) {
        reserve_deliver(conn, h->request_id, jobs, count);
        return 0;
    }
    if (refuse_if_stopping(conn, h->request_id))
        return 0;
    struct blocked_request *blocked = blocked_new(conn, h->request_id);
    struct queue_reserver *r = &blocked->reserver;
    rc = reserver_from(conn, req, now, r);
    SPOOL_ASSERT(rc == 0); /* the same queues were just found */
    r->deadline_ns = queue_time_after_ns(now, req->timeout_ms);
    r->wake = reserve_wake;
    r->ctx = blocked;
    count = queue_reserve(server->queues, r, now, jobs);
    SPOOL_ASSERT(count == 0 && r->waiting); /* nothing became ready since the poll */
    if (conn->reserves_paused)
        queue_reserver_pause(server->queues, r);
    return 0;
}

/* ---- lease operations ---- */

static int handle_ack(struct conn *conn, const struct wire_header *h, union wire_msg *m)
{
    struct queue_logged logged = {0};
    int rc = queue_ack(conn->server->queues, m->ack.id, m->ack.lease, m->ack.result.data,
                       m->ack.result.len, conn->server->now, &logged);
    if (rc != 0)
        return queue_result(conn, h->request_id, rc);
    conn->server->total_acked++;
    union wire_msg r = {0};
    reply_after(conn, h->opcode, h->request_id, &r, logged.seq_end);
    return 0;
}

static int handle_ack_batch(struct conn *conn, const struct wire_header *h, union wire_msg *m)
{
    const struct wire_ack_batch *batch = &m->ack_batch;
    if (conn->batch_results == NULL || conn->batch_request_id != h->request_id) {
        batch_forget(conn);
        conn->batch_results = calloc(batch->count, sizeof(uint16_t));
        SPOOL_ASSERT(conn->batch_results != NULL);
        conn->batch_request_id = h->request_id;
    }
    uint16_t *codes = conn->batch_results;
    struct queue_time now = conn->server->now;
    for (; conn->batch_done < batch->count; conn->batch_done++) {
        const struct wire_ack *ack = &batch->acks[conn->batch_done];
        struct queue_logged logged = {0};
        int rc = queue_ack(conn->server->queues, ack->id, ack->lease, ack->result.data,
                           ack->result.len, now, &logged);
        if (rc == -ENOBUFS)
            return HANDLER_AGAIN;
        codes[conn->batch_done] = rc == 0 ? 0 : wire_error_to_wire(map_error(rc));
        if (rc == 0)
            conn->server->total_acked++;
        if (logged.seq_end != 0)
            conn->batch_seq_end = logged.seq_end;
    }
    union wire_msg r = {.ack_batch_reply = {.count = batch->count, .codes = codes}};
    reply_after(conn, h->opcode, h->request_id, &r, conn->batch_seq_end);
    batch_forget(conn);
    return 0;
}

static int handle_release(struct conn *conn, const struct wire_header *h, union wire_msg *m)
{
    const struct wire_release *req = &m->release;
    struct queue_logged logged = {0};
    uint32_t priority = (req->flags & WIRE_RELEASE_PRIORITY) ? req->priority : UINT32_MAX;
    int64_t delay = req->delay_ms > INT32_MAX * 1000ull ? INT32_MAX * 1000ll
                                                         : (int64_t)req->delay_ms;
    int rc = queue_release(conn->server->queues, req->id, req->lease, delay, priority,
                           (const char *)req->reason.data, req->reason.len,
                           conn->server->now, &logged);
    if (rc != 0)
        return queue_result(conn, h->request_id, rc);
    union wire_msg r = {0};
    reply_after(conn, h->opcode, h->request_id, &r, logged.seq_end);
    return 0;
}

static int handle_touch(struct conn *conn, const struct wire_header *h, union wire_msg *m)
{
    int64_t deadline = 0;
    int rc = queue_touch(conn->server->queues, m->touch.id, m->touch.lease, m->touch.extend_ms,
                         conn->server->now, &deadline);
    if (rc != 0)
        return queue_result(conn, h->request_id, rc);
    union wire_msg r = {.touch_reply = {.deadline_ms = (uint64_t)deadline}};
    reply_after(conn, h->opcode, h->request_id, &r, 0);
    return 0;
}

static int handle_bury(struct conn *conn, const struct wire_header *h, union wire_msg *m)
{
    struct queue_logged logged = {0};
    int rc = queue_bury(conn->server->queues, m->bury.id, m->bury.lease,
                        (const char *)m->bury.reason.data, m->bury.reason.len,
                        conn->server->now, &logged);
    if (rc != 0)
        return queue_result(conn, h->request_id, rc);
    union wire_msg r = {0};
    reply_after(conn, h->opcode, h->request_id, &r, logged.seq_end);
    return 0;
}

/* ---- kick, peek, delete ---- */

static int handle_kick(struct conn *conn, const struct wire_header *h, union wire_msg *m)
{
    struct queue_logged logged = {0};
    uint32_t kicked = 0;
    int rc = queue_kick(conn->server->queues, (const char *)m->kick.queue.data,
                        m->kick.queue.len, m->kick.count, conn->server->now, &kicked, &logged);
    if (rc != 0)
        return queue_result(conn, h->request_id, rc);
    union wire_msg r = {.count_reply = {.count = kicked}};
    reply_after(conn, h->opcode, h->request_id, &r, logged.seq_end);
    return 0;
}

static int handle_kick_job(struct conn *conn, const struct wire_header *h, union wire_msg *m)
{
    struct queue_logged logged = {0};
    int rc = queue_kick_job(conn->server->queues, m->job_ref.id, conn->server->now, &logged);
    if (rc != 0)
        return queue_result(conn, h->request_id, rc);
    union wire_msg r = {0};
    reply_after(conn, h->opcode, h->request_id, &r, logged.seq_end);
    return 0;
}

/* A peek's body is in: answer with the job as it is now (NOT_FOUND if it is forgotten; a job
 * settled meanwhile is shown as settled jobs are, without a body). */
static void peek_fetched(struct server *server, struct body_fetch *fetch)
{
    struct conn *conn = fetch_settle(server, fetch);
    if (conn == NULL)
        return;
    struct job *job = queue_job_find(server->queues, fetch->jobs[0].id);
    if (job == NULL) {
        conn_error(conn, fetch->request_id, SPOOL_E_NOT_FOUND, NULL);
    } else {
        union wire_msg r;
        job_info_fill(job, false, &r.job_info);
        if (queue_job_live(job)) {
            SPOOL_ASSERT(fetch->jobs[0].body != NULL); /* live: it came, or the fetch failed */
            r.job_info.body = wire_bytes_of(fetch->jobs[0].body, fetch->jobs[0].len);
        }
        reply(conn, fetch->opcode, fetch->request_id, &r);
    }
    conn_flush_later(conn);
}

static int peek_answer(struct conn *conn, const struct wire_header *h, struct job *job)
{
    if (job == NULL)
        return queue_result(conn, h->request_id, QUEUE_ENOTFOUND);
    if (body_fetch_needed(&job, 1)) {
        if (conn->blocked_count >= CONN_BLOCKED_MAX) {
            conn_error(conn, h->request_id, SPOOL_E_BUSY, "too many blocked requests");
            return 0;
        }
        if (body_fetch_start(conn->server->fetcher, &job, 1, peek_fetched, conn->id,
                             h->request_id, h->opcode) != 0) {
            conn_error(conn, h->request_id, SPOOL_E_BUSY, "no memory to read job bodies");
            return 0;
        }
        fetch_started(conn, &job, 1);
        return 0;
    }
    union wire_msg r;
    job_info_fill(job, true, &r.job_info);
    reply(conn, h->opcode, h->request_id, &r);
    return 0;
}

static int handle_peek(struct conn *conn, const struct wire_header *h, union wire_msg *m)
{
    return peek_answer(conn, h, queue_peek_id(conn->server->queues, m->job_ref.id));
}

static int handle_peek_next(struct conn *conn, const struct wire_header *h, union wire_msg *m)
{
    enum job_state which = m->peek_next.state == WIRE_STATE_READY     ? JOB_READY
                           : m->peek_next.state == WIRE_STATE_DELAYED ? JOB_DELAYED
                           : m->peek_next.state == WIRE_STATE_DEAD    ? JOB_DEAD
                                                                      : JOB_DONE;
    if (which == JOB_DONE) {
        conn_error(conn, h->request_id, SPOOL_E_BAD_REQUEST, "peek ready, delayed or dead");
        return 0;
    }
    return peek_answer(conn, h,
                       queue_peek_next(conn->server->queues, (const char *)m->peek_next.queue.data,
                                       m->peek_next.queue.len, which));
}

static int handle_delete(struct conn *conn, const struct wire_header *h, union wire_msg *m)
{
    struct queue_logged logged = {0};
    int rc = queue_delete(conn->server->queues, m->job_ref.id, conn->server->now, &logged);
    if (rc != 0)
        return queue_result(conn, h->request_id, rc);
    union wire_msg r = {0};
    reply_after(conn, h->opcode, h->request_id, &r, logged.seq_end);
    return 0;
}

/* ---- wait and status ---- */

static void status_reply(struct conn *conn, uint16_t opcode, uint64_t request_id,
                         const struct queue_job_status *status)
{
    struct job *job = queue_job_find(conn->server->queues, status->id);
    union wire_msg r;
    if (job != NULL) {
        job_info_fill(job, false, &r.job_info);
    } else {
        memset(&r, 0, sizeof(r));
        r.job_info.id = status->id;
        r.job_info.attempts = status->attempts;
        r.job_info.created_ms = (uint64_t)status->created_ms;
        r.job_info.finished_ms = (uint64_t)status->settled_ms;
    }
    r.job_info.state = state_to_wire(status->state);
    r.job_info.result = wire_bytes_of(status->result, status->result_len);
    if (status->state == JOB_DEAD)
        r.job_info.reason = wire_bytes_of(status->reason, status->reason_len);
    job_info_for_version(conn->version, &r.job_info);
    reply(conn, opcode, request_id, &r);
}

static void wait_wake(struct queue_job_waiter *waiter, bool found,
                      const struct queue_job_status *status)
{
    struct blocked_request *blocked = waiter->ctx;
    struct conn *conn = blocked->conn;
    if (found)
        status_reply(conn, WIRE_OP_WAIT, blocked->request_id, status);
    else
        conn_error(conn, blocked->request_id, SPOOL_E_NOT_FOUND, "job deleted");
    blocked_free(blocked);
    conn_flush_later(conn);
}

static int handle_wait(struct conn *conn, const struct wire_header *h, union wire_msg *m)
{
    if (conn->blocked_count >= CONN_BLOCKED_MAX) {
        conn_error(conn, h->request_id, SPOOL_E_BUSY, "too many blocked requests");
        return 0;
    }
    struct blocked_request *blocked = blocked_new(conn, h->request_id);
    blocked->is_wait = true;
    struct queue_job_waiter *w = &blocked->waiter;
    struct queue_time now = conn->server->now;
    w->job_id = m->wait.id;
    w->deadline_ns = queue_time_after_ns(now, m->wait.timeout_ms);
    w->wake = wait_wake;
    w->ctx = blocked;
    bool found = false;
    struct queue_job_status status;
    if (!queue_wait(conn->server->queues, w, now, &found, &status)) {
        if (refuse_if_stopping(conn, h->request_id)) {
            queue_wait_cancel(conn->server->queues, w);
            blocked_free(blocked);
        }
        return 0;
    }
    if (found)
        status_reply(conn, h->opcode, h->request_id, &status);
    else
        conn_error(conn, h->request_id, SPOOL_E_NOT_FOUND, NULL);
    blocked_free(blocked);
    return 0;
}

static int handle_status(struct conn *conn, const struct wire_header *h, union wire_msg *m)
{
    struct queue_job_status status;
    if (!queue_status(conn->server->queues, m->job_ref.id, &status))
        return queue_result(conn, h->request_id, QUEUE_ENOTFOUND);
    status_reply(conn, h->opcode, h->request_id, &status);
    return 0;
}

/* ---- stats and queue administration ---- */

/* Bytes one queue takes in a STATS reply besides its name (flags, seven u64, two u32, the
 * name's length byte), and in a QUEUES reply; rounded up. A reply lists queues while they fit
 * one frame (a server with more queues than that answers with the first ones). */
#define STATS_QUEUE_BYTES 80
#define QUEUES_QUEUE_BYTES 4
/* The server part of a STATS reply and the counts, rounded up. */
#define STATS_FIXED_BYTES 128

struct stats_walk {
    struct wire_queue_stats *out;
    uint32_t count;
    uint32_t capacity;
    uint64_t bytes_left;
    struct queue_time now;
    const struct queue_state *state;
};

static void stats_one(const struct queue_state *state, const struct queue *queue,
                      struct queue_time now, struct wire_queue_stats *out)
{
    struct queue_stats st;
    queue_stats_get(queue, now, &st);
    uint64_t ttr_ms;
    uint32_t max_attempts;
    queue_defaults_get(state, queue, &ttr_ms, &max_attempts);
    *out = (struct wire_queue_stats){
        .name = wire_bytes_of(queue->name, queue->name_len),
        .flags = st.paused ? WIRE_QUEUE_PAUSED : 0,
        .ready = st.ready, .delayed = st.delayed, .reserved = st.reserved, .dead = st.dead,
        .total_put = st.total_put, .oldest_ready_age_ms = (uint64_t)st.oldest_ready_age_ms,
        .ack_floor = st.ack_floor,
        .ttr_ms = ttr_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ttr_ms,
        .max_attempts = max_attempts, .expired = st.expired,
    };
}

static void stats_collect(void *ctx, struct queue *queue)
{
    struct stats_walk *walk = ctx;
    uint64_t bytes = STATS_QUEUE_BYTES + queue->name_len;
    if (walk->count < walk->capacity && bytes <= walk->bytes_left) {
        walk->bytes_left -= bytes;
        stats_one(walk->state, queue, walk->now, &walk->out[walk->count++]);
    }
}

/* Room for a version 2 page's next_cursor: a name8 of the longest name. */
#define PAGE_CURSOR_BYTES (1 + LIMIT_QUEUE_NAME_MAX_BYTES)

/* Every field of both versions: a version 1 reply leaves the version 2 ones out. */
static void stats_server_fill(struct server *server, struct wire_server_stats *out)
{
    struct queue_totals totals;
    queue_totals_get(server->queues, &totals);
    *out = (struct wire_server_stats){
        .uptime_ms = (uint64_t)(server_now_ms() - server->started_ms),
        .connections = server->conn_count,
        .commits = server->commits, .log_bytes = server->log_bytes, .ready = totals.ready,
        .delayed = totals.delayed, .reserved = totals.reserved, .dead = totals.dead,
        .total_acked = server->total_acked,
        .queues = totals.queues > UINT32_MAX ? UINT32_MAX : (uint32_t)totals.queues,
        .expired = totals.expired, .keys = totals.keys, .keys_evicted = totals.keys_evicted,
    };
}

static void total_put_add(void *ctx, struct queue *queue)
{
    *(uint64_t *)ctx += queue->stats.total_put;
}

/* Version 2, every queue: one page in name order after the cursor, as many as limit and the
 * frame allow; next_cursor names the last one when more follow. */
static void stats_page(struct conn *conn, const struct wire_page *page, struct stats_walk *walk,
                       struct wire_bytes *next_cursor)
{
    struct queue **sorted;
    uint32_t n = queue_page(conn->server->queues, (const char *)page->cursor.data,
                            page->cursor.len, &sorted);
    walk->capacity = n < WIRE_STATS_QUEUES_MAX ? n : WIRE_STATS_QUEUES_MAX;
    if (page->limit != 0 && page->limit < walk->capacity)
        walk->capacity = page->limit;
    walk->bytes_left -= PAGE_CURSOR_BYTES;
    walk->out = calloc(walk->capacity + 1u, sizeof(*walk->out));
    SPOOL_ASSERT(walk->out != NULL);
    for (uint32_t i = 0; i < walk->capacity && walk->count == i; i++)
        stats_collect(walk, sorted[i]);
    if (walk->count < n && walk->count > 0)
        *next_cursor = walk->out[walk->count - 1].name;
    free(sorted);
}

static int handle_stats(struct conn *conn, const struct wire_header *h, union wire_msg *m)
{
    struct server *server = conn->server;
    struct queue_time now = server->now;
    union wire_msg r = {0};
    stats_server_fill(server, &r.stats_reply.server);
    struct stats_walk walk = {.now = now, .state = server->queues,
                              .bytes_left = server->config.frame_size_max - WIRE_HEADER_SIZE -
                                            STATS_FIXED_BYTES};
    if (m->page.queue.len > 0) {
        struct queue *queue = queue_find(server->queues, (const char *)m->page.queue.data,
                                         m->page.queue.len);
        if (queue == NULL)
            return queue_result(conn, h->request_id, QUEUE_ENOTFOUND);
        walk.capacity = 1;
        walk.out = calloc(1, sizeof(*walk.out));
        SPOOL_ASSERT(walk.out != NULL);
        stats_collect(&walk, queue);
    } else if (conn_wire_version(conn) >= 2) {
        stats_page(conn, &m->page, &walk, &r.stats_reply.next_cursor);
    } else { /* version 1: as many as fit, in no order (version 2 pages) */
        uint64_t queues = r.stats_reply.server.queues;
        walk.capacity = queues > WIRE_STATS_QUEUES_MAX ? WIRE_STATS_QUEUES_MAX
                                                       : (uint32_t)queues;
        walk.out = calloc(walk.capacity + 1u, sizeof(*walk.out));
        SPOOL_ASSERT(walk.out != NULL);
        queue_each(server->queues, stats_collect, &walk);
    }
    if (conn_wire_version(conn) >= 2) { /* every queue's, not only this page's */
        queue_each(server->queues, total_put_add, &r.stats_reply.server.total_put);
    } else {
        for (uint32_t i = 0; i < walk.count; i++)
            r.stats_reply.server.total_put += walk.out[i].total_put;
    }
    r.stats_reply.queue_count = walk.count;
    r.stats_reply.queues = walk.out;
    reply(conn, h->opcode, h->request_id, &r);
    free(walk.out);
    return 0;
}

struct queues_walk {
    struct wire_queue_entry *out;
    uint32_t count;
    uint32_t capacity;
    uint64_t bytes_left;
};

static void queues_collect(void *ctx, struct queue *queue)
{
    struct queues_walk *walk = ctx;
    uint64_t bytes = QUEUES_QUEUE_BYTES + queue->name_len;
    if (walk->count >= walk->capacity || bytes > walk->bytes_left)
        return;
    walk->bytes_left -= bytes;
    walk->out[walk->count++] = (struct wire_queue_entry){
        .name = wire_bytes_of(queue->name, queue->name_len),
        .flags = queue->paused ? WIRE_QUEUE_PAUSED : 0,
    };
}

static int handle_queues(struct conn *conn, const struct wire_header *h, union wire_msg *m)
{
    struct queue_totals totals;
    queue_totals_get(conn->server->queues, &totals);
    struct queues_walk walk = {.capacity = totals.queues > WIRE_STATS_QUEUES_MAX
                                               ? WIRE_STATS_QUEUES_MAX
                                               : (uint32_t)totals.queues,
                               .bytes_left = conn->server->config.frame_size_max -
                                             WIRE_HEADER_SIZE - STATS_FIXED_BYTES};
    union wire_msg r = {0};
    if (conn_wire_version(conn) < 2) { /* as many as fit, in no order */
        walk.out = calloc(walk.capacity + 1u, sizeof(*walk.out));
        SPOOL_ASSERT(walk.out != NULL);
        queue_each(conn->server->queues, queues_collect, &walk);
    } else { /* a page in name order after the cursor (see stats_page) */
        struct queue **sorted;
        uint32_t n = queue_page(conn->server->queues, (const char *)m->page.cursor.data,
                                m->page.cursor.len, &sorted);
        walk.capacity = n < WIRE_STATS_QUEUES_MAX ? n : WIRE_STATS_QUEUES_MAX;
        if (m->page.limit != 0 && m->page.limit < walk.capacity)
            walk.capacity = m->page.limit;
        walk.bytes_left -= PAGE_CURSOR_BYTES;
        walk.out = calloc(walk.capacity + 1u, sizeof(*walk.out));
        SPOOL_ASSERT(walk.out != NULL);
        for (uint32_t i = 0; i < walk.capacity && walk.count == i; i++)
            queues_collect(&walk, sorted[i]);
        if (walk.count < n && walk.count > 0)
            r.queues_reply.next_cursor = walk.out[walk.count - 1].name;
        free(sorted);
    }
    r.queues_reply.count = walk.count;
    r.queues_reply.queues = walk.out;
    reply(conn, h->opcode, h->request_id, &r);
    free(walk.out);
    return 0;
}

/* The queue's current settings as a QUEUE_META record, for pause/resume/config to amend. */
static int meta_of(struct conn *conn, struct wire_bytes name, struct record_meta *meta)
{
    struct queue *queue;
    int rc = queue_get(conn->server->queues, (const char *)name.data, name.len, &queue);
    if (rc != 0)
        return rc;
    *meta = (struct record_meta){
        .name = queue->name, .name_len = queue->name_len, .paused = queue->paused,
        .pause_timed = queue->pause_timed, /* a setting change keeps pause-tube's kind */
        .default_max_attempts = queue->default_max_attempts,
        .default_ttr_ms = queue->default_ttr_ms, .max_jobs = queue->max_jobs,
        .max_bytes = queue->max_bytes,
    };
    return 0;
}

static int meta_apply(struct conn *conn, const struct wire_header *h, struct record_meta *meta)
{
    struct queue_logged logged = {0};
    int rc = queue_set_meta(conn->server->queues, meta, conn->server->now, &logged);
    if (rc != 0)
        return queue_result(conn, h->request_id, rc);
    union wire_msg r = {0};
    reply_after(conn, h->opcode, h->request_id, &r, logged.seq_end);
    return 0;
}

static int handle_pause(struct conn *conn, const struct wire_header *h, union wire_msg *m)
{
    struct record_meta meta;
    int rc = meta_of(conn, m->queue_ref.queue, &meta);
    if (rc != 0)
        return queue_result(conn, h->request_id, rc);
    meta.paused = h->opcode == WIRE_OP_PAUSE;
    return meta_apply(conn, h, &meta);
}

static int handle_queue_config(struct conn *conn, const struct wire_header *h,
                               union wire_msg *m)
{
    struct record_meta meta;
    int rc = meta_of(conn, m->queue_config.queue, &meta);
    if (rc != 0)
        return queue_result(conn, h->request_id, rc);
    if (m->queue_config.flags & WIRE_CONFIG_TTR)
        meta.default_ttr_ms = m->queue_config.ttr_ms;
    if (m->queue_config.flags & WIRE_CONFIG_MAX_ATTEMPTS)
        meta.default_max_attempts = m->queue_config.max_attempts;
    return meta_apply(conn, h, &meta);
}

static int handle_purge(struct conn *conn, const struct wire_header *h, union wire_msg *m)
{
    struct queue_logged logged = {0};
    uint64_t deleted = 0;
    int rc = queue_purge(conn->server->queues, (const char *)m->queue_ref.queue.data,
                         m->queue_ref.queue.len, conn->server->now, &deleted, &logged);
    if (rc != 0)
        return queue_result(conn, h->request_id, rc);
    union wire_msg r = {.count_reply = {.count = deleted}};
    reply_after(conn, h->opcode, h->request_id, &r, logged.seq_end);
    return 0;
}

/* DELETE_QUEUE: refused (WRONG_STATE) while the queue has jobs, unless FORCE. */
static int handle_delete_queue(struct conn *conn, const struct wire_header *h,
                               union wire_msg *m)
{
    struct queue_logged logged = {0};
    uint64_t deleted = 0;
    bool force = (m->delete_queue.flags & WIRE_DELETE_QUEUE_FORCE) != 0;
    int rc = queue_delete_queue(conn->server->queues, (const char *)m->delete_queue.queue.data,
                                m->delete_queue.queue.len, force, conn->server->now, &deleted,
                                &logged);
    if (rc != 0)
        return queue_result(conn, h->request_id, rc);
    union wire_msg r = {.count_reply = {.count = deleted}};
    reply_after(conn, h->opcode, h->request_id, &r, logged.seq_end);
    return 0;
}

/* ---- the table ---- */

#define HANDLER_OPCODES (WIRE_OP_DELETE_QUEUE + 1)

static const handler_fn handlers[HANDLER_OPCODES] = {
    [WIRE_OP_HELLO] = handle_hello,         [WIRE_OP_PING] = handle_ping,
    [WIRE_OP_PUT] = handle_put,             [WIRE_OP_PUT_BATCH] = handle_put_batch,
    [WIRE_OP_RESERVE] = handle_reserve,     [WIRE_OP_ACK] = handle_ack,
    [WIRE_OP_ACK_BATCH] = handle_ack_batch, [WIRE_OP_RELEASE] = handle_release,
    [WIRE_OP_TOUCH] = handle_touch,         [WIRE_OP_BURY] = handle_bury,
    [WIRE_OP_KICK] = handle_kick,           [WIRE_OP_KICK_JOB] = handle_kick_job,
    [WIRE_OP_PEEK] = handle_peek,           [WIRE_OP_PEEK_NEXT] = handle_peek_next,
    [WIRE_OP_DELETE] = handle_delete,       [WIRE_OP_WAIT] = handle_wait,
    [WIRE_OP_STATUS] = handle_status,       [WIRE_OP_STATS] = handle_stats,
    [WIRE_OP_QUEUES] = handle_queues,       [WIRE_OP_PAUSE] = handle_pause,
    [WIRE_OP_RESUME] = handle_pause,        [WIRE_OP_PURGE] = handle_purge,
    [WIRE_OP_QUEUE_CONFIG] = handle_queue_config,
    [WIRE_OP_DELETE_QUEUE] = handle_delete_queue,
};

bool handler_known(uint16_t opcode)
{
    return opcode < HANDLER_OPCODES && handlers[opcode] != NULL && wire_op_known(opcode);
}

int handler_dispatch(struct conn *conn, const struct wire_header *header, union wire_msg *msg)
{
    SPOOL_ASSERT(handler_known(header->opcode));
    struct server *server = conn->server;
    int rc = handlers[header->opcode](conn, header, msg);
    if (rc != HANDLER_AGAIN) /* run again later: counted then */
        metrics_count_request(&server->metrics, header->opcode);
    return rc;
}

/* Shutdown begins: every blocked RESERVE and WAIT gets SHUTTING_DOWN (retryable: try
 * another server or later) now, rather than the connection closing under it. */
void handler_shutting_down(struct server *server)
{
    for (struct list_link *l = server->conns.next; l != &server->conns; l = l->next) {
        struct conn *conn = LIST_ENTRY(l, struct conn, link);
        struct list_link *link;
        while ((link = list_first(&conn->blocked)) != NULL) {
            struct blocked_request *blocked = LIST_ENTRY(link, struct blocked_request, link);
            if (blocked->is_wait)
                queue_wait_cancel(server->queues, &blocked->waiter);
            else
                queue_reserver_cancel(server->queues, &blocked->reserver);
            conn_error(conn, blocked->request_id, SPOOL_E_SHUTTING_DOWN, "the server is stopping");
            blocked_free(blocked);
            conn_flush_later(conn);
        }
    }
}

void handler_conn_closed(struct conn *conn)
{
    struct list_link *link;
    while ((link = list_first(&conn->blocked)) != NULL) {
        struct blocked_request *blocked = LIST_ENTRY(link, struct blocked_request, link);
        if (blocked->is_wait)
            queue_wait_cancel(conn->server->queues, &blocked->waiter);
        else
            queue_reserver_cancel(conn->server->queues, &blocked->reserver);
        blocked_free(blocked);
    }
    batch_forget(conn);
}
