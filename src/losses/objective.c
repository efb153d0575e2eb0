/* objective.c - task weighting (fixed, or Kendall et al.'s learned uncertainty in
 * two parametrizations) and regularization penalties (L2, L1, elastic net, their
 * prior forms and the dataset-size scaling). */
#include "loss_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- task weighting ---- */

double loss_weighting_factor(loss_weighting scheme, double param)
{
    switch (scheme) {
    case LOSS_WEIGHTING_FIXED:
        return param;
    case LOSS_WEIGHTING_LOG_SIGMA:
        return 0.5 * exp(-2.0 * param); /* 1/(2σ²) */
    case LOSS_WEIGHTING_LOG_VARIANCE:
        return 0.5 * exp(-param); /* 1/(2σ²) */
    }
    return NAN;
}

int loss_weighting_eval(loss_weighting scheme, size_t n, const double *cost,
                        const double *param, loss_weighting_out *out, loss_error *err)
{
    static const char *const names[] = {"weight", "log_sigma", "log_variance"};
    out->data_term = 0;
    if (scheme < LOSS_WEIGHTING_FIXED || scheme > LOSS_WEIGHTING_LOG_VARIANCE)
        return loss__fail(err, LOSS_EUNKNOWN_KIND, LOSS_AT_PARAM, "scheme", -1,
                          "unknown weighting scheme %d", (int)scheme);
    double *contrib = malloc((n ? n : 1) * sizeof *contrib);
    if (!contrib)
        return loss__fail(err, LOSS_ENOMEM, LOSS_AT_NONE, NULL, -1, "out of memory");
    const char *name = names[scheme];
    for (size_t i = 0; i < n; i++) {
        double s = param[i], L = cost[i];
        if (!isfinite(s) || (scheme == LOSS_WEIGHTING_FIXED && s < 0)) {
            free(contrib);
            return loss__fail(err, LOSS_EPARAM_RANGE, LOSS_AT_PARAM, name, (long long)i,
                              "%s[%zu] must be a finite number%s, got %g", name, i,
                              scheme == LOSS_WEIGHTING_FIXED ? " >= 0" : "", s);
        }
        double eff = loss_weighting_factor(scheme, s), c, ds;
        switch (scheme) {
        case LOSS_WEIGHTING_LOG_SIGMA: /* L/(2σ²) + log σ */
            c = eff * L + s;
            ds = -2.0 * eff * L + 1.0;
            break;
        case LOSS_WEIGHTING_LOG_VARIANCE: /* ½e^{-s}L + ½s */
            c = eff * L + 0.5 * s;
            ds = -eff * L + 0.5;
            break;
        default:
            c = eff * L;
            ds = 0.0;
            break;
        }
        if (!isfinite(eff) || !isfinite(c) || !isfinite(ds)) {
            free(contrib);
            return loss__fail(err, LOSS_EOVERFLOW, LOSS_AT_PARAM, name, (long long)i,
                              "%s[%zu] = %g makes the task's weight overflow", name, i,
                              s);
        }
        contrib[i] = c;
        if (out->effective_weight) out->effective_weight[i] = eff;
        if (out->contribution) out->contribution[i] = c;
        if (out->grad_s) out->grad_s[i] = ds;
        /* Both parametrizations are minimised at σ² = L (d/dσ of L/(2σ²) + log σ). */
        if (out->optimal_sigma2) out->optimal_sigma2[i] = L > 0 ? L : NAN;
    }
    out->data_term = loss_sum(contrib, n);
    free(contrib);
    if (!isfinite(out->data_term))
        return loss__fail(err, LOSS_EOVERFLOW, LOSS_AT_NONE, NULL, -1,
                          "the data term is not representable");
    return 0;
}

/* ---- penalties ---- */

static const char *const kinds[] = {"l2", "l1", "elastic_net"};
static const char *const prior_choices[] = {"gaussian", "laplace", NULL};
enum { P_LAMBDA, P_PRIOR, P_SIGMA, P_B, P_L1_RATIO, P_DATASET_SIZE };

