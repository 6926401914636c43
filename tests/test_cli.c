/*
 * test_cli.c - the command line as a newcomer types it: `events demo` stopping
 * quickly when its server has gone, and saying what stays in its outboxes.
 */
#include "harness.h"
#include "test.h"

#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
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
