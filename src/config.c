/*
 * Parsing of spoold's options (see config.h). Numbers accept a k/m/g suffix (powers of 1024)
 * where they are sizes. Every value is range-checked here so the server never starts with a
 * setting it cannot honour (a frame maximum too small for one job, a segment too small for a
 * batch).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compact.h"
#include "log.h"
#include "queue.h"
#include "wire_frame.h"

#define CONFIG_CONNECTIONS_DEFAULT 1024
/* Each connection may buffer one frame in and a bounded amount out: 64k connections of a few
 * MiB each is already beyond what one loop should hold. */
#define CONFIG_CONNECTIONS_LIMIT 65536
/* A client says HELLO in its first round trip: 5 s is far beyond any honest client on a
 * slow network and short enough that idle sockets cannot pile up. */
#define CONFIG_HANDSHAKE_TIMEOUT_DEFAULT_MS 5000
/* Connections that have not finished HELLO get their own, smaller pool: by default an eighth
 * of --max-connections, at least 16, so idle or unauthenticated sockets can never take the
 * slots of real clients (the oldest is closed when a new one needs the room). */
#define CONFIG_HANDSHAKES_MIN 16
#define CONFIG_HANDSHAKES_SHARE 8
#define CONFIG_SEGMENT_DEFAULT (64ull * 1024 * 1024)
/* A batch is at most a quarter of a segment (log.h) and must hold one job: a 1 MiB segment
 * still carries jobs of up to ~250 KiB, which small test setups use to roll segments fast. */
#define CONFIG_SEGMENT_MIN (1024ull * 1024)
/* Every segment is preallocated and (zero_segments) written with zeros when it is made, and a
 * roll into a new one stalls commits until that is done: 1 GiB is ~3 s of zeros at this
 * machine's ~390 MB/s, and 16 times the default. Larger sizes bought nothing but a disk filled
 * at once ("--segment-size 100g" zero-filled a shared disk); the format allows up to 1 TiB
 * (SEGMENT_SIZE_MAX), this is the server's bound. */
#define CONFIG_SEGMENT_MAX (1024ull * 1024 * 1024)
/* Queues with their own label in /metrics: each costs about 60 series (9 counters, 5 gauges,
 * two histograms of 23 series), so 200 is 12k series, what one Prometheus scrape of one
 * target comfortably takes every 15 s; the rest are summed under queue="(other)", a name no
 * queue can have. */
#define CONFIG_METRICS_QUEUES_DEFAULT 200
#define CONFIG_METRICS_QUEUES_LIMIT 100000

/* Bodies kept in RAM by default: 256 MiB holds the last ~1M puts of 100 bytes (a few seconds
 * of a producer at full speed, so a job delivered right after its put never waits for a
 * read), or 60,000 of 4 KiB, and is small beside the RAM of any machine that runs a broker. */
#ifndef CONFIG_BODY_CACHE_DEFAULT /* a test build may set it (1: every delivery reads back) */
#define CONFIG_BODY_CACHE_DEFAULT (256ull * 1024 * 1024)
#endif

