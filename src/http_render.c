/*
 * Text for the HTTP routes, from one immutable snapshot (observe.h), in the HTTP thread:
 * Prometheus text format 0.0.4 for /metrics and JSON for /api/v1. Names follow Prometheus
 * conventions (spool_ prefix, base units: seconds and bytes, counters end in _total); every
 * metric is listed in docs/OPERATIONS.md.
 *
 * Cardinality: queues are labelled in name order up to --metrics-max-queues; the rest are
 * summed into one series labelled queue="(other)" (a name no queue can have: the parentheses
 * are outside the queue-name alphabet), their oldest-ready age being the maximum.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beanstalk.h"
#include "http.h"
#include "wire_frame.h"

#define OTHER_QUEUES_LABEL "(other)"

/* ---- the buffer ---- */

static bool sbuf_grow(struct sbuf *b, size_t more)
{
    if (b->failed)
        return false;
    if (b->len + more + 1 <= b->cap)
        return true;
    size_t cap = b->cap == 0 ? 4096 : b->cap;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (data == NULL) {
        b->failed = true;
        return false;
    }
    b->data = data;
    b->cap = cap;
    return true;
}

void sbuf_put(struct sbuf *b, const char *data, size_t len)
{
    if (!sbuf_grow(b, len))
        return;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(small)) {
        sbuf_put(b, small, (size_t)n);
        return;
    }
    if (!sbuf_grow(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Bytes of the well-formed UTF-8 sequence at s (1..4), or 0 if it is not one (overlong forms,
 * surrogates and code points above U+10FFFF are not). */
static size_t utf8_sequence(const unsigned char *s, size_t len)
{
    unsigned c = s[0];
    size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
    if (n == 0 || n > len || (c >= 0xe0 && c < 0xf0 && n != 3))
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0) || (c == 0xf0 && s[1] < 0x90) ||
        (c == 0xf4 && s[1] >= 0x90))
        return 0;
    return n;
}

