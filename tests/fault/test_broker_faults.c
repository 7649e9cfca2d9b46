/*
 * The broker's queue state machine and checkpoints over the log, on fault_backend(memfs): the
 * server's loop in miniature (puts, reserves and acks emitted into the log, group commit,
 * checkpoints walked a few jobs per turn while requests go on, retention dropping segments,
 * small segments so rolls happen), and the restart the server would do afterwards (load the
 * checkpoint, replay, read every body back).
 *
 * What is held, after every run: every body the restart needs is read back (spoold refuses
 * to start otherwise); every put whose record was reported durable (what the server replies
 * on) is there after a restart with its exact body, unless an ack of it was logged; a job
 * whose ack was reported durable is not live. Images checked: the
 * directory as a killed process leaves it (every op that ran kept) and as a power loss
 * leaves it (only what was fdatasync'ed), at the end and right after a checkpoint finished.
 *
 * Tests:
 * - ack_after_anchor: the checkpoint of issue 9, defect 1, made deterministic: jobs acked
 *   after a checkpoint's anchor, the checkpoint written and its segments dropped, the acks
 *   never durable (the log died, or power went, before their batch made it); the restart
 *   must find every job and read its body.
 * - sweep: for each fault class (EIO on writes, fdatasyncs, any op, a dead disk; ENOSPC;
 *   short writes; refused submits) and each N up to the ops of a run, fail the Nth matching
 *   op of the workload, then restart and check, in sync modes always and interval.
 */
#include "check.h"
#include "compact.h"
#include "fault_backend.h"
#include "log_workload.h"
#include "memfs_backend.h"
#include "queue.h"
#include "record.h"
#include "retention.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Turns of one run. The first half puts 4 jobs and acks 1 a turn, so a backlog of about 240
 * jobs builds over several 64 KiB segments; the second half puts 1 and acks up to 5, so the
 * old segments empty while checkpoints run, and acks land in the walks of the checkpoints. */
#define BROKER_TURNS 120u
#define BROKER_JOBS_MAX (BROKER_TURNS * 4u + 1u)
/* A checkpoint begins every this many turns (when none is running) and walks this many jobs
 * a turn: a walk of the whole backlog then spans several turns, as on a busy server. */
#define BROKER_CHECKPOINT_EVERY 15u
#define BROKER_WALK_STEP_JOBS 24u
/* The fake clock's step per turn: the interval sync (5 ms) runs about every turn and an
 * ENOSPC roll is retried (LOG_ENOSPC_RETRY_NS, 100 ms) after 10 turns. */
#define BROKER_TURN_NS (10ll * 1000 * 1000)
#define BROKER_SYNC_INTERVAL_MS 5u
/* Every 10th job is put with a long delay and never acked: about 10% of each filled segment
 * stays live once the acks pass it, under compaction's 25%. */
#define BROKER_PINNED_EVERY 10u
/* Bodies of 100 to 1,299 pseudo-random bytes: about 90 jobs a segment. */
#define BROKER_BODY_MAX 1300u
/* Turns the final drain may take before the run gives up on the log (it never should). */
#define BROKER_DRAIN_TURNS_MAX 10000u
/* A slow machine (or a sanitizer build) stops sweeping here rather than hitting meson's
 * timeout; what was swept is printed. */
#define BROKER_TIME_BUDGET_NS (60ll * 1000 * 1000 * 1000)
#define BROKER_FAILURES_SHOWN 20u

/* What was promised by some moment: replies said durable below these seqs. */
struct broker_promise {
    uint64_t op_count; /* memfs ops run by then */
    uint64_t written_end;
    uint64_t synced_end;
};

struct broker {
    struct memfs *fs;
    struct io_backend *io; /* the fault backend over memfs */
    struct log_config config;
    struct log *log;
    struct queue_state *qs;
    struct compactor *compactor; /* as spoold runs it, surveying every turn */
    int64_t now_ns;
    int64_t now_ms;
    uint64_t emit_seq; /* of the last record emitted */
    bool log_full;
    uint64_t written_end;
    uint64_t synced_end;
    int error; /* the poisoning error on_durable reported */
    uint64_t put_seq[BROKER_JOBS_MAX]; /* by job id; 0: not logged */
    uint64_t ack_seq[BROKER_JOBS_MAX];
    uint64_t id_max;
    bool ckpt_in_flight;
    uint64_t anchor;
    uint32_t ckpts_written;
    uint32_t segments_dropped;
    struct broker_promise at_ckpt; /* when the last checkpoint finished */
    struct compact_stats compact;  /* what the compactor did (after the run) */
    bool ckpt_seen;
};

