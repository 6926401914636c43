/*
 * lake.c - opening the lake a command names, with its cache when it is an
 * object store, and finding the server that holds its spool.
 *
 * Commands that only read a lake never make it: a directory lake that does not
 * exist is an error, not a new empty lake. Those that never write to it open it
 * read-only (CLI_LAKE_READ): a write through it would be refused.
 */
#include "cli.h"
#include "announce.h"
#include "writer.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

/* The directory of a directory lake ("file:///d" or "d"), or NULL for an object store. */
static const char *lake_dir(const char *lake)
{
    if (!strncmp(lake, "file://", 7)) return lake + 7;
    return strstr(lake, "://") ? NULL : lake;
}

int cli_lake_open(const char *cmd, const char *lake, const char *cache_dir, uint64_t cache_max,
                  int mode, store **st, lake_cache **cache)
{
    char err[1024];
    if (cache) *cache = NULL;
    *st = NULL;
    const char *path = lake_dir(lake);
    struct stat sb;
    if (mode != CLI_LAKE_CREATE && path && *path && stat(path, &sb)) {
        if (errno == ENOENT)
            fprintf(stderr, "events %s: no such lake: %s\n", cmd, path);
        else
            fprintf(stderr, "events %s: lake %s: %s\n", cmd, path, strerror(errno));
        return -1;
    }
    int rc = mode == CLI_LAKE_READ ? store_open_readonly(lake, st, err, sizeof err)
                                   : store_open(lake, st, err, sizeof err);
    if (rc) {
        fprintf(stderr, "events %s: %s\n", cmd, err);
        return -1;
    }
    if ((*st)->ops->root(*st) || !cache) return 0;
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

int cli_lake_spool(const char *lake, char *out, size_t cap)
{
    const char *env = getenv("EVENTS_SPOOL"), *dir = lake_dir(lake);
    if (env && *env)
        snprintf(out, cap, "%s", env);
    else if (dir)
        snprintf(out, cap, "%s/.spool", dir);
    else
        snprintf(out, cap, "./events-spool");
    return (env && *env) || dir;
}

/* 1 if the lake a server announced (its store's canonical URL) is lake. */
static int same_lake(const char *announced, const char *lake)
{
    const char *dir = lake_dir(lake);
    if (dir) {
        char *real = realpath(dir, NULL);
        int same = real && !strncmp(announced, "file://", 7) && !strcmp(announced + 7, real);
        free(real);
        return same;
    }
    size_t a = strlen(announced), b = strlen(lake);
    while (a && announced[a - 1] == '/') a--;
    while (b && lake[b - 1] == '/') b--;
    return a == b && !strncmp(announced, lake, a);
}

const char *cli_server_of(const char *server, const char *lake, cli_server *ls, int *via)
{
    *via = 0;
    if (server && *server) return server;
    if (cli_lake_server(lake, ls) && ls->url[0]) {
        *via = 1;
        return ls->url;
    }
    return "http://127.0.0.1:8080";
}

int cli_lake_server(const char *lake, cli_server *out)
{
    memset(out, 0, sizeof *out);
    cli_lake_spool(lake, out->spool, sizeof out->spool);
    if (!lake_writer_spool_held(out->spool, &out->pid)) return 0;
    announce a;
    if (!announce_read(out->spool, &a, out->why, sizeof out->why) && same_lake(a.lake, lake)) {
        snprintf(out->url, sizeof out->url, "%s", a.url);
        if (a.pid) out->pid = a.pid;
    }
    return 1;
}

void cli_auth_hint(const char *cmd, long status, const char *url, const char *lake,
                   const char *token, const char *error)
{
    char who[4600];
    if (lake)
        snprintf(who, sizeof who, "the server of %s (%s)", lake, url);
    else
        snprintf(who, sizeof who, "%s", url);
    const char *direct = lake && (!strcmp(cmd, "query") || !strcmp(cmd, "history"))
                             ? ", or read the lake's files with --direct"
                             : "";
    if (status == 401 && !(token && *token))
        fprintf(stderr,
                "events %s: %s needs a token with the query scope: give --token TOKEN or set "
                "EVENTS_TOKEN%s\n",
                cmd, who, direct);
    else
        fprintf(stderr,
                "events %s: %s refused %s: %s (HTTP %ld); a token with the query scope is "
                "needed (--token or EVENTS_TOKEN)%s\n",
                cmd, who, token && *token ? "the token" : "the request",
                error && *error ? error : "unauthorized", status, direct);
}

static size_t to_buf(char *p, size_t size, size_t n, void *ud)
{
    return buf_append(ud, p, size * n) ? 0 : size * n;
}

CURLcode cli_perform(CURL *c, const char *url, const char *token, struct curl_slist *h,
                     curl_write_callback write, void *ud, long *status, char err[CURL_ERROR_SIZE])
{
    char auth[1200];
    if (token && *token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, ud);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    CURLcode rc = curl_easy_perform(c);
    *status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(h);
    return rc;
}

CURLcode cli_http(const char *method, const char *url, const char *token, const char *body,
                  buf *out, long *status, char err[CURL_ERROR_SIZE])
{
    CURL *c = curl_easy_init();
    if (!c) return CURLE_FAILED_INIT;
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    CURLcode rc =
        cli_perform(c, url, token, curl_slist_append(NULL, "Content-Type: application/json"),
                    to_buf, out, status, err);
    curl_easy_cleanup(c);
    return rc;
}
