/* encode.c - results to response bodies, written by hand: never one json_t per
 * element.  The skeleton goes into one buffer; a large array is left out of it
 * as a "part" whose numbers are formatted afterwards in chunks, on as many
 * threads as the server gives it, each chunk into its own buffer.  The response
 * is then the sequence of pieces skeleton, chunks, skeleton, ..., sent as an
 * iovec without being copied together. */
#include "srv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Arrays of at least this many numbers become parts; a chunk formats about this
 * many. */
#define PART_NUMBERS 65536

typedef struct writer {
    srv_buf *b;
    int err;
    int beyond;     /* a float32 number past float32's range (the core checks doubles) */
    srv_job *defer; /* NULL: format everything inline */
} writer;

static void raw(writer *w, const char *s)
{
    w->err |= srv_buf_puts(w->b, s);
}

static void str(writer *w, const char *s)
{
    w->err |= srv_json_string(w->b, s, strlen(s));
}

/* ,"key": (or "key": first) */
static void key(writer *w, const char *k, int first)
{
    if (!first) raw(w, ",");
    str(w, k);
    raw(w, ":");
}

static void num(writer *w, double v)
{
    if (srv_buf_reserve(w->b, SRV_DOUBLE_MAX)) {
        w->err = 1;
        return;
    }
    w->b->len += srv_fmt_double(w->b->data + w->b->len, v);
    w->b->data[w->b->len] = '\0';
}

static void num_or_null(writer *w, double v, int present)
{
    if (present)
        num(w, v);
    else
        raw(w, "null");
}

/* n numbers, comma separated, in the form's precision.  Reserves the worst case
 * once, so the loop only formats. */
static void numbers(writer *w, const double *v, size_t n, int dtype)
{
    if (srv_buf_reserve(w->b, n * (SRV_DOUBLE_MAX + 1) + 1)) {
        w->err = 1;
        return;
    }
    char *p = w->b->data + w->b->len;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (i) *p++ = ',';
        if (dtype == SRV_DTYPE_FLOAT32) { /* what narrowing gives is what is checked */
            float f = (float)v[i];
            bad |= !isfinite(f);
            p += srv_fmt_float(p, f);
        } else {
            p += srv_fmt_double(p, v[i]);
        }
    }
    w->beyond |= bad;
    *p = '\0';
    w->b->len = (size_t)(p - w->b->data);
}

/* Records a part at the current position of the skeleton: units of unit_len
 * numbers, each a number (sub_rank 0) or nested arrays of sub_shape. */
static int defer_part(writer *w, const double *v, size_t units, size_t unit_len,
                      const size_t *sub_shape, size_t sub_rank, int dtype)
{
    srv_job *j = w->defer;
    if (!j || units * unit_len < PART_NUMBERS) return 0;
    if (j->n_parts == j->cap_parts) {
        size_t cap = j->cap_parts ? 2 * j->cap_parts : 8;
        srv_part *np = realloc(j->parts, cap * sizeof *np);
        if (!np) return 0; /* inline, then */
        j->parts = np;
        j->cap_parts = cap;
    }
    srv_part *pt = &j->parts[j->n_parts++];
    memset(pt, 0, sizeof *pt);
    pt->at = w->b->len;
    pt->v = v;
    pt->units = units;
    pt->unit_len = unit_len;
    pt->sub_rank = sub_rank;
    if (sub_rank) memcpy(pt->sub_shape, sub_shape, sub_rank * sizeof *sub_shape);
    pt->dtype = dtype;
    return 1;
}

static void nested(writer *w, const double *v, const size_t *shape, size_t rank,
                   int dtype);

/* Units [u0, u1) of a part, with the commas between them (and before the first
 * when u0 > 0). */
static void part_units(writer *w, const srv_part *pt, size_t u0, size_t u1)
{
    if (pt->sub_rank == 0) {
        if (u0 > 0) raw(w, ",");
        numbers(w, pt->v + u0, u1 - u0, pt->dtype);
        return;
    }
    for (size_t u = u0; u < u1; u++) {
        if (u > 0) raw(w, ",");
        nested(w, pt->v + u * pt->unit_len, pt->sub_shape, pt->sub_rank, pt->dtype);
    }
}

