/*
 * Connections: receive through the buffer ring, cut frames, hand them to the handlers, send.
 *
 * Input. A recv picks a buffer from the ring; its bytes are appended to the connection's input
 * at once and the buffer goes back to the ring, so buffers never wait on a slow request. A recv
 * is armed only when the connection wants input: not closing, not stalled on log space, output
 * below conn_out_high (CONN_OUT_HIGH, or CONN_BUF_KEEP while memory is tight), at most one
 * frame unparsed (its size is checked against --max-frame from the header before the buffer
 * grows; less while memory is tight, conn_input_room). Where the kernel bounds a multishot
 * receive by bytes (server.h, SERVER_RECV_CREDIT), one recv stays armed for up to that many
 * bytes, read by read, and is armed again after its final completion; else each read is one
 * recv. Either way a connection's unparsed input is at most one frame, SERVER_RECV_CREDIT and
 * one buffer.
 *
 * Output. Two buffers: replies append to `out` while `sending` is in flight (the kernel reads
 * it, so it must not move); when a send completes, the buffers swap.
 *
 * Framing errors (a size below the header, above the maximum, a payload that does not parse,
 * a request before HELLO) get one error frame, then the connection stops reading, flushes and
 * closes. Other errors are a reply and the connection goes on.
 *
 * Lifetime. conn_close releases the connection's queue state (blocked requests, leases) at
 * once, shuts the socket down so in-flight ops complete, and frees the struct only once no op
 * references it, at the end of a loop turn (never under a caller's feet).
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "slog.h"

static struct io_uring_sqe *conn_sqe(struct server *server)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&server->ring);
    if (sqe == NULL) {
        (void)io_uring_submit(&server->ring);
        sqe = io_uring_get_sqe(&server->ring);
    }
    SPOOL_ASSERT(sqe != NULL); /* the SQ drained into the kernel just above */
    return sqe;
}

struct conn *conn_by_id(struct server *server, uint64_t id)
{
    return idmap_get(&server->conns_by_id, id);
}

static void conn_maybe_free(struct conn *conn)
{
    if (!conn->closing || conn->recv_armed || conn->send_armed || conn->fd < 0)
        return;
    close(conn->fd);
    conn->fd = -1;
    /* Freed at the end of the loop turn (server.c walks zombies). */
    list_unlink(&conn->link);
    list_insert_tail(&conn->server->zombies, &conn->link);
}

void conn_make_runnable(struct conn *conn)
{
    if (conn->closing || conn->stalled || list_linked(&conn->run_link))
        return;
    list_insert_tail(&conn->server->runnable, &conn->run_link);
}

size_t conn_out_pending(const struct conn *conn)
{
    return conn->out.len + (conn->sending.len - conn->sent);
}

size_t conn_out_owed(const struct conn *conn)
{
    return conn_out_pending(conn) + conn->fetch_bytes;
}

/* Unsent output that stops a connection's reading: CONN_OUT_HIGH, and CONN_BUF_KEEP while memory
 * is tight (above three quarters of the bound, memwatch.h), where clients that send and never
 * read (a PING flood) would otherwise tie up 4 MiB of replies each, GBs over a thousand of
 * them, and take the memory producers' puts need. A client that reads drains its replies at
 * once and hardly notices. */
size_t conn_out_high(const struct conn *conn)
{
    return server_memory_tight(conn->server) ? CONN_BUF_KEEP : CONN_OUT_HIGH;
}

/* Room for more input: at most a frame (--max-frame) unparsed, and while memory is tight at
 * most CONN_BUF_KEEP read ahead of parsing, unless the frame at the head is larger and still
 * arriving (an ACK_BATCH, say: acks are what bring memory down; a large put was refused when
 * its header came, conn_refuse_partial_put), or for a beanstalkd connection the body of the
 * put at the head (up to --max-job-size: a larger one is skipped as it arrives, and so are
 * refused ones), which would otherwise wait for memory to fall below tight to be read. */
