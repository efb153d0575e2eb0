/* numtables.h - private to src/server: the power tables numfmt.c uses, generated
 * by gen_numtables.py into numtables.c. */
#ifndef SRV_NUMTABLES_H
#define SRV_NUMTABLES_H

#include <stdint.h>

#define SRV_POW5_MIN   (-342)
#define SRV_POW5_MAX   324
#define SRV_POW5_COUNT (SRV_POW5_MAX - SRV_POW5_MIN + 1)
/* srv_pow5_128[q - SRV_POW5_MIN] = {high, low} 64-bit halves of 5^q's leading 128 bits */
extern const uint64_t srv_pow5_128[SRV_POW5_COUNT][2];

#endif
