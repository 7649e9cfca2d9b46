/*
 * spool: the command-line client of spoold.
 *
 *   spool [--server HOST:PORT] [--json] COMMAND ARGS...
 *
 * Each command is one libspool call (work is a loop of them, in spool_work.c), dispatched
 * through the table at the bottom. Output is one logfmt line per record for people, or one
 * JSON object per line with --json for scripts; field names are the same in both. A failed
 * command exits non-zero with the error's name (LEASE_EXPIRED, NOT_FOUND, QUEUE_FULL, ...)
 * first on its stderr line. The server address comes from --server, else $SPOOL_SERVER, else
 * 127.0.0.1:7711.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spool_cli.h"

/* Connect/handshake timeout, and the limit on any one reply beyond a call's own timeout:
 * long enough for a loaded server's group commit, short enough that a dead server does not
 * hang a script. */
#define CLI_CONNECT_TIMEOUT_MS 5000
#define CLI_IO_TIMEOUT_MS 30000
/* A body or result read from stdin: the protocol's hard frame ceiling bounds any job. */
#define CLI_STDIN_SIZE_MAX ((size_t)64 * 1024 * 1024)
#define CLI_POS_MAX 32

static const char *command_usage;

int cli_fail(int error, const char *context)
{
    fprintf(stderr, "%s: %s%s%s%s\n", spool_error_name(error), spool_strerror(error),
            context != NULL ? " (" : "", context != NULL ? context : "",
            context != NULL ? ")" : "");
    return spool_error_is_retryable(error) ? CLI_EXIT_RETRY : CLI_EXIT_ERROR;
}

int cli_usage(const char *message)
{
    fprintf(stderr, "INVALID_ARGUMENT: %s\n", message);
    if (command_usage != NULL)
        fprintf(stderr, "usage: spool %s\n", command_usage);
    return CLI_EXIT_USAGE;
}

int cli_connect(struct cli *cli)
{
    if (cli->client != NULL)
        return 0;
    struct spool_connect_options opts = {.timeout_ms = CLI_CONNECT_TIMEOUT_MS,
                                         .io_timeout_ms = CLI_IO_TIMEOUT_MS,
                                         .client_name = "spool-cli",
                                         .auth = getenv("SPOOL_AUTH")};
    int rc = spool_connect_opts(cli->server, &opts, &cli->client);
    if (rc != 0)
        return cli_fail(rc, cli->server);
    return 0;
}

bool cli_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

bool cli_u32(const char *s, uint32_t *out)
{
    uint64_t v;
    if (!cli_u64(s, &v) || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

static struct cli_opt *opt_find(struct cli_opt *opts, size_t count, const char *arg,
                                size_t name_len)
{
    for (size_t i = 0; i < count; i++) {
        if (strlen(opts[i].name) == name_len && strncmp(opts[i].name, arg, name_len) == 0)
            return &opts[i];
    }
    return NULL;
}

int cli_parse(int argc, char **argv, struct cli_opt *opts, size_t opt_count, char **pos,
              size_t pos_max, size_t *pos_count, int *rest)
{
    *pos_count = 0;
    if (rest != NULL)
        *rest = -1;
    bool options_done = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!options_done && strcmp(a, "--") == 0) {
            if (rest != NULL) {
                *rest = i + 1;
                return 0;
            }
            options_done = true; /* `spool put q -- --body-starting-with-dashes` */
            continue;
        }
        if (options_done || strncmp(a, "--", 2) != 0) {
            if (*pos_count == pos_max)
                return cli_usage("too many arguments");
            pos[(*pos_count)++] = argv[i];
            continue;
        }
        const char *eq = strchr(a + 2, '=');
        size_t name_len = eq != NULL ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        struct cli_opt *o = opt_find(opts, opt_count, a + 2, name_len);
        if (o == NULL) {
            fprintf(stderr, "INVALID_ARGUMENT: unknown option %s\n", a);
            return cli_usage("unknown option");
        }
        if (o->is_flag) {
            if (eq != NULL)
                return cli_usage("a flag takes no value");
            o->value = "";
        } else if (eq != NULL) {
            o->value = eq + 1;
        } else if (i + 1 < argc) {
            o->value = argv[++i];
        } else {
            return cli_usage("an option is missing its value");
        }
    }
    return 0;
}

