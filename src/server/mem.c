/* mem.c - memory for large request data.
 *
 * A first touch of fresh memory costs a page fault, and on a virtual machine a
 * page fault can cost 10 us: a 40 MB body, its numbers and a 20 MB response
 * would spend a good part of their time faulting 4 KB pages.  Large blocks are
 * therefore mapped with transparent huge pages requested (one fault per 2 MB),
 * and kept after use in a small cache for the next request, up to a bound.
 * Small blocks go to malloc.  Every block carries a header, so srv_mem_free
 * needs no size and may run on any thread (the cache has a mutex). */
#include "srv.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define BIG       ((size_t)1 << 20)
#define HUGE_PAGE ((size_t)2 << 20)
#define MAGIC     0x6c6f7373u /* "loss" */
#define SLOTS     32

typedef struct hdr {
    size_t size; /* usable bytes after the header */
    uint32_t magic;
    uint32_t mapped; /* 1: mmap'ed block of size + sizeof(hdr) bytes */
    size_t pad;      /* keeps the payload 16-byte aligned */
    size_t pad2;
} hdr;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static hdr *cache[SLOTS];
static size_t cached_bytes, cache_limit = (size_t)256 << 20;

void srv_mem_set_cache_limit(size_t bytes)
{
    pthread_mutex_lock(&lock);
    cache_limit = bytes;
    pthread_mutex_unlock(&lock);
}

static hdr *map_block(size_t n)
{
    size_t total = (n + sizeof(hdr) + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    if (total < n) return NULL;
    void *p =
        mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, total, MADV_HUGEPAGE);
#endif
    hdr *h = p;
    h->size = total - sizeof(hdr);
    h->magic = MAGIC;
    h->mapped = 1;
    return h;
}

void *srv_mem_alloc(size_t n)
{
    hdr *h = NULL;
    if (n >= BIG) {
        /* the smallest cached block that fits without wasting more than half */
        pthread_mutex_lock(&lock);
        int best = -1;
        for (int i = 0; i < SLOTS; i++)
            if (cache[i] && cache[i]->size >= n && cache[i]->size / 2 <= n &&
                (best < 0 || cache[i]->size < cache[best]->size))
                best = i;
        if (best >= 0) {
            h = cache[best];
            cache[best] = NULL;
            cached_bytes -= h->size;
        }
        pthread_mutex_unlock(&lock);
        if (!h) h = map_block(n);
    } else {
        if (n > SIZE_MAX - sizeof(hdr)) return NULL;
        h = malloc(sizeof(hdr) + n);
        if (h) {
            h->size = n;
            h->magic = MAGIC;
            h->mapped = 0;
        }
    }
    return h ? (void *)(h + 1) : NULL;
}

void srv_mem_free(void *p)
{
    if (!p) return;
    hdr *h = (hdr *)p - 1;
    if (!h->mapped) {
        free(h);
        return;
    }
    pthread_mutex_lock(&lock);
    int slot = -1;
    for (int i = 0; i < SLOTS && slot < 0; i++)
        if (!cache[i]) slot = i;
    if (slot >= 0 && cached_bytes + h->size <= cache_limit) {
        cache[slot] = h;
        cached_bytes += h->size;
        h = NULL;
    }
    pthread_mutex_unlock(&lock);
    if (h) munmap(h, h->size + sizeof(hdr));
}

void *srv_mem_realloc(void *p, size_t n)
{
    if (!p) return srv_mem_alloc(n);
    hdr *h = (hdr *)p - 1;
    if (n <= h->size) return p;
    if (!h->mapped && n < BIG) {
        hdr *g = realloc(h, sizeof(hdr) + n);
        if (!g) return NULL;
        g->size = n;
        return g + 1;
    }
    void *q = srv_mem_alloc(n);
    if (!q) return NULL;
    memcpy(q, p, h->size);
    srv_mem_free(p);
    return q;
}

size_t srv_mem_size(const void *p)
{
    return p ? ((const hdr *)p - 1)->size : 0;
}
