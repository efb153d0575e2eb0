/* support.h - helpers shared by the unit tests: building core requests from the
 * reference data's JSON, comparing arrays, random numbers. */
#ifndef LOSSD_TEST_SUPPORT_H
#define LOSSD_TEST_SUPPORT_H

#include "loss.h"
#include "test.h"

#include <jansson.h>

/* A JSON tensor (nested arrays, or {"shape", "data"}) as a flat double array. */
typedef struct tensor_buf {
    loss_tensor t;
    double *data; /* owned */
    size_t size;
} tensor_buf;

int tensor_from_json(const json_t *j, tensor_buf *out);
void tensor_buf_free(tensor_buf *b);

/* One /v1/loss request body decoded for the core. */
typedef struct test_request {
    loss_spec spec;
    tensor_buf in[LOSS_MAX_INPUTS];
    tensor_buf weights;
    int has_weights;
    tensor_buf vecs[LOSS_MAX_PARAMS]; /* vector parameters (borrowed by spec) */
    loss_reduction reduction;
} test_request;

/* Returns 0, or a loss status with err filled. */
int request_from_json(const json_t *body, test_request *r, loss_error *err);
void test_request_free(test_request *r);

/* Reads a whole JSON file; aborts the test on failure. */
json_t *load_json_file(const char *path);

/* |a - b| <= rtol |b| + atol_scale * scale (+ tiny).  Returns 1 when close. */
int close_enough(double a, double b, double rtol, double scale);
/* Compares got[0..n) with the flattened JSON array want; reports the first
 * mismatch under label.  Returns the number of mismatches. */
int compare_array(const char *label, const double *got, const json_t *want, double rtol);

/* xorshift64* random numbers, deterministic per seed. */
typedef struct rng {
    unsigned long long s;
} rng;
double rng_uniform(rng *r); /* [0, 1) */
double rng_normal(rng *r);

#endif
