/* server.c - the HTTP server: libmicrohttpd for HTTP, driven by one libuv loop;
 * request work on the libuv pool.
 *
 * Wiring.  MHD runs without threads of its own (MHD_USE_EPOLL, external mode):
 * its epoll descriptor sits in a uv_poll_t on the loop and a uv_timer_t follows
 * MHD_get_timeout, so every MHD callback runs on the loop thread.  The access
 * handler collects the body (bounded), suspends the connection and calls
 * uv_queue_work itself - the same thread, so there is no cross-thread queue.  The
 * work callback decodes, computes and encodes on a pool thread; a large batch
 * comes back to the loop once to be split into chunks, one per pool thread, and
 * once more to be finished.  The last after-work callback resumes the connection
 * and runs MHD, which calls the handler again to queue the response.
 *
 * Rules this file keeps (the traps of the two libraries):
 *  - resume exactly once per suspend, and never touch the request after
 *    MHD_resume_connection until MHD calls the handler again;
 *  - suspended connections never time out, so every suspended request has work
 *    on the pool that will end;
 *  - MHD_stop_daemon only when no connection is suspended;
 *  - the pool queue is unbounded, so admission is bounded here (--max-inflight);
 *  - UV_THREADPOOL_SIZE is set in main, before the first uv_queue_work. */
#include "srv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
} client;

typedef struct server {
    srv_config *cfg;
    uv_loop_t loop;
    struct MHD_Daemon *mhd;
    uv_poll_t poll;
    uv_timer_t timer;
    uv_signal_t sig_term, sig_int;
    uv_timer_t drain;
    uint64_t drain_deadline;
    int draining;
    MHD_socket listen_fd;
    unsigned long inflight;  /* admitted requests not yet answered */
    unsigned long running;   /* suspended requests with work on the pool */
    struct request *pending; /* small requests to hand to the pool after MHD_run */
    size_t n_pending;
    size_t batches; /* batch items on the pool */
    client clients; /* list head */
    uv_timer_t sweep;
    srv_metrics metrics;
    char *catalog;
    size_t catalog_len;
    uint64_t id_state;
} server;

typedef struct request {
    server *s;
    struct MHD_Connection *conn;
    const char *url, *method;
    int route, metric;
    int counted; /* counts in s->inflight */
    int running; /* suspended, work on the pool */
    int done;    /* loop thread: the job is finished, the next handler call answers */
    int phase;   /* PH_*: set by a work item, read by its after-work callback */
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
    struct request *next; /* in server.pending */
} request;

/* Small requests go to the pool in batches: one uv_queue_work (one wake-up of a
 * pool thread, one completion) for every request that MHD_run made ready, spread
 * over at most --threads items.  At most --threads batches are on the pool at a
 * time; requests that come meanwhile wait for one to end and go together (group
 * commit): under load a wake-up serves many requests, idle it serves one at once. */
typedef struct batch {
    uv_work_t work;
    size_t n;
    request *reqs[];
} batch;

/* Bodies up to this size are batched; larger ones get a work item of their own. */
#define BATCH_MAX_BODY (256 * 1024)

/* ---- request ids ---- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void request_id(server *s, request *r)
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
    s->id_state += 0x9e3779b97f4a7c15ULL;
    uint64_t v = mix64(s->id_state);
    for (int i = 15; i >= 0; i--, v >>= 4) r->id[i] = "0123456789abcdef"[v & 15];
    r->id[16] = '\0';
}

/* ---- responses ---- */

/* Appends ns as milliseconds with three decimals ("12.345"); the I/O thread
 * writes one Server-Timing header per response, without printf's float path. */
static char *put_ms(char *p, uint64_t ns)
{
    uint64_t us = (ns + 500) / 1000, ms = us / 1000;
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + ms % 10);
        ms /= 10;
    } while (ms);
    while (n) *p++ = digits[--n];
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

