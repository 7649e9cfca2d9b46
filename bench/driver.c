/* Byte buffers shared by the drivers and the load generator, and the driver table. */
#include "driver.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bench_buf_init(struct bench_buf *buf, size_t cap, size_t cap_max)
{
    SPOOL_ASSERT(cap > 0 && cap <= cap_max);
    memset(buf, 0, sizeof(*buf));
    buf->data = malloc(cap);
    if (buf->data == NULL)
        return -ENOMEM;
    buf->cap = cap;
    buf->cap_max = cap_max;
    return 0;
}

void bench_buf_free(struct bench_buf *buf)
{
    free(buf->data);
    memset(buf, 0, sizeof(*buf));
}

int bench_buf_reserve(struct bench_buf *buf, size_t extra)
{
    SPOOL_ASSERT(buf->head <= buf->len && buf->len <= buf->cap);
    if (buf->cap - buf->len >= extra)
        return 0;
    if (buf->head > 0) { /* slide the pending bytes down before growing */
        memmove(buf->data, buf->data + buf->head, buf->len - buf->head);
        buf->len -= buf->head;
        buf->head = 0;
        if (buf->cap - buf->len >= extra)
            return 0;
    }
    if (extra > buf->cap_max - buf->len)
        return -ENOBUFS;
    size_t cap = buf->cap;
    while (cap - buf->len < extra)
        cap = cap > buf->cap_max / 2 ? buf->cap_max : cap * 2;
    uint8_t *data = realloc(buf->data, cap);
    if (data == NULL)
        return -ENOMEM;
    buf->data = data;
    buf->cap = cap;
    return 0;
}

int bench_buf_append(struct bench_buf *buf, const void *data, size_t len)
{
    int rc = bench_buf_reserve(buf, len);
    if (rc != 0)
        return rc;
    memcpy(buf->data + buf->len, data, len);
    buf->len += len;
    return 0;
}

int bench_buf_printf(struct bench_buf *buf, const char *format, ...)
{
    /* Request lines are short: 128 bytes holds every command the drivers format. */
    enum { LINE_MAX_BYTES = 128 };
    int rc = bench_buf_reserve(buf, LINE_MAX_BYTES);
    if (rc != 0)
        return rc;
    va_list args;
    va_start(args, format);
    int n = vsnprintf((char *)buf->data + buf->len, LINE_MAX_BYTES, format, args);
    va_end(args);
    SPOOL_ASSERT(n >= 0 && n < LINE_MAX_BYTES);
    buf->len += (size_t)n;
    return 0;
}

void bench_buf_consume(struct bench_buf *buf, size_t len)
{
    SPOOL_ASSERT(len <= buf->len - buf->head);
    buf->head += len;
    if (buf->head == buf->len)
        buf->head = buf->len = 0;
}

const struct bench_driver *bench_driver_find(const char *name)
{
    static const struct bench_driver *const drivers[] = {
        &bench_driver_beanstalkd,
        &bench_driver_redis,
        &bench_driver_spool,
    };
    for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
        if (strcmp(drivers[i]->name, name) == 0)
            return drivers[i];
    return NULL;
}
