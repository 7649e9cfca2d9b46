/* The edge of spoold as an attacker sees it (issue 10): capabilities a client holds must not
 * reveal anyone else's. Each test drives the real spoold on 127.0.0.1 through libspool. */
#include <spool/client.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "spoold_harness.h"

static struct spoold server;

static spool_client *client_of(const struct spoold *s)
{
    spool_client *c = NULL;
    int rc = spool_connect(s->addr, 5000, &c);
    if (rc != 0)
        fprintf(stderr, "connect %s: %s\n", s->addr, spool_strerror(rc));
    REQUIRE(rc == 0);
    return c;
}

static spool_client *client(void)
{
    return client_of(&server);
}

static struct spool_delivery *reserve_one_of(spool_client *c, const char *queue)
{
    const char *queues[1] = {queue};
    struct spool_delivery *d = NULL;
    size_t count = 0;
    REQUIRE(spool_reserve(c, queues, 1, 1, 1000, 0, &d, &count) == 0);
    REQUIRE(count == 1);
    return d;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A TCP connection that never says anything. */
static int idle_connect(const struct spoold *s)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(s->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    return fd;
}

/* Milliseconds until the server closes fd (reading and dropping what it sends), or -1 if it
 * is still open after limit_ms. */
static int64_t ms_until_closed(int fd, int64_t limit_ms)
{
    int64_t start = mono_ms();
    struct timeval tv = {.tv_sec = 0, .tv_usec = 100 * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    while (mono_ms() - start < limit_ms) {
        char buf[256];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return mono_ms() - start;
    }
    return -1;
}

static void le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8);
}

static void le32(uint8_t *p, uint32_t v)
{
    le16(p, (uint16_t)v), le16(p + 2, (uint16_t)(v >> 16));
}

static void le64(uint8_t *p, uint64_t v)
{
    le32(p, (uint32_t)v), le32(p + 4, (uint32_t)(v >> 32));
}

/* Inverse of x ^= x >> shift on 64 bits. */
static uint64_t unxorshift(uint64_t y, int shift)
{
    uint64_t x = y;
    for (int s = shift; s < 64; s += shift)
        x ^= y >> s;
    return x;
}

/* Inverse of an odd constant modulo 2^64 (Newton's iteration doubles the correct bits). */
static uint64_t mul_inverse(uint64_t c)
{
    uint64_t inv = c;
    for (int i = 0; i < 6; i++)
        inv *= 2 - c * inv;
    return inv;
}

