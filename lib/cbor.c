/*
 * Bounded CBOR reader and deterministic writer (RFC 8949). Every length and
 * count in the input is attacker-controlled: each is checked against the
 * bytes left before it is used, and nesting is capped.
 */
#include <string.h>

#include "iomt/cbor.h"

#define BREAK_BYTE 0xff

static const char *const major_names[] = {
    "unsigned integer",
    "negative integer",
    "byte string",
    "text string",
    "array",
    "map",
    "tag",
    "simple/float",
};

void iomt_cbor_reader_init(struct iomt_cbor_reader *r, const uint8_t *p,
                           size_t n, struct iomt_err *err)
{
    r->p = p;
    r->n = p == NULL ? 0 : n;
    r->off = 0;
    r->err = err;
}

int iomt_cbor_at_end(const struct iomt_cbor_reader *r)
{
    return r->off >= r->n;
}

int iomt_cbor_peek(const struct iomt_cbor_reader *r)
{
    if (r->off >= r->n)
        return -1;
    return r->p[r->off] >> 5;
}

static int truncated(struct iomt_cbor_reader *r, const char *field)
{
    return iomt_err_set(r->err, IOMT_E_INPUT, "%s: truncated at offset %zu",
                        field, r->off);
}

/* Reads a head; a break byte is accepted only when allow_break is set and
 * is reported as major 7 with indefinite set. */
static int read_head(struct iomt_cbor_reader *r, struct iomt_cbor_item *it,
                     int allow_break, const char *field)
{
    size_t left, need, i;
    uint8_t ib, ai;

    if (r->off >= r->n)
        return truncated(r, field);
    memset(it, 0, sizeof(*it));
    it->start = r->off;
    ib = r->p[r->off];
    it->major = ib >> 5;
    ai = ib & 0x1f;
    left = r->n - r->off - 1;
    if (ai < 24) {
        it->arg = ai;
        need = 0;
    } else if (ai <= 27) {
        need = (size_t)1 << (ai - 24);
        if (need > left) {
            r->off = r->n;
            return truncated(r, field);
        }
        for (i = 0; i < need; i++)
            it->arg = (it->arg << 8) | r->p[r->off + 1 + i];
    } else if (ai == 31 &&
               (it->major >= IOMT_CBOR_BSTR && it->major <= IOMT_CBOR_MAP)) {
        it->indefinite = 1;
        need = 0;
    } else if (ai == 31 && it->major == IOMT_CBOR_SIMPLE && allow_break) {
        it->indefinite = 1;
        r->off++;
        it->end = r->off;
        return IOMT_OK;
    } else {
        return iomt_err_set(r->err, IOMT_E_INPUT,
                            "%s: invalid CBOR head 0x%02x at offset %zu", field,
                            ib, r->off);
    }
    if (it->major == IOMT_CBOR_SIMPLE && ai == 24 && it->arg < 32)
        return iomt_err_set(r->err, IOMT_E_INPUT,
                            "%s: invalid simple value at offset %zu", field,
                            r->off);
    r->off += 1 + need;
    if ((it->major == IOMT_CBOR_BSTR || it->major == IOMT_CBOR_TSTR) &&
        !it->indefinite) {
        if (it->arg > r->n - r->off) {
            r->off = r->n;
            return iomt_err_set(r->err, IOMT_E_INPUT,
                                "%s: string length %llu runs past the end",
                                field, (unsigned long long)it->arg);
        }
        it->data = r->p + r->off;
        r->off += (size_t)it->arg;
    }
    it->end = r->off;
    return IOMT_OK;
}

int iomt_cbor_read(struct iomt_cbor_reader *r, struct iomt_cbor_item *it,
                   const char *field)
{
    return read_head(r, it, 0, field);
}

static int is_break(const struct iomt_cbor_reader *r)
{
    return r->off < r->n && r->p[r->off] == BREAK_BYTE;
}

static int skip_item(struct iomt_cbor_reader *r, int depth, const char *field);

static int skip_indefinite(struct iomt_cbor_reader *r,
                           const struct iomt_cbor_item *it, int depth,
                           const char *field)
{
    struct iomt_cbor_item chunk;
    int rc;

    for (;;) {
        if (r->off >= r->n)
            return truncated(r, field);
        if (is_break(r)) {
            r->off++;
            return IOMT_OK;
        }
        if (it->major == IOMT_CBOR_BSTR || it->major == IOMT_CBOR_TSTR) {
            /* Chunks must be definite strings of the same type. */
            rc = read_head(r, &chunk, 0, field);
            if (rc != IOMT_OK)
                return rc;
            if (chunk.major != it->major || chunk.indefinite)
                return iomt_err_set(r->err, IOMT_E_INPUT,
                                    "%s: bad string chunk at offset %zu", field,
                                    chunk.start);
            continue;
        }
        rc = skip_item(r, depth + 1, field);
        if (rc == IOMT_OK && it->major == IOMT_CBOR_MAP) {
            if (is_break(r))
                return iomt_err_set(r->err, IOMT_E_INPUT,
                                    "%s: map key without value", field);
            rc = skip_item(r, depth + 1, field);
        }
        if (rc != IOMT_OK)
            return rc;
    }
}

