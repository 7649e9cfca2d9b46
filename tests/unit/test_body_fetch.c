/* Body fetches over a real log (POSIX backend, temp dir) and a real queue state with a body
 * cache too small to hold anything: bodies come back with their bytes, one read per batch
 * however many jobs of it are wanted, the rest of each batch is cached on the way, a batch that
 * does not verify fails the fetch with the job it concerns, and a job gone meanwhile is no
 * damage. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "body_fetch.h"
#include "body_prefetch.h"
#include "check.h"
#include "log_util.h"
#include "server.h"

#define JOBS 600
#define BODY 200

static struct tlog t;
static struct server srv;
static uint64_t ids[JOBS];

static int emit_to_log(void *ctx, uint8_t type, const void *data, uint32_t len,
                       struct log_pos *pos)
{
    (void)ctx;
    int rc;
    while ((rc = log_append(t.log, type, data, len, pos)) == -ENOBUFS) {
        log_tick(t.log);
        REQUIRE(io_backend_poll(t.io, true) >= 0);
    }
    return rc;
}

static void body_of(uint32_t i, uint8_t *out)
{
    for (uint32_t k = 0; k < BODY; k++)
        out[k] = (uint8_t)(k % 5 == 0 ? i * 7 + k : 'x' + (i % 3));
}

static struct queue_time now(void)
{
    return (struct queue_time){.wall_ns = 1700000000000LL * 1000000, .mono_ns = 1000000000};
}

/* JOBS jobs put in segments of segment_bytes, durable, with a fetcher. */
static void setup_segments(const char *tag, uint64_t segment_bytes, uint64_t cache_bytes)
{
    tlog_init(&t, tag, segment_bytes, 16 * 1024); /* ~70 jobs a batch */
    REQUIRE(tlog_open(&t) == 0);
    struct queue_config qc;
    queue_config_defaults(&qc);
    qc.body_cache_bytes_max = cache_bytes;
    qc.emit = emit_to_log;
    memset(&srv, 0, sizeof(srv));
    srv.log = t.log;
    srv.queues = queue_state_create(&qc);
    uint8_t body[BODY];
    for (uint32_t i = 0; i < JOBS; i++) {
        body_of(i, body);
        struct queue_put_args args = {.queue = "q", .queue_len = 1, .max_attempts = -1,
                                      .body = body, .body_len = BODY};
        bool dup;
        uint64_t seq;
        REQUIRE(queue_put(srv.queues, &args, now(), &ids[i], &dup, &seq) == 0);
    }
    tlog_drain(&t);
    queue_durable(srv.queues, log_durable_seq_end(t.log), now());
    srv.fetcher = body_fetcher_create(&srv);
    REQUIRE(srv.fetcher != NULL);
}

static void setup(const char *tag, uint64_t cache_bytes)
{
    setup_segments(tag, 1024 * 1024, cache_bytes);
}

static void teardown(void)
{
    body_fetcher_close(srv.fetcher);
    tlog_close(&t);
    body_fetcher_destroy(srv.fetcher);
    queue_state_destroy(srv.queues);
    check_rmdir(t.dir);
    free(t.dir);
    free(t.ckpt);
}

struct outcome {
    int calls;
    int error;
    uint32_t error_job;
    uint32_t count;
    uint32_t matched;
    uint64_t leases[LIMIT_RESERVE_MAX_JOBS];
};
static struct outcome out;

static uint32_t index_of(uint64_t id)
{
    for (uint32_t i = 0; i < JOBS; i++)
        if (ids[i] == id)
            return i;
    return UINT32_MAX;
}

static void fetched(struct server *server, struct body_fetch *fetch)
{
    CHECK(server == &srv);
    out.calls++;
    out.error = fetch->error;
    out.error_job = fetch->error_job;
    out.count = fetch->count;
    uint8_t want[BODY];
    for (uint32_t k = 0; k < fetch->count; k++) {
        out.leases[k] = fetch->jobs[k].lease_token;
        uint32_t i = index_of(fetch->jobs[k].id);
        if (fetch->jobs[k].body == NULL || i == UINT32_MAX || fetch->jobs[k].len != BODY)
            continue;
        body_of(i, want);
        out.matched += memcmp(fetch->jobs[k].body, want, BODY) == 0;
    }
}

static void run_until_done(void)
{
    body_fetch_pump(srv.fetcher);
    for (int i = 0; i < 10000 && !body_fetch_idle(srv.fetcher); i++) {
        REQUIRE(io_backend_poll(t.io, true) >= 0);
        body_fetch_pump(srv.fetcher);
    }
    CHECK(body_fetch_idle(srv.fetcher));
}

