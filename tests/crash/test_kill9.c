/*
 * kill -9 under load, judged by a history checker.
 *
 * spoold runs on 127.0.0.1 port 0 in a temp dir (small segments and frequent checkpoints, so
 * segment rolls, checkpoints and segment drops all happen between the kills) with the default
 * `--sync always`. crash_load runs producers and consumers against it, recording every request
 * and outcome in history files. Meanwhile this driver kills spoold with SIGKILL at seeded random
 * moments (some right after a start, most after a few hundred ms of load, and some while it
 * is still recovering), restarts it on the same directory each time and records each kill and
 * start in driver.hist. Then crash_load is
 * stopped, a drain reserves and acks every job left until the queue is empty, spoold is killed
 * once more and a second drain checks that nothing acked comes back. check_history.py then
 * decides from the histories alone (see there for the rules); its verdict is the test's.
 *
 * Compaction: before the load, the driver buries one job in a queue of its own (not the
 * load's): it pins the first segment while the load acks everything around it, so compaction
 * copies it forward (and its copies again) between kills. At the end it must still be there,
 * dead, with its reason and body; the log's count of compaction cycles is printed.
 *
 * The seed is printed; CRASH_SEED=N reproduces the kill schedule and every worker's choices
 * (not the exact interleaving: that depends on the machine). CRASH_KILLS=N changes the number
 * of kills. On failure the temp dir (histories, data, spoold.log) is kept and named.
 *
 * Usage (meson sets SPOOLD): test_kill9 CRASH_LOAD PYTHON CHECK_HISTORY_PY
 */
#include "spoold_harness.h"

#include <spool/client.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crash_util.h"

/* At least 30 kills per run (issue 9); a few more so that a slow start still clears it. */
#define KILL9_KILLS_DEFAULT 36
/* The checker refuses a run with fewer kills than this. */
#define KILL9_KILLS_MIN 30
/* The kill loop stops after this long even if kills remain: with ~0.7 s of load per kill and
 * a restart of up to a second on a loaded machine, 36 kills take 25..40 s; past 90 s the run
 * is failed by the checker's kill count rather than by meson's timeout. The bounds below add
 * up to under meson's 300 s: 90 + a restart (20) + stopping crash_load (15) + drains (45 + a
 * restart + 15) + spoold's stop (20) + the checker (60). */
#define KILL9_LOOP_BUDGET_MS 90000
/* Delays before a kill: a quarter of the kills come within 100 ms of a start (recovery's
 * first checkpoint and the first connections), the rest after 150..1200 ms of load. */
#define KILL9_EARLY_PERCENT 25
#define KILL9_EARLY_MAX_MS 100
#define KILL9_LATE_MIN_MS 150
#define KILL9_LATE_MAX_MS 1200
/* After this share of the kills, spoold is also started and killed again within
 * KILL9_RECOVERY_KILL_MAX_MS, before it listens (while it recovers), when the harness can not
 * reach it. */
#define KILL9_RECOVERY_KILL_PERCENT 15
#define KILL9_RECOVERY_KILL_MAX_MS 40
/* Bounds for the drains and for crash_load to stop after SIGTERM (its longest blocking call
 * is a lease left to expire, under a second). */
#define KILL9_DRAIN_MS 40000
#define KILL9_VERIFY_DRAIN_MS 10000
#define KILL9_STOP_WAIT_MS 15000
#define KILL9_CHECKER_MS 60000
/* The checker also wants this many acknowledged puts: a run that did nothing proves nothing. */
#define KILL9_PUTS_MIN 300

/* 1 MiB segments and a checkpoint every 256 KiB of log or 500 ms, so that segment rolls,
 * checkpoints and segment drops all happen between kills (a run writes a few MiB); jobs must
 * fit a quarter of a segment, hence the smaller job limit. --sync always is the default. */
static const char *const spoold_args[] = {
    "--segment-size",
    "1m",
    "--max-job-size",
    "64k",
    "--checkpoint-bytes",
    "256k",
    "--checkpoint-interval",
    "500",
    NULL,
};

