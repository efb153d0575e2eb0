/* test_determinism.c - the same bits whatever the chunking: every loss evaluated in
 * one call, block by block in shuffled order, and in ranges on several threads
 * must give bit-identical costs, losses, gradients and metrics. */
#include "support.h"

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
        in[i] = (loss_tensor){NULL, 2, {n, k}};
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
            bufs[i][j] = v;
        }
        in[i].data = bufs[i];
    }
    double *w = malloc(n * sizeof(double));
    for (size_t j = 0; j < n; j++) w[j] = rng_uniform(&g) * 3;
    loss_tensor wt = {w, 1, {n}};

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

    CHECK(same_bits(&one, &blocks), "%s: one call vs shuffled blocks differ", su->loss);
    CHECK(same_bits(&one, &threads), "%s: one call vs threads differ", su->loss);
    CHECK(isfinite(one.r.cost), "%s: cost %g", su->loss, one.r.cost);
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
