/* test_reference.c - the core against PyTorch float64 reference data.
 *
 * tests/reference/gen_reference.py writes, for every loss x parameter combination
 * x shape (and the extremes), a /v1/loss request body and the values PyTorch
 * autograd computes for it.  Every cost, loss, gradient, accuracy and component
 * must agree to 1e-12 relative (plus 1e-14 of the array's largest magnitude, for
 * entries that are zero up to cancellation). */
#include "support.h"

#include <string.h>

#define RTOL 1e-12

static const char *const files[] = {"mse",           "mae",   "huber", "bce",
                                    "cross_entropy", "focal", "hinge", "contrastive",
                                    "triplet",       "elbo"};

static void check_scalar(const char *id, const char *what, double got, const json_t *want)
{
    if (json_is_null(want)) return;
    double w = json_number_value(want);
    CHECK(close_enough(got, w, RTOL, fabs(w)), "%s: %s = %.17g, want %.17g", id, what,
          got, w);
}

static int run_case(const json_t *c)
{
    const char *id = json_string_value(json_object_get(c, "id"));
    const json_t *req = json_object_get(c, "request"),
                 *exp = json_object_get(c, "expected");
    test_request r;
    loss_error err;
    int rc = request_from_json(req, &r, &err);
    CHECK(rc == 0, "%s: request rejected: %s", id, err.message);
    if (rc) {
        test_request_free(&r);
        return 1;
    }
    loss_tensor in[LOSS_MAX_INPUTS];
    for (size_t i = 0; i < LOSS_MAX_INPUTS; i++) in[i] = r.in[i].t;
    loss_plan p;
    rc = loss_plan_init(&p, &r.spec, in, r.has_weights ? &r.weights.t : NULL, r.reduction,
                        &err);
    CHECK(rc == 0, "%s: plan rejected: %s", id, err.message);
    if (rc) {
        test_request_free(&r);
        return 1;
    }
    loss_outputs out = {0};
    out.losses = malloc((p.n_terms + 1) * sizeof(double));
    for (size_t i = 0; i < p.desc->n_inputs; i++)
        if (p.desc->inputs[i].differentiable)
            out.grads[i] = malloc((p.input_size[i] + 1) * sizeof(double));
    loss_result res;
    rc = loss_eval(&p, &out, &res, &err);
    CHECK(rc == 0, "%s: eval failed: %s", id, err.message);
    int before = test_failures;
    if (rc == 0) {
        check_scalar(id, "cost", res.cost, json_object_get(exp, "cost"));
        char label[256];
        snprintf(label, sizeof label, "%s: losses", id);
        compare_array(label, out.losses, json_object_get(exp, "losses"), RTOL);
        const json_t *grads = json_object_get(exp, "gradients");
        for (size_t i = 0; i < p.desc->n_inputs; i++) {
            const json_t *g = json_object_get(grads, p.desc->inputs[i].name);
            CHECK(!!g == !!p.desc->inputs[i].differentiable, "%s: gradient set for %s",
                  id, p.desc->inputs[i].name);
            if (!g || !out.grads[i]) continue;
            snprintf(label, sizeof label, "%s: gradients.%s", id, p.desc->inputs[i].name);
            compare_array(label, out.grads[i], g, RTOL);
        }
        const json_t *acc = json_object_get(json_object_get(exp, "metrics"), "accuracy");
        if (acc) {
            CHECK(res.has_accuracy == !json_is_null(acc), "%s: accuracy presence", id);
            if (res.has_accuracy) check_scalar(id, "accuracy", res.accuracy, acc);
        } else {
            CHECK(!p.desc->has_accuracy, "%s: reference lacks accuracy", id);
        }
        const json_t *comps = json_object_get(exp, "components");
        if (p.desc->components) {
            CHECK(comps != NULL, "%s: reference lacks components", id);
            for (size_t j = 0; comps && p.desc->components[j]; j++)
                check_scalar(id, p.desc->components[j], res.components[j],
                             json_object_get(comps, p.desc->components[j]));
        }
    }
    free(out.losses);
    for (size_t i = 0; i < LOSS_MAX_INPUTS; i++) free(out.grads[i]);
    loss_plan_free(&p);
    test_request_free(&r);
    return test_failures != before;
}