static const char usage[] =
    "usage: spoold [options]\n"
    "  --data DIR               data directory (default ./spool-data)\n"
    "  --listen HOST:PORT       address to listen on (default 127.0.0.1:7711; port 0 = any)\n"
    "  --beanstalk HOST:PORT    also speak beanstalkd's text protocol there (off unless\n"
    "                           given; beanstalkd's own port is 127.0.0.1:11300)\n"
    "  --sync MODE              always | interval:MS | none (default always)\n"
    "  --segment-size BYTES     log segment size, a multiple of 4096 from 1m to 1g\n"
    "                           (default 64m; each segment is preallocated whole)\n"
    "  --max-frame BYTES        largest frame accepted or sent (default 2m)\n"
    "  --max-connections N      simultaneous connections after HELLO (default 1024)\n"
    "  --max-handshakes N       connections still before HELLO; beyond it the oldest is\n"
    "                           closed (default max(16, max-connections / 8))\n"
    "  --handshake-timeout MS   close a connection that has not completed HELLO in this\n"
    "                           long (default 5000)\n"
    "  --max-job-size BYTES     largest job body (default 1m)\n"
    "  --max-queue-jobs N       per-queue job limit, 0 = none (default 0)\n"
    "  --max-queue-bytes BYTES  per-queue body bytes limit, 0 = none (default 0)\n"
    "  --body-cache BYTES       job bodies kept in RAM; the others are read back from the\n"
    "                           log when delivered (default 256m, at least 1)\n"
    "  --max-memory BYTES       resident memory above which puts are refused with\n"
    "                           QUEUE_FULL (default 0: the cgroup's memory.max less 1/8,\n"
    "                           if there is one)\n"
    "  --checkpoint-bytes BYTES checkpoint after this much log (default 64m)\n"
    "  --commits-in-flight N    --sync always: group commits in flight at once, 1..4 (default\n"
    "                           4); 1 waits for each before the next\n"
    "  --direct-io on|off       --sync always: write commits with O_DIRECT, durable at once\n"
    "                           (default on; off, or a file system without it: buffered\n"
    "                           writes and fdatasync)\n"
    "  --recv-multishot on|off  read each connection through one multishot receive, where\n"
    "                           the kernel bounds it by bytes (default on; probed at start,\n"
    "                           the listening line says recv=multishot or recv=single)\n"
    "  --checkpoint-interval MS checkpoint at least this often when busy (default 60000)\n"
    "  --compact-percent N      copy the live jobs of a sealed segment forward when they take\n"
    "                           less than N% of it, 0..50 (default 25; 0: never)\n"
    "  --idempotency-window MS  how long a put's key suppresses repeats (default 86400000)\n"
    "  --max-idempotency-keys N keys remembered at most; past it the oldest goes first\n"
    "                           (default 1048576)\n"
    "  --max-queues N           queues at most; a put or reserve naming one more is\n"
    "                           refused with TOO_MANY_QUEUES (default 65536)\n"
    "  --frame-timeout MS       close a connection whose started frame stalls this long\n"
    "                           (default 30000)\n"
    "  --ready-file PATH        write HOST:PORT to PATH once listening\n"
    "  --auth-file PATH         require the shared secret on PATH's first line at HELLO\n"
    "  --http HOST:PORT|off     HTTP listener: /metrics, /api/v1, the dashboard /\n"
    "                           (default 127.0.0.1:7712; if that default is taken, spoold\n"
    "                           warns and runs without it; port 0 = any)\n"
    "  --http-ready-file PATH   write the HTTP HOST:PORT to PATH once listening\n"
    "  --http-allow-host NAME   also accept HTTP requests whose Host header is NAME (besides\n"
    "                           localhost, 127.0.0.0/8, [::1] and the bound address);\n"
    "                           repeatable or a comma list\n"
    "  --metrics-max-queues N   queues with their own label in /metrics; the rest are\n"
    "                           summed under queue=\"(other)\" (default 200)\n"
    "  --log-level LEVEL        info (default) or debug (adds each client's name and\n"
    "                           address at HELLO)\n"
    "  --help, --version\n";

static int parse_size(const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || text[0] == '-')
        return -EINVAL;
    uint64_t mult = 1;
    if (*end == 'k' || *end == 'K')
        mult = 1024;
    else if (*end == 'm' || *end == 'M')
        mult = 1024 * 1024;
    else if (*end == 'g' || *end == 'G')
        mult = 1024ull * 1024 * 1024;
    if (mult != 1)
        end++;
    if (*end != '\0' || v > UINT64_MAX / mult)
        return -EINVAL;
    *out = v * mult;
    return 0;
}

/* HOST:PORT into host (host_size bytes with its NUL) and *port. */
static int parse_listen(const char *text, char *host, size_t host_size, uint16_t *port_out)
{
    const char *colon = strrchr(text, ':');
    if (colon == NULL || colon == text || (size_t)(colon - text) >= host_size)
        return -EINVAL;
    uint64_t port;
    if (parse_size(colon + 1, &port) != 0 || port > 65535 || colon[1] < '0' || colon[1] > '9')
        return -EINVAL;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    *port_out = (uint16_t)port;
    return 0;
}

