/*
 * The engine's write path: appends, group commit, rolls and durability (log.h).
 *
 * A commit is a chain of ops driven by completions, one step at a time, never blocking:
 *
 *   [roll: (fdatasync old segment) -> (free space check) open O_CREAT|O_EXCL -> fallocate
 *          -> write header -> fdatasync -> fsync directory -> seal the old segment (one
 *          RWF_DSYNC write)]  -> write batch ("always": O_DIRECT with RWF_DSYNC through
 *          log_direct_fd, or buffered and linked to an fdatasync where direct I/O is refused)
 *
 * or, when a spare segment is ready (log_spare.c), a roll into it: write header -> fdatasync
 * -> rename the spare to the segment's name -> fsync directory -> seal the old segment.
 *
 * The seal (batch_seal_marker) goes into the old segment only once the new segment is durable
 * and named, and the new segment's first batch only once the seal is durable: so a crash
 * leaves either an unsealed newest segment, or a sealed one whose successor exists. Placement
 * keeps one block free at the end of every segment for it. Each batch records the current
 * segment's sync point (synced_offset): the always mode's batches the offset they start at,
 * the interval/none modes' the end of what the last fdatasync of that segment covered.
 *
 * A write that completes short is finished by another write of the remainder. A failed write
 * or fdatasync poisons the engine: on_durable hears the error once, appends fail with it from
 * then on, and nothing is retried. ENOSPC while making a new segment is not poison: the
 * half-made file is removed, appends fail with LOG_ENOSPC, and the roll is retried every
 * LOG_ENOSPC_RETRY_NS from log_tick.
 *
 * Invariants (asserted): at most config.commits_in_flight commits in flight, and a roll's
 * commit alone (log.h, "Group commit"); the open batch never exceeds its capacity; watermarks
 * only grow and synced_end <= written_end <= next_seq; a batch is decoded again before it is
 * written (batch_seal).
 */
#include "log_internal.h"

#include "logfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *log_strerror(int error)
{
    switch (error) {
    case LOG_ECORRUPT:
        return "log damaged beyond a torn tail";
    case LOG_ENOSPC:
        return "disk full: new appends refused";
    case LOG_EPOISONED:
        return "an earlier write or fdatasync failed; reopen to recover";
    case LOG_ELOCKED:
        return "data directory locked by another process";
    case LOG_EVERSION:
        return "file of an unknown format version";
    case LOG_ETOOBIG:
        return "record larger than a batch";
    default:
        return error < 0 ? strerror(-error) : "success";
    }
}

const char *log_damage_name(enum log_damage_kind kind)
{
    static const char *const names[] = {
        [LOG_DAMAGE_NONE] = "none",
        [LOG_DAMAGE_TORN_TAIL] = "torn_tail",
        [LOG_DAMAGE_BAD_HEADER] = "bad_header",
        [LOG_DAMAGE_BAD_PAYLOAD] = "bad_payload",
        [LOG_DAMAGE_SEQ_GAP] = "seq_gap",
        [LOG_DAMAGE_BAD_CHAIN] = "bad_chain",
        [LOG_DAMAGE_MISSING_SEGMENT] = "missing_segment",
        [LOG_DAMAGE_BAD_SEGMENT_HEADER] = "bad_segment_header",
        [LOG_DAMAGE_BAD_CHECKPOINT] = "bad_checkpoint",
    };
    if ((unsigned)kind >= sizeof(names) / sizeof(names[0]))
        return "unknown";
    return names[kind];
}

void log_config_defaults(struct log_config *config)
{
    memset(config, 0, sizeof(*config));
    config->segment_size_bytes = 64ull * 1024 * 1024;
    config->batch_size_bytes_max = 1024 * 1024;
    config->sync_mode = LOG_SYNC_ALWAYS;
    config->sync_interval_ms = 10;
    config->compress = true;
    config->zero_segments = true;
    config->commits_in_flight = LOG_COMMITS_IN_FLIGHT_MAX;
    config->direct_io = true;
}

uint32_t log_record_footprint(uint32_t len)
{
    return batch_record_footprint(len);
}

uint32_t log_open_room(const struct log *log)
{
    uint32_t capacity = log->open_count == 0 ? log->config.batch_size_bytes_max
                                             : log->open_capacity;
    uint32_t used = BATCH_HEADER_SIZE + (log->open_count == 0 ? 0 : log->open_raw_len);
    SPOOL_ASSERT(capacity >= used);
    return capacity - used;
}

uint32_t log_batch_room_max(const struct log *log)
{
    return log->config.batch_size_bytes_max - BATCH_HEADER_SIZE;
}

