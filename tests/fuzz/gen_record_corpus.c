/*
 * Makes the seed corpus of fuzz_record.c from the broker's own encoders: a history of every
 * record type (queue settings, puts with and without key, delay and ttl, a lease, an ack, a
 * release, a touch, a bury, a kick, deletes, a purge), the checkpoint payload of the state that
 * history recovers to (queue_checkpoint_encode), the two together, and each record alone.
 * Each file is the input layout of fuzz_record.c: u32 checkpoint length, the payload, then
 * records as u8 type, u16 len, bytes.
 *
 * The seeds are not checked in: the build makes them (tests/fuzz/meson.build, target
 * fuzz_record_seeds), so they always carry the current record and checkpoint versions. By hand:
 *
 *   build/tests/fuzz/gen_record_corpus /tmp/record_seeds   (creates the directory if missing)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "queue.h"
#include "record.h"

/* The history below: 21 records of at most a few hundred bytes each. */
#define GEN_RECORDS_MAX 32
#define GEN_RECORD_SIZE_MAX 512
/* Recovery's "now" in fuzz_record.c (2026-01-01 UTC): delays and ttls are set around it. */
#define GEN_NOW_MS 1767225600000ll
#define GEN_NOW                                                                                    \
    ((struct queue_time){.wall_ns = GEN_NOW_MS * QUEUE_NS_PER_MS, .mono_ns = GEN_NOW_MS * QUEUE_NS_PER_MS})

struct gen_record {
    uint8_t type;
    uint16_t len;
    uint8_t data[GEN_RECORD_SIZE_MAX];
};

struct gen_history {
    struct gen_record recs[GEN_RECORDS_MAX];
    uint32_t count;
};

static struct gen_record *gen_next(struct gen_history *h, uint8_t type)
{
    if (h->count == GEN_RECORDS_MAX) {
        fprintf(stderr, "gen_record_corpus: more than %d records\n", GEN_RECORDS_MAX);
        exit(1);
    }
    struct gen_record *r = &h->recs[h->count++];
    r->type = type;
    return r;
}

static void gen_put(struct gen_history *h, uint64_t id, const char *key, int64_t run_at_ms,
                    int64_t expires_at_ms, uint32_t max_attempts)
{
    static const char body[] = "{\"to\":\"user@example.com\",\"template\":\"welcome\"}";
    struct record_put put = {
        .id = id, .priority = 100 + (uint32_t)id, .max_attempts = max_attempts,
        .ttr_ms = 30000, .created_ms = GEN_NOW_MS - 60000, .run_at_ms = run_at_ms,
        .expires_at_ms = expires_at_ms, .queue = "email", .queue_len = 5, .key = key,
        .key_len = key != NULL ? (uint32_t)strlen(key) : 0, .body = body,
        .body_len = (uint32_t)sizeof(body) - 1};
    struct gen_record *r = gen_next(h, RECORD_PUT);
    if (record_put_size(&put) > GEN_RECORD_SIZE_MAX)
        exit(1);
    r->len = (uint16_t)record_put_encode(&put, r->data);
}

static void gen_meta(struct gen_history *h, const char *name, bool paused)
{
    struct record_meta meta = {.name = name, .name_len = (uint32_t)strlen(name),
                               .paused = paused, .default_max_attempts = 5,
                               .default_ttr_ms = 60000, .max_jobs = 1000, .max_bytes = 1 << 20};
    struct gen_record *r = gen_next(h, RECORD_QUEUE_META);
    if (record_meta_size(&meta) > GEN_RECORD_SIZE_MAX)
        exit(1);
    r->len = (uint16_t)record_meta_encode(&meta, r->data);
}

