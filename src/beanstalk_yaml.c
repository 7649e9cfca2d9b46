/*
 * The YAML replies of the beanstalkd protocol: stats, stats-job, stats-tube, list-tubes and
 * list-tubes-watched, with beanstalkd 1.12's field names in its order. Fields spool does not
 * track are present with the value that says so (0, or false), as docs/BEANSTALKD.md lists:
 * clients parse every field, so none may be missing.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "server.h"

/* The stats field names of beanstalkd's cmd-* counters, in enum beanstalk_cmd order. */
static const char *const cmd_names[BS_CMD_COUNTED] = {
    [BS_CMD_PUT] = "put",
    [BS_CMD_PEEK] = "peek",
    [BS_CMD_PEEK_READY] = "peek-ready",
    [BS_CMD_PEEK_DELAYED] = "peek-delayed",
    [BS_CMD_PEEK_BURIED] = "peek-buried",
    [BS_CMD_RESERVE] = "reserve",
    [BS_CMD_RESERVE_WITH_TIMEOUT] = "reserve-with-timeout",
    [BS_CMD_DELETE] = "delete",
    [BS_CMD_RELEASE] = "release",
    [BS_CMD_USE] = "use",
    [BS_CMD_WATCH] = "watch",
    [BS_CMD_IGNORE] = "ignore",
    [BS_CMD_BURY] = "bury",
    [BS_CMD_KICK] = "kick",
    [BS_CMD_TOUCH] = "touch",
    [BS_CMD_STATS] = "stats",
    [BS_CMD_STATS_JOB] = "stats-job",
    [BS_CMD_STATS_TUBE] = "stats-tube",
    [BS_CMD_LIST_TUBES] = "list-tubes",
    [BS_CMD_LIST_TUBE_USED] = "list-tube-used",
    [BS_CMD_LIST_TUBES_WATCHED] = "list-tubes-watched",
    [BS_CMD_PAUSE_TUBE] = "pause-tube",
};

/* A YAML document being built (malloc'ed, grown as needed). */
struct yaml {
    char *data;
    size_t len;
    size_t cap;
};

static void yaml_add(struct yaml *y, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void yaml_add(struct yaml *y, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(y->data + y->len, y->cap - y->len, fmt, ap);
        va_end(ap);
        SPOOL_ASSERT(n >= 0);
        if ((size_t)n < y->cap - y->len) {
            y->len += (size_t)n;
            return;
        }
        y->cap = (y->cap + (size_t)n + 1) * 2;
        y->data = realloc(y->data, y->cap);
        SPOOL_ASSERT(y->data != NULL);
    }
}

static void yaml_init(struct yaml *y)
{
    y->cap = 1024;
    y->len = 0;
    y->data = malloc(y->cap);
    SPOOL_ASSERT(y->data != NULL);
    yaml_add(y, "---\n");
}

static void yaml_send(struct conn *conn, struct yaml *y)
{
    beanstalk_reply_data(conn, "OK", y->data, y->len);
    free(y->data);
}

/* A tube as beanstalkd would have it: one that holds jobs, is used or watched (pinned) or
 * waited on, and default. spool keeps a queue longer (the done jobs it remembers after a
 * delete, its settings), but such a tube no longer exists for a beanstalkd client. */
bool beanstalk_tube_exists(const struct queue *queue)
{
    const struct queue_stats *st = &queue->stats;
    return st->ready + st->reserved + st->delayed + st->dead + st->pending > 0 ||
           queue->pins > 0 || queue->reserver_refs > 0 ||
           (queue->name_len == 7 && memcmp(queue->name, "default", 7) == 0);
}

struct totals_walk {
    uint64_t urgent;
    uint64_t total_put;
    uint64_t tubes;
};

static void totals_collect(void *ctx, struct queue *queue)
{
    struct totals_walk *walk = ctx;
    walk->urgent += queue->stats.ready_urgent;
    walk->total_put += queue->stats.total_put;
    walk->tubes += beanstalk_tube_exists(queue);
}

