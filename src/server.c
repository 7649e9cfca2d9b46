/*
 * spoold's lifecycle and event loop (structures and invariants in server.h).
 *
 * Start: set up the ring (a clear error if io_uring is unavailable), open the log on the same
 * ring (recovery), rebuild the queue state (checkpoint payload, then the records after it),
 * read back the bodies the checkpoint left on disk, bind, arm accept and the signalfd read,
 * then announce the address (log line and --ready-file).
 *
 * One loop turn: submit and wait for completions (bounded by the nearest timer: queue
 * deadlines, the log's interval sync, the checkpoint period); dispatch every CQE through its
 * struct io_completion; apply a new durable watermark (release held replies, make puts
 * visible, re-run stalled connections); run queue timers; run connections with input (a
 * bounded number of frames each); tick the log (starts the next group commit); start a
 * checkpoint when one is due and the log is idle; free closed connections.
 *
 * A checkpoint never pauses the server: its anchor is the next seq of the turn it begins in,
 * the queue state is walked a bounded number of jobs per turn while requests go on (jobs that
 * change before the walk reaches them are captured as they were: queue_checkpoint.c), and the
 * payload goes to the log once the walk is complete and its anchor durable.
 *
 * Shutdown (SIGTERM/SIGINT through the signalfd): stop accepting and reading, let in-flight
 * commits land and their replies go out, write a checkpoint, close the log, exit 0.
 */
#include "body_fetch.h"
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "observe.h"
#include "retention.h"
#include "slog.h"

/* Shutdown waits this long for in-flight commits and output before giving up on output. */
#define SERVER_DRAIN_MS 5000
/* After a failed accept (EMFILE, ENFILE, ENOMEM) wait this long before accepting again:
 * long enough not to spin, short enough that clients barely notice once fds free up. */
#define SERVER_ACCEPT_RETRY_MS 100
/* How often connections are checked for frames stalled past --frame-timeout: the timeout's
 * precision, and one wake-up per period while clients are connected. */
#define SERVER_SWEEP_MS 250
/* Jobs that went dead or expired are logged as counts once per this period (when there were
 * any): an operator sees a poison-job storm in the log without a line per job. */
#define SERVER_JOB_REPORT_MS 10000
/* While disk space is low and a segment could be dropped, a checkpoint starts at once rather
 * than after --checkpoint-interval: the acks that freed the segment are themselves filling
 * the last segment of headroom (a commit takes at least 4 KiB of it). After a failed one, the
 * next waits this long, so that a disk too full even for the checkpoint is not hammered. */
#define SERVER_SPACE_CHECKPOINT_RETRY_MS 200

int64_t server_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct queue_time server_now(void)
{
    struct timespec wall;
    /* The wall clock first: a run-at converted with the pair is then late, never early. */
    clock_gettime(CLOCK_REALTIME, &wall);
    int64_t wall_ns = (int64_t)wall.tv_sec * 1000000000 + wall.tv_nsec;
    return (struct queue_time){.wall_ns = wall_ns, .mono_ns = mono_ns()};
}

int server_emit(void *ctx, uint8_t type, const void *data, uint32_t len, struct log_pos *pos)
{
    struct server *server = ctx;
    if (server->log_full)
        return -ENOBUFS; /* keep record order: nothing jumps a refused request */
    /* Nobody waits for a LEASE (queue.h): it rides with the next commit instead of making one
     * per delivery, which would double the commits of a put-reserve-ack cycle. */
    int rc = type == RECORD_LEASE ? log_append_lazy(server->log, type, data, len, pos)
                                  : log_append(server->log, type, data, len, pos);
    if (rc == -ENOBUFS) {
        server->log_full = true;
        return rc;
    }
    if (rc != 0)
        return rc;
    uint64_t footprint = log_record_footprint(len);
    server->log_bytes += footprint;
    server->checkpoint_bytes += footprint;
    return 0;
}

/* One group commit landed: its latency and size for /metrics. */
static void on_commit(void *ctx, uint32_t records, uint32_t bytes, int64_t duration_ns)
{
    struct server *server = ctx;
    metrics_hist_observe(&server->metrics.commit_us, &metrics_commit_us,
                         duration_ns > 0 ? (uint64_t)duration_ns / 1000 : 0);
    metrics_hist_observe(&server->metrics.commit_records, &metrics_commit_records, records);
    server->metrics.commit_bytes += bytes;
}

static void on_durable(void *ctx, uint64_t durable_seq_end, enum log_durability level, int error)
{
    struct server *server = ctx;
    if (error != 0) {
        slog_error("msg=\"log poisoned: a write or fdatasync failed; restart to recover\" "
                   "error=\"%s\"", log_strerror(error));
        server->fatal_error = error;
        return;
    }
    /* Applied in the loop, outside the engine's completion. Each reply's level is computed
     * from its own horizon when it is released (handlers.c), not from this report's. */
    durability_marks_report(&server->durable, durable_seq_end, level);
    server->commits++;
}

/* ---- startup: ring, buffers, socket ---- */

/* Deliver every completion the ring holds: each CQE's user_data is a struct io_completion
 * (network, disk and timers alike). */
static void ring_dispatch_ready(struct server *server)
{
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&server->ring, head, cqe)
    {
        io_uring_dispatch(cqe);
        seen++;
    }
    io_uring_cq_advance(&server->ring, seen);
}

/* Completion work the kernel queues for the loop (a socket's recv or send finishing) waits
 * for the loop's next entry into the kernel instead of interrupting it with an IPI: the loop
 * enters at least once per turn anyway. TASKRUN_FLAG tells liburing such work is pending, so a
 * peek without a wait enters to run it. Unlike DEFER_TASKRUN (tried and reverted), the work
 * still runs at every entry, not only in waits. A/B in one run, 2-core test machine, 2026-12-05:
 * produce 100 B one job per PUT 1.07x jobs/s (median of 4 pairs) with ~6% less server CPU;
 * e2e 100 B 1.06x (median of 10 pairs). Kernels before 5.19 get the ring without them. */
#define SERVER_RING_FLAGS (IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG)

uint8_t *server_recv_buffer(const struct server *server, uint16_t bid)
{
    SPOOL_ASSERT(bid < SERVER_RECV_BUFFERS);
    return server->buf_base + (size_t)bid * SERVER_RECV_BUFFER_SIZE;
}

void server_recv_buffer_return(struct server *server, uint16_t bid)
{
    io_uring_buf_ring_add(server->buf_ring, server_recv_buffer(server, bid),
                          SERVER_RECV_BUFFER_SIZE, bid,
                          io_uring_buf_ring_mask(SERVER_RECV_BUFFERS), 0);
    io_uring_buf_ring_advance(server->buf_ring, 1);
}

