/*
 * The log decoder shared by recovery and log_scan (see scan.h for what it decides).
 *
 * Sync points and seals (v2): a batch records the offset below which its segment was
 * fdatasync'ed when it was built (batch_synced_floor; v1 batches of the always mode imply
 * their own offset), so damage below a later batch's sync point was durable: corruption, not
 * a torn tail. A segment ends in a seal when a successor was made; the newest segment being
 * sealed means its successor is gone (MISSING_SEGMENT).
 *
 * Order of work: list the directory; load the checkpoint (it says which segments must exist
 * and from which seq records are replayed); drop from consideration the leftovers of
 * unlinks that had not become durable; check that every listed segment exists; read the
 * newest segment's header first (a header that never became durable, in a file holding no
 * valid batch, is a torn roll, not damage); then, oldest first, check each segment's link to
 * the one before it and walk its batches. Everything here is synchronous (io_sync): it runs
 * before serving, or in a tool.
 *
 * Invariant: records reach the callback only from batches that fully verified and continue
 * the seq and hash chain, so replay never sees a record recovery would reject later in the
 * same batch. (Records of earlier batches may have been handed out before a later damage is
 * found; recovery then fails as a whole.)
 */
#include "scan.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void scan_reader_init(struct scan_reader *reader, struct io_backend *backend)
{
    memset(reader, 0, sizeof(*reader));
    reader->backend = backend;
}

void scan_reader_free(struct scan_reader *reader)
{
    free(reader->buf);
    free(reader->scratch);
    memset(reader, 0, sizeof(*reader));
}

void scan_damage_set(struct log_damage *damage, enum log_damage_kind kind, uint64_t segment_id,
                     uint64_t offset, uint64_t seq_first, uint64_t seq_last, const char *fmt, ...)
{
    damage->kind = kind;
    damage->segment_id = segment_id;
    damage->offset = offset;
    damage->seq_first = seq_first;
    damage->seq_last = seq_last;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(damage->detail, sizeof(damage->detail), fmt, ap);
    va_end(ap);
}

/* Read len bytes at offset; what lies past the end of the file reads as zero. */
static int scan_pread(struct io_backend *backend, int fd, uint8_t *buf, uint32_t len,
                      uint64_t offset)
{
    uint32_t done = 0;
    while (done < len) {
        int64_t n = io_sync_pread(backend, fd, buf + done, len - done, offset + done);
        if (n < 0)
            return (int)n;
        if (n == 0)
            break;
        done += (uint32_t)n;
    }
    memset(buf + done, 0, len - done);
    return 0;
}

/* The rest of the batch (after its first block): payload hash, decode, framing. */
static int scan_read_payload(struct scan_reader *r, int fd, uint64_t offset,
                             const struct batch_header *h, const uint8_t **raw,
                             struct log_damage *damage)
{
    if (h->total_len > BATCH_ALIGN) {
        int rc = scan_pread(r->backend, fd, r->buf + BATCH_ALIGN, h->total_len - BATCH_ALIGN,
                            offset + BATCH_ALIGN);
        if (rc < 0)
            return rc;
    }
    uint64_t seq_last = h->base_seq + h->record_count - 1;
    if (!batch_payload_valid(h, r->buf + BATCH_HEADER_SIZE)) {
        scan_damage_set(damage, LOG_DAMAGE_BAD_PAYLOAD, h->segment_id, offset, h->base_seq,
                        seq_last, "payload hash wrong");
        return SCAN_BATCH_BAD;
    }
    if (h->codec == BATCH_CODEC_LZ4 && batch_buffer_grow(&r->scratch, &r->scratch_size, h->raw_len) < 0)
        return -ENOMEM;
    *raw = batch_payload_decode(h, r->buf + BATCH_HEADER_SIZE, r->scratch, r->scratch_size);
    if (*raw == NULL) {
        scan_damage_set(damage, LOG_DAMAGE_BAD_PAYLOAD, h->segment_id, offset, h->base_seq,
                        seq_last, "payload does not decode into %u records", h->record_count);
        return SCAN_BATCH_BAD;
    }
    return SCAN_BATCH_OK;
}

bool scan_block_stale(const uint8_t *block, uint64_t segment_id)
{
    uint32_t magic;
    uint64_t id;
    memcpy(&magic, block, sizeof(magic));
    memcpy(&id, block + offsetof(struct batch_header, segment_id), sizeof(id));
    return magic != BATCH_MAGIC || id != segment_id;
}

