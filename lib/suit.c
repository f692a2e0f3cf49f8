/*
 * SUIT envelopes (draft-ietf-suit-manifest): build and sign our releases,
 * and parse and verify any envelope, ours or the draft's examples. The
 * verifier checks the signature over the SUIT_Digest, then the digest over
 * the manifest's bstr encoding, and only then reads the manifest.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iomt/cbor.h"
#include "iomt/cose.h"
#include "iomt/suit.h"

#define SUIT_ENVELOPE_TAG  107
#define SUIT_DIGEST_SHA256 (-16)

/* Envelope and manifest members. */
#define ENV_AUTH          2
#define ENV_MANIFEST      3
#define MAN_VERSION       1
#define MAN_SEQ           2
#define MAN_COMMON        3
#define MAN_VALIDATE      7
#define MAN_INVOKE        9
#define MAN_TEXT          23
#define COMMON_COMPONENTS 2
#define COMMON_SHARED_SEQ 4

/* Commands and parameters. */
#define CMD_VENDOR_ID          1
#define CMD_CLASS_ID           2
#define CMD_IMAGE_MATCH        3
#define CMD_SET_INDEX          12
#define CMD_SET_PARAMS         19
#define CMD_OVERRIDE           20
#define CMD_INVOKE             23
#define PARAM_VENDOR_ID        1
#define PARAM_CLASS_ID         2
#define PARAM_DIGEST           3
#define PARAM_SIZE             14
#define REPORT_ON_ERROR        2  /* SUIT_Rep_Policy: record failures */
#define REPORT_ALL             15 /* SUIT_Rep_Policy: record everything */
#define TEXT_COMPONENT_VERSION 6
#define TEXT_VENDOR_NAME       1
#define TEXT_MODEL_NAME        2

#define COMPONENTS_MAX  64 /* one bit each in a command's index mask */
#define AUTH_BLOCKS_MAX 4
#define NAME_MAX_LEN    64
#define SBOM_COMPONENT  "sbom"

static const char text_language[] = "en-US";

/* Pointers into the envelope buffer; nothing is copied. */
struct envelope {
    const uint8_t *auth;
    size_t auth_len;
    const uint8_t *manifest_enc; /* bstr head included: what is digested */
    size_t manifest_enc_len;
    const uint8_t *manifest;
    size_t manifest_len;
    const uint8_t *text_enc; /* severed text member, if any */
    size_t text_enc_len;
    const uint8_t *text;
    size_t text_len;
    const uint8_t *digest_enc; /* encoded SUIT_Digest: the COSE payload */
    size_t digest_enc_len;
    uint8_t digest[IOMT_SHA256_LEN];
    const uint8_t *blocks[AUTH_BLOCKS_MAX];
    size_t block_len[AUTH_BLOCKS_MAX];
    size_t nblocks;
};

/* What a command sequence works on while it runs. */
struct seq_ctx {
    struct iomt_suit_manifest *m;
    size_t ncomponents;
    int sbom_index; /* -1 when the manifest has no SBOM component */
    const uint8_t *comp0;
    size_t comp0_len;
    struct iomt_err *err;
};

static int member_bstr(struct iomt_cbor_reader *r, const uint8_t **enc,
                       size_t *enc_len, const uint8_t **p, size_t *n,
                       const char *field)
{
    size_t start = r->off;
    int rc;

    /* A second copy could be read differently by another parser. */
    if (*p != NULL)
        return iomt_err_set(r->err, IOMT_E_INPUT, "%s: duplicate member",
                            field);
    rc = iomt_cbor_get_bstr(r, p, n, field);
    if (rc != IOMT_OK)
        return rc;
    *enc = r->p + start;
    *enc_len = r->off - start;
    return IOMT_OK;
}

static int parse_digest(const uint8_t *p, size_t n, uint8_t out[32],
                        int *supported, const char *field, struct iomt_err *err)
{
    struct iomt_cbor_reader r;
    const uint8_t *bytes;
    size_t count, len;
    int64_t alg;
    int rc;

    *supported = 0;
    iomt_cbor_reader_init(&r, p, n, err);
    rc = iomt_cbor_get_array(&r, &count, field);
    if (rc != IOMT_OK)
        return rc;
    if (count != 2)
        return iomt_err_set(err, IOMT_E_INPUT,
                            "%s: expected [algorithm, bytes], found %zu "
                            "elements",
                            field, count);
    rc = iomt_cbor_get_int(&r, &alg, field);
    if (rc == IOMT_OK)
        rc = iomt_cbor_get_bstr(&r, &bytes, &len, field);
    if (rc != IOMT_OK)
        return rc;
    if (!iomt_cbor_at_end(&r))
        return iomt_err_set(err, IOMT_E_INPUT, "%s: trailing bytes", field);
    if (alg != SUIT_DIGEST_SHA256)
        return IOMT_OK;
    if (len != IOMT_SHA256_LEN)
        return iomt_err_set(err, IOMT_E_INPUT,
                            "%s: SHA-256 digest of %zu bytes", field, len);
    memcpy(out, bytes, IOMT_SHA256_LEN);
    *supported = 1;
    return IOMT_OK;
}

static int parse_envelope_member(struct iomt_cbor_reader *r, struct envelope *e)
{
    const uint8_t *unused_enc = NULL;
    size_t unused_len;
    uint64_t key;
    int rc;

    if (iomt_cbor_peek(r) != IOMT_CBOR_UINT) {
        /* Integrated payloads (text keys) and extensions: skipped. */
        rc = iomt_cbor_skip(r, "envelope key", NULL, NULL);
        if (rc == IOMT_OK)
            rc = iomt_cbor_skip(r, "envelope member", NULL, NULL);
        return rc;
    }
    rc = iomt_cbor_get_uint(r, &key, "envelope key");
    if (rc != IOMT_OK)
        return rc;
    switch (key) {
    case ENV_AUTH:
        return member_bstr(r, &unused_enc, &unused_len, &e->auth, &e->auth_len,
                           "authentication-wrapper");
    case ENV_MANIFEST:
        return member_bstr(r, &e->manifest_enc, &e->manifest_enc_len,
                           &e->manifest, &e->manifest_len, "manifest");
    case MAN_TEXT:
        return member_bstr(r, &e->text_enc, &e->text_enc_len, &e->text,
                           &e->text_len, "envelope text");
    default:
        return iomt_cbor_skip(r, "envelope member", NULL, NULL);
    }
}

