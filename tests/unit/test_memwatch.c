/* The memory bound: the cgroup limit's text, the bound it gives, RSS readings, hysteresis. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "memwatch.h"

static void test_parse_limit(void)
{
    uint64_t v = 1;
    CHECK_EQ(memwatch_parse_limit("max\n", &v), 0);
    CHECK_EQ(v, 0);
    CHECK_EQ(memwatch_parse_limit("1073741824\n", &v), 0);
    CHECK_EQ(v, 1073741824ull);
    CHECK_EQ(memwatch_parse_limit("4096", &v), 0);
    CHECK_EQ(v, 4096);
    CHECK_EQ(memwatch_parse_limit("", &v), -EINVAL);
    CHECK_EQ(memwatch_parse_limit("-5", &v), -EINVAL);
    CHECK_EQ(memwatch_parse_limit("12k", &v), -EINVAL);
    CHECK_EQ(memwatch_parse_limit("0", &v), -EINVAL);
    CHECK_EQ(memwatch_parse_limit("99999999999999999999999", &v), -EINVAL);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    fputs(text, f);
    fclose(f);
}

/* --max-memory wins; else the cgroup's limit less an eighth; "max" or no file: no bound. */
static void test_bound_sources(void)
{
    char dir[] = "/tmp/memwatch-XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    char path[64];
    snprintf(path, sizeof(path), "%s/memory.max", dir);
    struct memwatch w;
    write_file(path, "8388608\n");
    memwatch_init(&w, 0, path);
    CHECK_EQ(w.bound_bytes, 8388608ull - 8388608ull / 8);
    CHECK(w.bound_from_cgroup);
    memwatch_close(&w);
    memwatch_init(&w, 1000000, path);
    CHECK_EQ(w.bound_bytes, 1000000);
    CHECK(!w.bound_from_cgroup);
    memwatch_close(&w);
    write_file(path, "max\n");
    memwatch_init(&w, 0, path);
    CHECK_EQ(w.bound_bytes, 0);
    CHECK(!memwatch_sample(&w, 0)); /* no bound: nothing is read */
    memwatch_close(&w);
    unlink(path);
    memwatch_init(&w, 0, path);
    CHECK_EQ(w.bound_bytes, 0);
    memwatch_close(&w);
    rmdir(dir);
}

/* Readings come at most every MEMWATCH_SAMPLE_NS and are this process's RSS. */
static void test_sample(void)
{
    struct memwatch w;
    memwatch_init(&w, 1ull << 40, NULL);
    REQUIRE(memwatch_sample(&w, 1000));
    CHECK(w.rss_bytes > 0 && w.rss_bytes < (1ull << 34));
    CHECK(!memwatch_sample(&w, 1000 + MEMWATCH_SAMPLE_NS - 1));
    CHECK(memwatch_sample(&w, 1000 + MEMWATCH_SAMPLE_NS));
    memwatch_close(&w);
}

/* Low above the bound; stays low until below the bound less 1/16. */
static void test_hysteresis(void)
{
    struct memwatch w;
    memwatch_init(&w, 1600, NULL);
    CHECK(!memwatch_update(&w, 1600));
    CHECK(memwatch_update(&w, 1601));
    CHECK(memwatch_update(&w, 1550));
    CHECK(memwatch_update(&w, 1500));
    CHECK(!memwatch_update(&w, 1499));
    CHECK(!memwatch_update(&w, 1599));
    memwatch_close(&w);
    memwatch_init(&w, 0, NULL);
    CHECK(!memwatch_update(&w, UINT64_MAX));
    memwatch_close(&w);
}

/* Tight above the bound less a quarter, and whenever low. */
static void test_tight(void)
{
    struct memwatch w;
    memwatch_init(&w, 1600, NULL);
    memwatch_update(&w, 1200);
    CHECK(!w.tight && !w.low);
    memwatch_update(&w, 1201);
    CHECK(w.tight && !w.low);
    memwatch_update(&w, 1700);
    CHECK(w.tight && w.low);
    memwatch_update(&w, 1500); /* still low (above the resume level): tight too */
    CHECK(w.tight && w.low);
    memwatch_update(&w, 1000);
    CHECK(!w.tight && !w.low);
    memwatch_close(&w);
    memwatch_init(&w, 0, NULL);
    memwatch_update(&w, UINT64_MAX);
    CHECK(!w.tight);
    memwatch_close(&w);
}

int main(void)
{
    RUN_TEST(test_parse_limit);
    RUN_TEST(test_bound_sources);
    RUN_TEST(test_sample);
    RUN_TEST(test_hysteresis);
    RUN_TEST(test_tight);
    return check_exit();
}
