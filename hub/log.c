/*
 * The hub's log: one line per event on stderr, "ts=... level=... event=..."
 * followed by key=value fields. Callers never pass key material or tokens.
 */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "hub.h"

void hub_log(const char *level, const char *event, const char *fmt, ...)
{
    char line[1024], ts[32];
    struct timespec now;
    struct tm tm;
    va_list ap;
    int n;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line, sizeof(line), "ts=%s.%03ldZ level=%s event=%s ", ts,
                 now.tv_nsec / 1000000, level, event);
    if (n < 0 || (size_t)n >= sizeof(line))
        return;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    /* One fputs per line: stdio's stream lock keeps lines whole. */
    fprintf(stderr, "%s\n", line);
}
