/* test_gradcheck.c - every gradient against central finite differences of the
 * cost, for every loss and parameter combination; the objective's dJ/ds and the
 * penalties' gradients too.
 *
 * Where the perturbation straddles a kink (hinge, mae, huber, triplet...), the
 * left and right difference quotients disagree; such elements are skipped and
 * counted, and the test demands that they are rare. */
#include "support.h"

#include <string.h>

typedef struct fd_case {
    const char *loss;
    const char *params; /* "name=value,..." numbers, booleans (true/false), strings */
    int variant;        /* input layout, see make_inputs */
    loss_reduction reduction;
    int weights; /* 0 none, 1 per example, 2 per element */
} fd_case;

enum {
    V_ELEM,         /* predictions/targets [5,3], real targets */
    V_PROB,         /* probabilities in (0.05, 0.95), soft targets in [0,1] */
    V_LOGIT_SOFT,   /* logits, soft targets */
    V_BINARY_LOGIT, /* logits, {0,1} targets */
    V_BINARY_PROB,  /* probabilities, {0,1} targets */
    V_CE_INDEX,     /* logits [6,4], index targets (one is 1, for ignore_index=1) */
    V_CE_PROBT,     /* logits [6,4], probability targets */
    V_CE_PINDEX,    /* probabilities [6,4] (rows sum to 1), index targets */
    V_HINGE,        /* scores, {-1,+1} */
    V_PAIRS,        /* contrastive */
    V_TRIPLET,
    V_ELBO_B, /* x in [0,1] */
    V_ELBO_G
};

static const fd_case cases[] = {
    {"mse", "", V_ELEM, LOSS_MEAN, 0},
    {"mse", "", V_ELEM, LOSS_SUM, 2},
    {"mae", "", V_ELEM, LOSS_MEAN, 1},
    {"huber", "delta=0.7", V_ELEM, LOSS_MEAN, 2},
    {"huber", "", V_ELEM, LOSS_SUM, 1},
    {"bce", "", V_PROB, LOSS_MEAN, 0},
    {"bce", "pos_weight=2.5,label_smoothing=0.1", V_PROB, LOSS_MEAN, 1},
    {"bce", "from=logits", V_LOGIT_SOFT, LOSS_MEAN, 2},
    {"bce", "from=logits,pos_weight=0.3,label_smoothing=0.2", V_LOGIT_SOFT, LOSS_SUM, 1},
    {"cross_entropy", "", V_CE_INDEX, LOSS_MEAN, 0},
    {"cross_entropy", "label_smoothing=0.1", V_CE_INDEX, LOSS_MEAN, 1},
    {"cross_entropy", "class_weights=[0.5;2;1;3],ignore_index=1", V_CE_INDEX, LOSS_MEAN,
     1},
    {"cross_entropy", "class_weights=[0.5;2;1;3],label_smoothing=0.3", V_CE_INDEX,
     LOSS_SUM, 0},
    {"cross_entropy", "label_smoothing=0.2,class_weights=[1;2;0.5;1]", V_CE_PROBT,
     LOSS_MEAN, 1},
    {"cross_entropy", "from=probabilities,label_smoothing=0.1", V_CE_PINDEX, LOSS_MEAN,
     0},
    {"focal", "", V_BINARY_LOGIT, LOSS_MEAN, 0},
    {"focal", "gamma=0.5,alpha=0.25", V_BINARY_LOGIT, LOSS_MEAN, 2},
    {"focal", "gamma=3,from=probabilities", V_BINARY_PROB, LOSS_SUM, 1},
    {"focal", "gamma=0.5,alpha=0.7,from=probabilities", V_BINARY_PROB, LOSS_MEAN, 0},
    {"focal", "gamma=1.5,alpha=[0.2;0.3;0.4;0.1]", V_CE_INDEX, LOSS_MEAN, 1},
    {"focal", "gamma=0", V_CE_INDEX, LOSS_SUM, 0},
    {"focal", "gamma=2,alpha=0.5,from=probabilities", V_CE_PINDEX, LOSS_MEAN, 1},
    {"focal", "gamma=0.5,from=probabilities", V_CE_PINDEX, LOSS_MEAN, 0},
    {"hinge", "", V_HINGE, LOSS_MEAN, 0},
    {"hinge", "squared=true,margin=0.5", V_HINGE, LOSS_SUM, 2},
    {"contrastive", "", V_PAIRS, LOSS_MEAN, 0},
    {"contrastive", "margin=3", V_PAIRS, LOSS_MEAN, 1},
    {"triplet", "", V_TRIPLET, LOSS_MEAN, 0},
    {"triplet", "squared=false,margin=0.5", V_TRIPLET, LOSS_MEAN, 1},
    {"triplet", "squared=false,margin=2", V_TRIPLET, LOSS_SUM, 0},
    {"elbo", "", V_ELBO_B, LOSS_MEAN, 0},
    {"elbo", "beta=0.5", V_ELBO_B, LOSS_SUM, 1},
    {"elbo", "likelihood=gaussian,sigma=0.7,beta=2", V_ELBO_G, LOSS_MEAN, 1},
};

