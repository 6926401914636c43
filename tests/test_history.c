/*
 * test_history.c - history files (lake/history.h, docs/lake.md "History
 * files") on a directory lake: `events compact` writes one per day whose hours
 * are due; doc_history reads them instead of the day's compacted files and
 * answers byte for byte as the rows do; a day changed since its history was
 * written is read right, from its files and its history written again; a
 * query that also reads events directly never takes them; the table never
 * names them.
 */
#include "harness.h"
#include "query.h"
#include "store.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* Writes the events of a day's hour as one raw file: changes of documents u0..u9 in two
 * collections (some without a bookmark, some deletes), and calls that carry a collection and a
 * document too, which are no changes; pad: bytes of text in each document besides. */
static int write_hour_padded(const char *lake, const char *day, int h, int seq, unsigned seed,
                             int pad)
{
    char path[1500];
    snprintf(path, sizeof path, "%s/events/2026/11/%s/%02d", lake, day, h);
    if (sh("mkdir -p '%s'", path)) return -1;
    snprintf(path + strlen(path), sizeof path - strlen(path),
             "/01a00000-0000-7000-8000-%012d.jsonl", seq);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    static const char *const TYPES[] = {"collection.insert", "collection.update",
                                        "collection.update", "collection.delete", "rpc.call"};
    unsigned r = seed;
    for (int i = 0; i < 300; i++) {
        r = r * 1103515245u + 12345u;
        int doc = (int)(r >> 8) % 10, type = (int)(r >> 12) % 5, min = (int)(r >> 16) % 60;
        const char *coll = (r >> 20) & 1 ? "users" : "orders";
        char bookmark[64] = "null";
        if ((r >> 21) % 7)
            snprintf(bookmark, sizeof bookmark, "\"%016x\"", (unsigned)(seq * 1000 + i));
        fprintf(f,
                "{\"id\":\"e%d-%d\",\"type\":\"%s\",\"ts\":\"2026-11-%sT%02d:%02d:%02d.%03dZ\","
                "\"receivedAt\":\"2026-11-%sT%02d:%02d:59.000Z\",\"collection\":\"%s\","
                "\"docId\":\"u%d\",\"bookmark\":%s,\"doc\":%s,\"prev\":{\"v\":%d,\"n\":[1,{\"x\":"
                "null}],\"pad\":\"%0*d\"},\"method\":\"m\",\"durationMs\":%d}\n",
                seq, i, TYPES[type], day, h, min, i % 60, i, day, h, min, coll, doc, bookmark,
                type == 3 ? "null" : "{\"v\":1,\"s\":\"caf\\u00e9\"}", i, pad, i, i);
    }
    return fclose(f);
}

static int write_hour(const char *lake, const char *day, int h, int seq, unsigned seed)
{
    return write_hour_padded(lake, day, h, seq, seed, 1);
}

/* The CSV answer to sql on the lake (or its error); *files: the lake files its view read. */
static char *answer(const char *lake, const char *sql, uint64_t *files)
{
    return lake_query_csv(lake, sql, files);
}

#define HISTORY(COLL, DOC) "SELECT * FROM doc_history('" COLL "', '" DOC "')"

static const char *const DOCS[][2] = {
    {"users", "u3"}, {"orders", "u3"}, {"users", "u0"}, {"orders", "u9"}, {"users", "none"}};
enum { NDOCS = sizeof DOCS / sizeof *DOCS };

/* Each document's history through doc_history equals its rows (what doc_history means, over
 * events, which no history file stands for); *files: what the last one read. */
static void same_as_rows(const char *lake, uint64_t *files)
{
    for (int i = 0; i < NDOCS; i++) {
        char q[512], rows[1024];
        snprintf(q, sizeof q, "SELECT * FROM doc_history('%s', '%s')", DOCS[i][0], DOCS[i][1]);
        snprintf(rows, sizeof rows,
                 "SELECT ts, replace(type, 'collection.', '') AS change, bookmark, doc, prev, id, "
                 "receivedAt FROM events WHERE collection = '%s' AND docId = '%s' AND type IN "
                 "('collection.insert', 'collection.update', 'collection.delete') "
                 "ORDER BY bookmark NULLS LAST, ts, id",
                 DOCS[i][0], DOCS[i][1]);
        char *a = answer(lake, q, files), *b = answer(lake, rows, NULL);
        CHECK_STR(b, a);
        CHECK(strncmp(a, "ts,change", 9) == 0);
        free(a), free(b);
    }
}

