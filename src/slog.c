/* logfmt lines on stderr (see slog.h): the engine's writer, so both share one format. */
#include "slog.h"

#include <stdarg.h>

#include "logfmt.h"

bool slog_debug_enabled;

void slog_debug_enable(bool on)
{
    slog_debug_enabled = on;
}

void slog(const char *level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    logfmt_v(level, fmt, ap);
    va_end(ap);
}
