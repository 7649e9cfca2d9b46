/*
 * Simulated power loss. A workload of a few hundred appends of varied sizes runs on memfs
 * with small segments (64 KiB) and batches (16 KiB), so it rolls segments several times and
 * writes a checkpoint that drops the oldest segment; variants differ in seed, in how many
 * completions memfs delivers per poll and in what order it runs unlinked ops, in sync mode
 * (always, interval, none), and in generations (close, recover, append more). memfs
 * records every op. Then, for every
 * op index k and several images per k (only what was durable, everything, and seeded random
 * mixes with a torn last write), the log is recovered from the image and held to the
 * contract: open succeeds (a torn tail is cut; damage is a failure), every record reported
 * durable by the time op k ran is replayed with its exact type and bytes, in seq order, with
 * no gap and nothing that was never appended, a checkpoint reported done is there, and every
 * 16th image also takes a new append, a close and a reopen. A keep-everything image (a
 * process crash, not a power loss) must also hold what was reported LOG_DURABLE_WRITTEN, and
 * the image after a clean close must hold every record.
 *
 * The history is checked against the promises, not against the engine's own view: a record
 * counts as durable only when on_durable said LOG_DURABLE_SYNCED, and the promise is dated by
 * memfs's op count at that moment.
 */
#include "check.h"
#include "log_workload.h"
#include "memfs_backend.h"

#include <inttypes.h>
#include <liburing.h>
#include <stdlib.h>
#include <time.h>

/* A few hundred appends: enough for several rolls of a 64 KiB segment. */
#define CRASH_RECORDS 600u
/* Random images per op index, besides the durable-only and keep-everything ones. */
#define CRASH_SEEDS 6u
/* Every this-many op indices, an image also takes an append after recovery. */
#define CRASH_APPEND_EVERY 16u
/* Keep the suite well under a minute on a shared 2-core machine (SPOOL_CRASH_BUDGET_S, up to
 * an hour, checks every variant to the end when there is time). Each variant gets its share of
 * the budget (what an earlier one left goes to the later ones), and crashes its op indices in
 * CRASH_K_STRIDE interleaved passes: a run cut short by the budget has still crashed every
 * variant, at op indices across its whole workload (rolls and checkpoints come late). */
#define CRASH_TIME_BUDGET_NS (50ll * 1000 * 1000 * 1000)
#define CRASH_TIME_BUDGET_S_MAX 3600
#define CRASH_K_STRIDE 8u
/* Every this-many op indices, a crash image is also written to a real directory and
 * recovered there through the POSIX and io_uring backends: memfs and a real file system
 * must agree. */
#define CRASH_REAL_EVERY 50u
/* Failures printed in full; the count covers the rest. */
#define CRASH_FAILURES_SHOWN 25u

static uint64_t memfs_counter(void *ctx)
{
    return memfs_op_count(ctx);
}

static int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

/* Segment files created by the workload (the first plus one per roll). */
static uint32_t spare_rolls(const struct memfs *fs)
{
    uint32_t count = 0;
    for (uint64_t i = 0; i < memfs_op_count(fs); i++) {
        struct memfs_op_info info;
        memfs_op_get(fs, i, &info);
        if (info.kind == IO_RENAME && info.result >= 0 && strcmp(info.path, "segment.spare") == 0)
            count++;
    }
    return count;
}

/* Rolls into a recycled file: a segment a checkpoint dropped, renamed to the spare, and later
 * renamed to a new segment's name. */
static uint32_t recycled_rolls(const struct memfs *fs)
{
    uint32_t recycled = 0, rolls = 0;
    for (uint64_t i = 0; i < memfs_op_count(fs); i++) {
        struct memfs_op_info info;
        memfs_op_get(fs, i, &info);
        if (info.kind != IO_RENAME || info.result < 0)
            continue;
        if (strcmp(info.path2, "segment.spare") == 0)
            recycled++;
        else if (strcmp(info.path, "segment.spare") == 0 && recycled > 0)
            rolls++;
    }
    return rolls;
}

static uint32_t segments_created(const struct memfs *fs)
{
    uint32_t count = 0;
    for (uint64_t i = 0; i < memfs_op_count(fs); i++) {
        struct memfs_op_info info;
        memfs_op_get(fs, i, &info);
        size_t len = strlen(info.path);
        bool seg_open = info.kind == IO_OPEN && len > 4 && strcmp(info.path + len - 4, ".seg") == 0;
        /* A roll into the spare segment names it by a rename instead. */
        bool spare_renamed = info.kind == IO_RENAME && strcmp(info.path, "segment.spare") == 0;
        if ((seg_open || spare_renamed) && info.result >= 0)
            count++;
    }
    return count;
}

