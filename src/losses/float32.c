/* float32.c - float32 <-> double conversions for float32 inputs and outputs.
 * Compiled for AVX2 and the baseline like the kernels; widening is exact and
 * narrowing is IEEE rounding either way, so both clones give the same bits. */
#include "loss_internal.h"

#include <string.h>

LOSS__KERNEL static void widen(double *restrict d, const unsigned char *restrict s,
                               size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float f;
        memcpy(&f, s + 4 * i, 4);
        d[i] = (double)f;
    }
}

LOSS__KERNEL static void narrow(unsigned char *restrict d, const double *restrict s,
                                size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float f = (float)s[i];
        memcpy(d + 4 * i, &f, 4);
    }
}

/* The clones stay in this file: callers see plain functions. */
void loss_widen_f32(double *d, const void *s, size_t n)
{
    widen(d, s, n);
}

void loss_narrow_f32(void *d, const double *s, size_t n)
{
    narrow(d, s, n);
}
