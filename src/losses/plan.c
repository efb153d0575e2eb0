/* plan.c - validation, the block driver and the deterministic reductions.
 *
 * Every loss is evaluated in fixed-size blocks of terms.  A block's sums are
 * pairwise sums of its weighted terms; the cost is the pairwise sum of the block
 * sums in block order.  Block boundaries depend only on the shapes, so the server
 * may hand any grouping of blocks to any thread and still get the same bits. */
#include "loss_internal.h"

#include <float.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Formats a flat index of t as "[1][0]" (or "" for a scalar). */
static const char *index_str(const loss_tensor *t, size_t flat, char *buf, size_t len)
{
    size_t idx[LOSS_MAX_RANK];
    for (size_t k = t->rank; k-- > 0;) {
        size_t dim = t->shape[k] ? t->shape[k] : 1;
        idx[k] = flat % dim;
        flat /= dim;
    }
    size_t used = 0;
    buf[0] = '\0';
    for (size_t k = 0; k < t->rank && used < len; k++) {
        int w = snprintf(buf + used, len - used, "[%zu]", idx[k]);
        if (w > 0) used += (size_t)w;
    }
    return buf;
}

static const char *input_name(const loss_plan *p, size_t i)
{
    return p->desc->inputs[i].name;
}

int loss__need_rank(const loss_plan *p, size_t i, size_t lo, size_t hi, loss_error *err)
{
    const loss_tensor *t = &p->in[i];
    if (t->rank >= lo && t->rank <= hi) return 0;
    char s[96];
    const char *want = p->desc->inputs[i].shape;
    return loss__fail(err, LOSS_ERANK, LOSS_AT_INPUT, input_name(p, i), -1,
                      "inputs.%s has shape %s but must be %s", input_name(p, i),
                      loss__shape_str(t, s, sizeof s), want);
}

int loss__need_same_shape(const loss_plan *p, size_t i, size_t ref, loss_error *err)
{
    const loss_tensor *a = &p->in[i], *b = &p->in[ref];
    int same = a->rank == b->rank;
    for (size_t k = 0; same && k < a->rank; k++) same = a->shape[k] == b->shape[k];
    if (same) return 0;
    char sa[96], sb[96];
    return loss__fail(err, LOSS_ESHAPE, LOSS_AT_INPUT, input_name(p, i), -1,
                      "inputs.%s has shape %s but %s has %s", input_name(p, i),
                      loss__shape_str(a, sa, sizeof sa), input_name(p, ref),
                      loss__shape_str(b, sb, sizeof sb));
}

int loss__need_rows(const loss_plan *p, size_t i, size_t *x, const char *xname,
                    loss_error *err)
{
    const loss_tensor *t = &p->in[i];
    char s[96];
    if (t->rank != 2)
        return loss__fail(err, LOSS_ERANK, LOSS_AT_INPUT, input_name(p, i), -1,
                          "inputs.%s has shape %s but must be %s", input_name(p, i),
                          loss__shape_str(t, s, sizeof s), p->desc->inputs[i].shape);
    if (t->shape[0] != p->n || (*x != (size_t)-1 && t->shape[1] != *x))
        return loss__fail(err, LOSS_ESHAPE, LOSS_AT_INPUT, input_name(p, i), -1,
                          "inputs.%s has shape %s but must be [%zu, %s=%zu] like %s",
                          input_name(p, i), loss__shape_str(t, s, sizeof s), p->n, xname,
                          *x == (size_t)-1 ? t->shape[1] : *x, input_name(p, 0));
    *x = t->shape[1];
    return 0;
}

void loss__set_elementwise(loss_plan *p)
{
    const loss_tensor *t = &p->in[0];
    p->elementwise = 1;
    p->n_terms = p->input_size[0];
    p->per_example = p->n ? p->n_terms / p->n : 1;
    p->term_len = 1;
    p->losses_rank = t->rank;
    memcpy(p->losses_shape, t->shape, sizeof p->losses_shape);
}

void loss__set_rows(loss_plan *p, size_t term_len)
{
    p->elementwise = 0;
    p->n_terms = p->n;
    p->per_example = 1;
    p->term_len = term_len;
    p->losses_rank = 1;
    p->losses_shape[0] = p->n;
}

int loss__need_within(const loss_plan *p, size_t i, double lo, double hi, int code,
                      loss_error *err)
{
    const double *x = p->in[i].data;
    size_t n = p->input_size[i];
    for (size_t k = 0; k < n; k++) {
        if (x[k] >= lo && x[k] <= hi) continue;
        char ix[96];
        return loss__fail(err, code, LOSS_AT_INPUT, input_name(p, i), (long long)k,
                          "inputs.%s%s = %.17g is outside [%g, %g]", input_name(p, i),
                          index_str(&p->in[i], k, ix, sizeof ix), x[k], lo, hi);
    }
    return 0;
}

