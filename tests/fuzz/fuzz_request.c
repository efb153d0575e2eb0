/* fuzz_request.c - libFuzzer target: whole request bodies through the job API, as
 * lossd eval and the server run them (srv_job_init, srv_job_run, srv_job_output).
 * Under ASan + UBSan nothing may crash or leak, and the response must be what the
 * API promises: an error body {"error": {"code", "message", "path"}} with a 4xx or
 * 5xx status, or with 200 a JSON object (followed, with "binary_outputs", by
 * exactly the bytes its binary_data_size members announce).
 *
 * Input framing (so that the fuzzer reaches the HTTP layer's options too): a first
 * byte 0xB0-0xBF is a header whose low bits say
 *   1: binary tensors: two more bytes (little-endian) are the JSON length, as
 *      Inference-Header-Content-Length (srv_job_set_binary);
 *   2: the body is compressed (Content-Encoding: gzip/deflate, 1 MiB inflated);
 *   4: gzip the response (Accept-Encoding: gzip);
 *   8: the /v1/loss endpoint (else lossd eval's: an objective when "tasks").
 * The rest is the body; a body starting with 0x01 is a template (fuzz_util.h).
 * FUZZ_REQUEST_SHOW=1 in the environment prints every response (status, start). */
#include "fuzz_util.h"
#include "srv.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                                      \
    do {                                               \
        fprintf(stderr, "fuzz_request: " __VA_ARGS__); \
        fputc('\n', stderr);                           \
        abort();                                       \
    } while (0)

/* The sum of every binary_data_size member under v. */
static double binary_sizes(const json_t *v)
{
    double sum = 0;
    if (json_is_object(v)) {
        const char *key;
        json_t *m;
        json_object_foreach((json_t *)v, key, m)
        {
            if (!strcmp(key, "binary_data_size") && json_is_number(m))
                sum += json_number_value(m);
            else
                sum += binary_sizes(m);
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            sum += binary_sizes(json_array_get(v, i));
    }
    return sum;
}

static void check_output(const srv_output *o, int status)
{
    /* the pieces, joined (inflated when gzipped) */
    char *all = malloc(o->len ? o->len : 1), *body = all;
    if (!all) return;
    size_t at = 0, len = o->len;
    for (size_t i = 0; i < o->n_pieces; i++) {
        if (o->pieces[i].len) memcpy(all + at, o->pieces[i].p, o->pieces[i].len);
        at += o->pieces[i].len;
    }
    if (at != o->len) FAIL("the pieces hold %zu bytes, the output says %zu", at, o->len);
    if (o->gzipped) {
        srv_error err;
        if (status != 200) FAIL("an error body was gzipped");
        if (srv_inflate(all, o->len, (size_t)1 << 30, &body, &len, &err))
            FAIL("the gzipped response does not inflate: %s", err.message);
    }
    size_t json_len = o->binary ? o->json_len : len;
    if (json_len > len) FAIL("json_len %zu > %zu bytes", json_len, len);
    if (!o->binary && o->json_len != len) /* (of the inflated body when gzipped) */
        FAIL("json_len %zu but %zu bytes and no binary outputs", o->json_len, len);
    json_error_t je;
    json_t *root = json_loadb(body, json_len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        FAIL("status %d: the response is not JSON: %s (position %d): %.*s", status,
             je.text, je.position, (int)(json_len < 400 ? json_len : 400), body);
    if (!json_is_object(root)) FAIL("status %d: the response is not an object", status);
    if (status == 200) {
        if (json_object_get(root, "error")) FAIL("status 200 with an error member");
        double want = binary_sizes(root);
        if (o->binary && want != (double)(len - json_len))
            FAIL("binary outputs announce %.0f bytes, %zu follow", want, len - json_len);
        if (!o->binary && want != 0) FAIL("binary_data_size without binary outputs");
    } else {
        const json_t *e = json_object_get(root, "error");
        if (status < 400 || status > 599) FAIL("status %d", status);
        if (o->binary) FAIL("an error body with binary outputs");
        if (json_object_size(root) != 1 || !json_is_object(e) ||
            !json_is_string(json_object_get(e, "code")) ||
            !json_is_string(json_object_get(e, "message")) ||
            !json_is_string(json_object_get(e, "path")))
            FAIL("status %d: not an error body: %.*s", status, (int)json_len, body);
        const char *path = json_string_value(json_object_get(e, "path"));
        if (path[0] && path[0] != '/') FAIL("status %d: path \"%s\"", status, path);
        if (status == 500) /* out of memory is the only 500, and there is memory */
            FAIL("status 500: %.*s", (int)json_len, body);
    }
    static int show = -1; /* FUZZ_REQUEST_SHOW=1: print each response */
    if (show < 0) show = getenv("FUZZ_REQUEST_SHOW") != NULL;
    if (show)
        printf("status %d, %zu bytes%s: %.*s\n", status, len,
               o->gzipped ? " (gzipped)" : "", (int)(json_len < 300 ? json_len : 300),
               body);
    json_decref(root);
    if (body != all) srv_mem_free(body);
    free(all);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned flags = 0;
    unsigned long long json_len = 0;
    if (size && (data[0] & 0xF0) == 0xB0) {
        flags = data[0] & 0x0F;
        data++;
        size--;
        if (flags & 1) {
            if (size < 2) return 0;
            json_len = (unsigned long long)data[0] | (unsigned long long)data[1] << 8;
            data += 2;
            size -= 2;
        }
    }
    size_t len = size;
    char *big = fz_expand(data, size, &len);
    char *body = srv_mem_alloc(len + 1);
    if (!body) {
        free(big);
        return 0;
    }
    if (len) memcpy(body, big ? big : (const char *)data, len);
    body[len] = '\0';
    free(big);

    srv_job j;
    srv_job_init(&j, flags & 8 ? SRV_EP_LOSS : SRV_EP_AUTO, body, len, 100000);
    if (flags & 2) {
        j.gzip_in = 1;
        j.max_body = (size_t)1 << 20;
    }
    if (flags & 4) j.gzip_min = 1;
    if (flags & 1) srv_job_set_binary(&j, json_len);
    srv_job_run(&j);
    int status = j.status;
    srv_output *o = srv_job_output(&j);
    if (!o) FAIL("no output (out of memory?)");
    check_output(o, status);
    srv_output_free(o);
    srv_job_free(&j);
    return 0;
}
