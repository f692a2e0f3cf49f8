/*
 * File-backed A/B flash for one device. The state record lives in two
 * copies (state.0, state.1), each with a generation number and a SHA-256;
 * a write always goes to the older copy, so a torn write leaves the newer
 * one intact. A slot is marked invalid before its bytes change.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "iomt/slot.h"

#define REC_MAGIC     "IOMTSLT1"
#define REC_MAGIC_LEN 8
#define REC_SLOT_LEN  (1 + 8 + 8 + IOMT_SHA256_LEN + IOMT_SUIT_TEXT_MAX + 1)
#define REC_BODY_LEN                                                           \
    (REC_MAGIC_LEN + 8 + 5 + 8 + 2 * (IOMT_SLOT_NAME_MAX + 1) + 16 + 16 +      \
     2 * REC_SLOT_LEN)
#define REC_LEN    (REC_BODY_LEN + IOMT_SHA256_LEN)
#define TRIAL_NONE 0xff
#define COPY_CHUNK (64 * 1024)
/* Leaves room for a file name inside a PATH_MAX buffer. */
#define DIR_MAX (PATH_MAX - 64)

struct iomt_slots {
    char dir[DIR_MAX];
    struct iomt_slot_state st;
    int running;
    /* The boot verifier reads envelopes here: no allocation at boot. */
    uint8_t scratch[IOMT_SUIT_ENVELOPE_MAX];
};

/* Fault injection: per thread, so simulated devices never share it. */
static _Thread_local unsigned long fault_at;
static _Thread_local unsigned long io_count;
static _Thread_local int io_dead;

void iomt_slot_inject_fault(unsigned long nth)
{
    fault_at = nth;
    io_count = 0;
    io_dead = 0;
}

unsigned long iomt_slot_io_count(void)
{
    return io_count;
}

/* Returns 0 to go ahead, 1 when this operation is the one that fails. */
static int io_step(void)
{
    io_count++;
    if (io_dead)
        return 1;
    if (fault_at != 0 && io_count >= fault_at) {
        io_dead = 1;
        return 1;
    }
    return 0;
}

