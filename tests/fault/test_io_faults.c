/*
 * Fail the Nth I/O: for each fault class and N = 1, 2, ... up to the number of matching ops
 * the workload performs, run the workload on fault_backend(memfs) and hold the engine to its
 * error contract:
 * - it never reports durable what the disk does not durably hold: each report made after
 *   the fault's completion (the first few and the last) is checked against memfs's
 *   durable-only image at that moment;
 * - EIO on a segment's write or fdatasync poisons it: on_durable reports the error exactly
 *   once, later appends fail, close returns the error (never a retried fsync);
 * - ENOSPC creating a segment refuses appends with LOG_ENOSPC, does not poison, and loses
 *   nothing: once the roll succeeds every record is appended and durable;
 * - a short write is completed: no poison, every record durable;
 * and in every case a fresh open of the resulting durable image recovers every record that
 * was reported durable, and accepts a new append.
 *
 * Recovery itself is swept too: crash images (torn tails, half-made segments, a leftover
 * checkpoint.tmp) are recovered with their Nth op failing, then crashed again right after.
 */
#include "check.h"
#include "fault_backend.h"
#include "log_workload.h"
#include "memfs_backend.h"

#include <inttypes.h>
#include <time.h>

/* Fewer records than the crash suite: the sweep runs the whole workload once per N. */
#define FAULT_RECORDS 600u
/* Reports after the fault that are checked against the durable image at their moment. */
#define FAULT_REPORTS_CHECKED 4u
/* Failures printed in full; the count covers the rest. */
#define FAULT_FAILURES_SHOWN 25u
/* A slow machine (or a sanitizer build) stops sweeping here rather than hitting meson's
 * timeout; what was swept is reported. */
#define FAULT_TIME_BUDGET_NS (150ll * 1000 * 1000 * 1000)

struct fault_class {
    const char *name;
    enum fault_kind kind;
    uint32_t op_mask;
    bool sticky; /* every matching op from the Nth on fails: the disk died */
};

static const struct fault_class fault_classes[] = {
    {"eio-write", FAULT_EIO, FAULT_OPS_WRITES, false},
    {"eio-fdatasync", FAULT_EIO, FAULT_OP_BIT(IO_FDATASYNC), false},
    {"enospc-create", FAULT_ENOSPC, FAULT_OP_BIT(IO_OPEN) | FAULT_OP_BIT(IO_FALLOCATE), false},
    {"short-write", FAULT_SHORT_WRITE, FAULT_OPS_WRITES, false},
    {"eio-dirsync", FAULT_EIO, FAULT_OP_BIT(IO_FSYNC_DIR), false},
    {"eio-any", FAULT_EIO, FAULT_OPS_ALL, false},
    {"enospc-write", FAULT_ENOSPC, FAULT_OPS_WRITES, false},
    {"eio-dead-disk", FAULT_EIO, FAULT_OPS_ALL, true},
};

struct fault_run {
    const struct fault_class *class;
    uint64_t n;
    struct memfs *fs;
    struct io_backend *io;
    struct workload w;
    uint32_t failures; /* of this run */
};

static uint32_t fault_failures_total;
static int64_t fault_deadline_ns;

static bool fault_in_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec < fault_deadline_ns;
}

static uint64_t run_op_count(void *ctx)
{
    return memfs_op_count(((struct fault_run *)ctx)->fs);
}

/* The tag: the faulted op's completion has reached the engine. Reports and appends before
 * that could not have been influenced by the fault. */
static bool run_fired(void *ctx)
{
    return fault_backend_fired_done(((struct fault_run *)ctx)->io);
}

static void run_fail(struct fault_run *run, const char *what)
{
    run->failures++;
    fault_failures_total++;
    check_failures++;
    if (fault_failures_total <= FAULT_FAILURES_SHOWN) {
        const struct workload *w = &run->w;
        fprintf(stderr,
                "FAIL %s N=%" PRIu64 " seed=%" PRIu64 " (fired on %s of %s): %s [open %d append %d "
                "log_error %d durable_errors %u late_append %d close %d enospc %u appended %u "
                "durable_end %" PRIu64 " next %" PRIu64 " ckpt %d/%d]\n",
                run->class->name, run->n, w->seed, fault_backend_fired(run->io) ? "op" : "nothing",
                fault_backend_fired(run->io) ? fault_backend_fired_file(run->io) : "-", what,
                w->open_error, w->append_error, w->log_error_at_end, w->durable_error_count,
                w->late_append_error, w->close_error, w->enospc_count, w->appended,
                w->final_durable_seq_end, w->next_seq,
                w->checkpoint_count > 0 && w->checkpoints[w->checkpoint_count - 1].done,
                w->checkpoint_count > 0 ? w->checkpoints[w->checkpoint_count - 1].error : 0);
    }
}

