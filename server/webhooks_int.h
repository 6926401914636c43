/*
 * webhooks_int.h - what webhooks.c (secrets, signatures) and webhooks_event.c
 * (the event of a delivery) share: reading members of a JSON body.
 */
#ifndef EVENTS_WEBHOOKS_INT_H
#define EVENTS_WEBHOOKS_INT_H

#include <stddef.h>

/*
 * The value of member name of the JSON object text [obj, end) (leading
 * whitespace skipped; the first of a repeated name): 1 with [*v, *vend) set,
 * 0 when obj is not an object or has no such member.
 */
int webhooks__member(const char *obj, const char *end, const char *name, const char **v,
                     const char **vend);

/*
 * The string member name of the object [obj, end), decoded into out (cap
 * bytes, NUL-terminated): its length, or -1 when absent, not a string or too long.
 */
long webhooks__string(const char *obj, const char *end, const char *name, char *out, size_t cap);

/* The value of hex digit c (either case), or -1. */
int webhooks__hexval(int c);

#endif
