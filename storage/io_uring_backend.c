/*
 * The io_uring backend: the production path for every byte of the log.
 *
 * The ring belongs to the caller. The server shares one ring between its network ops and the
 * log, so this backend never owns, sizes or tears down the ring; it only preps SQEs on it and,
 * when asked to poll, reaps CQEs. Every CQE on that ring carries, as user_data, a pointer to a
 * struct io_completion (io.h), whoever submitted it; io_uring_dispatch() routes a CQE to its
 * completion's complete function, so a CQE that is not ours (a recv of the server's) is
 * delivered to its owner, not misread as a disk op. user_data 0 (a NOP or cancel whose
 * result nobody wants) is ignored.
 *
 * An op is self-contained: its SQE points only into the op (buffers are the caller's, paths
 * are inside op->path/path2) or into its side allocation (the statx buffer of IO_SIZE), so
 * any number of ops may be in flight and each completion needs nothing but the op. The op
 * reaches its backend through op->backend_data (a struct uring_side for IO_SIZE, whose first
 * field is the backend), which is how in_flight stays exact even when the server, not this
 * backend's poll, reaps the CQE.
 *
 * Invariants:
 * - submit only preps an SQE; nothing runs and no done is called inside submit. The SQE
 *   reaches the kernel at the next io_uring_submit (ours in poll, or the server's).
 * - A linked op (IO_OP_LINK -> IOSQE_IO_LINK) is prepped only when the SQ has room for it
 *   and its successor, so a chain is never cut by a submit forced by a full SQ.
 * - in_flight counts ops prepped and not yet completed; destroy requires it to be zero.
 *
 * list and lock are synchronous (readdir, flock on LOCK) and shared with the POSIX backend
 * (io.c): they run at open and recovery only.
 */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The kernel caps one read or write at MAX_RW_COUNT (INT_MAX rounded down to a page); the SQE
 * length field is 32 bits. Longer requests are cut here and complete short, which the io.h
 * contract already asks callers to finish. */
#define URING_RW_LEN_MAX (1u << 30)

/* Submit attempts when the SQ is full: one io_uring_submit drains the SQ into the kernel, so
 * a second attempt that still finds no room means the ring is wedged (CQ overflow backlog). */
#define URING_SQE_ATTEMPTS_MAX 2

struct uring_backend {
    struct io_backend base;
    struct io_uring *ring;
    int dir_fd;
    int lock_fd;
    uint32_t in_flight;
};

/* IO_SIZE needs a struct statx that lives until the CQE: a side allocation per op. */
struct uring_side {
    struct uring_backend *ub; /* first: op->backend_data always leads to the backend */
    struct statx stx;
};

static struct uring_backend *uring_op_backend(const struct io_op *op)
{
    if (op->kind == IO_SIZE)
        return ((struct uring_side *)op->backend_data)->ub;
    return op->backend_data;
}

static void uring_op_complete(struct io_completion *completion, const struct io_uring_cqe *cqe)
{
    struct io_op *op = (struct io_op *)((char *)completion - offsetof(struct io_op, completion));
    struct uring_backend *ub = uring_op_backend(op);
    SPOOL_ASSERT(ub != NULL);
    SPOOL_ASSERT(ub->in_flight > 0);
    ub->in_flight--;
    op->result = cqe->res;
    if (op->kind == IO_SIZE) {
        struct uring_side *side = op->backend_data;
        if (cqe->res == 0)
            op->size = side->stx.stx_size;
        free(side);
    }
    op->backend_data = NULL;
    op->done(op);
}

void io_uring_dispatch(const struct io_uring_cqe *cqe)
{
    struct io_completion *completion = io_uring_cqe_get_data(cqe);
    if (completion == NULL)
        return;
    SPOOL_ASSERT(completion->complete != NULL);
    completion->complete(completion, cqe);
}

/* An SQE with room for `need` entries; submits what is queued when the SQ is too full. */
static struct io_uring_sqe *uring_get_sqe(struct uring_backend *ub, unsigned need, int *error)
{
    for (int attempt = 0; attempt < URING_SQE_ATTEMPTS_MAX; attempt++) {
        if (io_uring_sq_space_left(ub->ring) >= need)
            return io_uring_get_sqe(ub->ring);
        int rc = io_uring_submit(ub->ring);
        if (rc < 0 && rc != -EINTR) {
            *error = rc;
            return NULL;
        }
    }
    *error = -EBUSY;
    return NULL;
}

static unsigned uring_rw_len(const struct io_op *op)
{
    return op->len > URING_RW_LEN_MAX ? URING_RW_LEN_MAX : (unsigned)op->len;
}

