/*
 * Runs a fuzz target (linked in) over every regular file of one or more corpus directories
 * (a target's seeds and its regressions/), then over a bounded number of mutations of each
 * (byte flips, truncations, appended junk), with a fixed seed so a failure reproduces. Each
 * input is copied into an exact-size heap block so ASan catches any read past its end.
 * Files whose name starts with '.' are skipped (a regressions/.keep holds an empty directory).
 *
 * Usage: fuzz_replay [-m MUTATIONS_PER_FILE] CORPUS_DIR...   (default 2000 mutations)
 * Exit 0 when every input ran and at least one file was found.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Corpus entries are small: frames, records, a log of two 32 KiB segments. */
#define REPLAY_FILE_SIZE_MAX (1u << 20)

static uint64_t rng = 0x2545F4914F6CDD1Du;

static uint64_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void run_exact(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size > 0 ? size : 1);
    if (copy == NULL)
        abort();
    if (size > 0)
        memcpy(copy, data, size);
    LLVMFuzzerTestOneInput(copy, size);
    free(copy);
}

static void mutate_and_run(const uint8_t *data, size_t size, long mutations)
{
    uint8_t *m = malloc(size + 64);
    if (m == NULL)
        abort();
    for (long i = 0; i < mutations; i++) {
        memcpy(m, data, size);
        size_t len = size;
        int edits = 1 + (int)(next_random() % 4);
        for (int e = 0; e < edits && len > 0; e++) {
            uint64_t r = next_random();
            switch (r % 3) {
            case 0:
                m[r / 3 % len] = (uint8_t)(r >> 40);
                break; /* flip a byte */
            case 1:
                len = (size_t)(r / 3 % (len + 1));
                break; /* truncate */
            default:   /* append junk */
                for (int k = 0; k < 8; k++)
                    m[len++] = (uint8_t)next_random();
                e = edits;
                break;
            }
        }
        run_exact(m, len);
    }
    free(m);
}

static int replay_file(const char *path, long mutations)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    static uint8_t buf[REPLAY_FILE_SIZE_MAX];
    size_t size = fread(buf, 1, sizeof buf, f);
    fclose(f);
    run_exact(buf, size);
    mutate_and_run(buf, size, mutations);
    return 0;
}

/* Replay every regular file of dir; returns how many, or -1 when dir or a file cannot be read. */
static int replay_dir(const char *dir, long mutations)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        perror(dir);
        return -1;
    }
    int files = 0;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue; /* a subdirectory (regressions/) is named on the command line itself */
        if (replay_file(path, mutations) != 0) {
            perror(path);
            closedir(d);
            return -1;
        }
        files++;
    }
    closedir(d);
    return files;
}

int main(int argc, char **argv)
{
    long mutations = 2000;
    int first = 1;
    if (argc > 2 && strcmp(argv[1], "-m") == 0) {
        mutations = strtol(argv[2], NULL, 10);
        first = 3;
    }
    if (first >= argc || mutations < 0) {
        fprintf(stderr, "usage: %s [-m MUTATIONS_PER_FILE] CORPUS_DIR...\n", argv[0]);
        return 2;
    }
    int files = 0;
    for (int i = first; i < argc; i++) {
        int n = replay_dir(argv[i], mutations);
        if (n < 0)
            return 1;
        fprintf(stderr, "%s: %d files\n", argv[i], n);
        files += n;
    }
    fprintf(stderr, "replayed %d corpus files, %ld mutations each\n", files, mutations);
    return files > 0 ? 0 : 1;
}