/* The probe's completions, a late one included: the buffer goes back, nothing else. */
static void recv_probe_complete(struct io_completion *completion, const struct io_uring_cqe *cqe)
{
    struct server *server = (struct server *)(void *)((char *)completion -
                                                      offsetof(struct server,
                                                               recv_probe_completion));
    if (cqe->flags & IORING_CQE_F_BUFFER)
        server_recv_buffer_return(server, (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
}

/* Does this kernel end a multishot receive at a byte limit (SERVER_RECV_CREDIT)? Two bytes
 * against a limit of one must come back in one final completion (no IORING_CQE_F_MORE).
 * Kernels without the limit refuse the field (-EINVAL), or the multishot receive itself, or
 * (were one to ignore the field) carry on: all of those get one single-shot recv per read.
 * liburing 2.3's header names the field file_index; the kernel's later one, optlen. */
static bool recv_limit_works(struct server *server)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return false;
    server->recv_probe_completion.complete = recv_probe_complete;
    bool works = false;
    if (write(sv[1], "ok", 2) == 2) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&server->ring);
        io_uring_prep_recv_multishot(sqe, sv[0], NULL, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = SERVER_RECV_GROUP;
        sqe->file_index = 1;
        io_uring_sqe_set_data(sqe, &server->recv_probe_completion);
        uint32_t seen = 0;
        for (;;) {
            struct io_uring_cqe *cqe = NULL;
            struct __kernel_timespec ts = {.tv_sec = 1};
            if (io_uring_submit_and_wait_timeout(&server->ring, &cqe, 1, &ts, NULL) < 0 ||
                cqe == NULL)
                break; /* no answer in a second: single receives (a late one is harmless) */
            bool ours = io_uring_cqe_get_data(cqe) == &server->recv_probe_completion;
            bool final = !(cqe->flags & IORING_CQE_F_MORE);
            if (ours && seen++ == 0)
                works = cqe->res == 2 && final;
            io_uring_dispatch(cqe);
            io_uring_cqe_seen(&server->ring, cqe);
            if (ours && final)
                break;
            if (ours)
                (void)shutdown(sv[1], SHUT_WR); /* it carried on: end of stream stops it */
        }
    }
    close(sv[0]);
    close(sv[1]);
    return works;
}

static int ring_setup(struct server *server)
{
    int rc = io_uring_queue_init(SERVER_RING_ENTRIES, &server->ring, SERVER_RING_FLAGS);
    if (rc == -EINVAL) /* before 5.19 */
        rc = io_uring_queue_init(SERVER_RING_ENTRIES, &server->ring, 0);
    if (rc < 0) {
        slog_error("msg=\"io_uring is unavailable: spoold needs Linux 6.x with io_uring "
                   "enabled (not blocked by seccomp or kernel.io_uring_disabled)\" error=\"%s\"",
                   strerror(-rc));
        return rc;
    }
    size_t ring_bytes = SERVER_RECV_BUFFERS * sizeof(struct io_uring_buf);
    void *ring_mem = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE,
                          -1, 0);
    server->buf_base = malloc((size_t)SERVER_RECV_BUFFERS * SERVER_RECV_BUFFER_SIZE);
    if (ring_mem == MAP_FAILED || server->buf_base == NULL)
        return -ENOMEM;
    server->buf_ring = ring_mem;
    struct io_uring_buf_reg reg = {.ring_addr = (uintptr_t)ring_mem,
                                   .ring_entries = SERVER_RECV_BUFFERS,
                                   .bgid = SERVER_RECV_GROUP};
    rc = io_uring_register_buf_ring(&server->ring, &reg, 0);
    if (rc < 0) {
        slog_error("msg=\"io_uring buffer rings are unavailable (kernel >= 5.19 needed)\" "
                   "error=\"%s\"", strerror(-rc));
        return rc;
    }
    io_uring_buf_ring_init(server->buf_ring);
    for (int i = 0; i < SERVER_RECV_BUFFERS; i++)
        io_uring_buf_ring_add(server->buf_ring, server_recv_buffer(server, (uint16_t)i),
                              SERVER_RECV_BUFFER_SIZE, (unsigned short)i,
                              io_uring_buf_ring_mask(SERVER_RECV_BUFFERS), i);
    io_uring_buf_ring_advance(server->buf_ring, SERVER_RECV_BUFFERS);
    server->recv_multishot = server->config.recv_multishot && recv_limit_works(server);
    return 0;
}

int server_listen(struct server *server, const char *host, uint16_t port_number, int *fd_out,
                  char *addr, size_t addr_len)
{
    (void)server;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", port_number);
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        slog_error("msg=\"cannot resolve listen address\" host=%s error=\"%s\"", host,
                   gai_strerror(rc));
        return -EINVAL;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 511) != 0) {
        rc = -errno;
        slog_error("msg=\"cannot listen\" host=%s port=%s error=\"%s\"", host, port,
                   strerror(-rc));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return rc;
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char bound_host[INET6_ADDRSTRLEN] = "?";
    uint16_t bound = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &in->sin_addr, bound_host, sizeof(bound_host));
            bound = ntohs(in->sin_port);
        } else {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &in6->sin6_addr, bound_host, sizeof(bound_host));
            bound = ntohs(in6->sin6_port);
        }
    }
    snprintf(addr, addr_len, ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", bound_host,
             bound);
    *fd_out = fd;
    return 0;
}

/* Write HOST:PORT to the ready file whole: a temp file renamed over it. */
static int ready_file_write(const char *path, const char *addr, const char *beanstalk_addr)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return -errno;
    int ok = fprintf(f, "%s\n", addr) > 0;
    if (beanstalk_addr[0] != '\0') /* a second line: where beanstalkd clients connect */
        ok &= fprintf(f, "beanstalk %s\n", beanstalk_addr) > 0;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0)
        return -EIO;
    return 0;
}

/* ---- startup: recovery ---- */

/* log_open hands records over before it hands the checkpoint over, and the records apply on
 * top of the checkpoint: keep copies until both are here. Bounded by the log written since
 * the last checkpoint (64 MiB or 60 s by default). */
struct replay_buffer {
    struct log_record *records;
    uint8_t **data;
    size_t count;
    size_t capacity;
};

static int replay_collect(void *ctx, const struct log_record *record)
{
    struct replay_buffer *rb = ctx;
    if (rb->count == rb->capacity) {
        size_t capacity = rb->capacity == 0 ? 1024 : rb->capacity * 2;
        struct log_record *records = realloc(rb->records, capacity * sizeof(*records));
        uint8_t **data = realloc(rb->data, capacity * sizeof(*data));
        if (records != NULL)
            rb->records = records;
        if (data != NULL)
            rb->data = data;
        if (records == NULL || data == NULL)
            return -ENOMEM;
        rb->capacity = capacity;
    }
    uint8_t *copy = malloc(record->len == 0 ? 1 : record->len);
    if (copy == NULL)
        return -ENOMEM;
    memcpy(copy, record->data, record->len);
    rb->records[rb->count] = *record;
    rb->records[rb->count].data = copy;
    rb->data[rb->count] = copy;
    rb->count++;
    return 0;
}

static void replay_buffer_free(struct replay_buffer *rb)
{
    for (size_t i = 0; i < rb->count; i++)
        free(rb->data[i]);
    free(rb->records);
    free(rb->data);
}

/* The job index of the log does not fit in memory: say so (a restart would fail the same). */
static int rebuild_no_memory(struct server *server)
{
    struct queue_totals totals;
    queue_totals_get(server->queues, &totals);
    slog_error("msg=\"out of memory loading the job index: the log holds more jobs than this "
               "process may allocate; give spoold more memory (or a higher limit) and start it "
               "again; the log is intact\" jobs_loaded=%llu",
               (unsigned long long)totals.jobs);
    return -ENOMEM;
}

