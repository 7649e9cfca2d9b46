/*
 * Job records: what the broker writes into the log (storage/log.h) and replays at recovery.
 *
 * The log stores opaque records tagged with one type byte; this module owns the meaning of
 * those bytes for the broker. Every record carries an absolute job id, so replay never depends
 * on where a record sits in the log. spool-log uses this decoder too, so it is strict: it never
 * trusts a length it has not checked against the bytes it was given, and it rejects any record
 * whose total length is not exactly what its fields say.
 *
 * Byte layout (docs/RECORDS.md is the contract; all integers little-endian; the type byte is
 * the log record's type). Every
 * payload starts with one version byte, counted per record type (record_version): ACK and BURY
 * are at version 2, every other type at version 1 (RECORD_VERSION). Upgrade rule: a new field
 * bumps its type's version, a new type starts at 1; decoders keep reading every older version
 * (tests hold version-1 samples) and refuse a version they do not know.
 *
 *   PUT (1)        u8 version, u8 flags(0), u16 queue_len, u16 key_len, u16 pad(0),
 *                  u64 id, u32 priority, u32 max_attempts, u64 ttr_ms, i64 created_ms,
 *                  i64 run_at_ms (0: ready at once), i64 expires_at_ms (0: no ttl),
 *                  u32 body_len, then queue, key, body bytes            (60 + lengths)
 *   LEASE (2)      u8 version, u8 pad[3], u32 attempt, u64 id                  (16)
 *   ACK (3)        u8 version (2), u8 pad[3], u32 result_len, u64 id, i64 settled_ms,
 *                  result                                                     (24 + len)
 *                  version 1: no settled_ms                                   (16 + len)
 *   RELEASE (4)    u8 version, u8 pad[3], u32 priority, u64 id, i64 run_at_ms   (24)
 *   TOUCH (5)      u8 version, u8 pad[7], u64 id, i64 deadline_ms               (24)
 *   BURY (6)       u8 version (2), u8 pad, u16 reason_len, u32 pad, u64 id,
 *                  i64 settled_ms, reason                                     (24 + len)
 *                  version 1: no settled_ms                                   (16 + len)
 *   KICK (7)       u8 version, u8 pad[7], u64 id                                (16)
 *   DELETE (8)     u8 version, u8 cause, u8 pad[6], u64 id                      (16)
 *   QUEUE_META (9) u8 version, u8 flags (bit0 paused), u16 name_len, u32 default_max_attempts,
 *                  u64 default_ttr_ms, u64 max_jobs, u64 max_bytes, name          (32 + len)
 *   PURGE (10)     u8 version, u8 pad, u16 name_len, u32 pad, name               (8 + len)
 *   DELETE_QUEUE (11) u8 version, u8 pad, u16 name_len, u32 pad, name            (8 + len)
 *                  the queue's every job (reserved ones included), keys and settings go
 *   RELOCATE (12)  u8 version, u8 state (1 ready, 2 delayed, 4 dead), u16 queue_len,
 *                  u16 reason_len, u16 pad(0), u64 id, u32 priority, u32 max_attempts,
 *                  u64 ttr_ms, i64 created_ms, i64 run_at_ms, i64 expires_at_ms,
 *                  u32 body_len, u32 attempts, i64 settled_ms (dead: when), then queue,
 *                  reason, body bytes                                       (72 + lengths)
 *                  compaction's copy of a live job: the job's body now lives here
 */
#ifndef SPOOL_SRC_RECORD_H
#define SPOOL_SRC_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "assert.h"
#include "spool_limits.h"

/* The version of every record type but ACK and BURY. */
#define RECORD_VERSION 1
/* ACK and BURY version 2 carry the settle time (Unix ms): a done or dead job's finished time
 * is the moment it settled, not the moment a restart replayed it. */
