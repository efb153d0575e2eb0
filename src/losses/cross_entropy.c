/* cross_entropy.c - softmax cross-entropy with PyTorch's CrossEntropyLoss semantics:
 * index or probability targets, logits (log-sum-exp) or probabilities (log clamped
 * at -100, no renormalisation), label smoothing (1-ε)y + ε/K, class weights with the
 * weighted-mean normalisation for index targets, and ignore_index. */
#include "loss_internal.h"

#include <stdio.h>
#include <string.h>

enum { PRED, TARGET };
enum { MODE_INDEX = 0, MODE_PROB = 1 };

static const char *const from_choices[] = {"probabilities", "logits", NULL};

static const loss_input_desc inputs[] = {
    {"predictions", "[N,K]", 1, "logits, or probabilities with from=probabilities"},
    {"targets", "[N] class indices, or [N,K] probabilities", 0,
     "the class of each example, or a distribution over the classes"},
};

static const loss_param_desc params[] = {
    {"from", LOSS_PARAM_ENUM, "whether predictions are logits or probabilities", 1,
     LOSS_FROM_LOGITS, 0, 0, 0, 0, from_choices, LOSS__OFF(from), 0},
    {"label_smoothing", LOSS_PARAM_NUMBER, "targets become (1-ε)y + ε/K", 1, 0.0, 0.0,
     1.0, LOSS_MAX_EXCLUSIVE, 0, NULL, LOSS__OFF(label_smoothing), 0},
    {"class_weights", LOSS_PARAM_VECTOR, "a weight per class, [K]", 0, 0, 0, 0, 0, 0.0,
     NULL, 0, LOSS__OFF(class_weights)},
    {"ignore_index", LOSS_PARAM_INTEGER,
     "examples with this target index count in neither sum (index targets only)", 0, 0,
     -9007199254740992.0, 9007199254740992.0, 0, 0, NULL, LOSS__OFF(ignore_index), 0},
};

/* ignore_index is parameter 3 above; absent means no index is ignored. */
#define HAS_IGNORE(p) (((p)->spec.present >> 3) & 1u)

static int shapes(loss_plan *p, loss_error *err)
{
    int rc = loss__need_rank(p, PRED, 2, 2, err);
    if (rc) return rc;
    p->k = p->in[PRED].shape[1];
    if (p->k < 1)
        return loss__fail(err, LOSS_ESHAPE, LOSS_AT_INPUT, "predictions", -1,
                          "inputs.predictions has K = 0 classes; at least 1 is needed");
    const loss_tensor *t = &p->in[TARGET];
    if (t->rank == 1) {
        p->mode = MODE_INDEX;
        if (t->shape[0] != p->n) {
            char s[96];
            return loss__fail(err, LOSS_ESHAPE, LOSS_AT_INPUT, "targets", -1,
                              "inputs.targets has shape %s but must be [%zu] (class "
                              "indices) or [%zu, %zu] (probabilities)",
                              loss__shape_str(t, s, sizeof s), p->n, p->n, p->k);
        }
    } else {
        p->mode = MODE_PROB;
        size_t k = p->k;
        if ((rc = loss__need_rows(p, TARGET, &k, "K", err))) return rc;
        if (HAS_IGNORE(p))
            return loss__fail(err, LOSS_EPARAM_CONFLICT, LOSS_AT_PARAM, "ignore_index",
                              -1,
                              "ignore_index applies to class-index targets only, but "
                              "targets are probabilities [N, K]");
    }
    const loss_vec *cw = &p->spec.class_weights;
    if (cw->data && cw->len != p->k)
        return loss__fail(err, LOSS_ESHAPE, LOSS_AT_PARAM, "class_weights", -1,
                          "class_weights has %zu entries but predictions have K = %zu "
                          "classes",
                          cw->len, p->k);
    loss__set_rows(p, p->k);
    return 0;
}

static int values(loss_plan *p, loss_error *err)
{
    int rc = 0;
    if (p->spec.from == LOSS_FROM_PROBABILITIES)
        rc = loss__need_within(p, PRED, 0.0, 1.0, LOSS_EPROBABILITY, err);
    if (rc) return rc;
    if (p->mode == MODE_PROB)
        return loss__need_within(p, TARGET, 0.0, 1.0, LOSS_EPROBABILITY, err);
    const double *y = p->in[TARGET].data;
    for (size_t i = 0; i < p->n; i++) {
        if (HAS_IGNORE(p) && y[i] == p->spec.ignore_index) continue;
        if (floor(y[i]) != y[i])
            return loss__class_index_error(p, TARGET, i, "is not an integer class index",
                                           err);
        if (y[i] < 0 || y[i] >= (double)p->k) {
            char why[96];
            snprintf(why, sizeof why, "is not a class index in [0, %zu)%s", p->k,
                     HAS_IGNORE(p) ? " nor the ignore_index" : "");
            return loss__class_index_error(p, TARGET, i, why, err);
        }
    }
    return 0;
}

/* Index targets: the target's class weight, 0 when ignored.  Probabilities: 1. */
static void dfactor(const loss_plan *p, size_t t0, size_t n, double *d)
{
    const double *y = p->in[TARGET].data + t0, *cw = p->spec.class_weights.data;
    for (size_t i = 0; i < n; i++) {
        if (p->mode == MODE_PROB)
            d[i] = 1.0;
        else if (HAS_IGNORE(p) && y[i] == p->spec.ignore_index)
            d[i] = 0.0;
        else
            d[i] = cw ? cw[(size_t)y[i]] : 1.0;
    }
}

