/*
 * The HTTP listener (http.h): libmicrohttpd parses HTTP in a pool of its own threads; this
 * file routes requests, checks the bearer token, and answers from a snapshot or through a
 * command (observe.h). The loop is never waited on with a lock held and never blocked: the
 * worst a slow or hostile HTTP client can do is occupy these threads and their connection
 * slots, bounded below.
 *
 * Routes (docs/OPERATIONS.md has examples):
 *   GET  /                                  the dashboard page (embedded, no auth: no data)
 *   GET  /metrics                           Prometheus text
 *   GET  /api/v1/server                     server numbers
 *   GET  /api/v1/queues                     every queue
 *   GET  /api/v1/queues/NAME                one queue
 *   GET  /api/v1/dead                       the oldest dead jobs (up to OBSERVE_DEAD_MAX)
 *   GET  /api/v1/overview                   server, queues and dead jobs in one (the page's)
 *   GET  /api/v1/jobs/ID                    one job
 *   POST /api/v1/queues/NAME/pause|resume   pause or resume a queue
 *   POST /api/v1/queues/NAME/kick[?count=N] kick up to N (default HTTP_KICK_MAX) dead jobs
 *   POST /api/v1/jobs/ID/kick               kick one dead job
 *   POST /api/v1/jobs/ID/delete, DELETE /api/v1/jobs/ID   delete a job (not a reserved one)
 *
 * A POST whose Origin header names another site is refused (403): without a secret the
 * listener is open to any local process, but a web page the operator happens to visit must
 * not be able to kick or delete through the operator's browser.
 *
 * Every request whose Host header names neither a loopback address (localhost, 127.0.0.0/8,
 * [::1]), nor the bound address, nor a name given with --http-allow-host is refused (421):
 * a page on a DNS-rebinding domain (evil.example resolving to 127.0.0.1 after the page has
 * loaded) is same-origin with the listener in the operator's browser, and would otherwise
 * read /metrics and the API; its requests carry Host: evil.example. An IP-literal Host
 * cannot be rebound, so with a wildcard bind (0.0.0.0, ::) any address literal is accepted.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dashboard_html.h"

/* HTTP threads: two serve a scrape and a dashboard at once on this 2-core class of machine
 * without taking a core from the loop when idle (they block in epoll). */
#define HTTP_THREADS 2
/* Connections at once: a Prometheus, a few dashboards and scripts; beyond it MHD refuses. */
#define HTTP_CONNECTIONS_MAX 64
/* An idle keep-alive connection is closed after this many seconds. */
#define HTTP_IDLE_TIMEOUT_S 30
/* Dead jobs one POST .../kick moves when no count is given: a whole poison storm at once would
 * log that many KICK records in one turn; an operator clicks again. */
#define HTTP_KICK_MAX 1000
/* Request body bytes read and thrown away (no route takes a body). */
#define HTTP_BODY_MAX 4096

struct http {
    struct MHD_Daemon *daemon;
    struct observe *observe;
    int listen_fd;
    uint32_t queues_max;
    char allow_hosts[1024];            /* --http-allow-host, lower case, comma separated */
    char bound_host[INET6_ADDRSTRLEN]; /* numeric, as bound */
    bool bound_wildcard;               /* 0.0.0.0 or ::: every address of the machine */
    char secret[256];
    uint32_t secret_len;
};

/* ---- answers ---- */

static enum MHD_Result answer(struct MHD_Connection *c, unsigned int status, const char *type,
                              char *body, size_t len, bool must_free)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (r == NULL) {
        if (must_free)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (status == 401)
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"spoold\"");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result answer_json_error(struct MHD_Connection *c, unsigned int status,
                                         const char *message)
{
    struct sbuf b = {0};
    sbuf_put(&b, "{\"error\":", 9);
    sbuf_json_string(&b, message, strlen(message));
    sbuf_put(&b, "}", 1);
    if (b.failed) {
        free(b.data);
        return MHD_NO;
    }
    return answer(c, status, "application/json", b.data, b.len, true);
}

