/*
 * The fault backend fails exactly the op it is told to (the Nth that matches the filter), in
 * the way a disk would (the op does not happen; a short write lands half), and keeps link
 * semantics: what follows a failed or short linked op is canceled. Checked over memfs, whose
 * op log shows what really ran, and over the POSIX backend.
 */
#include "check.h"
#include "fault_backend.h"
#include "memfs_backend.h"

#include <errno.h>
#include <fcntl.h>

static void noop_done(struct io_op *op)
{
    (void)op;
}

static void op_init(struct io_op *op, enum io_op_kind kind, int fd, const char *data,
                    uint64_t offset, uint32_t flags)
{
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    op->fd = fd;
    op->buf = (void *)data;
    op->len = data != NULL ? strlen(data) : 0;
    op->offset = offset;
    op->flags = flags;
    op->done = noop_done;
}

static void drain(struct io_backend *io)
{
    for (int i = 0; i < 100 && io->ops->in_flight(io) > 0; i++)
        CHECK(io_backend_poll(io, true) >= 0);
    CHECK_EQ(io->ops->in_flight(io), 0);
}

static void test_eio_on_nth_write_only(void)
{
    struct memfs *fs = memfs_create();
    struct fault_config config = {.kind = FAULT_EIO, .op_mask = FAULT_OPS_WRITES, .fail_at = 2};
    struct io_backend *io = fault_backend_create(memfs_io(fs), &config);
    int fd = io_sync_open(io, "f", O_RDWR | O_CREAT, 0640); /* not a write: not counted */
    REQUIRE(fd >= 0);
    CHECK_EQ(io_sync_pwrite(io, fd, "aa", 2, 0), 2);
    CHECK(!fault_backend_fired(io));
    CHECK_EQ(io_sync_pwrite(io, fd, "bb", 2, 2), -EIO);
    CHECK(fault_backend_fired(io));
    CHECK_EQ(fault_backend_fired_kind(io), IO_WRITE);
    CHECK(strcmp(fault_backend_fired_file(io), "f") == 0);
    CHECK_EQ(io_sync_pwrite(io, fd, "cc", 2, 4), 2);
    CHECK_EQ(fault_backend_op_count(io), 4);
    CHECK_EQ(fault_backend_matched(io), 3);
    const uint8_t *data;
    uint64_t size;
    REQUIRE(memfs_file(fs, "f", &data, &size));
    CHECK_EQ(size, 6);
    CHECK(memcmp(data, "aa\0\0cc", 6) == 0); /* the failed write never landed */
    CHECK_EQ(io_sync_simple(io, IO_CLOSE, fd), 0);
    io_backend_destroy(io);
    memfs_destroy(fs);
}

static void test_failed_linked_write_cancels_sync(void)
{
    struct memfs *fs = memfs_create();
    struct fault_config config = {.kind = FAULT_EIO, .op_mask = FAULT_OPS_WRITES, .fail_at = 1};
    struct io_backend *io = fault_backend_create(memfs_io(fs), &config);
    int fd = io_sync_open(io, "f", O_RDWR | O_CREAT, 0640);
    REQUIRE(fd >= 0);
    struct io_op write, sync, after;
    op_init(&write, IO_WRITE, fd, "data", 0, IO_OP_LINK);
    op_init(&sync, IO_FDATASYNC, fd, NULL, 0, 0);
    op_init(&after, IO_FSYNC_DIR, -1, NULL, 0, 0);
    CHECK_EQ(io_submit(io, &write), 0);
    CHECK(fault_backend_fired(io));
    CHECK(!fault_backend_fired_done(io));
    CHECK_EQ(io_submit(io, &sync), 0);
    CHECK_EQ(io_submit(io, &after), 0);
    drain(io);
    CHECK(fault_backend_fired_done(io));
    CHECK_EQ(write.result, -EIO);
    CHECK_EQ(sync.result, -ECANCELED);
    CHECK_EQ(after.result, 0);
    /* The memfs never saw a sync run. */
    for (uint64_t i = 0; i < memfs_op_count(fs); i++) {
        struct memfs_op_info info;
        memfs_op_get(fs, i, &info);
        CHECK(!(info.kind == IO_FDATASYNC && info.result == 0));
    }
    CHECK_EQ(io_sync_simple(io, IO_CLOSE, fd), 0);
    io_backend_destroy(io);
    memfs_destroy(fs);
}

