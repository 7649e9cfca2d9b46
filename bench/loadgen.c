/*
 * The load generator's loop (the model is described in loadgen.h).
 *
 * Per connection: an output buffer the drivers append frames to (written once per loop turn,
 * so many frames share one send), an input buffer the driver parses replies from, and depth
 * frame slots. Frame i owns job slots [i * batch, (i + 1) * batch) holding, per job, the ids
 * the server gave it and the time its latency counts from. Each frame carries a tag: its slot
 * index in the low FRAME_INDEX_BITS, a per-connection sequence above. Beanstalkd and Redis
 * answer in request order, so a FIFO of frame indices in send order says which frame a reply
 * answers; spool replies carry the tag (request id) and may come in any order.
 *
 * A reserve frame that completes with jobs turns at once into an ack frame for those jobs: its
 * slot has just been freed, so the ack always fits. Consumers never hold a job unacked beyond
 * that.
 *
 * CPU: one clock read per loop turn, one read and one write per busy connection per turn, no
 * allocation after setup. The generator shares the machine with the server under test, so
 * everything it spends is taken from the server.
 */
#include "loadgen.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Buffers start at 64 KiB (one read holds many small replies) and may grow to 64 MiB: a
 * reserve reply of BENCH_BATCH_MAX jobs of 64 KiB bodies. */
#define BUF_BYTES_INITIAL (64u * 1024)
#define BUF_BYTES_MAX (64u * 1024 * 1024)
/* Connections: 2 roles x 256 is far past what 2 cores can drive usefully. */
#define CONNS_PER_ROLE_MAX 256u
/* Frames outstanding per connection: beyond 1024 pipelining buys nothing on loopback. */
#define DEPTH_MAX 1024u
#define FRAME_INDEX_BITS 10 /* 2^10 = DEPTH_MAX frame slots per connection */
_Static_assert((1u << FRAME_INDEX_BITS) == DEPTH_MAX, "a tag's index bits must cover DEPTH_MAX");
/* How long a reserve may wait at the server while more jobs may still come. */
#define RESERVE_BLOCK_MS 1000u
/* After a reserve with no wait found nothing, a consumer rests this long before asking again,
 * so draining the last jobs of one queue does not spin against the others. */
#define EMPTY_BACKOFF_NS 1000000ll
/* e2e in closed loop: producers stay at most this many times what the consumers can have in
 * flight ahead of the acks. Without a bound, producers that are faster than consumers grow a
 * backlog for the whole run and "delivery latency" measures the run's length; with it the run
 * settles at the rate both sides sustain, and consumers never starve (2x their pipeline). */
#define E2E_BACKLOG_FACTOR 2u
/* The least a Redis stream is trimmed to in e2e (driver_redis.c). */
#define E2E_STREAM_MAXLEN_MIN 100000u
#define EPOLL_EVENTS_MAX 64
#define NS_PER_S 1000000000ll

struct slot {
    uint64_t id;
    uint64_t id2;
    int64_t t_ns; /* put: intended send time; reserve/ack: the reserve's send time */
};

struct frame {
    bool active;
    enum bench_frame_kind kind;
    uint64_t tag;
    uint32_t jobs; /* put/ack: jobs sent; reserve: jobs asked for */
    uint32_t replies_left;
    uint32_t done; /* put/ack: jobs confirmed or failed; reserve: jobs received */
    int64_t sent_ns;
};

struct conn {
    int fd;
    bool setup_done;
    bool want_write;       /* EPOLLOUT is registered */
    int64_t rest_until_ns; /* consumers: no new reserve before this */
    bool waiting;          /* a reserve that waits at the server is outstanding */
    bool found_empty;      /* a reserve came back empty: let the pipeline drain first */
    struct bench_conn_info info;
    struct bench_buf in;
    struct bench_buf out;
    struct frame *frames; /* depth slots */
    struct slot *slots;   /* depth * batch */
    uint32_t *free;       /* indices of inactive frames (a stack) */
    uint32_t free_count;
    uint32_t *fifo; /* active frame indices in send order (ring of depth) */
    uint32_t fifo_head;
    uint32_t outstanding;
    uint64_t tag_seq;
};

enum phase { PHASE_PREFILL = 0, PHASE_RUN, PHASE_DRAIN, PHASE_DONE };

struct loadgen {
    const struct loadgen_config *config;
    struct loadgen_result *result;
    int epoll_fd;
    struct conn *conns;
    uint32_t conn_count;
    struct bench_bodies bodies; /* a window of them per put frame, stamped per put */
    uint32_t fetch_batch; /* jobs per reserve and per ack */
    uint32_t frame_slots; /* slots per frame: the larger of batch and fetch_batch */
    struct bench_reply *reply;
    int64_t now_ns;
    int64_t start_ns;   /* open-loop schedule origin */
    int64_t measure_ns; /* start of the measured window */
    int64_t end_ns;     /* duration runs: when producing stops */
    int64_t drain_deadline_ns;
    int64_t progress_next_ns;
    bool measuring;
    enum phase phase;
    bool stop_issuing;
    uint64_t issued;      /* jobs sent in put frames (this phase) */
    uint64_t backlog_max; /* e2e closed loop: jobs put but not yet acked, at most */
    uint64_t issue_limit; /* open loop past its end: the jobs that were due by then */
    uint64_t produced;    /* puts confirmed, whole run */
    uint64_t put_failed;  /* puts refused, whole run */
    uint64_t received;    /* jobs handed out by reserves, whole run */
    uint64_t consumed;    /* acks confirmed, whole run */
    uint64_t window_jobs;
    uint64_t progress_jobs;
    uint64_t errors;
    uint64_t cpu_ticks_start;
    int fatal; /* first fatal error: ends the run */
};

