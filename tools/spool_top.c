/*
 * spool top: the dashboard's queue table in a terminal, refreshed every second.
 *
 * It reads spoold's HTTP /metrics (Prometheus text: one sample per line, so parsing is a
 * sscanf per line and no JSON parser is needed), not the binary protocol's STATS, because
 * STATS has no ack or delivery counters to take rates from. The HTTP address is --http, else
 * $SPOOL_HTTP, else 127.0.0.1:7712; $SPOOL_AUTH, if set, is sent as the bearer token. Queues
 * beyond spoold's --metrics-max-queues show as one "(other)" row.
 *
 * The terminal goes to raw mode (no echo, no line buffering, no signals from keys: Ctrl-C is
 * read as a byte) on the alternate screen, and is restored on every exit path: q, Ctrl-C,
 * SIGTERM, SIGHUP, or an error. With --once, or when stdout is not a terminal, it prints one
 * table and exits.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "spool_cli.h"

/* A /metrics page of 200 queues is ~1 MiB; 64 MiB bounds a runaway answer. */
#define TOP_RESPONSE_MAX (64u * 1024 * 1024)
/* Queues tracked between two refreshes (rates need the previous counters). */
#define TOP_QUEUES_MAX 4096
/* The wait for spoold's answer. */
#define TOP_IO_TIMEOUT_S 5

struct top_queue {
    char name[208];
    double ready, delayed, reserved, dead, oldest_s, puts, acks;
    double put_rate, ack_rate;
};

struct top_state {
    struct top_queue queues[TOP_QUEUES_MAX];
    uint32_t count;
    double connections, uptime_s;
    struct timespec taken;
};

static struct termios saved_termios;
static bool raw_mode;
static volatile sig_atomic_t stop_signal;

static void term_restore(void)
{
    if (!raw_mode)
        return;
    (void)!write(STDOUT_FILENO, "\033[?25h\033[?1049l", 14);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_termios);
    raw_mode = false;
}

static void on_signal(int signo)
{
    stop_signal = signo;
}

static int term_raw(void)
{
    if (tcgetattr(STDIN_FILENO, &saved_termios) != 0)
        return -errno;
    struct termios t = saved_termios;
    t.c_lflag &= ~(tcflag_t)(ICANON | ECHO | ISIG | IEXTEN);
    t.c_iflag &= ~(tcflag_t)(IXON | ICRNL);
    t.c_cc[VMIN] = 0;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) != 0)
        return -errno;
    raw_mode = true;
    atexit(term_restore);
    (void)!write(STDOUT_FILENO, "\033[?1049h\033[?25l", 14);
    return 0;
}

/* GET path over HTTP/1.0 (the server closes after the answer). 0 and *body (malloc'ed), or a
 * negative errno; *status gets the HTTP status. */
