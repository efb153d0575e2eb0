/* elbo.c - the negative evidence lower bound of a VAE with a diagonal Gaussian
 * encoder and a Bernoulli (logits) or Gaussian (means, fixed sigma) decoder:
 * -ELBO_i = rec_i + β KL_i.  The KL term is written as ½Σ(μ² + expm1(lv) - lv) so
 * that small log-variances keep their precision. */
#include "loss_internal.h"

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
    if (p->spec.likelihood == LOSS_LIKELIHOOD_BERNOULLI &&
        ((p->spec.given >> P_SIGMA) & 1u))
        return loss__fail(err, LOSS_EPARAM_CONFLICT, LOSS_AT_PARAM, "sigma", -1,
                          "sigma applies to likelihood \"gaussian\" only");
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

static void kernel(const loss_plan *p, size_t t0, size_t n, const double *w, double *l,
                   double *const *aux, double *const *g)
{
    size_t D = p->d, Z = p->z;
    double beta = p->spec.beta, sigma = p->spec.sigma;
    int gauss = p->spec.likelihood == LOSS_LIKELIHOOD_GAUSSIAN;
    double inv_var = 1.0 / (sigma * sigma);
    double log_norm = 0.5 * log(2.0 * 3.14159265358979323846 * sigma * sigma);
    for (size_t i = 0; i < n; i++) {
        size_t row = t0 + i;
        const double *x = p->in[X].data + row * D, *r = p->in[RECON].data + row * D;
        const double *mu = p->in[MU].data + row * Z, *lv = p->in[LOGVAR].data + row * Z;
        double c = w[i] * p->gscale;
        double rec = 0, kl = 0;
        double *gr = g[RECON] ? g[RECON] + row * D : NULL;
        for (size_t k = 0; k < D; k++) {
            if (gauss) {
                double e = x[k] - r[k];
                rec += 0.5 * e * e * inv_var + log_norm;
                if (gr) gr[k] = c * -e * inv_var;
            } else {
                rec += (1.0 - x[k]) * r[k] + loss__softplus(-r[k]);
                if (gr) gr[k] = c * (loss__sigmoid(r[k]) - x[k]);
            }
        }
        double *gm = g[MU] ? g[MU] + row * Z : NULL,
               *gl = g[LOGVAR] ? g[LOGVAR] + row * Z : NULL;
        for (size_t k = 0; k < Z; k++) {
            double em1 = expm1(lv[k]);
            kl += 0.5 * (mu[k] * mu[k] + em1 - lv[k]);
            if (gm) gm[k] = c * beta * mu[k];
            if (gl) gl[k] = c * beta * 0.5 * em1;
        }
        l[i] = rec + beta * kl;
        aux[0][i] = rec;
        aux[1][i] = kl;
    }
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
