/* test_jscan.c - the body scanner (jscan.c) against jansson, differentially.
 *
 * Every generated document goes through jansson alone (path A) and through the
 * scanner, its chunked number parse and jansson on the compacted text (path B),
 * as tests/fuzz/jscan_diff.h describes: both must accept and refuse the same
 * documents, and agree on every value, lifted numbers to the bit.
 *
 * The documents: random valid JSON shaped like lossd requests (numeric arrays of
 * rank 1-9, rectangular and ragged, empty and mixed arrays, tensor objects,
 * objectives, strings with every kind of escape, keys with "~" and "/", nesting
 * down to the scanner's limit), numbers in every JSON form (hard rounding cases
 * too), arrays of more than 65536 numbers (so that the chunked parse runs), and
 * mutants of all of them (bytes deleted, inserted, replaced; truncation; NaN,
 * Infinity, 1e400, +1, .5, 01 and other bad numbers; stray and missing commas;
 * unbalanced brackets; control characters, invalid UTF-8 and \u0000 in strings;
 * duplicate keys), of which about half must be refused by both.  Then the error
 * classes and JSON Pointers of targeted inputs.
 *
 * LOSSD_JSCAN_DUMP=DIR writes every mismatching document to DIR (for a fuzz
 * corpus or a debugger). */
#include "../fuzz/jscan_diff.h"
#include "srv.h"
#include "support.h"

#include <float.h>
#include <stdint.h>
#include <string.h>

/* ---- random numbers (support.h's xorshift64*) ---- */

static rng R;

static size_t rnd(size_t n)
{
    if (n == 0) return 0;
    size_t k = (size_t)(rng_uniform(&R) * (double)n);
    return k < n ? k : n - 1;
}

static int chance(double p)
{
    return rng_uniform(&R) < p;
}

static uint64_t rnd64(void)
{
    uint64_t hi = (uint64_t)(rng_uniform(&R) * 4294967296.0);
    uint64_t lo = (uint64_t)(rng_uniform(&R) * 4294967296.0);
    return hi << 32 | lo;
}

/* ---- text buffers and the spans a generator records ---- */

typedef struct text {
    char *s;
    size_t n, cap;
} text;

static void put(text *t, const char *p, size_t n)
{
    if (t->n + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < t->n + n + 1) cap *= 2;
        char *q = realloc(t->s, cap);
        if (!q) abort();
        t->s = q;
        t->cap = cap;
    }
    memcpy(t->s + t->n, p, n);
    t->n += n;
    t->s[t->n] = '\0';
}

static void puts_(text *t, const char *s)
{
    put(t, s, strlen(s));
}

static void putch(text *t, char c)
{
    put(t, &c, 1);
}

typedef struct spans {
    size_t *a, *b;
    size_t n, cap;
} spans;

static void span_add(spans *s, size_t a, size_t b)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->a = realloc(s->a, s->cap * sizeof *s->a);
        s->b = realloc(s->b, s->cap * sizeof *s->b);
        if (!s->a || !s->b) abort();
    }
    s->a[s->n] = a;
    s->b[s->n++] = b;
}

typedef struct gen {
    text t;
    spans nums;    /* number tokens */
    spans strs;    /* string interiors (between the quotes), keys too */
    spans members; /* "key": value */
    size_t budget; /* numbers left for this document */
    int max_rank_big;
} gen;

static void gen_reset(gen *g)
{
    g->t.n = 0;
    if (g->t.s) g->t.s[0] = '\0';
    g->nums.n = g->strs.n = g->members.n = 0;
    g->budget = 400;
}

static void gen_free(gen *g)
{
    free(g->t.s);
    free(g->nums.a);
    free(g->nums.b);
    free(g->strs.a);
    free(g->strs.b);
    free(g->members.a);
    free(g->members.b);
}

/* Optional blanks between tokens: JSON's four. */
static void ws(gen *g)
{
    static const char *const blanks[] = {" ", "\n", "\t", "\r\n", "  ", "\n    ", " \t"};
    if (chance(0.8)) return;
    puts_(&g->t, blanks[rnd(sizeof blanks / sizeof blanks[0])]);
}

/* ---- numbers ---- */

/* Valid JSON numbers with something special about them. */
static const char *const special_numbers[] = {
    "0",
    "-0",
    "0.0",
    "-0.0",
    "0e0",
    "0E+0",
    "-0e-0",
    "0.000",
    "1e5",
    "1E-5",
    "1e+5",
    "1E+05",
    "1e-05",
    "0e99999",
    "-0.0e-99999",
    "1e-99999",
    "123.456e-7",
    "0.0000001",
    "9007199254740992",
    "9007199254740993",
    "9007199254740995",
    "-9007199254740993",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "1.7976931348623157e308",
    "-1.7976931348623157e308",
    "1.7976931348623158e308",
    "179769313486231570000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000",
    "2.2250738585072014e-308",
    "2.2250738585072011e-308",
    "2.2250738585072012e-308",
    "2.225073858507201e-308",
    "4.9406564584124654e-324",
    "5e-324",
    "-5e-324",
    "3e-324",
    "1e-323",
    "2.4703282292062328e-324",
    "2.4703282292062327e-324",
    "1e-324",
    "1e-400",
    "-1e-400",
    "0.1000000000000000055511151231257827",
    "7.2057594037927933e16",
    "3.0000000000000004",
    "0.30000000000000004",
    "1e23",
    "1e22",
    "1e-22",
    "8.98846567431158e307",
    "1.00000000000000011102230246251565404236316680908203125",
    "1.00000000000000011102230246251565404236316680908203124",
    "1.00000000000000011102230246251565404236316680908203126",
    "9.999999999999999e22",
    "4.35679828e-318",
    "1448997445238699",
    "6.631236846766476e-316",
    "1.0000000000000002",
    "0.9999999999999999",
    "123456789012345678",
    "1234567890123456789",
    "12345678901234567890",
    "4503599627370496.5",
    "4503599627370497.5",
    "0.000000000000000000000000000000000000001",
    "10000000000000000000000000000000000000000e-40",
    "0.00000000000000000000000000000000000000000000000000000000000000000000000001e74",
    "-2147483648",
    "4294967295",
    "1.5e300",
    "2.5e-300",
};

/* Numbers that overflow a double, or are not JSON at all: for mutants. */
static const char *const bad_numbers[] = {
    "NaN",      "Infinity", "-Infinity", "nan",     "inf",
    "infinity", "-inf",     "1e400",     "-1e400",  "1.7976931348623159e308",
    "1e309",    "123e308",  "1e99999",   "+1",      ".5",
    "-.5",      "01",       "-01",       "00",      "1.",
    "1.e5",     "--1",      "-",         "0x10",    "-0x1",
    "1e",       "1e+",      "1E-",       "1ee5",    "1.5.5",
    "1-2",      "1e5e5",    "1+1",       "0.5e+-1", "1_000",
};

static void fmt_double(char *buf, size_t cap, double d)
{
    switch (rnd(6)) {
    case 0:
        snprintf(buf, cap, "%.17g", d);
        break;
    case 1:
        snprintf(buf, cap, "%.*g", (int)(1 + rnd(17)), d);
        break;
    case 2:
        snprintf(buf, cap, "%.*e", (int)rnd(26), d);
        break;
    case 3:
        snprintf(buf, cap, "%.*E", (int)rnd(20), d);
        break;
    case 4:
        snprintf(buf, cap, "%.25g", d);
        break;
    default:
        snprintf(buf, cap, "%.16g", d);
        break;
    }
    /* exponents in every form: e+05, e05, E5 */
    char *e = strpbrk(buf, "eE");
    if (e && e[1] == '+' && chance(0.5)) memmove(e + 1, e + 2, strlen(e + 2) + 1);
    if (e && chance(0.3)) *e = *e == 'e' ? 'E' : 'e';
}

