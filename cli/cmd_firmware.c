/*
 * iomt keygen, sign, verify, inspect: the release engineer's firmware
 * commands. Arguments and files are handled here; every check lives in
 * libiomt (lib/suit.c), so the agent verifies exactly the same way.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "iomt/cose.h"
#include "iomt/crypto.h"
#include "iomt/file.h"
#include "iomt/suit.h"

/* Hex text of a maximal envelope, with line breaks, fits in this. */
#define ENVELOPE_FILE_MAX (4 * IOMT_SUIT_ENVELOPE_MAX)

static void usage_error(const char *cmd, const char *usage, const char *msg)
{
    if (msg != NULL)
        fprintf(stderr, "iomt %s: %s\n", cmd, msg);
    fprintf(stderr, "usage: iomt %s\n", usage);
}

/* Names and version text end up in manifests, logs and inventories: what is
 * wrong with one, or NULL when it is fine. */
static const char *text_problem(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0)
        return "empty";
    if (n > IOMT_SUIT_TEXT_MAX)
        return "longer than 64 bytes";
    for (i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return "control character";
    }
    return NULL;
}

/* Checks each named option's text; prints the first problem. */
static int check_texts(const char *cmd, const char *usage,
                       const char *const *names, const char *const *values,
                       size_t count)
{
    char msg[128];
    const char *why;
    size_t i;

    for (i = 0; i < count; i++) {
        if (values[i] == NULL || (why = text_problem(values[i])) == NULL)
            continue;
        snprintf(msg, sizeof(msg), "%s: %s", names[i], why);
        usage_error(cmd, usage, msg);
        return -1;
    }
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v;

    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* KEY.pem -> KEY.pub.pem; anything else gets .pub.pem appended. */
static int public_path(const char *priv, char *out, size_t cap)
{
    size_t len = strlen(priv);
    int n;

    if (len > 4 && strcmp(priv + len - 4, ".pem") == 0)
        n = snprintf(out, cap, "%.*s.pub.pem", (int)(len - 4), priv);
    else
        n = snprintf(out, cap, "%s.pub.pem", priv);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

int cmd_keygen(int argc, char **argv)
{
    static const char usage[] =
        "keygen [--alg es256|ed25519] [--force] -o KEY.pem";
    static const struct option opts[] = {
        {"alg", required_argument, NULL, 'a'},
        {"force", no_argument, NULL, 'f'},
        {"out", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    enum iomt_alg alg = IOMT_ALG_ES256;
    struct iomt_key *key = NULL;
    struct iomt_err err = {0};
    const char *out = NULL;
    char pub[4096];
    int c, force = 0;

    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
            if (strcmp(optarg, "es256") == 0 || strcmp(optarg, "p256") == 0)
                alg = IOMT_ALG_ES256;
            else if (strcmp(optarg, "ed25519") == 0 ||
                     strcmp(optarg, "eddsa") == 0)
                alg = IOMT_ALG_EDDSA;
            else {
                usage_error("keygen", usage, "--alg: es256 or ed25519");
                return IOMT_EXIT_USAGE;
            }
            break;
        case 'f':
            force = 1;
            break;
        case 'o':
            out = optarg;
            break;
        case 'h':
            printf("usage: iomt %s\n", usage);
            return IOMT_EXIT_OK;
        default:
            usage_error("keygen", usage, NULL);
            return IOMT_EXIT_USAGE;
        }
    }
    if (out == NULL || out[0] == '\0' || optind != argc) {
        usage_error("keygen", usage,
                    out == NULL      ? "-o is required"
                    : out[0] == '\0' ? "-o: empty path"
                                     : "unexpected argument");
        return IOMT_EXIT_USAGE;
    }
    if (public_path(out, pub, sizeof(pub)) != 0) {
        usage_error("keygen", usage, "-o: path too long");
        return IOMT_EXIT_USAGE;
    }
    /* A signing key lost to a slip of the shell cannot be recovered, and
     * every device trusting it would need a new trust anchor. */
    if (!force && (access(out, F_OK) == 0 || access(pub, F_OK) == 0)) {
        fprintf(stderr,
                "iomt keygen: -o: %s or %s exists; --force replaces it\n", out,
                pub);
        return IOMT_EXIT_USAGE;
    }
    if (iomt_key_generate(alg, &key, &err) != IOMT_OK ||
        iomt_key_save(key, out, pub, &err) != IOMT_OK) {
        iomt_key_free(key);
        fprintf(stderr, "iomt keygen: %s\n", err.msg);
        return err.code == IOMT_E_IO ? IOMT_EXIT_USAGE : IOMT_EXIT_INTERNAL;
    }
    iomt_key_free(key);
    printf("wrote %s (private, mode 0600) and %s (%s)\n", out, pub,
           alg == IOMT_ALG_ES256 ? "ES256, P-256" : "EdDSA, Ed25519");
    return IOMT_EXIT_OK;
}

int cmd_sign(int argc, char **argv)
{
    static const char usage[] =
        "sign --key KEY.pem --image FILE --seq N --vendor NAME --class NAME\n"
        "          [--version TEXT] [--sbom FILE] -o ENVELOPE";
    static const struct option opts[] = {
        {"key", required_argument, NULL, 'k'},
        {"image", required_argument, NULL, 'i'},
        {"seq", required_argument, NULL, 's'},
        {"vendor", required_argument, NULL, 'V'},
        {"class", required_argument, NULL, 'C'},
        {"version", required_argument, NULL, 'v'},
        {"sbom", required_argument, NULL, 'b'},
        {"out", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct iomt_suit_params prm;
    struct iomt_key *key = NULL;
    struct iomt_err err = {0};
    const char *key_path = NULL, *image = NULL, *sbom = NULL, *out = NULL;
    const char *missing;
    uint8_t *env = NULL;
    size_t env_len = 0;
    char hex[2 * IOMT_SHA256_LEN + 1];
    int have_seq = 0, c, rc = IOMT_EXIT_INTERNAL;

    memset(&prm, 0, sizeof(prm));
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'k':
            key_path = optarg;
            break;
        case 'i':
            image = optarg;
            break;
        case 's':
            if (parse_u64(optarg, &prm.seq) != 0) {
                usage_error("sign", usage, "--seq: not a whole number");
                return IOMT_EXIT_USAGE;
            }
            /* Hubs and device records keep the counter as a signed 64-bit
             * integer; a larger one could never be stored or compared. */
            if (prm.seq > INT64_MAX) {
                usage_error("sign", usage, "--seq: at most 2^63 - 1");
                return IOMT_EXIT_USAGE;
            }
            have_seq = 1;
            break;
        case 'V':
            prm.vendor = optarg;
            break;
        case 'C':
            prm.class = optarg;
            break;
        case 'v':
            /* Hubs and devices carry the version in inventories, logs and
             * reports as printable ASCII; refuse here what they would. */
            for (const char *c = optarg; *c != '\0'; c++) {
                if (*c < 0x20 || *c > 0x7e) {
                    usage_error("sign", usage,
                                "--version: printable ASCII only");
                    return IOMT_EXIT_USAGE;
                }
            }
            prm.version = optarg;
            break;
        case 'b':
            sbom = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'h':
            printf("usage: iomt %s\n", usage);
            return IOMT_EXIT_OK;
        default:
            usage_error("sign", usage, NULL);
            return IOMT_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "iomt sign: unexpected argument '%s'\n", argv[optind]);
        return IOMT_EXIT_USAGE;
    }
    missing = key_path == NULL     ? "--key"
              : image == NULL      ? "--image"
              : !have_seq          ? "--seq"
              : prm.vendor == NULL ? "--vendor"
              : prm.class == NULL  ? "--class"
              : out == NULL        ? "-o"
                                   : NULL;
    if (missing != NULL) {
        fprintf(stderr, "iomt sign: %s is required\n", missing);
        usage_error("sign", usage, NULL);
        return IOMT_EXIT_USAGE;
    }
    {
        const char *const names[] = {"--vendor", "--class", "--version"};
        const char *const values[] = {prm.vendor, prm.class, prm.version};

        if (check_texts("sign", usage, names, values, 3) != 0)
            return IOMT_EXIT_USAGE;
    }

    if (iomt_key_load(key_path, &key, &err) != IOMT_OK) {
        fprintf(stderr, "iomt sign: %s\n", err.msg);
        return IOMT_EXIT_USAGE;
    }
    if (!iomt_key_has_private(key)) {
        fprintf(stderr, "iomt sign: %s holds no private key\n", key_path);
        rc = IOMT_EXIT_USAGE;
        goto out_free_key;
    }
    if (iomt_sha256_file(image, UINT64_MAX, prm.image_digest, &prm.image_size,
                         &err) != IOMT_OK) {
        fprintf(stderr, "iomt sign: --image: %s\n", err.msg);
        rc = IOMT_EXIT_USAGE;
        goto out_free_key;
    }
    if (sbom != NULL) {
        if (iomt_sha256_file(sbom, UINT64_MAX, prm.sbom_digest, &prm.sbom_size,
                             &err) != IOMT_OK) {
            fprintf(stderr, "iomt sign: --sbom: %s\n", err.msg);
            rc = IOMT_EXIT_USAGE;
            goto out_free_key;
        }
        prm.has_sbom = 1;
    }
    if (iomt_suit_sign(&prm, key, &env, &env_len, &err) != IOMT_OK) {
        fprintf(stderr, "iomt sign: %s\n", err.msg);
        rc = err.code == IOMT_E_INPUT ? IOMT_EXIT_USAGE : IOMT_EXIT_INTERNAL;
        goto out_free_key;
    }
    if (iomt_file_write_atomic(out, env, env_len, 0644, &err) != IOMT_OK) {
        fprintf(stderr, "iomt sign: %s\n", err.msg);
        rc = IOMT_EXIT_USAGE;
        goto out_free_env;
    }
    iomt_hex(prm.image_digest, IOMT_SHA256_LEN, hex);
    printf("wrote %s (%zu bytes): seq %llu, image %llu bytes sha256 %s%s\n",
           out, env_len, (unsigned long long)prm.seq,
           (unsigned long long)prm.image_size, hex,
           prm.has_sbom ? ", with SBOM" : "");
    rc = IOMT_EXIT_OK;
out_free_env:
    free(env);
out_free_key:
    iomt_key_free(key);
    return rc;
}

/* Loads an envelope file (raw CBOR or hex). Exit code on failure. */
static int load_envelope(const char *cmd, const char *path, uint8_t **env,
                         size_t *len)
{
    struct iomt_err err = {0};
    long norm;
    int rc;

    rc = iomt_file_read(path, ENVELOPE_FILE_MAX, env, len, &err);
    if (rc == IOMT_E_INPUT) {
        fprintf(stderr, "rejected: envelope: %s\n", err.msg);
        return IOMT_EXIT_REJECTED;
    }
    if (rc != IOMT_OK) {
        fprintf(stderr, "iomt %s: %s\n", cmd, err.msg);
        return IOMT_EXIT_USAGE;
    }
    norm = iomt_suit_normalise(*env, *len);
    if (norm <= 0) {
        fprintf(stderr, "rejected: envelope: %s\n",
                *len == 0 ? "empty file" : "neither CBOR nor hex text");
        free(*env);
        *env = NULL;
        return IOMT_EXIT_REJECTED;
    }
    *len = (size_t)norm;
    return IOMT_EXIT_OK;
}

static void print_manifest(FILE *f, const struct iomt_suit_manifest *m)
{
    char uuid[37], hex[2 * IOMT_SHA256_LEN + 1];

    fprintf(f, "  seq:        %llu\n", (unsigned long long)m->seq);
    fprintf(f, "  version:    %s\n", m->version[0] ? m->version : "-");
    if (m->has_vendor) {
        iomt_suit_uuid_str(m->vendor_id, uuid);
        fprintf(f, "  vendor-id:  %s\n", uuid);
    }
    if (m->has_class) {
        iomt_suit_uuid_str(m->class_id, uuid);
        fprintf(f, "  class-id:   %s\n", uuid);
    }
    if (m->has_digest) {
        iomt_hex(m->image_digest, IOMT_SHA256_LEN, hex);
        fprintf(f, "  image:      sha256 %s", hex);
        if (m->has_size)
            fprintf(f, ", %llu bytes", (unsigned long long)m->image_size);
        fputc('\n', f);
    }
    if (m->has_sbom) {
        iomt_hex(m->sbom_digest, IOMT_SHA256_LEN, hex);
        fprintf(f, "  sbom:       sha256 %s, %llu bytes\n", hex,
                (unsigned long long)m->sbom_size);
    }
    fprintf(f, "  signature:  %s\n", iomt_cose_alg_name(m->sig_alg));
    iomt_hex(m->manifest_digest, IOMT_SHA256_LEN, hex);
    fprintf(f, "  manifest:   sha256 %s\n", hex);
}

struct verify_opts {
    const char *key, *envelope, *image, *sbom, *vendor, *cls;
    uint64_t installed_seq;
    int have_installed;
};

static int parse_verify_args(int argc, char **argv, struct verify_opts *o)
{
    static const char usage[] =
        "verify --key PUB.pem ENVELOPE [--image FILE] [--installed-seq N]\n"
        "          [--sbom FILE] [--vendor NAME [--class NAME]]";
    static const struct option opts[] = {
        {"key", required_argument, NULL, 'k'},
        {"image", required_argument, NULL, 'i'},
        {"installed-seq", required_argument, NULL, 's'},
        {"sbom", required_argument, NULL, 'b'},
        {"vendor", required_argument, NULL, 'V'},
        {"class", required_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    memset(o, 0, sizeof(*o));
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'k':
            o->key = optarg;
            break;
        case 'i':
            o->image = optarg;
            break;
        case 's':
            if (parse_u64(optarg, &o->installed_seq) != 0) {
                usage_error("verify", usage,
                            "--installed-seq: not a whole number");
                return IOMT_EXIT_USAGE;
            }
            o->have_installed = 1;
            break;
        case 'b':
            o->sbom = optarg;
            break;
        case 'V':
            o->vendor = optarg;
            break;
        case 'C':
            o->cls = optarg;
            break;
        case 'h':
            printf("usage: iomt %s\n", usage);
            return -1;
        default:
            usage_error("verify", usage, NULL);
            return IOMT_EXIT_USAGE;
        }
    }
    if (o->key == NULL || optind != argc - 1 ||
        (o->cls != NULL && o->vendor == NULL)) {
        usage_error("verify", usage,
                    o->key == NULL ? "--key is required"
                                   : "exactly one ENVELOPE is required "
                                     "(--class needs --vendor)");
        return IOMT_EXIT_USAGE;
    }
    {
        const char *const names[] = {"--vendor", "--class"};
        const char *const values[] = {o->vendor, o->cls};

        if (check_texts("verify", usage, names, values, 2) != 0)
            return IOMT_EXIT_USAGE;
    }
    o->envelope = argv[optind];
    return IOMT_EXIT_OK;
}

/* Maps a library error to the exit code: unreadable files are usage
 * errors (2), everything about the release itself is a rejection (1). */
static int reject(const struct iomt_err *err)
{
    if (err->code == IOMT_E_IO) {
        fprintf(stderr, "iomt verify: %s\n", err->msg);
        return IOMT_EXIT_USAGE;
    }
    fprintf(stderr, "rejected: %s\n", err->msg);
    return IOMT_EXIT_REJECTED;
}

int cmd_verify(int argc, char **argv)
{
    struct verify_opts o;
    struct iomt_suit_manifest m;
    struct iomt_key *anchor = NULL;
    struct iomt_err err = {0};
    uint8_t *env = NULL;
    size_t env_len = 0;
    int rc;

    rc = parse_verify_args(argc, argv, &o);
    if (rc != IOMT_EXIT_OK)
        return rc < 0 ? IOMT_EXIT_OK : rc;
    /* A private key file is accepted: only its public half is used. */
    if (iomt_key_load(o.key, &anchor, &err) != IOMT_OK) {
        fprintf(stderr, "iomt verify: %s\n", err.msg);
        return IOMT_EXIT_USAGE;
    }
    rc = load_envelope("verify", o.envelope, &env, &env_len);
    if (rc != IOMT_EXIT_OK)
        goto out_free_key;

    rc = IOMT_EXIT_REJECTED;
    if (iomt_suit_verify(env, env_len, anchor, &m, &err) != IOMT_OK ||
        (o.have_installed &&
         iomt_suit_check_seq(&m, o.installed_seq, &err) != IOMT_OK) ||
        iomt_suit_check_identity(&m, o.vendor, o.cls, &err) != IOMT_OK ||
        (o.image != NULL &&
         iomt_suit_check_image(&m, o.image, &err) != IOMT_OK) ||
        (o.sbom != NULL && iomt_suit_check_sbom(&m, o.sbom, &err) != IOMT_OK)) {
        rc = reject(&err);
        goto out_free_env;
    }
    printf("accepted\n");
    print_manifest(stdout, &m);
    if (o.image != NULL)
        printf("  image file: %s matches digest and size\n", o.image);
    if (o.sbom != NULL)
        printf("  sbom file:  %s matches digest and size\n", o.sbom);
    rc = IOMT_EXIT_OK;
out_free_env:
    free(env);
out_free_key:
    iomt_key_free(anchor);
    return rc;
}

static json_t *hex_json(const uint8_t *p, size_t n)
{
    char hex[2 * IOMT_SHA256_LEN + 1];

    if (n > IOMT_SHA256_LEN)
        return json_null();
    iomt_hex(p, n, hex);
    return json_string(hex);
}

static json_t *manifest_json(const struct iomt_suit_manifest *m)
{
    json_t *o = json_object(), *part;
    char uuid[37];

    /* JSON integers are signed 64-bit here: larger values go as text. */
    if (m->seq > (uint64_t)INT64_MAX) {
        char seq[24];

        snprintf(seq, sizeof(seq), "%llu", (unsigned long long)m->seq);
        json_object_set_new(o, "seq", json_string(seq));
    } else {
        json_object_set_new(o, "seq", json_integer((json_int_t)m->seq));
    }
    json_object_set_new(o, "version",
                        m->version[0] ? json_string(m->version) : json_null());
    iomt_suit_uuid_str(m->vendor_id, uuid);
    json_object_set_new(o, "vendor_id",
                        m->has_vendor ? json_string(uuid) : json_null());
    iomt_suit_uuid_str(m->class_id, uuid);
    json_object_set_new(o, "class_id",
                        m->has_class ? json_string(uuid) : json_null());
    part = json_object();
    json_object_set_new(part, "digest_alg", json_string("sha-256"));
    json_object_set_new(part, "digest",
                        m->has_digest
                            ? hex_json(m->image_digest, IOMT_SHA256_LEN)
                            : json_null());
    json_object_set_new(part, "size",
                        m->has_size ? json_integer((json_int_t)m->image_size)
                                    : json_null());
    json_object_set_new(o, "image", part);
    if (m->has_sbom) {
        part = json_object();
        json_object_set_new(part, "digest_alg", json_string("sha-256"));
        json_object_set_new(part, "digest",
                            hex_json(m->sbom_digest, IOMT_SHA256_LEN));
        json_object_set_new(part, "size",
                            json_integer((json_int_t)m->sbom_size));
        json_object_set_new(o, "sbom", part);
    } else {
        json_object_set_new(o, "sbom", json_null());
    }
    json_object_set_new(o, "signature_alg",
                        json_string(iomt_cose_alg_name(m->sig_alg)));
    json_object_set_new(o, "manifest_digest",
                        hex_json(m->manifest_digest, IOMT_SHA256_LEN));
    json_object_set_new(o, "signature_checked", json_false());
    return o;
}

int cmd_inspect(int argc, char **argv)
{
    static const char usage[] = "inspect [--json] ENVELOPE";
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct iomt_suit_manifest m;
    struct iomt_err err = {0};
    uint8_t *env = NULL;
    size_t env_len = 0;
    json_t *doc;
    char *text;
    int as_json = 0, c, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            as_json = 1;
            break;
        case 'h':
            printf("usage: iomt %s\n", usage);
            return IOMT_EXIT_OK;
        default:
            usage_error("inspect", usage, NULL);
            return IOMT_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        usage_error("inspect", usage, "exactly one ENVELOPE is required");
        return IOMT_EXIT_USAGE;
    }
    rc = load_envelope("inspect", argv[optind], &env, &env_len);
    if (rc != IOMT_EXIT_OK)
        return rc;
    if (iomt_suit_parse(env, env_len, &m, &err) != IOMT_OK) {
        fprintf(stderr, "rejected: %s\n", err.msg);
        rc = IOMT_EXIT_REJECTED;
        goto out_free_env;
    }
    if (!as_json) {
        printf("SUIT envelope %s (%zu bytes; signature not checked, use "
               "iomt verify)\n",
               argv[optind], env_len);
        print_manifest(stdout, &m);
        rc = IOMT_EXIT_OK;
        goto out_free_env;
    }
    doc = manifest_json(&m);
    text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(doc);
    if (text == NULL) {
        fprintf(stderr, "iomt inspect: JSON encoding failed\n");
        rc = IOMT_EXIT_INTERNAL;
        goto out_free_env;
    }
    printf("%s\n", text);
    free(text);
    rc = IOMT_EXIT_OK;
out_free_env:
    free(env);
    return rc;
}
