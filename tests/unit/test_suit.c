/*
 * Unit tests for SUIT envelopes: UUID derivation, build -> parse -> verify
 * round trips, the draft's signed examples (from IOMT_DATA), every bit
 * flip and truncation of our own envelope, and the image/SBOM/sequence
 * checks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "iomt/cose.h"
#include "iomt/crypto.h"
#include "iomt/suit.h"

struct fixture {
    struct iomt_key *es256, *eddsa;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (f == NULL ||
        iomt_key_generate(IOMT_ALG_ES256, &f->es256, NULL) != IOMT_OK ||
        iomt_key_generate(IOMT_ALG_EDDSA, &f->eddsa, NULL) != IOMT_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    iomt_key_free(f->es256);
    iomt_key_free(f->eddsa);
    free(f);
    return 0;
}

static void fill_params(struct iomt_suit_params *p, int with_sbom)
{
    size_t i;

    memset(p, 0, sizeof(*p));
    p->seq = 42;
    p->vendor = "vendor.example";
    p->class = "infusion-pump-a";
    p->version = "3.1.4";
    for (i = 0; i < IOMT_SHA256_LEN; i++) {
        p->image_digest[i] = (uint8_t)i;
        p->sbom_digest[i] = (uint8_t)(0xff - i);
    }
    p->image_size = 123456789;
    p->has_sbom = with_sbom;
    p->sbom_size = 4321;
}

static void test_uuid_derivation(void **state)
{
    /* The draft's example vendor-id is UUIDv5(NS_DNS, "arm.com"). */
    static const uint8_t arm[16] = {0xfa, 0x6b, 0x4a, 0x53, 0xd5, 0xad,
                                    0x5f, 0xdf, 0xbe, 0x9d, 0xe6, 0x63,
                                    0xe4, 0xd4, 0x1f, 0xfe};
    uint8_t id[16], cls[16];
    char text[37];

    (void)state;
    iomt_suit_vendor_uuid("arm.com", id);
    assert_memory_equal(id, arm, 16);
    iomt_suit_uuid_str(id, text);
    assert_string_equal(text, "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe");
    iomt_suit_class_uuid(id, "model-a", cls);
    assert_int_equal(cls[6] >> 4, 5);
    assert_int_equal(cls[8] & 0xc0, 0x80);
    assert_memory_not_equal(cls, id, 16);
}

static void round_trip(const struct iomt_key *key, int with_sbom)
{
    struct iomt_suit_params p;
    struct iomt_suit_manifest m, parsed;
    struct iomt_err err = {0};
    uint8_t vendor[16], cls[16];
    uint8_t *env = NULL;
    size_t len = 0;

    fill_params(&p, with_sbom);
    assert_int_equal(iomt_suit_sign(&p, key, &env, &len, &err), IOMT_OK);
    /* tag 107 */
    assert_int_equal(env[0], 0xd8);
    assert_int_equal(env[1], 0x6b);
    if (iomt_suit_verify(env, len, key, &m, &err) != IOMT_OK)
        fail_msg("verify: %s", err.msg);
    assert_int_equal(m.seq, 42);
    assert_string_equal(m.version, "3.1.4");
    assert_true(m.has_vendor && m.has_class && m.has_digest && m.has_size);
    iomt_suit_vendor_uuid("vendor.example", vendor);
    iomt_suit_class_uuid(vendor, "infusion-pump-a", cls);
    assert_memory_equal(m.vendor_id, vendor, 16);
    assert_memory_equal(m.class_id, cls, 16);
    assert_memory_equal(m.image_digest, p.image_digest, IOMT_SHA256_LEN);
    assert_int_equal(m.image_size, 123456789);
    assert_int_equal(m.has_sbom, with_sbom);
    if (with_sbom) {
        assert_memory_equal(m.sbom_digest, p.sbom_digest, IOMT_SHA256_LEN);
        assert_int_equal(m.sbom_size, 4321);
    }
    assert_int_equal(m.sig_alg, iomt_key_alg(key));
    assert_int_equal(
        iomt_suit_check_identity(&m, "vendor.example", "infusion-pump-a", &err),
        IOMT_OK);
    assert_int_equal(
        iomt_suit_check_identity(&m, "vendor.example", "infusion-pump-b", &err),
        IOMT_E_VERIFY);
    assert_int_equal(iomt_suit_check_identity(&m, "other.example", NULL, &err),
                     IOMT_E_VERIFY);

    assert_int_equal(iomt_suit_parse(env, len, &parsed, &err), IOMT_OK);
    assert_memory_equal(&parsed, &m, sizeof(m));
    free(env);
}