static uint32_t broker_body_make(uint64_t id, uint8_t *buf)
{
    uint32_t len = 100u + (uint32_t)((id * 7919u) % (BROKER_BODY_MAX - 100u));
    uint64_t x = id * 0x9E3779B97F4A7C15ull + 1;
    for (uint32_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
    return len;
}

/* Every body, made once: the checker compares each job of every image with its body. */
static uint8_t broker_bodies[BROKER_JOBS_MAX][BROKER_BODY_MAX];
static uint32_t broker_body_lens[BROKER_JOBS_MAX];

static const uint8_t *broker_body(uint64_t id, uint32_t *len)
{
    REQUIRE(id > 0 && id < BROKER_JOBS_MAX);
    if (broker_body_lens[id] == 0)
        broker_body_lens[id] = broker_body_make(id, broker_bodies[id]);
    *len = broker_body_lens[id];
    return broker_bodies[id];
}

static int64_t broker_clock(void *ctx)
{
    return ((struct broker *)ctx)->now_ns;
}

static void broker_on_durable(void *ctx, uint64_t end, enum log_durability level, int error)
{
    struct broker *b = ctx;
    if (error != 0) {
        if (b->error == 0)
            b->error = error;
        return;
    }
    if (end > b->written_end)
        b->written_end = end;
    if (level == LOG_DURABLE_SYNCED && end > b->synced_end)
        b->synced_end = end;
}

/* server_emit: a full batch refuses everything until the next turn, keeping record order. */
static int broker_emit(void *ctx, uint8_t type, const void *data, uint32_t len,
                       struct log_pos *pos)
{
    struct broker *b = ctx;
    if (b->log_full)
        return -ENOBUFS;
    int rc = type == RECORD_LEASE ? log_append_lazy(b->log, type, data, len, pos)
                                  : log_append(b->log, type, data, len, pos);
    if (rc == -ENOBUFS)
        b->log_full = true;
    if (rc == 0)
        b->emit_seq = pos->seq;
    return rc;
}

static void broker_config(struct log_config *config, enum log_sync_mode mode, void *ctx)
{
    workload_config(config);
    config->sync_mode = mode;
    config->sync_interval_ms = BROKER_SYNC_INTERVAL_MS;
    config->spare_segment = true; /* as spoold runs it */
    config->on_durable = broker_on_durable;
    config->now_ns = broker_clock;
    config->ctx = ctx;
}

static struct queue_state *broker_queue_state(queue_emit_fn emit, void *ctx)
{
    struct queue_config qc;
    queue_config_defaults(&qc);
    qc.emit = emit;
    qc.emit_ctx = ctx;
    return queue_state_create(&qc);
}

/* A fresh directory and a broker on it, with fault (may be NULL: none) on its I/O. */
static struct broker *broker_start(enum log_sync_mode mode, const struct fault_config *fault)
{
    struct broker *b = calloc(1, sizeof(*b));
    REQUIRE(b != NULL);
    b->fs = memfs_create();
    struct fault_config none = {.kind = FAULT_NONE};
    b->io = fault_backend_create(memfs_io(b->fs), fault != NULL ? fault : &none);
    b->now_ns = 1000000000ll;
    b->now_ms = 1700000000000ll;
    broker_config(&b->config, mode, b);
    b->log = NULL;
    int rc = log_open(&b->config, b->io, NULL, NULL, NULL, NULL, NULL, &b->log);
    if (rc != 0) {
        b->error = rc; /* the fault hit the first segment's creation: nothing promised */
        b->log = NULL;
    }
    b->qs = broker_queue_state(broker_emit, b);
    if (b->log != NULL) {
        b->compactor = compactor_create(b->log, b->qs, b->config.segment_size_bytes,
                                        COMPACT_LIVE_PERCENT);
        REQUIRE(b->compactor != NULL);
        compactor_set_survey_interval(b->compactor, 0);
    }
    return b;
}

/* The queue's clock pair at ms on both clocks: the workload has no clock step. */
static struct queue_time qtime(int64_t ms)
{
    return (struct queue_time){.wall_ns = ms * QUEUE_NS_PER_MS, .mono_ns = ms * QUEUE_NS_PER_MS};
}

static void broker_put(struct broker *b)
{
    uint64_t id = b->id_max + 1;
    struct queue_put_args args = {.queue = "q", .queue_len = 1, .max_attempts = -1};
    /* One job in BROKER_PINNED_EVERY stays delayed: FIFO acks empty the rest of its segment,
     * and compaction copies it (and its kind) forward. */
    if (id % BROKER_PINNED_EVERY == 0)
        args.delay_ms = 3600 * 1000;
    args.body = broker_body(id, &args.body_len);
    uint64_t got = 0, seq = 0;
    bool dup = false;
    if (queue_put(b->qs, &args, qtime(b->now_ms), &got, &dup, &seq) != 0)
        return;
    REQUIRE(got == id && got < BROKER_JOBS_MAX);
    b->id_max = got;
    b->put_seq[got] = seq;
}

static void broker_ack(struct broker *b)
{
    struct queue_reserver r;
    memset(&r, 0, sizeof(r));
    r.queues[0] = queue_find(b->qs, "q", 1);
    if (r.queues[0] == NULL)
        return;
    r.queue_count = 1;
    r.count_max = 1;
    r.deadline_ns = qtime(b->now_ms).mono_ns;
    r.detach = true;
    struct job *jobs[1];
    if (queue_reserve(b->qs, &r, qtime(b->now_ms), jobs) != 1)
        return;
    uint64_t id = jobs[0]->id;
    if (queue_ack(b->qs, id, queue_job_x(jobs[0])->lease_token, NULL, 0, qtime(b->now_ms), NULL) ==
        0)
        b->ack_seq[id] = b->emit_seq;
}

static void broker_checkpoint_done(void *ctx, int error)
{
    struct broker *b = ctx;
    b->ckpt_in_flight = false;
    if (error != 0)
        return;
    b->ckpts_written++;
    b->ckpt_seen = true;
    b->at_ckpt = (struct broker_promise){.op_count = memfs_op_count(b->fs),
                                         .written_end = b->written_end,
                                         .synced_end = b->synced_end};
}

/* server.c checkpoint_advance and checkpoint_write, with the same retention rule. */
static void broker_checkpoint_advance(struct broker *b, uint32_t turn)
{
    if (!queue_checkpoint_active(b->qs)) {
        bool due = turn % BROKER_CHECKPOINT_EVERY == BROKER_CHECKPOINT_EVERY - 1 ||
                   compactor_checkpoint_wanted(b->compactor);
        if (b->ckpt_in_flight || !due)
            return;
        b->anchor = log_next_seq(b->log);
        queue_checkpoint_begin(b->qs);
        compactor_checkpoint_begun(b->compactor);
    }
    if (!queue_checkpoint_step(b->qs, BROKER_WALK_STEP_JOBS))
        return;
    if (log_durable_seq_end(b->log) < b->anchor)
        return; /* at a later turn */
    uint8_t *payload;
    uint32_t len;
    struct queue_segment_set needed;
    REQUIRE(queue_checkpoint_finish(b->qs, &payload, &len, &needed) == 0);
    uint64_t *drop;
    uint32_t drop_count = retention_drop_list(b->log, &needed, b->anchor, &drop);
    queue_segment_set_free(&needed);
    int rc = log_checkpoint_give(b->log, b->anchor, payload, len, drop, drop_count,
                                 broker_checkpoint_done, b);
    free(drop);
    if (rc == 0) {
        b->ckpt_in_flight = true;
        b->segments_dropped += drop_count;
    }
}

/* One loop turn: requests, the checkpoint's share, the log's tick, completions. */
static void broker_turn(struct broker *b, uint32_t turn)
{
    b->log_full = false;
    if (b->error == 0) {
        bool filling = turn < BROKER_TURNS / 2;
        for (uint32_t i = 0; i < (filling ? 4u : 1u); i++)
            broker_put(b);
        for (uint32_t i = 0; i < (filling ? 1u : 5u); i++)
            broker_ack(b);
        compactor_tick(b->compactor, b->now_ns / 1000000);
        broker_checkpoint_advance(b, turn);
    }
    log_tick(b->log);
    REQUIRE(io_backend_poll(b->io, true) >= 0);
    queue_durable(b->qs, b->written_end, qtime(b->now_ms));
    b->now_ns += BROKER_TURN_NS;
    b->now_ms += BROKER_TURN_NS / 1000000;
}

/* The workload, then a stop as spoold's: drop a walk in progress, let the log finish. */
static void broker_run(struct broker *b)
{
    if (b->log == NULL)
        return;
    for (uint32_t turn = 0; turn < BROKER_TURNS && b->error == 0; turn++)
        broker_turn(b, turn);
    queue_checkpoint_abort(b->qs);
    compactor_stop(b->compactor);
    for (uint32_t i = 0; i < BROKER_DRAIN_TURNS_MAX && b->error == 0 && !log_idle(b->log);
         i++) {
        b->log_full = false;
        log_tick(b->log);
        REQUIRE(io_backend_poll(b->io, true) >= 0);
        b->now_ns += BROKER_TURN_NS;
    }
    (void)log_close(b->log); /* the poisoning error, or ENOSPC: judged by the restart */
    b->log = NULL;
    compactor_stats_get(b->compactor, &b->compact);
    queue_durable(b->qs, b->written_end, qtime(b->now_ms));
}

static void broker_free(struct broker *b)
{
    if (b->log != NULL) {
        compactor_stop(b->compactor);
        (void)log_close(b->log);
    }
    compactor_destroy(b->compactor);
    queue_state_destroy(b->qs);
    io_backend_destroy(b->io);
    io_backend_destroy(memfs_io(b->fs));
    free(b);
}

/* ---- the restart ---- */

struct recovered {
    struct log *log;
    struct queue_state *qs;
    struct log_record *records;
    uint32_t count;
    uint32_t cap;
    int64_t now_ns;
    int read_error;
    bool read_done;
    uint8_t *read_body;
    uint32_t read_len;
};

static int rec_collect(void *ctx, const struct log_record *record)
{
    struct recovered *r = ctx;
    if (r->count == r->cap) {
        r->cap = r->cap == 0 ? 256 : r->cap * 2;
        r->records = realloc(r->records, r->cap * sizeof(*r->records));
        REQUIRE(r->records != NULL);
    }
    struct log_record copy = *record;
    void *data = malloc(record->len > 0 ? record->len : 1);
    REQUIRE(data != NULL);
    memcpy(data, record->data, record->len);
    copy.data = data;
    r->records[r->count++] = copy;
    return 0;
}

static int rec_emit(void *ctx, uint8_t type, const void *data, uint32_t len, struct log_pos *pos)
{
    struct recovered *r = ctx;
    return log_append(r->log, type, data, len, pos);
}

static int64_t rec_clock(void *ctx)
{
    return ((struct recovered *)ctx)->now_ns;
}

static void rec_read_done(void *ctx, int error, const struct log_record *record)
{
    struct recovered *r = ctx;
    r->read_done = true;
    r->read_error = error;
    struct record rec;
    const void *body;
    uint32_t body_len;
    /* The body is in the job's PUT or in compaction's copy of it (RELOCATE). */
    if (error == 0 && record_decode(record->type, record->data, record->len, &rec) == 0 &&
        record_body(&rec, &body, &body_len)) {
        r->read_body = malloc(body_len + 1u);
        REQUIRE(r->read_body != NULL);
        memcpy(r->read_body, body, body_len);
        r->read_len = body_len;
    }
}

struct unloaded {
    struct job **jobs;
    uint32_t count;
};

static void rec_unloaded(void *ctx, struct job *job)
{
    struct unloaded *u = ctx;
    u->jobs = realloc(u->jobs, (u->count + 1u) * sizeof(*u->jobs));
    REQUIRE(u->jobs != NULL);
    u->jobs[u->count++] = job;
}

/* server.c bodies_load, one read at a time. */
static int rec_bodies_load(struct recovered *r, struct io_backend *io, char *why, size_t len)
{
    struct unloaded u = {0};
    queue_each_unloaded(r->qs, rec_unloaded, &u);
    int rc = 0;
    for (uint32_t i = 0; i < u.count && rc == 0; i++) {
        r->read_done = false;
        r->read_body = NULL;
        struct log_pos upos = queue_job_pos(u.jobs[i]);
        rc = log_read(r->log, &upos, rec_read_done, r);
        while (rc == 0 && !r->read_done)
            REQUIRE(io_backend_poll(io, true) >= 0);
        if (rc == 0)
            rc = r->read_error;
        if (rc == 0 && r->read_body == NULL)
            rc = -EINVAL;
        if (rc == 0)
            queue_body_loaded(r->qs, u.jobs[i], r->read_body, r->read_len);
        free(r->read_body);
        if (rc != 0)
            snprintf(why, len,
                     "cannot read job bodies back: job %" PRIu64 " segment %" PRIu64 ": %s",
                     u.jobs[i]->id, queue_job_pos(u.jobs[i]).segment_id, log_strerror(rc));
    }
    free(u.jobs);
    return rc;
}

/* Restart on image: 0, or -1 with the reason in why. */
static int rec_open(struct recovered *r, const struct broker *b, struct io_backend *io,
                    char *why, size_t len)
{
    struct log_config config = b->config;
    config.on_durable = NULL;
    config.now_ns = rec_clock;
    config.ctx = r;
    r->now_ns = b->now_ns;
    void *ckpt = NULL;
    uint32_t ckpt_len = 0;
    struct log_recovery_report report;
    memset(&report, 0, sizeof(report));
    int rc = log_open(&config, io, rec_collect, r, &ckpt, &ckpt_len, &report, &r->log);
    if (rc != 0) {
        snprintf(why, len, "log_open: %s (%.160s)", log_strerror(rc), report.message);
        r->log = NULL;
        return -1;
    }
    r->qs = broker_queue_state(rec_emit, r);
    if (ckpt != NULL && queue_checkpoint_load(r->qs, ckpt, ckpt_len, qtime(b->now_ms)) != 0) {
        snprintf(why, len, "checkpoint payload does not decode");
        rc = -1;
    }
    free(ckpt);
    for (uint32_t i = 0; rc == 0 && i < r->count; i++) {
        if (queue_replay(r->qs, &r->records[i], qtime(b->now_ms)) != 0) {
            snprintf(why, len, "record %" PRIu64 " does not replay", r->records[i].pos.seq);
            rc = -1;
        }
    }
    if (rc != 0)
        return -1;
    queue_recover_finish(r->qs, qtime(b->now_ms));
    return rec_bodies_load(r, io, why, len) == 0 ? 0 : -1;
}

static void rec_close(struct recovered *r)
{
    if (r->log != NULL)
        (void)log_close(r->log);
    if (r->qs != NULL)
        queue_state_destroy(r->qs);
    for (uint32_t i = 0; i < r->count; i++)
        free((void *)r->records[i].data);
    free(r->records);
}

/* Every promise below acked_end kept by the restarted state r. */
static int rec_check_jobs(const struct broker *b, struct recovered *r, uint64_t acked_end,
                          char *why, size_t len)
{
    for (uint64_t id = 1; id <= b->id_max; id++) {
        struct job *job = queue_job_find(r->qs, id);
        bool live = job != NULL && !job_state_settled(job->state);
        bool put_acked = b->put_seq[id] != 0 && b->put_seq[id] < acked_end;
        bool ack_acked = b->ack_seq[id] != 0 && b->ack_seq[id] < acked_end;
        /* An ack logged but not promised may have reached the disk anyway (a later sync
         * covered it): then the job is rightly gone. */
        if (put_acked && b->ack_seq[id] == 0 && !live) {
            snprintf(why, len, "acknowledged job %" PRIu64 " (put seq %" PRIu64 ") lost", id,
                     b->put_seq[id]);
            return -1;
        }
        if (ack_acked && live) {
            snprintf(why, len, "job %" PRIu64 " back after its acknowledged ack (seq %" PRIu64
                     ")", id, b->ack_seq[id]);
            return -1;
        }
        uint32_t body_len;
        const uint8_t *body = broker_body(id, &body_len);
        if (live && (queue_job_body(job) == NULL || job->body_len != body_len ||
                     memcmp(queue_job_body(job), body, body_len) != 0)) {
            snprintf(why, len, "job %" PRIu64 " has another body", id);
            return -1;
        }
    }
    return 0;
}

/* Restart on an image of b's directory after k ops and hold it to what was promised. */
static int broker_check_image(const struct broker *b, uint64_t k, enum memfs_image_kind kind,
                              uint64_t acked_end, char *why, size_t len)
{
    struct memfs *image = memfs_image(b->fs, k, kind, 1);
    struct io_backend *io = memfs_io(image);
    struct recovered r;
    memset(&r, 0, sizeof(r));
    int rc = rec_open(&r, b, io, why, len);
    if (rc == 0)
        rc = rec_check_jobs(b, &r, acked_end, why, len);
    if (rc != 0) {
        size_t used = strlen(why);
        snprintf(why + used, len - used, " [image %s at op %" PRIu64 " of %" PRIu64
                 ", promised below seq %" PRIu64 "]",
                 kind == MEMFS_IMAGE_ALL ? "killed" : "power loss", k, memfs_op_count(b->fs),
                 acked_end);
    }
    rec_close(&r);
    io_backend_destroy(io);
    return rc;
}

/* The images a run is held to: killed at the end, power lost at the end, and power lost
 * right after the last checkpoint finished (its dropped segments gone, later acks maybe
 * not durable: the interval mode's case). */
static int broker_check(const struct broker *b, char *why, size_t len)
{
    uint64_t end = memfs_op_count(b->fs);
    if (broker_check_image(b, end, MEMFS_IMAGE_ALL, b->written_end, why, len) != 0)
        return -1;
    if (broker_check_image(b, end, MEMFS_IMAGE_DURABLE, b->synced_end, why, len) != 0)
        return -1;
    if (b->ckpt_seen && broker_check_image(b, b->at_ckpt.op_count, MEMFS_IMAGE_DURABLE,
                                           b->at_ckpt.synced_end, why, len) != 0)
        return -1;
    return 0;
}

/* ---- tests ---- */

/* Fill a few segments and make every put durable and visible. */
static void anchor_fill(struct broker *b)
{
    for (uint32_t turn = 0; log_segment_count(b->log) < 4 && turn < BROKER_TURNS; turn++) {
        b->log_full = false;
        for (uint32_t i = 0; i < 4; i++)
            broker_put(b);
        log_tick(b->log);
        REQUIRE(io_backend_poll(b->io, true) >= 0);
        b->now_ns += BROKER_TURN_NS;
    }
    for (uint32_t i = 0; i < BROKER_DRAIN_TURNS_MAX && !log_idle(b->log); i++) {
        log_tick(b->log);
        REQUIRE(io_backend_poll(b->io, true) >= 0);
    }
    REQUIRE(log_segment_count(b->log) >= 4);
    queue_durable(b->qs, b->written_end, qtime(b->now_ms));
}

/*
 * Issue 9, defect 1. A checkpoint anchored at A; then every job of the oldest segments is
 * acked (records after A, in the open batch); the walk ends and the checkpoint is written and
 * drops what it may. Its payload still lists those jobs as live (they were at A), so it must
 * keep their segments. Then the acks never become durable: the disk fails their batch (EIO,
 * the log is poisoned) or the power goes. The restart must find every job with its body.
 */
static void test_ack_after_anchor(enum memfs_image_kind kind, bool fail_ack_batch)
{
    struct broker *b = broker_start(LOG_SYNC_ALWAYS, NULL);
    REQUIRE(b->log != NULL);
    anchor_fill(b);
    uint64_t oldest = log_segment_id(b->log, 0);
    b->anchor = log_next_seq(b->log);
    queue_checkpoint_begin(b->qs);
    REQUIRE(!queue_checkpoint_step(b->qs, 1)); /* the walk is under way */
    uint32_t acked = 0;
    for (uint64_t id = 1; id <= b->id_max && acked < BROKER_JOBS_MAX; id++) {
        b->log_full = false;
        broker_ack(b); /* FIFO: the oldest jobs, those of the oldest segments */
        acked++;
        if (b->put_seq[id] != 0 && queue_job_find(b->qs, id + 1) != NULL &&
            queue_job_pos(queue_job_find(b->qs, id + 1)).segment_id > oldest + 1)
            break;
    }
    REQUIRE(queue_checkpoint_step(b->qs, UINT32_MAX));
    REQUIRE(log_durable_seq_end(b->log) >= b->anchor);
    if (fail_ack_batch) {
        struct fault_config eio = {.kind = FAULT_EIO, .op_mask = FAULT_OPS_WRITES,
                                   .fail_at = 1};
        fault_backend_arm(b->io, &eio);
        log_tick(b->log); /* the acks' batch: its write fails, the log is poisoned */
        for (uint32_t i = 0; i < BROKER_DRAIN_TURNS_MAX && b->error == 0; i++)
            REQUIRE(io_backend_poll(b->io, true) >= 0);
        CHECK(b->error != 0);
    }
    uint8_t *payload;
    uint32_t len;
    struct queue_segment_set needed;
    REQUIRE(queue_checkpoint_finish(b->qs, &payload, &len, &needed) == 0);
    CHECK(queue_segment_set_has(&needed, oldest));
    uint64_t *drop;
    uint32_t drop_count = retention_drop_list(b->log, &needed, b->anchor, &drop);
    queue_segment_set_free(&needed);
    int rc = log_checkpoint_give(b->log, b->anchor, payload, len, drop, drop_count,
                                 broker_checkpoint_done, b);
    free(drop);
    if (rc == 0) {
        b->ckpt_in_flight = true;
        /* Poll only: no tick, so without a fault the acks stay in the open batch. */
        for (uint32_t i = 0; i < BROKER_DRAIN_TURNS_MAX && b->ckpt_in_flight; i++)
            REQUIRE(io_backend_poll(b->io, true) >= 0);
    }
    CHECK(!b->ckpt_in_flight);
    uint64_t k = memfs_op_count(b->fs);
    char why[512] = "";
    uint64_t promised = kind == MEMFS_IMAGE_DURABLE ? b->synced_end : b->written_end;
    CHECK(b->ack_seq[1] >= promised); /* no ack was promised */
    int checked = broker_check_image(b, k, kind, promised, why, sizeof(why));
    if (checked != 0)
        fprintf(stderr, "ack_after_anchor (%s, %s): %s\n",
                kind == MEMFS_IMAGE_ALL ? "killed" : "power loss",
                fail_ack_batch ? "ack batch EIO" : "acks not written", why);
    CHECK_EQ(checked, 0);
    broker_free(b);
}

struct fault_class {
    const char *name;
    enum fault_kind kind;
    uint32_t op_mask;
    bool sticky;
    bool always_only; /* swept in sync mode always only: the interval mode adds nothing */
};

/* EIO on every op covers EIO on the Nth write or fdatasync: a run is the same up to its
 * fault, so failing op M of all is failing the write or sync that op M is. */
static const struct fault_class fault_classes[] = {
    {"eio-any", FAULT_EIO, FAULT_OPS_ALL, false, false},
    {"enospc-space", FAULT_ENOSPC, FAULT_OPS_SPACE, false, false},
    {"short-write", FAULT_SHORT_WRITE, FAULT_OPS_WRITES, false, false},
    /* What these do to the engine does not depend on the sync mode (a refused submit and
     * a dead disk end in the same error paths), and each sweeps every op: once is enough. */
    {"submit-refused", FAULT_SUBMIT_REFUSED, FAULT_OPS_ALL, false, true},
    {"eio-dead-disk", FAULT_EIO, FAULT_OPS_ALL, true, true},
};

static int64_t sweep_deadline_ns;
static uint32_t sweep_failures;

static bool sweep_in_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec < sweep_deadline_ns;
}

