/*
 * memfs: the in-memory, recording file system described in memfs_backend.h.
 *
 * Two representations of the same history live side by side:
 * - the live state (files by inode number, the directory, the fd table) that ops run against,
 *   so reads see what was written, exactly as a page cache would;
 * - the base (the files the memfs started with, all durable) plus the op log (each op that ran,
 *   with a copy of the bytes it wrote). Images are built by replaying the first k records of
 *   the op log onto the base through a durability model (struct model): per file, the durable
 *   bytes and the indices of its volatile changes; for the directory, the durable entries and
 *   the indices of its volatile changes. A sync folds the pending changes into the durable
 *   state; an image then picks which pending changes survive.
 *
 * Inode numbers are assigned in creation order and never reused, so a record's inode number
 * means the same file in the live state and in every replay. Inodes are never freed (an
 * unlinked file may still be open, and the log needs it anyway).
 *
 * Invariants: replaying the whole op log with every change kept (MEMFS_IMAGE_ALL) yields the
 * live directory and contents (test_memfs checks it); a record with a negative result changed
 * nothing.
 */
#include "memfs_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Ops queued between two polls; the engine has a handful in flight, tests a few dozen. */
#define MEMFS_QUEUE_MAX 1024u
/* memfs fds start here so that one passed to a real syscall by mistake fails loudly. */
#define MEMFS_FD_BASE 1000
/* A file larger than this is a runaway test, not a workload: fail the write with -EFBIG. */
#define MEMFS_FILE_SIZE_MAX (1ull << 32)
/* The sector size a torn write is cut at: disks promise atomicity of no more than this. */
#define MEMFS_TEAR_BYTES 512u

struct memfs_buf {
    uint8_t *data;
    uint64_t size;
    uint64_t cap;
};

struct memfs_dirent {
    char name[IO_PATH_MAX];
    uint32_t inode;
};

struct memfs_dir {
    struct memfs_dirent *entries; /* in creation order */
    uint32_t count;
    uint32_t cap;
};

struct memfs_fd {
    bool used;
    int access; /* O_RDONLY, O_WRONLY or O_RDWR */
    uint32_t inode;
};

struct memfs_record {
    enum io_op_kind kind;
    int64_t result;
    uint32_t inode;
    bool created;   /* OPEN made a new file: a directory change */
    bool truncated; /* OPEN with O_TRUNC emptied an existing file: a content change */
    uint64_t offset;
    uint64_t len;
    uint8_t *data; /* WRITE: the len bytes that landed */
    char path[IO_PATH_MAX];
    char path2[IO_PATH_MAX];
};

/* A submitted op waiting to run, in submission order. */
struct memfs_entry {
    struct io_op *op;
    uint64_t submit_index;
    bool after_link; /* the op submitted just before it carried IO_OP_LINK */
    bool pred_done;  /* that op has run (until then this one may not) */
    bool cancel;     /* ... and failed or completed short: this one completes -ECANCELED */
};

struct memfs {
    struct io_backend base;
    struct memfs_buf *files; /* live content, by inode */
    uint32_t file_count;
    uint32_t file_cap;
    struct memfs_dir dir;
    struct memfs_fd *fds;
    uint32_t fd_cap;
    struct memfs_buf *base_files; /* where the op log starts */
    uint32_t base_file_count;
    uint32_t base_file_cap;
    struct memfs_dir base_dir;
    struct memfs_record *records;
    uint64_t record_count;
    uint64_t record_cap;
    uint32_t poll_batch;
    uint64_t reorder_rng; /* 0: run in submission order; else the state picking the next op */
    uint64_t submitted;
    bool last_linked;   /* the last submitted op carried IO_OP_LINK */
    bool orphan_done;   /* ... and already ran, before its successor was submitted */
    bool orphan_cancel; /* ... and failed: the successor completes -ECANCELED */
    uint32_t queued;
    struct memfs_entry queue[MEMFS_QUEUE_MAX];
    uint64_t free_bytes; /* what the space op reports; 0: no space op (unknown) */
    bool no_direct;      /* open_direct fails -EINVAL, as on a file system without O_DIRECT */
    uint32_t direct_fails; /* the next this many open_direct calls fail with direct_error */
    int direct_error;
    uint32_t direct_open; /* fds open_direct gave that close_direct has not taken back */
};

