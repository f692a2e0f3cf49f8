/*
 * The fleet PKI over OpenSSL's X.509, PKCS#10, PKCS#7 and TLS APIs: a
 * private P-256 CA, certificates for devices and operators with the role
 * in the subject OU, EST certs-only wrapping, and the hub's TLS contexts.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "crypto_internal.h"
#include "iomt/file.h"
#include "iomt/pki.h"

#define PKI_PEM_MAX    (64 * 1024)
#define PKI_SERIAL_LEN 16
#define PKI_BACKDATE   300 /* seconds: tolerate small clock skew */
#define PKI_DAYS_MAX   (100 * 365)

static const char *const known_roles[] = {
    IOMT_ROLE_DEVICE,   IOMT_ROLE_ADMIN,    IOMT_ROLE_RELEASE,
    IOMT_ROLE_SECURITY, IOMT_ROLE_CLINICAL, IOMT_ROLE_HUB,
};

int iomt_pki_name_ok(const char *name)
{
    size_t i, n;

    if (name == NULL)
        return 0;
    n = strlen(name);
    /* A leading dot could name "." or ".." in a path built from the ID;
     * a leading dash reads as an option to the tools that take it. */
    if (n == 0 || n > IOMT_NAME_MAX || name[0] == '.' || name[0] == '-')
        return 0;
    for (i = 0; i < n; i++) {
        char c = name[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int iomt_pki_role_ok(const char *role)
{
    size_t i;

    if (role == NULL)
        return 0;
    for (i = 0; i < sizeof(known_roles) / sizeof(known_roles[0]); i++) {
        if (strcmp(role, known_roles[i]) == 0)
            return 1;
    }
    return 0;
}

int iomt_pki_save_pem(const char *path, const char *pem, size_t n,
                      struct iomt_err *err)
{
    return iomt_file_write_atomic(path, pem, n, 0644, err);
}

static X509 *cert_from_pem(const uint8_t *pem, size_t n)
{
    BIO *bio;
    X509 *cert;

    if (pem == NULL || n == 0 || n > PKI_PEM_MAX)
        return NULL;
    bio = BIO_new_mem_buf(pem, (int)n);
    if (bio == NULL)
        return NULL;
    cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    return cert;
}

static int load_cert(const char *path, X509 **out, struct iomt_err *err)
{
    uint8_t *pem = NULL;
    size_t n = 0;
    int rc;

    rc = iomt_file_read(path, PKI_PEM_MAX, &pem, &n, err);
    if (rc != IOMT_OK)
        return rc;
    *out = cert_from_pem(pem, n);
    free(pem);
    if (*out == NULL)
        return iomt_err_set(err, IOMT_E_INPUT, "%s: not a PEM certificate",
                            path);
    return IOMT_OK;
}

/* Loads the CA pair and checks that the key belongs to the certificate. */
static int load_ca(const char *key_path, const char *cert_path,
                   struct iomt_key **key, X509 **cert, struct iomt_err *err)
{
    int rc;

    *key = NULL;
    *cert = NULL;
    rc = iomt_key_load(key_path, key, err);
    if (rc != IOMT_OK)
        return rc;
    if (!iomt_key_has_private(*key)) {
        rc = iomt_err_set(err, IOMT_E_INPUT, "%s: not a private key", key_path);
        goto out_fail;
    }
    rc = load_cert(cert_path, cert, err);
    if (rc != IOMT_OK)
        goto out_fail;
    /* A leaf written over ca.pem must not go on issuing certificates that
     * nothing in the fleet can verify. */
    if (X509_check_ca(*cert) == 0) {
        rc = iomt_err_set(err, IOMT_E_INPUT,
                          "%s: not a CA certificate (basicConstraints)",
                          cert_path);
        goto out_fail;
    }
    if (X509_check_private_key(*cert, iomt_key_evp(*key)) != 1) {
        rc =
            iomt_err_set(err, IOMT_E_INPUT,
                         "%s: key does not match the CA certificate", key_path);
        goto out_fail;
    }
    return IOMT_OK;
out_fail:
    X509_free(*cert);
    *cert = NULL;
    iomt_key_free(*key);
    *key = NULL;
    return rc;
}

/* Random 128-bit positive serial (RFC 5280 allows up to 20 octets). */
static int set_random_serial(X509 *cert)
{
    uint8_t raw[PKI_SERIAL_LEN];
    BIGNUM *bn = NULL;
    int ok = 0;

    if (iomt_random(raw, sizeof(raw)) != IOMT_OK)
        return 0;
    raw[0] &= 0x7f;
    raw[0] |= 0x40; /* keeps the serial a full 16 octets and positive */
    bn = BN_bin2bn(raw, sizeof(raw), NULL);
    if (bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)))
        ok = 1;
    BN_free(bn);
    return ok;
}

static int add_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext;
    int ok;

    ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (ext == NULL)
        return 0;
    ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1;
}

