/*
 * Unit tests for COSE_Sign1 with a detached payload: the Sig_structure
 * bytes, round trips for ES256 and EdDSA, tampering, algorithm/key
 * mismatch, critical headers, attached payloads and COSE_Mac0.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "iomt/cbor.h"
#include "iomt/cose.h"
#include "iomt/crypto.h"

static const uint8_t payload[] = {0x82, 0x2f, 0x58, 0x20, 1, 2, 3,
                                  4,    5,    6,    7,    8, 9, 10};

static void test_sig_structure_bytes(void **state)
{
    static const uint8_t prot[] = {0xa1, 0x01, 0x26};
    /* ["Signature1", h'a10126', h'', h'78'] */
    static const uint8_t want[] = {0x84, 0x6a, 'S',  'i',  'g', 'n',  'a',
                                   't',  'u',  'r',  'e',  '1', 0x43, 0xa1,
                                   0x01, 0x26, 0x40, 0x41, 0x78};
    uint8_t out[64];
    size_t len = 0;

    (void)state;
    assert_int_equal(iomt_cose_sig_structure(prot, sizeof(prot),
                                             (const uint8_t *)"x", 1, out,
                                             sizeof(out), &len, NULL),
                     IOMT_OK);
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(out, want, sizeof(want));
}

static void round_trip(enum iomt_alg alg)
{
    struct iomt_key *key = NULL, *other = NULL;
    struct iomt_err err = {0};
    uint8_t cose[IOMT_COSE_SIGN1_MAX], changed[sizeof(payload)];
    size_t len = 0;
    int got_alg = 0;

    assert_int_equal(iomt_key_generate(alg, &key, &err), IOMT_OK);
    assert_int_equal(iomt_cose_sign1(key, payload, sizeof(payload), cose,
                                     sizeof(cose), &len, &err),
                     IOMT_OK);
    /* 18([<< {1: alg} >>, {}, nil, sig]) */
    assert_int_equal(cose[0], 0xd2);
    assert_int_equal(cose[1], 0x84);
    assert_int_equal(iomt_cose_sign1_verify(cose, len, payload, sizeof(payload),
                                            key, &got_alg, &err),
                     IOMT_OK);
    assert_int_equal(got_alg, alg);

    memcpy(changed, payload, sizeof(payload));
    changed[sizeof(changed) - 1] ^= 0x80;
    assert_int_equal(iomt_cose_sign1_verify(cose, len, changed, sizeof(changed),
                                            key, NULL, &err),
                     IOMT_E_VERIFY);

    assert_int_equal(iomt_key_generate(alg, &other, &err), IOMT_OK);
    assert_int_equal(iomt_cose_sign1_verify(cose, len, payload, sizeof(payload),
                                            other, NULL, &err),
                     IOMT_E_VERIFY);
    iomt_key_free(key);
    iomt_key_free(other);
}

static void test_es256(void **state)
{
    (void)state;
    round_trip(IOMT_ALG_ES256);
}

static void test_eddsa(void **state)
{
    (void)state;
    round_trip(IOMT_ALG_EDDSA);
}

/* Every single-bit change of the structure must be refused, never crash. */
static void test_every_bit_flip(void **state)
{
    struct iomt_key *key = NULL;
    struct iomt_err err = {0};
    uint8_t cose[IOMT_COSE_SIGN1_MAX];
    size_t len = 0, i;
    int bit;

    (void)state;
    assert_int_equal(iomt_key_generate(IOMT_ALG_EDDSA, &key, &err), IOMT_OK);
    assert_int_equal(iomt_cose_sign1(key, payload, sizeof(payload), cose,
                                     sizeof(cose), &len, &err),
                     IOMT_OK);
    for (i = 0; i < len; i++) {
        for (bit = 0; bit < 8; bit++) {
            cose[i] ^= (uint8_t)(1u << bit);
            if (iomt_cose_sign1_verify(cose, len, payload, sizeof(payload), key,
                                       NULL, &err) == IOMT_OK)
                fail_msg("bit %d of byte %zu flipped and still verified", bit,
                         i);
            cose[i] ^= (uint8_t)(1u << bit);
        }
    }
    for (i = 0; i < len; i++)
        assert_int_not_equal(iomt_cose_sign1_verify(cose, i, payload,
                                                    sizeof(payload), key, NULL,
                                                    &err),
                             IOMT_OK);
    iomt_key_free(key);
}

