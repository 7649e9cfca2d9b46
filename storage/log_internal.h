/*
 * The engine's private state, shared by log.c (append, group commit, roll, durability),
 * log_open.c (recovery and repairs), log_read.c (reads by location) and log_checkpoint.c.
 *
 * Positions. The open batch's place is fixed when its first record arrives, so log_append
 * can hand out a final location: it goes right after the last sealed batch when a batch of
 * batch_size_bytes_max still fits in that segment, else at offset 4096 of a new segment named
 * by the batch's base seq. A commit whose batch is placed in a segment that does not exist yet
 * first rolls (creates it durably).
 *
 * Buffers. open_buf collects records (a memcpy per append); sealing compresses into the
 * buffer of a free flight slot or swaps the two, so a batch being written is always in its
 * slot's buffer. All are aligned and batch_size_bytes_max long.
 *
 * Commits in flight. In the always mode up to LOG_FLIGHTS_MAX (log.h) commits (each a direct
 * RWF_DSYNC write, or a buffered write linked to an fdatasync) are in flight at once, in
 * consecutive places of the current segment; they may complete in any order, and land
 * (watermarks, on_commit, on_durable) in log order only.
 * A batch built while others are in flight records as its sync point the offset of the oldest
 * of them (synced_offset is advanced when a batch lands), so a crash that kept a later batch
 * and lost an earlier one is a torn tail, cut with both, and nothing it cuts was reported
 * durable. A roll waits until nothing is in flight; the interval and none modes commit one
 * batch at a time.
 *
 * Watermarks: written_end <= next_seq and synced_end <= written_end; every record below
 * written_end is written (in the page cache, or on the disk for direct writes), every record
 * below synced_end is durable.
 */
#ifndef SPOOL_STORAGE_LOG_INTERNAL_H
#define SPOOL_STORAGE_LOG_INTERNAL_H

#include "batch.h"
#include "checkpoint.h"
#include "log.h"
#include "scan.h"
#include "segment.h"

/* Concurrent log_read()s: the broker reads back cold job bodies on reserve; 64 in flight
 * keeps a 2-core disk busy while bounding read buffers to 64 batches. */
#define LOG_READS_MAX 64u
/* After ENOSPC on a roll, try again this often: frequent enough to resume quickly once an
 * operator frees space, rare enough not to spin on a full disk. */
#define LOG_ENOSPC_RETRY_NS (100ll * 1000 * 1000)
/* The spare segment's name (log_spare.c): not a segment name, so recovery never reads it. */
#define LOG_SPARE_NAME "segment.spare"
/* A segment a checkpoint dropped, renamed (not unlinked) for the next spare to reuse
 * (log_spare.c): not a segment name either; recovery hands a leftover to the spare. */
#define LOG_RECYCLE_NAME SCAN_RECYCLE_NAME
/* A lazy record (log_append_lazy) waits at most this long for a commit to ride with. */
#define LOG_LAZY_MAX_NS (50ll * 1000 * 1000)
#define LOG_FLIGHTS_MAX LOG_COMMITS_IN_FLIGHT_MAX
/* Zeros written per call: cutting a torn tail, salvaging, filling a segment (zero_segments). */
#define LOG_ZERO_CHUNK_BYTES (1u << 20)

/* What ran beside a commit (log_flight.overlap), to attribute slow ones. */
enum log_overlap {
    LOG_OVERLAP_ROLL = 1u << 0,
    LOG_OVERLAP_SPARE_ZERO = 1u << 1,
    LOG_OVERLAP_SPARE = 1u << 2,
    LOG_OVERLAP_CHECKPOINT = 1u << 3,
    LOG_OVERLAP_READ = 1u << 4,
};

struct log;

/* One commit in flight: its batch, where it goes, and its ops: in the always mode either one
 * write with RWF_DSYNC through the direct fd, or a buffered write then an fdatasync. */
