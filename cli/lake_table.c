/*
 * lake_table.c - `events table`: where the lake's Apache Iceberg table is
 * (lake/iceberg.h), and the statements with which other engines read it.
 *
 * Compaction writes the table; this command only reads its current metadata
 * version through the store catalog, from the store opened read-only and
 * without a cache (a few small metadata objects are all it reads). It prints
 * the facts of that version and one ready-to-paste statement per engine with
 * the real locations in it (DuckDB, Spark, Trino, Snowflake, ClickHouse): as
 * text, or as one JSON object (--format json) where an engine that cannot read
 * this lake (Snowflake and a directory) has null.
 *
 * Quoting: every location goes into a single-quoted SQL string. DuckDB and
 * Trino read backslashes literally and a quote doubled; Spark, Snowflake and
 * ClickHouse read backslash escapes, so there a quote and a backslash are
 * escaped with one. The table name is an identifier (checked), never quoted.
 */
#include "cli.h"
#include "evtime.h"
#include "iceberg.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The engines, in the order printed; their keys in the JSON "statements". */
enum { LT_DUCKDB, LT_SPARK, LT_TRINO, LT_SNOWFLAKE, LT_CLICKHOUSE, LT_NENGINES };
static const char *const LT_KEYS[LT_NENGINES] = {"duckdb", "spark", "trino", "snowflake",
                                                 "clickhouse"};

/* The facts of the current version, from its metadata. */
typedef struct lt_facts {
    const char *location; /* the table's: "file:///abs/dir" or "s3://bucket/prefix" */
    buf metadata;         /* location "/metadata/v{N}.metadata.json" */
    buf hint;             /* location "/metadata/version-hint.text" */
    int64_t version;
    int64_t snapshot_id;           /* -1: the table has no snapshot */
    int64_t files, records, bytes; /* -1: the snapshot's summary does not say */
    int64_t updated_ms;            /* -1: the metadata does not say */
} lt_facts;

/* One engine's statement (empty: the engine cannot read this lake) and the comment line
 * printed above it in text. */
typedef struct lt_stmt {
    buf sql, note;
} lt_stmt;

/* A numeric string of the summary of snapshot id, or -1; 0 without a snapshot (id -1: an
 * empty table). */
static int64_t lt_summary(const json_t *meta, int64_t id, const char *key)
{
    if (id < 0) return 0;
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(meta, "snapshots"), i, s)
    {
        if (json_integer_value(json_object_get(s, "snapshot-id")) != id) continue;
        const char *v = json_string_value(json_object_get(json_object_get(s, "summary"), key));
        char *end;
        long long n = v ? strtoll(v, &end, 10) : -1;
        return v && end != v && !*end && n >= 0 ? (int64_t)n : -1;
    }
    return -1;
}

/* Fills f from t (f->location points into t). 0, or -1 when out of memory. */
static int lt_facts_of(const ice_table *t, lt_facts *f)
{
    const json_t *meta = ice_table_json(t);
    memset(f, 0, sizeof *f);
    f->location = ice_table_location(t);
    f->version = ice_table_version(t);
    f->snapshot_id = ice_table_snapshot_id(t);
    f->files = lt_summary(meta, f->snapshot_id, "total-data-files");
    f->records = lt_summary(meta, f->snapshot_id, "total-records");
    f->bytes = lt_summary(meta, f->snapshot_id, "total-files-size");
    json_t *u = json_object_get(meta, "last-updated-ms");
    f->updated_ms =
        json_is_integer(u) && json_integer_value(u) >= 0 && json_integer_value(u) <= EVTIME_MAX_MS
            ? json_integer_value(u)
            : -1;
    if (buf_printf(&f->metadata, "%s/metadata/v%" PRId64 ".metadata.json", f->location,
                   f->version) ||
        buf_printf(&f->hint, "%s/metadata/version-hint.text", f->location) ||
        !buf_cstr(&f->metadata) || !buf_cstr(&f->hint))
        return -1;
    return 0;
}

static void lt_facts_clear(lt_facts *f)
{
    buf_free(&f->metadata);
    buf_free(&f->hint);
}

/* Appends s as a single-quoted SQL string: quotes doubled, or (backslash) a quote and a
 * backslash escaped with a backslash. */
static int lt_quote(buf *b, const char *s, int backslash)
{
    int bad = buf_putc(b, '\'');
    for (; *s && !bad; s++) {
        if (*s == '\'') bad = buf_putc(b, backslash ? '\\' : '\'');
        if (*s == '\\' && backslash) bad |= buf_putc(b, '\\');
        bad |= buf_putc(b, *s);
    }
    return bad | buf_putc(b, '\'');
}

