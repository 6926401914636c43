/*
 * test_table_cli.c - `events table` on lakes whose Iceberg table is made here
 * with ice_commit (as compaction makes it): a directory lake with two versions
 * of Parquet files written by DuckDB, printed exactly as text and as JSON; a
 * location that needs quoting in SQL; a lake without a table, a lake that does
 * not exist and bad flags. An s3 lake's (Snowflake's relative path, ClickHouse's
 * endpoint URL) is in test_s3.c, whose radosgw is already running.
 */
#include "harness.h"
#include "iceberg.h"
#include "store.h"
#include "test.h"

#include <duckdb.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* 2026-11-25 10:00:00 UTC in hours since the epoch */
#define H10 ((int64_t)498778)
/* the two commits' times: 2026-11-25T11:00:00.125Z and 2026-11-25T11:05:00.250Z */
#define T1 ((int64_t)1795604400125)
#define T2 ((int64_t)1795604700250)

/* What a run of `events table` printed. */
typedef struct run {
    int status; /* exit status, -1: did not exit */
    char *out, *err;
} run;

static void run_free(run *r)
{
    free(r->out);
    free(r->err);
}

/* Runs `events table ARGS…` (NULL-terminated), its stdout and stderr into files in dir. */
static run table_run(const char *dir, ...)
{
    const char *argv[16] = {"events", "table"};
    int n = 2;
    va_list ap;
    va_start(ap, dir);
    for (const char *a; n < 15 && (a = va_arg(ap, const char *));) argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    char out[1200], err[1200];
    snprintf(out, sizeof out, "%s/table.out", dir);
    snprintf(err, sizeof err, "%s/table.err", dir);
    run r = {-1, NULL, NULL};
    pid_t pid = fork();
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644),
            e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0) _exit(126);
        execv(events_bin(), (char *const *)argv);
        _exit(127);
    }
    int st;
    if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st)) r.status = WEXITSTATUS(st);
    r.out = test_read_file(out, NULL);
    r.err = test_read_file(err, NULL);
    if (!r.out) r.out = strdup("");
    if (!r.err) r.err = strdup("");
    return r;
}

/* Writes n rows of hour h into dir/key as compaction would (the table's field ids) and fills f
 * from the file's footer. 0, or -1. */
static int put_parquet(duckdb_connection con, const char *dir, const char *key, int64_t h, int n,
                       ice_file *f)
{
    char path[1600], sql[8192], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, key);
    char *slash = strrchr(path, '/');
    *slash = 0;
    for (char *p = strchr(path + strlen(dir) + 1, '/'); p; p = strchr(p + 1, '/')) {
        *p = 0;
        mkdir(path, 0755);
        *p = '/';
    }
    mkdir(path, 0755);
    *slash = '/';
    char quoted[3200], *q = quoted; /* the path as an SQL string's content: a quote doubled */
    for (const char *c = path; *c && q < quoted + sizeof quoted - 2; c++) {
        if (*c == '\'') *q++ = '\'';
        *q++ = *c;
    }
    *q = 0;
    snprintf(sql, sizeof sql,
             "COPY (SELECT 'e-' || i AS id, 'page.view' AS type,"
             " make_timestamptz(%" PRId64 " * 3600000000 + i * 1000000) AS ts,"
             " NULL::TIMESTAMPTZ AS receivedAt,"
             " NULL::STRUCT(id VARCHAR, name VARCHAR, class VARCHAR, colo VARCHAR) AS \"do\","
             " NULL::VARCHAR AS method, NULL::DOUBLE AS durationMs, NULL::BOOLEAN AS success,"
             " NULL::VARCHAR AS error, NULL::VARCHAR AS collection, NULL::VARCHAR AS docId,"
             " NULL::VARCHAR AS doc, NULL::VARCHAR AS prev, NULL::VARCHAR AS bookmark,"
             " '{}' AS _events_json FROM range(%d) t(i)) TO '%s' (FORMAT parquet, %s)",
             h, n, quoted, ice_duckdb_field_ids());
    duckdb_result res;
    int bad = duckdb_query(con, sql, &res) == DuckDBError;
    if (bad) fprintf(stderr, "duckdb: %s\n", duckdb_result_error(&res));
    duckdb_destroy_result(&res);
    if (bad) return -1;
    memset(f, 0, sizeof *f);
    f->key = strdup(key);
    f->hour = h;
    if (ice_stats_from_parquet(con, path, f, err, sizeof err)) {
        fprintf(stderr, "ice_stats_from_parquet: %s\n", err);
        return -1;
    }
    return 0;
}

