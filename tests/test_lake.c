/*
 * test_lake.c - lake layout, the dedup window, the store contract and the
 * writer (group commit, sealing, spool recovery, dedup across restarts).
 */
#include "dedup.h"
#include "evtime.h"
#include "harness.h"
#include "layout.h"
#include "log.h"
#include "store.h"
#include "retain.h"
#include "test.h"
#include "writer.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- layout ---- */

TEST(test_layout_keys_follow_the_hour_of_ts)
{
    int64_t ms;
    REQUIRE(!evtime_parse("2026-11-25T09:59:59.999Z", 24, &ms));
    int64_t h = lake_hour(ms);
    char key[LAKE_KEY_MAX];
    lake_raw_key(h, "01a21378-0562-7df9-8f38-f8abd12e745c", key);
    CHECK_STR("events/2026/11/25/09/01a21378-0562-7df9-8f38-f8abd12e745c.jsonl", key);
    lake_hour_prefix(h + 15, key);
    CHECK_STR("events/2026/11/26/00/", key);
    lake_spool_name(h, "01a21378-0562-7df9-8f38-f8abd12e745c", key);
    CHECK_STR("2026112509-01a21378-0562-7df9-8f38-f8abd12e745c.jsonl", key);

    int64_t h2;
    char uuid[LAKE_UUID_LEN + 1];
    CHECK_INT(0, lake_parse_spool_name(key, &h2, uuid));
    CHECK_INT(h, h2);
    CHECK_STR("01a21378-0562-7df9-8f38-f8abd12e745c", uuid);
    CHECK_INT(-1, lake_parse_spool_name("2026112509-not-a-uuid.jsonl", &h2, uuid));
    CHECK_INT(-1, lake_parse_spool_name("LOCK", &h2, uuid));

    const char *ext;
    CHECK_INT(0, lake_parse_event_key("events/2026/11/25/09/x.parquet", &h2, &ext));
    CHECK_INT(h, h2);
    CHECK_STR("parquet", ext);
    CHECK_INT(-1, lake_parse_event_key("events/2026/11/25/9/x.jsonl", &h2, &ext));
    CHECK_INT(-1, lake_parse_event_key("events/2026/11/25/09/x.txt", &h2, &ext));
    CHECK_INT(-1, lake_parse_event_key("snapshots/a/b.db", &h2, &ext));
}

/* ---- dedup ---- */

TEST(test_dedup_remembers_the_last_window_ids)
{
    dedup *d = dedup_new(1000);
    char id[32];
    for (int i = 0; i < 1500; i++) {
        int n = snprintf(id, sizeof id, "id-%d", i);
        CHECK_INT(0, dedup_check_add(d, id, (size_t)n));
    }
    CHECK_INT(1000, dedup_count(d));
    int seen = 0;
    for (int i = 0; i < 1500; i++) {
        int n = snprintf(id, sizeof id, "id-%d", i);
        seen += dedup_contains(d, id, (size_t)n);
        if (i >= 500) CHECK(dedup_contains(d, id, (size_t)n));
    }
    CHECK_INT(1000, seen);
    CHECK_INT(1, dedup_check_add(d, "id-1499", 7));
    dedup_free(d);
}

TEST(test_dedup_rollback_forgets_a_failed_group)
{
    dedup *d = dedup_new(100);
    dedup_check_add(d, "a", 1);
    uint64_t m = dedup_mark(d);
    dedup_check_add(d, "b", 1);
    dedup_check_add(d, "c", 1);
    dedup_rollback(d, m);
    CHECK(dedup_contains(d, "a", 1));
    CHECK(!dedup_contains(d, "b", 1));
    CHECK(!dedup_contains(d, "c", 1));
    CHECK_INT(1, dedup_count(d));
    CHECK_INT(0, dedup_check_add(d, "b", 1));
    dedup_free(d);
}

TEST(test_dedup_survives_heavy_churn)
{
    /* many wraps of a small ring: the index must stay consistent */
    dedup *d = dedup_new(64);
    char id[32];
    for (int i = 0; i < 100000; i++) {
        int n = snprintf(id, sizeof id, "%d", i);
        if (dedup_check_add(d, id, (size_t)n)) {
            test_fail(__FILE__, __LINE__, "fresh id %d reported as seen", i);
            break;
        }
        if (i % 7 == 0) {
            uint64_t m = dedup_mark(d);
            dedup_check_add(d, "x", 1);
            dedup_rollback(d, m);
        }
    }
    for (int i = 100000 - 60; i < 100000; i++) {
        int n = snprintf(id, sizeof id, "%d", i);
        CHECK(dedup_contains(d, id, (size_t)n));
    }
    dedup_free(d);
}

TEST(test_dedup_window_zero_disables)
{
    dedup *d = dedup_new(0);
    CHECK_INT(0, dedup_check_add(d, "a", 1));
    CHECK_INT(0, dedup_check_add(d, "a", 1));
    dedup_free(d);
}

/* The store contract runs on both backends in test_s3.c. */

TEST(test_store_open_rejects_unknown_schemes)
{
    store *s;
    char err[256];
    CHECK_INT(-1, store_open("gs://bucket", &s, err, sizeof err));
    CHECK_STR(
        "lake gs://bucket: unknown scheme (use a directory, file:///dir or s3://bucket/prefix)",
        err);
}