static void test_round_trip_es256(void **state)
{
    struct fixture *f = *state;

    round_trip(f->es256, 0);
    round_trip(f->es256, 1);
}

static void test_round_trip_eddsa(void **state)
{
    struct fixture *f = *state;

    round_trip(f->eddsa, 0);
    round_trip(f->eddsa, 1);
}

static void test_wrong_key_zeroes(void **state)
{
    struct fixture *f = *state;
    struct iomt_suit_params p;
    struct iomt_suit_manifest m, zero;
    struct iomt_key *other = NULL;
    struct iomt_err err = {0};
    uint8_t *env = NULL;
    size_t len = 0;

    fill_params(&p, 1);
    assert_int_equal(iomt_suit_sign(&p, f->es256, &env, &len, &err), IOMT_OK);
    assert_int_equal(iomt_key_generate(IOMT_ALG_ES256, &other, &err), IOMT_OK);
    memset(&m, 0xaa, sizeof(m));
    memset(&zero, 0, sizeof(zero));
    assert_int_equal(iomt_suit_verify(env, len, other, &m, &err),
                     IOMT_E_VERIFY);
    assert_non_null(strstr(err.msg, "signature"));
    assert_memory_equal(&m, &zero, sizeof(m));
    assert_int_equal(iomt_suit_verify(env, len, f->eddsa, &m, &err),
                     IOMT_E_VERIFY);
    iomt_key_free(other);
    free(env);
}

/* Flips every bit and cuts every length of a real envelope: none may be
 * accepted, and the manifest must come back zeroed. */
static void test_every_bit_flip_and_truncation(void **state)
{
    struct fixture *f = *state;
    struct iomt_suit_params p;
    struct iomt_suit_manifest m;
    struct iomt_err err = {0};
    uint8_t *env = NULL;
    size_t len = 0, i;
    int bit;

    fill_params(&p, 1);
    assert_int_equal(iomt_suit_sign(&p, f->es256, &env, &len, &err), IOMT_OK);
    for (i = 0; i < len; i++) {
        for (bit = 0; bit < 8; bit++) {
            env[i] ^= (uint8_t)(1u << bit);
            if (iomt_suit_verify(env, len, f->es256, &m, &err) == IOMT_OK)
                fail_msg("bit %d of byte %zu flipped, still accepted", bit, i);
            assert_int_equal(m.seq, 0);
            assert_int_equal(m.has_digest, 0);
            env[i] ^= (uint8_t)(1u << bit);
        }
    }
    for (i = 0; i < len; i++)
        assert_int_not_equal(iomt_suit_verify(env, i, f->es256, &m, &err),
                             IOMT_OK);
    assert_int_equal(iomt_suit_verify(env, len, f->es256, &m, &err), IOMT_OK);
    free(env);
}

/* Two authentication wrappers: refused rather than picking one. */
static void test_duplicate_member(void **state)
{
    struct fixture *f = *state;
    struct iomt_suit_params p;
    struct iomt_suit_manifest m;
    struct iomt_err err = {0};
    uint8_t *env = NULL, *dup;
    size_t len = 0, auth_len, rest;

    fill_params(&p, 0);
    assert_int_equal(iomt_suit_sign(&p, f->es256, &env, &len, &err), IOMT_OK);
    /* d8 6b a2 02 58 LL <auth> 03 <manifest> */
    assert_int_equal(env[2], 0xa2);
    assert_int_equal(env[4], 0x58);
    auth_len = 2 + (size_t)env[5];
    rest = len - 4 - auth_len;
    dup = malloc(len + 1 + auth_len);
    assert_non_null(dup);
    memcpy(dup, env, 4);
    dup[2] = 0xa3;
    memcpy(dup + 4, env + 4, auth_len);
    dup[4 + auth_len] = 0x02;
    memcpy(dup + 5 + auth_len, env + 4, auth_len);
    memcpy(dup + 5 + 2 * auth_len, env + 4 + auth_len, rest);
    assert_int_equal(
        iomt_suit_verify(dup, len + 1 + auth_len, f->es256, &m, &err),
        IOMT_E_INPUT);
    assert_non_null(strstr(err.msg, "duplicate"));
    free(dup);
    free(env);
}