static int set_validity(X509 *cert, int days)
{
    return X509_gmtime_adj(X509_getm_notBefore(cert), -PKI_BACKDATE) != NULL &&
           X509_time_adj_ex(X509_getm_notAfter(cert), days, 0, NULL) != NULL;
}

static int sign_cert(X509 *cert, EVP_PKEY *ca_key)
{
    /* Ed25519 signs the message itself and takes no digest. */
    const EVP_MD *md =
        EVP_PKEY_get_id(ca_key) == EVP_PKEY_ED25519 ? NULL : EVP_sha256();

    return X509_sign(cert, ca_key, md) > 0;
}

static char *bio_to_string(BIO *bio, size_t *len)
{
    char *data = NULL, *copy;
    long n = BIO_get_mem_data(bio, &data);

    if (n <= 0 || data == NULL)
        return NULL;
    copy = malloc((size_t)n + 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, data, (size_t)n);
    copy[n] = 0;
    if (len != NULL)
        *len = (size_t)n;
    return copy;
}

static char *cert_to_pem(X509 *cert, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem = NULL;

    if (bio == NULL)
        return NULL;
    if (PEM_write_bio_X509(bio, cert) == 1)
        pem = bio_to_string(bio, len);
    BIO_free(bio);
    return pem;
}

int iomt_pki_ca_init(const char *ca_key_path, const char *ca_cert_path,
                     const char *org, int days, struct iomt_err *err)
{
    struct iomt_key *key = NULL;
    X509 *cert = NULL;
    X509_NAME *subject;
    X509V3_CTX ctx;
    char cn[IOMT_NAME_MAX + 32], *pem = NULL;
    size_t pem_len = 0;
    int rc;

    if (org == NULL || org[0] == 0 || strlen(org) > IOMT_NAME_MAX)
        return iomt_err_set(err, IOMT_E_INPUT, "org: 1..%d characters",
                            IOMT_NAME_MAX);
    if (days <= 0 || days > PKI_DAYS_MAX)
        return iomt_err_set(err, IOMT_E_INPUT, "days: out of range");
    rc = iomt_key_generate(IOMT_ALG_ES256, &key, err);
    if (rc != IOMT_OK)
        return rc;
    rc = IOMT_E_CRYPTO;
    snprintf(cn, sizeof(cn), "%s Fleet CA", org);
    cert = X509_new();
    if (cert == NULL || X509_set_version(cert, 2) != 1 ||
        !set_random_serial(cert) || !set_validity(cert, days))
        goto out_fail;
    subject = X509_get_subject_name(cert);
    if (X509_NAME_add_entry_by_NID(subject, NID_organizationName, MBSTRING_UTF8,
                                   (const unsigned char *)org, -1, -1,
                                   0) != 1 ||
        X509_NAME_add_entry_by_NID(subject, NID_commonName, MBSTRING_UTF8,
                                   (const unsigned char *)cn, -1, -1, 0) != 1 ||
        X509_set_issuer_name(cert, subject) != 1 ||
        X509_set_pubkey(cert, iomt_key_evp(key)) != 1)
        goto out_fail;
    X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
    /* pathlen 0: a stolen device or operator key cannot mint a sub-CA. */
    if (!add_ext(cert, &ctx, NID_basic_constraints,
                 "critical,CA:TRUE,"
                 "pathlen:0") ||
        !add_ext(cert, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") ||
        !add_ext(cert, &ctx, NID_subject_key_identifier, "hash") ||
        !add_ext(cert, &ctx, NID_authority_key_identifier, "keyid:always") ||
        !sign_cert(cert, iomt_key_evp(key)))
        goto out_fail;
    pem = cert_to_pem(cert, &pem_len);
    if (pem == NULL)
        goto out_fail;
    rc = iomt_key_save(key, ca_key_path, NULL, err);
    if (rc == IOMT_OK)
        rc = iomt_pki_save_pem(ca_cert_path, pem, pem_len, err);
    goto out_free;
out_fail:
    rc = iomt_err_set(err, IOMT_E_CRYPTO, "CA certificate: building failed");
out_free:
    free(pem);
    X509_free(cert);
    iomt_key_free(key);
    return rc;
}

static int add_subject(X509_NAME *subject, const char *name, const char *role)
{
    return X509_NAME_add_entry_by_NID(
               subject, NID_organizationalUnitName, MBSTRING_UTF8,
               (const unsigned char *)role, -1, -1, 0) == 1 &&
           X509_NAME_add_entry_by_NID(subject, NID_commonName, MBSTRING_UTF8,
                                      (const unsigned char *)name, -1, -1,
                                      0) == 1;
}

int iomt_pki_make_csr(const struct iomt_key *key, const char *name,
                      const char *role, char **pem, size_t *pem_len,
                      struct iomt_err *err)
{
    X509_REQ *req = NULL;
    BIO *bio = NULL;
    EVP_PKEY *pkey = iomt_key_evp(key);
    int rc = IOMT_E_CRYPTO;

    *pem = NULL;
    if (pkey == NULL || !iomt_key_has_private(key))
        return iomt_err_set(err, IOMT_E_INPUT, "key: private key required");
    if (!iomt_pki_name_ok(name))
        return iomt_err_set(err, IOMT_E_INPUT, "name: 1..%d of [A-Za-z0-9._-]",
                            IOMT_NAME_MAX);
    if (!iomt_pki_role_ok(role))
        return iomt_err_set(err, IOMT_E_INPUT, "role: unknown");
    req = X509_REQ_new();
    bio = BIO_new(BIO_s_mem());
    if (req == NULL || bio == NULL ||
        !add_subject(X509_REQ_get_subject_name(req), name, role) ||
        X509_REQ_set_pubkey(req, pkey) != 1 ||
        X509_REQ_sign(
            req, pkey,
            iomt_key_alg(key) == IOMT_ALG_EDDSA ? NULL : EVP_sha256()) <= 0 ||
        PEM_write_bio_X509_REQ(bio, req) != 1) {
        rc = iomt_err_set(err, IOMT_E_CRYPTO, "CSR: building failed");
        goto out_free;
    }
    *pem = bio_to_string(bio, pem_len);
    rc = *pem == NULL ? iomt_err_set(err, IOMT_E_NOMEM, "CSR: out of memory")
                      : IOMT_OK;
out_free:
    BIO_free(bio);
    X509_REQ_free(req);
    return rc;
}

/* Parses a PEM or DER CSR and checks its proof of possession. */
static int parse_csr(const uint8_t *csr, size_t n, X509_REQ **out,
                     struct iomt_err *err)
{
    static const char pem_tag[] = "-----BEGIN";
    X509_REQ *req = NULL;
    EVP_PKEY *pkey;
    int id;

    *out = NULL;
    if (csr == NULL || n == 0 || n > PKI_PEM_MAX)
        return iomt_err_set(err, IOMT_E_INPUT, "csr: empty or too large");
    if (n >= sizeof(pem_tag) - 1 &&
        memmem(csr, n, pem_tag, sizeof(pem_tag) - 1) != NULL) {
        BIO *bio = BIO_new_mem_buf(csr, (int)n);

        if (bio == NULL)
            return iomt_err_set(err, IOMT_E_NOMEM, "csr: out of memory");
        req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
        BIO_free(bio);
    } else {
        const unsigned char *p = csr;

        req = d2i_X509_REQ(NULL, &p, (long)n);
        if (req != NULL && p != csr + n) {
            X509_REQ_free(req);
            return iomt_err_set(err, IOMT_E_INPUT, "csr: trailing bytes");
        }
    }
    ERR_clear_error();
    if (req == NULL)
        return iomt_err_set(err, IOMT_E_INPUT, "csr: not a PKCS#10 request");
    pkey = X509_REQ_get0_pubkey(req);
    id = pkey == NULL ? 0 : EVP_PKEY_get_id(pkey);
    if (id == EVP_PKEY_EC) {
        char group[32];
        size_t glen = 0;

        if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &glen) != 1 ||
            strcmp(group, "prime256v1") != 0)
            id = 0;
    }
    if (id != EVP_PKEY_EC && id != EVP_PKEY_ED25519) {
        X509_REQ_free(req);
        return iomt_err_set(err, IOMT_E_INPUT,
                            "csr.key: not a P-256 or Ed25519 key");
    }
    /* Proof of possession: a CSR signed by another key than it names
     * would let an attacker get a certificate for a key it lacks. */
    if (X509_REQ_verify(req, pkey) != 1) {
        ERR_clear_error();
        X509_REQ_free(req);
        return iomt_err_set(err, IOMT_E_VERIFY,
                            "csr.signature: does not verify");
    }
    *out = req;
    return IOMT_OK;
}