/* Opened read-only, as SQLITE_OPEN_READONLY: nothing is made, and every write is refused. */
TEST(test_store_opened_readonly_creates_nothing_and_refuses_writes)
{
    char *dir = test_tmpdir("store-ro");
    char lake[4200], url[4300], path[4300], err[512];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    snprintf(url, sizeof url, "file://%s", lake);
    store *s = NULL;
    CHECK_INT(-1, store_open_readonly(lake, &s, err, sizeof err));
    CHECK_CONTAINS("No such file or directory", err);
    CHECK_INT(-1, store_open_readonly(url, &s, err, sizeof err));
    CHECK(access(lake, F_OK) != 0);

    REQUIRE_INT(0, store_open(lake, &s, err, sizeof err));
    CHECK_INT(STORE_OK, store_put(s, "events/a", "x", 1, 0, err, sizeof err));
    store_close(s);
    REQUIRE_INT(0, store_open_readonly(url, &s, err, sizeof err));
    buf b = BUF_INIT;
    CHECK_INT(STORE_OK, store_get(s, "events/a", 0, 0, &b, err, sizeof err));
    CHECK(b.len == 1 && b.p[0] == 'x');
    buf_free(&b);
    char want[4400];
    snprintf(want, sizeof want, "store %s: opened read-only, cannot write events/b", s->url);
    CHECK_INT(STORE_EREADONLY, store_put(s, "events/b", "y", 1, 0, err, sizeof err));
    CHECK_STR(want, err);
    snprintf(path, sizeof path, "%s/src", dir);
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fputs("y", f);
    fclose(f);
    CHECK_INT(STORE_EREADONLY, store_put_file(s, "events/b", path, STORE_MOVE, err, sizeof err));
    CHECK_STR(want, err);
    CHECK(access(path, F_OK) == 0); /* not taken */
    CHECK_INT(STORE_EREADONLY, store_del(s, "events/a", err, sizeof err));
    store_close(s);
    snprintf(path, sizeof path, "%s/events/a", lake);
    CHECK(access(path, F_OK) == 0);
    snprintf(path, sizeof path, "%s/events/b", lake);
    CHECK(access(path, F_OK) != 0);
    test_rmtree(dir);
    free(dir);
}

/* ---- the writer ---- */

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} waiter;

static void on_done(lake_batch *b, void *ud)
{
    (void)b;
    waiter *w = ud;
    pthread_mutex_lock(&w->mu);
    w->done++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Builds a batch of lines {"id":"<id>","type":"t","ts":"…"} for the given hours. */
typedef struct mkbatch {
    buf lines;
    lake_event ev[64];
    lake_batch b;
} mkbatch;

static void batch_init(mkbatch *m, const char *prefix, int n, int64_t hour, int client_ids)
{
    memset(m, 0, sizeof *m);
    for (int i = 0; i < n; i++) {
        size_t off = m->lines.len;
        buf_printf(&m->lines, "{\"id\":\"%s-%d\",\"type\":\"t\"}\n", prefix, i);
        m->ev[i].off = (uint32_t)off;
        m->ev[i].len = (uint32_t)(m->lines.len - off);
        m->ev[i].id_off = (uint32_t)off + 7;
        m->ev[i].id_len = (uint16_t)(strlen(prefix) + 1 + (size_t)snprintf(NULL, 0, "%d", i));
        m->ev[i].client_id = (uint8_t)client_ids;
        m->ev[i].hour = hour;
    }
    m->b.lines = m->lines.p;
    m->b.ev = m->ev;
    m->b.n = (size_t)n;
    m->b.done = on_done;
}

static void submit_wait(lake_writer *w, mkbatch *m)
{
    waiter wt = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    m->b.ud = &wt;
    lake_writer_submit(w, &m->b);
    pthread_mutex_lock(&wt.mu);
    while (!wt.done) pthread_cond_wait(&wt.cv, &wt.mu);
    pthread_mutex_unlock(&wt.mu);
}

static int run(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int count_lines(const char *dir, int *files)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "find %s/events -type f -name '*.jsonl' 2>/dev/null | wc -l", dir);
    FILE *p = popen(cmd, "r");
    *files = 0;
    if (fscanf(p, "%d", files) != 1) *files = -1;
    pclose(p);
    snprintf(cmd, sizeof cmd,
             "cat $(find %s/events -type f -name '*.jsonl' 2>/dev/null) /dev/null | wc -l", dir);
    p = popen(cmd, "r");
    int n = -1;
    if (fscanf(p, "%d", &n) != 1) n = -1;
    pclose(p);
    return n;
}

/*
 * A writer on dir/.spool into the store at dir; seal_bytes 0 and seal_age 0 mean 1 MiB and 60 s,
 * max_open 0 the writer's default.
 */
static lake_writer *open_writer_open_max(const char *dir, store **s, uint64_t seal_bytes,
                                         int64_t seal_age_ms, size_t window, size_t max_open)
{
    char err[512], spool[1100];
    if (store_open(dir, s, err, sizeof err)) return NULL;
    snprintf(spool, sizeof spool, "%s/.spool", dir);
    lake_writer_config c = {.spool_dir = spool,
                            .store = *s,
                            .seal_bytes = seal_bytes ? seal_bytes : 1 << 20,
                            .seal_age_ms = seal_age_ms ? seal_age_ms : 60000,
                            .dedup_window = window,
                            .max_open_segments = max_open};
    lake_writer *w;
    if (lake_writer_open(&c, &w, err, sizeof err)) {
        fprintf(stderr, "writer: %s\n", err);
        store_close(*s);
        return NULL;
    }
    return w;
}

static lake_writer *open_writer_with(const char *dir, store **s, uint64_t seal_bytes,
                                     int64_t seal_age_ms, size_t window)
{
    return open_writer_open_max(dir, s, seal_bytes, seal_age_ms, window, 0);
}

static lake_writer *open_writer(const char *dir, store **s, size_t window)
{
    return open_writer_with(dir, s, 0, 0, window);
}