static void test_sign_rejects_bad_text(void **state)
{
    struct fixture *f = *state;
    struct iomt_suit_params p;
    struct iomt_err err = {0};
    uint8_t *env = NULL;
    size_t len = 0;

    fill_params(&p, 0);
    p.version = "1.0\n\x1b[31m";
    assert_int_equal(iomt_suit_sign(&p, f->es256, &env, &len, &err),
                     IOMT_E_INPUT);
    assert_non_null(strstr(err.msg, "version"));
    fill_params(&p, 0);
    p.vendor = "";
    assert_int_equal(iomt_suit_sign(&p, f->es256, &env, &len, &err),
                     IOMT_E_INPUT);
    assert_null(env);
}

/* CBOR text must be UTF-8 (RFC 8949 3.1): stray bytes, overlong forms,
 * surrogates and code points past U+10FFFF are refused, real text kept. */
static void test_text_must_be_utf8(void **state)
{
    static const char *bad[] = {
        "v\xff",        "\xc0\xaf",         "\xe0\x80\xaf",
        "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82",
    };
    struct fixture *f = *state;
    struct iomt_suit_params p;
    struct iomt_suit_manifest m;
    struct iomt_err err = {0};
    uint8_t *env = NULL;
    size_t len = 0, i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fill_params(&p, 0);
        p.version = bad[i];
        assert_int_equal(iomt_suit_sign(&p, f->es256, &env, &len, &err),
                         IOMT_E_INPUT);
        assert_non_null(strstr(err.msg, "not UTF-8"));
        assert_null(env);
    }
    fill_params(&p, 0);
    p.version = "2.0 \xc3\xbc \xe2\x82\xac \xf0\x9f\x92\x89";
    assert_int_equal(iomt_suit_sign(&p, f->es256, &env, &len, &err), IOMT_OK);
    assert_int_equal(iomt_suit_verify(env, len, f->es256, &m, &err), IOMT_OK);
    assert_string_equal(m.version, p.version);
    free(env);
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void test_check_image_and_seq(void **state)
{
    struct fixture *f = *state;
    struct iomt_suit_params p;
    struct iomt_suit_manifest m;
    struct iomt_err err = {0};
    char path[] = "/tmp/iomt-test-suit-XXXXXX";
    uint8_t image[5000], *env = NULL;
    size_t len = 0, i;
    int fd;

    (void)state;
    for (i = 0; i < sizeof(image); i++)
        image[i] = (uint8_t)(i * 13);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_bytes(path, image, sizeof(image));
    fill_params(&p, 0);
    iomt_sha256(image, sizeof(image), p.image_digest);
    p.image_size = sizeof(image);
    assert_int_equal(iomt_suit_sign(&p, f->eddsa, &env, &len, &err), IOMT_OK);
    assert_int_equal(iomt_suit_verify(env, len, f->eddsa, &m, &err), IOMT_OK);
    assert_int_equal(iomt_suit_check_image(&m, path, &err), IOMT_OK);

    image[4999] ^= 1; /* same size, other content */
    write_bytes(path, image, sizeof(image));
    assert_int_equal(iomt_suit_check_image(&m, path, &err), IOMT_E_VERIFY);
    assert_non_null(strstr(err.msg, "image digest"));
    write_bytes(path, image, sizeof(image) - 1);
    assert_int_equal(iomt_suit_check_image(&m, path, &err), IOMT_E_VERIFY);
    assert_non_null(strstr(err.msg, "image size"));
    assert_int_equal(iomt_suit_check_sbom(&m, path, &err), IOMT_E_VERIFY);
    unlink(path);
    assert_int_equal(iomt_suit_check_image(&m, path, &err), IOMT_E_IO);

    assert_int_equal(iomt_suit_check_seq(&m, 41, &err), IOMT_OK);
    assert_int_equal(iomt_suit_check_seq(&m, 42, &err), IOMT_E_ROLLBACK);
    assert_non_null(strstr(err.msg, "sequence number 42 not above"));
    assert_int_equal(iomt_suit_check_seq(&m, 100, &err), IOMT_E_ROLLBACK);
    free(env);
}