static void nested(writer *w, const double *v, const size_t *shape, size_t rank,
                   int dtype)
{
    if (rank == 1) {
        raw(w, "[");
        if (!defer_part(w, v, shape[0], 1, NULL, 0, dtype))
            numbers(w, v, shape[0], dtype);
        raw(w, "]");
        return;
    }
    size_t stride = 1;
    for (size_t k = 1; k < rank; k++) stride *= shape[k];
    raw(w, "[");
    if (!defer_part(w, v, shape[0], stride, shape + 1, rank - 1, dtype)) {
        for (size_t i = 0; i < shape[0]; i++) {
            if (i) raw(w, ",");
            nested(w, v + i * stride, shape + 1, rank - 1, dtype);
        }
    }
    raw(w, "]");
}

/* A tensor of the given shape in the form its input came in. */
static void tensor(writer *w, const double *v, size_t rank, const size_t *shape,
                   srv_form f)
{
    int dtype = f.dtype == SRV_DTYPE_FLOAT32 ? SRV_DTYPE_FLOAT32 : SRV_DTYPE_FLOAT64;
    if (f.object) {
        size_t n = 1;
        raw(w, "{\"shape\":[");
        for (size_t k = 0; k < rank; k++) {
            srv_buf_printf(w->b, "%s%zu", k ? "," : "", shape[k]);
            n *= shape[k];
        }
        raw(w, "],\"data\":[");
        if (!defer_part(w, v, n, 1, NULL, 0, dtype)) numbers(w, v, n, dtype);
        raw(w, dtype == SRV_DTYPE_FLOAT32 ? "],\"dtype\":\"float32\"}"
                                          : "],\"dtype\":\"float64\"}");
    } else if (rank == 0) {
        numbers(w, v, 1, dtype);
    } else {
        nested(w, v, shape, rank, dtype);
    }
}

/* The resolved parameters, defaults filled in, absent optional ones null. */
static void spec_echo(writer *w, const loss_spec *s)
{
    raw(w, "{\"name\":");
    str(w, s->desc->name);
    for (size_t i = 0; i < s->desc->n_params; i++) {
        loss_value v;
        loss_spec_get(s, i, &v);
        key(w, s->desc->params[i].name, 0);
        if (!v.present) {
            raw(w, "null");
        } else if (v.is_vector) {
            raw(w, "[");
            numbers(w, v.vec.data, v.vec.len, SRV_DTYPE_FLOAT64);
            raw(w, "]");
        } else if (v.type == LOSS_PARAM_BOOL) {
            raw(w, v.number != 0 ? "true" : "false");
        } else if (v.type == LOSS_PARAM_ENUM) {
            str(w, v.string);
        } else if (v.type == LOSS_PARAM_INTEGER) {
            srv_buf_printf(w->b, "%.0f", v.number);
        } else {
            num(w, v.number);
        }
    }
    raw(w, "}");
}

/* A result tensor (losses, gradients): as text, or, with "binary_outputs", as a
 * tensor object whose bytes follow the JSON. */
static void result(writer *w, const double *v, const void *f32, size_t rank,
                   const size_t *shape, srv_form f)
{
    srv_job *j = w->defer;
    if (!j || !j->binary_out) {
        tensor(w, v, rank, shape, f);
        return;
    }
    size_t n = 1;
    raw(w, "{\"shape\":[");
    for (size_t k = 0; k < rank; k++) {
        srv_buf_printf(w->b, "%s%zu", k ? "," : "", shape[k]);
        n *= shape[k];
    }
    int is_f32 = f.dtype == SRV_DTYPE_FLOAT32;
    srv_buf_printf(w->b, "],\"dtype\":\"%s\",\"binary_data_size\":%zu}",
                   is_f32 ? "float32" : "float64", n * (is_f32 ? 4 : 8));
    if (j->n_bparts == j->cap_bparts) {
        size_t cap = j->cap_bparts ? 2 * j->cap_bparts : 8;
        srv_bpart *nb = realloc(j->bparts, cap * sizeof *nb);
        if (!nb) {
            w->err = 1;
            return;
        }
        j->bparts = nb;
        j->cap_bparts = cap;
    }
    j->bparts[j->n_bparts++] =
        (srv_bpart){v, f32, n, is_f32 ? SRV_DTYPE_FLOAT32 : SRV_DTYPE_FLOAT64, NULL, 0};
    /* narrowed later (binary_bytes): what float32 cannot hold is found now */
    for (size_t i = 0; is_f32 && !f32 && v && i < n; i++)
        w->beyond |= !isfinite((float)v[i]);
}

