/*
 * Body fetches (body_fetch.h): per-batch reads shared by every job that needs the batch.
 *
 * A read lists its waiters (a fetch and the index of one of its jobs) sorted by the seq of the
 * job's PUT, so the records the log hands over in seq order find theirs by binary search. A
 * read accepts waiters until its completion runs (the loop is single-threaded: a waiter added
 * while the read is in flight is served by it).
 *
 * Read-ahead (body_prefetch.h): a delivery that had to read, and every read that completes
 * after it, plan reads of the batches the same queue delivers next; they are reads with no
 * waiter (a delivery that wants one of them joins it), and their bodies land in the cache. The
 * loop's pump walks again once the queue has delivered a quarter of a covered window, or once
 * the budget has room for the batch a walk stopped at; a walk that finds every ready body
 * cached stops read-ahead until the next delivery that has to read. Deliveries served from the
 * cache (the hot path) walk nothing.
 */
#include "body_fetch.h"

#include "body_prefetch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "server.h"
#include "slog.h"

struct fetch_waiter {
    uint64_t seq;
    struct body_fetch *fetch;
    uint32_t index;
};

struct fetch_read {
    struct list_link link; /* fetcher.reads: issued ones and waiting ones, in arrival order */
    struct body_fetcher *fetcher;
    struct log_pos pos; /* a record of the batch (segment_id and batch_offset name it) */
    bool issued;
    bool prefetch;           /* read-ahead: counted in the fetcher's prefetch_inflight_* */
    uint64_t prefetch_bytes; /* its estimate (body_prefetch.h) */
    uint32_t count;
    uint32_t capacity;
    struct fetch_waiter *waiters; /* sorted by seq */
};

struct body_fetcher {
    struct server *server;
    struct list_link reads;
    uint32_t issued;
    uint64_t active; /* fetches started, not yet done */
    bool closing;    /* the server goes away: fetches end without their done, no new reads */
    /* Read-ahead: a job of the queue read ahead (its head at the last walk; 0: none,
     * read-ahead waits for a delivery that has to read); when the pump walks again: once the
     * budget has room for the batch a walk stopped at (blocked_bytes), or once the queue has
     * delivered redo_jobs more jobs since the walk (mark) and moved the window; and what is
     * in flight. */
    uint64_t prefetch_queue_job_id;
    uint32_t prefetch_ids_left; /* job-table ids the walk being planned may still look at */
    uint64_t prefetch_blocked_bytes;
    uint64_t prefetch_mark;
    uint64_t prefetch_redo_jobs;
    uint64_t prefetch_inflight_bytes;
    uint32_t prefetch_inflight_reads;
    struct body_fetch_stats stats;
};

struct body_fetcher *body_fetcher_create(struct server *server)
{
    struct body_fetcher *fetcher = calloc(1, sizeof(*fetcher));
    if (fetcher == NULL)
        return NULL;
    fetcher->server = server;
    list_init(&fetcher->reads);
    return fetcher;
}

static void fetch_free(struct body_fetch *fetch)
{
    for (uint32_t i = 0; i < fetch->count; i++)
        free(fetch->jobs[i].body);
    free(fetch);
}

/* One of the fetch's bodies arrived (or failed): the last one runs done. */
static void fetch_resolved(struct body_fetcher *fetcher, struct body_fetch *fetch)
{
    SPOOL_ASSERT(fetch->missing > 0);
    fetch->missing--;
    if (fetch->missing > 0)
        return;
    SPOOL_ASSERT(fetcher->active > 0);
    fetcher->active--;
    if (fetch->error != 0)
        fetcher->stats.errors++;
    if (!fetcher->closing)
        fetch->done(fetcher->server, fetch);
    fetch_free(fetch);
}

static void fetch_fail(struct body_fetch *fetch, uint32_t index, int error)
{
    if (fetch->error != 0)
        return;
    fetch->error = error;
    fetch->error_job = index;
}

void body_fetcher_destroy(struct body_fetcher *fetcher)
{
    if (fetcher == NULL)
        return;
    /* Only reads never issued can be left (the log waits for issued ones before it closes):
     * their fetches are dropped unanswered, as the connections are gone. */
    struct list_link *link;
    while ((link = list_first(&fetcher->reads)) != NULL) {
        struct fetch_read *read = LIST_ENTRY(link, struct fetch_read, link);
        SPOOL_ASSERT(!read->issued);
        list_unlink(link);
        for (uint32_t i = 0; i < read->count; i++) {
            struct body_fetch *fetch = read->waiters[i].fetch;
            if (--fetch->missing == 0)
                fetch_free(fetch);
        }
        free(read->waiters);
        free(read);
    }
    free(fetcher);
}

