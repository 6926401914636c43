/*
 * events_int.h - the inside of libevents shared by all its files: the per-thread error
 * message behind events_errmsg (errors.c).
 */
#ifndef EVENTS_EVENTS_INT_H
#define EVENTS_EVENTS_INT_H

#include "events.h"

/* Sets the calling thread's message (events_errmsg) and returns code, in one statement:
 * return events__fail(EVENTS_EINVAL, "...", ...). */
int events__fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
