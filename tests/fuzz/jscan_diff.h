/* jscan_diff.h - the body scanner's differential oracle, shared by the unit test
 * (tests/unit/test_jscan.c) and the libFuzzer target (tests/fuzz/fuzz_jscan.c).
 *
 * One document goes two ways:
 *   A: json_loadb(doc) with the codec's flags (jansson alone);
 *   B: srv_scan_body -> srv_scan_parse -> srv_scan_finish -> json_loadb(scan.text)
 *      with JSON_ALLOW_NUL too, exactly as srv_codec_decode does.
 * Both must accept and reject the same documents.  When both accept, the two DOMs
 * are walked in parallel: where B has a placeholder (srv_scan_lookup), A must have
 * nested arrays of the lifted shape whose numbers have the same bits as the lifted
 * values; everything else must be equal, numbers to the bit (-0.0 included).
 * Every lifted array must be referenced exactly once, only as an object member's
 * value, and no array that the scanner should have lifted (a non-empty rectangular
 * all-number array of rank <= LOSS_MAX_RANK that is an object member's value) may
 * be left to jansson.
 *
 * The one deliberate difference: B refuses nesting deeper than SRV_MAX_DEPTH
 * (nesting_too_deep) where jansson goes to 2048 levels; that verdict is
 * JD_EXPECTED, not a mismatch.
 *
 * The other deliberate difference: B refuses any raw NUL byte (RFC 8259 allows
 * none), where jansson 2.14 skips one after a number or a literal ("[1\0]" is
 * [1]); that verdict is JD_EXPECTED too.  And like the codec, B refuses a body
 * that jansson accepts but the scanner could not walk to its end (stage 4): the
 * strings it did not see were not checked for "\u0000".
 *
 * Everything here is static: include it in one translation unit. */
#ifndef LOSSD_JSCAN_DIFF_H
#define LOSSD_JSCAN_DIFF_H

#include "srv.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The codec's flags without JSON_ALLOW_NUL (path A), and with it (path B). */
#define JD_FLAGS (JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)

enum { JD_SAME_ACCEPT, JD_SAME_REJECT, JD_EXPECTED, JD_MISMATCH };

/* How srv_scan_parse is called: every chunk at once, or one at a time backwards
 * (the server may run chunks in any order on any thread). */
enum { JD_PARSE_ALL, JD_PARSE_REVERSE };

typedef struct jd_result {
    int verdict; /* JD_* */
    int a_ok, b_ok;
    int b_stage;   /* where B refused: 0 it did not, 1 scan, 2 finish, 3 jansson,
                      4 jansson accepted what the scanner did not walk */
    srv_error err; /* B's error in stages 1 and 2 */
    json_error_t a_err, b_err;
    size_t n_arrays, n_values, n_chunks, n_large; /* what the scan lifted */
    char why[768];                                /* the difference, for people */
} jd_result;