static uint64_t splitmix_finalize(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t splitmix_unfinalize(uint64_t token)
{
    uint64_t x = unxorshift(token, 31);
    x = unxorshift(x * mul_inverse(0x94d049bb133111ebull), 27);
    return unxorshift(x * mul_inverse(0xbf58476d1ce4e5b9ull), 30);
}

/* Worker A holds a delivery and guesses worker B's lease from its own, the way tokens used
 * to be made (splitmix64 of a counter plus a seed: invertible, so one token gave the counter
 * and every next token). With keyed tokens the guess must fail, and B's ack still works. */
static void test_lease_tokens_unguessable_from_another(void)
{
    REQUIRE(splitmix_unfinalize(splitmix_finalize(12345)) == 12345); /* the attack is sound */
    spool_client *a = client();
    spool_client *b = client();
    uint64_t ids[2];
    for (int i = 0; i < 2; i++) {
        struct spool_job_spec spec = {.queue = "edge-lease", .body = "x", .body_len = 1};
        REQUIRE(spool_put(a, &spec, &ids[i]) == 0);
    }
    struct spool_delivery *da = reserve_one_of(a, "edge-lease");
    struct spool_delivery *db = reserve_one_of(b, "edge-lease");
    uint64_t guesses[4] = {
        splitmix_finalize(splitmix_unfinalize(da->lease) + 1),
        splitmix_finalize(splitmix_unfinalize(da->lease) - 1),
        da->lease + 1,
        da->lease ^ 1,
    };
    for (size_t i = 0; i < 4; i++) {
        CHECK(guesses[i] != db->lease);
        int rc = spool_ack(a, db->id, guesses[i], NULL, 0);
        CHECK(rc == SPOOL_E_LEASE_EXPIRED);
    }
    CHECK_EQ(spool_ack(b, db->id, db->lease, NULL, 0), 0);
    CHECK_EQ(spool_ack(a, da->id, da->lease, NULL, 0), 0);
    spool_deliveries_free(da);
    spool_deliveries_free(db);
    spool_close(a);
    spool_close(b);
}

/* Many deliveries of one job (released each time): every token differs. */
static void test_lease_tokens_distinct(void)
{
    spool_client *c = client();
    struct spool_job_spec spec = {.queue = "edge-distinct", .body = "x", .body_len = 1,
                                  .max_attempts = SPOOL_ATTEMPTS_UNLIMITED};
    uint64_t id;
    REQUIRE(spool_put(c, &spec, &id) == 0);
    uint64_t seen[64];
    for (size_t i = 0; i < 64; i++) {
        struct spool_delivery *d = reserve_one_of(c, "edge-distinct");
        seen[i] = d->lease;
        CHECK(d->lease != 0);
        for (size_t j = 0; j < i; j++)
            CHECK(seen[j] != seen[i]);
        CHECK_EQ(spool_release(c, d->id, d->lease, 0, -1), 0);
        spool_deliveries_free(d);
    }
    spool_close(c);
}

/* A put that can never fit the queue's byte limit is TOO_LARGE (final), not QUEUE_FULL
 * ("retry later", which would never succeed); one that does not fit now is QUEUE_FULL. */
static void test_put_larger_than_queue_limit(void)
{
    struct spoold s;
    const char *args[] = {"--max-queue-bytes", "100", NULL};
    REQUIRE(spoold_start(&s, "qbytes", args) == 0);
    spool_client *c = client_of(&s);
    char body[150];
    memset(body, 'b', sizeof(body));
    struct spool_job_spec spec = {.queue = "edge-small", .body = body, .body_len = 150};
    uint64_t id;
    CHECK_EQ(spool_put(c, &spec, &id), SPOOL_E_TOO_LARGE);
    spec.body_len = 60;
    CHECK_EQ(spool_put(c, &spec, &id), 0);
    CHECK_EQ(spool_put(c, &spec, &id), SPOOL_E_QUEUE_FULL);
    /* The same in a batch: one job that can never fit makes the batch TOO_LARGE. */
    struct spool_job_spec jobs[2] = {spec, spec};
    jobs[0].queue = jobs[1].queue = "edge-small-2";
    jobs[0].body_len = 10;
    jobs[1].body_len = 150;
    CHECK_EQ(spool_put_batch(c, jobs, 2, NULL), SPOOL_E_TOO_LARGE);
    jobs[1].body_len = 95; /* 105 bytes for one queue in one batch: never fits either */
    CHECK_EQ(spool_put_batch(c, jobs, 2, NULL), SPOOL_E_TOO_LARGE);
    CHECK_EQ(spool_put(c, &jobs[0], &id), 0); /* 10 bytes queued */
    jobs[1].body_len = 85; /* 95 more: would fit an empty queue, not this one now */
    CHECK_EQ(spool_put_batch(c, jobs, 2, NULL), SPOOL_E_QUEUE_FULL);
    jobs[1].body_len = 80;
    CHECK_EQ(spool_put_batch(c, jobs, 2, NULL), 0);
    spool_close(c);
    CHECK_EQ(spoold_stop(&s), 0);
    spoold_cleanup(&s);
}

/* A HELLO whose auth field is over the text limit gets an error and the connection closes at
 * once (it used to stay open, unauthenticated, waiting for another try). */
static void test_overlong_auth_closes(void)
{
    int fd = idle_connect(&server);
    enum { AUTH_LEN = 1100 };
    static uint8_t frame[16 + 8 + 2 + 2 + AUTH_LEN];
    size_t len = sizeof(frame);
    uint8_t *p = frame;
    le32(p, (uint32_t)len), le16(p + 4, 0x0001), le16(p + 6, 0), le64(p + 8, 7);
    p += 16;
    le32(p, 0x4C4F5053u), le16(p + 4, 1), le16(p + 6, 1); /* magic, versions 1..1 */
    le16(p + 8, 0);                                        /* client_name: empty */
    le16(p + 10, AUTH_LEN);                                /* auth: too long */
    memset(p + 12, 'a', AUTH_LEN);
    REQUIRE(send(fd, frame, len, MSG_NOSIGNAL) == (ssize_t)len);
    int64_t closed_ms = ms_until_closed(fd, 3000);
    CHECK(closed_ms >= 0);
    close(fd);
}

/* A connection that never sends HELLO is closed after --handshake-timeout (it used to stay
 * forever); one that said HELLO and then idles is not. */
static void test_handshake_timeout(void)
{
    struct spoold s;
    const char *args[] = {"--handshake-timeout", "300", NULL};
    REQUIRE(spoold_start(&s, "handshake", args) == 0);
    int idle = idle_connect(&s);
    spool_client *c = NULL;
    REQUIRE(spool_connect(s.addr, 5000, &c) == 0);
    int64_t closed_ms = ms_until_closed(idle, 5000);
    CHECK(closed_ms >= 250);
    CHECK(closed_ms >= 0 && closed_ms < 5000);
    CHECK_EQ(spool_ping(c), 0); /* after HELLO, idling is fine */
    spool_close(c);
    close(idle);
    CHECK_EQ(spoold_stop(&s), 0);
    spoold_cleanup(&s);
}

/* Sockets that never authenticate cannot lock real clients out: they have their own pool
 * (--max-handshakes), and the oldest makes room for a new one. 300 idle sockets against a
 * server of 8 connections with a shared secret; the real client still gets in at once. */
static void test_idle_sockets_do_not_lock_out(void)
{
    struct spoold s;
    char path[700];
    snprintf(path, sizeof(path), "/tmp/spool-edge-secret-%d", (int)getpid());
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    fputs("edge-secret\n", f);
    fclose(f);
    const char *args[] = {"--auth-file", path, "--max-connections", "8", NULL};
    REQUIRE(spoold_start(&s, "lockout", args) == 0);
    unlink(path);
    enum { IDLE = 300 };
    int fds[IDLE];
    for (int i = 0; i < IDLE; i++)
        fds[i] = idle_connect(&s);
    usleep(200 * 1000);
    struct spool_connect_options opts = {.auth = "edge-secret", .timeout_ms = 5000};
    spool_client *c = NULL;
    int rc = spool_connect_opts(s.addr, &opts, &c);
    if (rc != 0)
        fprintf(stderr, "real client: %s\n", spool_error_name(rc));
    CHECK_EQ(rc, 0);
    if (rc == 0) {
        CHECK_EQ(spool_ping(c), 0);
        spool_close(c);
    }
    CHECK(spoold_log_contains(&s, "connection refused: busy"));
    for (int i = 0; i < IDLE; i++)
        close(fds[i]);
    CHECK_EQ(spoold_stop(&s), 0);
    spoold_cleanup(&s);
}

/* A hard open-file limit below what --max-connections needs: spoold refuses to start with one
 * clear line, exit 1 (it used to start and fail accepts later). */
static void test_fd_limit_too_low_refuses(void)
{
    char dir[] = "/tmp/spool-edge-XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    char data[64], log[64];
    snprintf(data, sizeof(data), "%s/data", dir);
    snprintf(log, sizeof(log), "%s/log", dir);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        struct rlimit low = {.rlim_cur = 512, .rlim_max = 512};
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, 2) < 0 || setrlimit(RLIMIT_NOFILE, &low) != 0)
            _exit(99);
        execl(getenv("SPOOLD"), "spoold", "--data", data, "--listen", "127.0.0.1:0",
              "--max-connections", "4096", (char *)NULL);
        _exit(98);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    FILE *f = fopen(log, "r");
    REQUIRE(f != NULL);
    char line[512] = "";
    int lines = 0, found = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        lines++;
        found += strstr(line, "open-file limit too low") != NULL;
    }
    fclose(f);
    CHECK_EQ(found, 1);
    CHECK(lines <= 2);
    unlink(log);
    rmdir(data);
    rmdir(dir);
}

