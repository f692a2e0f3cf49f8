/*
 * iomt: the release engineer's and operator's command line. Dispatches to
 * one handler per subcommand; each handler parses its own options.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;
};

static const struct command commands[] = {
    {"keygen", cmd_keygen, "keygen [--alg es256|ed25519] [--force] -o KEY.pem"},
    {"sign", cmd_sign,
     "sign --key KEY.pem --image FILE --seq N --vendor NAME --class NAME\n"
     "          [--version TEXT] [--sbom FILE] -o ENVELOPE"},
    {"verify", cmd_verify,
     "verify --key PUB.pem ENVELOPE [--image FILE] [--installed-seq N]\n"
     "          [--sbom FILE] [--vendor NAME [--class NAME]]"},
    {"inspect", cmd_inspect, "inspect [--json] ENVELOPE"},
    {"ca", cmd_ca, "ca init|issue ... (iomt ca --help)"},
};

static void usage(FILE *out)
{
    size_t i;

    fprintf(out, "usage: iomt COMMAND [options]\n\ncommands:\n");
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  iomt %s\n", commands[i].usage);
    fprintf(out, "\nexit codes: 0 ok, 1 rejected, 2 bad usage or input, "
                 "3 internal error\n");
}

int main(int argc, char **argv)
{
    size_t i;

    if (argc < 2) {
        usage(stderr);
        return IOMT_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return IOMT_EXIT_OK;
    }
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "iomt: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return IOMT_EXIT_USAGE;
}
