/* numtables.h - private to src/server: the power tables numfmt.c uses, generated
 * by gen_numtables.py into numtables.c. */
#ifndef SRV_NUMTABLES_H
#define SRV_NUMTABLES_H

#include <stdint.h>

#define SRV_POW5_MIN   (-342)
#define SRV_POW5_MAX   308
#define SRV_POW5_COUNT (SRV_POW5_MAX - SRV_POW5_MIN + 1)
/* srv_pow5_128[q - SRV_POW5_MIN] = {high, low} 64-bit halves of 5^q's leading 128 bits */
extern const uint64_t srv_pow5_128[SRV_POW5_COUNT][2];

typedef struct srv_cached_power {
    uint64_t f; /* normalized significand */
    int16_t e;  /* binary exponent: 10^k ~ f * 2^e */
    int16_t k;  /* decimal exponent */
} srv_cached_power;

#define SRV_CACHED_FIRST (-348)
#define SRV_CACHED_STEP  8
#define SRV_CACHED_COUNT 87
extern const srv_cached_power srv_cached_pow10[SRV_CACHED_COUNT];

#endif
