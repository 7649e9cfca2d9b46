/*
 * Reading a record back by its location (log_read), through the backend like every other
 * I/O: read the batch's first 4096 bytes, then the rest when the batch is longer, verify the
 * header hash, the seq range and the payload hash, decompress (only after the hash verified),
 * and hand the record to the caller from the completion.
 *
 * At most LOG_READS_MAX reads are in flight; each owns a slot whose buffer grows to the
 * largest batch it has read and is kept for reuse. A read pins its segment's fd so a
 * checkpoint that drops the segment meanwhile does not close it under the read.
 */
#include "log_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void log_read_done(struct io_op *op);

static void log_read_finish(struct log_read_slot *slot, int error,
                            const struct log_record *record)
{
    struct log *log = slot->log;
    struct log_segment *seg = slot->segment;
    slot->busy = false;
    log->reads_active--;
    seg->reads--;
    slot->done(slot->ctx, error, record);
    log_segment_release(seg);
}

static int log_read_submit(struct log_read_slot *slot, uint32_t from, uint32_t to)
{
    struct io_op *op = &slot->op;
    memset(op, 0, sizeof(*op));
    op->kind = IO_READ;
    op->fd = slot->segment->fd;
    op->buf = slot->buf + from;
    op->len = to - from;
    op->offset = slot->pos.batch_offset + from;
    op->done = log_read_done;
    op->ctx = slot;
    log_overlap_note(slot->log, LOG_OVERLAP_READ);
    return io_submit(slot->log->backend, op);
}

/* The whole batch is in slot->buf: verify, decode, find the record. */
static void log_read_deliver(struct log_read_slot *slot)
{
    struct log *log = slot->log;
    const struct batch_header *h = &slot->header;
    if (!batch_payload_valid(h, slot->buf + BATCH_HEADER_SIZE)) {
        log_read_finish(slot, LOG_ECORRUPT, NULL);
        return;
    }
    if (h->codec == BATCH_CODEC_LZ4 &&
        batch_buffer_grow(&log->read_scratch, &log->read_scratch_size, h->raw_len) < 0) {
        log_read_finish(slot, -ENOMEM, NULL);
        return;
    }
    const uint8_t *raw = batch_payload_decode(h, slot->buf + BATCH_HEADER_SIZE,
                                              log->read_scratch, log->read_scratch_size);
    if (raw == NULL) {
        log_read_finish(slot, LOG_ECORRUPT, NULL);
        return;
    }
    struct batch_cursor cursor = {.raw = raw, .raw_len = h->raw_len};
    struct log_record rec = {.pos = slot->pos};
    const uint8_t *data = NULL;
    if (slot->each != NULL) {
        for (uint64_t seq = h->base_seq; seq < h->base_seq + h->record_count; seq++) {
            bool ok = batch_cursor_next(&cursor, &rec.type, &data, &rec.len);
            SPOOL_ASSERT(ok); /* batch_payload_decode walked every record */
            rec.pos.seq = seq;
            rec.data = data;
            slot->each(slot->ctx, &rec);
        }
        log_read_finish(slot, 0, NULL);
        return;
    }
    for (uint64_t seq = h->base_seq; seq <= slot->pos.seq; seq++) {
        bool ok = batch_cursor_next(&cursor, &rec.type, &data, &rec.len);
        SPOOL_ASSERT(ok); /* batch_payload_decode walked every record */
    }
    rec.data = data;
    log_read_finish(slot, 0, &rec);
}

/* The first block arrived: check the header before trusting its length. */
static void log_read_header(struct log_read_slot *slot)
{
    struct batch_header *h = &slot->header;
    if (batch_header_check_seeded(slot->buf, slot->pos.segment_id, slot->segment->hash_seed, h) !=
            BATCH_OK ||
        slot->pos.seq < h->base_seq || slot->pos.seq >= h->base_seq + h->record_count) {
        log_read_finish(slot, LOG_ECORRUPT, NULL);
        return;
    }
    if (h->total_len == BATCH_ALIGN) {
        log_read_deliver(slot);
        return;
    }
    int rc = batch_buffer_grow(&slot->buf, &slot->buf_size, h->total_len);
    if (rc == 0)
        rc = log_read_submit(slot, BATCH_ALIGN, h->total_len);
    if (rc < 0)
        log_read_finish(slot, rc, NULL);
}

static void log_read_done(struct io_op *op)
{
    struct log_read_slot *slot = op->ctx;
    if (op->result <= 0) {
        log_read_finish(slot, op->result < 0 ? (int)op->result : LOG_ECORRUPT, NULL);
        return;
    }
    uint32_t from = (uint32_t)(op->offset - slot->pos.batch_offset) + (uint32_t)op->result;
    uint32_t to = (uint32_t)(op->offset - slot->pos.batch_offset + op->len);
    if (from < to) {
        int rc = log_read_submit(slot, from, to); /* short read: fetch the rest */
        if (rc < 0)
            log_read_finish(slot, rc, NULL);
        return;
    }
    if (to == BATCH_ALIGN)
        log_read_header(slot);
    else
        log_read_deliver(slot);
}

static int log_read_start(struct log *log, const struct log_pos *pos,
                          void (*each)(void *ctx, const struct log_record *record),
                          void (*done)(void *ctx, int error, const struct log_record *record),
                          void *ctx)
{
    SPOOL_ASSERT(log != NULL && pos != NULL && done != NULL);
    if (pos->seq >= log_durable_seq_end(log))
        return -EAGAIN;
    if (pos->seq < pos->segment_id || pos->batch_offset < SEGMENT_HEADER_SIZE ||
        pos->batch_offset % BATCH_ALIGN != 0)
        return -EINVAL;
    struct log_segment *seg = log_segment_find(log, pos->segment_id);
    if (seg == NULL)
        return -ENOENT;
    if (log->reads_active == LOG_READS_MAX)
        return -EBUSY;
    struct log_read_slot *slot = NULL;
    for (uint32_t i = 0; i < LOG_READS_MAX && slot == NULL; i++)
        if (!log->reads[i].busy)
            slot = &log->reads[i];
    SPOOL_ASSERT(slot != NULL);
    int rc = batch_buffer_grow(&slot->buf, &slot->buf_size, BATCH_ALIGN);
    if (rc < 0)
        return rc;
    slot->busy = true;
    slot->segment = seg;
    slot->pos = *pos;
    slot->each = each;
    slot->done = done;
    slot->ctx = ctx;
    rc = log_read_submit(slot, 0, BATCH_ALIGN);
    if (rc < 0) {
        slot->busy = false;
        return rc;
    }
    seg->reads++;
    log->reads_active++;
    return 0;
}

int log_read(struct log *log, const struct log_pos *pos,
             void (*done)(void *ctx, int error, const struct log_record *record), void *ctx)
{
    return log_read_start(log, pos, NULL, done, ctx);
}

int log_read_batch(struct log *log, const struct log_pos *pos,
                   void (*each)(void *ctx, const struct log_record *record),
                   void (*done)(void *ctx, int error, const struct log_record *record),
                   void *ctx)
{
    SPOOL_ASSERT(each != NULL);
    return log_read_start(log, pos, each, done, ctx);
}
