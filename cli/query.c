/*
 * query.c - `events query` and `events history`: SQL over the lake, from the
 * command line.
 *
 * Three ways to reach the lake. --server URL asks that server (POST /query).
 * Without it, the lake's own server is asked when one runs: the `events serve`
 * holding the lake's spool says where it listens (cli_lake_server), and its
 * answers include what is still in the spool. Otherwise, or with --direct, the
 * embedded engine reads the lake's files, which hold only sealed events (a
 * segment is sealed within --seal-age, 30 s by default); a lake that does not
 * exist is an error, and one with nothing sealed yet is said so on stderr.
 * Either way the answer is the server's JSON, printed as a table on a
 * terminal, or passed through as JSON, NDJSON or CSV as it comes (only a table
 * is held whole, to size its columns, and --max-bytes bounds it).
 *
 * Nothing is said about which way was taken when the answer is whole; a note
 * on stderr when it may not be (the lake's files read while a spool holds
 * events, a server that did not answer).
 */
#include "cli.h"
#include "buf.h"
#include "query.h"
#include "store.h"
#include "writer.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct qopts {
    const char *cmd; /* "query" or "history", for messages */
    const char *lake, *server, *token, *format, *file, *cache;
    uint64_t cache_max;
    cli_strings params;
    uint64_t max_rows, max_bytes;
    int64_t timeout_ms;
    int direct;
} qopts;

static enum query_format engine_format(const char *f)
{
    return !strcmp(f, "csv") ? QUERY_CSV : !strcmp(f, "ndjson") ? QUERY_NDJSON : QUERY_JSON;
}

/*
 * The last bytes of an answer, kept while it streams to standard output, to
 * find the marker a cut answer ends with (the "error" member of a JSON
 * answer's end, or NDJSON's last line {"error":…}).
 */
#define TAIL_MAX 4096
typedef struct tail {
    char b[TAIL_MAX];
    size_t n;
    uint64_t bytes, lines; /* all written, to tell an empty answer */
} tail;

static void tail_add(tail *t, const char *p, size_t n)
{
    t->bytes += n;
    for (const char *q = p; (q = memchr(q, '\n', n - (size_t)(q - p))); q++) t->lines++;
    if (n >= TAIL_MAX) {
        memcpy(t->b, p + n - TAIL_MAX, TAIL_MAX);
        t->n = TAIL_MAX;
        return;
    }
    if (t->n + n > TAIL_MAX) {
        size_t drop = t->n + n - TAIL_MAX;
        memmove(t->b, t->b + drop, t->n - drop);
        t->n -= drop;
    }
    memcpy(t->b + t->n, p, n);
    t->n += n;
}

/* The error a cut answer ends with, or NULL (query.h, query_outcome). Caller frees. */
static char *answer_error(const char *p, size_t n, int ndjson)
{
    buf b = BUF_INIT;
    json_t *o = NULL;
    if (ndjson) {
        while (n && p[n - 1] == '\n') n--;
        const char *line = p + n;
        while (line > p && line[-1] != '\n') line--;
        o = json_loadb(line, n - (size_t)(line - p), 0, NULL);
    } else {
        /* the end of a JSON answer: ],"rowCount":N,"truncated":B[,"error":"…"],"files":…} */
        const char *end = NULL;
        for (const char *q = p; (q = memmem(q, n - (size_t)(q - p), "],\"rowCount\":", 13)); q++)
            end = q;
        if (end) {
            buf_putc(&b, '{');
            buf_append(&b, end + 2, n - (size_t)(end + 2 - p));
            o = b.p ? json_loadb(b.p, b.len, 0, NULL) : NULL;
        }
    }
    const char *e = json_string_value(json_object_get(o, "error"));
    char *r = e ? strdup(e) : NULL;
    json_decref(o);
    buf_free(&b);
    return r;
}

/* ---- the embedded engine --------------------------------------------------- */

typedef struct out {
    buf *answer; /* the table's answer, whole; NULL: straight to standard output */
    tail *t;
} out;

static int sink_begin(void *ud, const char *ct)
{
    (void)ud, (void)ct;
    return 0;
}