static bool conn_input_room(const struct conn *conn)
{
    size_t avail = conn->in_end - conn->in_start;
    size_t frame_max = conn->server->config.frame_size_max;
    if (avail > frame_max)
        return false;
    if (avail <= CONN_BUF_KEEP || !server_memory_tight(conn->server))
        return true;
    if (conn->beanstalk)
        return conn->bs != NULL && conn->bs->body_missing > 0;
    struct wire_header h;
    return wire_header_decode(conn->in + conn->in_start, avail, (uint32_t)frame_max, &h) == 0 &&
           h.frame_size > avail;
}

static bool conn_wants_input(const struct conn *conn)
{
    return !conn->closing && !conn->stalled &&
           conn_out_owed(conn) < conn_out_high(conn) &&
           conn_input_room(conn);
}

void conn_arm_recv(struct conn *conn)
{
    if (conn->recv_armed || !conn_wants_input(conn) || conn->server->stopping)
        return;
    struct io_uring_sqe *sqe = conn_sqe(conn->server);
    if (conn->server->recv_multishot) {
        io_uring_prep_recv_multishot(sqe, conn->fd, NULL, 0, 0);
        sqe->file_index = SERVER_RECV_CREDIT; /* the kernel's optlen: the byte limit */
    } else {
        io_uring_prep_recv(sqe, conn->fd, NULL, SERVER_RECV_BUFFER_SIZE, 0);
    }
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = SERVER_RECV_GROUP;
    io_uring_sqe_set_data(sqe, &conn->recv_completion);
    conn->recv_armed = true;
}

static void conn_send_next(struct conn *conn);

/* Append received bytes to the input, growing it to hold them (bounded by conn_wants_input and
 * the receive's credit: at most one frame, SERVER_RECV_CREDIT and one receive buffer). */
static void conn_input_append(struct conn *conn, const uint8_t *data, size_t len)
{
    if (conn->discard_left > 0) { /* the rest of a put refused before it all arrived */
        size_t drop = len < conn->discard_left ? len : (size_t)conn->discard_left;
        conn->discard_left -= drop;
        data += drop;
        len -= drop;
        if (len == 0)
            return;
    }
    if (conn->in_start > 0 && conn->in_start == conn->in_end)
        conn->in_start = conn->in_end = 0;
    if (conn->in_end + len > conn->in_cap) {
        size_t live = conn->in_end - conn->in_start;
        if (live > 0)
            memmove(conn->in, conn->in + conn->in_start, live);
        conn->in_start = 0;
        conn->in_end = live;
        size_t cap = conn->in_cap == 0 ? SERVER_RECV_BUFFER_SIZE : conn->in_cap;
        while (cap < live + len)
            cap *= 2;
        if (cap != conn->in_cap) {
            uint8_t *in = realloc(conn->in, cap);
            SPOOL_ASSERT(in != NULL);
            conn->in = in;
            conn->in_cap = cap;
        }
    }
    memcpy(conn->in + conn->in_end, data, len);
    conn->in_end += len;
    uint64_t *input_max = &conn->server->metrics.input_max_bytes;
    if (conn->in_end - conn->in_start > *input_max)
        *input_max = conn->in_end - conn->in_start;
}

static void conn_recv_complete(struct io_completion *completion, const struct io_uring_cqe *cqe)
{
    struct conn *conn =
        (struct conn *)(void *)((char *)completion - offsetof(struct conn, recv_completion));
    struct server *server = conn->server;
    conn->recv_armed = (cqe->flags & IORING_CQE_F_MORE) != 0; /* a multishot carrying on */
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        if (cqe->res > 0 && !conn->closing) {
            server->metrics.bytes_in += (uint64_t)cqe->res;
            conn_input_append(conn, server_recv_buffer(server, bid), (size_t)cqe->res);
            conn->input_ms = server_now_ms();
        }
        server_recv_buffer_return(server, bid);
    }
    if (conn->closing) {
        conn_maybe_free(conn);
        return;
    }
    if (cqe->res == -ENOBUFS) { /* every buffer is lent out: try again next turn */
        conn_make_runnable(conn);
        return;
    }
    if (cqe->res <= 0) { /* EOF (maybe mid-frame) or a socket error: nothing to answer */
        conn_close(conn);
        return;
    }
    conn_make_runnable(conn);
}

