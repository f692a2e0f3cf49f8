/*
 * One device: enrolment (EST simpleenroll with a one-time token) and the
 * update cycle. Firmware is judged against the manufacturer's trust
 * anchor only, never the hub's CA, so a compromised hub cannot push an
 * image; the slots are written only after every check has passed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "agent.h"
#include "iomt/file.h"
#include "iomt/suit.h"

#define JSON_MAX       (64 * 1024)
#define CERT_MAX       (64 * 1024)
#define RELEASE_ID_MAX 64
#define RELEASE_ID_HEX 16 /* hex digits of the manifest digest */

void agent_log(int quiet, const char *device, const char *fmt, ...)
{
    char line[768];
    va_list ap;
    int n;

    if (quiet)
        return;
    n = snprintf(line, sizeof(line), "agent device=%s ", device);
    if (n < 0 || (size_t)n >= sizeof(line))
        return;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    /* One write per line so threads do not interleave mid-line. */
    fprintf(stderr, "%s\n", line);
}

const char *cycle_result_name(enum cycle_result r)
{
    switch (r) {
    case CYCLE_INSTALLED:
        return "installed";
    case CYCLE_REJECTED:
        return "rejected";
    case CYCLE_NO_UPDATE:
        return "no-update";
    default:
        return "error";
    }
}

static int join_path(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);

    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

/* Writes a file whole, via a temporary name, so a reader never sees half. */
static int write_file_atomic(const char *path, const void *p, size_t n,
                             mode_t mode)
{
    char tmp[PATH_MAX];
    int fd;
    int rc = -1;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return -1;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    if (write(fd, p, n) == (ssize_t)n && fsync(fd) == 0)
        rc = 0;
    close(fd);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -1;
    if (rc != 0)
        unlink(tmp);
    return rc;
}

