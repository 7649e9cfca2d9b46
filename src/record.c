/*
 * Encoders and the strict decoder of the broker's log records (layout in record.h).
 *
 * Encoders trust their caller (the broker validated every field against the limits below
 * before building a record) and assert it. The decoder trusts nothing: each branch checks the
 * version, that the fixed part is present, that padding is zero, that the variable lengths add
 * up to exactly the length given, and that names and keys obey the same rules the broker
 * enforces at admission. A record that fails any check is RECORD_EINVAL.
 */
#include "record.h"

#include <string.h>

#include "le.h"

/* The bytes a queue name may hold ([A-Za-z0-9._:-] and, since beanstalkd's tube names must
 * work too (beanstalk.h), [+/;$()]), as a table (bytes from 128 up are left
 * zero): every PUT record asserts its queue's name, so the check runs once per job, and one
 * load per byte replaces a dozen comparisons. */
static const uint8_t queue_name_bytes[256] = {
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, /* 0..15 */
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, /* 16..31 */
    0,0,0,0,1,0,0,0,1,1,0,1,0,1,1,1, /* 32..47: $ ( ) + - . / */
    1,1,1,1,1,1,1,1,1,1,1,1,0,0,0,0, /* 48..63: digits : ; */
    0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1, /* 64..79 */
    1,1,1,1,1,1,1,1,1,1,1,0,0,0,0,1, /* 80..95 */
    0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1, /* 96..111 */
    1,1,1,1,1,1,1,1,1,1,1,0,0,0,0,0, /* 112..127 */
};

static bool queue_name_byte_ok(uint8_t c)
{
    return queue_name_bytes[c] != 0;
}

bool record_queue_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > LIMIT_QUEUE_NAME_MAX_BYTES)
        return false;
    bool ok = true;
    for (size_t i = 0; i < len; i++)
        ok &= queue_name_byte_ok((uint8_t)name[i]);
    return ok;
}

const char *record_type_name(uint8_t type)
{
    static const char *const names[] = {
        [RECORD_PUT] = "PUT",         [RECORD_LEASE] = "LEASE", [RECORD_ACK] = "ACK",
        [RECORD_RELEASE] = "RELEASE", [RECORD_TOUCH] = "TOUCH", [RECORD_BURY] = "BURY",
        [RECORD_KICK] = "KICK",       [RECORD_DELETE] = "DELETE",
        [RECORD_QUEUE_META] = "QUEUE_META", [RECORD_PURGE] = "PURGE",
        [RECORD_DELETE_QUEUE] = "DELETE_QUEUE", [RECORD_RELOCATE] = "RELOCATE",
    };
    if (type < sizeof(names) / sizeof(names[0]) && names[type] != NULL)
        return names[type];
    return "UNKNOWN";
}

uint8_t record_version(uint8_t type)
{
    switch (type) {
    case RECORD_ACK: return RECORD_ACK_VERSION;
    case RECORD_BURY: return RECORD_BURY_VERSION;
    case RECORD_QUEUE_META: return RECORD_META_VERSION;
    case RECORD_PUT:
    case RECORD_LEASE:
    case RECORD_RELEASE:
    case RECORD_TOUCH:
    case RECORD_KICK:
    case RECORD_DELETE:
    case RECORD_PURGE:
    case RECORD_DELETE_QUEUE:
    case RECORD_RELOCATE: return RECORD_VERSION;
    default: return 0;
    }
}

/* The first 8 bytes of every record: its type's version, then zeros (or fields). */
static void header(uint8_t type, uint8_t *out)
{
    memset(out, 0, 8);
    out[0] = record_version(type);
}

size_t record_put_size(const struct record_put *put)
{
    return RECORD_PUT_FIXED + (size_t)put->queue_len + put->key_len + put->body_len;
}

/* The job fields PUT and RELOCATE share, at the same offsets (RECORDS.md): bytes 8..59. */
static void put_fields_encode(const struct record_put *put, uint8_t *out)
{
    le_put_u64(out + 8, put->id);
    le_put_u32(out + 16, put->priority);
    le_put_u32(out + 20, put->max_attempts);
    le_put_u64(out + 24, put->ttr_ms);
    le_put_u64(out + 32, (uint64_t)put->created_ms);
    le_put_u64(out + 40, (uint64_t)put->run_at_ms);
    le_put_u64(out + 48, (uint64_t)put->expires_at_ms);
    le_put_u32(out + 56, put->body_len);
}

