/*
 * The engine's checkpoint, spare-segment and close paths under one chosen fault each (issue 9,
 * defects 1 and 8), on fault_backend(memfs) with a fake clock:
 * - a checkpoint in flight when the log is poisoned renames and unlinks nothing after that;
 * - a checkpoint step whose submit is refused (a full ring) leaks no fd, even when the close
 *   of its temp file is refused too; the next checkpoint still works;
 * - a spare-segment step whose submit is refused leaks no fd;
 * - log_close of a log poisoned while a roll waits for disk space returns the error instead
 *   of tripping log_drain's assertion.
 * fd leaks are seen as files opened through the fault backend and never closed, after
 * log_close (which closes everything the log holds).
 */
#include "check.h"
#include "fault_backend.h"
#include "log_workload.h"
#include "memfs_backend.h"
#include "segment.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Records of 3 KiB: a 64 KiB segment takes about 20, so a few dozen make rolls. */
#define LF_RECORD_BYTES 3000u
/* Completions a drain may wait for before the test gives up (it never should). */
#define LF_POLLS_MAX 10000u

struct lf {
    struct memfs *fs;
    struct io_backend *io;
    struct log *log;
    int64_t now_ns;
    int error;     /* on_durable's poisoning error */
    bool ckpt_done;
    int ckpt_error;
};

static int64_t lf_clock(void *ctx)
{
    return ((struct lf *)ctx)->now_ns;
}

static void lf_on_durable(void *ctx, uint64_t end, enum log_durability level, int error)
{
    (void)end;
    (void)level;
    struct lf *t = ctx;
    if (error != 0 && t->error == 0)
        t->error = error;
}

static void lf_open(struct lf *t, enum log_sync_mode mode, bool spare)
{
    memset(t, 0, sizeof(*t));
    t->fs = memfs_create();
    struct fault_config none = {.kind = FAULT_NONE};
    t->io = fault_backend_create(memfs_io(t->fs), &none);
    t->now_ns = 1000000000ll;
    struct log_config config;
    workload_config(&config);
    config.sync_mode = mode;
    config.sync_interval_ms = 1;
    config.spare_segment = spare;
    config.on_durable = lf_on_durable;
    config.now_ns = lf_clock;
    config.ctx = t;
    REQUIRE(log_open(&config, t->io, NULL, NULL, NULL, NULL, NULL, &t->log) == 0);
}

static void lf_close(struct lf *t)
{
    if (t->log != NULL)
        (void)log_close(t->log);
    t->log = NULL;
    io_backend_destroy(t->io);
    io_backend_destroy(memfs_io(t->fs));
}

static void lf_append(struct lf *t)
{
    static uint8_t record[LF_RECORD_BYTES];
    struct log_pos pos;
    REQUIRE(log_append(t->log, 1, record, sizeof(record), &pos) == 0);
}

static void lf_drain(struct lf *t)
{
    for (uint32_t i = 0; i < LF_POLLS_MAX && !log_idle(t->log) && log_error(t->log) == 0; i++) {
        log_tick(t->log);
        REQUIRE(io_backend_poll(t->io, true) >= 0);
    }
}

/* Append and commit until the log has at least segments segments. */
static void lf_fill(struct lf *t, uint32_t segments)
{
    for (uint32_t i = 0; i < 1000 && log_segment_count(t->log) < segments; i++) {
        lf_append(t);
        lf_drain(t);
    }
    REQUIRE(log_segment_count(t->log) >= segments);
}

static void lf_poll_all(struct lf *t)
{
    for (uint32_t i = 0; i < LF_POLLS_MAX && t->io->ops->in_flight(t->io) > 0; i++)
        REQUIRE(io_backend_poll(t->io, true) >= 0);
}

static void lf_ckpt_done(void *ctx, int error)
{
    struct lf *t = ctx;
    t->ckpt_done = true;
    t->ckpt_error = error;
}

static int lf_checkpoint_start(struct lf *t, uint64_t drop)
{
    t->ckpt_done = false;
    t->ckpt_error = 0;
    static const char payload[] = "payload";
    uint64_t anchor = log_durable_seq_end(t->log);
    return log_checkpoint(t->log, anchor, payload, sizeof(payload), &drop, drop != 0 ? 1 : 0,
                          lf_ckpt_done, t);
}

