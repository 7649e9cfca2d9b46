/*
 * client_query.c: libspool calls that read state (peek, status, wait, stats, queues), queue
 * administration (pause, resume, purge, defaults) and the pipelined API.
 *
 * Results are packed like in client.c: one allocation per result, the struct or array first,
 * then NUL-terminated copies of every string and body it points to.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "assert.h"
#include "client_internal.h"

static struct spool_job *pack_job(const struct wire_job_info *j)
{
    size_t size = sizeof(struct spool_job) + j->queue.len + 1 + j->reason.len + 1 + j->result.len +
                  1 + j->body.len + 1;
    struct spool_job *out = malloc(size);
    if (out == NULL)
        return NULL;
    *out = (struct spool_job){.id = j->id,
                              .state = j->state,
                              .priority = j->priority,
                              .attempts = j->attempts,
                              .max_attempts = j->max_attempts,
                              .ttr_ms = j->ttr_ms,
                              .created_ms = j->created_ms,
                              .ready_at_ms = j->ready_at_ms,
                              .deadline_ms = j->deadline_ms,
                              .finished_ms = j->finished_ms,
                              .result_len = j->result.len,
                              .body_len = j->body.len};
    char *cursor = (char *)(out + 1);
    out->queue = client_pack_bytes(&cursor, j->queue);
    out->reason = client_pack_bytes(&cursor, j->reason);
    out->result = client_pack_bytes(&cursor, j->result);
    out->body = client_pack_bytes(&cursor, j->body);
    SPOOL_ASSERT((size_t)(cursor - (char *)out) == size);
    return out;
}

/* Run a request whose reply is a job info, and hand the caller a packed copy. */
static int call_job(spool_client *c, uint16_t op, const union wire_msg *msg, uint32_t wait_ms,
                    struct spool_job **out)
{
    if (out == NULL)
        return SPOOL_E_INVALID_ARGUMENT;
    union wire_msg reply;
    int rc = client_call(c, op, msg, wait_ms, &reply);
    if (rc != 0)
        return rc;
    struct spool_job *job = pack_job(&reply.job_info);
    client_reply_done(c, op, &reply);
    if (job == NULL)
        return -ENOMEM;
    *out = job;
    return 0;
}

void spool_job_free(struct spool_job *job)
{
    free(job);
}

int spool_peek(spool_client *c, uint64_t id, struct spool_job **out)
{
    union wire_msg msg = {.job_ref = {.id = id}};
    return call_job(c, WIRE_OP_PEEK, &msg, 0, out);
}

int spool_peek_next(spool_client *c, const char *queue, int state, struct spool_job **out)
{
    if (!client_queue_ok(queue) ||
        (state != SPOOL_STATE_READY && state != SPOOL_STATE_DELAYED && state != SPOOL_STATE_DEAD))
        return SPOOL_E_INVALID_ARGUMENT;
    union wire_msg msg = {.peek_next = {.queue = wire_bytes_str(queue), .state = (uint8_t)state}};
    return call_job(c, WIRE_OP_PEEK_NEXT, &msg, 0, out);
}

int spool_status(spool_client *c, uint64_t id, struct spool_job **out)
{
    union wire_msg msg = {.job_ref = {.id = id}};
    return call_job(c, WIRE_OP_STATUS, &msg, 0, out);
}

int spool_wait(spool_client *c, uint64_t id, uint32_t timeout_ms, struct spool_job **out)
{
    union wire_msg msg = {.wait = {.id = id, .timeout_ms = timeout_ms}};
    return call_job(c, WIRE_OP_WAIT, &msg, timeout_ms, out);
}

/* Pages of a version 2 STATS or QUEUES, copied out of each reply (whose bytes the next call
 * reuses) and joined into the caller's one allocation at the end. */
struct page_names {
    char *bytes; /* NUL-terminated names back to back */
    size_t len;
    size_t cap;
};

static const char *page_name_add(struct page_names *n, struct wire_bytes name, size_t *at)
{
    if (n->len + name.len + 1 > n->cap) {
        size_t cap = n->cap == 0 ? 4096 : n->cap;
        while (cap < n->len + name.len + 1)
            cap *= 2;
        char *bytes = realloc(n->bytes, cap);
        if (bytes == NULL)
            return NULL;
        n->bytes = bytes;
        n->cap = cap;
    }
    *at = n->len;
    memcpy(n->bytes + n->len, name.data, name.len);
    n->bytes[n->len + name.len] = 0;
    n->len += name.len + 1;
    return n->bytes;
}

/* The cursor of the next page (empty: none); a page that names one but lists nothing would
 * never end, so it is a protocol error. */
