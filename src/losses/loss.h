/*
 * loss.h - the lossd core: losses, gradients, reductions and objectives on plain
 * double arrays.  This is the library's only public header.  It knows nothing of
 * HTTP or JSON.
 *
 * Vocabulary (the seed's): a *loss* is per example (or per element for element-wise
 * losses), the *cost* reduces the losses over the batch, the *objective* adds task
 * weighting and regularization penalties.
 *
 * Conventions
 *  - Every function that can fail returns 0 or a negative LOSS_E* status and, when
 *    given a loss_error, fills it with the status, a message for people and where the
 *    problem is (a parameter or input name plus a flat element index).
 *  - Memory is the caller's: tensors are borrowed (the core never frees them) and
 *    outputs go to caller-provided buffers.  The only allocation is the small
 *    per-plan block table made by loss_plan_init and released by loss_plan_free.
 *  - On error, outputs are defined: scalar results are set to 0 before returning.
 *  - Results are bit-for-bit reproducible: reductions use fixed-size blocks, pairwise
 *    summation inside a block and a pairwise sum over the blocks in index order, so
 *    evaluating the blocks in one call or in many calls on many threads gives the
 *    same bits.
 */
#ifndef LOSS_H
#define LOSS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define LOSS_API __attribute__((visibility("default")))
#else
#define LOSS_API
#endif

#define LOSS_MAX_RANK   8 /* dimensions of one tensor */
#define LOSS_MAX_INPUTS 4 /* inputs of one loss */
#define LOSS_MAX_PARAMS 8 /* parameters of one loss or penalty */
#define LOSS_MAX_AUX    2 /* extra per-term sums (accuracy, components) */

/* Status codes: X(NAME, value, stable snake_case code, description).  The code is
 * what the server returns as "error.code"; it never changes once published. */
#define LOSS_STATUS_MAP(X)                                                             \
    X(OK, 0, "ok", "success")                                                          \
    X(ENOMEM, -1, "out_of_memory", "out of memory")                                    \
    X(EINVAL, -2, "invalid_argument", "invalid argument to a lossd core function")     \
    X(EUNKNOWN_LOSS, -3, "unknown_loss", "unknown loss")                               \
    X(EUNKNOWN_PARAM, -4, "unknown_parameter", "unknown parameter")                    \
    X(EPARAM_TYPE, -5, "invalid_parameter", "parameter has the wrong type")            \
    X(EPARAM_RANGE, -6, "parameter_out_of_range", "parameter out of range")            \
    X(EPARAM_CONFLICT, -7, "conflicting_parameters", "parameters do not fit together") \
    X(EMISSING_INPUT, -8, "missing_input", "a required input is missing")              \
    X(EUNKNOWN_INPUT, -9, "unknown_input", "unknown input")                            \
    X(ERANK, -10, "invalid_rank", "tensor has the wrong number of dimensions")         \
    X(ESHAPE, -11, "shape_mismatch", "tensor shapes do not match")                     \
    X(ENONFINITE, -12, "non_finite_value", "value is NaN or infinite")                 \
    X(ECLASS_INDEX, -13, "invalid_class_index", "class index is not a valid class")    \
    X(EPROBABILITY, -14, "probability_out_of_range", "probability outside [0, 1]")     \
    X(ELABEL, -15, "invalid_label", "label outside the allowed set")                   \
    X(ENEGATIVE_WEIGHT, -16, "negative_weight", "weight is negative")                  \
    X(EZERO_WEIGHT, -17, "zero_total_weight", "mean over zero total weight")           \
    X(ETOO_LARGE, -18, "too_large", "tensor is too large")                             \
    X(EOVERFLOW, -19, "result_not_finite", "result is not representable")              \
    X(EUNKNOWN_KIND, -20, "unknown_kind", "unknown penalty or weighting kind")         \
    X(EMISSING_PARAM, -21, "missing_parameter", "a required parameter is missing")

typedef enum loss_status {
#define LOSS_STATUS_ENUM_(name, value, code, text) LOSS_##name = value,
    LOSS_STATUS_MAP(LOSS_STATUS_ENUM_)
#undef LOSS_STATUS_ENUM_
} loss_status;

/* The description of a status ("shape mismatch"...); "unknown status" otherwise. */
LOSS_API const char *loss_strerror(int status);
/* The stable snake_case code of a status ("shape_mismatch"...). */
LOSS_API const char *loss_status_code(int status);

