/* codec.c - request bodies to jobs: the scanner lifts the numeric arrays, jansson
 * parses the rest, and this file walks the small DOM into core specs, tensors and
 * plans.  Every rejection names the JSON Pointer of what it rejects. */
#include "srv.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PTR_MAX 256

static int fail(srv_job *j, int status, const char *code, const char *path,
                const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

static int fail(srv_job *j, int status, const char *code, const char *path,
                const char *fmt, ...)
{
    char msg[sizeof j->err.message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    srv_error_set(&j->err, status, code, path, "%s", msg);
    j->failed = 1;
    return -1;
}

/* out = prefix + suffix, cut at PTR_MAX - 1 bytes (out is neither of them).  Not
 * snprintf: every request joins a few pointers, and "%s%s" costs 0.1-0.2 us. */
static void join(char *out, const char *prefix, const char *suffix)
{
    size_t a = strnlen(prefix, PTR_MAX - 1), b = strnlen(suffix, PTR_MAX - 1 - a);
    memcpy(out, prefix, a);
    memcpy(out + a, suffix, b);
    out[a + b] = '\0';
}

/* An optional member: NULL when it is absent or null.  null means "the default"
 * for every optional member, as it does for the parameters of a loss or penalty. */
static const json_t *optional(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

typedef struct shape_text {
    char s[160];
} shape_text;

static shape_text shape_str(const loss_tensor *t)
{
    shape_text out = {"["};
    size_t used = 1;
    for (size_t i = 0; i < t->rank && used < sizeof out.s; i++) {
        int w = snprintf(out.s + used, sizeof out.s - used, "%s%zu", i ? ", " : "",
                         t->shape[i]);
        if (w > 0) used += (size_t)w;
    }
    if (used < sizeof out.s - 1) snprintf(out.s + used, sizeof out.s - used, "]");
    return out;
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

static void *own_bytes(srv_job *j, size_t size)
{
    if (j->n_owned == j->cap_owned) {
        size_t cap = j->cap_owned ? j->cap_owned * 2 : 16;
        void **p = realloc(j->owned, cap * sizeof *p);
        if (!p) return NULL;
        j->owned = p;
        j->cap_owned = cap;
    }
    void *d = srv_mem_alloc(size ? size : 1);
    if (d) j->owned[j->n_owned++] = d;
    return d;
}

static double *own(srv_job *j, size_t n)
{
    return n > SIZE_MAX / sizeof(double) ? NULL : own_bytes(j, n * sizeof(double));
}

/* n more numbers (SIZE_MAX: more than can be counted); 413 beyond the limit. */
static int count_elements(srv_job *j, size_t n, const char *path)
{
    if (n > SIZE_MAX / sizeof(double) - j->n_elements)
        return fail(j, 413, "too_many_elements", path,
                    "the request has more numbers than memory can hold");
    j->n_elements += n;
    if (j->max_elements && j->n_elements > j->max_elements)
        return fail(j, 413, "too_many_elements", path,
                    "the request has more than %zu numbers (--max-elements)",
                    j->max_elements);
    return 0;
}

/* ---- tensors ---- */

/* Shape of nested arrays, from the first element at each level. */
static int nested_shape(srv_job *j, const json_t *v, loss_tensor *t, const char *path)
{
    t->rank = 0;
    while (json_is_array(v)) {
        if (t->rank == LOSS_MAX_RANK)
            return fail(j, 422, "invalid_tensor", path,
                        "%s nests deeper than %d dimensions", path, LOSS_MAX_RANK);
        t->shape[t->rank++] = json_array_size(v);
        if (json_array_size(v) == 0) break;
        v = json_array_get(v, 0);
    }
    return 0;
}

/* Copies nested arrays into *dst, checking that they are rectangular numbers
 * (only checks when dst is NULL). */
static int nested_fill(srv_job *j, const json_t *v, const loss_tensor *t, size_t depth,
                       double **dst, char *path)
{
    size_t mark = strlen(path);
    if (depth == t->rank) {
        if (!json_is_number(v))
            return fail(j, 422, "invalid_tensor", path,
                        "%s is %s but tensor elements must be numbers", path,
                        json_type_name(v));
        if (dst) *(*dst)++ = json_number_value(v);
        return 0;
    }
    if (!json_is_array(v) || json_array_size(v) != t->shape[depth])
        return fail(j, 422, "invalid_tensor", path,
                    json_is_array(v)
                        ? "%s has %zu elements but its siblings have %zu (arrays "
                          "must be rectangular)"
                        : "%s is not an array but its siblings are arrays of %zu "
                          "(arrays must be rectangular)",
                    path, json_is_array(v) ? json_array_size(v) : t->shape[depth],
                    t->shape[depth]);
    for (size_t i = 0; i < t->shape[depth]; i++) {
        srv_pointer_push_index(path, PTR_MAX, i);
        if (nested_fill(j, json_array_get(v, i), t, depth + 1, dst, path)) return -1;
        path[mark] = '\0';
    }
    return 0;
}

/* A flat list of numbers: a lifted array of rank 1 or a jansson array.  Used for
 * tensor data, shapes and vector parameters. */
static int numbers(srv_job *j, const json_t *v, const char *path, double **out, size_t *n)
{
    if (json_is_string(v)) {
        const srv_lifted *l =
            srv_scan_lookup(&j->scan, json_string_value(v), json_string_length(v));
        if (l) {
            if (l->rank != 1)
                return fail(j, 422, "invalid_tensor", path,
                            "%s must be a flat array of numbers", path);
            *out = j->scan.values + l->offset;
            *n = l->count;
            return 0;
        }
    }
    if (!json_is_array(v))
        return fail(j, 422, "invalid_field", path,
                    "%s must be an array of numbers, not %s", path, json_type_name(v));
    size_t len = json_array_size(v);
    double *d = own(j, len);
    if (!d) return fail(j, 500, "internal_error", path, "out of memory");
    for (size_t i = 0; i < len; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_number(e)) {
            char p[PTR_MAX];
            snprintf(p, sizeof p, "%s", path);
            srv_pointer_push_index(p, sizeof p, i);
            return fail(j, 422, "invalid_tensor", p, "%s is %s but must be a number", p,
                        json_type_name(e));
        }
        d[i] = json_number_value(e);
    }
    *out = d;
    *n = len;
    return 0;
}

static const char *const dtype_names[] = {"float64", "float32", "int64", "int32", NULL};

/* The SRV_DTYPE_* a tensor object's "dtype" names: float64 when there is none,
 * -1 when it names none of dtype_names. */
static int dtype_of(const json_t *dtype)
{
    if (!dtype) return SRV_DTYPE_FLOAT64;
    for (int i = 0; json_is_string(dtype) && dtype_names[i]; i++)
        if (!strcmp(json_string_value(dtype), dtype_names[i])) return i;
    return -1;
}

/* Applies a tensor object's dtype to its (writable) data. */
static int apply_dtype(srv_job *j, double *d, size_t n, int dtype, const char *path)
{
    for (size_t i = 0; i < n; i++) {
        double v = d[i];
        if (dtype == SRV_DTYPE_FLOAT32) {
            float f = (float)v;
            if (!isfinite(f)) goto bad;
            d[i] = (double)f;
        } else if (dtype == SRV_DTYPE_INT64 || dtype == SRV_DTYPE_INT32) {
            double lim = dtype == SRV_DTYPE_INT32 ? 2147483648.0 : 9223372036854775808.0;
            if (floor(v) != v || v < -lim || v >= lim) goto bad;
        }
        continue;
    bad : {
        char p[PTR_MAX];
        snprintf(p, sizeof p, "%s/data", path);
        srv_pointer_push_index(p, sizeof p, i);
        return fail(j, 422, "invalid_tensor", p, "%s = %.17g is not a valid %s value", p,
                    v, dtype_names[dtype]);
    }
    }
    return 0;
}

static const size_t dtype_size[] = {8, 4, 8, 4};

/* The bytes of a binary tensor as doubles (little-endian), checked against the
 * dtype as JSON data is. */
static int binary_data(srv_job *j, srv_binref *b, size_t n, int dtype, double **out,
                       const char *path)
{
    const unsigned char *src = (const unsigned char *)j->body + j->json_len + b->offset;
    /* float64 aligned in the body: no copy. */
    if (dtype == SRV_DTYPE_FLOAT64 && ((uintptr_t)src % sizeof(double)) == 0) {
        *out = (double *)(uintptr_t)src;
        return 0;
    }
    double *d = own(j, n);
    if (!d) return fail(j, 500, "internal_error", path, "out of memory");
    switch (dtype) {
    case SRV_DTYPE_FLOAT64:
        memcpy(d, src, n * 8);
        break;
    case SRV_DTYPE_FLOAT32:
        loss_widen_f32(d, src, n);
        break;
    case SRV_DTYPE_INT64:
        for (size_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, src + 8 * i, 8);
            if (v > ((int64_t)1 << 53) || v < -((int64_t)1 << 53)) /* no JSON element to
                point at: the pointer names the tensor object, the message its element */
                return fail(j, 422, "invalid_tensor", path,
                            "%s: element %zu of the binary data, %lld, is not exactly "
                            "representable as a double",
                            path, i, (long long)v);
            d[i] = (double)v;
        }
        break;
    case SRV_DTYPE_INT32:
        srv_widen_int32(d, src, n);
        break;
    }
    *out = d;
    return 0;
}

/* An index (a jansson object, a hash table) of key -> i, made on first use:
 * binary tensors by path (j->bin_index), tasks by name (j->task_index), so that
 * a request of many costs linear time.  1 when key was there already (*was: its
 * index), -1 out of memory. */
static int index_add(void **index, const char *key, size_t i, size_t *was)
{
    if (!*index && !(*index = json_object())) return -1;
    const json_t *old = json_object_get(*index, key);
    if (old) {
        *was = (size_t)json_integer_value(old);
        return 1;
    }
    return json_object_set_new(*index, key, json_integer((json_int_t)i)) ? -1 : 0;
}

static srv_binref *find_binary(srv_job *j, const char *path)
{
    const json_t *v = j->bin_index ? json_object_get(j->bin_index, path) : NULL;
    return v ? &j->bins[json_integer_value(v)] : NULL;
}

/* keep_f32: binary float32 data stays as it is in the body (a loss input: the
 * core widens it block by block). */
static int tensor_object(srv_job *j, const json_t *v, const char *path, loss_tensor *t,
                         srv_form *form, int keep_f32)
{
    const char *key;
    json_t *val;
    char p[PTR_MAX];
    json_object_foreach((json_t *)v, key, val)
    {
        if (strcmp(key, "shape") && strcmp(key, "data") && strcmp(key, "dtype") &&
            strcmp(key, "binary_data_size")) {
            snprintf(p, sizeof p, "%s", path);
            srv_pointer_push(p, sizeof p, key, strlen(key));
            return fail(
                j, 422, "unknown_field", p,
                "%s is not a field of a tensor object (shape, data or binary_data_size, "
                "dtype)",
                p);
        }
    }
    const json_t *shape = json_object_get(v, "shape"), *data = json_object_get(v, "data");
    const json_t *dtype = json_object_get(v, "dtype");
    const json_t *bsize = json_object_get(v, "binary_data_size");
    if (data && bsize) {
        join(p, path, "/binary_data_size");
        return fail(j, 422, "conflicting_parameters", p,
                    "%s: a tensor has \"data\" or \"binary_data_size\", not both", p);
    }
    if (!shape || (!data && !bsize)) {
        join(p, path, shape ? "/data" : "/shape");
        return fail(j, 422, "missing_field", p, "a tensor object needs %s", p);
    }
    form->object = 1;
    form->binary = bsize != NULL;
    form->dtype = dtype_of(dtype);
    if (form->dtype < 0) {
        join(p, path, "/dtype");
        return fail(j, 422, "invalid_tensor", p,
                    "%s must be \"float64\", \"float32\", \"int64\" or \"int32\"", p);
    }
    double *dims, *values;
    size_t rank, n;
    join(p, path, "/shape");
    if (numbers(j, shape, p, &dims, &rank)) return -1;
    if (rank > LOSS_MAX_RANK)
        return fail(j, 422, "invalid_tensor", p, "%s has %zu dimensions, at most %d", p,
                    rank, LOSS_MAX_RANK);
    t->rank = rank;
    size_t want = 1;
    for (size_t i = 0; i < rank; i++) {
        if (!(dims[i] >= 0 && floor(dims[i]) == dims[i]))
            return fail(j, 422, "invalid_tensor", p,
                        "%s must hold non-negative integers, found %.17g", p, dims[i]);
        if (dims[i] > 9.0e15) /* more than 2^53 elements: more than memory holds */
            return fail(j, 413, "too_many_elements", p, "%s describes too many elements",
                        p);
        t->shape[i] = (size_t)dims[i];
        if (t->shape[i] && want > SIZE_MAX / t->shape[i])
            return fail(j, 413, "too_many_elements", p, "%s describes too many elements",
                        p);
        want *= t->shape[i];
    }
    if (bsize) {
        join(p, path, "/binary_data_size");
        srv_binref *b = find_binary(j, path);
        if (!b)
            return fail(
                j, 400, "invalid_binary_framing", p,
                "%s: binary tensors need the Inference-Header-Content-Length header", p);
        b->used = 1;
        if (want > SIZE_MAX / 8 || b->size != want * dtype_size[form->dtype])
            return fail(j, 400, "invalid_binary_framing", p,
                        "%s is %zu but shape %s of %s needs %zu bytes", p, b->size,
                        shape_str(t).s, dtype_names[form->dtype],
                        want * dtype_size[form->dtype]);
        if (count_elements(j, want, p)) return -1;
        if (keep_f32 && form->dtype == SRV_DTYPE_FLOAT32) {
            t->f32 = j->body + j->json_len + b->offset;
            return 0;
        }
        if (binary_data(j, b, want, form->dtype, &values, path)) return -1;
        t->data = values;
        return 0;
    }
    join(p, path, "/data");
    if (numbers(j, data, p, &values, &n)) return -1;
    if (n != want)
        return fail(j, 422, "invalid_tensor", p,
                    "%s has %zu numbers but shape %s says %zu", p, n, shape_str(t).s,
                    want);
    if (count_elements(j, n, p)) return -1;
    t->data = values;
    if (form->dtype != SRV_DTYPE_FLOAT64 && apply_dtype(j, values, n, form->dtype, path))
        return -1;
    return 0;
}

/* The value at a JSON Pointer of the DOM (placeholders are leaves), or NULL. */
static const json_t *resolve(const json_t *root, const char *ptr)
{
    const json_t *v = root;
    while (v && *ptr == '/') {
        char tok[256];
        size_t n = 0;
        ptr++;
        while (*ptr && *ptr != '/' && n + 1 < sizeof tok) {
            if (ptr[0] == '~' && (ptr[1] == '0' || ptr[1] == '1')) {
                tok[n++] = ptr[1] == '0' ? '~' : '/';
                ptr += 2;
            } else {
                tok[n++] = *ptr++;
            }
        }
        tok[n] = '\0';
        if (json_is_object(v)) {
            v = json_object_get(v, tok);
        } else if (json_is_array(v)) {
            char *end;
            unsigned long long i = strtoull(tok, &end, 10);
            v = *tok && !*end ? json_array_get(v, (size_t)i) : NULL;
        } else {
            v = NULL;
        }
    }
    return v;
}

/* The bytes a tensor object's shape and dtype call for, into *bytes, with the
 * shape into *t and the dtype into *dtype; -1 when they do not say (not a flat
 * shape of non-negative integers, an unknown dtype, too many bytes):
 * tensor_object then says what is wrong with them. */
static int tensor_bytes(const srv_job *j, const json_t *obj, size_t *bytes,
                        loss_tensor *t, int *dtype)
{
    const json_t *shape = json_object_get(obj, "shape");
    if ((*dtype = dtype_of(json_object_get(obj, "dtype"))) < 0) return -1;
    double dims[LOSS_MAX_RANK];
    size_t rank = 0;
    const srv_lifted *l = json_is_string(shape)
                              ? srv_scan_lookup(&j->scan, json_string_value(shape),
                                                json_string_length(shape))
                              : NULL;
    if (l) { /* numeric arrays are lifted out of the DOM by the scanner */
        if (l->rank != 1 || l->count > LOSS_MAX_RANK) return -1;
        rank = l->count;
        memcpy(dims, j->scan.values + l->offset, rank * sizeof dims[0]);
    } else if (json_is_array(shape) && json_array_size(shape) <= LOSS_MAX_RANK) {
        for (rank = 0; rank < json_array_size(shape); rank++) {
            const json_t *dim = json_array_get(shape, rank);
            if (!json_is_number(dim)) return -1;
            dims[rank] = json_number_value(dim);
        }
    } else {
        return -1;
    }
    memset(t, 0, sizeof *t);
    size_t want = 1;
    for (size_t i = 0; i < rank; i++) {
        if (!(dims[i] >= 0 && dims[i] <= 9.0e15 && floor(dims[i]) == dims[i])) return -1;
        t->shape[i] = (size_t)dims[i];
        if (t->shape[i] && want > SIZE_MAX / 8 / t->shape[i]) return -1;
        want *= t->shape[i];
    }
    t->rank = rank;
    *bytes = want * dtype_size[*dtype];
    return 0;
}

/* Assigns the binary section to the tensors in the order their objects appear in
 * the text, and checks that the sizes add up: first each tensor's against its
 * shape and dtype (an error that names the tensor), then their total against the
 * bytes that follow the JSON. */
static int binary_section(srv_job *j, const json_t *root)
{
    size_t bin_len = j->len - j->json_len;
    if (!j->binary_header) {
        if (j->scan.n_binary)
            return fail(j, 400, "invalid_binary_framing", j->scan.binary_paths[0],
                        "%s has binary_data_size but the request has no "
                        "Inference-Header-Content-Length header",
                        j->scan.binary_paths[0]);
        return 0;
    }
    j->bins = calloc(j->scan.n_binary ? j->scan.n_binary : 1, sizeof *j->bins);
    if (!j->bins) return fail(j, 500, "internal_error", "", "out of memory");
    size_t offset = 0;
    for (size_t k = 0; k < j->scan.n_binary; k++) {
        const char *path = j->scan.binary_paths[k];
        const json_t *obj = resolve(root, path);
        const json_t *sz = json_object_get(obj, "binary_data_size");
        char p[PTR_MAX];
        join(p, path, "/binary_data_size");
        double d = json_is_number(sz) ? json_number_value(sz) : -1;
        if (!(d >= 0 && d <= 9.0e15 && floor(d) == d))
            return fail(j, 400, "invalid_binary_framing", p, "%s must be a byte count",
                        p);
        size_t size = (size_t)d, want;
        loss_tensor t;
        int dt;
        if (!tensor_bytes(j, obj, &want, &t, &dt) && size != want)
            return fail(j, 400, "invalid_binary_framing", p,
                        "%s is %zu but shape %s of %s needs %zu bytes", p, size,
                        shape_str(&t).s, dtype_names[dt], want);
        if (size > bin_len - offset)
            return fail(
                j, 400, "invalid_binary_framing", p,
                "%s: the tensors so far need %zu bytes after the JSON but only %zu "
                "follow it",
                p, offset + size, bin_len);
        size_t was;
        int rc = index_add(&j->bin_index, path, j->n_bins, &was);
        if (rc < 0) return fail(j, 500, "internal_error", "", "out of memory");
        j->bins[j->n_bins++] = (srv_binref){path, offset, size, 0};
        offset += size;
    }
    if (offset != bin_len)
        return fail(j, 400, "invalid_binary_framing", "",
                    "the binary tensors take %zu bytes but %zu follow the JSON "
                    "(Inference-Header-Content-Length %zu of a %zu-byte body)",
                    offset, bin_len, j->json_len, j->len);
    return 0;
}

/* Any tensor: a number, nested arrays (lifted or not) or a tensor object. */
static int tensor(srv_job *j, const json_t *v, const char *path, loss_tensor *t,
                  srv_form *form, int keep_f32)
{
    memset(t, 0, sizeof *t);
    memset(form, 0, sizeof *form);
    if (json_is_number(v)) {
        double *d = own(j, 1);
        if (!d) return fail(j, 500, "internal_error", path, "out of memory");
        *d = json_number_value(v);
        t->data = d;
        return count_elements(j, 1, path);
    }
    if (json_is_object(v)) return tensor_object(j, v, path, t, form, keep_f32);
    if (json_is_string(v)) {
        const srv_lifted *l =
            srv_scan_lookup(&j->scan, json_string_value(v), json_string_length(v));
        if (l) {
            t->data = j->scan.values + l->offset;
            t->rank = l->rank;
            memcpy(t->shape, l->shape, sizeof t->shape);
            return count_elements(j, l->count, path);
        }
    }
    if (!json_is_array(v))
        return fail(j, 422, "invalid_tensor", path,
                    "%s is %s but must be a number, nested arrays of numbers or a tensor "
                    "object {\"shape\", \"data\"}",
                    path, json_type_name(v));
    if (nested_shape(j, v, t, path)) return -1;
    size_t n = loss_tensor_size(t);
    char p[PTR_MAX];
    snprintf(p, sizeof p, "%s", path);
    /* The shape is read from the first element at each level: more numbers than
     * the body has bytes means the arrays are ragged, which the check says where. */
    if (n > j->len && nested_fill(j, v, t, 0, NULL, p)) return -1;
    if (count_elements(j, n, path)) return -1;
    double *d = own(j, n), *dst = d;
    if (!d) return fail(j, 500, "internal_error", path, "out of memory");
    if (nested_fill(j, v, t, 0, &dst, p)) return -1;
    t->data = d;
    return 0;
}

/* ---- core errors to JSON Pointers ---- */

/* Appends the pointer of flat element k of a tensor in its form. */
static void element_path(char *p, const loss_tensor *t, const srv_form *f, long long k)
{
    if (k < 0 || t->rank == 0) return;
    if (f->binary)
        return; /* no JSON element to point at: the tensor object (the
                   message gives the index) */
    if (f->object) {
        srv_pointer_push(p, PTR_MAX, "data", 4);
        srv_pointer_push_index(p, PTR_MAX, (size_t)k);
        return;
    }
    size_t idx[LOSS_MAX_RANK], flat = (size_t)k;
    for (size_t d = t->rank; d-- > 0;) {
        size_t dim = t->shape[d] ? t->shape[d] : 1;
        idx[d] = flat % dim;
        flat /= dim;
    }
    for (size_t d = 0; d < t->rank; d++) srv_pointer_push_index(p, PTR_MAX, idx[d]);
}

void srv_core_error(srv_job *j, const srv_task *t, const loss_error *e)
{
    char p[PTR_MAX];
    snprintf(p, sizeof p, "%s", t ? t->prefix : "");
    int status = 422;
    const char *code = loss_status_code(e->code);
    if (e->code == LOSS_ENOMEM || e->code == LOSS_EINVAL) {
        status = 500;
        code = "internal_error";
    }
    switch (e->where) {
    case LOSS_AT_PARAM:
        srv_pointer_push(p, sizeof p, "loss", 4);
        srv_pointer_push(p, sizeof p, e->name, strlen(e->name));
        if (e->index >= 0) srv_pointer_push_index(p, sizeof p, (size_t)e->index);
        break;
    case LOSS_AT_INPUT: {
        srv_pointer_push(p, sizeof p, "inputs", 6);
        srv_pointer_push(p, sizeof p, e->name, strlen(e->name));
        int i = t && t->spec.desc ? loss_input_index(t->spec.desc, e->name) : -1;
        if (i >= 0) element_path(p, &t->in[i], &t->form[i], e->index);
        break;
    }
    case LOSS_AT_WEIGHTS:
        srv_pointer_push(p, sizeof p, "weights", 7);
        if (t) element_path(p, &t->weights, &t->wform, e->index);
        break;
    case LOSS_AT_REDUCTION:
        srv_pointer_push(p, sizeof p, "reduction", 9);
        break;
    case LOSS_AT_NONE:
        break;
    }
    srv_error_set(&j->err, status, code, p, "%s%s%s", t && t->name ? "task " : "",
                  t && t->name ? t->name : "", t && t->name ? ": " : "");
    size_t used = strlen(j->err.message);
    snprintf(j->err.message + used, sizeof j->err.message - used, "%s", e->message);
    j->failed = 1;
}

/* ---- loss specs ---- */

static int spec(srv_job *j, srv_task *t, const json_t *loss)
{
    char p[PTR_MAX];
    loss_error e;
    join(p, t->prefix, "/loss");
    if (!loss)
        return fail(j, 422, "missing_field", p, "%s is missing: give a loss name", p);
    const char *name = NULL;
    if (json_is_string(loss)) {
        name = json_string_value(loss);
    } else if (json_is_object(loss)) {
        const json_t *n = json_object_get(loss, "name");
        join(p, t->prefix, "/loss/name");
        if (!n) return fail(j, 422, "missing_field", p, "%s is missing", p);
        if (!json_is_string(n))
            return fail(j, 422, "invalid_field", p, "%s must be a string", p);
        name = json_string_value(n);
    } else {
        return fail(j, 422, "invalid_field", p,
                    "%s must be a loss name or an object with \"name\" and parameters",
                    p);
    }
    if (loss_spec_init(&t->spec, name, &e)) {
        srv_error_set(&j->err, 422, loss_status_code(e.code), p, "%s", e.message);
        j->failed = 1;
        return -1;
    }
    if (!json_is_object(loss)) return 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)loss, key, v)
    {
        if (!strcmp(key, "name")) continue;
        int rc;
        const char *str = json_is_string(v) ? json_string_value(v) : NULL;
        int lifted = str && srv_scan_lookup(&j->scan, str, json_string_length(v));
        if (loss_param_index(t->spec.desc, key) < 0) {
            rc = loss_spec_set_number(&t->spec, key, 0, &e); /* unknown_parameter */
        } else if (json_is_number(v)) {
            rc = loss_spec_set_number(&t->spec, key, json_number_value(v), &e);
        } else if (json_is_boolean(v)) {
            rc = loss_spec_set_bool(&t->spec, key, json_is_true(v), &e);
        } else if (json_is_null(v)) {
            rc = loss_spec_set_none(&t->spec, key, &e);
        } else if (str && !lifted) {
            rc = loss_spec_set_string(&t->spec, key, str, &e);
        } else if (json_is_array(v) || lifted) {
            double *d;
            size_t n;
            join(p, t->prefix, "/loss");
            srv_pointer_push(p, sizeof p, key, strlen(key));
            if (numbers(j, v, p, &d, &n)) return -1;
            rc = loss_spec_set_vector(&t->spec, key, d, n, &e);
        } else {
            join(p, t->prefix, "/loss");
            srv_pointer_push(p, sizeof p, key, strlen(key));
            return fail(j, 422, "invalid_parameter", p,
                        "parameter %s cannot be an object", key);
        }
        if (rc) {
            srv_core_error(j, t, &e);
            return -1;
        }
    }
    return 0;
}