static uint64_t model_rand(uint64_t *state)
{
    /* splitmix64: tiny, seedable, and good enough to pick subsets. */
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---- small containers ---- */

static void *memfs_grow(void *ptr, uint64_t *cap, uint64_t need, size_t elem_size)
{
    if (need <= *cap)
        return ptr;
    uint64_t cap_new = *cap < 8 ? 8 : *cap;
    while (cap_new < need)
        cap_new *= 2;
    void *grown = realloc(ptr, cap_new * elem_size);
    SPOOL_ASSERT(grown != NULL);
    memset((char *)grown + *cap * elem_size, 0, (cap_new - *cap) * elem_size);
    *cap = cap_new;
    return grown;
}

static void *memfs_grow32(void *ptr, uint32_t *cap, uint64_t need, size_t elem_size)
{
    uint64_t cap64 = *cap;
    ptr = memfs_grow(ptr, &cap64, need, elem_size);
    SPOOL_ASSERT(cap64 <= UINT32_MAX);
    *cap = (uint32_t)cap64;
    return ptr;
}

static void buf_resize(struct memfs_buf *buf, uint64_t size)
{
    buf->data = memfs_grow(buf->data, &buf->cap, size, 1);
    if (size > buf->size)
        memset(buf->data + buf->size, 0, size - buf->size);
    buf->size = size;
}

static void buf_write(struct memfs_buf *buf, uint64_t offset, const uint8_t *data, uint64_t len)
{
    if (offset + len > buf->size)
        buf_resize(buf, offset + len);
    if (len > 0)
        memcpy(buf->data + offset, data, len);
}

static void buf_copy(struct memfs_buf *dst, const struct memfs_buf *src)
{
    dst->size = 0;
    buf_write(dst, 0, src->data, src->size);
}

static int dir_find(const struct memfs_dir *dir, const char *name)
{
    for (uint32_t i = 0; i < dir->count; i++) {
        if (strcmp(dir->entries[i].name, name) == 0)
            return (int)i;
    }
    return -1;
}

static void dir_remove(struct memfs_dir *dir, const char *name)
{
    int index = dir_find(dir, name);
    if (index < 0)
        return;
    memmove(&dir->entries[index], &dir->entries[index + 1],
            (dir->count - (uint32_t)index - 1) * sizeof(dir->entries[0]));
    dir->count--;
}

/* Point name at inode, replacing an entry of that name (rename over an existing file). */
static void dir_set(struct memfs_dir *dir, const char *name, uint32_t inode)
{
    int index = dir_find(dir, name);
    if (index >= 0) {
        dir->entries[index].inode = inode;
        return;
    }
    dir->entries =
        memfs_grow32(dir->entries, &dir->cap, dir->count + 1ull, sizeof(dir->entries[0]));
    SPOOL_ASSERT(strlen(name) < IO_PATH_MAX);
    strcpy(dir->entries[dir->count].name, name);
    dir->entries[dir->count].inode = inode;
    dir->count++;
}

static void dir_copy(struct memfs_dir *dst, const struct memfs_dir *src)
{
    dst->count = 0;
    dst->entries = memfs_grow32(dst->entries, &dst->cap, src->count, sizeof(src->entries[0]));
    if (src->count > 0)
        memcpy(dst->entries, src->entries, src->count * sizeof(src->entries[0]));
    dst->count = src->count;
}

static bool name_valid(const char *name)
{
    size_t len = strnlen(name, IO_PATH_MAX);
    return len > 0 && len < IO_PATH_MAX && strchr(name, '/') == NULL && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0;
}

/* ---- the live state ---- */

static uint32_t memfs_new_inode(struct memfs *fs)
{
    fs->files = memfs_grow32(fs->files, &fs->file_cap, fs->file_count + 1ull, sizeof(fs->files[0]));
    return fs->file_count++;
}

static struct memfs_fd *memfs_fd_get(struct memfs *fs, int fd)
{
    if (fd < MEMFS_FD_BASE || (uint32_t)(fd - MEMFS_FD_BASE) >= fs->fd_cap)
        return NULL;
    struct memfs_fd *entry = &fs->fds[fd - MEMFS_FD_BASE];
    return entry->used ? entry : NULL;
}

static int memfs_fd_new(struct memfs *fs, uint32_t inode, int access)
{
    uint32_t slot = 0;
    while (slot < fs->fd_cap && fs->fds[slot].used)
        slot++;
    fs->fds = memfs_grow32(fs->fds, &fs->fd_cap, slot + 1ull, sizeof(fs->fds[0]));
    fs->fds[slot] = (struct memfs_fd){.used = true, .access = access, .inode = inode};
    return MEMFS_FD_BASE + (int)slot;
}

static int64_t memfs_run_open(struct memfs *fs, const struct io_op *op, struct memfs_record *rec)
{
    if (!name_valid(op->path))
        return -EINVAL;
    int access = op->open_flags & O_ACCMODE;
    int index = dir_find(&fs->dir, op->path);
    uint32_t inode;
    if (index < 0) {
        if (!(op->open_flags & O_CREAT))
            return -ENOENT;
        inode = memfs_new_inode(fs);
        dir_set(&fs->dir, op->path, inode);
        rec->created = true;
    } else {
        if ((op->open_flags & O_CREAT) && (op->open_flags & O_EXCL))
            return -EEXIST;
        inode = fs->dir.entries[index].inode;
        if ((op->open_flags & O_TRUNC) && access != O_RDONLY && fs->files[inode].size > 0) {
            fs->files[inode].size = 0;
            rec->truncated = true;
        }
    }
    rec->inode = inode;
    return memfs_fd_new(fs, inode, access);
}

static int64_t memfs_run_write(const struct io_op *op, struct memfs_buf *file,
                               struct memfs_record *rec)
{
    if (op->offset + op->len > MEMFS_FILE_SIZE_MAX)
        return -EFBIG;
    buf_write(file, op->offset, op->buf, op->len);
    if (op->len > 0) {
        rec->data = malloc(op->len);
        SPOOL_ASSERT(rec->data != NULL);
        memcpy(rec->data, op->buf, op->len);
    }
    return (int64_t)op->len;
}

/* The ops on an open file. */
static int64_t memfs_run_fd(struct memfs *fs, struct io_op *op, struct memfs_record *rec)
{
    struct memfs_fd *fd = memfs_fd_get(fs, op->fd);
    if (fd == NULL)
        return -EBADF;
    rec->inode = fd->inode;
    struct memfs_buf *file = &fs->files[fd->inode];
    switch (op->kind) {
    case IO_CLOSE:
        fd->used = false;
        return 0;
    case IO_READ: {
        if (fd->access == O_WRONLY)
            return -EBADF;
        if (op->offset >= file->size)
            return 0;
        uint64_t n = file->size - op->offset < op->len ? file->size - op->offset : op->len;
        memcpy(op->buf, file->data + op->offset, n);
        return (int64_t)n;
    }
    case IO_WRITE:
        if (fd->access == O_RDONLY)
            return -EBADF;
        return memfs_run_write(op, file, rec);
    case IO_FALLOCATE:
        if (fd->access == O_RDONLY)
            return -EBADF;
        if (op->len == 0)
            return -EINVAL;
        if (op->offset + op->len > MEMFS_FILE_SIZE_MAX)
            return -EFBIG;
        if (op->offset + op->len > file->size)
            buf_resize(file, op->offset + op->len);
        return 0;
    case IO_FDATASYNC:
    case IO_FSYNC:
        return 0;
    case IO_SIZE:
        op->size = file->size;
        return 0;
    default:
        SPOOL_ASSERT(!"not an fd op");
        return -EINVAL;
    }
}

static int64_t memfs_run_dir(struct memfs *fs, const struct io_op *op)
{
    if (op->kind == IO_FSYNC_DIR)
        return 0;
    if (!name_valid(op->path))
        return -EINVAL;
    int index = dir_find(&fs->dir, op->path);
    if (index < 0)
        return -ENOENT;
    if (op->kind == IO_UNLINK) {
        dir_remove(&fs->dir, op->path);
        return 0;
    }
    SPOOL_ASSERT(op->kind == IO_RENAME);
    if (!name_valid(op->path2))
        return -EINVAL;
    uint32_t inode = fs->dir.entries[index].inode;
    if (strcmp(op->path, op->path2) != 0) {
        dir_remove(&fs->dir, op->path);
        dir_set(&fs->dir, op->path2, inode);
    }
    return 0;
}

static int64_t memfs_exec(struct memfs *fs, struct io_op *op, struct memfs_record *rec)
{
    switch (op->kind) {
    case IO_OPEN:
        return memfs_run_open(fs, op, rec);
    case IO_FSYNC_DIR:
    case IO_RENAME:
    case IO_UNLINK:
        return memfs_run_dir(fs, op);
    case IO_CLOSE:
    case IO_READ:
    case IO_WRITE:
    case IO_FDATASYNC:
    case IO_FSYNC:
    case IO_FALLOCATE:
    case IO_SIZE:
        return memfs_run_fd(fs, op, rec);
    }
    SPOOL_ASSERT(!"unknown io op kind");
    return -EINVAL;
}

static bool memfs_op_short(const struct io_op *op)
{
    if (op->result < 0)
        return true;
    return (op->kind == IO_READ || op->kind == IO_WRITE) && (uint64_t)op->result != op->len;
}

/* Run one op now (or cancel it) and record it. */
static void memfs_run(struct memfs *fs, struct io_op *op, bool canceled)
{
    fs->records =
        memfs_grow(fs->records, &fs->record_cap, fs->record_count + 1, sizeof(fs->records[0]));
    struct memfs_record *rec = &fs->records[fs->record_count++];
    memset(rec, 0, sizeof(*rec));
    rec->kind = op->kind;
    rec->offset = op->offset;
    rec->len = op->len;
    memcpy(rec->path, op->path, sizeof(rec->path));
    memcpy(rec->path2, op->path2, sizeof(rec->path2));
    rec->path[IO_PATH_MAX - 1] = '\0';
    rec->path2[IO_PATH_MAX - 1] = '\0';
    op->result = canceled ? -ECANCELED : memfs_exec(fs, op, rec);
    rec->result = op->result;
    if (op->kind == IO_WRITE && (op->flags & IO_OP_DSYNC) && op->result > 0) {
        /* RWF_DSYNC: a write, then its sync; an image between the two may tear the write. */
        uint32_t inode = rec->inode;
        fs->records = memfs_grow(fs->records, &fs->record_cap, fs->record_count + 1,
                                 sizeof(fs->records[0]));
        rec = &fs->records[fs->record_count++];
        memset(rec, 0, sizeof(*rec));
        rec->kind = IO_FDATASYNC;
        rec->inode = inode;
    }
}

/* ---- the backend interface ---- */

static int memfs_submit(struct io_backend *backend, struct io_op *op)
{
    struct memfs *fs = (struct memfs *)backend;
    if (fs->queued == MEMFS_QUEUE_MAX)
        return -EAGAIN;
    struct memfs_entry *entry = &fs->queue[fs->queued++];
    *entry = (struct memfs_entry){.op = op, .submit_index = fs->submitted++};
    if (fs->last_linked) {
        entry->after_link = true;
        if (fs->orphan_done) {
            entry->pred_done = true;
            entry->cancel = fs->orphan_cancel;
            fs->orphan_done = false;
        }
    }
    fs->last_linked = (op->flags & IO_OP_LINK) != 0;
    return 0;
}

static bool memfs_entry_ready(const struct memfs_entry *entry, uint64_t boundary)
{
    return entry->submit_index < boundary && (!entry->after_link || entry->pred_done);
}

/* The next op to run among those submitted before boundary: the oldest, or with reordering a
 * random one whose link predecessor has run. -1 if none can run. */
static int memfs_pick(struct memfs *fs, uint64_t boundary)
{
    if (fs->reorder_rng == 0)
        return fs->queued > 0 && memfs_entry_ready(&fs->queue[0], boundary) ? 0 : -1;
    uint32_t ready = 0;
    for (uint32_t i = 0; i < fs->queued; i++)
        ready += memfs_entry_ready(&fs->queue[i], boundary);
    if (ready == 0)
        return -1;
    uint64_t pick = model_rand(&fs->reorder_rng) % ready;
    for (uint32_t i = 0; i < fs->queued; i++) {
        if (memfs_entry_ready(&fs->queue[i], boundary) && pick-- == 0)
            return (int)i;
    }
    return -1;
}

/* Run queue[index]; tell its link successor (the next entry, or the next op submitted)
 * whether it may run; deliver the completion. */
static void memfs_run_entry(struct memfs *fs, uint32_t index)
{
    struct memfs_entry entry = fs->queue[index];
    memfs_run(fs, entry.op, entry.after_link && entry.cancel);
    if (entry.op->flags & IO_OP_LINK) {
        bool failed = memfs_op_short(entry.op);
        if (index + 1 < fs->queued) {
            SPOOL_ASSERT(fs->queue[index + 1].after_link);
            fs->queue[index + 1].pred_done = true;
            fs->queue[index + 1].cancel = failed;
        } else {
            fs->orphan_done = true;
            fs->orphan_cancel = failed;
        }
    }
    memmove(&fs->queue[index], &fs->queue[index + 1],
            (fs->queued - index - 1) * sizeof(fs->queue[0]));
    fs->queued--;
    entry.op->done(entry.op);
}

static int memfs_poll(struct io_backend *backend, bool wait)
{
    struct memfs *fs = (struct memfs *)backend;
    (void)wait; /* every queued op can run now: nothing to wait for */
    /* Only what was queued before this call: a done callback may submit more. */
    uint64_t boundary = fs->submitted;
    uint32_t n = fs->queued;
    if (fs->poll_batch > 0 && n > fs->poll_batch)
        n = fs->poll_batch;
    uint32_t delivered = 0;
    while (delivered < n) {
        int index = memfs_pick(fs, boundary);
        if (index < 0)
            break;
        memfs_run_entry(fs, (uint32_t)index);
        delivered++;
    }
    return (int)delivered;
}

static int memfs_list(struct io_backend *backend, io_list_fn fn, void *ctx)
{
    struct memfs *fs = (struct memfs *)backend;
    for (uint32_t i = 0; i < fs->dir.count; i++)
        fn(ctx, fs->dir.entries[i].name);
    return 0;
}

/* One memfs is one directory used by one process: there is nobody to exclude. */
static int memfs_lock(struct io_backend *backend)
{
    (void)backend;
    return 0;
}

static int memfs_space(struct io_backend *backend, uint64_t *free_bytes)
{
    struct memfs *fs = (struct memfs *)backend;
    if (fs->free_bytes == 0)
        return -EOPNOTSUPP;
    *free_bytes = fs->free_bytes;
    return 0;
}

void memfs_set_free_bytes(struct memfs *fs, uint64_t bytes)
{
    fs->free_bytes = bytes;
}

static uint32_t memfs_in_flight(struct io_backend *backend)
{
    return ((struct memfs *)backend)->queued;
}

static void memfs_backend_destroy(struct io_backend *backend)
{
    memfs_destroy((struct memfs *)backend);
}

/* A direct fd is one more fd on the file's inode: memfs has no page cache to bypass, and a
 * write through it is durable when it completes only if it carries IO_OP_DSYNC, as on disk. */
static int memfs_open_direct(struct io_backend *backend, const char *name)
{
    struct memfs *fs = (struct memfs *)backend;
    if (fs->no_direct)
        return -EINVAL;
    if (fs->direct_fails > 0) {
        fs->direct_fails--;
        return fs->direct_error;
    }
    int index = name_valid(name) ? dir_find(&fs->dir, name) : -1;
    if (index < 0)
        return -ENOENT;
    fs->direct_open++;
    return memfs_fd_new(fs, fs->dir.entries[index].inode, O_RDWR);
}

static void memfs_close_direct(struct io_backend *backend, int fd)
{
    struct memfs *fs = (struct memfs *)backend;
    struct memfs_fd *entry = memfs_fd_get(fs, fd);
    SPOOL_ASSERT(entry != NULL && fs->direct_open > 0);
    entry->used = false;
    fs->direct_open--;
}

void memfs_set_direct(struct memfs *fs, bool offered)
{
    fs->no_direct = !offered;
}

void memfs_fail_direct_opens(struct memfs *fs, uint32_t count, int error)
{
    SPOOL_ASSERT(error < 0);
    fs->direct_fails = count;
    fs->direct_error = error;
}

uint32_t memfs_direct_open(const struct memfs *fs)
{
    return fs->direct_open;
}

static const struct io_backend_ops memfs_ops = {
    .submit = memfs_submit,
    .poll = memfs_poll,
    .list = memfs_list,
    .lock = memfs_lock,
    .space = memfs_space,
    .open_direct = memfs_open_direct,
    .close_direct = memfs_close_direct,
    .in_flight = memfs_in_flight,
    .destroy = memfs_backend_destroy,
};

struct memfs *memfs_create(void)
{
    struct memfs *fs = calloc(1, sizeof(*fs));
    SPOOL_ASSERT(fs != NULL);
    fs->base.ops = &memfs_ops;
    return fs;
}

static void memfs_free_files(struct memfs_buf *files, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++)
        free(files[i].data);
    free(files);
}

