/*
 * memfs, the test file system, must itself be right before crash tests can trust it: files
 * behave like files, completions come only from poll and in order, links cancel, every op is
 * recorded, and images keep exactly what the durability model says (synced content and
 * synced directory entries always; volatile changes sometimes, the last one torn on a 512-byte
 * boundary; an unsynced rename either happened or not, never half).
 */
#include "check.h"
#include "memfs_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* Seeds per randomized property: enough that each outcome of a coin shows up many times. */
#define TEST_SEEDS 200

static int done_calls;

static void count_done(struct io_op *op)
{
    (void)op;
    done_calls++;
}

static int64_t simple_op(struct io_backend *io, enum io_op_kind kind, const char *path,
                         const char *path2)
{
    struct io_op op = {0};
    op.kind = kind;
    op.fd = -1;
    strcpy(op.path, path);
    strcpy(op.path2, path2);
    return io_sync(io, &op);
}

static int64_t fallocate_op(struct io_backend *io, int fd, uint64_t offset, uint64_t len)
{
    struct io_op op = {0};
    op.kind = IO_FALLOCATE;
    op.fd = fd;
    op.offset = offset;
    op.len = len;
    return io_sync(io, &op);
}

static uint64_t size_op(struct io_backend *io, int fd)
{
    struct io_op op = {0};
    op.kind = IO_SIZE;
    op.fd = fd;
    CHECK_EQ(io_sync(io, &op), 0);
    return op.size;
}

/* The file's content in fs, or size UINT64_MAX if it does not exist. */
static uint64_t file_get(const struct memfs *fs, const char *name, const uint8_t **data)
{
    uint64_t size;
    if (!memfs_file(fs, name, data, &size))
        return UINT64_MAX;
    return size;
}