/* ---- fields ---- */

static int check_fields(srv_job *j, const json_t *obj, const char *const *allowed,
                        const char *prefix, const char *what)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        int ok = 0;
        for (size_t i = 0; allowed[i] && !ok; i++) ok = !strcmp(key, allowed[i]);
        if (ok) continue;
        char p[PTR_MAX], list[160] = "";
        snprintf(p, sizeof p, "%s", prefix);
        srv_pointer_push(p, sizeof p, key, strlen(key));
        size_t used = 0;
        for (size_t i = 0; allowed[i] && used < sizeof list; i++) {
            int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                             allowed[i]);
            if (w > 0) used += (size_t)w;
        }
        return fail(j, 422, "unknown_field", p, "%s is not a field of %s (known: %s)", p,
                    what, list);
    }
    return 0;
}

static int outputs(srv_job *j, const json_t *v, const char *const *names,
                   const unsigned *bits, unsigned def)
{
    j->outputs = def;
    if (!v) return 0;
    char p[PTR_MAX] = "/outputs";
    if (!json_is_array(v))
        return fail(j, 422, "invalid_field", p, "/outputs must be an array of strings");
    j->outputs = 0;
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *e = json_array_get(v, i);
        size_t k = 0;
        while (names[k] &&
               !(json_is_string(e) && !strcmp(json_string_value(e), names[k])))
            k++;
        if (!names[k]) {
            snprintf(p, sizeof p, "/outputs/%zu", i);
            char list[96] = "";
            size_t used = 0;
            for (size_t m = 0; names[m]; m++) {
                int w = snprintf(list + used, sizeof list - used, "%s\"%s\"",
                                 m ? ", " : "", names[m]);
                if (w > 0) used += (size_t)w;
            }
            return fail(j, 422, "invalid_field", p, "%s must be one of %s", p, list);
        }
        j->outputs |= bits[k];
    }
    return 0;
}

