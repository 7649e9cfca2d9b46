/*
 * spool-bench floor: what a durable put -> delivery cannot beat on this machine, measured now.
 *
 * A put's path to a consumer is one hop from the producer to the server, one group commit
 * (the batch's write, durable when it completes), and one hop from the server to the consumer.
 * This mode measures those parts alone, paced as the open-loop e2e run is (--rate), so a paced
 * e2e result can be read against them:
 *
 *   commit   one write of the batch a single job of --size makes (batch header, record framing
 *            and the PUT's fields, rounded up to 4 KiB) into blocks already written (spoold
 *            pre-zeroes or recycles its segments for that reason), made durable: through
 *            io_uring as spoold does it (one O_DIRECT write with RWF_DSYNC, through a second
 *            fd; where the file system refuses O_DIRECT, a buffered write linked to an
 *            fdatasync, as spoold then does; commit_io= says which), and with a buffered
 *            pwritev2(RWF_DSYNC) from the calling thread for comparison
 *   hop      one loopback TCP round trip of --size bytes each way between two threads: the
 *            two one-way hops a delivery takes
 *
 * The three measurements run back to back at each due time (the two commits taking turns at
 * going first, then the round trip), so a slow moment of the machine hits them alike.
 * floor_p50_us is the io_uring commit's p50 plus the round trip's p50: a lower bound for put -> delivery p50 with this disk and kernel;
 * spoold's own work (parsing, the queue, replies, wakeups of its loop) comes on top.
 *
 * `spool-bench floor --dir DIR [--size BYTES] [--rate R] [--count N]`; prints one RESULT line.
 */
#include "floor.h"

#include "histogram.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* What one job's batch holds besides the body: the 64-byte batch header, the 8-byte record
 * framing and the PUT record's fixed fields and queue name (about 60 bytes for a short name):
 * 128 covers them, so a 4 KiB body makes an 8 KiB batch, as it does in spoold. */
#define FLOOR_BATCH_OVERHEAD_BYTES 128u
#define FLOOR_BLOCK_BYTES 4096u
/* The pre-written file the commits cycle through: 64 MiB, one segment's worth. */
#define FLOOR_FILE_BYTES (64ull << 20)
#define FLOOR_SIZE_MAX (1u << 20)
#define FLOOR_COUNT_MAX 1000000u

struct floor_config {
    const char *dir;
    uint32_t size;
    double rate;
    uint32_t count;
};

struct floor_echo {
    int listen_fd;
    uint32_t size;
    int error;
};

static uint64_t floor_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void floor_sleep_until(uint64_t due_ns)
{
    uint64_t now = floor_now_ns();
    if (due_ns <= now)
        return;
    struct timespec ts = {.tv_sec = (time_t)((due_ns - now) / 1000000000ull),
                          .tv_nsec = (long)((due_ns - now) % 1000000000ull)};
    nanosleep(&ts, NULL);
}

