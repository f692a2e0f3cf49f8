/*
 * COSE_Sign1 (RFC 9052) with a detached payload, as SUIT uses it: the
 * signature covers the Sig_structure ["Signature1", protected, h'',
 * payload]. Algorithms: ES256 (-7; ESP256, -9, accepted on verify) and
 * EdDSA (-8; Ed25519, -19, accepted on verify).
 */
#ifndef IOMT_COSE_H
#define IOMT_COSE_H

#include <stddef.h>
#include <stdint.h>

#include "iomt/crypto.h"
#include "iomt/error.h"

#define IOMT_COSE_SIGN1_TAG 18
#define IOMT_COSE_MAC0_TAG  17
#define IOMT_COSE_SIGN_TAG  98

#define IOMT_COSE_ALG_ESP256  (-9)
#define IOMT_COSE_ALG_ED25519 (-19)

/* Largest detached payload the Sig_structure buffer takes. */
#define IOMT_COSE_PAYLOAD_MAX 1024
/* Room for a tagged COSE_Sign1 from iomt_cose_sign1. */
#define IOMT_COSE_SIGN1_MAX 128

/* Encodes the Sig_structure for COSE_Sign1 into out. */
int iomt_cose_sig_structure(const uint8_t *protected_hdr, size_t prot_len,
                            const uint8_t *payload, size_t payload_len,
                            uint8_t *out, size_t cap, size_t *out_len,
                            struct iomt_err *err);

/* Signs payload (detached) and writes a tagged COSE_Sign1:
 * 18([<< {1: alg} >>, {}, nil, signature]). */
int iomt_cose_sign1(const struct iomt_key *key, const uint8_t *payload,
                    size_t payload_len, uint8_t *out, size_t cap,
                    size_t *out_len, struct iomt_err *err);

/*
 * Verifies a tagged COSE_Sign1 over a detached payload. Returns IOMT_OK,
 * IOMT_E_VERIFY (bad signature, algorithm not matching the key,
 * unsupported structure such as COSE_Mac0) or IOMT_E_INPUT (malformed).
 * *alg receives the protected algorithm when not NULL.
 */
int iomt_cose_sign1_verify(const uint8_t *cose, size_t n,
                           const uint8_t *payload, size_t payload_len,
                           const struct iomt_key *key, int *alg,
                           struct iomt_err *err);

/* Reads the protected algorithm without verifying (for inspect). */
int iomt_cose_sign1_alg(const uint8_t *cose, size_t n, int *alg,
                        struct iomt_err *err);

/* "ES256", "EdDSA", ... or "unknown". */
const char *iomt_cose_alg_name(int alg);

#endif