/* Fill sqe for op; 0 or a negative errno (the SQE is then turned into a NOP by the caller). */
static int uring_prep(struct uring_backend *ub, struct io_uring_sqe *sqe, struct io_op *op)
{
    switch (op->kind) {
    case IO_OPEN:
        io_uring_prep_openat(sqe, ub->dir_fd, op->path, op->open_flags | O_CLOEXEC, op->mode);
        return 0;
    case IO_CLOSE:
        io_uring_prep_close(sqe, op->fd);
        return 0;
    case IO_READ:
        io_uring_prep_read(sqe, op->fd, op->buf, uring_rw_len(op), op->offset);
        return 0;
    case IO_WRITE:
        io_uring_prep_write(sqe, op->fd, op->buf, uring_rw_len(op), op->offset);
        if (op->flags & IO_OP_DSYNC)
            sqe->rw_flags = RWF_DSYNC;
        return 0;
    case IO_FDATASYNC:
        io_uring_prep_fsync(sqe, op->fd, IORING_FSYNC_DATASYNC);
        return 0;
    case IO_FSYNC:
        io_uring_prep_fsync(sqe, op->fd, 0);
        return 0;
    case IO_FSYNC_DIR:
        io_uring_prep_fsync(sqe, ub->dir_fd, 0);
        return 0;
    case IO_FALLOCATE:
        io_uring_prep_fallocate(sqe, op->fd, 0, (off_t)op->offset, (off_t)op->len);
        return 0;
    case IO_RENAME:
        io_uring_prep_renameat(sqe, ub->dir_fd, op->path, ub->dir_fd, op->path2, 0);
        return 0;
    case IO_UNLINK:
        io_uring_prep_unlinkat(sqe, ub->dir_fd, op->path, 0);
        return 0;
    case IO_SIZE: {
        struct uring_side *side = calloc(1, sizeof(*side));
        if (side == NULL)
            return -ENOMEM;
        side->ub = ub;
        op->backend_data = side;
        io_uring_prep_statx(sqe, op->fd, "", AT_EMPTY_PATH, STATX_SIZE, &side->stx);
        return 0;
    }
    }
    SPOOL_ASSERT(!"unknown io op kind");
    return -EINVAL;
}

static int uring_submit(struct io_backend *backend, struct io_op *op)
{
    struct uring_backend *ub = (struct uring_backend *)backend;
    SPOOL_ASSERT(op->done != NULL);
    bool linked = (op->flags & IO_OP_LINK) != 0;
    int error = 0;
    struct io_uring_sqe *sqe = uring_get_sqe(ub, linked ? 2 : 1, &error);
    if (sqe == NULL)
        return error;
    op->backend_data = ub;
    int rc = uring_prep(ub, sqe, op);
    if (rc < 0) {
        /* The SQE is taken and cannot be handed back: make it a NOP nobody hears about. */
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data(sqe, NULL);
        op->backend_data = NULL;
        return rc;
    }
    if (linked)
        sqe->flags |= IOSQE_IO_LINK;
    op->completion.complete = uring_op_complete;
    io_uring_sqe_set_data(sqe, &op->completion);
    ub->in_flight++;
    return 0;
}

static int uring_poll(struct io_backend *backend, bool wait)
{
    struct uring_backend *ub = (struct uring_backend *)backend;
    if (ub->in_flight > 0 || io_uring_sq_ready(ub->ring) > 0) {
        int rc = io_uring_submit_and_wait(ub->ring, wait && ub->in_flight > 0 ? 1 : 0);
        /* EBUSY/EAGAIN: the CQ is full (or the kernel is short of memory); reaping below is
         * what makes room, so they are not errors of this poll. */
        if (rc < 0 && rc != -EINTR && rc != -ETIME && rc != -EBUSY && rc != -EAGAIN)
            return rc;
    }
    /* Deliver only the CQEs already posted: a done callback may submit more, and those wait
     * for the next poll, so one poll is bounded by the CQ ring's size. */
    unsigned ready = io_uring_cq_ready(ub->ring);
    int delivered = 0;
    for (unsigned i = 0; i < ready; i++) {
        struct io_uring_cqe *cqe;
        if (io_uring_peek_cqe(ub->ring, &cqe) != 0 || cqe == NULL)
            break;
        /* Copy and retire the CQE before dispatching: the callback may reenter the ring. */
        struct io_uring_cqe copy = *cqe;
        io_uring_cqe_seen(ub->ring, cqe);
        io_uring_dispatch(&copy);
        delivered++;
    }
    return delivered;
}

static int uring_list(struct io_backend *backend, io_list_fn fn, void *ctx)
{
    return io_dir_list(((struct uring_backend *)backend)->dir_fd, fn, ctx);
}

static int uring_lock(struct io_backend *backend)
{
    struct uring_backend *ub = (struct uring_backend *)backend;
    return io_dir_lock(ub->dir_fd, &ub->lock_fd);
}

