/*
 * spool_work.c: `spool work QUEUE... -- CMD ARGS...`, a worker loop around any program.
 *
 * Per job: reserve one (waiting up to a second at a time, so SIGINT/SIGTERM are noticed),
 * run CMD with the body on its stdin and its stdout captured (stderr passes through), touch
 * the lease at half its remaining time while CMD runs, then ack with the captured stdout as
 * the result on exit 0, or release with exponential backoff (1 s, 2 s, 4 s ... up to
 * --backoff-max) and the exit status as the reason otherwise. If a touch finds the lease lost
 * (LEASE_EXPIRED: the job went to another worker), CMD is terminated and the job left alone.
 *
 * Leases are not detached: if this process dies, the server releases its job at once, and
 * CMD dies with it (PR_SET_PDEATHSIG), so a job is never run twice at the same time because
 * its worker was killed.
 *
 * Stopping: the first SIGTERM or SIGINT stops reserving; the running CMD gets --grace (30 s)
 * to finish (then its job is acked or released as usual). Past the grace, or at a second
 * signal, CMD's process group gets SIGTERM, then SIGKILL after WORK_KILL_WAIT_MS, and its job
 * is released at once for another worker. CMD runs in its own process group so that what it
 * started is stopped with it.
 *
 * Bounds: stdout beyond the 64 KiB result limit is read and discarded; one job at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spool_cli.h"

#define WORK_RESULT_SIZE_MAX ((size_t)64 * 1024) /* the protocol's ack result limit */
#define WORK_RESERVE_WAIT_MS 1000         /* how long one reserve blocks: signal latency */
#define WORK_TOUCH_MIN_MS 200             /* never touch more often than this */
#define WORK_BACKOFF_BASE_MS 1000u
#define WORK_BACKOFF_MAX_MS_DEFAULT 60000u
#define WORK_QUEUES_MAX 16
#define WORK_GRACE_MS_DEFAULT 30000u /* how long a running CMD may finish after SIGTERM */
/* After SIGTERM to CMD's group, this long before SIGKILL: a well-behaved program cleans up in
 * well under it. */
#define WORK_KILL_WAIT_MS 2000

/* Signals received (SIGTERM, SIGINT): 1 stops reserving, 2 stops CMD at once. */
static volatile sig_atomic_t work_stop;