/* One run with the Nth matching op faulted; false once N is past the run's ops. */
static bool sweep_one(const struct fault_class *class, enum log_sync_mode mode, uint64_t n)
{
    struct fault_config fault = {.kind = class->kind, .op_mask = class->op_mask,
                                 .fail_at = n, .sticky = class->sticky};
    struct broker *b = broker_start(mode, &fault);
    broker_run(b);
    bool fired = fault_backend_fired(b->io);
    char why[512] = "";
    if (broker_check(b, why, sizeof(why)) != 0) {
        if (sweep_failures++ < BROKER_FAILURES_SHOWN)
            fprintf(stderr, "sweep %s mode=%d n=%" PRIu64 " (fault on %s of %s): %s\n",
                    class->name, (int)mode, n, fired ? "an op" : "no op",
                    fired ? fault_backend_fired_file(b->io) : "-", why);
        CHECK(false);
    }
    broker_free(b);
    return fired;
}

/* The clean run of a mode: its checkpoints must have dropped segments, or the sweep would
 * not test retention at all. */
static void test_clean(enum log_sync_mode mode)
{
    struct broker *b = broker_start(mode, NULL);
    broker_run(b);
    CHECK(b->ckpts_written >= 3);
    CHECK(b->segments_dropped >= 1);
    CHECK_EQ(b->error, 0);
    /* The delayed jobs pinned segments: compaction must have copied them and emptied some,
     * or the sweep would not test compaction. */
    CHECK(b->compact.jobs_copied > 0);
    CHECK(b->compact.segments_compacted >= 1);
    char why[512] = "";
    int clean = broker_check(b, why, sizeof(why));
    if (clean != 0)
        fprintf(stderr, "clean run (mode %d): %s\n", (int)mode, why);
    CHECK_EQ(clean, 0);
    fprintf(stderr, "mode %d: clean run %" PRIu64 " ops, %u checkpoints, %u segments dropped, "
            "%" PRIu64 " jobs copied by compaction, %" PRIu64 " segments compacted\n",
            (int)mode, fault_backend_op_count(b->io), b->ckpts_written, b->segments_dropped,
            b->compact.jobs_copied, b->compact.segments_compacted);
    broker_free(b);
}