static int uring_space(struct io_backend *backend, uint64_t *free_bytes)
{
    return io_dir_space(((struct uring_backend *)backend)->dir_fd, free_bytes);
}

static int uring_open_direct(struct io_backend *backend, const char *name)
{
    return io_dir_open_direct(((struct uring_backend *)backend)->dir_fd, name);
}

static void uring_close_direct(struct io_backend *backend, int fd)
{
    (void)backend;
    io_dir_close_direct(fd);
}

static uint32_t uring_in_flight(struct io_backend *backend)
{
    return ((struct uring_backend *)backend)->in_flight;
}

static void uring_destroy(struct io_backend *backend)
{
    struct uring_backend *ub = (struct uring_backend *)backend;
    SPOOL_ASSERT(ub->in_flight == 0);
    if (ub->lock_fd >= 0)
        close(ub->lock_fd);
    close(ub->dir_fd);
    free(ub);
}

static const struct io_backend_ops uring_backend_ops = {
    .submit = uring_submit,
    .poll = uring_poll,
    .list = uring_list,
    .lock = uring_lock,
    .space = uring_space,
    .open_direct = uring_open_direct,
    .close_direct = uring_close_direct,
    .in_flight = uring_in_flight,
    .destroy = uring_destroy,
};

int io_uring_backend_create(struct io_uring *ring, const char *dir, bool create,
                            struct io_backend **out)
{
    SPOOL_ASSERT(ring != NULL);
    SPOOL_ASSERT(out != NULL);
    struct uring_backend *ub = calloc(1, sizeof(*ub));
    if (ub == NULL)
        return -ENOMEM;
    int fd = io_open_dir(dir, create);
    if (fd < 0) {
        free(ub);
        return fd;
    }
    ub->base.ops = &uring_backend_ops;
    ub->ring = ring;
    ub->dir_fd = fd;
    ub->lock_fd = -1;
    *out = &ub->base;
    return 0;
}

/* The opcodes the backend preps: a kernel or filter missing any of them is unusable. */
static const struct {
    int opcode;
    const char *name;
} uring_required_ops[] = {
    {IORING_OP_OPENAT, "OPENAT"},     {IORING_OP_CLOSE, "CLOSE"},
    {IORING_OP_READ, "READ"},         {IORING_OP_WRITE, "WRITE"},
    {IORING_OP_FSYNC, "FSYNC"},       {IORING_OP_FALLOCATE, "FALLOCATE"},
    {IORING_OP_RENAMEAT, "RENAMEAT"}, {IORING_OP_UNLINKAT, "UNLINKAT"},
    {IORING_OP_STATX, "STATX"},       {IORING_OP_NOP, "NOP"},
};

/* The kernel.io_uring_disabled sysctl (6.6+): 0 allowed, 1 root/group only, 2 disabled. */
static int uring_sysctl_disabled(void)
{
    FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "re");
    if (f == NULL)
        return -1;
    int value = -1;
    if (fscanf(f, "%d", &value) != 1)
        value = -1;
    fclose(f);
    return value;
}

static int uring_probe_ops(struct io_uring *ring, char *msg, size_t len)
{
    struct io_uring_probe *probe = io_uring_get_probe_ring(ring);
    if (probe == NULL) {
        snprintf(msg, len,
                 "io_uring: the kernel cannot report its supported operations "
                 "(IORING_REGISTER_PROBE needs Linux 5.6 or newer)");
        return -EOPNOTSUPP;
    }
    int rc = 0;
    for (size_t i = 0; i < sizeof(uring_required_ops) / sizeof(uring_required_ops[0]); i++) {
        if (!io_uring_opcode_supported(probe, uring_required_ops[i].opcode)) {
            snprintf(msg, len,
                     "io_uring: the kernel does not support IORING_OP_%s "
                     "(spool needs Linux 5.11 or newer)",
                     uring_required_ops[i].name);
            rc = -EOPNOTSUPP;
            break;
        }
    }
    io_uring_free_probe(probe);
    return rc;
}

int io_uring_probe_available(char *msg, size_t len)
{
    char scratch[1];
    if (msg == NULL || len == 0) {
        msg = scratch;
        len = sizeof(scratch);
    }
    msg[0] = '\0';
    struct io_uring ring;
    int rc = io_uring_queue_init(4, &ring, 0);
    if (rc < 0) {
        int disabled = uring_sysctl_disabled();
        snprintf(msg, len, "io_uring is unavailable: io_uring_setup failed: %s%s", strerror(-rc),
                 disabled > 0 ? " (the sysctl kernel.io_uring_disabled is set)"
                 : rc == -EPERM || rc == -ENOSYS
                     ? " (is a seccomp filter or container runtime blocking io_uring?)"
                     : "");
        return rc;
    }
    rc = uring_probe_ops(&ring, msg, len);
    io_uring_queue_exit(&ring);
    return rc;
}
