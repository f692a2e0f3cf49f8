/*
 * Unit tests for the crypto seam: FIPS 180 SHA vectors, RFC 8032 Ed25519
 * vector, sign/verify round trips for both algorithms, tampering, key
 * files, hex helpers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "iomt/crypto.h"

static void assert_hex(const uint8_t *p, size_t n, const char *want)
{
    char hex[129];

    assert_true(n <= 64);
    iomt_hex(p, n, hex);
    assert_string_equal(hex, want);
}

/* FIPS 180-2 Appendix B sample messages. */
static void test_sha256_vectors(void **state)
{
    static const char two_block[] =
        "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    uint8_t d[IOMT_SHA256_LEN];
    uint8_t *million;

    (void)state;
    assert_int_equal(iomt_sha256((const uint8_t *)"abc", 3, d), IOMT_OK);
    assert_hex(d, sizeof(d),
               "ba7816bf8f01cfea414140de5dae2223"
               "b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(iomt_sha256((const uint8_t *)"", 0, d), IOMT_OK);
    assert_hex(d, sizeof(d),
               "e3b0c44298fc1c149afbf4c8996fb924"
               "27ae41e4649b934ca495991b7852b855");
    assert_int_equal(
        iomt_sha256((const uint8_t *)two_block, strlen(two_block), d), IOMT_OK);
    assert_hex(d, sizeof(d),
               "248d6a61d20638b8e5c026930c3e6039"
               "a33ce45964ff2167f6ecedd419db06c1");
    million = malloc(1000000);
    assert_non_null(million);
    memset(million, 'a', 1000000);
    assert_int_equal(iomt_sha256(million, 1000000, d), IOMT_OK);
    assert_hex(d, sizeof(d),
               "cdc76e5c9914fb9281a1c7e284d73e67"
               "f1809a48a497200e046d39ccc7112cd0");
    free(million);
}

static void test_sha256_streaming(void **state)
{
    struct iomt_sha256 *h = iomt_sha256_new();
    uint8_t one[IOMT_SHA256_LEN], many[IOMT_SHA256_LEN], buf[1000];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 7);
    assert_non_null(h);
    for (i = 0; i < sizeof(buf); i += 37) {
        size_t n = sizeof(buf) - i < 37 ? sizeof(buf) - i : 37;

        assert_int_equal(iomt_sha256_update(h, buf + i, n), IOMT_OK);
    }
    assert_int_equal(iomt_sha256_final(h, many), IOMT_OK);
    iomt_sha256_free(h);
    iomt_sha256(buf, sizeof(buf), one);
    assert_memory_equal(one, many, sizeof(one));
}

static void test_sha256_file(void **state)
{
    char path[] = "/tmp/iomt-test-crypto-XXXXXX";
    struct iomt_err err = {0};
    uint8_t d[IOMT_SHA256_LEN];
    uint64_t size = 0;
    int fd = mkstemp(path);

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "abc", 3), 3);
    close(fd);
    assert_int_equal(iomt_sha256_file(path, UINT64_MAX, d, &size, &err),
                     IOMT_OK);
    assert_int_equal(size, 3);
    assert_hex(d, sizeof(d),
               "ba7816bf8f01cfea414140de5dae2223"
               "b00361a396177a9cb410ff61f20015ad");
    unlink(path);
    assert_int_equal(iomt_sha256_file(path, UINT64_MAX, d, &size, &err),
                     IOMT_E_IO);
    assert_non_null(strstr(err.msg, path));
}

static void test_sha1_vector(void **state)
{
    uint8_t d[IOMT_SHA1_LEN];

    (void)state;
    assert_int_equal(iomt_sha1((const uint8_t *)"abc", 3, d), IOMT_OK);
    assert_hex(d, sizeof(d), "a9993e364706816aba3e25717850c26c9cd0d89d");
}

