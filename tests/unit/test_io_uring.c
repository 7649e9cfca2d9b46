/*
 * The io_uring backend keeps the same contract as the POSIX one (test_io_posix.c): done runs
 * only from poll, a failed linked op cancels its successor, the lock is exclusive. And the
 * things only a shared ring has: CQEs that are not the backend's (the server's network ops)
 * go to their own completion, user_data 0 is ignored, a full SQ is drained rather than
 * refused, and a linked pair is never split by that drain. Skips (77) when this machine
 * cannot run io_uring at all, printing the probe's reason.
 */
#include "check.h"
#include "io_checks.h"
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>

/* Small on purpose: the SQ fills after a few ops, which exercises the drain path. */
#define TEST_RING_ENTRIES 4

static int done_calls;

static void count_done(struct io_op *op)
{
    (void)op;
    done_calls++;
}

static struct io_backend *test_backend(struct io_uring *ring, char **dir)
{
    REQUIRE(io_uring_queue_init(TEST_RING_ENTRIES, ring, 0) == 0);
    *dir = check_tmpdir("io-uring");
    struct io_backend *io;
    REQUIRE(io_uring_backend_create(ring, *dir, false, &io) == 0);
    return io;
}

static void test_teardown(struct io_uring *ring, struct io_backend *io, char *dir)
{
    CHECK_EQ(io->ops->in_flight(io), 0);
    io_backend_destroy(io);
    io_uring_queue_exit(ring);
    check_rmdir(dir);
    free(dir);
}

