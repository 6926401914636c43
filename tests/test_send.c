/*
 * test_send.c - `events send`: NDJSON to a real server through a durable
 * outbox; refused lines, dead letters, timeouts, draining, usage errors.
 */
#include "harness.h"
#include "test.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct ctx {
    char *dir;
    char lake[1024], outbox[1024], input[1024], err[1024];
    srv s;
} ctx;

static void ctx_make(ctx *c, const char *tag)
{
    memset(c, 0, sizeof *c);
    c->dir = test_tmpdir(tag);
    snprintf(c->lake, sizeof c->lake, "%s/lake", c->dir);
    snprintf(c->outbox, sizeof c->outbox, "%s/outbox.db", c->dir);
    snprintf(c->input, sizeof c->input, "%s/in.ndjson", c->dir);
    snprintf(c->err, sizeof c->err, "%s/stderr.txt", c->dir);
}

static void ctx_free(ctx *c)
{
    if (test_failed_now()) {
        char *e = test_read_file(c->err, NULL);
        fprintf(stderr, "---- events send stderr ----\n%s\n", e ? e : "");
        free(e);
        if (c->s.log[0]) srv_dump_log(&c->s);
    }
    if (c->s.pid) srv_stop(&c->s, SIGKILL);
    if (c->s.log[0]) unlink(c->s.log);
    test_rmtree(c->dir);
    free(c->dir);
}

static void write_input(ctx *c, int n, const char *extra)
{
    FILE *f = fopen(c->input, "w");
    for (int i = 0; i < n; i++)
        fprintf(f, "{\"type\":\"send.test\",\"id\":\"send-%d\",\"n\":%d}\n", i, i);
    if (extra) fputs(extra, f);
    fclose(f);
}

/* Runs `events send ARGS` with stderr to c->err; returns the exit status. */
#define SEND(c, fmt, ...) sh("'%s' send " fmt " 2>'%s'", events_bin(), __VA_ARGS__, (c)->err)

static char *err_text(ctx *c)
{
    char *e = test_read_file(c->err, NULL);
    return e ? e : strdup("");
}

/* What the last command wrote to stderr contains s. */
#define CHECK_ERR(c, s)                                                                            \
    do {                                                                                           \
        char *err_ = err_text(c);                                                                  \
        CHECK_CONTAINS(s, err_);                                                                   \
        free(err_);                                                                                \
    } while (0)

/* Events of type send.test in the lake (stops the server): n of them, all distinct. */
#define CHECK_LAKE(c, n)                                                                           \
    do {                                                                                           \
        int distinct_;                                                                             \
        CHECK_INT(n, lake_events(c, &distinct_));                                                  \
        CHECK_INT(n, distinct_);                                                                   \
    } while (0)

/* Events of type send.test in the lake (stops the server). */
static int lake_events(ctx *c, int *distinct)
{
    srv_stop(&c->s, SIGTERM);
    buf all = BUF_INIT;
    lake_read_all(c->lake, &all, NULL);
    int n = 0;
    char *seen = calloc(100000, 1);
    *distinct = 0;
    for (const char *p = all.p; p && (p = strstr(p, "\"type\":\"send.test\"")); p++) {
        n++;
        const char *q = strstr(p, "\"n\":");
        int k = q ? atoi(q + 4) : -1;
        if (k >= 0 && k < 100000 && !seen[k]++) (*distinct)++;
    }
    free(seen);
    buf_free(&all);
    return n;
}

static const char *const SEAL_FAST[] = {"--seal-age", "200ms", NULL};

TEST(send_file_delivers_everything)
{
    ctx c;
    ctx_make(&c, "send-ok");
    REQUIRE_INT(0, srv_start(&c.s, c.lake, SEAL_FAST));
    write_input(&c, 5000, "\n   \n");
    CHECK_INT(0, SEND(&c, "--endpoint %s --outbox '%s' '%s'", c.s.url, c.outbox, c.input));
    CHECK_ERR(&c, "5000 read, 0 from earlier runs; 5000 delivered (0 duplicates), 0 dead-lettered, "
                  "0 refused, "
                  "0 still queued");
    /* the same file again, from standard input: the ids make it a no-op */
    CHECK_INT(0, sh("'%s' send --endpoint %s --outbox '%s' - < '%s' 2>'%s'", events_bin(), c.s.url,
                    c.outbox, c.input, c.err));
    CHECK_ERR(&c, "5000 delivered (5000 duplicates)");
    CHECK_LAKE(&c, 5000);
    ctx_free(&c);
}

TEST(send_refuses_bad_lines_and_reports_dead_letters)
{
    ctx c;
    ctx_make(&c, "send-bad");
    const char *args[] = {"--seal-age", "200ms", "--max-event-bytes", "1KiB", NULL};
    REQUIRE_INT(0, srv_start(&c.s, c.lake, args));
    buf extra = BUF_INIT;
    buf_puts(
        &extra,
        "not json\n{\"type\":\"Bad Type\"}\n[1,2]\n{\"type\":\"send.test\",\"n\":1} trailing\n");
    buf_puts(&extra, "{\"type\":\"send.test\",\"n\":99,\"pad\":\"");
    for (int i = 0; i < 2000; i++) buf_putc(&extra, 'x');
    buf_puts(&extra, "\"}\n");
    write_input(&c, 10, buf_cstr(&extra));
    buf_free(&extra);
    CHECK_INT(1, SEND(&c, "--endpoint %s --outbox '%s' '%s'", c.s.url, c.outbox, c.input));
    CHECK_ERR(&c, "in.ndjson:11: the event is not JSON");
    CHECK_ERR(&c, "in.ndjson:12: \"type\" must match");
    CHECK_ERR(&c, "in.ndjson:13: event must be a JSON object");
    CHECK_ERR(&c, "in.ndjson:14: the event has text after the object");
    CHECK_ERR(
        &c,
        "11 read, 0 from earlier runs; 10 delivered (0 duplicates), 1 dead-lettered, 4 refused");
    CHECK_ERR(&c, "dead-lettered: 1 x event is");
    CHECK_ERR(&c, "over the limit of 1024");
    CHECK_ERR(&c, "_events_dead");
    ctx_free(&c);
}

