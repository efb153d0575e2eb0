/* bce.c - binary cross-entropy on probabilities (PyTorch BCELoss, with its -100 log
 * clamp and its backward formula) or on logits (PyTorch BCEWithLogitsLoss, stable
 * form), with pos_weight and label smoothing y' = y(1 - eps) + eps/2. */
#include "loss_internal.h"

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

static void kernel(const loss_plan *p, size_t t0, size_t n, const double *w, double *l,
                   double *const *aux, double *const *g)
{
    const double *x = p->in[PRED].data + t0, *y = p->in[TARGET].data + t0;
    double *gx = g[PRED] ? g[PRED] + t0 : NULL, *acc = aux[0];
    double pw = p->spec.pos_weight, eps = p->spec.label_smoothing, s = p->gscale;
    int logits = p->spec.from == LOSS_FROM_LOGITS;
    for (size_t i = 0; i < n; i++) {
        double t = eps > 0 ? y[i] * (1.0 - eps) + 0.5 * eps : y[i];
        double xi = x[i], li, dl;
        if (logits) {
            /* (1-t)x + (1+(pw-1)t) softplus(-x), the form of BCEWithLogitsLoss. */
            double c = 1.0 + (pw - 1.0) * t;
            li = (1.0 - t) * xi + c * loss__softplus(-xi);
            dl = c * loss__sigmoid(xi) - pw * t;
        } else {
            /* PyTorch's BCELoss: log(1 - p) (not log1p), each log clamped at -100,
             * and the backward (p - y) / max(p(1-p), eps) extended to pos_weight. */
            double lp = loss__clamped_log(xi), lq = loss__clamped_log(1.0 - xi);
            li = -(pw * t * lp + (1.0 - t) * lq);
            double den = xi * (1.0 - xi);
            dl = ((1.0 - t) * xi - pw * t * (1.0 - xi)) /
                 (den > LOSS__BCE_EPS ? den : LOSS__BCE_EPS);
        }
        l[i] = li;
        if (gx) gx[i] = s * w[i] * dl;
        int pred_pos = logits ? xi >= 0.0 : xi >= 0.5;
        acc[i] = pred_pos == (y[i] >= 0.5);
    }
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