static int name_entry(const X509_NAME *nm, int nid, char *out, size_t cap)
{
    const X509_NAME_ENTRY *entry;
    const ASN1_STRING *data;
    int idx, len;

    out[0] = 0;
    idx = X509_NAME_get_index_by_NID(nm, nid, -1);
    if (idx < 0)
        return 0;
    /* A second CN or OU would make the identity ambiguous. */
    if (X509_NAME_get_index_by_NID(nm, nid, idx) >= 0)
        return 0;
    entry = X509_NAME_get_entry(nm, idx);
    data = X509_NAME_ENTRY_get_data(entry);
    len = ASN1_STRING_length(data);
    if (len <= 0 || (size_t)len >= cap)
        return 0;
    memcpy(out, ASN1_STRING_get0_data(data), (size_t)len);
    out[len] = 0;
    return strlen(out) == (size_t)len;
}

int iomt_pki_csr_name(const uint8_t *csr, size_t n, char *name,
                      struct iomt_err *err)
{
    X509_REQ *req = NULL;
    int rc;

    name[0] = 0;
    rc = parse_csr(csr, n, &req, err);
    if (rc != IOMT_OK)
        return rc;
    if (!name_entry(X509_REQ_get_subject_name(req), NID_commonName, name,
                    IOMT_NAME_MAX + 1) ||
        !iomt_pki_name_ok(name)) {
        name[0] = 0;
        rc = iomt_err_set(err, IOMT_E_INPUT, "csr.subject: missing or bad CN");
    }
    X509_REQ_free(req);
    return rc;
}

