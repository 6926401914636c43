/*
 * test_iceberg.c - the Iceberg metadata module (lake/iceberg.h) on a directory
 * store with real Parquet files written by DuckDB: the live files after each
 * append, replace and expiry; two commits on one base; a remove of a file that
 * is no longer live; what Debian's avrocat (avro-bin) decodes of every manifest
 * and manifest list; the field ids in their headers; the column statistics; the
 * store catalog's probing past a lagging hint.
 *
 * test_iceberg_table_for_readers also makes the table that tests/iceberg/run.sh
 * gives to an independent reader (icebird): with ICE_TABLE_OUT=DIR it writes the
 * lake into DIR and, in DIR/expected.ndjson, DuckDB's reading of the live files.
 */
#include "avro.h"
#include "iceberg.h"
#include "iceberg_int.h"
#include "store.h"
#include "duck_util.h"
#include "test.h"

#include <duckdb.h>
#include <inttypes.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

/* 2026-11-25 10:00:00 UTC in hours and microseconds since the epoch */
#define H10   ((int64_t)498778)
#define US(h) ((int64_t)(h) * (int64_t)3600000000)

typedef struct lake {
    char *dir;
    store *s;
    ice_catalog cat;
    duckdb_database db;
    duckdb_connection con;
} lake;

static int lake_open(lake *l, const char *dir)
{
    char err[512];
    memset(l, 0, sizeof *l);
    l->dir = strdup(dir);
    if (store_open(dir, &l->s, err, sizeof err)) {
        fprintf(stderr, "store_open: %s\n", err);
        return -1;
    }
    l->cat = ice_store_catalog(l->s);
    if (duckdb_open(NULL, &l->db) == DuckDBError || duckdb_connect(l->db, &l->con) == DuckDBError)
        return -1;
    return 0;
}

static void lake_close(lake *l, int remove)
{
    duckdb_disconnect(&l->con);
    duckdb_close(&l->db);
    store_close(l->s);
    if (remove) test_rmtree(l->dir);
    free(l->dir);
}

/*
 * Writes n events of hour h at key (events/YYYY/MM/DD/HH/name.parquet) with ids
 * prefix-0 … prefix-(n-1): a second apart from minute 1, every third without a
 * do, every fourth without a receivedAt; and fills f for a commit.
 */
static int put_events(lake *l, int64_t h, const char *name, const char *prefix, int n, ice_file *f)
{
    char key[256], path[1600], err[512];
    time_t at = (time_t)(h * 3600);
    struct tm tm;
    gmtime_r(&at, &tm);
    char hour_dir[32];
    strftime(hour_dir, sizeof hour_dir, "%Y/%m/%d/%H", &tm);
    snprintf(key, sizeof key, "events/%s/%s.parquet", hour_dir, name);
    snprintf(path, sizeof path, "%s/%s", l->dir, key);
    char *slash = strrchr(path, '/');
    *slash = 0;
    char cmd[1700];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
    if (system(cmd)) return -1;
    *slash = '/';
    if (duck_exec(l->con,
                  "COPY (SELECT '%s-' || i AS id, CASE WHEN i %% 2 = 0 THEN 'page.view' ELSE "
                  "'rpc.call' END AS type,"
                  " make_timestamptz(%" PRId64 " + 60000000 + i * 1000000 + i * 1000) AS ts,"
                  " CASE WHEN i %% 4 = 3 THEN NULL ELSE make_timestamptz(%" PRId64
                  " + 61000000 + i * 1000000) END AS receivedAt,"
                  " CASE WHEN i %% 3 = 2 THEN NULL ELSE {'id': 'do-' || (i %% 5), 'name': 'room',"
                  " 'class': 'Room', 'colo': 'AMS'} END AS \"do\","
                  " CASE WHEN i %% 2 = 1 THEN 'send' END AS method,"
                  " CASE WHEN i %% 2 = 1 THEN i * 1.25 - 3 END AS durationMs,"
                  " CASE WHEN i %% 2 = 1 THEN i %% 3 <> 0 END AS success,"
                  " CASE WHEN i %% 6 = 3 THEN 'timeout' END AS error,"
                  " 'orders' AS collection, 'doc-' || (i %% 7) AS docId,"
                  " '{\"n\":' || i || ',\"s\":\"é\",\"t\":\"hello\"}' AS doc, CASE WHEN i > 0 THEN "
                  "'{\"n\":' || (i - 1)"
                  " || '}' END AS prev, NULL::VARCHAR AS bookmark,"
                  " '{\"id\":\"%s-' || i || '\"}' AS _events_json"
                  " FROM range(%d) t(i)) TO '%s' (FORMAT parquet, COMPRESSION zstd, %s)",
                  prefix, US(h), US(h), prefix, n, path, ice_duckdb_field_ids()))
        return -1;
    memset(f, 0, sizeof *f);
    f->key = strdup(key);
    f->hour = h;
    if (ice_stats_from_parquet(l->con, path, f, err, sizeof err)) {
        fprintf(stderr, "ice_stats_from_parquet: %s\n", err);
        return -1;
    }
    return 0;
}

/* The live keys of t in [lo, hi], joined by spaces (sorted by ice_files). */
static char *live(lake *l, const ice_table *t, int64_t lo, int64_t hi)
{
    ice_file *fs;
    size_t n;
    char err[512];
    if (ice_files(l->s, t, lo, hi, &fs, &n, err, sizeof err)) {
        fprintf(stderr, "ice_files: %s\n", err);
        return strdup("(error)");
    }
    buf b = BUF_INIT;
    for (size_t i = 0; i < n; i++)
        buf_printf(&b, "%s%s", i ? " " : "", strrchr(fs[i].key, '/') + 1);
    ice_files_free(fs, n);
    if (!buf_cstr(&b)) return strdup("");
    return b.p; /* the buf's memory, free()d by the caller */
}

#define CHECK_LIVE(exp, l, t, lo, hi)                                                              \
    do {                                                                                           \
        char *got_ = live(l, t, lo, hi);                                                           \
        CHECK_STR(exp, got_);                                                                      \
        free(got_);                                                                                \
    } while (0)

static int commit(lake *l, const ice_table *base, const char *op, ice_file *add, size_t nadd,
                  const char *const *remove, size_t nremove, int64_t now, ice_table **out)
{
    char err[512];
    ice_change c = {
        .operation = op, .add = add, .nadd = nadd, .remove = remove, .nremove = nremove};
    int rc = ice_commit(&l->cat, l->s, base, &c, now, out, err, sizeof err);
    if (rc && rc != ICE_ECONFLICT && rc != ICE_ESTALE && rc != ICE_EINVAL)
        fprintf(stderr, "ice_commit: %s\n", err);
    return rc;
}

static int64_t summary(const ice_table *t, const char *key)
{
    const json_t *snaps = json_object_get(ice_table_json(t), "snapshots");
    json_t *last = json_array_get(snaps, json_array_size(snaps) - 1);
    const char *v = json_string_value(json_object_get(json_object_get(last, "summary"), key));
    return v ? strtoll(v, NULL, 10) : -1;
}

/* The keys under prefix in the store that end with suffix, counted. */
typedef struct count_ud {
    const char *suffix;
    int n;
} count_ud;

static int count_one(const store_entry *e, void *ud)
{
    count_ud *c = ud;
    size_t k = strlen(e->key), s = strlen(c->suffix);
    if (k >= s && !strcmp(e->key + k - s, c->suffix)) c->n++;
    return 0;
}

static int count_keys(lake *l, const char *prefix, const char *suffix)
{
    char err[512];
    count_ud c = {suffix, 0};
    if (store_list(l->s, prefix, count_one, &c, err, sizeof err)) return -1;
    return c.n;
}

/* ---- the files of each snapshot ------------------------------------------------------------ */