typedef struct inputs {
    double *data[LOSS_MAX_INPUTS];
    loss_tensor t[LOSS_MAX_INPUTS];
    double *w;
    loss_tensor wt;
    double vec[8];
} inputs;

static void shape2(loss_tensor *t, size_t a, size_t b)
{
    t->rank = 2;
    t->shape[0] = a;
    t->shape[1] = b;
}
static void shape1(loss_tensor *t, size_t a)
{
    t->rank = 1;
    t->shape[0] = a;
}

static void make_inputs(int v, rng *r, inputs *in)
{
    memset(in, 0, sizeof *in);
    size_t n = 6;
    switch (v) {
    case V_ELEM:
    case V_PROB:
    case V_LOGIT_SOFT:
    case V_BINARY_LOGIT:
    case V_BINARY_PROB:
    case V_HINGE:
        shape2(&in->t[0], n, 3);
        shape2(&in->t[1], n, 3);
        break;
    case V_CE_INDEX:
    case V_CE_PINDEX:
        shape2(&in->t[0], n, 4);
        shape1(&in->t[1], n);
        break;
    case V_CE_PROBT:
        shape2(&in->t[0], n, 4);
        shape2(&in->t[1], n, 4);
        break;
    case V_PAIRS:
        shape2(&in->t[0], n, 3);
        shape2(&in->t[1], n, 3);
        shape1(&in->t[2], n);
        break;
    case V_TRIPLET:
        for (int i = 0; i < 3; i++) shape2(&in->t[i], n, 3);
        break;
    case V_ELBO_B:
    case V_ELBO_G:
        shape2(&in->t[0], n, 4);
        shape2(&in->t[1], n, 4);
        shape2(&in->t[2], n, 2);
        shape2(&in->t[3], n, 2);
        break;
    }
    for (int i = 0; i < LOSS_MAX_INPUTS; i++) {
        if (!in->t[i].rank) continue;
        size_t sz = loss_tensor_size(&in->t[i]);
        in->data[i] = malloc(sz * sizeof(double));
        in->t[i].data = in->data[i];
        for (size_t k = 0; k < sz; k++) in->data[i][k] = rng_normal(r);
    }
    double *x = in->data[0], *y = in->data[1];
    size_t sx = loss_tensor_size(&in->t[0]), sy = loss_tensor_size(&in->t[1]);
    switch (v) {
    case V_PROB:
        for (size_t k = 0; k < sx; k++) x[k] = 0.05 + 0.9 * rng_uniform(r);
        for (size_t k = 0; k < sy; k++) y[k] = rng_uniform(r);
        break;
    case V_LOGIT_SOFT:
        for (size_t k = 0; k < sy; k++) y[k] = rng_uniform(r);
        break;
    case V_BINARY_LOGIT:
        for (size_t k = 0; k < sy; k++) y[k] = rng_uniform(r) < 0.5;
        for (size_t k = 0; k < sx; k++) x[k] *= 2.0;
        break;
    case V_BINARY_PROB:
        for (size_t k = 0; k < sx; k++) x[k] = 0.05 + 0.9 * rng_uniform(r);
        for (size_t k = 0; k < sy; k++) y[k] = rng_uniform(r) < 0.5;
        break;
    case V_CE_INDEX:
        for (size_t k = 0; k < sy; k++) y[k] = (double)(k % 4);
        break;
    case V_CE_PINDEX:
        for (size_t i = 0; i < n; i++) {
            double s = 0;
            for (size_t k = 0; k < 4; k++) s += (x[i * 4 + k] = 0.1 + rng_uniform(r));
            for (size_t k = 0; k < 4; k++) x[i * 4 + k] /= s;
            y[i] = (double)((i * 3) % 4);
        }
        break;
    case V_CE_PROBT:
        for (size_t i = 0; i < n; i++) {
            double s = 0;
            for (size_t k = 0; k < 4; k++) s += (y[i * 4 + k] = rng_uniform(r));
            for (size_t k = 0; k < 4; k++) y[i * 4 + k] /= s;
        }
        break;
    case V_HINGE:
        for (size_t k = 0; k < sy; k++) y[k] = rng_uniform(r) < 0.5 ? -1.0 : 1.0;
        break;
    case V_PAIRS:
        for (size_t k = 0; k < n; k++) in->data[2][k] = (double)(k % 2);
        break;
    case V_ELBO_B:
        for (size_t k = 0; k < sx; k++)
            x[k] = rng_uniform(r) < 0.3 ? rng_uniform(r) : (double)(k % 2);
        break;
    default:
        break;
    }
}

