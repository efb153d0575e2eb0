/* jscan.c - the body scanner.
 *
 * jansson builds one json_t per number (about 40 bytes and a malloc each), which
 * makes it the bottleneck for large batches.  Before jansson sees a request body,
 * this scanner walks it once and lifts out every array that holds only numbers
 * (nested and rectangular): such an array is checked for its structure and shape
 * here, its numbers are parsed into one double array, and the document jansson
 * parses is a compacted copy of the body in which each lifted array is replaced
 * by a short string "\u0000<k>".  The codec turns those strings back into the
 * lifted arrays.  A real string can never look like a placeholder: the scanner
 * rejects "\u0000" in strings, as jansson does by default.
 *
 * Of a large array only the first chunk of numbers is parsed here; the others
 * are parsed afterwards (srv_scan_parse), which the server spreads over the pool.
 *
 * The scanner also tracks where it is (object keys and array indices), so that a
 * NaN or Infinity token or a number beyond the double range is reported as a 422
 * with its JSON Pointer instead of a bare syntax error.  Anything else that is
 * malformed is left to jansson, whose messages give line and column (mapped back
 * to the original body). */
#include "srv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Arrays with more numbers are parsed in chunks of about this many. */
#define CHUNK_NUMBERS 65536

/* Values left to jansson (outside lifted arrays), at most: each becomes a json_t
 * of 40 bytes or more, and a valid request has few of them (an objective of
 * 10,000 tasks some 150,000); 8 MB of a ragged array would take 200 MB. */
#define MAX_DOM_VALUES 1000000

typedef struct frame {
    char type;       /* '{' or '[' */
    size_t index;    /* arrays: index of the current element */
    const char *key; /* objects: the current key, raw (escapes not decoded) */
    size_t key_len;
} frame;

typedef struct scanner {
    const char *body, *p, *end;
    frame stack[SRV_MAX_DEPTH + 1];
    int depth;
    srv_scan *scan;
    srv_error *err;
    size_t dom_values; /* values outside lifted arrays so far */
} scanner;

static int is_ws(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}
static void skip_ws(scanner *s)
{
    while (s->p < s->end && is_ws(*s->p)) s->p++;
}
/* Character classes for the structure pass: a table lookup per byte. */
enum { C_OTHER, C_WS, C_NUM, C_OPEN, C_CLOSE, C_COMMA, C_START /* '-' or a digit */ };
static const unsigned char cls[256] = {
    [' '] = C_WS,    ['\n'] = C_WS,   ['\r'] = C_WS,   ['\t'] = C_WS,   ['+'] = C_NUM,
    ['.'] = C_NUM,   ['e'] = C_NUM,   ['E'] = C_NUM,   ['-'] = C_START, ['0'] = C_START,
    ['1'] = C_START, ['2'] = C_START, ['3'] = C_START, ['4'] = C_START, ['5'] = C_START,
    ['6'] = C_START, ['7'] = C_START, ['8'] = C_START, ['9'] = C_START, ['['] = C_OPEN,
    [']'] = C_CLOSE, [','] = C_COMMA,
};

/* Characters a JSON number can be made of. */
static int is_numch(char c)
{
    unsigned char k = cls[(unsigned char)c];
    return k == C_NUM || k == C_START;
}

/* The end of the run of number characters that starts at p (not beyond e): 16
 * bytes at a time with SSE2 (every x86-64), a byte at a time otherwise.  The
 * structure pass skips most numbers with it, one pass over a large array that no
 * thread can share. */