void sbuf_json_string(struct sbuf *b, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    sbuf_put(b, "\"", 1);
    for (size_t i = 0; i < len;) {
        unsigned char c = u[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            sbuf_put(b, esc, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            sbuf_printf(b, "\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            sbuf_put(b, (const char *)&u[i], 1);
            i++;
        } else {
            size_t n = utf8_sequence(u + i, len - i);
            if (n == 0) {
                sbuf_put(b, "\\ufffd", 6); /* not UTF-8: a replacement character */
                i++;
            } else {
                sbuf_put(b, (const char *)&u[i], n);
                i += n;
            }
        }
    }
    sbuf_put(b, "\"", 1);
}

/* ---- histograms ---- */

/* The q-quantile (0..1) of a histogram, linear within its bucket, in the histogram's unit;
 * 0 when empty, the last bound when it falls above every bound. */
static double hist_quantile(const struct metrics_hist *h, const struct metrics_bounds *b,
                            double q)
{
    if (h->count == 0)
        return 0;
    double rank = q * (double)h->count;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < b->count; i++) {
        if ((double)(seen + h->buckets[i]) >= rank && h->buckets[i] > 0) {
            double lo = i == 0 ? 0 : (double)b->le[i - 1];
            double hi = (double)b->le[i];
            return lo + (hi - lo) * ((rank - (double)seen) / (double)h->buckets[i]);
        }
        seen += h->buckets[i];
    }
    return (double)b->le[b->count - 1];
}

static void hist_add(struct metrics_hist *to, const struct metrics_hist *from)
{
    if (from->count == 0)
        return; /* an idle queue's: every bucket is 0 too (metrics_hist_observe) */
    for (uint32_t i = 0; i <= METRICS_BUCKETS_MAX; i++)
        to->buckets[i] += from->buckets[i];
    to->count += from->count;
    to->sum += from->sum;
}

/* A number's decimal digits into out (at least 21 bytes); returns their count. */
static int u64_text(char *out, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (int i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

/* A histogram's bounds as label text, formatted once per page rather than once per series
 * (a page with 200 labelled queues has 8,800 bucket lines; %g was a tenth of its cost). */
struct bounds_text {
    const struct metrics_bounds *bounds;
    char le[METRICS_BUCKETS_MAX][32]; /* le="0.0001"} */
    uint8_t len[METRICS_BUCKETS_MAX];
};

static void bounds_text_init(struct bounds_text *t, const struct metrics_bounds *bounds,
                             double scale)
{
    SPOOL_ASSERT(bounds->count <= METRICS_BUCKETS_MAX);
    t->bounds = bounds;
    for (uint32_t i = 0; i < bounds->count; i++) {
        int n = snprintf(t->le[i], sizeof(t->le[i]), "le=\"%.6g\"} ",
                         (double)bounds->le[i] * scale);
        SPOOL_ASSERT(n > 0 && (size_t)n < sizeof(t->le[i]));
        t->len[i] = (uint8_t)n;
    }
}

/* One histogram's series. scale: the unit's size in the base unit (1e-6 for us). */
static void prom_hist(struct sbuf *b, const char *name, const char *labels,
                      const struct metrics_hist *h, const struct bounds_text *t, double scale)
{
    uint64_t cumulative = 0;
    const char *sep = labels[0] != '\0' ? "," : "";
    size_t name_len = strlen(name), labels_len = strlen(labels), sep_len = strlen(sep);
    for (uint32_t i = 0; i < t->bounds->count; i++) {
        cumulative += h->buckets[i];
        sbuf_put(b, name, name_len);
        sbuf_put(b, "_bucket{", 8);
        sbuf_put(b, labels, labels_len);
        sbuf_put(b, sep, sep_len);
        sbuf_put(b, t->le[i], t->len[i]);
        char count[24];
        int n = u64_text(count, cumulative);
        count[n++] = '\n';
        sbuf_put(b, count, (size_t)n);
    }
    cumulative += h->buckets[t->bounds->count];
    sbuf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                (unsigned long long)cumulative);
    const char *open = labels[0] != '\0' ? "{" : "";
    const char *close = labels[0] != '\0' ? "}" : "";
    sbuf_printf(b, "%s_sum%s%s%s %.9g\n", name, open, labels, close, (double)h->sum * scale);
    sbuf_printf(b, "%s_count%s%s%s %llu\n", name, open, labels, close,
                (unsigned long long)h->count);
}

static void prom_head(struct sbuf *b, const char *name, const char *type, const char *help)
{
    sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* ---- per-queue series ---- */

static void queue_fold(struct snap_queue *to, const struct snap_queue *q)
{
    struct queue_stats *s = &to->stats;
    s->ready += q->stats.ready;
    s->delayed += q->stats.delayed;
    s->reserved += q->stats.reserved;
    s->dead += q->stats.dead;
    s->pending += q->stats.pending;
    s->bytes += q->stats.bytes;
    if (q->stats.oldest_ready_age_ms > s->oldest_ready_age_ms)
        s->oldest_ready_age_ms = q->stats.oldest_ready_age_ms;
    uint64_t *t = &to->metrics.puts;
    const uint64_t *f = &q->metrics.puts;
    for (int i = 0; i < 10; i++) /* puts .. deleted: ten counters in a row (metrics.h) */
        t[i] += f[i];
    hist_add(&to->metrics.wait_us, &q->metrics.wait_us);
    hist_add(&to->metrics.process_us, &q->metrics.process_us);
}
_Static_assert(offsetof(struct queue_metrics, deleted) - offsetof(struct queue_metrics, puts) ==
                   9 * sizeof(uint64_t),
               "queue_fold sums ten consecutive counters");

struct counter_def {
    const char *name;
    size_t offset;
    const char *help;
};

static const struct counter_def queue_counters[] = {
    {"spool_queue_puts_total", offsetof(struct queue_metrics, puts), "Jobs put."},
    {"spool_queue_deliveries_total", offsetof(struct queue_metrics, deliveries),
     "Leases handed to workers (every attempt)."},
    {"spool_queue_acks_total", offsetof(struct queue_metrics, acks), "Jobs acknowledged."},
    {"spool_queue_releases_total", offsetof(struct queue_metrics, releases),
     "Jobs released by a worker."},
    {"spool_queue_buries_total", offsetof(struct queue_metrics, buries),
     "Jobs buried by a worker."},
    {"spool_queue_lease_expiries_total", offsetof(struct queue_metrics, lease_expiries),
     "Leases that ended without an answer (deadline passed or the worker disconnected)."},
    {"spool_queue_dead_lettered_total", offsetof(struct queue_metrics, dead_lettered),
     "Jobs that went dead (buried or out of attempts)."},
    {"spool_queue_expired_total", offsetof(struct queue_metrics, expired),
     "Jobs whose ttl ran out."},
    {"spool_queue_kicked_total", offsetof(struct queue_metrics, kicked),
     "Dead jobs kicked back to ready."},
    {"spool_queue_deleted_total", offsetof(struct queue_metrics, deleted),
     "Jobs deleted by a client."},
};

static const char *const state_names[] = {"ready", "delayed", "reserved", "dead", "pending"};

static uint64_t state_count(const struct queue_stats *s, int i)
{
    const uint64_t v[] = {s->ready, s->delayed, s->reserved, s->dead, s->pending};
    return v[i];
}

static void prom_queues(struct sbuf *b, const struct snap_queue *const *qs, uint32_t n)
{
    prom_head(b, "spool_queue_jobs", "gauge", "Jobs in the queue by state.");
    for (uint32_t i = 0; i < n; i++)
        for (int s = 0; s < 5; s++)
            sbuf_printf(b, "spool_queue_jobs{queue=\"%s\",state=\"%s\"} %llu\n", qs[i]->name,
                        state_names[s], (unsigned long long)state_count(&qs[i]->stats, s));
    prom_head(b, "spool_queue_oldest_ready_age_seconds", "gauge",
              "How long the oldest ready job has waited (0 when none is ready).");
    for (uint32_t i = 0; i < n; i++)
        sbuf_printf(b, "spool_queue_oldest_ready_age_seconds{queue=\"%s\"} %.3f\n",
                    qs[i]->name, (double)qs[i]->stats.oldest_ready_age_ms / 1000.0);
    prom_head(b, "spool_queue_body_bytes", "gauge", "Body bytes of the queue's live jobs.");
    for (uint32_t i = 0; i < n; i++)
        sbuf_printf(b, "spool_queue_body_bytes{queue=\"%s\"} %llu\n", qs[i]->name,
                    (unsigned long long)qs[i]->stats.bytes);
    prom_head(b, "spool_queue_paused", "gauge", "1 while the queue is paused.");
    for (uint32_t i = 0; i < n; i++)
        sbuf_printf(b, "spool_queue_paused{queue=\"%s\"} %d\n", qs[i]->name,
                    qs[i]->stats.paused ? 1 : 0);
    for (size_t c = 0; c < sizeof(queue_counters) / sizeof(queue_counters[0]); c++) {
        prom_head(b, queue_counters[c].name, "counter", queue_counters[c].help);
        for (uint32_t i = 0; i < n; i++) {
            const uint64_t *v = (const uint64_t *)(const void *)((const char *)&qs[i]->metrics +
                                                                 queue_counters[c].offset);
            sbuf_printf(b, "%s{queue=\"%s\"} %llu\n", queue_counters[c].name, qs[i]->name,
                        (unsigned long long)*v);
        }
    }
    char labels[LIMIT_QUEUE_NAME_MAX_BYTES + 16];
    struct bounds_text t;
    bounds_text_init(&t, &metrics_queue_time_us, 1e-6);
    prom_head(b, "spool_queue_wait_seconds", "histogram",
              "Time from put to first delivery.");
    for (uint32_t i = 0; i < n; i++) {
        snprintf(labels, sizeof(labels), "queue=\"%s\"", qs[i]->name);
        prom_hist(b, "spool_queue_wait_seconds", labels, &qs[i]->metrics.wait_us, &t, 1e-6);
    }
    prom_head(b, "spool_queue_processing_seconds", "histogram",
              "Time from delivery to ack.");
    for (uint32_t i = 0; i < n; i++) {
        snprintf(labels, sizeof(labels), "queue=\"%s\"", qs[i]->name);
        prom_hist(b, "spool_queue_processing_seconds", labels, &qs[i]->metrics.process_us, &t,
                  1e-6);
    }
}

/* ---- server series ---- */

static void prom_gauge(struct sbuf *b, const char *name, const char *help, double value)
{
    prom_head(b, name, "gauge", help);
    sbuf_printf(b, "%s %.12g\n", name, value);
}

static void prom_counter(struct sbuf *b, const char *name, const char *help, uint64_t value)
{
    prom_head(b, name, "counter", help);
    sbuf_printf(b, "%s %llu\n", name, (unsigned long long)value);
}

/* A wire code this build knows (unknown ones map to INTERNAL's and would repeat its name). */
static bool error_code_known(uint32_t code)
{
    return wire_error_to_wire(wire_error_from_wire((uint16_t)code)) == code;
}

/* A beanstalkd command's name for the opcode label: "beanstalk_put" ("beanstalk_unknown" for
 * lines naming no command), so the two protocols share the metric and stay apart. */
static const char *bs_cmd_label(uint32_t cmd, char *buf, size_t size)
{
    const char *name = cmd == METRICS_BS_UNKNOWN ? "unknown" : beanstalk_cmd_name(cmd);
    if (name == NULL)
        return NULL;
    snprintf(buf, size, "beanstalk_%s", name);
    return buf;
}

/* The beanstalkd listener's lines and errors, when it is on (25 + 9 series at most). */
static void prom_bs_requests(struct sbuf *b, const struct server_metrics *m, bool errors)
{
    char label[64];
    if (errors) {
        for (uint32_t i = 0; i < METRICS_BS_ERRORS; i++)
            sbuf_printf(b, "spool_request_errors_total{code=\"beanstalk_%s\"} %llu\n",
                        beanstalk_error_words[i], (unsigned long long)m->bs_errors[i]);
        return;
    }
    for (uint32_t cmd = 0; cmd < METRICS_BS_COMMANDS; cmd++)
        if (bs_cmd_label(cmd, label, sizeof(label)) != NULL)
            sbuf_printf(b, "spool_requests_total{opcode=\"%s\"} %llu\n", label,
                        (unsigned long long)m->bs_requests[cmd]);
}

static void prom_requests(struct sbuf *b, const struct server_metrics *m, bool beanstalk)
{
    prom_head(b, "spool_requests_total", "counter",
              "Requests handled, by opcode (beanstalk_*: the beanstalkd listener's commands).");
    for (uint32_t op = 0; op < METRICS_OPCODES; op++) {
        const char *name = wire_op_name((uint16_t)op);
        if (name != NULL && op != 0)
            sbuf_printf(b, "spool_requests_total{opcode=\"%s\"} %llu\n", name,
                        (unsigned long long)m->requests[op]);
    }
    if (beanstalk)
        prom_bs_requests(b, m, false);
    prom_head(b, "spool_request_errors_total", "counter", "Error replies sent, by error code.");
    for (uint32_t code = 1; code < METRICS_ERROR_CODES; code++) {
        if (!error_code_known(code))
            continue;
        const char *name = wire_error_name(wire_error_from_wire((uint16_t)code));
        if (name != NULL)
            sbuf_printf(b, "spool_request_errors_total{code=\"%s\"} %llu\n", name,
                        (unsigned long long)m->errors[code]);
    }
    if (beanstalk)
        prom_bs_requests(b, m, true);
}

/* Connections closed for a peer that stopped, by cause (enum metrics_conn_timeout). */
static void prom_timeouts(struct sbuf *b, const struct server_metrics *m)
{
    static const char *const reasons[METRICS_CONN_TIMEOUTS] = {
        [METRICS_TIMEOUT_HANDSHAKE] = "handshake",
        [METRICS_TIMEOUT_FRAME] = "frame",
        [METRICS_TIMEOUT_CLOSING] = "closing_unread",
        [METRICS_TIMEOUT_MEMORY] = "memory_unread",
    };
    prom_head(b, "spool_connections_timed_out_total", "counter",
              "Connections closed for a stopped peer: no HELLO, a stalled frame, or replies "
              "left unread (while closing, or above the memory bound).");
    for (uint32_t r = 0; r < METRICS_CONN_TIMEOUTS; r++)
        sbuf_printf(b, "spool_connections_timed_out_total{reason=\"%s\"} %llu\n", reasons[r],
                    (unsigned long long)m->connections_timed_out[r]);
}

static void prom_server(struct sbuf *b, const struct snapshot *s, uint64_t rss_bytes)
{
    const struct server_metrics *m = &s->server;
    prom_head(b, "spool_build_info", "gauge", "The running spoold's version (value 1).");
    sbuf_printf(b, "spool_build_info{version=\"%s\",sync=\"%s\"} 1\n", SPOOLD_VERSION,
                s->sync_mode);
    prom_gauge(b, "spool_uptime_seconds", "Time since spoold started.",
               (double)s->uptime_ms / 1000.0);
    prom_gauge(b, "spool_connections", "Open client connections (handshaking included).",
               s->connections);
    prom_gauge(b, "spool_connections_handshaking", "Connections that have not sent HELLO yet.",
               s->handshakes);
    prom_counter(b, "spool_connections_accepted_total", "Connections accepted.",
                 m->connections_accepted);
    prom_timeouts(b, m);
    prom_requests(b, m, s->beanstalk_enabled);
    prom_counter(b, "spool_received_bytes_total", "Bytes read from clients.", m->bytes_in);
    prom_counter(b, "spool_sent_bytes_total", "Bytes sent to clients.", m->bytes_out);
    prom_gauge(b, "spool_connection_input_max_bytes",
               "The most unparsed input one connection has held since spoold started.",
               (double)m->input_max_bytes);
    prom_gauge(b, "spool_connections_input_bytes",
               "Unparsed input all connections hold now.", (double)s->conn_input_bytes);
    prom_gauge(b, "spool_connections_output_bytes",
               "Replies all connections have not been sent yet.", (double)s->conn_output_bytes);
    prom_gauge(b, "spool_connections_buffer_bytes",
               "Input and output buffer memory all connections have allocated, in use or not.",
               (double)s->conn_buffer_bytes);
    prom_head(b, "spool_commit_duration_seconds", "histogram",
              "One group commit: batch write (and fdatasync in --sync always), rolls included.");
    struct bounds_text t;
    bounds_text_init(&t, &metrics_commit_us, 1e-6);
    prom_hist(b, "spool_commit_duration_seconds", "", &m->commit_us, &t, 1e-6);
    prom_head(b, "spool_commit_records", "histogram", "Log records per group commit.");
    bounds_text_init(&t, &metrics_commit_records, 1);
    prom_hist(b, "spool_commit_records", "", &m->commit_records, &t, 1);
    prom_counter(b, "spool_commit_written_bytes_total", "Bytes of log batches written.",
                 m->commit_bytes);
    prom_counter(b, "spool_log_appended_bytes_total", "Record bytes appended to the log.",
                 s->log_appended_bytes);
    prom_gauge(b, "spool_log_segments", "Log segments on disk.", s->log_segments);
    prom_gauge(b, "spool_log_segments_bytes", "Disk taken by log segments (preallocated).",
               (double)s->log_segments * (double)s->segment_size_bytes);
    prom_gauge(b, "spool_disk_free_bytes", "Free bytes of the data directory's file system.",
               (double)s->disk_free_bytes);
    prom_gauge(b, "spool_disk_size_bytes", "Size of the data directory's file system.",
               (double)s->disk_total_bytes);
    prom_gauge(b, "spool_disk_headroom_low",
               "1 while puts are refused with DISK_FULL to keep the disk headroom.",
               s->space_low ? 1 : 0);
    prom_gauge(b, "spool_checkpoint_reserve_short",
               "1 while the next checkpoint's disk space could not be reserved.",
               s->reserve_short ? 1 : 0);
    prom_gauge(b, "spool_checkpoint_age_seconds", "Time since the last checkpoint began.",
               (double)s->checkpoint_age_ms / 1000.0);
    prom_gauge(b, "spool_checkpoint_pending_bytes",
               "Log bytes written since the last checkpoint (replayed by a restart).",
               (double)s->checkpoint_pending_bytes);
    prom_gauge(b, "spool_checkpoint_size_bytes", "Size of the last checkpoint payload.",
               (double)s->checkpoint_payload_bytes);
    prom_gauge(b, "spool_recovery_duration_seconds",
               "Time the last start took to open the log, replay it and reload bodies.",
               (double)m->recovery_ns / 1e9);
    prom_gauge(b, "spool_resident_memory_bytes", "Resident set size of spoold.",
               (double)rss_bytes);
    prom_gauge(b, "spool_queues", "Queues known.", (double)s->totals.queues);
    prom_gauge(b, "spool_metrics_snapshot_build_seconds",
               "Loop time the snapshot behind this page took to copy, all its turns together.",
               (double)s->build_ns / 1e9);
    prom_gauge(b, "spool_metrics_snapshot_build_turns",
               "Loop turns the snapshot behind this page was copied over.", s->build_turns);
    prom_gauge(b, "spool_metrics_snapshot_queues_copied",
               "Queues the snapshot behind this page copied in full (the others were unchanged "
               "since an earlier snapshot and kept).",
               s->queues_copied);
    prom_counter(b, "spool_jobs_dead_lettered_total", "Jobs that went dead, every queue.",
                 s->totals.went_dead);
    prom_counter(b, "spool_jobs_expired_total", "Jobs whose ttl ran out, every queue.",
                 s->totals.expired);
}

/* The body cache (bodies kept in memory, --body-cache) and the log reads that bring evicted
 * bodies back for deliveries: a cache too small for the working set shows as reads climbing
 * with deliveries. */
static void prom_bodies(struct sbuf *b, const struct snapshot *s)
{
    prom_gauge(b, "spool_body_cache_bytes", "Bytes the body cache holds (bodies and overhead).",
               (double)s->bodies.bytes);
    prom_gauge(b, "spool_body_cache_limit_bytes", "The body cache's bound (0: unbounded).",
               (double)s->bodies.bytes_max);
    prom_gauge(b, "spool_body_cache_bodies", "Bodies the body cache holds.",
               (double)s->bodies.count);
    prom_counter(b, "spool_body_cache_evictions_total",
                 "Bodies evicted from the body cache (they stay in the log).",
                 s->bodies.evictions);
    prom_counter(b, "spool_body_fetch_waits_total",
                 "Deliveries that waited for bodies read back from the log.",
                 s->body_fetch.fetches);
    prom_counter(b, "spool_body_fetch_reads_total", "Batches of bodies read back from the log.",
                 s->body_fetch.batch_reads);
    prom_counter(b, "spool_body_prefetch_reads_total",
                 "Of those batch reads, the ones read-ahead issued for a drain.",
                 s->body_fetch.prefetch_reads);
    prom_counter(b, "spool_body_fetch_bodies_total",
                 "Bodies those reads brought back (cached or handed out).",
                 s->body_fetch.bodies_read);
    prom_counter(b, "spool_compaction_segments_total",
                 "Sealed segments compaction emptied by copying their few live jobs forward.",
                 s->compact.segments_compacted);
    prom_counter(b, "spool_compaction_jobs_copied_total",
                 "Live jobs compaction copied forward (RELOCATE records).",
                 s->compact.jobs_copied);
    prom_counter(b, "spool_compaction_bytes_copied_total",
                 "Log bytes those copies took.", s->compact.bytes_copied);
    prom_counter(b, "spool_body_fetch_errors_total",
                 "Deliveries whose bodies could not be read back from the log.",
                 s->body_fetch.errors);
}

void http_render_metrics(struct sbuf *b, const struct snapshot *snap, uint32_t queues_max,
                         uint64_t rss_bytes)
{
    prom_server(b, snap, rss_bytes);
    prom_bodies(b, snap);
    uint32_t n = snap->queue_count;
    const struct snap_queue **sorted = malloc(((size_t)n + 1) * sizeof(*sorted));
    if (sorted == NULL) {
        b->failed = true;
        return;
    }
    for (uint32_t i = 0; i < n; i++)
        sorted[i] = &snap->queues[i];
    /* One set of series per queue (a repeated label set is an invalid page), then the
     * labelled ones (the first queues_max names, sorted) ahead of those folded. */
    int64_t unique = snap_queue_unique(sorted, n);
    if (unique < 0) {
        free(sorted);
        b->failed = true;
        return;
    }
    n = (uint32_t)unique;
    uint32_t shown = snap_queue_select_first(sorted, n, queues_max);
    struct snap_queue other;
    if (n > queues_max) {
        memset(&other, 0, sizeof(other));
        strcpy(other.name, OTHER_QUEUES_LABEL);
        for (uint32_t i = queues_max; i < n; i++)
            queue_fold(&other, sorted[i]);
        sorted[queues_max] = &other;
        shown = queues_max + 1;
    }
    prom_gauge(b, "spool_metrics_queues_folded",
               "Queues summed under queue=\"(other)\" (beyond --metrics-max-queues).",
               n > queues_max ? n - queues_max : 0);
    prom_queues(b, sorted, shown);
    free(sorted);
}

/* ---- JSON ---- */

static void json_hist(struct sbuf *b, const char *name, const struct metrics_hist *h,
                      const struct metrics_bounds *bounds)
{
    sbuf_printf(b, "\"%s\":{\"count\":%llu,\"p50\":%.6f,\"p90\":%.6f,\"p99\":%.6f}", name,
                (unsigned long long)h->count, hist_quantile(h, bounds, 0.5) / 1e6,
                hist_quantile(h, bounds, 0.9) / 1e6, hist_quantile(h, bounds, 0.99) / 1e6);
}

void http_render_queue_json(struct sbuf *b, const struct snap_queue *q)
{
    const struct queue_stats *s = &q->stats;
    const struct queue_metrics *m = &q->metrics;
    sbuf_printf(b, "{\"name\":\"%s\",\"paused\":%s,\"ready\":%llu,\"delayed\":%llu,"
                "\"reserved\":%llu,\"dead\":%llu,\"pending\":%llu,\"body_bytes\":%llu,"
                "\"oldest_ready_age_ms\":%lld,",
                q->name, s->paused ? "true" : "false", (unsigned long long)s->ready,
                (unsigned long long)s->delayed, (unsigned long long)s->reserved,
                (unsigned long long)s->dead, (unsigned long long)s->pending,
                (unsigned long long)s->bytes, (long long)s->oldest_ready_age_ms);
    sbuf_printf(b, "\"puts\":%llu,\"deliveries\":%llu,\"acks\":%llu,\"releases\":%llu,"
                "\"buries\":%llu,\"lease_expiries\":%llu,\"dead_lettered\":%llu,"
                "\"expired\":%llu,\"kicked\":%llu,\"deleted\":%llu,",
                (unsigned long long)m->puts, (unsigned long long)m->deliveries,
                (unsigned long long)m->acks, (unsigned long long)m->releases,
                (unsigned long long)m->buries, (unsigned long long)m->lease_expiries,
                (unsigned long long)m->dead_lettered, (unsigned long long)m->expired,
                (unsigned long long)m->kicked, (unsigned long long)m->deleted);
    json_hist(b, "wait_seconds", &m->wait_us, &metrics_queue_time_us);
    sbuf_put(b, ",", 1);
    json_hist(b, "processing_seconds", &m->process_us, &metrics_queue_time_us);
    sbuf_put(b, "}", 1);
}

void http_render_queues_json(struct sbuf *b, const struct snapshot *snap)
{
    sbuf_put(b, "[", 1);
    for (uint32_t i = 0; i < snap->queue_count; i++) {
        if (i > 0)
            sbuf_put(b, ",", 1);
        http_render_queue_json(b, &snap->queues[i]);
    }
    sbuf_put(b, "]", 1);
}

static int dead_cmp(const void *a, const void *b)
{
    const struct snap_dead *da = a;
    const struct snap_dead *db = b;
    if (da->settled_ms != db->settled_ms)
        return da->settled_ms < db->settled_ms ? -1 : 1;
    return da->id < db->id ? -1 : da->id > db->id;
}

void http_render_dead_json(struct sbuf *b, const struct snapshot *snap)
{
    /* The snapshot is shared: sort a copy, oldest death first. */
    struct snap_dead *dead = malloc(((size_t)snap->dead_count + 1) * sizeof(*dead));
    if (dead == NULL) {
        b->failed = true;
        return;
    }
    memcpy(dead, snap->dead, (size_t)snap->dead_count * sizeof(*dead));
    qsort(dead, snap->dead_count, sizeof(*dead), dead_cmp);
    sbuf_put(b, "[", 1);
    for (uint32_t i = 0; i < snap->dead_count; i++) {
        const struct snap_dead *d = &dead[i];
        sbuf_printf(b, "%s{\"id\":%llu,\"queue\":\"%s\",\"attempts\":%u,\"dead_at_ms\":%lld,"
                    "\"reason\":", i > 0 ? "," : "", (unsigned long long)d->id, d->queue,
                    d->attempts, (long long)d->settled_ms);
        sbuf_json_string(b, d->reason, strlen(d->reason));
        sbuf_put(b, "}", 1);
    }
    sbuf_put(b, "]", 1);
    free(dead);
}

static void json_counts(struct sbuf *b, const struct server_metrics *m)
{
    sbuf_put(b, "\"requests\":{", 12);
    bool first = true;
    for (uint32_t op = 1; op < METRICS_OPCODES; op++) {
        const char *name = wire_op_name((uint16_t)op);
        if (name == NULL || m->requests[op] == 0)
            continue;
        sbuf_printf(b, "%s\"%s\":%llu", first ? "" : ",", name,
                    (unsigned long long)m->requests[op]);
        first = false;
    }
    char label[64];
    for (uint32_t cmd = 0; cmd < METRICS_BS_COMMANDS; cmd++) {
        if (m->bs_requests[cmd] == 0 || bs_cmd_label(cmd, label, sizeof(label)) == NULL)
            continue;
        sbuf_printf(b, "%s\"%s\":%llu", first ? "" : ",", label,
                    (unsigned long long)m->bs_requests[cmd]);
        first = false;
    }
    sbuf_put(b, "},\"errors\":{", 12);
    first = true;
    for (uint32_t code = 1; code < METRICS_ERROR_CODES; code++) {
        const char *name = wire_error_name(wire_error_from_wire((uint16_t)code));
        if (name == NULL || m->errors[code] == 0 || !error_code_known(code))
            continue;
        sbuf_printf(b, "%s\"%s\":%llu", first ? "" : ",", name,
                    (unsigned long long)m->errors[code]);
        first = false;
    }
    for (uint32_t i = 0; i < METRICS_BS_ERRORS; i++) {
        if (m->bs_errors[i] == 0)
            continue;
        sbuf_printf(b, "%s\"beanstalk_%s\":%llu", first ? "" : ",", beanstalk_error_words[i],
                    (unsigned long long)m->bs_errors[i]);
        first = false;
    }
    sbuf_put(b, "}", 1);
}

void http_render_server_json(struct sbuf *b, const struct snapshot *s, uint64_t rss_bytes)
{
    const struct server_metrics *m = &s->server;
    sbuf_printf(b, "{\"version\":\"%s\",\"sync\":\"%s\",\"now_ms\":%lld,\"uptime_ms\":%lld,"
                "\"stopping\":%s,\"connections\":%u,\"handshaking\":%u,"
                "\"connections_accepted\":%llu,\"queues\":%llu,",
                SPOOLD_VERSION, s->sync_mode, (long long)s->taken_wall_ms,
                (long long)s->uptime_ms, s->stopping ? "true" : "false", s->connections,
                s->handshakes, (unsigned long long)m->connections_accepted,
                (unsigned long long)s->totals.queues);
    sbuf_printf(b, "\"jobs\":{\"ready\":%llu,\"delayed\":%llu,\"reserved\":%llu,\"dead\":%llu,"
                "\"pending\":%llu,\"live\":%llu,\"dead_lettered\":%llu,\"expired\":%llu},",
                (unsigned long long)s->totals.ready, (unsigned long long)s->totals.delayed,
                (unsigned long long)s->totals.reserved, (unsigned long long)s->totals.dead,
                (unsigned long long)s->totals.pending, (unsigned long long)s->totals.jobs,
                (unsigned long long)s->totals.went_dead, (unsigned long long)s->totals.expired);
    json_hist(b, "commit_seconds", &m->commit_us, &metrics_commit_us);
    sbuf_printf(b, ",\"commit_records_avg\":%.2f,\"received_bytes\":%llu,\"sent_bytes\":%llu,",
                m->commit_records.count > 0
                    ? (double)m->commit_records.sum / (double)m->commit_records.count : 0.0,
                (unsigned long long)m->bytes_in, (unsigned long long)m->bytes_out);
    sbuf_printf(b, "\"log\":{\"segments\":%u,\"segments_bytes\":%llu,\"appended_bytes\":%llu,"
                "\"next_seq\":%llu,\"durable_seq_end\":%llu},",
                s->log_segments,
                (unsigned long long)(s->log_segments * s->segment_size_bytes),
                (unsigned long long)s->log_appended_bytes, (unsigned long long)s->next_seq,
                (unsigned long long)s->durable_seq_end);
    sbuf_printf(b, "\"disk\":{\"free_bytes\":%llu,\"size_bytes\":%llu,\"headroom_low\":%s,"
                "\"checkpoint_reserve_short\":%s},",
                (unsigned long long)s->disk_free_bytes, (unsigned long long)s->disk_total_bytes,
                s->space_low ? "true" : "false", s->reserve_short ? "true" : "false");
    sbuf_printf(b, "\"checkpoint\":{\"age_ms\":%lld,\"pending_bytes\":%llu,\"size_bytes\":%llu},"
                "\"recovery_ms\":%.3f,\"resident_bytes\":%llu,",
                (long long)s->checkpoint_age_ms, (unsigned long long)s->checkpoint_pending_bytes,
                (unsigned long long)s->checkpoint_payload_bytes, (double)m->recovery_ns / 1e6,
                (unsigned long long)rss_bytes);
    json_counts(b, m);
    sbuf_put(b, "}", 1);
}

const struct snap_queue *http_snap_queue(const struct snapshot *snap, const char *name)
{
    for (uint32_t i = 0; i < snap->queue_count; i++)
        if (strcmp(snap->queues[i].name, name) == 0)
            return &snap->queues[i];
    return NULL;
}

/* ---- a job, in the loop ---- */

bool http_job_json(struct queue_state *queues, struct observe_cmd *cmd)
{
    struct job *job = queue_job_find(queues, cmd->id);
    if (job == NULL || job->state == JOB_PENDING)
        return false;
    struct sbuf b = {0};
    sbuf_printf(&b,
                "{\"id\":%llu,\"queue\":\"%s\",\"state\":\"%s\",\"priority\":%u,"
                "\"attempts\":%u,\"max_attempts\":%u,\"ttr_ms\":%llu,\"created_ms\":%lld,"
                "\"run_at_ms\":%lld,\"expires_at_ms\":%lld,\"settled_ms\":%lld,"
                "\"body_bytes\":%u,",
                (unsigned long long)job->id, job->queue->name, job_state_name(job->state),
                job->priority, job->attempts, job->max_attempts,
                (unsigned long long)queue_job_ttr_ms(job), (long long)job->created_ms,
                (long long)queue_job_x(job)->run_at_ms, (long long)queue_job_x(job)->expires_at_ms,
                (long long)queue_job_x(job)->settled_ms, job->body_len);
    if (job->state == JOB_RESERVED)
        sbuf_printf(&b, "\"lease_deadline_ms\":%lld,", (long long)queue_job_x(job)->deadline_ms);
    sbuf_put(&b, "\"reason\":", 9);
    sbuf_json_string(&b, queue_job_x(job)->reason != NULL ? queue_job_x(job)->reason : "",
                     queue_job_x(job)->reason_len);
    sbuf_put(&b, "}", 1);
    cmd->status = b.failed ? 500 : 200;
    cmd->body = b.failed ? NULL : b.data;
    if (b.failed)
        free(b.data);
    return true;
}
