/*
 * conn.c: libspool's transport: one non-blocking TCP socket driven by poll() with deadlines,
 * the HELLO handshake, whole-frame reads and the stash of out-of-order replies.
 *
 * Invariants: in_start <= in_end <= in_cap; a frame is handed out only when all its bytes are
 * buffered, and its size was checked against the server's frame maximum (from the handshake)
 * before the buffer grew for it. Every wait has a deadline when an I/O timeout is set; a
 * socket error, EOF or undecodable frame marks the client broken (the byte stream can no
 * longer be trusted to be in sync).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "assert.h"
#include "client_internal.h"

#define NO_DEADLINE INT64_MAX

int64_t client_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int poll_timeout(int64_t deadline_ms)
{
    if (deadline_ms == NO_DEADLINE)
        return -1;
    int64_t left = deadline_ms - client_now_ms();
    if (left <= 0)
        return 0;
    return left > 60000 ? 60000 : (int)left;
}

/* Wait for events on the socket until the deadline: 0, SPOOL_E_TIMED_OUT or -errno. */
static int conn_wait(struct spool_client *c, short events, int64_t deadline_ms)
{
    for (;;) {
        struct pollfd p = {.fd = c->fd, .events = events};
        int rc = poll(&p, 1, poll_timeout(deadline_ms));
        if (rc > 0)
            return 0;
        if (rc < 0 && errno != EINTR)
            return -errno;
        if (rc == 0 && deadline_ms != NO_DEADLINE && client_now_ms() >= deadline_ms)
            return SPOOL_E_TIMED_OUT;
    }
}

/* Mark the connection unusable. A reset or a broken pipe is the server going away just as
 * an orderly close is (which one a caller sees is a race), so all three are one code. */
static int conn_broken(struct spool_client *c, int error)
{
    SPOOL_ASSERT(error < 0);
    c->broken = true;
    if (error == -ECONNRESET || error == -EPIPE)
        return SPOOL_E_CONNECTION_CLOSED;
    return error;
}

static int conn_closed_reason(struct spool_client *c, int error);

int client_flush(struct spool_client *c, int64_t deadline_ms)
{
    size_t sent = 0;
    while (sent < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + sent, c->out.len - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = conn_wait(c, POLLOUT, deadline_ms);
            if (rc != 0)
                return conn_broken(c, rc);
            continue;
        }
        return conn_closed_reason(c, conn_broken(c, n < 0 ? -errno : SPOOL_E_CONNECTION_CLOSED));
    }
    c->out.len = 0;
    return 0;
}

/* Make room for need more bytes after in_end, compacting first. */
static int conn_in_room(struct spool_client *c, size_t need)
{
    if (c->in_start > 0) {
        memmove(c->in, c->in + c->in_start, c->in_end - c->in_start);
        c->in_end -= c->in_start;
        c->in_start = 0;
    }
    if (c->in_cap - c->in_end >= need)
        return 0;
    size_t cap = c->in_cap < 4096 ? 4096 : c->in_cap;
    while (cap - c->in_end < need)
        cap *= 2;
    uint8_t *in = realloc(c->in, cap);
    if (in == NULL)
        return -ENOMEM;
    c->in = in;
    c->in_cap = cap;
    return 0;
}

/* Read whatever the socket has (at least one byte) within the deadline. */
static int conn_fill(struct spool_client *c, size_t want, int64_t deadline_ms)
{
    /* Read in chunks of at least 16 KiB so a stream of small replies costs few syscalls. */
    int rc = conn_in_room(c, want > 16384 ? want : 16384);
    if (rc != 0)
        return conn_broken(c, rc);
    for (;;) {
        ssize_t n = recv(c->fd, c->in + c->in_end, c->in_cap - c->in_end, 0);
        if (n > 0) {
            c->in_end += (size_t)n;
            return 0;
        }
        if (n == 0)
            return conn_broken(c, SPOOL_E_CONNECTION_CLOSED);
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return conn_broken(c, -errno);
        rc = conn_wait(c, POLLIN, deadline_ms);
        if (rc != 0)
            return conn_broken(c, rc);
    }
}

/* An ERROR frame with request id 0 is about the connection, not a request: the server sends
 * it (BUSY at accept, BAD_FRAME, HANDSHAKE_REQUIRED, ...) and then closes. Its code is the
 * answer to whatever the caller was waiting for, so that a refused connection reads as BUSY,
 * retryable, rather than as the close that follows it. */