#define SWEEP_MODES 2u
#define SWEEP_CLASSES (sizeof(fault_classes) / sizeof(fault_classes[0]))

/* One (mode, class) of the sweep: N below limit fault an op; runs counts the runs made. */
struct sweep_cell {
    uint64_t limit; /* the first N whose fault never fired (UINT64_MAX: not found yet) */
    uint64_t runs;
};

/*
 * Every N of every class and mode, in SWEEP_STRIDE interleaved passes (N = 1, 1 + stride,
 * ..., then 2, 2 + stride, ...): when the time budget cuts a loaded machine's sweep short,
 * what was run is spread over every class and every part of the workload, not the first
 * classes whole and the rest not at all.
 */
#define SWEEP_STRIDE 8u

static void sweep_pass(struct sweep_cell cells[SWEEP_MODES][SWEEP_CLASSES], uint32_t offset)
{
    static const enum log_sync_mode modes[SWEEP_MODES] = {LOG_SYNC_ALWAYS, LOG_SYNC_INTERVAL};
    for (uint32_t m = 0; m < SWEEP_MODES; m++) {
        for (size_t c = 0; c < SWEEP_CLASSES; c++) {
            if (fault_classes[c].always_only && modes[m] != LOG_SYNC_ALWAYS)
                continue;
            struct sweep_cell *cell = &cells[m][c];
            for (uint64_t n = 1 + offset; n < cell->limit && sweep_in_time();
                 n += SWEEP_STRIDE) {
                cell->runs++;
                if (!sweep_one(&fault_classes[c], modes[m], n))
                    cell->limit = n;
            }
        }
    }
}