static uint32_t distinct_batches(struct job *const *jobs, uint32_t count)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < count; i++) {
        bool seen = false;
        for (uint32_t k = 0; k < i && !seen; k++)
            seen = queue_job_pos(jobs[k]).segment_id == queue_job_pos(jobs[i]).segment_id &&
                   queue_job_pos(jobs[k]).batch_offset == queue_job_pos(jobs[i]).batch_offset;
        n += !seen;
    }
    return n;
}

/* 256 reserved jobs over a few batches: one read each, every body right, leases captured. */
static void test_batched(void)
{
    setup("fetch-batched", 1); /* nothing stays */
    struct queue_owner owner;
    queue_owner_init(&owner);
    struct queue_reserver r = {.queues = {queue_find(srv.queues, "q", 1)}, .queue_count = 1,
                               .count_max = 256, .deadline_ns = now().mono_ns, .owner = &owner};
    struct job *jobs[256];
    uint32_t n = queue_reserve(srv.queues, &r, now(), jobs);
    REQUIRE(n == 256);
    REQUIRE(body_fetch_needed(jobs, n));
    uint32_t batches = distinct_batches(jobs, n);
    CHECK(batches > 1 && batches < 20);
    memset(&out, 0, sizeof(out));
    REQUIRE(body_fetch_start(srv.fetcher, jobs, n, fetched, 7, 9, WIRE_OP_RESERVE) == 0);
    CHECK_EQ(out.calls, 0); /* never from inside start */
    run_until_done();
    CHECK_EQ(out.calls, 1);
    CHECK_EQ(out.error, 0);
    CHECK_EQ(out.matched, n);
    for (uint32_t k = 0; k < n; k++)
        CHECK(out.leases[k] == queue_job_x(jobs[k])->lease_token && out.leases[k] != 0);
    struct body_fetch_stats st;
    body_fetch_stats_get(srv.fetcher, &st);
    CHECK_EQ(st.batch_reads, batches);
    /* Two fetches of the same jobs at once share the reads. */
    memset(&out, 0, sizeof(out));
    REQUIRE(body_fetch_start(srv.fetcher, jobs, 10, fetched, 7, 10, WIRE_OP_RESERVE) == 0);
    REQUIRE(body_fetch_start(srv.fetcher, jobs, 10, fetched, 7, 11, WIRE_OP_RESERVE) == 0);
    run_until_done();
    CHECK_EQ(out.calls, 2);
    CHECK_EQ(out.matched, 20);
    uint64_t before = st.batch_reads;
    body_fetch_stats_get(srv.fetcher, &st);
    CHECK_EQ(st.batch_reads, before + distinct_batches(jobs, 10));
    teardown();
}

/* With room in the cache, a read caches the rest of its batch: the next delivery needs none. */
static void test_read_caches_neighbours(void)
{
    setup("fetch-neighbours", 1024 * 1024);
    queue_body_cache_trim(srv.queues, 0); /* as if evicted long ago */
    struct job *first = queue_job_find(srv.queues, ids[0]);
    REQUIRE(first != NULL && queue_job_body_missing(first));
    memset(&out, 0, sizeof(out));
    REQUIRE(body_fetch_start(srv.fetcher, &first, 1, fetched, 1, 1, WIRE_OP_PEEK) == 0);
    run_until_done();
    CHECK_EQ(out.matched, 1);
    CHECK_EQ(out.leases[0], 0); /* not reserved */
    uint32_t cached = 0, same_batch = 0;
    uint8_t want[BODY];
    for (uint32_t i = 0; i < JOBS; i++) {
        struct job *job = queue_job_find(srv.queues, ids[i]);
        if (queue_job_pos(job).segment_id != queue_job_pos(first).segment_id ||
            queue_job_pos(job).batch_offset != queue_job_pos(first).batch_offset)
            continue;
        same_batch++;
        body_of(i, want);
        cached += queue_job_body(job) != NULL && memcmp(queue_job_body(job), want, BODY) == 0;
    }
    CHECK(same_batch > 10);
    CHECK_EQ(cached, same_batch);
    CHECK(!queue_job_body_missing(queue_job_find(srv.queues, ids[1])));
    teardown();
}

/* A batch that no longer verifies fails the fetch, naming the job; the same failure for a job
 * deleted meanwhile is no damage (its body is simply not there). */