static void check_workload_ran_clean(const struct workload *w, const struct memfs *fs)
{
    int failures_before = check_failures;
    CHECK_EQ(w->open_error, 0);
    CHECK_EQ(w->append_error, 0);
    CHECK_EQ(w->appended, w->record_count);
    CHECK_EQ(w->durable_error_count, 0);
    CHECK_EQ(w->durable_violations, 0);
    CHECK_EQ(w->final_written_seq_end, w->next_seq);
    if (w->sync_mode == LOG_SYNC_ALWAYS)
        CHECK_EQ(w->final_durable_seq_end, w->next_seq);
    else
        CHECK(w->final_durable_seq_end > 1); /* interval syncs and rolls did report */
    CHECK_EQ(w->close_error, 0);
    CHECK(w->checkpoint_count >= 1);
    for (uint32_t i = 0; i < w->checkpoint_count; i++) {
        CHECK(w->checkpoints[i].done);
        CHECK_EQ(w->checkpoints[i].error, 0);
        CHECK(w->checkpoints[i].dropped != 0);
    }
    /* Reads back along the way: every one completed, right, and none failed. */
    CHECK(w->reads_started > 0);
    CHECK_EQ(w->reads_done, w->reads_started);
    CHECK_EQ(w->reads_failed, 0);
    CHECK_EQ(w->reads_wrong, 0);
    /* At least two rolls, or the test does not test what it says. */
    CHECK(segments_created(fs) >= 3);
    if (w->spare_segment)
        CHECK(spare_rolls(fs) >= 2); /* and some of them into the spare */
    /* Crashing a history that already went wrong would only repeat the failure. */
    REQUIRE(check_failures == failures_before);
}

struct crash_stats {
    uint64_t images;
    uint64_t failures;
    uint64_t ops;
};

/* The shared ring for the io_uring checks; NULL when this machine has no io_uring. */
static struct io_uring *crash_ring;

static void crash_report(const struct workload *w, uint64_t k, const char *what, const char *why,
                         struct crash_stats *stats)
{
    stats->failures++;
    check_failures++;
    if (stats->failures <= CRASH_FAILURES_SHOWN)
        fprintf(stderr,
                "FAIL crash image k=%" PRIu64 "/%" PRIu64 " %s (workload seed %" PRIu64 "): %s\n",
                k, stats->ops, what, w->seed, why);
}

static void crash_check_one(const struct workload *w, const struct memfs *fs, uint64_t k,
                            enum memfs_image_kind kind, uint64_t seed, struct crash_stats *stats)
{
    /* A power loss keeps what was fdatasync'ed; a process crash (keep-all) also keeps what
     * was written; a clean close makes everything durable. */
    enum log_durability level = kind == MEMFS_IMAGE_ALL ? LOG_DURABLE_WRITTEN : LOG_DURABLE_SYNCED;
    uint64_t durable_seq_end = workload_durable_at(w, k, level);
    if (k == stats->ops && w->close_error == 0)
        durable_seq_end = w->next_seq;
    struct workload_expect expect = {
        .durable_seq_end = durable_seq_end,
        .checkpoint_anchor_min = workload_checkpoint_anchor_at(w, k),
        .append_after = k % CRASH_APPEND_EVERY == 0 && kind == MEMFS_IMAGE_CRASH,
    };
    struct memfs *image = memfs_image(fs, k, kind, seed);
    char why[512];
    int rc = workload_check_image(w, memfs_io(image), &expect, why, sizeof(why));
    memfs_destroy(image);
    stats->images++;
    if (rc == 0)
        return;
    static const char *kind_names[] = {"crash", "durable-only", "keep-all", "crash-unordered-dir"};
    char what[64];
    snprintf(what, sizeof(what), "%s seed=%" PRIu64, kind_names[kind], seed);
    crash_report(w, k, what, why, stats);
}

struct crash_variant {
    uint64_t seed;
    uint32_t poll_batch; /* memfs ops run per poll: 1 interleaves most, 0 runs all */
    enum log_sync_mode sync_mode;
    uint32_t sync_interval_ms; /* the fake clock advances 10 ms per turn */
    uint32_t generations;      /* runs on the same files: each recovers, then appends more */
    bool reorder;              /* memfs runs unlinked in-flight ops in a random order */
    bool spare_segment;        /* rolls go into a preallocated spare renamed into place */
    bool buffered;             /* memfs refuses O_DIRECT: always-mode commits are buffered
                                * writes linked to fdatasyncs, not direct RWF_DSYNC writes */
};

