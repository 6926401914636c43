/*
 * tail.c - `events tail [PATTERN]`: the server's live tail (GET /tail), one
 * line per event: coloured and summarised on a terminal, NDJSON (the events
 * as stored) when the output is a pipe or a file.
 *
 * The server: --server URL; without it, the one holding the spool of --lake
 * (default ./events-lake, cli_lake_server), else http://127.0.0.1:8080.
 */
#include "buf.h"
#include "cli.h"
#include "evtime.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct tailer {
    buf line; /* the SSE line being read */
    char event[32];
    int pretty, color;
    int ended; /* 1 server stopping, 2 dropped */
    char why[512];
    buf last_id; /* the last event's id: (a cursor), to reconnect from */
    int more;    /* the stream ended with `event: more`: reconnect from last_id */
} tailer;

static const char *color_of(const char *type)
{
    if (!strncmp(type, "rpc.", 4)) return "\033[36m";
    if (!strcmp(type, "collection.insert")) return "\033[32m";
    if (!strcmp(type, "collection.update")) return "\033[33m";
    if (!strcmp(type, "collection.delete")) return "\033[31m";
    if (!strncmp(type, "lifecycle.", 10)) return "\033[35m";
    if (!strncmp(type, "ws.", 3)) return "\033[34m";
    return "\033[37m";
}

static const char *str(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

static void print_pretty(tailer *t, json_t *ev)
{
    const char *type = str(ev, "type"), *ts = str(ev, "ts");
    const char *time = strlen(ts) >= 23 ? ts + 11 : ts;
    char rest[600] = "";
    json_t *d = json_object_get(ev, "do");
    const char *cls = str(d, "class"), *id = *str(d, "id") ? str(d, "id") : "-";
    if (!strcmp(type, "rpc.call")) {
        json_t *ok = json_object_get(ev, "success");
        snprintf(rest, sizeof rest, "%s %s.%s %.1f ms%s%s", id, cls, str(ev, "method"),
                 json_number_value(json_object_get(ev, "durationMs")),
                 json_is_false(ok) ? " FAILED " : "", json_is_false(ok) ? str(ev, "error") : "");
    } else if (!strncmp(type, "collection.", 11)) {
        snprintf(rest, sizeof rest, "%s %s/%s @%s", id, str(ev, "collection"), str(ev, "docId"),
                 str(ev, "bookmark"));
    } else if (!strcmp(type, "sqlite.changeset")) {
        snprintf(rest, sizeof rest, "%s @%s %lld changes, part %lld of %lld", str(ev, "source"),
                 str(ev, "bookmark"), (long long)json_integer_value(json_object_get(ev, "changes")),
                 (long long)json_integer_value(json_object_get(ev, "part")) + 1,
                 (long long)json_integer_value(json_object_get(ev, "parts")));
    } else {
        /* the other members, compact, after the emitting object's id */
        json_t *copy = json_deep_copy(ev);
        static const char *const known[] = {"id", "type", "ts", "receivedAt", "do", "_events_pos"};
        for (size_t k = 0; k < 6; k++) json_object_del(copy, known[k]);
        char *j = json_dumps(copy, JSON_COMPACT | JSON_PRESERVE_ORDER);
        snprintf(rest, sizeof rest, "%s %s", id, j ? j : "");
        free(j);
        json_decref(copy);
    }
    if (t->color)
        printf("\033[2m%.12s\033[0m %s%-20s\033[0m %s\n", time, color_of(type), type, rest);
    else
        printf("%.12s %-20s %s\n", time, type, rest);
}

/* One complete SSE line. */
static void on_line(tailer *t, const char *l, size_t n)
{
    if (!n) { /* the end of one message */
        t->event[0] = 0;
        return;
    }
    if (l[0] == ':') return; /* a comment: heartbeat */
    if (n > 4 && !strncmp(l, "id: ", 4)) {
        t->last_id.len = 0;
        buf_append(&t->last_id, l + 4, n - 4);
        return;
    }
    if (n > 7 && !strncmp(l, "event: ", 7)) {
        snprintf(t->event, sizeof t->event, "%.*s", (int)(n - 7), l + 7);
        return;
    }
    if (n < 6 || strncmp(l, "data: ", 6)) return;
    const char *d = l + 6;
    size_t dn = n - 6;
    if (!strcmp(t->event, "dropped") || !strcmp(t->event, "end")) {
        json_t *v = json_loadb(d, dn, 0, NULL);
        const char *why = json_string_value(json_object_get(v, "error"));
        if (!why) why = json_string_value(json_object_get(v, "reason"));
        snprintf(t->why, sizeof t->why, "%s", why ? why : "the stream ended");
        t->ended = !strcmp(t->event, "dropped") ? 2 : 1;
        json_decref(v);
        return;
    }
    if (!strcmp(t->event, "more")) { /* a catch-up in parts: go on from the last id */
        t->more = 1;
        return;
    }
    if (!strcmp(t->event, "lost")) { /* a gap: the stream goes on */
        json_t *v = json_loadb(d, dn, 0, NULL);
        fprintf(stderr,
                "events tail: %lld events were not sent: the server's tail queue was full\n",
                (long long)json_integer_value(json_object_get(v, "events")));
        json_decref(v);
        return;
    }
    if (t->event[0] && strcmp(t->event, "message"))
        return; /* an event kind this tool does not know */
    if (!t->pretty) {
        fwrite(d, 1, dn, stdout);
        fputc('\n', stdout);
    } else {
        json_t *v = json_loadb(d, dn, 0, NULL);
        if (v) print_pretty(t, v);
        json_decref(v);
    }
    fflush(stdout);
}

static void line_done(tailer *t, const char *l, size_t n)
{
    if (n && l[n - 1] == '\r') n--;
    on_line(t, l, n);
}

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    tailer *t = ud;
    size_t len = size * n, start = 0;
    for (const char *nl; start < len && (nl = memchr(p + start, '\n', len - start));) {
        size_t end = (size_t)(nl - p);
        if (t->line.len) { /* the line began in an earlier piece */
            if (buf_append(&t->line, p + start, end - start)) return 0;
            line_done(t, t->line.p, t->line.len);
            t->line.len = 0;
        } else {
            line_done(t, p + start, end - start);
        }
        start = end + 1;
    }
    if (start < len && t->line.len < (8u << 20) && buf_append(&t->line, p + start, len - start))
        return 0;
    return len;
}