static int parse_auth(struct envelope *e, struct iomt_err *err)
{
    struct iomt_cbor_reader r;
    size_t count, i;
    int supported, rc;

    iomt_cbor_reader_init(&r, e->auth, e->auth_len, err);
    rc = iomt_cbor_get_array(&r, &count, "authentication-wrapper");
    if (rc != IOMT_OK)
        return rc;
    if (count < 2 || count > 1 + AUTH_BLOCKS_MAX)
        return iomt_err_set(err, IOMT_E_INPUT,
                            "authentication-wrapper: %zu elements, expected "
                            "a digest and 1 to %d authentication blocks",
                            count, AUTH_BLOCKS_MAX);
    rc = iomt_cbor_get_bstr(&r, &e->digest_enc, &e->digest_enc_len,
                            "authentication digest");
    if (rc == IOMT_OK)
        rc = parse_digest(e->digest_enc, e->digest_enc_len, e->digest,
                          &supported, "authentication digest", err);
    if (rc != IOMT_OK)
        return rc;
    if (!supported)
        return iomt_err_set(err, IOMT_E_VERIFY,
                            "authentication digest: only SHA-256 is "
                            "supported");
    for (i = 1; i < count; i++) {
        rc = iomt_cbor_get_bstr(&r, &e->blocks[i - 1], &e->block_len[i - 1],
                                "authentication block");
        if (rc != IOMT_OK)
            return rc;
    }
    e->nblocks = count - 1;
    if (!iomt_cbor_at_end(&r))
        return iomt_err_set(err, IOMT_E_INPUT,
                            "authentication-wrapper: trailing bytes");
    return IOMT_OK;
}

static int parse_envelope(const uint8_t *p, size_t n, struct envelope *e,
                          struct iomt_err *err)
{
    struct iomt_cbor_reader r;
    uint64_t tag;
    size_t count, i;
    int rc;

    memset(e, 0, sizeof(*e));
    if (n == 0)
        return iomt_err_set(err, IOMT_E_INPUT, "envelope: empty");
    if (n > IOMT_SUIT_ENVELOPE_MAX)
        return iomt_err_set(err, IOMT_E_INPUT, "envelope: %zu bytes, limit %d",
                            n, IOMT_SUIT_ENVELOPE_MAX);
    iomt_cbor_reader_init(&r, p, n, err);
    if (iomt_cbor_peek(&r) == IOMT_CBOR_TAG) {
        rc = iomt_cbor_get_tag(&r, &tag, "envelope tag");
        if (rc != IOMT_OK)
            return rc;
        if (tag != SUIT_ENVELOPE_TAG)
            return iomt_err_set(err, IOMT_E_INPUT,
                                "envelope tag: expected 107, found %llu",
                                (unsigned long long)tag);
    }
    rc = iomt_cbor_get_map(&r, &count, "envelope");
    for (i = 0; rc == IOMT_OK && i < count; i++)
        rc = parse_envelope_member(&r, e);
    if (rc != IOMT_OK)
        return rc;
    if (!iomt_cbor_at_end(&r))
        return iomt_err_set(err, IOMT_E_INPUT,
                            "envelope: trailing bytes at offset %zu", r.off);
    if (e->auth == NULL)
        return iomt_err_set(err, IOMT_E_INPUT,
                            "envelope: no authentication-wrapper (2)");
    if (e->manifest == NULL)
        return iomt_err_set(err, IOMT_E_INPUT, "envelope: no manifest (3)");
    return parse_auth(e, err);
}

static int parse_uuid(struct iomt_cbor_reader *r, uint8_t out[16],
                      const char *field)
{
    const uint8_t *p;
    size_t n;
    int rc = iomt_cbor_get_bstr(r, &p, &n, field);

    if (rc != IOMT_OK)
        return rc;
    if (n != 16)
        return iomt_err_set(r->err, IOMT_E_INPUT,
                            "%s: %zu bytes, expected a 16-byte UUID", field, n);
    memcpy(out, p, 16);
    return IOMT_OK;
}

/* Applies one parameter to every component the index mask selects. */
static int parse_param(struct iomt_cbor_reader *r, struct seq_ctx *c,
                       uint64_t mask, int override)
{
    struct iomt_suit_manifest *m = c->m;
    uint64_t sbom_bit = c->sbom_index >= 0 ? 1ull << c->sbom_index : 0;
    int fw = (mask & 1) != 0, sbom = (mask & sbom_bit) != 0;
    uint8_t id[16] = {0}, digest[IOMT_SHA256_LEN] = {0};
    const uint8_t *p;
    size_t n;
    uint64_t key, size;
    int supported, rc;

    if (iomt_cbor_peek(r) != IOMT_CBOR_UINT) {
        rc = iomt_cbor_skip(r, "parameter key", NULL, NULL);
        return rc == IOMT_OK ? iomt_cbor_skip(r, "parameter", NULL, NULL) : rc;
    }
    rc = iomt_cbor_get_uint(r, &key, "parameter key");
    if (rc != IOMT_OK)
        return rc;
    switch (key) {
    case PARAM_VENDOR_ID:
        rc = parse_uuid(r, id, "vendor-id");
        if (rc == IOMT_OK && fw && (override || !m->has_vendor)) {
            memcpy(m->vendor_id, id, 16);
            m->has_vendor = 1;
        }
        return rc;
    case PARAM_CLASS_ID:
        rc = parse_uuid(r, id, "class-id");
        if (rc == IOMT_OK && fw && (override || !m->has_class)) {
            memcpy(m->class_id, id, 16);
            m->has_class = 1;
        }
        return rc;
    case PARAM_DIGEST:
        rc = iomt_cbor_get_bstr(r, &p, &n, "image-digest");
        if (rc == IOMT_OK)
            rc = parse_digest(p, n, digest, &supported, "image-digest", c->err);
        if (rc != IOMT_OK || !supported)
            return rc;
        if (fw && (override || !m->has_digest)) {
            memcpy(m->image_digest, digest, sizeof(digest));
            m->has_digest = 1;
        }
        if (sbom && (override || !m->has_sbom)) {
            memcpy(m->sbom_digest, digest, sizeof(digest));
            m->has_sbom = 1;
        }
        return IOMT_OK;
    case PARAM_SIZE:
        rc = iomt_cbor_get_uint(r, &size, "image-size");
        if (rc != IOMT_OK)
            return rc;
        if (fw && (override || !m->has_size)) {
            m->image_size = size;
            m->has_size = 1;
        }
        if (sbom)
            m->sbom_size = size;
        return IOMT_OK;
    default:
        return iomt_cbor_skip(r, "parameter", NULL, NULL);
    }
}

