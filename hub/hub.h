/*
 * iomt-hub internals: configuration, worker threads, the HTTP request a
 * handler sees, and the API entry points http.c dispatches to.
 */
#ifndef IOMT_HUB_H
#define IOMT_HUB_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "iomt/crypto.h"
#include "iomt/pki.h"

#define HUB_JSON_MAX      (64 * 1024)
#define HUB_IMAGE_MAX_DEF (512ULL * 1024 * 1024)
#define HUB_PATH_MAX      256
#define HUB_RELEASE_ID    16 /* hex characters */
#define HUB_DEFER_MAX     64 /* requests in one group commit */

struct store;

struct hub_config {
    const char *state_dir;
    const char *ca_dir;
    const char *cert_path;
    const char *key_path;
    const char *listen;
    const char *port_file;
    int workers;
    int allow_remote; /* --allow-remote: a non-loopback --listen is meant */
    uint64_t image_max;
    long token_ttl;  /* seconds */
    int device_days; /* validity of device certificates */
    char ca_key_path[PATH_MAX];
    char ca_cert_path[PATH_MAX];
    char db_path[PATH_MAX];
    char images_dir[PATH_MAX];
    char *cacerts_b64; /* the EST cacerts answer, built once */
    size_t cacerts_len;
};

/* HUB_OTHER: a well-formed method no route takes (DELETE, PATCH, ...),
 * answered 405 on a known path. */
enum hub_method { HUB_GET, HUB_POST, HUB_PUT, HUB_OTHER };

/* What a handler asks http.c to do with the request body. */
enum hub_body { HUB_BODY_NONE, HUB_BODY_MEM, HUB_BODY_STREAM };

struct hub_conn;

/* A validated check-in waiting for its worker's group commit. */
struct hub_checkin {
    char version[65];
    uint64_t seq;
    char slot[2];
    char state[16];
};

struct hub_req {
    struct hub_conn *conn;
    const struct hub_config *cfg;
    struct store *store;
    enum hub_method method;
    char path[HUB_PATH_MAX];
    char content_type[128];
    char authorization[512];
    uint64_t content_length;
    int has_id; /* a verified client certificate was presented */
    struct iomt_identity id;
    const uint8_t *body; /* HUB_BODY_MEM: the whole body */
    size_t body_len;
    int replied;
    const char *allow; /* an Allow header for a 405 answer, or NULL */
    int route;         /* api.c's route number, set in api_begin */
    char route_arg[HUB_PATH_MAX];
    /* HUB_BODY_STREAM: image uploads go straight to a temporary file. */
    int up_fd;
    char up_tmp[PATH_MAX];
    struct iomt_sha256 *up_hash;
    uint64_t up_got;
    char up_release[HUB_RELEASE_ID + 1];
    /* Deferred answers (hub_defer): the check-in and the worker's queue. */
    struct hub_checkin checkin;
    int deferred;
    struct hub_req *defer_next;
};

/* http.c: the listener and the connection state machine. */
struct hub_worker;
/* Binds and listens on "ADDR:PORT" (IPv4 literal or "localhost"); a
 * non-loopback address only with allow_remote. Returns 0,
 * HUB_LISTEN_USAGE (the text is wrong) or HUB_LISTEN_FAILED (the system
 * refused), with the reason in why. */
#define HUB_LISTEN_USAGE  1
#define HUB_LISTEN_FAILED 2
int hub_listen(const char *listen, int allow_remote, int *fd, int *port,
               char *why, size_t why_cap);
struct hub_worker *hub_worker_new(const struct hub_config *cfg, int listen_fd);
int hub_worker_start(struct hub_worker *w);
void hub_worker_stop(struct hub_worker *w);
void hub_worker_free(struct hub_worker *w);

/* Replies; each request gets exactly one. body may be NULL. */
void hub_reply(struct hub_req *req, int status, const char *content_type,
               const void *body, size_t len);
/* Takes ownership of fd and sends size bytes of it. */
void hub_reply_file(struct hub_req *req, int status, const char *content_type,
                    int fd, uint64_t size);
/*
 * Group commit: the request is answered later, from the worker's flush,
 * which runs once the events already pending in this loop turn are
 * handled and passes every deferred request of the worker at once, so
 * their writes share one transaction. The flush must answer each one.
 */
typedef void (*hub_flush_fn)(struct hub_req **reqs, size_t n);
void hub_defer(struct hub_req *req, hub_flush_fn flush);
/* Takes a reference to obj (steals it). */
void hub_reply_json(struct hub_req *req, int status, json_t *obj);
void hub_reply_error(struct hub_req *req, int status, const char *code,
                     const char *field, const char *message);

/* log.c: one line per event, key=value, to stderr. */
void hub_log(const char *level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* api.c: routing. begin runs once the headers are in and decides what to
 * do with the body (replying ends the request early); finish runs once
 * the body is complete. */
enum hub_body api_begin(struct hub_req *req, size_t *mem_limit);
void api_finish(struct hub_req *req);
/* Streamed body pieces (image upload); returns 0 or -1 to abort. */
int api_stream(struct hub_req *req, const uint8_t *p, size_t n);
/* Called when a request ends without api_finish (connection lost). */
void api_abort(struct hub_req *req);

/* Role checks: 1 when the caller holds one of the listed roles; otherwise
 * replies 401 (no certificate) or 403 and returns 0. */
int api_require(struct hub_req *req, const char *const *roles);
/* For device calls: also checks the certificate serial is one the hub
 * issued to this device and that neither is revoked. */
int api_require_device(struct hub_req *req);
json_t *api_parse_json(struct hub_req *req);
/* A string member of at most max bytes without NUL, or NULL. */
const char *api_json_str(json_t *obj, const char *key, size_t max);
/* 1 when text is printable ASCII (0x20..0x7e) of at most max bytes. */
int api_text_ok(const char *text, size_t max);
/* A non-negative integer member; 0 or -1. */
int api_json_u64(json_t *obj, const char *key, uint64_t *out);
int api_audit(struct hub_req *req, const char *action, const char *object,
              const char *detail);

/* api_est.c, api_devices.c, api_releases.c */
void est_cacerts(struct hub_req *req);
void est_enroll(struct hub_req *req, int reenroll);
void devices_create(struct hub_req *req);
void devices_list(struct hub_req *req);
void devices_revoke(struct hub_req *req, const char *device_id);
void devices_checkin(struct hub_req *req);
void devices_report(struct hub_req *req);
void releases_upload(struct hub_req *req);
int releases_image_begin(struct hub_req *req, const char *release_id);
int releases_image_write(struct hub_req *req, const uint8_t *p, size_t n);
void releases_image_finish(struct hub_req *req);
void releases_image_abort(struct hub_req *req);
void releases_download(struct hub_req *req, const char *release_id,
                       int want_image);
void releases_assign(struct hub_req *req);
void audit_list(struct hub_req *req);

#endif
