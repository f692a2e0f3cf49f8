/*
 * iomt-agent: argument parsing and dispatch. Exit codes: 0 done (installed
 * or nothing to do), 1 release rejected, 2 bad usage or unreadable input,
 * 3 internal, enrolment or network failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "agent.h"

struct args {
    const char *state, *hub, *ca, *anchor, *device_id, *token, *token_file;
    const char *vendor, *class_name, *image, *envelope;
    const char *fleet, *dir, *results, *count, *concurrency, *cycles;
    int quiet, json;
};

static void usage(void)
{
    fprintf(stderr,
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
            "FLEET.tsv: device_id vendor class token factory_image "
            "factory_envelope\n");
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
        for (k = 0; k < sizeof(opts) / sizeof(opts[0]); k++)
            if (strcmp(argv[i], opts[k].name) == 0)
                break;
        if (k == sizeof(opts) / sizeof(opts[0]) || i + 1 >= argc) {
            fprintf(stderr, "iomt-agent: unknown or incomplete option %s\n",
                    argv[i]);
            return -1;
        }
        *(const char **)((char *)a + opts[k].off) = argv[++i];
    }
    return 0;
}

static int need(const char *value, const char *name)
{
    if (value != NULL && value[0] != '\0')
        return 0;
    fprintf(stderr, "iomt-agent: %s is required\n", name);
    return -1;
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

/* Reads the token from a file so it never shows in the process list. */
static char *read_token(const char *path)
{
    char buf[256];
    FILE *f = fopen(path, "r");
    char *tok = NULL;

    if (f == NULL)
        return NULL;
    if (fgets(buf, sizeof(buf), f) != NULL) {
        buf[strcspn(buf, "\r\n")] = '\0';
        tok = strdup(buf);
    }
    fclose(f);
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

    if (need(a->state, "--state") || need(a->hub, "--hub") ||
        need(a->ca, "--ca") || need(a->anchor, "--trust-anchor") ||
        need(a->device_id, "--device-id"))
        return AGENT_EXIT_USAGE;
    if (a->token_file != NULL && (token = read_token(a->token_file)) == NULL) {
        fprintf(stderr, "iomt-agent: cannot read %s\n", a->token_file);
        return AGENT_EXIT_USAGE;
    }
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
        return AGENT_EXIT_INTERNAL;
    }
    printf("enrolled %s\n", a->device_id);
    return AGENT_EXIT_OK;
}

static int cmd_run(const struct args *a)
{
    struct device_opts o = {0};
    struct cycle_outcome out;
    struct iomt_key *anchor = NULL;

    if (need(a->state, "--state") || need(a->hub, "--hub") ||
        need(a->ca, "--ca") || need(a->anchor, "--trust-anchor"))
        return AGENT_EXIT_USAGE;
    if (load_anchor(a->anchor, &anchor) != 0)
        return AGENT_EXIT_USAGE;
    o.state_dir = a->state;
    o.hub_url = a->hub;
    o.ca_path = a->ca;
    o.trust_anchor = anchor;
    o.quiet = a->quiet;
    device_cycle(&o, &out);
    iomt_key_free(anchor);
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

    if (need(a->fleet, "--fleet") || need(a->hub, "--hub") ||
        need(a->ca, "--ca") || need(a->anchor, "--trust-anchor") ||
        need(a->dir, "--dir"))
        return AGENT_EXIT_USAGE;
    o.concurrency = 8;
    o.cycles = 1;
    if (parse_uint(a->count, 1, 1000000, &o.count, "--count") ||
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
        usage();
        return AGENT_EXIT_USAGE;
    }
    cmd = argv[1];
    /* "--simulate N ..." is the simulate command with a device count. */
    if (strcmp(cmd, "--simulate") == 0) {
        cmd = "simulate";
        rc = parse_args(argc - 1, argv + 1, &a);
    } else {
        rc = parse_args(argc - 2, argv + 2, &a);
    }
    if (rc != 0) {
        usage();
        return AGENT_EXIT_USAGE;
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
        usage();
        rc = AGENT_EXIT_USAGE;
    }
    curl_global_cleanup();
    return rc;
}
