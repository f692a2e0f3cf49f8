/*
 * Routing and the checks every call shares: who is calling (from the
 * verified client certificate only), whether their role may make the call,
 * and the audit record written before a state change is answered.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "hub.h"
#include "store.h"

enum route {
    R_NONE,
    R_CACERTS,
    R_ENROLL,
    R_REENROLL,
    R_DEVICES_POST,
    R_DEVICES_GET,
    R_DEVICE_REVOKE,
    R_RELEASES_POST,
    R_IMAGE_PUT,
    R_ENVELOPE_GET,
    R_IMAGE_GET,
    R_ASSIGN,
    R_AUDIT,
    R_CHECKIN,
    R_REPORT,
};

static const char *const roles_admin[] = {IOMT_ROLE_ADMIN, NULL};
static const char *const roles_device[] = {IOMT_ROLE_DEVICE, NULL};
static const char *const roles_read[] = {IOMT_ROLE_ADMIN, IOMT_ROLE_SECURITY,
                                         IOMT_ROLE_CLINICAL, NULL};
static const char *const roles_release[] = {IOMT_ROLE_RELEASE, IOMT_ROLE_ADMIN,
                                            NULL};
static const char *const roles_security[] = {IOMT_ROLE_SECURITY,
                                             IOMT_ROLE_ADMIN, NULL};

int api_require(struct hub_req *req, const char *const *roles)
{
    size_t i;

    if (!req->has_id) {
        hub_reply_error(req, 401, "unauthenticated", "certificate",
                        "a fleet client certificate is required");
        return 0;
    }
    for (i = 0; roles[i] != NULL; i++) {
        if (strcmp(req->id.role, roles[i]) == 0)
            return 1;
    }
    hub_reply_error(req, 403, "forbidden", "role",
                    "this role may not make this call");
    return 0;
}

int api_require_device(struct hub_req *req)
{
    if (!api_require(req, roles_device))
        return 0;
    /* A valid signature is not enough: the hub must have issued this very
     * certificate to this device, and neither may have been revoked. */
    if (!store_device_cert_ok(req->store, req->id.name, req->id.serial_hex)) {
        hub_reply_error(req, 403, "forbidden", "certificate",
                        "certificate unknown or revoked");
        return 0;
    }
    return 1;
}

/* For a number jansson could not hold, the key it belongs to: walks back
 * from the error position over the number, the colon and the quoted key. */
static void overflow_field(const char *body, size_t len, size_t pos,
                           char *field, size_t cap)
{
    size_t end, start;

    snprintf(field, cap, "body");
    if (pos > len)
        pos = len;
    while (pos > 0 && strchr("0123456789-+eE. \t\r\n", body[pos - 1]))
        pos--;
    if (pos == 0 || body[pos - 1] != ':')
        return;
    pos--;
    while (pos > 0 && strchr(" \t\r\n", body[pos - 1]))
        pos--;
    if (pos < 2 || body[pos - 1] != '"')
        return;
    end = pos - 1;
    for (start = end; start > 0 && body[start - 1] != '"'; start--) {
        char c = body[start - 1];

        if (!((c >= 'a' && c <= 'z') || c == '_' || (c >= '0' && c <= '9')) ||
            end - start >= cap - 1)
            return;
    }
    if (start == 0 || start == end)
        return;
    snprintf(field, cap, "%.*s", (int)(end - start), body + start);
}

json_t *api_parse_json(struct hub_req *req)
{
    char msg[200], field[40];
    json_error_t jerr;
    json_t *obj;
    size_t i;

    if (req->body_len == 0) {
        hub_reply_error(req, 400, "bad_json", "body", "empty body");
        return NULL;
    }
    obj = json_loadb((const char *)req->body, req->body_len,
                     JSON_REJECT_DUPLICATES, &jerr);
    if (obj == NULL) {
        /* jansson's own words name the problem (duplicate key, integer
         * too big, bad token); bytes from the body are made printable so
         * the answer stays valid JSON. */
        snprintf(msg, sizeof(msg), "invalid JSON at byte %d: %s", jerr.position,
                 jerr.text);
        for (i = 0; msg[i] != 0; i++) {
            if ((unsigned char)msg[i] < 0x20 || (unsigned char)msg[i] > 0x7e)
                msg[i] = '?';
        }
        snprintf(field, sizeof(field), "body");
        if (json_error_code(&jerr) == json_error_numeric_overflow)
            overflow_field((const char *)req->body, req->body_len,
                           (size_t)(jerr.position > 0 ? jerr.position : 0),
                           field, sizeof(field));
        hub_reply_error(req, 400, "bad_json", field, msg);
        return NULL;
    }
    if (!json_is_object(obj)) {
        json_decref(obj);
        hub_reply_error(req, 400, "bad_json", "body",
                        "body is JSON but not an object");
        return NULL;
    }
    return obj;
}

