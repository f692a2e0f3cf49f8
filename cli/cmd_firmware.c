/* Placeholder until the module lands. */
#include <stdio.h>
#include "cli.h"
int cmd_keygen(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "not built yet\n");
    return IOMT_EXIT_INTERNAL;
}
int cmd_sign(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "not built yet\n");
    return IOMT_EXIT_INTERNAL;
}
int cmd_verify(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "not built yet\n");
    return IOMT_EXIT_INTERNAL;
}
int cmd_inspect(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "not built yet\n");
    return IOMT_EXIT_INTERNAL;
}
