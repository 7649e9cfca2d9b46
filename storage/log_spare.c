/*
 * The spare segment: disk space for the next segment, reserved before it is needed
 * (log_config.spare_segment; off by default).
 *
 * Why. A roll that finds the disk full refuses every append with LOG_ENOSPC, acks and
 * deletes included, until space comes back; but on a full disk the space comes back only by
 * acks and a checkpoint that drops segments. The broker breaks that circle by refusing the
 * records that grow the log (puts) while log_space_low() says the reserve is gone, and by
 * letting everything else through: those land in the current segment and, when it is full,
 * in the spare, which needs no new space ("reserve log space at admission so acks and
 * deletes never fail on a full disk", STYLE.md).
 *
 * How. "segment.spare" is created (O_TRUNC: a leftover from a crash or an earlier run is
 * reused), preallocated to segment_size and, with config.zero_segments, filled with zeros and
 * fdatasync'ed (so commits into it overwrite written blocks), by a chain of ops of its own,
 * driven from log_tick, concurrent with commits (it touches no file they touch). A roll that
 * finds it ready takes its fd instead of creating a file: write the header, fdatasync, rename
 * the spare to the segment's name, fsync the directory (log.c). No new spare is begun until
 * that roll has renamed it (the name would still open the file being rolled into). Until
 * that rename the file has no name recovery reads, so a crash at any point leaves either no
 * new segment or a new segment with a durable header and no batch, exactly as a roll that
 * creates its file. After a roll took the spare, the next tick makes a new one. When making
 * one fails (ENOSPC, or any error: a spare is a reservation, never data), the half-made file
 * is removed and the attempt is repeated every LOG_ENOSPC_RETRY_NS; meanwhile
 * log_space_low() is true. Before it begins, the free space is checked (log_space_check): a
 * spare the file system cannot hold is not begun at all.
 *
 * Invariants: at most one spare op in flight; spare_fd >= 0 in SPARE_READY, while its chain
 * holds the file, and in SPARE_NONE after a submit was refused with the file open (the next
 * attempt closes and unlinks it before making a new one: an fd is never dropped); nothing
 * durable ever depends on the spare's content.
 */
#include "log_internal.h"

#include "logfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

static void log_spare_done(struct io_op *op);

static void log_spare_submit(struct log *log, enum log_spare_state state)
{
    struct io_op *op = &log->spare_op;
    memset(op, 0, sizeof(*op));
    op->ctx = log;
    op->done = log_spare_done;
    op->fd = log->spare_fd;
    log->spare_state = state;
    switch (state) {
    case SPARE_OPEN:
        op->kind = IO_OPEN;
        strcpy(op->path, LOG_SPARE_NAME);
        op->open_flags = O_RDWR | O_CREAT | O_TRUNC;
        op->mode = 0640;
        break;
    case SPARE_FALLOCATE:
        op->kind = IO_FALLOCATE;
        op->len = log->config.segment_size_bytes;
        break;
    case SPARE_ZERO: {
        uint64_t left = log->config.segment_size_bytes - log->spare_zeroed;
        op->kind = IO_WRITE;
        op->buf = log->zero_chunk;
        op->len = (uint32_t)(left < LOG_ZERO_CHUNK_BYTES ? left : LOG_ZERO_CHUNK_BYTES);
        op->offset = log->spare_zeroed;
        break;
    }
    case SPARE_ZERO_SYNC:
        op->kind = IO_FDATASYNC;
        break;
    case SPARE_UNDO_CLOSE:
        op->kind = IO_CLOSE;
        break;
    case SPARE_UNDO_UNLINK:
        op->kind = IO_UNLINK;
        strcpy(op->path, LOG_SPARE_NAME);
        break;
    default:
        SPOOL_ASSERT(!"no op for this spare state");
    }
    if (io_submit(log->backend, op) < 0) {
        /* Could not even queue it: try again later. A file already open stays in spare_fd,
         * and the next attempt begins by closing it (log_spare_tick), or log_close does. */
        log->spare_state = SPARE_NONE;
        log->spare_low = true;
        log->spare_retry_ns = log_now_ns(log) + LOG_ENOSPC_RETRY_NS;
    }
}

/* Making the spare failed with error: remove what was made, then wait to retry. */
static void log_spare_failed(struct log *log, int error)
{
    if (!log->spare_low)
        logfmt("warn", "msg=\"disk space low: cannot reserve the next segment\" "
                       "error=\"%s\"", log_strerror(error));
    log->spare_low = true;
    log->spare_retry_ns = log_now_ns(log) + LOG_ENOSPC_RETRY_NS;
    if (log->spare_fd >= 0) {
        log_spare_submit(log, SPARE_UNDO_CLOSE);
        return;
    }
    log_spare_submit(log, SPARE_UNDO_UNLINK);
}