int device_id_ok(const char *id)
{
    size_t n;

    if (id == NULL)
        return 0;
    n = strlen(id);
    /* IDs name directories and appear in log lines: no "..", no hidden
     * names, nothing an option parser or a shell would read as a flag. */
    if (n == 0 || n > IOMT_NAME_MAX || id[0] == '.' || id[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

static int read_device_id(const char *dir, char *id, size_t cap)
{
    char path[PATH_MAX];
    uint8_t *buf = NULL;
    size_t len = 0;
    char *nl;

    if (join_path(path, sizeof(path), dir, "device.conf") != 0 ||
        iomt_file_read(path, 1024, &buf, &len, NULL) != IOMT_OK)
        return -1;
    if (strncmp((char *)buf, "device_id=", 10) != 0) {
        free(buf);
        return -1;
    }
    nl = strchr((char *)buf + 10, '\n');
    if (nl != NULL)
        *nl = '\0';
    if (!device_id_ok((char *)buf + 10) || strlen((char *)buf + 10) >= cap) {
        free(buf);
        return -1;
    }
    snprintf(id, cap, "%s", (char *)buf + 10);
    free(buf);
    return 0;
}

/* 1 when device.conf exists (as any kind of file, readable or not). */
static int conf_exists(const char *dir)
{
    char path[PATH_MAX];
    struct stat sb;

    return join_path(path, sizeof(path), dir, "device.conf") == 0 &&
           lstat(path, &sb) == 0;
}

/*
 * What a state directory lacks to be an enrolled device, or NULL when it
 * has every file of one (the slot state is left to the boot verifier).
 */
const char *device_missing(const char *state_dir, int *malformed)
{
    static const struct {
        const char *file, *why;
    } need[] = {
        {"device.key", "not enrolled (no device.key)"},
        {"device.crt", "not enrolled (no device.crt)"},
    };
    char path[PATH_MAX];
    char id[IOMT_NAME_MAX + 1];
    struct stat sb;

    if (malformed != NULL)
        *malformed = 0;
    if (stat(state_dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return "not enrolled (no such directory)";
    /* A file that is there but unreadable or garbage is damage, not an
     * absent enrolment: saying "no device.conf" would send the operator
     * to enrol again over a device that has an identity. */
    if (read_device_id(state_dir, id, sizeof(id)) != 0) {
        if (!conf_exists(state_dir))
            return "not enrolled (no device.conf)";
        if (malformed != NULL)
            *malformed = 1;
        return "device.conf: malformed";
    }
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
        if (join_path(path, sizeof(path), state_dir, need[i].file) != 0 ||
            access(path, R_OK) != 0)
            return need[i].why;
    return NULL;
}

int device_is_enrolled(const char *state_dir)
{
    struct iomt_slots *s = NULL;

    if (device_missing(state_dir, NULL) != NULL ||
        iomt_slots_open(state_dir, &s, NULL) != IOMT_OK)
        return 0;
    iomt_slots_close(s);
    return 1;
}

int agent_check_hub(const char *url, char *reason, size_t cap)
{
    size_t n;

    if (url == NULL || url[0] == '\0') {
        snprintf(reason, cap, "--hub: an https:// URL is required");
        return -1;
    }
    if (strncmp(url, "http://", 7) == 0) {
        snprintf(reason, cap, "--hub: plain http is refused, use https://");
        return -1;
    }
    n = strlen(url);
    if (strncmp(url, "https://", 8) != 0 || n == 8 || url[8] == '/' ||
        n >= AGENT_URL_MAX) {
        snprintf(reason, cap, "--hub: want https://HOST[:PORT]");
        return -1;
    }
    /* Spaces and control bytes would end up in request lines and logs. */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f) {
            snprintf(reason, cap,
                     "--hub: the URL holds a space or a "
                     "control or non-ASCII byte");
            return -1;
        }
    return 0;
}

int agent_token_ok(const char *token)
{
    size_t n = token ? strlen(token) : 0;

    if (n == 0 || n > AGENT_TOKEN_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)token[i] <= 0x20 || (unsigned char)token[i] >= 0x7f)
            return 0;
    return 1;
}

/* Vendor and class names: stored in the slot record and shown by status. */
static int label_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n > IOMT_SLOT_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            return 0;
    return 1;
}

/* Every check that needs neither the hub nor a byte written. */
static int enrol_check(const struct device_opts *o, const struct enrol_opts *e,
                       char *reason, size_t cap)
{
    if (!device_id_ok(e->device_id))
        snprintf(reason, cap,
                 "--device-id: want 1..%d characters from [A-Za-z0-9._-], "
                 "not starting with '.' or '-'",
                 IOMT_NAME_MAX);
    else if (e->token == NULL)
        snprintf(reason, cap,
                 "--token: an enrolment token is required "
                 "(--token or --token-file)");
    else if (!agent_token_ok(e->token))
        snprintf(reason, cap,
                 "--token: want 1..%d printable ASCII characters "
                 "without spaces",
                 AGENT_TOKEN_MAX);
    else if (!label_ok(e->vendor))
        snprintf(reason, cap,
                 "--vendor: want 1..%d characters, no control bytes",
                 IOMT_SLOT_NAME_MAX);
    else if (!label_ok(e->class_name))
        snprintf(reason, cap,
                 "--class: want 1..%d characters, no control bytes",
                 IOMT_SLOT_NAME_MAX);
    else if (agent_check_hub(o->hub_url, reason, cap) != 0)
        ;
    else if (o->ca_path == NULL || access(o->ca_path, R_OK) != 0)
        snprintf(reason, cap, "--ca: cannot read %s",
                 o->ca_path ? o->ca_path : "(none)");
    else if (e->factory_image == NULL || access(e->factory_image, R_OK) != 0)
        snprintf(reason, cap, "--factory-image: cannot read %s",
                 e->factory_image ? e->factory_image : "(none)");
    else if (e->factory_envelope == NULL ||
             access(e->factory_envelope, R_OK) != 0)
        snprintf(reason, cap, "--factory-envelope: cannot read %s",
                 e->factory_envelope ? e->factory_envelope : "(none)");
    else if (o->trust_anchor == NULL)
        snprintf(reason, cap, "--trust-anchor: none given");
    else
        return 0;
    return AGENT_EXIT_USAGE;
}

/* Splits "a/b/c/" into "a/b" and "c"; the last part must be a name. */
static int split_state(const char *state, char *parent, size_t pcap, char *base,
                       size_t bcap)
{
    size_t n = strlen(state);
    char *slash;
    char *name;

    while (n > 1 && state[n - 1] == '/')
        n--;
    if (n == 0 || n >= pcap)
        return -1;
    memcpy(parent, state, n);
    parent[n] = '\0';
    slash = strrchr(parent, '/');
    name = slash ? slash + 1 : parent;
    if (name[0] == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
        strlen(name) >= bcap)
        return -1;
    memcpy(base, name, strlen(name) + 1);
    if (slash == NULL)
        snprintf(parent, pcap, ".");
    else if (slash == parent)
        parent[1] = '\0';
    else
        *slash = '\0';
    return 0;
}

static int dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    int empty = 1;

    if (d == NULL)
        return 0;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            empty = 0;
            break;
        }
    closedir(d);
    return empty;
}

/*
 * The target must be absent or an empty directory: enrolling over a
 * device would pair its key and certificate with another device's name.
 */
static int check_state_target(const char *state, char *parent, size_t pcap,
                              char *base, size_t bcap, char *reason, size_t cap)
{
    char id[IOMT_NAME_MAX + 1];
    char path[PATH_MAX];
    struct stat sb;

    if (state == NULL || split_state(state, parent, pcap, base, bcap) != 0) {
        snprintf(reason, cap, "--state: not a usable directory name");
        return AGENT_EXIT_USAGE;
    }
    if (stat(parent, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(reason, cap, "--state: parent directory %s does not exist",
                 parent);
        return AGENT_EXIT_USAGE;
    }
    if (lstat(state, &sb) != 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(reason, cap, "--state: %s: %s", state, strerror(errno));
        return AGENT_EXIT_USAGE;
    }
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(reason, cap, "--state: %s exists and is not a directory",
                 state);
        return AGENT_EXIT_USAGE;
    }
    if (read_device_id(state, id, sizeof(id)) == 0) {
        snprintf(reason, cap,
                 "--state: %s is already enrolled as %s; enrol into a new "
                 "directory",
                 state, id);
        return AGENT_EXIT_USAGE;
    }
    if (conf_exists(state)) {
        snprintf(reason, cap,
                 "--state: %s: device.conf: malformed; enrol into a new "
                 "directory",
                 state);
        return AGENT_EXIT_USAGE;
    }
    if (join_path(path, sizeof(path), state, "device.crt") == 0 &&
        access(path, F_OK) == 0) {
        snprintf(reason, cap, "--state: %s already holds a device certificate",
                 state);
        return AGENT_EXIT_USAGE;
    }
    if (!dir_is_empty(state)) {
        snprintf(reason, cap,
                 "--state: %s is not empty; enrol into a new or empty "
                 "directory",
                 state);
        return AGENT_EXIT_USAGE;
    }
    return 0;
}