void memfs_destroy(struct memfs *fs)
{
    if (fs == NULL)
        return;
    SPOOL_ASSERT(fs->queued == 0);
    memfs_free_files(fs->files, fs->file_count);
    memfs_free_files(fs->base_files, fs->base_file_count);
    free(fs->dir.entries);
    free(fs->base_dir.entries);
    free(fs->fds);
    for (uint64_t i = 0; i < fs->record_count; i++)
        free(fs->records[i].data);
    free(fs->records);
    free(fs);
}

struct io_backend *memfs_io(struct memfs *fs)
{
    return &fs->base;
}

struct memfs *memfs_from_io(struct io_backend *io)
{
    SPOOL_ASSERT(io->ops == &memfs_ops);
    return (struct memfs *)io;
}

void memfs_set_poll_batch(struct memfs *fs, uint32_t ops_max)
{
    fs->poll_batch = ops_max;
}

void memfs_set_reorder(struct memfs *fs, uint64_t seed)
{
    /* splitmix64 from state 0 is fine, but 0 means "in order": keep the state non-zero. */
    fs->reorder_rng = seed == 0 ? 0 : seed | 1u;
}

uint64_t memfs_op_count(const struct memfs *fs)
{
    return fs->record_count;
}

void memfs_op_get(const struct memfs *fs, uint64_t index, struct memfs_op_info *info)
{
    SPOOL_ASSERT(index < fs->record_count);
    const struct memfs_record *rec = &fs->records[index];
    *info = (struct memfs_op_info){
        .kind = rec->kind,
        .result = rec->result,
        .inode = rec->inode,
        .offset = rec->offset,
        .len = rec->len,
        .path = rec->path,
        .path2 = rec->path2,
    };
}