static void work_on_signal(int sig)
{
    (void)sig;
    if (work_stop < 2)
        work_stop++;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A running CMD and what we know of it. */
struct child {
    pid_t pid;
    int in_fd;  /* write end of its stdin, -1 once closed */
    int out_fd; /* read end of its stdout, -1 at EOF */
    size_t in_off;
    char result[WORK_RESULT_SIZE_MAX];
    size_t result_len;
    int status;
    bool exited;
    int64_t term_ms; /* when its group got SIGTERM (stopping), 0 = not yet */
    bool killed;     /* its group got SIGKILL */
};

static int child_start(struct child *ch, char **cmd)
{
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0)
        return -errno;
    if (pipe2(out, O_CLOEXEC) != 0) {
        int rc = -errno;
        close(in[0]);
        close(in[1]);
        return rc;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int rc = -errno;
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        return rc;
    }
    if (pid == 0) {
        /* Die with the worker: its job goes back to the queue then, and must not also keep
         * running here. If the worker died before this line, getppid() already changed. */
        pid_t parent = getppid();
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(126);
        setpgid(0, 0);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        dup2(in[0], STDIN_FILENO);
        dup2(out[1], STDOUT_FILENO);
        execvp(cmd[0], cmd);
        fprintf(stderr, "spool work: cannot run %s: %s\n", cmd[0], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid); /* as the child does: whichever runs first */
    close(in[0]);
    close(out[1]);
    *ch = (struct child){.pid = pid, .in_fd = in[1], .out_fd = out[0]};
    (void)fcntl(ch->in_fd, F_SETFL, O_NONBLOCK);
    (void)fcntl(ch->out_fd, F_SETFL, O_NONBLOCK);
    return 0;
}

/* Feed the body and drain stdout for up to wait_ms. */
static void child_pump(struct child *ch, const struct spool_delivery *d, int wait_ms)
{
    struct pollfd p[2] = {{.fd = ch->in_fd, .events = POLLOUT},
                          {.fd = ch->out_fd, .events = POLLIN}};
    if (ch->in_fd >= 0 && ch->in_off == d->body_len) {
        close(ch->in_fd); /* EOF on CMD's stdin */
        ch->in_fd = -1;
        p[0].fd = -1;
    }
    if (poll(p, 2, wait_ms) <= 0)
        return;
    if (ch->in_fd >= 0 && (p[0].revents & (POLLOUT | POLLERR | POLLHUP))) {
        ssize_t n = write(ch->in_fd, (const char *)d->body + ch->in_off, d->body_len - ch->in_off);
        if (n > 0)
            ch->in_off += (size_t)n;
        else if (n < 0 && errno != EAGAIN && errno != EINTR)
            ch->in_off = d->body_len; /* CMD does not read its input: stop offering it */
    }
    if (ch->out_fd >= 0 && (p[1].revents & (POLLIN | POLLERR | POLLHUP))) {
        char buf[4096];
        ssize_t n = read(ch->out_fd, buf, sizeof buf);
        if (n > 0) {
            size_t keep = WORK_RESULT_SIZE_MAX - ch->result_len;
            keep = (size_t)n < keep ? (size_t)n : keep;
            memcpy(ch->result + ch->result_len, buf, keep);
            ch->result_len += keep;
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            close(ch->out_fd);
            ch->out_fd = -1;
        }
    }
}

static void child_reap(struct child *ch, bool block)
{
    if (ch->exited)
        return;
    int status;
    pid_t r = waitpid(ch->pid, &status, block ? 0 : WNOHANG);
    if (r == ch->pid) {
        ch->exited = true;
        ch->status = status;
    }
}

static void child_close(struct child *ch)
{
    if (ch->in_fd >= 0)
        close(ch->in_fd);
    if (ch->out_fd >= 0)
        close(ch->out_fd);
    ch->in_fd = ch->out_fd = -1;
}

/* Touch when half the lease is gone; false if the lease is lost. */
static bool lease_keep(spool_client *c, const struct spool_delivery *d, int64_t *deadline_ms,
                       int64_t *next_touch_ms)
{
    if (wall_ms() < *next_touch_ms)
        return true;
    uint64_t deadline = 0;
    int err = spool_touch(c, d->id, d->lease, 0, &deadline);
    if (err != 0) {
        fprintf(stderr, "spool work: job %llu: touch: %s: %s\n", (unsigned long long)d->id,
                spool_error_name(err), spool_strerror(err));
        return false;
    }
    *deadline_ms = (int64_t)deadline;
    int64_t half = (*deadline_ms - wall_ms()) / 2;
    *next_touch_ms = wall_ms() + (half > WORK_TOUCH_MIN_MS ? half : WORK_TOUCH_MIN_MS);
    return true;
}

/* Stop CMD's process group once the grace after a first signal is over (SIGTERM, then SIGKILL
 * after WORK_KILL_WAIT_MS), or at once at a second signal (SIGKILL). True once CMD is being
 * stopped. */
static bool child_stop_due(struct child *ch, int64_t *grace_end_ms, uint64_t grace_ms)
{
    if (work_stop == 0 || ch->exited)
        return ch->term_ms != 0;
    int64_t now = mono_ms();
    if (*grace_end_ms == 0)
        *grace_end_ms = now + (int64_t)grace_ms;
    if (ch->term_ms == 0 && now >= *grace_end_ms) {
        fprintf(stderr, "spool work: grace period over: stopping the running command\n");
        kill(-ch->pid, SIGTERM);
        ch->term_ms = now;
    }
    bool kill_due = work_stop >= 2 || (ch->term_ms != 0 && now - ch->term_ms >= WORK_KILL_WAIT_MS);
    if (kill_due && !ch->killed) {
        kill(-ch->pid, SIGKILL);
        ch->killed = true;
        if (ch->term_ms == 0)
            ch->term_ms = now;
    }
    return ch->term_ms != 0;
}

/* Run CMD for one delivery until it exits (or the lease is lost: then kill it). */
static int run_child(spool_client *c, const struct spool_delivery *d, char **cmd, struct child *ch,
                     bool *lease_lost, uint64_t grace_ms)
{
    int rc = child_start(ch, cmd);
    if (rc != 0)
        return rc;
    int64_t deadline_ms = (int64_t)d->deadline_ms;
    int64_t half = (deadline_ms - wall_ms()) / 2;
    int64_t next_touch_ms = wall_ms() + (half > WORK_TOUCH_MIN_MS ? half : WORK_TOUCH_MIN_MS);
    int64_t grace_end_ms = 0;
    *lease_lost = false;
    while (!ch->exited || ch->out_fd >= 0) {
        if (child_stop_due(ch, &grace_end_ms, grace_ms) && ch->exited)
            break; /* stopped: what it left in its pipe is not a result */
        int64_t wait = next_touch_ms - wall_ms();
        wait = wait < 0 ? 0 : (wait > 100 ? 100 : wait);
        if (ch->in_fd >= 0 || ch->out_fd >= 0)
            child_pump(ch, d, (int)wait);
        else
            poll(NULL, 0, (int)wait);
        child_reap(ch, false);
        if (!*lease_lost && !lease_keep(c, d, &deadline_ms, &next_touch_ms)) {
            *lease_lost = true;
            kill(-ch->pid, SIGTERM);
            break;
        }
    }
    child_close(ch);
    child_reap(ch, true);
    return 0;
}

static uint64_t backoff_ms(uint32_t attempt, uint64_t max_ms)
{
    uint64_t ms = WORK_BACKOFF_BASE_MS;
    for (uint32_t i = 1; i < attempt && ms < max_ms; i++)
        ms *= 2;
    return ms < max_ms ? ms : max_ms;
}

/* One delivery: run, then ack or release. Returns a connection error, else 0. */
static int work_one(spool_client *c, const struct spool_delivery *d, char **cmd,
                    uint64_t backoff_max_ms, uint64_t grace_ms)
{
    static struct child ch; /* 64 KiB of result buffer: not on the stack */
    bool lost = false;
    int rc = run_child(c, d, cmd, &ch, &lost, grace_ms);
    char reason[128];
    if (rc != 0) {
        snprintf(reason, sizeof reason, "cannot start %s: %s", cmd[0], spool_strerror(rc));
    } else if (lost) {
        fprintf(stderr, "spool work: job %llu: lease lost, not acked\n", (unsigned long long)d->id);
        return 0;
    } else if (ch.term_ms != 0) {
        /* Stopped by us, not failed: back to the queue at once, priority kept. */
        int err = spool_release(c, d->id, d->lease, 0, -1);
        fprintf(stderr, "spool work: job %llu attempt %u: stopped, released%s%s\n",
                (unsigned long long)d->id, d->attempt, err ? ", release failed: " : "",
                err ? spool_error_name(err) : "");
        return err == SPOOL_E_LEASE_EXPIRED || err == SPOOL_E_NOT_FOUND ? 0 : err;
    } else if (WIFEXITED(ch.status) && WEXITSTATUS(ch.status) == 0) {
        int err = spool_ack(c, d->id, d->lease, ch.result, ch.result_len);
        fprintf(stderr, "spool work: job %llu attempt %u: done%s%s\n", (unsigned long long)d->id,
                d->attempt, err ? ", ack failed: " : "", err ? spool_error_name(err) : "");
        return err == SPOOL_E_LEASE_EXPIRED || err == SPOOL_E_NOT_FOUND ? 0 : err;
    } else if (WIFEXITED(ch.status)) {
        snprintf(reason, sizeof reason, "exit status %d", WEXITSTATUS(ch.status));
    } else {
        snprintf(reason, sizeof reason, "killed by signal %d",
                 WIFSIGNALED(ch.status) ? WTERMSIG(ch.status) : 0);
    }
    uint64_t delay = backoff_ms(d->attempt, backoff_max_ms);
    int err = spool_fail(c, d->id, d->lease, delay, reason);
    fprintf(stderr, "spool work: job %llu attempt %u: %s, retry in %llu ms%s%s\n",
            (unsigned long long)d->id, d->attempt, reason, (unsigned long long)delay,
            err ? ", release failed: " : "", err ? spool_error_name(err) : "");
    return err == SPOOL_E_LEASE_EXPIRED || err == SPOOL_E_NOT_FOUND ? 0 : err;
}

static void work_signals(void)
{
    struct sigaction sa = {.sa_handler = work_on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a CMD that exits before reading its stdin */
}

int cmd_work(struct cli *cli, int argc, char **argv)
{
    struct cli_opt o[] = {
        {"max-jobs", false, NULL}, {"backoff-max", false, NULL}, {"grace", false, NULL}};
    char *queues[WORK_QUEUES_MAX];
    size_t n;
    int rest;
    int rc = cli_parse(argc, argv, o, 3, queues, WORK_QUEUES_MAX, &n, &rest);
    if (rc != 0)
        return rc;
    uint64_t max_jobs = 0, backoff_max = WORK_BACKOFF_MAX_MS_DEFAULT;
    uint64_t grace_ms = WORK_GRACE_MS_DEFAULT;
    if ((o[0].value && !cli_u64(o[0].value, &max_jobs)) ||
        (o[1].value && !cli_u64(o[1].value, &backoff_max)) ||
        (o[2].value && !cli_u64(o[2].value, &grace_ms)))
        return cli_usage("--max-jobs, --backoff-max and --grace take non-negative integers");
    if (n == 0 || rest < 0 || rest >= argc)
        return cli_usage("work takes QUEUE... -- CMD ARGS...");
    rc = cli_connect(cli);
    if (rc != 0)
        return rc;
    work_signals();
    uint64_t done = 0;
    while (!work_stop && (max_jobs == 0 || done < max_jobs)) {
        struct spool_delivery *d = NULL;
        size_t got = 0;
        int err = spool_reserve(cli->client, (const char *const *)queues, n, 1,
                                WORK_RESERVE_WAIT_MS, 0, &d, &got);
        if (err == 0 && got == 1) {
            err = work_one(cli->client, d, argv + rest, backoff_max, grace_ms);
            done++;
        }
        spool_deliveries_free(d);
        if (err != 0)
            return cli_fail(err, "work");
    }
    return 0;
}
