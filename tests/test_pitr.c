/*
 * test_pitr.c - the change log through a real server: CDC events in the lake,
 * snapshots uploaded and listed, and restores from the lake alone that give
 * the same database as a local restore (the property test).
 */
#include "cdc_util.h"
#include "events.h"
#include "harness.h"
#include "test.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *const SEAL_FAST[] = {"--seal-age", "200ms", NULL};

typedef struct env {
    char *dir;
    char lake[1024], dbpath[1024];
    srv s;
    sqlite3 *db;
    events_emitter *em;
} env;

/* The emitter's config: the server, the service's handle, quick retries. */
static events_config env_config(env *e)
{
    events_config c;
    memset(&c, 0, sizeof c);
    c.endpoint = e->s.url;
    c.db = e->db;
    c.flush_interval_ms = 50;
    c.backoff_min_ms = 20;
    c.backoff_max_ms = 200;
    c.identity.id = "app-1";
    return c;
}

static int env_open(env *e, const char *tag)
{
    memset(e, 0, sizeof *e);
    e->dir = test_tmpdir(tag);
    snprintf(e->lake, sizeof e->lake, "%s/lake", e->dir);
    snprintf(e->dbpath, sizeof e->dbpath, "%s/app.db", e->dir);
    if (srv_start(&e->s, e->lake, SEAL_FAST)) return -1;
    if (sqlite3_open(e->dbpath, &e->db) != SQLITE_OK) return -1;
    sqlite3_busy_timeout(e->db, 5000);
    events_config c = env_config(e);
    if (events_emitter_open(&c, &e->em)) {
        fprintf(stderr, "emitter: %s\n", events_errmsg());
        return -1;
    }
    return 0;
}

static void env_close(env *e)
{
    if (e->em) events_emitter_close(e->em, 5000);
    if (e->db) sqlite3_close(e->db);
    if (test_failed_now() && e->s.log[0]) srv_dump_log(&e->s);
    if (e->s.pid) srv_stop(&e->s, SIGKILL);
    if (e->s.log[0]) unlink(e->s.log);
    test_rmtree(e->dir);
    free(e->dir);
}

/* Stops the server and returns every event of the lake whose type starts with prefix, in file
 * order. */
static json_t *lake_events(env *e, const char *prefix)
{
    srv_stop(&e->s, SIGTERM);
    buf all = BUF_INIT;
    lake_read_all(e->lake, &all, NULL);
    json_t *out = json_array();
    for (const char *p = all.p, *end = all.p + all.len; p && p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break;
        json_t *v = json_loadb(p, (size_t)(nl - p), 0, NULL);
        const char *t = json_string_value(json_object_get(v, "type"));
        if (t && !strncmp(t, prefix, strlen(prefix))) json_array_append(out, v);
        json_decref(v);
        p = nl + 1;
    }
    buf_free(&all);
    return out;
}

static json_t *find_event(json_t *all, const char *type, const char *doc_id, const char *bookmark)
{
    size_t i;
    json_t *v;
    json_array_foreach(all, i, v)
    {
        if (strcmp(json_string_value(json_object_get(v, "type")), type)) continue;
        if (doc_id && strcmp(json_string_value(json_object_get(v, "docId")), doc_id)) continue;
        if (bookmark && strcmp(json_string_value(json_object_get(v, "bookmark")), bookmark))
            continue;
        return v;
    }
    return NULL;
}

static char *dump(json_t *v)
{
    return v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS) : strdup("(none)");
}

