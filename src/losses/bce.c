/* bce.c - binary cross-entropy on probabilities (PyTorch BCELoss, with its -100 log
 * clamp and its backward formula) or on logits (PyTorch BCEWithLogitsLoss, stable
 * form), with pos_weight and label smoothing y' = y(1 - eps) + eps/2. */
#include "loss_internal.h"
#include "vmath.h"

enum { PRED, TARGET };

static const char *const from_choices[] = {"probabilities", "logits", NULL};

static const loss_input_desc inputs[] = {
    {"predictions", "[N,…]", 1, "probabilities in [0, 1], or logits"},
    {"targets", "same as predictions", 0, "target probabilities in [0, 1]"},
};

static const loss_param_desc params[] = {
    {"from", LOSS_PARAM_ENUM, "whether predictions are probabilities or logits", 1,
     LOSS_FROM_PROBABILITIES, 0, 0, 0, 0, from_choices, LOSS__OFF(from), 0},
    {"pos_weight", LOSS_PARAM_NUMBER, "weight of the positive term", 1, 1.0, 0.0,
     INFINITY, LOSS_MIN_EXCLUSIVE, 0, NULL, LOSS__OFF(pos_weight), 0},
    {"label_smoothing", LOSS_PARAM_NUMBER, "targets become y(1-ε)+ε/2", 1, 0.0, 0.0, 1.0,
     LOSS_MAX_EXCLUSIVE, 0, NULL, LOSS__OFF(label_smoothing), 0},
};

static int shapes(loss_plan *p, loss_error *err)
{
    int rc = loss__need_same_shape(p, TARGET, PRED, err);
    if (rc) return rc;
    loss__set_elementwise(p);
    return 0;
}

static int values(loss_plan *p, loss_error *err)
{
    int rc = 0;
    if (p->spec.from == LOSS_FROM_PROBABILITIES)
        rc = loss__need_within(p, PRED, 0.0, 1.0, LOSS_EPROBABILITY, err);
    if (!rc) rc = loss__need_within(p, TARGET, 0.0, 1.0, LOSS_EPROBABILITY, err);
    return rc;
}

/* Logits: loss__vlogistic's one e = exp(-|x|) serves softplus(±x) and the sigmoids
 * σ(±x); its selects keep the loop branch-free, so it vectorizes.  The
 * loss is (1-y) softplus(x) + w₊ y softplus(-x), a sum of two non-negative terms,
 * and the gradient (1-y) σ(x) - w₊ y σ(-x): PyTorch's (1-y) x + c softplus(-x)
 * and c σ(x) - w₊ y (c = 1 + (w₊-1) y) cancel to nothing for confident answers
 * (x = -37, y = 0 gave a loss of 0 instead of 8.5e-17). */
LOSS__KERNEL static void logits(const double *restrict x, const double *restrict y,
                                size_t n, const double *restrict w, double s, double pw,
                                double eps, double *restrict l, double *restrict acc,
                                double *restrict gx)
{
    for (size_t i = 0; i < n; i++) {
        double t = y[i] * (1.0 - eps) + 0.5 * eps, xi = x[i];
        double u = (1.0 - y[i]) * (1.0 - eps) + 0.5 * eps; /* 1 - t, not rounded from t */
        loss__logistic f = loss__vlogistic(xi);
        l[i] = u * f.sp + pw * t * f.sp_neg;
        gx[i] = s * w[i] * (u * f.sig - pw * t * f.sig_neg);
        acc[i] = (xi >= 0.0) == (y[i] >= 0.5) ? 1.0 : 0.0;
    }
}

/* Probabilities: PyTorch's BCELoss, log(1 - p) (not log1p), each log clamped at
 * -100 (the max also turns log(0) = -inf into -100), and its backward
 * (p - y) / max(p(1-p), eps) extended to pos_weight. */
LOSS__KERNEL static void probabilities(const double *restrict x, const double *restrict y,
                                       size_t n, const double *restrict w, double s,
                                       double pw, double eps, double *restrict l,
                                       double *restrict acc, double *restrict gx)
{
    for (size_t i = 0; i < n; i++) {
        double t = y[i] * (1.0 - eps) + 0.5 * eps, xi = x[i];
        double u = (1.0 - y[i]) * (1.0 - eps) + 0.5 * eps; /* 1 - t, not rounded from t */
        double lp = loss__max(loss__vlog(xi), LOSS__LOG_CLAMP);
        double lq = loss__max(loss__vlog(1.0 - xi), LOSS__LOG_CLAMP);
        l[i] = -(pw * t * lp + u * lq);
        double den = loss__max(xi * (1.0 - xi), LOSS__BCE_EPS);
        gx[i] = s * w[i] * ((u * xi - pw * t * (1.0 - xi)) / den);
        acc[i] = (xi >= 0.5) == (y[i] >= 0.5) ? 1.0 : 0.0;
    }
}

static void kernel(const loss_plan *p, size_t t0, size_t n, const double *w, double *l,
                   double *const *aux, double *const *g)
{
    const double *x = p->in[PRED].data + t0, *y = p->in[TARGET].data + t0;
    double scratch[LOSS__BLOCK_TERMS]; /* an unconditional store vectorizes */
    double *gx = g[PRED] ? g[PRED] + t0 : scratch;
    if (p->spec.from == LOSS_FROM_LOGITS)
        logits(x, y, n, w, p->gscale, p->spec.pos_weight, p->spec.label_smoothing, l,
               aux[0], gx);
    else
        probabilities(x, y, n, w, p->gscale, p->spec.pos_weight, p->spec.label_smoothing,
                      l, aux[0], gx);
}

static const loss__ops ops = {shapes, values, NULL, kernel, 1};

const loss_desc loss__bce = {
    "bce",
    "classification",
    "Binary cross-entropy on probabilities (PyTorch BCELoss, logs clamped at -100) or "
    "on logits (PyTorch BCEWithLogitsLoss).",
    "l = -[w₊·y log p + (1-y) log(1-p)], y ← y(1-ε)+ε/2",
    "shape of predictions",
    1,
    NULL,
    sizeof params / sizeof params[0],
    params,
    2,
    inputs,
    &ops,
};