struct kill9 {
    struct spoold server;
    const char *load_bin;
    const char *python;
    const char *checker;
    char history[700];
    FILE *driver_hist;
    uint64_t pinned_id; /* the buried job that pins the first segment (compaction) */
    uint64_t seed;
    uint64_t rng;
    int kills_wanted;
    int kills_done;     /* of a listening spoold */
    int recovery_kills; /* of a spoold still starting */
};

__attribute__((format(printf, 2, 3))) static void driver_event(struct kill9 *k, const char *fmt,
                                                               ...)
{
    fprintf(k->driver_hist, "%" PRId64 " ", now_ns());
    va_list ap;
    va_start(ap, fmt);
    vfprintf(k->driver_hist, fmt, ap);
    va_end(ap);
    fputc('\n', k->driver_hist);
    fflush(k->driver_hist);
}

static pid_t spawn(const char *const *argv)
{
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

/* Wait for pid up to timeout_ms; its exit status, or -1 (then it was killed). */
static int wait_exit(pid_t pid, int64_t timeout_ms)
{
    int64_t deadline = now_ns() + timeout_ms * 1000000ll;
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (now_ns() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            return -1;
        }
        sleep_ms(10);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static pid_t load_start(struct kill9 *k, const char *drain_name, int64_t drain_ms)
{
    char seed[32], ms[32];
    snprintf(seed, sizeof(seed), "%" PRIu64, k->seed);
    snprintf(ms, sizeof(ms), "%" PRId64, drain_ms);
    const char *argv[] = {k->load_bin, "--ready",  k->server.ready,
                          "--history", k->history, "--seed",
                          seed,        NULL,       NULL,
                          NULL,        NULL,       NULL};
    if (drain_name != NULL) {
        argv[7] = "--drain";
        argv[8] = drain_name;
        argv[9] = "--drain-ms";
        argv[10] = ms;
    }
    return spawn(argv);
}

static int64_t kill_delay_ms(struct kill9 *k)
{
    if (rng_next(&k->rng) % 100 < KILL9_EARLY_PERCENT)
        return (int64_t)(rng_next(&k->rng) % (KILL9_EARLY_MAX_MS + 1));
    return KILL9_LATE_MIN_MS +
           (int64_t)(rng_next(&k->rng) % (KILL9_LATE_MAX_MS - KILL9_LATE_MIN_MS + 1));
}

/* Start spoold on the data directory as the harness does, and SIGKILL it a few ms later,
 * while it recovers (or, on a quick start, just after it listens). */
static int recovery_kill(struct kill9 *k)
{
    unlink(k->server.ready);
    const char *argv[32] = {getenv("SPOOLD"), "--data",       k->server.data, "--listen",
                            "127.0.0.1:0",    "--ready-file", k->server.ready};
    int argc = 7;
    for (int i = 0; spoold_args[i] != NULL; i++)
        argv[argc++] = spoold_args[i];
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (freopen(k->server.log, "a", stderr) != NULL)
            dup2(2, 1); /* spoold never holds the test runner's stdout open */
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    if (pid < 0)
        return -1;
    sleep_ms((int64_t)(rng_next(&k->rng) % (KILL9_RECOVERY_KILL_MAX_MS + 1)));
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
        fprintf(stderr, "FAIL: spoold exited by itself while recovering (status %d): see %s\n",
                status, k->server.log);
        return -1;
    }
    driver_event(k, "kill n=%d pid=%d phase=recovery", k->kills_done + 1, (int)pid);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    k->recovery_kills++;
    return 0;
}

/* SIGKILL spoold and start it again on the same directory. */
static int crash_restart(struct kill9 *k)
{
    int status = 0;
    if (waitpid(k->server.pid, &status, WNOHANG) == k->server.pid) {
        fprintf(stderr, "FAIL: spoold exited by itself under load (status %d): see %s\n", status,
                k->server.log);
        k->server.pid = 0;
        return -1;
    }
    driver_event(k, "kill n=%d pid=%d", k->kills_done + 1, (int)k->server.pid);
    spoold_kill(&k->server);
    k->kills_done++;
    if (rng_next(&k->rng) % 100 < KILL9_RECOVERY_KILL_PERCENT && recovery_kill(k) != 0)
        return -1;
    if (spoold_restart(&k->server, spoold_args) != 0) {
        fprintf(stderr, "FAIL: spoold did not restart after kill %d\n", k->kills_done);
        return -1;
    }
    driver_event(k, "start pid=%d addr=%s", (int)k->server.pid, k->server.addr);
    return 0;
}

#define KILL9_PINNED_QUEUE "kill9-pinned"
#define KILL9_PINNED_BODY "pinned by the kill -9 driver"
#define KILL9_PINNED_REASON "kept dead on purpose"

/* Put and bury the job that pins the first segment; 0 or -1. */
static int pinned_put(struct kill9 *k)
{
    spool_client *c = NULL;
    if (spool_connect(k->server.addr, 5000, &c) != 0)
        return -1;
    struct spool_job_spec spec = {.queue = KILL9_PINNED_QUEUE, .body = KILL9_PINNED_BODY,
                                  .body_len = strlen(KILL9_PINNED_BODY)};
    const char *queues[1] = {KILL9_PINNED_QUEUE};
    struct spool_delivery *d = NULL;
    size_t got = 0;
    int rc = spool_put(c, &spec, &k->pinned_id);
    if (rc == 0)
        rc = spool_reserve(c, queues, 1, 1, 0, 0, &d, &got);
    if (rc == 0 && got == 1)
        rc = spool_bury(c, d->id, d->lease, KILL9_PINNED_REASON);
    spool_deliveries_free(d);
    spool_close(c);
    return rc == 0 && got == 1 ? 0 : -1;
}

/* After every kill: the pinned job is there, dead, with its reason and body. */
static int pinned_check(struct kill9 *k)
{
    spool_client *c = NULL;
    if (spool_connect(k->server.addr, 5000, &c) != 0)
        return -1;
    struct spool_job *job = NULL;
    int rc = spool_peek(c, k->pinned_id, &job);
    bool ok = rc == 0 && job->state == SPOOL_STATE_DEAD &&
              strcmp(job->reason, KILL9_PINNED_REASON) == 0 &&
              job->body_len == strlen(KILL9_PINNED_BODY) &&
              memcmp(job->body, KILL9_PINNED_BODY, job->body_len) == 0;
    if (!ok)
        fprintf(stderr, "FAIL: the pinned job %" PRIu64 " is lost or changed (peek: %d)\n",
                k->pinned_id, rc);
    spool_job_free(job);
    spool_close(c);
    return ok ? 0 : -1;
}

/* How many compaction cycles spoold logged over the run (at least one is required: the
 * pinned job makes its segment worth compacting within a second of load). */
static int compactions_logged(const struct kill9 *k)
{
    FILE *f = fopen(k->server.log, "r");
    if (f == NULL)
        return 0;
    char line[2048];
    int count = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        count += strstr(line, "msg=compaction ") != NULL;
    fclose(f);
    return count;
}

/* The kill schedule, while the load runs. */
static int kill_loop(struct kill9 *k, pid_t load)
{
    int64_t deadline = now_ns() + KILL9_LOOP_BUDGET_MS * 1000000ll;
    while (k->kills_done < k->kills_wanted && now_ns() < deadline) {
        sleep_ms(kill_delay_ms(k));
        if (waitpid(load, NULL, WNOHANG) == load) {
            fprintf(stderr, "FAIL: crash_load exited during the run\n");
            return -1;
        }
        if (crash_restart(k) != 0 || pinned_check(k) != 0)
            return -1;
    }
    if (k->kills_done < k->kills_wanted)
        fprintf(stderr, "kill loop out of time after %d kills\n", k->kills_done);
    return 0;
}

static int run_phases(struct kill9 *k)
{
    pid_t load = load_start(k, NULL, 0);
    if (load < 0 || kill_loop(k, load) != 0)
        return -1;
    kill(load, SIGTERM);
    int rc = wait_exit(load, KILL9_STOP_WAIT_MS);
    if (rc != 0) {
        fprintf(stderr, "FAIL: crash_load exit status %d after SIGTERM\n", rc);
        return -1;
    }
    driver_event(k, "phase name=drain1");
    rc = wait_exit(load_start(k, "drain1", KILL9_DRAIN_MS), KILL9_DRAIN_MS + 5000);
    if (rc != 0)
        fprintf(stderr, "drain1 exit status %d (the checker reports why)\n", rc);
    /* One more crash after everything is acked: nothing may come back. */
    if (crash_restart(k) != 0)
        return -1;
    driver_event(k, "phase name=drain2");
    rc = wait_exit(load_start(k, "drain2", KILL9_VERIFY_DRAIN_MS), KILL9_VERIFY_DRAIN_MS + 5000);
    if (rc != 0)
        fprintf(stderr, "drain2 exit status %d (the checker reports why)\n", rc);
    if (pinned_check(k) != 0)
        return -1;
    int cycles = compactions_logged(k);
    printf("compaction cycles logged: %d\n", cycles);
    if (cycles == 0) {
        /* The pinned job's segment is below the threshold within a second of load: a run
         * without a single cycle did not test compaction under kills. */
        fprintf(stderr, "FAIL: no compaction cycle ran between the kills: see %s\n",
                k->server.log);
        return -1;
    }
    if (spoold_stop(&k->server) != 0) {
        fprintf(stderr, "FAIL: spoold did not stop cleanly on SIGTERM\n");
        return -1;
    }
    driver_event(k, "stop");
    return 0;
}

static int run_checker(struct kill9 *k)
{
    char kills[32], puts[32];
    snprintf(kills, sizeof(kills), "%d", KILL9_KILLS_MIN);
    snprintf(puts, sizeof(puts), "%d", KILL9_PUTS_MIN);
    const char *argv[] = {k->python,    k->checker, "--min-kills", kills,
                          "--min-puts", puts,       k->history,    NULL};
    return wait_exit(spawn(argv), KILL9_CHECKER_MS);
}

static int setup(struct kill9 *k, char **argv)
{
    const char *env_seed = getenv("CRASH_SEED");
    const char *env_kills = getenv("CRASH_KILLS");
    k->load_bin = argv[1];
    k->python = argv[2];
    k->checker = argv[3];
    k->seed = env_seed != NULL ? strtoull(env_seed, NULL, 10)
                               : ((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20)) % 1000000007u;
    k->rng = k->seed;
    k->kills_wanted = env_kills != NULL ? atoi(env_kills) : KILL9_KILLS_DEFAULT;
    printf("seed=%" PRIu64 " kills=%d (rerun: CRASH_SEED=%" PRIu64 ")\n", k->seed, k->kills_wanted,
           k->seed);
    fflush(stdout);
    if (spoold_start(&k->server, "kill9", spoold_args) != 0)
        return -1;
    snprintf(k->history, sizeof(k->history), "%s/history", k->server.dir);
    if (mkdir(k->history, 0755) != 0)
        return -1;
    char path[800];
    snprintf(path, sizeof(path), "%s/driver.hist", k->history);
    k->driver_hist = fopen(path, "w");
    if (k->driver_hist == NULL)
        return -1;
    fprintf(k->driver_hist, "# crash-history v1 worker=driver seed=%" PRIu64 "\n", k->seed);
    driver_event(k, "start pid=%d addr=%s", (int)k->server.pid, k->server.addr);
    return pinned_put(k);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: test_kill9 CRASH_LOAD PYTHON CHECK_HISTORY_PY\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    static struct kill9 k;
    int64_t start = now_ns();
    int rc = setup(&k, argv);
    if (rc == 0)
        rc = run_phases(&k);
    spoold_kill(&k.server);
    if (rc == 0)
        rc = run_checker(&k);
    printf("kills=%d (and %d during recovery) seed=%" PRIu64 " wall_s=%.1f\n", k.kills_done,
           k.recovery_kills, k.seed, (double)(now_ns() - start) / 1e9);
    if (k.driver_hist != NULL)
        fclose(k.driver_hist);
    if (rc != 0) {
        printf("FAIL (seed %" PRIu64 "): kept %s (histories in history/, spoold.log); "
               "judge again with: %s %s %s/history\n",
               k.seed, k.server.dir, k.python, k.checker, k.server.dir);
        return 1;
    }
    spoold_cleanup(&k.server);
    return 0;
}