struct log_flight {
    struct log *log;
    uint8_t *buf;
    struct batch_header header;
    uint64_t offset;
    uint32_t written;          /* bytes of the batch known written */
    int64_t write_result;      /* the write op's result, until the fdatasync completes */
    int64_t started_ns;        /* log_commit_start's clock reading, for on_commit */
    uint32_t overlap;          /* LOG_OVERLAP_* seen while this commit was in flight */
    bool syncing;              /* the write carries a linked fdatasync (sync_op) */
    bool landed;               /* written (and synced): waits for older flights to land */
    struct io_op write_op;
    struct io_op sync_op;
};

struct log_segment {
    uint64_t id;
    uint64_t hash_seed; /* segment_hash_seed of its header: log_read checks batches with it */
    int fd;
    uint32_t reads;  /* log_reads in flight on fd */
    bool dropped;    /* unlinked by a checkpoint; fd closes when reads reach 0 */
    struct log *log;
    struct io_op close_op;
};

enum log_commit_step {
    COMMIT_IDLE = 0,
    COMMIT_ROLL_SYNC_OLD,  /* interval/none: make the old segment durable before sealing it */
    COMMIT_ROLL_OPEN,
    COMMIT_ROLL_FALLOCATE,
    COMMIT_ROLL_HEADER,
    COMMIT_ROLL_HEADER_SYNC,
    COMMIT_ROLL_RENAME,      /* a roll into the spare: give it the segment's name */
    COMMIT_ROLL_DIR_SYNC,
    COMMIT_ROLL_SEAL,        /* the new segment is durable and named: seal the old one */
    COMMIT_ROLL_UNDO_CLOSE,  /* ENOSPC: close and unlink the half-made segment */
    COMMIT_ROLL_UNDO_UNLINK,
    COMMIT_ENOSPC_WAIT,      /* retry the roll at enospc_retry_ns */
    COMMIT_WRITE,            /* batch writes (each with a linked fdatasync in always mode) */
};

enum log_spare_state {
    SPARE_NONE = 0,
    SPARE_OPEN,
    SPARE_FALLOCATE,
    SPARE_ZERO,        /* config.zero_segments: fill it with zeros, a chunk per op */
    SPARE_ZERO_SYNC,
    SPARE_UNDO_CLOSE,  /* making it failed: close and unlink the half-made file */
    SPARE_UNDO_UNLINK,
    SPARE_READY,       /* preallocated (and zeroed), fd open: the next roll takes it */
    SPARE_RECYCLE,     /* rename LOG_RECYCLE_NAME (a dropped segment's file) to the spare */
    SPARE_RECYCLE_DIR_SYNC,
    SPARE_ADOPT,       /* open an existing spare file (recycled or left by an earlier run) */
    SPARE_ADOPT_SIZE,  /* ... and use it if it has the segment size */
};

enum log_checkpoint_step {
    CKPT_IDLE = 0,
    CKPT_SYNC_LOG, /* interval/none: the anchor must be durable before the checkpoint is */
    CKPT_OPEN,
    CKPT_WRITE,
    CKPT_SYNC,
    CKPT_CLOSE,
    CKPT_RENAME,
    CKPT_DIR_SYNC,
    CKPT_UNLINK,
    CKPT_DROP_DIR_SYNC,
    CKPT_CLOSE_STALE, /* first close the temp file of a failed chain whose close was refused */
};

struct log_read_slot {
    struct log *log;
    bool busy;
    struct io_op op;
    struct log_segment *segment;
    struct log_pos pos;
    uint32_t got; /* bytes of the current read step received */
    struct batch_header header;
    void (*each)(void *ctx, const struct log_record *record); /* log_read_batch; else NULL */
    void (*done)(void *ctx, int error, const struct log_record *record);
    void *ctx;
    uint8_t *buf;
    uint32_t buf_size;
};

struct log {
    struct log_config config;
    struct io_backend *backend;
    uint32_t record_len_max;

    /* Segments on disk, ascending; the last is the current one. */
    struct log_segment **segments;
    uint32_t segment_count;
    uint32_t segment_capacity;
    uint64_t current_size; /* the current segment's size (from its header) */

