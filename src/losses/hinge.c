/* hinge.c - the (squared) hinge loss on scores with labels in {-1, +1}. */
#include "loss_internal.h"

enum { PRED, TARGET };

static const loss_input_desc inputs[] = {
    {"predictions", "[N] or [N,…]", 1, "scores"},
    {"targets", "same as predictions, in {-1,+1}", 0, "labels"},
};

static const loss_param_desc params[] = {
    {"margin", LOSS_PARAM_NUMBER, "the margin m", 1, 1.0, -INFINITY, INFINITY, 0, 0, NULL,
     LOSS__OFF(margin), 0},
    {"squared", LOSS_PARAM_BOOL, "square the hinge", 1, 0, 0, 0, 0, 0, NULL,
     LOSS__OFF(squared), 0},
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
    return loss__need_labels(p, TARGET, -1.0, 1.0, err);
}

LOSS__KERNEL static void hinge_loop(const double *restrict x, const double *restrict y,
                                    size_t n, const double *restrict w, double s,
                                    double m, int squared, double *restrict l,
                                    double *restrict acc, double *restrict g)
{
    for (size_t i = 0; i < n; i++) {
        double h = m - y[i] * x[i];
        /* Strictly positive: the gradient at the kink is 0, as the contract says. */
        double active = h > 0 ? h : 0.0;
        l[i] = squared ? active * active : active;
        g[i] = s * w[i] * -y[i] * (squared ? 2.0 * active : (h > 0 ? 1.0 : 0.0));
        acc[i] = (x[i] >= 0.0 ? 1.0 : -1.0) == y[i] ? 1.0 : 0.0;
    }
}

static void kernel(const loss_plan *p, size_t t0, size_t n, const double *w, double *l,
                   double *const *aux, double *const *g)
{
    double scratch[LOSS__BLOCK_TERMS];
    hinge_loop(p->in[PRED].data + t0, p->in[TARGET].data + t0, n, w, p->gscale,
               p->spec.margin, p->spec.squared, l, aux[0],
               g[PRED] ? g[PRED] + t0 : scratch);
}

static const loss__ops ops = {shapes, values, NULL, kernel, 1};

const loss_desc loss__hinge = {
    "hinge",
    "classification",
    "Hinge loss for labels in {-1, +1}, optionally squared; the gradient at the kink "
    "is 0.",
    "l = max(0, m - yŷ) (squared: its square)",
    "shape of predictions",
    1,
    NULL,
    sizeof params / sizeof params[0],
    params,
    2,
    inputs,
    &ops,
};