static int page_next(struct wire_bytes next_cursor, uint32_t count, char cursor[256])
{
    if (next_cursor.len == 0) {
        cursor[0] = 0;
        return 0;
    }
    if (count == 0 || next_cursor.len > LIMIT_QUEUE_NAME_MAX_BYTES)
        return SPOOL_E_PROTOCOL;
    memcpy(cursor, next_cursor.data, next_cursor.len);
    cursor[next_cursor.len] = 0;
    return 1;
}

struct stats_pages {
    struct wire_server_stats server; /* of the first page */
    struct spool_queue_stats *queues; /* names as offsets into names.bytes until packed */
    size_t count;
    size_t cap;
    struct page_names names;
};

static int stats_pages_add(struct stats_pages *p, const struct wire_stats_reply *r, bool first)
{
    if (first)
        p->server = r->server;
    if (p->count + r->queue_count > p->cap) {
        size_t cap = p->cap == 0 ? 64 : p->cap;
        while (cap < p->count + r->queue_count)
            cap *= 2;
        struct spool_queue_stats *q = realloc(p->queues, cap * sizeof(*q));
        if (q == NULL)
            return -ENOMEM;
        p->queues = q;
        p->cap = cap;
    }
    for (uint32_t i = 0; i < r->queue_count; i++) {
        const struct wire_queue_stats *q = &r->queues[i];
        size_t at;
        if (page_name_add(&p->names, q->name, &at) == NULL)
            return -ENOMEM;
        p->queues[p->count++] = (struct spool_queue_stats){
            .name = (const char *)(uintptr_t)at, .paused = (q->flags & WIRE_QUEUE_PAUSED) != 0,
            .ready = q->ready, .delayed = q->delayed, .reserved = q->reserved, .dead = q->dead,
            .total_put = q->total_put, .oldest_ready_age_ms = q->oldest_ready_age_ms,
            .ack_floor = q->ack_floor, .ttr_ms = q->ttr_ms, .max_attempts = q->max_attempts,
            .expired = q->expired};
    }
    return 0;
}

static struct spool_stats *stats_pages_pack(const struct stats_pages *p)
{
    size_t size = sizeof(struct spool_stats) + p->count * sizeof(struct spool_queue_stats) +
                  p->names.len;
    struct spool_stats *out = malloc(size);
    if (out == NULL)
        return NULL;
    const struct wire_server_stats *s = &p->server;
    *out = (struct spool_stats){
        .uptime_ms = s->uptime_ms, .connections = s->connections, .commits = s->commits,
        .log_bytes = s->log_bytes, .ready = s->ready, .delayed = s->delayed,
        .reserved = s->reserved, .dead = s->dead, .total_put = s->total_put,
        .total_acked = s->total_acked, .queue_count = p->count,
        .queues = (struct spool_queue_stats *)(out + 1), .expired = s->expired, .keys = s->keys,
        .keys_evicted = s->keys_evicted};
    char *names = (char *)(out->queues + p->count);
    if (p->names.len > 0)
        memcpy(names, p->names.bytes, p->names.len);
    for (size_t i = 0; i < p->count; i++) {
        out->queues[i] = p->queues[i];
        out->queues[i].name = names + (uintptr_t)p->queues[i].name;
    }
    return out;
}

int spool_stats(spool_client *c, const char *queue, struct spool_stats **out)
{
    if (out == NULL || (queue != NULL && !client_queue_ok(queue)))
        return SPOOL_E_INVALID_ARGUMENT;
    struct stats_pages pages = {0};
    char cursor[256] = "";
    int rc = 0;
    for (int more = 1, first = 1; more > 0 && rc == 0; first = 0) {
        union wire_msg msg = {.page = {.queue = wire_bytes_str(queue),
                                       .cursor = wire_bytes_str(cursor)}};
        union wire_msg reply;
        rc = client_call(c, WIRE_OP_STATS, &msg, 0, &reply);
        if (rc != 0)
            break;
        rc = stats_pages_add(&pages, &reply.stats_reply, first);
        more = page_next(reply.stats_reply.next_cursor, reply.stats_reply.queue_count, cursor);
        if (more < 0)
            rc = more;
        client_reply_done(c, WIRE_OP_STATS, &reply);
    }
    struct spool_stats *stats = rc == 0 ? stats_pages_pack(&pages) : NULL;
    free(pages.queues);
    free(pages.names.bytes);
    if (rc != 0)
        return rc;
    if (stats == NULL)
        return -ENOMEM;
    *out = stats;
    return 0;
}

void spool_stats_free(struct spool_stats *stats)
{
    free(stats);
}

struct queue_pages {
    size_t *name_at;
    int *paused;
    size_t count;
    size_t cap;
    struct page_names names;
};

