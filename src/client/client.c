/*
 * client.c: the public calls of libspool (include/spool/client.h).
 *
 * Each call checks its arguments, fills the request struct of the shared codec, runs it
 * through client_call (conn.c), and copies what the reply carries into memory the caller
 * owns. Returned structures are packed into one allocation each (the array or struct first,
 * then the strings and bodies it points to, each followed by a NUL byte), so a single free
 * releases everything and a caller cannot leak a piece.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "assert.h"
#include "client_internal.h"

_Static_assert((int)SPOOL_STATE_DONE == (int)WIRE_STATE_DONE, "job states match the wire");
_Static_assert((int)SPOOL_STATE_DEAD == (int)WIRE_STATE_DEAD, "job states match the wire");
_Static_assert((int)SPOOL_DURABLE_SYNCED == (int)WIRE_DURABLE_SYNCED,
               "durability matches the wire");
_Static_assert(SPOOL_RESERVE_DETACH == WIRE_RESERVE_DETACH, "reserve flags match the wire");
_Static_assert(SPOOL_PIPELINE_MAX > 0, "pipelining allowed");

int spool_connect(const char *address, int timeout_ms, spool_client **out)
{
    struct spool_connect_options opts = {.timeout_ms = timeout_ms};
    return spool_connect_opts(address, &opts, out);
}

int spool_connect_opts(const char *address, const struct spool_connect_options *opts,
                       spool_client **out)
{
    if (out == NULL)
        return SPOOL_E_INVALID_ARGUMENT;
    return client_open(address, opts, out);
}

void spool_close(spool_client *c)
{
    client_free(c);
}

int spool_last_durability(const spool_client *c)
{
    return c->last_durability;
}

size_t spool_job_size_max(const spool_client *c)
{
    return c->job_size_max;
}

/* Run a request whose reply is a bare durability byte (or empty, for PING). */
static int call_durable(spool_client *c, uint16_t op, const union wire_msg *msg)
{
    union wire_msg reply;
    int rc = client_call(c, op, msg, 0, &reply);
    if (rc != 0)
        return rc;
    if (op != WIRE_OP_PING)
        c->last_durability = reply.durable_reply.durability;
    client_reply_done(c, op, &reply);
    return 0;
}

int spool_ping(spool_client *c)
{
    return call_durable(c, WIRE_OP_PING, NULL);
}

bool client_queue_ok(const char *queue)
{
    return queue != NULL && wire_queue_name_valid(wire_bytes_str(queue));
}

int client_job_spec_to_wire(const struct spool_job_spec *job, struct wire_job_spec *w)
{
    if (job == NULL || !client_queue_ok(job->queue) || (job->body == NULL && job->body_len > 0))
        return SPOOL_E_INVALID_ARGUMENT;
    if (job->body_len > UINT32_MAX || (job->key != NULL && strlen(job->key) > LIMIT_KEY_MAX_BYTES))
        return SPOOL_E_TOO_LARGE;
    memset(w, 0, sizeof *w);
    w->queue = wire_bytes_str(job->queue);
    w->priority = job->priority;
    w->delay_ms = job->delay_ms;
    if (job->run_at_ms != 0) {
        w->flags |= WIRE_PUT_RUN_AT;
        w->delay_ms = job->run_at_ms;
    }
    w->ttr_ms = job->ttr_ms;
    if (job->max_attempts != 0) {
        w->flags |= WIRE_PUT_MAX_ATTEMPTS;
        w->max_attempts = job->max_attempts == SPOOL_ATTEMPTS_UNLIMITED ? 0 : job->max_attempts;
    }
    w->ttl_ms = job->ttl_ms;
    w->key = wire_bytes_str(job->key);
    w->body = wire_bytes_of(job->body_len > 0 ? job->body : "", job->body_len);
    return 0;
}

int spool_put(spool_client *c, const struct spool_job_spec *job, uint64_t *id_out)
{
    union wire_msg msg;
    int rc = client_job_spec_to_wire(job, &msg.put);
    if (rc != 0)
        return rc;
    union wire_msg reply;
    rc = client_call(c, WIRE_OP_PUT, &msg, 0, &reply);
    if (rc != 0)
        return rc;
    c->last_durability = reply.put_reply.durability;
    if (id_out != NULL)
        *id_out = reply.put_reply.job.id;
    client_reply_done(c, WIRE_OP_PUT, &reply);
    return 0;
}

