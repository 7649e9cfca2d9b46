/*
 * spool_cli.h: what the spool CLI's commands share (tools/spool.c, tools/spool_work.c): the
 * connection, the output format, argument parsing and the exit-code convention.
 *
 * Exit codes (documented in `spool --help` and the README; scripts rely on them):
 *   0 success (wait: the job is done);
 *   1 the server or the connection reported an error (its name, e.g. LEASE_EXPIRED, starts
 *     the line on stderr) that retrying the same command will not cure;
 *   2 a usage error (INVALID_ARGUMENT on stderr);
 *   3 timed out: reserve got no job, wait ended with the job still pending;
 *   4 wait: the job ended without success (dead);
 *   5 a retryable error (BUSY, QUEUE_FULL, DISK_FULL, SHUTTING_DOWN, ...; name on stderr):
 *     the same command may succeed later.
 */
#ifndef SPOOL_TOOLS_CLI_H
#define SPOOL_TOOLS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <spool/client.h>

#include "spool_out.h"

#define CLI_EXIT_ERROR 1
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_TIMED_OUT 3
#define CLI_EXIT_JOB_FAILED 4
#define CLI_EXIT_RETRY 5

struct cli {
    const char *server;
    spool_client *client;
    struct out out;
};

/* Connect (once) to cli->server; 0 or an exit code after printing the error. */
int cli_connect(struct cli *cli);
/* Print "NAME: sentence (context)" on stderr; returns CLI_EXIT_RETRY for a retryable error
 * (spool_error_is_retryable), else CLI_EXIT_ERROR. */
int cli_fail(int error, const char *context);
/* Print "INVALID_ARGUMENT: message" and the command's usage; returns CLI_EXIT_USAGE. */
int cli_usage(const char *message);

/* An option a command accepts: --name VALUE, --name=VALUE, or a bare flag. */
struct cli_opt {
    const char *name;
    bool is_flag;
    const char *value; /* set by cli_parse; flags get "" */
};

/*
 * Split args into options (from opts, anywhere) and positionals (at most pos_max). "-" is a
 * positional. "--" ends the options: with rest NULL the remaining args are positionals; with
 * rest non-NULL parsing stops there and *rest gets the index after "--" (args[*rest..] are a
 * command line), else -1. 0 or CLI_EXIT_USAGE.
 */
int cli_parse(int argc, char **argv, struct cli_opt *opts, size_t opt_count, char **pos,
              size_t pos_max, size_t *pos_count, int *rest);

/* Strict decimal parsing: the whole string, no sign, in range. */
bool cli_u64(const char *s, uint64_t *out);
bool cli_u32(const char *s, uint32_t *out);

/* spool top (spool_top.c): the queue table, refreshed every second, from HTTP /metrics. */
int cmd_top(struct cli *cli, int argc, char **argv);
/* spool work QUEUE... [options] -- CMD ARGS... */
int cmd_work(struct cli *cli, int argc, char **argv);

#endif