bool body_fetch_needed(struct job *const *jobs, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++)
        if (queue_job_body_missing(jobs[i]))
            return true;
    return false;
}

static struct fetch_read *read_find(struct body_fetcher *fetcher, const struct log_pos *pos)
{
    for (struct list_link *l = fetcher->reads.next; l != &fetcher->reads; l = l->next) {
        struct fetch_read *read = LIST_ENTRY(l, struct fetch_read, link);
        if (read->pos.segment_id == pos->segment_id && read->pos.batch_offset == pos->batch_offset)
            return read;
    }
    return NULL;
}

/* Add a waiter in seq order; -ENOMEM. */
static int read_add_waiter(struct fetch_read *read, struct body_fetch *fetch, uint32_t index)
{
    if (read->count == read->capacity) {
        uint32_t capacity = read->capacity == 0 ? 8 : read->capacity * 2;
        struct fetch_waiter *w = realloc(read->waiters, capacity * sizeof(*w));
        if (w == NULL)
            return -ENOMEM;
        read->waiters = w;
        read->capacity = capacity;
    }
    uint64_t seq = fetch->jobs[index].pos.seq;
    uint32_t at = read->count;
    while (at > 0 && read->waiters[at - 1].seq > seq)
        at--;
    memmove(&read->waiters[at + 1], &read->waiters[at],
            (read->count - at) * sizeof(read->waiters[0]));
    read->waiters[at] = (struct fetch_waiter){.seq = seq, .fetch = fetch, .index = index};
    read->count++;
    return 0;
}

/* The read that will bring the batch of fetch->jobs[index] (joined or new); -ENOMEM. */
static int fetch_want(struct body_fetcher *fetcher, struct body_fetch *fetch, uint32_t index)
{
    const struct log_pos *pos = &fetch->jobs[index].pos;
    struct fetch_read *read = read_find(fetcher, pos);
    if (read == NULL) {
        read = calloc(1, sizeof(*read));
        if (read == NULL)
            return -ENOMEM;
        read->fetcher = fetcher;
        read->pos = *pos;
        list_insert_tail(&fetcher->reads, &read->link);
    }
    int rc = read_add_waiter(read, fetch, index);
    if (rc != 0 && read->count == 0) {
        list_unlink(&read->link);
        free(read);
    }
    return rc;
}

static bool prefetch_reading(void *ctx, const struct log_pos *pos)
{
    return read_find(ctx, pos) != NULL;
}

static struct job *prefetch_next(void *ctx, const struct job *job)
{
    struct body_fetcher *fetcher = ctx;
    return queue_ready_next(fetcher->server->queues, job, &fetcher->prefetch_ids_left);
}

/* The queue to read ahead: hint, else the one read ahead last (NULL: none, or its job is
 * forgotten). */
static struct queue *prefetch_queue(struct body_fetcher *fetcher, struct queue *hint)
{
    if (hint != NULL || fetcher->prefetch_queue_job_id == 0)
        return hint;
    struct job *job = queue_job_find(fetcher->server->queues, fetcher->prefetch_queue_job_id);
    return job == NULL ? NULL : job->queue;
}

static void prefetch_budget(const struct body_fetcher *fetcher, struct body_prefetch_budget *out)
{
    struct queue_body_stats cache;
    queue_body_stats_get(fetcher->server->queues, &cache);
    body_prefetch_budget_get(out, fetcher->prefetch_inflight_bytes,
                             fetcher->prefetch_inflight_reads, cache.bytes, cache.bytes_max);
}

/* Plan read-ahead over the window at the head of the queue (hint, or the last one) and queue
 * its reads (the pump issues them). Nothing under memory pressure: read-ahead bodies are
 * what the bound evicts first. */
