/*
 * send.c - `events send`: deliver NDJSON events to a server through libevents.
 *
 * Lines are read into a durable outbox (a SQLite file, ./events-outbox.db by
 * default) in transactions of 1,000, then the library's sender delivers them
 * while this command waits, up to --timeout. What is not delivered by then
 * stays in the outbox: the next `events send` (with or without input) sends it
 * first. Lines that are not acceptable events are refused one by one, with
 * their line number; the server's permanent rejections are dead-lettered in
 * the outbox's _events_dead table, and the summary lists their reasons.
 *
 * Exit status: 0 everything read was delivered or dead-lettered; 1 some lines
 * were refused (the rest delivered); 2 bad usage or the outbox could not be
 * opened; 3 events are still queued at the timeout.
 */
#include "cli.h"
#include "events.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TX_LINES     1000
#define SHOW_REFUSED 10

typedef struct send_opts {
    const char *endpoint, *token, *outbox;
    int64_t timeout_ms;
    uint64_t batch_size;
} send_opts;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- progress on a terminal ------------------------------------------------- */

typedef struct progress {
    int on;
    int64_t start, last;
    uint64_t total; /* events to deliver: read + left from earlier runs */
} progress;

static void progress_draw(progress *p, events_emitter *em, const char *phase, int force)
{
    if (!p->on) return;
    int64_t t = now_ms();
    if (!force && t - p->last < 100) return;
    p->last = t;
    events_stats st;
    events_emitter_stats(em, &st);
    uint64_t done = st.delivered + st.dead;
    uint64_t total = p->total > done ? p->total : done;
    int width = 30, fill = total ? (int)(done * (uint64_t)width / total) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    double secs = (double)(t - p->start) / 1000.0;
    fprintf(stderr, "\r\033[K%s [%s] %llu/%llu delivered, %llu queued, %.0f ev/s", phase, bar,
            (unsigned long long)done, (unsigned long long)total, (unsigned long long)st.queued,
            secs > 0 ? (double)done / secs : 0.0);
    if (st.last_error[0] && st.last_status != 200)
        fprintf(stderr, " (retrying: %.60s)", st.last_error);
    fflush(stderr);
}

static void progress_end(progress *p)
{
    if (p->on) fputs("\r\033[K", stderr);
}

/* ---- dead letters of this run ------------------------------------------------- */