    /* After the last sealed batch. */
    uint64_t tail_segment_id;
    uint64_t tail_offset;
    uint64_t last_batch_hash;
    uint64_t tail_seed;      /* the hash seed of the tail segment */
    uint64_t next_seq;
    /* Sync points of the current segment (offsets): batches wholly written below
     * written_offset, fdatasync'ed below synced_offset; each batch records synced_offset. */
    uint64_t written_offset;
    uint64_t synced_offset;

    /* The open batch. */
    uint8_t *open_buf;
    uint32_t open_raw_len;
    uint32_t open_count;
    uint32_t open_capacity; /* bytes on disk it may take, header included */
    uint64_t open_base_seq;
    uint64_t open_segment_id;
    uint64_t open_offset;
    uint32_t open_urgent;          /* records someone waits for (log_append, not _lazy) */
    bool open_full;                /* an append found no room: commit now */
    struct batch_lz4_gate lz4_gate; /* whether sealing tries lz4 (batch.h) */
    int64_t open_lazy_deadline_ns; /* commit a batch of lazy records by then; else INT64_MAX */

    /* The commits in flight: flight_count slots from flight_head on, oldest first. step is
     * COMMIT_WRITE while any is in flight and no roll runs, a roll step during a roll (whose
     * batch is then the only flight), COMMIT_IDLE when none. */
    enum log_commit_step step;
    struct log_flight flights[LOG_FLIGHTS_MAX];
    uint32_t flight_head;
    uint32_t flight_count;
    struct log_commit_stats commit_stats;
    uint64_t roll_sync_target;
    struct io_op roll_op;
    uint8_t *segment_block; /* the new segment's header block */
    uint8_t *zero_chunk;    /* LOG_ZERO_CHUNK_BYTES of zeros: torn tails, zero_segments */
    struct segment_header roll_header;
    int roll_fd;
    /* The current segment opened a second time with direct I/O, which the always mode
     * commits through (log_direct_fd); -1 before the first commit of a segment, for the rest
     * of direct_segment_id after its open failed, and for good once direct_refused (not
     * configured, or the file system said no). */
    int direct_fd;
    uint64_t direct_segment_id; /* the segment direct_fd is of, or whose open failed; 0: none */
    bool direct_refused;
    uint32_t roll_written;
    bool enospc;
    int64_t enospc_retry_ns;
    bool roll_from_spare; /* this roll writes into the spare (log_spare.c) */
    /* The seal the roll writes into the old segment once the new one is durable and named. */
    bool seal_wanted;        /* false: the old segment had no block left (a v1 segment) */
    uint64_t seal_segment_id;
    uint64_t seal_offset;
    uint64_t seal_prev_hash;
    uint64_t seal_seed;

    /* The spare segment (config.spare_segment). */
    enum log_spare_state spare_state;
    struct io_op spare_op;
    int spare_fd;
    uint64_t spare_zeroed;  /* bytes of the spare filled with zeros so far */
    bool spare_recycled;    /* the ready spare's file held a segment (not zero-filled) */
    bool spare_discard;     /* the undo chain discards a misfit file: retry at once, no warning */
    /* LOG_RECYCLE_NAME exists: a segment a checkpoint dropped, renamed instead of unlinked, for
     * the spare to reuse (its blocks are written already: a roll into it needs no zero fill). */
    bool recycle_ready;
    bool ckpt_recycle; /* the checkpoint's CKPT_UNLINK step renames to LOG_RECYCLE_NAME */
    /* The dropped segment renamed for recycling while its fd is still open (reads in flight
     * on it): nothing writes into its file before they are done; 0 when none. */
    uint64_t recycle_busy_id;
    bool spare_low;         /* the last attempt to make it failed */
    int64_t spare_retry_ns; /* make it (again) at or after this time */
    bool closing;           /* log_close runs: make no new spare */

    /* Durability. */
    uint64_t written_end;
    uint64_t synced_end;
    int error;
    struct io_op isync_op;
    bool isync_active;
    uint64_t isync_target;
    uint64_t isync_offset_target; /* written_offset of isync_segment_id at its start */
    uint64_t isync_segment_id;
    int64_t last_sync_ns;