int loss__need_labels(const loss_plan *p, size_t i, double a, double b, loss_error *err)
{
    const double *x = p->in[i].data;
    size_t n = p->input_size[i];
    for (size_t k = 0; k < n; k++) {
        if (x[k] == a || x[k] == b) continue;
        char ix[96];
        return loss__fail(err, LOSS_ELABEL, LOSS_AT_INPUT, input_name(p, i), (long long)k,
                          "inputs.%s%s = %.17g must be %g or %g", input_name(p, i),
                          index_str(&p->in[i], k, ix, sizeof ix), x[k], a, b);
    }
    return 0;
}

int loss__class_index_error(const loss_plan *p, size_t i, size_t k, const char *why,
                            loss_error *err)
{
    char ix[96];
    return loss__fail(err, LOSS_ECLASS_INDEX, LOSS_AT_INPUT, input_name(p, i),
                      (long long)k, "inputs.%s%s = %.17g %s", input_name(p, i),
                      index_str(&p->in[i], k, ix, sizeof ix), p->in[i].data[k], why);
}

double loss__term_weight(const loss_plan *p, size_t t)
{
    if (!p->weights) return 1.0;
    return p->weights_per_term ? p->weights[t] : p->weights[t / p->per_example];
}

/* w[i] = sample weight of term t0+i. */
static void fill_weights(const loss_plan *p, size_t t0, size_t n, double *w)
{
    if (!p->weights) {
        for (size_t i = 0; i < n; i++) w[i] = 1.0;
    } else if (p->weights_per_term) {
        memcpy(w, p->weights + t0, n * sizeof *w);
    } else {
        size_t e = p->per_example;
        for (size_t i = 0; i < n; i++) w[i] = p->weights[(t0 + i) / e];
    }
}

/* Index of the first NaN or infinity of x[0, n), or n.  Blocks are checked
 * branch-free on the exponent bits (so the loop vectorizes); only a block with
 * a bad element is searched. */
LOSS__KERNEL static size_t first_nonfinite(const double *restrict x, size_t n)
{
    const uint64_t exp = UINT64_C(0x7ff0000000000000);
    for (size_t b = 0; b < n; b += 512) {
        size_t m = n - b < 512 ? n - b : 512;
        uint64_t bad = 0;
        for (size_t k = 0; k < m; k++) {
            uint64_t u;
            memcpy(&u, &x[b + k], 8);
            bad |= (u & exp) == exp;
        }
        if (bad)
            for (size_t k = 0; k < m; k++)
                if (!isfinite(x[b + k])) return b + k;
    }
    return n;
}

/* The same test on float32 elements (any alignment): 1 when one is NaN or
 * infinite. */
LOSS__KERNEL static int any_nonfinite_f32(const unsigned char *restrict x, size_t n)
{
    const uint32_t exp = UINT32_C(0x7f800000);
    uint32_t bad = 0;
    for (size_t k = 0; k < n; k++) {
        uint32_t u;
        memcpy(&u, x + 4 * k, 4);
        bad |= (u & exp) == exp;
    }
    return bad != 0;
}

static int check_finite(const loss_tensor *t, size_t n, loss_where where,
                        const char *name, loss_error *err)
{
    size_t k = first_nonfinite(t->data, n);
    if (k < n) {
        char ix[96];
        return loss__fail(err, LOSS_ENONFINITE, where, name, (long long)k, "%s%s%s is %s",
                          where == LOSS_AT_INPUT ? "inputs." : "", name,
                          index_str(t, k, ix, sizeof ix),
                          isnan(t->data[k]) ? "NaN" : "infinite");
    }
    return 0;
}

static int check_weights(loss_plan *p, const loss_tensor *w, loss_error *err)
{
    char sw[96], sp[96];
    size_t size = loss_tensor_size(w);
    const loss_tensor *pred = &p->in[0];
    int elementwise = p->elementwise;
    if (w->rank == 1 && w->shape[0] == p->n) {
        p->weights_per_term = p->per_example == 1;
    } else if (elementwise && size == p->n_terms && w->rank == pred->rank &&
               memcmp(w->shape, pred->shape, w->rank * sizeof w->shape[0]) == 0) {
        p->weights_per_term = 1;
    } else if (elementwise && pred->rank > 1) {
        return loss__fail(err, LOSS_ESHAPE, LOSS_AT_WEIGHTS, "weights", -1,
                          "weights has shape %s but must be [%zu] (one per example) or "
                          "%s (one per element of %s)",
                          loss__shape_str(w, sw, sizeof sw), p->n,
                          loss__shape_str(pred, sp, sizeof sp), input_name(p, 0));
    } else {
        return loss__fail(err, LOSS_ESHAPE, LOSS_AT_WEIGHTS, "weights", -1,
                          "weights has shape %s but must be [%zu] (one per example)",
                          loss__shape_str(w, sw, sizeof sw), p->n);
    }
    int rc = check_finite(w, size, LOSS_AT_WEIGHTS, "weights", err);
    if (rc) return rc;
    p->weights = w->data;
    return 0;
}

