/* server.c - the HTTP server: libmicrohttpd for HTTP, driven by libuv loops (one
 * per --io-threads); request work on the libuv pool.
 *
 * Wiring.  Each I/O thread runs a libuv loop and an MHD daemon of its own.  The
 * first loop accepts every connection on the one listening socket and hands it
 * to the loop with the fewest open connections (MHD_add_connection on that
 * loop's thread), where it stays.  MHD runs without threads of its own
 * (MHD_USE_EPOLL, external mode): its epoll descriptor sits in a uv_poll_t on
 * the loop and a uv_timer_t follows MHD_get_timeout, so every MHD callback of a
 * daemon runs on its loop's thread.  What the loops share (admission, connection
 * counts, metrics, draining) is in the server, behind atomics or its lock.
 *
 * The access handler collects the body (bounded) and suspends the connection.
 * A small request then goes, with the others of the same MHD_run, to its loop's
 * compute thread: a pool thread that one long work item holds for the loop's
 * lifetime (ioloop.compute).  A larger one is a uv_queue_work of its own: the
 * work callback decodes, computes and encodes on a pool thread; a large batch
 * comes back to the loop once to be split into chunks, one per pool thread, and
 * once more to be finished.  The last callback on the loop resumes the
 * connection and runs MHD, which calls the handler again to queue the response.
 *
 * Rules this file keeps (the traps of the two libraries):
 *  - resume exactly once per suspend, and never touch the request after
 *    MHD_resume_connection until MHD calls the handler again;
 *  - suspended connections never time out, so every suspended request has work
 *    on the pool that will end;
 *  - MHD_stop_daemon only when no connection is suspended;
 *  - the pool queue is unbounded, so admission is bounded here (--max-inflight);
 *  - UV_THREADPOOL_SIZE is set in main, before the first uv_queue_work: --threads
 *    plus one per loop for the compute threads (the pool is the process's,
 *    shared by the loops; completions come back to the loop that queued the
 *    work). */
#include "srv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

/* Below this many numbers a request is decoded, computed and encoded in one
 * work item; above it the blocks are spread over the pool. */
#define SPLIT_ELEMENTS 200000

enum route {
    R_NONE,
    R_LOSS,
    R_OBJECTIVE,
    R_CATALOG,
    R_CATALOG_ONE,
    R_HEALTH,
    R_READY,
    R_METRICS,
    R_OPENAPI
};

/* Every open connection, for the slow-client sweep: MHD's timeout only counts
 * idle time, so a client that trickles a byte now and then would hold a
 * connection forever. */
typedef struct client {
    struct client *next, *prev;
    MHD_socket fd;
    uint64_t since; /* start of the connection or end of its last request */
    size_t body;    /* Content-Length of the request being received */
    int busy;       /* a request is complete and being answered */
    int receiving;  /* an admitted POST's body is arriving */
    int counted;    /* counts in the server's connection counts (addr below) */
    struct sockaddr_storage addr;
} client;

/* An accepted connection on its way to a loop. */
typedef struct accepted {
    MHD_socket fd;
    struct sockaddr_storage addr;
    socklen_t len;
} accepted;

/* Open connections from one client address (--max-connections-per-ip). */
typedef struct addr_count {
    struct sockaddr_storage addr; /* the address only: port 0 */
    unsigned long n;
} addr_count;

typedef struct server server;

/* One I/O thread: a libuv loop, an MHD daemon and what only it touches. */
typedef struct ioloop {
    server *s;
    uv_loop_t loop;
    uv_thread_t thread; /* loops after the first; the first runs on main's thread */
    struct MHD_Daemon *mhd;
    uv_poll_t poll;
    uv_timer_t timer;
    uv_timer_t drain;
    uv_timer_t sweep;
    uv_async_t wake;   /* draining starts (sent by the signal handler) */
    uv_async_t handed; /* connections were handed to this loop */
    accepted *inbox;   /* under the server's lock */
    size_t n_inbox, cap_inbox;
    unsigned long open;      /* connections on this loop (the server's lock) */
    int adding;              /* MHD_add_connection is running: its count is not taken */
    unsigned long running;   /* suspended requests with work on the pool */
    struct request *pending; /* small requests to hand to the pool after MHD_run */
    size_t n_pending;
    size_t batches; /* batches with the compute thread (BATCHES_AHEAD at most) */
    client clients; /* list head */
    uint64_t id_state;
    /* The loop's compute thread: a pool thread held by one long work item, which
     * takes the loop's batches of small requests in order.  Paired with one loop,
     * it stays on that loop's CPU and caches; with every loop's batches on any
     * pool thread, wake-ups across CPUs ate much of what a second loop gained
     * (tests/bench/README.md). */
    uv_work_t compute;
    uv_mutex_t cmu;
    uv_cond_t ccv;
    struct batch *chead, *ctail; /* to do */
    struct batch *cdone;         /* done, for the loop */
    int cquit;
    uv_async_t cwake; /* batches are done */
} ioloop;

struct server {
    srv_config *cfg;
    ioloop *loops;
    size_t n_loops;
    MHD_socket listen_fd;
    uv_poll_t accept_poll;         /* on the first loop */
    uv_timer_t accept_wait;        /* accept paused (out of descriptors) */
    uv_signal_t sig_term, sig_int; /* on the first loop */
    atomic_int draining;
    atomic_ulong inflight;           /* admitted, response not yet sent; every loop */
    _Atomic uint64_t drain_deadline; /* ms (uv_hrtime), set before the loops wake */
    atomic_size_t stopped;           /* loops after the first that have stopped */
    uv_mutex_t lock;                 /* metrics, connection counts */
    srv_metrics metrics;
    unsigned long connections;
    addr_count *addrs;
    size_t n_addrs, cap_addrs;
    char *catalog;
    size_t catalog_len;
};

typedef struct request {
    server *s;
    ioloop *io;
    struct MHD_Connection *conn;
    const char *url, *method;
    const char *path; /* url's path (route_of) */
    int route, metric;
    int counted;  /* counts in s->inflight */
    int recorded; /* in the metrics (and the access log): finish_request ran */
    int running;  /* suspended, work on the pool */
    int done;     /* loop thread: the job is finished, the next handler call answers */
    int phase;    /* PH_*: set by a work item, read by its after-work callback */
    int too_big;
    client *cl;   /* its connection's sweep entry (NULL if unknown) */
    int has_body; /* Content-Length > 0 or Transfer-Encoding */
    int binary;   /* Inference-Header-Content-Length was given */
    int gzip_in;  /* Content-Encoding: gzip or deflate */
    unsigned long long json_len;
    int checked; /* headers() ran */
    size_t received;
    srv_buf body;
    char id[132];
    uint64_t t0;
    srv_job job;
    int has_job;
    uv_work_t work;
    uv_work_t *chunks; /* a parallel phase: one item per range */
    size_t n_chunks, pending, n_units;
    void (*range)(struct request *, size_t, size_t);
    void (*then)(struct request *);
    uint64_t t_phase;
    struct request *next; /* in ioloop.pending */
} request;

/* Small requests go to their loop's compute thread in batches: one batch (one
 * wake-up, one completion) for every request that MHD_run made ready.  At most
 * BATCHES_AHEAD batches per loop are with the thread; requests that come
 * meanwhile wait for one to end and go together (group commit): under load a
 * wake-up serves many requests, idle it serves one at once. */
typedef struct batch {
    uv_work_t work;
    struct batch *next; /* in the compute queue */
    size_t n;
    request *reqs[];
} batch;

/* Bodies up to this size are batched; larger ones get a work item of their own
 * on the pool (16 KiB of JSON is some 800 numbers, about 40 us of work). */
#define BATCH_MAX_BODY (16 * 1024)

