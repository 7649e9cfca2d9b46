/*
 * The load generator against a scripted in-process beanstalkd (a thread on 127.0.0.1 port 0
 * speaking enough of the text protocol: use, watch, ignore, put, reserve-with-timeout,
 * delete), so its bookkeeping is checked against a server whose every job is known: every
 * mode accounts for every job exactly, latencies are recorded once per job, the open loop
 * keeps its schedule, and a server that breaks the protocol or is not there fails the run.
 */
#include "check.h"
#include "loadgen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FAKE_CONNS_MAX 16
#define FAKE_JOBS_MAX 4096 /* every test puts fewer jobs than this */
#define FAKE_BODY_MAX 256

struct fake_job {
    uint32_t len;
    char body[FAKE_BODY_MAX];
};

struct fake_conn {
    int fd;
    char in[1 << 16];
    size_t len;
    bool waiting;
    int64_t deadline_ns;
};

struct fake {
    int listen_fd;
    uint16_t port;
    pthread_t thread;
    atomic_bool stop;
    struct fake_conn conns[FAKE_CONNS_MAX];
    struct fake_job jobs[FAKE_JOBS_MAX + 1]; /* by id; ids start at 1 */
    uint64_t next_id;
    uint64_t ready_head; /* ids [ready_head, next_id) not yet reserved, in order */
    bool reserved[FAKE_JOBS_MAX + 1];
    uint64_t deleted;
    uint64_t garbage_after_puts; /* 0 = never; else answer the Nth put with garbage */
    uint64_t stall_at_put;       /* 0 = never; else stall before answering the Nth put */
    int64_t stall_ms;
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void reply(struct fake_conn *c, const char *text, size_t len)
{
    while (len > 0) {
        ssize_t n = send(c->fd, text, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        text += n;
        len -= (size_t)n;
    }
}

static void reply_str(struct fake_conn *c, const char *text)
{
    reply(c, text, strlen(text));
}

static bool fake_hand_out(struct fake *f, struct fake_conn *c)
{
    if (f->ready_head >= f->next_id)
        return false;
    uint64_t id = f->ready_head++;
    f->reserved[id] = true;
    char line[64];
    snprintf(line, sizeof(line), "RESERVED %llu %u\r\n", (unsigned long long)id, f->jobs[id].len);
    reply_str(c, line);
    reply(c, f->jobs[id].body, f->jobs[id].len);
    reply_str(c, "\r\n");
    c->waiting = false;
    return true;
}

/* One command at the start of c->in: bytes used, 0 if incomplete. */
static size_t fake_command(struct fake *f, struct fake_conn *c)
{
    char *eol = memmem(c->in, c->len, "\r\n", 2);
    if (eol == NULL)
        return 0;
    size_t line_len = (size_t)(eol - c->in) + 2;
    unsigned pri, delay, ttr, bytes, timeout_s;
    unsigned long long id;
    if (sscanf(c->in, "put %u %u %u %u", &pri, &delay, &ttr, &bytes) == 4) {
        if (c->len < line_len + bytes + 2)
            return 0;
        REQUIRE(bytes <= FAKE_BODY_MAX && f->next_id <= FAKE_JOBS_MAX);
        if (f->stall_at_put != 0 && f->next_id == f->stall_at_put) {
            struct timespec stall = {.tv_sec = 0, .tv_nsec = f->stall_ms * 1000000};
            nanosleep(&stall, NULL);
        }
        uint64_t new_id = f->next_id++;
        f->jobs[new_id].len = bytes;
        memcpy(f->jobs[new_id].body, c->in + line_len, bytes);
        char line[64];
        if (f->garbage_after_puts != 0 && new_id == f->garbage_after_puts)
            snprintf(line, sizeof(line), "HELLO THERE\r\n");
        else
            snprintf(line, sizeof(line), "INSERTED %llu\r\n", (unsigned long long)new_id);
        reply_str(c, line);
        for (int i = 0; i < FAKE_CONNS_MAX; i++)
            if (f->conns[i].fd >= 0 && f->conns[i].waiting)
                fake_hand_out(f, &f->conns[i]);
        return line_len + bytes + 2;
    }
    if (sscanf(c->in, "reserve-with-timeout %u", &timeout_s) == 1) {
        if (!fake_hand_out(f, c)) {
            if (timeout_s == 0) {
                reply_str(c, "TIMED_OUT\r\n");
            } else {
                c->waiting = true;
                c->deadline_ns = now_ns() + (int64_t)timeout_s * 1000000000;
            }
        }
    } else if (sscanf(c->in, "delete %llu", &id) == 1) {
        bool ok = id <= FAKE_JOBS_MAX && f->reserved[id];
        if (ok) {
            f->reserved[id] = false;
            f->deleted++;
        }
        reply_str(c, ok ? "DELETED\r\n" : "NOT_FOUND\r\n");
    } else if (strncmp(c->in, "use ", 4) == 0) {
        reply_str(c, "USING t\r\n");
    } else if (strncmp(c->in, "watch ", 6) == 0) {
        reply_str(c, "WATCHING 2\r\n");
    } else if (strncmp(c->in, "ignore ", 7) == 0) {
        reply_str(c, "WATCHING 1\r\n");
    } else {
        reply_str(c, "UNKNOWN_COMMAND\r\n");
    }
    return line_len;
}

/* Run the complete commands buffered on c. A waiting reserve holds up the connection's later
 * commands, as in beanstalkd. */
static void fake_run(struct fake *f, struct fake_conn *c)
{
    size_t used;
    while (!c->waiting && (used = fake_command(f, c)) > 0) {
        memmove(c->in, c->in + used, c->len - used);
        c->len -= used;
    }
}

static void fake_input(struct fake *f, struct fake_conn *c)
{
    ssize_t n = recv(c->fd, c->in + c->len, sizeof(c->in) - c->len, 0);
    if (n <= 0) {
        close(c->fd);
        c->fd = -1;
        return;
    }
    c->len += (size_t)n;
    fake_run(f, c);
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd fds[FAKE_CONNS_MAX + 1];
        fds[0] = (struct pollfd){.fd = f->listen_fd, .events = POLLIN};
        for (int i = 0; i < FAKE_CONNS_MAX; i++)
            fds[i + 1] = (struct pollfd){.fd = f->conns[i].fd, .events = POLLIN};
        if (poll(fds, FAKE_CONNS_MAX + 1, 5) < 0)
            break;
        if (fds[0].revents & POLLIN) {
            int fd = accept(f->listen_fd, NULL, NULL);
            int one = 1; /* replies go out in pieces: no Nagle delay between them */
            if (fd >= 0)
                REQUIRE(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0);
            for (int i = 0; i < FAKE_CONNS_MAX && fd >= 0; i++)
                if (f->conns[i].fd < 0) {
                    f->conns[i] = (struct fake_conn){.fd = fd};
                    fd = -1;
                }
            REQUIRE(fd < 0); /* more connections than the fake holds */
        }
        for (int i = 0; i < FAKE_CONNS_MAX; i++) {
            struct fake_conn *c = &f->conns[i];
            if (c->fd >= 0 && (fds[i + 1].revents & (POLLIN | POLLHUP)))
                fake_input(f, c);
            if (c->fd >= 0 && c->waiting && now_ns() >= c->deadline_ns) {
                c->waiting = false;
                reply_str(c, "TIMED_OUT\r\n");
            }
        }
        /* A put may have served a waiting reserve: run what queued up behind it. */
        for (int i = 0; i < FAKE_CONNS_MAX; i++)
            if (f->conns[i].fd >= 0)
                fake_run(f, &f->conns[i]);
    }
    return NULL;
}

static struct fake *fake_start(void)
{
    static struct fake fake;
    struct fake *f = &fake;
    memset(f, 0, sizeof(*f));
    f->next_id = f->ready_head = 1;
    for (int i = 0; i < FAKE_CONNS_MAX; i++)
        f->conns[i].fd = -1;
    f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);
    REQUIRE(bind(f->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
    REQUIRE(listen(f->listen_fd, 16) == 0);
    REQUIRE(getsockname(f->listen_fd, (struct sockaddr *)&addr, &len) == 0);
    f->port = ntohs(addr.sin_port);
    REQUIRE(pthread_create(&f->thread, NULL, fake_main, f) == 0);
    return f;
}

static void fake_stop(struct fake *f)
{
    atomic_store(&f->stop, true);
    pthread_join(f->thread, NULL);
    for (int i = 0; i < FAKE_CONNS_MAX; i++)
        if (f->conns[i].fd >= 0)
            close(f->conns[i].fd);
    close(f->listen_fd);
}

static struct loadgen_config config_for(const struct fake *f, enum loadgen_mode mode)
{
    struct loadgen_config cfg;
    loadgen_config_defaults(&cfg);
    cfg.driver = &bench_driver_beanstalkd;
    cfg.target = "fake";
    cfg.mode = mode;
    cfg.port = f->port;
    cfg.progress = false;
    return cfg;
}

static struct loadgen_result result;

static void test_produce_counts_every_job(void)
{
    struct fake *f = fake_start();
    struct loadgen_config cfg = config_for(f, LOADGEN_PRODUCE);
    cfg.count = 500;
    cfg.producers = 3;
    cfg.depth = 4;
    cfg.batch = 3;
    CHECK_EQ(loadgen_run(&cfg, &result), 0);
    fake_stop(f);
    CHECK_EQ(result.jobs, 500);
    CHECK_EQ(result.produced, 500);
    CHECK_EQ(result.errors, 0);
    CHECK_EQ(result.latency.count, 500);
    CHECK_EQ(f->next_id - 1, 500); /* the server saw exactly that many puts */
    CHECK(result.seconds > 0);
}

static void test_consume_drains_the_prefill(void)
{
    struct fake *f = fake_start();
    struct loadgen_config cfg = config_for(f, LOADGEN_CONSUME);
    cfg.count = 300;
    cfg.producers = 2;
    cfg.consumers = 2;
    cfg.depth = 4;
    cfg.batch = 5;
    CHECK_EQ(loadgen_run(&cfg, &result), 0);
    fake_stop(f);
    CHECK_EQ(result.jobs, 300);
    CHECK_EQ(result.consumed, 300);
    CHECK_EQ(f->deleted, 300);
    CHECK_EQ(result.errors, 0);
    CHECK_EQ(result.latency.count, 300); /* reserve -> ack, once per job */
}

static void test_e2e_consumes_what_was_produced(void)
{
    struct fake *f = fake_start();
    struct loadgen_config cfg = config_for(f, LOADGEN_E2E);
    cfg.count = 400;
    cfg.producers = 2;
    cfg.consumers = 3;
    cfg.depth = 8;
    cfg.batch = 2;
    CHECK_EQ(loadgen_run(&cfg, &result), 0);
    fake_stop(f);
    CHECK_EQ(result.produced, 400);
    CHECK_EQ(result.consumed, 400);
    CHECK_EQ(result.jobs, 400);
    CHECK_EQ(f->deleted, 400);
    CHECK_EQ(result.errors, 0);
    CHECK_EQ(result.latency.count, 400);
    CHECK_EQ(result.deliver.count, 400);
}

static void test_e2e_duration_with_warmup(void)
{
    struct fake *f = fake_start();
    struct loadgen_config cfg = config_for(f, LOADGEN_E2E);
    cfg.duration_s = 0.3;
    cfg.warmup_s = 0.1;
    cfg.rate = 2000; /* about 800 jobs: within what the fake holds */
    cfg.depth = 4;
    CHECK_EQ(loadgen_run(&cfg, &result), 0);
    fake_stop(f);
    CHECK(result.jobs > 0);
    CHECK_EQ(result.produced, result.consumed);
    CHECK(result.jobs < result.consumed);            /* warmup jobs are not in the window */
    CHECK(result.jobs >= 500 && result.jobs <= 700); /* 0.3 s at 2000/s, give or take */
    CHECK(result.seconds >= 0.3 && result.seconds < 3.0);
    CHECK_EQ(result.errors, 0);
}

static void test_open_loop_keeps_its_schedule(void)
{
    struct fake *f = fake_start();
    struct loadgen_config cfg = config_for(f, LOADGEN_E2E);
    cfg.count = 200;
    cfg.rate = 1000; /* 200 jobs due over 0.2 s, whatever the server does */
    cfg.depth = 4;
    CHECK_EQ(loadgen_run(&cfg, &result), 0);
    fake_stop(f);
    CHECK_EQ(result.consumed, 200);
    CHECK(result.seconds >= 0.19);
    CHECK(result.seconds < 2.0);
}

/* A server that stalls near the end holds the producers back past the end of the run; the
 * jobs that fell due meanwhile are still sent when it recovers, and their latency counts from
 * when they were due, instead of the run ending without them. */
static void test_open_loop_counts_a_stall(void)
{
    struct fake *f = fake_start();
    f->stall_at_put = 300; /* at about 0.3 s of 0.4 */
    f->stall_ms = 200;
    struct loadgen_config cfg = config_for(f, LOADGEN_PRODUCE);
    cfg.duration_s = 0.4;
    cfg.rate = 1000;
    cfg.depth = 2;
    CHECK_EQ(loadgen_run(&cfg, &result), 0);
    fake_stop(f);
    CHECK(result.produced >= 400 && result.produced <= 402); /* every job due in 0.4 s */
    CHECK_EQ(result.errors, 0);
    CHECK(histogram_percentile(&result.latency, 100) >= 190000000ull); /* waited out the stall */
    /* About a quarter of the jobs fell due during the stall and were sent late. */
    CHECK(histogram_percentile(&result.send_lag, 90) >= 20000000ull);
}

static void test_protocol_violation_fails_the_run(void)
{
    struct fake *f = fake_start();
    f->garbage_after_puts = 7;
    struct loadgen_config cfg = config_for(f, LOADGEN_PRODUCE);
    cfg.count = 50;
    CHECK_EQ(loadgen_run(&cfg, &result), -EPROTO);
    fake_stop(f);
}

static void test_no_server_fails_the_run(void)
{
    struct fake *f = fake_start();
    struct loadgen_config cfg = config_for(f, LOADGEN_PRODUCE);
    fake_stop(f); /* the port is closed now */
    cfg.count = 10;
    CHECK(loadgen_run(&cfg, &result) < 0);
    cfg.depth = 0;
    CHECK_EQ(loadgen_run(&cfg, &result), -EINVAL);
}

int main(void)
{
    RUN_TEST(test_produce_counts_every_job);
    RUN_TEST(test_consume_drains_the_prefill);
    RUN_TEST(test_e2e_consumes_what_was_produced);
    RUN_TEST(test_e2e_duration_with_warmup);
    RUN_TEST(test_open_loop_keeps_its_schedule);
    RUN_TEST(test_open_loop_counts_a_stall);
    RUN_TEST(test_protocol_violation_fails_the_run);
    RUN_TEST(test_no_server_fails_the_run);
    return check_exit();
}