static int64_t clock_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

const char *loadgen_mode_name(enum loadgen_mode mode)
{
    static const char *const names[] = {"produce", "consume", "e2e"};
    return mode <= LOADGEN_E2E ? names[mode] : "?";
}

uint32_t loadgen_fetch_batch(const struct loadgen_config *config)
{
    return config->fetch_batch > 0 ? config->fetch_batch : config->batch;
}

void loadgen_config_defaults(struct loadgen_config *config)
{
    memset(config, 0, sizeof(*config));
    config->host = "127.0.0.1";
    config->producers = 1;
    config->consumers = 1;
    config->depth = 1;
    config->batch = 1;
    config->size = 100;
    config->body = BENCH_BODY_RANDOM;
    config->queues = 1;
    config->duration_s = 5.0;
    config->ttr_s = 60;
    config->progress = true;
    snprintf(config->queue_prefix, sizeof(config->queue_prefix), "sb%d-%lld", (int)getpid(),
             (long long)(clock_now_ns() / 1000000 % 100000000));
}

/* utime + stime of a process in clock ticks, or 0 if it cannot be read. */
static uint64_t process_cpu_ticks(int pid)
{
    char path[64], text[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    /* The command name (field 2) may hold spaces: fields are counted after its ')'. */
    char *p = strrchr(text, ')');
    if (p == NULL)
        return 0;
    unsigned long long utime = 0, stime = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        return 0;
    return utime + stime;
}

static void fail(struct loadgen *g, int error, const char *what, const struct conn *c)
{
    if (g->fatal == 0) {
        fprintf(stderr, "spool-bench: %s (connection %u, %s): %s\n", what,
                c != NULL ? c->info.index : 0, g->config->target, strerror(-error));
        g->fatal = error;
    }
}

/* ---- frames ---------------------------------------------------------------------------- */

/* Take a free frame slot; the caller fills kind, jobs and replies_left. */
static struct frame *frame_push(struct conn *c, uint32_t depth, struct slot **slots, uint32_t batch)
{
    SPOOL_ASSERT(c->outstanding < depth);
    SPOOL_ASSERT(c->free_count > 0);
    uint32_t at = c->free[--c->free_count];
    c->fifo[(c->fifo_head + c->outstanding) % depth] = at;
    c->outstanding++;
    *slots = c->slots + (size_t)at * batch;
    struct frame *f = &c->frames[at];
    SPOOL_ASSERT(!f->active);
    *f = (struct frame){.active = true, .tag = (++c->tag_seq << FRAME_INDEX_BITS) | at};
    return f;
}

/* The frame a reply answers: by its tag, or the oldest outstanding one. NULL if none. */
static struct frame *frame_for_reply(const struct loadgen *g, struct conn *c, uint64_t tag)
{
    if (c->outstanding == 0)
        return NULL;
    if (!g->config->driver->tagged)
        return &c->frames[c->fifo[c->fifo_head]];
    struct frame *f = &c->frames[tag & (DEPTH_MAX - 1)];
    if ((tag & (DEPTH_MAX - 1)) >= g->config->depth || !f->active || f->tag != tag)
        return NULL;
    return f;
}

/* Retire a completed frame. With in-order replies it is the FIFO's head; with tags it may be
 * anywhere, and the FIFO (only used for in-order drivers) is not kept. */
static void frame_pop(const struct loadgen *g, struct conn *c, struct frame *f)
{
    uint32_t at = (uint32_t)(f - c->frames);
    SPOOL_ASSERT(f->active && c->outstanding > 0);
    if (!g->config->driver->tagged) {
        SPOOL_ASSERT(c->fifo[c->fifo_head] == at);
        c->fifo_head = (c->fifo_head + 1) % g->config->depth;
    }
    f->active = false;
    c->outstanding--;
    c->free[c->free_count++] = at;
}

static void issue_setup(struct loadgen *g, struct conn *c)
{
    uint32_t replies = 0;
    struct slot *slots;
    struct frame *f = frame_push(c, g->config->depth, &slots, g->frame_slots);
    f->kind = BENCH_FRAME_SETUP;
    f->sent_ns = g->now_ns;
    int rc = g->config->driver->encode_setup(&c->info, f->tag, &c->out, &replies);
    if (rc != 0) {
        fail(g, rc, "encoding setup", c);
        return;
    }
    f->replies_left = replies;
    if (replies == 0) {
        frame_pop(g, c, f);
        c->setup_done = true;
    }
}

static int64_t intended_ns(const struct loadgen *g, uint64_t k)
{
    return g->start_ns + (int64_t)((double)k * 1e9 / g->config->rate);
}

/* Jobs the producers may put now (at most max). */
static uint32_t jobs_due(const struct loadgen *g, uint32_t max)
{
    if (g->stop_issuing || (g->phase != PHASE_RUN && g->phase != PHASE_PREFILL))
        return 0;
    uint64_t limit = g->config->count > 0 ? g->config->count : UINT64_MAX;
    if (g->issue_limit < limit)
        limit = g->issue_limit;
    if (g->config->rate > 0) {
        double elapsed = (double)(g->now_ns - g->start_ns) * 1e-9;
        uint64_t due = (uint64_t)(elapsed * g->config->rate) + 1;
        if (due < limit)
            limit = due;
    }
    uint64_t left = limit > g->issued ? limit - g->issued : 0;
    if (g->config->mode == LOADGEN_E2E && g->config->rate == 0) {
        uint64_t in_queue = g->issued - g->consumed - g->put_failed;
        uint64_t room = g->backlog_max > in_queue ? g->backlog_max - in_queue : 0;
        left = room < left ? room : left;
    }
    return left < max ? (uint32_t)left : max;
}

static void issue_put(struct loadgen *g, struct conn *c, uint32_t n)
{
    const struct loadgen_config *cfg = g->config;
    struct slot *slots;
    struct frame *f = frame_push(c, cfg->depth, &slots, g->frame_slots);
    f->kind = BENCH_FRAME_PUT;
    f->jobs = n;
    f->sent_ns = g->now_ns;
    uint8_t *window = bench_bodies_window(&g->bodies, n);
    for (uint32_t i = 0; i < n; i++) {
        int64_t t = cfg->rate > 0 ? intended_ns(g, g->issued + i) : g->now_ns;
        slots[i].t_ns = t;
        if (cfg->rate > 0 && g->measuring)
            histogram_record(&g->result->send_lag, (uint64_t)(g->now_ns > t ? g->now_ns - t : 0));
        bench_bodies_stamp(&g->bodies, window + (size_t)i * cfg->size, t);
    }
    g->issued += n;
    int rc = cfg->driver->encode_put(&c->info, f->tag, &c->out, window, cfg->size, n,
                                     &f->replies_left);
    if (rc != 0)
        fail(g, rc, "encoding put", c);
    SPOOL_ASSERT(rc != 0 || f->replies_left > 0);
}

static bool consumers_may_reserve(const struct loadgen *g)
{
    if (g->phase == PHASE_PREFILL || g->phase == PHASE_DONE)
        return false;
    if (g->config->mode == LOADGEN_CONSUME)
        return g->received < g->produced && !g->stop_issuing;
    /* e2e: keep reserving until every confirmed put has been handed out. */
    return !(g->stop_issuing && g->received >= g->produced);
}

/*
 * A reserve that waits at the server holds up every request pipelined behind it on its
 * connection (beanstalkd and Redis both serve a connection's requests in order), so a
 * consumer sends a waiting reserve only when nothing else is outstanding (spool would not
 * need this, but every target gets the same policy), and for one job where a reserve of B is
 * B requests that would each wait in turn (beanstalkd): a starved consumer waits for the next
 * job, then ramps up again. While jobs are there it fills its pipeline with reserves that do
 * not wait; when one of those comes back empty, it stops sending them until its pipeline has
 * drained (then waits, or in a drain rests).
 */
static void issue_reserve(struct loadgen *g, struct conn *c)
{
    const struct loadgen_config *cfg = g->config;
    bool more_coming = cfg->mode == LOADGEN_E2E && !g->stop_issuing;
    bool wait = more_coming && c->outstanding == 0;
    uint32_t count = wait && !cfg->driver->reserve_batches ? 1 : g->fetch_batch;
    struct slot *slots;
    struct frame *f = frame_push(c, cfg->depth, &slots, g->frame_slots);
    f->kind = BENCH_FRAME_RESERVE;
    f->jobs = count;
    f->sent_ns = g->now_ns;
    int rc = cfg->driver->encode_reserve(&c->info, f->tag, &c->out, count,
                                         wait ? RESERVE_BLOCK_MS : 0, &f->replies_left);
    if (rc != 0)
        fail(g, rc, "encoding reserve", c);
    c->waiting = wait;
}

/* Ack the jobs a completed reserve frame received: slots are copied out first because the
 * ack frame may take the very ring position the reserve just left. */
static void issue_ack(struct loadgen *g, struct conn *c, const struct slot *from, uint32_t n)
{
    static struct slot staged[BENCH_BATCH_MAX];
    static struct bench_job jobs[BENCH_BATCH_MAX];
    SPOOL_ASSERT(n > 0 && n <= g->fetch_batch);
    memcpy(staged, from, n * sizeof(staged[0]));
    struct slot *slots;
    struct frame *f = frame_push(c, g->config->depth, &slots, g->frame_slots);
    f->kind = BENCH_FRAME_ACK;
    f->jobs = n;
    f->sent_ns = g->now_ns;
    for (uint32_t i = 0; i < n; i++) {
        slots[i] = staged[i];
        jobs[i] = (struct bench_job){.id = staged[i].id, .id2 = staged[i].id2};
    }
    int rc = g->config->driver->encode_ack(&c->info, f->tag, &c->out, jobs, n, &f->replies_left);
    if (rc != 0)
        fail(g, rc, "encoding ack", c);
}

static void pump(struct loadgen *g, struct conn *c)
{
    uint32_t depth = g->config->depth;
    if (!c->setup_done || g->fatal != 0)
        return;
    if (c->info.role == BENCH_PRODUCER) {
        uint32_t n;
        while (c->outstanding < depth && (n = jobs_due(g, g->config->batch)) > 0)
            issue_put(g, c, n);
        return;
    }
    if (g->now_ns < c->rest_until_ns || (c->found_empty && c->outstanding > 0))
        return;
    c->found_empty = false;
    while (c->outstanding < depth && consumers_may_reserve(g) && !c->waiting)
        issue_reserve(g, c);
}

/* ---- replies --------------------------------------------------------------------------- */

static void count_error(struct loadgen *g, const struct conn *c, const char *text)
{
    if (g->errors == 0)
        fprintf(stderr, "spool-bench: first error reply (connection %u): %s\n", c->info.index,
                text);
    g->errors++;
}

static void record_latency(struct loadgen *g, const struct slot *slots, uint32_t from, uint32_t n)
{
    if (!g->measuring)
        return;
    for (uint32_t i = from; i < from + n; i++)
        histogram_record(&g->result->latency,
                         (uint64_t)(g->now_ns > slots[i].t_ns ? g->now_ns - slots[i].t_ns : 0));
}

static void on_put_reply(struct loadgen *g, struct conn *c, struct frame *f, struct slot *slots)
{
    const struct bench_reply *r = g->reply;
    /* An error refuses one job, or on a frame's last reply every job not yet answered (a
     * spool PUT_BATCH is all or nothing). */
    uint32_t n = r->kind == BENCH_REPLY_OK ? r->count : 1;
    if (r->kind != BENCH_REPLY_OK && f->replies_left == 1)
        n = f->jobs - f->done;
    if (n > f->jobs - f->done) {
        fail(g, -EPROTO, "more put confirmations than puts", c);
        return;
    }
    if (r->kind == BENCH_REPLY_OK) {
        record_latency(g, slots, f->done, n);
        g->produced += n;
        if (g->measuring && g->config->mode == LOADGEN_PRODUCE)
            g->window_jobs += n;
    } else {
        count_error(g, c, r->error);
        g->errors += n - 1;
        g->put_failed += n;
    }
    f->done += n;
}

static void on_reserve_reply(struct loadgen *g, struct conn *c, struct frame *f, struct slot *slots)
{
    const struct bench_reply *r = g->reply;
    if (r->kind == BENCH_REPLY_ERROR) {
        count_error(g, c, r->error);
        c->rest_until_ns = g->now_ns + EMPTY_BACKOFF_NS; /* do not hammer a refusing server */
        return;
    }
    if (r->kind == BENCH_REPLY_EMPTY) {
        c->found_empty = true;
        if (!c->waiting) /* a reserve that did not wait: do not ask again at once */
            c->rest_until_ns = g->now_ns + EMPTY_BACKOFF_NS;
        return;
    }
    if (r->count > f->jobs - f->done) {
        fail(g, -EPROTO, "more jobs than the reserve asked for", c);
        return;
    }
    for (uint32_t i = 0; i < r->count; i++) {
        const struct bench_job *job = &r->jobs[i];
        slots[f->done + i] = (struct slot){.id = job->id, .id2 = job->id2, .t_ns = f->sent_ns};
        int64_t stamp;
        if (g->measuring && g->config->mode == LOADGEN_E2E &&
            bench_bodies_read_stamp(g->config->body, job->body, job->body_len, &stamp)) {
            histogram_record(&g->result->deliver,
                             (uint64_t)(g->now_ns > stamp ? g->now_ns - stamp : 0));
        }
    }
    f->done += r->count;
    g->received += r->count;
}

static void on_ack_reply(struct loadgen *g, struct conn *c, struct frame *f, struct slot *slots)
{
    const struct bench_reply *r = g->reply;
    if (r->kind != BENCH_REPLY_OK) {
        count_error(g, c, r->error);
        f->done++;
        return;
    }
    uint32_t n = r->count;
    if (n > f->jobs - f->done) {
        fail(g, -EPROTO, "more acks confirmed than sent", c);
        return;
    }
    if (g->config->mode == LOADGEN_CONSUME)
        record_latency(g, slots, f->done, n);
    f->done += n;
    g->consumed += n;
    if (g->measuring && g->config->mode != LOADGEN_PRODUCE)
        g->window_jobs += n;
    /* Redis and spool answer one reply for a whole batch of acks: the ones it did not
     * confirm were refused. */
    if (f->replies_left == 1 && f->done < f->jobs) {
        count_error(g, c, "ack not confirmed for every job");
        g->errors += f->jobs - f->done - 1;
        f->done = f->jobs;
    }
}

/* Does a reply of this kind answer a frame of that kind at all? */
static bool reply_fits(enum bench_frame_kind frame, enum bench_reply_kind reply)
{
    if (reply == BENCH_REPLY_ERROR)
        return true;
    bool reserve_reply = reply == BENCH_REPLY_JOBS || reply == BENCH_REPLY_EMPTY;
    return reserve_reply == (frame == BENCH_FRAME_RESERVE);
}

static void on_reply(struct loadgen *g, struct conn *c)
{
    struct frame *f = frame_for_reply(g, c, g->reply->tag);
    if (f == NULL || !reply_fits(f->kind, g->reply->kind)) {
        fail(g, -EPROTO,
             f == NULL ? "a reply to no outstanding request" : "a reply of the wrong kind", c);
        return;
    }
    uint32_t at = (uint32_t)(f - c->frames);
    struct slot *slots = c->slots + (size_t)at * g->frame_slots;
    SPOOL_ASSERT(f->replies_left > 0);
    switch (f->kind) {
    case BENCH_FRAME_SETUP:
        if (g->reply->kind != BENCH_REPLY_OK) {
            fprintf(stderr, "spool-bench: setup refused: %s\n", g->reply->error);
            fail(g, -EPROTO, "setup", c);
        }
        break;
    case BENCH_FRAME_PUT:
        on_put_reply(g, c, f, slots);
        break;
    case BENCH_FRAME_RESERVE:
        on_reserve_reply(g, c, f, slots);
        break;
    case BENCH_FRAME_ACK:
        on_ack_reply(g, c, f, slots);
        break;
    }
    if (g->reply->failed > 0) {
        count_error(g, c, "jobs of a batch refused");
        g->errors += g->reply->failed - 1;
    }
    if (--f->replies_left > 0)
        return;
    frame_pop(g, c, f);
    if (f->kind == BENCH_FRAME_SETUP)
        c->setup_done = true;
    if (f->kind == BENCH_FRAME_RESERVE)
        c->waiting = false; /* only the one waiting reserve can be outstanding then */
    if (f->kind == BENCH_FRAME_RESERVE && f->done > 0)
        issue_ack(g, c, slots, f->done);
}

/* Parse every complete reply in the input buffer. */
static void parse_input(struct loadgen *g, struct conn *c)
{
    while (bench_buf_pending(&c->in) > 0 && g->fatal == 0) {
        if (c->outstanding == 0) {
            fail(g, -EPROTO, "bytes from the server with no request outstanding", c);
            return;
        }
        enum bench_frame_kind kind = g->config->driver->tagged
                                         ? BENCH_FRAME_SETUP /* a hint only: see driver.h */
                                         : c->frames[c->fifo[c->fifo_head]].kind;
        g->reply->failed = 0;
        g->reply->tag = 0;
        int64_t used = g->config->driver->parse(&c->info, kind, bench_buf_start(&c->in),
                                                bench_buf_pending(&c->in), g->reply);
        if (used < 0) {
            fail(g, (int)used, "malformed reply", c);
            return;
        }
        if (used == 0)
            return;
        on_reply(g, c);
        bench_buf_consume(&c->in, (size_t)used);
    }
}

/* ---- sockets --------------------------------------------------------------------------- */

static int conn_connect(const char *host, uint16_t port)
{
    char port_text[8];
    snprintf(port_text, sizeof(port_text), "%u", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(host, port_text, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "spool-bench: %s: %s\n", host, gai_strerror(rc));
        return -EHOSTUNREACH;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        int error = -errno;
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return error;
    }
    freeaddrinfo(res);
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
        int error = -errno;
        close(fd);
        return error;
    }
    return fd;
}

