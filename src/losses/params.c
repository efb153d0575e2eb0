/* params.c - setting and reading parameters through descriptor tables.
 *
 * A parameter descriptor names a field of a struct by offset (as FFmpeg's AVOption
 * does), so one set of setters validates and stores the parameters of every loss
 * and every penalty, and the catalog documents them from the same table. */
#include "loss_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const loss_param_desc *find(const loss_param_set *ps, const char *name, size_t *ix)
{
    for (size_t i = 0; i < ps->n_params; i++)
        if (strcmp(ps->params[i].name, name) == 0) {
            *ix = i;
            return &ps->params[i];
        }
    return NULL;
}

static double *num_field(const loss_param_set *ps, const loss_param_desc *d)
{
    return (double *)((char *)ps->base + d->offset);
}
static int *int_field(const loss_param_set *ps, const loss_param_desc *d)
{
    return (int *)((char *)ps->base + d->offset);
}
static loss_vec *vec_field(const loss_param_set *ps, const loss_param_desc *d)
{
    return (loss_vec *)((char *)ps->base + d->vec_offset);
}

static const char *type_name(loss_param_type t)
{
    switch (t) {
    case LOSS_PARAM_NUMBER:
        return "a number";
    case LOSS_PARAM_BOOL:
        return "a boolean";
    case LOSS_PARAM_ENUM:
        return "a string";
    case LOSS_PARAM_INTEGER:
        return "an integer";
    case LOSS_PARAM_VECTOR:
        return "an array of numbers";
    case LOSS_PARAM_NUMBER_OR_VECTOR:
        return "a number or an array of numbers";
    }
    return "?";
}

static int lookup(const loss_param_set *ps, const char *name, size_t *ix,
                  const loss_param_desc **out, loss_error *err)
{
    *out = find(ps, name, ix);
    if (*out) return 0;
    char list[160] = "";
    size_t used = 0;
    for (size_t i = 0; i < ps->n_params && used < sizeof list; i++) {
        int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                         ps->params[i].name);
        if (w > 0) used += (size_t)w;
    }
    return loss__fail(err, LOSS_EUNKNOWN_PARAM, LOSS_AT_PARAM, name, -1,
                      "unknown parameter \"%s\" (known: %s)", name,
                      ps->n_params ? list : "none");
}

static int wrong_type(const loss_param_desc *d, const char *got, loss_error *err)
{
    return loss__fail(err, LOSS_EPARAM_TYPE, LOSS_AT_PARAM, d->name, -1,
                      "parameter %s must be %s, got %s", d->name, type_name(d->type),
                      got);
}

static void mark(const loss_param_set *ps, size_t ix, int present)
{
    *ps->given |= 1u << ix;
    if (present)
        *ps->present |= 1u << ix;
    else
        *ps->present &= ~(1u << ix);
}

/* Writes the range of d as "> 0", ">= 0 and < 1", ... */
static void range_str(const loss_param_desc *d, char *buf, size_t len)
{
    int has_min = isfinite(d->min), has_max = isfinite(d->max);
    const char *lo = (d->flags & LOSS_MIN_EXCLUSIVE) ? ">" : ">=";
    const char *hi = (d->flags & LOSS_MAX_EXCLUSIVE) ? "<" : "<=";
    if (has_min && has_max)
        snprintf(buf, len, "%s %g and %s %g", lo, d->min, hi, d->max);
    else if (has_min)
        snprintf(buf, len, "%s %g", lo, d->min);
    else if (has_max)
        snprintf(buf, len, "%s %g", hi, d->max);
    else
        snprintf(buf, len, "finite");
}

static int in_range(const loss_param_desc *d, double v)
{
    if (!isfinite(v)) return 0;
    if ((d->flags & LOSS_MIN_EXCLUSIVE) ? !(v > d->min) : !(v >= d->min)) return 0;
    if ((d->flags & LOSS_MAX_EXCLUSIVE) ? !(v < d->max) : !(v <= d->max)) return 0;
    return 1;
}

