/* test_errors.c - a bad-input twin for every status code of the core: the status,
 * where it points (parameter/input/weights, name, element index) and that outputs
 * are defined after the error.  Each bad request has a good twin that differs
 * only in the offending value and must pass. */
#include "support.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Runs a /v1/loss body through spec + plan; returns the status and fills err. */
static int run(const char *body, loss_error *err)
{
    json_error_t je;
    json_t *j = json_loads(body, JSON_DECODE_INT_AS_REAL, &je);
    if (!j) {
        fprintf(stderr, "test bug: bad JSON %s: %s\n", body, je.text);
        exit(2);
    }
    test_request r;
    memset(err, 0, sizeof *err);
    int rc = request_from_json(j, &r, err);
    if (!rc) {
        loss_tensor in[LOSS_MAX_INPUTS];
        for (size_t i = 0; i < LOSS_MAX_INPUTS; i++) in[i] = r.in[i].t;
        loss_plan p;
        memset(&p, 0xAB, sizeof p); /* poison: init must define everything */
        rc = loss_plan_init(&p, &r.spec, in, r.has_weights ? &r.weights.t : NULL,
                            r.reduction, err);
        if (rc) CHECK(p.sums == NULL, "failed plan owns memory: %s", body);
        if (!rc) {
            loss_result res;
            rc = loss_eval(&p, NULL, &res, err);
            if (rc)
                CHECK(res.cost == 0 && !res.has_accuracy,
                      "result not zeroed after error");
        }
        loss_plan_free(&p);
        loss_plan_free(&p); /* idempotent */
    }
    test_request_free(&r);
    json_decref(j);
    return rc;
}

static void expect(const char *body, int code, loss_where where, const char *name,
                   long long index, const char *good)
{
    loss_error e;
    int rc = run(body, &e);
    CHECK(rc == code, "%s: status %d (%s), want %d (%s): %s", body, rc,
          loss_status_code(rc), code, loss_status_code(code), e.message);
    if (rc == code && code) {
        CHECK(e.code == code, "%s: err.code %d", body, e.code);
        CHECK(e.where == where, "%s: where %d, want %d", body, e.where, where);
        CHECK(strcmp(e.name, name) == 0, "%s: name \"%s\", want \"%s\"", body, e.name,
              name);
        CHECK(e.index == index, "%s: index %lld, want %lld", body, e.index, index);
        CHECK(strlen(e.message) > 10, "%s: message too short: \"%s\"", body, e.message);
    }
    if (good) {
        rc = run(good, &e);
        CHECK(rc == 0, "good twin %s failed: %s", good, e.message);
    }
}

#define P LOSS_AT_PARAM
#define I LOSS_AT_INPUT
#define W LOSS_AT_WEIGHTS

