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
#define IOMT_ROLE_HUB      "hub"      /* the hub's own server certificate */

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

/* Reads the subject CN of a CSR (PEM or DER) after checking its
 * self-signature; name must hold IOMT_NAME_MAX + 1 bytes. */
int iomt_pki_csr_name(const uint8_t *csr, size_t n, char *name,
                      struct iomt_err *err);

/* Writes a certificate (or any public PEM) atomically, mode 0644. */
int iomt_pki_save_pem(const char *path, const char *pem, size_t n,
                      struct iomt_err *err);

/* 1 when name is a valid device ID or operator name: 1..64 characters
 * from [A-Za-z0-9._-], not starting with '.' or '-'; 1 when role is one
 * the fleet knows. */
int iomt_pki_name_ok(const char *name);
int iomt_pki_role_ok(const char *role);

/* Standard base64 (RFC 4648), no line breaks on output; decoding skips
 * white space and rejects anything else. decode returns the byte count or
 * -1; out_cap bounds the output. */
char *iomt_pki_base64_encode(const uint8_t *p, size_t n, size_t *out_len);
long iomt_pki_base64_decode(const char *text, size_t n, uint8_t *out,
                            size_t out_cap);

/*
 * TLS for the hub: TLS 1.3 only, P-256 key exchange, the fleet CA as the
 * only trust anchor. A client certificate is requested from every peer
 * and verified, but a handshake without one is allowed (EST enrolment);
 * a certificate that does not verify fails the handshake.
 */
struct ssl_ctx_st;
struct ssl_st;
int iomt_pki_tls_server_ctx(const char *ca_cert_path, const char *cert_path,
                            const char *key_path, struct ssl_ctx_st **out,
                            struct iomt_err *err);
/* The same in a given OpenSSL library context (NULL: the default). A
 * server thread with a library context of its own shares no OpenSSL locks
 * with the others during handshakes. */
struct ossl_lib_ctx_st;
int iomt_pki_tls_server_ctx_ex(struct ossl_lib_ctx_st *libctx,
                               const char *ca_cert_path, const char *cert_path,
                               const char *key_path, struct ssl_ctx_st **out,
                               struct iomt_err *err);
/* IOMT_OK when the certificate at cert_path chains to the CA at
 * ca_cert_path, carries the serverAuth extended key usage and names the
 * hub role (subject OU); IOMT_E_AUTH naming the failed check otherwise. */
int iomt_pki_check_server_cert(const char *ca_cert_path, const char *cert_path,
                               struct iomt_err *err);
/* A client context for tests and benchmarks: same limits, verifies the
 * server against the fleet CA; cert/key may be NULL. */
int iomt_pki_tls_client_ctx(const char *ca_cert_path, const char *cert_path,
                            const char *key_path, struct ssl_ctx_st **out,
                            struct iomt_err *err);
/* Identity of the verified peer; IOMT_E_AUTH when none was presented or
 * it did not verify. */
int iomt_pki_peer_identity(struct ssl_st *ssl, struct iomt_identity *id,
                           struct iomt_err *err);

#endif