static int check_weight_signs(const loss_plan *p, const loss_tensor *w, loss_error *err)
{
    size_t n = loss_tensor_size(w);
    for (size_t k = 0; k < n; k++) {
        if (w->data[k] >= 0) continue;
        char ix[96];
        return loss__fail(err, LOSS_ENEGATIVE_WEIGHT, LOSS_AT_WEIGHTS, "weights",
                          (long long)k, "weights%s = %.17g is negative",
                          index_str(w, k, ix, sizeof ix), w->data[k]);
    }
    (void)p;
    return 0;
}

/* ---- float32 inputs and outputs: one view at a time ----
 *
 * A view of a plan is the plan cut down to the terms [t0, t0 + n) of part of a
 * block: every input starts at the view's first term, float32 ones widened into
 * a scratch array, so the hooks called on the view with t0 = 0 see exactly what
 * they would see of a widened copy of the whole batch.  Hooks compute each term
 * on its own, so cutting a block into views changes no bit of it; a view holds
 * at most VIEW_DOUBLES doubles of scratch (but at least one term), so that the
 * scratch stays in L1 and a small request touches little memory. */
#define VIEW_DOUBLES 512

/* Elements of input i per term (the shapes hooks make every input a whole number
 * of elements per term). */
static size_t per_term(const loss_plan *p, size_t i)
{
    return p->n_terms ? p->input_size[i] / p->n_terms : 0;
}

/* True when input i's gradient is to be written over the input's own doubles. */
static int overwritten(const loss_plan *p, const loss_outputs *out, size_t i)
{
    return p->desc->inputs[i].differentiable && out->grads[i] &&
           out->grads[i] == p->in[i].data;
}

/* True when a block needs views: float32 inputs, a result to be written as
 * float32, or an input that its gradient overwrites. */
static int needs_views(const loss_plan *p, const loss_outputs *out)
{
    int any = p->narrow || out->losses_f32 != NULL;
    for (size_t i = 0; i < p->desc->n_inputs; i++)
        any |= (out->grads_f32[i] != NULL && p->desc->inputs[i].differentiable) ||
               overwritten(p, out, i);
    return any;
}

/* Terms per view, and in *scratch its scratch: the widened slices of the float32
 * inputs, copies of the slices of the inputs that their gradients overwrite
 * (out), and the double gradients of the inputs whose gradients are wanted as
 * float32.  0 without memory. */
static size_t views_new(const loss_plan *p, const loss_outputs *out, double **scratch)
{
    size_t per = 0;
    for (size_t i = 0; i < p->desc->n_inputs; i++) {
        size_t e = per_term(p, i);
        if (p->in[i].f32 || (out && overwritten(p, out, i))) per += e;
        if (out && out->grads_f32[i] && p->desc->inputs[i].differentiable) per += e;
    }
    size_t terms = per ? VIEW_DOUBLES / per : p->block;
    if (terms < 1) terms = 1;
    if (terms > p->block) terms = p->block;
    if (terms > p->n_terms && p->n_terms) terms = p->n_terms;
    *scratch = malloc((terms * per + 1) * sizeof(double));
    return *scratch ? terms : 0;
}

/* Makes *q, a copy of *p (or of an earlier view of it), the view of terms
 * [t0, t0 + n): float32 inputs widened, and inputs that their gradients
 * overwrite (out) copied, into scratch.  Returns the unused rest of scratch. */
static double *view(const loss_plan *p, const loss_outputs *out, size_t t0, size_t n,
                    double *scratch, loss_plan *q)
{
    q->n_terms = n;
    if (!p->elementwise) q->n = n; /* row losses: one term per example */
    for (size_t i = 0; i < p->desc->n_inputs; i++) {
        size_t e = per_term(p, i);
        q->input_size[i] = n * e;
        if (p->in[i].f32) {
            loss_widen_f32(scratch, (const unsigned char *)p->in[i].f32 + 4 * t0 * e,
                           n * e);
            q->in[i].data = scratch;
            q->in[i].f32 = NULL;
            scratch += n * e;
        } else if (out && overwritten(p, out, i)) {
            memcpy(scratch, p->in[i].data + t0 * e, n * e * sizeof(double));
            q->in[i].data = scratch;
            scratch += n * e;
        } else {
            q->in[i].data = p->in[i].data + t0 * e;
        }
    }
    return scratch;
}