static void loss_requests(void)
{
    /* unknown loss / parameter */
    expect("{\"loss\":\"nope\",\"inputs\":{}}", LOSS_EUNKNOWN_LOSS, P, "name", -1, NULL);
    expect("{\"loss\":{\"name\":\"huber\",\"delt\":1},\"inputs\":{\"predictions\":[1],"
           "\"targets\":[2]}}",
           LOSS_EUNKNOWN_PARAM, P, "delt", -1,
           "{\"loss\":{\"name\":\"huber\",\"delta\":1},\"inputs\":{\"predictions\":[1],"
           "\"targets\":[2]}}");
    expect("{\"loss\":{\"name\":\"mse\",\"delta\":1},\"inputs\":{\"predictions\":[1],"
           "\"targets\":[2]}}",
           LOSS_EUNKNOWN_PARAM, P, "delta", -1, NULL);
    /* parameter types */
    expect("{\"loss\":{\"name\":\"huber\",\"delta\":\"big\"},\"inputs\":{\"predictions\":"
           "[1],\"targets\":[2]}}",
           LOSS_EPARAM_TYPE, P, "delta", -1, NULL);
    expect("{\"loss\":{\"name\":\"hinge\",\"squared\":1},\"inputs\":{\"predictions\":[1],"
           "\"targets\":[1]}}",
           LOSS_EPARAM_TYPE, P, "squared", -1,
           "{\"loss\":{\"name\":\"hinge\",\"squared\":true},\"inputs\":{\"predictions\":["
           "1],\"targets\":[1]}}");
    expect("{\"loss\":{\"name\":\"cross_entropy\",\"ignore_index\":1.5},\"inputs\":{"
           "\"predictions\":[[1,2]],\"targets\":[1]}}",
           LOSS_EPARAM_TYPE, P, "ignore_index", -1,
           "{\"loss\":{\"name\":\"cross_entropy\",\"ignore_index\":null},\"inputs\":{"
           "\"predictions\":[[1,2]],\"targets\":[1]}}");
    expect("{\"loss\":{\"name\":\"cross_entropy\",\"class_weights\":2},\"inputs\":{"
           "\"predictions\":[[1,2]],\"targets\":[1]}}",
           LOSS_EPARAM_TYPE, P, "class_weights", -1, NULL);
    /* parameter ranges */
    expect("{\"loss\":{\"name\":\"huber\",\"delta\":0},\"inputs\":{\"predictions\":[1],"
           "\"targets\":[2]}}",
           LOSS_EPARAM_RANGE, P, "delta", -1,
           "{\"loss\":{\"name\":\"huber\",\"delta\":1e-9},\"inputs\":{\"predictions\":[1]"
           ",\"targets\":[2]}}");
    expect("{\"loss\":{\"name\":\"bce\",\"label_smoothing\":1},\"inputs\":{"
           "\"predictions\":[0.5],\"targets\":[1]}}",
           LOSS_EPARAM_RANGE, P, "label_smoothing", -1,
           "{\"loss\":{\"name\":\"bce\",\"label_smoothing\":0.99},\"inputs\":{"
           "\"predictions\":[0.5],\"targets\":[1]}}");
    expect("{\"loss\":{\"name\":\"bce\",\"from\":\"log\"},\"inputs\":{\"predictions\":[0."
           "5],\"targets\":[1]}}",
           LOSS_EPARAM_RANGE, P, "from", -1,
           "{\"loss\":{\"name\":\"bce\",\"from\":\"logits\"},\"inputs\":{\"predictions\":"
           "[0.5],\"targets\":[1]}}");
    expect("{\"loss\":{\"name\":\"cross_entropy\",\"class_weights\":[1,-1]},\"inputs\":{"
           "\"predictions\":[[1,2]],\"targets\":[1]}}",
           LOSS_EPARAM_RANGE, P, "class_weights", 1,
           "{\"loss\":{\"name\":\"cross_entropy\",\"class_weights\":[1,0]},\"inputs\":{"
           "\"predictions\":[[1,2]],\"targets\":[0]}}");
    expect("{\"loss\":{\"name\":\"focal\",\"alpha\":1.5},\"inputs\":{\"predictions\":[1],"
           "\"targets\":[1]}}",
           LOSS_EPARAM_RANGE, P, "alpha", -1,
           "{\"loss\":{\"name\":\"focal\",\"alpha\":1},\"inputs\":{\"predictions\":[1],"
           "\"targets\":[1]}}");
    expect("{\"loss\":{\"name\":\"focal\",\"gamma\":-1},\"inputs\":{\"predictions\":[1],"
           "\"targets\":[1]}}",
           LOSS_EPARAM_RANGE, P, "gamma", -1, NULL);
    expect("{\"loss\":{\"name\":\"elbo\",\"sigma\":0,\"likelihood\":\"gaussian\"},"
           "\"inputs\":{}}",
           LOSS_EPARAM_RANGE, P, "sigma", -1, NULL);
    /* parameter combinations */
    expect("{\"loss\":{\"name\":\"cross_entropy\",\"ignore_index\":-100},\"inputs\":{"
           "\"predictions\":[[1,2]],\"targets\":[[0.5,0.5]]}}",
           LOSS_EPARAM_CONFLICT, P, "ignore_index", -1,
           "{\"loss\":{\"name\":\"cross_entropy\",\"ignore_index\":-100},\"inputs\":{"
           "\"predictions\":[[1,2],[3,4]],\"targets\":[-100,1]}}");
    expect("{\"loss\":{\"name\":\"focal\",\"alpha\":[0.5,0.5]},\"inputs\":{"
           "\"predictions\":[[1,2]],\"targets\":[[0,1]]}}",
           LOSS_EPARAM_CONFLICT, P, "alpha", -1,
           "{\"loss\":{\"name\":\"focal\",\"alpha\":[0.5,0.5]},\"inputs\":{"
           "\"predictions\":[[1,2]],\"targets\":[1]}}");
    expect("{\"loss\":{\"name\":\"elbo\",\"sigma\":2},\"inputs\":{\"x\":[[1]],"
           "\"reconstruction\":[[0]],\"mu\":[[0]],\"logvar\":[[0]]}}",
           LOSS_EPARAM_CONFLICT, P, "sigma", -1,
           "{\"loss\":{\"name\":\"elbo\",\"sigma\":2,\"likelihood\":\"gaussian\"},"
           "\"inputs\":{\"x\":[[1]],\"reconstruction\":[[0]],\"mu\":[[0]],\"logvar\":[[0]"
           "]}}");
    /* inputs: missing, rank, shape */
    expect("{\"loss\":\"mse\",\"inputs\":{\"predictions\":[1,2]}}", LOSS_EMISSING_INPUT,
           I, "targets", -1,
           "{\"loss\":\"mse\",\"inputs\":{\"predictions\":[1,2],\"targets\":[0,0]}}");
    expect("{\"loss\":\"cross_entropy\",\"inputs\":{\"predictions\":[1,2],\"targets\":[1,"
           "0]}}",
           LOSS_ERANK, I, "predictions", -1,
           "{\"loss\":\"cross_entropy\",\"inputs\":{\"predictions\":[[1,2],[3,4]],"
           "\"targets\":[1,0]}}");
    expect("{\"loss\":\"mse\",\"inputs\":{\"predictions\":3,\"targets\":3}}", LOSS_ERANK,
           I, "predictions", -1,
           "{\"loss\":\"mse\",\"inputs\":{\"predictions\":[3],\"targets\":[3]}}");
    expect(
        "{\"loss\":\"mse\",\"inputs\":{\"predictions\":[1,2,3,4],\"targets\":[1,2,3]}}",
        LOSS_ESHAPE, I, "targets", -1, NULL);
    expect("{\"loss\":\"mse\",\"inputs\":{\"predictions\":[[1,2],[3,4]],\"targets\":[[1,"
           "2],[3,4]]},\"weights\":[1,2,3]}",
           LOSS_ESHAPE, W, "weights", -1,
           "{\"loss\":\"mse\",\"inputs\":{\"predictions\":[[1,2],[3,4]],\"targets\":[[1,"
           "2],[3,4]]},\"weights\":[[1,2],[3,0]]}");
    expect("{\"loss\":\"triplet\",\"inputs\":{\"anchor\":[[1,2]],\"positive\":[[1,2]],"
           "\"negative\":[[1,2]]},\"weights\":[[1,2]]}",
           LOSS_ESHAPE, W, "weights", -1, NULL);
    expect("{\"loss\":{\"name\":\"cross_entropy\",\"class_weights\":[1,2,3]},\"inputs\":{"
           "\"predictions\":[[1,2]],\"targets\":[1]}}",
           LOSS_ESHAPE, P, "class_weights", -1, NULL);
    expect("{\"loss\":\"contrastive\",\"inputs\":{\"x1\":[[1,2]],\"x2\":[[1,2]],"
           "\"similar\":[1,0]}}",
           LOSS_ESHAPE, I, "similar", -1,
           "{\"loss\":\"contrastive\",\"inputs\":{\"x1\":[[1,2]],\"x2\":[[1,2]],"
           "\"similar\":[0]}}");
    expect("{\"loss\":\"triplet\",\"inputs\":{\"anchor\":[[1,2]],\"positive\":[[1,2]],"
           "\"negative\":[[1,2,3]]}}",
           LOSS_ESHAPE, I, "negative", -1, NULL);
    expect("{\"loss\":\"focal\",\"inputs\":{\"predictions\":[[1,2]],\"targets\":[[1]]}}",
           LOSS_ESHAPE, I, "targets", -1, NULL);
    expect("{\"loss\":\"focal\",\"inputs\":{\"predictions\":[[1]],\"targets\":[0]}}",
           LOSS_ESHAPE, I, "predictions", -1,
           "{\"loss\":\"focal\",\"inputs\":{\"predictions\":[[1]],\"targets\":[[0]]}}");
    /* values: class indices, probabilities, labels, weights */
    expect("{\"loss\":\"cross_entropy\",\"inputs\":{\"predictions\":[[1,2,3],[1,2,3],[1,"
           "2,3]],\"targets\":[0,1,3]}}",
           LOSS_ECLASS_INDEX, I, "targets", 2,
           "{\"loss\":\"cross_entropy\",\"inputs\":{\"predictions\":[[1,2,3],[1,2,3],[1,"
           "2,3]],\"targets\":[0,1,2]}}");
    expect("{\"loss\":\"cross_entropy\",\"inputs\":{\"predictions\":[[1,2],[1,2]],"
           "\"targets\":[0.5,1]}}",
           LOSS_ECLASS_INDEX, I, "targets", 0, NULL);
    expect("{\"loss\":\"cross_entropy\",\"inputs\":{\"predictions\":[[1,2],[1,2]],"
           "\"targets\":[1,-100]}}",
           LOSS_ECLASS_INDEX, I, "targets", 1,
           "{\"loss\":{\"name\":\"cross_entropy\",\"ignore_index\":-100},\"inputs\":{"
           "\"predictions\":[[1,2],[1,2]],\"targets\":[1,-100]}}");
    expect("{\"loss\":\"focal\",\"inputs\":{\"predictions\":[[1,2],[1,2]],\"targets\":[1,"
           "2]}}",
           LOSS_ECLASS_INDEX, I, "targets", 1, NULL);
    expect("{\"loss\":\"bce\",\"inputs\":{\"predictions\":[[0.5,0.5],[1.2,0.5]],"
           "\"targets\":[[0,1],[1,0]]}}",
           LOSS_EPROBABILITY, I, "predictions", 2,
           "{\"loss\":{\"name\":\"bce\",\"from\":\"logits\"},\"inputs\":{\"predictions\":"
           "[[0.5,0.5],[1.2,0.5]],\"targets\":[[0,1],[1,0]]}}");
    expect(
        "{\"loss\":\"bce\",\"inputs\":{\"predictions\":[0.5,0.5],\"targets\":[0,-0.1]}}",
        LOSS_EPROBABILITY, I, "targets", 1,
        "{\"loss\":\"bce\",\"inputs\":{\"predictions\":[0.5,0.5],\"targets\":[0,0.1]}}");
    expect("{\"loss\":{\"name\":\"cross_entropy\",\"from\":\"probabilities\"},\"inputs\":"
           "{\"predictions\":[[0.5,0.5],[-0.5,1.5]],\"targets\":[0,1]}}",
           LOSS_EPROBABILITY, I, "predictions", 2, NULL);
    expect("{\"loss\":\"elbo\",\"inputs\":{\"x\":[[0,1.5]],\"reconstruction\":[[0,0]],"
           "\"mu\":[[0]],\"logvar\":[[0]]}}",
           LOSS_EPROBABILITY, I, "x", 1,
           "{\"loss\":{\"name\":\"elbo\",\"likelihood\":\"gaussian\"},\"inputs\":{\"x\":["
           "[0,1.5]],\"reconstruction\":[[0,0]],\"mu\":[[0]],\"logvar\":[[0]]}}");
    expect(
        "{\"loss\":\"hinge\",\"inputs\":{\"predictions\":[1,2,3],\"targets\":[1,-1,0]}}",
        LOSS_ELABEL, I, "targets", 2,
        "{\"loss\":\"hinge\",\"inputs\":{\"predictions\":[1,2,3],\"targets\":[1,-1,1]}}");
    expect("{\"loss\":\"contrastive\",\"inputs\":{\"x1\":[[1],[2]],\"x2\":[[1],[2]],"
           "\"similar\":[1,2]}}",
           LOSS_ELABEL, I, "similar", 1, NULL);
    expect("{\"loss\":\"focal\",\"inputs\":{\"predictions\":[1,2],\"targets\":[0.5,1]}}",
           LOSS_ELABEL, I, "targets", 0, NULL);
    expect("{\"loss\":\"mse\",\"inputs\":{\"predictions\":[1,2],\"targets\":[1,2]},"
           "\"weights\":[1,-1]}",
           LOSS_ENEGATIVE_WEIGHT, W, "weights", 1,
           "{\"loss\":\"mse\",\"inputs\":{\"predictions\":[1,2],\"targets\":[1,2]},"
           "\"weights\":[1,1]}");
    /* mean over zero total weight, and its sum twin */
    expect("{\"loss\":\"mse\",\"inputs\":{\"predictions\":[1,2],\"targets\":[1,2]},"
           "\"weights\":[0,0]}",
           LOSS_EZERO_WEIGHT, W, "weights", -1,
           "{\"loss\":\"mse\",\"inputs\":{\"predictions\":[1,2],\"targets\":[1,2]},"
           "\"weights\":[0,0],\"reduction\":\"sum\"}");
    expect("{\"loss\":{\"name\":\"cross_entropy\",\"ignore_index\":-1},\"inputs\":{"
           "\"predictions\":[[1,2]],\"targets\":[-1]}}",
           LOSS_EZERO_WEIGHT, I, "targets", -1,
           "{\"loss\":{\"name\":\"cross_entropy\",\"ignore_index\":-1},\"inputs\":{"
           "\"predictions\":[[1,2]],\"targets\":[-1]},\"reduction\":\"sum\"}");
    expect("{\"loss\":\"mse\",\"inputs\":{\"predictions\":[],\"targets\":[]}}",
           LOSS_EZERO_WEIGHT, I, "predictions", -1,
           "{\"loss\":\"mse\",\"inputs\":{\"predictions\":[],\"targets\":[]},"
           "\"reduction\":\"sum\"}");
    expect("{\"loss\":\"mse\",\"inputs\":{\"predictions\":[1,2],\"targets\":[1,2]},"
           "\"weights\":[1e-320,0]}",
           LOSS_EZERO_WEIGHT, W, "weights", -1, NULL);
    /* a result that does not fit a double */
    expect(
        "{\"loss\":\"mse\",\"inputs\":{\"predictions\":[1e200],\"targets\":[-1e200]}}",
        LOSS_EOVERFLOW, LOSS_AT_NONE, "", -1,
        "{\"loss\":\"mse\",\"inputs\":{\"predictions\":[1e150],\"targets\":[-1e150]}}");
    expect("{\"loss\":\"elbo\",\"inputs\":{\"x\":[[1]],\"reconstruction\":[[0]],\"mu\":[["
           "0]],\"logvar\":[[710]]}}",
           LOSS_EOVERFLOW, LOSS_AT_NONE, "", -1, NULL);
}

