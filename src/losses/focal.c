/* focal.c - focal loss, binary (sigmoid, element-wise) or multi-class (softmax).
 *
 * Binary: with z = -x for y = 1 and z = x for y = 0, 1 - p_t = sigmoid(z) and the
 * cross-entropy is softplus(z), so l = α_t sigmoid(z)^γ softplus(z) is evaluated
 * without the cancellation in 1 - p_t that torchvision's formula suffers for large
 * logits, and its derivative α_t sigmoid(z)^γ [γ(1-sigmoid(z)) softplus(z) +
 * sigmoid(z)] has no (1-p_t)^(γ-1) factor, so γ < 1 gives no NaN at saturation. */
#include "loss_internal.h"
#include "vmath.h"

#include <stdio.h>
#include <string.h>

enum { PRED, TARGET };
enum { MODE_BINARY = 0, MODE_MULTI = 1 };
enum { P_FROM, P_GAMMA, P_ALPHA };

static const char *const from_choices[] = {"probabilities", "logits", NULL};

static const loss_input_desc inputs[] = {
    {"predictions", "[N,…] (binary) or [N,K] (multi-class)", 1,
     "logits, or probabilities with from=probabilities"},
    {"targets", "same as predictions, in {0,1} (binary); or [N] class indices", 0,
     "binary labels, or the class of each example"},
};

static const loss_param_desc params[] = {
    {"from", LOSS_PARAM_ENUM, "whether predictions are logits or probabilities", 1,
     LOSS_FROM_LOGITS, 0, 0, 0, 0, from_choices, LOSS__OFF(from), 0},
    {"gamma", LOSS_PARAM_NUMBER, "focusing exponent; 0 gives cross-entropy", 1, 2.0, 0.0,
     INFINITY, 0, 0, NULL, LOSS__OFF(gamma), 0},
    {"alpha", LOSS_PARAM_NUMBER_OR_VECTOR,
     "binary: α in [0,1], α_t = αy + (1-α)(1-y); multi-class: a number or [K] per-class "
     "weights, α_t = α_y",
     0, 0, 0.0, 1.0, 0, 0.0, NULL, LOSS__OFF(alpha), LOSS__OFF(alpha_vec)},
};

#define HAS_ALPHA(p) (((p)->spec.present >> P_ALPHA) & 1u)

static int shapes(loss_plan *p, loss_error *err)
{
    const loss_tensor *x = &p->in[PRED], *t = &p->in[TARGET];
    int same = x->rank == t->rank;
    for (size_t k = 0; same && k < x->rank; k++) same = x->shape[k] == t->shape[k];
    char sx[96], st[96];
    if (same) {
        p->mode = MODE_BINARY;
        if (p->spec.alpha_vec.data)
            return loss__fail(err, LOSS_EPARAM_CONFLICT, LOSS_AT_PARAM, "alpha", -1,
                              "alpha must be a number in [0, 1] for binary focal loss "
                              "(targets shaped like predictions); a [K] vector needs "
                              "multi-class targets [N]");
        loss__set_elementwise(p);
        return 0;
    }
    if (x->rank == 2 && t->rank == 1 && t->shape[0] == x->shape[0]) {
        p->mode = MODE_MULTI;
        p->k = x->shape[1];
        if (p->k < 2)
            return loss__fail(err, LOSS_ESHAPE, LOSS_AT_INPUT, "predictions", -1,
                              "multi-class focal loss needs K >= 2 classes, predictions "
                              "has shape %s; for binary focal loss give targets the "
                              "shape of predictions",
                              loss__shape_str(x, sx, sizeof sx));
        if (p->spec.alpha_vec.data && p->spec.alpha_vec.len != p->k)
            return loss__fail(
                err, LOSS_ESHAPE, LOSS_AT_PARAM, "alpha", -1,
                "alpha has %zu entries but predictions have K = %zu classes",
                p->spec.alpha_vec.len, p->k);
        loss__set_rows(p, p->k);
        return 0;
    }
    return loss__fail(err, LOSS_ESHAPE, LOSS_AT_INPUT, "targets", -1,
                      "inputs.targets has shape %s but must be %s (binary) or [%zu] "
                      "(class indices, with predictions [N, K])",
                      loss__shape_str(t, st, sizeof st),
                      loss__shape_str(x, sx, sizeof sx), x->shape[0]);
}

