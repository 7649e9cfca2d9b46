/*
 * Recovery: turn what scan_run found into a log ready to append, synchronously, before
 * serving.
 *
 * Repairs are the only writes recovery makes, each followed by the sync that makes it
 * durable: a leftover checkpoint.tmp is deleted; segments an earlier checkpoint dropped but
 * whose unlink had not become durable are deleted again; a newest segment whose header never
 * became durable is deleted; a torn tail is overwritten with zeros (segments are preallocated,
 * so zeros, not a shorter file, mark the clean end) and fdatasync'ed, with a logfmt warning
 * naming the bytes and seqs dropped. Salvage (an operator's explicit choice) cuts at the first
 * damage the same way and renames every later segment to "<name>.salvaged" instead of
 * deleting it (and unseals the segment it leaves newest, whose successor is set aside). A
 * crash between a roll's new segment becoming durable and the old one's seal leaves the
 * segment before the newest unsealed: recovery writes that seal. Any other damage fails the
 * open with LOG_ECORRUPT and a message.
 *
 * Making the first segment of an empty log checks the free space first and removes the file
 * again on any failure, so a size the disk cannot hold leaves nothing behind.
 */
#include "log_internal.h"

#include "logfmt.h"
#include "scan.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct log_replay {
    int (*replay)(void *ctx, const struct log_record *record);
    void *ctx;
};

static int log_replay_record(void *ctx, const struct log_record *record)
{
    struct log_replay *r = ctx;
    return r->replay(r->ctx, record);
}

static void log_damage_message(const struct log_damage *d, char *out, size_t len)
{
    char last[24] = "?"; /* the end of the range is unknown when the header itself is bad */
    if (d->seq_last >= d->seq_first && d->seq_last != 0)
        snprintf(last, sizeof(last), "%" PRIu64, d->seq_last);
    snprintf(out, len, "%s: segment %020" PRIu64 " offset %" PRIu64 " seq %" PRIu64 "..%s: %s",
             log_damage_name(d->kind), d->segment_id, d->offset, d->seq_first, last, d->detail);
}

static int log_unlink_sync(struct log *log, const char *name)
{
    struct io_op op = {.kind = IO_UNLINK};
    snprintf(op.path, sizeof(op.path), "%s", name);
    int rc = (int)io_sync(log->backend, &op);
    return rc == -ENOENT ? 0 : rc;
}

/* Overwrite [from, to) of fd with zeros and make it durable. */
static int log_zero_range(struct log *log, int fd, uint64_t from, uint64_t to)
{
    if (to <= from)
        return 0;
    int rc = 0;
    for (uint64_t off = from; off < to && rc == 0;) {
        uint64_t n = to - off < LOG_ZERO_CHUNK_BYTES ? to - off : LOG_ZERO_CHUNK_BYTES;
        int64_t w = io_sync_pwrite(log->backend, fd, log->zero_chunk, n, off);
        if (w <= 0)
            rc = w < 0 ? (int)w : -EIO;
        else
            off += (uint64_t)w;
    }
    if (rc == 0)
        rc = io_sync_simple(log->backend, IO_FDATASYNC, fd);
    return rc;
}

/* Delete what earlier crashes left half-done. */
static int log_repair_files(struct log *log, struct scan_result *res)
{
    bool dir_changed = false;
    int rc = 0;
    if (res->checkpoint_tmp)
        rc = log_unlink_sync(log, CHECKPOINT_TMP_NAME);
    for (uint32_t i = 0; rc == 0 && i < res->leftover_count; i++) {
        char name[SEGMENT_NAME_LEN + 1];
        segment_name(res->leftovers[i], name);
        logfmt("info", "msg=\"deleting segment dropped by the checkpoint\" "
                       "segment=%" PRIu64, res->leftovers[i]);
        rc = log_unlink_sync(log, name);
        dir_changed = true;
    }
    if (rc == 0 && res->torn_roll) {
        char name[SEGMENT_NAME_LEN + 1];
        segment_name(res->torn_roll_id, name);
        logfmt("warn", "msg=\"deleting segment whose header never became durable\" "
                       "segment=%" PRIu64, res->torn_roll_id);
        rc = log_unlink_sync(log, name);
        dir_changed = true;
    }
    if (rc == 0 && dir_changed)
        rc = io_sync_simple(log->backend, IO_FSYNC_DIR, -1);
    return rc;
}