static int sink_write(void *ud, const char *p, size_t n, int64_t deadline_ms)
{
    out *w = ud;
    (void)deadline_ms;
    if (w->answer) return buf_append(w->answer, p, n);
    tail_add(w->t, p, n);
    return fwrite(p, 1, n, stdout) == n ? 0 : -1;
}

/* 1 if the lake holds a sealed event file, 0 if not, -1 if it cannot tell. */
static int stop_at_first(const store_entry *e, void *ud)
{
    (void)e;
    *(int *)ud = 1;
    return 1;
}

static int lake_has_sealed(store *st)
{
    int any = 0;
    char err[512];
    int rc = store_list(st, "events/", stop_at_first, &any, err, sizeof err);
    return any ? 1 : rc == STORE_OK || rc == STORE_ENOENT ? 0 : -1;
}

/* After the lake's files answered: what they could not hold, when they hold nothing. */
static void note_unsealed(const qopts *o, store *st)
{
    if (lake_has_sealed(st)) return;
    char spool[4200];
    uint64_t segments, events;
    long pid;
    char err[512]; /* no spool or an unreadable one: said as "no events yet" */
    if (!cli_lake_spool(o->lake, spool, sizeof spool)) {
        fprintf(stderr, "events %s: the lake %s holds no sealed events yet\n", o->cmd, o->lake);
    } else if (lake_writer_spool_count(spool, &segments, &events, err, sizeof err) || !events) {
        fprintf(stderr, "events %s: the lake %s holds no events yet\n", o->cmd, o->lake);
    } else if (lake_writer_spool_held(spool, &pid)) {
        fprintf(stderr,
                "events %s: nothing sealed yet: the %llu events of %s are in the spool of its "
                "server (pid %ld), which seals them into the lake within its --seal-age (30 s by "
                "default)%s\n",
                o->cmd, (unsigned long long)events, o->lake, pid,
                o->direct ? "; without --direct the server is asked, and its answers include them"
                          : "");
    } else {
        fprintf(stderr,
                "events %s: nothing sealed yet: the %llu events of %s are in its spool %s, left by "
                "a server that stopped before sealing them; `events serve` on this lake seals "
                "them when it starts\n",
                o->cmd, (unsigned long long)events, o->lake, spool);
    }
}

static int run_local(const qopts *o, const char *sql, json_t *params, buf *answer, int stream,
                     tail *t)
{
    store *st;
    lake_cache *cache;
    char err[1024];
    if (cli_lake_open(o->cmd, o->lake, o->cache, o->cache_max, CLI_LAKE_READ, &st, &cache))
        return 1;
    query_config qc = {.store = st, .cache = cache};
    query_engine *e;
    query_conn *c = NULL;
    int rc = 1;
    if (query_engine_open(&qc, &e, err, sizeof err)) {
        fprintf(stderr, "events %s: %s\n", o->cmd, err);
        lake_cache_close(cache);
        store_close(st);
        return 1;
    }
    if (!(c = query_conn_new(e, err, sizeof err))) {
        fprintf(stderr, "events %s: %s\n", o->cmd, err);
    } else {
        query_request req = {.sql = sql,
                             .params = params,
                             .format = stream ? engine_format(o->format) : QUERY_JSON,
                             .max_rows = o->max_rows,
                             .timeout_ms = o->timeout_ms,
                             .max_bytes = o->max_bytes};
        out w = {.answer = stream ? NULL : answer, .t = t};
        query_sink s = {sink_begin, sink_write, &w};
        query_outcome res;
        query_run(c, &req, &s, &res);
        if (stream && res.streamed && req.format == QUERY_JSON) fputc('\n', stdout);
        if (res.code != QUERY_OK || res.cut) {
            if (res.streamed) fflush(stdout);
            fprintf(stderr, "events %s: %s%s\n", o->cmd, res.error,
                    res.over_bytes ? " (--max-bytes)" : "");
        } else {
            rc = 0;
            if (res.truncated)
                fprintf(stderr, "events %s: stopped at %llu rows (--max-rows)\n", o->cmd,
                        (unsigned long long)res.rows);
        }
    }
    query_conn_free(c);
    query_engine_close(e);
    if (!rc) {
        fflush(stdout);
        note_unsealed(o, st);
    }
    lake_cache_close(cache);
    store_close(st);
    return rc;
}

/* ---- a server ---------------------------------------------------------------- */