/* Removes a half-built state directory that this enrolment created. */
static void remove_partial(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    if (d != NULL) {
        while ((de = readdir(d)) != NULL)
            if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                unlinkat(dirfd(d), de->d_name, 0);
        closedir(d);
    }
    rmdir(dir);
}

/* The EST body is the CSR's DER in base64: the PEM body without armour. */
static char *pem_to_b64(const char *pem, size_t n)
{
    const char *p = memchr(pem, '\n', n);
    const char *end;
    char *out;
    size_t o = 0;

    if (p == NULL)
        return NULL;
    p++;
    end = strstr(p, "-----END");
    if (end == NULL)
        return NULL;
    out = malloc((size_t)(end - p) + 1);
    if (out == NULL)
        return NULL;
    for (; p < end; p++)
        if (*p != '\n' && *p != '\r' && *p != ' ')
            out[o++] = *p;
    out[o] = '\0';
    return out;
}

static int provision_slots(const char *dir, const struct device_opts *o,
                           const struct enrol_opts *e, char *reason, size_t cap)
{
    struct iomt_err err = {0};
    struct iomt_err ferr = {0};
    uint8_t *env = NULL;
    size_t env_len = 0;
    long norm;
    int rc;

    if (iomt_file_read(e->factory_envelope, IOMT_SUIT_ENVELOPE_MAX * 2, &env,
                       &env_len, &ferr) != IOMT_OK) {
        snprintf(reason, cap, "--factory-envelope: %s", ferr.msg);
        return AGENT_EXIT_USAGE;
    }
    norm = iomt_suit_normalise(env, env_len);
    if (norm < 0) {
        free(env);
        snprintf(reason, cap, "--factory-envelope: neither CBOR nor hex");
        return AGENT_EXIT_USAGE;
    }
    rc = iomt_slots_create(dir, e->vendor, e->class_name, e->factory_image, env,
                           (size_t)norm, o->trust_anchor, &err);
    free(env);
    if (rc != IOMT_OK) {
        snprintf(reason, cap, "factory: %s", err.msg);
        /* A factory image that fails its signature, digest or class check
         * is a verdict on the input, like any rejected release. */
        return rc == IOMT_E_VERIFY || rc == IOMT_E_ROLLBACK ||
                       rc == IOMT_E_INPUT
                   ? AGENT_EXIT_REJECTED
                   : AGENT_EXIT_INTERNAL;
    }
    return 0;
}

static int est_enrol(const struct device_opts *o, const char *dir,
                     const struct enrol_opts *e, const struct iomt_key *key,
                     char *serial, size_t serial_cap, char *reason, size_t cap)
{
    struct iomt_err err = {0};
    struct iomt_identity id;
    struct agent_http *h = NULL;
    struct http_sink sink = {.fd = -1};
    char path[PATH_MAX];
    char *csr_pem = NULL, *csr_b64 = NULL, *cert_pem = NULL;
    size_t csr_len = 0, cert_len = 0;
    long status = 0;
    int rc = -1;

    if (iomt_pki_make_csr(key, e->device_id, IOMT_ROLE_DEVICE, &csr_pem,
                          &csr_len, &err) != IOMT_OK) {
        snprintf(reason, cap, "csr: %s", err.msg);
        goto out_free;
    }
    csr_b64 = pem_to_b64(csr_pem, csr_len);
    sink.buf = malloc(CERT_MAX);
    sink.cap = CERT_MAX;
    sink.max = CERT_MAX;
    h = http_open(o->hub_url, o->ca_path, NULL, NULL);
    if (csr_b64 == NULL || sink.buf == NULL || h == NULL) {
        snprintf(reason, cap, "enrol: bad hub URL or out of memory");
        goto out_free;
    }
    if (http_call(h, "POST", "/.well-known/est/simpleenroll",
                  "application/pkcs10", csr_b64, strlen(csr_b64), e->device_id,
                  e->token, &sink, &status) != 0) {
        snprintf(reason, cap, "enrol: %s", http_error(h));
        goto out_free;
    }
    if (status != 200) {
        snprintf(reason, cap, "enrol: hub answered %ld%s", status,
                 status == 401 ? " (token refused)" : "");
        goto out_free;
    }
    if (iomt_pki_est_unwrap(sink.buf, sink.len, &cert_pem, &cert_len, &err) !=
        IOMT_OK) {
        snprintf(reason, cap, "enrol: certificate: %s", err.msg);
        goto out_free;
    }
    /* The hub must have issued this device's identity, nothing else. */
    if (iomt_pki_identity_pem((const uint8_t *)cert_pem, cert_len, &id, &err) !=
            IOMT_OK ||
        strcmp(id.name, e->device_id) != 0 ||
        strcmp(id.role, IOMT_ROLE_DEVICE) != 0) {
        snprintf(reason, cap, "enrol: certificate names the wrong device");
        goto out_free;
    }
    if (join_path(path, sizeof(path), dir, "device.crt") != 0 ||
        write_file_atomic(path, cert_pem, cert_len, 0644) != 0) {
        snprintf(reason, cap, "enrol: cannot store the certificate");
        goto out_free;
    }
    snprintf(serial, serial_cap, "%s", id.serial_hex);
    rc = 0;
out_free:
    http_close(h);
    free(sink.buf);
    free(csr_pem);
    free(csr_b64);
    free(cert_pem);
    return rc;
}

