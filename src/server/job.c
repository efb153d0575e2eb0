/* job.c - a request as a job in three phases, so that the dispatcher can run
 * them on the libuv pool (and split the middle one across it) while lossd eval
 * runs them in a row on one thread: the same code path, the same bits. */
#include "srv.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t srv_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void srv_job_init(srv_job *j, srv_endpoint ep, char *body, size_t len,
                  size_t max_elements)
{
    memset(j, 0, sizeof *j);
    j->ep = ep;
    j->body = body;
    j->len = len;
    j->max_elements = max_elements;
    j->json_len = len;
    j->status = 200;
}

int srv_job_set_binary(srv_job *j, unsigned long long json_len)
{
    if (json_len > j->len && !j->gzip_in) {
        srv_error_set(
            &j->err, 400, "invalid_binary_framing", "",
            "Inference-Header-Content-Length is %llu but the body has only %zu bytes",
            json_len, j->len);
        j->failed = 1;
        return -1;
    }
    j->json_len = (size_t)json_len;
    j->binary_header = 1;
    return 0;
}

int srv_job_scan(srv_job *j)
{
    uint64_t t0 = srv_now_ns();
    if (j->gzip_in && !j->failed) { /* the body as sent was compressed */
        char *plain;
        size_t n;
        if (srv_inflate(j->body, j->len, j->max_body, &plain, &n, &j->err)) {
            j->failed = 1;
        } else {
            srv_mem_free(j->body);
            size_t header = j->binary_header ? j->json_len : n; /* the JSON part */
            j->body = plain;
            j->len = n;
            j->json_len = header;
            j->gzip_in = 0;
            if (j->json_len > n) {
                srv_error_set(
                    &j->err, 400, "invalid_binary_framing", "",
                    "Inference-Header-Content-Length is %zu but the inflated body "
                    "has only %zu bytes",
                    j->json_len, n);
                j->failed = 1;
            }
        }
    }
    j->scan.max_values = j->max_elements;
    int rc = j->failed ? -1 : srv_scan_body(j->body, j->json_len, &j->scan, &j->err);
    if (rc) j->failed = 1;
    j->t_parse += srv_now_ns() - t0;
    return rc;
}

void srv_job_parse(srv_job *j, size_t c0, size_t c1)
{
    srv_scan_parse(&j->scan, c0, c1);
}

int srv_job_decode(srv_job *j)
{
    uint64_t t0 = srv_now_ns();
    int rc = j->failed ? -1 : srv_codec_decode(j);
    j->t_parse += srv_now_ns() - t0;
    return rc;
}

void srv_job_compute(srv_job *j, size_t u0, size_t u1)
{
    if (j->failed) return;
    for (size_t i = 0; i < j->n_tasks; i++) {
        srv_task *t = &j->tasks[i];
        size_t a = t->unit0, b = t->unit0 + t->plan.n_blocks;
        size_t lo = u0 > a ? u0 : a, hi = u1 < b ? u1 : b;
        if (lo < hi) loss_eval_blocks(&t->plan, lo - a, hi - a, &t->out);
    }
}