/* SERVER/tail, with ?type=PATTERN when one is given, and &since=TIME. */
static void tail_url(CURL *c, const char *server, const char *pattern, const char *since, buf *url)
{
    buf_puts(url, server);
    while (url->len && url->p[url->len - 1] == '/') url->len--;
    buf_puts(url, "/tail");
    if (pattern && *pattern) {
        char *e = curl_easy_escape(c, pattern, 0);
        buf_printf(url, "?type=%s", e ? e : "");
        curl_free(e);
    }
    if (since) buf_printf(url, "%csince=%s", pattern && *pattern ? '&' : '?', since);
}

/*
 * Follows the stream at url until it ends, printing each event. Returns curl's
 * result; *status is the answer's HTTP status (0 if none).
 */
static CURLcode follow(CURL *c, const char *url, const char *token, const char *last_id, tailer *t,
                       char *err, long *status)
{
    struct curl_slist *h = NULL;
    buf leid = BUF_INIT;
    /* curl drops a header with nothing after its colon: an empty one is written "Name;" */
    if (last_id && !buf_printf(&leid, *last_id ? "Last-Event-ID: %s" : "Last-Event-ID;", last_id))
        h = curl_slist_append(h, buf_cstr(&leid));
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 0L);
    CURLcode rc = cli_perform(c, url, token, h, on_data, t, status, err);
    buf_free(&leid);
    return rc;
}

/*
 * Follows the stream from the position from (a cursor, or a time: ?since=;
 * NULL: live only), reconnecting from the last id while the server sends the
 * catch-up in parts (`event: more`).
 */
static CURLcode follow_from(CURL *c, const char *server, const char *pattern, const char *from,
                            const char *token, tailer *t, char *err, long *status, buf *url)
{
    int64_t ms;
    int is_time = from && *from && !evtime_parse(from, strlen(from), &ms);
    tail_url(c, server, pattern, is_time ? from : NULL, url);
    const char *last_id = from && !is_time ? from : NULL;
    CURLcode rc;
    for (;;) {
        t->more = 0;
        rc = follow(c, buf_cstr(url), token, last_id, t, err, status);
        if (rc != CURLE_OK || *status != 200 || !t->more || t->ended) return rc;
        url->len = 0;
        tail_url(c, server, pattern, NULL, url);
        last_id = buf_cstr(&t->last_id) ? t->last_id.p : "";
    }
}

