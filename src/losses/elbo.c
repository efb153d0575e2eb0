/* elbo.c - the negative evidence lower bound of a VAE with a diagonal Gaussian
 * encoder and a Bernoulli (logits) or Gaussian (means, fixed sigma) decoder:
 * -ELBO_i = rec_i + β KL_i.  The KL term is written as ½Σ(μ² + expm1(lv) - lv) so
 * that small log-variances keep their precision. */
#include "loss_internal.h"
#include "vmath.h"

enum { X, RECON, MU, LOGVAR };
enum { P_LIKELIHOOD, P_SIGMA, P_BETA };

static const char *const likelihood_choices[] = {"bernoulli", "gaussian", NULL};
static const char *const components[] = {"reconstruction", "kl", "elbo", NULL};

static const loss_input_desc inputs[] = {
    {"x", "[N,D]", 0, "the data (in [0,1] for the Bernoulli decoder)"},
    {"reconstruction", "[N,D]", 1,
     "decoder output: logits (bernoulli) or means (gaussian)"},
    {"mu", "[N,Z]", 1, "encoder means"},
    {"logvar", "[N,Z]", 1, "encoder log-variances"},
};

static const loss_param_desc params[] = {
    {"likelihood", LOSS_PARAM_ENUM, "the decoder's distribution", 1,
     LOSS_LIKELIHOOD_BERNOULLI, 0, 0, 0, 0, likelihood_choices, LOSS__OFF(likelihood), 0},
    {"sigma", LOSS_PARAM_NUMBER, "standard deviation of the Gaussian decoder", 1, 1.0,
     0.0, INFINITY, LOSS_MIN_EXCLUSIVE, 0, NULL, LOSS__OFF(sigma), 0},
    {"beta", LOSS_PARAM_NUMBER, "weight of the KL term (β-VAE)", 1, 1.0, 0.0, INFINITY, 0,
     0, NULL, LOSS__OFF(beta), 0},
};

static int shapes(loss_plan *p, loss_error *err)
{
    size_t d = (size_t)-1, z = (size_t)-1;
    int rc = loss__need_rows(p, X, &d, "D", err);
    if (!rc) rc = loss__need_rows(p, RECON, &d, "D", err);
    if (!rc) rc = loss__need_rows(p, MU, &z, "Z", err);
    if (!rc) rc = loss__need_rows(p, LOGVAR, &z, "Z", err);
    if (rc) return rc;
    /* Its default, 1, is what the response's spec shows for bernoulli too, so that
     * spec can be sent back; any other sigma with bernoulli is a mistake. */
    if (p->spec.likelihood == LOSS_LIKELIHOOD_BERNOULLI &&
        ((p->spec.given >> P_SIGMA) & 1u) && p->spec.sigma != 1.0)
        return loss__fail(err, LOSS_EPARAM_CONFLICT, LOSS_AT_PARAM, "sigma", -1,
                          "sigma applies to likelihood \"gaussian\" only (bernoulli "
                          "takes no sigma, or its default 1)");
    p->d = d;
    p->z = z;
    loss__set_rows(p, d + z); /* the work per example, for the block size */
    return 0;
}

static int values(loss_plan *p, loss_error *err)
{
    if (p->spec.likelihood == LOSS_LIKELIHOOD_BERNOULLI)
        return loss__need_within(p, X, 0.0, 1.0, LOSS_EPROBABILITY, err);
    return 0;
}

/* Per-element terms in flat, branch-free loops (they vectorize); the rows' sums
 * follow, in element order. */
LOSS__KERNEL static void bernoulli_terms(const double *restrict x,
                                         const double *restrict r, size_t m,
                                         double *restrict term, double *restrict dg)
{
    for (size_t k = 0; k < m; k++) {
        /* BCE with logits as bce.c's: (1-x) r + softplus(-r) and σ(r) - x cancel
         * for confident answers (x = 1, r = 40 gave a gradient of 0 for -4.2e-18) */
        loss__logistic f = loss__vlogistic(r[k]);
        term[k] = (1.0 - x[k]) * f.sp + x[k] * f.sp_neg;
        dg[k] = (1.0 - x[k]) * f.sig - x[k] * f.sig_neg;
    }
}

LOSS__KERNEL static void gaussian_terms(const double *restrict x,
                                        const double *restrict r, size_t m, double scale,
                                        double inv_sigma, double log_norm,
                                        double *restrict term, double *restrict dg)
{
    for (size_t k = 0; k < m; k++) {
        /* z = (x - x̂)/σ, not e²/σ²: σ² under- or overflows; scale is 1, or 2^100
         * for a subnormal σ, where 1/σ is inf (inv_sigma is 1/(σ scale)) */
        double z = (x[k] - r[k]) * scale * inv_sigma;
        term[k] = 0.5 * z * z + log_norm;
        dg[k] = -z * scale * inv_sigma;
    }
}

/* e^x - 1 - x given em1 = expm1(x): em1 - x cancels for small |x| (x = 1e-10
 * lost 7 digits, 1e-20 all of them), so there its Taylor series, x² Σ x^j/(j+2)!,
 * to x^17/17! (its next term is below 2^-60 of the sum for |x| ≤ 1/2). */
