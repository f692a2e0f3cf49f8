/*
 * Device inventory and the device's own calls: creation with a one-time
 * enrolment token, listing, revocation, check-in and install reports.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "hub.h"
#include "store.h"

#define TOKEN_BYTES 16
#define REASON_MAX  256
#define STATE_MAX   32

static int criticality_ok(const char *c)
{
    return c != NULL && (strcmp(c, "high") == 0 || strcmp(c, "medium") == 0 ||
                         strcmp(c, "low") == 0);
}

static void rfc3339(int64_t t, char *out, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;

    gmtime_r(&tt, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Runs a write transaction that ends with the audit record. */
static int commit_with_audit(struct hub_req *req, int rc, const char *action,
                             const char *object, const char *detail)
{
    if (rc == IOMT_OK)
        rc = api_audit(req, action, object, detail);
    if (rc != IOMT_OK) {
        store_rollback(req->store);
        return rc;
    }
    return store_commit(req->store);
}

void devices_create(struct hub_req *req)
{
    uint8_t raw[TOKEN_BYTES], hash[IOMT_SHA256_LEN];
    char token[2 * TOKEN_BYTES + 1], expires_text[32], detail[96];
    const char *device_id, *model, *crit;
    int64_t expires = (int64_t)time(NULL) + req->cfg->token_ttl;
    json_t *body = api_parse_json(req);
    int rc;

    if (body == NULL)
        return;
    device_id = api_json_str(body, "device_id", IOMT_NAME_MAX);
    model = api_json_str(body, "model", IOMT_NAME_MAX);
    crit = api_json_str(body, "criticality", 8);
    if (!iomt_pki_name_ok(device_id) || !iomt_pki_name_ok(model) ||
        !criticality_ok(crit)) {
        hub_reply_error(req, 400, "bad_field",
                        !iomt_pki_name_ok(device_id) ? "device_id"
                        : !iomt_pki_name_ok(model)   ? "model"
                                                     : "criticality",
                        "missing or invalid");
        goto out_free;
    }
    if (iomt_random(raw, sizeof(raw)) != IOMT_OK) {
        hub_reply_error(req, 500, "internal", "token", "no randomness");
        goto out_free;
    }
    iomt_hex(raw, sizeof(raw), token);
    iomt_wipe(raw, sizeof(raw));
    iomt_sha256((const uint8_t *)token, strlen(token), hash);
    snprintf(detail, sizeof(detail), "model=%s criticality=%s", model, crit);
    if (store_begin(req->store, 1) != IOMT_OK) {
        hub_reply_error(req, 503, "storage", "", "store busy");
        goto out_free;
    }
    rc = store_device_add(req->store, device_id, model, crit, hash, expires);
    rc = commit_with_audit(req, rc, "device_create", device_id, detail);
    if (rc == IOMT_E_STATE) {
        hub_reply_error(req, 409, "exists", "device_id",
                        "device already exists");
        goto out_free;
    }
    if (rc != IOMT_OK) {
        hub_reply_error(req, 500, "storage", "", "could not record");
        goto out_free;
    }
    rfc3339(expires, expires_text, sizeof(expires_text));
    hub_reply_json(req, 201,
                   json_pack("{s:s, s:s, s:s}", "device_id", device_id, "token",
                             token, "expires", expires_text));
    hub_log("info", "device_create", "device=%s model=%s by=%s", device_id,
            model, req->id.name);
out_free:
    iomt_wipe(token, sizeof(token));
    json_decref(body);
}

void devices_list(struct hub_req *req)
{
    json_t *list = store_devices_json(req->store);

    if (list == NULL) {
        hub_reply_error(req, 500, "storage", "devices", "cannot read");
        return;
    }
    hub_reply_json(req, 200, json_pack("{s:o}", "devices", list));
}

void devices_revoke(struct hub_req *req, const char *device_id)
{
    int rc;

    if (!iomt_pki_name_ok(device_id)) {
        hub_reply_error(req, 404, "not_found", "device_id", "no such device");
        return;
    }
    if (store_begin(req->store, 1) != IOMT_OK) {
        hub_reply_error(req, 503, "storage", "", "store busy");
        return;
    }
    rc = store_device_revoke(req->store, device_id);
    rc = commit_with_audit(req, rc, "device_revoke", device_id, "");
    if (rc == IOMT_E_INPUT)
        hub_reply_error(req, 404, "not_found", "device_id", "no such device");
    else if (rc != IOMT_OK)
        hub_reply_error(req, 500, "storage", "", "could not record");
    else
        hub_reply(req, 204, NULL, NULL, 0);
}

static json_t *offer_json(struct hub_req *req, uint64_t seq)
{
    struct store_release r;

    if (!store_offer(req->store, req->id.name, &r) || r.seq <= seq)
        return json_null();
    return json_pack("{s:s, s:I, s:s, s:I}", "release_id", r.release_id, "seq",
                     (json_int_t)r.seq, "version", r.version, "image_size",
                     (json_int_t)r.image_size);
}