/* ---- request ids ---- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void request_id(ioloop *io, request *r)
{
    const char *given =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Request-Id");
    if (given) {
        size_t n = strlen(given), ok = n >= 1 && n <= 128;
        for (size_t i = 0; ok && i < n; i++) ok = given[i] > 0x20 && given[i] < 0x7f;
        if (ok) {
            memcpy(r->id, given, n + 1);
            return;
        }
    }
    io->id_state += 0x9e3779b97f4a7c15ULL;
    uint64_t v = mix64(io->id_state);
    for (int i = 15; i >= 0; i--, v >>= 4) r->id[i] = "0123456789abcdef"[v & 15];
    r->id[16] = '\0';
}

/* ---- responses ---- */

/* Appends ns as milliseconds with three decimals ("12.345"); the I/O thread
 * writes one Server-Timing header per response, without printf's float path. */
static char *put_ms(char *p, uint64_t ns)
{
    uint64_t us = (ns + 500) / 1000;
    p += srv_fmt_uint(p, us / 1000);
    *p++ = '.';
    *p++ = (char)('0' + us / 100 % 10);
    *p++ = (char)('0' + us / 10 % 10);
    *p++ = (char)('0' + us % 10);
    return p;
}

static void server_timing(const srv_job *j, char *out)
{
    static const char *const names[] = {"parse;dur=", ", compute;dur=", ", encode;dur="};
    const uint64_t ns[] = {j->t_parse, j->t_compute, j->t_encode};
    char *p = out;
    for (int k = 0; k < 3; k++) {
        size_t len = strlen(names[k]);
        memcpy(p, names[k], len);
        p = put_ms(p + len, ns[k]);
    }
    *p = '\0';
}

/* A request leaves the admitted ones: its response is sent, or its client went
 * away (MHD's completion callback).  Not before: draining waits for this count,
 * and stopping a daemon closes its connections, so a large response still
 * being written would be cut off. */
static void uncount(request *r)
{
    if (!r->counted) return;
    r->counted = 0;
    atomic_fetch_sub(&r->s->inflight, 1);
}

static void finish_request(request *r, int status, size_t out_len)
{
    server *s = r->s;
    r->recorded = 1;
    double secs = (double)(srv_now_ns() - r->t0) / 1e9;
    uv_mutex_lock(&s->lock); /* one lock per response: its counters and stages */
    srv_metrics_request(&s->metrics, r->metric, status, secs, r->received, out_len);
    if (r->has_job && r->done) {
        srv_metrics_stage(&s->metrics, SRV_STAGE_PARSE, (double)r->job.t_parse / 1e9);
        srv_metrics_stage(&s->metrics, SRV_STAGE_COMPUTE, (double)r->job.t_compute / 1e9);
        srv_metrics_stage(&s->metrics, SRV_STAGE_ENCODE, (double)r->job.t_encode / 1e9);
    }
    uv_mutex_unlock(&s->lock);
    if (s->cfg->access_log)
        srv_log_access(r->method, r->url, status, r->received, out_len, secs * 1000,
                       r->id);
}

/* Adds the common headers to resp, queues it and records the request. */
static enum MHD_Result send_response(request *r, int status, struct MHD_Response *resp,
                                     size_t len, const char *ctype, const char *h1,
                                     const char *v1)
{
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, "X-Request-Id", r->id);
    if (h1) MHD_add_response_header(resp, h1, v1);
    if (atomic_load(&r->s->draining))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (r->has_job && r->job.t_parse) {
        char timing[160]; /* 3 names (38 bytes) and 3 numbers of at most 24 */
        server_timing(&r->job, timing);
        MHD_add_response_header(resp, "Server-Timing", timing);
    }
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned int)status, resp);
    MHD_destroy_response(resp);
    finish_request(r, status, len);
    return ret;
}

/* Queues body (taken over when must_free: an srv_mem block) with the common
 * headers. */
static enum MHD_Result respond(request *r, int status, char *body, size_t len,
                               const char *ctype, int must_free, const char *h1,
                               const char *v1)
{
    struct MHD_Response *resp =
        must_free
            ? MHD_create_response_from_buffer_with_free_callback(len, body, srv_mem_free)
            : MHD_create_response_from_buffer(len, body, MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        if (must_free) srv_mem_free(body);
        return MHD_NO;
    }
    return send_response(r, status, resp, len, ctype, h1, v1);
}

/* Responses at least this large are gzipped for clients that accept it. */
#define GZIP_MIN_BYTES (64 * 1024)

/* The job's response, sent from its pieces without copying them together. */
static enum MHD_Result respond_job(request *r)
{
    srv_output *o = srv_job_output(&r->job);
    if (!o) return MHD_NO;
    struct MHD_IoVec small[8], *iov = small;
    if (o->n_pieces > 8 && !(iov = malloc(o->n_pieces * sizeof *iov))) {
        srv_output_free(o);
        return MHD_NO;
    }
    for (size_t i = 0; i < o->n_pieces; i++)
        iov[i] = (struct MHD_IoVec){o->pieces[i].p, o->pieces[i].len};
    struct MHD_Response *resp = MHD_create_response_from_iovec(
        iov, (unsigned int)o->n_pieces, srv_output_free, o);
    if (iov != small) free(iov); /* MHD keeps a copy */
    if (!resp) {
        srv_output_free(o);
        return MHD_NO;
    }
    /* Only a large JSON response can be gzipped: any other does not vary with
     * Accept-Encoding (the same request always gets the same bytes), and each
     * header costs libmicrohttpd three allocations. */
    if (o->gzipped || (!o->binary && o->len >= GZIP_MIN_BYTES))
        MHD_add_response_header(resp, "Vary", "Accept-Encoding");
    if (o->gzipped) MHD_add_response_header(resp, "Content-Encoding", "gzip");
    if (o->binary) { /* binary outputs follow the JSON */
        char n[24];
        snprintf(n, sizeof n, "%zu", o->json_len);
        return send_response(r, r->job.status, resp, o->len, "application/octet-stream",
                             "Inference-Header-Content-Length", n);
    }
    return send_response(r, r->job.status, resp, o->len, "application/json", NULL, NULL);
}

static enum MHD_Result respond_error(request *r, const srv_error *e, const char *h1,
                                     const char *v1)
{
    srv_buf b = {0};
    if (srv_error_json(e, &b)) return MHD_NO;
    size_t len;
    char *body = srv_buf_steal(&b, &len);
    return respond(r, e->status, body, len, "application/json", 1, h1, v1);
}