static void free_inputs(inputs *in)
{
    for (int i = 0; i < LOSS_MAX_INPUTS; i++) free(in->data[i]);
    free(in->w);
}

/* Parses "a=1,b=true,c=logits,d=[1;2]" into the spec. */
static void apply_params(loss_spec *s, const char *params, double *vec)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", params);
    for (char *kv = buf[0] ? buf : NULL, *next; kv; kv = next) {
        next = strchr(kv, ',');
        if (next) *next++ = '\0';
        char *eq = strchr(kv, '=');
        *eq = '\0';
        const char *key = kv, *val = eq + 1;
        loss_error e;
        int rc;
        if (val[0] == '[') {
            size_t n = 0;
            for (const char *p = val + 1; *p && *p != ']'; n++) {
                char *end;
                vec[n] = strtod(p, &end);
                p = *end == ';' ? end + 1 : end;
            }
            rc = loss_spec_set_vector(s, key, vec, n, &e);
        } else if (!strcmp(val, "true") || !strcmp(val, "false")) {
            rc = loss_spec_set_bool(s, key, val[0] == 't', &e);
        } else {
            char *end;
            double d = strtod(val, &end);
            rc = *end ? loss_spec_set_string(s, key, val, &e)
                      : loss_spec_set_number(s, key, d, &e);
        }
        if (rc) {
            fprintf(stderr, "bad test parameter %s=%s: %s\n", key, val, e.message);
            exit(2);
        }
    }
}

static double cost_of(const loss_spec *s, inputs *in, const fd_case *c)
{
    loss_plan p;
    loss_result r;
    loss_error e;
    int rc = loss_plan_init(&p, s, in->t, c->weights ? &in->wt : NULL, c->reduction, &e);
    if (!rc) rc = loss_eval(&p, NULL, &r, &e);
    loss_plan_free(&p);
    if (rc) {
        fprintf(stderr, "%s: %s\n", c->loss, e.message);
        exit(2);
    }
    return r.cost;
}

static int skipped = 0, compared = 0;

