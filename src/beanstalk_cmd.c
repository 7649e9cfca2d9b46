/*
 * beanstalkd's commands (protocol.txt of beanstalkd 1.12), dispatched through a table.
 *
 * Matching is beanstalkd's: a command that takes arguments is recognised by its name and a
 * space ("delete" alone is UNKNOWN_COMMAND), one that takes none by any line its name begins
 * ("stats " and "reserve-with-timeout" alone are BAD_FORMAT). The dispatcher parses the two
 * common argument shapes (one id, one tube) for the handlers. Numbers are decimal digits with no sign, within u32 (priorities, seconds,
 * sizes) or u64 (ids), separated by spaces, with nothing after the last one; anything else
 * is BAD_FORMAT. Tube names are 1..200 bytes of [A-Za-z0-9+/;.$_()-], not starting with '-'.
 *
 * Mapping (docs/BEANSTALKD.md): a tube is a queue; buried is spool's dead state; a reserved
 * job is leased to the connection's owner, and delete / release / bury / touch act on it
 * through its lease token only when this connection holds it (NOT_FOUND otherwise, as
 * beanstalkd answers for a job reserved by someone else).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "body_fetch.h"
#include "server.h"
#include "slog.h"

/* What a command takes, parsed by the dispatcher for the common shapes (one id, one tube):
 * anything else there is BAD_FORMAT before the handler runs. */
enum bs_arg_kind {
    BS_ARG_NONE, /* nothing: the name alone */
    BS_ARG_ID,   /* one job id */
    BS_ARG_TUBE, /* one tube name */
    BS_ARG_TEXT, /* parsed by the handler from text */
};

struct bs_args {
    const char *text; /* after the command's name and space (NUL-terminated) */
    uint64_t id;      /* BS_ARG_ID */
    const char *tube; /* BS_ARG_TUBE */
    uint32_t tube_len;
    const uint8_t *rest; /* the input after the line (a put's body), rest_len bytes */
    size_t rest_len;
};

/* A command's handler: returns the bytes after the line it consumed (a put's body), or
 * BS_AGAIN (nothing was done: run the line again later). */
#define BS_AGAIN (-1)
typedef int (*bs_handler)(struct conn *conn, const struct bs_args *a);

struct bs_command {
    const char *name;
    enum beanstalk_cmd cmd;
    enum bs_arg_kind args;
    /* It reads job states: it runs only once the connection's earlier replies are out, so
     * that it sees the jobs its own pipelined puts made (they are invisible until durable).
     * quit too: the replies owed before it are sent before the connection closes. */
    bool reads;
    bs_handler run;
};

/* ---- arguments ---- */

/* A decimal number at *p after spaces, at most max; then a space (more follow) or the end
 * (last). False on anything else. */
static bool arg_number(const char **p, uint64_t max, bool last, uint64_t *out)
{
    const char *s = *p;
    while (*s == ' ')
        s++;
    if (*s < '0' || *s > '9')
        return false;
    uint64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        uint64_t digit = (uint64_t)(*s - '0');
        if (v > (max - digit) / 10)
            return false;
        v = v * 10 + digit;
    }
    if (last ? *s != '\0' : *s != ' ')
        return false;
    *out = v;
    *p = s;
    return true;
}

static bool arg_u32(const char **p, bool last, uint32_t *out)
{
    uint64_t v;
    if (!arg_number(p, UINT32_MAX, last, &v))
        return false;
    *out = (uint32_t)v;
    return true;
}

static bool name_byte_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("-+/;.$_()", c) != NULL;
}

/* A tube name at *p: up to a space (then one space is consumed) or the end (last). */
static bool arg_tube(const char **p, bool last, const char **name, uint32_t *len)
{
    const char *s = *p;
    size_t n = 0;
    while (s[n] != '\0' && s[n] != ' ') {
        if (!name_byte_ok(s[n]))
            return false;
        n++;
    }
    if (n == 0 || n > LIMIT_QUEUE_NAME_MAX_BYTES || s[0] == '-')
        return false;
    if (last ? s[n] != '\0' : s[n] != ' ')
        return false;
    *name = s;
    *len = (uint32_t)n;
    *p = s + n + (last ? 0 : 1);
    return true;
}

/* ---- shared pieces ---- */

static void bad_format(struct conn *conn)
{
    beanstalk_reply(conn, 0, "BAD_FORMAT");
}

