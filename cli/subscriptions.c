/*
 * subscriptions.c - `events subscriptions create|list|show|pause|resume|delete|retry|replay`:
 * webhook subscriptions, through a server's /subscriptions API (admin scope;
 * docs/subscriptions.md).
 *
 * Every subcommand is one HTTP request: its flags become a path and a JSON
 * body, the answer is printed (a table for list, "field: value" lines for one
 * subscription, the server's JSON as it is with --json), and a refusal is the
 * server's own message on stderr with exit status 1. The server is found as
 * `events tail` finds it (cli_server_of): --server, else the one holding the
 * spool of --lake, else http://127.0.0.1:8080.
 */
#include "buf.h"
#include "cli.h"

#include <curl/curl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The flags every subcommand takes: where the server is, and how to print. */
typedef struct subs_conn {
    const char *server, *token, *lake;
    int json;
} subs_conn;

#define SUBS_COMMON_OPTIONS(k)                                                                     \
    {"server",                                                                                     \
     "EVENTS_SERVER",                                                                              \
     OPT_STR,                                                                                      \
     &(k)->server,                                                                                 \
     "URL",                                                                                        \
     "the server (default: the server of --lake when one runs, else http://127.0.0.1:8080)"},      \
        {"lake",                                                                                   \
         "EVENTS_LAKE",                                                                            \
         OPT_STR,                                                                                  \
         &(k)->lake,                                                                               \
         "DIR|URL",                                                                                \
         "without --server, the server that holds this lake's spool (default ./events-lake)"},     \
        {"token",     "EVENTS_TOKEN", OPT_STR,                                                     \
         &(k)->token, "TOKEN",        "bearer token with the admin scope"},                        \
    {                                                                                              \
        "json", NULL, OPT_FLAG, &(k)->json, NULL, "print the server's JSON answer as it is"        \
    }

/* Prints a successful answer (its JSON parsed) the subcommand's way. */
typedef void (*subs_print_fn)(json_t *answer, const char *arg);

/* Says why a request failed: the server's "error", else its answer, else curl's reason. */
static void report(const char *cmd, const char *url, CURLcode rc, const char *err, long status,
                   const buf *b)
{
    if (rc != CURLE_OK) {
        fprintf(stderr, "events %s: %s: %s\n", cmd, url, *err ? err : curl_easy_strerror(rc));
        return;
    }
    json_t *a = json_loadb(b->p ? b->p : "", b->len, 0, NULL);
    const char *e = json_string_value(json_object_get(a, "error"));
    if (e)
        fprintf(stderr, "events %s: %s (HTTP %ld)\n", cmd, e, status);
    else
        fprintf(stderr, "events %s: %s answered HTTP %ld: %.*s\n", cmd, url, status,
                (int)(b->len > 500 ? 500 : b->len), b->p ? b->p : "");
    if (status == 401 || status == 403)
        fprintf(stderr,
                "events %s: the subscriptions' API needs a token with the admin scope "
                "(--token or EVENTS_TOKEN)\n",
                cmd);
    json_decref(a);
}

/*
 * The request of a subcommand: method on the server's path (body: NULL or JSON text),
 * printed by print (arg its argument) or as JSON. Returns the exit status.
 */
static int run(const char *cmd, const subs_conn *k, const char *method, const char *path,
               const char *body, subs_print_fn print, const char *arg)
{
    cli_server ls;
    int via;
    buf url = BUF_INIT, b = BUF_INIT;
    buf_puts(&url, cli_server_of(k->server, k->lake, &ls, &via));
    while (url.len && url.p[url.len - 1] == '/') url.len--;
    buf_puts(&url, path);
    char err[CURL_ERROR_SIZE] = "";
    long status = 0;
    CURLcode rc = cli_http(method, buf_cstr(&url), k->token, body, &b, &status, err);
    int out = 1;
    json_t *a = rc == CURLE_OK && status >= 200 && status < 300
                    ? json_loadb(b.p ? b.p : "", b.len, 0, NULL)
                    : NULL;
    if (!a) {
        report(cmd, url.p, rc, err, status, &b);
    } else {
        if (k->json)
            printf("%.*s\n", (int)b.len, b.p);
        else
            print(a, arg);
        out = 0;
    }
    json_decref(a);
    buf_free(&url);
    buf_free(&b);
    return out;
}

