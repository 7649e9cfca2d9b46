/* Malformed input against the real spoold, over raw sockets: an oversized length, a length
 * shorter than a header, an unknown opcode, a request before HELLO, a frame split into single
 * bytes, 10,000 pipelined frames, EOF mid-frame. Each gets an error frame or a close, and the
 * server keeps serving everyone else. */
#include <spool/client.h>

#include <arpa/inet.h>
#include <poll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "check.h"
#include "churn.h"
#include "spoold_harness.h"
#include "wire_message.h"

static struct spoold server;

static int raw_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(server.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void send_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        REQUIRE(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

/* Read exactly len bytes; false on EOF or timeout. */
static bool recv_exact(int fd, void *data, size_t len)
{
    uint8_t *p = data;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Read one frame; its payload (up to cap) goes to payload. false on EOF. */
static bool recv_frame(int fd, struct wire_header *h, uint8_t *payload, size_t cap)
{
    uint8_t head[WIRE_HEADER_SIZE];
    if (!recv_exact(fd, head, sizeof(head)))
        return false;
    REQUIRE(wire_header_decode(head, sizeof(head), WIRE_FRAME_SIZE_LIMIT, h) == 0);
    size_t len = h->frame_size - WIRE_HEADER_SIZE;
    REQUIRE(len <= cap);
    return recv_exact(fd, payload, len);
}

static uint16_t error_code_of(const struct wire_header *h, const uint8_t *payload)
{
    if (h->opcode != WIRE_OP_ERROR)
        return 0;
    union wire_msg m;
    REQUIRE(wire_decode(WIRE_OP_ERROR, payload, h->frame_size - WIRE_HEADER_SIZE, &m) == 0);
    return m.error.code;
}

static bool at_eof(int fd)
{
    uint8_t b;
    return recv(fd, &b, 1, 0) == 0;
}

static void encode(struct wire_buf *b, uint16_t op, uint64_t id, const union wire_msg *m)
{
    REQUIRE(wire_encode(b, op, id, m) == 0);
}

static void encode_hello(struct wire_buf *b)
{
    union wire_msg m = {.hello = {.magic = WIRE_MAGIC, .version_min = 1, .version_max = 1}};
    encode(b, WIRE_OP_HELLO, 1, &m);
}

static int hello_connect(void)
{
    int fd = raw_connect();
    struct wire_buf b;
    wire_buf_init(&b, WIRE_FRAME_SIZE_LIMIT);
    encode_hello(&b);
    send_all(fd, b.data, b.len);
    wire_buf_free(&b);
    struct wire_header h;
    static uint8_t payload[4096];
    REQUIRE(recv_frame(fd, &h, payload, sizeof(payload)));
    REQUIRE(h.opcode == (WIRE_OP_HELLO | WIRE_OP_REPLY));
    return fd;
}

/* Header bytes written by hand: the codec refuses to encode a size below the header. */
static void send_header(int fd, uint32_t frame_size, uint16_t opcode, uint64_t id)
{
    uint8_t head[WIRE_HEADER_SIZE] = {0};
    for (int i = 0; i < 4; i++)
        head[i] = (uint8_t)(frame_size >> (8 * i));
    head[4] = (uint8_t)opcode;
    head[5] = (uint8_t)(opcode >> 8);
    for (int i = 0; i < 8; i++)
        head[8 + i] = (uint8_t)(id >> (8 * i));
    send_all(fd, head, sizeof(head));
}

static void server_still_serves(void)
{
    spool_client *c = NULL;
    REQUIRE(spool_connect(server.addr, 5000, &c) == 0);
    CHECK_EQ(spool_ping(c), 0);
    spool_close(c);
}

static uint8_t payload[1 << 16];

static void test_oversized_length(void)
{
    int fd = hello_connect();
    send_header(fd, 0xC0000000u, WIRE_OP_PUT, 42);
    struct wire_header h;
    REQUIRE(recv_frame(fd, &h, payload, sizeof(payload)));
    CHECK_EQ(h.request_id, 42);
    CHECK_EQ(error_code_of(&h, payload), wire_error_to_wire(SPOOL_E_TOO_LARGE));
    CHECK(at_eof(fd));
    close(fd);
    server_still_serves();
}

static void test_length_shorter_than_header(void)
{
    int fd = hello_connect();
    send_header(fd, 8, WIRE_OP_PING, 7);
    struct wire_header h;
    REQUIRE(recv_frame(fd, &h, payload, sizeof(payload)));
    CHECK_EQ(error_code_of(&h, payload), wire_error_to_wire(SPOOL_E_BAD_FRAME));
    CHECK(at_eof(fd));
    close(fd);
    server_still_serves();
}

static void test_unknown_opcode_keeps_connection(void)
{
    int fd = hello_connect();
    send_header(fd, WIRE_HEADER_SIZE + 4, 0x0777, 9);
    send_all(fd, "abcd", 4);
    struct wire_header h;
    REQUIRE(recv_frame(fd, &h, payload, sizeof(payload)));
    CHECK_EQ(h.request_id, 9);
    CHECK_EQ(error_code_of(&h, payload), wire_error_to_wire(SPOOL_E_UNKNOWN_OP));
    send_header(fd, WIRE_HEADER_SIZE, WIRE_OP_PING, 10);
    REQUIRE(recv_frame(fd, &h, payload, sizeof(payload)));
    CHECK_EQ(h.opcode, WIRE_OP_PING | WIRE_OP_REPLY);
    CHECK_EQ(h.request_id, 10);
    /* A payload that does not decode is a framing error: error frame, then close. */
    send_header(fd, WIRE_HEADER_SIZE + 3, WIRE_OP_ACK, 11);
    send_all(fd, "xyz", 3);
    REQUIRE(recv_frame(fd, &h, payload, sizeof(payload)));
    CHECK_EQ(error_code_of(&h, payload), wire_error_to_wire(SPOOL_E_BAD_FRAME));
    CHECK(at_eof(fd));
    close(fd);
}

static void test_request_before_hello(void)
{
    int fd = raw_connect();
    send_header(fd, WIRE_HEADER_SIZE, WIRE_OP_PING, 3);
    struct wire_header h;
    REQUIRE(recv_frame(fd, &h, payload, sizeof(payload)));
    CHECK_EQ(error_code_of(&h, payload), wire_error_to_wire(SPOOL_E_HANDSHAKE_REQUIRED));
    CHECK(at_eof(fd));
    close(fd);
}

/* Before HELLO a frame is judged at its header: another opcode, or a HELLO larger than its
 * fields allow, is refused before its body arrives, so nobody unauthenticated gets a frame of
 * --max-frame buffered. A HELLO of the largest size still works. */
static void test_frame_before_hello_judged_at_its_header(void)
{
    int fd = raw_connect();
    send_header(fd, 2u << 20, WIRE_OP_PUT, 4); /* a 2 MiB put, of which only the header */
    struct wire_header h;
    REQUIRE(recv_frame(fd, &h, payload, sizeof(payload)));
    CHECK_EQ(error_code_of(&h, payload), wire_error_to_wire(SPOOL_E_HANDSHAKE_REQUIRED));
    CHECK(at_eof(fd));
    close(fd);
    fd = raw_connect();
    send_header(fd, WIRE_HEADER_SIZE + WIRE_HELLO_SIZE_MAX + 1, WIRE_OP_HELLO, 5);
    REQUIRE(recv_frame(fd, &h, payload, sizeof(payload)));
    CHECK_EQ(h.request_id, 5);
    CHECK_EQ(error_code_of(&h, payload), wire_error_to_wire(SPOOL_E_TOO_LARGE));
    CHECK(at_eof(fd));
    close(fd);
    static char name[WIRE_TEXT_SIZE_MAX], auth[WIRE_TEXT_SIZE_MAX];
    memset(name, 'n', sizeof(name));
    memset(auth, 'a', sizeof(auth));
    union wire_msg m = {.hello = {.magic = WIRE_MAGIC, .version_min = 1, .version_max = 1,
                                  .client_name = {(const uint8_t *)name, sizeof(name)},
                                  .auth = {(const uint8_t *)auth, sizeof(auth)}}};
    struct wire_buf b;
    wire_buf_init(&b, WIRE_FRAME_SIZE_LIMIT);
    encode(&b, WIRE_OP_HELLO, 6, &m);
    CHECK_EQ(b.len, WIRE_HEADER_SIZE + WIRE_HELLO_SIZE_MAX);
    fd = raw_connect();
    send_all(fd, b.data, b.len);
    wire_buf_free(&b);
    REQUIRE(recv_frame(fd, &h, payload, sizeof(payload)));
    CHECK_EQ(h.opcode, WIRE_OP_HELLO | WIRE_OP_REPLY); /* no --auth-file: the secret is unused */
    close(fd);
}

static void test_frames_split_into_single_bytes(void)
{
    int fd = raw_connect();
    struct wire_buf b;
    wire_buf_init(&b, WIRE_FRAME_SIZE_LIMIT);
    encode_hello(&b);
    union wire_msg put = {.put = {.queue = wire_bytes_str("bytewise"),
                                  .body = wire_bytes_str("one byte at a time")}};
    encode(&b, WIRE_OP_PUT, 2, &put);
    for (size_t i = 0; i < b.len; i++) {
        send_all(fd, b.data + i, 1);
        if (i % 16 == 0)
            usleep(200);
    }
    wire_buf_free(&b);
    struct wire_header h;
    REQUIRE(recv_frame(fd, &h, payload, sizeof(payload)));
    CHECK_EQ(h.opcode, WIRE_OP_HELLO | WIRE_OP_REPLY);
    REQUIRE(recv_frame(fd, &h, payload, sizeof(payload)));
    CHECK_EQ(h.opcode, WIRE_OP_PUT | WIRE_OP_REPLY);
    CHECK_EQ(h.request_id, 2);
    close(fd);
}

struct sender {
    int fd;
    struct wire_buf *b;
};

static void *send_thread(void *arg)
{
    struct sender *s = arg;
    send_all(s->fd, s->b->data, s->b->len);
    return NULL;
}

static void test_ten_thousand_pipelined_frames(void)
{
    enum { FRAMES = 10000 };
    int fd = hello_connect();
    struct wire_buf b;
    wire_buf_init(&b, WIRE_FRAME_SIZE_LIMIT);
    for (uint64_t i = 0; i < FRAMES; i++) {
        if (i % 10 == 0) {
            union wire_msg put = {.put = {.queue = wire_bytes_str("pipelined"),
                                          .body = wire_bytes_str("p")}};
            encode(&b, WIRE_OP_PUT, 100 + i, &put);
        } else {
            encode(&b, WIRE_OP_PING, 100 + i, NULL);
        }
    }
    struct sender s = {fd, &b};
    pthread_t thread;
    REQUIRE(pthread_create(&thread, NULL, send_thread, &s) == 0);
    static bool seen[FRAMES];
    int replies = 0, puts = 0;
    struct wire_header h;
    while (replies < FRAMES && recv_frame(fd, &h, payload, sizeof(payload))) {
        REQUIRE(h.request_id >= 100 && h.request_id < 100 + FRAMES);
        CHECK(!seen[h.request_id - 100]);
        seen[h.request_id - 100] = true;
        puts += h.opcode == (WIRE_OP_PUT | WIRE_OP_REPLY);
        replies++;
    }
    pthread_join(thread, NULL);
    wire_buf_free(&b);
    CHECK_EQ(replies, FRAMES);
    CHECK_EQ(puts, FRAMES / 10);
    close(fd);
}

static void test_eof_mid_frame(void)
{
    int fd = hello_connect();
    struct wire_buf b;
    wire_buf_init(&b, WIRE_FRAME_SIZE_LIMIT);
    union wire_msg put = {.put = {.queue = wire_bytes_str("halfway"),
                                  .body = wire_bytes_str("never complete")}};
    encode(&b, WIRE_OP_PUT, 5, &put);
    send_all(fd, b.data, b.len / 2);
    wire_buf_free(&b);
    close(fd);
    usleep(100 * 1000);
    spool_client *c = NULL;
    REQUIRE(spool_connect(server.addr, 5000, &c) == 0);
    struct spool_stats *st = NULL;
    CHECK_EQ(spool_stats(c, "halfway", &st), SPOOL_E_NOT_FOUND); /* nothing was enqueued */
    spool_close(c);
}

/* Handshake failures close the connection after one error frame. */
static void expect_hello_refused(const union wire_msg *hello, int code)
{
    int fd = raw_connect();
    struct wire_buf b;
    wire_buf_init(&b, WIRE_FRAME_SIZE_LIMIT);
    encode(&b, WIRE_OP_HELLO, 1, hello);
    send_all(fd, b.data, b.len);
    wire_buf_free(&b);
    struct wire_header h;
    REQUIRE(recv_frame(fd, &h, payload, sizeof(payload)));
    CHECK_EQ(error_code_of(&h, payload), wire_error_to_wire(code));
    CHECK(at_eof(fd));
    close(fd);
}

static void test_handshake_failures(void)
{
    union wire_msg m = {.hello = {.magic = WIRE_MAGIC, .version_min = 3, .version_max = 9}};
    expect_hello_refused(&m, SPOOL_E_VERSION_UNSUPPORTED);
    m.hello = (struct wire_hello){.magic = 0x50545448u, .version_min = 1, .version_max = 1};
    expect_hello_refused(&m, SPOOL_E_BAD_FRAME);
    /* A second HELLO on a live connection. */
    int fd = hello_connect();
    struct wire_buf b;
    wire_buf_init(&b, WIRE_FRAME_SIZE_LIMIT);
    encode_hello(&b);
    send_all(fd, b.data, b.len);
    wire_buf_free(&b);
    struct wire_header h;
    REQUIRE(recv_frame(fd, &h, payload, sizeof(payload)));
    CHECK_EQ(error_code_of(&h, payload), wire_error_to_wire(SPOOL_E_HANDSHAKE_REQUIRED));
    CHECK(at_eof(fd));
    close(fd);
}

/* Past --max-connections a new connection gets BUSY and is closed; the others go on. */
static void test_connection_limit(void)
{
    struct spoold saved = server;
    static const char *const args[] = {"--max-connections", "2", NULL};
    REQUIRE(spoold_start(&server, "maxconn", args) == 0);
    int a = hello_connect();
    int b = hello_connect();
    int c = raw_connect();
    struct wire_header h;
    REQUIRE(recv_frame(c, &h, payload, sizeof(payload)));
    CHECK_EQ(error_code_of(&h, payload), wire_error_to_wire(SPOOL_E_BUSY));
    CHECK(at_eof(c));
    close(c);
    send_header(a, WIRE_HEADER_SIZE, WIRE_OP_PING, 5);
    REQUIRE(recv_frame(a, &h, payload, sizeof(payload)));
    CHECK_EQ(h.opcode, WIRE_OP_PING | WIRE_OP_REPLY);
    close(a);
    close(b);
    usleep(100 * 1000); /* the server sees both closes: room again */
    int d = hello_connect();
    close(d);
    CHECK_EQ(spoold_stop(&server), 0);
    spoold_cleanup(&server);
    server = saved;
}

/* Started with a soft open-file limit far below what --max-connections needs, spoold raises
 * it (up to the hard limit) before listening: a flood of connections is accepted, no accept
 * fails (it used to: clients hung in the accept queue while "accept failed" filled the log),
 * and the server serves throughout. */
static void test_fd_limit_raised_at_start(void)
{
    struct spoold saved = server;
    struct rlimit old, low = {.rlim_cur = 32, .rlim_max = 0};
    REQUIRE(getrlimit(RLIMIT_NOFILE, &old) == 0);
    low.rlim_max = old.rlim_max;
    REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0); /* inherited by spoold only ... */
    int rc = spoold_start(&server, "nofile", NULL);
    REQUIRE(setrlimit(RLIMIT_NOFILE, &old) == 0); /* ... the test gets its own back */
    REQUIRE(rc == 0);
    enum { FLOOD = 48 };
    int fds[FLOOD];
    for (int i = 0; i < FLOOD; i++)
        fds[i] = raw_connect();
    usleep(300 * 1000);
    server_still_serves();
    CHECK(!spoold_log_contains(&server, "accept failed"));
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/limits", (int)server.pid);
    FILE *limits = fopen(path, "r");
    REQUIRE(limits != NULL);
    unsigned long soft = 0;
    while (fgets(line, sizeof(line), limits) != NULL)
        if (strncmp(line, "Max open files", 14) == 0)
            soft = strtoul(line + 14, NULL, 10);
    fclose(limits);
    CHECK(soft > 1024); /* at least --max-connections' default */
    for (int i = 0; i < FLOOD; i++)
        close(fds[i]);
    usleep(300 * 1000);
    server_still_serves();
    CHECK_EQ(spoold_stop(&server), 0);
    spoold_cleanup(&server);
    server = saved;
}

/* Resident memory of the server, in KiB (from /proc). */
static long server_rss_kib(void)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)server.pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = atol(line + 6);
    fclose(f);
    return kib;
}

