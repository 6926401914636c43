/*
 * log.h - the process logger of the server and the command line.
 *
 * One line per event on stderr, logfmt by default
 *   ts=2026-11-25T10:00:00.123Z level=info msg="listening" addr=127.0.0.1:8080
 * or JSON with log_setup(LOG_JSON, ...). A line is written with one write(2),
 * so lines from different threads never interleave. libevents never logs; it
 * returns errors instead.
 */
#ifndef EVENTS_LOG_H
#define EVENTS_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_LOGFMT, LOG_JSON };

void log_setup(enum log_format fmt, enum log_level min);

/* 1 if a message at this level would be written. */
int log_enabled(enum log_level level);

/* Ends log_msg's key/value list (a typed null pointer, as a variadic list needs). */
#define LOG_END ((const char *)0)

/*
 * Logs msg with key/value pairs given as const char * arguments and ended by
 * LOG_END: log_msg(LOG_INFO, "sealed", "key", key, "events", "12", LOG_END).
 * Values that look like JSON numbers are written unquoted in JSON format.
 */
void log_msg(enum log_level level, const char *msg, ...) __attribute__((sentinel));

#endif