static int state_rebuild(struct server *server, struct replay_buffer *rb, void *checkpoint,
                         uint32_t checkpoint_len)
{
    struct queue_time now = server_now();
    if (checkpoint != NULL) {
        int rc = queue_checkpoint_load(server->queues, checkpoint, checkpoint_len, now);
        if (rc == QUEUE_ENOMEM)
            return rebuild_no_memory(server);
        if (rc != 0) {
            slog_error("msg=\"checkpoint payload does not decode\" bytes=%u", checkpoint_len);
            return rc;
        }
    }
    for (size_t i = 0; i < rb->count; i++) {
        int rc = queue_replay(server->queues, &rb->records[i], now);
        if (rc == QUEUE_ENOMEM)
            return rebuild_no_memory(server);
        if (rc != 0) {
            const struct log_record *bad = &rb->records[i];
            /* A version above what this build writes comes from a newer spoold. */
            slog_error("msg=\"log record does not decode\" seq=%llu type=%u version=%u "
                       "known_version=%u",
                       (unsigned long long)bad->pos.seq, bad->type,
                       bad->len > 0 ? ((const uint8_t *)bad->data)[0] : 0u,
                       record_version(bad->type));
            return rc;
        }
    }
    return 0;
}

static int recover(struct server *server)
{
    int rc = io_uring_backend_create(&server->ring, server->config.data_dir, true,
                                     &server->backend);
    if (rc != 0) {
        slog_error("msg=\"cannot open data directory\" dir=%s error=\"%s\"",
                   server->config.data_dir, strerror(-rc));
        return rc;
    }
    struct log_config lc;
    log_config_defaults(&lc);
    lc.dir = server->config.data_dir;
    lc.segment_size_bytes = server->config.segment_size_bytes;
    lc.batch_size_bytes_max = config_batch_size(&server->config);
    lc.sync_mode = server->config.sync_mode;
    lc.sync_interval_ms = server->config.sync_interval_ms;
    /* The next segment's space stays reserved, and log_space_low() says when it cannot be:
     * puts are then refused at admission (handlers.c) while everything else lands in the
     * current segment and the spare, so acks and deletes never meet a full disk. */
    lc.spare_segment = true;
    lc.commits_in_flight = (uint32_t)server->config.commits_in_flight;
    lc.direct_io = server->config.direct_io;
    lc.on_durable = on_durable;
    lc.on_commit = on_commit;
    lc.ctx = server;
    struct replay_buffer rb = {0};
    void *checkpoint = NULL;
    uint32_t checkpoint_len = 0;
    struct log_recovery_report report;
    memset(&report, 0, sizeof(report));
    rc = log_open(&lc, server->backend, replay_collect, &rb, &checkpoint, &checkpoint_len,
                  &report, &server->log);
    if (rc != 0) {
        slog_error("msg=\"log recovery failed\" dir=%s error=\"%s\" detail=\"%s\"",
                   server->config.data_dir, log_strerror(rc), report.message);
        replay_buffer_free(&rb);
        return rc;
    }
    if (report.torn_tail)
        slog_warn("msg=\"torn tail cut\" segment=%llu offset=%llu bytes=%llu",
                  (unsigned long long)report.torn_segment_id,
                  (unsigned long long)report.torn_offset, (unsigned long long)report.torn_bytes);
    rc = state_rebuild(server, &rb, checkpoint, checkpoint_len);
    size_t replayed = rb.count;
    /* Replayed log counts toward the next checkpoint as if it had just been written: without
     * it, a SIGTERM after a start that only replayed wrote no checkpoint (nothing appended)
     * and every later start replayed the same records again. */
    for (size_t i = 0; i < rb.count; i++)
        server->checkpoint_bytes += log_record_footprint(rb.records[i].len);
    replay_buffer_free(&rb);
    free(checkpoint);
    server->checkpoint_payload_bytes = checkpoint_len; /* sizes the checkpoint reserve */
    if (rc != 0)
        return rc;
    durability_marks_init(&server->durable, log_durable_seq_end(server->log));
    queue_set_emit(server->queues, server_emit, server);
    server->now = server_now(); /* until the loop's first turn reads the clocks again */
    queue_recover_finish(server->queues, server->now);
    queue_ids_floor(server->queues, queue_time_wall_ms(server->now)); /* never an id a lost tail held */
    /* No body is read here: a checkpoint's jobs, and replayed ones the body cache had no
     * room for, are read back in batches when they are delivered (body_fetch.h). */
    server->fetcher = body_fetcher_create(server);
    if (server->fetcher == NULL)
        return -ENOMEM;
    server->compactor =
        compactor_create(server->log, server->queues, server->config.segment_size_bytes,
                         server->config.compact_percent);
    if (server->compactor == NULL)
        return -ENOMEM;
    struct queue_totals totals;
    queue_totals_get(server->queues, &totals);
    slog_info("msg=recovered segments=%u records_replayed=%zu checkpoint=%s jobs=%llu "
              "queues=%llu next_seq=%llu next_id=%llu",
              report.segment_count, replayed, checkpoint_len > 0 ? "yes" : "no",
              (unsigned long long)totals.jobs, (unsigned long long)totals.queues,
              (unsigned long long)log_next_seq(server->log),
              (unsigned long long)queue_next_id(server->queues));
    return 0;
}

/* ---- accept and signals ---- */

struct io_uring_sqe *server_sqe(struct server *server)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&server->ring);
    if (sqe == NULL) {
        (void)io_uring_submit(&server->ring);
        sqe = io_uring_get_sqe(&server->ring);
    }
    SPOOL_ASSERT(sqe != NULL);
    return sqe;
}