TEST(test_iceberg_append_replace_expire_list_exactly_the_live_files)
{
    char *dir = test_tmpdir("ice");
    lake l;
    REQUIRE(lake_open(&l, dir) == 0);
    ice_file f[5];
    REQUIRE(put_events(&l, H10, "a", "a", 50, &f[0]) == 0);
    REQUIRE(put_events(&l, H10, "b", "b", 30, &f[1]) == 0);
    REQUIRE(put_events(&l, H10 + 1, "c", "c", 20, &f[2]) == 0);
    REQUIRE(put_events(&l, H10 + 2, "d", "d", 10, &f[3]) == 0);
    REQUIRE(put_events(&l, H10, "e", "e", 80, &f[4]) == 0);

    ice_table *t1 = NULL, *t2 = NULL, *t3 = NULL, *t4 = NULL;
    REQUIRE_INT(ICE_OK, commit(&l, NULL, "append", f, 2, NULL, 0, 1000, &t1));
    CHECK_INT(1, ice_table_version(t1));
    CHECK_LIVE("a.parquet b.parquet", &l, t1, INT64_MIN, INT64_MAX);
    CHECK_INT(80, summary(t1, "total-records"));

    REQUIRE_INT(ICE_OK, commit(&l, t1, "append", f + 2, 2, NULL, 0, 2000, &t2));
    CHECK_INT(2, ice_table_version(t2));
    CHECK_LIVE("a.parquet b.parquet c.parquet d.parquet", &l, t2, INT64_MIN, INT64_MAX);
    CHECK_LIVE("c.parquet", &l, t2, H10 + 1, H10 + 1);
    CHECK_LIVE("c.parquet d.parquet", &l, t2, H10 + 1, INT64_MAX);
    CHECK_LIVE("", &l, t2, H10 + 3, INT64_MAX);

    const char *gone[] = {f[0].key, f[1].key};
    REQUIRE_INT(ICE_OK, commit(&l, t2, "replace", f + 4, 1, gone, 2, 3000, &t3));
    CHECK_LIVE("e.parquet c.parquet d.parquet", &l, t3, INT64_MIN, INT64_MAX);
    CHECK_LIVE("e.parquet", &l, t3, H10, H10);
    CHECK_INT(2, summary(t3, "deleted-data-files"));
    CHECK_INT(80, summary(t3, "deleted-records"));
    CHECK_INT(1, summary(t3, "added-data-files"));
    CHECK_INT(3, summary(t3, "total-data-files"));
    CHECK_INT(110, summary(t3, "total-records"));
    CHECK_INT(1, summary(t3, "changed-partition-count"));
    CHECK_INT(2, summary(t2, "changed-partition-count"));

    /* sequence numbers: e added by snapshot 3 (inherited), c kept from snapshot 2 */
    ice_file *fs;
    size_t n;
    char err[512];
    REQUIRE_INT(ICE_OK, ice_files(l.s, t3, INT64_MIN, INT64_MAX, &fs, &n, err, sizeof err));
    REQUIRE_INT(3, n);
    CHECK_STR(f[4].key, fs[0].key);
    CHECK_INT(3, fs[0].seq);
    CHECK_INT(ice_table_snapshot_id(t3), fs[0].snapshot_id);
    CHECK_INT(80, fs[0].records);
    CHECK_INT(f[4].bytes, fs[0].bytes);
    CHECK_INT(f[4].ncols, fs[0].ncols);
    CHECK_STR(f[2].key, fs[1].key);
    CHECK_INT(2, fs[1].seq);
    CHECK_INT(ice_table_snapshot_id(t2), fs[1].snapshot_id);
    ice_files_free(fs, n);

    /* the expiry keeps snapshot 3 only: a and b, the lists of 1 and 2 and the manifests of
     * 1 and 2 go (all five files are of one day, whose manifest each snapshot rewrote) */
    char **keys;
    size_t nkeys;
    REQUIRE_INT(ICE_OK,
                ice_expire(&l.cat, l.s, t3, 3000, 4000, &t4, &keys, &nkeys, err, sizeof err));
    CHECK_INT(4, ice_table_version(t4));
    CHECK_INT(1, json_array_size(json_object_get(ice_table_json(t4), "snapshots")));
    CHECK_INT(ice_table_snapshot_id(t3), ice_table_snapshot_id(t4));
    int data = 0, lists = 0, manifests = 0, other = 0;
    for (size_t i = 0; i < nkeys; i++) {
        if (!strcmp(keys[i], f[0].key) || !strcmp(keys[i], f[1].key))
            data++;
        else if (!strncmp(keys[i], "metadata/snap-", 14))
            lists++;
        else if (strstr(keys[i], "-m0.avro"))
            manifests++;
        else
            other++;
    }
    CHECK_INT(2, data);
    CHECK_INT(2, lists);
    CHECK_INT(2, manifests);
    CHECK_INT(0, other);
    CHECK_INT(6, nkeys);
    for (size_t i = 0; i < nkeys; i++)
        CHECK_INT(STORE_OK, store_del(l.s, keys[i], err, sizeof err));
    ice_keys_free(keys, nkeys);
    CHECK_LIVE("e.parquet c.parquet d.parquet", &l, t4, INT64_MIN, INT64_MAX);
    ice_table *now = NULL;
    REQUIRE_INT(ICE_OK, l.cat.ops->load(l.cat.cat, &now, err, sizeof err));
    CHECK_INT(4, ice_table_version(now));
    CHECK_LIVE("e.parquet c.parquet d.parquet", &l, now, INT64_MIN, INT64_MAX);

    ice_table_free(now);
    ice_table_free(t1);
    ice_table_free(t2);
    ice_table_free(t3);
    ice_table_free(t4);
    for (int i = 0; i < 5; i++) ice_file_clear(&f[i]);
    lake_close(&l, 1);
    free(dir);
}

/* ---- one manifest per day ------------------------------------------------------------------ */

/* Hour h of day d, counted from the day of H10 (H10 is its hour 10). */
#define DH(d, h) (H10 - 10 + 24 * (int64_t)(d) + (h))

/* The manifests of t's current snapshot into *ms (ice__manifests_free); -1 on error. */
static int manifests_of(lake *l, const ice_table *t, ice__manifest **ms, size_t *n)
{
    char err[512];
    if (ice__snapshot_manifests(l->s, t, ice_table_snapshot_id(t), ms, n, err, sizeof err)) {
        fprintf(stderr, "ice__snapshot_manifests: %s\n", err);
        return -1;
    }
    return 0;
}

/*
 * The number of manifests of t's current snapshot, -1 when the per-day shape is
 * broken: a manifest without a summary or beyond one UTC day, two of one day, a summary
 * that is not its entries' exact hour range or counts, or a DELETED entry of another
 * snapshot than the one that wrote the manifest.
 */
static int per_day(lake *l, const ice_table *t)
{
    ice__manifest *ms;
    size_t n;
    char err[512];
    if (manifests_of(l, t, &ms, &n)) return -1;
    int bad = 0;
    for (size_t i = 0; i < n && !bad; i++) {
        const ice__manifest *m = &ms[i];
        if (!m->has_bounds || m->lo / 24 != m->hi / 24) {
            fprintf(stderr, "  %s: hours %" PRId64 "-%" PRId64 " are not one day\n", m->path, m->lo,
                    m->hi);
            bad = 1;
        }
        for (size_t j = 0; j < i && !bad; j++)
            if (ms[j].lo / 24 == m->lo / 24) {
                fprintf(stderr, "  %s and %s: one day\n", m->path, ms[j].path);
                bad = 1;
            }
        ice__entry *e;
        size_t ne;
        if (bad || ice__manifest_read(l->s, ice_table_location(t), m, &e, &ne, err, sizeof err)) {
            bad = 1;
            break;
        }
        int64_t lo = INT64_MAX, hi = INT64_MIN, count[3] = {0, 0, 0};
        for (size_t j = 0; j < ne; j++) {
            lo = e[j].f.hour < lo ? e[j].f.hour : lo;
            hi = e[j].f.hour > hi ? e[j].f.hour : hi;
            count[e[j].status]++;
            if (e[j].status == ICE__DELETED && e[j].f.snapshot_id != m->added_snapshot_id) {
                fprintf(stderr, "  %s: %s DELETED by an earlier snapshot\n", m->path, e[j].f.key);
                bad = 1;
            }
        }
        if (lo != m->lo || hi != m->hi || count[ICE__ADDED] != m->added_files ||
            count[ICE__EXISTING] != m->existing_files || count[ICE__DELETED] != m->deleted_files) {
            fprintf(stderr, "  %s: the summary is not its entries'\n", m->path);
            bad = 1;
        }
        ice__entries_free(e, ne);
    }
    ice__manifests_free(ms, n);
    return bad ? -1 : (int)n;
}

/* The path of t's manifest of day d (a strdup), or NULL. */
static char *manifest_of_day(lake *l, const ice_table *t, int64_t d)
{
    ice__manifest *ms;
    size_t n;
    char *path = NULL;
    if (manifests_of(l, t, &ms, &n)) return NULL;
    for (size_t i = 0; i < n && !path; i++)
        if (ms[i].has_bounds && ms[i].lo / 24 == DH(d, 0) / 24) path = strdup(ms[i].path);
    ice__manifests_free(ms, n);
    return path;
}

/* The entry statuses of t's manifest of day d, "key:status" sorted by key, as text. */
static char *entries_of_day(lake *l, const ice_table *t, int64_t d)
{
    char *path = manifest_of_day(l, t, d), err[512];
    if (!path) return strdup("(none)");
    ice__manifest m = {.path = path};
    ice__entry *e;
    size_t n;
    buf b = BUF_INIT;
    if (ice__manifest_read(l->s, ice_table_location(t), &m, &e, &n, err, sizeof err)) {
        free(path);
        return strdup("(error)");
    }
    static const char *const st[] = {"EXISTING", "ADDED", "DELETED"};
    for (size_t i = 0; i < n; i++)
        buf_printf(&b, "%s%s:%s", i ? " " : "", strrchr(e[i].f.key, '/') + 1, st[e[i].status]);
    ice__entries_free(e, n);
    free(path);
    if (!buf_cstr(&b)) return strdup("");
    return b.p;
}

#define CHECK_DAY(exp, l, t, d)                                                                    \
    do {                                                                                           \
        char *got_ = entries_of_day(l, t, d);                                                      \
        CHECK_STR(exp, got_);                                                                      \
        free(got_);                                                                                \
    } while (0)

/* The data sequence number and snapshot of the live file name.parquet of t, -1 if none. */
static int64_t seq_of(lake *l, const ice_table *t, const char *name, int64_t *snapshot_id)
{
    ice_file *fs;
    size_t n;
    char err[512], want[64];
    int64_t seq = -1;
    snprintf(want, sizeof want, "/%s.parquet", name);
    if (ice_files(l->s, t, INT64_MIN, INT64_MAX, &fs, &n, err, sizeof err)) return -1;
    for (size_t i = 0; i < n; i++)
        if (strstr(fs[i].key, want)) {
            seq = fs[i].seq;
            if (snapshot_id) *snapshot_id = fs[i].snapshot_id;
        }
    ice_files_free(fs, n);
    return seq;
}