static inline double expm1_minus(double x, double em1)
{
    static const double c[] = {1.0 / 2,
                               1.0 / 6,
                               1.0 / 24,
                               1.0 / 120,
                               1.0 / 720,
                               1.0 / 5040,
                               1.0 / 40320,
                               1.0 / 362880,
                               1.0 / 3628800,
                               1.0 / 39916800,
                               1.0 / 479001600,
                               1.0 / 6227020800,
                               1.0 / 87178291200,
                               1.0 / 1307674368000,
                               1.0 / 20922789888000,
                               1.0 / 355687428096000};
    double poly = c[15];
    for (int j = 14; j >= 0; j--) poly = poly * x + c[j];
    /* both forms for every x, one selected: the loop stays branch-free */
    return fabs(x) <= 0.5 ? poly * x * x : em1 - x;
}

LOSS__KERNEL static void kl_terms(const double *restrict mu, const double *restrict lv,
                                  size_t m, double *restrict term, double *restrict em1)
{
    for (size_t k = 0; k < m; k++) {
        em1[k] = loss__vexpm1(lv[k]);
        term[k] = 0.5 * (mu[k] * mu[k] + expm1_minus(lv[k], em1[k]));
    }
}

#define PIECE 2048 /* elements per scratch piece */

/* Sums of the reconstruction terms of rows [r0, r0 + n) (D elements each) into
 * rec[], and the gradient c_i * dg when gr is not NULL. */
static void reconstruction(const loss_plan *p, size_t r0, size_t n, const double *c,
                           double *rec, double *gr)
{
    size_t D = p->d;
    int gauss = p->spec.likelihood == LOSS_LIKELIHOOD_GAUSSIAN;
    /* ½ log(2πσ²) as log σ + ½ log 2π, finite for every finite σ > 0 */
    double sigma = p->spec.sigma, scale = sigma < 0x1p-1000 ? 0x1p100 : 1.0;
    double inv_sigma = 1.0 / (sigma * scale);
    double log_norm = loss__vlog(sigma) + 0.91893853320467274178; /* ½ log 2π */
    double term[PIECE], dg[PIECE];
    for (size_t i = 0; i < n; i++) rec[i] = 0.0;
    /* pieces of whole rows, or pieces of one row when a row is longer */
    size_t rows = D && D <= PIECE ? PIECE / D : 1;
    for (size_t i0 = 0; i0 < n; i0 += rows) {
        size_t nr = n - i0 < rows ? n - i0 : rows;
        size_t e0 = (r0 + i0) * D, m = nr * D;
        for (size_t k0 = 0; k0 < m; k0 += PIECE) {
            size_t mk = m - k0 < PIECE ? m - k0 : PIECE;
            const double *x = p->in[X].data + e0 + k0, *r = p->in[RECON].data + e0 + k0;
            if (gauss)
                gaussian_terms(x, r, mk, scale, inv_sigma, log_norm, term, dg);
            else
                bernoulli_terms(x, r, mk, term, dg);
            for (size_t k = 0; k < mk; k++) {
                size_t i = i0 + (k0 + k) / D;
                rec[i] += term[k];
                if (gr) gr[e0 + k0 + k] = c[i] * dg[k];
            }
        }
    }
}

static void divergence(const loss_plan *p, size_t r0, size_t n, const double *c,
                       double *kl, double *gm, double *gl)
{
    size_t Z = p->z;
    double beta = p->spec.beta, term[PIECE], em1[PIECE];
    for (size_t i = 0; i < n; i++) kl[i] = 0.0;
    size_t rows = Z && Z <= PIECE ? PIECE / Z : 1;
    for (size_t i0 = 0; i0 < n; i0 += rows) {
        size_t nr = n - i0 < rows ? n - i0 : rows;
        size_t e0 = (r0 + i0) * Z, m = nr * Z;
        for (size_t k0 = 0; k0 < m; k0 += PIECE) {
            size_t mk = m - k0 < PIECE ? m - k0 : PIECE;
            const double *mu = p->in[MU].data + e0 + k0,
                         *lv = p->in[LOGVAR].data + e0 + k0;
            kl_terms(mu, lv, mk, term, em1);
            for (size_t k = 0; k < mk; k++) {
                size_t i = i0 + (k0 + k) / Z;
                kl[i] += term[k];
                if (gm) gm[e0 + k0 + k] = c[i] * beta * mu[k];
                if (gl) gl[e0 + k0 + k] = c[i] * beta * 0.5 * em1[k];
            }
        }
    }
}

static void kernel(const loss_plan *p, size_t t0, size_t n, const double *w, double *l,
                   double *const *aux, double *const *g)
{
    double c[LOSS__BLOCK_TERMS];
    for (size_t i = 0; i < n; i++) c[i] = w[i] * p->gscale;
    reconstruction(p, t0, n, c, aux[0], g[RECON]);
    divergence(p, t0, n, c, aux[1], g[MU], g[LOGVAR]);
    for (size_t i = 0; i < n; i++) l[i] = aux[0][i] + p->spec.beta * aux[1][i];
}

static const loss__ops ops = {shapes, values, NULL, kernel, 2};

const loss_desc loss__elbo = {
    "elbo",
    "generative",
    "Negative ELBO of a VAE: reconstruction (Bernoulli logits or Gaussian means) plus "
    "β times the KL divergence of N(μ, e^logvar) from N(0, I).",
    "l = rec + β·KL, KL = -½ Σ_z (1 + logvar - μ² - e^logvar)",
    "[N]",
    0,
    components,
    sizeof params / sizeof params[0],
    params,
    4,
    inputs,
    &ops,
};