/* Where an error is.  The server turns this into a JSON Pointer. */
typedef enum loss_where {
    LOSS_AT_NONE = 0,
    LOSS_AT_PARAM,   /* a parameter of a loss, penalty or weighting: name (+ index) */
    LOSS_AT_INPUT,   /* an input tensor: name + flat element index */
    LOSS_AT_WEIGHTS, /* the sample weights: flat element index */
    LOSS_AT_REDUCTION
} loss_where;

typedef struct loss_error {
    int code;          /* a LOSS_E* status, LOSS_OK when there is no error */
    loss_where where;  /* what the name and index refer to */
    char name[128];    /* parameter or input name, "" when none (cut at 127 bytes) */
    long long index;   /* flat (row-major) element index, -1 when not applicable */
    char message[256]; /* for people, e.g. "inputs.targets has shape [3] but ..." */
} loss_error;

/* A tensor: borrowed row-major elements.  rank 0 is a scalar (one element).
 * The elements are doubles at data or, for the inputs of a plan (not weights or
 * parameters), float32 values at f32: native byte order, any alignment.  The
 * core widens float32 inputs a few hundred at a time as it goes (exactly: every float
 * is a double), so a float32 batch is never copied whole and gives the same bits
 * as its widened copy would. */
typedef struct loss_tensor {
    const double *data;          /* NULL: the input is absent (unless f32 is set) */
    size_t rank;                 /* <= LOSS_MAX_RANK */
    size_t shape[LOSS_MAX_RANK]; /* dimensions, row-major */
    const void *f32;             /* float32 elements instead of data (inputs only) */
} loss_tensor;

/* float32 <-> double for n elements; the float32 side is native byte order at any
 * alignment.  Widening is exact, narrowing rounds to nearest. */
LOSS_API void loss_widen_f32(double *d, const void *s, size_t n);
LOSS_API void loss_narrow_f32(void *d, const double *s, size_t n);

/* Element count of t, or (size_t)-1 when the product overflows. */
LOSS_API size_t loss_tensor_size(const loss_tensor *t);

/* A borrowed vector parameter (class_weights, alpha...). */
typedef struct loss_vec {
    const double *data;
    size_t len;
} loss_vec;

/* ---- Descriptors: one table drives the catalog, validation and docs ---- */

typedef enum loss_param_type {
    LOSS_PARAM_NUMBER,          /* a finite double within [min, max] */
    LOSS_PARAM_BOOL,            /* true / false */
    LOSS_PARAM_ENUM,            /* one of choices[] */
    LOSS_PARAM_INTEGER,         /* an integral double within [min, max] */
    LOSS_PARAM_VECTOR,          /* a vector of finite doubles >= min */
    LOSS_PARAM_NUMBER_OR_VECTOR /* a number in [min, max], or a vector of numbers >= vmin
                                 */
} loss_param_type;

/* The JSON type of a parameter type: "number", "boolean", "string", "integer",
 * "array" or "number_or_array" (what GET /v1/losses reports). */
LOSS_API const char *loss_param_type_name(loss_param_type type);

/* Range flags. */
#define LOSS_MIN_EXCLUSIVE 1u
#define LOSS_MAX_EXCLUSIVE 2u

typedef struct loss_param_desc {
    const char *name;
    loss_param_type type;
    const char *doc;            /* one sentence for the catalog */
    int has_default;            /* 0: optional, absent means "none" (JSON null) */
    double def;                 /* default; for ENUM the index into choices */
    double min, max;            /* range for NUMBER/INTEGER and the number form */
    unsigned flags;             /* LOSS_MIN_EXCLUSIVE, LOSS_MAX_EXCLUSIVE */
    double vmin;                /* lower bound (inclusive) of vector elements */
    const char *const *choices; /* ENUM: NULL-terminated */
    size_t offset;              /* scalar field inside the spec struct */
    size_t vec_offset;          /* loss_vec field for VECTOR / NUMBER_OR_VECTOR */
} loss_param_desc;

typedef struct loss_input_desc {
    const char *name;
    const char *shape;  /* for people, e.g. "[N,K]" or "same as predictions" */
    int differentiable; /* gradients are returned for this input */
    const char *doc;
} loss_input_desc;

struct loss__ops; /* private: kernels and validation hooks */