static int skip_item(struct iomt_cbor_reader *r, int depth, const char *field)
{
    struct iomt_cbor_item it;
    uint64_t count, i;
    int rc;

    if (depth > IOMT_CBOR_DEPTH_MAX)
        return iomt_err_set(r->err, IOMT_E_INPUT,
                            "%s: nested deeper than %d at offset %zu", field,
                            IOMT_CBOR_DEPTH_MAX, r->off);
    rc = read_head(r, &it, 0, field);
    if (rc != IOMT_OK)
        return rc;
    if (it.indefinite)
        return skip_indefinite(r, &it, depth, field);
    switch (it.major) {
    case IOMT_CBOR_ARRAY:
    case IOMT_CBOR_MAP:
        count = it.arg;
        /* Every item takes at least one byte: a cheap bound on the loop. */
        if (count > r->n - r->off ||
            (it.major == IOMT_CBOR_MAP && count > (r->n - r->off) / 2))
            return iomt_err_set(r->err, IOMT_E_INPUT,
                                "%s: %llu items cannot fit at offset %zu",
                                field, (unsigned long long)count, it.start);
        if (it.major == IOMT_CBOR_MAP)
            count *= 2;
        for (i = 0; i < count; i++) {
            rc = skip_item(r, depth + 1, field);
            if (rc != IOMT_OK)
                return rc;
        }
        return IOMT_OK;
    case IOMT_CBOR_TAG:
        return skip_item(r, depth + 1, field);
    default:
        return IOMT_OK;
    }
}

int iomt_cbor_skip(struct iomt_cbor_reader *r, const char *field,
                   const uint8_t **span, size_t *span_len)
{
    size_t start = r->off;
    int rc = skip_item(r, 0, field);

    if (rc != IOMT_OK)
        return rc;
    if (span != NULL)
        *span = r->p + start;
    if (span_len != NULL)
        *span_len = r->off - start;
    return IOMT_OK;
}

static int expect(struct iomt_cbor_reader *r, struct iomt_cbor_item *it,
                  int major, const char *field)
{
    int rc = read_head(r, it, 0, field);

    if (rc != IOMT_OK)
        return rc;
    if (it->major != major)
        return iomt_err_set(
            r->err, IOMT_E_INPUT, "%s: expected %s, found %s at offset %zu",
            field, major_names[major], major_names[it->major], it->start);
    if (it->indefinite)
        return iomt_err_set(r->err, IOMT_E_INPUT,
                            "%s: indefinite length not allowed at offset %zu",
                            field, it->start);
    return IOMT_OK;
}

int iomt_cbor_get_uint(struct iomt_cbor_reader *r, uint64_t *v,
                       const char *field)
{
    struct iomt_cbor_item it;
    int rc = expect(r, &it, IOMT_CBOR_UINT, field);

    if (rc == IOMT_OK)
        *v = it.arg;
    return rc;
}

int iomt_cbor_get_int(struct iomt_cbor_reader *r, int64_t *v, const char *field)
{
    struct iomt_cbor_item it;
    int rc = read_head(r, &it, 0, field);

    if (rc != IOMT_OK)
        return rc;
    if (it.major != IOMT_CBOR_UINT && it.major != IOMT_CBOR_NEGINT)
        return iomt_err_set(r->err, IOMT_E_INPUT,
                            "%s: expected integer, found %s at offset %zu",
                            field, major_names[it.major], it.start);
    if (it.arg > (uint64_t)INT64_MAX)
        return iomt_err_set(r->err, IOMT_E_INPUT,
                            "%s: integer out of range at offset %zu", field,
                            it.start);
    *v = it.major == IOMT_CBOR_UINT ? (int64_t)it.arg : -1 - (int64_t)it.arg;
    return IOMT_OK;
}

int iomt_cbor_get_bstr(struct iomt_cbor_reader *r, const uint8_t **p, size_t *n,
                       const char *field)
{
    struct iomt_cbor_item it;
    int rc = expect(r, &it, IOMT_CBOR_BSTR, field);

    if (rc == IOMT_OK) {
        *p = it.data;
        *n = (size_t)it.arg;
    }
    return rc;
}

int iomt_cbor_get_tstr(struct iomt_cbor_reader *r, const char **s, size_t *n,
                       const char *field)
{
    struct iomt_cbor_item it;
    int rc = expect(r, &it, IOMT_CBOR_TSTR, field);

    if (rc == IOMT_OK) {
        *s = (const char *)it.data;
        *n = (size_t)it.arg;
    }
    return rc;
}

static int get_container(struct iomt_cbor_reader *r, size_t *count, int major,
                         const char *field)
{
    struct iomt_cbor_item it;
    size_t left;
    int rc = expect(r, &it, major, field);

    if (rc != IOMT_OK)
        return rc;
    left = r->n - r->off;
    if (it.arg > left || (major == IOMT_CBOR_MAP && it.arg > left / 2))
        return iomt_err_set(r->err, IOMT_E_INPUT,
                            "%s: %llu items cannot fit at offset %zu", field,
                            (unsigned long long)it.arg, it.start);
    *count = (size_t)it.arg;
    return IOMT_OK;
}