#define CHECK_JSON(want, v)                                                                        \
    do {                                                                                           \
        json_t *w_ = json_loads(want, JSON_DECODE_ANY, NULL);                                      \
        if (!w_ || !(v) || !json_equal(w_, (v))) {                                                 \
            char *a_ = dump(v), *b_ = dump(w_);                                                    \
            test_fail(__FILE__, __LINE__, "%s:\n  expected: %s\n  actual:   %s", #v, b_, a_);      \
            free(a_);                                                                              \
            free(b_);                                                                              \
        }                                                                                          \
        json_decref(w_);                                                                           \
    } while (0)

TEST(cdc_events_in_the_lake_carry_the_documents)
{
    env e;
    REQUIRE_INT(0, env_open(&e, "pitr-cdc"));
    events_collection *users, *quiet;
    REQUIRE_INT(0, events_collection_open(e.em, "users", NULL, &users));
    events_collection_config nc = {.no_prev = 1};
    REQUIRE_INT(0, events_collection_open(e.em, "quiet", &nc, &quiet));
    char b[8][17];
    CHECK_INT(0, events_collection_put(users, "u1", "{\"name\":\"Ada\"}"));
    events_bookmark(e.db, b[0]);
    CHECK_INT(0, events_collection_put(users, "u1", "{\"name\":\"Ada L.\",\"born\":1815}"));
    events_bookmark(e.db, b[1]);
    CHECK_INT(0, events_begin(e.em)); /* two documents, one rpc event, one transaction */
    CHECK_INT(0, events_collection_put(users, "u2", "{\"name\":\"Grace\"}"));
    CHECK_INT(0, events_collection_put(quiet, "q1", "{\"v\":1}"));
    CHECK_INT(0, events_emit_rpc(e.em, "users", "create", 1.5, 1, NULL));
    CHECK_INT(0, events_commit(e.em));
    events_bookmark(e.db, b[2]);
    CHECK_INT(0, events_collection_put(quiet, "q1", "{\"v\":2}"));
    events_bookmark(e.db, b[3]);
    CHECK_INT(0, events_collection_delete(users, "u1"));
    events_bookmark(e.db, b[4]);
    /* a plain table written through libevents: a changeset, no collection event */
    CHECK_INT(0, events_exec(e.db, "CREATE TABLE plain(id INTEGER PRIMARY KEY, v TEXT)"));
    CHECK_INT(0, events_exec(e.db, "INSERT INTO plain VALUES (1, 'x')"));
    events_bookmark(e.db, b[5]);
    CHECK_INT(0, events_flush(e.em, 20000));
    events_stats st;
    events_emitter_stats(e.em, &st);
    CHECK_INT(0, st.dead);
    CHECK_INT(0, st.queued);

    json_t *all = lake_events(&e, "");
    json_t *coll = json_array(), *cs = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(all, i, v)
    {
        const char *t = json_string_value(json_object_get(v, "type"));
        if (!strncmp(t, "collection.", 11)) json_array_append(coll, v);
        if (!strcmp(t, "sqlite.changeset")) json_array_append(cs, v);
    }
    CHECK_INT(6, json_array_size(coll));
    CHECK_INT(6, json_array_size(cs)); /* one per transaction, each small enough for one part */
    json_t *x = find_event(all, "collection.insert", "u1", b[0]);
    CHECK_JSON("\"Ada\"", json_object_get(json_object_get(x, "doc"), "name"));
    CHECK(json_is_null(json_object_get(x, "prev")));
    CHECK_JSON("{\"id\":\"app-1\"}", json_object_get(x, "do"));
    CHECK_JSON("\"users\"", json_object_get(x, "collection"));
    x = find_event(all, "collection.update", "u1", b[1]);
    CHECK_JSON("{\"name\":\"Ada L.\",\"born\":1815}", json_object_get(x, "doc"));
    CHECK_JSON("{\"name\":\"Ada\"}", json_object_get(x, "prev"));
    x = find_event(all, "collection.insert", "u2", b[2]);
    CHECK_JSON("{\"name\":\"Grace\"}", json_object_get(x, "doc"));
    x = find_event(all, "collection.insert", "q1", b[2]);
    CHECK(x && !json_object_get(x, "prev")); /* not tracked for this collection */
    x = find_event(all, "collection.update", "q1", b[3]);
    CHECK_JSON("{\"v\":2}", json_object_get(x, "doc"));
    CHECK(x && !json_object_get(x, "prev"));
    x = find_event(all, "collection.delete", "u1", b[4]);
    CHECK(x && json_is_null(json_object_get(x, "doc")));
    CHECK_JSON("{\"name\":\"Ada L.\",\"born\":1815}", json_object_get(x, "prev"));
    x = find_event(all, "sqlite.changeset", NULL, b[5]);
    CHECK_JSON("{\"plain\":{\"insert\":1,\"update\":0,\"delete\":0}}",
               json_object_get(x, "tables"));
    CHECK_JSON("1", json_object_get(x, "parts"));
    CHECK(json_string_length(json_object_get(x, "changeset")) > 10);
    CHECK(find_event(all, "rpc.call", NULL, NULL) != NULL);
    /* ids: source:bookmark:n, the same however often the row is sent */
    x = find_event(all, "sqlite.changeset", NULL, b[0]);
    const char *src = json_string_value(json_object_get(x, "source"));
    char want[200];
    snprintf(want, sizeof want, "%s:%s:cs0", src ? src : "", b[0]);
    CHECK_STR(want, json_string_value(json_object_get(x, "id")));
    json_decref(coll);
    json_decref(cs);
    json_decref(all);
    events_collection_close(users);
    events_collection_close(quiet);
    env_close(&e);
}

/* A transaction larger than one event: its changeset travels in parts, every document too. */
TEST(large_transaction_in_parts)
{
    env e;
    REQUIRE_INT(0, env_open(&e, "pitr-large"));
    events_collection *c;
    REQUIRE_INT(0, events_collection_open(e.em, "big", NULL, &c));
    enum { N = 600 };
    char *ids[N], *docs[N];
    for (int i = 0; i < N; i++) {
        ids[i] = malloc(16);
        docs[i] = malloc(1100);
        snprintf(ids[i], 16, "d%04d", i);
        int k = snprintf(docs[i], 1100, "{\"i\":%d,\"pad\":\"", i);
        memset(docs[i] + k, 'a' + i % 26, 1000);
        strcpy(docs[i] + k + 1000, "\"}");
    }
    CHECK_INT(
        0, events_collection_put_many(c, N, (const char *const *)ids, (const char *const *)docs));
    CHECK_INT(0, events_flush(e.em, 30000));
    json_t *all = lake_events(&e, "");
    int parts = 0, inserts = 0;
    size_t i;
    json_t *v;
    json_array_foreach(all, i, v)
    {
        const char *t = json_string_value(json_object_get(v, "type"));
        if (!strcmp(t, "sqlite.changeset")) {
            parts++;
            CHECK_INT(7, json_integer_value(json_object_get(v, "parts")));
        }
        if (!strcmp(t, "collection.insert")) inserts++;
    }
    CHECK_INT(7, parts); /* 600 KB of changeset in 96 KiB parts */
    CHECK_INT(N, inserts);
    json_decref(all);
    for (int k = 0; k < N; k++) free(ids[k]), free(docs[k]);
    events_collection_close(c);
    env_close(&e);
}

/*
 * A collection outlives its emitter: what it records with no emitter open reaches the lake
 * through the next one, whose snapshot works after the collection is closed too.
 */
TEST(collections_outlive_their_emitter)
{
    env e;
    REQUIRE_INT(0, env_open(&e, "pitr-life"));
    events_collection *users;
    REQUIRE_INT(0, events_collection_open(e.em, "users", NULL, &users));
    char b[3][17];
    CHECK_INT(0, events_collection_put(users, "u1", "{\"v\":1}"));
    events_bookmark(e.db, b[0]);
    CHECK_INT(0, events_emitter_close(e.em, 20000));
    e.em = NULL;
    CHECK_INT(0, events_collection_put(users, "u1", "{\"v\":2}"));
    events_bookmark(e.db, b[1]);
    CHECK_INT(0, events_collection_put(users, "u2", "{\"v\":1}"));
    events_bookmark(e.db, b[2]);
    CHECK_INT(2, sql_int(e.db, "SELECT count(*) FROM _events_outbox"));

    events_config c = env_config(&e);
    REQUIRE_INT(0, events_emitter_open(&c, &e.em));
    events_collection_close(users);
    char snap[17];
    CHECK_INT(0, events_snapshot(e.em, snap));
    CHECK_STR(b[2], snap);
    CHECK_INT(0, events_flush(e.em, 20000));
    json_t *all = lake_events(&e, "collection.");
    CHECK_INT(3, json_array_size(all));
    CHECK(find_event(all, "collection.insert", "u1", b[0]) != NULL);
    CHECK(find_event(all, "collection.update", "u1", b[1]) != NULL);
    CHECK(find_event(all, "collection.insert", "u2", b[2]) != NULL);
    json_decref(all);
    env_close(&e);
}

/* ---- snapshots on the server -------------------------------------------------------------- */

/* The header of a snapshot's upload. */
static const char *const SQLITE_TYPE[] = {"Content-Type: application/vnd.sqlite3", NULL};

/* GET /snapshots?source= lists the snapshot: its bookmark, source, sha256 and tables. */
static void snapshot_listed(const env *e, const char *src, const char *bm)
{
    char url[300];
    resp r;
    snprintf(url, sizeof url, "%s/snapshots?source=%s", e->s.url, src);
    CHECK_INT(0, http_do("GET", url, NULL, NULL, 0, 0, &r));
    CHECK_INT(200, r.status);
    json_t *list = json_loads(r.body.p, 0, NULL);
    json_t *m = json_array_get(json_object_get(list, "snapshots"), 0);
    CHECK_STR(bm, json_string_value(json_object_get(m, "bookmark")));
    CHECK_STR(src, json_string_value(json_object_get(m, "source")));
    CHECK_INT(64, json_string_length(json_object_get(m, "sha256")));
    CHECK_JSON("[{\"name\":\"users\",\"rows\":20}]", json_object_get(m, "tables"));
    json_decref(list);
    resp_free(&r);
}

/* The file at url, as the server keeps it, is the database at that bookmark, and without tokens
 * not readable by other web pages (docs/http.md, CORS). The answer is left in r. */
static void snapshot_fetched_is_the_database(const env *e, const char *url, resp *r)
{
    CHECK_INT(0, http_do("GET", url, NULL, NULL, 0, 0, r));
    CHECK_INT(200, r->status);
    CHECK(!strstr(r->head.p, "Access-Control-Allow-Origin"));
    char path[1200];
    snprintf(path, sizeof path, "%s/fetched.db", e->dir);
    FILE *f = fopen(path, "wb");
    fwrite(r->body.p, 1, r->body.len, f);
    fclose(f);
    sqlite3 *s2;
    REQUIRE(sqlite3_open(path, &s2) == SQLITE_OK);
    CHECK_STR(db_hash(e->db), db_hash(s2));
    sqlite3_close(s2);
}

/* The same upload again (body, fetched from url) is answered with its manifest; other content
 * under the name is 409. */
static void snapshot_uploaded_again_or_conflicting(const char *url, const char *bm, resp *r)
{
    resp r2;
    CHECK_INT(0, http_do("PUT", url, SQLITE_TYPE, r->body.p, r->body.len, 0, &r2));
    CHECK_INT(200, r2.status);
    CHECK_CONTAINS(bm, r2.body.p);
    resp_free(&r2);
    r->body.p[r->body.len - 1] ^= 1; /* the last page: still a database, another checksum */
    CHECK_INT(0, http_do("PUT", url, SQLITE_TYPE, r->body.p, r->body.len, 0, &r2));
    CHECK_INT(409, r2.status);
    CHECK_CONTAINS("exists with other content", r2.body.p);
    resp_free(&r2);
}

/* Bad snapshot requests are answered with their status and reason. */
static void snapshot_bad_requests(const env *e)
{
    struct {
        const char *method, *path, *body;
        long status;
        const char *msg;
    } bad[] = {
        {"PUT", "/snapshots/a/0000000000000001", "not a database at all, but long enough", 422,
         "not a SQLite database"},
        {"PUT", "/snapshots/a/xyz", "x", 400, "16 lowercase hex digits"},
        {"PUT", "/snapshots/bad%20name/0000000000000001", "x", 400, "must be 1-32 characters"},
        {"PUT", "/snapshots/a", "x", 400, "expected /snapshots/{source}/{bookmark}"},
        {"GET", "/snapshots/a/00000000000000ff", NULL, 404, "no snapshot a/00000000000000ff"},
        {"POST", "/snapshots/a/0000000000000001", "x", 405, "not allowed"},
        {"GET", "/snapshots?source=..", NULL, 400, "must be 1-32 characters"},
    };
    char url[300];
    resp r;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(url, sizeof url, "%s%s", e->s.url, bad[i].path);
        CHECK_INT(0, http_do(bad[i].method, url, SQLITE_TYPE, bad[i].body,
                             bad[i].body ? strlen(bad[i].body) : 0, 0, &r));
        if (r.status != bad[i].status)
            test_fail(__FILE__, __LINE__, "%s %s: %ld, not %ld: %s", bad[i].method, bad[i].path,
                      r.status, bad[i].status, r.body.p);
        CHECK_CONTAINS(bad[i].msg, r.body.p);
        resp_free(&r);
    }
}

