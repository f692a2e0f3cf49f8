/*
 * iomt-agent: one device's enrolment and update cycle over mutual TLS, and
 * a simulator that runs a fleet of such devices in threads.
 */
#ifndef IOMT_AGENT_H
#define IOMT_AGENT_H

#include <stddef.h>
#include <stdint.h>

#include "iomt/crypto.h"
#include "iomt/pki.h"
#include "iomt/slot.h"

#define AGENT_EXIT_OK       0
#define AGENT_EXIT_REJECTED 1
#define AGENT_EXIT_USAGE    2
#define AGENT_EXIT_INTERNAL 3

#define AGENT_URL_MAX    512
#define AGENT_REASON_MAX 256
#define AGENT_TOKEN_MAX  128

/* ---- client.c: HTTPS with libcurl (OpenSSL), TLS 1.3 only ---- */

struct agent_http;

/* A body sink: memory (bounded by cap) or a file, optionally hashed. */
struct http_sink {
    uint8_t *buf;
    size_t len, cap;
    int fd;
    uint64_t max; /* bytes accepted in all; more aborts the transfer */
    uint64_t got;
    struct iomt_sha256 *hash;
    int overflow;
};

/*
 * cert/key may be NULL (enrolment). The fleet CA is the only trust root:
 * the system store is never consulted.
 */
struct agent_http *http_open(const char *base_url, const char *ca_path,
                             const char *cert_path, const char *key_path);
void http_close(struct agent_http *h);
/* Performs one request; returns 0 with *status set, or -1 (transport). */
int http_call(struct agent_http *h, const char *method, const char *path,
              const char *content_type, const void *body, size_t body_len,
              const char *basic_user, const char *basic_pass,
              struct http_sink *sink, long *status);
const char *http_error(const struct agent_http *h);

/* ---- device.c: one device ---- */

struct device_opts {
    const char *state_dir;
    const char *hub_url;
    const char *ca_path;
    const struct iomt_key *trust_anchor;
    int quiet;
};

struct enrol_opts {
    const char *device_id;
    const char *token;
    const char *vendor;
    const char *class_name;
    const char *factory_image;
    const char *factory_envelope;
};

enum cycle_result {
    CYCLE_NO_UPDATE,
    CYCLE_INSTALLED,
    CYCLE_REJECTED,
    CYCLE_ERROR,
};

struct cycle_outcome {
    enum cycle_result result;
    char old_version[IOMT_SUIT_TEXT_MAX + 1];
    uint64_t old_seq;
    char new_version[IOMT_SUIT_TEXT_MAX + 1];
    uint64_t new_seq;
    char reason[AGENT_REASON_MAX];
};

const char *cycle_result_name(enum cycle_result r);
/* 1 for 1..64 of [A-Za-z0-9._-], not starting with '.' or '-'. */
int device_id_ok(const char *id);
/* 1 for 1..AGENT_TOKEN_MAX printable ASCII bytes without spaces. */
int agent_token_ok(const char *token);
/* 0 for an https:// URL with a host; else -1 and a reason naming --hub. */
int agent_check_hub(const char *url, char *reason, size_t cap);
/*
 * Why the state directory is not an enrolled device ("not enrolled (no
 * device.crt)", "device.conf: malformed"), or NULL when its identity
 * files are all there. *malformed (may be NULL) is set to 1 when a file
 * is present but damaged, so enrolling again would be wrong.
 */
const char *device_missing(const char *state_dir, int *malformed);
/* 1 when the state directory holds a certificate and provisioned slots. */
int device_is_enrolled(const char *state_dir);
/*
 * Enrols into a state directory that must not exist yet (or be empty);
 * nothing is left behind on failure. Returns 0, AGENT_EXIT_USAGE (bad
 * option, reason names it), AGENT_EXIT_REJECTED (the factory envelope or
 * image failed its signature, digest or vendor/class check) or
 * AGENT_EXIT_INTERNAL (hub unreachable, token refused, storage).
 */
int device_enrol(const struct device_opts *o, const struct enrol_opts *e,
                 char *reason, size_t reason_cap);
/* Boot, check in, and install what the hub offers (if anything). */
void device_cycle(const struct device_opts *o, struct cycle_outcome *out);
int device_status(const char *state_dir, int json);

/* Logs one key=value event line to stderr unless quiet. */
void agent_log(int quiet, const char *device, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- simulate.c ---- */

struct sim_opts {
    const char *fleet_path;
    const char *hub_url;
    const char *ca_path;
    const char *anchor_path;
    const char *dir;
    const char *results_path;
    const char *count_option; /* "--count" or "--simulate", for messages */
    unsigned count;           /* 0: every line of the fleet file */
    unsigned concurrency;
    unsigned cycles;
    int quiet;
};

int simulate_fleet(const struct sim_opts *o);

#endif