int scan_read_batch(struct scan_reader *r, int fd, uint64_t segment_id, uint64_t hash_seed,
                    bool recycled, uint64_t offset, uint64_t limit, struct batch_header *h,
                    const uint8_t **raw, bool *header_valid, struct log_damage *damage)
{
    SPOOL_ASSERT(offset % BATCH_ALIGN == 0);
    SPOOL_ASSERT(offset + BATCH_ALIGN <= limit);
    *header_valid = false;
    if (batch_buffer_grow(&r->buf, &r->buf_size, BATCH_ALIGN) < 0)
        return -ENOMEM;
    int rc = scan_pread(r->backend, fd, r->buf, BATCH_ALIGN, offset);
    if (rc < 0)
        return rc;
    enum batch_check check = batch_header_check_seeded(r->buf, segment_id, hash_seed, h);
    if (check == BATCH_ZERO)
        return SCAN_BATCH_END;
    if (check != BATCH_OK && recycled && scan_block_stale(r->buf, segment_id))
        return SCAN_BATCH_END; /* the older segment's bytes: nothing was written here */
    if (check != BATCH_OK) {
        scan_damage_set(damage, LOG_DAMAGE_BAD_HEADER, segment_id, offset, 0, 0,
                        "batch header: %s", batch_check_name(check));
        return SCAN_BATCH_BAD;
    }
    *header_valid = true;
    if (batch_synced_floor(h, offset) > offset) {
        scan_damage_set(damage, LOG_DAMAGE_BAD_HEADER, segment_id, offset, h->base_seq,
                        h->base_seq + h->record_count - 1,
                        "batch claims a sync point %llu beyond its own offset",
                        (unsigned long long)batch_synced_floor(h, offset));
        return SCAN_BATCH_BAD;
    }
    if (offset + h->total_len > limit) {
        scan_damage_set(damage, LOG_DAMAGE_BAD_HEADER, segment_id, offset, h->base_seq,
                        h->base_seq + h->record_count - 1,
                        "batch of %u bytes runs past the segment end %llu", h->total_len,
                        (unsigned long long)limit);
        return SCAN_BATCH_BAD;
    }
    if (batch_buffer_grow(&r->buf, &r->buf_size, h->total_len) < 0)
        return -ENOMEM;
    return scan_read_payload(r, fd, offset, h, raw, damage);
}

/* Is block all zero? Compared a word at a time: the probe streams whole segment tails. */
static bool scan_block_zero(const uint8_t *block)
{
    static const uint8_t zero[BATCH_ALIGN];
    return memcmp(block, zero, BATCH_ALIGN) == 0;
}

static bool scan_block_batch_magic(const uint8_t *block)
{
    uint32_t magic;
    memcpy(&magic, block, sizeof(magic));
    return magic == BATCH_MAGIC;
}

/* The probe in a recycled segment met a non-zero block at offset: a stale one is none of
 * this segment's bytes; one that claims to be a batch of this segment is, and so is the whole
 * extent its header names when the header verifies (its payload blocks look stale). */
static void scan_probe_recycled_end(struct scan_segment *seg, const uint8_t *block,
                                    uint64_t offset, uint64_t limit)
{
    SPOOL_ASSERT(seg->recycled);
    if (scan_block_stale(block, seg->id))
        return;
    uint64_t end = offset + BATCH_ALIGN;
    struct batch_header h;
    if (batch_header_check_seeded(block, seg->id, seg->hash_seed, &h) == BATCH_OK &&
        offset + h.total_len <= limit && offset + h.total_len > end)
        end = offset + h.total_len;
    if (end > seg->nonzero_end)
        seg->nonzero_end = end;
}

/*
 * Look at every block from `from` to the segment end: note the end of the last non-zero
 * block, and whether any block at or after valid_from is a valid batch header of this
 * segment ("something valid after"), and whether one of those records a sync point beyond
 * `from` (then the bytes at `from` were durable once).
 */