TEST(test_iceberg_one_manifest_per_day_through_appends_replaces_and_removes)
{
    char *dir = test_tmpdir("ice");
    lake l;
    REQUIRE(lake_open(&l, dir) == 0);
    ice_file f[8];
    REQUIRE(put_events(&l, DH(0, 1), "a", "a", 3, &f[0]) == 0);
    REQUIRE(put_events(&l, DH(1, 2), "b", "b", 3, &f[1]) == 0);
    REQUIRE(put_events(&l, DH(2, 3), "c", "c", 3, &f[2]) == 0);
    REQUIRE(put_events(&l, DH(0, 5), "d", "d", 3, &f[3]) == 0);
    REQUIRE(put_events(&l, DH(3, 0), "e", "e", 3, &f[4]) == 0);
    REQUIRE(put_events(&l, DH(0, 1), "ad", "ad", 6, &f[5]) == 0);
    REQUIRE(put_events(&l, DH(1, 4), "g", "g", 3, &f[6]) == 0);
    REQUIRE(put_events(&l, DH(1, 23), "h", "h", 3, &f[7]) == 0);
    ice_table *t[6] = {NULL};
    char err[512];

    /* appends across days: a manifest a day; untouched days' manifests reused */
    REQUIRE_INT(ICE_OK, commit(&l, NULL, "append", f, 3, NULL, 0, 1000, &t[1]));
    CHECK_INT(3, per_day(&l, t[1]));
    REQUIRE_INT(ICE_OK, commit(&l, t[1], "append", f + 3, 2, NULL, 0, 2000, &t[2]));
    CHECK_INT(4, per_day(&l, t[2]));
    CHECK_DAY("a.parquet:EXISTING d.parquet:ADDED", &l, t[2], 0);
    CHECK_DAY("e.parquet:ADDED", &l, t[2], 3);
    for (int d = 1; d <= 2; d++) {
        char *p1 = manifest_of_day(&l, t[1], d), *p2 = manifest_of_day(&l, t[2], d);
        CHECK(p1 && p2 && !strcmp(p1, p2));
        free(p1);
        free(p2);
    }
    CHECK_INT(2, summary(t[2], "changed-partition-count"));

    /* a replace within a day: that day's manifest only */
    const char *gone0[] = {f[0].key, f[3].key};
    REQUIRE_INT(ICE_OK, commit(&l, t[2], "replace", f + 5, 1, gone0, 2, 3000, &t[3]));
    CHECK_INT(4, per_day(&l, t[3]));
    CHECK_DAY("a.parquet:DELETED ad.parquet:ADDED d.parquet:DELETED", &l, t[3], 0);
    CHECK_LIVE("ad.parquet b.parquet c.parquet e.parquet", &l, t[3], INT64_MIN, INT64_MAX);

    /* removes across two days, their hours given */
    const char *gone12[] = {f[2].key, f[1].key};
    ice_change del = {.operation = "delete",
                      .remove = gone12,
                      .nremove = 2,
                      .remove_hours_known = 1,
                      .remove_lo = DH(1, 0),
                      .remove_hi = DH(2, 23)};
    REQUIRE_INT(ICE_OK, ice_commit(&l.cat, l.s, t[3], &del, 4000, &t[4], err, sizeof err));
    CHECK_INT(4, per_day(&l, t[4]));
    CHECK_DAY("b.parquet:DELETED", &l, t[4], 1);
    CHECK_DAY("c.parquet:DELETED", &l, t[4], 2);
    CHECK_DAY("a.parquet:DELETED ad.parquet:ADDED d.parquet:DELETED", &l, t[4], 0);
    CHECK_LIVE("ad.parquet e.parquet", &l, t[4], INT64_MIN, INT64_MAX);
    CHECK_INT(2, summary(t[4], "deleted-data-files"));

    /* the next commit of day 1 drops b's deletion; day 2, now empty, leaves the list */
    REQUIRE_INT(ICE_OK, commit(&l, t[4], "append", f + 6, 2, NULL, 0, 5000, &t[5]));
    CHECK_INT(3, per_day(&l, t[5]));
    CHECK_DAY("g.parquet:ADDED h.parquet:ADDED", &l, t[5], 1);
    CHECK_DAY("(none)", &l, t[5], 2);
    CHECK_LIVE("ad.parquet g.parquet h.parquet e.parquet", &l, t[5], INT64_MIN, INT64_MAX);
    CHECK_LIVE("g.parquet", &l, t[5], DH(1, 4), DH(1, 4));
    CHECK_INT(4, summary(t[5], "total-data-files"));

    /* the files kept their sequence numbers and snapshots through the rewrites */
    int64_t sid = 0;
    CHECK_INT(3, seq_of(&l, t[5], "ad", &sid));
    CHECK_INT(ice_table_snapshot_id(t[3]), sid);
    CHECK_INT(2, seq_of(&l, t[5], "e", &sid));
    CHECK_INT(ice_table_snapshot_id(t[2]), sid);
    CHECK_INT(5, seq_of(&l, t[5], "g", &sid));
    CHECK_INT(ice_table_snapshot_id(t[5]), sid);
    for (int i = 1; i < 6; i++) ice_table_free(t[i]);
    for (int i = 0; i < 8; i++) ice_file_clear(&f[i]);
    lake_close(&l, 1);
    free(dir);
}

/* Writes the manifest of entries e as snapshot sid (sequence number seq) wrote it. */
static int old_manifest(lake *l, const ice_table *t, const char *key, ice__entry *e, size_t n,
                        int64_t sid, int64_t seq, ice__manifest *m)
{
    char err[512];
    memset(m, 0, sizeof *m);
    m->seq = seq;
    m->added_snapshot_id = sid;
    if (ice__manifest_write(l->s, ice_table_location(t), key, e, n, m, err, sizeof err)) {
        fprintf(stderr, "ice__manifest_write: %s\n", err);
        return -1;
    }
    return 0;
}

TEST(test_iceberg_a_base_of_several_manifests_a_day_and_manifests_across_days_is_folded)
{
    char *dir = test_tmpdir("ice");
    lake l;
    REQUIRE(lake_open(&l, dir) == 0);
    /* a0 b1 in snapshot 1; c1 c1b d2 e3 f4 in snapshot 2 (the digit: the day) */
    ice_file f[8];
    const char *names[] = {"a0", "b1", "c1", "c1b", "d2", "e3", "f4", "g1"};
    const int64_t hours[] = {DH(0, 3), DH(1, 3), DH(1, 7), DH(1, 9),
                             DH(2, 1), DH(3, 2), DH(4, 5), DH(1, 20)};
    for (int i = 0; i < 8; i++)
        REQUIRE(put_events(&l, hours[i], names[i], names[i], 2, &f[i]) == 0);
    ice_table *t1 = NULL, *t2 = NULL, *t3 = NULL, *t4 = NULL;
    REQUIRE_INT(ICE_OK, commit(&l, NULL, "append", f, 2, NULL, 0, 1000, &t1));
    REQUIRE_INT(ICE_OK, commit(&l, t1, "append", f + 2, 5, NULL, 0, 2000, &t2));
    int64_t s1 = ice_table_snapshot_id(t1), s2 = ice_table_snapshot_id(t2);

    /* snapshot 2's list rewritten in the shape of a manifest a commit: x (a0, b1
     * EXISTING, c1 ADDED: days 0-1), y (c1b: day 1 again), w (d2, e3: days 2-3), v (f4) */
    ice__entry x[3] = {{ICE__EXISTING, f[0]}, {ICE__EXISTING, f[1]}, {ICE__ADDED, f[2]}};
    ice__entry y[1] = {{ICE__ADDED, f[3]}};
    ice__entry w[2] = {{ICE__ADDED, f[4]}, {ICE__ADDED, f[5]}};
    ice__entry v[1] = {{ICE__ADDED, f[6]}};
    x[0].f.snapshot_id = x[1].f.snapshot_id = s1;
    x[0].f.seq = x[1].f.seq = 1;
    x[2].f.snapshot_id = y[0].f.snapshot_id = w[0].f.snapshot_id = w[1].f.snapshot_id =
        v[0].f.snapshot_id = s2;
    ice__manifest ms[4];
    REQUIRE(old_manifest(&l, t2, "metadata/old-x.avro", x, 3, s2, 2, &ms[0]) == 0);
    REQUIRE(old_manifest(&l, t2, "metadata/old-y.avro", y, 1, s2, 2, &ms[1]) == 0);
    REQUIRE(old_manifest(&l, t2, "metadata/old-w.avro", w, 2, s2, 2, &ms[2]) == 0);
    REQUIRE(old_manifest(&l, t2, "metadata/old-v.avro", v, 1, s2, 2, &ms[3]) == 0);
    const char *list = json_string_value(json_object_get(
        json_array_get(json_object_get(ice_table_json(t2), "snapshots"), 1), "manifest-list"));
    char err[512];
    REQUIRE(list && ice__key_of(ice_table_location(t2), list));
    REQUIRE_INT(ICE_OK, ice__list_write(l.s, ice__key_of(ice_table_location(t2), list), ms, 4, s2,
                                        s1, 2, err, sizeof err));
    for (int i = 0; i < 4; i++) free(ms[i].path);
    CHECK_INT(-1, per_day(&l, t2));
    CHECK_LIVE("a0.parquet b1.parquet c1.parquet c1b.parquet d2.parquet e3.parquet f4.parquet", &l,
               t2, INT64_MIN, INT64_MAX);

    /* an append to day 1 folds x and y: x's day 0 is split off, w and v stay */
    REQUIRE_INT(ICE_OK, commit(&l, t2, "append", f + 7, 1, NULL, 0, 3000, &t3));
    ice__manifest *got;
    size_t n;
    REQUIRE(manifests_of(&l, t3, &got, &n) == 0);
    CHECK_INT(4, n);
    int reused = 0;
    for (size_t i = 0; i < n; i++)
        reused += strstr(got[i].path, "/metadata/old-w.avro") || strstr(got[i].path, "/old-v.avro");
    CHECK_INT(2, reused);
    ice__manifests_free(got, n);
    CHECK_DAY("a0.parquet:EXISTING", &l, t3, 0);
    CHECK_DAY("b1.parquet:EXISTING c1.parquet:EXISTING c1b.parquet:EXISTING g1.parquet:ADDED", &l,
              t3, 1);
    CHECK_LIVE("a0.parquet b1.parquet c1.parquet c1b.parquet g1.parquet d2.parquet e3.parquet "
               "f4.parquet",
               &l, t3, INT64_MIN, INT64_MAX);

    /* removing e3 splits w into days 2 and 3 */
    const char *gone[] = {f[5].key};
    ice_change del = {.operation = "delete",
                      .remove = gone,
                      .nremove = 1,
                      .remove_hours_known = 1,
                      .remove_lo = DH(3, 2),
                      .remove_hi = DH(3, 2)};
    REQUIRE_INT(ICE_OK, ice_commit(&l.cat, l.s, t3, &del, 4000, &t4, err, sizeof err));
    CHECK_INT(5, per_day(&l, t4));
    CHECK_DAY("d2.parquet:EXISTING", &l, t4, 2);
    CHECK_DAY("e3.parquet:DELETED", &l, t4, 3);
    CHECK_DAY("f4.parquet:ADDED", &l, t4, 4);
    CHECK_LIVE("a0.parquet b1.parquet c1.parquet c1b.parquet g1.parquet d2.parquet f4.parquet", &l,
               t4, INT64_MIN, INT64_MAX);

    /* sequence numbers and snapshots as they were written */
    int64_t sid = 0;
    CHECK_INT(1, seq_of(&l, t4, "a0", &sid));
    CHECK_INT(s1, sid);
    CHECK_INT(1, seq_of(&l, t4, "b1", &sid));
    CHECK_INT(2, seq_of(&l, t4, "c1", &sid));
    CHECK_INT(s2, sid);
    CHECK_INT(2, seq_of(&l, t4, "d2", &sid));
    CHECK_INT(s2, sid);
    CHECK_INT(2, seq_of(&l, t4, "f4", &sid));
    CHECK_INT(3, seq_of(&l, t4, "g1", &sid));
    CHECK_INT(ice_table_snapshot_id(t3), sid);
    ice_table_free(t1);
    ice_table_free(t2);
    ice_table_free(t3);
    ice_table_free(t4);
    for (int i = 0; i < 8; i++) ice_file_clear(&f[i]);
    lake_close(&l, 1);
    free(dir);
}