static enum MHD_Result fail(request *r, int status, const char *code, const char *h1,
                            const char *v1, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

static enum MHD_Result fail(request *r, int status, const char *code, const char *h1,
                            const char *v1, const char *fmt, ...)
{
    srv_error e;
    char msg[sizeof e.message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    srv_error_set(&e, status, code, "", "%s", msg);
    return respond_error(r, &e, h1, v1);
}

static enum MHD_Result respond_json(request *r, int status, const char *text)
{
    size_t n = strlen(text);
    char *body = srv_mem_alloc(n + 1);
    if (!body) return MHD_NO;
    memcpy(body, text, n + 1);
    return respond(r, status, body, n, "application/json", 1, NULL, NULL);
}

/* ---- routing ---- */

/* libmicrohttpd's percent-decoding of request targets, but for %00: a NUL would
 * end the path early, so that "/healthz%00x" would be /healthz.  It stays as it
 * is, and such a path matches no route (404). */
static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    char *w = s;
    for (const char *p = s; *p;) {
        int hi = p[0] == '%' ? hexval(p[1]) : -1, lo = hi >= 0 ? hexval(p[2]) : -1;
        if (lo >= 0 && (hi | lo)) {
            *w++ = (char)(hi * 16 + lo);
            p += 3;
        } else {
            *w++ = *p++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* The route of a request target; *path is its path (the target itself, or what
 * follows the authority of one in absolute form). */
static int route_of(const char *url, int *metric, const char **path)
{
    static const struct {
        const char *path;
        int route, metric;
    } routes[] = {
        {"/v1/loss", R_LOSS, SRV_EP_M_LOSS},
        {"/v1/objective", R_OBJECTIVE, SRV_EP_M_OBJECTIVE},
        {"/v1/losses", R_CATALOG, SRV_EP_M_CATALOG},
        {"/healthz", R_HEALTH, SRV_EP_M_HEALTH},
        {"/readyz", R_READY, SRV_EP_M_READY},
        {"/metrics", R_METRICS, SRV_EP_M_METRICS},
        {"/openapi.yaml", R_OPENAPI, SRV_EP_M_OPENAPI},
    };
    if (!strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8)) {
        /* the absolute form (RFC 9112 3.2.2): the path after the authority */
        const char *after = strchr(strstr(url, "//") + 2, '/');
        url = after ? after : "/";
    }
    *path = url;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(url, routes[i].path)) {
            *metric = routes[i].metric;
            return routes[i].route;
        }
    if (!strncmp(url, "/v1/losses/", 11) && url[11] && !strchr(url + 11, '/')) {
        *metric = SRV_EP_M_CATALOG_ONE;
        return R_CATALOG_ONE;
    }
    *metric = SRV_EP_M_OTHER;
    return R_NONE;
}

static int authorized(const server *s, struct MHD_Connection *c)
{
    const char *key = s->cfg->api_key;
    if (!key) return 1;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    const char *given = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-API-Key");
    if (auth && !strncasecmp(auth, "Bearer ", 7)) given = auth + 7;
    if (!given) return 0;
    /* Compare in time independent of where the strings differ, without the
     * whitespace that may end a header's value (RFC 9110 5.5). */
    size_t n = strlen(key), m = strlen(given);
    while (m && (given[m - 1] == ' ' || given[m - 1] == '\t')) m--;
    unsigned char diff = n != m;
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)(key[i] ^ given[i < m ? i : 0]);
    return diff == 0;
}

static enum MHD_Result handle_get(request *r)
{
    server *s = r->s;
    switch (r->route) {
    case R_HEALTH:
        return respond_json(r, 200,
                            "{\"status\":\"ok\",\"version\":\"" SRV_VERSION "\"}\n");
    case R_READY:
        return atomic_load(&s->draining)
                   ? respond_json(r, 503, "{\"status\":\"draining\"}\n")
                   : respond_json(r, 200, "{\"status\":\"ready\"}\n");
    case R_CATALOG:
        return respond(r, 200, s->catalog, s->catalog_len, "application/json", 0, NULL,
                       NULL);
    case R_CATALOG_ONE: {
        size_t len;
        char *body = srv_catalog_json(r->path + 11, &len);
        if (!body) {
            srv_error e;
            srv_error_set(&e, 404, "unknown_loss", "",
                          "there is no loss named \"%.60s\"; GET "
                          "/v1/losses lists them",
                          r->path + 11);
            return respond_error(r, &e, NULL, NULL);
        }
        return respond(r, 200, body, len, "application/json", 1, NULL, NULL);
    }
    case R_METRICS: {
        size_t len;
        unsigned long open[64]; /* --io-threads is at most 64 */
        size_t n = s->n_loops < 64 ? s->n_loops : 64;
        uv_mutex_lock(&s->lock);
        for (size_t k = 0; k < n; k++) open[k] = s->loops[k].open;
        char *body =
            srv_metrics_text(&s->metrics, atomic_load(&s->inflight), open, n, &len);
        uv_mutex_unlock(&s->lock);
        if (!body) return MHD_NO;
        return respond(r, 200, body, len, "text/plain; version=0.0.4; charset=utf-8", 1,
                       NULL, NULL);
    }
    case R_OPENAPI:
        return respond(r, 200, (char *)srv_openapi_yaml, srv_openapi_yaml_len,
                       "application/yaml", 0, NULL, NULL);
    }
    return MHD_NO;
}

/* ---- work on the pool ----
 *
 * A job runs as a chain of work items.  A small one is one item: scan, decode,
 * compute, encode.  A large one comes back to the loop between phases, and the
 * parallel phases (parsing the numbers of large arrays, computing the blocks)
 * are spread over the pool, one range per thread. */

enum { PH_DONE, PH_PARSE, PH_COMPUTE, PH_ENCODE };

static void mhd_kick(ioloop *io);

static void resume(request *r)
{
    r->running = 0;
    r->io->running--;
    r->done = 1; /* its stages are recorded with its response (finish_request) */
    MHD_resume_connection(r->conn); /* the last touch of r until MHD calls back */
}

/* Runs range(r, u0, u1) over [0, n) on the pool, one range per thread; then
 * done(r) on the loop. */
static void spread(request *r, size_t n, void (*range)(request *, size_t, size_t),
                   void (*done)(request *));

static void work_chunk(uv_work_t *w)
{
    request *r = w->data;
    size_t k = (size_t)(w - r->chunks), n = r->n_units;
    r->range(r, n * k / r->n_chunks, n * (k + 1) / r->n_chunks);
}

static void after_chunk(uv_work_t *w, int status)
{
    request *r = w->data;
    (void)status;
    if (--r->pending) return;
    free(r->chunks);
    r->chunks = NULL;
    r->then(r);
}

static void spread(request *r, size_t n, void (*range)(request *, size_t, size_t),
                   void (*done)(request *))
{
    size_t k = r->s->cfg->threads < n ? r->s->cfg->threads : n;
    r->range = range;
    r->then = done;
    r->n_units = n;
    r->chunks = k ? calloc(k, sizeof *r->chunks) : NULL;
    if (!r->chunks) { /* nothing to spread, or no memory to: do it here */
        range(r, 0, n);
        done(r);
        return;
    }
    r->n_chunks = r->pending = k;
    for (size_t i = 0; i < k; i++) {
        r->chunks[i].data = r;
        uv_queue_work(&r->io->loop, &r->chunks[i], work_chunk, after_chunk);
    }
}

/* Compute and encode a decoded job here, or leave the blocks to the pool. */
static void compute_or_defer(request *r)
{
    srv_job *j = &r->job;
    if (!j->failed && j->n_elements >= SPLIT_ELEMENTS && j->n_units > 1) {
        r->phase = PH_COMPUTE;
        return;
    }
    if (!j->failed && j->n_elements >= SPLIT_ELEMENTS) { /* one block: compute here */
        uint64_t t0 = srv_now_ns();
        srv_job_compute(j, 0, j->n_units);
        j->t_compute = srv_now_ns() - t0;
        if (srv_job_prepare(j) > 1) {
            r->phase = PH_ENCODE;
            return;
        }
        srv_job_encode_here(j);
        r->phase = PH_DONE;
        return;
    }
    if (!j->failed) {
        uint64_t t0 = srv_now_ns();
        srv_job_compute(j, 0, j->n_units);
        j->t_compute = srv_now_ns() - t0;
    }
    srv_job_finish(j);
    r->phase = PH_DONE;
}

/* The first item: scan; for a small job everything else too. */
static void run_main(request *r)
{
    srv_job *j = &r->job;
    if (srv_job_scan(j) == 0 && j->scan.n_chunks > 1) {
        r->phase = PH_PARSE;
        return;
    }
    srv_job_parse(j, 0, j->scan.n_chunks);
    srv_job_decode(j);
    compute_or_defer(r);
}

static void next_phase(request *r);

static void parse_range(request *r, size_t c0, size_t c1)
{
    srv_job_parse(&r->job, c0, c1);
}

static void work_decode(uv_work_t *w)
{
    request *r = w->data;
    srv_job_decode(&r->job);
    compute_or_defer(r);
}

static void after_item(uv_work_t *w, int status)
{
    request *r = w->data;
    ioloop *io = r->io;
    (void)status;
    next_phase(r);
    mhd_kick(io);
}

static void parse_done(request *r)
{
    r->job.t_parse += srv_now_ns() - r->t_phase;
    r->work.data = r;
    uv_queue_work(&r->io->loop, &r->work, work_decode, after_item);
}

static void compute_range(request *r, size_t u0, size_t u1)
{
    srv_job_compute(&r->job, u0, u1);
}

/* After the blocks: the costs and the response skeleton; large arrays of the
 * response are formatted in a parallel phase of their own. */
static void work_finish(uv_work_t *w)
{
    request *r = w->data;
    if (srv_job_prepare(&r->job) > 1) {
        r->phase = PH_ENCODE;
        return;
    }
    srv_job_encode_here(&r->job);
    r->phase = PH_DONE;
}

static void encode_range(request *r, size_t c0, size_t c1)
{
    srv_job_encode(&r->job, c0, c1);
}

static void work_complete(uv_work_t *w)
{
    request *r = w->data;
    srv_job_complete(&r->job);
    r->phase = PH_DONE;
}

static void encode_done(request *r)
{
    r->job.t_encode += srv_now_ns() - r->t_phase;
    r->work.data = r;
    uv_queue_work(&r->io->loop, &r->work, work_complete, after_item);
}

static void compute_done(request *r)
{
    r->job.t_compute = srv_now_ns() - r->t_phase;
    r->work.data = r;
    uv_queue_work(&r->io->loop, &r->work, work_finish, after_item);
}

/* Back on the loop after a work item: resume a finished job, or start the next
 * parallel phase. */
static void next_phase(request *r)
{
    r->t_phase = srv_now_ns();
    switch (r->phase) {
    case PH_DONE:
        resume(r);
        break;
    case PH_PARSE:
        spread(r, r->job.scan.n_chunks, parse_range, parse_done);
        break;
    case PH_COMPUTE:
        spread(r, r->job.n_units, compute_range, compute_done);
        break;
    case PH_ENCODE:
        spread(r, r->job.n_echunks, encode_range, encode_done);
        break;
    }
}

static void work_main(uv_work_t *w)
{
    run_main(w->data);
}

static void run_batch(batch *b)
{
    for (size_t i = 0; i < b->n; i++) run_main(b->reqs[i]);
}

static void after_batch(batch *b)
{
    ioloop *io = b->reqs[0]->io;
    io->batches--;
    for (size_t i = 0; i < b->n; i++) next_phase(b->reqs[i]);
    free(b);
    mhd_kick(io);
}

/* The loop's compute thread (a pool thread, for as long as the loop runs). */
static void compute_main(uv_work_t *w)
{
    ioloop *io = w->data;
    uv_mutex_lock(&io->cmu);
    for (;;) {
        while (!io->chead && !io->cquit) uv_cond_wait(&io->ccv, &io->cmu);
        if (!io->chead) break; /* quit, with nothing left (the loop is stopping) */
        batch *b = io->chead;
        io->chead = b->next;
        if (!io->chead) io->ctail = NULL;
        uv_mutex_unlock(&io->cmu);
        run_batch(b);
        uv_mutex_lock(&io->cmu);
        b->next = io->cdone;
        io->cdone = b;
        /* Sent outside the lock, so that the loop does not wait for the
         * eventfd write; the loop closes cwake only after this thread left
         * (compute_end), so the handle is still open here. */
        uv_mutex_unlock(&io->cmu);
        uv_async_send(&io->cwake);
        uv_mutex_lock(&io->cmu);
    }
    uv_mutex_unlock(&io->cmu);
}

static void on_close(uv_handle_t *h);

/* On the loop, once the compute thread has left the pool: nothing can send on
 * cwake any more. */
static void compute_end(uv_work_t *w, int status)
{
    (void)status;
    ioloop *io = w->data;
    uv_close((uv_handle_t *)&io->cwake, on_close);
}

/* On the loop: the batches the compute thread finished. */
static void on_computed(uv_async_t *a)
{
    ioloop *io = a->data;
    uv_mutex_lock(&io->cmu);
    batch *b = io->cdone;
    io->cdone = NULL;
    uv_mutex_unlock(&io->cmu);
    batch *in_order = NULL; /* cdone is newest first */
    while (b) {
        batch *next = b->next;
        b->next = in_order;
        in_order = b;
        b = next;
    }
    while (in_order) {
        batch *next = in_order->next;
        after_batch(in_order);
        in_order = next;
    }
}

/* Batches of a loop with its compute thread at a time: one being computed and
 * one waiting, so that the thread goes on from one to the next without a round
 * trip through the loop (2 gave 4-6% more small requests per second than 1, and
 * 4 no more than 2, in three alternating wrk runs). */
#define BATCHES_AHEAD 2

/* Hands the loop's pending small requests to its compute thread: all of them as
 * one batch, unless BATCHES_AHEAD batches are there already. */
static void flush_pending(ioloop *io)
{
    if (!io->n_pending || io->batches >= BATCHES_AHEAD) return;
    batch *b = malloc(sizeof *b + io->n_pending * sizeof b->reqs[0]);
    if (!b) { /* one by one on the pool, then */
        while (io->pending) {
            request *r = io->pending;
            io->pending = r->next;
            io->n_pending--;
            r->work.data = r;
            uv_queue_work(&io->loop, &r->work, work_main, after_item);
        }
        return;
    }
    b->n = 0;
    b->next = NULL;
    for (request *r = io->pending; r; r = r->next) b->reqs[b->n++] = r;
    io->pending = NULL;
    io->n_pending = 0;
    io->batches++;
    uv_mutex_lock(&io->cmu);
    if (io->ctail)
        io->ctail->next = b;
    else
        io->chead = b;
    io->ctail = b;
    uv_mutex_unlock(&io->cmu);
    /* After the unlock: signalled under the lock, the woken thread went
     * straight back to sleep on the mutex (a third of lossd's futex waits). */
    uv_cond_signal(&io->ccv);
}

/* Accept-Encoding names gzip (with a q-value other than 0). */
static int accepts_gzip(struct MHD_Connection *c)
{
    const char *ae = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept-Encoding");
    for (const char *p = ae; p && (p = strcasestr(p, "gzip")); p += 4) {
        int start = p == ae || p[-1] == ' ' || p[-1] == ',';
        const char *q = p + 4;
        while (*q == ' ') q++;
        if (!start || (*q && *q != ',' && *q != ';')) continue;
        if (*q == ';') {
            q++;
            while (*q == ' ') q++;
            if (!strncmp(q, "q=0", 3) && (q[3] == '\0' || q[3] == ',' ||
                                          (q[3] == '.' && strspn(q + 4, "0") > 0 &&
                                           (q[4 + strspn(q + 4, "0")] == '\0' ||
                                            q[4 + strspn(q + 4, "0")] == ','))))
                continue;
        }
        return 1;
    }
    return 0;
}

/* Suspends the connection and queues the job; -1 when out of memory. */
static int submit(request *r)
{
    server *s = r->s;
    ioloop *io = r->io;
    if (srv_buf_reserve(&r->body, 0)) return -1; /* a buffer with room for the NUL */
    size_t len;
    char *body = srv_buf_steal(&r->body, &len);
    body[len] = '\0';
    srv_job_init(&r->job, r->route == R_LOSS ? SRV_EP_LOSS : SRV_EP_OBJECTIVE, body, len,
                 (size_t)s->cfg->max_elements);
    r->job.gzip_in = r->gzip_in;
    r->job.max_body = (size_t)s->cfg->max_body_bytes;
    if (accepts_gzip(r->conn)) r->job.gzip_min = GZIP_MIN_BYTES;
    if (r->binary) srv_job_set_binary(&r->job, r->json_len); /* failures end in the job */
    r->has_job = 1;
    r->running = 1;
    io->running++;
    if (r->cl) {
        r->cl->busy = 1;
        r->cl->receiving = 0;
    }
    MHD_suspend_connection(r->conn);
    /* Small bodies are queued after this MHD_run, with their neighbours, for the
     * loop's compute thread; a compressed one is not known to be small (16 KiB of
     * gzip can inflate to 16 MB) and gets a work item of its own. */
    if (len <= BATCH_MAX_BODY && !r->gzip_in) {
        r->next = io->pending;
        io->pending = r;
        io->n_pending++;
        return 0;
    }
    r->work.data = r;
    uv_queue_work(&io->loop, &r->work, work_main, after_item);
    return 0;
}

/* ---- the access handler ---- */

/* ct is the media type want, possibly with parameters ("; charset=utf-8"). */
static int is_type(const char *ct, const char *want)
{
    size_t n = strlen(want);
    if (strncasecmp(ct, want, n)) return 0;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ';
}

static int is_json_type(const char *ct)
{
    return is_type(ct, "application/json");
}

static enum MHD_Result admit_post(request *r)
{
    server *s = r->s;
    struct MHD_Connection *c = r->conn;
    if (atomic_load(&s->draining))
        return fail(r, 503, "draining", "Retry-After", "1",
                    "lossd is shutting down; retry on another instance");
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    const char *ih = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                 "Inference-Header-Content-Length");
    if (ih) { /* binary tensors follow the JSON (Open Inference Protocol) */
        char *end;
        errno = 0;
        r->json_len = strtoull(ih, &end, 10);
        if (errno || !*ih || *end || *ih == '-')
            return fail(r, 400, "invalid_binary_framing", NULL, NULL,
                        "Inference-Header-Content-Length \"%.24s\" is not a byte count",
                        ih);
        r->binary = 1;
    }
    if (ct && !is_json_type(ct) && !(ih && is_type(ct, "application/octet-stream")))
        return fail(
            r, 415, "unsupported_media_type", NULL, NULL,
            "Content-Type must be application/json (or application/octet-stream with "
            "Inference-Header-Content-Length), not \"%.60s\"",
            ct);
    const char *ce = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Encoding");
    if (ce && (!strcasecmp(ce, "gzip") || !strcasecmp(ce, "x-gzip") ||
               !strcasecmp(ce, "deflate")))
        r->gzip_in = 1;
    else if (ce && strcasecmp(ce, "identity"))
        return fail(
            r, 415, "unsupported_content_encoding", "Accept-Encoding",
            "gzip, deflate, identity",
            "Content-Encoding \"%.40s\" is not supported (gzip, deflate, identity)", ce);
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    const char *te = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Transfer-Encoding");
    if (te && strcasecmp(te, "chunked"))
        return fail(r, 400, "invalid_request", NULL, NULL,
                    "Transfer-Encoding \"%.40s\" is not supported; use chunked (and "
                    "Content-Encoding for compression)",
                    te);
    if (!cl && !te)
        return fail(r, 411, "length_required", NULL, NULL,
                    "a POST needs Content-Length or Transfer-Encoding: chunked");
    unsigned long long max = s->cfg->max_body_bytes;
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno || *end || n > max)
            return fail(r, 413, "body_too_large", NULL, NULL,
                        "the body (Content-Length %.24s) is larger than %llu bytes "
                        "(--max-body-bytes)",
                        cl, max);
        if (srv_buf_reserve(&r->body, (size_t)n))
            return fail(r, 503, "overloaded", "Retry-After", "1",
                        "no memory for a body of %llu bytes now", n);
        if (r->cl) r->cl->body = (size_t)n;
    }
    unsigned long before = atomic_fetch_add(&s->inflight, 1);
    if (before >= s->cfg->max_inflight) {
        atomic_fetch_sub(&s->inflight, 1);
        return fail(r, 503, "overloaded", "Retry-After", "1",
                    "lossd has %lu requests in progress (--max-inflight); retry shortly",
                    before);
    }
    r->body.max = (size_t)max;
    r->counted = 1;
    if (r->cl) r->cl->receiving = 1;
    return MHD_YES;
}