static int queue_pages_add(struct queue_pages *p, const struct wire_queues_reply *r)
{
    if (p->count + r->count > p->cap) {
        size_t cap = p->cap == 0 ? 64 : p->cap;
        while (cap < p->count + r->count)
            cap *= 2;
        size_t *at = realloc(p->name_at, cap * sizeof(*at));
        if (at != NULL)
            p->name_at = at;
        int *paused = realloc(p->paused, cap * sizeof(*paused));
        if (paused != NULL)
            p->paused = paused;
        if (at == NULL || paused == NULL)
            return -ENOMEM;
        p->cap = cap;
    }
    for (uint32_t i = 0; i < r->count; i++) {
        if (page_name_add(&p->names, r->queues[i].name, &p->name_at[p->count]) == NULL)
            return -ENOMEM;
        p->paused[p->count++] = (r->queues[i].flags & WIRE_QUEUE_PAUSED) != 0;
    }
    return 0;
}

static int queue_pages_fetch(spool_client *c, struct queue_pages *pages)
{
    char cursor[256] = "";
    int rc = 0;
    for (int more = 1; more > 0 && rc == 0;) {
        union wire_msg msg = {.page = {.cursor = wire_bytes_str(cursor)}};
        union wire_msg reply;
        rc = client_call(c, WIRE_OP_QUEUES, &msg, 0, &reply);
        if (rc != 0)
            break;
        rc = queue_pages_add(pages, &reply.queues_reply);
        more = page_next(reply.queues_reply.next_cursor, reply.queues_reply.count, cursor);
        if (more < 0)
            rc = more;
        client_reply_done(c, WIRE_OP_QUEUES, &reply);
    }
    return rc;
}

int spool_queues(spool_client *c, struct spool_queue_info **out, size_t *count_out)
{
    if (out == NULL || count_out == NULL)
        return SPOOL_E_INVALID_ARGUMENT;
    struct queue_pages pages = {0};
    int rc = queue_pages_fetch(c, &pages);
    struct spool_queue_info *q = NULL;
    if (rc == 0) {
        q = malloc((pages.count + 1) * sizeof(*q) + pages.names.len);
        if (q == NULL)
            rc = -ENOMEM;
    }
    if (rc == 0) {
        char *names = (char *)(q + pages.count + 1);
        if (pages.names.len > 0)
            memcpy(names, pages.names.bytes, pages.names.len);
        for (size_t i = 0; i < pages.count; i++)
            q[i] = (struct spool_queue_info){.name = names + pages.name_at[i],
                                             .paused = pages.paused[i]};
        q[pages.count] = (struct spool_queue_info){.name = NULL}; /* a terminator */
        *out = q;
        *count_out = pages.count;
    }
    free(pages.name_at);
    free(pages.paused);
    free(pages.names.bytes);
    return rc;
}

void spool_queues_free(struct spool_queue_info *queues)
{
    free(queues);
}

int spool_queue_delete(spool_client *c, const char *queue, int force, uint64_t *deleted_out)
{
    if (!client_queue_ok(queue))
        return SPOOL_E_INVALID_ARGUMENT;
    union wire_msg msg = {.delete_queue = {.queue = wire_bytes_str(queue),
                                           .flags = force ? WIRE_DELETE_QUEUE_FORCE : 0}};
    union wire_msg reply;
    int rc = client_call(c, WIRE_OP_DELETE_QUEUE, &msg, 0, &reply);
    if (rc != 0)
        return rc;
    c->last_durability = reply.count_reply.durability;
    if (deleted_out != NULL)
        *deleted_out = reply.count_reply.count;
    client_reply_done(c, WIRE_OP_DELETE_QUEUE, &reply);
    return 0;
}

int spool_protocol_version(const spool_client *c)
{
    return c == NULL ? 0 : client_version(c);
}

static int call_queue(spool_client *c, uint16_t op, const char *queue, uint64_t *count_out)
{
    if (!client_queue_ok(queue))
        return SPOOL_E_INVALID_ARGUMENT;
    union wire_msg msg = {.queue_ref = {.queue = wire_bytes_str(queue)}};
    union wire_msg reply;
    int rc = client_call(c, op, &msg, 0, &reply);
    if (rc != 0)
        return rc;
    if (op == WIRE_OP_PURGE) {
        c->last_durability = reply.count_reply.durability;
        if (count_out != NULL)
            *count_out = reply.count_reply.count;
    } else {
        c->last_durability = reply.durable_reply.durability;
    }
    client_reply_done(c, op, &reply);
    return 0;
}

int spool_pause(spool_client *c, const char *queue)
{
    return call_queue(c, WIRE_OP_PAUSE, queue, NULL);
}

int spool_resume(spool_client *c, const char *queue)
{
    return call_queue(c, WIRE_OP_RESUME, queue, NULL);
}

int spool_purge(spool_client *c, const char *queue, uint64_t *purged_out)
{
    return call_queue(c, WIRE_OP_PURGE, queue, purged_out);
}

