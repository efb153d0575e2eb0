/* jsonw.c - small JSON writing helpers: string literals, JSON Pointers, error
 * bodies. */
#include "srv.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Length of the well-formed UTF-8 sequence at s (Unicode 15, table 3-7: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_sequence(const unsigned char *s, size_t len)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t n;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (len < n || s[1] < lo || s[1] > hi) return 0;
    for (size_t k = 2; k < n; k++)
        if (s[k] < 0x80 || s[k] > 0xBF) return 0;
    return n;
}

/* The text may echo bytes of a request (object keys in error messages) that were
 * never validated: ill-formed UTF-8 becomes U+FFFD, so the output is valid JSON. */
int srv_json_string(srv_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (srv_buf_reserve(b, len + 2)) return -1;
    b->data[b->len++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc = 0;
        switch (c) {
        case '"':
            esc = '"';
            break;
        case '\\':
            esc = '\\';
            break;
        case '\n':
            esc = 'n';
            break;
        case '\r':
            esc = 'r';
            break;
        case '\t':
            esc = 't';
            break;
        case '\b':
            esc = 'b';
            break;
        case '\f':
            esc = 'f';
            break;
        }
        if (esc) {
            char e[2] = {'\\', esc};
            if (srv_buf_append(b, e, 2)) return -1;
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            if (srv_buf_append(b, e, 6)) return -1;
        } else if (c >= 0x80) {
            size_t n = utf8_sequence((const unsigned char *)s + i, len - i);
            if (srv_buf_append(b, n ? &s[i] : "\xEF\xBF\xBD", n ? n : 3)) return -1;
            if (n) i += n - 1;
        } else if (srv_buf_append(b, &s[i], 1)) {
            return -1;
        }
    }
    return srv_buf_append(b, "\"", 1);
}

void srv_error_set(srv_error *e, int status, const char *code, const char *path,
                   const char *fmt, ...)
{
    e->status = status;
    e->code = code;
    snprintf(e->path, sizeof e->path, "%s", path ? path : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

void srv_pointer_push(char *ptr, size_t cap, const char *token, size_t len)
{
    size_t used = strlen(ptr);
    if (used + 1 >= cap) return;
    ptr[used++] = '/';
    for (size_t i = 0; i < len && used + 2 < cap; i++) {
        if (token[i] == '~' || token[i] == '/') {
            ptr[used++] = '~';
            ptr[used++] = token[i] == '~' ? '0' : '1';
        } else {
            ptr[used++] = token[i];
        }
    }
    ptr[used] = '\0';
}

void srv_pointer_push_index(char *ptr, size_t cap, size_t index)
{
    char tok[24];
    int n = snprintf(tok, sizeof tok, "%zu", index);
    srv_pointer_push(ptr, cap, tok, (size_t)n);
}

int srv_error_json(const srv_error *e, srv_buf *b)
{
    int rc = srv_buf_puts(b, "{\"error\":{\"code\":");
    rc |= srv_json_string(b, e->code, strlen(e->code));
    rc |= srv_buf_puts(b, ",\"message\":");
    rc |= srv_json_string(b, e->message, strlen(e->message));
    rc |= srv_buf_puts(b, ",\"path\":");
    rc |= srv_json_string(b, e->path, strlen(e->path));
    rc |= srv_buf_puts(b, "}}\n");
    return rc ? -1 : 0;
}
