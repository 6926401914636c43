/*
 * evtime.c - RFC 3339 parsing and formatting without libc's time zone code.
 *
 * gmtime_r and timegm are correct but slow for a hot path (locks, TZ lookups)
 * and have no millisecond field; the calendar arithmetic below is the usual
 * era-based conversion between day counts and proleptic Gregorian dates.
 */
#include "evtime.h"

#include <time.h>

int64_t evtime_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t evtime_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t evtime_mono_ms(void)
{
    return evtime_mono_ns() / 1000000;
}

int64_t evtime_days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void evtime_to_civil(int64_t ms, evtime_civil *c)
{
    int64_t days = ms / 86400000, rem = ms % 86400000;
    c->ms = (int)(rem % 1000);
    rem /= 1000;
    c->sec = (int)(rem % 60);
    c->min = (int)(rem / 60 % 60);
    c->hour = (int)(rem / 3600);
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    c->day = (int)(doy - (153 * mp + 2) / 5 + 1);
    c->month = (int)(mp < 10 ? mp + 3 : mp - 9);
    c->year = (int)(yoe + era * 400 + (c->month <= 2));
}

static void put2(char *o, int v)
{
    o[0] = (char)('0' + v / 10);
    o[1] = (char)('0' + v % 10);
}

void evtime_format(int64_t ms, char out[EVTIME_LEN + 1])
{
    evtime_civil c;
    evtime_to_civil(ms, &c);
    put2(out, c.year / 100);
    put2(out + 2, c.year % 100);
    out[4] = '-';
    put2(out + 5, c.month);
    out[7] = '-';
    put2(out + 8, c.day);
    out[10] = 'T';
    put2(out + 11, c.hour);
    out[13] = ':';
    put2(out + 14, c.min);
    out[16] = ':';
    put2(out + 17, c.sec);
    out[19] = '.';
    out[20] = (char)('0' + c.ms / 100);
    put2(out + 21, c.ms % 100);
    out[23] = 'Z';
    out[24] = 0;
}

static int digits(const char *s, int n, int *v)
{
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return 0;
}

static int days_in_month(int y, int m)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))) return 29;
    return d[m - 1];
}

/*
 * The zone of a time at s[i..n): 'Z', an offset +hh:mm / -hh:mm, and when lenient also
 * +hhmm, +hh and nothing at all (UTC). Returns the index after it and the offset in
 * minutes, or -1.
 */
static long parse_zone(const char *s, size_t n, size_t i, int lenient, int *offset_min)
{
    *offset_min = 0;
    if (i == n) return lenient ? (long)i : -1;
    if (s[i] == 'Z' || s[i] == 'z') return (long)i + 1;
    if (s[i] != '+' && s[i] != '-') return -1;
    int oh, om = 0;
    size_t rest = n - i - 1;
    if (rest < 2 || digits(s + i + 1, 2, &oh) || oh > 23) return -1;
    size_t len;
    if (rest >= 5 && s[i + 3] == ':') {
        if (digits(s + i + 4, 2, &om)) return -1;
        len = 6;
    } else if (lenient && rest == 4) {
        if (digits(s + i + 3, 2, &om)) return -1;
        len = 5;
    } else if (lenient && rest == 2) {
        len = 3;
    } else {
        return -1;
    }
    if (om > 59) return -1;
    *offset_min = (oh * 60 + om) * (s[i] == '-' ? -1 : 1);
    return (long)(i + len);
}

static int parse_time(const char *s, size_t n, int lenient, int64_t *out)
{
    int y, mo, d, h, mi, se, frac = 0;
    if (n < (lenient ? 19u : 20u)) return -1;
    if (digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
        digits(s + 17, 2, &se))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 60)
        return -1;
    size_t i = 19;
    if (i < n && (s[i] == '.' || (lenient && s[i] == ','))) {
        size_t start = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (i - start < 3) frac = frac * 10 + (s[i] - '0');
            i++;
        }
        if (i == start) return -1;
        for (size_t k = i - start; k < 3; k++) frac *= 10;
    }
    int offset_min;
    long end = parse_zone(s, n, i, lenient, &offset_min);
    if (end < 0 || (size_t)end != n) return -1;
    int64_t secs = evtime_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se -
                   (int64_t)offset_min * 60;
    int64_t ms = secs * 1000 + frac;
    if (ms < 0 || ms > EVTIME_MAX_MS) return -1;
    *out = ms;
    return 0;
}

int evtime_parse(const char *s, size_t n, int64_t *out)
{
    return parse_time(s, n, 0, out);
}

int evtime_parse_iso8601(const char *s, size_t n, int64_t *out)
{
    return parse_time(s, n, 1, out);
}