/* Direct commits (as spoold makes them on a real disk) and buffered ones (a file system
 * without O_DIRECT), each with and without memfs reordering unlinked ops. */
static const struct crash_variant crash_variants_always[] = {
    {1, 1, LOG_SYNC_ALWAYS, 0, 1, false, false, false},
    {2, 0, LOG_SYNC_ALWAYS, 0, 1, false, false, true},
    {3, 2, LOG_SYNC_ALWAYS, 0, 2, false, false, false},
    {4, 3, LOG_SYNC_ALWAYS, 0, 3, false, false, true},
    {7, 0, LOG_SYNC_ALWAYS, 0, 2, true, false, false},
    {11, 0, LOG_SYNC_ALWAYS, 0, 2, true, false, true},
};

/* Several batches are written between two fdatasyncs here, so a power loss may keep a later
 * batch and lose an earlier one (write-back has no order): recovery must take the hole for
 * a torn tail, since nothing after it was ever reported synced. */
static const struct crash_variant crash_variants_relaxed[] = {
    {5, 1, LOG_SYNC_INTERVAL, 30, 2, false, false, false},
    {6, 0, LOG_SYNC_NONE, 0, 1, false, false, false},
    {8, 0, LOG_SYNC_INTERVAL, 20, 1, true, false, false},
};

/* Rolls into the spare segment (write header, fdatasync, rename, fsync dir) while the next
 * spare is made concurrently: a crash anywhere must look like a roll that made its file. */
static const struct crash_variant crash_variants_spare[] = {
    {9, 1, LOG_SYNC_ALWAYS, 0, 2, false, true, false},
    {10, 0, LOG_SYNC_INTERVAL, 30, 1, false, true, false},
};

/* The crash image at k, materialized in a real directory and recovered from there. */
static void crash_check_real(const struct workload *w, const struct memfs *fs, uint64_t k,
                             struct crash_stats *stats)
{
    struct workload_expect expect = {
        .durable_seq_end = workload_durable_at(w, k, LOG_DURABLE_SYNCED),
        .checkpoint_anchor_min = workload_checkpoint_anchor_at(w, k),
    };
    struct memfs *image = memfs_crash_image(fs, k, k + 1);
    for (int backend = 0; backend < 2; backend++) {
        if (backend == 1 && crash_ring == NULL)
            break;
        char *dir = check_tmpdir("crash");
        char why[512];
        int rc = memfs_materialize(image, dir);
        if (rc != 0) {
            snprintf(why, sizeof(why), "materialize: %s", strerror(-rc));
            crash_report(w, k, "real directory", why, stats);
        } else {
            struct io_backend *io = NULL;
            rc = backend == 0 ? posix_backend_create(dir, false, &io)
                              : io_uring_backend_create(crash_ring, dir, false, &io);
            REQUIRE(rc == 0);
            if (workload_check_image(w, io, &expect, why, sizeof(why)) != 0)
                crash_report(w, k, backend == 0 ? "posix backend" : "io_uring backend", why, stats);
            io_backend_destroy(io);
        }
        stats->images++;
        check_rmdir(dir);
        free(dir);
    }
    memfs_destroy(image);
}

/* One workload, then every op index crashed, or as many as deadline_ns leaves time for (the
 * summary line says when not all were). */
