/* fuzz_util.h - shared by the fuzz targets: large inputs from small ones.
 *
 * Arrays of more than 65536 numbers take the scanner's chunked path, but an input
 * that big is slow to mutate.  So an input whose first byte is 0x01 is a
 * template: the rest is copied, except that each "\x02" C UNIT "\x03" (UNIT at
 * most 32 bytes, at most two per input) becomes UNIT repeated 65400 + C times
 * (C a byte: 65400 to 65655 copies, across the first chunk boundary at 65536).
 * E.g. "\x01{\"a\":[\x02\x88" "1,\x03" "2]}" is {"a":[1,1,...,1,2]} with 65537
 * numbers.  Every other input is used as it is. */
#ifndef LOSSD_FUZZ_UTIL_H
#define LOSSD_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FZ_TEMPLATE 0x01
#define FZ_REPEAT   0x02
#define FZ_END      0x03

/* The expansion of a template into a malloc'ed block of exactly *len bytes, or
 * NULL when data is not a template (or out of memory). */
static char *fz_expand(const uint8_t *data, size_t size, size_t *len)
{
    if (size == 0 || data[0] != FZ_TEMPLATE) return NULL;
    /* two passes: the length, then the bytes */
    char *out = NULL;
    for (int pass = 0; pass < 2; pass++) {
        size_t w = 0;
        int repeats = 0;
        for (size_t i = 1; i < size;) {
            const uint8_t *end = NULL;
            if (data[i] == FZ_REPEAT && repeats < 2 && i + 1 < size) {
                size_t lim = size - i - 2 < 33 ? size - i - 2 : 33;
                end = memchr(data + i + 2, FZ_END, lim);
            }
            if (!end) {
                if (pass) out[w] = (char)data[i];
                w++;
                i++;
                continue;
            }
            size_t unit = (size_t)(end - (data + i + 2));
            size_t times = 65400 + (size_t)data[i + 1];
            for (size_t k = 0; k < times; k++) {
                if (pass) memcpy(out + w, data + i + 2, unit);
                w += unit;
            }
            repeats++;
            i = (size_t)(end - data) + 1;
        }
        if (!pass) {
            out = malloc(w ? w : 1);
            if (!out) return NULL;
        }
        *len = w;
    }
    return out;
}

#endif