static int values(loss_plan *p, loss_error *err)
{
    int rc = 0;
    if (p->spec.from == LOSS_FROM_PROBABILITIES)
        rc = loss__need_within(p, PRED, 0.0, 1.0, LOSS_EPROBABILITY, err);
    if (rc) return rc;
    if (p->mode == MODE_BINARY) return loss__need_labels(p, TARGET, 0.0, 1.0, err);
    const double *y = p->in[TARGET].data;
    for (size_t i = 0; i < p->n; i++) {
        if (floor(y[i]) != y[i])
            return loss__class_index_error(p, TARGET, i, "is not an integer class index",
                                           err);
        if (y[i] < 0 || y[i] >= (double)p->k) {
            char why[64];
            snprintf(why, sizeof why, "is not a class index in [0, %zu)", p->k);
            return loss__class_index_error(p, TARGET, i, why, err);
        }
    }
    return 0;
}

/* γ q^(γ-1), the derivative of q^γ, taken as 0 where q = 0 (its limit times the
 * vanishing factor it multiplies). */
/* q^γ and γ q^(γ-1) (the latter taken as 0 where q = 0: its limit times the
 * vanishing factor it multiplies), for the four kinds of γ: 0, 1, 2 and any
 * other, which goes through exp(γ log q).  gk is a constant at every call, so
 * each loop is compiled for its γ and the selects below cost nothing. */
enum { G0, G1, G2, GANY };

static inline double powq(double q, double gamma, int gk)
{
    return gk == G2   ? q * q
           : gk == G1 ? q
           : gk == G0 ? 1.0
                      : loss__vexp(gamma * loss__vlog(q));
}

static inline double dpowq(double q, double gamma, int gk)
{
    double d = gk == G2   ? 2.0 * q
               : gk == G1 ? 1.0
               : gk == G0 ? 0.0
                          : gamma * loss__vexp((gamma - 1.0) * loss__vlog(q));
    return q == 0.0 ? 0.0 : d;
}

static inline void binary_logits(const double *restrict x, const double *restrict y,
                                 size_t n, const double *restrict w, double s,
                                 double gamma, int gk, double alpha, int has_alpha,
                                 double *restrict l, double *restrict acc,
                                 double *restrict g)
{
    for (size_t i = 0; i < n; i++) {
        int pos = y[i] == 1.0;
        double a = has_alpha ? (pos ? alpha : 1.0 - alpha) : 1.0;
        double z = pos ? -x[i] : x[i];
        double e = loss__vexp(-fabs(z)), inv = 1.0 / (1.0 + e);
        double q = z >= 0 ? inv : e * inv;  /* sigmoid(z) = 1 - p_t */
        double qm = z >= 0 ? e * inv : inv; /* sigmoid(-z) = p_t */
        double sp = loss__max(z, 0.0) + loss__vlog1p(e);
        double m = powq(q, gamma, gk);
        l[i] = a * m * sp;
        double dz = a * m * (gamma * qm * sp + q);
        g[i] = s * w[i] * (pos ? -dz : dz);
        acc[i] = (x[i] >= 0.0) == pos ? 1.0 : 0.0;
    }
}

static inline void binary_probs(const double *restrict x, const double *restrict y,
                                size_t n, const double *restrict w, double s,
                                double gamma, int gk, double alpha, int has_alpha,
                                double *restrict l, double *restrict acc,
                                double *restrict g)
{
    for (size_t i = 0; i < n; i++) {
        int pos = y[i] == 1.0;
        double a = has_alpha ? (pos ? alpha : 1.0 - alpha) : 1.0;
        double pr = x[i], q = pos ? 1.0 - pr : pr;
        double ce = -loss__max(loss__vlog(pos ? pr : 1.0 - pr), LOSS__LOG_CLAMP);
        double den = loss__max(pr * (1.0 - pr), LOSS__BCE_EPS);
        double dce =
            ((pos ? 0.0 : pr) - (pos ? 1.0 - pr : 0.0)) / den; /* BCELoss' backward */
        double m = powq(q, gamma, gk), dm = dpowq(q, gamma, gk) * (pos ? -1.0 : 1.0);
        l[i] = a * m * ce;
        g[i] = s * w[i] * (a * (dm * ce + m * dce));
        acc[i] = (pr >= 0.5) == pos ? 1.0 : 0.0;
    }
}

/* One compiled loop per (form, kind of γ). */
#define FOCAL_LOOPS(name, body)                                                      \
    LOSS__KERNEL static void name(                                                   \
        const double *restrict x, const double *restrict y, size_t n,                \
        const double *restrict w, double s, double gamma, int gk, double alpha,      \
        int has_alpha, double *restrict l, double *restrict acc, double *restrict g) \
    {                                                                                \
        switch (gk) {                                                                \
        case G0:                                                                     \
            body(x, y, n, w, s, gamma, G0, alpha, has_alpha, l, acc, g);             \
            break;                                                                   \
        case G1:                                                                     \
            body(x, y, n, w, s, gamma, G1, alpha, has_alpha, l, acc, g);             \
            break;                                                                   \
        case G2:                                                                     \
            body(x, y, n, w, s, gamma, G2, alpha, has_alpha, l, acc, g);             \
            break;                                                                   \
        default:                                                                     \
            body(x, y, n, w, s, gamma, GANY, alpha, has_alpha, l, acc, g);           \
            break;                                                                   \
        }                                                                            \
    }