static int parse_http(const char *text, struct server_config *config)
{
    config->http_explicit = true;
    if (strcmp(text, "off") == 0) {
        config->http_enabled = false;
        return 0;
    }
    if (parse_listen(text, config->http_host, sizeof(config->http_host), &config->http_port) != 0)
        return -EINVAL;
    config->http_enabled = true;
    return 0;
}

/* Appends NAME[,NAME...] to config->http_allow_hosts in lower case: a Host header is compared
 * without regard to case (http.c). Empty names and characters no host name holds are refused. */
static int parse_allow_host(const char *text, struct server_config *config)
{
    size_t used = strlen(config->http_allow_hosts);
    size_t len = strlen(text);
    if (len == 0 || used + 1 + len >= sizeof(config->http_allow_hosts))
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        bool name_char = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                         (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == ':' ||
                         ch == '[' || ch == ']' || ch == '_';
        if (ch == ',' ? (i == 0 || i + 1 == len || text[i + 1] == ',') : !name_char)
            return -EINVAL;
    }
    char *out = config->http_allow_hosts + used;
    if (used > 0)
        *out++ = ',';
    for (size_t i = 0; i <= len; i++)
        out[i] = (char)(text[i] >= 'A' && text[i] <= 'Z' ? text[i] - 'A' + 'a' : text[i]);
    return 0;
}

static int parse_sync(const char *text, struct server_config *config)
{
    if (strcmp(text, "always") == 0) {
        config->sync_mode = LOG_SYNC_ALWAYS;
    } else if (strcmp(text, "none") == 0) {
        config->sync_mode = LOG_SYNC_NONE;
    } else if (strncmp(text, "interval:", 9) == 0) {
        uint64_t ms;
        if (parse_size(text + 9, &ms) != 0 || ms == 0 || ms > 3600 * 1000)
            return -EINVAL;
        config->sync_mode = LOG_SYNC_INTERVAL;
        config->sync_interval_ms = (uint32_t)ms;
    } else {
        return -EINVAL;
    }
    return 0;
}

static void defaults(struct server_config *config)
{
    memset(config, 0, sizeof(*config));
    config->data_dir = "./spool-data";
    strcpy(config->listen_host, "127.0.0.1");
    config->listen_port = 7711;
    config->sync_mode = LOG_SYNC_ALWAYS;
    config->segment_size_bytes = CONFIG_SEGMENT_DEFAULT;
    config->frame_size_max = WIRE_FRAME_SIZE_MAX_DEFAULT;
    config->connections_max = CONFIG_CONNECTIONS_DEFAULT;
    config->job_size_max = WIRE_JOB_SIZE_MAX_DEFAULT;
    config->checkpoint_bytes = 64ull * 1024 * 1024;
    config->commits_in_flight = LOG_COMMITS_IN_FLIGHT_MAX;
    config->direct_io = true;
    config->recv_multishot = true;
    config->body_cache_bytes = CONFIG_BODY_CACHE_DEFAULT;
    config->checkpoint_interval_ms = 60000;
    config->compact_percent = COMPACT_LIVE_PERCENT;
    config->idempotency_window_ms = 24ull * 3600 * 1000;
    {
        struct queue_config qc; /* one definition of these defaults: the queue's */
        queue_config_defaults(&qc);
        config->idempotency_keys_max = qc.idempotency_keys_max;
        config->queues_max = qc.queues_max;
    }
    config->frame_timeout_ms = 30000;
    config->handshake_timeout_ms = CONFIG_HANDSHAKE_TIMEOUT_DEFAULT_MS;
    config->handshakes_max = 0; /* derived from connections_max after parsing */
    config->http_enabled = true;
    strcpy(config->http_host, "127.0.0.1");
    config->http_port = 7712;
    config->metrics_queues_max = CONFIG_METRICS_QUEUES_DEFAULT;
}

/* One numeric option with bounds; false (and a message) if out of range. */
static bool number_option(const char *name, const char *text, uint64_t min, uint64_t max,
                          uint64_t *out)
{
    if (parse_size(text, out) != 0 || *out < min || *out > max) {
        fprintf(stderr, "spoold: %s: '%s' is not a number in %llu..%llu\n", name, text,
                (unsigned long long)min, (unsigned long long)max);
        return false;
    }
    return true;
}

