/*
 * The crypto seam: hashing, signatures, randomness, constant-time compare
 * and wiping. lib/crypto.c is the only file that calls OpenSSL's
 * cryptographic primitives (EVP); everything else goes through here.
 */
#ifndef IOMT_CRYPTO_H
#define IOMT_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "iomt/error.h"

#define IOMT_SHA256_LEN 32
#define IOMT_SIG_MAX    64 /* ES256 raw r||s and Ed25519 are both 64 bytes */

/* Signature algorithms, numbered as their COSE algorithm identifiers. */
enum iomt_alg {
    IOMT_ALG_ES256 = -7,
    IOMT_ALG_EDDSA = -8,
};

struct iomt_key; /* opaque: a public key, or a key pair */
struct iomt_sha256;

/* Keys. */
int iomt_key_generate(enum iomt_alg alg, struct iomt_key **out,
                      struct iomt_err *err);
/* Loads a PEM private key (key pair) or public key from a file. */
int iomt_key_load(const char *path, struct iomt_key **out,
                  struct iomt_err *err);
int iomt_key_from_pem(const uint8_t *pem, size_t n, struct iomt_key **out,
                      struct iomt_err *err);
/* Writes the private key (mode 0600, atomically) and/or the public key. */
int iomt_key_save(const struct iomt_key *key, const char *priv_path,
                  const char *pub_path, struct iomt_err *err);
int iomt_key_has_private(const struct iomt_key *key);
enum iomt_alg iomt_key_alg(const struct iomt_key *key);
/* SHA-256 of the DER SubjectPublicKeyInfo: a stable key identifier. */
int iomt_key_id(const struct iomt_key *key, uint8_t out[IOMT_SHA256_LEN]);
void iomt_key_free(struct iomt_key *key);

/*
 * Signatures over a message, in COSE form: ES256 is the 64-byte r||s
 * (not DER), EdDSA is Ed25519 (pure). sig must hold IOMT_SIG_MAX bytes.
 * iomt_verify returns IOMT_OK or IOMT_E_VERIFY.
 */
int iomt_sign(const struct iomt_key *key, const uint8_t *msg, size_t n,
              uint8_t *sig, size_t *sig_len, struct iomt_err *err);
int iomt_verify(const struct iomt_key *key, const uint8_t *msg, size_t n,
                const uint8_t *sig, size_t sig_len, struct iomt_err *err);

/* SHA-256, one-shot and streaming. */
int iomt_sha256(const uint8_t *p, size_t n, uint8_t out[IOMT_SHA256_LEN]);
struct iomt_sha256 *iomt_sha256_new(void);
int iomt_sha256_update(struct iomt_sha256 *ctx, const void *p, size_t n);
int iomt_sha256_final(struct iomt_sha256 *ctx, uint8_t out[IOMT_SHA256_LEN]);
void iomt_sha256_free(struct iomt_sha256 *ctx);
/*
 * Streams a file through SHA-256; *size receives its length. Reading stops
 * one byte past max (UINT64_MAX: no bound), so an endless or oversized
 * input ends in IOMT_E_VERIFY instead of a hang.
 */
int iomt_sha256_file(const char *path, uint64_t max,
                     uint8_t out[IOMT_SHA256_LEN], uint64_t *size,
                     struct iomt_err *err);

/* SHA-1, only for name-based (v5) UUIDs; never for integrity. */
#define IOMT_SHA1_LEN 20
int iomt_sha1(const uint8_t *p, size_t n, uint8_t out[IOMT_SHA1_LEN]);

int iomt_random(uint8_t *buf, size_t n);
/* 1 when equal; runs in time that depends on n only. */
int iomt_ct_equal(const void *a, const void *b, size_t n);
/* Wipes a buffer in a way the compiler cannot drop. */
void iomt_wipe(void *p, size_t n);

/* Lowercase hex; out must hold 2 * n + 1 bytes. */
void iomt_hex(const uint8_t *p, size_t n, char *out);
/* Parses hex text, skipping white space; returns the byte count or -1. */
long iomt_unhex(const char *text, size_t text_len, uint8_t *out, size_t cap);

#endif