/* The end of the stream, said on stderr. Returns the command's exit status. */
static int report_end(const char *url, CURLcode rc, const char *err, long status, const tailer *t,
                      const char *server, const char *lake, const char *token, int given, int via)
{
    if (rc != CURLE_OK) {
        fprintf(stderr, "events tail: %s: %s\n", url, err[0] ? err : curl_easy_strerror(rc));
        if (rc == CURLE_COULDNT_CONNECT && !given && !via)
            fprintf(stderr,
                    "events tail: no server holds the spool of %s either: start `events serve`, or "
                    "give --server URL or --lake DIR\n",
                    lake);
        return 1;
    }
    if (status == 401 || status == 403) {
        json_t *e = json_loadb(t->line.p ? t->line.p : "", t->line.len, 0, NULL);
        cli_auth_hint("tail", status, server, via ? lake : NULL, token,
                      json_string_value(json_object_get(e, "error")));
        json_decref(e);
        return 1;
    }
    if (status != 200) {
        fprintf(stderr, "events tail: %s answered %ld: %.*s\n", url, status, (int)t->line.len,
                t->line.p ? t->line.p : "");
        return 1;
    }
    if (t->ended) {
        fprintf(stderr, "events tail: %s\n", t->why);
        return t->ended == 2 ? 1 : 0;
    }
    return 0;
}

int cmd_tail(int argc, char **argv)
{
    const char *server = NULL, *token = NULL, *format = NULL, *lake = "./events-lake", *from = NULL;
    const cli_option opts[] = {
        {"server", "EVENTS_SERVER", OPT_STR, &server, "URL",
         "the server (default: the server of --lake when one runs, else http://127.0.0.1:8080)"},
        {"lake", "EVENTS_LAKE", OPT_STR, &lake, "DIR|URL",
         "without --server, follow the server that holds this lake's spool (default "
         "./events-lake)"},
        {"token", "EVENTS_TOKEN", OPT_STR, &token, "TOKEN", "bearer token with the query scope"},
        {"format", NULL, OPT_STR, &format, "FORMAT",
         "pretty or ndjson (default: pretty on a terminal, else ndjson)"},
        {"from", NULL, OPT_STR, &from, "CURSOR|TIME",
         "first the stored events after this cursor (GET /events' next), or received at or "
         "after this RFC 3339 time, then live; empty: from the oldest kept"},
        {NULL, NULL, 0, NULL, NULL, NULL},
    };
    int status;
    int i = cli_options_take(
        "tail",
        "Usage: events tail [OPTIONS] [PATTERN]\n\n"
        "Prints events as the server accepts them, until interrupted. PATTERN\n"
        "filters by type: shell globs, comma-separated (\"collection.*\", \"rpc.call,ws.*\").\n\n"
        "The server: --server URL; without it, the `events serve` that holds the\n"
        "spool of --lake (it says where it listens), else http://127.0.0.1:8080.",
        opts, argc, argv, &status);
    if (i < 0) return status;
    if (argc - i > 1) {
        fprintf(stderr, "events tail: one PATTERN at most (comma-separate several)\n");
        return 2;
    }
    if (format && strcmp(format, "pretty") && strcmp(format, "ndjson")) {
        fprintf(stderr, "events tail: --format must be pretty or ndjson, not \"%s\"\n", format);
        return 2;
    }
    cli_server ls;
    int given = server && *server, via; /* via: the lake's server, found through its spool */
    server = cli_server_of(server, lake, &ls, &via);
    tailer t;
    memset(&t, 0, sizeof t);
    t.pretty = format ? !strcmp(format, "pretty") : isatty(1);
    t.color = t.pretty && isatty(1) && !getenv("NO_COLOR");
    CURL *c = curl_easy_init();
    if (!c) return 1;
    buf url = BUF_INIT;
    char err[CURL_ERROR_SIZE] = "";
    long answer;
    CURLcode rc =
        follow_from(c, server, i < argc ? argv[i] : NULL, from, token, &t, err, &answer, &url);
    int out = report_end(buf_cstr(&url), rc, err, answer, &t, server, lake, token, given, via);
    curl_easy_cleanup(c);
    buf_free(&url);
    buf_free(&t.line);
    buf_free(&t.last_id);
    return out;
}