/* Adds the store keys of the manifests of t's snapshot (and of its list) to b, one a line. */
static void keys_of_snapshot(lake *l, const ice_table *t, int64_t sid, buf *b, int with_list)
{
    ice__manifest *ms;
    size_t n;
    char err[512];
    if (ice__snapshot_manifests(l->s, t, sid, &ms, &n, err, sizeof err)) return;
    for (size_t i = 0; i < n; i++)
        buf_printf(b, "%s\n", ice__key_of(ice_table_location(t), ms[i].path));
    ice__manifests_free(ms, n);
    if (with_list) {
        const json_t *snaps = json_object_get(ice_table_json(t), "snapshots"), *s;
        size_t i;
        json_array_foreach(snaps, i,
                           s) if (json_integer_value(json_object_get(s, "snapshot-id")) == sid)
            buf_printf(b, "%s\n",
                       ice__key_of(ice_table_location(t),
                                   json_string_value(json_object_get(s, "manifest-list"))));
    }
}

static int cmp_line(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The lines of text, sorted and without repeats, less those also in minus, joined by ' '. */
static char *line_set(const char *text, const char *minus)
{
    char *copy = strdup(text), *save = NULL, *v[512];
    size_t n = 0;
    for (char *p = strtok_r(copy, "\n", &save); p && n < 512; p = strtok_r(NULL, "\n", &save)) {
        char needle[1024];
        snprintf(needle, sizeof needle, "%s\n", p);
        if (!minus || !strstr(minus, needle)) v[n++] = p;
    }
    qsort(v, n, sizeof *v, cmp_line);
    buf b = BUF_INIT;
    for (size_t i = 0; i < n; i++)
        if (!i || strcmp(v[i], v[i - 1])) buf_printf(&b, "%s%s", b.len ? " " : "", v[i]);
    free(copy);
    if (!buf_cstr(&b)) return strdup("");
    return b.p;
}

TEST(test_iceberg_expire_after_per_day_rewrites_returns_exactly_what_no_kept_snapshot_names)
{
    char *dir = test_tmpdir("ice");
    lake l;
    REQUIRE(lake_open(&l, dir) == 0);
    ice_file f[6];
    REQUIRE(put_events(&l, DH(0, 1), "a0", "a0", 2, &f[0]) == 0);
    REQUIRE(put_events(&l, DH(1, 1), "b1", "b1", 2, &f[1]) == 0);
    REQUIRE(put_events(&l, DH(2, 1), "c2", "c2", 2, &f[2]) == 0);
    REQUIRE(put_events(&l, DH(0, 2), "d0", "d0", 2, &f[3]) == 0);
    REQUIRE(put_events(&l, DH(1, 2), "e1", "e1", 2, &f[4]) == 0);
    REQUIRE(put_events(&l, DH(2, 2), "f2", "f2", 2, &f[5]) == 0);
    ice_table *t[6] = {NULL};
    REQUIRE_INT(ICE_OK, commit(&l, NULL, "append", f, 3, NULL, 0, 1000, &t[1]));
    REQUIRE_INT(ICE_OK, commit(&l, t[1], "append", f + 3, 1, NULL, 0, 2000, &t[2]));
    const char *gone[] = {f[1].key};
    REQUIRE_INT(ICE_OK, commit(&l, t[2], "replace", f + 4, 1, gone, 1, 3000, &t[3]));
    REQUIRE_INT(ICE_OK, commit(&l, t[3], "append", f + 5, 1, NULL, 0, 4000, &t[4]));
    /* snapshot 3 reuses day 0's manifest of 2 and day 2's of 1: kept, not returned */
    buf old = BUF_INIT, kept = BUF_INIT;
    keys_of_snapshot(&l, t[4], ice_table_snapshot_id(t[1]), &old, 1);
    keys_of_snapshot(&l, t[4], ice_table_snapshot_id(t[2]), &old, 1);
    keys_of_snapshot(&l, t[4], ice_table_snapshot_id(t[3]), &kept, 0);
    keys_of_snapshot(&l, t[4], ice_table_snapshot_id(t[4]), &kept, 0);
    buf_printf(&old, "%s\n", f[1].key); /* DELETED by 3: no kept snapshot has it live */
    char *want = line_set(buf_cstr(&old), buf_cstr(&kept));
    char **keys, err[512];
    size_t nkeys;
    REQUIRE_INT(ICE_OK,
                ice_expire(&l.cat, l.s, t[4], 3000, 5000, &t[5], &keys, &nkeys, err, sizeof err));
    buf got = BUF_INIT;
    for (size_t i = 0; i < nkeys; i++) buf_printf(&got, "%s\n", keys[i]);
    char *got_set = line_set(buf_cstr(&got), NULL);
    CHECK_STR(want, got_set);
    CHECK_INT(5, nkeys); /* the lists of 1 and 2, day 0's and day 1's manifests of 1, b1 */
    for (size_t i = 0; i < nkeys; i++)
        CHECK_INT(STORE_OK, store_del(l.s, keys[i], err, sizeof err));
    ice_keys_free(keys, nkeys);
    CHECK_LIVE("a0.parquet d0.parquet e1.parquet c2.parquet f2.parquet", &l, t[5], INT64_MIN,
               INT64_MAX);
    ice_table *prev = NULL;
    REQUIRE_INT(ICE_OK, ice_expire(&l.cat, l.s, t[5], 3000, 6000, &prev, &keys, &nkeys, err,
                                   sizeof err)); /* snapshot 3 is still readable */
    ice_keys_free(keys, nkeys);
    ice_file *fs;
    size_t n;
    CHECK_INT(ICE_OK, ice_snapshot_files(l.s, t[5], ice_table_snapshot_id(t[3]), INT64_MIN,
                                         INT64_MAX, &fs, &n, err, sizeof err));
    CHECK_INT(4, n);
    ice_files_free(fs, n);
    ice_table_free(prev);
    free(want);
    free(got_set);
    buf_free(&got);
    buf_free(&old);
    buf_free(&kept);
    for (int i = 1; i < 6; i++) ice_table_free(t[i]);
    for (int i = 0; i < 6; i++) ice_file_clear(&f[i]);
    lake_close(&l, 1);
    free(dir);
}

TEST(test_iceberg_expire_returns_metadata_versions_before_the_last_eight)
{
    char *dir = test_tmpdir("ice");
    lake l;
    REQUIRE(lake_open(&l, dir) == 0);
    ice_file f[11];
    ice_table *t = NULL, *t1 = NULL;
    for (int i = 0; i < 11; i++) {
        char name[8];
        snprintf(name, sizeof name, "f%d", i);
        REQUIRE(put_events(&l, H10 + i, name, name, 2, &f[i]) == 0);
        if (i == 10) break;
        ice_table *next = NULL;
        REQUIRE_INT(ICE_OK, commit(&l, t, "append", f + i, 1, NULL, 0, 1000 * (i + 1), &next));
        if (t != t1) ice_table_free(t);
        t = next;
        if (i == 0) t1 = t;
    }
    CHECK_INT(10, ice_table_version(t));
    CHECK_INT(ICE_KEEP_VERSIONS,
              json_array_size(json_object_get(ice_table_json(t), "metadata-log")));
    /* nothing older than 1000: every snapshot stays, only versions go (v11 keeps v3-v10) */
    char **keys, err[512];
    size_t n;
    ice_table *t11 = NULL;
    REQUIRE_INT(ICE_OK, ice_expire(&l.cat, l.s, t, 1000, 20000, &t11, &keys, &n, err, sizeof err));
    REQUIRE_INT(2, n);
    CHECK_STR("metadata/v1.metadata.json", keys[0]);
    CHECK_STR("metadata/v2.metadata.json", keys[1]);
    CHECK_INT(10, json_array_size(json_object_get(ice_table_json(t11), "snapshots")));
    json_t *mlog = json_object_get(ice_table_json(t11), "metadata-log");
    CHECK_INT(ICE_KEEP_VERSIONS, json_array_size(mlog));
    CHECK_CONTAINS("/metadata/v3.metadata.json",
                   json_string_value(json_object_get(json_array_get(mlog, 0), "metadata-file")));
    for (size_t i = 0; i < n; i++) store_del(l.s, keys[i], err, sizeof err);
    ice_keys_free(keys, n);
    /* a writer still holding v1 cannot put the deleted v2 again */
    int avro = count_keys(&l, "metadata/", ".avro");
    CHECK_INT(ICE_ECONFLICT, commit(&l, t1, "append", f + 10, 1, NULL, 0, 30000, NULL));
    CHECK_INT(0, count_keys(&l, "metadata/v2.", ""));
    CHECK_INT(avro, count_keys(&l, "metadata/", ".avro"));
    ice_table_free(t1);
    CHECK_LIVE("f0.parquet f1.parquet f2.parquet f3.parquet f4.parquet f5.parquet f6.parquet "
               "f7.parquet f8.parquet f9.parquet",
               &l, t11, INT64_MIN, INT64_MAX);
    ice_table_free(t);
    ice_table_free(t11);
    for (int i = 0; i < 11; i++) ice_file_clear(&f[i]);
    lake_close(&l, 1);
    free(dir);
}

TEST(test_iceberg_metadata_is_v2_with_one_uuid_logs_and_refs)
{
    char *dir = test_tmpdir("ice");
    lake l;
    REQUIRE(lake_open(&l, dir) == 0);
    ice_file f[2];
    REQUIRE(put_events(&l, H10, "a", "a", 5, &f[0]) == 0);
    REQUIRE(put_events(&l, H10 + 1, "b", "b", 5, &f[1]) == 0);
    ice_table *t1 = NULL, *t2 = NULL;
    REQUIRE_INT(ICE_OK, commit(&l, NULL, "append", f, 1, NULL, 0, 1000, &t1));
    REQUIRE_INT(ICE_OK, commit(&l, t1, "append", f + 1, 1, NULL, 0, 2000, &t2));
    const json_t *m1 = ice_table_json(t1), *m2 = ice_table_json(t2);
    CHECK_INT(2, json_integer_value(json_object_get(m2, "format-version")));
    CHECK_STR(json_string_value(json_object_get(m1, "table-uuid")),
              json_string_value(json_object_get(m2, "table-uuid")));
    CHECK_INT(36, strlen(json_string_value(json_object_get(m2, "table-uuid"))));
    CHECK_INT('4', json_string_value(json_object_get(m2, "table-uuid"))[14]);
    CHECK_STR(l.s->url, json_string_value(json_object_get(m2, "location")));
    CHECK_INT(2, json_integer_value(json_object_get(m2, "last-sequence-number")));
    CHECK_INT(2000, json_integer_value(json_object_get(m2, "last-updated-ms")));
    CHECK_INT(19, json_integer_value(json_object_get(m2, "last-column-id")));
    CHECK_INT(1000, json_integer_value(json_object_get(m2, "last-partition-id")));
    json_t *main = json_object_get(json_object_get(m2, "refs"), "main");
    CHECK_INT(ice_table_snapshot_id(t2), json_integer_value(json_object_get(main, "snapshot-id")));
    CHECK_STR("branch", json_string_value(json_object_get(main, "type")));
    CHECK_INT(2, json_array_size(json_object_get(m2, "snapshot-log")));
    json_t *mlog = json_object_get(m2, "metadata-log");
    REQUIRE_INT(1, json_array_size(mlog));
    char v1[1200];
    snprintf(v1, sizeof v1, "%s/metadata/v1.metadata.json", l.s->url);
    CHECK_STR(v1, json_string_value(json_object_get(json_array_get(mlog, 0), "metadata-file")));
    json_t *snap2 = json_array_get(json_object_get(m2, "snapshots"), 1);
    CHECK_INT(ice_table_snapshot_id(t1),
              json_integer_value(json_object_get(snap2, "parent-snapshot-id")));
    CHECK_INT(2, json_integer_value(json_object_get(snap2, "sequence-number")));
    CHECK_STR("append",
              json_string_value(json_object_get(json_object_get(snap2, "summary"), "operation")));
    char *spec = json_dumps(json_object_get(m2, "partition-specs"), JSON_COMPACT);
    CHECK_STR("[{\"spec-id\":0,\"fields\":[{\"source-id\":3,\"field-id\":1000,\"name\":\"ts_hour\","
              "\"transform\":\"hour\"}]}]",
              spec);
    free(spec);
    json_t *props = json_object_get(m2, "properties");
    CHECK_STR("parquet", json_string_value(json_object_get(props, "write.format.default")));
    CHECK_STR("zstd", json_string_value(json_object_get(props, "write.parquet.compression-codec")));
    CHECK_CONTAINS(
        "{\"field-id\":5,\"names\":[\"do\"],\"fields\":[{\"field-id\":6,\"names\":[\"id\"]}",
        json_string_value(json_object_get(props, "schema.name-mapping.default")));
    char *schema = json_dumps(json_array_get(json_object_get(m2, "schemas"), 0), JSON_COMPACT);
    CHECK_CONTAINS("{\"id\":3,\"name\":\"ts\",\"required\":false,\"type\":\"timestamptz\"}",
                   schema);
    CHECK_CONTAINS("{\"id\":5,\"name\":\"do\",\"required\":false,\"type\":{\"type\":\"struct\","
                   "\"fields\":[{\"id\":6,\"name\":\"id\",\"required\":false,\"type\":\"string\"}",
                   schema);
    CHECK_CONTAINS("{\"id\":19,\"name\":\"_events_json\",\"required\":false,\"type\":\"string\"}]",
                   schema);
    free(schema);
    ice_table_free(t1);
    ice_table_free(t2);
    for (int i = 0; i < 2; i++) ice_file_clear(&f[i]);
    lake_close(&l, 1);
    free(dir);
}

TEST(test_iceberg_duckdb_field_ids_come_from_the_schema)
{
    CHECK_STR("FIELD_IDS {\"id\": 1, \"type\": 2, \"ts\": 3, \"receivedAt\": 4, \"do\": "
              "{__duckdb_field_id: 5, \"id\": 6, \"name\": 7, \"class\": 8, \"colo\": 9}, "
              "\"method\": 10, \"durationMs\": 11, \"success\": 12, \"error\": 13, "
              "\"collection\": 14, \"docId\": 15, \"doc\": 16, \"prev\": 17, \"bookmark\": 18, "
              "\"_events_json\": 19}",
              ice_duckdb_field_ids());
}

/* ---- commits that race -------------------------------------------------------------------- */

TEST(test_iceberg_two_commits_on_one_base_one_wins_and_the_retry_keeps_both)
{
    char *dir = test_tmpdir("ice");
    lake l;
    REQUIRE(lake_open(&l, dir) == 0);
    ice_file f[3];
    REQUIRE(put_events(&l, H10, "a", "a", 5, &f[0]) == 0);
    REQUIRE(put_events(&l, H10 + 1, "x", "x", 6, &f[1]) == 0);
    REQUIRE(put_events(&l, H10 + 2, "y", "y", 7, &f[2]) == 0);
    ice_table *base = NULL, *tx = NULL, *ty = NULL;
    REQUIRE_INT(ICE_OK, commit(&l, NULL, "append", f, 1, NULL, 0, 1000, &base));
    CHECK_INT(ICE_OK, commit(&l, base, "append", f + 1, 1, NULL, 0, 2000, &tx));
    CHECK_INT(ICE_ECONFLICT, commit(&l, base, "append", f + 2, 1, NULL, 0, 2000, NULL));
    /* the losing attempt left nothing: two manifests and two lists */
    CHECK_INT(4, count_keys(&l, "metadata/", ".avro"));
    /* a second table made on no base loses to the first */
    CHECK_INT(ICE_ECONFLICT, commit(&l, NULL, "append", f + 2, 1, NULL, 0, 2000, NULL));

    char err[512];
    ice_change c = {.operation = "append", .add = f + 2, .nadd = 1};
    REQUIRE_INT(ICE_OK, ice_commit_retry(&l.cat, l.s, &c, 3000, 5, &ty, err, sizeof err));
    CHECK_INT(3, ice_table_version(ty));
    CHECK_LIVE("a.parquet x.parquet y.parquet", &l, ty, INT64_MIN, INT64_MAX);
    const json_t *snaps = json_object_get(ice_table_json(ty), "snapshots");
    REQUIRE_INT(3, json_array_size(snaps));
    CHECK_INT(ice_table_snapshot_id(tx),
              json_integer_value(json_object_get(json_array_get(snaps, 2), "parent-snapshot-id")));
    CHECK_INT(6, count_keys(&l, "metadata/", ".avro"));
    CHECK_INT(3, count_keys(&l, "metadata/", ".metadata.json"));
    ice_table_free(base);
    ice_table_free(tx);
    ice_table_free(ty);
    for (int i = 0; i < 3; i++) ice_file_clear(&f[i]);
    lake_close(&l, 1);
    free(dir);
}

TEST(test_iceberg_remove_of_a_file_no_longer_live_is_stale)
{
    char *dir = test_tmpdir("ice");
    lake l;
    REQUIRE(lake_open(&l, dir) == 0);
    ice_file f[3];
    REQUIRE(put_events(&l, H10, "a", "a", 5, &f[0]) == 0);
    REQUIRE(put_events(&l, H10, "b", "b", 5, &f[1]) == 0);
    REQUIRE(put_events(&l, H10, "c", "c", 10, &f[2]) == 0);
    ice_table *t1 = NULL, *t2 = NULL;
    REQUIRE_INT(ICE_OK, commit(&l, NULL, "append", f, 2, NULL, 0, 1000, &t1));
    const char *gone[] = {f[0].key, f[1].key};
    REQUIRE_INT(ICE_OK, commit(&l, t1, "replace", f + 2, 1, gone, 2, 2000, &t2));
    int avro = count_keys(&l, "metadata/", ".avro");
    char err[512];
    /* a second compactor that read t1 and replaces a again */
    ice_change c = {.operation = "replace", .add = f + 2, .nadd = 1, .remove = gone, .nremove = 1};
    CHECK_INT(ICE_ESTALE, ice_commit(&l.cat, l.s, t2, &c, 3000, NULL, err, sizeof err));
    CHECK_CONTAINS("cannot remove events/2026/11/25/10/a.parquet: it is not a live file", err);
    CHECK_INT(ICE_ESTALE, ice_commit_retry(&l.cat, l.s, &c, 3000, 3, NULL, err, sizeof err));
    CHECK_INT(avro, count_keys(&l, "metadata/", ".avro"));
    CHECK_INT(2, count_keys(&l, "metadata/", ".metadata.json"));
    /* the removed files' hours given: manifests of other hours are not read, so a file
     * said to be elsewhere is not found; said where it is, it is */
    const char *c_key[] = {f[2].key};
    ice_change h = {.operation = "delete",
                    .remove = c_key,
                    .nremove = 1,
                    .remove_hours_known = 1,
                    .remove_lo = H10 + 1,
                    .remove_hi = H10 + 5};
    CHECK_INT(ICE_ESTALE, ice_commit(&l.cat, l.s, t2, &h, 3000, NULL, err, sizeof err));
    h.remove_lo = h.remove_hi = H10;
    ice_table *t3 = NULL;
    CHECK_INT(ICE_OK, ice_commit(&l.cat, l.s, t2, &h, 3000, &t3, err, sizeof err));
    CHECK_LIVE("", &l, t3, INT64_MIN, INT64_MAX);
    CHECK_INT(0, summary(t3, "total-records"));
    ice_table_free(t3);
    /* on an empty table too */
    lake l2;
    char *dir2 = test_tmpdir("ice");
    REQUIRE(lake_open(&l2, dir2) == 0);
    CHECK_INT(ICE_ESTALE, ice_commit(&l2.cat, l2.s, NULL, &c, 3000, NULL, err, sizeof err));
    CHECK_INT(0, count_keys(&l2, "metadata/", ""));
    lake_close(&l2, 1);
    free(dir2);
    ice_table_free(t1);
    ice_table_free(t2);
    for (int i = 0; i < 3; i++) ice_file_clear(&f[i]);
    lake_close(&l, 1);
    free(dir);
}

TEST(test_iceberg_load_probes_past_a_lagging_or_garbled_hint)
{
    char *dir = test_tmpdir("ice");
    lake l;
    REQUIRE(lake_open(&l, dir) == 0);
    char err[512];
    ice_table *t = NULL;
    CHECK_INT(ICE_ENOTABLE, l.cat.ops->load(l.cat.cat, &t, err, sizeof err));
    ice_file f[3];
    ice_table *prev = NULL;
    for (int i = 0; i < 3; i++) {
        char name[8] = {(char)('a' + i), 0};
        REQUIRE(put_events(&l, H10, name, name, 3, &f[i]) == 0);
        ice_table *next = NULL;
        REQUIRE_INT(ICE_OK, commit(&l, prev, "append", f + i, 1, NULL, 0, 1000 + i, &next));
        ice_table_free(prev);
        prev = next;
    }
    ice_table_free(prev);
    const char *hints[] = {"1\n", "garbled", "9\n", NULL};
    for (int i = 0; hints[i]; i++) {
        REQUIRE_INT(STORE_OK, store_put(l.s, "metadata/version-hint.text", hints[i],
                                        strlen(hints[i]), 0, err, sizeof err));
        REQUIRE_INT(ICE_OK, l.cat.ops->load(l.cat.cat, &t, err, sizeof err));
        CHECK_INT(3, ice_table_version(t));
        ice_table_free(t);
    }
    store_del(l.s, "metadata/version-hint.text", err, sizeof err);
    REQUIRE_INT(ICE_OK, l.cat.ops->load(l.cat.cat, &t, err, sizeof err));
    CHECK_INT(3, ice_table_version(t));
    CHECK_LIVE("a.parquet b.parquet c.parquet", &l, t, INT64_MIN, INT64_MAX);
    ice_table_free(t);
    for (int i = 0; i < 3; i++) ice_file_clear(&f[i]);
    lake_close(&l, 1);
    free(dir);
}

/* ---- a store that fails ------------------------------------------------------------------ */

/* The directory store with every put of a key starting with fail_prefix refused. */
typedef struct flaky {
    store base;
    store *inner;
    const char *fail_prefix;
} flaky;

static store *inner_of(store *s)
{
    return ((flaky *)s)->inner;
}

static int fl_put(store *s, const char *key, const void *d, size_t n, int flags, char *err,
                  size_t errlen)
{
    const char *fail = ((flaky *)s)->fail_prefix;
    if (fail && !strncmp(key, fail, strlen(fail)))
        return store_fail(err, errlen, STORE_EIO, "store: cannot put %s: injected failure", key);
    return store_put(inner_of(s), key, d, n, flags, err, errlen);
}
static int fl_put_file(store *s, const char *key, const char *path, int flags, char *err,
                       size_t errlen)
{
    return store_put_file(inner_of(s), key, path, flags, err, errlen);
}
static int fl_get(store *s, const char *key, uint64_t off, uint64_t len, buf *out, char *err,
                  size_t errlen)
{
    return store_get(inner_of(s), key, off, len, out, err, errlen);
}
static int fl_get_file(store *s, const char *key, const char *path, char *err, size_t errlen)
{
    return store_get_file(inner_of(s), key, path, err, errlen);
}
static int fl_head(store *s, const char *key, store_entry *e, char *err, size_t errlen)
{
    return store_head(inner_of(s), key, e, err, errlen);
}
static int fl_list(store *s, const char *prefix, store_list_fn fn, void *ud, char *err,
                   size_t errlen)
{
    return store_list(inner_of(s), prefix, fn, ud, err, errlen);
}
static int fl_del(store *s, const char *key, char *err, size_t errlen)
{
    return store_del(inner_of(s), key, err, errlen);
}
static const char *fl_root(store *s)
{
    return inner_of(s)->ops->root(inner_of(s));
}
static void fl_close(store *s)
{
    (void)s; /* the inner store is the lake's */
}
static const store_ops flaky_ops = {fl_put,  fl_put_file, fl_get,  fl_get_file, fl_head,
                                    fl_list, fl_del,      fl_root, fl_close};

TEST(test_iceberg_store_failures_leave_the_table_whole)
{
    char *dir = test_tmpdir("ice");
    lake l;
    REQUIRE(lake_open(&l, dir) == 0);
    flaky fl = {{&flaky_ops, l.s->url, 0}, l.s, NULL};
    ice_catalog cat = ice_store_catalog(&fl.base);
    ice_file f[3];
    REQUIRE(put_events(&l, H10, "a", "a", 5, &f[0]) == 0);
    REQUIRE(put_events(&l, H10 + 1, "b", "b", 5, &f[1]) == 0);
    REQUIRE(put_events(&l, H10 + 2, "c", "c", 5, &f[2]) == 0);
    char err[512];
    ice_table *t1 = NULL, *t = NULL;
    ice_change c1 = {.operation = "append", .add = f, .nadd = 1};
    REQUIRE_INT(ICE_OK, ice_commit(&cat, &fl.base, NULL, &c1, 1000, &t1, err, sizeof err));
    int avro = count_keys(&l, "metadata/", ".avro");
    ice_change c2 = {.operation = "append", .add = f + 1, .nadd = 1};

    /* the manifest list cannot be written: the manifest written before it is taken back */
    fl.fail_prefix = "metadata/snap-";
    CHECK_INT(ICE_EIO, ice_commit(&cat, &fl.base, t1, &c2, 2000, NULL, err, sizeof err));
    CHECK_CONTAINS("injected failure", err);
    CHECK_INT(avro, count_keys(&l, "metadata/", ".avro"));

    /* the version cannot be put, and whether it was is not known: what it names stays */
    fl.fail_prefix = "metadata/v2.";
    CHECK_INT(ICE_EIO, ice_commit(&cat, &fl.base, t1, &c2, 2000, NULL, err, sizeof err));
    CHECK_INT(avro + 2, count_keys(&l, "metadata/", ".avro"));
    REQUIRE_INT(ICE_OK, cat.ops->load(cat.cat, &t, err, sizeof err));
    CHECK_INT(1, ice_table_version(t));
    ice_table_free(t);

    /* the hint is lost: the commit stands, and a load finds it by probing */
    fl.fail_prefix = "metadata/version-hint";
    CHECK_INT(ICE_OK, ice_commit_retry(&cat, &fl.base, &c2, 3000, 2, NULL, err, sizeof err));
    fl.fail_prefix = NULL;
    REQUIRE_INT(ICE_OK, cat.ops->load(cat.cat, &t, err, sizeof err));
    CHECK_INT(2, ice_table_version(t));
    CHECK_LIVE("a.parquet b.parquet", &l, t, INT64_MIN, INT64_MAX);
    ice_table *t3 = NULL;
    ice_change c3 = {.operation = "append", .add = f + 2, .nadd = 1};
    CHECK_INT(ICE_OK, ice_commit(&cat, &fl.base, t, &c3, 4000, &t3, err, sizeof err));
    CHECK_INT(3, t3 ? ice_table_version(t3) : 0);
    ice_table_free(t3);
    ice_table_free(t);
    ice_table_free(t1);
    for (int i = 0; i < 3; i++) ice_file_clear(&f[i]);
    lake_close(&l, 1);
    free(dir);
}

/* ---- the files themselves ------------------------------------------------------------------ */

static int64_t le64(const buf *b)
{
    uint64_t v = 0;
    for (int i = 7; b->len == 8 && i >= 0; i--) v = v << 8 | (unsigned char)b->p[i];
    return (int64_t)v;
}

static double le_double(const buf *b)
{
    int64_t v = le64(b);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

static const ice_col_stats *col(const ice_file *f, int id)
{
    for (size_t i = 0; i < f->ncols; i++)
        if (f->cols[i].field_id == id) return &f->cols[i];
    return NULL;
}

TEST(test_iceberg_stats_from_parquet_keyed_by_field_id)
{
    char *dir = test_tmpdir("ice");
    lake l;
    REQUIRE(lake_open(&l, dir) == 0);
    ice_file f;
    REQUIRE(put_events(&l, H10, "a", "a", 12, &f) == 0);
    CHECK_INT(12, f.records);
    char path[1600];
    snprintf(path, sizeof path, "%s/%s", dir, f.key);
    size_t size;
    free(test_read_file(path, &size));
    CHECK_INT(size, f.bytes);
    CHECK_INT(18, f.ncols); /* 19 fields less the struct do */
    const ice_col_stats *ts = col(&f, 3), *rec = col(&f, 4), *doid = col(&f, 6), *dur = col(&f, 11),
                        *ok = col(&f, 12), *id = col(&f, 1), *bm = col(&f, 18), *doc = col(&f, 16);
    REQUIRE(ts && rec && doid && dur && ok && id && bm && doc);
    CHECK_INT(ICE_LOWER | ICE_UPPER, ts->has_bounds);
    CHECK_INT(US(H10) + 60000000, le64(&ts->lower));
    CHECK_INT(US(H10) + 60000000 + 11 * 1000000 + 11 * 1000, le64(&ts->upper));
    CHECK_INT(12, ts->value_count);
    CHECK_INT(0, ts->null_count);
    CHECK_INT(3, rec->null_count);  /* i = 3, 7, 11 */
    CHECK_INT(4, doid->null_count); /* i = 2, 5, 8, 11 */
    CHECK_STR("do-0", (buf_cstr((buf *)&doid->lower), doid->lower.p));
    CHECK_STR("do-4", (buf_cstr((buf *)&doid->upper), doid->upper.p));
    CHECK(le_double(&dur->lower) == -1.75); /* i = 1 */
    CHECK(le_double(&dur->upper) == 10.75); /* i = 11 */
    CHECK_INT(1, ok->lower.len);
    CHECK_INT(0, ok->lower.p[0]);
    CHECK_INT(1, ok->upper.p[0]);
    CHECK_STR("a-0", (buf_cstr((buf *)&id->lower), id->lower.p));
    CHECK_STR("a-9", (buf_cstr((buf *)&id->upper), id->upper.p));
    CHECK_INT(12, bm->null_count);
    CHECK_INT(0, bm->has_bounds);
    /* doc ({"n":0,"s":"é","t":"hello"}, more than 16 characters): a lower bound cut at 16
     * characters (17 bytes), no upper bound */
    CHECK_INT(ICE_LOWER, doc->has_bounds);
    CHECK_STR("{\"n\":0,\"s\":\"é\",\"", (buf_cstr((buf *)&doc->lower), doc->lower.p));
    CHECK(doc->column_size > 0);
    ice_file_clear(&f);
    lake_close(&l, 1);
    free(dir);
}

/* An Avro long (zig-zag varint) at *p, which advances; -1 past end. */
static int64_t zigzag(const unsigned char **p, const unsigned char *end)
{
    uint64_t z = 0;
    for (int sh = 0; *p < end && sh < 64; sh += 7) {
        unsigned char c = *(*p)++;
        z |= (uint64_t)(c & 0x7f) << sh;
        if (!(c & 0x80)) return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
    }
    return -1;
}

/* The avro.schema text of the container at path, read from its header here (not by the
 * module's reader); NULL if there is none. */
static char *header_schema(const char *path)
{
    size_t len;
    char *data = test_read_file(path, &len), *schema = NULL;
    if (!data || len < 4 || memcmp(data, "Obj\x01", 4)) goto done;
    const unsigned char *p = (const unsigned char *)data + 4,
                        *end = (const unsigned char *)data + len;
    int64_t count;
    while ((count = zigzag(&p, end)) > 0) {
        for (int64_t i = 0; i < count; i++) {
            int64_t kn = zigzag(&p, end);
            if (kn < 0 || kn > end - p) goto done;
            int is_schema = kn == 11 && !memcmp(p, "avro.schema", 11);
            p += kn;
            int64_t vn = zigzag(&p, end);
            if (vn < 0 || vn > end - p) goto done;
            if (is_schema && !schema && (schema = malloc((size_t)vn + 1))) {
                memcpy(schema, p, (size_t)vn);
                schema[vn] = 0;
            }
            p += vn;
        }
    }
done:
    free(data);
    return schema;
}

/* 1 if every field of every record in the schema carries an integer field-id. */
static int all_fields_have_ids(json_t *type, int *fields)
{
    if (json_is_array(type)) {
        size_t i;
        json_t *t;
        json_array_foreach(type, i, t) if (!all_fields_have_ids(t, fields)) return 0;
        return 1;
    }
    if (!json_is_object(type)) return 1;
    const char *kind = json_string_value(json_object_get(type, "type"));
    if (kind && !strcmp(kind, "array")) {
        json_t *items = json_object_get(type, "items");
        if (!json_is_object(items) && !json_is_integer(json_object_get(type, "element-id")))
            return 0;
        return all_fields_have_ids(items, fields);
    }
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(type, "fields"), i, f)
    {
        (*fields)++;
        if (!json_is_integer(json_object_get(f, "field-id"))) {
            fprintf(stderr, "  field %s has no field-id\n",
                    json_string_value(json_object_get(f, "name")));
            return 0;
        }
        if (!all_fields_have_ids(json_object_get(f, "type"), fields)) return 0;
    }
    return 1;
}

typedef struct avro_ud {
    lake *l;
    int files, records, failures;
} avro_ud;

static int check_avro(const store_entry *e, void *ud)
{
    avro_ud *a = ud;
    size_t k = strlen(e->key);
    if (k < 5 || strcmp(e->key + k - 5, ".avro")) return 0;
    a->files++;
    char path[1600], cmd[1800];
    snprintf(path, sizeof path, "%s/%s", a->l->dir, e->key);
    /* the records as Debian's avrocat sees them: one JSON line each */
    snprintf(cmd, sizeof cmd, "avrocat '%s'", path);
    FILE *p = popen(cmd, "r");
    int lines = 0, c, first = -1;
    while (p && (c = fgetc(p)) != EOF) {
        if (first < 0) first = c;
        lines += c == '\n';
    }
    int status = p ? pclose(p) : -1;
    if (status != 0 || first != '{') {
        fprintf(stderr, "  avrocat %s: status %d\n", e->key, status);
        a->failures++;
    }
    /* against the records this module's reader decodes */
    size_t len;
    char *data = test_read_file(path, &len), err[256];
    lake_avro_reader *r;
    int n = 0;
    avro_value_t *rec;
    if (data && !lake_avro_reader_new(data, len, &r, err, sizeof err)) {
        while (lake_avro_reader_next(r, &rec, err, sizeof err) == 1) n++;
        lake_avro_reader_free(r);
    }
    free(data);
    if (n != lines || n == 0) {
        fprintf(stderr, "  %s: avrocat decodes %d records, the module %d\n", e->key, lines, n);
        a->failures++;
    }
    a->records += n;
    char *schema = header_schema(path);
    json_t *js = schema ? json_loads(schema, 0, NULL) : NULL;
    int fields = 0;
    if (!js || !all_fields_have_ids(js, &fields) || fields < 10) {
        fprintf(stderr, "  %s: a field without field-id in %s\n", e->key, schema);
        a->failures++;
    }
    json_decref(js);
    free(schema);
    return 0;
}

TEST(test_iceberg_avro_files_decode_with_avrocat_and_carry_field_ids)
{
    char *dir = test_tmpdir("ice");
    lake l;
    REQUIRE(lake_open(&l, dir) == 0);
    ice_file f[3];
    REQUIRE(put_events(&l, H10, "a", "a", 5, &f[0]) == 0);
    REQUIRE(put_events(&l, H10 + 24, "b", "b", 5, &f[1]) == 0);
    REQUIRE(put_events(&l, H10, "c", "c", 5, &f[2]) == 0);
    ice_table *t1 = NULL, *t2 = NULL;
    REQUIRE_INT(ICE_OK, commit(&l, NULL, "append", f, 2, NULL, 0, 1000, &t1));
    const char *gone[] = {f[0].key};
    REQUIRE_INT(ICE_OK, commit(&l, t1, "replace", f + 2, 1, gone, 1, 2000, &t2));
    /* a change of nothing is refused and writes nothing */
    CHECK_INT(ICE_EINVAL, commit(&l, t2, "delete", NULL, 0, NULL, 0, 3000, NULL));
    avro_ud a = {&l, 0, 0, 0};
    char err[512];
    REQUIRE_INT(STORE_OK, store_list(l.s, "metadata/", check_avro, &a, err, sizeof err));
    /* snapshot 1: a manifest a day (a; b) and a list of 2; snapshot 2: the first day's
     * rewritten (a DELETED, c ADDED), the second's reused, a list of 2 */
    CHECK_INT(5, a.files);
    CHECK_INT(2 + 1 + 1 + 2 + 2, a.records);
    CHECK_INT(0, a.failures);
    ice_table_free(t1);
    ice_table_free(t2);
    for (int i = 0; i < 3; i++) ice_file_clear(&f[i]);
    lake_close(&l, 1);
    free(dir);
}

/* ---- a table for other readers -------------------------------------------------------------- */

static void iso_ms(buf *b, int64_t ms)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char t[40];
    strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
    buf_printf(b, "%s.%03dZ", t, (int)(ms % 1000));
}