/* One on|off option; false (and a message) for anything else. */
static bool on_off_option(const char *name, const char *text, bool *out)
{
    if (strcmp(text, "on") != 0 && strcmp(text, "off") != 0) {
        fprintf(stderr, "spoold: %s: '%s' is not on or off\n", name, text);
        return false;
    }
    *out = strcmp(text, "on") == 0;
    return true;
}

/* The secret is read from a file, not taken from argv, so it never shows in ps. */
static bool read_secret(const char *path, struct server_config *c)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "spoold: --auth-file: cannot read '%s'\n", path);
        return false;
    }
    char line[sizeof(c->auth_secret) + 2];
    bool ok = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    size_t len = ok ? strcspn(line, "\r\n") : 0;
    if (len == 0 || len >= sizeof(c->auth_secret)) {
        fprintf(stderr, "spoold: --auth-file: the first line must hold a secret of 1..%zu "
                        "bytes\n", sizeof(c->auth_secret) - 1);
        return false;
    }
    memcpy(c->auth_secret, line, len);
    c->auth_secret_len = (uint32_t)len;
    return true;
}

static bool apply_option(const char *name, const char *value, struct server_config *c)
{
    uint64_t v;
    if (strcmp(name, "--data") == 0) {
        c->data_dir = value;
    } else if (strcmp(name, "--listen") == 0) {
        if (parse_listen(value, c->listen_host, sizeof(c->listen_host), &c->listen_port) != 0) {
            fprintf(stderr, "spoold: --listen: '%s' is not HOST:PORT\n", value);
            return false;
        }
    } else if (strcmp(name, "--beanstalk") == 0) {
        if (parse_listen(value, c->beanstalk_host, sizeof(c->beanstalk_host),
                         &c->beanstalk_port) != 0) {
            fprintf(stderr, "spoold: --beanstalk: '%s' is not HOST:PORT\n", value);
            return false;
        }
        c->beanstalk_enabled = true;
    } else if (strcmp(name, "--sync") == 0) {
        if (parse_sync(value, c) != 0) {
            fprintf(stderr, "spoold: --sync: '%s' is not always, interval:MS or none\n", value);
            return false;
        }
    } else if (strcmp(name, "--http") == 0) {
        if (parse_http(value, c) != 0) {
            fprintf(stderr, "spoold: --http: '%s' is not HOST:PORT or off\n", value);
            return false;
        }
    } else if (strcmp(name, "--http-ready-file") == 0) {
        c->http_ready_file = value;
    } else if (strcmp(name, "--http-allow-host") == 0) {
        if (parse_allow_host(value, c) != 0) {
            fprintf(stderr, "spoold: --http-allow-host: '%s' is not a host name or comma list "
                            "of them (at most %zu bytes in all)\n",
                    value, sizeof(c->http_allow_hosts) - 1);
            return false;
        }
    } else if (strcmp(name, "--metrics-max-queues") == 0) {
        if (!number_option(name, value, 1, CONFIG_METRICS_QUEUES_LIMIT, &v))
            return false;
        c->metrics_queues_max = (uint32_t)v;
    } else if (strcmp(name, "--ready-file") == 0) {
        c->ready_file = value;
    } else if (strcmp(name, "--auth-file") == 0) {
        return read_secret(value, c);
    } else if (strcmp(name, "--log-level") == 0) {
        if (strcmp(value, "info") != 0 && strcmp(value, "debug") != 0) {
            fprintf(stderr, "spoold: --log-level: '%s' is not info or debug\n", value);
            return false;
        }
        c->log_debug = strcmp(value, "debug") == 0;
    } else if (strcmp(name, "--segment-size") == 0) {
        if (parse_size(value, &c->segment_size_bytes) != 0 ||
            c->segment_size_bytes < CONFIG_SEGMENT_MIN ||
            c->segment_size_bytes > CONFIG_SEGMENT_MAX || c->segment_size_bytes % 4096 != 0) {
            fprintf(stderr, "spoold: --segment-size: '%s' is not a multiple of 4096 from 1m "
                            "(%llu) to 1g (%llu)\n", value, CONFIG_SEGMENT_MIN,
                    CONFIG_SEGMENT_MAX);
            return false;
        }
    } else if (strcmp(name, "--max-frame") == 0) {
        if (!number_option(name, value, WIRE_FRAME_SIZE_MIN, WIRE_FRAME_SIZE_LIMIT, &v))
            return false;
        c->frame_size_max = (uint32_t)v;
    } else if (strcmp(name, "--max-connections") == 0) {
        if (!number_option(name, value, 1, CONFIG_CONNECTIONS_LIMIT, &v))
            return false;
        c->connections_max = (uint32_t)v;
    } else if (strcmp(name, "--max-job-size") == 0) {
        if (!number_option(name, value, 1, WIRE_FRAME_SIZE_LIMIT - WIRE_JOB_OVERHEAD_MAX, &v))
            return false;
        c->job_size_max = (uint32_t)v;
    } else if (strcmp(name, "--max-queue-jobs") == 0) {
        return number_option(name, value, 0, UINT64_MAX, &c->queue_jobs_max);
    } else if (strcmp(name, "--max-queue-bytes") == 0) {
        return number_option(name, value, 0, UINT64_MAX, &c->queue_bytes_max);
    } else if (strcmp(name, "--max-memory") == 0) {
        return number_option(name, value, 0, UINT64_MAX, &c->memory_bytes_max);
    } else if (strcmp(name, "--body-cache") == 0) {
        return number_option(name, value, 1, UINT64_MAX, &c->body_cache_bytes);
    } else if (strcmp(name, "--checkpoint-bytes") == 0) {
        return number_option(name, value, 1, UINT64_MAX, &c->checkpoint_bytes);
    } else if (strcmp(name, "--commits-in-flight") == 0) {
        return number_option(name, value, 1, LOG_COMMITS_IN_FLIGHT_MAX, &c->commits_in_flight);
    } else if (strcmp(name, "--direct-io") == 0) {
        return on_off_option(name, value, &c->direct_io);
    } else if (strcmp(name, "--recv-multishot") == 0) {
        return on_off_option(name, value, &c->recv_multishot);
    } else if (strcmp(name, "--idempotency-window") == 0) {
        /* Up to 30 days: keys are held in memory for the whole window. */
        return number_option(name, value, 1, 30ull * 24 * 3600 * 1000,
                             &c->idempotency_window_ms);
    } else if (strcmp(name, "--max-idempotency-keys") == 0) {
        /* At least 1: a put with a key must be able to remember it until the next one. */
        return number_option(name, value, 1, UINT32_MAX, &c->idempotency_keys_max);
    } else if (strcmp(name, "--max-queues") == 0) {
        return number_option(name, value, 1, UINT32_MAX, &c->queues_max);
    } else if (strcmp(name, "--max-handshakes") == 0) {
        if (!number_option(name, value, 1, CONFIG_CONNECTIONS_LIMIT, &v))
            return false;
        c->handshakes_max = (uint32_t)v;
    } else if (strcmp(name, "--handshake-timeout") == 0) {
        if (!number_option(name, value, 1, 3600 * 1000, &v))
            return false;
        c->handshake_timeout_ms = (uint32_t)v;
    } else if (strcmp(name, "--frame-timeout") == 0) {
        if (!number_option(name, value, 1, 3600 * 1000, &v))
            return false;
        c->frame_timeout_ms = (uint32_t)v;
    } else if (strcmp(name, "--checkpoint-interval") == 0) {
        if (!number_option(name, value, 1, 24ull * 3600 * 1000, &v))
            return false;
        c->checkpoint_interval_ms = (uint32_t)v;
    } else if (strcmp(name, "--compact-percent") == 0) {
        if (!number_option(name, value, 0, COMPACT_LIVE_PERCENT_MAX, &v))
            return false;
        c->compact_percent = (uint32_t)v;
    } else {
        fprintf(stderr, "spoold: unknown option '%s'\n%s", name, usage);
        return false;
    }
    return true;
}

