/*
 * Intrusive doubly linked lists with a sentinel head (the Linux list_head shape): O(1) insert
 * and unlink of an element that knows its own link, no allocation. A link that is in no list
 * points at itself, so list_linked() answers whether an element is in one.
 */
#ifndef SPOOL_SRC_LIST_H
#define SPOOL_SRC_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct list_link {
    struct list_link *prev;
    struct list_link *next;
};

#define LIST_ENTRY(link, type, member) ((type *)(void *)((char *)(link) - offsetof(type, member)))

static inline void list_init(struct list_link *link)
{
    link->prev = link;
    link->next = link;
}

static inline bool list_linked(const struct list_link *link)
{
    return link->next != link;
}

static inline bool list_empty(const struct list_link *head)
{
    return head->next == head;
}

static inline void list_insert_tail(struct list_link *head, struct list_link *link)
{
    link->prev = head->prev;
    link->next = head;
    head->prev->next = link;
    head->prev = link;
}

static inline void list_unlink(struct list_link *link)
{
    link->prev->next = link->next;
    link->next->prev = link->prev;
    list_init(link);
}

/* The first element's link, or NULL when empty. */
static inline struct list_link *list_first(const struct list_link *head)
{
    return list_empty(head) ? NULL : head->next;
}

#endif