static void log_spare_ready(struct log *log)
{
    if (log->spare_low)
        logfmt("info", "msg=\"disk space back: next segment reserved\"");
    log->spare_low = false;
    log->spare_state = SPARE_READY;
}

static void log_spare_done(struct io_op *op)
{
    struct log *log = op->ctx;
    int64_t rc = op->result;
    switch (log->spare_state) {
    case SPARE_OPEN:
        if (rc < 0) {
            log->spare_low = true;
            log->spare_retry_ns = log_now_ns(log) + LOG_ENOSPC_RETRY_NS;
            log->spare_state = SPARE_NONE;
            return;
        }
        log->spare_fd = (int)rc;
        log_spare_submit(log, SPARE_FALLOCATE);
        return;
    case SPARE_FALLOCATE:
        if (rc < 0 && rc != -EOPNOTSUPP) {
            log_spare_failed(log, (int)rc);
            return;
        }
        /* Without fallocate the spare reserves nothing, but a roll still works with it. */
        if (log->config.zero_segments) {
            log->spare_zeroed = 0;
            log_spare_submit(log, SPARE_ZERO);
            return;
        }
        log_spare_ready(log);
        return;
    case SPARE_ZERO:
        if (rc <= 0) {
            log_spare_failed(log, rc < 0 ? (int)rc : -EIO);
            return;
        }
        log->spare_zeroed += (uint64_t)rc;
        log_spare_submit(log, log->spare_zeroed < log->config.segment_size_bytes
                                  ? SPARE_ZERO
                                  : SPARE_ZERO_SYNC);
        return;
    case SPARE_ZERO_SYNC:
        if (rc < 0) {
            log_spare_failed(log, (int)rc);
            return;
        }
        log_spare_ready(log);
        return;
    case SPARE_UNDO_CLOSE:
        log->spare_fd = -1;
        log_spare_submit(log, SPARE_UNDO_UNLINK);
        return;
    case SPARE_UNDO_UNLINK:
        log->spare_state = SPARE_NONE; /* an unlink that failed leaves a file O_TRUNC reuses */
        return;
    default:
        SPOOL_ASSERT(!"spare completion in a state without an op");
    }
}

void log_spare_tick(struct log *log, int64_t now)
{
    if (!log->config.spare_segment || log->closing || log->error != 0)
        return;
    if (log->spare_state != SPARE_NONE || now < log->spare_retry_ns)
        return;
    if (log->spare_fd >= 0) {
        /* A submit was refused with the file open: close and unlink it first. */
        log_spare_submit(log, SPARE_UNDO_CLOSE);
        return;
    }
    char msg[160];
    if (log_space_check(log, log->config.segment_size_bytes, msg, sizeof(msg)) == -ENOSPC) {
        /* Not even begun: a spare the disk cannot hold is never preallocated or zeroed. */
        if (!log->spare_low)
            logfmt("warn", "msg=\"disk space low: cannot reserve the next segment\" "
                           "detail=\"%s\"", msg);
        log->spare_low = true;
        log->spare_retry_ns = now + LOG_ENOSPC_RETRY_NS;
        return;
    }
    log_spare_submit(log, SPARE_OPEN);
}

int64_t log_spare_deadline_ns(const struct log *log)
{
    if (!log->config.spare_segment || log->closing || log->spare_state != SPARE_NONE)
        return INT64_MAX;
    return log->spare_retry_ns;
}

bool log_spare_take(struct log *log)
{
    if (log->spare_state != SPARE_READY)
        return false;
    SPOOL_ASSERT(log->spare_fd >= 0);
    log->roll_fd = log->spare_fd;
    log->spare_fd = -1;
    log->spare_state = SPARE_NONE;
    /* Not before the roll has renamed it: an O_TRUNC open of the name now would truncate the
     * very file the roll is writing. log_roll_finish (or the roll's undo) sets the time. */
    log->spare_retry_ns = INT64_MAX;
    return true;
}

bool log_spare_busy(const struct log *log)
{
    return log->spare_state != SPARE_NONE && log->spare_state != SPARE_READY;
}

bool log_space_low(const struct log *log)
{
    SPOOL_ASSERT(log != NULL);
    return log->enospc || (log->config.spare_segment && log->spare_state != SPARE_READY &&
                           log->spare_low);
}