/* The slot states a device reports (iomt_slots_state_name in slot.h). */
static int state_ok(const char *state)
{
    return state != NULL &&
           (strcmp(state, "confirmed") == 0 || strcmp(state, "trial") == 0 ||
            strcmp(state, "unconfirmed") == 0);
}

static int slot_ok(const char *slot)
{
    return slot != NULL && (strcmp(slot, "A") == 0 || strcmp(slot, "B") == 0);
}

/* One check-in's writes, inside the caller's transaction. */
static int checkin_write(struct hub_req *req, json_t **offer)
{
    const struct hub_checkin *ci = &req->checkin;
    char detail[160];
    int rc;

    /* A valid signature is not enough: the hub must have issued this very
     * certificate to this device, and neither may have been revoked;
     * store_checkin writes nothing and says IOMT_E_AUTH otherwise. */
    rc =
        store_checkin(req->store, req->id.name, req->id.serial_hex, ci->version,
                      ci->seq, ci->slot, ci->state, (int64_t)time(NULL));
    if (rc != IOMT_OK)
        return rc;
    *offer = offer_json(req, ci->seq);
    if (*offer == NULL)
        return IOMT_E_NOMEM;
    /* The audit entry is the check-in's only history: all it reported. */
    snprintf(detail, sizeof(detail), "version=%s seq=%llu slot=%s state=%s",
             ci->version, (unsigned long long)ci->seq, ci->slot, ci->state);
    return api_audit(req, "checkin", req->id.name, detail);
}

/* Check-ins are frequent and restatable: NORMAL sync keeps them off the
 * fsync path (enrolment, releases and reports stay FULL). */
static int checkin_batch(struct hub_req **reqs, size_t n, json_t **offers)
{
    struct store *store = reqs[0]->store;
    size_t i;
    int rc = IOMT_OK;

    if (store_begin(store, 0) != IOMT_OK)
        return IOMT_E_STATE;
    for (i = 0; i < n && rc == IOMT_OK; i++) {
        rc = checkin_write(reqs[i], &offers[i]);
        /* Refused before it wrote anything: the others go on. */
        if (rc == IOMT_E_AUTH && n > 1)
            rc = IOMT_OK;
    }
    if (rc != IOMT_OK) {
        store_rollback(store);
        return rc;
    }
    return store_commit(store);
}

static void checkin_answer(struct hub_req *req, int rc, json_t *offer)
{
    if (rc == IOMT_E_AUTH || (rc == IOMT_OK && offer == NULL))
        hub_reply_error(req, 403, "forbidden", "certificate",
                        "certificate unknown or revoked");
    else if (rc == IOMT_E_STATE)
        hub_reply_error(req, 503, "storage", "", "store busy");
    else if (rc != IOMT_OK)
        hub_reply_error(req, 500, "storage", "", "could not record");
    else if (json_is_null(offer))
        hub_reply(req, 200, "application/json", "{\"release\":null}", 16);
    else
        hub_reply_json(req, 200, json_pack("{s:O}", "release", offer));
}

/*
 * The worker's group commit: every check-in that arrived in one loop
 * turn shares a transaction, and none is answered before it commits. If
 * the batch fails, each is retried on its own so one bad write cannot
 * fail the others.
 */
static void checkins_flush(struct hub_req **reqs, size_t n)
{
    json_t *offers[HUB_DEFER_MAX] = {0};
    size_t i;
    int rc;

    rc = checkin_batch(reqs, n, offers);
    for (i = 0; i < n; i++) {
        if (rc != IOMT_OK && n > 1) {
            json_decref(offers[i]);
            offers[i] = NULL;
            checkin_answer(reqs[i], checkin_batch(&reqs[i], 1, &offers[i]),
                           offers[i]);
        } else {
            checkin_answer(reqs[i], rc, offers[i]);
        }
        json_decref(offers[i]);
    }
}

void devices_checkin(struct hub_req *req)
{
    const char *version, *slot, *state, *bad = NULL;
    struct hub_checkin *ci = &req->checkin;
    json_t *body = api_parse_json(req);

    if (body == NULL)
        return;
    version = api_json_str(body, "version", STORE_TEXT_MAX);
    slot = api_json_str(body, "slot", 1);
    state = api_json_str(body, "state", STATE_MAX);
    /* Each field is checked on its own so the answer names the one that
     * is wrong; control characters would forge lines in logs and the
     * audit detail, so versions are printable ASCII. */
    if (!api_text_ok(version, STORE_TEXT_MAX))
        bad = "version";
    else if (api_json_u64(body, "seq", &ci->seq) != 0)
        bad = "seq";
    else if (!slot_ok(slot))
        bad = "slot";
    else if (!state_ok(state))
        bad = "state";
    if (bad != NULL) {
        hub_reply_error(req, 400, "bad_field", bad, "missing or invalid");
        goto out_free;
    }
    snprintf(ci->version, sizeof(ci->version), "%s", version);
    snprintf(ci->slot, sizeof(ci->slot), "%s", slot);
    snprintf(ci->state, sizeof(ci->state), "%s", state);
    hub_defer(req, checkins_flush);
out_free:
    json_decref(body);
}