/* A queue error as beanstalkd's word; -ENOBUFS (log full) is for the caller to stall on. */
static const char *error_word(struct server *server, int error)
{
    switch (error) {
    case QUEUE_ENOTFOUND:
    case QUEUE_ELEASE:
    case QUEUE_ESTATE: return "NOT_FOUND";
    case QUEUE_EFULL:
    case QUEUE_ENOMEM:
    case QUEUE_ETOOMANY: /* --max-queues: beanstalkd's word for a refused allocation */
    case QUEUE_ETOOBIG: return "OUT_OF_MEMORY";
    case QUEUE_EINVAL: return "BAD_FORMAT";
    case LOG_ENOSPC: return "DRAINING";
    default: break;
    }
    if (error == LOG_EPOISONED || (error < 0 && error > -4096)) {
        slog_error("msg=\"log refused a record\" error=\"%s\"", log_strerror(error));
        server->fatal_error = error;
    }
    return "INTERNAL_ERROR";
}

/* Answer a queue call that failed: BS_AGAIN when the log is full (nothing was done). */
static int fail(struct conn *conn, int error)
{
    if (error == -ENOBUFS) {
        beanstalk_stall(conn);
        return BS_AGAIN;
    }
    beanstalk_reply(conn, 0, "%s", error_word(conn->server, error));
    return 0;
}

/* The job by id if this connection holds its reservation. */
static struct job *owned_job(struct conn *conn, uint64_t id)
{
    struct job *job = queue_job_find(conn->server->queues, id);
    if (job == NULL || job->state != JOB_RESERVED || queue_job_x(job)->owner != &conn->owner)
        return NULL;
    return job;
}

static struct queue *used_queue(struct conn *conn)
{
    struct beanstalk_tube *tube = conn->bs->use;
    return queue_find(conn->server->queues, tube->name, tube->name_len);
}

/* What a body fetch answers with (carried in its opcode field). */
enum bs_fetch_kind {
    BS_FETCH_RESERVED = 1,
    BS_FETCH_FOUND = 2,
};

static void job_line(struct conn *conn, enum bs_fetch_kind kind, uint64_t id, const void *body,
                     uint32_t len)
{
    char head[64];
    snprintf(head, sizeof(head), "%s %llu", kind == BS_FETCH_RESERVED ? "RESERVED" : "FOUND",
             (unsigned long long)id);
    beanstalk_reply_data(conn, head, body, len);
}

/* The body is in: answer with what is still true. A reserved job whose lease ran out during
 * the read is someone else's: DEADLINE_SOON (a reply beanstalkd gives to any reserve) makes
 * the client reserve again. */
static void fetched_reply(struct conn *conn, const struct body_fetch *fetch)
{
    const struct body_fetch_job *fj = &fetch->jobs[0];
    struct job *job = queue_job_find(conn->server->queues, fj->id);
    if (fetch->opcode == BS_FETCH_RESERVED && (job == NULL || job->state != JOB_RESERVED ||
                                               queue_job_x(job)->lease_token != fj->lease_token)) {
        beanstalk_reply(conn, 0, "DEADLINE_SOON");
        return;
    }
    if (job == NULL || !queue_job_live(job)) {
        beanstalk_reply(conn, 0, "NOT_FOUND");
        return;
    }
    SPOOL_ASSERT(fj->body != NULL); /* live: it came, or the fetch failed */
    job_line(conn, (enum bs_fetch_kind)fetch->opcode, fj->id, fj->body, fj->len);
}

static void bs_fetched(struct server *server, struct body_fetch *fetch)
{
    struct conn *conn = conn_by_id(server, fetch->conn_id);
    bool alive = conn != NULL && !conn->closing && conn->bs != NULL;
    if (fetch->error != 0) {
        body_fetch_fail_stop(server, fetch);
        if (alive)
            beanstalk_reply(conn, 0, fetch->error == -ENOMEM ? "OUT_OF_MEMORY" : "INTERNAL_ERROR");
    } else if (alive) {
        fetched_reply(conn, fetch);
    }
    if (!alive)
        return;
    conn->bs->fetching = false; /* replies are in order: parsing resumes after this one */
    conn_flush_later(conn);
    conn_make_runnable(conn);
}

/* Send the job with its body: now when the body is cached, else once it is read back from the
 * log (body_fetch.h), the connection parsing nothing meanwhile since beanstalkd answers in
 * order. A settled job (peeked) has no body left. */
static void job_reply(struct conn *conn, enum bs_fetch_kind kind, struct job *job)
{
    if (queue_job_body_missing(job)) {
        if (body_fetch_start(conn->server->fetcher, &job, 1, bs_fetched, conn->id, 0,
                             (uint16_t)kind) != 0) {
            beanstalk_reply(conn, 0, "OUT_OF_MEMORY"); /* a reserved job's lease runs out */
            return;
        }
        conn->bs->fetching = true;
        return;
    }
    job_line(conn, kind, job->id, queue_job_body(job),
             queue_job_body(job) != NULL ? job->body_len : 0);
}

/* ---- put ---- */

/* Jobs put through beanstalkd have no attempt limit unless their queue was given one. */
static int64_t put_max_attempts(struct conn *conn, const char *tube, uint32_t len)
{
    struct queue *queue = queue_find(conn->server->queues, tube, len);
    if (queue != NULL && queue->default_max_attempts != UINT32_MAX)
        return -1;
    return 0;
}