/* Values JSON cannot carry, sizes that overflow, and API misuse. */
static void direct_requests(void)
{
    loss_spec s;
    loss_error e;
    loss_plan p;
    CHECK(loss_spec_init(&s, "mse", &e) == 0, "%s", e.message);
    double x[6] = {1, 2, 3, 4, NAN, 6}, y[6] = {0}, w[3] = {1, INFINITY, 1};
    loss_tensor in[2] = {{.data = x, .rank = 2, .shape = {3, 2}},
                         {.data = y, .rank = 2, .shape = {3, 2}}},
                wt = {.data = w, .rank = 1, .shape = {3}};
    CHECK(loss_plan_init(&p, &s, in, NULL, LOSS_MEAN, &e) == LOSS_ENONFINITE,
          "NaN accepted");
    CHECK(e.where == LOSS_AT_INPUT && !strcmp(e.name, "predictions") && e.index == 4,
          "NaN located at %s[%lld]", e.name, e.index);
    CHECK(strstr(e.message, "[2][0]") != NULL, "message names the element: %s",
          e.message);
    x[4] = 5;
    CHECK(loss_plan_init(&p, &s, in, &wt, LOSS_MEAN, &e) == LOSS_ENONFINITE,
          "inf weight accepted");
    CHECK(e.where == LOSS_AT_WEIGHTS && e.index == 1, "inf weight located at %lld",
          e.index);
    w[1] = 2;
    CHECK(loss_plan_init(&p, &s, in, &wt, LOSS_MEAN, &e) == 0, "finite twin: %s",
          e.message);
    loss_plan_free(&p);

    /* the first non-finite element of a long input, wherever it falls relative to
     * the check's 512-element blocks; -0, subnormals and DBL_MAX are finite */
    {
        size_t n = 2000;
        double *a = calloc(n, sizeof *a), *b = calloc(n, sizeof *b);
        CHECK(a && b, "out of memory");
        for (size_t i = 0; a && b && i < n; i++) a[i] = i % 3 ? -0.0 : 4.9e-324;
        loss_tensor big[2] = {{.data = a, .rank = 1, .shape = {n}},
                              {.data = b, .rank = 1, .shape = {n}}};
        static const size_t at[] = {0, 511, 512, 1023, 1536, 1999};
        for (size_t t = 0; a && b && t < sizeof at / sizeof at[0]; t++) {
            a[at[t]] = t % 2 ? -INFINITY : NAN;
            if (at[t] + 700 < n) a[at[t] + 700] = NAN; /* a later one */
            CHECK(loss_plan_init(&p, &s, big, NULL, LOSS_MEAN, &e) == LOSS_ENONFINITE &&
                      e.index == (long long)at[t],
                  "non-finite at %zu located at %lld", at[t], e.index);
            a[at[t]] = DBL_MAX;
            if (at[t] + 700 < n) a[at[t] + 700] = -DBL_MAX;
        }
        CHECK(a && b && loss_plan_init(&p, &s, big, NULL, LOSS_MEAN, &e) == 0,
              "finite long input: %s", e.message);
        if (a && b) loss_plan_free(&p);
        free(a);
        free(b);
    }

    /* sizes */
    size_t big = (size_t)1 << 40;
    loss_tensor huge[2] = {{.data = x, .rank = 2, .shape = {big, big}},
                           {.data = y, .rank = 2, .shape = {big, big}}};
    CHECK(loss_plan_init(&p, &s, huge, NULL, LOSS_MEAN, &e) == LOSS_ETOO_LARGE,
          "overflowing size");
    CHECK(e.index == -1 && !strcmp(e.name, "predictions"), "too_large names %s", e.name);
    loss_tensor deep[2] = {{.data = x, .rank = LOSS_MAX_RANK + 1, .shape = {1}},
                           {.data = y, .rank = 1, .shape = {1}}};
    CHECK(loss_plan_init(&p, &s, deep, NULL, LOSS_MEAN, &e) == LOSS_ERANK,
          "rank > max accepted");

    /* unknown input names are reported with the known ones */
    size_t ix;
    CHECK(loss_input_bind(s.desc, "target", &ix, &e) == LOSS_EUNKNOWN_INPUT,
          "unknown input");
    CHECK(!strcmp(e.name, "target") && strstr(e.message, "targets"), "message: %s",
          e.message);
    CHECK(loss_input_bind(s.desc, "targets", &ix, &e) == 0 && ix == 1, "bind targets");

    /* API misuse */
    CHECK(loss_plan_init(&p, NULL, in, NULL, LOSS_MEAN, &e) == LOSS_EINVAL, "NULL spec");
    CHECK(loss_plan_init(&p, &s, in, NULL, (loss_reduction)7, &e) == LOSS_EINVAL,
          "bad reduction");
    CHECK(e.where == LOSS_AT_REDUCTION, "reduction error where %d", e.where);
    loss_spec blank;
    memset(&blank, 0, sizeof blank);
    CHECK(loss_spec_set_number(&blank, "delta", 1, &e) == LOSS_EINVAL,
          "uninitialised spec");
    CHECK(loss_plan_init(&p, &s, in, NULL, LOSS_MEAN, &e) == 0, "%s", e.message);
    CHECK(loss_eval_blocks(&p, 0, p.n_blocks + 1, NULL) == LOSS_EINVAL,
          "blocks out of range");
    loss_plan_free(&p);
    loss_result r;
    CHECK(loss_finish(&p, &r, &e) == LOSS_EINVAL && r.cost == 0, "finish after free");
}

