/*
 * The crypto seam over OpenSSL 3 (EVP): keys, ES256 and Ed25519
 * signatures in COSE form, SHA-256, randomness, constant-time compare and
 * wiping. No other file in libiomt calls OpenSSL's primitives.
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
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "crypto_internal.h"
#include "iomt/crypto.h"
#include "iomt/file.h"

#define PEM_MAX         (16 * 1024)
#define HASH_BUF_SIZE   (1024 * 1024)
#define ES256_COORD_LEN 32

struct iomt_key {
    EVP_PKEY *pkey;
    enum iomt_alg alg;
    int has_private;
};

struct iomt_sha256 {
    EVP_MD_CTX *ctx;
};

/* Only P-256 and Ed25519 are accepted: anything else is a wrong key. */
static int pkey_alg(EVP_PKEY *pkey, enum iomt_alg *alg)
{
    char group[32];
    size_t len = 0;

    if (EVP_PKEY_is_a(pkey, "ED25519")) {
        *alg = IOMT_ALG_EDDSA;
        return 0;
    }
    if (!EVP_PKEY_is_a(pkey, "EC"))
        return -1;
    if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                       sizeof(group), &len) != 1)
        return -1;
    if (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)
        return -1;
    *alg = IOMT_ALG_ES256;
    return 0;
}

static int pkey_has_private(EVP_PKEY *pkey, enum iomt_alg alg)
{
    BIGNUM *d = NULL;
    uint8_t raw[64];
    size_t len = sizeof(raw);
    int has;

    if (alg == IOMT_ALG_EDDSA) {
        has = EVP_PKEY_get_raw_private_key(pkey, raw, &len) == 1;
        OPENSSL_cleanse(raw, sizeof(raw));
        return has;
    }
    has = EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY, &d) == 1;
    BN_clear_free(d);
    return has;
}

struct iomt_key *iomt_key_wrap(EVP_PKEY *pkey)
{
    struct iomt_key *key;
    enum iomt_alg alg;

    if (pkey == NULL || pkey_alg(pkey, &alg) != 0)
        return NULL;
    key = calloc(1, sizeof(*key));
    if (key == NULL)
        return NULL;
    key->pkey = pkey;
    key->alg = alg;
    key->has_private = pkey_has_private(pkey, alg);
    return key;
}

EVP_PKEY *iomt_key_evp(const struct iomt_key *key)
{
    return key == NULL ? NULL : key->pkey;
}

int iomt_key_generate(enum iomt_alg alg, struct iomt_key **out,
                      struct iomt_err *err)
{
    EVP_PKEY *pkey = NULL;

    *out = NULL;
    if (alg == IOMT_ALG_ES256)
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    else if (alg == IOMT_ALG_EDDSA)
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    else
        return iomt_err_set(err, IOMT_E_INPUT, "alg: unsupported (%d)",
                            (int)alg);
    if (pkey == NULL)
        return iomt_err_set(err, IOMT_E_CRYPTO, "key generation failed");
    *out = iomt_key_wrap(pkey);
    if (*out == NULL) {
        EVP_PKEY_free(pkey);
        return iomt_err_set(err, IOMT_E_NOMEM, "key: out of memory");
    }
    return IOMT_OK;
}

static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

int iomt_key_from_pem(const uint8_t *pem, size_t n, struct iomt_key **out,
                      struct iomt_err *err)
{
    BIO *bio = NULL;
    EVP_PKEY *pkey = NULL;
    int rc = IOMT_E_INPUT;

    *out = NULL;
    if (pem == NULL || n == 0 || n > PEM_MAX)
        return iomt_err_set(err, IOMT_E_INPUT, "key: empty or too large");
    bio = BIO_new_mem_buf(pem, (int)n);
    if (bio == NULL)
        return iomt_err_set(err, IOMT_E_NOMEM, "key: out of memory");
    /* No password callback: OpenSSL's default one would prompt on the
     * terminal from inside the library. Encrypted keys are refused. */
    pkey = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL);
    if (pkey == NULL) {
        if (BIO_reset(bio) != 1) {
            rc = iomt_err_set(err, IOMT_E_CRYPTO, "key: BIO reset failed");
            goto out_free_bio;
        }
        pkey = PEM_read_bio_PUBKEY(bio, NULL, no_password, NULL);
    }
    /* Failed attempts leave errors queued; clear them so they are not
     * reported later against an unrelated TLS or X.509 call. */
    ERR_clear_error();
    if (pkey == NULL) {
        rc = iomt_err_set(err, IOMT_E_INPUT,
                          "key: not a PEM private or public key");
        goto out_free_bio;
    }
    *out = iomt_key_wrap(pkey);
    if (*out == NULL) {
        EVP_PKEY_free(pkey);
        rc = iomt_err_set(err, IOMT_E_INPUT, "key: not a P-256 or Ed25519 key");
        goto out_free_bio;
    }
    rc = IOMT_OK;
