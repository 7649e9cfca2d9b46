/*
 * wire_message.c: encode and decode every message of the spool protocol.
 *
 * Each message is described once, by a "fields" function that walks its fields in wire order
 * through a struct wire_io. The same walk encodes (io->writing: append each field to a
 * wire_buf) and decodes (read each field from a payload, bounds-checked), so the two
 * directions cannot drift apart. The opcode table maps each opcode to its walk.
 *
 * Decoding invariants: io->off <= io->len always; every read first checks that its bytes are
 * there; a length prefix is compared with the bytes left before it is used; an array count is
 * checked against its limit and against (bytes left / smallest item size) before calloc, so
 * a hostile count allocates at most what the frame itself could describe. The first error
 * sticks and every later step is a no-op.
 */
#include "wire_message.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "assert.h"
#include "le.h"

struct wire_io {
    bool writing;
    int error;            /* first error, 0 while all is well */
    struct wire_buf *out; /* writing */
    const uint8_t *in;    /* reading */
    size_t len;
    size_t off;
    bool walk_only; /* decoding: no fast paths (wire_decode_walk, for tests) */
    uint16_t version; /* the negotiated protocol version: layouts differ from 2 on */
};

static bool io_ok(const struct wire_io *io)
{
    return io->error == 0;
}

static void io_fail(struct wire_io *io, int error)
{
    SPOOL_ASSERT(error < 0);
    if (io->error == 0)
        io->error = error;
}

/* Reading: a pointer to the next n bytes, or NULL (BAD_FRAME) if they are not all there. */
static const uint8_t *io_take(struct wire_io *io, size_t n)
{
    SPOOL_ASSERT(io->off <= io->len);
    if (!io_ok(io))
        return NULL;
    if (io->len - io->off < n) {
        io_fail(io, SPOOL_E_BAD_FRAME);
        return NULL;
    }
    if (n == 0)
        return (const uint8_t *)""; /* never NULL + 0: a valid empty view */
    const uint8_t *p = io->in + io->off;
    io->off += n;
    return p;
}

/* Writing: room for the next n bytes at the end of the output, or NULL. */
static uint8_t *io_grow(struct wire_io *io, size_t n)
{
    if (!io_ok(io))
        return NULL;
    /* Room is almost always there (the buffers are reused): test it here, call only to grow. */
    if (io->out->cap - io->out->len < n) {
        int rc = wire_buf_reserve(io->out, n);
        if (rc != 0) {
            io_fail(io, rc);
            return NULL;
        }
    }
    uint8_t *p = io->out->data + io->out->len;
    io->out->len += n;
    return p;
}

static void io_u8(struct wire_io *io, uint8_t *v)
{
    if (io->writing) {
        uint8_t *p = io_grow(io, 1);
        if (p != NULL)
            p[0] = *v;
    } else {
        const uint8_t *p = io_take(io, 1);
        *v = p != NULL ? p[0] : 0;
    }
}

static void io_u16(struct wire_io *io, uint16_t *v)
{
    if (io->writing) {
        uint8_t *p = io_grow(io, 2);
        if (p != NULL)
            le_put_u16(p, *v);
    } else {
        const uint8_t *p = io_take(io, 2);
        *v = p != NULL ? le_get_u16(p) : 0;
    }
}

static void io_u32(struct wire_io *io, uint32_t *v)
{
    if (io->writing) {
        uint8_t *p = io_grow(io, 4);
        if (p != NULL)
            le_put_u32(p, *v);
    } else {
        const uint8_t *p = io_take(io, 4);
        *v = p != NULL ? le_get_u32(p) : 0;
    }
}

static void io_u64(struct wire_io *io, uint64_t *v)
{
    if (io->writing) {
        uint8_t *p = io_grow(io, 8);
        if (p != NULL)
            le_put_u64(p, *v);
    } else {
        const uint8_t *p = io_take(io, 8);
        *v = p != NULL ? le_get_u64(p) : 0;
    }
}

/* A byte string with a prefix_size-byte length (1, 2 or 4) of at most size_max bytes. */
static void io_bytes(struct wire_io *io, struct wire_bytes *b, int prefix_size, uint32_t size_max)
{
    uint32_t len = b->len;
    if (io->writing && len > size_max) {
        io_fail(io, SPOOL_E_TOO_LARGE);
        return;
    }
    if (prefix_size == 1) {
        uint8_t len8 = (uint8_t)len;
        io_u8(io, &len8);
        len = len8;
    } else if (prefix_size == 2) {
        uint16_t len16 = (uint16_t)len;
        io_u16(io, &len16);
        len = len16;
    } else {
        SPOOL_ASSERT(prefix_size == 4);
        io_u32(io, &len);
    }
    if (io->writing) {
        SPOOL_ASSERT(len == 0 || b->data != NULL);
        uint8_t *p = io_grow(io, len);
        if (p != NULL && len > 0)
            memcpy(p, b->data, len);
        return;
    }
    if (io_ok(io) && len > size_max)
        io_fail(io, SPOOL_E_TOO_LARGE);
    const uint8_t *p = io_take(io, len);
    b->data = p;
    b->len = p != NULL ? len : 0;
}