int spool_put_batch(spool_client *c, const struct spool_job_spec *jobs, size_t count,
                    struct spool_put_result *results)
{
    if (jobs == NULL || count == 0)
        return SPOOL_E_INVALID_ARGUMENT;
    if (count > WIRE_BATCH_COUNT_MAX)
        return SPOOL_E_TOO_LARGE;
    struct wire_job_spec *w = calloc(count, sizeof *w);
    if (w == NULL)
        return -ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < count && rc == 0; i++)
        rc = client_job_spec_to_wire(&jobs[i], &w[i]);
    union wire_msg msg = {.put_batch = {.count = (uint32_t)count, .jobs = w}};
    union wire_msg reply;
    if (rc == 0)
        rc = client_call(c, WIRE_OP_PUT_BATCH, &msg, 0, &reply);
    free(w);
    if (rc != 0)
        return rc;
    if (reply.put_batch_reply.count != count) {
        client_reply_done(c, WIRE_OP_PUT_BATCH, &reply);
        c->broken = true;
        return SPOOL_E_PROTOCOL;
    }
    c->last_durability = reply.put_batch_reply.durability;
    for (size_t i = 0; results != NULL && i < count; i++) {
        results[i].id = reply.put_batch_reply.jobs[i].id;
        results[i].duplicate = (reply.put_batch_reply.jobs[i].flags & WIRE_PUT_DUPLICATE) != 0;
    }
    client_reply_done(c, WIRE_OP_PUT_BATCH, &reply);
    return 0;
}

const void *client_pack_bytes(char **cursor, struct wire_bytes b)
{
    char *dst = *cursor;
    if (b.len > 0)
        memcpy(dst, b.data, b.len);
    dst[b.len] = '\0';
    *cursor += b.len + 1;
    return dst;
}

static struct spool_delivery *pack_deliveries(const struct wire_reserve_reply *r)
{
    size_t size = r->count * sizeof(struct spool_delivery);
    for (uint32_t i = 0; i < r->count; i++)
        size += r->deliveries[i].queue.len + 1 + r->deliveries[i].body.len + 1;
    struct spool_delivery *out = malloc(size);
    if (out == NULL)
        return NULL;
    char *cursor = (char *)(out + r->count);
    for (uint32_t i = 0; i < r->count; i++) {
        const struct wire_delivery *d = &r->deliveries[i];
        out[i] = (struct spool_delivery){.id = d->id,
                                         .lease = d->lease,
                                         .attempt = d->attempt,
                                         .priority = d->priority,
                                         .deadline_ms = d->deadline_ms,
                                         .body_len = d->body.len};
        out[i].queue = client_pack_bytes(&cursor, d->queue);
        out[i].body = client_pack_bytes(&cursor, d->body);
    }
    SPOOL_ASSERT((size_t)(cursor - (char *)out) == size);
    return out;
}

int spool_reserve(spool_client *c, const char *const *queues, size_t queue_count,
                  uint32_t count_max, uint32_t timeout_ms, unsigned flags,
                  struct spool_delivery **out, size_t *count_out)
{
    if (queues == NULL || queue_count == 0 || queue_count > LIMIT_RESERVE_MAX_QUEUES ||
        count_max == 0 || count_max > LIMIT_RESERVE_MAX_JOBS || out == NULL || count_out == NULL ||
        (flags & ~(unsigned)WIRE_RESERVE_FLAGS_ALL) != 0)
        return SPOOL_E_INVALID_ARGUMENT;
    union wire_msg msg = {.reserve = {.count_max = count_max,
                                      .timeout_ms = timeout_ms,
                                      .flags = (uint8_t)flags,
                                      .queue_count = (uint8_t)queue_count}};
    for (size_t i = 0; i < queue_count; i++) {
        if (!client_queue_ok(queues[i]))
            return SPOOL_E_INVALID_ARGUMENT;
        msg.reserve.queues[i] = wire_bytes_str(queues[i]);
    }
    union wire_msg reply;
    int rc = client_call(c, WIRE_OP_RESERVE, &msg, timeout_ms, &reply);
    if (rc != 0)
        return rc;
    struct spool_delivery *d = NULL;
    if (reply.reserve_reply.count > 0) {
        d = pack_deliveries(&reply.reserve_reply);
        if (d == NULL) {
            client_reply_done(c, WIRE_OP_RESERVE, &reply);
            return -ENOMEM; /* the jobs return to ready when their leases expire */
        }
    }
    *out = d;
    *count_out = reply.reserve_reply.count;
    client_reply_done(c, WIRE_OP_RESERVE, &reply);
    return 0;
}

void spool_deliveries_free(struct spool_delivery *deliveries)
{
    free(deliveries);
}

static int ack_to_wire(uint64_t id, uint64_t lease, const void *result, size_t result_len,
                       struct wire_ack *w)
{
    if (result == NULL && result_len > 0)
        return SPOOL_E_INVALID_ARGUMENT;
    if (result_len > LIMIT_RESULT_MAX_BYTES)
        return SPOOL_E_TOO_LARGE;
    w->id = id;
    w->lease = lease;
    w->result = wire_bytes_of(result_len > 0 ? result : "", result_len);
    return 0;
}

int spool_ack(spool_client *c, uint64_t id, uint64_t lease, const void *result, size_t result_len)
{
    union wire_msg msg;
    int rc = ack_to_wire(id, lease, result, result_len, &msg.ack);
    if (rc != 0)
        return rc;
    return call_durable(c, WIRE_OP_ACK, &msg);
}