int api_text_ok(const char *text, size_t max)
{
    size_t n;

    if (text == NULL)
        return 0;
    for (n = 0; text[n] != 0; n++) {
        if (n >= max || text[n] < 0x20 || text[n] > 0x7e)
            return 0;
    }
    return 1;
}

const char *api_json_str(json_t *obj, const char *key, size_t max)
{
    json_t *v = json_object_get(obj, key);
    const char *text;
    size_t n;

    if (!json_is_string(v))
        return NULL;
    text = json_string_value(v);
    n = json_string_length(v);
    if (n > max || strlen(text) != n)
        return NULL;
    return text;
}

int api_json_u64(json_t *obj, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(obj, key);

    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

int api_audit(struct hub_req *req, const char *action, const char *object,
              const char *detail)
{
    const char *actor = req->has_id ? req->id.name : "-";
    const char *role = req->has_id ? req->id.role : "-";

    return store_audit(req->store, actor, role, action, object,
                       detail != NULL ? detail : "");
}

#define RELEASES "/api/v1/releases/"
#define DEVICES  "/api/v1/devices/"

/* Matches "<prefix>{id}/<tail>" and copies the id. */
static int match_path(const char *path, const char *prefix, const char *tail,
                      char *id)
{
    size_t len = strlen(prefix), n;
    const char *p, *slash;

    if (strncmp(path, prefix, len) != 0)
        return 0;
    p = path + len;
    slash = strchr(p, '/');
    if (slash == NULL || strcmp(slash + 1, tail) != 0)
        return 0;
    n = (size_t)(slash - p);
    if (n == 0 || n >= HUB_PATH_MAX)
        return 0;
    memcpy(id, p, n);
    id[n] = 0;
    return 1;
}

struct route_entry {
    enum hub_method method;
    const char *path;
    enum route route;
};

static const struct route_entry fixed_routes[] = {
    {HUB_GET, "/.well-known/est/cacerts", R_CACERTS},
    {HUB_POST, "/.well-known/est/simpleenroll", R_ENROLL},
    {HUB_POST, "/.well-known/est/simplereenroll", R_REENROLL},
    {HUB_POST, "/api/v1/devices", R_DEVICES_POST},
    {HUB_GET, "/api/v1/devices", R_DEVICES_GET},
    {HUB_POST, "/api/v1/releases", R_RELEASES_POST},
    {HUB_POST, "/api/v1/assignments", R_ASSIGN},
    {HUB_GET, "/api/v1/audit", R_AUDIT},
    {HUB_POST, "/api/v1/checkin", R_CHECKIN},
    {HUB_POST, "/api/v1/reports", R_REPORT},
};

#define M_GET  1
#define M_POST 2
#define M_PUT  4

static const char *allow_text(int methods)
{
    static const char *const text[8] = {
        NULL,  "GET",      "POST",      "GET, POST",
        "PUT", "GET, PUT", "POST, PUT", "GET, POST, PUT"};

    return text[methods & 7];
}

static int method_bit(enum hub_method m)
{
    return m == HUB_GET    ? M_GET
           : m == HUB_POST ? M_POST
           : m == HUB_PUT  ? M_PUT
                           : 0;
}

/* Finds the route; 0 and a 404 or 405 (with Allow) when there is none. */
static enum route find_route(struct hub_req *req)
{
    int methods = 0;
    size_t i;

    for (i = 0; i < sizeof(fixed_routes) / sizeof(fixed_routes[0]); i++) {
        if (strcmp(req->path, fixed_routes[i].path) != 0)
            continue;
        methods |= method_bit(fixed_routes[i].method);
        if (req->method == fixed_routes[i].method)
            return fixed_routes[i].route;
    }
    if (match_path(req->path, RELEASES, "image", req->route_arg)) {
        if (req->method == HUB_PUT)
            return R_IMAGE_PUT;
        if (req->method == HUB_GET)
            return R_IMAGE_GET;
        methods = M_GET | M_PUT;
    } else if (match_path(req->path, RELEASES, "envelope", req->route_arg)) {
        if (req->method == HUB_GET)
            return R_ENVELOPE_GET;
        methods = M_GET;
    } else if (match_path(req->path, DEVICES, "revoke", req->route_arg)) {
        if (req->method == HUB_POST)
            return R_DEVICE_REVOKE;
        methods = M_POST;
    }
    if (methods != 0) {
        req->allow = allow_text(methods);
        hub_reply_error(req, 405, "method", "method", "method not allowed");
    } else {
        hub_reply_error(req, 404, "not_found", "path", "no such endpoint");
    }
    return R_NONE;
}

/* The media type of the request, parameters and case aside. */
static int media_type_is(const struct hub_req *req, const char *want)
{
    const char *ct = req->content_type, *end = strchr(ct, ';');
    size_t n = end != NULL ? (size_t)(end - ct) : strlen(ct);

    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    return n == strlen(want) && strncasecmp(ct, want, n) == 0;
}

/* 415 unless the body is declared as the route expects: a body must never
 * be read as something other than what its sender says it is. */
static int require_type(struct hub_req *req, enum route r)
{
    const char *want = NULL;

    switch (r) {
    case R_DEVICES_POST:
    case R_ASSIGN:
    case R_CHECKIN:
    case R_REPORT:
        want = "application/json";
        break;
    case R_RELEASES_POST:
        if (media_type_is(req, "application/cbor"))
            return 1;
        want = "application/suit-envelope+cose";
        break;
    case R_IMAGE_PUT:
        want = "application/octet-stream";
        break;
    default:
        return 1;
    }
    if (media_type_is(req, want))
        return 1;
    hub_reply_error(req, 415, "media_type", "content-type",
                    r == R_RELEASES_POST
                        ? "Content-Type must be application/suit-envelope+cose"
                          " or application/cbor"
                    : r == R_IMAGE_PUT
                        ? "Content-Type must be application/octet-stream"
                        : "Content-Type must be application/json");
    return 0;
}

enum hub_body api_begin(struct hub_req *req, size_t *mem_limit)
{
    enum route r = find_route(req);
    int ok = 1;

    req->route = (int)r;
    *mem_limit = HUB_JSON_MAX;
    switch (r) {
    case R_NONE:
        return HUB_BODY_NONE;
    case R_CACERTS:
        return HUB_BODY_NONE;
    case R_ENROLL:
        return HUB_BODY_MEM; /* the token is checked with the body */
    case R_CHECKIN:
        /* The issued-and-not-revoked check runs inside the check-in's
         * own transaction (devices_checkin), not in a read of its own. */
        ok = api_require(req, roles_device);
        break;
    case R_REENROLL:
    case R_REPORT:
    case R_ENVELOPE_GET:
    case R_IMAGE_GET:
        ok = api_require_device(req);
        break;
    case R_DEVICES_POST:
    case R_ASSIGN:
        ok = api_require(req, roles_admin);
        break;
    case R_DEVICES_GET:
        ok = api_require(req, roles_read);
        break;
    case R_DEVICE_REVOKE:
    case R_AUDIT:
        ok = api_require(req, roles_security);
        break;
    case R_RELEASES_POST:
        ok = api_require(req, roles_release);
        break;
    case R_IMAGE_PUT:
        if (!api_require(req, roles_release) || !require_type(req, r))
            return HUB_BODY_NONE;
        return releases_image_begin(req, req->route_arg) == 0 ? HUB_BODY_STREAM
                                                              : HUB_BODY_NONE;
    }
    if (!ok || !require_type(req, r))
        return HUB_BODY_NONE;
    if (r == R_ENVELOPE_GET || r == R_IMAGE_GET || r == R_DEVICES_GET ||
        r == R_AUDIT || r == R_DEVICE_REVOKE)
        return HUB_BODY_NONE;
    return HUB_BODY_MEM;
}

void api_finish(struct hub_req *req)
{
    switch ((enum route)req->route) {
    case R_NONE:
        break;
    case R_CACERTS:
        est_cacerts(req);
        break;
    case R_ENROLL:
        est_enroll(req, 0);
        break;
    case R_REENROLL:
        est_enroll(req, 1);
        break;
    case R_DEVICES_POST:
        devices_create(req);
        break;
    case R_DEVICES_GET:
        devices_list(req);
        break;
    case R_DEVICE_REVOKE:
        devices_revoke(req, req->route_arg);
        break;
    case R_RELEASES_POST:
        releases_upload(req);
        break;
    case R_IMAGE_PUT:
        releases_image_finish(req);
        break;
    case R_ENVELOPE_GET:
        releases_download(req, req->route_arg, 0);
        break;
    case R_IMAGE_GET:
        releases_download(req, req->route_arg, 1);
        break;
    case R_ASSIGN:
        releases_assign(req);
        break;
    case R_AUDIT:
        audit_list(req);
        break;
    case R_CHECKIN:
        devices_checkin(req);
        break;
    case R_REPORT:
        devices_report(req);
        break;
    }
}

int api_stream(struct hub_req *req, const uint8_t *p, size_t n)
{
    return releases_image_write(req, p, n);
}

void api_abort(struct hub_req *req)
{
    if ((enum route)req->route == R_IMAGE_PUT)
        releases_image_abort(req);
}

void audit_list(struct hub_req *req)
{
    json_t *entries = store_audit_json(req->store);

    if (entries == NULL) {
        hub_reply_error(req, 500, "storage", "audit", "cannot read the log");
        return;
    }
    hub_reply_json(req, 200, json_pack("{s:o}", "entries", entries));
}
