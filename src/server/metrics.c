/* metrics.c - Prometheus counters and histograms.  Everything is updated on the
 * loop thread (request completion), so plain integers suffice. */
#include "srv.h"

#include <stdlib.h>
#include <string.h>

static const double bounds[SRV_HIST_BUCKETS - 1] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   10.0};
/* 499: no response, the client went away first (nginx's name for it). */
static const int statuses[SRV_STATUS_SLOTS] = {200, 400, 401, 404, 405, 411, 413, 415,
                                               422, 429, 499, 500, 503, 0,   0,   -1};
static const char *const endpoints[SRV_EP_M_COUNT] = {
    "/v1/loss", "/v1/objective", "/v1/losses", "/v1/losses/{name}", "/healthz", "/readyz",
    "/metrics", "/openapi.yaml", "other"};
static const char *const stages[SRV_STAGE_COUNT] = {"parse", "compute", "encode"};

static void observe(srv_hist *h, double v)
{
    size_t i = 0;
    while (i < SRV_HIST_BUCKETS - 1 && v > bounds[i]) i++;
    h->bucket[i]++;
    h->count++;
    h->sum += v;
}

void srv_metrics_request(srv_metrics *m, int endpoint, int status, double seconds,
                         size_t in, size_t out)
{
    size_t slot = SRV_STATUS_SLOTS - 1; /* "other" */
    for (size_t i = 0; i < SRV_STATUS_SLOTS - 1; i++)
        if (statuses[i] == status) slot = i;
    m->requests[endpoint][slot]++;
    observe(&m->latency[endpoint], seconds);
    m->bytes_in += in;
    m->bytes_out += out;
    /* refused work (overloaded or draining), not /readyz saying it is draining */
    if (status == 503 && (endpoint == SRV_EP_M_LOSS || endpoint == SRV_EP_M_OBJECTIVE))
        m->rejected_overload++;
}

void srv_metrics_stage(srv_metrics *m, int stage, double seconds)
{
    observe(&m->stage[stage], seconds);
}

static void hist(srv_buf *b, const char *name, const char *label, const char *value,
                 const srv_hist *h)
{
    unsigned long long cum = 0;
    for (size_t i = 0; i < SRV_HIST_BUCKETS; i++) {
        cum += h->bucket[i];
        if (i < SRV_HIST_BUCKETS - 1)
            srv_buf_printf(b, "%s_bucket{%s=\"%s\",le=\"%g\"} %llu\n", name, label, value,
                           bounds[i], cum);
        else
            srv_buf_printf(b, "%s_bucket{%s=\"%s\",le=\"+Inf\"} %llu\n", name, label,
                           value, cum);
    }
    srv_buf_printf(b, "%s_sum{%s=\"%s\"} %.9g\n%s_count{%s=\"%s\"} %llu\n", name, label,
                   value, h->sum, name, label, value, h->count);
}

char *srv_metrics_text(const srv_metrics *m, unsigned long inflight,
                       const unsigned long *open, size_t n_loops, size_t *len)
{
    srv_buf b = {0};
    srv_buf_puts(
        &b,
        "# HELP lossd_requests_total HTTP requests answered, by endpoint and status.\n"
        "# TYPE lossd_requests_total counter\n");
    for (int e = 0; e < SRV_EP_M_COUNT; e++)
        for (int s = 0; s < SRV_STATUS_SLOTS; s++) {
            if (!m->requests[e][s]) continue;
            if (statuses[s] > 0)
                srv_buf_printf(&b,
                               "lossd_requests_total{endpoint=\"%s\",code=\"%d\"} %llu\n",
                               endpoints[e], statuses[s], m->requests[e][s]);
            else
                srv_buf_printf(
                    &b, "lossd_requests_total{endpoint=\"%s\",code=\"other\"} %llu\n",
                    endpoints[e], m->requests[e][s]);
        }
    srv_buf_puts(
        &b, "# HELP lossd_request_duration_seconds Time from the request's headers to "
            "its response being queued.\n"
            "# TYPE lossd_request_duration_seconds histogram\n");
    for (int e = 0; e < SRV_EP_M_COUNT; e++)
        if (m->latency[e].count)
            hist(&b, "lossd_request_duration_seconds", "endpoint", endpoints[e],
                 &m->latency[e]);
    srv_buf_puts(
        &b, "# HELP lossd_stage_duration_seconds Time spent per stage of /v1/loss and "
            "/v1/objective requests.\n"
            "# TYPE lossd_stage_duration_seconds histogram\n");
    for (int s = 0; s < SRV_STAGE_COUNT; s++)
        hist(&b, "lossd_stage_duration_seconds", "stage", stages[s], &m->stage[s]);
    srv_buf_printf(
        &b,
        "# HELP lossd_inflight_requests Requests admitted whose response is not yet "
        "sent.\n"
        "# TYPE lossd_inflight_requests gauge\nlossd_inflight_requests %lu\n"
        "# HELP lossd_request_bytes_total Bytes of request bodies received.\n"
        "# TYPE lossd_request_bytes_total counter\nlossd_request_bytes_total %llu\n"
        "# HELP lossd_response_bytes_total Bytes of response bodies sent.\n"
        "# TYPE lossd_response_bytes_total counter\nlossd_response_bytes_total %llu\n"
        "# HELP lossd_rejected_total Requests refused with 503 (overloaded or "
        "draining).\n"
        "# TYPE lossd_rejected_total counter\nlossd_rejected_total %llu\n"
        "# HELP lossd_build_info Version of this lossd.\n"
        "# TYPE lossd_build_info gauge\nlossd_build_info{version=\"%s\"} 1\n",
        inflight, m->bytes_in, m->bytes_out, m->rejected_overload, SRV_VERSION);
    srv_buf_puts(&b, "# HELP lossd_open_connections Open connections, by I/O thread.\n"
                     "# TYPE lossd_open_connections gauge\n");
    for (size_t k = 0; k < n_loops; k++)
        srv_buf_printf(&b, "lossd_open_connections{io_thread=\"%zu\"} %lu\n", k, open[k]);
    if (b.toobig || !b.data) {
        srv_buf_free(&b);
        return NULL;
    }
    return srv_buf_steal(&b, len);
}