static int add_role_exts(X509 *cert, X509V3_CTX *ctx, const char *name,
                         const char *role)
{
    int is_hub = strcmp(role, IOMT_ROLE_HUB) == 0;
    char san[IOMT_NAME_MAX + 48];

    if (!add_ext(cert, ctx, NID_basic_constraints, "critical,CA:FALSE") ||
        !add_ext(cert, ctx, NID_key_usage, "critical,digitalSignature") ||
        !add_ext(cert, ctx, NID_ext_key_usage,
                 is_hub ? "serverAuth" : "clientAuth") ||
        !add_ext(cert, ctx, NID_subject_key_identifier, "hash") ||
        !add_ext(cert, ctx, NID_authority_key_identifier, "keyid:always"))
        return 0;
    if (!is_hub)
        return 1;
    /* Clients check the hub by name; its own name joins the loopback
     * names so a test can pin it with a resolver override. */
    if (strcmp(name, "localhost") == 0)
        snprintf(san, sizeof(san), "DNS:localhost,IP:127.0.0.1");
    else
        snprintf(san, sizeof(san), "DNS:%s,DNS:localhost,IP:127.0.0.1", name);
    return add_ext(cert, ctx, NID_subject_alt_name, san);
}

int iomt_pki_issue(const char *ca_key_path, const char *ca_cert_path,
                   const uint8_t *csr, size_t csr_len, const char *name,
                   const char *role, int days, char **cert_pem,
                   size_t *cert_len, struct iomt_err *err)
{
    struct iomt_key *ca_key = NULL;
    X509 *ca = NULL, *cert = NULL;
    X509_REQ *req = NULL;
    X509V3_CTX ctx;
    int rc;

    *cert_pem = NULL;
    if (!iomt_pki_name_ok(name))
        return iomt_err_set(err, IOMT_E_INPUT, "name: 1..%d of [A-Za-z0-9._-]",
                            IOMT_NAME_MAX);
    if (!iomt_pki_role_ok(role))
        return iomt_err_set(err, IOMT_E_INPUT, "role: unknown");
    if (days <= 0 || days > PKI_DAYS_MAX)
        return iomt_err_set(err, IOMT_E_INPUT, "days: out of range");
    rc = parse_csr(csr, csr_len, &req, err);
    if (rc != IOMT_OK)
        return rc;
    rc = load_ca(ca_key_path, ca_cert_path, &ca_key, &ca, err);
    if (rc != IOMT_OK)
        goto out_free;
    rc = IOMT_E_CRYPTO;
    cert = X509_new();
    if (cert == NULL || X509_set_version(cert, 2) != 1 ||
        !set_random_serial(cert) || !set_validity(cert, days) ||
        !add_subject(X509_get_subject_name(cert), name, role) ||
        X509_set_issuer_name(cert, X509_get_subject_name(ca)) != 1 ||
        X509_set_pubkey(cert, X509_REQ_get0_pubkey(req)) != 1)
        goto out_fail;
    X509V3_set_ctx(&ctx, ca, cert, NULL, NULL, 0);
    if (!add_role_exts(cert, &ctx, name, role) ||
        !sign_cert(cert, iomt_key_evp(ca_key)))
        goto out_fail;
    *cert_pem = cert_to_pem(cert, cert_len);
    if (*cert_pem == NULL)
        goto out_fail;
    rc = IOMT_OK;
    goto out_free;
out_fail:
    ERR_clear_error();
    rc = iomt_err_set(err, IOMT_E_CRYPTO, "certificate: building failed");
out_free:
    X509_free(cert);
    X509_free(ca);
    iomt_key_free(ca_key);
    X509_REQ_free(req);
    return rc;
}