static void test_damage_and_gone(void)
{
    setup("fetch-damage", 1);
    int fd = open(tlog_path(&t, 1), O_WRONLY);
    REQUIRE(fd >= 0);
    static const char junk[64] = "not what was written, not what was written, not what was";
    REQUIRE(pwrite(fd, junk, sizeof(junk), 4096 + 512) == (ssize_t)sizeof(junk));
    close(fd);
    struct job *jobs[2] = {queue_job_find(srv.queues, ids[0]), queue_job_find(srv.queues, ids[1])};
    memset(&out, 0, sizeof(out));
    REQUIRE(body_fetch_start(srv.fetcher, &jobs[1], 1, fetched, 1, 1, WIRE_OP_PEEK) == 0);
    REQUIRE(queue_delete(srv.queues, ids[1], now(), NULL) == 0);
    run_until_done();
    CHECK_EQ(out.calls, 1);
    CHECK_EQ(out.error, 0);
    CHECK_EQ(out.matched, 0);
    memset(&out, 0, sizeof(out));
    REQUIRE(body_fetch_start(srv.fetcher, jobs, 1, fetched, 1, 2, WIRE_OP_PEEK) == 0);
    run_until_done();
    CHECK_EQ(out.calls, 1);
    CHECK_EQ(out.error, LOG_ECORRUPT);
    CHECK_EQ(out.error_job, 0);
    struct body_fetch_stats st;
    body_fetch_stats_get(srv.fetcher, &st);
    CHECK_EQ(st.errors, 1);
    teardown();
}

static void drop_done(void *ctx, int error)
{
    *(int *)ctx = error == 0 ? 1 : error;
}

/* A fetch that began before compaction moved its job and a checkpoint dropped the job's old
 * segment: the read of the old batch finds no segment, and the fetch follows the job to its
 * copy (a RELOCATE) instead of failing (which would stop the server). */
static void test_follows_compaction(void)
{
    setup_segments("fetch-moved", 64 * 1024, 1); /* a few segments, nothing cached */
    REQUIRE(log_segment_count(t.log) >= 2);
    struct job *job = queue_job_find(srv.queues, ids[0]);
    REQUIRE(job != NULL && queue_job_body_missing(job) && queue_job_pos(job).segment_id == 1);
    memset(&out, 0, sizeof(out));
    REQUIRE(body_fetch_start(srv.fetcher, &job, 1, fetched, 1, 1, WIRE_OP_PEEK) == 0);
    /* Compaction, before the fetch's read is issued: copy, durable, moved. */
    uint8_t body[BODY];
    body_of(0, body);
    uint8_t buf[512];
    struct log_pos copy;
    REQUIRE(queue_job_relocate(srv.queues, job, body, BODY, buf, sizeof(buf), &copy) == 0);
    tlog_drain(&t);
    REQUIRE(queue_job_move_durable(srv.queues, ids[0], queue_job_pos(job).seq, copy));
    CHECK(queue_job_pos(job).segment_id != 1);
    /* A checkpoint drops segment 1 (the engine drops what it is told). */
    int dropped = 0;
    const uint64_t drop[1] = {1};
    REQUIRE(log_checkpoint(t.log, log_next_seq(t.log), "x", 1, drop, 1, drop_done, &dropped) ==
            0);
    for (int i = 0; i < 10000 && dropped == 0; i++) {
        log_tick(t.log);
        REQUIRE(io_backend_poll(t.io, true) >= 0);
    }
    REQUIRE(dropped == 1);
    run_until_done();
    CHECK_EQ(out.calls, 1);
    CHECK_EQ(out.error, 0);
    CHECK_EQ(out.matched, 1);
    teardown();
}

/* Read-ahead done too: no fetch active and no read-ahead read in flight. */
static void run_until_quiet(void)
{
    struct body_fetch_stats st;
    run_until_done();
    body_fetch_stats_get(srv.fetcher, &st);
    for (int i = 0; i < 10000 && st.prefetch_inflight > 0; i++) {
        REQUIRE(io_backend_poll(t.io, true) >= 0);
        body_fetch_pump(srv.fetcher);
        body_fetch_stats_get(srv.fetcher, &st);
    }
    CHECK_EQ(st.prefetch_inflight, 0);
}

static uint32_t reserve_n(struct queue_owner *owner, uint32_t n, struct job **jobs)
{
    struct queue_reserver r = {.queues = {queue_find(srv.queues, "q", 1)}, .queue_count = 1,
                               .count_max = n, .deadline_ns = now().mono_ns, .owner = owner};
    return queue_reserve(srv.queues, &r, now(), jobs);
}

static uint32_t missing_count(void)
{
    uint32_t missing = 0;
    for (uint32_t i = 0; i < JOBS; i++)
        missing += queue_job_body_missing(queue_job_find(srv.queues, ids[i]));
    return missing;
}

/* After a restart (nothing cached), one reserve that has to read brings the rest of the queue
 * in by read-ahead: every batch read exactly once, every body right, the next reserves read
 * nothing. A peek reads ahead nothing. */