#define PING_FRAMES_BYTES (WIRE_HEADER_SIZE * 4096)

/* 4096 PING frames back to back: a flood's unit. */
static const uint8_t *ping_frames(void)
{
    static uint8_t frames[PING_FRAMES_BYTES];
    for (int i = 0; i < 4096; i++) {
        struct wire_header h = {.frame_size = WIRE_HEADER_SIZE, .opcode = WIRE_OP_PING,
                                .request_id = (uint64_t)i};
        wire_header_encode(frames + i * WIRE_HEADER_SIZE, &h);
    }
    return frames;
}

/* Send PINGs on fd and never read the replies, each send timing out after timeout_ms, until
 * one times out (spoold stopped reading the connection) or rounds_max sends have gone: the
 * bytes sent. A send cut short by the timeout is carried on by the next, so the stream stays
 * whole frames. */
static size_t flood(int fd, long timeout_ms, int rounds_max)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    const uint8_t *frames = ping_frames();
    size_t sent_total = 0;
    size_t at = 0; /* into frames */
    for (int round = 0; round < rounds_max; round++) {
        ssize_t n = send(fd, frames + at, PING_FRAMES_BYTES - at, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* the server stopped reading: the send timed out */
        sent_total += (size_t)n;
        at = (at + (size_t)n) % PING_FRAMES_BYTES;
    }
    return sent_total;
}