typedef struct http {
    buf body;     /* an error's body, or the whole answer for a table */
    uint64_t max; /* what body may hold */
    int over;     /* the answer was longer: the transfer was stopped */
    long status;
    int stream; /* write 200 bodies to stdout as they come */
    tail *t;
} http;

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    http *h = ud;
    size_t len = size * n;
    if (h->stream && h->status == 200) {
        tail_add(h->t, p, len);
        return fwrite(p, 1, len, stdout) == len ? len : 0;
    }
    if (h->body.len + len > h->max) {
        h->over = 1;
        return 0; /* stops the transfer */
    }
    return buf_append(&h->body, p, len) ? 0 : len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    http *h = ud;
    if (size * n > 9 && !strncmp(p, "HTTP/", 5)) {
        const char *sp = memchr(p, ' ', size * n);
        if (sp) h->status = strtol(sp + 1, NULL, 10);
    }
    return size * n;
}

/*
 * Asks the server at url. lake is NULL for --server, else the lake whose server
 * it is (for the messages). Returns 0, 1 with a message printed, or
 * UNREACHABLE with nothing printed or written when nothing answered at url
 * (why says what happened).
 */
#define UNREACHABLE 3
static int run_remote(const qopts *o, const char *url_base, const char *lake, const char *sql,
                      json_t *params, buf *answer, int stream, tail *t, char *why, size_t whylen)
{
    json_t *req = json_pack("{s:s,s:O}", "sql", sql, "params", params ? params : json_array());
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    char url[2048];
    snprintf(url, sizeof url, "%s/query?format=%s", url_base, stream ? o->format : "json");
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    char auth[1200];
    if (o->token && *o->token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->token);
        h = curl_slist_append(h, auth);
    }
    /* a table's answer is held whole: the server's own byte limit, and ours, bound it */
    http r = {.body = BUF_INIT, .max = o->max_bytes + 65536, .stream = stream, .t = t};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (o->timeout_ms) curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(o->timeout_ms + 5000));
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(body);
    int rc = 0;
    char *cut = NULL;
    if (status == 200 && stream && strcmp(o->format, "csv"))
        cut = answer_error(r.t->b, r.t->n, !strcmp(o->format, "ndjson"));
    if (stream && status == 200 && !strcmp(o->format, "json") && r.t->n) fputc('\n', stdout);
    if (lake && cc == CURLE_COULDNT_CONNECT && !status) {
        snprintf(why, whylen, "%s", curl_easy_strerror(cc));
        rc = UNREACHABLE;
    } else if (r.over) {
        fprintf(stderr, "events %s: the answer is over %llu bytes (--max-bytes)\n", o->cmd,
                (unsigned long long)o->max_bytes);
        rc = 1;
    } else if (cc != CURLE_OK && status != 200) {
        fprintf(stderr, "events %s: %s: %s\n", o->cmd, url_base, curl_easy_strerror(cc));
        rc = 1;
    } else if (cut) {
        fflush(stdout);
        fprintf(stderr, "events %s: %s\n", o->cmd, cut);
        rc = 1;
    } else if (cc != CURLE_OK) {
        fflush(stdout);
        fprintf(stderr, "events %s: the answer was cut short: %s\n", o->cmd,
                curl_easy_strerror(cc));
        rc = 1;
    } else if (status != 200) {
        json_t *e = json_loadb(r.body.p ? r.body.p : "", r.body.len, 0, NULL);
        const char *msg = json_string_value(json_object_get(e, "error"));
        if (lake && (status == 401 || status == 403))
            cli_auth_hint(o->cmd, status, url_base, lake, o->token, msg);
        else
            fprintf(stderr, "events %s: %s (HTTP %ld)\n", o->cmd,
                    msg ? msg : "the server refused the query", status);
        json_decref(e);
        rc = 1;
    } else if (!stream) {
        buf_append(answer, r.body.p ? r.body.p : "", r.body.len);
    }
    free(cut);
    buf_free(&r.body);
    return rc;
}

/* ---- shared ------------------------------------------------------------------- */

static char *read_all(FILE *f)
{
    buf b = BUF_INIT;
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) buf_append(&b, tmp, n);
    return b.p ? (buf_cstr(&b), b.p) : strdup("");
}

/*
 * Runs the query where qopts says (see the top of this file); a table is drawn
 * from the whole answer, every other format streams. *empty: the answer had no
 * rows.
 */