int64_t log_now_ns(const struct log *log)
{
    if (log->config.now_ns != NULL)
        return log->config.now_ns(log->config.ctx);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void log_report(struct log *log, uint64_t end, enum log_durability level)
{
    SPOOL_ASSERT(end <= log->next_seq);
    if (log->config.on_durable != NULL)
        log->config.on_durable(log->config.ctx, end, level, 0);
}

void log_poison(struct log *log, int error)
{
    SPOOL_ASSERT(error < 0);
    if (log->error != 0)
        return;
    log->error = error;
    logfmt("error", "msg=\"log poisoned\" error=\"%s\" durable_seq_end=%" PRIu64,
           log_strerror(error), log_durable_seq_end(log));
    if (log->config.on_durable != NULL)
        log->config.on_durable(log->config.ctx, log_durable_seq_end(log), 0, error);
}

/* ---- segments list ---- */

struct log_segment *log_segment_find(const struct log *log, uint64_t segment_id)
{
    uint32_t lo = 0, hi = log->segment_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (log->segments[mid]->id < segment_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < log->segment_count && log->segments[lo]->id == segment_id)
        return log->segments[lo];
    return NULL;
}

int log_segment_add(struct log *log, uint64_t id, uint64_t hash_seed, int fd)
{
    SPOOL_ASSERT(log->segment_count == 0 || log->segments[log->segment_count - 1]->id < id);
    if (log->segment_count == log->segment_capacity) {
        uint32_t cap = log->segment_capacity ? log->segment_capacity * 2 : 16;
        struct log_segment **p = realloc(log->segments, cap * sizeof(*p));
        if (p == NULL)
            return -ENOMEM;
        log->segments = p;
        log->segment_capacity = cap;
    }
    struct log_segment *seg = calloc(1, sizeof(*seg));
    if (seg == NULL)
        return -ENOMEM;
    seg->id = id;
    seg->hash_seed = hash_seed;
    seg->fd = fd;
    seg->log = log;
    log->segments[log->segment_count++] = seg;
    return 0;
}

/* A dropped segment's fd is closed: no read uses its file any more. */
static void log_segment_closed(struct log_segment *seg)
{
    if (seg->id == seg->log->recycle_busy_id)
        seg->log->recycle_busy_id = 0; /* its file may be written again (recycled) */
    free(seg);
}

static void log_segment_close_done(struct io_op *op)
{
    struct log_segment *seg = op->ctx;
    seg->log->closes_pending--;
    log_segment_closed(seg);
}

/* Close a dropped segment's fd once no read uses it. */
void log_segment_release(struct log_segment *seg)
{
    if (!seg->dropped || seg->reads > 0)
        return;
    struct io_op *op = &seg->close_op;
    memset(op, 0, sizeof(*op));
    op->kind = IO_CLOSE;
    op->fd = seg->fd;
    op->done = log_segment_close_done;
    op->ctx = seg;
    seg->log->closes_pending++;
    if (io_submit(seg->log->backend, op) < 0) {
        /* The fd leaks until exit; nothing durable depends on it. */
        seg->log->closes_pending--;
        log_segment_closed(seg);
    }
}

void log_segment_drop(struct log *log, struct log_segment *seg)
{
    SPOOL_ASSERT(seg != log->segments[log->segment_count - 1]);
    uint32_t i = 0;
    while (log->segments[i] != seg)
        i++;
    memmove(&log->segments[i], &log->segments[i + 1],
            (log->segment_count - i - 1) * sizeof(*log->segments));
    log->segment_count--;
    seg->dropped = true;
    log_segment_release(seg);
}

void log_segment_header_build(struct log *log, uint64_t id, uint64_t prev_id, uint64_t prev_hash,
                              uint16_t flags)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    log->roll_header = (struct segment_header){
        .segment_id = id,
        .segment_size = log->config.segment_size_bytes,
        .prev_segment_id = prev_id,
        .prev_last_batch_hash = prev_hash,
        .created_unix_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec,
        .hash_seed = segment_seed_new(),
        .flags = flags,
    };
    segment_header_encode(&log->roll_header, log->segment_block);
}

/* ---- appending ---- */

/* Place the open batch: after the last sealed batch while a whole batch of the largest size
 * and the seal's block still fit in that segment, else at the start of a new segment. Rolling
 * a little early (at most batch_size_bytes_max + 4096 <= 1/4 of a segment + one block is left
 * zero) keeps every batch's capacity the same, so -ENOBUFS means "the batch is full" and
 * never "the segment is". */
static void log_batch_place(struct log *log, uint32_t footprint)
{
    uint32_t batch_max = log->config.batch_size_bytes_max;
    log->open_base_seq = log->next_seq;
    log->open_capacity = batch_max;
    if (log->tail_offset <= log->current_size &&
        log->current_size - log->tail_offset >= (uint64_t)batch_max + BATCH_ALIGN) {
        log->open_segment_id = log->tail_segment_id;
        log->open_offset = log->tail_offset;
    } else {
        log->open_segment_id = log->open_base_seq;
        log->open_offset = SEGMENT_HEADER_SIZE;
    }
    SPOOL_ASSERT(log->open_capacity % BATCH_ALIGN == 0);
    SPOOL_ASSERT(log->open_capacity >= BATCH_HEADER_SIZE + footprint);
}

static int log_append_at(struct log *log, uint8_t type, const void *data, uint32_t len,
                         struct log_pos *pos, bool lazy)
{
    SPOOL_ASSERT(log != NULL);
    SPOOL_ASSERT(data != NULL || len == 0);
    if (log->error != 0)
        return log->error;
    if (log->enospc)
        return LOG_ENOSPC;
    if (len > log->record_len_max)
        return LOG_ETOOBIG;
    uint32_t footprint = batch_record_footprint(len);
    if (log->open_count == 0) {
        log_batch_place(log, footprint);
    } else if ((uint64_t)BATCH_HEADER_SIZE + log->open_raw_len + footprint > log->open_capacity) {
        log->open_full = true; /* someone waits for room: commit now, lazy or not */
        return -ENOBUFS;
    }
    if (!lazy)
        log->open_urgent++;
    else if (log->open_urgent == 0 && log->open_lazy_deadline_ns == INT64_MAX)
        log->open_lazy_deadline_ns = log_now_ns(log) + LOG_LAZY_MAX_NS;
    log->open_raw_len = batch_record_put(log->open_buf + BATCH_HEADER_SIZE, log->open_raw_len,
                                         type, data, len);
    log->open_count++;
    if (pos != NULL) {
        pos->seq = log->next_seq;
        pos->segment_id = log->open_segment_id;
        pos->batch_offset = log->open_offset;
    }
    log->next_seq++;
    return 0;
}

int log_append(struct log *log, uint8_t type, const void *data, uint32_t len,
               struct log_pos *pos)
{
    return log_append_at(log, type, data, len, pos, false);
}

int log_append_lazy(struct log *log, uint8_t type, const void *data, uint32_t len,
                    struct log_pos *pos)
{
    return log_append_at(log, type, data, len, pos, true);
}

/* A commit may start now: nothing in flight, or (always mode) a free flight slot, no roll
 * running, and the open batch goes into the current segment (a roll waits for the rest). */
static bool log_commit_can_start(const struct log *log)
{
    if (log->step == COMMIT_IDLE)
        return true;
    return log->step == COMMIT_WRITE && log->config.sync_mode == LOG_SYNC_ALWAYS &&
           log->flight_count < log->config.commits_in_flight &&
           log->open_segment_id == log->tail_segment_id;
}

/* The open batch should be committed now: someone waits for one of its records (or for room
 * in it, or for the log to close), or its oldest lazy record has waited long enough. */
static bool log_commit_wanted(const struct log *log)
{
    if (log->open_count == 0 || log->error != 0 || !log_commit_can_start(log))
        return false;
    return log->open_urgent > 0 || log->open_full || log->closing ||
           log_now_ns(log) >= log->open_lazy_deadline_ns;
}