/* Finiteness of every input, then the loss's own value checks. */
static int check_values(loss_plan *p, loss_error *err)
{
    for (size_t i = 0; i < p->desc->n_inputs; i++) {
        int rc = check_finite(&p->in[i], p->input_size[i], LOSS_AT_INPUT,
                              p->desc->inputs[i].name, err);
        if (rc) return rc;
    }
    return p->desc->ops->values ? p->desc->ops->values(p, err) : 0;
}

/* check_values with float32 inputs: finiteness on the elements as they are, the
 * loss's value checks block by block on views; if anything fails, everything
 * again on a widened copy of the whole batch, so that the error is the one the
 * doubles would give (the first bad input in input order, its first bad
 * element). */
static int check_values_f32(loss_plan *p, loss_error *err)
{
    int bad = 0;
    for (size_t i = 0; i < p->desc->n_inputs && !bad; i++) {
        size_t n = p->input_size[i];
        bad = p->in[i].f32 ? any_nonfinite_f32(p->in[i].f32, n)
                           : first_nonfinite(p->in[i].data, n) < n;
    }
    if (!bad && p->desc->ops->values) {
        double *scratch;
        size_t terms = views_new(p, NULL, &scratch);
        if (!terms)
            return loss__fail(err, LOSS_ENOMEM, LOSS_AT_NONE, NULL, -1, "out of memory");
        loss_plan q = *p;
        for (size_t t0 = 0; t0 < p->n_terms && !bad; t0 += terms) {
            view(p, NULL, t0, p->n_terms - t0 < terms ? p->n_terms - t0 : terms, scratch,
                 &q);
            bad = p->desc->ops->values(&q, NULL) != 0;
        }
        free(scratch);
    }
    if (!bad) return 0;
    loss_plan whole = *p;
    double *copies[LOSS_MAX_INPUTS] = {0};
    int rc = 0;
    for (size_t i = 0; i < p->desc->n_inputs && !rc; i++) {
        if (!p->in[i].f32) continue;
        copies[i] = malloc((p->input_size[i] ? p->input_size[i] : 1) * sizeof(double));
        if (!copies[i]) {
            rc = loss__fail(err, LOSS_ENOMEM, LOSS_AT_NONE, NULL, -1, "out of memory");
            break;
        }
        loss_widen_f32(copies[i], p->in[i].f32, p->input_size[i]);
        whole.in[i].data = copies[i];
        whole.in[i].f32 = NULL;
    }
    if (!rc) rc = check_values(&whole, err);
    for (size_t i = 0; i < LOSS_MAX_INPUTS; i++) free(copies[i]);
    return rc;
}

/* The mean's denominator, blockwise like the cost.  -1 without memory for a
 * float32 plan's view. */
static int denominator(const loss_plan *p, double *block_sums, double *den)
{
    double w[LOSS__BLOCK_TERMS], d[LOSS__BLOCK_TERMS];
    void (*dfactor)(const loss_plan *, size_t, size_t, double *) = p->desc->ops->dfactor;
    double *scratch = NULL;
    size_t terms = 0;
    loss_plan q;
    if (dfactor && p->narrow) {
        if (!(terms = views_new(p, NULL, &scratch))) return -1;
        q = *p; /* a view starts as the plan (view()) */
    }
    for (size_t b = 0; b < p->n_blocks; b++) {
        size_t t0 = b * p->block, n = p->n_terms - t0;
        if (n > p->block) n = p->block;
        if (!p->weights && !dfactor) {
            /* n ones: their pairwise sum is n exactly (as is every partial sum
             * of integers below 2^53), without the pass. */
            block_sums[b] = (double)n;
            continue;
        }
        fill_weights(p, t0, n, w);
        if (dfactor && scratch) {
            for (size_t s = 0; s < n; s += terms) {
                size_t m = n - s < terms ? n - s : terms;
                view(p, NULL, t0 + s, m, scratch, &q);
                dfactor(&q, 0, m, d + s);
            }
        } else if (dfactor) {
            dfactor(p, t0, n, d);
        }
        if (dfactor)
            for (size_t i = 0; i < n; i++) w[i] *= d[i];
        block_sums[b] = loss_sum(w, n);
    }
    free(scratch);
    *den = loss_sum(block_sums, p->n_blocks);
    return 0;
}

/* The weights of an unweighted block. */
static double ones[LOSS__BLOCK_TERMS];
static void init_ones(void)
{
    for (size_t i = 0; i < LOSS__BLOCK_TERMS; i++) ones[i] = 1.0;
}

