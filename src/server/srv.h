/*
 * srv.h - private to the lossd server (src/server).  The server is an executable;
 * this header declares its modules to each other.  Server symbols use the srv_
 * prefix; everything else in a module is static.
 *
 *   buf.c      growable byte buffers with a hard limit
 *   numfmt.c   strict JSON number parsing and round-trip double formatting
 *   jscan.c    the body scanner: validates numbers, lifts numeric arrays out of the
 *              JSON text before jansson parses the rest
 *   codec.c    request bodies -> jobs (core specs, tensors, plans); results -> JSON
 *   job.c      evaluating a job: phases that run on pool threads
 *   catalog.c  GET /v1/losses from the core's descriptor table
 *   metrics.c  Prometheus counters and histograms
 *   http.c     libmicrohttpd: routing, limits, responses
 *   dispatch.c the libuv loop: MHD driven by uv_poll, work on the pool, shutdown
 *   config.c   command line and environment
 *   main.c     lossd, lossd eval
 */
#ifndef SRV_H
#define SRV_H

#include "loss.h"

#include <stddef.h>
#include <stdint.h>

#define SRV_VERSION "0.1.0"

/* ---- mem.c: memory for request data (bodies, numbers, responses) ---- */

/* Like malloc/realloc/free; blocks of 64 KiB and more are mapped (their data
 * page-aligned, whole 2 MiB extents in huge pages, growth by moving pages) and
 * cached for reuse by any thread (up to the cache limit, 256 MiB by default).
 * Free with srv_mem_free only, from any thread. */
void *srv_mem_alloc(size_t n);
void *srv_mem_realloc(void *p, size_t n);
void srv_mem_free(void *p);
size_t srv_mem_size(const void *p);         /* usable bytes */
void srv_mem_set_cache_limit(size_t bytes); /* a lower limit evicts at once */

/* ---- buf.c ---- */

/* A growable byte buffer.  max bounds len (0: no bound); an append past it fails
 * and sets toobig, which stays set (curl's dynbuf does the same). */
typedef struct srv_buf {
    char *data; /* owned (srv_mem); NUL-terminated when len > 0 */
    size_t len, cap, max;
    int toobig;
    int fixed; /* data is borrowed memory of cap bytes, never freed: moves on growth */
} srv_buf;

