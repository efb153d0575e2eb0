/* regression.c - mse, mae and huber: element-wise losses of the residual r = p - y. */
#include "loss_internal.h"

enum { PRED, TARGET };

static const loss_input_desc inputs[] = {
    {"predictions", "[N,…]", 1, "predicted values"},
    {"targets", "same as predictions", 0, "true values"},
};

static int shapes(loss_plan *p, loss_error *err)
{
    int rc = loss__need_same_shape(p, TARGET, PRED, err);
    if (rc) return rc;
    loss__set_elementwise(p);
    return 0;
}

/* Each kernel is one branch-free loop over restrict pointers, so that it
 * vectorizes; a block is 1024 terms, so its loss and gradient stay in L1. */
LOSS__KERNEL static void mse_loop(const double *restrict x, const double *restrict y,
                                  size_t n, const double *restrict w, double s,
                                  double *restrict l, double *restrict g)
{
    for (size_t i = 0; i < n; i++) {
        double r = x[i] - y[i];
        l[i] = r * r;
        g[i] = s * w[i] * r;
    }
}

LOSS__KERNEL static void mae_loop(const double *restrict x, const double *restrict y,
                                  size_t n, const double *restrict w, double s,
                                  double *restrict l, double *restrict g)
{
    for (size_t i = 0; i < n; i++) {
        double r = x[i] - y[i];
        l[i] = fabs(r);
        double sign = r > 0 ? 1.0 : r < 0 ? -1.0 : 0.0; /* the subgradient 0 at r = 0 */
        g[i] = s * w[i] * sign;
    }
}

LOSS__KERNEL static void huber_loop(const double *restrict x, const double *restrict y,
                                    size_t n, const double *restrict w, double s,
                                    double delta, double *restrict l, double *restrict g)
{
    for (size_t i = 0; i < n; i++) {
        double r = x[i] - y[i], a = fabs(r);
        double quad = 0.5 * r * r, lin = delta * (a - 0.5 * delta);
        l[i] = a <= delta ? quad : lin;
        double d = r > delta ? delta : r < -delta ? -delta : r; /* clamp(r, ±δ) */
        g[i] = s * w[i] * d;
    }
}

static void mse_kernel(const loss_plan *p, size_t t0, size_t n, const double *w,
                       double *l, double *const *aux, double *const *g)
{
    double scratch[LOSS__BLOCK_TERMS];
    (void)aux;
    mse_loop(p->in[PRED].data + t0, p->in[TARGET].data + t0, n, w, 2.0 * p->gscale, l,
             g[PRED] ? g[PRED] + t0 : scratch);
}

static void mae_kernel(const loss_plan *p, size_t t0, size_t n, const double *w,
                       double *l, double *const *aux, double *const *g)
{
    double scratch[LOSS__BLOCK_TERMS];
    (void)aux;
    mae_loop(p->in[PRED].data + t0, p->in[TARGET].data + t0, n, w, p->gscale, l,
             g[PRED] ? g[PRED] + t0 : scratch);
}

static void huber_kernel(const loss_plan *p, size_t t0, size_t n, const double *w,
                         double *l, double *const *aux, double *const *g)
{
    double scratch[LOSS__BLOCK_TERMS];
    (void)aux;
    huber_loop(p->in[PRED].data + t0, p->in[TARGET].data + t0, n, w, p->gscale,
               p->spec.delta, l, g[PRED] ? g[PRED] + t0 : scratch);
}

static const loss__ops mse_ops = {shapes, NULL, NULL, mse_kernel, 0};
static const loss__ops mae_ops = {shapes, NULL, NULL, mae_kernel, 0};
static const loss__ops huber_ops = {shapes, NULL, NULL, huber_kernel, 0};

static const loss_param_desc huber_params[] = {
    {"delta", LOSS_PARAM_NUMBER, "threshold between the quadratic and the linear part", 1,
     1.0, 0.0, INFINITY, LOSS_MIN_EXCLUSIVE, 0, NULL, LOSS__OFF(delta), 0},
};

const loss_desc loss__mse = {
    "mse",
    "regression",
    "Squared error.",
    "l = (y - ŷ)²",
    "shape of predictions",
    0,
    NULL,
    0,
    NULL,
    2,
    inputs,
    &mse_ops,
};

const loss_desc loss__mae = {
    "mae",
    "regression",
    "Absolute error; its gradient at r = 0 is 0.",
    "l = |y - ŷ|",
    "shape of predictions",
    0,
    NULL,
    0,
    NULL,
    2,
    inputs,
    &mae_ops,
};

const loss_desc loss__huber = {
    "huber",
    "regression",
    "Huber loss: quadratic near zero, linear beyond delta (PyTorch HuberLoss).",
    "l = ½r² if |r| ≤ δ, else δ(|r| - δ/2), r = ŷ - y",
    "shape of predictions",
    0,
    NULL,
    1,
    huber_params,
    2,
    inputs,
    &huber_ops,
};
