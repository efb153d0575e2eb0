/* config.c - the command line: every option is a flag and an environment
 * variable (the flag wins), described once in a table that also prints --help. */
#include "srv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { T_STR, T_ULONG, T_ULLONG, T_BOOL, T_LOGFMT };

typedef struct opt {
    const char *flag, *env, *metavar;
    int type;
    size_t off;
    unsigned long long min, max;
    const char *def, *help;
} opt;

#define OFF(f) offsetof(srv_config, f)
static const opt opts[] = {
    {"bind", "LOSSD_BIND", "ADDR", T_STR, OFF(bind), 0, 0, "127.0.0.1",
     "address to listen on (IPv4 or IPv6)"},
    {"port", "LOSSD_PORT", "PORT", T_ULONG, OFF(port), 0, 65535, "8080",
     "TCP port; 0 picks a free one (printed on start)"},
    {"threads", "LOSSD_THREADS", "N", T_ULONG, OFF(threads), 1, 1024, "CPU cores",
     "compute threads (the libuv pool)"},
    {"io-threads", "LOSSD_IO_THREADS", "N", T_ULONG, OFF(io_threads), 1, 64,
     "CPU cores, at most 4",
     "HTTP threads (each a libuv loop with its share of the connections)"},
    {"max-body-bytes", "LOSSD_MAX_BODY_BYTES", "B", T_ULLONG, OFF(max_body_bytes), 1,
     1ULL << 40, "67108864 (64 MiB)", "largest request body; larger ones get 413"},
    {"api-key-file", "LOSSD_API_KEY_FILE", "F", T_STR, OFF(api_key_file), 0, 0, "none",
     "require the key in F (Authorization: Bearer KEY or X-API-Key: KEY)"},
    {"tls-cert", "LOSSD_TLS_CERT", "F", T_STR, OFF(tls_cert), 0, 0, "none",
     "serve HTTPS with this PEM certificate (with --tls-key)"},
    {"tls-key", "LOSSD_TLS_KEY", "F", T_STR, OFF(tls_key), 0, 0, "none",
     "PEM private key for --tls-cert"},
    {"log-format", "LOSSD_LOG_FORMAT", "text|json", T_LOGFMT, OFF(log_json), 0, 0, "text",
     "format of the log lines on stderr"},
    {"max-inflight", "LOSSD_MAX_INFLIGHT", "N", T_ULONG, OFF(max_inflight), 1, 1000000,
     "256", "requests in progress at once; more get 503 + Retry-After"},
    {"max-elements", "LOSSD_MAX_ELEMENTS", "N", T_ULLONG, OFF(max_elements), 1,
     1ULL << 40, "50000000", "numbers in one request; more get 413"},
    {"connection-timeout", "LOSSD_CONNECTION_TIMEOUT", "S", T_ULONG,
     OFF(connection_timeout), 1, 86400, "30",
     "seconds a connection may stay idle (or trickle a request)"},
    {"max-connections", "LOSSD_MAX_CONNECTIONS", "N", T_ULONG, OFF(max_connections), 1,
     65536, "1024", "open connections at once"},
    {"max-connections-per-ip", "LOSSD_MAX_CONNECTIONS_PER_IP", "N", T_ULONG,
     OFF(max_connections_per_ip), 1, 65536, "256",
     "open connections from one client address"},
    {"access-log", "LOSSD_ACCESS_LOG", NULL, T_BOOL, OFF(access_log), 0, 0, "off",
     "log every request (method, path, status, bytes, time, request id)"},
};
#define N_OPTS (sizeof opts / sizeof opts[0])

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: lossd [options]\n"
        "       lossd eval [FILE]     evaluate one request body without a server\n"
        "       lossd --help | --version\n\n"
        "lossd evaluates machine-learning losses, gradients and objectives over HTTP.\n\n"
        "options (each also an environment variable; the flag wins):\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", opts[i].flag, opts[i].metavar ? " " : "",
                 opts[i].metavar ? opts[i].metavar : "");
        fprintf(f, "  %-30s %s\n  %-30s [%s; default %s]\n", left, opts[i].help, "",
                opts[i].env, opts[i].def);
    }
    fprintf(f, "\nOn start lossd prints \"lossd listening on http://ADDR:PORT\" (https "
               "with --tls-cert).\nSIGINT/SIGTERM: stop accepting, answer the requests "
               "in flight, exit 0.\n");
}

static int set(srv_config *c, const opt *o, const char *v, const char *src)
{
    char *base = (char *)c;
    switch (o->type) {
    case T_STR: {
        char **dst = (char **)(base + o->off);
        free(*dst);
        *dst = strdup(v);
        return *dst ? 0 : -1;
    }
    case T_BOOL: {
        int *dst = (int *)(base + o->off);
        if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes") ||
            !strcmp(v, "on"))
            *dst = 1;
        else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no") ||
                 !strcmp(v, "off"))
            *dst = 0;
        else
            goto bad;
        return 0;
    }
    case T_LOGFMT: {
        int *dst = (int *)(base + o->off);
        if (!strcmp(v, "json"))
            *dst = 1;
        else if (!strcmp(v, "text"))
            *dst = 0;
        else
            goto bad;
        return 0;
    }
    default: {
        /* Strict: digits only, the whole string, within range (no atoi). */
        if (!*v || strspn(v, "0123456789") != strlen(v)) goto bad;
        errno = 0;
        unsigned long long n = strtoull(v, NULL, 10);
        if (errno || n < o->min || n > o->max) goto bad;
        if (o->type == T_ULONG)
            *(unsigned long *)(base + o->off) = (unsigned long)n;
        else
            *(unsigned long long *)(base + o->off) = n;
        return 0;
    }
    }
