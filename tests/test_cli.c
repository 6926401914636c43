/*
 * test_cli.c - the command line as a newcomer types it: `events query`,
 * `history` and `tail` right after a server started on ./events-lake find
 * that server and see its events; reading the lake's files says what they do
 * not hold yet; commands that only read never make the lake; `events demo`
 * stops quickly when its server has gone, and says what stays in its outboxes.
 */
#include "harness.h"
#include "test.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Starts `events demo` with its stderr in log. Returns the pid, or -1. */
static pid_t demo_start(const char *server, const char *dir, const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = freopen(log, "w", stderr);
        (void)f;
        execl(events_bin(), "events", "demo", "--server", server, "--dir", dir, "--rate", "200",
              (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Waits up to timeout_ms for pid. Its wait status, or -1 if it is still running. */
static int wait_within(pid_t pid, int timeout_ms)
{
    int64_t end = mono_ms() + timeout_ms;
    int st;
    while (mono_ms() < end) {
        if (waitpid(pid, &st, WNOHANG) == pid) return st;
        usleep(10000);
    }
    return -1;
}

/* Rows in the outboxes of the demo's rooms (DIR/room-N.db). */
static long outbox_rows(const char *dir)
{
    long total = 0;
    for (int k = 1; k <= 64; k++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/room-%d.db", dir, k);
        if (access(path, F_OK)) break;
        sqlite3 *db;
        sqlite3_stmt *st;
        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
            sqlite3_prepare_v2(db, "SELECT count(*) FROM _events_outbox", -1, &st, NULL) ==
                SQLITE_OK) {
            if (sqlite3_step(st) == SQLITE_ROW) total += sqlite3_column_int64(st, 0);
            sqlite3_finalize(st);
        } else {
            total = -1000000;
        }
        sqlite3_close(db);
    }
    return total;
}

TEST(test_demo_stops_within_seconds_when_its_server_is_gone)
{
    char *dir = test_tmpdir("cli-demo");
    char lake[1200], rooms[1200], log[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    snprintf(rooms, sizeof rooms, "%s/rooms", dir);
    snprintf(log, sizeof log, "%s/demo.log", dir);
    srv s = {0};
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    pid_t demo = demo_start(s.url, rooms, log);
    REQUIRE(demo > 0);
    usleep(1500 * 1000); /* the rooms send to the server */
    srv_stop(&s, SIGKILL);
    usleep(1000 * 1000); /* and go on emitting into their outboxes, with nowhere to send */
    int64_t t0 = mono_ms();
    kill(demo, SIGINT);
    int st = wait_within(demo, 5000); /* a generous cap: the demo aims at 2 s */
    int64_t took = mono_ms() - t0;
    if (st == -1) {
        kill(demo, SIGKILL);
        waitpid(demo, &st, 0);
        test_fail(__FILE__, __LINE__, "the demo did not stop within 5 s of SIGINT");
    } else {
        CHECK(WIFEXITED(st));
        fprintf(stderr, "  the demo stopped %lld ms after SIGINT\n", (long long)took);
    }
    char *out = test_read_file(log, NULL);
    REQUIRE(out != NULL);
    long left = outbox_rows(rooms);
    CHECK(left > 0);
    char want[256];
    snprintf(want, sizeof want, "; %ld events stay in the outboxes of %s for its next run", left,
             rooms);
    CHECK_CONTAINS(want, out);
    free(out);
    test_rmtree(dir);
    free(dir);
}

TEST(test_demo_says_everything_was_delivered)
{
    char *dir = test_tmpdir("cli-demo-ok");
    char lake[1200], rooms[1200], log[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    snprintf(rooms, sizeof rooms, "%s/rooms", dir);
    snprintf(log, sizeof log, "%s/demo.log", dir);
    srv s = {0};
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    pid_t demo = demo_start(s.url, rooms, log);
    REQUIRE(demo > 0);
    usleep(1000 * 1000);
    kill(demo, SIGINT);
    int st = wait_within(demo, 5000);
    if (st == -1) {
        kill(demo, SIGKILL);
        waitpid(demo, &st, 0);
        test_fail(__FILE__, __LINE__, "the demo did not stop within 5 s of SIGINT");
    }
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *out = test_read_file(log, NULL);
    REQUIRE(out != NULL);
    CHECK_CONTAINS("; every event was delivered", out);
    CHECK_INT(0, outbox_rows(rooms));
    free(out);
    srv_stop(&s, SIGTERM);
    test_rmtree(dir);
    free(dir);
}

/* ---- the commands that read the lake --------------------------------------- */

/* Runs `events ARGS` in dir (stderr with stdout). Caller frees the output. */
static char *cli_in(const char *dir, int *status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static char *cli_in(const char *dir, int *status, const char *fmt, ...)
{
    char args[2048], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s 2>&1 </dev/null", dir, events_bin(), args);
    FILE *p = popen(cmd, "r");
    buf b = BUF_INIT;
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, p)) > 0) buf_append(&b, tmp, n);
    int st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    buf_cstr(&b);
    return b.p;
}

static const char SEED[] =
    "{\"events\":[{\"type\":\"collection.insert\",\"collection\":\"users\",\"docId\":\"u1\","
    "\"doc\":{\"name\":\"Ada\"},\"bookmark\":\"0000000000000001\"},"
    "{\"type\":\"rpc.call\",\"method\":\"send\",\"durationMs\":3},"
    "{\"type\":\"rpc.call\",\"method\":\"send\",\"durationMs\":4}]}";

#define COUNT_SQL                                                                                  \
    "\"SELECT type, count(*) AS n FROM events WHERE ts > now() - INTERVAL 1 HOUR GROUP BY 1 "      \
    "ORDER BY 1\""
#define COUNT_CSV "type,n\ncollection.insert,1\nrpc.call,2\n"

/* A server on DIR/events-lake (what `make run` starts), seeded; its events still in the spool. */
static int served_lake(srv *s, const char *dir, const char *const *args)
{
    char lake[1200];
    snprintf(lake, sizeof lake, "%s/events-lake", dir);
    if (srv_start(s, lake, args)) return -1;
    resp r;
    const char *h[] = {"Content-Type: application/json",
                       "Authorization: Bearer cli-test-token-0123456789abcdef", NULL};
    char url[128];
    snprintf(url, sizeof url, "%s/ingest", s->url);
    http_do("POST", url, h, SEED, strlen(SEED), 0, &r);
    int ok = r.status == 200 && strstr(r.body.p, "\"accepted\":3");
    if (!ok) test_fail(__FILE__, __LINE__, "ingest: %ld %s", r.status, r.body.p);
    resp_free(&r);
    return ok ? 0 : -1;
}

TEST(test_query_history_and_tail_ask_the_server_of_the_lake)
{
    char *dir = test_tmpdir("cli-served");
    srv s = {0};
    REQUIRE_INT(0, served_lake(&s, dir, NULL));
    int st;
    /* the README's commands, right away: the events are in the spool, not sealed */
    char *out = cli_in(dir, &st, "query --format csv " COUNT_SQL);
    CHECK_INT(0, st);
    CHECK_STR(COUNT_CSV, out);
    free(out);
    out = cli_in(dir, &st, "history --format csv users u1");
    CHECK_INT(0, st);
    CHECK(!strncmp(out, "ts,change,bookmark,doc,prev,id,receivedAt\n", 42));
    CHECK_CONTAINS(",insert,0000000000000001,\"{\"\"name\"\":\"\"Ada\"\"}\",", out);
    free(out);
    out = cli_in(dir, &st, "history --format csv users u2");
    CHECK_INT(0, st);
    CHECK_STR("ts,change,bookmark,doc,prev,id,receivedAt\n"
              "events history: no changes of document u2 in collection users\n",
              out);
    free(out);
    /* EVENTS_LAKE and --lake name the lake the same way */
    out = cli_in(dir, &st, "query --lake ./events-lake --format csv " COUNT_SQL);
    CHECK_STR(COUNT_CSV, out);
    free(out);

    /* the live tail of the lake's server, found the same way */
    char log[1300];
    snprintf(log, sizeof log, "%s/tail.out", dir);
    pid_t pid = fork();
    if (pid == 0) {
        if (chdir(dir) || !freopen(log, "w", stdout)) _exit(126);
        dup2(1, 2);
        execl(events_bin(), "events", "tail", "--format", "ndjson", "ws.*", (char *)NULL);
        _exit(127);
    }
    char *seen = NULL;
    for (int k = 0; k < 100 && !(seen && strstr(seen, "tail-probe")); k++) {
        resp r;
        http_ingest(&s, "{\"events\":[{\"type\":\"ws.connect\",\"reason\":\"tail-probe\"}]}", &r);
        resp_free(&r);
        usleep(100000);
        free(seen);
        seen = test_read_file(log, NULL);
    }
    kill(pid, SIGTERM);
    waitpid(pid, &st, 0);
    CHECK_CONTAINS("\"type\":\"ws.connect\"", seen);
    CHECK_CONTAINS("\"reason\":\"tail-probe\"", seen);
    free(seen);
    srv_stop(&s, SIGTERM);
    test_rmtree(dir);
    free(dir);
}

TEST(test_query_direct_says_nothing_is_sealed_yet)
{
    char *dir = test_tmpdir("cli-direct");
    srv s = {0};
    REQUIRE_INT(0, served_lake(&s, dir, NULL));
    int st;
    char *out = cli_in(dir, &st, "query --direct --format csv " COUNT_SQL);
    CHECK_INT(0, st);
    char want[512];
    snprintf(want, sizeof want,
             "type,n\nevents query: nothing sealed yet: the 3 events of ./events-lake are in the "
             "spool of its server (pid %d), which seals them",
             (int)s.pid);
    CHECK_CONTAINS(want, out);
    CHECK_CONTAINS("without --direct the server is asked", out);
    free(out);
    out = cli_in(dir, &st, "query --direct --server %s \"SELECT 1\"", s.url);
    CHECK_INT(2, st);
    CHECK_CONTAINS("give one of them", out);
    free(out);
    /* sealed at a clean stop: the files hold everything, and nothing is said */
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    out = cli_in(dir, &st, "query --format csv " COUNT_SQL);
    CHECK_INT(0, st);
    CHECK_STR(COUNT_CSV, out);
    free(out);
    test_rmtree(dir);
    free(dir);
}

TEST(test_a_killed_servers_address_is_not_used)
{
    char *dir = test_tmpdir("cli-killed");
    srv s = {0};
    REQUIRE_INT(0, served_lake(&s, dir, NULL));
    srv_stop(&s, SIGKILL);
    char path[1300];
    snprintf(path, sizeof path, "%s/events-lake/.spool/server.json", dir);
    CHECK_INT(0, access(path, F_OK)); /* left behind; its lock went with the process */
    int st;
    char *out = cli_in(dir, &st, "query --format csv " COUNT_SQL);
    CHECK_INT(0, st);
    CHECK_STR("type,n\nevents query: nothing sealed yet: the 3 events of ./events-lake are in its "
              "spool ./events-lake/.spool, left by a server that stopped before sealing them; "
              "`events serve` on this lake seals them when it starts\n",
              out);
    free(out);
    test_rmtree(dir);
    free(dir);
}

/* Holds the spool lock of DIR/events-lake as a server would, with server.json saying url. */
static int fake_server(const char *dir, const char *url)
{
    char path[1300];
    snprintf(path, sizeof path, "mkdir -p '%s/events-lake/.spool'", dir);
    if (sh("%s", path)) return -1;
    snprintf(path, sizeof path, "%s/events-lake/.spool/LOCK", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) || write(fd, "4242\n", 5) != 5) return -1;
    if (url) {
        char real[1200];
        snprintf(path, sizeof path, "%s/events-lake", dir);
        if (!realpath(path, real)) return -1;
        snprintf(path, sizeof path, "%s/events-lake/.spool/server.json", dir);
        FILE *f = fopen(path, "w");
        if (!f) return -1;
        fprintf(f, "{\"url\":\"%s\",\"lake\":\"file://%s\",\"pid\":4242}\n", url, real);
        fclose(f);
    }
    return fd;
}

TEST(test_a_server_that_does_not_answer_is_said_and_the_files_are_read)
{
    char *dir = test_tmpdir("cli-silent");
    int fd = fake_server(dir, "http://127.0.0.1:1");
    REQUIRE(fd >= 0);
    int st;
    char *out = cli_in(dir, &st, "query --format csv \"SELECT count(*) AS n FROM events\"");
    CHECK_INT(0, st);
    CHECK_CONTAINS("events query: the server of ./events-lake (pid 4242) did not answer at "
                   "http://127.0.0.1:1 (",
                   out);
    CHECK_CONTAINS("reading the lake's files, which hold only sealed events\nn\n0\n", out);
    CHECK_CONTAINS("events query: the lake ./events-lake holds no events yet\n", out);
    free(out);
    close(fd);
    /* a lock held without server.json: said, and the files are read */
    char path[1300];
    snprintf(path, sizeof path, "%s/events-lake/.spool/server.json", dir);
    unlink(path);
    fd = fake_server(dir, NULL);
    REQUIRE(fd >= 0);
    out = cli_in(dir, &st, "history users u1");
    CHECK_INT(0, st);
    CHECK_CONTAINS("events history: a server (pid 4242) holds the spool of ./events-lake but does "
                   "not say where it listens",
                   out);
    free(out);
    close(fd);
    test_rmtree(dir);
    free(dir);
}

TEST(test_the_lake_server_asks_for_a_token_and_the_cli_says_which)
{
    char *dir = test_tmpdir("cli-token");
    char tokens[1300];
    snprintf(tokens, sizeof tokens, "%s/tokens", dir);
    CHECK_INT(0, sh("echo 'admin cli-test-token-0123456789abcdef admin,ingest,query' > '%s' && "
                    "chmod 600 '%s'",
                    tokens, tokens));
    const char *args[] = {"--tokens-file", tokens, NULL};
    srv s = {0};
    REQUIRE_INT(0, served_lake(&s, dir, args));
    int st;
    char *out = cli_in(dir, &st, "query --format csv " COUNT_SQL);
    CHECK_INT(1, st);
    char want[600];
    snprintf(want, sizeof want,
             "events query: the server of ./events-lake (%s) needs a token with the query scope: "
             "give --token TOKEN or set EVENTS_TOKEN, or read the lake's files with --direct\n",
             s.url);
    CHECK_STR(want, out);
    free(out);
    out = cli_in(dir, &st, "query --token wrong --format csv " COUNT_SQL);
    CHECK_INT(1, st);
    CHECK_CONTAINS("refused the token: invalid bearer token (HTTP 401)", out);
    free(out);
    out = cli_in(dir, &st, "query --token cli-test-token-0123456789abcdef --format csv " COUNT_SQL);
    CHECK_INT(0, st);
    CHECK_STR(COUNT_CSV, out);
    free(out);
    out = cli_in(dir, &st, "tail");
    CHECK_INT(1, st);
    snprintf(want, sizeof want,
             "events tail: the server of ./events-lake (%s) needs a token with the query scope: "
             "give --token TOKEN or set EVENTS_TOKEN\n",
             s.url);
    CHECK_STR(want, out);
    free(out);
    srv_stop(&s, SIGTERM);
    test_rmtree(dir);
    free(dir);
}

/* How many entries dir has (-1 if it cannot be read). */
static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    closedir(d);
    return n;
}

