/* test_numfmt.c - the server's number parser and formatter against the C
 * library: parsing must give strtod's bits for every valid JSON number and reject
 * every invalid one; formatting must give the shortest text that reads back to
 * the same double (strtod) or float (strtof), and of those the closest: the
 * digits glibc's correctly rounded printf gives at that length. */
#include "srv.h"
#include "support.h"

#include <string.h>

static double parse(const char *s, int *ok, int *overflow)
{
    double v = 0;
    const char *end = srv_parse_number(s, s + strlen(s), &v, overflow);
    *ok = end == s + strlen(s);
    return v;
}

static int same_bits(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

static void check_parse(const char *s)
{
    int ok, of;
    double v = parse(s, &ok, &of);
    double want = strtod(s, NULL);
    CHECK(ok, "%s rejected", s);
    if (isinf(want)) {
        CHECK(of, "%s: overflow not flagged", s);
    } else {
        CHECK(!of && same_bits(v, want), "%s: got %.17g (%a), strtod %.17g (%a)", s, v, v,
              want, want);
    }
}

static void grammar(void)
{
    static const char *const bad[] = {
        "+1",  ".5",   "01",  "1.",       "1e",        "1e+",  "-",
        "--1", "0x10", "NaN", "Infinity", "-Infinity", "1.e5", "-.5",
        "00",  "1ee5", "",    "e5",       "-01",       "nan",  "inf"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int ok, of;
        parse(bad[i], &ok, &of);
        CHECK(!ok, "\"%s\" accepted", bad[i]);
    }
    static const char *const good[] = {
        "0",
        "-0",
        "1",
        "-1",
        "0.5",
        "1e5",
        "1E5",
        "1e+5",
        "1e-5",
        "123.456e-7",
        "0.0000001",
        "9007199254740993",
        "1.7976931348623157e308",
        "2.2250738585072014e-308",
        "2.2250738585072011e-308",
        "4.9406564584124654e-324",
        "5e-324",
        "2.4703282292062328e-324",
        "1e-400",
        "123456789012345678901234567890",
        "0.1000000000000000055511151231257827",
        "7.2057594037927933e16",
        "3.0000000000000004",
        "1e23",
        "8.98846567431158e307",
        "1.00000000000000011102230246251565404236316680908203125",
        "9.999999999999999e22",
        "4.35679828e-318",
        "1448997445238699",
        "6.631236846766476e-316"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) check_parse(good[i]);
    int ok, of;
    double v = parse("1e309", &ok, &of);
    CHECK(ok && of && isinf(v), "1e309 overflow");
    v = parse("-1e400", &ok, &of);
    CHECK(ok && of && isinf(v) && v < 0, "-1e400 overflow");
    v = parse("1e-99999", &ok, &of);
    CHECK(ok && !of && v == 0, "deep underflow is 0");
    /* a number ends where the grammar ends */
    const char *s = "12,3";
    double d;
    CHECK(srv_parse_number(s, s + 4, &d, &of) == s + 2 && d == 12, "stops at comma");
    s = "0x1p3";
    CHECK(srv_parse_number(s, s + 5, &d, &of) == s + 1 && d == 0, "0 then x");
}

static void random_parse(rng *r)
{
    char s[80];
    for (int i = 0; i < 150000; i++) {
        /* random digit strings across the whole exponent range */
        int nd = 1 + (int)(rng_uniform(r) * 24), pos = 0;
        if (rng_uniform(r) < 0.5) s[pos++] = '-';
        s[pos++] = (char)('1' + (int)(rng_uniform(r) * 9));
        int dot = (int)(rng_uniform(r) * nd);
        for (int k = 1; k < nd; k++) {
            if (k == dot) s[pos++] = '.';
            s[pos++] = (char)('0' + (int)(rng_uniform(r) * 10));
        }
        if (s[pos - 1] == '.') s[pos++] = '0';
        int e = (int)(rng_uniform(r) * 680) - 345;
        pos += snprintf(s + pos, sizeof s - (size_t)pos, "e%d", e);
        check_parse(s);
    }
    for (int i = 0; i < 150000; i++) {
        /* every double printed with 17 and with 15..16 digits */
        uint64_t bits = ((uint64_t)(rng_uniform(r) * 4294967296.0) << 32) |
                        (uint64_t)(rng_uniform(r) * 4294967296.0);
        double v;
        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v)) continue;
        snprintf(s, sizeof s, "%.17g", v);
        check_parse(s);
        snprintf(s, sizeof s, "%.15e", v);
        check_parse(s);
    }
}

