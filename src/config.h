/*
 * spoold's command line: every option with its default and its bounds, parsed into one
 * struct before anything starts. A bad option is a clear message on stderr and exit code 2.
 */
#ifndef SPOOL_SRC_CONFIG_H
#define SPOOL_SRC_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "log.h"

#define SPOOLD_VERSION "0.1.0"

struct server_config {
    const char *data_dir;          /* --data, default ./spool-data */
    char listen_host[256];         /* --listen HOST:PORT, default 127.0.0.1:7711 */
    uint16_t listen_port;
    bool beanstalk_enabled;        /* --beanstalk HOST:PORT given (beanstalk.h) */
    char beanstalk_host[256];
    uint16_t beanstalk_port;
    enum log_sync_mode sync_mode;  /* --sync always|interval:MS|none */
    uint32_t sync_interval_ms;
    uint64_t segment_size_bytes;   /* --segment-size, default 64 MiB */
    uint32_t frame_size_max;       /* --max-frame, default 2 MiB */
    uint32_t connections_max;      /* --max-connections, default 1024 */
    uint32_t job_size_max;         /* --max-job-size, default 1 MiB */
    uint64_t queue_jobs_max;       /* --max-queue-jobs, default 0 = unlimited */
    uint64_t queue_bytes_max;      /* --max-queue-bytes, default 0 = unlimited */
    uint64_t body_cache_bytes;     /* --body-cache, default 256 MiB */
    uint64_t memory_bytes_max;     /* --max-memory, default 0 = the cgroup's limit, if any */
    uint64_t checkpoint_bytes;     /* --checkpoint-bytes, default 64 MiB of log */
    uint64_t commits_in_flight;    /* --commits-in-flight, default LOG_COMMITS_IN_FLIGHT_MAX */
    bool direct_io;                /* --direct-io on|off, default on */
    bool recv_multishot;           /* --recv-multishot on|off, default on (where it bounds) */
    uint32_t checkpoint_interval_ms; /* --checkpoint-interval, default 60 s */
    uint32_t compact_percent;      /* --compact-percent, default 25 (compact.h); 0: off */
    uint64_t idempotency_window_ms; /* --idempotency-window, default 24 h */
    uint64_t idempotency_keys_max;  /* --max-idempotency-keys, default 1 Mi (queue.c) */
    uint64_t queues_max;            /* --max-queues, default 64 Ki (queue.c) */
    uint32_t frame_timeout_ms;     /* --frame-timeout: a started frame must finish within */
    uint32_t handshake_timeout_ms; /* --handshake-timeout: HELLO must arrive within, default 5 s */
    uint32_t handshakes_max;       /* --max-handshakes: connections before HELLO, at most */
    const char *ready_file;        /* --ready-file PATH: written once listening */
    char auth_secret[256];         /* --auth-file PATH: its first line; empty = no auth */
    uint32_t auth_secret_len;
    bool log_debug;                /* --log-level debug: also each client's HELLO */
    /* HTTP listener (http.c): --http HOST:PORT, default 127.0.0.1:7712, --http off */
    bool http_enabled;
    bool http_explicit;            /* given on the command line: a failed bind is fatal */
    char http_host[256];
    uint16_t http_port;
    const char *http_ready_file;   /* --http-ready-file PATH: HOST:PORT once listening */
    /* --http-allow-host NAME[,NAME...] (repeatable): Host header names accepted besides the
     * loopback ones and the bound address, joined by commas, lower case (http.c). */
    char http_allow_hosts[1024];
    uint32_t metrics_queues_max;   /* --metrics-max-queues: queues labelled in /metrics */
};

enum config_parse_result {
    CONFIG_OK = 0,
    CONFIG_EXIT_OK = 1,    /* --help or --version printed */
    CONFIG_EXIT_USAGE = 2, /* a bad option; message printed */
};

/* File descriptors spoold may hold at once beyond its connections: the listener, the ring,
 * the signalfd, the lock, the checkpoint and its reserve, log segments (one open per segment:
 * 1024 of them is 64 GiB of log at the default segment size) and slack for accepts racing
 * closes. RLIMIT_NOFILE is raised at start to fit config_fds_needed() or spoold refuses. */
#define CONFIG_FDS_RESERVED 1024

/* The file descriptors this configuration may need: connections, handshakes and the rest. */
uint64_t config_fds_needed(const struct server_config *config);

/* The log batch size for this configuration (bytes, a multiple of 4096). */
uint32_t config_batch_size(const struct server_config *config);

enum config_parse_result config_parse(int argc, char **argv, struct server_config *config);

#endif
