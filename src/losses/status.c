/* status.c - status descriptions and error reporting, generated from LOSS_STATUS_MAP. */
#include "loss_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *loss_strerror(int status)
{
    switch (status) {
#define LOSS_STATUS_TEXT_(name, value, code, text) \
    case LOSS_##name:                              \
        return text;
        LOSS_STATUS_MAP(LOSS_STATUS_TEXT_)
#undef LOSS_STATUS_TEXT_
    }
    return "unknown status";
}

const char *loss_status_code(int status)
{
    switch (status) {
#define LOSS_STATUS_CODE_(name, value, code, text) \
    case LOSS_##name:                              \
        return code;
        LOSS_STATUS_MAP(LOSS_STATUS_CODE_)
#undef LOSS_STATUS_CODE_
    }
    return "unknown_status";
}

int loss__fail(loss_error *err, int code, loss_where where, const char *name,
               long long index, const char *fmt, ...)
{
    if (!err) return code;
    err->code = code;
    err->where = where;
    err->index = index;
    err->name[0] = '\0';
    if (name) snprintf(err->name, sizeof err->name, "%s", name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return code;
}

const char *loss__shape_str(const loss_tensor *t, char *buf, size_t len)
{
    size_t used = 0;
    int w = snprintf(buf, len, "[");
    if (w > 0) used = (size_t)w;
    for (size_t i = 0; i < t->rank && used < len; i++) {
        w = snprintf(buf + used, len - used, "%s%zu", i ? ", " : "", t->shape[i]);
        if (w > 0) used += (size_t)w;
    }
    if (used < len) snprintf(buf + used, len - used, "]");
    return buf;
}

size_t loss_tensor_size(const loss_tensor *t)
{
    size_t n = 1;
    for (size_t i = 0; i < t->rank; i++) {
        size_t d = t->shape[i];
        if (d != 0 && n > (size_t)-1 / d) return (size_t)-1;
        n *= d;
    }
    return n;
}

/* Pairwise summation: the error grows as O(log n) instead of O(n), and the order
 * of additions depends only on n, which is what makes the reductions
 * reproducible.  The leaves use four accumulators so the compiler can keep them in
 * registers; their order is fixed too. */
double loss_sum(const double *x, size_t n)
{
    if (n <= LOSS__SUM_LEAF) {
        double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        size_t i = 0;
        for (; i + 4 <= n; i += 4) {
            a0 += x[i];
            a1 += x[i + 1];
            a2 += x[i + 2];
            a3 += x[i + 3];
        }
        for (; i < n; i++) a0 += x[i];
        return (a0 + a1) + (a2 + a3);
    }
    size_t half = loss__sum_half(n);
    return loss_sum(x, half) + loss_sum(x + half, n - half);
}
