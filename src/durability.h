/*
 * The durable watermarks the server has heard from the log, and the level each reply may claim.
 *
 * The log reports two watermarks (storage/log.h on_durable): records below written_end are in
 * the OS page cache (they survive kill -9), records below synced_end were fdatasync'ed (they
 * survive power loss). In the interval and none modes the two move independently: a SYNCED
 * report for an older watermark can arrive after a WRITTEN report for a newer one. So the
 * level of a reply is a function of the reply's own horizon (the seq_end its records end at),
 * never of the last report heard: SYNCED only when seq_end <= synced_end.
 *
 * Invariants: both watermarks only grow; synced_end <= written_end (a synced record was
 * written).
 */
#ifndef SPOOL_SRC_DURABILITY_H
#define SPOOL_SRC_DURABILITY_H

#include <stdint.h>

#include "log.h"

struct durability_marks {
    uint64_t written_end; /* records with seq < this are at least written */
    uint64_t synced_end;  /* records with seq < this are fdatasync'ed */
};

/* Both watermarks at end: what recovery hands over (log_open leaves written == synced). */
void durability_marks_init(struct durability_marks *marks, uint64_t end);

/* The log reported that every record below end reached level. Reports may come out of order
 * between the levels; a lower watermark than one already heard changes nothing. */
void durability_marks_report(struct durability_marks *marks, uint64_t end,
                             enum log_durability level);

/* The level reached by every record below seq_end, or 0 when they are not all durable yet. */
enum log_durability durability_marks_level(const struct durability_marks *marks,
                                           uint64_t seq_end);

#endif