int loss_plan_init(loss_plan *p, const loss_spec *spec, const loss_tensor *inputs,
                   const loss_tensor *weights, loss_reduction reduction, loss_error *err)
{
    memset(p, 0, sizeof *p);
    if (err) memset(err, 0, sizeof *err);
    if (!spec || !spec->desc || !inputs)
        return loss__fail(err, LOSS_EINVAL, LOSS_AT_NONE, NULL, -1,
                          "loss_plan_init needs an initialised spec and inputs");
    if (reduction != LOSS_MEAN && reduction != LOSS_SUM)
        return loss__fail(err, LOSS_EINVAL, LOSS_AT_REDUCTION, "reduction", -1,
                          "reduction must be mean or sum");
    const loss_desc *desc = spec->desc;
    const loss__ops *ops = desc->ops;
    p->desc = desc;
    p->spec = *spec;
    p->reduction = reduction;
    p->grad_factor = 1.0;

    for (size_t i = 0; i < desc->n_inputs; i++) {
        const loss_tensor *t = &inputs[i];
        const char *name = desc->inputs[i].name;
        if (!t->data && !t->f32)
            return loss__fail(err, LOSS_EMISSING_INPUT, LOSS_AT_INPUT, name, -1,
                              "inputs.%s is missing (shape %s)", name,
                              desc->inputs[i].shape);
        if (t->data && t->f32)
            return loss__fail(err, LOSS_EINVAL, LOSS_AT_INPUT, name, -1,
                              "inputs.%s has both double and float32 elements", name);
        p->narrow |= t->f32 != NULL;
        if (t->rank > LOSS_MAX_RANK)
            return loss__fail(err, LOSS_ERANK, LOSS_AT_INPUT, name, -1,
                              "inputs.%s has %zu dimensions, at most %d are supported",
                              name, t->rank, LOSS_MAX_RANK);
        size_t size = loss_tensor_size(t);
        if (size == (size_t)-1 || size > SIZE_MAX / sizeof(double))
            return loss__fail(err, LOSS_ETOO_LARGE, LOSS_AT_INPUT, name, -1,
                              "inputs.%s has too many elements", name);
        p->in[i] = *t;
        p->input_size[i] = size;
    }
    if (weights && weights->rank > LOSS_MAX_RANK)
        return loss__fail(err, LOSS_ERANK, LOSS_AT_WEIGHTS, "weights", -1,
                          "weights has %zu dimensions", weights->rank);
    if (weights && loss_tensor_size(weights) == (size_t)-1)
        return loss__fail(err, LOSS_ETOO_LARGE, LOSS_AT_WEIGHTS, "weights", -1,
                          "weights has too many elements");

    /* Shapes first, then values: a wrong shape says more than a bad element. */
    const loss_tensor *first = &p->in[0];
    if (first->rank < 1)
        return loss__fail(err, LOSS_ERANK, LOSS_AT_INPUT, desc->inputs[0].name, -1,
                          "inputs.%s is a scalar but must be %s (a batch)",
                          desc->inputs[0].name, desc->inputs[0].shape);
    p->n = first->shape[0];
    int rc = ops->shapes(p, err);
    if (rc) return rc;
    if (weights && (rc = check_weights(p, weights, err))) return rc;
    size_t work = p->term_len ? p->term_len : 1;
    p->block = LOSS__BLOCK_WORK / work;
    if (p->block < 1) p->block = 1;
    if (p->block > LOSS__BLOCK_TERMS) p->block = LOSS__BLOCK_TERMS;
    p->n_blocks = (p->n_terms + p->block - 1) / p->block;
    for (size_t i = 0; p->narrow && i < desc->n_inputs; i++)
        if (per_term(p, i) * p->n_terms != p->input_size[i])
            return loss__fail(err, LOSS_EINVAL, LOSS_AT_INPUT, desc->inputs[i].name, -1,
                              "inputs.%s: float32 needs a whole number of elements "
                              "per term",
                              desc->inputs[i].name);
    rc = p->narrow ? check_values_f32(p, err) : check_values(p, err);
    if (rc) return rc;
    if (weights && (rc = check_weight_signs(p, weights, err))) return rc;

    p->n_sums = 1 + ops->n_aux;
    /* and a row of what each block could not represent (beyond()) */
    p->sums = calloc((p->n_sums + 1) * (p->n_blocks ? p->n_blocks : 1), sizeof *p->sums);
    if (!p->sums || denominator(p, p->sums, &p->den)) {
        loss_plan_free(p);
        return loss__fail(err, LOSS_ENOMEM, LOSS_AT_NONE, NULL, -1, "out of memory");
    }
    if (reduction == LOSS_MEAN && !(p->den > 0)) {
        int ignored = p->desc->ops->dfactor != NULL && p->n_terms > 0;
        loss__fail(err, LOSS_EZERO_WEIGHT, weights ? LOSS_AT_WEIGHTS : LOSS_AT_INPUT,
                   weights ? "weights" : desc->inputs[ignored ? 1 : 0].name, -1,
                   "the mean is over zero total weight (%s); use reduction \"sum\" or "
                   "give some example a positive weight",
                   p->n_terms == 0 ? "the batch is empty"
                   : weights       ? "every weight is 0"
                                   : "every example is ignored");
        loss_plan_free(p);
        return LOSS_EZERO_WEIGHT;
    }
    if (reduction == LOSS_MEAN && p->den < DBL_MIN) {
        loss__fail(err, LOSS_EZERO_WEIGHT, LOSS_AT_WEIGHTS, "weights", -1,
                   "the total weight %g is too small to divide by", p->den);
        loss_plan_free(p);
        return LOSS_EZERO_WEIGHT;
    }
    if (reduction == LOSS_MEAN && isinf(p->den)) {
        /* 1/den would be 0: a cost and gradients of 0, silently */
        if (weights)
            loss__fail(err, LOSS_EOVERFLOW, LOSS_AT_WEIGHTS, "weights", -1,
                       "the total weight overflows a double; scale the weights down "
                       "(a mean does not change when every weight is scaled alike)");
        else
            loss__fail(err, LOSS_EOVERFLOW, LOSS_AT_PARAM, "class_weights", -1,
                       "the total of the class weights over the batch overflows a "
                       "double; scale them down (the mean does not change)");
        loss_plan_free(p);
        return LOSS_EOVERFLOW;
    }
    loss_plan_scale_gradients(p, 1.0);
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_ones);
    return 0;
}