/* run with body b (taken; NULL: out of memory, exit status 1) as JSON text. */
static int run_json(const char *cmd, const subs_conn *k, const char *method, const char *path,
                    json_t *b, subs_print_fn print, const char *arg)
{
    char *body = b ? json_dumps(b, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(b);
    int rc = body ? run(cmd, k, method, path, body, print, arg) : 1;
    free(body);
    return rc;
}

/* ---- printing ------------------------------------------------------------------------- */

/* "field: value" lines of a subscription (strings as they are, the rest as JSON). */
static void print_record(json_t *answer, const char *arg)
{
    (void)arg;
    json_t *rec = json_object_get(answer, "subscription");
    const char *k;
    json_t *v;
    json_object_foreach(rec, k, v)
    {
        if (json_is_string(v)) {
            printf("%-15s %s\n", k, json_string_value(v));
        } else {
            char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
            printf("%-15s %s\n", k, t ? t : "");
            free(t);
        }
    }
}

/* GET /subscriptions as a table: the columns a reader scans for trouble first. */
static void print_list(json_t *answer, const char *arg)
{
    (void)arg;
    static const char *const COLS[][2] = {
        {"id", "VARCHAR"},          {"state", "VARCHAR"},     {"pattern", "VARCHAR"},
        {"url", "VARCHAR"},         {"delivered", "BIGINT"},  {"lagEvents", "BIGINT"},
        {"deadLettered", "BIGINT"}, {"lastError", "VARCHAR"},
    };
    json_t *cols = json_array(), *rows = json_array(), *s;
    for (size_t c = 0; c < sizeof COLS / sizeof *COLS; c++)
        json_array_append_new(cols, json_pack("{ssss}", "name", COLS[c][0], "type", COLS[c][1]));
    size_t i;
    json_array_foreach(json_object_get(answer, "subscriptions"), i, s)
    {
        json_t *row = json_array();
        for (size_t c = 0; c < sizeof COLS / sizeof *COLS; c++) {
            json_t *v = json_object_get(s, COLS[c][0]);
            json_array_append(row, v ? v : json_null());
        }
        json_array_append_new(rows, row);
    }
    json_t *t = json_pack("{sosIso}", "columns", cols, "rowCount",
                          (json_int_t)json_array_size(rows), "rows", rows);
    char *text = json_dumps(t, JSON_COMPACT);
    if (text) cli_print_table(stdout, text, strlen(text));
    free(text);
    json_decref(t);
}

static void print_deleted(json_t *answer, const char *arg)
{
    (void)arg;
    printf("deleted %s\n", json_string_value(json_object_get(answer, "deleted")));
}

static void print_requested(json_t *answer, const char *arg)
{
    json_t *rec = json_object_get(answer, "subscription");
    printf("%s of %s requested: the server that delivers it acts on its next poll\n", arg,
           json_string_value(json_object_get(rec, "id")));
}

/* ---- the subcommands ------------------------------------------------------------------ */

/* The one ID a subcommand takes after its flags; NULL (said why) when it is not there. */
static const char *one_id(const char *cmd, int i, int argc, char **argv)
{
    if (argc - i == 1) return argv[i];
    fprintf(stderr, "events %s: give one subscription ID (see events %s --help)\n", cmd, cmd);
    return NULL;
}

/*
 * The flags of a command that takes one ID, then the ID: NULL when the command is to return
 * *status at once (--help, a bad flag, no ID or more than one).
 */
static const char *take_id(const char *cmd, const char *usage, const cli_option *opts, int argc,
                           char **argv, int *status)
{
    int i = cli_options_take(cmd, usage, opts, argc, argv, status);
    if (i < 0) return NULL;
    const char *id = one_id(cmd, i, argc, argv);
    if (!id) *status = 2;
    return id;
}

/* /subscriptions/ID[/action] into p. */
static void path_of(char *p, size_t n, const char *id, const char *action)
{
    snprintf(p, n, "/subscriptions/%s%s%s", id, action ? "/" : "", action ? action : "");
}

static int cmd_list(subs_conn *k, int argc, char **argv)
{
    const cli_option opts[] = {SUBS_COMMON_OPTIONS(k), {NULL, NULL, 0, NULL, NULL, NULL}};
    int status;
    if (cli_options_take_no_args("subscriptions list",
                                 "Usage: events subscriptions list [OPTIONS]\n\n"
                                 "The lake's webhook subscriptions, secrets redacted.",
                                 opts, argc, argv, &status))
        return status;
    return run("subscriptions list", k, "GET", "/subscriptions", NULL, print_list, NULL);
}

/* show, pause, resume, delete: one ID, no body. */
static int cmd_one(subs_conn *k, const char *name, int argc, char **argv)
{
    const cli_option opts[] = {SUBS_COMMON_OPTIONS(k), {NULL, NULL, 0, NULL, NULL, NULL}};
    char cmd[64], usage[300], p[200];
    snprintf(cmd, sizeof cmd, "subscriptions %s", name);
    snprintf(usage, sizeof usage, "Usage: events subscriptions %s [OPTIONS] ID\n\n%s", name,
             !strcmp(name, "show")    ? "One subscription: its fields, state, lag, last error and "
                                        "number of dead letters."
             : !strcmp(name, "pause") ? "Stops delivering it; its cursor stays where it is."
             : !strcmp(name, "resume")
                 ? "Delivers it again from its cursor (also a subscription disabled by a 410)."
                 : "Deletes it and its dead letters.");
    int status;
    const char *id = take_id(cmd, usage, opts, argc, argv, &status);
    if (!id) return status;
    int show = !strcmp(name, "show"), del = !strcmp(name, "delete");
    path_of(p, sizeof p, id, show || del ? NULL : name);
    return run(cmd, k,
               show  ? "GET"
               : del ? "DELETE"
                     : "POST",
               p, NULL, del ? print_deleted : print_record, NULL);
}

/* The flags of create (NULL, LONG_MIN, INT64_MIN: not given). */
typedef struct create_flags {
    const char *id, *pattern, *url, *secret, *start;
    cli_strings filters;
    long batch, attempts, concurrency;
    int64_t max_wait, timeout;
} create_flags;

/* create's body from its flags: NULL (said why) when a --filter is not KEY=VALUE. */
static json_t *create_body(const create_flags *f)
{
    json_t *b = json_object(), *filters = json_object();
    if (f->id) json_object_set_new(b, "id", json_string(f->id));
    if (f->pattern) json_object_set_new(b, "pattern", json_string(f->pattern));
    if (f->url) json_object_set_new(b, "url", json_string(f->url));
    if (f->secret) json_object_set_new(b, "secret", json_string(f->secret));
    for (int i = 0; i < f->filters.n; i++) {
        const char *eq = strchr(f->filters.v[i], '=');
        if (!eq || eq == f->filters.v[i]) {
            fprintf(stderr,
                    "events subscriptions create: --filter %s: give KEY=VALUE (do.class, "
                    "do.id or collection)\n",
                    f->filters.v[i]);
            json_decref(filters);
            json_decref(b);
            return NULL;
        }
        char key[64];
        snprintf(key, sizeof key, "%.*s", (int)(eq - f->filters.v[i]), f->filters.v[i]);
        json_object_set_new(filters, key, json_string(eq + 1));
    }
    if (f->filters.n) json_object_set(b, "filters", filters);
    json_decref(filters);
    if (f->batch != LONG_MIN) json_object_set_new(b, "batchSize", json_integer(f->batch));
    if (f->max_wait != INT64_MIN) json_object_set_new(b, "maxWaitMs", json_integer(f->max_wait));
    if (f->timeout != INT64_MIN) json_object_set_new(b, "timeoutMs", json_integer(f->timeout));
    if (f->attempts != LONG_MIN) json_object_set_new(b, "maxAttempts", json_integer(f->attempts));
    if (f->concurrency != LONG_MIN)
        json_object_set_new(b, "concurrency", json_integer(f->concurrency));
    if (f->start) json_object_set_new(b, "start", json_string(f->start));
    return b;
}

static int cmd_create(subs_conn *k, int argc, char **argv)
{
    create_flags f = {.batch = LONG_MIN,
                      .attempts = LONG_MIN,
                      .concurrency = LONG_MIN,
                      .max_wait = INT64_MIN,
                      .timeout = INT64_MIN};
    const cli_option opts[] = {
        {"pattern", NULL, OPT_STR, &f.pattern, "PATTERNS",
         "event types to deliver, comma-separated: * one segment, ** any number (required)"},
        {"url", NULL, OPT_STR, &f.url, "URL", "where to POST the batches: http(s) (required)"},
        {"id", NULL, OPT_STR, &f.id, "ID", "its id, [A-Za-z0-9_-]{1,64} (default: sub_ + random)"},
        {"secret", NULL, OPT_STR, &f.secret, "whsec_...",
         "the signing secret: whsec_ + base64 of 16 to 64 bytes (default: a new one, printed)"},
        {"filter", NULL, OPT_STRINGS, &f.filters, "KEY=VALUE",
         "only events whose do.class, do.id or collection is VALUE (repeatable)"},
        {"batch-size", NULL, OPT_INT, &f.batch, "N", "events per request, 1 to 10000 (100)"},
        {"max-wait", NULL, OPT_DURATION, &f.max_wait, "DURATION",
         "wait this long for a batch to fill, 0 to 60s (1s)"},
        {"timeout", NULL, OPT_DURATION, &f.timeout, "DURATION",
         "a request's time limit, 100ms to 120s (10s)"},
        {"max-attempts", NULL, OPT_INT, &f.attempts, "N",
         "attempts of a batch before it is a dead letter, 1 to 100 (8)"},
        {"concurrency", NULL, OPT_INT, &f.concurrency, "N",
         "batches in flight at once, 1 to 16; above 1 order is not kept (1)"},
        {"start", NULL, OPT_STR, &f.start, "now|oldest|TIME|CURSOR",
         "where delivery starts: now, the oldest event kept, an RFC 3339 time, or a cursor "
         "(now)"},
        SUBS_COMMON_OPTIONS(k),
        {NULL, NULL, 0, NULL, NULL, NULL},
    };
    int status;
    if (cli_options_take_no_args("subscriptions create",
                                 "Usage: events subscriptions create --pattern P --url URL "
                                 "[OPTIONS]\n\n"
                                 "Creates a webhook subscription and prints it, its secret in "
                                 "full\n(the only time it is shown: keep it for the receiver).",
                                 opts, argc, argv, &status))
        return status;
    json_t *b = create_body(&f);
    if (!b) return 2;
    return run_json("subscriptions create", k, "POST", "/subscriptions", b, print_record, NULL);
}

static int cmd_retry(subs_conn *k, int argc, char **argv)
{
    const char *name = NULL;
    const cli_option opts[] = {
        {"dead-letter", NULL, OPT_STR, &name, "NAME",
         "only this dead letter (its name in `show`'s and the API's list; default: all)"},
        SUBS_COMMON_OPTIONS(k),
        {NULL, NULL, 0, NULL, NULL, NULL},
    };
    int status;
    const char *id = take_id("subscriptions retry",
                             "Usage: events subscriptions retry [OPTIONS] ID\n\n"
                             "Delivers the subscription's dead letters again, oldest "
                             "first; each\ndelivered one is deleted.",
                             opts, argc, argv, &status);
    if (!id) return status;
    char p[200];
    path_of(p, sizeof p, id, "retry");
    return run_json("subscriptions retry", k, "POST", p,
                    name ? json_pack("{ss}", "deadLetter", name) : json_object(), print_requested,
                    name ? "retry of one dead letter" : "retry of the dead letters");
}

/* A time flag as JSON: digits are milliseconds, anything else goes as text (RFC 3339). */
static json_t *time_value(const char *t)
{
    if (*t && strspn(t, "0123456789") == strlen(t)) return json_integer(strtoll(t, NULL, 10));
    return json_string(t);
}

static int cmd_replay(subs_conn *k, int argc, char **argv)
{
    const char *from = NULL, *to = NULL;
    const cli_option opts[] = {
        {"from", NULL, OPT_STR, &from, "TIME", "first receivedAt of the range: RFC 3339 or ms"},
        {"to", NULL, OPT_STR, &to, "TIME", "last receivedAt of the range: RFC 3339 or ms"},
        SUBS_COMMON_OPTIONS(k),
        {NULL, NULL, 0, NULL, NULL, NULL},
    };
    int status;
    const char *id = take_id("subscriptions replay",
                             "Usage: events subscriptions replay --from TIME --to TIME "
                             "[OPTIONS] ID\n\n"
                             "Delivers again the matching events received from --from to "
                             "--to,\nas events.replay batches; the main cursor does not "
                             "move.",
                             opts, argc, argv, &status);
    if (!id) return status;
    if (!from || !to) {
        fprintf(stderr, "events subscriptions replay: give --from TIME and --to TIME\n");
        return 2;
    }
    char p[200];
    path_of(p, sizeof p, id, "replay");
    return run_json("subscriptions replay", k, "POST", p,
                    json_pack("{soso}", "from", time_value(from), "to", time_value(to)),
                    print_requested, "replay");
}

static void usage(FILE *f)
{
    fprintf(f, "Usage: events subscriptions COMMAND [OPTIONS]\n\n"
               "Webhook subscriptions: the lake's events POSTed to a URL, signed, in order,\n"
               "with retries and dead letters (docs/subscriptions.md). Through a server's\n"
               "/subscriptions API, with a token of the admin scope.\n\n"
               "Commands:\n"
               "  create   a new subscription (--pattern, --url; prints its secret)\n"
               "  list     every subscription: state, lag, dead letters, last error\n"
               "  show     one subscription\n"
               "  pause    stop delivering one\n"
               "  resume   deliver it again (also after a 410 disabled it)\n"
               "  delete   delete one and its dead letters\n"
               "  retry    deliver its dead letters again\n"
               "  replay   deliver a range of time again\n\n"
               "Run `events subscriptions COMMAND --help` for a command's options.\n");
}

int cmd_subscriptions(int argc, char **argv)
{
    subs_conn k = {.lake = "./events-lake"};
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (!sub || !strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        usage(sub ? stdout : stderr);
        return sub ? 0 : 2;
    }
    argc--, argv++;
    if (!strcmp(sub, "create")) return cmd_create(&k, argc, argv);
    if (!strcmp(sub, "list")) return cmd_list(&k, argc, argv);
    if (!strcmp(sub, "retry")) return cmd_retry(&k, argc, argv);
    if (!strcmp(sub, "replay")) return cmd_replay(&k, argc, argv);
    if (!strcmp(sub, "show") || !strcmp(sub, "pause") || !strcmp(sub, "resume") ||
        !strcmp(sub, "delete"))
        return cmd_one(&k, sub, argc, argv);
    fprintf(stderr, "events subscriptions: unknown command \"%s\"\n\n", sub);
    usage(stderr);
    return 2;
}