static srv_form out_form(srv_form in)
{
    srv_form f = {in.object,
                  in.dtype == SRV_DTYPE_FLOAT32 ? SRV_DTYPE_FLOAT32 : SRV_DTYPE_FLOAT64,
                  0};
    return f;
}

static void task_losses(writer *w, const srv_task *t)
{
    result(w, t->out.losses, t->out.losses_f32, t->plan.losses_rank, t->plan.losses_shape,
           out_form(t->form[0]));
}

static void task_gradients(writer *w, const srv_task *t)
{
    const loss_desc *d = t->spec.desc;
    raw(w, "{");
    int first = 1;
    for (size_t i = 0; i < d->n_inputs; i++) {
        if (!d->inputs[i].differentiable) continue;
        key(w, d->inputs[i].name, first);
        first = 0;
        result(w, t->out.grads[i], t->out.grads_f32[i], t->in[i].rank, t->in[i].shape,
               out_form(t->form[i]));
    }
    raw(w, "}");
}

static void components(writer *w, const srv_task *t)
{
    const char *const *c = t->spec.desc->components;
    raw(w, "{");
    for (size_t k = 0; c && c[k]; k++) {
        key(w, c[k], k == 0);
        num(w, t->res.components[k]);
    }
    raw(w, "}");
}

static void loss_response(writer *w, const srv_job *j)
{
    const srv_task *t = &j->tasks[0];
    raw(w, "{\"loss\":");
    spec_echo(w, &t->spec);
    raw(w, ",\"reduction\":");
    str(w, t->reduction == LOSS_SUM ? "sum" : "mean");
    srv_buf_printf(w->b, ",\"n\":%zu", t->plan.n);
    if (j->outputs & SRV_OUT_COST) {
        key(w, "cost", 0);
        num(w, t->res.cost);
        if (t->spec.desc->components) {
            key(w, "components", 0);
            components(w, t);
        }
    }
    if (j->outputs & SRV_OUT_LOSSES) {
        key(w, "losses", 0);
        task_losses(w, t);
    }
    if (j->outputs & SRV_OUT_GRADIENTS) {
        key(w, "gradients", 0);
        task_gradients(w, t);
    }
    if (j->outputs & SRV_OUT_METRICS) {
        raw(w, ",\"metrics\":{");
        if (t->spec.desc->has_accuracy) {
            key(w, "accuracy", 1);
            num_or_null(w, t->res.accuracy, t->res.has_accuracy);
        }
        raw(w, "}");
    }
    raw(w, "}\n");
}

