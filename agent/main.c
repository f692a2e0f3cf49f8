/*
 * iomt-agent: argument parsing and dispatch. Exit codes: 0 done (installed
 * or nothing to do), 1 rejected (a release or factory image failed a
 * check, or no slot holds a verified image), 2 bad usage, unreadable
 * input or a state directory that is not (or already) enrolled, 3
 * internal, enrolment or network failure, or a malformed hub answer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "agent.h"

struct args {
    const char *state, *hub, *ca, *anchor, *device_id, *token, *token_file;
    const char *vendor, *class_name, *image, *envelope;
    const char *fleet, *dir, *results, *count, *concurrency, *cycles;
    const char *count_option; /* which spelling gave the count */
    int quiet, json, help;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage:\n"
            "  iomt-agent enrol --state DIR --hub URL --ca CA.pem\n"
            "      --trust-anchor PUB.pem --device-id ID\n"
            "      (--token TOKEN | --token-file FILE) --vendor NAME\n"
            "      --class NAME --factory-image FILE --factory-envelope ENV\n"
            "  iomt-agent run --state DIR --hub URL --ca CA.pem\n"
            "      --trust-anchor PUB.pem [--quiet]\n"
            "  iomt-agent status --state DIR [--json]\n"
            "  iomt-agent simulate --fleet FLEET.tsv --hub URL --ca CA.pem\n"
            "      --trust-anchor PUB.pem --dir DIR [--count N]\n"
            "      [--concurrency K] [--cycles C] [--results FILE] "
            "[--quiet]\n"
            "  iomt-agent --simulate N ...   (same as simulate --count N)\n"
            "  iomt-agent --help\n"
            "FLEET.tsv: device_id vendor class token factory_image "
            "factory_envelope\n"
            "Device IDs: 1..64 of [A-Za-z0-9._-], not starting with '.' "
            "or '-'.\n"
            "enrol needs a new (or empty) --state directory and leaves "
            "nothing behind\nwhen it fails.\n"
            "Exit: 0 done, 1 rejected (release or factory image failed a "
            "check, or\nno verified image to boot), 2 bad usage, "
            "unreadable input or a state\ndirectory that is not (or "
            "already) enrolled, 3 enrolment, network or\ninternal "
            "failure, or a malformed hub answer.\n");
}

static int parse_args(int argc, char **argv, struct args *a)
{
    static const struct {
        const char *name;
        size_t off;
    } opts[] = {
        {"--state", offsetof(struct args, state)},
        {"--hub", offsetof(struct args, hub)},
        {"--ca", offsetof(struct args, ca)},
        {"--trust-anchor", offsetof(struct args, anchor)},
        {"--device-id", offsetof(struct args, device_id)},
        {"--token", offsetof(struct args, token)},
        {"--token-file", offsetof(struct args, token_file)},
        {"--vendor", offsetof(struct args, vendor)},
        {"--class", offsetof(struct args, class_name)},
        {"--factory-image", offsetof(struct args, image)},
        {"--factory-envelope", offsetof(struct args, envelope)},
        {"--fleet", offsetof(struct args, fleet)},
        {"--dir", offsetof(struct args, dir)},
        {"--results", offsetof(struct args, results)},
        {"--count", offsetof(struct args, count)},
        {"--simulate", offsetof(struct args, count)},
        {"--concurrency", offsetof(struct args, concurrency)},
        {"--cycles", offsetof(struct args, cycles)},
    };

    for (int i = 0; i < argc; i++) {
        size_t k;

        if (strcmp(argv[i], "--quiet") == 0) {
            a->quiet = 1;
            continue;
        }
        if (strcmp(argv[i], "--json") == 0) {
            a->json = 1;
            continue;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            a->help = 1;
            continue;
        }
        for (k = 0; k < sizeof(opts) / sizeof(opts[0]); k++)
            if (strcmp(argv[i], opts[k].name) == 0)
                break;
        if (k == sizeof(opts) / sizeof(opts[0]) || i + 1 >= argc) {
            fprintf(stderr, "iomt-agent: unknown or incomplete option %s\n",
                    argv[i]);
            return -1;
        }
        if (opts[k].off == offsetof(struct args, count))
            a->count_option = opts[k].name;
        *(const char **)((char *)a + opts[k].off) = argv[++i];
    }
    return 0;
}