static int floor_io_all(int fd, void *buf, size_t len, bool writing)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = writing ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n == 0 ? -EPIPE : -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The echo thread: accept one connection, send back every size bytes it reads. */
static void *floor_echo_run(void *arg)
{
    struct floor_echo *echo = arg;
    int fd = accept(echo->listen_fd, NULL, NULL);
    if (fd < 0) {
        echo->error = -errno;
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    uint8_t *buf = malloc(echo->size);
    while (buf != NULL && floor_io_all(fd, buf, echo->size, false) == 0 &&
           floor_io_all(fd, buf, echo->size, true) == 0) {
    }
    free(buf);
    close(fd);
    return NULL;
}

/* A listening socket on 127.0.0.1, port 0, and a client connected to it. */
static int floor_sockets(int *listen_fd, int *client_fd)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);
    *listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    *client_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (*listen_fd < 0 || *client_fd < 0 ||
        bind(*listen_fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        listen(*listen_fd, 1) != 0 ||
        getsockname(*listen_fd, (struct sockaddr *)&addr, &len) != 0 ||
        connect(*client_fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
        return -errno;
    int one = 1;
    setsockopt(*client_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
}

/* A file of FLOOR_FILE_BYTES whose blocks are all written (zeros) and durable. */
static int floor_file(const char *dir, char *path, size_t path_size)
{
    snprintf(path, path_size, "%s/spool-bench-floor.dat", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    static uint8_t zeros[1 << 20];
    for (uint64_t off = 0; off < FLOOR_FILE_BYTES; off += sizeof(zeros)) {
        if (pwrite(fd, zeros, sizeof(zeros), (off_t)off) != (ssize_t)sizeof(zeros)) {
            int rc = -errno;
            close(fd);
            return rc < 0 ? rc : -EIO;
        }
    }
    if (fdatasync(fd) != 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

/* One commit as spoold makes it: direct_fd >= 0, one O_DIRECT write with RWF_DSYNC; else a
 * buffered write to fd linked to an fdatasync. */
static int floor_commit_uring(struct io_uring *ring, int fd, int direct_fd, void *buf,
                              uint32_t len, uint64_t offset)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    io_uring_prep_write(sqe, direct_fd >= 0 ? direct_fd : fd, buf, len, offset);
    int ops = 1;
    if (direct_fd >= 0) {
        sqe->rw_flags = RWF_DSYNC;
    } else {
        sqe->flags |= IOSQE_IO_LINK;
        sqe = io_uring_get_sqe(ring);
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
        ops = 2;
    }
    int rc = io_uring_submit(ring);
    for (int i = 0; i < ops && rc >= 0; i++) {
        struct io_uring_cqe *cqe;
        rc = io_uring_wait_cqe(ring, &cqe);
        if (rc < 0)
            break;
        bool write = i == 0;
        if (cqe->res < 0 || (write && cqe->res != (int)len))
            rc = cqe->res < 0 ? cqe->res : -EIO;
        io_uring_cqe_seen(ring, cqe);
    }
    return rc < 0 ? rc : 0;
}

static int floor_commit_sync(int fd, void *buf, uint32_t len, uint64_t offset)
{
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    ssize_t n = pwritev2(fd, &iov, 1, (off_t)offset, RWF_DSYNC);
    return n == (ssize_t)len ? 0 : (n < 0 ? -errno : -EIO);
}

/* The bytes one job's batch takes on disk: body, batch header and PUT fields, whole blocks. */
static uint32_t floor_write_bytes(const struct floor_config *cfg)
{
    return (cfg->size + FLOOR_BATCH_OVERHEAD_BYTES + FLOOR_BLOCK_BYTES - 1) / FLOOR_BLOCK_BYTES *
           FLOOR_BLOCK_BYTES;
}

struct floor_hists {
    struct histogram uring;
    struct histogram sync;
    struct histogram rtt;
};

/* The paced loop: count rounds of (io_uring commit, sync commit, round trip). */
static int floor_measure(const struct floor_config *cfg, int file_fd, int direct_fd,
                         int client_fd, struct floor_hists *h)
{
    uint32_t len = floor_write_bytes(cfg);
    void *buf = NULL;
    if (posix_memalign(&buf, FLOOR_BLOCK_BYTES, len > cfg->size ? len : cfg->size) != 0)
        return -ENOMEM;
    for (uint32_t i = 0; i < len; i++)
        ((uint8_t *)buf)[i] = (uint8_t)('a' + i * 7 % 26);
    struct io_uring ring;
    int rc = io_uring_queue_init(8, &ring, 0);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    uint64_t period_ns = (uint64_t)(1e9 / cfg->rate);
    uint64_t due = floor_now_ns(), offset = FLOOR_BLOCK_BYTES;
    for (uint32_t i = 0; i < cfg->count && rc == 0; i++) {
        if (offset + 2ull * len > FLOOR_FILE_BYTES)
            offset = FLOOR_BLOCK_BYTES;
        floor_sleep_until(due);
        /* The first write after the pause pays for waking the disk path; the kinds take
         * turns at going first so neither carries that alone. */
        bool uring_first = i % 2 == 0;
        uint64_t t0 = floor_now_ns();
        rc = uring_first ? floor_commit_uring(&ring, file_fd, direct_fd, buf, len, offset)
                         : floor_commit_sync(file_fd, buf, len, offset);
        uint64_t t1 = floor_now_ns();
        if (rc == 0)
            rc = uring_first ? floor_commit_sync(file_fd, buf, len, offset + len)
                             : floor_commit_uring(&ring, file_fd, direct_fd, buf, len,
                                                  offset + len);
        uint64_t t2 = floor_now_ns();
        if (rc == 0)
            rc = floor_io_all(client_fd, buf, cfg->size, true);
        if (rc == 0)
            rc = floor_io_all(client_fd, buf, cfg->size, false);
        uint64_t t3 = floor_now_ns();
        histogram_record(uring_first ? &h->uring : &h->sync, t1 - t0);
        histogram_record(uring_first ? &h->sync : &h->uring, t2 - t1);
        histogram_record(&h->rtt, t3 - t2);
        offset += 2ull * len;
        due += period_ns;
    }
    io_uring_queue_exit(&ring);
    free(buf);
    return rc;
}

static double floor_us(const struct histogram *h, double percent)
{
    return (double)histogram_percentile(h, percent) / 1000.0;
}

static void floor_print(const struct floor_config *cfg, const struct floor_hists *h, bool direct)
{
    uint32_t len = floor_write_bytes(cfg);
    printf("RESULT mode=floor size=%u rate=%.0f count=%u write_bytes=%u commit_io=%s "
           "commit_p50_us=%.1f commit_p99_us=%.1f sync_commit_p50_us=%.1f "
           "sync_commit_p99_us=%.1f rtt_p50_us=%.1f rtt_p99_us=%.1f floor_p50_us=%.1f\n",
           cfg->size, cfg->rate, cfg->count, len, direct ? "direct" : "buffered",
           floor_us(&h->uring, 50),
           floor_us(&h->uring, 99), floor_us(&h->sync, 50), floor_us(&h->sync, 99),
           floor_us(&h->rtt, 50), floor_us(&h->rtt, 99),
           floor_us(&h->uring, 50) + floor_us(&h->rtt, 50));
}

static int floor_parse(int argc, char **argv, struct floor_config *cfg)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'},  {"size", required_argument, NULL, 's'},
        {"rate", required_argument, NULL, 'r'}, {"count", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    int opt;
    optind = 2;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        switch (opt) {
        case 'd':
            cfg->dir = optarg;
            break;
        case 's':
            cfg->size = (uint32_t)strtoul(optarg, &end, 10);
            break;
        case 'r':
            cfg->rate = strtod(optarg, &end);
            break;
        case 'n':
            cfg->count = (uint32_t)strtoul(optarg, &end, 10);
            break;
        case 'h':
            printf("usage: spool-bench floor --dir DIR [--size BYTES] [--rate R] [--count N]\n");
            exit(0);
        default:
            return -1;
        }
        if (end != NULL && *end != '\0') {
            fprintf(stderr, "spool-bench floor: bad number \"%s\"\n", optarg);
            return -1;
        }
    }
    if (optind != argc || cfg->size == 0 || cfg->size > FLOOR_SIZE_MAX || !(cfg->rate > 0) ||
        cfg->rate > 1e6 || cfg->count == 0 || cfg->count > FLOOR_COUNT_MAX) {
        fprintf(stderr, "spool-bench floor: --size 1..%u, --rate > 0, --count 1..%u\n",
                FLOOR_SIZE_MAX, FLOOR_COUNT_MAX);
        return -1;
    }
    return 0;
}

int floor_main(int argc, char **argv)
{
    struct floor_config cfg = {.dir = "/tmp", .size = 4096, .rate = 1000, .count = 2000};
    if (floor_parse(argc, argv, &cfg) != 0)
        return 2;
    char path[4096];
    int file_fd = floor_file(cfg.dir, path, sizeof(path));
    if (file_fd < 0) {
        fprintf(stderr, "spool-bench floor: %s: %s\n", path, strerror(-file_fd));
        return 1;
    }
    int direct_fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC); /* -1: buffered commits */
    struct floor_echo echo = {.size = cfg.size};
    int client_fd = -1;
    int rc = floor_sockets(&echo.listen_fd, &client_fd);
    pthread_t thread;
    bool started = rc == 0 && pthread_create(&thread, NULL, floor_echo_run, &echo) == 0;
    static struct floor_hists hists;
    histogram_reset(&hists.uring);
    histogram_reset(&hists.sync);
    histogram_reset(&hists.rtt);
    if (started)
        rc = floor_measure(&cfg, file_fd, direct_fd, client_fd, &hists);
    else if (rc == 0)
        rc = -EAGAIN;
    if (client_fd >= 0)
        shutdown(client_fd, SHUT_RDWR);
    if (started)
        pthread_join(thread, NULL);
    close(client_fd);
    close(echo.listen_fd);
    close(file_fd);
    if (direct_fd >= 0)
        close(direct_fd);
    unlink(path);
    if (rc != 0) {
        fprintf(stderr, "spool-bench floor: %s\n", strerror(-rc));
        return 1;
    }
    floor_print(&cfg, &hists, direct_fd >= 0);
    return 0;
}