    /* Checkpoint. */
    enum log_checkpoint_step ckpt_step;
    struct io_op ckpt_op;
    uint8_t *ckpt_buf;     /* the file's head, then its 8-byte trailing hash */
    uint64_t ckpt_head_len;
    uint8_t *ckpt_payload; /* the caller's payload, owned while the checkpoint runs */
    uint32_t ckpt_payload_len;
    uint64_t ckpt_len;     /* the whole file */
    uint64_t ckpt_written;
    uint64_t ckpt_sync_target;
    int ckpt_fd;    /* the temp file, while open (also after a chain whose close was refused) */
    int ckpt_error; /* the first failure, reported once the temp file is closed */
    uint64_t *ckpt_drop;
    uint32_t ckpt_drop_count;
    uint32_t ckpt_drop_index;
    void (*ckpt_done)(void *ctx, int error);
    void *ckpt_ctx;

    /* Reads. */
    struct log_read_slot reads[LOG_READS_MAX];
    uint32_t reads_active;
    uint32_t closes_pending;
    uint8_t *read_scratch;
    uint32_t read_scratch_size;
};

int64_t log_now_ns(const struct log *log);
void log_poison(struct log *log, int error);
void log_report(struct log *log, uint64_t end, enum log_durability level);
struct log_segment *log_segment_find(const struct log *log, uint64_t segment_id);
/* Remove a dropped segment from the list; its fd closes once no read uses it. */
void log_segment_drop(struct log *log, struct log_segment *segment);
void log_segment_release(struct log_segment *segment);
SPOOL_MUST_USE int log_segment_add(struct log *log, uint64_t id, uint64_t hash_seed, int fd);
/* Build the new segment's header (with a fresh random seed) into roll_header/segment_block. */
void log_segment_header_build(struct log *log, uint64_t id, uint64_t prev_id,
                              uint64_t prev_hash, uint16_t flags);
/* 0 when the directory's file system has room for a new file of bytes (or cannot tell);
 * -ENOSPC with a one-line explanation in msg otherwise. Checked before a segment or the
 * spare is preallocated or zero-filled, so a size the disk cannot hold fails at once and
 * leaves nothing behind. */
SPOOL_MUST_USE int log_space_check(struct log *log, uint64_t bytes, char *msg, size_t len);
void log_commit_start(struct log *log);
/* An op of another chain (spare, checkpoint, read) is submitted: note it beside the commit
 * in flight, if any, and when the commit starts (log_overlap_now). */
void log_overlap_note(struct log *log, enum log_overlap what);

/* log_open.c: recovery. */
SPOOL_MUST_USE int log_recover(struct log *log,
                               int (*replay)(void *ctx, const struct log_record *record),
                               void *replay_ctx, void **checkpoint, uint32_t *checkpoint_len,
                               struct log_recovery_report *report);

/* log_spare.c */
void log_spare_tick(struct log *log, int64_t now);
int64_t log_spare_deadline_ns(const struct log *log);
/* Hand the ready spare's fd to the roll (log->roll_fd); false when none is ready, or when the
 * ready one is recycled and the roll's header does not say so (recycled_ok false). */
bool log_spare_take(struct log *log, bool recycled_ok);
/* The flags of a roll's segment header, decided when its commit starts (its hash is the
 * first batch's prev_batch_hash): SEGMENT_FLAG_RECYCLED unless the roll will take a fresh,
 * zero-filled spare that is ready now, or the log makes no spares. */
uint16_t log_spare_roll_flags(const struct log *log);
/* A checkpoint drops seg: rename its file to LOG_RECYCLE_NAME instead of unlinking it? (Reads
 * still in flight on it are waited for before the file is written: recycle_busy_id.) */
bool log_spare_recycle_offer(const struct log *log, const struct log_segment *seg);
/* At close: remove a dropped segment kept for recycling that no spare took. */
void log_spare_recycle_forget(struct log *log);
bool log_spare_busy(const struct log *log); /* a spare op is in flight */

/* log_checkpoint.c */
void log_checkpoint_free(struct log *log);

#endif
