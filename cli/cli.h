/*
 * cli.h - the `events` command line: one file per subcommand.
 */
#ifndef EVENTS_CLI_H
#define EVENTS_CLI_H

#include "cache.h"
#include "store.h"

#include <curl/curl.h>
#include <stdint.h>
#include <stdio.h>

int cmd_serve(int argc, char **argv);
int cmd_query(int argc, char **argv);
int cmd_history(int argc, char **argv);
int cmd_send(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_compact(int argc, char **argv);
int cmd_tail(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_subscriptions(int argc, char **argv);
int cmd_table(int argc, char **argv);

/* Prints a POST /query JSON answer as a boxed table. Returns 0, or -1 if it is not one. */
int cli_print_table(FILE *f, const char *answer, size_t len);

/* "8MiB", "64M", "512k", "1g", "1000" (bytes). Returns 0, or -1. */
int cli_parse_size(const char *s, uint64_t *out);

/* "30s", "500ms", "2m", "1h", "10" (seconds). Returns 0, or -1. */
int cli_parse_duration_ms(const char *s, int64_t *out);

/*
 * Options shared by subcommands: each has a long flag, an environment
 * variable that supplies its default, and a kind. cli_options_parse applies
 * the environment, then argv; it prints a message and returns -1 on a bad
 * value or an unknown flag, and returns the index of the first positional
 * argument otherwise.
 */
enum cli_kind { OPT_STR, OPT_SIZE, OPT_DURATION, OPT_INT, OPT_FLAG, OPT_STRINGS };

/* The target of an OPT_STRINGS option: every value given, in order. */
typedef struct cli_strings {
    const char *v[64];
    int n;
} cli_strings;

typedef struct cli_option {
    const char *name; /* without the leading "--" */
    const char *env;  /* NULL: no environment variable */
    enum cli_kind kind;
    void *target;    /* const char **, uint64_t *, int64_t * (ms), long *, int * */
    const char *arg; /* placeholder for help, e.g. "DIR" */
    const char *help;
} cli_option;

/* --cache and --cache-max, for the commands that read a lake. */
#define CLI_CACHE_OPTIONS(dir, max)                                                                \
    {"cache", "EVENTS_CACHE", OPT_STR,                                                             \
     dir,     "DIR",          "local cache of an s3 lake's files (default ~/.cache/events)"},      \
    {                                                                                              \
        "cache-max", "EVENTS_CACHE_MAX", OPT_SIZE, max, "SIZE",                                    \
            "the cache's size at most (default 1GiB)"                                              \
    }

/* How a command opens its lake (cli_lake_open). */
enum {
    CLI_LAKE_WRITE = 0,  /* an existing lake, to read and write */
    CLI_LAKE_CREATE = 1, /* to read and write, made when missing */
    CLI_LAKE_READ = 2,   /* an existing lake, read-only (store_open_readonly) */
};

/*
 * Opens the lake (a directory, file:// or s3:// URL) and, when it is an object
 * store, its cache: a directory per lake under cache_dir (NULL: the default);
 * cache NULL: none (a command that reads only a few small objects).
 * A directory lake that does not exist is made only with mode CLI_LAKE_CREATE;
 * otherwise it is "no such lake: PATH". Prints "events CMD: reason" and
 * returns -1 on failure.
 */
int cli_lake_open(const char *cmd, const char *lake, const char *cache_dir, uint64_t cache_max,
                  int mode, store **st, lake_cache **cache);

/*
 * The lake's spool, where `events serve` keeps it unless told otherwise:
 * EVENTS_SPOOL when set, else LAKE/.spool for a directory lake, ./events-spool
 * for an object store. Returns 1 when the spool can only be this lake's (not
 * ./events-spool, which any object-store lake's server may use), else 0.
 */
int cli_lake_spool(const char *lake, char *out, size_t cap);

/*
 * The server of a lake: the `events serve` that holds the lake's spool (its
 * lock), and where it listens (SPOOL/server.json, server/announce.h) when it
 * serves this very lake. Returns 1 if a server holds the spool (url "" when it
 * does not say where it listens: an older server, or one stopping; why then
 * says what was wrong with its server.json, or is "" when it serves another
 * lake), else 0.
 */
typedef struct cli_server {
    long pid;
    char url[300];
    char why[4400]; /* when url is "": why server.json did not give it */
    char spool[4200];
} cli_server;
int cli_lake_server(const char *lake, cli_server *out);

/*
 * The server a command talks to: server when given, else the server of lake
 * (*via = 1; cli_lake_server fills ls), else http://127.0.0.1:8080.
 */
const char *cli_server_of(const char *server, const char *lake, cli_server *ls, int *via);

/*
 * Performs c (its method and body set) on url with the headers h (taken: freed after) and the
 * bearer token (NULL or "": none), the answer to write(ud); at most 10 s to connect. Returns
 * curl's result; *status the HTTP status (0: none).
 */
CURLcode cli_perform(CURL *c, const char *url, const char *token, struct curl_slist *h,
                     curl_write_callback write, void *ud, long *status, char err[CURL_ERROR_SIZE]);

/*
 * One request of a command to the server: method url, a JSON body (NULL: none), the bearer
 * token (NULL or "": none); at most 10 s to connect and 60 s in all. Returns curl's result;
 * *status the HTTP status (0: none), the answer's body appended to out.
 */
CURLcode cli_http(const char *method, const char *url, const char *token, const char *body,
                  buf *out, long *status, char err[CURL_ERROR_SIZE]);

/*
 * A hint for a 401 or 403 from the server at url (the lake's when lake is not
 * NULL): what to give. Printed as "events CMD: ..." on stderr.
 */
void cli_auth_hint(const char *cmd, long status, const char *url, const char *lake,
                   const char *token, const char *error);

/* The cache directory of the lake url under base (NULL: ~/.cache/events). */
void cli_cache_dir(const char *base, const char *url, char *out, size_t cap);

int cli_options_parse(const char *cmd, const cli_option *opts, int argc, char **argv);
void cli_options_help(const char *usage, const cli_option *opts);

/*
 * A command's flags, as every command takes them: cli_options_parse, and for
 * --help the usage and the options. Returns the index of the first positional
 * argument, or -1 when the command is to return *status at once: 0 after
 * --help, 2 after a bad flag (its message printed).
 */
int cli_options_take(const char *cmd, const char *usage, const cli_option *opts, int argc,
                     char **argv, int *status);

/*
 * cli_options_take for a command that takes no positional argument: one is
 * "unexpected argument" (status 2). Returns 0, or -1 when the command is to
 * return *status at once.
 */
int cli_options_take_no_args(const char *cmd, const char *usage, const cli_option *opts, int argc,
                             char **argv, int *status);

#endif