/* ---- the commit chain ---- */

static void log_roll_step(struct log *log);
static void log_roll_enospc(struct log *log);

/* The roll's first step after the old segment is durable: into the spare when one is ready
 * (no new space needed), else make the file. */
static enum log_commit_step log_roll_first(struct log *log)
{
    log->roll_written = 0;
    /* A recycled spare only under a header that says so (log_spare_roll_flags: a header
     * without the flag was built for a fresh spare that is still ready). */
    bool recycled_ok = (log->roll_header.flags & SEGMENT_FLAG_RECYCLED) != 0;
    log->roll_from_spare = log_spare_take(log, recycled_ok);
    return log->roll_from_spare ? COMMIT_ROLL_HEADER : COMMIT_ROLL_OPEN;
}

static void log_op_prepare(struct log *log, struct io_op *op, enum io_op_kind kind, int fd)
{
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    op->fd = fd;
    op->ctx = log;
}

static void log_flight_write_done(struct io_op *op);
static void log_flight_sync_done(struct io_op *op);
static void log_flights_land(struct log *log);

/* What runs now beside the log's commits. */
static uint32_t log_overlap_now(const struct log *log)
{
    uint32_t overlap = 0;
    if (log->spare_state == SPARE_ZERO || log->spare_state == SPARE_ZERO_SYNC)
        overlap |= LOG_OVERLAP_SPARE_ZERO;
    else if (log_spare_busy(log))
        overlap |= LOG_OVERLAP_SPARE;
    if (log->ckpt_step != CKPT_IDLE)
        overlap |= LOG_OVERLAP_CHECKPOINT;
    if (log->reads_active > 0)
        overlap |= LOG_OVERLAP_READ;
    return overlap;
}

/* The i-th flight from the oldest (i may be flight_count: the slot the next commit takes). */
static struct log_flight *log_flight_at(struct log *log, uint32_t i)
{
    SPOOL_ASSERT(i <= log->flight_count && i < LOG_FLIGHTS_MAX);
    return &log->flights[(log->flight_head + i) % LOG_FLIGHTS_MAX];
}

void log_overlap_note(struct log *log, enum log_overlap what)
{
    for (uint32_t i = 0; i < log->flight_count; i++)
        log_flight_at(log, i)->overlap |= (uint32_t)what;
}

/* A flight landed duration_ns after its commit started: into the histogram, and by cause
 * when slow. */
static void log_commit_count(struct log *log, const struct log_flight *flight,
                             int64_t duration_ns)
{
    struct log_commit_stats *st = &log->commit_stats;
    uint64_t us = duration_ns > 0 ? (uint64_t)duration_ns / 1000 : 0;
    uint32_t bucket = 0;
    while (us > 0 && bucket < LOG_COMMIT_HIST_BUCKETS - 1) {
        us >>= 1;
        bucket++;
    }
    st->hist[bucket]++;
    st->commits++;
    st->total_ns += duration_ns > 0 ? (uint64_t)duration_ns : 0;
    if (duration_ns > st->max_ns)
        st->max_ns = duration_ns;
    if (duration_ns < LOG_COMMIT_SLOW_NS)
        return;
    uint32_t o = flight->overlap;
    st->slow++;
    st->slow_roll += (o & LOG_OVERLAP_ROLL) != 0;
    st->slow_spare_zero += (o & LOG_OVERLAP_SPARE_ZERO) != 0;
    st->slow_spare += (o & LOG_OVERLAP_SPARE) != 0;
    st->slow_checkpoint += (o & LOG_OVERLAP_CHECKPOINT) != 0;
    st->slow_read += (o & LOG_OVERLAP_READ) != 0;
}

const struct log_commit_stats *log_commit_stats(const struct log *log)
{
    SPOOL_ASSERT(log != NULL);
    return &log->commit_stats;
}

/* The upper bound (µs) of the histogram bucket that holds the q-quantile (per mille). */
static uint64_t log_commit_quantile_us(const struct log_commit_stats *st, uint32_t per_mille)
{
    uint64_t rank = (st->commits * per_mille + 999) / 1000;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < LOG_COMMIT_HIST_BUCKETS; i++) {
        seen += st->hist[i];
        if (seen >= rank && seen > 0)
            return 1ull << i;
    }
    return 1ull << (LOG_COMMIT_HIST_BUCKETS - 1);
}

static void log_commit_stats_print(const struct log *log)
{
    const struct log_commit_stats *st = &log->commit_stats;
    if (st->commits == 0)
        return;
    logfmt("info", "msg=\"commit timings\" commits=%" PRIu64 " mean_us=%" PRIu64
           " p50_us_le=%" PRIu64 " p99_us_le=%" PRIu64 " p999_us_le=%" PRIu64 " max_us=%" PRId64
           " slow_ms_ge=%lld slow=%" PRIu64 " slow_roll=%" PRIu64 " slow_spare_zero=%" PRIu64
           " slow_spare=%" PRIu64 " slow_checkpoint=%" PRIu64 " slow_read=%" PRIu64
           " spares_zeroed=%" PRIu64 " spares_reused=%" PRIu64 " commit_io=%s"
           " direct_fallbacks=%" PRIu64,
           st->commits, st->total_ns / st->commits / 1000, log_commit_quantile_us(st, 500),
           log_commit_quantile_us(st, 990), log_commit_quantile_us(st, 999), st->max_ns / 1000,
           LOG_COMMIT_SLOW_NS / 1000000, st->slow, st->slow_roll, st->slow_spare_zero,
           st->slow_spare, st->slow_checkpoint, st->slow_read, st->spares_zeroed,
           st->spares_reused,
           log->config.sync_mode != LOG_SYNC_ALWAYS ? "buffered"
           : log->direct_refused                     ? "buffered+fdatasync"
                                                     : "direct",
           st->direct_fallbacks);
}

/* The newest flight: the batch log_commit_start sealed last. */
static struct log_flight *log_flight_newest(struct log *log)
{
    SPOOL_ASSERT(log->flight_count > 0);
    return log_flight_at(log, log->flight_count - 1);
}

static void log_direct_close(struct log *log)
{
    if (log->direct_fd >= 0)
        io_backend_close_direct(log->backend, log->direct_fd);
    log->direct_fd = -1;
}