static void objective_errors(void)
{
    loss_error e;
    double cost[2] = {1, 2}, s[2] = {0, -400}, fw[2] = {1, -1}, eff[2] = {7, 7};
    loss_weighting_out o = {eff, NULL, NULL, NULL, 0};
    CHECK(loss_weighting_eval(LOSS_WEIGHTING_LOG_SIGMA, 2, cost, s, &o, &e) ==
              LOSS_EOVERFLOW,
          "exp overflow");
    CHECK(e.where == LOSS_AT_PARAM && !strcmp(e.name, "log_sigma") && e.index == 1,
          "at %s[%lld]", e.name, e.index);
    s[1] = 3;
    CHECK(loss_weighting_eval(LOSS_WEIGHTING_LOG_SIGMA, 2, cost, s, &o, &e) == 0, "%s",
          e.message);
    s[1] = NAN;
    CHECK(loss_weighting_eval(LOSS_WEIGHTING_LOG_VARIANCE, 2, cost, s, &o, &e) ==
              LOSS_EPARAM_RANGE,
          "NaN s");
    CHECK(o.data_term == 0, "data term defined on error");
    CHECK(loss_weighting_eval(LOSS_WEIGHTING_FIXED, 2, cost, fw, &o, &e) ==
                  LOSS_EPARAM_RANGE &&
              !strcmp(e.name, "weight") && e.index == 1,
          "negative task weight");
    CHECK(loss_weighting_eval((loss_weighting)9, 2, cost, fw, &o, &e) ==
              LOSS_EUNKNOWN_KIND,
          "scheme");

    loss_penalty pen;
    CHECK(loss_penalty_init(&pen, "l3", &e) == LOSS_EUNKNOWN_KIND &&
              !strcmp(e.name, "kind"),
          "l3");
    loss_param_set ps;
    CHECK(loss_penalty_init(&pen, "l2", &e) == 0, "l2");
    CHECK(loss_penalty_resolve(&pen, &e) == LOSS_EMISSING_PARAM &&
              !strcmp(e.name, "lambda"),
          "l2 without lambda: %s", e.name);
    ps = loss_penalty_params(&pen);
    CHECK(loss_params_set_number(&ps, "lambda", -1, &e) == LOSS_EPARAM_RANGE,
          "negative lambda");
    CHECK(loss_params_set_number(&ps, "lamda", 1, &e) == LOSS_EUNKNOWN_PARAM,
          "unknown penalty param");
    CHECK(loss_params_set_string(&ps, "prior", "gaussian", &e) == 0, "%s", e.message);
    CHECK(loss_penalty_resolve(&pen, &e) == LOSS_EMISSING_PARAM &&
              !strcmp(e.name, "sigma"),
          "gaussian without sigma");
    CHECK(loss_params_set_number(&ps, "sigma", 2, &e) == 0, "%s", e.message);
    CHECK(loss_params_set_number(&ps, "lambda", 1, &e) == 0, "%s", e.message);
    CHECK(loss_penalty_resolve(&pen, &e) == LOSS_EPARAM_CONFLICT &&
              !strcmp(e.name, "lambda"),
          "lambda and prior");
    CHECK(loss_penalty_init(&pen, "l1", &e) == 0, "l1");
    ps = loss_penalty_params(&pen);
    CHECK(loss_params_set_string(&ps, "prior", "gaussian", &e) == 0, "%s", e.message);
    CHECK(loss_params_set_number(&ps, "sigma", 2, &e) == 0, "%s", e.message);
    CHECK(loss_penalty_resolve(&pen, &e) == LOSS_EPARAM_CONFLICT &&
              !strcmp(e.name, "prior"),
          "gaussian prior on l1");
    CHECK(loss_penalty_init(&pen, "l1", &e) == 0, "l1");
    ps = loss_penalty_params(&pen);
    CHECK(loss_params_set_number(&ps, "lambda", 1, &e) == 0 &&
              loss_params_set_number(&ps, "l1_ratio", 0.5, &e) == 0,
          "%s", e.message);
    CHECK(loss_penalty_resolve(&pen, &e) == LOSS_EPARAM_CONFLICT &&
              !strcmp(e.name, "l1_ratio"),
          "l1_ratio on l1");
    CHECK(loss_penalty_init(&pen, "l2", &e) == 0, "l2");
    ps = loss_penalty_params(&pen);
    CHECK(loss_params_set_number(&ps, "lambda", 1, &e) == 0, "%s", e.message);
    CHECK(loss_params_set_number(&ps, "dataset_size", 0.5, &e) == LOSS_EPARAM_TYPE,
          "fractional n");
    CHECK(loss_penalty_resolve(&pen, &e) == 0, "%s", e.message);
    double th[3] = {1, 1e200, NAN}, g[3] = {9, 9, 9}, v = 9;
    CHECK(loss_penalty_eval(&pen, th, 3, &v, g, &e) == LOSS_ENONFINITE && e.index == 2,
          "NaN theta");
    CHECK(v == 0 && g[0] == 0, "penalty outputs defined on error");
    CHECK(loss_penalty_eval(&pen, th, 2, &v, g, &e) == LOSS_EOVERFLOW,
          "overflowing penalty");
    CHECK(loss_penalty_eval(&pen, th, 1, &v, g, &e) == 0 && v == 0.5 && g[0] == 1,
          "l2 of [1]");
}

int main(void)
{
    loss_requests();
    direct_requests();
    objective_errors();
    /* Every status code of the table is exercised above, except LOSS_ENOMEM. */
    return test_report("test_errors");
}