static void io_text(struct wire_io *io, struct wire_bytes *b)
{
    io_bytes(io, b, 2, WIRE_TEXT_SIZE_MAX);
}

static void io_blob(struct wire_io *io, struct wire_bytes *b, uint32_t size_max)
{
    io_bytes(io, b, 4, size_max);
}

/* A queue name; decoding checks the charset (empty allowed only where allow_empty). A name8
 * holds up to 255 bytes; one over 200 is a well-formed frame with a bad field: BAD_REQUEST,
 * as for a bad character, in both directions. */
static void io_queue(struct wire_io *io, struct wire_bytes *b, bool allow_empty)
{
    if (io->writing && b->len > LIMIT_QUEUE_NAME_MAX_BYTES) {
        io_fail(io, SPOOL_E_BAD_REQUEST);
        return;
    }
    io_bytes(io, b, 1, UINT8_MAX);
    if (io->writing || !io_ok(io))
        return;
    if (b->len > LIMIT_QUEUE_NAME_MAX_BYTES) {
        io_fail(io, SPOOL_E_BAD_REQUEST);
        return;
    }
    if (allow_empty && b->len == 0)
        return;
    if (!wire_queue_name_valid(*b))
        io_fail(io, SPOOL_E_BAD_REQUEST);
}

/* Decoding: flag bits outside known_mask are a request this version cannot honour. */
static void io_flags(struct wire_io *io, uint8_t *flags, uint8_t known_mask)
{
    io_u8(io, flags);
    if (!io->writing && io_ok(io) && (*flags & ~known_mask) != 0)
        io_fail(io, SPOOL_E_BAD_REQUEST);
}

/*
 * An array count in [count_min, count_max] whose items take at least item_size_min bytes
 * each: decoding rejects a count the remaining payload cannot hold before anything is
 * allocated for it.
 */
static void io_count(struct wire_io *io, uint32_t *count, uint32_t count_min, uint32_t count_max,
                     size_t item_size_min)
{
    SPOOL_ASSERT(item_size_min > 0);
    if (io->writing && (*count < count_min || *count > count_max)) {
        io_fail(io, *count > count_max ? SPOOL_E_TOO_LARGE : SPOOL_E_INVALID_ARGUMENT);
        return;
    }
    io_u32(io, count);
    if (io->writing || !io_ok(io))
        return;
    if (*count > count_max)
        io_fail(io, SPOOL_E_TOO_LARGE);
    else if (*count < count_min)
        io_fail(io, SPOOL_E_BAD_REQUEST);
    else if ((io->len - io->off) / item_size_min < *count)
        io_fail(io, SPOOL_E_BAD_FRAME);
}

/* Decoding: allocate the array for count items (after io_count bounded count). */
static void io_array(struct wire_io *io, void **items, uint32_t count, size_t item_size)
{
    if (io->writing) {
        SPOOL_ASSERT(count == 0 || *items != NULL);
        return;
    }
    *items = NULL;
    if (!io_ok(io) || count == 0)
        return;
    *items = calloc(count, item_size);
    if (*items == NULL)
        io_fail(io, -ENOMEM);
}

/* Smallest encoded size of array items, used by io_count. */
#define JOB_SPEC_SIZE_MIN 36u    /* 35 fixed bytes + a 1-byte queue name */
#define ACK_SIZE_MIN 20u         /* id, lease, empty result */
#define PUT_RESULT_SIZE 9u       /* id, flags */
#define DELIVERY_SIZE_MIN 38u    /* 32 fixed bytes, 1-byte name, empty body */
#define QUEUE_STATS_SIZE_MIN 67u /* 1-byte name + prefix, flags, 7 u64, 2 u32 */
#define QUEUE_ENTRY_SIZE_MIN 3u  /* 1-byte name + prefix, flags */

static void hello_fields(struct wire_io *io, union wire_msg *m)
{
    struct wire_hello *h = &m->hello;
    io_u32(io, &h->magic);
    if (!io->writing && io_ok(io) && h->magic != WIRE_MAGIC)
        io_fail(io, SPOOL_E_BAD_FRAME);
    io_u16(io, &h->version_min);
    io_u16(io, &h->version_max);
    io_text(io, &h->client_name);
    io_text(io, &h->auth);
}

/* Size of a job spec's fields between the queue name and the key: flags, priority, delay,
 * ttr, max_attempts, ttl. */
#define JOB_SPEC_FIXED_SIZE 29u

