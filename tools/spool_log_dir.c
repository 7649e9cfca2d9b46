/*
 * Loading a data directory for spool-log, read-only and without the lock.
 *
 * Three passes. (1) List the segment files and read each header (segment_header_check), for
 * sizes and the stats. (2) log_scan: the engine's own decoder hands over the checkpoint, every
 * batch and record that recovery would accept, and every problem it sees, classified exactly
 * as recovery classifies it (torn tail or damage). (3) For every damage inside a segment,
 * resync: probe the blocks after it with scan_read_batch (the same batch verifier) and keep
 * each batch that verifies and moves the seq forward. That closes the damaged region (its
 * byte length and seq range become exact: up to the next batch that verifies) and recovers the
 * records after it, which skip-corrupt salvage and dump need. A damage log_scan reported twice
 * (the walk stopping at a bad batch, then the next segment's link check finding the gap it
 * left) is one region: regions are keyed by (segment, offset).
 *
 * Jobs affected by a region: the ids found by decoding its damaged batch leniently when the
 * batch header itself verified (the payload hash failed, but most records usually still
 * parse), plus the ids whose PUT records must have been in the region: job ids grow with seq
 * (the broker assigns them in the order it appends PUTs), so an id between the last PUT before
 * the region and the first PUT after it, that appears in no PUT anywhere, was put inside it.
 */
#include "spool_log.h"

#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>

#include "scan.h"

/* Job ids listed per region: enough to act on by hand; the count is always exact. */
#define LOGDIR_REGION_IDS_MAX (1u << 16)

static void *grow(void *array, size_t *capacity, size_t count, size_t elem)
{
    if (count < *capacity)
        return array;
    size_t cap = *capacity == 0 ? 64 : *capacity * 2;
    void *p = realloc(array, cap * elem);
    SPOOL_ASSERT(p != NULL); /* a tool: running out of memory is fatal, not damage */
    *capacity = cap;
    return p;
}

static uint32_t logdir_intern(struct logdir *dir, const char *name, uint32_t len)
{
    for (uint32_t i = dir->queue_name_count; i > 0; i--) {
        const struct logdir_name *n = &dir->queue_names[i - 1];
        if (n->len == len && memcmp(n->name, name, len) == 0)
            return i - 1;
    }
    size_t cap = dir->queue_name_capacity;
    dir->queue_names =
        grow(dir->queue_names, &cap, dir->queue_name_count, sizeof(*dir->queue_names));
    dir->queue_name_capacity = (uint32_t)cap;
    struct logdir_name *n = &dir->queue_names[dir->queue_name_count];
    SPOOL_ASSERT(len <= LIMIT_QUEUE_NAME_MAX_BYTES); /* record_decode checked the name */
    memcpy(n->name, name, len);
    n->name[len] = '\0';
    n->len = len;
    return dir->queue_name_count++;
}

/* Keep what every command needs without the bytes: the job and queue a record names. */
static void logdir_rec_index(struct logdir *dir, struct logdir_rec *r, const void *data)
{
    struct record rec;
    r->queue = LOGDIR_QUEUE_NONE;
    r->decodes = record_decode(r->type, data, r->len, &rec) == 0;
    if (!r->decodes)
        return;
    if (rec.type == RECORD_PUT)
        r->queue = logdir_intern(dir, rec.u.put.queue, rec.u.put.queue_len);
    else if (rec.type == RECORD_RELOCATE)
        r->queue = logdir_intern(dir, rec.u.relocate.put.queue, rec.u.relocate.put.queue_len);
    else if (rec.type == RECORD_QUEUE_META)
        r->queue = logdir_intern(dir, rec.u.meta.name, rec.u.meta.name_len);
    else if (rec.type == RECORD_PURGE || rec.type == RECORD_DELETE_QUEUE)
        r->queue = logdir_intern(dir, rec.u.purge.name, rec.u.purge.name_len);
    if (rec.type != RECORD_QUEUE_META && rec.type != RECORD_PURGE &&
        rec.type != RECORD_DELETE_QUEUE)
        r->job_id = rec.id;
}

static void logdir_add_rec(struct logdir *dir, const struct log_record *record, bool resynced)
{
    dir->recs = grow(dir->recs, &dir->rec_capacity, dir->rec_count, sizeof(*dir->recs));
    struct logdir_rec *r = &dir->recs[dir->rec_count++];
    memset(r, 0, sizeof(*r));
    r->order = dir->rec_count - 1;
    r->seq = record->pos.seq;
    r->segment_id = record->pos.segment_id;
    r->offset = record->pos.batch_offset;
    r->type = record->type;
    r->resynced = resynced;
    r->len = record->len;
    logdir_rec_index(dir, r, record->data);
    if ((r->type == RECORD_PUT || r->type == RECORD_RELOCATE) && r->decodes)
        return; /* read back from its batch when needed (a body) */
    r->data = malloc(record->len == 0 ? 1 : record->len);
    SPOOL_ASSERT(r->data != NULL);
    memcpy(r->data, record->data, record->len);
}

