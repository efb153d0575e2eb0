/* catalog.c - GET /v1/losses and /v1/losses/{name}, generated from the core's
 * descriptor table (the same table that validates requests). */
#include "srv.h"

#include <math.h>
#include <string.h>

static void str(srv_buf *b, const char *s)
{
    srv_json_string(b, s, strlen(s));
}

static void num(srv_buf *b, double v)
{
    char t[SRV_DOUBLE_MAX + 1];
    size_t n = srv_fmt_double(t, v);
    srv_buf_append(b, t, n);
}

static void param(srv_buf *b, const loss_param_desc *p)
{
    srv_buf_puts(b, "{\"name\":");
    str(b, p->name);
    srv_buf_puts(b, ",\"type\":");
    str(b, loss_param_type_name(p->type));
    srv_buf_puts(b, ",\"description\":");
    str(b, p->doc);
    srv_buf_puts(b, ",\"default\":");
    if (!p->has_default)
        srv_buf_puts(b, "null");
    else if (p->type == LOSS_PARAM_BOOL)
        srv_buf_puts(b, p->def != 0 ? "true" : "false");
    else if (p->type == LOSS_PARAM_ENUM)
        str(b, p->choices[(int)p->def]);
    else
        num(b, p->def);
    srv_buf_puts(b, ",\"required\":false");
    if (p->type == LOSS_PARAM_NUMBER || p->type == LOSS_PARAM_NUMBER_OR_VECTOR ||
        p->type == LOSS_PARAM_INTEGER) {
        if (isfinite(p->min)) {
            srv_buf_puts(b, ",\"minimum\":");
            num(b, p->min);
            srv_buf_printf(b, ",\"exclusive_minimum\":%s",
                           (p->flags & LOSS_MIN_EXCLUSIVE) ? "true" : "false");
        }
        if (isfinite(p->max)) {
            srv_buf_puts(b, ",\"maximum\":");
            num(b, p->max);
            srv_buf_printf(b, ",\"exclusive_maximum\":%s",
                           (p->flags & LOSS_MAX_EXCLUSIVE) ? "true" : "false");
        }
    }
    if (p->type == LOSS_PARAM_VECTOR || p->type == LOSS_PARAM_NUMBER_OR_VECTOR) {
        srv_buf_puts(b, ",\"items_minimum\":");
        num(b, p->vmin);
    }
    if (p->type == LOSS_PARAM_ENUM) {
        srv_buf_puts(b, ",\"enum\":[");
        for (int i = 0; p->choices[i]; i++) {
            if (i) srv_buf_puts(b, ",");
            str(b, p->choices[i]);
        }
        srv_buf_puts(b, "]");
    }
    srv_buf_puts(b, "}");
}

static void entry(srv_buf *b, const loss_desc *d)
{
    srv_buf_puts(b, "{\"name\":");
    str(b, d->name);
    srv_buf_puts(b, ",\"family\":");
    str(b, d->family);
    srv_buf_puts(b, ",\"summary\":");
    str(b, d->summary);
    srv_buf_puts(b, ",\"formula\":");
    str(b, d->formula);
    srv_buf_puts(b, ",\"losses_shape\":");
    str(b, d->losses_shape);
    srv_buf_puts(b, d->has_accuracy ? ",\"metrics\":[\"accuracy\"]" : ",\"metrics\":[]");
    srv_buf_puts(b, ",\"components\":[");
    for (size_t k = 0; d->components && d->components[k]; k++) {
        if (k) srv_buf_puts(b, ",");
        str(b, d->components[k]);
    }
    srv_buf_puts(b, "],\"inputs\":[");
    for (size_t i = 0; i < d->n_inputs; i++) {
        srv_buf_puts(b, i ? ",{\"name\":" : "{\"name\":");
        str(b, d->inputs[i].name);
        srv_buf_puts(b, ",\"shape\":");
        str(b, d->inputs[i].shape);
        srv_buf_printf(b, ",\"differentiable\":%s,\"description\":",
                       d->inputs[i].differentiable ? "true" : "false");
        str(b, d->inputs[i].doc);
        srv_buf_puts(b, "}");
    }
    srv_buf_puts(b, "],\"parameters\":[");
    for (size_t i = 0; i < d->n_params; i++) {
        if (i) srv_buf_puts(b, ",");
        param(b, &d->params[i]);
    }
    srv_buf_puts(b, "]}");
}

char *srv_catalog_json(const char *name, size_t *len)
{
    srv_buf b = {0};
    if (name) {
        const loss_desc *d = loss_find(name);
        if (!d) return NULL;
        entry(&b, d);
    } else {
        srv_buf_puts(&b, "{\"losses\":[");
        for (size_t i = 0; i < loss_count(); i++) {
            if (i) srv_buf_puts(&b, ",");
            entry(&b, loss_at(i));
        }
        srv_buf_puts(&b, "]}");
    }
    if (srv_buf_puts(&b, "\n")) {
        srv_buf_free(&b);
        return NULL;
    }
    return srv_buf_steal(&b, len);
}