static void check_case(const fd_case *c, unsigned long long seed)
{
    rng r = {seed};
    inputs in;
    make_inputs(c->variant, &r, &in);
    loss_spec s;
    loss_error e;
    CHECK(loss_spec_init(&s, c->loss, &e) == 0, "%s", e.message);
    apply_params(&s, c->params, in.vec);
    if (c->weights) {
        size_t n = in.t[0].shape[0],
               sz = c->weights == 1 ? n : loss_tensor_size(&in.t[0]);
        in.w = malloc(sz * sizeof(double));
        for (size_t k = 0; k < sz; k++)
            in.w[k] = k % 5 == 3 ? 0.0 : 0.2 + 2 * rng_uniform(&r);
        in.wt = c->weights == 1 ? (loss_tensor){.data = in.w, .rank = 1, .shape = {n}}
                                : in.t[0];
        in.wt.data = in.w;
    }
    loss_plan p;
    int rc = loss_plan_init(&p, &s, in.t, c->weights ? &in.wt : NULL, c->reduction, &e);
    CHECK(rc == 0, "%s(%s): %s", c->loss, c->params, e.message);
    if (rc) return;
    loss_outputs out = {0};
    for (size_t i = 0; i < p.desc->n_inputs; i++)
        if (p.desc->inputs[i].differentiable)
            out.grads[i] = calloc(p.input_size[i], sizeof(double));
    loss_result res;
    CHECK(loss_eval(&p, &out, &res, &e) == 0, "%s", e.message);
    for (size_t i = 0; i < p.desc->n_inputs; i++) {
        if (!out.grads[i]) continue;
        double gmax = 0;
        for (size_t k = 0; k < p.input_size[i]; k++)
            gmax = fmax(gmax, fabs(out.grads[i][k]));
        for (size_t k = 0; k < p.input_size[i]; k++) {
            double x0 = in.data[i][k], h = 1e-5 * fmax(1.0, fabs(x0));
            in.data[i][k] = x0 + h;
            double fp = cost_of(&s, &in, c);
            in.data[i][k] = x0 - h;
            double fm = cost_of(&s, &in, c);
            in.data[i][k] = x0;
            double f0 = cost_of(&s, &in, c);
            double right = (fp - f0) / h, left = (f0 - fm) / h,
                   central = (fp - fm) / (2 * h);
            double g = out.grads[i][k];
            if (fabs(right - left) > 1e-3 * fmax(fmax(fabs(right), fabs(left)), 1e-6)) {
                skipped++; /* a kink between x - h and x + h */
                continue;
            }
            compared++;
            double tol = 1e-6 * fmax(fabs(g), fmax(1e-2 * gmax, 1e-9));
            CHECK(fabs(central - g) <= tol,
                  "%s(%s) red=%d w=%d: d cost/d %s[%zu]: analytic %.12g, "
                  "finite difference %.12g",
                  c->loss, c->params, c->reduction, c->weights, p.desc->inputs[i].name, k,
                  g, central);
        }
        free(out.grads[i]);
    }
    loss_plan_free(&p);
    free_inputs(&in);
}

/* dJ/ds of the uncertainty weighting, against finite differences of the data term. */
static void check_weighting(void)
{
    double cost[3] = {0.7, 2.5, 0.05}, s[3] = {0.3, -0.4, 1.2}, g[3];
    for (int scheme = LOSS_WEIGHTING_LOG_SIGMA; scheme <= LOSS_WEIGHTING_LOG_VARIANCE;
         scheme++) {
        loss_weighting_out o = {NULL, NULL, g, NULL, 0};
        loss_error e;
        CHECK(loss_weighting_eval((loss_weighting)scheme, 3, cost, s, &o, &e) == 0, "%s",
              e.message);
        for (int i = 0; i < 3; i++) {
            double s0 = s[i], h = 1e-6, jp, jm;
            loss_weighting_out q = {0};
            s[i] = s0 + h;
            loss_weighting_eval((loss_weighting)scheme, 3, cost, s, &q, &e);
            jp = q.data_term;
            s[i] = s0 - h;
            loss_weighting_eval((loss_weighting)scheme, 3, cost, s, &q, &e);
            jm = q.data_term;
            s[i] = s0;
            double fd = (jp - jm) / (2 * h);
            CHECK(fabs(fd - g[i]) <= 1e-7 * fmax(1.0, fabs(g[i])),
                  "weighting %d: dJ/ds[%d] analytic %.12g, fd %.12g", scheme, i, g[i],
                  fd);
            /* dJ/dL_i = the effective weight, which scales the task gradients. */
            double L0 = cost[i];
            cost[i] = L0 + h;
            loss_weighting_eval((loss_weighting)scheme, 3, cost, s, &q, &e);
            jp = q.data_term;
            cost[i] = L0 - h;
            loss_weighting_eval((loss_weighting)scheme, 3, cost, s, &q, &e);
            jm = q.data_term;
            cost[i] = L0;
            double eff = loss_weighting_factor((loss_weighting)scheme, s[i]);
            CHECK(fabs((jp - jm) / (2 * h) - eff) <= 1e-7,
                  "weighting %d: dJ/dL[%d] %.12g vs %.12g", scheme, i,
                  (jp - jm) / (2 * h), eff);
        }
    }
}