/*
 * Builds the whole state directory under a hidden temporary name beside
 * the target and renames it into place only once the certificate is
 * stored, so a failed enrolment (refused token, hub down) leaves nothing
 * that could later pass for a device.
 */
int device_enrol(const struct device_opts *o, const struct enrol_opts *e,
                 char *reason, size_t cap)
{
    char parent[PATH_MAX], base[NAME_MAX + 1], tmp[PATH_MAX];
    char path[PATH_MAX];
    char conf[IOMT_NAME_MAX + 16];
    char serial[128] = "";
    struct iomt_err err = {0};
    struct iomt_key *key = NULL;
    int n;
    int rc;

    reason[0] = '\0';
    rc = enrol_check(o, e, reason, cap);
    if (rc == 0)
        rc = check_state_target(o->state_dir, parent, sizeof(parent), base,
                                sizeof(base), reason, cap);
    if (rc != 0)
        return rc;
    n = snprintf(tmp, sizeof(tmp), "%s/.%s.enrol-XXXXXX", parent, base);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        snprintf(reason, cap, "--state: path too long");
        return AGENT_EXIT_USAGE;
    }
    if (mkdtemp(tmp) == NULL) {
        snprintf(reason, cap, "state: cannot create a directory in %s: %s",
                 parent, strerror(errno));
        return AGENT_EXIT_INTERNAL;
    }

    rc = provision_slots(tmp, o, e, reason, cap);
    if (rc != 0)
        goto out_remove;
    rc = AGENT_EXIT_INTERNAL;
    n = snprintf(conf, sizeof(conf), "device_id=%s\n", e->device_id);
    if (join_path(path, sizeof(path), tmp, "device.conf") != 0 ||
        write_file_atomic(path, conf, (size_t)n, 0600) != 0) {
        snprintf(reason, cap, "state: cannot write device.conf");
        goto out_remove;
    }
    /* The device's own key: made here, never leaves the device. */
    if (join_path(path, sizeof(path), tmp, "device.key") != 0 ||
        iomt_key_generate(IOMT_ALG_ES256, &key, &err) != IOMT_OK ||
        iomt_key_save(key, path, NULL, &err) != IOMT_OK) {
        snprintf(reason, cap, "device-key: %s", err.msg);
        goto out_remove;
    }
    if (est_enrol(o, tmp, e, key, serial, sizeof(serial), reason, cap) != 0)
        goto out_remove;
    if (iomt_file_sync_dir(tmp) != 0 || rename(tmp, o->state_dir) != 0) {
        snprintf(reason, cap, "state: cannot move the new state into %s: %s",
                 o->state_dir, strerror(errno));
        goto out_remove;
    }
    rc = 0;
    /* The certificate is issued and the token spent: the directory stays
     * even if the rename cannot be made durable, but the operator hears. */
    if (iomt_file_sync_dir(parent) != 0)
        agent_log(0, e->device_id, "event=warning reason=\"fsync %s failed\"",
                  parent);
    agent_log(o->quiet, e->device_id, "event=enrolled serial=%s", serial);
out_remove:
    if (rc != 0)
        remove_partial(tmp);
    iomt_key_free(key);
    return rc;
}

/* ---- the update cycle ---- */

struct cycle {
    const struct device_opts *o;
    char id[IOMT_NAME_MAX + 1];
    struct agent_http *h;
    struct iomt_slots *slots;
    struct cycle_outcome *out;
    json_t *release_id;
    char release_path[RELEASE_ID_MAX + 1];
    /* What the hub's offer says; checked against the signed manifest. */
    uint64_t offered_seq;
    uint64_t offered_size;
    char offered_version[IOMT_SUIT_TEXT_MAX + 1];
};