static long long dead_mark(const char *outbox)
{
    sqlite3 *db;
    long long v = 0;
    if (sqlite3_open_v2(outbox, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, "SELECT coalesce(max(seq), 0) FROM _events_dead", -1, &st,
                               NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return v;
}

static void print_dead(const char *outbox, long long mark)
{
    sqlite3 *db;
    if (sqlite3_open_v2(outbox, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return;
    }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            db,
            "SELECT count(*), reason FROM _events_dead WHERE seq > ? GROUP BY reason "
            "ORDER BY count(*) DESC, reason LIMIT 20",
            -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, mark);
        while (sqlite3_step(st) == SQLITE_ROW)
            fprintf(stderr, "  dead-lettered: %lld x %s\n", (long long)sqlite3_column_int64(st, 0),
                    (const char *)sqlite3_column_text(st, 1));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    fprintf(stderr, "  (the events and reasons are in the _events_dead table of %s)\n", outbox);
}

/* ---- reading -------------------------------------------------------------------- */

typedef struct counts {
    uint64_t read, refused;
} counts;

/* Emits one line, waiting for room when the outbox is full. Returns 0, 1 refused, -1 fatal. */
static int send_line(events_emitter *em, const char *line, int64_t deadline, int *in_tx)
{
    for (;;) {
        int rc = events_emit_json(em, line);
        if (rc == EVENTS_OK) return 0;
        if (rc == EVENTS_EINVAL || rc == EVENTS_ETOOBIG) return 1;
        if (rc != EVENTS_EFULL) return -1;
        /* full: let what is queued go out, then try again */
        if (*in_tx) {
            if (events_commit(em)) return -1;
            *in_tx = 0;
        }
        if (now_ms() >= deadline) return -1;
        events_flush(em, 200);
        if (events_begin(em)) return -1;
        *in_tx = 1;
    }
}

static int read_input(events_emitter *em, FILE *in, const char *name, counts *c, progress *p,
                      int64_t deadline)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t lineno = 0;
    int in_tx = 0, rc = 0;
    while ((n = getline(&line, &cap, in)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        size_t k = strspn(line, " \t");
        if (line[k] == 0) continue; /* blank lines are allowed */
        if ((size_t)n != strlen(line)) {
            if (++c->refused <= SHOW_REFUSED)
                fprintf(stderr, "events send: %s:%llu: a NUL byte in the line\n", name,
                        (unsigned long long)lineno);
            continue;
        }
        if (!in_tx) {
            if (events_begin(em)) {
                rc = -1;
                break;
            }
            in_tx = 1;
        }
        int r = send_line(em, line, deadline, &in_tx);
        if (r < 0) {
            rc = -1;
            break;
        }
        if (r > 0) {
            if (++c->refused <= SHOW_REFUSED)
                fprintf(stderr, "%sevents send: %s:%llu: %s\n", p->on ? "\r\033[K" : "", name,
                        (unsigned long long)lineno, events_errmsg());
            continue;
        }
        c->read++;
        p->total++;
        if (c->read % TX_LINES == 0) {
            if (events_commit(em)) {
                rc = -1;
                break;
            }
            in_tx = 0;
            progress_draw(p, em, "reading", 0);
        }
    }
    if (rc < 0) fprintf(stderr, "%sevents send: %s\n", p->on ? "\r\033[K" : "", events_errmsg());
    if (in_tx && events_commit(em) && !rc) {
        fprintf(stderr, "events send: %s\n", events_errmsg());
        rc = -1;
    }
    if (ferror(in)) {
        fprintf(stderr, "events send: cannot read %s: %s\n", name, strerror(errno));
        rc = -1;
    }
    free(line);
    if (c->refused > SHOW_REFUSED)
        fprintf(stderr, "events send: %llu more lines refused\n",
                (unsigned long long)(c->refused - SHOW_REFUSED));
    return rc;
}

/*
 * The flags into o, and *file: the input named (NULL: none). Returns 0, or -1
 * when the command is to return *status at once.
 */
static int parse_send(int argc, char **argv, send_opts *o, const char **file, int *status)
{
    const cli_option opts[] = {
        {"endpoint", "EVENTS_ENDPOINT", OPT_STR, &o->endpoint, "URL",
         "the server, e.g. http://127.0.0.1:8080 (required)"},
        {"token", "EVENTS_TOKEN", OPT_STR, &o->token, "TOKEN",
         "bearer token with the ingest scope"},
        {"outbox", "EVENTS_OUTBOX", OPT_STR, &o->outbox, "PATH",
         "the outbox database (default ./events-outbox.db)"},
        {"timeout", "EVENTS_SEND_TIMEOUT", OPT_DURATION, &o->timeout_ms, "DURATION",
         "give up waiting after this; what is left stays queued (default 60s)"},
        {"batch-size", "EVENTS_BATCH_SIZE", OPT_SIZE, &o->batch_size, "N",
         "events per request (default 500)"},
        {NULL, NULL, 0, NULL, NULL, NULL},
    };
    int i = cli_options_take(
        "send",
        "Usage: events send [OPTIONS] [FILE|-]\n\n"
        "Delivers events, one JSON object per line (NDJSON), from FILE or standard input,\n"
        "through a durable outbox. With no input (no FILE and a terminal on standard\n"
        "input) it delivers what an earlier run left in the outbox. Exit status: 0 all\n"
        "delivered or dead-lettered, 1 lines refused, 2 usage, 3 still queued.",
        opts, argc, argv, status);
    if (i < 0) return -1;
    *status = 2;
    if (i < argc - 1) {
        fprintf(stderr, "events send: expected at most one FILE (or -), got %d arguments\n",
                argc - i);
        return -1;
    }
    if (!o->endpoint || !*o->endpoint) {
        fprintf(stderr, "events send: --endpoint URL is required (or EVENTS_ENDPOINT)\n");
        return -1;
    }
    if (o->batch_size == 0 || o->batch_size > 10000) {
        fprintf(stderr, "events send: --batch-size must be 1..10000\n");
        return -1;
    }
    *file = i < argc ? argv[i] : NULL;
    return 0;
}

/*
 * The input: FILE, standard input for "-" or when it is not a terminal, else
 * none (*in NULL). 0, or -1 with a message.
 */
static int open_input(const char *file, FILE **in, const char **name)
{
    *in = NULL;
    *name = "stdin";
    if (file && strcmp(file, "-")) {
        if (!(*in = fopen(file, "r"))) {
            fprintf(stderr, "events send: cannot open %s: %s\n", file, strerror(errno));
            return -1;
        }
        *name = file;
    } else if (file || !isatty(0)) {
        *in = stdin;
    }
    return 0;
}

/* The emitter over the outbox, sending to the endpoint. 0, or -1 with a message. */
static int open_emitter(const send_opts *o, events_emitter **em)
{
    events_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.endpoint = o->endpoint;
    cfg.token = o->token && *o->token ? o->token : NULL;
    cfg.db_path = o->outbox;
    cfg.batch_size = o->batch_size;
    cfg.backoff_min_ms = 250;
    cfg.backoff_max_ms = 10000;
    cfg.flush_interval_ms = 200;
    if (!events_emitter_open(&cfg, em)) return 0;
    fprintf(stderr, "events send: %s\n", events_errmsg());
    return -1;
}

/* Waits until everything is delivered or the deadline passes. */
static void wait_delivery(events_emitter *em, progress *p, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) break;
        if (events_flush(em, left < 100 ? left : 100) == EVENTS_OK) break;
        progress_draw(p, em, "sending", 0);
    }
}