/* The body is here and ends in CRLF: put it. */
static int put_body(struct conn *conn, const uint32_t spec[4], const uint8_t *body)
{
    struct server *server = conn->server;
    struct beanstalk_tube *tube = conn->bs->use;
    struct queue_put_args args = {
        .queue = tube->name, .queue_len = tube->name_len, .priority = spec[0],
        .delay_ms = (int64_t)spec[1] * 1000,
        .ttr_ms = (uint64_t)(spec[2] == 0 ? 1 : spec[2]) * 1000, /* beanstalkd: TTR 0 is 1 */
        .max_attempts = put_max_attempts(conn, tube->name, tube->name_len),
        .body = body, .body_len = spec[3],
    };
    uint64_t id = 0, seq = 0;
    bool duplicate = false;
    int rc = queue_put(server->queues, &args, server->now, &id, &duplicate, &seq);
    if (rc != 0) /* refused: the body is consumed with the answer (unless it must wait) */
        return fail(conn, rc) == BS_AGAIN ? BS_AGAIN : (int)spec[3] + 2;
    if (!conn->bs->producer) {
        conn->bs->producer = true;
        server->beanstalk->producers++;
    }
    beanstalk_reply(conn, seq + 1, "INSERTED %llu", (unsigned long long)id);
    return (int)spec[3] + 2;
}

static int cmd_put(struct conn *conn, const struct bs_args *a)
{
    uint32_t spec[4]; /* pri delay ttr bytes */
    const char *p = a->text;
    for (int i = 0; i < 4; i++) {
        if (!arg_u32(&p, i == 3, &spec[i])) {
            bad_format(conn);
            return 0;
        }
    }
    struct beanstalk_conn *bs = conn->bs;
    struct server *server = conn->server;
    /* Above the memory bound a put is refused as the native protocol's are (QUEUE_FULL
     * there), in beanstalkd's word for "try again later", and its body is never held. */
    const char *refusal = NULL;
    if (spec[3] > server->config.job_size_max) {
        refusal = "JOB_TOO_BIG";
    } else if (server_space_low(server)) {
        refusal = "DRAINING";
    } else if (server_memory_low(server)) {
        refusal = "OUT_OF_MEMORY";
        server->memory.puts_refused++;
    }
    if (refusal != NULL) { /* the body is skipped as it arrives, then the answer */
        bs->skip_bytes = (uint64_t)spec[3] + 2;
        bs->skip_reply = refusal;
        return 0;
    }
    if (a->rest_len < (size_t)spec[3] + 2) { /* the body is not all here */
        bs->body_missing = (uint64_t)spec[3] + 2 - a->rest_len;
        return BS_AGAIN;
    }
    if (a->rest[spec[3]] != '\r' || a->rest[spec[3] + 1] != '\n') {
        beanstalk_reply(conn, 0, "EXPECTED_CRLF");
        return (int)spec[3] + 2;
    }
    return put_body(conn, spec, a->rest);
}

/* ---- tubes of the connection ---- */

static int cmd_use(struct conn *conn, const struct bs_args *a)
{
    struct queue *queue;
    int rc = queue_get(conn->server->queues, a->tube, a->tube_len, &queue);
    if (rc != 0)
        return fail(conn, rc);
    struct beanstalk_tube *tube = beanstalk_tube_get(conn->server, a->tube, a->tube_len);
    beanstalk_tube_count(conn->server, tube, &tube->using_count, 1);
    beanstalk_tube_count(conn->server, conn->bs->use, &conn->bs->use->using_count, -1);
    conn->bs->use = tube;
    beanstalk_reply(conn, 0, "USING %s", tube->name);
    return 0;
}

static int cmd_watch(struct conn *conn, const struct bs_args *a)
{
    struct beanstalk_conn *bs = conn->bs;
    struct queue *queue;
    int rc = queue_get(conn->server->queues, a->tube, a->tube_len, &queue);
    if (rc != 0)
        return fail(conn, rc);
    struct beanstalk_tube *tube = beanstalk_tube_get(conn->server, a->tube, a->tube_len);
    uint32_t i = 0;
    while (i < bs->watch_count && bs->watch[i] != tube)
        i++;
    if (i == bs->watch_count) {
        if (bs->watch_count == BEANSTALK_WATCH_MAX) { /* one reserve waits on this many */
            beanstalk_tube_forget_unused(conn->server, tube); /* if made just now */
            beanstalk_reply(conn, 0, "OUT_OF_MEMORY");
            return 0;
        }
        bs->watch[bs->watch_count++] = tube;
        beanstalk_tube_count(conn->server, tube, &tube->watching_count, 1);
    }
    beanstalk_reply(conn, 0, "WATCHING %u", bs->watch_count);
    return 0;
}