static int parse_index(struct iomt_cbor_reader *r, struct seq_ctx *c,
                       uint64_t *mask)
{
    uint64_t index;
    size_t count, i;
    int value, rc;

    switch (iomt_cbor_peek(r)) {
    case IOMT_CBOR_SIMPLE:
        rc = iomt_cbor_get_simple(r, &value, "set-component-index");
        if (rc == IOMT_OK && value != IOMT_CBOR_TRUE)
            rc = iomt_err_set(c->err, IOMT_E_INPUT,
                              "set-component-index: expected true");
        *mask = c->ncomponents >= 64 ? ~0ull : (1ull << c->ncomponents) - 1;
        return rc;
    case IOMT_CBOR_ARRAY:
        rc = iomt_cbor_get_array(r, &count, "set-component-index");
        *mask = 0;
        for (i = 0; rc == IOMT_OK && i < count; i++) {
            rc = iomt_cbor_get_uint(r, &index, "set-component-index");
            if (rc == IOMT_OK && index >= c->ncomponents)
                rc = iomt_err_set(c->err, IOMT_E_INPUT,
                                  "set-component-index: %llu out of range",
                                  (unsigned long long)index);
            if (rc == IOMT_OK)
                *mask |= 1ull << index;
        }
        return rc;
    default:
        rc = iomt_cbor_get_uint(r, &index, "set-component-index");
        if (rc == IOMT_OK && index >= c->ncomponents)
            rc = iomt_err_set(c->err, IOMT_E_INPUT,
                              "set-component-index: %llu out of range",
                              (unsigned long long)index);
        if (rc == IOMT_OK)
            *mask = 1ull << index;
        return rc;
    }
}

/*
 * Reads the parameters a command sequence sets, component by component.
 * Commands other than set-component-index and set/override-parameters are
 * skipped: the caller checks digests and identities itself.
 */
static int run_sequence(const uint8_t *p, size_t n, struct seq_ctx *c)
{
    struct iomt_cbor_reader r;
    uint64_t mask = 1;
    size_t count, i, j, nparams;
    int64_t cmd;
    int rc;

    iomt_cbor_reader_init(&r, p, n, c->err);
    rc = iomt_cbor_get_array(&r, &count, "shared-sequence");
    if (rc != IOMT_OK)
        return rc;
    if (count % 2 != 0)
        return iomt_err_set(c->err, IOMT_E_INPUT,
                            "shared-sequence: odd number of items (%zu)",
                            count);
    for (i = 0; rc == IOMT_OK && i < count; i += 2) {
        rc = iomt_cbor_get_int(&r, &cmd, "shared-sequence command");
        if (rc != IOMT_OK)
            break;
        if (cmd == CMD_SET_INDEX) {
            rc = parse_index(&r, c, &mask);
        } else if (cmd == CMD_OVERRIDE || cmd == CMD_SET_PARAMS) {
            rc = iomt_cbor_get_map(&r, &nparams, "parameters");
            for (j = 0; rc == IOMT_OK && j < nparams; j++)
                rc = parse_param(&r, c, mask, cmd == CMD_OVERRIDE);
        } else {
            rc = iomt_cbor_skip(&r, "command argument", NULL, NULL);
        }
    }
    if (rc == IOMT_OK && !iomt_cbor_at_end(&r))
        rc = iomt_err_set(c->err, IOMT_E_INPUT,
                          "shared-sequence: trailing bytes");
    return rc;
}

static int parse_components(struct iomt_cbor_reader *r, struct seq_ctx *c)
{
    size_t count, i, j, parts;
    const uint8_t *part;
    size_t part_len, start;
    int rc;

    rc = iomt_cbor_get_array(r, &count, "components");
    if (rc != IOMT_OK)
        return rc;
    if (count == 0 || count > COMPONENTS_MAX)
        return iomt_err_set(c->err, IOMT_E_INPUT,
                            "components: %zu entries, expected 1 to %d", count,
                            COMPONENTS_MAX);
    c->ncomponents = count;
    for (i = 0; i < count; i++) {
        start = r->off;
        rc = iomt_cbor_get_array(r, &parts, "component-identifier");
        for (j = 0; rc == IOMT_OK && j < parts; j++)
            rc =
                iomt_cbor_get_bstr(r, &part, &part_len, "component-identifier");
        if (rc != IOMT_OK)
            return rc;
        if (i == 0) {
            c->comp0 = r->p + start;
            c->comp0_len = r->off - start;
        }
        if (parts == 1 && part_len == strlen(SBOM_COMPONENT) &&
            memcmp(part, SBOM_COMPONENT, part_len) == 0 && i > 0)
            c->sbom_index = (int)i;
    }
    return IOMT_OK;
}