out_free_bio:
    BIO_free(bio);
    return rc;
}

int iomt_key_load(const char *path, struct iomt_key **out, struct iomt_err *err)
{
    uint8_t buf[PEM_MAX];
    size_t n;
    FILE *f;
    int rc;

    *out = NULL;
    f = fopen(path, "rb");
    if (f == NULL)
        return iomt_err_set(err, IOMT_E_IO, "key %s: %s", path,
                            strerror(errno));
    n = fread(buf, 1, sizeof(buf), f);
    if (ferror(f) || !feof(f)) {
        fclose(f);
        iomt_wipe(buf, sizeof(buf));
        return iomt_err_set(err, IOMT_E_INPUT,
                            "key %s: unreadable or larger than %d bytes", path,
                            PEM_MAX);
    }
    fclose(f);
    rc = iomt_key_from_pem(buf, n, out, err);
    iomt_wipe(buf, sizeof(buf));
    if (rc != IOMT_OK && err != NULL) {
        char msg[sizeof(err->msg)];

        snprintf(msg, sizeof(msg), "%s", err->msg);
        iomt_err_set(err, rc, "%s (%s)", msg, path);
    }
    return rc;
}

/* Writes data to path through a temporary file and rename, so a crash
 * never leaves a half-written key behind. */
static int bio_to_file(BIO *bio, const char *path, mode_t mode,
                       struct iomt_err *err)
{
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);

    if (len <= 0 || data == NULL)
        return iomt_err_set(err, IOMT_E_CRYPTO, "PEM encoding failed");
    return iomt_file_write_atomic(path, data, (size_t)len, mode, err);
}

static int save_public(const struct iomt_key *key, const char *path,
                       struct iomt_err *err)
{
    BIO *bio = BIO_new(BIO_s_mem());
    int rc;

    if (bio == NULL || PEM_write_bio_PUBKEY(bio, key->pkey) != 1)
        rc =
            iomt_err_set(err, IOMT_E_CRYPTO, "public key: PEM encoding failed");
    else
        rc = bio_to_file(bio, path, 0644, err);
    BIO_free(bio);
    return rc;
}

static int save_private(const struct iomt_key *key, const char *path,
                        struct iomt_err *err)
{
    BIO *bio = BIO_new(BIO_s_secmem());
    int rc;

    if (bio == NULL)
        bio = BIO_new(BIO_s_mem());
    if (bio == NULL || PEM_write_bio_PrivateKey(bio, key->pkey, NULL, NULL, 0,
                                                NULL, NULL) != 1)
        rc = iomt_err_set(err, IOMT_E_CRYPTO,
                          "private key: PEM encoding failed");
    else
        rc = bio_to_file(bio, path, 0600, err);
    BIO_free(bio); /* the secure-heap BIO clears its buffer */
    return rc;
}

/*
 * The public half is written first and removed again if the private half
 * cannot be written, so a failure never leaves one half of a pair behind.
 */
int iomt_key_save(const struct iomt_key *key, const char *priv_path,
                  const char *pub_path, struct iomt_err *err)
{
    int rc;

    if (key == NULL)
        return iomt_err_set(err, IOMT_E_INPUT, "key: missing");
    if (priv_path != NULL && !key->has_private)
        return iomt_err_set(err, IOMT_E_INPUT, "key: no private half to save");
    if (pub_path != NULL) {
        rc = save_public(key, pub_path, err);
        if (rc != IOMT_OK)
            return rc;
    }
    if (priv_path != NULL) {
        rc = save_private(key, priv_path, err);
        if (rc != IOMT_OK) {
            if (pub_path != NULL)
                unlink(pub_path);
            return rc;
        }
    }
    return IOMT_OK;
}

int iomt_key_has_private(const struct iomt_key *key)
{
    return key != NULL && key->has_private;
}

enum iomt_alg iomt_key_alg(const struct iomt_key *key)
{
    return key->alg;
}

int iomt_key_id(const struct iomt_key *key, uint8_t out[IOMT_SHA256_LEN])
{
    unsigned char *der = NULL;
    int len, rc;

    len = i2d_PUBKEY(key->pkey, &der);
    if (len <= 0)
        return IOMT_E_CRYPTO;
    rc = iomt_sha256(der, (size_t)len, out);
    OPENSSL_free(der);
    return rc;
}

void iomt_key_free(struct iomt_key *key)
{
    if (key == NULL)
        return;
    EVP_PKEY_free(key->pkey);
    free(key);
}

