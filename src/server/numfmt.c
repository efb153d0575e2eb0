/* numfmt.c - strict JSON number parsing and round-trip formatting.
 *
 * Parsing follows RFC 8259's grammar exactly and rounds correctly, as strtod
 * does: Clinger's fast path when the decimal significand and the power of ten are
 * both exact doubles; otherwise the Eisel-Lemire algorithm (a 64x128-bit product
 * with a table of powers of five), which either yields the correctly rounded
 * double or says it cannot decide; then, and for more than 19 significant digits
 * or subnormal results, strtod (correctly rounded in glibc; "C" locale: lossd
 * never calls setlocale).
 *
 * Formatting uses Grisu2: digits generated with 64-bit integers from a cached
 * power of ten, inside the rounding interval of the double shrunk by one unit on
 * each side, so the text always reads back to the same double (it is the shortest
 * such text almost always, and never longer than 17 digits).  The digits are laid
 * out as Python's repr lays them out. */
#include "numtables.h"
#include "srv.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Eight ASCII digits at once (SWAR, as in simdjson and fast_float): whether the
 * eight bytes at p are all digits, and their value. */
static inline uint64_t load8(const char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v); /* little-endian on every target lossd supports */
    return v;
}

int srv_is_8digits(const char *p)
{
    uint64_t v = load8(p);
    return ((v & 0xF0F0F0F0F0F0F0F0ULL) |
            (((v + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) >> 4)) ==
           0x3333333333333333ULL;
}

static inline uint32_t parse8(const char *p)
{
    const uint64_t mask = 0x000000FF000000FFULL;
    const uint64_t mul1 = 0x000F424000000064ULL; /* 100 + (1000000 << 32) */
    const uint64_t mul2 = 0x0000271000000001ULL; /* 1 + (10000 << 32) */
    uint64_t v = load8(p) - 0x3030303030303030ULL;
    v = (v * 10) + (v >> 8);
    v = (((v & mask) * mul1) + (((v >> 16) & mask) * mul2)) >> 32;
    return (uint32_t)v;
}

/* Eisel-Lemire: w * 10^q correctly rounded, w != 0 with at most 19 digits.
 * Returns 1 with *out set (infinite when it overflows), or 0 when this case must
 * go to strtod (subnormal results, undecidable products). */
static int eisel_lemire(uint64_t w, long q, double *out)
{
    if (q < SRV_POW5_MIN) { /* below half the smallest subnormal */
        *out = 0.0;
        return 1;
    }
    if (q > SRV_POW5_MAX) {
        *out = HUGE_VAL;
        return 1;
    }
    int lz = __builtin_clzll(w);
    w <<= lz;
    const uint64_t *t = srv_pow5_128[q - SRV_POW5_MIN];
    unsigned __int128 prod = (unsigned __int128)w * t[0];
    uint64_t hi = (uint64_t)(prod >> 64), lo = (uint64_t)prod;
    if ((hi & 0x1FF) == 0x1FF) { /* the truncated table might matter: use its low half */
        uint64_t more = (uint64_t)(((unsigned __int128)w * t[1]) >> 64);
        lo += more;
        if (lo < more) hi++;
        if (lo == UINT64_MAX && (q < -27 || q > 55)) return 0;
    }
    int upper = (int)(hi >> 63), shift = upper + 9;
    uint64_t m = hi >> shift;
    /* floor(q * log2(10)) + 63, in fixed point; the shift of a negative value is
     * arithmetic with every compiler lossd supports (gcc, clang). */
    long p2 = ((217706L * q) >> 16) + 63 + upper - lz + 1023;
    if (p2 <= 0) return 0; /* subnormal: strtod */
    if (lo <= 1 && q >= -4 && q <= 23 && (m & 3) == 1 && (m << shift) == hi)
        m &= ~(uint64_t)1; /* exactly halfway: round to even */
    m += m & 1;
    m >>= 1;
    if (m >= ((uint64_t)2 << 52)) {
        m = (uint64_t)1 << 52;
        p2++;
    }
    m &= ~((uint64_t)1 << 52);
    if (p2 >= 0x7FF) {
        *out = HUGE_VAL;
        return 1;
    }
    uint64_t bits = m | ((uint64_t)p2 << 52);
    memcpy(out, &bits, sizeof bits);
    return 1;
}

const char *srv_parse_number(const char *s, const char *end, double *out, int *overflow)
{
    const char *p = s;
    int neg = 0;
    *overflow = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    if (p >= end || !is_digit(*p)) return NULL;
    uint64_t mant = 0;
    int ndig = 0;      /* significant digits kept in mant (at most 19) */
    int dropped = 0;   /* integer digits beyond those 19 */
    int frac_kept = 0; /* fraction digits kept in mant */
    int exact = 1;     /* no non-zero digit was dropped */
    if (*p == '0') {
        p++;
    } else {
        while (end - p >= 8 && ndig <= 11 && srv_is_8digits(p)) {
            mant = mant * 100000000u + parse8(p);
            ndig += 8;
            p += 8;
        }
        for (; p < end && is_digit(*p); p++) {
            if (ndig < 19) {
                mant = mant * 10 + (uint64_t)(*p - '0');
                ndig++;
            } else {
                dropped++;
                exact &= *p == '0';
            }
        }
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p)) return NULL;
        while (mant == 0 && p < end && *p == '0') { /* they only shift the exponent */
            frac_kept++;
            p++;
        }
        while (end - p >= 8 && ndig <= 11 && srv_is_8digits(p)) {
            mant = mant * 100000000u + parse8(p);
            ndig += 8;
            frac_kept += 8;
            p += 8;
        }
        for (; p < end && is_digit(*p); p++) {
            if (mant == 0 && *p == '0') {
                frac_kept++; /* leading zeros of the fraction only shift the exponent */
            } else if (ndig < 19) {
                mant = mant * 10 + (uint64_t)(*p - '0');
                ndig++;
                frac_kept++;
            } else {
                exact &= *p == '0';
            }
        }
    }
    long exp10 = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int eneg = 0;
        if (p < end && (*p == '+' || *p == '-')) eneg = *p++ == '-';
        if (p >= end || !is_digit(*p)) return NULL;
        for (; p < end && is_digit(*p); p++)
            if (exp10 < 100000) exp10 = exp10 * 10 + (*p - '0');
        if (eneg) exp10 = -exp10;
    }
    long e = exp10 + dropped - frac_kept;
    if (exact && mant <= (1ULL << 53) && e >= -22 && e <= 22) {
        /* Clinger: both operands exact, one rounding. */
        double v = (double)mant;
        v = e < 0 ? v / pow10_exact[-e] : v * pow10_exact[e];
        *out = neg ? -v : v;
        return p;
    }
    if (mant == 0 && exact) {
        *out = neg ? -0.0 : 0.0;
        return p;
    }
    double v;
    if (exact && eisel_lemire(mant, e, &v)) {
        *overflow = isinf(v);
        *out = neg ? -v : v;
        return p;
    }
    /* strtod reads exactly [s, p): a valid JSON number can only be extended by
     * "x" after a lone 0, which the fast path handled above; copy anyway so that
     * nothing depends on what follows. */
    char local[64], *buf = local;
    size_t n = (size_t)(p - s);
    if (n >= sizeof local && !(buf = malloc(n + 1))) return NULL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    v = strtod(buf, NULL);
    if (errno == ERANGE && isinf(v)) *overflow = 1;
    if (buf != local) free(buf);
    *out = v;
    return p;
}

