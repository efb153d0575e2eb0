/* test_vmath.c - the vectorizable exp, log, log1p and expm1 of the core
 * (src/losses/vmath.h) against glibc's long double expl, logl, log1pl and expm1l
 * (64-bit significands: their error is ~2^-11 ulp of a double).
 *
 * Each function is evaluated on a few million points: whole domains in
 * log-space, dense near 0, near 1 (log), near -1 (log1p), at the reduction
 * boundaries, near the overflow and underflow thresholds, subnormals, and exact
 * special values.  The maximum error in ulps of the exact result (ulp of a
 * double, 2^-1074 below the normal range) must stay within 1 ulp for exp and
 * log, 2 ulps for log1p and expm1.  Every batch is computed twice, by a loop over
 * an array (which the compiler may vectorize) and one call at a time through a
 * volatile function pointer, and both must give the same bits. */
#include "support.h"
#include "vmath.h"

#include <stdint.h>
#include <string.h>

#define BATCH 4096

/* Multiplies every point count (build with -DVMATH_SCALE=50 for a deeper run). */
#ifndef VMATH_SCALE
#define VMATH_SCALE 1
#endif

/* ---- the functions under test, as array loops and as scalar calls ---- */

static void arr_exp(const double *x, double *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = loss__vexp(x[i]);
}
static void arr_log(const double *x, double *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = loss__vlog(x[i]);
}
static void arr_log1p(const double *x, double *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = loss__vlog1p(x[i]);
}
static void arr_expm1(const double *x, double *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = loss__vexpm1(x[i]);
}
static double one_exp(double x)
{
    return loss__vexp(x);
}
static double one_log(double x)
{
    return loss__vlog(x);
}
static double one_log1p(double x)
{
    return loss__vlog1p(x);
}
static double one_expm1(double x)
{
    return loss__vexpm1(x);
}

typedef struct fn {
    const char *name;
    void (*arr)(const double *, double *, size_t);
    double (*one)(double);
    long double (*ref)(long double);
    double limit; /* ulps */
    /* measured */
    double max_ulp, worst_x;
    long points, mismatches;
} fn;

static fn fns[] = {
    {"exp", arr_exp, one_exp, expl, 1.0, 0, 0, 0, 0},
    {"log", arr_log, one_log, logl, 1.0, 0, 0, 0, 0},
    {"log1p", arr_log1p, one_log1p, log1pl, 2.0, 0, 0, 0, 0},
    {"expm1", arr_expm1, one_expm1, expm1l, 2.0, 0, 0, 0, 0},
};
enum { F_EXP, F_LOG, F_LOG1P, F_EXPM1 };

/* The error of got in ulps of want (a double's ulp at |want|, 2^-1074 at least;
 * an infinite result counts as 2^1024).  NaN must match NaN, infinities exactly. */
static double ulp_error(double got, long double want)
{
    if (isnan(want)) return isnan(got) ? 0.0 : INFINITY;
    if (isnan(got)) return INFINITY;
    if (isinf(want)) return (long double)got == want ? 0.0 : INFINITY;
    long double g = got, aw = fabsl(want), ulp;
    if (isinf(got)) {
        if (aw >= ldexpl(1.0L, 1024) && (got > 0) == (want > 0))
            return 0.0; /* beyond the double range: inf is the rounded result */
        g = got > 0 ? ldexpl(1.0L, 1024) : -ldexpl(1.0L, 1024);
    }
    if (aw < ldexpl(1.0L, -1022)) {
        ulp = ldexpl(1.0L, -1074);
    } else {
        int ex;
        frexpl(aw, &ex); /* aw = f 2^ex, f in [0.5, 1) */
        if (ex > 1024) ex = 1024;
        ulp = ldexpl(1.0L, ex - 53);
    }
    return (double)(fabsl(g - want) / ulp);
}

/* FNV-1a of the bits of every result: equal across builds (optimization
 * levels, -mavx2, vectorized or not) when the functions are deterministic. */
static uint64_t result_hash = 0xcbf29ce484222325ull;

/* Evaluates f on x[0..n) both ways and records the errors; returns the
 * largest error of the batch. */
static double run_batch(fn *f, const double *x, size_t n)
{
    double bmax = 0.0;
    static double y[BATCH];
    double (*volatile one)(double) = f->one;
    f->arr(x, y, n);
    for (size_t i = 0; i < n; i++) {
        double s = one(x[i]);
        if (memcmp(&s, &y[i], sizeof s) != 0) {
            if (f->mismatches++ < 5)
                CHECK(0, "%s(%a): array loop gives %a, scalar call %a", f->name, x[i],
                      y[i], s);
        }
        uint64_t b;
        memcpy(&b, &y[i], sizeof b);
        result_hash = (result_hash ^ b) * 0x100000001b3ull;
        double e = ulp_error(y[i], f->ref((long double)x[i]));
        if (!(e <= bmax)) bmax = e;
        if (!(e <= f->max_ulp)) { /* NaN-safe */
            f->max_ulp = e;
            f->worst_x = x[i];
        }
    }
    f->points += (long)n;
    return bmax;
}

