/* buf.c - growable byte buffers with a hard limit. */
#include "srv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int srv_buf_reserve(srv_buf *b, size_t extra)
{
    if (b->toobig) return -1;
    if (extra > SIZE_MAX - b->len - 1 || (b->max && b->len + extra > b->max)) {
        b->toobig = 1;
        return -1;
    }
    size_t need = b->len + extra + 1; /* room for a NUL */
    if (need <= b->cap) return 0;
    /* The first reservation is taken as the caller's estimate (a body's
     * Content-Length, a response's size): exact, so that a 4.1 MB body does
     * not take 8 MB.  Growth after it doubles. */
    size_t cap = b->cap ? b->cap * 2 : need < 256 ? 256 : need;
    if (cap < need || cap < b->cap) cap = need;
    /* Borrowed memory is never grown: the data moves to memory of its own. */
    char *p = b->fixed ? srv_mem_alloc(cap) : srv_mem_realloc(b->data, cap);
    if (!p) return -1;
    if (b->fixed) {
        memcpy(p, b->data, b->len);
        p[b->len] = '\0';
        b->fixed = 0;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int srv_buf_append(srv_buf *b, const void *p, size_t n)
{
    if (srv_buf_reserve(b, n)) return -1;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int srv_buf_puts(srv_buf *b, const char *s)
{
    return srv_buf_append(b, s, strlen(s));
}

int srv_buf_printf(srv_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || srv_buf_reserve(b, (size_t)n)) return -1;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

char *srv_buf_steal(srv_buf *b, size_t *len)
{
    char *p = b->data;
    if (len) *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void srv_buf_free(srv_buf *b)
{
    if (!b->fixed) srv_mem_free(b->data);
    b->fixed = 0;
    b->data = NULL;
    b->len = b->cap = 0;
    b->toobig = 0;
}
