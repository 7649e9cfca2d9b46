/*
 * Integration harness: run the real spoold on 127.0.0.1 port 0 in a temp data directory,
 * learn its address from --ready-file, stop it by pid (SIGTERM, or SIGKILL for crash tests).
 * The spoold binary comes from the SPOOLD environment variable (meson sets it). Never kills
 * anything but the pid it started.
 */
#ifndef SPOOL_TEST_SPOOLD_HARNESS_H
#define SPOOL_TEST_SPOOLD_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* How long spoold may take to recover and start listening before the test gives up. */
#define SPOOLD_START_TIMEOUT_MS 20000

struct spoold {
    pid_t pid;
    char dir[512];      /* the test's temp dir (holds data/, ready, spoold.log) */
    char data[600];     /* data directory */
    char ready[600];
    char log[600];      /* spoold's stderr */
    char addr[64];      /* "127.0.0.1:PORT" */
    uint16_t port;
};

/* Make a temp dir and start spoold in it with the extra arguments (NULL-terminated list, or
 * NULL). 0, or -1 after printing why (the log's tail included). */
int spoold_start(struct spoold *s, const char *tag, const char *const *extra_args);
/* Start again on the same data directory (after spoold_stop or spoold_kill). */
int spoold_restart(struct spoold *s, const char *const *extra_args);
/* SIGTERM and wait: returns the exit status (0 = clean), or -1. */
int spoold_stop(struct spoold *s);
/* SIGKILL and wait. */
void spoold_kill(struct spoold *s);
/* Remove the temp dir (data files included). */
void spoold_cleanup(struct spoold *s);
/* Count files in the data directory whose name ends with suffix. */
int spoold_count_files(const struct spoold *s, const char *suffix);
/* True if spoold's log contains text. */
bool spoold_log_contains(const struct spoold *s, const char *text);
/* The number after key ("fetches=") in the last line of spoold's log that has it, 0 if none. */
uint64_t spoold_log_counter(const struct spoold *s, const char *key);

#endif