static int run(const qopts *o, const char *sql, json_t *params, int *empty)
{
    int table = !strcmp(o->format, "table");
    buf answer = BUF_INIT;
    tail t = {.n = 0};
    char why[256] = "";
    int rc = UNREACHABLE;
    if (o->server) {
        rc = run_remote(o, o->server, NULL, sql, params, &answer, !table, &t, why, sizeof why);
    } else if (!o->direct) {
        cli_server ls;
        int held = cli_lake_server(o->lake, &ls);
        if (held && ls.url[0]) {
            rc = run_remote(o, ls.url, o->lake, sql, params, &answer, !table, &t, why, sizeof why);
            if (rc == UNREACHABLE)
                fprintf(stderr,
                        "events %s: the server of %s (pid %ld) did not answer at %s (%s); reading "
                        "the lake's files, which hold only sealed events\n",
                        o->cmd, o->lake, ls.pid, ls.url, why);
        } else if (held) {
            fprintf(stderr,
                    "events %s: a server (pid %ld) holds the spool of %s but does not say where it "
                    "listens%s%s%s; reading the lake's files, which hold only sealed events "
                    "(--server URL asks it)\n",
                    o->cmd, ls.pid, o->lake, ls.why[0] ? " (" : "", ls.why, ls.why[0] ? ")" : "");
        }
    }
    if (rc == UNREACHABLE) rc = run_local(o, sql, params, &answer, !table, &t);
    *empty = 0;
    if (table && answer.len) {
        char *cut = answer_error(answer.p, answer.len, 0);
        json_t *a = json_loadb(answer.p, answer.len, 0, NULL);
        *empty = json_array_size(json_object_get(a, "rows")) == 0;
        json_decref(a);
        if (cli_print_table(stdout, answer.p, answer.len)) {
            fprintf(stderr, "events %s: the answer is not a query result\n", o->cmd);
            rc = 1;
        } else if (cut && !rc) {
            fflush(stdout);
            fprintf(stderr, "events %s: %s\n", o->cmd, cut);
            rc = 1;
        }
        free(cut);
    } else if (!table) {
        *empty = !strcmp(o->format, "ndjson") ? t.bytes == 0
                 : !strcmp(o->format, "csv")  ? t.lines <= 1
                                              : memmem(t.b, t.n, "\"rows\":[]", 9) != NULL;
    }
    buf_free(&answer);
    fflush(stdout);
    return rc;
}

#define WHERE                                                                                      \
    "\n\nWhere it reads: with --server URL, that server. Without it, when an\n"                    \
    "`events serve` holds the lake's spool, that server: its answers include the\n"                \
    "events still in the spool (give --token or EVENTS_TOKEN if it asks for one).\n"               \
    "Otherwise, or with --direct, the lake's files, which hold only sealed events (a\n"            \
    "server seals them within its --seal-age, 30 s by default); a lake with nothing\n"             \
    "sealed yet says so on stderr. Reading never makes the lake: one that does not\n"              \
    "exist is an error."

/*
 * The options query and history share. Returns the index of the first
 * positional argument, or -1 when the command is to return *status at once (0
 * after --help, 2 after a bad flag, its message printed).
 */
