/* test_determinism.c - the same bits whatever the chunking: every loss evaluated in
 * one call, block by block in shuffled order, and in ranges on several threads
 * must give bit-identical costs, losses, gradients and metrics.  Float32 inputs
 * (widened a few hundred at a time in the core) must give the bits of their widened
 * copies, float32 outputs the rounded doubles, gradients written over their own
 * inputs (double or float32) the same, and bad float32 inputs the errors the
 * doubles give. */
#include "support.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

typedef struct setup {
    const char *loss, *param, *pval;
    size_t n, k; /* batch, second dimension */
    int targets; /* 0 real, 1 probabilities, 2 class indices, 3 {-1,1}, 4 {0,1} */
    int weights;
} setup;

static const setup setups[] = {
    {"mse", NULL, NULL, 20000, 7, 0, 1},
    {"mae", NULL, NULL, 3001, 5, 0, 0},
    {"huber", "delta", "0.3", 5000, 3, 0, 1},
    {"bce", "from", "logits", 4000, 3, 1, 1},
    {"bce", NULL, NULL, 4000, 3, 1, 0},
    {"cross_entropy", "label_smoothing", "0.1", 3000, 17, 2, 1},
    {"cross_entropy", NULL, NULL, 200, 1000, 2, 0},
    {"cross_entropy", "ignore_index", "3", 3000, 17, 2, 1},
    {"focal", NULL, NULL, 6000, 6, 2, 1},
    {"focal", "gamma", "0.5", 6000, 6, 4, 0},
    {"hinge", "squared", "true", 5000, 2, 3, 1},
    {"contrastive", NULL, NULL, 9000, 8, 4, 1},
    {"triplet", "squared", "false", 9000, 8, 0, 0},
    {"elbo", NULL, NULL, 3000, 10, 4, 1},
};

typedef struct run {
    loss_plan p;
    loss_outputs out;
    loss_result r;
} run;

static void alloc_outputs(run *x)
{
    memset(&x->out, 0, sizeof x->out);
    x->out.losses = malloc(x->p.n_terms * sizeof(double));
    for (size_t i = 0; i < x->p.desc->n_inputs; i++)
        if (x->p.desc->inputs[i].differentiable)
            x->out.grads[i] = malloc(x->p.input_size[i] * sizeof(double));
}

static int same_bits(const run *a, const run *b)
{
    int ok = memcmp(&a->r.cost, &b->r.cost, sizeof(double)) == 0 &&
             memcmp(&a->r.accuracy, &b->r.accuracy, sizeof(double)) == 0 &&
             memcmp(a->r.components, b->r.components, sizeof a->r.components) == 0;
    ok = ok && memcmp(a->out.losses, b->out.losses, a->p.n_terms * sizeof(double)) == 0;
    for (size_t i = 0; i < LOSS_MAX_INPUTS; i++)
        if (a->out.grads[i])
            ok = ok && memcmp(a->out.grads[i], b->out.grads[i],
                              a->p.input_size[i] * sizeof(double)) == 0;
    return ok;
}

typedef struct slice {
    loss_plan *p;
    const loss_outputs *out;
    size_t b0, b1;
} slice;

static void *worker(void *arg)
{
    slice *s = arg;
    loss_eval_blocks(s->p, s->b0, s->b1, s->out);
    return NULL;
}

static void free_run(run *x)
{
    free(x->out.losses);
    for (size_t i = 0; i < LOSS_MAX_INPUTS; i++) free(x->out.grads[i]);
    loss_plan_free(&x->p);
}

/* Evaluates a plan on uneven ranges on concurrent threads. */
static void eval_threads(run *x, const size_t *cut, size_t n_cut)
{
    pthread_t th[8];
    slice sl[8];
    for (size_t t = 0; t + 1 < n_cut; t++) {
        sl[t] = (slice){&x->p, &x->out, cut[t], cut[t + 1]};
        pthread_create(&th[t], NULL, worker, &sl[t]);
    }
    for (size_t t = 0; t + 1 < n_cut; t++) pthread_join(th[t], NULL);
}

