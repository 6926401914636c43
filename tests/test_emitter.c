/*
 * test_emitter.c - libevents: the emitter, its outbox and its sender, against
 * a real `events serve` on a loopback port (and, for the faults a healthy
 * server never shows, a scripted server in front of it: faultsrv.c).
 *
 * Delivery is checked in the lake itself: the server is stopped, its files
 * are read, and every event must be there exactly once.
 */
#include "events.h"
#include "faultsrv.h"
#include "harness.h"
#include "test.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------- */

static void dead_url(char *out, size_t n)
{
    snprintf(out, n, "http://127.0.0.1:%d", refusing_port());
}

/* A config with short delays, for tests. */
static events_config quick(const char *endpoint, const char *outbox)
{
    events_config c;
    memset(&c, 0, sizeof c);
    c.endpoint = endpoint;
    c.db_path = outbox;
    c.memory_only = outbox == NULL;
    c.flush_interval_ms = 50;
    c.backoff_min_ms = 20;
    c.backoff_max_ms = 200;
    c.timeout_ms = 5000;
    c.identity.id = "room-1";
    c.identity.cls = "TestRoom";
    return c;
}

static events_emitter *open_or_fail(const events_config *c)
{
    events_emitter *em = NULL;
    int rc = events_emitter_open(c, &em);
    if (rc)
        test_fail(__FILE__, __LINE__, "events_emitter_open: %s: %s", events_strerror(rc),
                  events_errmsg());
    return em;
}

