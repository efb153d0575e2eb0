/* jscan.c - the body scanner.
 *
 * jansson builds one json_t per number (about 40 bytes and a malloc each), which
 * makes it the bottleneck for large batches.  Before jansson sees a request body,
 * this scanner walks it once, and every array that holds only numbers (nested
 * and rectangular) and is long enough is parsed here into a double array and
 * replaced, in place, by a short string "\u0000<k>" padded with blanks.  jansson
 * then parses a small document; the codec turns those strings back into the
 * lifted arrays.  A real string can never look like a placeholder: the scanner
 * rejects "\u0000" in strings, as jansson does by default.
 *
 * The scanner also tracks where it is (object keys and array indices), so that
 * a NaN or Infinity token or a number beyond the double range is reported as a
 * 422 with its JSON Pointer instead of a bare syntax error.  Anything else that
 * is malformed is left to jansson, whose messages give line and column. */
#include "srv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLACEHOLDER_MAX 24

typedef struct frame {
    char type;        /* '{' or '[' */
    size_t index;     /* arrays: index of the current element */
    const char *key;  /* objects: the current key, raw (escapes not decoded) */
    size_t key_len;
} frame;

typedef struct scanner {
    char *p, *end;
    frame stack[SRV_MAX_DEPTH + 1];
    int depth;
    srv_scan *scan;
    srv_error *err;
} scanner;

static int is_ws(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}
static void skip_ws(scanner *s)
{
    while (s->p < s->end && is_ws(*s->p)) s->p++;
}

/* Decodes the escapes of a raw key well enough for a pointer (\uXXXX to UTF-8;
 * surrogate pairs are combined). */
