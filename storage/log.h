/*
 * The storage engine: a segmented, checksummed write-ahead log with group commit.
 *
 * It knows nothing of sockets, frames or queues. It appends opaque records, each tagged with a
 * one-byte type that belongs to the caller, assigns each a sequence number (seq, starting at
 * 1, dense, never reused), says when they are durable, reads them back by location, writes and
 * loads an opaque checkpoint anchored to a durable seq, deletes sealed segments, and recovers.
 * Byte layouts are in docs/FORMAT.md.
 *
 * Driving it. The engine never blocks while open: every I/O goes through the io backend
 * (io.h) and finishes in a completion. The owner of the loop calls log_tick() every turn (it
 * starts a commit when none is in flight and the open batch is not empty, and runs the
 * interval sync) and delivers backend completions. Opening (which recovers) and closing are
 * synchronous; they run before and after serving.
 *
 * Group commit. log_append() copies a record into the open batch. A commit is one aligned write
 * of one batch, made durable (config.direct_io: the write itself, O_DIRECT with RWF_DSYNC;
 * else an fdatasync after it); in the always mode up to LOG_COMMITS_IN_FLIGHT_MAX are in
 * flight at once (one at a time in the other modes and across a roll), and they are reported
 * durable in log order whatever order they complete in; what arrives while no commit can start
 * forms the next batch. When the open batch is full, log_append() fails with -ENOBUFS: back pressure,
 * the caller stops reading input until on_durable fires. A commit whose batch would not fit in
 * the current segment first rolls to a new segment (its header durable and the directory
 * fsync'ed before any batch in it is acknowledged).
 *
 * Errors. A failed write or fdatasync poisons the engine: on_durable is called once with the
 * error, every later append fails with that error, nothing not yet durable is ever reported
 * durable, fsync is never retried. Recovery (a new log_open) is the only way out. -ENOSPC
 * while creating a new segment fails with LOG_ENOSPC, distinct from a poisoning error; the
 * batch stays pending and the engine retries the roll on a later tick (nothing was written).
 * With config.spare_segment the next segment's space is reserved ahead (log_space_low()).
 */
#ifndef SPOOL_STORAGE_LOG_H
#define SPOOL_STORAGE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "assert.h"
#include "io.h"

/* Commits in flight at once in the always mode. io_uring runs direct writes (and fdatasyncs
 * after buffered ones) side by side, and a virtio disk here completes overlapping
 * flushes far sooner than back-to-back ones: with one commit in flight a put arriving during a
 * commit waits for all of it, and the disk idles between commits while the loop turns. e2e
 * 100 B, 8+8 depth 32 on the shared machine: 1.44 x the jobs/s of one commit in flight with 4,
 * 1.11 x with 2 (median of 8 alternating pairs each, 2026-12-05). More only makes batches
 * smaller. */
#define LOG_COMMITS_IN_FLIGHT_MAX 4u

/* Project error codes live in a reserved negative band below every errno. */
enum log_error {
    LOG_ECORRUPT = -10001,  /* damage that recovery will not repair on its own */
    LOG_ENOSPC = -10002,    /* the disk is full: new appends refused, nothing lost */
    LOG_EPOISONED = -10003, /* an earlier write or fdatasync failed; reopen to recover */
    LOG_ELOCKED = -10004,   /* another process holds the data directory */
    LOG_EVERSION = -10005,  /* a file of a format version this build does not read */
    LOG_ETOOBIG = -10006,   /* a record larger than a batch can hold */
};

const char *log_strerror(int error);

enum log_sync_mode {
    LOG_SYNC_ALWAYS = 0, /* fdatasync every batch before reporting it durable */
    LOG_SYNC_INTERVAL,   /* write every batch; fdatasync at most every sync_interval_ms */
    LOG_SYNC_NONE,       /* write every batch; never fdatasync except at roll and close */
};

/* What on_durable reports as reached. */
enum log_durability {
    LOG_DURABLE_WRITTEN = 1, /* in the OS page cache: survives kill -9, not power loss */
    LOG_DURABLE_SYNCED = 2,  /* fdatasync'ed: survives power loss */
};

/* Where a record lives: enough to read it back without an index. */
struct log_pos {
    uint64_t seq;          /* the record's sequence number */
    uint64_t segment_id;   /* the segment's first seq (its file name) */
    uint64_t batch_offset; /* byte offset of the batch's header in the segment file */
};