FOCAL_LOOPS(binary_logits_k, binary_logits)
FOCAL_LOOPS(binary_probs_k, binary_probs)

static int gamma_kind(double gamma)
{
    return gamma == 0.0 ? G0 : gamma == 1.0 ? G1 : gamma == 2.0 ? G2 : GANY;
}

static void multi(const loss_plan *p, size_t t0, size_t n, const double *w, double *l,
                  double *acc, double *grad)
{
    size_t K = p->k;
    double gamma = p->spec.gamma;
    int gk = gamma_kind(gamma);
    const double *av = p->spec.alpha_vec.data;
    for (size_t i = 0; i < n; i++) {
        size_t row = t0 + i, c = (size_t)p->in[TARGET].data[row], top;
        const double *x = p->in[PRED].data + row * K;
        double *g = grad ? grad + row * K : NULL;
        double a = av ? av[c] : HAS_ALPHA(p) ? p->spec.alpha : 1.0;
        double cs = w[i] * p->gscale;
        double m = loss__row_max(x, K, &top), s = 0, rest = 0, u, du_dp = 0;
        acc[i] = top == c ? 1.0 : 0.0;
        /* The loss is a function of u = log p_t: log-softmax of the logits, or the
         * clamped log of the given probability (then constant where the clamp is
         * active, so the gradient is 0 there, p_t = 0 included). */
        if (p->spec.from == LOSS_FROM_LOGITS) {
            /* g holds the exponentials; u as cross-entropy's -log p_t */
            rest = loss__row_expsum(x, K, m, top, g);
            s = 1.0 + rest;
            u = (x[c] - m) - loss__vlog1p(rest);
        } else {
            double lg = loss__vlog(x[c]);
            int clamped = !(lg >= LOSS__LOG_CLAMP);
            u = clamped ? LOSS__LOG_CLAMP : lg;
            du_dp = clamped ? 0.0 : 1.0 / x[c];
        }
        double pt = loss__vexp(u), q = -loss__vexpm1(u), mq = powq(q, gamma, gk);
        l[i] = -a * mq * u;
        if (!g) continue;
        /* dl/du = α[γ q^(γ-1) p_t u - q^γ], with q = 1 - p_t. */
        double t1 = dpowq(q, gamma, gk) * pt * u;
        double dldu = a * (t1 - mq) * cs;
        if (p->spec.from == LOSS_FROM_LOGITS) {
            /* du/dx_k = [k == c] - softmax_k */
            loss__row_scale(g, K, -dldu / s);
            /* 1 - p_c, which is rest/s for the top class (without cancelling) */
            g[c] = c == top ? dldu * rest / s : g[c] + dldu;
        } else {
            memset(g, 0, K * sizeof *g);
            g[c] = dldu * du_dp;
        }
    }
}

static void kernel(const loss_plan *p, size_t t0, size_t n, const double *w, double *l,
                   double *const *aux, double *const *g)
{
    if (p->mode == MODE_MULTI) {
        multi(p, t0, n, w, l, aux[0], g[PRED]);
        return;
    }
    const double *x = p->in[PRED].data + t0, *y = p->in[TARGET].data + t0;
    double scratch[LOSS__BLOCK_TERMS];
    double *gx = g[PRED] ? g[PRED] + t0 : scratch;
    int gk = gamma_kind(p->spec.gamma);
    if (p->spec.from == LOSS_FROM_LOGITS)
        binary_logits_k(x, y, n, w, p->gscale, p->spec.gamma, gk, p->spec.alpha,
                        HAS_ALPHA(p), l, aux[0], gx);
    else
        binary_probs_k(x, y, n, w, p->gscale, p->spec.gamma, gk, p->spec.alpha,
                       HAS_ALPHA(p), l, aux[0], gx);
}

static const loss__ops ops = {shapes, values, NULL, kernel, 1};

const loss_desc loss__focal = {
    "focal",
    "classification",
    "Focal loss (Lin et al. 2017): binary with a sigmoid (element-wise, torchvision's "
    "sigmoid_focal_loss when alpha is given) or multi-class with a softmax; gamma = 0 "
    "without alpha is cross-entropy exactly.",
    "l = -α_t (1 - p_t)^γ log p_t",
    "shape of predictions (binary) or [N] (multi-class)",
    1,
    NULL,
    sizeof params / sizeof params[0],
    params,
    2,
    inputs,
    &ops,
};