static void prefetch_fill(struct body_fetcher *fetcher, struct queue *hint)
{
    if (fetcher->closing || fetcher->server->memory.low)
        return;
    struct queue *queue = prefetch_queue(fetcher, hint);
    struct job *start = queue == NULL ? NULL : queue_ready_first(queue);
    fetcher->prefetch_queue_job_id = 0;
    if (start == NULL)
        return;
    struct body_prefetch_budget budget;
    prefetch_budget(fetcher, &budget);
    struct body_prefetch_plan plan;
    fetcher->prefetch_ids_left = BODY_PREFETCH_SCAN_IDS_MAX;
    body_prefetch_plan(&plan, &budget, start, prefetch_next, prefetch_reading, fetcher);
    for (uint32_t i = 0; i < plan.count; i++) {
        struct fetch_read *read = calloc(1, sizeof(*read));
        if (read == NULL)
            return; /* read-ahead is only ever an optimization */
        *read = (struct fetch_read){.fetcher = fetcher, .pos = plan.batches[i].pos,
                                    .prefetch = true, .prefetch_bytes = plan.batches[i].bytes};
        list_insert_tail(&fetcher->reads, &read->link);
        fetcher->prefetch_inflight_bytes += read->prefetch_bytes;
        fetcher->prefetch_inflight_reads++;
        fetcher->stats.prefetch_reads++;
    }
    SPOOL_ASSERT(fetcher->prefetch_inflight_reads <= BODY_PREFETCH_READS_MAX);
    /* Every ready job's body is cached or on its way: nothing more until a delivery has to
     * read again (or the reads planned now complete and walk again). */
    if (plan.stop == BODY_PREFETCH_END && plan.count == 0)
        return;
    fetcher->prefetch_queue_job_id = start->id;
    fetcher->prefetch_mark = queue->metrics.deliveries;
    /* A covered window moves once a quarter of it is delivered. */
    fetcher->prefetch_redo_jobs = plan.stop == BODY_PREFETCH_WINDOW ? plan.visited / 4 + 1 : 0;
    fetcher->prefetch_blocked_bytes = plan.stop == BODY_PREFETCH_BUDGET ? plan.resume_bytes : 0;
}

/* From the pump, every loop turn: read-ahead goes on once the window has moved or the budget
 * has room (acks free cache space; reads complete). O(1) unless it goes on. */
static void prefetch_poll(struct body_fetcher *fetcher)
{
    if (fetcher->prefetch_queue_job_id == 0 || fetcher->prefetch_inflight_reads != 0)
        return; /* none, or the next completion walks on */
    struct queue *queue = prefetch_queue(fetcher, NULL);
    if (queue == NULL) {
        fetcher->prefetch_queue_job_id = 0;
        return;
    }
    if (queue->metrics.deliveries - fetcher->prefetch_mark < fetcher->prefetch_redo_jobs)
        return;
    struct body_prefetch_budget budget;
    prefetch_budget(fetcher, &budget);
    if (budget.bytes >= fetcher->prefetch_blocked_bytes && budget.reads > 0)
        prefetch_fill(fetcher, NULL);
}

/* The jobs' fixed fields, and copies of the bodies that are cached now. */
static struct body_fetch *fetch_new(struct job *const *jobs, uint32_t count)
{
    struct body_fetch *fetch = calloc(1, sizeof(*fetch) + count * sizeof(fetch->jobs[0]));
    if (fetch == NULL)
        return NULL;
    fetch->count = count;
    for (uint32_t i = 0; i < count; i++) {
        const struct job *job = jobs[i];
        struct body_fetch_job *fj = &fetch->jobs[i];
        *fj = (struct body_fetch_job){
            .id = job->id,
            .lease_token = job->state == JOB_RESERVED ? queue_job_x(job)->lease_token : 0,
            .pos = queue_job_pos(job),
            .len = job->body_len,
        };
        if (queue_job_body_missing(job))
            continue;
        fj->body = malloc(job->body_len == 0 ? 1 : job->body_len);
        if (fj->body == NULL) {
            fetch_free(fetch);
            return NULL;
        }
        memcpy(fj->body, queue_job_body(job), job->body_len);
    }
    return fetch;
}