static double timeval_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* The server part: what beanstalkd says of itself, in spool's terms. */
static void stats_server(struct conn *conn, const struct totals_walk *walk,
                         const struct queue_totals *totals, struct yaml *y)
{
    struct server *server = conn->server;
    struct beanstalk_state *bs = server->beanstalk;
    struct rusage ru;
    memset(&ru, 0, sizeof(ru));
    (void)getrusage(RUSAGE_SELF, &ru);
    struct utsname un;
    if (uname(&un) != 0)
        memset(&un, 0, sizeof(un));
    yaml_add(y, "job-timeouts: %llu\n",
             (unsigned long long)queue_job_timeouts(server->queues));
    yaml_add(y, "total-jobs: %llu\nmax-job-size: %u\ncurrent-tubes: %llu\n",
             (unsigned long long)walk->total_put, server->config.job_size_max,
             (unsigned long long)walk->tubes);
    yaml_add(y,
             "current-connections: %u\ncurrent-producers: %u\ncurrent-workers: %u\n"
             "current-waiting: %u\ntotal-connections: %llu\n",
             bs->connections, bs->producers, bs->workers, bs->waiting,
             (unsigned long long)bs->total_connections);
    yaml_add(y, "pid: %ld\nversion: \"spoold %s\"\nrusage-utime: %.6f\nrusage-stime: %.6f\n",
             (long)getpid(), SPOOLD_VERSION, timeval_s(ru.ru_utime), timeval_s(ru.ru_stime));
    yaml_add(y, "uptime: %lld\n", (long long)((server_now_ms() - server->started_ms) / 1000));
    yaml_add(y,
             "binlog-oldest-index: 0\nbinlog-current-index: 0\nbinlog-records-migrated: 0\n"
             "binlog-records-written: 0\nbinlog-max-size: %llu\n",
             (unsigned long long)server->config.segment_size_bytes);
    yaml_add(y, "draining: %s\nid: %s\nhostname: %s\nos: %s\nplatform: %s\n",
             server_space_low(server) ? "true" : "false", bs->id, un.nodename, un.version,
             un.machine);
}

void beanstalk_yaml_stats(struct conn *conn)
{
    struct server *server = conn->server;
    struct queue_totals totals;
    queue_totals_get(server->queues, &totals);
    struct totals_walk walk = {0};
    queue_each(server->queues, totals_collect, &walk);
    struct yaml y;
    yaml_init(&y);
    yaml_add(&y,
             "current-jobs-urgent: %llu\ncurrent-jobs-ready: %llu\ncurrent-jobs-reserved: %llu\n"
             "current-jobs-delayed: %llu\ncurrent-jobs-buried: %llu\n",
             (unsigned long long)walk.urgent, (unsigned long long)totals.ready,
             (unsigned long long)totals.reserved, (unsigned long long)totals.delayed,
             (unsigned long long)totals.dead);
    for (int i = 0; i < BS_CMD_COUNTED; i++)
        yaml_add(&y, "cmd-%s: %llu\n", cmd_names[i],
                 (unsigned long long)server->beanstalk->cmd_counts[i]);
    stats_server(conn, &walk, &totals, &y);
    yaml_send(conn, &y);
}

static const char *state_word(enum job_state state)
{
    switch (state) {
    case JOB_READY: return "ready";
    case JOB_DELAYED: return "delayed";
    case JOB_RESERVED: return "reserved";
    case JOB_DEAD: return "buried";
    default: return "invalid";
    }
}

