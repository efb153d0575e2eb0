/* core_bench.c - micro-benchmark of the lossd core: loss + gradient of every loss on
 * about 10^6 elements, against a "memory pass" over the same bytes.
 *
 * For each case the program builds random but valid inputs, a plan (mean
 * reduction, no sample weights) and times loss_eval with the per-term losses and
 * the gradient of every differentiable input requested.  Timing: one warm-up run,
 * then R repetitions (--reps, default 15) with clock_gettime(CLOCK_MONOTONIC); the
 * median is reported in ns per element, where "elements" is the number of elements
 * of the differentiable inputs (the gradient's size).
 *
 * The memory pass is the baseline: one loop that reads every input array and
 * writes every gradient array (g = a - b and the like), timed the same way.  It
 * moves the bytes a loss must move at the least, except the per-term losses array
 * that lossd also writes (n_terms doubles; see lossd_bytes / mempass_bytes).
 *
 * plan_ns is loss_plan_init + loss_plan_free (validation of every input and the
 * mean's denominator), timed separately, single-threaded; it is not in lossd_ns.
 *
 * --threads T splits the blocks [0, n_blocks) into T contiguous ranges evaluated
 * by T threads (the calling thread is one of them) with loss_eval_blocks, then
 * loss_finish; the memory pass is split the same way.  T = 1 calls loss_eval.
 *
 * Data: u = splitmix64(seed + (i + 1) * golden) / 2^64 for element i, mapped to
 * uniform [lo, hi), labels (u < 0.5 ? lo : hi) or class indices floor(u * K).
 * The recipes and seeds are in the --json output so that tests/bench/bench_core.py
 * rebuilds the very same arrays for PyTorch and checks that the costs agree.
 *
 * Output: one line per case, "case=mse elements=1000000 lossd_ns=... mempass_ns=...",
 * or with --json a JSON array of objects.  Not a ctest test.
 */
#define _POSIX_C_SOURCE 200809L

#include "loss.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_THREADS 256

/* ---- data recipes ---- */

enum { GEN_UNIFORM, GEN_LABELS, GEN_INDEX };
static const char *const gen_names[] = {"uniform", "labels", "index"};

typedef struct input_def {
    const char *name;
    size_t rank, shape[2];
    int kind;    /* GEN_*                                              */
    double a, b; /* uniform [a, b); labels a (u < 0.5) or b; index: K = a */
} input_def;

/* Memory passes, by the inputs' roles (descriptor order). */
enum {
    MP_SUB,    /* [x, y] same size:          g0 = x - y                          */
    MP_ROWS,   /* [x [N,K], t [N]]:          g0 = 2x, sum(t)                     */
    MP_PAIR,   /* [x1, x2, s [N]]:           d = x1 - x2, g0 = d, g1 = -d, sum(s) */
    MP_TRIPLE, /* [a, p, n]:                 u = a-p, v = a-n, ga = u-v, gp = -u, gn = v
                */
    MP_ELBO    /* [x, r [N,D], mu, lv [N,Z]]: gr = r - x; gmu = mu, glv = 0.5 lv   */
};

typedef struct case_def {
    const char *name, *loss;
    const char *param, *value; /* one string parameter, or NULL */
    int mp;                    /* MP_* */
    size_t n_in;
    input_def in[LOSS_MAX_INPUTS]; /* by name; any order */
} case_def;

#define N1 1000000
#define NE 125000 /* embedding rows: [NE, 8] = 10^6 elements */
#define NV 100000 /* ELBO rows */

