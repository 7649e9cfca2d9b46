/*
 * spool-bench: command line. `spool-bench MODE [options]`, MODE one of produce, consume, e2e
 * (the load generator, loadgen.c), storage (the storage engine micro-benchmark,
 * storage_bench.c), backlog (backlog.c), floor (floor.c) and leases (leases.c). Every run
 * prints one `RESULT key=value ...` line on stdout; progress and errors go to stderr. Exit 0
 * on a completed run, 1 when the run failed, 2 on bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backlog.h"
#include "floor.h"
#include "leases.h"
#include "loadgen.h"
#include "storage_bench.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: spool-bench produce|consume|e2e [options]\n"
            "       spool-bench storage --dir DIR [storage options]\n"
            "       spool-bench backlog --jobs N [--size BYTES] [--body-cache BYTES] (--help)\n"
            "       spool-bench floor --dir DIR [--size BYTES] [--rate R] [--count N]\n"
            "                 (one commit of a job's batch and one loopback round trip, alone)\n"
            "       spool-bench leases [--leases N] [--reps R]\n"
            "                 (a lease's cost with N held: the broker's lease set, a plain\n"
            "                 heap, and queue_ack, in process)\n"
            "load options:\n"
            "  --target spool|beanstalkd|redis   protocol of the server (default spool)\n"
            "  --server HOST:PORT   (default 127.0.0.1 and the target's usual port)\n"
            "  --producers P --consumers C --depth D --batch B --size BYTES --queues Q\n"
            "  --fetch-batch F   jobs per reserve and per ack (default B); beanstalkd has no\n"
            "                    batch reserve: F jobs are F reserves\n"
            "  --body random|x|json   what bodies hold (default random: [a-z0-9] that lz4\n"
            "                  cannot shrink, different per job; x: every byte 'x', lz4's best\n"
            "                  case; json: JSON-like jobs, keys repeated, values varying)\n"
            "  --duration S | --count N   run length (consume: N jobs pre-filled, then\n"
            "                             drained for at most S seconds)\n"
            "  --rate R        open loop: R jobs/s in total on a fixed schedule\n"
            "  --warmup S      seconds run before measuring (duration runs)\n"
            "  --server-pid PID   report the server's CPU seconds\n"
            "  --quiet         no progress line on stderr\n"
            "  --queue-prefix NAME   queues are NAME-q0, NAME-q1, ... (default: unique per run)\n"
            "storage options:\n"
            "  --dir DIR --size BYTES --appends-per-commit N --count N [--raw | --compare]\n"
            "  [--reps N]   rounds; --compare alternates engine and raw (default 3 rounds)\n");
}

/* Parse an unsigned integer option into [min, max]; exits with a message when it is not. */
static uint64_t parse_uint(const char *name, const char *text, uint64_t min, uint64_t max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v < min || v > max) {
        fprintf(stderr, "spool-bench: --%s wants an integer in [%llu, %llu], not \"%s\"\n", name,
                (unsigned long long)min, (unsigned long long)max, text);
        exit(2);
    }
    return v;
}

static double parse_seconds(const char *name, const char *text)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(v >= 0) || v > 1e6) {
        fprintf(stderr, "spool-bench: --%s wants a non-negative number, not \"%s\"\n", name, text);
        exit(2);
    }
    return v;
}

static void parse_server(struct loadgen_config *cfg, char *text)
{
    char *colon = strrchr(text, ':');
    if (colon == NULL || colon == text) {
        fprintf(stderr, "spool-bench: --server wants HOST:PORT, not \"%s\"\n", text);
        exit(2);
    }
    *colon = '\0';
    cfg->host = text;
    cfg->port = (uint16_t)parse_uint("server", colon + 1, 1, 65535);
}

/* Queue names are PREFIX-qN: keep PREFIX to the characters every target accepts in a name
 * (spool: [A-Za-z0-9._:-]; beanstalkd tubes allow fewer punctuation marks: no ':'). */
