/*
 * Unit tests for the fleet PKI: CA creation, CSR and issuance, identity
 * read-back, the EST PKCS#7 round trip, base64, and in-memory TLS 1.3
 * handshakes against the hub's context. Must-fail: a CSR whose signature
 * does not match, a certificate from another CA, a CA key that does not
 * belong to the CA certificate, bad names and roles.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include "iomt/pki.h"

struct fixture {
    char dir[64];
    char ca_key[PATH_MAX], ca_cert[PATH_MAX];
    char ca2_key[PATH_MAX], ca2_cert[PATH_MAX];
};

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct iomt_err err = {0};

    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/iomt-test-pki-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->ca_key, sizeof(f->ca_key), "%s/ca.key.pem", f->dir);
    snprintf(f->ca_cert, sizeof(f->ca_cert), "%s/ca.pem", f->dir);
    snprintf(f->ca2_key, sizeof(f->ca2_key), "%s/ca2.key.pem", f->dir);
    snprintf(f->ca2_cert, sizeof(f->ca2_cert), "%s/ca2.pem", f->dir);
    if (iomt_pki_ca_init(f->ca_key, f->ca_cert, "Test Hospital", 30, &err) ||
        iomt_pki_ca_init(f->ca2_key, f->ca2_cert, "Other", 30, &err)) {
        *state = f;
        teardown(state);
        return -1;
    }
    *state = f;
    return 0;
}

/* Makes a key and a certificate for name/role under the given CA. */
static void issue(const char *ca_key, const char *ca_cert, const char *name,
                  const char *role, enum iomt_alg alg, struct iomt_key **key,
                  char **cert, size_t *cert_len)
{
    struct iomt_err err = {0};
    char *csr = NULL;
    size_t csr_len = 0;

    assert_int_equal(iomt_key_generate(alg, key, &err), IOMT_OK);
    assert_int_equal(iomt_pki_make_csr(*key, name, role, &csr, &csr_len, &err),
                     IOMT_OK);
    assert_int_equal(iomt_pki_issue(ca_key, ca_cert, (const uint8_t *)csr,
                                    csr_len, name, role, 10, cert, cert_len,
                                    &err),
                     IOMT_OK);
    free(csr);
}