static void conn_send_complete(struct io_completion *completion, const struct io_uring_cqe *cqe)
{
    struct conn *conn =
        (struct conn *)(void *)((char *)completion - offsetof(struct conn, send_completion));
    conn->send_armed = false;
    if (cqe->res < 0) {
        conn->sent = conn->sending.len;
        conn_close(conn);
        conn_maybe_free(conn);
        return;
    }
    SPOOL_ASSERT((size_t)cqe->res <= conn->sending.len - conn->sent);
    conn->sent += (size_t)cqe->res;
    conn->output_sent += (uint64_t)cqe->res;
    conn->server->metrics.bytes_out += (uint64_t)cqe->res;
    conn_send_next(conn);
    if (conn->closing) {
        if (!conn->send_armed && conn->fd >= 0) {
            shutdown(conn->fd, SHUT_RDWR);
            conn_maybe_free(conn);
        }
        return;
    }
    handler_conn_drained(conn);
    conn_make_runnable(conn); /* output drained: input may resume */
}

/* Start the next send: the rest of what is in flight, or swap in what replies appended. */
static void conn_send_next(struct conn *conn)
{
    if (conn->send_armed || conn->fd < 0)
        return;
    if (conn->sent == conn->sending.len) {
        conn->sending.len = 0;
        conn->sent = 0;
        if (conn->out.len == 0)
            return;
        struct wire_buf swap = conn->sending;
        conn->sending = conn->out;
        conn->out = swap;
    }
    struct io_uring_sqe *sqe = conn_sqe(conn->server);
    io_uring_prep_send(sqe, conn->fd, conn->sending.data + conn->sent,
                       conn->sending.len - conn->sent, MSG_NOSIGNAL);
    io_uring_sqe_set_data(sqe, &conn->send_completion);
    conn->send_armed = true;
}

void conn_flush(struct conn *conn)
{
    conn_send_next(conn);
}

void conn_flush_later(struct conn *conn)
{
    if (!list_linked(&conn->flush_link))
        list_insert_tail(&conn->server->to_flush, &conn->flush_link);
}

void conns_flush(struct server *server)
{
    struct list_link *link;
    while ((link = list_first(&server->to_flush)) != NULL) {
        struct conn *conn = LIST_ENTRY(link, struct conn, flush_link);
        list_unlink(link);
        conn_flush(conn);
    }
}