/* The fd the always mode commits to the current segment through with direct I/O, opened at
 * the segment's first commit (the old segment's closed: a roll waits for no flights); -1 when
 * commits are buffered. Opening is one cheap synchronous syscall per segment. A file system
 * without O_DIRECT (EINVAL) turns direct I/O off for good; any other failure (out of fds or
 * memory) only for the rest of this segment: the next one tries again. */
static int log_direct_fd(struct log *log, const struct log_segment *current)
{
    if (log->direct_refused)
        return -1;
    if (log->direct_segment_id == current->id)
        return log->direct_fd; /* -1 after a failed open: buffered until the next segment */
    log_direct_close(log);
    log->direct_segment_id = current->id;
    char name[IO_PATH_MAX];
    segment_name(current->id, name);
    int fd = io_backend_open_direct(log->backend, name);
    if (fd == -EINVAL || fd == -EOPNOTSUPP) {
        log->direct_refused = true;
        logfmt("info", "msg=\"commits use buffered writes and fdatasync: no direct I/O here\" "
                       "segment=%" PRIu64 " error=\"%s\"", current->id, strerror(-fd));
        return -1;
    }
    if (fd < 0) {
        log->commit_stats.direct_fallbacks++;
        logfmt("warn", "msg=\"direct I/O open failed: this segment's commits use buffered "
                       "writes and fdatasync, the next segment tries again\" segment=%" PRIu64
                       " error=\"%s\"", current->id, strerror(-fd));
        return -1;
    }
    log->direct_fd = fd;
    return fd;
}

/* Write the flight's batch (the rest of it, after a short write). In the always mode the
 * batch is durable when its write completes: one RWF_DSYNC write through the direct fd, or
 * (without direct I/O) a buffered write linked to an fdatasync. Not one buffered RWF_DSYNC
 * write: io_uring runs buffered writes to one file one after another on one worker, so each
 * would hold the next commit's write behind its flush; direct writes and fdatasyncs run side
 * by side, which is what lets a second commit overlap the first. */
static void log_flight_submit(struct log *log, struct log_flight *flight)
{
    struct log_segment *current = log->segments[log->segment_count - 1];
    SPOOL_ASSERT(current->id == flight->header.segment_id);
    uint32_t total = flight->header.total_len;
    SPOOL_ASSERT(flight->written < total);
    bool always = log->config.sync_mode == LOG_SYNC_ALWAYS;
    int direct_fd = always ? log_direct_fd(log, current) : -1;
    flight->syncing = always && direct_fd < 0;
    flight->write_result = 0;
    log->step = COMMIT_WRITE;
    log_op_prepare(log, &flight->write_op, IO_WRITE, direct_fd >= 0 ? direct_fd : current->fd);
    flight->write_op.ctx = flight;
    flight->write_op.buf = flight->buf + flight->written;
    flight->write_op.len = total - flight->written;
    flight->write_op.offset = flight->offset + flight->written;
    flight->write_op.flags = flight->syncing ? IO_OP_LINK : direct_fd >= 0 ? IO_OP_DSYNC : 0;
    flight->write_op.done = log_flight_write_done;
    int rc = io_submit(log->backend, &flight->write_op);
    if (rc < 0) {
        /* Nothing of it is out: it lands at once, unreported (the log is poisoned). */
        log_poison(log, rc);
        flight->landed = true;
        log_flights_land(log);
        return;
    }
    if (!flight->syncing)
        return;
    log_op_prepare(log, &flight->sync_op, IO_FDATASYNC, current->fd);
    flight->sync_op.ctx = flight;
    flight->sync_op.done = log_flight_sync_done;
    rc = io_submit(log->backend, &flight->sync_op);
    if (rc < 0) {
        /* The write is out and completes alone; the poisoned log reports nothing of it. */
        flight->syncing = false;
        log_poison(log, rc);
    }
}

/* The oldest flights that are written (and synced) land in log order: the watermarks move,
 * on_commit and on_durable hear of them. */
static void log_flights_land(struct log *log)
{
    bool always = log->config.sync_mode == LOG_SYNC_ALWAYS;
    while (log->flight_count > 0 && log->flights[log->flight_head].landed) {
        struct log_flight *flight = &log->flights[log->flight_head];
        flight->landed = false;
        log->flight_head = (log->flight_head + 1) % LOG_FLIGHTS_MAX;
        log->flight_count--;
        if (log->flight_count == 0)
            log->step = COMMIT_IDLE;
        if (log->error != 0)
            continue; /* poisoned: nothing more is reported */
        uint64_t end = flight->header.base_seq + flight->header.record_count;
        SPOOL_ASSERT(end > log->written_end);
        log->written_end = end;
        log->written_offset = flight->offset + flight->header.total_len;
        if (always) {
            log->synced_end = end;
            log->synced_offset = log->written_offset;
            log->last_sync_ns = log_now_ns(log);
        }
        int64_t duration_ns = log_now_ns(log) - flight->started_ns;
        log_commit_count(log, flight, duration_ns);
        if (log->config.on_commit != NULL)
            log->config.on_commit(log->config.ctx, flight->header.record_count,
                                  flight->header.total_len, duration_ns);
        log_report(log, end, always ? LOG_DURABLE_SYNCED : LOG_DURABLE_WRITTEN);
    }
    /* Group commit: what gathered meanwhile goes out now. */
    if (log_commit_wanted(log))
        log_commit_start(log);
}

/* The flight's write (and its fdatasync, if any) completed with write result written: land
 * it, write the rest of a short write, or poison the log. */
static void log_flight_finish(struct log *log, struct log_flight *flight, int64_t written,
                              int sync_result)
{
    if (written <= 0 || (sync_result < 0 && sync_result != -ECANCELED)) {
        log_poison(log, written < 0 ? (int)written : sync_result < 0 ? sync_result : -EIO);
    } else if (log->error == 0) {
        flight->written += (uint32_t)written;
        if (flight->written < flight->header.total_len) {
            /* Short write (its linked fdatasync was cancelled): write the rest, and sync. */
            log_flight_submit(log, flight);
            return;
        }
        if (sync_result < 0)
            log_poison(log, sync_result); /* the whole batch written, its sync never ran */
    }
    flight->landed = true;
    log_flights_land(log);
}