/* A child process that blocks in a RESERVE (or a WAIT on an unfinished job) for 20 s and
 * exits 0 if the call ended with SHUTTING_DOWN, 1 otherwise. */
static pid_t blocked_client(const char *addr, bool wait_call, uint64_t job_id)
{
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid != 0)
        return pid;
    spool_client *c = NULL;
    if (spool_connect(addr, 5000, &c) != 0)
        _exit(2);
    int rc;
    if (wait_call) {
        struct spool_job *job = NULL;
        rc = spool_wait(c, job_id, 20000, &job);
        spool_job_free(job);
    } else {
        const char *queues[1] = {"edge-empty"};
        struct spool_delivery *d = NULL;
        size_t count = 0;
        rc = spool_reserve(c, queues, 1, 1, 20000, 0, &d, &count);
        spool_deliveries_free(d);
    }
    if (rc != SPOOL_E_SHUTTING_DOWN)
        fprintf(stderr, "blocked %s ended with %s\n", wait_call ? "wait" : "reserve",
                spool_error_name(rc));
    _exit(rc == SPOOL_E_SHUTTING_DOWN ? 0 : 1);
}

/* SIGTERM: blocked RESERVE and WAIT requests get SHUTTING_DOWN before the connection closes
 * (they used to see the close only). */
