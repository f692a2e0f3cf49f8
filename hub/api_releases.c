/*
 * Releases: envelope upload (parsed, never verified: the hub does not hold
 * the manufacturer's key), image upload streamed to disk and checked
 * against the manifest, assignment, and downloads for assigned devices.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hub.h"
#include "iomt/file.h"
#include "iomt/suit.h"
#include "store.h"

#define SUIT_CT  "application/suit-envelope+cose"
#define IMAGE_CT "application/octet-stream"

static void uuid_text(const uint8_t u[16], char out[37])
{
    char hex[33];

    iomt_hex(u, 16, hex);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12,
             hex + 16, hex + 20);
}

static int release_id_ok(const char *id)
{
    size_t i, n = strlen(id);

    if (n != HUB_RELEASE_ID)
        return 0;
    for (i = 0; i < n; i++) {
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return 0;
    }
    return 1;
}

static int image_path(const struct hub_req *req, const char *release_id,
                      char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", req->cfg->images_dir, release_id);

    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* Moves the checked upload into place, durably. */
static int image_commit_file(struct hub_req *req, const char *final_path)
{
    int fd = req->up_fd, rc;

    req->up_fd = -1;
    rc = fsync(fd);
    if (close(fd) != 0)
        rc = -1;
    if (rc == 0)
        rc = rename(req->up_tmp, final_path);
    if (rc == 0)
        rc = iomt_file_sync_dir(req->cfg->images_dir);
    if (rc != 0)
        unlink(req->up_tmp);
    return rc;
}

static json_t *release_json(const struct store_release *r, const char *vendor,
                            const char *cls)
{
    char digest[2 * IOMT_SHA256_LEN + 1];

    iomt_hex(r->image_digest, IOMT_SHA256_LEN, digest);
    return json_pack("{s:s, s:I, s:s, s:s, s:s, s:I, s:s}", "release_id",
                     r->release_id, "seq", (json_int_t)r->seq, "version",
                     r->version, "vendor_id", vendor, "class_id", cls,
                     "image_size", (json_int_t)r->image_size, "image_digest",
                     digest);
}

void releases_upload(struct hub_req *req)
{
    struct iomt_suit_manifest m;
    struct store_release r;
    struct iomt_err err = {0};
    char vendor[37] = "", cls[37] = "", detail[64];
    json_t *answer_json = NULL;
    char *answer = NULL;
    uint8_t *env = NULL;
    long env_len;
    int rc;

    if (req->body_len == 0 || req->body_len > IOMT_SUIT_ENVELOPE_MAX) {
        hub_reply_error(req, 400, "bad_envelope", "body", "empty or too big");
        return;
    }
    env = malloc(req->body_len);
    if (env == NULL) {
        hub_reply_error(req, 500, "internal", "", "out of memory");
        return;
    }
    memcpy(env, req->body, req->body_len);
    env_len = iomt_suit_normalise(env, req->body_len);
    if (env_len <= 0 ||
        iomt_suit_parse(env, (size_t)env_len, &m, &err) != IOMT_OK) {
        /* The parser names the field first ("component-version: ..."):
         * pass the one a client can act on. */
        hub_reply_error(req, 400, "bad_envelope",
                        strncmp(err.msg, "component-version", 17) == 0
                            ? "version"
                            : "envelope",
                        env_len <= 0 ? "neither CBOR nor hex" : err.msg);
        goto out_free;
    }
    /* Without a digest and size the hub could not check the image. */
    if (!m.has_digest || !m.has_size) {
        hub_reply_error(req, 422, "incomplete", "manifest",
                        "manifest lacks image digest or size");
        goto out_free;
    }
    /* Stored sequence numbers are SQLite integers and JSON numbers are
     * signed 64-bit: a larger one would turn negative and cut the device
     * off for good (iomt sign refuses them too). */
    if (m.seq > (uint64_t)INT64_MAX) {
        hub_reply_error(req, 422, "out_of_range", "seq",
                        "sequence number above 9223372036854775807");
        goto out_free;
    }
    /* Devices report the version back as printable ASCII; anything else
     * could never match and would break the JSON answers. */
    if (strlen(m.version) > STORE_TEXT_MAX ||
        !api_text_ok(m.version, STORE_TEXT_MAX)) {
        hub_reply_error(req, 422, "bad_field", "version",
                        "version must be printable ASCII, at most 64 bytes");
        goto out_free;
    }
    if (m.image_size > req->cfg->image_max) {
        hub_reply_error(req, 422, "too_large", "image_size",
                        "image_size is above --image-max; the image could "
                        "never be uploaded");
        goto out_free;
    }
    memset(&r, 0, sizeof(r));
    iomt_hex(m.manifest_digest, HUB_RELEASE_ID / 2, r.release_id);
    r.seq = m.seq;
    snprintf(r.version, sizeof(r.version), "%s", m.version);
    r.image_size = m.image_size;
    memcpy(r.image_digest, m.image_digest, IOMT_SHA256_LEN);
    if (m.has_vendor)
        uuid_text(m.vendor_id, vendor);
    if (m.has_class)
        uuid_text(m.class_id, cls);
    snprintf(detail, sizeof(detail), "seq=%llu", (unsigned long long)m.seq);
    /* The answer exists before anything is stored: a release is kept only
     * when the client is told so, and told so only once it is kept. */
    answer_json = release_json(&r, vendor, cls);
    answer = answer_json != NULL ? json_dumps(answer_json, JSON_COMPACT) : NULL;
    if (answer == NULL) {
        hub_reply_error(req, 500, "internal", "", "out of memory");
        goto out_free;
    }
    if (store_begin(req->store, 1) != IOMT_OK) {
        hub_reply_error(req, 503, "storage", "", "store busy");
        goto out_free;
    }
    rc = store_release_add(req->store, &r, vendor, cls, env, (size_t)env_len,
                           req->id.name, (int64_t)time(NULL));
    if (rc == IOMT_OK)
        rc = api_audit(req, "release_upload", r.release_id, detail);
    if (rc != IOMT_OK) {
        store_rollback(req->store);
        if (rc == IOMT_E_STATE)
            hub_reply_error(req, 409, "exists", "release_id",
                            "this manifest was uploaded already");
        else
            hub_reply_error(req, 500, "storage", "", "could not record");
        goto out_free;
    }
    if (store_commit(req->store) != IOMT_OK) {
        hub_reply_error(req, 500, "storage", "", "could not record");
        goto out_free;
    }
    hub_log("info", "release_upload", "release=%s seq=%llu by=%s", r.release_id,
            (unsigned long long)r.seq, req->id.name);
    hub_reply(req, 201, "application/json", answer, strlen(answer));
out_free:
    free(answer);
    json_decref(answer_json);
    free(env);
}