static float *to_f32(const loss_tensor *t)
{
    size_t n = loss_tensor_size(t);
    float *f = malloc((n ? n : 1) * sizeof *f);
    for (size_t j = 0; j < n; j++) f[j] = (float)t->data[j];
    return f;
}

/* The error a plan gives (code, index and message), with input bad (of in) set
 * to value at element at; as doubles and with every input as float32. */
static void same_error(const setup *su, const loss_spec *s, const loss_tensor *in,
                       const loss_tensor *wt, size_t bad, size_t at, double value)
{
    size_t ni = s->desc->n_inputs, sz = loss_tensor_size(&in[bad]);
    loss_tensor d[LOSS_MAX_INPUTS], f[LOSS_MAX_INPUTS];
    float *fb[LOSS_MAX_INPUTS] = {0};
    double *copy = malloc(sz * sizeof *copy);
    memcpy(copy, in[bad].data, sz * sizeof *copy);
    copy[at] = value;
    for (size_t i = 0; i < ni; i++) {
        d[i] = in[i];
        if (i == bad) d[i].data = copy;
        fb[i] = to_f32(&d[i]);
        f[i] = d[i];
        f[i].data = NULL;
        f[i].f32 = fb[i];
    }
    loss_plan pd, pf;
    loss_error ed, ef;
    int rd = loss_plan_init(&pd, s, d, wt, LOSS_MEAN, &ed);
    int rf = loss_plan_init(&pf, s, f, wt, LOSS_MEAN, &ef);
    CHECK(rd != 0, "%s: %s[%zu] = %g was accepted", su->loss, s->desc->inputs[bad].name,
          at, value);
    CHECK(rd == rf && ed.index == ef.index && !strcmp(ed.message, ef.message) &&
              !strcmp(ed.name, ef.name),
          "%s: float32 error \"%s\" (%d at %lld) differs from \"%s\" (%d at %lld)",
          su->loss, ef.message, rf, ef.index, ed.message, rd, ed.index);
    loss_plan_free(&pd);
    loss_plan_free(&pf);
    free(copy);
    for (size_t i = 0; i < ni; i++) free(fb[i]);
}

/* Each gradient written over its own input's doubles (what lossd does with the
 * numbers of a request), on threads: the bits of run one. */
static void check_overwrite(const setup *su, const loss_spec *s, const loss_tensor *in,
                            const loss_tensor *wt, const run *one, const size_t *cut)
{
    size_t ni = s->desc->n_inputs;
    loss_tensor c[LOSS_MAX_INPUTS];
    double *copy[LOSS_MAX_INPUTS] = {0};
    loss_error e;
    for (size_t i = 0; i < ni; i++) {
        size_t sz = loss_tensor_size(&in[i]);
        copy[i] = malloc(sz * sizeof(double));
        memcpy(copy[i], in[i].data, sz * sizeof(double));
        c[i] = in[i];
        c[i].data = copy[i];
    }
    run ow;
    CHECK(loss_plan_init(&ow.p, s, c, wt, LOSS_MEAN, &e) == 0, "%s: %s", su->loss,
          e.message);
    memset(&ow.out, 0, sizeof ow.out);
    ow.out.losses = malloc(ow.p.n_terms * sizeof(double));
    for (size_t i = 0; i < ni; i++)
        if (s->desc->inputs[i].differentiable) ow.out.grads[i] = copy[i];
    eval_threads(&ow, cut, 6);
    CHECK(loss_finish(&ow.p, &ow.r, &e) == 0, "%s", e.message);
    CHECK(same_bits(one, &ow), "%s: gradients written over their inputs differ",
          su->loss);
    free(ow.out.losses);
    for (size_t i = 0; i < ni; i++) free(copy[i]);
    loss_plan_free(&ow.p);
}

