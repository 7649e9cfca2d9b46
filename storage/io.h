/*
 * The I/O backend: every byte the storage engine reads or writes, and every file it creates,
 * renames or deletes, goes through this interface (the way SQLite routes syscalls through its
 * VFS). Production uses io_uring (io_uring_backend.c), sharing the server's ring so one loop
 * drives network and disk. Tools use a plain POSIX backend (posix_backend.c). Tests use an
 * in-memory file system that records every operation and can build the image a power loss
 * would leave (memfs_backend.c), and a wrapper that fails the Nth operation (fault_backend.c).
 *
 * The model is asynchronous: the caller fills a struct io_op, submits it, and later the
 * backend calls op->done(op) with op->result set, from inside io_backend_poll(). An op is
 * owned by the caller and must stay valid (not freed, not reused) until its done callback
 * has run. done is never called from inside io_submit(): completions are delivered only by
 * io_backend_poll(), so a caller never re-enters itself.
 *
 * Results follow the kernel: >= 0 on success (bytes for READ/WRITE, an fd for OPEN, 0 for the
 * rest), a negative errno on failure. A WRITE or READ may complete short; the caller finishes
 * it. An op submitted with IO_OP_LINK is linked to the next op submitted by the same caller,
 * as IOSQE_IO_LINK: if the linked op fails or completes short, the next one completes with
 * -ECANCELED without running.
 *
 * Paths are relative to the directory the backend was opened on (the data directory); the
 * backend owns that directory's fd. IO_FSYNC_DIR syncs it.
 *
 * Completion callbacks of ops that are not the storage engine's (the server's network ops)
 * use the same struct io_completion header, so the server dispatches every CQE of its ring
 * the same way: user_data points at a struct io_completion.
 */
#ifndef SPOOL_STORAGE_IO_H
#define SPOOL_STORAGE_IO_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "assert.h"

struct io_uring;
struct io_uring_cqe;

/* The header of everything whose completion arrives through a ring. */
struct io_completion {
    void (*complete)(struct io_completion *completion, const struct io_uring_cqe *cqe);
};

enum io_op_kind {
    IO_OPEN = 1,   /* path, open_flags, mode -> fd */
    IO_CLOSE,      /* fd */
    IO_READ,       /* fd, buf, len, offset -> bytes */
    IO_WRITE,      /* fd, buf, len, offset -> bytes */
    IO_FDATASYNC,  /* fd */
    IO_FSYNC,      /* fd */
    IO_FSYNC_DIR,  /* the backend's directory */
    IO_FALLOCATE,  /* fd, offset, len (mode 0: allocate, extend size) */
    IO_RENAME,     /* path -> path2 (within the directory, replacing path2) */
    IO_UNLINK,     /* path */
    IO_SIZE,       /* fd -> result 0, size in op->size */
};

enum io_op_flags {
    IO_OP_LINK = 1u << 0,  /* the next op submitted runs only if this one completes in full */
    IO_OP_DSYNC = 1u << 1, /* IO_WRITE: durable when it completes, as pwritev2(RWF_DSYNC) */
};

#define IO_PATH_MAX 64 /* file names in a data directory are short: 20 digits + suffix */

struct io_op {
    struct io_completion completion; /* used by the io_uring backend; leave alone */
    void (*done)(struct io_op *op);
    void *ctx;          /* the caller's */
    int64_t result;     /* set before done runs */
    uint64_t size;      /* IO_SIZE: the file's size */
    enum io_op_kind kind;
    uint32_t flags;     /* enum io_op_flags */
    int fd;
    int open_flags;
    mode_t mode;
    void *buf;
    uint64_t len;
    uint64_t offset;
    char path[IO_PATH_MAX];
    char path2[IO_PATH_MAX];
    void *backend_data; /* the running backend's, between submit and done; leave alone */
};

struct io_backend;

/* One entry of io_backend_list(): a file name in the directory (no subdirectories). */
typedef void (*io_list_fn)(void *ctx, const char *name);

struct io_backend_ops {
    /* Queue op; 0 or a negative errno if it could not even be queued (never calls done). */
    int (*submit)(struct io_backend *backend, struct io_op *op);
    /* Deliver completions: wait for at least one if wait and any op is in flight. Returns the
     * number of completions delivered, or a negative errno. */
    int (*poll)(struct io_backend *backend, bool wait);
    /* Synchronous, used only at open and recovery (before serving): list file names. */
    int (*list)(struct io_backend *backend, io_list_fn fn, void *ctx);
    /* Synchronous: take an exclusive lock on the directory (a LOCK file) or fail -EWOULDBLOCK. */
    int (*lock)(struct io_backend *backend);
    /* Synchronous, optional (NULL: unknown): bytes an unprivileged writer may still allocate
     * in the directory's file system (statvfs f_bavail * f_frsize); 0 or a negative errno. A
     * cheap syscall, called before a segment or the spare is preallocated. */
    int (*space)(struct io_backend *backend, uint64_t *free_bytes);
    /* Synchronous, optional (NULL: not offered): open the existing file name again, for
     * writing with direct I/O (O_DIRECT: past the page cache; buffers, lengths and offsets
     * 4096-aligned), as a second fd beside the one it is read through. An fd, or a negative
     * errno (-EINVAL: the file system does no direct I/O). A cheap syscall, once per segment;
     * the fd is given back with close_direct. */
    int (*open_direct)(struct io_backend *backend, const char *name);
    void (*close_direct)(struct io_backend *backend, int fd);
    /* Number of submitted ops whose done has not run yet. */
    uint32_t (*in_flight)(struct io_backend *backend);
    void (*destroy)(struct io_backend *backend);
};