/* After the fixed part: the queue name, then the key (PUT) or the reason (RELOCATE), then the
 * body. Returns the end. */
static uint8_t *put_tail_encode(const struct record_put *put, const void *middle,
                                uint32_t middle_len, uint8_t *p)
{
    memcpy(p, put->queue, put->queue_len);
    p += put->queue_len;
    if (middle_len > 0)
        memcpy(p, middle, middle_len);
    p += middle_len;
    if (put->body_len > 0)
        memcpy(p, put->body, put->body_len);
    return p + put->body_len;
}

size_t record_put_encode(const struct record_put *put, uint8_t *out)
{
    /* The charset walk is O(name) on every PUT and both callers pass a name already checked
     * (queue_put validates it or finds its queue by it; salvage copies a queue's name): the
     * length stays always-on, the walk is for debug builds. */
    SPOOL_ASSERT(put->queue_len >= 1 && put->queue_len <= LIMIT_QUEUE_NAME_MAX_BYTES);
    SPOOL_DEBUG_ASSERT(record_queue_name_valid(put->queue, put->queue_len));
    SPOOL_ASSERT(put->key_len <= LIMIT_KEY_MAX_BYTES);
    SPOOL_ASSERT(put->body_len <= RECORD_BODY_LEN_MAX);
    header(RECORD_PUT, out);
    le_put_u16(out + 2, (uint16_t)put->queue_len);
    le_put_u16(out + 4, (uint16_t)put->key_len);
    put_fields_encode(put, out);
    uint8_t *p = put_tail_encode(put, put->key, put->key_len, out + RECORD_PUT_FIXED);
    SPOOL_ASSERT((size_t)(p - out) == record_put_size(put));
    return (size_t)(p - out);
}

size_t record_lease_encode(uint64_t id, uint32_t attempt, uint8_t *out)
{
    header(RECORD_LEASE, out);
    le_put_u32(out + 4, attempt);
    le_put_u64(out + 8, id);
    return RECORD_LEASE_SIZE;
}

size_t record_ack_encode(uint64_t id, int64_t settled_ms, const void *result, uint32_t result_len,
                         uint8_t *out)
{
    SPOOL_ASSERT(result_len <= LIMIT_RESULT_MAX_BYTES);
    SPOOL_ASSERT(id != 0);
    header(RECORD_ACK, out);
    le_put_u32(out + 4, result_len);
    le_put_u64(out + 8, id);
    le_put_u64(out + 16, (uint64_t)settled_ms);
    if (result_len > 0)
        memcpy(out + RECORD_ACK_FIXED, result, result_len);
    return RECORD_ACK_FIXED + (size_t)result_len;
}

size_t record_release_encode(uint64_t id, uint32_t priority, int64_t run_at_ms, uint8_t *out)
{
    header(RECORD_RELEASE, out);
    le_put_u32(out + 4, priority);
    le_put_u64(out + 8, id);
    le_put_u64(out + 16, (uint64_t)run_at_ms);
    return RECORD_RELEASE_SIZE;
}

size_t record_touch_encode(uint64_t id, int64_t deadline_ms, uint8_t *out)
{
    header(RECORD_TOUCH, out);
    le_put_u64(out + 8, id);
    le_put_u64(out + 16, (uint64_t)deadline_ms);
    return RECORD_TOUCH_SIZE;
}

size_t record_bury_encode(uint64_t id, int64_t settled_ms, const char *reason,
                          uint32_t reason_len, uint8_t *out)
{
    SPOOL_ASSERT(reason_len <= LIMIT_REASON_MAX_BYTES);
    SPOOL_ASSERT(id != 0);
    header(RECORD_BURY, out);
    le_put_u16(out + 2, (uint16_t)reason_len);
    le_put_u64(out + 8, id);
    le_put_u64(out + 16, (uint64_t)settled_ms);
    if (reason_len > 0)
        memcpy(out + RECORD_BURY_FIXED, reason, reason_len);
    return RECORD_BURY_FIXED + (size_t)reason_len;
}

size_t record_kick_encode(uint64_t id, uint8_t *out)
{
    header(RECORD_KICK, out);
    le_put_u64(out + 8, id);
    return RECORD_KICK_SIZE;
}

size_t record_delete_encode(uint64_t id, uint8_t cause, uint8_t *out)
{
    header(RECORD_DELETE, out);
    out[1] = cause;
    le_put_u64(out + 8, id);
    return RECORD_DELETE_SIZE;
}