/* An array of objects given as numbers ("tasks": [1]) is lifted by the scanner
 * like any array of numbers, and looks like a string here: the error is at its
 * first element, as for any other element that is not an object. */
static int numbers_not_objects(srv_job *j, const json_t *v, const char *path,
                               const char *what)
{
    const srv_lifted *a =
        json_is_string(v)
            ? srv_scan_lookup(&j->scan, json_string_value(v), json_string_length(v))
            : NULL;
    if (!a || a->count == 0) return 0;
    char p[PTR_MAX];
    join(p, path, "/0");
    return fail(j, 422, "invalid_field", p, "%s must be an object (%s)", p, what);
}

/* The fields a /v1/loss body and an objective task share. */
static int task(srv_job *j, srv_task *t, const json_t *obj)
{
    char p[PTR_MAX];
    if (spec(j, t, json_object_get(obj, "loss"))) return -1;
    const loss_desc *d = t->spec.desc;
    const json_t *inputs = json_object_get(obj, "inputs");
    join(p, t->prefix, "/inputs");
    if (!inputs)
        return fail(j, 422, "missing_field", p, "%s is missing: %s needs %zu inputs", p,
                    d->name, d->n_inputs);
    if (!json_is_object(inputs))
        return fail(j, 422, "invalid_field", p, "%s must be an object of named tensors",
                    p);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)inputs, key, v)
    {
        size_t ix;
        loss_error e;
        if (loss_input_bind(d, key, &ix, &e)) {
            srv_core_error(j, t, &e);
            return -1;
        }
        join(p, t->prefix, "/inputs");
        srv_pointer_push(p, sizeof p, key, strlen(key));
        if (tensor(j, v, p, &t->in[ix], &t->form[ix], 1)) return -1;
    }
    const json_t *w = optional(obj, "weights");
    if (w) {
        join(p, t->prefix, "/weights");
        if (tensor(j, w, p, &t->weights, &t->wform, 0)) return -1;
        t->has_weights = 1;
    }
    const json_t *red = optional(obj, "reduction");
    t->reduction = LOSS_MEAN;
    if (red) {
        join(p, t->prefix, "/reduction");
        const char *r = json_is_string(red) ? json_string_value(red) : "";
        if (!strcmp(r, "sum"))
            t->reduction = LOSS_SUM;
        else if (strcmp(r, "mean"))
            return fail(j, 422, "invalid_field", p, "%s must be \"mean\" or \"sum\"", p);
    }
    return 0;
}