#define RECORD_ACK_VERSION 2
#define RECORD_BURY_VERSION 2
/* QUEUE_META version 2 may set flag bit 1 (RECORD_META_TIMED): the pause is the beanstalkd
 * protocol's pause-tube, which ends by a timer and, as with beanstalkd, not after a restart. */
#define RECORD_META_VERSION 2

/* Queue names are 1..LIMIT_QUEUE_NAME_MAX_BYTES (common/spool_limits.h) bytes of
 * [A-Za-z0-9._:+/;$()-]: free of bytes that would need quoting in logfmt. Keys, results and
 * reasons are bounded by the same table (LIMIT_KEY_MAX_BYTES, LIMIT_RESULT_MAX_BYTES,
 * LIMIT_REASON_MAX_BYTES) as the wire that brings them. */
/* Job ids are below 2^63 (spoold keeps them below 2^53): a record or checkpoint naming a
 * larger one is damage, and the id counter's +1 can never wrap. */
#define RECORD_ID_MAX ((uint64_t)INT64_MAX)
/* Bodies: bounded by the server's --max-job-size; the codec only needs a sane ceiling, one
 * a log batch (1 MiB default, configurable) could never exceed by much. */
#define RECORD_BODY_LEN_MAX (64u * 1024u * 1024u)

enum record_type {
    RECORD_PUT = 1,
    RECORD_LEASE = 2,
    RECORD_ACK = 3,
    RECORD_RELEASE = 4,
    RECORD_TOUCH = 5,
    RECORD_BURY = 6,
    RECORD_KICK = 7,
    RECORD_DELETE = 8,
    RECORD_QUEUE_META = 9,
    RECORD_PURGE = 10,
    RECORD_DELETE_QUEUE = 11,
    RECORD_RELOCATE = 12, /* compaction (src/compact.h): a live job copied forward */
};

/* The state byte of a RELOCATE: the job's state as a restart would see it (a reserved job's
 * lease does not survive one: ready). The checkpoint payload uses the same numbers. */
enum record_relocate_state {
    RECORD_STATE_READY = 1,
    RECORD_STATE_DELAYED = 2,
    RECORD_STATE_DEAD = 4,
};

enum record_delete_cause {
    RECORD_DELETE_CLIENT = 0, /* a delete request */
    RECORD_DELETE_TTL = 1,    /* the job's ttl ran out */
};

enum record_meta_flags {
    RECORD_META_PAUSED = 1u << 0,
    RECORD_META_TIMED = 1u << 1, /* version 2: the pause does not outlive the process */
};

/* Sizes of the fixed parts, before any variable bytes. */
#define RECORD_PUT_FIXED 60
#define RECORD_LEASE_SIZE 16
#define RECORD_ACK_FIXED 24
#define RECORD_ACK_V1_FIXED 16
#define RECORD_RELEASE_SIZE 24
#define RECORD_TOUCH_SIZE 24
#define RECORD_BURY_FIXED 24
#define RECORD_BURY_V1_FIXED 16
#define RECORD_KICK_SIZE 16
#define RECORD_DELETE_SIZE 16
#define RECORD_META_FIXED 32
#define RECORD_PURGE_FIXED 8
#define RECORD_RELOCATE_FIXED 72

struct record_put {
    uint64_t id;
    uint32_t priority;
    uint32_t max_attempts;
    uint64_t ttr_ms;
    int64_t created_ms;
    int64_t run_at_ms;
    int64_t expires_at_ms;
    const char *queue;
    uint32_t queue_len;
    const char *key;
    uint32_t key_len;
    const void *body;
    uint32_t body_len;
};

/* A RELOCATE: every field a PUT has but the key (idempotency keys live in the checkpoint and
 * in the PUT's own replay window), plus what the job became since: state, attempts, the dead
 * reason and settle time, and the priority and run-at of its last release (in put). */