static void logdir_add_batch(struct logdir *dir, const struct logdir_batch *batch)
{
    dir->batches =
        grow(dir->batches, &dir->batch_capacity, dir->batch_count, sizeof(*dir->batches));
    dir->batches[dir->batch_count++] = *batch;
}

/* ---- pass 2: log_scan callbacks ---- */

static int on_batch(void *ctx, uint64_t segment_id, uint64_t offset, uint64_t base_seq,
                    uint32_t record_count, uint32_t stored_len, uint32_t raw_len, uint8_t codec)
{
    struct logdir_batch b = {.segment_id = segment_id,
                             .offset = offset,
                             .base_seq = base_seq,
                             .record_count = record_count,
                             .stored_len = stored_len,
                             .raw_len = raw_len,
                             .codec = codec};
    logdir_add_batch(ctx, &b);
    return 0;
}

static int on_record(void *ctx, const struct log_record *record)
{
    logdir_add_rec(ctx, record, false);
    return 0;
}

static void on_damage(void *ctx, const struct log_damage *damage)
{
    struct logdir *dir = ctx;
    for (size_t i = 0; i < dir->damage_count; i++)
        if (dir->damages[i].d.segment_id == damage->segment_id &&
            dir->damages[i].d.offset == damage->offset && damage->kind != LOG_DAMAGE_BAD_CHECKPOINT)
            return; /* the same region seen again from the next segment's link check */
    dir->damages =
        grow(dir->damages, &dir->damage_capacity, dir->damage_count, sizeof(*dir->damages));
    dir->damages[dir->damage_count++] = (struct logdir_damage){.d = *damage};
}

static void on_checkpoint(void *ctx, uint64_t anchor_seq, const void *payload, uint32_t len)
{
    struct logdir *dir = ctx;
    dir->has_checkpoint = true;
    dir->checkpoint_anchor_seq = anchor_seq;
    dir->checkpoint_payload = malloc(len == 0 ? 1 : len);
    SPOOL_ASSERT(dir->checkpoint_payload != NULL);
    memcpy(dir->checkpoint_payload, payload, len);
    dir->checkpoint_len = len;
}

/* ---- pass 1: segment files ---- */

struct id_list {
    uint64_t *ids;
    size_t count;
    size_t capacity;
};

static void list_entry(void *ctx, const char *name)
{
    struct id_list *list = ctx;
    uint64_t id;
    if (!segment_name_parse(name, &id))
        return;
    list->ids = grow(list->ids, &list->capacity, list->count, sizeof(*list->ids));
    list->ids[list->count++] = id;
}

static int segment_read_header(struct logdir *dir, struct logdir_segment *seg)
{
    char name[SEGMENT_NAME_LEN + 1];
    segment_name(seg->id, name);
    int fd = io_sync_open(dir->backend, name, O_RDONLY, 0);
    if (fd < 0)
        return fd;
    struct io_op op = {.kind = IO_SIZE, .fd = fd};
    int rc = (int)io_sync(dir->backend, &op);
    uint8_t block[SEGMENT_HEADER_USED];
    memset(block, 0, sizeof(block));
    if (rc == 0) {
        seg->file_size = op.size;
        int64_t n = io_sync_pread(dir->backend, fd, block, sizeof(block), 0);
        rc = n < 0 ? (int)n : 0;
    }
    struct segment_header h;
    seg->header.hash_seed = seg->id;
    uint8_t full[SEGMENT_HEADER_SIZE];
    memset(full, 0, sizeof(full));
    memcpy(full, block, sizeof(block));
    enum segment_check check = rc == 0 ? segment_header_check(full, seg->id, &h) : SEGMENT_ZERO;
    if (check != SEGMENT_OK && check != SEGMENT_ZERO && h.magic == SEGMENT_MAGIC &&
        (h.version == SEGMENT_VERSION || h.version == SEGMENT_VERSION_V2) && h.hash_seed != 0) {
        /* A damaged v2/v3 header whose seed field is still there: its batches can verify. */
        seg->header.hash_seed = h.hash_seed;
    }
    if (check == SEGMENT_OK) {
        seg->header_ok = true;
        seg->header.segment_size = h.segment_size;
        seg->header.prev_segment_id = h.prev_segment_id;
        seg->header.created_unix_ns = (int64_t)h.created_unix_ns;
        seg->header.hash_seed = segment_hash_seed(&h);
        seg->header.recycled = segment_recycled(&h);
    }
    seg->fd = fd;
    return rc;
}