size_t record_meta_size(const struct record_meta *meta)
{
    return RECORD_META_FIXED + (size_t)meta->name_len;
}

size_t record_meta_encode(const struct record_meta *meta, uint8_t *out)
{
    SPOOL_ASSERT(record_queue_name_valid(meta->name, meta->name_len));
    header(RECORD_QUEUE_META, out);
    out[1] = (uint8_t)((meta->paused ? RECORD_META_PAUSED : 0) |
                       (meta->paused && meta->pause_timed ? RECORD_META_TIMED : 0));
    le_put_u16(out + 2, (uint16_t)meta->name_len);
    le_put_u32(out + 4, meta->default_max_attempts);
    le_put_u64(out + 8, meta->default_ttr_ms);
    le_put_u64(out + 16, meta->max_jobs);
    le_put_u64(out + 24, meta->max_bytes);
    memcpy(out + RECORD_META_FIXED, meta->name, meta->name_len);
    return record_meta_size(meta);
}

size_t record_purge_encode(const char *name, uint32_t name_len, uint8_t *out)
{
    SPOOL_ASSERT(record_queue_name_valid(name, name_len));
    header(RECORD_PURGE, out);
    le_put_u16(out + 2, (uint16_t)name_len);
    memcpy(out + RECORD_PURGE_FIXED, name, name_len);
    return RECORD_PURGE_FIXED + (size_t)name_len;
}

size_t record_delete_queue_encode(const char *name, uint32_t name_len, uint8_t *out)
{
    size_t len = record_purge_encode(name, name_len, out);
    out[0] = record_version(RECORD_DELETE_QUEUE);
    return len;
}

size_t record_relocate_size(const struct record_relocate *rel)
{
    return RECORD_RELOCATE_FIXED + (size_t)rel->put.queue_len + rel->reason_len +
           rel->put.body_len;
}

static bool relocate_state_valid(uint8_t state)
{
    return state == RECORD_STATE_READY || state == RECORD_STATE_DELAYED ||
           state == RECORD_STATE_DEAD;
}

size_t record_relocate_encode(const struct record_relocate *rel, uint8_t *out)
{
    const struct record_put *put = &rel->put;
    SPOOL_ASSERT(put->queue_len >= 1 && put->queue_len <= LIMIT_QUEUE_NAME_MAX_BYTES);
    SPOOL_ASSERT(put->key_len == 0);
    SPOOL_ASSERT(put->body_len <= RECORD_BODY_LEN_MAX);
    SPOOL_ASSERT(rel->reason_len <= LIMIT_REASON_MAX_BYTES);
    SPOOL_ASSERT(relocate_state_valid(rel->state));
    SPOOL_ASSERT(put->id != 0 && put->id <= RECORD_ID_MAX);
    header(RECORD_RELOCATE, out);
    out[1] = rel->state;
    le_put_u16(out + 2, (uint16_t)put->queue_len);
    le_put_u16(out + 4, (uint16_t)rel->reason_len);
    put_fields_encode(put, out);
    le_put_u32(out + 60, rel->attempts);
    le_put_u64(out + 64, (uint64_t)rel->settled_ms);
    uint8_t *p =
        put_tail_encode(put, rel->reason, rel->reason_len, out + RECORD_RELOCATE_FIXED);
    SPOOL_ASSERT((size_t)(p - out) == record_relocate_size(rel));
    return (size_t)(p - out);
}

bool record_body(const struct record *rec, const void **body, uint32_t *len)
{
    if (rec->type == RECORD_PUT) {
        *body = rec->u.put.body;
        *len = rec->u.put.body_len;
        return true;
    }
    if (rec->type == RECORD_RELOCATE) {
        *body = rec->u.relocate.put.body;
        *len = rec->u.relocate.put.body_len;
        return true;
    }
    return false;
}

static bool zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != 0)
            return false;
    return true;
}

/* put_fields_encode's inverse: bytes 8..59, shared by PUT and RELOCATE. */
static void put_fields_decode(const uint8_t *p, struct record_put *put)
{
    put->id = le_get_u64(p + 8);
    put->priority = le_get_u32(p + 16);
    put->max_attempts = le_get_u32(p + 20);
    put->ttr_ms = le_get_u64(p + 24);
    put->created_ms = (int64_t)le_get_u64(p + 32);
    put->run_at_ms = (int64_t)le_get_u64(p + 40);
    put->expires_at_ms = (int64_t)le_get_u64(p + 48);
    put->body_len = le_get_u32(p + 56);
}