static void test_read_ahead(void)
{
    setup("fetch-ahead", 1024 * 1024); /* half of it holds every body */
    queue_body_cache_trim(srv.queues, 0);
    struct job *all[JOBS];
    for (uint32_t i = 0; i < JOBS; i++)
        all[i] = queue_job_find(srv.queues, ids[i]);
    uint32_t batches = distinct_batches(all, JOBS);
    REQUIRE(batches > 4 && batches <= BODY_PREFETCH_READS_MAX);
    memset(&out, 0, sizeof(out));
    REQUIRE(body_fetch_start(srv.fetcher, &all[300], 1, fetched, 1, 1, WIRE_OP_PEEK) == 0);
    run_until_quiet();
    struct body_fetch_stats st;
    body_fetch_stats_get(srv.fetcher, &st);
    CHECK_EQ(st.prefetch_reads, 0);
    queue_body_cache_trim(srv.queues, 0);
    struct queue_owner owner;
    queue_owner_init(&owner);
    struct job *jobs[10];
    REQUIRE(reserve_n(&owner, 10, jobs) == 10);
    memset(&out, 0, sizeof(out));
    REQUIRE(body_fetch_start(srv.fetcher, jobs, 10, fetched, 1, 2, WIRE_OP_RESERVE) == 0);
    run_until_quiet();
    CHECK_EQ(out.matched, 10);
    body_fetch_stats_get(srv.fetcher, &st);
    CHECK_EQ(st.prefetch_reads, batches - 1); /* the first batch: the reserve's own read */
    CHECK_EQ(st.batch_reads, 1 + batches);    /* and the peek's */
    CHECK_EQ(missing_count(), 0);
    uint8_t want[BODY];
    for (uint32_t i = 0; i < JOBS; i++) {
        body_of(i, want);
        CHECK(memcmp(queue_job_body(queue_job_find(srv.queues, ids[i])), want, BODY) == 0);
    }
    struct job *more[256];
    REQUIRE(reserve_n(&owner, 256, more) == 256);
    CHECK(!body_fetch_needed(more, 256));
    teardown();
}

/* Read-ahead stops at its share of the cache, and goes on from where it stopped once acks
 * have made room. */
static void test_read_ahead_bound(void)
{
    uint64_t cache_max = 80 * 1000; /* ~4 batches of ~70 bodies of ~250 bytes */
    setup("fetch-ahead-bound", cache_max);
    queue_body_cache_trim(srv.queues, 0);
    struct queue_body_stats cache;
    queue_body_stats_get(srv.queues, &cache);
    uint64_t evictions = cache.evictions;
    struct queue_owner owner;
    queue_owner_init(&owner);
    struct job *jobs[256];
    REQUIRE(reserve_n(&owner, 10, jobs) == 10);
    REQUIRE(body_fetch_start(srv.fetcher, jobs, 10, fetched, 1, 1, WIRE_OP_RESERVE) == 0);
    run_until_quiet();
    queue_body_stats_get(srv.queues, &cache);
    CHECK(cache.bytes <= cache_max);
    CHECK_EQ(cache.evictions, evictions); /* read-ahead evicted nothing */
    struct body_fetch_stats st;
    body_fetch_stats_get(srv.fetcher, &st);
    CHECK(st.prefetch_reads >= 1);
    uint32_t missing = missing_count();
    CHECK(missing > JOBS / 2);
    uint64_t reads = st.prefetch_reads;
    body_fetch_pump(srv.fetcher); /* no room yet: nothing more */
    run_until_quiet();
    body_fetch_stats_get(srv.fetcher, &st);
    CHECK_EQ(st.prefetch_reads, reads);
    /* Ack what was delivered and the cached ones after it: room again. */
    uint32_t n = reserve_n(&owner, 150, jobs + 10) + 10;
    for (uint32_t k = 0; k < n; k++)
        REQUIRE(queue_ack(srv.queues, jobs[k]->id, queue_job_x(jobs[k])->lease_token, NULL, 0,
                          now(), NULL) == 0);
    tlog_drain(&t);
    body_fetch_pump(srv.fetcher);
    run_until_quiet();
    body_fetch_stats_get(srv.fetcher, &st);
    CHECK(st.prefetch_reads > reads);
    CHECK(missing_count() < missing);
    queue_body_stats_get(srv.queues, &cache);
    CHECK(cache.bytes <= cache_max);
    teardown();
}

int main(void)
{
    RUN_TEST(test_follows_compaction);
    RUN_TEST(test_read_ahead);
    RUN_TEST(test_read_ahead_bound);
    RUN_TEST(test_batched);
    RUN_TEST(test_read_caches_neighbours);
    RUN_TEST(test_damage_and_gone);
    return check_exit();
}