static void test_eio_and_enospc_on_chosen_kinds(void)
{
    struct memfs *fs = memfs_create();
    struct fault_config config = {.kind = FAULT_EIO, .op_mask = FAULT_OPS_SYNCS, .fail_at = 1};
    struct io_backend *io = fault_backend_create(memfs_io(fs), &config);
    int fd = io_sync_open(io, "f", O_RDWR | O_CREAT, 0640);
    CHECK_EQ(io_sync_pwrite(io, fd, "x", 1, 0), 1);
    CHECK_EQ(io_sync_simple(io, IO_FSYNC_DIR, -1), 0); /* not in the mask */
    CHECK_EQ(io_sync_simple(io, IO_FDATASYNC, fd), -EIO);
    CHECK_EQ(io_sync_simple(io, IO_FDATASYNC, fd), 0); /* one fault only */
    io_backend_destroy(io);

    config = (struct fault_config){.kind = FAULT_ENOSPC, .op_mask = FAULT_OPS_SPACE, .fail_at = 2};
    io = fault_backend_create(memfs_io(fs), &config);
    CHECK_EQ(io_sync_open(io, "g", O_RDWR | O_CREAT, 0640) >= 0, 1);
    struct io_op fallocate;
    op_init(&fallocate, IO_FALLOCATE, fd, NULL, 0, 0);
    fallocate.len = 4096;
    CHECK_EQ(io_sync(io, &fallocate), -ENOSPC);
    uint64_t size = 0;
    const uint8_t *data;
    REQUIRE(memfs_file(fs, "f", &data, &size));
    CHECK_EQ(size, 1);
    io_backend_destroy(io);
    CHECK_EQ(io_sync_simple(memfs_io(fs), IO_CLOSE, fd), 0);
    memfs_destroy(fs);
}

static void test_short_write_lands_half_and_cancels_link(void)
{
    struct memfs *fs = memfs_create();
    struct fault_config config = {.kind = FAULT_SHORT_WRITE, .fail_at = 1};
    struct io_backend *io = fault_backend_create(memfs_io(fs), &config);
    int fd = io_sync_open(io, "f", O_RDWR | O_CREAT, 0640);
    REQUIRE(fd >= 0);
    CHECK_EQ(io_sync_pwrite(io, fd, "x", 1, 0), 1); /* too short to shorten: not matched */
    struct io_op write, sync, after;
    op_init(&write, IO_WRITE, fd, "abcdefgh", 0, IO_OP_LINK);
    op_init(&sync, IO_FDATASYNC, fd, NULL, 0, 0);
    op_init(&after, IO_FDATASYNC, fd, NULL, 0, 0);
    CHECK_EQ(io_submit(io, &write), 0);
    CHECK_EQ(io_submit(io, &sync), 0);
    CHECK_EQ(io_submit(io, &after), 0);
    drain(io);
    CHECK_EQ(write.result, 4);
    CHECK_EQ(sync.result, -ECANCELED);
    CHECK_EQ(after.result, 0);
    const uint8_t *data;
    uint64_t size;
    REQUIRE(memfs_file(fs, "f", &data, &size));
    CHECK_EQ(size, 4);
    CHECK(memcmp(data, "abcd", 4) == 0);
    /* The caller finishes the write: the rest lands normally. */
    CHECK_EQ(io_sync_pwrite(io, fd, "efgh", 4, 4), 4);
    CHECK_EQ(io_sync_simple(io, IO_CLOSE, fd), 0);
    io_backend_destroy(io);
    memfs_destroy(fs);
}

static void test_sticky_fails_every_later_match(void)
{
    struct memfs *fs = memfs_create();
    struct fault_config config = {.kind = FAULT_EIO, .fail_at = 2, .sticky = true};
    struct io_backend *io = fault_backend_create(memfs_io(fs), &config);
    int fd = io_sync_open(io, "f", O_RDWR | O_CREAT, 0640);
    REQUIRE(fd >= 0);
    CHECK_EQ(io_sync_pwrite(io, fd, "a", 1, 0), -EIO);
    CHECK_EQ(io_sync_simple(io, IO_FDATASYNC, fd), -EIO);
    CHECK_EQ(io_sync_simple(io, IO_FSYNC_DIR, -1), -EIO);
    CHECK_EQ(fault_backend_matched(io), 4);
    io_backend_destroy(io);
    CHECK_EQ(io_sync_simple(memfs_io(fs), IO_CLOSE, fd), 0);
    memfs_destroy(fs);
}

static void test_wraps_posix_backend(void)
{
    char *dir = check_tmpdir("fault");
    struct io_backend *posix;
    REQUIRE(posix_backend_create(dir, false, &posix) == 0);
    struct fault_config config = {
        .kind = FAULT_EIO, .op_mask = FAULT_OP_BIT(IO_OPEN), .fail_at = 1};
    struct io_backend *io = fault_backend_create(posix, &config);
    CHECK_EQ(io_sync_open(io, "f", O_RDWR | O_CREAT, 0640), -EIO);
    int fd = io_sync_open(io, "f", O_RDWR | O_CREAT, 0640);
    CHECK(fd >= 0);
    CHECK_EQ(io_sync_pwrite(io, fd, "ok", 2, 0), 2);
    CHECK_EQ(io_sync_simple(io, IO_CLOSE, fd), 0);
    CHECK_EQ(fault_backend_op_count(io), 4);
    io_backend_destroy(io);
    io_backend_destroy(posix);
    check_rmdir(dir);
    free(dir);
}

int main(void)
{
    RUN_TEST(test_eio_on_nth_write_only);
    RUN_TEST(test_failed_linked_write_cancels_sync);
    RUN_TEST(test_eio_and_enospc_on_chosen_kinds);
    RUN_TEST(test_short_write_lands_half_and_cancels_link);
    RUN_TEST(test_sticky_fails_every_later_match);
    RUN_TEST(test_wraps_posix_backend);
    return check_exit();
}