/* Parameter ix back to its default, or to none where it has no default. */
static void reset(const loss_param_set *ps, size_t ix)
{
    const loss_param_desc *d = &ps->params[ix];
    if (d->type == LOSS_PARAM_VECTOR || d->type == LOSS_PARAM_NUMBER_OR_VECTOR)
        *vec_field(ps, d) = (loss_vec){NULL, 0};
    if (!d->has_default) {
        *ps->present &= ~(1u << ix);
        return;
    }
    if (d->type == LOSS_PARAM_BOOL || d->type == LOSS_PARAM_ENUM)
        *int_field(ps, d) = (int)d->def;
    else
        *num_field(ps, d) = d->def;
    *ps->present |= 1u << ix;
}

int loss_params_set_number(const loss_param_set *ps, const char *name, double v,
                           loss_error *err)
{
    size_t ix = 0;
    const loss_param_desc *d;
    int rc = lookup(ps, name, &ix, &d, err);
    if (rc) return rc;
    if (d->type != LOSS_PARAM_NUMBER && d->type != LOSS_PARAM_INTEGER &&
        d->type != LOSS_PARAM_NUMBER_OR_VECTOR)
        return wrong_type(d, "a number", err);
    if (d->type == LOSS_PARAM_INTEGER && isfinite(v) && floor(v) != v)
        return loss__fail(err, LOSS_EPARAM_TYPE, LOSS_AT_PARAM, d->name, -1,
                          "parameter %s must be an integer, got %g", d->name, v);
    if (!in_range(d, v)) {
        char r[96];
        range_str(d, r, sizeof r);
        return loss__fail(err, LOSS_EPARAM_RANGE, LOSS_AT_PARAM, d->name, -1,
                          "parameter %s must be %s, got %.17g", d->name, r, v);
    }
    *num_field(ps, d) = v;
    if (d->type == LOSS_PARAM_NUMBER_OR_VECTOR) *vec_field(ps, d) = (loss_vec){NULL, 0};
    mark(ps, ix, 1);
    return 0;
}

int loss_params_set_bool(const loss_param_set *ps, const char *name, int v,
                         loss_error *err)
{
    size_t ix = 0;
    const loss_param_desc *d;
    int rc = lookup(ps, name, &ix, &d, err);
    if (rc) return rc;
    if (d->type != LOSS_PARAM_BOOL) return wrong_type(d, "a boolean", err);
    *int_field(ps, d) = v != 0;
    mark(ps, ix, 1);
    return 0;
}

int loss_params_set_string(const loss_param_set *ps, const char *name, const char *v,
                           loss_error *err)
{
    size_t ix = 0;
    const loss_param_desc *d;
    int rc = lookup(ps, name, &ix, &d, err);
    if (rc) return rc;
    if (d->type != LOSS_PARAM_ENUM) return wrong_type(d, "a string", err);
    char list[128] = "";
    size_t used = 0;
    for (int i = 0; d->choices[i]; i++) {
        if (strcmp(d->choices[i], v) == 0) {
            *int_field(ps, d) = i;
            mark(ps, ix, 1);
            return 0;
        }
        int w = snprintf(list + used, sizeof list - used, "%s\"%s\"", i ? ", " : "",
                         d->choices[i]);
        if (w > 0 && (size_t)w < sizeof list - used) used += (size_t)w;
    }
    return loss__fail(err, LOSS_EPARAM_RANGE, LOSS_AT_PARAM, d->name, -1,
                      "parameter %s must be one of %s, got \"%.40s\"", d->name, list, v);
}

int loss_params_set_vector(const loss_param_set *ps, const char *name, const double *v,
                           size_t n, loss_error *err)
{
    size_t ix = 0;
    const loss_param_desc *d;
    int rc = lookup(ps, name, &ix, &d, err);
    if (rc) return rc;
    if (d->type != LOSS_PARAM_VECTOR && d->type != LOSS_PARAM_NUMBER_OR_VECTOR)
        return wrong_type(d, "an array", err);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]) || v[i] < d->vmin)
            return loss__fail(
                err, LOSS_EPARAM_RANGE, LOSS_AT_PARAM, d->name, (long long)i,
                "parameter %s[%zu] must be a finite number >= %g, got %.17g", d->name, i,
                d->vmin, v[i]);
    *vec_field(ps, d) = (loss_vec){v, n};
    mark(ps, ix, 1);
    return 0;
}