struct record_relocate {
    struct record_put put; /* key NULL, key_len 0 */
    uint8_t state;         /* enum record_relocate_state */
    uint32_t attempts;
    int64_t settled_ms; /* dead: when it died; else 0 */
    const char *reason; /* dead: why (reason_len bytes); may be empty */
    uint32_t reason_len;
};

struct record_meta {
    const char *name;
    uint32_t name_len;
    bool paused;
    bool pause_timed; /* RECORD_META_TIMED: replay leaves the queue unpaused */
    uint32_t default_max_attempts;
    uint64_t default_ttr_ms;
    uint64_t max_jobs;  /* 0: unlimited */
    uint64_t max_bytes; /* 0: unlimited */
};

/* A decoded record; pointers refer into the bytes handed to record_decode. */
struct record {
    uint8_t type;
    uint8_t version; /* as read: a version-1 ACK or BURY has no settled_ms (0) */
    uint64_t id;
    union {
        struct record_put put;
        struct {
            uint32_t attempt;
        } lease;
        struct {
            const void *result;
            uint32_t result_len;
            int64_t settled_ms; /* version 2 */
        } ack;
        struct {
            uint32_t priority;
            int64_t run_at_ms;
        } release;
        struct {
            int64_t deadline_ms;
        } touch;
        struct {
            const char *reason;
            uint32_t reason_len;
            int64_t settled_ms; /* version 2 */
        } bury;
        struct {
            uint8_t cause;
        } del;
        struct record_meta meta;
        struct {
            const char *name;
            uint32_t name_len;
        } purge;
        struct record_relocate relocate;
    } u;
};

/* Error for a record that is not well formed (short, long, bad version, bad field). */
#define RECORD_EINVAL (-10101)

bool record_queue_name_valid(const char *name, size_t len);

/* Encoded size of a record; the encoders write exactly this many bytes into out. */
size_t record_put_size(const struct record_put *put);
size_t record_put_encode(const struct record_put *put, uint8_t *out);
size_t record_lease_encode(uint64_t id, uint32_t attempt, uint8_t *out);
/* settled_ms: when the job settled (Unix ms), kept for its finished time across a restart. */
size_t record_ack_encode(uint64_t id, int64_t settled_ms, const void *result, uint32_t result_len,
                         uint8_t *out);
size_t record_release_encode(uint64_t id, uint32_t priority, int64_t run_at_ms, uint8_t *out);
size_t record_touch_encode(uint64_t id, int64_t deadline_ms, uint8_t *out);
size_t record_bury_encode(uint64_t id, int64_t settled_ms, const char *reason,
                          uint32_t reason_len, uint8_t *out);
size_t record_kick_encode(uint64_t id, uint8_t *out);
size_t record_delete_encode(uint64_t id, uint8_t cause, uint8_t *out);
size_t record_meta_size(const struct record_meta *meta);
size_t record_meta_encode(const struct record_meta *meta, uint8_t *out);
size_t record_purge_encode(const char *name, uint32_t name_len, uint8_t *out);
/* DELETE_QUEUE has PURGE's layout (decoded into u.purge too). */
size_t record_delete_queue_encode(const char *name, uint32_t name_len, uint8_t *out);

size_t record_relocate_size(const struct record_relocate *rel);
size_t record_relocate_encode(const struct record_relocate *rel, uint8_t *out);
/* The body a record carries (PUT, RELOCATE): true and *body, *len set; false for other types.
 * rec must have decoded. Body reads (body_fetch.c, spool-log) take it from either. */
bool record_body(const struct record *rec, const void **body, uint32_t *len);

/* Decode one record of the given type. 0, or RECORD_EINVAL with nothing promised in *out. */
SPOOL_MUST_USE int record_decode(uint8_t type, const void *data, size_t len, struct record *out);

/* The version this build writes for a record type (0 for an unknown type). */
uint8_t record_version(uint8_t type);

/* "PUT", "ACK", ... or "UNKNOWN" (for spool-log and log lines). */
const char *record_type_name(uint8_t type);

#endif