static void lf_checkpoint_wait(struct lf *t)
{
    for (uint32_t i = 0; i < LF_POLLS_MAX && !t->ckpt_done; i++)
        REQUIRE(io_backend_poll(t->io, true) >= 0);
    REQUIRE(t->ckpt_done);
}

/* Did an op of kind run (successfully) at or after op index from? */
static bool lf_ran_since(const struct lf *t, uint64_t from, enum io_op_kind kind)
{
    for (uint64_t i = from; i < memfs_op_count(t->fs); i++) {
        struct memfs_op_info info;
        memfs_op_get(t->fs, i, &info);
        if (info.kind == kind && info.result >= 0)
            return true;
    }
    return false;
}

/*
 * A checkpoint is in flight (dropping the oldest segment) when the batch written beside it
 * fails: the log is poisoned. Ops run one per poll, so the moment of the poison is exact. The
 * chain op already submitted then may still run, but nothing the chain submits after the
 * poison renames or unlinks, and done hears the error. Swept over every step of the chain
 * the EIO can follow.
 */
static void test_checkpoint_stops_on_poison(void)
{
    for (uint32_t polls_before = 0; polls_before < 32; polls_before++) {
        struct lf t;
        lf_open(&t, LOG_SYNC_ALWAYS, false);
        lf_fill(&t, 3);
        lf_poll_all(&t);
        memfs_set_poll_batch(t.fs, 1);
        uint64_t oldest = log_segment_id(t.log, 0);
        REQUIRE(lf_checkpoint_start(&t, oldest) == 0);
        for (uint32_t i = 0; i < polls_before && !t.ckpt_done; i++)
            REQUIRE(io_backend_poll(t.io, true) >= 0);
        if (t.ckpt_done) {
            lf_close(&t);
            break; /* the chain is shorter than polls_before: every step was swept */
        }
        struct fault_config eio = {.kind = FAULT_EIO, .op_mask = FAULT_OPS_WRITES,
                                   .fail_at = 1};
        fault_backend_arm(t.io, &eio);
        lf_append(&t);
        log_tick(t.log); /* the batch's write is submitted: it will fail */
        uint64_t poisoned_at = 0;
        uint32_t in_flight_at_poison = 0;
        bool done_before_poison = false;
        for (uint32_t i = 0; i < LF_POLLS_MAX && !t.ckpt_done; i++) {
            REQUIRE(io_backend_poll(t.io, true) >= 0);
            if (t.error != 0 && poisoned_at == 0) {
                poisoned_at = memfs_op_count(t.fs);
                in_flight_at_poison = t.io->ops->in_flight(t.io);
            }
            done_before_poison = t.ckpt_done && t.error == 0;
        }
        if (done_before_poison) {
            lf_close(&t);
            break; /* the chain ended before the batch ran: every step was swept */
        }
        REQUIRE(t.ckpt_done && t.error != 0 && poisoned_at > 0);
        /* Ops in flight at the poison were submitted before it (they run next, in order). */
        uint64_t after = poisoned_at + in_flight_at_poison;
        bool renamed = lf_ran_since(&t, after, IO_RENAME);
        bool unlinked = lf_ran_since(&t, after, IO_UNLINK);
        if (renamed || unlinked || t.ckpt_error == 0)
            fprintf(stderr, "poisoned after %u chain ops: renamed %d unlinked %d error %d\n",
                    polls_before, renamed, unlinked, t.ckpt_error);
        CHECK(!renamed);
        CHECK(!unlinked);
        CHECK(t.ckpt_error != 0);
        lf_close(&t);
    }
}

/* Each step of a checkpoint chain with its submit refused: done hears an error, the temp file
 * is closed, and the next checkpoint (no fault) succeeds. */
