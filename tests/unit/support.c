/* support.c - see support.h. */
#include "support.h"

#include <string.h>

int test_failures = 0;
int test_checks = 0;

int test_report(const char *name)
{
    if (test_failures)
        fprintf(stderr, "%s: %d of %d checks FAILED\n", name, test_failures, test_checks);
    else
        printf("%s: all %d checks passed\n", name, test_checks);
    return test_failures ? 1 : 0;
}

json_t *load_json_file(const char *path)
{
    json_error_t e;
    json_t *j = json_load_file(path, JSON_DECODE_INT_AS_REAL, &e);
    if (!j) {
        fprintf(stderr, "cannot load %s: %s (line %d)\n", path, e.text, e.line);
        exit(2);
    }
    return j;
}

/* Shape of nested arrays: follows the first element at each level; the fill
 * below checks rectangularity. */
static int nested_shape(const json_t *j, loss_tensor *t)
{
    t->rank = 0;
    while (json_is_array(j)) {
        if (t->rank == LOSS_MAX_RANK) return -1;
        t->shape[t->rank++] = json_array_size(j);
        if (json_array_size(j) == 0) break;
        j = json_array_get(j, 0);
    }
    return 0;
}

static int fill(const json_t *j, const loss_tensor *t, size_t depth, double **dst)
{
    if (depth == t->rank) {
        if (!json_is_number(j)) return -1;
        *(*dst)++ = json_number_value(j);
        return 0;
    }
    if (!json_is_array(j) || json_array_size(j) != t->shape[depth]) return -1;
    for (size_t i = 0; i < json_array_size(j); i++)
        if (fill(json_array_get(j, i), t, depth + 1, dst)) return -1;
    return 0;
}

int tensor_from_json(const json_t *j, tensor_buf *out)
{
    memset(out, 0, sizeof *out);
    const json_t *data = j;
    if (json_is_object(j)) {
        const json_t *shape = json_object_get(j, "shape");
        data = json_object_get(j, "data");
        if (!json_is_array(shape) || !json_is_array(data)) return -1;
        out->t.rank = json_array_size(shape);
        for (size_t i = 0; i < out->t.rank; i++)
            out->t.shape[i] = (size_t)json_number_value(json_array_get(shape, i));
        out->size = loss_tensor_size(&out->t);
        if (json_array_size(data) != out->size) return -1;
        out->data = malloc((out->size ? out->size : 1) * sizeof(double));
        for (size_t i = 0; i < out->size; i++)
            out->data[i] = json_number_value(json_array_get(data, i));
    } else {
        if (nested_shape(j, &out->t)) return -1;
        out->size = loss_tensor_size(&out->t);
        out->data = malloc((out->size ? out->size : 1) * sizeof(double));
        double *p = out->data;
        if (fill(j, &out->t, 0, &p)) {
            free(out->data);
            out->data = NULL;
            return -1;
        }
    }
    out->t.data = out->data;
    return 0;
}

void tensor_buf_free(tensor_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

int request_from_json(const json_t *body, test_request *r, loss_error *err)
{
    memset(r, 0, sizeof *r);
    const json_t *loss = json_object_get(body, "loss");
    const char *name = json_is_string(loss)
                           ? json_string_value(loss)
                           : json_string_value(json_object_get(loss, "name"));
    int rc = loss_spec_init(&r->spec, name ? name : "", err);
    if (rc) return rc;
    if (json_is_object(loss)) {
        const char *key;
        json_t *v;
        size_t nv = 0;
        json_object_foreach((json_t *)loss, key, v)
        {
            if (strcmp(key, "name") == 0) continue;
            if (json_is_number(v))
                rc = loss_spec_set_number(&r->spec, key, json_number_value(v), err);
            else if (json_is_boolean(v))
                rc = loss_spec_set_bool(&r->spec, key, json_is_true(v), err);
            else if (json_is_string(v))
                rc = loss_spec_set_string(&r->spec, key, json_string_value(v), err);
            else if (json_is_null(v))
                rc = loss_spec_set_none(&r->spec, key, err);
            else if (json_is_array(v) && nv < LOSS_MAX_PARAMS) {
                tensor_from_json(v, &r->vecs[nv]);
                rc = loss_spec_set_vector(&r->spec, key, r->vecs[nv].data,
                                          r->vecs[nv].size, err);
                nv++;
            }
            if (rc) return rc;
        }
    }
    const json_t *inputs = json_object_get(body, "inputs");
    const loss_desc *d = r->spec.desc;
    for (size_t i = 0; i < d->n_inputs; i++) {
        const json_t *t = json_object_get(inputs, d->inputs[i].name);
        if (t && tensor_from_json(t, &r->in[i])) {
            fprintf(stderr, "bad tensor %s\n", d->inputs[i].name);
            exit(2);
        }
    }
    const json_t *w = json_object_get(body, "weights");
    if (w) {
        r->has_weights = 1;
        tensor_from_json(w, &r->weights);
    }
    const json_t *red = json_object_get(body, "reduction");
    r->reduction =
        red && strcmp(json_string_value(red), "sum") == 0 ? LOSS_SUM : LOSS_MEAN;
    return 0;
}

void test_request_free(test_request *r)
{
    for (size_t i = 0; i < LOSS_MAX_INPUTS; i++) tensor_buf_free(&r->in[i]);
    for (size_t i = 0; i < LOSS_MAX_PARAMS; i++) tensor_buf_free(&r->vecs[i]);
    tensor_buf_free(&r->weights);
}

int close_enough(double a, double b, double rtol, double scale)
{
    double diff = fabs(a - b);
    return diff <= rtol * fabs(b) + 1e-2 * rtol * scale + 1e-300;
}

int compare_array(const char *label, const double *got, const json_t *want, double rtol)
{
    tensor_buf w;
    if (tensor_from_json(want, &w)) {
        CHECK(0, "%s: expected value is not a tensor", label);
        return 1;
    }
    double scale = 0;
    for (size_t i = 0; i < w.size; i++) scale = fmax(scale, fabs(w.data[i]));
    int bad = 0;
    for (size_t i = 0; i < w.size; i++) {
        if (close_enough(got[i], w.data[i], rtol, scale)) continue;
        if (!bad)
            CHECK(0, "%s[%zu]: got %.17g, want %.17g (rel %.3g)", label, i, got[i],
                  w.data[i], fabs(got[i] - w.data[i]) / fmax(fabs(w.data[i]), 1e-300));
        bad++;
    }
    if (!bad) test_checks++;
    tensor_buf_free(&w);
    return bad;
}

double rng_uniform(rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    unsigned long long x = r->s * 2685821657736338717ULL;
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

double rng_normal(rng *r)
{
    double u = rng_uniform(r), v = rng_uniform(r);
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}
