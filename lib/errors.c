/*
 * errors.c - libevents' result codes and the per-thread error message.
 */
#include "events_int.h"

#include <stdarg.h>
#include <stdio.h>

/*
 * The calling thread's message for its last failure (events_errmsg). Each thread has its own:
 * events__fail writes it on the thread that fails, events_errmsg reads it there; no lock. It
 * changes at every failure of a libevents call on that thread and never on success.
 */
static __thread char message[512];

const char *events_strerror(int code)
{
    switch (code) {
    case EVENTS_OK: return "EVENTS_OK: success";
    case EVENTS_EINVAL: return "EVENTS_EINVAL: invalid argument";
    case EVENTS_ENOMEM: return "EVENTS_ENOMEM: out of memory";
    case EVENTS_EFULL: return "EVENTS_EFULL: the outbox is full";
    case EVENTS_ETOOBIG: return "EVENTS_ETOOBIG: the event is too large";
    case EVENTS_ETIMEDOUT: return "EVENTS_ETIMEDOUT: timed out";
    case EVENTS_EDB: return "EVENTS_EDB: database error";
    case EVENTS_ESTATE: return "EVENTS_ESTATE: not allowed now";
    case EVENTS_EHTTP: return "EVENTS_EHTTP: HTTP error";
    case EVENTS_ENOTFOUND: return "EVENTS_ENOTFOUND: no such document";
    default: return "unknown events result code";
    }
}

const char *events_errmsg(void)
{
    return message[0] ? message : "no error";
}

int events__fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    return code;
}
