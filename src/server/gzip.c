/* gzip.c - Content-Encoding: compressed request bodies (inflated with a hard cap,
 * never trusting the gzip trailer's size) and gzip responses assembled from
 * independently deflated pieces, as pigz does: each piece is a raw deflate
 * stream ending in a sync flush, so the pieces can be compressed on different
 * threads and still join into one gzip member (CRCs joined with
 * crc32_combine). */
#include "srv.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

int srv_inflate(const char *in, size_t in_len, size_t max, char **out, size_t *out_len,
                srv_error *err)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 32) != Z_OK) { /* gzip or zlib, detected */
        srv_error_set(err, 500, "internal_error", "", "zlib: %s", z.msg ? z.msg : "init");
        return -1;
    }
    /* The output may pass max by one byte, which tells that the body is too big;
     * the buffer grows by doubling, but never past that byte. */
    size_t limit = max < SIZE_MAX - 1 ? max + 1 : SIZE_MAX - 1;
    srv_buf b = {0};
    b.max = limit;
    size_t first = in_len < limit / 4 ? in_len * 4 : limit;
    if (first < 65536) first = limit < 65536 ? limit : 65536;
    if (srv_buf_reserve(&b, first)) goto nomem;
    z.next_in = (unsigned char *)(uintptr_t)in;
    int rc = Z_OK;
    size_t left = in_len;
    while (rc != Z_STREAM_END) {
        size_t room = b.cap - b.len - 1;
        if (room < 65536 && b.len + room < limit) {
            size_t grow = b.cap < limit - b.len ? b.cap : limit - b.len;
            if (srv_buf_reserve(&b, grow)) goto nomem;
            room = b.cap - b.len - 1;
        }
        if (room > limit - b.len) room = limit - b.len;
        uInt chunk = left > (1u << 30) ? (1u << 30) : (uInt)left;
        z.avail_in = chunk;
        z.next_out = (unsigned char *)b.data + b.len;
        z.avail_out = room > (1u << 30) ? (1u << 30) : (uInt)room;
        uInt before_out = z.avail_out;
        rc = inflate(&z, Z_NO_FLUSH);
        left -= chunk - z.avail_in;
        b.len += before_out - z.avail_out;
        if (b.len > max) goto toobig;
        if (rc == Z_STREAM_END && left > 0) { /* another gzip member follows */
            inflateReset(&z);
            rc = Z_OK;
            continue;
        }
        if (rc == Z_STREAM_END) break;
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            srv_error_set(err, 400, "invalid_content_encoding", "",
                          "the compressed body is corrupt: %s",
                          z.msg ? z.msg : "inflate error");
            goto fail;
        }
        if (rc == Z_BUF_ERROR && left == 0 && z.avail_out) {
            srv_error_set(err, 400, "invalid_content_encoding", "",
                          "the compressed body ends before its end");
            goto fail;
        }
    }
    inflateEnd(&z);
    b.data[b.len] = '\0';
    *out = srv_buf_steal(&b, out_len);
    return 0;
toobig:
    srv_error_set(err, 413, "body_too_large", "",
                  "the inflated body is larger than %zu bytes (--max-body-bytes)", max);
    goto fail;
nomem:
    srv_error_set(err, 500, "internal_error", "", "out of memory inflating the body");
fail:
    inflateEnd(&z);
    srv_buf_free(&b);
    return -1;
}

/* Deflates in[0, len) as a raw stream ending in a sync flush (appended to out). */
int srv_deflate_piece(const char *in, size_t len, srv_buf *out)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) return -1;
    size_t bound = deflateBound(&z, (uLong)len) + 16;
    if (srv_buf_reserve(out, bound)) {
        deflateEnd(&z);
        return -1;
    }
    z.next_in = (unsigned char *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = (unsigned char *)out->data + out->len;
    z.avail_out = (uInt)bound;
    int rc = deflate(&z, Z_SYNC_FLUSH);
    out->len += bound - z.avail_out;
    deflateEnd(&z);
    return rc == Z_OK || rc == Z_BUF_ERROR ? 0 : -1;
}

int srv_gzip_assemble(srv_output *o, srv_output *gz)
{
    /* header, pieces, an empty final block, CRC-32 and size */
    static const unsigned char head[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    srv_buf b = {0};
    int rc = srv_buf_append(&b, head, sizeof head);
    uLong crc = crc32(0L, Z_NULL, 0);
    for (size_t i = 0; !rc && i < o->n_pieces; i++) {
        const srv_piece *p = &o->pieces[i];
        if (p->deflated) {
            rc = srv_buf_append(&b, p->deflated, p->deflated_len);
            crc = crc32_combine(crc, p->crc, (z_off_t)p->len);
        } else {
            rc = srv_deflate_piece(p->p, p->len, &b);
            crc = crc32(crc, (const unsigned char *)p->p, (uInt)p->len);
        }
    }
    unsigned char tail[10] = {3, 0}; /* a final, empty, fixed-Huffman block */
    uLong isize = (uLong)(o->len & 0xffffffffu);
    for (int k = 0; k < 4; k++) {
        tail[2 + k] = (unsigned char)(crc >> (8 * k));
        tail[6 + k] = (unsigned char)(isize >> (8 * k));
    }
    rc = rc ? rc : srv_buf_append(&b, tail, sizeof tail);
    if (rc) {
        srv_buf_free(&b);
        return -1;
    }
    memset(gz, 0, sizeof *gz);
    gz->pieces = calloc(1, sizeof *gz->pieces);
    gz->bufs = calloc(1, sizeof *gz->bufs);
    if (!gz->pieces || !gz->bufs) {
        free(gz->pieces);
        free(gz->bufs);
        srv_buf_free(&b);
        return -1;
    }
    size_t len;
    char *data = srv_buf_steal(&b, &len);
    gz->pieces[0] = (srv_piece){data, len, NULL, 0, 0};
    gz->n_pieces = 1;
    gz->bufs[0] = data;
    gz->n_bufs = 1;
    gz->len = gz->json_len = len;
    return 0;
}
