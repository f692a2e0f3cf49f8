/* Placeholder until the module lands. */
#include <stdio.h>
#include "cli.h"
int cmd_ca(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "not built yet\n");
    return IOMT_EXIT_INTERNAL;
}