static int parse_common(const uint8_t *p, size_t n, struct seq_ctx *c)
{
    struct iomt_cbor_reader r;
    const uint8_t *shared = NULL;
    size_t count, i, shared_len = 0;
    uint64_t key;
    int rc;

    iomt_cbor_reader_init(&r, p, n, c->err);
    rc = iomt_cbor_get_map(&r, &count, "common");
    for (i = 0; rc == IOMT_OK && i < count; i++) {
        if (iomt_cbor_peek(&r) != IOMT_CBOR_UINT) {
            rc = iomt_cbor_skip(&r, "common key", NULL, NULL);
            if (rc == IOMT_OK)
                rc = iomt_cbor_skip(&r, "common member", NULL, NULL);
            continue;
        }
        rc = iomt_cbor_get_uint(&r, &key, "common key");
        if (rc != IOMT_OK)
            break;
        if (key == COMMON_COMPONENTS && c->ncomponents == 0)
            rc = parse_components(&r, c);
        else if (key == COMMON_SHARED_SEQ && shared == NULL)
            rc =
                iomt_cbor_get_bstr(&r, &shared, &shared_len, "shared-sequence");
        else if (key == COMMON_COMPONENTS || key == COMMON_SHARED_SEQ)
            rc = iomt_err_set(c->err, IOMT_E_INPUT,
                              "common: duplicate member %llu",
                              (unsigned long long)key);
        else
            rc = iomt_cbor_skip(&r, "common member", NULL, NULL);
    }
    if (rc != IOMT_OK)
        return rc;
    if (!iomt_cbor_at_end(&r))
        return iomt_err_set(c->err, IOMT_E_INPUT, "common: trailing bytes");
    if (c->ncomponents == 0)
        return iomt_err_set(c->err, IOMT_E_INPUT, "common: no components");
    if (shared == NULL)
        return IOMT_OK;
    return run_sequence(shared, shared_len, c);
}

/* Text ends up on terminals and in JSON: control bytes are refused. */
/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_seq_len(const unsigned char *p, size_t n)
{
    size_t len, i;
    uint32_t cp;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        len = 2;
        cp = p[0] & 0x1f;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        len = 3;
        cp = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        len = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return len;
}

/* Text from a manifest ends up in logs, JSON and terminals: it must be
 * UTF-8 without control characters, or it could forge log lines. */
static int copy_text(const char *s, size_t n, char *out, size_t cap,
                     const char *field, struct iomt_err *err)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i, step;

    if (n >= cap)
        return iomt_err_set(err, IOMT_E_INPUT, "%s: longer than %zu bytes",
                            field, cap - 1);
    for (i = 0; i < n; i += step) {
        if (u[i] < 0x20 || u[i] == 0x7f)
            return iomt_err_set(err, IOMT_E_INPUT,
                                "%s: control character at %zu", field, i);
        step = utf8_seq_len(u + i, n - i);
        if (step == 0)
            return iomt_err_set(err, IOMT_E_INPUT, "%s: not UTF-8 at byte %zu",
                                field, i);
    }
    memcpy(out, s, n);
    out[n] = '\0';
    return IOMT_OK;
}

static int parse_component_text(struct iomt_cbor_reader *r, struct seq_ctx *c,
                                int wanted)
{
    const char *s;
    size_t count, i, len;
    uint64_t key;
    int rc;

    rc = iomt_cbor_get_map(r, &count, "component text");
    for (i = 0; rc == IOMT_OK && i < count; i++) {
        if (!wanted || iomt_cbor_peek(r) != IOMT_CBOR_UINT) {
            rc = iomt_cbor_skip(r, "component text key", NULL, NULL);
            if (rc == IOMT_OK)
                rc = iomt_cbor_skip(r, "component text", NULL, NULL);
            continue;
        }
        rc = iomt_cbor_get_uint(r, &key, "component text key");
        if (rc != IOMT_OK)
            break;
        if (key != TEXT_COMPONENT_VERSION || c->m->version[0] != '\0') {
            rc = iomt_cbor_skip(r, "component text", NULL, NULL);
            continue;
        }
        rc = iomt_cbor_get_tstr(r, &s, &len, "component-version");
        if (rc == IOMT_OK)
            rc = copy_text(s, len, c->m->version, sizeof(c->m->version),
                           "component-version", c->err);
    }
    return rc;
}

/* One language's text map: manifest keys, and component-id keys. */
static int parse_text_lmap(struct iomt_cbor_reader *r, struct seq_ctx *c)
{
    const uint8_t *span;
    size_t count, i, span_len;
    int rc;

    rc = iomt_cbor_get_map(r, &count, "text");
    for (i = 0; rc == IOMT_OK && i < count; i++) {
        if (iomt_cbor_peek(r) != IOMT_CBOR_ARRAY) {
            rc = iomt_cbor_skip(r, "text key", NULL, NULL);
            if (rc == IOMT_OK)
                rc = iomt_cbor_skip(r, "text value", NULL, NULL);
            continue;
        }
        rc = iomt_cbor_skip(r, "text component key", &span, &span_len);
        if (rc == IOMT_OK)
            rc =
                parse_component_text(r, c,
                                     span_len == c->comp0_len &&
                                         memcmp(span, c->comp0, span_len) == 0);
    }
    return rc;
}

static int parse_text(const uint8_t *p, size_t n, struct seq_ctx *c)
{
    struct iomt_cbor_reader r;
    size_t count, i;
    int rc;

    iomt_cbor_reader_init(&r, p, n, c->err);
    if (iomt_cbor_peek(&r) != IOMT_CBOR_MAP)
        return iomt_err_set(c->err, IOMT_E_INPUT, "text: expected a map");
    /* Draft text maps are keyed by language tag; older ones are not. */
    if (n > 1 && (p[1] >> 5) != IOMT_CBOR_TSTR)
        return parse_text_lmap(&r, c);
    rc = iomt_cbor_get_map(&r, &count, "text");
    for (i = 0; rc == IOMT_OK && i < count; i++) {
        if (iomt_cbor_peek(&r) != IOMT_CBOR_TSTR) {
            rc = iomt_cbor_skip(&r, "text key", NULL, NULL);
            if (rc == IOMT_OK)
                rc = iomt_cbor_skip(&r, "text value", NULL, NULL);
            continue;
        }
        rc = iomt_cbor_skip(&r, "text language", NULL, NULL);
        if (rc == IOMT_OK)
            rc = parse_text_lmap(&r, c);
    }
    if (rc == IOMT_OK && !iomt_cbor_at_end(&r))
        rc = iomt_err_set(c->err, IOMT_E_INPUT, "text: trailing bytes");
    return rc;
}