int spool_ack_batch(spool_client *c, const struct spool_ack_item *items, size_t count, int *codes)
{
    if (items == NULL || count == 0)
        return SPOOL_E_INVALID_ARGUMENT;
    if (count > WIRE_BATCH_COUNT_MAX)
        return SPOOL_E_TOO_LARGE;
    struct wire_ack *w = calloc(count, sizeof *w);
    if (w == NULL)
        return -ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < count && rc == 0; i++)
        rc = ack_to_wire(items[i].id, items[i].lease, items[i].result, items[i].result_len, &w[i]);
    union wire_msg msg = {.ack_batch = {.count = (uint32_t)count, .acks = w}};
    union wire_msg reply;
    if (rc == 0)
        rc = client_call(c, WIRE_OP_ACK_BATCH, &msg, 0, &reply);
    free(w);
    if (rc != 0)
        return rc;
    if (reply.ack_batch_reply.count != count) {
        client_reply_done(c, WIRE_OP_ACK_BATCH, &reply);
        c->broken = true;
        return SPOOL_E_PROTOCOL;
    }
    c->last_durability = reply.ack_batch_reply.durability;
    int first = 0;
    for (size_t i = 0; i < count; i++) {
        uint16_t code = reply.ack_batch_reply.codes[i];
        int e = code == 0 ? 0 : wire_error_from_wire(code);
        if (codes != NULL)
            codes[i] = e;
        if (first == 0)
            first = e;
    }
    client_reply_done(c, WIRE_OP_ACK_BATCH, &reply);
    return first;
}

int spool_release(spool_client *c, uint64_t id, uint64_t lease, uint64_t delay_ms, int64_t priority)
{
    if (priority > (int64_t)UINT32_MAX)
        return SPOOL_E_INVALID_ARGUMENT;
    union wire_msg msg = {.release = {.id = id, .lease = lease, .delay_ms = delay_ms}};
    if (priority >= 0) {
        msg.release.flags = WIRE_RELEASE_PRIORITY;
        msg.release.priority = (uint32_t)priority;
    }
    return call_durable(c, WIRE_OP_RELEASE, &msg);
}

int spool_fail(spool_client *c, uint64_t id, uint64_t lease, uint64_t delay_ms, const char *reason)
{
    if (reason != NULL && strlen(reason) > LIMIT_REASON_MAX_BYTES)
        return SPOOL_E_TOO_LARGE;
    union wire_msg msg = {
        .release = {
            .id = id, .lease = lease, .delay_ms = delay_ms, .reason = wire_bytes_str(reason)}};
    return call_durable(c, WIRE_OP_RELEASE, &msg);
}

int spool_touch(spool_client *c, uint64_t id, uint64_t lease, uint32_t extend_ms,
                uint64_t *deadline_ms_out)
{
    union wire_msg msg = {.touch = {.id = id, .lease = lease, .extend_ms = extend_ms}};
    union wire_msg reply;
    int rc = client_call(c, WIRE_OP_TOUCH, &msg, 0, &reply);
    if (rc != 0)
        return rc;
    c->last_durability = reply.touch_reply.durability;
    if (deadline_ms_out != NULL)
        *deadline_ms_out = reply.touch_reply.deadline_ms;
    client_reply_done(c, WIRE_OP_TOUCH, &reply);
    return 0;
}

int spool_bury(spool_client *c, uint64_t id, uint64_t lease, const char *reason)
{
    if (reason != NULL && strlen(reason) > LIMIT_REASON_MAX_BYTES)
        return SPOOL_E_TOO_LARGE;
    union wire_msg msg = {.bury = {.id = id, .lease = lease, .reason = wire_bytes_str(reason)}};
    return call_durable(c, WIRE_OP_BURY, &msg);
}

/* Run a request whose reply is (durability, count). */
static int call_count(spool_client *c, uint16_t op, const union wire_msg *msg, uint64_t *count_out)
{
    union wire_msg reply;
    int rc = client_call(c, op, msg, 0, &reply);
    if (rc != 0)
        return rc;
    c->last_durability = reply.count_reply.durability;
    if (count_out != NULL)
        *count_out = reply.count_reply.count;
    client_reply_done(c, op, &reply);
    return 0;
}

int spool_kick(spool_client *c, const char *queue, uint32_t count, uint64_t *kicked_out)
{
    if (!client_queue_ok(queue) || count == 0)
        return SPOOL_E_INVALID_ARGUMENT;
    union wire_msg msg = {.kick = {.queue = wire_bytes_str(queue), .count = count}};
    return call_count(c, WIRE_OP_KICK, &msg, kicked_out);
}

int spool_kick_job(spool_client *c, uint64_t id)
{
    union wire_msg msg = {.job_ref = {.id = id}};
    return call_durable(c, WIRE_OP_KICK_JOB, &msg);
}

int spool_delete(spool_client *c, uint64_t id)
{
    union wire_msg msg = {.job_ref = {.id = id}};
    return call_durable(c, WIRE_OP_DELETE, &msg);
}
