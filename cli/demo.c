/*
 * demo.c - `events demo`: a small chat service run through libevents against
 * a server, so that the dashboard has something to show.
 *
 * Each chat room is an object with its own SQLite database, emitter and
 * identity (do.id, do.name, do.class "ChatRoom", do.colo). Users join and
 * leave (ws.connect, ws.close, RPC join/leave, the users and rooms
 * collections change), send, edit and delete messages (RPC calls with
 * latencies drawn from a long-tailed distribution and a few errors, the
 * messages collection changes), read history (a slower RPC), and now and
 * then a room's alarm fires or it hibernates (do.* lifecycle events).
 */
#include "cli.h"
#include "events.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/*
 * Set to 1 by on_signal (SIGINT, SIGTERM, on whichever thread the signal
 * lands) and read by run_steps on the main thread; sig_atomic_t, so no lock.
 * Never reset: one run per process.
 */
static volatile sig_atomic_t stop;
static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

typedef struct room {
    char id[32], name[32], colo[8], path[4200];
    sqlite3 *db;
    events_emitter *em;
    events_collection *users, *rooms, *messages;
    int members;
    long next_msg;
} room;

static const char *const NAMES[] = {"lobby", "general", "random", "support",
                                    "dev",   "ops",     "music",  "games"};
static const char *const COLOS[] = {"FRA", "IAD", "SIN", "GRU", "LHR", "NRT", "SYD", "ORD"};
static const char *const USERS[] = {"ada", "bob", "cyd", "dee", "eve", "fay", "gus", "hal",
                                    "ivy", "jon", "kim", "lea", "max", "ned", "ora", "pat"};
static const char *const WORDS[] = {"hello",  "deploy",   "lunch",   "bug",     "ship",
                                    "coffee", "review",   "merge",   "tests",   "green",
                                    "prod",   "rollback", "standup", "latency", "cache"};

static double uniform(void)
{
    return (rand() + 1.0) / ((double)RAND_MAX + 2.0);
}

/* A long-tailed latency: log-normal around median_ms. */
static double latency(double median_ms)
{
    double z = sqrt(-2 * log(uniform())) * cos(2 * M_PI * uniform());
    return median_ms * exp(0.6 * z);
}

static int room_open(room *r, int i, const char *dir, const char *server, const char *token)
{
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "room-%d", i + 1);
    snprintf(r->name, sizeof r->name, "%s", NAMES[i % 8]);
    snprintf(r->colo, sizeof r->colo, "%s", COLOS[i % 8]);
    snprintf(r->path, sizeof r->path, "%s/%s.db", dir, r->id);
    if (sqlite3_open(r->path, &r->db) != SQLITE_OK) {
        fprintf(stderr, "events demo: %s: %s\n", r->path, sqlite3_errmsg(r->db));
        return -1;
    }
    sqlite3_busy_timeout(r->db, 5000);
    events_config c;
    memset(&c, 0, sizeof c);
    c.endpoint = server;
    c.token = token;
    c.db = r->db;
    c.flush_interval_ms = 250;
    c.backoff_min_ms = 250;
    c.backoff_max_ms = 5000;
    c.identity.id = r->id;
    c.identity.name = r->name;
    c.identity.cls = "ChatRoom";
    c.identity.colo = r->colo;
    events_track_config tc = {.source = r->id};
    if (events_emitter_open(&c, &r->em) || events_track(r->db, &tc) ||
        events_collection_open(r->em, "users", NULL, &r->users) ||
        events_collection_open(r->em, "rooms", NULL, &r->rooms) ||
        events_collection_open(r->em, "messages", NULL, &r->messages)) {
        fprintf(stderr, "events demo: %s: %s\n", r->id, events_errmsg());
        return -1;
    }
    events_emit_lifecycle(r->em, EVENTS_DO_CREATE, "demo started");
    char doc[256];
    snprintf(doc, sizeof doc, "{\"name\":\"%s\",\"colo\":\"%s\",\"members\":0}", r->name, r->colo);
    events_collection_put(r->rooms, r->id, doc);
    return 0;
}

