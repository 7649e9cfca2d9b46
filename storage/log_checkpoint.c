/*
 * Writing a checkpoint and dropping segments (log_checkpoint), as one chain of ops:
 *
 *   (interval/none: fdatasync the log up to the anchor) -> open checkpoint.tmp -> write
 *   -> fdatasync -> close -> rename over checkpoint -> fsync dir -> unlink each dropped
 *   segment -> fsync dir (after any unlink) -> done
 *
 * One dropped segment may be renamed to "segment.recycle" instead of unlinked, for the spare to
 * reuse (log_spare.c, recycling); the directory sync after it covers the rename too.
 *
 * The file is written in three pieces (head, payload, hash: checkpoint.h) straight from the
 * payload the caller handed over (log_checkpoint_give), so a payload of tens of MiB is never
 * copied on the caller's thread; only the hash reads it there.
 *
 * Segments are unlinked only after the checkpoint that no longer lists them is durable, so a
 * crash at any point leaves either the old checkpoint with every segment it lists, or the new
 * one with (possibly) some dropped segments still present; recovery deletes those again.
 * A failure of the checkpoint's own file is reported to done and leaves the log usable; a
 * failed fdatasync of the log itself poisons it.
 *
 * On a poisoned log the chain goes no further: whatever step completes next ends it with the
 * poisoning error (closing the temp file first), so no new checkpoint is renamed into place
 * and no segment is unlinked once a write or fdatasync of the log failed; the restart
 * recovers from the checkpoint that stood before and the log as it is.
 *
 * The temp file's fd is never lost: any failure after the open, a refused submit included,
 * closes it before done hears the error. If even that close cannot be queued, the fd stays in
 * ckpt_fd and the next checkpoint closes it first (CKPT_CLOSE_STALE), or log_close does.
 */
#include "log_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void log_checkpoint_done(struct io_op *op);

void log_checkpoint_free(struct log *log)
{
    free(log->ckpt_buf);
    free(log->ckpt_payload);
    free(log->ckpt_drop);
    log->ckpt_buf = NULL;
    log->ckpt_payload = NULL;
    log->ckpt_drop = NULL;
}

static void log_checkpoint_end(struct log *log, int error)
{
    log->ckpt_step = CKPT_IDLE;
    log_checkpoint_free(log);
    log->ckpt_done(log->ckpt_ctx, error);
}

/* Point a write at the rest of the piece (head, payload, hash) that ckpt_written is in. */
static void log_checkpoint_piece(const struct log *log, struct io_op *op)
{
    uint64_t at = log->ckpt_written;
    uint64_t payload_end = log->ckpt_head_len + log->ckpt_payload_len;
    SPOOL_ASSERT(at < log->ckpt_len);
    op->offset = at;
    if (at < log->ckpt_head_len) {
        op->buf = log->ckpt_buf + at;
        op->len = log->ckpt_head_len - at;
    } else if (at < payload_end) {
        op->buf = log->ckpt_payload + (at - log->ckpt_head_len);
        op->len = payload_end - at;
    } else {
        op->buf = log->ckpt_buf + log->ckpt_head_len + (at - payload_end);
        op->len = log->ckpt_len - at;
    }
}

