/*
 * fault_backend: fail the Nth matching op (see fault_backend.h).
 *
 * Each submitted op travels to the inner backend as a private copy (struct fault_wrap) whose
 * done callback copies the result back into the caller's op and then calls the caller's done,
 * so the caller's op is never touched by the inner backend and its done runs only from the
 * inner backend's poll, as io.h requires.
 *
 * A faulted op is sent down as a stand-in that fails at once (IO_CLOSE of fd -1, keeping the
 * op's IO_OP_LINK flag), so link chains in the inner backend break exactly where the fault is.
 * A short write does run (with half the length), but the inner backend sees a complete
 * write; so when it was linked, the next op submitted is canceled here (sent as a stand-in,
 * reported -ECANCELED), as the kernel cancels the successor of a short linked write.
 */
#include "fault_backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Open files whose names the wrapper remembers, to say which file a faulted fd op touched;
 * the engine keeps a handful open (segments, the checkpoint temp file). */
#define FAULT_FILES_MAX 64u

struct fault_file {
    int fd; /* -1: free slot */
    char name[IO_PATH_MAX];
};

struct fault_backend {
    struct io_backend base;
    struct fault_file files[FAULT_FILES_MAX];
    enum io_op_kind fired_kind;
    uint64_t fired_offset;
    char fired_file[IO_PATH_MAX];
    struct io_backend *inner;
    struct fault_config config;
    uint64_t op_count;
    uint64_t matched;
    uint32_t in_flight;
    bool fired;
    bool fired_done;
    bool cancel_next; /* a short linked write was just submitted */
};

struct fault_wrap {
    struct io_op inner;
    struct io_op *outer;
    struct fault_backend *fb;
    int64_t forced_result; /* 0: report the inner result; else this (unless canceled) */
    bool faulted;          /* this is the op the fault hit */
};

/* Remember which name an fd was opened from; forget it when it is closed. */
static void fault_track(struct fault_backend *fb, const struct io_op *op, int64_t result)
{
    if (op->kind == IO_OPEN && result >= 0) {
        for (uint32_t i = 0; i < FAULT_FILES_MAX; i++) {
            if (fb->files[i].fd < 0) {
                fb->files[i].fd = (int)result;
                memcpy(fb->files[i].name, op->path, IO_PATH_MAX);
                return;
            }
        }
    }
    if (op->kind == IO_CLOSE && result == 0) {
        for (uint32_t i = 0; i < FAULT_FILES_MAX; i++) {
            if (fb->files[i].fd == op->fd)
                fb->files[i].fd = -1;
        }
    }
}

static const char *fault_file_name(const struct fault_backend *fb, const struct io_op *op)
{
    switch (op->kind) {
    case IO_OPEN:
    case IO_RENAME:
    case IO_UNLINK:
        return op->path;
    case IO_FSYNC_DIR:
        return ".";
    default:
        for (uint32_t i = 0; i < FAULT_FILES_MAX; i++) {
            if (fb->files[i].fd == op->fd)
                return fb->files[i].name;
        }
        return "?";
    }
}

static void fault_inner_done(struct io_op *inner)
{
    struct fault_wrap *wrap = inner->ctx;
    struct io_op *outer = wrap->outer;
    int64_t result = inner->result;
    if (wrap->forced_result != 0 && result != -ECANCELED)
        result = wrap->forced_result;
    fault_track(wrap->fb, outer, result);
    if (wrap->faulted)
        wrap->fb->fired_done = true;
    outer->result = result;
    outer->size = inner->size;
    SPOOL_ASSERT(wrap->fb->in_flight > 0);
    wrap->fb->in_flight--;
    free(wrap);
    outer->done(outer);
}

static bool fault_matches(const struct fault_backend *fb, const struct io_op *op)
{
    uint32_t mask = fb->config.op_mask;
    /* A write with IO_OP_DSYNC is also the fdatasync of what it writes. */
    bool dsync = op->kind == IO_WRITE && (op->flags & IO_OP_DSYNC) != 0 &&
                 (mask & FAULT_OP_BIT(IO_FDATASYNC)) != 0;
    if (mask != 0 && (mask & FAULT_OP_BIT(op->kind)) == 0 && !dsync)
        return false;
    if (fb->config.kind == FAULT_SHORT_WRITE)
        return op->kind == IO_WRITE && op->len >= 2;
    if (fb->config.kind == FAULT_SUBMIT_REFUSED)
        return true;
    return fb->config.kind != FAULT_NONE;
}

