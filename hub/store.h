/*
 * The hub's store: devices, enrolment tokens (hashes only), issued
 * certificates, releases, assignments, check-ins, reports and the
 * hash-chained audit log. The workers share one connection (every call
 * takes its lock); writes run one at a time inside store_begin /
 * store_commit.
 */
#ifndef IOMT_HUB_STORE_H
#define IOMT_HUB_STORE_H

#include <stdint.h>

#include <jansson.h>

#include "iomt/crypto.h"
#include "iomt/error.h"

#define STORE_TEXT_MAX 64

struct store;

struct store_device {
    char model[STORE_TEXT_MAX + 1];
    int enrolled;
    int revoked;
    int has_token;
    uint8_t token_hash[IOMT_SHA256_LEN];
    int64_t token_expires;
};

struct store_release {
    char release_id[17];
    uint64_t seq;
    char version[STORE_TEXT_MAX + 1];
    uint64_t image_size;
    uint8_t image_digest[IOMT_SHA256_LEN];
    int image_ready;
};

/* Creates the schema and switches the database to WAL; run once. */
int store_init(const char *path, struct iomt_err *err);
/* shared: the one connection all workers use (reference counted);
 * otherwise a private one (the checkpoint thread). */
int store_open(const char *path, int shared, struct store **out,
               struct iomt_err *err);
void store_close(struct store *s);
/* Copies committed WAL frames into the database (PASSIVE: never waits for
 * readers or writers). Called by one background thread. */
int store_checkpoint(struct store *s);

/*
 * Write transactions. durable selects synchronous=FULL (the commit is on
 * disk before store_commit returns); otherwise NORMAL (WAL: survives a
 * process crash, may lose the last commits on power loss).
 */
int store_begin(struct store *s, int durable);
int store_commit(struct store *s);
void store_rollback(struct store *s);

/* Appends to the audit chain: hash = SHA-256(prev_hash || canonical). */
int store_audit(struct store *s, const char *actor, const char *role,
                const char *action, const char *object, const char *detail);
json_t *store_audit_json(struct store *s);
/* Canonical bytes of an entry, as hashed; returns length or -1. */
long store_audit_canonical(char *out, size_t cap, int64_t ts, const char *actor,
                           const char *role, const char *action,
                           const char *object, const char *detail);

/* Devices. Not-found is IOMT_E_INPUT; already-there is IOMT_E_STATE. */
int store_device_add(struct store *s, const char *device_id, const char *model,
                     const char *criticality,
                     const uint8_t token_hash[IOMT_SHA256_LEN],
                     int64_t expires);
int store_device_get(struct store *s, const char *device_id,
                     struct store_device *d);
/* Consumes the token if it is still unused, unexpired and matches. */
int store_device_consume_token(struct store *s, const char *device_id,
                               const uint8_t token_hash[IOMT_SHA256_LEN],
                               int64_t now);
int store_cert_add(struct store *s, const char *serial_hex,
                   const char *device_id, int64_t now);
/* 1 when serial was issued to device_id and neither is revoked. */
int store_device_cert_ok(struct store *s, const char *device_id,
                         const char *serial_hex);
int store_device_revoke(struct store *s, const char *device_id);
json_t *store_devices_json(struct store *s);

/* Records a check-in made with the certificate serial_hex in the
 * device's inventory row: IOMT_E_AUTH, with nothing written, unless that
 * certificate was issued to device_id and neither is revoked (the
 * store_device_cert_ok rule). The history of check-ins is the audit log
 * (action "checkin"), written by the caller in the same transaction. */
int store_checkin(struct store *s, const char *device_id,
                  const char *serial_hex, const char *version, uint64_t seq,
                  const char *slot, const char *state, int64_t now);
/* The release assigned to the device (device assignment first, then its
 * model), if its image is in; 1 when found, 0 when none. */
int store_offer(struct store *s, const char *device_id,
                struct store_release *r);
/* Records a report; on "installed" the device's version, seq and slot
 * become the given ones (slot NULL: unknown until the next check-in). */
int store_report(struct store *s, const char *device_id, const char *release_id,
                 const char *result, const char *reason, const char *version,
                 uint64_t seq, const char *slot, int64_t now);

/* Releases. */
int store_release_add(struct store *s, const struct store_release *r,
                      const char *vendor_id, const char *class_id,
                      const uint8_t *envelope, size_t envelope_len,
                      const char *uploader, int64_t now);
int store_release_get(struct store *s, const char *release_id,
                      struct store_release *r);
int store_release_envelope(struct store *s, const char *release_id,
                           uint8_t **env, size_t *env_len);
int store_release_image_ready(struct store *s, const char *release_id);
/* 1 when the release is assigned to the device or to its model. */
int store_release_assigned(struct store *s, const char *release_id,
                           const char *device_id);
int store_assign(struct store *s, const char *release_id, const char *device_id,
                 const char *model, int64_t now, int *count);

#endif