static void test_write_read_roundtrip(void)
{
    struct io_uring ring;
    char *dir;
    struct io_backend *io = test_backend(&ring, &dir);
    int fd = io_sync_open(io, "f", O_RDWR | O_CREAT, 0640);
    REQUIRE(fd >= 0);
    CHECK_EQ(io_sync_pwrite(io, fd, "hello", 5, 10), 5);
    char buf[16] = {0};
    CHECK_EQ(io_sync_pread(io, fd, buf, 5, 10), 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    CHECK_EQ(io_sync_simple(io, IO_FDATASYNC, fd), 0);
    CHECK_EQ(io_sync_simple(io, IO_FSYNC, fd), 0);
    CHECK_EQ(io_sync_simple(io, IO_FSYNC_DIR, -1), 0);

    struct io_op op = {0};
    op.kind = IO_SIZE;
    op.fd = fd;
    CHECK_EQ(io_sync(io, &op), 0);
    CHECK_EQ(op.size, 15);
    memset(&op, 0, sizeof(op));
    op.kind = IO_FALLOCATE;
    op.fd = fd;
    op.offset = 0;
    op.len = 8192;
    CHECK_EQ(io_sync(io, &op), 0);
    memset(&op, 0, sizeof(op));
    op.kind = IO_SIZE;
    op.fd = fd;
    CHECK_EQ(io_sync(io, &op), 0);
    CHECK_EQ(op.size, 8192);
    CHECK_EQ(io_sync_simple(io, IO_CLOSE, fd), 0);

    memset(&op, 0, sizeof(op));
    op.kind = IO_RENAME;
    strcpy(op.path, "f");
    strcpy(op.path2, "g");
    CHECK_EQ(io_sync(io, &op), 0);
    CHECK_EQ(io_sync_open(io, "f", O_RDONLY, 0), -ENOENT);
    fd = io_sync_open(io, "g", O_RDONLY, 0);
    CHECK(fd >= 0);
    CHECK_EQ(io_sync_pread(io, fd, buf, 5, 10), 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    CHECK_EQ(io_sync_simple(io, IO_CLOSE, fd), 0);
    memset(&op, 0, sizeof(op));
    op.kind = IO_UNLINK;
    strcpy(op.path, "g");
    CHECK_EQ(io_sync(io, &op), 0);
    CHECK_EQ(io_sync_open(io, "g", O_RDONLY, 0), -ENOENT);
    test_teardown(&ring, io, dir);
}

static void test_done_only_from_poll_and_link_cancels(void)
{
    struct io_uring ring;
    char *dir;
    struct io_backend *io = test_backend(&ring, &dir);
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
    int delivered = 0;
    for (int i = 0; i < 10 && done_calls < 2; i++) {
        int rc = io_backend_poll(io, true);
        CHECK(rc >= 0);
        delivered += rc;
    }
    CHECK_EQ(delivered, 2);
    CHECK_EQ(done_calls, 2);
    CHECK_EQ(write.result, -EBADF);
    CHECK_EQ(sync.result, -ECANCELED);
    CHECK_EQ(io->ops->in_flight(io), 0);
    test_teardown(&ring, io, dir);
}

/* More ops than the SQ holds, each linked write+fdatasync pair kept whole across the drains
 * (a split chain would let a fdatasync run after a failed write instead of being canceled). */
static void test_full_sq_drains_and_keeps_links(void)
{
    struct io_uring ring;
    char *dir;
    struct io_backend *io = test_backend(&ring, &dir);
    int fd = io_sync_open(io, "f", O_RDWR | O_CREAT, 0640);
    REQUIRE(fd >= 0);
    enum { PAIRS = 7 };
    struct io_op writes[PAIRS], syncs[PAIRS];
    char data[PAIRS];
    memset(writes, 0, sizeof(writes));
    memset(syncs, 0, sizeof(syncs));
    done_calls = 0;
    /* One lone op first, so that the pairs straddle the SQ's end. */
    struct io_op lone = {0};
    lone.kind = IO_FSYNC_DIR;
    lone.done = count_done;
    CHECK_EQ(io_submit(io, &lone), 0);
    for (int i = 0; i < PAIRS; i++) {
        data[i] = (char)('a' + i);
        writes[i].kind = IO_WRITE;
        writes[i].fd = i % 2 == 0 ? fd : -1; /* odd pairs fail: their sync is canceled */
        writes[i].buf = &data[i];
        writes[i].len = 1;
        writes[i].offset = (uint64_t)i;
        writes[i].flags = IO_OP_LINK;
        writes[i].done = count_done;
        syncs[i].kind = IO_FDATASYNC;
        syncs[i].fd = fd;
        syncs[i].done = count_done;
        CHECK_EQ(io_submit(io, &writes[i]), 0);
        CHECK_EQ(io_submit(io, &syncs[i]), 0);
    }
    CHECK_EQ(done_calls, 0);
    CHECK_EQ(io->ops->in_flight(io), 2 * PAIRS + 1);
    for (int i = 0; i < 100 && io->ops->in_flight(io) > 0; i++)
        CHECK(io_backend_poll(io, true) >= 0);
    CHECK_EQ(done_calls, 2 * PAIRS + 1);
    CHECK_EQ(lone.result, 0);
    for (int i = 0; i < PAIRS; i++) {
        CHECK_EQ(writes[i].result, i % 2 == 0 ? 1 : -EBADF);
        CHECK_EQ(syncs[i].result, i % 2 == 0 ? 0 : -ECANCELED);
    }
    char buf[PAIRS] = {0};
    CHECK_EQ(io_sync_pread(io, fd, buf, PAIRS, 0), PAIRS);
    CHECK_EQ(buf[0], 'a');
    CHECK_EQ(buf[1], 0); /* a hole: the odd writes failed */
    CHECK_EQ(buf[4], 'e');
    CHECK_EQ(buf[6], 'g');
    CHECK_EQ(io_sync_simple(io, IO_CLOSE, fd), 0);
    test_teardown(&ring, io, dir);
}

struct foreign {
    struct io_completion completion;
    int calls;
    int result;
};

static void foreign_complete(struct io_completion *completion, const struct io_uring_cqe *cqe)
{
    struct foreign *f = (struct foreign *)completion;
    f->calls++;
    f->result = cqe->res;
}

/* The server's ops share the ring: their CQEs reach their own completion, not the backend's,
 * and do not disturb its in_flight count; user_data 0 is dropped. */
static void test_foreign_cqes_are_routed_not_counted(void)
{
    struct io_uring ring;
    char *dir;
    struct io_backend *io = test_backend(&ring, &dir);
    struct foreign f = {.completion.complete = foreign_complete, .calls = 0, .result = -1};
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    REQUIRE(sqe != NULL);
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data(sqe, &f.completion);
    sqe = io_uring_get_sqe(&ring);
    REQUIRE(sqe != NULL);
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data(sqe, NULL);
    struct io_op sync = {0};
    sync.kind = IO_FSYNC_DIR;
    sync.done = count_done;
    done_calls = 0;
    CHECK_EQ(io_submit(io, &sync), 0);
    CHECK_EQ(io->ops->in_flight(io), 1);
    int delivered = 0;
    for (int i = 0; i < 10 && (done_calls < 1 || f.calls < 1); i++)
        delivered += io_backend_poll(io, true);
    CHECK_EQ(done_calls, 1);
    CHECK_EQ(sync.result, 0);
    CHECK_EQ(f.calls, 1);
    CHECK_EQ(f.result, 0);
    CHECK_EQ(delivered, 3);
    CHECK_EQ(io->ops->in_flight(io), 0);
    /* Nothing in flight: a waiting poll returns at once instead of blocking forever. */
    CHECK_EQ(io_backend_poll(io, true), 0);
    test_teardown(&ring, io, dir);
}

/* The server reaps the ring itself and dispatches every CQE; the backend's ops complete. */
static void test_server_dispatch_completes_backend_ops(void)
{
    struct io_uring ring;
    char *dir;
    struct io_backend *io = test_backend(&ring, &dir);
    struct io_op sync = {0};
    sync.kind = IO_FSYNC_DIR;
    sync.done = count_done;
    done_calls = 0;
    CHECK_EQ(io_submit(io, &sync), 0);
    REQUIRE(io_uring_submit_and_wait(&ring, 1) >= 0);
    struct io_uring_cqe *cqe;
    REQUIRE(io_uring_peek_cqe(&ring, &cqe) == 0);
    io_uring_dispatch(cqe);
    io_uring_cqe_seen(&ring, cqe);
    CHECK_EQ(done_calls, 1);
    CHECK_EQ(io->ops->in_flight(io), 0);
    test_teardown(&ring, io, dir);
}

static void test_lock_is_exclusive(void)
{
    struct io_uring ring;
    char *dir;
    struct io_backend *a = test_backend(&ring, &dir);
    struct io_backend *b;
    REQUIRE(io_uring_backend_create(&ring, dir, false, &b) == 0);
    CHECK_EQ(a->ops->lock(a), 0);
    CHECK_EQ(b->ops->lock(b), -EWOULDBLOCK);
    io_backend_destroy(b);
    test_teardown(&ring, a, dir);
}

static void test_missing_dir_is_an_error(void)
{
    struct io_uring ring;
    REQUIRE(io_uring_queue_init(TEST_RING_ENTRIES, &ring, 0) == 0);
    struct io_backend *io = NULL;
    CHECK_EQ(io_uring_backend_create(&ring, "/nonexistent/spool-dir", false, &io), -ENOENT);
    CHECK(io == NULL);
    io_uring_queue_exit(&ring);
}

static void test_dsync_write(void)
{
    struct io_uring ring;
    char *dir;
    struct io_backend *io = test_backend(&ring, &dir);
    io_check_dsync_write(io);
    test_teardown(&ring, io, dir);
}

int main(void)
{
    char msg[256];
    int rc = io_uring_probe_available(msg, sizeof(msg));
    if (rc != 0) {
        CHECK(msg[0] != '\0');
        fprintf(stderr, "skip: %s\n", msg);
        return 77;
    }
    CHECK(msg[0] == '\0');
    CHECK_EQ(io_uring_probe_available(NULL, 0), 0); /* no message buffer is fine */
    RUN_TEST(test_write_read_roundtrip);
    RUN_TEST(test_done_only_from_poll_and_link_cancels);
    RUN_TEST(test_dsync_write);
    RUN_TEST(test_full_sq_drains_and_keeps_links);
    RUN_TEST(test_foreign_cqes_are_routed_not_counted);
    RUN_TEST(test_server_dispatch_completes_backend_ops);
    RUN_TEST(test_lock_is_exclusive);
    RUN_TEST(test_missing_dir_is_an_error);
    return check_exit();
}