static void round_trip(enum iomt_alg alg)
{
    static const uint8_t msg[] = "firmware digest";
    struct iomt_key *key = NULL;
    struct iomt_err err = {0};
    uint8_t sig[IOMT_SIG_MAX];
    size_t sig_len = 0;

    assert_int_equal(iomt_key_generate(alg, &key, &err), IOMT_OK);
    assert_int_equal(iomt_key_alg(key), alg);
    assert_true(iomt_key_has_private(key));
    assert_int_equal(iomt_sign(key, msg, sizeof(msg), sig, &sig_len, &err),
                     IOMT_OK);
    assert_int_equal(sig_len, IOMT_SIG_MAX);
    assert_int_equal(iomt_verify(key, msg, sizeof(msg), sig, sig_len, &err),
                     IOMT_OK);

    /* A changed message, signature or length must not verify. */
    assert_int_equal(iomt_verify(key, msg, sizeof(msg) - 1, sig, sig_len, &err),
                     IOMT_E_VERIFY);
    sig[10] ^= 0x01;
    assert_int_equal(iomt_verify(key, msg, sizeof(msg), sig, sig_len, &err),
                     IOMT_E_VERIFY);
    assert_non_null(strstr(err.msg, "signature"));
    sig[10] ^= 0x01;
    assert_int_equal(iomt_verify(key, msg, sizeof(msg), sig, sig_len - 1, &err),
                     IOMT_E_VERIFY);
    iomt_key_free(key);
}

static void test_es256_round_trip(void **state)
{
    (void)state;
    round_trip(IOMT_ALG_ES256);
}

static void test_eddsa_round_trip(void **state)
{
    (void)state;
    round_trip(IOMT_ALG_EDDSA);
}

static void test_wrong_key(void **state)
{
    struct iomt_key *a = NULL, *b = NULL;
    struct iomt_err err = {0};
    uint8_t sig[IOMT_SIG_MAX];
    size_t sig_len;

    (void)state;
    assert_int_equal(iomt_key_generate(IOMT_ALG_ES256, &a, &err), IOMT_OK);
    assert_int_equal(iomt_key_generate(IOMT_ALG_ES256, &b, &err), IOMT_OK);
    assert_int_equal(iomt_sign(a, (const uint8_t *)"m", 1, sig, &sig_len, &err),
                     IOMT_OK);
    assert_int_equal(
        iomt_verify(b, (const uint8_t *)"m", 1, sig, sig_len, &err),
        IOMT_E_VERIFY);
    iomt_key_free(a);
    iomt_key_free(b);
}