static void log_flight_write_done(struct io_op *op)
{
    struct log_flight *flight = op->ctx;
    flight->write_result = op->result;
    if (!flight->syncing)
        log_flight_finish(flight->log, flight, op->result, 0);
    /* else the linked fdatasync completes next (or is cancelled) and finishes the flight */
}

static void log_flight_sync_done(struct io_op *op)
{
    struct log_flight *flight = op->ctx;
    log_flight_finish(flight->log, flight, flight->write_result, (int)op->result);
}

/* At a roll, before the tail moves: remember where the old segment's seal goes. */
static void log_seal_prepare(struct log *log)
{
    log->seal_segment_id = log->tail_segment_id;
    log->seal_offset = log->tail_offset;
    log->seal_prev_hash = log->last_batch_hash;
    log->seal_seed = log->tail_seed;
    /* Placement keeps a block free in every segment this build writes; a segment adopted
     * from an older build may be full, and then stays unsealed. */
    log->seal_wanted = log->tail_offset <= log->current_size &&
                       log->current_size - log->tail_offset >= BATCH_ALIGN;
}

void log_commit_start(struct log *log)
{
    SPOOL_ASSERT(log_commit_can_start(log));
    SPOOL_ASSERT(log->open_count > 0);
    struct log_flight *flight = log_flight_at(log, log->flight_count);
    SPOOL_ASSERT(!flight->landed);
    log->flight_count++;
    flight->started_ns = log_now_ns(log);
    bool roll = log->open_segment_id != log->tail_segment_id;
    SPOOL_ASSERT(!roll || log->flight_count == 1);
    flight->overlap = log_overlap_now(log) | (roll ? LOG_OVERLAP_ROLL : 0);
    uint64_t prev_hash = log->last_batch_hash;
    uint64_t seed = log->tail_seed;
    uint64_t synced_offset = log->synced_offset;
    if (roll) {
        log_segment_header_build(log, log->open_segment_id, log->tail_segment_id, prev_hash,
                                 log_spare_roll_flags(log));
        log_seal_prepare(log);
        prev_hash = log->roll_header.header_hash;
        seed = log->roll_header.hash_seed;
        synced_offset = SEGMENT_HEADER_SIZE; /* the new segment's header is synced first */
    }
    SPOOL_ASSERT(synced_offset <= log->open_offset);
    struct batch_seal_args args = {
        .base_seq = log->open_base_seq,
        .segment_id = log->open_segment_id,
        .prev_batch_hash = prev_hash,
        .record_count = log->open_count,
        .raw_len = log->open_raw_len,
        .hash_seed = seed,
        .synced_offset = synced_offset,
        .flags = log->config.sync_mode == LOG_SYNC_ALWAYS ? 0 : BATCH_FLAG_UNSYNCED,
        .compress = log->config.compress,
        .gate = &log->lz4_gate,
    };
    uint8_t *out;
    batch_seal(log->open_buf, flight->buf, log->config.batch_size_bytes_max, &args, &out,
               &flight->header);
    if (out == log->open_buf) {
        log->open_buf = flight->buf;
        flight->buf = out;
    }
    SPOOL_ASSERT(flight->header.total_len <= log->open_capacity);
    flight->offset = log->open_offset;
    flight->written = 0;
    log->last_batch_hash = flight->header.header_hash;
    log->tail_segment_id = log->open_segment_id;
    log->tail_seed = seed;
    if (roll)
        log->current_size = log->config.segment_size_bytes;
    log->tail_offset = log->open_offset + flight->header.total_len;
    log->open_count = 0;
    log->open_raw_len = 0;
    log->open_urgent = 0;
    log->open_full = false;
    log->open_lazy_deadline_ns = INT64_MAX;
    if (!roll) {
        log_flight_submit(log, flight);
        return;
    }
    bool unsynced = log->synced_end < log->written_end;
    log->step = unsynced ? COMMIT_ROLL_SYNC_OLD : log_roll_first(log);
    log->roll_sync_target = log->written_end;
    log_roll_step(log);
}

/* ---- rolling to a new segment ---- */

static void log_roll_done(struct io_op *op);

/* A roll step failed: the log is poisoned, and the roll's batch (the only flight) is dropped
 * unwritten and unreported. */
static void log_roll_fail(struct log *log, int error)
{
    SPOOL_ASSERT(log->flight_count == 1);
    log->flight_count = 0;
    log->step = COMMIT_IDLE;
    log_poison(log, error);
}

static void log_roll_submit(struct log *log, enum io_op_kind kind, int fd)
{
    log_op_prepare(log, &log->roll_op, kind, fd);
    log->roll_op.done = log_roll_done;
    uint64_t id = log->roll_header.segment_id;
    switch (kind) {
    case IO_OPEN:
        segment_name(id, log->roll_op.path);
        log->roll_op.open_flags = O_RDWR | O_CREAT | O_EXCL;
        log->roll_op.mode = 0640;
        break;
    case IO_UNLINK:
        segment_name(id, log->roll_op.path);
        break;
    case IO_RENAME:
        strcpy(log->roll_op.path, LOG_SPARE_NAME);
        segment_name(id, log->roll_op.path2);
        break;
    case IO_FALLOCATE:
        log->roll_op.offset = 0;
        log->roll_op.len = log->roll_header.segment_size;
        break;
    case IO_WRITE:
        /* The new segment's header at 0, or the old segment's seal (durable on completion). */
        log->roll_op.buf = log->segment_block + log->roll_written;
        log->roll_op.len = SEGMENT_HEADER_SIZE - log->roll_written;
        log->roll_op.offset = log->roll_written;
        if (log->step == COMMIT_ROLL_SEAL) {
            log->roll_op.offset += log->seal_offset;
            log->roll_op.flags = IO_OP_DSYNC;
        }
        break;
    default:
        break;
    }
    int rc = io_submit(log->backend, &log->roll_op);
    if (rc < 0)
        log_roll_fail(log, rc);
}

