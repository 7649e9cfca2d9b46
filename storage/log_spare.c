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
 * Each zero chunk (LOG_ZERO_CHUNK_BYTES) is written with IO_OP_DSYNC: durable as it
 * lands, so the flush that makes it durable carries that chunk and no more. Written to the
 * page cache instead, the 64 MiB reached the disk at the final fdatasync (or in writeback
 * bursts), and every commit's flush behind it waited for all of it: with a backlog growing at
 * ~300 MB/s of 4 KiB jobs, put p99 was 48-60 ms, against 7-9 ms now. When the fill falls
 * behind the log (a disk busy with the jobs' own bytes), a roll takes a new, unzeroed segment
 * instead (log.c), which costs its commits a little more but writes nothing twice.
 *
 * Recycling. Zero-filling writes every byte of the log twice, and takes disk time from the commits
 * while it runs (before its chunks were synced one by one, it stalled them 40-50 ms at every
 * segment, measured with the commit timings of log.c). So a checkpoint that drops a segment offers
 * it here first (log_spare_recycle_offer): one dropped file is renamed to "segment.recycle"
 * instead of being unlinked (log_checkpoint.c), and the next spare is that file renamed to
 * "segment.spare" (then the directory fsync'ed), once no read of the dropped segment is in flight
 * any more (recycle_busy_id: until its fd is closed): SPARE_RECYCLE -> SPARE_RECYCLE_DIR_SYNC ->
 * SPARE_ADOPT (open, no O_TRUNC) -> SPARE_ADOPT_SIZE (of the segment size: ready, recycled;
 * another size: removed, and a new one made at once). With no dropped file at hand the chain first
 * tries to adopt a spare an earlier run left (SPARE_ADOPT), and only then makes a new one
 * (SPARE_OPEN ...). A recycled spare's blocks hold an older segment's bytes, so a roll into it
 * writes a header with SEGMENT_FLAG_RECYCLED (log_spare_roll_flags), and readers take its stale
 * blocks for the end of the written part (scan.c, FORMAT.md "Recycled segments"). Neither name is
 * a segment's, so recovery never reads them; a "segment.recycle" found at open is handed to the
 * spare (recycle_ready), and log_close unlinks one no spare took. A crash before the first rename
 * is durable leaves the dropped segment's own name: recovery deletes it, as any dropped segment
 * whose unlink was not durable.
 *
 * Invariants: at most one spare op in flight; spare_fd >= 0 in SPARE_READY, while its chain
 * holds the file, and in SPARE_NONE after a submit was refused with the file open (the next
 * attempt closes and unlinks it before making a new one: an fd is never dropped); nothing
 * durable ever depends on the spare's content, nor on "segment.recycle"'s.
 */
#include "log_internal.h"

#include "logfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>


/* How often the spare looks again whether reads of a recycled file are done: they take a
 * disk read each (~0.1-1 ms), and the spare is wanted only by the next roll. */
#define LOG_RECYCLE_WAIT_NS (1000ll * 1000)

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
        /* One chunk per flush (above): a commit queued behind it waits for 1 MiB at most
         * (2-3 ms at this disk's ~400 MB/s). 256 KiB chunks spent the fill's time on flushes
         * instead: it fell behind the log more often, and e2e 4 KiB lost ~10% of its jobs/s
         * to rolls into unzeroed segments (A/B, 4 pairs). */
        op->flags = IO_OP_DSYNC;
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
    case SPARE_RECYCLE:
        op->kind = IO_RENAME;
        strcpy(op->path, LOG_RECYCLE_NAME);
        strcpy(op->path2, LOG_SPARE_NAME);
        break;
    case SPARE_RECYCLE_DIR_SYNC:
        op->kind = IO_FSYNC_DIR;
        break;
    case SPARE_ADOPT:
        op->kind = IO_OPEN;
        strcpy(op->path, LOG_SPARE_NAME);
        op->open_flags = O_RDWR;
        break;
    case SPARE_ADOPT_SIZE:
        op->kind = IO_SIZE;
        break;
    default:
        SPOOL_ASSERT(!"no op for this spare state");
    }
    log_overlap_note(log, state == SPARE_ZERO || state == SPARE_ZERO_SYNC
                              ? LOG_OVERLAP_SPARE_ZERO
                              : LOG_OVERLAP_SPARE);
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

/* Make a new spare file (preallocate, zero) unless the disk cannot hold one. */
static void log_spare_make(struct log *log, int64_t now)
{
    char msg[160];
    if (log_space_check(log, log->config.segment_size_bytes, msg, sizeof(msg)) == -ENOSPC) {
        /* Not even begun: a spare the disk cannot hold is never preallocated or zeroed. */
        if (!log->spare_low)
            logfmt("warn", "msg=\"disk space low: cannot reserve the next segment\" "
                           "detail=\"%s\"", msg);
        log->spare_low = true;
        log->spare_retry_ns = now + LOG_ENOSPC_RETRY_NS;
        log->spare_state = SPARE_NONE;
        return;
    }
    log->spare_recycled = false;
    log_spare_submit(log, SPARE_OPEN);
}

/* The steps that reuse a file (a dropped segment, or a spare an earlier run left): no new
 * space, no zero fill. Returns false for a state of the other steps. */
static bool log_spare_reuse_done(struct log *log, int64_t rc, uint64_t size)
{
    switch (log->spare_state) {
    case SPARE_RECYCLE:
        log->recycle_ready = false;
        if (rc < 0) {
            /* Gone, or cannot be renamed (an open retries it): make a new spare. */
            logfmt("warn", "msg=\"cannot recycle a dropped segment\" error=\"%s\"",
                   log_strerror((int)rc));
            log_spare_make(log, log_now_ns(log));
            return true;
        }
        log_spare_submit(log, SPARE_RECYCLE_DIR_SYNC);
        return true;
    case SPARE_RECYCLE_DIR_SYNC:
        if (rc < 0)
            log_spare_failed(log, (int)rc);
        else
            log_spare_submit(log, SPARE_ADOPT);
        return true;
    case SPARE_ADOPT:
        if (rc < 0) { /* none there (the usual case after a roll took the spare) */
            log_spare_make(log, log_now_ns(log));
            return true;
        }
        log->spare_fd = (int)rc;
        log_spare_submit(log, SPARE_ADOPT_SIZE);
        return true;
    case SPARE_ADOPT_SIZE:
        if (rc < 0) {
            log_spare_failed(log, (int)rc);
        } else if (size != log->config.segment_size_bytes) {
            /* Made for another segment size: remove it and make a new one at once. */
            log->spare_discard = true;
            log_spare_submit(log, SPARE_UNDO_CLOSE);
        } else {
            /* Every block is written (an older segment's bytes, zeros, or both): a roll into
             * it flags its header recycled, and commits overwrite written blocks. */
            log->spare_recycled = true;
            log->commit_stats.spares_reused++;
            log_spare_ready(log);
        }
        return true;
    default:
        return false;
    }
}

static void log_spare_done(struct io_op *op)
{
    struct log *log = op->ctx;
    int64_t rc = op->result;
    if (log_spare_reuse_done(log, rc, op->size))
        return;
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
        log->commit_stats.spares_zeroed++;
        log_spare_ready(log);
        return;
    case SPARE_UNDO_CLOSE:
        log->spare_fd = -1;
        log_spare_submit(log, SPARE_UNDO_UNLINK);
        return;
    case SPARE_UNDO_UNLINK:
        log->spare_state = SPARE_NONE; /* an unlink that failed leaves a file O_TRUNC reuses */
        if (log->spare_discard) {
            log->spare_discard = false;
            log->spare_retry_ns = 0;
        }
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
    if (log->recycle_ready && log->recycle_busy_id != 0) {
        /* Reads of the dropped segment are still in flight: its bytes must stay as they are
         * until its fd is closed (a completion, soon). */
        log->spare_retry_ns = now + LOG_RECYCLE_WAIT_NS;
        return;
    }
    if (log->recycle_ready) {
        log_spare_submit(log, SPARE_RECYCLE);
        return;
    }
    if (log->spare_low) {
        log_spare_make(log, now); /* retrying after a failure: no file worth adopting */
        return;
    }
    log_spare_submit(log, SPARE_ADOPT);
}

bool log_spare_recycle_offer(const struct log *log, const struct log_segment *seg)
{
    SPOOL_ASSERT(!seg->dropped);
    /* Reads still in flight on it (its fd open) are waited for: recycle_busy_id. */
    return log->config.spare_segment && !log->recycle_ready && log->recycle_busy_id == 0 &&
           !log->closing && log->error == 0;
}

void log_spare_recycle_forget(struct log *log)
{
    if (!log->recycle_ready || log->error != 0)
        return; /* poisoned: the next open hands it to the spare */
    struct io_op op = {.kind = IO_UNLINK};
    strcpy(op.path, LOG_RECYCLE_NAME);
    log->recycle_ready = false;
    int rc = (int)io_sync(log->backend, &op);
    if (rc == 0)
        rc = io_sync_simple(log->backend, IO_FSYNC_DIR, -1);
    (void)rc; /* failing leaves a leftover that the next open hands to the spare */
}

int64_t log_spare_deadline_ns(const struct log *log)
{
    if (!log->config.spare_segment || log->closing || log->spare_state != SPARE_NONE)
        return INT64_MAX;
    return log->spare_retry_ns;
}

uint16_t log_spare_roll_flags(const struct log *log)
{
    if (!log->config.spare_segment)
        return 0; /* every roll makes its file: preallocated, never recycled */
    if (log->spare_state == SPARE_READY && !log->spare_recycled)
        return 0; /* the roll takes this fresh spare: it stays ready until then */
    /* The roll may take a spare that becomes ready meanwhile, recycled or not: the flag only
     * says that stale bytes may follow the end, which is true of every such file. */
    return SEGMENT_FLAG_RECYCLED;
}

bool log_spare_take(struct log *log, bool recycled_ok)
{
    if (log->spare_state != SPARE_READY || (log->spare_recycled && !recycled_ok))
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