/* ---- Grisu2 ---- */

typedef struct diyfp {
    uint64_t f;
    int e;
} diyfp;

static diyfp diy_mul(diyfp a, diyfp b)
{
    unsigned __int128 p = (unsigned __int128)a.f * b.f;
    uint64_t h = (uint64_t)(p >> 64), l = (uint64_t)p;
    h += l >> 63; /* round */
    return (diyfp){h, a.e + b.e + 64};
}

static diyfp diy_normalize(diyfp x)
{
    int s = __builtin_clzll(x.f);
    return (diyfp){x.f << s, x.e - s};
}

static const uint32_t pow10_32[] = {1,      10,      100,      1000,      10000,
                                    100000, 1000000, 10000000, 100000000, 1000000000};
static const uint64_t pow10_64[] = {1ULL,
                                    10ULL,
                                    100ULL,
                                    1000ULL,
                                    10000ULL,
                                    100000ULL,
                                    1000000ULL,
                                    10000000ULL,
                                    100000000ULL,
                                    1000000000ULL,
                                    10000000000ULL,
                                    100000000000ULL,
                                    1000000000000ULL,
                                    10000000000000ULL,
                                    100000000000000ULL,
                                    1000000000000000ULL,
                                    10000000000000000ULL,
                                    100000000000000000ULL,
                                    1000000000000000000ULL,
                                    10000000000000000000ULL};