int iomt_cbor_get_array(struct iomt_cbor_reader *r, size_t *count,
                        const char *field)
{
    return get_container(r, count, IOMT_CBOR_ARRAY, field);
}

int iomt_cbor_get_map(struct iomt_cbor_reader *r, size_t *count,
                      const char *field)
{
    return get_container(r, count, IOMT_CBOR_MAP, field);
}

int iomt_cbor_get_tag(struct iomt_cbor_reader *r, uint64_t *tag,
                      const char *field)
{
    struct iomt_cbor_item it;
    int rc = expect(r, &it, IOMT_CBOR_TAG, field);

    if (rc == IOMT_OK)
        *tag = it.arg;
    return rc;
}

int iomt_cbor_get_simple(struct iomt_cbor_reader *r, int *value,
                         const char *field)
{
    struct iomt_cbor_item it;
    uint8_t ai;
    int rc = expect(r, &it, IOMT_CBOR_SIMPLE, field);

    if (rc != IOMT_OK)
        return rc;
    ai = r->p[it.start] & 0x1f;
    if (ai > 24)
        return iomt_err_set(r->err, IOMT_E_INPUT,
                            "%s: expected simple value, found float at "
                            "offset %zu",
                            field, it.start);
    *value = (int)it.arg;
    return IOMT_OK;
}

void iomt_cbor_writer_init(struct iomt_cbor_writer *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = buf == NULL ? 0 : cap;
    w->len = 0;
    w->overflow = 0;
}

static void put_bytes(struct iomt_cbor_writer *w, const uint8_t *p, size_t n)
{
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = 1;
        return;
    }
    if (n > 0)
        memcpy(w->buf + w->len, p, n);
    w->len += n;
}

/* Preferred serialisation: the shortest head that holds the argument. */
static void put_head(struct iomt_cbor_writer *w, int major, uint64_t arg)
{
    uint8_t head[9];
    size_t len, i;

    if (arg < 24) {
        head[0] = (uint8_t)((major << 5) | arg);
        len = 1;
    } else {
        int ai;

        if (arg <= 0xff) {
            ai = 24;
            len = 2;
        } else if (arg <= 0xffff) {
            ai = 25;
            len = 3;
        } else if (arg <= 0xffffffffu) {
            ai = 26;
            len = 5;
        } else {
            ai = 27;
            len = 9;
        }
        head[0] = (uint8_t)((major << 5) | ai);
        for (i = len - 1; i >= 1; i--) {
            head[i] = (uint8_t)(arg & 0xff);
            arg >>= 8;
        }
    }
    put_bytes(w, head, len);
}

void iomt_cbor_put_uint(struct iomt_cbor_writer *w, uint64_t v)
{
    put_head(w, IOMT_CBOR_UINT, v);
}

void iomt_cbor_put_int(struct iomt_cbor_writer *w, int64_t v)
{
    if (v >= 0)
        put_head(w, IOMT_CBOR_UINT, (uint64_t)v);
    else
        put_head(w, IOMT_CBOR_NEGINT, (uint64_t)(-1 - v));
}

void iomt_cbor_put_bstr(struct iomt_cbor_writer *w, const uint8_t *p, size_t n)
{
    put_head(w, IOMT_CBOR_BSTR, n);
    put_bytes(w, p, n);
}

void iomt_cbor_put_tstr(struct iomt_cbor_writer *w, const char *s, size_t n)
{
    put_head(w, IOMT_CBOR_TSTR, n);
    put_bytes(w, (const uint8_t *)s, n);
}

void iomt_cbor_put_array(struct iomt_cbor_writer *w, size_t count)
{
    put_head(w, IOMT_CBOR_ARRAY, count);
}

void iomt_cbor_put_map(struct iomt_cbor_writer *w, size_t count)
{
    put_head(w, IOMT_CBOR_MAP, count);
}

void iomt_cbor_put_tag(struct iomt_cbor_writer *w, uint64_t tag)
{
    put_head(w, IOMT_CBOR_TAG, tag);
}

void iomt_cbor_put_simple(struct iomt_cbor_writer *w, int value)
{
    uint8_t two[2];

    if (value < 24) {
        put_head(w, IOMT_CBOR_SIMPLE, (uint64_t)value);
        return;
    }
    two[0] = 0xf8;
    two[1] = (uint8_t)value;
    put_bytes(w, two, sizeof(two));
}

void iomt_cbor_put_raw(struct iomt_cbor_writer *w, const uint8_t *p, size_t n)
{
    put_bytes(w, p, n);
}

int iomt_cbor_writer_done(const struct iomt_cbor_writer *w, size_t *len,
                          struct iomt_err *err)
{
    if (w->overflow)
        return iomt_err_set(err, IOMT_E_INPUT,
                            "cbor: output larger than %zu bytes", w->cap);
    *len = w->len;
    return IOMT_OK;
}