struct manifest_members {
    uint64_t version, seq;
    int has_version, has_seq;
    const uint8_t *common, *text;
    size_t common_len, text_len;
};

static int read_text_member(struct iomt_cbor_reader *r,
                            const struct envelope *e,
                            struct manifest_members *mm, struct iomt_err *err)
{
    uint8_t want[IOMT_SHA256_LEN], got[IOMT_SHA256_LEN];
    const uint8_t *p;
    size_t n;
    int supported = 0, rc;

    if (iomt_cbor_peek(r) == IOMT_CBOR_BSTR)
        return iomt_cbor_get_bstr(r, &mm->text, &mm->text_len, "text");
    /* Severed: the manifest holds the digest of the envelope's member. */
    rc = iomt_cbor_skip(r, "text digest", &p, &n);
    if (rc == IOMT_OK)
        rc = parse_digest(p, n, want, &supported, "text digest", err);
    if (rc != IOMT_OK || !supported || e == NULL || e->text == NULL)
        return rc;
    if (iomt_sha256(e->text_enc, e->text_enc_len, got) != IOMT_OK)
        return iomt_err_set(err, IOMT_E_CRYPTO, "text: hash failed");
    if (memcmp(want, got, sizeof(got)) != 0)
        return iomt_err_set(err, IOMT_E_VERIFY,
                            "text: severed member does not match its "
                            "digest in the manifest");
    mm->text = e->text;
    mm->text_len = e->text_len;
    return IOMT_OK;
}

static int read_manifest_members(const struct envelope *e,
                                 struct manifest_members *mm,
                                 struct iomt_err *err)
{
    struct iomt_cbor_reader r;
    size_t count, i;
    uint64_t key, seen = 0;
    int rc;

    memset(mm, 0, sizeof(*mm));
    iomt_cbor_reader_init(&r, e->manifest, e->manifest_len, err);
    rc = iomt_cbor_get_map(&r, &count, "manifest");
    for (i = 0; rc == IOMT_OK && i < count; i++) {
        if (iomt_cbor_peek(&r) != IOMT_CBOR_UINT) {
            rc = iomt_cbor_skip(&r, "manifest key", NULL, NULL);
            if (rc == IOMT_OK)
                rc = iomt_cbor_skip(&r, "manifest member", NULL, NULL);
            continue;
        }
        rc = iomt_cbor_get_uint(&r, &key, "manifest key");
        if (rc != IOMT_OK)
            break;
        if (key < 64 && (seen & (1ull << key)))
            return iomt_err_set(err, IOMT_E_INPUT,
                                "manifest: duplicate member %llu",
                                (unsigned long long)key);
        if (key < 64)
            seen |= 1ull << key;
        if (key == MAN_VERSION) {
            rc = iomt_cbor_get_uint(&r, &mm->version, "manifest-version");
            mm->has_version = 1;
        } else if (key == MAN_SEQ) {
            rc = iomt_cbor_get_uint(&r, &mm->seq, "manifest-sequence-number");
            mm->has_seq = 1;
        } else if (key == MAN_COMMON) {
            rc = iomt_cbor_get_bstr(&r, &mm->common, &mm->common_len, "common");
        } else if (key == MAN_TEXT) {
            rc = read_text_member(&r, e, mm, err);
        } else {
            rc = iomt_cbor_skip(&r, "manifest member", NULL, NULL);
        }
    }
    if (rc != IOMT_OK)
        return rc;
    if (!iomt_cbor_at_end(&r))
        return iomt_err_set(err, IOMT_E_INPUT, "manifest: trailing bytes");
    if (!mm->has_version)
        return iomt_err_set(err, IOMT_E_INPUT, "manifest-version: missing");
    if (mm->version != 1)
        return iomt_err_set(err, IOMT_E_INPUT,
                            "manifest-version: %llu not supported",
                            (unsigned long long)mm->version);
    if (!mm->has_seq)
        return iomt_err_set(err, IOMT_E_INPUT,
                            "manifest-sequence-number: missing");
    if (mm->common == NULL)
        return iomt_err_set(err, IOMT_E_INPUT, "common: missing");
    return IOMT_OK;
}

static int parse_manifest(const struct envelope *e,
                          struct iomt_suit_manifest *m, struct iomt_err *err)
{
    struct manifest_members mm;
    struct seq_ctx c;
    int rc;

    rc = read_manifest_members(e, &mm, err);
    if (rc != IOMT_OK)
        return rc;
    m->seq = mm.seq;
    memset(&c, 0, sizeof(c));
    c.m = m;
    c.sbom_index = -1;
    c.err = err;
    rc = parse_common(mm.common, mm.common_len, &c);
    if (rc == IOMT_OK && mm.text != NULL)
        rc = parse_text(mm.text, mm.text_len, &c);
    return rc;
}

static int check_manifest_digest(const struct envelope *e,
                                 struct iomt_suit_manifest *m,
                                 struct iomt_err *err)
{
    if (iomt_sha256(e->manifest_enc, e->manifest_enc_len, m->manifest_digest) !=
        IOMT_OK)
        return iomt_err_set(err, IOMT_E_CRYPTO, "manifest: hash failed");
    /* The digest is public: a plain compare leaks nothing secret. */
    if (memcmp(m->manifest_digest, e->digest, IOMT_SHA256_LEN) != 0)
        return iomt_err_set(err, IOMT_E_VERIFY,
                            "manifest digest: SHA-256 of the manifest does "
                            "not match the signed digest");
    return IOMT_OK;
}

int iomt_suit_verify(const uint8_t *env, size_t n,
                     const struct iomt_key *trust_anchor,
                     struct iomt_suit_manifest *m, struct iomt_err *err)
{
    struct iomt_err first = {0}, attempt;
    struct envelope e;
    size_t i;
    int alg = 0, verified = 0, rc;

    memset(m, 0, sizeof(*m));
    if (trust_anchor == NULL)
        return iomt_err_set(err, IOMT_E_INPUT, "trust anchor: missing");
    rc = parse_envelope(env, n, &e, err);
    if (rc != IOMT_OK)
        goto out_wipe;

