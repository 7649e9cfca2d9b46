/*
 * spool-log verify DIR: one line per problem, then a summary; exit 0 clean, 1 when the only
 * problem is a torn tail (recovery would cut it), 2 on any other damage, 3 when DIR cannot be
 * read at all.
 *
 * Problem lines (stdout), one per damaged region (see spool_log_dir.c for how a region is
 * measured and which jobs it affects):
 *   CORRUPTION segment=S offset=O seq=A..B kind=K jobs_affected=N [job_ids=I,J,...] bytes=L
 *              detail="..."
 *   TORN_TAIL segment=S offset=O seq=A..B jobs_affected=N ... (same fields)
 * B is "?" when the region's end seq cannot be known (a torn tail whose header is gone);
 * seq=none when the region held no record (a damaged segment header whose batches verify).
 * Summary: OK|TORN|CORRUPT segments=N batches=N records=N jobs_live=N bytes=N checkpoint=SEQ
 */
#include "spool_log.h"

#include <stdlib.h>
#include <string.h>

/* Ids printed on one line: enough to grep for; the count is always complete. */
#define VERIFY_IDS_SHOWN_MAX 32

static void verify_ids(const uint64_t *ids, uint64_t count)
{
    if (count == 0)
        return;
    printf(" job_ids=");
    for (uint64_t i = 0; i < count && i < VERIFY_IDS_SHOWN_MAX; i++)
        printf("%s%llu", i > 0 ? "," : "", (unsigned long long)ids[i]);
    if (count > VERIFY_IDS_SHOWN_MAX)
        printf(",...");
}

/* Live jobs the checkpoint holds whose PUT (their body) is not on disk: spoold could not
 * load them back. Damage explains it when the PUT lies in a damaged region. */
static void verify_missing_bodies(const struct logstate *state)
{
    if (state->bodies_missing == 0)
        return;
    printf("CORRUPTION segment=0 offset=0 seq=none kind=bad_checkpoint jobs_affected=%llu",
           (unsigned long long)state->bodies_missing);
    verify_ids(state->missing_ids, state->bodies_missing);
    printf(" bytes=0 detail=\"live jobs of the checkpoint whose PUT record is not readable\"\n");
}

static void verify_line(const struct logdir_damage *dmg)
{
    const struct log_damage *d = &dmg->d;
    bool torn = d->kind == LOG_DAMAGE_TORN_TAIL;
    char range[64];
    printf("%s segment=%llu offset=%llu seq=%s", torn ? "TORN_TAIL" : "CORRUPTION",
           (unsigned long long)d->segment_id, (unsigned long long)d->offset,
           logdir_seq_range(d, range, sizeof(range)));
    printf(" kind=%s jobs_affected=%u", log_damage_name(d->kind), dmg->job_count);
    verify_ids(dmg->job_ids, dmg->job_count);
    printf(" bytes=%llu detail=", (unsigned long long)dmg->bytes);
    json_string(stdout, d->detail, strlen(d->detail));
    printf("\n");
}

int cmd_verify(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: spool-log verify DIR\n");
        return EXIT_USAGE;
    }
    struct logdir dir;
    int rc = logdir_load(&dir, argv[1]);
    if (rc != 0) {
        logdir_free(&dir);
        return EXIT_USAGE;
    }
    struct logstate state;
    bool state_ok = logstate_build(&state, &dir, UINT64_MAX, true) == 0;
    for (size_t i = 0; i < dir.damage_count; i++)
        verify_line(&dir.damages[i]);
    if (!state_ok)
        printf("CORRUPTION segment=0 offset=0 seq=%llu..%llu kind=bad_checkpoint "
               "jobs_affected=0 bytes=%u detail=\"the checkpoint's queue state or a record "
               "does not decode\"\n",
               (unsigned long long)dir.checkpoint_anchor_seq,
               (unsigned long long)dir.checkpoint_anchor_seq, dir.checkpoint_len);
    if (state_ok)
        verify_missing_bodies(&state);
    uint64_t stored = 0;
    for (uint32_t i = 0; i < dir.segment_count; i++)
        stored += dir.segments[i].stored_bytes;
    size_t live_count = 0;
    if (state_ok) {
        struct job **live = logstate_live_jobs(&state, &live_count);
        free(live);
    }
    bool corrupt = logdir_corrupt(&dir) || !state_ok || state.bodies_missing > 0;
    bool torn = logdir_torn(&dir);
    printf("%s segments=%u batches=%zu records=%zu jobs_live=%zu bytes=%llu checkpoint=",
           corrupt ? "CORRUPT"
           : torn  ? "TORN"
                   : "OK",
           dir.segment_count, dir.batch_count, dir.rec_count, live_count,
           (unsigned long long)stored);
    if (dir.has_checkpoint)
        printf("%llu\n", (unsigned long long)dir.checkpoint_anchor_seq);
    else
        printf("none\n");
    logstate_free(&state);
    logdir_free(&dir);
    return corrupt ? EXIT_CORRUPT : torn ? EXIT_TORN : EXIT_CLEAN;
}
