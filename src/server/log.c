/* log.c - log lines on stderr, as text or JSON, each written with one call so
 * that lines from different threads never interleave. */
#include "srv.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int log_json;

void srv_log_init(int json)
{
    log_json = json;
}

static void stamp(char *buf, size_t len)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void emit(srv_buf *b)
{
    if (!b->data) return;
    ssize_t w = write(STDERR_FILENO, b->data, b->len);
    (void)w;
}

static const char *const level_names[] = {"error", "warn", "info"};

/* s into a text line: control characters, DEL and the backslash as \xHH (and
 * spaces too when spaces), so that what a client sent (a path with %0A in it,
 * an escape sequence) can neither end the line nor forge another, nor split a
 * field of the access log. */
static void put_escaped(srv_buf *b, const char *s, int spaces)
{
    const char *run = s; /* the bytes since the last escape, written at once */
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f || c == '\\' || (spaces && c == ' ')) {
            srv_buf_append(b, run, (size_t)(s - run));
            srv_buf_printf(b, "\\x%02x", c);
            run = s + 1;
        }
    }
    srv_buf_append(b, run, (size_t)(s - run));
}

void srv_log(int level, const char *fmt, ...)
{
    char msg[1024], ts[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    stamp(ts, sizeof ts);
    srv_buf b = {0};
    if (log_json) {
        srv_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts,
                       level_names[level]);
        srv_json_string(&b, msg, strlen(msg));
        srv_buf_puts(&b, "}\n");
    } else {
        srv_buf_printf(&b, "%s lossd %s: ", ts, level_names[level]);
        put_escaped(&b, msg, 0);
        srv_buf_puts(&b, "\n");
    }
    emit(&b);
    srv_buf_free(&b);
}

void srv_log_access(const char *method, const char *path, int status, size_t in,
                    size_t out, double ms, const char *request_id)
{
    char ts[40];
    stamp(ts, sizeof ts);
    srv_buf b = {0};
    if (log_json) {
        srv_buf_printf(
            &b, "{\"ts\":\"%s\",\"level\":\"info\",\"msg\":\"request\",\"method\":", ts);
        srv_json_string(&b, method, strlen(method));
        srv_buf_puts(&b, ",\"path\":");
        srv_json_string(&b, path, strlen(path));
        srv_buf_printf(&b,
                       ",\"status\":%d,\"bytes_in\":%zu,\"bytes_out\":%zu,\"ms\":%.3f,"
                       "\"request_id\":",
                       status, in, out, ms);
        srv_json_string(&b, request_id, strlen(request_id));
        srv_buf_puts(&b, "}\n");
    } else {
        srv_buf_printf(&b, "%s lossd info: ", ts);
        put_escaped(&b, method, 1);
        srv_buf_puts(&b, " ");
        put_escaped(&b, path, 1);
        srv_buf_printf(&b, " %d in=%zu out=%zu %.3fms id=", status, in, out, ms);
        put_escaped(&b, request_id, 1);
        srv_buf_puts(&b, "\n");
    }
    emit(&b);
    srv_buf_free(&b);
}