bad:
    if (o->type == T_ULONG || o->type == T_ULLONG)
        fprintf(stderr, "lossd: %s: \"%s\" is not a number in [%llu, %llu]\n", src, v,
                o->min, o->max);
    else
        fprintf(stderr, "lossd: %s: invalid value \"%s\" (%s)\n", src, v,
                o->metavar ? o->metavar : "true or false");
    return -1;
}

static char *read_file(const char *path, const char *what)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "lossd: cannot open %s %s: %s\n", what, path, strerror(errno));
        return NULL;
    }
    srv_buf b = {0};
    b.max = 1 << 20;
    char chunk[4096];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = srv_buf_append(&b, chunk, n);
    fclose(f);
    if (rc || srv_buf_reserve(&b, 0)) {
        fprintf(stderr, "lossd: %s %s is too large\n", what, path);
        srv_buf_free(&b);
        return NULL;
    }
    b.data[b.len] = '\0';
    return srv_buf_steal(&b, NULL);
}

int srv_config_parse(srv_config *c, int argc, char **argv)
{
    memset(c, 0, sizeof *c);
    c->bind = strdup("127.0.0.1");
    c->port = 8080;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    c->threads = cores > 0 ? (unsigned long)cores : 1;
    c->io_threads = c->threads < 4 ? c->threads : 4;
    c->max_body_bytes = 64ULL << 20;
    c->max_inflight = 256;
    c->max_elements = SRV_MAX_ELEMENTS_DEFAULT;
    c->connection_timeout = 30;
    c->max_connections = 1024;
    c->max_connections_per_ip = 256;
    /* Flags first; then the environment for the options no flag set (so that a
     * flag wins even over a variable that would not parse). */
    int set_by_flag[N_OPTS] = {0};
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(arg, "-V") || !strcmp(arg, "--version")) {
            printf("lossd %s\n", SRV_VERSION);
            return 1;
        }
        const opt *o = NULL;
        const char *val = NULL;
        if (!strncmp(arg, "--", 2)) {
            const char *name = arg + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            for (size_t i = 0; i < N_OPTS && !o; i++)
                if (strlen(opts[i].flag) == len && !strncmp(opts[i].flag, name, len))
                    o = &opts[i];
            if (eq) val = eq + 1;
        }
        if (!o) {
            fprintf(stderr, "lossd: unknown argument \"%s\" (see lossd --help)\n", arg);
            return -1;
        }
        if (o->type == T_BOOL && !val) {
            val = "true";
        } else if (!val) {
            if (a + 1 >= argc) {
                fprintf(stderr, "lossd: --%s needs a value (%s)\n", o->flag, o->metavar);
                return -1;
            }
            val = argv[++a];
        }
        char src[64];
        snprintf(src, sizeof src, "--%s", o->flag);
        if (set(c, o, val, src)) return -1;
        set_by_flag[o - opts] = 1;
    }
    for (size_t i = 0; i < N_OPTS; i++) {
        const char *v = getenv(opts[i].env);
        if (!set_by_flag[i] && v && *v && set(c, &opts[i], v, opts[i].env)) return -1;
    }
    if (!!c->tls_cert != !!c->tls_key) {
        fprintf(stderr, "lossd: --tls-cert and --tls-key go together\n");
        return -1;
    }
    if (c->api_key_file) {
        c->api_key = read_file(c->api_key_file, "API key file");
        if (!c->api_key) return -1;
        size_t n = strlen(c->api_key);
        while (n && (c->api_key[n - 1] == '\n' || c->api_key[n - 1] == '\r' ||
                     c->api_key[n - 1] == ' ' || c->api_key[n - 1] == '\t'))
            c->api_key[--n] = '\0';
        if (n == 0) {
            fprintf(stderr, "lossd: the API key file %s is empty\n", c->api_key_file);
            return -1;
        }
    }
    if (c->tls_cert) {
        c->tls_cert_pem = read_file(c->tls_cert, "TLS certificate");
        c->tls_key_pem = read_file(c->tls_key, "TLS key");
        if (!c->tls_cert_pem || !c->tls_key_pem) return -1;
    }
    return 0;
}

int srv_config_eval_limits(unsigned long long *max_body, unsigned long long *max_elements)
{
    srv_config c;
    memset(&c, 0, sizeof c);
    c.max_body_bytes = SRV_EVAL_MAX_BODY_BYTES;
    c.max_elements = SRV_MAX_ELEMENTS_DEFAULT;
    for (size_t i = 0; i < N_OPTS; i++) {
        if (opts[i].off != OFF(max_body_bytes) && opts[i].off != OFF(max_elements))
            continue;
        const char *v = getenv(opts[i].env);
        if (v && *v && set(&c, &opts[i], v, opts[i].env)) return -1;
    }
    *max_body = c.max_body_bytes;
    *max_elements = c.max_elements;
    return 0;
}

void srv_config_free(srv_config *c)
{
    free(c->bind);
    free(c->api_key_file);
    free(c->tls_cert);
    free(c->tls_key);
    srv_mem_free(c->api_key);
    srv_mem_free(c->tls_cert_pem);
    if (c->tls_key_pem) {
        memset(c->tls_key_pem, 0, strlen(c->tls_key_pem));
        srv_mem_free(c->tls_key_pem);
    }
    memset(c, 0, sizeof *c);
}