TEST(test_writer_commits_partitions_and_seals)
{
    log_setup(LOG_LOGFMT, LOG_WARN);
    char *dir = test_tmpdir("writer");
    store *s;
    lake_writer *w = open_writer(dir, &s, 1000);
    REQUIRE(w);
    mkbatch a, b;
    batch_init(&a, "a", 10, 493000, 1);
    batch_init(&b, "b", 5, 493001, 1);
    submit_wait(w, &a);
    submit_wait(w, &b);
    buf_free(&b.lines);
    CHECK_INT(0, a.b.status);
    CHECK_INT(10, a.b.accepted);
    lake_writer_stats st;
    lake_writer_stats_get(w, &st);
    CHECK_INT(2, st.segments_open);
    CHECK(st.spool_bytes > 0);
    lake_writer_flush(w);
    lake_writer_stats_get(w, &st);
    CHECK_INT(0, st.segments_open);
    CHECK_INT(2, st.segments_sealed);
    CHECK_INT(0, st.spool_bytes);
    int files;
    CHECK_INT(15, count_lines(dir, &files));
    CHECK_INT(2, files);
    char prefix[LAKE_KEY_MAX], path[2048];
    lake_hour_prefix(493001, prefix);
    snprintf(path, sizeof path, "find %s/%s -name '*.jsonl' | grep -q .", dir, prefix);
    CHECK_INT(0, run(path));
    buf_free(&a.lines);
    lake_writer_close(w);
    store_close(s);
    test_rmtree(dir);
    free(dir);
}

TEST(test_writer_answers_retried_ids_as_duplicates)
{
    log_setup(LOG_LOGFMT, LOG_WARN);
    char *dir = test_tmpdir("writer");
    store *s;
    lake_writer *w = open_writer(dir, &s, 1000);
    REQUIRE(w);
    mkbatch a, again, anon;
    batch_init(&a, "r", 8, 493000, 1);
    submit_wait(w, &a);
    CHECK_INT(8, a.b.accepted);
    batch_init(&again, "r", 12, 493000, 1); /* 8 seen + 4 new */
    submit_wait(w, &again);
    CHECK_INT(4, again.b.accepted);
    CHECK_INT(8, again.b.duplicates);
    batch_init(&anon, "r", 3, 493000, 0); /* server-assigned ids are never deduplicated */
    submit_wait(w, &anon);
    CHECK_INT(3, anon.b.accepted);
    buf_free(&a.lines);
    buf_free(&again.lines);
    buf_free(&anon.lines);
    lake_writer_close(w);
    int files;
    CHECK_INT(15, count_lines(dir, &files));
    store_close(s);
    test_rmtree(dir);
    free(dir);
}

TEST(test_writer_seals_by_age)
{
    log_setup(LOG_LOGFMT, LOG_WARN);
    char *dir = test_tmpdir("writer");
    store *s;
    lake_writer *w = open_writer_with(dir, &s, 0, 50, 1000);
    REQUIRE(w);
    mkbatch a;
    batch_init(&a, "age", 2, 493000, 1);
    submit_wait(w, &a);
    int files = 0;
    for (int i = 0; i < 200 && count_lines(dir, &files) != 2; i++) usleep(10000);
    CHECK_INT(2, count_lines(dir, &files));
    CHECK_INT(1, files);
    buf_free(&a.lines);
    lake_writer_close(w);
    store_close(s);
    test_rmtree(dir);
    free(dir);
}

TEST(test_writer_seals_by_size)
{
    log_setup(LOG_LOGFMT, LOG_WARN);
    char *dir = test_tmpdir("writer");
    store *s;
    lake_writer *w = open_writer_with(dir, &s, 100, 600000, 1000);
    REQUIRE(w);
    for (int k = 0; k < 3; k++) {
        mkbatch a;
        char p[8];
        snprintf(p, sizeof p, "s%d", k);
        batch_init(&a, p, 5, 493000, 1); /* ~130 bytes: over the seal size */
        submit_wait(w, &a);
        buf_free(&a.lines);
    }
    lake_writer_flush(w);
    int files;
    CHECK_INT(15, count_lines(dir, &files));
    CHECK_INT(3, files);
    lake_writer_close(w);
    store_close(s);
    test_rmtree(dir);
    free(dir);
}

TEST(test_writer_refuses_a_spool_in_use)
{
    log_setup(LOG_LOGFMT, LOG_WARN);
    char *dir = test_tmpdir("writer");
    store *s;
    lake_writer *w = open_writer(dir, &s, 10);
    REQUIRE(w);
    char err[512], spool[1100];
    snprintf(spool, sizeof spool, "%s/.spool", dir);
    lake_writer_config c = {.spool_dir = spool,
                            .store = s,
                            .seal_bytes = 1 << 20,
                            .seal_age_ms = 60000,
                            .dedup_window = 10};
    lake_writer *w2;
    CHECK_INT(-1, lake_writer_open(&c, &w2, err, sizeof err));
    /* the whole message, on one line: the pid is read back from the lock file, without its \n */
    char want[1300];
    snprintf(want, sizeof want, "spool %s is in use by another events server (pid %d)", spool,
             (int)getpid());
    CHECK_STR(want, err);
    lake_writer_close(w);
    store_close(s);
    test_rmtree(dir);
    free(dir);
}

static void write_bytes(const char *path, const char *content, size_t n)
{
    FILE *f = fopen(path, "w");
    fwrite(content, 1, n, f);
    fclose(f);
}
#define write_file(path, literal) write_bytes(path, literal, sizeof(literal) - 1)

/* The spool and lake a crash leaves under dir: segments with a bad line, a torn tail or nothing
 * at all, an interrupted repair, and a segment sealed before the crash, listed in sealed.log
 * (with one that is gone). */
