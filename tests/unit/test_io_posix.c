/* The POSIX backend keeps the asynchronous contract: done runs only from poll, links cancel. */
#include "check.h"
#include "io_checks.h"
#include "io.h"

#include <errno.h>
#include <fcntl.h>

static int done_calls;

static void count_done(struct io_op *op)
{
    (void)op;
    done_calls++;
}

static void test_write_read_roundtrip(void)
{
    char *dir = check_tmpdir("io-posix");
    struct io_backend *io;
    REQUIRE(posix_backend_create(dir, false, &io) == 0);
    int fd = io_sync_open(io, "f", O_RDWR | O_CREAT, 0640);
    REQUIRE(fd >= 0);
    CHECK_EQ(io_sync_pwrite(io, fd, "hello", 5, 10), 5);
    char buf[16] = {0};
    CHECK_EQ(io_sync_pread(io, fd, buf, 5, 10), 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    CHECK_EQ(io_sync_simple(io, IO_FDATASYNC, fd), 0);
    CHECK_EQ(io_sync_simple(io, IO_FSYNC_DIR, -1), 0);
    CHECK_EQ(io_sync_simple(io, IO_CLOSE, fd), 0);
    CHECK_EQ(io_sync_open(io, "missing", O_RDONLY, 0), -ENOENT);
    io_backend_destroy(io);
    check_rmdir(dir);
    free(dir);
}

static void test_done_only_from_poll_and_link_cancels(void)
{
    char *dir = check_tmpdir("io-posix");
    struct io_backend *io;
    REQUIRE(posix_backend_create(dir, false, &io) == 0);
    struct io_op write = {0}, sync = {0};
    write.kind = IO_WRITE;
    write.fd = -1; /* EBADF: the linked fdatasync must be canceled */
    write.buf = "x";
    write.len = 1;
    write.flags = IO_OP_LINK;
    write.done = count_done;
    sync.kind = IO_FDATASYNC;
    sync.fd = -1;
    sync.done = count_done;
    done_calls = 0;
    CHECK_EQ(io_submit(io, &write), 0);
    CHECK_EQ(io_submit(io, &sync), 0);
    CHECK_EQ(done_calls, 0);
    CHECK_EQ(io->ops->in_flight(io), 2);
    CHECK_EQ(io_backend_poll(io, true), 2);
    CHECK_EQ(done_calls, 2);
    CHECK_EQ(write.result, -EBADF);
    CHECK_EQ(sync.result, -ECANCELED);
    io_backend_destroy(io);
    check_rmdir(dir);
    free(dir);
}

static void test_lock_is_exclusive(void)
{
    char *dir = check_tmpdir("io-posix");
    struct io_backend *a, *b;
    REQUIRE(posix_backend_create(dir, false, &a) == 0);
    REQUIRE(posix_backend_create(dir, false, &b) == 0);
    CHECK_EQ(a->ops->lock(a), 0);
    CHECK_EQ(b->ops->lock(b), -EWOULDBLOCK);
    io_backend_destroy(a);
    CHECK_EQ(b->ops->lock(b), 0);
    io_backend_destroy(b);
    check_rmdir(dir);
    free(dir);
}

static void test_dsync_write(void)
{
    char *dir = check_tmpdir("io-posix");
    struct io_backend *io;
    REQUIRE(posix_backend_create(dir, false, &io) == 0);
    io_check_dsync_write(io);
    io_backend_destroy(io);
    check_rmdir(dir);
    free(dir);
}

int main(void)
{
    RUN_TEST(test_write_read_roundtrip);
    RUN_TEST(test_done_only_from_poll_and_link_cancels);
    RUN_TEST(test_dsync_write);
    RUN_TEST(test_lock_is_exclusive);
    return check_exit();
}