/* Submit the op of the current roll step. */
static void log_roll_step(struct log *log)
{
    struct log_segment *current = log->segments[log->segment_count - 1];
    switch (log->step) {
    case COMMIT_ROLL_SYNC_OLD:
        log_roll_submit(log, IO_FDATASYNC, current->fd);
        break;
    case COMMIT_ROLL_OPEN: {
        char msg[160];
        if (log_space_check(log, log->roll_header.segment_size, msg, sizeof(msg)) == -ENOSPC) {
            log_roll_enospc(log);
            break;
        }
        log->roll_written = 0;
        log_roll_submit(log, IO_OPEN, -1);
        break;
    }
    case COMMIT_ROLL_SEAL: {
        struct log_segment *old = log_segment_find(log, log->seal_segment_id);
        SPOOL_ASSERT(old != NULL); /* a checkpoint never drops the segment before the current */
        log_roll_submit(log, IO_WRITE, old->fd);
        break;
    }
    case COMMIT_ROLL_RENAME:
        log_roll_submit(log, IO_RENAME, -1);
        break;
    case COMMIT_ROLL_FALLOCATE:
        log_roll_submit(log, IO_FALLOCATE, log->roll_fd);
        break;
    case COMMIT_ROLL_HEADER:
        log_roll_submit(log, IO_WRITE, log->roll_fd);
        break;
    case COMMIT_ROLL_HEADER_SYNC:
        log_roll_submit(log, IO_FDATASYNC, log->roll_fd);
        break;
    case COMMIT_ROLL_DIR_SYNC:
        log_roll_submit(log, IO_FSYNC_DIR, -1);
        break;
    case COMMIT_ROLL_UNDO_CLOSE:
        log_roll_submit(log, IO_CLOSE, log->roll_fd);
        break;
    case COMMIT_ROLL_UNDO_UNLINK:
        log_roll_submit(log, IO_UNLINK, -1);
        break;
    default:
        SPOOL_ASSERT(!"not a roll step");
    }
}

static bool log_is_enospc(int64_t rc)
{
    return rc == -ENOSPC || rc == -EDQUOT;
}

int log_space_check(struct log *log, uint64_t bytes, char *msg, size_t len)
{
    uint64_t free_bytes = 0;
    int rc = io_backend_space(log->backend, &free_bytes);
    if (rc < 0 || free_bytes >= bytes)
        return 0; /* cannot tell: the preallocation itself reports ENOSPC */
    snprintf(msg, len, "not enough free disk space for a segment of %" PRIu64 " bytes: %" PRIu64
             " bytes available", bytes, free_bytes);
    return -ENOSPC;
}

/* The disk is full: undo the half-made segment (if any) and wait to retry. */
static void log_roll_enospc(struct log *log)
{
    if (!log->enospc)
        logfmt("warn", "msg=\"disk full: cannot create segment\" segment=%" PRIu64,
               log->roll_header.segment_id);
    log->enospc = true;
    if (log->roll_from_spare) {
        /* The undo unlinks the segment's name; the spare's file keeps its own and the next
         * spare reuses it (O_TRUNC). */
        log->roll_from_spare = false;
        log->spare_retry_ns = log_now_ns(log) + LOG_ENOSPC_RETRY_NS;
    }
    if (log->roll_fd >= 0) {
        log->step = COMMIT_ROLL_UNDO_CLOSE;
        log_roll_step(log);
        return;
    }
    log->step = COMMIT_ENOSPC_WAIT;
    log->enospc_retry_ns = log_now_ns(log) + LOG_ENOSPC_RETRY_NS;
}

/* The new segment's header is durable and named: it becomes the current segment; the old one
 * is sealed (when it has room) before the first batch goes into the new one. */
static void log_roll_finish(struct log *log)
{
    int rc = log_segment_add(log, log->roll_header.segment_id, log->roll_header.hash_seed,
                             log->roll_fd);
    if (rc < 0) {
        log_roll_fail(log, rc);
        return;
    }
    log->roll_fd = -1;
    log->enospc = false;
    if (log->roll_from_spare) {
        log->roll_from_spare = false;
        log->spare_retry_ns = 0; /* renamed: the next tick makes a new spare */
    }
    log->written_offset = SEGMENT_HEADER_SIZE;
    log->synced_offset = SEGMENT_HEADER_SIZE;
    if (!log->seal_wanted) {
        log_flight_submit(log, log_flight_newest(log));
        return;
    }
    struct batch_header seal;
    batch_seal_marker(log->segment_block, log->seal_segment_id, log->seal_seed,
                      log->roll_header.segment_id, log->seal_prev_hash, &seal);
    log->roll_written = 0;
    log->step = COMMIT_ROLL_SEAL;
    log_roll_step(log);
}

/* A roll step succeeded with result rc: go on to the next one. */
static void log_roll_advance(struct log *log, int64_t rc)
{
    switch (log->step) {
    case COMMIT_ROLL_SYNC_OLD:
        if (log->roll_sync_target > log->synced_end) {
            log->synced_end = log->roll_sync_target;
            log_report(log, log->synced_end, LOG_DURABLE_SYNCED);
        }
        log->step = log_roll_first(log);
        break;
    case COMMIT_ROLL_OPEN:
        log->roll_fd = (int)rc;
        log->step = COMMIT_ROLL_FALLOCATE;
        break;
    case COMMIT_ROLL_FALLOCATE:
        log->step = COMMIT_ROLL_HEADER;
        break;
    case COMMIT_ROLL_HEADER:
        log->roll_written += (uint32_t)rc;
        if (log->roll_written == SEGMENT_HEADER_SIZE)
            log->step = COMMIT_ROLL_HEADER_SYNC;
        break;
    case COMMIT_ROLL_HEADER_SYNC:
        log->step = log->roll_from_spare ? COMMIT_ROLL_RENAME : COMMIT_ROLL_DIR_SYNC;
        break;
    case COMMIT_ROLL_RENAME:
        log->step = COMMIT_ROLL_DIR_SYNC;
        break;
    case COMMIT_ROLL_DIR_SYNC:
        log_roll_finish(log);
        return;
    case COMMIT_ROLL_SEAL:
        log->roll_written += (uint32_t)rc;
        if (log->roll_written < BATCH_ALIGN)
            break; /* a short write: the rest of the block */
        log_flight_submit(log, log_flight_newest(log));
        return;
    case COMMIT_ROLL_UNDO_CLOSE:
        log->roll_fd = -1;
        log->step = COMMIT_ROLL_UNDO_UNLINK;
        break;
    case COMMIT_ROLL_UNDO_UNLINK:
        log->step = COMMIT_ENOSPC_WAIT;
        log->enospc_retry_ns = log_now_ns(log) + LOG_ENOSPC_RETRY_NS;
        return;
    default:
        SPOOL_ASSERT(!"roll completion in a non-roll step");
    }
    log_roll_step(log);
}