/* A client that floods requests and never reads its replies: spoold stops reading from it once
 * its unsent replies pass the bound, its memory stays bounded, and others are served. */
static void test_flooder_that_never_reads(void)
{
    int fd = hello_connect();
    long before = server_rss_kib();
    size_t sent_total = flood(fd, 200, 2000); /* at most 128 MiB offered */
    long after = server_rss_kib();
    fprintf(stderr, "flooder sent %zu bytes; spoold rss %ld -> %ld KiB\n", sent_total, before,
            after);
    CHECK(sent_total < 128u * 1024 * 1024); /* reading stopped before the end */
    CHECK(after - before < 64 * 1024);      /* bounded: no growth with the flood */
    server_still_serves();
    close(fd);
}

/* Linux 6.18 bounds a multishot receive by bytes (the limit came in 2025; earlier releases
 * may have it too, and may not): from there on spoold must use it. */
static bool kernel_has_recv_limit(void)
{
    struct utsname u;
    unsigned major = 0, minor = 0;
    if (uname(&u) != 0 || sscanf(u.release, "%u.%u", &major, &minor) != 2)
        return false;
    return major > 6 || (major == 6 && minor >= 18);
}

/* The same flood against a server whose frames are small, so that the bound on a connection's
 * unparsed input is tight: one frame (64 KiB), a receive's credit (64 KiB) and one receive
 * buffer (16 KiB). Once replies back up, spoold stops parsing; with one recv per read it
 * stops reading at once, and a multishot receive stops when its byte limit is spent. Without
 * the limit, a multishot receive let one connection's unparsed input grow to 6 MiB here (and
 * on, with the flood). Both modes run. */