static int decode_put(const uint8_t *p, size_t len, struct record *out)
{
    if (len < RECORD_PUT_FIXED || p[1] != 0 || !zero(p + 6, 2))
        return RECORD_EINVAL;
    struct record_put *put = &out->u.put;
    put->queue_len = le_get_u16(p + 2);
    put->key_len = le_get_u16(p + 4);
    put_fields_decode(p, put);
    if (put->key_len > LIMIT_KEY_MAX_BYTES || put->body_len > RECORD_BODY_LEN_MAX)
        return RECORD_EINVAL;
    if (len != record_put_size(put))
        return RECORD_EINVAL;
    put->queue = (const char *)p + RECORD_PUT_FIXED;
    put->key = put->key_len > 0 ? put->queue + put->queue_len : NULL;
    put->body = p + RECORD_PUT_FIXED + put->queue_len + put->key_len;
    if (!record_queue_name_valid(put->queue, put->queue_len) || put->id == 0 ||
        put->id > RECORD_ID_MAX)
        return RECORD_EINVAL;
    out->id = put->id;
    return 0;
}

static int decode_relocate(const uint8_t *p, size_t len, struct record *out)
{
    if (len < RECORD_RELOCATE_FIXED || !relocate_state_valid(p[1]) || !zero(p + 6, 2))
        return RECORD_EINVAL;
    struct record_relocate *rel = &out->u.relocate;
    struct record_put *put = &rel->put;
    rel->state = p[1];
    put->queue_len = le_get_u16(p + 2);
    rel->reason_len = le_get_u16(p + 4);
    put_fields_decode(p, put);
    rel->attempts = le_get_u32(p + 60);
    rel->settled_ms = (int64_t)le_get_u64(p + 64);
    if (rel->reason_len > LIMIT_REASON_MAX_BYTES || put->body_len > RECORD_BODY_LEN_MAX ||
        len != record_relocate_size(rel))
        return RECORD_EINVAL;
    put->queue = (const char *)p + RECORD_RELOCATE_FIXED;
    rel->reason = put->queue + put->queue_len;
    put->body = p + RECORD_RELOCATE_FIXED + put->queue_len + rel->reason_len;
    if (!record_queue_name_valid(put->queue, put->queue_len) || put->id == 0 ||
        put->id > RECORD_ID_MAX)
        return RECORD_EINVAL;
    out->id = put->id;
    return 0;
}

static int decode_fixed(uint8_t type, const uint8_t *p, size_t len, struct record *out)
{
    static const size_t sizes[] = {
        [RECORD_LEASE] = RECORD_LEASE_SIZE,     [RECORD_RELEASE] = RECORD_RELEASE_SIZE,
        [RECORD_TOUCH] = RECORD_TOUCH_SIZE,     [RECORD_KICK] = RECORD_KICK_SIZE,
        [RECORD_DELETE] = RECORD_DELETE_SIZE,
    };
    if (len != sizes[type])
        return RECORD_EINVAL;
    out->id = le_get_u64(p + 8);
    switch (type) {
    case RECORD_LEASE:
        if (!zero(p + 1, 3))
            return RECORD_EINVAL;
        out->u.lease.attempt = le_get_u32(p + 4);
        break;
    case RECORD_RELEASE:
        if (!zero(p + 1, 3))
            return RECORD_EINVAL;
        out->u.release.priority = le_get_u32(p + 4);
        out->u.release.run_at_ms = (int64_t)le_get_u64(p + 16);
        break;
    case RECORD_TOUCH:
        if (!zero(p + 1, 7))
            return RECORD_EINVAL;
        out->u.touch.deadline_ms = (int64_t)le_get_u64(p + 16);
        break;
    case RECORD_KICK:
        if (!zero(p + 1, 7))
            return RECORD_EINVAL;
        break;
    default: /* RECORD_DELETE */
        if (p[1] > RECORD_DELETE_TTL || !zero(p + 2, 6))
            return RECORD_EINVAL;
        out->u.del.cause = p[1];
        break;
    }
    return out->id == 0 ? RECORD_EINVAL : 0;
}