static int cmd_ignore(struct conn *conn, const struct bs_args *a)
{
    struct beanstalk_conn *bs = conn->bs;
    uint32_t i = 0;
    while (i < bs->watch_count && !(bs->watch[i]->name_len == a->tube_len &&
                                    memcmp(bs->watch[i]->name, a->tube, a->tube_len) == 0))
        i++;
    if (i < bs->watch_count) {
        if (bs->watch_count == 1) {
            beanstalk_reply(conn, 0, "NOT_IGNORED");
            return 0;
        }
        beanstalk_tube_count(conn->server, bs->watch[i], &bs->watch[i]->watching_count, -1);
        memmove(&bs->watch[i], &bs->watch[i + 1], (bs->watch_count - i - 1) * sizeof(bs->watch[0]));
        bs->watch_count--;
    }
    beanstalk_reply(conn, 0, "WATCHING %u", bs->watch_count);
    return 0;
}

/* ---- reserve ---- */

/* The soonest lease deadline (Unix ms) of the jobs this connection holds, INT64_MAX if none. */
static int64_t soonest_deadline_ms(struct conn *conn)
{
    int64_t soonest = INT64_MAX;
    struct list_link *head = &conn->owner.jobs;
    for (struct list_link *l = head->next; l != head; l = l->next) {
        const struct job *job = LIST_ENTRY(l, struct job_ext, state_link)->job;
        if (queue_job_x(job)->deadline_ms < soonest)
            soonest = queue_job_x(job)->deadline_ms;
    }
    return soonest;
}

static bool deadline_soon(struct conn *conn, int64_t now_ms)
{
    int64_t soonest = soonest_deadline_ms(conn);
    return soonest != INT64_MAX && soonest - now_ms <= BEANSTALK_SAFETY_MARGIN_MS;
}

/* Is a's next ready job more urgent than b's (beanstalkd serves the most urgent job of all
 * watched tubes, not the first tube's)? Paused or empty queues come last. */
static bool queue_before(struct queue *a, struct queue *b)
{
    const struct job *ja = a->paused ? NULL : heap_top(&a->ready);
    const struct job *jb = b->paused ? NULL : heap_top(&b->ready);
    if (ja == NULL || jb == NULL)
        return ja != NULL;
    return ja->priority != jb->priority ? ja->priority < jb->priority : ja->id < jb->id;
}

/* The reserver over the watched tubes, most urgent first. */
static void reserver_fill(struct conn *conn, struct queue_reserver *r)
{
    struct beanstalk_conn *bs = conn->bs;
    memset(r, 0, sizeof(*r));
    for (uint32_t i = 0; i < bs->watch_count; i++) {
        r->queues[i] = queue_find(conn->server->queues, bs->watch[i]->name,
                                  bs->watch[i]->name_len);
        SPOOL_ASSERT(r->queues[i] != NULL); /* a watched tube's queue is pinned */
        for (uint32_t k = i; k > 0 && queue_before(r->queues[k], r->queues[k - 1]); k--) {
            struct queue *t = r->queues[k];
            r->queues[k] = r->queues[k - 1];
            r->queues[k - 1] = t;
        }
    }
    r->queue_count = bs->watch_count;
    r->count_max = 1;
    r->owner = &conn->owner;
    r->deadline_ns = conn->server->now.mono_ns;
}

static void reserved_reply(struct conn *conn, struct job *job)
{
    struct beanstalk_conn *bs = conn->bs;
    if (!bs->worker) {
        bs->worker = true;
        conn->server->beanstalk->workers++;
    }
    job_reply(conn, BS_FETCH_RESERVED, job);
}

static void waiting_set(struct conn *conn, bool waiting)
{
    struct beanstalk_conn *bs = conn->bs;
    SPOOL_ASSERT(bs->waiting != waiting);
    bs->waiting = waiting;
    for (uint32_t i = 0; i < bs->watch_count; i++)
        bs->watch[i]->waiting_count += waiting ? 1u : (uint32_t)-1;
    conn->server->beanstalk->waiting += waiting ? 1u : (uint32_t)-1;
}

/* Wait until a job comes, the timeout, or the last second of a held lease. */
static void reserve_wait(struct conn *conn)
{
    struct server *server = conn->server;
    struct beanstalk_conn *bs = conn->bs;
    struct queue_reserver *r = &bs->reserver;
    reserver_fill(conn, r);
    int64_t deadline = bs->timeout_ns;
    int64_t soonest = soonest_deadline_ms(conn);
    if (soonest != INT64_MAX) {
        int64_t soon_ns = server->now.mono_ns +
                          (soonest - BEANSTALK_SAFETY_MARGIN_MS -
                           queue_time_wall_ms(server->now)) * QUEUE_NS_PER_MS;
        if (soon_ns < deadline)
            deadline = soon_ns;
    }
    SPOOL_ASSERT(deadline > server->now.mono_ns); /* else TIMED_OUT or DEADLINE_SOON now */
    r->deadline_ns = deadline;
    r->wake = beanstalk_reserve_wake;
    r->ctx = conn;
    struct job *jobs[1];
    uint32_t count = queue_reserve(server->queues, r, server->now, jobs);
    SPOOL_ASSERT(count == 0); /* the poll before found nothing, in the same turn */
    waiting_set(conn, true);
}

