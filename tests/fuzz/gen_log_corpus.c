/*
 * Makes the seed corpus of fuzz_log.c from real engine output: a log written through the
 * engine on memfs (small segments so it rolls; batches of compressible and incompressible
 * records, so both codecs appear), a checkpoint, and cut-down variants (a bare segment header,
 * a torn last batch). Each file is the fuzz input layout of fuzz_log.c: flags, checkpoint
 * length, first segment length, then the files.
 *
 * The seeds are not checked in: the build makes them (tests/fuzz/meson.build, target
 * fuzz_log_seeds), so they always carry the current format version. By hand:
 *
 *   build/tests/fuzz/gen_log_corpus /tmp/log_seeds     (creates the directory if missing)
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "log.h"
#include "memfs_backend.h"
#include "segment.h"

#define GEN_SEGMENT_SIZE (32u * 1024)
#define GEN_BATCH_SIZE (8u * 1024)
#define GEN_FIX 0x01u
#define GEN_RECOVER 0x02u
#define GEN_SALVAGE 0x04u
#define GEN_SPARE 0x08u

static void gen_ckpt_done(void *ctx, int error)
{
    *(int *)ctx = error == 0 ? 1 : -1;
}

static struct io_backend *gen_io;

static void gen_drain(struct log *log)
{
    log_tick(log);
    while (!log_idle(log)) {
        if (io_backend_poll(gen_io, true) < 0)
            exit(1);
        log_tick(log);
    }
}

static void gen_append(struct log *log, uint32_t i)
{
    uint8_t body[600];
    if (i % 3 == 0) {
        for (size_t k = 0; k < sizeof(body); k++)
            body[k] = (uint8_t)("compressible "[k % 13]);
    } else {
        uint32_t x = 2463534242u + i;
        for (size_t k = 0; k < sizeof(body); k++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            body[k] = (uint8_t)x;
        }
    }
    uint32_t len = 40 + (i * 97) % (uint32_t)(sizeof(body) - 40);
    struct log_pos pos;
    int rc = log_append(log, (uint8_t)(1 + i % 7), body, len, &pos);
    if (rc == -ENOBUFS) {
        gen_drain(log);
        rc = log_append(log, (uint8_t)(1 + i % 7), body, len, &pos);
    }
    if (rc != 0) {
        fprintf(stderr, "append: %s\n", log_strerror(rc));
        exit(1);
    }
}

static void gen_write(const char *dir, const char *name, uint8_t flags, const uint8_t *ckpt,
                      uint32_t ckpt_len, const uint8_t *seg1, uint32_t seg1_len,
                      const uint8_t *seg2, uint32_t seg2_len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        exit(1);
    }
    uint8_t prefix[9];
    prefix[0] = flags;
    memcpy(prefix + 1, &ckpt_len, 4);
    memcpy(prefix + 5, &seg1_len, 4);
    fwrite(prefix, 1, sizeof(prefix), f);
    if (ckpt_len > 0)
        fwrite(ckpt, 1, ckpt_len, f);
    if (seg1_len > 0)
        fwrite(seg1, 1, seg1_len, f);
    if (seg2_len > 0)
        fwrite(seg2, 1, seg2_len, f);
    if (fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* The written part of a segment: up to the last non-zero 4096-byte block. */