void loss_plan_free(loss_plan *p)
{
    if (!p) return;
    free(p->sums);
    p->sums = NULL;
}

void loss_plan_scale_gradients(loss_plan *p, double factor)
{
    p->grad_factor = factor;
    p->gscale = p->reduction == LOSS_MEAN ? factor / p->den : factor;
}

/* What a block's results could not hold, in its row of the plan's sums: */
enum {
    BEYOND_GRAD = 1,                            /* + i: input i's double gradient */
    BEYOND_GRAD_F32 = 1 + LOSS_MAX_INPUTS,      /* + i: its float32 gradient */
    BEYOND_LOSSES_F32 = 1 + 2 * LOSS_MAX_INPUTS /* the float32 losses */
};

/* The largest magnitudes a double result may have: any finite one, and for
 * float32 the largest that narrowing rounds to FLT_MAX rather than to infinity
 * (FLT_MAX + 2^103, half a float32 step above it, less a double step). */
#define LIMIT_DOUBLE 0x7fefffffffffffffULL /* DBL_MAX */
#define LIMIT_F32    0x47efffffefffffffULL

/* 1 when some x[i] is above limit (LIMIT_*) in magnitude, or NaN: a result that
 * its form cannot hold.  On the bits: limit - |x| borrows into the top bit
 * exactly when |x| > limit (both below 2^63), so the loop is integer and-sub-or,
 * which vectorizes (a floating-point compare and an or of its flags did not, and
 * cost mse a third of its time). */
static int beyond(const double *x, size_t n, uint64_t limit)
{
    uint64_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t b;
        memcpy(&b, x + i, sizeof b);
        acc |= limit - (b & 0x7fffffffffffffffULL);
    }
    return (int)(acc >> 63);
}

static void note_beyond(int *bad, int what)
{
    if (!*bad) *bad = what;
}

/* What the parts of a block share. */
typedef struct parts {
    const loss_plan *p;
    const loss_outputs *out;
    double *grads[LOSS_MAX_INPUTS];   /* double gradients, of differentiable inputs */
    void *grads_f32[LOSS_MAX_INPUTS]; /* float32 ones, where no double one is */
    size_t terms;                     /* terms per view; 0: no views */
    double *scratch;                  /* the views' scratch */
    loss_plan *v;                     /* the view */
} parts;

/* The kernel on the terms [t0, t0 + n) of a part of a block, through views of at
 * most c->terms terms each (see view()): w, l and aux are the part's arrays;
 * gradients wanted as float32 are computed into scratch and narrowed view by
 * view. */
