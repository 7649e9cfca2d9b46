/*
 * spool-log: the offline tool over a data directory (verify, dump, explain, why-retained,
 * stats, replay, salvage). Shared declarations of its modules.
 *
 * A directory is loaded once into a struct logdir (spool_log_dir.c) through storage's
 * read-only API: log_scan (the same decoder recovery uses) for the verdict and every record of
 * every batch that verifies and continues the chain; then, for each damaged region inside a
 * segment, scan_read_batch block by block after it to find the batches that still verify
 * (resync) and to measure each damaged region, so one flipped bit does not hide the rest of
 * a segment. Small records are copied; PUT records keep only their job id and queue, and
 * their bytes are read back from their (verified) batch when a command needs the body. So the
 * footprint is the log's metadata plus the bodies of live jobs, as in spoold.
 *
 * Invariants: nothing here ever opens a file of the inspected directory for writing, and no
 * lock is taken, so it works on a directory a running server holds: every segment is opened
 * once and held (retention may unlink it meanwhile), and damage counts only when two scans
 * see it in the same place (the growing tail can race a scan). Records in recs are sorted by
 * seq and unique by seq; every one of them came from a batch whose hashes verified.
 *
 * The state at the end of the log (spool_log_state.c) is the broker's own state machine
 * (src/queue.h) fed the checkpoint payload and then every record at or after its anchor, so
 * "live" means exactly what the server would consider live after recovering this directory.
 */
#ifndef SPOOL_TOOLS_SPOOL_LOG_H
#define SPOOL_TOOLS_SPOOL_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"
#include "queue.h"
#include "record.h"

/* Exit codes: 0 clean, 1 a torn tail (the server would cut it), 2 corruption, 3 bad usage
 * or a directory that cannot be read at all. */
enum spool_log_exit {
    EXIT_CLEAN = 0,
    EXIT_TORN = 1,
    EXIT_CORRUPT = 2,
    EXIT_USAGE = 3,
};

/* One verified record. Small records are copied; a PUT (whose body may be large) is not: its
 * bytes are read back from its batch on demand (logdir_decode), so the tool's memory is the
 * log's metadata, not its bodies. */
struct logdir_rec {
    uint64_t seq;
    uint64_t segment_id;
    uint64_t offset; /* of its batch in the segment file */
    uint64_t job_id; /* the job it names (0: QUEUE_META, PURGE, or does not decode) */
    uint32_t queue;  /* PUT, QUEUE_META, PURGE: index into logdir.queue_names, else NONE */
    uint8_t type;
    bool decodes;  /* record_decode accepted it */
    bool resynced; /* found past damage in its segment, not chained to what precedes it */
    uint32_t len;
    uint8_t *data;  /* NULL for PUT */
    uint64_t order; /* arrival order, so duplicates resolve the same way every time */
};

#define LOGDIR_QUEUE_NONE UINT32_MAX

struct logdir_name {
    char name[LIMIT_QUEUE_NAME_MAX_BYTES + 1];
    uint32_t len;
};

struct logdir_batch {
    uint64_t segment_id;
    uint64_t offset;
    uint64_t base_seq;
    uint32_t record_count;
    uint32_t stored_len;
    uint32_t raw_len;
    uint8_t codec;
};

/* A damaged region: log_scan's report, with the seq range completed and the jobs it touches. */
struct logdir_damage {
    struct log_damage d;
    uint64_t bytes;    /* for a region inside a segment: its length */
    bool measured;     /* its extent was measured by a resync (spool_log_dir.c) */
    uint64_t *job_ids; /* known (decoded leniently) or inferred (missing PUT ids), ascending */
    uint32_t job_count;
};

struct logdir_segment {
    uint64_t id;
    int fd; /* read-only, held for the whole run: a running server's retention may unlink the
               file meanwhile, and PUT bodies are read back later */
    uint64_t file_size;
    bool header_ok;
    struct segment_header_view {
        uint64_t segment_size;
        uint64_t prev_segment_id;
        int64_t created_unix_ns;
        uint64_t hash_seed; /* segment_hash_seed; the id (v1's seed) when the header is bad */
        bool recycled;      /* segment_recycled: stale blocks, not zeros, after its end */
    } header;
    uint64_t batch_count;
    uint64_t record_count;
    uint64_t stored_bytes; /* batch bytes on disk (headers + payload, unpadded) */
    uint64_t raw_bytes;    /* payload bytes once decompressed */
    uint64_t used_bytes;   /* aligned bytes the batches occupy */
};