static enum MHD_Result answer_sbuf(struct MHD_Connection *c, struct sbuf *b, const char *type)
{
    if (b->failed) {
        free(b->data);
        return answer_json_error(c, 500, "out of memory");
    }
    if (b->data == NULL)
        sbuf_put(b, "", 0);
    return answer(c, 200, type, b->data, b->len, true);
}

/* ---- checks ---- */

#define HTTP_HOST_REFUSED                                                                       \
    "the Host header names neither a loopback address nor this listener's address: refused "  \
    "(DNS rebinding); start spoold with --http-allow-host NAME to accept NAME\n"

/* Compares every byte whatever the input, so the time taken says nothing of the secret. */
static bool secret_equal(const struct http *http, const char *token, size_t len)
{
    unsigned diff = len != http->secret_len;
    for (size_t i = 0; i < http->secret_len; i++)
        diff |= (unsigned char)http->secret[i] ^ (unsigned char)(i < len ? token[i] : 0);
    return diff == 0;
}

static bool authorized(const struct http *http, struct MHD_Connection *c)
{
    if (http->secret_len == 0)
        return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    const char *token = h + 7;
    return secret_equal(http, token, strlen(token));
}

/* A POST from a page of another site (the Origin a browser always sends on one): refused. */
static bool same_origin(struct MHD_Connection *c)
{
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (origin == NULL)
        return true; /* not a browser's cross-site request: curl, scripts */
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    if (host == NULL)
        return false;
    const char *rest = strncmp(origin, "http://", 7) == 0 ? origin + 7 : NULL;
    return rest != NULL && strcmp(rest, host) == 0;
}

/* The longest Host header name compared: a DNS name's limit. */
#define HTTP_HOST_NAME_MAX 255

/* Is name (lower case, no port, IPv6 without brackets) in the comma list? */
static bool host_listed(const char *list, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = list; *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        /* an entry may be written [::1] or ::1 */
        const char *e = p;
        size_t en = n;
        if (en >= 2 && e[0] == '[' && e[en - 1] == ']') {
            e++;
            en -= 2;
        }
        if (en == len && memcmp(e, name, len) == 0)
            return true;
        p += n + (end != NULL);
    }
    return false;
}

static bool host_address_allowed(const struct http *http, const char *name)
{
    unsigned char a[16], b[16];
    int family = inet_pton(AF_INET, name, a) == 1   ? AF_INET
                 : inet_pton(AF_INET6, name, a) == 1 ? AF_INET6
                                                     : 0;
    if (family == 0)
        return false;
    static const unsigned char loopback6[16] = {[15] = 1};
    if ((family == AF_INET && a[0] == 127) || (family == AF_INET6 && !memcmp(a, loopback6, 16)))
        return true;
    if (http->bound_wildcard)
        return true; /* an address literal cannot be rebound */
    return inet_pton(family, http->bound_host, b) == 1 &&
           memcmp(a, b, family == AF_INET ? 4 : 16) == 0;
}

/* The DNS-rebinding check (top of file). No Host at all (HTTP/1.0 from a script) is accepted:
 * a browser always sends one. */
