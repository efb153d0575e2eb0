/* catalog.c - the table of losses.  Adding a loss is adding its file and one row. */
#include "loss_internal.h"

#include <stdio.h>
#include <string.h>

static const loss_desc *const catalog[] = {
    &loss__mse,   &loss__mae,   &loss__huber,       &loss__bce,     &loss__cross_entropy,
    &loss__focal, &loss__hinge, &loss__contrastive, &loss__triplet, &loss__elbo,
};

size_t loss_count(void)
{
    return sizeof catalog / sizeof catalog[0];
}

const loss_desc *loss_at(size_t i)
{
    return i < loss_count() ? catalog[i] : NULL;
}

const loss_desc *loss_find(const char *name)
{
    for (size_t i = 0; i < loss_count(); i++)
        if (strcmp(catalog[i]->name, name) == 0) return catalog[i];
    return NULL;
}

int loss_param_index(const loss_desc *d, const char *name)
{
    for (size_t i = 0; i < d->n_params; i++)
        if (strcmp(d->params[i].name, name) == 0) return (int)i;
    return -1;
}

int loss_input_index(const loss_desc *d, const char *name)
{
    for (size_t i = 0; i < d->n_inputs; i++)
        if (strcmp(d->inputs[i].name, name) == 0) return (int)i;
    return -1;
}

int loss_input_bind(const loss_desc *d, const char *name, size_t *index, loss_error *err)
{
    int i = loss_input_index(d, name);
    if (i >= 0) {
        *index = (size_t)i;
        return 0;
    }
    char list[128] = "";
    size_t used = 0;
    for (size_t k = 0; k < d->n_inputs && used < sizeof list; k++) {
        int w = snprintf(list + used, sizeof list - used, "%s%s", k ? ", " : "",
                         d->inputs[k].name);
        if (w > 0) used += (size_t)w;
    }
    return loss__fail(err, LOSS_EUNKNOWN_INPUT, LOSS_AT_INPUT, name, -1,
                      "%s has no input \"%.40s\" (its inputs: %s)", d->name, name, list);
}

const char *loss_param_type_name(loss_param_type type)
{
    switch (type) {
    case LOSS_PARAM_NUMBER:
        return "number";
    case LOSS_PARAM_BOOL:
        return "boolean";
    case LOSS_PARAM_ENUM:
        return "string";
    case LOSS_PARAM_INTEGER:
        return "integer";
    case LOSS_PARAM_VECTOR:
        return "array";
    case LOSS_PARAM_NUMBER_OR_VECTOR:
        return "number_or_array";
    }
    return "?";
}