static void set_want_write(struct loadgen *g, struct conn *c, bool want)
{
    if (c->want_write == want)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(g->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        fail(g, -errno, "epoll_ctl", c);
    c->want_write = want;
}

static void conn_flush(struct loadgen *g, struct conn *c)
{
    while (bench_buf_pending(&c->out) > 0) {
        ssize_t n = send(c->fd, bench_buf_start(&c->out), bench_buf_pending(&c->out), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0) {
            fail(g, -errno, "send", c);
            return;
        }
        bench_buf_consume(&c->out, (size_t)n);
    }
    set_want_write(g, c, bench_buf_pending(&c->out) > 0);
}

static void conn_read(struct loadgen *g, struct conn *c)
{
    for (;;) {
        /* Leave room for a whole read; the buffer grows only when a reply is larger. */
        int rc = bench_buf_reserve(&c->in, BUF_BYTES_INITIAL / 2);
        if (rc != 0) {
            fail(g, rc, "reply larger than the input buffer", c);
            return;
        }
        size_t room = c->in.cap - c->in.len;
        ssize_t n = recv(c->fd, c->in.data + c->in.len, room, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            fail(g, n == 0 ? -ECONNRESET : -errno, "server closed the connection", c);
            return;
        }
        c->in.len += (size_t)n;
        parse_input(g, c);
        if ((size_t)n < room)
            return;
    }
}

static int conn_open(struct loadgen *g, struct conn *c, enum bench_role role, uint32_t index,
                     uint32_t role_index)
{
    const struct loadgen_config *cfg = g->config;
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->info.role = role;
    c->info.index = index;
    c->info.ttr_s = cfg->ttr_s;
    /* Closed-loop e2e keeps at most backlog_max jobs unconsumed, so a stream trimmed to 8x
     * that, at least 100k, never loses one a consumer has not had. (An open loop may fall
     * behind without bound: its stream is not trimmed.) */
    if (cfg->mode == LOADGEN_E2E && cfg->rate == 0)
        c->info.stream_maxlen = g->backlog_max * 8 > E2E_STREAM_MAXLEN_MIN
                                    ? g->backlog_max * 8
                                    : E2E_STREAM_MAXLEN_MIN;
    snprintf(c->info.queue, sizeof(c->info.queue), "%s-q%u", cfg->queue_prefix,
             role_index % cfg->queues);
    snprintf(c->info.group, sizeof(c->info.group), "bench");
    snprintf(c->info.consumer, sizeof(c->info.consumer), "c%u", index);
    c->frames = calloc(cfg->depth, sizeof(c->frames[0]));
    c->slots = calloc((size_t)cfg->depth * g->frame_slots, sizeof(c->slots[0]));
    c->free = calloc(cfg->depth, sizeof(c->free[0]));
    c->fifo = calloc(cfg->depth, sizeof(c->fifo[0]));
    if (c->frames == NULL || c->slots == NULL || c->free == NULL || c->fifo == NULL ||
        bench_buf_init(&c->in, BUF_BYTES_INITIAL, BUF_BYTES_MAX) != 0 ||
        bench_buf_init(&c->out, BUF_BYTES_INITIAL, BUF_BYTES_MAX) != 0)
        return -ENOMEM;
    for (uint32_t i = 0; i < cfg->depth; i++) /* popped from the end: slot 0 goes first */
        c->free[c->free_count++] = cfg->depth - 1 - i;
    c->fd = conn_connect(cfg->host, cfg->port);
    if (c->fd < 0) {
        fprintf(stderr, "spool-bench: connect %s:%u: %s\n", cfg->host, cfg->port, strerror(-c->fd));
        return c->fd;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(g->epoll_fd, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        return -errno;
    issue_setup(g, c);
    return g->fatal;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    bench_buf_free(&c->in);
    bench_buf_free(&c->out);
    free(c->frames);
    free(c->slots);
    free(c->free);
    free(c->fifo);
}

/* ---- the run --------------------------------------------------------------------------- */

static bool producers_idle(const struct loadgen *g)
{
    for (uint32_t i = 0; i < g->conn_count; i++)
        if (g->conns[i].info.role == BENCH_PRODUCER && g->conns[i].outstanding > 0)
            return false;
    return true;
}

static bool acks_outstanding(const struct loadgen *g)
{
    for (uint32_t i = 0; i < g->conn_count; i++) {
        const struct conn *c = &g->conns[i];
        for (uint32_t k = 0; k < g->config->depth && c->outstanding > 0; k++)
            if (c->frames[k].active && c->frames[k].kind == BENCH_FRAME_ACK)
                return true;
    }
    return false;
}

static void start_measuring(struct loadgen *g)
{
    g->measuring = true;
    g->measure_ns = g->now_ns;
    g->window_jobs = 0;
    g->progress_jobs = 0;
    histogram_reset(&g->result->latency);
    histogram_reset(&g->result->deliver);
    histogram_reset(&g->result->send_lag);
    if (g->config->server_pid > 0)
        g->cpu_ticks_start = process_cpu_ticks(g->config->server_pid);
    if (g->config->count == 0)
        g->end_ns = g->now_ns + (int64_t)(g->config->duration_s * 1e9);
}

/* Has the run reached its end (all work of the last phase answered)? */
static bool run_finished(const struct loadgen *g)
{
    const struct loadgen_config *cfg = g->config;
    if (g->phase == PHASE_PREFILL || acks_outstanding(g))
        return false;
    if (cfg->mode == LOADGEN_CONSUME)
        return g->received >= g->produced || g->stop_issuing;
    if (!g->stop_issuing || !producers_idle(g))
        return false;
    return cfg->mode == LOADGEN_PRODUCE || g->received >= g->produced;
}

static void stop_issuing(struct loadgen *g)
{
    if (g->stop_issuing)
        return;
    g->stop_issuing = true;
    g->drain_deadline_ns = g->now_ns + (int64_t)(LOADGEN_DRAIN_S * 1e9);
}

/* The measured time is over. In closed loop, producing stops. In open loop every job that was
 * due by then is still sent, however late (the server held the producers back), so that its
 * latency from the intended time is counted instead of silently dropped; only jobs still unsent
 * LOADGEN_DRAIN_S later are given up, and counted as errors. */
static void reach_end(struct loadgen *g)
{
    const struct loadgen_config *cfg = g->config;
    if (cfg->rate == 0 || cfg->mode == LOADGEN_CONSUME) {
        stop_issuing(g);
        return;
    }
    if (g->issue_limit == UINT64_MAX)
        g->issue_limit = (uint64_t)((double)(g->end_ns - g->start_ns) * 1e-9 * cfg->rate) + 1;
    if (g->issued >= g->issue_limit) {
        stop_issuing(g);
    } else if (g->now_ns >= g->end_ns + (int64_t)(LOADGEN_DRAIN_S * 1e9)) {
        fprintf(stderr, "spool-bench: %llu jobs due were never sent\n",
                (unsigned long long)(g->issue_limit - g->issued));
        g->errors += g->issue_limit - g->issued;
        stop_issuing(g);
    }
}

/* Move between phases and stop producing when the count or the time is reached. */
static void advance(struct loadgen *g)
{
    const struct loadgen_config *cfg = g->config;
    if (g->phase == PHASE_PREFILL) {
        if (g->issued < cfg->count || !producers_idle(g))
            return;
        fprintf(stderr, "spool-bench: pre-filled %llu jobs\n", (unsigned long long)g->produced);
        g->phase = PHASE_RUN;
        start_measuring(g);
        g->end_ns = g->now_ns + (int64_t)(cfg->duration_s * 1e9);
        return;
    }
    if (!g->measuring && g->now_ns >= g->start_ns + (int64_t)(cfg->warmup_s * 1e9))
        start_measuring(g);
    if (cfg->mode != LOADGEN_CONSUME && cfg->count > 0 && g->issued >= cfg->count)
        stop_issuing(g);
    if (g->measuring && g->end_ns > 0 && g->now_ns >= g->end_ns)
        reach_end(g);
    if (run_finished(g)) {
        g->phase = PHASE_DONE;
    } else if (g->stop_issuing && g->now_ns >= g->drain_deadline_ns) {
        fprintf(stderr, "spool-bench: drain timed out after %.0f s\n", LOADGEN_DRAIN_S);
        g->phase = PHASE_DONE;
    }
}

static void progress(struct loadgen *g)
{
    if (g->now_ns < g->progress_next_ns)
        return;
    g->progress_next_ns += NS_PER_S;
    if (!g->config->progress)
        return;
    uint64_t done = g->phase == PHASE_PREFILL ? g->produced : g->window_jobs;
    fprintf(stderr, "progress t=%.1fs phase=%s jobs=%llu rate=%llu/s errors=%llu\n",
            (double)(g->now_ns - g->start_ns) * 1e-9,
            g->phase == PHASE_PREFILL ? "prefill"
            : g->measuring            ? "run"
                                      : "warmup",
            (unsigned long long)done, (unsigned long long)(done - g->progress_jobs),
            (unsigned long long)g->errors);
    g->progress_jobs = done;
}

/* How long epoll may sleep: until the next timer of the run (ns, >= 0). */
static int64_t sleep_ns(const struct loadgen *g)
{
    const struct loadgen_config *cfg = g->config;
    int64_t next = g->progress_next_ns;
    if (!g->measuring && g->phase != PHASE_PREFILL) {
        int64_t warm_end = g->start_ns + (int64_t)(cfg->warmup_s * 1e9);
        next = warm_end < next ? warm_end : next;
    }
    if (g->measuring && g->end_ns > 0 && !g->stop_issuing) {
        /* Past the end, an open loop still sending its due jobs wakes to give up on them. */
        int64_t end =
            g->end_ns > g->now_ns ? g->end_ns : g->end_ns + (int64_t)(LOADGEN_DRAIN_S * 1e9);
        next = end < next ? end : next;
    }
    if (g->stop_issuing && g->drain_deadline_ns < next)
        next = g->drain_deadline_ns;
    /* A job already due waits for a producer's free slot, which a reply brings: no timer. */
    if (cfg->rate > 0 && !g->stop_issuing) {
        int64_t due = intended_ns(g, g->issued);
        if (due > g->now_ns && due < next)
            next = due;
    }
    for (uint32_t i = 0; i < g->conn_count; i++) {
        const struct conn *c = &g->conns[i];
        if (c->rest_until_ns > g->now_ns && c->rest_until_ns < next)
            next = c->rest_until_ns;
    }
    return next > g->now_ns ? next - g->now_ns : 0;
}

/* One turn: move the run on, send what is due, then sleep until a reply or a timer. */
static void loop_turn(struct loadgen *g)
{
    advance(g);
    progress(g);
    /* Rotate who goes first so that, in open loop, no producer is always served first. */
    static uint32_t first;
    first++;
    for (uint32_t i = 0; i < g->conn_count && g->phase != PHASE_DONE; i++)
        pump(g, &g->conns[(first + i) % g->conn_count]);
    for (uint32_t i = 0; i < g->conn_count && g->fatal == 0; i++)
        if (bench_buf_pending(&g->conns[i].out) > 0 && !g->conns[i].want_write)
            conn_flush(g, &g->conns[i]);
    if (g->phase == PHASE_DONE || g->fatal != 0)
        return;
    struct epoll_event events[EPOLL_EVENTS_MAX];
    g->now_ns = clock_now_ns(); /* the turn's work took time: sleep from now, not from then */
    int64_t wait_ns = sleep_ns(g);
    struct timespec timeout = {.tv_sec = wait_ns / NS_PER_S, .tv_nsec = wait_ns % NS_PER_S};
    int n = epoll_pwait2(g->epoll_fd, events, EPOLL_EVENTS_MAX, &timeout, NULL);
    if (n < 0 && errno != EINTR) {
        fail(g, -errno, "epoll_pwait2", NULL);
        return;
    }
    g->now_ns = clock_now_ns();
    for (int i = 0; i < n && g->fatal == 0; i++) {
        struct conn *c = events[i].data.ptr;
        if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            conn_read(g, c);
        if (events[i].events & EPOLLOUT)
            conn_flush(g, c);
    }
}

static int loadgen_setup(struct loadgen *g)
{
    const struct loadgen_config *cfg = g->config;
    /* produce mode has no consumers: nothing would drain what they reserve. */
    g->conn_count = cfg->producers + (cfg->mode == LOADGEN_PRODUCE ? 0 : cfg->consumers);
    g->conns = calloc(g->conn_count, sizeof(g->conns[0]));
    g->reply = malloc(sizeof(*g->reply));
    g->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (g->conns == NULL || g->reply == NULL)
        return -ENOMEM;
    if (g->epoll_fd < 0)
        return -errno;
    int rc = bench_bodies_init(&g->bodies, cfg->body, cfg->size, cfg->batch);
    if (rc != 0)
        return rc;
    for (uint32_t i = 0; i < g->conn_count; i++) {
        g->conns[i].fd = -1;
        bool producer = i < cfg->producers;
        rc = conn_open(g, &g->conns[i], producer ? BENCH_PRODUCER : BENCH_CONSUMER, i,
                       producer ? i : i - cfg->producers);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void loadgen_teardown(struct loadgen *g)
{
    for (uint32_t i = 0; g->conns != NULL && i < g->conn_count; i++)
        conn_close(&g->conns[i]);
    free(g->conns);
    bench_bodies_free(&g->bodies);
    free(g->reply);
    if (g->epoll_fd >= 0)
        close(g->epoll_fd);
}

static int check_config(const struct loadgen_config *cfg)
{
    if (cfg->driver == NULL || cfg->depth == 0 || cfg->depth > DEPTH_MAX || cfg->batch == 0 ||
        cfg->batch > BENCH_BATCH_MAX || cfg->fetch_batch > BENCH_BATCH_MAX || cfg->queues == 0 ||
        cfg->size == 0 || cfg->producers > CONNS_PER_ROLE_MAX ||
        cfg->consumers > CONNS_PER_ROLE_MAX)
        return -EINVAL;
    if (cfg->producers == 0 || (cfg->mode != LOADGEN_PRODUCE && cfg->consumers == 0))
        return -EINVAL;
    if (cfg->mode == LOADGEN_CONSUME && cfg->count == 0)
        return -EINVAL; /* consume drains a pre-fill of count jobs */
    if (cfg->count == 0 && !(cfg->duration_s > 0))
        return -EINVAL;
    return cfg->rate >= 0 && cfg->warmup_s >= 0 ? 0 : -EINVAL;
}

int loadgen_run(const struct loadgen_config *config, struct loadgen_result *result)
{
    int rc = check_config(config);
    if (rc != 0)
        return rc;
    struct loadgen g = {.config = config, .result = result, .epoll_fd = -1};
    memset(result, 0, sizeof(*result));
    histogram_reset(&result->latency);
    histogram_reset(&result->deliver);
    histogram_reset(&result->send_lag);
    result->server_cpu_s = -1;
    g.now_ns = g.start_ns = clock_now_ns();
    g.progress_next_ns = g.start_ns + NS_PER_S;
    g.phase = config->mode == LOADGEN_CONSUME ? PHASE_PREFILL : PHASE_RUN;
    g.issue_limit = UINT64_MAX;
    g.fetch_batch = loadgen_fetch_batch(config);
    g.frame_slots = config->batch > g.fetch_batch ? config->batch : g.fetch_batch;
    /* Enough in the queue for every consumer's whole pipeline of fetches, twice over. */
    g.backlog_max =
        (uint64_t)E2E_BACKLOG_FACTOR * config->consumers * config->depth * g.frame_slots;
    /* Timers fire on schedule, not up to the default 50 us slack late: the open loop's
     * schedule is the measurement. */
    (void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    rc = loadgen_setup(&g);
    if (rc == 0) {
        g.now_ns = g.start_ns = clock_now_ns(); /* the schedule starts once connected */
        g.progress_next_ns = g.start_ns + NS_PER_S;
        while (g.phase != PHASE_DONE && g.fatal == 0)
            loop_turn(&g);
        rc = g.fatal;
    }
    result->seconds = (double)(g.now_ns - g.measure_ns) * 1e-9;
    result->jobs = g.window_jobs;
    result->produced = g.produced;
    result->consumed = g.consumed;
    result->errors = g.errors;
    if (config->mode == LOADGEN_E2E && g.consumed < g.produced)
        result->errors += g.produced - g.consumed; /* put, confirmed, never consumed */
    if (config->server_pid > 0 && g.measuring) {
        uint64_t ticks = process_cpu_ticks(config->server_pid);
        result->server_cpu_s = (double)(ticks - g.cpu_ticks_start) / (double)sysconf(_SC_CLK_TCK);
    }
    loadgen_teardown(&g);
    return rc;
}

static double us(const struct histogram *h, double percent)
{
    return (double)histogram_percentile(h, percent) / 1000.0;
}

void loadgen_print_result(FILE *out, const struct loadgen_config *config,
                          const struct loadgen_result *result)
{
    double seconds = result->seconds > 0 ? result->seconds : 1e-9;
    double rate = (double)result->jobs / seconds;
    fprintf(out,
            "RESULT target=%s mode=%s producers=%u consumers=%u depth=%u batch=%u fetch_batch=%u "
            "size=%u body=%s queues=%u rate=%.0f jobs=%llu seconds=%.3f jobs_per_s=%.0f "
            "mb_per_s=%.2f "
            "lat_p50_us=%.1f lat_p90_us=%.1f lat_p99_us=%.1f lat_p999_us=%.1f lat_max_us=%.1f",
            config->target, loadgen_mode_name(config->mode), config->producers,
            config->mode == LOADGEN_PRODUCE ? 0 : config->consumers, config->depth, config->batch,
            config->mode == LOADGEN_PRODUCE ? 0 : loadgen_fetch_batch(config),
            config->size, bench_body_name(config->body), config->queues, config->rate,
            (unsigned long long)result->jobs, result->seconds, rate, rate * config->size / 1e6,
            us(&result->latency, 50), us(&result->latency, 90), us(&result->latency, 99),
            us(&result->latency, 99.9), us(&result->latency, 100));
    if (config->mode == LOADGEN_E2E)
        fprintf(out,
                " deliver_p50_us=%.1f deliver_p90_us=%.1f deliver_p99_us=%.1f "
                "deliver_p999_us=%.1f deliver_max_us=%.1f",
                us(&result->deliver, 50), us(&result->deliver, 90), us(&result->deliver, 99),
                us(&result->deliver, 99.9), us(&result->deliver, 100));
    if (config->rate > 0)
        fprintf(out, " send_lag_p50_us=%.1f send_lag_p99_us=%.1f", us(&result->send_lag, 50),
                us(&result->send_lag, 99));
    fprintf(out, " produced=%llu consumed=%llu errors=%llu server_cpu_s=%.2f\n",
            (unsigned long long)result->produced, (unsigned long long)result->consumed,
            (unsigned long long)result->errors, result->server_cpu_s);
}