/* Every record type, in an order recovery could meet it. */
static void gen_history_make(struct gen_history *h)
{
    gen_meta(h, "email", false);
    gen_meta(h, "reports", true);
    gen_put(h, 1, NULL, 0, 0, 10);
    gen_put(h, 2, "order-42", 0, 0, 10);
    gen_put(h, 3, NULL, 0, 0, 10);
    gen_put(h, 4, NULL, 0, GEN_NOW_MS - 1, 10);       /* its ttl already ran out */
    gen_put(h, 5, NULL, 0, 0, 1);                     /* one attempt, leased: dies at recovery */
    gen_put(h, 6, NULL, GEN_NOW_MS + 3600000, 0, 10); /* delayed past now */
    struct gen_record *r = gen_next(h, RECORD_LEASE);
    r->len = (uint16_t)record_lease_encode(1, 1, r->data);
    r = gen_next(h, RECORD_ACK);
    r->len = (uint16_t)record_ack_encode(1, GEN_NOW_MS - 30000, "sent", 4, r->data);
    r = gen_next(h, RECORD_LEASE);
    r->len = (uint16_t)record_lease_encode(2, 1, r->data);
    r = gen_next(h, RECORD_TOUCH);
    r->len = (uint16_t)record_touch_encode(2, GEN_NOW_MS + 30000, r->data);
    r = gen_next(h, RECORD_RELEASE);
    r->len = (uint16_t)record_release_encode(2, 7, GEN_NOW_MS + 1000, r->data);
    r = gen_next(h, RECORD_LEASE);
    r->len = (uint16_t)record_lease_encode(5, 1, r->data);
    r = gen_next(h, RECORD_LEASE);
    r->len = (uint16_t)record_lease_encode(3, 1, r->data);
    r = gen_next(h, RECORD_BURY);
    r->len = (uint16_t)record_bury_encode(3, GEN_NOW_MS - 20000, "smtp: 550 no such user", 22, r->data);
    r = gen_next(h, RECORD_KICK);
    r->len = (uint16_t)record_kick_encode(3, r->data);
    r = gen_next(h, RECORD_DELETE);
    r->len = (uint16_t)record_delete_encode(4, RECORD_DELETE_TTL, r->data);
    r = gen_next(h, RECORD_DELETE);
    r->len = (uint16_t)record_delete_encode(2, RECORD_DELETE_CLIENT, r->data);
    r = gen_next(h, RECORD_PURGE);
    r->len = (uint16_t)record_purge_encode("reports", 7, r->data);
    /* Compaction's copies: job 6 (delayed) moved, job 7 whose PUT is gone rebuilt dead. */
    static const char copy_body[] = "{\"to\":\"user@example.com\",\"template\":\"welcome\"}";
    struct record_relocate rel = {
        .put = {.id = 6, .priority = 10, .max_attempts = 10, .ttr_ms = 30000,
                .created_ms = GEN_NOW_MS - 60000, .run_at_ms = GEN_NOW_MS + 3600000,
                .queue = "email", .queue_len = 5, .body = copy_body,
                .body_len = (uint32_t)sizeof(copy_body) - 1},
        .state = RECORD_STATE_DELAYED,
    };
    r = gen_next(h, RECORD_RELOCATE);
    r->len = (uint16_t)record_relocate_encode(&rel, r->data);
    rel.put.id = 7;
    rel.put.run_at_ms = 0;
    rel.state = RECORD_STATE_DEAD;
    rel.attempts = 3;
    rel.settled_ms = GEN_NOW_MS - 1000;
    rel.reason = "poison";
    rel.reason_len = 6;
    r = gen_next(h, RECORD_RELOCATE);
    r->len = (uint16_t)record_relocate_encode(&rel, r->data);
}

static void gen_file_write(FILE *f, const void *p, size_t n)
{
    if (n > 0 && fwrite(p, 1, n, f) != n)
        exit(1);
}

/* One seed: the checkpoint payload (may be empty), then records [first, end) of h. */
static void gen_write(const char *dir, const char *name, const uint8_t *ckpt, uint32_t ckpt_len,
                      const struct gen_history *h, uint32_t first, uint32_t end)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        exit(1);
    }
    gen_file_write(f, &ckpt_len, sizeof(ckpt_len));
    gen_file_write(f, ckpt, ckpt_len);
    for (uint32_t i = first; i < end; i++) {
        const struct gen_record *r = &h->recs[i];
        uint8_t head[3] = {r->type, (uint8_t)r->len, (uint8_t)(r->len >> 8)};
        gen_file_write(f, head, sizeof(head));
        gen_file_write(f, r->data, r->len);
    }
    if (fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static int gen_emit(void *ctx, uint8_t type, const void *data, uint32_t len,
                    struct log_pos *pos)
{
    (void)type, (void)data, (void)len;
    uint64_t *seq = ctx;
    *pos = (struct log_pos){.seq = (*seq)++, .segment_id = 1, .batch_offset = 4096};
    return 0;
}

/* The checkpoint payload of the state records [0, end) of h recover to. */
static uint8_t *gen_checkpoint(const struct gen_history *h, uint32_t end, uint32_t *len)
{
    uint64_t seq = 1000;
    struct queue_config config;
    queue_config_defaults(&config);
    config.emit = gen_emit;
    config.emit_ctx = &seq;
    struct queue_state *state = queue_state_create(&config);
    for (uint32_t i = 0; i < end; i++) {
        struct log_record lr = {.pos = {.seq = i + 1, .segment_id = 1, .batch_offset = 4096},
                                .type = h->recs[i].type, .len = h->recs[i].len,
                                .data = h->recs[i].data};
        if (queue_replay(state, &lr, GEN_NOW) != 0) {
            fprintf(stderr, "gen_record_corpus: record %u of the history does not replay\n", i);
            exit(1);
        }
    }
    queue_recover_finish(state, GEN_NOW);
    uint8_t *payload;
    if (queue_checkpoint_encode(state, &payload, len) != 0)
        exit(1);
    queue_state_destroy(state);
    return payload;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        perror(dir);
        return 1;
    }
    static struct gen_history h;
    gen_history_make(&h);
    uint32_t half = h.count / 2;
    uint32_t len_all, len_half;
    uint8_t *ckpt_all = gen_checkpoint(&h, h.count, &len_all);
    uint8_t *ckpt_half = gen_checkpoint(&h, half, &len_half);
    gen_write(dir, "history", NULL, 0, &h, 0, h.count);
    gen_write(dir, "checkpoint", ckpt_all, len_all, &h, 0, 0);
    gen_write(dir, "checkpoint_then_records", ckpt_half, len_half, &h, half, h.count);
    for (uint32_t i = 0; i < h.count; i++) {
        char name[64];
        snprintf(name, sizeof(name), "record_%02u_%s", i, record_type_name(h.recs[i].type));
        gen_write(dir, name, NULL, 0, &h, i, i + 1);
    }
    free(ckpt_all);
    free(ckpt_half);
    printf("wrote %u corpus files to %s (checkpoint %u bytes)\n", 3 + h.count, dir, len_all);
    return 0;
}
