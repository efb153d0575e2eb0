/*
 * loss_internal.h - private to the lossd core (src/losses).  Not installed, not
 * included by the server.  Internal non-static symbols use the loss__ prefix.
 */
#ifndef LOSS_INTERNAL_H
#define LOSS_INTERNAL_H

#include "loss.h"

#include <math.h>
#include <stddef.h>

/* Terms per block at most (a kernel's and the denominator's per-term arrays
 * live on the stack; plan.c evaluates a block in smaller parts), and the
 * element work a block aims for: a block of cross-entropy rows with K=1000
 * holds 8 rows, so even a 1000-row batch splits into 125 blocks for the pool. */
#define LOSS__BLOCK_TERMS 1024
#define LOSS__BLOCK_WORK  8192

/* loss_sum's order of additions: a run of at most LOSS__SUM_LEAF numbers is a
 * leaf, added up with four accumulators; a longer run of n splits after its
 * first loss__sum_half(n).  plan.c follows the same tree to sum a block a part
 * at a time and still get the bits of one loss_sum over the whole block. */
#define LOSS__SUM_LEAF 32
static inline size_t loss__sum_half(size_t n)
{
    return (n / 2 + 3) & ~(size_t)3;
}

/* PyTorch's BCELoss backward divides by max(p(1-p), EPSILON) with EPSILON = 1e-12
 * stored as a float; using the same constant keeps the gradients identical. */
#define LOSS__BCE_EPS ((double)1e-12f)
/* The lower clamp of log(p) in PyTorch's BCELoss (and ours for probabilities). */
#define LOSS__LOG_CLAMP (-100.0)

/* The hooks of one loss.  Input tensors are in plan->in[] in descriptor order. */
typedef struct loss__ops {
    /* Checks ranks and shapes of the inputs and parameter combinations, and sets
     * n, n_terms, term_len, per_example, mode, k/d/z and the losses shape. */
    int (*shapes)(loss_plan *p, loss_error *err);
    /* Checks values beyond finiteness (labels, class indices, probabilities). */
    int (*values)(loss_plan *p, loss_error *err);
    /* Optional: d[i] = the denominator factor of term t0+i (class weights, 0 for
     * ignored examples); NULL means 1 for every term. */
    void (*dfactor)(const loss_plan *p, size_t t0, size_t n, double *d);
    /* Computes n terms from t0: l[i] = loss of term t0+i (without sample weight),
     * aux[j][i] = extra per-term quantities summed like the loss (accuracy
     * indicator times dfactor, ELBO components).  When grads[k] is not NULL,
     * writes the gradient of the cost w.r.t. input k for the elements of those
     * terms: w[i] * p->gscale * dl/dx.  Never allocates. */
    void (*kernel)(const loss_plan *p, size_t t0, size_t n, const double *w, double *l,
                   double *const *aux, double *const *grads);
    size_t n_aux; /* aux arrays used */
} loss__ops;

/* Every loss descriptor, in catalog order. */
extern const loss_desc loss__mse, loss__mae, loss__huber, loss__bce, loss__cross_entropy,
    loss__focal, loss__hinge, loss__contrastive, loss__triplet, loss__elbo;