static void accept_arm(struct server *server)
{
    if (server->accept_armed || server->stopping || server->listen_fd < 0)
        return;
    if (server->accept_retry_ms != 0 && server_now_ms() < server->accept_retry_ms)
        return;
    server->accept_retry_ms = 0;
    struct io_uring_sqe *sqe = server_sqe(server);
    io_uring_prep_multishot_accept(sqe, server->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data(sqe, &server->accept_completion);
    server->accept_armed = true;
}

static void accept_complete(struct io_completion *completion, const struct io_uring_cqe *cqe)
{
    struct server *server = (struct server *)(void *)((char *)completion -
                                                      offsetof(struct server, accept_completion));
    if (!(cqe->flags & IORING_CQE_F_MORE))
        server->accept_armed = false; /* re-armed at the end of the turn */
    if (cqe->res >= 0) {
        if (server->stopping)
            close(cqe->res);
        else
            conn_accepted(server, cqe->res);
    } else if (cqe->res != -ECANCELED) {
        /* Out of descriptors or memory: retry later rather than spin on the error. */
        slog_warn("msg=\"accept failed\" error=\"%s\" retry_ms=%d", strerror(-cqe->res),
                  SERVER_ACCEPT_RETRY_MS);
        if (!(cqe->flags & IORING_CQE_F_MORE))
            server->accept_retry_ms = server_now_ms() + SERVER_ACCEPT_RETRY_MS;
    }
}

static void signal_arm(struct server *server)
{
    struct io_uring_sqe *sqe = server_sqe(server);
    io_uring_prep_read(sqe, server->signal_fd, &server->siginfo, sizeof(server->siginfo), 0);
    io_uring_sqe_set_data(sqe, &server->signal_completion);
}

static void signal_complete(struct io_completion *completion, const struct io_uring_cqe *cqe)
{
    struct server *server = (struct server *)(void *)((char *)completion -
                                                      offsetof(struct server, signal_completion));
    if (cqe->res == (int)sizeof(server->siginfo)) {
        uint32_t signo = server->siginfo.ssi_signo;
        if (signo == SIGTERM || signo == SIGINT) {
            slog_info("msg=\"shutting down\" signal=%s", signo == SIGTERM ? "TERM" : "INT");
            server->stopping = true;
            return;
        }
        /* HUP, USR1, USR2: spoold has nothing to reload or rotate (it logs to stderr), and
         * a stray one must not kill it as their default action would. */
        slog_info("msg=\"signal ignored\" signal=%s sender_pid=%u",
                  signo == SIGHUP ? "HUP" : signo == SIGUSR1 ? "USR1" : "USR2",
                  server->siginfo.ssi_pid);
    }
    signal_arm(server);
}

/* SIGTERM and SIGINT are blocked from the start of server_start, so one that arrives during
 * recovery waits (pending) for the signalfd instead of killing a half-started server: the
 * loop then sees it at once and stops cleanly. */
static int signals_block(sigset_t *mask)
{
    sigemptyset(mask);
    sigaddset(mask, SIGTERM);
    sigaddset(mask, SIGINT);
    sigaddset(mask, SIGHUP);
    sigaddset(mask, SIGUSR1);
    sigaddset(mask, SIGUSR2);
    if (sigprocmask(SIG_BLOCK, mask, NULL) != 0)
        return -errno;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static int signals_setup(struct server *server, const sigset_t *mask)
{
    server->signal_fd = signalfd(-1, mask, SFD_CLOEXEC);
    if (server->signal_fd < 0)
        return -errno;
    server->signal_completion.complete = signal_complete;
    signal_arm(server);
    return 0;
}

/* ---- disk headroom ---- */

/*
 * The checkpoint's own disk space. A checkpoint is written beside the one it replaces and then
 * renamed over it, so it needs free space of its own size; on a disk that the log's spare
 * segment has just filled there may be none, and then no checkpoint is written, no segment is
 * dropped and no space ever comes back. So spoold keeps SERVER_RESERVE_NAME preallocated to
 * twice the last payload plus SERVER_RESERVE_SLACK_BYTES, empties it just before it hands a
 * checkpoint to the log when the disk lacks room for that checkpoint, and fills it again once
 * the checkpoint is done. The file holds no data: its size after a crash does not matter, and
 * the next start reuses it.
 */
#define SERVER_RESERVE_NAME "spoold.reserve"
/* What the payload may grow by between two checkpoints, and its fixed parts: 1 MiB is some
 * ten thousand more live jobs at about a hundred bytes of index entry each. */
#define SERVER_RESERVE_SLACK_BYTES (1024ull * 1024)

bool server_space_low(const struct server *server)
{
    return server->reserve_short || log_space_low(server->log);
}

/* Make the reserve as large as the next checkpoint may need; reserve_short while it cannot.
 * A synchronous fallocate on the loop: it runs at start, after a checkpoint and while short,
 * and allocates at most a few MiB. */
static void reserve_fill(struct server *server)
{
    if (server->reserve_fd < 0)
        return;
    uint64_t want = 2 * server->checkpoint_payload_bytes + SERVER_RESERVE_SLACK_BYTES;
    /* While the log's space is low, puts are refused and checkpoints only shrink: the reserve
     * takes back what it gave and no more, so that a dropped segment goes to the log's spare.
     * It grows once the spare is made again. */
    if (log_space_low(server->log) && server->reserve_bytes > 0 && want > server->reserve_bytes)
        want = server->reserve_bytes;
    struct stat st;
    if (fstat(server->reserve_fd, &st) == 0 && (uint64_t)st.st_blocks * 512 >= want) {
        server->reserve_short = false; /* kept through the last checkpoint: nothing to do */
        if ((uint64_t)st.st_blocks * 512 > server->reserve_bytes)
            server->reserve_bytes = (uint64_t)st.st_blocks * 512; /* made by an earlier run */
        return;
    }
    if (fallocate(server->reserve_fd, 0, 0, (off_t)want) == 0) {
        server->reserve_short = false;
        if (want > server->reserve_bytes)
            server->reserve_bytes = want;
        return;
    }
    if (errno == EOPNOTSUPP) {
        /* Nothing can be reserved on this file system: checkpoints take their chance. */
        slog_warn("msg=\"no fallocate: checkpoint space is not reserved\" dir=%s",
                  server->config.data_dir);
        close(server->reserve_fd);
        server->reserve_fd = -1;
        server->reserve_short = false;
        return;
    }
    server->reserve_short = true; /* logged with the episode (space_watch) */
}

/* Give the reserved space to the checkpoint about to be written (payload_bytes), unless the
 * disk has room for it anyway: then the reservation stays, and refilling it costs nothing. */
static void reserve_release(struct server *server, uint32_t payload_bytes)
{
    if (server->reserve_fd < 0)
        return;
    struct statvfs vfs;
    uint64_t free_bytes = fstatvfs(server->reserve_fd, &vfs) == 0
                              ? (uint64_t)vfs.f_bavail * vfs.f_frsize
                              : 0;
    if (free_bytes >= payload_bytes + SERVER_RESERVE_SLACK_BYTES)
        return;
    slog_info("msg=\"checkpoint reserve released for a checkpoint\" free_bytes=%llu "
              "payload_bytes=%u", (unsigned long long)free_bytes, payload_bytes);
    if (ftruncate(server->reserve_fd, 0) != 0)
        slog_warn("msg=\"cannot empty the checkpoint reserve\" error=\"%s\"", strerror(errno));
}

static void reserve_open(struct server *server)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", server->config.data_dir, SERVER_RESERVE_NAME);
    server->reserve_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (server->reserve_fd < 0) {
        slog_warn("msg=\"cannot open the checkpoint reserve: puts refused\" path=%s "
                  "error=\"%s\"", path, strerror(errno));
        server->reserve_short = true;
        return;
    }
    reserve_fill(server);
}

/* ---- checkpoints and retention ---- */

static void checkpoint_done(void *ctx, int error)
{
    struct server *server = ctx;
    server->checkpoint_in_flight = false;
    reserve_fill(server); /* the old checkpoint's space is free now, or the failed one's */
    if (error != 0) {
        /* The previous checkpoint still stands and the log still holds everything since it:
         * serve on; a poisoned log stops the server through on_durable. */
        slog_error("msg=\"checkpoint failed\" error=\"%s\"", log_strerror(error));
        server->checkpoint_failed = true;
        server->checkpoint_bytes = 1; /* due again at the next period */
    }
}

/* A sealed segment holds no live job: a checkpoint now would drop it and give space back. */
static bool retention_droppable(const struct server *server)
{
    uint32_t count = log_segment_count(server->log);
    uint64_t current = log_current_segment_id(server->log);
    for (uint32_t i = 0; i + 1 < count; i++) {
        uint64_t id = log_segment_id(server->log, i);
        if (id != current && queue_segment_live(server->queues, id) == 0)
            return true;
    }
    return false;
}

/* ms until the checkpoint compaction asks for may begin (INT64_MAX: none asked for). A walk
 * visits every live job, so these come no closer than SERVER_COMPACT_CHECKPOINT_SPACING walks'
 * time apart: with a large backlog they stay a small share of the loop. */
static int64_t compaction_checkpoint_in_ms(const struct server *server, int64_t now_ms)
{
    if (!compactor_checkpoint_wanted(server->compactor))
        return INT64_MAX;
    int64_t at = server->checkpoint_last_ms +
                 server->checkpoint_walk_ms_last * SERVER_COMPACT_CHECKPOINT_SPACING;
    return at > now_ms ? at - now_ms : 0;
}

/* Due after --checkpoint-bytes of log, but never before SERVER_CHECKPOINT_LOG_PER_JOB bytes of
 * log per job live at the last checkpoint: a checkpoint walks every live job on the loop, so
 * with a large backlog the log written between two of them grows with it and their cost stays
 * a bounded fraction of the work. The period (--checkpoint-interval) still bounds recovery
 * time when writes are few. While disk space is low, puts wait for a checkpoint that drops
 * segments: it is due as soon as there is one to drop. */
static bool checkpoint_due(const struct server *server, int64_t now_ms)
{
    if (server->checkpoint_bytes == 0 && !compactor_checkpoint_wanted(server->compactor))
        return false;
    if (server->space_low && retention_droppable(server) &&
        (!server->checkpoint_failed ||
         now_ms - server->checkpoint_last_ms >= SERVER_SPACE_CHECKPOINT_RETRY_MS))
        return true;
    uint64_t bytes_due = server->config.checkpoint_bytes;
    uint64_t by_jobs = server->checkpoint_jobs * SERVER_CHECKPOINT_LOG_PER_JOB;
    if (bytes_due < by_jobs)
        bytes_due = by_jobs;
    /* Compaction emptied segments: the checkpoint that drops them is the point of it. */
    if (compaction_checkpoint_in_ms(server, now_ms) == 0)
        return true;
    return server->checkpoint_bytes >= bytes_due ||
           now_ms - server->checkpoint_last_ms >= server->config.checkpoint_interval_ms;
}

/* A checkpoint that cannot be written must not stop the server: serve on and try again at
 * the next period (recovery then replays more log; nothing is lost). */
static void checkpoint_skip(struct server *server)
{
    server->checkpoint_last_ms = server_now_ms();
    server->checkpoint_failed = true;
}

/* Fix the anchor and start the walk of the queue state (queue_checkpoint.c). The state reflects
 * exactly the records appended so far, durable or not, so the anchor is the next seq. */
static void checkpoint_begin(struct server *server)
{
    SPOOL_ASSERT(!server->checkpoint_in_flight);
    server->checkpoint_anchor = log_next_seq(server->log);
    server->checkpoint_started_ns = mono_ns();
    server->checkpoint_turns = 0;
    server->checkpoint_walked = false;
    server->checkpoint_bytes = 0; /* the log from the anchor on counts toward the next one */
    server->checkpoint_last_ms = server_now_ms();
    struct queue_totals totals;
    queue_totals_get(server->queues, &totals);
    server->checkpoint_walk_jobs = totals.jobs;
    queue_checkpoint_begin(server->queues);
    compactor_checkpoint_begun(server->compactor); /* the anchor is past every move so far */
}

/* The walk is complete: hand the payload to the log once its anchor is durable (the payload
 * may reflect records that were still in flight when the walk began). True once started. */
static bool checkpoint_write(struct server *server)
{
    uint64_t anchor = server->checkpoint_anchor;
    if (log_durable_seq_end(server->log) < anchor || server->checkpoint_in_flight)
        return false;
    int64_t write_started_ns = mono_ns();
    uint8_t *payload;
    uint32_t len;
    struct queue_segment_set needed;
    if (queue_checkpoint_finish(server->queues, &payload, &len, &needed) != 0) {
        slog_error("msg=\"checkpoint too large to encode\"");
        checkpoint_skip(server);
        return false;
    }
    /* What the payload itself needs, not the live counts of now: acks after the anchor may
     * still fail with the log (retention.h). */
    uint64_t *drop;
    uint32_t drop_count = retention_drop_list(server->log, &needed, anchor, &drop);
    queue_segment_set_free(&needed);
    /* The payload goes to the log as it is (tens of MiB with a large backlog: no copy). */
    reserve_release(server, len);
    int rc = log_checkpoint_give(server->log, anchor, payload, len, drop, drop_count,
                                 checkpoint_done, server);
    free(drop);
    if (rc != 0) {
        reserve_fill(server);
        slog_warn("msg=\"checkpoint not started\" error=\"%s\" payload_bytes=%u",
                  log_strerror(rc), len);
        checkpoint_skip(server);
        return false;
    }
    server->checkpoint_in_flight = true;
    server->checkpoint_failed = false;
    server->checkpoint_jobs = server->checkpoint_walk_jobs;
    server->checkpoint_payload_bytes = len; /* sizes the checkpoint reserve */
    int64_t done_ns = mono_ns();
    server->checkpoint_walk_ms_last = (write_started_ns - server->checkpoint_started_ns) / 1000000;
    slog_info("msg=checkpoint anchor=%llu bytes=%u segments_dropped=%u walk_ms=%lld turns=%u "
              "handover_ms=%lld",
              (unsigned long long)anchor, len, drop_count,
              (long long)((write_started_ns - server->checkpoint_started_ns) / 1000000),
              server->checkpoint_turns, (long long)((done_ns - write_started_ns) / 1000000));
    return true;
}

/* One turn's share of checkpointing: start a walk when one is due, walk a bounded number of
 * jobs, write the payload when the walk is complete. Requests go on meanwhile. */
static void checkpoint_advance(struct server *server, int64_t now_ms)
{
    if (!queue_checkpoint_active(server->queues)) {
        if (server->checkpoint_in_flight || !checkpoint_due(server, now_ms))
            return;
        checkpoint_begin(server);
    }
    if (!server->checkpoint_walked) {
        server->checkpoint_turns++;
        server->checkpoint_walked =
            queue_checkpoint_step(server->queues, SERVER_CHECKPOINT_STEP_JOBS);
    }
    if (server->checkpoint_walked)
        checkpoint_write(server); /* or at a later turn, once the anchor is durable */
}

/* Shutdown: finish the walk in progress (or take a whole checkpoint) in one go; the log is
 * idle, so the anchor is durable. True once a checkpoint was started. */
static bool checkpoint_now(struct server *server)
{
    if (!queue_checkpoint_active(server->queues))
        checkpoint_begin(server);
    bool complete = queue_checkpoint_step(server->queues, UINT32_MAX);
    SPOOL_ASSERT(complete);
    return checkpoint_write(server);
}

/* ---- the loop ---- */

/* The disk-space episode begins or ends: one log line each, not one per refused put. */
static void space_watch(struct server *server)
{
    bool low = server_space_low(server);
    if (low == server->space_low)
        return;
    server->space_low = low;
    if (low) {
        slog_warn("msg=\"disk space low: puts refused with DISK_FULL until acks and a "
                  "checkpoint free a segment\" dir=%s log_space_low=%s checkpoint_reserve=%s",
                  server->config.data_dir, log_space_low(server->log) ? "true" : "false",
                  server->reserve_short ? "short" : "ok");
        return;
    }
    slog_info("msg=\"disk space back: puts admitted again\" puts_refused=%llu",
              (unsigned long long)server->puts_refused_space);
    server->puts_refused_space = 0;
}

bool server_memory_low(const struct server *server)
{
    return server->memory.low;
}

bool server_memory_tight(const struct server *server)
{
    return server->memory.tight;
}

/* Above the bound: evict bodies from the cache, as many bytes as RSS is over the resume level
 * (bodies are the one large thing spoold can drop: they are in the log), and hand free heap
 * pages back to the kernel so that RSS shows it. */
static void memory_give_back(struct server *server)
{
    struct memwatch *w = &server->memory;
    struct queue_body_stats bodies;
    queue_body_stats_get(server->queues, &bodies);
    uint64_t over = w->rss_bytes - w->bound_bytes + w->bound_bytes / MEMWATCH_RESUME_FRACTION;
    uint64_t target = bodies.bytes > over ? bodies.bytes - over : 0;
    uint64_t freed = queue_body_cache_trim(server->queues, target);
    if (server->now.mono_ns >= w->next_trim_ns) {
        w->next_trim_ns = server->now.mono_ns + 1000LL * 1000 * 1000;
        malloc_trim(0);
    }
    if (freed > 0)
        slog_info("msg=\"memory above the bound: bodies evicted from the cache\" rss=%llu "
                  "bound=%llu freed=%llu",
                  (unsigned long long)w->rss_bytes, (unsigned long long)w->bound_bytes,
                  (unsigned long long)freed);
}

static void memory_watch(struct server *server)
{
    struct memwatch *w = &server->memory;
    if (!memwatch_sample(w, server->now.mono_ns))
        return;
    /* What a new job can reuse without growing RSS does not count against the bound. */
    uint64_t reusable = queue_memory_reusable(server->queues);
    w->rss_bytes = w->rss_bytes > reusable ? w->rss_bytes - reusable : 0;
    if (w->rss_bytes > w->bound_bytes)
        memory_give_back(server);
    bool was_low = w->low, was_tight = w->tight;
    bool low = memwatch_update(w, w->rss_bytes);
    if (was_tight && !w->tight) {
        /* Connections that stopped being read at the lower marks are read again. */
        for (struct list_link *l = server->conns.next; l != &server->conns; l = l->next)
            conn_make_runnable(LIST_ENTRY(l, struct conn, link));
    }
    if (low == was_low)
        return;
    if (low) {
        slog_warn("msg=\"memory bound reached: puts refused with QUEUE_FULL until jobs are "
                  "acked or deleted\" rss=%llu bound=%llu source=%s",
                  (unsigned long long)w->rss_bytes, (unsigned long long)w->bound_bytes,
                  w->bound_from_cgroup ? "cgroup" : "max-memory");
        return;
    }
    slog_info("msg=\"memory back below the bound: puts admitted again\" rss=%llu "
              "puts_refused=%llu",
              (unsigned long long)w->rss_bytes, (unsigned long long)w->puts_refused);
    w->puts_refused = 0;
}

/* A new durable watermark: replies go out, puts become visible, stalled requests run again. */
static void durable_apply(struct server *server)
{
    uint64_t written_end = server->durable.written_end;
    if (written_end <= server->durable_applied)
        return;
    server->durable_applied = written_end;
    queue_durable(server->queues, written_end, server->now);
    handler_release_held(server);
    beanstalk_release_held(server);
    /* The full batch can go to disk now, which frees the open batch for stalled requests. */
    log_tick(server->log);
    server->log_full = false;
    struct list_link *link;
    while ((link = list_first(&server->stalled)) != NULL) {
        struct conn *conn = LIST_ENTRY(link, struct conn, run_link);
        list_unlink(link);
        conn->stalled = false;
        conn_make_runnable(conn);
    }
}

static void conns_run(struct server *server)
{
    /* Only the connections runnable at the start: one that runs out of its per-turn budget
     * goes to the back and waits for the next turn. */
    struct list_link batch;
    list_init(&batch);
    if (!list_empty(&server->runnable)) {
        batch.next = server->runnable.next;
        batch.prev = server->runnable.prev;
        batch.next->prev = &batch;
        batch.prev->next = &batch;
        list_init(&server->runnable);
    }
    struct list_link *link;
    while ((link = list_first(&batch)) != NULL) {
        struct conn *conn = LIST_ENTRY(link, struct conn, run_link);
        list_unlink(link);
        conn_run(conn, CONN_FRAMES_PER_TURN);
    }
}

static void zombies_free(struct server *server)
{
    struct list_link *link;
    while ((link = list_first(&server->zombies)) != NULL) {
        struct conn *conn = LIST_ENTRY(link, struct conn, link);
        list_unlink(link);
        if (list_linked(&conn->flush_link))
            list_unlink(&conn->flush_link);
        free(conn->in);
        wire_buf_free(&conn->out);
        wire_buf_free(&conn->sending);
        free(conn);
    }
}

static int64_t loop_timeout_ms(struct server *server, int64_t now_ms)
{
    if (!list_empty(&server->runnable) || server->stopping)
        return server->stopping ? 10 : 0;
    if (queue_checkpoint_active(server->queues) && !server->checkpoint_walked)
        return 0; /* a walk to continue; a complete one waits for a commit, which wakes us */
    if (observe_busy(server))
        return 0; /* a snapshot walk to continue (observe.h) */
    int64_t timeout = INT64_MAX;
    int64_t next_ns[3] = {queue_next_deadline_ns(server->queues),
                          log_next_deadline_ns(server->log), beanstalk_next_deadline_ns(server)};
    int64_t now_ns = mono_ns();
    for (int i = 0; i < 3; i++) {
        if (next_ns[i] == INT64_MAX)
            continue;
        /* Rounded up: waking a little late is fine, waking early only spins a turn. */
        int64_t ms = next_ns[i] <= now_ns ? 0 : (next_ns[i] - now_ns - 1) / 1000000 + 1;
        if (ms < timeout)
            timeout = ms;
    }
    if (server->checkpoint_bytes > 0) {
        int64_t cp = server->checkpoint_last_ms + server->config.checkpoint_interval_ms - now_ms;
        bool checkpointing = server->checkpoint_in_flight ||
                             queue_checkpoint_active(server->queues);
        if (server->space_low && !checkpointing && retention_droppable(server))
            cp = server->checkpoint_failed
                     ? server->checkpoint_last_ms + SERVER_SPACE_CHECKPOINT_RETRY_MS - now_ms
                     : 0;
        if (cp < timeout)
            timeout = cp;
    }
    if (!server->checkpoint_in_flight && !queue_checkpoint_active(server->queues)) {
        int64_t cp = compaction_checkpoint_in_ms(server, now_ms);
        if (cp < timeout)
            timeout = cp; /* the checkpoint that drops what compaction emptied */
    }
    int64_t compact = compactor_timeout_ms(server->compactor, now_ms);
    if (compact < timeout)
        timeout = compact;
    if (server->conn_count > 0 && server->sweep_ms - now_ms < timeout)
        timeout = server->sweep_ms - now_ms;
    if (server->accept_retry_ms != 0 && server->accept_retry_ms - now_ms < timeout)
        timeout = server->accept_retry_ms - now_ms;
    if (server->log_full && timeout < 1)
        timeout = 1; /* timers that need log space wait for the commit, not spin */
    return timeout < 0 ? 0 : timeout;
}

static int loop_wait(struct server *server)
{
    int64_t timeout = loop_timeout_ms(server, server_now_ms());
    struct io_uring_cqe *cqe;
    int rc;
    if (timeout == INT64_MAX) {
        rc = io_uring_submit_and_wait(&server->ring, 1);
    } else {
        struct __kernel_timespec ts = {.tv_sec = timeout / 1000,
                                       .tv_nsec = (timeout % 1000) * 1000000};
        rc = io_uring_submit_and_wait_timeout(&server->ring, &cqe, 1, &ts, NULL);
    }
    /* One reading of the clocks per turn, before the turn's completions run. */
    server->now = server_now();
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
        return rc;
    ring_dispatch_ready(server);
    return 0;
}

static bool outputs_drained(struct server *server)
{
    for (struct list_link *l = server->conns.next; l != &server->conns; l = l->next) {
        struct conn *conn = LIST_ENTRY(l, struct conn, link);
        if (conn->fd >= 0 && (conn->out.len > 0 || conn->sent < conn->sending.len))
            return false;
    }
    return true;
}

/* Shutdown: true once everything is durable, answered, checkpointed and sent. */
static bool stop_step(struct server *server)
{
    int64_t now = server_now_ms();
    if (server->stop_started_ms == 0) {
        server->stop_started_ms = now;
        compactor_stop(server->compactor); /* no new records but the requests' own */
        handler_shutting_down(server);
        if (server->listen_fd >= 0) {
            struct io_uring_sqe *sqe = server_sqe(server);
            io_uring_prep_cancel(sqe, &server->accept_completion, 0);
            io_uring_sqe_set_data(sqe, NULL);
        }
    }
    if (!log_idle(server->log) || !list_empty(&server->held) ||
        !body_fetch_idle(server->fetcher)) {
        /* A commit waiting for a new segment on a full disk may never land: its puts were
         * never answered, so stopping loses nothing acknowledged (log_close says so). */
        if (log_space_low(server->log) && now - server->stop_started_ms > SERVER_DRAIN_MS)
            return !server->checkpoint_in_flight;
        return false;
    }
    if (server->checkpoint_in_flight)
        return false;
    bool walking = queue_checkpoint_active(server->queues);
    if (walking || (server->checkpoint_bytes > 0 && !server->checkpoint_failed)) {
        if (checkpoint_now(server))
            return false; /* restart is then instant */
    }
    return outputs_drained(server) || now - server->stop_started_ms > SERVER_DRAIN_MS;
}

/* How many jobs went dead and expired since the last line: at the first sweep after one did,
 * then at most once per SERVER_JOB_REPORT_MS while more do. */
static void jobs_report(struct server *server, int64_t now_ms)
{
    if (now_ms < server->report_next_ms)
        return;
    struct queue_totals totals;
    queue_totals_get(server->queues, &totals);
    uint64_t dead = totals.went_dead - server->report_went_dead;
    uint64_t expired = totals.expired - server->report_expired;
    if (dead == 0 && expired == 0)
        return;
    slog_warn("msg=\"jobs went dead or expired\" dead=%llu expired=%llu dead_total=%llu "
              "expired_total=%llu",
              (unsigned long long)dead, (unsigned long long)expired,
              (unsigned long long)totals.went_dead, (unsigned long long)totals.expired);
    server->report_went_dead = totals.went_dead;
    server->report_expired = totals.expired;
    server->report_next_ms = now_ms + SERVER_JOB_REPORT_MS;
}

int server_run(struct server *server)
{
    for (;;) {
        int rc = loop_wait(server);
        if (rc != 0) {
            slog_error("msg=\"io_uring wait failed\" error=\"%s\"", strerror(-rc));
            return rc;
        }
        if (server->fatal_error != 0)
            return server->fatal_error;
        durable_apply(server);
        body_fetch_pump(server->fetcher); /* reads that waited for the watermark or a slot */
        int64_t now = server_turn_ms(server);
        /* Connections and timers are the sources of records: both stop during shutdown. */
        if (!server->stopping) {
            queue_tick(server->queues, server->now);
            conns_run(server);
            body_fetch_pump(server->fetcher); /* the reads this turn's deliveries need */
        }
        observe_turn(server); /* HTTP snapshots and actions, when asked */
        log_tick(server->log);
        space_watch(server);
        memory_watch(server);
        if (!server->stopping) {
            /* Copies land before the segments they free go: on a disk short of space they
             * would take the room acks and deletes are promised (a full disk: OPERATIONS.md). */
            if (!server->space_low)
                compactor_tick(server->compactor, now);
            checkpoint_advance(server, now);
        }
        accept_arm(server);
        beanstalk_tick(server);
        if (now >= server->sweep_ms) {
            if (server->reserve_short && !server->checkpoint_in_flight)
                reserve_fill(server); /* space may have come back by other means */
            conn_sweep(server, now);
            beanstalk_sweep(server);
            server->sweep_ms = now + SERVER_SWEEP_MS;
            jobs_report(server, now);
        }
        zombies_free(server);
        conns_flush(server); /* one send per connection for what this turn gave it */
        if (server->stopping && stop_step(server))
            return server->stop_error;
    }
}

/* ---- start and destroy ---- */

/* The memory bound, said once at start; a body cache above half of it is lowered to half, so
 * that the jobs' own memory has the other half. */
static void memory_bound_log(struct server *server, struct queue_config *qc)
{
    const struct memwatch *w = &server->memory;
    if (w->bound_bytes == 0)
        return;
    if (qc->body_cache_bytes_max > w->bound_bytes / 2) {
        slog_warn("msg=\"body cache lowered to half the memory bound\" body_cache=%llu "
                  "lowered_to=%llu",
                  (unsigned long long)qc->body_cache_bytes_max,
                  (unsigned long long)(w->bound_bytes / 2));
        qc->body_cache_bytes_max = w->bound_bytes / 2 > 0 ? w->bound_bytes / 2 : 1;
    }
    slog_info("msg=\"memory bound\" bound=%llu source=%s body_cache=%llu",
              (unsigned long long)w->bound_bytes, w->bound_from_cgroup ? "cgroup" : "max-memory",
              (unsigned long long)qc->body_cache_bytes_max);
}

int server_start(struct server *server, const struct server_config *config)
{
    memset(server, 0, sizeof(*server));
    server->config = *config;
    server->listen_fd = -1;
    server->signal_fd = -1;
    server->reserve_fd = -1;
    memwatch_init(&server->memory, config->memory_bytes_max, MEMWATCH_CGROUP_MAX_PATH);
    server->started_ms = server_now_ms();
    server->checkpoint_last_ms = server->started_ms;
    server->accept_completion.complete = accept_complete;
    idmap_init(&server->conns_by_id);
    list_init(&server->conns);
    list_init(&server->handshaking);
    list_init(&server->zombies);
    list_init(&server->runnable);
    list_init(&server->stalled);
    list_init(&server->held);
    list_init(&server->held_free);
    list_init(&server->to_flush);
    wire_buf_init(&server->reply_scratch, config->frame_size_max);
    struct queue_config qc;
    queue_config_defaults(&qc);
    qc.max_jobs_per_queue = config->queue_jobs_max;
    qc.max_bytes_per_queue = config->queue_bytes_max;
    qc.idempotency_window_ms = (int64_t)config->idempotency_window_ms;
    qc.idempotency_keys_max = config->idempotency_keys_max;
    qc.queues_max = config->queues_max;
    qc.body_cache_bytes_max = config->body_cache_bytes;
    memory_bound_log(server, &qc);
    /* Lease tokens are capabilities: their key must be secret and unpredictable, so there
     * is no fallback to a guessable seed. getentropy reads getrandom(2), which blocks only
     * until the kernel's pool is initialised at boot. */
    if (getentropy(&qc.lease_key, sizeof(qc.lease_key)) != 0) {
        int err = -errno;
        slog_error("msg=\"no randomness for lease tokens\" error=\"%s\"", strerror(-err));
        return err;
    }
    qc.prefault = true;
    sigset_t signals;
    int rc = signals_block(&signals); /* before any thread starts: every thread inherits it */
    if (rc != 0)
        return rc;
    server->queues = queue_state_create(&qc);
    rc = ring_setup(server);
    if (rc != 0)
        return rc;
    int64_t recovery_started_ns = mono_ns();
    rc = recover(server);
    if (rc != 0)
        return rc;
    server->metrics.recovery_ns = mono_ns() - recovery_started_ns;
    reserve_open(server); /* before the log's first tick makes its spare */
    char addr[INET6_ADDRSTRLEN + 16];
    rc = server_listen(server, config->listen_host, config->listen_port, &server->listen_fd, addr,
                       sizeof(addr));
    if (rc != 0)
        return rc;
    rc = beanstalk_start(server);
    if (rc != 0)
        return rc;
    rc = signals_setup(server, &signals);
    if (rc != 0)
        return rc;
    rc = observe_start(server); /* the HTTP listener, if configured */
    if (rc != 0)
        return rc;
    accept_arm(server);
    io_uring_submit(&server->ring);
    slog_info("msg=listening addr=%s data=%s sync=%s recv=%s version=%s", addr,
              config->data_dir,
              config->sync_mode == LOG_SYNC_ALWAYS ? "always"
              : config->sync_mode == LOG_SYNC_NONE ? "none" : "interval",
              server->recv_multishot ? "multishot" : "single", SPOOLD_VERSION);
    if (config->ready_file != NULL &&
        ready_file_write(config->ready_file, addr, server->beanstalk_addr) != 0) {
        slog_error("msg=\"cannot write ready file\" path=%s", config->ready_file);
        return -EIO;
    }
    return 0;
}

/* Closing connections may wait this long for the ring to hand back their recv and send: a
 * cancel completes in microseconds, so this only bounds a kernel that never answers. */
#define SERVER_REAP_MS 2000

static bool conns_armed(const struct server *server)
{
    for (struct list_link *l = server->conns.next; l != &server->conns; l = l->next) {
        struct conn *conn = LIST_ENTRY(l, struct conn, link);
        if (conn->recv_armed || conn->send_armed)
            return true;
    }
    return false;
}

/* Before connections are freed, the ring must hold no op pointing into one: an idle
 * connection has a recv pending, a slow reader a send (the kernel reads its buffer). Close
 * each (its socket shut down, its recv and send cancelled) and reap the completions through
 * the connections' own callbacks, which move them to zombies once nothing is armed. Anything
 * else the ring completes meanwhile (the log's ops) is dispatched as usual. */
static void conns_reap(struct server *server)
{
    for (struct list_link *l = server->conns.next; l != &server->conns; l = l->next) {
        struct conn *conn = LIST_ENTRY(l, struct conn, link);
        struct io_completion *armed[2] = {conn->recv_armed ? &conn->recv_completion : NULL,
                                          conn->send_armed ? &conn->send_completion : NULL};
        for (int i = 0; i < 2; i++) {
            if (armed[i] == NULL)
                continue;
            struct io_uring_sqe *sqe = server_sqe(server);
            io_uring_prep_cancel(sqe, armed[i], 0);
            io_uring_sqe_set_data(sqe, NULL);
        }
    }
    struct list_link *link = server->conns.next;
    while (link != &server->conns) {
        struct conn *conn = LIST_ENTRY(link, struct conn, link);
        link = link->next; /* conn_close may move conn to zombies */
        if (!conn->closing || conn->fd >= 0)
            conn_close(conn);
    }
    int64_t deadline_ms = server_now_ms() + SERVER_REAP_MS;
    while (conns_armed(server) && server_now_ms() < deadline_ms) {
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 10 * 1000000};
        struct io_uring_cqe *cqe;
        int rc = io_uring_submit_and_wait_timeout(&server->ring, &cqe, 1, &ts, NULL);
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
            break;
        ring_dispatch_ready(server);
    }
}