static void log_roll_done(struct io_op *op)
{
    struct log *log = op->ctx;
    int64_t rc = op->result;
    enum log_commit_step step = log->step;
    bool makes_space = step == COMMIT_ROLL_OPEN || step == COMMIT_ROLL_FALLOCATE ||
                       step == COMMIT_ROLL_HEADER;
    if (makes_space && log_is_enospc(rc)) {
        log_roll_enospc(log);
        return;
    }
    if (step == COMMIT_ROLL_FALLOCATE && rc == -EOPNOTSUPP)
        rc = 0; /* a file system without fallocate still works, it only commits slower */
    if (step == COMMIT_ROLL_UNDO_CLOSE || (step == COMMIT_ROLL_UNDO_UNLINK && rc == -ENOENT))
        rc = 0; /* the half-made file held nothing */
    if ((step == COMMIT_ROLL_HEADER || step == COMMIT_ROLL_SEAL) && rc == 0)
        rc = -EIO; /* a write that makes no progress would loop forever */
    if (rc < 0) {
        log_roll_fail(log, (int)rc);
        return;
    }
    log_roll_advance(log, rc);
}

/* ---- the interval sync ---- */

static void log_isync_done(struct io_op *op)
{
    struct log *log = op->ctx;
    log->isync_active = false;
    if (op->result < 0) {
        log_poison(log, (int)op->result);
        return;
    }
    if (log->isync_segment_id == log->tail_segment_id &&
        log->isync_offset_target > log->synced_offset)
        log->synced_offset = log->isync_offset_target;
    if (log->isync_target > log->synced_end) {
        log->synced_end = log->isync_target;
        log_report(log, log->synced_end, LOG_DURABLE_SYNCED);
    }
}

static void log_isync_start(struct log *log, int64_t now)
{
    struct log_segment *current = log->segments[log->segment_count - 1];
    log_op_prepare(log, &log->isync_op, IO_FDATASYNC, current->fd);
    log->isync_op.done = log_isync_done;
    log->isync_target = log->written_end;
    log->isync_segment_id = current->id;
    log->isync_offset_target = log->written_offset;
    log->last_sync_ns = now;
    log->isync_active = true;
    int rc = io_submit(log->backend, &log->isync_op);
    if (rc < 0) {
        log->isync_active = false;
        log_poison(log, rc);
    }
}

static int64_t log_isync_deadline(const struct log *log)
{
    if (log->config.sync_mode != LOG_SYNC_INTERVAL || log->isync_active ||
        log->synced_end >= log->written_end)
        return INT64_MAX;
    return log->last_sync_ns + (int64_t)log->config.sync_interval_ms * 1000000;
}

void log_tick(struct log *log)
{
    SPOOL_ASSERT(log != NULL);
    if (log->error != 0)
        return;
    int64_t now = log_now_ns(log);
    log_spare_tick(log, now);
    if (log->step == COMMIT_ENOSPC_WAIT && now >= log->enospc_retry_ns) {
        log->step = log_roll_first(log);
        log_roll_step(log);
    }
    if (log_commit_wanted(log))
        log_commit_start(log);
    if (log->error == 0 && now >= log_isync_deadline(log))
        log_isync_start(log, now);
}

int64_t log_next_deadline_ns(const struct log *log)
{
    int64_t deadline = log_isync_deadline(log);
    if (log->step == COMMIT_ENOSPC_WAIT && log->enospc_retry_ns < deadline)
        deadline = log->enospc_retry_ns;
    int64_t spare = log_spare_deadline_ns(log);
    if (spare < deadline)
        deadline = spare;
    if (log_commit_can_start(log) && log->open_lazy_deadline_ns < deadline)
        deadline = log->open_lazy_deadline_ns;
    return log->error != 0 ? INT64_MAX : deadline;
}

/* ---- accessors ---- */

uint64_t log_next_seq(const struct log *log)
{
    return log->next_seq;
}

uint64_t log_durable_seq_end(const struct log *log)
{
    return log->config.sync_mode == LOG_SYNC_ALWAYS ? log->synced_end : log->written_end;
}

bool log_idle(const struct log *log)
{
    return log->open_count == 0 && log->step == COMMIT_IDLE && !log->isync_active &&
           log->ckpt_step == CKPT_IDLE && log->reads_active == 0 && log->closes_pending == 0 &&
           !log_spare_busy(log);
}

int log_error(const struct log *log)
{
    return log->error;
}

uint32_t log_segment_count(const struct log *log)
{
    return log->segment_count;
}

uint64_t log_segment_id(const struct log *log, uint32_t index)
{
    SPOOL_ASSERT(index < log->segment_count);
    return log->segments[index]->id;
}

uint64_t log_current_segment_id(const struct log *log)
{
    SPOOL_ASSERT(log->segment_count > 0);
    return log->segments[log->segment_count - 1]->id;
}

/* ---- open and close ---- */

static int log_config_check(const struct log_config *c)
{
    if (c->segment_size_bytes < SEGMENT_SIZE_MIN || c->segment_size_bytes > SEGMENT_SIZE_MAX ||
        c->segment_size_bytes % BATCH_ALIGN != 0)
        return -EINVAL;
    if (c->batch_size_bytes_max < 2 * BATCH_ALIGN || c->batch_size_bytes_max % BATCH_ALIGN != 0 ||
        c->batch_size_bytes_max > c->segment_size_bytes / 4 ||
        c->batch_size_bytes_max > BATCH_TOTAL_BYTES_LIMIT)
        return -EINVAL;
    if (c->sync_mode != LOG_SYNC_ALWAYS && c->sync_mode != LOG_SYNC_INTERVAL &&
        c->sync_mode != LOG_SYNC_NONE)
        return -EINVAL;
    if (c->sync_mode == LOG_SYNC_INTERVAL && c->sync_interval_ms == 0)
        return -EINVAL;
    if (c->commits_in_flight < 1 || c->commits_in_flight > LOG_COMMITS_IN_FLIGHT_MAX)
        return -EINVAL;
    return 0;
}

