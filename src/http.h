/*
 * spoold's HTTP listener (libmicrohttpd, in its own threads): Prometheus text at /metrics,
 * JSON at /api/v1/..., POST actions, and the dashboard page at / (docs/OPERATIONS.md lists
 * every route and metric). Every number comes from a snapshot the loop published
 * (observe.h); actions go to the loop as commands. With --auth-file, every route but the page
 * itself (static, it holds no data) needs "Authorization: Bearer <secret>".
 */
#ifndef SPOOL_SRC_HTTP_H
#define SPOOL_SRC_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "observe.h"

struct http;

/* Listen on config->http_host:http_port; addr receives "HOST:PORT" as bound. 0 or a negative
 * errno (the address is taken, cannot be resolved, the library failed to start). */
SPOOL_MUST_USE int http_start(struct observe *observe, const struct server_config *config,
                              char *addr, size_t addr_size, struct http **out);
void http_stop(struct http *http);

/* A growable text buffer for the renderers. On allocation failure it stops growing and sets
 * failed (the request then answers 500). */
struct sbuf {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
};
void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbuf_put(struct sbuf *b, const char *data, size_t len);
/* A JSON string literal, quotes included: control bytes, quote and backslash escaped, UTF-8
 * kept, any byte that is not part of well-formed UTF-8 replaced by U+FFFD (reasons are worker
 * text of any bytes). */
void sbuf_json_string(struct sbuf *b, const char *s, size_t len);

/* Renderers (http_render.c): from one snapshot, no locks. */
void http_render_metrics(struct sbuf *b, const struct snapshot *snap, uint32_t queues_max,
                         uint64_t rss_bytes);
void http_render_server_json(struct sbuf *b, const struct snapshot *snap, uint64_t rss_bytes);
void http_render_queue_json(struct sbuf *b, const struct snap_queue *q);
void http_render_queues_json(struct sbuf *b, const struct snapshot *snap);
void http_render_dead_json(struct sbuf *b, const struct snapshot *snap);
/* A snapshot's queue by name, or NULL. */
const struct snap_queue *http_snap_queue(const struct snapshot *snap, const char *name);

/* In the loop (observe.c): cmd->status and cmd->body for GET /api/v1/jobs/ID; false when no
 * such job. */
bool http_job_json(struct queue_state *queues, struct observe_cmd *cmd);

#endif
