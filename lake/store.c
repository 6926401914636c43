/*
 * store.c - opening a store by URL, and what every backend shares.
 */
#include "store.h"
#include "files.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int store_fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return code;
}

int store_key_valid(const char *key)
{
    if (!key[0] || key[0] == '/' || strlen(key) >= 1024) return 0;
    for (const char *p = key; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f || c == '\\') return 0;
    }
    const char *seg = key;
    for (;;) {
        const char *slash = strchr(seg, '/');
        size_t n = slash ? (size_t)(slash - seg) : strlen(seg);
        if (n == 0 && slash) return 0; /* "//" */
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.')) return 0;
        if (!slash) break;
        seg = slash + 1;
    }
    return 1;
}

/* The store of url; a directory is made when missing unless readonly. */
static int open_url(const char *url, int readonly, store **out, char *err, size_t errlen)
{
    const char *path = url;
    if (!strncmp(url, "s3://", 5)) return store_s3_open(url, out, err, errlen);
    if (!strncmp(url, "file://", 7)) {
        path = url + 7;
    } else if (strstr(url, "://")) {
        snprintf(err, errlen,
                 "lake %s: unknown scheme (use a directory, file:///dir or s3://bucket/prefix)",
                 url);
        return -1;
    }
    if (!*path) {
        snprintf(err, errlen, "lake: empty path");
        return -1;
    }
    char why[4400];
    if (!readonly && files_mkdirs(path, why, sizeof why)) {
        snprintf(err, errlen, "lake: %s", why);
        return -1;
    }
    return store_fs_open(path, out, err, errlen);
}

int store_open(const char *url, store **out, char *err, size_t errlen)
{
    return open_url(url, 0, out, err, errlen);
}

int store_open_readonly(const char *url, store **out, char *err, size_t errlen)
{
    if (open_url(url, 1, out, err, errlen)) return -1;
    (*out)->readonly = 1;
    return 0;
}

int store_refuse_write(const store *s, const char *key, char *err, size_t errlen)
{
    return store_fail(err, errlen, STORE_EREADONLY, "store %s: opened read-only, cannot write %s",
                      s->url, key);
}

void store_close(store *s)
{
    if (s) s->ops->close(s);
}