/* The number of history files of a day of 2026-11. */
static int histories(const char *lake, const char *day)
{
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "ls '%s'/history/2026/11/%s/*.parquet 2>/dev/null | wc -l", lake,
             day);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p && fscanf(p, "%d", &n) != 1) n = -1;
    if (p) pclose(p);
    return n;
}

TEST(history_files_give_doc_history_the_answers_of_the_rows)
{
    char *dir = test_tmpdir("history"), lake[1200], out[1300];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    snprintf(out, sizeof out, "%s/compact.out", dir);
    for (int h = 10; h <= 12; h++) REQUIRE_INT(0, write_hour(lake, "20", h, h, (unsigned)h));
    REQUIRE_INT(0, write_hour(lake, "21", 3, 103, 7));
    char *raw[NDOCS];
    uint64_t files = 0;
    for (int i = 0; i < NDOCS; i++) {
        char q[512];
        snprintf(q, sizeof q, "SELECT * FROM doc_history('%s', '%s')", DOCS[i][0], DOCS[i][1]);
        raw[i] = answer(lake, q, &files);
    }
    CHECK_INT(4, (long long)files); /* the raw files */
    same_as_rows(lake, NULL);

    CHECK_INT(0, sh("'%s' compact --lake '%s' --after 0 > '%s' 2>&1", events_bin(), lake, out));
    char *said = test_read_file(out, NULL);
    CHECK_CONTAINS("wrote 2 history files", said ? said : "");
    free(said);
    CHECK_INT(1, histories(lake, "20"));
    CHECK_INT(1, histories(lake, "21"));
    for (int i = 0; i < NDOCS; i++) {
        char q[512];
        snprintf(q, sizeof q, "SELECT * FROM doc_history('%s', '%s')", DOCS[i][0], DOCS[i][1]);
        char *a = answer(lake, q, &files);
        CHECK_STR(raw[i], a);
        CHECK_INT(2, (long long)files); /* a history file per day, nothing else */
        free(a);
    }
    same_as_rows(lake, NULL);
    /* read with events itself: the compacted files, never the history files */
    char *both = answer(lake,
                        "SELECT h.* FROM doc_history('users', 'u3') h JOIN events e USING (id) "
                        "ORDER BY h.bookmark NULLS LAST, h.ts, h.id",
                        &files);
    CHECK_STR(raw[0], both);
    CHECK_INT(4, (long long)files);
    free(both);
    /* the table names the compacted files only */
    CHECK_INT(0,
              sh("'%s' table --lake '%s' --format json > '%s' 2>&1 && grep -q '\"dataFiles\": 4,' "
                 "'%s' && grep -q '\"records\": 1200,' '%s'",
                 events_bin(), lake, out, out, out));
    /* a second run has nothing to write */
    CHECK_INT(0, sh("'%s' compact --lake '%s' --after 0 > '%s' 2>&1 && ! grep -q history '%s'",
                    events_bin(), lake, out, out));
    for (int i = 0; i < NDOCS; i++) free(raw[i]);
    test_rmtree(dir);
    free(dir);
}

TEST(a_day_changed_since_its_history_is_read_right_and_given_a_new_one)
{
    char *dir = test_tmpdir("history-late"), lake[1200], out[1300];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    snprintf(out, sizeof out, "%s/compact.out", dir);
    for (int h = 10; h <= 12; h++) REQUIRE_INT(0, write_hour(lake, "20", h, h, (unsigned)h));
    CHECK_INT(
        0, sh("'%s' compact --lake '%s' --after 0 > /dev/null 2>&1 && ls '%s'/history/2026/11/20 "
              "> '%s/first'",
              events_bin(), lake, lake, dir));
    CHECK_INT(1, histories(lake, "20"));
    /* late events of hour 11: a raw file beside the compacted one; the history stands for the
     * compacted files still, and the raw file is read with it */
    REQUIRE_INT(0, write_hour(lake, "20", 11, 50, 99));
    uint64_t files = 0;
    same_as_rows(lake, &files);
    CHECK_INT(2, (long long)files);
    char *late = answer(lake, HISTORY("users", "u3"), NULL);
    CHECK_CONTAINS("e50-", late);
    /* hour 11 compacted again: another file, so the history no longer names the day's files;
     * a new one is written, the stale one kept for --retain */
    CHECK_INT(0, sh("'%s' compact --lake '%s' --after 0 > '%s' 2>&1 && grep -q 'wrote 1 history' "
                    "'%s'",
                    events_bin(), lake, out, out));
    CHECK_INT(2, histories(lake, "20"));
    char *now = answer(lake, HISTORY("users", "u3"), &files);
    CHECK_STR(late, now);
    CHECK_INT(1, (long long)files); /* the new one alone */
    same_as_rows(lake, NULL);
    free(now);
    /* with the stale one alone, which names files that are no longer the day's, the day is
     * read from its compacted files */
    CHECK_INT(0, sh("cd '%s'/history/2026/11/20 && for f in *; do grep -qx \"$f\" '%s/first' || "
                    "rm \"$f\"; done",
                    lake, dir));
    CHECK_INT(1, histories(lake, "20"));
    now = answer(lake, HISTORY("users", "u3"), &files);
    CHECK_STR(late, now);
    CHECK_INT(3, (long long)files);
    free(now);
    /* past --retain, the stale one is deleted; the day gets its history again */
    CHECK_INT(0, sh("'%s' compact --lake '%s' --after 0 --retain 0 > /dev/null 2>&1", events_bin(),
                    lake));
    CHECK_INT(1, histories(lake, "20"));
    now = answer(lake, HISTORY("users", "u3"), &files);
    CHECK_STR(late, now);
    CHECK_INT(1, (long long)files);
    free(now), free(late);
    test_rmtree(dir);
    free(dir);
}