static double random_bits_double(void)
{
    double d;
    do {
        uint64_t b = rnd64();
        memcpy(&d, &b, sizeof d);
    } while (!isfinite(d));
    return d;
}

static size_t digit_run(char *p, size_t n, int lead)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('0' + (i == 0 && lead ? 1 + rnd(9) : rnd(10)));
    return n;
}

/* A valid JSON number that fits a double, in buf. */
static void number_text(char *buf, size_t cap)
{
    size_t k = rnd(100);
    if (k < 18) { /* what requests carry: a few decimals */
        double d = rng_normal(&R) * (chance(0.2) ? 1000 : 2);
        snprintf(buf, cap, "%.*f", (int)rnd(7), d);
    } else if (k < 26) { /* integers: class indices, shapes */
        snprintf(buf, cap, "%d", (int)rnd(2000) - (chance(0.3) ? 1000 : 0));
    } else if (k < 40) {
        fmt_double(buf, cap, random_bits_double());
    } else if (k < 50) {
        fmt_double(buf, cap, rng_normal(&R) * pow(10, (double)rnd(40) - 20.0));
    } else if (k < 60) {
        snprintf(
            buf, cap, "%s",
            special_numbers[rnd(sizeof special_numbers / sizeof special_numbers[0])]);
    } else if (k < 72) { /* digits: 8-digit runs, 19+ digits, exponents */
        char *p = buf;
        if (chance(0.4)) *p++ = '-';
        if (chance(0.3)) {
            *p++ = '0';
        } else {
            p += digit_run(p, 1 + rnd(chance(0.3) ? 30 : 12), 1);
        }
        if (chance(0.6)) {
            *p++ = '.';
            p += digit_run(p, 1 + rnd(chance(0.3) ? 40 : 10), 0);
        }
        if (chance(0.5)) {
            *p++ = chance(0.5) ? 'e' : 'E';
            size_t s = rnd(3);
            if (s) *p++ = s == 1 ? '+' : '-';
            p += (size_t)snprintf(p, 8, "%s%d", chance(0.1) ? "00" : "", (int)rnd(330));
        }
        *p = '\0';
    } else if (k < 84) { /* halfway between two doubles, or a hair off it */
        double d = fabs(random_bits_double());
        if (chance(0.5)) d = ldexp(1.0 + rng_uniform(&R), (int)rnd(140) - 70);
        if (!(d < DBL_MAX)) d = 1.0;
        long double m = ((long double)d + (long double)nextafter(d, INFINITY)) / 2;
        int digits = (int)(16 + rnd(50));
        snprintf(buf, cap, "%.*Le", digits, m);
        char *e = strchr(buf, 'e');
        if (e && chance(0.4)) { /* just above the tie: one more non-zero digit */
            memmove(e + 1, e, strlen(e) + 1);
            *e = '1';
        }
    } else if (k < 90) { /* subnormals */
        uint64_t b = rnd64() & ((UINT64_C(1) << 52) - 1);
        double d;
        memcpy(&d, &b, sizeof d);
        fmt_double(buf, cap, chance(0.5) ? d : -d);
    } else if (k < 95) { /* integers beyond 2^53, 16 to 30 digits */
        size_t n = digit_run(buf, 16 + rnd(15), 1);
        buf[n] = '\0';
    } else { /* near the ends of the range */
        double d = chance(0.5) ? DBL_MAX : DBL_MIN;
        for (size_t i = rnd(1000); i-- > 0;) d = nextafter(d, chance(0.5) ? 0.0 : d * 2);
        if (!isfinite(d)) d = DBL_MAX;
        fmt_double(buf, cap, chance(0.5) ? d : -d);
    }
    /* a valid document must be accepted: nothing that overflows */
    if (isinf(strtod(buf, NULL))) snprintf(buf, cap, "%s", chance(0.5) ? "-0" : "1e-5");
}

static void gen_number(gen *g)
{
    char buf[512];
    number_text(buf, sizeof buf);
    size_t a = g->t.n;
    puts_(&g->t, buf);
    span_add(&g->nums, a, g->t.n);
    if (g->budget) g->budget--;
}

/* A short number, for the bulk of large arrays. */
static void gen_cheap_number(gen *g)
{
    char buf[512];
    if (chance(0.97))
        snprintf(buf, sizeof buf, "%s%d", chance(0.3) ? "-" : "", (int)rnd(100));
    else
        number_text(buf, sizeof buf);
    size_t a = g->t.n;
    puts_(&g->t, buf);
    span_add(&g->nums, a, g->t.n);
}

/* ---- strings ---- */