static int http_get(const char *addr, const char *path, char **body, int *status)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || (size_t)(colon - addr) >= sizeof(host))
        return -EINVAL;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
        return -EHOSTUNREACH;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = TOP_IO_TIMEOUT_S};
    int rc = 0;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 ||
        connect(fd, res->ai_addr, res->ai_addrlen) != 0)
        rc = -errno;
    freeaddrinfo(res);
    const char *auth = getenv("SPOOL_AUTH");
    char req[1024];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\n%s%s%sConnection: close\r\n\r\n",
                     path, addr, auth != NULL ? "Authorization: Bearer " : "",
                     auth != NULL ? auth : "", auth != NULL ? "\r\n" : "");
    if (rc == 0 && (n < 0 || (size_t)n >= sizeof(req) || write(fd, req, (size_t)n) != n))
        rc = -EIO;
    size_t len = 0, cap = 65536;
    char *buf = rc == 0 ? malloc(cap) : NULL;
    while (rc == 0 && buf != NULL) {
        if (len + 1 == cap) {
            char *more = cap < TOP_RESPONSE_MAX ? realloc(buf, cap * 2) : NULL;
            if (more == NULL) {
                rc = -EFBIG;
                break;
            }
            buf = more;
            cap *= 2;
        }
        ssize_t got = read(fd, buf + len, cap - len - 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            rc = -errno;
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    if (fd >= 0)
        close(fd);
    if (rc == 0 && buf == NULL)
        rc = -ENOMEM;
    if (rc != 0) {
        free(buf);
        return rc;
    }
    buf[len] = '\0';
    char *start = strstr(buf, "\r\n\r\n");
    if (sscanf(buf, "HTTP/%*s %d", status) != 1 || start == NULL) {
        free(buf);
        return -EPROTO;
    }
    memmove(buf, start + 4, len - (size_t)(start + 4 - buf) + 1);
    *body = buf;
    return 0;
}

static struct top_queue *top_find(struct top_state *s, const char *name)
{
    for (uint32_t i = 0; i < s->count; i++)
        if (strcmp(s->queues[i].name, name) == 0)
            return &s->queues[i];
    if (s->count == TOP_QUEUES_MAX)
        return NULL;
    struct top_queue *q = &s->queues[s->count++];
    memset(q, 0, sizeof(*q));
    snprintf(q->name, sizeof(q->name), "%s", name);
    return q;
}

/* One sample line: the queue's field it names, if any. */
static void top_line(struct top_state *s, const char *line)
{
    char name[128], queue[208], state[32];
    double v;
    if (sscanf(line, "spool_queue_jobs{queue=\"%207[^\"]\",state=\"%31[^\"]\"} %lf", queue,
               state, &v) == 3) {
        struct top_queue *q = top_find(s, queue);
        if (q == NULL)
            return;
        if (strcmp(state, "ready") == 0)
            q->ready = v;
        else if (strcmp(state, "delayed") == 0)
            q->delayed = v;
        else if (strcmp(state, "reserved") == 0)
            q->reserved = v;
        else if (strcmp(state, "dead") == 0)
            q->dead = v;
        return;
    }
    if (sscanf(line, "%127[a-z_]{queue=\"%207[^\"]\"} %lf", name, queue, &v) == 3) {
        struct top_queue *q = strncmp(name, "spool_queue_", 12) == 0 ? top_find(s, queue) : NULL;
        if (q == NULL)
            return;
        if (strcmp(name, "spool_queue_oldest_ready_age_seconds") == 0)
            q->oldest_s = v;
        else if (strcmp(name, "spool_queue_puts_total") == 0)
            q->puts = v;
        else if (strcmp(name, "spool_queue_acks_total") == 0)
            q->acks = v;
        return;
    }
    if (sscanf(line, "spool_connections %lf", &v) == 1)
        s->connections = v;
    else if (sscanf(line, "spool_uptime_seconds %lf", &v) == 1)
        s->uptime_s = v;
}

static void top_parse(struct top_state *s, char *text)
{
    s->count = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n"))
        if (line[0] != '#')
            top_line(s, line);
    clock_gettime(CLOCK_MONOTONIC, &s->taken);
}

/* Rates from the previous reading (same queue name); 0 for a new queue. */
static void top_rates(struct top_state *now, const struct top_state *before)
{
    double dt = (double)(now->taken.tv_sec - before->taken.tv_sec) +
                (double)(now->taken.tv_nsec - before->taken.tv_nsec) / 1e9;
    for (uint32_t i = 0; i < now->count; i++) {
        struct top_queue *q = &now->queues[i];
        q->put_rate = q->ack_rate = 0;
        for (uint32_t k = 0; k < before->count && dt > 0; k++) {
            const struct top_queue *p = &before->queues[k];
            if (strcmp(p->name, q->name) != 0)
                continue;
            q->put_rate = q->puts >= p->puts ? (q->puts - p->puts) / dt : 0;
            q->ack_rate = q->acks >= p->acks ? (q->acks - p->acks) / dt : 0;
            break;
        }
    }
}

static int depth_cmp(const void *a, const void *b)
{
    const struct top_queue *qa = a, *qb = b;
    double da = qa->ready + qa->delayed + qa->reserved + qa->dead;
    double db = qb->ready + qb->delayed + qb->reserved + qb->dead;
    if (da != db)
        return da < db ? 1 : -1;
    return strcmp(qa->name, qb->name);
}

static void fmt_age(char *out, size_t size, double s)
{
    if (s <= 0)
        snprintf(out, size, "-");
    else if (s < 120)
        snprintf(out, size, "%.1fs", s);
    else if (s < 7200)
        snprintf(out, size, "%.1fm", s / 60);
    else
        snprintf(out, size, "%.1fh", s / 3600);
}

static void top_draw(FILE *f, struct top_state *s, const char *addr, bool tty, uint32_t rows)
{
    qsort(s->queues, s->count, sizeof(s->queues[0]), depth_cmp);
    if (tty)
        fputs("\033[H\033[2J", f);
    const char *nl = tty ? "\r\n" : "\n";
    fprintf(f, "spool top  %s  queues %u  connections %.0f  up %.0fs   (q to quit)%s%s", addr,
            s->count, s->connections, s->uptime_s, nl, nl);
    fprintf(f, "%s%-32s %10s %9s %9s %8s %9s %9s %9s%s", tty ? "\033[7m" : "", "QUEUE", "READY",
            "DELAYED", "RESERVED", "DEAD", "PUT/s", "ACK/s", "OLDEST", tty ? "\033[0m" : "");
    fputs(nl, f);
    uint32_t shown = rows > 4 ? rows - 4 : 1;
    for (uint32_t i = 0; i < s->count && (!tty || i < shown); i++) {
        const struct top_queue *q = &s->queues[i];
        char age[32];
        fmt_age(age, sizeof(age), q->oldest_s);
        bool warn = tty && q->ready > 0 && q->oldest_s >= 60;
        fprintf(f, "%-32.32s %10.0f %9.0f %9.0f %s%8.0f%s %9.1f %9.1f %s%9s%s%s", q->name,
                q->ready, q->delayed, q->reserved, tty && q->dead > 0 ? "\033[31m" : "",
                q->dead, tty && q->dead > 0 ? "\033[0m" : "", q->put_rate, q->ack_rate,
                warn ? "\033[33;1m" : "", age, warn ? "\033[0m" : "", nl);
    }
    fflush(f);
}

/* Wait up to interval_ms for a key: true if the user asked to quit. */
static bool top_wait_key(int interval_ms)
{
    struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
    int rc = poll(&p, 1, interval_ms);
    if (rc <= 0)
        return stop_signal != 0;
    char c;
    while (read(STDIN_FILENO, &c, 1) == 1)
        if (c == 'q' || c == 'Q' || c == 3 /* Ctrl-C */ || c == 4 /* Ctrl-D */)
            return true;
    return stop_signal != 0;
}

static int top_fetch(const char *addr, struct top_state *s)
{
    char *body = NULL;
    int status = 0;
    int rc = http_get(addr, "/metrics", &body, &status);
    if (rc != 0) {
        term_restore();
        fprintf(stderr, "CONNECTION_CLOSED: cannot read http://%s/metrics: %s\n", addr,
                strerror(-rc));
        return CLI_EXIT_RETRY;
    }
    if (status != 200) {
        term_restore();
        fprintf(stderr, "%s: http://%s/metrics answered %d%s\n",
                status == 401 ? "AUTH_FAILED" : "PROTOCOL", addr, status,
                status == 401 ? " (set SPOOL_AUTH to spoold's secret)" : "");
        free(body);
        return CLI_EXIT_ERROR;
    }
    top_parse(s, body);
    free(body);
    return 0;
}

int cmd_top(struct cli *cli, int argc, char **argv)
{
    struct cli_opt opts[] = {{"http", false, NULL}, {"interval", false, NULL},
                             {"once", true, NULL}};
    char *pos[1];
    size_t npos = 0;
    int rc = cli_parse(argc, argv, opts, 3, pos, 0, &npos, NULL);
    if (rc != 0)
        return rc;
    const char *addr = opts[0].value != NULL ? opts[0].value : getenv("SPOOL_HTTP");
    if (addr == NULL || addr[0] == '\0')
        addr = "127.0.0.1:7712";
    uint32_t interval_ms = 1000;
    if (opts[1].value != NULL && (!cli_u32(opts[1].value, &interval_ms) || interval_ms < 100))
        return cli_usage("--interval is milliseconds, at least 100");
    (void)cli;
    bool tty = opts[2].value == NULL && isatty(STDOUT_FILENO) && isatty(STDIN_FILENO);
    static struct top_state states[2];
    struct top_state *now = &states[0], *before = &states[1];
    if ((rc = top_fetch(addr, before)) != 0)
        return rc;
    if (!tty) {
        top_draw(stdout, before, addr, false, 0);
        return 0;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (term_raw() != 0)
        return cli_usage("stdin is not a terminal that can be put in raw mode");
    top_draw(stdout, before, addr, true, 24);
    while (!top_wait_key((int)interval_ms)) {
        if ((rc = top_fetch(addr, now)) != 0)
            return rc;
        top_rates(now, before);
        struct winsize ws;
        uint32_t rows = ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 ? ws.ws_row
                                                                                    : 24;
        top_draw(stdout, now, addr, true, rows);
        struct top_state *t = before;
        before = now;
        now = t;
    }
    term_restore();
    return 0;
}