static void write_crashed_spool(const char *dir)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/.spool", dir);
    mkdir(path, 0755);
    /* a segment with a bad line in the middle and a torn last line */
    snprintf(path, sizeof path, "%s/.spool/2026112510-01a21378-0562-7df9-8f38-f8abd12e745c.jsonl",
             dir);
    write_file(path, "{\"id\":\"k-1\",\"type\":\"t\"}\n"
                     "{\"id\":\"k-2\",\"type\":\"t\"}\n"
                     "\0\0\0garbage\n"
                     "{\"id\":\"k-3\",\"type\":\"t\"}\n"
                     "{\"id\":\"k-4\",\"ty");
    /* a segment whose only problem is a torn tail */
    snprintf(path, sizeof path, "%s/.spool/2026112511-01a21378-0562-7df9-8f38-f8abd12e745d.jsonl",
             dir);
    write_file(path, "{\"id\":\"k-5\",\"type\":\"t\"}\n{\"id\":\"k-6\",\"type\":\"t\"}\n{\"id\":");
    /* an empty segment */
    snprintf(path, sizeof path, "%s/.spool/2026112512-01a21378-0562-7df9-8f38-f8abd12e745e.jsonl",
             dir);
    write_file(path, "");
    /* an interrupted earlier repair */
    snprintf(path, sizeof path,
             "%s/.spool/2026112510-01a21378-0562-7df9-8f38-f8abd12e745c.jsonl.recover", dir);
    write_file(path, "partial");
    /* a segment sealed before the crash, listed in sealed.log */
    snprintf(path, sizeof path, "%s/events/2026/11/25/09", dir);
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", path);
    run(cmd);
    snprintf(path, sizeof path,
             "%s/events/2026/11/25/09/01a21378-0562-7df9-8f38-f8abd12e7400.jsonl", dir);
    write_file(path, "{\"id\":\"old-1\",\"type\":\"t\"}\n{\"id\":\"old-2\",\"type\":\"t\"}\n");
    snprintf(path, sizeof path, "%s/.spool/sealed.log", dir);
    write_file(path, "events/2026/11/25/09/01a21378-0562-7df9-8f38-f8abd12e7400.jsonl 2\n"
                     "events/2026/11/25/08/gone.jsonl 5\n");
}

/* The recovered segments are sealed with their whole lines only, the empty one dropped, and
 * nothing but the lock and the seal log left in the spool. */
static void recovered_segments_sealed_whole_lines(const char *dir)
{
    char path[2048], cmd[2200];
    size_t n;
    snprintf(path, sizeof path,
             "%s/events/2026/11/25/10/01a21378-0562-7df9-8f38-f8abd12e745c.jsonl", dir);
    char *t = test_read_file(path, &n);
    CHECK_STR("{\"id\":\"k-1\",\"type\":\"t\"}\n{\"id\":\"k-2\",\"type\":\"t\"}\n{\"id\":\"k-3\","
              "\"type\":\"t\"}\n",
              t);
    free(t);
    snprintf(path, sizeof path,
             "%s/events/2026/11/25/11/01a21378-0562-7df9-8f38-f8abd12e745d.jsonl", dir);
    t = test_read_file(path, &n);
    CHECK_STR("{\"id\":\"k-5\",\"type\":\"t\"}\n{\"id\":\"k-6\",\"type\":\"t\"}\n", t);
    free(t);
    snprintf(path, sizeof path, "%s/events/2026/11/25/12", dir);
    CHECK(access(path, F_OK) != 0); /* the empty segment is dropped, not sealed */
    /* the stream's open segment stays (empty: where its numbering goes on), with its id */
    snprintf(cmd, sizeof cmd,
             "test -z \"$(ls %s/.spool | grep -v -e LOCK -e sealed.log -e stream-)\"", dir);
    CHECK_INT(0, run(cmd));
}

/* Every recovered or recently sealed id is a duplicate now. */
static void recovered_ids_are_duplicates(lake_writer *w)
{
    static const char *ids[] = {"k-1", "k-3", "k-5", "k-6", "old-1", "old-2"};
    char lines[512];
    lake_event ev[6];
    size_t off = 0;
    for (int i = 0; i < 6; i++) {
        int len =
            snprintf(lines + off, sizeof lines - off, "{\"id\":\"%s\",\"type\":\"t\"}\n", ids[i]);
        ev[i] = (lake_event){.off = (uint32_t)off,
                             .len = (uint32_t)len,
                             .id_off = (uint32_t)off + 7,
                             .id_len = (uint16_t)strlen(ids[i]),
                             .client_id = 1,
                             .hour = 493000};
        off += (size_t)len;
    }
    mkbatch m;
    memset(&m, 0, sizeof m);
    m.b.lines = lines;
    m.b.ev = ev;
    m.b.n = 6;
    m.b.done = on_done;
    submit_wait(w, &m);
    CHECK_INT(6, m.b.duplicates);
    CHECK_INT(0, m.b.accepted);
}

TEST(test_writer_recovers_a_crashed_spool)
{
    log_setup(LOG_LOGFMT, LOG_ERROR);
    char *dir = test_tmpdir("recover");
    write_crashed_spool(dir);
    store *s;
    lake_writer *w = open_writer(dir, &s, 1000);
    REQUIRE(w);
    lake_writer_stats st;
    lake_writer_stats_get(w, &st);
    CHECK_INT(5, st.recovered_events);
    lake_writer_flush(w);
    recovered_segments_sealed_whole_lines(dir);
    recovered_ids_are_duplicates(w);
    lake_writer_close(w);
    store_close(s);
    test_rmtree(dir);
    free(dir);
}