/* ---- objectives ---- */

static int run_objective(const json_t *c)
{
    const char *id = json_string_value(json_object_get(c, "id"));
    const json_t *req = json_object_get(c, "request"),
                 *exp = json_object_get(c, "expected");
    const json_t *tasks = json_object_get(req, "tasks");
    const json_t *weighting = json_object_get(req, "weighting");
    size_t nt = json_array_size(tasks);
    loss_weighting scheme = LOSS_WEIGHTING_FIXED;
    const json_t *svals = NULL;
    if (weighting && json_object_get(weighting, "log_sigma")) {
        scheme = LOSS_WEIGHTING_LOG_SIGMA;
        svals = json_object_get(weighting, "log_sigma");
    } else if (weighting && json_object_get(weighting, "log_variance")) {
        scheme = LOSS_WEIGHTING_LOG_VARIANCE;
        svals = json_object_get(weighting, "log_variance");
    }
    double cost[16], param[16], eff[16], contrib[16], gs[16], opt[16];
    int before = test_failures;
    for (size_t t = 0; t < nt; t++) {
        const json_t *tj = json_array_get(tasks, t);
        const json_t *w = json_object_get(tj, "weight");
        param[t] = svals ? json_number_value(json_array_get(svals, t))
                   : w   ? json_number_value(w)
                         : 1.0;
    }
    /* Task costs first (they do not depend on the weighting), then the weighting,
     * then the task gradients scaled by the effective weights. */
    for (size_t t = 0; t < nt; t++) {
        const json_t *tj = json_array_get(tasks, t);
        const json_t *te = json_array_get(json_object_get(exp, "tasks"), t);
        test_request r;
        loss_error err;
        int rc = request_from_json(tj, &r, &err);
        CHECK(rc == 0, "%s: task %zu: %s", id, t, err.message);
        loss_tensor in[LOSS_MAX_INPUTS];
        for (size_t i = 0; i < LOSS_MAX_INPUTS; i++) in[i] = r.in[i].t;
        loss_plan p;
        rc = rc ? rc
                : loss_plan_init(&p, &r.spec, in, r.has_weights ? &r.weights.t : NULL,
                                 r.reduction, &err);
        CHECK(rc == 0, "%s: task %zu plan: %s", id, t, err.message);
        if (rc) {
            test_request_free(&r);
            return 1;
        }
        loss_plan_scale_gradients(&p, loss_weighting_factor(scheme, param[t]));
        loss_outputs out = {0};
        for (size_t i = 0; i < p.desc->n_inputs; i++)
            if (p.desc->inputs[i].differentiable)
                out.grads[i] = malloc((p.input_size[i] + 1) * sizeof(double));
        loss_result res;
        rc = loss_eval(&p, &out, &res, &err);
        CHECK(rc == 0, "%s: task %zu eval: %s", id, t, err.message);
        cost[t] = res.cost;
        check_scalar(id, "task cost", res.cost, json_object_get(te, "cost"));
        const json_t *grads = json_object_get(te, "gradients");
        for (size_t i = 0; i < p.desc->n_inputs; i++) {
            const json_t *g = json_object_get(grads, p.desc->inputs[i].name);
            if (g && out.grads[i]) {
                char label[256];
                snprintf(label, sizeof label, "%s: task %zu gradients.%s", id, t,
                         p.desc->inputs[i].name);
                compare_array(label, out.grads[i], g, RTOL);
            }
            free(out.grads[i]);
        }
        loss_plan_free(&p);
        test_request_free(&r);
    }
    loss_weighting_out wo = {eff, contrib, gs, opt, 0};
    loss_error err;
    int rc = loss_weighting_eval(scheme, nt, cost, param, &wo, &err);
    CHECK(rc == 0, "%s: weighting: %s", id, err.message);
    for (size_t t = 0; t < nt; t++) {
        const json_t *te = json_array_get(json_object_get(exp, "tasks"), t);
        check_scalar(id, "effective_weight", eff[t],
                     json_object_get(te, "effective_weight"));
        check_scalar(id, "contribution", contrib[t], json_object_get(te, "contribution"));
    }
    const json_t *we = json_object_get(exp, "weighting");
    if (scheme != LOSS_WEIGHTING_FIXED) {
        for (size_t t = 0; t < nt; t++) {
            check_scalar(id, "weighting.gradient", gs[t],
                         json_array_get(json_object_get(we, "gradient"), t));
            const json_t *o = json_array_get(json_object_get(we, "optimal_sigma2"), t);
            CHECK(json_is_null(o) == isnan(opt[t]), "%s: optimal_sigma2[%zu] nullness",
                  id, t);
            if (!json_is_null(o)) check_scalar(id, "optimal_sigma2", opt[t], o);
        }
    }
    check_scalar(id, "data_term", wo.data_term, json_object_get(exp, "data_term"));
    double reg_total = 0;
    const json_t *regs = json_object_get(req, "regularization");
    for (size_t k = 0; k < json_array_size(regs); k++) {
        const json_t *rj = json_array_get(regs, k);
        const json_t *re = json_array_get(json_object_get(exp, "regularization"), k);
        loss_penalty pen;
        rc =
            loss_penalty_init(&pen, json_string_value(json_object_get(rj, "kind")), &err);
        loss_param_set ps = loss_penalty_params(&pen);
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)rj, key, v)
        {
            if (rc || !strcmp(key, "kind") || !strcmp(key, "params")) continue;
            if (json_is_string(v))
                rc = loss_params_set_string(&ps, key, json_string_value(v), &err);
            else
                rc = loss_params_set_number(&ps, key, json_number_value(v), &err);
        }
        if (!rc) rc = loss_penalty_resolve(&pen, &err);
        CHECK(rc == 0, "%s: penalty %zu: %s", id, k, err.message);
        tensor_buf th;
        tensor_from_json(json_object_get(rj, "params"), &th);
        double *g = malloc((th.size + 1) * sizeof *g), pv = 0;
        rc = loss_penalty_eval(&pen, th.data, th.size, &pv, g, &err);
        CHECK(rc == 0, "%s: penalty %zu eval: %s", id, k, err.message);
        check_scalar(id, "lambda", pen.lambda, json_object_get(re, "lambda"));
        check_scalar(id, "penalty", pv, json_object_get(re, "penalty"));
        char label[256];
        snprintf(label, sizeof label, "%s: regularization[%zu].gradient", id, k);
        compare_array(label, g, json_object_get(re, "gradient"), RTOL);
        reg_total += pv;
        free(g);
        tensor_buf_free(&th);
    }
    check_scalar(id, "regularization_total", reg_total,
                 json_object_get(exp, "regularization_total"));
    check_scalar(id, "objective", wo.data_term + reg_total,
                 json_object_get(exp, "objective"));
    return test_failures != before;
}

int main(void)
{
    char path[1024];
    size_t total = 0, failed = 0;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        snprintf(path, sizeof path, "%s/%s.json", LOSSD_REFERENCE_DIR, files[f]);
        json_t *doc = load_json_file(path);
        const json_t *cases = json_object_get(doc, "cases");
        CHECK(json_array_size(cases) > 0, "%s has no cases", path);
        for (size_t i = 0; i < json_array_size(cases); i++, total++)
            failed += (size_t)run_case(json_array_get(cases, i));
        json_decref(doc);
    }
    snprintf(path, sizeof path, "%s/objective.json", LOSSD_REFERENCE_DIR);
    json_t *doc = load_json_file(path);
    const json_t *cases = json_object_get(doc, "cases");
    CHECK(json_array_size(cases) > 0, "objective.json has no cases");
    for (size_t i = 0; i < json_array_size(cases); i++, total++)
        failed += (size_t)run_objective(json_array_get(cases, i));
    json_decref(doc);
    printf("test_reference: %zu cases, %zu failed\n", total, failed);
    return test_report("test_reference");
}
