/*
 * spool_out.c: JSON and logfmt printing for the spool CLI (see spool_out.h).
 *
 * JSON strings must be valid UTF-8: well-formed UTF-8 sequences in a body pass through, every
 * other byte is written as \u00XX (so a binary body is shown, lossily but validly). logfmt
 * values are bare when they are plain tokens and quoted with the same escapes otherwise.
 */
#include "spool_out.h"

#include <string.h>

void out_begin(struct out *o)
{
    o->first = true;
    if (o->json)
        fputc('{', o->f);
}

static void out_key(struct out *o, const char *key)
{
    if (o->json)
        fprintf(o->f, "%s\"%s\":", o->first ? "" : ",", key);
    else
        fprintf(o->f, "%s%s=", o->first ? "" : " ", key);
    o->first = false;
}

void out_u64(struct out *o, const char *key, uint64_t value)
{
    out_key(o, key);
    fprintf(o->f, "%llu", (unsigned long long)value);
}

void out_bool(struct out *o, const char *key, bool value)
{
    out_key(o, key);
    fputs(value ? "true" : "false", o->f);
}

/* Length of the well-formed UTF-8 sequence at p (1..4), or 0 if it is not one. */
static size_t utf8_len(const uint8_t *p, size_t left)
{
    size_t n;
    uint32_t min;
    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xE0) == 0xC0) {
        n = 2;
        min = 0x80;
    } else if ((p[0] & 0xF0) == 0xE0) {
        n = 3;
        min = 0x800;
    } else if ((p[0] & 0xF8) == 0xF0) {
        n = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n > left)
        return 0;
    uint32_t cp = p[0] & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

static void out_escaped(FILE *f, const uint8_t *p, size_t len)
{
    fputc('"', f);
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        size_t n = utf8_len(p + i, len - i);
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c == '\t') {
            fputs("\\t", f);
        } else if (c == '\r') {
            fputs("\\r", f);
        } else if (c < 0x20 || c == 0x7F || n == 0) {
            fprintf(f, "\\u%04x", c);
        } else {
            fwrite(p + i, 1, n, f);
            i += n;
            continue;
        }
        i++;
    }
    fputc('"', f);
}

static bool logfmt_bare(const uint8_t *p, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (p[i] <= ' ' || p[i] == '"' || p[i] == '=' || p[i] == '\\' || p[i] >= 0x7F)
            return false;
    }
    return true;
}

void out_bytes(struct out *o, const char *key, const void *data, size_t len)
{
    out_key(o, key);
    const uint8_t *p = data;
    if (!o->json && logfmt_bare(p, len))
        fwrite(p, 1, len, o->f);
    else
        out_escaped(o->f, p, len);
}

void out_str(struct out *o, const char *key, const char *value)
{
    out_bytes(o, key, value, strlen(value));
}

void out_end(struct out *o)
{
    if (o->json)
        fputc('}', o->f);
    fputc('\n', o->f);
}