int srv_buf_reserve(srv_buf *b, size_t extra); /* 0, or -1 (limit or ENOMEM) */
int srv_buf_append(srv_buf *b, const void *p, size_t n);
int srv_buf_puts(srv_buf *b, const char *s);
int srv_buf_printf(srv_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Takes the data out (caller frees it with srv_mem_free); the buffer is empty after. */
char *srv_buf_steal(srv_buf *b, size_t *len);
void srv_buf_free(srv_buf *b);

/* ---- numfmt.c ---- */

/* Longest text srv_fmt_double writes (without NUL). */
#define SRV_DOUBLE_MAX 32

/* Parses one JSON number at s (not beyond end) with the exact grammar of RFC 8259
 * (no '+', no leading '.', no leading zeros, no hex, no NaN/Infinity), correctly
 * rounded.  Returns the end of the number, or NULL when s does not start with a
 * valid number.  *overflow is set when the value is beyond the double range
 * (the value is then +-inf). */
const char *srv_parse_number(const char *s, const char *end, double *out, int *overflow);

/* Writes v in decimal at buf (at most 20 bytes, no NUL); returns the length. */
size_t srv_fmt_uint(char *buf, uint64_t v);

/* Writes the shortest decimal text that reads back as exactly v, JSON syntax,
 * integral values with ".0" (as Python's repr: 0.1, 1e+20, 2.0, -0.0, 1e-07).
 * v should be finite (callers check: see encode.c); infinity and NaN, which JSON
 * cannot write, come out as null, never as a wrong number.  Returns the length
 * written to buf (no NUL). */
size_t srv_fmt_double(char *buf, double v);
/* The same for a float32 value (the shortest text that reads back as that float). */
size_t srv_fmt_float(char *buf, float v);

/* ---- jscan.c ---- */

/* One numeric array lifted out of the body. */
typedef struct srv_lifted {
    size_t offset; /* of its first number in srv_scan.values */
    size_t count;
    size_t rank;
    size_t shape[LOSS_MAX_RANK];
    size_t text_start, text_end;       /* its text in the body */
    size_t compact_start, compact_end; /* its placeholder in srv_scan.text */
    char path[256];                    /* JSON Pointer, for arrays parsed later */
} srv_lifted;

/* A run of numbers of one large array, parsed after the scan. */
typedef struct srv_numchunk {
    size_t array;                /* index into srv_scan.arrays */
    size_t text_start, text_end; /* in the body */
    size_t first, count;         /* numbers [first, first + count) of the array */
    size_t bad;                  /* after parsing: 1 + index of a bad number, or 0 */
    int overflow;                /* ... which is out of range (else malformed) */
} srv_numchunk;

typedef struct srv_scan {
    const char *body; /* borrowed */
    size_t body_len;
    double *values; /* owned: every lifted number */
    size_t n_values, cap_values;
    srv_lifted *arrays; /* owned */
    size_t n_arrays, cap_arrays;
    srv_numchunk *chunks; /* owned: numbers still to parse */
    size_t n_chunks, cap_chunks;
    char *text; /* owned: the compacted document for jansson */
    size_t text_len;
    size_t max_values; /* limit; exceeding it is an error */
    /* the objects holding "binary_data_size", in the order of the text */
    char (*binary_paths)[256]; /* owned: JSON Pointers */
    size_t n_binary, cap_binary;
    /* the scanner walked the whole body as one JSON value: every string was
     * checked for "\u0000", so no placeholder in the text can be forged */
    int complete;
    size_t stop; /* where the walk ended, when not complete */
} srv_scan;

/* Errors of the codec and the HTTP layer, ready to become an error body. */
typedef struct srv_error {
    int status;       /* HTTP status */
    const char *code; /* stable snake_case code */
    char message[320];
    char path[256]; /* JSON Pointer, "" when none */
} srv_error;

/* Scans body[0..len) (borrowed until srv_scan_free): checks numbers outside
 * lifted arrays (422 non_finite_value with the pointer for NaN/Infinity tokens and
 * overflowing numbers), enforces the nesting limit, structures every rectangular
 * all-number array and parses the numbers of the small ones and the first chunk
 * of the large ones; the rest get chunks (scan->chunks) for srv_scan_parse.
 * Malformed JSON is left for jansson.
 * Returns 0, or -1 with err filled. */
int srv_scan_body(const char *body, size_t len, srv_scan *scan, srv_error *err);
/* Parses chunks [c0, c1) (any split, any thread). */
void srv_scan_parse(srv_scan *scan, size_t c0, size_t c1);
/* After every chunk is parsed: reports the first bad number, and builds
 * scan->text, the compacted document with placeholders.  0, or -1 with err. */
int srv_scan_finish(srv_scan *scan, srv_error *err);
/* Maps a byte offset of scan->text back to the body (and its line and column). */
size_t srv_scan_original_offset(const srv_scan *scan, size_t pos, int *line, int *column);
void srv_scan_free(srv_scan *scan);
/* The lifted array a jansson string stands for, or NULL. */
const srv_lifted *srv_scan_lookup(const srv_scan *scan, const char *s, size_t len);

#define SRV_MAX_DEPTH 64

/* Sets e (status, code, printf message); path is copied (may be NULL). */
void srv_error_set(srv_error *e, int status, const char *code, const char *path,
                   const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

/* Appends "/token" to a JSON Pointer with ~ and / escaped (RFC 6901). */
void srv_pointer_push(char *ptr, size_t cap, const char *token, size_t len);
void srv_pointer_push_index(char *ptr, size_t cap, size_t index);

/* Writes an error body {"error": {...}} into b. */
int srv_error_json(const srv_error *e, srv_buf *b);
/* Appends s as a JSON string literal (quotes included). */
int srv_json_string(srv_buf *b, const char *s, size_t len);

/* convert.c: n int32 elements of a binary tensor (little-endian bytes, any
 * alignment) as doubles.  float32 ones: loss_widen_f32 and loss_narrow_f32. */
void srv_widen_int32(double *d, const void *s, size_t n);

/* ---- codec.c, encode.c, job.c: requests as jobs ---- */

/* SRV_EP_AUTO (lossd eval): an objective when the body has "tasks". */
typedef enum srv_endpoint {
    SRV_EP_LOSS = 0,
    SRV_EP_OBJECTIVE = 1,
    SRV_EP_AUTO = 2
} srv_endpoint;

enum { SRV_DTYPE_FLOAT64 = 0, SRV_DTYPE_FLOAT32, SRV_DTYPE_INT64, SRV_DTYPE_INT32 };

/* How a tensor came, so its gradient goes back in the same form. */
typedef struct srv_form {
    int object; /* 1: {"shape", "data"}; 0: a number or nested arrays */
    int dtype;  /* SRV_DTYPE_* */
    int binary; /* its bytes came after the JSON (binary_data_size) */
} srv_form;

/* A tensor whose bytes follow the JSON: where its object is and its bytes are. */
typedef struct srv_binref {
    const char *path;    /* JSON Pointer of the tensor object (in srv_scan) */
    size_t offset, size; /* in the binary section */
    int used;
} srv_binref;

/* Output selection bits. */
enum {
    SRV_OUT_COST = 1,
    SRV_OUT_LOSSES = 2,
    SRV_OUT_GRADIENTS = 4,
    SRV_OUT_METRICS = 8,
    SRV_OUT_OBJECTIVE = 16
};

/* One loss on one batch: the body of /v1/loss, or one task of /v1/objective. */
typedef struct srv_task {
    const char *name; /* objective tasks; borrowed from the DOM */
    char prefix[48];  /* JSON Pointer of the task: "" or "/tasks/3" */
    loss_spec spec;
    loss_tensor in[LOSS_MAX_INPUTS];
    srv_form form[LOSS_MAX_INPUTS];
    loss_tensor weights;
    srv_form wform;
    int has_weights;
    loss_reduction reduction;
    double weight; /* fixed task weight, or the learned s */
    int has_weight;
    loss_plan plan;
    int planned;
    loss_outputs out; /* owned buffers */
    loss_result res;
    size_t unit0; /* first global block index of this task */
} srv_task;

typedef struct srv_penalty {
    loss_penalty pen;
    loss_tensor params;
    srv_form form;
    double value;
    double *grad; /* owned */
} srv_penalty;

/* A large array of the response, formatted after the skeleton in chunks. */
typedef struct srv_part {
    size_t at; /* where its text goes in the skeleton (srv_job.out) */
    const double *v;
    size_t units, unit_len; /* units of unit_len numbers */
    size_t sub_rank;        /* 0: each unit is a number; else nested arrays of */
    size_t sub_shape[LOSS_MAX_RANK];
    int dtype;
} srv_part;

/* A result sent as bytes after the JSON ("binary_outputs"). */
typedef struct srv_bpart {
    const double *v;
    const void *f32; /* or the float32 result itself (the core wrote it so) */
    size_t n;
    int dtype;   /* SRV_DTYPE_FLOAT64 or SRV_DTYPE_FLOAT32 */
    char *bytes; /* after srv_job_complete: the bytes to send (in srv_job.given) */
    size_t len;
} srv_bpart;

typedef struct srv_echunk {
    size_t part, u0, u1; /* units [u0, u1) of a part */
    srv_buf text;
    srv_buf zip; /* text deflated, when the response is gzipped */
    unsigned long crc;
    int failed; /* 1 out of memory, 2 a number its form cannot hold */
} srv_echunk;

/* The response body as pieces to send in order (an iovec). */
typedef struct srv_piece {
    const char *p;
    size_t len;
    const char *deflated; /* the same bytes deflated (srv_deflate_piece), or NULL */
    size_t deflated_len;
    unsigned long crc; /* CRC-32 of p[0, len) when deflated */
} srv_piece;

/* The output of a job, detached from it: its pieces and the buffers that hold
 * them.  Free with srv_output_free (from any thread). */
typedef struct srv_output {
    srv_piece *pieces;
    size_t n_pieces;
    size_t len;      /* total bytes */
    size_t json_len; /* binary outputs: bytes of the JSON before them, else len */
    int gzipped;     /* the pieces are one gzip member */
    int binary;      /* binary outputs follow json_len bytes of JSON (uncompressed) */
    char **bufs;     /* srv_mem blocks */
    size_t n_bufs;
} srv_output;
void srv_output_free(void *output);

typedef struct srv_job {
    srv_endpoint ep;
    char *body; /* owned, NUL-terminated */
    size_t len;
    /* binary tensors: the JSON is body[0, json_len), the bytes follow */
    size_t json_len;   /* == len without Inference-Header-Content-Length */
    int binary_header; /* Inference-Header-Content-Length was given */
    int binary_out;    /* "binary_outputs": true */
    int gzip_in;       /* Content-Encoding: gzip or deflate */
    size_t gzip_min;   /* > 0: gzip the response when it has at least this many bytes */
    size_t max_body;   /* limit of the inflated body */
    srv_output *final; /* after srv_job_complete: the response, ready to send */
    srv_binref *bins;
    size_t n_bins;
    size_t max_elements;
    srv_scan scan;
    void *root;                   /* json_t *, owned */
    void *bin_index, *task_index; /* json_t * objects, owned: bins by path, tasks by
                                     name (codec.c) */
    unsigned outputs;
    srv_task *tasks; /* owned */
    size_t n_tasks;
    loss_weighting scheme;
    int weighting_given;
    srv_penalty *pens; /* owned */
    size_t n_pens;
    void **owned; /* decoded and result arrays (freed with the job; NULL once given
                   * away) */
    size_t n_owned, cap_owned;
    char **given; /* srv_mem blocks handed to the output (binary outputs) */
    size_t n_given, cap_given;
    size_t n_elements;
    size_t n_units; /* blocks of all tasks */
    /* results */
    double *eff, *contrib, *grad_s, *opt_s2; /* owned, n_tasks each */
    double data_term, reg_total;
    srv_error err;
    int failed;
    srv_buf out; /* the response body (JSON), or its skeleton when there are parts */
    srv_part *parts;
    size_t n_parts, cap_parts;
    srv_echunk *echunks; /* formatted by srv_job_encode */
    size_t n_echunks, cap_echunks;
    srv_bpart *bparts; /* binary outputs, in the order of the JSON */
    size_t n_bparts, cap_bparts;
    int body_in_output; /* the response's skeleton, chunks or binary gradients are in
                           the body: it goes with the output */
    int status;
    /* per-stage times, nanoseconds */
    uint64_t t_parse, t_compute, t_encode;
} srv_job;

/* Takes ownership of body (an srv_mem block, len bytes, body[len] == '\0'). */
void srv_job_init(srv_job *j, srv_endpoint ep, char *body, size_t len,
                  size_t max_elements);
/* Binary framing: the first json_len bytes of the body are the JSON (from
 * Inference-Header-Content-Length).  -1 (with j->err: 400) when it does not fit. */
int srv_job_set_binary(srv_job *j, unsigned long long json_len);
/* Phase 1: scan the body (structure, small arrays).  0, or -1 with j->err. */
int srv_job_scan(srv_job *j);
/* Phase 1b: parse the large arrays' numbers, chunks [c0, c1) of
 * j->scan.n_chunks (any split, any thread). */
void srv_job_parse(srv_job *j, size_t c0, size_t c1);
/* Phase 1c: parse the rest with jansson, validate, plan.  0, or -1 with j->err. */
int srv_job_decode(srv_job *j);
/* Phase 2: evaluate global blocks [u0, u1) (any split, any thread). */
void srv_job_compute(srv_job *j, size_t u0, size_t u1);
/* Phase 3: combine, weight, regularize and write the response skeleton (or the
 * error body, status in j->status); large arrays become encoding chunks.
 * Returns how many (j->n_echunks). */
size_t srv_job_prepare(srv_job *j);
/* Phase 3b: format encoding chunks [c0, c1) (any split, any thread). */
void srv_job_encode(srv_job *j, size_t c0, size_t c1);
/* Phase 3c: checks the chunks and frees the job's working memory; the response
 * is then ready (srv_job_output). */
void srv_job_complete(srv_job *j);
/* srv_job_encode of every chunk on this thread (timed), then srv_job_complete. */
void srv_job_encode_here(srv_job *j);
/* srv_job_prepare, then srv_job_encode_here. */
void srv_job_finish(srv_job *j);
/* Takes the response out of a completed job (NULL when out of memory); free it
 * with srv_output_free. */
srv_output *srv_job_output(srv_job *j);
/* Runs the three phases on this thread (lossd eval, small requests). */
void srv_job_run(srv_job *j);
void srv_job_free(srv_job *j);

/* codec internals shared with encode.c */
int srv_codec_decode(srv_job *j); /* after the scan and the chunks */
/* 0, -1 out of memory, or 1: a result its form cannot hold (past float32's range
 * for a float32 form; doubles are checked by the core and finish_objective). */
int srv_encode_response(srv_job *j);
/* Each chunk's failed: 1 out of memory, 2 a result its form cannot hold. */
void srv_encode_chunks(srv_job *j, size_t c0, size_t c1);
/* Turns a core error of task t into j->err (status 422 unless the core says
 * otherwise) with the JSON Pointer of the offending element. */
void srv_core_error(srv_job *j, const srv_task *t, const loss_error *e);

/* A penalty's evaluation error (non-finite params, overflow) as j->err. */
void srv_penalty_error(srv_job *j, const srv_penalty *pen, size_t k, const loss_error *e);
/* Turns an error of loss_weighting_eval into j->err, at /tasks/I/weight or
 * /weighting/log_sigma/I (or log_variance). */
void srv_weighting_error(srv_job *j, const loss_error *e);
/* Frees what the codec owns (decoded arrays, the DOM, the scan). */
void srv_codec_free(srv_job *j);

uint64_t srv_now_ns(void);

/* ---- gzip.c ---- */
/* Inflates a gzip or zlib body (several gzip members too) of at most max bytes.
 * 0, or -1 with err (400 corrupt, 413 too large). */
int srv_inflate(const char *in, size_t in_len, size_t max, char **out, size_t *out_len,
                srv_error *err);
/* Appends in[0, len) deflated as a raw stream ending in a sync flush. */
int srv_deflate_piece(const char *in, size_t len, srv_buf *out);
/* One gzip member from the pieces of o (using their deflated forms when they
 * have them) into gz. */
int srv_gzip_assemble(srv_output *o, srv_output *gz);

/* ---- eval.c ---- */
/* lossd eval [FILE] (argv[0] is "eval"); returns the exit status. */
int srv_eval_main(int argc, char **argv);

/* ---- config.c ---- */

typedef struct srv_config {
    char *bind;
    unsigned long port;
    unsigned long threads;
    unsigned long io_threads;
    unsigned long long max_body_bytes;
    char *api_key_file, *tls_cert, *tls_key;
    int log_json;
    unsigned long max_inflight;
    unsigned long long max_elements;
    unsigned long connection_timeout;
    unsigned long max_connections, max_connections_per_ip;
    int access_log;
    /* loaded from the files above */
    char *api_key;
    char *tls_cert_pem, *tls_key_pem;
} srv_config;

/* Parses flags over environment over defaults.  Returns 0 to run, 1 when --help
 * or --version was printed, -1 after printing an error to stderr. */
int srv_config_parse(srv_config *c, int argc, char **argv);
void srv_config_free(srv_config *c);
/* Defaults of the limits that lossd eval shares with the server (eval reads whole
 * files, so its body limit is larger). */
#define SRV_MAX_ELEMENTS_DEFAULT 50000000
#define SRV_EVAL_MAX_BODY_BYTES  1073741824
/* lossd eval's limits: LOSSD_MAX_BODY_BYTES (default 1 GiB) and LOSSD_MAX_ELEMENTS
 * (the server's default), checked as the server checks them.  0, or -1 after
 * printing an error to stderr. */
int srv_config_eval_limits(unsigned long long *max_body,
                           unsigned long long *max_elements);

/* ---- log.c ---- */
enum { SRV_LOG_ERROR, SRV_LOG_WARN, SRV_LOG_INFO };
void srv_log_init(int json);
void srv_log(int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* One access-log line. */
void srv_log_access(const char *method, const char *path, int status, size_t in,
                    size_t out, double ms, const char *request_id);

/* ---- catalog.c ---- */
/* The GET /v1/losses body, and one entry by name (NULL when unknown); malloc'ed. */
char *srv_catalog_json(const char *name, size_t *len);

/* ---- openapi (generated from api/openapi.yaml) ---- */
extern const char srv_openapi_yaml[];
extern const size_t srv_openapi_yaml_len;

/* ---- metrics.c (loop thread only: no locks) ---- */

enum {
    SRV_EP_M_LOSS,
    SRV_EP_M_OBJECTIVE,
    SRV_EP_M_CATALOG,
    SRV_EP_M_CATALOG_ONE,
    SRV_EP_M_HEALTH,
    SRV_EP_M_READY,
    SRV_EP_M_METRICS,
    SRV_EP_M_OPENAPI,
    SRV_EP_M_OTHER,
    SRV_EP_M_COUNT
};
enum { SRV_STAGE_PARSE, SRV_STAGE_COMPUTE, SRV_STAGE_ENCODE, SRV_STAGE_COUNT };
#define SRV_HIST_BUCKETS 16
#define SRV_STATUS_SLOTS 16

typedef struct srv_hist {
    unsigned long long bucket[SRV_HIST_BUCKETS]; /* cumulative at render time */
    unsigned long long count;
    double sum;
} srv_hist;

typedef struct srv_metrics {
    unsigned long long requests[SRV_EP_M_COUNT][SRV_STATUS_SLOTS];
    srv_hist latency[SRV_EP_M_COUNT];
    srv_hist stage[SRV_STAGE_COUNT];
    unsigned long long bytes_in, bytes_out, rejected_overload;
} srv_metrics;

void srv_metrics_request(srv_metrics *m, int endpoint, int status, double seconds,
                         size_t in, size_t out);
void srv_metrics_stage(srv_metrics *m, int stage, double seconds);
/* The Prometheus text exposition (malloc'ed). */
/* The Prometheus text; open[k]: connections on I/O loop k. */
char *srv_metrics_text(const srv_metrics *m, unsigned long inflight,
                       const unsigned long *open, size_t n_loops, size_t *len);

/* ---- server.c ---- */
int srv_server_run(srv_config *cfg);

#endif /* SRV_H */