struct log_config {
    const char *dir;                  /* data directory (created if missing) */
    uint64_t segment_size_bytes;      /* default 64 MiB */
    uint32_t batch_size_bytes_max;    /* default 1 MiB, must be <= segment_size / 4 */
    enum log_sync_mode sync_mode;     /* default LOG_SYNC_ALWAYS */
    uint32_t sync_interval_ms;        /* LOG_SYNC_INTERVAL only */
    bool compress;                    /* lz4 per batch when it pays; default true */
    bool salvage;                     /* recovery cuts at the first damage and reports it */
    /* Keep the next segment's space reserved in a preallocated "segment.spare", so that a
     * roll never needs new disk space while one is ready, and say through log_space_low()
     * when none could be made. Default false. */
    bool spare_segment;
    /* Fill a new segment with zeros before the log writes into it: the first segment at open,
     * the current one's unused rest on reopen, and the spare (in the background, before it
     * is ready). A commit then overwrites blocks that already hold data, so its fdatasync
     * writes the data alone, with no extent conversion or inode write (about half the cost
     * on ext4). A roll that finds no ready spare gets a preallocated segment only. Costs one
     * segment of extra writes per segment. Default true. */
    bool zero_segments;
    /* Commits in flight at once in the always mode, 1..LOG_COMMITS_IN_FLIGHT_MAX (default the
     * maximum; 1: each commit waits for the one before, as on a disk that does no better with
     * overlapping flushes). */
    uint32_t commits_in_flight;
    /* The always mode writes each batch through a second fd of the segment opened with
     * O_DIRECT, as one RWF_DSYNC write: no copy into the page cache, no io-wq worker between
     * the write and its flush, and no write serialized behind another commit's (io_uring runs
     * buffered writes to one file one at a time; direct writes side by side). Falls back to
     * buffered writes linked to fdatasyncs when the file system refuses O_DIRECT (tmpfs).
     * Default true. */
    bool direct_io;
    /* Called when the durable watermark advances: every record with seq < durable_seq_end has
     * reached level. error != 0 (negative) when the engine was poisoned; then level is 0 and
     * durable_seq_end is unchanged. In the interval and none modes, LOG_DURABLE_SYNCED may
     * repeat a durable_seq_end already reported as LOG_DURABLE_WRITTEN. */
    void (*on_durable)(void *ctx, uint64_t durable_seq_end, enum log_durability level,
                       int error);
    /* Called once per group commit when its batch is written (and, in the always mode,
     * synced): its records, its bytes on disk and the time from the start of the commit
     * (rolls included) to its completion, in ns. For metrics; may be NULL. */
    void (*on_commit)(void *ctx, uint32_t records, uint32_t bytes, int64_t duration_ns);
    void *ctx;
    /* Injectable clock (CLOCK_MONOTONIC ns) for the interval mode; NULL = the real clock. */
    int64_t (*now_ns)(void *ctx);
};

void log_config_defaults(struct log_config *config);

/* A record handed to a scan or read callback; data is valid only during the callback. */
struct log_record {
    struct log_pos pos;
    uint8_t type;
    uint32_t len;
    const void *data;
};

/* What recovery found, for logging (torn tails) and for tools. */
struct log_recovery_report {
    uint32_t segment_count;
    uint64_t batch_count;
    uint64_t record_count;
    uint64_t next_seq;              /* the seq the next append gets */
    bool torn_tail;                 /* an invalid tail of the newest segment was cut */
    uint64_t torn_segment_id;
    uint64_t torn_offset;
    uint64_t torn_bytes;
    bool salvaged;                  /* salvage mode cut at damage */
    uint64_t salvage_seq_lost_from; /* first seq dropped by salvage */
    char message[512];              /* on LOG_ECORRUPT: segment, offset and seq range; after a
                                       torn tail cut or a salvage: what was dropped */
};

struct log;

/*
 * Open (and recover) the log in config->dir through backend (owned by the caller, must outlive
 * the log). Takes the directory lock (LOG_ELOCKED if held), loads the newest valid checkpoint,
 * verifies every batch of every segment, cuts a torn tail (report->torn_tail), and calls
 * replay(ctx, record) for every record with seq >= the checkpoint's anchor, in seq order.
 * replay may be NULL. A non-zero return from replay stops the open with that error.
 * On damage other than a torn tail: LOG_ECORRUPT with report->message naming the segment,
 * offset and seq range (unless config->salvage). checkpoint and checkpoint_len receive the
 * checkpoint payload (malloc'ed, the caller frees; NULL/0 when there is none).
 */
SPOOL_MUST_USE int log_open(const struct log_config *config, struct io_backend *backend,
                            int (*replay)(void *ctx, const struct log_record *record),
                            void *replay_ctx, void **checkpoint, uint32_t *checkpoint_len,
                            struct log_recovery_report *report, struct log **out);

/*
 * Copy a record into the open batch. On success sets *pos (seq and location; the location is
 * final). -ENOBUFS: the open batch is full (try again after on_durable). LOG_ETOOBIG: the
 * record can never fit. A poisoning error or LOG_ENOSPC: refused.
 */
SPOOL_MUST_USE int log_append(struct log *log, uint8_t type, const void *data, uint32_t len,
                              struct log_pos *pos);