/* The summary line, the dead letters of this run and what stays queued. Returns the exit status. */
static int report(const send_opts *o, const counts *c, uint64_t earlier, const events_stats *st,
                  long long mark, int fatal)
{
    fprintf(stderr,
            "events send: %llu read, %llu from earlier runs; %llu delivered (%llu duplicates), "
            "%llu dead-lettered, %llu refused, %llu still queued\n",
            (unsigned long long)c->read, (unsigned long long)earlier,
            (unsigned long long)st->delivered, (unsigned long long)st->duplicates,
            (unsigned long long)st->dead, (unsigned long long)c->refused,
            (unsigned long long)st->queued);
    if (st->dead) print_dead(o->outbox, mark);
    if (fatal) return 2;
    if (st->queued) {
        fprintf(stderr,
                "events send: %llu events are still queued in %s after %.1fs%s%s; run events send "
                "again to "
                "deliver them\n",
                (unsigned long long)st->queued, o->outbox, (double)o->timeout_ms / 1000.0,
                st->last_error[0] ? ": " : "", st->last_error);
        return 3;
    }
    return c->refused ? 1 : 0;
}

int cmd_send(int argc, char **argv)
{
    send_opts o = {NULL, NULL, "./events-outbox.db", 60000, 500};
    const char *file, *name;
    FILE *in;
    int status;
    if (parse_send(argc, argv, &o, &file, &status)) return status;
    if (open_input(file, &in, &name)) return 2;
    events_emitter *em;
    if (open_emitter(&o, &em)) {
        if (in && in != stdin) fclose(in);
        return 2;
    }
    long long mark = dead_mark(o.outbox);
    events_stats st;
    events_emitter_stats(em, &st);
    uint64_t earlier = st.queued;
    progress p = {isatty(2), now_ms(), 0, earlier};
    int64_t deadline = now_ms() + o.timeout_ms;
    counts c = {0, 0};
    int fatal = 0;
    if (in) {
        fatal = read_input(em, in, name, &c, &p, deadline) < 0;
        if (in != stdin) fclose(in);
    }
    if (!fatal) wait_delivery(em, &p, deadline);
    progress_draw(&p, em, "sending", 1);
    progress_end(&p);
    events_emitter_stats(em, &st);
    events_emitter_close(em, 0);
    return report(&o, &c, earlier, &st, mark, fatal);
}
