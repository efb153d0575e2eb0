/* fuzz_jscan.c - libFuzzer target: the body scanner against jansson on arbitrary
 * bytes (the differential of jscan_diff.h; templates of fuzz_util.h make arrays
 * of more than 65536 numbers).  Aborts on any difference but the documented ones
 * of jscan_diff.h: the scanner refuses nesting deeper than 64 levels
 * (nesting_too_deep) where jansson goes on, and any raw NUL byte, which jansson
 * 2.14 skips after a number or a literal. */
#include "fuzz_util.h"
#include "jscan_diff.h"

#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len = size;
    char *big = fz_expand(data, size, &len);
    const char *doc = big ? big : (const char *)data;
    jd_result r;
    /* the chunks in order for some inputs, backwards for the others */
    jd_run(doc, len, size % 2 ? JD_PARSE_REVERSE : JD_PARSE_ALL, &r);
    if (r.verdict == JD_MISMATCH) {
        fprintf(stderr, "fuzz_jscan: jansson and the scanner differ: %s\n", r.why);
        abort();
    }
    free(big);
    return 0;
}