static int log_checkpoint_submit(struct log *log)
{
    struct io_op *op = &log->ckpt_op;
    memset(op, 0, sizeof(*op));
    op->ctx = log;
    op->done = log_checkpoint_done;
    op->fd = log->ckpt_fd;
    switch (log->ckpt_step) {
    case CKPT_SYNC_LOG:
        op->kind = IO_FDATASYNC;
        op->fd = log->segments[log->segment_count - 1]->fd;
        break;
    case CKPT_OPEN:
        op->kind = IO_OPEN;
        strcpy(op->path, CHECKPOINT_TMP_NAME);
        op->open_flags = O_WRONLY | O_CREAT | O_TRUNC;
        op->mode = 0640;
        break;
    case CKPT_WRITE:
        op->kind = IO_WRITE;
        log_checkpoint_piece(log, op);
        break;
    case CKPT_SYNC:
        op->kind = IO_FDATASYNC;
        break;
    case CKPT_CLOSE:
    case CKPT_CLOSE_STALE:
        op->kind = IO_CLOSE;
        break;
    case CKPT_RENAME:
        op->kind = IO_RENAME;
        strcpy(op->path, CHECKPOINT_TMP_NAME);
        strcpy(op->path2, CHECKPOINT_NAME);
        break;
    case CKPT_DIR_SYNC:
    case CKPT_DROP_DIR_SYNC:
        op->kind = IO_FSYNC_DIR;
        break;
    case CKPT_UNLINK:
        op->kind = log->ckpt_recycle ? IO_RENAME : IO_UNLINK;
        segment_name(log->ckpt_drop[log->ckpt_drop_index], op->path);
        if (log->ckpt_recycle)
            strcpy(op->path2, LOG_RECYCLE_NAME);
        break;
    default:
        SPOOL_ASSERT(!"no op for this checkpoint step");
    }
    log_overlap_note(log, LOG_OVERLAP_CHECKPOINT);
    return io_submit(log->backend, op);
}

static void log_checkpoint_failed(struct log *log, int error);

/* From a completion: go on to step, or fail with the submit error. */
static void log_checkpoint_next(struct log *log, enum log_checkpoint_step step)
{
    log->ckpt_step = step;
    int rc = log_checkpoint_submit(log);
    if (rc < 0)
        log_checkpoint_failed(log, rc);
}

/* After the checkpoint is durable: unlink the next dropped segment (or rename one to
 * LOG_RECYCLE_NAME for the spare to reuse: log_spare.c), or finish. */
static void log_checkpoint_drop_next(struct log *log)
{
    while (log->ckpt_drop_index < log->ckpt_drop_count) {
        struct log_segment *seg = log_segment_find(log, log->ckpt_drop[log->ckpt_drop_index]);
        if (seg != NULL) {
            log->ckpt_recycle = log_spare_recycle_offer(log, seg);
            if (log->ckpt_recycle)
                log->recycle_busy_id = seg->id; /* until its fd is closed */
            log_segment_drop(log, seg);
            log_checkpoint_next(log, CKPT_UNLINK);
            return;
        }
        log->ckpt_drop_index++;
    }
    if (log->ckpt_drop_count > 0 && log->ckpt_step != CKPT_DROP_DIR_SYNC) {
        log_checkpoint_next(log, CKPT_DROP_DIR_SYNC);
        return;
    }
    log_checkpoint_end(log, 0);
}

/* The chain fails with error (the first failure is the one reported): close the temp file
 * if it is open, then end. A close that cannot be queued leaves the fd for later. */
static void log_checkpoint_failed(struct log *log, int error)
{
    SPOOL_ASSERT(error < 0);
    if (log->ckpt_error == 0)
        log->ckpt_error = error;
    if (log->ckpt_fd >= 0 && log->ckpt_step != CKPT_CLOSE) {
        log_checkpoint_next(log, CKPT_CLOSE); /* its completion reports ckpt_error */
        return;
    }
    log_checkpoint_end(log, log->ckpt_error);
}

