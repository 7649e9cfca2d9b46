/*
 * Test helpers for spool-log: write a data directory the way spoold does (the broker's state
 * machine emitting records into the engine, commits driven until durable), damage copies of
 * it, walk its batches, and run the spool-log binary capturing its output and exit code.
 */
#ifndef SPOOL_TEST_TOOLS_GEN_H
#define SPOOL_TEST_TOOLS_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "queue.h"

struct gen {
    char *dir;
    struct io_backend *io;
    struct log *log;
    struct queue_state *qs;
    uint64_t durable_end;
    int error;
    int64_t now_ms;
    struct queue_time now; /* now_ms on both clocks: the generator never waits */
    uint64_t next_id;
};

/* The standard workload's shape (gen_standard). */
#define GEN_ALPHA_PUTS 60
#define GEN_BETA_PUTS 30
#define GEN_ACKED 15
#define GEN_PUTS (GEN_ALPHA_PUTS + GEN_BETA_PUTS + 1)
#define GEN_LIVE (GEN_PUTS - GEN_ACKED)

/* Deterministic body of job id: two of three compress well (lz4 batches), the third not. */
uint32_t gen_body(uint64_t id, uint8_t *buf, uint32_t cap);
#define GEN_BODY_MAX 2048

/* Open a fresh log in a new temp dir (tag) with small segments. */
void gen_open(struct gen *g, const char *tag, uint64_t segment_size);
uint64_t gen_put(struct gen *g, const char *queue, uint32_t priority, int64_t delay_ms);
struct job *gen_reserve(struct gen *g, const char *queue);
/* Drive the log until everything appended is durable; make it visible to the state. */
void gen_commit(struct gen *g);
/* Write a checkpoint of the state now, dropping the segments it can (or none). */
void gen_checkpoint(struct gen *g);
void gen_checkpoint_keep(struct gen *g);
/* Close the log (the state stays for expectations). */
void gen_close(struct gen *g);
void gen_free(struct gen *g);

/* The standard workload: puts to alpha and beta committed two at a time, 20 reserves from
 * alpha of which 15 acked, 3 released with a 1 h delay, 2 buried; one delayed put to beta. */
void gen_standard(struct gen *g, const char *tag);

/* Is job id live (not done) in the generator's state? */
bool gen_live(struct gen *g, uint64_t id);

/* Files. */
char *gen_copy_dir(const char *dir, const char *tag);
/* Segment ids of dir, ascending; returns the count. */
uint32_t gen_segments(const char *dir, uint64_t *ids, uint32_t max);
struct gen_batch {
    uint64_t offset;
    uint64_t base_seq;
    uint32_t record_count;
    uint32_t total_len;
    uint8_t codec;
};
/* Valid batches of a segment, in order; returns the count. */
uint32_t gen_batches(const char *dir, uint64_t segment_id, struct gen_batch *out, uint32_t max);
char *gen_segment_path(const char *dir, uint64_t segment_id);

/* Run argv (argv[0] a path); stdout captured into *out (malloc'ed, NUL-terminated). Returns
 * the exit code (or -1). */
int gen_run(const char *const *argv, char **out);
/* The same with stderr captured too. */
int gen_run_all(const char *const *argv, char **out);
/* Lines of text containing needle. */
int gen_count_lines(const char *text, const char *needle);

#endif