static void test_normalise(void **state)
{
    uint8_t hex[] = "d8 6b\na0\n", raw[] = {0xd8, 0x6b, 0xa0};
    uint8_t odd[] = "abc";

    (void)state;
    assert_int_equal(iomt_suit_normalise(hex, sizeof(hex) - 1), 3);
    assert_memory_equal(hex, raw, 3);
    assert_int_equal(iomt_suit_normalise(raw, sizeof(raw)), 3);
    assert_int_equal(iomt_suit_normalise(odd, 3), -1);
    assert_int_equal(iomt_suit_normalise(raw, 0), -1);
}

static uint8_t *load_file(const char *dir, const char *name, size_t *len)
{
    char path[1024];
    uint8_t *buf;
    long n;
    FILE *f;

    snprintf(path, sizeof(path), "%s/suit/%s", dir, name);
    f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    buf = malloc(IOMT_SUIT_ENVELOPE_MAX * 2);
    assert_non_null(buf);
    *len = fread(buf, 1, IOMT_SUIT_ENVELOPE_MAX * 2, f);
    fclose(f);
    n = iomt_suit_normalise(buf, *len);
    assert_true(n > 0);
    *len = (size_t)n;
    return buf;
}

static struct iomt_key *load_key(const char *dir, const char *name)
{
    char path[1024];
    struct iomt_key *key = NULL;
    struct iomt_err err = {0};

    snprintf(path, sizeof(path), "%s/suit/%s", dir, name);
    if (iomt_key_load(path, &key, &err) != IOMT_OK)
        fail_msg("%s", err.msg);
    return key;
}

static const char *data_dir(void)
{
    const char *dir = getenv("IOMT_DATA");

    if (dir == NULL || access(dir, R_OK) != 0)
        return NULL;
    return dir;
}

static void test_draft_examples(void **state)
{
    static const char *const signed_ok[] = {
        "manifest-spec/example0.signed.hex",
        "manifest-spec/example1.signed.hex",
        "manifest-spec/example2.signed.hex",
        "manifest-spec/example3.signed.hex",
        "manifest-spec/example4.signed.hex",
        "manifest-spec/example5.signed.hex",
        "libcsuit/suit_manifest_exp0.suit",
        "libcsuit/suit_manifest_exp1.suit",
        "libcsuit/suit_manifest_exp2A.suit",
        "libcsuit/suit_manifest_exp2B.suit",
        "libcsuit/suit_manifest_exp3.suit",
        "libcsuit/suit_manifest_exp4.suit",
        "libcsuit/suit_manifest_exp5.suit",
        "libcsuit/suit_manifest_expD.suit",
        "libcsuit/suit_manifest_expED.suit",
        "libcsuit/suit_manifest_expEW.suit",
        "libcsuit/suit_manifest_expI.suit",
        "libcsuit/suit_manifest_expS0.suit",
        "libcsuit/suit_manifest_expS2.suit",
        "libcsuit/suit_manifest_expS3.suit",
        "libcsuit/suit_manifest_expU.suit",
        "libcsuit/suit_manifest_expU0.suit",
        "libcsuit/suit_manifest_expU1.suit",
        "libcsuit/suit_manifest_expU2.suit",
        "libcsuit/suit_manifest_expU3.suit",
        "trust-domains/example0_dependent.hex",
        "trust-domains/example1_process.hex",
        "trust-domains/example2_integrated.hex",
        "firmware-encryption/suit-manifest-es-ecdh-content.hex.signed",
    };
    static const char *const mac0[] = {
        "libcsuit/suit_manifest_expAF.suit",
        "libcsuit/suit_manifest_expAFS.suit",
        "libcsuit/suit_manifest_expAW.suit",
        "firmware-encryption/suit-manifest-aes-kw.hex.signed",
    };
    const char *dir = data_dir();
    struct iomt_suit_manifest m;
    struct iomt_err err = {0};
    struct iomt_key *key;
    uint8_t *env;
    size_t len, i;

    (void)state;
    if (dir == NULL)
        skip();
    key = load_key(dir, "manifest-spec/public_key.pem");
    for (i = 0; i < sizeof(signed_ok) / sizeof(signed_ok[0]); i++) {
        env = load_file(dir, signed_ok[i], &len);
        if (iomt_suit_verify(env, len, key, &m, &err) != IOMT_OK)
            fail_msg("%s: %s", signed_ok[i], err.msg);
        free(env);
    }
    for (i = 0; i < sizeof(mac0) / sizeof(mac0[0]); i++) {
        env = load_file(dir, mac0[i], &len);
        assert_int_equal(iomt_suit_verify(env, len, key, &m, &err),
                         IOMT_E_VERIFY);
        assert_non_null(strstr(err.msg, "COSE_Mac0"));
        free(env);
    }
    iomt_key_free(key);

    key = load_key(dir, "firmware-encryption/dependency_signer_public_key.pem");
    env = load_file(
        dir, "firmware-encryption/suit-manifest-es-ecdh-dependency.hex.signed",
        &len);
    assert_int_equal(iomt_suit_verify(env, len, key, &m, &err), IOMT_OK);
    free(env);
    iomt_key_free(key);
}