/*
 * Decode one job spec straight from the payload: the walk below makes the same checks in the
 * same order, so this returns the same first error, but through a dozen calls per job that
 * were ~20% of spoold's instructions per job under `spool-bench produce --batch 64`
 * (callgrind). test_wire holds the two to agreement on random frames.
 */
static void job_spec_read(struct wire_io *io, struct wire_job_spec *j)
{
    if (!io_ok(io))
        return;
    if (io->off == io->len) { /* also keeps an empty payload's NULL out of the arithmetic */
        io_fail(io, SPOOL_E_BAD_FRAME);
        return;
    }
    const uint8_t *p = io->in + io->off;
    const uint8_t *end = io->in + io->len;
    uint32_t name_len = p[0];
    if ((size_t)(end - p - 1) < name_len) {
        io_fail(io, SPOOL_E_BAD_FRAME);
        return;
    }
    if (name_len > LIMIT_QUEUE_NAME_MAX_BYTES) {
        io_fail(io, SPOOL_E_BAD_REQUEST);
        return;
    }
    j->queue = (struct wire_bytes){.data = p + 1, .len = name_len};
    if (!wire_queue_name_valid(j->queue)) {
        io_fail(io, SPOOL_E_BAD_REQUEST);
        return;
    }
    p += 1 + name_len;
    if (p == end || (p[0] & ~WIRE_PUT_FLAGS_ALL) != 0) {
        io_fail(io, p == end ? SPOOL_E_BAD_FRAME : SPOOL_E_BAD_REQUEST);
        return;
    }
    if ((size_t)(end - p) < JOB_SPEC_FIXED_SIZE + 1) { /* + the key's length byte */
        io_fail(io, SPOOL_E_BAD_FRAME);
        return;
    }
    j->flags = p[0];
    j->priority = le_get_u32(p + 1);
    j->delay_ms = le_get_u64(p + 5);
    j->ttr_ms = le_get_u32(p + 13);
    j->max_attempts = le_get_u32(p + 17);
    j->ttl_ms = le_get_u64(p + 21);
    p += JOB_SPEC_FIXED_SIZE;
    uint32_t key_len = p[0]; /* a u8 cannot exceed LIMIT_KEY_MAX_BYTES */
    if ((size_t)(end - p - 1) < key_len + 4u) { /* + the body's length prefix */
        io_fail(io, SPOOL_E_BAD_FRAME);
        return;
    }
    j->key = (struct wire_bytes){.data = p + 1, .len = key_len};
    p += 1 + key_len;
    uint32_t body_len = le_get_u32(p);
    p += 4;
    if (body_len > WIRE_FRAME_SIZE_LIMIT || (size_t)(end - p) < body_len) {
        io_fail(io, body_len > WIRE_FRAME_SIZE_LIMIT ? SPOOL_E_TOO_LARGE : SPOOL_E_BAD_FRAME);
        return;
    }
    j->body = (struct wire_bytes){.data = p, .len = body_len};
    io->off = (size_t)(p + body_len - io->in);
}

static void job_spec_fields(struct wire_io *io, struct wire_job_spec *j)
{
    if (!io->writing && !io->walk_only) {
        job_spec_read(io, j);
        return;
    }
    io_queue(io, &j->queue, false);
    io_flags(io, &j->flags, WIRE_PUT_FLAGS_ALL);
    io_u32(io, &j->priority);
    io_u64(io, &j->delay_ms);
    io_u32(io, &j->ttr_ms);
    io_u32(io, &j->max_attempts);
    io_u64(io, &j->ttl_ms);
    io_bytes(io, &j->key, 1, LIMIT_KEY_MAX_BYTES);
    io_blob(io, &j->body, WIRE_FRAME_SIZE_LIMIT);
}

static void put_fields(struct wire_io *io, union wire_msg *m)
{
    job_spec_fields(io, &m->put);
}

static void put_batch_fields(struct wire_io *io, union wire_msg *m)
{
    struct wire_put_batch *b = &m->put_batch;
    io_count(io, &b->count, 1, WIRE_BATCH_COUNT_MAX, JOB_SPEC_SIZE_MIN);
    if (!io->writing && !io->walk_only && io_ok(io)) {
        /* job_spec_read sets every field of every job before the decode succeeds, so the
         * array need not be zeroed first: calloc's memset of ~6 KiB per 64-job frame was
         * ~70 instructions per job. */
        b->jobs = malloc((size_t)b->count * sizeof *b->jobs);
        if (b->jobs == NULL)
            io_fail(io, -ENOMEM);
    } else {
        io_array(io, (void **)&b->jobs, b->count, sizeof *b->jobs);
    }
    for (uint32_t i = 0; i < b->count && io_ok(io); i++)
        job_spec_fields(io, &b->jobs[i]);
}