static int log_cut_torn_tail(struct log *log, struct scan_result *res,
                             struct log_recovery_report *report)
{
    struct scan_segment *seg = &res->segments[res->segment_count - 1];
    uint64_t bytes = seg->nonzero_end > seg->end_offset ? seg->nonzero_end - seg->end_offset : 0;
    /* The last seq dropped is known from the torn batch's header if it verified, and from any
     * unsynced batches after it; otherwise it is unknown (the header itself is torn). */
    uint64_t seq_last = seg->damage.seq_last > seg->seq_last_after ? seg->damage.seq_last
                                                                    : seg->seq_last_after;
    char last[24] = "unknown";
    if (seq_last >= seg->seq_end)
        snprintf(last, sizeof(last), "%" PRIu64, seq_last);
    snprintf(report->message, sizeof(report->message),
             "torn tail cut: segment %020" PRIu64 " offset %" PRIu64 " bytes %" PRIu64
             " seq %" PRIu64 "..%s: %s",
             seg->id, seg->end_offset, bytes, seg->seq_end, last, seg->damage.detail);
    logfmt("warn",
           "msg=\"torn tail cut\" segment=%" PRIu64 " offset=%" PRIu64 " bytes=%" PRIu64
           " seq_first=%" PRIu64 " seq_last=%s reason=\"%s\"",
           seg->id, seg->end_offset, bytes, seg->seq_end, last, seg->damage.detail);
    report->torn_tail = true;
    report->torn_segment_id = seg->id;
    report->torn_offset = seg->end_offset;
    report->torn_bytes = bytes;
    return log_zero_range(log, seg->fd, seg->end_offset, seg->nonzero_end);
}

/* Is the first damage a segment the checkpoint lists but the directory lacks? */
static bool log_damage_listed_missing(const struct scan_result *res)
{
    if (!res->has_checkpoint || res->damage.kind != LOG_DAMAGE_MISSING_SEGMENT)
        return false;
    for (uint32_t i = 0; i < res->checkpoint.segment_count; i++)
        if (checkpoint_segment_id(&res->checkpoint, i) == res->damage.segment_id)
            return true;
    return false;
}