static void flood_input_bounded(const char *mode)
{
    struct spoold saved = server;
    const char *args[] = {"--max-frame", "64k", "--max-job-size", "32k", "--recv-multishot",
                          mode, NULL};
    REQUIRE(spoold_start(&server, "flood-input", args) == 0);
    int fd = hello_connect();
    size_t sent_total = flood(fd, 300, 1024); /* at most 64 MiB offered */
    server_still_serves();
    /* Stopped with the flooder still connected and its replies unread: the stop waits its
     * drain bound for them, cancels the receive, and exits cleanly. */
    CHECK_EQ(spoold_stop(&server), 0);
    close(fd);
    uint64_t input_max = spoold_log_counter(&server, "input_max_bytes=");
    uint64_t received = spoold_log_counter(&server, "received_bytes=");
    fprintf(stderr, "recv-multishot %s: sent %zu, received %llu, input max %llu bytes\n", mode,
            sent_total, (unsigned long long)received, (unsigned long long)input_max);
    if (strcmp(mode, "off") == 0)
        CHECK(spoold_log_contains(&server, "recv=single"));
    else if (kernel_has_recv_limit())
        CHECK(spoold_log_contains(&server, "recv=multishot"));
    CHECK(sent_total < 64u * 1024 * 1024);
    CHECK(input_max > 0);
    CHECK(input_max <= 64 * 1024 + 4 * 16 * 1024 + 16 * 1024);
    spoold_cleanup(&server);
    server = saved;
}