static void reserve_fields(struct wire_io *io, union wire_msg *m)
{
    struct wire_reserve *r = &m->reserve;
    io_u32(io, &r->count_max);
    io_u32(io, &r->timeout_ms);
    io_flags(io, &r->flags, WIRE_RESERVE_FLAGS_ALL);
    io_u8(io, &r->queue_count);
    if (r->count_max < 1 || r->queue_count < 1)
        io_fail(io, io->writing ? SPOOL_E_INVALID_ARGUMENT : SPOOL_E_BAD_REQUEST);
    if (r->count_max > LIMIT_RESERVE_MAX_JOBS || r->queue_count > LIMIT_RESERVE_MAX_QUEUES)
        io_fail(io, SPOOL_E_TOO_LARGE);
    for (uint32_t i = 0; i < r->queue_count && io_ok(io); i++)
        io_queue(io, &r->queues[i], false);
}

static void ack_item_fields(struct wire_io *io, struct wire_ack *a)
{
    io_u64(io, &a->id);
    io_u64(io, &a->lease);
    io_blob(io, &a->result, LIMIT_RESULT_MAX_BYTES);
}

static void ack_fields(struct wire_io *io, union wire_msg *m)
{
    ack_item_fields(io, &m->ack);
}

static void ack_batch_fields(struct wire_io *io, union wire_msg *m)
{
    struct wire_ack_batch *b = &m->ack_batch;
    io_count(io, &b->count, 1, WIRE_BATCH_COUNT_MAX, ACK_SIZE_MIN);
    io_array(io, (void **)&b->acks, b->count, sizeof *b->acks);
    for (uint32_t i = 0; i < b->count && io_ok(io); i++)
        ack_item_fields(io, &b->acks[i]);
}

static void release_fields(struct wire_io *io, union wire_msg *m)
{
    struct wire_release *r = &m->release;
    io_u64(io, &r->id);
    io_u64(io, &r->lease);
    io_u64(io, &r->delay_ms);
    io_flags(io, &r->flags, WIRE_RELEASE_FLAGS_ALL);
    io_u32(io, &r->priority);
    io_bytes(io, &r->reason, 2, LIMIT_REASON_MAX_BYTES);
}

static void touch_fields(struct wire_io *io, union wire_msg *m)
{
    io_u64(io, &m->touch.id);
    io_u64(io, &m->touch.lease);
    io_u32(io, &m->touch.extend_ms);
}

static void bury_fields(struct wire_io *io, union wire_msg *m)
{
    io_u64(io, &m->bury.id);
    io_u64(io, &m->bury.lease);
    io_bytes(io, &m->bury.reason, 2, LIMIT_REASON_MAX_BYTES);
}

static void kick_fields(struct wire_io *io, union wire_msg *m)
{
    io_queue(io, &m->kick.queue, false);
    io_u32(io, &m->kick.count);
    if (!io->writing && io_ok(io) && m->kick.count == 0)
        io_fail(io, SPOOL_E_BAD_REQUEST);
}

static void job_ref_fields(struct wire_io *io, union wire_msg *m)
{
    io_u64(io, &m->job_ref.id);
}

static void peek_next_fields(struct wire_io *io, union wire_msg *m)
{
    struct wire_peek_next *p = &m->peek_next;
    io_queue(io, &p->queue, false);
    io_u8(io, &p->state);
    if (!io->writing && io_ok(io) && p->state != WIRE_STATE_READY &&
        p->state != WIRE_STATE_DELAYED && p->state != WIRE_STATE_DEAD)
        io_fail(io, SPOOL_E_BAD_REQUEST);
}

static void wait_fields(struct wire_io *io, union wire_msg *m)
{
    io_u64(io, &m->wait.id);
    io_u32(io, &m->wait.timeout_ms);
}

static void queue_ref_fields(struct wire_io *io, union wire_msg *m)
{
    io_queue(io, &m->queue_ref.queue, false);
}

static void stats_fields(struct wire_io *io, union wire_msg *m)
{
    io_queue(io, &m->page.queue, true);
    if (io->version >= 2) {
        io_queue(io, &m->page.cursor, true);
        io_u32(io, &m->page.limit);
    }
}

static void queues_fields(struct wire_io *io, union wire_msg *m)
{
    if (io->version >= 2) {
        io_queue(io, &m->page.cursor, true);
        io_u32(io, &m->page.limit);
    }
}

static void delete_queue_fields(struct wire_io *io, union wire_msg *m)
{
    io_queue(io, &m->delete_queue.queue, false);
    io_flags(io, &m->delete_queue.flags, WIRE_DELETE_QUEUE_FLAGS_ALL);
}

static void queue_config_fields(struct wire_io *io, union wire_msg *m)
{
    struct wire_queue_config *c = &m->queue_config;
    io_queue(io, &c->queue, false);
    io_flags(io, &c->flags, WIRE_CONFIG_FLAGS_ALL);
    io_u32(io, &c->ttr_ms);
    io_u32(io, &c->max_attempts);
    if (!io->writing && io_ok(io) && (c->flags & WIRE_CONFIG_TTR) && c->ttr_ms == 0)
        io_fail(io, SPOOL_E_BAD_REQUEST);
}