typedef struct jd_ctx {
    const srv_scan *scan;
    unsigned *used; /* per lifted array: times its placeholder was seen */
    char path[512];
    char *why;
    size_t why_cap;
} jd_ctx;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int
jd_fail(jd_ctx *c, const char *fmt, ...)
{
    int n = snprintf(c->why, c->why_cap, "at \"%s\": ", c->path);
    if (n < 0 || (size_t)n >= c->why_cap) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why + n, c->why_cap - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static const char *jd_type(const json_t *v)
{
    static const char *const names[] = {"object", "array", "string", "integer",
                                        "real",   "true",  "false",  "null"};
    return v ? names[json_typeof(v)] : "nothing";
}

/* Whether v is what the scanner lifts: a non-empty rectangular all-number array
 * of rank <= LOSS_MAX_RANK. */
static int jd_liftable_fill(const json_t *v, size_t depth, size_t rank,
                            const size_t *shape)
{
    if (depth == rank) return json_is_number(v);
    if (!json_is_array(v) || json_array_size(v) != shape[depth]) return 0;
    for (size_t i = 0; i < shape[depth]; i++)
        if (!jd_liftable_fill(json_array_get(v, i), depth + 1, rank, shape)) return 0;
    return 1;
}

static int jd_liftable(const json_t *v)
{
    size_t shape[LOSS_MAX_RANK + 1], rank = 0, count = 1;
    const json_t *e = v;
    while (json_is_array(e)) {
        if (rank == LOSS_MAX_RANK) return 0;
        shape[rank++] = json_array_size(e);
        count *= json_array_size(e);
        if (json_array_size(e) == 0) break;
        e = json_array_get(e, 0);
    }
    if (rank == 0 || count == 0) return 0;
    return jd_liftable_fill(v, 0, rank, shape);
}

static int jd_same_bits(double x, double y)
{
    return memcmp(&x, &y, sizeof x) == 0;
}

/* A's nested arrays against lifted array l, element k onwards. */
static int jd_match_lifted(jd_ctx *c, const json_t *a, const srv_lifted *l, size_t depth,
                           size_t *k)
{
    if (depth == l->rank) {
        if (!json_is_number(a))
            return jd_fail(c, "element %zu of the lifted array is a %s in jansson's DOM",
                           *k, jd_type(a));
        double x = json_number_value(a), y = c->scan->values[l->offset + *k];
        if (!jd_same_bits(x, y))
            return jd_fail(c,
                           "element %zu: jansson %.17g (%a), scanner %.17g (%a): the "
                           "bits differ",
                           *k, x, x, y, y);
        ++*k;
        return 0;
    }
    if (!json_is_array(a))
        return jd_fail(c, "the scanner lifted rank %zu but jansson has a %s at depth %zu",
                       l->rank, jd_type(a), depth);
    if (json_array_size(a) != l->shape[depth])
        return jd_fail(c, "dimension %zu: jansson %zu, scanner %zu", depth,
                       json_array_size(a), l->shape[depth]);
    for (size_t i = 0; i < l->shape[depth]; i++)
        if (jd_match_lifted(c, json_array_get(a, i), l, depth + 1, k)) return -1;
    return 0;
}

/* Walks A and B in parallel; member: B is the value of an object member. */
static int jd_same(jd_ctx *c, const json_t *a, const json_t *b, int member)
{
    if (json_is_string(b)) {
        const srv_lifted *l =
            srv_scan_lookup(c->scan, json_string_value(b), json_string_length(b));
        if (l) {
            size_t idx = (size_t)(l - c->scan->arrays), k = 0, want = 1;
            c->used[idx]++;
            if (!member)
                return jd_fail(c, "placeholder %zu outside an object member", idx);
            if (l->rank < 1 || l->rank > LOSS_MAX_RANK || l->count == 0)
                return jd_fail(c, "lifted array %zu has rank %zu, count %zu", idx,
                               l->rank, l->count);
            for (size_t d = 0; d < l->rank; d++) want *= l->shape[d];
            if (want != l->count)
                return jd_fail(c, "lifted array %zu: shape gives %zu numbers, count %zu",
                               idx, want, l->count);
            if (jd_match_lifted(c, a, l, 0, &k)) return -1;
            if (k != l->count)
                return jd_fail(c, "lifted array %zu: matched %zu of %zu numbers", idx, k,
                               l->count);
            return 0;
        }
    }
    if (json_typeof(a) != json_typeof(b))
        return jd_fail(c, "jansson has a %s, the scanner's document a %s", jd_type(a),
                       jd_type(b));
    size_t mark = strlen(c->path);
    switch (json_typeof(a)) {
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b))
            return jd_fail(c, "objects of %zu and %zu members", json_object_size(a),
                           json_object_size(b));
        const char *key;
        json_t *va;
        json_object_foreach((json_t *)a, key, va)
        {
            const json_t *vb = json_object_get(b, key);
            srv_pointer_push(c->path, sizeof c->path, key, strlen(key));
            if (!vb) return jd_fail(c, "member missing from the scanner's document");
            if (jd_same(c, va, vb, 1)) return -1;
            c->path[mark] = '\0';
        }
        return 0;
    }
    case JSON_ARRAY:
        if (json_array_size(a) != json_array_size(b))
            return jd_fail(c, "arrays of %zu and %zu elements", json_array_size(a),
                           json_array_size(b));
        if (member && jd_liftable(a))
            return jd_fail(c, "a liftable array was left to jansson");
        for (size_t i = 0; i < json_array_size(a); i++) {
            srv_pointer_push_index(c->path, sizeof c->path, i);
            if (jd_same(c, json_array_get(a, i), json_array_get(b, i), 0)) return -1;
            c->path[mark] = '\0';
        }
        return 0;
    case JSON_STRING:
        if (json_string_length(a) != json_string_length(b) ||
            memcmp(json_string_value(a), json_string_value(b), json_string_length(a)))
            return jd_fail(c, "the strings differ");
        return 0;
    case JSON_INTEGER:
    case JSON_REAL:
        if (!jd_same_bits(json_number_value(a), json_number_value(b)))
            return jd_fail(c, "numbers %a and %a", json_number_value(a),
                           json_number_value(b));
        return 0;
    default:
        return 0; /* true, false, null: the type says it all */
    }
}