/* A directory lake at dir with a table of two versions: a.parquet (30 rows) at T1, then
 * b.parquet (20 rows) at T2. *snapshot the current snapshot, *bytes the two files' sizes. */
static int two_versions(const char *dir, int64_t *snapshot, int64_t *bytes)
{
    char err[512];
    store *s = NULL;
    duckdb_database db = NULL;
    duckdb_connection con = NULL;
    ice_file f[2];
    memset(f, 0, sizeof f);
    ice_table *t1 = NULL, *t2 = NULL;
    int rc = -1;
    if (store_open(dir, &s, err, sizeof err)) {
        fprintf(stderr, "store_open: %s\n", err);
        return -1;
    }
    ice_catalog cat = ice_store_catalog(s);
    if (duckdb_open(NULL, &db) == DuckDBError || duckdb_connect(db, &con) == DuckDBError ||
        put_parquet(con, dir, "events/2026/11/25/10/a.parquet", H10, 30, &f[0]) ||
        put_parquet(con, dir, "events/2026/11/25/11/b.parquet", H10 + 1, 20, &f[1]))
        goto done;
    ice_change c1 = {.operation = "append", .add = &f[0], .nadd = 1};
    ice_change c2 = {.operation = "append", .add = &f[1], .nadd = 1};
    if (ice_commit(&cat, s, NULL, &c1, T1, &t1, err, sizeof err) ||
        ice_commit(&cat, s, t1, &c2, T2, &t2, err, sizeof err)) {
        fprintf(stderr, "ice_commit: %s\n", err);
        goto done;
    }
    *snapshot = ice_table_snapshot_id(t2);
    *bytes = f[0].bytes + f[1].bytes;
    rc = ice_table_version(t2) == 2 ? 0 : -1;
done:
    ice_table_free(t1);
    ice_table_free(t2);
    ice_file_clear(&f[0]);
    ice_file_clear(&f[1]);
    duckdb_disconnect(&con);
    duckdb_close(&db);
    store_close(s);
    return rc;
}

/* DIR/lake made, and its real path (the table's location is "file://" that). */
static char *lake_dir(const char *dir, const char *name, char *real, size_t cap)
{
    static char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (mkdir(path, 0755)) return NULL;
    char *r = realpath(path, NULL);
    if (!r) return NULL;
    snprintf(real, cap, "%s", r);
    free(r);
    return path;
}

TEST(test_table_prints_the_current_version_and_each_engines_statement)
{
    char *dir = test_tmpdir("table-cli");
    char real[1200];
    const char *lake = lake_dir(dir, "lake", real, sizeof real);
    REQUIRE(lake != NULL);
    int64_t snap = 0, bytes = 0;
    REQUIRE_INT(0, two_versions(lake, &snap, &bytes));
    CHECK(bytes > 0);

    run r = table_run(dir, "--lake", lake, NULL);
    CHECK_INT(0, r.status);
    CHECK_STR("", r.err);
    char want[8192];
    snprintf(
        want, sizeof want,
        "location    file://%1$s\n"
        "metadata    file://%1$s/metadata/v2.metadata.json\n"
        "version     2\n"
        "snapshot    %2$" PRId64 "\n"
        "data files  2\n"
        "records     50\n"
        "bytes       %3$" PRId64 "\n"
        "updated     2026-11-25T11:05:00.250Z\n"
        "\n"
        "A reader without a catalog finds the current version's number N in\n"
        "file://%1$s/metadata/version-hint.text\n"
        "(the metadata file is then metadata/vN.metadata.json).\n"
        "\n"
        "-- DuckDB (its iceberg extension)\n"
        "INSTALL iceberg; LOAD iceberg; SELECT count(*) FROM "
        "iceberg_scan('file://%1$s/metadata/v2.metadata.json');\n"
        "\n"
        "-- Spark: registers the table in your Iceberg catalog <catalog>, database <db>\n"
        "CALL <catalog>.system.register_table(table => '<db>.events', metadata_file => "
        "'file://%1$s/metadata/v2.metadata.json');\n"
        "\n"
        "-- Trino: registers the table in your schema <schema> of the catalog iceberg "
        "(iceberg.register-table-procedure.enabled=true)\n"
        "CALL iceberg.system.register_table(schema_name => '<schema>', table_name => 'events', "
        "table_location => 'file://%1$s', metadata_file_name => 'v2.metadata.json');\n"
        "\n"
        "-- Snowflake: none for a directory lake (Snowflake reads Iceberg tables in object "
        "storage: an s3:// lake)\n"
        "\n"
        "-- ClickHouse (clickhouse local, or a server on this machine)\n"
        "SELECT count() FROM icebergLocal('%1$s');\n",
        real, snap, bytes);
    CHECK_STR(want, r.out);
    run_free(&r);
    test_rmtree(dir);
    free(dir);
}

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