static int scan_probe(struct scan_reader *r, struct scan_segment *seg, uint64_t from,
                      uint64_t valid_from)
{
    uint64_t limit = seg->header.segment_size;
    uint64_t file_end = seg->file_size < limit ? seg->file_size : limit;
    seg->nonzero_end = from;
    seg->valid_after = false;
    seg->valid_after_synced = false;
    seg->seq_last_after = 0;
    if (batch_buffer_grow(&r->buf, &r->buf_size, SCAN_PROBE_CHUNK_BYTES) < 0)
        return -ENOMEM;
    for (uint64_t off = from; off < file_end; off += SCAN_PROBE_CHUNK_BYTES) {
        uint64_t n = file_end - off;
        if (n > SCAN_PROBE_CHUNK_BYTES)
            n = SCAN_PROBE_CHUNK_BYTES;
        n = (n + BATCH_ALIGN - 1) & ~(uint64_t)(BATCH_ALIGN - 1);
        int rc = scan_pread(r->backend, seg->fd, r->buf, (uint32_t)n, off);
        if (rc < 0)
            return rc;
        for (uint64_t b = 0; b < n; b += BATCH_ALIGN) {
            if (scan_block_zero(r->buf + b))
                continue;
            struct batch_header h;
            if (seg->recycled) {
                scan_probe_recycled_end(seg, r->buf + b, off + b, limit);
            } else {
                seg->nonzero_end = off + b + BATCH_ALIGN;
            }
            if (off + b < valid_from)
                continue;
            if (seg->hash_seed == 0 && scan_block_batch_magic(r->buf + b)) {
                /* The segment header is unreadable, so is its seed: a block that looks like a
                 * batch must be taken for one (never delete what might be data). */
                if (!seg->valid_after)
                    seg->valid_after_offset = off + b;
                seg->valid_after = true;
                seg->valid_after_synced = true;
                continue;
            }
            if (batch_header_check_seeded(r->buf + b, seg->id, seg->hash_seed, &h) !=
                       BATCH_OK) {
                continue;
            }
            uint64_t floor = batch_synced_floor(&h, off + b);
            if (floor > off + b)
                continue; /* a claim beyond itself: not a batch this log wrote */
            if (!seg->valid_after)
                seg->valid_after_offset = off + b;
            if (h.base_seq + h.record_count - 1 > seg->seq_last_after)
                seg->seq_last_after = h.base_seq + h.record_count - 1;
            seg->valid_after = true;
            if (floor > from)
                seg->valid_after_synced = true;
        }
    }
    return 0;
}