static int segment_id_compare(const void *a, const void *b)
{
    const struct logdir_segment *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Segments log_scan read that the listing before it did not see (created meanwhile by a
 * running server): read their headers too, so every record's segment is known. */
static int logdir_add_late_segments(struct logdir *dir)
{
    for (size_t i = 0; i < dir->batch_count; i++) {
        uint64_t id = dir->batches[i].segment_id;
        if (logdir_segment(dir, id) != NULL)
            continue;
        struct logdir_segment *p =
            realloc(dir->segments, (dir->segment_count + 1) * sizeof(*dir->segments));
        SPOOL_ASSERT(p != NULL);
        dir->segments = p;
        struct logdir_segment *seg = &dir->segments[dir->segment_count++];
        *seg = (struct logdir_segment){.id = id, .fd = -1};
        int rc = segment_read_header(dir, seg);
        qsort(dir->segments, dir->segment_count, sizeof(*dir->segments), segment_id_compare);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int logdir_list_segments(struct logdir *dir)
{
    struct id_list list = {0};
    int rc = dir->backend->ops->list(dir->backend, list_entry, &list);
    if (rc != 0) {
        free(list.ids);
        return rc;
    }
    if (list.count > 0)
        qsort(list.ids, list.count, sizeof(*list.ids), u64_compare);
    dir->segments = calloc(list.count + 1, sizeof(*dir->segments));
    SPOOL_ASSERT(dir->segments != NULL);
    for (size_t i = 0; i < list.count && rc == 0; i++) {
        struct logdir_segment *seg = &dir->segments[dir->segment_count++];
        seg->id = list.ids[i];
        seg->fd = -1;
        rc = segment_read_header(dir, seg);
    }
    free(list.ids);
    return rc;
}

/* ---- pass 3: resync past damage ---- */

/* Ids decoded leniently from a region's first batch: a batch of small records may hold more,
 * but the inferred PUT ids and this sample are enough to name what to look at by hand. */
#define REGION_LENIENT_IDS_MAX 64

/* A region being measured inside one segment. */
struct region {
    bool open;
    bool nonzero;   /* holds bytes that are not zero (else: a clean end) */
    bool from_scan; /* log_scan reported it (its kind and detail win) */
    struct log_damage d;
    uint64_t nonzero_end;
    uint64_t ids[REGION_LENIENT_IDS_MAX]; /* leniently decoded job ids of its first batch */
    uint32_t id_count;
};

static void region_add_id(struct region *reg, uint64_t id)
{
    for (uint32_t i = 0; i < reg->id_count; i++)
        if (reg->ids[i] == id)
            return;
    if (reg->id_count < sizeof(reg->ids) / sizeof(reg->ids[0]))
        reg->ids[reg->id_count++] = id;
}

/* The payload of a batch whose header verified but whose payload did not: take what parses. */
static void region_lenient(struct region *reg, const struct scan_reader *r,
                           const struct batch_header *h)
{
    const uint8_t *stored = r->buf + BATCH_HEADER_SIZE;
    uint8_t *raw = NULL;
    uint32_t raw_len = h->stored_len;
    if (h->codec == BATCH_CODEC_LZ4) {
        raw = malloc(h->raw_len == 0 ? 1 : h->raw_len);
        SPOOL_ASSERT(raw != NULL);
        int n = LZ4_decompress_safe_partial((const char *)stored, (char *)raw, (int)h->stored_len,
                                            (int)h->raw_len, (int)h->raw_len);
        raw_len = n < 0 ? 0 : (uint32_t)n;
        stored = raw;
    }
    struct batch_cursor cursor = {.raw = stored, .raw_len = raw_len};
    uint8_t type;
    const uint8_t *data;
    uint32_t len;
    while (batch_cursor_next(&cursor, &type, &data, &len)) {
        struct record rec;
        if (record_decode(type, data, len, &rec) == 0 && rec.type != RECORD_QUEUE_META &&
            rec.type != RECORD_PURGE && rec.type != RECORD_DELETE_QUEUE)
            region_add_id(reg, rec.id);
    }
    free(raw);
}

static void region_push(struct logdir *dir, struct region *reg, uint64_t end)
{
    struct logdir_damage dmg = {.d = reg->d, .bytes = end - reg->d.offset};
    if (reg->id_count > 0) {
        dmg.job_ids = malloc(reg->id_count * sizeof(uint64_t));
        SPOOL_ASSERT(dmg.job_ids != NULL);
        memcpy(dmg.job_ids, reg->ids, reg->id_count * sizeof(uint64_t));
        dmg.job_count = reg->id_count;
    }
    dmg.measured = true;
    reg->open = false;
    /* log_scan may have reported this region too (it resumes past damage itself): its kind
     * and detail win (it tells a torn tail from damage), the measure is ours. */
    for (size_t i = 0; i < dir->damage_count; i++) {
        struct logdir_damage *x = &dir->damages[i];
        if (x->d.segment_id != reg->d.segment_id || x->d.offset != reg->d.offset)
            continue;
        dmg.d.kind = x->d.kind;
        memcpy(dmg.d.detail, x->d.detail, sizeof(dmg.d.detail));
        free(x->job_ids);
        *x = dmg;
        return;
    }
    dir->damages =
        grow(dir->damages, &dir->damage_capacity, dir->damage_count, sizeof(*dir->damages));
    dir->damages[dir->damage_count++] = dmg;
}

struct resync {
    struct logdir *dir;
    struct scan_reader reader;
    const struct logdir_segment *seg;
    int fd;
    uint64_t limit;
    uint64_t expect_seq;
    uint64_t next_segment_id; /* 0 for the newest segment */
};

static void resync_emit(struct resync *rs, uint64_t offset, const struct batch_header *h,
                        const uint8_t *raw)
{
    struct logdir_batch b = {.segment_id = rs->seg->id,
                             .offset = offset,
                             .base_seq = h->base_seq,
                             .record_count = h->record_count,
                             .stored_len = h->stored_len,
                             .raw_len = h->raw_len,
                             .codec = h->codec};
    logdir_add_batch(rs->dir, &b);
    struct batch_cursor cursor = {.raw = raw, .raw_len = h->raw_len};
    struct log_record rec = {.pos = {.segment_id = rs->seg->id, .batch_offset = offset}};
    const uint8_t *data;
    for (uint64_t seq = h->base_seq; batch_cursor_next(&cursor, &rec.type, &data, &rec.len);
         seq++) {
        rec.pos.seq = seq;
        rec.data = data;
        logdir_add_rec(rs->dir, &rec, true);
    }
    rs->expect_seq = h->base_seq + h->record_count;
}

/* One block of the walk past damage; returns the offset of the next block to look at. */
static int resync_step(struct resync *rs, struct region *reg, uint64_t off, uint64_t *next)
{
    struct batch_header h;
    const uint8_t *raw = NULL;
    bool header_valid = false;
    struct log_damage dmg;
    int rc = scan_read_batch(&rs->reader, rs->fd, rs->seg->id, rs->seg->header.hash_seed,
                             rs->seg->header.recycled, off, rs->limit, &h, &raw,
                             &header_valid, &dmg);
    if (rc < 0)
        return rc;
    *next = off + BATCH_ALIGN;
    if (rc == SCAN_BATCH_OK && h.base_seq >= rs->expect_seq) {
        if (reg->open) {
            reg->d.seq_first = reg->d.seq_first != 0 ? reg->d.seq_first : rs->expect_seq;
            if (reg->d.seq_last == 0) /* unknown so far: up to the batch that verifies */
                reg->d.seq_last = h.base_seq - 1; /* == seq_first - 1: no record lost */
            region_push(rs->dir, reg, off);
        }
        resync_emit(rs, off, &h, raw);
        *next = off + h.total_len;
        return 0;
    }
    if (rc == SCAN_BATCH_OK) /* a stale batch: verified, but its seqs are behind */
        scan_damage_set(&dmg, LOG_DAMAGE_SEQ_GAP, rs->seg->id, off, h.base_seq,
                        h.base_seq + h.record_count - 1, "stale batch: seq %llu is behind %llu",
                        (unsigned long long)h.base_seq, (unsigned long long)rs->expect_seq);
    if (!reg->open) {
        *reg = (struct region){.open = true, .d = dmg};
        if (rc == SCAN_BATCH_END)
            scan_damage_set(&reg->d, LOG_DAMAGE_BAD_HEADER, rs->seg->id, off, 0, 0,
                            "zero block followed by a valid batch");
        reg->d.seq_first = rs->expect_seq;
        reg->d.seq_last = 0;
    }
    if (rc != SCAN_BATCH_END) {
        reg->nonzero = true;
        reg->nonzero_end = off + BATCH_ALIGN;
        if (header_valid && h.total_len > BATCH_ALIGN)
            reg->nonzero_end = off + h.total_len;
        if (header_valid && reg->id_count == 0 && off == reg->d.offset)
            region_lenient(reg, &rs->reader, &h);
    }
    return 0;
}

/* The block log_scan stopped at is never taken back (a batch that verifies but breaks the
 * chain may be a stale copy): measure it, decode what it leniently can, go on after it. */
static int resync_first(struct resync *rs, struct region *reg, uint64_t *off)
{
    struct batch_header h;
    const uint8_t *raw = NULL;
    bool header_valid = false;
    struct log_damage dmg;
    int rc = scan_read_batch(&rs->reader, rs->fd, rs->seg->id, rs->seg->header.hash_seed,
                             rs->seg->header.recycled, *off, rs->limit, &h, &raw,
                             &header_valid, &dmg);
    if (rc < 0)
        return rc;
    reg->nonzero = rc != SCAN_BATCH_END;
    reg->nonzero_end = *off + BATCH_ALIGN;
    if (header_valid && h.total_len > BATCH_ALIGN)
        reg->nonzero_end = *off + h.total_len;
    if (header_valid && rc == SCAN_BATCH_BAD)
        region_lenient(reg, &rs->reader, &h);
    *off += BATCH_ALIGN;
    return 0;
}

/* Close the region still open at the segment's end. */
static void resync_finish(struct resync *rs, struct region *reg)
{
    if (reg->open && !reg->nonzero && !reg->from_scan)
        reg->open = false; /* zeros to the end: the clean end of the written part */
    if (reg->open) {
        if (reg->d.seq_first == 0)
            reg->d.seq_first = rs->expect_seq;
        if (rs->next_segment_id > reg->d.seq_first)
            reg->d.seq_last = rs->next_segment_id - 1;
        uint64_t end = reg->nonzero_end > reg->d.offset ? reg->nonzero_end : reg->d.offset;
        region_push(rs->dir, reg, end);
    }
}

/* The seq after the last record of segment seg_id in batches before offset. */
static uint64_t logdir_seq_at(const struct logdir *dir, uint64_t seg_id, uint64_t offset)
{
    uint64_t seq = seg_id;
    for (size_t i = 0; i < dir->batch_count; i++) {
        const struct logdir_batch *b = &dir->batches[i];
        if (b->segment_id == seg_id && b->offset < offset && b->base_seq + b->record_count > seq)
            seq = b->base_seq + b->record_count;
    }
    return seq;
}

static int logdir_resync(struct logdir *dir, struct logdir_damage *start, uint32_t seg_index)
{
    struct resync rs = {.dir = dir, .seg = &dir->segments[seg_index]};
    rs.next_segment_id = seg_index + 1 < dir->segment_count ? dir->segments[seg_index + 1].id : 0;
    uint64_t file_end = (rs.seg->file_size + BATCH_ALIGN - 1) & ~(uint64_t)(BATCH_ALIGN - 1);
    rs.limit = rs.seg->header_ok && rs.seg->header.segment_size < file_end
                   ? rs.seg->header.segment_size
                   : file_end;
    uint64_t from = start->d.offset < SEGMENT_HEADER_SIZE ? SEGMENT_HEADER_SIZE : start->d.offset;
    rs.expect_seq = logdir_seq_at(dir, rs.seg->id, from);
    /* What is lost starts where the chain stopped. The batch log_scan stopped at may name
     * other seqs (a stale copy, a misplaced batch): its range counts only when it starts
     * there. */
    struct region reg = {.open = true, .from_scan = true, .d = start->d};
    if (reg.d.seq_first != rs.expect_seq || reg.d.seq_last < reg.d.seq_first)
        reg.d.seq_last = 0;
    reg.d.seq_first = rs.expect_seq;
    rs.fd = rs.seg->fd;
    if (rs.fd < 0)
        return -EBADF; /* every listed segment was opened, or the load failed */
    scan_reader_init(&rs.reader, dir->backend);
    int rc = 0;
    uint64_t off = from;
    if (start->d.offset < SEGMENT_HEADER_SIZE)
        reg.nonzero = true; /* a bad segment header: resync from the first batch slot */
    else if (off + BATCH_ALIGN <= rs.limit) /* (a region at the very end of a short file) */
        rc = resync_first(&rs, &reg, &off);
    while (rc == 0 && off + BATCH_ALIGN <= rs.limit) {
        uint64_t next;
        rc = resync_step(&rs, &reg, off, &next);
        off = next;
    }
    if (rc == 0)
        resync_finish(&rs, &reg);
    scan_reader_free(&rs.reader);
    return rc;
}

static bool damage_in_segment(const struct logdir_damage *d)
{
    switch (d->d.kind) {
    case LOG_DAMAGE_TORN_TAIL:
    case LOG_DAMAGE_BAD_HEADER:
    case LOG_DAMAGE_BAD_PAYLOAD:
    case LOG_DAMAGE_SEQ_GAP:
        return d->d.offset >= SEGMENT_HEADER_SIZE;
    case LOG_DAMAGE_BAD_SEGMENT_HEADER:
        return true;
    default:
        return false;
    }
}

static int logdir_resync_all(struct logdir *dir)
{
    size_t count = dir->damage_count; /* regions found while resyncing are already measured */
    for (size_t i = 0; i < count; i++) {
        struct logdir_damage d = dir->damages[i];
        if (!damage_in_segment(&d) || d.measured)
            continue;
        for (uint32_t s = 0; s < dir->segment_count; s++) {
            if (dir->segments[s].id != d.d.segment_id)
                continue;
            int rc = logdir_resync(dir, &d, s);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

/* ---- after the passes ---- */

static int batch_compare(const void *a, const void *b)
{
    const struct logdir_batch *x = a, *y = b;
    if (x->segment_id != y->segment_id)
        return x->segment_id < y->segment_id ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int rec_compare(const void *a, const void *b)
{
    const struct logdir_rec *x = a, *y = b;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* log_scan resumes past damage itself and the resync here walks the same batches again:
 * keep one record per seq (the first to arrive: log_scan's, from batches in chain order),
 * marked resynced if either copy came from past damage. */
static void logdir_dedupe(struct logdir *dir)
{
    if (dir->rec_count > 1)
        qsort(dir->recs, dir->rec_count, sizeof(*dir->recs), rec_compare);
    size_t kept = 0;
    for (size_t i = 0; i < dir->rec_count; i++) {
        struct logdir_rec *r = &dir->recs[i];
        if (kept > 0 && dir->recs[kept - 1].seq == r->seq) {
            dir->recs[kept - 1].resynced |= r->resynced;
            free(r->data);
            continue;
        }
        dir->recs[kept++] = *r;
    }
    dir->rec_count = kept;
    if (dir->batch_count > 1)
        qsort(dir->batches, dir->batch_count, sizeof(*dir->batches), batch_compare);
    kept = 0;
    for (size_t i = 0; i < dir->batch_count; i++) {
        const struct logdir_batch *b = &dir->batches[i];
        if (kept > 0 && dir->batches[kept - 1].segment_id == b->segment_id &&
            dir->batches[kept - 1].offset == b->offset)
            continue;
        dir->batches[kept++] = *b;
    }
    dir->batch_count = kept;
}

/* The PUT job id of record r, or 0. */
static uint64_t rec_put_id(const struct logdir_rec *r)
{
    return r->type == RECORD_PUT && r->decodes ? r->job_id : 0;
}

/* Add the ids of PUTs that must have been in the damaged seq range [first, last]: ids between
 * the last PUT before it and the first PUT after it that no record has. It needs both: a
 * server's ids start at its start time (queue_ids_floor, about 1.8e15), so a region with no
 * PUT before it bounds nothing below (walking from id 1 took months). And it adds at most one
 * id per record of the range: ids jump at a restart, and each PUT takes one seq. */
static void damage_infer(struct logdir *dir, struct logdir_damage *dmg, const uint64_t *put_ids,
                         size_t put_count)
{
    uint64_t first = dmg->d.seq_first, last = dmg->d.seq_last;
    if (first == 0 || last < first)
        return;
    uint64_t lo = 0, hi = 0;
    for (size_t i = 0; i < dir->rec_count; i++) {
        uint64_t id = rec_put_id(&dir->recs[i]);
        if (id == 0)
            continue;
        if (dir->recs[i].seq < first && id > lo)
            lo = id;
        if (dir->recs[i].seq > last) {
            hi = id;
            break;
        }
    }
    if (lo == 0 || hi == 0)
        return; /* no PUT on one side: nothing bounds the guess */
    uint64_t room = last - first + 1; /* records in the range: PUTs it can have held */
    for (uint64_t id = lo + 1; id < hi && room > 0 && dmg->job_count < LOGDIR_REGION_IDS_MAX;
         id++) {
        if (ids_contain(put_ids, put_count, id))
            continue;
        room--;
        bool known = false;
        for (uint32_t k = 0; k < dmg->job_count && !known; k++)
            known = dmg->job_ids[k] == id;
        if (known)
            continue;
        uint64_t *p = realloc(dmg->job_ids, (dmg->job_count + 1) * sizeof(uint64_t));
        SPOOL_ASSERT(p != NULL);
        dmg->job_ids = p;
        dmg->job_ids[dmg->job_count++] = id;
    }
}

static void logdir_jobs_affected(struct logdir *dir)
{
    uint64_t *put_ids = malloc((dir->rec_count + 1) * sizeof(uint64_t));
    SPOOL_ASSERT(put_ids != NULL);
    size_t n = 0;
    for (size_t i = 0; i < dir->rec_count; i++) {
        uint64_t id = rec_put_id(&dir->recs[i]);
        if (id != 0)
            put_ids[n++] = id;
    }
    qsort(put_ids, n, sizeof(*put_ids), u64_compare);
    for (size_t i = 0; i < dir->damage_count; i++) {
        struct logdir_damage *d = &dir->damages[i];
        damage_infer(dir, d, put_ids, n);
        if (d->job_count > 1)
            qsort(d->job_ids, d->job_count, sizeof(uint64_t), u64_compare);
    }
    free(put_ids);
}

static void logdir_segment_totals(struct logdir *dir)
{
    for (size_t i = 0; i < dir->batch_count; i++) {
        const struct logdir_batch *b = &dir->batches[i];
        for (uint32_t s = 0; s < dir->segment_count; s++) {
            struct logdir_segment *seg = &dir->segments[s];
            if (seg->id != b->segment_id)
                continue;
            seg->batch_count++;
            seg->record_count += b->record_count;
            seg->stored_bytes += BATCH_HEADER_SIZE + (uint64_t)b->stored_len;
            seg->raw_bytes += b->raw_len;
            seg->used_bytes += batch_align_up(BATCH_HEADER_SIZE + (uint64_t)b->stored_len);
        }
    }
}

/* A running server may delete a segment (retention) between our listing and our open; the
 * next attempt sees the new checkpoint and the new listing. A few attempts are plenty: a
 * checkpoint is written at most every few seconds. */
#define LOGDIR_LOAD_ATTEMPTS_MAX 3

static int logdir_load_once(struct logdir *dir, const char *path)
{
    memset(dir, 0, sizeof(*dir));
    dir->path = path;
    dir->cache_fd = -1;
    dir->reader = calloc(1, sizeof(*dir->reader));
    SPOOL_ASSERT(dir->reader != NULL);
    int rc = posix_backend_create(path, false, &dir->backend);
    if (rc != 0)
        return rc; /* no backend: logdir_load does not retry */
    rc = logdir_list_segments(dir);
    struct log_scan_callbacks cb = {.batch = on_batch,
                                    .record = on_record,
                                    .damage = on_damage,
                                    .checkpoint = on_checkpoint,
                                    .ctx = dir};
    scan_reader_init(dir->reader, dir->backend);
    if (rc == 0) {
        rc = log_scan(dir->backend, &cb);
        dir->scan_error = rc;
        if (rc == LOG_ECORRUPT)
            rc = 0;
    }
    if (rc == 0)
        rc = logdir_add_late_segments(dir);
    if (rc == 0)
        rc = logdir_resync_all(dir);
    if (rc != 0)
        return rc;
    logdir_dedupe(dir);
    logdir_jobs_affected(dir);
    logdir_segment_totals(dir);
    return 0;
}

/* Load, retrying while a running server's retention deletes a segment under us. */
static int logdir_load_stable_files(struct logdir *dir, const char *path)
{
    int rc = logdir_load_once(dir, path);
    for (int attempt = 1; attempt < LOGDIR_LOAD_ATTEMPTS_MAX; attempt++) {
        if (rc != -ENOENT || dir->backend == NULL) /* a missing DIR itself is no race */
            break;
        logdir_free(dir);
        rc = logdir_load_once(dir, path);
    }
    return rc;
}

static bool logdir_has_damage(const struct logdir *dir, const struct log_damage *d)
{
    for (size_t i = 0; i < dir->damage_count; i++) {
        const struct log_damage *x = &dir->damages[i].d;
        if (x->kind == d->kind && x->segment_id == d->segment_id && x->offset == d->offset)
            return true;
    }
    return false;
}

/* Keep the damage of `now` that `before` saw too (torn tails always: they are benign). */
static void logdir_keep_stable_damage(struct logdir *now, const struct logdir *before)
{
    size_t kept = 0;
    for (size_t i = 0; i < now->damage_count; i++) {
        struct logdir_damage *d = &now->damages[i];
        if (d->d.kind == LOG_DAMAGE_TORN_TAIL || logdir_has_damage(before, &d->d))
            now->damages[kept++] = *d;
        else
            free(d->job_ids);
    }
    now->damage_count = kept;
}

/*
 * Damage must be seen by two scans in the same place to be reported. On a directory a server
 * is writing, one scan can read a block at the tail as zero and, a moment later, find the
 * batch written after it: that looks like "zero block followed by a valid batch" but is only
 * the tail growing under the reader, and the next scan finds it whole (its own tail may race
 * again, elsewhere). Damage on disk reads the same every time.
 */
int logdir_load(struct logdir *dir, const char *path)
{
    int rc = logdir_load_stable_files(dir, path);
    if (rc == 0 && logdir_corrupt(dir)) {
        struct logdir again;
        rc = logdir_load_stable_files(&again, path);
        if (rc == 0)
            logdir_keep_stable_damage(&again, dir);
        logdir_free(dir);
        *dir = again;
    }
    if (rc != 0)
        fprintf(stderr, "spool-log: cannot read %s: %s\n", path, log_strerror(rc));
    return rc;
}

void logdir_free(struct logdir *dir)
{
    for (size_t i = 0; i < dir->rec_count; i++)
        free(dir->recs[i].data);
    for (size_t i = 0; i < dir->damage_count; i++)
        free(dir->damages[i].job_ids);
    free(dir->recs);
    free(dir->batches);
    free(dir->damages);
    for (uint32_t i = 0; dir->segments != NULL && i < dir->segment_count; i++) {
        if (dir->segments[i].fd >= 0) {
            int rc = io_sync_simple(dir->backend, IO_CLOSE, dir->segments[i].fd);
            (void)rc; /* opened read-only */
        }
    }
    free(dir->segments);
    free(dir->checkpoint_payload);
    free(dir->queue_names);
    if (dir->cache_fd >= 0) {
        int rc = io_sync_simple(dir->backend, IO_CLOSE, dir->cache_fd);
        (void)rc; /* opened read-only */
    }
    if (dir->reader != NULL)
        scan_reader_free(dir->reader);
    free(dir->reader);
    io_backend_destroy(dir->backend);
    memset(dir, 0, sizeof(*dir));
}

const struct logdir_rec *logdir_find(const struct logdir *dir, uint64_t seq)
{
    size_t lo = 0, hi = dir->rec_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (dir->recs[mid].seq == seq)
            return &dir->recs[mid];
        if (dir->recs[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Read back and verify the batch at (segment, offset) into the cache. */
static int logdir_cache_batch(struct logdir *dir, uint64_t segment_id, uint64_t offset)
{
    if (dir->cache_valid && dir->cache_segment == segment_id && dir->cache_offset == offset)
        return 0;
    dir->cache_valid = false;
    const struct logdir_segment *seg = logdir_segment(dir, segment_id);
    if (seg == NULL)
        return -ENOENT;
    int fd = seg->fd;
    if (fd < 0 && (dir->cache_fd < 0 || dir->cache_fd_segment != segment_id)) {
        if (dir->cache_fd >= 0) {
            int rc = io_sync_simple(dir->backend, IO_CLOSE, dir->cache_fd);
            (void)rc; /* opened read-only */
        }
        char name[SEGMENT_NAME_LEN + 1];
        segment_name(segment_id, name);
        dir->cache_fd = io_sync_open(dir->backend, name, O_RDONLY, 0);
        if (dir->cache_fd < 0)
            return dir->cache_fd;
        dir->cache_fd_segment = segment_id;
    }
    if (fd < 0)
        fd = dir->cache_fd;
    uint64_t file_end = (seg->file_size + BATCH_ALIGN - 1) & ~(uint64_t)(BATCH_ALIGN - 1);
    uint64_t limit =
        seg->header_ok && seg->header.segment_size < file_end ? seg->header.segment_size : file_end;
    struct batch_header h;
    bool header_valid;
    struct log_damage damage;
    const uint8_t *raw = NULL;
    int rc = scan_read_batch(dir->reader, fd, segment_id, seg->header.hash_seed,
                             seg->header.recycled, offset, limit, &h, &raw, &header_valid,
                             &damage);
    if (rc < 0)
        return rc;
    if (rc != SCAN_BATCH_OK)
        return LOG_ECORRUPT; /* it verified when the directory was loaded: changed since */
    dir->cache_valid = true;
    dir->cache_segment = segment_id;
    dir->cache_offset = offset;
    dir->cache_base_seq = h.base_seq;
    dir->cache_raw = raw;
    dir->cache_raw_len = h.raw_len;
    return 0;
}

const uint8_t *logdir_rec_bytes(struct logdir *dir, const struct logdir_rec *r)
{
    if (r->data != NULL)
        return r->data;
    int rc = logdir_cache_batch(dir, r->segment_id, r->offset);
    struct batch_cursor cursor = {.raw = dir->cache_raw, .raw_len = dir->cache_raw_len};
    uint8_t type = 0;
    const uint8_t *data = NULL;
    uint32_t len = 0;
    for (uint64_t seq = dir->cache_base_seq; rc == 0 && seq <= r->seq; seq++)
        if (!batch_cursor_next(&cursor, &type, &data, &len))
            rc = LOG_ECORRUPT;
    if (rc == 0 && (type != r->type || len != r->len))
        rc = LOG_ECORRUPT;
    if (rc != 0) {
        fprintf(stderr, "spool-log: record seq=%llu cannot be read back: %s\n",
                (unsigned long long)r->seq, log_strerror(rc));
        return NULL;
    }
    return data;
}

int logdir_decode(struct logdir *dir, const struct logdir_rec *r, struct record *out)
{
    if (!r->decodes)
        return RECORD_EINVAL;
    const uint8_t *data = logdir_rec_bytes(dir, r);
    if (data == NULL)
        return LOG_ECORRUPT;
    return record_decode(r->type, data, r->len, out);
}

const struct logdir_name *logdir_rec_queue(const struct logdir *dir, const struct logdir_rec *r)
{
    return r->queue == LOGDIR_QUEUE_NONE ? NULL : &dir->queue_names[r->queue];
}

const struct logdir_segment *logdir_segment(const struct logdir *dir, uint64_t id)
{
    for (uint32_t i = 0; i < dir->segment_count; i++)
        if (dir->segments[i].id == id)
            return &dir->segments[i];
    return NULL;
}

bool logdir_corrupt(const struct logdir *dir)
{
    for (size_t i = 0; i < dir->damage_count; i++)
        if (dir->damages[i].d.kind != LOG_DAMAGE_TORN_TAIL)
            return true;
    return false;
}

bool logdir_torn(const struct logdir *dir)
{
    for (size_t i = 0; i < dir->damage_count; i++)
        if (dir->damages[i].d.kind == LOG_DAMAGE_TORN_TAIL)
            return true;
    return false;
}

const char *logdir_seq_range(const struct log_damage *d, char *buf, size_t len)
{
    if (d->seq_first != 0 && d->seq_last + 1 == d->seq_first)
        snprintf(buf, len, "none");
    else if (d->seq_last >= d->seq_first && d->seq_last != 0)
        snprintf(buf, len, "%llu..%llu", (unsigned long long)d->seq_first,
                 (unsigned long long)d->seq_last);
    else
        snprintf(buf, len, "%llu..?", (unsigned long long)d->seq_first);
    return buf;
}

static bool damage_loses_nothing(const struct log_damage *d)
{
    return d->seq_first != 0 && d->seq_last + 1 == d->seq_first;
}

uint64_t logdir_first_lost_seq(const struct logdir *dir)
{
    uint64_t first = UINT64_MAX;
    for (size_t i = 0; i < dir->damage_count; i++) {
        const struct log_damage *d = &dir->damages[i].d;
        uint64_t seq = d->seq_first;
        if (d->kind == LOG_DAMAGE_BAD_CHECKPOINT || damage_loses_nothing(d))
            continue;
        if (seq == 0)
            seq = d->segment_id;
        if (seq != 0 && seq < first)
            first = seq;
    }
    return first;
}
