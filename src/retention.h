/*
 * Retention: which segments a checkpoint may delete.
 *
 * A checkpoint's payload records the jobs live at its anchor with the position of each PUT
 * record; a restart loads that payload, replays the log from the anchor and reads every body
 * back from its PUT's segment. So what a checkpoint may drop is decided by the checkpoint's own
 * state, never by the live counts of the moment it is written: those already include acks,
 * deletes and purges emitted after the anchor, which may still be in flight, fail with the
 * log, or be lost to a power loss in interval mode, and then the next start needs the jobs
 * (and their segments) the payload lists.
 */
#ifndef SPOOL_SRC_RETENTION_H
#define SPOOL_SRC_RETENTION_H

#include <stdint.h>

#include "log.h"
#include "queue.h"

/*
 * The sealed segments a checkpoint anchored at anchor_seq may drop: every record in them is
 * below the anchor (the next segment starts at or before it), it is not the current segment,
 * and no job of the payload has its PUT there (payload_segments, from
 * queue_checkpoint_finish). *out is malloc'ed (the caller frees it, also when the count is 0).
 */
uint32_t retention_drop_list(const struct log *log,
                             const struct queue_segment_set *payload_segments,
                             uint64_t anchor_seq, uint64_t **out);

#endif