static void parse_queue_prefix(struct loadgen_config *cfg, const char *text)
{
    size_t n = strlen(text);
    bool ok = n >= 1 && n < sizeof(cfg->queue_prefix);
    for (size_t i = 0; i < n && ok; i++)
        ok = (text[i] >= 'a' && text[i] <= 'z') || (text[i] >= 'A' && text[i] <= 'Z') ||
             (text[i] >= '0' && text[i] <= '9') || text[i] == '-' || text[i] == '_' ||
             text[i] == '.';
    if (!ok) {
        fprintf(stderr, "spool-bench: --queue-prefix wants 1-%zu characters of [A-Za-z0-9._-]\n",
                sizeof(cfg->queue_prefix) - 1);
        exit(2);
    }
    memcpy(cfg->queue_prefix, text, n + 1);
}

enum {
    OPT_TARGET = 256,
    OPT_SERVER,
    OPT_PRODUCERS,
    OPT_CONSUMERS,
    OPT_DEPTH,
    OPT_BATCH,
    OPT_FETCH_BATCH,
    OPT_SIZE,
    OPT_QUEUES,
    OPT_BODY,
    OPT_DURATION,
    OPT_COUNT,
    OPT_RATE,
    OPT_WARMUP,
    OPT_SERVER_PID,
    OPT_QUIET,
    OPT_QUEUE_PREFIX,
    OPT_DIR,
    OPT_APPENDS,
    OPT_RAW,
    OPT_COMPARE,
    OPT_REPS,
    OPT_HELP,
};

static const struct option options[] = {
    {"target", required_argument, NULL, OPT_TARGET},
    {"server", required_argument, NULL, OPT_SERVER},
    {"producers", required_argument, NULL, OPT_PRODUCERS},
    {"consumers", required_argument, NULL, OPT_CONSUMERS},
    {"depth", required_argument, NULL, OPT_DEPTH},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"fetch-batch", required_argument, NULL, OPT_FETCH_BATCH},
    {"size", required_argument, NULL, OPT_SIZE},
    {"queues", required_argument, NULL, OPT_QUEUES},
    {"body", required_argument, NULL, OPT_BODY},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"count", required_argument, NULL, OPT_COUNT},
    {"rate", required_argument, NULL, OPT_RATE},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"server-pid", required_argument, NULL, OPT_SERVER_PID},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"queue-prefix", required_argument, NULL, OPT_QUEUE_PREFIX},
    {"dir", required_argument, NULL, OPT_DIR},
    {"appends-per-commit", required_argument, NULL, OPT_APPENDS},
    {"raw", no_argument, NULL, OPT_RAW},
    {"compare", no_argument, NULL, OPT_COMPARE},
    {"reps", required_argument, NULL, OPT_REPS},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

struct cli {
    struct loadgen_config load;
    struct storage_bench_config storage;
    const char *target;
    bool size_set;
    bool count_set;
    bool duration_set;
    bool server_set;
    bool reps_set;
};

/* The options of `spool-bench storage`; false if opt is not one of them. */
static bool apply_storage_option(struct cli *cli, int opt, char *arg)
{
    switch (opt) {
    case OPT_DIR:
        cli->storage.dir = arg;
        return true;
    case OPT_APPENDS:
        cli->storage.appends_per_commit =
            (uint32_t)parse_uint("appends-per-commit", arg, 1, 1u << 20);
        return true;
    case OPT_RAW:
        cli->storage.run_engine = false;
        cli->storage.run_raw = true;
        return true;
    case OPT_COMPARE:
        cli->storage.run_engine = true;
        cli->storage.run_raw = true;
        if (!cli->reps_set)
            cli->storage.reps = 3;
        return true;
    case OPT_REPS:
        cli->storage.reps = (uint32_t)parse_uint("reps", arg, 1, STORAGE_BENCH_REPS_MAX);
        cli->reps_set = true;
        return true;
    }
    return false;
}