static int count_digits32(uint32_t n)
{
    int k = 1;
    while (k < 10 && n >= pow10_32[k]) k++;
    return k;
}

/* Moves the last digit towards w while the result stays inside the interval and
 * gets closer to w (Grisu2's rounding). */
static void grisu_round(char *buf, int len, uint64_t delta, uint64_t rest,
                        uint64_t ten_kappa, uint64_t wp_w)
{
    while (rest < wp_w && delta - rest >= ten_kappa &&
           (rest + ten_kappa < wp_w || wp_w - rest > rest + ten_kappa - wp_w)) {
        buf[len - 1]--;
        rest += ten_kappa;
    }
}

/* Digits of the number in [mp - delta, mp] closest to w; *k gets the decimal
 * exponent of the last digit. */
static int digit_gen(diyfp w, diyfp mp, uint64_t delta, char *buf, int *k)
{
    const diyfp one = {(uint64_t)1 << -mp.e, mp.e};
    const uint64_t wp_w = mp.f - w.f;
    uint32_t p1 = (uint32_t)(mp.f >> -one.e);
    uint64_t p2 = mp.f & (one.f - 1);
    int kappa = count_digits32(p1), len = 0;
    while (kappa > 0) {
        uint32_t div = pow10_32[kappa - 1], d = p1 / div;
        p1 %= div;
        if (d || len) buf[len++] = (char)('0' + d);
        kappa--;
        uint64_t tmp = ((uint64_t)p1 << -one.e) + p2;
        if (tmp <= delta) {
            *k += kappa;
            grisu_round(buf, len, delta, tmp, (uint64_t)pow10_32[kappa] << -one.e, wp_w);
            return len;
        }
    }
    for (;;) {
        p2 *= 10;
        delta *= 10;
        char d = (char)(p2 >> -one.e);
        if (d || len) buf[len++] = (char)('0' + d);
        p2 &= one.f - 1;
        kappa--;
        if (p2 < delta) {
            *k += kappa;
            int index = -kappa;
            grisu_round(buf, len, delta, p2, one.f,
                        index < 20 ? wp_w * pow10_64[index] : 0);
            return len;
        }
    }
}