int loss_params_set_none(const loss_param_set *ps, const char *name, loss_error *err)
{
    size_t ix = 0;
    const loss_param_desc *d;
    int rc = lookup(ps, name, &ix, &d, err);
    if (rc) return rc;
    reset(ps, ix); /* null is the same as leaving it out */
    *ps->given &= ~(1u << ix);
    return 0;
}

int loss_params_get(const loss_param_set *ps, size_t i, loss_value *out)
{
    memset(out, 0, sizeof *out);
    if (i >= ps->n_params) return LOSS_EINVAL;
    const loss_param_desc *d = &ps->params[i];
    out->type = d->type;
    out->present = (*ps->present >> i) & 1u;
    if (!out->present) return 0;
    switch (d->type) {
    case LOSS_PARAM_NUMBER:
    case LOSS_PARAM_INTEGER:
        out->number = *num_field(ps, d);
        break;
    case LOSS_PARAM_BOOL:
        out->number = *int_field(ps, d);
        break;
    case LOSS_PARAM_ENUM:
        out->string = d->choices[*int_field(ps, d)];
        break;
    case LOSS_PARAM_VECTOR:
        out->is_vector = 1;
        out->vec = *vec_field(ps, d);
        break;
    case LOSS_PARAM_NUMBER_OR_VECTOR:
        out->vec = *vec_field(ps, d);
        out->is_vector = out->vec.data != NULL;
        out->number = *num_field(ps, d);
        break;
    }
    return 0;
}

/* Stores every default; optional parameters start absent. */
static void set_defaults(const loss_param_set *ps)
{
    *ps->given = 0;
    *ps->present = 0;
    for (size_t i = 0; i < ps->n_params; i++) reset(ps, i);
}

/* ---- loss specs ---- */

static loss_param_set spec_set(loss_spec *s)
{
    return (loss_param_set){s->desc->params, s->desc->n_params, s, &s->given,
                            &s->present};
}

int loss_spec_init(loss_spec *s, const char *name, loss_error *err)
{
    memset(s, 0, sizeof *s);
    s->desc = loss_find(name);
    if (!s->desc) {
        char list[200] = "";
        size_t used = 0;
        for (size_t i = 0; i < loss_count() && used < sizeof list; i++) {
            int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                             loss_at(i)->name);
            if (w > 0) used += (size_t)w;
        }
        return loss__fail(err, LOSS_EUNKNOWN_LOSS, LOSS_AT_PARAM, "name", -1,
                          "unknown loss \"%.40s\" (known: %s)", name, list);
    }
    loss_param_set ps = spec_set(s);
    set_defaults(&ps);
    return 0;
}

#define SPEC_GUARD(s)                                                   \
    do {                                                                \
        if (!(s)->desc)                                                 \
            return loss__fail(err, LOSS_EINVAL, LOSS_AT_NONE, NULL, -1, \
                              "loss spec is not initialised");          \
    } while (0)

int loss_spec_set_number(loss_spec *s, const char *param, double v, loss_error *err)
{
    SPEC_GUARD(s);
    loss_param_set ps = spec_set(s);
    return loss_params_set_number(&ps, param, v, err);
}
int loss_spec_set_bool(loss_spec *s, const char *param, int v, loss_error *err)
{
    SPEC_GUARD(s);
    loss_param_set ps = spec_set(s);
    return loss_params_set_bool(&ps, param, v, err);
}
int loss_spec_set_string(loss_spec *s, const char *param, const char *v, loss_error *err)
{
    SPEC_GUARD(s);
    loss_param_set ps = spec_set(s);
    return loss_params_set_string(&ps, param, v, err);
}
int loss_spec_set_vector(loss_spec *s, const char *param, const double *v, size_t n,
                         loss_error *err)
{
    SPEC_GUARD(s);
    loss_param_set ps = spec_set(s);
    return loss_params_set_vector(&ps, param, v, n, err);
}
int loss_spec_set_none(loss_spec *s, const char *param, loss_error *err)
{
    SPEC_GUARD(s);
    loss_param_set ps = spec_set(s);
    return loss_params_set_none(&ps, param, err);
}
int loss_spec_get(const loss_spec *s, size_t i, loss_value *out)
{
    if (!s->desc) return LOSS_EINVAL;
    loss_param_set ps = spec_set((loss_spec *)s);
    return loss_params_get(&ps, i, out);
}

void loss__params_defaults(const loss_param_set *ps)
{
    set_defaults(ps);
}