struct report_in {
    const char *release_id, *result, *reason, *version, *slot;
    uint64_t seq;
    int has_seq;
};

/* Reads and checks the report body; returns the bad field or NULL. */
static const char *report_fields(json_t *body, struct report_in *in)
{
    memset(in, 0, sizeof(*in));
    in->release_id = api_json_str(body, "release_id", HUB_RELEASE_ID);
    in->result = api_json_str(body, "result", 16);
    in->reason = api_json_str(body, "reason", REASON_MAX);
    in->version = api_json_str(body, "version", STORE_TEXT_MAX);
    in->slot = api_json_str(body, "slot", 1);
    in->has_seq = json_object_get(body, "seq") != NULL;
    if (in->release_id == NULL || strlen(in->release_id) != HUB_RELEASE_ID ||
        strspn(in->release_id, "0123456789abcdef") != HUB_RELEASE_ID)
        return "release_id";
    if (in->result == NULL || (strcmp(in->result, "installed") != 0 &&
                               strcmp(in->result, "rejected") != 0))
        return "result";
    if (json_object_get(body, "reason") != NULL && in->reason == NULL)
        return "reason";
    if (json_object_get(body, "version") != NULL &&
        !api_text_ok(in->version, STORE_TEXT_MAX))
        return "version";
    if (in->has_seq && api_json_u64(body, "seq", &in->seq) != 0)
        return "seq";
    if (json_object_get(body, "slot") != NULL && !slot_ok(in->slot))
        return "slot";
    return NULL;
}

/*
 * Checks the report against the release inside the transaction: it must
 * exist (404) and be assigned to this device (403), and an install must
 * name the release's own version and sequence number (422), so a device
 * cannot write an arbitrary version into the inventory. Replies on error.
 */
static int report_matches(struct hub_req *req, const struct report_in *in,
                          struct store_release *r)
{
    if (store_release_get(req->store, in->release_id, r) != IOMT_OK) {
        hub_reply_error(req, 404, "not_found", "release_id", "no such release");
        return 0;
    }
    if (!store_release_assigned(req->store, in->release_id, req->id.name)) {
        hub_reply_error(req, 403, "forbidden", "release_id",
                        "release not assigned to this device");
        return 0;
    }
    if (strcmp(in->result, "installed") != 0)
        return 1;
    if (in->has_seq && in->seq != r->seq) {
        hub_reply_error(req, 422, "mismatch", "seq",
                        "seq differs from the release's");
        return 0;
    }
    if (in->version != NULL && strcmp(in->version, r->version) != 0) {
        hub_reply_error(req, 422, "mismatch", "version",
                        "version differs from the release's");
        return 0;
    }
    return 1;
}

void devices_report(struct hub_req *req)
{
    struct report_in in;
    struct store_release r;
    char detail[REASON_MAX + 96];
    const char *bad;
    json_t *body = api_parse_json(req);
    int rc;

    if (body == NULL)
        return;
    bad = report_fields(body, &in);
    if (bad != NULL) {
        hub_reply_error(req, 400, "bad_field", bad, "missing or invalid");
        goto out_free;
    }
    snprintf(detail, sizeof(detail), "release=%s result=%s seq=%llu reason=%s",
             in.release_id, in.result, (unsigned long long)in.seq,
             in.reason != NULL ? in.reason : "");
    if (store_begin(req->store, 1) != IOMT_OK) {
        hub_reply_error(req, 503, "storage", "", "store busy");
        goto out_free;
    }
    if (!report_matches(req, &in, &r)) {
        store_rollback(req->store);
        goto out_free;
    }
    /* The inventory takes version and seq from the release itself; the
     * slot from the report, or none until the next check-in says. */
    rc =
        store_report(req->store, req->id.name, in.release_id, in.result,
                     in.reason, r.version, r.seq, in.slot, (int64_t)time(NULL));
    rc = commit_with_audit(req, rc, "report", req->id.name, detail);
    if (rc != IOMT_OK) {
        hub_reply_error(req, 500, "storage", "", "could not record");
        goto out_free;
    }
    hub_log("info", "report", "device=%s release=%s result=%s", req->id.name,
            in.release_id, in.result);
    hub_reply(req, 204, NULL, NULL, 0);
out_free:
    json_decref(body);
}