/*
 * log_append for a record nobody waits for, whose loss in a crash is harmless (the broker's
 * LEASE: a delivery's attempt count). It starts no commit by itself: it rides with the next
 * one, which something else asks for (log_append, a full batch, log_close), or goes out
 * after at most 50 ms. Durable order is unchanged: a later record's durability still covers
 * it.
 */
SPOOL_MUST_USE int log_append_lazy(struct log *log, uint8_t type, const void *data,
                                   uint32_t len, struct log_pos *pos);

/* Bytes an append of len would take in the open batch (for admission control). */
uint32_t log_record_footprint(uint32_t len);

/* Footprint bytes (log_record_footprint) the open batch still takes before log_append says
 * -ENOBUFS: appends whose footprints add up to at most this all succeed, in one commit,
 * unless the log is poisoned or out of space (log_error, LOG_ENOSPC). */
uint32_t log_open_room(const struct log *log);
/* What log_open_room says of an empty open batch: batch_size_bytes_max less its header. */
uint32_t log_batch_room_max(const struct log *log);

/* Start a commit if none is in flight and records are waiting; run the interval sync. Call
 * once per loop turn, after handling input. */
void log_tick(struct log *log);

/* The absolute CLOCK_MONOTONIC time (ns) by which log_tick must run again, or INT64_MAX. */
int64_t log_next_deadline_ns(const struct log *log);

uint64_t log_next_seq(const struct log *log);
uint64_t log_durable_seq_end(const struct log *log); /* records < this are durable */
bool log_idle(const struct log *log);                /* nothing pending and nothing in flight */
int log_error(const struct log *log);                /* 0 or the poisoning error */

/*
 * The disk is (nearly) full: true while a roll waits for space (appends fail with
 * LOG_ENOSPC), and, with config.spare_segment, while the next segment's space could not be
 * reserved. Admission control: refuse what grows the log (new jobs) with a retryable error
 * while this is true, and let everything else through; it lands in the current segment and
 * then in the spare, so acks and deletes keep working until a checkpoint frees space.
 */
bool log_space_low(const struct log *log);

/* Buckets of struct log_commit_stats' histogram: bucket i counts commits of [2^(i-1), 2^i) µs
 * (bucket 0: under 1 µs); 24 buckets reach 2^23 µs, 8 s, past any commit that is not a hang. */
#define LOG_COMMIT_HIST_BUCKETS 24u
/* A commit at least this slow is counted as slow, by what ran beside it: 10 ms is ~50 times
 * a 4 KiB commit on an ordinary SSD, far beyond queueing behind one another commit. */
#define LOG_COMMIT_SLOW_NS (10ll * 1000 * 1000)

/* Commit timings since the open (each from its start, rolls included, to its completion), for
 * finding a latency tail; log_close logs them (msg="commit timings"). A slow commit is counted
 * under every cause that overlapped it. */
struct log_commit_stats {
    uint64_t commits;
    uint64_t total_ns;
    int64_t max_ns;
    uint64_t slow;            /* commits of >= LOG_COMMIT_SLOW_NS */
    uint64_t slow_roll;       /* ... that rolled to a new segment */
    uint64_t slow_spare_zero; /* ... while the spare was zero-filled or its zeros synced */
    uint64_t slow_spare;      /* ... while another spare op ran (open, fallocate, undo) */
    uint64_t slow_checkpoint; /* ... while a checkpoint op ran */
    uint64_t slow_read;       /* ... while log_reads were in flight */
    uint64_t hist[LOG_COMMIT_HIST_BUCKETS];
    uint64_t spares_zeroed;   /* spares made by a zero fill (the write recycling avoids) */
    uint64_t spares_reused;   /* spares made of a dropped segment or a leftover spare */
    uint64_t direct_fallbacks; /* segments whose direct fd failed to open for another reason
                                  than EINVAL or EOPNOTSUPP (which end direct I/O for good):
                                  their commits were buffered writes and fdatasync */
};
const struct log_commit_stats *log_commit_stats(const struct log *log);

/*
 * Read back one record by its location. done(ctx, error, record) runs from a completion
 * (never inside this call); record is valid only during done. The batch is verified (hashes,
 * seq) before the record is handed out. Reads of records not yet durable are refused with
 * -EAGAIN (the caller keeps those in memory). Other refusals (done is not called): -EBUSY when
 * LOG_READS_MAX (64) reads are in flight, -ENOENT when the segment is gone (dropped by a
 * checkpoint), -EINVAL for a location that cannot exist. done gets LOG_ECORRUPT when the bytes
 * at the location do not verify or do not hold pos->seq, or a negative errno from the read.
 */
SPOOL_MUST_USE int log_read(struct log *log, const struct log_pos *pos,
                            void (*done)(void *ctx, int error, const struct log_record *record),
                            void *ctx);