void conn_peer_name(const struct conn *conn, char *out, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "unknown";
    unsigned port = 0;
    if (getpeername(conn->fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
            (void)inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
            port = ntohs(in->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
            (void)inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
            port = ntohs(in6->sin6_port);
        }
    }
    snprintf(out, size, "%s:%u", host, port);
}

static void conn_refuse_busy(struct conn *conn, const char *why);

static struct conn *conn_new(struct server *server, int fd)
{
    struct conn *conn = calloc(1, sizeof(*conn));
    SPOOL_ASSERT(conn != NULL);
    conn->server = server;
    conn->id = ++server->next_conn_id;
    server->metrics.connections_accepted++;
    conn->fd = fd;
    conn->output_ms = server_turn_ms(server);
    conn->recv_completion.complete = conn_recv_complete;
    conn->send_completion.complete = conn_send_complete;
    wire_buf_init(&conn->out, server->config.frame_size_max);
    wire_buf_init(&conn->sending, server->config.frame_size_max);
    queue_owner_init(&conn->owner);
    list_init(&conn->blocked);
    list_init(&conn->run_link);
    list_init(&conn->flush_link);
    list_init(&conn->handshake_link);
    list_insert_tail(&server->conns, &conn->link);
    idmap_put(&server->conns_by_id, conn->id, conn);
    server->conn_count++;
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return conn;
}

void conn_accepted(struct server *server, int fd)
{
    struct conn *conn = conn_new(server, fd);
    if (server->conn_count - server->handshake_count > server->config.connections_max) {
        conn_refuse_busy(conn, "too many connections");
        return;
    }
    conn->accepted_ms = server_now_ms();
    list_insert_tail(&server->handshaking, &conn->handshake_link);
    server->handshake_count++;
    if (server->handshake_count > server->config.handshakes_max) {
        /* The oldest has had the longest to say HELLO: it makes room, so a flood of idle
         * sockets costs real clients (who say HELLO at once) nothing but a retry at worst. */
        struct conn *oldest = LIST_ENTRY(list_first(&server->handshaking), struct conn,
                                         handshake_link);
        conn_refuse_busy(oldest, "too many connections before HELLO");
    }
    conn_arm_recv(conn);
}

/* beanstalkd has no handshake and no BUSY word: a connection over --max-connections is
 * closed at once (logged, rate-limited), as a server out of descriptors would. */
void conn_accepted_beanstalk(struct server *server, int fd)
{
    struct conn *conn = conn_new(server, fd);
    conn->hello_done = true;
    conn->beanstalk = true;
    beanstalk_conn_init(conn);
    if (server->conn_count - server->handshake_count > server->config.connections_max) {
        conn_refuse_busy(conn, "too many connections");
        return;
    }
    conn_arm_recv(conn);
}

/* A connection turned away for lack of room: BUSY (retryable), logged (rate-limited). */
void conn_log_refusal(struct conn *conn, struct conn_log_limit *limit, const char *msg,
                      const char *why)
{
    limit->count++;
    int64_t now_ms = server_now_ms();
    if (now_ms < limit->next_ms)
        return;
    char peer[64];
    conn_peer_name(conn, peer, sizeof(peer));
    slog_warn("msg=\"%s\" why=\"%s\" peer=%s refused=%llu", msg, why, peer,
              (unsigned long long)limit->count);
    limit->count = 0;
    limit->next_ms = now_ms + CONN_LOG_INTERVAL_MS;
}

static void conn_refuse_busy(struct conn *conn, const char *why)
{
    conn_log_refusal(conn, &conn->server->busy_log, "connection refused: busy", why);
    conn_fail(conn, 0, SPOOL_E_BUSY, why);
}

/* HELLO accepted: the connection leaves the handshake pool for the connection limit. False
 * (and the connection refused with BUSY) when that limit is full. */
bool conn_handshake_done(struct conn *conn)
{
    struct server *server = conn->server;
    SPOOL_ASSERT(!conn->hello_done);
    SPOOL_ASSERT(server->handshake_count > 0);
    list_unlink(&conn->handshake_link);
    server->handshake_count--;
    conn->hello_done = true;
    if (server->conn_count - server->handshake_count > server->config.connections_max) {
        conn_refuse_busy(conn, "too many connections");
        return false;
    }
    return true;
}

void conn_error(struct conn *conn, uint64_t request_id, int code, const char *message)
{
    if (conn->beanstalk)
        return; /* no binary frame to a text client: it answers in its own words */
    if (wire_encode_error(&conn->out, request_id, code, message) != 0)
        slog_warn("msg=\"error frame not encoded\" conn=%llu", (unsigned long long)conn->id);
    uint16_t wire_code = wire_error_to_wire(code);
    conn->server->metrics.errors[wire_code < METRICS_ERROR_CODES ? wire_code : 0]++;
}

/* Give back everything the connection holds in the queue state, once. */
static void conn_release(struct conn *conn)
{
    if (conn->released)
        return;
    struct server *server = conn->server;
    conn->released = true;
    handler_conn_closed(conn);
    beanstalk_conn_closed(conn); /* before its leases go back: its reserve must not get one */
    queue_owner_release(server->queues, &conn->owner, server->now);
    idmap_remove(&server->conns_by_id, conn->id);
    if (!conn->hello_done && list_linked(&conn->handshake_link)) {
        SPOOL_ASSERT(server->handshake_count > 0);
        list_unlink(&conn->handshake_link);
        server->handshake_count--;
    }
    SPOOL_ASSERT(server->conn_count > 0);
    server->conn_count--;
    if (list_linked(&conn->run_link))
        list_unlink(&conn->run_link);
}

void conn_close(struct conn *conn)
{
    conn_release(conn);
    conn->closing = true;
    conn->output_ms = server_turn_ms(conn->server); /* its send fails at once: no drop */
    if (conn->fd >= 0)
        shutdown(conn->fd, SHUT_RDWR);
    conn_maybe_free(conn);
}

/* A framing error: one error frame, then stop reading, flush and close. */
void conn_fail(struct conn *conn, uint64_t request_id, int code, const char *message)
{
    conn_error(conn, request_id, code, message);
    conn_release(conn);
    conn->closing = true;
    conn->output_ms = server_turn_ms(conn->server); /* CONN_UNREAD_MS to take the rest */
    conn_flush(conn);
    if (!conn->send_armed) {
        shutdown(conn->fd, SHUT_RDWR);
        conn_maybe_free(conn);
    }
}

void conn_stall(struct conn *conn)
{
    conn->stalled = true;
    if (list_linked(&conn->run_link))
        list_unlink(&conn->run_link);
    list_insert_tail(&conn->server->stalled, &conn->run_link);
}

/*
 * Above the memory bound a put is refused whatever it holds (handlers.c), so a large one is
 * refused as soon as its header is here, instead of once its body has been read into memory
 * the bound says spoold does not have: QUEUE_FULL goes out at once, what arrived of the frame
 * is dropped, and so is the rest as it arrives (discard_left); the frames after it are parsed
 * as usual. Its payload is never decoded, so a malformed one gets QUEUE_FULL, not BAD_FRAME.
 * Small puts take the usual path (their memory is a receive buffer's), with the same answer.
 */
static bool conn_refuse_partial_put(struct conn *conn, const struct wire_header *h, size_t avail)
{
    if (!conn->hello_done || (h->opcode != WIRE_OP_PUT && h->opcode != WIRE_OP_PUT_BATCH) ||
        h->frame_size <= CONN_BUF_KEEP || avail >= h->frame_size)
        return false;
    /* A batch's job count is in its payload, which has not arrived: counted as one. */
    if (!handler_put_refused_for_memory(conn, h->request_id, 1))
        return false;
    metrics_count_request(&conn->server->metrics, h->opcode);
    conn->discard_left = h->frame_size - avail;
    conn->in_start = conn->in_end;
    return true;
}

/* One frame at in[in_start..): 1 ran (consumed), 0 need more bytes, -1 stop parsing. */
static int conn_run_frame(struct conn *conn)
{
    struct server *server = conn->server;
    const uint8_t *p = conn->in + conn->in_start;
    size_t avail = conn->in_end - conn->in_start;
    struct wire_header h;
    int rc = wire_header_decode(p, avail, server->config.frame_size_max, &h);
    if (rc == -EAGAIN)
        return 0;
    if (rc != 0) {
        conn_fail(conn, avail >= WIRE_HEADER_SIZE ? h.request_id : 0, rc, NULL);
        return -1;
    }
    /* Before HELLO only a HELLO, and no larger than one can be: judged at the header, so an
     * unauthenticated peer never has spoold buffer a frame of --max-frame. */
    if (!conn->hello_done && h.opcode != WIRE_OP_HELLO) {
        conn_fail(conn, h.request_id, SPOOL_E_HANDSHAKE_REQUIRED, "send HELLO first");
        return -1;
    }
    if (!conn->hello_done && h.frame_size - WIRE_HEADER_SIZE > WIRE_HELLO_SIZE_MAX) {
        conn_fail(conn, h.request_id, SPOOL_E_TOO_LARGE, "HELLO larger than its fields allow");
        return -1;
    }
    if (avail < h.frame_size)
        return conn_refuse_partial_put(conn, &h, avail) ? 1 : 0;
    if (!handler_known(h.opcode)) {
        conn_error(conn, h.request_id, SPOOL_E_UNKNOWN_OP, NULL);
        conn->in_start += h.frame_size;
        return 1;
    }
    union wire_msg msg;
    rc = wire_decode_v(conn_wire_version(conn), h.opcode, p + WIRE_HEADER_SIZE,
                       h.frame_size - WIRE_HEADER_SIZE, &msg);
    if (rc == SPOOL_E_BAD_FRAME) {
        conn_fail(conn, h.request_id, rc, "payload does not decode");
        return -1;
    }
    if (rc != 0 && !conn->hello_done) {
        /* A HELLO that does not decode (an over-long auth or name): no second chance before
         * the handshake, as for any other handshake failure. */
        conn_fail(conn, h.request_id, rc == -ENOMEM ? SPOOL_E_INTERNAL : rc, "bad HELLO");
        return -1;
    }
    if (rc != 0) {
        conn_error(conn, h.request_id, rc == -ENOMEM ? SPOOL_E_INTERNAL : rc, NULL);
        conn->in_start += h.frame_size;
        return 1;
    }
    rc = handler_dispatch(conn, &h, &msg);
    wire_msg_free(h.opcode, &msg);
    if (rc == HANDLER_AGAIN) {
        conn_stall(conn); /* the frame stays, to run again after the next commit */
        return -1;
    }
    if (conn->closing)
        return -1;
    conn->in_start += h.frame_size;
    return 1;
}

void conn_run(struct conn *conn, uint32_t frames_max)
{
    if (list_linked(&conn->run_link))
        list_unlink(&conn->run_link);
    if (conn->closing)
        return;
    if (conn->beanstalk) {
        beanstalk_conn_run(conn, frames_max);
        return;
    }
    uint32_t frames = 0;
    int rc = 1;
    size_t out_high = conn_out_high(conn);
    while (frames < frames_max && conn->out.len + conn->fetch_bytes < out_high &&
           (rc = conn_run_frame(conn)) == 1)
        frames++;
    if (conn->closing)
        return;
    if (conn->in_start == conn->in_end)
        conn->in_start = conn->in_end = 0;
    if (rc == 1 && frames == frames_max)
        conn_make_runnable(conn); /* more to do: after the others had their turn */
    conn_flush(conn);
    conn_arm_recv(conn);
}

/*
 * Buffers grow by doubling. Left alone, a connection that once carried a 1000 KiB put and a
 * reserve of two such jobs would keep about 3 MiB for as long as it stays open: 50 idle workers
 * held 156 MiB of resident memory that way (measured), 1,024 would hold GBs, and --max-memory
 * would fight that by refusing puts. So every sweep (SERVER_SWEEP_MS) frees the empty buffers
 * above CONN_BUF_KEEP, and the next request or reply allocates again. A connection streaming
 * large frames reallocates a few times a second at most, not once a request. Nothing points
 * into an empty buffer: received bytes are copied in from the ring's buffers, and `sending` is
 * freed only with no send in flight.
 */
void conn_trim(struct conn *conn)
{
    if (conn->in_start == conn->in_end && conn->in_cap > CONN_BUF_KEEP) {
        free(conn->in);
        conn->in = NULL;
        conn->in_start = conn->in_end = conn->in_cap = 0;
    }
    if (conn->out.len == 0 && conn->out.cap > CONN_BUF_KEEP)
        wire_buf_free(&conn->out);
    if (!conn->send_armed && conn->sent == conn->sending.len &&
        conn->sending.cap > CONN_BUF_KEEP) {
        wire_buf_free(&conn->sending);
        conn->sent = 0;
    }
}

/* Is the peer taking its replies too slowly to keep up? Judged over windows of at least
 * CONN_UNREAD_MS: one starts whenever its unsent replies are below CONN_BUF_KEEP, and one that
 * ends with them still above it is slow if, at the pace the peer took them in it, what it
 * still holds would take more than CONN_DRAIN_MAX_MS: a peer that never reads, or reads a
 * little now and then to keep the connection alive. A worker that pipelined more than it
 * reads in a few seconds (spoold reads 4 MiB of replies ahead, and more in flight) is not. */
static bool conn_drains_slowly(struct conn *conn, int64_t now_ms)
{
    size_t unsent = conn_out_pending(conn);
    bool slow = false;
    if (unsent >= CONN_BUF_KEEP) {
        int64_t window_ms = now_ms - conn->output_ms;
        if (window_ms < CONN_UNREAD_MS)
            return false;
        uint64_t taken = conn->output_sent - conn->output_window_sent;
        slow = (double)unsent * (double)window_ms > (double)taken * CONN_DRAIN_MAX_MS;
    }
    conn->output_ms = now_ms;
    conn->output_window_sent = conn->output_sent;
    return slow;
}

/* A peer that does not take its replies. A closing connection (a framing error, BUSY, a
 * timeout) gets CONN_UNREAD_MS to take its last ones, however slowly it reads, and is then
 * shut down: else a client that never reads would keep the buffers and socket of connection
 * after connection whose slots were given back. While memory is above the bound, an open
 * connection that drains too slowly (conn_drains_slowly) is closed, its leases going back: else
 * such clients, read 4 MiB ahead while memory had room, would keep every producer's puts
 * refused for as long as they stay connected. True when conn was shut down or closed. */
static bool conn_drop_unread(struct conn *conn, int64_t now_ms)
{
    struct server *server = conn->server;
    if (conn->fd < 0)
        return false;
    if (conn->closing) {
        if (!conn->send_armed || now_ms - conn->output_ms < CONN_UNREAD_MS)
            return false;
        slog_info("msg=\"closing connection's peer did not take its last replies: dropped\" "
                  "conn=%llu unsent=%zu",
                  (unsigned long long)conn->id, conn_out_pending(conn));
        server->metrics.connections_timed_out[METRICS_TIMEOUT_CLOSING]++;
        conn->output_ms = now_ms; /* once: the send fails at once on the shut socket */
        shutdown(conn->fd, SHUT_RDWR);
        return true;
    }
    if (!conn_drains_slowly(conn, now_ms) || !server_memory_low(server))
        return false;
    slog_warn("msg=\"connection's peer does not take its replies while memory is above the "
              "bound: closing\" conn=%llu unsent=%zu",
              (unsigned long long)conn->id, conn_out_pending(conn));
    server->metrics.connections_timed_out[METRICS_TIMEOUT_MEMORY]++;
    conn_close(conn);
    return true;
}

/* A peer that starts a frame and stops sending (slowloris) would hold its buffer and its
 * connection slot forever; one whose frame has not progressed for --frame-timeout is closed.
 * Stalled connections (waiting on the log, not the peer) and idle ones are left alone. One
 * that stops reading is dropped by conn_drop_unread. */
void conn_sweep(struct server *server, int64_t now_ms)
{
    /* Before HELLO a connection gets --handshake-timeout, oldest first, so that sockets
     * that never speak cannot sit on connection slots (an authenticated server included). */
    struct list_link *first;
    while ((first = list_first(&server->handshaking)) != NULL) {
        struct conn *conn = LIST_ENTRY(first, struct conn, handshake_link);
        if (now_ms - conn->accepted_ms < (int64_t)server->config.handshake_timeout_ms)
            break;
        server->metrics.connections_timed_out[METRICS_TIMEOUT_HANDSHAKE]++;
        conn_fail(conn, 0, SPOOL_E_HANDSHAKE_REQUIRED, "no HELLO within the handshake timeout");
    }
    struct list_link *link = server->conns.next;
    while (link != &server->conns) {
        struct conn *conn = LIST_ENTRY(link, struct conn, link);
        link = link->next; /* conn_fail may move conn to the zombies */
        if (conn_drop_unread(conn, now_ms))
            continue;
        if (!conn->closing)
            conn_trim(conn);
        /* Waiting on the peer for the rest of a frame: bytes left over after parsing (or
         * the rest of a refused put to drop), input wanted and a recv armed (a multishot one
         * stays armed when input is not wanted), and not queued to run (then the bytes may be
         * whole frames not yet parsed). */
        bool partial = (conn->in_end > conn->in_start || conn->discard_left > 0) &&
                       conn->recv_armed && conn_wants_input(conn) &&
                       !list_linked(&conn->run_link);
        if (!partial || conn->closing || conn->stalled)
            continue;
        if (conn->bs != NULL && conn->bs->waiting)
            continue; /* commands pipelined behind a blocked reserve: not a stalled frame */
        if (now_ms - conn->input_ms < (int64_t)server->config.frame_timeout_ms)
            continue;
        slog_warn("msg=\"frame incomplete: closing\" conn=%llu bytes=%zu",
                  (unsigned long long)conn->id, conn->in_end - conn->in_start);
        server->metrics.connections_timed_out[METRICS_TIMEOUT_FRAME]++;
        conn_fail(conn, 0, SPOOL_E_BAD_FRAME, "frame incomplete for too long");
    }
}