static void check_penalty(const char *kind, const char *k1, double v1, const char *k2,
                          double v2, const char *k3, double v3)
{
    loss_penalty pen;
    loss_error e;
    CHECK(loss_penalty_init(&pen, kind, &e) == 0, "%s", e.message);
    loss_param_set ps = loss_penalty_params(&pen);
    if (k1 && !strcmp(k1, "prior"))
        CHECK(loss_params_set_string(
                  &ps, k1, !strcmp(kind, "l2") ? "gaussian" : "laplace", &e) == 0,
              "%s", e.message);
    else if (k1)
        CHECK(loss_params_set_number(&ps, k1, v1, &e) == 0, "%s", e.message);
    if (k2) CHECK(loss_params_set_number(&ps, k2, v2, &e) == 0, "%s", e.message);
    if (k3) CHECK(loss_params_set_number(&ps, k3, v3, &e) == 0, "%s", e.message);
    CHECK(loss_penalty_resolve(&pen, &e) == 0, "%s: %s", kind, e.message);
    double th[6] = {0.5, -1.2, 3.0, 0.01, -0.3, 2.2}, g[6], pv, pp, pm;
    CHECK(loss_penalty_eval(&pen, th, 6, &pv, g, &e) == 0, "%s", e.message);
    for (int i = 0; i < 6; i++) {
        double t0 = th[i], h = 1e-6;
        th[i] = t0 + h;
        loss_penalty_eval(&pen, th, 6, &pp, NULL, &e);
        th[i] = t0 - h;
        loss_penalty_eval(&pen, th, 6, &pm, NULL, &e);
        th[i] = t0;
        double fd = (pp - pm) / (2 * h);
        CHECK(fabs(fd - g[i]) <= 1e-7 * fmax(1.0, fabs(g[i])),
              "%s: dP/dtheta[%d] %.12g vs fd %.12g", kind, i, g[i], fd);
    }
}

int main(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (unsigned long long seed = 1; seed <= 3; seed++)
            check_case(&cases[i], 0x9E3779B97F4A7C15ULL * seed + i);
    check_weighting();
    check_penalty("l2", "lambda", 0.3, NULL, 0, NULL, 0);
    check_penalty("l2", "prior", 0, "sigma", 2.0, "dataset_size", 1000);
    check_penalty("l1", "lambda", 0.7, "dataset_size", 50, NULL, 0);
    check_penalty("l1", "prior", 0, "b", 0.25, NULL, 0);
    check_penalty("elastic_net", "lambda", 0.4, "l1_ratio", 0.3, NULL, 0);
    check_penalty("elastic_net", "lambda", 1.5, NULL, 0, NULL, 0);
    printf("test_gradcheck: %d elements compared, %d skipped at kinks\n", compared,
           skipped);
    CHECK(skipped * 50 < compared, "too many kinks skipped: %d of %d", skipped,
          compared + skipped);
    return test_report("test_gradcheck");
}