static void test_flood_input_bounded_multishot(void)
{
    flood_input_bounded("on");
}

static void test_flood_input_bounded_single(void)
{
    flood_input_bounded("off");
}

/* A worker that blocks reserves and never reads its replies does not hoard the queue: once its
 * unsent output passes CONN_OUT_HIGH (4 MiB) its reserves are paused, the rest of the jobs stay
 * ready for a worker that reads, and spoold's memory stays bounded. Without the pause all 200
 * jobs (50 MiB) were leased to it and queued in its output. */
static void test_blocked_reserves_of_a_reader_that_never_reads(void)
{
    enum { RESERVES = 200, BODY = 256 * 1024 };
    int fd = hello_connect();
    int small = 64 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct wire_buf b;
    wire_buf_init(&b, WIRE_FRAME_SIZE_LIMIT);
    for (int i = 0; i < RESERVES; i++) {
        union wire_msg m = {.reserve = {.count_max = 1, .timeout_ms = 60000, .queue_count = 1}};
        m.reserve.queues[0] = wire_bytes_str("hoard");
        encode(&b, WIRE_OP_RESERVE, (uint64_t)(100 + i), &m);
    }
    send_all(fd, b.data, b.len);
    wire_buf_free(&b);
    spool_client *c = NULL;
    REQUIRE(spool_connect(server.addr, 5000, &c) == 0);
    static uint8_t body[BODY];
    memset(body, 'h', sizeof(body));
    long before = server_rss_kib();
    for (int i = 0; i < RESERVES; i++) {
        struct spool_job_spec spec = {.queue = "hoard", .body = body, .body_len = sizeof(body)};
        uint64_t id;
        REQUIRE(spool_put(c, &spec, &id) == 0);
    }
    struct spool_stats *st = NULL;
    REQUIRE(spool_stats(c, "hoard", &st) == 0);
    REQUIRE(st->queue_count == 1);
    uint64_t reserved = st->queues[0].reserved, ready = st->queues[0].ready;
    spool_stats_free(st);
    long after = server_rss_kib();
    fprintf(stderr, "non-reader holds %llu jobs, %llu ready; spoold rss %ld -> %ld KiB\n",
            (unsigned long long)reserved, (unsigned long long)ready, before, after);
    CHECK(reserved < RESERVES / 2);
    CHECK_EQ(reserved + ready, RESERVES);
    /* A worker that reads gets the rest. */
    struct spool_delivery *d = NULL;
    size_t n = 0;
    const char *q = "hoard";
    REQUIRE(spool_reserve(c, &q, 1, 1, 0, 0, &d, &n) == 0);
    CHECK_EQ(n, 1);
    spool_deliveries_free(d);
    spool_close(c);
    close(fd); /* its leases go back */
    server_still_serves();
}