static void test_shutdown_answers_blocked_requests(void)
{
    struct spoold s;
    REQUIRE(spoold_start(&s, "shutdown", NULL) == 0);
    spool_client *c = client_of(&s);
    struct spool_job_spec spec = {.queue = "edge-pending", .body = "x", .body_len = 1};
    uint64_t id;
    REQUIRE(spool_put(c, &spec, &id) == 0);
    spool_close(c);
    pid_t reserver = blocked_client(s.addr, false, 0);
    pid_t waiter = blocked_client(s.addr, true, id);
    usleep(500 * 1000);
    int64_t start = mono_ms();
    CHECK_EQ(spoold_stop(&s), 0);
    int status = 0;
    REQUIRE(waitpid(reserver, &status, 0) == reserver);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    REQUIRE(waitpid(waiter, &status, 0) == waiter);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(mono_ms() - start < 15000);
    spoold_cleanup(&s);
}

/* SIGHUP, SIGUSR1, SIGUSR2 (whose default action kills) are logged and ignored; SIGPIPE too. */
static void test_stray_signals_ignored(void)
{
    struct spoold s;
    REQUIRE(spoold_start(&s, "signals", NULL) == 0);
    const int signals[] = {SIGHUP, SIGUSR1, SIGUSR2, SIGPIPE};
    for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
        CHECK_EQ(kill(s.pid, signals[i]), 0);
    usleep(300 * 1000);
    spool_client *c = client_of(&s);
    CHECK_EQ(spool_ping(c), 0);
    spool_close(c);
    CHECK(spoold_log_contains(&s, "signal ignored"));
    CHECK(spoold_log_contains(&s, "signal=HUP"));
    CHECK_EQ(spoold_stop(&s), 0);
    spoold_cleanup(&s);
}

/* Jobs that go dead (buried) or expire (ttl) are logged as counts, not one line each, and not
 * at all while none do. */
static void test_dead_and_expired_counted_in_log(void)
{
    struct spoold s;
    REQUIRE(spoold_start(&s, "jobslog", NULL) == 0);
    spool_client *c = client_of(&s);
    struct spool_job_spec spec = {.queue = "edge-poison", .body = "x", .body_len = 1};
    uint64_t id;
    REQUIRE(spool_put(c, &spec, &id) == 0);
    struct spool_delivery *d = reserve_one_of(c, "edge-poison");
    spec.queue = "edge-ttl";
    spec.ttl_ms = 1;
    for (int i = 0; i < 3; i++)
        REQUIRE(spool_put(c, &spec, &id) == 0);
    CHECK_EQ(spool_bury(c, d->id, d->lease, "poison"), 0);
    spool_deliveries_free(d);
    bool dead = false, expired = false;
    for (int64_t deadline = mono_ms() + 15000; mono_ms() < deadline && !(dead && expired);) {
        usleep(100 * 1000);
        dead = spoold_log_contains(&s, "dead_total=1 ");
        expired = spoold_log_contains(&s, "expired_total=3");
    }
    CHECK(dead);
    CHECK(expired);
    spool_close(c);
    CHECK_EQ(spoold_stop(&s), 0);
    spoold_cleanup(&s);
}

/* --log-level debug logs each client's name (made safe for logfmt) and address at HELLO; the
 * default level does not. */