#define PEN_OFF(field) offsetof(loss_penalty, field)
static const loss_param_desc penalty_params[] = {
    {"lambda", LOSS_PARAM_NUMBER, "strength λ of the penalty", 0, 0, 0.0, INFINITY, 0, 0,
     NULL, PEN_OFF(lambda), 0},
    {"prior", LOSS_PARAM_ENUM,
     "instead of lambda: \"gaussian\" (with l2 and sigma, λ = 1/σ²) or \"laplace\" "
     "(with l1 and b, λ = 1/b)",
     0, 0, 0, 0, 0, 0, prior_choices, PEN_OFF(prior), 0},
    {"sigma", LOSS_PARAM_NUMBER, "scale of the Gaussian prior", 0, 0, 0.0, INFINITY,
     LOSS_MIN_EXCLUSIVE, 0, NULL, PEN_OFF(sigma), 0},
    {"b", LOSS_PARAM_NUMBER, "scale of the Laplace prior", 0, 0, 0.0, INFINITY,
     LOSS_MIN_EXCLUSIVE, 0, NULL, PEN_OFF(b), 0},
    {"l1_ratio", LOSS_PARAM_NUMBER, "elastic_net: share ρ of the L1 part", 1, 0.5, 0.0,
     1.0, 0, 0, NULL, PEN_OFF(l1_ratio), 0},
    {"dataset_size", LOSS_PARAM_INTEGER,
     "divide the penalty by the number of training examples n (exact MAP with "
     "mean-reduced minibatch costs)",
     0, 0, 1.0, 9007199254740992.0, 0, 0, NULL, PEN_OFF(dataset_size), 0},
};

const char *loss_penalty_kind_name(loss_penalty_kind kind)
{
    return (unsigned)kind < sizeof kinds / sizeof kinds[0] ? kinds[kind] : "?";
}

loss_param_set loss_penalty_params(loss_penalty *pen)
{
    return (loss_param_set){penalty_params,
                            sizeof penalty_params / sizeof penalty_params[0], pen,
                            &pen->given, &pen->present};
}

int loss_penalty_init(loss_penalty *pen, const char *kind, loss_error *err)
{
    memset(pen, 0, sizeof *pen);
    size_t k = 0;
    while (k < sizeof kinds / sizeof kinds[0] && strcmp(kinds[k], kind) != 0) k++;
    if (k == sizeof kinds / sizeof kinds[0])
        return loss__fail(err, LOSS_EUNKNOWN_KIND, LOSS_AT_PARAM, "kind", -1,
                          "unknown regularization kind \"%.40s\" (known: l2, l1, "
                          "elastic_net)",
                          kind);
    pen->kind = (loss_penalty_kind)k;
    loss_param_set ps = loss_penalty_params(pen);
    loss__params_defaults(&ps);
    return 0;
}

/* A parameter with a default (l1_ratio) counts when it is given, even at its
 * default; one without (lambda, prior, sigma, b, dataset_size) when it has a
 * value.  null is the same as leaving either out (loss_params_set_none). */
#define GIVEN(pen, i) (((pen)->given >> (i)) & 1u)
#define HAS(pen, i)   (((pen)->present >> (i)) & 1u)