TEST(send_timeout_keeps_events_queued_then_drains)
{
    ctx c;
    ctx_make(&c, "send-down");
    char down[64];
    snprintf(down, sizeof down, "http://127.0.0.1:%d", refusing_port());
    write_input(&c, 300, NULL);
    CHECK_INT(
        3, SEND(&c, "--endpoint %s --outbox '%s' --timeout 500ms '%s'", down, c.outbox, c.input));
    CHECK_ERR(&c, "300 read, 0 from earlier runs; 0 delivered");
    CHECK_ERR(&c, "300 still queued");
    CHECK_ERR(&c, "300 events are still queued in");
    CHECK_ERR(&c, "run events send again");
    CHECK_ERR(&c, "Couldn't connect");
    REQUIRE_INT(0, srv_start(&c.s, c.lake, SEAL_FAST));
    /* no input: drains what the first run left */
    CHECK_INT(0, sh("'%s' send --endpoint %s --outbox '%s' < /dev/null 2>'%s'", events_bin(),
                    c.s.url, c.outbox, c.err));
    CHECK_ERR(&c, "0 read, 300 from earlier runs; 300 delivered");
    CHECK_LAKE(&c, 300);
    ctx_free(&c);
}

TEST(send_usage_errors)
{
    ctx c;
    ctx_make(&c, "send-usage");
    write_input(&c, 1, NULL);
    CHECK_INT(2, SEND(&c, "--outbox '%s' '%s'", c.outbox, c.input));
    CHECK_ERR(&c, "--endpoint URL is required");
    CHECK_INT(2, SEND(&c, "--endpoint http://127.0.0.1:1 --outbox '%s' '%s/missing.ndjson'",
                      c.outbox, c.dir));
    CHECK_ERR(&c, "cannot open");
    CHECK_INT(2, SEND(&c, "--endpoint http://127.0.0.1:1 --outbox '%s' a b", c.outbox));
    CHECK_INT(2, SEND(&c, "--endpoint http://127.0.0.1:1 --batch-size 0 '%s'", c.input));
    CHECK_INT(2, SEND(&c, "--endpoint ftp://x --outbox '%s' '%s'", c.outbox, c.input));
    CHECK_ERR(&c, "http:// or https://");
    CHECK_INT(2, SEND(&c, "--endpoint http://127.0.0.1:1 --outbox '%s/no/such/dir/o.db' '%s'",
                      c.dir, c.input));
    CHECK_ERR(&c, "cannot open");
    CHECK_INT(2, SEND(&c, "--endpoint http://127.0.0.1:1 --timeout forever '%s'", c.input));
    CHECK_INT(0, sh("'%s' send --help >/dev/null", events_bin()));
    ctx_free(&c);
}

/* On a terminal (a pseudo-terminal from script(1)), a progress bar. */
TEST(send_progress_on_terminal)
{
    ctx c;
    ctx_make(&c, "send-tty");
    REQUIRE_INT(0, srv_start(&c.s, c.lake, SEAL_FAST));
    write_input(&c, 2000, NULL);
    char out[1100];
    snprintf(out, sizeof out, "%s/tty.txt", c.dir);
    int rc = sh("script -qec \"'%s' send --endpoint %s --outbox '%s' '%s'\" /dev/null > '%s' 2>&1",
                events_bin(), c.s.url, c.outbox, c.input, out);
    CHECK_INT(0, rc);
    char *t = test_read_file(out, NULL);
    CHECK_CONTAINS("sending [##############################] 2000/2000 delivered", t);
    CHECK_CONTAINS("2000 delivered (0 duplicates)", t);
    free(t);
    ctx_free(&c);
}

/* examples/chatroom.c, as built, against a real server. */
TEST(example_chatroom_delivers)
{
    ctx c;
    ctx_make(&c, "chatroom");
    REQUIRE_INT(0, srv_start(&c.s, c.lake, SEAL_FAST));
    char db[1100];
    snprintf(db, sizeof db, "%s/chatroom.db", c.dir);
    CHECK_INT(0, sh("'%s' %s '%s' > '%s' 2>&1", CHATROOM_BIN, c.s.url, db, c.err));
    CHECK_ERR(&c, "chatroom: 69 delivered, 0 queued, 0 dead");
    srv_stop(&c.s, SIGTERM);
    buf all = BUF_INIT;
    lake_read_all(c.lake, &all, NULL);
    int rpc = 0, ws = 0;
    for (const char *p = all.p; p && (p = strstr(p, "\"type\":\"rpc.call\"")); p++) rpc++;
    for (const char *p = all.p; p && (p = strstr(p, "\"type\":\"ws.")); p++) ws++;
    CHECK_INT(30, rpc);
    CHECK_INT(36, ws);
    CHECK_CONTAINS(
        "\"do\":{\"id\":\"room-17\",\"name\":\"lobby\",\"class\":\"ChatRoom\",\"colo\":\"local\"}",
        all.p);
    CHECK_CONTAINS("\"type\":\"chat.topic_changed\"", all.p);
    buf_free(&all);
    ctx_free(&c);
}