/* A checkpoint step succeeded with result rc: go on to the next one. */
static void log_checkpoint_advance(struct log *log, int64_t rc)
{
    switch (log->ckpt_step) {
    case CKPT_SYNC_LOG:
        if (log->ckpt_sync_target > log->synced_end) {
            log->synced_end = log->ckpt_sync_target;
            log_report(log, log->synced_end, LOG_DURABLE_SYNCED);
        }
        log_checkpoint_next(log, CKPT_OPEN);
        return;
    case CKPT_OPEN:
        SPOOL_ASSERT(log->ckpt_fd == (int)rc); /* set by log_checkpoint_done */
        log_checkpoint_next(log, CKPT_WRITE);
        return;
    case CKPT_WRITE:
        log->ckpt_written += (uint64_t)rc;
        log_checkpoint_next(log, log->ckpt_written < log->ckpt_len ? CKPT_WRITE : CKPT_SYNC);
        return;
    case CKPT_SYNC:
        log_checkpoint_next(log, CKPT_CLOSE);
        return;
    case CKPT_CLOSE:
        log_checkpoint_next(log, CKPT_RENAME);
        return;
    case CKPT_RENAME:
        log_checkpoint_next(log, CKPT_DIR_SYNC);
        return;
    case CKPT_DIR_SYNC:
        log_checkpoint_drop_next(log);
        return;
    case CKPT_UNLINK:
        if (log->ckpt_recycle)
            log->recycle_ready = true;
        log->ckpt_recycle = false;
        log->ckpt_drop_index++;
        log_checkpoint_drop_next(log);
        return;
    case CKPT_DROP_DIR_SYNC:
        log_checkpoint_end(log, 0);
        return;
    case CKPT_CLOSE_STALE:
        log_checkpoint_next(log, log->ckpt_sync_target > 0 ? CKPT_SYNC_LOG : CKPT_OPEN);
        return;
    default:
        SPOOL_ASSERT(!"checkpoint completion while idle");
    }
}

static void log_checkpoint_done(struct io_op *op)
{
    struct log *log = op->ctx;
    int64_t rc = op->result;
    enum log_checkpoint_step step = log->ckpt_step;
    if (step == CKPT_CLOSE || step == CKPT_CLOSE_STALE)
        log->ckpt_fd = -1; /* closed even when close reports an error */
    if (step == CKPT_CLOSE && log->ckpt_error != 0) {
        log_checkpoint_end(log, log->ckpt_error); /* the failure that made us close */
        return;
    }
    if (step == CKPT_CLOSE_STALE)
        rc = 0; /* a leftover of an earlier chain: its outcome does not matter to this one */
    if (step == CKPT_OPEN && rc >= 0)
        log->ckpt_fd = (int)rc;
    if (step == CKPT_WRITE && rc == 0)
        rc = -EIO; /* a write that makes no progress would loop forever */
    if (step == CKPT_UNLINK && rc < 0 && log->ckpt_recycle) {
        log->ckpt_recycle = false; /* nothing was renamed for the spare */
        log->recycle_busy_id = 0;
    }
    if (step == CKPT_UNLINK && rc == -ENOENT)
        rc = 0;
    if (step == CKPT_SYNC_LOG && rc < 0)
        log_poison(log, (int)rc); /* the log's own fdatasync failed */
    if (rc < 0) {
        log_checkpoint_failed(log, (int)rc);
        return;
    }
    if (log->error != 0) {
        log_checkpoint_failed(log, log->error); /* poisoned meanwhile: rename and unlink nothing */
        return;
    }
    log_checkpoint_advance(log, rc);
}

/* May segment id be dropped by a checkpoint anchored at anchor_seq? */
static bool log_checkpoint_droppable(const struct log *log, uint64_t id, uint64_t anchor_seq)
{
    for (uint32_t i = 0; i + 1 < log->segment_count; i++) {
        if (log->segments[i]->id == id)
            return log->segments[i + 1]->id <= anchor_seq; /* all its records < anchor */
    }
    return false; /* absent, or the current segment */
}

/* Encode the checkpoint file's head and hash (the segments that remain after drop); the
 * payload is written from where it is. */