static int need(const char *value, const char *name)
{
    if (value != NULL && value[0] != '\0')
        return 0;
    fprintf(stderr, "iomt-agent: %s %s\n", name,
            value == NULL ? "is required" : "must not be empty");
    return -1;
}

/* The hub URL and the fleet CA, checked before any work is done. */
static int need_hub(const struct args *a)
{
    char reason[AGENT_REASON_MAX];

    if (need(a->hub, "--hub") || need(a->ca, "--ca"))
        return -1;
    if (agent_check_hub(a->hub, reason, sizeof(reason)) != 0) {
        fprintf(stderr, "iomt-agent: %s\n", reason);
        return -1;
    }
    if (access(a->ca, R_OK) != 0) {
        fprintf(stderr, "iomt-agent: --ca: cannot read %s: %s\n", a->ca,
                strerror(errno));
        return -1;
    }
    return 0;
}

static int parse_uint(const char *text, unsigned lo, unsigned hi, unsigned *out,
                      const char *name)
{
    char *end = NULL;
    unsigned long v;

    if (text == NULL)
        return 0;
    v = strtoul(text, &end, 10);
    if (end == text || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "iomt-agent: %s must be %u..%u\n", name, lo, hi);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

static int load_anchor(const char *path, struct iomt_key **key)
{
    struct iomt_err err = {0};

    if (iomt_key_load(path, key, &err) != IOMT_OK) {
        fprintf(stderr, "iomt-agent: trust anchor: %s\n", err.msg);
        return -1;
    }
    return 0;
}

/*
 * Reads the token (the first line) from a file so it never shows in the
 * process list. Prints why on failure.
 */
static char *read_token(const char *path)
{
    char buf[AGENT_TOKEN_MAX + 64];
    FILE *f = fopen(path, "r");
    char *tok = NULL;
    size_t n;

    if (f == NULL) {
        fprintf(stderr, "iomt-agent: --token-file: cannot read %s: %s\n", path,
                strerror(errno));
        return NULL;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    if (buf[0] == '\0')
        fprintf(stderr, "iomt-agent: --token-file: %s is empty\n", path);
    else if (!agent_token_ok(buf))
        fprintf(stderr,
                "iomt-agent: --token-file: the token in %s is not 1..%d "
                "printable ASCII characters without spaces\n",
                path, AGENT_TOKEN_MAX);
    else if ((tok = strdup(buf)) == NULL)
        fprintf(stderr, "iomt-agent: out of memory\n");
    iomt_wipe(buf, sizeof(buf));
    return tok;
}

static int cmd_enrol(const struct args *a)
{
    struct device_opts o = {0};
    struct enrol_opts e = {0};
    struct iomt_key *anchor = NULL;
    char reason[AGENT_REASON_MAX];
    char *token = NULL;
    int rc;

    if (need(a->state, "--state") || need(a->anchor, "--trust-anchor") ||
        need(a->device_id, "--device-id") || need(a->vendor, "--vendor") ||
        need(a->class_name, "--class") || need(a->image, "--factory-image") ||
        need(a->envelope, "--factory-envelope") || need_hub(a))
        return AGENT_EXIT_USAGE;
    if (a->token != NULL && a->token_file != NULL) {
        fprintf(stderr, "iomt-agent: --token and --token-file: give one\n");
        return AGENT_EXIT_USAGE;
    }
    if (a->token_file == NULL && need(a->token, "--token"))
        return AGENT_EXIT_USAGE;
    if (a->token_file != NULL && (token = read_token(a->token_file)) == NULL)
        return AGENT_EXIT_USAGE;
    if (load_anchor(a->anchor, &anchor) != 0) {
        free(token);
        return AGENT_EXIT_USAGE;
    }
    o.state_dir = a->state;
    o.hub_url = a->hub;
    o.ca_path = a->ca;
    o.trust_anchor = anchor;
    o.quiet = a->quiet;
    e.device_id = a->device_id;
    e.token = token ? token : a->token;
    e.vendor = a->vendor;
    e.class_name = a->class_name;
    e.factory_image = a->image;
    e.factory_envelope = a->envelope;
    rc = device_enrol(&o, &e, reason, sizeof(reason));
    if (token != NULL) {
        iomt_wipe(token, strlen(token));
        free(token);
    }
    iomt_key_free(anchor);
    if (rc != 0) {
        fprintf(stderr, "iomt-agent: %s\n", reason);
        return rc;
    }
    if (!a->quiet)
        printf("enrolled %s\n", a->device_id);
    return AGENT_EXIT_OK;
}

static int cmd_run(const struct args *a)
{
    struct device_opts o = {0};
    struct cycle_outcome out;
    struct iomt_key *anchor = NULL;
    const char *missing;

    if (need(a->state, "--state") || need(a->anchor, "--trust-anchor") ||
        need_hub(a))
        return AGENT_EXIT_USAGE;
    missing = device_missing(a->state, NULL);
    if (missing != NULL) {
        fprintf(stderr, "iomt-agent: --state: %s: %s\n", a->state, missing);
        return AGENT_EXIT_USAGE;
    }
    if (load_anchor(a->anchor, &anchor) != 0)
        return AGENT_EXIT_USAGE;
    o.state_dir = a->state;
    o.hub_url = a->hub;
    o.ca_path = a->ca;
    o.trust_anchor = anchor;
    o.quiet = a->quiet;
    device_cycle(&o, &out);
    iomt_key_free(anchor);
    /* Quiet means silent on success; a refusal or failure is still told. */
    if (!a->quiet ||
        (out.result != CYCLE_INSTALLED && out.result != CYCLE_NO_UPDATE))
        printf("result=%s old_version=%s old_seq=%llu new_version=%s "
               "new_seq=%llu reason=\"%s\"\n",
               cycle_result_name(out.result), out.old_version,
               (unsigned long long)out.old_seq, out.new_version,
               (unsigned long long)out.new_seq, out.reason);
    switch (out.result) {
    case CYCLE_INSTALLED:
    case CYCLE_NO_UPDATE:
        return AGENT_EXIT_OK;
    case CYCLE_REJECTED:
        return AGENT_EXIT_REJECTED;
    default:
        return AGENT_EXIT_INTERNAL;
    }
}

static int cmd_simulate(const struct args *a)
{
    struct sim_opts o = {0};

    if (need(a->fleet, "--fleet") || need(a->anchor, "--trust-anchor") ||
        need(a->dir, "--dir") || need_hub(a))
        return AGENT_EXIT_USAGE;
    o.concurrency = 8;
    o.cycles = 1;
    o.count_option = a->count_option ? a->count_option : "--count";
    if (parse_uint(a->count, 1, 1000000, &o.count, o.count_option) ||
        parse_uint(a->concurrency, 1, 1024, &o.concurrency, "--concurrency") ||
        parse_uint(a->cycles, 1, 100, &o.cycles, "--cycles"))
        return AGENT_EXIT_USAGE;
    o.fleet_path = a->fleet;
    o.hub_url = a->hub;
    o.ca_path = a->ca;
    o.anchor_path = a->anchor;
    o.dir = a->dir;
    o.results_path = a->results;
    o.quiet = a->quiet;
    return simulate_fleet(&o);
}

int main(int argc, char **argv)
{
    struct args a;
    const char *cmd;
    int rc;

    memset(&a, 0, sizeof(a));
    if (argc < 2) {
        usage(stderr);
        return AGENT_EXIT_USAGE;
    }
    cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
        strcmp(cmd, "help") == 0) {
        usage(stdout);
        return AGENT_EXIT_OK;
    }
    /* "--simulate N ..." is the simulate command with a device count. */
    if (strcmp(cmd, "--simulate") == 0) {
        cmd = "simulate";
        rc = parse_args(argc - 1, argv + 1, &a);
    } else {
        rc = parse_args(argc - 2, argv + 2, &a);
    }
    if (rc != 0) {
        usage(stderr);
        return AGENT_EXIT_USAGE;
    }
    if (a.help) {
        usage(stdout);
        return AGENT_EXIT_OK;
    }
    /* Once, before any thread exists: libcurl's global set-up. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return AGENT_EXIT_INTERNAL;
    if (strcmp(cmd, "enrol") == 0 || strcmp(cmd, "enroll") == 0)
        rc = cmd_enrol(&a);
    else if (strcmp(cmd, "run") == 0)
        rc = cmd_run(&a);
    else if (strcmp(cmd, "status") == 0)
        rc = need(a.state, "--state") ? AGENT_EXIT_USAGE
                                      : device_status(a.state, a.json);
    else if (strcmp(cmd, "simulate") == 0)
        rc = cmd_simulate(&a);
    else {
        fprintf(stderr, "iomt-agent: unknown command %s\n", cmd);
        usage(stderr);
        rc = AGENT_EXIT_USAGE;
    }
    curl_global_cleanup();
    return rc;
}