/* A connection is freed only when the ring holds nothing of it: one still armed after
 * conns_reap gave up is left allocated (a leak at exit, not a use after free). */
static void conns_free(struct server *server)
{
    struct list_link *link;
    uint32_t leaked = 0;
    while ((link = list_first(&server->conns)) != NULL) {
        struct conn *conn = LIST_ENTRY(link, struct conn, link);
        list_unlink(link);
        if (list_linked(&conn->flush_link))
            list_unlink(&conn->flush_link);
        if (conn->fd >= 0)
            close(conn->fd);
        conn->fd = -1;
        if (conn->recv_armed || conn->send_armed) {
            leaked++;
            continue;
        }
        free(conn->in);
        wire_buf_free(&conn->out);
        wire_buf_free(&conn->sending);
        free(conn);
    }
    if (leaked > 0)
        slog_warn("msg=\"connections still on the ring at exit: left allocated\" count=%u",
                  leaked);
}

/* What the body cache and the reads behind it did in this run: at stop, for the operator (a
 * drain that reads more batches than it delivers jobs would show here) and the tests. */
static void bodies_report(struct server *server)
{
    if (server->fetcher == NULL || server->queues == NULL)
        return;
    struct queue_body_stats cache;
    queue_body_stats_get(server->queues, &cache);
    struct body_fetch_stats fetch;
    body_fetch_stats_get(server->fetcher, &fetch);
    slog_info("msg=\"body cache\" bytes=%llu bytes_max=%llu bodies=%llu evictions=%llu "
              "fetches=%llu batch_reads=%llu bodies_read=%llu read_errors=%llu "
              "prefetch_reads=%llu",
              (unsigned long long)cache.bytes, (unsigned long long)cache.bytes_max,
              (unsigned long long)cache.count, (unsigned long long)cache.evictions,
              (unsigned long long)fetch.fetches, (unsigned long long)fetch.batch_reads,
              (unsigned long long)fetch.bodies_read, (unsigned long long)fetch.errors,
              (unsigned long long)fetch.prefetch_reads);
}

