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
 * Formatting uses Schubfach, with the same table: the shortest digits that read
 * back as the same double (or float), and of those the closest to it, as Python's
 * repr (and Ryu, and Java's Double.toString) choose them.  The digits are laid out
 * as Python's repr lays them out. */
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

static int is_8digits(const char *p)
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
    if (q > 308) { /* w * 10^q >= 1e309 (the table goes on for formatting) */
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
        while (end - p >= 8 && ndig <= 11 && is_8digits(p)) {
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
        while (end - p >= 8 && ndig <= 11 && is_8digits(p)) {
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

/* ---- Schubfach ---- */

/* (g * cp) / 2^128 for g = {high, low}, rounded to odd: its last bit is set when
 * the product has a fraction.  The table's g is 10^e rounded up (1 past the exact
 * value) except where 10^e is exact in 128 bits; that excess adds less than 1 to
 * the 64 bits below the result (cp < 2^60), hence "> 1" and not "!= 0". */
static inline uint64_t round_to_odd(const uint64_t g[2], uint64_t cp)
{
    unsigned __int128 x = (unsigned __int128)cp * g[1];
    unsigned __int128 y = (unsigned __int128)cp * g[0] + (uint64_t)(x >> 64);
    return (uint64_t)(y >> 64) | ((uint64_t)y > 1);
}

/* The shortest decimal d * 10^*k that reads back as c * 2^q (c > 0), and of those
 * the closest, ties to an even last digit: Schubfach (R. Giulietti, "The Schubfach
 * way to render doubles", 2020; the form of yyjson's f64_bin_to_dec).  It works
 * for any significand below 2^55 (double and float alike).  irregular: c * 2^q is
 * the smallest value of its binade above the subnormals, whose neighbour below is
 * half as far as the one above. */
static uint64_t schubfach(uint64_t c, int q, int irregular, int *k_out)
{
    uint64_t out = c & 1; /* odd c: the interval's ends round to the neighbours */
    uint64_t cbl = 4 * c - 2 + (uint64_t)irregular, cb = 4 * c, cbr = 4 * c + 2;
    /* k = floor(log10(2^q)), or floor(log10(3/4 * 2^q)) when irregular; and h in
     * [1, 4] so that vb = 4 * c * 2^q * 10^-k is a 64-bit integer part. */
    int k = (q * 315653 - (irregular ? 131237 : 0)) >> 20;
    int h = q + ((-k * 217707) >> 16) + 1;
    const uint64_t *t = srv_pow5_128[-k - SRV_POW5_MIN];
    uint64_t g[2] = {t[0], t[1]};
    if (-k > 55 && ++g[1] == 0) g[0]++; /* truncated in the table: round up */
    uint64_t vbl = round_to_odd(g, cbl << h), vb = round_to_odd(g, cb << h),
             vbr = round_to_odd(g, cbr << h);
    uint64_t lower = vbl + out, upper = vbr - out;
    uint64_t s = vb >> 2;
    if (s >= 10) { /* one digit fewer: at most one multiple of 10 fits */
        uint64_t sp = s / 10;
        int u_in = lower <= 40 * sp, w_in = upper >= 40 * sp + 40;
        if (u_in != w_in) {
            *k_out = k + 1;
            return sp + (uint64_t)w_in;
        }
    }
    int u_in = lower <= 4 * s, w_in = upper >= 4 * s + 4;
    *k_out = k;
    if (u_in != w_in) return s + (uint64_t)w_in;
    uint64_t mid = 4 * s + 2; /* both fit: the closer, ties to even */
    return s + (uint64_t)(vb > mid || (vb == mid && (s & 1)));
}

static const char digit_pairs[] = "00010203040506070809101112131415161718192021222324"
                                  "25262728293031323334353637383940414243444546474849"
                                  "50515253545556575859606162636465666768697071727374"
                                  "75767778798081828384858687888990919293949596979899";

static const uint64_t pow10_u64[] = {1ULL,
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
                                     100000000000000000ULL};

/* v < 10^8 as exactly eight digits. */
static inline void write8(char *p, uint32_t v)
{
    uint32_t a = v / 10000, b = v % 10000;
    memcpy(p, digit_pairs + 2 * (a / 100), 2);
    memcpy(p + 2, digit_pairs + 2 * (a % 100), 2);
    memcpy(p + 4, digit_pairs + 2 * (b / 100), 2);
    memcpy(p + 6, digit_pairs + 2 * (b % 100), 2);
}

/* Room for the digits: 17 and 32 more '0's after them, so that layout can copy
 * in pieces of a fixed size. */
#define DIGITS_BUF 56

/* The digits of d * 10^k (0 < d <= 10^17) without trailing zeros, in buf;
 * returns where they start, *n their count, *x the decimal exponent of the first. */
static const char *write_digits(uint64_t d, int k, char *buf, int *n, int *x)
{
    while (d % 10 == 0) {
        d /= 10;
        k++;
    }
    uint64_t hi = d / 100000000;
    buf[0] = (char)('0' + hi / 100000000);
    write8(buf + 1, (uint32_t)(hi % 100000000));
    write8(buf + 9, (uint32_t)(d % 100000000));
    memset(buf + 17, '0', DIGITS_BUF - 17);
    int len = (int)(((64 - __builtin_clzll(d)) * 1233) >> 12); /* about log10(d) */
    len += d >= pow10_u64[len];
    *n = len;
    *x = k + len - 1;
    return buf + 17 - len;
}

/* The digits of v > 0 (finite) in buf (see write_digits). */
static const char *double_digits(double v, char *buf, int *n, int *x)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    int be = (int)(bits >> 52);
    uint64_t sig = bits & (((uint64_t)1 << 52) - 1);
    int k;
    uint64_t d =
        be ? schubfach(sig | ((uint64_t)1 << 52), be - 1075, sig == 0 && be > 1, &k)
           : schubfach(sig, -1074, 0, &k);
    return write_digits(d, k, buf, n, x);
}

static const char *float_digits(float v, char *buf, int *n, int *x)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    int be = (int)(bits >> 23);
    uint32_t sig = bits & ((1u << 23) - 1);
    int k;
    uint64_t d = be ? schubfach(sig | (1u << 23), be - 150, sig == 0 && be > 1, &k)
                    : schubfach(sig, -149, 0, &k);
    return write_digits(d, k, buf, n, x);
}

size_t srv_fmt_uint(char *buf, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) buf[i] = digits[n - 1 - i];
    return n;
}

/* Python repr's layout: fixed notation for 1e-4 <= |v| < 1e16, else d.ddde+XX.
 * digits has n digits and then at least 32 '0's; buf has SRV_DOUBLE_MAX + 1 bytes
 * (the copies of a fixed size stay inside them). */
static size_t layout(char *buf, int neg, const char *digits, int n, int x)
{
    char *p = buf;
    if (neg) *p++ = '-';
    if (x < -4 || x >= 16) {
        *p++ = digits[0];
        if (n > 1) {
            *p++ = '.';
            memcpy(p, digits + 1, 16);
            p += n - 1;
        }
        int e = x < 0 ? -x : x;
        *p++ = 'e';
        *p++ = x < 0 ? '-' : '+';
        if (e >= 100) *p++ = (char)('0' + e / 100);
        memcpy(p, digit_pairs + 2 * (e % 100), 2);
        p += 2;
    } else if (x < 0) {
        memcpy(p, "0.000", 5); /* "0." and -x - 1 zeros (at most 3) */
        p += 1 - x;
        memcpy(p, digits, 17);
        p += n;
    } else {
        int int_digits = x + 1; /* 1..16, padded with the zeros after the digits */
        memcpy(p, digits, 16);
        p += int_digits;
        *p++ = '.';
        if (n <= int_digits) {
            *p++ = '0';
        } else if (int_digits < 16) {
            memcpy(p, digits + int_digits, 16);
            p += n - int_digits;
        } else {
            *p++ = digits[16];
        }
    }
    *p = '\0';
    return (size_t)(p - buf);
}

/* "0" and its padding, for layout. */
static const char zero_digits[DIGITS_BUF] = "0000000000000000000000000000000000000000";

size_t srv_fmt_double(char *buf, double v)
{
    char tmp[DIGITS_BUF];
    int n, x;
    if (!isfinite(v)) return (size_t)(stpcpy(buf, "null") - buf);
    if (v == 0) return layout(buf, signbit(v) != 0, zero_digits, 1, 0);
    const char *digits = double_digits(fabs(v), tmp, &n, &x);
    return layout(buf, v < 0, digits, n, x);
}

size_t srv_fmt_float(char *buf, float v)
{
    char tmp[DIGITS_BUF];
    int n, x;
    if (!isfinite(v)) return (size_t)(stpcpy(buf, "null") - buf);
    if (v == 0) return layout(buf, signbit(v) != 0, zero_digits, 1, 0);
    const char *digits = float_digits(fabsf(v), tmp, &n, &x);
    return layout(buf, v < 0, digits, n, x);
}
