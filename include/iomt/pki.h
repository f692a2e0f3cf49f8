/*
 * The fleet PKI: a private CA, device and operator certificates, CSRs, and
 * the EST (RFC 7030) certs-only PKCS#7 wrapping. Roles ride in the subject's
 * OU: "device" for devices, or one of the operator roles below.
 */
#ifndef IOMT_PKI_H
#define IOMT_PKI_H

#include <stddef.h>
#include <stdint.h>

#include "iomt/crypto.h"
#include "iomt/error.h"

#define IOMT_ROLE_DEVICE   "device"
#define IOMT_ROLE_ADMIN    "admin"    /* enrolment tokens, assignments */
#define IOMT_ROLE_RELEASE  "release"  /* uploads releases */
#define IOMT_ROLE_SECURITY "security" /* audit, inventory, revocation */
#define IOMT_ROLE_CLINICAL "clinical" /* reads inventory */

#define IOMT_NAME_MAX 64 /* device IDs, operator names */

/* Identity read from a verified peer certificate. */
struct iomt_identity {
    char name[IOMT_NAME_MAX + 1]; /* subject CN: device ID or operator */
    char role[16];                /* subject OU */
    char serial_hex[41];
};

/* Creates a self-signed CA (key P-256) valid for `days`. */
int iomt_pki_ca_init(const char *ca_key_path, const char *ca_cert_path,
                     const char *org, int days, struct iomt_err *err);

/* Makes a PEM CSR for CN=name, OU=role, signed by key. *pem is malloc'd. */
int iomt_pki_make_csr(const struct iomt_key *key, const char *name,
                      const char *role, char **pem, size_t *pem_len,
                      struct iomt_err *err);

/*
 * Issues a certificate from a CSR (PEM or DER), after checking its
 * self-signature. The subject is rebuilt from `name` and `role`, never
 * copied from the CSR. Returns the certificate as PEM (malloc'd).
 */
int iomt_pki_issue(const char *ca_key_path, const char *ca_cert_path,
                   const uint8_t *csr, size_t csr_len, const char *name,
                   const char *role, int days, char **cert_pem,
                   size_t *cert_len, struct iomt_err *err);

/* Reads name, role and serial from a PEM certificate. */
int iomt_pki_identity_pem(const uint8_t *pem, size_t n,
                          struct iomt_identity *id, struct iomt_err *err);

/* EST wire form: base64 of a DER PKCS#7 certs-only structure, and back. */
int iomt_pki_est_wrap(const uint8_t *cert_pem, size_t n, char **b64,
                      size_t *b64_len, struct iomt_err *err);
int iomt_pki_est_unwrap(const uint8_t *b64, size_t n, char **cert_pem,
                        size_t *pem_len, struct iomt_err *err);

#endif