/* The memory for input in's double gradient: the input's own doubles, which the
 * core may overwrite (loss.h), so that a gradient costs no memory of its own;
 * but not numbers lifted from JSON when the gradient goes out as binary data,
 * which would then be copied out of the scanner's buffer. */
static double *grad_memory(srv_job *j, const loss_tensor *in, size_t n)
{
    const double *v = j->scan.values;
    int lifted = v && in->data >= v && in->data < v + j->scan.n_values;
    if (in->data && !(j->binary_out && lifted)) return (double *)(uintptr_t)in->data;
    return own(j, n);
}

static int plan(srv_job *j, srv_task *t, double grad_factor)
{
    loss_error e;
    if (loss_plan_init(&t->plan, &t->spec, t->in, t->has_weights ? &t->weights : NULL,
                       t->reduction, &e)) {
        srv_core_error(j, t, &e);
        return -1;
    }
    t->planned = 1;
    loss_plan_scale_gradients(&t->plan, grad_factor);
    t->unit0 = j->n_units;
    j->n_units += t->plan.n_blocks;
    /* Binary float32 results are written as float32 by the core, a block at a
     * time: no double copy of them.  A gradient is written over its own input
     * (which the core allows), so it costs no memory of its own: a binary float32
     * one over that input in the body (the body then goes out with the
     * response), a double one over the input's doubles (grad_memory). */
    if (j->outputs & SRV_OUT_LOSSES) {
        size_t n = t->plan.n_terms;
        if (j->binary_out && t->form[0].dtype == SRV_DTYPE_FLOAT32)
            t->out.losses_f32 = own_bytes(j, n * 4);
        else
            t->out.losses = own(j, n);
        if (!t->out.losses && !t->out.losses_f32)
            return fail(j, 500, "internal_error", "", "out of memory");
    }
    if (j->outputs & SRV_OUT_GRADIENTS) {
        for (size_t i = 0; i < t->spec.desc->n_inputs; i++) {
            if (!t->spec.desc->inputs[i].differentiable) continue;
            size_t n = t->plan.input_size[i];
            if (j->binary_out && t->form[i].dtype == SRV_DTYPE_FLOAT32)
                t->out.grads_f32[i] =
                    t->in[i].f32 ? (void *)t->in[i].f32 : own_bytes(j, n * 4);
            else
                t->out.grads[i] = grad_memory(j, &t->in[i], n);
            if (!t->out.grads[i] && !t->out.grads_f32[i])
                return fail(j, 500, "internal_error", "", "out of memory");
        }
    }
    return 0;
}

