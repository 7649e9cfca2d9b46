/* A queue state on a fake log, for unit tests of what sits on the queue state machine
 * (metrics, snapshots): every record is accepted and numbered 1, 2, 3, ... in segment 1, and
 * times are given in ms on one clock for both wall and monotonic time. */
#ifndef SPOOL_TESTS_QUEUE_FAKE_H
#define SPOOL_TESTS_QUEUE_FAKE_H

#include "queue.h"

static uint64_t fake_seq_next;

static inline int fake_emit(void *ctx, uint8_t type, const void *data, uint32_t len,
                            struct log_pos *pos)
{
    (void)ctx;
    (void)type;
    (void)data;
    (void)len;
    pos->seq = ++fake_seq_next;
    pos->segment_id = 1;
    pos->batch_offset = 4096;
    return 0;
}

static inline struct queue_time at_ms(int64_t ms)
{
    return (struct queue_time){.wall_ns = ms * QUEUE_NS_PER_MS, .mono_ns = ms * QUEUE_NS_PER_MS};
}

/* A fresh state with default settings on the fake log (its seqs start again at 1). */
static inline struct queue_state *state_new(void)
{
    struct queue_config config;
    queue_config_defaults(&config);
    config.emit = fake_emit;
    fake_seq_next = 0;
    return queue_state_create(&config);
}

#endif