/* timeout_s < 0: wait for ever. */
static void reserve(struct conn *conn, int64_t timeout_s)
{
    struct server *server = conn->server;
    struct queue_reserver poll;
    reserver_fill(conn, &poll);
    struct job *jobs[1];
    if (queue_reserve(server->queues, &poll, server->now, jobs) == 1) {
        reserved_reply(conn, jobs[0]);
        return;
    }
    if (deadline_soon(conn, queue_time_wall_ms(server->now))) {
        beanstalk_reply(conn, 0, "DEADLINE_SOON");
        return;
    }
    if (timeout_s == 0) {
        beanstalk_reply(conn, 0, "TIMED_OUT");
        return;
    }
    conn->bs->timeout_ns = timeout_s < 0 ? INT64_MAX
                                         : queue_time_after_ns(server->now,
                                                               (uint64_t)timeout_s * 1000);
    reserve_wait(conn);
}

void beanstalk_reserve_wake(struct queue_reserver *reserver, struct job **jobs, uint32_t count)
{
    struct conn *conn = reserver->ctx;
    struct server *server = conn->server;
    waiting_set(conn, false);
    if (count > 0)
        reserved_reply(conn, jobs[0]);
    else if (server->now.mono_ns >= conn->bs->timeout_ns)
        beanstalk_reply(conn, 0, "TIMED_OUT");
    else if (deadline_soon(conn, queue_time_wall_ms(server->now)))
        beanstalk_reply(conn, 0, "DEADLINE_SOON");
    else
        conn->bs->rewait = true; /* the lease it watched ended otherwise: wait on */
    conn_flush_later(conn);
    conn_make_runnable(conn);
}

void beanstalk_reserve_again(struct conn *conn)
{
    struct server *server = conn->server;
    if (server->now.mono_ns >= conn->bs->timeout_ns)
        beanstalk_reply(conn, 0, "TIMED_OUT");
    else if (deadline_soon(conn, queue_time_wall_ms(server->now)))
        beanstalk_reply(conn, 0, "DEADLINE_SOON");
    else
        reserve_wait(conn); /* its deadline is still ahead: it waits */
}

static int cmd_reserve(struct conn *conn, const struct bs_args *a)
{
    (void)a;
    reserve(conn, -1);
    return 0;
}

/* beanstalkd reads this timeout with strtol and no check: a sign is allowed, garbage is 0,
 * and a negative timeout waits for ever. */
static int cmd_reserve_timeout(struct conn *conn, const struct bs_args *a)
{
    long long timeout = strtoll(a->text, NULL, 10);
    reserve(conn, timeout < 0 ? -1 : timeout > INT32_MAX ? INT32_MAX : timeout);
    return 0;
}

static int cmd_reserve_job(struct conn *conn, const struct bs_args *a)
{
    uint64_t id = a->id;
    struct job *job;
    int rc = queue_reserve_job(conn->server->queues, id, &conn->owner, conn->server->now, &job);
    if (rc != 0)
        return fail(conn, rc);
    reserved_reply(conn, job);
    return 0;
}

/* ---- the reserved job's fate ---- */

static int cmd_delete(struct conn *conn, const struct bs_args *a)
{
    struct server *server = conn->server;
    uint64_t id = a->id;
    struct job *job = queue_job_find(server->queues, id);
    if (job == NULL || job->state == JOB_PENDING || job->state == JOB_DONE ||
        (job->state == JOB_RESERVED && queue_job_x(job)->owner != &conn->owner))
        return fail(conn, QUEUE_ENOTFOUND);
    struct beanstalk_tube *tube = beanstalk_tube_get(server, job->queue->name,
                                                     job->queue->name_len);
    struct queue_logged logged = {0};
    bool acked = job->state == JOB_RESERVED; /* job may be freed by the call */
    int rc = acked ? queue_ack(server->queues, id, queue_job_x(job)->lease_token, NULL, 0,
                               server->now, &logged)
                   : queue_delete(server->queues, id, server->now, &logged);
    if (rc != 0)
        return fail(conn, rc);
    if (acked)
        server->total_acked++;
    tube->cmd_delete++;
    beanstalk_tube_forget_unused(server, tube); /* its last job, named by nobody */
    beanstalk_reply(conn, logged.seq_end, "DELETED");
    return 0;
}