TEST(a_day_not_yet_due_gets_no_history_and_a_due_one_gets_it_from_a_sweep)
{
    char *dir = test_tmpdir("history-due"), lake[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    REQUIRE_INT(0, write_hour(lake, "20", 10, 10, 1));
    /* with an --after of years, the hour is appended to the table (--open-hours), its day not
     * due */
    CHECK_INT(0, sh("'%s' compact --lake '%s' --after 100000h --open-hours > /dev/null 2>&1 && "
                    "ls '%s'/events/2026/11/20/10/*.parquet > /dev/null",
                    events_bin(), lake, lake));
    CHECK_INT(0, histories(lake, "20"));
    /* due now, but nothing to commit: a run of the pending index alone does not look at the
     * days (the server's between its sweeps); a sweep does */
    CHECK_INT(0, sh("'%s' compact --lake '%s' --after 0 --pending-only > /dev/null 2>&1",
                    events_bin(), lake));
    CHECK_INT(0, histories(lake, "20"));
    CHECK_INT(0, sh("'%s' compact --lake '%s' --after 0 > /dev/null 2>&1", events_bin(), lake));
    CHECK_INT(1, histories(lake, "20"));
    test_rmtree(dir);
    free(dir);
}

/* The history of a day in parts (compaction's memory small), one run dying midway through
 * putting them simulated: a query never takes a set not whole, and the next run writes the whole
 * set again, keeping what it put over the names of the dead run's. */
TEST(a_set_of_parts_not_whole_is_not_read_and_is_written_again)
{
    char *dir = test_tmpdir("history-parts"), lake[1200], out[1300];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    snprintf(out, sizeof out, "%s/compact.out", dir);
    for (int h = 10; h <= 12; h++)
        REQUIRE_INT(0, write_hour_padded(lake, "20", h, h, (unsigned)h, 8000));
    CHECK_INT(0, sh("'%s' compact --lake '%s' --after 0 --memory 128MiB > '%s' 2>&1", events_bin(),
                    lake, out));
    int parts = histories(lake, "20");
    CHECK(parts >= 2); /* about 7 MB of changes, parts of 4 chunks of 1 MiB */
    uint64_t files = 0;
    same_as_rows(lake, &files);
    CHECK_INT(parts, (long long)files);
    /* the parts but the first gone, as if the run had died after putting it */
    CHECK_INT(0, sh("cd '%s'/history/2026/11/20 && rm $(ls | tail -n +2)", lake));
    CHECK_INT(1, histories(lake, "20"));
    same_as_rows(lake, &files);
    /* the day's compacted files (an hour over a chunk of 1 MiB gives several) */
    CHECK_INT(0,
              sh("test $(ls '%s'/events/2026/11/20/*/*.parquet | wc -l) -eq %d", lake, (int)files));
    CHECK(files >= 3);
    CHECK_INT(0, sh("'%s' compact --lake '%s' --after 0 --memory 128MiB --retain 0 > '%s' 2>&1",
                    events_bin(), lake, out));
    CHECK_INT(parts, histories(lake, "20"));
    same_as_rows(lake, &files);
    CHECK_INT(parts, (long long)files);
    test_rmtree(dir);
    free(dir);
}
