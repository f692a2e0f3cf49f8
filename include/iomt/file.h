/*
 * Whole-file reads with a size cap, and atomic durable writes: what every
 * program and module uses for keys, certificates, envelopes and records.
 */
#ifndef IOMT_FILE_H
#define IOMT_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "iomt/error.h"

/*
 * Reads a file of at most cap bytes into a malloc'd buffer with one NUL
 * byte after the data (so text can be used as a string). IOMT_E_IO when
 * it cannot be opened or read, IOMT_E_INPUT when it is larger than cap.
 */
int iomt_file_read(const char *path, size_t cap, uint8_t **out, size_t *len,
                   struct iomt_err *err);

/*
 * Replaces path with data, all or nothing: a new file beside it (created
 * with mode, never following an existing name), written, fsynced, renamed
 * over path, and the directory fsynced. A crash leaves the old file or the
 * new one, never a mix.
 */
int iomt_file_write_atomic(const char *path, const void *data, size_t n,
                           mode_t mode, struct iomt_err *err);

/* Writes all n bytes to fd, retrying short writes; 0 or -1 (errno set). */
int iomt_file_write_all(int fd, const void *p, size_t n);

/* fsync of a directory, so a rename or unlink inside it is durable. */
int iomt_file_sync_dir(const char *dir);

#endif