int loss_penalty_resolve(loss_penalty *pen, loss_error *err)
{
    const char *kind = loss_penalty_kind_name(pen->kind);
    if (GIVEN(pen, P_L1_RATIO) && pen->kind != LOSS_PENALTY_ELASTIC_NET)
        return loss__fail(err, LOSS_EPARAM_CONFLICT, LOSS_AT_PARAM, "l1_ratio", -1,
                          "l1_ratio applies to elastic_net only, not %s", kind);
    if (HAS(pen, P_SIGMA) && !(HAS(pen, P_PRIOR) && pen->prior == LOSS_PRIOR_GAUSSIAN))
        return loss__fail(err, LOSS_EPARAM_CONFLICT, LOSS_AT_PARAM, "sigma", -1,
                          "sigma goes with \"prior\": \"gaussian\"");
    if (HAS(pen, P_B) && !(HAS(pen, P_PRIOR) && pen->prior == LOSS_PRIOR_LAPLACE))
        return loss__fail(err, LOSS_EPARAM_CONFLICT, LOSS_AT_PARAM, "b", -1,
                          "b goes with \"prior\": \"laplace\"");
    if (HAS(pen, P_PRIOR)) {
        if (HAS(pen, P_LAMBDA))
            return loss__fail(err, LOSS_EPARAM_CONFLICT, LOSS_AT_PARAM, "lambda", -1,
                              "give lambda or a prior, not both");
        if (pen->prior == LOSS_PRIOR_GAUSSIAN) {
            if (pen->kind != LOSS_PENALTY_L2)
                return loss__fail(err, LOSS_EPARAM_CONFLICT, LOSS_AT_PARAM, "prior", -1,
                                  "a gaussian prior is an l2 penalty, not %s", kind);
            if (!HAS(pen, P_SIGMA))
                return loss__fail(err, LOSS_EMISSING_PARAM, LOSS_AT_PARAM, "sigma", -1,
                                  "a gaussian prior needs sigma");
            pen->lambda = 1.0 / (pen->sigma * pen->sigma);
        } else {
            if (pen->kind != LOSS_PENALTY_L1)
                return loss__fail(err, LOSS_EPARAM_CONFLICT, LOSS_AT_PARAM, "prior", -1,
                                  "a laplace prior is an l1 penalty, not %s", kind);
            if (!HAS(pen, P_B))
                return loss__fail(err, LOSS_EMISSING_PARAM, LOSS_AT_PARAM, "b", -1,
                                  "a laplace prior needs b");
            pen->lambda = 1.0 / pen->b;
        }
        if (!isfinite(pen->lambda))
            return loss__fail(err, LOSS_EPARAM_RANGE, LOSS_AT_PARAM,
                              pen->prior == LOSS_PRIOR_GAUSSIAN ? "sigma" : "b", -1,
                              "the prior's scale is too small: lambda overflows");
    } else if (!HAS(pen, P_LAMBDA)) {
        return loss__fail(err, LOSS_EMISSING_PARAM, LOSS_AT_PARAM, "lambda", -1,
                          "%s needs lambda (or a prior)", kind);
    }
    pen->present |= 1u << P_LAMBDA;
    return 0;
}

/* Neumaier's compensated sum: penalties are evaluated on one thread, so a
 * sequential sum is deterministic, and the compensation keeps it accurate. */
typedef struct {
    double s, c;
} ksum;
static inline void ksum_add(ksum *k, double x)
{
    double t = k->s + x;
    k->c += fabs(k->s) >= fabs(x) ? (k->s - t) + x : (x - t) + k->s;
    k->s = t;
}

int loss_penalty_eval(const loss_penalty *pen, const double *theta, size_t n,
                      double *penalty, double *grad, loss_error *err)
{
    *penalty = 0;
    if (grad) memset(grad, 0, n * sizeof *grad);
    for (size_t k = 0; k < n; k++)
        if (!isfinite(theta[k]))
            return loss__fail(err, LOSS_ENONFINITE, LOSS_AT_PARAM, "params", (long long)k,
                              "params[%zu] is %s", k,
                              isnan(theta[k]) ? "NaN" : "infinite");
    double lam = pen->lambda,
           scale = HAS(pen, P_DATASET_SIZE) ? 1.0 / pen->dataset_size : 1.0;
    double rho = pen->kind == LOSS_PENALTY_L1   ? 1.0
                 : pen->kind == LOSS_PENALTY_L2 ? 0.0
                                                : pen->l1_ratio;
    ksum sq = {0, 0}, ab = {0, 0};
    int grad_finite = 1;
    for (size_t k = 0; k < n; k++) {
        double t = theta[k], sign = (t > 0) - (t < 0);
        if (rho < 1.0) ksum_add(&sq, t * t);
        if (rho > 0.0) ksum_add(&ab, fabs(t));
        if (grad) {
            grad[k] = lam * scale * (rho * sign + (1.0 - rho) * t);
            grad_finite &= isfinite(grad[k]) != 0;
        }
    }
    double l1 = ab.s + ab.c, l2 = sq.s + sq.c;
    double v = lam * (rho * l1 + 0.5 * (1.0 - rho) * l2) * scale;
    if (pen->kind == LOSS_PENALTY_L2) v = 0.5 * lam * l2 * scale;
    if (pen->kind == LOSS_PENALTY_L1) v = lam * l1 * scale;
    if (!isfinite(v) || !grad_finite) {
        if (grad) memset(grad, 0, n * sizeof *grad);
        return loss__fail(err, LOSS_EOVERFLOW, LOSS_AT_PARAM, "params", -1,
                          "the %s penalty is not representable",
                          loss_penalty_kind_name(pen->kind));
    }
    *penalty = v;
    return 0;
}