/* A frame started and never finished is closed after --frame-timeout; a silent idle
 * connection is not. */
static void test_stalled_frame_times_out(void)
{
    struct spoold saved = server;
    static const char *const args[] = {"--frame-timeout", "300", NULL};
    REQUIRE(spoold_start(&server, "frame-timeout", args) == 0);
    int idle = hello_connect();
    int slow = hello_connect();
    send_header(slow, WIRE_HEADER_SIZE + 100, WIRE_OP_PUT, 8);
    send_all(slow, "abc", 3);
    struct wire_header h;
    REQUIRE(recv_frame(slow, &h, payload, sizeof(payload))); /* within the 10 s recv timeout */
    CHECK_EQ(error_code_of(&h, payload), wire_error_to_wire(SPOOL_E_BAD_FRAME));
    CHECK(at_eof(slow));
    close(slow);
    send_header(idle, WIRE_HEADER_SIZE, WIRE_OP_PING, 9);
    REQUIRE(recv_frame(idle, &h, payload, sizeof(payload)));
    CHECK_EQ(h.opcode, WIRE_OP_PING | WIRE_OP_REPLY);
    close(idle);
    CHECK_EQ(spoold_stop(&server), 0);
    spoold_cleanup(&server);
    server = saved;
}

enum { FILL_BATCH = 1000 };

/* Start spoold under --max-memory bound (body cache 1 MiB) and connect to it; *batch is
 * FILL_BATCH jobs of 100 bytes for queue, to fill its memory with. */
static spool_client *start_bounded(const char *tag, const char *bound, const char *queue,
                                   const struct spool_job_spec **batch)
{
    const char *const args[] = {"--max-memory", bound, "--body-cache", "1m", NULL};
    REQUIRE(spoold_start(&server, tag, args) == 0);
    spool_client *c = NULL;
    REQUIRE(spool_connect(server.addr, 5000, &c) == 0);
    static struct spool_job_spec specs[FILL_BATCH];
    static char body[100];
    memset(body, 'm', sizeof(body));
    for (int k = 0; k < FILL_BATCH; k++)
        specs[k] = (struct spool_job_spec){.queue = queue, .body = body, .body_len = sizeof(body)};
    *batch = specs;
    return c;
}

/* A connection that floods PINGs and never reads its replies: it sends until spoold stops
 * reading it (a send times out) or 64 MiB have gone. */
static int flooder_connect(void)
{
    int fd = hello_connect();
    (void)flood(fd, 200, 1000);
    return fd;
}

/* Above --max-memory a large put is refused when its header arrives, not once its body has
 * been read into memory the bound says spoold does not have: QUEUE_FULL comes back while most
 * of the frame is still unsent, the rest is dropped as it arrives, and the connection stays in
 * step (the PING after it answers). And clients that flood requests without reading hold
 * little each. */
static void test_above_memory_bound(void)
{
    struct spoold saved = server;
    const struct spool_job_spec *batch;
    spool_client *c = start_bounded("memory-early", "48m", "mem", &batch);
    int rc = 0;
    for (int b = 0; b < 5000 && rc == 0; b++) /* at most 5 M jobs */
        rc = spool_put_batch(c, batch, FILL_BATCH, NULL);
    CHECK_EQ(rc, SPOOL_E_QUEUE_FULL);
    spool_close(c);

    enum { BODY = 900 * 1024, FIRST = 64 * 1024 };
    static uint8_t body[BODY];
    memset(body, 'b', sizeof(body));
    union wire_msg m = {.put = {.queue = {(const uint8_t *)"mem", 3},
                                .body = {body, sizeof(body)}}};
    struct wire_buf b;
    wire_buf_init(&b, WIRE_FRAME_SIZE_LIMIT);
    encode(&b, WIRE_OP_PUT, 7, &m);
    size_t put_len = b.len;
    union wire_msg none = {0};
    encode(&b, WIRE_OP_PING, 8, &none);
    int fd = hello_connect();
    send_all(fd, b.data, FIRST); /* the header and 64 KiB of a 900 KiB put */
    struct wire_header h;
    REQUIRE(recv_frame(fd, &h, payload, sizeof(payload))); /* within the 10 s recv timeout */
    CHECK_EQ(h.request_id, 7);
    CHECK_EQ(error_code_of(&h, payload), wire_error_to_wire(SPOOL_E_QUEUE_FULL));
    send_all(fd, b.data + FIRST, b.len - FIRST); /* the rest of it, then the PING */
    REQUIRE(recv_frame(fd, &h, payload, sizeof(payload)));
    CHECK_EQ(h.opcode, WIRE_OP_PING | WIRE_OP_REPLY);
    CHECK_EQ(h.request_id, 8);
    CHECK(put_len > FIRST + BODY / 2);
    close(fd);
    wire_buf_free(&b);

    /* Flooders that never read: above the bound each stops being read with 64 KiB of replies
     * and 64 KiB of input ahead of parsing (plus what a receive was armed for), where it would
     * hold up to 4 MiB of replies and a frame (2 MiB) of input below it. */
    enum { FLOODERS = 16 };
    int flooders[FLOODERS];
    long before = server_rss_kib();
    for (int i = 0; i < FLOODERS; i++)
        flooders[i] = flooder_connect();
    long after = server_rss_kib();
    fprintf(stderr, "%d flooders above the memory bound: spoold rss %ld -> %ld KiB\n", FLOODERS,
            before, after);
    CHECK(after - before < 24 * 1024); /* below the bound they held ~6 MiB each: 96 MiB */
    server_still_serves();
    for (int i = 0; i < FLOODERS; i++)
        close(flooders[i]);
    CHECK_EQ(spoold_stop(&server), 0);
    spoold_cleanup(&server);
    server = saved;
}