/* How connections read in this run: the receive mode and the most unparsed input one held
 * (bounded by conn.c: a frame, SERVER_RECV_CREDIT and a buffer). */
static void conns_report(const struct server *server)
{
    slog_info("msg=connections accepted=%llu recv=%s input_max_bytes=%llu received_bytes=%llu",
              (unsigned long long)server->metrics.connections_accepted,
              server->recv_multishot ? "multishot" : "single",
              (unsigned long long)server->metrics.input_max_bytes,
              (unsigned long long)server->metrics.bytes_in);
}

void server_destroy(struct server *server)
{
    bodies_report(server);
    conns_report(server);
    struct list_link *link;
    body_fetcher_close(server->fetcher); /* its callbacks reach connections: not past here */
    if (server->compactor != NULL)
        compactor_stop(server->compactor); /* reads log_close waits for copy nothing */
    if (!list_empty(&server->conns) && server->buf_base != NULL)
        conns_reap(server);
    zombies_free(server);
    conns_free(server);
    while ((link = list_first(&server->held)) != NULL) {
        list_unlink(link);
        free(LIST_ENTRY(link, struct held_reply, link));
    }
    while ((link = list_first(&server->held_free)) != NULL) {
        list_unlink(link);
        free(LIST_ENTRY(link, struct held_reply, link));
    }
    wire_buf_free(&server->reply_scratch);
    if (server->log != NULL) {
        /* Reads in flight complete (log_close waits for them) before the fetcher goes. */
        int rc = log_close(server->log);
        if (rc != 0)
            slog_error("msg=\"log close failed\" error=\"%s\"", log_strerror(rc));
    }
    body_fetcher_destroy(server->fetcher);
    compactor_destroy(server->compactor);
    io_backend_destroy(server->backend);
    queue_state_destroy(server->queues);
    idmap_free(&server->conns_by_id);
    if (server->listen_fd >= 0)
        close(server->listen_fd);
    if (server->reserve_fd >= 0)
        close(server->reserve_fd);
    if (server->signal_fd >= 0)
        close(server->signal_fd);
    memwatch_close(&server->memory);
    if (server->buf_base != NULL)
        io_uring_queue_exit(&server->ring);
    /* After the ring: a CQE of its accept may be dispatched until then (log_close). */
    beanstalk_destroy(server);
    free(server->buf_base);
    observe_stop(server); /* after the ring: its eventfd read can no longer land */
}