TEST(test_commands_that_read_never_make_the_lake)
{
    char *dir = test_tmpdir("cli-nolake");
    static const struct {
        const char *args, *cmd;
        int status;
    } t[] = {
        {"query \"SELECT 1\"", "query", 1},
        {"query --direct \"SELECT 1\"", "query", 1},
        {"history users u1", "history", 1},
        {"restore --lake ./events-lake --source s --bookmark 0000000000000001 --out r.db",
         "restore", 2},
        {"restore --lake ./events-lake --source s --bookmark 0000000000000001 --dry-run", "restore",
         2},
        {"compact", "compact", 1},
        {"snapshot --lake ./events-lake --list", "snapshot", 1},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        int st;
        char *out = cli_in(dir, &st, "%s", t[i].args);
        char want[128];
        snprintf(want, sizeof want, "events %s: no such lake: ./events-lake\n", t[i].cmd);
        CHECK_INT(t[i].status, st);
        CHECK_STR(want, out);
        free(out);
        CHECK_INT(0, entries(dir));
    }
    int st;
    char *out = cli_in(dir, &st, "tail --server http://127.0.0.1:1");
    CHECK_INT(1, st);
    CHECK_INT(0, entries(dir));
    free(out);
    test_rmtree(dir);
    free(dir);
}