TEST(test_writer_opens_with_an_empty_seal_log_and_an_empty_segment)
{
    /* a crash right after creating either file leaves it empty */
    log_setup(LOG_LOGFMT, LOG_ERROR);
    char *dir = test_tmpdir("recover");
    char path[2048];
    snprintf(path, sizeof path, "%s/.spool", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/.spool/sealed.log", dir);
    write_file(path, "");
    snprintf(path, sizeof path, "%s/.spool/2026112510-01a21378-0562-7df9-8f38-f8abd12e745c.jsonl",
             dir);
    write_file(path, "");
    store *s;
    lake_writer *w = open_writer(dir, &s, 1000);
    REQUIRE(w);
    lake_writer_stats st;
    lake_writer_stats_get(w, &st);
    CHECK_INT(0, st.recovered_events);
    lake_writer_close(w);
    store_close(s);
    test_rmtree(dir);
    free(dir);
}

/* ---- the spool changed under the writer ---- */

static int strcmp_ptr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The ids in the lake's raw files, sorted and joined with spaces. */
static char *lake_ids(const char *dir)
{
    buf all = BUF_INIT, out = BUF_INIT;
    int files;
    lake_read_all(dir, &all, &files);
    size_t n = 0, cap = 0;
    char **v = NULL;
    for (const char *p = all.p, *end = all.p + all.len; p && p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break;
        const char *q = strstr(p, "\"id\":\"");
        if (q && q < nl) {
            q += 6;
            if (n == cap) v = realloc(v, (cap = cap ? cap * 2 : 64) * sizeof *v);
            v[n++] = strndup(q, strcspn(q, "\""));
        }
        p = nl + 1;
    }
    if (n) qsort(v, n, sizeof *v, strcmp_ptr);
    for (size_t i = 0; i < n; i++) {
        buf_printf(&out, "%s%s", i ? " " : "", v[i]);
        free(v[i]);
    }
    free(v);
    buf_free(&all);
    buf_cstr(&out);
    return out.p ? out.p : strdup("");
}

/* The spool path of the only segment of the spool (the stream's aside). */
static int only_segment(const char *dir, char *path, size_t cap)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "ls %s/.spool/*.jsonl | grep -v /stream-", dir);
    FILE *p = popen(cmd, "r");
    int ok = p && fgets(path, (int)cap, p) != NULL;
    if (p) pclose(p);
    if (ok) path[strcspn(path, "\n")] = 0;
    return ok ? 0 : -1;
}

TEST(test_writer_refuses_a_group_and_rescues_a_segment_deleted_under_it)
{
    log_setup(LOG_LOGFMT, LOG_ERROR + 1);
    char *dir = test_tmpdir("rescue");
    store *s;
    lake_writer *w = open_writer(dir, &s, 1000);
    REQUIRE(w);
    mkbatch a, b, b2;
    batch_init(&a, "a", 3, 493000, 1);
    submit_wait(w, &a);
    REQUIRE_INT(0, a.b.status);
    char seg[2048];
    REQUIRE_INT(0, only_segment(dir, seg, sizeof seg));
    REQUIRE_INT(0, unlink(seg));

    batch_init(&b, "b", 2, 493000, 1);
    submit_wait(w, &b);
    CHECK_INT(-1, b.b.status);
    CHECK_CONTAINS("was deleted or replaced while the server wrote it", b.b.error);
    /* the acknowledged lines are back under their name, or the sealer (handed the rescued
     * segment when the group failed) has already moved them from there into the lake */
    if (access(seg, F_OK)) { /* gone from the spool: then in the lake (a rename) */
        char *sealed = lake_ids(dir);
        CHECK_STR("a-0 a-1 a-2", sealed);
        free(sealed);
    }
    lake_writer_stats st;
    lake_writer_stats_get(w, &st);
    CHECK_INT(1, st.segments_rescued);
    CHECK_CONTAINS("written again from its open descriptor", st.incident);
    CHECK_INT(0, st.events_lost);

    batch_init(&b2, "b", 2, 493000, 1); /* the client's retry is stored, not a duplicate */
    submit_wait(w, &b2);
    CHECK_INT(0, b2.b.status);
    CHECK_INT(2, b2.b.accepted);
    lake_writer_close(w);
    char *ids = lake_ids(dir);
    CHECK_STR("a-0 a-1 a-2 b-0 b-1", ids);
    free(ids);
    buf_free(&a.lines);
    buf_free(&b.lines);
    buf_free(&b2.lines);
    store_close(s);
    test_rmtree(dir);
    free(dir);
}

TEST(test_writer_makes_a_removed_spool_again_and_loses_nothing)
{
    log_setup(LOG_LOGFMT, LOG_ERROR + 1);
    char *dir = test_tmpdir("rescue");
    store *s;
    lake_writer *w = open_writer(dir, &s, 1000);
    REQUIRE(w);
    mkbatch a, a2, b, b2;
    batch_init(&a, "a", 3, 493000, 1);
    batch_init(&a2, "c", 2, 493001, 1);
    submit_wait(w, &a);
    submit_wait(w, &a2);
    REQUIRE_INT(0, a.b.status);
    REQUIRE_INT(0, a2.b.status);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf %s/.spool", dir);
    REQUIRE_INT(0, run(cmd));

    batch_init(&b, "b", 2, 493000, 1);
    submit_wait(w, &b);
    CHECK_INT(-1, b.b.status);
    CHECK_CONTAINS("was removed or moved under the server and has been made again", b.b.error);
    lake_writer_stats st;
    lake_writer_stats_get(w, &st);
    CHECK_INT(1, st.spool_recreated);
    CHECK_INT(2, st.segments_rescued);
    snprintf(cmd, sizeof cmd, "test -f %s/.spool/LOCK", dir);
    CHECK_INT(0, run(cmd));

    batch_init(&b2, "b", 2, 493000, 1);
    submit_wait(w, &b2);
    CHECK_INT(0, b2.b.status);
    CHECK_INT(2, b2.b.accepted);
    lake_writer_close(w);
    char *ids = lake_ids(dir);
    CHECK_STR("a-0 a-1 a-2 b-0 b-1 c-0 c-1", ids);
    free(ids);
    buf_free(&a.lines);
    buf_free(&a2.lines);
    buf_free(&b.lines);
    buf_free(&b2.lines);
    store_close(s);
    test_rmtree(dir);
    free(dir);
}

