/*
 * log.c - logfmt or JSON lines on stderr.
 */
#include "log.h"
#include "buf.h"
#include "evtime.h"

#include <stdarg.h>
#include <string.h>
#include <unistd.h>

/*
 * The logger's settings: set by log_setup, once, while the process starts and
 * before it starts a thread that logs (`events serve` after reading its flags;
 * tests between their cases); read without a lock by every thread afterwards.
 */
static enum log_format format = LOG_LOGFMT;
static enum log_level min_level = LOG_INFO;
static const char *const names[] = {"debug", "info", "warn", "error"};

void log_setup(enum log_format fmt, enum log_level min)
{
    format = fmt;
    min_level = min;
}

int log_enabled(enum log_level level)
{
    return level >= min_level;
}

static int looks_numeric(const char *v)
{
    const char *p = v;
    if (*p == '-') p++;
    if (*p < '0' || *p > '9') return 0;
    if (*p == '0' && p[1] >= '0' && p[1] <= '9') return 0;
    while (*p >= '0' && *p <= '9') p++;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9') return 0;
        while (*p >= '0' && *p <= '9') p++;
    }
    return *p == 0;
}

static void logfmt_value(buf *b, const char *v)
{
    int plain = *v != 0;
    for (const char *p = v; *p && plain; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\') plain = 0;
    if (plain)
        buf_puts(b, v);
    else
        buf_json_str(b, v, strlen(v));
}

void log_msg(enum log_level level, const char *msg, ...)
{
    if (level < min_level) return;
    char ts[EVTIME_LEN + 1];
    evtime_format(evtime_now_ms(), ts);
    buf b = BUF_INIT;
    va_list ap;
    va_start(ap, msg);
    if (format == LOG_JSON) {
        buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts, names[level]);
        buf_json_str(&b, msg, strlen(msg));
        const char *k;
        while ((k = va_arg(ap, const char *))) {
            const char *v = va_arg(ap, const char *);
            if (!v) v = "";
            buf_putc(&b, ',');
            buf_json_str(&b, k, strlen(k));
            buf_putc(&b, ':');
            if (looks_numeric(v))
                buf_puts(&b, v);
            else
                buf_json_str(&b, v, strlen(v));
        }
        buf_puts(&b, "}\n");
    } else {
        buf_printf(&b, "ts=%s level=%s msg=", ts, names[level]);
        buf_json_str(&b, msg, strlen(msg));
        const char *k;
        while ((k = va_arg(ap, const char *))) {
            const char *v = va_arg(ap, const char *);
            buf_putc(&b, ' ');
            buf_puts(&b, k);
            buf_putc(&b, '=');
            logfmt_value(&b, v ? v : "");
        }
        buf_putc(&b, '\n');
    }
    va_end(ap);
    if (b.p) {
        const char *p = b.p;
        size_t n = b.len;
        while (n) {
            ssize_t w = write(2, p, n);
            if (w <= 0) break;
            p += w;
            n -= (size_t)w;
        }
    }
    buf_free(&b);
}
