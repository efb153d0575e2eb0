/* test_catalog.c - the descriptor table: every entry is complete and consistent,
 * defaults are within their ranges, the status table is well formed, parameters
 * round-trip through set/get, and the README's table of losses is the one this
 * table generates.
 *
 *   test_catalog [README.md]   check (the README part only when a path is given)
 *   test_catalog --print       print the README table */
#include "support.h"

#include <string.h>

/* One parameter as the README shows it: `delta` number > 0 [1]. */
static void param_md(const loss_param_desc *d, char *buf, size_t len)
{
    char range[96] = "", def[96] = "none";
    if (d->type == LOSS_PARAM_ENUM) {
        size_t used = 0;
        for (int i = 0; d->choices[i]; i++) {
            int w = snprintf(range + used, sizeof range - used, "%s`\"%s\"`",
                             i ? " or " : "", d->choices[i]);
            if (w > 0) used += (size_t)w;
        }
        if (d->has_default)
            snprintf(def, sizeof def, "`\"%s\"`", d->choices[(int)d->def]);
    } else {
        int ranged =
            d->type == LOSS_PARAM_NUMBER || d->type == LOSS_PARAM_NUMBER_OR_VECTOR;
        int lo = ranged && isfinite(d->min), hi = ranged && isfinite(d->max);
        if (lo && hi)
            snprintf(range, sizeof range, "in %s%g, %g%s",
                     (d->flags & LOSS_MIN_EXCLUSIVE) ? "(" : "[", d->min, d->max,
                     (d->flags & LOSS_MAX_EXCLUSIVE) ? ")" : "]");
        else if (lo)
            snprintf(range, sizeof range, "%s %g",
                     (d->flags & LOSS_MIN_EXCLUSIVE) ? ">" : "≥", d->min);
        if (d->type == LOSS_PARAM_VECTOR || d->type == LOSS_PARAM_NUMBER_OR_VECTOR) {
            size_t used = strlen(range);
            snprintf(range + used, sizeof range - used, "%s[K] entries ≥ %g",
                     d->type == LOSS_PARAM_VECTOR ? ""
                     : used                       ? " or array "
                                                  : "or array ",
                     d->vmin);
        }
        if (d->has_default && d->type == LOSS_PARAM_BOOL)
            snprintf(def, sizeof def, "%s", d->def != 0 ? "true" : "false");
        else if (d->has_default)
            snprintf(def, sizeof def, "%g", d->def);
    }
    /* number_or_array reads "number in [0, 1] or array [K] entries ≥ 0" */
    snprintf(buf, len, "`%s` %s%s%s [%s]", d->name,
             d->type == LOSS_PARAM_NUMBER_OR_VECTOR ? "number"
                                                    : loss_param_type_name(d->type),
             range[0] ? " " : "", range, def);
}

/* Markdown table cells cannot hold a bare '|'. */
static const char *cell(const char *s)
{
    static char buf[4][512];
    static int next;
    char *b = buf[next++ % 4];
    size_t j = 0;
    for (; *s && j + 2 < sizeof buf[0]; s++) {
        if (*s == '|') b[j++] = '\\';
        b[j++] = *s;
    }
    b[j] = '\0';
    return b;
}

/* The README's table of losses, generated from the descriptors. */
static char *catalog_md(void)
{
    size_t cap = 1 << 16, used = 0;
    char *out = malloc(cap);
#define OUT(...) used += (size_t)snprintf(out + used, cap - used, __VA_ARGS__)
    OUT("| loss | inputs (∂: gradient returned) | parameters [default] | losses | loss "
        "|\n");
    OUT("|---|---|---|---|---|\n");
    for (size_t i = 0; i < loss_count(); i++) {
        const loss_desc *d = loss_at(i);
        OUT("| `%s` | ", d->name);
        for (size_t k = 0; k < d->n_inputs; k++)
            OUT("%s`%s` %s%s", k ? "; " : "", d->inputs[k].name, d->inputs[k].shape,
                d->inputs[k].differentiable ? " ∂" : "");
        OUT(" | ");
        for (size_t k = 0; k < d->n_params; k++) {
            char p[256];
            param_md(&d->params[k], p, sizeof p);
            OUT("%s%s", k ? "; " : "", p);
        }
        if (!d->n_params) OUT("—");
        OUT(" | %s%s | %s |\n", cell(d->losses_shape),
            d->has_accuracy ? "; accuracy" : "", cell(d->formula));
    }
#undef OUT
    return out;
}

