/*
 * The crash and fault suites' workload and image checker (log_workload.h).
 *
 * Everything here is bounded: a run stops after WORKLOAD_TURNS_MAX loop turns whatever the
 * engine does, and a check stops at the first discrepancy, which it describes in a sentence
 * naming the seq involved.
 */
#include "log_workload.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A run of a few hundred appends settles in a few hundred turns; ten thousand is a hang. */
#define WORKLOAD_TURNS_MAX 10000u
/* The fake clock's step per turn: the engine's ENOSPC retry (100 ms) comes after 10 turns. */
#define WORKLOAD_TURN_NS (10ll * 1000 * 1000)
/* Appends per turn are 1..this: enough to fill several batches while a commit is in flight. */
#define WORKLOAD_APPENDS_PER_TURN_MAX 6u
/* Segments at which the workload checkpoints, dropping the oldest (sealed) one. */
#define WORKLOAD_CHECKPOINT_SEGMENTS 3u
/* Turns between two read-backs: reads are a side dish; appends and syncs are the meal. */
#define WORKLOAD_READ_EVERY_TURNS 4u
/* The other seed: records appended after recovery differ from any appended before. */
#define WORKLOAD_AFTER_SEED_XOR 0x5a5a5a5a5a5a5a5aull

static uint64_t wl_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint32_t wl_length(uint64_t r)
{
    uint32_t pick = (uint32_t)((r >> 8) % 100);
    uint64_t r2 = r >> 16;
    if (pick < 5)
        return 0;
    if (pick < 70)
        return 1 + (uint32_t)(r2 % 300);
    if (pick < 93)
        return 300 + (uint32_t)(r2 % 3000);
    return 3300 + (uint32_t)(r2 % (WORKLOAD_RECORD_MAX - 3300 + 1));
}

void workload_record(uint64_t seed, uint64_t seq, uint8_t *type, uint8_t *buf, uint32_t *len)
{
    uint64_t r = wl_mix(seed ^ wl_mix(seq));
    *type = (uint8_t)(1 + r % 7);
    uint32_t n = wl_length(r);
    if ((r >> 40) % 3 == 0) {
        /* Text that lz4 shrinks well. */
        char text[64];
        int text_len = snprintf(text, sizeof(text), "seq %" PRIu64 " spool record; ", seq);
        for (uint32_t i = 0; i < n; i++)
            buf[i] = (uint8_t)text[i % (uint32_t)text_len];
    } else {
        uint64_t state = r;
        for (uint32_t i = 0; i < n; i += 8) {
            uint64_t word = wl_mix(state++);
            uint32_t chunk = n - i < 8 ? n - i : 8;
            memcpy(buf + i, &word, chunk);
        }
    }
    *len = n;
}

uint32_t workload_checkpoint_payload(uint64_t anchor, char *buf, uint32_t len)
{
    int n = snprintf(buf, len, "ckpt anchor=%" PRIu64, anchor);
    SPOOL_ASSERT(n > 0 && (uint32_t)n < len);
    return (uint32_t)n;
}

void workload_config(struct log_config *config)
{
    log_config_defaults(config);
    config->dir = "memfs";
    config->segment_size_bytes = 64u * 1024u;
    config->batch_size_bytes_max = 16u * 1024u;
    config->sync_mode = LOG_SYNC_ALWAYS;
    config->compress = true;
}

static int64_t wl_now(void *ctx)
{
    return ((struct workload *)ctx)->now_ns;
}

static void wl_on_durable(void *ctx, uint64_t durable_seq_end, enum log_durability level, int error)
{
    struct workload *w = ctx;
    if (error != 0) {
        w->durable_error = error;
        w->durable_error_count++;
        return;
    }
    uint64_t *final =
        level == LOG_DURABLE_SYNCED ? &w->final_durable_seq_end : &w->final_written_seq_end;
    if (durable_seq_end > w->next_seq || durable_seq_end < *final)
        w->durable_violations++;
    if (level != LOG_DURABLE_SYNCED && level != LOG_DURABLE_WRITTEN)
        w->durable_violations++;
    if (w->durable_count == w->durable_cap) {
        w->durable_cap = w->durable_cap == 0 ? 64 : w->durable_cap * 2;
        w->durable = realloc(w->durable, w->durable_cap * sizeof(w->durable[0]));
        SPOOL_ASSERT(w->durable != NULL);
    }
    w->durable[w->durable_count++] = (struct workload_durable){
        .op_count = w->op_count != NULL ? w->op_count(w->hook_ctx) : 0,
        .durable_seq_end = durable_seq_end,
        .level = level,
        .tagged = w->tag != NULL && w->tag(w->hook_ctx),
    };
    if (durable_seq_end > *final)
        *final = durable_seq_end;
    if (durable_seq_end > w->final_written_seq_end)
        w->final_written_seq_end = durable_seq_end;
}