static int identity_from_x509(const X509 *cert, struct iomt_identity *id,
                              struct iomt_err *err)
{
    const X509_NAME *subject = X509_get_subject_name(cert);
    BIGNUM *bn = NULL;
    char *hex = NULL;
    size_t i, len;
    int rc = IOMT_OK;

    memset(id, 0, sizeof(*id));
    if (!name_entry(subject, NID_commonName, id->name, sizeof(id->name)) ||
        !iomt_pki_name_ok(id->name))
        return iomt_err_set(err, IOMT_E_AUTH, "certificate.subject: bad CN");
    if (!name_entry(subject, NID_organizationalUnitName, id->role,
                    sizeof(id->role)) ||
        !iomt_pki_role_ok(id->role)) {
        memset(id, 0, sizeof(*id));
        return iomt_err_set(err, IOMT_E_AUTH, "certificate.subject: bad OU");
    }
    bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    hex = bn == NULL ? NULL : BN_bn2hex(bn);
    len = hex == NULL ? 0 : strlen(hex);
    if (len == 0 || len >= sizeof(id->serial_hex) || hex[0] == '-') {
        memset(id, 0, sizeof(*id));
        rc = iomt_err_set(err, IOMT_E_AUTH, "certificate.serial: bad");
        goto out_free;
    }
    for (i = 0; i < len; i++) {
        char c = hex[i];

        id->serial_hex[i] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
    }
out_free:
    OPENSSL_free(hex);
    BN_free(bn);
    return rc;
}

