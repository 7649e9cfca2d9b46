/*
 * Per-job event counts for the beanstalkd protocol's stats-job (timeouts, releases, buries,
 * kicks) and the server-wide count of lease timeouts (stats job-timeouts).
 *
 * They live in a side table keyed by job id, not in struct job: most jobs are put, reserved
 * and deleted without any of these events, so an entry exists only for a job with a non-zero
 * count and costs nothing for the rest. The entry goes when the job settles or is freed.
 * The counts are not logged: replay does not count, so they start again at 0 after a restart
 * (docs/BEANSTALKD.md says so).
 */
#include "queue_internal.h"

#include <stdlib.h>

void queue_count_event(struct queue_state *state, uint64_t id, enum queue_count_event event)
{
    if (state->replaying)
        return; /* replay rebuilds states, not histories: counts start at 0 after a restart */
    if (event == QUEUE_COUNT_TIMEOUT)
        state->job_timeouts++;
    struct queue_job_counts *counts = idmap_get(&state->job_counts, id);
    if (counts == NULL) {
        counts = calloc(1, sizeof(*counts));
        SPOOL_ASSERT(counts != NULL);
        (void)idmap_put(&state->job_counts, id, counts);
    }
    switch (event) {
    case QUEUE_COUNT_TIMEOUT: counts->timeouts++; break;
    case QUEUE_COUNT_RELEASE: counts->releases++; break;
    case QUEUE_COUNT_BURY: counts->buries++; break;
    case QUEUE_COUNT_KICK: counts->kicks++; break;
    default: SPOOL_ASSERT(!"unknown count event");
    }
}

void queue_count_drop(struct queue_state *state, uint64_t id)
{
    if (state->job_counts.count == 0)
        return; /* the common case: no job has counts, skip the probe */
    free(idmap_remove(&state->job_counts, id));
}

void queue_job_counts_get(const struct queue_state *state, uint64_t id,
                          struct queue_job_counts *out)
{
    const struct queue_job_counts *counts = idmap_get(&state->job_counts, id);
    if (counts != NULL)
        *out = *counts;
    else
        *out = (struct queue_job_counts){0};
}

uint64_t queue_job_timeouts(const struct queue_state *state)
{
    return state->job_timeouts;
}