static void test_sweep(void)
{
    struct sweep_cell cells[SWEEP_MODES][SWEEP_CLASSES];
    for (uint32_t m = 0; m < SWEEP_MODES; m++)
        for (size_t c = 0; c < SWEEP_CLASSES; c++)
            cells[m][c] = (struct sweep_cell){.limit = UINT64_MAX};
    uint32_t offset = 0;
    for (; offset < SWEEP_STRIDE && sweep_in_time(); offset++)
        sweep_pass(cells, offset);
    bool whole = offset == SWEEP_STRIDE && sweep_in_time();
    for (uint32_t m = 0; m < SWEEP_MODES; m++) {
        for (size_t c = 0; c < SWEEP_CLASSES; c++) {
            const struct sweep_cell *cell = &cells[m][c];
            if (cell->runs == 0)
                continue;
            fprintf(stderr, "  mode %u %-15s %" PRIu64 " runs%s\n", m, fault_classes[c].name,
                    cell->runs, whole ? " (every op)" : " (time budget reached: part of the ops)");
        }
    }
}

int main(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    sweep_deadline_ns = (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec + BROKER_TIME_BUDGET_NS;
    test_ack_after_anchor(MEMFS_IMAGE_ALL, true);
    test_ack_after_anchor(MEMFS_IMAGE_ALL, false);
    test_ack_after_anchor(MEMFS_IMAGE_DURABLE, false);
    test_clean(LOG_SYNC_ALWAYS);
    test_clean(LOG_SYNC_INTERVAL);
    test_sweep();
    if (sweep_failures > 0)
        fprintf(stderr, "%u sweep runs failed\n", sweep_failures);
    return check_exit();
}