static void check_table(void)
{
    CHECK(loss_count() == 10, "%zu losses", loss_count());
    CHECK(loss_at(loss_count()) == NULL, "loss_at past the end");
    for (size_t i = 0; i < loss_count(); i++) {
        const loss_desc *d = loss_at(i);
        CHECK(loss_find(d->name) == d, "find %s", d->name);
        CHECK(d->family && d->summary && d->formula && d->losses_shape && d->ops,
              "%s incomplete", d->name);
        CHECK(d->n_inputs >= 2 && d->n_inputs <= LOSS_MAX_INPUTS, "%s inputs", d->name);
        CHECK(d->n_params <= LOSS_MAX_PARAMS, "%s params", d->name);
        int diff = 0;
        for (size_t k = 0; k < d->n_inputs; k++) {
            diff += d->inputs[k].differentiable;
            CHECK(loss_input_index(d, d->inputs[k].name) == (int)k, "%s input %zu",
                  d->name, k);
            CHECK(d->inputs[k].shape && d->inputs[k].doc, "%s input docs", d->name);
        }
        CHECK(diff >= 1, "%s has no differentiable input", d->name);
        loss_spec s;
        loss_error e;
        CHECK(loss_spec_init(&s, d->name, &e) == 0, "%s", e.message);
        for (size_t k = 0; k < d->n_params; k++) {
            const loss_param_desc *p = &d->params[k];
            CHECK(loss_param_index(d, p->name) == (int)k, "%s.%s index", d->name,
                  p->name);
            CHECK(p->doc && strlen(p->doc) > 5, "%s.%s doc", d->name, p->name);
            loss_value v;
            CHECK(loss_spec_get(&s, k, &v) == 0, "get");
            CHECK(v.present == p->has_default, "%s.%s presence", d->name, p->name);
            /* A default must pass its own validation. */
            if (p->has_default &&
                (p->type == LOSS_PARAM_NUMBER || p->type == LOSS_PARAM_INTEGER))
                CHECK(loss_spec_set_number(&s, p->name, p->def, &e) == 0,
                      "%s.%s default: %s", d->name, p->name, e.message);
            if (p->type == LOSS_PARAM_ENUM)
                CHECK(loss_spec_set_string(&s, p->name, p->choices[(int)p->def], &e) == 0,
                      "enum");
        }
        CHECK(loss_spec_get(&s, d->n_params, &(loss_value){0}) == LOSS_EINVAL,
              "get past end");
    }
    /* Round trips through set and get. */
    loss_spec s;
    loss_error e;
    loss_value v;
    double cw[3] = {1, 2, 3};
    CHECK(loss_spec_init(&s, "cross_entropy", &e) == 0, "ce");
    CHECK(loss_spec_set_vector(&s, "class_weights", cw, 3, &e) == 0, "%s", e.message);
    CHECK(loss_spec_set_number(&s, "ignore_index", -100, &e) == 0, "%s", e.message);
    CHECK(loss_spec_set_string(&s, "from", "probabilities", &e) == 0, "%s", e.message);
    loss_spec_get(&s, (size_t)loss_param_index(s.desc, "class_weights"), &v);
    CHECK(v.present && v.is_vector && v.vec.len == 3 && v.vec.data == cw,
          "class_weights");
    loss_spec_get(&s, (size_t)loss_param_index(s.desc, "ignore_index"), &v);
    CHECK(v.present && v.number == -100, "ignore_index");
    loss_spec_get(&s, (size_t)loss_param_index(s.desc, "from"), &v);
    CHECK(!strcmp(v.string, "probabilities"), "from");
    CHECK(loss_spec_set_none(&s, "ignore_index", &e) == 0, "%s", e.message);
    loss_spec_get(&s, (size_t)loss_param_index(s.desc, "ignore_index"), &v);
    CHECK(!v.present, "ignore_index cleared");
    /* null for a parameter with a default: the default again, and not given */
    CHECK(loss_spec_set_none(&s, "from", &e) == 0, "%s", e.message);
    loss_spec_get(&s, (size_t)loss_param_index(s.desc, "from"), &v);
    CHECK(v.present && !strcmp(v.string, "logits"), "from back to its default");
    CHECK(loss_spec_init(&s, "elbo", &e) == 0, "elbo");
    CHECK(loss_spec_set_number(&s, "sigma", 2.0, &e) == 0, "%s", e.message);
    CHECK(loss_spec_set_none(&s, "sigma", &e) == 0, "%s", e.message);
    CHECK(s.sigma == 1.0 &&
              !((s.given >> (size_t)loss_param_index(s.desc, "sigma")) & 1u),
          "sigma back to 1 and not given");
    CHECK(loss_spec_set_none(&s, "nope", &e) == LOSS_EUNKNOWN_PARAM,
          "null for no such parameter");
    CHECK(loss_spec_init(&s, "focal", &e) == 0, "focal");
    CHECK(loss_spec_set_number(&s, "alpha", 0.25, &e) == 0, "%s", e.message);
    loss_spec_get(&s, (size_t)loss_param_index(s.desc, "alpha"), &v);
    CHECK(v.present && !v.is_vector && v.number == 0.25, "alpha number");
    CHECK(loss_spec_set_vector(&s, "alpha", cw, 3, &e) == 0, "%s", e.message);
    loss_spec_get(&s, (size_t)loss_param_index(s.desc, "alpha"), &v);
    CHECK(v.present && v.is_vector && v.vec.len == 3, "alpha vector");
}