/* The bucket (*bl bytes at *bucket) and the prefix (maybe "") of an "s3://" location; 0, or
 * -1 when it is not one. */
static int lt_s3_parts(const char *location, const char **bucket, size_t *bl, const char **prefix)
{
    if (strncmp(location, "s3://", 5)) return -1;
    *bucket = location + 5;
    const char *slash = strchr(*bucket, '/');
    *bl = slash ? (size_t)(slash - *bucket) : strlen(*bucket);
    *prefix = slash ? slash + 1 : "";
    return 0;
}

/* ---- the statements ----------------------------------------------------------------------- */

static int lt_duckdb(const lt_facts *f, lt_stmt *s)
{
    int bad = buf_puts(&s->note, "DuckDB (its iceberg extension)");
    if (!strncmp(f->location, "s3://", 5))
        bad |= buf_puts(&s->note, "; an s3 lake needs an S3 secret first (CREATE SECRET "
                                  "(TYPE s3, KEY_ID '<key id>', SECRET '<secret>', ...))");
    bad |= buf_puts(&s->sql, "INSTALL iceberg; LOAD iceberg; SELECT count(*) FROM iceberg_scan(");
    bad |= lt_quote(&s->sql, f->metadata.p, 0);
    return bad | buf_puts(&s->sql, ");");
}

static int lt_spark(const lt_facts *f, const char *name, lt_stmt *s)
{
    int bad = buf_puts(&s->note, "Spark: registers the table in your Iceberg catalog <catalog>, "
                                 "database <db>");
    bad |= buf_printf(&s->sql,
                      "CALL <catalog>.system.register_table(table => '<db>.%s', "
                      "metadata_file => ",
                      name);
    bad |= lt_quote(&s->sql, f->metadata.p, 1);
    return bad | buf_puts(&s->sql, ");");
}

static int lt_trino(const lt_facts *f, const char *name, lt_stmt *s)
{
    int bad = buf_puts(&s->note, "Trino: registers the table in your schema <schema> of the "
                                 "catalog iceberg (iceberg.register-table-procedure.enabled=true)");
    bad |= buf_printf(&s->sql,
                      "CALL iceberg.system.register_table(schema_name => '<schema>', table_name "
                      "=> '%s', table_location => ",
                      name);
    bad |= lt_quote(&s->sql, f->location, 0);
    bad |=
        buf_printf(&s->sql, ", metadata_file_name => 'v%" PRId64 ".metadata.json');", f->version);
    return bad;
}

/* Snowflake reads object storage only: for an s3 lake, the metadata file's path relative to
 * an external volume whose storage location is the bucket itself. */
static int lt_snowflake(const lt_facts *f, const char *name, lt_stmt *s)
{
    const char *bucket, *prefix;
    size_t bl;
    if (lt_s3_parts(f->location, &bucket, &bl, &prefix))
        return buf_puts(&s->note, "Snowflake: none for a directory lake (Snowflake reads "
                                  "Iceberg tables in object storage: an s3:// lake)");
    int bad = buf_printf(&s->note,
                         "Snowflake: the external volume <volume> must point at the bucket "
                         "(STORAGE_BASE_URL = 's3://%.*s/'), and <object store catalog "
                         "integration> be one with CATALOG_SOURCE = OBJECT_STORE",
                         (int)bl, bucket);
    buf path = BUF_INIT;
    bad |= buf_printf(&path, "%s%smetadata/v%" PRId64 ".metadata.json", prefix, *prefix ? "/" : "",
                      f->version);
    bad |= !buf_cstr(&path);
    bad |= buf_printf(&s->sql,
                      "CREATE ICEBERG TABLE %s EXTERNAL_VOLUME = '<volume>' CATALOG = '<object "
                      "store catalog integration>' METADATA_FILE_PATH = ",
                      name);
    if (!bad) bad = lt_quote(&s->sql, path.p, 1) | buf_putc(&s->sql, ';');
    buf_free(&path);
    return bad;
}

/* The https URL of an s3 lake's table, where the lake's own store sends its requests: the
 * endpoint of AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (path-style), else AWS's virtual host. */
static int lt_s3_https(const char *bucket, size_t bl, const char *prefix, buf *out)
{
    const char *ep = getenv("AWS_ENDPOINT_URL_S3");
    if (!ep || !*ep) ep = getenv("AWS_ENDPOINT_URL");
    const char *sep = *prefix ? "/" : "";
    if (!ep || !*ep)
        return buf_printf(out, "https://%.*s.s3.amazonaws.com%s%s", (int)bl, bucket, sep, prefix);
    size_t el = strlen(ep);
    while (el && ep[el - 1] == '/') el--;
    return buf_printf(out, "%.*s/%.*s%s%s", (int)el, ep, (int)bl, bucket, sep, prefix);
}