/* Float32 inputs and outputs against the doubles of run one. */
static void check_float32(const setup *su, const loss_spec *s, const loss_tensor *in,
                          const loss_tensor *wt, const run *one, const size_t *cut)
{
    size_t ni = s->desc->n_inputs;
    loss_tensor f[LOSS_MAX_INPUTS], mixed[LOSS_MAX_INPUTS];
    float *fb[LOSS_MAX_INPUTS] = {0};
    loss_error e;
    for (size_t i = 0; i < ni; i++) {
        fb[i] = to_f32(&in[i]);
        f[i] = mixed[i] = in[i];
        f[i].data = NULL;
        f[i].f32 = fb[i];
    }
    mixed[0] = f[0]; /* only the first input as float32 */

    /* 1. float32 inputs, double outputs: the bits of the widened doubles */
    run wide;
    CHECK(loss_plan_init(&wide.p, s, f, wt, LOSS_MEAN, &e) == 0, "%s: %s", su->loss,
          e.message);
    alloc_outputs(&wide);
    eval_threads(&wide, cut, 6);
    CHECK(loss_finish(&wide.p, &wide.r, &e) == 0, "%s", e.message);
    CHECK(same_bits(one, &wide), "%s: float32 inputs differ from their doubles",
          su->loss);
    free_run(&wide);

    /* 2. one input float32, outputs float32: the doubles' results rounded */
    run nar;
    CHECK(loss_plan_init(&nar.p, s, mixed, wt, LOSS_MEAN, &e) == 0, "%s: %s", su->loss,
          e.message);
    memset(&nar.out, 0, sizeof nar.out);
    float *lf = malloc(nar.p.n_terms * sizeof *lf), *gf[LOSS_MAX_INPUTS] = {0};
    nar.out.losses_f32 = lf;
    for (size_t i = 0; i < ni; i++)
        if (s->desc->inputs[i].differentiable)
            nar.out.grads_f32[i] = gf[i] = malloc(nar.p.input_size[i] * sizeof(float));
    eval_threads(&nar, cut, 6);
    CHECK(loss_finish(&nar.p, &nar.r, &e) == 0, "%s", e.message);
    int ok = memcmp(&nar.r.cost, &one->r.cost, sizeof(double)) == 0;
    for (size_t j = 0; ok && j < nar.p.n_terms; j++)
        ok = lf[j] == (float)one->out.losses[j];
    for (size_t i = 0; i < ni; i++)
        for (size_t j = 0; ok && gf[i] && j < nar.p.input_size[i]; j++)
            ok = gf[i][j] == (float)one->out.grads[i][j];
    CHECK(ok, "%s: float32 outputs are not the doubles rounded", su->loss);
    free(lf);
    for (size_t i = 0; i < ni; i++) free(gf[i]);
    loss_plan_free(&nar.p);

    /* 3. every input float32, and each float32 gradient written over its own
     * input (what lossd does with binary tensors), on threads: the same */
    float *over[LOSS_MAX_INPUTS] = {0};
    for (size_t i = 0; i < ni; i++) {
        over[i] = to_f32(&in[i]);
        f[i].f32 = over[i];
    }
    run ow;
    CHECK(loss_plan_init(&ow.p, s, f, wt, LOSS_MEAN, &e) == 0, "%s: %s", su->loss,
          e.message);
    memset(&ow.out, 0, sizeof ow.out);
    lf = malloc(ow.p.n_terms * sizeof *lf);
    ow.out.losses_f32 = lf;
    for (size_t i = 0; i < ni; i++)
        if (s->desc->inputs[i].differentiable) ow.out.grads_f32[i] = over[i];
    eval_threads(&ow, cut, 6);
    CHECK(loss_finish(&ow.p, &ow.r, &e) == 0, "%s", e.message);
    ok = memcmp(&ow.r.cost, &one->r.cost, sizeof(double)) == 0 &&
         memcmp(&ow.r.accuracy, &one->r.accuracy, sizeof(double)) == 0;
    for (size_t j = 0; ok && j < ow.p.n_terms; j++)
        ok = lf[j] == (float)one->out.losses[j];
    for (size_t i = 0; i < ni; i++)
        for (size_t j = 0; ok && ow.out.grads_f32[i] && j < ow.p.input_size[i]; j++)
            ok = over[i][j] == (float)one->out.grads[i][j];
    CHECK(ok, "%s: float32 gradients written over their inputs differ", su->loss);
    free(lf);
    for (size_t i = 0; i < ni; i++) {
        f[i].f32 = fb[i];
        free(over[i]);
    }
    loss_plan_free(&ow.p);

    /* 4. bad values, late in the batch (a later block than the first): the same
     * error as the doubles.  A NaN in the last input, then a bad target. */
    size_t last = ni - 1, sz_last = loss_tensor_size(&in[last]);
    same_error(su, s, in, wt, last, sz_last - 3, NAN);
    same_error(su, s, in, wt, 0, loss_tensor_size(&in[0]) - 2, INFINITY);
    for (size_t i = 0; i < ni; i++) {
        const char *name = s->desc->inputs[i].name;
        size_t sz = loss_tensor_size(&in[i]);
        if (!strcmp(name, "targets") || !strcmp(name, "similar") || !strcmp(name, "x")) {
            double v = su->targets == 2 ? (double)su->k : su->targets == 0 ? NAN : 0.5;
            if (su->targets == 1 || (su->targets == 4 && !strcmp(su->loss, "elbo")))
                v = 1.5;
            same_error(su, s, in, wt, i, sz - 5, v);
        }
    }
    for (size_t i = 0; i < ni; i++) free(fb[i]);
}

