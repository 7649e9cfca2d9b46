/*
 * A deterministic log workload for the crash and fault suites, and the checker that opens a
 * log image and compares what it replays with what was appended.
 *
 * Records are a pure function of (seed, seq): the type, the length (mostly small, some
 * of a few KiB, a few near the batch limit, some empty) and the bytes (a third compressible
 * text, the rest pseudo-random), so a checker can tell exactly whether a replayed record is
 * one that was appended, without keeping copies.
 *
 * The driver appends a few records per loop turn, ticks the log and polls the backend once,
 * as the server's loop does; it writes one checkpoint that drops the oldest sealed segment
 * once there are three; it records every durable report with the backend's op count at that
 * moment (so a crash image at op k can be held to exactly what had been promised by then).
 * Every loop is bounded; a fake clock advances a fixed step per turn.
 */
#ifndef SPOOL_TEST_LOG_WORKLOAD_H
#define SPOOL_TEST_LOG_WORKLOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "log.h"

/* The largest record the workload makes: fits a 16 KiB batch with room for its header. */
#define WORKLOAD_RECORD_MAX (12u * 1024u)

struct workload_durable {
    uint64_t op_count;         /* the op counter when the report arrived */
    uint64_t durable_seq_end;  /* every seq below has reached level */
    enum log_durability level; /* WRITTEN (page cache) or SYNCED (fdatasync'ed) */
    bool tagged;               /* the tag hook said true at that moment */
};

/* Checkpoints one workload writes at most: one per run (generation). */
#define WORKLOAD_CHECKPOINTS_MAX 4u

struct workload_checkpoint {
    uint64_t anchor;
    uint64_t dropped; /* the segment id it dropped */
    bool done;
    int error;
    uint64_t done_op; /* the op counter when done ran */
};

struct workload {
    /* Set by the caller before workload_run. */
    uint64_t seed;
    uint32_t record_count;        /* appends to make */
    bool checkpoint;              /* per run, one checkpoint dropping the oldest sealed segment */
    bool reads;                   /* read back a durable record (log_read) every few turns */
    enum log_sync_mode sync_mode; /* LOG_SYNC_ALWAYS (0) unless set */
    uint32_t sync_interval_ms;    /* LOG_SYNC_INTERVAL */
    bool spare_segment;           /* log_config.spare_segment: rolls into a reserved spare */
    uint64_t (*op_count)(void *ctx); /* the backend's op counter (memfs) */
    bool (*tag)(void *ctx);          /* optional: marks reports (e.g. "after the fault") */
    void *hook_ctx;

    /* Results. */
    int open_error;
    uint32_t appended;
    uint64_t next_seq;     /* one past the last appended seq */
    uint32_t enospc_count; /* appends refused with LOG_ENOSPC */
    uint32_t enobufs_count;
    int append_error;      /* the first other append error (poisoning) */
    int late_append_error; /* an append tried after the workload, when poisoned */
    int log_error_at_end;  /* log_error() before close */
    int close_error;
    struct workload_durable *durable; /* every report, in order */
    uint32_t durable_count;
    uint32_t durable_cap;
    int durable_error; /* the error on_durable reported, if any */
    uint32_t durable_error_count;
    uint32_t durable_violations;    /* reports going backwards or past what was appended */
    uint64_t final_durable_seq_end; /* the highest LOG_DURABLE_SYNCED report */
    uint64_t final_written_seq_end; /* the highest report of either level */
    struct workload_checkpoint checkpoints[WORKLOAD_CHECKPOINTS_MAX];
    uint32_t checkpoint_count;
    bool checkpoint_this_run;  /* started one in the current run */
    uint32_t segments_max;     /* the most segments seen at once */
    struct log_pos *positions; /* by seq, for reads (a log starts at seq 1) */
    uint32_t positions_cap;
    uint32_t reads_started;
    uint32_t reads_refused; /* log_read returned an error: nothing started */
    uint32_t reads_done;    /* done callbacks, each exactly once per started read */
    uint32_t reads_failed;  /* done with an error */
    uint32_t reads_wrong;   /* done with a record other than the one appended there */
    uint32_t turns;
    bool tag_seen;            /* the tag hook said true at the end of some turn */
    uint32_t appended_at_tag; /* appends made before that turn ended (all, if never) */
    int64_t now_ns;           /* the fake clock */
};

/* The record at seq. buf holds WORKLOAD_RECORD_MAX bytes. */
void workload_record(uint64_t seed, uint64_t seq, uint8_t *type, uint8_t *buf, uint32_t *len);

/* The payload of the workload's checkpoint at anchor: "ckpt anchor=<anchor>". */
uint32_t workload_checkpoint_payload(uint64_t anchor, char *buf, uint32_t len);

/* The config every suite uses: 64 KiB segments, 16 KiB batches, sync always, lz4 on. */
void workload_config(struct log_config *config);

/* Open a log on io, append until w->appended reaches w->record_count, close. Results land
 * in w. Run again with the same w (and a larger record_count) on the same directory for
 * another generation: recovery, then appends after it. */
void workload_run(struct workload *w, struct io_backend *io);

/* The newest checkpoint anchor among checkpoints done (without error) at op count <= k;
 * 0 if none. */
uint64_t workload_checkpoint_anchor_at(const struct workload *w, uint64_t k);
/* The most recent checkpoint, or NULL. */
const struct workload_checkpoint *workload_checkpoint_last(const struct workload *w);
void workload_free(struct workload *w);

/* The watermark promised at level (or higher) by reports made at op count <= k. */
uint64_t workload_durable_at(const struct workload *w, uint64_t k, enum log_durability level);

/* What an image must hold. */
struct workload_expect {
    uint64_t durable_seq_end; /* every seq below must be replayed (or covered by the anchor) */
    uint64_t checkpoint_anchor_min; /* a checkpoint at least this new must be there (0: none) */
    bool append_after;              /* also append one record, close, reopen and find it */
};

/* workload_check_image's verdicts besides 0. */
#define WORKLOAD_CHECK_FAILED (-1) /* the log opened but broke a promise */
#define WORKLOAD_OPEN_FAILED (-2)  /* log_open itself failed (a fault may explain it) */

/*
 * Open a log on io (an image) and check it: open succeeds; the checkpoint, if any, is one
 * the workload wrote and not older than expect->checkpoint_anchor_min; replay starts at its
 * anchor (or seq 1), has no gap, holds only appended records
 * with their exact bytes, and reaches expect->durable_seq_end. 0 if all hold, else
 * WORKLOAD_OPEN_FAILED or WORKLOAD_CHECK_FAILED with the reason in why.
 */
int workload_check_image(const struct workload *w, struct io_backend *io,
                         const struct workload_expect *expect, char *why, uint32_t why_len);

#endif
