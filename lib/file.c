/*
 * Bounded whole-file reads and atomic, durable replacement of files.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "iomt/file.h"

#define PATH_CAP 4096

int iomt_file_read(const char *path, size_t cap, uint8_t **out, size_t *len,
                   struct iomt_err *err)
{
    uint8_t *buf;
    size_t got = 0;
    int fd;

    *out = NULL;
    *len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return iomt_err_set(err, IOMT_E_IO, "%s: %s", path, strerror(errno));
    buf = malloc(cap + 2);
    if (buf == NULL) {
        close(fd);
        return iomt_err_set(err, IOMT_E_NOMEM, "%s: out of memory", path);
    }
    /* One byte more than cap tells an oversized file from a full one. */
    while (got <= cap) {
        ssize_t r = read(fd, buf + got, cap + 1 - got);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int saved = errno;

            close(fd);
            free(buf);
            return iomt_err_set(err, IOMT_E_IO, "%s: %s", path,
                                strerror(saved));
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got > cap) {
        free(buf);
        return iomt_err_set(err, IOMT_E_INPUT, "%s: larger than %zu bytes",
                            path, cap);
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return IOMT_OK;
}

int iomt_file_write_all(int fd, const void *data, size_t n)
{
    const uint8_t *p = data;

    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int iomt_file_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

/* Makes the rename itself durable: fsync of the containing directory. */
static void sync_parent(const char *path)
{
    char copy[PATH_CAP];

    if (snprintf(copy, sizeof(copy), "%s", path) >= (int)sizeof(copy))
        return;
    (void)iomt_file_sync_dir(dirname(copy));
}

int iomt_file_write_atomic(const char *path, const void *data, size_t n,
                           mode_t mode, struct iomt_err *err)
{
    char tmp[PATH_CAP];
    int fd, saved;

    if (path == NULL || path[0] == '\0')
        return iomt_err_set(err, IOMT_E_INPUT, "path: empty");
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >=
        (int)sizeof(tmp))
        return iomt_err_set(err, IOMT_E_INPUT, "%s: path too long", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0)
        return iomt_err_set(err, IOMT_E_IO, "%s: %s", tmp, strerror(errno));
    /* The umask must not widen nor narrow what the caller asked for. */
    if (fchmod(fd, mode) != 0 || iomt_file_write_all(fd, data, n) != 0 ||
        fsync(fd) != 0)
        goto out_unlink;
    if (close(fd) != 0) {
        fd = -1;
        goto out_unlink;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto out_unlink;
    sync_parent(path);
    return IOMT_OK;

out_unlink:
    saved = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return iomt_err_set(err, IOMT_E_IO, "%s: %s", path, strerror(saved));
}