/* The shortest correctly rounded "%.*e" text of v (p significant digits) that reads
 * back to v, as digits without trailing zeros and the exponent of the first one.
 * It is the closest of the shortest texts, except for a power of two, whose
 * interval is narrower below: there a text above v may be shorter (checked
 * separately). */
static int oracle(double v, int is_float, char *digits, int *x)
{
    char tmp[48];
    int p;
    for (p = 1; p < 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, v);
        if (is_float ? strtof(tmp, NULL) == (float)v : strtod(tmp, NULL) == v) break;
    }
    snprintf(tmp, sizeof tmp, "%.*e", p - 1, v);
    int n = 0;
    const char *t = tmp + (tmp[0] == '-');
    for (; *t != 'e'; t++)
        if (*t != '.') digits[n++] = *t;
    while (n > 1 && digits[n - 1] == '0') n--;
    digits[n] = '\0';
    char *end;
    long ex = strtol(t + 1, &end, 10);
    CHECK(*end == '\0' && ex > -400 && ex < 400, "printf wrote the exponent %s", t);
    *x = (int)ex;
    return n;
}

/* The significant digits of a formatted number and the exponent of the first. */
static int digits_of(const char *s, char *digits, int *x)
{
    char all[48];
    int na = 0, point = -1, e = 0;
    s += *s == '-';
    for (; *s && *s != 'e'; s++) {
        if (*s == '.')
            point = na;
        else
            all[na++] = *s;
    }
    if (*s == 'e') {
        char *end;
        long ex = strtol(s + 1, &end, 10);
        CHECK(*end == '\0' && ex > -400 && ex < 400, "an exponent %s", s);
        e = (int)ex;
    }
    if (point < 0) point = na;
    int f = 0;
    while (f < na - 1 && all[f] == '0') f++;
    int n = 0;
    for (int i = f; i < na; i++) digits[n++] = all[i];
    while (n > 1 && digits[n - 1] == '0') n--;
    digits[n] = '\0';
    *x = point - 1 - f + e;
    return n;
}

/* text, printed from v, is the shortest and closest: the oracle's digits, or for
 * a power of two at most as many (the oracle only tries the closer side). */
static void check_shortest(const char *text, double v, int is_float, int pow2)
{
    char want[48], got[48];
    int wx, gx;
    int wn = oracle(fabs(v), is_float, want, &wx), gn = digits_of(text, got, &gx);
    if (pow2)
        CHECK(gn <= wn, "%a printed as %s: %d digits, %s has %d", v, text, gn, want, wn);
    else
        CHECK(!strcmp(want, got) && wx == gx, "%a printed as %s, want %se%d", v, text,
              want, wx);
}