static const case_def cases[] = {
    {"mse",
     "mse",
     NULL,
     NULL,
     MP_SUB,
     2,
     {{"predictions", 1, {N1, 0}, GEN_UNIFORM, -2, 2},
      {"targets", 1, {N1, 0}, GEN_UNIFORM, -2, 2}}},
    {"mae",
     "mae",
     NULL,
     NULL,
     MP_SUB,
     2,
     {{"predictions", 1, {N1, 0}, GEN_UNIFORM, -2, 2},
      {"targets", 1, {N1, 0}, GEN_UNIFORM, -2, 2}}},
    {"huber",
     "huber",
     NULL,
     NULL,
     MP_SUB,
     2,
     {{"predictions", 1, {N1, 0}, GEN_UNIFORM, -2, 2},
      {"targets", 1, {N1, 0}, GEN_UNIFORM, -2, 2}}},
    {"bce",
     "bce",
     NULL,
     NULL,
     MP_SUB,
     2,
     {{"predictions", 1, {N1, 0}, GEN_UNIFORM, 0.01, 0.99},
      {"targets", 1, {N1, 0}, GEN_LABELS, 0, 1}}},
    {"bce_logits",
     "bce",
     "from",
     "logits",
     MP_SUB,
     2,
     {{"predictions", 1, {N1, 0}, GEN_UNIFORM, -4, 4},
      {"targets", 1, {N1, 0}, GEN_LABELS, 0, 1}}},
    {"cross_entropy",
     "cross_entropy",
     NULL,
     NULL,
     MP_ROWS,
     2,
     {{"predictions", 2, {1000, 1000}, GEN_UNIFORM, -4, 4},
      {"targets", 1, {1000, 0}, GEN_INDEX, 1000, 0}}},
    {"focal_binary",
     "focal",
     NULL,
     NULL,
     MP_SUB,
     2,
     {{"predictions", 1, {N1, 0}, GEN_UNIFORM, -4, 4},
      {"targets", 1, {N1, 0}, GEN_LABELS, 0, 1}}},
    {"focal_multi",
     "focal",
     NULL,
     NULL,
     MP_ROWS,
     2,
     {{"predictions", 2, {1000, 1000}, GEN_UNIFORM, -4, 4},
      {"targets", 1, {1000, 0}, GEN_INDEX, 1000, 0}}},
    {"hinge",
     "hinge",
     NULL,
     NULL,
     MP_SUB,
     2,
     {{"predictions", 1, {N1, 0}, GEN_UNIFORM, -2, 2},
      {"targets", 1, {N1, 0}, GEN_LABELS, -1, 1}}},
    {"contrastive",
     "contrastive",
     NULL,
     NULL,
     MP_PAIR,
     3,
     {{"x1", 2, {NE, 8}, GEN_UNIFORM, -0.5, 0.5},
      {"x2", 2, {NE, 8}, GEN_UNIFORM, -0.5, 0.5},
      {"similar", 1, {NE, 0}, GEN_LABELS, 0, 1}}},
    {"triplet",
     "triplet",
     NULL,
     NULL,
     MP_TRIPLE,
     3,
     {{"anchor", 2, {NE, 8}, GEN_UNIFORM, -0.5, 0.5},
      {"positive", 2, {NE, 8}, GEN_UNIFORM, -0.5, 0.5},
      {"negative", 2, {NE, 8}, GEN_UNIFORM, -0.5, 0.5}}},
    {"elbo",
     "elbo",
     NULL,
     NULL,
     MP_ELBO,
     4,
     {{"x", 2, {NV, 8}, GEN_UNIFORM, 0, 1},
      {"reconstruction", 2, {NV, 8}, GEN_UNIFORM, -4, 4},
      {"mu", 2, {NV, 2}, GEN_UNIFORM, -1, 1},
      {"logvar", 2, {NV, 2}, GEN_UNIFORM, -1, 1}}},
};
#define N_CASES (sizeof cases / sizeof cases[0])

