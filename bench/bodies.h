/*
 * The job bodies spool-bench puts (--body random|x|json).
 *
 * random (the default): [a-z0-9] from a seeded xorshift, a different window of a pool of
 * several MiB per job, so lz4 finds no repeats within a job nor across the jobs of a batch:
 * the server stores and sends as many bytes as --size says. x: every byte 'x' (what the
 * benchmark put before; lz4 shrinks it to almost nothing: a best case, not a workload).
 * json: JSON-like job payloads, keys repeated and values varying per job (what compression
 * is for).
 *
 * All bodies are generated at setup; per put the generator only hands out a window and writes
 * the send stamp (e2e's deliver latency) into it: no allocation, a few bytes written per job.
 */
#ifndef SPOOL_BENCH_BODIES_H
#define SPOOL_BENCH_BODIES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum bench_body_kind { BENCH_BODY_RANDOM = 0, BENCH_BODY_X, BENCH_BODY_JSON };

struct bench_bodies {
    enum bench_body_kind kind;
    uint32_t size;  /* bytes per body */
    uint32_t batch; /* bodies per window at most */
    uint32_t slots; /* bodies in the pool */
    uint32_t next;  /* the next window's first body */
    uint8_t *pool;  /* slots * size bytes (+1) */
};

/* Name <-> kind; bench_body_parse returns false for an unknown name. */
const char *bench_body_name(enum bench_body_kind kind);
bool bench_body_parse(const char *name, enum bench_body_kind *kind);

/* Generate the pool for windows of up to batch bodies of size bytes. 0 or -ENOMEM. */
int bench_bodies_init(struct bench_bodies *b, enum bench_body_kind kind, uint32_t size,
                      uint32_t batch);
void bench_bodies_free(struct bench_bodies *b);

/* count (<= batch) consecutive bodies, back to back; a different window each call (x: the
 * same). Valid until the next call; the caller may stamp them. */
uint8_t *bench_bodies_window(struct bench_bodies *b, uint32_t count);

/* Write / read a send time in a body of size bytes. The stamp keeps a json body JSON (a
 * leading "ts" field of hex digits); read returns false when the body is too short. */
void bench_bodies_stamp(const struct bench_bodies *b, uint8_t *body, int64_t t_ns);
bool bench_bodies_read_stamp(enum bench_body_kind kind, const uint8_t *body, size_t len,
                             int64_t *t_ns);

#endif