/* Make the base (durable, before any op) the live state too. */
static void memfs_load_base(struct memfs *fs)
{
    SPOOL_ASSERT(fs->record_count == 0);
    for (uint32_t i = 0; i < fs->file_count; i++) {
        free(fs->files[i].data);
        fs->files[i] = (struct memfs_buf){0};
    }
    fs->file_count = 0;
    for (uint32_t i = 0; i < fs->base_file_count; i++) {
        uint32_t inode = memfs_new_inode(fs);
        buf_copy(&fs->files[inode], &fs->base_files[i]);
    }
    dir_copy(&fs->dir, &fs->base_dir);
}

/* Add a durable file to the base (image building and memfs_put_file). */
static void memfs_base_put(struct memfs *fs, const char *name, const uint8_t *data, uint64_t size)
{
    int index = dir_find(&fs->base_dir, name);
    uint32_t inode;
    if (index >= 0) {
        inode = fs->base_dir.entries[index].inode;
    } else {
        fs->base_files = memfs_grow32(fs->base_files, &fs->base_file_cap,
                                      fs->base_file_count + 1ull, sizeof(fs->base_files[0]));
        inode = fs->base_file_count++;
        dir_set(&fs->base_dir, name, inode);
    }
    fs->base_files[inode].size = 0;
    buf_write(&fs->base_files[inode], 0, data, size);
}