static bool host_allowed(const struct http *http, struct MHD_Connection *c)
{
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    if (host == NULL)
        return true;
    char name[HTTP_HOST_NAME_MAX + 1];
    const char *start = host, *end;
    if (host[0] == '[') { /* [v6]:port */
        start = host + 1;
        end = strchr(start, ']');
        if (end == NULL || (end[1] != '\0' && end[1] != ':'))
            return false;
    } else {
        end = strchr(host, ':');
        if (end == NULL)
            end = host + strlen(host);
    }
    size_t len = (size_t)(end - start);
    if (len == 0 || len > HTTP_HOST_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        name[i] = (char)(start[i] >= 'A' && start[i] <= 'Z' ? start[i] - 'A' + 'a' : start[i]);
    name[len] = '\0';
    if (len > 1 && name[len - 1] == '.') /* "localhost." is the same name */
        name[--len] = '\0';
    return strcmp(name, "localhost") == 0 || host_address_allowed(http, name) ||
           host_listed(http->allow_hosts, name);
}

static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, resident = 0;
    if (f == NULL)
        return 0;
    if (fscanf(f, "%llu %llu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* ---- routes ---- */

/* GET routes answered from a snapshot. */
static enum MHD_Result route_snapshot(struct http *http, struct MHD_Connection *c,
                                      const char *path)
{
    struct snapshot *snap = observe_snapshot_get(http->observe);
    if (snap == NULL)
        return answer_json_error(c, 503, "the server loop did not answer");
    struct sbuf b = {0};
    const char *type = "application/json";
    enum MHD_Result ret;
    if (strcmp(path, "/metrics") == 0) {
        http_render_metrics(&b, snap, http->queues_max, rss_bytes());
        type = "text/plain; version=0.0.4; charset=utf-8";
    } else if (strcmp(path, "/api/v1/server") == 0) {
        http_render_server_json(&b, snap, rss_bytes());
    } else if (strcmp(path, "/api/v1/queues") == 0) {
        http_render_queues_json(&b, snap);
    } else if (strcmp(path, "/api/v1/dead") == 0) {
        http_render_dead_json(&b, snap);
    } else if (strcmp(path, "/api/v1/overview") == 0) {
        sbuf_put(&b, "{\"server\":", 10);
        http_render_server_json(&b, snap, rss_bytes());
        sbuf_put(&b, ",\"queues\":", 10);
        http_render_queues_json(&b, snap);
        sbuf_put(&b, ",\"dead\":", 8);
        http_render_dead_json(&b, snap);
        sbuf_put(&b, "}", 1);
    } else {
        const struct snap_queue *q = http_snap_queue(snap, path + strlen("/api/v1/queues/"));
        if (q == NULL) {
            observe_snapshot_put(http->observe, snap);
            return answer_json_error(c, 404, "no such queue");
        }
        http_render_queue_json(&b, q);
    }
    observe_snapshot_put(http->observe, snap);
    ret = answer_sbuf(c, &b, type);
    return ret;
}

/* Run a command in the loop and answer with what it says. */
static enum MHD_Result route_command(struct http *http, struct MHD_Connection *c,
                                     struct observe_cmd *cmd)
{
    if (!observe_command(http->observe, cmd))
        return answer_json_error(c, 503, "the server loop did not answer in time");
    unsigned int status = (unsigned int)cmd->status;
    char *body = cmd->body;
    free(cmd);
    if (body == NULL)
        return answer_json_error(c, status == 503 ? 503 : 500,
                                 status == 503 ? "the server is stopping or busy" : "internal error");
    return answer(c, status, "application/json", body, strlen(body), true);
}

static bool parse_id(const char *text, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return false;
        uint64_t d = (uint64_t)(text[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* /api/v1/jobs/ID[/ACTION] and /api/v1/queues/NAME/ACTION into a command; NULL if no route
 * matches (cmd is malloc'ed). */
static struct observe_cmd *command_of(struct MHD_Connection *c, const char *method,
                                      const char *path)
{
    bool post = strcmp(method, "POST") == 0;
    bool del = strcmp(method, "DELETE") == 0;
    struct observe_cmd *cmd = calloc(1, sizeof(*cmd));
    if (cmd == NULL)
        return NULL;
    const char *jobs = "/api/v1/jobs/", *queues = "/api/v1/queues/";
    if (strncmp(path, jobs, strlen(jobs)) == 0) {
        const char *id = path + strlen(jobs);
        const char *slash = strchr(id, '/');
        size_t id_len = slash != NULL ? (size_t)(slash - id) : strlen(id);
        const char *action = slash != NULL ? slash + 1 : "";
        bool ok = parse_id(id, id_len, &cmd->id);
        if (ok && !post && !del && action[0] == '\0')
            cmd->kind = OBSERVE_JOB_GET;
        else if (ok && ((del && action[0] == '\0') || (post && strcmp(action, "delete") == 0)))
            cmd->kind = OBSERVE_DELETE_JOB;
        else if (ok && post && strcmp(action, "kick") == 0)
            cmd->kind = OBSERVE_KICK_JOB;
        else
            ok = false;
        if (ok)
            return cmd;
    } else if (post && strncmp(path, queues, strlen(queues)) == 0) {
        const char *name = path + strlen(queues);
        const char *slash = strchr(name, '/');
        size_t len = slash != NULL ? (size_t)(slash - name) : 0;
        if (slash != NULL && len > 0 && len <= LIMIT_QUEUE_NAME_MAX_BYTES) {
            memcpy(cmd->queue, name, len);
            cmd->queue_len = (uint32_t)len;
            const char *action = slash + 1;
            const char *count = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "count");
            uint64_t n = HTTP_KICK_MAX;
            bool ok = count == NULL || (parse_id(count, strlen(count), &n) && n > 0);
            cmd->count = (uint32_t)(n < HTTP_KICK_MAX ? n : HTTP_KICK_MAX);
            if (strcmp(action, "pause") == 0 || strcmp(action, "resume") == 0) {
                cmd->kind = action[0] == 'p' ? OBSERVE_PAUSE : OBSERVE_RESUME;
                return cmd;
            }
            if (strcmp(action, "kick") == 0 && ok) {
                cmd->kind = OBSERVE_KICK_QUEUE;
                return cmd;
            }
        }
    }
    free(cmd);
    return NULL;
}

static enum MHD_Result route(struct http *http, struct MHD_Connection *c, const char *method,
                             const char *path)
{
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (!host_allowed(http, c))
        return answer(c, 421, "text/plain; charset=utf-8",
                      (char *)(uintptr_t)HTTP_HOST_REFUSED, strlen(HTTP_HOST_REFUSED), false);
    if (get && (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0))
        return answer(c, 200, "text/html; charset=utf-8", (char *)(uintptr_t)dashboard_html,
                      sizeof(dashboard_html) - 1, false);
    if (!authorized(http, c))
        return answer_json_error(c, 401, "a bearer token is required (Authorization: Bearer)");
    if (get && (strcmp(path, "/metrics") == 0 || strncmp(path, "/api/v1/", 8) == 0) &&
        strncmp(path, "/api/v1/jobs/", 13) != 0) {
        bool known = strcmp(path, "/metrics") == 0 || strcmp(path, "/api/v1/server") == 0 ||
                     strcmp(path, "/api/v1/queues") == 0 || strcmp(path, "/api/v1/dead") == 0 ||
                     strcmp(path, "/api/v1/overview") == 0 ||
                     (strncmp(path, "/api/v1/queues/", 15) == 0 && path[15] != '\0' &&
                      strchr(path + 15, '/') == NULL);
        if (known)
            return route_snapshot(http, c, path);
        return answer_json_error(c, 404, "no such route");
    }
    if (!get && !same_origin(c))
        return answer_json_error(c, 403, "cross-site request refused");
    struct observe_cmd *cmd = command_of(c, method, path);
    if (cmd == NULL)
        return answer_json_error(c, get || strcmp(method, "POST") == 0 ||
                                            strcmp(method, "DELETE") == 0 ? 404 : 405,
                                 "no such route");
    return route_command(http, c, cmd);
}

/* HTTP threads run at a lower priority (nice HTTP_NICE) than the event loop: when the cores
 * are busy, rendering a page waits, not a put. Set once per thread, at its first request (MHD
 * starts its threads itself). */
#define HTTP_NICE 10

static void http_thread_yield(void)
{
    static _Thread_local bool lowered;
    if (lowered)
        return;
    lowered = true;
    /* On Linux, PRIO_PROCESS with a thread id sets that thread's nice value alone. */
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), HTTP_NICE) != 0)
        return; /* not allowed: serve at the normal priority */
}

static enum MHD_Result http_request(void *cls, struct MHD_Connection *c, const char *url,
                                    const char *method, const char *version,
                                    const char *upload_data, size_t *upload_data_size,
                                    void **con_cls)
{
    (void)version;
    (void)upload_data;
    static int started;
    http_thread_yield();
    if (*con_cls == NULL) { /* headers only: the body (if any) comes next */
        *con_cls = &started;
        return MHD_YES;
    }
    if (*upload_data_size != 0) { /* no route takes a body: dropped as it arrives */
        *upload_data_size = 0;
        return MHD_YES;
    }
    return route(cls, c, method, url);
}

/* ---- start and stop ---- */

static int listen_open(const struct server_config *config, char *addr, size_t addr_size)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", config->http_port);
    if (getaddrinfo(config->http_host, port, &hints, &res) != 0)
        return -EADDRNOTAVAIL;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    int rc = 0;
    if (fd >= 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 64) != 0)
        rc = -errno;
    freeaddrinfo(res);
    if (rc != 0) {
        if (fd >= 0)
            close(fd);
        return rc;
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned bound = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0 && ss.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        bound = ntohs(in->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        bound = ntohs(in6->sin6_port);
    }
    snprintf(addr, addr_size, ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, bound);
    return fd;
}

/* From "HOST:PORT" or "[V6]:PORT" as listen_open wrote it. */
static void bound_host_of(struct http *http, const char *addr)
{
    const char *start = addr[0] == '[' ? addr + 1 : addr;
    const char *end = addr[0] == '[' ? strchr(start, ']') : strrchr(start, ':');
    size_t len = end != NULL ? (size_t)(end - start) : 0;
    if (len >= sizeof(http->bound_host))
        len = 0;
    memcpy(http->bound_host, start, len);
    http->bound_host[len] = '\0';
    unsigned char a[16] = {0}, zero[16] = {0};
    http->bound_wildcard = (inet_pton(AF_INET, http->bound_host, a) == 1 && !memcmp(a, zero, 4)) ||
                           (inet_pton(AF_INET6, http->bound_host, a) == 1 && !memcmp(a, zero, 16));
}

int http_start(struct observe *observe, const struct server_config *config, char *addr,
               size_t addr_size, struct http **out)
{
    struct http *http = calloc(1, sizeof(*http));
    if (http == NULL)
        return -ENOMEM;
    http->observe = observe;
    http->queues_max = config->metrics_queues_max;
    _Static_assert(sizeof(http->secret) == sizeof(config->auth_secret), "secret sizes");
    memcpy(http->secret, config->auth_secret, sizeof(http->secret));
    http->secret_len = config->auth_secret_len;
    _Static_assert(sizeof(http->allow_hosts) == sizeof(config->http_allow_hosts), "sizes");
    memcpy(http->allow_hosts, config->http_allow_hosts, sizeof(http->allow_hosts));
    http->listen_fd = listen_open(config, addr, addr_size);
    if (http->listen_fd < 0) {
        int rc = http->listen_fd;
        free(http);
        return rc;
    }
    bound_host_of(http, addr);
    /* the name given to --http (spoold --http myhost:7712) is the listener's own */
    if (!host_listed(http->allow_hosts, config->http_host) &&
        strlen(http->allow_hosts) + 1 + strlen(config->http_host) < sizeof(http->allow_hosts)) {
        size_t used = strlen(http->allow_hosts);
        snprintf(http->allow_hosts + used, sizeof(http->allow_hosts) - used, "%s%s",
                 used > 0 ? "," : "", config->http_host);
        for (char *p = http->allow_hosts + used; *p != '\0'; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    }
    http->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC, 0, NULL, NULL,
        http_request, http, MHD_OPTION_LISTEN_SOCKET, http->listen_fd,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)HTTP_THREADS, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)HTTP_CONNECTIONS_MAX, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)HTTP_IDLE_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)(32 * 1024 + HTTP_BODY_MAX), MHD_OPTION_END);
    if (http->daemon == NULL) {
        close(http->listen_fd);
        free(http);
        return -EIO;
    }
    *out = http;
    return 0;
}

void http_stop(struct http *http)
{
    MHD_stop_daemon(http->daemon); /* closes the listening socket too (it was not quiesced) */
    free(http);
}