static void test_checkpoint_submit_refused(void)
{
    static const enum io_op_kind kinds[] = {IO_OPEN, IO_WRITE, IO_FDATASYNC, IO_CLOSE,
                                            IO_RENAME, IO_FSYNC_DIR, IO_UNLINK};
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        struct lf t;
        lf_open(&t, LOG_SYNC_ALWAYS, false);
        lf_fill(&t, 3);
        uint32_t open_before = fault_backend_open_count(t.io);
        struct fault_config refuse = {.kind = FAULT_SUBMIT_REFUSED,
                                      .op_mask = FAULT_OP_BIT(kinds[k]), .fail_at = 1};
        fault_backend_arm(t.io, &refuse);
        int rc = lf_checkpoint_start(&t, log_segment_id(t.log, 0));
        if (rc == 0)
            lf_checkpoint_wait(&t);
        CHECK(fault_backend_fired(t.io));
        CHECK(rc != 0 || t.ckpt_error != 0);
        /* A refused close leaves the temp file with the log (for the next checkpoint). */
        uint32_t held = kinds[k] == IO_CLOSE ? 1u : 0u;
        if (fault_backend_open_count(t.io) != open_before + held)
            fprintf(stderr, "checkpoint submit of op kind %d refused: %u files open, %u before\n",
                    (int)kinds[k], fault_backend_open_count(t.io), open_before);
        CHECK_EQ(fault_backend_open_count(t.io), open_before + held);
        struct fault_config none = {.kind = FAULT_NONE};
        fault_backend_arm(t.io, &none);
        lf_append(&t);
        lf_drain(&t);
        REQUIRE(lf_checkpoint_start(&t, 0) == 0);
        lf_checkpoint_wait(&t);
        CHECK_EQ(t.ckpt_error, 0);
        REQUIRE(log_close(t.log) == 0);
        t.log = NULL;
        if (fault_backend_open_count(t.io) != 0)
            fprintf(stderr, "checkpoint submit of op kind %d refused: %u fds leaked\n",
                    (int)kinds[k], fault_backend_open_count(t.io));
        CHECK_EQ(fault_backend_open_count(t.io), 0);
        lf_close(&t);
    }
}

/* The write of the temp file refused, and the close that follows refused too: the fd stays
 * with the log, and the next checkpoint closes it before it opens its own. */
static void test_checkpoint_close_refused(void)
{
    struct lf t;
    lf_open(&t, LOG_SYNC_ALWAYS, false);
    lf_fill(&t, 2);
    uint32_t open_before = fault_backend_open_count(t.io);
    struct fault_config refuse = {.kind = FAULT_SUBMIT_REFUSED,
                                  .op_mask = FAULT_OP_BIT(IO_WRITE) | FAULT_OP_BIT(IO_CLOSE),
                                  .fail_at = 1, .sticky = true};
    fault_backend_arm(t.io, &refuse);
    REQUIRE(lf_checkpoint_start(&t, 0) == 0);
    lf_checkpoint_wait(&t);
    CHECK(t.ckpt_error != 0);
    CHECK_EQ(fault_backend_open_count(t.io), open_before + 1); /* held, not lost */
    struct fault_config none = {.kind = FAULT_NONE};
    fault_backend_arm(t.io, &none);
    REQUIRE(lf_checkpoint_start(&t, 0) == 0);
    lf_checkpoint_wait(&t);
    CHECK_EQ(t.ckpt_error, 0);
    CHECK_EQ(fault_backend_open_count(t.io), open_before);
    REQUIRE(log_close(t.log) == 0);
    t.log = NULL;
    CHECK_EQ(fault_backend_open_count(t.io), 0);
    lf_close(&t);
}

/* Each step of making the spare with its submit refused: no fd lost, and the spare is made
 * at the next attempt. */