/* splitmix64 of a counter: the same numbers in numpy (bench_core.py). */
static double u01(uint64_t seed, uint64_t i)
{
    uint64_t z = seed + (i + 1u) * UINT64_C(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

static uint64_t case_seed(size_t c, size_t m)
{
    return (uint64_t)(1000u * (c + 1u) + m);
}

static void fill(double *x, size_t n, const input_def *d, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        double u = u01(seed, i);
        switch (d->kind) {
        case GEN_UNIFORM:
            x[i] = d->a + (d->b - d->a) * u;
            break;
        case GEN_LABELS:
            x[i] = u < 0.5 ? d->a : d->b;
            break;
        default:
            x[i] = floor(u * d->a);
            break;
        }
    }
}

/* ---- small helpers ---- */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "core_bench: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Results the compiler must assume are used: outputs escape through these. */
static volatile double sink;
static double *volatile escaped[LOSS_MAX_INPUTS];

/* ---- a fixed pool of threads; the calling thread is worker 0 ---- */

typedef void (*job_fn)(void *ctx, int tid, int nthreads);

typedef struct pool {
    int n;
    pthread_t th[MAX_THREADS];
    int ids[MAX_THREADS];
    pthread_barrier_t start, done;
    job_fn job;
    void *ctx;
    int quit;
} pool;

static pool the_pool;

static void *pool_worker(void *arg)
{
    int tid = *(const int *)arg;
    for (;;) {
        pthread_barrier_wait(&the_pool.start);
        if (the_pool.quit) break;
        the_pool.job(the_pool.ctx, tid, the_pool.n);
        pthread_barrier_wait(&the_pool.done);
    }
    return NULL;
}

static void pool_start(int n)
{
    the_pool.n = n;
    if (n == 1) return;
    pthread_barrier_init(&the_pool.start, NULL, (unsigned)n);
    pthread_barrier_init(&the_pool.done, NULL, (unsigned)n);
    for (int t = 1; t < n; t++) {
        the_pool.ids[t] = t;
        if (pthread_create(&the_pool.th[t], NULL, pool_worker, &the_pool.ids[t])) {
            fprintf(stderr, "core_bench: pthread_create failed\n");
            exit(1);
        }
    }
}

static void pool_run(job_fn job, void *ctx)
{
    if (the_pool.n == 1) {
        job(ctx, 0, 1);
        return;
    }
    the_pool.job = job;
    the_pool.ctx = ctx;
    pthread_barrier_wait(&the_pool.start); /* publishes job and ctx */
    job(ctx, 0, the_pool.n);
    pthread_barrier_wait(&the_pool.done);
}

static void pool_stop(void)
{
    if (the_pool.n == 1) return;
    the_pool.quit = 1;
    pthread_barrier_wait(&the_pool.start);
    for (int t = 1; t < the_pool.n; t++) pthread_join(the_pool.th[t], NULL);
    pthread_barrier_destroy(&the_pool.start);
    pthread_barrier_destroy(&the_pool.done);
}

/* Part tid of [0, n) split into nt contiguous ranges. */
static void range(size_t n, int tid, int nt, size_t *lo, size_t *hi)
{
    *lo = n * (size_t)tid / (size_t)nt;
    *hi = n * (size_t)(tid + 1) / (size_t)nt;
}

/* ---- one benchmark case ---- */

typedef struct bench {
    const case_def *def;
    size_t index;
    loss_spec spec;
    loss_tensor in[LOSS_MAX_INPUTS]; /* descriptor order */
    const input_def *idef[LOSS_MAX_INPUTS];
    uint64_t seed[LOSS_MAX_INPUTS];
    size_t size[LOSS_MAX_INPUTS];
    int diff[LOSS_MAX_INPUTS];
    size_t n_in;
    loss_plan plan;
    loss_outputs out;
    double *mp[LOSS_MAX_INPUTS]; /* memory-pass outputs, gradient-sized */
    double partial[MAX_THREADS]; /* memory-pass reductions of non-gradient inputs */
    int rc[MAX_THREADS];
    size_t elements, n_terms, in_bytes, grad_bytes;
} bench;

static void die_loss(const bench *b, const char *what, int rc, const loss_error *e)
{
    fprintf(stderr, "core_bench: %s: %s failed: %s (%s)\n", b->def->name, what,
            e ? e->message : "", loss_strerror(rc));
    exit(1);
}

static void setup(bench *b, size_t c)
{
    const case_def *d = &cases[c];
    loss_error e;
    memset(b, 0, sizeof *b);
    b->def = d;
    b->index = c;
    int rc = loss_spec_init(&b->spec, d->loss, &e);
    if (!rc && d->param) rc = loss_spec_set_string(&b->spec, d->param, d->value, &e);
    if (rc) die_loss(b, "loss_spec", rc, &e);
    const loss_desc *desc = b->spec.desc;
    if (desc->n_inputs != d->n_in) {
        fprintf(stderr, "core_bench: %s: %zu inputs given, %s has %zu\n", d->name,
                d->n_in, desc->name, desc->n_inputs);
        exit(1);
    }
    b->n_in = d->n_in;
    for (size_t m = 0; m < d->n_in; m++) {
        size_t i;
        if ((rc = loss_input_bind(desc, d->in[m].name, &i, &e)))
            die_loss(b, "bind", rc, &e);
        loss_tensor *t = &b->in[i];
        t->rank = d->in[m].rank;
        t->shape[0] = d->in[m].shape[0];
        t->shape[1] = d->in[m].shape[1];
        b->size[i] = loss_tensor_size(t);
        b->idef[i] = &d->in[m];
        b->seed[i] = case_seed(c, m);
        double *x = xmalloc(b->size[i] * sizeof(double));
        fill(x, b->size[i], &d->in[m], b->seed[i]);
        t->data = x;
        b->diff[i] = desc->inputs[i].differentiable;
        b->in_bytes += b->size[i] * sizeof(double);
        if (b->diff[i]) {
            b->elements += b->size[i];
            b->grad_bytes += b->size[i] * sizeof(double);
            b->out.grads[i] = calloc(b->size[i], sizeof(double));
            b->mp[i] = calloc(b->size[i], sizeof(double));
            if (!b->out.grads[i] || !b->mp[i]) {
                fprintf(stderr, "core_bench: out of memory\n");
                exit(1);
            }
            escaped[i] = b->mp[i];
        }
    }
    if ((rc = loss_plan_init(&b->plan, &b->spec, b->in, NULL, LOSS_MEAN, &e)))
        die_loss(b, "loss_plan_init", rc, &e);
    b->n_terms = b->plan.n_terms;
    b->out.losses = calloc(b->n_terms ? b->n_terms : 1, sizeof(double));
    if (!b->out.losses) {
        fprintf(stderr, "core_bench: out of memory\n");
        exit(1);
    }
}

static void teardown(bench *b)
{
    loss_plan_free(&b->plan);
    free(b->out.losses);
    for (size_t i = 0; i < LOSS_MAX_INPUTS; i++) {
        free((void *)b->in[i].data);
        free(b->out.grads[i]);
        free(b->mp[i]);
        escaped[i] = NULL;
    }
}

/* ---- the memory pass ---- */

static double sum_range(const double *x, size_t lo, size_t hi)
{
    double s = 0;
    for (size_t j = lo; j < hi; j++) s += x[j];
    return s;
}

static void mempass_job(void *ctx, int tid, int nt)
{
    bench *b = ctx;
    const double *x[LOSS_MAX_INPUTS];
    for (size_t i = 0; i < b->n_in; i++) x[i] = b->in[i].data;
    double **g = b->mp, part = 0;
    size_t lo, hi;
    switch (b->def->mp) {
    case MP_SUB:
        range(b->size[0], tid, nt, &lo, &hi);
        for (size_t j = lo; j < hi; j++) g[0][j] = x[0][j] - x[1][j];
        break;
    case MP_ROWS:
        range(b->size[0], tid, nt, &lo, &hi);
        for (size_t j = lo; j < hi; j++) g[0][j] = 2.0 * x[0][j];
        range(b->size[1], tid, nt, &lo, &hi);
        part = sum_range(x[1], lo, hi);
        break;
    case MP_PAIR:
        range(b->size[0], tid, nt, &lo, &hi);
        for (size_t j = lo; j < hi; j++) {
            double d = x[0][j] - x[1][j];
            g[0][j] = d;
            g[1][j] = -d;
        }
        range(b->size[2], tid, nt, &lo, &hi);
        part = sum_range(x[2], lo, hi);
        break;
    case MP_TRIPLE:
        range(b->size[0], tid, nt, &lo, &hi);
        for (size_t j = lo; j < hi; j++) {
            double u = x[0][j] - x[1][j], v = x[0][j] - x[2][j];
            g[0][j] = u - v;
            g[1][j] = -u;
            g[2][j] = v;
        }
        break;
    case MP_ELBO:
        range(b->size[1], tid, nt, &lo, &hi);
        for (size_t j = lo; j < hi; j++) g[1][j] = x[1][j] - x[0][j];
        range(b->size[2], tid, nt, &lo, &hi);
        for (size_t j = lo; j < hi; j++) {
            g[2][j] = x[2][j];
            g[3][j] = 0.5 * x[3][j];
        }
        break;
    }
    b->partial[tid] = part;
}

static double time_mempass(bench *b)
{
    double t0 = now_ns();
    pool_run(mempass_job, b);
    double t = now_ns() - t0;
    double s = 0;
    for (int k = 0; k < the_pool.n; k++) s += b->partial[k];
    for (size_t i = 0; i < b->n_in; i++)
        if (b->mp[i]) s += b->mp[i][0] + b->mp[i][b->size[i] - 1];
    sink = s;
    return t;
}

/* ---- lossd ---- */

static void eval_job(void *ctx, int tid, int nt)
{
    bench *b = ctx;
    size_t lo, hi;
    range(b->plan.n_blocks, tid, nt, &lo, &hi);
    b->rc[tid] = loss_eval_blocks(&b->plan, lo, hi, &b->out);
}

static double time_lossd(bench *b, loss_result *r)
{
    loss_error e;
    int rc = 0;
    double t0 = now_ns();
    if (the_pool.n == 1) {
        rc = loss_eval(&b->plan, &b->out, r, &e);
    } else {
        pool_run(eval_job, b);
        for (int k = 0; k < the_pool.n && !rc; k++) rc = b->rc[k];
        if (!rc)
            rc = loss_finish(&b->plan, r, &e);
        else
            snprintf(e.message, sizeof e.message, "loss_eval_blocks failed");
    }
    double t = now_ns() - t0;
    if (rc) die_loss(b, "loss_eval", rc, &e);
    sink = r->cost;
    return t;
}

static double time_plan(bench *b)
{
    loss_plan p;
    loss_error e;
    double t0 = now_ns();
    int rc = loss_plan_init(&p, &b->spec, b->in, NULL, LOSS_MEAN, &e);
    loss_plan_free(&p);
    double t = now_ns() - t0;
    if (rc) die_loss(b, "loss_plan_init", rc, &e);
    return t;
}

/* ---- output ---- */

typedef struct figures {
    double lossd_ns, mempass_ns, plan_ns, cost;
} figures;

static void print_text(const bench *b, const figures *f, int reps)
{
    printf("case=%s loss=%s elements=%zu terms=%zu blocks=%zu threads=%d reps=%d "
           "lossd_ns=%.4f mempass_ns=%.4f ratio=%.3f plan_ns=%.4f cost=%.17g\n",
           b->def->name, b->def->loss, b->elements, b->n_terms, b->plan.n_blocks,
           the_pool.n, reps, f->lossd_ns, f->mempass_ns, f->lossd_ns / f->mempass_ns,
           f->plan_ns, f->cost);
}

static void print_json(const bench *b, const figures *f, int reps, int first)
{
    const case_def *d = b->def;
    printf("%s{\"case\": \"%s\", \"loss\": \"%s\", \"params\": {", first ? "" : ",\n ",
           d->name, d->loss);
    if (d->param) printf("\"%s\": \"%s\"", d->param, d->value);
    printf("}, \"reduction\": \"mean\", \"inputs\": [");
    for (size_t i = 0; i < b->n_in; i++) {
        const input_def *x = b->idef[i];
        printf("%s{\"name\": \"%s\", \"shape\": [", i ? ", " : "", x->name);
        for (size_t k = 0; k < x->rank; k++) printf("%s%zu", k ? ", " : "", x->shape[k]);
        printf("], \"differentiable\": %s, \"gen\": \"%s\", \"a\": %.17g, \"b\": %.17g, "
               "\"seed\": %llu}",
               b->diff[i] ? "true" : "false", gen_names[x->kind], x->a, x->b,
               (unsigned long long)b->seed[i]);
    }
    printf("],\n  \"elements\": %zu, \"terms\": %zu, \"blocks\": %zu, \"threads\": %d, "
           "\"reps\": %d, \"lossd_ns\": %.4f, \"mempass_ns\": %.4f, \"plan_ns\": %.4f, "
           "\"lossd_bytes\": %zu, \"mempass_bytes\": %zu, \"cost\": %.17g}",
           b->elements, b->n_terms, b->plan.n_blocks, the_pool.n, reps, f->lossd_ns,
           f->mempass_ns, f->plan_ns,
           b->in_bytes + b->grad_bytes + b->n_terms * sizeof(double),
           b->in_bytes + b->grad_bytes, f->cost);
}

static void run_case(size_t c, int reps, int json, int first)
{
    bench b;
    setup(&b, c);
    double *tl = xmalloc((size_t)reps * sizeof(double));
    double *tm = xmalloc((size_t)reps * sizeof(double));
    double *tp = xmalloc((size_t)reps * sizeof(double));
    loss_result r;
    /* warm-up: faults the output pages in and warms the caches and the pool */
    time_lossd(&b, &r);
    time_mempass(&b);
    time_plan(&b);
    /* interleaved, so that a slow phase of the machine hits every column alike */
    for (int k = 0; k < reps; k++) {
        tl[k] = time_lossd(&b, &r);
        tm[k] = time_mempass(&b);
        tp[k] = time_plan(&b);
    }
    double el = (double)b.elements;
    figures f = {median(tl, (size_t)reps) / el, median(tm, (size_t)reps) / el,
                 median(tp, (size_t)reps) / el, r.cost};
    if (json)
        print_json(&b, &f, reps, first);
    else
        print_text(&b, &f, reps);
    fflush(stdout);
    free(tl);
    free(tm);
    free(tp);
    teardown(&b);
}

static void usage(FILE *to)
{
    fprintf(
        to,
        "usage: core_bench [--reps R] [--threads T] [--json] [--case NAME]... [--list]\n"
        "  --reps R      timed repetitions after one warm-up run (default 15); the\n"
        "                median is reported\n"
        "  --threads T   evaluate the blocks on T threads (default 1)\n"
        "  --json        print a JSON array instead of one line per case\n"
        "  --case NAME   run only this case (repeatable); --list shows the names\n"
        "Figures are ns per element of the differentiable inputs.\n");
}

static long parse_long(const char *s, const char *opt, long lo, long hi)
{
    char *end;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || *end || v < lo || v > hi) {
        fprintf(stderr, "core_bench: %s needs an integer in [%ld, %ld]\n", opt, lo, hi);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    int reps = 15, threads = 1, json = 0;
    int selected[N_CASES] = {0}, any_selected = 0;
    for (int a = 1; a < argc; a++) {
        const char *o = argv[a];
        if (!strcmp(o, "--reps")) {
            reps = (int)parse_long(a + 1 < argc ? argv[++a] : NULL, o, 1, 100000);
        } else if (!strcmp(o, "--threads")) {
            threads = (int)parse_long(a + 1 < argc ? argv[++a] : NULL, o, 1, MAX_THREADS);
        } else if (!strcmp(o, "--json")) {
            json = 1;
        } else if (!strcmp(o, "--case")) {
            const char *name = a + 1 < argc ? argv[++a] : "";
            size_t c = 0;
            while (c < N_CASES && strcmp(cases[c].name, name)) c++;
            if (c == N_CASES) {
                fprintf(stderr, "core_bench: unknown case \"%s\" (see --list)\n", name);
                return 2;
            }
            selected[c] = any_selected = 1;
        } else if (!strcmp(o, "--list")) {
            for (size_t c = 0; c < N_CASES; c++) printf("%s\n", cases[c].name);
            return 0;
        } else if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "core_bench: unknown option %s\n", o);
            usage(stderr);
            return 2;
        }
    }
    pool_start(threads);
    if (json) printf("[");
    int first = 1;
    for (size_t c = 0; c < N_CASES; c++) {
        if (any_selected && !selected[c]) continue;
        run_case(c, reps, json, first);
        first = 0;
    }
    if (json) printf("]\n");
    pool_stop();
    return 0;
}