int spool_queue_set_defaults(spool_client *c, const char *queue, uint32_t ttr_ms,
                             int64_t max_attempts)
{
    if (!client_queue_ok(queue) || max_attempts > (int64_t)UINT32_MAX)
        return SPOOL_E_INVALID_ARGUMENT;
    union wire_msg msg = {.queue_config = {.queue = wire_bytes_str(queue), .ttr_ms = ttr_ms}};
    if (ttr_ms != 0)
        msg.queue_config.flags |= WIRE_CONFIG_TTR;
    if (max_attempts >= 0) {
        msg.queue_config.flags |= WIRE_CONFIG_MAX_ATTEMPTS;
        msg.queue_config.max_attempts = (uint32_t)max_attempts;
    }
    union wire_msg reply;
    int rc = client_call(c, WIRE_OP_QUEUE_CONFIG, &msg, 0, &reply);
    if (rc != 0)
        return rc;
    c->last_durability = reply.durable_reply.durability;
    client_reply_done(c, WIRE_OP_QUEUE_CONFIG, &reply);
    return 0;
}

/* ---- pipelining ---- */

int spool_pipeline_put(spool_client *c, const struct spool_job_spec *job, uint64_t *request_id_out)
{
    if (c->pipeline_pending >= SPOOL_PIPELINE_MAX)
        return SPOOL_E_BUSY;
    union wire_msg msg;
    int rc = client_job_spec_to_wire(job, &msg.put);
    if (rc != 0)
        return rc;
    rc = client_enqueue(c, WIRE_OP_PUT, &msg, request_id_out);
    if (rc == 0)
        c->pipeline_pending++;
    return rc;
}

int spool_pipeline_ack(spool_client *c, uint64_t id, uint64_t lease, const void *result,
                       size_t result_len, uint64_t *request_id_out)
{
    if (c->pipeline_pending >= SPOOL_PIPELINE_MAX)
        return SPOOL_E_BUSY;
    if (result == NULL && result_len > 0)
        return SPOOL_E_INVALID_ARGUMENT;
    if (result_len > LIMIT_RESULT_MAX_BYTES)
        return SPOOL_E_TOO_LARGE;
    union wire_msg msg = {.ack = {.id = id,
                                  .lease = lease,
                                  .result = wire_bytes_of(result_len ? result : "", result_len)}};
    int rc = client_enqueue(c, WIRE_OP_ACK, &msg, request_id_out);
    if (rc == 0)
        c->pipeline_pending++;
    return rc;
}

int spool_pipeline_flush(spool_client *c)
{
    if (c->broken)
        return SPOOL_E_CONNECTION_CLOSED;
    int64_t deadline_ms = c->io_timeout_ms > 0 ? client_now_ms() + c->io_timeout_ms : INT64_MAX;
    return client_flush(c, deadline_ms);
}

/* Fill *out from one reply frame of a pipelined PUT or ACK (or its error). */
static int pipeline_reply(spool_client *c, const struct wire_header *h, const uint8_t *payload,
                          struct spool_reply *out)
{
    size_t len = h->frame_size - WIRE_HEADER_SIZE;
    union wire_msg m;
    *out = (struct spool_reply){.request_id = h->request_id,
                                .opcode = (uint16_t)(h->opcode & ~WIRE_OP_REPLY)};
    if (h->opcode != WIRE_OP_ERROR && h->opcode != (WIRE_OP_PUT | WIRE_OP_REPLY) &&
        h->opcode != (WIRE_OP_ACK | WIRE_OP_REPLY)) {
        c->broken = true;
        return SPOOL_E_PROTOCOL;
    }
    if (wire_decode_v(client_version(c), h->opcode, payload, len, &m) != 0) {
        c->broken = true;
        return SPOOL_E_PROTOCOL;
    }
    if (h->opcode == WIRE_OP_ERROR) {
        out->opcode = 0; /* unknown from an error frame: match by request_id */
        out->error = wire_error_from_wire(m.error.code);
    } else if (h->opcode == (WIRE_OP_PUT | WIRE_OP_REPLY)) {
        out->durability = m.put_reply.durability;
        out->id = m.put_reply.job.id;
    } else {
        out->durability = m.durable_reply.durability;
    }
    return 0;
}

int spool_pipeline_recv(spool_client *c, struct spool_reply *out)
{
    if (out == NULL || c->pipeline_pending == 0)
        return SPOOL_E_INVALID_ARGUMENT;
    struct wire_header h;
    const uint8_t *payload;
    int rc = client_next_frame(c, &h, &payload);
    if (rc != 0)
        return rc;
    c->pipeline_pending--;
    return pipeline_reply(c, &h, payload, out);
}

size_t spool_pipeline_pending(const spool_client *c)
{
    return c->pipeline_pending;
}