void memfs_put_file(struct memfs *fs, const char *name, const void *data, uint64_t size)
{
    SPOOL_ASSERT(fs->record_count == 0);
    SPOOL_ASSERT(fs->queued == 0);
    SPOOL_ASSERT(name_valid(name));
    memfs_base_put(fs, name, data, size);
    memfs_load_base(fs);
}

bool memfs_file(const struct memfs *fs, const char *name, const uint8_t **data, uint64_t *size)
{
    int index = dir_find(&fs->dir, name);
    if (index < 0)
        return false;
    const struct memfs_buf *file = &fs->files[fs->dir.entries[index].inode];
    *data = file->data != NULL ? file->data : (const uint8_t *)""; /* never NULL */
    *size = file->size;
    return true;
}

uint32_t memfs_file_count(const struct memfs *fs)
{
    return fs->dir.count;
}

const char *memfs_file_name(const struct memfs *fs, uint32_t index)
{
    SPOOL_ASSERT(index < fs->dir.count);
    return fs->dir.entries[index].name;
}

int memfs_materialize(const struct memfs *fs, const char *dir)
{
    char path[4096];
    for (uint32_t i = 0; i < fs->dir.count; i++) {
        const struct memfs_dirent *entry = &fs->dir.entries[i];
        const struct memfs_buf *file = &fs->files[entry->inode];
        snprintf(path, sizeof(path), "%s/%s", dir, entry->name);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (fd < 0)
            return -errno;
        uint64_t done = 0;
        while (done < file->size) {
            ssize_t n = write(fd, file->data + done, file->size - done);
            if (n < 0) {
                int err = -errno;
                close(fd);
                return err;
            }
            done += (uint64_t)n;
        }
        if (close(fd) != 0) /* no fsync: an image for a test or a tool, not a backup */
            return -errno;
    }
    return 0;
}

