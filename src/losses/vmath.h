/*
 * vmath.h - private to the lossd core: exp, log, log1p and expm1 in double
 * precision, written so that GCC auto-vectorizes the loops that call them.
 *
 * Only arithmetic and bit manipulation of uint64_t (memcpy) are used: no libm
 * call, no table, no branch.  Special inputs (infinities, NaN, zeros, out of
 * range) go through the same arithmetic and are replaced at the end by selects
 * on the bits.  The integer operations on 64-bit lanes are the ones SSE2 has
 * (add, subtract, and/or/xor, logical shifts; GCC emulates the sign broadcast
 * of the masks): no 64-bit integer compare or multiply, no int<->double
 * conversion (SSE4.2 / AVX-512).  So a loop calling these functions vectorizes
 * with the x86-64 baseline (2 lanes), with AVX2 (4 lanes) when the caller is
 * compiled for it (target("avx2") or target_clones("avx2", "default")), and
 * with AVX-512 (8 lanes, target("arch=x86-64-v4,prefer-vector-width=512")),
 * with GCC's default flags (-ftrapping-math included).
 *
 * Accuracy, measured by tests/unit/test_vmath.c against glibc's long double
 * functions over the whole domains (largest errors seen on 8e7 points each):
 * exp 0.77 ulp (0.56 for normal results), log 0.68 ulp, log1p 0.70 ulp,
 * expm1 0.76 ulp.  Exact: exp(0) == 1, log(1) == 0, expm1(+-0) == +-0,
 * log1p(+-0) == +-0, and the special values (inf, NaN, log(0) = -inf, ...).
 *
 * Determinism: every function is a fixed sequence of IEEE operations, so the
 * results are the same bits scalar or vectorized, SSE2, AVX2 or AVX-512, at any
 * optimization level -- provided no a*b+c is contracted into an FMA: compile
 * the callers with -ffp-contract=off (as the core is; GCC's default in ISO C
 * mode, -std=c11).  The error-free transformations (Fast2Sum, TwoSum) also need
 * each operation rounded as written: no -ffast-math, -fassociative-math or
 * -funsafe-math-optimizations.
 *
 * exp:   x = k ln2 + r + rlo, k = round(x / ln2) by the 1.5*2^52 trick, ln2
 *        split Cody-Waite (LN2_HI has 32 bits, so k LN2_HI is exact) and the
 *        rounding error rlo of r kept; e^r = 1 + r + r^2/2 + r^3 Q3(r) with Q3
 *        a minimax polynomial (e^r to degree 12, error 2^-60.5 on |r| <=
 *        ln2/2), summed in double-double, then scaled by 2^floor(k/2) and
 *        2^(k - floor(k/2)): both factors normal, the first product exact, so
 *        overflow and underflow (subnormal results) come out of the last
 *        multiplication.
 * expm1: the same e^x in double-double, scaled by 2^k, minus 1 by TwoSum.
 * log:   x = 2^k m, m in [sqrt(1/2), sqrt(2)), f = m - 1, s = f / (2 + f),
 *        log(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2)) with fdlibm's polynomial
 *        R; k ln2 + f - f^2/2 summed in double-double (f^2/2 split exactly).
 *        Subnormal x is scaled by 2^52 first.
 * log1p: s = 1 + x through the log path, plus the rounding error of 1 + x
 *        (exact, by TwoSum) divided by s.
 */
#ifndef LOSS_VMATH_H
#define LOSS_VMATH_H

#include <math.h> /* INFINITY, NAN: constants only, no function of libm */
#include <stdint.h>
#include <string.h>