/* ACK, either version: version 2 inserts i64 settled_ms at offset 16, before the result. */
static int decode_ack(const uint8_t *p, size_t len, struct record *out)
{
    size_t fixed = p[0] >= 2 ? RECORD_ACK_FIXED : RECORD_ACK_V1_FIXED;
    uint32_t n = le_get_u32(p + 4);
    if (len < fixed || !zero(p + 1, 3) || n > LIMIT_RESULT_MAX_BYTES || len != fixed + (size_t)n)
        return RECORD_EINVAL;
    out->u.ack.result_len = n;
    out->u.ack.result = n > 0 ? p + fixed : NULL;
    out->u.ack.settled_ms = p[0] >= 2 ? (int64_t)le_get_u64(p + 16) : 0;
    out->id = le_get_u64(p + 8);
    return out->id == 0 ? RECORD_EINVAL : 0;
}

/* BURY, either version: version 2 inserts i64 settled_ms at offset 16, before the reason. */
static int decode_bury(const uint8_t *p, size_t len, struct record *out)
{
    size_t fixed = p[0] >= 2 ? RECORD_BURY_FIXED : RECORD_BURY_V1_FIXED;
    uint32_t n = le_get_u16(p + 2);
    if (len < fixed || p[1] != 0 || !zero(p + 4, 4) || n > LIMIT_REASON_MAX_BYTES ||
        len != fixed + (size_t)n)
        return RECORD_EINVAL;
    out->u.bury.reason_len = n;
    out->u.bury.reason = (const char *)p + fixed;
    out->u.bury.settled_ms = p[0] >= 2 ? (int64_t)le_get_u64(p + 16) : 0;
    out->id = le_get_u64(p + 8);
    return out->id == 0 ? RECORD_EINVAL : 0;
}

static int decode_var(uint8_t type, const uint8_t *p, size_t len, struct record *out)
{
    if (type == RECORD_ACK)
        return decode_ack(p, len, out);
    if (type == RECORD_BURY)
        return decode_bury(p, len, out);
    if (type == RECORD_PURGE || type == RECORD_DELETE_QUEUE) {
        uint32_t n = le_get_u16(p + 2);
        if (len < RECORD_PURGE_FIXED || p[1] != 0 || !zero(p + 4, 4) ||
            len != RECORD_PURGE_FIXED + (size_t)n)
            return RECORD_EINVAL;
        out->u.purge.name = (const char *)p + RECORD_PURGE_FIXED;
        out->u.purge.name_len = n;
        return record_queue_name_valid(out->u.purge.name, n) ? 0 : RECORD_EINVAL;
    }
    /* RECORD_QUEUE_META */
    struct record_meta *meta = &out->u.meta;
    unsigned flags_known = out->version >= 2 ? RECORD_META_PAUSED | RECORD_META_TIMED
                                             : RECORD_META_PAUSED;
    if (len < RECORD_META_FIXED || (p[1] & ~flags_known) != 0)
        return RECORD_EINVAL;
    meta->paused = (p[1] & RECORD_META_PAUSED) != 0;
    meta->pause_timed = (p[1] & RECORD_META_TIMED) != 0;
    meta->name_len = le_get_u16(p + 2);
    meta->default_max_attempts = le_get_u32(p + 4);
    meta->default_ttr_ms = le_get_u64(p + 8);
    meta->max_jobs = le_get_u64(p + 16);
    meta->max_bytes = le_get_u64(p + 24);
    meta->name = (const char *)p + RECORD_META_FIXED;
    if (len != record_meta_size(meta) || !record_queue_name_valid(meta->name, meta->name_len))
        return RECORD_EINVAL;
    return 0;
}

int record_decode(uint8_t type, const void *data, size_t len, struct record *out)
{
    const uint8_t *p = data;
    memset(out, 0, sizeof(*out));
    /* Every version from 1 up to the one this build writes (0 for an unknown type). */
    if (len < 8 || p[0] < 1 || p[0] > record_version(type))
        return RECORD_EINVAL;
    out->type = type;
    out->version = p[0];
    switch (type) {
    case RECORD_PUT:
        return decode_put(p, len, out);
    case RECORD_RELOCATE:
        return decode_relocate(p, len, out);
    case RECORD_LEASE:
    case RECORD_RELEASE:
    case RECORD_TOUCH:
    case RECORD_KICK:
    case RECORD_DELETE:
        return decode_fixed(type, p, len, out);
    case RECORD_ACK:
    case RECORD_BURY:
    case RECORD_PURGE:
    case RECORD_DELETE_QUEUE:
    case RECORD_QUEUE_META:
        return decode_var(type, p, len, out);
    default:
        return RECORD_EINVAL;
    }
}