static void apply_option(struct cli *cli, int opt, char *arg)
{
    struct loadgen_config *cfg = &cli->load;
    switch (opt) {
    case OPT_TARGET:
        cli->target = arg;
        break;
    case OPT_SERVER:
        parse_server(cfg, arg);
        cli->server_set = true;
        break;
    case OPT_PRODUCERS:
        cfg->producers = (uint32_t)parse_uint("producers", arg, 0, 256);
        break;
    case OPT_CONSUMERS:
        cfg->consumers = (uint32_t)parse_uint("consumers", arg, 0, 256);
        break;
    case OPT_DEPTH:
        cfg->depth = (uint32_t)parse_uint("depth", arg, 1, 1024);
        break;
    case OPT_BATCH:
        cfg->batch = (uint32_t)parse_uint("batch", arg, 1, BENCH_BATCH_MAX);
        break;
    case OPT_FETCH_BATCH:
        cfg->fetch_batch = (uint32_t)parse_uint("fetch-batch", arg, 1, BENCH_BATCH_MAX);
        break;
    case OPT_SIZE:
        cfg->size = (uint32_t)parse_uint("size", arg, 1, 16u << 20);
        cli->storage.record_size_bytes = cfg->size;
        cli->size_set = true;
        break;
    case OPT_QUEUES:
        cfg->queues = (uint32_t)parse_uint("queues", arg, 1, 1024);
        break;
    case OPT_BODY:
        if (!bench_body_parse(arg, &cfg->body)) {
            fprintf(stderr, "spool-bench: --body wants random, x or json, not \"%s\"\n", arg);
            exit(2);
        }
        break;
    case OPT_DURATION:
        cfg->duration_s = parse_seconds("duration", arg);
        cli->duration_set = true;
        break;
    case OPT_COUNT:
        cfg->count = parse_uint("count", arg, 1, UINT64_MAX / 2);
        cli->storage.record_count = cfg->count;
        cli->count_set = true;
        break;
    case OPT_RATE:
        cfg->rate = parse_seconds("rate", arg);
        break;
    case OPT_WARMUP:
        cfg->warmup_s = parse_seconds("warmup", arg);
        break;
    case OPT_SERVER_PID:
        cfg->server_pid = (int)parse_uint("server-pid", arg, 1, INT_MAX);
        break;
    case OPT_QUIET:
        cfg->progress = false;
        break;
    case OPT_QUEUE_PREFIX:
        parse_queue_prefix(cfg, arg);
        break;
    case OPT_HELP:
        usage(stdout);
        exit(0);
    default:
        if (!apply_storage_option(cli, opt, arg)) {
            usage(stderr);
            exit(2);
        }
    }
}

static int run_load(struct cli *cli, enum loadgen_mode mode)
{
    struct loadgen_config *cfg = &cli->load;
    cfg->mode = mode;
    cfg->target = cli->target;
    cfg->driver = bench_driver_find(cli->target);
    if (cfg->driver == NULL) {
        fprintf(stderr, "spool-bench: no driver for target \"%s\"\n", cli->target);
        return 2;
    }
    if (!cli->server_set)
        cfg->port = cfg->driver->default_port;
    if (mode == LOADGEN_CONSUME && !cli->count_set)
        cfg->count = 100000;
    if (mode != LOADGEN_CONSUME && cli->count_set && !cli->duration_set)
        cfg->duration_s = 0;
    static struct loadgen_result result;
    int rc = loadgen_run(cfg, &result);
    if (rc == -EINVAL) {
        fprintf(stderr, "spool-bench: inconsistent options (see --help)\n");
        return 2;
    }
    if (rc != 0)
        return 1;
    loadgen_print_result(stdout, cfg, &result);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-') {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *mode = argv[1];
    if (strcmp(mode, "backlog") == 0)
        return backlog_main(argc, argv);
    if (strcmp(mode, "floor") == 0)
        return floor_main(argc, argv);
    if (strcmp(mode, "leases") == 0)
        return leases_main(argc, argv);
    struct cli cli = {.target = "spool"};
    loadgen_config_defaults(&cli.load);
    storage_bench_config_defaults(&cli.storage);
    int opt;
    optind = 2;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1)
        apply_option(&cli, opt, optarg);
    if (optind != argc) {
        fprintf(stderr, "spool-bench: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (strcmp(mode, "produce") == 0)
        return run_load(&cli, LOADGEN_PRODUCE);
    if (strcmp(mode, "consume") == 0)
        return run_load(&cli, LOADGEN_CONSUME);
    if (strcmp(mode, "e2e") == 0)
        return run_load(&cli, LOADGEN_E2E);
    if (strcmp(mode, "storage") == 0)
        return storage_bench_main(&cli.storage);
    fprintf(stderr, "spool-bench: unknown mode \"%s\"\n", mode);
    usage(stderr);
    return 2;
}