void beanstalk_yaml_stats_job(struct conn *conn, const struct job *job)
{
    int64_t now_ms = queue_time_wall_ms(conn->server->now);
    int64_t delay_ms =
        queue_job_x(job)->run_at_ms > 0 ? queue_job_x(job)->run_at_ms - job->created_ms : 0;
    int64_t left_ms = job->state == JOB_RESERVED  ? queue_job_x(job)->deadline_ms - now_ms
                      : job->state == JOB_DELAYED ? queue_job_x(job)->run_at_ms - now_ms
                                                  : 0;
    struct yaml y;
    yaml_init(&y);
    yaml_add(&y, "id: %llu\ntube: %s\nstate: %s\npri: %u\n", (unsigned long long)job->id,
             job->queue->name, state_word(job->state), job->priority);
    yaml_add(&y, "age: %lld\ndelay: %lld\nttr: %llu\ntime-left: %lld\nfile: 0\n",
             (long long)((now_ms - job->created_ms) / 1000),
             (long long)(delay_ms > 0 ? delay_ms / 1000 : 0),
             (unsigned long long)(queue_job_ttr_ms(job) / 1000),
             (long long)(left_ms > 0 ? left_ms / 1000 : 0));
    /* reserves: spool's deliveries (reset by a kick). The others come from the side table,
     * which starts empty at a restart: a job buried before it still says it was buried. */
    struct queue_job_counts counts;
    queue_job_counts_get(conn->server->queues, job->id, &counts);
    uint32_t buries = counts.buries == 0 && job->state == JOB_DEAD ? 1u : counts.buries;
    yaml_add(&y, "reserves: %u\ntimeouts: %u\nreleases: %u\nburies: %u\nkicks: %u\n",
             job->attempts, counts.timeouts, counts.releases, buries, counts.kicks);
    yaml_send(conn, &y);
}

void beanstalk_yaml_stats_tube(struct conn *conn, struct queue *queue)
{
    struct server *server = conn->server;
    const struct beanstalk_tube *tube =
        beanstalk_tube_get(server, queue->name, queue->name_len);
    int64_t left_ns = tube->pause_until_ns - server->now.mono_ns;
    const struct queue_stats *st = &queue->stats;
    struct yaml y;
    yaml_init(&y);
    yaml_add(&y,
             "name: %s\ncurrent-jobs-urgent: %llu\ncurrent-jobs-ready: %llu\n"
             "current-jobs-reserved: %llu\ncurrent-jobs-delayed: %llu\n"
             "current-jobs-buried: %llu\ntotal-jobs: %llu\n",
             queue->name, (unsigned long long)queue->stats.ready_urgent,
             (unsigned long long)st->ready, (unsigned long long)st->reserved,
             (unsigned long long)st->delayed, (unsigned long long)st->dead,
             (unsigned long long)st->total_put);
    yaml_add(&y,
             "current-using: %u\ncurrent-watching: %u\ncurrent-waiting: %u\n"
             "cmd-delete: %llu\ncmd-pause-tube: %llu\npause: %lld\npause-time-left: %lld\n",
             tube->using_count, tube->watching_count, tube->waiting_count,
             (unsigned long long)tube->cmd_delete, (unsigned long long)tube->cmd_pause_tube,
             (long long)(tube->pause_until_ns != 0 ? tube->pause_s : 0),
             (long long)(tube->pause_until_ns != 0 && left_ns > 0 ? left_ns / 1000000000 : 0));
    yaml_send(conn, &y);
}

static void tube_name_collect(void *ctx, struct queue *queue)
{
    if (beanstalk_tube_exists(queue))
        yaml_add(ctx, "- %s\n", queue->name);
}

void beanstalk_yaml_list_tubes(struct conn *conn)
{
    struct yaml y;
    yaml_init(&y);
    queue_each(conn->server->queues, tube_name_collect, &y);
    yaml_send(conn, &y);
}

void beanstalk_yaml_list_watched(struct conn *conn)
{
    struct yaml y;
    yaml_init(&y);
    for (uint32_t i = 0; i < conn->bs->watch_count; i++)
        yaml_add(&y, "- %s\n", conn->bs->watch[i]->name);
    yaml_send(conn, &y);
}
