/* Shared helpers for the log tests: a log on a temp dir through the POSIX backend, a
 * deterministic record generator, and a replay checker. */
#ifndef SPOOL_TEST_LOG_UTIL_H
#define SPOOL_TEST_LOG_UTIL_H

#include "check.h"
#include "log.h"

#include <errno.h>

struct tlog {
    char *dir;
    struct io_backend *io;
    struct log *log;
    struct log_config config;
    uint64_t durable_end;
    enum log_durability last_level;
    int durable_calls;
    int error;
    int64_t now;
    struct log_recovery_report report;
    void *ckpt;
    uint32_t ckpt_len;
};

static inline void tlog_on_durable(void *ctx, uint64_t end, enum log_durability level, int error)
{
    struct tlog *t = ctx;
    t->durable_calls++;
    if (error != 0) {
        t->error = error;
        return;
    }
    CHECK(end >= t->durable_end || level == LOG_DURABLE_SYNCED);
    if (end > t->durable_end)
        t->durable_end = end;
    t->last_level = level;
}

static inline int64_t tlog_clock(void *ctx)
{
    return ((struct tlog *)ctx)->now;
}

/* Deterministic record for seq: length, type and bytes. */
static inline uint32_t rec_len(uint64_t seq, uint32_t max)
{
    return (uint32_t)((seq * 37) % max);
}

static inline uint8_t rec_type(uint64_t seq)
{
    return (uint8_t)(seq % 7);
}

/* Two of three records compress well (runs of 8 bytes), the third hardly at all, so batches
 * exercise both codecs. */
static inline void rec_fill(uint64_t seq, uint8_t *buf, uint32_t len)
{
    uint64_t x = seq * 0x9E3779B97F4A7C15ull + 1;
    for (uint32_t i = 0; i < len; i++) {
        if (seq % 3 != 0) {
            buf[i] = (uint8_t)('a' + (seq + i / 8) % 13);
        } else {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = (uint8_t)x;
        }
    }
}

static inline bool rec_matches(const struct log_record *r, uint32_t max)
{
    uint8_t buf[65536];
    uint32_t len = rec_len(r->pos.seq, max);
    if (r->len != len || r->type != rec_type(r->pos.seq))
        return false;
    rec_fill(r->pos.seq, buf, len);
    return memcmp(buf, r->data, len) == 0;
}

static inline void tlog_config(struct tlog *t, uint64_t segment_size, uint32_t batch_size)
{
    log_config_defaults(&t->config);
    t->config.dir = t->dir;
    t->config.segment_size_bytes = segment_size;
    t->config.batch_size_bytes_max = batch_size;
    t->config.on_durable = tlog_on_durable;
    t->config.ctx = t;
    t->config.now_ns = tlog_clock;
}

static inline void tlog_init(struct tlog *t, const char *tag, uint64_t segment_size,
                             uint32_t batch_size)
{
    memset(t, 0, sizeof(*t));
    t->dir = check_tmpdir(tag);
    tlog_config(t, segment_size, batch_size);
}

/* Replay checker: records must come in seq order starting at `next`. */
struct replay_check {
    uint64_t next;
    uint64_t count;
    uint32_t max;
    int bad;
};

static inline int replay_check_record(void *ctx, const struct log_record *r)
{
    struct replay_check *rc = ctx;
    if (r->pos.seq != rc->next || !rec_matches(r, rc->max))
        rc->bad++;
    rc->next = r->pos.seq + 1;
    rc->count++;
    return 0;
}

static inline int tlog_open_replay(struct tlog *t, struct replay_check *rc)
{
    if (t->io == NULL)
        REQUIRE(posix_backend_create(t->dir, true, &t->io) == 0);
    free(t->ckpt);
    t->ckpt = NULL;
    t->durable_end = 0;
    t->error = 0;
    int r = log_open(&t->config, t->io, rc ? replay_check_record : NULL, rc, &t->ckpt,
                     &t->ckpt_len, &t->report, &t->log);
    if (r == 0)
        t->durable_end = log_durable_seq_end(t->log);
    return r;
}

static inline int tlog_open(struct tlog *t)
{
    return tlog_open_replay(t, NULL);
}

/* Poll until the log is idle (every commit done). */
static inline void tlog_drain(struct tlog *t)
{
    for (int i = 0; i < 100000 && !log_idle(t->log); i++) {
        log_tick(t->log);
        if (log_idle(t->log) || log_error(t->log) != 0)
            break;
        REQUIRE(io_backend_poll(t->io, true) >= 0);
    }
}

/* Append records [log_next_seq, upto) with generator lengths < max, committing whenever the
 * batch is full. */
static inline void tlog_append_upto(struct tlog *t, uint64_t upto, uint32_t max)
{
    uint8_t buf[65536];
    while (log_next_seq(t->log) < upto) {
        uint64_t seq = log_next_seq(t->log);
        uint32_t len = rec_len(seq, max);
        rec_fill(seq, buf, len);
        struct log_pos pos;
        int r = log_append(t->log, rec_type(seq), buf, len, &pos);
        if (r == -ENOBUFS) {
            log_tick(t->log);
            REQUIRE(io_backend_poll(t->io, true) >= 0);
            continue;
        }
        REQUIRE(r == 0);
        REQUIRE(pos.seq == seq);
    }
}

static inline void tlog_close(struct tlog *t)
{
    if (t->log != NULL)
        CHECK_EQ(log_close(t->log), 0);
    t->log = NULL;
    io_backend_destroy(t->io);
    t->io = NULL;
}

static inline void tlog_destroy(struct tlog *t)
{
    tlog_close(t);
    check_rmdir(t->dir);
    free(t->dir);
    free(t->ckpt);
}

static inline char *tlog_path(const struct tlog *t, uint64_t segment_id)
{
    static char path[4096];
    snprintf(path, sizeof(path), "%s/%020llu.seg", t->dir, (unsigned long long)segment_id);
    return path;
}

#endif