static int finish_objective(srv_job *j)
{
    size_t n = j->n_tasks;
    j->eff = calloc(n, sizeof *j->eff);
    j->contrib = calloc(n, sizeof *j->contrib);
    j->grad_s = calloc(n, sizeof *j->grad_s);
    j->opt_s2 = calloc(n, sizeof *j->opt_s2);
    double *cost = calloc(n, sizeof *cost), *param = calloc(n, sizeof *param);
    int rc = -1;
    if (!j->eff || !j->contrib || !j->grad_s || !j->opt_s2 || !cost || !param) {
        srv_error_set(&j->err, 500, "internal_error", "", "out of memory");
        j->failed = 1;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        cost[i] = j->tasks[i].res.cost;
        param[i] = j->tasks[i].weight;
    }
    loss_weighting_out wo = {j->eff, j->contrib, j->grad_s, j->opt_s2, 0};
    loss_error e;
    if (loss_weighting_eval(j->scheme, n, cost, param, &wo, &e)) {
        srv_weighting_error(j, &e);
        goto out;
    }
    j->data_term = wo.data_term;
    j->reg_total = 0;
    for (size_t k = 0; k < j->n_pens; k++) {
        srv_penalty *p = &j->pens[k];
        size_t m = loss_tensor_size(&p->params);
        p->grad = calloc(m ? m : 1, sizeof *p->grad);
        if (!p->grad) {
            srv_error_set(&j->err, 500, "internal_error", "", "out of memory");
            j->failed = 1;
            goto out;
        }
        if (loss_penalty_eval(&p->pen, p->params.data, m, &p->value, p->grad, &e)) {
            srv_penalty_error(j, p, k, &e);
            goto out;
        }
        j->reg_total += p->value; /* few terms, fixed order */
    }
    if (!isfinite(j->reg_total) || !isfinite(j->data_term + j->reg_total)) {
        srv_error_set(&j->err, 422, "result_not_finite", "",
                      "the %s is not representable as a double",
                      isfinite(j->reg_total) ? "objective" : "regularization total");
        j->failed = 1;
        goto out;
    }
    rc = 0;
out:
    free(cost);
    free(param);
    return rc;
}

/* Frees everything of a job but its response and its body.  Called at the end of
 * srv_job_finish, on the thread that allocated it: memory freed by the thread
 * that allocated it keeps glibc's arenas free of lock traffic between the pool
 * and the loop. */
static void release_work(srv_job *j)
{
    for (size_t i = 0; i < j->n_tasks; i++)
        if (j->tasks[i].planned) loss_plan_free(&j->tasks[i].plan);
    free(j->tasks);
    j->tasks = NULL;
    j->n_tasks = 0;
    for (size_t k = 0; k < j->n_pens; k++) free(j->pens[k].grad);
    free(j->pens);
    j->pens = NULL;
    j->n_pens = 0;
    free(j->eff);
    free(j->contrib);
    free(j->grad_s);
    free(j->opt_s2);
    j->eff = j->contrib = j->grad_s = j->opt_s2 = NULL;
    srv_codec_free(j);
}

/* A result that its form cannot hold: the core checks costs and gradients in
 * double, finish_objective the objective's terms; what goes out as float32 is
 * checked as it is written (encode.c). */
static void unrepresentable(srv_job *j)
{
    srv_error_set(&j->err, 422, "result_not_finite", "",
                  "a result is not representable in its dtype (a double, or float32 up "
                  "to 3.4e38 for float32 tensors): the inputs are too large for it");
}

size_t srv_job_prepare(srv_job *j)
{
    uint64_t t0 = srv_now_ns();
    if (!j->failed) {
        for (size_t i = 0; i < j->n_tasks && !j->failed; i++) {
            loss_error e;
            if (loss_finish(&j->tasks[i].plan, &j->tasks[i].res, &e))
                srv_core_error(j, &j->tasks[i], &e);
        }
    }
    if (!j->failed && j->ep == SRV_EP_OBJECTIVE) finish_objective(j);
    int rc = j->failed ? 0 : srv_encode_response(j);
    if (rc) {
        if (rc > 0)
            unrepresentable(j);
        else
            srv_error_set(&j->err, 500, "internal_error", "",
                          "out of memory encoding the response");
        j->failed = 1;
    }
    if (j->failed) j->n_echunks = 0;
    j->t_encode += srv_now_ns() - t0;
    return j->n_echunks;
}

void srv_job_encode(srv_job *j, size_t c0, size_t c1)
{
    srv_encode_chunks(j, c0, c1);
}

/* The bytes of a binary output: a float32 gradient written over its input in
 * the body (*in_body: the body goes with the output), the result array itself
 * when it has the dtype asked for (it changes hands, no copy), or a float32
 * copy. */
