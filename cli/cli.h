/*
 * The iomt command: one file per subcommand family. Exit codes are shared:
 * 0 success / accepted, 1 rejected (verification failed), 2 bad usage or
 * unreadable input, 3 internal failure.
 */
#ifndef IOMT_CLI_H
#define IOMT_CLI_H

#define IOMT_EXIT_OK       0
#define IOMT_EXIT_REJECTED 1
#define IOMT_EXIT_USAGE    2
#define IOMT_EXIT_INTERNAL 3

/* cmd_firmware.c */
int cmd_keygen(int argc, char **argv);
int cmd_sign(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_inspect(int argc, char **argv);

/* cmd_ca.c */
int cmd_ca(int argc, char **argv);

#endif