static const char *const loss_fields[] = {
    "loss", "inputs", "weights", "reduction", "outputs", "binary_outputs", NULL};
static const char *const task_fields[] = {"name",      "loss",   "inputs", "weights",
                                          "reduction", "weight", NULL};
static const char *const objective_fields[] = {
    "tasks", "weighting", "regularization", "outputs", "binary_outputs", NULL};
static const char *const weighting_fields[] = {"scheme", "log_sigma", "log_variance",
                                               NULL};

static int decode_loss(srv_job *j, const json_t *root)
{
    static const char *const names[] = {"cost", "losses", "gradients", "metrics", NULL};
    static const unsigned bits[] = {SRV_OUT_COST, SRV_OUT_LOSSES, SRV_OUT_GRADIENTS,
                                    SRV_OUT_METRICS};
    if (check_fields(j, root, loss_fields, "", "a /v1/loss request")) return -1;
    if (outputs(j, optional(root, "outputs"), names, bits,
                SRV_OUT_COST | SRV_OUT_GRADIENTS))
        return -1;
    j->tasks = calloc(1, sizeof *j->tasks);
    if (!j->tasks) return fail(j, 500, "internal_error", "", "out of memory");
    j->n_tasks = 1;
    if (task(j, &j->tasks[0], root)) return -1;
    return plan(j, &j->tasks[0], 1.0);
}

