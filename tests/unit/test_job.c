/* test_job.c - the job API's stage times (Server-Timing and
 * lossd_stage_duration_seconds): parse, compute and encode are disjoint spans of
 * srv_job_run, so together they never exceed its wall time.  (srv_job_finish once
 * counted the response's preparation twice, which doubled a small request's
 * encode time.) */
#include "srv.h"
#include "test.h"

#include <stdio.h>
#include <string.h>

/* An mse body of n elements (predictions i/7, targets 0). */
static char *mse_body(size_t n, size_t *len)
{
    size_t cap = 64 + 48 * n, at = 0;
    char *b = srv_mem_alloc(cap);
    if (!b) return NULL;
    at += (size_t)snprintf(b + at, cap - at,
                           "{\"loss\":\"mse\",\"inputs\":{\"predictions\":[");
    for (size_t i = 0; i < n; i++)
        at += (size_t)snprintf(b + at, cap - at, "%s%.17g", i ? "," : "", (double)i / 7);
    at += (size_t)snprintf(b + at, cap - at, "],\"targets\":[");
    for (size_t i = 0; i < n; i++)
        at += (size_t)snprintf(b + at, cap - at, "%s0", i ? "," : "");
    at += (size_t)snprintf(b + at, cap - at, "]}}");
    *len = at;
    return b;
}

static void stages_within_wall(size_t n)
{
    size_t len;
    char *body = mse_body(n, &len);
    CHECK(body != NULL, "out of memory");
    if (!body) return;
    srv_job j;
    srv_job_init(&j, SRV_EP_LOSS, body, len, 50000000);
    uint64_t t0 = srv_now_ns();
    srv_job_run(&j);
    uint64_t wall = srv_now_ns() - t0;
    uint64_t sum = j.t_parse + j.t_compute + j.t_encode;
    CHECK(j.status == 200, "%zu elements: status %d", n, j.status);
    CHECK(j.t_parse > 0 && j.t_encode > 0, "%zu elements: parse %llu, encode %llu ns", n,
          (unsigned long long)j.t_parse, (unsigned long long)j.t_encode);
    CHECK(
        sum <= wall,
        "%zu elements: parse %llu + compute %llu + encode %llu = %llu ns, more than the "
        "%llu ns of srv_job_run",
        n, (unsigned long long)j.t_parse, (unsigned long long)j.t_compute,
        (unsigned long long)j.t_encode, (unsigned long long)sum,
        (unsigned long long)wall);
    srv_output_free(srv_job_output(&j));
    srv_job_free(&j);
}

int main(void)
{
    /* small (the response written while it is prepared), middling, and one whose
     * gradients are formatted in a chunk of their own */
    static const size_t sizes[] = {64, 20000, 70000};
    for (int rep = 0; rep < 3; rep++)
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
            stages_within_wall(sizes[i]);
    return test_report("test_job");
}
