/* Checks every I/O backend must pass (io_checks.h). */
#include "io_checks.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "check.h"

void io_check_dsync_write(struct io_backend *io)
{
    int fd = io_sync_open(io, "d", O_RDWR | O_CREAT, 0600);
    REQUIRE(fd >= 0);
    char data[8192];
    memset(data, 'd', sizeof(data));
    struct io_op op = {.kind = IO_WRITE, .fd = fd, .buf = data, .len = sizeof(data),
                       .offset = 4096, .flags = IO_OP_DSYNC};
    CHECK_EQ(io_sync(io, &op), (int64_t)sizeof(data));
    char back[8192] = {0};
    struct io_op rd = {.kind = IO_READ, .fd = fd, .buf = back, .len = sizeof(back),
                       .offset = 4096};
    CHECK_EQ(io_sync(io, &rd), (int64_t)sizeof(back));
    CHECK(memcmp(back, data, sizeof(data)) == 0);
    struct io_op bad = {.kind = IO_WRITE, .fd = -1, .buf = data, .len = 1,
                        .flags = IO_OP_DSYNC};
    CHECK_EQ(io_sync(io, &bad), -EBADF);
    CHECK_EQ(io_sync_simple(io, IO_CLOSE, fd), 0);
    struct io_op un = {.kind = IO_UNLINK};
    strcpy(un.path, "d");
    CHECK_EQ(io_sync(io, &un), 0);
}