static int cmd_release(struct conn *conn, const struct bs_args *a)
{
    struct server *server = conn->server;
    const char *args = a->text;
    uint64_t id;
    uint32_t pri, delay;
    if (!arg_number(&args, UINT64_MAX, false, &id) || !arg_u32(&args, false, &pri) ||
        !arg_u32(&args, true, &delay)) {
        bad_format(conn);
        return 0;
    }
    struct job *job = owned_job(conn, id);
    if (job == NULL)
        return fail(conn, QUEUE_ENOTFOUND);
    struct queue_logged logged = {0};
    int rc = queue_release(server->queues, id, queue_job_x(job)->lease_token, (int64_t)delay * 1000,
                           pri, "", 0, server->now, &logged);
    if (rc != 0)
        return fail(conn, rc);
    /* Out of attempts (a queue configured with a limit): the release buried it. */
    bool buried = job->state == JOB_DEAD;
    beanstalk_reply(conn, logged.seq_end, buried ? "BURIED" : "RELEASED");
    return 0;
}

static int cmd_bury(struct conn *conn, const struct bs_args *a)
{
    struct server *server = conn->server;
    const char *args = a->text;
    uint64_t id;
    uint32_t pri;
    if (!arg_number(&args, UINT64_MAX, false, &id) || !arg_u32(&args, true, &pri)) {
        bad_format(conn);
        return 0;
    }
    struct job *job = owned_job(conn, id);
    if (job == NULL)
        return fail(conn, QUEUE_ENOTFOUND);
    static const char reason[] = "buried";
    struct queue_logged logged = {0};
    int rc = queue_bury_priority(server->queues, id, queue_job_x(job)->lease_token, pri, reason,
                                 sizeof(reason) - 1, server->now, &logged);
    if (rc != 0)
        return fail(conn, rc);
    beanstalk_reply(conn, logged.seq_end, "BURIED");
    return 0;
}

static int cmd_touch(struct conn *conn, const struct bs_args *a)
{
    struct server *server = conn->server;
    uint64_t id = a->id;
    struct job *job = owned_job(conn, id);
    if (job == NULL)
        return fail(conn, QUEUE_ENOTFOUND);
    int64_t deadline_ms;
    int rc = queue_touch(server->queues, id, queue_job_x(job)->lease_token, 0, server->now,
                         &deadline_ms);
    if (rc != 0)
        return fail(conn, rc);
    beanstalk_reply(conn, 0, "TOUCHED"); /* a touch logs nothing: nothing to wait for */
    return 0;
}

/* ---- kick and peek ---- */

static int cmd_kick(struct conn *conn, const struct bs_args *a)
{
    struct server *server = conn->server;
    /* beanstalkd reads the bound with strtoul: digits required, the value truncated to u32. */
    char *end;
    unsigned long long bound = strtoull(a->text, &end, 10);
    if (end == a->text) {
        bad_format(conn);
        return 0;
    }
    struct beanstalk_tube *tube = conn->bs->use;
    struct queue *queue = used_queue(conn);
    uint32_t kicked = 0;
    struct queue_logged logged = {0};
    int rc = 0;
    if (queue != NULL && queue->stats.dead > 0) /* buried jobs first, else delayed ones */
        rc = queue_kick(server->queues, tube->name, tube->name_len, (uint32_t)bound,
                        server->now, &kicked, &logged);
    else if (queue != NULL)
        rc = queue_kick_delayed(server->queues, tube->name, tube->name_len, (uint32_t)bound,
                                server->now, &kicked, &logged);
    if (rc != 0)
        return fail(conn, rc);
    beanstalk_reply(conn, logged.seq_end, "KICKED %u", kicked);
    return 0;
}

static int cmd_kick_job(struct conn *conn, const struct bs_args *a)
{
    struct server *server = conn->server;
    uint64_t id = a->id;
    struct job *job = queue_job_find(server->queues, id);
    struct queue_logged logged = {0};
    int rc = QUEUE_ENOTFOUND;
    if (job != NULL && job->state == JOB_DEAD)
        rc = queue_kick_job(server->queues, id, server->now, &logged);
    else if (job != NULL && job->state == JOB_DELAYED)
        rc = queue_kick_delayed_job(server->queues, id, server->now, &logged);
    if (rc != 0)
        return fail(conn, rc);
    beanstalk_reply(conn, logged.seq_end, "KICKED");
    return 0;
}

static int cmd_peek(struct conn *conn, const struct bs_args *a)
{
    uint64_t id = a->id;
    struct job *job = queue_peek_id(conn->server->queues, id);
    if (job == NULL)
        return fail(conn, QUEUE_ENOTFOUND);
    job_reply(conn, BS_FETCH_FOUND, job);
    return 0;
}