static void check_status_table(void)
{
    static const int all[] = {
#define ALL_(name, value, code, text) LOSS_##name,
        LOSS_STATUS_MAP(ALL_)
#undef ALL_
    };
    size_t n = sizeof all / sizeof all[0];
    for (size_t i = 0; i < n; i++) {
        CHECK(strcmp(loss_strerror(all[i]), "unknown status") != 0, "strerror %d",
              all[i]);
        const char *c = loss_status_code(all[i]);
        for (const char *p = c; *p; p++)
            CHECK((*p >= 'a' && *p <= 'z') || *p == '_', "code %s", c);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(c, loss_status_code(all[j])) != 0 && all[i] != all[j],
                  "duplicate %s", c);
    }
    CHECK(!strcmp(loss_status_code(LOSS_ESHAPE), "shape_mismatch"), "stable code");
    CHECK(!strcmp(loss_strerror(12345), "unknown status"), "unknown");
}

static void check_readme(const char *path)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f) return;
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *begin = strstr(text, "<!-- losses:begin -->\n"),
               *end = strstr(text, "<!-- losses:end -->");
    CHECK(begin && end && begin < end,
          "README lacks the <!-- losses:begin/end --> markers");
    if (!begin || !end) return;
    begin += strlen("<!-- losses:begin -->\n");
    char *want = catalog_md();
    size_t len = (size_t)(end - begin);
    CHECK(
        len == strlen(want) && memcmp(begin, want, len) == 0,
        "README's table of losses differs from the descriptor table; regenerate it with "
        "`build/tests/test_catalog --print`");
    free(want);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--print")) {
        char *md = catalog_md();
        fputs(md, stdout);
        free(md);
        return 0;
    }
    check_table();
    check_status_table();
    if (argc > 1) check_readme(argv[1]);
    return test_report("test_catalog");
}