/* Between three quarters of --max-memory and the bound, memory is tight: puts are still
 * admitted, and clients that send and never read are read only 64 KiB ahead, so they cannot
 * take the last quarter and with it every producer's puts. (Read 4 MiB ahead, as with room,
 * two or three of these flooders would push spoold over the bound.) */
static void test_tight_memory_keeps_flooders_from_puts(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return; /* the sanitizer's shadow memory and quarantine: RSS says nothing of spoold's */
#endif
    struct spoold saved = server;
    const struct spool_job_spec *batch;
    spool_client *c = start_bounded("memory-tight", "64m", "tight", &batch);
    /* Fill to 52 MiB: past three quarters (48 MiB), short of the bound. */
    for (int b = 0; b < 2000 && server_rss_kib() < 52 * 1024; b++)
        REQUIRE(spool_put_batch(c, batch, FILL_BATCH, NULL) == 0);
    long before = server_rss_kib();
    REQUIRE(before >= 52 * 1024 && before < 60 * 1024);
    usleep(50 * 1000); /* a few memory samples */
    enum { FLOODERS = 16 };
    int flooders[FLOODERS];
    const uint8_t *frames = ping_frames();
    for (int i = 0; i < FLOODERS; i++)
        flooders[i] = flooder_connect();
    long after = server_rss_kib();
    fprintf(stderr, "%d flooders with memory tight: spoold rss %ld -> %ld KiB\n", FLOODERS, before,
            after);
    CHECK_EQ(spool_put(c, &batch[0], NULL), 0); /* still below the bound: puts admitted */
    CHECK(after < 64 * 1024);
    for (int i = 1; i < FLOODERS; i++)
        close(flooders[i]);
    /* Drained below three quarters (the jobs' memory is reusable), spoold reads the flooder
     * left open again within a few samples, though nothing happened on its socket. */
    churn_drain(c, "tight");
    struct timeval tv = {.tv_sec = 0, .tv_usec = 500 * 1000};
    setsockopt(flooders[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    bool read_again = false;
    for (int tries = 0; tries < 10 && !read_again; tries++)
        read_again = send(flooders[0], frames, PING_FRAMES_BYTES, MSG_NOSIGNAL) > 0;
    CHECK(read_again);
    close(flooders[0]);
    spool_close(c);
    CHECK_EQ(spoold_stop(&server), 0);
    spoold_cleanup(&server);
    server = saved;
}

/* Clients that flood and do not keep up connect while memory has room (each is read 4 MiB
 * of replies ahead), then a producer fills memory to the bound and its puts are refused. The
 * flooders take their replies at 20 KiB/s, a pace at which what they hold would take minutes
 * (over CONN_DRAIN_MAX_MS): they are closed, until memory is back, and puts are admitted again
 * with nobody's help, where they would stay refused for as long as the flooders stayed
 * connected. */
static void test_unread_connections_closed_above_the_bound(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return; /* the sanitizer's shadow memory and quarantine: RSS says nothing of spoold's */
#endif
    struct spoold saved = server;
    const struct spool_job_spec *batch;
    spool_client *c = start_bounded("memory-unread", "64m", "unread", &batch);
    enum { FLOODERS = 5 };
    int flooders[FLOODERS];
    long before = server_rss_kib();
    for (int i = 0; i < FLOODERS; i++)
        flooders[i] = flooder_connect();
    long flooded = server_rss_kib();
    int rc = 0;
    for (int b = 0; b < 2000 && rc == 0; b++) /* at most 2 M jobs */
        rc = spool_put_batch(c, batch, FILL_BATCH, NULL);
    CHECK_EQ(rc, SPOOL_E_QUEUE_FULL);
    long full = server_rss_kib();
    /* Within CONN_UNREAD_MS (5 s), a sweep (250 ms) and a memory sample or two. */
    bool admitted = false;
    for (int tries = 0; tries < 75 && !admitted; tries++) {
        usleep(200 * 1000);
        for (int i = 0; i < FLOODERS; i++) {
            uint8_t sink[4096];
            (void)recv(flooders[i], sink, sizeof(sink), MSG_DONTWAIT);
        }
        admitted = spool_put(c, &batch[0], NULL) == 0;
    }
    fprintf(stderr, "%d unread flooders: spoold rss %ld -> %ld, filled %ld, now %ld KiB\n",
            FLOODERS, before, flooded, full, server_rss_kib());
    CHECK(flooded - before > 8 * 1024); /* they held MiBs each */
    CHECK(admitted);
    CHECK(spoold_log_contains(&server, "does not take its replies while memory is above"));
    /* As many as it took to come back below the bound were closed: reset, their input unread
     * (the others, never past the bound again, may stay). */
    int closed = 0;
    for (int i = 0; i < FLOODERS; i++) {
        struct pollfd p = {.fd = flooders[i], .events = POLLRDHUP};
        closed += poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP)) != 0;
        close(flooders[i]);
    }
    CHECK(closed >= 1);
    spool_close(c);
    CHECK_EQ(spoold_stop(&server), 0);
    spoold_cleanup(&server);
    server = saved;
}

