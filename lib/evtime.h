/*
 * evtime.h - the event model's clock and its one time format.
 *
 * Every time in an event is RFC 3339 UTC with milliseconds,
 * "2026-11-25T10:00:00.123Z" (EVTIME_LEN characters), and inside the program
 * it is an int64 count of milliseconds since 1970-01-01T00:00:00Z. Times from
 * 1970 to the end of 9999 are representable; everything else is refused, so
 * that every partition path has a four-digit year.
 */
#ifndef EVENTS_EVTIME_H
#define EVENTS_EVTIME_H

#include <stddef.h>
#include <stdint.h>

#define EVTIME_LEN     24
#define EVTIME_MAX_MS  INT64_C(253402300799999) /* 9999-12-31T23:59:59.999Z */
#define EVTIME_HOUR_MS INT64_C(3600000)

typedef struct evtime_civil {
    int year, month, day, hour, min, sec, ms;
} evtime_civil;

/* Wall-clock time now, in milliseconds. */
int64_t evtime_now_ms(void);

/* Monotonic time in milliseconds, for durations and deadlines. */
int64_t evtime_mono_ms(void);
/* Monotonic time in nanoseconds. */
int64_t evtime_mono_ns(void);

/*
 * Parses an RFC 3339 date-time: YYYY-MM-DD, 'T' (or 't' or a space),
 * hh:mm:ss, an optional fraction of any length (kept to the millisecond,
 * truncated), and 'Z' or an offset +hh:mm / -hh:mm. Returns 0 and sets *ms,
 * or -1 if s[0..n) is not such a time or is outside 1970..9999.
 */
int evtime_parse(const char *s, size_t n, int64_t *ms);

/*
 * The same, and also the ISO 8601 forms log shippers send: no zone at all
 * (read as UTC: Fluent Bit's java_sql_timestamp "2026-11-25 10:00:00.123456"),
 * an offset without its colon (+0200) or its minutes (+02), and a comma
 * before the fraction. Seconds are still required.
 */
int evtime_parse_iso8601(const char *s, size_t n, int64_t *ms);

/* Writes ms as "YYYY-MM-DDThh:mm:ss.mmmZ" plus a NUL into out (EVTIME_LEN+1 bytes). */
void evtime_format(int64_t ms, char out[EVTIME_LEN + 1]);

/* Splits ms (0..EVTIME_MAX_MS) into UTC calendar fields. */
void evtime_to_civil(int64_t ms, evtime_civil *c);

/* Days since 1970-01-01 of a proleptic Gregorian date. */
int64_t evtime_days_from_civil(int y, int m, int d);

#endif