int releases_image_begin(struct hub_req *req, const char *release_id)
{
    struct store_release r;
    int fd;

    if (!release_id_ok(release_id) ||
        store_release_get(req->store, release_id, &r) != IOMT_OK) {
        hub_reply_error(req, 404, "not_found", "release_id", "no such release");
        return -1;
    }
    if (r.image_ready) {
        hub_reply_error(req, 409, "exists", "image", "image already stored");
        return -1;
    }
    if (req->content_length != r.image_size) {
        hub_reply_error(req, 422, "mismatch", "image.size",
                        "size differs from the manifest");
        return -1;
    }
    if (snprintf(req->up_tmp, sizeof(req->up_tmp), "%s/.upload-XXXXXX",
                 req->cfg->images_dir) >= (int)sizeof(req->up_tmp)) {
        hub_reply_error(req, 500, "storage", "image", "path too long");
        return -1;
    }
    fd = mkostemp(req->up_tmp, O_CLOEXEC);
    req->up_hash = fd >= 0 ? iomt_sha256_new() : NULL;
    if (req->up_hash == NULL) {
        if (fd >= 0) {
            close(fd);
            unlink(req->up_tmp);
        }
        hub_reply_error(req, 500, "storage", "image", "cannot store");
        return -1;
    }
    req->up_fd = fd;
    req->up_got = 0;
    snprintf(req->up_release, sizeof(req->up_release), "%s", release_id);
    return 0;
}

int releases_image_write(struct hub_req *req, const uint8_t *p, size_t n)
{
    if (req->up_fd < 0 || iomt_sha256_update(req->up_hash, p, n) != IOMT_OK)
        return -1;
    req->up_got += n;
    return iomt_file_write_all(req->up_fd, p, n);
}

void releases_image_abort(struct hub_req *req)
{
    if (req->up_fd >= 0) {
        close(req->up_fd);
        unlink(req->up_tmp);
        req->up_fd = -1;
    }
    iomt_sha256_free(req->up_hash);
    req->up_hash = NULL;
}