static char *binary_bytes(srv_job *j, const srv_bpart *b, size_t *len, int *in_body)
{
    *len = b->n * (b->dtype == SRV_DTYPE_FLOAT32 ? 4 : 8);
    const void *whole = b->f32 ? b->f32 : b->dtype == SRV_DTYPE_FLOAT64 ? b->v : NULL;
    *in_body = whole && j->body && (const char *)whole >= j->body &&
               (const char *)whole < j->body + j->len;
    if (*in_body) return (char *)whole;
    for (size_t i = 0; whole && i < j->n_owned; i++)
        if (j->owned[i] == whole) {
            char *p = j->owned[i];
            j->owned[i] = NULL;
            return p;
        }
    char *p = srv_mem_alloc(*len ? *len : 1);
    if (!p) return NULL;
    if (b->dtype == SRV_DTYPE_FLOAT64) {
        memcpy(p, b->v, *len);
    } else {
        loss_narrow_f32(p, b->v, b->n);
    }
    return p;
}

/* The pieces of the response: skeleton, chunks, skeleton, ..., binary outputs. */
static int build_output(srv_job *j, srv_output *o)
{
    memset(o, 0, sizeof *o);
    size_t n = 1 + 2 * j->n_parts + j->n_echunks + j->n_bparts;
    o->pieces = calloc(n, sizeof *o->pieces);
    o->bufs = calloc(2 + 2 * j->n_echunks + j->n_given, sizeof *o->bufs);
    if (!o->pieces || !o->bufs) {
        free(o->pieces);
        free(o->bufs);
        return -1;
    }
    const char *skel = j->out.data ? j->out.data : "";
    size_t at = 0, c = 0;
    for (size_t k = 0; k < j->n_parts; k++) {
        if (j->parts[k].at > at)
            o->pieces[o->n_pieces++] =
                (srv_piece){skel + at, j->parts[k].at - at, NULL, 0, 0};
        at = j->parts[k].at;
        for (; c < j->n_echunks && j->echunks[c].part == k; c++) {
            srv_echunk *ch = &j->echunks[c];
            o->pieces[o->n_pieces++] = (srv_piece){ch->text.data, ch->text.len,
                                                   ch->zip.data, ch->zip.len, ch->crc};
        }
    }
    if (j->out.len > at)
        o->pieces[o->n_pieces++] = (srv_piece){skel + at, j->out.len - at, NULL, 0, 0};
    for (size_t i = 0; i < o->n_pieces; i++) o->len += o->pieces[i].len;
    o->json_len = o->len;
    o->binary = j->n_bparts > 0;
    for (size_t k = 0; k < j->n_bparts; k++) {
        o->pieces[o->n_pieces++] =
            (srv_piece){j->bparts[k].bytes, j->bparts[k].len, NULL, 0, 0};
        o->len += j->bparts[k].len;
    }
    /* the buffers change hands */
    if (j->out.fixed) { /* the skeleton stayed in the body: it goes too (below) */
        srv_buf_free(&j->out);
        j->body_in_output = 1;
    } else
        o->bufs[o->n_bufs++] = srv_buf_steal(&j->out, NULL);
    for (size_t k = 0; k < j->n_echunks; k++) {
        if (!j->echunks[k].text.fixed)
            o->bufs[o->n_bufs++] = srv_buf_steal(&j->echunks[k].text, NULL);
        j->echunks[k].text = (srv_buf){0};
        if (j->echunks[k].zip.data)
            o->bufs[o->n_bufs++] = srv_buf_steal(&j->echunks[k].zip, NULL);
    }
    if (j->body_in_output) { /* the skeleton, chunks or gradients are in the body */
        o->bufs[o->n_bufs++] = j->body;
        j->body = NULL;
        j->body_in_output = 0;
    }
    for (size_t k = 0; k < j->n_given; k++) o->bufs[o->n_bufs++] = j->given[k];
    j->n_given = 0;
    j->n_echunks = j->n_parts = j->n_bparts = 0;
    return 0;
}