/*
 * Read back the whole batch that holds pos->seq: each(ctx, record) runs for every record of the
 * batch in seq order (record.pos carries its own seq, the batch's segment and offset), then
 * done(ctx, 0, NULL); on failure done(ctx, error, NULL) alone, with no each call (the batch is
 * verified before the first record is handed out). Refusals and errors as log_read; both share
 * the LOG_READS_MAX read slots.
 */
SPOOL_MUST_USE int log_read_batch(struct log *log, const struct log_pos *pos,
                                  void (*each)(void *ctx, const struct log_record *record),
                                  void (*done)(void *ctx, int error,
                                               const struct log_record *record),
                                  void *ctx);

/* Segments on disk, oldest first, and the one being written (never deletable). */
uint32_t log_segment_count(const struct log *log);
uint64_t log_segment_id(const struct log *log, uint32_t index);
uint64_t log_current_segment_id(const struct log *log);

/*
 * Write a checkpoint: payload (copied) anchored at anchor_seq (<= durable_seq_end: the state
 * in payload reflects every record < anchor_seq). The engine writes a temp file, fdatasyncs
 * it, renames it over the checkpoint, fsyncs the directory, and then deletes the segments in
 * drop (sealed segments whose records are all < anchor_seq and which the caller no longer
 * needs; out of order is fine), fsyncing the directory again. done(ctx, error) runs when all
 * of it is durable. One checkpoint at a time: -EBUSY if one is in flight.
 */
SPOOL_MUST_USE int log_checkpoint(struct log *log, uint64_t anchor_seq, const void *payload,
                                  uint32_t payload_len, const uint64_t *drop, uint32_t drop_count,
                                  void (*done)(void *ctx, int error), void *ctx);

/* The same, without copying the payload: payload (malloc'ed) belongs to the log from the call
 * on, whatever it returns, and is freed once the checkpoint is written or fails. For large
 * payloads, whose copy would otherwise cost the caller's thread a pass over every byte. */
SPOOL_MUST_USE int log_checkpoint_give(struct log *log, uint64_t anchor_seq, void *payload,
                                       uint32_t payload_len, const uint64_t *drop,
                                       uint32_t drop_count, void (*done)(void *ctx, int error),
                                       void *ctx);

/* Wait (polling the backend) until nothing is pending or in flight, then release everything.
 * Returns the poisoning error if any. */
int log_close(struct log *log);

/*
 * Read-only scanning for tools (spool-log) and tests: walks every segment and batch in a
 * directory with the same decoder recovery uses, never writes, takes no lock.
 */
enum log_damage_kind {
    LOG_DAMAGE_NONE = 0,
    LOG_DAMAGE_TORN_TAIL,       /* invalid bytes at the end of the newest segment only */
    LOG_DAMAGE_BAD_HEADER,      /* batch header hash, magic or fields wrong */
    LOG_DAMAGE_BAD_PAYLOAD,     /* payload hash wrong, or decompression failed */
    LOG_DAMAGE_SEQ_GAP,         /* a batch whose base seq does not continue the previous one */
    LOG_DAMAGE_BAD_CHAIN,       /* prev-hash link or segment header link wrong */
    LOG_DAMAGE_MISSING_SEGMENT, /* a segment the chain or the checkpoint names is absent */
    LOG_DAMAGE_BAD_SEGMENT_HEADER,
    LOG_DAMAGE_BAD_CHECKPOINT,
};

const char *log_damage_name(enum log_damage_kind kind);

struct log_damage {
    enum log_damage_kind kind;
    uint64_t segment_id;
    uint64_t offset;
    uint64_t seq_first; /* seq range affected, when known (0 when not) */
    uint64_t seq_last;
    char detail[160];
};

struct log_scan_callbacks {
    /* Each valid batch, then each of its records. Either may be NULL. Non-zero stops. */
    int (*batch)(void *ctx, uint64_t segment_id, uint64_t offset, uint64_t base_seq,
                 uint32_t record_count, uint32_t stored_len, uint32_t raw_len, uint8_t codec);
    int (*record)(void *ctx, const struct log_record *record);
    /* Each problem found; scanning goes on past damage where it can. */
    void (*damage)(void *ctx, const struct log_damage *damage);
    /* The checkpoint, if any (payload valid during the call). */
    void (*checkpoint)(void *ctx, uint64_t anchor_seq, const void *payload, uint32_t len);
    void *ctx;
};

/* Returns 0 when the log is sound (a torn tail is reported through damage but is not an error),
 * LOG_ECORRUPT when any other damage was reported, LOG_EVERSION, a callback's non-zero return,
 * or a negative errno. */
SPOOL_MUST_USE int log_scan(struct io_backend *backend, const struct log_scan_callbacks *callbacks);

#endif