static void empty_fields(struct wire_io *io, union wire_msg *m)
{
    (void)io;
    (void)m;
}

static void hello_reply_fields(struct wire_io *io, union wire_msg *m)
{
    struct wire_hello_reply *h = &m->hello_reply;
    io_u16(io, &h->version);
    io_u32(io, &h->frame_size_max);
    io_u32(io, &h->job_size_max);
    io_u64(io, &h->server_time_ms);
    io_text(io, &h->server_name);
}

static void put_result_fields(struct wire_io *io, struct wire_put_result *r)
{
    io_u64(io, &r->id);
    io_u8(io, &r->flags);
}

static void put_reply_fields(struct wire_io *io, union wire_msg *m)
{
    io_u8(io, &m->put_reply.durability);
    put_result_fields(io, &m->put_reply.job);
}

static void put_batch_reply_fields(struct wire_io *io, union wire_msg *m)
{
    struct wire_put_batch_reply *r = &m->put_batch_reply;
    io_u8(io, &r->durability);
    io_count(io, &r->count, 0, WIRE_BATCH_COUNT_MAX, PUT_RESULT_SIZE);
    io_array(io, (void **)&r->jobs, r->count, sizeof *r->jobs);
    for (uint32_t i = 0; i < r->count && io_ok(io); i++)
        put_result_fields(io, &r->jobs[i]);
}

static void delivery_fields(struct wire_io *io, struct wire_delivery *d)
{
    io_u64(io, &d->id);
    io_u64(io, &d->lease);
    io_u32(io, &d->attempt);
    io_u32(io, &d->priority);
    io_u64(io, &d->deadline_ms);
    io_queue(io, &d->queue, false);
    io_blob(io, &d->body, WIRE_FRAME_SIZE_LIMIT);
}

static void reserve_reply_fields(struct wire_io *io, union wire_msg *m)
{
    struct wire_reserve_reply *r = &m->reserve_reply;
    io_count(io, &r->count, 0, LIMIT_RESERVE_MAX_JOBS, DELIVERY_SIZE_MIN);
    io_array(io, (void **)&r->deliveries, r->count, sizeof *r->deliveries);
    for (uint32_t i = 0; i < r->count && io_ok(io); i++)
        delivery_fields(io, &r->deliveries[i]);
}

static void durable_reply_fields(struct wire_io *io, union wire_msg *m)
{
    io_u8(io, &m->durable_reply.durability);
}

static void ack_batch_reply_fields(struct wire_io *io, union wire_msg *m)
{
    struct wire_ack_batch_reply *r = &m->ack_batch_reply;
    io_u8(io, &r->durability);
    io_count(io, &r->count, 0, WIRE_BATCH_COUNT_MAX, 2);
    io_array(io, (void **)&r->codes, r->count, sizeof *r->codes);
    for (uint32_t i = 0; i < r->count && io_ok(io); i++)
        io_u16(io, &r->codes[i]);
}

static void touch_reply_fields(struct wire_io *io, union wire_msg *m)
{
    io_u8(io, &m->touch_reply.durability);
    io_u64(io, &m->touch_reply.deadline_ms);
}

static void count_reply_fields(struct wire_io *io, union wire_msg *m)
{
    io_u8(io, &m->count_reply.durability);
    io_u64(io, &m->count_reply.count);
}

static void job_info_fields(struct wire_io *io, union wire_msg *m)
{
    struct wire_job_info *j = &m->job_info;
    io_u64(io, &j->id);
    io_u8(io, &j->state);
    if (!io->writing && io_ok(io) &&
        j->state > (io->version >= 2 ? WIRE_STATE_EXPIRED : WIRE_STATE_DONE))
        io_fail(io, SPOOL_E_BAD_REQUEST);
    /* Empty when the server no longer keeps the queue of a finished job. */
    io_queue(io, &j->queue, true);
    io_u32(io, &j->priority);
    io_u32(io, &j->attempts);
    io_u32(io, &j->max_attempts);
    io_u32(io, &j->ttr_ms);
    io_u64(io, &j->created_ms);
    io_u64(io, &j->ready_at_ms);
    io_u64(io, &j->deadline_ms);
    io_u64(io, &j->finished_ms);
    io_bytes(io, &j->reason, 2, LIMIT_REASON_MAX_BYTES);
    io_blob(io, &j->result, LIMIT_RESULT_MAX_BYTES);
    io_blob(io, &j->body, WIRE_FRAME_SIZE_LIMIT);
}