typedef struct loss_desc {
    const char *name;    /* "huber" */
    const char *family;  /* "regression", "classification", "embedding", "generative" */
    const char *summary; /* one sentence */
    const char *formula; /* the per-example loss, as in the contract */
    const char *losses_shape;      /* shape of the per-example losses, for people */
    int has_accuracy;              /* metrics.accuracy is reported */
    const char *const *components; /* NULL-terminated names, or NULL */
    size_t n_params;
    const loss_param_desc *params;
    size_t n_inputs;
    const loss_input_desc *inputs;
    const struct loss__ops *ops;
} loss_desc;

/* The catalog, in a fixed order. */
LOSS_API size_t loss_count(void);
LOSS_API const loss_desc *loss_at(size_t i); /* NULL when i >= loss_count() */
LOSS_API const loss_desc *loss_find(const char *name);
/* Index of a parameter or input by name, or -1. */
LOSS_API int loss_param_index(const loss_desc *d, const char *name);
LOSS_API int loss_input_index(const loss_desc *d, const char *name);
/* Like loss_input_index, but an unknown name is LOSS_EUNKNOWN_INPUT with a message
 * that lists the loss's inputs. */
LOSS_API int loss_input_bind(const loss_desc *d, const char *name, size_t *index,
                             loss_error *err);

/* ---- Loss specs: a loss with its parameters resolved ---- */

enum { LOSS_FROM_PROBABILITIES = 0, LOSS_FROM_LOGITS = 1 };
enum { LOSS_LIKELIHOOD_BERNOULLI = 0, LOSS_LIKELIHOOD_GAUSSIAN = 1 };

/* Every parameter of every loss has a field here; a descriptor says which fields a
 * loss reads (loss_param_desc.offset).  Initialise with loss_spec_init. */
typedef struct loss_spec {
    const loss_desc *desc;
    unsigned given;   /* bit i: parameter i was set by the caller */
    unsigned present; /* bit i: parameter i has a value (set, or defaulted) */
    double delta, margin, pos_weight, label_smoothing, gamma, beta, sigma, alpha;
    double ignore_index;
    int from, likelihood, squared;
    loss_vec class_weights, alpha_vec;
} loss_spec;

/* Resolves name and fills in the defaults.  LOSS_EUNKNOWN_LOSS if there is no such
 * loss. */
LOSS_API int loss_spec_init(loss_spec *s, const char *name, loss_error *err);
/* Set one parameter.  LOSS_EUNKNOWN_PARAM, LOSS_EPARAM_TYPE when the parameter has
 * another type, LOSS_EPARAM_RANGE when the value is out of range.  Vectors are
 * borrowed until the spec is no longer used.  set_none (JSON null) is the same as
 * not setting the parameter: it takes its default again, or none if it has none. */
LOSS_API int loss_spec_set_number(loss_spec *s, const char *param, double v,
                                  loss_error *err);
LOSS_API int loss_spec_set_bool(loss_spec *s, const char *param, int v, loss_error *err);
LOSS_API int loss_spec_set_string(loss_spec *s, const char *param, const char *v,
                                  loss_error *err);
LOSS_API int loss_spec_set_vector(loss_spec *s, const char *param, const double *v,
                                  size_t n, loss_error *err);
LOSS_API int loss_spec_set_none(loss_spec *s, const char *param, loss_error *err);

/* The resolved value of parameter i of s->desc, for echoing it back. */
typedef struct loss_value {
    loss_param_type type;
    int present;        /* 0: "none" */
    int is_vector;      /* VECTOR, or NUMBER_OR_VECTOR given as a vector */
    double number;      /* NUMBER, INTEGER, BOOL (0/1) */
    const char *string; /* ENUM */
    loss_vec vec;
} loss_value;
LOSS_API int loss_spec_get(const loss_spec *s, size_t i, loss_value *out);

/* Generic parameter setters over any descriptor table and struct (used for the
 * loss specs above and for penalties).  base points at the struct that the
 * descriptors' offsets refer to; given and present point at its bit sets. */
typedef struct loss_param_set {
    const loss_param_desc *params;
    size_t n_params;
    void *base;
    unsigned *given, *present;
} loss_param_set;
LOSS_API int loss_params_set_number(const loss_param_set *ps, const char *param, double v,
                                    loss_error *err);
LOSS_API int loss_params_set_bool(const loss_param_set *ps, const char *param, int v,
                                  loss_error *err);
LOSS_API int loss_params_set_string(const loss_param_set *ps, const char *param,
                                    const char *v, loss_error *err);