/*
 * Stopping. The rooms' senders run side by side, so the rooms are given one
 * shared deadline to deliver what they hold (flushed one after the other, each
 * with what is left of it), not a timeout each: when the server has gone, the
 * first room's flush uses the time up and the others stop at once (a room
 * whose last request got no answer at all is not waited for). What is not
 * delivered stays in the outboxes, where the next run sends it first.
 */
#define STOP_MS 1500

static void room_stop(room *r)
{
    if (!r->em) return;
    events_emit_lifecycle(r->em, EVENTS_DO_EVICT, "demo stopped");
    events_collection_close(r->users);
    events_collection_close(r->rooms);
    events_collection_close(r->messages);
    r->users = r->rooms = r->messages = NULL;
}

/* Closes the room's emitter (flushing until deadline_ms at most) and its database. Returns the
 * rows its outbox still holds (or -1 if it cannot tell), and the last send error in why. */
static long room_close(room *r, int64_t deadline_ms, char *why, size_t cap)
{
    long left = 0;
    if (r->em) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        int64_t now = (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
        events_stats st;
        events_emitter_stats(r->em, &st);
        /* a server that did not answer the last request is not waited for */
        if (deadline_ms > now && !(st.last_status == 0 && st.last_error[0])) {
            events_flush(r->em, deadline_ms - now);
            events_emitter_stats(r->em, &st);
        }
        if (st.last_error[0] && !why[0]) snprintf(why, cap, "%s", st.last_error);
        events_emitter_close(r->em, 0);
        r->em = NULL;
    }
    if (r->db) {
        sqlite3_stmt *q;
        left = -1;
        if (sqlite3_prepare_v2(r->db, "SELECT count(*) FROM _events_outbox", -1, &q, NULL) ==
                SQLITE_OK &&
            sqlite3_step(q) == SQLITE_ROW)
            left = (long)sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
        events_untrack(r->db);
        sqlite3_close(r->db);
        r->db = NULL;
    }
    return left;
}