/* What a request's headers say of its framing, from one pass over them. */
typedef struct framing {
    unsigned n_cl, n_te, host; /* Content-Length and Transfer-Encoding headers, Host */
    const char *cl, *te;       /* the first of each */
} framing;

static enum MHD_Result scan_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    framing *f = cls;
    (void)kind;
    if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) && !f->n_cl++) f->cl = value;
    if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) && !f->n_te++) f->te = value;
    if (!strcasecmp(key, MHD_HTTP_HEADER_HOST)) f->host = 1;
    return MHD_YES;
}

/* Why the request cannot be read, or NULL.  Where the body ends must be beyond
 * doubt (RFC 9112 6.3): with two lengths, or a length and chunks, another server
 * on the way may cut the stream elsewhere and see a second request in this one's
 * body.  And an HTTP/1.1 request needs a Host (RFC 9112 3.2). */
static const char *framing_problem(const framing *f, const char *version)
{
    if (f->n_cl > 1)
        return "Content-Length is given more than once: where the body ends is ambiguous";
    if (f->n_te > 1)
        return "Transfer-Encoding is given more than once: where the body ends is "
               "ambiguous";
    if (f->n_cl && f->n_te)
        return "Content-Length and Transfer-Encoding are both given: where the body "
               "ends is ambiguous";
    if (!f->host && !strcmp(version, MHD_HTTP_VERSION_1_1))
        return "an HTTP/1.1 request needs a Host header (RFC 9112 3.2)";
    return NULL;
}