LOSS_API int loss_params_set_vector(const loss_param_set *ps, const char *param,
                                    const double *v, size_t n, loss_error *err);
LOSS_API int loss_params_set_none(const loss_param_set *ps, const char *param,
                                  loss_error *err);
LOSS_API int loss_params_get(const loss_param_set *ps, size_t i, loss_value *out);

/* ---- Plans: one loss on one batch, validated and ready to evaluate ---- */

typedef enum loss_reduction { LOSS_MEAN = 0, LOSS_SUM = 1 } loss_reduction;

/* Public fields are marked; the rest is private to the core. */
typedef struct loss_plan {
    const loss_desc *desc;              /* public */
    loss_spec spec;                     /* public: the resolved parameters */
    loss_reduction reduction;           /* public */
    size_t n;                           /* public: batch size N */
    size_t n_terms;                     /* public: number of loss terms (losses[]) */
    size_t losses_rank;                 /* public: shape of losses[] */
    size_t losses_shape[LOSS_MAX_RANK]; /* public */
    size_t block;                       /* public: terms per block */
    size_t n_blocks;                    /* public: blocks to evaluate */
    size_t input_size[LOSS_MAX_INPUTS]; /* public: elements of each input */

    /* private */
    loss_tensor in[LOSS_MAX_INPUTS];
    const double *weights; /* NULL: unweighted */
    int weights_per_term;  /* 1: one weight per term, 0: one per example */
    int elementwise;       /* 1: one term per element of input 0 */
    int narrow;            /* 1: some input is float32 (widened block by block) */
    int mode;              /* loss-specific variant (index/probability targets...) */
    size_t term_len;       /* elements per term in row inputs (K, D...) */
    size_t per_example;    /* terms per example (element-wise losses) */
    size_t k, d, z;        /* classes, features, latent size */
    size_t n_sums;         /* 1 + aux sums */
    double den;            /* sum of term weights (the mean's denominator) */
    double grad_factor;    /* extra gradient multiplier (objectives) */
    double gscale;         /* grad_factor / den, or grad_factor for sums */
    double *sums;          /* owned: n_sums x n_blocks block sums */
} loss_plan;

/* Validates spec and inputs and prepares the evaluation.  inputs[] has
 * spec->desc->n_inputs tensors in descriptor order; weights may be NULL.  Checks
 * shapes, parameter combinations, finiteness, labels, class indices,
 * probabilities, weights, and a mean over zero total weight.  On success the plan
 * owns a small block table: release it with loss_plan_free (which accepts a plan
 * that failed to initialise, and a zeroed one). */
LOSS_API int loss_plan_init(loss_plan *p, const loss_spec *spec,
                            const loss_tensor *inputs, const loss_tensor *weights,
                            loss_reduction reduction, loss_error *err);
LOSS_API void loss_plan_free(loss_plan *p);

/* Multiplies every gradient by factor (an objective's task weight).  Call before
 * evaluating. */
LOSS_API void loss_plan_scale_gradients(loss_plan *p, double factor);

/* Caller-provided outputs.  losses: p->n_terms doubles or NULL.  grads[i]:
 * p->input_size[i] doubles for a differentiable input i, or NULL to skip it.
 * The _f32 twins take a result as float32 instead (rounded to nearest; native
 * byte order, any alignment), written a few hundred at a time without a double copy
 * of the whole array; give each result one way, not both.  A gradient may be
 * written over its own input, grads[i] over inputs[i].data or grads_f32[i] over
 * inputs[i].f32: the terms of a block are evaluated a few at a time, the inputs
 * of those terms all read (widened, or copied) before any of their results is
 * written, and a result is written only over the elements of its own terms. */
typedef struct loss_outputs {
    double *losses;
    double *grads[LOSS_MAX_INPUTS];
    void *losses_f32;
    void *grads_f32[LOSS_MAX_INPUTS];
} loss_outputs;

/* Evaluates blocks [b0, b1): writes their losses and gradients and records their
 * partial sums in the plan.  Calls on disjoint block ranges may run concurrently.
 * LOSS_ENOMEM when a plan with float32 inputs or outputs finds no memory for the
 * widened copy of a few terms. */
LOSS_API int loss_eval_blocks(loss_plan *p, size_t b0, size_t b1,
                              const loss_outputs *out);