static void server_stats_fields(struct wire_io *io, struct wire_server_stats *s)
{
    io_u64(io, &s->uptime_ms);
    io_u32(io, &s->connections);
    io_u64(io, &s->commits);
    io_u64(io, &s->log_bytes);
    io_u64(io, &s->ready);
    io_u64(io, &s->delayed);
    io_u64(io, &s->reserved);
    io_u64(io, &s->dead);
    io_u64(io, &s->total_put);
    io_u64(io, &s->total_acked);
    if (io->version >= 2) {
        io_u32(io, &s->queues);
        io_u64(io, &s->expired);
        io_u64(io, &s->keys);
        io_u64(io, &s->keys_evicted);
    }
}

static void queue_stats_fields(struct wire_io *io, struct wire_queue_stats *q)
{
    io_queue(io, &q->name, false);
    io_u8(io, &q->flags);
    io_u64(io, &q->ready);
    io_u64(io, &q->delayed);
    io_u64(io, &q->reserved);
    io_u64(io, &q->dead);
    io_u64(io, &q->total_put);
    io_u64(io, &q->oldest_ready_age_ms);
    io_u64(io, &q->ack_floor);
    io_u32(io, &q->ttr_ms);
    io_u32(io, &q->max_attempts);
    if (io->version >= 2)
        io_u64(io, &q->expired);
}

static void stats_reply_fields(struct wire_io *io, union wire_msg *m)
{
    struct wire_stats_reply *r = &m->stats_reply;
    server_stats_fields(io, &r->server);
    io_count(io, &r->queue_count, 0, WIRE_STATS_QUEUES_MAX,
             QUEUE_STATS_SIZE_MIN + (io->version >= 2 ? 8u : 0u));
    io_array(io, (void **)&r->queues, r->queue_count, sizeof *r->queues);
    for (uint32_t i = 0; i < r->queue_count && io_ok(io); i++)
        queue_stats_fields(io, &r->queues[i]);
    if (io->version >= 2)
        io_queue(io, &r->next_cursor, true);
}

static void queues_reply_fields(struct wire_io *io, union wire_msg *m)
{
    struct wire_queues_reply *r = &m->queues_reply;
    io_count(io, &r->count, 0, WIRE_STATS_QUEUES_MAX, QUEUE_ENTRY_SIZE_MIN);
    io_array(io, (void **)&r->queues, r->count, sizeof *r->queues);
    for (uint32_t i = 0; i < r->count && io_ok(io); i++) {
        io_queue(io, &r->queues[i].name, false);
        io_u8(io, &r->queues[i].flags);
    }
    if (io->version >= 2)
        io_queue(io, &r->next_cursor, true);
}

static void error_fields(struct wire_io *io, union wire_msg *m)
{
    io_u16(io, &m->error.code);
    io_text(io, &m->error.message);
}

typedef void wire_fields_fn(struct wire_io *io, union wire_msg *m);

/* One row per opcode: its fields, and where its one decoded array lives (if any). */
struct wire_op_entry {
    wire_fields_fn *fields; /* NULL: no such opcode */
    size_t array_offset;    /* offsetof in union wire_msg of the array pointer, or NO_ARRAY */
};

#define NO_ARRAY SIZE_MAX
/* Requests and replies are tables indexed by the opcode without its reply bit: every frame
 * looks its opcode up three or four times (known, decode, free, the reply's encode), which a
 * search of the ~50 rows made a visible share of the server's CPU per job. Request opcodes
 * run from 1 to WIRE_OP_DELETE_QUEUE (wire_frame.h); one past it is the table's size. */
#define WIRE_OP_SLOTS ((size_t)WIRE_OP_DELETE_QUEUE + 1)

static const struct wire_op_entry wire_requests[WIRE_OP_SLOTS] = {
    [WIRE_OP_HELLO] = {hello_fields, NO_ARRAY},
    [WIRE_OP_PING] = {empty_fields, NO_ARRAY},
    [WIRE_OP_PUT] = {put_fields, NO_ARRAY},
    [WIRE_OP_PUT_BATCH] = {put_batch_fields, offsetof(union wire_msg, put_batch.jobs)},
    [WIRE_OP_RESERVE] = {reserve_fields, NO_ARRAY},
    [WIRE_OP_ACK] = {ack_fields, NO_ARRAY},
    [WIRE_OP_ACK_BATCH] = {ack_batch_fields, offsetof(union wire_msg, ack_batch.acks)},
    [WIRE_OP_RELEASE] = {release_fields, NO_ARRAY},
    [WIRE_OP_TOUCH] = {touch_fields, NO_ARRAY},
    [WIRE_OP_BURY] = {bury_fields, NO_ARRAY},
    [WIRE_OP_KICK] = {kick_fields, NO_ARRAY},
    [WIRE_OP_KICK_JOB] = {job_ref_fields, NO_ARRAY},
    [WIRE_OP_PEEK] = {job_ref_fields, NO_ARRAY},
    [WIRE_OP_PEEK_NEXT] = {peek_next_fields, NO_ARRAY},
    [WIRE_OP_DELETE] = {job_ref_fields, NO_ARRAY},
    [WIRE_OP_WAIT] = {wait_fields, NO_ARRAY},
    [WIRE_OP_STATUS] = {job_ref_fields, NO_ARRAY},
    [WIRE_OP_STATS] = {stats_fields, NO_ARRAY},
    [WIRE_OP_QUEUES] = {queues_fields, NO_ARRAY},
    [WIRE_OP_PAUSE] = {queue_ref_fields, NO_ARRAY},
    [WIRE_OP_RESUME] = {queue_ref_fields, NO_ARRAY},
    [WIRE_OP_PURGE] = {queue_ref_fields, NO_ARRAY},
    [WIRE_OP_QUEUE_CONFIG] = {queue_config_fields, NO_ARRAY},
    [WIRE_OP_DELETE_QUEUE] = {delete_queue_fields, NO_ARRAY},
};

