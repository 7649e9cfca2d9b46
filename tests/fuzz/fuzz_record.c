/*
 * Fuzz target for the broker's recovery decoders (src/): the job record decoder
 * (record_decode), the checkpoint payload loader (queue_checkpoint_load) and record replay
 * (queue_replay), fed what a damaged or hostile log could hand them after its checksums
 * passed. Nothing may crash, assert, read outside the input (run under ASan) or leak; every
 * input is accepted or rejected with RECORD_EINVAL.
 *
 * Input layout (little-endian):
 *
 *   0  u32 ckpt_len   bytes of checkpoint payload that follow (0: no checkpoint; clamped)
 *   4  ...            the checkpoint payload, then records until the input ends, each
 *                     u8 type, u16 len, len bytes (clamped to what is left)
 *
 * What runs on every input:
 *   1. record_decode on an exact-size heap copy of each record: a decoded record's pointers
 *      (queue, key, body, result, reason, name) lie inside the record;
 *   2. recovery as spoold does it (src/server.c state_rebuild, recover): a fresh queue state,
 *      queue_checkpoint_load when there is a payload (a rejected payload stops recovery there,
 *      as spoold refuses to start), queue_replay of every record (a record that does not
 *      decode is skipped: replay decodes before it touches the state), queue_recover_finish;
 *   3. the round trip: the recovered state's checkpoint (queue_checkpoint_encode) must load
 *      into a fresh state, and recover there to the same totals (ready, delayed, dead, jobs,
 *      queues): a checkpoint spoold writes is one the next start can read.
 *
 * Built two ways: with clang -fsanitize=fuzzer as a libFuzzer target (-Dlibfuzzer=true, see
 * meson.build and run-libfuzzer.sh), and, in every build, with fuzz_replay.c over the seeds
 * gen_record_corpus.c makes from the current encoders plus corpus/record/regressions.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"
#include "record.h"

#define FUZZ_RECORD_PREFIX_SIZE 4u
#define FUZZ_RECORD_HEADER_SIZE 3u /* u8 type, u16 len */
/* "Now" for recovery: a fixed instant (2026-01-01 UTC) so a run reproduces; records carry
 * times on both sides of it. */
#define FUZZ_RECORD_NOW_MS 1767225600000ll
/* The clock pair of that instant (both clocks equal: no step). */
#define FUZZ_RECORD_NOW                                                                            \
    ((struct queue_time){.wall_ns = FUZZ_RECORD_NOW_MS * QUEUE_NS_PER_MS,                          \
                         .mono_ns = FUZZ_RECORD_NOW_MS * QUEUE_NS_PER_MS})
/* Where replayed records claim to live: any valid position will do for the state machine. */
#define FUZZ_RECORD_SEGMENT_ID 1u
#define FUZZ_RECORD_BATCH_OFFSET 4096u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz_record: %s\n", what);
    abort();
}

static uint8_t *fuzz_copy(const uint8_t *p, size_t n)
{
    uint8_t *c = malloc(n > 0 ? n : 1);
    if (c == NULL)
        fuzz_fail("out of memory");
    if (n > 0)
        memcpy(c, p, n);
    return c;
}

/* A field decoded from the record at [base, base + size): it must point inside it. */
static void fuzz_inside(const void *field, size_t len, const uint8_t *base, size_t size)
{
    const uint8_t *f = field;
    if (len == 0)
        return;
    if (f == NULL || f < base || f > base + size || len > (size_t)(base + size - f))
        fuzz_fail("a decoded field points outside its record");
}

static void fuzz_decode_one(uint8_t type, const uint8_t *p, size_t len)
{
    uint8_t *copy = fuzz_copy(p, len);
    struct record rec;
    int rc = record_decode(type, copy, len, &rec);
    if (rc != 0 && rc != RECORD_EINVAL)
        fuzz_fail("record_decode returned an unexpected code");
    if (rc == 0) {
        if (rec.type != type)
            fuzz_fail("a decoded record has another type");
        const struct record_put *put = &rec.u.put;
        switch (type) {
        case RECORD_PUT:
            fuzz_inside(put->queue, put->queue_len, copy, len);
            fuzz_inside(put->key, put->key_len, copy, len);
            fuzz_inside(put->body, put->body_len, copy, len);
            break;
        case RECORD_ACK:
            fuzz_inside(rec.u.ack.result, rec.u.ack.result_len, copy, len);
            break;
        case RECORD_BURY:
            fuzz_inside(rec.u.bury.reason, rec.u.bury.reason_len, copy, len);
            break;
        case RECORD_QUEUE_META:
            fuzz_inside(rec.u.meta.name, rec.u.meta.name_len, copy, len);
            break;
        case RECORD_PURGE:
        case RECORD_DELETE_QUEUE:
            fuzz_inside(rec.u.purge.name, rec.u.purge.name_len, copy, len);
            break;
        default:
            break;
        }
    }
    free(copy);
}

/* Records BURY and the like that recovery emits: accepted at the next seq, as a log would. */
struct fuzz_emit {
    uint64_t seq;
};