/* Routing, methods, authorization and admission, once the headers are in. */
static enum MHD_Result headers(request *r)
{
    server *s = r->s;
    const char *method = r->method, *url = r->url;
    int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    int post_route = r->route == R_LOSS || r->route == R_OBJECTIVE;
    r->checked = 1;
    if (r->route == R_NONE)
        return fail(r, 404, "not_found", NULL, NULL, "no such endpoint: %.80s", url);
    if (post_route ? strcmp(method, "POST") != 0 : !is_get)
        return fail(r, 405, "method_not_allowed", "Allow",
                    post_route ? "POST" : "GET, HEAD", "%s is not allowed on %s (use %s)",
                    method, url, post_route ? "POST" : "GET");
    if (r->route != R_HEALTH && r->route != R_READY && !authorized(s, r->conn))
        return fail(r, 401, "unauthorized", "WWW-Authenticate", "Bearer",
                    "this lossd needs an API key: send Authorization: Bearer KEY or "
                    "X-API-Key: KEY");
    if (!post_route) return handle_get(r);
    return admit_post(r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **con_cls)
{
    ioloop *io = cls;
    server *s = io->s;
    request *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        *con_cls = r;
        r->s = s;
        r->io = io;
        r->conn = c;
        r->url = url;
        r->method = method;
        r->t0 = srv_now_ns();
        request_id(io, r);
        r->route = route_of(url, &r->metric, &r->path);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        r->cl = ci ? ci->socket_context : NULL;
        /* A request without a body is answered on the next call: a response
         * queued while MHD still waits for the end of the request closes the
         * connection, which is right for a refused body but not for a GET. */
        framing f = {0};
        MHD_get_connection_values(c, MHD_HEADER_KIND, scan_framing, &f);
        r->has_body = (f.cl && strcmp(f.cl, "0")) || f.te;
        const char *problem = framing_problem(&f, version);
        if (problem) { /* answered now, so that MHD closes the connection after it */
            r->has_body = 1;
            return fail(r, 400, "invalid_request", NULL, NULL, "%s", problem);
        }
        if (!r->has_body) return MHD_YES;
        return headers(r);
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        r->received += n;
        if (!r->too_big && srv_buf_append(&r->body, upload, n)) {
            r->too_big = 1;
            srv_buf_free(&r->body);
        }
        /* A chunked body that keeps coming long after the limit: drop the client. */
        if (r->too_big && r->received > 2 * s->cfg->max_body_bytes + (1u << 20))
            return MHD_NO;
        return MHD_YES;
    }
    if (r->done && r->has_job) {
        enum MHD_Result ret = respond_job(r);
        srv_job_free(&r->job);
        r->has_job = 0;
        return ret;
    }
    if (r->running) return MHD_YES; /* spurious call while suspended */
    if (!r->checked) {
        enum MHD_Result ret = headers(r);
        if (ret != MHD_YES || !r->counted) return ret; /* answered (or refused) */
    }
    if (r->too_big)
        return fail(r, 413, "body_too_large", NULL, NULL,
                    "the body is larger than %llu bytes (--max-body-bytes)",
                    s->cfg->max_body_bytes);
    if (submit(r)) return fail(r, 500, "internal_error", NULL, NULL, "out of memory");
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    request *r = *con_cls;
    (void)cls;
    (void)c;
    (void)toe;
    if (!r) return;
    if (!r->recorded) /* no response: the client left, or was dropped, first */
        finish_request(r, 499, 0);
    if (r->cl) {
        r->cl->busy = r->cl->receiving = 0;
        r->cl->body = 0;
        r->cl->since = srv_now_ns();
    }
    uncount(r); /* answered and sent, or the client went away */
    if (r->has_job) srv_job_free(&r->job);
    srv_buf_free(&r->body);
    free(r->chunks);
    free(r);
    *con_cls = NULL;
}

