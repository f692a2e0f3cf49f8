/*
 * iomt ca: the private fleet CA. `init` makes the CA pair; `issue` makes a
 * key and certificate for an operator (role in OU) or for the hub itself.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "iomt/pki.h"

#define CA_DAYS_DEFAULT    3650
#define ISSUE_DAYS_DEFAULT 365

static void ca_usage(FILE *out)
{
    fprintf(out, "usage: iomt ca init --dir CA_DIR [--org NAME] [--days N]\n"
                 "       iomt ca issue --dir CA_DIR --name NAME --role ROLE "
                 "-o PREFIX [--days N] [--force]\n"
                 "ROLE: admin|release|security|clinical|hub|device\n"
                 "init writes CA_DIR/ca.key.pem (0600) and CA_DIR/ca.pem;\n"
                 "issue writes PREFIX.key.pem (0600) and PREFIX.pem, and keeps "
                 "existing ones unless --force\n");
}

static int parse_days(const char *text, int *days)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != 0 || v <= 0 || v > 36500)
        return -1;
    *days = (int)v;
    return 0;
}

static int ca_paths(const char *dir, char *key, char *cert)
{
    if (snprintf(key, PATH_MAX, "%s/ca.key.pem", dir) >= PATH_MAX ||
        snprintf(cert, PATH_MAX, "%s/ca.pem", dir) >= PATH_MAX)
        return -1;
    return 0;
}

static int exit_for(int rc)
{
    if (rc == IOMT_E_INPUT || rc == IOMT_E_IO)
        return IOMT_EXIT_USAGE;
    if (rc == IOMT_E_VERIFY || rc == IOMT_E_AUTH)
        return IOMT_EXIT_REJECTED;
    return IOMT_EXIT_INTERNAL;
}

/* Reports a bad option by name; returns the usage exit status. */
static int bad_option(const char *cmd, const char *opt, const char *why)
{
    fprintf(stderr, "iomt ca %s: %s: %s\n", cmd, opt, why);
    return IOMT_EXIT_USAGE;
}

static int is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

/* Matches "--opt VALUE"; 1 and *val set, -1 when the value is missing. */
static int take(int argc, char **argv, int *i, const char *opt,
                const char **val)
{
    if (strcmp(argv[*i], opt) != 0)
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *val = argv[++*i];
    return 1;
}

static int ca_init(int argc, char **argv)
{
    const char *dir = NULL, *org = "iomtsec", *days_text = NULL;
    char key[PATH_MAX], cert[PATH_MAX];
    struct iomt_err err = {0};
    struct stat st;
    int days = CA_DAYS_DEFAULT, i, rc, t;

    for (i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            ca_usage(stdout);
            return IOMT_EXIT_OK;
        }
        if ((t = take(argc, argv, &i, "--dir", &dir)) == 0 &&
            (t = take(argc, argv, &i, "--org", &org)) == 0 &&
            (t = take(argc, argv, &i, "--days", &days_text)) == 0)
            return bad_option("init", argv[i], "unknown option");
        if (t < 0)
            return bad_option("init", argv[i], "needs a value");
    }
    if (dir == NULL)
        return bad_option("init", "--dir", "required");
    if (days_text != NULL && parse_days(days_text, &days) != 0)
        return bad_option("init", "--days", "a number in 1..36500");
    /* Every check comes before mkdir: a refused init leaves nothing. */
    if (org[0] == 0 || strlen(org) > IOMT_NAME_MAX)
        return bad_option("init", "--org", "1..64 characters");
    for (const char *c = org; *c != '\0'; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return bad_option("init", "--org", "no control characters");
    }
    if (ca_paths(dir, key, cert) != 0)
        return bad_option("init", "--dir", "path too long");
    /* Never overwrite a CA: every certificate in the fleet hangs on it. */
    if (stat(key, &st) == 0 || stat(cert, &st) == 0) {
        fprintf(stderr, "iomt ca init: %s already holds a CA\n", dir);
        return IOMT_EXIT_USAGE;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "iomt ca init: --dir: %s: %s\n", dir, strerror(errno));
        return IOMT_EXIT_USAGE;
    }
    rc = iomt_pki_ca_init(key, cert, org, days, &err);
    if (rc != IOMT_OK) {
        fprintf(stderr, "iomt ca init: %s\n", err.msg);
        return exit_for(rc);
    }
    printf("CA written: %s (key %s)\n", cert, key);
    return IOMT_EXIT_OK;
}