static int fuzz_emit_record(void *ctx, uint8_t type, const void *data, uint32_t len,
                            struct log_pos *pos)
{
    struct fuzz_emit *e = ctx;
    struct record rec;
    if (record_decode(type, data, len, &rec) != 0)
        fuzz_fail("recovery emitted a record that does not decode");
    *pos = (struct log_pos){.seq = e->seq++, .segment_id = FUZZ_RECORD_SEGMENT_ID,
                            .batch_offset = FUZZ_RECORD_BATCH_OFFSET};
    return 0;
}

static struct queue_state *fuzz_state(struct fuzz_emit *emit)
{
    struct queue_config config;
    queue_config_defaults(&config);
    config.emit = fuzz_emit_record;
    config.emit_ctx = emit;
    return queue_state_create(&config);
}

/* Walk the records of the input: decode each alone, and replay it into state if not NULL. */
static uint64_t fuzz_records(struct queue_state *state, const uint8_t *p, size_t n)
{
    uint64_t seq = 1;
    while (n >= FUZZ_RECORD_HEADER_SIZE) {
        uint8_t type = p[0];
        size_t len = (size_t)p[1] | (size_t)p[2] << 8;
        p += FUZZ_RECORD_HEADER_SIZE;
        n -= FUZZ_RECORD_HEADER_SIZE;
        len = len < n ? len : n;
        if (state == NULL) {
            fuzz_decode_one(type, p, len);
        } else {
            uint8_t *copy = fuzz_copy(p, len);
            struct log_record lr = {
                .pos = {.seq = seq, .segment_id = FUZZ_RECORD_SEGMENT_ID,
                        .batch_offset = FUZZ_RECORD_BATCH_OFFSET},
                .type = type, .len = (uint32_t)len, .data = copy};
            int rc = queue_replay(state, &lr, FUZZ_RECORD_NOW);
            if (rc != 0 && rc != RECORD_EINVAL)
                fuzz_fail("queue_replay returned an unexpected code");
            free(copy);
        }
        seq++;
        p += len;
        n -= len;
    }
    return seq;
}

/* The recovered state's checkpoint loads into a fresh state that recovers to the same totals. */
static void fuzz_round_trip(struct queue_state *state, uint64_t seq)
{
    uint8_t *payload;
    uint32_t payload_len;
    if (queue_checkpoint_encode(state, &payload, &payload_len) != 0)
        fuzz_fail("the recovered state does not encode a checkpoint");
    struct fuzz_emit emit = {.seq = seq};
    struct queue_state *again = fuzz_state(&emit);
    if (queue_checkpoint_load(again, payload, payload_len, FUZZ_RECORD_NOW) != 0)
        fuzz_fail("a checkpoint of a recovered state does not load");
    queue_recover_finish(again, FUZZ_RECORD_NOW);
    struct queue_totals a, b;
    queue_totals_get(state, &a);
    queue_totals_get(again, &b);
    if (a.queues != b.queues || a.ready != b.ready || a.delayed != b.delayed ||
        a.dead != b.dead || a.jobs != b.jobs || b.reserved != 0 || b.pending != 0) {
        fprintf(stderr,
                "fuzz_record: totals before/after: queues %llu/%llu ready %llu/%llu "
                "delayed %llu/%llu dead %llu/%llu jobs %llu/%llu\n",
                (unsigned long long)a.queues, (unsigned long long)b.queues,
                (unsigned long long)a.ready, (unsigned long long)b.ready,
                (unsigned long long)a.delayed, (unsigned long long)b.delayed,
                (unsigned long long)a.dead, (unsigned long long)b.dead,
                (unsigned long long)a.jobs, (unsigned long long)b.jobs);
        fuzz_fail("a checkpoint does not restore the state it was taken from");
    }
    queue_state_destroy(again);
    free(payload);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < FUZZ_RECORD_PREFIX_SIZE)
        return 0;
    size_t rest = size - FUZZ_RECORD_PREFIX_SIZE;
    uint32_t declared;
    memcpy(&declared, data, sizeof(declared));
    size_t ckpt_len = declared < rest ? declared : rest;
    const uint8_t *ckpt = data + FUZZ_RECORD_PREFIX_SIZE;
    const uint8_t *records = ckpt + ckpt_len;
    size_t records_len = rest - ckpt_len;

    fuzz_records(NULL, records, records_len);

    struct fuzz_emit emit = {.seq = 1};
    struct queue_state *state = fuzz_state(&emit);
    int rc = 0;
    if (ckpt_len > 0) {
        uint8_t *copy = fuzz_copy(ckpt, ckpt_len);
        rc = queue_checkpoint_load(state, copy, (uint32_t)ckpt_len, FUZZ_RECORD_NOW);
        free(copy);
        if (rc != 0 && rc != RECORD_EINVAL)
            fuzz_fail("queue_checkpoint_load returned an unexpected code");
    }
    if (rc == 0) {
        emit.seq = fuzz_records(state, records, records_len);
        queue_recover_finish(state, FUZZ_RECORD_NOW);
        fuzz_round_trip(state, emit.seq);
    }
    queue_state_destroy(state);
    return 0;
}
