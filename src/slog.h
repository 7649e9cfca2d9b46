/*
 * Structured logs: one logfmt line per event on stderr ("ts=... level=info msg=listening
 * addr=127.0.0.1:7711"). The caller writes the key=value pairs after the level; values with
 * spaces are quoted by the caller. stderr is unbuffered, so a line reaches the file whole
 * before a crash.
 */
#ifndef SPOOL_SRC_SLOG_H
#define SPOOL_SRC_SLOG_H

#include <stdbool.h>

__attribute__((format(printf, 2, 3))) void slog(const char *level, const char *fmt, ...);

/* Debug lines are written only after slog_debug_enable (spoold --log-level debug). */
extern bool slog_debug_enabled;
void slog_debug_enable(bool on);
#define slog_debug(...)                                                                           \
    do {                                                                                           \
        if (slog_debug_enabled)                                                                    \
            slog("debug", __VA_ARGS__);                                                            \
    } while (0)
#define slog_info(...) slog("info", __VA_ARGS__)
#define slog_warn(...) slog("warn", __VA_ARGS__)
#define slog_error(...) slog("error", __VA_ARGS__)

#endif
