/* numfmt.c - strict JSON number parsing and round-trip formatting.
 *
 * Parsing follows RFC 8259's grammar exactly and rounds correctly: Clinger's fast
 * path when the decimal mantissa and the power of ten are both exact doubles,
 * strtod (correctly rounded in glibc, "C" locale: lossd never calls setlocale)
 * otherwise.  Formatting writes the shortest digits that read back to the same
 * double and lays them out as Python's repr does, so that a Python client sees the
 * numbers it would have printed itself. */
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
    /* strtod reads exactly [s, p): a valid JSON number can only be extended by
     * "x" after a lone 0, which the fast path handled above; copy anyway so that
     * nothing depends on what follows. */
    char local[64], *buf = local;
    size_t n = (size_t)(p - s);
    if (n >= sizeof local && !(buf = malloc(n + 1))) return NULL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    double v = strtod(buf, NULL);
    if (errno == ERANGE && isinf(v)) *overflow = 1;
    if (buf != local) free(buf);
    *out = v;
    return p;
}

/* The shortest digits of v (no trailing zeros) and the decimal exponent x of the
 * first digit: |v| = d.ddd x 10^x.  The nearest p-digit decimal round-trips
 * whenever any p-digit decimal does, so trying p = lo..hi and stripping zeros
 * finds the shortest (shorter ones show up padded with zeros at p = lo). */
static int shortest_digits(double v, int is_float, char *digits, int *x)
{
    char tmp[40];
    int lo = is_float ? 6 : 15, hi = is_float ? 9 : 17;
    for (int p = lo; p <= hi; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, v);
        if (p == hi) break;
        if (is_float ? strtof(tmp, NULL) == (float)v : strtod(tmp, NULL) == v) break;
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
        p += snprintf(p, 8, "e%c%02d", x < 0 ? '-' : '+', x < 0 ? -x : x);
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
    char digits[24];
    int x = 0;
    if (v == 0) return layout(buf, signbit(v) != 0, "0", 1, 0);
    int n = shortest_digits(v, 0, digits, &x);
    return layout(buf, v < 0, digits, n, x);
}

size_t srv_fmt_float(char *buf, float v)
{
    char digits[24];
    int x = 0;
    if (v == 0) return layout(buf, signbit(v) != 0, "0", 1, 0);
    int n = shortest_digits((double)v, 1, digits, &x);
    return layout(buf, v < 0, digits, n, x);
}