static void fault_stand_in(struct fault_wrap *wrap, int64_t forced_result)
{
    uint32_t flags = wrap->inner.flags;
    void (*done)(struct io_op *) = wrap->inner.done;
    void *ctx = wrap->inner.ctx;
    memset(&wrap->inner, 0, sizeof(wrap->inner));
    wrap->inner.kind = IO_CLOSE;
    wrap->inner.fd = -1;
    wrap->inner.flags = flags;
    wrap->inner.done = done;
    wrap->inner.ctx = ctx;
    wrap->forced_result = forced_result;
}

/* Decide what this op becomes: itself, a stand-in, or a short write. */
static void fault_decide(struct fault_backend *fb, struct fault_wrap *wrap)
{
    const struct io_op *op = wrap->outer;
    bool linked = (op->flags & IO_OP_LINK) != 0;
    if (fb->cancel_next) {
        fb->cancel_next = false;
        fault_stand_in(wrap, -ECANCELED);
        return;
    }
    if (!fault_matches(fb, op))
        return;
    fb->matched++;
    bool again = fb->config.sticky && fb->fired && fb->config.kind != FAULT_SHORT_WRITE;
    if (!again && (fb->fired || fb->config.fail_at == 0 || fb->matched != fb->config.fail_at))
        return;
    if (again && fb->config.kind == FAULT_SUBMIT_REFUSED) {
        wrap->faulted = true; /* fault_submit refuses it */
        return;
    }
    if (again) {
        fault_stand_in(wrap, fb->config.kind == FAULT_EIO ? -EIO : -ENOSPC);
        return;
    }
    fb->fired = true;
    wrap->faulted = true;
    fb->fired_kind = op->kind;
    fb->fired_offset = op->offset;
    snprintf(fb->fired_file, sizeof(fb->fired_file), "%s", fault_file_name(fb, op));
    switch (fb->config.kind) {
    case FAULT_EIO:
        fault_stand_in(wrap, -EIO);
        return;
    case FAULT_ENOSPC:
        fault_stand_in(wrap, -ENOSPC);
        return;
    case FAULT_SHORT_WRITE:
        wrap->inner.len = op->len / 2;
        fb->cancel_next = linked;
        return;
    case FAULT_SUBMIT_REFUSED: /* fault_submit refuses it */
    case FAULT_NONE:
        return;
    }
}

static int fault_submit(struct io_backend *backend, struct io_op *op)
{
    struct fault_backend *fb = (struct fault_backend *)backend;
    struct fault_wrap *wrap = calloc(1, sizeof(*wrap));
    SPOOL_ASSERT(wrap != NULL);
    wrap->inner = *op;
    wrap->inner.done = fault_inner_done;
    wrap->inner.ctx = wrap;
    wrap->inner.backend_data = NULL;
    wrap->outer = op;
    wrap->fb = fb;
    fb->op_count++;
    fault_decide(fb, wrap);
    if (wrap->faulted && fb->config.kind == FAULT_SUBMIT_REFUSED) {
        fb->fired_done = true; /* nothing will complete: the refusal is the whole fault */
        free(wrap);
        return -EAGAIN;
    }
    int rc = io_submit(fb->inner, &wrap->inner);
    if (rc < 0) {
        free(wrap);
        return rc;
    }
    fb->in_flight++;
    return 0;
}

static int fault_poll(struct io_backend *backend, bool wait)
{
    return io_backend_poll(((struct fault_backend *)backend)->inner, wait);
}

static int fault_list(struct io_backend *backend, io_list_fn fn, void *ctx)
{
    struct io_backend *inner = ((struct fault_backend *)backend)->inner;
    return inner->ops->list(inner, fn, ctx);
}