struct issue_opts {
    const char *dir, *name, *role, *prefix, *days_text;
    int days, force;
};

/* Parses and checks issue's options; returns -1 after naming the bad
 * one, 1 after printing help, 0 when all is well. */
static int issue_parse(int argc, char **argv, struct issue_opts *o)
{
    int i, t;

    o->days = ISSUE_DAYS_DEFAULT;
    for (i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            ca_usage(stdout);
            return 1;
        }
        if (strcmp(argv[i], "--force") == 0) {
            o->force = 1;
            continue;
        }
        if ((t = take(argc, argv, &i, "--dir", &o->dir)) == 0 &&
            (t = take(argc, argv, &i, "--name", &o->name)) == 0 &&
            (t = take(argc, argv, &i, "--role", &o->role)) == 0 &&
            (t = take(argc, argv, &i, "-o", &o->prefix)) == 0 &&
            (t = take(argc, argv, &i, "--days", &o->days_text)) == 0)
            return bad_option("issue", argv[i], "unknown option"), -1;
        if (t < 0)
            return bad_option("issue", argv[i], "needs a value"), -1;
    }
    if (o->dir == NULL || o->name == NULL || o->role == NULL ||
        o->prefix == NULL)
        return bad_option("issue",
                          o->dir == NULL    ? "--dir"
                          : o->name == NULL ? "--name"
                          : o->role == NULL ? "--role"
                                            : "-o",
                          "required"),
               -1;
    if (o->prefix[0] == '\0')
        return bad_option("issue", "-o", "empty prefix"), -1;
    if (o->days_text != NULL && parse_days(o->days_text, &o->days) != 0)
        return bad_option("issue", "--days", "a number in 1..36500"), -1;
    if (!iomt_pki_name_ok(o->name))
        return bad_option("issue", "--name",
                          "1..64 of [A-Za-z0-9._-], not starting with "
                          "'.' or '-'"),
               -1;
    if (!iomt_pki_role_ok(o->role))
        return bad_option("issue", "--role",
                          "admin|release|security|clinical|hub|device"),
               -1;
    return 0;
}

/*
 * Writes the key and the certificate as a pair: both are staged under
 * ".new" names and renamed into place only once both are written, so a
 * failure never leaves a key without its certificate (or the reverse).
 */
static int save_pair(const struct iomt_key *key, const char *key_path,
                     const char *cert_path, const char *cert, size_t cert_len,
                     struct iomt_err *err)
{
    char key_tmp[PATH_MAX], cert_tmp[PATH_MAX];
    int rc;

    if (snprintf(key_tmp, sizeof(key_tmp), "%s.new", key_path) >=
            (int)sizeof(key_tmp) ||
        snprintf(cert_tmp, sizeof(cert_tmp), "%s.new", cert_path) >=
            (int)sizeof(cert_tmp))
        return iomt_err_set(err, IOMT_E_INPUT, "-o: path too long");
    rc = iomt_key_save(key, key_tmp, NULL, err);
    if (rc == IOMT_OK)
        rc = iomt_pki_save_pem(cert_tmp, cert, cert_len, err);
    if (rc == IOMT_OK && rename(cert_tmp, cert_path) != 0)
        rc = iomt_err_set(err, IOMT_E_IO, "%s: %s", cert_path, strerror(errno));
    if (rc == IOMT_OK && rename(key_tmp, key_path) != 0) {
        rc = iomt_err_set(err, IOMT_E_IO, "%s: %s", key_path, strerror(errno));
        unlink(cert_path);
    }
    if (rc != IOMT_OK) {
        unlink(key_tmp);
        unlink(cert_tmp);
    }
    return rc;
}