/* One step of the workload in room r. */
static void step(room *r)
{
    double p = uniform();
    const char *user = USERS[rand() % 16];
    char doc[512], id[64];
    if (p < 0.45) { /* send */
        double ms = latency(8);
        int ok = uniform() > 0.02;
        snprintf(id, sizeof id, "%s-m%ld", r->id, ++r->next_msg);
        snprintf(doc, sizeof doc,
                 "{\"room\":\"%s\",\"user\":\"%s\",\"text\":\"%s %s\",\"edited\":false}", r->id,
                 user, WORDS[rand() % 15], WORDS[rand() % 15]);
        if (ok) events_collection_put(r->messages, id, doc);
        events_emit_rpc(r->em, "chat", "sendMessage", ms, ok, ok ? NULL : "rate limited");
        events_emit_ws(r->em, EVENTS_WS_MESSAGE, r->members, -1, NULL, 40 + rand() % 400);
    } else if (p < 0.60) { /* history */
        double ms = latency(35);
        int ok = uniform() > 0.01;
        events_emit_rpc(r->em, "chat", "getHistory", ms, ok, ok ? NULL : "timeout");
    } else if (p < 0.72 && r->next_msg) { /* edit */
        snprintf(id, sizeof id, "%s-m%ld", r->id, 1 + rand() % r->next_msg);
        if (events_collection_has(r->messages, id) == 1) {
            snprintf(doc, sizeof doc,
                     "{\"room\":\"%s\",\"user\":\"%s\",\"text\":\"%s (edited)\",\"edited\":true}",
                     r->id, user, WORDS[rand() % 15]);
            events_collection_put(r->messages, id, doc);
            events_emit_rpc(r->em, "chat", "editMessage", latency(6), 1, NULL);
        }
    } else if (p < 0.78 && r->next_msg) { /* delete */
        snprintf(id, sizeof id, "%s-m%ld", r->id, 1 + rand() % r->next_msg);
        if (events_collection_has(r->messages, id) == 1) {
            events_collection_delete(r->messages, id);
            events_emit_rpc(r->em, "chat", "deleteMessage", latency(5), 1, NULL);
        }
    } else if (p < 0.90) { /* join */
        r->members++;
        events_emit_ws(r->em, EVENTS_WS_CONNECT, r->members, -1, NULL, -1);
        events_emit_rpc(r->em, "chat", "join", latency(3), 1, NULL);
        snprintf(doc, sizeof doc, "{\"name\":\"%s\",\"room\":\"%s\",\"online\":true}", user, r->id);
        events_collection_put(r->users, user, doc);
        snprintf(doc, sizeof doc, "{\"name\":\"%s\",\"colo\":\"%s\",\"members\":%d}", r->name,
                 r->colo, r->members);
        events_collection_put(r->rooms, r->id, doc);
    } else if (p < 0.98 && r->members > 0) { /* leave */
        r->members--;
        int err = uniform() < 0.1;
        events_emit_ws(r->em, err ? EVENTS_WS_ERROR : EVENTS_WS_CLOSE, r->members,
                       err ? 1006 : 1000, err ? "connection lost" : "bye", -1);
        events_emit_rpc(r->em, "chat", "leave", latency(2), 1, NULL);
        snprintf(doc, sizeof doc, "{\"name\":\"%s\",\"room\":\"%s\",\"online\":false}", user,
                 r->id);
        events_collection_put(r->users, user, doc);
        snprintf(doc, sizeof doc, "{\"name\":\"%s\",\"colo\":\"%s\",\"members\":%d}", r->name,
                 r->colo, r->members);
        events_collection_put(r->rooms, r->id, doc);
    } else {
        events_emit_lifecycle(r->em, uniform() < 0.7 ? EVENTS_DO_ALARM : EVENTS_DO_HIBERNATE,
                              uniform() < 0.5 ? "cleanup" : "idle");
    }
}

typedef struct demo_opts {
    const char *server, *token, *dir;
    long rooms;
    int64_t duration; /* ms; 0: until a signal */
    uint64_t rate;    /* steps per second */
} demo_opts;

/* The flags into o. Returns 0, or -1 when the command is to return *status at once. */
static int parse_demo(int argc, char **argv, demo_opts *o, int *status)
{
    const cli_option opts[] = {
        {"server", "EVENTS_SERVER", OPT_STR, &o->server, "URL",
         "the server (default http://127.0.0.1:8080)"},
        {"token", "EVENTS_TOKEN", OPT_STR, &o->token, "TOKEN",
         "bearer token with the ingest scope"},
        {"rooms", NULL, OPT_INT, &o->rooms, "N",
         "chat rooms, each an object with its own database (default 4)"},
        {"rate", NULL, OPT_SIZE, &o->rate, "N",
         "workload steps per second, all rooms together (default 20)"},
        {"duration", NULL, OPT_DURATION, &o->duration, "DURATION",
         "stop after this (default: at Ctrl+C)"},
        {"dir", NULL, OPT_STR, &o->dir, "DIR",
         "where the rooms' databases live (default ./events-demo)"},
        {NULL, NULL, 0, NULL, NULL, NULL},
    };
    if (cli_options_take_no_args(
            "demo",
            "Usage: events demo [OPTIONS]\n\n"
            "Runs a small chat service through libevents against a server: RPC calls with\n"
            "varying latency and some errors, WebSocket and lifecycle events, and changes to\n"
            "the users, rooms and messages collections, until interrupted.\n"
            "At Ctrl+C (or --duration) the rooms have 1.5 s together to deliver what they\n"
            "hold (none if the server stopped answering); what is left stays in the rooms'\n"
            "outboxes in DIR, is counted on the last line, and is sent first by the next run.",
            opts, argc, argv, status))
        return -1;
    if (o->rooms < 1 || o->rooms > 64 || o->rate < 1 || o->rate > 100000) {
        fprintf(stderr, "events demo: --rooms 1 to 64, --rate 1 to 100000\n");
        *status = 2;
        return -1;
    }
    if (!o->dir) o->dir = "./events-demo";
    return 0;
}