/* Salvage: keep everything before the first damage, set the rest aside. */
static int log_salvage(struct log *log, struct scan_result *res,
                       struct log_recovery_report *report)
{
    uint32_t keep = res->cut_index < res->segment_count ? res->cut_index : res->segment_count;
    bool partial = keep < res->segment_count && res->cut_offset > 0;
    if (log_damage_listed_missing(res)) {
        /* The checkpoint names a segment that is gone: cutting cannot repair that (the
         * checkpoint would stay and make every later open delete or set aside what is
         * appended after the cut), so salvage refuses, as FORMAT.md says. */
        logfmt("error", "msg=\"salvage refuses: the checkpoint lists a missing "
                        "segment\" segment=%" PRIu64, res->damage.segment_id);
        return LOG_ECORRUPT;
    }
    for (uint32_t i = 0; i < keep + (partial ? 1u : 0u); i++) {
        /* Damage found before the walk (a listed segment missing): nothing verified to keep. */
        if (!res->segments[i].walked)
            return LOG_ECORRUPT;
    }
    uint32_t kept = keep + (partial ? 1u : 0u);
    uint64_t new_end = kept > 0 ? res->segments[kept - 1].seq_end : 1;
    if (res->has_checkpoint && res->checkpoint.anchor_seq > new_end) {
        /* The checkpoint's state includes records the cut would drop, and new appends would
         * reuse their seqs below its anchor (replay would skip them): refuse. */
        logfmt("error", "msg=\"salvage would cut below the checkpoint anchor\" "
                        "anchor_seq=%" PRIu64 " cut_seq=%" PRIu64,
               res->checkpoint.anchor_seq, new_end);
        return LOG_ECORRUPT;
    }
    int rc = 0;
    for (uint32_t i = res->segment_count; rc == 0 && i > keep + (partial ? 1u : 0u); i--) {
        struct scan_segment *seg = &res->segments[i - 1];
        struct io_op op = {.kind = IO_RENAME};
        segment_name(seg->id, op.path);
        segment_name(seg->id, op.path2);
        strcat(op.path2, ".salvaged"); /* 24 + 9 bytes fit IO_PATH_MAX */
        rc = (int)io_sync(log->backend, &op);
        int close_rc = io_sync_simple(log->backend, IO_CLOSE, seg->fd);
        (void)close_rc; /* nothing was written through it */
        seg->fd = -1;
        res->segment_count = i - 1;
    }
    if (rc == 0 && partial) {
        struct scan_segment *seg = &res->segments[keep];
        rc = log_zero_range(log, seg->fd, res->cut_offset, seg->nonzero_end);
        seg->end_offset = res->cut_offset;
        seg->sealed = false;
    }
    if (rc == 0 && !partial && keep > 0 && res->segments[keep - 1].sealed) {
        /* Its successor is set aside: a seal naming it would read as a missing segment. */
        struct scan_segment *seg = &res->segments[keep - 1];
        rc = log_zero_range(log, seg->fd, seg->seal_offset, seg->nonzero_end);
        seg->sealed = false;
    }
    if (rc == 0)
        rc = io_sync_simple(log->backend, IO_FSYNC_DIR, -1);
    if (rc < 0)
        return rc;
    report->salvaged = true;
    report->salvage_seq_lost_from = res->segment_count > 0
                                        ? res->segments[res->segment_count - 1].seq_end
                                        : 1;
    log_damage_message(&res->damage, report->message, sizeof(report->message));
    logfmt("warn", "msg=\"salvage cut the log\" seq_lost_from=%" PRIu64
                   " damage=\"%s\"", report->salvage_seq_lost_from, report->message);
    res->torn_tail = false;
    return 0;
}

/* Preallocate (and with zero_segments fill) a new segment file and write its header
 * durably. */
static int log_first_segment_fill(struct log *log, int fd)
{
    struct io_op op = {.kind = IO_FALLOCATE, .fd = fd, .len = log->config.segment_size_bytes};
    int rc = (int)io_sync(log->backend, &op);
    if (rc == -EOPNOTSUPP)
        rc = 0;
    if (rc == 0 && log->config.zero_segments)
        rc = log_zero_range(log, fd, SEGMENT_HEADER_SIZE, log->config.segment_size_bytes);
    if (rc == 0) {
        int64_t w = io_sync_pwrite(log->backend, fd, log->segment_block, SEGMENT_HEADER_SIZE, 0);
        rc = w == SEGMENT_HEADER_SIZE ? 0 : (w < 0 ? (int)w : -EIO);
    }
    if (rc == 0)
        rc = io_sync_simple(log->backend, IO_FDATASYNC, fd);
    return rc;
}

/* Make the first segment of an empty log, synchronously. On failure nothing is left: the
 * partial file is removed (a full disk must not stay full because of a file spool made). */