TEST(snapshots_uploaded_listed_and_fetched)
{
    env e;
    REQUIRE_INT(0, env_open(&e, "pitr-snap"));
    events_collection *c;
    REQUIRE_INT(0, events_collection_open(e.em, "users", NULL, &c));
    for (int i = 0; i < 20; i++) {
        char id[16], doc[40];
        snprintf(id, sizeof id, "u%02d", i);
        snprintf(doc, sizeof doc, "{\"i\":%d}", i);
        CHECK_INT(0, events_collection_put(c, id, doc));
    }
    char bm[17];
    CHECK_INT(0, events_snapshot(e.em, bm));
    CHECK_STR("0000000000000014", bm);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(e.db, "SELECT value FROM _events_meta WHERE key = 'source'", -1, &st, NULL);
    sqlite3_step(st);
    char src[64];
    snprintf(src, sizeof src, "%s", sqlite3_column_text(st, 0));
    sqlite3_finalize(st);

    snapshot_listed(&e, src, bm);
    char url[300];
    snprintf(url, sizeof url, "%s/snapshots/%s/%s", e.s.url, src, bm);
    resp r;
    snapshot_fetched_is_the_database(&e, url, &r);
    snapshot_uploaded_again_or_conflicting(url, bm, &r);
    resp_free(&r);
    snapshot_bad_requests(&e);
    events_collection_close(c);
    env_close(&e);
}

