/*
 * spool-log: entry point, command table and the small helpers the commands share (number
 * parsing, JSON strings, base64). See spool_log.h for how a directory is read.
 *
 * Every command reads DIR through storage's read-only API and never writes into it; only
 * salvage writes, and only into the new directory given with --out.
 */
#include "spool_log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char usage_text[] =
    "usage: spool-log COMMAND DIR [options]\n"
    "\n"
    "  verify DIR                      check every segment, batch, chain link, seq and the\n"
    "                                  checkpoint; exit 0 clean, 1 torn tail, 2 corruption\n"
    "  dump DIR [--from SEQ] [--to SEQ] [--queue Q] [--type T] [--bodies]\n"
    "                                  one JSON object per record\n"
    "  explain DIR JOB                 the history of one job and its state at the end\n"
    "  why-retained DIR [SEGMENT]      why each segment is still on disk\n"
    "  stats DIR                       per queue and per segment counts and bytes\n"
    "  replay DIR --to HOST:PORT [--queue Q] [--from SEQ] [--to-seq SEQ] [--all] [--dead]\n"
    "                                  re-put live jobs (idempotent: keys from job ids)\n"
    "  salvage DIR --out NEWDIR [--mode point-in-time|skip-corrupt]\n"
    "                                  write a new valid data directory and a loss report\n"
    "\n"
    "DIR is opened read-only and without the lock, so a running server's directory may be\n"
    "inspected (what it writes meanwhile may show up as a torn tail; damage is reported only\n"
    "when a second scan sees it in the same place). Memory: the log's metadata and the bodies\n"
    "of the live jobs. Exit codes and every output line: docs/SPOOL-LOG.md.\n";

int u64_compare(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

bool ids_contain(const uint64_t *ids, size_t count, uint64_t id)
{
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ids[mid] == id)
            return true;
        if (ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

bool arg_u64(const char *text, uint64_t *out)
{
    if (text == NULL || *text < '0' || *text > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

void json_string(FILE *out, const void *bytes, size_t len)
{
    const unsigned char *p = bytes;
    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(out, "\\u%04x", c); /* bytes, not UTF-8: each shown as its code */
        else
            fputc(c, out);
    }
    fputc('"', out);
}

void base64_write(FILE *out, const void *bytes, size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    /* Encoded a chunk at a time: bodies run to megabytes, and a call per character is slow. */
    char chunk[4096];
    size_t used = 0;
    const unsigned char *p = bytes;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        chunk[used++] = alphabet[v >> 18];
        chunk[used++] = alphabet[(v >> 12) & 63];
        chunk[used++] = alphabet[(v >> 6) & 63];
        chunk[used++] = alphabet[v & 63];
        if (used + 4 > sizeof(chunk)) {
            fwrite(chunk, 1, used, out);
            used = 0;
        }
    }
    if (len - i > 0) {
        uint32_t v = (uint32_t)p[i] << 16 | (len - i == 2 ? (uint32_t)p[i + 1] << 8 : 0);
        chunk[used++] = alphabet[v >> 18];
        chunk[used++] = alphabet[(v >> 12) & 63];
        chunk[used++] = len - i == 2 ? alphabet[(v >> 6) & 63] : '=';
        chunk[used++] = '=';
    }
    fwrite(chunk, 1, used, out);
}

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
};

static const struct command commands[] = {
    {"verify", cmd_verify},   {"dump", cmd_dump},
    {"explain", cmd_explain}, {"why-retained", cmd_why_retained},
    {"stats", cmd_stats},     {"replay", cmd_replay},
    {"salvage", cmd_salvage},
};

/* One fd per segment is held for the whole run (spool_log.h): allow as many as the system
 * lets this process have. A failure leaves the soft limit, and opening reports EMFILE. */
static void raise_fd_limit(void)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &limit);
    }
}

int main(int argc, char **argv)
{
    raise_fd_limit();
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "spool-log: unknown command '%s'\n\n%s", argv[1], usage_text);
    return EXIT_USAGE;
}