static void test_debug_logs_clients(void)
{
    struct spoold s;
    const char *args[] = {"--log-level", "debug", NULL};
    REQUIRE(spoold_start(&s, "debuglog", args) == 0);
    struct spool_connect_options opts = {.client_name = "edge\"tester\nx"};
    spool_client *c = NULL;
    REQUIRE(spool_connect_opts(s.addr, &opts, &c) == 0);
    CHECK_EQ(spool_ping(c), 0);
    spool_close(c);
    CHECK(spoold_log_contains(&s, "msg=\"client connected\""));
    CHECK(spoold_log_contains(&s, "name=\"edge?tester?x\" peer=127.0.0.1:"));
    CHECK_EQ(spoold_stop(&s), 0);
    spoold_cleanup(&s);
    c = client();
    CHECK_EQ(spool_ping(c), 0);
    spool_close(c);
    CHECK(!spoold_log_contains(&server, "client connected"));
}

/* The newest segment file of s (the largest name), as a path. */
static void newest_segment(const struct spoold *s, char *path, size_t size)
{
    DIR *d = opendir(s->data);
    REQUIRE(d != NULL);
    char best[32] = ""; /* 20 digits and ".seg" */
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len == 24 && strcmp(e->d_name + 20, ".seg") == 0 && strcmp(e->d_name, best) > 0)
            memcpy(best, e->d_name, len + 1);
    }
    closedir(d);
    REQUIRE(best[0] != '\0');
    snprintf(path, size, "%s/%s", s->data, best);
}

/* Every line spoold logs starts with ts= (the engine's lines used to lack it): a torn tail
 * made by hand after a kill -9 makes the engine log its cut at the next start. */
static void test_every_log_line_has_ts(void)
{
    struct spoold s;
    REQUIRE(spoold_start(&s, "logts", NULL) == 0);
    spool_client *c = client_of(&s);
    struct spool_job_spec spec = {.queue = "edge-ts", .body = "x", .body_len = 1};
    uint64_t id;
    REQUIRE(spool_put(c, &spec, &id) == 0);
    spool_close(c);
    spoold_kill(&s);
    char seg[700];
    newest_segment(&s, seg, sizeof(seg));
    int fd = open(seg, O_RDWR);
    REQUIRE(fd >= 0);
    /* The first all-zero block after the header: where the next batch would have gone. */
    static uint8_t block[4096];
    off_t off = 4096;
    for (;; off += 4096) {
        REQUIRE(pread(fd, block, sizeof(block), off) == (ssize_t)sizeof(block));
        bool zero = true;
        for (size_t i = 0; i < sizeof(block) && zero; i++)
            zero = block[i] == 0;
        if (zero)
            break;
    }
    memset(block, 0x5a, sizeof(block)); /* a torn write: not a batch */
    REQUIRE(pwrite(fd, block, sizeof(block), off) == (ssize_t)sizeof(block));
    close(fd);
    REQUIRE(spoold_restart(&s, NULL) == 0);
    CHECK(spoold_log_contains(&s, "torn tail cut"));
    CHECK_EQ(spoold_stop(&s), 0);
    FILE *f = fopen(s.log, "r");
    REQUIRE(f != NULL);
    char line[4096];
    int lines = 0, without_ts = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        lines++;
        if (strncmp(line, "ts=", 3) != 0) {
            without_ts++;
            fprintf(stderr, "line without ts=: %s", line);
        }
    }
    fclose(f);
    CHECK(lines > 3);
    CHECK_EQ(without_ts, 0);
    spoold_cleanup(&s);
}

int main(void)
{
    if (spoold_start(&server, "edge", NULL) != 0)
        return 1;
    RUN_TEST(test_lease_tokens_unguessable_from_another);
    RUN_TEST(test_lease_tokens_distinct);
    RUN_TEST(test_overlong_auth_closes);
    RUN_TEST(test_put_larger_than_queue_limit);
    RUN_TEST(test_handshake_timeout);
    RUN_TEST(test_idle_sockets_do_not_lock_out);
    RUN_TEST(test_fd_limit_too_low_refuses);
    RUN_TEST(test_shutdown_answers_blocked_requests);
    RUN_TEST(test_stray_signals_ignored);
    RUN_TEST(test_every_log_line_has_ts);
    RUN_TEST(test_dead_and_expired_counted_in_log);
    RUN_TEST(test_debug_logs_clients);
    CHECK_EQ(spoold_stop(&server), 0);
    spoold_cleanup(&server);
    return check_exit();
}