static void put_utf8(text *t, unsigned long cp)
{
    char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (char)(0xF0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    put(t, b, n);
}

/* The inside of a string literal: 0 to 8 pieces of every kind. */
static void string_body(gen *g, size_t pieces)
{
    static const char *const words[] = {"mean",     "sum",  "cost",    "x",
                                        "[1,2]",    "NaN",  "null",    "{\\\"a\\\": 1}",
                                        "~",        "/",    "~0",      "~1",
                                        "a~b",      "a/b",  "\\/",     "\\\\u0000",
                                        "\\\\",     "\\\"", "\\u00e9", "\\u00E9",
                                        "é",        "日本", "😀",       "\\ud83d\\ude00",
                                        "1e400",    "-0.0", "\\n\\t",  "\\b\\f\\r",
                                        "tab\\tbed"};
    text *t = &g->t;
    for (size_t i = 0; i < pieces; i++) {
        size_t k = rnd(8);
        if (k < 3) {
            puts_(t, words[rnd(sizeof words / sizeof words[0])]);
        } else if (k == 3) { /* printable ASCII but the quote and the backslash */
            char c;
            do c = (char)(0x20 + rnd(0x5F));
            while (c == '"' || c == '\\');
            putch(t, c);
        } else if (k == 4) { /* \uXXXX of the BMP, not a surrogate, not NUL */
            unsigned long cp;
            do cp = 1 + rnd(0xFFFF);
            while (cp >= 0xD800 && cp < 0xE000);
            char b[8];
            snprintf(b, sizeof b, chance(0.5) ? "\\u%04lx" : "\\u%04lX", cp);
            puts_(t, b);
        } else if (k == 5) { /* a surrogate pair */
            char b[16];
            snprintf(b, sizeof b, "\\u%04lx\\u%04lX", 0xD800 + (unsigned long)rnd(0x400),
                     0xDC00 + (unsigned long)rnd(0x400));
            puts_(t, b);
        } else if (k == 6) { /* raw UTF-8 */
            unsigned long cp;
            do cp = 0x80 + rnd(0x10FFFF - 0x80);
            while (cp >= 0xD800 && cp < 0xE000);
            put_utf8(t, cp);
        } else {
            static const char *const esc[] = {"\\\"", "\\\\", "\\/", "\\b",
                                              "\\f",  "\\n",  "\\r", "\\t"};
            puts_(t, esc[rnd(8)]);
        }
    }
}

static void gen_string(gen *g)
{
    putch(&g->t, '"');
    size_t a = g->t.n;
    string_body(g, rnd(9));
    span_add(&g->strs, a, g->t.n);
    putch(&g->t, '"');
}

/* Keys: lossd's vocabulary once per object, else "k<i>" and a separator (no two
 * keys of one object can decode to the same string). */
/* clang-format off */
static const char *const vocabulary[] = {
    "loss", "inputs", "predictions", "targets", "weights", "reduction", "outputs",
    "name", "tasks", "weighting", "regularization", "params", "shape", "data", "dtype",
    "binary_data_size", "x1", "x2", "similar", "anchor", "positive", "negative", "mu",
    "logvar", "x", "reconstruction", "gamma", "label_smoothing", "a~b", "a/b", "~", "/",
    "", "\\u00e9t\\u00e9", "ü", "\\ud83d\\ude00", "scheme", "log_sigma", "kind",
    "lambda", "a\\\"b", "tab\\t", "~01/"};
/* clang-format on */
#define N_VOCAB (sizeof vocabulary / sizeof vocabulary[0])

static void gen_key(gen *g, size_t index, uint64_t *used)
{
    putch(&g->t, '"');
    size_t a = g->t.n;
    size_t v = rnd(N_VOCAB);
    if (chance(0.6) && !(*used >> v & 1)) {
        *used |= UINT64_C(1) << v;
        puts_(&g->t, vocabulary[v]);
    } else {
        char b[32];
        static const char seps[] = "_~/-.";
        snprintf(b, sizeof b, "k%zu%c", index, seps[rnd(5)]);
        puts_(&g->t, b);
        string_body(g, rnd(3));
    }
    span_add(&g->strs, a, g->t.n);
    putch(&g->t, '"');
}

/* ---- values ---- */

#define MAX_DEPTH SRV_MAX_DEPTH

static void gen_value(gen *g, int depth, int member);

static void gen_scalar(gen *g)
{
    size_t k = rnd(10);
    if (k < 4) {
        gen_number(g);
    } else if (k < 7) {
        gen_string(g);
    } else {
        static const char *const lits[] = {"true", "false", "null"};
        puts_(&g->t, lits[k - 7]);
    }
}

typedef struct arr_plan {
    size_t rank, shape[10];
    size_t odd_row; /* ragged: which subarray (counted as opened) gets odd_len */
    size_t odd_len;
    size_t odd_leaf; /* mixed: which leaf is not a number (SIZE_MAX: none) */
    size_t rows, leaves;
    int depth; /* containers around the array */
} arr_plan;

static void emit_array(gen *g, arr_plan *p, size_t d)
{
    size_t n = p->shape[d];
    if (d > 0 && p->rows++ == p->odd_row) n = p->odd_len;
    putch(&g->t, '[');
    ws(g);
    for (size_t i = 0; i < n; i++) {
        if (i) {
            putch(&g->t, ',');
            ws(g);
        }
        if (d + 1 < p->rank) {
            emit_array(g, p, d + 1);
        } else if (p->leaves++ == p->odd_leaf) {
            size_t k = rnd(6);
            if (k == 0)
                gen_string(g);
            else if (k == 1)
                puts_(&g->t, chance(0.5) ? "null" : "true");
            else if (k == 2 && p->depth + (int)d + 2 <= MAX_DEPTH)
                puts_(&g->t, "{}");
            else if (k == 3 && p->depth + (int)d + 2 <= MAX_DEPTH)
                puts_(&g->t, "[1,2]"); /* one level too deep */
            else if (k == 4 && p->depth + (int)d + 2 <= MAX_DEPTH)
                puts_(&g->t, "[]");
            else
                gen_string(g);
        } else {
            gen_number(g);
        }
        ws(g);
    }
    putch(&g->t, ']');
}

/* A numeric array: rectangular (lifted when an object member's value), ragged,
 * mixed, or empty. */
static void gen_array(gen *g, int depth)
{
    arr_plan p;
    memset(&p, 0, sizeof p);
    p.odd_row = p.odd_leaf = SIZE_MAX;
    p.depth = depth;
    size_t room = (size_t)(MAX_DEPTH - depth);
    size_t kind = rnd(20);
    if (kind == 0) { /* empty ones */
        static const char *const empty[] = {
            "[]",     "[ ]",      "[\n]",     "[[]]",       "[[],[]]",
            "[[[]]]", "[[],[1]]", "[[1],[]]", "[[ ], [ ]]", "[[1,2],[]]"};
        const char *e = empty[rnd(sizeof empty / sizeof empty[0])];
        size_t levels = 0;
        for (const char *c = e; *c == '['; c++) levels++;
        puts_(&g->t, levels <= room ? e : "[]");
        return;
    }
    p.rank = 1 + rnd(chance(0.1) ? 9 : 4);
    if (p.rank > room) p.rank = room;
    size_t total = 1;
    for (size_t d = 0; d < p.rank; d++) {
        size_t cap = p.rank == 1 ? 12 : p.rank <= 3 ? 5 : 2;
        p.shape[d] = 1 + rnd(cap);
        total *= p.shape[d];
    }
    if (total > 300 || total > g->budget + 20)
        for (size_t d = 0; d < p.rank; d++) p.shape[d] = 1;
    if (kind <= 2 && p.rank > 1) { /* ragged */
        size_t subarrays = 1, per = 1;
        for (size_t d = 1; d < p.rank; d++) {
            per *= p.shape[d - 1];
            subarrays += per;
        }
        p.odd_row = rnd(subarrays - 1);
        p.odd_len = rnd(4);
    } else if (kind <= 4) { /* mixed */
        size_t leaves = 1;
        for (size_t d = 0; d < p.rank; d++) leaves *= p.shape[d];
        p.odd_leaf = rnd(leaves);
    }
    emit_array(g, &p, 0);
}

static void gen_object(gen *g, int depth, size_t members);

/* A chain of containers down to the scanner's limit (or a little above the
 * current depth), ending in a scalar or a numeric array that fits. */
static void gen_chain(gen *g, int depth)
{
    int target =
        chance(0.5) ? MAX_DEPTH : depth + 1 + (int)rnd((size_t)(MAX_DEPTH - depth));
    char closers[MAX_DEPTH + 1];
    int n = 0;
    while (depth + n < target) {
        if (chance(0.5)) {
            putch(&g->t, '[');
            if (chance(0.2)) {
                gen_scalar(g);
                putch(&g->t, ',');
            }
            closers[n++] = ']';
        } else {
            putch(&g->t, '{');
            uint64_t used = 0;
            gen_key(g, 0, &used);
            putch(&g->t, ':');
            closers[n++] = '}';
        }
    }
    /* innermost: a scalar, or (when the innermost container is an object and a
     * level is left) a lifted array, which the scanner does not count */
    if (depth + n < MAX_DEPTH && chance(0.5))
        gen_array(g, depth + n);
    else
        gen_scalar(g);
    while (n-- > 0) putch(&g->t, closers[n]);
}

static void gen_value(gen *g, int depth, int member)
{
    if (depth >= MAX_DEPTH || g->budget == 0) {
        gen_scalar(g);
        return;
    }
    size_t k = rnd(100);
    int deep = depth > 6;
    if (k < (member ? 45u : 25u)) {
        gen_array(g, depth);
    } else if (k < 55 && !deep) {
        gen_object(g, depth, rnd(6));
    } else if (k < 60 && !deep) { /* an array of values of any kind */
        putch(&g->t, '[');
        ws(g);
        size_t n = rnd(5);
        for (size_t i = 0; i < n; i++) {
            if (i) putch(&g->t, ',');
            ws(g);
            gen_value(g, depth + 1, 0);
            ws(g);
        }
        putch(&g->t, ']');
    } else if (k < 62) {
        gen_chain(g, depth);
    } else {
        gen_scalar(g);
    }
}

static void gen_member(gen *g, int depth, size_t index, uint64_t *used)
{
    size_t a = g->t.n;
    gen_key(g, index, used);
    ws(g);
    putch(&g->t, ':');
    ws(g);
    gen_value(g, depth + 1, 1);
    span_add(&g->members, a, g->t.n);
}

static void gen_object(gen *g, int depth, size_t members)
{
    uint64_t used = 0;
    putch(&g->t, '{');
    ws(g);
    for (size_t i = 0; i < members; i++) {
        if (i) {
            putch(&g->t, ',');
            ws(g);
        }
        gen_member(g, depth, i, &used);
        ws(g);
    }
    putch(&g->t, '}');
}

/* ---- lossd-shaped requests ---- */

static void put_member(gen *g, int *first, const char *key)
{
    if (!*first) putch(&g->t, ',');
    *first = 0;
    ws(g);
    putch(&g->t, '"');
    size_t a = g->t.n;
    puts_(&g->t, key);
    span_add(&g->strs, a, g->t.n);
    puts_(&g->t, "\":");
    ws(g);
}

static void gen_tensor(gen *g, int depth)
{
    if (chance(0.25)) { /* a tensor object */
        int first = 1;
        putch(&g->t, '{');
        put_member(g, &first, "shape");
        size_t n = 1 + rnd(4), m = 1 + rnd(3);
        char b[64];
        snprintf(b, sizeof b, "[%zu,%zu]", n, m);
        puts_(&g->t, b);
        put_member(g, &first, "data");
        putch(&g->t, '[');
        for (size_t i = 0; i < n * m; i++) {
            if (i) putch(&g->t, ',');
            gen_number(g);
        }
        putch(&g->t, ']');
        if (chance(0.5)) {
            put_member(g, &first, "dtype");
            static const char *const dt[] = {"\"float64\"", "\"float32\"", "\"int64\"",
                                             "\"int32\""};
            puts_(&g->t, dt[rnd(4)]);
        }
        putch(&g->t, '}');
        return;
    }
    gen_array(g, depth);
}

static void gen_task(gen *g, int depth, int objective)
{
    static const char *const losses[] = {"mse",           "mae",   "huber", "bce",
                                         "cross_entropy", "focal", "hinge", "contrastive",
                                         "triplet",       "elbo"};
    static const char *const inputs[] = {"predictions", "targets", "x1", "anchor", "mu"};
    int first = 1;
    putch(&g->t, '{');
    if (objective) {
        put_member(g, &first, "name");
        gen_string(g);
    }
    put_member(g, &first, "loss");
    if (chance(0.5)) {
        putch(&g->t, '"');
        puts_(&g->t, losses[rnd(10)]);
        putch(&g->t, '"');
    } else {
        int f2 = 1;
        putch(&g->t, '{');
        put_member(g, &f2, "name");
        putch(&g->t, '"');
        puts_(&g->t, losses[rnd(10)]);
        putch(&g->t, '"');
        if (chance(0.5)) {
            put_member(g, &f2, "gamma");
            gen_number(g);
        }
        if (chance(0.3)) {
            put_member(g, &f2, "pos_weight");
            gen_tensor(g, depth + 2);
        }
        putch(&g->t, '}');
    }
    put_member(g, &first, "inputs");
    putch(&g->t, '{');
    int f3 = 1;
    size_t n = 1 + rnd(3), start = rnd(3);
    for (size_t i = 0; i < n; i++) {
        put_member(g, &f3, inputs[(start + i) % 5]);
        gen_tensor(g, depth + 2);
    }
    putch(&g->t, '}');
    if (chance(0.3)) {
        put_member(g, &first, "weights");
        if (chance(0.2))
            puts_(&g->t, "null");
        else
            gen_tensor(g, depth + 1);
    }
    if (chance(0.3)) {
        put_member(g, &first, "reduction");
        puts_(&g->t, chance(0.5) ? "\"mean\"" : "\"sum\"");
    }
    if (objective && chance(0.3)) {
        put_member(g, &first, "weight");
        gen_number(g);
    }
    if (!objective && chance(0.4)) {
        put_member(g, &first, "outputs");
        puts_(&g->t, "[\"cost\",\"losses\",\"gradients\",\"metrics\"]");
    }
    if (!objective && chance(0.1)) {
        put_member(g, &first, "binary_outputs");
        puts_(&g->t, chance(0.5) ? "true" : "false");
    }
    ws(g);
    putch(&g->t, '}');
}

static void gen_request(gen *g)
{
    if (chance(0.6)) {
        gen_task(g, 0, 0);
        return;
    }
    int first = 1;
    putch(&g->t, '{');
    put_member(g, &first, "tasks");
    putch(&g->t, '[');
    size_t n = 1 + rnd(3);
    for (size_t i = 0; i < n; i++) {
        if (i) putch(&g->t, ',');
        gen_task(g, 2, 1);
    }
    putch(&g->t, ']');
    if (chance(0.5)) {
        put_member(g, &first, "weighting");
        putch(&g->t, '{');
        int f2 = 1;
        put_member(g, &f2, "scheme");
        puts_(&g->t, "\"uncertainty\"");
        put_member(g, &f2, chance(0.5) ? "log_sigma" : "log_variance");
        gen_array(g, 2);
        putch(&g->t, '}');
    }
    if (chance(0.5)) {
        put_member(g, &first, "regularization");
        puts_(&g->t, "[{\"kind\":\"l2\",\"lambda\":");
        gen_number(g);
        puts_(&g->t, ",\"params\":");
        gen_tensor(g, 3);
        puts_(&g->t, "}]");
    }
    ws(g);
    putch(&g->t, '}');
}

/* One valid document. */
static void gen_document(gen *g)
{
    gen_reset(g);
    ws(g);
    size_t k = rnd(100);
    if (k < 45)
        gen_request(g);
    else if (k < 85)
        gen_object(g, 0, 1 + rnd(7));
    else if (k < 90)
        gen_value(g, 0, 0); /* any top-level value (JSON_DECODE_ANY) */
    else if (k < 95)
        gen_array(g, 0); /* top-level arrays are never lifted */
    else
        gen_chain(g, 0);
    ws(g);
}

/* Documents with arrays of more than 65536 numbers (or exactly 65536: one chunk
 * boundary is at 65536). */
static void gen_large_array(gen *g, size_t count, size_t rank, int full)
{
    size_t shape[3] = {count, 1, 1};
    if (rank == 2) {
        shape[1] = 2 + rnd(6);
        shape[0] = count / shape[1] + 1;
    } else if (rank == 3) {
        shape[1] = 3;
        shape[2] = 4;
        shape[0] = count / 12 + 1;
    }
    int nl = chance(0.3);
    putch(&g->t, '[');
    for (size_t a = 0; a < shape[0]; a++) {
        if (a) putch(&g->t, ',');
        if (nl && a % 7 == 0) puts_(&g->t, "\n ");
        if (rank > 1) putch(&g->t, '[');
        for (size_t b = 0; b < shape[1]; b++) {
            if (b) putch(&g->t, ',');
            if (rank > 2) putch(&g->t, '[');
            for (size_t c = 0; c < shape[2]; c++) {
                if (c) putch(&g->t, ',');
                if (full) {
                    char buf[40];
                    size_t s = g->t.n;
                    snprintf(buf, sizeof buf, "%.17g", random_bits_double());
                    puts_(&g->t, buf);
                    span_add(&g->nums, s, g->t.n);
                } else {
                    gen_cheap_number(g);
                }
            }
            if (rank > 2) putch(&g->t, ']');
        }
        if (rank > 1) putch(&g->t, ']');
    }
    putch(&g->t, ']');
}

static void gen_large_document(gen *g, size_t which)
{
    gen_reset(g);
    g->budget = 100;
    int first = 1;
    putch(&g->t, '{');
    switch (which % 8) {
    case 0:
        put_member(g, &first, "big");
        gen_large_array(g, 65537, 1, 0);
        break;
    case 1:
        put_member(g, &first, "inputs");
        putch(&g->t, '{');
        {
            int f2 = 1;
            put_member(g, &f2, "predictions");
            gen_large_array(g, 70000 + rnd(30000), 2, 0);
            put_member(g, &f2, "targets");
            gen_array(g, 2);
        }
        putch(&g->t, '}');
        put_member(g, &first, "loss");
        puts_(&g->t, "\"mse\"");
        break;
    case 2:
        put_member(g, &first, "a");
        gen_large_array(g, 65536, 1, 0); /* exactly one chunk: parsed in the scan */
        put_member(g, &first, "b");
        gen_large_array(g, 131073, 1, 0);
        put_member(g, &first, "c");
        gen_array(g, 1);
        break;
    case 3:
        put_member(g, &first, "t");
        gen_large_array(g, 100000, 3, 0);
        break;
    case 4: /* not liftable (ragged): jansson parses it, the scanner checks it */
        put_member(g, &first, "ragged");
        puts_(&g->t, "[[1,2],");
        gen_large_array(g, 65540, 1, 0);
        putch(&g->t, ']');
        break;
    case 5:
        put_member(g, &first, "full");
        gen_large_array(g, 65537 + rnd(5000), 1, 1);
        break;
    case 6: /* in nested objects with escaped keys */
        put_member(g, &first, "a~b");
        putch(&g->t, '{');
        {
            int f2 = 1;
            put_member(g, &f2, "c/d");
            gen_large_array(g, 66000, 2, 0);
        }
        putch(&g->t, '}');
        break;
    default: /* in an array of objects, twice */
        put_member(g, &first, "tasks");
        puts_(&g->t, "[{\"x\":");
        gen_large_array(g, 65537, 1, 0);
        puts_(&g->t, "},{\"x\":");
        gen_large_array(g, 65600, 2, 0);
        puts_(&g->t, "}]");
        break;
    }
    putch(&g->t, '}');
}

/* ---- mutants ---- */

static void splice(text *out, const text *in, size_t at, size_t del, const char *ins,
                   size_t ins_len)
{
    out->n = 0;
    if (at > in->n) at = in->n;
    if (del > in->n - at) del = in->n - at;
    put(out, in->s, at);
    put(out, ins, ins_len);
    put(out, in->s + at + del, in->n - at - del);
}

static const char interesting_bytes[] = "[]{},:\"\\-0123456789.eE+ xtn\x01\x1f\x7f";

static int pick_span(const spans *s, size_t *a, size_t *b)
{
    if (!s->n) return 0;
    size_t i = rnd(s->n);
    *a = s->a[i];
    *b = s->b[i];
    return 1;
}

/* Returns a short name of the mutation applied to g's document (into out). */
static const char *mutate(const gen *g, text *out)
{
    const text *in = &g->t;
    size_t n = in->n, a, b;
    char buf[600];
    for (;;) {
        switch (rnd(16)) {
        case 0: /* delete bytes */
            splice(out, in, rnd(n), 1 + rnd(3), "", 0);
            return "delete";
        case 1: { /* insert a byte */
            char c = interesting_bytes[rnd(sizeof interesting_bytes - 1)];
            if (chance(0.1)) c = (char)rnd(256);
            splice(out, in, rnd(n + 1), 0, &c, 1);
            return "insert";
        }
        case 2: { /* replace a byte */
            char c = interesting_bytes[rnd(sizeof interesting_bytes - 1)];
            if (chance(0.1)) c = (char)rnd(256);
            splice(out, in, rnd(n), 1, &c, 1);
            return "replace";
        }
        case 3: /* truncate */
            splice(out, in, rnd(n), n, "", 0);
            return "truncate";
        case 4: /* a bad number for a good one */
        case 5:
            if (!pick_span(&g->nums, &a, &b)) break;
            snprintf(buf, sizeof buf, "%s",
                     bad_numbers[rnd(sizeof bad_numbers / sizeof bad_numbers[0])]);
            splice(out, in, a, b - a, buf, strlen(buf));
            return "bad number";
        case 6: /* another good number (accepted) */
            if (!pick_span(&g->nums, &a, &b)) break;
            number_text(buf, sizeof buf);
            splice(out, in, a, b - a, buf, strlen(buf));
            return "good number";
        case 7: { /* a new element before a number */
            static const char *const el[] = {
                "NaN,", "Infinity,", "-Infinity,", "1e400,",  "\"s\",", "null,",
                "[1],", "{},",       "0,",         "-0.0e0,", "+1,",    ".5,"};
            if (!pick_span(&g->nums, &a, &b)) break;
            const char *e = el[rnd(sizeof el / sizeof el[0])];
            splice(out, in, a, 0, e, strlen(e));
            return "new element";
        }
        case 8: /* a stray comma */
            if (!pick_span(&g->nums, &a, &b)) break;
            splice(out, in, chance(0.5) ? a : b, 0, ",", 1);
            return "stray comma";
        case 9: { /* a missing comma (maybe one inside a string: still valid) */
            size_t start = rnd(n), i;
            for (i = 0; i < n && in->s[(start + i) % n] != ','; i++) {
            }
            if (i == n) break;
            splice(out, in, (start + i) % n, 1, "", 0);
            return "missing comma";
        }
        case 10: { /* an unbalanced bracket */
            static const char br[] = "[]{}";
            if (chance(0.5)) {
                splice(out, in, rnd(n + 1), 0, &br[rnd(4)], 1);
            } else {
                size_t start = rnd(n), i;
                for (i = 0; i < n && !strchr(br, in->s[(start + i) % n]); i++) {
                }
                if (i == n) break;
                splice(out, in, (start + i) % n, 1, "", 0);
            }
            return "unbalanced";
        }
        case 11: { /* a raw control character in a string */
            if (!pick_span(&g->strs, &a, &b)) break;
            char c = (char)rnd(0x20);
            splice(out, in, a + rnd(b - a + 1), 0, &c, 1);
            return "control character";
        }
        case 12: { /* invalid UTF-8 in a string */
            static const char *const bad[] = {
                "\xC3", "\xFF",     "\xC0\x80",         "\xED\xA0\x80",
                "\x80", "\xE2\x82", "\xF4\x90\x80\x80", "\xF8\x88\x80\x80\x80"};
            if (!pick_span(&g->strs, &a, &b)) break;
            const char *e = bad[rnd(sizeof bad / sizeof bad[0])];
            splice(out, in, a + rnd(b - a + 1), 0, e, strlen(e));
            return "invalid UTF-8";
        }
        case 13: /* \u0000 in a string or a key */
            if (!pick_span(&g->strs, &a, &b)) break;
            splice(out, in, chance(0.5) ? a : b, 0, "\\u0000", 6);
            return "\\u0000";
        case 14: { /* a duplicate key: a member repeated before itself */
            if (!pick_span(&g->members, &a, &b)) break;
            out->n = 0; /* ...member,member... */
            put(out, in->s, b);
            putch(out, ',');
            put(out, in->s + a, n - a);
            return "duplicate key";
        }
        default: { /* a bad escape in a string */
            static const char *const esc[] = {"\\x",     "\\u12",          "\\uD800",
                                              "\\uDC00", "\\uD800\\u0041", "\\U0041",
                                              "\\'",     "\\u00G0"};
            if (!pick_span(&g->strs, &a, &b)) break;
            const char *e = esc[rnd(sizeof esc / sizeof esc[0])];
            splice(out, in, a + rnd(b - a + 1), 0, e, strlen(e));
            return "bad escape";
        }
        }
    }
}

/* ---- running and counting ---- */

typedef struct stats {
    size_t compared, accepted, rejected, expected, expected_valid, mismatches;
    size_t lifted, large, chunks, bytes;
    size_t mutants, mutants_rejected;
} stats;

static stats S;

static void show(const char *doc, size_t len)
{
    fputs("  document: ", stderr);
    for (size_t i = 0; i < len && i < 600; i++) {
        unsigned char c = (unsigned char)doc[i];
        if (c >= 0x20 && c < 0x7F)
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02X", c);
    }
    fprintf(stderr, "%s (%zu bytes)\n", len > 600 ? "..." : "", len);
}

static void dump(const char *doc, size_t len)
{
    const char *dir = getenv("LOSSD_JSCAN_DUMP");
    if (!dir) return;
    char path[512];
    snprintf(path, sizeof path, "%s/mismatch-%zu.json", dir, S.mismatches);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(doc, 1, len, f);
    fclose(f);
}

/* Compares one document; want: 1 must be accepted, 0 either way. */
static int compare(const char *what, const char *doc, size_t len, int order, int valid)
{
    jd_result r;
    jd_run(doc, len, order, &r);
    S.compared++;
    S.bytes += len;
    S.lifted += r.n_arrays;
    S.large += r.n_large;
    S.chunks += r.n_chunks;
    switch (r.verdict) {
    case JD_SAME_ACCEPT:
        S.accepted++;
        break;
    case JD_SAME_REJECT:
        S.rejected++;
        break;
    case JD_EXPECTED:
        S.expected++;
        if (valid) S.expected_valid++;
        break;
    default:
        S.mismatches++;
        break;
    }
    if (r.verdict == JD_MISMATCH && S.mismatches <= 20) {
        CHECK(0, "%s: %s", what, r.why);
        show(doc, len);
        dump(doc, len);
    }
    if (valid && r.verdict != JD_MISMATCH && S.mismatches <= 20) {
        CHECK(r.verdict == JD_SAME_ACCEPT, "%s: a valid document is refused: %s (%d %s)",
              what, r.a_ok ? r.err.message : r.a_err.text, r.err.status,
              r.err.code ? r.err.code : "");
        if (r.verdict != JD_SAME_ACCEPT) {
            show(doc, len);
            dump(doc, len);
        }
    }
    return r.verdict;
}

static void differential(size_t n_docs, size_t n_large)
{
    gen g;
    memset(&g, 0, sizeof g);
    text m = {0};
    char what[96];
    for (size_t i = 0; i < n_docs + n_large; i++) {
        int large = i >= n_docs;
        if (large)
            gen_large_document(&g, i - n_docs);
        else
            gen_document(&g);
        snprintf(what, sizeof what, "document %zu", i);
        compare(what, g.t.s, g.t.n, i % 3 == 0 ? JD_PARSE_REVERSE : JD_PARSE_ALL, 1);
        size_t n_mut = large ? 3 : 2;
        for (size_t k = 0; k < n_mut; k++) {
            const char *how = mutate(&g, &m);
            snprintf(what, sizeof what, "document %zu, mutant %zu (%s)", i, k, how);
            int v = compare(what, m.s, m.n, k % 2 ? JD_PARSE_REVERSE : JD_PARSE_ALL, 0);
            S.mutants++;
            if (v == JD_SAME_REJECT) S.mutants_rejected++;
        }
    }
    free(m.s);
    gen_free(&g);
    CHECK(S.mismatches == 0, "%zu documents differ between jansson and the scanner",
          S.mismatches);
    CHECK(S.expected_valid == 0, "%zu generated documents nest deeper than %d",
          S.expected_valid, MAX_DEPTH);
    CHECK(S.large >= n_large / 2, "only %zu large arrays for %zu large documents",
          S.large, n_large);
}

/* ---- targeted inputs: error classes and pointers ---- */

/* B must refuse doc in the scanner (scan or finish) with this status, code and
 * pointer; A must accept it exactly when a_accepts. */
static void expect_error(const char *doc, size_t len, int status, const char *code,
                         const char *path, int a_accepts)
{
    jd_result r;
    jd_run(doc, len, JD_PARSE_ALL, &r);
    char shown[80];
    snprintf(shown, sizeof shown, "%.*s%s", (int)(len < 60 ? len : 60), doc,
             len > 60 ? "..." : "");
    CHECK(r.b_stage == 1 || r.b_stage == 2, "%s: the scanner should refuse it (stage %d)",
          shown, r.b_stage);
    if (r.b_stage == 1 || r.b_stage == 2) {
        CHECK(r.err.status == status && !strcmp(r.err.code, code),
              "%s: %d %s, want %d %s (%s)", shown, r.err.status, r.err.code, status, code,
              r.err.message);
        if (path)
            CHECK(!strcmp(r.err.path, path), "%s: pointer \"%s\", want \"%s\"", shown,
                  r.err.path, path);
        CHECK(strlen(r.err.message) > 10, "%s: message \"%s\"", shown, r.err.message);
    }
    CHECK(r.a_ok == a_accepts, "%s: jansson %s it", shown,
          r.a_ok ? "accepts" : "refuses");
}

static void expect_error_s(const char *doc, int status, const char *code,
                           const char *path)
{
    expect_error(doc, strlen(doc), status, code, path, 0);
}

/* {"<key>":[0,1,...,bad,...]}: count numbers, token at index at. */
static void large_doc(text *t, const char *key, size_t count, size_t cols, size_t at,
                      const char *token)
{
    t->n = 0;
    puts_(t, "{\"");
    puts_(t, key);
    puts_(t, "\":[");
    for (size_t i = 0; i < count; i++) {
        if (i) putch(t, ',');
        if (cols > 1 && i % cols == 0) putch(t, '[');
        char b[32];
        snprintf(b, sizeof b, "%zu", i % 1000);
        puts_(t, i == at ? token : b);
        if (cols > 1 && i % cols == cols - 1) putch(t, ']');
    }
    puts_(t, "]}");
}

/* n nested containers: objects {"a": ...} or arrays [...], around inner. */
static void nest(text *t, size_t n, int objects, const char *inner)
{
    t->n = 0;
    for (size_t i = 0; i < n; i++) puts_(t, objects ? "{\"a\":" : "[");
    puts_(t, inner);
    for (size_t i = 0; i < n; i++) putch(t, objects ? '}' : ']');
}

static void targeted(void)
{
    /* NaN and Infinity in a liftable array: the element's pointer */
    expect_error_s("{\"a\":[1,NaN]}", 422, "non_finite_value", "/a/1");
    expect_error_s("{\"a\":{\"b\":[[1,2],[3,Infinity]]}}", 422, "non_finite_value",
                   "/a/b/1/1");
    expect_error_s("{\"a\":[1,-Infinity,3]}", 422, "non_finite_value", "/a/1");
    expect_error_s("{\"a\":[[NaN]]}", 422, "non_finite_value", "/a/0/0");
    expect_error_s("{\"x\":NaN}", 422, "non_finite_value", "/x");
    expect_error_s("[1,[2,Infinity]]", 422, "non_finite_value", "/1/1");
    expect_error_s("NaN", 422, "non_finite_value", "");
    expect_error_s("{\"a~b\":{\"c/d\":[0,nan]}}", 422, "non_finite_value",
                   "/a~0b/c~1d/1");
    expect_error_s("{\"\\u00e9\":[inf]}", 422, "non_finite_value", "/\xC3\xA9/0");
    expect_error_s("{\"a\\\"b\":[1,infinity]}", 422, "non_finite_value", "/a\"b/1");
    expect_error_s("{\"inputs\":{\"predictions\":{\"shape\":[2],\"data\":[1,NaN]}}}", 422,
                   "non_finite_value", "/inputs/predictions/data/1");
    /* numbers beyond the double range: the same code, their pointer */
    expect_error_s("{\"a\":[0,1e400]}", 422, "non_finite_value", "/a/1");
    expect_error_s("{\"a\":[[0,1],[-1e309,2]]}", 422, "non_finite_value", "/a/1/0");
    expect_error_s("{\"x\":1.7976931348623159e308}", 422, "non_finite_value", "/x");
    expect_error_s("{\"x\":[\"s\",{\"y\":123e308}]}", 422, "non_finite_value", "/x/1/y");
    expect_error_s("1e400", 422, "non_finite_value", "");
    /* \u0000 in strings (jansson's JSON_ALLOW_NUL must never see one) */
    expect_error_s("{\"a\":[\"x\",\"\\u0000\"]}", 400, "malformed_json", "/a/1");
    expect_error_s("{\"a\":\"b\\u0000\"}", 400, "malformed_json", "/a");
    expect_error_s("{\"\\u0000\":1}", 400, "malformed_json", NULL);
    expect_error_s("\"\\u0000\"", 400, "malformed_json", "");

    /* large arrays: bad numbers found by the chunked parse, with their pointer */
    text t = {0};
    large_doc(&t, "big", 70001, 1, 70000, "--1");
    expect_error(t.s, t.n, 400, "malformed_json", "/big/70000", 0);
    large_doc(&t, "big", 140000, 1, 65536, "1.");
    expect_error(t.s, t.n, 400, "malformed_json", "/big/65536", 0);
    large_doc(&t, "big", 140000, 1, 131071, "1-2");
    expect_error(t.s, t.n, 400, "malformed_json", "/big/131071", 0);
    large_doc(&t, "big", 70000, 1, 0, "01");
    expect_error(t.s, t.n, 400, "malformed_json", "/big/0", 0);
    large_doc(&t, "m", 80000, 2, 70001, "1e+");
    expect_error(t.s, t.n, 400, "malformed_json", "/m/35000/1", 0);
    large_doc(&t, "a~b/c", 90000, 3, 89999, "1.5.5");
    expect_error(t.s, t.n, 400, "malformed_json", "/a~0b~1c/29999/2", 0);
    large_doc(&t, "big", 70000, 1, 69999, "1e400");
    expect_error(t.s, t.n, 422, "non_finite_value", "/big/69999", 0);
    large_doc(&t, "m", 80000, 4, 77777, "-1e999");
    expect_error(t.s, t.n, 422, "non_finite_value", "/m/19444/1", 0);
    large_doc(&t, "big", 70000, 1, 66000, "NaN"); /* not lifted: the walk finds it */
    expect_error(t.s, t.n, 422, "non_finite_value", "/big/66000", 0);
    /* a bad number in a large array that the walk meets first */
    large_doc(&t, "big", 70000, 1, 68000, "1e400");
    t.n--; /* drop the final '}' and add a NaN member after the array */
    puts_(&t, ",\"z\":NaN}");
    expect_error(t.s, t.n, 422, "non_finite_value", "/z", 0);
    /* valid large arrays at the chunk boundaries */
    static const size_t sizes[] = {65535, 65536, 65537, 131072, 131073};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        large_doc(&t, "big", sizes[i], 1, SIZE_MAX, "");
        jd_result r;
        jd_run(t.s, t.n, JD_PARSE_REVERSE, &r);
        CHECK(r.verdict == JD_SAME_ACCEPT && r.n_arrays == 1 && r.n_values == sizes[i] &&
                  r.n_large == (size_t)(sizes[i] > 65536),
              "large array of %zu: verdict %d, %zu arrays, %zu values, %zu chunks: %s",
              sizes[i], r.verdict, r.n_arrays, r.n_values, r.n_chunks, r.why);
        /* the first chunk is parsed in the scan already, the others later */
        CHECK(r.n_chunks == (sizes[i] > 65536 ? (sizes[i] + 65535) / 65536 - 1 : 0),
              "large array of %zu: %zu chunks", sizes[i], r.n_chunks);
    }
    /* ... unless a number of the first chunk is bad: then it is a chunk too */
    large_doc(&t, "big", 131073, 1, 65535, "1e400");
    {
        jd_result r;
        jd_run(t.s, t.n, JD_PARSE_ALL, &r);
        CHECK(r.n_chunks == 3, "a bad number in the first chunk: %zu chunks", r.n_chunks);
    }
    expect_error(t.s, t.n, 422, "non_finite_value", "/big/65535", 0);
    /* The structure pass parses an array's numbers as it goes, into a buffer of
     * 256 that grows (16 times, up to 65,536), and stops at a bad one; the rest
     * are parsed after it: the same numbers as jansson's (the differential)
     * around those sizes, and a bad number's pointer on both sides. */
    static const size_t mid[] = {1, 255, 256, 257, 300, 1000, 4095, 4096, 4097, 20000};
    for (size_t i = 0; i < sizeof mid / sizeof mid[0]; i++) {
        for (size_t cols = 1; cols <= 2; cols++) {
            if (mid[i] % cols) continue;
            large_doc(&t, "v", mid[i], cols, SIZE_MAX, "");
            jd_result r;
            jd_run(t.s, t.n, i % 2 ? JD_PARSE_REVERSE : JD_PARSE_ALL, &r);
            CHECK(r.verdict == JD_SAME_ACCEPT && r.n_arrays == 1 && r.n_values == mid[i],
                  "array of %zu: verdict %d, %zu arrays, %zu values: %s", mid[i],
                  r.verdict, r.n_arrays, r.n_values, r.why);
        }
    }
    /* The structure pass finds where a number ends 16 bytes at a time: every byte
     * that can end it or spoil it, at every place of a long number, in an array
     * (the scanner's verdict and numbers must be jansson's), also near the end of
     * the body where fewer than 16 bytes are left. */
    static const char odd[] = {'x', ' ', ',',  ']',        '"',        '/',       ':',
                               '@', '[', '\t', 'E',        'e',        '+',       '-',
                               '.', '0', 0x7F, (char)0x80, (char)0xC3, (char)0xFF};
    for (size_t at = 0; at < 24; at++) {
        for (size_t o = 0; o < sizeof odd; o++) {
            for (int tail = 0; tail < 2; tail++) {
                char num[32] = "-1234567.8901234567890123e-7";
                num[1 + at] = odd[o];
                char doc[96];
                int len = snprintf(doc, sizeof doc,
                                   tail ? "{\"a\":[%s]}" : "{\"a\":[%s,5e-1,7]}", num);
                jd_result r;
                jd_run(doc, (size_t)len, JD_PARSE_ALL, &r);
                CHECK(r.verdict == JD_SAME_ACCEPT || r.verdict == JD_SAME_REJECT,
                      "%s: verdict %d: %s", doc, r.verdict, r.why);
                /* and a valid one is lifted, not left to jansson */
                CHECK(r.verdict != JD_SAME_ACCEPT || r.n_arrays == 1,
                      "%s: %zu arrays lifted", doc, r.n_arrays);
            }
        }
    }
    /* (a malformed number in an array this small is jansson's to report) */
    static const struct {
        size_t count, at;
        const char *token;
    } bad_mid[] = {
        {300, 0, "--1"},       {300, 255, "1."},      {300, 256, "1.5.5"},
        {300, 257, "01"},      {1000, 999, "1e+"},    {257, 255, "1e400"},
        {257, 256, "-1e999"},  {600, 100, "1e400"},   {5000, 4096, "1.e5"},
        {5000, 4097, "1e999"}, {20000, 19999, "--2"},
    };
    for (size_t i = 0; i < sizeof bad_mid / sizeof bad_mid[0]; i++) {
        large_doc(&t, "v", bad_mid[i].count, 1, bad_mid[i].at, bad_mid[i].token);
        if (strchr(bad_mid[i].token, '9') || strstr(bad_mid[i].token, "400")) {
            char path[32];
            snprintf(path, sizeof path, "/v/%zu", bad_mid[i].at);
            expect_error(t.s, t.n, 422, "non_finite_value", path, 0);
        } else {
            jd_result r;
            jd_run(t.s, t.n, JD_PARSE_ALL, &r);
            CHECK(r.verdict == JD_SAME_REJECT, "%s at %zu of %zu: verdict %d: %s",
                  bad_mid[i].token, bad_mid[i].at, bad_mid[i].count, r.verdict, r.why);
        }
    }

    /* nesting: 64 levels are fine, 65 are not (jansson takes both) */
    char ptr[512];
    for (int objects = 0; objects < 2; objects++) {
        jd_result r;
        nest(&t, SRV_MAX_DEPTH, objects, "1");
        jd_run(t.s, t.n, JD_PARSE_ALL, &r);
        CHECK(r.verdict == JD_SAME_ACCEPT, "%d nested %s: verdict %d %s", SRV_MAX_DEPTH,
              objects ? "objects" : "arrays", r.verdict, r.err.message);
        nest(&t, SRV_MAX_DEPTH + 1, objects, "1");
        ptr[0] = '\0';
        for (int i = 0; i < SRV_MAX_DEPTH; i++) strcat(ptr, objects ? "/a" : "/0");
        expect_error(t.s, t.n, 400, "nesting_too_deep", ptr, 1);
        jd_run(t.s, t.n, JD_PARSE_ALL, &r);
        CHECK(r.verdict == JD_EXPECTED, "%d nested: verdict %d", SRV_MAX_DEPTH + 1,
              r.verdict);
        nest(&t, 3000, objects, "1"); /* beyond jansson's limit too */
        jd_run(t.s, t.n, JD_PARSE_ALL, &r);
        CHECK(r.verdict == JD_SAME_REJECT && r.b_stage == 1 &&
                  !strcmp(r.err.code, "nesting_too_deep"),
              "3000 nested: verdict %d, stage %d", r.verdict, r.b_stage);
    }
    /* a lifted array does not count: 64 objects and a rank-4 array in the last */
    nest(&t, SRV_MAX_DEPTH, 1, "[[[[1,2]]]]");
    {
        jd_result r;
        jd_run(t.s, t.n, JD_PARSE_ALL, &r);
        CHECK(r.verdict == JD_SAME_ACCEPT && r.n_arrays == 1,
              "64 objects around a lifted array: verdict %d, %zu arrays: %s", r.verdict,
              r.n_arrays, r.err.message);
    }
    /* ... but one that cannot be lifted does */
    nest(&t, SRV_MAX_DEPTH, 1, "[[1],[2,3]]");
    ptr[0] = '\0';
    for (int i = 0; i < SRV_MAX_DEPTH; i++) strcat(ptr, "/a");
    expect_error(t.s, t.n, 400, "nesting_too_deep", ptr, 1);

    /* what is lifted and what is not */
    static const struct {
        const char *doc;
        size_t arrays;
    } lifts[] = {
        {"{\"a\":[1,2]}", 1},
        {"[1,2,3]", 0},                     /* top level */
        {"{\"a\":[[1,2],[3]]}", 0},         /* ragged */
        {"{\"a\":[[1,2],[3,4]]}", 1},       /* rectangular */
        {"{\"a\":[{\"b\":[1]}]}", 1},       /* a member's value inside an array */
        {"{\"a\":[[1],[\"x\"]]}", 0},       /* mixed */
        {"{\"a\":[]}", 0},                  /* empty */
        {"{\"a\":[[],[]]}", 0},             /* no numbers */
        {"{\"a\":[1,[2]]}", 0},             /* ranks differ */
        {"{\"a\":[[[[[[[[1]]]]]]]]}", 1},   /* rank 8 */
        {"{\"a\":[[[[[[[[[1]]]]]]]]]}", 0}, /* rank 9 */
        {"{\"a\":[1,2],\"b\":{\"c\":[3]},\"d\":[[4]]}", 3},
        {"{\"a\" : [ 1 , 2 ] , \"b\" :\n[\r\n3\t]}", 2},
    };
    for (size_t i = 0; i < sizeof lifts / sizeof lifts[0]; i++) {
        jd_result r;
        jd_run(lifts[i].doc, strlen(lifts[i].doc), JD_PARSE_ALL, &r);
        CHECK(r.verdict == JD_SAME_ACCEPT && r.n_arrays == lifts[i].arrays,
              "%s: verdict %d, %zu arrays lifted, want %zu: %s", lifts[i].doc, r.verdict,
              r.n_arrays, lifts[i].arrays, r.why);
    }
    /* Raw NUL bytes: jansson skips one after a number, and the scanner used to
     * stop there, leaving B's jansson (JSON_ALLOW_NUL) to take a later "\u0000",
     * or "\u0000<k>" for lifted array k.  The scanner now refuses the byte. */
    static const char nul1[] = "{\"a\":[1\0],\"b\":\"\\u0000\"}";
    static const char nul2[] = "{\"p\":[1,2,3],\"a\":[0\0],\"b\":\"\\u00000\"}";
    static const char nul3[] = "{\"a\":[1\0]}"; /* jansson alone takes it */
    static const char *const nuls[] = {nul1, nul2, nul3};
    static const size_t nul_lens[] = {sizeof nul1 - 1, sizeof nul2 - 1, sizeof nul3 - 1};
    for (size_t i = 0; i < 3; i++) {
        jd_result r;
        jd_run(nuls[i], nul_lens[i], JD_PARSE_ALL, &r);
        CHECK(r.verdict == (i == 2 ? JD_EXPECTED : JD_SAME_REJECT) && r.b_stage == 1 &&
                  !strcmp(r.err.code, "malformed_json") && strstr(r.err.message, "NUL"),
              "raw NUL %zu: verdict %d, stage %d, %s: %s", i, r.verdict, r.b_stage,
              r.err.message, r.why);
    }

    /* placeholders: only "\0<k>" with k in range */
    srv_scan scan;
    srv_error err;
    memset(&scan, 0, sizeof scan);
    const char *doc = "{\"a\":[1,2],\"b\":[3]}";
    CHECK(srv_scan_body(doc, strlen(doc), &scan, &err) == 0, "scan");
    CHECK(srv_scan_finish(&scan, &err) == 0, "finish");
    CHECK(srv_scan_lookup(&scan,
                          "\0"
                          "1",
                          2) == &scan.arrays[1],
          "lookup 1");
    CHECK(srv_scan_lookup(&scan,
                          "\0"
                          "2",
                          2) == NULL,
          "lookup 2");
    CHECK(srv_scan_lookup(&scan, "\0", 1) == NULL, "lookup of \\0");
    CHECK(srv_scan_lookup(&scan,
                          "\0"
                          "1x",
                          3) == NULL,
          "lookup 1x");
    CHECK(srv_scan_lookup(&scan, "1", 1) == NULL, "lookup 1 without \\0");
    CHECK(srv_scan_lookup(&scan,
                          "\0"
                          "99999999999999999999999",
                          24) == NULL,
          "lookup of a huge index");
    srv_scan_free(&scan);
    free(t.s);
}

int main(void)
{
    R.s = 0x6a73636e2d646966ULL; /* "jscn-dif" */
    targeted();
    size_t n_docs = 4000, n_large = 16;
    const char *env = getenv("LOSSD_JSCAN_DOCS"); /* more, for a soak */
    if (env) n_docs = strtoul(env, NULL, 10);
    differential(n_docs, n_large);
    printf("test_jscan: %zu documents compared (%zu bytes): %zu accepted by both, %zu "
           "rejected by both, %zu expected differences (nesting, NUL bytes), %zu "
           "mismatches; %zu of %zu mutants rejected; %zu arrays lifted, %zu of them "
           "large (%zu chunks)\n",
           S.compared, S.bytes, S.accepted, S.rejected, S.expected, S.mismatches,
           S.mutants_rejected, S.mutants, S.lifted, S.large, S.chunks);
    return test_report("test_jscan");
}
