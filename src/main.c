/*
 * spoold: parse options, start (recover, listen), run the loop until SIGTERM/SIGINT, stop
 * cleanly. Exit codes: 0 clean stop, 1 a runtime failure (the log says which), 2 bad usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "config.h"
#include "server.h"
#include "slog.h"

/* Raise the soft RLIMIT_NOFILE to what the configured connections need; refuse to start
 * (one line) when the hard limit is below it, rather than leave clients hanging in the
 * accept queue while accepts fail with EMFILE. 0 or -1. */
static int fd_limit_fit(const struct server_config *config)
{
    uint64_t need = config_fds_needed(config);
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0) {
        slog_error("msg=\"getrlimit failed\" error=\"%s\"", strerror(errno));
        return -1;
    }
    if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < need) {
        if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < need) {
            slog_error("msg=\"open-file limit too low for --max-connections\" need=%llu "
                       "hard_limit=%llu hint=\"raise ulimit -n (hard) or lower "
                       "--max-connections / --max-handshakes\"",
                       (unsigned long long)need, (unsigned long long)lim.rlim_max);
            return -1;
        }
        lim.rlim_cur = need;
        if (setrlimit(RLIMIT_NOFILE, &lim) != 0) {
            slog_error("msg=\"setrlimit failed\" need=%llu error=\"%s\"",
                       (unsigned long long)need, strerror(errno));
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct server_config config;
    enum config_parse_result parsed = config_parse(argc, argv, &config);
    if (parsed == CONFIG_EXIT_OK)
        return 0;
    if (parsed != CONFIG_OK)
        return 2;
    slog_debug_enable(config.log_debug);
    if (fd_limit_fit(&config) != 0)
        return 1;
    static struct server server;
    int rc = server_start(&server, &config);
    if (rc == 0)
        rc = server_run(&server);
    server_destroy(&server);
    if (rc != 0) {
        slog_error("msg=\"spoold stopped on an error\"");
        return 1;
    }
    slog_info("msg=stopped");
    return 0;
}