static void test_alg_must_match_key(void **state)
{
    struct iomt_key *ec = NULL, *ed = NULL;
    struct iomt_err err = {0};
    uint8_t cose[IOMT_COSE_SIGN1_MAX];
    size_t len = 0;

    (void)state;
    assert_int_equal(iomt_key_generate(IOMT_ALG_ES256, &ec, &err), IOMT_OK);
    assert_int_equal(iomt_key_generate(IOMT_ALG_EDDSA, &ed, &err), IOMT_OK);
    assert_int_equal(iomt_cose_sign1(ec, payload, sizeof(payload), cose,
                                     sizeof(cose), &len, &err),
                     IOMT_OK);
    assert_int_equal(iomt_cose_sign1_verify(cose, len, payload, sizeof(payload),
                                            ed, NULL, &err),
                     IOMT_E_VERIFY);
    assert_non_null(strstr(err.msg, "does not match"));
    iomt_key_free(ec);
    iomt_key_free(ed);
}

/* Builds 18([prot, {}, payload_or_nil, sig]) signed by key over prot. */
static size_t build_custom(const struct iomt_key *key, const uint8_t *prot,
                           size_t prot_len, int attach, uint64_t tag,
                           uint8_t *out, size_t cap)
{
    struct iomt_cbor_writer w;
    uint8_t tbs[256], sig[IOMT_SIG_MAX];
    size_t tbs_len, sig_len, len;

    assert_int_equal(iomt_cose_sig_structure(prot, prot_len, payload,
                                             sizeof(payload), tbs, sizeof(tbs),
                                             &tbs_len, NULL),
                     IOMT_OK);
    assert_int_equal(iomt_sign(key, tbs, tbs_len, sig, &sig_len, NULL),
                     IOMT_OK);
    iomt_cbor_writer_init(&w, out, cap);
    iomt_cbor_put_tag(&w, tag);
    iomt_cbor_put_array(&w, 4);
    iomt_cbor_put_bstr(&w, prot, prot_len);
    iomt_cbor_put_map(&w, 0);
    if (attach)
        iomt_cbor_put_bstr(&w, payload, sizeof(payload));
    else
        iomt_cbor_put_simple(&w, IOMT_CBOR_NULL);
    iomt_cbor_put_bstr(&w, sig, sig_len);
    assert_int_equal(iomt_cbor_writer_done(&w, &len, NULL), IOMT_OK);
    return len;
}

static void test_structure_rules(void **state)
{
    static const uint8_t prot_ok[] = {0xa1, 0x01, 0x27};
    /* {1: -8, 2: [99]}: a critical header we do not understand. */
    static const uint8_t prot_crit[] = {0xa2, 0x01, 0x27, 0x02,
                                        0x81, 0x18, 0x63};
    static const uint8_t prot_none[] = {0xa0};
    struct iomt_key *key = NULL;
    struct iomt_err err = {0};
    uint8_t cose[256];
    size_t len;

    (void)state;
    assert_int_equal(iomt_key_generate(IOMT_ALG_EDDSA, &key, &err), IOMT_OK);
    len =
        build_custom(key, prot_ok, sizeof(prot_ok), 0, 18, cose, sizeof(cose));
    assert_int_equal(iomt_cose_sign1_verify(cose, len, payload, sizeof(payload),
                                            key, NULL, &err),
                     IOMT_OK);

    len = build_custom(key, prot_crit, sizeof(prot_crit), 0, 18, cose,
                       sizeof(cose));
    assert_int_equal(iomt_cose_sign1_verify(cose, len, payload, sizeof(payload),
                                            key, NULL, &err),
                     IOMT_E_VERIFY);
    assert_non_null(strstr(err.msg, "critical"));

    len = build_custom(key, prot_none, sizeof(prot_none), 0, 18, cose,
                       sizeof(cose));
    assert_int_equal(iomt_cose_sign1_verify(cose, len, payload, sizeof(payload),
                                            key, NULL, &err),
                     IOMT_E_INPUT);
    assert_non_null(strstr(err.msg, "no alg"));

    len =
        build_custom(key, prot_ok, sizeof(prot_ok), 1, 18, cose, sizeof(cose));
    assert_int_equal(iomt_cose_sign1_verify(cose, len, payload, sizeof(payload),
                                            key, NULL, &err),
                     IOMT_E_INPUT);
    assert_non_null(strstr(err.msg, "detached"));

    len =
        build_custom(key, prot_ok, sizeof(prot_ok), 0, 17, cose, sizeof(cose));
    assert_int_equal(iomt_cose_sign1_verify(cose, len, payload, sizeof(payload),
                                            key, NULL, &err),
                     IOMT_E_VERIFY);
    assert_non_null(strstr(err.msg, "COSE_Mac0"));
    iomt_key_free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sig_structure_bytes),
        cmocka_unit_test(test_es256),
        cmocka_unit_test(test_eddsa),
        cmocka_unit_test(test_every_bit_flip),
        cmocka_unit_test(test_alg_must_match_key),
        cmocka_unit_test(test_structure_rules),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