static int lt_clickhouse(const lt_facts *f, lt_stmt *s)
{
    const char *bucket, *prefix;
    size_t bl;
    int bad = 0;
    if (!strncmp(f->location, "file://", 7)) {
        bad |= buf_puts(&s->note, "ClickHouse (clickhouse local, or a server on this machine)");
        bad |= buf_puts(&s->sql, "SELECT count() FROM icebergLocal(");
        bad |= lt_quote(&s->sql, f->location + 7, 1);
        return bad | buf_puts(&s->sql, ");");
    }
    if (lt_s3_parts(f->location, &bucket, &bl, &prefix))
        return buf_printf(&s->note, "ClickHouse: no table function reads %s", f->location);
    buf url = BUF_INIT;
    bad |= lt_s3_https(bucket, bl, prefix, &url) || !buf_cstr(&url);
    bad |= buf_puts(&s->note, "ClickHouse: <key id> and <secret> are credentials that may read "
                              "the bucket");
    bad |= buf_puts(&s->sql, "SELECT count() FROM icebergS3(");
    if (!bad) bad = lt_quote(&s->sql, url.p, 1);
    bad |= buf_puts(&s->sql, ", '<key id>', '<secret>');");
    buf_free(&url);
    return bad;
}

/* Every engine's statement into s (LT_NENGINES of them). 0, or -1 when out of memory. */
static int lt_statements(const lt_facts *f, const char *name, lt_stmt *s)
{
    int bad = lt_duckdb(f, &s[LT_DUCKDB]) | lt_spark(f, name, &s[LT_SPARK]) |
              lt_trino(f, name, &s[LT_TRINO]) | lt_snowflake(f, name, &s[LT_SNOWFLAKE]) |
              lt_clickhouse(f, &s[LT_CLICKHOUSE]);
    for (int i = 0; i < LT_NENGINES; i++) bad |= !buf_cstr(&s[i].note) || !buf_cstr(&s[i].sql);
    return bad ? -1 : 0;
}

/* ---- printing ----------------------------------------------------------------------------- */

/* A number, or "unknown" when -1. */
static void lt_print_num(const char *label, int64_t v)
{
    if (v < 0)
        printf("%-11s unknown\n", label);
    else
        printf("%-11s %" PRId64 "\n", label, v);
}

static void lt_print_text(const lt_facts *f, const lt_stmt *s)
{
    printf("%-11s %s\n%-11s %s\n%-11s %" PRId64 "\n", "location", f->location, "metadata",
           f->metadata.p, "version", f->version);
    if (f->snapshot_id < 0)
        printf("%-11s none\n", "snapshot");
    else
        printf("%-11s %" PRId64 "\n", "snapshot", f->snapshot_id);
    lt_print_num("data files", f->files);
    lt_print_num("records", f->records);
    lt_print_num("bytes", f->bytes);
    char ts[EVTIME_LEN + 1] = "unknown";
    if (f->updated_ms >= 0) evtime_format(f->updated_ms, ts);
    printf("%-11s %s\n\n", "updated", ts);
    printf("A reader without a catalog finds the current version's number N in\n%s\n"
           "(the metadata file is then metadata/vN.metadata.json).\n",
           f->hint.p);
    for (int i = 0; i < LT_NENGINES; i++) {
        printf("\n-- %s\n", s[i].note.p);
        if (s[i].sql.len) printf("%s\n", s[i].sql.p);
    }
}

/* A non-negative number, or null when -1. */
static json_t *lt_json_num(int64_t v)
{
    return v < 0 ? json_null() : json_integer((json_int_t)v);
}

static int lt_print_json(const lt_facts *f, const lt_stmt *s, const char *name)
{
    char ts[EVTIME_LEN + 1];
    if (f->updated_ms >= 0) evtime_format(f->updated_ms, ts);
    json_t *st = json_object();
    for (int i = 0; st && i < LT_NENGINES; i++)
        if (json_object_set_new(st, LT_KEYS[i],
                                s[i].sql.len ? json_string(s[i].sql.p) : json_null())) {
            json_decref(st);
            st = NULL;
        }
    json_t *o = st ? json_pack("{s:s,s:s,s:s,s:I,s:o,s:o,s:o,s:o,s:o,s:s,s:o}", "name", name,
                               "location", f->location, "metadataFile", f->metadata.p, "version",
                               (json_int_t)f->version, "snapshotId", lt_json_num(f->snapshot_id),
                               "dataFiles", lt_json_num(f->files), "records",
                               lt_json_num(f->records), "bytes", lt_json_num(f->bytes),
                               "lastUpdated", f->updated_ms >= 0 ? json_string(ts) : json_null(),
                               "versionHint", f->hint.p, "statements", st)
                   : NULL;
    int rc = o ? json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : -1;
    if (!rc) rc = putchar('\n') == EOF ? -1 : 0;
    json_decref(o);
    return rc;
}

