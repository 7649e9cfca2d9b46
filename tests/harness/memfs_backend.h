/*
 * memfs: an in-memory file system behind the io backend interface (io.h), for tests that need
 * to see every operation the engine performs and to ask "what could a power loss right here
 * have left on disk?" (SQLite's crash-test VFS, ALICE's application-level crash states).
 *
 * Files are byte arrays in one flat directory. Every op that runs is recorded, in the order it
 * ran, with the bytes it wrote: the op log. An image is rebuilt from the op log, so any past
 * moment can be crashed after the workload has finished.
 *
 * Durability model (what a power loss may lose):
 * - File content written (WRITE, FALLOCATE, O_TRUNC) since that file's last completed
 *   IO_FDATASYNC or IO_FSYNC is volatile. A crash keeps a random subset of the volatile
 *   changes, applied in their order, and tears the last kept WRITE at a 512-byte boundary.
 * - A directory change (create, rename, unlink) not followed by a completed IO_FSYNC_DIR is
 *   volatile. A crash keeps a random prefix of the volatile directory changes, in order (the
 *   file systems we run on journal metadata in order), or with MEMFS_IMAGE_CRASH_UNORDERED
 *   any subset; a rename not synced may revert (whole, never half), and a file created but
 *   never made durable in its directory vanishes with its data.
 * - Syncing a file does not sync its directory entry, nor the other way round.
 *
 * Execution is deferred like a ring's: submit only queues an op; poll runs queued ops in
 * submission order (or a seeded random order, memfs_set_reorder) and calls each done right
 * after its op ran, so several ops are in flight at once, and an op's effect is recorded
 * when it runs, not when it was submitted. Linking follows IOSQE_IO_LINK: a linked op's
 * successor runs only after it, and completes with -ECANCELED without running (recorded as
 * such) if it failed or completed short.
 *
 * Op indices: op i is the i-th op that ran (0-based); memfs_op_count() ops have run. An image
 * "at k" is what the disk could hold after a power loss right after the first k ops ran.
 *
 * Memory: the op log keeps a copy of every written byte; meant for workloads of a few MiB.
 */
#ifndef SPOOL_TEST_MEMFS_BACKEND_H
#define SPOOL_TEST_MEMFS_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "io.h"

struct memfs;

/* An empty file system; its op log starts empty. Never fails (allocation failure aborts). */
struct memfs *memfs_create(void);
void memfs_destroy(struct memfs *fs);

/* The backend view of fs; destroying it destroys fs. */
struct io_backend *memfs_io(struct memfs *fs);
struct memfs *memfs_from_io(struct io_backend *io);

/* Run at most this many queued ops per poll (0: every op queued when poll began). 1 makes the
 * engine see one completion per loop turn, the most interleaving a ring can produce. */
void memfs_set_poll_batch(struct memfs *fs, uint32_t ops_max);

/* Run queued ops in a seeded random order instead of submission order (seed 0: in order),
 * as a ring may: only a linked op waits for its predecessor. Catches a caller that relies on
 * the order of ops it did not link. */
void memfs_set_reorder(struct memfs *fs, uint64_t seed);

/* What the backend's space op reports (statvfs's free bytes); 0 (the default): no report. */
void memfs_set_free_bytes(struct memfs *fs, uint64_t bytes);

/* Whether open_direct succeeds (the default) or fails -EINVAL, as on tmpfs; and how many fds
 * it gave are still open. */
void memfs_set_direct(struct memfs *fs, bool offered);
uint32_t memfs_direct_open(const struct memfs *fs);
/* The next count open_direct calls fail with error (< 0), as opens that run out of fds do. */
void memfs_fail_direct_opens(struct memfs *fs, uint32_t count, int error);

uint64_t memfs_op_count(const struct memfs *fs);

/* One recorded op, for tests that inspect what the engine did. */
struct memfs_op_info {
    enum io_op_kind kind;
    int64_t result;
    uint32_t inode; /* the file the op touched (fd ops, OPEN) */
    uint64_t offset;
    uint64_t len;      /* WRITE: bytes that landed; FALLOCATE: length */
    const char *path;  /* OPEN, RENAME, UNLINK */
    const char *path2; /* RENAME */
};
void memfs_op_get(const struct memfs *fs, uint64_t index, struct memfs_op_info *info);

enum memfs_image_kind {
    MEMFS_IMAGE_CRASH = 0, /* durable state plus a seeded random choice of volatile changes */
    MEMFS_IMAGE_DURABLE,   /* only what was durable: every volatile change lost */
    MEMFS_IMAGE_ALL,       /* every change kept: a process crash (kill -9), not a power loss */
    /* As CRASH, but volatile directory changes survive as any subset, not only a prefix:
     * POSIX promises no order between them (a later unlink may persist while an earlier
     * rename is lost), so this catches a missing directory fsync between two dependent
     * changes that an in-order journal would hide. A change whose source is gone (a rename
     * of a file whose creation was lost) does not happen. */
    MEMFS_IMAGE_CRASH_UNORDERED,
};

/*
 * The state after a power loss right after the first k ops ran (k <= memfs_op_count()), as a
 * new memfs whose files are all durable and whose op log is empty. seed selects which volatile
 * changes survive (MEMFS_IMAGE_CRASH only); the same (k, seed) always gives the same image.
 */
struct memfs *memfs_image(const struct memfs *fs, uint64_t k, enum memfs_image_kind kind,
                          uint64_t seed);
static inline struct memfs *memfs_crash_image(const struct memfs *fs, uint64_t k, uint64_t seed)
{
    return memfs_image(fs, k, MEMFS_IMAGE_CRASH, seed);
}

/* Write fs's current files into dir (an existing real directory): for tools and debugging. 0
 * or a negative errno. */
int memfs_materialize(const struct memfs *fs, const char *dir);

/* The current content of a file by name: false if there is none. data stays valid until the
 * next op runs. */
bool memfs_file(const struct memfs *fs, const char *name, const uint8_t **data, uint64_t *size);
/* Names in the directory, in creation order; index < memfs_file_count(). */
uint32_t memfs_file_count(const struct memfs *fs);
const char *memfs_file_name(const struct memfs *fs, uint32_t index);
/* Replace a file's content outright, durably, outside the op log: only before any op has run
 * (tests that plant corrupt files). */
void memfs_put_file(struct memfs *fs, const char *name, const void *data, uint64_t size);

#endif