/* Hand one verified batch and its records (seq >= from) to the callbacks. */
static int scan_emit(const struct log_scan_callbacks *cb, const struct scan_segment *seg,
                     uint64_t offset, const struct batch_header *h, const uint8_t *raw,
                     uint64_t from)
{
    if (cb == NULL || (h->flags & BATCH_FLAG_SEAL) != 0)
        return 0; /* a seal holds no records */
    if (cb->batch != NULL) {
        int rc = cb->batch(cb->ctx, seg->id, offset, h->base_seq, h->record_count,
                           h->stored_len, h->raw_len, h->codec);
        if (rc != 0)
            return rc;
    }
    if (cb->record == NULL || h->base_seq + h->record_count <= from)
        return 0;
    struct batch_cursor cursor = {.raw = raw, .raw_len = h->raw_len};
    struct log_record rec = {.pos = {.segment_id = seg->id, .batch_offset = offset}};
    const uint8_t *data;
    for (uint64_t seq = h->base_seq; batch_cursor_next(&cursor, &rec.type, &data, &rec.len);
         seq++) {
        if (seq < from)
            continue;
        rec.pos.seq = seq;
        rec.data = data;
        int rc = cb->record(cb->ctx, &rec);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Check a verified batch's place in the chain; false (with damage) when it breaks it. */
static bool scan_batch_chained(struct scan_segment *seg, uint64_t offset,
                               const struct batch_header *h)
{
    uint64_t last = h->base_seq + h->record_count - 1;
    if (h->base_seq != seg->seq_end) {
        scan_damage_set(&seg->damage, LOG_DAMAGE_SEQ_GAP, seg->id, offset, h->base_seq, last,
                        "batch starts at seq %llu, expected %llu",
                        (unsigned long long)h->base_seq, (unsigned long long)seg->seq_end);
        return false;
    }
    if (h->prev_batch_hash != seg->last_hash) {
        scan_damage_set(&seg->damage, LOG_DAMAGE_BAD_CHAIN, seg->id, offset, h->base_seq, last,
                        "batch does not link to the previous batch's hash");
        return false;
    }
    return true;
}

/* Walk the batches of a segment whose header verified, from offset; then probe what lies
 * after the last valid one. resync (tools only, after damage): take the first batch as the
 * start of the chain instead of checking it against what came before. */
static int scan_segment_walk(struct scan_reader *r, struct scan_segment *seg,
                             const struct log_scan_callbacks *cb, uint64_t from,
                             uint64_t offset, bool resync)
{
    uint64_t limit = seg->header.segment_size;
    uint64_t skip = BATCH_ALIGN;
    SPOOL_ASSERT(offset >= SEGMENT_HEADER_SIZE && offset % BATCH_ALIGN == 0);
    if (!seg->walked) {
        seg->seq_end = seg->id;
        seg->last_hash = seg->header.header_hash;
    }
    seg->walked = true;
    seg->end = SCAN_END_FULL;
    while (offset + BATCH_ALIGN <= limit) {
        struct batch_header h;
        const uint8_t *raw = NULL;
        bool header_valid;
        int rc = scan_read_batch(r, seg->fd, seg->id, seg->hash_seed, seg->recycled, offset,
                                 limit, &h, &raw, &header_valid, &seg->damage);
        if (rc < 0)
            return rc;
        if (rc == SCAN_BATCH_END) {
            seg->end = SCAN_END_CLEAN;
            skip = BATCH_ALIGN;
            break;
        }
        /* Where "something valid after" starts: past this batch if its header is trusted,
         * else the next block (never a length left over from an earlier batch). */
        skip = header_valid && offset + h.total_len <= limit ? h.total_len : BATCH_ALIGN;
        if (rc == SCAN_BATCH_OK && resync) {
            seg->seq_end = h.base_seq;
            seg->last_hash = h.prev_batch_hash;
        }
        resync = false;
        if (rc == SCAN_BATCH_BAD || !scan_batch_chained(seg, offset, &h)) {
            seg->end = SCAN_END_DAMAGE;
            break;
        }
        if ((h.flags & BATCH_FLAG_SEAL) != 0) {
            /* The end of a segment that has a successor; nothing may follow it. */
            seg->sealed = true;
            seg->seal_offset = offset;
            seg->end = SCAN_END_CLEAN;
            break;
        }
        rc = scan_emit(cb, seg, offset, &h, raw, from);
        if (rc != 0)
            return rc;
        offset += h.total_len;
        seg->seq_end += h.record_count;
        seg->last_hash = h.header_hash;
        seg->batch_count++;
        seg->record_count += h.record_count;
    }
    seg->end_offset = offset;
    seg->nonzero_end = offset;
    if (seg->end == SCAN_END_FULL)
        return 0;
    return scan_probe(r, seg, offset, offset + (seg->sealed ? BATCH_ALIGN : skip));
}

/* ---- the directory ---- */

struct scan_list {
    uint64_t *ids;
    uint32_t count;
    uint32_t capacity;
    bool checkpoint_tmp;
    bool recycle_file;
    int error;
};

static void scan_list_entry(void *ctx, const char *name)
{
    struct scan_list *list = ctx;
    uint64_t id;
    if (strcmp(name, CHECKPOINT_TMP_NAME) == 0)
        list->checkpoint_tmp = true;
    if (strcmp(name, SCAN_RECYCLE_NAME) == 0)
        list->recycle_file = true;
    if (!segment_name_parse(name, &id) || list->error != 0)
        return;
    if (list->count == list->capacity) {
        uint32_t cap = list->capacity ? list->capacity * 2 : 64;
        uint64_t *p = realloc(list->ids, cap * sizeof(*p));
        if (p == NULL) {
            list->error = -ENOMEM;
            return;
        }
        list->ids = p;
        list->capacity = cap;
    }
    list->ids[list->count++] = id;
}

static int scan_id_compare(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static bool scan_listed(const struct scan_result *res, uint64_t id)
{
    if (!res->has_checkpoint)
        return false;
    for (uint32_t i = 0; i < res->checkpoint.segment_count; i++)
        if (checkpoint_segment_id(&res->checkpoint, i) == id)
            return true;
    return false;
}

struct scan_state {
    struct io_backend *backend;
    const struct scan_options *options;
    struct scan_result *result;
    struct scan_reader reader;
    uint64_t from;
};

/* Record damage: report it, keep the first with its cut point. True when the scan must stop
 * (recovery stops at the first damage). */
static bool scan_report(struct scan_state *st, const struct log_damage *damage,
                        uint32_t cut_index, uint64_t cut_offset)
{
    const struct log_scan_callbacks *cb = st->options->callbacks;
    if (cb != NULL && cb->damage != NULL)
        cb->damage(cb->ctx, damage);
    if (damage->kind == LOG_DAMAGE_TORN_TAIL)
        return false;
    if (!st->result->damaged) {
        st->result->damaged = true;
        st->result->damage = *damage;
        st->result->cut_index = cut_index;
        st->result->cut_offset = cut_offset;
    }
    return st->options->recovery;
}

static int scan_load_checkpoint(struct scan_state *st)
{
    struct scan_result *res = st->result;
    char detail[sizeof(res->damage.detail)];
    int rc = checkpoint_load(st->backend, &res->checkpoint_buf, &res->checkpoint, detail,
                             sizeof(detail));
    if (rc == -ENOENT)
        return 0;
    if (rc == LOG_ECORRUPT) {
        struct log_damage damage;
        scan_damage_set(&damage, LOG_DAMAGE_BAD_CHECKPOINT, 0, 0, 0, 0, "%s", detail);
        if (st->options->recovery && !st->options->salvage) {
            scan_report(st, &damage, 0, 0);
            return LOG_ECORRUPT;
        }
        /* Tools go on without it; salvage replays every segment there is instead. */
        const struct log_scan_callbacks *cb = st->options->callbacks;
        if (cb != NULL && cb->damage != NULL)
            cb->damage(cb->ctx, &damage);
        return 0;
    }
    if (rc < 0)
        return rc;
    res->has_checkpoint = true;
    const struct log_scan_callbacks *cb = st->options->callbacks;
    if (cb != NULL && cb->checkpoint != NULL)
        cb->checkpoint(cb->ctx, res->checkpoint.anchor_seq, res->checkpoint.payload,
                       res->checkpoint.payload_len);
    return 0;
}

/* Split the listed ids into segments of the log and leftovers of unlinks. */
static int scan_collect(struct scan_state *st, struct scan_list *list)
{
    struct scan_result *res = st->result;
    if (list->count > 0) /* qsort's base may not be NULL, even for zero elements */
        qsort(list->ids, list->count, sizeof(*list->ids), scan_id_compare);
    res->segments = calloc(list->count + 1, sizeof(*res->segments));
    res->leftovers = calloc(list->count + 1, sizeof(*res->leftovers));
    if (res->segments == NULL || res->leftovers == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < list->count; i++) {
        uint64_t id = list->ids[i];
        if (res->has_checkpoint && id < res->checkpoint.anchor_segment_id &&
            !scan_listed(res, id)) {
            res->leftovers[res->leftover_count++] = id;
            continue;
        }
        res->segments[res->segment_count++] = (struct scan_segment){.id = id, .fd = -1};
    }
    return 0;
}

/* Every segment the checkpoint lists must exist. True when the scan must stop. */
static bool scan_check_listed(struct scan_state *st)
{
    struct scan_result *res = st->result;
    if (!res->has_checkpoint)
        return false;
    for (uint32_t k = 0; k < res->checkpoint.segment_count; k++) {
        uint64_t id = checkpoint_segment_id(&res->checkpoint, k);
        uint32_t i = 0;
        while (i < res->segment_count && res->segments[i].id < id)
            i++;
        if (i < res->segment_count && res->segments[i].id == id)
            continue;
        struct log_damage damage;
        scan_damage_set(&damage, LOG_DAMAGE_MISSING_SEGMENT, id, 0, id, 0,
                        "segment %llu is listed in the checkpoint but absent",
                        (unsigned long long)id);
        if (scan_report(st, &damage, i, 0))
            return true;
    }
    return false;
}

static int scan_segment_open(struct scan_state *st, struct scan_segment *seg)
{
    char name[SEGMENT_NAME_LEN + 1];
    segment_name(seg->id, name);
    int fd = io_sync_open(st->backend, name, st->options->recovery ? O_RDWR : O_RDONLY, 0);
    if (fd < 0)
        return fd;
    seg->fd = fd;
    struct io_op op = {.kind = IO_SIZE, .fd = fd};
    int rc = (int)io_sync(st->backend, &op);
    if (rc < 0)
        return rc;
    seg->file_size = op.size;
    uint8_t block[SEGMENT_HEADER_SIZE];
    rc = scan_pread(st->backend, fd, block, sizeof(block), 0);
    if (rc < 0)
        return rc;
    seg->header_check = segment_header_check(block, seg->id, &seg->header);
    if (seg->header_check == SEGMENT_OK) {
        seg->hash_seed = segment_hash_seed(&seg->header);
        seg->recycled = segment_recycled(&seg->header);
    }
    return 0;
}

/* The newest file's header never became durable and it holds no valid batch: a roll torn by
 * a crash. It is set aside (recovery deletes it). */
static int scan_torn_roll(struct scan_state *st)
{
    struct scan_result *res = st->result;
    struct scan_segment *seg = &res->segments[res->segment_count - 1];
    if (seg->header_check == SEGMENT_OK || seg->header_check == SEGMENT_BAD_VERSION ||
        scan_listed(res, seg->id))
        return 0;
    seg->header.segment_size = (seg->file_size + BATCH_ALIGN - 1) & ~(uint64_t)(BATCH_ALIGN - 1);
    int rc = scan_probe(&st->reader, seg, SEGMENT_HEADER_SIZE, SEGMENT_HEADER_SIZE);
    if (rc < 0 || seg->valid_after)
        return rc;
    struct log_damage damage;
    scan_damage_set(&damage, LOG_DAMAGE_TORN_TAIL, seg->id, 0, seg->id, 0,
                    "segment header never became durable (%s)",
                    segment_check_name(seg->header_check));
    scan_report(st, &damage, 0, 0);
    res->torn_roll = true;
    res->torn_roll_id = seg->id;
    int close_rc = io_sync_simple(st->backend, IO_CLOSE, seg->fd);
    (void)close_rc; /* nothing was written through it */
    seg->fd = -1;
    res->segment_count--;
    return 0;
}

/* A predecessor that is not the previous present segment: fine only if it was dropped by a
 * checkpoint (older than the anchor's segment and no longer listed). */
static bool scan_link_gap(struct scan_state *st, uint32_t i)
{
    struct scan_result *res = st->result;
    struct scan_segment *seg = &res->segments[i];
    uint64_t prev_id = seg->header.prev_segment_id;
    uint64_t floor = i > 0 ? res->segments[i - 1].id : 0;
    bool dropped = res->has_checkpoint && seg->id <= res->checkpoint.anchor_segment_id &&
                   prev_id > floor && !scan_listed(res, prev_id);
    if (dropped)
        return false;
    if (i == 0 && prev_id == 0 && seg->id == 1)
        return false;
    if (i == 0 && st->options->salvage) {
        /* Salvage keeps what it has rather than dropping the whole log. */
        return false;
    }
    struct log_damage damage;
    if (prev_id == 0 || prev_id < floor)
        scan_damage_set(&damage, LOG_DAMAGE_BAD_CHAIN, seg->id, 0, seg->id, 0,
                        "segment header links to segment %llu, not to %llu",
                        (unsigned long long)prev_id, (unsigned long long)floor);
    else
        scan_damage_set(&damage, LOG_DAMAGE_MISSING_SEGMENT, prev_id, 0, prev_id,
                        seg->id - 1, "segment %llu links to segment %llu, which is absent",
                        (unsigned long long)seg->id, (unsigned long long)prev_id);
    uint64_t cut_offset = i > 0 ? res->segments[i - 1].end_offset : 0;
    return scan_report(st, &damage, i > 0 ? i - 1 : 0, cut_offset);
}

/* Check segment i's header link to its predecessor. True when the scan must stop. */
static bool scan_link(struct scan_state *st, uint32_t i)
{
    struct scan_result *res = st->result;
    struct scan_segment *seg = &res->segments[i];
    struct scan_segment *prev = i > 0 ? &res->segments[i - 1] : NULL;
    if (prev == NULL || seg->header.prev_segment_id != prev->id)
        return scan_link_gap(st, i);
    if (!prev->walked)
        return false; /* its damage is already reported */
    struct log_damage damage;
    if (prev->seq_end != seg->id) {
        scan_damage_set(&damage, LOG_DAMAGE_SEQ_GAP, prev->id, prev->end_offset, prev->seq_end,
                        seg->id > prev->seq_end ? seg->id - 1 : 0,
                        "sealed segment ends before seq %llu but its successor %llu starts "
                        "there", (unsigned long long)prev->seq_end, (unsigned long long)seg->id);
    } else if (prev->last_hash != seg->header.prev_last_batch_hash) {
        scan_damage_set(&damage, LOG_DAMAGE_BAD_CHAIN, seg->id, 0, seg->id, 0,
                        "segment header does not link to the last batch of segment %llu",
                        (unsigned long long)prev->id);
    } else {
        return false;
    }
    return scan_report(st, &damage, i - 1, prev->end_offset);
}

/*
 * Judge how a walked segment ended. True when the scan must stop. A stop with nothing valid
 * after it in the newest segment is a torn tail. So is one followed only by batches whose
 * sync points lie at or before it (the interval and none modes write batches without a
 * per-batch fdatasync, and the kernel may write those back out of order); a later batch whose
 * sync point lies beyond it (every batch of the always mode, and an interval/none batch built
 * after an fdatasync that covered it) proves the bytes were durable once: damage.
 */
static bool scan_classify(struct scan_state *st, uint32_t i)
{
    struct scan_result *res = st->result;
    struct scan_segment *seg = &res->segments[i];
    bool newest = i + 1 == res->segment_count;
    bool damaged = seg->end == SCAN_END_DAMAGE;
    if (seg->end == SCAN_END_FULL || (!damaged && !seg->valid_after))
        return false;
    if (!damaged)
        scan_damage_set(&seg->damage, LOG_DAMAGE_BAD_HEADER, seg->id, seg->end_offset,
                        seg->seq_end, 0, "%s followed by a valid batch",
                        seg->sealed ? "seal" : seg->recycled ? "end of the written part"
                                                             : "zero block");
    struct log_damage damage = seg->damage;
    if (newest && !seg->sealed && !seg->valid_after_synced) {
        res->torn_tail = true;
        damage.kind = LOG_DAMAGE_TORN_TAIL;
        return scan_report(st, &damage, i, seg->end_offset);
    }
    if (newest) {
        size_t n = strlen(damage.detail);
        snprintf(damage.detail + n, sizeof(damage.detail) - n, "; a valid batch follows");
    }
    return scan_report(st, &damage, i, seg->end_offset);
}

/* Open, link-check, walk and judge segment i. 1 to stop, 0 to go on, or an error. */
static int scan_one(struct scan_state *st, uint32_t i)
{
    struct scan_result *res = st->result;
    struct scan_segment *seg = &res->segments[i];
    if (seg->header_check == SEGMENT_BAD_VERSION) {
        scan_damage_set(&res->damage, LOG_DAMAGE_BAD_SEGMENT_HEADER, seg->id, 0, seg->id, 0,
                        "segment format version %u unknown", seg->header.version);
        return LOG_EVERSION;
    }
    if (seg->header_check != SEGMENT_OK) {
        struct log_damage damage;
        scan_damage_set(&damage, LOG_DAMAGE_BAD_SEGMENT_HEADER, seg->id, 0, seg->id, 0,
                        "segment header: %s", segment_check_name(seg->header_check));
        return scan_report(st, &damage, i, 0) ? 1 : 0;
    }
    if (scan_link(st, i))
        return 1;
    int rc = scan_segment_walk(&st->reader, seg, st->options->callbacks, st->from,
                               SEGMENT_HEADER_SIZE, false);
    bool stop = rc == 0 && scan_classify(st, i);
    /* Tools go on past damage: resume at the next valid batch header of the segment. Each
     * round starts further on, so this ends. */
    while (rc == 0 && !stop && !st->options->recovery && seg->end != SCAN_END_FULL &&
           seg->valid_after) {
        rc = scan_segment_walk(&st->reader, seg, st->options->callbacks, st->from,
                               seg->valid_after_offset, true);
        stop = rc == 0 && scan_classify(st, i);
    }
    res->batch_count += seg->batch_count;
    res->record_count += seg->record_count;
    if (rc != 0)
        return rc;
    return stop ? 1 : 0;
}

static bool scan_file_exists(struct io_backend *backend, uint64_t segment_id)
{
    char name[SEGMENT_NAME_LEN + 1];
    segment_name(segment_id, name);
    int fd = io_sync_open(backend, name, O_RDONLY, 0);
    if (fd < 0)
        return false;
    int rc = io_sync_simple(backend, IO_CLOSE, fd);
    (void)rc; /* opened read-only, only to see that it exists */
    return true;
}

/* The newest segment is sealed: the successor its seal names was durable and named before
 * the seal was written, so it was removed. True when the scan must stop. */
static bool scan_check_successor(struct scan_state *st)
{
    struct scan_result *res = st->result;
    if (res->segment_count == 0)
        return false;
    uint32_t i = res->segment_count - 1;
    struct scan_segment *seg = &res->segments[i];
    if (!seg->walked || !seg->sealed)
        return false;
    struct log_damage damage;
    if (res->torn_roll && res->torn_roll_id == seg->seq_end) {
        /* The seal was written after the successor's header was durable: that header is
         * damaged, not a roll torn by a crash. */
        res->torn_roll = st->options->salvage; /* salvage deletes it, as a torn roll */
        scan_damage_set(&damage, LOG_DAMAGE_BAD_SEGMENT_HEADER, seg->seq_end, 0, seg->seq_end,
                        0, "segment header does not verify, but segment %020llu is sealed and "
                        "names it", (unsigned long long)seg->id);
        return scan_report(st, &damage, i, seg->seal_offset);
    }
    if (!st->options->recovery && scan_file_exists(st->backend, seg->seq_end))
        return false; /* a live directory: a roll named it after the listing */
    scan_damage_set(&damage, LOG_DAMAGE_MISSING_SEGMENT, seg->seq_end, 0, seg->seq_end, 0,
                    "segment %020llu is sealed (offset %llu) and names its successor "
                    "%020llu.seg, which is absent",
                    (unsigned long long)seg->id, (unsigned long long)seg->seal_offset,
                    (unsigned long long)seg->seq_end);
    return scan_report(st, &damage, i, seg->seal_offset);
}

static int scan_segments(struct scan_state *st)
{
    struct scan_result *res = st->result;
    for (uint32_t i = 0; i < res->segment_count; i++) {
        int rc = scan_segment_open(st, &res->segments[i]);
        if (rc < 0)
            return rc;
    }
    if (res->segment_count > 0) {
        int rc = scan_torn_roll(st);
        if (rc < 0)
            return rc;
    }
    for (uint32_t i = 0; i < res->segment_count; i++) {
        int rc = scan_one(st, i);
        if (rc == 1)
            return LOG_ECORRUPT;
        if (rc != 0)
            return rc;
    }
    return scan_check_successor(st) ? LOG_ECORRUPT : 0;
}

static void scan_finish(struct scan_state *st)
{
    struct scan_result *res = st->result;
    res->next_seq = 1;
    for (uint32_t i = res->segment_count; i > 0; i--) {
        if (res->segments[i - 1].walked) {
            res->next_seq = res->segments[i - 1].seq_end;
            break;
        }
    }
}

int scan_run(struct io_backend *backend, const struct scan_options *options,
             struct scan_result *result)
{
    memset(result, 0, sizeof(*result));
    struct scan_state st = {.backend = backend, .options = options, .result = result};
    scan_reader_init(&st.reader, backend);
    struct scan_list list = {0};
    int rc = backend->ops->list(backend, scan_list_entry, &list);
    if (rc == 0)
        rc = list.error;
    result->checkpoint_tmp = list.checkpoint_tmp;
    result->recycle_file = list.recycle_file;
    if (rc == 0)
        rc = scan_load_checkpoint(&st);
    st.from = options->replay_from_seq;
    if (st.from == UINT64_MAX)
        st.from = result->has_checkpoint ? result->checkpoint.anchor_seq : 0;
    if (rc == 0)
        rc = scan_collect(&st, &list);
    if (rc == 0 && scan_check_listed(&st))
        rc = LOG_ECORRUPT;
    if (rc == 0)
        rc = scan_segments(&st);
    scan_finish(&st);
    if (rc == 0 && result->has_checkpoint && result->checkpoint.anchor_seq > result->next_seq) {
        struct log_damage damage;
        scan_damage_set(&damage, LOG_DAMAGE_BAD_CHECKPOINT, result->checkpoint.anchor_segment_id,
                        0, result->next_seq, result->checkpoint.anchor_seq - 1,
                        "checkpoint anchored at seq %llu beyond the log end %llu",
                        (unsigned long long)result->checkpoint.anchor_seq,
                        (unsigned long long)result->next_seq);
        if (scan_report(&st, &damage, result->segment_count, 0))
            rc = LOG_ECORRUPT;
    }
    free(list.ids);
    scan_reader_free(&st.reader);
    return rc;
}

void scan_result_free(struct io_backend *backend, struct scan_result *result)
{
    for (uint32_t i = 0; result->segments != NULL && i < result->segment_count; i++) {
        if (result->segments[i].fd >= 0) {
            int rc = io_sync_simple(backend, IO_CLOSE, result->segments[i].fd);
            (void)rc; /* read-only use so far, or already fdatasync'ed by the caller */
        }
    }
    free(result->segments);
    free(result->leftovers);
    free(result->checkpoint_buf);
    memset(result, 0, sizeof(*result));
}

int log_scan(struct io_backend *backend, const struct log_scan_callbacks *callbacks)
{
    SPOOL_ASSERT(backend != NULL && callbacks != NULL);
    struct scan_options options = {.recovery = false, .replay_from_seq = 0,
                                   .callbacks = callbacks};
    struct scan_result res;
    int rc = scan_run(backend, &options, &res);
    if (rc == 0 && res.damaged)
        rc = LOG_ECORRUPT;
    scan_result_free(backend, &res);
    return rc;
}