static void test_files_behave_like_files(void)
{
    struct memfs *fs = memfs_create();
    struct io_backend *io = memfs_io(fs);
    CHECK_EQ(io_sync_open(io, "a", O_RDONLY, 0), -ENOENT);
    int fd = io_sync_open(io, "a", O_RDWR | O_CREAT, 0640);
    CHECK(fd >= 0);
    CHECK_EQ(io_sync_open(io, "a", O_RDWR | O_CREAT | O_EXCL, 0640), -EEXIST);
    CHECK_EQ(io_sync_open(io, "x/y", O_RDWR | O_CREAT, 0640), -EINVAL);
    CHECK_EQ(io_sync_pwrite(io, fd, "hello", 5, 10), 5);
    char buf[32] = {0};
    CHECK_EQ(io_sync_pread(io, fd, buf, sizeof(buf), 0), 15);
    CHECK(memcmp(buf, "\0\0\0\0\0\0\0\0\0\0hello", 15) == 0);
    CHECK_EQ(io_sync_pread(io, fd, buf, 4, 100), 0);
    CHECK_EQ(size_op(io, fd), 15);
    CHECK_EQ(fallocate_op(io, fd, 0, 4096), 0);
    CHECK_EQ(size_op(io, fd), 4096);
    CHECK_EQ(fallocate_op(io, fd, 0, 16), 0); /* never shrinks */
    CHECK_EQ(size_op(io, fd), 4096);
    int ro = io_sync_open(io, "a", O_RDONLY, 0);
    CHECK(ro >= 0 && ro != fd);
    CHECK_EQ(io_sync_pwrite(io, ro, "x", 1, 0), -EBADF);
    CHECK_EQ(io_sync_simple(io, IO_CLOSE, ro), 0);
    CHECK_EQ(io_sync_simple(io, IO_CLOSE, ro), -EBADF);
    CHECK_EQ(simple_op(io, IO_RENAME, "a", "b"), 0);
    CHECK_EQ(simple_op(io, IO_RENAME, "a", "b"), -ENOENT);
    CHECK_EQ(io_sync_open(io, "a", O_RDONLY, 0), -ENOENT);
    CHECK_EQ(simple_op(io, IO_UNLINK, "b", ""), 0);
    CHECK_EQ(memfs_file_count(fs), 0);
    /* An unlinked file stays usable through its open fd. */
    CHECK_EQ(io_sync_pread(io, fd, buf, 5, 10), 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    CHECK_EQ(io_sync_simple(io, IO_CLOSE, fd), 0);
    CHECK_EQ(io_sync_simple(io, IO_FDATASYNC, 3), -EBADF);
    /* Every op above ran and was recorded, failures included. */
    CHECK_EQ(memfs_op_count(fs), 23);
    struct memfs_op_info info;
    memfs_op_get(fs, 0, &info);
    CHECK_EQ(info.kind, IO_OPEN);
    CHECK_EQ(info.result, -ENOENT);
    CHECK(strcmp(info.path, "a") == 0);
    memfs_op_get(fs, 4, &info);
    CHECK_EQ(info.kind, IO_WRITE);
    CHECK_EQ(info.offset, 10);
    CHECK_EQ(info.len, 5);
    io_backend_destroy(io);
}

static void test_completions_deferred_in_order(void)
{
    struct memfs *fs = memfs_create();
    struct io_backend *io = memfs_io(fs);
    int fd = io_sync_open(io, "f", O_RDWR | O_CREAT, 0640);
    REQUIRE(fd >= 0);
    uint64_t before = memfs_op_count(fs);
    struct io_op ops[3];
    memset(ops, 0, sizeof(ops));
    done_calls = 0;
    for (int i = 0; i < 3; i++) {
        ops[i].kind = IO_WRITE;
        ops[i].fd = fd;
        ops[i].buf = "abc";
        ops[i].len = 1;
        ops[i].offset = (uint64_t)i;
        ops[i].done = count_done;
        ops[i].buf = (char *)"abc" + i;
        CHECK_EQ(io_submit(io, &ops[i]), 0);
    }
    /* Nothing runs at submit: three ops in flight, none recorded, the file unchanged. */
    CHECK_EQ(io->ops->in_flight(io), 3);
    CHECK_EQ(memfs_op_count(fs), before);
    CHECK_EQ(done_calls, 0);
    memfs_set_poll_batch(fs, 1);
    CHECK_EQ(io_backend_poll(io, false), 1);
    CHECK_EQ(done_calls, 1);
    CHECK_EQ(ops[0].result, 1);
    CHECK_EQ(memfs_op_count(fs), before + 1);
    memfs_set_poll_batch(fs, 0);
    CHECK_EQ(io_backend_poll(io, true), 2);
    CHECK_EQ(done_calls, 3);
    const uint8_t *data;
    CHECK_EQ(file_get(fs, "f", &data), 3);
    CHECK(memcmp(data, "abc", 3) == 0);
    CHECK_EQ(io_backend_poll(io, true), 0);
    CHECK_EQ(io_sync_simple(io, IO_CLOSE, fd), 0);
    io_backend_destroy(io);
}

static void test_link_cancels_after_failure(void)
{
    struct memfs *fs = memfs_create();
    struct io_backend *io = memfs_io(fs);
    struct io_op write = {0}, sync = {0}, after = {0};
    write.kind = IO_WRITE;
    write.fd = -1;
    write.buf = "x";
    write.len = 1;
    write.flags = IO_OP_LINK;
    write.done = count_done;
    sync.kind = IO_FDATASYNC;
    sync.fd = -1;
    sync.done = count_done;
    after.kind = IO_FSYNC_DIR;
    after.done = count_done;
    done_calls = 0;
    CHECK_EQ(io_submit(io, &write), 0);
    CHECK_EQ(io_submit(io, &sync), 0);
    CHECK_EQ(io_submit(io, &after), 0); /* not linked to the chain: runs */
    CHECK_EQ(io_backend_poll(io, true), 3);
    CHECK_EQ(write.result, -EBADF);
    CHECK_EQ(sync.result, -ECANCELED);
    CHECK_EQ(after.result, 0);
    struct memfs_op_info info;
    memfs_op_get(fs, 1, &info);
    CHECK_EQ(info.result, -ECANCELED);
    io_backend_destroy(io);
}

/* Reordered: unlinked ops run in any order, a linked successor only after its predecessor
 * (and canceled when it failed). */
static void test_reorder_keeps_links(void)
{
    int a_after_d = 0;
    for (uint64_t seed = 1; seed <= 64; seed++) {
        struct memfs *fs = memfs_create();
        struct io_backend *io = memfs_io(fs);
        int fd = io_sync_open(io, "f", O_RDWR | O_CREAT, 0640);
        REQUIRE(fd >= 0);
        memfs_set_reorder(fs, seed);
        struct io_op a = {0}, b = {0}, c = {0}, d = {0};
        a.kind = IO_WRITE, a.fd = fd, a.buf = "a", a.len = 1, a.offset = 0, a.done = count_done;
        b.kind = IO_WRITE, b.fd = -1, b.buf = "b", b.len = 1, b.flags = IO_OP_LINK;
        b.done = count_done;
        c.kind = IO_FDATASYNC, c.fd = fd, c.done = count_done;
        d.kind = IO_WRITE, d.fd = fd, d.buf = "d", d.len = 1, d.offset = 1, d.done = count_done;
        CHECK_EQ(io_submit(io, &a), 0);
        CHECK_EQ(io_submit(io, &b), 0);
        CHECK_EQ(io_submit(io, &c), 0);
        CHECK_EQ(io_submit(io, &d), 0);
        CHECK_EQ(io_backend_poll(io, true), 4);
        CHECK_EQ(a.result, 1);
        CHECK_EQ(b.result, -EBADF);
        CHECK_EQ(c.result, -ECANCELED);
        CHECK_EQ(d.result, 1);
        uint64_t at[4] = {0}; /* op log index of a, b, c, d */
        for (uint64_t i = 1; i < memfs_op_count(fs); i++) {
            struct memfs_op_info info;
            memfs_op_get(fs, i, &info);
            if (info.kind == IO_FDATASYNC)
                at[2] = i;
            else if (info.result == -EBADF)
                at[1] = i;
            else if (info.offset == 0)
                at[0] = i;
            else
                at[3] = i;
        }
        CHECK(at[1] < at[2]);
        a_after_d += at[0] > at[3];
        CHECK_EQ(io_sync_simple(io, IO_CLOSE, fd), 0);
        io_backend_destroy(io);
    }
    CHECK(a_after_d > 0);  /* the order did change */
    CHECK(a_after_d < 64); /* and not always the same way */
}

/* Write "durable" data, sync it and its directory entry, then leave later changes volatile. */
static int make_synced_file(struct io_backend *io, const char *name, const char *text)
{
    int fd = io_sync_open(io, name, O_RDWR | O_CREAT, 0640);
    REQUIRE(fd >= 0);
    CHECK_EQ(io_sync_pwrite(io, fd, text, strlen(text), 0), (int64_t)strlen(text));
    CHECK_EQ(io_sync_simple(io, IO_FDATASYNC, fd), 0);
    CHECK_EQ(io_sync_simple(io, IO_FSYNC_DIR, -1), 0);
    return fd;
}

static void test_synced_content_survives_and_volatile_may_not(void)
{
    struct memfs *fs = memfs_create();
    struct io_backend *io = memfs_io(fs);
    int fd = make_synced_file(io, "f", "durable");
    uint64_t synced_at = memfs_op_count(fs);
    CHECK_EQ(io_sync_pwrite(io, fd, "VOLATILE", 8, 7), 8);
    uint64_t end = memfs_op_count(fs);
    const uint8_t *data;

    struct memfs *durable = memfs_image(fs, end, MEMFS_IMAGE_DURABLE, 0);
    CHECK_EQ(file_get(durable, "f", &data), 7);
    CHECK(memcmp(data, "durable", 7) == 0);
    memfs_destroy(durable);
    struct memfs *all = memfs_image(fs, end, MEMFS_IMAGE_ALL, 0);
    CHECK_EQ(file_get(all, "f", &data), 15);
    CHECK(memcmp(data, "durableVOLATILE", 15) == 0);
    memfs_destroy(all);

    int kept = 0, lost = 0;
    for (uint64_t seed = 0; seed < TEST_SEEDS; seed++) {
        struct memfs *image = memfs_crash_image(fs, end, seed);
        uint64_t size = file_get(image, "f", &data);
        CHECK(size == 7 || size == 15); /* 8 bytes inside one sector: never torn */
        CHECK(memcmp(data, "durable", 7) == 0);
        if (size == 15)
            CHECK(memcmp(data + 7, "VOLATILE", 8) == 0);
        kept += size == 15;
        lost += size == 7;
        memfs_destroy(image);
    }
    CHECK(kept > 0);
    CHECK(lost > 0);
    /* Before the unsynced write ran, every image is the synced state. */
    for (uint64_t seed = 0; seed < 10; seed++) {
        struct memfs *image = memfs_crash_image(fs, synced_at, seed);
        CHECK_EQ(file_get(image, "f", &data), 7);
        memfs_destroy(image);
    }
    CHECK_EQ(io_sync_simple(io, IO_CLOSE, fd), 0);
    io_backend_destroy(io);
}

/* A 2000-byte volatile write at offset 100 is lost, cut at 512, 1024, 1536 or 2048, or kept. */
static void test_torn_write_cut_at_sector_boundary(void)
{
    struct memfs *fs = memfs_create();
    struct io_backend *io = memfs_io(fs);
    int fd = make_synced_file(io, "f", "x");
    uint8_t block[2000];
    for (size_t i = 0; i < sizeof(block); i++)
        block[i] = (uint8_t)(i * 7 + 1);
    CHECK_EQ(io_sync_pwrite(io, fd, block, sizeof(block), 100), (int64_t)sizeof(block));
    uint64_t end = memfs_op_count(fs);
    int seen[6] = {0}; /* lost, cut at 512, 1024, 1536, 2048, whole */
    for (uint64_t seed = 0; seed < TEST_SEEDS; seed++) {
        struct memfs *image = memfs_crash_image(fs, end, seed);
        const uint8_t *data;
        uint64_t size = file_get(image, "f", &data);
        CHECK(data[0] == 'x');
        int bucket = size == 1 ? 0 : size == 2100 ? 5 : (int)(size / 512);
        CHECK(size == 1 || size == 2100 || size % 512 == 0);
        CHECK(bucket >= 0 && bucket <= 5);
        if (size > 1) {
            CHECK(memcmp(data + 100, block, size - 100) == 0);
            for (uint64_t i = 1; i < 100; i++)
                CHECK(data[i] == 0);
        }
        if (bucket >= 0 && bucket <= 5)
            seen[bucket]++;
        memfs_destroy(image);
    }
    for (int i = 0; i < 6; i++)
        CHECK(seen[i] > 0);
    CHECK_EQ(io_sync_simple(io, IO_CLOSE, fd), 0);
    io_backend_destroy(io);
}

static void test_directory_changes_need_dir_fsync(void)
{
    struct memfs *fs = memfs_create();
    struct io_backend *io = memfs_io(fs);
    int fd = make_synced_file(io, "old", "payload");
    CHECK_EQ(io_sync_simple(io, IO_CLOSE, fd), 0);
    /* A new file synced but whose directory entry is not: may vanish. */
    int fresh = io_sync_open(io, "fresh", O_RDWR | O_CREAT, 0640);
    CHECK_EQ(io_sync_pwrite(io, fresh, "new", 3, 0), 3);
    CHECK_EQ(io_sync_simple(io, IO_FDATASYNC, fresh), 0);
    CHECK_EQ(simple_op(io, IO_RENAME, "old", "renamed"), 0);
    uint64_t end = memfs_op_count(fs);
    const uint8_t *data;

    struct memfs *durable = memfs_image(fs, end, MEMFS_IMAGE_DURABLE, 0);
    CHECK_EQ(file_get(durable, "fresh", &data), UINT64_MAX);
    CHECK_EQ(file_get(durable, "renamed", &data), UINT64_MAX);
    CHECK_EQ(file_get(durable, "old", &data), 7);
    memfs_destroy(durable);

    int outcomes[3] = {0}; /* nothing kept, fresh only, fresh and the rename (in order) */
    for (uint64_t seed = 0; seed < TEST_SEEDS; seed++) {
        struct memfs *image = memfs_crash_image(fs, end, seed);
        bool has_fresh = file_get(image, "fresh", &data) != UINT64_MAX;
        if (has_fresh)
            CHECK(memcmp(data, "new", 3) == 0); /* its content was synced */
        bool has_old = file_get(image, "old", &data) != UINT64_MAX;
        bool has_renamed = file_get(image, "renamed", &data) != UINT64_MAX;
        CHECK(has_old != has_renamed); /* a rename happened or not, never half */
        CHECK(memcmp(data, "payload", 7) == 0);
        CHECK(!has_renamed || has_fresh); /* changes survive as a prefix, in order */
        outcomes[has_renamed ? 2 : has_fresh ? 1 : 0]++;
        memfs_destroy(image);
    }
    for (int i = 0; i < 3; i++)
        CHECK(outcomes[i] > 0);
    /* Unordered: the rename may survive without the earlier creation, never half done. */
    int rename_alone = 0;
    for (uint64_t seed = 0; seed < TEST_SEEDS; seed++) {
        struct memfs *image = memfs_image(fs, end, MEMFS_IMAGE_CRASH_UNORDERED, seed);
        bool has_fresh = file_get(image, "fresh", &data) != UINT64_MAX;
        bool has_old = file_get(image, "old", &data) != UINT64_MAX;
        bool has_renamed = file_get(image, "renamed", &data) != UINT64_MAX;
        CHECK(has_old != has_renamed);
        rename_alone += has_renamed && !has_fresh;
        memfs_destroy(image);
    }
    CHECK(rename_alone > 0);

    CHECK_EQ(io_sync_simple(io, IO_FSYNC_DIR, -1), 0);
    end = memfs_op_count(fs);
    for (uint64_t seed = 0; seed < 10; seed++) {
        struct memfs *image = memfs_crash_image(fs, end, seed);
        CHECK_EQ(file_get(image, "fresh", &data), 3);
        CHECK_EQ(file_get(image, "renamed", &data), 7);
        CHECK_EQ(file_get(image, "old", &data), UINT64_MAX);
        memfs_destroy(image);
    }
    CHECK_EQ(io_sync_simple(io, IO_CLOSE, fresh), 0);
    io_backend_destroy(io);
}

static void test_truncate_and_unlink_are_volatile_until_synced(void)
{
    struct memfs *fs = memfs_create();
    struct io_backend *io = memfs_io(fs);
    int fd = make_synced_file(io, "t", "keep me");
    CHECK_EQ(io_sync_simple(io, IO_CLOSE, fd), 0);
    make_synced_file(io, "u", "unlink me");
    fd = io_sync_open(io, "t", O_RDWR | O_TRUNC, 0);
    CHECK(fd >= 0);
    CHECK_EQ(simple_op(io, IO_UNLINK, "u", ""), 0);
    const uint8_t *data;
    CHECK_EQ(file_get(fs, "t", &data), 0);
    struct memfs *durable = memfs_image(fs, memfs_op_count(fs), MEMFS_IMAGE_DURABLE, 0);
    CHECK_EQ(file_get(durable, "t", &data), 7);
    CHECK_EQ(file_get(durable, "u", &data), 9);
    memfs_destroy(durable);
    CHECK_EQ(io_sync_simple(io, IO_FDATASYNC, fd), 0);
    CHECK_EQ(io_sync_simple(io, IO_FSYNC_DIR, -1), 0);
    durable = memfs_image(fs, memfs_op_count(fs), MEMFS_IMAGE_DURABLE, 0);
    CHECK_EQ(file_get(durable, "t", &data), 0);
    CHECK_EQ(file_get(durable, "u", &data), UINT64_MAX);
    memfs_destroy(durable);
    CHECK_EQ(io_sync_simple(io, IO_CLOSE, fd), 0);
    /* make_synced_file's fd for "u" is still open: a harmless leak of a memfs fd */
    io_backend_destroy(io);
}

/* Replaying the whole op log with every change kept gives back the live state, at every k
 * the ALL image is a superset in time of the DURABLE one, and images are deterministic. */
static void test_images_replay_the_log(void)
{
    struct memfs *fs = memfs_create();
    struct io_backend *io = memfs_io(fs);
    int a = make_synced_file(io, "a", "first");
    int b = io_sync_open(io, "b", O_RDWR | O_CREAT, 0640);
    for (uint64_t i = 0; i < 20; i++) {
        char text[64];
        int n = snprintf(text, sizeof(text), "record %" PRIu64 ";", i);
        CHECK_EQ(io_sync_pwrite(io, i % 2 ? a : b, text, (uint64_t)n, i * 700), n);
        if (i % 5 == 4)
            CHECK_EQ(io_sync_simple(io, IO_FDATASYNC, i % 2 ? a : b), 0);
    }
    CHECK_EQ(fallocate_op(io, b, 0, 65536), 0);
    CHECK_EQ(simple_op(io, IO_RENAME, "b", "c"), 0);
    uint64_t end = memfs_op_count(fs);
    struct memfs *all = memfs_image(fs, end, MEMFS_IMAGE_ALL, 0);
    CHECK_EQ(memfs_file_count(all), memfs_file_count(fs));
    for (uint32_t i = 0; i < memfs_file_count(fs); i++) {
        const char *name = memfs_file_name(fs, i);
        const uint8_t *live, *replayed;
        uint64_t size = file_get(fs, name, &live);
        CHECK_EQ(file_get(all, name, &replayed), size);
        if (size != UINT64_MAX)
            CHECK(memcmp(live, replayed, size) == 0);
    }
    memfs_destroy(all);
    for (uint64_t k = 0; k <= end; k++) {
        struct memfs *x = memfs_crash_image(fs, k, 42);
        struct memfs *y = memfs_crash_image(fs, k, 42);
        CHECK_EQ(memfs_file_count(x), memfs_file_count(y));
        for (uint32_t i = 0; i < memfs_file_count(x); i++) {
            const uint8_t *dx, *dy;
            uint64_t size = file_get(x, memfs_file_name(x, i), &dx);
            CHECK_EQ(file_get(y, memfs_file_name(x, i), &dy), size);
            if (size != UINT64_MAX)
                CHECK(memcmp(dx, dy, size) == 0);
        }
        memfs_destroy(x);
        memfs_destroy(y);
    }
    CHECK_EQ(io_sync_simple(io, IO_CLOSE, a), 0);
    CHECK_EQ(io_sync_simple(io, IO_CLOSE, b), 0);
    io_backend_destroy(io);
}

/* An image is a fresh memfs: usable through the backend, with an empty op log. */
static void test_image_is_usable_and_materializes(void)
{
    struct memfs *fs = memfs_create();
    memfs_put_file(fs, "planted", "seed", 4);
    struct io_backend *io = memfs_io(fs);
    int fd = make_synced_file(io, "f", "content");
    CHECK_EQ(io_sync_simple(io, IO_CLOSE, fd), 0);
    struct memfs *image = memfs_crash_image(fs, memfs_op_count(fs), 7);
    CHECK_EQ(memfs_op_count(image), 0);
    CHECK_EQ(memfs_file_count(image), 2);
    struct io_backend *image_io = memfs_io(image);
    fd = io_sync_open(image_io, "planted", O_RDONLY, 0);
    char buf[8] = {0};
    CHECK_EQ(io_sync_pread(image_io, fd, buf, sizeof(buf), 0), 4);
    CHECK(memcmp(buf, "seed", 4) == 0);
    CHECK_EQ(io_sync_simple(image_io, IO_CLOSE, fd), 0);

    char *dir = check_tmpdir("memfs");
    CHECK_EQ(memfs_materialize(image, dir), 0);
    char path[4096];
    snprintf(path, sizeof(path), "%s/f", dir);
    FILE *f = fopen(path, "rb");
    REQUIRE(f != NULL);
    CHECK_EQ(fread(buf, 1, sizeof(buf), f), 7);
    CHECK(memcmp(buf, "content", 7) == 0);
    fclose(f);
    check_rmdir(dir);
    free(dir);
    io_backend_destroy(image_io);
    io_backend_destroy(io);
}

int main(void)
{
    RUN_TEST(test_files_behave_like_files);
    RUN_TEST(test_completions_deferred_in_order);
    RUN_TEST(test_link_cancels_after_failure);
    RUN_TEST(test_reorder_keeps_links);
    RUN_TEST(test_synced_content_survives_and_volatile_may_not);
    RUN_TEST(test_torn_write_cut_at_sector_boundary);
    RUN_TEST(test_directory_changes_need_dir_fsync);
    RUN_TEST(test_truncate_and_unlink_are_volatile_until_synced);
    RUN_TEST(test_images_replay_the_log);
    RUN_TEST(test_image_is_usable_and_materializes);
    return check_exit();
}