static int conn_level_error(struct spool_client *c, const struct wire_header *h,
                            const uint8_t *payload)
{
    union wire_msg err;
    c->broken = true;
    if (wire_decode(WIRE_OP_ERROR, payload, h->frame_size - WIRE_HEADER_SIZE, &err) != 0)
        return SPOOL_E_PROTOCOL;
    int code = wire_error_from_wire(err.error.code);
    return code < 0 ? code : SPOOL_E_PROTOCOL;
}

/* After a failed send: the server may have closed the socket right after writing a
 * connection-level error (a refused connection does so before reading anything). Read what is
 * already buffered, without waiting, and return that error's code; else `error`. */
static int conn_closed_reason(struct spool_client *c, int error)
{
    if (error != SPOOL_E_CONNECTION_CLOSED)
        return error;
    for (;;) {
        size_t have = c->in_end - c->in_start;
        struct wire_header h;
        int rc = have >= WIRE_HEADER_SIZE
                     ? wire_header_decode(c->in + c->in_start, have, c->frame_size_max, &h)
                     : -EAGAIN;
        if (rc == 0 && have >= h.frame_size) {
            const uint8_t *payload = c->in + c->in_start + WIRE_HEADER_SIZE;
            c->in_start += h.frame_size;
            if (h.request_id == 0 && h.opcode == WIRE_OP_ERROR)
                return conn_level_error(c, &h, payload);
            continue;
        }
        if (rc != 0 && rc != -EAGAIN)
            return error;
        if (conn_in_room(c, 4096) != 0)
            return error;
        ssize_t n = recv(c->fd, c->in + c->in_end, c->in_cap - c->in_end, MSG_DONTWAIT);
        if (n <= 0)
            return error;
        c->in_end += (size_t)n;
    }
}

/* Block until one whole frame is buffered and hand it out (valid until the next read). */
static int conn_read_frame(struct spool_client *c, int64_t deadline_ms, struct wire_header *h,
                           const uint8_t **payload)
{
    if (c->broken)
        return SPOOL_E_CONNECTION_CLOSED;
    for (;;) {
        size_t have = c->in_end - c->in_start;
        /* Before the first read c->in is NULL: do not form NULL + 0. */
        int rc = have >= WIRE_HEADER_SIZE
                     ? wire_header_decode(c->in + c->in_start, have, c->frame_size_max, h)
                     : -EAGAIN;
        if (rc == 0 && have >= h->frame_size) {
            *payload = c->in + c->in_start + WIRE_HEADER_SIZE;
            c->in_start += h->frame_size;
            if (h->request_id == 0 && h->opcode == WIRE_OP_ERROR)
                return conn_level_error(c, h, *payload);
            return 0;
        }
        if (rc != 0 && rc != -EAGAIN)
            return conn_broken(c, SPOOL_E_PROTOCOL);
        size_t want = rc == 0 ? h->frame_size - have : WIRE_HEADER_SIZE - have;
        rc = conn_fill(c, want, deadline_ms);
        if (rc != 0)
            return rc;
    }
}

static int conn_stash(struct spool_client *c, const struct wire_header *h, const uint8_t *payload)
{
    size_t len = h->frame_size - WIRE_HEADER_SIZE;
    struct client_stashed *s = malloc(sizeof *s);
    uint8_t *copy = malloc(len > 0 ? len : 1);
    if (s == NULL || copy == NULL) {
        free(s);
        free(copy);
        return conn_broken(c, -ENOMEM);
    }
    memcpy(copy, payload, len);
    s->next = NULL;
    s->header = *h;
    s->payload = copy;
    if (c->stash_tail != NULL)
        c->stash_tail->next = s;
    else
        c->stash_head = s;
    c->stash_tail = s;
    return 0;
}

static int64_t call_deadline(const struct spool_client *c, uint32_t wait_ms)
{
    if (c->io_timeout_ms <= 0)
        return NO_DEADLINE;
    return client_now_ms() + c->io_timeout_ms + (int64_t)wait_ms;
}

