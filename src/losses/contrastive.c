/* contrastive.c - the contrastive loss of pairs (Hadsell et al. 2006, the seed's
 * form without the 1/2): s d² + (1-s) max(0, m - d)², d = ‖x1 - x2‖₂. */
#include "loss_internal.h"

enum { X1, X2, SIMILAR };

static const loss_input_desc inputs[] = {
    {"x1", "[N,D]", 1, "first embedding of each pair"},
    {"x2", "[N,D]", 1, "second embedding of each pair"},
    {"similar", "[N], in {0,1}", 0, "1 for a similar pair, 0 for a dissimilar one"},
};

static const loss_param_desc params[] = {
    {"margin", LOSS_PARAM_NUMBER, "distance below which dissimilar pairs are penalised",
     1, 1.0, 0.0, INFINITY, LOSS_MIN_EXCLUSIVE, 0, NULL, LOSS__OFF(margin), 0},
};

static int shapes(loss_plan *p, loss_error *err)
{
    size_t d = (size_t)-1;
    int rc = loss__need_rows(p, X1, &d, "D", err);
    if (!rc) rc = loss__need_rows(p, X2, &d, "D", err);
    if (!rc) rc = loss__need_rank(p, SIMILAR, 1, 1, err);
    if (!rc && p->in[SIMILAR].shape[0] != p->n) {
        char s[96];
        rc = loss__fail(err, LOSS_ESHAPE, LOSS_AT_INPUT, "similar", -1,
                        "inputs.similar has shape %s but must be [%zu]",
                        loss__shape_str(&p->in[SIMILAR], s, sizeof s), p->n);
    }
    if (rc) return rc;
    p->d = d;
    loss__set_rows(p, d);
    return 0;
}

static int values(loss_plan *p, loss_error *err)
{
    return loss__need_labels(p, SIMILAR, 0.0, 1.0, err);
}

static void kernel(const loss_plan *p, size_t t0, size_t n, const double *w, double *l,
                   double *const *aux, double *const *g)
{
    size_t D = p->d;
    double m = p->spec.margin;
    (void)aux;
    for (size_t i = 0; i < n; i++) {
        size_t row = t0 + i;
        const double *a = p->in[X1].data + row * D, *b = p->in[X2].data + row * D;
        double d2 = 0;
        for (size_t k = 0; k < D; k++) d2 += (a[k] - b[k]) * (a[k] - b[k]);
        int sim = p->in[SIMILAR].data[row] == 1.0;
        double d = loss__row_dist(a, b, D, 0.0, d2),
               f; /* f: dl/d(x1 - x2) = f (x1 - x2) */
        if (sim) {
            l[i] = d2;
            f = 2.0;
        } else {
            double h = m - d > 0 ? m - d : 0.0;
            l[i] = h * h;
            f = h > 0 && d > 0 ? -2.0 * h / d
                               : 0.0; /* 0 at d = 0, as the contract says */
        }
        double c = w[i] * p->gscale * f;
        double *g1 = g[X1] ? g[X1] + row * D : NULL, *g2 = g[X2] ? g[X2] + row * D : NULL;
        for (size_t k = 0; k < D; k++) {
            double v = c * (a[k] - b[k]);
            if (g1) g1[k] = v;
            if (g2) g2[k] = -v;
        }
    }
}

static const loss__ops ops = {shapes, values, NULL, kernel, 0};

const loss_desc loss__contrastive = {
    "contrastive",
    "embedding",
    "Contrastive loss of embedding pairs; the gradient is 0 where the distance is 0.",
    "l = s·d² + (1-s)·max(0, m - d)², d = ‖x1 - x2‖₂",
    "[N]",
    0,
    NULL,
    sizeof params / sizeof params[0],
    params,
    3,
    inputs,
    &ops,
};