int iomt_pki_identity_pem(const uint8_t *pem, size_t n,
                          struct iomt_identity *id, struct iomt_err *err)
{
    X509 *cert = cert_from_pem(pem, n);
    int rc;

    memset(id, 0, sizeof(*id));
    if (cert == NULL) {
        ERR_clear_error();
        return iomt_err_set(err, IOMT_E_INPUT, "certificate: not PEM");
    }
    rc = identity_from_x509(cert, id, err);
    if (rc == IOMT_E_AUTH) {
        rc = IOMT_E_INPUT;
        if (err != NULL)
            err->code = rc;
    }
    X509_free(cert);
    return rc;
}

int iomt_pki_check_server_cert(const char *ca_cert_path, const char *cert_path,
                               struct iomt_err *err)
{
    struct iomt_identity id;
    X509 *ca = NULL, *cert = NULL;
    X509_STORE *store = NULL;
    X509_STORE_CTX *vctx = NULL;
    int rc;

    rc = load_cert(ca_cert_path, &ca, err);
    if (rc == IOMT_OK)
        rc = load_cert(cert_path, &cert, err);
    if (rc != IOMT_OK)
        goto out_free;
    rc = iomt_err_set(err, IOMT_E_CRYPTO, "certificate check: no memory");
    store = X509_STORE_new();
    vctx = X509_STORE_CTX_new();
    if (store == NULL || vctx == NULL || X509_STORE_add_cert(store, ca) != 1 ||
        X509_STORE_CTX_init(vctx, store, cert, NULL) != 1)
        goto out_free;
    if (X509_verify_cert(vctx) != 1) {
        rc = iomt_err_set(
            err, IOMT_E_AUTH, "%s: does not chain to the fleet CA %s: %s",
            cert_path, ca_cert_path,
            X509_verify_cert_error_string(X509_STORE_CTX_get_error(vctx)));
        goto out_free;
    }
    rc = identity_from_x509(cert, &id, err);
    if (rc != IOMT_OK)
        goto out_free;
    if (strcmp(id.role, IOMT_ROLE_HUB) != 0) {
        rc = iomt_err_set(err, IOMT_E_AUTH,
                          "%s: role (subject OU) is \"%s\", not \"hub\"",
                          cert_path, id.role);
        goto out_free;
    }
    if (!(X509_get_extension_flags(cert) & EXFLAG_XKUSAGE) ||
        !(X509_get_extended_key_usage(cert) & XKU_SSL_SERVER))
        rc = iomt_err_set(err, IOMT_E_AUTH,
                          "%s: lacks the serverAuth extended key usage",
                          cert_path);
out_free:
    ERR_clear_error();
    X509_STORE_CTX_free(vctx);
    X509_STORE_free(store);
    X509_free(cert);
    X509_free(ca);
    return rc;
}

int iomt_pki_peer_identity(struct ssl_st *ssl, struct iomt_identity *id,
                           struct iomt_err *err)
{
    X509 *peer;

