/* convert.c - dtype conversions of binary tensors the core does not take as they
 * are: int32 bytes to doubles (float32 ones are the core's: loss_widen_f32 and
 * loss_narrow_f32).  They run over whole tensors (millions of elements), so they
 * are compiled at -O3 for AVX2 and the baseline (as the core's kernels are) and
 * vectorize; the conversion is exact either way, so both clones give the same
 * bits. */
#include "srv.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(LOSS_NO_CLONES)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

CLONES static void widen_i32(double *restrict d, const unsigned char *restrict s,
                             size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int32_t v;
        memcpy(&v, s + 4 * i, 4);
        d[i] = (double)v;
    }
}

/* The clones stay in this file: callers see plain functions. */
void srv_widen_int32(double *d, const void *s, size_t n)
{
    widen_i32(d, s, n);
}
