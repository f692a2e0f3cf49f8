/*
 * Error records shared by every libiomt module.
 */
#include <stdarg.h>
#include <stdio.h>

#include "iomt/error.h"

int iomt_err_set(struct iomt_err *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return code;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

const char *iomt_rc_name(int code)
{
    switch (code) {
    case IOMT_OK:
        return "ok";
    case IOMT_E_INPUT:
        return "input";
    case IOMT_E_VERIFY:
        return "verify";
    case IOMT_E_ROLLBACK:
        return "rollback";
    case IOMT_E_IO:
        return "io";
    case IOMT_E_NOMEM:
        return "nomem";
    case IOMT_E_CRYPTO:
        return "crypto";
    case IOMT_E_STATE:
        return "state";
    case IOMT_E_AUTH:
        return "auth";
    default:
        return "unknown";
    }
}