static const struct wire_op_entry wire_replies[WIRE_OP_SLOTS] = {
    [WIRE_OP_HELLO] = {hello_reply_fields, NO_ARRAY},
    [WIRE_OP_PING] = {empty_fields, NO_ARRAY},
    [WIRE_OP_PUT] = {put_reply_fields, NO_ARRAY},
    [WIRE_OP_PUT_BATCH] = {put_batch_reply_fields, offsetof(union wire_msg, put_batch_reply.jobs)},
    [WIRE_OP_RESERVE] = {reserve_reply_fields, offsetof(union wire_msg, reserve_reply.deliveries)},
    [WIRE_OP_ACK] = {durable_reply_fields, NO_ARRAY},
    [WIRE_OP_ACK_BATCH] = {ack_batch_reply_fields, offsetof(union wire_msg, ack_batch_reply.codes)},
    [WIRE_OP_RELEASE] = {durable_reply_fields, NO_ARRAY},
    [WIRE_OP_TOUCH] = {touch_reply_fields, NO_ARRAY},
    [WIRE_OP_BURY] = {durable_reply_fields, NO_ARRAY},
    [WIRE_OP_KICK] = {count_reply_fields, NO_ARRAY},
    [WIRE_OP_KICK_JOB] = {durable_reply_fields, NO_ARRAY},
    [WIRE_OP_PEEK] = {job_info_fields, NO_ARRAY},
    [WIRE_OP_PEEK_NEXT] = {job_info_fields, NO_ARRAY},
    [WIRE_OP_DELETE] = {durable_reply_fields, NO_ARRAY},
    [WIRE_OP_WAIT] = {job_info_fields, NO_ARRAY},
    [WIRE_OP_STATUS] = {job_info_fields, NO_ARRAY},
    [WIRE_OP_STATS] = {stats_reply_fields, offsetof(union wire_msg, stats_reply.queues)},
    [WIRE_OP_QUEUES] = {queues_reply_fields, offsetof(union wire_msg, queues_reply.queues)},
    [WIRE_OP_PAUSE] = {durable_reply_fields, NO_ARRAY},
    [WIRE_OP_RESUME] = {durable_reply_fields, NO_ARRAY},
    [WIRE_OP_PURGE] = {count_reply_fields, NO_ARRAY},
    [WIRE_OP_QUEUE_CONFIG] = {durable_reply_fields, NO_ARRAY},
    [WIRE_OP_DELETE_QUEUE] = {count_reply_fields, NO_ARRAY},
};

static const struct wire_op_entry wire_error_entry = {error_fields, NO_ARRAY};

static const struct wire_op_entry *wire_op_find(uint16_t opcode)
{
    if (opcode == WIRE_OP_ERROR)
        return &wire_error_entry;
    size_t index = opcode & (uint16_t)~WIRE_OP_REPLY;
    if (index >= WIRE_OP_SLOTS)
        return NULL;
    const struct wire_op_entry *entry =
        (opcode & WIRE_OP_REPLY) != 0 ? &wire_replies[index] : &wire_requests[index];
    return entry->fields != NULL ? entry : NULL;
}

bool wire_op_known(uint16_t opcode)
{
    return wire_op_find(opcode) != NULL;
}

int wire_encode(struct wire_buf *b, uint16_t opcode, uint64_t request_id, const union wire_msg *msg)
{
    return wire_encode_v(b, 1, opcode, request_id, msg);
}