static inline uint64_t loss__vbits(double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline double loss__vfrom_bits(uint64_t u)
{
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* The selects are done on the bits, with masks computed by integer arithmetic
 * from the encodings, not with ?: on floating-point comparisons: under GCC's
 * default -ftrapping-math, a ?: on a double comparison stays a branch whenever
 * an arm holds floating-point arithmetic (which may raise a flag, so it cannot
 * be executed unconditionally; jump threading creates such arms), and the loop
 * is not vectorized.  (-fno-trapping-math lifts that for the callers' own ?:,
 * without changing any result; GCC 12 still cannot vectorize a double
 * comparison turned into a 64-bit integer on SSE2.) */

/* All ones when v < w as unsigned integers, else 0; needs w <= 2^63. */
static inline uint64_t loss__vmask_lt(uint64_t v, uint64_t w)
{
    return (uint64_t)0 - (((v - w) & ~v) >> 63);
}

/* All ones when lo <= u <= hi (unsigned), else 0; needs hi - lo < 2^63. */
static inline uint64_t loss__vmask_in(uint64_t u, uint64_t lo, uint64_t hi)
{
    return loss__vmask_lt(u - lo, hi - lo + 1u);
}

/* m ? a : b for a mask m of all ones or zeros. */
static inline double loss__vblend(uint64_t m, double a, double b)
{
    return loss__vfrom_bits((loss__vbits(a) & m) | (loss__vbits(b) & ~m));
}

#define LOSS__V_PINF 0x7ff0000000000000u /* encoding of +inf */
#define LOSS__V_SIGN 0x8000000000000000u

/* ln2 = LN2_HI + LN2_LO; LN2_HI has 32 significant bits so that k * LN2_HI is
 * exact for |k| < 2^21. */
#define LOSS__V_LN2_HI  0x1.62e42fee00000p-1
#define LOSS__V_LN2_LO  0x1.a39ef35793c76p-33
#define LOSS__V_INV_LN2 0x1.71547652b82fep+0
/* Adding 1.5*2^52 rounds a double of magnitude < 2^51 to an integer (to
 * nearest even), which then sits in the low bits of the sum's encoding. */
#define LOSS__V_SHIFT 0x1.8p52

/* e^x for x in [-746, 746] (or NaN) as (hi + lo) * s1 * s2: hi + lo = e^r in
 * double-double with hi in [0.7, 1.42], s1 = 2^floor(k/2), s2 = 2^(k -
 * floor(k/2)), both normal (|k| <= 1076). */
typedef struct loss__vexp_parts {
    double hi, lo, s1, s2;
} loss__vexp_parts;

static inline loss__vexp_parts loss__vexp_split(double x)
{
    double t = x * LOSS__V_INV_LN2 + LOSS__V_SHIFT;
    double kd = t - LOSS__V_SHIFT;
    /* k + 2048 in [972, 3124]: the encoding of t is that of the shift plus k */
    uint64_t kb = loss__vbits(t) - loss__vbits(LOSS__V_SHIFT) + 2048u;
    uint64_t h = kb >> 1; /* floor(k/2) + 1024 */
    loss__vexp_parts p;
    p.s1 = loss__vfrom_bits((h - 1u) << 52);      /* biased exponent floor(k/2) + 1023 */
    p.s2 = loss__vfrom_bits((kb - h - 1u) << 52); /* k - floor(k/2) + 1023 */

    /* r + rlo = x - k ln2: x - k LN2_HI is exact (Sterbenz), rlo is the
     * rounding error of the subtraction of k LN2_LO. */
    double rhi = x - kd * LOSS__V_LN2_HI;
    double c = kd * LOSS__V_LN2_LO;
    double r = rhi - c;
    double rlo = (rhi - r) - c;

    /* Q3(r) ~ (e^r - 1 - r - r^2/2) / r^3: minimax of degree 9 (e^r to degree
     * 12) for the absolute error of r^3 Q3 on |r| <= 0.3466, which is 2^-64
     * (2^-60.5 with the coefficients rounded); Estrin's scheme. */
    double r2 = r * r;
    double r4 = r2 * r2;
    double a0 = 0x1.555555555555bp-3 + 0x1.555555555555ap-5 * r;
    double a1 = 0x1.111111110ebf9p-7 + 0x1.6c16c16c14158p-10 * r;
    double a2 = 0x1.a01a01b3a4f2fp-13 + 0x1.a01a01b1fc53ep-16 * r;
    double a3 = 0x1.71ddefc2a81b5p-19 + 0x1.27e4c2c4ccd06p-22 * r;
    double a4 = 0x1.af6c85c931b76p-26 + 0x1.1f99b8929744dp-29 * r;
    double q = (a0 + a1 * r2) + r4 * ((a2 + a3 * r2) + a4 * r4);

    /* e^(r + rlo) ~ e^r (1 + rlo) = 1 + (r + hh) + (r^3 Q3 + rlo (1 + r)) with
     * hh = r^2/2 (rounding error < 2^-58), in double-double: Fast2Sum of
     * r + hh (|r| >= hh), then of 1 + sum (|sum| < 1) */
    double hh = 0.5 * r2;
    double sum = r + hh;
    double small = ((r2 * r) * q + rlo * (1.0 + r)) + ((r - sum) + hh);
    p.hi = 1.0 + sum;
    p.lo = ((1.0 - p.hi) + sum) + small;
    return p;
}

/* x itself, or +-746 (with the sign of x) when |x| > 746 (infinities too,
 * NaN not): far enough out that e^x still overflows / underflows, and near
 * enough that |k| <= 1077 keeps the scale factors normal. */
static inline double loss__vexp_clamp(uint64_t u)
{
    uint64_t big =
        loss__vmask_in(u & ~LOSS__V_SIGN, loss__vbits(746.0) + 1u, LOSS__V_PINF);
    return loss__vfrom_bits(u ^ ((u ^ ((u & LOSS__V_SIGN) | loss__vbits(746.0))) & big));
}

/* e^x: +inf above 709.78, 0 below -745.13.  Subnormal results are rounded
 * twice (hi + lo to 53 bits, then to the subnormal), so they are within 0.77
 * ulp rather than 0.56. */
static inline double loss__vexp(double x)
{
    loss__vexp_parts p = loss__vexp_split(loss__vexp_clamp(loss__vbits(x)));
    return (p.hi + p.lo) * p.s1 * p.s2;
}

/* e^x - 1: -1 below -37.4, +inf above 709.78, x itself for tiny x. */
static inline double loss__vexpm1(double x)
{
    uint64_t u = loss__vbits(x);
    loss__vexp_parts p = loss__vexp_split(loss__vexp_clamp(u));
    /* 2^k (hi + lo) - 1 with TwoSum(2^k hi, -1).  The scalings are exact up to
     * 2^1024; below -40 they may not be, but then the result is -1 anyway. */
    double big = p.hi * p.s1 * p.s2;
    double lo = p.lo * p.s1 * p.s2;
    double h = big - 1.0;
    double bb = h - big;
    double e = (big - (h - bb)) + (-1.0 - bb);
    double r = h + (e + lo);
    /* +inf when 2^k hi overflows (TwoSum gives NaN there) */
    r = loss__vblend(loss__vmask_lt(loss__vbits(h) ^ LOSS__V_PINF, 1u), h, r);
    /* e^x - 1 has the sign of x: this only changes expm1(-0) to -0 */
    return loss__vfrom_bits(loss__vbits(r) | (u & LOSS__V_SIGN));
}

/* log(x) for x = 2^kadj * (a positive normal double), plus corr (a small
 * correction added before the last rounding). */
static inline double loss__vlog_core(double x, double kadj, double corr)
{
    uint64_t u = loss__vbits(x);
    /* the biased exponent of x / sqrt(1/2), by a carry into the exponent field */
    uint64_t e = (u + (0x3ff0000000000000u - 0x3fe6a09e667f3bcdu)) >> 52;
    double m =
        loss__vfrom_bits(u - (e << 52) + 0x3ff0000000000000u); /* [sqrt(1/2), sqrt(2)) */
    double kd = (loss__vfrom_bits(e | 0x4330000000000000u) - (0x1p52 + 1023.0)) + kadj;
    double f = m - 1.0; /* exact */

    /* fdlibm: log(1+f) = f - hfsq + s (hfsq + R), s = f / (2 + f) */
    double s = f / (2.0 + f);
    double z = s * s;
    double w = z * z;
    double t1 = w * (0x1.999999997fa04p-2 +
                     w * (0x1.c71c51d8e78afp-3 + w * 0x1.39a09d078c69fp-3));
    double t2 = z * (0x1.5555555555593p-1 +
                     w * (0x1.2492494229359p-2 +
                          w * (0x1.7466496cb03dep-3 + w * 0x1.2f112df3e5244p-3)));
    double R = t2 + t1;
    /* f^2/2 = hh + hl with hh exact (f to 26 bits squared) */
    double fh = loss__vfrom_bits(loss__vbits(f) & 0xfffffffff8000000u);
    double hh = 0.5 * (fh * fh);
    double hl = 0.5 * ((f - fh) * (f + fh));
    double hfsq = hh + hl;

    /* k ln2 + f - f^2/2 + s (f^2/2 + R) in double-double */
    double a = kd * LOSS__V_LN2_HI; /* exact */
    double hi = a + f;              /* Fast2Sum: |a| >= ln2 > |f|, or a == 0 */
    double lo = (a - hi) + f;
    double hi2 = hi - hh; /* Fast2Sum: |hi| > 0.27 > f^2/2, or hi == f */
    double lo2 = (hi - hi2) - hh;
    double tail = (s * (hfsq + R) - hl) + (((kd * LOSS__V_LN2_LO + lo) + lo2) + corr);
    return hi2 + tail;
}

/* log(x): -inf at +-0, NaN below 0, +inf at +inf; exactly 0 at 1. */
static inline double loss__vlog(double x)
{
    uint64_t u = loss__vbits(x);
    /* subnormal (or +0): scale by 2^52 */
    uint64_t sub = loss__vmask_lt(u, 0x0010000000000000u);
    double scale = loss__vfrom_bits(loss__vbits(1.0) + (sub & ((uint64_t)52 << 52)));
    double r =
        loss__vlog_core(x * scale, loss__vfrom_bits(sub & loss__vbits(-52.0)), 0.0);
    /* outside (0, +inf): +-0 -> -inf; negative -> NaN (exponent bits set);
     * +inf, NaN -> x */
    uint64_t neg = (uint64_t)0 - (u >> 63);
    double special = loss__vblend(loss__vmask_lt(u << 1, 1u), -INFINITY,
                                  loss__vfrom_bits(u | (neg & 0x7ff8000000000000u)));
    return loss__vblend(loss__vmask_in(u, 1u, LOSS__V_PINF - 1u), r, special);
}

/* log(1 + x): x for |x| < 2^-53, -inf at -1, NaN below -1, +inf at +inf. */
static inline double loss__vlog1p(double x)
{
    uint64_t u = loss__vbits(x);
    /* s + c = 1 + x exactly (TwoSum); log(1 + x) = log(s) + c / s */
    double s = 1.0 + x;
    double bb = s - 1.0;
    double c = (1.0 - (s - bb)) + (x - bb);
    double r = loss__vlog_core(s, 0.0, c / s); /* s >= 2^-53 when x > -1 */
    /* outside (-1, +inf): -1 -> -inf; below -> NaN (exponent bits set);
     * +inf, NaN -> x */
    uint64_t neg = (uint64_t)0 - (u >> 63);
    double special = loss__vblend(loss__vmask_lt(u ^ loss__vbits(-1.0), 1u), -INFINITY,
                                  loss__vfrom_bits(u | (neg & 0x7ff8000000000000u)));
    uint64_t ok = loss__vmask_lt(u, LOSS__V_PINF) |
                  loss__vmask_lt(u ^ LOSS__V_SIGN, loss__vbits(1.0));
    r = loss__vblend(ok, r, special);
    /* log(1 + x) has the sign of x: this only changes log1p(-0) to -0 (tiny x
     * come out as x: s == 1, c == x) */
    return loss__vfrom_bits(loss__vbits(r) | (u & LOSS__V_SIGN));
}

/* The logistic pieces of a logit z, from one e = exp(-|z|): softplus(±z) = max(±z,
 * 0) + log1p(e) and σ(±z), none of them a difference that cancels.  bce with
 * logits and the ELBO's Bernoulli term are (1-t) sp + w t sp_neg, with gradient
 * (1-t) sig - w t sig_neg. */
typedef struct loss__logistic {
    double sp, sp_neg, sig, sig_neg;
} loss__logistic;

static inline loss__logistic loss__vlogistic(double z)
{
    double e = loss__vexp(z >= 0.0 ? -z : z), lg = loss__vlog1p(e), r = 1.0 / (1.0 + e);
    loss__logistic o;
    o.sp = (z > 0.0 ? z : 0.0) + lg;
    o.sp_neg = (z < 0.0 ? -z : 0.0) + lg;
    o.sig = (z >= 0.0 ? 1.0 : e) * r;
    o.sig_neg = (z >= 0.0 ? e : 1.0) * r;
    return o;
}

#endif