TEST(test_table_json_has_the_facts_and_the_statements_with_the_name_given)
{
    char *dir = test_tmpdir("table-cli");
    char real[1200], loc[1300], meta[1400], want[4096];
    const char *lake = lake_dir(dir, "lake", real, sizeof real);
    REQUIRE(lake != NULL);
    int64_t snap = 0, bytes = 0;
    REQUIRE_INT(0, two_versions(lake, &snap, &bytes));
    snprintf(loc, sizeof loc, "file://%s", real);
    snprintf(meta, sizeof meta, "%s/metadata/v2.metadata.json", loc);

    run r = table_run(dir, "--lake", lake, "--format", "json", "--name", "clicks", NULL);
    CHECK_INT(0, r.status);
    CHECK_STR("", r.err);
    json_error_t je;
    json_t *o = json_loads(r.out, 0, &je);
    REQUIRE(o != NULL);
    CHECK_STR("clicks", jstr(o, "name"));
    CHECK_STR(loc, jstr(o, "location"));
    CHECK_STR(meta, jstr(o, "metadataFile"));
    CHECK_INT(2, json_integer_value(json_object_get(o, "version")));
    CHECK_INT(snap, json_integer_value(json_object_get(o, "snapshotId")));
    CHECK_INT(2, json_integer_value(json_object_get(o, "dataFiles")));
    CHECK_INT(50, json_integer_value(json_object_get(o, "records")));
    CHECK_INT(bytes, json_integer_value(json_object_get(o, "bytes")));
    CHECK_STR("2026-11-25T11:05:00.250Z", jstr(o, "lastUpdated"));
    snprintf(want, sizeof want, "%s/metadata/version-hint.text", loc);
    CHECK_STR(want, jstr(o, "versionHint"));
    CHECK_INT(11, json_object_size(o));

    const json_t *st = json_object_get(o, "statements");
    CHECK_INT(5, json_object_size(st));
    snprintf(want, sizeof want,
             "INSTALL iceberg; LOAD iceberg; SELECT count(*) FROM iceberg_scan('%s');", meta);
    CHECK_STR(want, jstr(st, "duckdb"));
    snprintf(want, sizeof want,
             "CALL <catalog>.system.register_table(table => '<db>.clicks', metadata_file => '%s');",
             meta);
    CHECK_STR(want, jstr(st, "spark"));
    snprintf(want, sizeof want,
             "CALL iceberg.system.register_table(schema_name => '<schema>', table_name => "
             "'clicks', table_location => '%s', metadata_file_name => 'v2.metadata.json');",
             loc);
    CHECK_STR(want, jstr(st, "trino"));
    CHECK(json_is_null(json_object_get(st, "snowflake")));
    snprintf(want, sizeof want, "SELECT count() FROM icebergLocal('%s');", real);
    CHECK_STR(want, jstr(st, "clickhouse"));
    json_decref(o);
    run_free(&r);
    test_rmtree(dir);
    free(dir);
}