/* The connection counts of --max-connections and --max-connections-per-ip, over
 * every loop: +1 or -1 for k's address; 1 when k is one too many. */
/* The per-address count of addr (under the lock), added when add; NULL when it
 * is not there (or there is no memory to add it). */
static addr_count *addr_slot(server *s, const struct sockaddr_storage *addr, int add)
{
    for (size_t i = 0; i < s->n_addrs; i++)
        if (!memcmp(&s->addrs[i].addr, addr, sizeof *addr)) return &s->addrs[i];
    if (!add) return NULL;
    if (s->n_addrs == s->cap_addrs) {
        size_t cap = s->cap_addrs ? 2 * s->cap_addrs : 16;
        addr_count *a = realloc(s->addrs, cap * sizeof *a);
        if (!a) return NULL;
        s->addrs = a;
        s->cap_addrs = cap;
    }
    s->addrs[s->n_addrs] = (addr_count){*addr, 0};
    return &s->addrs[s->n_addrs++];
}

/* Counts a new connection from addr and picks the loop with the fewest open
 * connections for it; NULL when it is one too many (--max-connections,
 * --max-connections-per-ip) or there is no memory to count it. */
static ioloop *admit_connection(server *s, const struct sockaddr_storage *addr)
{
    ioloop *io = NULL;
    uv_mutex_lock(&s->lock);
    addr_count *a = addr_slot(s, addr, 1);
    if (a && s->connections < s->cfg->max_connections &&
        a->n < s->cfg->max_connections_per_ip) {
        io = &s->loops[0];
        for (size_t k = 1; k < s->n_loops; k++)
            if (s->loops[k].open < io->open) io = &s->loops[k];
        a->n++;
        s->connections++;
        io->open++;
    } else if (a && !a->n) {
        *a = s->addrs[--s->n_addrs];
    }
    uv_mutex_unlock(&s->lock);
    return io;
}

/* A connection of io's from addr closed (or never started). */
static void release_connection(ioloop *io, const struct sockaddr_storage *addr)
{
    server *s = io->s;
    uv_mutex_lock(&s->lock);
    addr_count *a = addr_slot(s, addr, 0);
    if (a && !--a->n) *a = s->addrs[--s->n_addrs];
    s->connections--;
    io->open--;
    uv_mutex_unlock(&s->lock);
}

/* The client's address without its port: the key of the per-address count. */
static void client_address(const struct sockaddr *sa, struct sockaddr_storage *key)
{
    memset(key, 0, sizeof *key);
    if (sa && sa->sa_family == AF_INET) {
        struct sockaddr_in *k4 = (struct sockaddr_in *)key;
        k4->sin_family = AF_INET;
        k4->sin_addr = ((const struct sockaddr_in *)sa)->sin_addr;
    } else if (sa && sa->sa_family == AF_INET6) {
        struct sockaddr_in6 *k6 = (struct sockaddr_in6 *)key;
        k6->sin6_family = AF_INET6;
        k6->sin6_addr = ((const struct sockaddr_in6 *)sa)->sin6_addr;
    }
}

/* The connection was counted when it was accepted (on_accept): here it gets its
 * sweep entry, and leaves the counts when it closes. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    ioloop *io = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ai =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        struct sockaddr_storage addr;
        client_address(ai ? ai->client_addr : NULL, &addr);
        client *k = calloc(1, sizeof *k);
        if (!k) { /* shut down, which MHD then closes; on_handed, seeing io->adding
                     still set, takes it out of the counts (once) */
            if (ci) shutdown(ci->connect_fd, SHUT_RDWR);
            return;
        }
        k->fd = ci ? ci->connect_fd : MHD_INVALID_SOCKET;
        k->since = srv_now_ns();
        k->addr = addr;
        k->counted = io->adding; /* it takes over the count of on_accept */
        io->adding = 0;
        k->next = io->clients.next;
        k->prev = &io->clients;
        io->clients.next->prev = k;
        io->clients.next = k;
        *socket_context = k;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
        client *k = *socket_context;
        if (k->counted) release_connection(io, &k->addr);
        k->prev->next = k->next;
        k->next->prev = k->prev;
        free(k);
        *socket_context = NULL;
    }
}

/* The peer of fd has closed its side and everything it sent has been read:
 * nothing more can arrive (checked only while a body is arriving: a client may
 * close its side once its request is sent, and wait for the answer).  libmicrohttpd
 * 0.9.75 can miss that end of stream (edge-triggered epoll: a short read is taken for "no
 * more to read", and the end came with the data), and would wait --connection-timeout for
 * the rest of a body that will never come, holding the request's admission. */
static int peer_gone(MHD_socket fd)
{
    struct pollfd pf = {fd, POLLRDHUP, 0};
    int unread = 0;
    return poll(&pf, 1, 0) == 1 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR)) &&
           ioctl(fd, FIONREAD, &unread) == 0 && unread == 0;
}

/* Once a second: a request must arrive within twice --connection-timeout of
 * the connection's start (or its previous request's end), plus a second per
 * 64 KiB of body; a slower client is disconnected (its socket shut down, which
 * MHD then closes).  So is one whose peer is gone in the middle of a body
 * (peer_gone).  Connections whose request is being answered are left alone,
 * suspended ones above all. */
static void on_sweep(uv_timer_t *t)
{
    ioloop *io = t->data;
    uint64_t now = srv_now_ns(),
             limit_ns = 2000000000ULL * io->s->cfg->connection_timeout;
    for (client *k = io->clients.next; k != &io->clients; k = k->next) {
        if (k->busy || k->fd == MHD_INVALID_SOCKET) continue;
        uint64_t allowed = limit_ns + (uint64_t)(k->body / 65536) * 1000000000ULL;
        if (now - k->since > allowed || (k->receiving && peer_gone(k->fd))) {
            shutdown(k->fd, SHUT_RDWR);
            k->fd = MHD_INVALID_SOCKET; /* once */
        }
    }
    mhd_kick(io);
}

/* fmt is libmicrohttpd's own format string. */
__attribute__((format(printf, 2, 0))) static void mhd_logger(void *cls, const char *fmt,
                                                             va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n') msg[--n] = '\0';
    /* A client that goes away in the middle of its request is the client's
     * doing, and such a request is already counted (499) and in the access log:
     * info, as nginx's "client prematurely closed connection". */
    static const char *const client_gone[] = {
        "Connection was closed by remote side with incomplete request",
        "Socket has been disconnected when reading request"};
    int level = SRV_LOG_WARN;
    for (size_t i = 0; i < sizeof client_gone / sizeof client_gone[0]; i++)
        if (!strncmp(msg, client_gone[i], strlen(client_gone[i]))) level = SRV_LOG_INFO;
    srv_log(level, "libmicrohttpd: %s", msg);
}

/* ---- the loops ---- */

static void on_timer(uv_timer_t *t);