static void format(rng *r)
{
    char buf[SRV_DOUBLE_MAX + 1];
    static const double special[] = {0.0,
                                     -0.0,
                                     1.0,
                                     -1.0,
                                     0.1,
                                     0.2,
                                     0.3,
                                     1e22,
                                     1e23,
                                     5e-324,
                                     2.2250738585072014e-308,
                                     1.7976931348623157e308,
                                     123456.0,
                                     1e16,
                                     1e15,
                                     9.5,
                                     0.0001,
                                     0.00001,
                                     2.5e-7,
                                     1e100,
                                     3.141592653589793};
    static const char *const python[] = {"0.0",
                                         "-0.0",
                                         "1.0",
                                         "-1.0",
                                         "0.1",
                                         "0.2",
                                         "0.3",
                                         "1e+22",
                                         "1e+23",
                                         "5e-324",
                                         "2.2250738585072014e-308",
                                         "1.7976931348623157e+308",
                                         "123456.0",
                                         "1e+16",
                                         "1000000000000000.0",
                                         "9.5",
                                         "0.0001",
                                         "1e-05",
                                         "2.5e-07",
                                         "1e+100",
                                         "3.141592653589793"};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) {
        size_t n = srv_fmt_double(buf, special[i]);
        buf[n] = '\0';
        CHECK(!strcmp(buf, python[i]), "format %.17g: %s, Python repr %s", special[i],
              buf, python[i]);
    }
    for (int i = 0; i < 300000; i++) {
        uint64_t bits = ((uint64_t)(rng_uniform(r) * 4294967296.0) << 32) |
                        (uint64_t)(rng_uniform(r) * 4294967296.0);
        double v;
        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v)) continue;
        if (i % 4 == 0) v = (double)(float)rng_normal(r); /* short decimals too */
        size_t n = srv_fmt_double(buf, v);
        buf[n] = '\0';
        CHECK(n <= SRV_DOUBLE_MAX, "too long: %s", buf);
        double back = strtod(buf, NULL);
        CHECK(same_bits(back, v), "%a printed as %s reads back as %a", v, buf, back);
        CHECK(strchr(buf, '.') || strchr(buf, 'e'), "%s does not look like a float", buf);
        memcpy(&bits, &v, sizeof v);
        if (v != 0) check_shortest(buf, v, 0, (bits & 0x000FFFFFFFFFFFFFULL) == 0);
    }
    /* every power of two and its neighbours (the irregular intervals and their
     * edges), and the subnormals */
    for (int e = -1074; e <= 1023; e++) {
        double p2 = ldexp(1.0, e),
               near[] = {p2, nextafter(p2, 0), nextafter(p2, INFINITY)};
        for (int k = 0; k < 3; k++) {
            if (!isfinite(near[k]) || near[k] == 0) continue;
            size_t n = srv_fmt_double(buf, near[k]);
            buf[n] = '\0';
            CHECK(strtod(buf, NULL) == near[k], "%a printed as %s", near[k], buf);
            check_shortest(buf, near[k], 0, k == 0 && e > -1022);
        }
    }
    for (int i = 0; i < 100000; i++) {
        uint32_t bits = (uint32_t)(rng_uniform(r) * 4294967296.0);
        float f;
        memcpy(&f, &bits, sizeof f);
        if (!isfinite(f)) continue;
        size_t n = srv_fmt_float(buf, f);
        buf[n] = '\0';
        float back = strtof(buf, NULL);
        CHECK(memcmp(&back, &f, sizeof f) == 0, "float %a printed as %s", (double)f, buf);
        if (f != 0) check_shortest(buf, f, 1, (bits & 0x7FFFFF) == 0);
    }
    for (int e = -149; e <= 127; e++) {
        float p2 = ldexpf(1.0f, e);
        float near[] = {p2, nextafterf(p2, 0), nextafterf(p2, INFINITY)};
        for (int k = 0; k < 3; k++) {
            if (!isfinite(near[k]) || near[k] == 0) continue;
            size_t n = srv_fmt_float(buf, near[k]);
            buf[n] = '\0';
            CHECK(strtof(buf, NULL) == near[k], "float %a printed as %s", (double)near[k],
                  buf);
            check_shortest(buf, near[k], 1, k == 0 && e > -126);
        }
    }
    /* JSON has no infinity or NaN: null, never a number (a float32 infinity once
     * read past its own text and printed 0.0). */
    const double nonfinite[] = {INFINITY, -INFINITY, NAN};
    for (size_t i = 0; i < 3; i++) {
        memset(buf, 'x', sizeof buf);
        size_t n = srv_fmt_double(buf, nonfinite[i]);
        buf[n] = '\0';
        CHECK(!strcmp(buf, "null"), "double %g printed as %s", nonfinite[i], buf);
        memset(buf, 'x', sizeof buf);
        n = srv_fmt_float(buf, (float)nonfinite[i]);
        buf[n] = '\0';
        CHECK(!strcmp(buf, "null"), "float %g printed as %s", nonfinite[i], buf);
    }
}

int main(void)
{
    rng r = {0x1234567887654321ULL};
    grammar();
    random_parse(&r);
    format(&r);
    return test_report("test_numfmt");
}
