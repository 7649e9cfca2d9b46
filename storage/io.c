/*
 * Synchronous helpers over the asynchronous backend interface (io.h), for opening, recovery,
 * tools and tests: submit one op and poll until its done callback has run. Also the two
 * synchronous directory operations (list, lock) that the POSIX and io_uring backends share:
 * both run only at open and recovery, before serving, so a ring buys them nothing.
 */
#include "io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/statvfs.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static void io_sync_done(struct io_op *op)
{
    bool *finished = op->ctx;
    *finished = true;
}

int64_t io_sync(struct io_backend *backend, struct io_op *op)
{
    bool finished = false;
    op->done = io_sync_done;
    op->ctx = &finished;
    op->flags &= ~(uint32_t)IO_OP_LINK;
    int rc = io_submit(backend, op);
    if (rc < 0)
        return rc;
    while (!finished) {
        rc = io_backend_poll(backend, true);
        if (rc < 0 && rc != -EINTR)
            return rc;
    }
    return op->result;
}

static void io_op_init(struct io_op *op, enum io_op_kind kind, int fd)
{
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    op->fd = fd;
}

int64_t io_sync_pread(struct io_backend *backend, int fd, void *buf, uint64_t len,
                      uint64_t offset)
{
    struct io_op op;
    io_op_init(&op, IO_READ, fd);
    op.buf = buf;
    op.len = len;
    op.offset = offset;
    return io_sync(backend, &op);
}

int64_t io_sync_pwrite(struct io_backend *backend, int fd, const void *buf, uint64_t len,
                       uint64_t offset)
{
    struct io_op op;
    io_op_init(&op, IO_WRITE, fd);
    op.buf = (void *)buf;
    op.len = len;
    op.offset = offset;
    return io_sync(backend, &op);
}

int io_sync_open(struct io_backend *backend, const char *name, int flags, mode_t mode)
{
    struct io_op op;
    io_op_init(&op, IO_OPEN, -1);
    if (strlen(name) >= sizeof(op.path))
        return -ENAMETOOLONG;
    strcpy(op.path, name);
    op.open_flags = flags;
    op.mode = mode;
    return (int)io_sync(backend, &op);
}

int io_sync_simple(struct io_backend *backend, enum io_op_kind kind, int fd)
{
    SPOOL_ASSERT(kind == IO_CLOSE || kind == IO_FDATASYNC || kind == IO_FSYNC ||
                 kind == IO_FSYNC_DIR);
    struct io_op op;
    io_op_init(&op, kind, fd);
    return (int)io_sync(backend, &op);
}

int io_dir_list(int dir_fd, io_list_fn fn, void *ctx)
{
    /* A fresh fd: fdopendir takes ownership and moves its offset; dir_fd stays untouched. */
    int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *dir = fdopendir(fd);
    if (dir == NULL) {
        int err = -errno;
        close(fd);
        return err;
    }
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.')
            continue;
        fn(ctx, entry->d_name);
    }
    closedir(dir);
    return 0;
}

int io_dir_lock(int dir_fd, int *lock_fd)
{
    if (*lock_fd >= 0)
        return 0;
    int fd = openat(dir_fd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
        close(fd);
        return err;
    }
    *lock_fd = fd;
    return 0;
}

int io_dir_open_direct(int dir_fd, const char *name)
{
    int fd = openat(dir_fd, name, O_RDWR | O_DIRECT | O_CLOEXEC);
    return fd >= 0 ? fd : -errno;
}

void io_dir_close_direct(int fd)
{
    (void)close(fd); /* written with RWF_DSYNC: nothing of it waits for the close */
}

int io_dir_space(int dir_fd, uint64_t *free_bytes)
{
    struct statvfs st;
    if (fstatvfs(dir_fd, &st) != 0)
        return -errno;
    *free_bytes = (uint64_t)st.f_bavail * (uint64_t)st.f_frsize;
    return 0;
}