TEST(snapshot_limits_and_scopes)
{
    char *dir = test_tmpdir("pitr-snaplim");
    char lake[1100];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    char tokens[1100];
    snprintf(tokens, sizeof tokens, "%s/tokens", dir);
    FILE *f = fopen(tokens, "w");
    fprintf(f, "reader reader-token-0123456789 query\nwriter writer-token-0123456789 ingest\n");
    fclose(f);
    srv s = {0};
    const char *args[] = {"--tokens-file", tokens, "--max-snapshot", "8KiB", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    char url[300];
    snprintf(url, sizeof url, "%s/snapshots/a/0000000000000001", s.url);
    char body[10000];
    memset(body, 'x', sizeof body);
    const char *rd[] = {"Authorization: Bearer reader-token-0123456789", NULL};
    const char *wr[] = {"Authorization: Bearer writer-token-0123456789", NULL};
    resp r;
    CHECK_INT(0, http_do("PUT", url, rd, body, 100, 0, &r));
    CHECK_INT(403, r.status);
    CHECK_CONTAINS("lacks the ingest or admin scope", r.body.p);
    resp_free(&r);
    CHECK_INT(0, http_do("PUT", url, NULL, body, 100, 0, &r));
    CHECK_INT(401, r.status);
    resp_free(&r);
    CHECK_INT(0, http_do("PUT", url, wr, body, sizeof body, 0, &r));
    CHECK_INT(413, r.status);
    CHECK_CONTAINS("over the limit of 8192 bytes", r.body.p);
    resp_free(&r);
    snprintf(url, sizeof url, "%s/snapshots", s.url);
    CHECK_INT(0, http_do("GET", url, wr, NULL, 0, 0, &r));
    CHECK_INT(403, r.status);
    resp_free(&r);
    CHECK_INT(0, http_do("GET", url, rd, NULL, 0, 0, &r));
    CHECK_INT(200, r.status);
    CHECK_STR("{\"snapshots\":[]}\n", r.body.p);
    resp_free(&r);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    unlink(s.log);
    test_rmtree(dir);
    free(dir);
}

/* The resident memory of a process, in bytes; -1 if unknown. */
static long long rss_of(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = atoll(line + 6);
    if (f) fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

/* A GET on a raw loopback socket with a small receive buffer, whose answer is read later. */
static int slow_get(const srv *s, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) || write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads from fd into b until want bytes are there, the peer closes, or 60 s pass. */
static void read_until(int fd, buf *b, size_t want)
{
    char tmp[65536];
    for (time_t end = time(NULL) + 60; b->len < want && time(NULL) < end;) {
        ssize_t r = read(fd, tmp, sizeof tmp);
        if (r <= 0) break;
        buf_append(b, tmp, (size_t)r);
    }
}

static long long metric_of(const srv *s, const char *name)
{
    char url[128], key[128];
    snprintf(url, sizeof url, "%s/metrics", s->url);
    snprintf(key, sizeof key, "\n%s ", name);
    resp r;
    long long v = -1;
    if (!http_do("GET", url, NULL, NULL, 0, 5000, &r) && r.status == 200) {
        const char *p = strstr(r.body.p, key);
        if (p) v = atoll(p + strlen(key));
    }
    resp_free(&r);
    return v;
}

/*
 * Readers that take a big snapshot slowly cost the server a descriptor each,
 * not the snapshot's size: it is sent from the file. Their number is bounded.
 */
TEST(snapshot_download_streams_with_bounded_memory)
{
    char *dir = test_tmpdir("pitr-snapbig");
    char lake[1100], dbpath[1100];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    snprintf(dbpath, sizeof dbpath, "%s/big.db", dir);
    /* a 96 MiB database */
    sqlite3 *db;
    REQUIRE(sqlite3_open(dbpath, &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db,
                         "PRAGMA page_size = 65536; CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB);"
                         "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x "
                         "< 96) INSERT INTO t SELECT x, randomblob(1048576) FROM c",
                         NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    size_t size = 0;
    char *file = test_read_file(dbpath, &size);
    REQUIRE(file && size > (96u << 20));

    srv s = {0};
    const char *args[] = {"--max-snapshot", "256MiB", "--snapshot-downloads", "5", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    char url[300];
    const char *path = "/snapshots/big/0000000000000001";
    snprintf(url, sizeof url, "%s%s", s.url, path);
    resp r;
    CHECK_INT(0, http_do("PUT", url, NULL, file, size, 60000, &r));
    CHECK_INT(201, r.status);
    resp_free(&r);
    long long before = rss_of(s.pid);

    /* five readers that read the headers and then nothing */
    enum { READERS = 5 };
    int fd[READERS];
    buf got[READERS];
    for (int i = 0; i < READERS; i++) {
        got[i] = (buf)BUF_INIT;
        REQUIRE((fd[i] = slow_get(&s, path)) >= 0);
        read_until(fd[i], &got[i], 1024);
        CHECK_CONTAINS("HTTP/1.1 200 OK", buf_cstr(&got[i]));
    }
    /* a sixth is refused while they run */
    CHECK_INT(0, http_do("GET", url, NULL, NULL, 0, 10000, &r));
    CHECK_INT(503, r.status);
    CHECK_STR("{\"ok\":false,\"error\":\"5 snapshot downloads are running, the most this server "
              "takes (--snapshot-downloads)\"}\n",
              r.body.p);
    resp_free(&r);
    CHECK_INT(READERS, metric_of(&s, "events_snapshot_downloads"));
    CHECK_INT(1, metric_of(&s, "events_snapshot_downloads_refused_total"));
    long long during = rss_of(s.pid);
    /* holding the file per reader would be 5 x 96 MiB */
    if (during - before > (32ll << 20))
        test_fail(__FILE__, __LINE__, "the server grew by %lld MiB with %d slow readers",
                  (during - before) >> 20, READERS);

    /* each reader gets the whole file, byte for byte */
    for (int i = 0; i < READERS; i++) {
        read_until(fd[i], &got[i], (size_t)-1);
        close(fd[i]);
        const char *body = strstr(buf_cstr(&got[i]), "\r\n\r\n");
        REQUIRE(body != NULL);
        body += 4;
        CHECK_INT(size, got[i].len - (size_t)(body - got[i].p));
        CHECK(got[i].len - (size_t)(body - got[i].p) == size && !memcmp(body, file, size));
        CHECK_CONTAINS("Content-Type: application/vnd.sqlite3", got[i].p);
        buf_free(&got[i]);
    }
    for (int i = 0; i < 100 && metric_of(&s, "events_snapshot_downloads") != 0; i++) usleep(50000);
    CHECK_INT(0, metric_of(&s, "events_snapshot_downloads"));
    CHECK_INT(0, http_do("GET", url, NULL, NULL, 0, 60000, &r));
    CHECK_INT(200, r.status);
    CHECK(r.body.len == size && !memcmp(r.body.p, file, size));
    resp_free(&r);
    free(file);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    if (test_failed_now()) srv_dump_log(&s);
    unlink(s.log);
    test_rmtree(dir);
    free(dir);
}

/* The names in a directory, sorted, separated by spaces (a static buffer). */
static const char *dir_names(const char *path)
{
    static char out[4096];
    char names[64][256];
    int n = 0;
    DIR *d = opendir(path);
    struct dirent *de;
    while (d && (de = readdir(d)) && n < 64)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
            strncmp(de->d_name, "stream-", 7)) /* the stream's id and open segment (lake.md) */
            snprintf(names[n++], sizeof names[0], "%s", de->d_name);
    if (d) closedir(d);
    qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    out[0] = 0;
    for (int i = 0; i < n; i++)
        snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", i ? " " : "", names[i]);
    return out;
}

TEST(snapshot_upload_in_wal_mode_leaves_nothing_in_the_spool)
{
    char *dir = test_tmpdir("pitr-snapwal");
    char lake[1100], dbpath[1100], spool[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    snprintf(spool, sizeof spool, "%s/.spool", lake);
    snprintf(dbpath, sizeof dbpath, "%s/wal.db", dir);
    sqlite3 *db;
    REQUIRE(sqlite3_open(dbpath, &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db,
                         "PRAGMA journal_mode = WAL; CREATE TABLE t(id INTEGER PRIMARY KEY);"
                         "INSERT INTO t VALUES (1), (2), (3); PRAGMA wal_checkpoint(TRUNCATE)",
                         NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    size_t size = 0;
    char *file = test_read_file(dbpath, &size);
    REQUIRE(file && size >= 512);
    CHECK_INT(2, file[18]); /* the header says WAL */
    srv s = {0};
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    char url[300];
    snprintf(url, sizeof url, "%s/snapshots/wal/0000000000000003", s.url);
    resp r;
    CHECK_INT(0, http_do("PUT", url, NULL, file, size, 0, &r));
    CHECK_INT(201, r.status);
    CHECK_CONTAINS("\"tables\":[{\"name\":\"t\",\"rows\":3}]", r.body.p);
    resp_free(&r);
    /* nothing of the upload is left beside the spool's own files (server.json: where it listens;
     * copies/: the query engine's copies of raw files) */
    CHECK_STR("LOCK copies sealed.log server.json", dir_names(spool));
    CHECK_INT(0, http_do("GET", url, NULL, NULL, 0, 0, &r));
    CHECK_INT(200, r.status);
    CHECK(r.body.len == size && !memcmp(r.body.p, file, size));
    resp_free(&r);
    free(file);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    if (test_failed_now()) srv_dump_log(&s);
    unlink(s.log);
    test_rmtree(dir);
    free(dir);
}

TEST(snapshot_leftovers_in_the_spool_are_removed_at_start)
{
    char *dir = test_tmpdir("pitr-snapleft");
    char lake[1100], spool[1200], path[1300];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    snprintf(spool, sizeof spool, "%s/.spool", lake);
    CHECK_INT(0, sh("mkdir -p '%s'", spool));
    /* an upload and a download that a crash cut short */
    snprintf(path, sizeof path, "%s/snapshot-00000000deadbeef.tmp", spool);
    CHECK_INT(0, sh("echo partial > '%s'", path));
    snprintf(path, sizeof path, "%s/snapshot-get-00000000deadbeef.tmp", spool);
    CHECK_INT(0, sh("echo partial > '%s'", path));
    srv s = {0};
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    CHECK_STR("LOCK copies sealed.log server.json", dir_names(spool));
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    char *log = test_read_file(s.log, NULL);
    CHECK_CONTAINS("msg=\"snapshot leftovers removed\" files=2", log);
    free(log);
    if (test_failed_now()) srv_dump_log(&s);
    unlink(s.log);
    test_rmtree(dir);
    free(dir);
}

/* ---- the property test: any bookmark, locally and from the lake alone ---------------------- */

#include "pitr.h"

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t next(rng *r)
{
    r->s ^= r->s << 13, r->s ^= r->s >> 7, r->s ^= r->s << 17;
    return r->s;
}

static int below(rng *r, int n)
{
    return (int)(next(r) % (uint64_t)n);
}

typedef struct mark {
    char bm[17];
    char hash[65];
} mark;

/* One random operation inside the open transaction. */
static void random_op(rng *r, sqlite3 *db, events_collection *c, int *ops)
{
    char sql[300], id[32], doc[160];
    int k = below(r, 300);
    switch (below(r, 7)) {
    case 0:
    case 1:
        snprintf(id, sizeof id, "doc-%d", k);
        snprintf(doc, sizeof doc, "{\"k\":%d,\"v\":%llu,\"tags\":[\"t%d\"],\"nested\":{\"x\":%d}}",
                 k, (unsigned long long)(next(r) % 1000000), below(r, 9), below(r, 100));
        CHECK_INT(0, events_collection_put(c, id, doc));
        break;
    case 2:
        snprintf(id, sizeof id, "doc-%d", k);
        events_collection_delete(c, id); /* ENOTFOUND is fine */
        break;
    case 3:
        snprintf(sql, sizeof sql,
                 "INSERT OR REPLACE INTO accounts(id, owner, balance) VALUES (%d, 'o%d', %d)", k,
                 below(r, 50), below(r, 10000));
        CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
        break;
    case 4:
        snprintf(sql, sizeof sql, "UPDATE accounts SET balance = balance + %d WHERE id %% 7 = %d",
                 below(r, 100) - 50, below(r, 7));
        CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
        break;
    case 5:
        snprintf(sql, sizeof sql,
                 "INSERT OR REPLACE INTO tags(name, owner, weight) VALUES ('tag%d', 'o%d', %f)",
                 below(r, 100), below(r, 50), (double)below(r, 1000) / 7.0);
        CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
        break;
    default:
        if (below(r, 2))
            snprintf(sql, sizeof sql, "DELETE FROM accounts WHERE id %% 13 = %d", below(r, 13));
        else
            snprintf(sql, sizeof sql, "DELETE FROM tags WHERE length(name) + weight %% 13 = %d",
                     below(r, 13));
        CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
        break;
    }
    (*ops)++;
}

static double secs_since(struct timespec t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
}

#define PROPERTY_OPS      10000
#define PROPERTY_RESTORES 200

/* The bookmarks recorded, each with the database's hash there, and the ones picked to restore. */
typedef struct history {
    mark *marks;
    int n;
    int pick[PROPERTY_RESTORES];
} history;

/* PROPERTY_OPS random operations in transactions, some rolled back, a snapshot half way: every
 * bookmark recorded with the database's hash, a rollback leaving the database as before. */
static void record_random_history(env *e, rng *r, events_collection *c, history *h)
{
    mark *marks = h->marks;
    int nmarks = 0, ops = 0, rolled_back = 0, txs = 0;
    events_bookmark(e->db, marks[nmarks].bm);
    strcpy(marks[nmarks++].hash, db_hash(e->db));
    int mid_snapshot_done = 0;
    while (ops < PROPERTY_OPS) {
        int size = 1 + below(r, below(r, 4) ? 8 : 60);
        int rollback = below(r, 10) == 0;
        CHECK_INT(0, events_begin(e->em));
        for (int i = 0; i < size && ops < PROPERTY_OPS; i++) random_op(r, e->db, c, &ops);
        if (rollback) {
            CHECK_INT(0, events_rollback(e->em));
            rolled_back++;
        } else {
            CHECK_INT(0, events_commit(e->em));
            txs++;
        }
        char bm[17];
        events_bookmark(e->db, bm);
        if (strcmp(bm, marks[nmarks - 1].bm)) {
            strcpy(marks[nmarks].bm, bm);
            strcpy(marks[nmarks++].hash, db_hash(e->db));
        } else {
            CHECK_STR(marks[nmarks - 1].hash,
                      db_hash(e->db)); /* rolled back (or nothing changed): as before */
        }
        if (!mid_snapshot_done && ops >= PROPERTY_OPS / 2) {
            char s2[17];
            CHECK_INT(0, events_snapshot(e->em, s2));
            CHECK_STR(marks[nmarks - 1].bm, s2);
            mid_snapshot_done = 1;
        }
    }
    h->n = nmarks;
    fprintf(stderr, "  %d operations in %d transactions (%d rolled back), %d bookmarks\n", ops,
            txs + rolled_back, rolled_back, nmarks);
    CHECK(nmarks > 500);
    CHECK_INT(0, events_flush(e->em, 120000));
    events_stats st;
    events_emitter_stats(e->em, &st);
    CHECK_INT(0, st.dead);
}

/* Restores from the lake alone (every changeset loaded once, then each picked bookmark from the
 * latest snapshot at or before it) give the database recorded there. */
static void lake_restores_give_the_recorded_database(env *e, const history *h)
{
    srv_stop(&e->s, SIGTERM); /* seals everything into the lake */
    store *lst;
    char err[1024];
    REQUIRE(store_open(e->lake, &lst, err, sizeof err) == 0);
    query_config qcfg = {.store = lst};
    query_engine *qe;
    REQUIRE(query_engine_open(&qcfg, &qe, err, sizeof err) == 0);
    query_conn *qc = query_conn_new(qe, err, sizeof err);
    REQUIRE(qc);
    uint64_t *snaps;
    size_t nsnaps;
    REQUIRE(pitr_snapshots(lst, "prop-db", &snaps, &nsnaps, err, sizeof err) == 0);
    CHECK_INT(2, nsnaps);
    pitr_changes ch;
    if (pitr_load_changes(qc, "prop-db", snaps[0], UINT64_MAX, &ch, err, sizeof err))
        test_fail(__FILE__, __LINE__, "load: %s", err);
    CHECK_INT(strtoull(h->marks[h->n - 1].bm, NULL, 16) - snaps[0], ch.n);
    int lake_ok = 0;
    struct timespec t_lake;
    clock_gettime(CLOCK_MONOTONIC, &t_lake);
    for (int i = 0; i < PROPERTY_RESTORES && !test_failed_now(); i++) {
        const mark *m = &h->marks[h->pick[i]];
        uint64_t b = strtoull(m->bm, NULL, 16), snap = snaps[0];
        for (size_t k = 0; k < nsnaps; k++)
            if (snaps[k] <= b) snap = snaps[k];
        char out[1200];
        snprintf(out, sizeof out, "%s/dr-%d.db", e->dir, i);
        pitr_report rep;
        if (pitr_apply(lst, "prop-db", snap, &ch, b, out, 0, 0, NULL, NULL, &rep, err,
                       sizeof err)) {
            test_fail(__FILE__, __LINE__, "from the lake to %s: %s", m->bm, err);
            break;
        }
        sqlite3 *d;
        REQUIRE(sqlite3_open(out, &d) == SQLITE_OK);
        if (strcmp(m->hash, db_hash(d)))
            test_fail(__FILE__, __LINE__,
                      "from the lake to %s (snapshot %016llx): the database differs", m->bm,
                      (unsigned long long)snap);
        else
            lake_ok++;
        CHECK_INT(b, sql_int(d, "SELECT value FROM _events_meta WHERE key = 'bookmark'"));
        sqlite3_close(d);
        unlink(out);
    }
    fprintf(stderr, "  %d restores from the lake alone gave the recorded database (%.1f s)\n",
            lake_ok, secs_since(t_lake));
    pitr_changes_free(&ch);
    free(snaps);
    query_conn_free(qc);
    query_engine_close(qe);
    store_close(lst);
}

/* Local restores, in the order picked (random), each recorded in its turn, give the database
 * recorded at each bookmark. */
static void local_restores_give_the_recorded_database(env *e, const history *h)
{
    struct timespec t_local;
    clock_gettime(CLOCK_MONOTONIC, &t_local);
    int local_ok = 0;
    for (int i = 0; i < PROPERTY_RESTORES && !test_failed_now(); i++) {
        const mark *m = &h->marks[h->pick[i]];
        events_restore_report rep;
        int rc = events_restore(e->db, m->bm, 0, &rep);
        if (rc) {
            test_fail(__FILE__, __LINE__, "restore to %s: %s", m->bm, events_errmsg());
            break;
        }
        if (strcmp(m->hash, db_hash(e->db)))
            test_fail(__FILE__, __LINE__, "restore to %s: the database differs", m->bm);
        else
            local_ok++;
    }
    fprintf(stderr, "  %d local restores gave the recorded database (%.1f s)\n", local_ok,
            secs_since(t_local));
}

TEST(property_any_bookmark_locally_and_from_the_lake)
{
    env e;
    REQUIRE_INT(0, env_open(&e, "pitr-prop"));
    uint64_t seed = (uint64_t)time(NULL) | 1;
    if (getenv("PITR_SEED")) seed = strtoull(getenv("PITR_SEED"), NULL, 10);
    fprintf(stderr, "  seed %llu (PITR_SEED=%llu to repeat)\n", (unsigned long long)seed,
            (unsigned long long)seed);
    rng r = {seed};
    events_track_config tc = {.source = "prop-db"};
    REQUIRE_INT(0, events_track(e.db, &tc));
    REQUIRE(
        sqlite3_exec(
            e.db,
            "CREATE TABLE accounts(id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER);"
            "CREATE TABLE tags(name TEXT, owner TEXT, weight REAL, PRIMARY KEY (owner, name)) "
            "WITHOUT ROWID;",
            NULL, NULL, NULL) == SQLITE_OK);
    events_collection *c;
    REQUIRE_INT(0, events_collection_open(e.em, "docs", NULL, &c));
    char snap0[17];
    CHECK_INT(0, events_snapshot(e.em, snap0)); /* the base the lake starts from */

    history h = {.marks = calloc(PROPERTY_OPS + 2, sizeof(mark))};
    record_random_history(&e, &r, c, &h);
    for (int i = 0; i < PROPERTY_RESTORES; i++) h.pick[i] = below(&r, h.n);
    lake_restores_give_the_recorded_database(&e, &h);
    local_restores_give_the_recorded_database(&e, &h);
    free(h.marks);
    events_collection_close(c);
    events_untrack(e.db);
    env_close(&e);
}

/* ---- the command line: events snapshot, events history, events restore ---------------------- */

#define EVENTS_CLI(out, fmt, ...) sh("'%s' " fmt " > '%s' 2>&1", events_bin(), __VA_ARGS__, out)

static char *slurp(const char *path)
{
    char *t = test_read_file(path, NULL);
    return t ? t : strdup("");
}

/* The lake of one tracked database, cli-db, its collection users changed six times (bookmarks 2
 * to 7, each recorded with the database's hash), and the paths the commands write. */
typedef struct cli_fixture {
    env e;
    events_collection *c;
    char out[1200], dr[1200];
    mark m[8];
} cli_fixture;

/* events snapshot: uploaded to the server, written into a file (not over one that exists),
 * listed; with neither destination, a usage error. */
static void cli_snapshot_uploads_writes_and_lists(cli_fixture *f)
{
    env *e = &f->e;
    const char *out = f->out;
    char snapfile[1200];
    snprintf(snapfile, sizeof snapfile, "%s/snap.db", e->dir);
    CHECK_INT(0, EVENTS_CLI(out, "snapshot --db '%s' --server %s", e->dbpath, e->s.url));
    char *t = slurp(out);
    CHECK_CONTAINS("uploaded cli-db/0000000000000001", t);
    free(t);
    CHECK_INT(0, EVENTS_CLI(out, "snapshot --db '%s' --out '%s'", e->dbpath, snapfile));
    CHECK_INT(1, EVENTS_CLI(out, "snapshot --db '%s' --out '%s'", e->dbpath, snapfile));
    t = slurp(out);
    CHECK_CONTAINS("exists", t);
    free(t);
    CHECK_INT(0, EVENTS_CLI(out, "snapshot --server %s --list --source cli-db", e->s.url));
    t = slurp(out);
    CHECK_CONTAINS("\"bookmark\":\"0000000000000001\"", t);
    free(t);
    CHECK_INT(2, EVENTS_CLI(out, "snapshot --db '%s'", e->dbpath));
}

/* Six changes of users (puts of u1 and u2, a delete of u1), each bookmark recorded, sent and
 * sealed into the lake by stopping the server. */
static void cli_record_changes(cli_fixture *f)
{
    env *e = &f->e;
    for (int i = 0; i < 6; i++) {
        char doc[40];
        snprintf(doc, sizeof doc, "{\"n\":%d}", i + 1);
        if (i == 4)
            CHECK_INT(0, events_collection_delete(f->c, "u1"));
        else
            CHECK_INT(0, events_collection_put(f->c, i % 2 ? "u2" : "u1", doc));
        events_bookmark(e->db, f->m[i].bm);
        strcpy(f->m[i].hash, db_hash(e->db));
        usleep(5000); /* distinct times for --time */
    }
    CHECK_INT(0, events_flush(e->em, 20000));
    srv_stop(&e->s, SIGTERM);
}

/* events history: every version, in order, with change and bookmark. */
static void cli_history_lists_every_version(cli_fixture *f)
{
    const char *out = f->out;
    CHECK_INT(0, EVENTS_CLI(out, "history users u1 --lake '%s' --format csv", f->e.lake));
    char *t = slurp(out);
    CHECK_CONTAINS("ts,change,bookmark,doc,prev", t);
    const char *p1 = strstr(t, ",insert,0000000000000002,"),
               *p2 = strstr(t, ",update,0000000000000004,"),
               *p3 = strstr(t, ",delete,0000000000000006,");
    CHECK(p1 && p2 && p3 && p1 < p2 && p2 < p3);
    free(t);
}

/* events restore from the lake alone: to a bookmark, not over a file that exists unless --force,
 * and --dry-run saying what it would do. */
static void cli_restore_from_the_lake(cli_fixture *f)
{
    const char *out = f->out, *lake = f->e.lake, *dr = f->dr;
    const mark *m = f->m;
    CHECK_INT(0, EVENTS_CLI(out, "restore --lake '%s' --source cli-db --bookmark %s --out '%s'",
                            lake, m[2].bm, dr));
    char *t = slurp(out);
    CHECK_CONTAINS("wrote", t);
    CHECK_CONTAINS("snapshot 0000000000000001 of cli-db, then 3 transactions", t);
    free(t);
    sqlite3 *d;
    REQUIRE(sqlite3_open(dr, &d) == SQLITE_OK);
    CHECK_STR(m[2].hash, db_hash(d));
    sqlite3_close(d);
    CHECK_INT(2, EVENTS_CLI(out, "restore --lake '%s' --source cli-db --bookmark %s --out '%s'",
                            lake, m[3].bm, dr));
    t = slurp(out);
    CHECK_CONTAINS("exists (--force replaces it)", t);
    free(t);
    CHECK_INT(0, EVENTS_CLI(out,
                            "restore --lake '%s' --source cli-db --bookmark %s --out '%s' --force",
                            lake, m[5].bm, dr));
    REQUIRE(sqlite3_open(dr, &d) == SQLITE_OK);
    CHECK_STR(m[5].hash, db_hash(d));
    sqlite3_close(d);
    CHECK_INT(0, EVENTS_CLI(out, "restore --lake '%s' --source cli-db --bookmark %s --dry-run",
                            lake, m[4].bm));
    t = slurp(out);
    CHECK_CONTAINS("would write nothing: snapshot 0000000000000001 of cli-db, then 5 transactions",
                   t);
    free(t);
}

/*
 * Restore from the lake alone after the lake's table took the changes in: appended (the hour
 * is not due), then its snapshots expired and the folded segments deleted, so that the
 * changes are only in the table's Parquet files: every bookmark still gives its database.
 */
static void cli_restore_after_appends_and_expiry(cli_fixture *f)
{
    const char *out = f->out, *lake = f->e.lake, *dr = f->dr;
    for (int run = 0; run < 2; run++)
        CHECK_INT(0, EVENTS_CLI(out, "compact --lake '%s' --open-hours --retain 0", lake));
    char *t = slurp(out);
    CHECK_CONTAINS("compacted", t);
    free(t);
    for (int i = 0; i < 6; i++) {
        CHECK_INT(0, EVENTS_CLI(out,
                                "restore --lake '%s' --source cli-db --bookmark %s --out '%s' "
                                "--force",
                                lake, f->m[i].bm, dr));
        sqlite3 *d;
        REQUIRE(sqlite3_open(dr, &d) == SQLITE_OK);
        CHECK_STR(f->m[i].hash, db_hash(d));
        sqlite3_close(d);
    }
}

/* events restore --time: the state as of the time of a bookmark's transaction. */
static void cli_restore_to_a_time(cli_fixture *f)
{
    const char *out = f->out, *lake = f->e.lake, *dr = f->dr;
    CHECK_INT(
        0,
        EVENTS_CLI(
            out,
            "query --lake '%s' --format csv \"SELECT strftime(ts, '%%Y-%%m-%%dT%%H:%%M:%%S.%%gZ') "
            "FROM events WHERE type = 'sqlite.changeset' AND bookmark = '%s'\"",
            lake, f->m[3].bm));
    char *t = slurp(out);
    char *nl = strchr(t, '\n'), when[64] = "";
    if (nl) snprintf(when, sizeof when, "%.*s", (int)strcspn(nl + 1, "\n"), nl + 1);
    free(t);
    CHECK(strlen(when) == 24);
    unlink(dr);
    CHECK_INT(0, EVENTS_CLI(out, "restore --lake '%s' --source cli-db --time %s --out '%s'", lake,
                            when, dr));
    sqlite3 *d;
    REQUIRE(sqlite3_open(dr, &d) == SQLITE_OK);
    CHECK_STR(f->m[3].hash, db_hash(d));
    sqlite3_close(d);
}

/* events restore from the lake refuses, saying why: before the oldest snapshot, past the changes
 * the lake has, an unknown source (1); no valid bookmark, no destination (2). */
static void cli_restore_from_the_lake_refusals(cli_fixture *f)
{
    const char *out = f->out, *lake = f->e.lake;
    CHECK_INT(
        1,
        EVENTS_CLI(out, "restore --lake '%s' --source cli-db --bookmark 0000000000000000 --dry-run",
                   lake));
    char *t = slurp(out);
    CHECK_CONTAINS(
        "no snapshot of cli-db at or before 0000000000000000 (the oldest is 0000000000000001)", t);
    free(t);
    CHECK_INT(
        1,
        EVENTS_CLI(out, "restore --lake '%s' --source cli-db --bookmark 00000000000000ff --dry-run",
                   lake));
    t = slurp(out);
    CHECK_CONTAINS("the lake has no changes for transactions 0000000000000008..00000000000000ff",
                   t);
    free(t);
    CHECK_INT(
        1,
        EVENTS_CLI(out, "restore --lake '%s' --source nobody --bookmark 0000000000000001 --dry-run",
                   lake));
    CHECK_INT(
        2, EVENTS_CLI(out, "restore --lake '%s' --source cli-db --bookmark nope --out x.db", lake));
    CHECK_INT(2, EVENTS_CLI(out, "restore --lake '%s' --source cli-db --out x.db", lake));
    CHECK_INT(
        2, EVENTS_CLI(out, "restore --lake '%s' --source cli-db --bookmark %s", lake, f->m[1].bm));
}

/* events restore --db in place, with the service stopped: --dry-run, the restore (itself a
 * bookmark), one past the last bookmark refused, a missing database a usage error. */
static void cli_restore_in_place(cli_fixture *f)
{
    env *e = &f->e;
    const char *out = f->out;
    events_collection_close(f->c);
    f->c = NULL;
    events_emitter_close(e->em, 0);
    e->em = NULL;
    events_untrack(e->db);
    sqlite3_close(e->db);
    e->db = NULL;
    CHECK_INT(0,
              EVENTS_CLI(out, "restore --db '%s' --bookmark %s --dry-run", e->dbpath, f->m[1].bm));
    char *t = slurp(out);
    CHECK_CONTAINS("would restore", t);
    free(t);
    CHECK_INT(0, EVENTS_CLI(out, "restore --db '%s' --bookmark %s", e->dbpath, f->m[1].bm));
    t = slurp(out);
    CHECK_CONTAINS("restored", t);
    CHECK_CONTAINS("the restore is bookmark 0000000000000008", t);
    free(t);
    sqlite3 *d;
    REQUIRE(sqlite3_open(e->dbpath, &d) == SQLITE_OK);
    CHECK_STR(f->m[1].hash, db_hash(d));
    sqlite3_close(d);
    CHECK_INT(1, EVENTS_CLI(out, "restore --db '%s' --bookmark 00000000000000ff", e->dbpath));
    t = slurp(out);
    CHECK_CONTAINS("after the last one", t);
    free(t);
    CHECK_INT(2, EVENTS_CLI(out, "restore --db '%s/none.db' --bookmark %s", e->dir, f->m[1].bm));
}

TEST(cli_snapshot_history_restore)
{
    cli_fixture f;
    memset(&f, 0, sizeof f);
    REQUIRE_INT(0, env_open(&f.e, "pitr-cli"));
    events_track_config tc = {.source = "cli-db"};
    REQUIRE_INT(0, events_track(f.e.db, &tc));
    REQUIRE_INT(0, events_collection_open(f.e.em, "users", NULL, &f.c));
    snprintf(f.out, sizeof f.out, "%s/out.txt", f.e.dir);
    snprintf(f.dr, sizeof f.dr, "%s/dr.db", f.e.dir);
    CHECK_INT(0, events_collection_put(f.c, "u0", "{\"n\":0}"));
    cli_snapshot_uploads_writes_and_lists(&f);
    cli_record_changes(&f);
    cli_history_lists_every_version(&f);
    cli_restore_from_the_lake(&f);
    cli_restore_after_appends_and_expiry(&f);
    cli_restore_to_a_time(&f);
    cli_restore_from_the_lake_refusals(&f);
    cli_restore_in_place(&f);
    env_close(&f.e);
}