static void mhd_kick(ioloop *io)
{
    if (!io->mhd) return;
    MHD_run(io->mhd);
    flush_pending(io);
    MHD_UNSIGNED_LONG_LONG to;
    if (MHD_get_timeout(io->mhd, &to) == MHD_YES)
        uv_timer_start(&io->timer, on_timer, (uint64_t)to, 0);
    else
        uv_timer_stop(&io->timer);
}

static void on_timer(uv_timer_t *t)
{
    mhd_kick(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    mhd_kick(p->data);
}

static void on_close(uv_handle_t *h)
{
    (void)h;
}

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

/* Closes a loop's handles, so that its uv_run returns. */
static void stop_loop(ioloop *io)
{
    server *s = io->s;
    uv_timer_stop(&io->drain);
    uv_poll_stop(&io->poll);
    uv_timer_stop(&io->timer);
    /* No connection is suspended here (io->running == 0), so stopping is legal. */
    MHD_stop_daemon(io->mhd);
    io->mhd = NULL;
    uv_mutex_lock(&s->lock); /* connections handed over too late: closed */
    accepted *late = io->inbox;
    size_t n_late = io->n_inbox;
    io->inbox = NULL;
    io->n_inbox = io->cap_inbox = 0;
    uv_mutex_unlock(&s->lock);
    for (size_t i = 0; i < n_late; i++) {
        struct sockaddr_storage key;
        client_address((struct sockaddr *)&late[i].addr, &key);
        close(late[i].fd);
        release_connection(io, &key);
    }
    free(late);
    uv_close((uv_handle_t *)&io->handed, on_close);
    uv_close((uv_handle_t *)&io->poll, on_close);
    uv_close((uv_handle_t *)&io->timer, on_close);
    uv_close((uv_handle_t *)&io->drain, on_close);
    uv_timer_stop(&io->sweep);
    uv_close((uv_handle_t *)&io->sweep, on_close);
    uv_close((uv_handle_t *)&io->wake, on_close);
    /* No batch is in progress (io->running == 0): the compute thread is waiting,
     * and leaves the pool; its end callback is the loop's last. */
    uv_mutex_lock(&io->cmu);
    io->cquit = 1;
    uv_cond_signal(&io->ccv);
    uv_mutex_unlock(&io->cmu); /* compute_end closes cwake */
    if (io == &s->loops[0]) {
        uv_close((uv_handle_t *)&s->accept_poll, on_close);
        uv_timer_stop(&s->accept_wait);
        uv_close((uv_handle_t *)&s->accept_wait, on_close);
        uv_close((uv_handle_t *)&s->sig_term, on_close);
        uv_close((uv_handle_t *)&s->sig_int, on_close);
        srv_log(SRV_LOG_INFO, "stopped");
    } else {
        atomic_fetch_add(&s->stopped, 1);
    }
}

/* Every 10 ms while draining: the loops stop once every request in flight is
 * answered (or the deadline passed for those still arriving), and until then
 * answer their open connections (new work: 503 draining); the first loop, which
 * holds the signal handlers, stops last, so that a second signal stays
 * harmless. */
static void on_drain(uv_timer_t *t)
{
    ioloop *io = t->data;
    server *s = io->s;
    if (io->running) return; /* suspended requests finish first, always */
    if (atomic_load(&s->inflight) && now_ms() < atomic_load(&s->drain_deadline)) return;
    if (io == &s->loops[0] && atomic_load(&s->stopped) < s->n_loops - 1) return;
    stop_loop(io);
}

/* Draining starts on every loop. */
static void on_wake(uv_async_t *a)
{
    ioloop *io = a->data;
    if (io->mhd) uv_timer_start(&io->drain, on_drain, 0, 10);
}

static void on_signal(uv_signal_t *h, int signum)
{
    server *s = h->data;
    if (atomic_exchange(&s->draining, 1)) return;
    srv_log(SRV_LOG_INFO, "%s: draining (%lu requests in flight)",
            signum == SIGTERM ? "SIGTERM" : "SIGINT", atomic_load(&s->inflight));
    /* Closed at once, so that new connections are refused rather than left in
     * the backlog. */
    uv_poll_stop(&s->accept_poll);
    uv_timer_stop(&s->accept_wait);
    close(s->listen_fd);
    s->listen_fd = MHD_INVALID_SOCKET;
    atomic_store(&s->drain_deadline, now_ms() + 1000u * s->cfg->connection_timeout);
    for (size_t k = 0; k < s->n_loops; k++) uv_async_send(&s->loops[k].wake);
}

/* ---- accepting: the first loop accepts, the least busy loop serves ---- */

/* On a loop: the connections handed to it join its daemon.  MHD closes a socket
 * it cannot take; the count of on_accept goes to the connection's client entry
 * (on_connection) or, if MHD never started the connection, is released here. */
static void on_handed(uv_async_t *a)
{
    ioloop *io = a->data;
    server *s = io->s;
    for (;;) {
        accepted c;
        uv_mutex_lock(&s->lock);
        int got = io->n_inbox > 0;
        if (got) c = io->inbox[--io->n_inbox];
        uv_mutex_unlock(&s->lock);
        if (!got) break;
        io->adding = 1;
        if (io->mhd)
            MHD_add_connection(io->mhd, c.fd, (const struct sockaddr *)&c.addr, c.len);
        else
            close(c.fd);
        if (io->adding) {
            struct sockaddr_storage key;
            client_address((const struct sockaddr *)&c.addr, &key);
            release_connection(io, &key);
        }
        io->adding = 0;
    }
    mhd_kick(io);
}

static void on_accept(uv_poll_t *p, int status, int events);

static void on_accept_wait(uv_timer_t *t)
{
    server *s = t->data;
    if (s->listen_fd != MHD_INVALID_SOCKET)
        uv_poll_start(&s->accept_poll, UV_READABLE, on_accept);
}

static void on_accept(uv_poll_t *p, int status, int events)
{
    server *s = p->data;
    (void)status;
    (void)events;
    for (int i = 0; i < 64 && s->listen_fd != MHD_INVALID_SOCKET; i++) {
        accepted c;
        c.len = sizeof c.addr;
        c.fd = accept4(s->listen_fd, (struct sockaddr *)&c.addr, &c.len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c.fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                /* Out of descriptors or memory: the socket stays readable, so
                 * wait a little instead of spinning. */
                srv_log(SRV_LOG_WARN, "accept: %s; retrying in 100 ms", strerror(errno));
                uv_poll_stop(&s->accept_poll);
                uv_timer_start(&s->accept_wait, on_accept_wait, 100, 0);
            }
            return;
        }
        struct sockaddr_storage key;
        client_address((const struct sockaddr *)&c.addr, &key);
        ioloop *io = admit_connection(s, &key);
        if (!io) { /* one too many: closed at once, as MHD does over its limits */
            close(c.fd);
            continue;
        }
        int queued = 0;
        uv_mutex_lock(&s->lock);
        if (io->n_inbox == io->cap_inbox) {
            size_t cap = io->cap_inbox ? 2 * io->cap_inbox : 16;
            accepted *in = realloc(io->inbox, cap * sizeof *in);
            if (in) {
                io->inbox = in;
                io->cap_inbox = cap;
            }
        }
        if (io->n_inbox < io->cap_inbox) {
            io->inbox[io->n_inbox++] = c;
            queued = 1;
        }
        uv_mutex_unlock(&s->lock);
        if (!queued) {
            close(c.fd);
            release_connection(io, &key);
            continue;
        }
        uv_async_send(&io->handed);
    }
}

static void run_loop(void *arg)
{
    ioloop *io = arg;
    uv_run(&io->loop, UV_RUN_DEFAULT);
}

static int bind_address(const char *bind, unsigned port, struct sockaddr_storage *ss,
                        int *v6)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    char host[64];
    snprintf(host, sizeof host, "%s", bind);
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') { /* [::1] */
        memmove(host, host + 1, n - 2);
        host[n - 2] = '\0';
    }
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *v6 = 0;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *v6 = 1;
        return 0;
    }
    return -1;
}

/* The listening TCP socket on addr (non-blocking, close-on-exec), or -1 with
 * errno set. */