TEST(test_writer_rescues_a_segment_replaced_by_an_older_copy)
{
    log_setup(LOG_LOGFMT, LOG_ERROR + 1);
    char *dir = test_tmpdir("rescue");
    store *s;
    lake_writer *w = open_writer(dir, &s, 1000);
    REQUIRE(w);
    mkbatch a, b, c, c2;
    batch_init(&a, "a", 2, 493000, 1);
    submit_wait(w, &a);
    char seg[2048], cmd[4300];
    REQUIRE_INT(0, only_segment(dir, seg, sizeof seg));
    snprintf(cmd, sizeof cmd, "cp %s %s.old", seg, seg);
    REQUIRE_INT(0, run(cmd));
    batch_init(&b, "b", 2, 493000, 1);
    submit_wait(w, &b);
    REQUIRE_INT(0, b.b.status);
    snprintf(cmd, sizeof cmd, "mv %s.old %s", seg, seg); /* a restored backup, say */
    REQUIRE_INT(0, run(cmd));

    batch_init(&c, "c", 1, 493000, 1);
    submit_wait(w, &c);
    CHECK_INT(-1, c.b.status);
    batch_init(&c2, "c", 1, 493000, 1);
    submit_wait(w, &c2);
    CHECK_INT(0, c2.b.status);
    lake_writer_close(w);
    char *ids = lake_ids(dir);
    CHECK_STR("a-0 a-1 b-0 b-1 c-0", ids);
    free(ids);
    buf_free(&a.lines);
    buf_free(&b.lines);
    buf_free(&c.lines);
    buf_free(&c2.lines);
    store_close(s);
    test_rmtree(dir);
    free(dir);
}

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    while (d && readdir(d)) n++;
    if (d) closedir(d);
    return n;
}

/* One batch of n events, each in an hour of its own. */
static void batch_hours(mkbatch *m, lake_event **ev, int n, int64_t hour0)
{
    memset(m, 0, sizeof *m);
    *ev = calloc((size_t)n, sizeof **ev);
    for (int i = 0; i < n; i++) {
        size_t off = m->lines.len;
        buf_printf(&m->lines, "{\"id\":\"h-%05d\",\"type\":\"t\"}\n", i);
        (*ev)[i] = (lake_event){.off = (uint32_t)off,
                                .len = (uint32_t)(m->lines.len - off),
                                .id_off = (uint32_t)off + 7,
                                .id_len = 7,
                                .client_id = 1,
                                .hour = hour0 + i};
    }
    m->b.lines = m->lines.p;
    m->b.ev = *ev;
    m->b.n = (size_t)n;
    m->b.done = on_done;
}

TEST(test_writer_keeps_open_segments_within_the_limit_for_a_batch_over_many_hours)
{
    log_setup(LOG_LOGFMT, LOG_WARN);
    char *dir = test_tmpdir("hours");
    store *s;
    lake_writer *w = open_writer_open_max(dir, &s, 0, 0, 10000, 8);
    REQUIRE(w);
    int before = open_fds();
    mkbatch m;
    lake_event *ev;
    batch_hours(&m, &ev, 300, 490000);
    submit_wait(w, &m);
    CHECK_INT(0, m.b.status);
    CHECK_INT(300, m.b.accepted);
    lake_writer_stats st;
    lake_writer_stats_get(w, &st);
    CHECK(st.segments_open <= 8);
    CHECK(st.segments_evicted >= 292);
    int during = open_fds();
    if (during > before + 2 * 8 + 4)
        test_fail(__FILE__, __LINE__, "descriptors: %d before, %d after 300 hours", before, during);
    /* retried, every event is a duplicate: the retired segments' ids were kept */
    mkbatch again;
    lake_event *ev2;
    batch_hours(&again, &ev2, 300, 490000);
    submit_wait(w, &again);
    CHECK_INT(300, again.b.duplicates);
    lake_writer_close(w);
    int files;
    CHECK_INT(300, count_lines(dir, &files));
    CHECK_INT(300, files);
    free(ev);
    free(ev2);
    buf_free(&m.lines);
    buf_free(&again.lines);
    store_close(s);
    test_rmtree(dir);
    free(dir);
}