static void test_ca_init(void **state)
{
    struct fixture *f = *state;
    struct iomt_identity id;
    struct iomt_err err = {0};
    struct stat st;
    uint8_t buf[4096];
    size_t n;
    FILE *fp;

    assert_int_equal(stat(f->ca_key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    fp = fopen(f->ca_cert, "rb");
    assert_non_null(fp);
    n = fread(buf, 1, sizeof(buf), fp);
    fclose(fp);
    /* A CA has no role: it is not an identity any API call accepts. */
    assert_int_equal(iomt_pki_identity_pem(buf, n, &id, &err), IOMT_E_INPUT);
    assert_int_equal(iomt_pki_ca_init(f->ca_key, f->ca_cert, "", 30, &err),
                     IOMT_E_INPUT);
    assert_int_equal(iomt_pki_ca_init(f->ca_key, f->ca_cert, "x", 0, &err),
                     IOMT_E_INPUT);
}

static void test_issue_identity(void **state)
{
    struct fixture *f = *state;
    struct iomt_key *key = NULL;
    struct iomt_identity id, id2;
    struct iomt_err err = {0};
    char *cert = NULL, *cert2 = NULL;
    size_t len = 0, len2 = 0;

    issue(f->ca_key, f->ca_cert, "pump-0001", IOMT_ROLE_DEVICE, IOMT_ALG_ES256,
          &key, &cert, &len);
    assert_int_equal(
        iomt_pki_identity_pem((const uint8_t *)cert, len, &id, &err), IOMT_OK);
    assert_string_equal(id.name, "pump-0001");
    assert_string_equal(id.role, "device");
    assert_int_equal(strlen(id.serial_hex), 32); /* 128-bit serial */
    iomt_key_free(key);

    issue(f->ca_key, f->ca_cert, "pump-0001", IOMT_ROLE_DEVICE, IOMT_ALG_EDDSA,
          &key, &cert2, &len2);
    assert_int_equal(
        iomt_pki_identity_pem((const uint8_t *)cert2, len2, &id2, &err),
        IOMT_OK);
    assert_string_not_equal(id.serial_hex, id2.serial_hex);
    iomt_key_free(key);
    free(cert);
    free(cert2);
}

static void test_subject_from_caller(void **state)
{
    struct fixture *f = *state;
    struct iomt_key *key = NULL;
    struct iomt_identity id;
    struct iomt_err err = {0};
    char *csr = NULL, *cert = NULL, name[IOMT_NAME_MAX + 1];
    size_t csr_len = 0, len = 0;

    /* The CSR asks for admin; the issuer decides the subject. */
    assert_int_equal(iomt_key_generate(IOMT_ALG_ES256, &key, &err), IOMT_OK);
    assert_int_equal(iomt_pki_make_csr(key, "mallory", IOMT_ROLE_ADMIN, &csr,
                                       &csr_len, &err),
                     IOMT_OK);
    assert_int_equal(
        iomt_pki_csr_name((const uint8_t *)csr, csr_len, name, &err), IOMT_OK);
    assert_string_equal(name, "mallory");
    assert_int_equal(iomt_pki_issue(f->ca_key, f->ca_cert, (const uint8_t *)csr,
                                    csr_len, "dev-7", IOMT_ROLE_DEVICE, 10,
                                    &cert, &len, &err),
                     IOMT_OK);
    assert_int_equal(
        iomt_pki_identity_pem((const uint8_t *)cert, len, &id, &err), IOMT_OK);
    assert_string_equal(id.name, "dev-7");
    assert_string_equal(id.role, "device");
    free(cert);
    free(csr);
    iomt_key_free(key);
}

static void test_bad_names_roles(void **state)
{
    struct fixture *f = *state;
    struct iomt_key *key = NULL;
    struct iomt_err err = {0};
    char *csr = NULL, *cert = NULL, long_name[IOMT_NAME_MAX + 2];
    size_t csr_len = 0, len = 0;

    assert_int_equal(iomt_key_generate(IOMT_ALG_ES256, &key, &err), IOMT_OK);
    assert_int_equal(iomt_pki_make_csr(key, "ok", "root", &csr, &csr_len, &err),
                     IOMT_E_INPUT);
    assert_int_equal(
        iomt_pki_make_csr(key, "a b", "device", &csr, &csr_len, &err),
        IOMT_E_INPUT);
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = 0;
    assert_false(iomt_pki_name_ok(long_name));
    assert_false(iomt_pki_name_ok(""));
    assert_false(iomt_pki_name_ok("x/y"));
    assert_true(iomt_pki_name_ok("pump_01.a-b"));
    assert_int_equal(
        iomt_pki_make_csr(key, "ok", "device", &csr, &csr_len, &err), IOMT_OK);
    assert_int_equal(iomt_pki_issue(f->ca_key, f->ca_cert, (const uint8_t *)csr,
                                    csr_len, "ok", "superuser", 10, &cert, &len,
                                    &err),
                     IOMT_E_INPUT);
    assert_null(cert);
    assert_int_equal(iomt_pki_issue(f->ca_key, f->ca_cert, (const uint8_t *)csr,
                                    csr_len, "o k", "device", 10, &cert, &len,
                                    &err),
                     IOMT_E_INPUT);
    assert_null(cert);
    /* A CA key that does not belong to the CA certificate. */
    assert_int_equal(iomt_pki_issue(f->ca2_key, f->ca_cert,
                                    (const uint8_t *)csr, csr_len, "ok",
                                    "device", 10, &cert, &len, &err),
                     IOMT_E_INPUT);
    assert_null(cert);
    free(csr);
    iomt_key_free(key);
}

/* Flips one byte inside the signed part of a PEM CSR and re-encodes it. */
static char *forge_csr(const char *pem, size_t len, size_t *out_len)
{
    const char *b = strstr(pem, "-----\n"), *e = strstr(pem, "\n-----END");
    uint8_t der[2048];
    char *b64, *out;
    long n;
    size_t blen;

    assert_non_null(b);
    assert_non_null(e);
    (void)len;
    b += 6;
    n = iomt_pki_base64_decode(b, (size_t)(e - b), der, sizeof(der));
    assert_true(n > 40);
    /* The subject sits early in the request: byte 30 is in the signed
     * CertificationRequestInfo, so the structure still parses. */
    assert_non_null(memmem(der, (size_t)n, "dev-0001", 8));
    ((uint8_t *)memmem(der, (size_t)n, "dev-0001", 8))[7] = '2';
    b64 = iomt_pki_base64_encode(der, (size_t)n, &blen);
    assert_non_null(b64);
    out = malloc(blen + 80);
    assert_non_null(out);
    *out_len = (size_t)snprintf(out, blen + 80,
                                "-----BEGIN CERTIFICATE REQUEST-----\n%s\n"
                                "-----END CERTIFICATE REQUEST-----\n",
                                b64);
    free(b64);
    return out;
}

static void test_forged_csr(void **state)
{
    struct fixture *f = *state;
    struct iomt_key *key = NULL;
    struct iomt_err err = {0};
    char *csr = NULL, *forged, *cert = NULL, name[IOMT_NAME_MAX + 1];
    size_t csr_len = 0, forged_len = 0, len = 0;

    assert_int_equal(iomt_key_generate(IOMT_ALG_ES256, &key, &err), IOMT_OK);
    assert_int_equal(
        iomt_pki_make_csr(key, "dev-0001", "device", &csr, &csr_len, &err),
        IOMT_OK);
    forged = forge_csr(csr, csr_len, &forged_len);
    assert_int_equal(
        iomt_pki_csr_name((const uint8_t *)forged, forged_len, name, &err),
        IOMT_E_VERIFY);
    assert_non_null(strstr(err.msg, "csr.signature"));
    assert_int_equal(
        iomt_pki_issue(f->ca_key, f->ca_cert, (const uint8_t *)forged,
                       forged_len, "dev-0002", "device", 10, &cert, &len, &err),
        IOMT_E_VERIFY);
    assert_null(cert);
    /* Garbage and truncation are input errors, never a crash. */
    assert_int_equal(
        iomt_pki_csr_name((const uint8_t *)"\x30\x03\x02\x01", 4, name, &err),
        IOMT_E_INPUT);
    assert_int_equal(
        iomt_pki_csr_name((const uint8_t *)csr, csr_len / 2, name, &err),
        IOMT_E_INPUT);
    assert_int_equal(iomt_pki_csr_name((const uint8_t *)"", 0, name, &err),
                     IOMT_E_INPUT);
    free(forged);
    free(csr);
    iomt_key_free(key);
}

static void test_est_round_trip(void **state)
{
    struct fixture *f = *state;
    struct iomt_key *key = NULL;
    struct iomt_err err = {0};
    char *cert = NULL, *b64 = NULL, *back = NULL;
    size_t len = 0, b64_len = 0, back_len = 0;

    issue(f->ca_key, f->ca_cert, "mon-3", IOMT_ROLE_DEVICE, IOMT_ALG_ES256,
          &key, &cert, &len);
    assert_int_equal(
        iomt_pki_est_wrap((const uint8_t *)cert, len, &b64, &b64_len, &err),
        IOMT_OK);
    assert_int_equal(strlen(b64), b64_len);
    assert_int_equal(iomt_pki_est_unwrap((const uint8_t *)b64, b64_len, &back,
                                         &back_len, &err),
                     IOMT_OK);
    assert_int_equal(back_len, len);
    assert_memory_equal(back, cert, len);
    free(back);
    back = NULL;
    /* Damaged wire forms are refused. */
    assert_int_equal(iomt_pki_est_unwrap((const uint8_t *)b64, b64_len / 2,
                                         &back, &back_len, &err),
                     IOMT_E_INPUT);
    assert_null(back);
    assert_int_equal(
        iomt_pki_est_unwrap((const uint8_t *)"!!!!", 4, &back, &back_len, &err),
        IOMT_E_INPUT);
    assert_int_equal(iomt_pki_est_unwrap((const uint8_t *)"MAMCAQE=", 8, &back,
                                         &back_len, &err),
                     IOMT_E_INPUT);
    free(b64);
    b64 = NULL;
    assert_int_equal(
        iomt_pki_est_wrap((const uint8_t *)"junk", 4, &b64, &b64_len, &err),
        IOMT_E_INPUT);
    assert_null(b64);
    free(cert);
    iomt_key_free(key);
}

static void test_base64(void **state)
{
    /* RFC 4648 section 10 test vectors. */
    static const char *const vec[][2] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    uint8_t out[16];
    size_t i, n;
    long got;

    (void)state;
    for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        char *enc = iomt_pki_base64_encode((const uint8_t *)vec[i][0],
                                           strlen(vec[i][0]), &n);

        assert_non_null(enc);
        assert_string_equal(enc, vec[i][1]);
        free(enc);
        got = iomt_pki_base64_decode(vec[i][1], strlen(vec[i][1]), out,
                                     sizeof(out));
        assert_int_equal(got, (long)strlen(vec[i][0]));
        assert_memory_equal(out, vec[i][0], (size_t)got);
    }
    assert_int_equal(iomt_pki_base64_decode("Zm9v\r\nYmFy", 10, out, 16), 6);
    assert_int_equal(iomt_pki_base64_decode("Zm9v*", 5, out, 16), -1);
    assert_int_equal(iomt_pki_base64_decode("Zg==Zg==", 8, out, 16), -1);
    assert_int_equal(iomt_pki_base64_decode("Z", 1, out, 16), -1);
    assert_int_equal(iomt_pki_base64_decode("Zm9vYmFy", 8, out, 5), -1);
}

/* Runs a TLS handshake between two contexts over an in-memory pipe.
 * Returns 1 when both sides finished, 0 when either failed. */
static int handshake(SSL_CTX *server_ctx, SSL_CTX *client_ctx,
                     struct iomt_identity *id, int *id_rc)
{
    SSL *srv = SSL_new(server_ctx), *cli = SSL_new(client_ctx);
    BIO *sb = NULL, *cb = NULL;
    struct iomt_err err = {0};
    int i, s_done = 0, c_done = 0, failed = 0;

    assert_non_null(srv);
    assert_non_null(cli);
    assert_int_equal(BIO_new_bio_pair(&sb, 0, &cb, 0), 1);
    SSL_set_bio(srv, sb, sb);
    SSL_set_bio(cli, cb, cb);
    SSL_set_accept_state(srv);
    SSL_set_connect_state(cli);
    SSL_set1_host(cli, "localhost");
    for (i = 0; i < 50 && !failed && !(s_done && c_done); i++) {
        int rc;

        if (!c_done) {
            rc = SSL_do_handshake(cli);
            if (rc == 1)
                c_done = 1;
            else if (SSL_get_error(cli, rc) != SSL_ERROR_WANT_READ)
                failed = 1;
        }
        if (!s_done && !failed) {
            rc = SSL_do_handshake(srv);
            if (rc == 1)
                s_done = 1;
            else if (SSL_get_error(srv, rc) != SSL_ERROR_WANT_READ)
                failed = 1;
        }
    }
    /* TLS 1.3: the server judges the client's certificate after the
     * client considers itself done; a read makes that visible. */
    if (!failed && s_done && c_done) {
        char b;

        SSL_write(cli, "x", 1);
        failed = SSL_read(srv, &b, 1) != 1;
    }
    if (!failed && id != NULL)
        *id_rc = iomt_pki_peer_identity(srv, id, &err);
    SSL_free(srv);
    SSL_free(cli);
    return !failed && s_done && c_done;
}

static void write_pem(const char *path, const char *pem, size_t len)
{
    struct iomt_err err = {0};

    assert_int_equal(iomt_pki_save_pem(path, pem, len, &err), IOMT_OK);
}

static void save_pair(const char *dir, const char *stem, struct iomt_key *key,
                      const char *cert, size_t len, char *cert_path,
                      char *key_path)
{
    struct iomt_err err = {0};

    snprintf(cert_path, PATH_MAX, "%s/%s.pem", dir, stem);
    snprintf(key_path, PATH_MAX, "%s/%s.key.pem", dir, stem);
    write_pem(cert_path, cert, len);
    assert_int_equal(iomt_key_save(key, key_path, NULL, &err), IOMT_OK);
}

static void test_tls_mutual(void **state)
{
    struct fixture *f = *state;
    struct iomt_key *hk = NULL, *dk = NULL, *ek = NULL;
    char *hub = NULL, *dev = NULL, *evil = NULL;
    size_t hl = 0, dl = 0, el = 0;
    char hub_c[PATH_MAX], hub_k[PATH_MAX], dev_c[PATH_MAX], dev_k[PATH_MAX];
    char evil_c[PATH_MAX], evil_k[PATH_MAX];
    SSL_CTX *server = NULL, *client = NULL, *anon = NULL, *foreign = NULL;
    SSL_CTX *mismatch = NULL;
    struct iomt_identity id;
    struct iomt_err err = {0};
    int id_rc = -99;

    issue(f->ca_key, f->ca_cert, "localhost", IOMT_ROLE_HUB, IOMT_ALG_ES256,
          &hk, &hub, &hl);
    issue(f->ca_key, f->ca_cert, "pump-9", IOMT_ROLE_DEVICE, IOMT_ALG_ES256,
          &dk, &dev, &dl);
    issue(f->ca2_key, f->ca2_cert, "pump-9", IOMT_ROLE_DEVICE, IOMT_ALG_ES256,
          &ek, &evil, &el);
    save_pair(f->dir, "hub", hk, hub, hl, hub_c, hub_k);
    save_pair(f->dir, "dev", dk, dev, dl, dev_c, dev_k);
    save_pair(f->dir, "evil", ek, evil, el, evil_c, evil_k);

    assert_int_equal(
        iomt_pki_tls_server_ctx(f->ca_cert, hub_c, hub_k, &server, &err),
        IOMT_OK);
    assert_int_equal(
        iomt_pki_tls_client_ctx(f->ca_cert, dev_c, dev_k, &client, &err),
        IOMT_OK);
    assert_int_equal(
        iomt_pki_tls_client_ctx(f->ca_cert, NULL, NULL, &anon, &err), IOMT_OK);
    assert_int_equal(
        iomt_pki_tls_client_ctx(f->ca_cert, evil_c, evil_k, &foreign, &err),
        IOMT_OK);

    /* A fleet device: handshake completes, identity comes out. */
    assert_true(handshake(server, client, &id, &id_rc));
    assert_int_equal(id_rc, IOMT_OK);
    assert_string_equal(id.name, "pump-9");
    assert_string_equal(id.role, "device");
    /* No certificate: the handshake is allowed, but there is no identity
     * for any API call to use. */
    id_rc = -99;
    assert_true(handshake(server, anon, &id, &id_rc));
    assert_int_equal(id_rc, IOMT_E_AUTH);
    /* A certificate from another CA, same name and role: refused. */
    assert_false(handshake(server, foreign, NULL, NULL));
    /* A key that does not match the certificate cannot make a context. */
    assert_int_equal(
        iomt_pki_tls_server_ctx(f->ca_cert, hub_c, dev_k, &mismatch, &err),
        IOMT_E_INPUT);
    assert_null(mismatch);

    SSL_CTX_free(server);
    SSL_CTX_free(client);
    SSL_CTX_free(anon);
    SSL_CTX_free(foreign);
    iomt_key_free(hk);
    iomt_key_free(dk);
    iomt_key_free(ek);
    free(hub);
    free(dev);
    free(evil);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ca_init),
        cmocka_unit_test(test_issue_identity),
        cmocka_unit_test(test_subject_from_caller),
        cmocka_unit_test(test_bad_names_roles),
        cmocka_unit_test(test_forged_csr),
        cmocka_unit_test(test_est_round_trip),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_tls_mutual),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