static int peek_state(struct conn *conn, enum job_state which)
{
    struct beanstalk_tube *tube = conn->bs->use;
    struct job *job = queue_peek_next(conn->server->queues, tube->name, tube->name_len, which);
    if (job == NULL)
        return fail(conn, QUEUE_ENOTFOUND);
    job_reply(conn, BS_FETCH_FOUND, job);
    return 0;
}

static int cmd_peek_ready(struct conn *conn, const struct bs_args *a)
{
    (void)a;
    return peek_state(conn, JOB_READY);
}

static int cmd_peek_delayed(struct conn *conn, const struct bs_args *a)
{
    (void)a;
    return peek_state(conn, JOB_DELAYED);
}

static int cmd_peek_buried(struct conn *conn, const struct bs_args *a)
{
    (void)a;
    return peek_state(conn, JOB_DEAD);
}

/* ---- stats, lists, pause, quit ---- */

static int cmd_stats_job(struct conn *conn, const struct bs_args *a)
{
    uint64_t id = a->id;
    struct job *job = queue_peek_id(conn->server->queues, id);
    if (job == NULL)
        return fail(conn, QUEUE_ENOTFOUND);
    beanstalk_yaml_stats_job(conn, job);
    return 0;
}

static int cmd_stats_tube(struct conn *conn, const struct bs_args *a)
{
    struct queue *queue = queue_find(conn->server->queues, a->tube, a->tube_len);
    if (queue == NULL || !beanstalk_tube_exists(queue))
        return fail(conn, QUEUE_ENOTFOUND);
    beanstalk_yaml_stats_tube(conn, queue);
    return 0;
}

static int cmd_stats(struct conn *conn, const struct bs_args *a)
{
    (void)a;
    beanstalk_yaml_stats(conn);
    return 0;
}

static int cmd_list_tubes(struct conn *conn, const struct bs_args *a)
{
    (void)a;
    beanstalk_yaml_list_tubes(conn);
    return 0;
}

static int cmd_list_tube_used(struct conn *conn, const struct bs_args *a)
{
    (void)a;
    beanstalk_reply(conn, 0, "USING %s", conn->bs->use->name);
    return 0;
}

static int cmd_list_watched(struct conn *conn, const struct bs_args *a)
{
    (void)a;
    beanstalk_yaml_list_watched(conn);
    return 0;
}

void beanstalk_meta_paused(const struct queue *queue, bool paused, struct record_meta *meta)
{
    *meta = (struct record_meta){
        .name = queue->name, .name_len = queue->name_len, .paused = paused,
        .pause_timed = paused, /* pause-tube: ends by its timer, or at a restart */
        .default_max_attempts = queue->default_max_attempts,
        .default_ttr_ms = queue->default_ttr_ms, .max_jobs = queue->max_jobs,
        .max_bytes = queue->max_bytes,
    };
}

static int cmd_pause_tube(struct conn *conn, const struct bs_args *a)
{
    struct server *server = conn->server;
    const char *args = a->text;
    const char *name;
    uint32_t len;
    uint32_t delay;
    if (!arg_tube(&args, false, &name, &len) || !arg_u32(&args, true, &delay)) {
        bad_format(conn);
        return 0;
    }
    struct queue *queue = queue_find(server->queues, name, len);
    if (queue == NULL || !beanstalk_tube_exists(queue))
        return fail(conn, QUEUE_ENOTFOUND);
    struct record_meta meta;
    beanstalk_meta_paused(queue, delay > 0, &meta);
    struct queue_logged logged = {0};
    int rc = queue_set_meta(server->queues, &meta, server->now, &logged);
    if (rc != 0)
        return fail(conn, rc);
    struct beanstalk_tube *tube = beanstalk_tube_get(server, name, len);
    struct beanstalk_state *state = server->beanstalk;
    state->paused_tubes -= tube->pause_until_ns != 0;
    tube->pause_s = delay;
    tube->pause_until_ns = delay > 0 ? queue_time_after_ns(server->now, delay * 1000ull) : 0;
    state->paused_tubes += tube->pause_until_ns != 0;
    tube->cmd_pause_tube++;
    beanstalk_reply(conn, logged.seq_end, "PAUSED");
    return 0;
}

static int cmd_quit(struct conn *conn, const struct bs_args *a)
{
    (void)a;
    conn_fail(conn, 0, 0, NULL); /* flush what is owed, then close */
    return 0;
}

/* ---- the table ---- */

/* In beanstalkd's order of matching: a command without arguments matches any line it
 * begins ("reserve-with-timeout" alone is a reserve with something after it: BAD_FORMAT), so
 * the longer names come first. */