    /* Any one authentication block signed by the anchor is enough. */
    for (i = 0; i < e.nblocks && !verified; i++) {
        memset(&attempt, 0, sizeof(attempt));
        rc = iomt_cose_sign1_verify(e.blocks[i], e.block_len[i], e.digest_enc,
                                    e.digest_enc_len, trust_anchor, &alg,
                                    &attempt);
        if (rc == IOMT_OK)
            verified = 1;
        else if (i == 0)
            first = attempt;
    }
    if (!verified) {
        rc = iomt_err_set(err, first.code, "%s", first.msg);
        goto out_wipe;
    }
    rc = check_manifest_digest(&e, m, err);
    if (rc != IOMT_OK)
        goto out_wipe;
    m->sig_alg = alg;
    rc = parse_manifest(&e, m, err);
out_wipe:
    if (rc != IOMT_OK)
        memset(m, 0, sizeof(*m));
    return rc;
}

int iomt_suit_parse(const uint8_t *env, size_t n, struct iomt_suit_manifest *m,
                    struct iomt_err *err)
{
    struct envelope e;
    int alg = 0, rc;

    memset(m, 0, sizeof(*m));
    rc = parse_envelope(env, n, &e, err);
    if (rc == IOMT_OK)
        rc = iomt_cose_sign1_alg(e.blocks[0], e.block_len[0], &alg, err);
    if (rc == IOMT_OK)
        rc = check_manifest_digest(&e, m, err);
    if (rc == IOMT_OK) {
        m->sig_alg = alg;
        rc = parse_manifest(&e, m, err);
    }
    if (rc != IOMT_OK)
        memset(m, 0, sizeof(*m));
    return rc;
}

static void uuid_v5(const uint8_t ns[16], const char *name, uint8_t out[16])
{
    uint8_t buf[16 + 256], hash[IOMT_SHA1_LEN];
    size_t len = strlen(name);

    if (len > sizeof(buf) - 16)
        len = sizeof(buf) - 16;
    memcpy(buf, ns, 16);
    memcpy(buf + 16, name, len);
    if (iomt_sha1(buf, 16 + len, hash) != IOMT_OK)
        memset(hash, 0, sizeof(hash));
    memcpy(out, hash, 16);
    out[6] = (uint8_t)((out[6] & 0x0f) | 0x50); /* version 5 */
    out[8] = (uint8_t)((out[8] & 0x3f) | 0x80); /* RFC 9562 variant */
}

void iomt_suit_vendor_uuid(const char *vendor, uint8_t out[16])
{
    /* RFC 9562 namespace ID for DNS names. */
    static const uint8_t ns_dns[16] = {0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad,
                                       0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0,
                                       0x4f, 0xd4, 0x30, 0xc8};

    uuid_v5(ns_dns, vendor, out);
}

void iomt_suit_class_uuid(const uint8_t vendor_uuid[16], const char *cls,
                          uint8_t out[16])
{
    uuid_v5(vendor_uuid, cls, out);
}

void iomt_suit_uuid_str(const uint8_t id[16], char out[37])
{
    char hex[33];

    iomt_hex(id, 16, hex);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12,
             hex + 16, hex + 20);
}

static void put_digest(struct iomt_cbor_writer *w,
                       const uint8_t digest[IOMT_SHA256_LEN])
{
    iomt_cbor_put_array(w, 2);
    iomt_cbor_put_int(w, SUIT_DIGEST_SHA256);
    iomt_cbor_put_bstr(w, digest, IOMT_SHA256_LEN);
}

/* Writes what inner encoded as a bstr .cbor member. */
static void put_wrapped(struct iomt_cbor_writer *w,
                        const struct iomt_cbor_writer *inner)
{
    if (inner->overflow) {
        w->overflow = 1;
        return;
    }
    iomt_cbor_put_bstr(w, inner->buf, inner->len);
}

static int check_name(const char *s, const char *field, struct iomt_err *err)
{
    char copy[NAME_MAX_LEN + 1];

    if (s == NULL || s[0] == '\0')
        return iomt_err_set(err, IOMT_E_INPUT, "%s: missing", field);
    return copy_text(s, strlen(s), copy, sizeof(copy), field, err);
}

static void build_common(struct iomt_cbor_writer *w,
                         const struct iomt_suit_params *prm,
                         const uint8_t vendor_id[16],
                         const uint8_t class_id[16])
{
    static const uint8_t fw_id[] = {0x00};
    uint8_t seq_buf[512], dig_buf[64];
    struct iomt_cbor_writer seq, dig;

    iomt_cbor_writer_init(&seq, seq_buf, sizeof(seq_buf));
    iomt_cbor_put_array(&seq, prm->has_sbom ? 12 : 6);
    if (prm->has_sbom) {
        iomt_cbor_put_uint(&seq, CMD_SET_INDEX);
        iomt_cbor_put_uint(&seq, 0);
    }
    iomt_cbor_put_uint(&seq, CMD_OVERRIDE);
    iomt_cbor_put_map(&seq, 4);
    iomt_cbor_put_uint(&seq, PARAM_VENDOR_ID);
    iomt_cbor_put_bstr(&seq, vendor_id, 16);
    iomt_cbor_put_uint(&seq, PARAM_CLASS_ID);
    iomt_cbor_put_bstr(&seq, class_id, 16);
    iomt_cbor_put_uint(&seq, PARAM_DIGEST);
    iomt_cbor_writer_init(&dig, dig_buf, sizeof(dig_buf));
    put_digest(&dig, prm->image_digest);
    put_wrapped(&seq, &dig);
    iomt_cbor_put_uint(&seq, PARAM_SIZE);
    iomt_cbor_put_uint(&seq, prm->image_size);
    /* The device refuses an image for another vendor or model. */
    iomt_cbor_put_uint(&seq, CMD_VENDOR_ID);
    iomt_cbor_put_uint(&seq, REPORT_ALL);
    iomt_cbor_put_uint(&seq, CMD_CLASS_ID);
    iomt_cbor_put_uint(&seq, REPORT_ALL);
    if (prm->has_sbom) {
        iomt_cbor_put_uint(&seq, CMD_SET_INDEX);
        iomt_cbor_put_uint(&seq, 1);
        iomt_cbor_put_uint(&seq, CMD_OVERRIDE);
        iomt_cbor_put_map(&seq, 2);
        iomt_cbor_put_uint(&seq, PARAM_DIGEST);
        iomt_cbor_writer_init(&dig, dig_buf, sizeof(dig_buf));
        put_digest(&dig, prm->sbom_digest);
        put_wrapped(&seq, &dig);
        iomt_cbor_put_uint(&seq, PARAM_SIZE);
        iomt_cbor_put_uint(&seq, prm->sbom_size);
    }

    iomt_cbor_put_map(w, 2);
    iomt_cbor_put_uint(w, COMMON_COMPONENTS);
    iomt_cbor_put_array(w, prm->has_sbom ? 2 : 1);
    iomt_cbor_put_array(w, 1);
    iomt_cbor_put_bstr(w, fw_id, sizeof(fw_id));
    if (prm->has_sbom) {
        iomt_cbor_put_array(w, 1);
        iomt_cbor_put_bstr(w, (const uint8_t *)SBOM_COMPONENT,
                           strlen(SBOM_COMPONENT));
    }
    iomt_cbor_put_uint(w, COMMON_SHARED_SEQ);
    put_wrapped(w, &seq);
}