/* ---- point generators ---- */

static uint64_t rng_bits(rng *r)
{
    uint64_t a = (uint64_t)(rng_uniform(r) * 4294967296.0);
    uint64_t b = (uint64_t)(rng_uniform(r) * 4294967296.0);
    return a << 32 | b;
}

static double from_bits(uint64_t u)
{
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Random sign when sign == 0, else sign. */
static double signed_(rng *r, double mag, int sign)
{
    if (sign == 0) sign = rng_uniform(r) < 0.5 ? -1 : 1;
    return sign < 0 ? -mag : mag;
}

/* |x| log-uniform in [2^lo, 2^hi) with a random 52-bit significand; subnormal
 * exponents give subnormals. */
static double logmag(rng *r, int lo, int hi)
{
    int e = lo + (int)(rng_uniform(r) * (hi - lo));
    if (e < -1022) {
        uint64_t m = rng_bits(r) & ((1ull << 52) - 1);
        int shift = -1022 - e; /* subnormal with its top bit at 2^e */
        if (shift > 52) shift = 52;
        return from_bits(((1ull << 52) | m) >> shift);
    }
    return ldexp(1.0 + rng_uniform(r), e);
}

typedef enum {
    G_UNIFORM, /* a + (b - a) u */
    G_LOGMAG,  /* c + sign 2^[a, b) (random significand) */
    G_ALLPOS,  /* every positive finite double: random exponent field and bits */
    G_NEAR,    /* c 2^j (1 + d) or (for exp) (2 (j + d) + 1) c, j random in [a, b], d ~
                  +-2^[-60, -8) */
} gen_kind;

typedef struct gen {
    int f; /* F_* */
    gen_kind kind;
    double a, b, c;
    int sign; /* G_LOGMAG: 0 random, 1, -1 */
    long n;
    const char *what;
} gen;

static const gen gens[] = {
    /* exp */
    {F_EXP, G_UNIFORM, -746, 710, 0, 0, 300000, "uniform over the domain"},
    {F_EXP, G_LOGMAG, -1074, 10, 0, 0, 400000, "all magnitudes, both signs"},
    {F_EXP, G_UNIFORM, -1, 1, 0, 0, 150000, "[-1, 1]"},
    {F_EXP, G_UNIFORM, 709, 709.8, 0, 0, 100000, "near overflow"},
    {F_EXP, G_UNIFORM, 709.78, 709.785, 0, 0, 50000, "at the overflow threshold"},
    {F_EXP, G_UNIFORM, -745.2, -708.3, 0, 0, 200000, "subnormal results"},
    {F_EXP, G_UNIFORM, -745.14, -745.12, 0, 0, 50000, "at the underflow threshold"},
    {F_EXP, G_UNIFORM, -708.39, 709.78, 0, 0, 200000, "normal results"},
    {F_EXP, G_NEAR, -1021, 1023, 0.34657359027997264, 0, 100000,
     "k ln2 +- ln2/2, normal"},
    {F_EXP, G_NEAR, -1076, -1022, 0.34657359027997264, 0, 50000,
     "k ln2 +- ln2/2, subnormal"},
    /* log */
    {F_LOG, G_ALLPOS, 0, 0, 0, 0, 600000, "every positive double"},
    {F_LOG, G_LOGMAG, -60, -1, 1, 0, 400000, "1 +- 2^[-60, -1)"},
    {F_LOG, G_UNIFORM, 0.5, 2, 0, 0, 200000, "[0.5, 2]"},
    {F_LOG, G_NEAR, -1074, 1023, 0.70710678118654752, 0, 100000, "sqrt(1/2) 2^j"},
    {F_LOG, G_LOGMAG, -1074, -1022, 0, 1, 100000, "subnormals"},
    /* log1p */
    {F_LOG1P, G_ALLPOS, 0, 0, 0, 0, 400000, "every positive double"},
    {F_LOG1P, G_LOGMAG, -1074, 0, 0, -1, 400000, "(-1, 0), all magnitudes"},
    {F_LOG1P, G_LOGMAG, -53, -1, -1, 1, 200000, "-1 + 2^[-53, -1)"},
    {F_LOG1P, G_UNIFORM, -0.5, 1, 0, 0, 200000, "[-0.5, 1]"},
    {F_LOG1P, G_NEAR, 0, 0, 0.41421356237309505, 0, 30000, "sqrt(2) - 1"},
    {F_LOG1P, G_NEAR, 0, 0, -0.29289321881345248, 0, 30000, "sqrt(1/2) - 1"},
    {F_LOG1P, G_NEAR, 0, 60, 1, 0, 100000, "2^j (1 +- d)"},
    /* expm1 */
    {F_EXPM1, G_LOGMAG, -1074, 10, 0, 0, 500000, "all magnitudes, both signs"},
    {F_EXPM1, G_UNIFORM, -50, 50, 0, 0, 300000, "[-50, 50]"},
    {F_EXPM1, G_UNIFORM, -1, 1, 0, 0, 300000, "[-1, 1]"},
    {F_EXPM1, G_UNIFORM, 709, 709.8, 0, 0, 50000, "near overflow"},
    {F_EXPM1, G_NEAR, -60, 60, 0.34657359027997264, 0, 100000, "k ln2 +- ln2/2"},
    {F_EXPM1, G_UNIFORM, 39, 41, 0, 0, 20000, "near 40"},
    {F_EXPM1, G_UNIFORM, -41, -36, 0, 0, 20000, "near -40"},
};

static double generate(const gen *g, rng *r)
{
    switch (g->kind) {
    case G_UNIFORM:
        return g->a + (g->b - g->a) * rng_uniform(r);
    case G_LOGMAG:
        return g->c + signed_(r, logmag(r, (int)g->a, (int)g->b), g->sign);
    case G_ALLPOS: {
        uint64_t e = (uint64_t)(rng_uniform(r) * 2047.0); /* 0 (subnormal) .. 2046 */
        return from_bits(e << 52 | (rng_bits(r) & ((1ull << 52) - 1)));
    }
    case G_NEAR: {
        int j = (int)g->a + (int)(rng_uniform(r) * (g->b - g->a + 1));
        double d = signed_(r, logmag(r, -60, -8), 0);
        /* (j + 1/2 + d) ln2 for exp-like (c = ln2/2), c 2^j (1 + d) for the others */
        if (g->f == F_EXP || g->f == F_EXPM1) return (2.0 * (j + d) + 1.0) * g->c;
        return ldexp(g->c, j) * (1.0 + d);
    }
    }
    return 0.0;
}

/* ---- exact special values ---- */

static int same(double a, double b)
{
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0;
}

#define EXPECT(call, want)                                                \
    do {                                                                  \
        double got_ = (call), want_ = (want);                             \
        CHECK(same(got_, want_), "%s = %a, want %a", #call, got_, want_); \
    } while (0)

static void special_values(void)
{
    const double tiny = 0x1p-1074, dmax = DBL_MAX;

    EXPECT(loss__vexp(0.0), 1.0);
    EXPECT(loss__vexp(-0.0), 1.0);
    EXPECT(loss__vexp(tiny), 1.0);
    EXPECT(loss__vexp(-tiny), 1.0);
    EXPECT(loss__vexp(1.0), 0x1.5bf0a8b145769p+1);
    EXPECT(loss__vexp(INFINITY), INFINITY);
    EXPECT(loss__vexp(-INFINITY), 0.0);
    EXPECT(loss__vexp(NAN), NAN);
    EXPECT(loss__vexp(dmax), INFINITY);
    EXPECT(loss__vexp(-dmax), 0.0);
    EXPECT(loss__vexp(710.0), INFINITY);
    EXPECT(loss__vexp(709.782712893384), 0x1.fffffffffff2ap+1023);
    EXPECT(loss__vexp(709.7827128933841), INFINITY);
    EXPECT(loss__vexp(-746.0), 0.0);
    EXPECT(loss__vexp(-745.13321910194110), tiny); /* just above e^x = 2^-1075 */
    EXPECT(loss__vexp(-745.1332191019412), 0.0);
    EXPECT(loss__vexp(-708.3964185322641), 0x1.000000000007cp-1022);

    EXPECT(loss__vlog(1.0), 0.0);
    EXPECT(loss__vlog(0.0), -INFINITY);
    EXPECT(loss__vlog(-0.0), -INFINITY);
    EXPECT(loss__vlog(INFINITY), INFINITY);
    EXPECT(loss__vlog(-INFINITY), NAN);
    EXPECT(loss__vlog(-1.0), NAN);
    EXPECT(loss__vlog(-tiny), NAN);
    EXPECT(loss__vlog(NAN), NAN);
    EXPECT(loss__vlog(2.0), 0x1.62e42fefa39efp-1);
    EXPECT(loss__vlog(tiny), -0x1.74385446d71c3p+9);
    EXPECT(loss__vlog(dmax), 0x1.62e42fefa39efp+9);
    EXPECT(loss__vlog(0x1p-1022), -0x1.6232bdd7abcd2p+9);

    EXPECT(loss__vlog1p(0.0), 0.0);
    EXPECT(loss__vlog1p(-0.0), -0.0);
    EXPECT(loss__vlog1p(tiny), tiny);
    EXPECT(loss__vlog1p(-tiny), -tiny);
    EXPECT(loss__vlog1p(0x1p-60), 0x1p-60);
    EXPECT(loss__vlog1p(-1.0), -INFINITY);
    EXPECT(loss__vlog1p(-2.0), NAN);
    EXPECT(loss__vlog1p(-INFINITY), NAN);
    EXPECT(loss__vlog1p(INFINITY), INFINITY);
    EXPECT(loss__vlog1p(NAN), NAN);
    EXPECT(loss__vlog1p(1.0), 0x1.62e42fefa39efp-1);
    EXPECT(loss__vlog1p(dmax), 0x1.62e42fefa39efp+9);

    EXPECT(loss__vexpm1(0.0), 0.0);
    EXPECT(loss__vexpm1(-0.0), -0.0);
    EXPECT(loss__vexpm1(tiny), tiny);
    EXPECT(loss__vexpm1(-tiny), -tiny);
    EXPECT(loss__vexpm1(0x1p-60), 0x1p-60);
    EXPECT(loss__vexpm1(INFINITY), INFINITY);
    EXPECT(loss__vexpm1(-INFINITY), -1.0);
    EXPECT(loss__vexpm1(NAN), NAN);
    EXPECT(loss__vexpm1(-40.0), -1.0);
    EXPECT(loss__vexpm1(-1000.0), -1.0);
    EXPECT(loss__vexpm1(-dmax), -1.0);
    EXPECT(loss__vexpm1(dmax), INFINITY);
    EXPECT(loss__vexpm1(710.0), INFINITY);
    EXPECT(loss__vexpm1(1.0), 0x1.b7e151628aed3p+0);

    /* and the same values through the ulp measure (and the array loops) */
    static const double sp[] = {0.0,
                                -0.0,
                                0x1p-1074,
                                -0x1p-1074,
                                0x1p-1022,
                                -0x1p-1022,
                                0x1p-60,
                                -0x1p-60,
                                0x1p-53,
                                -0x1p-53,
                                0.5,
                                -0.5,
                                1.0,
                                -1.0,
                                2.0,
                                -2.0,
                                0.34657359027997264,
                                -0.34657359027997264,
                                10.0,
                                -10.0,
                                40.0,
                                -40.0,
                                700.0,
                                -700.0,
                                709.78,
                                -745.13,
                                1e300,
                                -1e300,
                                DBL_MAX,
                                -DBL_MAX,
                                INFINITY,
                                -INFINITY,
                                NAN};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
        run_batch(&fns[i], sp, sizeof sp / sizeof sp[0]);
}

int main(void)
{
    special_values();

    static double x[BATCH];
    printf("%-6s %-28s %9s %9s\n", "func", "points", "count", "max ulp");
    rng r = {0x9e3779b97f4a7c15ull};
    for (size_t gi = 0; gi < sizeof gens / sizeof gens[0]; gi++) {
        const gen *g = &gens[gi];
        fn *f = &fns[g->f];
        double gmax = 0.0;
        long total = g->n * VMATH_SCALE;
        for (long done = 0; done < total; done += BATCH) {
            size_t n = (size_t)(total - done < BATCH ? total - done : BATCH);
            for (size_t i = 0; i < n; i++) x[i] = generate(g, &r);
            double e = run_batch(f, x, n);
            if (!(e <= gmax)) gmax = e;
        }
        printf("%-6s %-28s %9ld %9.4f\n", f->name, g->what, total, gmax);
    }

    printf("\n%-6s %10s %10s %8s  %s\n", "func", "points", "max ulp", "limit",
           "worst at");
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        const fn *f = &fns[i];
        printf("%-6s %10ld %10.4f %8.1f  %a\n", f->name, f->points, f->max_ulp, f->limit,
               f->worst_x);
        CHECK(f->max_ulp <= f->limit, "%s: max error %.4f ulp at %a, limit %.1f", f->name,
              f->max_ulp, f->worst_x, f->limit);
        CHECK(f->mismatches == 0, "%s: %ld array/scalar mismatches", f->name,
              f->mismatches);
    }
    printf("hash of all results: %016llx\n", (unsigned long long)result_hash);
    return test_report("test_vmath");
}