static void kernel_views(const parts *c, size_t t0, size_t n, const double *w, double *l,
                         double *const *aux, int *bad)
{
    const loss_plan *p = c->p;
    for (size_t s = 0; s < n; s += c->terms) {
        size_t m = n - s < c->terms ? n - s : c->terms;
        double *rest = view(p, c->out, t0 + s, m, c->scratch, c->v);
        double *g[LOSS_MAX_INPUTS] = {0}, *a[LOSS_MAX_AUX];
        for (size_t j = 0; j < LOSS_MAX_AUX; j++) a[j] = aux[j] + s;
        for (size_t i = 0; i < p->desc->n_inputs; i++) {
            size_t e = per_term(p, i);
            if (c->grads[i]) {
                g[i] = c->grads[i] + (t0 + s) * e;
            } else if (c->grads_f32[i]) {
                g[i] = rest;
                rest += m * e;
            }
        }
        p->desc->ops->kernel(c->v, 0, m, w + s, l + s, a, g);
        for (size_t i = 0; i < p->desc->n_inputs; i++) {
            size_t e = per_term(p, i);
            if (c->grads[i] || !c->grads_f32[i]) continue;
            if (beyond(g[i], m * e, LIMIT_F32))
                note_beyond(bad, BEYOND_GRAD_F32 + (int)i);
            loss_narrow_f32((unsigned char *)c->grads_f32[i] + 4 * (t0 + s) * e, g[i],
                            m * e);
        }
    }
}

/* Terms of a block evaluated at a time, at most: a part is a run of loss_sum's
 * tree (LOSS__SUM_LEAF terms or more), so its terms, weights and per-term
 * quantities take a few KB of stack instead of a whole block's. */
#define PART_TERMS 256
_Static_assert(PART_TERMS >= LOSS__SUM_LEAF, "a part holds a leaf of loss_sum");

/* Evaluates the terms [t0, t0 + n) (n <= PART_TERMS) and stores the sums of their
 * weighted losses and aux quantities in sums[0], sums[1..n_aux]; notes in *bad
 * a result its form cannot hold. */
LOSS__NOINLINE static void eval_part(const parts *c, size_t t0, size_t n, double *sums,
                                     int *bad)
{
    const loss_plan *p = c->p;
    const loss_outputs *out = c->out;
    double w[PART_TERMS], l[PART_TERMS], tmp[PART_TERMS];
    double a[LOSS_MAX_AUX][PART_TERMS];
    double *aux[LOSS_MAX_AUX] = {a[0], a[1]};
    double *lp = out->losses ? out->losses + t0 : l;
    const double *wp = ones;
    if (p->weights) {
        fill_weights(p, t0, n, w);
        wp = w;
    }
    if (c->terms)
        kernel_views(c, t0, n, wp, lp, aux, bad);
    else
        p->desc->ops->kernel(p, t0, n, wp, lp, aux, c->grads);
    /* A loss that is not finite makes the cost so (loss_finish); a gradient may
     * overflow alone (a large weight, say). */
    for (size_t i = 0; i < p->desc->n_inputs; i++) {
        size_t e = per_term(p, i);
        if (c->grads[i] && beyond(c->grads[i] + t0 * e, n * e, LIMIT_DOUBLE))
            note_beyond(bad, BEYOND_GRAD + (int)i);
    }
    size_t n_aux = p->desc->ops->n_aux;
    if (!p->weights) {
        /* Unweighted: every weight is 1, and 1 * x == x, so the sums are of the
         * terms themselves (the same bits, without the passes). */
        sums[0] = loss_sum(lp, n);
        for (size_t j = 0; j < n_aux; j++) sums[1 + j] = loss_sum(aux[j], n);
    } else {
        for (size_t i = 0; i < n; i++) tmp[i] = w[i] * lp[i];
        sums[0] = loss_sum(tmp, n);
        for (size_t j = 0; j < n_aux; j++) {
            for (size_t i = 0; i < n; i++) tmp[i] = w[i] * aux[j][i];
            sums[1 + j] = loss_sum(tmp, n);
        }
    }
    if (c->terms && out->losses_f32 && !out->losses) {
        if (beyond(lp, n, LIMIT_F32)) note_beyond(bad, BEYOND_LOSSES_F32);
        loss_narrow_f32((unsigned char *)out->losses_f32 + 4 * t0, lp, n);
    }
}

/* The sums of the terms [t0, t0 + n) of a block, a run of loss_sum's tree over
 * the block: split as loss_sum splits down to parts of PART_TERMS terms or
 * fewer, so the sums are the bits of loss_sum over the whole block's terms. */
static void sum_parts(const parts *c, size_t t0, size_t n, double *sums, int *bad)
{
    if (n <= PART_TERMS) {
        eval_part(c, t0, n, sums, bad);
        return;
    }
    size_t half = loss__sum_half(n);
    double right[1 + LOSS_MAX_AUX];
    sum_parts(c, t0, half, sums, bad);
    sum_parts(c, t0 + half, n - half, right, bad);
    for (size_t j = 0; j <= c->p->desc->ops->n_aux; j++) sums[j] += right[j];
}