void srv_job_complete(srv_job *j)
{
    uint64_t t0 = srv_now_ns();
    for (size_t c = 0; c < j->n_echunks && !j->failed; c++)
        if (j->echunks[c].failed) {
            if (j->echunks[c].failed == 2)
                unrepresentable(j);
            else
                srv_error_set(&j->err, 500, "internal_error", "",
                              "out of memory encoding the response");
            j->failed = 1;
        }
    /* Binary outputs become blocks of their own before the arrays are freed. */
    if (!j->failed && j->n_bparts) {
        free(j->given);
        j->given = calloc(j->n_bparts, sizeof *j->given);
        size_t k = 0;
        for (; j->given && k < j->n_bparts; k++) {
            srv_bpart *b = &j->bparts[k];
            int in_body;
            b->bytes = binary_bytes(j, b, &b->len, &in_body);
            if (!b->bytes) break;
            if (in_body)
                j->body_in_output = 1;
            else
                j->given[j->n_given++] = b->bytes;
        }
        if (!j->given || k < j->n_bparts) {
            srv_error_set(&j->err, 500, "internal_error", "",
                          "out of memory for binary outputs");
            j->failed = 1;
        }
    }
    if (j->failed) {
        for (size_t c = 0; c < j->n_echunks; c++) {
            srv_buf_free(&j->echunks[c].text);
            srv_buf_free(&j->echunks[c].zip);
        }
        j->n_echunks = j->n_parts = j->n_bparts = 0;
        srv_buf_free(&j->out);
        j->status = j->err.status;
        if (srv_error_json(&j->err, &j->out)) j->status = 500;
    } else {
        j->status = 200;
    }
    release_work(j);
    /* The response as pieces; gzipped when asked and large enough. */
    srv_output *o = malloc(sizeof *o);
    if (o && build_output(j, o) == 0) {
        /* Binary outputs are raw floats, which barely compress: never gzipped. */
        if (j->gzip_min && o->len >= j->gzip_min && j->status == 200 && !o->binary) {
            srv_output *gz = malloc(sizeof *gz);
            if (gz && srv_gzip_assemble(o, gz) == 0) {
                gz->json_len = o->json_len; /* of the inflated body, as the OIP says */
                gz->binary = o->json_len < o->len;
                srv_output_free(o);
                o = gz;
                o->gzipped = 1;
            } else {
                free(gz); /* send it uncompressed */
            }
        }
        j->final = o;
    } else {
        free(o);
    }
    j->t_encode += srv_now_ns() - t0;
}

void srv_job_encode_here(srv_job *j)
{
    uint64_t t0 = srv_now_ns();
    srv_job_encode(j, 0, j->n_echunks);
    j->t_encode += srv_now_ns() - t0;
    srv_job_complete(j);
}

void srv_job_finish(srv_job *j)
{
    srv_job_prepare(j); /* each of the three adds its own time to t_encode */
    srv_job_encode_here(j);
}

static void srv_output_free_parts(srv_output *o)
{
    for (size_t i = 0; i < o->n_bufs; i++) srv_mem_free(o->bufs[i]);
    free(o->bufs);
    free(o->pieces);
    memset(o, 0, sizeof *o);
}

void srv_output_free(void *output)
{
    srv_output *o = output;
    if (!o) return;
    srv_output_free_parts(o);
    free(o);
}

srv_output *srv_job_output(srv_job *j)
{
    srv_output *o = j->final;
    j->final = NULL;
    return o;
}

void srv_job_run(srv_job *j)
{
    if (srv_job_scan(j) == 0) {
        uint64_t t0 = srv_now_ns();
        srv_job_parse(j, 0, j->scan.n_chunks);
        j->t_parse += srv_now_ns() - t0;
    }
    if (srv_job_decode(j) == 0) {
        uint64_t t0 = srv_now_ns();
        srv_job_compute(j, 0, j->n_units);
        j->t_compute = srv_now_ns() - t0;
    }
    srv_job_finish(j);
}

void srv_job_free(srv_job *j)
{
    if (!j) return;
    release_work(j);
    for (size_t c = 0; c < j->n_echunks; c++) {
        srv_buf_free(&j->echunks[c].text);
        srv_buf_free(&j->echunks[c].zip);
    }
    free(j->echunks);
    free(j->parts);
    free(j->bparts);
    srv_output_free(j->final);
    for (size_t k = 0; k < j->n_given; k++) srv_mem_free(j->given[k]);
    free(j->given);
    j->given = NULL;
    j->n_given = 0;
    srv_buf_free(&j->out);
    srv_mem_free(j->body);
    memset(j, 0, sizeof *j);
}