int body_fetch_start(struct body_fetcher *fetcher, struct job *const *jobs, uint32_t count,
                     body_fetch_done_fn done, uint64_t conn_id, uint64_t request_id,
                     uint16_t opcode)
{
    SPOOL_ASSERT(count > 0);
    SPOOL_ASSERT(body_fetch_needed(jobs, count));
    struct body_fetch *fetch = fetch_new(jobs, count);
    if (fetch == NULL)
        return -ENOMEM;
    fetch->done = done;
    fetch->conn_id = conn_id;
    fetch->request_id = request_id;
    fetch->opcode = opcode;
    fetch->missing = 1; /* held until every waiter is placed: done never runs in here */
    for (uint32_t i = 0; i < count; i++) {
        if (fetch->jobs[i].body != NULL)
            continue;
        if (fetch_want(fetcher, fetch, i) != 0) {
            if (fetch->missing == 1) { /* nothing placed: nothing started */
                fetch_free(fetch);
                return -ENOMEM;
            }
            /* Waiters already placed are served; the fetch fails as out of memory. */
            fetch_fail(fetch, i, -ENOMEM);
            break;
        }
        fetch->missing++;
    }
    fetch->missing--; /* the hold: the reads (issued by the pump) resolve the rest */
    SPOOL_ASSERT(fetch->missing > 0);
    fetcher->active++;
    fetcher->stats.fetches++;
    /* A reserve that had to read: the rest of its queue is likely to be read too (a peek
     * leaves read-ahead alone). */
    if (jobs[0]->state == JOB_RESERVED)
        prefetch_fill(fetcher, jobs[0]->queue);
    return 0;
}