static void log_free(struct log *log)
{
    for (uint32_t i = 0; i < log->segment_count; i++) {
        if (log->segments[i]->fd >= 0) {
            int rc = io_sync_simple(log->backend, IO_CLOSE, log->segments[i]->fd);
            (void)rc; /* data fds were fdatasync'ed (or the log is poisoned) before this */
        }
        free(log->segments[i]);
    }
    log_direct_close(log);
    if (log->roll_fd >= 0) {
        int rc = io_sync_simple(log->backend, IO_CLOSE, log->roll_fd);
        (void)rc; /* a segment the log never used */
    }
    if (log->spare_fd >= 0) {
        int rc = io_sync_simple(log->backend, IO_CLOSE, log->spare_fd);
        (void)rc; /* the spare holds nothing; the next run reuses its file */
    }
    if (log->ckpt_fd >= 0) {
        int rc = io_sync_simple(log->backend, IO_CLOSE, log->ckpt_fd);
        (void)rc; /* a failed checkpoint's temp file, whose close could not be queued */
    }
    for (uint32_t i = 0; i < LOG_READS_MAX; i++)
        free(log->reads[i].buf);
    log_checkpoint_free(log);
    free(log->segments);
    free(log->open_buf);
    for (uint32_t i = 0; i < LOG_FLIGHTS_MAX; i++)
        free(log->flights[i].buf);
    free(log->segment_block);
    free(log->zero_chunk);
    free(log->read_scratch);
    free(log);
}

static int log_alloc(const struct log_config *config, struct io_backend *backend,
                     struct log **out)
{
    struct log *log = calloc(1, sizeof(*log));
    if (log == NULL)
        return -ENOMEM;
    log->config = *config;
    log->backend = backend;
    log->roll_fd = -1;
    log->direct_fd = -1;
    log->direct_refused = !config->direct_io;
    log->spare_fd = -1;
    log->ckpt_fd = -1;
    log->open_lazy_deadline_ns = INT64_MAX;
    log->record_len_max =
        config->batch_size_bytes_max - BATCH_HEADER_SIZE - BATCH_RECORD_HEADER_SIZE;
    log->open_buf = aligned_alloc(BATCH_ALIGN, config->batch_size_bytes_max);
    log->segment_block = aligned_alloc(BATCH_ALIGN, SEGMENT_HEADER_SIZE);
    log->zero_chunk = calloc(1, LOG_ZERO_CHUNK_BYTES);
    bool flights_ok = true;
    for (uint32_t i = 0; i < LOG_FLIGHTS_MAX; i++) {
        log->flights[i].log = log;
        log->flights[i].buf = aligned_alloc(BATCH_ALIGN, config->batch_size_bytes_max);
        flights_ok = flights_ok && log->flights[i].buf != NULL;
    }
    if (log->open_buf == NULL || !flights_ok || log->segment_block == NULL ||
        log->zero_chunk == NULL) {
        log_free(log);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < LOG_READS_MAX; i++)
        log->reads[i].log = log;
    *out = log;
    return 0;
}

int log_open(const struct log_config *config, struct io_backend *backend,
             int (*replay)(void *ctx, const struct log_record *record), void *replay_ctx,
             void **checkpoint, uint32_t *checkpoint_len, struct log_recovery_report *report,
             struct log **out)
{
    SPOOL_ASSERT(config != NULL && backend != NULL && out != NULL);
    struct log_recovery_report local_report;
    if (report == NULL)
        report = &local_report;
    memset(report, 0, sizeof(*report));
    if (checkpoint != NULL)
        *checkpoint = NULL;
    if (checkpoint_len != NULL)
        *checkpoint_len = 0;
    int rc = log_config_check(config);
    if (rc < 0)
        return rc;
    rc = backend->ops->lock(backend);
    if (rc == -EWOULDBLOCK)
        return LOG_ELOCKED;
    if (rc < 0)
        return rc;
    struct log *log;
    rc = log_alloc(config, backend, &log);
    if (rc < 0)
        return rc;
    rc = log_recover(log, replay, replay_ctx, checkpoint, checkpoint_len, report);
    if (rc != 0) {
        log_free(log);
        return rc;
    }
    log->last_sync_ns = log_now_ns(log);
    *out = log;
    return 0;
}

/* Poll until the engine has nothing pending or in flight (or cannot make progress). */
static void log_drain(struct log *log)
{
    while (true) {
        log_tick(log);
        /* The disk is full: the commit waiting for a new segment cannot become durable now
         * (nor ever, once the log is poisoned: log_tick retries nothing then), but every
         * other op in flight (reads, a checkpoint, closes) must still complete before the
         * log that owns their io_ops is freed. */
        bool stuck = log->step == COMMIT_ENOSPC_WAIT &&
                     (log->error != 0 || log_now_ns(log) < log->enospc_retry_ns);
        bool busy = (log->step != COMMIT_IDLE && !stuck) || log->isync_active ||
                    log->ckpt_step != CKPT_IDLE || log->reads_active > 0 ||
                    log->closes_pending > 0 || log_spare_busy(log) ||
                    (log->open_count > 0 && log->error == 0 && !stuck);
        if (!busy)
            break;
        int rc = io_backend_poll(log->backend, true);
        if (rc < 0 && rc != -EINTR) {
            log_poison(log, rc);
            break;
        }
        /* Busy with nothing in flight would spin forever: every step keeps an op out. */
        SPOOL_ASSERT(rc != 0 || log->backend->ops->in_flight(log->backend) > 0);
    }
}

int log_close(struct log *log)
{
    if (log == NULL)
        return 0;
    log->closing = true;
    log_drain(log);
    log_spare_recycle_forget(log);
    log_commit_stats_print(log);
    int rc = log->error;
    if (rc == 0 && log->step == COMMIT_ENOSPC_WAIT)
        rc = LOG_ENOSPC;
    if (log->error == 0 && log->config.sync_mode != LOG_SYNC_ALWAYS && log->segment_count > 0 &&
        log->synced_end < log->written_end) {
        int sync_rc = io_sync_simple(log->backend, IO_FDATASYNC,
                                     log->segments[log->segment_count - 1]->fd);
        if (sync_rc < 0)
            rc = sync_rc;
        else
            log->synced_end = log->written_end;
    }
    log_free(log);
    return rc;
}