static int log_checkpoint_encode(struct log *log, uint64_t anchor_seq, const uint8_t *payload,
                                 uint32_t payload_len, const uint64_t *drop, uint32_t drop_count)
{
    uint64_t *ids = malloc(log->segment_count * sizeof(*ids));
    if (ids == NULL)
        return -ENOMEM;
    struct checkpoint_info info = {.anchor_seq = anchor_seq, .payload_len = payload_len};
    for (uint32_t i = 0; i < log->segment_count; i++) {
        uint64_t id = log->segments[i]->id;
        bool dropped = false;
        for (uint32_t k = 0; k < drop_count && !dropped; k++)
            dropped = drop[k] == id;
        if (dropped)
            continue;
        ids[info.segment_count++] = id;
        if (id <= anchor_seq)
            info.anchor_segment_id = id;
    }
    SPOOL_ASSERT(info.anchor_segment_id != 0); /* droppable segments all end before anchor */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    info.created_unix_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    log->ckpt_head_len = checkpoint_head_size(info.segment_count);
    log->ckpt_len = checkpoint_encoded_size(info.segment_count, payload_len);
    SPOOL_ASSERT(log->ckpt_len == log->ckpt_head_len + payload_len + 8);
    log->ckpt_buf = malloc(log->ckpt_head_len + 8);
    if (log->ckpt_buf == NULL) {
        free(ids);
        return -ENOMEM;
    }
    checkpoint_encode_head(&info, ids, log->ckpt_buf);
    free(ids);
    uint64_t hash = checkpoint_hash(log->ckpt_buf, log->ckpt_head_len, payload, payload_len);
    memcpy(log->ckpt_buf + log->ckpt_head_len, &hash, sizeof(hash));
    return 0;
}

int log_checkpoint(struct log *log, uint64_t anchor_seq, const void *payload,
                   uint32_t payload_len, const uint64_t *drop, uint32_t drop_count,
                   void (*done)(void *ctx, int error), void *ctx)
{
    SPOOL_ASSERT(payload != NULL || payload_len == 0);
    uint8_t *copy = malloc(payload_len > 0 ? payload_len : 1);
    if (copy == NULL)
        return -ENOMEM;
    if (payload_len > 0)
        memcpy(copy, payload, payload_len);
    return log_checkpoint_give(log, anchor_seq, copy, payload_len, drop, drop_count, done, ctx);
}

int log_checkpoint_give(struct log *log, uint64_t anchor_seq, void *payload,
                        uint32_t payload_len, const uint64_t *drop, uint32_t drop_count,
                        void (*done)(void *ctx, int error), void *ctx)
{
    SPOOL_ASSERT(log != NULL && done != NULL);
    SPOOL_ASSERT(payload != NULL);
    int rc = 0;
    if (log->ckpt_step != CKPT_IDLE)
        rc = -EBUSY;
    else if (log->error != 0)
        rc = log->error;
    else if (anchor_seq == 0 || anchor_seq > log_durable_seq_end(log) ||
             payload_len > CHECKPOINT_PAYLOAD_MAX)
        rc = -EINVAL;
    for (uint32_t k = 0; rc == 0 && k < drop_count; k++)
        if (!log_checkpoint_droppable(log, drop[k], anchor_seq))
            rc = -EINVAL;
    if (rc == 0)
        rc = log_checkpoint_encode(log, anchor_seq, payload, payload_len, drop, drop_count);
    if (rc < 0) {
        free(payload);
        return rc;
    }
    log->ckpt_payload = payload;
    log->ckpt_payload_len = payload_len;
    log->ckpt_drop = malloc((drop_count > 0 ? drop_count : 1) * sizeof(*drop));
    if (log->ckpt_drop == NULL) {
        log_checkpoint_free(log);
        return -ENOMEM;
    }
    if (drop_count > 0)
        memcpy(log->ckpt_drop, drop, drop_count * sizeof(*drop));
    log->ckpt_drop_count = drop_count;
    log->ckpt_drop_index = 0;
    log->ckpt_written = 0;
    log->ckpt_sync_target = 0;
    log->ckpt_error = 0;
    log->ckpt_done = done;
    log->ckpt_ctx = ctx;
    if (anchor_seq > log->synced_end) {
        log->ckpt_sync_target = log->written_end;
        log->ckpt_step = CKPT_SYNC_LOG;
    } else {
        log->ckpt_step = CKPT_OPEN;
    }
    if (log->ckpt_fd >= 0)
        log->ckpt_step = CKPT_CLOSE_STALE; /* then the step chosen above */
    rc = log_checkpoint_submit(log);
    if (rc < 0) {
        log->ckpt_step = CKPT_IDLE;
        log_checkpoint_free(log);
    }
    return rc;
}
