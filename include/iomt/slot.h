/*
 * A device's file-backed A/B flash and its update state machine: two slot
 * images, each beside the SUIT envelope it was verified against, and a
 * state record kept as two checksummed copies so that a power cut at any
 * write leaves a device that boots a verified image.
 */
#ifndef IOMT_SLOT_H
#define IOMT_SLOT_H

#include <stddef.h>
#include <stdint.h>

#include "iomt/crypto.h"
#include "iomt/error.h"
#include "iomt/suit.h"

#define IOMT_SLOT_NONE         (-1)
#define IOMT_SLOT_MAX_ATTEMPTS 3 /* trial boots before a revert */
#define IOMT_SLOT_NAME_MAX     64

/* What one slot holds, as recorded when its image was verified. */
struct iomt_slot_info {
    int valid; /* a complete image that verified when it was written */
    uint64_t seq;
    uint64_t image_size;
    uint8_t image_digest[IOMT_SHA256_LEN];
    char version[IOMT_SUIT_TEXT_MAX + 1];
};

/* The durable state record, as read from disk. */
struct iomt_slot_state {
    uint64_t generation; /* which of the two copies is newest */
    int active;          /* 0 = A, 1 = B: the confirmed slot */
    int trial;           /* slot pending a trial boot, or IOMT_SLOT_NONE */
    unsigned trial_attempts;
    unsigned max_attempts;
    int confirmed;         /* the active slot has been confirmed */
    uint64_t rollback_seq; /* installed counter: never goes down */
    char vendor[IOMT_SLOT_NAME_MAX + 1];
    char class_name[IOMT_SLOT_NAME_MAX + 1];
    uint8_t vendor_id[16];
    uint8_t class_id[16];
    struct iomt_slot_info slot[2];
};

struct iomt_slots; /* opaque: an open device state directory */

/*
 * Provisions a fresh state directory: verifies the factory envelope
 * against the trust anchor (signature, vendor/class, image digest and
 * size), writes the image into slot A and the first state record.
 */
int iomt_slots_create(const char *dir, const char *vendor,
                      const char *class_name, const char *factory_image,
                      const uint8_t *factory_env, size_t env_len,
                      const struct iomt_key *trust_anchor,
                      struct iomt_err *err);

/* Opens a provisioned directory: the newest intact state record wins. */
int iomt_slots_open(const char *dir, struct iomt_slots **out,
                    struct iomt_err *err);
void iomt_slots_close(struct iomt_slots *slots);
const struct iomt_slot_state *iomt_slots_state(const struct iomt_slots *s);

/*
 * Verifies an envelope before its image is fetched: the signature against
 * the trust anchor, vendor/class equal to the device's own, and a sequence
 * number above the rollback counter. Writes nothing.
 */
int iomt_slots_check_envelope(const struct iomt_slots *s, const uint8_t *env,
                              size_t env_len,
                              const struct iomt_key *trust_anchor,
                              struct iomt_suit_manifest *m,
                              struct iomt_err *err);

/*
 * Verifies a downloaded release without writing anything: the envelope
 * against the trust anchor, vendor/class equal to the device's own, a
 * sequence number above the rollback counter, and the staged image file's
 * digest and size. m receives the manifest on success.
 */
int iomt_slots_check(const struct iomt_slots *s, const uint8_t *env,
                     size_t env_len, const char *staged_image,
                     const struct iomt_key *trust_anchor,
                     struct iomt_suit_manifest *m, struct iomt_err *err);

/*
 * Runs iomt_slots_check, then writes the image and its envelope into the
 * inactive slot. The slot is marked invalid on disk before its first byte
 * changes and valid only after image and envelope are durable.
 */
int iomt_slots_stage(struct iomt_slots *s, const uint8_t *env, size_t env_len,
                     const char *staged_image,
                     const struct iomt_key *trust_anchor, struct iomt_err *err);

/* Marks the staged (inactive, valid) slot for a trial boot. */
int iomt_slots_mark_trial(struct iomt_slots *s, struct iomt_err *err);

/*
 * The boot verifier. Counts a trial attempt durably, re-verifies the
 * chosen slot's image against its stored envelope with the trust anchor,
 * and "runs" it. A trial that fails verification or has used up its
 * attempts is reverted to the active slot. *booted receives the slot.
 */
int iomt_slots_boot(struct iomt_slots *s, const struct iomt_key *trust_anchor,
                    int *booted, struct iomt_err *err);
/*
 * Re-hashes a valid slot's image against the digest and size recorded in
 * the state record (no trust anchor needed: cheap enough for a status
 * report). IOMT_E_STATE for a slot that holds no image, IOMT_E_VERIFY with
 * "image-digest:" or "image-size:" when the image is missing, cut short,
 * grown or overwritten, IOMT_E_IO when it cannot be read.
 */
int iomt_slots_check_image(const struct iomt_slots *s, int slot,
                           struct iomt_err *err);

/* The slot the last boot ran, or IOMT_SLOT_NONE. */
int iomt_slots_running(const struct iomt_slots *s);

/* Makes the running trial slot active and raises the rollback counter. */
int iomt_slots_confirm(struct iomt_slots *s, struct iomt_err *err);

/* "A" or "B". */
const char *iomt_slot_name(int slot);
/* "confirmed", "trial" or "unconfirmed": the state a device reports. */
const char *iomt_slots_state_name(const struct iomt_slots *s);

/*
 * Fault injection for tests: the nth durable-storage operation (write,
 * fsync, rename) on this thread from now on fails as a power cut would
 * (a write is left torn, half done) and every later one fails too, until
 * the hook is reset with 0. iomt_slot_io_count reports the operations
 * counted on this thread since the last call to the hook.
 */
void iomt_slot_inject_fault(unsigned long nth);
unsigned long iomt_slot_io_count(void);

#endif