static void build_text(struct iomt_cbor_writer *w,
                       const struct iomt_suit_params *prm)
{
    static const uint8_t fw_id[] = {0x00};
    int has_version = prm->version != NULL && prm->version[0] != '\0';

    iomt_cbor_put_map(w, 1);
    iomt_cbor_put_tstr(w, text_language, strlen(text_language));
    iomt_cbor_put_map(w, 1);
    iomt_cbor_put_array(w, 1);
    iomt_cbor_put_bstr(w, fw_id, sizeof(fw_id));
    iomt_cbor_put_map(w, has_version ? 3 : 2);
    iomt_cbor_put_uint(w, TEXT_VENDOR_NAME);
    iomt_cbor_put_tstr(w, prm->vendor, strlen(prm->vendor));
    iomt_cbor_put_uint(w, TEXT_MODEL_NAME);
    iomt_cbor_put_tstr(w, prm->class, strlen(prm->class));
    if (has_version) {
        iomt_cbor_put_uint(w, TEXT_COMPONENT_VERSION);
        iomt_cbor_put_tstr(w, prm->version, strlen(prm->version));
    }
}

static void build_manifest(struct iomt_cbor_writer *w,
                           const struct iomt_suit_params *prm)
{
    uint8_t vendor_id[16], class_id[16];
    uint8_t common_buf[1024], small_buf[32], text_buf[512];
    struct iomt_cbor_writer common, small, text;

    iomt_suit_vendor_uuid(prm->vendor, vendor_id);
    iomt_suit_class_uuid(vendor_id, prm->class, class_id);
    iomt_cbor_writer_init(&common, common_buf, sizeof(common_buf));
    build_common(&common, prm, vendor_id, class_id);

    iomt_cbor_put_map(w, 6);
    iomt_cbor_put_uint(w, MAN_VERSION);
    iomt_cbor_put_uint(w, 1);
    iomt_cbor_put_uint(w, MAN_SEQ);
    iomt_cbor_put_uint(w, prm->seq);
    iomt_cbor_put_uint(w, MAN_COMMON);
    put_wrapped(w, &common);

    /* validate: the image (and SBOM) must match their digests. */
    iomt_cbor_writer_init(&small, small_buf, sizeof(small_buf));
    iomt_cbor_put_array(&small, prm->has_sbom ? 6 : 2);
    iomt_cbor_put_uint(&small, CMD_IMAGE_MATCH);
    iomt_cbor_put_uint(&small, REPORT_ALL);
    if (prm->has_sbom) {
        iomt_cbor_put_uint(&small, CMD_SET_INDEX);
        iomt_cbor_put_uint(&small, 1);
        iomt_cbor_put_uint(&small, CMD_IMAGE_MATCH);
        iomt_cbor_put_uint(&small, REPORT_ALL);
    }
    iomt_cbor_put_uint(w, MAN_VALIDATE);
    put_wrapped(w, &small);

    iomt_cbor_writer_init(&small, small_buf, sizeof(small_buf));
    iomt_cbor_put_array(&small, 2);
    iomt_cbor_put_uint(&small, CMD_INVOKE);
    iomt_cbor_put_uint(&small, REPORT_ON_ERROR);
    iomt_cbor_put_uint(w, MAN_INVOKE);
    put_wrapped(w, &small);

    iomt_cbor_writer_init(&text, text_buf, sizeof(text_buf));
    build_text(&text, prm);
    iomt_cbor_put_uint(w, MAN_TEXT);
    put_wrapped(w, &text);
}