TEST(test_writer_keeps_a_segment_it_cannot_save_yet_and_saves_it_later)
{
    /* the spool removed and its path taken by a file: nothing can be written back now; the
     * group fails, the segment's descriptor goes to the sealer, which saves it once it can */
    log_setup(LOG_LOGFMT, LOG_ERROR + 1);
    char *dir = test_tmpdir("rescue");
    store *s;
    lake_writer *w = open_writer(dir, &s, 1000);
    REQUIRE(w);
    mkbatch a, b;
    batch_init(&a, "a", 3, 493000, 1);
    submit_wait(w, &a);
    REQUIRE_INT(0, a.b.status);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf %s/.spool && touch %s/.spool", dir, dir);
    REQUIRE_INT(0, run(cmd));
    batch_init(&b, "b", 2, 493000, 1);
    submit_wait(w, &b);
    CHECK_INT(-1, b.b.status);
    lake_writer_stats st;
    lake_writer_stats_get(w, &st);
    CHECK_INT(0, st.events_lost);
    snprintf(cmd, sizeof cmd, "rm %s/.spool", dir);
    REQUIRE_INT(0, run(cmd));
    lake_writer_close(w); /* the sealer's last attempt can make the spool again */
    char *ids = lake_ids(dir);
    CHECK_STR("a-0 a-1 a-2", ids);
    free(ids);
    buf_free(&a.lines);
    buf_free(&b.lines);
    store_close(s);
    test_rmtree(dir);
    free(dir);
}

/* ---- the quarantine (issue 13) ---- */

TEST(test_layout_names_the_quarantine_by_receive_hour)
{
    int64_t h = lake_hour(INT64_C(1795600800123)); /* 2026-11-25T10 */
    const char *u = "01a21378-0562-7df9-8f38-f8abd12e745c";
    char key[LAKE_KEY_MAX];
    lake_segment_key(LAKE_KIND_REJECTED, h, u, key);
    CHECK_STR("rejected/2026/11/25/10/01a21378-0562-7df9-8f38-f8abd12e745c.jsonl", key);
    int64_t h2;
    CHECK_INT(0, lake_parse_rejected_key(key, &h2));
    CHECK_INT(h, h2);
    CHECK_INT(-1, lake_parse_rejected_key("rejected/2026/11/25/10/x.parquet", &h2));
    CHECK_INT(-1, lake_parse_rejected_key("events/2026/11/25/10/x.jsonl", &h2));
    lake_segment_key(LAKE_KIND_EVENTS, h, u, key);
    CHECK_STR("events/2026/11/25/10/01a21378-0562-7df9-8f38-f8abd12e745c.jsonl", key);
    lake_rejected_day_prefix(h, key);
    CHECK_STR("rejected/2026/11/25/", key);
    lake_spool_name_of(LAKE_KIND_REJECTED, h, u, key);
    CHECK_STR("rejected-2026112510-01a21378-0562-7df9-8f38-f8abd12e745c.jsonl", key);
    int kind;
    char uuid[LAKE_UUID_LEN + 1];
    CHECK_INT(0, lake_parse_spool_name_of(key, &kind, &h2, uuid));
    CHECK_INT(LAKE_KIND_REJECTED, kind);
    CHECK_INT(h, h2);
    /* an events spool name is never taken for a quarantine one, nor the other way round */
    CHECK_INT(-1, lake_parse_spool_name(key, &h2, uuid));
    lake_spool_name(h, u, key);
    CHECK_INT(0, lake_parse_spool_name_of(key, &kind, &h2, uuid));
    CHECK_INT(LAKE_KIND_EVENTS, kind);
}

/* A batch of n events of hour, and q quarantine lines {"id":"<prefix>-q<i>",...} of qhour. */
static void batch_with_quarantine(mkbatch *m, buf *qlines, lake_event *qev, const char *prefix,
                                  int n, int64_t hour, int q, int64_t qhour)
{
    batch_init(m, prefix, n, hour, 1);
    for (int i = 0; i < q; i++) {
        size_t off = qlines->len;
        buf_printf(qlines, "{\"id\":\"%s-q%d\",\"reason\":\"x\",\"raw\":\"{}\"}\n", prefix, i);
        qev[i] = (lake_event){.off = (uint32_t)off,
                              .len = (uint32_t)(qlines->len - off),
                              .id_off = (uint32_t)off + 7,
                              .id_len = 4,
                              .client_id = 1, /* not deduplicated whatever this says */
                              .hour = qhour};
    }
    m->b.qlines = qlines->p;
    m->b.qev = qev;
    m->b.qn = (size_t)q;
}

TEST(test_writer_commits_quarantine_lines_with_the_events_and_seals_them_under_rejected)
{
    log_setup(LOG_LOGFMT, LOG_WARN);
    char *dir = test_tmpdir("writer-quarantine");
    store *s;
    lake_writer *w = open_writer(dir, &s, 1000);
    REQUIRE(w);
    mkbatch a, b;
    buf qa = BUF_INIT, qb = BUF_INIT;
    lake_event qeva[8], qevb[8];
    batch_with_quarantine(&a, &qa, qeva, "a", 3, 493000, 2, 493100);
    submit_wait(w, &a);
    CHECK_INT(0, a.b.status);
    CHECK_INT(3, a.b.accepted);
    CHECK_INT(2, a.b.quarantined);
    /* the same again: the events are duplicates, the refused records are kept again */
    batch_with_quarantine(&b, &qb, qevb, "a", 3, 493000, 2, 493100);
    submit_wait(w, &b);
    CHECK_INT(3, b.b.duplicates);
    CHECK_INT(2, b.b.quarantined);
    lake_writer_stats st;
    lake_writer_stats_get(w, &st);
    CHECK_INT(2, st.segments_open); /* one of events, one of the quarantine */
    /* a reader sees the quarantine segment in the spool, of its kind */
    lake_writer_pins *pins;
    char err[256];
    REQUIRE_INT(0, lake_writer_pin_spool(w, &pins, err, sizeof err));
    int kinds = 0;
    for (size_t i = 0; i < lake_writer_pins_count(pins); i++) {
        int kind;
        int64_t hour;
        char path[2048];
        lake_writer_pins_get(w, pins, i, &kind, &hour, path, sizeof path);
        kinds |= 1 << kind;
        CHECK_INT(kind == LAKE_KIND_REJECTED ? 493100 : 493000, hour);
        CHECK((kind == LAKE_KIND_REJECTED) == (strstr(path, "/rejected-") != NULL));
    }
    CHECK_INT(3, kinds);
    lake_writer_unpin_spool(w, pins);
    lake_writer_flush(w);
    int files;
    CHECK_INT(3, count_lines(dir, &files)); /* the events alone under events/ */
    char prefix[LAKE_KEY_MAX], cmd[2400];
    lake_rejected_hour_prefix(493100, prefix);
    snprintf(cmd, sizeof cmd, "test $(cat %s/%s*.jsonl | grep -c '\"id\":\"a-q') -eq 4", dir,
             prefix);
    CHECK_INT(0, run(cmd));
    /* a quarantine segment's lines are not sealed.log's: only event ids rebuild dedup */
    snprintf(cmd, sizeof cmd, "! grep -q rejected/ %s/.spool/sealed.log", dir);
    CHECK_INT(0, run(cmd));
    buf_free(&a.lines);
    buf_free(&b.lines);
    buf_free(&qa);
    buf_free(&qb);
    lake_writer_close(w);
    store_close(s);
    test_rmtree(dir);
    free(dir);
}