/* The rooms' directory, the signals that stop the run, and the random seed. 0, or -1. */
static int prepare(const char *dir)
{
    if (mkdir(dir, 0755) && errno != EEXIST) {
        fprintf(stderr, "events demo: cannot create %s: %s\n", dir, strerror(errno));
        return -1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    return 0;
}

/* Steps at o->rate, in random rooms, until a signal or o->duration. Returns the steps done. */
static unsigned long long run_steps(room *r, const demo_opts *o)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned long long steps = 0;
    while (!stop) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double el = (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
        if (o->duration && el * 1000 >= (double)o->duration) break;
        unsigned long long due = (unsigned long long)(el * (double)o->rate) + 1;
        while (steps < due && !stop) {
            step(&r[rand() % o->rooms]);
            steps++;
        }
        struct timespec nap = {0, 1000000000L / (long)(o->rate < 1000 ? o->rate : 1000)};
        nanosleep(&nap, NULL);
    }
    return steps;
}

/*
 * Stops every room, then closes them within STOP_MS together. Returns the
 * events left in their outboxes, or -1 when one could not be counted; why says
 * why the server did not take them, when it said.
 */
static long close_rooms(room *r, long n, char *why, size_t cap)
{
    for (long k = 0; k < n; k++) room_stop(&r[k]);
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int64_t deadline = (int64_t)t1.tv_sec * 1000 + t1.tv_nsec / 1000000 + STOP_MS;
    long left = 0;
    int unknown = 0;
    for (long k = 0; k < n; k++) {
        long m = room_close(&r[k], deadline, why, cap);
        if (m < 0)
            unknown = 1;
        else
            left += m;
    }
    return unknown ? -1 : left;
}

/* The last line: the steps done and what stays in the outboxes. */
static void report(const char *dir, unsigned long long steps, long left, const char *why)
{
    fprintf(stderr, "events demo: %llu steps done", steps);
    if (left < 0)
        fprintf(stderr, "; the outboxes of %s could not be counted\n", dir);
    else if (!left)
        fprintf(stderr, "; every event was delivered\n");
    else if (why[0])
        fprintf(stderr,
                "; %ld events stay in the outboxes of %s for its next run (the server did "
                "not take them: %s)\n",
                left, dir, why);
    else
        fprintf(stderr, "; %ld events stay in the outboxes of %s for its next run\n", left, dir);
}

int cmd_demo(int argc, char **argv)
{
    demo_opts o = {"http://127.0.0.1:8080", NULL, NULL, 4, 0, 20};
    int status;
    if (parse_demo(argc, argv, &o, &status)) return status;
    if (prepare(o.dir)) return 1;
    room *r = calloc((size_t)o.rooms, sizeof *r);
    int rc = 0;
    for (long k = 0; k < o.rooms && !rc; k++)
        rc = room_open(&r[k], (int)k, o.dir, o.server, o.token);
    unsigned long long steps = 0;
    if (!rc) {
        fprintf(stderr, "events demo: %ld rooms sending to %s, %llu steps/s%s\n", o.rooms, o.server,
                (unsigned long long)o.rate, o.duration ? "" : " (Ctrl+C stops)");
        steps = run_steps(r, &o);
    }
    char why[256] = "";
    long left = close_rooms(r, o.rooms, why, sizeof why);
    free(r);
    if (!rc) report(o.dir, steps, left, why);
    return rc ? 1 : 0;
}