/* ---- the durability model and images ---- */

struct model_file {
    struct memfs_buf durable;
    uint64_t *pending; /* record indices of volatile content changes, in order */
    uint32_t pending_count;
    uint32_t pending_cap;
};

struct model {
    const struct memfs *fs;
    struct model_file *files; /* by inode, fs->file_count of them */
    struct memfs_dir dir;     /* durable entries */
    uint64_t *dir_pending;    /* record indices of volatile directory changes, in order */
    uint32_t dir_pending_count;
    uint32_t dir_pending_cap;
};

static void model_init(struct model *m, const struct memfs *fs)
{
    memset(m, 0, sizeof(*m));
    m->fs = fs;
    m->files = calloc(fs->file_count + 1u, sizeof(m->files[0]));
    SPOOL_ASSERT(m->files != NULL);
    for (uint32_t i = 0; i < fs->base_file_count; i++)
        buf_copy(&m->files[i].durable, &fs->base_files[i]);
    dir_copy(&m->dir, &fs->base_dir);
}

static void model_free(struct model *m)
{
    for (uint32_t i = 0; i < m->fs->file_count; i++) {
        free(m->files[i].durable.data);
        free(m->files[i].pending);
    }
    free(m->files);
    free(m->dir.entries);
    free(m->dir_pending);
}