/* Decode a reply frame for op: the reply, or an ERROR frame's code. */
static int conn_decode_reply(struct spool_client *c, uint16_t op, const struct wire_header *h,
                             const uint8_t *payload, union wire_msg *reply)
{
    size_t len = h->frame_size - WIRE_HEADER_SIZE;
    if (h->opcode == WIRE_OP_ERROR) {
        union wire_msg err;
        if (wire_decode(WIRE_OP_ERROR, payload, len, &err) != 0)
            return conn_broken(c, SPOOL_E_PROTOCOL);
        int code = wire_error_from_wire(err.error.code);
        /* The server closes after these: so must we. */
        if (code == SPOOL_E_BAD_FRAME || code == SPOOL_E_VERSION_UNSUPPORTED ||
            code == SPOOL_E_HANDSHAKE_REQUIRED || code == SPOOL_E_AUTH_FAILED)
            c->broken = true;
        return code;
    }
    if (h->opcode != (uint16_t)(op | WIRE_OP_REPLY))
        return conn_broken(c, SPOOL_E_PROTOCOL);
    if (wire_decode_v(client_version(c), h->opcode, payload, len, reply) != 0)
        return conn_broken(c, SPOOL_E_PROTOCOL);
    return 0;
}

int client_enqueue(struct spool_client *c, uint16_t op, const union wire_msg *msg,
                   uint64_t *request_id_out)
{
    if (c->broken)
        return SPOOL_E_CONNECTION_CLOSED;
    uint64_t id = c->request_id_next++;
    int rc = wire_encode_v(&c->out, client_version(c), op, id, msg);
    if (rc != 0)
        return rc;
    if (request_id_out != NULL)
        *request_id_out = id;
    return 0;
}

int client_call(struct spool_client *c, uint16_t op, const union wire_msg *msg, uint32_t wait_ms,
                union wire_msg *reply)
{
    free(c->reply_owned);
    c->reply_owned = NULL;
    uint64_t id;
    int rc = client_enqueue(c, op, msg, &id);
    if (rc != 0)
        return rc;
    int64_t deadline_ms = call_deadline(c, wait_ms);
    rc = client_flush(c, deadline_ms);
    if (rc != 0)
        return rc;
    for (;;) {
        struct wire_header h;
        const uint8_t *payload;
        rc = conn_read_frame(c, deadline_ms, &h, &payload);
        if (rc != 0)
            return rc;
        if (h.request_id == id)
            return conn_decode_reply(c, op, &h, payload, reply);
        rc = conn_stash(c, &h, payload);
        if (rc != 0)
            return rc;
    }
}

void client_reply_done(struct spool_client *c, uint16_t op, union wire_msg *reply)
{
    (void)c;
    wire_msg_free((uint16_t)(op | WIRE_OP_REPLY), reply);
}

int client_next_frame(struct spool_client *c, struct wire_header *h, const uint8_t **payload)
{
    free(c->reply_owned);
    c->reply_owned = NULL;
    struct client_stashed *s = c->stash_head;
    if (s != NULL) {
        c->stash_head = s->next;
        if (c->stash_head == NULL)
            c->stash_tail = NULL;
        *h = s->header;
        *payload = s->payload;
        c->reply_owned = s->payload;
        free(s);
        return 0;
    }
    int64_t deadline_ms = call_deadline(c, 0);
    int rc = client_flush(c, deadline_ms);
    if (rc != 0)
        return rc;
    return conn_read_frame(c, deadline_ms, h, payload);
}

/* Split "HOST:PORT" / "[V6]:PORT" into host and port strings. */
static int parse_address(const char *address, char *host, size_t host_size, char *port,
                         size_t port_size)
{
    const char *colon = strrchr(address, ':');
    if (colon == NULL || colon[1] == '\0' || strlen(colon + 1) >= port_size)
        return SPOOL_E_INVALID_ARGUMENT;
    const char *start = address;
    size_t len = (size_t)(colon - address);
    if (len >= 2 && address[0] == '[' && address[len - 1] == ']') {
        start++;
        len -= 2;
    }
    if (len == 0 || len >= host_size)
        return SPOOL_E_INVALID_ARGUMENT;
    memcpy(host, start, len);
    host[len] = '\0';
    memcpy(port, colon + 1, strlen(colon + 1) + 1); /* fits: checked against port_size above */
    for (const char *p = port; *p; p++) {
        if (*p < '0' || *p > '9')
            return SPOOL_E_INVALID_ARGUMENT;
    }
    return 0;
}