typedef struct loss_result {
    double cost;
    double accuracy;     /* valid when has_accuracy */
    int has_accuracy;    /* 0 when the loss has none or the total weight is 0 */
    size_t n_components; /* desc->components */
    double components[3];
    double total_weight; /* the mean's denominator */
} loss_result;

/* Combines the block sums after every block was evaluated.  LOSS_EOVERFLOW when
 * the cost is not finite. */
LOSS_API int loss_finish(const loss_plan *p, loss_result *r, loss_error *err);

/* loss_eval_blocks over every block, then loss_finish. */
LOSS_API int loss_eval(loss_plan *p, const loss_outputs *out, loss_result *r,
                       loss_error *err);

/* Deterministic pairwise sum of x[0..n). */
LOSS_API double loss_sum(const double *x, size_t n);

/* ---- Objectives: task weighting ---- */

typedef enum loss_weighting {
    LOSS_WEIGHTING_FIXED = 0, /* sum_i w_i L_i */
    LOSS_WEIGHTING_LOG_SIGMA =
        1, /* sum_i L_i / (2 sigma_i^2) + log sigma_i, s = log sigma */
    LOSS_WEIGHTING_LOG_VARIANCE = 2 /* sum_i 0.5 e^-s L_i + 0.5 s, s = log sigma^2 */
} loss_weighting;

/* Task weighting over n task costs.  param[i] is the fixed weight w_i (>= 0) or the
 * learned s_i.  Outputs (each n doubles, any may be NULL): the effective weight of
 * L_i (w_i, or 1/(2 sigma_i^2)), the task's contribution to the objective, dJ/ds_i
 * (uncertainty only; 0 for fixed) and the closed-form optimal sigma_i^2 (= L_i;
 * NaN when L_i <= 0 has no optimum).  *data_term is the sum of the contributions. */
typedef struct loss_weighting_out {
    double *effective_weight;
    double *contribution;
    double *grad_s;
    double *optimal_sigma2;
    double data_term;
} loss_weighting_out;
LOSS_API int loss_weighting_eval(loss_weighting scheme, size_t n, const double *cost,
                                 const double *param, loss_weighting_out *out,
                                 loss_error *err);
/* The effective weight alone (what task gradients are scaled by). */
LOSS_API double loss_weighting_factor(loss_weighting scheme, double param);

/* ---- Objectives: regularization penalties ---- */

typedef enum loss_penalty_kind {
    LOSS_PENALTY_L2 = 0,         /* (lambda/2) |theta|^2 */
    LOSS_PENALTY_L1 = 1,         /* lambda |theta|_1 */
    LOSS_PENALTY_ELASTIC_NET = 2 /* lambda (rho |theta|_1 + (1-rho)/2 |theta|^2) */
} loss_penalty_kind;

/* The "prior" parameter (present only when given): lambda = 1/sigma² or 1/b. */
enum { LOSS_PRIOR_GAUSSIAN = 0, LOSS_PRIOR_LAPLACE = 1 };

/* A penalty's parameters, set through loss_penalty_params(); resolved by
 * loss_penalty_resolve into lambda. */
typedef struct loss_penalty {
    loss_penalty_kind kind;
    unsigned given, present;
    double lambda, sigma, b, l1_ratio, dataset_size;
    int prior; /* LOSS_PRIOR_*, meaningful when the prior parameter is present */
} loss_penalty;

/* Kinds by name ("l2", "l1", "elastic_net"); LOSS_EUNKNOWN_KIND otherwise. */
LOSS_API int loss_penalty_init(loss_penalty *pen, const char *kind, loss_error *err);
LOSS_API const char *loss_penalty_kind_name(loss_penalty_kind kind);
/* The parameter table of penalties, for setting by name and for the docs. */
LOSS_API loss_param_set loss_penalty_params(loss_penalty *pen);
/* Checks the combination (lambda xor a prior that matches the kind, l1_ratio only
 * for elastic_net) and computes the effective lambda (1/sigma^2, 1/b). */
LOSS_API int loss_penalty_resolve(loss_penalty *pen, loss_error *err);
/* Penalty value and gradient (n doubles, may be NULL) of theta[0..n), divided by
 * dataset_size when given.  theta must be finite (LOSS_ENONFINITE otherwise). */
LOSS_API int loss_penalty_eval(const loss_penalty *pen, const double *theta, size_t n,
                               double *penalty, double *grad, loss_error *err);

#ifdef __cplusplus
}
#endif

#endif /* LOSS_H */