static int weighting(srv_job *j, const json_t *w)
{
    char p[PTR_MAX] = "/weighting";
    j->scheme = LOSS_WEIGHTING_FIXED;
    if (!w) return 0;
    j->weighting_given = 1;
    if (!json_is_object(w))
        return fail(j, 422, "invalid_field", p, "/weighting must be an object");
    if (check_fields(j, w, weighting_fields, "/weighting", "weighting")) return -1;
    const json_t *scheme = json_object_get(w, "scheme");
    const json_t *ls = json_object_get(w, "log_sigma"),
                 *lv = json_object_get(w, "log_variance");
    const char *sc = json_is_string(scheme) ? json_string_value(scheme) : NULL;
    if (!scheme)
        return fail(j, 422, "missing_field", "/weighting/scheme",
                    "/weighting/scheme is missing: \"fixed\" or \"uncertainty\"");
    if (!sc || (strcmp(sc, "fixed") && strcmp(sc, "uncertainty")))
        return fail(j, 422, "invalid_field", "/weighting/scheme",
                    "/weighting/scheme must be \"fixed\" or \"uncertainty\"");
    if (!strcmp(sc, "fixed")) {
        if (ls || lv)
            return fail(
                j, 422, "conflicting_parameters",
                ls ? "/weighting/log_sigma" : "/weighting/log_variance",
                "the fixed scheme takes each task's \"weight\", not learned log-sigmas");
        return 0;
    }
    if (!ls && !lv)
        return fail(j, 422, "missing_parameter", "/weighting",
                    "the uncertainty scheme needs \"log_sigma\" or \"log_variance\"");
    if (ls && lv)
        return fail(j, 422, "conflicting_parameters", "/weighting/log_variance",
                    "give \"log_sigma\" or \"log_variance\", not both");
    j->scheme = ls ? LOSS_WEIGHTING_LOG_SIGMA : LOSS_WEIGHTING_LOG_VARIANCE;
    snprintf(p, sizeof p, "/weighting/%s", ls ? "log_sigma" : "log_variance");
    double *s;
    size_t n;
    if (numbers(j, ls ? ls : lv, p, &s, &n)) return -1;
    if (n != j->n_tasks)
        return fail(j, 422, "shape_mismatch", p,
                    "%s has %zu values but there are %zu tasks", p, n, j->n_tasks);
    for (size_t i = 0; i < n; i++) {
        if (j->tasks[i].has_weight) {
            char q[PTR_MAX];
            snprintf(q, sizeof q, "/tasks/%zu/weight", i);
            return fail(j, 422, "conflicting_parameters", q,
                        "%s: tasks carry no weight under uncertainty weighting", q);
        }
        j->tasks[i].weight = s[i];
    }
    return 0;
}