static const struct bs_command commands[] = {
    {"put", BS_CMD_PUT, BS_ARG_TEXT, false, cmd_put},
    {"peek-ready", BS_CMD_PEEK_READY, BS_ARG_NONE, true, cmd_peek_ready},
    {"peek-delayed", BS_CMD_PEEK_DELAYED, BS_ARG_NONE, true, cmd_peek_delayed},
    {"peek-buried", BS_CMD_PEEK_BURIED, BS_ARG_NONE, true, cmd_peek_buried},
    {"peek", BS_CMD_PEEK, BS_ARG_ID, true, cmd_peek},
    {"reserve-with-timeout", BS_CMD_RESERVE_WITH_TIMEOUT, BS_ARG_TEXT, true, cmd_reserve_timeout},
    {"reserve-job", BS_CMD_RESERVE_JOB, BS_ARG_ID, true, cmd_reserve_job},
    {"reserve", BS_CMD_RESERVE, BS_ARG_NONE, true, cmd_reserve},
    {"delete", BS_CMD_DELETE, BS_ARG_ID, false, cmd_delete},
    {"release", BS_CMD_RELEASE, BS_ARG_TEXT, false, cmd_release},
    {"bury", BS_CMD_BURY, BS_ARG_TEXT, false, cmd_bury},
    {"kick-job", BS_CMD_KICK_JOB, BS_ARG_ID, true, cmd_kick_job},
    {"kick", BS_CMD_KICK, BS_ARG_TEXT, true, cmd_kick},
    {"touch", BS_CMD_TOUCH, BS_ARG_ID, false, cmd_touch},
    {"stats-job", BS_CMD_STATS_JOB, BS_ARG_ID, true, cmd_stats_job},
    {"stats-tube", BS_CMD_STATS_TUBE, BS_ARG_TUBE, true, cmd_stats_tube},
    {"stats", BS_CMD_STATS, BS_ARG_NONE, true, cmd_stats},
    {"use", BS_CMD_USE, BS_ARG_TUBE, false, cmd_use},
    {"watch", BS_CMD_WATCH, BS_ARG_TUBE, false, cmd_watch},
    {"ignore", BS_CMD_IGNORE, BS_ARG_TUBE, false, cmd_ignore},
    {"list-tubes-watched", BS_CMD_LIST_TUBES_WATCHED, BS_ARG_NONE, false, cmd_list_watched},
    {"list-tube-used", BS_CMD_LIST_TUBE_USED, BS_ARG_NONE, false, cmd_list_tube_used},
    {"list-tubes", BS_CMD_LIST_TUBES, BS_ARG_NONE, true, cmd_list_tubes},
    {"quit", BS_CMD_QUIT, BS_ARG_NONE, true, cmd_quit},
    {"pause-tube", BS_CMD_PAUSE_TUBE, BS_ARG_TEXT, false, cmd_pause_tube},
};

const char *beanstalk_cmd_name(uint32_t cmd)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if ((uint32_t)commands[i].cmd == cmd)
            return commands[i].name;
    return NULL;
}

_Static_assert(BS_CMD_COUNT < METRICS_BS_UNKNOWN, "a metrics slot per command, and one more");

int beanstalk_cmd_run(struct conn *conn, const char *line, size_t line_len,
                      const uint8_t *rest, size_t rest_len)
{
    SPOOL_ASSERT(line_len + 2 <= BEANSTALK_LINE_MAX);
    char text[BEANSTALK_LINE_MAX];
    memcpy(text, line, line_len);
    text[line_len] = '\0'; /* a NUL inside ends the line, as in beanstalkd */
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        const struct bs_command *c = &commands[i];
        size_t name_len = strlen(c->name);
        bool has_args = c->args != BS_ARG_NONE;
        if (strncmp(text, c->name, name_len) != 0 || (has_args && text[name_len] != ' '))
            continue;
        if (c->reads && !list_empty(&conn->bs->held))
            return BS_AGAIN; /* run again when beanstalk_release_held empties it */
        struct bs_args a = {.text = text + name_len + has_args, .rest = rest,
                            .rest_len = rest_len};
        const char *p = a.text;
        bool ok = c->args == BS_ARG_NONE   ? *p == '\0' || c->cmd == BS_CMD_QUIT
                  : c->args == BS_ARG_ID   ? arg_number(&p, UINT64_MAX, true, &a.id)
                  : c->args == BS_ARG_TUBE ? arg_tube(&p, true, &a.tube, &a.tube_len)
                                           : true;
        int rc = 0;
        if (!ok)
            bad_format(conn);
        else
            rc = c->run(conn, &a);
        if (rc != BS_AGAIN && c->cmd < BS_CMD_COUNTED) /* counted once, when it ran */
            conn->server->beanstalk->cmd_counts[c->cmd]++;
        if (rc != BS_AGAIN)
            conn->server->metrics.bs_requests[c->cmd]++;
        return rc;
    }
    conn->server->metrics.bs_requests[METRICS_BS_UNKNOWN]++;
    beanstalk_reply(conn, 0, "UNKNOWN_COMMAND");
    return 0;
}