static int listener(const struct sockaddr_storage *addr, int v6)
{
    int fd =
        socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    socklen_t len = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        (v6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one)) ||
        bind(fd, (const struct sockaddr *)addr, len) || listen(fd, SOMAXCONN)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static struct MHD_Daemon *start_daemon(ioloop *io, int v6)
{
    const srv_config *cfg = io->s->cfg;
    unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
                         MHD_USE_TURBO | MHD_USE_NO_LISTEN_SOCKET |
                         (v6 ? MHD_USE_IPv6 : 0) | (cfg->tls_cert ? MHD_USE_TLS : 0);
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_logger, NULL},
        /* A backstop: the limits are counted over every loop in on_accept. */
        {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)cfg->max_connections, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)cfg->connection_timeout, NULL},
        /* Each connection's buffer pool: request headers, read buffer (about half
         * the pool), response head.  A trade: libmicrohttpd 0.9.75 zeroes the
         * whole pool after every request (1.5 us for 64 KiB), and a body is read
         * a read buffer at a time (an 8 MB binary body takes 6.5 ms end to end
         * with 64 KiB, 7.6 ms with 32 KiB, 11 ms with 16 KiB). */
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)(64 * 1024), NULL},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, io},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, io},
        {MHD_OPTION_SIGPIPE_HANDLED_BY_APP, 1, NULL},
        {MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)unescape, NULL},
        {cfg->tls_cert ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, cfg->tls_key_pem},
        {MHD_OPTION_HTTPS_MEM_CERT, 0, cfg->tls_cert_pem},
        {MHD_OPTION_END, 0, NULL},
    };
    return MHD_start_daemon(flags, 0, NULL, NULL, on_request, io, MHD_OPTION_ARRAY, opts,
                            MHD_OPTION_END);
}

/* The loop's handles around its daemon. */
static void init_loop(ioloop *io)
{
    const union MHD_DaemonInfo *ep =
        MHD_get_daemon_info(io->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    uv_loop_init(&io->loop);
    uv_poll_init(&io->loop, &io->poll, ep->epoll_fd);
    uv_timer_init(&io->loop, &io->timer);
    uv_timer_init(&io->loop, &io->drain);
    uv_timer_init(&io->loop, &io->sweep);
    uv_async_init(&io->loop, &io->wake, on_wake);
    uv_async_init(&io->loop, &io->handed, on_handed);
    io->handed.data = io;
    uv_async_init(&io->loop, &io->cwake, on_computed);
    io->poll.data = io->timer.data = io->drain.data = io->sweep.data = io->wake.data = io;
    io->cwake.data = io->compute.data = io;
    uv_mutex_init(&io->cmu);
    uv_cond_init(&io->ccv);
    uv_queue_work(&io->loop, &io->compute, compute_main, compute_end);
    uv_timer_start(&io->sweep, on_sweep, 1000, 1000);
    uv_poll_start(&io->poll, UV_READABLE, on_poll);
}

int srv_server_run(srv_config *cfg)
{
    static server srv; /* one per process; static so that nothing outlives it */
    server *s = &srv;
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    uv_mutex_init(&s->lock);
    s->catalog = srv_catalog_json(NULL, &s->catalog_len);
    if (!s->catalog) return 1;
    int rc = 1;

    struct sockaddr_storage addr;
    int v6;
    if (bind_address(cfg->bind, (unsigned)cfg->port, &addr, &v6)) {
        fprintf(stderr, "lossd: --bind \"%s\" is not an IPv4 or IPv6 address\n",
                cfg->bind);
        rc = 2;
        goto out;
    }
    if (cfg->tls_cert && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        fprintf(stderr, "lossd: this libmicrohttpd has no TLS support\n");
        rc = 2;
        goto out;
    }
    s->n_loops = cfg->io_threads ? cfg->io_threads : 1;
    s->loops = calloc(s->n_loops, sizeof *s->loops);
    if (!s->loops) goto out;
    s->listen_fd = listener(&addr, v6);
    if (s->listen_fd < 0) {
        fprintf(stderr, "lossd: cannot listen on %s port %lu: %s\n", cfg->bind, cfg->port,
                strerror(errno));
        goto out;
    }
    socklen_t alen = sizeof addr; /* --port 0: the port it got */
    getsockname(s->listen_fd, (struct sockaddr *)&addr, &alen);
    unsigned port = ntohs(v6 ? ((struct sockaddr_in6 *)&addr)->sin6_port
                             : ((struct sockaddr_in *)&addr)->sin_port);
    uint64_t seed = mix64((uint64_t)srv_now_ns() ^ ((uint64_t)getpid() << 32));
    size_t started = 0;
    for (; started < s->n_loops; started++) {
        ioloop *io = &s->loops[started];
        io->s = s;
        io->clients.next = io->clients.prev = &io->clients;
        io->id_state = mix64(seed + started);
        errno = 0;
        io->mhd = start_daemon(io, v6);
        if (!io->mhd) break;
    }
    if (started < s->n_loops) {
        /* libmicrohttpd has logged why; errno says it only for a system call */
        int e = errno;
        fprintf(stderr, "lossd: cannot start the HTTP server on %s port %u: %s\n",
                cfg->bind, port,
                e ? strerror(e)
                : cfg->tls_cert
                    ? "libmicrohttpd refused the TLS certificate or key "
                      "(--tls-cert takes the PEM certificate, --tls-key its "
                      "private key)"
                    : "libmicrohttpd refused to start (see its message above)");
        for (size_t k = 0; k < started; k++) MHD_stop_daemon(s->loops[k].mhd);
        close(s->listen_fd);
        goto out;
    }
    for (size_t k = 0; k < s->n_loops; k++) init_loop(&s->loops[k]);
    ioloop *first = &s->loops[0];
    uv_signal_init(&first->loop, &s->sig_term);
    uv_signal_init(&first->loop, &s->sig_int);
    s->sig_term.data = s->sig_int.data = s;
    uv_signal_start(&s->sig_term, on_signal, SIGTERM);
    uv_signal_start(&s->sig_int, on_signal, SIGINT);
    uv_poll_init(&first->loop, &s->accept_poll, s->listen_fd);
    uv_timer_init(&first->loop, &s->accept_wait);
    s->accept_poll.data = s->accept_wait.data = s;
    uv_poll_start(&s->accept_poll, UV_READABLE, on_accept);
    for (size_t k = 0; k < s->n_loops; k++) mhd_kick(&s->loops[k]);

    char host[INET6_ADDRSTRLEN] = "?";
    if (v6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&addr)->sin6_addr, host,
                  sizeof host);
    else
        inet_ntop(AF_INET, &((struct sockaddr_in *)&addr)->sin_addr, host, sizeof host);
    printf("lossd listening on %s://%s%s%s:%u\n", cfg->tls_cert ? "https" : "http",
           v6 ? "[" : "", host, v6 ? "]" : "", port);
    fflush(stdout);
    srv_log(SRV_LOG_INFO,
            "version %s, %lu compute threads, %zu I/O threads, max body %llu bytes",
            SRV_VERSION, cfg->threads, s->n_loops, cfg->max_body_bytes);

    for (size_t k = 1; k < s->n_loops; k++)
        uv_thread_create(&s->loops[k].thread, run_loop, &s->loops[k]);
    uv_run(&first->loop, UV_RUN_DEFAULT);
    rc = 0;
    for (size_t k = 1; k < s->n_loops; k++) uv_thread_join(&s->loops[k].thread);
    for (size_t k = 0; k < s->n_loops; k++) {
        if (uv_loop_close(&s->loops[k].loop)) rc = 1;
        uv_mutex_destroy(&s->loops[k].cmu);
        uv_cond_destroy(&s->loops[k].ccv);
    }
out:
    free(s->loops);
    free(s->addrs);
    srv_mem_free(s->catalog);
    uv_mutex_destroy(&s->lock);
    return rc;
}