struct logdir {
    const char *path;
    struct io_backend *backend;
    struct logdir_rec *recs;
    size_t rec_count;
    size_t rec_capacity;
    struct logdir_batch *batches;
    size_t batch_count;
    size_t batch_capacity;
    struct logdir_damage *damages;
    size_t damage_count;
    size_t damage_capacity;
    struct logdir_segment *segments;
    uint32_t segment_count;
    bool has_checkpoint;
    uint64_t checkpoint_anchor_seq;
    uint8_t *checkpoint_payload;
    uint32_t checkpoint_len;
    int scan_error; /* log_scan's return (0 or LOG_ECORRUPT when only damage was found) */
    struct logdir_name *queue_names;
    uint32_t queue_name_count;
    uint32_t queue_name_capacity;
    /* The batch last read back for a PUT's bytes (logdir_decode). */
    struct scan_reader *reader;
    int cache_fd;
    uint64_t cache_fd_segment;
    bool cache_valid;
    uint64_t cache_segment;
    uint64_t cache_offset;
    uint64_t cache_base_seq;
    uint32_t cache_raw_len;
    const uint8_t *cache_raw;
};

/* Load DIR read-only. 0, or a negative errno / LOG_EVERSION when it cannot be read at all
 * (the message is printed on stderr). logdir_free in every case. */
int logdir_load(struct logdir *dir, const char *path);
void logdir_free(struct logdir *dir);
/* The bytes of a record (for a PUT, read back from its batch: valid until the next call for a
 * record of another batch), or NULL when they cannot be read any more (printed). */
const uint8_t *logdir_rec_bytes(struct logdir *dir, const struct logdir_rec *r);
/* Decode a record (pointers into logdir_rec_bytes' result): 0, or RECORD_EINVAL / an error. */
int logdir_decode(struct logdir *dir, const struct logdir_rec *r, struct record *out);
/* The queue name of a PUT, QUEUE_META or PURGE record (NULL for others). */
const struct logdir_name *logdir_rec_queue(const struct logdir *dir, const struct logdir_rec *r);
/* The record with this seq, or NULL. */
const struct logdir_rec *logdir_find(const struct logdir *dir, uint64_t seq);
const struct logdir_segment *logdir_segment(const struct logdir *dir, uint64_t id);
/* Is there any damage that is not a torn tail? Any torn tail? */
bool logdir_corrupt(const struct logdir *dir);
bool logdir_torn(const struct logdir *dir);
/* "A..B", "A..?" (end unknown) or "none" (the region held no record, e.g. a segment header
 * whose batches all verify), in buf. */
const char *logdir_seq_range(const struct log_damage *d, char *buf, size_t len);
/* The first seq lost to damage (a torn tail included), or UINT64_MAX when none. */
uint64_t logdir_first_lost_seq(const struct logdir *dir);

/* The end state: the broker's state machine after checkpoint + records. */
struct logstate {
    struct queue_state *queues;
    int64_t now_ms;
    struct queue_time now; /* now_ms for the queue; nothing runs timers offline */
    bool checkpoint_used;
    uint64_t bodies_missing; /* live jobs whose PUT record (with the body) is not readable */
    uint64_t *missing_ids;   /* their ids, ascending (bodies_missing of them) */
};

/* Build the state from the records with seq < seq_end (UINT64_MAX: all), starting from the
 * checkpoint when use_checkpoint and its anchor <= seq_end. 0 or an error (printed). */
int logstate_build(struct logstate *state, struct logdir *dir, uint64_t seq_end,
                   bool use_checkpoint);
void logstate_free(struct logstate *state);
/* Live jobs (every state but DONE), ascending id; the array is malloc'ed (caller frees). */
struct job **logstate_live_jobs(const struct logstate *state, size_t *count);

/* job id -> its PUT record (spool_log_dump.c). */
struct put_index {
    uint64_t *ids;
    size_t *recs; /* indexes into logdir.recs */
    size_t count;
    bool sorted;
};
void put_index_build(struct put_index *px, const struct logdir *dir);
const struct logdir_rec *put_index_find(const struct put_index *px, const struct logdir *dir,
                                        uint64_t id);
void put_index_free(struct put_index *px);

/* Wall-clock Unix milliseconds: the broker's time base for delays and ttls. */
int64_t wall_ms(void);

/* Small shared helpers (spool_log.c). */
bool arg_u64(const char *text, uint64_t *out);
void json_string(FILE *out, const void *bytes, size_t len);
void base64_write(FILE *out, const void *bytes, size_t len);
/* qsort order of uint64_t values, and membership in an array sorted by it. */
int u64_compare(const void *a, const void *b);
bool ids_contain(const uint64_t *ids, size_t count, uint64_t id);

/* The commands; argv[0] is the command name. Each returns the process exit code. */
int cmd_verify(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_explain(int argc, char **argv);
int cmd_why_retained(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_salvage(int argc, char **argv);

#endif