int iomt_suit_sign(const struct iomt_suit_params *params,
                   const struct iomt_key *signer, uint8_t **env,
                   size_t *env_len, struct iomt_err *err)
{
    uint8_t inner_buf[2048], man_buf[2048 + 8], dig_buf[64], auth_buf[256];
    uint8_t cose[IOMT_COSE_SIGN1_MAX], digest[IOMT_SHA256_LEN];
    struct iomt_cbor_writer inner, man, dig, auth, out;
    size_t man_len, dig_len, cose_len, auth_len, len;
    uint8_t *buf = NULL;
    int rc;

    *env = NULL;
    *env_len = 0;
    rc = check_name(params->vendor, "vendor", err);
    if (rc == IOMT_OK)
        rc = check_name(params->class, "class", err);
    if (rc == IOMT_OK && params->version != NULL && params->version[0] != '\0')
        rc = check_name(params->version, "version", err);
    if (rc != IOMT_OK)
        return rc;

    /* The manifest as a bstr, header included: that is what is digested. */
    iomt_cbor_writer_init(&inner, inner_buf, sizeof(inner_buf));
    build_manifest(&inner, params);
    iomt_cbor_writer_init(&man, man_buf, sizeof(man_buf));
    put_wrapped(&man, &inner);
    rc = iomt_cbor_writer_done(&man, &man_len, err);
    if (rc != IOMT_OK)
        return rc;
    if (iomt_sha256(man_buf, man_len, digest) != IOMT_OK)
        return iomt_err_set(err, IOMT_E_CRYPTO, "manifest: hash failed");

    iomt_cbor_writer_init(&dig, dig_buf, sizeof(dig_buf));
    put_digest(&dig, digest);
    rc = iomt_cbor_writer_done(&dig, &dig_len, err);
    if (rc == IOMT_OK)
        rc = iomt_cose_sign1(signer, dig_buf, dig_len, cose, sizeof(cose),
                             &cose_len, err);
    if (rc != IOMT_OK)
        return rc;

    iomt_cbor_writer_init(&auth, auth_buf, sizeof(auth_buf));
    iomt_cbor_put_array(&auth, 2);
    iomt_cbor_put_bstr(&auth, dig_buf, dig_len);
    iomt_cbor_put_bstr(&auth, cose, cose_len);
    rc = iomt_cbor_writer_done(&auth, &auth_len, err);
    if (rc != IOMT_OK)
        return rc;

    len = 16 + auth_len + man_len;
    buf = malloc(len);
    if (buf == NULL)
        return iomt_err_set(err, IOMT_E_NOMEM, "envelope: out of memory");
    iomt_cbor_writer_init(&out, buf, len);
    iomt_cbor_put_tag(&out, SUIT_ENVELOPE_TAG);
    iomt_cbor_put_map(&out, 2);
    iomt_cbor_put_uint(&out, ENV_AUTH);
    iomt_cbor_put_bstr(&out, auth_buf, auth_len);
    iomt_cbor_put_uint(&out, ENV_MANIFEST);
    iomt_cbor_put_raw(&out, man_buf, man_len);
    rc = iomt_cbor_writer_done(&out, env_len, err);
    if (rc != IOMT_OK) {
        free(buf);
        *env_len = 0;
        return rc;
    }
    *env = buf;
    return IOMT_OK;
}

static int check_file(const uint8_t digest[IOMT_SHA256_LEN], uint64_t size,
                      const char *path, const char *what, struct iomt_err *err)
{
    uint8_t got[IOMT_SHA256_LEN];
    char want_hex[65], got_hex[65];
    uint64_t got_size = 0;
    int rc;

    rc = iomt_sha256_file(path, size, got, &got_size, err);
    if (rc == IOMT_E_VERIFY)
        return iomt_err_set(err, rc,
                            "%s size: larger than the %llu bytes "
                            "the manifest says",
                            what, (unsigned long long)size);
    if (rc != IOMT_OK)
        return rc;
    if (got_size != size)
        return iomt_err_set(
            err, IOMT_E_VERIFY, "%s size: %llu bytes, manifest says %llu", what,
            (unsigned long long)got_size, (unsigned long long)size);
    if (memcmp(got, digest, IOMT_SHA256_LEN) != 0) {
        iomt_hex(got, IOMT_SHA256_LEN, got_hex);
        iomt_hex(digest, IOMT_SHA256_LEN, want_hex);
        return iomt_err_set(err, IOMT_E_VERIFY,
                            "%s digest: sha256 %.16s... does not match "
                            "manifest %.16s...",
                            what, got_hex, want_hex);
    }
    return IOMT_OK;
}

int iomt_suit_check_image(const struct iomt_suit_manifest *m,
                          const char *image_path, struct iomt_err *err)
{
    if (!m->has_digest)
        return iomt_err_set(err, IOMT_E_VERIFY,
                            "image digest: manifest carries no SHA-256 "
                            "image digest");
    if (!m->has_size)
        return iomt_err_set(err, IOMT_E_VERIFY,
                            "image size: manifest carries no image size");
    return check_file(m->image_digest, m->image_size, image_path, "image", err);
}

int iomt_suit_check_sbom(const struct iomt_suit_manifest *m,
                         const char *sbom_path, struct iomt_err *err)
{
    if (!m->has_sbom)
        return iomt_err_set(err, IOMT_E_VERIFY,
                            "sbom digest: manifest carries no SBOM");
    return check_file(m->sbom_digest, m->sbom_size, sbom_path, "sbom", err);
}

int iomt_suit_check_seq(const struct iomt_suit_manifest *m, uint64_t installed,
                        struct iomt_err *err)
{
    if (m->seq <= installed)
        return iomt_err_set(err, IOMT_E_ROLLBACK,
                            "sequence number %llu not above installed %llu",
                            (unsigned long long)m->seq,
                            (unsigned long long)installed);
    return IOMT_OK;
}

int iomt_suit_check_identity(const struct iomt_suit_manifest *m,
                             const char *vendor, const char *cls,
                             struct iomt_err *err)
{
    uint8_t vendor_id[16], class_id[16];

    if (vendor == NULL)
        return IOMT_OK;
    iomt_suit_vendor_uuid(vendor, vendor_id);
    if (!m->has_vendor || memcmp(vendor_id, m->vendor_id, 16) != 0)
        return iomt_err_set(err, IOMT_E_VERIFY,
                            "vendor-id: manifest is not for vendor '%s'",
                            vendor);
    if (cls == NULL)
        return IOMT_OK;
    iomt_suit_class_uuid(vendor_id, cls, class_id);
    if (!m->has_class || memcmp(class_id, m->class_id, 16) != 0)
        return iomt_err_set(err, IOMT_E_VERIFY,
                            "class-id: manifest is not for class '%s'", cls);
    return IOMT_OK;
}

static int is_hex_text(const uint8_t *buf, size_t n)
{
    size_t i, digits = 0;

    for (i = 0; i < n; i++) {
        uint8_t c = buf[i];

        if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            continue;
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
              (c >= 'A' && c <= 'F')))
            return 0;
        digits++;
    }
    return digits > 0;
}

long iomt_suit_normalise(uint8_t *buf, size_t n)
{
    if (buf == NULL || n == 0)
        return -1;
    if (!is_hex_text(buf, n))
        return n > (size_t)LONG_MAX ? -1 : (long)n;
    /* Decoding writes behind the read position, so in place is safe. */
    return iomt_unhex((const char *)buf, n, buf, n);
}