static void check(const setup *su, unsigned long long seed)
{
    rng g = {seed};
    loss_spec s;
    loss_error e;
    CHECK(loss_spec_init(&s, su->loss, &e) == 0, "%s", e.message);
    if (su->param) {
        char *end;
        double v = strtod(su->pval, &end);
        int rc = !strcmp(su->pval, "true") || !strcmp(su->pval, "false")
                     ? loss_spec_set_bool(&s, su->param, su->pval[0] == 't', &e)
                 : *end ? loss_spec_set_string(&s, su->param, su->pval, &e)
                        : loss_spec_set_number(&s, su->param, v, &e);
        CHECK(rc == 0, "%s", e.message);
    }
    loss_tensor in[LOSS_MAX_INPUTS];
    double *bufs[LOSS_MAX_INPUTS] = {0};
    size_t n = su->n, k = su->k;
    for (size_t i = 0; i < s.desc->n_inputs; i++) {
        in[i] = (loss_tensor){.rank = 2, .shape = {n, k}};
        const char *name = s.desc->inputs[i].name;
        int is_target =
            !strcmp(name, "targets") || !strcmp(name, "similar") || !strcmp(name, "x");
        if (is_target && (su->targets == 2 || !strcmp(name, "similar"))) in[i].rank = 1;
        if (!strcmp(name, "mu") || !strcmp(name, "logvar")) in[i].shape[1] = 3;
        size_t sz = loss_tensor_size(&in[i]);
        bufs[i] = malloc(sz * sizeof(double));
        for (size_t j = 0; j < sz; j++) {
            double v = rng_normal(&g);
            if (is_target) {
                switch (su->targets) {
                case 1:
                    v = rng_uniform(&g);
                    break;
                case 2:
                    v = (double)(j % k);
                    break;
                case 3:
                    v = v < 0 ? -1.0 : 1.0;
                    break;
                case 4:
                    v = v < 0 ? 0.0 : 1.0;
                    break;
                }
            } else if (!strcmp(su->loss, "bce") && s.from == LOSS_FROM_PROBABILITIES) {
                v = rng_uniform(&g);
            }
            bufs[i][j] = (double)(float)v; /* float32 copies hold the same values */
        }
        in[i].data = bufs[i];
    }
    double *w = malloc(n * sizeof(double));
    for (size_t j = 0; j < n; j++) w[j] = rng_uniform(&g) * 3;
    loss_tensor wt = {.data = w, .rank = 1, .shape = {n}};

    run one, blocks, threads;
    run *runs[3] = {&one, &blocks, &threads};
    for (int r = 0; r < 3; r++) {
        CHECK(loss_plan_init(&runs[r]->p, &s, in, su->weights ? &wt : NULL, LOSS_MEAN,
                             &e) == 0,
              "%s: %s", su->loss, e.message);
        alloc_outputs(runs[r]);
    }
    CHECK(one.p.n_blocks > 4, "%s: only %zu blocks", su->loss, one.p.n_blocks);
    /* 1. one call */
    CHECK(loss_eval(&one.p, &one.out, &one.r, &e) == 0, "%s", e.message);
    /* 2. every block on its own, in a shuffled order */
    size_t nb = blocks.p.n_blocks, *order = malloc(nb * sizeof *order);
    for (size_t b = 0; b < nb; b++) order[b] = b;
    for (size_t b = nb; b > 1; b--) {
        size_t j = (size_t)(rng_uniform(&g) * (double)b), t = order[b - 1];
        order[b - 1] = order[j];
        order[j] = t;
    }
    for (size_t b = 0; b < nb; b++)
        loss_eval_blocks(&blocks.p, order[b], order[b] + 1, &blocks.out);
    CHECK(loss_finish(&blocks.p, &blocks.r, &e) == 0, "%s", e.message);
    /* 3. uneven ranges on concurrent threads */
    enum { T = 5 };
    pthread_t th[T];
    slice sl[T];
    size_t cut[T + 1] = {0, nb / 7, nb / 3, nb / 2, nb - 1, nb};
    for (int t = 0; t < T; t++) {
        sl[t] = (slice){&threads.p, &threads.out, cut[t], cut[t + 1]};
        pthread_create(&th[t], NULL, worker, &sl[t]);
    }
    for (int t = 0; t < T; t++) pthread_join(th[t], NULL);
    CHECK(loss_finish(&threads.p, &threads.r, &e) == 0, "%s", e.message);

    /* 4. a block's sum is loss_sum of its weighted terms, however the core cuts
     * the block into parts (plan.c: the parts follow loss_sum's tree) */
    double *tw = malloc(one.p.block * sizeof *tw);
    size_t per_ex = one.p.n_terms / n;
    for (size_t b = 0; b < nb; b++) {
        size_t t0 = b * one.p.block, m = one.p.n_terms - t0;
        if (m > one.p.block) m = one.p.block;
        for (size_t i = 0; i < m; i++)
            tw[i] = su->weights ? w[(t0 + i) / per_ex] * one.out.losses[t0 + i]
                                : one.out.losses[t0 + i];
        double sum = loss_sum(tw, m);
        CHECK(memcmp(&sum, &one.p.sums[b], sizeof sum) == 0,
              "%s: block %zu's sum is not loss_sum of its weighted terms", su->loss, b);
    }
    free(tw);
    CHECK(same_bits(&one, &blocks), "%s: one call vs shuffled blocks differ", su->loss);
    CHECK(same_bits(&one, &threads), "%s: one call vs threads differ", su->loss);
    CHECK(isfinite(one.r.cost), "%s: cost %g", su->loss, one.r.cost);
    check_overwrite(su, &s, in, su->weights ? &wt : NULL, &one, cut);
    check_float32(su, &s, in, su->weights ? &wt : NULL, &one, cut);
    for (int r = 0; r < 3; r++) free_run(runs[r]);
    free(order);
    free(w);
    for (size_t i = 0; i < LOSS_MAX_INPUTS; i++) free(bufs[i]);
}

int main(void)
{
    for (size_t i = 0; i < sizeof setups / sizeof setups[0]; i++)
        check(&setups[i], 1234 + i);
    return test_report("test_determinism");
}
