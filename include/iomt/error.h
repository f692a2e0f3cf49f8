/*
 * Error reporting for libiomt: every fallible call returns an IOMT_E_* code
 * and, when given one, fills a struct iomt_err with a message that names the
 * offending field. The library never prints.
 */
#ifndef IOMT_ERROR_H
#define IOMT_ERROR_H

#include <stddef.h>

enum iomt_rc {
    IOMT_OK = 0,
    IOMT_E_INPUT = -1,    /* malformed or out-of-range input */
    IOMT_E_VERIFY = -2,   /* well-formed but rejected: signature, digest */
    IOMT_E_ROLLBACK = -3, /* sequence number not above the installed one */
    IOMT_E_IO = -4,       /* file or network I/O failed */
    IOMT_E_NOMEM = -5,
    IOMT_E_CRYPTO = -6, /* the crypto provider failed */
    IOMT_E_STATE = -7,  /* operation not allowed in the current state */
    IOMT_E_AUTH = -8,   /* authentication or authorisation failed */
};

struct iomt_err {
    int code;
    char msg[256];
};

/* Records code and a printf-style message; err may be NULL. Returns code. */
int iomt_err_set(struct iomt_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A short fixed name for a code, e.g. "verify" for IOMT_E_VERIFY. */
const char *iomt_rc_name(int code);

#endif
