/*
 * buf.h - a growable byte buffer.
 *
 * The one dynamic string type of the project: request bodies, output lines,
 * responses. A buf owns its memory; buf_free releases it. Functions that grow
 * the buffer return 0, or -1 when memory runs out (the buffer is unchanged).
 * The content is not NUL-terminated unless buf_cstr is called.
 */
#ifndef EVENTS_BUF_H
#define EVENTS_BUF_H

#include <stddef.h>
#include <string.h>

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

#define BUF_INIT                                                                                   \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

int buf_grow(buf *b, size_t extra);

static inline int buf_reserve(buf *b, size_t extra)
{
    return b->cap - b->len >= extra ? 0 : buf_grow(b, extra);
}

static inline int buf_append(buf *b, const void *p, size_t n)
{
    if (buf_reserve(b, n)) return -1;
    if (n && b->p)
        memcpy(b->p + b->len, p, n); /* b->p is set once reserved; said for the analyzer */
    b->len += n;
    return 0;
}

static inline int buf_putc(buf *b, char c)
{
    if (buf_reserve(b, 1)) return -1;
    b->p[b->len++] = c;
    return 0;
}

static inline int buf_puts(buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends s as a JSON string literal, quotes included. */
int buf_json_str(buf *b, const char *s, size_t n);

/* NUL-terminates the content (not counted in len) and returns it, or NULL. */
const char *buf_cstr(buf *b);

void buf_free(buf *b);

#endif