/* A string column of the result as JSON (null for NULL). */
static json_t *str_at(duckdb_result *r, idx_t c, idx_t row)
{
    if (duckdb_value_is_null(r, c, row)) return json_null();
    char *v = duckdb_value_varchar(r, c, row);
    json_t *j = json_string(v);
    duckdb_free(v);
    return j;
}

static json_t *ts_at(duckdb_result *r, idx_t c, idx_t row)
{
    if (duckdb_value_is_null(r, c, row)) return json_null();
    buf b = BUF_INIT;
    iso_ms(&b, duckdb_value_int64(r, c, row));
    json_t *j = json_string(buf_cstr(&b));
    buf_free(&b);
    return j;
}

/* Appends DuckDB's reading of the files as NDJSON, a row per line, ordered by id, in
 * the form tests/iceberg/read.mjs gives icebird's rows (timestamps as ISO strings). */
static int expected_rows(lake *l, const ice_file *fs, size_t n, buf *out)
{
    buf sql = BUF_INIT;
    buf_puts(&sql,
             "SELECT id, type, epoch_ms(ts), epoch_ms(receivedAt), \"do\" IS NULL,"
             " \"do\".id, \"do\".name, \"do\".class, \"do\".colo, method, durationMs, success,"
             " error, collection, docId, doc, prev, bookmark, _events_json"
             " FROM read_parquet([");
    for (size_t i = 0; i < n; i++) buf_printf(&sql, "%s'%s/%s'", i ? ", " : "", l->dir, fs[i].key);
    buf_puts(&sql, "]) ORDER BY id");
    duckdb_result r;
    int bad = duckdb_query(l->con, buf_cstr(&sql), &r) == DuckDBError;
    buf_free(&sql);
    if (bad) {
        fprintf(stderr, "duckdb: %s\n", duckdb_result_error(&r));
        duckdb_destroy_result(&r);
        return -1;
    }
    for (idx_t i = 0; i < duckdb_row_count(&r) && !bad; i++) {
        json_t *d =
            duckdb_value_boolean(&r, 4, i)
                ? json_null()
                : json_pack("{s:o,s:o,s:o,s:o}", "id", str_at(&r, 5, i), "name", str_at(&r, 6, i),
                            "class", str_at(&r, 7, i), "colo", str_at(&r, 8, i));
        json_t *row = json_pack(
            "{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "id", str_at(&r, 0, i),
            "type", str_at(&r, 1, i), "ts", ts_at(&r, 2, i), "receivedAt", ts_at(&r, 3, i), "do", d,
            "method", str_at(&r, 9, i), "durationMs",
            duckdb_value_is_null(&r, 10, i) ? json_null()
                                            : json_real(duckdb_value_double(&r, 10, i)),
            "success",
            duckdb_value_is_null(&r, 11, i) ? json_null()
                                            : json_boolean(duckdb_value_boolean(&r, 11, i)),
            "error", str_at(&r, 12, i), "collection", str_at(&r, 13, i), "docId", str_at(&r, 14, i),
            "doc", str_at(&r, 15, i), "prev", str_at(&r, 16, i), "bookmark", str_at(&r, 17, i),
            "_events_json", str_at(&r, 18, i));
        char *line = row ? json_dumps(row, JSON_COMPACT) : NULL;
        bad = !line || buf_puts(out, line) || buf_putc(out, '\n');
        free(line);
        json_decref(row);
    }
    duckdb_destroy_result(&r);
    return bad ? -1 : 0;
}