static void objective_response(writer *w, const srv_job *j)
{
    int obj = (j->outputs & SRV_OUT_OBJECTIVE) != 0,
        grads = (j->outputs & SRV_OUT_GRADIENTS) != 0;
    int first = 1;
    raw(w, "{");
    if (obj) {
        key(w, "objective", 1);
        num(w, j->data_term + j->reg_total);
        key(w, "data_term", 0);
        num(w, j->data_term);
        key(w, "regularization_total", 0);
        num(w, j->reg_total);
        first = 0;
    }
    key(w, "tasks", first);
    raw(w, "[");
    for (size_t i = 0; i < j->n_tasks; i++) {
        const srv_task *t = &j->tasks[i];
        raw(w, i ? ",{\"name\":" : "{\"name\":");
        str(w, t->name);
        raw(w, ",\"loss\":");
        spec_echo(w, &t->spec);
        raw(w, ",\"reduction\":");
        str(w, t->reduction == LOSS_SUM ? "sum" : "mean");
        srv_buf_printf(w->b, ",\"n\":%zu", t->plan.n);
        if (obj) {
            key(w, "cost", 0);
            num(w, t->res.cost);
            if (t->spec.desc->components) {
                key(w, "components", 0);
                components(w, t);
            }
            key(w, "effective_weight", 0);
            num(w, j->eff[i]);
            key(w, "contribution", 0);
            num(w, j->contrib[i]);
        }
        if (j->outputs & SRV_OUT_LOSSES) {
            key(w, "losses", 0);
            task_losses(w, t);
        }
        if (grads) {
            key(w, "gradients", 0);
            task_gradients(w, t);
        }
        raw(w, "}");
    }
    raw(w, "],\"regularization\":[");
    for (size_t k = 0; k < j->n_pens; k++) {
        const srv_penalty *p = &j->pens[k];
        raw(w, k ? ",{\"kind\":" : "{\"kind\":");
        str(w, loss_penalty_kind_name(p->pen.kind));
        if (obj) {
            key(w, "lambda", 0);
            num(w, p->pen.lambda);
            key(w, "penalty", 0);
            num(w, p->value);
        }
        if (grads) {
            key(w, "gradient", 0);
            result(w, p->grad, NULL, p->params.rank, p->params.shape, out_form(p->form));
        }
        raw(w, "}");
    }
    raw(w, "],\"weighting\":{\"scheme\":");
    if (j->scheme == LOSS_WEIGHTING_FIXED) {
        str(w, "fixed");
    } else {
        str(w, "uncertainty");
        raw(w, ",\"parametrization\":");
        str(w, j->scheme == LOSS_WEIGHTING_LOG_SIGMA ? "log_sigma" : "log_variance");
        if (grads) {
            raw(w, ",\"gradient\":[");
            numbers(w, j->grad_s, j->n_tasks, SRV_DTYPE_FLOAT64);
            raw(w, "]");
        }
        if (obj) {
            raw(w, ",\"optimal_sigma2\":[");
            for (size_t i = 0; i < j->n_tasks; i++) {
                if (i) raw(w, ",");
                num_or_null(w, j->opt_s2[i], j->opt_s2[i] == j->opt_s2[i]);
            }
            raw(w, "]");
        }
    }
    raw(w, "}}\n");
}

/* The numbers of a result tensor of n numbers written into the skeleton: not
 * those sent as binary data or formatted later as a part. */
static size_t inline_numbers(const srv_job *j, size_t n)
{
    return j->binary_out || n >= PART_NUMBERS ? 0 : n;
}

/* About how many numbers the skeleton holds, to reserve its room once. */
static size_t numbers_out(const srv_job *j)
{
    size_t n = 64;
    for (size_t i = 0; i < j->n_tasks; i++) {
        const srv_task *t = &j->tasks[i];
        if (j->outputs & SRV_OUT_LOSSES) n += inline_numbers(j, t->plan.n_terms);
        for (size_t k = 0; k < LOSS_MAX_INPUTS; k++)
            if (t->out.grads[k]) n += inline_numbers(j, t->plan.input_size[k]);
        n += 16;
    }
    for (size_t k = 0; k < j->n_pens; k++)
        n += inline_numbers(j, loss_tensor_size(&j->pens[k].params)) + 4;
    return n;
}

/* The most bytes a chunk can take: every number at its longest, its comma, and
 * the brackets of its units. */
static size_t chunk_bound(const srv_part *pt, const srv_echunk *c)
{
    size_t units = c->u1 - c->u0;
    return units * pt->unit_len * (SRV_DOUBLE_MAX + 2) + units * 4 * (pt->sub_rank + 1) +
           64;
}