/* The digits of v > 0 (finite) and the decimal exponent x of the first one. */
static int grisu2(double v, char *digits, int *x)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    int be = (int)((bits >> 52) & 0x7FF);
    uint64_t sig = bits & (((uint64_t)1 << 52) - 1);
    diyfp d = be ? (diyfp){sig | ((uint64_t)1 << 52), be - 1075} : (diyfp){sig, -1074};
    /* The boundaries m- and m+ of the rounding interval, on m+'s exponent. */
    diyfp pl = diy_normalize((diyfp){(d.f << 1) + 1, d.e - 1});
    diyfp mi = d.f == ((uint64_t)1 << 52) ? (diyfp){(d.f << 2) - 1, d.e - 2}
                                          : (diyfp){(d.f << 1) - 1, d.e - 1};
    mi.f <<= mi.e - pl.e;
    mi.e = pl.e;
    /* A cached 10^-K that brings m+ * 10^-K's exponent into [-60, -32]. */
    double dk = (-61 - pl.e) * 0.30102999566398114 + 347;
    int kk = (int)dk;
    if (dk - kk > 0.0) kk++;
    unsigned index = (unsigned)((kk >> 3) + 1);
    const srv_cached_power *c = &srv_cached_pow10[index];
    int K = -(SRV_CACHED_FIRST + (int)index * SRV_CACHED_STEP);
    diyfp cmk = {c->f, c->e};
    diyfp w = diy_mul(diy_normalize(d), cmk);
    diyfp wp = diy_mul(pl, cmk), wm = diy_mul(mi, cmk);
    wm.f++;
    wp.f--;
    int k = K, n = digit_gen(w, wp, wp.f - wm.f, digits, &k);
    while (n > 1 && digits[n - 1] == '0') { /* 1200 -> 12 x 10^2 */
        n--;
        k++;
    }
    digits[n] = '\0';
    *x = k + n - 1;
    return n;
}

/* The shortest digits by trial (for float32): the nearest p-digit decimal
 * round-trips whenever any p-digit decimal does, so trying p = 6..9 and stripping
 * zeros finds the shortest. */
static int float_digits(float v, char *digits, int *x)
{
    char tmp[40];
    for (int p = 6; p <= 9; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, (double)v);
        if (p == 9 || strtof(tmp, NULL) == v) break;
    }
    const char *t = tmp[0] == '-' ? tmp + 1 : tmp;
    int n = 0;
    for (; *t && *t != 'e'; t++)
        if (is_digit(*t)) digits[n++] = *t;
    *x = (int)strtol(t + 1, NULL, 10);
    while (n > 1 && digits[n - 1] == '0') n--;
    digits[n] = '\0';
    return n;
}

/* Python repr's layout: fixed notation for 1e-4 <= |v| < 1e16, else d.ddde+XX. */
static size_t layout(char *buf, int neg, const char *digits, int n, int x)
{
    char *p = buf;
    if (neg) *p++ = '-';
    if (x < -4 || x >= 16) {
        *p++ = digits[0];
        if (n > 1) {
            *p++ = '.';
            memcpy(p, digits + 1, (size_t)(n - 1));
            p += n - 1;
        }
        int e = x < 0 ? -x : x;
        *p++ = 'e';
        *p++ = x < 0 ? '-' : '+';
        if (e >= 100) *p++ = (char)('0' + e / 100);
        *p++ = (char)('0' + e / 10 % 10);
        *p++ = (char)('0' + e % 10);
    } else if (x < 0) {
        *p++ = '0';
        *p++ = '.';
        for (int i = -1; i > x; i--) *p++ = '0';
        memcpy(p, digits, (size_t)n);
        p += n;
    } else {
        int int_digits = x + 1;
        for (int i = 0; i < int_digits; i++) *p++ = i < n ? digits[i] : '0';
        *p++ = '.';
        if (n > int_digits) {
            memcpy(p, digits + int_digits, (size_t)(n - int_digits));
            p += n - int_digits;
        } else {
            *p++ = '0';
        }
    }
    *p = '\0';
    return (size_t)(p - buf);
}

size_t srv_fmt_double(char *buf, double v)
{
    char digits[32];
    int x = 0;
    if (!isfinite(v)) return (size_t)(stpcpy(buf, "null") - buf);
    if (v == 0) return layout(buf, signbit(v) != 0, "0", 1, 0);
    int n = grisu2(fabs(v), digits, &x);
    return layout(buf, v < 0, digits, n, x);
}

size_t srv_fmt_float(char *buf, float v)
{
    char digits[32];
    int x = 0;
    if (!isfinite(v)) return (size_t)(stpcpy(buf, "null") - buf);
    if (v == 0) return layout(buf, signbit(v) != 0, "0", 1, 0);
    int n = float_digits(fabsf(v), digits, &x);
    return layout(buf, v < 0, digits, n, x);
}