static void wl_checkpoint_done(void *ctx, int error)
{
    struct workload *w = ctx;
    SPOOL_ASSERT(w->checkpoint_count > 0);
    struct workload_checkpoint *cp = &w->checkpoints[w->checkpoint_count - 1];
    cp->done = true;
    cp->error = error;
    cp->done_op = w->op_count != NULL ? w->op_count(w->hook_ctx) : 0;
}

const struct workload_checkpoint *workload_checkpoint_last(const struct workload *w)
{
    return w->checkpoint_count > 0 ? &w->checkpoints[w->checkpoint_count - 1] : NULL;
}

uint64_t workload_checkpoint_anchor_at(const struct workload *w, uint64_t k)
{
    uint64_t anchor = 0;
    for (uint32_t i = 0; i < w->checkpoint_count; i++) {
        const struct workload_checkpoint *cp = &w->checkpoints[i];
        if (cp->done && cp->error == 0 && cp->done_op <= k && cp->anchor > anchor)
            anchor = cp->anchor;
    }
    return anchor;
}

static void wl_append_some(struct workload *w, struct log *log, uint8_t *buf)
{
    uint32_t count = 1 + (uint32_t)(wl_mix(w->seed ^ w->turns) % WORKLOAD_APPENDS_PER_TURN_MAX);
    for (uint32_t i = 0; i < count && w->appended < w->record_count; i++) {
        uint64_t seq = log_next_seq(log);
        uint8_t type;
        uint32_t len;
        workload_record(w->seed, seq, &type, buf, &len);
        struct log_pos pos;
        int rc = log_append(log, type, buf, len, &pos);
        if (rc == -ENOBUFS) {
            w->enobufs_count++;
            return;
        }
        if (rc == LOG_ENOSPC) {
            w->enospc_count++;
            return;
        }
        if (rc != 0) {
            w->append_error = rc;
            return;
        }
        if (pos.seq != seq)
            w->durable_violations++;
        if (seq <= w->record_count)
            w->positions[seq] = pos;
        w->appended++;
        w->next_seq = seq + 1;
    }
}

struct wl_read {
    struct workload *w;
    uint64_t seq;
};

static void wl_read_done(void *ctx, int error, const struct log_record *record)
{
    struct wl_read *r = ctx;
    struct workload *w = r->w;
    w->reads_done++;
    if (error != 0) {
        w->reads_failed++;
    } else {
        uint8_t *expected = malloc(WORKLOAD_RECORD_MAX);
        SPOOL_ASSERT(expected != NULL);
        uint8_t type;
        uint32_t len;
        workload_record(w->seed, r->seq, &type, expected, &len);
        if (record->pos.seq != r->seq || record->type != type || record->len != len ||
            (len > 0 && memcmp(record->data, expected, len) != 0))
            w->reads_wrong++;
        free(expected);
    }
    free(r);
}

/* Read back one durable record of a segment still on disk. */
static void wl_maybe_read(struct workload *w, struct log *log)
{
    if (!w->reads || w->turns % WORKLOAD_READ_EVERY_TURNS != 0 || log_segment_count(log) == 0)
        return;
    uint64_t first = log_segment_id(log, 0);
    uint64_t end = log_durable_seq_end(log);
    if (end > w->next_seq)
        end = w->next_seq;
    if (first < 1)
        first = 1;
    if (end <= first)
        return;
    uint64_t seq = first + wl_mix(w->seed ^ ((uint64_t)w->turns << 20)) % (end - first);
    if (seq > w->record_count)
        return;
    struct wl_read *r = malloc(sizeof(*r));
    SPOOL_ASSERT(r != NULL);
    *r = (struct wl_read){.w = w, .seq = seq};
    if (log_read(log, &w->positions[seq], wl_read_done, r) == 0) {
        w->reads_started++;
    } else {
        w->reads_refused++;
        free(r);
    }
}