static void set_reason(struct cycle *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_reason(struct cycle *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(c->out->reason, sizeof(c->out->reason), fmt, ap);
    va_end(ap);
}

static void running_version(const struct iomt_slots *s, char *version,
                            size_t cap, uint64_t *seq)
{
    const struct iomt_slot_state *st = iomt_slots_state(s);
    int slot = iomt_slots_running(s);

    if (slot == IOMT_SLOT_NONE)
        slot = st->active;
    snprintf(version, cap, "%s", st->slot[slot].version);
    *seq = st->slot[slot].seq;
}

/* POSTs JSON and parses a JSON answer (when wanted); returns the status. */
static long post_json(struct cycle *c, const char *path, json_t *body,
                      json_t **answer)
{
    struct http_sink sink = {.fd = -1};
    char *text = json_dumps(body, JSON_COMPACT);
    long status = 0;

    if (answer != NULL)
        *answer = NULL;
    sink.buf = malloc(JSON_MAX);
    sink.cap = JSON_MAX;
    sink.max = JSON_MAX;
    if (text == NULL || sink.buf == NULL) {
        status = -1;
        goto out_free;
    }
    if (http_call(c->h, "POST", path, "application/json", text, strlen(text),
                  NULL, NULL, &sink, &status) != 0) {
        status = -1;
        goto out_free;
    }
    if (answer != NULL && status >= 200 && status < 300)
        *answer =
            json_loadb((const char *)sink.buf, sink.len, JSON_DECODE_ANY, NULL);
out_free:
    free(text);
    free(sink.buf);
    return status;
}

static long checkin(struct cycle *c, json_t **answer)
{
    const struct iomt_slot_state *st = iomt_slots_state(c->slots);
    int slot = iomt_slots_running(c->slots);
    char version[IOMT_SUIT_TEXT_MAX + 1];
    uint64_t seq;
    json_t *body;
    long status;

    running_version(c->slots, version, sizeof(version), &seq);
    if (slot == IOMT_SLOT_NONE)
        slot = st->active;
    body = json_pack("{s:s, s:I, s:s, s:s}", "version", version, "seq",
                     (json_int_t)seq, "slot", iomt_slot_name(slot), "state",
                     iomt_slots_state_name(c->slots));
    if (body == NULL)
        return -1;
    status = post_json(c, "/api/v1/checkin", body, answer);
    json_decref(body);
    return status;
}

static void report(struct cycle *c)
{
    json_t *body;
    long status;

    /* Only verdicts on the release are reported; a transport or storage
     * failure says nothing about it and the next cycle retries. */
    if (c->release_id == NULL ||
        (c->out->result != CYCLE_INSTALLED && c->out->result != CYCLE_REJECTED))
        return;
    body = json_pack("{s:O, s:s, s:s, s:s, s:I}", "release_id", c->release_id,
                     "result", cycle_result_name(c->out->result), "reason",
                     c->out->reason, "version", c->out->new_version, "seq",
                     (json_int_t)c->out->new_seq);
    if (body == NULL)
        return;
    /* The slot now running, so the inventory is right before the next
     * check-in. */
    if (c->slots != NULL) {
        int slot = iomt_slots_running(c->slots);

        if (slot == IOMT_SLOT_NONE)
            slot = iomt_slots_state(c->slots)->active;
        json_object_set_new(body, "slot", json_string(iomt_slot_name(slot)));
    }
    status = post_json(c, "/api/v1/reports", body, NULL);
    json_decref(body);
    if (status < 200 || status >= 300)
        agent_log(c->o->quiet, c->id, "event=report-failed status=%ld", status);
}

/* The hub names a release by 16 lower-case hex digits (docs/API.md). */
static int release_id_ok(const char *id, size_t n)
{
    if (n != RELEASE_ID_HEX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return 0;
    return 1;
}

/* Versions as hubs and manifests carry them: printable ASCII, bounded. */
static int version_ok(const char *v, size_t n)
{
    if (n > IOMT_SUIT_TEXT_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e)
            return 0;
    return 1;
}

static int json_uint_ok(const json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 0;
}

/*
 * Reads the check-in answer: {"release": null}, or a release object with
 * every member the API names, each of its type. Anything else is an
 * error, not "no update": a broken or hostile hub must not be able to
 * hold updates back while the device reports that all is well.
 * Returns 0 (no update), 1 (an offer, taken into c) or -1 (*what says
 * which part was wrong).
 */
static int take_offer(struct cycle *c, const json_t *answer, const char **what)
{
    json_t *rel, *id, *seq, *version, *size;

    if (!json_is_object(answer)) {
        *what = "not a JSON object";
        return -1;
    }
    rel = json_object_get(answer, "release");
    if (rel == NULL) {
        *what = "release: missing";
        return -1;
    }
    if (json_is_null(rel))
        return 0;
    if (!json_is_object(rel)) {
        *what = "release: neither an object nor null";
        return -1;
    }
    id = json_object_get(rel, "release_id");
    seq = json_object_get(rel, "seq");
    version = json_object_get(rel, "version");
    size = json_object_get(rel, "image_size");
    if (!json_is_string(id) ||
        !release_id_ok(json_string_value(id), json_string_length(id)))
        *what = "release_id: not 16 lower-case hex digits";
    else if (!json_uint_ok(seq))
        *what = "seq: not an integer in 0..2^63-1";
    else if (!json_is_string(version) ||
             !version_ok(json_string_value(version),
                         json_string_length(version)))
        *what = "version: not 0..64 printable ASCII bytes";
    else if (!json_uint_ok(size))
        *what = "image_size: not an integer in 0..2^63-1";
    else {
        snprintf(c->release_path, sizeof(c->release_path), "%s",
                 json_string_value(id));
        c->release_id = json_incref(id);
        c->offered_seq = (uint64_t)json_integer_value(seq);
        c->offered_size = (uint64_t)json_integer_value(size);
        snprintf(c->offered_version, sizeof(c->offered_version), "%s",
                 json_string_value(version));
        return 1;
    }
    return -1;
}

/*
 * The hub names a release by its manifest digest, so the offered ID, seq,
 * version and size must be those of the signed manifest fetched under
 * that ID. Otherwise a hub (or its storage) that serves another authentic
 * release under this ID would have the device install B while it reports
 * "installed A", and the fleet's inventory would be wrong.
 */
static int check_offer(struct cycle *c, const struct iomt_suit_manifest *m)
{
    char hex[2 * IOMT_SHA256_LEN + 1];

    iomt_hex(m->manifest_digest, IOMT_SHA256_LEN, hex);
    if (memcmp(hex, c->release_path, RELEASE_ID_HEX) != 0) {
        set_reason(c,
                   "release-id: offered release %s, but the signed manifest "
                   "is release %.16s",
                   c->release_path, hex);
        return -1;
    }
    if (m->seq != c->offered_seq) {
        set_reason(c, "release-id: offered seq %llu, the manifest says %llu",
                   (unsigned long long)c->offered_seq,
                   (unsigned long long)m->seq);
        return -1;
    }
    if (strcmp(m->version, c->offered_version) != 0) {
        set_reason(c,
                   "release-id: offered version '%s', the manifest says "
                   "'%s'",
                   c->offered_version, m->version);
        return -1;
    }
    if (m->image_size != c->offered_size) {
        set_reason(c,
                   "release-id: offered image_size %llu, the manifest says "
                   "%llu",
                   (unsigned long long)c->offered_size,
                   (unsigned long long)m->image_size);
        return -1;
    }
    return 0;
}

static int fetch_envelope(struct cycle *c, uint8_t **env, size_t *env_len)
{
    struct http_sink sink = {.fd = -1};
    char path[128];
    long status = 0;
    long norm;

    *env = NULL;
    snprintf(path, sizeof(path), "/api/v1/releases/%s/envelope",
             c->release_path);
    sink.buf = malloc(IOMT_SUIT_ENVELOPE_MAX * 2);
    sink.cap = IOMT_SUIT_ENVELOPE_MAX * 2;
    sink.max = sink.cap;
    if (sink.buf == NULL)
        return -1;
    if (http_call(c->h, "GET", path, NULL, NULL, 0, NULL, NULL, &sink,
                  &status) != 0 ||
        status != 200) {
        set_reason(c, "download: envelope: %s",
                   sink.overflow ? "larger than allowed"
                   : status      ? "hub refused"
                                 : http_error(c->h));
        free(sink.buf);
        return -1;
    }
    norm = iomt_suit_normalise(sink.buf, sink.len);
    if (norm < 0) {
        set_reason(c, "envelope: neither CBOR nor hex");
        free(sink.buf);
        return -1;
    }
    *env = sink.buf;
    *env_len = (size_t)norm;
    return 0;
}

/*
 * Streams the image into the staging file, hashing as it goes and cutting
 * the transfer off at the size the signed manifest gives.
 */
static int fetch_image(struct cycle *c, const struct iomt_suit_manifest *m,
                       const char *staging)
{
    struct http_sink sink = {.fd = -1};
    uint8_t digest[IOMT_SHA256_LEN];
    char path[128];
    long status = 0;
    int rc = -1;

    snprintf(path, sizeof(path), "/api/v1/releases/%s/image", c->release_path);
    sink.fd = open(staging,
                   O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    sink.max = m->image_size;
    sink.hash = iomt_sha256_new();
    if (sink.fd < 0 || sink.hash == NULL) {
        set_reason(c, "download: cannot open the staging file");
        goto out_close;
    }
    if (http_call(c->h, "GET", path, NULL, NULL, 0, NULL, NULL, &sink,
                  &status) != 0 ||
        status != 200) {
        if (sink.overflow)
            set_reason(c,
                       "image-size: hub sent more than the manifest's "
                       "%llu bytes",
                       (unsigned long long)m->image_size);
        else
            set_reason(c, "download: image: %s",
                       status ? "hub refused" : http_error(c->h));
        goto out_close;
    }
    iomt_sha256_final(sink.hash, digest);
    if (sink.got != m->image_size) {
        set_reason(c, "image-size: got %llu bytes, manifest says %llu",
                   (unsigned long long)sink.got,
                   (unsigned long long)m->image_size);
        goto out_close;
    }
    if (memcmp(digest, m->image_digest, IOMT_SHA256_LEN) != 0) {
        set_reason(c, "image-digest: SHA-256 of the image differs from the "
                      "signed manifest");
        goto out_close;
    }
    if (fsync(sink.fd) != 0) {
        set_reason(c, "download: fsync of the staging file failed");
        goto out_close;
    }
    rc = 0;
out_close:
    if (sink.fd >= 0)
        close(sink.fd);
    iomt_sha256_free(sink.hash);
    return rc;
}

/* Stage, trial-boot through the boot verifier, confirm. */
static int install(struct cycle *c, const uint8_t *env, size_t env_len,
                   const char *staging)
{
    struct iomt_err err = {0};
    int booted = IOMT_SLOT_NONE;
    int trial;

    if (iomt_slots_stage(c->slots, env, env_len, staging, c->o->trust_anchor,
                         &err) != IOMT_OK ||
        iomt_slots_mark_trial(c->slots, &err) != IOMT_OK) {
        set_reason(c, "%s", err.msg);
        return err.code == IOMT_E_IO ? -2 : -1;
    }
    trial = iomt_slots_state(c->slots)->trial;
    /* The simulated reboot: state is re-read from disk, as after reset. */
    iomt_slots_close(c->slots);
    c->slots = NULL;
    if (iomt_slots_open(c->o->state_dir, &c->slots, &err) != IOMT_OK ||
        iomt_slots_boot(c->slots, c->o->trust_anchor, &booted, &err) !=
            IOMT_OK) {
        set_reason(c, "trial-boot: %s", err.msg);
        return -2;
    }
    if (booted != trial) {
        set_reason(c, "trial-boot: the boot verifier refused the new slot");
        return -1;
    }
    /* Self-test of the new image would run here; the simulator has none. */
    if (iomt_slots_confirm(c->slots, &err) != IOMT_OK) {
        set_reason(c, "confirm: %s", err.msg);
        return -2;
    }
    return 0;
}

static void offer(struct cycle *c)
{
    const struct iomt_slot_state *st = iomt_slots_state(c->slots);
    struct iomt_suit_manifest m;
    struct iomt_err err = {0};
    char staging[PATH_MAX];
    uint8_t *env = NULL;
    size_t env_len = 0;
    int rc;

    c->out->result = CYCLE_REJECTED;
    /* The offered seq is unsigned hub data: only a cheap early refusal. */
    if (c->offered_seq <= st->rollback_seq) {
        set_reason(c,
                   "rollback: offered seq %llu is not above installed "
                   "%llu",
                   (unsigned long long)c->offered_seq,
                   (unsigned long long)st->rollback_seq);
        return;
    }
    if (fetch_envelope(c, &env, &env_len) != 0)
        return;
    if (iomt_slots_check_envelope(c->slots, env, env_len, c->o->trust_anchor,
                                  &m, &err) != IOMT_OK) {
        set_reason(c, "%s", err.msg);
        goto out_free;
    }
    if (check_offer(c, &m) != 0)
        goto out_free;
    if (join_path(staging, sizeof(staging), c->o->state_dir, "staging.img") !=
        0) {
        set_reason(c, "state: path too long");
        goto out_free;
    }
    rc = fetch_image(c, &m, staging);
    if (rc == 0)
        rc = install(c, env, env_len, staging);
    unlink(staging);
    if (rc == 0)
        c->out->result = CYCLE_INSTALLED;
    else if (rc == -2)
        c->out->result = CYCLE_ERROR;
out_free:
    free(env);
}

/*
 * Power-on: the boot verifier picks and re-verifies a slot. When neither
 * slot verifies the device runs nothing and is told to need service; the
 * check-in API has no state for "unbootable", so the hub does not hear of
 * it from here (docs/KNOWN_ISSUES.md).
 */
static int power_on(struct cycle *c)
{
    struct iomt_err err = {0};
    int booted = IOMT_SLOT_NONE;

    if (iomt_slots_open(c->o->state_dir, &c->slots, &err) != IOMT_OK) {
        set_reason(c, "state: %s", err.msg);
        return -1;
    }
    if (iomt_slots_boot(c->slots, c->o->trust_anchor, &booted, &err) !=
        IOMT_OK) {
        if (err.code == IOMT_E_VERIFY) {
            c->out->result = CYCLE_REJECTED;
            set_reason(c, "%s; device needs service", err.msg);
        } else {
            set_reason(c, "boot: %s",
                       strncmp(err.msg, "boot: ", 6) == 0 ? err.msg + 6
                                                          : err.msg);
        }
        return -1;
    }
    /* A trial left running by a reset after its boot is confirmed now. */
    if (booted == iomt_slots_state(c->slots)->trial &&
        iomt_slots_confirm(c->slots, &err) != IOMT_OK) {
        set_reason(c, "confirm: %s", err.msg);
        return -1;
    }
    return 0;
}

void device_cycle(const struct device_opts *o, struct cycle_outcome *out)
{
    struct cycle c;
    char cert[PATH_MAX], key[PATH_MAX];
    json_t *answer = NULL;
    const char *missing, *what = NULL;
    long status;
    int offered, rc;

    memset(out, 0, sizeof(*out));
    memset(&c, 0, sizeof(c));
    c.o = o;
    c.out = out;
    out->result = CYCLE_ERROR;
    missing = device_missing(o->state_dir, NULL);
    if (missing != NULL ||
        read_device_id(o->state_dir, c.id, sizeof(c.id)) != 0) {
        set_reason(&c, "state: %s",
                   missing ? missing : "device.conf: malformed");
        return;
    }
    rc = power_on(&c);
    /* Even a device that cannot boot says what its record holds. */
    if (c.slots != NULL) {
        running_version(c.slots, out->old_version, sizeof(out->old_version),
                        &out->old_seq);
        memcpy(out->new_version, out->old_version, sizeof(out->new_version));
        out->new_seq = out->old_seq;
    }
    if (rc != 0)
        goto out_free;

    if (join_path(cert, sizeof(cert), o->state_dir, "device.crt") != 0 ||
        join_path(key, sizeof(key), o->state_dir, "device.key") != 0 ||
        (c.h = http_open(o->hub_url, o->ca_path, cert, key)) == NULL) {
        set_reason(&c, "hub: bad URL (https:// only) or out of memory");
        goto out_free;
    }
    status = checkin(&c, &answer);
    if (status < 0) {
        set_reason(&c, "checkin: %s", http_error(c.h));
        goto out_free;
    }
    if (status != 200) {
        set_reason(&c, "checkin: hub refused (HTTP %ld)", status);
        goto out_free;
    }
    offered = answer == NULL ? -1 : take_offer(&c, answer, &what);
    if (offered < 0) {
        set_reason(&c, "checkin: malformed answer: %s",
                   what != NULL ? what : "not JSON");
        goto out_free;
    }
    if (offered == 0) {
        out->result = CYCLE_NO_UPDATE;
        goto out_free;
    }
    offer(&c);
    if (c.slots != NULL)
        running_version(c.slots, out->new_version, sizeof(out->new_version),
                        &out->new_seq);
    agent_log(o->quiet, c.id,
              "event=update release=%s result=%s seq=%llu reason=\"%s\"",
              c.release_path, cycle_result_name(out->result),
              (unsigned long long)out->new_seq, out->reason);
    report(&c);
out_free:
    json_decref(answer);
    json_decref(c.release_id);
    http_close(c.h);
    iomt_slots_close(c.slots);
}

/* What one slot is: "valid", "invalid" or "damaged" (why in reason). */
static const char *slot_health(const struct iomt_slots *s, int slot,
                               char *reason, size_t cap)
{
    struct iomt_err err = {0};

    reason[0] = '\0';
    if (!iomt_slots_state(s)->slot[slot].valid)
        return "invalid";
    if (iomt_slots_check_image(s, slot, &err) == IOMT_OK)
        return "valid";
    snprintf(reason, cap, "%s", err.msg);
    return "damaged";
}

static json_t *status_json(const char *id, const struct iomt_slots *s)
{
    const struct iomt_slot_state *st = iomt_slots_state(s);
    json_t *slots = json_array();
    json_t *o;

    for (int i = 0; i < 2 && slots != NULL; i++) {
        char reason[sizeof(((struct iomt_err *)0)->msg)];
        const char *health = slot_health(s, i, reason, sizeof(reason));
        json_t *one = json_pack(
            "{s:s, s:b, s:s, s:I, s:s}", "slot", iomt_slot_name(i), "valid",
            strcmp(health, "valid") == 0, "state", health, "seq",
            (json_int_t)st->slot[i].seq, "version", st->slot[i].version);

        if (one != NULL && reason[0] != '\0' &&
            json_object_set_new(one, "reason", json_string(reason)) != 0) {
            json_decref(one);
            one = NULL;
        }
        if (one == NULL || json_array_append_new(slots, one) != 0) {
            json_decref(slots);
            slots = NULL;
        }
    }
    if (slots == NULL)
        return NULL;
    o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:b, s:I, s:o}", "device_id",
                  id, "vendor", st->vendor, "class", st->class_name, "active",
                  iomt_slot_name(st->active), "trial",
                  iomt_slot_name(st->trial), "trial_attempts",
                  (int)st->trial_attempts, "confirmed", st->confirmed,
                  "rollback_seq", (json_int_t)st->rollback_seq, "slots", slots);
    return o;
}

static void status_text(const char *id, const struct iomt_slots *s)
{
    const struct iomt_slot_state *st = iomt_slots_state(s);

    printf("device   %s\nvendor   %s\nclass    %s\n", id, st->vendor,
           st->class_name);
    printf("active   %s (%s)\ntrial    %s (attempts %u)\n",
           iomt_slot_name(st->active),
           st->confirmed ? "confirmed" : "unconfirmed",
           iomt_slot_name(st->trial), st->trial_attempts);
    printf("rollback %llu\n", (unsigned long long)st->rollback_seq);
    for (int i = 0; i < 2; i++) {
        char reason[sizeof(((struct iomt_err *)0)->msg)];
        const char *health = slot_health(s, i, reason, sizeof(reason));

        printf("slot %s   %-7s seq=%llu version=%s%s%s\n", iomt_slot_name(i),
               health, (unsigned long long)st->slot[i].seq, st->slot[i].version,
               reason[0] ? " reason=" : "", reason);
    }
}

/*
 * The state record says what was verified when it was written; each
 * valid slot's image is hashed again so that one lost, cut short or
 * overwritten since shows as damaged rather than valid.
 */
int device_status(const char *state_dir, int json)
{
    struct iomt_slots *s = NULL;
    struct iomt_err err = {0};
    char id[IOMT_NAME_MAX + 1] = "-";
    const char *missing = device_missing(state_dir, NULL);

    if (missing != NULL) {
        fprintf(stderr, "iomt-agent: --state: %s: %s\n", state_dir, missing);
        return AGENT_EXIT_USAGE;
    }
    if (iomt_slots_open(state_dir, &s, &err) != IOMT_OK) {
        fprintf(stderr, "iomt-agent: %s\n", err.msg);
        return AGENT_EXIT_USAGE;
    }
    read_device_id(state_dir, id, sizeof(id));
    if (json) {
        json_t *o = status_json(id, s);
        char *text = o ? json_dumps(o, JSON_INDENT(2)) : NULL;

        if (text != NULL)
            printf("%s\n", text);
        free(text);
        json_decref(o);
        if (text == NULL) {
            fprintf(stderr, "iomt-agent: out of memory\n");
            iomt_slots_close(s);
            return AGENT_EXIT_INTERNAL;
        }
    } else {
        status_text(id, s);
    }
    iomt_slots_close(s);
    return AGENT_EXIT_OK;
}