struct io_backend {
    const struct io_backend_ops *ops;
};

SPOOL_MUST_USE static inline int io_submit(struct io_backend *backend, struct io_op *op)
{
    SPOOL_ASSERT(op->done != NULL);
    return backend->ops->submit(backend, op);
}

SPOOL_MUST_USE static inline int io_backend_poll(struct io_backend *backend, bool wait)
{
    return backend->ops->poll(backend, wait);
}

/* The backend's space op, or -EOPNOTSUPP when it has none. */
SPOOL_MUST_USE static inline int io_backend_space(struct io_backend *backend, uint64_t *free_bytes)
{
    if (backend->ops->space == NULL)
        return -EOPNOTSUPP;
    return backend->ops->space(backend, free_bytes);
}

/* The backend's open_direct, or -EOPNOTSUPP when it has none. */
SPOOL_MUST_USE static inline int io_backend_open_direct(struct io_backend *backend,
                                                        const char *name)
{
    if (backend->ops->open_direct == NULL)
        return -EOPNOTSUPP;
    return backend->ops->open_direct(backend, name);
}

static inline void io_backend_close_direct(struct io_backend *backend, int fd)
{
    SPOOL_ASSERT(fd >= 0 && backend->ops->close_direct != NULL);
    backend->ops->close_direct(backend, fd);
}

static inline void io_backend_destroy(struct io_backend *backend)
{
    if (backend != NULL)
        backend->ops->destroy(backend);
}

/* Submit op and poll until it has completed; returns op->result (or a submit error). Other
 * ops' completions that arrive meanwhile are delivered as usual. For open, recovery, tools
 * and tests: never called from the server's loop while serving. */
SPOOL_MUST_USE int64_t io_sync(struct io_backend *backend, struct io_op *op);

/* Convenience wrappers over io_sync; each returns the op's result. */
SPOOL_MUST_USE int64_t io_sync_pread(struct io_backend *backend, int fd, void *buf, uint64_t len,
                                     uint64_t offset);
SPOOL_MUST_USE int64_t io_sync_pwrite(struct io_backend *backend, int fd, const void *buf,
                                      uint64_t len, uint64_t offset);
SPOOL_MUST_USE int io_sync_open(struct io_backend *backend, const char *name, int flags,
                                mode_t mode);
SPOOL_MUST_USE int io_sync_simple(struct io_backend *backend, enum io_op_kind kind, int fd);

/* Backends. dir is created if missing (mode 0750) when create is true. */
SPOOL_MUST_USE int io_uring_backend_create(struct io_uring *ring, const char *dir, bool create,
                                           struct io_backend **out);
SPOOL_MUST_USE int posix_backend_create(const char *dir, bool create, struct io_backend **out);

/* Open (with create, make: mode 0750) a data directory; an fd or a negative errno. */
SPOOL_MUST_USE int io_open_dir(const char *dir, bool create);

/* Shared by the backends on real directories: list the file names of dir_fd (skipping dot
 * files), and take the exclusive flock on its LOCK file (*lock_fd receives the fd, kept open
 * for as long as the lock is held; -EWOULDBLOCK if another open file description holds it). */
SPOOL_MUST_USE int io_dir_list(int dir_fd, io_list_fn fn, void *ctx);
SPOOL_MUST_USE int io_dir_space(int dir_fd, uint64_t *free_bytes);
/* open_direct and close_direct on a real directory. */
SPOOL_MUST_USE int io_dir_open_direct(int dir_fd, const char *name);
void io_dir_close_direct(int fd);
SPOOL_MUST_USE int io_dir_lock(int dir_fd, int *lock_fd);

/* Can this process use io_uring with every opcode the backend needs? 0, or a negative errno
 * with a sentence for the operator in msg (always NUL-terminated when len > 0): spoold calls
 * this at startup so that a kernel without io_uring, a sysctl that disables it or a seccomp
 * filter that blocks it is a clear error, not a mystery later. */
SPOOL_MUST_USE int io_uring_probe_available(char *msg, size_t len);

/* The io_uring backend's dispatcher: route one CQE to its struct io_completion. The server
 * calls this for every CQE of the shared ring. */
void io_uring_dispatch(const struct io_uring_cqe *cqe);

#endif