/* Same file: same device and inode, for paths that may not exist yet. */
static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;

    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/*
 * The CA's own files are never a target, --force or not: one mistyped -o
 * would otherwise replace the fleet's root of trust with a leaf. Any other
 * existing key or certificate is kept unless --force says otherwise.
 */
static int check_targets(const struct issue_opts *o, const char *key_path,
                         const char *cert_path, const char *ca_key,
                         const char *ca_cert)
{
    struct stat st;

    if (same_file(key_path, ca_key) || same_file(key_path, ca_cert) ||
        same_file(cert_path, ca_key) || same_file(cert_path, ca_cert))
        return bad_option("issue", "-o", "would overwrite the CA itself");
    if (!o->force && (stat(key_path, &st) == 0 || stat(cert_path, &st) == 0)) {
        fprintf(stderr,
                "iomt ca issue: -o: %s or %s exists; --force replaces it\n",
                key_path, cert_path);
        return IOMT_EXIT_USAGE;
    }
    return IOMT_EXIT_OK;
}

static int ca_issue(int argc, char **argv)
{
    struct issue_opts o = {0};
    char key_path[PATH_MAX], cert_path[PATH_MAX];
    char ca_key[PATH_MAX], ca_cert[PATH_MAX];
    struct iomt_key *key = NULL;
    struct iomt_err err = {0};
    char *csr = NULL, *cert = NULL;
    size_t csr_len = 0, cert_len = 0;
    int rc;

    rc = issue_parse(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? IOMT_EXIT_OK : IOMT_EXIT_USAGE;
    if (ca_paths(o.dir, ca_key, ca_cert) != 0)
        return bad_option("issue", "--dir", "path too long");
    if (snprintf(key_path, sizeof(key_path), "%s.key.pem", o.prefix) >=
            (int)sizeof(key_path) ||
        snprintf(cert_path, sizeof(cert_path), "%s.pem", o.prefix) >=
            (int)sizeof(cert_path))
        return bad_option("issue", "-o", "path too long");
    rc = check_targets(&o, key_path, cert_path, ca_key, ca_cert);
    if (rc != IOMT_EXIT_OK)
        return rc;
    rc = iomt_key_generate(IOMT_ALG_ES256, &key, &err);
    if (rc == IOMT_OK)
        rc = iomt_pki_make_csr(key, o.name, o.role, &csr, &csr_len, &err);
    if (rc == IOMT_OK)
        rc = iomt_pki_issue(ca_key, ca_cert, (const uint8_t *)csr, csr_len,
                            o.name, o.role, o.days, &cert, &cert_len, &err);
    if (rc == IOMT_OK)
        rc = save_pair(key, key_path, cert_path, cert, cert_len, &err);
    if (rc != IOMT_OK) {
        fprintf(stderr, "iomt ca issue: %s\n", err.msg);
        rc = exit_for(rc);
    } else {
        printf("issued %s (role %s): %s, key %s\n", o.name, o.role, cert_path,
               key_path);
        rc = IOMT_EXIT_OK;
    }
    free(cert);
    free(csr);
    iomt_key_free(key);
    return rc;
}

int cmd_ca(int argc, char **argv)
{
    if (argc < 2) {
        ca_usage(stderr);
        return IOMT_EXIT_USAGE;
    }
    if (strcmp(argv[1], "init") == 0)
        return ca_init(argc - 1, argv + 1);
    if (strcmp(argv[1], "issue") == 0)
        return ca_issue(argc - 1, argv + 1);
    if (is_help(argv[1])) {
        ca_usage(stdout);
        return IOMT_EXIT_OK;
    }
    fprintf(stderr, "iomt ca: %s: unknown command\n", argv[1]);
    ca_usage(stderr);
    return IOMT_EXIT_USAGE;
}
