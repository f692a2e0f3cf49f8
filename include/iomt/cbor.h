/*
 * A small CBOR (RFC 8949) reader and writer for SUIT and COSE. The reader
 * never allocates: it walks a caller's buffer with a cursor and bounds every
 * read. The writer fills a caller's buffer with deterministic (preferred,
 * shortest-form) encodings and records overflow instead of writing past it.
 */
#ifndef IOMT_CBOR_H
#define IOMT_CBOR_H

#include <stddef.h>
#include <stdint.h>

#include "iomt/error.h"

#define IOMT_CBOR_DEPTH_MAX 16 /* nesting limit when skipping items */

enum iomt_cbor_major {
    IOMT_CBOR_UINT = 0,
    IOMT_CBOR_NEGINT = 1,
    IOMT_CBOR_BSTR = 2,
    IOMT_CBOR_TSTR = 3,
    IOMT_CBOR_ARRAY = 4,
    IOMT_CBOR_MAP = 5,
    IOMT_CBOR_TAG = 6,
    IOMT_CBOR_SIMPLE = 7, /* simple values and floats */
};

#define IOMT_CBOR_FALSE 20
#define IOMT_CBOR_TRUE  21
#define IOMT_CBOR_NULL  22

/* Reader cursor over p[0..n). Errors go to err with the field's name. */
struct iomt_cbor_reader {
    const uint8_t *p;
    size_t n;
    size_t off;
    struct iomt_err *err;
};

/* One data item head; for definite strings, data points at the content. */
struct iomt_cbor_item {
    int major;
    uint64_t arg; /* value, length, count, tag number, simple/float bits */
    int indefinite;
    const uint8_t *data;
    size_t start; /* offset of the head */
    size_t end;   /* offset after the head (and string content) */
};

void iomt_cbor_reader_init(struct iomt_cbor_reader *r, const uint8_t *p,
                           size_t n, struct iomt_err *err);
int iomt_cbor_at_end(const struct iomt_cbor_reader *r);
/* Major type of the next item, or -1 at the end. */
int iomt_cbor_peek(const struct iomt_cbor_reader *r);

/* Reads one head (plus content for a definite string). */
int iomt_cbor_read(struct iomt_cbor_reader *r, struct iomt_cbor_item *it,
                   const char *field);
/* Skips one whole data item, nested ones included, up to the depth limit.
 * span (optional) receives the item's encoded bytes. */
int iomt_cbor_skip(struct iomt_cbor_reader *r, const char *field,
                   const uint8_t **span, size_t *span_len);

/* Typed reads: each fails with IOMT_E_INPUT naming field on a wrong type. */
int iomt_cbor_get_uint(struct iomt_cbor_reader *r, uint64_t *v,
                       const char *field);
int iomt_cbor_get_int(struct iomt_cbor_reader *r, int64_t *v,
                      const char *field);
int iomt_cbor_get_bstr(struct iomt_cbor_reader *r, const uint8_t **p, size_t *n,
                       const char *field);
int iomt_cbor_get_tstr(struct iomt_cbor_reader *r, const char **s, size_t *n,
                       const char *field);
/* Definite-length containers only; counts are bounded by the bytes left. */
int iomt_cbor_get_array(struct iomt_cbor_reader *r, size_t *count,
                        const char *field);
int iomt_cbor_get_map(struct iomt_cbor_reader *r, size_t *count,
                      const char *field);
int iomt_cbor_get_tag(struct iomt_cbor_reader *r, uint64_t *tag,
                      const char *field);
/* A simple value (false, true, null, ...); floats are rejected. */
int iomt_cbor_get_simple(struct iomt_cbor_reader *r, int *value,
                         const char *field);

/* Writer into buf[0..cap). */
struct iomt_cbor_writer {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int overflow;
};

void iomt_cbor_writer_init(struct iomt_cbor_writer *w, uint8_t *buf,
                           size_t cap);
void iomt_cbor_put_uint(struct iomt_cbor_writer *w, uint64_t v);
void iomt_cbor_put_int(struct iomt_cbor_writer *w, int64_t v);
void iomt_cbor_put_bstr(struct iomt_cbor_writer *w, const uint8_t *p, size_t n);
void iomt_cbor_put_tstr(struct iomt_cbor_writer *w, const char *s, size_t n);
void iomt_cbor_put_array(struct iomt_cbor_writer *w, size_t count);
void iomt_cbor_put_map(struct iomt_cbor_writer *w, size_t count);
void iomt_cbor_put_tag(struct iomt_cbor_writer *w, uint64_t tag);
void iomt_cbor_put_simple(struct iomt_cbor_writer *w, int value);
/* Copies already-encoded CBOR. */
void iomt_cbor_put_raw(struct iomt_cbor_writer *w, const uint8_t *p, size_t n);
/* IOMT_OK and the length written, or IOMT_E_INPUT if the buffer was short. */
int iomt_cbor_writer_done(const struct iomt_cbor_writer *w, size_t *len,
                          struct iomt_err *err);

#endif
