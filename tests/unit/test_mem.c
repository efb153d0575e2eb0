/* test_mem.c - mem.c and buf.c: blocks of every size class, the layout of large
 * blocks, what they cost in resident memory (counted with mincore), growth that
 * keeps the data, the cache, and a buffer's first reservation and borrowed memory. */
#define _GNU_SOURCE /* mincore */
#include "srv.h"
#include "test.h"

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static size_t page;

/* Resident pages of [p, p + n), p's page included. */
static size_t resident(const void *p, size_t n)
{
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(page - 1), b = (uintptr_t)p + n;
    size_t pages = (b - a + page - 1) / page, count = 0;
    unsigned char *vec = malloc(pages);
    if (!vec || mincore((void *)a, pages * page, vec)) {
        CHECK(0, "mincore over %zu pages at %p failed", pages, (void *)a);
        free(vec);
        return 0;
    }
    for (size_t i = 0; i < pages; i++) count += vec[i] & 1;
    free(vec);
    return count;
}

static void fill(unsigned char *p, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) p[i] = (unsigned char)(i * 2654435761u >> 13);
}

static int same(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(i * 2654435761u >> 13)) return 0;
    return 1;
}

static void test_sizes(void)
{
    const size_t sizes[] = {0,           1,   100,     64 * KiB - 1,    64 * KiB,
                            300 * KiB,   MiB, 2 * MiB, 2 * MiB + 12345, 5 * MiB + 7,
                            17 * MiB + 1};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        unsigned char *p = srv_mem_alloc(n);
        CHECK(p != NULL, "%zu bytes", n);
        if (!p) continue;
        CHECK((uintptr_t)p % 16 == 0, "%zu bytes at %p: not 16-byte aligned", n,
              (void *)p);
        CHECK(srv_mem_size(p) >= n, "%zu bytes: usable %zu", n, srv_mem_size(p));
        fill(p, 0, n);
        CHECK(same(p, n), "%zu bytes: the data did not stay", n);
        if (n >= 64 * KiB) {
            /* page-rounded, or to whole 2 MiB extents when they add at most n/8 */
            size_t extra = srv_mem_size(p) - n;
            CHECK(extra < page || (extra <= n / 8 && srv_mem_size(p) % (2 * MiB) == 0),
                  "%zu bytes: usable %zu", n, srv_mem_size(p));
            CHECK((uintptr_t)p % page == 0, "%zu bytes at %p: not page-aligned", n,
                  (void *)p);
        }
        if (n >= 2 * MiB)
            CHECK((uintptr_t)p % (2 * MiB) == 0,
                  "%zu bytes at %p: not on a 2 MiB boundary", n, (void *)p);
        srv_mem_free(p);
    }
    srv_mem_free(NULL);
}

/* A large block costs what is touched of it: its tail beyond the last whole
 * 2 MiB extent is not a huge page, and room not written costs nothing. */
static void test_resident(void)
{
    size_t n = 3 * MiB + 5000;
    unsigned char *p = srv_mem_alloc(n);
    CHECK(p != NULL, "alloc");
    if (!p) return;
    p[n - 1] = 1; /* the tail only */
    size_t r = resident(p - 1, n + 1);
    CHECK(r <= 8, "%zu bytes, the last written: %zu pages resident", n, r);
    fill(p, 0, n); /* all of it */
    r = resident(p - 1, n + 1);
    size_t pages = (n + page - 1) / page;
    CHECK(r <= pages + 8, "%zu bytes written: %zu pages resident, %zu expected", n, r,
          pages);
    CHECK(r >= pages, "%zu bytes written: %zu pages resident (mincore?)", n, r);
    srv_mem_free(p);
}

/* Growth keeps the data; a mapped block grows by moving its pages, so the
 * grown block has no more resident than was written. */
