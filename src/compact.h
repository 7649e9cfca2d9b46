/*
 * Compaction: one stuck job must not pin its segment, and every later one, forever.
 *
 * Retention (retention.h) deletes a sealed segment once no live job's body lives there and a
 * checkpoint covers it. A segment whose live jobs take less than COMPACT_LIVE_PERCENT of its
 * size is not worth keeping for them: the compactor copies each of its live jobs forward as a
 * RELOCATE record (docs/RECORDS.md) appended like any other, and once a copy is durable the
 * job's position moves to it (queue_job_move_durable). The segment then holds no live job and
 * the next checkpoint, which the compactor asks for, drops it. Nothing is deleted here.
 *
 * Crash safety comes from that order. A copy that is not durable moved nothing. A copy that
 * is durable but not yet covered by a checkpoint is replayed (it moves the job again) and
 * the old segment is still there (the checkpoint on disk lists its jobs there). A checkpoint
 * anchored after the copy records the copy's position, and only a checkpoint drops segments.
 * An ack after the copy is a later record: replay applies it after the copy. A copy is
 * emitted only for a job live at that moment, and replay never lets a copy bring back a job
 * it knows to be gone (queue_replay.c).
 *
 * Work is bounded per loop turn and runs in cycles: a survey walks the job table
 * (COMPACT_PAGES_PER_TURN pages a turn) summing each sealed segment's live bytes; the
 * emptiest segments below the threshold become targets (at most COMPACT_TARGETS_MAX, and at
 * most one segment's worth of copies, so a cycle needs one segment of new disk at most); a
 * second walk lists the batches that hold their live jobs' bodies; those batches are read
 * back through the log (io_uring, at most COMPACT_READS_MAX at a time, the log's read slots
 * shared with deliveries), each live job found in one is copied, and the positions move as the
 * copies become durable. A survey starts at most every COMPACT_SURVEY_INTERVAL_MS, and only when a
 * sealed segment may be below the threshold by its live job count.
 */
#ifndef SPOOL_SRC_COMPACT_H
#define SPOOL_SRC_COMPACT_H

#include <stdbool.h>
#include <stdint.h>

#include "log.h"
#include "queue.h"

/* A sealed segment whose live bytes are below this share of its size is compacted: at 25%
 * the copies cost at most a third of the space they free, and disk use stays below four times
 * the live data plus the segments not yet sealed or dropped (OPERATIONS.md derives it). */
#define COMPACT_LIVE_PERCENT 25u
/* The highest threshold spoold accepts (--compact-percent): at 50% a copy costs as much as it
 * frees; above, compaction would write more than it reclaims. */
#define COMPACT_LIVE_PERCENT_MAX 50u
/* A survey walks every job, a share per loop turn: 128 pages of the job table (32 job slots
 * each, 4096 jobs) cost about what a checkpoint walk's turn does (SERVER_CHECKPOINT_STEP_JOBS:
 * a few hundred microseconds), and a survey starts at most once a second, so even with
 * millions of jobs it stays a small share of the loop. */
#define COMPACT_SURVEY_INTERVAL_MS 1000
#define COMPACT_PAGES_PER_TURN 128u
/* Segments compacted per cycle: the survey sums every sealed segment, the copy walk targets
 * the emptiest ones first. */
#define COMPACT_TARGETS_MAX 16u
/* Batch reads in flight: a few keep the disk busy without starving deliveries of the log's
 * LOG_READS_MAX read slots. */
#define COMPACT_READS_MAX 4u
/* Batches listed per cycle, and copies waiting for durability: bounds the cycle's memory
 * (40 and 32 bytes each); what does not fit waits for the next cycle. */
#define COMPACT_BATCHES_MAX 8192u
#define COMPACT_MOVES_MAX 65536u
/* Moves applied per loop turn (a lookup and two segment counts each): 4096 cost what a
 * checkpoint walk's turn does. */
#define COMPACT_MOVES_PER_TURN 4096u

/* The policy: is a sealed segment of segment_bytes holding live_bytes of live records worth
 * compacting, at a threshold of live_percent (0: never)? (live_bytes > 0: a segment without
 * live jobs is retention's, not ours.) */
bool compact_segment_wanted(uint64_t live_bytes, uint64_t segment_bytes, uint32_t live_percent);

struct compact_stats {
    uint64_t cycles;             /* surveys that found targets */
    uint64_t segments_compacted; /* targets left without a live job */
    uint64_t jobs_copied;        /* RELOCATE records appended */
    uint64_t bytes_copied;       /* their bytes */
    uint64_t read_errors;
};

struct compactor;

/* segment_bytes: the log's segment size; live_percent: the threshold (COMPACT_LIVE_PERCENT by
 * default, at most COMPACT_LIVE_PERCENT_MAX; 0 turns compaction off). NULL when out of memory. */
struct compactor *compactor_create(struct log *log, struct queue_state *queues,
                                   uint64_t segment_bytes, uint32_t live_percent);
/* Survey at most every interval_ms instead of COMPACT_SURVEY_INTERVAL_MS (tests on a fake
 * clock run a cycle in a few turns). */
void compactor_set_survey_interval(struct compactor *c, int64_t interval_ms);
/* No more copies (shutdown): reads in flight end without copying. */
void compactor_stop(struct compactor *c);
/* Call after log_close (no read in flight). */
void compactor_destroy(struct compactor *c);

/* One turn's share of work; now_ms on the monotonic clock. */
void compactor_tick(struct compactor *c, int64_t now_ms);
/* ms until compactor_tick has work (0: now; INT64_MAX: only a completion brings some). */
int64_t compactor_timeout_ms(const struct compactor *c, int64_t now_ms);
/* Segments were emptied by copies: a checkpoint now would drop them. Cleared by
 * compactor_checkpoint_begun (the checkpoint's anchor is then past every copy). */
bool compactor_checkpoint_wanted(const struct compactor *c);
void compactor_checkpoint_begun(struct compactor *c);
void compactor_stats_get(const struct compactor *c, struct compact_stats *out);

#endif