/* Parse option o as u32/u64 into *out when given; false (after a usage message) if bad. */
static bool opt_u64(const struct cli_opt *o, uint64_t *out)
{
    if (o->value == NULL)
        return true;
    if (cli_u64(o->value, out))
        return true;
    fprintf(stderr, "INVALID_ARGUMENT: --%s needs a non-negative integer, not '%s'\n", o->name,
            o->value);
    return false;
}

static bool opt_u32(const struct cli_opt *o, uint32_t *out)
{
    uint64_t v = *out;
    if (!opt_u64(o, &v))
        return false;
    if (v > UINT32_MAX) {
        fprintf(stderr, "INVALID_ARGUMENT: --%s is above %u\n", o->name, UINT32_MAX);
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

/* Read all of stdin into a malloc'ed buffer (at most CLI_STDIN_SIZE_MAX bytes). */
static int read_stdin(char **out, size_t *len_out)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        return -ENOMEM;
    for (;;) {
        if (len == cap) {
            if (cap >= CLI_STDIN_SIZE_MAX) {
                free(buf);
                return SPOOL_E_TOO_LARGE;
            }
            char *bigger = realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                return -ENOMEM;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = read(STDIN_FILENO, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int rc = -errno;
            free(buf);
            return rc;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    *out = buf;
    *len_out = len;
    return 0;
}

/* A job id or lease from a positional argument. */
static bool arg_u64(const char *s, const char *what, uint64_t *out)
{
    if (cli_u64(s, out))
        return true;
    fprintf(stderr, "INVALID_ARGUMENT: %s must be a non-negative integer, not '%s'\n", what, s);
    return false;
}

static int cmd_put(struct cli *cli, int argc, char **argv)
{
    struct cli_opt o[] = {{"priority", false, NULL},     {"delay", false, NULL},
                          {"run-at", false, NULL},       {"ttr", false, NULL},
                          {"max-attempts", false, NULL}, {"ttl", false, NULL},
                          {"key", false, NULL}};
    char *pos[CLI_POS_MAX];
    size_t n;
    int rc = cli_parse(argc, argv, o, 7, pos, CLI_POS_MAX, &n, NULL);
    if (rc != 0)
        return rc;
    if (n != 2)
        return cli_usage("put takes a queue and a body (or - for stdin)");
    struct spool_job_spec job = {.queue = pos[0], .key = o[6].value};
    if (!opt_u32(&o[0], &job.priority) || !opt_u64(&o[1], &job.delay_ms) ||
        !opt_u64(&o[2], &job.run_at_ms) || !opt_u32(&o[3], &job.ttr_ms) ||
        !opt_u32(&o[4], &job.max_attempts) || !opt_u64(&o[5], &job.ttl_ms))
        return cli_usage("bad option value");
    /* --max-attempts 0 means unlimited on the command line, as in the protocol. */
    if (o[4].value != NULL && job.max_attempts == 0)
        job.max_attempts = SPOOL_ATTEMPTS_UNLIMITED;
    char *stdin_body = NULL;
    if (strcmp(pos[1], "-") == 0) {
        rc = read_stdin(&stdin_body, &job.body_len);
        if (rc != 0)
            return cli_fail(rc, "reading the body from stdin");
        job.body = stdin_body;
    } else {
        job.body = pos[1];
        job.body_len = strlen(pos[1]);
    }
    /* A batch of one: its reply says whether the key made this put a repeat. */
    struct spool_put_result put = {0};
    rc = cli_connect(cli);
    if (rc == 0) {
        int err = spool_put_batch(cli->client, &job, 1, &put);
        rc = err != 0 ? cli_fail(err, "put") : 0;
    }
    free(stdin_body);
    if (rc != 0)
        return rc;
    if (cli->out.json) {
        out_begin(&cli->out);
        out_u64(&cli->out, "id", put.id);
        out_bool(&cli->out, "duplicate", put.duplicate != 0);
        out_end(&cli->out);
    } else {
        printf("%llu%s\n", (unsigned long long)put.id, put.duplicate ? " duplicate" : "");
    }
    return 0;
}

static void print_delivery(struct out *o, const struct spool_delivery *d)
{
    out_begin(o);
    out_u64(o, "id", d->id);
    out_u64(o, "lease", d->lease);
    out_u64(o, "attempt", d->attempt);
    out_str(o, "queue", d->queue);
    out_u64(o, "deadline_ms", d->deadline_ms);
    out_bytes(o, "body", d->body, d->body_len);
    out_end(o);
}

static int cmd_reserve(struct cli *cli, int argc, char **argv)
{
    struct cli_opt o[] = {{"count", false, NULL}, {"timeout", false, NULL}};
    char *pos[CLI_POS_MAX];
    size_t n;
    int rc = cli_parse(argc, argv, o, 2, pos, CLI_POS_MAX, &n, NULL);
    if (rc != 0)
        return rc;
    uint32_t count = 1, timeout_ms = 0;
    if (!opt_u32(&o[0], &count) || !opt_u32(&o[1], &timeout_ms))
        return cli_usage("bad option value");
    if (n == 0 || n > 16 || count == 0 || count > 1024)
        return cli_usage("reserve takes 1..16 queues and --count 1..1024");
    rc = cli_connect(cli);
    if (rc != 0)
        return rc;
    struct spool_delivery *d = NULL;
    size_t got = 0;
    /* Detached: the lease outlives this process, so `spool ack` from another one works. */
    int err = spool_reserve(cli->client, (const char *const *)pos, n, count, timeout_ms,
                            SPOOL_RESERVE_DETACH, &d, &got);
    if (err != 0)
        return cli_fail(err, "reserve");
    for (size_t i = 0; i < got; i++)
        print_delivery(&cli->out, &d[i]);
    spool_deliveries_free(d);
    if (got == 0) {
        fprintf(stderr, "TIMED_OUT: no job within %u ms\n", timeout_ms);
        return CLI_EXIT_TIMED_OUT;
    }
    return 0;
}

/* Print the durability an acknowledged change reached. */
static void print_done(struct cli *cli)
{
    static const char *const names[] = {"none", "written", "synced"};
    int d = spool_last_durability(cli->client);
    out_begin(&cli->out);
    out_bool(&cli->out, "ok", true);
    out_str(&cli->out, "durability", d >= 0 && d <= 2 ? names[d] : "unknown");
    out_end(&cli->out);
}

/* JOB LEASE positionals shared by ack, release, touch, bury. */
static int parse_job_lease(int argc, char **argv, struct cli_opt *o, size_t opt_count, uint64_t *id,
                           uint64_t *lease)
{
    char *pos[CLI_POS_MAX];
    size_t n;
    int rc = cli_parse(argc, argv, o, opt_count, pos, CLI_POS_MAX, &n, NULL);
    if (rc != 0)
        return rc;
    if (n != 2)
        return cli_usage("expected JOB LEASE");
    if (!arg_u64(pos[0], "JOB", id) || !arg_u64(pos[1], "LEASE", lease))
        return cli_usage("bad JOB or LEASE");
    return 0;
}

static int cmd_ack(struct cli *cli, int argc, char **argv)
{
    struct cli_opt o[] = {{"result", false, NULL}};
    uint64_t id, lease;
    int rc = parse_job_lease(argc, argv, o, 1, &id, &lease);
    if (rc != 0)
        return rc;
    char *result = NULL;
    size_t result_len = 0;
    if (o[0].value != NULL && strcmp(o[0].value, "-") == 0) {
        rc = read_stdin(&result, &result_len);
        if (rc != 0)
            return cli_fail(rc, "reading the result from stdin");
    } else if (o[0].value != NULL) {
        result = strdup(o[0].value);
        result_len = strlen(o[0].value);
        if (result == NULL)
            return cli_fail(-ENOMEM, NULL);
    }
    rc = cli_connect(cli);
    if (rc == 0) {
        int err = spool_ack(cli->client, id, lease, result, result_len);
        rc = err != 0 ? cli_fail(err, "ack") : 0;
    }
    free(result);
    if (rc == 0)
        print_done(cli);
    return rc;
}

static int cmd_release(struct cli *cli, int argc, char **argv)
{
    struct cli_opt o[] = {
        {"delay", false, NULL}, {"priority", false, NULL}, {"reason", false, NULL}};
    uint64_t id, lease, delay_ms = 0;
    uint32_t priority = 0;
    int rc = parse_job_lease(argc, argv, o, 3, &id, &lease);
    if (rc != 0)
        return rc;
    if (!opt_u64(&o[0], &delay_ms) || !opt_u32(&o[1], &priority))
        return cli_usage("bad option value");
    /* The reason is the worker's error, kept if the job goes dead: a failed attempt, whose
     * release keeps the job's priority (the protocol's FAILED release). */
    if (o[2].value != NULL && o[1].value != NULL)
        return cli_usage("--reason and --priority do not go together");
    rc = cli_connect(cli);
    if (rc != 0)
        return rc;
    int err = o[2].value != NULL
                  ? spool_fail(cli->client, id, lease, delay_ms, o[2].value)
                  : spool_release(cli->client, id, lease, delay_ms,
                                  o[1].value != NULL ? (int64_t)priority : -1);
    if (err != 0)
        return cli_fail(err, "release");
    print_done(cli);
    return 0;
}

static int cmd_touch(struct cli *cli, int argc, char **argv)
{
    struct cli_opt o[] = {{"extend", false, NULL}};
    uint64_t id, lease, deadline_ms = 0;
    uint32_t extend_ms = 0;
    int rc = parse_job_lease(argc, argv, o, 1, &id, &lease);
    if (rc != 0)
        return rc;
    if (!opt_u32(&o[0], &extend_ms))
        return cli_usage("bad option value");
    rc = cli_connect(cli);
    if (rc != 0)
        return rc;
    int err = spool_touch(cli->client, id, lease, extend_ms, &deadline_ms);
    if (err != 0)
        return cli_fail(err, "touch");
    out_begin(&cli->out);
    out_u64(&cli->out, "id", id);
    out_u64(&cli->out, "deadline_ms", deadline_ms);
    out_end(&cli->out);
    return 0;
}

static int cmd_bury(struct cli *cli, int argc, char **argv)
{
    struct cli_opt o[] = {{"reason", false, NULL}};
    uint64_t id, lease;
    int rc = parse_job_lease(argc, argv, o, 1, &id, &lease);
    if (rc != 0)
        return rc;
    rc = cli_connect(cli);
    if (rc != 0)
        return rc;
    int err = spool_bury(cli->client, id, lease, o[0].value);
    if (err != 0)
        return cli_fail(err, "bury");
    print_done(cli);
    return 0;
}

static int cmd_kick(struct cli *cli, int argc, char **argv)
{
    struct cli_opt o[] = {{"job", false, NULL}};
    char *pos[CLI_POS_MAX];
    size_t n;
    int rc = cli_parse(argc, argv, o, 1, pos, CLI_POS_MAX, &n, NULL);
    if (rc != 0)
        return rc;
    uint64_t id = 0;
    uint32_t count = 1;
    if (o[0].value != NULL ? (n != 0 || !arg_u64(o[0].value, "JOB", &id))
                           : (n < 1 || n > 2 || (n == 2 && !cli_u32(pos[1], &count))))
        return cli_usage("kick takes QUEUE [N] or --job JOB");
    rc = cli_connect(cli);
    if (rc != 0)
        return rc;
    if (o[0].value != NULL) {
        int err = spool_kick_job(cli->client, id);
        if (err != 0)
            return cli_fail(err, "kick");
        print_done(cli);
        return 0;
    }
    uint64_t kicked = 0;
    int err = spool_kick(cli->client, pos[0], count, &kicked);
    if (err != 0)
        return cli_fail(err, "kick");
    out_begin(&cli->out);
    out_u64(&cli->out, "kicked", kicked);
    out_end(&cli->out);
    return 0;
}

static void print_job(struct out *o, const struct spool_job *j, bool with_body)
{
    out_begin(o);
    out_u64(o, "id", j->id);
    out_str(o, "state", spool_state_name(j->state));
    out_u64(o, "attempts", j->attempts);
    out_str(o, "queue", j->queue);
    out_u64(o, "priority", j->priority);
    out_u64(o, "max_attempts", j->max_attempts);
    out_u64(o, "ttr_ms", j->ttr_ms);
    out_u64(o, "created_ms", j->created_ms);
    out_u64(o, "ready_at_ms", j->ready_at_ms);
    out_u64(o, "deadline_ms", j->deadline_ms);
    out_u64(o, "finished_ms", j->finished_ms);
    out_str(o, "reason", j->reason);
    out_bytes(o, "result", j->result, j->result_len);
    if (with_body)
        out_bytes(o, "body", j->body, j->body_len);
    out_end(o);
}

static int cmd_peek(struct cli *cli, int argc, char **argv)
{
    struct cli_opt o[] = {{"ready", true, NULL}, {"delayed", true, NULL}, {"dead", true, NULL}};
    char *pos[CLI_POS_MAX];
    size_t n;
    int rc = cli_parse(argc, argv, o, 3, pos, CLI_POS_MAX, &n, NULL);
    if (rc != 0)
        return rc;
    int state = o[0].value   ? SPOOL_STATE_READY
                : o[1].value ? SPOOL_STATE_DELAYED
                : o[2].value ? SPOOL_STATE_DEAD
                             : 0;
    int states = !!o[0].value + !!o[1].value + !!o[2].value;
    uint64_t id = 0;
    if (n != 1 || states > 1 || (states == 0 && !arg_u64(pos[0], "JOB", &id)))
        return cli_usage("peek takes JOB, or QUEUE with one of --ready --delayed --dead");
    rc = cli_connect(cli);
    if (rc != 0)
        return rc;
    struct spool_job *job = NULL;
    int err = states ? spool_peek_next(cli->client, pos[0], state, &job)
                     : spool_peek(cli->client, id, &job);
    if (err != 0)
        return cli_fail(err, "peek");
    print_job(&cli->out, job, true);
    spool_job_free(job);
    return 0;
}

/* Commands of the shape NAME JOB [--timeout MS]: delete, status, wait. */
static int cmd_job(struct cli *cli, int argc, char **argv, const char *name)
{
    struct cli_opt o[] = {{"timeout", false, NULL}};
    char *pos[CLI_POS_MAX];
    size_t n;
    bool is_wait = strcmp(name, "wait") == 0;
    int rc = cli_parse(argc, argv, o, is_wait ? 1 : 0, pos, CLI_POS_MAX, &n, NULL);
    if (rc != 0)
        return rc;
    uint64_t id;
    uint32_t timeout_ms = 30000; /* wait: the CLI's default patience */
    if (n != 1 || !arg_u64(pos[0], "JOB", &id) || !opt_u32(&o[0], &timeout_ms))
        return cli_usage("expected one JOB id");
    rc = cli_connect(cli);
    if (rc != 0)
        return rc;
    if (strcmp(name, "delete") == 0) {
        int err = spool_delete(cli->client, id);
        if (err != 0)
            return cli_fail(err, "delete");
        print_done(cli);
        return 0;
    }
    struct spool_job *job = NULL;
    int err = is_wait ? spool_wait(cli->client, id, timeout_ms, &job)
                      : spool_status(cli->client, id, &job);
    if (err != 0)
        return cli_fail(err, name);
    print_job(&cli->out, job, false);
    int state = job->state;
    spool_job_free(job);
    if (!is_wait || state == SPOOL_STATE_DONE)
        return 0;
    if (state == SPOOL_STATE_DEAD || state == SPOOL_STATE_EXPIRED)
        return CLI_EXIT_JOB_FAILED;
    fprintf(stderr, "TIMED_OUT: job %llu still pending after %u ms\n", (unsigned long long)id,
            timeout_ms);
    return CLI_EXIT_TIMED_OUT;
}

static int cmd_delete(struct cli *cli, int argc, char **argv)
{
    return cmd_job(cli, argc, argv, "delete");
}

static int cmd_status(struct cli *cli, int argc, char **argv)
{
    return cmd_job(cli, argc, argv, "status");
}

static int cmd_wait(struct cli *cli, int argc, char **argv)
{
    return cmd_job(cli, argc, argv, "wait");
}

static void print_queue_stats(struct out *o, const struct spool_queue_stats *q)
{
    out_begin(o);
    out_str(o, "queue", q->name);
    out_u64(o, "ready", q->ready);
    out_u64(o, "delayed", q->delayed);
    out_u64(o, "reserved", q->reserved);
    out_u64(o, "dead", q->dead);
    out_u64(o, "total_put", q->total_put);
    out_u64(o, "oldest_ready_age_ms", q->oldest_ready_age_ms);
    out_u64(o, "ack_floor", q->ack_floor);
    out_bool(o, "paused", q->paused != 0);
    out_u64(o, "ttr_ms", q->ttr_ms);
    out_u64(o, "max_attempts", q->max_attempts);
    out_u64(o, "expired", q->expired);
    out_end(o);
}

static void print_server_stats(struct out *o, const struct spool_stats *s)
{
    out_begin(o);
    out_u64(o, "uptime_ms", s->uptime_ms);
    out_u64(o, "connections", s->connections);
    out_u64(o, "commits", s->commits);
    out_u64(o, "log_bytes", s->log_bytes);
    out_u64(o, "ready", s->ready);
    out_u64(o, "delayed", s->delayed);
    out_u64(o, "reserved", s->reserved);
    out_u64(o, "dead", s->dead);
    out_u64(o, "total_put", s->total_put);
    out_u64(o, "total_acked", s->total_acked);
    out_u64(o, "queues", s->queue_count);
    out_u64(o, "expired", s->expired);
    out_u64(o, "idempotency_keys", s->keys);
    out_u64(o, "idempotency_keys_evicted", s->keys_evicted);
    out_end(o);
}

/* stats QUEUE: that queue's line; stats: the server's line, then one line per queue. */
static int cmd_stats(struct cli *cli, int argc, char **argv)
{
    char *pos[CLI_POS_MAX];
    size_t n;
    int rc = cli_parse(argc, argv, NULL, 0, pos, CLI_POS_MAX, &n, NULL);
    if (rc != 0)
        return rc;
    if (n > 1)
        return cli_usage("stats takes at most one QUEUE");
    rc = cli_connect(cli);
    if (rc != 0)
        return rc;
    struct spool_stats *s = NULL;
    int err = spool_stats(cli->client, n == 1 ? pos[0] : NULL, &s);
    if (err != 0)
        return cli_fail(err, "stats");
    if (n == 0)
        print_server_stats(&cli->out, s);
    for (size_t i = 0; i < s->queue_count; i++)
        print_queue_stats(&cli->out, &s->queues[i]);
    spool_stats_free(s);
    return 0;
}

static int cmd_queues(struct cli *cli, int argc, char **argv)
{
    char *pos[CLI_POS_MAX];
    size_t n;
    int rc = cli_parse(argc, argv, NULL, 0, pos, CLI_POS_MAX, &n, NULL);
    if (rc != 0)
        return rc;
    if (n != 0)
        return cli_usage("queues takes no arguments");
    rc = cli_connect(cli);
    if (rc != 0)
        return rc;
    struct spool_queue_info *q = NULL;
    size_t count = 0;
    int err = spool_queues(cli->client, &q, &count);
    if (err != 0)
        return cli_fail(err, "queues");
    for (size_t i = 0; i < count; i++) {
        out_begin(&cli->out);
        out_str(&cli->out, "queue", q[i].name);
        out_bool(&cli->out, "paused", q[i].paused != 0);
        out_end(&cli->out);
    }
    spool_queues_free(q);
    return 0;
}

/* pause / resume / purge QUEUE. */
static int cmd_queue_op(struct cli *cli, int argc, char **argv, const char *name)
{
    char *pos[CLI_POS_MAX];
    size_t n;
    int rc = cli_parse(argc, argv, NULL, 0, pos, CLI_POS_MAX, &n, NULL);
    if (rc != 0)
        return rc;
    if (n != 1)
        return cli_usage("expected one QUEUE");
    rc = cli_connect(cli);
    if (rc != 0)
        return rc;
    uint64_t purged = 0;
    int err = strcmp(name, "pause") == 0    ? spool_pause(cli->client, pos[0])
              : strcmp(name, "resume") == 0 ? spool_resume(cli->client, pos[0])
                                            : spool_purge(cli->client, pos[0], &purged);
    if (err != 0)
        return cli_fail(err, name);
    if (strcmp(name, "purge") == 0) {
        out_begin(&cli->out);
        out_u64(&cli->out, "purged", purged);
        out_end(&cli->out);
        return 0;
    }
    print_done(cli);
    return 0;
}

static int cmd_pause(struct cli *cli, int argc, char **argv)
{
    return cmd_queue_op(cli, argc, argv, "pause");
}

static int cmd_resume(struct cli *cli, int argc, char **argv)
{
    return cmd_queue_op(cli, argc, argv, "resume");
}

static int cmd_purge(struct cli *cli, int argc, char **argv)
{
    return cmd_queue_op(cli, argc, argv, "purge");
}

/* queue-delete QUEUE [--force]: a queue with jobs is refused (WRONG_STATE) unless --force. */
static int cmd_queue_delete(struct cli *cli, int argc, char **argv)
{
    struct cli_opt o[] = {{"force", true, NULL}};
    char *pos[CLI_POS_MAX];
    size_t n;
    int rc = cli_parse(argc, argv, o, 1, pos, CLI_POS_MAX, &n, NULL);
    if (rc != 0)
        return rc;
    if (n != 1)
        return cli_usage("queue-delete takes one QUEUE [--force]");
    rc = cli_connect(cli);
    if (rc != 0)
        return rc;
    uint64_t deleted = 0;
    int err = spool_queue_delete(cli->client, pos[0], o[0].value != NULL, &deleted);
    if (err != 0)
        return cli_fail(err, "queue-delete");
    out_begin(&cli->out);
    out_u64(&cli->out, "deleted", deleted);
    out_end(&cli->out);
    return 0;
}

static int cmd_config(struct cli *cli, int argc, char **argv)
{
    struct cli_opt o[] = {{"ttr", false, NULL}, {"max-attempts", false, NULL}};
    char *pos[CLI_POS_MAX];
    size_t n;
    int rc = cli_parse(argc, argv, o, 2, pos, CLI_POS_MAX, &n, NULL);
    if (rc != 0)
        return rc;
    uint32_t ttr_ms = 0, max_attempts = 0;
    if (n != 1 || !opt_u32(&o[0], &ttr_ms) || !opt_u32(&o[1], &max_attempts) ||
        (o[0].value == NULL && o[1].value == NULL))
        return cli_usage("config takes QUEUE and --ttr MS and/or --max-attempts N");
    rc = cli_connect(cli);
    if (rc != 0)
        return rc;
    int err = spool_queue_set_defaults(cli->client, pos[0], ttr_ms,
                                       o[1].value != NULL ? (int64_t)max_attempts : -1);
    if (err != 0)
        return cli_fail(err, "config");
    print_done(cli);
    return 0;
}

static int cmd_ping(struct cli *cli, int argc, char **argv)
{
    if (argc != 0)
        return cli_usage("ping takes no arguments");
    int rc = cli_connect(cli);
    if (rc != 0)
        return rc;
    int err = spool_ping(cli->client);
    if (err != 0)
        return cli_fail(err, "ping");
    print_done(cli);
    return 0;
}

struct command {
    const char *name;
    int (*run)(struct cli *cli, int argc, char **argv);
    const char *usage;
};

static const struct command commands[] = {
    {"put", cmd_put,
     "put QUEUE [--priority N] [--delay MS | --run-at UNIX_MS] [--ttr MS] "
     "[--max-attempts N] [--ttl MS] [--key K] (BODY | -)"},
    {"reserve", cmd_reserve, "reserve QUEUE... [--count N] [--timeout MS]"},
    {"ack", cmd_ack, "ack JOB LEASE [--result R | --result -]"},
    {"release", cmd_release, "release JOB LEASE [--delay MS] [--priority N | --reason R]"},
    {"touch", cmd_touch, "touch JOB LEASE [--extend MS]"},
    {"bury", cmd_bury, "bury JOB LEASE [--reason R]"},
    {"kick", cmd_kick, "kick QUEUE [N] | kick --job JOB"},
    {"peek", cmd_peek, "peek JOB | peek QUEUE (--ready | --delayed | --dead)"},
    {"delete", cmd_delete, "delete JOB"},
    {"wait", cmd_wait, "wait JOB [--timeout MS]"},
    {"status", cmd_status, "status JOB"},
    {"stats", cmd_stats, "stats [QUEUE]"},
    {"queues", cmd_queues, "queues"},
    {"pause", cmd_pause, "pause QUEUE"},
    {"resume", cmd_resume, "resume QUEUE"},
    {"purge", cmd_purge, "purge QUEUE"},
    {"queue-delete", cmd_queue_delete, "queue-delete QUEUE [--force]"},
    {"config", cmd_config, "config QUEUE [--ttr MS] [--max-attempts N]"},
    {"ping", cmd_ping, "ping"},
    {"top", cmd_top, "top [--http HOST:PORT] [--interval MS] [--once]   (reads HTTP /metrics)"},
    {"work", cmd_work,
     "work QUEUE... [--max-jobs N] [--backoff-max MS] [--grace MS] -- CMD ARGS..."},
};
#define COMMAND_COUNT (sizeof commands / sizeof commands[0])

static void print_help(FILE *f)
{
    fprintf(f,
            "usage: spool [--server HOST:PORT] [--json] COMMAND ARGS...  (or --help, --version)\n\n"
            "The server is --server, else $SPOOL_SERVER, else " SPOOL_DEFAULT_ADDRESS ".\n"
            "$SPOOL_AUTH, if set, is sent as the server's shared secret.\n"
            "--json prints one JSON object per line. Commands:\n");
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        fprintf(f, "  spool %s\n", commands[i].usage);
    fprintf(f, "\nExit codes: 0 success (wait: the job is done); 1 an error (its name, e.g.\n"
               "LEASE_EXPIRED or NOT_FOUND, starts the line on stderr); 2 a usage error;\n"
               "3 timed out (reserve got no job, wait found the job still pending);\n"
               "4 wait: the job is dead or expired; 5 a retryable error (BUSY, QUEUE_FULL, DISK_FULL, ...):\n"
               "the same command may succeed later.\n");
}

int main(int argc, char **argv)
{
    struct cli cli = {.server = getenv("SPOOL_SERVER"), .out = {.f = stdout}};
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            cli.out.json = true;
        } else if (strcmp(argv[i], "--server") == 0 && i + 1 < argc) {
            cli.server = argv[++i];
        } else if (strncmp(argv[i], "--server=", 9) == 0) {
            cli.server = argv[i] + 9;
        } else if (strcmp(argv[i], "--help") == 0) {
            print_help(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("spool %s\n", SPOOL_VERSION);
            return 0;
        } else {
            fprintf(stderr, "INVALID_ARGUMENT: unknown option %s\n", argv[i]);
            print_help(stderr);
            return CLI_EXIT_USAGE;
        }
    }
    if (cli.server == NULL || cli.server[0] == '\0')
        cli.server = SPOOL_DEFAULT_ADDRESS;
    if (i == argc) {
        print_help(stderr);
        return CLI_EXIT_USAGE;
    }
    for (size_t k = 0; k < COMMAND_COUNT; k++) {
        if (strcmp(argv[i], commands[k].name) == 0) {
            command_usage = commands[k].usage;
            int rc = commands[k].run(&cli, argc - i - 1, argv + i + 1);
            spool_close(cli.client);
            if (fflush(stdout) != 0 && rc == 0)
                rc = cli_fail(-errno, "writing output");
            return rc;
        }
    }
    fprintf(stderr, "INVALID_ARGUMENT: unknown command '%s'\n", argv[i]);
    print_help(stderr);
    return CLI_EXIT_USAGE;
}