TEST(test_iceberg_table_for_readers)
{
    const char *keep = getenv("ICE_TABLE_OUT");
    char *dir = keep ? strdup(keep) : test_tmpdir("ice");
    lake l;
    REQUIRE(lake_open(&l, dir) == 0);
    ice_file f[8];
    REQUIRE(put_events(&l, H10, "a", "a", 40, &f[0]) == 0);
    REQUIRE(put_events(&l, H10, "b", "b", 25, &f[1]) == 0);
    REQUIRE(put_events(&l, H10 + 1, "c", "c", 30, &f[2]) == 0);
    REQUIRE(put_events(&l, H10 + 2, "d", "d", 15, &f[3]) == 0);
    REQUIRE(put_events(&l, H10 + 24, "g", "g", 20, &f[4]) == 0);
    REQUIRE(put_events(&l, H10 + 48, "h", "h", 10, &f[5]) == 0);
    REQUIRE(put_events(&l, H10, "ab", "ab", 60, &f[6]) == 0);
    REQUIRE(put_events(&l, H10 + 25, "i", "i", 12, &f[7]) == 0);
    char err[512];
    /* three days: appends to each, a replace on the first, an append to the second (g
     * carried as EXISTING with its sequence number), h removed from the third */
    ice_change c1 = {.operation = "append", .add = f, .nadd = 2};
    ice_change c2 = {.operation = "append", .add = f + 2, .nadd = 4};
    const char *gone[] = {f[0].key, f[1].key}, *gone_h[] = {f[5].key};
    ice_change c3 = {.operation = "replace", .add = f + 6, .nadd = 1, .remove = gone, .nremove = 2};
    ice_change c4 = {.operation = "append", .add = f + 7, .nadd = 1};
    ice_change c5 = {.operation = "delete", .remove = gone_h, .nremove = 1};
    ice_table *t = NULL;
    REQUIRE_INT(ICE_OK, ice_commit_retry(&l.cat, l.s, &c1, 1000, 1, NULL, err, sizeof err));
    REQUIRE_INT(ICE_OK, ice_commit_retry(&l.cat, l.s, &c2, 2000, 1, NULL, err, sizeof err));
    REQUIRE_INT(ICE_OK, ice_commit_retry(&l.cat, l.s, &c3, 3000, 1, NULL, err, sizeof err));
    REQUIRE_INT(ICE_OK, ice_commit_retry(&l.cat, l.s, &c4, 4000, 1, NULL, err, sizeof err));
    REQUIRE_INT(ICE_OK, ice_commit_retry(&l.cat, l.s, &c5, 5000, 1, &t, err, sizeof err));
    CHECK_INT(3, per_day(&l, t));
    ice_file *fs;
    size_t n;
    REQUIRE_INT(ICE_OK, ice_files(l.s, t, INT64_MIN, INT64_MAX, &fs, &n, err, sizeof err));
    CHECK_INT(5, n);
    buf rows = BUF_INIT;
    CHECK(expected_rows(&l, fs, n, &rows) == 0);
    int lines = 0;
    for (size_t i = 0; i < rows.len; i++) lines += rows.p[i] == '\n';
    CHECK_INT(60 + 30 + 15 + 20 + 12, lines);
    if (keep) {
        char path[1600];
        snprintf(path, sizeof path, "%s/expected.ndjson", dir);
        FILE *o = fopen(path, "w");
        CHECK(o && fwrite(rows.p, 1, rows.len, o) == rows.len);
        if (o) fclose(o);
    }
    buf_free(&rows);
    ice_files_free(fs, n);
    ice_table_free(t);
    for (int i = 0; i < 8; i++) ice_file_clear(&f[i]);
    lake_close(&l, !keep);
    free(dir);
}