static const unsigned char *skip_numch(const unsigned char *p, const unsigned char *e)
{
#if defined(__SSE2__)
    const __m128i below0 = _mm_set1_epi8('0' - 1), above9 = _mm_set1_epi8('9' + 1),
                  dot = _mm_set1_epi8('.'), minus = _mm_set1_epi8('-'),
                  plus = _mm_set1_epi8('+'), lower_e = _mm_set1_epi8('e'),
                  case_bit = _mm_set1_epi8(0x20);
    while (e - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* bytes from 0x80 are negative here: never digits, as they should be */
        __m128i digit =
            _mm_and_si128(_mm_cmpgt_epi8(x, below0), _mm_cmpgt_epi8(above9, x));
        __m128i other = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(x, dot), _mm_cmpeq_epi8(x, minus)),
            _mm_or_si128(_mm_cmpeq_epi8(x, plus),
                         _mm_cmpeq_epi8(_mm_or_si128(x, case_bit), lower_e)));
        unsigned in = (unsigned)_mm_movemask_epi8(_mm_or_si128(digit, other));
        if (in != 0xFFFF) return p + __builtin_ctz(~in);
        p += 16;
    }
#endif
    while (p < e && is_numch((char)*p)) p++;
    return p;
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
        case 'n':
            out[j++] = '\n';
            break;
        case 't':
            out[j++] = '\t';
            break;
        case 'r':
            out[j++] = '\r';
            break;
        case 'b':
            out[j++] = '\b';
            break;
        case 'f':
            out[j++] = '\f';
            break;
        case 'u': {
            if (i + 4 >= n) return j;
            char hex[5] = {k[i + 1], k[i + 2], k[i + 3], k[i + 4], 0};
            unsigned long cp = strtoul(hex, NULL, 16);
            i += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && i + 6 < n && k[i + 1] == '\\' &&
                k[i + 2] == 'u') {
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
        default:
            out[j++] = c;
            break;
        }
    }
    return j;
}

/* The JSON Pointer of the value being scanned (frames 1..depth), or of the
 * container at depth (frames 1..depth-1) with path_to. */
static void path_to(const scanner *s, int depth, char *ptr, size_t cap);
static void current_path(const scanner *s, char *ptr, size_t cap)
{
    path_to(s, s->depth, ptr, cap);
}