static int fault_lock(struct io_backend *backend)
{
    struct io_backend *inner = ((struct fault_backend *)backend)->inner;
    return inner->ops->lock(inner);
}

static int fault_space(struct io_backend *backend, uint64_t *free_bytes)
{
    return io_backend_space(((struct fault_backend *)backend)->inner, free_bytes);
}

/* Direct fds pass through, remembered by name like opened ones so a fault on one names it. */
static int fault_open_direct(struct io_backend *backend, const char *name)
{
    struct fault_backend *fb = (struct fault_backend *)backend;
    int fd = io_backend_open_direct(fb->inner, name);
    struct io_op open = {.kind = IO_OPEN};
    snprintf(open.path, sizeof(open.path), "%s", name);
    fault_track(fb, &open, fd);
    return fd;
}

static void fault_close_direct(struct io_backend *backend, int fd)
{
    struct fault_backend *fb = (struct fault_backend *)backend;
    struct io_op close = {.kind = IO_CLOSE, .fd = fd};
    fault_track(fb, &close, 0);
    io_backend_close_direct(fb->inner, fd);
}

static uint32_t fault_in_flight(struct io_backend *backend)
{
    return ((struct fault_backend *)backend)->in_flight;
}

static void fault_destroy(struct io_backend *backend)
{
    struct fault_backend *fb = (struct fault_backend *)backend;
    SPOOL_ASSERT(fb->in_flight == 0);
    free(fb);
}

static const struct io_backend_ops fault_ops = {
    .submit = fault_submit,
    .poll = fault_poll,
    .list = fault_list,
    .lock = fault_lock,
    .space = fault_space,
    .open_direct = fault_open_direct,
    .close_direct = fault_close_direct,
    .in_flight = fault_in_flight,
    .destroy = fault_destroy,
};

struct io_backend *fault_backend_create(struct io_backend *inner, const struct fault_config *config)
{
    SPOOL_ASSERT(inner != NULL);
    SPOOL_ASSERT(config != NULL);
    struct fault_backend *fb = calloc(1, sizeof(*fb));
    SPOOL_ASSERT(fb != NULL);
    fb->base.ops = &fault_ops;
    fb->inner = inner;
    fb->config = *config;
    for (uint32_t i = 0; i < FAULT_FILES_MAX; i++)
        fb->files[i].fd = -1;
    return &fb->base;
}

static const struct fault_backend *fault_cast(const struct io_backend *backend)
{
    SPOOL_ASSERT(backend->ops == &fault_ops);
    return (const struct fault_backend *)backend;
}

uint64_t fault_backend_op_count(const struct io_backend *backend)
{
    return fault_cast(backend)->op_count;
}

uint64_t fault_backend_matched(const struct io_backend *backend)
{
    return fault_cast(backend)->matched;
}

bool fault_backend_fired(const struct io_backend *backend)
{
    return fault_cast(backend)->fired;
}

bool fault_backend_fired_done(const struct io_backend *backend)
{
    return fault_cast(backend)->fired_done;
}

enum io_op_kind fault_backend_fired_kind(const struct io_backend *backend)
{
    return fault_cast(backend)->fired_kind;
}

uint64_t fault_backend_fired_offset(const struct io_backend *backend)
{
    return fault_cast(backend)->fired_offset;
}

const char *fault_backend_fired_file(const struct io_backend *backend)
{
    return fault_cast(backend)->fired_file;
}

uint32_t fault_backend_open_count(const struct io_backend *backend)
{
    const struct fault_backend *fb = fault_cast(backend);
    uint32_t count = 0;
    for (uint32_t i = 0; i < FAULT_FILES_MAX; i++)
        count += fb->files[i].fd >= 0 ? 1u : 0u;
    return count;
}

void fault_backend_arm(struct io_backend *backend, const struct fault_config *config)
{
    struct fault_backend *fb = (struct fault_backend *)backend;
    SPOOL_ASSERT(fault_cast(backend) == fb);
    SPOOL_ASSERT(config != NULL);
    fb->config = *config;
    fb->matched = 0;
    fb->fired = false;
    fb->fired_done = false;
}