    memset(id, 0, sizeof(*id));
    peer = SSL_get0_peer_certificate(ssl);
    if (peer == NULL)
        return iomt_err_set(err, IOMT_E_AUTH, "client certificate: none");
    if (SSL_get_verify_result(ssl) != X509_V_OK)
        return iomt_err_set(err, IOMT_E_AUTH,
                            "client certificate: did not verify");
    return identity_from_x509(peer, id, err);
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *iomt_pki_base64_encode(const uint8_t *p, size_t n, size_t *out_len)
{
    size_t i, o = 0, cap;
    char *out;

    if (n > (SIZE_MAX - 1) / 4 * 3 - 3)
        return NULL;
    cap = (n + 2) / 3 * 4 + 1;
    out = malloc(cap);
    if (out == NULL)
        return NULL;
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
        out[o++] = b64_alphabet[v >> 6 & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16;

        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
        out[o++] = i + 1 < n ? b64_alphabet[v >> 6 & 63] : '=';
        out[o++] = '=';
    }
    out[o] = 0;
    if (out_len != NULL)
        *out_len = o;
    return out;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long iomt_pki_base64_decode(const char *text, size_t n, uint8_t *out,
                            size_t out_cap)
{
    uint32_t acc = 0;
    size_t i, o = 0;
    int bits = 0, pad = 0;

    for (i = 0; i < n; i++) {
        char c = text[i];
        int v;

        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        v = b64_value(c);
        if (v < 0 || pad > 0)
            return -1; /* bad symbol, or data after padding */
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= out_cap)
                return -1;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Leftover bits must be zero padding, and "=" count must fit. */
    if (pad > 2 || bits >= 6 || acc != 0 || (pad > 0 && bits == 0) ||
        o > LONG_MAX)
        return -1;
    return (long)o;
}

int iomt_pki_est_wrap(const uint8_t *cert_pem, size_t n, char **b64,
                      size_t *b64_len, struct iomt_err *err)
{
    X509 *cert = cert_from_pem(cert_pem, n);
    PKCS7 *p7 = NULL;
    unsigned char *der = NULL;
    int der_len, rc = IOMT_E_CRYPTO;

    *b64 = NULL;
    if (cert == NULL) {
        ERR_clear_error();
        return iomt_err_set(err, IOMT_E_INPUT, "certificate: not PEM");
    }
    /* certs-only: a SignedData with no signers and empty content. */
    p7 = PKCS7_new();
    if (p7 == NULL || PKCS7_set_type(p7, NID_pkcs7_signed) != 1 ||
        PKCS7_content_new(p7, NID_pkcs7_data) != 1 ||
        PKCS7_set_detached(p7, 1) != 1 || PKCS7_add_certificate(p7, cert) != 1)
        goto out_fail;
    der_len = i2d_PKCS7(p7, &der);
    if (der_len <= 0)
        goto out_fail;
    *b64 = iomt_pki_base64_encode(der, (size_t)der_len, b64_len);
    if (*b64 == NULL) {
        rc = iomt_err_set(err, IOMT_E_NOMEM, "PKCS#7: out of memory");
        goto out_free;
    }
    rc = IOMT_OK;
    goto out_free;
out_fail:
    ERR_clear_error();
    rc = iomt_err_set(err, IOMT_E_CRYPTO, "PKCS#7: building failed");
out_free:
    OPENSSL_free(der);
    PKCS7_free(p7);
    X509_free(cert);
    return rc;
}

int iomt_pki_est_unwrap(const uint8_t *b64, size_t n, char **cert_pem,
                        size_t *pem_len, struct iomt_err *err)
{
    uint8_t *der = NULL;
    const unsigned char *p;
    PKCS7 *p7 = NULL;
    STACK_OF(X509) * certs;
    long der_len;
    int rc = IOMT_E_INPUT;

    *cert_pem = NULL;
    if (b64 == NULL || n == 0 || n > PKI_PEM_MAX)
        return iomt_err_set(err, IOMT_E_INPUT, "PKCS#7: empty or too large");
    der = malloc(n);
    if (der == NULL)
        return iomt_err_set(err, IOMT_E_NOMEM, "PKCS#7: out of memory");
    der_len = iomt_pki_base64_decode((const char *)b64, n, der, n);
    if (der_len <= 0) {
        rc = iomt_err_set(err, IOMT_E_INPUT, "PKCS#7: bad base64");
        goto out_free;
    }
    p = der;
    p7 = d2i_PKCS7(NULL, &p, der_len);
    if (p7 == NULL || p != der + der_len || !PKCS7_type_is_signed(p7) ||
        p7->d.sign == NULL) {
        rc = iomt_err_set(err, IOMT_E_INPUT, "PKCS#7: not SignedData");
        goto out_free;
    }
    certs = p7->d.sign->cert;
    if (certs == NULL || sk_X509_num(certs) < 1) {
        rc = iomt_err_set(err, IOMT_E_INPUT, "PKCS#7.certificates: empty");
        goto out_free;
    }
    *cert_pem = cert_to_pem(sk_X509_value(certs, 0), pem_len);
    rc = *cert_pem == NULL
             ? iomt_err_set(err, IOMT_E_NOMEM, "PKCS#7: out of memory")
             : IOMT_OK;
out_free:
    ERR_clear_error();
    PKCS7_free(p7);
    free(der);
    return rc;
}

static int tls_base_ctx(OSSL_LIB_CTX *libctx, const SSL_METHOD *method,
                        const char *ca_cert_path, const char *cert_path,
                        const char *key_path, SSL_CTX **out,
                        struct iomt_err *err)
{
    SSL_CTX *ctx;

    *out = NULL;
    ctx = SSL_CTX_new_ex(libctx, NULL, method);
    if (ctx == NULL)
        return iomt_err_set(err, IOMT_E_CRYPTO, "TLS: context failed");
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set1_groups_list(ctx, "P-256") != 1 ||
        SSL_CTX_set1_sigalgs_list(ctx, "ECDSA+SHA256:ed25519") != 1) {
        SSL_CTX_free(ctx);
        ERR_clear_error();
        return iomt_err_set(err, IOMT_E_CRYPTO, "TLS: settings refused");
    }
    if (SSL_CTX_load_verify_locations(ctx, ca_cert_path, NULL) != 1) {
        SSL_CTX_free(ctx);
        ERR_clear_error();
        return iomt_err_set(err, IOMT_E_INPUT, "%s: not a CA certificate",
                            ca_cert_path);
    }
    if (cert_path != NULL &&
        (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1 ||
         SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1 ||
         SSL_CTX_check_private_key(ctx) != 1)) {
        SSL_CTX_free(ctx);
        ERR_clear_error();
        return iomt_err_set(err, IOMT_E_INPUT, "%s: certificate or key bad",
                            cert_path);
    }
    *out = ctx;
    return IOMT_OK;
}

int iomt_pki_tls_server_ctx(const char *ca_cert_path, const char *cert_path,
                            const char *key_path, struct ssl_ctx_st **out,
                            struct iomt_err *err)
{
    return iomt_pki_tls_server_ctx_ex(NULL, ca_cert_path, cert_path, key_path,
                                      out, err);
}

int iomt_pki_tls_server_ctx_ex(struct ossl_lib_ctx_st *libctx,
                               const char *ca_cert_path, const char *cert_path,
                               const char *key_path, struct ssl_ctx_st **out,
                               struct iomt_err *err)
{
    STACK_OF(X509_NAME) * names;
    SSL_CTX *ctx;
    int rc;