enum config_parse_result config_parse(int argc, char **argv, struct server_config *config)
{
    defaults(config);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(usage, stdout);
            return CONFIG_EXIT_OK;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("spoold %s (protocol %d)\n", SPOOLD_VERSION, WIRE_VERSION);
            return CONFIG_EXIT_OK;
        }
        const char *value = NULL;
        char name[64];
        const char *eq = strchr(arg, '=');
        if (eq != NULL && (size_t)(eq - arg) < sizeof(name)) {
            memcpy(name, arg, (size_t)(eq - arg));
            name[eq - arg] = '\0';
            value = eq + 1;
        } else {
            snprintf(name, sizeof(name), "%s", arg);
            if (i + 1 >= argc) {
                fprintf(stderr, "spoold: %s needs a value\n%s", arg, usage);
                return CONFIG_EXIT_USAGE;
            }
            value = argv[++i];
        }
        if (!apply_option(name, value, config))
            return CONFIG_EXIT_USAGE;
    }
    if (config->beanstalk_enabled && config->auth_secret_len > 0) {
        /* beanstalkd's protocol has no authentication: the listener would bypass the secret. */
        fprintf(stderr, "spoold: --beanstalk cannot be combined with --auth-file (beanstalkd's "
                        "protocol has no authentication)\n");
        return CONFIG_EXIT_USAGE;
    }
    if ((uint64_t)config->job_size_max + WIRE_JOB_OVERHEAD_MAX > config->frame_size_max) {
        fprintf(stderr, "spoold: --max-frame (%u) must be at least --max-job-size + %u\n",
                config->frame_size_max, WIRE_JOB_OVERHEAD_MAX);
        return CONFIG_EXIT_USAGE;
    }
    uint64_t batch = config_batch_size(config);
    if ((uint64_t)config->job_size_max + WIRE_JOB_OVERHEAD_MAX > batch) {
        fprintf(stderr, "spoold: --max-job-size (%u) does not fit a log batch of %llu bytes "
                        "(a quarter of --segment-size): raise the segment size\n",
                config->job_size_max, (unsigned long long)batch);
        return CONFIG_EXIT_USAGE;
    }
    if (config->handshakes_max == 0) {
        uint32_t share = config->connections_max / CONFIG_HANDSHAKES_SHARE;
        config->handshakes_max = share > CONFIG_HANDSHAKES_MIN ? share : CONFIG_HANDSHAKES_MIN;
    }
    return CONFIG_OK;
}

