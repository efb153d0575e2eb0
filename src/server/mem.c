/* mem.c - memory for large request data.
 *
 * A first touch of fresh memory costs a page fault, and on a virtual machine a
 * page fault can cost 10 us: a 40 MB body, its numbers and a 20 MB response
 * would spend a good part of their time faulting 4 KB pages.  Large blocks are
 * therefore mapped with transparent huge pages requested (one fault per 2 MB),
 * and kept after use in a small cache for the next request, up to a bound.
 * Small blocks go to malloc.  Every block carries a header, so srv_mem_free
 * needs no size and may run on any thread (the cache has a mutex).
 *
 * A large block's data is its size rounded up to 4 KB, not to 2 MB, and starts
 * on a 2 MB boundary, its header at the end of the 4 KB page below.  The kernel
 * puts a huge page only where a whole aligned 2 MB extent lies inside a
 * mapping, so the data's whole extents get huge pages, its tail 4 KB pages, and
 * a block costs what is touched of it, not a 2 MB page for a touched first byte
 * (a 4.1 MB body cost 6 MB; room reserved for a response and not used, 2 MB).
 * When whole extents would add at most an eighth to a block, it is rounded up
 * to them instead: a fresh 4 MB block then costs 2 page faults, not 470 (on
 * this VM, 10 ms).  A large block grows with mremap into a mapping of the same
 * layout: its pages move, nothing is copied, and its huge pages stay huge.
 *
 * The cache keeps the blocks freed last: a block freed into a full cache
 * evicts the ones freed longest ago, so that the blocks of the requests being
 * served now stay (and the bodies of an earlier burst go). */
#include "srv.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define BIG       ((size_t)64 << 10)
#define PAGE      ((size_t)4096)
#define HUGE_PAGE ((size_t)2 << 20)
#define MAGIC     0x6c6f7373u /* "loss" */
#define SLOTS     256

typedef struct hdr {
    size_t size; /* usable bytes after the header */
    uint32_t magic;
    uint32_t mapped; /* 1: the data is at a page's start, the header below it */
    size_t pad;      /* keeps the payload 16-byte aligned */
    size_t pad2;
} hdr;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    hdr *h;
    uint64_t freed; /* when, in frees */
} cache[SLOTS];
static uint64_t frees;
static size_t cached_bytes, cache_limit = (size_t)256 << 20;

/* The mapping of a block of size data bytes (a multiple of PAGE) is its header
 * page and its data. */
static char *mapping(hdr *h)
{
    return (char *)(h + 1) - PAGE;
}

static void unmap(hdr *h)
{
    munmap(mapping(h), PAGE + h->size);
}

/* Under the lock: an empty slot, or -1. */
static int empty_slot(void)
{
    for (int i = 0; i < SLOTS; i++)
        if (!cache[i].h) return i;
    return -1;
}

/* Under the lock: takes the block freed longest ago out of the cache. */
static hdr *take_oldest(void)
{
    int oldest = -1;
    for (int i = 0; i < SLOTS; i++)
        if (cache[i].h && (oldest < 0 || cache[i].freed < cache[oldest].freed))
            oldest = i;
    if (oldest < 0) return NULL;
    hdr *h = cache[oldest].h;
    cache[oldest].h = NULL;
    cached_bytes -= h->size;
    return h;
}

void srv_mem_set_cache_limit(size_t bytes)
{
    hdr *evicted[SLOTS];
    int n = 0;
    pthread_mutex_lock(&lock);
    cache_limit = bytes;
    while (cached_bytes > cache_limit) evicted[n++] = take_oldest();
    pthread_mutex_unlock(&lock);
    while (n) unmap(evicted[--n]);
}

/* Address space for a header page and size data bytes, the data on a 2 MB
 * boundary when size holds a whole huge page; returns the data's address. */
static char *reserve(size_t size, int prot)
{
    int huge = size >= HUGE_PAGE;
    size_t len = PAGE + size + (huge ? HUGE_PAGE - PAGE : 0);
    char *p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    char *data = p + PAGE;
    if (huge) {
        data = (char *)(((uintptr_t)data + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
        if (data - PAGE > p) munmap(p, (size_t)(data - PAGE - p));
        if (data + size < p + len) munmap(data + size, (size_t)(p + len - (data + size)));
    }
    return data;
}

static void advise(char *data, size_t size)
{
#ifdef MADV_HUGEPAGE
    if (size >= HUGE_PAGE) madvise(data, size, MADV_HUGEPAGE);
#else
    (void)data, (void)size;
#endif
}

/* The data size of a block of n bytes: whole pages, or whole extents when
 * they add at most an eighth; 0 when too large. */
static size_t block_size(size_t n)
{
    if (n > SIZE_MAX / 2) return 0;
    size_t pages = (n + PAGE - 1) & ~(PAGE - 1),
           extents = (n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    return extents - n <= n / 8 ? extents : pages;
}

static hdr *map_block(size_t n)
{
    size_t size = block_size(n);
    char *data = size ? reserve(size, PROT_READ | PROT_WRITE) : NULL;
    if (!data) return NULL;
    advise(data, size);
    hdr *h = (hdr *)data - 1;
    h->size = size;
    h->magic = MAGIC;
    h->mapped = 1;
    return h;
}

void *srv_mem_alloc(size_t n)
{
    hdr *h = NULL;
    if (n >= BIG) {
        /* the smallest cached block that fits without wasting more than half
         * (a page more: a buffer that doubled once is reused for its first size) */
        pthread_mutex_lock(&lock);
        int best = -1;
        for (int i = 0; i < SLOTS; i++)
            if (cache[i].h && cache[i].h->size >= n && cache[i].h->size / 2 <= n + PAGE &&
                (best < 0 || cache[i].h->size < cache[best].h->size))
                best = i;
        if (best >= 0) {
            h = cache[best].h;
            cache[best].h = NULL;
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
    hdr *evicted[SLOTS];
    int n = 0;
    pthread_mutex_lock(&lock);
    if (h->size <= cache_limit) {
        int slot;
        while ((slot = empty_slot()) < 0 || cached_bytes + h->size > cache_limit)
            evicted[n++] = take_oldest();
        cache[slot].h = h;
        cache[slot].freed = ++frees;
        cached_bytes += h->size;
        h = NULL;
    }
    pthread_mutex_unlock(&lock);
    while (n) unmap(evicted[--n]);
    if (h) unmap(h);
}

/* Moves the pages of mapped block h into a larger mapping of the same layout;
 * NULL when the kernel would not. */
static hdr *grow_mapped(hdr *h, size_t n)
{
    size_t size = block_size(n);
    char *data = size ? reserve(size, PROT_NONE) : NULL;
    if (!data) return NULL;
    size_t old = h->size; /* h moves */
    void *q = mremap(mapping(h), PAGE + old, PAGE + size, MREMAP_MAYMOVE | MREMAP_FIXED,
                     data - PAGE);
    if (q == MAP_FAILED) {
        munmap(data - PAGE, PAGE + size);
        return NULL;
    }
    /* A block advised already took its advice along.  Otherwise only the
     * extents beyond its pages are advised: advice over the pages would have
     * the kernel fill their extents to huge pages (kernel 6.18 did). */
    if (old < HUGE_PAGE) {
        size_t skip = (old + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
        if (size > skip) advise(data + skip, size - skip);
    }
    h = (hdr *)data - 1;
    h->size = size;
    return h;
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
    if (h->mapped) {
        hdr *g = grow_mapped(h, n);
        if (g) return g + 1;
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
