/*
 * COSE_Sign1 with a detached payload (RFC 9052 section 4.4), ES256 and
 * EdDSA. The algorithm comes from the protected header and must match the
 * trust anchor's key type, so a signer cannot pick a weaker check.
 */
#include <string.h>

#include "iomt/cbor.h"
#include "iomt/cose.h"

#define COSE_HDR_ALG  1
#define COSE_HDR_CRIT 2
#define PROTECTED_MAX 128
#define TBS_MAX       (IOMT_COSE_PAYLOAD_MAX + PROTECTED_MAX + 32)

struct sign1 {
    const uint8_t *prot;
    size_t prot_len;
    const uint8_t *sig;
    size_t sig_len;
    int alg;
};

const char *iomt_cose_alg_name(int alg)
{
    switch (alg) {
    case IOMT_ALG_ES256:
        return "ES256";
    case IOMT_COSE_ALG_ESP256:
        return "ESP256";
    case IOMT_ALG_EDDSA:
        return "EdDSA";
    case IOMT_COSE_ALG_ED25519:
        return "Ed25519";
    case 5:
        return "HMAC-256";
    default:
        return "unknown";
    }
}

static int parse_protected(const uint8_t *p, size_t n, int *alg,
                           struct iomt_err *err)
{
    struct iomt_cbor_reader r;
    size_t count, i;
    int have_alg = 0, rc;

    iomt_cbor_reader_init(&r, p, n, err);
    rc = iomt_cbor_get_map(&r, &count, "COSE protected header");
    if (rc != IOMT_OK)
        return rc;
    for (i = 0; i < count; i++) {
        int64_t label, value;

        if (iomt_cbor_peek(&r) > IOMT_CBOR_NEGINT) {
            rc = iomt_cbor_skip(&r, "COSE protected label", NULL, NULL);
            if (rc == IOMT_OK)
                rc = iomt_cbor_skip(&r, "COSE protected value", NULL, NULL);
            if (rc != IOMT_OK)
                return rc;
            continue;
        }
        rc = iomt_cbor_get_int(&r, &label, "COSE protected label");
        if (rc != IOMT_OK)
            return rc;
        if (label == COSE_HDR_CRIT)
            return iomt_err_set(err, IOMT_E_VERIFY,
                                "COSE protected header: critical headers "
                                "are not supported");
        if (label != COSE_HDR_ALG) {
            rc = iomt_cbor_skip(&r, "COSE protected value", NULL, NULL);
            if (rc != IOMT_OK)
                return rc;
            continue;
        }
        if (have_alg)
            return iomt_err_set(err, IOMT_E_INPUT,
                                "COSE protected header: duplicate alg");
        rc = iomt_cbor_get_int(&r, &value, "COSE alg");
        if (rc != IOMT_OK)
            return rc;
        if (value < -65536 || value > 65535)
            return iomt_err_set(err, IOMT_E_INPUT, "COSE alg: out of range");
        *alg = (int)value;
        have_alg = 1;
    }
    if (!iomt_cbor_at_end(&r))
        return iomt_err_set(err, IOMT_E_INPUT,
                            "COSE protected header: trailing bytes");
    if (!have_alg)
        return iomt_err_set(err, IOMT_E_INPUT, "COSE protected header: no alg");
    return IOMT_OK;
}

static int parse_sign1(const uint8_t *cose, size_t n, struct sign1 *s,
                       struct iomt_err *err)
{
    struct iomt_cbor_reader r;
    uint64_t tag;
    size_t count;
    int simple, rc;

    memset(s, 0, sizeof(*s));
    iomt_cbor_reader_init(&r, cose, n, err);
    rc = iomt_cbor_get_tag(&r, &tag, "COSE_Sign1 tag");
    if (rc != IOMT_OK)
        return rc;
    if (tag == IOMT_COSE_MAC0_TAG)
        return iomt_err_set(err, IOMT_E_VERIFY,
                            "authentication: COSE_Mac0 (MAC) is not "
                            "supported, only COSE_Sign1 signatures");
    if (tag == IOMT_COSE_SIGN_TAG)
        return iomt_err_set(err, IOMT_E_VERIFY,
                            "authentication: COSE_Sign (multi-signer) is "
                            "not supported, only COSE_Sign1");
    if (tag != IOMT_COSE_SIGN1_TAG)
        return iomt_err_set(err, IOMT_E_INPUT,
                            "COSE_Sign1 tag: expected 18, found %llu",
                            (unsigned long long)tag);
    rc = iomt_cbor_get_array(&r, &count, "COSE_Sign1");
    if (rc != IOMT_OK)
        return rc;
    if (count != 4)
        return iomt_err_set(err, IOMT_E_INPUT,
                            "COSE_Sign1: expected 4 elements, found %zu",
                            count);
    rc = iomt_cbor_get_bstr(&r, &s->prot, &s->prot_len, "COSE protected");
    if (rc == IOMT_OK && s->prot_len > PROTECTED_MAX)
        rc = iomt_err_set(err, IOMT_E_INPUT,
                          "COSE protected header: longer than %d bytes",
                          PROTECTED_MAX);
    if (rc == IOMT_OK)
        rc = parse_protected(s->prot, s->prot_len, &s->alg, err);
    if (rc == IOMT_OK && iomt_cbor_peek(&r) != IOMT_CBOR_MAP)
        rc = iomt_err_set(err, IOMT_E_INPUT,
                          "COSE unprotected header: expected a map");
    if (rc == IOMT_OK)
        rc = iomt_cbor_skip(&r, "COSE unprotected header", NULL, NULL);
    if (rc == IOMT_OK && iomt_cbor_peek(&r) != IOMT_CBOR_SIMPLE)
        rc = iomt_err_set(err, IOMT_E_INPUT,
                          "COSE payload: expected nil (detached)");
    if (rc == IOMT_OK)
        rc = iomt_cbor_get_simple(&r, &simple, "COSE payload");
    if (rc == IOMT_OK && simple != IOMT_CBOR_NULL)
        rc = iomt_err_set(err, IOMT_E_INPUT,
                          "COSE payload: expected nil (detached)");
    if (rc == IOMT_OK)
        rc = iomt_cbor_get_bstr(&r, &s->sig, &s->sig_len, "COSE signature");
    if (rc == IOMT_OK && !iomt_cbor_at_end(&r))
        rc = iomt_err_set(err, IOMT_E_INPUT, "COSE_Sign1: trailing bytes");
    return rc;
}