/* The coefficient a_k of -log p_k in the loss of one row: the smoothed target
 * times the class weight. */
static inline double coef(const loss_plan *p, const double *yrow, size_t c, size_t k)
{
    double eps = p->spec.label_smoothing, K = (double)p->k;
    double wk = p->spec.class_weights.data ? p->spec.class_weights.data[k] : 1.0;
    if (p->mode == MODE_PROB) return wk * ((1.0 - eps) * yrow[k] + eps / K);
    return wk * (eps / K + (k == c ? 1.0 - eps : 0.0));
}

static void row_logits(const loss_plan *p, const double *x, const double *yrow, size_t c,
                       double m, size_t top, double cs, double *l, double *g)
{
    size_t K = p->k;
    /* g holds the exponentials; the softmax's sum is s = 1 + rest */
    double rest = loss__row_expsum(x, K, m, top, g), s = 1.0 + rest;
    /* -log p_k = (m - x_k) + log1p(rest): m - x_k first, which is exact where the
     * two are close, so that large logits keep their differences (m + log s
     * rounded log s away: logits of 1e17 gave a loss of 0 for log 2), and
     * log1p(rest), which keeps a confident row's loss (log s rounded [40, 0] to 0
     * for 4.2e-18). */
    double log_s = loss__row_log1p(rest);
    int plain = p->mode == MODE_INDEX && p->spec.label_smoothing == 0.0;
    if (plain) {
        /* The common case: only the target's term. */
        double wc = p->spec.class_weights.data ? p->spec.class_weights.data[c] : 1.0;
        *l = wc * ((m - x[c]) + log_s);
        if (g) {
            loss__row_scale(g, K, cs * wc / s);
            /* p_c - 1, which is -rest/s for the top class (without cancelling) */
            g[c] = c == top ? -cs * wc * rest / s : g[c] - cs * wc;
        }
        return;
    }
    double loss = 0, a_sum = 0, a_rest = 0;
    for (size_t k = 0; k < K; k++) {
        double a = coef(p, yrow, c, k);
        loss += a * ((m - x[k]) + log_s);
        a_sum += a;
        if (k != top) a_rest += a;
    }
    *l = loss;
    if (g) {
        double f = cs * a_sum / s;
        for (size_t k = 0; k < K; k++) g[k] = f * g[k] - cs * coef(p, yrow, c, k);
        /* a_sum/s - a_top as (a_rest - a_top * rest)/s: both small for a row that
         * is confident where its targets are */
        g[top] = cs * (a_rest - coef(p, yrow, c, top) * rest) / s;
    }
}

static void row_probabilities(const loss_plan *p, const double *x, const double *yrow,
                              size_t c, double cs, double *l, double *g)
{
    double loss = 0;
    for (size_t k = 0; k < p->k; k++) {
        double a = coef(p, yrow, c, k);
        double lg = loss__row_log(x[k]);
        int clamped = !(lg >= LOSS__LOG_CLAMP);
        loss -= a * (clamped ? LOSS__LOG_CLAMP : lg);
        /* The clamp's derivative is 0 where it is active (p == 0 included). */
        if (g) g[k] = clamped || a == 0.0 ? 0.0 : -cs * a / x[k];
    }
    *l = loss;
}

static void kernel(const loss_plan *p, size_t t0, size_t n, const double *w, double *l,
                   double *const *aux, double *const *grads)
{
    size_t K = p->k;
    const double *y = p->in[TARGET].data;
    double d[LOSS__BLOCK_TERMS];
    dfactor(p, t0, n, d);
    for (size_t i = 0; i < n; i++) {
        size_t row = t0 + i;
        const double *x = p->in[PRED].data + row * K;
        double *g = grads[PRED] ? grads[PRED] + row * K : NULL;
        const double *yrow = p->mode == MODE_PROB ? y + row * K : NULL;
        size_t c = 0;
        if (p->mode == MODE_INDEX) {
            if (d[i] == 0.0 && HAS_IGNORE(p) && y[row] == p->spec.ignore_index) {
                l[i] = 0.0;
                aux[0][i] = 0.0;
                if (g) memset(g, 0, K * sizeof *g);
                continue;
            }
            c = (size_t)y[row];
        }
        double cs = w[i] * p->gscale;
        size_t top;
        double m = loss__row_max(x, K, &top);
        if (p->spec.from == LOSS_FROM_LOGITS)
            row_logits(p, x, yrow, c, m, top, cs, &l[i], g);
        else
            row_probabilities(p, x, yrow, c, cs, &l[i], g);
        size_t truth = p->mode == MODE_PROB ? loss__argmax(yrow, K) : c;
        aux[0][i] = top == truth ? d[i] : 0.0;
    }
}

static const loss__ops ops = {shapes, values, dfactor, kernel, 1};

const loss_desc loss__cross_entropy = {
    "cross_entropy",
    "classification",
    "Softmax cross-entropy with PyTorch CrossEntropyLoss semantics (index or "
    "probability targets, label smoothing, class weights, ignore_index).",
    "l = -Σ_k y_k log p̂_k, p̂ = softmax(x) (log-sum-exp) or the given probabilities "
    "(log clamped at -100)",
    "[N]",
    1,
    NULL,
    sizeof params / sizeof params[0],
    params,
    2,
    inputs,
    &ops,
};
