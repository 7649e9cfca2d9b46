/*
 * The POSIX backend: each op runs as a plain syscall when it is submitted, and its completion
 * waits in a FIFO until io_backend_poll() delivers it, so callers see the same asynchronous
 * contract as with io_uring (done never runs inside submit). Used by the offline tools, by
 * benchmarks that compare against plain pwrite+fdatasync, and by tests that want real files
 * without a ring.
 *
 * Linking: an op submitted with IO_OP_LINK that fails or completes short makes the next
 * submitted op complete with -ECANCELED without running, as IOSQE_IO_LINK does.
 */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* Completions wait in a ring of pointers; more submits than this between two polls is a
 * programming error of the caller (the engine has at most a handful in flight). */
#define POSIX_BACKEND_QUEUE_MAX 4096u

struct posix_backend {
    struct io_backend base;
    int dir_fd;
    int lock_fd;
    bool cancel_next; /* the previous op was linked and did not complete in full */
    uint32_t head;
    uint32_t count;
    struct io_op *queue[POSIX_BACKEND_QUEUE_MAX];
};

static int64_t posix_run(struct posix_backend *pb, struct io_op *op)
{
    ssize_t rc;
    switch (op->kind) {
    case IO_OPEN:
        rc = openat(pb->dir_fd, op->path, op->open_flags | O_CLOEXEC, op->mode);
        break;
    case IO_CLOSE:
        rc = close(op->fd);
        break;
    case IO_READ:
        rc = pread(op->fd, op->buf, op->len, (off_t)op->offset);
        break;
    case IO_WRITE:
        if (op->flags & IO_OP_DSYNC) {
            struct iovec iov = {.iov_base = op->buf, .iov_len = op->len};
            rc = pwritev2(op->fd, &iov, 1, (off_t)op->offset, RWF_DSYNC);
        } else {
            rc = pwrite(op->fd, op->buf, op->len, (off_t)op->offset);
        }
        break;
    case IO_FDATASYNC:
        rc = fdatasync(op->fd);
        break;
    case IO_FSYNC:
        rc = fsync(op->fd);
        break;
    case IO_FSYNC_DIR:
        rc = fsync(pb->dir_fd);
        break;
    case IO_FALLOCATE:
        rc = fallocate(op->fd, 0, (off_t)op->offset, (off_t)op->len);
        break;
    case IO_RENAME:
        rc = renameat(pb->dir_fd, op->path, pb->dir_fd, op->path2);
        break;
    case IO_UNLINK:
        rc = unlinkat(pb->dir_fd, op->path, 0);
        break;
    case IO_SIZE: {
        struct stat st;
        rc = fstat(op->fd, &st);
        if (rc == 0)
            op->size = (uint64_t)st.st_size;
        break;
    }
    default:
        SPOOL_ASSERT(!"unknown io op kind");
        return -EINVAL;
    }
    return rc < 0 ? -errno : rc;
}

static bool posix_op_short(const struct io_op *op)
{
    if (op->result < 0)
        return true;
    return (op->kind == IO_READ || op->kind == IO_WRITE) && (uint64_t)op->result != op->len;
}

static int posix_submit(struct io_backend *backend, struct io_op *op)
{
    struct posix_backend *pb = (struct posix_backend *)backend;
    if (pb->count == POSIX_BACKEND_QUEUE_MAX)
        return -EAGAIN;
    if (pb->cancel_next) {
        op->result = -ECANCELED;
    } else {
        op->result = posix_run(pb, op);
    }
    pb->cancel_next = (op->flags & IO_OP_LINK) && (pb->cancel_next || posix_op_short(op));
    pb->queue[(pb->head + pb->count) % POSIX_BACKEND_QUEUE_MAX] = op;
    pb->count++;
    return 0;
}

static int posix_poll(struct io_backend *backend, bool wait)
{
    struct posix_backend *pb = (struct posix_backend *)backend;
    /* Deliver only what was queued before this call: a done callback may submit more. */
    uint32_t n = pb->count;
    for (uint32_t i = 0; i < n; i++) {
        struct io_op *op = pb->queue[pb->head];
        pb->head = (pb->head + 1) % POSIX_BACKEND_QUEUE_MAX;
        pb->count--;
        op->done(op);
    }
    return (int)n;
}

static int posix_list(struct io_backend *backend, io_list_fn fn, void *ctx)
{
    return io_dir_list(((struct posix_backend *)backend)->dir_fd, fn, ctx);
}

static int posix_lock(struct io_backend *backend)
{
    struct posix_backend *pb = (struct posix_backend *)backend;
    return io_dir_lock(pb->dir_fd, &pb->lock_fd);
}

static int posix_space(struct io_backend *backend, uint64_t *free_bytes)
{
    return io_dir_space(((struct posix_backend *)backend)->dir_fd, free_bytes);
}

static int posix_open_direct(struct io_backend *backend, const char *name)
{
    return io_dir_open_direct(((struct posix_backend *)backend)->dir_fd, name);
}

static void posix_close_direct(struct io_backend *backend, int fd)
{
    (void)backend;
    io_dir_close_direct(fd);
}

static uint32_t posix_in_flight(struct io_backend *backend)
{
    return ((struct posix_backend *)backend)->count;
}

static void posix_destroy(struct io_backend *backend)
{
    struct posix_backend *pb = (struct posix_backend *)backend;
    SPOOL_ASSERT(pb->count == 0);
    if (pb->lock_fd >= 0)
        close(pb->lock_fd);
    close(pb->dir_fd);
    free(pb);
}

static const struct io_backend_ops posix_backend_ops = {
    .submit = posix_submit,
    .poll = posix_poll,
    .list = posix_list,
    .lock = posix_lock,
    .space = posix_space,
    .open_direct = posix_open_direct,
    .close_direct = posix_close_direct,
    .in_flight = posix_in_flight,
    .destroy = posix_destroy,
};

/* Shared with the io_uring backend: open (and with create, make) the data directory. */
int io_open_dir(const char *dir, bool create)
{
    if (create && mkdir(dir, 0750) != 0 && errno != EEXIST)
        return -errno;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int posix_backend_create(const char *dir, bool create, struct io_backend **out)
{
    struct posix_backend *pb = calloc(1, sizeof(*pb));
    if (pb == NULL)
        return -ENOMEM;
    int fd = io_open_dir(dir, create);
    if (fd < 0) {
        free(pb);
        return fd;
    }
    pb->base.ops = &posix_backend_ops;
    pb->dir_fd = fd;
    pb->lock_fd = -1;
    *out = &pb->base;
    return 0;
}