static int penalty(srv_job *j, srv_penalty *pen, const json_t *obj, size_t k)
{
    char p[PTR_MAX];
    loss_error e;
    snprintf(p, sizeof p, "/regularization/%zu", k);
    if (!json_is_object(obj))
        return fail(j, 422, "invalid_field", p, "%s must be an object", p);
    const json_t *kind = json_object_get(obj, "kind"),
                 *params = json_object_get(obj, "params");
    snprintf(p, sizeof p, "/regularization/%zu/kind", k);
    if (!kind)
        return fail(j, 422, "missing_field", p, "%s is missing: l2, l1 or elastic_net",
                    p);
    if (!json_is_string(kind))
        return fail(j, 422, "invalid_field", p, "%s must be a string", p);
    if (loss_penalty_init(&pen->pen, json_string_value(kind), &e)) {
        srv_error_set(&j->err, 422, loss_status_code(e.code), p, "%s", e.message);
        j->failed = 1;
        return -1;
    }
    loss_param_set ps = loss_penalty_params(&pen->pen);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        if (!strcmp(key, "kind") || !strcmp(key, "params")) continue;
        int rc;
        if (json_is_number(v))
            rc = loss_params_set_number(&ps, key, json_number_value(v), &e);
        else if (json_is_string(v))
            rc = loss_params_set_string(&ps, key, json_string_value(v), &e);
        else if (json_is_null(v))
            rc = loss_params_set_none(&ps, key, &e);
        else if (json_is_boolean(v))
            rc = loss_params_set_bool(&ps, key, json_is_true(v), &e);
        else /* no penalty parameter is an array: a type error, or unknown_parameter */
            rc = loss_params_set_vector(&ps, key, NULL, 0, &e);
        if (rc) goto core;
    }
    snprintf(p, sizeof p, "/regularization/%zu/params", k);
    if (!params)
        return fail(j, 422, "missing_field", p,
                    "%s is missing: the parameters to penalise", p);
    if (tensor(j, params, p, &pen->params, &pen->form, 0)) return -1;
    if (loss_penalty_resolve(&pen->pen, &e)) goto core;
    return 0;
core:
    snprintf(p, sizeof p, "/regularization/%zu", k);
    srv_pointer_push(p, sizeof p, e.name, strlen(e.name));
    if (e.index >= 0) element_path(p, &pen->params, &pen->form, e.index);
    srv_error_set(&j->err, 422, loss_status_code(e.code), p, "regularization[%zu]: %s", k,
                  e.message);
    j->failed = 1;
    return -1;
}

void srv_weighting_error(srv_job *j, const loss_error *e)
{
    if (e->code == LOSS_ENOMEM) {
        fail(j, 500, "internal_error", "", "out of memory");
        return;
    }
    char p[PTR_MAX] = ""; /* the data term as a whole */
    if (e->index >= 0 && j->scheme == LOSS_WEIGHTING_FIXED)
        snprintf(p, sizeof p, "/tasks/%lld/weight", e->index);
    else if (e->index >= 0)
        snprintf(p, sizeof p, "/weighting/%s/%lld", e->name, e->index);
    fail(j, 422, loss_status_code(e->code), p, "%s", e->message);
}

void srv_penalty_error(srv_job *j, const srv_penalty *pen, size_t k, const loss_error *e)
{
    char p[PTR_MAX];
    snprintf(p, sizeof p, "/regularization/%zu", k);
    srv_pointer_push(p, sizeof p, e->name, strlen(e->name));
    if (e->index >= 0) element_path(p, &pen->params, &pen->form, e->index);
    srv_error_set(&j->err, 422, loss_status_code(e->code), p, "regularization[%zu]: %s",
                  k, e->message);
    j->failed = 1;
}

/* Tasks and penalties of one objective, at most: each takes a few KB of
 * bookkeeping (plan, DOM, names) whatever its size, so 64 MiB of tiny tasks
 * would take some 4 GB. */
#define MAX_TASKS     10000
#define MAX_PENALTIES 10000