/* RFC 8032 section 7.1, TEST 1: empty message. */
static void test_ed25519_rfc8032(void **state)
{
    static const char pem[] =
        "-----BEGIN PRIVATE KEY-----\n"
        "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
        "-----END PRIVATE KEY-----\n";
    struct iomt_key *key = NULL;
    struct iomt_err err = {0};
    uint8_t sig[IOMT_SIG_MAX];
    size_t sig_len = 0;

    (void)state;
    assert_int_equal(
        iomt_key_from_pem((const uint8_t *)pem, strlen(pem), &key, &err),
        IOMT_OK);
    assert_int_equal(iomt_key_alg(key), IOMT_ALG_EDDSA);
    assert_int_equal(iomt_sign(key, NULL, 0, sig, &sig_len, &err), IOMT_OK);
    assert_hex(
        sig, sig_len,
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
    iomt_key_free(key);
}

static void test_key_files(void **state)
{
    char dir[] = "/tmp/iomt-test-keys-XXXXXX";
    char priv[256], pub[256];
    struct iomt_key *key = NULL, *loaded = NULL, *pub_only = NULL;
    struct iomt_err err = {0};
    uint8_t id1[IOMT_SHA256_LEN], id2[IOMT_SHA256_LEN];
    struct stat st;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(priv, sizeof(priv), "%s/test-key.pem", dir);
    snprintf(pub, sizeof(pub), "%s/test-key.pub.pem", dir);
    assert_int_equal(iomt_key_generate(IOMT_ALG_EDDSA, &key, &err), IOMT_OK);
    assert_int_equal(iomt_key_save(key, priv, pub, &err), IOMT_OK);
    assert_int_equal(stat(priv, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    assert_int_equal(iomt_key_load(priv, &loaded, &err), IOMT_OK);
    assert_true(iomt_key_has_private(loaded));
    assert_int_equal(iomt_key_load(pub, &pub_only, &err), IOMT_OK);
    assert_false(iomt_key_has_private(pub_only));
    assert_int_equal(iomt_key_id(key, id1), IOMT_OK);
    assert_int_equal(iomt_key_id(pub_only, id2), IOMT_OK);
    assert_memory_equal(id1, id2, sizeof(id1));
    /* A public key cannot be saved as a private one. */
    assert_int_equal(iomt_key_save(pub_only, priv, NULL, &err), IOMT_E_INPUT);

    iomt_key_free(key);
    iomt_key_free(loaded);
    iomt_key_free(pub_only);
    unlink(priv);
    unlink(pub);
    rmdir(dir);
}

static void test_key_garbage(void **state)
{
    static const char junk[] = "-----BEGIN PRIVATE KEY-----\nAAAA\n"
                               "-----END PRIVATE KEY-----\n";
    struct iomt_key *key = NULL;
    struct iomt_err err = {0};

    (void)state;
    assert_int_equal(
        iomt_key_from_pem((const uint8_t *)junk, strlen(junk), &key, &err),
        IOMT_E_INPUT);
    assert_null(key);
    assert_int_equal(iomt_key_from_pem(NULL, 0, &key, &err), IOMT_E_INPUT);
    assert_int_equal(iomt_key_load("/nonexistent/key.pem", &key, &err),
                     IOMT_E_IO);
}

/* An encrypted private key is refused, never prompted for: the library
 * must not talk to the terminal. */
static void test_encrypted_key_refused(void **state)
{
    /* A throwaway Ed25519 test key, password "test-only". */
    static const char pem[] =
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
        "MIGbMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAjzut6xDIyPcgICCAAw\n"
        "DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEOPscEDo1mcDMjCCTb2FES8EQN8Q\n"
        "03qlW1Q1liI9Ka6gyXKPlVKD68mOkWUPTpZFpu+1b5Bi0xN0LAWb49fGuJUG1PF6\n"
        "JvCipUyNemBlDyU6dKA=\n"
        "-----END ENCRYPTED PRIVATE KEY-----\n";
    struct iomt_key *key = NULL;
    struct iomt_err err = {0};

    (void)state;
    assert_int_equal(
        iomt_key_from_pem((const uint8_t *)pem, strlen(pem), &key, &err),
        IOMT_E_INPUT);
    assert_null(key);
}

static void test_hex_and_compare(void **state)
{
    uint8_t buf[8], a[4] = {1, 2, 3, 4}, b[4] = {1, 2, 3, 5};
    char text[] = "de ad\nBE ef";

    (void)state;
    assert_int_equal(iomt_unhex(text, strlen(text), buf, sizeof(buf)), 4);
    assert_hex(buf, 4, "deadbeef");
    assert_int_equal(iomt_unhex("abc", 3, buf, sizeof(buf)), -1);
    assert_int_equal(iomt_unhex("zz", 2, buf, sizeof(buf)), -1);
    assert_int_equal(iomt_unhex("0011", 4, buf, 1), -1);
    assert_true(iomt_ct_equal(a, a, sizeof(a)));
    assert_false(iomt_ct_equal(a, b, sizeof(a)));
    iomt_wipe(a, sizeof(a));
    assert_int_equal(a[0] | a[1] | a[2] | a[3], 0);
    assert_int_equal(iomt_random(buf, sizeof(buf)), IOMT_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_sha256_streaming),
        cmocka_unit_test(test_sha256_file),
        cmocka_unit_test(test_sha1_vector),
        cmocka_unit_test(test_es256_round_trip),
        cmocka_unit_test(test_eddsa_round_trip),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_ed25519_rfc8032),
        cmocka_unit_test(test_key_files),
        cmocka_unit_test(test_key_garbage),
        cmocka_unit_test(test_encrypted_key_refused),
        cmocka_unit_test(test_hex_and_compare),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