int iomt_cose_sig_structure(const uint8_t *protected_hdr, size_t prot_len,
                            const uint8_t *payload, size_t payload_len,
                            uint8_t *out, size_t cap, size_t *out_len,
                            struct iomt_err *err)
{
    static const char context[] = "Signature1";
    struct iomt_cbor_writer w;

    iomt_cbor_writer_init(&w, out, cap);
    iomt_cbor_put_array(&w, 4);
    iomt_cbor_put_tstr(&w, context, sizeof(context) - 1);
    iomt_cbor_put_bstr(&w, protected_hdr, prot_len);
    iomt_cbor_put_bstr(&w, NULL, 0); /* external_aad: none in SUIT */
    iomt_cbor_put_bstr(&w, payload, payload_len);
    return iomt_cbor_writer_done(&w, out_len, err);
}

/* The COSE algorithm a key may be used with, by key type. */
static int alg_fits_key(int alg, const struct iomt_key *key)
{
    if (iomt_key_alg(key) == IOMT_ALG_ES256)
        return alg == IOMT_ALG_ES256 || alg == IOMT_COSE_ALG_ESP256;
    return alg == IOMT_ALG_EDDSA || alg == IOMT_COSE_ALG_ED25519;
}

int iomt_cose_sign1(const struct iomt_key *key, const uint8_t *payload,
                    size_t payload_len, uint8_t *out, size_t cap,
                    size_t *out_len, struct iomt_err *err)
{
    struct iomt_cbor_writer w;
    uint8_t prot[8], tbs[TBS_MAX], sig[IOMT_SIG_MAX];
    size_t prot_len, tbs_len, sig_len;
    int rc;

    if (payload_len > IOMT_COSE_PAYLOAD_MAX)
        return iomt_err_set(err, IOMT_E_INPUT, "COSE payload: too large");
    iomt_cbor_writer_init(&w, prot, sizeof(prot));
    iomt_cbor_put_map(&w, 1);
    iomt_cbor_put_int(&w, COSE_HDR_ALG);
    iomt_cbor_put_int(&w, iomt_key_alg(key));
    rc = iomt_cbor_writer_done(&w, &prot_len, err);
    if (rc == IOMT_OK)
        rc = iomt_cose_sig_structure(prot, prot_len, payload, payload_len, tbs,
                                     sizeof(tbs), &tbs_len, err);
    if (rc == IOMT_OK)
        rc = iomt_sign(key, tbs, tbs_len, sig, &sig_len, err);
    if (rc != IOMT_OK)
        return rc;

    iomt_cbor_writer_init(&w, out, cap);
    iomt_cbor_put_tag(&w, IOMT_COSE_SIGN1_TAG);
    iomt_cbor_put_array(&w, 4);
    iomt_cbor_put_bstr(&w, prot, prot_len);
    iomt_cbor_put_map(&w, 0);
    iomt_cbor_put_simple(&w, IOMT_CBOR_NULL);
    iomt_cbor_put_bstr(&w, sig, sig_len);
    return iomt_cbor_writer_done(&w, out_len, err);
}

int iomt_cose_sign1_verify(const uint8_t *cose, size_t n,
                           const uint8_t *payload, size_t payload_len,
                           const struct iomt_key *key, int *alg,
                           struct iomt_err *err)
{
    struct sign1 s;
    uint8_t tbs[TBS_MAX];
    size_t tbs_len;
    int rc;

    if (alg != NULL)
        *alg = 0;
    rc = parse_sign1(cose, n, &s, err);
    if (rc != IOMT_OK)
        return rc;
    if (alg != NULL)
        *alg = s.alg;
    if (!alg_fits_key(s.alg, key))
        return iomt_err_set(err, IOMT_E_VERIFY,
                            "signature: algorithm %s (%d) does not match "
                            "the %s trust anchor",
                            iomt_cose_alg_name(s.alg), s.alg,
                            iomt_key_alg(key) == IOMT_ALG_ES256 ? "P-256"
                                                                : "Ed25519");
    if (payload_len > IOMT_COSE_PAYLOAD_MAX)
        return iomt_err_set(err, IOMT_E_INPUT, "COSE payload: too large");
    rc = iomt_cose_sig_structure(s.prot, s.prot_len, payload, payload_len, tbs,
                                 sizeof(tbs), &tbs_len, err);
    if (rc != IOMT_OK)
        return rc;
    return iomt_verify(key, tbs, tbs_len, s.sig, s.sig_len, err);
}

int iomt_cose_sign1_alg(const uint8_t *cose, size_t n, int *alg,
                        struct iomt_err *err)
{
    struct sign1 s;
    int rc = parse_sign1(cose, n, &s, err);

    *alg = rc == IOMT_OK ? s.alg : 0;
    return rc;
}