/* --auth-file: HELLO without the secret, or with a wrong one, is AUTH_FAILED and closed. */
static void test_shared_secret(void)
{
    struct spoold saved = server;
    char path[700];
    snprintf(path, sizeof(path), "%s/secret", saved.dir);
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    fputs("s3cret-token\n", f);
    fclose(f);
    const char *args[] = {"--auth-file", path, NULL};
    REQUIRE(spoold_start(&server, "auth", args) == 0);
    spool_client *c = NULL;
    CHECK_EQ(spool_connect(server.addr, 5000, &c), SPOOL_E_AUTH_FAILED);
    struct spool_connect_options opts = {.auth = "s3cret-tokem"};
    CHECK_EQ(spool_connect_opts(server.addr, &opts, &c), SPOOL_E_AUTH_FAILED);
    /* Logged for the operator, with the peer, at most once a second (two failures: one line). */
    CHECK(spoold_log_contains(&server, "msg=\"authentication failed\""));
    CHECK(spoold_log_contains(&server, "peer=127.0.0.1:"));
    FILE *log = fopen(server.log, "r");
    REQUIRE(log != NULL);
    char line[1024];
    int auth_lines = 0;
    while (fgets(line, sizeof(line), log) != NULL)
        auth_lines += strstr(line, "authentication failed") != NULL;
    fclose(log);
    CHECK_EQ(auth_lines, 1);
    opts.auth = "s3cret-token";
    REQUIRE(spool_connect_opts(server.addr, &opts, &c) == 0);
    CHECK_EQ(spool_ping(c), 0);
    spool_close(c);
    CHECK_EQ(spoold_stop(&server), 0);
    spoold_cleanup(&server);
    server = saved;
}

int main(void)
{
    if (spoold_start(&server, "malformed", NULL) != 0)
        return 1;
    RUN_TEST(test_oversized_length);
    RUN_TEST(test_length_shorter_than_header);
    RUN_TEST(test_unknown_opcode_keeps_connection);
    RUN_TEST(test_request_before_hello);
    RUN_TEST(test_frame_before_hello_judged_at_its_header);
    RUN_TEST(test_frames_split_into_single_bytes);
    RUN_TEST(test_ten_thousand_pipelined_frames);
    RUN_TEST(test_eof_mid_frame);
    RUN_TEST(test_flooder_that_never_reads);
    RUN_TEST(test_flood_input_bounded_multishot);
    RUN_TEST(test_flood_input_bounded_single);
    RUN_TEST(test_blocked_reserves_of_a_reader_that_never_reads);
    RUN_TEST(test_handshake_failures);
    RUN_TEST(test_connection_limit);
    RUN_TEST(test_fd_limit_raised_at_start);
    RUN_TEST(test_stalled_frame_times_out);
    RUN_TEST(test_above_memory_bound);
    RUN_TEST(test_tight_memory_keeps_flooders_from_puts);
    RUN_TEST(test_unread_connections_closed_above_the_bound);
    RUN_TEST(test_shared_secret);
    server_still_serves();
    CHECK_EQ(spoold_stop(&server), 0);
    spoold_cleanup(&server);
    return check_exit();
}