static void test_growth(void)
{
    size_t sizes[] = {100 * KiB, 3 * MiB, 9 * MiB + 3, 9 * MiB + 4};
    unsigned char *p = srv_mem_realloc(NULL, sizes[0]);
    CHECK(p != NULL, "realloc(NULL)");
    if (!p) return;
    fill(p, 0, sizes[0]);
    for (size_t k = 1; k < sizeof sizes / sizeof *sizes; k++) {
        unsigned char *q = srv_mem_realloc(p, sizes[k]);
        CHECK(q != NULL, "grow to %zu", sizes[k]);
        if (!q) break;
        p = q;
        CHECK(same(p, sizes[k - 1]), "grown to %zu: the first %zu bytes changed",
              sizes[k], sizes[k - 1]);
        CHECK(srv_mem_size(p) >= sizes[k], "grown to %zu: usable %zu", sizes[k],
              srv_mem_size(p));
        size_t r = resident(p - 1, srv_mem_size(p) + 1),
               pages = (sizes[k - 1] + page - 1) / page;
        CHECK(r <= pages + 8, "grown from %zu to %zu: %zu pages resident, %zu written",
              sizes[k - 1], sizes[k], r, pages);
        fill(p, sizes[k - 1], sizes[k]);
    }
    CHECK(same(p, sizes[3]), "the last block");
    /* smaller or equal: the same block */
    CHECK(srv_mem_realloc(p, 5) == p, "shrink");
    srv_mem_free(p);
}

static void test_cache(void)
{
    srv_mem_set_cache_limit((size_t)256 << 20);
    unsigned char *p = srv_mem_alloc(6 * MiB);
    CHECK(p != NULL, "alloc");
    if (!p) return;
    fill(p, 0, 6 * MiB);
    srv_mem_free(p);
    unsigned char *q = srv_mem_alloc(6 * MiB - 100);
    CHECK(q == p, "a block of the same size is taken from the cache");
    srv_mem_free(q);
    unsigned char *r = srv_mem_alloc(2 * MiB);
    CHECK(r != p, "a block three times too large is not");
    srv_mem_free(r);

    /* A buffer that doubled once (a response chunk whose estimate was short)
     * is reused for the next buffer's first reservation of the same size. */
    srv_mem_set_cache_limit(0); /* (empties the cache) */
    srv_mem_set_cache_limit((size_t)256 << 20);
    size_t n = 1430065;
    srv_buf b = {0};
    CHECK(srv_buf_reserve(&b, n) == 0 && srv_buf_reserve(&b, n + 2) == 0, "reserve");
    CHECK(b.cap == 2 * (n + 1), "doubled: cap %zu", b.cap);
    fill((unsigned char *)b.data, 0, b.cap);
    char *grown = b.data;
    srv_buf_free(&b);
    srv_buf c = {0};
    CHECK(srv_buf_reserve(&c, n) == 0 && c.data == grown,
          "the doubled block is taken for its first size");
    size_t res = resident(c.data, n);
    CHECK(res >= n / page, "and its pages are there: %zu resident", res);
    srv_buf_free(&c);
}

/* A block freed into a full cache evicts the blocks freed longest ago. */
static void test_cache_lru(void)
{
    srv_mem_set_cache_limit(8 * MiB);
    unsigned char *a = srv_mem_alloc(4 * MiB), *b = srv_mem_alloc(6 * MiB);
    CHECK(a && b, "alloc");
    if (!a || !b) return;
    fill(a, 0, 4 * MiB);
    fill(b, 0, 6 * MiB);
    srv_mem_free(a);
    srv_mem_free(b); /* 10 MiB: a goes */
    unsigned char *q = srv_mem_alloc(6 * MiB);
    size_t r = resident(q, 6 * MiB);
    CHECK(q && r >= 6 * MiB / page && same(q, 6 * MiB),
          "the block freed last is kept: %zu pages resident", r);
    unsigned char *q2 = srv_mem_alloc(4 * MiB);
    r = resident(q2, 4 * MiB);
    CHECK(q2 && r <= 8, "the block freed first was unmapped: %zu pages resident", r);
    srv_mem_free(q);
    srv_mem_free(q2);
    /* a lower limit evicts */
    srv_mem_set_cache_limit(0);
    q = srv_mem_alloc(6 * MiB);
    r = resident(q, 6 * MiB);
    CHECK(q && r <= 8, "a limit of 0 emptied the cache: %zu pages resident", r);
    srv_mem_free(q);
    /* a cache of 0 bytes keeps nothing */
    unsigned char *z = srv_mem_alloc(4 * MiB);
    fill(z, 0, 4 * MiB);
    srv_mem_free(z);
    z = srv_mem_alloc(4 * MiB);
    r = resident(z, 4 * MiB);
    CHECK(z && r <= 8, "a cache of 0 bytes keeps nothing: %zu pages resident", r);
    srv_mem_free(z);
}

