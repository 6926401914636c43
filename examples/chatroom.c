/*
 * chatroom.c - a small service that emits events with libevents.
 *
 * A chat room keeps its messages in SQLite. Every message is stored and its
 * rpc.call event emitted in one transaction: the event exists if and only if
 * the message does. Connections produce ws.* events, the room's life do.*
 * events. Run a server, then the room:
 *
 *   events serve &
 *   ./build/examples/chatroom http://127.0.0.1:8080 ./chatroom.db
 *   events query "SELECT type, count(*) FROM events GROUP BY type"
 *
 * Build: cc chatroom.c $(pkg-config --cflags --libs events sqlite3)
 */
#include <events.h>
#include <sqlite3.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The "send" RPC: store the message and record the call, atomically. */
static int send_message(sqlite3 *db, events_emitter *em, const char *user, const char *text)
{
    double start = now_ms();
    sqlite3_stmt *st;
    int ok = events_begin(em) == EVENTS_OK; /* BEGIN on the room's own database */
    ok = ok && sqlite3_prepare_v2(db, "INSERT INTO messages(user, text) VALUES (?, ?)", -1, &st,
                                  NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
        ok = sqlite3_step(st) == SQLITE_DONE;
        sqlite3_finalize(st);
    }
    if (!ok) { /* the failed call is recorded too, outside the rolled-back transaction */
        events_rollback(em);
        events_emit_rpc(em, "chat", "send", now_ms() - start, 0, sqlite3_errmsg(db));
        return -1;
    }
    int rc = events_emit_rpc(em, "chat", "send", now_ms() - start, 1, NULL);
    if (rc != EVENTS_OK) { /* e.g. EVENTS_EFULL: refuse the message rather than lose its event */
        fprintf(stderr, "chatroom: %s\n", events_errmsg());
        events_rollback(em);
        return -1;
    }
    return events_commit(em) == EVENTS_OK ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *endpoint = argc > 1 ? argv[1] : "http://127.0.0.1:8080";
    const char *path = argc > 2 ? argv[2] : "./chatroom.db";

    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        fprintf(stderr, "chatroom: %s: %s\n", path, sqlite3_errmsg(db));
        return 1;
    }
    sqlite3_busy_timeout(db, 5000); /* the emitter's sender writes the outbox too */
    sqlite3_exec(
        db, "CREATE TABLE IF NOT EXISTS messages(id INTEGER PRIMARY KEY, user TEXT, text TEXT)", 0,
        0, 0);

    /* One emitter for the room; its outbox is a table in the room's database. */
    events_config cfg = {0};
    cfg.endpoint = endpoint;
    cfg.db = db;
    cfg.identity =
        (events_identity){.id = "room-17", .name = "lobby", .cls = "ChatRoom", .colo = "local"};
    events_emitter *em;
    if (events_emitter_open(&cfg, &em) != EVENTS_OK) {
        fprintf(stderr, "chatroom: %s\n", events_errmsg());
        return 1;
    }

    events_emit_lifecycle(em, EVENTS_DO_CREATE, NULL);
    const char *users[] = {"ada", "grace", "linus"};
    for (int i = 0; i < 3; i++) events_emit_ws(em, EVENTS_WS_CONNECT, i + 1, -1, NULL, -1);
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 3; i++) {
            char text[64];
            snprintf(text, sizeof text, "message %d from %s", round, users[i]);
            events_emit_ws(em, EVENTS_WS_MESSAGE, -1, -1, NULL, (long long)sizeof text);
            send_message(db, em, users[i], text);
        }
    }
    /* a custom event: any dotted type, any JSON object of fields */
    events_emit(em, "chat.topic_changed", "{\"topic\":\"events\",\"by\":\"ada\"}");
    for (int i = 2; i >= 0; i--) events_emit_ws(em, EVENTS_WS_CLOSE, i, 1000, "bye", -1);
    events_emit_lifecycle(em, EVENTS_DO_HIBERNATE, "idle");

    /* Wait up to 10 s for the server; what it has not taken stays in the outbox for next time. */
    int rc = events_flush(em, 10000);
    events_stats st;
    events_emitter_stats(em, &st);
    printf("chatroom: %llu delivered, %llu queued, %llu dead%s%s\n",
           (unsigned long long)st.delivered, (unsigned long long)st.queued,
           (unsigned long long)st.dead, rc ? ": " : "", rc ? events_errmsg() : "");
    events_emitter_close(em, 1000);
    sqlite3_close(db);
    return rc == EVENTS_OK ? 0 : 2;
}