static void wl_maybe_checkpoint(struct workload *w, struct log *log)
{
    if (!w->checkpoint || w->checkpoint_this_run || w->checkpoint_count == WORKLOAD_CHECKPOINTS_MAX)
        return;
    if (log_segment_count(log) < WORKLOAD_CHECKPOINT_SEGMENTS)
        return;
    uint64_t anchor = log_durable_seq_end(log);
    uint64_t drop = log_segment_id(log, 0);
    if (anchor < log_segment_id(log, 1))
        return; /* the oldest segment still holds records the checkpoint would not cover */
    char payload[64];
    uint32_t len = workload_checkpoint_payload(anchor, payload, sizeof(payload));
    int rc = log_checkpoint(log, anchor, payload, len, &drop, 1, wl_checkpoint_done, w);
    if (rc == -EBUSY)
        return;
    w->checkpoint_this_run = true;
    w->checkpoints[w->checkpoint_count++] = (struct workload_checkpoint){
        .anchor = anchor,
        .dropped = drop,
        .done = rc != 0,
        .error = rc,
    };
}

static bool wl_settled(const struct workload *w, struct log *log, struct io_backend *io)
{
    bool poisoned = log_error(log) != 0;
    bool appending = w->appended < w->record_count && w->append_error == 0 && !poisoned;
    const struct workload_checkpoint *cp = workload_checkpoint_last(w);
    bool checkpointing = w->checkpoint_this_run && cp != NULL && !cp->done;
    return !appending && !checkpointing && (log_idle(log) || poisoned) &&
           io->ops->in_flight(io) == 0;
}

static void wl_loop(struct workload *w, struct log *log, struct io_backend *io, uint8_t *buf)
{
    for (w->turns = 0; w->turns < WORKLOAD_TURNS_MAX; w->turns++) {
        w->now_ns += WORKLOAD_TURN_NS;
        if (log_error(log) == 0 && w->append_error == 0)
            wl_append_some(w, log, buf);
        wl_maybe_checkpoint(w, log);
        wl_maybe_read(w, log);
        log_tick(log);
        uint32_t segments = log_segment_count(log);
        if (segments > w->segments_max)
            w->segments_max = segments;
        int rc = io_backend_poll(io, false);
        SPOOL_ASSERT(rc >= 0);
        if (!w->tag_seen && w->tag != NULL && w->tag(w->hook_ctx)) {
            w->tag_seen = true;
            w->appended_at_tag = w->appended;
        }
        if (wl_settled(w, log, io))
            break;
    }
}

void workload_run(struct workload *w, struct io_backend *io)
{
    struct log_config config;
    workload_config(&config);
    config.on_durable = wl_on_durable;
    config.ctx = w;
    config.now_ns = wl_now;
    config.sync_mode = w->sync_mode;
    config.sync_interval_ms = w->sync_interval_ms;
    config.spare_segment = w->spare_segment;
    if (w->now_ns == 0)
        w->now_ns = 1000000000ll;
    w->checkpoint_this_run = false;
    w->tag_seen = false;
    uint64_t next_seq_before = w->next_seq == 0 ? 1 : w->next_seq;
    w->next_seq = next_seq_before;
    struct log_recovery_report report;
    void *checkpoint = NULL;
    uint32_t checkpoint_len = 0;
    struct log *log = NULL;
    int rc = log_open(&config, io, NULL, NULL, &checkpoint, &checkpoint_len, &report, &log);
    free(checkpoint);
    if (rc != 0) {
        w->open_error = rc;
        return;
    }
    /* A later generation continues where the last clean close left off. */
    if (log_next_seq(log) != next_seq_before)
        w->durable_violations++;
    w->next_seq = log_next_seq(log);
    if (w->positions_cap < w->record_count + 1u) {
        w->positions = realloc(w->positions, (w->record_count + 1u) * sizeof(w->positions[0]));
        SPOOL_ASSERT(w->positions != NULL);
        memset(w->positions + w->positions_cap, 0,
               (w->record_count + 1u - w->positions_cap) * sizeof(w->positions[0]));
        w->positions_cap = w->record_count + 1u;
    }
    uint8_t *buf = malloc(WORKLOAD_RECORD_MAX);
    SPOOL_ASSERT(buf != NULL);
    wl_loop(w, log, io, buf);
    if (!w->tag_seen)
        w->appended_at_tag = w->appended; /* whatever the tag marks happens from here on */
    w->log_error_at_end = log_error(log);
    if (w->log_error_at_end != 0) {
        struct log_pos pos;
        w->late_append_error = log_append(log, 1, "late", 4, &pos);
    }
    free(buf);
    w->close_error = log_close(log);
}