static int log_create_first_segment(struct log *log, uint64_t id, char *msg, size_t len)
{
    int rc = log_space_check(log, log->config.segment_size_bytes, msg, len);
    if (rc < 0)
        return rc;
    log_segment_header_build(log, id, 0, 0, 0);
    char name[SEGMENT_NAME_LEN + 1];
    segment_name(id, name);
    int fd = io_sync_open(log->backend, name, O_RDWR | O_CREAT | O_EXCL, 0640);
    if (fd < 0)
        return fd;
    rc = log_first_segment_fill(log, fd);
    if (rc == 0)
        rc = io_sync_simple(log->backend, IO_FSYNC_DIR, -1);
    if (rc == 0)
        rc = log_segment_add(log, id, log->roll_header.hash_seed, fd);
    if (rc < 0) {
        int close_rc = io_sync_simple(log->backend, IO_CLOSE, fd);
        (void)close_rc;
        int unlink_rc = log_unlink_sync(log, name);
        if (unlink_rc == 0)
            unlink_rc = io_sync_simple(log->backend, IO_FSYNC_DIR, -1);
        snprintf(msg, len, "cannot create the first segment %s (%" PRIu64 " bytes): %s%s", name,
                 log->config.segment_size_bytes, log_strerror(rc),
                 unlink_rc == 0 ? "; the partial file was removed" : "");
        return rc;
    }
    log->tail_segment_id = id;
    log->tail_offset = SEGMENT_HEADER_SIZE;
    log->last_batch_hash = log->roll_header.header_hash;
    log->tail_seed = log->roll_header.hash_seed;
    log->written_offset = SEGMENT_HEADER_SIZE;
    log->synced_offset = SEGMENT_HEADER_SIZE;
    log->current_size = log->config.segment_size_bytes;
    return 0;
}

/*
 * A crash after a roll made its segment durable and before the seal of the one before it was
 * durable leaves that one unsealed: write the seal now (it proves the newest segment existed,
 * should it be lost later). Only when the two are linked directly and the older one ended
 * cleanly with a block to spare.
 */
static int log_reseal(struct log *log, struct scan_result *res)
{
    if (res->segment_count < 2)
        return 0;
    struct scan_segment *prev = &res->segments[res->segment_count - 2];
    struct scan_segment *newest = &res->segments[res->segment_count - 1];
    if (prev->sealed || !prev->walked || prev->end != SCAN_END_CLEAN ||
        newest->header.prev_segment_id != prev->id || prev->seq_end != newest->id ||
        prev->end_offset + BATCH_ALIGN > prev->header.segment_size)
        return 0;
    struct batch_header seal;
    batch_seal_marker(log->segment_block, prev->id, prev->hash_seed, newest->id,
                      prev->last_hash, &seal);
    logfmt("info", "msg=\"sealing a segment left unsealed (a crash in a roll, or "
                   "a version 1 log)\" segment=%" PRIu64
                   " successor=%" PRIu64, prev->id, newest->id);
    int64_t w = io_sync_pwrite(log->backend, prev->fd, log->segment_block, BATCH_ALIGN,
                               prev->end_offset);
    int rc = w == BATCH_ALIGN ? 0 : (w < 0 ? (int)w : -EIO);
    if (rc == 0)
        rc = io_sync_simple(log->backend, IO_FDATASYNC, prev->fd);
    return rc;
}

