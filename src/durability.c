/* Durable watermarks and the level a reply may claim (durability.h). */
#include "durability.h"

#include "assert.h"

void durability_marks_init(struct durability_marks *marks, uint64_t end)
{
    marks->written_end = end;
    marks->synced_end = end;
}

void durability_marks_report(struct durability_marks *marks, uint64_t end,
                             enum log_durability level)
{
    SPOOL_ASSERT(level == LOG_DURABLE_WRITTEN || level == LOG_DURABLE_SYNCED);
    if (end > marks->written_end)
        marks->written_end = end; /* synced implies written */
    if (level == LOG_DURABLE_SYNCED && end > marks->synced_end)
        marks->synced_end = end;
    SPOOL_ASSERT(marks->synced_end <= marks->written_end);
}

enum log_durability durability_marks_level(const struct durability_marks *marks,
                                           uint64_t seq_end)
{
    SPOOL_ASSERT(marks->synced_end <= marks->written_end);
    if (seq_end <= marks->synced_end)
        return LOG_DURABLE_SYNCED;
    if (seq_end <= marks->written_end)
        return LOG_DURABLE_WRITTEN;
    return 0;
}