static long long sql_int(const char *path, const char *sql)
{
    sqlite3 *db;
    long long v = -1;
    if (sqlite3_open(path, &db) == SQLITE_OK) {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return v;
}

/* The first column of the first row, as text (caller frees), or NULL. */
static char *sql_text(const char *path, const char *sql)
{
    sqlite3 *db;
    char *v = NULL;
    if (sqlite3_open(path, &db) == SQLITE_OK) {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
            v = strdup((const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return v;
}

/*
 * Stops the server (SIGTERM: it seals what it holds) and reads its lake: for
 * each event of the type, counts[n]++ (n its "n" member, below max). Returns
 * how many events of the type there are; *bad counts lines that do not parse
 * or lack a proper n.
 */
static int lake_count(srv *s, const char *type, unsigned char *counts, int max, int *bad)
{
    CHECK_INT(0, srv_stop(s, SIGTERM));
    buf all = BUF_INIT;
    lake_read_all(s->lake, &all, NULL);
    int total = 0;
    *bad = 0;
    const char *p = all.p, *end = all.p + all.len;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            (*bad)++;
            break;
        }
        json_t *v = json_loadb(p, (size_t)(nl - p), JSON_REJECT_DUPLICATES, NULL);
        const char *t = v ? json_string_value(json_object_get(v, "type")) : NULL;
        if (!t) {
            (*bad)++;
        } else if (!strcmp(t, type)) {
            json_t *n = json_object_get(v, "n");
            long long k = json_is_integer(n) ? json_integer_value(n) : -1;
            if (k < 0 || k >= max)
                (*bad)++;
            else if (counts[k] < 255)
                counts[k]++;
            total++;
        }
        json_decref(v);
        p = nl + 1;
    }
    buf_free(&all);
    return total;
}

/* Checks that n = 0..count-1 each appear exactly once. */
static void check_exactly_once(const unsigned char *counts, int count, int max)
{
    int missing = 0, twice = 0, extra = 0;
    for (int i = 0; i < max; i++) {
        if (i < count && counts[i] == 0) missing++;
        if (counts[i] > 1) twice++;
        if (i >= count && counts[i]) extra++;
    }
    CHECK_INT(0, missing);
    CHECK_INT(0, twice);
    CHECK_INT(0, extra);
}

/* Stops the server; its lake must hold the events of the type numbered 0..count-1, each once. */
static void expect_in_lake(srv *s, const char *type, int count)
{
    int max = count + 16, bad;
    unsigned char *counts = calloc((size_t)max, 1);
    CHECK_INT(count, lake_count(s, type, counts, max, &bad));
    CHECK_INT(0, bad);
    check_exactly_once(counts, count, max);
    free(counts);
}

static int emit_n(events_emitter *em, const char *type, int n)
{
    char f[64];
    snprintf(f, sizeof f, "{\"n\":%d}", n);
    return events_emit(em, type, f);
}

typedef struct tmp {
    char *dir;
    char lake[1024], outbox[1024];
} tmp;

static void tmp_make(tmp *t, const char *tag)
{
    t->dir = test_tmpdir(tag);
    snprintf(t->lake, sizeof t->lake, "%s/lake", t->dir);
    snprintf(t->outbox, sizeof t->outbox, "%s/outbox.db", t->dir);
}

static void tmp_free(tmp *t, srv *s)
{
    if (s && test_failed_now()) srv_dump_log(s);
    if (s && s->pid) srv_stop(s, SIGKILL);
    if (s && s->log[0]) unlink(s->log);
    test_rmtree(t->dir);
    free(t->dir);
}

static const char *const SEAL_FAST[] = {"--seal-age", "200ms", NULL};

/* A scripted server in front of the real one (faultsrv.h). */
static faultsrv *faultsrv_before(const srv *s, const fault_step *script, size_t n)
{
    char up[128];
    snprintf(up, sizeof up, "%s/ingest", s->url);
    return faultsrv_start(up, script, n);
}

/* ---- configuration and bad input ------------------------------------------------- */

TEST(open_refuses_bad_config)
{
    events_emitter *em = (events_emitter *)1;
    events_config c = quick("http://127.0.0.1:1", NULL);
    c.memory_only = 0;
    CHECK_INT(EVENTS_EINVAL, events_emitter_open(&c, &em));
    CHECK(em == NULL);
    CHECK_CONTAINS("exactly one of db_path, db and memory_only", events_errmsg());

    c.memory_only = 1;
    c.db_path = "/tmp/x.db";
    CHECK_INT(EVENTS_EINVAL, events_emitter_open(&c, &em));

    c = quick("ftp://127.0.0.1:1", NULL);
    CHECK_INT(EVENTS_EINVAL, events_emitter_open(&c, &em));
    CHECK_CONTAINS("http:// or https://", events_errmsg());
    c = quick(NULL, NULL);
    CHECK_INT(EVENTS_EINVAL, events_emitter_open(&c, &em));

    c = quick("http://127.0.0.1:1", NULL);
    c.token = "abc\r\nX-Evil: 1";
    CHECK_INT(EVENTS_EINVAL, events_emitter_open(&c, &em));
    CHECK_CONTAINS("line break", events_errmsg());

    c = quick("http://127.0.0.1:1", NULL);
    c.batch_size = 10001;
    CHECK_INT(EVENTS_EINVAL, events_emitter_open(&c, &em));
    CHECK_CONTAINS("10000 events", events_errmsg());
    c.batch_size = 0;
    c.batch_bytes = 9u << 20;
    CHECK_INT(EVENTS_EINVAL, events_emitter_open(&c, &em));
    c.batch_bytes = 0;
    c.backoff_min_ms = 5000;
    c.backoff_max_ms = 1000;
    CHECK_INT(EVENTS_EINVAL, events_emitter_open(&c, &em));

    c = quick("http://127.0.0.1:1", NULL);
    c.identity.name = "bad \xff utf-8";
    CHECK_INT(EVENTS_EINVAL, events_emitter_open(&c, &em));
    CHECK_CONTAINS("identity", events_errmsg());

    CHECK_INT(EVENTS_EINVAL, events_emitter_open(NULL, &em));

    /* a service handle on an in-memory database cannot hold a durable outbox */
    sqlite3 *db;
    sqlite3_open(":memory:", &db);
    c = quick("http://127.0.0.1:1", NULL);
    c.memory_only = 0;
    c.db = db;
    CHECK_INT(EVENTS_EINVAL, events_emitter_open(&c, &em));
    CHECK_CONTAINS("memory_only", events_errmsg());
    sqlite3_close(db);

    /* an outbox file that cannot be created */
    c = quick("http://127.0.0.1:1", "/nonexistent-dir/outbox.db");
    CHECK_INT(EVENTS_EDB, events_emitter_open(&c, &em));
    CHECK_CONTAINS("/nonexistent-dir/outbox.db", events_errmsg());

    CHECK_STR("EVENTS_EFULL: the outbox is full", events_strerror(EVENTS_EFULL));
    CHECK_CONTAINS("unknown", events_strerror(42));
}

/* Bad types and bad fields are refused, each with its reason; so are a missing type or emitter. */
static void emit_refuses_bad_types_and_fields(events_emitter *em)
{
    struct {
        const char *type, *fields, *msg;
        int rc;
    } bad[] = {
        {"Bad.Type", NULL, "type \"Bad.Type\" must match", EVENTS_EINVAL},
        {"", NULL, "must match", EVENTS_EINVAL},
        {"a..b", NULL, "must match", EVENTS_EINVAL},
        {"x\"y", NULL, "must match", EVENTS_EINVAL},
        {"ok", "[1,2]", "must be a JSON object", EVENTS_EINVAL},
        {"ok", "42", "must be a JSON object", EVENTS_EINVAL},
        {"ok", "{\"a\":}", "fields are not JSON", EVENTS_EINVAL},
        {"ok", "{\"a\":1", "fields are not JSON", EVENTS_EINVAL},
        {"ok", "{\"a\":1} x", "text after the object", EVENTS_EINVAL},
        {"ok", "{\"a\":1}{}", "text after the object", EVENTS_EINVAL},
        {"ok", "{\"id\":\"x\"}", "may not set \"id\"", EVENTS_EINVAL},
        {"ok", "{\"ts\":1}", "may not set \"ts\"", EVENTS_EINVAL},
        {"ok", "{\"do\":{}}", "may not set \"do\"", EVENTS_EINVAL},
        {"ok", "{\"receivedAt\":\"x\"}", "may not set \"receivedAt\"", EVENTS_EINVAL},
        {"ok", "{\"type\":\"other\"}", "duplicate key", EVENTS_EINVAL},
        {"ok", "{\"a\":1,\"a\":2}", "duplicate key", EVENTS_EINVAL},
        {"ok", "{\"s\":\"\xc3\x28\"}", "UTF-8", EVENTS_EINVAL},
        {"ok", "{\"s\":\"\\ud800\"}", "surrogate", EVENTS_EINVAL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = events_emit(em, bad[i].type, bad[i].fields);
        if (rc != bad[i].rc)
            test_fail(__FILE__, __LINE__, "emit(%s, %s): expected %d, got %d (%s)", bad[i].type,
                      bad[i].fields ? bad[i].fields : "NULL", bad[i].rc, rc, events_errmsg());
        CHECK_CONTAINS(bad[i].msg, events_errmsg());
    }
    CHECK_INT(EVENTS_EINVAL, events_emit(em, NULL, NULL));
    CHECK_INT(EVENTS_EINVAL, events_emit(NULL, "ok", NULL));
}

/* Fields nested too deep are refused; so are fields too big, alone or with the envelope. */
static void emit_refuses_too_deep_and_too_big(events_emitter *em)
{
    buf deep = BUF_INIT;
    buf_puts(&deep, "{\"d\":");
    for (int i = 0; i < 70; i++) buf_putc(&deep, '[');
    for (int i = 0; i < 70; i++) buf_putc(&deep, ']');
    buf_putc(&deep, '}');
    CHECK_INT(EVENTS_EINVAL, events_emit(em, "ok", buf_cstr(&deep)));
    CHECK_CONTAINS("levels deep", events_errmsg());
    buf_free(&deep);

    buf big = BUF_INIT;
    buf_puts(&big, "{\"s\":\"");
    for (int i = 0; i < 300000; i++) buf_putc(&big, 'x');
    buf_puts(&big, "\"}");
    CHECK_INT(EVENTS_ETOOBIG, events_emit(em, "ok", buf_cstr(&big)));
    CHECK_CONTAINS("over max_event_bytes", events_errmsg());
    big.len = 6 + 262144 - 40;
    buf_puts(&big, "\"}");
    CHECK_INT(EVENTS_ETOOBIG, events_emit(em, "ok", buf_cstr(&big)));
    CHECK_CONTAINS("with its envelope", events_errmsg());
    buf_free(&big);
}

/* The typed helpers (rpc, lifecycle, ws, json) refuse their bad arguments. */
static void typed_helpers_refuse_bad_arguments(events_emitter *em)
{
    CHECK_INT(EVENTS_EINVAL, events_emit_rpc(em, NULL, NULL, 1, 1, NULL));
    CHECK_INT(EVENTS_EINVAL, events_emit_rpc(em, NULL, "m", -1, 1, NULL));
    CHECK_INT(EVENTS_EINVAL, events_emit_rpc(em, NULL, "m", NAN, 1, NULL));
    CHECK_INT(EVENTS_EINVAL, events_emit_rpc(em, NULL, "m", 1, 1, "bad \xff"));
    CHECK_INT(EVENTS_EINVAL, events_emit_lifecycle(em, (events_lifecycle)9, NULL));
    CHECK_INT(EVENTS_EINVAL, events_emit_ws(em, (events_ws)-1, 1, 2, NULL, 3));
    CHECK_INT(EVENTS_EINVAL, events_emit_json(em, "{\"type\":\"ok\""));
    CHECK_INT(EVENTS_EINVAL, events_emit_json(em, "{\"n\":1}"));
    CHECK_CONTAINS("\"type\" is required", events_errmsg());
    CHECK_INT(EVENTS_EINVAL, events_emit_json(em, "{\"type\":\"ok\",\"id\":\"bad id!\"}"));
    CHECK_INT(EVENTS_EINVAL, events_emit_json(em, NULL));
}

TEST(emit_refuses_bad_input)
{
    events_config c = quick("http://127.0.0.1:1", NULL);
    events_emitter *em = open_or_fail(&c);
    REQUIRE(em);
    emit_refuses_bad_types_and_fields(em);
    emit_refuses_too_deep_and_too_big(em);
    typed_helpers_refuse_bad_arguments(em);
    /* no transactions without a database */
    CHECK_INT(EVENTS_ESTATE, events_begin(em));
    CHECK_INT(EVENTS_ESTATE, events_commit(em));

    events_stats st;
    events_emitter_stats(em, &st);
    CHECK_INT(0, st.queued); /* nothing refused was taken */
    CHECK_INT(EVENTS_OK, events_emitter_close(em, 0));
}

TEST(event_shape)
{
    tmp t;
    tmp_make(&t, "emit-shape");
    char url[64];
    dead_url(url, sizeof url);
    events_config c = quick(url, t.outbox);
    c.identity.name = "lobby";
    c.identity.colo = "FRA";
    events_emitter *em = open_or_fail(&c);
    REQUIRE(em);
    CHECK_INT(0, events_emit(em, "chat.message", " { \"room\" : \"a\\u00e9\", \"n\": [1, 2] } "));
    CHECK_INT(0, events_emit(em, "plain", NULL));
    CHECK_INT(0, events_emit(em, "empty", "{}"));
    CHECK_INT(0, events_emit_rpc(em, "chat", "send", 12.5, 1, NULL));
    CHECK_INT(0, events_emit_rpc(em, NULL, "join", 3, 0, "room \"full\""));
    CHECK_INT(0, events_emit_lifecycle(em, EVENTS_DO_HIBERNATE, "idle"));
    CHECK_INT(0, events_emit_lifecycle(em, EVENTS_DO_CREATE, NULL));
    CHECK_INT(0, events_emit_ws(em, EVENTS_WS_CLOSE, 3, 1000, "bye", -1));
    CHECK_INT(0, events_emit_ws(em, EVENTS_WS_MESSAGE, -1, -1, NULL, 512));
    CHECK_INT(0, events_emit_json(
                     em, "{\"type\":\"fwd\",\"id\":\"keep-1\",\"ts\":\"2026-01-02T03:04:05+01:00\","
                         "\"receivedAt\":\"x\",\"do\":{\"id\":\"other\"},\"k\":1}"));
    CHECK_INT(0, events_emit_json(em, "{\"type\":\"fwd.bare\"}"));
    events_stats st;
    events_emitter_stats(em, &st);
    CHECK_INT(11, st.queued);
    events_emitter_close(em, 0);

    const char *want[] = {
        "\"type\":\"chat.message\",\"ts\":\"*\",\"do\":{\"id\":\"room-1\",\"name\":\"lobby\","
        "\"class\":\"TestRoom\","
        "\"colo\":\"FRA\"},\"room\":\"a\\u00e9\",\"n\":[1,2]}",
        "\"type\":\"plain\",\"ts\":\"*\",\"do\":{*}}",
        "\"type\":\"empty\",\"ts\":\"*\",\"do\":{*}}",
        "\"type\":\"rpc.call\",\"ts\":\"*\",\"do\":{*},\"method\":\"send\",\"namespace\":\"chat\","
        "\"durationMs\":12.5,\"success\":true}",
        "\"type\":\"rpc.call\",\"ts\":\"*\",\"do\":{*},\"method\":\"join\",\"durationMs\":3,"
        "\"success\":false,"
        "\"error\":\"room \\\"full\\\"\"}",
        "\"type\":\"do.hibernate\",\"ts\":\"*\",\"do\":{*},\"reason\":\"idle\"}",
        "\"type\":\"do.create\",\"ts\":\"*\",\"do\":{*}}",
        "\"type\":\"ws.close\",\"ts\":\"*\",\"do\":{*},\"connectionCount\":3,\"code\":1000,"
        "\"reason\":\"bye\"}",
        "\"type\":\"ws.message\",\"ts\":\"*\",\"do\":{*},\"size\":512}",
    };
    sqlite3 *db;
    sqlite3_open(t.outbox, &db);
    sqlite3_stmt *st2;
    sqlite3_prepare_v2(db, "SELECT event FROM _events_outbox ORDER BY seq", -1, &st2, NULL);
    for (size_t i = 0; i < 11; i++) {
        REQUIRE(sqlite3_step(st2) == SQLITE_ROW);
        const char *ev = (const char *)sqlite3_column_text(st2, 0);
        if (i == 9) {
            CHECK_STR("{\"id\":\"keep-1\",\"type\":\"fwd\",\"ts\":\"2026-01-02T02:04:05.000Z\","
                      "\"do\":{\"id\":\"other\"},"
                      "\"k\":1}",
                      ev);
            continue;
        }
        if (i == 10) {
            CHECK_CONTAINS("\"type\":\"fwd.bare\",\"ts\":\"", ev);
            CHECK_CONTAINS("\"do\":{\"id\":\"room-1\"", ev);
            continue;
        }
        /* {"id":"<26-char ULID>", then the rest, with * for the variable parts */
        CHECK(!strncmp(ev, "{\"id\":\"", 7) && strlen(ev) > 35 && ev[33] == '"' && ev[34] == ',');
        const char *w = want[i], *e = ev + 35;
        int ok = 1;
        while (*w && ok) {
            if (*w == '*') {
                w++;
                const char *next = strchr(e, *w);
                if (!next)
                    ok = 0;
                else
                    e = next;
            } else if (*w++ != *e++) {
                ok = 0;
            }
        }
        if (!ok || *e)
            test_fail(__FILE__, __LINE__, "event %zu:\n  want %s\n  got  %s", i, want[i], ev);
        CHECK(!strstr(ev, "receivedAt"));
    }
    sqlite3_finalize(st2);
    sqlite3_close(db);
    tmp_free(&t, NULL);
}

TEST(outbox_full)
{
    tmp t;
    tmp_make(&t, "emit-full");
    char url[64];
    dead_url(url, sizeof url);
    events_config c = quick(url, t.outbox);
    c.capacity = 10;
    events_emitter *em = open_or_fail(&c);
    REQUIRE(em);
    for (int i = 0; i < 10; i++) CHECK_INT(0, emit_n(em, "full.test", i));
    CHECK_INT(EVENTS_EFULL, emit_n(em, "full.test", 10));
    CHECK_CONTAINS("capacity", events_errmsg());
    events_stats st;
    events_emitter_stats(em, &st);
    CHECK_INT(10, st.queued);
    CHECK_INT(0, st.dropped);
    /* close keeps them: the next open sees them */
    CHECK_INT(EVENTS_ETIMEDOUT, events_emitter_close(em, 0));
    CHECK_CONTAINS("10 events stay in the outbox", events_errmsg());
    em = open_or_fail(&c);
    REQUIRE(em);
    events_emitter_stats(em, &st);
    CHECK_INT(10, st.queued);
    CHECK_INT(EVENTS_EFULL, emit_n(em, "full.test", 10));
    events_emitter_close(em, 0);
    CHECK_INT(10, sql_int(t.outbox, "SELECT count(*) FROM _events_outbox"));

    /* memory-only: refused and counted */
    c = quick(url, NULL);
    c.capacity = 5;
    em = open_or_fail(&c);
    REQUIRE(em);
    for (int i = 0; i < 5; i++) CHECK_INT(0, emit_n(em, "full.test", i));
    CHECK_INT(EVENTS_EFULL, emit_n(em, "full.test", 5));
    CHECK_INT(EVENTS_EFULL, emit_n(em, "full.test", 6));
    events_emitter_stats(em, &st);
    CHECK_INT(5, st.queued);
    CHECK_INT(2, st.dropped);
    CHECK_INT(EVENTS_ETIMEDOUT, events_emitter_close(em, 0));
    CHECK_CONTAINS("5 events were not delivered and are lost", events_errmsg());
    tmp_free(&t, NULL);
}

TEST(transactions)
{
    tmp t;
    tmp_make(&t, "emit-tx");
    char url[64];
    dead_url(url, sizeof url);
    events_config c = quick(url, t.outbox);
    events_emitter *em = open_or_fail(&c);
    REQUIRE(em);
    CHECK_INT(EVENTS_ESTATE, events_commit(em));
    CHECK_INT(EVENTS_ESTATE, events_rollback(em));
    CHECK_INT(0, events_begin(em));
    CHECK_INT(EVENTS_ESTATE, events_begin(em));
    for (int i = 0; i < 3; i++) CHECK_INT(0, emit_n(em, "tx.test", i));
    CHECK_INT(0, events_rollback(em));
    events_stats st;
    events_emitter_stats(em, &st);
    CHECK_INT(0, st.queued);
    CHECK_INT(0, events_begin(em));
    for (int i = 0; i < 4; i++) CHECK_INT(0, emit_n(em, "tx.test", i));
    CHECK_INT(0, sql_int(t.outbox,
                         "SELECT count(*) FROM _events_outbox")); /* not visible before commit */
    CHECK_INT(0, events_commit(em));
    events_emitter_stats(em, &st);
    CHECK_INT(4, st.queued);
    CHECK_INT(4, sql_int(t.outbox, "SELECT count(*) FROM _events_outbox"));
    /* a transaction left open at close is rolled back, and close says so */
    CHECK_INT(0, events_begin(em));
    CHECK_INT(0, emit_n(em, "tx.test", 9));
    CHECK_INT(EVENTS_ESTATE, events_emitter_close(em, 0));
    CHECK_CONTAINS("rolled back", events_errmsg());
    CHECK_INT(4, sql_int(t.outbox, "SELECT count(*) FROM _events_outbox"));
    tmp_free(&t, NULL);
}

/* The service's own handle: emits join its transactions. */
TEST(service_handle_joins_transactions)
{
    tmp t;
    tmp_make(&t, "emit-svc");
    char url[64];
    dead_url(url, sizeof url);
    sqlite3 *db;
    REQUIRE(sqlite3_open(t.outbox, &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_exec(db, "CREATE TABLE msgs(id INTEGER PRIMARY KEY, body TEXT)", NULL, NULL, NULL);
    events_config c = quick(url, NULL);
    c.memory_only = 0;
    c.db = db;
    /* not inside a transaction */
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    events_emitter *em = NULL;
    CHECK_INT(EVENTS_ESTATE, events_emitter_open(&c, &em));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    em = open_or_fail(&c);
    REQUIRE(em);

    /* rolled back with the service's write */
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    sqlite3_exec(db, "INSERT INTO msgs(body) VALUES ('lost')", NULL, NULL, NULL);
    CHECK_INT(0, events_emit(em, "msg.sent", "{\"body\":\"lost\"}"));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    /* committed with it */
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    sqlite3_exec(db, "INSERT INTO msgs(body) VALUES ('kept')", NULL, NULL, NULL);
    CHECK_INT(0, events_emit(em, "msg.sent", "{\"body\":\"kept\"}"));
    CHECK_INT(0, sql_int(t.outbox, "SELECT count(*) FROM _events_outbox"));
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    CHECK_INT(1, sql_int(t.outbox, "SELECT count(*) FROM msgs"));
    CHECK_INT(1, sql_int(t.outbox, "SELECT count(*) FROM _events_outbox"));
    char *ev = sql_text(t.outbox, "SELECT event FROM _events_outbox");
    CHECK_CONTAINS("\"body\":\"kept\"", ev);
    free(ev);
    /* events_begin on the service's handle is its transaction */
    CHECK_INT(0, events_begin(em));
    sqlite3_exec(db, "INSERT INTO msgs(body) VALUES ('both')", NULL, NULL, NULL);
    CHECK_INT(0, events_emit(em, "msg.sent", "{\"body\":\"both\"}"));
    CHECK_INT(0, events_commit(em));
    CHECK_INT(2, sql_int(t.outbox, "SELECT count(*) FROM msgs"));
    CHECK_INT(2, sql_int(t.outbox, "SELECT count(*) FROM _events_outbox"));
    /* the emitter's count catches up with the rollback it did not see */
    events_stats st;
    events_emitter_stats(em, &st);
    CHECK_INT(2, st.queued);
    events_emitter_close(em, 0);
    sqlite3_close(db);
    tmp_free(&t, NULL);
}

/* ---- lifetimes: the emitter, its collections, its database -------------------------------- */

static int count_doc(void *ud, const char *id, const char *json)
{
    (void)id, (void)json;
    ++*(int *)ud;
    return 0;
}

/* Every call on a collection works, whether its emitter is open or not: 7 recorded transactions. */
static void collection_works(events_collection *c, const char *tag)
{
    char id[32], *doc = NULL;
    snprintf(id, sizeof id, "%s-1", tag);
    CHECK_INT(0, events_collection_put(c, id, "{\"v\":1}"));
    CHECK_INT(0, events_collection_get(c, id, &doc));
    CHECK_STR("{\"v\":1}", doc);
    events_free(doc);
    CHECK_INT(1, events_collection_has(c, id));
    uint64_t n = 0;
    int seen = 0;
    CHECK_INT(0, events_collection_count(c, &n));
    CHECK_INT(0, events_collection_list(c, NULL, 0, count_doc, &seen));
    CHECK_INT(n, seen);
    const char *ids[] = {"m1", "m2"}, *docs[] = {"{}", "{\"m\":2}"};
    CHECK_INT(0, events_collection_put_many(c, 2, ids, docs));
    CHECK_INT(0, events_collection_delete_many(c, 2, ids));
    CHECK_INT(0, events_collection_delete(c, id));
    CHECK_INT(EVENTS_ENOTFOUND, events_collection_delete(c, id));
    CHECK_INT(0, events_collection_put(c, id, "{\"v\":2}"));
    CHECK_INT(0, events_collection_clear(c));
    CHECK_INT(0, events_collection_put(c, id, "{\"v\":3}"));
}

/* Every call on the tracked database works (table plain exists): 3 recorded transactions and a
 * restore. */
static void database_works(sqlite3 *db, const char *dir)
{
    char before[17], bm[17], snap_bm[17], snap[1100];
    CHECK_INT(0, events_bookmark(db, before));
    CHECK_INT(0, events_exec(db, "INSERT INTO plain(v) VALUES ('exec')"));
    CHECK_INT(0, events_tx_begin(db));
    CHECK(sqlite3_exec(db, "INSERT INTO plain(v) VALUES ('tx')", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_INT(0, events_tx_commit(db));
    CHECK_INT(0, events_tx_begin(db));
    CHECK(sqlite3_exec(db, "INSERT INTO plain(v) VALUES ('no')", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_INT(0, events_tx_rollback(db));
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    CHECK_INT(0, events_exec(db, "INSERT INTO plain(v) VALUES ('in the service''s')"));
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    CHECK_INT(0, events_bookmark(db, bm));
    CHECK_INT(strtoull(before, NULL, 16) + 3, strtoull(bm, NULL, 16));
    snprintf(snap, sizeof snap, "%s/snap-%s.db", dir, bm);
    CHECK_INT(0, events_snapshot_file(db, snap, snap_bm));
    CHECK_STR(bm, snap_bm);
    if (events_restore(db, before, 0, NULL))
        test_fail(__FILE__, __LINE__, "events_restore to %s: %s", before, events_errmsg());
    CHECK_INT(0, sql_int(snap, "SELECT count(*) FROM plain WHERE v = 'no'"));
    CHECK_INT(0, events_changes_prune(db, before));
}

static int file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/*
 * The service's handle: closing the emitter leaves its collections and the tracked database
 * to the service, every call working; what they record waits in the outbox for the next
 * emitter. (The tracker kept a pointer to the freed emitter.)
 */
TEST(emitter_closed_before_its_collections_on_the_service_handle)
{
    tmp t;
    tmp_make(&t, "life-svc");
    char url[64];
    dead_url(url, sizeof url);
    sqlite3 *db;
    REQUIRE(sqlite3_open(t.outbox, &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_exec(db, "CREATE TABLE plain(id INTEGER PRIMARY KEY, v TEXT)", NULL, NULL, NULL);
    events_config c = quick(url, NULL);
    c.memory_only = 0;
    c.db = db;
    events_emitter *em = open_or_fail(&c);
    REQUIRE(em);
    events_collection *users, *rooms;
    REQUIRE_INT(0, events_collection_open(em, "users", NULL, &users));
    REQUIRE_INT(0, events_collection_open_db(db, "rooms", NULL, &rooms));
    CHECK_INT(0, events_collection_put(users, "u0", "{}"));
    CHECK_INT(0, events_begin(em)); /* left open: rolled back at close */
    CHECK_INT(0, events_collection_put(users, "u-open", "{}"));
    CHECK_INT(EVENTS_ESTATE, events_emitter_close(em, 0));
    CHECK_CONTAINS("rolled back", events_errmsg());
    CHECK_INT(0, events_collection_has(users, "u-open"));

    collection_works(users, "u");
    collection_works(rooms, "r");
    database_works(db, t.dir);
    /* 1 + 7 + 7 + 3 + the restore */
    CHECK_INT(19, sql_int(t.outbox, "SELECT count(*) FROM _events_outbox"));

    /* the next emitter has them, and hears of new ones */
    em = open_or_fail(&c);
    REQUIRE(em);
    events_stats st;
    events_emitter_stats(em, &st);
    CHECK_INT(19, st.queued);
    CHECK_INT(0, events_collection_put(users, "u-next", "{}"));
    events_emitter_stats(em, &st);
    CHECK_INT(20, st.queued);
    CHECK_INT(EVENTS_ETIMEDOUT, events_emitter_close(em, 0));

    events_collection_close(users);
    CHECK_INT(0, events_collection_put(rooms, "r-last", "{}"));
    events_collection_close(rooms);
    CHECK_INT(21, sql_int(t.outbox, "SELECT count(*) FROM _events_outbox"));
    /* nothing of libevents is left on the connection */
    CHECK_INT(EVENTS_ESTATE, events_untrack(db));
    CHECK_INT(SQLITE_OK, sqlite3_close(db));
    tmp_free(&t, NULL);
}

/*
 * db_path: the emitter's own connection stays open for the collections opened through it, and
 * the last of them to close closes it.
 */
TEST(emitter_closed_before_its_collections_on_its_own_connection)
{
    tmp t;
    tmp_make(&t, "life-own");
    char url[64], wal[1100];
    dead_url(url, sizeof url);
    snprintf(wal, sizeof wal, "%s-wal", t.outbox);
    events_config c = quick(url, t.outbox);
    events_emitter *em = open_or_fail(&c);
    REQUIRE(em);
    events_collection *users, *rooms;
    REQUIRE_INT(0, events_collection_open(em, "users", NULL, &users));
    REQUIRE_INT(0, events_collection_open(em, "rooms", NULL, &rooms));
    CHECK_INT(0, events_collection_put(users, "u0", "{}"));
    CHECK_INT(EVENTS_ETIMEDOUT, events_emitter_close(em, 0));

    collection_works(users, "u");
    events_collection_close(users);
    collection_works(rooms, "r");
    CHECK_INT(15, sql_int(t.outbox, "SELECT count(*) FROM _events_changes"));
    CHECK_INT(15, sql_int(t.outbox, "SELECT count(*) FROM _events_outbox"));

    /* another emitter on the file meanwhile sends them */
    em = open_or_fail(&c);
    REQUIRE(em);
    events_stats st;
    events_emitter_stats(em, &st);
    CHECK_INT(15, st.queued);
    CHECK_INT(EVENTS_ETIMEDOUT, events_emitter_close(em, 0));
    CHECK(file_exists(wal)); /* the first emitter's connection, still open for rooms */
    events_collection_close(rooms);
    /* the last connection to the file is gone: SQLite folded the WAL back and removed it */
    CHECK(!file_exists(wal));
    tmp_free(&t, NULL);
}

/*
 * The emitter keeps its database tracked while it is open: closing the collections, even
 * inside events_begin's transaction, leaves transactions, snapshots and events_exec working.
 */
TEST(collections_closed_before_the_emitter)
{
    for (int own = 0; own < 2; own++) {
        tmp t;
        tmp_make(&t, own ? "life-coll-own" : "life-coll-svc");
        char url[64], wal[1100];
        dead_url(url, sizeof url);
        snprintf(wal, sizeof wal, "%s-wal", t.outbox);
        sqlite3 *db = NULL;
        events_config c = quick(url, own ? t.outbox : NULL);
        if (!own) {
            REQUIRE(sqlite3_open(t.outbox, &db) == SQLITE_OK);
            sqlite3_busy_timeout(db, 5000);
            sqlite3_exec(db, "CREATE TABLE plain(id INTEGER PRIMARY KEY, v TEXT)", NULL, NULL,
                         NULL);
            c.memory_only = 0;
            c.db = db;
        }
        events_emitter *em = open_or_fail(&c);
        REQUIRE(em);
        events_collection *users;
        REQUIRE_INT(0, events_collection_open(em, "users", NULL, &users));
        CHECK_INT(0, events_collection_put(users, "u1", "{}"));
        CHECK_INT(0, events_begin(em));
        CHECK_INT(0, events_collection_put(users, "u2", "{}"));
        CHECK_INT(0, emit_n(em, "life.test", 0));
        events_collection_close(users);
        CHECK_INT(0, events_commit(em));
        CHECK_INT(2, sql_int(t.outbox, "SELECT count(*) FROM _events_changes"));
        CHECK_INT(3, sql_int(t.outbox, "SELECT count(*) FROM _events_outbox"));
        /* still tracked: the copy is made, the upload finds nobody */
        char bm[17];
        CHECK_INT(EVENTS_EHTTP, events_snapshot(em, bm));
        CHECK_CONTAINS("snapshot", events_errmsg());
        if (db) database_works(db, t.dir);
        CHECK_INT(EVENTS_ETIMEDOUT, events_emitter_close(em, 0));
        if (db) {
            CHECK_INT(EVENTS_ESTATE, events_untrack(db)); /* the emitter's tracking went with it */
            CHECK_INT(SQLITE_OK, sqlite3_close(db));
        }
        CHECK(!file_exists(wal));
        tmp_free(&t, NULL);
    }
}

/* ---- delivery ------------------------------------------------------------------------- */

#define DOWN_N 50000

/* (a) the server is down while 50,000 events are emitted, then starts: all arrive, once. */
TEST(server_down_then_up)
{
    tmp t;
    tmp_make(&t, "emit-down");
    srv s = {0};
    REQUIRE_INT(0, srv_start(&s, t.lake, SEAL_FAST));
    REQUIRE_INT(0, srv_stop(&s, SIGTERM)); /* its port is kept for the restart */
    events_config c = quick(s.url, t.outbox);
    events_emitter *em = open_or_fail(&c);
    REQUIRE(em);
    int i = 0;
    for (; i < DOWN_N - 1000; i++) { /* in transactions of 1,000, then 1,000 on their own */
        if (i % 1000 == 0) CHECK_INT(0, events_begin(em));
        CHECK_INT(0, emit_n(em, "down.test", i));
        if (i % 1000 == 999) CHECK_INT(0, events_commit(em));
    }
    for (; i < DOWN_N; i++) CHECK_INT(0, emit_n(em, "down.test", i));
    events_stats st;
    CHECK_INT(EVENTS_ETIMEDOUT, events_flush(em, 200));
    CHECK_CONTAINS("not yet delivered", events_errmsg());
    events_emitter_stats(em, &st);
    CHECK_INT(DOWN_N, st.queued);
    CHECK_INT(0, st.delivered);
    CHECK(st.retried >= 1);
    CHECK_INT(0, st.last_status);
    CHECK(st.last_error[0] != 0);

    REQUIRE_INT(0, srv_start(&s, t.lake, SEAL_FAST));
    CHECK_INT(0, events_flush(em, 120000));
    events_emitter_stats(em, &st);
    CHECK_INT(0, st.queued);
    CHECK_INT(DOWN_N, st.delivered);
    CHECK_INT(0, st.dead);
    CHECK_INT(200, st.last_status);
    CHECK_STR("", st.last_error);
    CHECK_INT(0, events_emitter_close(em, 1000));
    CHECK_INT(0, sql_int(t.outbox, "SELECT count(*) FROM _events_outbox"));

    expect_in_lake(&s, "down.test", DOWN_N);
    tmp_free(&t, &s);
}

/* (b) the emitting process is killed mid-stream, again and again, and restarted on its outbox. */
#define KILL_ROUNDS 3
#define KILL_SPAN   100000 /* n of round r: r * KILL_SPAN + i */

static void kill_child(const char *url, const char *outbox, int round, int fd)
{
    events_config c = quick(url, outbox);
    c.batch_size = 50;
    events_emitter *em = NULL;
    if (events_emitter_open(&c, &em)) _exit(3);
    for (int i = 0; i < KILL_SPAN; i++) {
        int n = round * KILL_SPAN + i;
        if (emit_n(em, "kill.test", n)) _exit(4);
        if (write(fd, &n, sizeof n) != sizeof n) _exit(5);
    }
    _exit(0); /* not reached: killed first */
}

/*
 * The child is this program again (fork, then exec: a fresh process, as a
 * service restarting would be), told what to do by its environment.
 */
__attribute__((constructor)) static void maybe_kill_child(void)
{
    const char *spec = getenv("EMITTER_KILL_CHILD");
    if (!spec) return;
    char url[128], outbox[1024];
    int round, fd;
    if (sscanf(spec, "%127s %1023s %d %d", url, outbox, &round, &fd) != 4) _exit(2);
    kill_child(url, outbox, round, fd);
}

TEST(sigkill_mid_stream)
{
    tmp t;
    tmp_make(&t, "emit-kill");
    srv s = {0};
    REQUIRE_INT(0, srv_start(&s, t.lake, SEAL_FAST));
    int max = KILL_ROUNDS * KILL_SPAN;
    unsigned char *ok = calloc((size_t)max, 1);
    unsigned seed = (unsigned)time(NULL);
    fprintf(stderr, "  seed %u\n", seed);
    int reported = 0;
    for (int r = 0; r < KILL_ROUNDS; r++) {
        int pfd[2];
        REQUIRE(pipe(pfd) == 0);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            char spec[1200];
            snprintf(spec, sizeof spec, "%s %s %d %d", s.url, t.outbox, r, pfd[1]);
            setenv("EMITTER_KILL_CHILD", spec, 1);
            execl("/proc/self/exe", "test_emitter", (char *)NULL);
            _exit(127);
        }
        close(pfd[1]);
        int ms = 300 + (int)(rand_r(&seed) % 500);
        struct timespec t0, now;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int n, first = 1;
        /* read what the child reports, then kill it ms after its first report (a loaded machine
         * may take seconds to start it: the wait for that first report is up to 30 s) */
        do {
            struct pollfd p = {pfd[0], POLLIN, 0};
            if (poll(&p, 1, 20) == 1 && read(pfd[0], &n, sizeof n) == sizeof n && n >= 0 &&
                n < max) {
                ok[n] = 1, reported++;
                if (first) first = 0, clock_gettime(CLOCK_MONOTONIC, &t0);
            }
            clock_gettime(CLOCK_MONOTONIC, &now);
        } while ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 <
                 (first ? 30000 : ms));
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        CHECK(WIFSIGNALED(st));
        while (read(pfd[0], &n, sizeof n) == sizeof n)
            if (n >= 0 && n < max) ok[n] = 1, reported++;
        close(pfd[0]);
    }
    fprintf(stderr, "  %d emits returned OK across %d kills\n", reported, KILL_ROUNDS);
    CHECK(reported > 100);

    /* restarted on the same outbox: what was left is sent first */
    events_config c = quick(s.url, t.outbox);
    events_emitter *em = open_or_fail(&c);
    REQUIRE(em);
    CHECK_INT(0, events_flush(em, 120000));
    CHECK_INT(0, events_emitter_close(em, 1000));

    unsigned char *counts = calloc((size_t)max, 1);
    int bad;
    int total = lake_count(&s, "kill.test", counts, max, &bad);
    CHECK_INT(0, bad);
    int missing = 0, twice = 0, unreported = 0;
    for (int i = 0; i < max; i++) {
        if (ok[i] && !counts[i]) missing++;
        if (counts[i] > 1) twice++;
        if (counts[i] && !ok[i]) unreported++; /* committed, killed before it could say so */
    }
    fprintf(stderr, "  %d events in the lake, %d committed but not reported before the kill\n",
            total, unreported);
    CHECK_INT(0, missing);
    CHECK_INT(0, twice);
    CHECK(unreported <= KILL_ROUNDS);
    free(ok);
    free(counts);
    tmp_free(&t, &s);
}

/* (c) 8 threads emit into one emitter at once. */
#define THREADS 8

typedef struct thread_arg {
    events_emitter *em;
    int id, per, failed;
} thread_arg;

static void *emit_thread(void *arg)
{
    thread_arg *a = arg;
    for (int i = 0; i < a->per; i++) {
        int rc = emit_n(a->em, "threads.test", a->id * a->per + i);
        if (rc) {
            a->failed++;
            fprintf(stderr, "emit: %s\n", events_errmsg());
        }
    }
    return NULL;
}

static void threads_run(int memory, int per)
{
    tmp t;
    tmp_make(&t, memory ? "emit-thr-mem" : "emit-thr-db");
    srv s = {0};
    REQUIRE_INT(0, srv_start(&s, t.lake, SEAL_FAST));
    events_config c = quick(s.url, memory ? NULL : t.outbox);
    c.capacity = (size_t)THREADS * (size_t)per;
    events_emitter *em = open_or_fail(&c);
    REQUIRE(em);
    pthread_t th[THREADS];
    thread_arg a[THREADS];
    for (int i = 0; i < THREADS; i++) {
        a[i] = (thread_arg){em, i, per, 0};
        pthread_create(&th[i], NULL, emit_thread, &a[i]);
    }
    /* stats and flush from another thread while they run */
    events_stats st;
    for (int k = 0; k < 5; k++) events_emitter_stats(em, &st);
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT(0, a[i].failed);
    }
    CHECK_INT(0, events_flush(em, 120000));
    events_emitter_stats(em, &st);
    int n = THREADS * per;
    CHECK_INT(n, st.delivered);
    CHECK_INT(0, st.queued);
    CHECK_INT(0, st.dropped);
    CHECK_INT(0, events_emitter_close(em, 1000));
    expect_in_lake(&s, "threads.test", n);
    tmp_free(&t, &s);
}

TEST(threads_durable)
{
    threads_run(0, 1500);
}

TEST(threads_memory)
{
    threads_run(1, 5000);
}

/* (d) what the server refuses for good ends in _events_dead, with its reason. */
TEST(permanent_rejection_dead_letters)
{
    tmp t;
    tmp_make(&t, "emit-dead");
    srv s = {0};
    const char *args[] = {"--seal-age", "200ms", "--max-event-bytes", "1KiB", "--max-body",
                          "4KiB",       NULL};
    REQUIRE_INT(0, srv_start(&s, t.lake, args));
    events_config c = quick(s.url, t.outbox);
    c.gzip_above = SIZE_MAX; /* --max-body counts bytes after gunzip anyway; keep bodies plain */
    events_emitter *em = open_or_fail(&c);
    REQUIRE(em);
    char big[3000];
    memset(big, 0, sizeof big);
    strcpy(big, "{\"n\":5,\"pad\":\"");
    memset(big + strlen(big), 'x', 1500);
    strcat(big, "\"}");
    char huge[5000];
    memset(huge, 0, sizeof huge);
    strcpy(huge, "{\"n\":7,\"pad\":\"");
    memset(huge + strlen(huge), 'y', 4500);
    strcat(huge, "\"}");
    CHECK_INT(0, events_begin(em));
    for (int i = 0; i < 10; i++) {
        if (i == 5)
            CHECK_INT(0, events_emit(em, "dead.test", big)); /* over --max-event-bytes */
        else if (i == 7)
            CHECK_INT(0, events_emit(em, "dead.test", huge)); /* over --max-body alone */
        else
            CHECK_INT(0, emit_n(em, "dead.test", i));
    }
    CHECK_INT(0, events_commit(em));
    CHECK_INT(0, events_flush(em, 30000));
    events_stats st;
    events_emitter_stats(em, &st);
    CHECK_INT(8, st.delivered);
    CHECK_INT(2, st.dead);
    CHECK_INT(0, st.queued);
    events_emitter_close(em, 1000);
    CHECK_INT(2, sql_int(t.outbox, "SELECT count(*) FROM _events_dead"));
    char *why = sql_text(t.outbox, "SELECT reason FROM _events_dead WHERE event LIKE '%\"n\":5%'");
    CHECK_CONTAINS("over the limit of 1024", why);
    free(why);
    why = sql_text(t.outbox, "SELECT reason FROM _events_dead WHERE event LIKE '%\"n\":7%'");
    CHECK_CONTAINS("HTTP 413", why);
    free(why);
    char *when = sql_text(t.outbox, "SELECT failed_at FROM _events_dead LIMIT 1");
    CHECK(when && strlen(when) == 24 && when[23] == 'Z');
    free(when);

    unsigned char counts[16] = {0};
    int bad;
    CHECK_INT(8, lake_count(&s, "dead.test", counts, 16, &bad));
    for (int i = 0; i < 10; i++) CHECK_INT(i == 5 || i == 7 ? 0 : 1, counts[i]);
    tmp_free(&t, &s);
}

/*
 * More refused events in a batch than a server's answer lists by default (10): the library
 * asks for the whole list (?rejected=all), and each is dead-lettered with its own reason.
 */
TEST(many_rejections_in_one_batch_dead_letter_each)
{
    tmp t;
    tmp_make(&t, "emit-dead-many");
    srv s = {0};
    const char *args[] = {"--seal-age", "200ms", "--max-event-bytes", "1KiB", NULL};
    REQUIRE_INT(0, srv_start(&s, t.lake, args));
    events_config c = quick(s.url, t.outbox);
    events_emitter *em = open_or_fail(&c);
    REQUIRE(em);
    char big[2000];
    CHECK_INT(0, events_begin(em));
    for (int i = 0; i < 40; i++) {
        if (i % 4) { /* 30 of them over --max-event-bytes */
            snprintf(big, sizeof big, "{\"n\":%d,\"pad\":\"%01500d\"}", i, 0);
            CHECK_INT(0, events_emit(em, "dead.many", big));
        } else {
            CHECK_INT(0, emit_n(em, "dead.many", i));
        }
    }
    CHECK_INT(0, events_commit(em));
    CHECK_INT(0, events_flush(em, 30000));
    events_stats st;
    events_emitter_stats(em, &st);
    CHECK_INT(10, st.delivered);
    CHECK_INT(30, st.dead);
    CHECK_INT(0, st.queued);
    events_emitter_close(em, 1000);
    CHECK_INT(30, sql_int(t.outbox, "SELECT count(*) FROM _events_dead WHERE reason LIKE "
                                    "'event is % bytes, over the limit of 1024'"));
    tmp_free(&t, &s);
}

/* A whole batch the server refuses (4xx but not 408/429/401/403/404/405) is dead-lettered. */
TEST(rejected_batch_dead_letters)
{
    tmp t;
    tmp_make(&t, "emit-422");
    fault_step script[] = {{422, 0, 0, 0}};
    faultsrv *f = faultsrv_start(NULL, script, 1);
    REQUIRE(f);
    events_config c = quick(faultsrv_url(f), t.outbox);
    events_emitter *em = open_or_fail(&c);
    REQUIRE(em);
    CHECK_INT(0, events_begin(em)); /* one batch */
    for (int i = 0; i < 3; i++) CHECK_INT(0, emit_n(em, "batch.test", i));
    CHECK_INT(0, events_commit(em));
    CHECK_INT(0, events_flush(em, 10000));
    events_stats st;
    events_emitter_stats(em, &st);
    CHECK_INT(3, st.dead);
    CHECK_INT(422, st.last_status);
    events_emitter_close(em, 0);
    CHECK_INT(
        3, sql_int(t.outbox,
                   "SELECT count(*) FROM _events_dead WHERE reason = 'HTTP 422: injected fault'"));
    faultsrv_stop(f);
    tmp_free(&t, NULL);
}

/* ---- faults -------------------------------------------------------------------------- */

/* A test clock: waits are recorded and advance it at once. */
typedef struct fake_clock {
    _Atomic int64_t now;
    int64_t waits[64];
    atomic_int nwaits;
} fake_clock;

static int64_t fc_now(void *ud)
{
    return atomic_load(&((fake_clock *)ud)->now);
}

static void fc_wait(void *ud, int64_t ms)
{
    fake_clock *fc = ud;
    int k = atomic_load(&fc->nwaits);
    if (k < 64) fc->waits[k] = ms;
    atomic_store(&fc->nwaits, k + 1);
    atomic_fetch_add(&fc->now, ms);
    if (k >= 64) usleep(2000); /* enough recorded: do not spin */
}

static int wait_waits(fake_clock *fc, int n)
{
    for (int i = 0; i < 3000 && atomic_load(&fc->nwaits) < n; i++) usleep(2000);
    return atomic_load(&fc->nwaits) >= n;
}

/* (e) exponential backoff with jitter, within bounds, on an injected clock. */
TEST(backoff_timing)
{
    char url[64];
    dead_url(url, sizeof url); /* connection refused, at once, every time */
    fake_clock fc = {0};
    atomic_store(&fc.now, 1000000);
    events_config c = quick(url, NULL);
    c.backoff_min_ms = 1000;
    c.backoff_max_ms = 16000;
    c.flush_interval_ms = 100;
    c.clock_ms = fc_now;
    c.wait_ms = fc_wait;
    c.clock_ud = &fc;
    events_emitter *em = open_or_fail(&c);
    REQUIRE(em);
    CHECK_INT(0, emit_n(em, "backoff.test", 1));
    events_flush(em, 1); /* wake the sender */
    REQUIRE(wait_waits(&fc, 12));
    int64_t d = 1000, capped[8];
    int ncapped = 0;
    for (int k = 0; k < 12; k++) {
        int64_t w = fc.waits[k];
        if (w < d / 2 || w > d)
            test_fail(__FILE__, __LINE__, "wait %d: %lld ms, not within [%lld, %lld]", k + 1,
                      (long long)w, (long long)d / 2, (long long)d);
        if (d == 16000) capped[ncapped++] = w;
        if (d < 16000) d *= 2;
    }
    int differ = 0;
    for (int k = 1; k < ncapped; k++) differ |= capped[k] != capped[0];
    CHECK(ncapped >= 7 && differ); /* jitter: the capped delays are not all the same */
    events_stats st;
    events_emitter_stats(em, &st);
    CHECK(st.retried >= 12);
    CHECK_INT(0, st.last_status);
    CHECK_INT(1, st.queued);
    events_emitter_close(em, 0);
}

/* 429 and 503 with Retry-After wait what the server asks; 500 backs off. */
TEST(retry_after_honoured)
{
    tmp t;
    tmp_make(&t, "emit-429");
    srv s = {0};
    REQUIRE_INT(0, srv_start(&s, t.lake, SEAL_FAST));
    fault_step script[] = {{429, 0, 7, 0}, {503, 0, 2, 0}, {500, 0, 0, 0}, {408, 0, 0, 0}};
    faultsrv *f = faultsrv_before(&s, script, 4);
    REQUIRE(f);
    fake_clock fc = {0};
    events_config c = quick(faultsrv_url(f), t.outbox);
    c.backoff_min_ms = 1000;
    c.backoff_max_ms = 60000;
    c.flush_interval_ms = 100;
    c.clock_ms = fc_now;
    c.wait_ms = fc_wait;
    c.clock_ud = &fc;
    events_emitter *em = open_or_fail(&c);
    REQUIRE(em);
    for (int i = 0; i < 5; i++) CHECK_INT(0, emit_n(em, "retry.test", i));
    CHECK_INT(0, events_flush(em, 20000));
    REQUIRE(atomic_load(&fc.nwaits) >= 4);
    CHECK_INT(7000, fc.waits[0]);
    CHECK_INT(2000, fc.waits[1]);
    CHECK(fc.waits[2] >= 2000 && fc.waits[2] <= 4000); /* third failure: 4 s with jitter */
    CHECK(fc.waits[3] >= 4000 && fc.waits[3] <= 8000);
    events_stats st;
    events_emitter_stats(em, &st);
    CHECK_INT(4, st.retried);
    CHECK_INT(5, st.delivered);
    CHECK_INT(200, st.last_status);
    CHECK_INT(5, faultsrv_requests(f));
    events_emitter_close(em, 1000);
    faultsrv_stop(f);
    expect_in_lake(&s, "retry.test", 5);
    tmp_free(&t, &s);
}

/* A server answering too slowly: the request times out after the server stored
 * the batch; the retry is answered as duplicates and nothing is doubled. */
TEST(slow_server_duplicates)
{
    tmp t;
    tmp_make(&t, "emit-slow");
    srv s = {0};
    REQUIRE_INT(0, srv_start(&s, t.lake, SEAL_FAST));
    fault_step script[] = {{0, 1500, 0, 0}};
    faultsrv *f = faultsrv_before(&s, script, 1);
    REQUIRE(f);
    events_config c = quick(faultsrv_url(f), t.outbox);
    c.timeout_ms = 400;
    events_emitter *em = open_or_fail(&c);
    REQUIRE(em);
    for (int i = 0; i < 20; i++) CHECK_INT(0, emit_n(em, "slow.test", i));
    CHECK_INT(0, events_flush(em, 20000));
    events_stats st;
    events_emitter_stats(em, &st);
    CHECK_INT(20, st.delivered);
    /* the first request's events (all 20, unless the sender's first look came mid-way) */
    CHECK(st.duplicates >= 1 && st.duplicates <= 20);
    CHECK(st.retried >= 1);
    events_emitter_close(em, 1000);
    faultsrv_stop(f);
    expect_in_lake(&s, "slow.test", 20);
    tmp_free(&t, &s);
}

/* A server that answers 413 above 10 events: batches are halved until they fit. */
TEST(too_large_batches_split)
{
    tmp t;
    tmp_make(&t, "emit-413");
    srv s = {0};
    REQUIRE_INT(0, srv_start(&s, t.lake, SEAL_FAST));
    fault_step script[40];
    for (int i = 0; i < 40; i++) script[i] = (fault_step){0, 0, 0, 10};
    faultsrv *f = faultsrv_before(&s, script, 40);
    REQUIRE(f);
    events_config c = quick(faultsrv_url(f), t.outbox);
    c.gzip_above = SIZE_MAX;
    events_emitter *em = open_or_fail(&c);
    REQUIRE(em);
    CHECK_INT(0, events_begin(em));
    for (int i = 0; i < 100; i++) CHECK_INT(0, emit_n(em, "split.test", i));
    CHECK_INT(0, events_commit(em));
    CHECK_INT(0, events_flush(em, 20000));
    events_stats st;
    events_emitter_stats(em, &st);
    CHECK_INT(100, st.delivered);
    CHECK_INT(0, st.dead);
    events_emitter_close(em, 1000);
    faultsrv_stop(f);
    expect_in_lake(&s, "split.test", 100);
    tmp_free(&t, &s);
}

/* Connection refused and a name that does not resolve: retried, kept, reported. */
TEST(unreachable_server_keeps_events)
{
    tmp t;
    tmp_make(&t, "emit-unreach");
    char url[64];
    dead_url(url, sizeof url);
    /* a label over 63 bytes: the resolver refuses the name without asking anyone */
    char dns[160];
    snprintf(dns, sizeof dns, "http://%s.invalid:8080",
             "a123456789b123456789c123456789d123456789e123456789f123456789g1234");
    const char *ends[] = {url, dns};
    const char *errs[] = {"onnect", "resolve"};
    for (int k = 0; k < 2; k++) {
        events_config c = quick(ends[k], t.outbox);
        events_emitter *em = open_or_fail(&c);
        REQUIRE(em);
        CHECK_INT(0, emit_n(em, "unreach.test", k));
        CHECK_INT(EVENTS_ETIMEDOUT, events_flush(em, 300));
        CHECK_CONTAINS(errs[k], events_errmsg());
        events_stats st;
        events_emitter_stats(em, &st);
        CHECK(st.retried >= 1);
        CHECK_INT(0, st.last_status);
        CHECK_CONTAINS(errs[k], st.last_error);
        CHECK_INT(k + 1, st.queued);
        CHECK_INT(EVENTS_ETIMEDOUT, events_emitter_close(em, 100));
        CHECK_INT(k + 1, sql_int(t.outbox, "SELECT count(*) FROM _events_outbox"));
        CHECK_INT(0, sql_int(t.outbox, "SELECT count(*) FROM _events_dead"));
    }
    tmp_free(&t, NULL);
}

/* A server that refuses the token: nothing is dead-lettered; with the right token all arrive. */
TEST(rejected_token_retried)
{
    tmp t;
    tmp_make(&t, "emit-401");
    srv s = {0};
    setenv("EVENTS_TOKEN", "right-token-0123456789", 1);
    int started = srv_start(&s, t.lake, SEAL_FAST);
    unsetenv("EVENTS_TOKEN");
    REQUIRE_INT(0, started);
    events_config c = quick(s.url, t.outbox);
    c.token = "wrong-token-0123456789";
    events_emitter *em = open_or_fail(&c);
    REQUIRE(em);
    for (int i = 0; i < 4; i++) CHECK_INT(0, emit_n(em, "token.test", i));
    CHECK_INT(EVENTS_ETIMEDOUT, events_flush(em, 300));
    events_stats st;
    events_emitter_stats(em, &st);
    CHECK_INT(401, st.last_status);
    CHECK_CONTAINS("HTTP 401", st.last_error);
    CHECK_INT(0, st.dead);
    CHECK_INT(4, st.queued);
    events_emitter_close(em, 0);
    c.token = "right-token-0123456789";
    em = open_or_fail(&c);
    REQUIRE(em);
    CHECK_INT(0, events_flush(em, 20000));
    events_emitter_stats(em, &st);
    CHECK_INT(4, st.delivered);
    events_emitter_close(em, 1000);
    expect_in_lake(&s, "token.test", 4);
    tmp_free(&t, &s);
}

/* Large bodies go gzip-compressed; the server takes them the same. */
TEST(gzip_bodies_delivered)
{
    tmp t;
    tmp_make(&t, "emit-gzip");
    srv s = {0};
    REQUIRE_INT(0, srv_start(&s, t.lake, SEAL_FAST));
    events_config c = quick(s.url, NULL);
    c.gzip_above = 100;
    events_emitter *em = open_or_fail(&c);
    REQUIRE(em);
    for (int i = 0; i < 500; i++) CHECK_INT(0, emit_n(em, "gzip.test", i));
    CHECK_INT(0, events_flush(em, 20000));
    CHECK_INT(0, events_emitter_close(em, 1000));
    expect_in_lake(&s, "gzip.test", 500);
    tmp_free(&t, &s);
}

/* events_flush returns only when everything committed before it is acknowledged,
 * however the sender's reads interleave with it (a flush once read an old snapshot). */
TEST(flush_waits_for_everything_committed)
{
    tmp t;
    tmp_make(&t, "emit-flush");
    srv s = {0};
    REQUIRE_INT(0, srv_start(&s, t.lake, SEAL_FAST));
    events_config c = quick(s.url, t.outbox);
    events_emitter *em = open_or_fail(&c);
    REQUIRE(em);
    int n = 0, early = 0;
    for (int round = 0; round < 500; round++) {
        CHECK_INT(0, events_begin(em));
        for (int i = 0; i < 150; i++) CHECK_INT(0, emit_n(em, "flush.test", n++));
        CHECK_INT(0, events_commit(em));
        if (round % 3 == 0) continue; /* let batches pile up and be in flight at the next flush */
        CHECK_INT(0, events_flush(em, 20000));
        events_stats st;
        events_emitter_stats(em, &st);
        if (st.delivered != (uint64_t)n) early++;
    }
    CHECK_INT(0, early);
    CHECK_INT(0, events_emitter_close(em, 5000));
    expect_in_lake(&s, "flush.test", n);
    tmp_free(&t, &s);
}