static uint32_t gen_used(const uint8_t *p, uint64_t size)
{
    uint64_t end = size;
    while (end >= 4096) {
        bool zero = true;
        for (uint64_t k = end - 4096; k < end && zero; k++)
            zero = p[k] == 0;
        if (!zero)
            break;
        end -= 4096;
    }
    return (uint32_t)end;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    if (mkdir(argv[1], 0777) != 0 && errno != EEXIST) {
        perror(argv[1]);
        return 1;
    }
    struct memfs *fs = memfs_create();
    gen_io = memfs_io(fs);
    struct log_config config;
    log_config_defaults(&config);
    config.dir = ".";
    config.segment_size_bytes = GEN_SEGMENT_SIZE;
    config.batch_size_bytes_max = GEN_BATCH_SIZE;
    struct log *log;
    int rc = log_open(&config, gen_io, NULL, NULL, NULL, NULL, NULL, &log);
    if (rc != 0) {
        fprintf(stderr, "open: %s\n", log_strerror(rc));
        return 1;
    }
    /* Batches of 1 to 6 records; about 40 records roll past the first 32 KiB segment. */
    for (uint32_t i = 0; i < 48; i++) {
        gen_append(log, i);
        if (i % 6 == 5 || i % 11 == 0)
            gen_drain(log);
    }
    gen_drain(log);
    int ckpt_state = 0;
    static const char payload[] = "queue state payload";
    rc = log_checkpoint(log, log_durable_seq_end(log), payload, sizeof(payload), NULL, 0,
                        gen_ckpt_done, &ckpt_state);
    if (rc != 0) {
        fprintf(stderr, "checkpoint: %s\n", log_strerror(rc));
        return 1;
    }
    gen_drain(log);
    if (ckpt_state != 1 || log_segment_count(log) < 2) {
        fprintf(stderr, "checkpoint failed or no roll (%u segments)\n", log_segment_count(log));
        return 1;
    }
    char n1[SEGMENT_NAME_LEN + 1], n2[SEGMENT_NAME_LEN + 1];
    segment_name(log_segment_id(log, 0), n1);
    segment_name(log_segment_id(log, 1), n2);
    if (log_close(log) != 0)
        return 1;

    const uint8_t *s1, *s2, *ck;
    uint64_t s1_size, s2_size, ck_size;
    if (!memfs_file(fs, n1, &s1, &s1_size) || !memfs_file(fs, n2, &s2, &s2_size) ||
        !memfs_file(fs, CHECKPOINT_NAME, &ck, &ck_size))
        return 1;
    uint32_t u1 = gen_used(s1, s1_size), u2 = gen_used(s2, s2_size);
    const char *dir = argv[1];
    gen_write(dir, "segment_header", 0, NULL, 0, s1, 4096, NULL, 0);
    gen_write(dir, "segment", 0, NULL, 0, s1, u1, NULL, 0);
    gen_write(dir, "segment_fix", GEN_FIX, NULL, 0, s1, u1, NULL, 0);
    gen_write(dir, "segment_recover", GEN_RECOVER, NULL, 0, s1, u1, NULL, 0);
    gen_write(dir, "two_segments_recover", GEN_RECOVER, NULL, 0, s1, u1, s2, u2);
    gen_write(dir, "checkpoint", 0, ck, (uint32_t)ck_size, NULL, 0, NULL, 0);
    gen_write(dir, "checkpoint_fix", GEN_FIX, ck, (uint32_t)ck_size, NULL, 0, NULL, 0);
    gen_write(dir, "log_recover", GEN_RECOVER, ck, (uint32_t)ck_size, s1, u1, s2, u2);
    gen_write(dir, "log_fix_salvage", GEN_FIX | GEN_RECOVER | GEN_SALVAGE, ck,
              (uint32_t)ck_size, s1, u1, s2, u2);
    gen_write(dir, "two_segments_recover_spare", GEN_RECOVER | GEN_SPARE, NULL, 0, s1, u1, s2,
              u2);
    /* A torn tail: the newest segment cut in the middle of its last batch. */
    gen_write(dir, "torn_tail_recover", GEN_RECOVER, NULL, 0, s1, u1, s2, u2 - 100);
    gen_write(dir, "torn_tail_recover_spare", GEN_RECOVER | GEN_SPARE, NULL, 0, s1, u1, s2,
              u2 - 100);
    io_backend_destroy(gen_io);
    printf("wrote 12 corpus files to %s (segments %s %u bytes, %s %u bytes, checkpoint %llu)\n",
           dir, n1, u1, n2, u2, (unsigned long long)ck_size);
    return 0;
}
