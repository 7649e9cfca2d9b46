/*
 * spool_out.h: how the spool CLI prints one record: a JSON object on one line (--json) or a
 * logfmt line (key=value, values quoted when needed) for people. Callers name each field once
 * and get both formats, so the two cannot disagree about field names.
 */
#ifndef SPOOL_TOOLS_OUT_H
#define SPOOL_TOOLS_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct out {
    FILE *f;
    bool json;
    bool first; /* no field printed yet on this line */
};

void out_begin(struct out *o);
void out_u64(struct out *o, const char *key, uint64_t value);
void out_bool(struct out *o, const char *key, bool value);
/* A byte string: JSON string (invalid UTF-8 bytes as \u00XX) or a logfmt value. */
void out_bytes(struct out *o, const char *key, const void *data, size_t len);
void out_str(struct out *o, const char *key, const char *value);
void out_end(struct out *o);

#endif