/* Runs doc through both paths (see the top of the file) and compares. */
static void jd_run(const char *doc, size_t len, int order, jd_result *r)
{
    memset(r, 0, sizeof *r);
    json_t *a = json_loadb(doc, len, JD_FLAGS, &r->a_err), *b = NULL;
    r->a_ok = a != NULL;
    srv_scan scan;
    memset(&scan, 0, sizeof scan);
    scan.max_values = 0; /* no limit */
    if (srv_scan_body(doc, len, &scan, &r->err)) {
        r->b_stage = 1;
    } else {
        if (order == JD_PARSE_REVERSE) {
            for (size_t k = scan.n_chunks; k-- > 0;) srv_scan_parse(&scan, k, k + 1);
        } else {
            srv_scan_parse(&scan, 0, scan.n_chunks);
        }
        if (srv_scan_finish(&scan, &r->err)) {
            r->b_stage = 2;
        } else {
            b = json_loadb(scan.text, scan.text_len, JD_FLAGS | JSON_ALLOW_NUL,
                           &r->b_err);
            if (!b) {
                /* as the codec does: where the error is in the original body */
                int line, column;
                size_t at = srv_scan_original_offset(&scan, (size_t)r->b_err.position,
                                                     &line, &column);
                if (at > len || line < 1 || column < 0) {
                    snprintf(r->why, sizeof r->why,
                             "srv_scan_original_offset(%d) gave byte %zu, line %d, "
                             "column %d in a %zu-byte body",
                             r->b_err.position, at, line, column, len);
                    r->verdict = JD_MISMATCH;
                }
                r->b_stage = 3;
            } else if (!scan.complete) {
                json_decref(b);
                b = NULL;
                r->b_stage = 4;
            }
        }
    }
    r->b_ok = b != NULL;
    r->n_arrays = scan.n_arrays;
    r->n_values = scan.n_values;
    r->n_chunks = scan.n_chunks;
    for (size_t k = 0; k < scan.n_arrays; k++)
        if (scan.arrays[k].count > 65536) r->n_large++;
    if (r->verdict == JD_MISMATCH) {
        /* srv_scan_original_offset above */
    } else if (r->a_ok && r->b_ok) {
        jd_ctx c;
        memset(&c, 0, sizeof c);
        c.scan = &scan;
        c.used = calloc(scan.n_arrays ? scan.n_arrays : 1, sizeof *c.used);
        c.why = r->why;
        c.why_cap = sizeof r->why;
        int rc = c.used ? jd_same(&c, a, b, 0) : -1;
        for (size_t k = 0; rc == 0 && k < scan.n_arrays; k++)
            if (c.used[k] != 1)
                rc = jd_fail(&c, "lifted array %zu is referenced %u times", k, c.used[k]);
        free(c.used);
        r->verdict = rc ? JD_MISMATCH : JD_SAME_ACCEPT;
    } else if (!r->a_ok && !r->b_ok) {
        r->verdict = JD_SAME_REJECT;
    } else if (r->a_ok && r->b_stage == 1 &&
               (!strcmp(r->err.code, "nesting_too_deep") ||
                (!strcmp(r->err.code, "malformed_json") && memchr(doc, 0, len)))) {
        r->verdict = JD_EXPECTED;
    } else if (r->a_ok) {
        r->verdict = JD_MISMATCH;
        if (r->b_stage == 4)
            snprintf(r->why, sizeof r->why,
                     "jansson accepts the body but the scanner stopped at byte %zu",
                     scan.stop);
        else if (r->b_stage == 3)
            snprintf(r->why, sizeof r->why,
                     "jansson accepts the body but not the compacted text: %s "
                     "(position %d)",
                     r->b_err.text, r->b_err.position);
        else
            snprintf(r->why, sizeof r->why,
                     "jansson accepts but the scanner refuses (stage %d): %d %s at "
                     "\"%s\": %s",
                     r->b_stage, r->err.status, r->err.code, r->err.path, r->err.message);
    } else {
        r->verdict = JD_MISMATCH;
        snprintf(r->why, sizeof r->why,
                 "jansson refuses (%s, line %d column %d) but the scanner path accepts",
                 r->a_err.text, r->a_err.line, r->a_err.column);
    }
    json_decref(a);
    json_decref(b);
    srv_scan_free(&scan);
}

#endif