int wire_encode_v(struct wire_buf *b, uint16_t version, uint16_t opcode, uint64_t request_id,
                  const union wire_msg *msg)
{
    SPOOL_ASSERT(b != NULL);
    SPOOL_ASSERT(version >= WIRE_VERSION_MIN && version <= WIRE_VERSION);
    const struct wire_op_entry *entry = wire_op_find(opcode);
    if (entry == NULL)
        return SPOOL_E_UNKNOWN_OP;
    union wire_msg empty;
    if (msg == NULL) /* zeroed only when used: the union is a few hundred bytes */
        memset(&empty, 0, sizeof empty);
    size_t start = b->len;
    struct wire_io io = {.writing = true, .out = b, .version = version};
    (void)io_grow(&io, WIRE_HEADER_SIZE); /* filled in below, once the size is known */
    /* The walk only reads *msg when writing; the cast serves the shared walker signature. */
    entry->fields(&io, msg != NULL ? (union wire_msg *)msg : &empty);
    size_t frame_size = b->len - start;
    if (io_ok(&io) && frame_size > b->size_max)
        io_fail(&io, SPOOL_E_TOO_LARGE);
    if (!io_ok(&io)) {
        b->len = start;
        return io.error;
    }
    struct wire_header h = {
        .frame_size = (uint32_t)frame_size, .opcode = opcode, .request_id = request_id};
    wire_header_encode(b->data + start, &h); /* b->data may have moved while growing */
    return 0;
}

int wire_encode_error(struct wire_buf *b, uint64_t request_id, int code, const char *message)
{
    if (message == NULL) {
        message = wire_error_text(code);
        if (message == NULL)
            message = "";
    }
    size_t len = strlen(message);
    union wire_msg m = {.error = {.code = wire_error_to_wire(code)}};
    m.error.message = wire_bytes_of(message, len < WIRE_TEXT_SIZE_MAX ? len : WIRE_TEXT_SIZE_MAX);
    return wire_encode(b, WIRE_OP_ERROR, request_id, &m);
}

static int wire_decode_with(uint16_t version, uint16_t opcode, const uint8_t *payload,
                            size_t len, union wire_msg *out, bool walk_only)
{
    SPOOL_ASSERT(version >= WIRE_VERSION_MIN && version <= WIRE_VERSION);
    SPOOL_ASSERT(out != NULL);
    SPOOL_ASSERT(payload != NULL || len == 0);
    memset(out, 0, sizeof *out);
    const struct wire_op_entry *entry = wire_op_find(opcode);
    if (entry == NULL)
        return SPOOL_E_UNKNOWN_OP;
    struct wire_io io = {.writing = false, .in = payload, .len = len, .walk_only = walk_only,
                         .version = version};
    entry->fields(&io, out);
    if (io_ok(&io) && io.off != io.len)
        io_fail(&io, SPOOL_E_BAD_FRAME);
    if (!io_ok(&io)) {
        wire_msg_free(opcode, out);
        return io.error;
    }
    SPOOL_ASSERT(io.off == len);
    return 0;
}

int wire_decode(uint16_t opcode, const uint8_t *payload, size_t len, union wire_msg *out)
{
    return wire_decode_with(1, opcode, payload, len, out, false);
}

int wire_decode_v(uint16_t version, uint16_t opcode, const uint8_t *payload, size_t len,
                  union wire_msg *out)
{
    return wire_decode_with(version, opcode, payload, len, out, false);
}

int wire_decode_walk(uint16_t opcode, const uint8_t *payload, size_t len, union wire_msg *out)
{
    return wire_decode_with(1, opcode, payload, len, out, true);
}

void wire_msg_free(uint16_t opcode, union wire_msg *msg)
{
    const struct wire_op_entry *entry = wire_op_find(opcode);
    if (entry == NULL || entry->array_offset == NO_ARRAY)
        return;
    void **array = (void **)((char *)msg + entry->array_offset);
    free(*array);
    *array = NULL;
}

struct wire_bytes wire_bytes_str(const char *s)
{
    return wire_bytes_of(s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

struct wire_bytes wire_bytes_of(const void *data, size_t len)
{
    SPOOL_ASSERT(len <= UINT32_MAX);
    struct wire_bytes b = {.data = data, .len = (uint32_t)len};
    return b;
}

bool wire_bytes_eq(struct wire_bytes b, const char *s)
{
    size_t len = strlen(s);
    return b.len == len && (len == 0 || memcmp(b.data, s, len) == 0);
}

/* The bytes a queue name may hold ([A-Za-z0-9._:-]) as a table (128 up left zero): every job
 * of a PUT_BATCH names its queue, and one load per byte replaces up to ten comparisons. */
static const uint8_t queue_name_bytes[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0..15 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 16..31 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, /* 32..47: - . */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, /* 48..63: 0-9 : */
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 64..79: A-O */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, /* 80..95: P-Z _ */
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 96..111: a-o */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, /* 112..127: p-z */
};

bool wire_queue_name_valid(struct wire_bytes name)
{
    if (name.len < 1 || name.len > LIMIT_QUEUE_NAME_MAX_BYTES)
        return false;
    unsigned ok = 1;
    for (uint32_t i = 0; i < name.len; i++)
        ok &= queue_name_bytes[name.data[i]];
    return ok != 0;
}