/* Fills err (when not NULL) and returns code.  name may be NULL. */
int loss__fail(loss_error *err, int code, loss_where where, const char *name,
               long long index, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

/* Stores every default of a parameter table; optional parameters start absent. */
void loss__params_defaults(const loss_param_set *ps);

/* Formats "[2, 3]" into buf. */
const char *loss__shape_str(const loss_tensor *t, char *buf, size_t len);

/* Shape helpers for the ops->shapes hooks; each reports a shape_mismatch or
 * invalid_rank naming the input. */
int loss__need_rank(const loss_plan *p, size_t i, size_t lo, size_t hi, loss_error *err);
int loss__need_same_shape(const loss_plan *p, size_t i, size_t ref, loss_error *err);
/* Input i must be [N, X] where N = p->n; X = *x (or sets *x when *x == (size_t)-1). */
int loss__need_rows(const loss_plan *p, size_t i, size_t *x, const char *xname,
                    loss_error *err);
/* Element-wise losses: n_terms = size of input 0, losses shaped like input 0. */
void loss__set_elementwise(loss_plan *p);
/* Row losses: one term per example, losses [N]. */
void loss__set_rows(loss_plan *p, size_t term_len);

/* Value helpers for the ops->values hooks: first element of input i outside
 * [lo, hi] is a status code error (probability_out_of_range...). */
int loss__need_within(const loss_plan *p, size_t i, double lo, double hi, int code,
                      loss_error *err);
/* Reports element k of input i as an invalid class index; why says how. */
int loss__class_index_error(const loss_plan *p, size_t i, size_t k, const char *why,
                            loss_error *err);
/* Every element of input i is a or b. */
int loss__need_labels(const loss_plan *p, size_t i, double a, double b, loss_error *err);

/* Kernels: compiled twice, for AVX2 and the x86-64 baseline, picked at load
 * time.  The results are the same bits either way: the code has no FMA
 * contraction (-ffp-contract=off) and vmath.h's functions are exact sequences
 * of IEEE operations. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(LOSS_NO_CLONES)
#define LOSS__KERNEL __attribute__((target_clones("avx2", "default")))
#else
#define LOSS__KERNEL
#endif

/* A function with large stack arrays that must not be inlined into a recursive
 * caller, whose every level would then hold them. */
#if defined(__GNUC__)
#define LOSS__NOINLINE __attribute__((noinline))
#else
#define LOSS__NOINLINE
#endif

/* max for kernels: fmax's NaN rule keeps GCC from vectorizing it, and kernels
 * only see finite values (or -inf from log(0), which this orders right). */
static inline double loss__max(double a, double b)
{
    return a > b ? a : b;
}

/* Numerics shared by kernels. */
static inline double loss__softplus(double z) /* log(1 + e^z), stable */
{
    return fmax(z, 0.0) + log1p(exp(-fabs(z)));
}
static inline double loss__sigmoid(double z)
{
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}
/* q^g for the focal factor, exact for the common integral gammas. */
static inline double loss__powg(double q, double g)
{
    if (g == 2.0) return q * q;
    if (g == 1.0) return q;
    if (g == 0.0) return 1.0;
    return pow(q, g);
}
/* max(log p, -100): PyTorch's clamp of log-probabilities. */
static inline double loss__clamped_log(double p)
{
    double l = log(p);
    return l < LOSS__LOG_CLAMP ? LOSS__LOG_CLAMP : l;
}
/* Index of the first maximum of x[0..n). */
static inline size_t loss__argmax(const double *x, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}
/* Softmax rows (rows.c).  row_max: the maximum m of x[0..K) and the index top of
 * its first occurrence.  row_expsum: e[k] = exp(x[k] - m) (e may be NULL; e[top] =
 * 1) and the sum of the others, rest, in a fixed order: the softmax's sum is
 * 1 + rest, and log1p(rest), 1 - 1/s = rest/s keep what 1 + rest would round
 * away for a confident row.  row_scale: g *= f.  row_log, row_log1p: vmath's. */
double loss__row_max(const double *x, size_t K, size_t *first);
double loss__row_expsum(const double *x, size_t K, double m, size_t top, double *e);
void loss__row_scale(double *g, size_t K, double f);
double loss__row_log(double x);
double loss__row_log1p(double x);
/* ‖a - b + e‖₂ of rows of D, given s2, the plain sum of the squares: sqrt(s2)
 * where s2 neither under- nor overflowed, else summed again scaled by the largest
 * difference (as hypot), so that distances of 1e-200 or 1e200 stay exact. */
double loss__row_dist_scaled(const double *a, const double *b, size_t D, double e)
#if defined(__GNUC__)
    __attribute__((cold))
#endif
    ;
static inline double loss__row_dist(const double *a, const double *b, size_t D, double e,
                                    double s2)
{
    if (__builtin_expect(s2 > 0x1p-960 && s2 < 0x1p960, 1)) return sqrt(s2);
    return loss__row_dist_scaled(a, b, D, e);
}

/* The sample weight of term t, or 1. */
double loss__term_weight(const loss_plan *p, size_t t);

/* The shared parameter descriptor fields. */
#define LOSS__OFF(field) offsetof(loss_spec, field)

#endif /* LOSS_INTERNAL_H */
