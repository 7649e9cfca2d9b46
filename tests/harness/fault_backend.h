/*
 * fault_backend: wraps any io backend and makes one chosen op fail, the way SQLite's test VFS
 * fails the Nth I/O. Ops are counted as they are submitted; the Nth op that matches the kind
 * filter gets the fault:
 * - FAULT_EIO / FAULT_ENOSPC: the op does not run; it completes with -EIO / -ENOSPC.
 * - FAULT_SHORT_WRITE: a WRITE of len >= 2 runs with half its length (rounded down) and
 *   completes with that count, as a full disk or a signal can make a real write do.
 * - FAULT_SUBMIT_REFUSED: the op is not queued at all: submit returns -EAGAIN (a full ring)
 *   and its done never runs.
 * Nothing else changes: every other op passes through to the inner backend untouched. With
 * sticky, every matching op from the Nth on fails the same way (a disk that died).
 *
 * Linking is preserved: a faulted op still occupies its place in the inner backend's
 * submission order (it is replaced by a stand-in that fails at once, IO_CLOSE of fd -1), so
 * the op linked after it is canceled by the inner backend exactly as after a real failure,
 * and if the op before it in a chain failed, it reports -ECANCELED, not the fault.
 *
 * The wrapper owns nothing of the inner backend: destroy it first, then the inner one.
 */
#ifndef SPOOL_TEST_FAULT_BACKEND_H
#define SPOOL_TEST_FAULT_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "io.h"

enum fault_kind {
    FAULT_NONE = 0,
    FAULT_EIO,
    FAULT_ENOSPC,
    FAULT_SHORT_WRITE,
    FAULT_SUBMIT_REFUSED,
};

/* The kind filter: a set of enum io_op_kind bits. */
#define FAULT_OP_BIT(kind) (1u << (kind))
#define FAULT_OPS_ALL 0u /* every op kind matches */
#define FAULT_OPS_WRITES FAULT_OP_BIT(IO_WRITE)
#define FAULT_OPS_SYNCS (FAULT_OP_BIT(IO_FDATASYNC) | FAULT_OP_BIT(IO_FSYNC))
#define FAULT_OPS_SPACE                                                                            \
    (FAULT_OP_BIT(IO_WRITE) | FAULT_OP_BIT(IO_FALLOCATE) | FAULT_OP_BIT(IO_OPEN))

struct fault_config {
    enum fault_kind kind;
    uint32_t op_mask; /* FAULT_OPS_*; 0 = all kinds */
    uint64_t fail_at; /* 1-based index among matching ops; 0 = never fault */
    bool sticky;      /* EIO/ENOSPC/SUBMIT_REFUSED: every matching op from fail_at on fails
                         (a dead disk, a ring that stays full) */
};

/* Wrap inner. Never fails (allocation failure aborts). */
struct io_backend *fault_backend_create(struct io_backend *inner,
                                        const struct fault_config *config);

/* Ops submitted so far (all kinds), and ops that matched the filter. */
uint64_t fault_backend_op_count(const struct io_backend *backend);
uint64_t fault_backend_matched(const struct io_backend *backend);
/* Has the fault been injected (the op submitted)? Has its completion been delivered? */
bool fault_backend_fired(const struct io_backend *backend);
bool fault_backend_fired_done(const struct io_backend *backend);
/* The faulted op's kind, and the name of the file it touched ("." for the directory, "?" for
 * an fd this wrapper did not see opened). Valid once fired. */
enum io_op_kind fault_backend_fired_kind(const struct io_backend *backend);
uint64_t fault_backend_fired_offset(const struct io_backend *backend); /* READ, WRITE */
const char *fault_backend_fired_file(const struct io_backend *backend);

/* Files opened through the wrapper and not closed yet (an fd leak shows here). */
uint32_t fault_backend_open_count(const struct io_backend *backend);

/* Replace the fault from now on: fail_at counts matching ops submitted after this call (the
 * first next one is 1), as if the wrapper had just been created. For tests that drive the
 * engine to a chosen moment and then fail its next op of a kind. */
void fault_backend_arm(struct io_backend *backend, const struct fault_config *config);

#endif
