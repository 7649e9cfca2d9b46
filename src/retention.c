/* Retention: the segments a checkpoint may delete (retention.h). */
#include "retention.h"

#include <stdlib.h>

uint32_t retention_drop_list(const struct log *log,
                             const struct queue_segment_set *payload_segments,
                             uint64_t anchor_seq, uint64_t **out)
{
    SPOOL_ASSERT(payload_segments != NULL && out != NULL);
    uint32_t count = log_segment_count(log);
    uint64_t current = log_current_segment_id(log);
    uint64_t *drop = calloc(count + 1u, sizeof(*drop));
    SPOOL_ASSERT(drop != NULL);
    uint32_t n = 0;
    for (uint32_t i = 0; i + 1 < count; i++) {
        uint64_t id = log_segment_id(log, i);
        uint64_t next = log_segment_id(log, i + 1);
        if (id == current || next > anchor_seq)
            continue; /* holds records at or after the anchor: replay reads them */
        if (!queue_segment_set_has(payload_segments, id))
            drop[n++] = id;
    }
    SPOOL_ASSERT(n < count); /* the current segment is never dropped */
    *out = drop;
    return n;
}
