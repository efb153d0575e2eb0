/* convert.c - dtype conversions of binary tensors: float32 and int32 bytes to
 * doubles, doubles to float32 bytes.  They run over whole tensors (millions of
 * elements), so they are compiled at -O3 for AVX2 and the baseline (as the
 * core's kernels are) and vectorize; conversions are exact or IEEE rounding
 * either way, so both clones give the same bits. */
#include "srv.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(LOSS_NO_CLONES)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

CLONES static void widen_f32(double *restrict d, const unsigned char *restrict s,
                             size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float f;
        memcpy(&f, s + 4 * i, 4);
        d[i] = (double)f;
    }
}

CLONES static void widen_i32(double *restrict d, const unsigned char *restrict s,
                             size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int32_t v;
        memcpy(&v, s + 4 * i, 4);
        d[i] = (double)v;
    }
}

CLONES static void narrow_f32(unsigned char *restrict d, const double *restrict s,
                              size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float f = (float)s[i];
        memcpy(d + 4 * i, &f, 4);
    }
}

/* The clones stay in this file: callers see plain functions. */
void srv_widen_float32(double *d, const void *s, size_t n)
{
    widen_f32(d, s, n);
}

void srv_widen_int32(double *d, const void *s, size_t n)
{
    widen_i32(d, s, n);
}

void srv_narrow_float32(void *d, const double *s, size_t n)
{
    narrow_f32(d, s, n);
}