/* Apply a content change to buf; a WRITE only up to file offset cut (tearing). */
static void model_apply_content(struct memfs_buf *buf, const struct memfs_record *rec, uint64_t cut)
{
    switch (rec->kind) {
    case IO_WRITE: {
        uint64_t end = rec->offset + rec->len < cut ? rec->offset + rec->len : cut;
        if (end > rec->offset)
            buf_write(buf, rec->offset, rec->data, end - rec->offset);
        return;
    }
    case IO_FALLOCATE:
        if (rec->offset + rec->len > buf->size)
            buf_resize(buf, rec->offset + rec->len);
        return;
    case IO_OPEN:
        SPOOL_ASSERT(rec->truncated);
        buf->size = 0;
        return;
    default:
        SPOOL_ASSERT(!"not a content change");
    }
}

static void model_apply_dir(struct memfs_dir *dir, const struct memfs_record *rec)
{
    switch (rec->kind) {
    case IO_OPEN:
        dir_set(dir, rec->path, rec->inode);
        return;
    case IO_RENAME: {
        int index = dir_find(dir, rec->path);
        if (index < 0 || strcmp(rec->path, rec->path2) == 0)
            return;
        uint32_t inode = dir->entries[index].inode;
        dir_remove(dir, rec->path);
        dir_set(dir, rec->path2, inode);
        return;
    }
    case IO_UNLINK:
        dir_remove(dir, rec->path);
        return;
    default:
        SPOOL_ASSERT(!"not a directory change");
    }
}

static void model_file_pend(struct model_file *file, uint64_t index)
{
    file->pending = memfs_grow32(file->pending, &file->pending_cap, file->pending_count + 1ull,
                                 sizeof(file->pending[0]));
    file->pending[file->pending_count++] = index;
}

static void model_file_sync(const struct model *m, struct model_file *file)
{
    for (uint32_t i = 0; i < file->pending_count; i++)
        model_apply_content(&file->durable, &m->fs->records[file->pending[i]], UINT64_MAX);
    file->pending_count = 0;
}

/* Fold record index into the model. */
static void model_step(struct model *m, uint64_t index)
{
    const struct memfs_record *rec = &m->fs->records[index];
    if (rec->result < 0)
        return;
    struct model_file *file = &m->files[rec->inode];
    switch (rec->kind) {
    case IO_OPEN:
        if (rec->truncated)
            model_file_pend(file, index);
        if (!rec->created)
            return;
        m->dir_pending = memfs_grow32(m->dir_pending, &m->dir_pending_cap,
                                      m->dir_pending_count + 1ull, sizeof(m->dir_pending[0]));
        m->dir_pending[m->dir_pending_count++] = index;
        return;
    case IO_WRITE:
        if (rec->result > 0)
            model_file_pend(file, index);
        return;
    case IO_FALLOCATE:
        model_file_pend(file, index);
        return;
    case IO_FDATASYNC:
    case IO_FSYNC:
        model_file_sync(m, file);
        return;
    case IO_FSYNC_DIR:
        for (uint32_t i = 0; i < m->dir_pending_count; i++)
            model_apply_dir(&m->dir, &m->fs->records[m->dir_pending[i]]);
        m->dir_pending_count = 0;
        return;
    case IO_RENAME:
    case IO_UNLINK:
        m->dir_pending = memfs_grow32(m->dir_pending, &m->dir_pending_cap,
                                      m->dir_pending_count + 1ull, sizeof(m->dir_pending[0]));
        m->dir_pending[m->dir_pending_count++] = index;
        return;
    default:
        return;
    }
}