uint64_t config_fds_needed(const struct server_config *config)
{
    /* +1: the connection accepted only to be told BUSY, or to push out the oldest handshake */
    return (uint64_t)config->connections_max + config->handshakes_max + 1 + CONFIG_FDS_RESERVED;
}

/* A PUT_BATCH is logged in one commit (handlers.c: all or nothing, a crash included), so a
 * log batch holds a whole frame of them: a job's PUT record takes 33 bytes more than its job
 * spec on the wire (an 8-byte record header and 60 fixed bytes against 35), rounded up to 64,
 * times WIRE_BATCH_COUNT_MAX jobs is 256 KiB beyond the frame (the batch header included). */
#define CONFIG_BATCH_PUT_GROWTH_BYTES (64ull * WIRE_BATCH_COUNT_MAX)

uint32_t config_batch_size(const struct server_config *config)
{
    /* One job plus room for the small records of the same commit, or a whole PUT_BATCH frame,
     * at least the engine's 1 MiB default, in whole 4 KiB blocks, and never above a quarter
     * of a segment (a larger PUT_BATCH is then refused with TOO_LARGE). */
    uint64_t batch = (uint64_t)config->job_size_max + 64 * 1024;
    uint64_t frame = (uint64_t)config->frame_size_max + CONFIG_BATCH_PUT_GROWTH_BYTES;
    if (batch < frame)
        batch = frame;
    batch = (batch + 4095) / 4096 * 4096;
    if (batch < 1024 * 1024)
        batch = 1024 * 1024;
    uint64_t quarter = config->segment_size_bytes / 4 / 4096 * 4096;
    return (uint32_t)(batch < quarter ? batch : quarter);
}