static int parse_common(const char *cmd, qopts *o, int argc, char **argv, const char *usage,
                        int *status)
{
    memset(o, 0, sizeof *o);
    o->cmd = cmd;
    o->lake = "./events-lake";
    o->format = isatty(1) ? "table" : "ndjson";
    o->max_rows = 100000;
    o->max_bytes = 32ull << 20;
    o->timeout_ms = 30000;
    const cli_option opts[] = {
        {"lake", "EVENTS_LAKE", OPT_STR, &o->lake, "DIR|URL",
         "the lake: a directory or s3://bucket/prefix (default ./events-lake); asked through "
         "its server when one runs"},
        CLI_CACHE_OPTIONS(&o->cache, &o->cache_max),
        {"server", "EVENTS_SERVER", OPT_STR, &o->server, "URL",
         "ask this server instead (sees unsealed events)"},
        {"direct", NULL, OPT_FLAG, &o->direct, NULL,
         "read the lake's files even when its server runs (sealed events only)"},
        {"token", "EVENTS_TOKEN", OPT_STR, &o->token, "TOKEN",
         "bearer token for the server (--server's or the lake's)"},
        {"format", "EVENTS_FORMAT", OPT_STR, &o->format, "FORMAT",
         "table, csv, json or ndjson (default: table on a terminal, else ndjson)"},
        {"file", NULL, OPT_STR, &o->file, "PATH", "read the SQL from a file"},
        {"param", NULL, OPT_STRINGS, &o->params, "VALUE",
         "a value for $1, $2, ... (repeat; sent as strings)"},
        {"max-rows", "EVENTS_MAX_ROWS", OPT_SIZE, &o->max_rows, "N",
         "stop after N rows (default 100000)"},
        {"max-bytes", "EVENTS_MAX_BYTES", OPT_SIZE, &o->max_bytes, "SIZE",
         "stop the answer at this size, with an error (default 32MiB)"},
        {"timeout", "EVENTS_QUERY_TIMEOUT", OPT_DURATION, &o->timeout_ms, "DURATION",
         "stop the query after this (default 30s)"},
        {NULL, NULL, 0, NULL, NULL, NULL},
    };
    int i = cli_options_take(cmd, usage, opts, argc, argv, status);
    if (i < 0) return -1;
    *status = 2;
    if (strcmp(o->format, "table") && strcmp(o->format, "csv") && strcmp(o->format, "json") &&
        strcmp(o->format, "ndjson")) {
        fprintf(stderr, "events %s: --format must be table, csv, json or ndjson, not \"%s\"\n", cmd,
                o->format);
        return -1;
    }
    if (o->server && !*o->server) o->server = NULL;
    if (o->server && o->direct) {
        fprintf(stderr,
                "events %s: --direct reads the lake's files, --server asks a server: give "
                "one of them\n",
                cmd);
        return -1;
    }
    return i;
}

static json_t *params_json(const qopts *o)
{
    json_t *a = json_array();
    for (int k = 0; k < o->params.n; k++) json_array_append_new(a, json_string(o->params.v[k]));
    return a;
}

int cmd_query(int argc, char **argv)
{
    qopts o;
    int status;
    int i = parse_common("query", &o, argc, argv,
                         "Usage: events query [OPTIONS] SQL\n"
                         "       events query [OPTIONS] -            (SQL from standard input)\n"
                         "       events query [OPTIONS] --file PATH\n\n"
                         "Runs one read-only SQL statement over the events view of the lake." WHERE,
                         &status);
    if (i < 0) return status;
    char *sql = NULL;
    if (o.file) {
        FILE *f = fopen(o.file, "r");
        if (!f) {
            fprintf(stderr, "events query: cannot read %s: %s\n", o.file, strerror(errno));
            return 2;
        }
        sql = read_all(f);
        fclose(f);
        if (i < argc) {
            fprintf(stderr, "events query: give the SQL either with --file or as an argument\n");
            free(sql);
            return 2;
        }
    } else if (i == argc - 1) {
        sql = !strcmp(argv[i], "-") ? read_all(stdin) : strdup(argv[i]);
    } else {
        fprintf(stderr,
                "events query: expected one SQL argument (or - for standard input, or --file)\n");
        return 2;
    }
    json_t *params = params_json(&o);
    int empty;
    int rc = run(&o, sql, params, &empty);
    json_decref(params);
    free(sql);
    return rc;
}

int cmd_history(int argc, char **argv)
{
    qopts o;
    int status;
    int i =
        parse_common("history", &o, argc, argv,
                     "Usage: events history [OPTIONS] COLLECTION DOC_ID\n\n"
                     "Prints every change of one document: time, change, bookmark, the document\n"
                     "after the change and before it; says on stderr when there is none." WHERE,
                     &status);
    if (i < 0) return status;
    if (argc - i != 2) {
        fprintf(stderr, "events history: expected COLLECTION DOC_ID\n");
        return 2;
    }
    json_t *params = json_pack("[s,s]", argv[i], argv[i + 1]);
    int empty;
    int rc = run(&o, "SELECT * FROM doc_history($1, $2)", params, &empty);
    if (!rc && empty)
        fprintf(stderr, "events history: no changes of document %s in collection %s\n", argv[i + 1],
                argv[i]);
    json_decref(params);
    return rc;
}
