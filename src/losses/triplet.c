/* triplet.c - the triplet margin loss.  By default the seed's squared distances:
 * max(0, ‖a-p‖² - ‖a-n‖² + α); with squared = false PyTorch's
 * TripletMarginLoss(p=2, eps=1e-6): max(0, d(a,p) - d(a,n) + α), d(x,y) = ‖x-y+ε‖₂.
 * As PyTorch's clamp_min, the hinge passes the gradient at equality. */
#include "loss_internal.h"

enum { ANCHOR, POSITIVE, NEGATIVE };

/* PyTorch's pairwise_distance adds eps to the difference vector. */
#define TRIPLET_EPS 1e-6

static const loss_input_desc inputs[] = {
    {"anchor", "[N,D]", 1, "anchor embeddings"},
    {"positive", "[N,D]", 1, "embeddings of the same identity as the anchor"},
    {"negative", "[N,D]", 1, "embeddings of another identity"},
};

static const loss_param_desc params[] = {
    {"margin", LOSS_PARAM_NUMBER, "the margin α", 1, 1.0, 0.0, INFINITY, 0, 0, NULL,
     LOSS__OFF(margin), 0},
    {"squared", LOSS_PARAM_BOOL,
     "squared Euclidean distances (the seed's form); false: PyTorch TripletMarginLoss", 1,
     1, 0, 0, 0, 0, NULL, LOSS__OFF(squared), 0},
};

static int shapes(loss_plan *p, loss_error *err)
{
    size_t d = (size_t)-1;
    int rc = loss__need_rows(p, ANCHOR, &d, "D", err);
    if (!rc) rc = loss__need_rows(p, POSITIVE, &d, "D", err);
    if (!rc) rc = loss__need_rows(p, NEGATIVE, &d, "D", err);
    if (rc) return rc;
    p->d = d;
    loss__set_rows(p, d);
    return 0;
}

static void kernel(const loss_plan *p, size_t t0, size_t n, const double *w, double *l,
                   double *const *aux, double *const *g)
{
    size_t D = p->d;
    double m = p->spec.margin, e = p->spec.squared ? 0.0 : TRIPLET_EPS;
    (void)aux;
    for (size_t i = 0; i < n; i++) {
        size_t row = t0 + i;
        const double *a = p->in[ANCHOR].data + row * D;
        const double *ps = p->in[POSITIVE].data + row * D;
        const double *ng = p->in[NEGATIVE].data + row * D;
        double sp = 0, sn = 0;
        for (size_t k = 0; k < D; k++) {
            double u = a[k] - ps[k] + e, v = a[k] - ng[k] + e;
            sp += u * u;
            sn += v * v;
        }
        /* cp, cn: the cost's gradient w.r.t. (a - x + e) is c_x (a - x + e).  For
         * the norm this is (a - x + e) * (c / d), the order PyTorch's norm backward
         * uses, so that rounding agrees too. */
        double h, cp, cn;
        double c = w[i] * p->gscale;
        if (p->spec.squared) {
            h = sp - sn + m;
            cp = 2.0 * c;
            cn = 2.0 * c;
        } else {
            double dp = loss__row_dist(a, ps, D, e, sp),
                   dn = loss__row_dist(a, ng, D, e, sn);
            h = dp - dn + m;
            cp = dp > 0 ? c / dp : 0.0; /* the norm's subgradient 0 at 0 */
            cn = dn > 0 ? c / dn : 0.0;
        }
        l[i] = h > 0 || isnan(h) ? h : 0.0; /* NaN (inf - inf) is reported, not 0 */
        if (h < 0) cp = cn = 0.0; /* inactive (not NaN, whose gradient is reported) */
        double *ga = g[ANCHOR] ? g[ANCHOR] + row * D : NULL;
        double *gp = g[POSITIVE] ? g[POSITIVE] + row * D : NULL;
        double *gn = g[NEGATIVE] ? g[NEGATIVE] + row * D : NULL;
        for (size_t k = 0; k < D; k++) {
            double u = (a[k] - ps[k] + e) * cp, v = (a[k] - ng[k] + e) * cn;
            if (ga) ga[k] = u - v;
            if (gp) gp[k] = -u;
            if (gn) gn[k] = v;
        }
    }
}

static const loss__ops ops = {shapes, NULL, NULL, kernel, 0};

const loss_desc loss__triplet = {
    "triplet",
    "embedding",
    "Triplet margin loss; squared distances by default (the seed's form), PyTorch "
    "TripletMarginLoss(p=2, eps=1e-6) with squared = false.",
    "l = max(0, d(a,p)² - d(a,n)² + α); squared = false: max(0, d(a,p) - d(a,n) + α), "
    "d(x,y) = ‖x-y+ε‖₂",
    "[N]",
    0,
    NULL,
    sizeof params / sizeof params[0],
    params,
    3,
    inputs,
    &ops,
};
