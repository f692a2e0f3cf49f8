/*
 * IETF SUIT manifests (draft-ietf-suit-manifest): build, sign, parse and
 * verify envelopes. The envelope is a tag-107 map whose authentication
 * wrapper holds a SUIT_Digest of the manifest's bstr encoding and a
 * COSE_Sign1 with that encoded digest as its detached payload.
 */
#ifndef IOMT_SUIT_H
#define IOMT_SUIT_H

#include <stddef.h>
#include <stdint.h>

#include "iomt/crypto.h"
#include "iomt/error.h"

#define IOMT_SUIT_ENVELOPE_MAX (64 * 1024)
#define IOMT_SUIT_TEXT_MAX     64

/* What a manifest says, after parsing. */
struct iomt_suit_manifest {
    uint64_t seq; /* manifest-sequence-number: the rollback counter */
    int has_vendor, has_class, has_digest, has_size, has_sbom;
    uint8_t vendor_id[16];
    uint8_t class_id[16];
    uint8_t image_digest[IOMT_SHA256_LEN];
    uint64_t image_size;
    uint8_t sbom_digest[IOMT_SHA256_LEN];
    uint64_t sbom_size;
    char version[IOMT_SUIT_TEXT_MAX + 1]; /* suit-text component version */
    int sig_alg;                          /* COSE alg of the signature */
    uint8_t manifest_digest[IOMT_SHA256_LEN];
};

/* What iomt sign puts in a manifest. */
struct iomt_suit_params {
    uint64_t seq;
    const char *vendor;  /* name; UUID derived as the draft does */
    const char *class;   /* name; UUID derived under the vendor UUID */
    const char *version; /* optional */
    uint8_t image_digest[IOMT_SHA256_LEN];
    uint64_t image_size;
    int has_sbom;
    uint8_t sbom_digest[IOMT_SHA256_LEN];
    uint64_t sbom_size;
};

/* RFC 9562 name-based UUIDs: vendor under the DNS namespace, class under
 * the vendor UUID (draft-ietf-suit-manifest, "Creating UUIDs"). */
void iomt_suit_vendor_uuid(const char *vendor, uint8_t out[16]);
void iomt_suit_class_uuid(const uint8_t vendor_uuid[16], const char *cls,
                          uint8_t out[16]);

/* Builds and signs an envelope; *env is malloc'd. */
int iomt_suit_sign(const struct iomt_suit_params *params,
                   const struct iomt_key *signer, uint8_t **env,
                   size_t *env_len, struct iomt_err *err);

/* Parses without checking the signature (for inspect and for the hub). */
int iomt_suit_parse(const uint8_t *env, size_t n, struct iomt_suit_manifest *m,
                    struct iomt_err *err);

/*
 * Verifies the envelope against a trust anchor: COSE signature, the
 * manifest digest, then parses the manifest into m. Returns IOMT_OK,
 * IOMT_E_VERIFY (forged, wrong key) or IOMT_E_INPUT (malformed).
 * m is zeroed on any failure.
 */
int iomt_suit_verify(const uint8_t *env, size_t n,
                     const struct iomt_key *trust_anchor,
                     struct iomt_suit_manifest *m, struct iomt_err *err);

/* Checks an image file's SHA-256 and size against a verified manifest. */
int iomt_suit_check_image(const struct iomt_suit_manifest *m,
                          const char *image_path, struct iomt_err *err);
/* The same for the SBOM component; IOMT_E_VERIFY when there is none. */
int iomt_suit_check_sbom(const struct iomt_suit_manifest *m,
                         const char *sbom_path, struct iomt_err *err);
/* IOMT_E_ROLLBACK unless the manifest's sequence number is above
 * installed. */
int iomt_suit_check_seq(const struct iomt_suit_manifest *m, uint64_t installed,
                        struct iomt_err *err);
/* Compares the manifest's vendor (and, if cls is not NULL, class) UUID
 * with the ones derived from the names; IOMT_E_VERIFY on mismatch. */
int iomt_suit_check_identity(const struct iomt_suit_manifest *m,
                             const char *vendor, const char *cls,
                             struct iomt_err *err);

/* "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe" form. */
void iomt_suit_uuid_str(const uint8_t id[16], char out[37]);

/* Accepts raw CBOR or hex text; decodes hex in place. Returns new length
 * or -1 when neither. */
long iomt_suit_normalise(uint8_t *buf, size_t n);

#endif