#define RUN_EXPECT(run, cond)                                                                      \
    do {                                                                                           \
        if (!(cond))                                                                               \
            run_fail((run), #cond);                                                                \
    } while (0)

static void run_check_image(struct fault_run *run, uint64_t k, const struct workload_expect *expect,
                            const char *label)
{
    struct memfs *image = memfs_image(run->fs, k, MEMFS_IMAGE_DURABLE, 0);
    char why[512], what[700];
    if (workload_check_image(&run->w, memfs_io(image), expect, why, sizeof(why)) != 0) {
        snprintf(what, sizeof(what), "%s image at op %" PRIu64 ": %s", label, k, why);
        run_fail(run, what);
    }
    memfs_destroy(image);
}

/* Reports made after the fault promised only what the durable image held at that moment. */
static void run_check_reports(struct fault_run *run)
{
    const struct workload *w = &run->w;
    uint32_t checked = 0;
    for (uint32_t i = 0; i < w->durable_count; i++) {
        const struct workload_durable *d = &w->durable[i];
        bool last = i + 1 == w->durable_count;
        if (d->level != LOG_DURABLE_SYNCED || !d->tagged ||
            (checked >= FAULT_REPORTS_CHECKED && !last))
            continue;
        struct workload_expect expect = {.durable_seq_end = d->durable_seq_end};
        run_check_image(run, d->op_count, &expect, "durable report");
        checked++;
    }
}

static bool is_segment(const char *name)
{
    size_t len = strlen(name);
    return len > 4 && strcmp(name + len - 4, ".seg") == 0;
}

static void run_expect_poisoned(struct fault_run *run)
{
    const struct workload *w = &run->w;
    RUN_EXPECT(run, w->log_error_at_end != 0);
    RUN_EXPECT(run, w->durable_error_count == 1);
    RUN_EXPECT(run, w->durable_error == w->log_error_at_end);
    RUN_EXPECT(run, w->late_append_error == w->log_error_at_end);
    RUN_EXPECT(run, w->close_error == w->log_error_at_end);
}

/* Not poisoned, every record appended and durable, a clean close. */
static void run_expect_unharmed(struct fault_run *run)
{
    const struct workload *w = &run->w;
    RUN_EXPECT(run, w->log_error_at_end == 0);
    RUN_EXPECT(run, w->durable_error_count == 0);
    RUN_EXPECT(run, w->appended == FAULT_RECORDS);
    RUN_EXPECT(run, w->final_durable_seq_end == w->next_seq);
    RUN_EXPECT(run, w->close_error == 0);
}

/* What the fault promises, by what it hit: a segment's data, a segment's creation, or the
 * checkpoint file. Faults during open only promise a clear error (checked by the caller's
 * recovery of the durable image); other ops (closes, reads, directory fsyncs, which could
 * be a roll's or a checkpoint's) only the universal checks. */
static void run_check_class(struct fault_run *run)
{
    const struct workload *w = &run->w;
    RUN_EXPECT(run, w->durable_violations == 0);
    RUN_EXPECT(run, w->reads_wrong == 0);               /* a read may fail, never lie */
    RUN_EXPECT(run, w->reads_done == w->reads_started); /* and always completes */
    RUN_EXPECT(run, w->turns < 10000u);                 /* settled */
    if (!fault_backend_fired(run->io)) {
        RUN_EXPECT(run, w->open_error == 0);
        run_expect_unharmed(run);
        return;
    }
    /* During open: a clear error is the contract. A dead disk: the universal checks (no
     * false durability report, the durable image recovers) are all it can promise. */
    if (w->open_error != 0 || run->class->sticky)
        return;
    const char *file = fault_backend_fired_file(run->io);
    enum io_op_kind kind = fault_backend_fired_kind(run->io);
    enum fault_kind fault = run->class->kind;
    /* Creating a segment is open, fallocate and the header write (offset 0); batches are
     * written after the header. */
    bool header_write = kind == IO_WRITE && fault_backend_fired_offset(run->io) == 0;
    bool creation = kind == IO_OPEN || kind == IO_FALLOCATE || (header_write && is_segment(file));
    bool data_op = !creation && (kind == IO_WRITE || kind == IO_FDATASYNC || kind == IO_FSYNC);
    if (is_segment(file)) {
        if (fault == FAULT_SHORT_WRITE) {
            run_expect_unharmed(run); /* completed, not failed */
        } else if (data_op) {
            run_expect_poisoned(run); /* EIO or ENOSPC: a failed write or fdatasync */
        } else if (creation && fault == FAULT_EIO) {
            run_expect_poisoned(run); /* a roll that failed for another reason than space */
        } else if (creation && fault == FAULT_ENOSPC) {
            run_expect_unharmed(run);
            /* Appends made while the roll was failing were refused (if any were left). */
            RUN_EXPECT(run, w->enospc_count >= 1 || w->appended_at_tag == FAULT_RECORDS);
        }
    } else if (strcmp(file, "checkpoint.tmp") == 0 && (data_op || creation || header_write)) {
        const struct workload_checkpoint *cp = workload_checkpoint_last(w);
        RUN_EXPECT(run, cp != NULL && cp->done);
        if (fault == FAULT_SHORT_WRITE) {
            RUN_EXPECT(run, cp != NULL && cp->error == 0);
        } else {
            /* The checkpoint fails; the log it protects goes on. */
            RUN_EXPECT(run, cp != NULL && cp->error != 0);
            run_expect_unharmed(run);
        }
    }
}

/* One run: the workload with the Nth matching op faulted; returns the ops that matched. */
static uint64_t fault_run_one(const struct fault_class *class, uint64_t n, uint64_t seed,
                              uint32_t poll_batch, bool reorder, bool spare)
{
    struct fault_run run = {.class = class, .n = n};
    run.fs = memfs_create();
    memfs_set_poll_batch(run.fs, poll_batch);
    if (reorder)
        memfs_set_reorder(run.fs, seed);
    struct fault_config config = {
        .kind = class->kind, .op_mask = class->op_mask, .fail_at = n, .sticky = class->sticky};
    run.io = fault_backend_create(memfs_io(run.fs), &config);
    run.w = (struct workload){
        .seed = seed,
        .record_count = FAULT_RECORDS,
        .checkpoint = true,
        .reads = true,
        .spare_segment = spare,
        .op_count = run_op_count,
        .tag = run_fired,
        .hook_ctx = &run,
    };
    workload_run(&run.w, run.io);
    run_check_class(&run);
    run_check_reports(&run);
    /* Whatever happened, the durable image recovers everything that was promised. */
    struct workload_expect expect = {
        .durable_seq_end = run.w.final_durable_seq_end,
        .checkpoint_anchor_min = workload_checkpoint_anchor_at(&run.w, UINT64_MAX),
        .append_after = true,
    };
    run_check_image(&run, memfs_op_count(run.fs), &expect, "final durable");
    uint64_t matched = fault_backend_matched(run.io);
    workload_free(&run.w);
    io_backend_destroy(run.io);
    memfs_destroy(run.fs);
    return matched;
}

/* ---- faults during recovery ---- */

/* Crash images recovered under faults: one every this many ops of the workload. */
#define RECOVERY_IMAGE_STRIDE 7u
/* Power-loss images taken after each faulted recovery, besides the durable-only one. */
#define RECOVERY_AFTER_SEEDS 2u

static void recovery_fail(uint64_t k, uint64_t n, const char *what, const char *why)
{
    fault_failures_total++;
    check_failures++;
    if (fault_failures_total <= FAULT_FAILURES_SHOWN)
        fprintf(stderr,
                "FAIL recovery of crash image k=%" PRIu64 " with EIO on op %" PRIu64 ": %s: %s\n",
                k, n, what, why);
}

/*
 * Recover the crash image at k with its Nth op failing (EIO): the open either fails with an
 * error or succeeds and keeps every promise. Then a power loss right after that recovery:
 * whatever its repairs had done, the next recovery keeps every promise. Returns the ops the
 * recovery performed (with n = 0, the range of the sweep).
 */
static uint64_t recovery_run_one(const struct workload *w, const struct memfs *origin, uint64_t k,
                                 uint64_t n)
{
    struct workload_expect expect = {
        .durable_seq_end = workload_durable_at(w, k, LOG_DURABLE_SYNCED),
        .checkpoint_anchor_min = workload_checkpoint_anchor_at(w, k),
    };
    struct memfs *image = memfs_crash_image(origin, k, k * 31 + 1);
    struct fault_config config = {.kind = FAULT_EIO, .op_mask = FAULT_OPS_ALL, .fail_at = n};
    struct io_backend *io = fault_backend_create(memfs_io(image), &config);
    char why[512];
    int rc = workload_check_image(w, io, &expect, why, sizeof(why));
    if (rc == WORKLOAD_CHECK_FAILED || (rc != 0 && !fault_backend_fired(io)))
        recovery_fail(k, n, "the faulted recovery", why);
    uint64_t matched = fault_backend_matched(io);
    io_backend_destroy(io);
    for (uint64_t seed = 0; seed <= RECOVERY_AFTER_SEEDS; seed++) {
        enum memfs_image_kind kind = seed == 0 ? MEMFS_IMAGE_DURABLE : MEMFS_IMAGE_CRASH;
        struct memfs *after = memfs_image(image, memfs_op_count(image), kind, seed);
        if (workload_check_image(w, memfs_io(after), &expect, why, sizeof(why)) != 0)
            recovery_fail(k, n, seed == 0 ? "durable image after it" : "crash image after it", why);
        memfs_destroy(after);
    }
    memfs_destroy(image);
    return matched;
}

static uint64_t memfs_counter(void *ctx)
{
    return memfs_op_count(ctx);
}

static uint64_t recovery_sweep(void)
{
    struct memfs *fs = memfs_create();
    memfs_set_poll_batch(fs, 1);
    struct workload w = {
        .seed = 11,
        .record_count = FAULT_RECORDS,
        .checkpoint = true,
        .op_count = memfs_counter,
        .hook_ctx = fs,
    };
    workload_run(&w, memfs_io(fs));
    CHECK_EQ(w.open_error, 0);
    CHECK_EQ(w.close_error, 0);
    uint64_t runs = 0, images = 0;
    uint32_t before = fault_failures_total;
    for (uint64_t k = 0; k <= memfs_op_count(fs) && fault_in_time(); k += RECOVERY_IMAGE_STRIDE) {
        images++;
        uint64_t ops = recovery_run_one(&w, fs, k, 0);
        for (uint64_t n = 1; n <= ops; n++)
            recovery_run_one(&w, fs, k, n);
        runs += ops + 1;
    }
    fprintf(stderr,
            "recovery under EIO: %" PRIu64 " crash images of %" PRIu64 " ops, %" PRIu64
            " faulted recoveries: %u failures\n",
            images, memfs_op_count(fs), runs, fault_failures_total - before);
    workload_free(&w);
    memfs_destroy(fs);
    return runs;
}

/* Workloads swept: one completion per poll in order (most interleaving), all at once in a
 * random order (as a ring may run unlinked ops), and one that rolls into spare segments (a
 * fault in the spare's own ops is never poison). */
static const struct {
    uint64_t seed;
    uint32_t poll_batch;
    bool reorder;
    bool spare;
} fault_workloads[] = {{3, 1, false, false}, {4, 0, true, false}, {5, 1, false, true}};

int main(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    fault_deadline_ns = (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec + FAULT_TIME_BUDGET_NS;
    uint64_t runs = 0;
    for (size_t v = 0; v < sizeof(fault_workloads) / sizeof(fault_workloads[0]); v++) {
        uint64_t seed = fault_workloads[v].seed;
        uint32_t batch = fault_workloads[v].poll_batch;
        bool reorder = fault_workloads[v].reorder;
        bool spare = fault_workloads[v].spare;
        for (size_t c = 0; c < sizeof(fault_classes) / sizeof(fault_classes[0]); c++) {
            const struct fault_class *class = &fault_classes[c];
            uint32_t before = fault_failures_total;
            /* N = 0 never faults: it counts the matching ops, the range of the sweep. */
            uint64_t matching = fault_run_one(class, 0, seed, batch, reorder, spare);
            uint64_t n = 1;
            for (; n <= matching && fault_in_time(); n++)
                fault_run_one(class, n, seed, batch, reorder, spare);
            if (n <= matching)
                fprintf(stderr, "time budget reached: N = %" PRIu64 "..%" PRIu64 " not run\n", n,
                        matching);
            runs += matching + 1;
            fprintf(stderr,
                    "seed %" PRIu64 " poll batch %u%s%s %-14s N = 1..%" PRIu64 ": %u failures\n",
                    seed, batch, reorder ? " reordered" : "", spare ? " spare" : "", class->name,
                    matching,
                    fault_failures_total - before);
            CHECK(matching > 0);
        }
    }
    runs += recovery_sweep();
    fprintf(stderr, "fault: %" PRIu64 " runs, %u failures\n", runs, fault_failures_total);
    return check_exit();
}