/* ES256 in COSE is r||s, each left-padded to 32 bytes (RFC 9053 2.1). */
static int der_to_raw(const uint8_t *der, size_t der_len, uint8_t *sig)
{
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    const BIGNUM *r, *s;
    int ok;

    if (es == NULL)
        return -1;
    ECDSA_SIG_get0(es, &r, &s);
    ok = BN_bn2binpad(r, sig, ES256_COORD_LEN) == ES256_COORD_LEN &&
         BN_bn2binpad(s, sig + ES256_COORD_LEN, ES256_COORD_LEN) ==
             ES256_COORD_LEN;
    ECDSA_SIG_free(es);
    return ok ? 0 : -1;
}

static int raw_to_der(const uint8_t *sig, unsigned char **der, int *der_len)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, ES256_COORD_LEN, NULL);
    BIGNUM *s = BN_bin2bn(sig + ES256_COORD_LEN, ES256_COORD_LEN, NULL);

    *der = NULL;
    if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
        ECDSA_SIG_free(es);
        BN_free(r);
        BN_free(s);
        return -1;
    }
    *der_len = i2d_ECDSA_SIG(es, der);
    ECDSA_SIG_free(es);
    return *der_len > 0 ? 0 : -1;
}

int iomt_sign(const struct iomt_key *key, const uint8_t *msg, size_t n,
              uint8_t *sig, size_t *sig_len, struct iomt_err *err)
{
    EVP_MD_CTX *ctx = NULL;
    uint8_t der[80];
    size_t der_len = sizeof(der);
    const EVP_MD *md;
    int rc = IOMT_E_CRYPTO;

    if (key == NULL || !key->has_private)
        return iomt_err_set(err, IOMT_E_INPUT, "key: no private half");
    md = key->alg == IOMT_ALG_ES256 ? EVP_sha256() : NULL;
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        return iomt_err_set(err, IOMT_E_NOMEM, "sign: out of memory");
    if (EVP_DigestSignInit(ctx, NULL, md, NULL, key->pkey) != 1) {
        iomt_err_set(err, rc, "sign: init failed");
        goto out_free_ctx;
    }
    if (key->alg == IOMT_ALG_EDDSA) {
        *sig_len = IOMT_SIG_MAX;
        if (EVP_DigestSign(ctx, sig, sig_len, msg, n) != 1 ||
            *sig_len != IOMT_SIG_MAX) {
            iomt_err_set(err, rc, "sign: Ed25519 failed");
            goto out_free_ctx;
        }
    } else {
        if (EVP_DigestSign(ctx, der, &der_len, msg, n) != 1 ||
            der_to_raw(der, der_len, sig) != 0) {
            iomt_err_set(err, rc, "sign: ES256 failed");
            goto out_free_ctx;
        }
        *sig_len = 2 * ES256_COORD_LEN;
    }
    rc = IOMT_OK;
out_free_ctx:
    EVP_MD_CTX_free(ctx);
    return rc;
}

int iomt_verify(const struct iomt_key *key, const uint8_t *msg, size_t n,
                const uint8_t *sig, size_t sig_len, struct iomt_err *err)
{
    EVP_MD_CTX *ctx = NULL;
    unsigned char *der = NULL;
    int der_len = 0, rc = IOMT_E_VERIFY;
    const EVP_MD *md;

    if (key == NULL)
        return iomt_err_set(err, IOMT_E_INPUT, "key: missing");
    if (sig_len != IOMT_SIG_MAX)
        return iomt_err_set(err, IOMT_E_VERIFY,
                            "signature: length %zu, expected %d", sig_len,
                            IOMT_SIG_MAX);
    md = key->alg == IOMT_ALG_ES256 ? EVP_sha256() : NULL;
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        return iomt_err_set(err, IOMT_E_NOMEM, "verify: out of memory");
    if (EVP_DigestVerifyInit(ctx, NULL, md, NULL, key->pkey) != 1) {
        rc = iomt_err_set(err, IOMT_E_CRYPTO, "verify: init failed");
        goto out_free_ctx;
    }
    if (key->alg == IOMT_ALG_ES256) {
        if (raw_to_der(sig, &der, &der_len) != 0) {
            iomt_err_set(err, rc, "signature: not a valid ES256 value");
            goto out_free_ctx;
        }
        if (EVP_DigestVerify(ctx, der, (size_t)der_len, msg, n) != 1) {
            iomt_err_set(err, rc, "signature: ES256 verification failed");
            goto out_free_ctx;
        }
    } else if (EVP_DigestVerify(ctx, sig, sig_len, msg, n) != 1) {
        iomt_err_set(err, rc, "signature: Ed25519 verification failed");
        goto out_free_ctx;
    }
    rc = IOMT_OK;
out_free_ctx:
    OPENSSL_free(der);
    EVP_MD_CTX_free(ctx);
    return rc;
}