/* Example 0's fields, as printed in the draft. */
static void test_example0_fields(void **state)
{
    static const uint8_t digest[32] = {
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa,
        0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
        0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10};
    const char *dir = data_dir();
    struct iomt_suit_manifest m;
    struct iomt_err err = {0};
    struct iomt_key *key;
    char uuid[37];
    uint8_t *env;
    size_t len;

    (void)state;
    if (dir == NULL)
        skip();
    key = load_key(dir, "manifest-spec/public_key.pem");
    env = load_file(dir, "manifest-spec/example0.signed.hex", &len);
    assert_int_equal(len, 237);
    assert_int_equal(iomt_suit_verify(env, len, key, &m, &err), IOMT_OK);
    assert_int_equal(m.seq, 0);
    assert_int_equal(m.sig_alg, IOMT_ALG_ES256);
    iomt_suit_uuid_str(m.vendor_id, uuid);
    assert_string_equal(uuid, "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe");
    iomt_suit_uuid_str(m.class_id, uuid);
    assert_string_equal(uuid, "1492af14-2569-5e48-bf42-9b2d51f2ab45");
    assert_memory_equal(m.image_digest, digest, 32);
    assert_int_equal(m.image_size, 34768);
    assert_int_equal(iomt_suit_check_identity(&m, "arm.com", NULL, &err),
                     IOMT_OK);
    free(env);
    iomt_key_free(key);
}

/* Example 2 severs its text; altering it must break its manifest digest. */
static void test_severed_text_bound(void **state)
{
    const char *dir = data_dir();
    struct iomt_suit_manifest m;
    struct iomt_err err = {0};
    struct iomt_key *key;
    uint8_t *env, *at;
    size_t len;

    (void)state;
    if (dir == NULL)
        skip();
    key = load_key(dir, "manifest-spec/public_key.pem");
    env = load_file(dir, "manifest-spec/example2.signed.hex", &len);
    assert_int_equal(iomt_suit_verify(env, len, key, &m, &err), IOMT_OK);
    at = memmem(env, len, "arm.com", 7);
    assert_non_null(at);
    *at = 'A';
    assert_int_equal(iomt_suit_verify(env, len, key, &m, &err), IOMT_E_VERIFY);
    assert_non_null(strstr(err.msg, "text"));
    free(env);
    iomt_key_free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uuid_derivation),
        cmocka_unit_test(test_round_trip_es256),
        cmocka_unit_test(test_round_trip_eddsa),
        cmocka_unit_test(test_wrong_key_zeroes),
        cmocka_unit_test(test_every_bit_flip_and_truncation),
        cmocka_unit_test(test_duplicate_member),
        cmocka_unit_test(test_sign_rejects_bad_text),
        cmocka_unit_test(test_text_must_be_utf8),
        cmocka_unit_test(test_check_image_and_seq),
        cmocka_unit_test(test_normalise),
        cmocka_unit_test(test_draft_examples),
        cmocka_unit_test(test_example0_fields),
        cmocka_unit_test(test_severed_text_bound),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