/* ---- the command -------------------------------------------------------------------------- */

/* 1 if s is an SQL identifier every engine takes unquoted: [A-Za-z_][A-Za-z0-9_]*, at most
 * 128 characters. */
static int lt_identifier(const char *s)
{
    size_t n = strlen(s);
    if (!n || n > 128 || isdigit((unsigned char)s[0])) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_') return 0;
    return 1;
}

/* Prints what t says in format. 0, or 1 (said on stderr). */
static int lt_print(const ice_table *t, const char *format, const char *name)
{
    lt_facts f;
    lt_stmt s[LT_NENGINES];
    memset(s, 0, sizeof s);
    int rc = 1;
    if (lt_facts_of(t, &f) || lt_statements(&f, name, s)) {
        fprintf(stderr, "events table: out of memory\n");
        goto done;
    }
    if (!strcmp(format, "json")) {
        if (lt_print_json(&f, s, name)) {
            fprintf(stderr, "events table: cannot write the JSON answer\n");
            goto done;
        }
    } else {
        lt_print_text(&f, s);
    }
    rc = fflush(stdout) ? 1 : 0;
done:
    for (int i = 0; i < LT_NENGINES; i++) {
        buf_free(&s[i].sql);
        buf_free(&s[i].note);
    }
    lt_facts_clear(&f);
    return rc;
}

int cmd_table(int argc, char **argv)
{
    const char *lake = "./events-lake", *format = "text", *name = "events";
    const cli_option opts[] = {
        {"lake", "EVENTS_LAKE", OPT_STR, &lake, "DIR|URL",
         "the lake: a directory or s3://bucket/prefix (default ./events-lake)"},
        {"format", NULL, OPT_STR, &format, "text|json", "text (default) or one JSON object"},
        {"name", NULL, OPT_STR, &name, "NAME",
         "the table's name in the statements (default events)"},
        {NULL, NULL, 0, NULL, NULL, NULL},
    };
    int status;
    if (cli_options_take_no_args(
            "table",
            "Usage: events table [--lake DIR|URL] [--format text|json] [--name NAME]\n\n"
            "Prints where the lake's Apache Iceberg table is (its location, the current\n"
            "metadata file, its snapshot, files, records and bytes) and the statements with\n"
            "which DuckDB, Spark, Trino, Snowflake and ClickHouse read it. Compaction writes\n"
            "the table; a lake nothing has compacted yet has none (exit status 1).",
            opts, argc, argv, &status))
        return status;
    if (strcmp(format, "text") && strcmp(format, "json")) {
        fprintf(stderr, "events table: --format must be text or json, not \"%s\"\n", format);
        return 2;
    }
    if (!lt_identifier(name)) {
        fprintf(stderr,
                "events table: --name \"%s\" is not a plain SQL name (letters, digits and _, "
                "not starting with a digit)\n",
                name);
        return 2;
    }
    store *st;
    if (cli_lake_open("table", lake, NULL, 0, CLI_LAKE_READ, &st, NULL)) return 1;
    ice_catalog cat = ice_store_catalog(st);
    ice_table *t = NULL;
    char err[1024];
    int rc = cat.ops->load(cat.cat, &t, err, sizeof err);
    if (rc == ICE_ENOTABLE) {
        fprintf(stderr,
                "events table: the lake at %s has no table yet: it is written by compaction "
                "(events compact, or events serve's compactor)\n",
                st->url);
        rc = 1;
    } else if (rc) {
        fprintf(stderr, "events table: %s\n", err);
        rc = 1;
    } else {
        if (strcmp(ice_table_location(t), st->url))
            fprintf(stderr,
                    "events table: the table's location %s is not the lake's %s (was the lake "
                    "moved?): its metadata names every file under %s\n",
                    ice_table_location(t), st->url, ice_table_location(t));
        rc = lt_print(t, format, name);
    }
    ice_table_free(t);
    store_close(st);
    return rc;
}