static int digest_once(const EVP_MD *md, const uint8_t *p, size_t n,
                       uint8_t *out)
{
    unsigned int len = 0;

    return EVP_Digest(p, n, out, &len, md, NULL) == 1 ? IOMT_OK : IOMT_E_CRYPTO;
}

int iomt_sha256(const uint8_t *p, size_t n, uint8_t out[IOMT_SHA256_LEN])
{
    return digest_once(EVP_sha256(), p, n, out);
}

int iomt_sha1(const uint8_t *p, size_t n, uint8_t out[IOMT_SHA1_LEN])
{
    return digest_once(EVP_sha1(), p, n, out);
}

struct iomt_sha256 *iomt_sha256_new(void)
{
    struct iomt_sha256 *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return NULL;
    h->ctx = EVP_MD_CTX_new();
    if (h->ctx == NULL || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(h->ctx);
        free(h);
        return NULL;
    }
    return h;
}

int iomt_sha256_update(struct iomt_sha256 *h, const void *p, size_t n)
{
    return EVP_DigestUpdate(h->ctx, p, n) == 1 ? IOMT_OK : IOMT_E_CRYPTO;
}

int iomt_sha256_final(struct iomt_sha256 *h, uint8_t out[IOMT_SHA256_LEN])
{
    unsigned int len = 0;

    return EVP_DigestFinal_ex(h->ctx, out, &len) == 1 ? IOMT_OK : IOMT_E_CRYPTO;
}

void iomt_sha256_free(struct iomt_sha256 *h)
{
    if (h == NULL)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

int iomt_sha256_file(const char *path, uint64_t max,
                     uint8_t out[IOMT_SHA256_LEN], uint64_t *size,
                     struct iomt_err *err)
{
    struct iomt_sha256 *h = NULL;
    uint8_t *buf = NULL;
    uint64_t total = 0;
    int fd, rc = IOMT_E_IO;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return iomt_err_set(err, IOMT_E_IO, "%s: %s", path, strerror(errno));
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    buf = malloc(HASH_BUF_SIZE);
    h = iomt_sha256_new();
    if (buf == NULL || h == NULL) {
        rc = iomt_err_set(err, IOMT_E_NOMEM, "hash: out of memory");
        goto out_close;
    }
    for (;;) {
        size_t want = HASH_BUF_SIZE;
        ssize_t r;

        if (total > max) {
            rc = iomt_err_set(err, IOMT_E_VERIFY, "%s: larger than %llu bytes",
                              path, (unsigned long long)max);
            goto out_close;
        }
        if (max - total < want)
            want = (size_t)(max - total) + 1;
        r = read(fd, buf, want);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = iomt_err_set(err, IOMT_E_IO, "%s: %s", path, strerror(errno));
            goto out_close;
        }
        if (r == 0)
            break;
        if (iomt_sha256_update(h, buf, (size_t)r) != IOMT_OK) {
            rc = iomt_err_set(err, IOMT_E_CRYPTO, "hash: SHA-256 failed");
            goto out_close;
        }
        total += (uint64_t)r;
    }
    if (iomt_sha256_final(h, out) != IOMT_OK) {
        rc = iomt_err_set(err, IOMT_E_CRYPTO, "hash: SHA-256 failed");
        goto out_close;
    }
    if (size != NULL)
        *size = total;
    rc = IOMT_OK;
out_close:
    iomt_sha256_free(h);
    free(buf);
    close(fd);
    return rc;
}

int iomt_random(uint8_t *buf, size_t n)
{
    if (n > (size_t)INT32_MAX)
        return IOMT_E_INPUT;
    return RAND_bytes(buf, (int)n) == 1 ? IOMT_OK : IOMT_E_CRYPTO;
}

int iomt_ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

void iomt_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0)
        OPENSSL_cleanse(p, n);
}

void iomt_hex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long iomt_unhex(const char *text, size_t text_len, uint8_t *out, size_t cap)
{
    size_t i, count = 0;
    int high = -1;

    for (i = 0; i < text_len; i++) {
        char c = text[i];
        int v;

        if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            continue;
        v = hex_value(c);
        if (v < 0)
            return -1;
        if (high < 0) {
            high = v;
            continue;
        }
        if (count >= cap)
            return -1;
        out[count++] = (uint8_t)((high << 4) | v);
        high = -1;
    }
    if (high >= 0 || count > (size_t)LONG_MAX)
        return -1;
    return (long)count;
}