void workload_free(struct workload *w)
{
    free(w->positions);
    w->positions = NULL;
    free(w->durable);
    w->durable = NULL;
    w->durable_count = 0;
    w->durable_cap = 0;
}

uint64_t workload_durable_at(const struct workload *w, uint64_t k, enum log_durability level)
{
    uint64_t end = 0;
    for (uint32_t i = 0; i < w->durable_count; i++) {
        const struct workload_durable *d = &w->durable[i];
        if (d->op_count <= k && d->level >= level && d->durable_seq_end > end)
            end = d->durable_seq_end;
    }
    return end;
}

/* ---- checking an image ---- */

struct wl_check {
    const struct workload *w;
    uint64_t after_from; /* seqs from here were appended after recovery, with the other seed */
    uint64_t first;
    uint64_t last;
    uint64_t count;
    uint8_t *buf;
    char *why;
    uint32_t why_len;
    bool failed;
};

static int wl_fail(struct wl_check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int wl_fail(struct wl_check *c, const char *fmt, ...)
{
    if (!c->failed) {
        va_list args;
        va_start(args, fmt);
        vsnprintf(c->why, c->why_len, fmt, args);
        va_end(args);
        c->failed = true;
    }
    return -1;
}

static int wl_replay(void *ctx, const struct log_record *record)
{
    struct wl_check *c = ctx;
    uint64_t seq = record->pos.seq;
    if (c->count > 0 && seq != c->last + 1)
        return wl_fail(c, "replay jumps from seq %" PRIu64 " to %" PRIu64, c->last, seq);
    bool after = seq >= c->after_from;
    uint64_t appended_end = after ? c->after_from + 1 : c->w->next_seq;
    if (seq >= appended_end)
        return wl_fail(
            c, "replay returns seq %" PRIu64 ", never appended (appends ended at %" PRIu64 ")", seq,
            appended_end - 1);
    uint8_t type;
    uint32_t len;
    workload_record(after ? c->w->seed ^ WORKLOAD_AFTER_SEED_XOR : c->w->seed, seq, &type, c->buf,
                    &len);
    if (record->type != type || record->len != len ||
        (len > 0 && memcmp(record->data, c->buf, len) != 0))
        return wl_fail(c,
                       "replayed seq %" PRIu64 " differs (type %u len %u, appended type %u len %u)",
                       seq, record->type, record->len, type, len);
    if (c->count == 0)
        c->first = seq;
    c->last = seq;
    c->count++;
    return 0;
}

static void wl_no_durable(void *ctx, uint64_t durable_seq_end, enum log_durability level, int error)
{
    (void)ctx;
    (void)durable_seq_end;
    (void)level;
    (void)error;
}

static int64_t wl_check_now(void *ctx)
{
    (void)ctx;
    return 1000000000ll;
}

/* Open with the checker; on success *out is the open log and *start the expected first seq. */
static int wl_check_open(struct wl_check *c, struct io_backend *io,
                         const struct workload_expect *expect, struct log **out)
{
    struct log_config config;
    workload_config(&config);
    config.on_durable = wl_no_durable;
    config.now_ns = wl_check_now;
    struct log_recovery_report report;
    memset(&report, 0, sizeof(report));
    void *checkpoint = NULL;
    uint32_t checkpoint_len = 0;
    c->count = 0;
    int rc = log_open(&config, io, wl_replay, c, &checkpoint, &checkpoint_len, &report, out);
    if (rc != 0) {
        free(checkpoint);
        if (c->failed)
            return WORKLOAD_CHECK_FAILED; /* replay saw a wrong record, then stopped the open */
        wl_fail(c, "log_open: %s (%d): %s", log_strerror(rc), rc, report.message);
        return WORKLOAD_OPEN_FAILED;
    }
    uint64_t start = 1;
    if (checkpoint != NULL) {
        for (uint32_t i = 0; i < c->w->checkpoint_count && start == 1; i++) {
            char payload[64];
            uint64_t anchor = c->w->checkpoints[i].anchor;
            uint32_t len = workload_checkpoint_payload(anchor, payload, sizeof(payload));
            if (checkpoint_len == len && memcmp(checkpoint, payload, len) == 0)
                start = anchor;
        }
        free(checkpoint);
        if (start == 1)
            return wl_fail(c, "a checkpoint the workload did not write (%u bytes)", checkpoint_len);
    }
    if (start < expect->checkpoint_anchor_min)
        return wl_fail(c,
                       "checkpoint anchored at %" PRIu64 " loaded, but one at %" PRIu64
                       " was reported done",
                       start, expect->checkpoint_anchor_min);
    if (c->failed)
        return -1;
    uint64_t end = c->count > 0 ? c->last + 1 : start;
    if (c->count > 0 && c->first != start)
        return wl_fail(c, "replay starts at seq %" PRIu64 ", expected %" PRIu64, c->first, start);
    if (report.next_seq != end || log_next_seq(*out) != end)
        return wl_fail(c, "next seq %" PRIu64 " after a replay ending at %" PRIu64, report.next_seq,
                       end - 1);
    if (end < expect->durable_seq_end)
        return wl_fail(c,
                       "lost durable records: replay ends at seq %" PRIu64
                       " but seqs below %" PRIu64 " were reported durable",
                       end - 1, expect->durable_seq_end);
    return 0;
}

/* Append one record to the recovered log, wait for it to be durable, close. */
static int wl_check_append(struct wl_check *c, struct log *log, struct io_backend *io)
{
    uint64_t seq = log_next_seq(log);
    uint8_t type;
    uint32_t len;
    workload_record(c->w->seed ^ WORKLOAD_AFTER_SEED_XOR, seq, &type, c->buf, &len);
    struct log_pos pos;
    int rc = log_append(log, type, c->buf, len, &pos);
    if (rc != 0)
        return wl_fail(c, "append after recovery: %s (%d)", log_strerror(rc), rc);
    for (uint32_t turn = 0; turn < WORKLOAD_TURNS_MAX && log_durable_seq_end(log) <= seq; turn++) {
        log_tick(log);
        if (io_backend_poll(io, false) < 0 || log_error(log) != 0)
            break;
    }
    if (log_durable_seq_end(log) <= seq)
        return wl_fail(c, "append after recovery never became durable (error %d)", log_error(log));
    c->after_from = seq;
    return 0;
}

int workload_check_image(const struct workload *w, struct io_backend *io,
                         const struct workload_expect *expect, char *why, uint32_t why_len)
{
    struct wl_check c = {.w = w, .after_from = UINT64_MAX, .why = why, .why_len = why_len};
    c.buf = malloc(WORKLOAD_RECORD_MAX);
    SPOOL_ASSERT(c.buf != NULL);
    struct log *log = NULL;
    int rc = wl_check_open(&c, io, expect, &log);
    if (rc == 0 && expect->append_after)
        rc = wl_check_append(&c, log, io);
    if (log != NULL) {
        int close_rc = log_close(log);
        if (rc == 0 && close_rc != 0)
            rc = wl_fail(&c, "log_close: %s (%d)", log_strerror(close_rc), close_rc);
        log = NULL;
    }
    if (rc == 0 && expect->append_after) {
        rc = wl_check_open(&c, io, expect, &log);
        if (rc == WORKLOAD_OPEN_FAILED)
            rc = WORKLOAD_CHECK_FAILED; /* it opened before: failing now is a broken promise */
        if (rc == 0 && c.last != c.after_from)
            rc = wl_fail(&c, "the record appended after recovery (seq %" PRIu64 ") is gone",
                         c.after_from);
        if (log != NULL && log_close(log) != 0 && rc == 0)
            rc = wl_fail(&c, "log_close after reopening failed");
    }
    free(c.buf);
    return rc;
}
