/*
 * logfmt: one structured log line on stderr, "ts=2026-12-05T09:12:00.123Z level=warn " then
 * the caller's key=value pairs (values with spaces quoted by the caller) and a newline. The
 * engine reports what an operator must see (a poisoned log, a torn tail cut, disk space low)
 * this way, and spoold's own lines (src/slog.h) use the same writer, so every line of the
 * server's log carries the same ts= and level= prefix. stderr is unbuffered and each line is
 * one write, so a line reaches the file whole before a crash.
 */
#ifndef SPOOL_STORAGE_LOGFMT_H
#define SPOOL_STORAGE_LOGFMT_H

#include <stdarg.h>

/* Lines longer than this are cut (the newline is kept): a log line, not a dump. */
#define LOGFMT_LINE_MAX 1024

__attribute__((format(printf, 2, 3))) void logfmt(const char *level, const char *fmt, ...);
__attribute__((format(printf, 2, 0))) void logfmt_v(const char *level, const char *fmt,
                                                    va_list ap);

#endif