    if (cert_path == NULL || key_path == NULL)
        return iomt_err_set(err, IOMT_E_INPUT, "TLS: server needs cert, key");
    rc = tls_base_ctx(libctx, TLS_server_method(), ca_cert_path, cert_path,
                      key_path, &ctx, err);
    if (rc != IOMT_OK)
        return rc;
    names = SSL_load_client_CA_file(ca_cert_path);
    if (names != NULL)
        SSL_CTX_set_client_CA_list(ctx, names);
    /* Ask everyone for a certificate but let enrolment proceed without
     * one; a certificate that fails to verify still ends the handshake. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_verify_depth(ctx, 2);
    /* No resumption: each connection proves its certificate afresh. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    /* Peers hold the fleet CA already; building and sending the chain up
     * to it on every handshake costs both sides for nothing. */
    SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN);
    *out = ctx;
    return IOMT_OK;
}

int iomt_pki_tls_client_ctx(const char *ca_cert_path, const char *cert_path,
                            const char *key_path, struct ssl_ctx_st **out,
                            struct iomt_err *err)
{
    SSL_CTX *ctx;
    int rc;

    rc = tls_base_ctx(NULL, TLS_client_method(), ca_cert_path, cert_path,
                      key_path, &ctx, err);
    if (rc != IOMT_OK)
        return rc;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    *out = ctx;
    return IOMT_OK;
}