/* Connect one address within the deadline: the socket, or -errno / SPOOL_E_TIMED_OUT. */
static int connect_one(const struct addrinfo *ai, int64_t deadline_ms)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -errno;
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno != EINPROGRESS) {
        rc = -errno;
        close(fd);
        return rc;
    }
    if (rc != 0) {
        struct spool_client probe = {.fd = fd};
        rc = conn_wait(&probe, POLLOUT, deadline_ms);
        int err = 0;
        socklen_t len = sizeof err;
        if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (rc == 0 && err != 0)
            rc = -err;
        if (rc != 0) {
            close(fd);
            return rc;
        }
    }
    int one = 1;
    /* Requests are small and latency-bound: do not let Nagle hold them back. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int connect_address(const char *address, int64_t deadline_ms)
{
    char host[256];
    char port[16];
    int rc = parse_address(address, host, sizeof host, port, sizeof port);
    if (rc != 0)
        return rc;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *list = NULL;
    if (getaddrinfo(host, port, &hints, &list) != 0 || list == NULL)
        return SPOOL_E_RESOLVE;
    rc = -ECONNREFUSED;
    for (const struct addrinfo *ai = list; ai != NULL; ai = ai->ai_next) {
        rc = connect_one(ai, deadline_ms);
        if (rc >= 0 || rc == SPOOL_E_TIMED_OUT)
            break;
    }
    freeaddrinfo(list);
    return rc;
}

static int client_handshake(struct spool_client *c, const struct spool_connect_options *opts,
                            int64_t deadline_ms)
{
    union wire_msg hello = {.hello = {
                                .magic = WIRE_MAGIC,
                                .version_min = WIRE_VERSION_MIN,
                                .version_max = opts->protocol_max > 0 &&
                                                       opts->protocol_max < WIRE_VERSION
                                                   ? (uint16_t)opts->protocol_max
                                                   : WIRE_VERSION,
                                .client_name = wire_bytes_str(
                                    opts->client_name != NULL ? opts->client_name : "libspool"),
                                .auth = wire_bytes_str(opts->auth),
                            }};
    int saved_timeout = c->io_timeout_ms;
    int64_t left = deadline_ms - client_now_ms();
    c->io_timeout_ms = left > 0 ? (int)left : 1;
    union wire_msg reply = {.hello_reply = {0}};
    int rc = client_call(c, WIRE_OP_HELLO, &hello, 0, &reply);
    c->io_timeout_ms = saved_timeout;
    if (rc != 0)
        return rc;
    struct wire_hello_reply *r = &reply.hello_reply;
    if (r->version < WIRE_VERSION_MIN || r->version > WIRE_VERSION ||
        r->frame_size_max < WIRE_FRAME_SIZE_MIN || r->frame_size_max > WIRE_FRAME_SIZE_LIMIT)
        return conn_broken(c, SPOOL_E_PROTOCOL);
    c->frame_size_max = r->frame_size_max;
    c->job_size_max = r->job_size_max;
    c->version = r->version;
    c->out.size_max = r->frame_size_max;
    return 0;
}

int client_open(const char *address, const struct spool_connect_options *opts,
                struct spool_client **out)
{
    struct spool_connect_options defaults = {0};
    if (opts == NULL)
        opts = &defaults;
    int timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : CLIENT_CONNECT_TIMEOUT_MS_DEFAULT;
    int64_t deadline_ms = client_now_ms() + timeout_ms;
    int fd = connect_address(address != NULL ? address : SPOOL_DEFAULT_ADDRESS, deadline_ms);
    if (fd < 0)
        return fd;
    struct spool_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        close(fd);
        return -ENOMEM;
    }
    c->fd = fd;
    c->request_id_next = 1;
    c->frame_size_max = CLIENT_HANDSHAKE_FRAME_MAX;
    c->io_timeout_ms = opts->io_timeout_ms;
    wire_buf_init(&c->out, (size_t)CLIENT_HANDSHAKE_FRAME_MAX);
    int rc = client_handshake(c, opts, deadline_ms);
    if (rc != 0) {
        client_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void client_free(struct spool_client *c)
{
    if (c == NULL)
        return;
    close(c->fd);
    wire_buf_free(&c->out);
    free(c->in);
    free(c->reply_owned);
    while (c->stash_head != NULL) {
        struct client_stashed *s = c->stash_head;
        c->stash_head = s->next;
        free(s->payload);
        free(s);
    }
    free(c);
}
