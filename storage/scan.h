/*
 * The one decoder of a log directory, shared by recovery (log_open) and read-only scanning
 * (log_scan, spool-log), so both judge the same bytes the same way.
 *
 * scan_run lists the directory, loads the checkpoint, reads every segment header and every
 * batch (verifying header hash, payload hash, record framing, seq continuity and the prev-hash
 * chain inside and across segments), hands verified records to a callback in seq order, and
 * classifies what it finds:
 *   - a torn tail: an invalid batch at the end of the newest segment with no valid batch
 *     header of that segment after it whose sync point lies beyond it (probed block by
 *     block), or a newest segment whose header never became durable and which holds no valid
 *     batch (a torn roll);
 *   - a missing segment: the newest segment on disk is sealed (its seal names a successor,
 *     which was durable and named before the seal was written, so it must exist);
 *   - damage: anything else (see enum log_damage_kind). Recovery stops at the first; tools go
 *     on where they can. The first damage is kept with a cut point for salvage.
 * It never writes; repairs (zeroing a torn tail, deleting leftovers, salvage cuts) are done
 * by log.c from the result.
 */
#ifndef SPOOL_STORAGE_SCAN_H
#define SPOOL_STORAGE_SCAN_H

#include <stdbool.h>
#include <stdint.h>

#include "batch.h"
#include "checkpoint.h"
#include "io.h"
#include "log.h"
#include "segment.h"

/* A dropped segment's file kept for the next spare (log_spare.c): listed, never read. */
#define SCAN_RECYCLE_NAME "segment.recycle"

/* The probe for "anything valid after" reads this much per call: large enough to stream a
 * preallocated tail quickly, small enough to keep recovery's memory flat. */
#define SCAN_PROBE_CHUNK_BYTES (1u << 20)

/* Buffers for reading batches synchronously; they grow to the largest batch seen. */
struct scan_reader {
    struct io_backend *backend;
    uint8_t *buf;
    uint32_t buf_size;
    uint8_t *scratch;
    uint32_t scratch_size;
};

void scan_reader_init(struct scan_reader *reader, struct io_backend *backend);
void scan_reader_free(struct scan_reader *reader);

enum scan_batch_result {
    SCAN_BATCH_OK = 0,
    SCAN_BATCH_END, /* a zero header (or, in a recycled segment, a stale block): the clean
                       end of the written part */
    SCAN_BATCH_BAD, /* damage filled in */
};

/*
 * Read and fully verify the batch at offset of segment (fd, segment_id), hashes seeded with
 * hash_seed (segment_hash_seed), whose batches must end by limit: header, payload hash,
 * decompression, record framing. Bytes past the end of the file read as zero. In a recycled
 * segment (segment_recycled) a block that does not claim to be a batch of this segment
 * (scan_block_stale) ends the written part as a zero block does. Returns an enum scan_batch_result or a negative errno (I/O failure). On
 * OK, *raw is the decoded payload (valid until the next call). On BAD, *header_valid tells
 * whether the header itself verified (then *header is trustworthy).
 */
SPOOL_MUST_USE int scan_read_batch(struct scan_reader *reader, int fd, uint64_t segment_id,
                                   uint64_t hash_seed, bool recycled, uint64_t offset,
                                   uint64_t limit, struct batch_header *header,
                                   const uint8_t **raw, bool *header_valid,
                                   struct log_damage *damage);

/*
 * A block of a recycled segment that is left over from the file's older segment: it does not
 * carry the batch magic together with this segment's id (offset 32). Every batch this segment
 * ever held carries both, and bytes a client chose lie only inside payloads, never in a header
 * block the engine wrote; so such a block was never written for this segment.
 */
bool scan_block_stale(const uint8_t *block, uint64_t segment_id);

enum scan_end {
    SCAN_END_CLEAN = 0, /* a zero header, or a stale block of a recycled segment */
    SCAN_END_FULL,      /* the segment is full up to its size */
    SCAN_END_DAMAGE,    /* an invalid or out-of-chain batch */
};

struct scan_segment {
    uint64_t id;
    int fd;
    uint64_t file_size;
    enum segment_check header_check;
    struct segment_header header;
    uint64_t hash_seed;  /* segment_hash_seed(&header) once the header checked OK */
    bool recycled;       /* segment_recycled(&header): stale bytes, not zeros, after its end */
    bool walked;
    bool sealed;         /* the walk ended at a valid seal (its successor is seq_end) */
    uint64_t seal_offset;
    enum scan_end end;
    uint64_t end_offset; /* where the next batch goes: after the last valid batch */
    uint64_t seq_end;    /* the seq after the last valid batch (== id when empty) */
    uint64_t last_hash;  /* header hash of the last valid batch (or of the segment header) */
    uint64_t batch_count;
    uint64_t record_count;
    struct log_damage damage; /* end == SCAN_END_DAMAGE: the batch that stopped the walk */
    bool valid_after;         /* a valid batch header of this segment lies after end_offset */
    bool valid_after_synced;  /* ... one whose sync point lies beyond end_offset: the bytes
                                 at end_offset were durable once */
    uint64_t valid_after_offset; /* the first such header (tools resume there) */
    uint64_t seq_last_after;     /* the highest seq those headers name (0: none) */
    uint64_t nonzero_end;     /* end of the last non-zero block from end_offset on (of a
                                 recycled segment: of the last bytes written for this
                                 segment, stale blocks left out): a cut zeroes up to it */
};

struct scan_options {
    bool recovery;            /* stop at the first damage; open segments read-write */
    bool salvage;             /* recovery: a bad checkpoint is ignored instead of fatal */
    uint64_t replay_from_seq; /* records below are verified but not handed out; UINT64_MAX:
                                 take the checkpoint's anchor */
    const struct log_scan_callbacks *callbacks;
};

struct scan_result {
    struct scan_segment *segments; /* the segments of the log, ascending, fds open */
    uint32_t segment_count;
    bool has_checkpoint;
    uint8_t *checkpoint_buf;
    struct checkpoint_info checkpoint;
    bool checkpoint_tmp;             /* a leftover checkpoint.tmp exists */
    bool recycle_file;               /* a "segment.recycle" exists (never read here) */
    uint64_t *leftovers;             /* unlisted segments older than the anchor: delete */
    uint32_t leftover_count;
    bool torn_roll;                  /* the newest file's header never became durable */
    uint64_t torn_roll_id;           /* (it is not in segments; delete it) */
    bool torn_tail;                  /* the newest segment ends in an invalid batch */
    bool damaged;
    struct log_damage damage;        /* the first damage */
    uint32_t cut_index;              /* salvage: keep segments < cut_index, and segment */
    uint64_t cut_offset;             /* cut_index up to cut_offset (0: drop it whole) */
    uint64_t next_seq;
    uint64_t batch_count;
    uint64_t record_count;
};

/* 0 (damage, if any, is in result), LOG_ECORRUPT (recovery stopped at damage), LOG_EVERSION,
 * a callback's non-zero return, or a negative errno. scan_result_free must be called in every
 * case. */
SPOOL_MUST_USE int scan_run(struct io_backend *backend, const struct scan_options *options,
                            struct scan_result *result);
void scan_result_free(struct io_backend *backend, struct scan_result *result);

/* Fill a damage record. */
void scan_damage_set(struct log_damage *damage, enum log_damage_kind kind, uint64_t segment_id,
                     uint64_t offset, uint64_t seq_first, uint64_t seq_last, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

#endif