/* A torn write keeps a prefix ending on a sector boundary (or all of it). */
static uint64_t model_tear_cut(const struct memfs_record *rec, uint64_t *rng)
{
    uint64_t first = (rec->offset / MEMFS_TEAR_BYTES + 1) * MEMFS_TEAR_BYTES;
    uint64_t end = rec->offset + rec->len;
    uint64_t inner = first < end ? (end - 1 - first) / MEMFS_TEAR_BYTES + 1 : 0;
    uint64_t pick = model_rand(rng) % (inner + 1);
    return pick == inner ? end : first + pick * MEMFS_TEAR_BYTES;
}

/* The content a crash leaves for one file: durable bytes plus the surviving changes. */
static void model_file_image(const struct model *m, const struct model_file *file,
                             enum memfs_image_kind kind, uint64_t *rng, struct memfs_buf *out)
{
    buf_copy(out, &file->durable);
    if (kind == MEMFS_IMAGE_DURABLE || file->pending_count == 0)
        return;
    bool *keep = calloc(file->pending_count, sizeof(bool));
    SPOOL_ASSERT(keep != NULL);
    uint32_t last = UINT32_MAX;
    for (uint32_t i = 0; i < file->pending_count; i++) {
        keep[i] = kind == MEMFS_IMAGE_ALL || (model_rand(rng) & 1) != 0;
        if (keep[i])
            last = i;
    }
    for (uint32_t i = 0; i < file->pending_count; i++) {
        if (!keep[i])
            continue;
        const struct memfs_record *rec = &m->fs->records[file->pending[i]];
        uint64_t cut = UINT64_MAX;
        if (i == last && kind == MEMFS_IMAGE_CRASH && rec->kind == IO_WRITE)
            cut = model_tear_cut(rec, rng);
        model_apply_content(out, rec, cut);
    }
    free(keep);
}

/* Apply the volatile directory changes that survive: none, all, a prefix, or a subset. */
static void model_dir_image(struct model *m, enum memfs_image_kind kind, uint64_t *rng)
{
    uint32_t kept = m->dir_pending_count;
    if (kind == MEMFS_IMAGE_DURABLE)
        kept = 0;
    else if (kind == MEMFS_IMAGE_CRASH)
        kept = (uint32_t)(model_rand(rng) % (m->dir_pending_count + 1u));
    for (uint32_t i = 0; i < kept; i++) {
        if (kind == MEMFS_IMAGE_CRASH_UNORDERED && (model_rand(rng) & 1) == 0)
            continue;
        model_apply_dir(&m->dir, &m->fs->records[m->dir_pending[i]]);
    }
}

struct memfs *memfs_image(const struct memfs *fs, uint64_t k, enum memfs_image_kind kind,
                          uint64_t seed)
{
    SPOOL_ASSERT(k <= fs->record_count);
    struct model m;
    model_init(&m, fs);
    for (uint64_t i = 0; i < k; i++)
        model_step(&m, i);
    uint64_t rng = seed * 0x100000001b3ull ^ k;
    model_dir_image(&m, kind, &rng);
    if (kind == MEMFS_IMAGE_CRASH_UNORDERED)
        kind = MEMFS_IMAGE_CRASH; /* file contents: the same model */

    struct memfs *image = memfs_create();
    struct memfs_buf content = {0};
    for (uint32_t i = 0; i < m.dir.count; i++) {
        const struct memfs_dirent *entry = &m.dir.entries[i];
        model_file_image(&m, &m.files[entry->inode], kind, &rng, &content);
        memfs_base_put(image, entry->name, content.data, content.size);
    }
    free(content.data);
    model_free(&m);
    memfs_load_base(image);
    return image;
}