static int decode_objective(srv_job *j, const json_t *root)
{
    static const char *const names[] = {"objective", "gradients", "losses", NULL};
    static const unsigned bits[] = {SRV_OUT_OBJECTIVE, SRV_OUT_GRADIENTS, SRV_OUT_LOSSES};
    if (check_fields(j, root, objective_fields, "", "a /v1/objective request")) return -1;
    if (outputs(j, optional(root, "outputs"), names, bits,
                SRV_OUT_OBJECTIVE | SRV_OUT_GRADIENTS))
        return -1;
    const json_t *tasks = json_object_get(root, "tasks");
    if (!tasks) return fail(j, 422, "missing_field", "/tasks", "/tasks is missing");
    if (numbers_not_objects(j, tasks, "/tasks", "a task")) return -1;
    if (!json_is_array(tasks) || json_array_size(tasks) == 0)
        return fail(j, 422, "invalid_field", "/tasks",
                    "/tasks must be a non-empty array of tasks");
    if (json_array_size(tasks) > MAX_TASKS)
        return fail(j, 413, "too_many_elements", "/tasks",
                    "/tasks has %zu tasks, more than %d", json_array_size(tasks),
                    MAX_TASKS);
    j->n_tasks = json_array_size(tasks);
    j->tasks = calloc(j->n_tasks, sizeof *j->tasks);
    if (!j->tasks) return fail(j, 500, "internal_error", "", "out of memory");
    for (size_t i = 0; i < j->n_tasks; i++) {
        srv_task *t = &j->tasks[i];
        const json_t *obj = json_array_get(tasks, i);
        snprintf(t->prefix, sizeof t->prefix, "/tasks/%zu", i);
        if (!json_is_object(obj))
            return fail(j, 422, "invalid_field", t->prefix, "%s must be an object",
                        t->prefix);
        if (check_fields(j, obj, task_fields, t->prefix, "a task")) return -1;
        char p[PTR_MAX];
        const json_t *name = json_object_get(obj, "name");
        join(p, t->prefix, "/name");
        if (!name)
            return fail(j, 422, "missing_field", p,
                        "%s is missing: every task has a name", p);
        if (!json_is_string(name))
            return fail(j, 422, "invalid_field", p, "%s must be a string", p);
        t->name = json_string_value(name);
        size_t was;
        int rc = index_add(&j->task_index, t->name, i, &was);
        if (rc < 0) return fail(j, 500, "internal_error", "", "out of memory");
        if (rc > 0)
            return fail(j, 422, "duplicate_task_name", p,
                        "%s: /tasks/%zu is already named \"%s\"", p, was, t->name);
        const json_t *w = optional(obj, "weight");
        t->weight = 1.0;
        if (w) {
            join(p, t->prefix, "/weight");
            if (!json_is_number(w) || !(json_number_value(w) >= 0))
                return fail(j, 422, "invalid_field", p, "%s must be a number >= 0", p);
            t->weight = json_number_value(w);
            t->has_weight = 1;
        }
        if (task(j, t, obj)) return -1;
    }
    if (weighting(j, optional(root, "weighting"))) return -1;
    /* Validate the weights before any work: the factors scale the gradients. */
    double *param = own(j, j->n_tasks), *zero = own(j, j->n_tasks);
    if (!param || !zero) return fail(j, 500, "internal_error", "", "out of memory");
    for (size_t i = 0; i < j->n_tasks; i++) {
        param[i] = j->tasks[i].weight;
        zero[i] = 0;
    }
    loss_weighting_out wo = {0};
    loss_error e;
    if (loss_weighting_eval(j->scheme, j->n_tasks, zero, param, &wo, &e)) {
        srv_weighting_error(j, &e);
        return -1;
    }
    const json_t *regs = optional(root, "regularization");
    if (regs && numbers_not_objects(j, regs, "/regularization", "a penalty")) return -1;
    if (regs && !json_is_array(regs))
        return fail(j, 422, "invalid_field", "/regularization",
                    "/regularization must be an array of penalties");
    if (regs && json_array_size(regs) > MAX_PENALTIES)
        return fail(j, 413, "too_many_elements", "/regularization",
                    "/regularization has %zu penalties, more than %d",
                    json_array_size(regs), MAX_PENALTIES);
    j->n_pens = regs ? json_array_size(regs) : 0;
    j->pens = calloc(j->n_pens ? j->n_pens : 1, sizeof *j->pens);
    if (!j->pens) return fail(j, 500, "internal_error", "", "out of memory");
    for (size_t k = 0; k < j->n_pens; k++)
        if (penalty(j, &j->pens[k], json_array_get(regs, k), k)) return -1;
    for (size_t i = 0; i < j->n_tasks; i++)
        if (plan(j, &j->tasks[i], loss_weighting_factor(j->scheme, j->tasks[i].weight)))
            return -1;
    return 0;
}

int srv_codec_decode(srv_job *j)
{
    if (srv_scan_finish(&j->scan, &j->err)) {
        j->failed = 1;
        return -1;
    }
    json_error_t je;
    /* JSON_ALLOW_NUL: only the scanner's placeholders can hold a NUL, since it
     * rejected NUL bytes and "\u0000" in the body's strings (all of them: see
     * scan.complete below). */
    json_t *root = json_loadb(j->scan.text, j->scan.text_len,
                              JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES |
                                  JSON_ALLOW_NUL | JSON_DECODE_ANY,
                              &je);
    if (!root) {
        int line, column;
        size_t at =
            srv_scan_original_offset(&j->scan, (size_t)je.position, &line, &column);
        return fail(j, 400, "malformed_json", "",
                    "the body is not valid JSON: %s (line %d, column %d, byte %zu)",
                    je.text, line, column, at);
    }
    if (!j->scan.complete) {
        /* jansson took a body the scanner could not walk to its end; the strings
         * the scanner did not see were not checked for "\u0000". */
        json_decref(root);
        return fail(j, 400, "malformed_json", "",
                    "the body is not valid JSON (the scanner stopped at byte %zu)",
                    j->scan.stop);
    }
    j->root = root;
    if (!json_is_object(root))
        return fail(j, 400, "invalid_request", "",
                    "the body must be a JSON object, not %s", json_type_name(root));
    if (j->ep == SRV_EP_AUTO)
        j->ep = json_object_get(root, "tasks") ? SRV_EP_OBJECTIVE : SRV_EP_LOSS;
    const json_t *bo = optional(root, "binary_outputs");
    if (bo && !json_is_boolean(bo))
        return fail(j, 422, "invalid_field", "/binary_outputs",
                    "/binary_outputs must be true or false");
    j->binary_out = json_is_true(bo);
    if (binary_section(j, root)) return -1;
    return j->ep == SRV_EP_LOSS ? decode_loss(j, root) : decode_objective(j, root);
}

void srv_codec_free(srv_job *j)
{
    for (size_t i = 0; i < j->n_owned; i++) srv_mem_free(j->owned[i]);
    /* (j->given belongs to the output: freed by srv_job_free or srv_output_free) */
    free(j->bins);
    j->bins = NULL;
    j->n_bins = 0;
    free(j->owned);
    j->owned = NULL;
    j->n_owned = j->cap_owned = 0;
    if (j->root) json_decref((json_t *)j->root);
    j->root = NULL;
    if (j->bin_index) json_decref((json_t *)j->bin_index);
    if (j->task_index) json_decref((json_t *)j->task_index);
    j->bin_index = j->task_index = NULL;
    srv_scan_free(&j->scan);
}
