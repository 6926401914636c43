/*
 * lake.c - opening the lake a command names, with its cache when it is an
 * object store.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

void cli_cache_dir(const char *base, const char *url, char *out, size_t cap)
{
    char def[2048];
    if (!base || !*base) {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (xdg && *xdg)
            snprintf(def, sizeof def, "%s/events", xdg);
        else if (home && *home)
            snprintf(def, sizeof def, "%s/.cache/events", home);
        else
            snprintf(def, sizeof def, "./events-cache");
        base = def;
    }
    /* one directory per lake: "s3://bucket/prefix" -> BASE/s3/bucket/prefix */
    const char *sep = strstr(url, "://");
    size_t n = (size_t)snprintf(out, cap, "%s/", base);
    if (sep) n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%.*s/", (int)(sep - url), url);
    for (const char *p = sep ? sep + 3 : url; *p && n + 1 < cap; p++)
        out[n++] = (*p == '.' && (p[1] == '.' || p[1] == '/' || !p[1])) ? '_' : *p;
    if (n < cap) out[n] = 0;
}

int cli_lake_open(const char *cmd, const char *lake, const char *cache_dir, uint64_t cache_max,
                  store **st, lake_cache **cache)
{
    char err[1024];
    *cache = NULL;
    if (store_open(lake, st, err, sizeof err)) {
        fprintf(stderr, "events %s: %s\n", cmd, err);
        return -1;
    }
    if ((*st)->ops->root(*st)) return 0;
    char dir[4096];
    cli_cache_dir(cache_dir, (*st)->url, dir, sizeof dir);
    if (lake_cache_open(dir, cache_max, cache, err, sizeof err)) {
        fprintf(stderr, "events %s: %s\n", cmd, err);
        store_close(*st);
        *st = NULL;
        return -1;
    }
    return 0;
}
