/* rows.c - the softmax pieces shared by cross_entropy and focal (multi-class):
 * one pass for the maximum and its index, one vectorized pass of exponentials,
 * a sum with four interleaved accumulators (a fixed order, so the same bits on
 * every run). */
#include "loss_internal.h"
#include "vmath.h"

double loss__row_max(const double *x, size_t K, size_t *first)
{
    double m = x[0];
    size_t at = 0;
    for (size_t k = 1; k < K; k++)
        if (x[k] > m) {
            m = x[k];
            at = k;
        }
    *first = at;
    return m;
}

LOSS__KERNEL static void exp_shift(const double *restrict x, size_t n, double m,
                                   double *restrict e)
{
    for (size_t k = 0; k < n; k++) e[k] = loss__vexp(x[k] - m);
}

static double sum4(const double *e, size_t n)
{
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    size_t k = 0;
    for (; k + 4 <= n; k += 4) {
        a0 += e[k];
        a1 += e[k + 1];
        a2 += e[k + 2];
        a3 += e[k + 3];
    }
    for (; k < n; k++) a0 += e[k];
    return (a0 + a1) + (a2 + a3);
}

double loss__row_expsum(const double *x, size_t K, double m, size_t top, double *e)
{
    if (e) {
        exp_shift(x, K, m, e);
        e[top] = 0.0; /* exp(0) = 1, left out of the sum */
        double rest = sum4(e, K);
        e[top] = 1.0;
        return rest;
    }
    /* No gradient wanted: the exponentials go through a scratch buffer, in
     * pieces whose partial sums are added in order. */
    double scratch[1024], rest = 0;
    for (size_t k0 = 0; k0 < K; k0 += 1024) {
        size_t n = K - k0 < 1024 ? K - k0 : 1024;
        exp_shift(x + k0, n, m, scratch);
        if (top >= k0 && top < k0 + n) scratch[top - k0] = 0.0;
        rest += sum4(scratch, n);
    }
    return rest;
}

/* The clones stay in this file (GCC makes them local symbols, and clang wants
 * the attribute on every declaration): callers see a plain function. */
LOSS__KERNEL static void row_scale(double *restrict g, size_t K, double f)
{
    for (size_t k = 0; k < K; k++) g[k] *= f;
}

void loss__row_scale(double *g, size_t K, double f)
{
    row_scale(g, K, f);
}

double loss__row_log(double x)
{
    return loss__vlog(x);
}

double loss__row_log1p(double x)
{
    return loss__vlog1p(x);
}

double loss__row_dist_scaled(const double *a, const double *b, size_t D, double e)
{
    /* s2 under- or overflowed (or is 0): scale by the largest difference, as hypot */
    double big = 0;
    for (size_t k = 0; k < D; k++) {
        double u = fabs(a[k] - b[k] + e);
        if (u > big) big = u;
    }
    if (!(big > 0) || isinf(big)) return big; /* 0, inf, or NaN */
    /* 1/big is inf for a subnormal big: scale by 2^600 first */
    double k = big < 0x1p-1000 ? 0x1p600 : 1.0, inv = 1.0 / (big * k), t = 0;
    for (size_t j = 0; j < D; j++) {
        double u = (a[j] - b[j] + e) * k * inv;
        t += u * u;
    }
    return sqrt(t) * big;
}