static void finish_request(request *r, int status, size_t out_len)
{
    server *s = r->s;
    double secs = (double)(srv_now_ns() - r->t0) / 1e9;
    srv_metrics_request(&s->metrics, r->metric, status, secs, r->received, out_len);
    if (r->counted) {
        r->counted = 0;
        s->inflight--;
    }
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
    if (r->s->draining)
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

static int route_of(const char *url, int *metric)
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
    /* Compare in time independent of where the strings differ. */
    size_t n = strlen(key), m = strlen(given);
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
        return s->draining ? respond_json(r, 503, "{\"status\":\"draining\"}\n")
                           : respond_json(r, 200, "{\"status\":\"ready\"}\n");
    case R_CATALOG:
        return respond(r, 200, s->catalog, s->catalog_len, "application/json", 0, NULL,
                       NULL);
    case R_CATALOG_ONE: {
        size_t len;
        char *body = srv_catalog_json(r->url + 11, &len);
        if (!body) {
            srv_error e;
            srv_error_set(&e, 404, "unknown_loss", "",
                          "there is no loss named \"%.60s\"; GET "
                          "/v1/losses lists them",
                          r->url + 11);
            return respond_error(r, &e, NULL, NULL);
        }
        return respond(r, 200, body, len, "application/json", 1, NULL, NULL);
    }
    case R_METRICS: {
        size_t len;
        char *body = srv_metrics_text(&s->metrics, s->inflight, &len);
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

static void mhd_kick(server *s);

static void resume(request *r)
{
    server *s = r->s;
    r->running = 0;
    s->running--;
    r->done = 1;
    srv_metrics_stage(&s->metrics, SRV_STAGE_PARSE, (double)r->job.t_parse / 1e9);
    srv_metrics_stage(&s->metrics, SRV_STAGE_COMPUTE, (double)r->job.t_compute / 1e9);
    srv_metrics_stage(&s->metrics, SRV_STAGE_ENCODE, (double)r->job.t_encode / 1e9);
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
        uv_queue_work(&r->s->loop, &r->chunks[i], work_chunk, after_chunk);
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
        srv_job_encode(j, 0, j->n_echunks);
        srv_job_complete(j);
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
    server *s = r->s;
    (void)status;
    next_phase(r);
    mhd_kick(s);
}

static void parse_done(request *r)
{
    r->job.t_parse += srv_now_ns() - r->t_phase;
    r->work.data = r;
    uv_queue_work(&r->s->loop, &r->work, work_decode, after_item);
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
    srv_job_encode(&r->job, 0, r->job.n_echunks);
    srv_job_complete(&r->job);
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
    uv_queue_work(&r->s->loop, &r->work, work_complete, after_item);
}

static void compute_done(request *r)
{
    r->job.t_compute = srv_now_ns() - r->t_phase;
    r->work.data = r;
    uv_queue_work(&r->s->loop, &r->work, work_finish, after_item);
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

static void work_batch(uv_work_t *w)
{
    batch *b = w->data;
    for (size_t i = 0; i < b->n; i++) run_main(b->reqs[i]);
}

static void after_batch(uv_work_t *w, int status)
{
    batch *b = w->data;
    server *s = b->reqs[0]->s;
    (void)status;
    s->batches--;
    for (size_t i = 0; i < b->n; i++) next_phase(b->reqs[i]);
    free(b);
    mhd_kick(s);
}

/* Hands the pending small requests to the pool. */
static void flush_pending(server *s)
{
    size_t threads = (size_t)s->cfg->threads;
    while (s->n_pending && s->batches < threads) {
        size_t n_items = threads - s->batches;
        if (n_items > s->n_pending) n_items = s->n_pending;
        size_t per = (s->n_pending + n_items - 1) / n_items;
        batch *b = malloc(sizeof *b + per * sizeof b->reqs[0]);
        if (!b) { /* one by one, then */
            request *r = s->pending;
            s->pending = r->next;
            s->n_pending--;
            r->work.data = r;
            uv_queue_work(&s->loop, &r->work, work_main, after_item);
            continue;
        }
        b->n = 0;
        while (b->n < per && s->pending) {
            b->reqs[b->n++] = s->pending;
            s->pending = s->pending->next;
            s->n_pending--;
        }
        b->work.data = b;
        s->batches++;
        uv_queue_work(&s->loop, &b->work, work_batch, after_batch);
    }
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
    s->running++;
    if (r->cl) r->cl->busy = 1;
    MHD_suspend_connection(r->conn);
    if (len <= BATCH_MAX_BODY) { /* queued after this MHD_run, with its neighbours */
        r->next = s->pending;
        s->pending = r;
        s->n_pending++;
        return 0;
    }
    r->work.data = r;
    uv_queue_work(&s->loop, &r->work, work_main, after_item);
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
    if (s->draining)
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
    if (s->inflight >= s->cfg->max_inflight)
        return fail(r, 503, "overloaded", "Retry-After", "1",
                    "lossd has %lu requests in progress (--max-inflight); retry shortly",
                    s->inflight);
    r->body.max = (size_t)max;
    r->counted = 1;
    s->inflight++;
    return MHD_YES;
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
    server *s = cls;
    request *r = *con_cls;
    (void)version;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        *con_cls = r;
        r->s = s;
        r->conn = c;
        r->url = url;
        r->method = method;
        r->t0 = srv_now_ns();
        request_id(s, r);
        r->route = route_of(url, &r->metric);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        r->cl = ci ? ci->socket_context : NULL;
        /* A request without a body is answered on the next call: a response
         * queued while MHD still waits for the end of the request closes the
         * connection, which is right for a refused body but not for a GET. */
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        const char *te =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Transfer-Encoding");
        r->has_body = (cl && strcmp(cl, "0")) || te;
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
    server *s = cls;
    request *r = *con_cls;
    (void)c;
    (void)toe;
    if (!r) return;
    if (r->cl) {
        r->cl->busy = 0;
        r->cl->body = 0;
        r->cl->since = srv_now_ns();
    }
    if (r->counted) { /* the client went away before its answer */
        r->counted = 0;
        s->inflight--;
    }
    if (r->has_job) srv_job_free(&r->job);
    srv_buf_free(&r->body);
    free(r->chunks);
    free(r);
    *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        client *k = calloc(1, sizeof *k);
        if (!k) return;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        k->fd = ci ? ci->connect_fd : MHD_INVALID_SOCKET;
        k->since = srv_now_ns();
        k->next = s->clients.next;
        k->prev = &s->clients;
        s->clients.next->prev = k;
        s->clients.next = k;
        *socket_context = k;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
        client *k = *socket_context;
        k->prev->next = k->next;
        k->next->prev = k->prev;
        free(k);
        *socket_context = NULL;
    }
}

/* Once a second: a request must arrive within twice --connection-timeout of
 * the connection's start (or its previous request's end), plus a second per
 * 64 KiB of body; a slower client is disconnected (its socket shut down, which
 * MHD then closes).  Connections whose request is being answered are left
 * alone, suspended ones above all. */
static void on_sweep(uv_timer_t *t)
{
    server *s = t->data;
    uint64_t now = srv_now_ns(), limit_ns = 2000000000ULL * s->cfg->connection_timeout;
    for (client *k = s->clients.next; k != &s->clients; k = k->next) {
        if (k->busy || k->fd == MHD_INVALID_SOCKET) continue;
        uint64_t allowed = limit_ns + (uint64_t)(k->body / 65536) * 1000000000ULL;
        if (now - k->since > allowed) {
            shutdown(k->fd, SHUT_RDWR);
            k->fd = MHD_INVALID_SOCKET; /* once */
        }
    }
    mhd_kick(s);
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
    srv_log(SRV_LOG_WARN, "libmicrohttpd: %s", msg);
}

/* ---- the loop ---- */

static void on_timer(uv_timer_t *t);

static void mhd_kick(server *s)
{
    if (!s->mhd) return;
    MHD_run(s->mhd);
    flush_pending(s);
    MHD_UNSIGNED_LONG_LONG to;
    if (MHD_get_timeout(s->mhd, &to) == MHD_YES)
        uv_timer_start(&s->timer, on_timer, (uint64_t)to, 0);
    else
        uv_timer_stop(&s->timer);
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

static void stop(server *s)
{
    uv_timer_stop(&s->drain);
    uv_poll_stop(&s->poll);
    uv_timer_stop(&s->timer);
    /* No connection is suspended here (s->running == 0), so stopping is legal. */
    MHD_stop_daemon(s->mhd);
    s->mhd = NULL;
    if (s->listen_fd != MHD_INVALID_SOCKET) close(s->listen_fd);
    uv_close((uv_handle_t *)&s->poll, on_close);
    uv_close((uv_handle_t *)&s->timer, on_close);
    uv_close((uv_handle_t *)&s->drain, on_close);
    uv_timer_stop(&s->sweep);
    uv_close((uv_handle_t *)&s->sweep, on_close);
    uv_close((uv_handle_t *)&s->sig_term, on_close);
    uv_close((uv_handle_t *)&s->sig_int, on_close);
    srv_log(SRV_LOG_INFO, "stopped");
}

static void on_drain(uv_timer_t *t)
{
    server *s = t->data;
    if (s->running) return; /* suspended requests finish first, always */
    if (s->inflight && uv_now(&s->loop) < s->drain_deadline) return;
    stop(s);
}

static void on_signal(uv_signal_t *h, int signum)
{
    server *s = h->data;
    if (s->draining) return;
    s->draining = 1;
    srv_log(SRV_LOG_INFO, "%s: draining (%lu requests in flight)",
            signum == SIGTERM ? "SIGTERM" : "SIGINT", s->inflight);
    /* Closed at once, so that new connections are refused rather than left in
     * the backlog: MHD no longer watches it in external mode. */
    s->listen_fd = MHD_quiesce_daemon(s->mhd);
    if (s->listen_fd != MHD_INVALID_SOCKET) close(s->listen_fd);
    s->listen_fd = MHD_INVALID_SOCKET;
    s->drain_deadline = uv_now(&s->loop) + 1000u * s->cfg->connection_timeout;
    uv_timer_start(&s->drain, on_drain, 0, 10);
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

int srv_server_run(srv_config *cfg)
{
    static server srv; /* one per process; static so that nothing outlives it */
    server *s = &srv;
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->listen_fd = MHD_INVALID_SOCKET;
    s->id_state = mix64((uint64_t)srv_now_ns() ^ ((uint64_t)getpid() << 32));
    s->clients.next = s->clients.prev = &s->clients;
    s->catalog = srv_catalog_json(NULL, &s->catalog_len);
    if (!s->catalog) return 1;

    struct sockaddr_storage addr;
    int v6;
    if (bind_address(cfg->bind, (unsigned)cfg->port, &addr, &v6)) {
        fprintf(stderr, "lossd: --bind \"%s\" is not an IPv4 or IPv6 address\n",
                cfg->bind);
        return 2;
    }
    if (cfg->tls_cert && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        fprintf(stderr, "lossd: this libmicrohttpd has no TLS support\n");
        return 2;
    }
    unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
                         MHD_USE_TURBO | (v6 ? MHD_USE_IPv6 : 0) |
                         (cfg->tls_cert ? MHD_USE_TLS : 0);
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_logger, NULL},
        {MHD_OPTION_SOCK_ADDR, 0, &addr},
        {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)cfg->max_connections, NULL},
        {MHD_OPTION_PER_IP_CONNECTION_LIMIT, (intptr_t)cfg->max_connections_per_ip, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)cfg->connection_timeout, NULL},
        /* Each connection's buffer pool: request headers, read buffer (about half
         * the pool), response head.  A trade: libmicrohttpd 0.9.75 zeroes the
         * whole pool after every request (1.5 us for 64 KiB), and a body is read
         * a read buffer at a time (an 8 MB binary body takes 6.5 ms end to end
         * with 64 KiB, 7.6 ms with 32 KiB, 11 ms with 16 KiB). */
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)(64 * 1024), NULL},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, s},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, s},
        {MHD_OPTION_SIGPIPE_HANDLED_BY_APP, 1, NULL},
        {cfg->tls_cert ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, cfg->tls_key_pem},
        {MHD_OPTION_HTTPS_MEM_CERT, 0, cfg->tls_cert_pem},
        {MHD_OPTION_END, 0, NULL},
    };
    s->mhd = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, s,
                              MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!s->mhd) {
        fprintf(stderr, "lossd: cannot listen on %s port %lu: %s\n", cfg->bind, cfg->port,
                strerror(errno));
        srv_mem_free(s->catalog);
        return 1;
    }
    const union MHD_DaemonInfo *ep =
        MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *pi =
        MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    unsigned port = pi ? pi->port : (unsigned)cfg->port;

    uv_loop_init(&s->loop);
    uv_poll_init(&s->loop, &s->poll, ep->epoll_fd);
    uv_timer_init(&s->loop, &s->timer);
    uv_timer_init(&s->loop, &s->drain);
    uv_timer_init(&s->loop, &s->sweep);
    uv_signal_init(&s->loop, &s->sig_term);
    uv_signal_init(&s->loop, &s->sig_int);
    s->poll.data = s->timer.data = s->drain.data = s->sig_term.data = s->sig_int.data = s;
    s->sweep.data = s;
    uv_timer_start(&s->sweep, on_sweep, 1000, 1000);
    uv_poll_start(&s->poll, UV_READABLE, on_poll);
    uv_signal_start(&s->sig_term, on_signal, SIGTERM);
    uv_signal_start(&s->sig_int, on_signal, SIGINT);
    mhd_kick(s);

    char host[INET6_ADDRSTRLEN] = "?";
    if (v6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&addr)->sin6_addr, host,
                  sizeof host);
    else
        inet_ntop(AF_INET, &((struct sockaddr_in *)&addr)->sin_addr, host, sizeof host);
    printf("lossd listening on %s://%s%s%s:%u\n", cfg->tls_cert ? "https" : "http",
           v6 ? "[" : "", host, v6 ? "]" : "", port);
    fflush(stdout);
    srv_log(SRV_LOG_INFO, "version %s, %lu compute threads, max body %llu bytes",
            SRV_VERSION, cfg->threads, cfg->max_body_bytes);

    uv_run(&s->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&s->loop) == 0 ? 0 : 1;
    srv_mem_free(s->catalog);
    return rc;
}