/* Take the scanned segments over as the log's own. */
static int log_adopt(struct log *log, struct scan_result *res, char *msg, size_t len)
{
    int rc = log_reseal(log, res);
    if (rc < 0)
        return rc;
    for (uint32_t i = 0; i < res->segment_count; i++) {
        rc = log_segment_add(log, res->segments[i].id, res->segments[i].hash_seed,
                             res->segments[i].fd);
        if (rc < 0)
            return rc;
        res->segments[i].fd = -1;
    }
    log->next_seq = res->next_seq;
    log->written_end = log->next_seq;
    log->synced_end = log->next_seq;
    if (res->segment_count == 0)
        return log_create_first_segment(log, log->next_seq, msg, len);
    struct scan_segment *newest = &res->segments[res->segment_count - 1];
    SPOOL_ASSERT(newest->walked);
    SPOOL_ASSERT(!newest->sealed); /* scan_check_successor refused, or salvage unsealed it */
    log->tail_segment_id = newest->id;
    log->tail_offset = newest->end_offset;
    log->last_batch_hash = newest->last_hash;
    log->tail_seed = newest->hash_seed;
    log->written_offset = newest->end_offset;
    log->synced_offset = newest->end_offset;
    log->current_size = newest->header.segment_size;
    int fd = log->segments[log->segment_count - 1]->fd;
    if (newest->file_size < newest->header.segment_size) {
        /* Cut short (a truncated file): preallocate again so commits stay fast. */
        struct io_op op = {.kind = IO_FALLOCATE, .fd = fd, .len = newest->header.segment_size};
        rc = (int)io_sync(log->backend, &op);
        if (rc < 0 && rc != -EOPNOTSUPP)
            return rc;
    }
    /* What recovery read back may be in the page cache only (a process crash in the interval
     * mode): it must be durable before new batches record it as synced (synced_offset above).
     * The zero fill ends with that fdatasync; without one, a sync of its own. */
    if (log->config.zero_segments && !newest->recycled &&
        newest->end_offset < newest->header.segment_size) {
        /* Its unused rest may be preallocated only (a segment made by a roll without a ready
         * spare, or by an older version): zeros make its commits as cheap as the spare's. A
         * recycled segment's rest is written already (stale blocks): nothing to fill. */
        return log_zero_range(log, fd, newest->end_offset, newest->header.segment_size);
    }
    return io_sync_simple(log->backend, IO_FDATASYNC, fd);
}

static int log_checkpoint_out(const struct scan_result *res, void **checkpoint,
                              uint32_t *checkpoint_len)
{
    if (!res->has_checkpoint || checkpoint == NULL)
        return 0;
    void *copy = malloc(res->checkpoint.payload_len > 0 ? res->checkpoint.payload_len : 1);
    if (copy == NULL)
        return -ENOMEM;
    memcpy(copy, res->checkpoint.payload, res->checkpoint.payload_len);
    *checkpoint = copy;
    if (checkpoint_len != NULL)
        *checkpoint_len = res->checkpoint.payload_len;
    return 0;
}

int log_recover(struct log *log, int (*replay)(void *ctx, const struct log_record *record),
                void *replay_ctx, void **checkpoint, uint32_t *checkpoint_len,
                struct log_recovery_report *report)
{
    struct log_replay r = {.replay = replay, .ctx = replay_ctx};
    struct log_scan_callbacks callbacks = {.record = replay ? log_replay_record : NULL,
                                           .ctx = &r};
    struct scan_options options = {.recovery = true, .salvage = log->config.salvage,
                                   .replay_from_seq = UINT64_MAX, .callbacks = &callbacks};
    struct scan_result res;
    int rc = scan_run(log->backend, &options, &res);
    if (rc == LOG_ECORRUPT && log->config.salvage && res.damaged)
        rc = log_salvage(log, &res, report);
    if (rc != 0 && res.damage.kind != LOG_DAMAGE_NONE)
        log_damage_message(&res.damage, report->message, sizeof(report->message));
    if (rc == 0)
        rc = log_repair_files(log, &res);
    log->recycle_ready = res.recycle_file; /* a dropped segment's file: the spare takes it */
    if (rc == 0 && res.torn_tail)
        rc = log_cut_torn_tail(log, &res, report);
    if (rc == 0)
        rc = log_adopt(log, &res, report->message, sizeof(report->message));
    if (rc == 0)
        rc = log_checkpoint_out(&res, checkpoint, checkpoint_len);
    report->segment_count = log->segment_count;
    report->batch_count = res.batch_count;
    report->record_count = res.record_count;
    report->next_seq = log->next_seq;
    scan_result_free(log->backend, &res);
    return rc;
}