static size_t decode_key(const char *k, size_t n, char *out, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; i < n && j + 4 < cap; i++) {
        if (k[i] != '\\' || i + 1 >= n) {
            out[j++] = k[i];
            continue;
        }
        char c = k[++i];
        switch (c) {
        case 'n': out[j++] = '\n'; break;
        case 't': out[j++] = '\t'; break;
        case 'r': out[j++] = '\r'; break;
        case 'b': out[j++] = '\b'; break;
        case 'f': out[j++] = '\f'; break;
        case 'u': {
            if (i + 4 >= n) return j;
            char hex[5] = {k[i + 1], k[i + 2], k[i + 3], k[i + 4], 0};
            unsigned long cp = strtoul(hex, NULL, 16);
            i += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && i + 6 < n && k[i + 1] == '\\' && k[i + 2] == 'u') {
                char lo[5] = {k[i + 3], k[i + 4], k[i + 5], k[i + 6], 0};
                cp = 0x10000 + ((cp - 0xD800) << 10) + (strtoul(lo, NULL, 16) - 0xDC00);
                i += 6;
            }
            if (cp < 0x80) {
                out[j++] = (char)cp;
            } else if (cp < 0x800) {
                out[j++] = (char)(0xC0 | (cp >> 6));
                out[j++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                out[j++] = (char)(0xE0 | (cp >> 12));
                out[j++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[j++] = (char)(0x80 | (cp & 0x3F));
            } else {
                out[j++] = (char)(0xF0 | (cp >> 18));
                out[j++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                out[j++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[j++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: out[j++] = c; break;
        }
    }
    return j;
}

/* The JSON Pointer of the value being scanned. */
static void current_path(const scanner *s, char *ptr, size_t cap)
{
    ptr[0] = '\0';
    for (int i = 1; i <= s->depth; i++) {
        const frame *f = &s->stack[i];
        if (f->type == '[') {
            srv_pointer_push_index(ptr, cap, f->index);
        } else {
            char key[256];
            size_t n = decode_key(f->key, f->key_len, key, sizeof key);
            srv_pointer_push(ptr, cap, key, n);
        }
    }
}

static int nonfinite(scanner *s, int overflow)
{
    char ptr[256];
    current_path(s, ptr, sizeof ptr);
    const char *where = ptr[0] ? ptr : "the top-level value";
    if (overflow)
        srv_error_set(s->err, 422, "non_finite_value", ptr,
                      "%s: the number does not fit a double (it would be infinite)", where);
    else
        srv_error_set(s->err, 422, "non_finite_value", ptr,
                      "%s: NaN and Infinity are not numbers in JSON; send finite values", where);
    return -1;
}

static int push_value(srv_scan *sc, double v)
{
    if (sc->n_values == sc->cap_values) {
        size_t cap = sc->cap_values ? sc->cap_values * 2 : 1024;
        double *nv = realloc(sc->values, cap * sizeof *nv);
        if (!nv) return -1;
        sc->values = nv;
        sc->cap_values = cap;
    }
    sc->values[sc->n_values++] = v;
    return 0;
}

/* Parses the numeric array at s->p ('[').  On success fills *out, leaves s->p
 * after the array and returns 1; returns 0 (and restores the value count) when
 * the array is not a rectangular all-number array of rank <= LOSS_MAX_RANK. */
static int try_lift(scanner *s, srv_lifted *out)
{
    srv_scan *sc = s->scan;
    size_t start_values = sc->n_values;
    size_t dims[LOSS_MAX_RANK], count[LOSS_MAX_RANK];
    int known[LOSS_MAX_RANK] = {0};
    int rank = -1, d = 0, need = 0; /* need: an element must follow (after ',') */
    const char *p = s->p + 1, *end = s->end;
    count[0] = 0;
    for (;;) {
        while (p < end && is_ws(*p)) p++;
        if (p >= end) goto fail;
        char c = *p;
        if (c == ']') {
            if (need) goto fail;
            if (count[d] == 0) {
                if (rank < 0) rank = d + 1;
                if (rank != d + 1) goto fail;
            }
            if (known[d] ? count[d] != dims[d] : 0) goto fail;
            dims[d] = count[d];
            known[d] = 1;
            p++;
            if (--d < 0) break;
            count[d]++;
        } else if (c == '[') {
            if (d + 1 >= LOSS_MAX_RANK || (rank >= 0 && d + 1 >= rank)) goto fail;
            d++;
            count[d] = 0;
            p++;
            need = 0;
            continue;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            if (rank < 0) rank = d + 1;
            if (rank != d + 1) goto fail;
            double v;
            int overflow;
            const char *q = srv_parse_number(p, end, &v, &overflow);
            if (!q || overflow) goto fail;
            if (push_value(sc, v)) goto fail;
            count[d]++;
            p = q;
        } else {
            goto fail;
        }
        /* after an element */
        while (p < end && is_ws(*p)) p++;
        if (p < end && *p == ',') {
            p++;
            need = 1;
        } else if (p < end && *p == ']') {
            need = 0;
        } else {
            goto fail;
        }
    }
    if (rank < 1) goto fail;
    out->offset = start_values;
    out->count = sc->n_values - start_values;
    out->rank = (size_t)rank;
    for (int k = 0; k < rank; k++) out->shape[k] = dims[k];
    s->p = (char *)p;
    return 1;
fail:
    sc->n_values = start_values;
    return 0;
}

/* Replaces [from, to) by the placeholder of array k; returns 0 when it does not
 * fit (then the text is left alone). */
static int write_placeholder(char *from, char *to, size_t k)
{
    char ph[PLACEHOLDER_MAX];
    int n = snprintf(ph, sizeof ph, "\"\\u0000%zu\"", k);
    if (n < 0 || (size_t)n > (size_t)(to - from)) return 0;
    memcpy(from, ph, (size_t)n);
    memset(from + n, ' ', (size_t)(to - from) - (size_t)n);
    return 1;
}

static int lift_array(scanner *s)
{
    srv_scan *sc = s->scan;
    char *start = s->p;
    srv_lifted a;
    if (!try_lift(s, &a)) return 0;
    if (sc->max_values && sc->n_values > sc->max_values) {
        srv_error_set(s->err, 413, "too_many_elements", "",
                      "the request has more than %zu numbers (--max-elements)", sc->max_values);
        return -1;
    }
    if (sc->n_arrays == sc->cap_arrays) {
        size_t cap = sc->cap_arrays ? sc->cap_arrays * 2 : 16;
        srv_lifted *na = realloc(sc->arrays, cap * sizeof *na);
        if (!na) {
            srv_error_set(s->err, 500, "internal_error", "", "out of memory");
            return -1;
        }
        sc->arrays = na;
        sc->cap_arrays = cap;
    }
    if (!write_placeholder(start, s->p, sc->n_arrays)) {
        /* Too short to hold a placeholder: jansson will parse it (cheaply). */
        sc->n_values = a.offset;
        return 1;
    }
    sc->arrays[sc->n_arrays++] = a;
    return 1;
}

/* Skips the string at s->p ('"').  Returns 0, 1 when the string is unterminated
 * (left to jansson), -1 on "\u0000". */
static int skip_string(scanner *s)
{
    const char *p = s->p + 1, *end = s->end;
    while (p < end) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        const char *b = memchr(p, '\\', (size_t)(end - p));
        if (!q) return 1;
        if (!b || b > q) {
            s->p = (char *)q + 1;
            return 0;
        }
        if (b + 1 >= end) return 1;
        if (b[1] == 'u' && end - b >= 6 && memcmp(b + 2, "0000", 4) == 0) {
            s->p = (char *)b;
            char ptr[256];
            current_path(s, ptr, sizeof ptr);
            srv_error_set(s->err, 400, "malformed_json", ptr,
                          "\\u0000 is not allowed in strings (at %s)",
                          ptr[0] ? ptr : "the top level");
            return -1;
        }
        p = b + 2;
    }
    return 1;
}

static int literal(scanner *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) return 0;
    s->p += n;
    return 1;
}

int srv_scan_body(char *body, size_t len, srv_scan *scan, srv_error *err)
{
    scanner s = {0};
    s.p = body;
    s.end = body + len;
    s.scan = scan;
    s.err = err;
    enum { VALUE, AFTER, KEY } state = VALUE;
    for (;;) {
        skip_ws(&s);
        if (s.p >= s.end) return 0; /* truncated or empty: jansson reports it */
        char c = *s.p;
        if (state == KEY) {
            if (c != '"') return 0;
            const char *k = s.p + 1;
            int rc = skip_string(&s);
            if (rc) return rc < 0 ? -1 : 0;
            s.stack[s.depth].key = k;
            s.stack[s.depth].key_len = (size_t)(s.p - 1 - k);
            skip_ws(&s);
            if (s.p >= s.end || *s.p != ':') return 0;
            s.p++;
            state = VALUE;
            continue;
        }
        if (state == AFTER) {
            if (s.depth == 0) return 0; /* trailing content is jansson's to judge */
            frame *f = &s.stack[s.depth];
            if (c == ',') {
                s.p++;
                if (f->type == '[') {
                    f->index++;
                    state = VALUE;
                } else {
                    state = KEY;
                }
            } else if (c == (f->type == '[' ? ']' : '}')) {
                s.p++;
                s.depth--;
            } else {
                return 0;
            }
            continue;
        }
        /* VALUE */
        if (c == '{' || c == '[') {
            /* Lift arrays that are object values (or the document): an array
             * inside an array that failed to lift is part of that failure. */
            if (c == '[' && s.stack[s.depth].type != '[') {
                int rc = lift_array(&s);
                if (rc < 0) return -1;
                if (rc > 0) {
                    state = AFTER;
                    continue;
                }
            }
            if (s.depth == SRV_MAX_DEPTH) {
                char ptr[256];
                current_path(&s, ptr, sizeof ptr);
                srv_error_set(err, 400, "nesting_too_deep", ptr,
                              "the JSON nests deeper than %d levels", SRV_MAX_DEPTH);
                return -1;
            }
            s.depth++;
            s.stack[s.depth] = (frame){c, 0, "", 0};
            s.p++;
            skip_ws(&s);
            if (s.p < s.end && *s.p == (c == '[' ? ']' : '}')) {
                s.p++;
                s.depth--;
                state = AFTER;
            } else {
                state = c == '[' ? VALUE : KEY;
            }
            continue;
        }
        if (c == '"') {
            int rc = skip_string(&s);
            if (rc) return rc < 0 ? -1 : 0;
            state = AFTER;
            continue;
        }
        if (c == '-' || (c >= '0' && c <= '9')) {
            double v;
            int overflow;
            const char *q = srv_parse_number(s.p, s.end, &v, &overflow);
            if (!q) {
                if (c == '-' && (s.end - s.p) >= 9 && memcmp(s.p + 1, "Infinity", 8) == 0)
                    return nonfinite(&s, 0);
                return 0;
            }
            if (overflow) return nonfinite(&s, 1);
            s.p = (char *)q;
            state = AFTER;
            continue;
        }
        if (literal(&s, "true") || literal(&s, "false") || literal(&s, "null")) {
            state = AFTER;
            continue;
        }
        if (literal(&s, "NaN") || literal(&s, "Infinity") || literal(&s, "nan") ||
            literal(&s, "inf") || literal(&s, "infinity"))
            return nonfinite(&s, 0);
        return 0;
    }
}

void srv_scan_free(srv_scan *scan)
{
    free(scan->values);
    free(scan->arrays);
    memset(scan, 0, sizeof *scan);
}

const srv_lifted *srv_scan_lookup(const srv_scan *scan, const char *s, size_t len)
{
    if (len < 2 || s[0] != '\0') return NULL;
    size_t k = 0;
    for (size_t i = 1; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || k > SIZE_MAX / 10) return NULL;
        k = k * 10 + (size_t)(s[i] - '0');
    }
    return k < scan->n_arrays ? &scan->arrays[k] : NULL;
}
