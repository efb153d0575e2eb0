/* eval.c - lossd eval [FILE]: one /v1/loss or /v1/objective body from FILE (or
 * stdin), evaluated by the same job code as the server, without a network. */
#include "srv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_all(FILE *f, size_t max, size_t *len, int *toobig)
{
    srv_buf b = {0};
    b.max = max;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (srv_buf_append(&b, chunk, n)) {
            *toobig = b.toobig;
            srv_buf_free(&b);
            return NULL;
        }
    if (ferror(f)) {
        srv_buf_free(&b);
        return NULL;
    }
    if (srv_buf_reserve(&b, 0)) return NULL;
    b.data[b.len] = '\0';
    return srv_buf_steal(&b, len);
}

int srv_eval_main(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: lossd eval [FILE]\n"
                   "Evaluates one /v1/loss or /v1/objective request body (an objective "
                   "when it has \"tasks\")\nfrom FILE, or stdin when FILE is absent or "
                   "\"-\", and prints the response body.\n"
                   "Limits: LOSSD_MAX_BODY_BYTES (default %d) and "
                   "LOSSD_MAX_ELEMENTS (default %d).\n"
                   "Exit status: 0 for a 200 response, 1 for an error response (printed "
                   "too), 2 for usage errors.\n",
                   SRV_EVAL_MAX_BODY_BYTES, SRV_MAX_ELEMENTS_DEFAULT);
            return 0;
        }
        if (path) {
            fprintf(stderr, "lossd eval: one FILE at most (see lossd eval --help)\n");
            return 2;
        }
        path = argv[i];
    }
    unsigned long long max_body, max_elements;
    if (srv_config_eval_limits(&max_body, &max_elements)) return 2;
    FILE *f = stdin;
    if (path && strcmp(path, "-")) {
        f = fopen(path, "rb");
        if (!f) {
            fprintf(stderr, "lossd eval: cannot open %s: %s\n", path, strerror(errno));
            return 2;
        }
    }
    size_t len = 0;
    int toobig = 0;
    char *body = read_all(f, (size_t)max_body, &len, &toobig);
    if (f != stdin) fclose(f);
    if (!body && !toobig) {
        fprintf(stderr, "lossd eval: cannot read %s\n", path ? path : "stdin");
        return 2;
    }
    srv_job j;
    srv_job_init(&j, SRV_EP_AUTO, body, len, (size_t)max_elements);
    if (toobig) { /* what the server answers, through the job's error path */
        srv_error_set(&j.err, 413, "body_too_large", "",
                      "the body is larger than %llu bytes (--max-body-bytes)", max_body);
        j.failed = 1;
    }
    srv_job_run(&j);
    int rc = j.status == 200 ? 0 : 1;
    srv_output *out = srv_job_output(&j);
    if (!out) {
        fprintf(stderr, "lossd eval: out of memory\n");
        srv_job_free(&j);
        return 2;
    }
    for (size_t i = 0; i < out->n_pieces; i++)
        fwrite(out->pieces[i].p, 1, out->pieces[i].len, stdout);
    srv_output_free(out);
    srv_job_free(&j);
    return fflush(stdout) == 0 ? rc : 2;
}