static void test_spare_submit_refused(void)
{
    static const enum io_op_kind kinds[] = {IO_OPEN, IO_FALLOCATE, IO_WRITE, IO_FDATASYNC};
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        struct lf t;
        lf_open(&t, LOG_SYNC_ALWAYS, false);
        lf_close(&t); /* a directory with a first segment */
        memset(&t, 0, sizeof(t));
        t.fs = memfs_create();
        struct fault_config none = {.kind = FAULT_NONE};
        t.io = fault_backend_create(memfs_io(t.fs), &none);
        t.now_ns = 1000000000ll;
        struct log_config config;
        workload_config(&config);
        config.spare_segment = true;
        config.on_durable = lf_on_durable;
        config.now_ns = lf_clock;
        config.ctx = &t;
        REQUIRE(log_open(&config, t.io, NULL, NULL, NULL, NULL, NULL, &t.log) == 0);
        struct fault_config refuse = {.kind = FAULT_SUBMIT_REFUSED,
                                      .op_mask = FAULT_OP_BIT(kinds[k]), .fail_at = 1};
        fault_backend_arm(t.io, &refuse);
        /* Ticks across a few retry periods: the refused step, then a spare made again. */
        for (uint32_t i = 0; i < 50; i++) {
            log_tick(t.log);
            if (t.io->ops->in_flight(t.io) > 0)
                REQUIRE(io_backend_poll(t.io, true) >= 0);
            t.now_ns += 10ll * 1000 * 1000;
        }
        CHECK(fault_backend_fired(t.io));
        CHECK(!log_space_low(t.log)); /* the spare is ready again */
        REQUIRE(log_close(t.log) == 0);
        t.log = NULL;
        if (fault_backend_open_count(t.io) != 0)
            fprintf(stderr, "spare submit of op kind %d refused: %u fds leaked\n",
                    (int)kinds[k], fault_backend_open_count(t.io));
        CHECK_EQ(fault_backend_open_count(t.io), 0);
        lf_close(&t);
    }
}

/*
 * In a child (the bug aborts): a roll waits for disk space when the log is poisoned, then
 * log_close runs after the roll's retry time. Interval mode with the clock standing still,
 * so the only fdatasync a tick starts is the roll's sync of the old segment; once it is
 * submitted, the clock moves and an interval sync is submitted beside it. Ops then run one
 * per poll, in order: the old segment's sync (the roll goes on to open its new file: ENOSPC),
 * the interval sync (EIO: poisoned), the open (ENOSPC: the roll waits for space).
 * log_close must return the poisoning error. Exits 0 when it did.
 */
static void drain_poisoned_child(void)
{
    struct lf t;
    lf_open(&t, LOG_SYNC_INTERVAL, false);
    lf_fill(&t, 2);
    lf_poll_all(&t);
    memfs_set_poll_batch(t.fs, 1);
    struct fault_config eio = {.kind = FAULT_EIO, .op_mask = FAULT_OPS_SYNCS, .fail_at = 2};
    fault_backend_arm(t.io, &eio);
    for (uint32_t i = 0; i < 100 && fault_backend_matched(t.io) == 0; i++) {
        lf_append(&t);
        log_tick(t.log);
        if (fault_backend_matched(t.io) == 0)
            lf_poll_all(&t);
    }
    REQUIRE(fault_backend_matched(t.io) == 1); /* the roll's sync of the old segment */
    t.now_ns += 5ll * 1000 * 1000;
    log_tick(t.log);
    REQUIRE(fault_backend_fired(t.io)); /* the interval sync, to fail with EIO */
    struct fault_config enospc = {.kind = FAULT_ENOSPC, .op_mask = FAULT_OP_BIT(IO_OPEN),
                                  .fail_at = 1};
    fault_backend_arm(t.io, &enospc);
    lf_poll_all(&t);
    if (log_error(t.log) == 0 || !log_space_low(t.log)) {
        fprintf(stderr, "setup did not reach a poisoned log waiting for space (error %d)\n",
                log_error(t.log));
        _exit(2);
    }
    t.now_ns += 10ll * 1000 * 1000 * 1000; /* past the roll's retry time */
    int rc = log_close(t.log);
    _exit(rc != 0 ? 0 : 3);
}

static void test_drain_poisoned_while_waiting_for_space(void)
{
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0)
        drain_poisoned_child();
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "log_close of a log poisoned while waiting for space: %s %d\n",
                WIFSIGNALED(status) ? "killed by signal" : "exit",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void)
{
    RUN_TEST(test_checkpoint_stops_on_poison);
    RUN_TEST(test_checkpoint_submit_refused);
    RUN_TEST(test_checkpoint_close_refused);
    RUN_TEST(test_spare_submit_refused);
    RUN_TEST(test_drain_poisoned_while_waiting_for_space);
    return check_exit();
}
