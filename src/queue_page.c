/*
 * Queues in pages, in name order (STATS and QUEUES of protocol version 2). A page is the
 * queues whose names sort after a cursor (the last name of the previous page), so paging
 * needs no server-side state and survives queues coming and going between pages: a queue
 * created meanwhile shows up if its name sorts after the cursor, one forgotten meanwhile does
 * not; none is listed twice. Each page costs one pass over the queue map and a sort of the
 * names after the cursor: O(n log n) for n queues (n <= queues_max), a few ms at 64 Ki.
 */
#include "queue_internal.h"

#include <stdlib.h>
#include <string.h>

/* Byte order of names, a shorter prefix first (memcmp order of the name8 strings). */
static int name_cmp(const char *a, uint32_t a_len, const char *b, uint32_t b_len)
{
    uint32_t len = a_len < b_len ? a_len : b_len;
    int c = memcmp(a, b, len);
    if (c != 0)
        return c;
    return a_len < b_len ? -1 : a_len > b_len ? 1 : 0;
}

static int queue_ptr_cmp(const void *a, const void *b)
{
    const struct queue *x = *(struct queue *const *)a;
    const struct queue *y = *(struct queue *const *)b;
    return name_cmp(x->name, x->name_len, y->name, y->name_len);
}

uint32_t queue_page(struct queue_state *state, const char *cursor, uint32_t cursor_len,
                    struct queue ***out)
{
    SPOOL_ASSERT(cursor_len <= LIMIT_QUEUE_NAME_MAX_BYTES);
    struct queue **after = malloc((state->queues.count + 1u) * sizeof(*after));
    SPOOL_ASSERT(after != NULL);
    uint32_t count = 0;
    STRMAP_EACH(&state->queues, entry)
    {
        struct queue *queue = entry->value;
        if (cursor_len == 0 || name_cmp(queue->name, queue->name_len, cursor, cursor_len) > 0)
            after[count++] = queue;
    }
    SPOOL_ASSERT(count <= state->queues.count);
    qsort(after, count, sizeof(*after), queue_ptr_cmp);
    *out = after;
    return count;
}