static void path_to(const scanner *s, int depth, char *ptr, size_t cap)
{
    ptr[0] = '\0';
    for (int i = 1; i <= depth; i++) {
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

static void set_nonfinite(srv_error *err, const char *ptr, int overflow)
{
    const char *where = ptr[0] ? ptr : "the top-level value";
    if (overflow)
        srv_error_set(err, 422, "non_finite_value", ptr,
                      "%s: the number does not fit a double (it would be infinite)",
                      where);
    else
        srv_error_set(err, 422, "non_finite_value", ptr,
                      "%s: NaN and Infinity are not numbers in JSON; send finite values",
                      where);
}

static int nonfinite(scanner *s, int overflow)
{
    char ptr[256];
    current_path(s, ptr, sizeof ptr);
    set_nonfinite(s->err, ptr, overflow);
    return -1;
}

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = srv_mem_realloc(*p, c * size);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* The numbers the structure pass parses as it goes: the first CHUNK_NUMBERS of an
 * array (while they are valid), so that an array is read once; a larger one's
 * first chunk is then parsed already, and the others are parsed in chunks. */
#define PRE_LOCAL 256

typedef struct prefix {
    double local[PRE_LOCAL];
    double *v;       /* local, or an srv_mem block when the array is longer */
    size_t cap;      /* of v */
    size_t n;        /* the first n numbers of the array, parsed */
    const char *end; /* the text after the n-th */
} prefix;

/* Room in pre for one more number; 0 when there is none (out of memory: the
 * numbers after these are parsed later instead). */
static int prefix_room(prefix *pre)
{
    if (pre->n < pre->cap) return 1;
    if (pre->cap >= CHUNK_NUMBERS) return 0;
    size_t cap = pre->cap * 16 < CHUNK_NUMBERS ? pre->cap * 16 : CHUNK_NUMBERS;
    double *v = pre->v == pre->local ? srv_mem_alloc(cap * sizeof *v)
                                     : srv_mem_realloc(pre->v, cap * sizeof *v);
    if (!v) return 0;
    if (pre->v == pre->local) memcpy(v, pre->local, pre->n * sizeof *v);
    pre->v = v;
    pre->cap = cap;
    return 1;
}

/* Pass 1 over the array at start ('['): its structure, shape and number count;
 * chunk boundaries are recorded every CHUNK_NUMBERS numbers (cuts).  The first
 * numbers are parsed into pre while they are valid (see prefix).  Returns 1 and
 * leaves *after after the array, or 0 when the array is not a rectangular
 * all-number array of rank <= LOSS_MAX_RANK. */
static int structure(const char *start, const char *end, srv_lifted *out,
                     const char **after, size_t *cuts, size_t max_cuts, size_t *n_cuts,
                     prefix *pre)
{
    size_t dims[LOSS_MAX_RANK], count[LOSS_MAX_RANK];
    int known[LOSS_MAX_RANK] = {0};
    int rank = -1, d = 0, need = 0; /* need: an element must follow (after ',') */
    size_t total = 0;
    const unsigned char *p = (const unsigned char *)start + 1,
                        *e = (const unsigned char *)end;
    count[0] = 0;
    for (;;) {
        while (p < e && cls[*p] == C_WS) p++;
        if (p >= e) return 0;
        unsigned char k = cls[*p];
        if (k == C_CLOSE) {
            if (need) return 0;
            if (count[d] == 0) {
                if (rank < 0) rank = d + 1;
                if (rank != d + 1) return 0;
            }
            if (known[d] && count[d] != dims[d]) return 0;
            dims[d] = count[d];
            known[d] = 1;
            p++;
            if (--d < 0) break;
            count[d]++;
        } else if (k == C_OPEN) {
            if (d + 1 >= LOSS_MAX_RANK || (rank >= 0 && d + 1 >= rank)) return 0;
            d++;
            count[d] = 0;
            p++;
            need = 0;
            continue;
        } else if (k == C_START) {
            if (rank != d + 1) {
                if (rank >= 0) return 0;
                rank = d + 1;
            }
            if (total % CHUNK_NUMBERS == 0 && *n_cuts < max_cuts)
                cuts[(*n_cuts)++] = (size_t)((const char *)p - start);
            const unsigned char *q = NULL;
            if (pre->n == total && prefix_room(pre)) {
                int of = 0;
                q = (const unsigned char *)srv_parse_number((const char *)p, end,
                                                            &pre->v[total], &of);
                if (q && !of && (q == e || !is_numch((char)*q))) {
                    pre->n++;
                    pre->end = (const char *)q;
                } else {
                    q = NULL; /* not a valid number: the generic walk will say why */
                }
            }
            if (q) {
                p = q;
            } else {
                p = skip_numch(p + 1, e);
            }
            count[d]++;
            total++;
        } else {
            return 0;
        }
        /* after an element: the common case is a comma right after a number */
        if (p < e && *p == ',') {
            p++;
            need = 1;
            continue;
        }
        while (p < e && cls[*p] == C_WS) p++;
        if (p < e && *p == ',') {
            p++;
            need = 1;
        } else if (p < e && *p == ']') {
            need = 0;
        } else {
            return 0;
        }
    }
    if (rank < 1) return 0;
    out->count = total;
    out->rank = (size_t)rank;
    for (int k = 0; k < rank; k++) out->shape[k] = dims[k];
    *after = (const char *)p;
    return 1;
}

/* Pass 2: parses count numbers from text [p, end) (brackets, commas and blanks
 * between them) into dst.  Returns 0, or the 1-based index of the first bad
 * number with *overflow saying whether it was out of range (else malformed). */
static size_t parse_numbers(const char *p, const char *end, double *dst, size_t count,
                            int *overflow)
{
    for (size_t i = 0; i < count; i++) {
        while (p < end && !(*p == '-' || (*p >= '0' && *p <= '9'))) p++;
        int of = 0;
        const char *q = srv_parse_number(p, end, &dst[i], &of);
        /* the number must be its whole token (the grammar's characters are all
         * number characters, so the parser stops where the token would) */
        int whole = q && (q == end || !is_numch(*q));
        if (!whole || of) {
            *overflow = whole && of;
            return i + 1;
        }
        p = q;
    }
    return 0;
}

static int lift_structured(scanner *s, srv_lifted *ap, const char *after,
                           const size_t *cuts, size_t n_cuts, const prefix *pre);

static int lift_array(scanner *s)
{
    srv_lifted a = {0};
    const char *after;
    /* Chunk boundaries: the text offset of every CHUNK_NUMBERS-th number; enough
     * room for any array the body can hold (two bytes per number at least). */
    size_t max_cuts = (size_t)(s->end - s->p) / (2 * CHUNK_NUMBERS) + 2, n_cuts = 0;
    size_t local[64], *cuts = max_cuts <= 64 ? local : malloc(max_cuts * sizeof *cuts);
    if (!cuts) {
        srv_error_set(s->err, 500, "internal_error", "", "out of memory");
        return -1;
    }
    prefix pre;
    pre.v = pre.local;
    pre.cap = PRE_LOCAL;
    pre.n = 0;
    pre.end = s->p;
    int ok =
        structure(s->p, s->end, &a, &after, cuts, max_cuts, &n_cuts, &pre) && a.count > 0;
    /* (an empty array could as well be an empty list of strings: jansson's) */
    int rc = ok ? lift_structured(s, &a, after, cuts, n_cuts, &pre) : 0;
    if (pre.v != pre.local) srv_mem_free(pre.v);
    if (cuts != local) free(cuts);
    return rc;
}

/* The numbers' buffer is sized at the first array for the whole body: its
 * numbers, and as many more per byte, and an eighth, for the rest of the body
 * (a request mostly carries tensors of one size, predictions and targets, whose
 * numbers differ in length), but at most four more arrays of its size (a body
 * that goes on with long strings).  A buffer that doubles below mem.c's large
 * blocks leaves its old copy in malloc's memory: 8 KB of a 1000-element
 * request; room not written costs nothing, and a large block grows in place. */
static size_t values_estimate(const scanner *s, const srv_lifted *a, const char *after)
{
    double per_byte = (double)a->count / (double)(after - s->p);
    size_t more = (size_t)(per_byte * (double)(s->end - after));
    more += more / 8;
    return a->count + (more < 4 * a->count ? more : 4 * a->count);
}

static int lift_structured(scanner *s, srv_lifted *ap, const char *after,
                           const size_t *cuts, size_t n_cuts, const prefix *pre)
{
    srv_scan *sc = s->scan;
    srv_lifted a = *ap;
    if (sc->max_values && sc->n_values + a.count > sc->max_values) {
        srv_error_set(s->err, 413, "too_many_elements", "",
                      "the request has more than %zu numbers (--max-elements)",
                      sc->max_values);
        return -1;
    }
    if (!sc->cap_values) {
        size_t n = values_estimate(s, &a, after);
        if (sc->max_values && n > sc->max_values) n = sc->max_values;
        if (!(sc->values = srv_mem_alloc(n * sizeof(double)))) n = 0;
        sc->cap_values = n;
    }
    if (grow((void **)&sc->values, &sc->cap_values, sc->n_values + a.count,
             sizeof(double)) ||
        grow((void **)&sc->arrays, &sc->cap_arrays, sc->n_arrays + 1,
             sizeof *sc->arrays)) {
        srv_error_set(s->err, 500, "internal_error", "", "out of memory");
        return -1;
    }
    a.offset = sc->n_values;
    a.text_start = (size_t)(s->p - s->body);
    a.text_end = (size_t)(after - s->body);
    if (a.count > CHUNK_NUMBERS) {
        /* Later, in parallel; keep the pointer for its error messages. */
        current_path(s, a.path, sizeof a.path);
        sc->arrays[sc->n_arrays] = a;
        if (grow((void **)&sc->chunks, &sc->cap_chunks, sc->n_chunks + n_cuts,
                 sizeof *sc->chunks)) {
            srv_error_set(s->err, 500, "internal_error", "", "out of memory");
            return -1;
        }
        /* The first chunk is parsed when all its numbers were valid. */
        size_t c = 0;
        if (pre->n == CHUNK_NUMBERS) {
            memcpy(sc->values + a.offset, pre->v, CHUNK_NUMBERS * sizeof(double));
            c = 1;
        }
        for (; c < n_cuts; c++)
            sc->chunks[sc->n_chunks++] = (srv_numchunk){
                sc->n_arrays, a.text_start + cuts[c], 0, c * CHUNK_NUMBERS, 0, 0, 0};
    } else {
        int overflow = 0;
        double *v = sc->values + a.offset;
        memcpy(v, pre->v, pre->n * sizeof *v);
        if (parse_numbers(pre->end, after, v + pre->n, a.count - pre->n, &overflow))
            return 0; /* the generic walk reports the bad number with its pointer */
        sc->arrays[sc->n_arrays] = a;
    }
    sc->n_arrays++;
    sc->n_values += a.count;
    s->p = after;
    return 1;
}

/* Skips the string at s->p ('"').  Returns 0, 1 when the string is unterminated
 * (left to jansson), -1 on "\u0000". */
static int skip_string(scanner *s)
{
    const char *p = s->p + 1, *end = s->end;
    while (p < end) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (!q) return 1;
        const char *b = memchr(p, '\\', (size_t)(q - p));
        if (!b) {
            s->p = q + 1;
            return 0;
        }
        if (b + 1 >= end) return 1;
        if (b[1] == 'u' && end - b >= 6 && memcmp(b + 2, "0000", 4) == 0) {
            s->p = b;
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

/* The key "binary_data_size", however it is escaped. */
static int is_binary_key(const char *k, size_t n)
{
    if (n == 16 && !memcmp(k, "binary_data_size", 16)) return 1;
    if (n < 16 || n > 200 || !memchr(k, '\\', n)) return 0;
    char d[256];
    return decode_key(k, n, d, sizeof d) == 16 && !memcmp(d, "binary_data_size", 16);
}

/* Walks the document; returns 0 when done or when jansson must judge the rest. */
static int walk(scanner *s)
{
    enum { VALUE, AFTER, KEY } state = VALUE;
    srv_error *err = s->err;
    for (;;) {
        skip_ws(s);
        if (s->p >= s->end) {
            /* the whole body walked, or truncated or empty: jansson reports it */
            s->scan->complete = state == AFTER && s->depth == 0;
            return 0;
        }
        char c = *s->p;
        if (state == KEY) {
            if (c != '"') return 0;
            const char *k = s->p + 1;
            int rc = skip_string(s);
            if (rc) return rc < 0 ? -1 : 0;
            s->stack[s->depth].key = k;
            s->stack[s->depth].key_len = (size_t)(s->p - 1 - k);
            if (is_binary_key(k, s->stack[s->depth].key_len)) {
                /* a tensor whose bytes follow the JSON: remember the order */
                srv_scan *sc = s->scan;
                if (grow((void **)&sc->binary_paths, &sc->cap_binary, sc->n_binary + 1,
                         sizeof *sc->binary_paths)) {
                    srv_error_set(err, 500, "internal_error", "", "out of memory");
                    return -1;
                }
                path_to(s, s->depth - 1, sc->binary_paths[sc->n_binary++], 256);
            }
            skip_ws(s);
            if (s->p >= s->end || *s->p != ':') return 0;
            s->p++;
            state = VALUE;
            continue;
        }
        if (state == AFTER) {
            if (s->depth == 0) return 0; /* trailing content is jansson's to judge */
            frame *f = &s->stack[s->depth];
            if (c == ',') {
                s->p++;
                if (f->type == '[') {
                    f->index++;
                    state = VALUE;
                } else {
                    state = KEY;
                }
            } else if (c == (f->type == '[' ? ']' : '}')) {
                s->p++;
                s->depth--;
            } else {
                return 0;
            }
            continue;
        }
        /* VALUE */
        if (++s->dom_values > MAX_DOM_VALUES) { /* a lifted array counts once */
            char ptr[256];
            current_path(s, ptr, sizeof ptr);
            srv_error_set(err, 413, "too_many_elements", ptr,
                          "the request has more than %d JSON values outside arrays of "
                          "numbers (a ragged array, say)",
                          MAX_DOM_VALUES);
            return -1;
        }
        if (c == '{' || c == '[') {
            /* Lift arrays that are object values: an array inside an array that
             * failed to lift is part of that failure, and a top-level array is
             * jansson's to refuse. */
            if (c == '[' && s->depth > 0 && s->stack[s->depth].type == '{') {
                int rc = lift_array(s);
                if (rc < 0) return -1;
                if (rc > 0) {
                    state = AFTER;
                    continue;
                }
            }
            if (s->depth == SRV_MAX_DEPTH) {
                char ptr[256];
                current_path(s, ptr, sizeof ptr);
                srv_error_set(err, 400, "nesting_too_deep", ptr,
                              "the JSON nests deeper than %d levels", SRV_MAX_DEPTH);
                return -1;
            }
            s->depth++;
            s->stack[s->depth] = (frame){c, 0, "", 0};
            s->p++;
            skip_ws(s);
            if (s->p < s->end && *s->p == (c == '[' ? ']' : '}')) {
                s->p++;
                s->depth--;
                state = AFTER;
            } else {
                state = c == '[' ? VALUE : KEY;
            }
            continue;
        }
        if (c == '"') {
            int rc = skip_string(s);
            if (rc) return rc < 0 ? -1 : 0;
            state = AFTER;
            continue;
        }
        if (c == '-' || (c >= '0' && c <= '9')) {
            double v;
            int overflow;
            const char *q = srv_parse_number(s->p, s->end, &v, &overflow);
            if (!q) {
                if (c == '-' && (s->end - s->p) >= 9 &&
                    memcmp(s->p + 1, "Infinity", 8) == 0)
                    return nonfinite(s, 0);
                return 0;
            }
            if (overflow) return nonfinite(s, 1);
            s->p = q;
            state = AFTER;
            continue;
        }
        if (literal(s, "true") || literal(s, "false") || literal(s, "null")) {
            state = AFTER;
            continue;
        }
        if (literal(s, "NaN") || literal(s, "Infinity") || literal(s, "nan") ||
            literal(s, "inf") || literal(s, "infinity"))
            return nonfinite(s, 0);
        return 0;
    }
}

/* Line (from 1) and column (from 0) of byte at of text. */
static void line_column(const char *text, size_t at, int *line, int *column)
{
    int l = 1, c = 0;
    for (size_t i = 0; i < at; i++) {
        if (text[i] == '\n') {
            l++;
            c = 0;
        } else {
            c++;
        }
    }
    *line = l;
    *column = c;
}

int srv_scan_body(const char *body, size_t len, srv_scan *scan, srv_error *err)
{
    scanner s;
    memset(&s, 0, sizeof s);
    s.body = s.p = body;
    s.end = body + len;
    s.scan = scan;
    s.err = err;
    scan->body = body;
    scan->body_len = len;
    /* RFC 8259 allows no NUL byte anywhere, and jansson 2.14 skips one after a
     * number or a literal ("[1\0]" is [1]); refusing them here keeps the
     * placeholders unforgeable. */
    const char *nul = memchr(body, '\0', len);
    if (nul) {
        size_t at = (size_t)(nul - body);
        int line, column;
        line_column(body, at, &line, &column);
        srv_error_set(err, 400, "malformed_json", "",
                      "the body is not valid JSON: a NUL byte (line %d, column %d, "
                      "byte %zu)",
                      line, column, at);
        return -1;
    }
    if (walk(&s)) return -1;
    scan->stop = (size_t)(s.p - body);
    /* Each chunk knows its array; the last chunk of an array ends with it. */
    for (size_t c = 0; c < scan->n_chunks; c++) {
        srv_numchunk *k = &scan->chunks[c];
        const srv_lifted *a = &scan->arrays[k->array];
        int last = c + 1 == scan->n_chunks || scan->chunks[c + 1].array != k->array;
        k->text_end = last ? a->text_end : scan->chunks[c + 1].text_start;
        k->count = (last ? a->count : scan->chunks[c + 1].first) - k->first;
    }
    return 0;
}

void srv_scan_parse(srv_scan *scan, size_t c0, size_t c1)
{
    for (size_t c = c0; c < c1 && c < scan->n_chunks; c++) {
        srv_numchunk *k = &scan->chunks[c];
        const srv_lifted *a = &scan->arrays[k->array];
        int overflow = 0;
        size_t bad =
            parse_numbers(scan->body + k->text_start, scan->body + k->text_end,
                          scan->values + a->offset + k->first, k->count, &overflow);
        k->bad = bad;
        k->overflow = overflow;
    }
}

/* Writes the placeholder "\u0000<k>" (quotes included) at t: 8 bytes and k's
 * digits, within the 24 reserved for it (k counts arrays of a body: < 10^14).
 * Returns its length. */
static size_t placeholder(char *t, size_t k)
{
    static const char head[] = "\"\\u0000"; /* 7 characters */
    size_t n = sizeof head - 1;
    memcpy(t, head, n);
    n += srv_fmt_uint(t + n, k);
    t[n++] = '"';
    return n;
}

int srv_scan_finish(srv_scan *scan, srv_error *err)
{
    /* The first bad number in document order (chunks are in that order). */
    for (size_t c = 0; c < scan->n_chunks; c++) {
        const srv_numchunk *k = &scan->chunks[c];
        if (!k->bad) continue;
        const srv_lifted *a = &scan->arrays[k->array];
        size_t flat = k->first + k->bad - 1, idx[LOSS_MAX_RANK];
        char ptr[256];
        snprintf(ptr, sizeof ptr, "%s", a->path);
        for (size_t d = a->rank; d-- > 0;) {
            idx[d] = flat % a->shape[d];
            flat /= a->shape[d];
        }
        for (size_t d = 0; d < a->rank; d++)
            srv_pointer_push_index(ptr, sizeof ptr, idx[d]);
        if (k->overflow)
            set_nonfinite(err, ptr, 1);
        else
            srv_error_set(err, 400, "malformed_json", ptr,
                          "the body is not valid JSON: a malformed number at %s", ptr);
        return -1;
    }
    /* The document jansson parses: the body with each lifted array replaced by
     * its placeholder. */
    size_t need = scan->body_len + 1, prev = 0;
    for (size_t k = 0; k < scan->n_arrays; k++) { /* (the arrays are disjoint) */
        need -= scan->arrays[k].text_end - scan->arrays[k].text_start;
        need += 24;
    }
    char *t = srv_mem_alloc(need);
    if (!t) {
        srv_error_set(err, 500, "internal_error", "", "out of memory");
        return -1;
    }
    size_t w = 0;
    for (size_t k = 0; k < scan->n_arrays; k++) {
        srv_lifted *a = &scan->arrays[k];
        memcpy(t + w, scan->body + prev, a->text_start - prev);
        w += a->text_start - prev;
        a->compact_start = w;
        w += placeholder(t + w, k);
        a->compact_end = w;
        prev = a->text_end;
    }
    memcpy(t + w, scan->body + prev, scan->body_len - prev);
    w += scan->body_len - prev;
    t[w] = '\0';
    scan->text = t;
    scan->text_len = w;
    return 0;
}

size_t srv_scan_original_offset(const srv_scan *scan, size_t pos, int *line, int *column)
{
    size_t orig = pos;
    for (size_t k = 0; k < scan->n_arrays; k++) {
        const srv_lifted *a = &scan->arrays[k];
        if (a->compact_start >= pos) break;
        orig =
            pos >= a->compact_end ? a->text_end + (pos - a->compact_end) : a->text_start;
    }
    if (orig > scan->body_len) orig = scan->body_len;
    line_column(scan->body, orig, line, column);
    return orig;
}

void srv_scan_free(srv_scan *scan)
{
    srv_mem_free(scan->values);
    srv_mem_free(scan->arrays);
    srv_mem_free(scan->chunks);
    srv_mem_free(scan->text);
    srv_mem_free(scan->binary_paths);
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
