/*
 * EST enrolment (RFC 7030 subset): cacerts, simpleenroll with a one-time
 * token in HTTP Basic, simplereenroll with the device's own certificate.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "hub.h"
#include "store.h"

#define EST_CT      "application/pkcs7-mime; smime-type=certs-only"
#define TOKEN_MAX   128
#define CSR_DER_MAX HUB_JSON_MAX

void est_cacerts(struct hub_req *req)
{
    hub_reply(req, 200, "application/pkcs7-mime", req->cfg->cacerts_b64,
              req->cfg->cacerts_len);
}

/* Splits "Basic base64(id:token)"; the token never leaves this request. */
static int parse_basic(const char *header, char *device_id, char *token)
{
    uint8_t raw[IOMT_NAME_MAX + TOKEN_MAX + 2];
    const char *colon;
    size_t id_len, tok_len;
    long n;

    if (strncasecmp(header, "Basic ", 6) != 0)
        return -1;
    n = iomt_pki_base64_decode(header + 6, strlen(header + 6), raw,
                               sizeof(raw) - 1);
    if (n <= 0)
        return -1;
    raw[n] = 0;
    colon = memchr(raw, ':', (size_t)n);
    if (colon == NULL) {
        iomt_wipe(raw, sizeof(raw));
        return -1;
    }
    id_len = (size_t)(colon - (const char *)raw);
    tok_len = (size_t)n - id_len - 1;
    if (id_len > IOMT_NAME_MAX || tok_len == 0 || tok_len >= TOKEN_MAX) {
        iomt_wipe(raw, sizeof(raw));
        return -1;
    }
    memcpy(device_id, raw, id_len);
    device_id[id_len] = 0;
    memcpy(token, colon + 1, tok_len);
    token[tok_len] = 0;
    iomt_wipe(raw, sizeof(raw));
    return iomt_pki_name_ok(device_id) ? 0 : -1;
}

/* Checks the token against the stored hash without consuming it. */
static int token_ok(struct hub_req *req, const char *device_id,
                    const char *token, uint8_t hash[IOMT_SHA256_LEN])
{
    struct store_device d;

    iomt_sha256((const uint8_t *)token, strlen(token), hash);
    if (store_device_get(req->store, device_id, &d) != IOMT_OK)
        return 0;
    /* Constant time: a timing oracle must not reveal the hash prefix. */
    return d.has_token && !d.revoked && d.token_expires > time(NULL) &&
           iomt_ct_equal(hash, d.token_hash, IOMT_SHA256_LEN);
}

/* The body is base64 DER (EST) or, leniently, a PEM CSR. */
static long csr_from_body(struct hub_req *req, uint8_t *der, size_t cap)
{
    if (req->body_len > 10 && memcmp(req->body, "-----BEGIN", 10) == 0) {
        if (req->body_len > cap)
            return -1;
        memcpy(der, req->body, req->body_len);
        return (long)req->body_len;
    }
    return iomt_pki_base64_decode((const char *)req->body, req->body_len, der,
                                  cap);
}

static int record_enrolment(struct hub_req *req, const char *device_id,
                            const uint8_t *token_hash, const char *serial,
                            int reenroll)
{
    char detail[96];
    int64_t now = (int64_t)time(NULL);
    int rc;

    snprintf(detail, sizeof(detail), "serial=%s", serial);
    if (store_begin(req->store, 1) != IOMT_OK)
        return IOMT_E_IO;
    /* The token is consumed in the same transaction that records the
     * certificate: a replayed token finds it already gone. */
    rc = reenroll ? IOMT_OK
                  : store_device_consume_token(req->store, device_id,
                                               token_hash, now);
    if (rc == IOMT_OK)
        rc = store_cert_add(req->store, serial, device_id, now);
    if (rc == IOMT_OK)
        rc = store_audit(req->store, device_id,
                         reenroll ? IOMT_ROLE_DEVICE : "token",
                         reenroll ? "reenrol" : "enrol", device_id, detail);
    if (rc != IOMT_OK) {
        store_rollback(req->store);
        return rc;
    }
    return store_commit(req->store);
}

static void answer_cert(struct hub_req *req, const char *pem, size_t len)
{
    struct iomt_err err = {0};
    char *b64 = NULL;
    size_t b64_len = 0;

    if (iomt_pki_est_wrap((const uint8_t *)pem, len, &b64, &b64_len, &err) !=
        IOMT_OK) {
        hub_reply_error(req, 500, "pki", "certificate", err.msg);
        return;
    }
    hub_reply(req, 200, EST_CT, b64, b64_len);
    free(b64);
}

void est_enroll(struct hub_req *req, int reenroll)
{
    char device_id[IOMT_NAME_MAX + 1], token[TOKEN_MAX] = {0};
    char csr_name[IOMT_NAME_MAX + 1];
    uint8_t token_hash[IOMT_SHA256_LEN] = {0}, *der = NULL;
    struct iomt_identity issued;
    struct iomt_err err = {0};
    char *pem = NULL;
    size_t pem_len = 0;
    long der_len;
    int rc;

    if (reenroll) {
        snprintf(device_id, sizeof(device_id), "%s", req->id.name);
    } else if (parse_basic(req->authorization, device_id, token) != 0 ||
               !token_ok(req, device_id, token, token_hash)) {
        hub_reply_error(req, 401, "unauthenticated", "token",
                        "enrolment token missing, wrong, used or expired");
        goto out_wipe;
    }
    der = malloc(CSR_DER_MAX);
    if (der == NULL) {
        hub_reply_error(req, 500, "internal", "", "out of memory");
        goto out_wipe;
    }
    der_len = csr_from_body(req, der, CSR_DER_MAX);
    if (der_len <= 0) {
        hub_reply_error(req, 400, "bad_csr", "csr", "not base64 PKCS#10");
        goto out_wipe;
    }
    rc = iomt_pki_csr_name(der, (size_t)der_len, csr_name, &err);
    if (rc != IOMT_OK) {
        hub_reply_error(req, 400, "bad_csr", "csr", err.msg);
        goto out_wipe;
    }
    if (strcmp(csr_name, device_id) != 0) {
        hub_reply_error(req, 400, "bad_csr", "csr.subject",
                        "CSR common name is not the device ID");
        goto out_wipe;
    }
    rc = iomt_pki_issue(req->cfg->ca_key_path, req->cfg->ca_cert_path, der,
                        (size_t)der_len, device_id, IOMT_ROLE_DEVICE,
                        req->cfg->device_days, &pem, &pem_len, &err);
    if (rc == IOMT_OK)
        rc =
            iomt_pki_identity_pem((const uint8_t *)pem, pem_len, &issued, &err);
    if (rc != IOMT_OK) {
        hub_reply_error(req, rc == IOMT_E_INPUT ? 400 : 500, "pki", "csr",
                        err.msg);
        goto out_wipe;
    }
    rc = record_enrolment(req, device_id, token_hash, issued.serial_hex,
                          reenroll);
    if (rc == IOMT_E_AUTH) {
        hub_reply_error(req, 401, "unauthenticated", "token",
                        "enrolment token already used");
        goto out_wipe;
    }
    if (rc != IOMT_OK) {
        hub_reply_error(req, 500, "storage", "", "could not record");
        goto out_wipe;
    }
    hub_log("info", reenroll ? "reenrol" : "enrol", "device=%s serial=%s",
            device_id, issued.serial_hex);
    answer_cert(req, pem, pem_len);
out_wipe:
    iomt_wipe(token, sizeof(token));
    free(pem);
    free(der);
}