TEST(test_table_quotes_a_location_for_each_engines_strings)
{
    char *dir = test_tmpdir("table-cli");
    char real[1200], want[4096];
    const char *lake = lake_dir(dir, "o'brien\\lake", real, sizeof real);
    REQUIRE(lake != NULL);
    int64_t snap = 0, bytes = 0;
    REQUIRE_INT(0, two_versions(lake, &snap, &bytes));
    run r = table_run(dir, "--lake", lake, NULL);
    CHECK_INT(0, r.status);
    /* DuckDB and Trino: a quote doubled, a backslash as it is */
    CHECK_CONTAINS("/o''brien\\lake/metadata/v2.metadata.json');", r.out);
    CHECK_CONTAINS("table_location => 'file://", r.out);
    CHECK_CONTAINS("/o''brien\\lake', metadata_file_name", r.out);
    /* Spark and ClickHouse: both escaped with a backslash */
    CHECK_CONTAINS("/o\\'brien\\\\lake/metadata/v2.metadata.json');", r.out);
    snprintf(want, sizeof want, "SELECT count() FROM icebergLocal('%.*s/o\\'brien\\\\lake');",
             (int)(strlen(real) - strlen("/o'brien\\lake")), real);
    CHECK_CONTAINS(want, r.out);
    run_free(&r);
    test_rmtree(dir);
    free(dir);
}

TEST(test_table_of_a_lake_without_one_says_compaction_writes_it)
{
    char *dir = test_tmpdir("table-cli");
    char real[1200], want[2048];
    const char *lake = lake_dir(dir, "lake", real, sizeof real);
    REQUIRE(lake != NULL);
    run r = table_run(dir, "--lake", lake, NULL);
    CHECK_INT(1, r.status);
    CHECK_STR("", r.out);
    snprintf(want, sizeof want,
             "events table: the lake at file://%s has no table yet: it is written by compaction "
             "(events compact, or events serve's compactor)\n",
             real);
    CHECK_STR(want, r.err);
    run_free(&r);
    test_rmtree(dir);
    free(dir);
}

TEST(test_table_of_a_missing_lake_says_so_and_does_not_make_it)
{
    char *dir = test_tmpdir("table-cli");
    char lake[1200], want[2048];
    snprintf(lake, sizeof lake, "%s/nowhere", dir);
    run r = table_run(dir, "--lake", lake, NULL);
    CHECK_INT(1, r.status);
    CHECK_STR("", r.out);
    snprintf(want, sizeof want, "events table: no such lake: %s\n", lake);
    CHECK_STR(want, r.err);
    CHECK(access(lake, F_OK) != 0);
    run_free(&r);
    test_rmtree(dir);
    free(dir);
}

TEST(test_table_bad_flags_are_usage_errors)
{
    char *dir = test_tmpdir("table-cli");
    run r = table_run(dir, "--format", "xml", NULL);
    CHECK_INT(2, r.status);
    CHECK_STR("events table: --format must be text or json, not \"xml\"\n", r.err);
    run_free(&r);
    r = table_run(dir, "--bogus", NULL);
    CHECK_INT(2, r.status);
    CHECK_STR("events table: unknown or incomplete option \"--bogus\" (see events table --help)\n",
              r.err);
    run_free(&r);
    r = table_run(dir, "--name", "my table", NULL);
    CHECK_INT(2, r.status);
    CHECK_STR("events table: --name \"my table\" is not a plain SQL name (letters, digits and _, "
              "not starting with a digit)\n",
              r.err);
    run_free(&r);
    r = table_run(dir, "extra", NULL);
    CHECK_INT(2, r.status);
    CHECK_STR("events table: unexpected argument \"extra\"\n", r.err);
    run_free(&r);
    r = table_run(dir, "--help", NULL);
    CHECK_INT(0, r.status);
    CHECK_CONTAINS("Usage: events table [--lake DIR|URL] [--format text|json] [--name NAME]",
                   r.out);
    run_free(&r);
    test_rmtree(dir);
    free(dir);
}