/* A JSON request's body is dead once decoded, and usually larger than the
 * response: the skeleton and the chunks are formatted into slices of it, so
 * that the response costs no memory of its own (the body then goes out with
 * the response, and is held until it is sent instead of a buffer of the
 * response's size: the peak, body + numbers + gradients + response, is what
 * this saves).  The skeleton takes the first room bytes when they fit, and
 * moves to memory of its own if it outgrows them (srv_buf_reserve). */
static int body_is_free(const srv_job *j)
{
    return j->json_len == j->len && j->body; /* binary: still read */
}

static void skeleton_in_body(srv_job *j, size_t room)
{
    if (j->out.data || !body_is_free(j) || room >= srv_mem_size(j->body)) return;
    j->out = (srv_buf){j->body, 0, room + 1, 0, 0, 1};
    j->out.data[0] = '\0';
}

static void chunks_in_body(srv_job *j)
{
    if (!j->n_echunks || !body_is_free(j)) return;
    size_t cap = srv_mem_size(j->body), at = j->out.fixed ? j->out.cap : 0;
    for (size_t c = 0; c < j->n_echunks; c++) {
        srv_echunk *ch = &j->echunks[c];
        size_t need = chunk_bound(&j->parts[ch->part], ch);
        if (need > cap - at) break; /* the rest get buffers of their own */
        ch->text = (srv_buf){j->body + at, 0, need, 0, 0, 1};
        ch->text.data[0] = '\0';
        at += need;
        j->body_in_output = 1;
    }
}

int srv_encode_response(srv_job *j)
{
    writer w = {&j->out, 0, 0, j};
    /* Room for the longest numbers, reserved once: what is not written of it
     * costs no memory (mem.c), and a buffer that grew would not be reused. */
    size_t room = numbers_out(j) * (SRV_DOUBLE_MAX + 2) + 1024;
    skeleton_in_body(j, room);
    if (srv_buf_reserve(&j->out, room)) return -1;
    if (j->ep == SRV_EP_LOSS)
        loss_response(&w, j);
    else
        objective_response(&w, j);
    if (w.err) return -1;
    if (w.beyond) return 1;
    /* The chunks: about PART_NUMBERS numbers each, whole units. */
    for (size_t k = 0; k < j->n_parts; k++) {
        const srv_part *pt = &j->parts[k];
        size_t per = PART_NUMBERS / pt->unit_len;
        if (per < 1) per = 1;
        for (size_t u = 0; u < pt->units; u += per) {
            if (j->n_echunks == j->cap_echunks) {
                size_t cap = j->cap_echunks ? 2 * j->cap_echunks : 16;
                srv_echunk *nc = realloc(j->echunks, cap * sizeof *nc);
                if (!nc) return -1;
                j->echunks = nc;
                j->cap_echunks = cap;
            }
            srv_echunk *c = &j->echunks[j->n_echunks++];
            memset(c, 0, sizeof *c);
            c->part = k;
            c->u0 = u;
            c->u1 = u + per < pt->units ? u + per : pt->units;
        }
    }
    chunks_in_body(j);
    return 0;
}

void srv_encode_chunks(srv_job *j, size_t c0, size_t c1)
{
    for (size_t c = c0; c < c1 && c < j->n_echunks; c++) {
        srv_echunk *ch = &j->echunks[c];
        const srv_part *pt = &j->parts[ch->part];
        writer w = {&ch->text, 0, 0, NULL};
        /* Unless it has a slice of the body: the longest the chunk can be, at
         * once.  Room not written costs no memory (mem.c), and a buffer that
         * grew would not be reused for the next request's chunk. */
        if (!ch->text.fixed) srv_buf_reserve(&ch->text, chunk_bound(pt, ch));
        part_units(&w, pt, ch->u0, ch->u1);
        ch->failed = w.err ? 1 : w.beyond ? 2 : 0;
        if (!ch->failed && j->gzip_min &&
            !j->binary_out) { /* deflated here, in parallel */
            ch->crc = crc32(crc32(0L, Z_NULL, 0), (const unsigned char *)ch->text.data,
                            (uInt)ch->text.len);
            ch->failed = srv_deflate_piece(ch->text.data, ch->text.len, &ch->zip) != 0;
        }
    }
}