static void crash_workload(const struct crash_variant *variant, int64_t deadline_ns,
                           struct crash_stats *total)
{
    uint64_t workload_seed = variant->seed;
    uint32_t poll_batch = variant->poll_batch;
    struct memfs *fs = memfs_create();
    memfs_set_poll_batch(fs, poll_batch);
    if (variant->reorder)
        memfs_set_reorder(fs, workload_seed);
    memfs_set_direct(fs, !variant->buffered);
    struct workload w = {
        .seed = workload_seed,
        .record_count = CRASH_RECORDS,
        .checkpoint = true,
        .reads = true,
        .sync_mode = variant->sync_mode,
        .sync_interval_ms = variant->sync_interval_ms,
        .spare_segment = variant->spare_segment,
        .op_count = memfs_counter,
        .hook_ctx = fs,
    };
    for (uint32_t g = 1; g <= variant->generations; g++) {
        w.record_count = CRASH_RECORDS * g / variant->generations;
        workload_run(&w, memfs_io(fs));
        check_workload_ran_clean(&w, fs);
    }
    /* By the last generation, one roll went into a dropped segment's recycled file. */
    if (variant->spare_segment)
        REQUIRE(recycled_rolls(fs) >= 1);
    struct crash_stats stats = {.ops = memfs_op_count(fs)};
    bool in_time = true;
    /* Pass p crashes op indices p, p + stride, p + 2 stride ...: every index once in all. */
    uint64_t per_pass = stats.ops / CRASH_K_STRIDE + 1;
    for (uint64_t i = 0; i < per_pass * CRASH_K_STRIDE && in_time; i++) {
        uint64_t k = (i % per_pass) * CRASH_K_STRIDE + i / per_pass;
        if (k > stats.ops)
            continue;
        crash_check_one(&w, fs, k, MEMFS_IMAGE_DURABLE, 0, &stats);
        crash_check_one(&w, fs, k, MEMFS_IMAGE_ALL, 0, &stats);
        for (uint64_t seed = 1; seed <= CRASH_SEEDS; seed++) {
            /* Half the random images keep directory changes in order, half in any subset. */
            enum memfs_image_kind kind = seed % 2 ? MEMFS_IMAGE_CRASH : MEMFS_IMAGE_CRASH_UNORDERED;
            crash_check_one(&w, fs, k, kind, seed * 7919 + workload_seed, &stats);
        }
        if (k % CRASH_REAL_EVERY == 0)
            crash_check_real(&w, fs, k, &stats);
        in_time = monotonic_ns() < deadline_ns;
    }
    static const char *mode_names[] = {"always", "interval", "none"};
    fprintf(stderr,
            "workload seed %" PRIu64 " sync %s poll batch %u%s%s generations %u: %u records, "
            "%" PRIu64 " ops, %u segments created, %u durable reports, %u checkpoints "
            "(last anchor %" PRIu64 " dropped segment %" PRIu64 "); %" PRIu64
            " images checked, %" PRIu64 " failed%s\n",
            workload_seed, mode_names[variant->sync_mode], poll_batch,
            variant->reorder ? " reordered" : "", variant->buffered ? " buffered" : "",
            variant->generations, w.appended, stats.ops,
            segments_created(fs), w.durable_count, w.checkpoint_count,
            workload_checkpoint_last(&w)->anchor, workload_checkpoint_last(&w)->dropped,
            stats.images, stats.failures,
            in_time ? "" : " (time budget reached: not every k checked)");
    total->images += stats.images;
    total->failures += stats.failures;
    workload_free(&w);
    memfs_destroy(fs);
}

/* argv[1]: "always" (the default mode), "relaxed" (interval and none) or "spare". */
int main(int argc, char **argv)
{
    bool relaxed = argc > 1 && strcmp(argv[1], "relaxed") == 0;
    bool spare = argc > 1 && strcmp(argv[1], "spare") == 0;
    const struct crash_variant *variants = relaxed ? crash_variants_relaxed : crash_variants_always;
    size_t count = relaxed ? sizeof(crash_variants_relaxed) / sizeof(crash_variants_relaxed[0])
                           : sizeof(crash_variants_always) / sizeof(crash_variants_always[0]);
    if (spare) {
        variants = crash_variants_spare;
        count = sizeof(crash_variants_spare) / sizeof(crash_variants_spare[0]);
    }
    int64_t budget_ns = CRASH_TIME_BUDGET_NS;
    const char *budget = getenv("SPOOL_CRASH_BUDGET_S");
    if (budget != NULL && atoi(budget) > 0 && atoi(budget) <= CRASH_TIME_BUDGET_S_MAX)
        budget_ns = (int64_t)atoi(budget) * 1000 * 1000 * 1000;
    int64_t start_ns = monotonic_ns();
    struct crash_stats total = {0};
    struct io_uring ring;
    char msg[256];
    if (io_uring_probe_available(msg, sizeof(msg)) == 0 && io_uring_queue_init(64, &ring, 0) == 0)
        crash_ring = &ring;
    else
        fprintf(stderr, "io_uring checks skipped: %s\n", msg);
    for (size_t i = 0; i < count; i++) {
        int64_t deadline_ns = start_ns + budget_ns / (int64_t)count * (int64_t)(i + 1);
        crash_workload(&variants[i], deadline_ns, &total);
    }
    fprintf(stderr, "crash: %" PRIu64 " images checked, %" PRIu64 " failed\n", total.images,
            total.failures);
    if (crash_ring != NULL)
        io_uring_queue_exit(crash_ring);
    return check_exit();
}