/* A record of the batch: the waiters that want it, and the cache for its other jobs. */
static void read_each(void *ctx, const struct log_record *record)
{
    struct fetch_read *read = ctx;
    struct server *server = read->fetcher->server;
    if (record->type != RECORD_PUT && record->type != RECORD_RELOCATE)
        return; /* a job's body is in its PUT, or in compaction's copy of it */
    struct record rec;
    const void *body;
    uint32_t body_len;
    if (record_decode(record->type, record->data, record->len, &rec) != 0 ||
        !record_body(&rec, &body, &body_len))
        return; /* a waiter on it stays unresolved: LOG_ECORRUPT at the end */
    struct job *job = queue_job_find(server->queues, rec.id);
    if (job != NULL && queue_job_body_missing(job) && queue_job_pos(job).seq == record->pos.seq &&
        job->body_len == body_len) {
        queue_body_loaded(server->queues, job, body, body_len);
        read->fetcher->stats.bodies_read++;
    }
    uint32_t lo = 0, hi = read->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (read->waiters[mid].seq < record->pos.seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (uint32_t i = lo; i < read->count && read->waiters[i].seq == record->pos.seq; i++) {
        struct fetch_waiter *w = &read->waiters[i];
        struct body_fetch_job *fj = &w->fetch->jobs[w->index];
        if (fj->body != NULL || rec.id != fj->id || body_len != fj->len)
            continue;
        fj->body = malloc(fj->len == 0 ? 1 : fj->len);
        if (fj->body == NULL) {
            fetch_fail(w->fetch, w->index, -ENOMEM);
            continue;
        }
        memcpy(fj->body, body, fj->len);
    }
}

static void read_free(struct fetch_read *read)
{
    list_unlink(&read->link);
    free(read->waiters);
    free(read);
}

/* A job that is gone (deleted, expired, acked) needs no body: its delivery leaves it out, and
 * a read that fails for it (its segment dropped since) is no damage. */
static bool job_gone(struct body_fetcher *fetcher, const struct body_fetch_job *fj)
{
    struct job *job = queue_job_find(fetcher->server->queues, fj->id);
    return job == NULL || !queue_job_live(job);
}

/* Compaction moved the job's body to a copy (compact.h) since the fetch began, and the batch
 * it was read from may be gone with its segment: wait for the copy's batch instead. True when
 * the waiter joined that read (the fetch waits for one more resolution). */
static bool fetch_follow_move(struct body_fetcher *fetcher, struct body_fetch *fetch,
                              uint32_t index)
{
    struct body_fetch_job *fj = &fetch->jobs[index];
    struct job *job = queue_job_find(fetcher->server->queues, fj->id);
    SPOOL_ASSERT(job != NULL && queue_job_live(job));
    struct log_pos pos = queue_job_pos(job);
    if (pos.seq == fj->pos.seq)
        return false;
    fj->pos = pos;
    if (fetch_want(fetcher, fetch, index) != 0)
        return false;
    fetch->missing++;
    return true;
}

/* Every waiter is resolved: with its body, or with error (or LOG_ECORRUPT: the batch held no
 * such PUT), unless its job is gone meanwhile or moved by compaction (then its copy is read). */
static void read_finish(struct fetch_read *read, int error)
{
    struct body_fetcher *fetcher = read->fetcher;
    if (read->issued) {
        SPOOL_ASSERT(fetcher->issued > 0);
        fetcher->issued--;
    }
    if (read->prefetch) {
        SPOOL_ASSERT(fetcher->prefetch_inflight_reads > 0);
        SPOOL_ASSERT(fetcher->prefetch_inflight_bytes >= read->prefetch_bytes);
        fetcher->prefetch_inflight_reads--;
        fetcher->prefetch_inflight_bytes -= read->prefetch_bytes;
    }
    list_unlink(&read->link);
    for (uint32_t i = 0; i < read->count; i++) {
        struct fetch_waiter *w = &read->waiters[i];
        const struct body_fetch_job *fj = &w->fetch->jobs[w->index];
        if (fj->body == NULL && !job_gone(fetcher, fj) &&
            !fetch_follow_move(fetcher, w->fetch, w->index))
            fetch_fail(w->fetch, w->index, error != 0 ? error : LOG_ECORRUPT);
    }
    for (uint32_t i = 0; i < read->count; i++)
        fetch_resolved(fetcher, read->waiters[i].fetch);
    read_free(read);
}

static void read_done(void *ctx, int error, const struct log_record *record)
{
    struct fetch_read *read = ctx;
    SPOOL_ASSERT(record == NULL);
    read->fetcher->stats.batch_reads++;
    struct body_fetcher *fetcher = read->fetcher;
    read_finish(read, error);
    if (fetcher->prefetch_queue_job_id != 0)
        prefetch_fill(fetcher, NULL); /* read-ahead goes on */
    body_fetch_pump(fetcher); /* a slot is free */
}

void body_fetcher_close(struct body_fetcher *fetcher)
{
    if (fetcher != NULL)
        fetcher->closing = true;
}

void body_fetch_pump(struct body_fetcher *fetcher)
{
    if (fetcher->closing)
        return;
    prefetch_poll(fetcher);
    struct list_link *l = fetcher->reads.next;
    while (l != &fetcher->reads) {
        struct fetch_read *read = LIST_ENTRY(l, struct fetch_read, link);
        l = l->next;
        if (read->issued)
            continue;
        int rc = log_read_batch(fetcher->server->log, &read->pos, read_each, read_done, read);
        if (rc == -EBUSY)
            return; /* every slot is taken: the next completion pumps again */
        if (rc == -EAGAIN)
            continue; /* not readable yet (written, not synced): next turn */
        if (rc != 0) {
            read_finish(read, rc); /* unlinks read alone: l stays valid */
            continue;
        }
        read->issued = true;
        fetcher->issued++;
    }
}

void body_fetch_fail_stop(struct server *server, const struct body_fetch *fetch)
{
    SPOOL_ASSERT(fetch->error != 0);
    const struct body_fetch_job *fj = &fetch->jobs[fetch->error_job];
    if (fetch->error == -ENOMEM) {
        slog_warn("msg=\"no memory to read a job body back\" job=%llu",
                  (unsigned long long)fj->id);
        return;
    }
    slog_error("msg=\"job body unreadable: stopping\" job=%llu segment=%llu offset=%llu "
               "seq=%llu error=\"%s\"",
               (unsigned long long)fj->id, (unsigned long long)fj->pos.segment_id,
               (unsigned long long)fj->pos.batch_offset, (unsigned long long)fj->pos.seq,
               log_strerror(fetch->error));
    /* A clean stop, not an abort: the replies in flight (the error too) reach their clients,
     * and the checkpoint it writes is sound (it holds no body). */
    if (!server->stopping)
        slog_info("msg=\"shutting down\" reason=\"job body unreadable\"");
    server->stopping = true;
    if (server->stop_error == 0)
        server->stop_error = fetch->error;
}

bool body_fetch_idle(const struct body_fetcher *fetcher)
{
    return fetcher == NULL || fetcher->active == 0;
}

void body_fetch_stats_get(const struct body_fetcher *fetcher, struct body_fetch_stats *out)
{
    *out = fetcher->stats;
    out->prefetch_inflight = fetcher->prefetch_inflight_reads;
}