void releases_image_finish(struct hub_req *req)
{
    uint8_t digest[IOMT_SHA256_LEN];
    char final_path[PATH_MAX], detail[96];
    struct store_release r;
    int rc;

    if (req->up_fd < 0 || iomt_sha256_final(req->up_hash, digest) != IOMT_OK ||
        store_release_get(req->store, req->up_release, &r) != IOMT_OK) {
        releases_image_abort(req);
        hub_reply_error(req, 500, "storage", "image", "cannot store");
        return;
    }
    /* A digest is public: a plain compare is enough here. */
    if (req->up_got != r.image_size ||
        memcmp(digest, r.image_digest, IOMT_SHA256_LEN) != 0) {
        releases_image_abort(req);
        hub_reply_error(req, 422, "mismatch", "image.digest",
                        "SHA-256 or size differs from the manifest");
        return;
    }
    iomt_sha256_free(req->up_hash);
    req->up_hash = NULL;
    if (image_path(req, req->up_release, final_path, sizeof(final_path)) ||
        image_commit_file(req, final_path) != 0) {
        releases_image_abort(req);
        hub_reply_error(req, 500, "storage", "image", "cannot store");
        return;
    }
    snprintf(detail, sizeof(detail), "size=%llu",
             (unsigned long long)r.image_size);
    rc = store_begin(req->store, 1);
    if (rc == IOMT_OK) {
        rc = store_release_image_ready(req->store, req->up_release);
        if (rc == IOMT_OK)
            rc = api_audit(req, "image_upload", req->up_release, detail);
        if (rc == IOMT_OK)
            rc = store_commit(req->store);
        else
            store_rollback(req->store);
    }
    if (rc != IOMT_OK) {
        hub_reply_error(req, 500, "storage", "", "could not record");
        return;
    }
    hub_log("info", "image_upload", "release=%s size=%llu", req->up_release,
            (unsigned long long)r.image_size);
    hub_reply(req, 204, NULL, NULL, 0);
}

void releases_download(struct hub_req *req, const char *release_id,
                       int want_image)
{
    char path[PATH_MAX];
    uint8_t *env = NULL;
    size_t env_len = 0;
    struct stat st;
    int fd;

    /* 403 for an unknown id too: a device learns nothing it is not
     * assigned. */
    if (!release_id_ok(release_id) ||
        !store_release_assigned(req->store, release_id, req->id.name)) {
        hub_reply_error(req, 403, "forbidden", "release_id",
                        "release not assigned to this device");
        return;
    }
    if (!want_image) {
        if (store_release_envelope(req->store, release_id, &env, &env_len) !=
            IOMT_OK) {
            hub_reply_error(req, 404, "not_found", "release_id", "no envelope");
            return;
        }
        hub_reply(req, 200, SUIT_CT, env, env_len);
        free(env);
        return;
    }
    fd = image_path(req, release_id, path, sizeof(path)) == 0
             ? open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
             : -1;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        hub_reply_error(req, 404, "not_found", "image", "image not uploaded");
        return;
    }
    hub_reply_file(req, 200, IMAGE_CT, fd, (uint64_t)st.st_size);
}

void releases_assign(struct hub_req *req)
{
    const char *release_id, *device_id, *model;
    struct store_release r;
    struct store_device d;
    char detail[96];
    json_t *body = api_parse_json(req);
    int rc, count = 0;

    if (body == NULL)
        return;
    release_id = api_json_str(body, "release_id", HUB_RELEASE_ID);
    device_id = api_json_str(body, "device_id", IOMT_NAME_MAX);
    model = api_json_str(body, "model", IOMT_NAME_MAX);
    if (release_id == NULL || !release_id_ok(release_id)) {
        hub_reply_error(req, 400, "bad_field", "release_id",
                        "missing or not 16 lower-case hex digits");
        goto out_free;
    }
    if (store_release_get(req->store, release_id, &r) != IOMT_OK) {
        hub_reply_error(req, 404, "not_found", "release_id", "no such release");
        goto out_free;
    }
    if ((device_id == NULL) == (model == NULL)) {
        hub_reply_error(req, 400, "bad_field", "device_id",
                        "give exactly one of device_id or model");
        goto out_free;
    }
    if (device_id != NULL &&
        store_device_get(req->store, device_id, &d) != IOMT_OK) {
        hub_reply_error(req, 404, "not_found", "device_id", "no such device");
        goto out_free;
    }
    if (model != NULL && !iomt_pki_name_ok(model)) {
        hub_reply_error(req, 400, "bad_field", "model", "invalid");
        goto out_free;
    }
    snprintf(detail, sizeof(detail), "%s=%s",
             device_id != NULL ? "device" : "model",
             device_id != NULL ? device_id : model);
    if (store_begin(req->store, 1) != IOMT_OK) {
        hub_reply_error(req, 503, "storage", "", "store busy");
        goto out_free;
    }
    rc = store_assign(req->store, release_id, device_id, model,
                      (int64_t)time(NULL), &count);
    if (rc == IOMT_OK)
        rc = api_audit(req, "assign", release_id, detail);
    if (rc == IOMT_OK)
        rc = store_commit(req->store);
    else
        store_rollback(req->store);
    if (rc != IOMT_OK) {
        hub_reply_error(req, 500, "storage", "", "could not record");
        goto out_free;
    }
    hub_reply_json(req, 201, json_pack("{s:i}", "assigned", count));
out_free:
    json_decref(body);
}