/* A buffer's first reservation is exact (a Content-Length); growth doubles. */
static void test_buf(void)
{
    srv_buf b = {0};
    size_t body = 4126471;
    CHECK(srv_buf_reserve(&b, body) == 0, "reserve");
    CHECK(b.cap == body + 1, "reserved %zu for %zu bytes", b.cap, body);
    CHECK(srv_mem_size(b.data) < body + 1 + (body + 1) / 8, "usable %zu",
          srv_mem_size(b.data));
    char chunk[4096];
    memset(chunk, 'x', sizeof chunk);
    for (size_t at = 0; at < body; at += sizeof chunk)
        srv_buf_append(&b, chunk, body - at < sizeof chunk ? body - at : sizeof chunk);
    CHECK(b.len == body && b.cap == body + 1, "filled: len %zu cap %zu", b.len, b.cap);
    CHECK(srv_buf_append(&b, "y", 1) == 0 && b.cap >= 2 * (body + 1), "grown: cap %zu",
          b.cap);
    CHECK(b.data[body] == 'y' && b.data[body - 1] == 'x' && b.data[body + 1] == '\0',
          "the data after growth");
    srv_buf_free(&b);

    srv_buf s = {0};
    CHECK(srv_buf_puts(&s, "a") == 0 && s.cap == 256, "a small first reservation: %zu",
          s.cap);
    srv_buf_free(&s);

    srv_buf m = {0};
    m.max = 100;
    CHECK(srv_buf_reserve(&m, 101) == -1 && m.toobig, "over the limit");
    srv_buf_free(&m);
}

/* A buffer over borrowed memory (a response skeleton in a dead body) stays there
 * while it fits, and moves to memory of its own, data kept, when it must grow; the
 * borrowed memory is left as it was and never freed. */
static void test_buf_borrowed(void)
{
    char *body = srv_mem_alloc(64);
    memset(body, '#', 64);
    srv_buf b = {body, 0, 16, 0, 0, 1};
    b.data[0] = '\0';
    CHECK(srv_buf_puts(&b, "0123456789abcde") == 0 && b.data == body && b.fixed,
          "15 bytes and a NUL fit 16 borrowed bytes");
    CHECK(srv_buf_puts(&b, "f") == 0 && b.data != body && !b.fixed && b.cap >= 17,
          "the 17th byte moves it: fixed %d cap %zu", b.fixed, b.cap);
    CHECK(!strcmp(b.data, "0123456789abcdef") && b.len == 16, "moved: \"%s\"", b.data);
    CHECK(!memcmp(body, "0123456789abcde", 16) && body[16] == '#',
          "the borrowed bytes are as they were");
    srv_buf_free(&b); /* frees its own memory only */
    srv_mem_free(body);

    char room[8];
    srv_buf f = {room, 0, sizeof room, 0, 0, 1};
    CHECK(srv_buf_puts(&f, "1234567") == 0 && f.data == room, "fills its room");
    srv_buf_free(&f);
    CHECK(f.data == NULL && !f.fixed, "freed without freeing the room");
}

int main(void)
{
    page = (size_t)sysconf(_SC_PAGESIZE);
    /* Without the cache, so that every block is fresh, until test_cache. */
    srv_mem_set_cache_limit(0);
    test_sizes();
    test_resident();
    test_growth();
    test_buf();
    test_buf_borrowed();
    test_cache_lru();
    test_cache();
    return test_report("test_mem");
}