TEST(test_writer_recovers_a_quarantine_segment_as_it_does_an_events_segment)
{
    log_setup(LOG_LOGFMT, LOG_ERROR);
    char *dir = test_tmpdir("recover-quarantine");
    char path[2048];
    snprintf(path, sizeof path, "%s/.spool", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path,
             "%s/.spool/rejected-2026112510-01a21378-0562-7df9-8f38-f8abd12e745c.jsonl", dir);
    write_file(path, "{\"id\":\"q-1\",\"reason\":\"x\",\"raw\":\"{}\"}\n"
                     "{\"id\":\"q-2\",\"reason\":\"x\",\"raw\":\"[1]\"}\n"
                     "{\"id\":\"q-3\",\"rea");
    store *s;
    lake_writer *w = open_writer(dir, &s, 1000);
    REQUIRE(w);
    lake_writer_stats st;
    lake_writer_stats_get(w, &st);
    CHECK_INT(0, st.recovered_events); /* events only */
    lake_writer_flush(w);
    size_t n;
    snprintf(path, sizeof path,
             "%s/rejected/2026/11/25/10/01a21378-0562-7df9-8f38-f8abd12e745c.jsonl", dir);
    char *t = test_read_file(path, &n);
    CHECK_STR("{\"id\":\"q-1\",\"reason\":\"x\",\"raw\":\"{}\"}\n"
              "{\"id\":\"q-2\",\"reason\":\"x\",\"raw\":\"[1]\"}\n",
              t);
    free(t);
    /* its ids are not in the dedup window: an event with one of them is stored */
    mkbatch m;
    batch_init(&m, "q", 3, 493000, 1); /* ids q-0, q-1, q-2 */
    submit_wait(w, &m);
    CHECK_INT(3, m.b.accepted);
    buf_free(&m.lines);
    lake_writer_close(w);
    store_close(s);
    test_rmtree(dir);
    free(dir);
}

TEST(test_rejected_expire_deletes_the_hours_that_ended_before_the_retention)
{
    char *dir = test_tmpdir("expire");
    char cmd[4000];
    /* hours 09, 10 and 11 of 2026-11-25; "now" is 12:30, the retention 2 h: 09 and 10 end by
     * 11:00 and 10:30 is the limit, so only 09 goes (it ended at 10:00) */
    snprintf(
        cmd, sizeof cmd,
        "cd %s && for h in 09 10 11; do mkdir -p rejected/2026/11/25/$h && "
        "echo '{}' > rejected/2026/11/25/$h/a.jsonl && echo '{}' > rejected/2026/11/25/$h/b.jsonl; "
        "done && mkdir -p events/2026/11/25/09 && echo '{}' > events/2026/11/25/09/e.jsonl",
        dir);
    REQUIRE_INT(0, run(cmd));
    store *s;
    char err[512];
    REQUIRE_INT(0, store_open(dir, &s, err, sizeof err));
    int64_t now = INT64_C(1795600800000) + 2 * EVTIME_HOUR_MS + 30 * 60000; /* 12:30 */
    uint64_t files = 0, hours = 0;
    CHECK_INT(0, lake_rejected_expire(s, now, 2 * EVTIME_HOUR_MS, &files, &hours, err, sizeof err));
    CHECK_INT(2, files);
    CHECK_INT(1, hours);
    snprintf(cmd, sizeof cmd,
             "cd %s && test ! -e rejected/2026/11/25/09 && test -e rejected/2026/11/25/10/a.jsonl "
             "&& test -e rejected/2026/11/25/11/b.jsonl && test -e events/2026/11/25/09/e.jsonl",
             dir);
    CHECK_INT(0, run(cmd));
    /* an hour later 10 goes too; then the whole day, and its emptied month and year */
    CHECK_INT(0, lake_rejected_expire(s, now + EVTIME_HOUR_MS, 2 * EVTIME_HOUR_MS, &files, &hours,
                                      err, sizeof err));
    CHECK_INT(4, files);
    CHECK_INT(0, lake_rejected_expire(s, now + 30 * EVTIME_HOUR_MS, 2 * EVTIME_HOUR_MS, &files,
                                      &hours, err, sizeof err));
    CHECK_INT(6, files);
    CHECK_INT(3, hours);
    snprintf(cmd, sizeof cmd, "cd %s && test -d rejected && test -z \"$(ls rejected)\"", dir);
    CHECK_INT(0, run(cmd));
    store_close(s);
    test_rmtree(dir);
    free(dir);
}
