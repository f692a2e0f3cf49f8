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

#include "cli.h"
#include "iomt/pki.h"

#define CA_DAYS_DEFAULT    3650
#define ISSUE_DAYS_DEFAULT 365

static void ca_usage(FILE *out)
{
    fprintf(out, "usage: iomt ca init --dir CA_DIR [--org NAME] [--days N]\n"
                 "       iomt ca issue --dir CA_DIR --name NAME --role ROLE "
                 "-o PREFIX [--days N]\n"
                 "ROLE: admin|release|security|clinical|hub|device\n"
                 "init writes CA_DIR/ca.key.pem (0600) and CA_DIR/ca.pem;\n"
                 "issue writes PREFIX.key.pem (0600) and PREFIX.pem\n");
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

static int ca_init(int argc, char **argv)
{
    const char *dir = NULL, *org = "iomtsec";
    char key[PATH_MAX], cert[PATH_MAX];
    struct iomt_err err = {0};
    struct stat st;
    int days = CA_DAYS_DEFAULT, i, rc;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (strcmp(argv[i], "--org") == 0 && i + 1 < argc)
            org = argv[++i];
        else if (strcmp(argv[i], "--days") == 0 && i + 1 < argc) {
            if (parse_days(argv[++i], &days) != 0) {
                fprintf(stderr, "iomt ca init: --days: 1..36500\n");
                return IOMT_EXIT_USAGE;
            }
        } else {
            ca_usage(stderr);
            return IOMT_EXIT_USAGE;
        }
    }
    if (dir == NULL) {
        ca_usage(stderr);
        return IOMT_EXIT_USAGE;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "iomt ca init: %s: %s\n", dir, strerror(errno));
        return IOMT_EXIT_USAGE;
    }
    if (ca_paths(dir, key, cert) != 0) {
        fprintf(stderr, "iomt ca init: --dir: path too long\n");
        return IOMT_EXIT_USAGE;
    }
    /* Never overwrite a CA: every certificate in the fleet hangs on it. */
    if (stat(key, &st) == 0 || stat(cert, &st) == 0) {
        fprintf(stderr, "iomt ca init: %s already holds a CA\n", dir);
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
    const char *dir, *name, *role, *prefix;
    int days;
};

static int issue_parse(int argc, char **argv, struct issue_opts *o)
{
    int i;

    o->days = ISSUE_DAYS_DEFAULT;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            o->dir = argv[++i];
        else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
            o->name = argv[++i];
        else if (strcmp(argv[i], "--role") == 0 && i + 1 < argc)
            o->role = argv[++i];
        else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc)
            o->prefix = argv[++i];
        else if (strcmp(argv[i], "--days") == 0 && i + 1 < argc) {
            if (parse_days(argv[++i], &o->days) != 0)
                return -1;
        } else
            return -1;
    }
    return o->dir && o->name && o->role && o->prefix ? 0 : -1;
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

    if (issue_parse(argc, argv, &o) != 0) {
        ca_usage(stderr);
        return IOMT_EXIT_USAGE;
    }
    if (!iomt_pki_name_ok(o.name) || !iomt_pki_role_ok(o.role)) {
        fprintf(stderr,
                "iomt ca issue: --name must be 1..%d of "
                "[A-Za-z0-9._-], --role a known role\n",
                IOMT_NAME_MAX);
        return IOMT_EXIT_USAGE;
    }
    if (ca_paths(o.dir, ca_key, ca_cert) != 0 ||
        snprintf(key_path, sizeof(key_path), "%s.key.pem", o.prefix) >=
            (int)sizeof(key_path) ||
        snprintf(cert_path, sizeof(cert_path), "%s.pem", o.prefix) >=
            (int)sizeof(cert_path)) {
        fprintf(stderr, "iomt ca issue: path too long\n");
        return IOMT_EXIT_USAGE;
    }
    rc = iomt_key_generate(IOMT_ALG_ES256, &key, &err);
    if (rc == IOMT_OK)
        rc = iomt_pki_make_csr(key, o.name, o.role, &csr, &csr_len, &err);
    if (rc == IOMT_OK)
        rc = iomt_pki_issue(ca_key, ca_cert, (const uint8_t *)csr, csr_len,
                            o.name, o.role, o.days, &cert, &cert_len, &err);
    if (rc == IOMT_OK)
        rc = iomt_key_save(key, key_path, NULL, &err);
    if (rc == IOMT_OK)
        rc = iomt_pki_save_pem(cert_path, cert, cert_len, &err);
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
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        ca_usage(stdout);
        return IOMT_EXIT_OK;
    }
    ca_usage(stderr);
    return IOMT_EXIT_USAGE;
}