int loss_eval_blocks(loss_plan *p, size_t b0, size_t b1, const loss_outputs *out)
{
    if (!p->sums || b0 > b1 || b1 > p->n_blocks) return LOSS_EINVAL;
    static const loss_outputs none;
    if (!out) out = &none;
    loss_plan v;
    parts c = {.p = p, .out = out, .v = &v};
    for (size_t i = 0; i < p->desc->n_inputs; i++) {
        if (!p->desc->inputs[i].differentiable) continue;
        c.grads[i] = out->grads[i];
        if (!c.grads[i]) c.grads_f32[i] = out->grads_f32[i];
    }
    /* Float32 inputs or outputs, or inputs that their gradients overwrite: every
     * part through views (see view()). */
    if (needs_views(p, out) && b0 < b1) {
        if (!(c.terms = views_new(p, out, &c.scratch))) return LOSS_ENOMEM;
        v = *p; /* a view starts as the plan (view()) */
    }
    size_t nb = p->n_blocks;
    for (size_t b = b0; b < b1; b++) {
        size_t t0 = b * p->block, n = p->n_terms - t0;
        if (n > p->block) n = p->block;
        double sums[1 + LOSS_MAX_AUX];
        int bad = 0;
        sum_parts(&c, t0, n, sums, &bad);
        for (size_t j = 0; j < p->n_sums; j++) p->sums[j * nb + b] = sums[j];
        p->sums[p->n_sums * nb + b] = bad;
    }
    free(c.scratch);
    return 0;
}

int loss_finish(const loss_plan *p, loss_result *r, loss_error *err)
{
    memset(r, 0, sizeof *r);
    if (!p->sums) return loss__fail(err, LOSS_EINVAL, LOSS_AT_NONE, NULL, -1, "no plan");
    size_t nb = p->n_blocks;
    int mean = p->reduction == LOSS_MEAN;
    double total[1 + LOSS_MAX_AUX];
    for (size_t j = 0; j < p->n_sums; j++) total[j] = loss_sum(p->sums + j * nb, nb);
    r->total_weight = p->den;
    r->cost = mean ? total[0] / p->den : total[0];
    if (p->desc->has_accuracy && p->den > 0) {
        r->has_accuracy = 1;
        r->accuracy = total[1] / p->den;
    }
    if (p->desc->components) {
        /* The ELBO's components: the reduced aux sums, then -cost. */
        size_t j = 0;
        for (; j < p->desc->ops->n_aux; j++)
            r->components[j] = mean ? total[1 + j] / p->den : total[1 + j];
        r->components[j++] = -r->cost;
        r->n_components = j;
    }
    int finite = isfinite(r->cost);
    for (size_t j = 0; j < r->n_components; j++)
        finite = finite && isfinite(r->components[j]);
    if (!finite) {
        double c = r->cost;
        memset(r, 0, sizeof *r);
        return loss__fail(err, LOSS_EOVERFLOW, LOSS_AT_NONE, NULL, -1,
                          "the cost is not representable as a double (%g): the inputs "
                          "are too large for this loss",
                          c);
    }
    for (size_t b = 0; b < nb; b++) {
        int bad = (int)p->sums[p->n_sums * nb + b];
        if (!bad) continue;
        memset(r, 0, sizeof *r);
        if (bad == BEYOND_LOSSES_F32)
            return loss__fail(err, LOSS_EOVERFLOW, LOSS_AT_NONE, NULL, -1,
                              "a loss is beyond the range of float32, the losses' dtype "
                              "(the inputs are too large for it)");
        int f32 = bad >= BEYOND_GRAD_F32;
        const char *name =
            p->desc->inputs[bad - (f32 ? BEYOND_GRAD_F32 : BEYOND_GRAD)].name;
        return loss__fail(err, LOSS_EOVERFLOW, LOSS_AT_NONE, NULL, -1,
                          "the gradient of %s is %s (the inputs or weights are too large "
                          "for this loss)",
                          name,
                          f32 ? "beyond the range of float32, its dtype"
                              : "not representable as a double");
    }
    return 0;
}

int loss_eval(loss_plan *p, const loss_outputs *out, loss_result *r, loss_error *err)
{
    int rc = loss_eval_blocks(p, 0, p->n_blocks, out);
    if (rc) {
        memset(r, 0, sizeof *r);
        return loss__fail(err, rc, LOSS_AT_NONE, NULL, -1, "invalid plan");
    }
    return loss_finish(p, r, err);
}