static int io_write(int fd, const uint8_t *p, size_t n)
{
    int cut = io_step();
    size_t want = n;
    size_t done = 0;

    if (cut) {
        if (io_count != fault_at)
            return -1;
        /* The power cut lands mid-write: leave half the bytes behind. */
        want = n / 2;
    }
    while (done < want) {
        ssize_t w = write(fd, p + done, want - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        done += (size_t)w;
    }
    return cut ? -1 : 0;
}

static int io_fsync(int fd)
{
    if (io_step())
        return -1;
    return fsync(fd);
}

static int io_truncate(int fd)
{
    if (io_step())
        return -1;
    return ftruncate(fd, 0);
}

static int io_fsync_dir(const char *dir)
{
    int fd;
    int rc;

    if (io_step())
        return -1;
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

const char *iomt_slot_name(int slot)
{
    return slot == 1 ? "B" : slot == 0 ? "A" : "-";
}

static int slot_path(const char *dir, int slot, const char *ext, char *out,
                     size_t cap)
{
    int n = snprintf(out, cap, "%s/slot_%c.%s", dir, slot ? 'b' : 'a', ext);

    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

static int state_path(const char *dir, int copy, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/state.%d", dir, copy);

    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

/* ---- the state record: fixed layout, little-endian ---- */

static void put_u64(uint8_t **w, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        (*w)[i] = (uint8_t)(v >> (8 * i));
    *w += 8;
}

static uint64_t get_u64(const uint8_t **r)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v |= (uint64_t)(*r)[i] << (8 * i);
    *r += 8;
    return v;
}

static void put_bytes(uint8_t **w, const void *p, size_t n)
{
    memcpy(*w, p, n);
    *w += n;
}

/* Copies a fixed text field; it must hold a NUL inside its width. */
static int get_text(const uint8_t **r, char *out, size_t width)
{
    if (memchr(*r, 0, width) == NULL)
        return -1;
    memcpy(out, *r, width);
    *r += width;
    return 0;
}

static void record_encode(const struct iomt_slot_state *st,
                          uint8_t out[REC_LEN])
{
    uint8_t *w = out;

    memset(out, 0, REC_LEN);
    put_bytes(&w, REC_MAGIC, REC_MAGIC_LEN);
    put_u64(&w, st->generation);
    *w++ = (uint8_t)st->active;
    *w++ = st->trial == IOMT_SLOT_NONE ? TRIAL_NONE : (uint8_t)st->trial;
    *w++ = (uint8_t)st->trial_attempts;
    *w++ = (uint8_t)st->max_attempts;
    *w++ = (uint8_t)(st->confirmed != 0);
    put_u64(&w, st->rollback_seq);
    put_bytes(&w, st->vendor, sizeof(st->vendor));
    put_bytes(&w, st->class_name, sizeof(st->class_name));
    put_bytes(&w, st->vendor_id, 16);
    put_bytes(&w, st->class_id, 16);
    for (int i = 0; i < 2; i++) {
        const struct iomt_slot_info *si = &st->slot[i];

        *w++ = (uint8_t)(si->valid != 0);
        put_u64(&w, si->seq);
        put_u64(&w, si->image_size);
        put_bytes(&w, si->image_digest, IOMT_SHA256_LEN);
        put_bytes(&w, si->version, sizeof(si->version));
    }
    iomt_sha256(out, REC_BODY_LEN, out + REC_BODY_LEN);
}

static int record_decode(const uint8_t *p, size_t n, struct iomt_slot_state *st)
{
    uint8_t digest[IOMT_SHA256_LEN];
    const uint8_t *r = p;
    unsigned trial;

    memset(st, 0, sizeof(*st));
    if (n != REC_LEN || memcmp(p, REC_MAGIC, REC_MAGIC_LEN) != 0)
        return -1;
    iomt_sha256(p, REC_BODY_LEN, digest);
    if (memcmp(digest, p + REC_BODY_LEN, IOMT_SHA256_LEN) != 0)
        return -1;
    r += REC_MAGIC_LEN;
    st->generation = get_u64(&r);
    st->active = *r++;
    trial = *r++;
    st->trial_attempts = *r++;
    st->max_attempts = *r++;
    st->confirmed = *r++;
    if (st->active > 1 || (trial > 1 && trial != TRIAL_NONE))
        return -1;
    st->trial = trial == TRIAL_NONE ? IOMT_SLOT_NONE : (int)trial;
    st->rollback_seq = get_u64(&r);
    if (get_text(&r, st->vendor, sizeof(st->vendor)) != 0 ||
        get_text(&r, st->class_name, sizeof(st->class_name)) != 0)
        return -1;
    memcpy(st->vendor_id, r, 16);
    memcpy(st->class_id, r + 16, 16);
    r += 32;
    for (int i = 0; i < 2; i++) {
        struct iomt_slot_info *si = &st->slot[i];

        si->valid = *r++ != 0;
        si->seq = get_u64(&r);
        si->image_size = get_u64(&r);
        memcpy(si->image_digest, r, IOMT_SHA256_LEN);
        r += IOMT_SHA256_LEN;
        if (get_text(&r, si->version, sizeof(si->version)) != 0)
            return -1;
    }
    return 0;
}

static int record_read(const char *path, struct iomt_slot_state *st)
{
    uint8_t buf[REC_LEN + 1];
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    while (got < sizeof(buf)) {
        ssize_t r = read(fd, buf + got, sizeof(buf) - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    return record_decode(buf, got, st);
}

/* Writes next as the new newest copy, into the older file. */
static int record_write(struct iomt_slots *s, struct iomt_slot_state *next,
                        struct iomt_err *err)
{
    uint8_t buf[REC_LEN];
    char path[PATH_MAX];
    int fd;
    int rc = IOMT_E_IO;

    next->generation = s->st.generation + 1;
    record_encode(next, buf);
    if (state_path(s->dir, (int)(next->generation % 2), path, sizeof(path)))
        return iomt_err_set(err, IOMT_E_INPUT, "state dir: path too long");
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return iomt_err_set(err, IOMT_E_IO, "state record: open %s: %s", path,
                            strerror(errno));
    if (io_write(fd, buf, sizeof(buf)) != 0 || io_fsync(fd) != 0) {
        iomt_err_set(err, IOMT_E_IO, "state record: write %s failed", path);
        goto out_close;
    }
    s->st = *next;
    rc = IOMT_OK;
out_close:
    close(fd);
    return rc;
}

/* ---- slot files ---- */

/*
 * Copies src into a slot file, hashing what it copies: the staged file
 * may change between the check and the copy, so the digest is checked
 * again on the bytes that actually reach the slot.
 */
static int copy_image(const char *src, const char *dst,
                      const struct iomt_suit_manifest *m, struct iomt_err *err)
{
    uint8_t digest[IOMT_SHA256_LEN];
    struct iomt_sha256 *h = NULL;
    uint8_t *buf = NULL;
    uint64_t total = 0;
    int in = -1, out = -1;
    int rc = IOMT_E_IO;

    buf = malloc(COPY_CHUNK);
    h = iomt_sha256_new();
    if (buf == NULL || h == NULL) {
        rc = iomt_err_set(err, IOMT_E_NOMEM, "image copy: out of memory");
        goto out_free;
    }
    in = open(src, O_RDONLY | O_CLOEXEC);
    out = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (in < 0 || out < 0) {
        iomt_err_set(err, IOMT_E_IO, "image copy: open: %s", strerror(errno));
        goto out_free;
    }
    if (io_truncate(out) != 0) {
        iomt_err_set(err, IOMT_E_IO, "image copy: truncate %s failed", dst);
        goto out_free;
    }
    for (;;) {
        ssize_t r = read(in, buf, COPY_CHUNK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            iomt_err_set(err, IOMT_E_IO, "image copy: read %s failed", src);
            goto out_free;
        }
        if (r == 0)
            break;
        total += (uint64_t)r;
        if (total > m->image_size) {
            rc = iomt_err_set(err, IOMT_E_VERIFY,
                              "image-size: image grew past the manifest size");
            goto out_free;
        }
        iomt_sha256_update(h, buf, (size_t)r);
        if (io_write(out, buf, (size_t)r) != 0) {
            iomt_err_set(err, IOMT_E_IO, "image copy: write %s failed", dst);
            goto out_free;
        }
    }
    iomt_sha256_final(h, digest);
    if (total != m->image_size ||
        memcmp(digest, m->image_digest, IOMT_SHA256_LEN) != 0) {
        rc = iomt_err_set(err, IOMT_E_VERIFY,
                          "image-digest: image changed while it was copied");
        goto out_free;
    }
    if (io_fsync(out) != 0) {
        iomt_err_set(err, IOMT_E_IO, "image copy: fsync %s failed", dst);
        goto out_free;
    }
    rc = IOMT_OK;
out_free:
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    iomt_sha256_free(h);
    free(buf);
    return rc;
}

static int write_small(const char *path, const uint8_t *p, size_t n,
                       struct iomt_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    int rc = IOMT_OK;

    if (fd < 0)
        return iomt_err_set(err, IOMT_E_IO, "open %s: %s", path,
                            strerror(errno));
    if (io_truncate(fd) != 0 || (n > 0 && io_write(fd, p, n) != 0) ||
        io_fsync(fd) != 0)
        rc = iomt_err_set(err, IOMT_E_IO, "write %s failed", path);
    close(fd);
    return rc;
}

/* Reads a stored envelope into a caller buffer of IOMT_SUIT_ENVELOPE_MAX. */
static int read_envelope(const char *path, uint8_t *buf, size_t *len)
{
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    while (got < IOMT_SUIT_ENVELOPE_MAX) {
        ssize_t r = read(fd, buf + got, IOMT_SUIT_ENVELOPE_MAX - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    *len = got;
    return got == 0 ? -1 : 0;
}

/* ---- checks shared by staging, provisioning and booting ---- */

static int check_identity(const struct iomt_suit_manifest *m,
                          const uint8_t vendor_id[16],
                          const uint8_t class_id[16], struct iomt_err *err)
{
    if (!m->has_vendor || memcmp(m->vendor_id, vendor_id, 16) != 0)
        return iomt_err_set(err, IOMT_E_VERIFY,
                            "vendor-id: manifest is not for this vendor");
    if (!m->has_class || memcmp(m->class_id, class_id, 16) != 0)
        return iomt_err_set(err, IOMT_E_VERIFY,
                            "class-id: manifest is not for this device class");
    if (!m->has_digest || !m->has_size)
        return iomt_err_set(err, IOMT_E_VERIFY,
                            "image-digest: manifest has no image digest/size");
    return IOMT_OK;
}

static int check_envelope(const uint8_t *env, size_t env_len,
                          const struct iomt_key *anchor,
                          const uint8_t vendor_id[16],
                          const uint8_t class_id[16],
                          struct iomt_suit_manifest *m, struct iomt_err *err)
{
    struct iomt_err e = {0};
    int rc;

    if (anchor == NULL)
        return iomt_err_set(err, IOMT_E_INPUT, "trust-anchor: none given");
    rc = iomt_suit_verify(env, env_len, anchor, m, &e);
    if (rc != IOMT_OK && strncmp(e.msg, "signature", 9) == 0)
        return iomt_err_set(err, rc, "%s", e.msg);
    if (rc != IOMT_OK)
        return iomt_err_set(err, rc, "signature: %s", e.msg);
    return check_identity(m, vendor_id, class_id, err);
}

static int check_image(const struct iomt_suit_manifest *m, const char *path,
                       struct iomt_err *err)
{
    struct iomt_err e = {0};
    int rc = iomt_suit_check_image(m, path, &e);

    if (rc != IOMT_OK)
        return iomt_err_set(err, rc == IOMT_E_IO ? IOMT_E_IO : IOMT_E_VERIFY,
                            "image-digest: %s", e.msg);
    return IOMT_OK;
}

/*
 * Re-hashes a slot's image file against the digest and size recorded
 * when it was verified. Used by the boot verifier and by status, so that
 * an image lost, cut short or overwritten on disk is seen as damaged.
 */
int iomt_slots_check_image(const struct iomt_slots *s, int slot,
                           struct iomt_err *err)
{
    const struct iomt_slot_info *si;
    uint8_t digest[IOMT_SHA256_LEN];
    char path[PATH_MAX];
    uint64_t got = 0;
    struct stat sb;
    int rc;

    if (slot != 0 && slot != 1)
        return iomt_err_set(err, IOMT_E_INPUT, "slot: want A or B");
    si = &s->st.slot[slot];
    if (!si->valid)
        return iomt_err_set(err, IOMT_E_STATE, "holds no image");
    if (slot_path(s->dir, slot, "img", path, sizeof(path)) != 0)
        return iomt_err_set(err, IOMT_E_INPUT, "state dir: path too long");
    if (stat(path, &sb) != 0)
        return iomt_err_set(err, errno == ENOENT ? IOMT_E_VERIFY : IOMT_E_IO,
                            "image-digest: image %s",
                            errno == ENOENT ? "missing" : "unreadable");
    if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != si->image_size)
        return iomt_err_set(err, IOMT_E_VERIFY,
                            "image-size: image is %llu bytes, recorded %llu",
                            (unsigned long long)sb.st_size,
                            (unsigned long long)si->image_size);
    rc = iomt_sha256_file(path, si->image_size, digest, &got, NULL);
    if (rc == IOMT_E_IO || rc == IOMT_E_NOMEM || rc == IOMT_E_CRYPTO)
        return iomt_err_set(err, rc, "image-digest: image unreadable");
    if (rc != IOMT_OK || got != si->image_size)
        return iomt_err_set(err, IOMT_E_VERIFY,
                            "image-size: image changed size while read");
    if (memcmp(digest, si->image_digest, IOMT_SHA256_LEN) != 0)
        return iomt_err_set(err, IOMT_E_VERIFY,
                            "image-digest: image digest mismatch");
    return IOMT_OK;
}

/* Re-verifies a slot as the boot verifier does, from what is on disk. */
static int verify_slot(struct iomt_slots *s, int slot,
                       const struct iomt_key *anchor, struct iomt_err *err)
{
    struct iomt_suit_manifest m;
    const struct iomt_slot_info *si = &s->st.slot[slot];
    char path[PATH_MAX];
    size_t env_len = 0;
    int rc;

    if (!si->valid)
        return iomt_err_set(err, IOMT_E_STATE, "holds no image");
    if (slot_path(s->dir, slot, "suit", path, sizeof(path)) != 0 ||
        read_envelope(path, s->scratch, &env_len) != 0)
        return iomt_err_set(err, IOMT_E_IO, "envelope unreadable");
    rc = check_envelope(s->scratch, env_len, anchor, s->st.vendor_id,
                        s->st.class_id, &m, err);
    if (rc != IOMT_OK)
        return rc;
    if (m.seq < s->st.rollback_seq)
        return iomt_err_set(
            err, IOMT_E_ROLLBACK, "rollback: seq %llu below counter %llu",
            (unsigned long long)m.seq, (unsigned long long)s->st.rollback_seq);
    /* The envelope on disk must be the one recorded when it was staged. */
    if (m.seq != si->seq ||
        memcmp(m.image_digest, si->image_digest, IOMT_SHA256_LEN) != 0)
        return iomt_err_set(err, IOMT_E_VERIFY,
                            "envelope differs from the state record");
    if (m.image_size != si->image_size)
        return iomt_err_set(err, IOMT_E_VERIFY,
                            "envelope differs from the state record");
    return iomt_slots_check_image(s, slot, err);
}

/* ---- public operations ---- */

int iomt_slots_create(const char *dir, const char *vendor,
                      const char *class_name, const char *factory_image,
                      const uint8_t *factory_env, size_t env_len,
                      const struct iomt_key *trust_anchor, struct iomt_err *err)
{
    struct iomt_slots tmp;
    struct iomt_slot_state st;
    struct iomt_suit_manifest m;
    struct iomt_slots *existing = NULL;
    char path[PATH_MAX];
    int rc;

    if (dir == NULL || vendor == NULL || class_name == NULL ||
        strlen(vendor) > IOMT_SLOT_NAME_MAX ||
        strlen(class_name) > IOMT_SLOT_NAME_MAX || strlen(dir) >= DIR_MAX)
        return iomt_err_set(err, IOMT_E_INPUT,
                            "vendor/class: missing or too long");
    if (iomt_slots_open(dir, &existing, NULL) == IOMT_OK) {
        iomt_slots_close(existing);
        return iomt_err_set(err, IOMT_E_STATE,
                            "state dir: %s is already provisioned", dir);
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return iomt_err_set(err, IOMT_E_IO, "state dir: mkdir %s: %s", dir,
                            strerror(errno));

    memset(&tmp, 0, sizeof(tmp));
    memcpy(tmp.dir, dir, strlen(dir) + 1);
    memset(&st, 0, sizeof(st));
    memcpy(st.vendor, vendor, strlen(vendor));
    memcpy(st.class_name, class_name, strlen(class_name));
    iomt_suit_vendor_uuid(vendor, st.vendor_id);
    iomt_suit_class_uuid(st.vendor_id, class_name, st.class_id);
    rc = check_envelope(factory_env, env_len, trust_anchor, st.vendor_id,
                        st.class_id, &m, err);
    if (rc == IOMT_OK)
        rc = check_image(&m, factory_image, err);
    if (rc != IOMT_OK)
        return rc;

    slot_path(tmp.dir, 0, "img", path, sizeof(path));
    rc = copy_image(factory_image, path, &m, err);
    slot_path(tmp.dir, 0, "suit", path, sizeof(path));
    if (rc == IOMT_OK)
        rc = write_small(path, factory_env, env_len, err);
    slot_path(tmp.dir, 1, "img", path, sizeof(path));
    if (rc == IOMT_OK)
        rc = write_small(path, NULL, 0, err);
    slot_path(tmp.dir, 1, "suit", path, sizeof(path));
    if (rc == IOMT_OK)
        rc = write_small(path, NULL, 0, err);
    state_path(tmp.dir, 0, path, sizeof(path));
    if (rc == IOMT_OK)
        rc = write_small(path, NULL, 0, err);
    if (rc != IOMT_OK)
        return rc;

    st.active = 0;
    st.trial = IOMT_SLOT_NONE;
    st.max_attempts = IOMT_SLOT_MAX_ATTEMPTS;
    st.confirmed = 1;
    st.rollback_seq = m.seq;
    st.slot[0].valid = 1;
    st.slot[0].seq = m.seq;
    st.slot[0].image_size = m.image_size;
    memcpy(st.slot[0].image_digest, m.image_digest, IOMT_SHA256_LEN);
    memcpy(st.slot[0].version, m.version, sizeof(m.version));
    tmp.st.generation = 0;
    rc = record_write(&tmp, &st, err);
    if (rc == IOMT_OK && io_fsync_dir(tmp.dir) != 0)
        rc = iomt_err_set(err, IOMT_E_IO, "state dir: fsync %s failed", dir);
    return rc;
}

int iomt_slots_open(const char *dir, struct iomt_slots **out,
                    struct iomt_err *err)
{
    struct iomt_slot_state copy[2];
    int ok[2];
    char path[PATH_MAX];
    struct iomt_slots *s;

    *out = NULL;
    if (dir == NULL || strlen(dir) >= DIR_MAX)
        return iomt_err_set(err, IOMT_E_INPUT, "state dir: path too long");
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return iomt_err_set(err, IOMT_E_NOMEM, "slots: out of memory");
    memcpy(s->dir, dir, strlen(dir) + 1);
    for (int i = 0; i < 2; i++) {
        state_path(s->dir, i, path, sizeof(path));
        ok[i] = record_read(path, &copy[i]) == 0;
    }
    if (!ok[0] && !ok[1]) {
        free(s);
        return iomt_err_set(err, IOMT_E_STATE,
                            "state record: no intact copy in %s", dir);
    }
    if (ok[0] && ok[1])
        s->st = copy[copy[1].generation > copy[0].generation ? 1 : 0];
    else
        s->st = copy[ok[1] ? 1 : 0];
    s->running = IOMT_SLOT_NONE;
    *out = s;
    return IOMT_OK;
}

void iomt_slots_close(struct iomt_slots *slots)
{
    free(slots);
}

const struct iomt_slot_state *iomt_slots_state(const struct iomt_slots *s)
{
    return &s->st;
}

int iomt_slots_running(const struct iomt_slots *s)
{
    return s->running;
}

const char *iomt_slots_state_name(const struct iomt_slots *s)
{
    if (s->st.trial != IOMT_SLOT_NONE)
        return s->running == s->st.trial ? "trial" : "pending";
    return "confirmed";
}

int iomt_slots_check_envelope(const struct iomt_slots *s, const uint8_t *env,
                              size_t env_len,
                              const struct iomt_key *trust_anchor,
                              struct iomt_suit_manifest *m,
                              struct iomt_err *err)
{
    int rc = check_envelope(env, env_len, trust_anchor, s->st.vendor_id,
                            s->st.class_id, m, err);

    if (rc != IOMT_OK)
        return rc;
    /* A replayed older release is authentic but must not install. */
    if (m->seq <= s->st.rollback_seq)
        return iomt_err_set(err, IOMT_E_ROLLBACK,
                            "rollback: seq %llu is not above installed %llu",
                            (unsigned long long)m->seq,
                            (unsigned long long)s->st.rollback_seq);
    return IOMT_OK;
}

int iomt_slots_check(const struct iomt_slots *s, const uint8_t *env,
                     size_t env_len, const char *staged_image,
                     const struct iomt_key *trust_anchor,
                     struct iomt_suit_manifest *m, struct iomt_err *err)
{
    int rc = iomt_slots_check_envelope(s, env, env_len, trust_anchor, m, err);

    if (rc != IOMT_OK)
        return rc;
    return check_image(m, staged_image, err);
}

int iomt_slots_stage(struct iomt_slots *s, const uint8_t *env, size_t env_len,
                     const char *staged_image,
                     const struct iomt_key *trust_anchor, struct iomt_err *err)
{
    struct iomt_suit_manifest m;
    struct iomt_slot_state next;
    char path[PATH_MAX];
    int target = 1 - s->st.active;
    int rc;

    if (s->running == target)
        return iomt_err_set(err, IOMT_E_STATE,
                            "stage: slot %s is running a trial; confirm "
                            "or reboot first",
                            iomt_slot_name(target));
    rc = iomt_slots_check(s, env, env_len, staged_image, trust_anchor, &m, err);
    if (rc != IOMT_OK)
        return rc;

    /* Invalidate first: a cut mid-copy must leave no "valid" torn slot. */
    next = s->st;
    next.slot[target].valid = 0;
    next.trial = IOMT_SLOT_NONE;
    next.trial_attempts = 0;
    next.confirmed = 1;
    rc = record_write(s, &next, err);
    if (rc != IOMT_OK)
        return rc;

    slot_path(s->dir, target, "img", path, sizeof(path));
    rc = copy_image(staged_image, path, &m, err);
    if (rc != IOMT_OK)
        return rc;
    slot_path(s->dir, target, "suit", path, sizeof(path));
    rc = write_small(path, env, env_len, err);
    if (rc != IOMT_OK)
        return rc;

    next = s->st;
    next.slot[target].valid = 1;
    next.slot[target].seq = m.seq;
    next.slot[target].image_size = m.image_size;
    memcpy(next.slot[target].image_digest, m.image_digest, IOMT_SHA256_LEN);
    memcpy(next.slot[target].version, m.version, sizeof(m.version));
    return record_write(s, &next, err);
}

int iomt_slots_mark_trial(struct iomt_slots *s, struct iomt_err *err)
{
    struct iomt_slot_state next = s->st;
    int target = 1 - s->st.active;

    if (!s->st.slot[target].valid)
        return iomt_err_set(err, IOMT_E_STATE,
                            "trial: slot %s holds no staged image",
                            iomt_slot_name(target));
    next.trial = target;
    next.trial_attempts = 0;
    next.confirmed = 0;
    return record_write(s, &next, err);
}

/* Drops a failed trial: the slot is invalid until staged again. */
static int revert_trial(struct iomt_slots *s, struct iomt_err *err)
{
    struct iomt_slot_state next = s->st;

    next.slot[s->st.trial].valid = 0;
    next.trial = IOMT_SLOT_NONE;
    next.trial_attempts = 0;
    next.confirmed = 1;
    return record_write(s, &next, err);
}

int iomt_slots_boot(struct iomt_slots *s, const struct iomt_key *trust_anchor,
                    int *booted, struct iomt_err *err)
{
    struct iomt_err why = {0}, why_other = {0};
    int active = s->st.active;
    int other = 1 - active;
    int rc;

    s->running = IOMT_SLOT_NONE;
    *booted = IOMT_SLOT_NONE;
    if (s->st.trial != IOMT_SLOT_NONE) {
        int trial = s->st.trial;

        if (s->st.trial_attempts >= s->st.max_attempts) {
            rc = revert_trial(s, err);
            if (rc != IOMT_OK)
                return rc;
        } else {
            struct iomt_slot_state next = s->st;

            /* Count the attempt before running it: a trial image that
             * hangs or resets the device must not get endless retries. */
            next.trial_attempts++;
            rc = record_write(s, &next, err);
            if (rc != IOMT_OK)
                return rc;
            if (verify_slot(s, trial, trust_anchor, &why) == IOMT_OK) {
                s->running = trial;
                *booted = trial;
                return IOMT_OK;
            }
            rc = revert_trial(s, err);
            if (rc != IOMT_OK)
                return rc;
        }
    }

    rc = verify_slot(s, active, trust_anchor, &why);
    if (rc == IOMT_OK) {
        s->running = active;
        *booted = active;
        return IOMT_OK;
    }
    if (verify_slot(s, other, trust_anchor, &why_other) == IOMT_OK) {
        struct iomt_slot_state next = s->st;

        next.active = other;
        next.trial = IOMT_SLOT_NONE;
        next.trial_attempts = 0;
        next.confirmed = 1;
        rc = record_write(s, &next, err);
        if (rc != IOMT_OK)
            return rc;
        s->running = other;
        *booted = other;
        return IOMT_OK;
    }
    /* Both slots are named, in slot order, so service staff see what is
     * wrong with each image without reading the state directory. */
    return iomt_err_set(err, IOMT_E_VERIFY,
                        "boot: no verified image to boot: slot A: %s; "
                        "slot B: %s",
                        active == 0 ? why.msg : why_other.msg,
                        active == 0 ? why_other.msg : why.msg);
}

int iomt_slots_confirm(struct iomt_slots *s, struct iomt_err *err)
{
    struct iomt_slot_state next = s->st;
    int trial = s->st.trial;

    if (trial == IOMT_SLOT_NONE || s->running != trial)
        return iomt_err_set(err, IOMT_E_STATE,
                            "confirm: no trial slot is running");
    next.active = trial;
    next.trial = IOMT_SLOT_NONE;
    next.trial_attempts = 0;
    next.confirmed = 1;
    if (next.slot[trial].seq > next.rollback_seq)
        next.rollback_seq = next.slot[trial].seq;
    return record_write(s, &next, err);
}
