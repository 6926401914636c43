/*
 * iceberg.c - the Iceberg table's schema, its parsed metadata versions, and the
 * catalog that keeps those versions in the store (iceberg.h).
 *
 * The schema is the one table ice__fields below: the metadata's schema, its
 * name mapping, the manifests' "schema" header, the Parquet statistics and the
 * FIELD_IDS clause with which DuckDB writes the data files all come from it, so
 * a field id cannot differ between the data and the metadata.
 *
 * The store catalog: version N is the object metadata/v{N}.metadata.json, made
 * by a conditional put (STORE_IF_ABSENT, atomic on a directory and on S3), so of
 * two writers on the same base exactly one gets N+1. version-hint.text is only a
 * hint (written after the put, it may lag or be lost): load probes past it.
 * EVENTS_TEST_KILL_AT=metadata and =version-hint stop the process after either
 * put (testkill.h).
 */
#include "iceberg_int.h"
#include "testkill.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The table's schema, schema-id 0; every field optional. Order is the column order. */
static const ice__field ice__fields[] = {
    {1, "id", ICE__STRING, 0},
    {2, "type", ICE__STRING, 0},
    {3, "ts", ICE__TSTZ, 0},
    {4, "receivedAt", ICE__TSTZ, 0},
    {5, "do", ICE__STRUCT, 0},
    {6, "id", ICE__STRING, 5},
    {7, "name", ICE__STRING, 5},
    {8, "class", ICE__STRING, 5},
    {9, "colo", ICE__STRING, 5},
    {10, "method", ICE__STRING, 0},
    {11, "durationMs", ICE__DOUBLE, 0},
    {12, "success", ICE__BOOL, 0},
    {13, "error", ICE__STRING, 0},
    {14, "collection", ICE__STRING, 0},
    {15, "docId", ICE__STRING, 0},
    {16, "doc", ICE__STRING, 0},
    {17, "prev", ICE__STRING, 0},
    {18, "bookmark", ICE__STRING, 0},
    {19, "_events_json", ICE__STRING, 0},
};
#define ICE__NFIELDS (sizeof ice__fields / sizeof ice__fields[0])

const ice__field *ice__field_by_id(int id)
{
    for (size_t i = 0; i < ICE__NFIELDS; i++)
        if (ice__fields[i].id == id) return &ice__fields[i];
    return NULL;
}

int ice__fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return code;
}

const char *ice_strerror(int code)
{
    switch (code) {
    case ICE_OK: return "ICE_OK";
    case ICE_EIO: return "ICE_EIO";
    case ICE_ENOTABLE: return "ICE_ENOTABLE";
    case ICE_ECONFLICT: return "ICE_ECONFLICT";
    case ICE_ESTALE: return "ICE_ESTALE";
    case ICE_EFORMAT: return "ICE_EFORMAT";
    case ICE_EINVAL: return "ICE_EINVAL";
    case ICE_ENOMEM: return "ICE_ENOMEM";
    default: return "ICE_E?";
    }
}

static const char *type_name(ice__type t)
{
    switch (t) {
    case ICE__STRING: return "string";
    case ICE__TSTZ: return "timestamptz";
    case ICE__DOUBLE: return "double";
    case ICE__BOOL: return "boolean";
    case ICE__STRUCT: break;
    }
    return "struct";
}

/* The fields whose parent is parent, as Iceberg's schema JSON (names: the name
 * mapping's form instead). */
static json_t *fields_json(int parent, int mapping)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < ICE__NFIELDS; i++) {
        const ice__field *f = &ice__fields[i];
        if (f->parent != parent) continue;
        json_t *o;
        if (mapping)
            o = json_pack("{s:i,s:[s]}", "field-id", f->id, "names", f->name);
        else
            o = json_pack("{s:i,s:s,s:b}", "id", f->id, "name", f->name, "required", 0);
        if (o && f->type == ICE__STRUCT) {
            json_t *sub = fields_json(f->id, mapping);
            if (mapping)
                json_object_set_new(o, "fields", sub);
            else
                json_object_set_new(o, "type",
                                    json_pack("{s:s,s:o}", "type", "struct", "fields", sub));
        } else if (o && !mapping) {
            json_object_set_new(o, "type", json_string(type_name(f->type)));
        }
        if (!o || json_array_append_new(a, o)) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

json_t *ice__schema_json(void)
{
    return json_pack("{s:s,s:i,s:o}", "type", "struct", "schema-id", 0, "fields",
                     fields_json(0, 0));
}

json_t *ice__spec_fields_json(void)
{
    return json_pack("[{s:i,s:i,s:s,s:s}]", "source-id", ICE__TS_FIELD, "field-id", ICE__PART_FIELD,
                     "name", "ts_hour", "transform", "hour");
}

/* The name mapping (schema.name-mapping.default) as JSON text; free() it. */
char *ice__name_mapping(void)
{
    json_t *m = fields_json(0, 1);
    char *s = m ? json_dumps(m, JSON_COMPACT) : NULL;
    json_decref(m);
    return s;
}

/* The FIELD_IDS text: written once by build_field_ids under ice__field_ids_once,
 * read only after; empty if memory ran out then. */
static char ice__field_ids_text[512];
static pthread_once_t ice__field_ids_once = PTHREAD_ONCE_INIT;

static void build_field_ids(void)
{
    buf b = BUF_INIT;
    buf_puts(&b, "FIELD_IDS {");
    for (size_t i = 0; i < ICE__NFIELDS; i++) {
        const ice__field *f = &ice__fields[i];
        if (f->parent) continue;
        buf_printf(&b, "%s\"%s\": ", b.len > 11 ? ", " : "", f->name);
        if (f->type != ICE__STRUCT) {
            buf_printf(&b, "%d", f->id);
            continue;
        }
        buf_printf(&b, "{__duckdb_field_id: %d", f->id);
        for (size_t j = 0; j < ICE__NFIELDS; j++)
            if (ice__fields[j].parent == f->id)
                buf_printf(&b, ", \"%s\": %d", ice__fields[j].name, ice__fields[j].id);
        buf_putc(&b, '}');
    }
    buf_putc(&b, '}');
    if (buf_cstr(&b) && b.len < sizeof ice__field_ids_text)
        memcpy(ice__field_ids_text, b.p, b.len + 1);
    buf_free(&b);
}

const char *ice_duckdb_field_ids(void)
{
    pthread_once(&ice__field_ids_once, build_field_ids);
    return ice__field_ids_text;
}

/* ---- files -------------------------------------------------------------------------- */

void ice_file_clear(ice_file *f)
{
    if (!f) return;
    free(f->key);
    for (size_t i = 0; i < f->ncols; i++) {
        buf_free(&f->cols[i].lower);
        buf_free(&f->cols[i].upper);
    }
    free(f->cols);
    memset(f, 0, sizeof *f);
}

void ice_files_free(ice_file *files, size_t n)
{
    for (size_t i = 0; files && i < n; i++) ice_file_clear(&files[i]);
    free(files);
}

void ice_keys_free(char **keys, size_t n)
{
    for (size_t i = 0; keys && i < n; i++) free(keys[i]);
    free(keys);
}

int64_t ice_hour_of_us(int64_t us)
{
    const int64_t h = 3600000000LL;
    return us >= 0 ? us / h : -((-us + h - 1) / h);
}

const char *ice__key_of(const char *location, const char *abs)
{
    size_t n = strlen(location);
    if (strncmp(abs, location, n) || abs[n] != '/') return NULL;
    return abs + n + 1;
}

/* ---- tables ------------------------------------------------------------------------- */

int ice__table_new(json_t *meta, int64_t version, const char *metadata_file, ice_table **out,
                   char *err, size_t errlen)
{
    const char *loc = json_string_value(json_object_get(meta, "location"));
    json_t *fv = json_object_get(meta, "format-version");
    if (!loc || !json_is_integer(fv) || json_integer_value(fv) != 2) {
        json_decref(meta);
        return ice__fail(err, errlen, ICE_EFORMAT,
                         "iceberg: %s: not format-version 2 table metadata with a location",
                         metadata_file);
    }
    ice_table *t = calloc(1, sizeof *t);
    if (!t || !(t->location = strdup(loc)) || !(t->metadata_file = strdup(metadata_file))) {
        json_decref(meta);
        ice_table_free(t);
        return ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
    }
    size_t n = strlen(t->location);
    while (n && t->location[n - 1] == '/') t->location[--n] = 0;
    t->meta = meta;
    t->version = version;
    json_t *cur = json_object_get(meta, "current-snapshot-id");
    t->snapshot_id = json_is_integer(cur) ? json_integer_value(cur) : -1;
    *out = t;
    return ICE_OK;
}

void ice_table_free(ice_table *t)
{
    if (!t) return;
    json_decref(t->meta);
    free(t->location);
    free(t->metadata_file);
    free(t);
}

int64_t ice_table_version(const ice_table *t)
{
    return t->version;
}

int64_t ice_table_snapshot_id(const ice_table *t)
{
    return t->snapshot_id;
}

const char *ice_table_location(const ice_table *t)
{
    return t->location;
}

const json_t *ice_table_json(const ice_table *t)
{
    return t->meta;
}

json_t *ice__snapshot(const ice_table *t, int64_t id)
{
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(t->meta, "snapshots"), i, s)
    {
        if (json_integer_value(json_object_get(s, "snapshot-id")) == id) return s;
    }
    return NULL;
}

/* ---- the store catalog --------------------------------------------------------------- */

#define ICE__HINT "metadata/version-hint.text"

static void version_key(char *out, size_t n, int64_t v)
{
    snprintf(out, n, "metadata/v%" PRId64 ".metadata.json", v);
}

/* The version version-hint.text names: >0, 0 when missing or garbled, <0 on error. */
static int64_t read_hint(store *s, char *err, size_t errlen)
{
    buf b = BUF_INIT;
    int rc = store_get(s, ICE__HINT, 0, 0, &b, err, errlen);
    if (rc == STORE_ENOENT) return 0;
    if (rc) return -1;
    int64_t v = 0;
    const char *t = buf_cstr(&b);
    char *end = NULL;
    if (t) v = strtoll(t, &end, 10);
    if (!t || end == t || v <= 0 || (*end && *end != '\n')) v = 0;
    buf_free(&b);
    return v;
}

int64_t ice__version_of_key(const char *key)
{
    static const char pre[] = "metadata/v", suf[] = ".metadata.json";
    if (strncmp(key, pre, sizeof pre - 1)) return 0;
    const char *digits = key + sizeof pre - 1;
    char *end;
    if (*digits < '1' || *digits > '9') return 0;
    long long v = strtoll(digits, &end, 10);
    return strcmp(end, suf) ? 0 : (int64_t)v;
}

static int list_max_version(const store_entry *e, void *ud)
{
    int64_t *max = ud, v = ice__version_of_key(e->key);
    if (v > *max) *max = v;
    return 0;
}

static int store_load(void *cat, ice_table **out, char *err, size_t errlen)
{
    store *s = cat;
    char key[96];
    int64_t v = read_hint(s, err, errlen);
    if (v < 0) return ICE_EIO;
    store_entry e;
    if (v > 0) {
        version_key(key, sizeof key, v);
        if (store_head(s, key, &e, err, errlen)) v = 0; /* a hint to nothing: list */
    }
    if (v == 0 && store_list(s, "metadata/", list_max_version, &v, err, errlen)) return ICE_EIO;
    if (v == 0)
        return ice__fail(err, errlen, ICE_ENOTABLE, "iceberg: %s has no table metadata", s->url);
    for (;;) { /* the hint may lag: the latest version is the last one present */
        version_key(key, sizeof key, v + 1);
        int rc = store_head(s, key, &e, err, errlen);
        if (rc == STORE_ENOENT) break;
        if (rc) return ICE_EIO;
        v++;
    }
    version_key(key, sizeof key, v);
    buf b = BUF_INIT;
    if (store_get(s, key, 0, 0, &b, err, errlen)) return ICE_EIO;
    json_error_t je;
    json_t *meta = json_loadb(b.p ? b.p : "", b.len, 0, &je);
    buf_free(&b);
    char abs[1024];
    snprintf(abs, sizeof abs, "%s/%s", s->url, key);
    if (!meta)
        return ice__fail(err, errlen, ICE_EFORMAT, "iceberg: %s: %s (line %d)", abs, je.text,
                         je.line);
    return ice__table_new(meta, v, abs, out, err, errlen);
}

static int store_swap(void *cat, const ice_table *base, int64_t new_version, const char *json,
                      size_t len, char *err, size_t errlen)
{
    store *s = cat;
    char key[96];
    /* A version expiry deleted could be put again by a writer whose base is that
     * old: a hint past the base means the base is stale whatever the put says. */
    int64_t hint = read_hint(s, err, errlen);
    if (hint < 0) return ICE_EIO;
    if (hint > (base ? base->version : 0))
        return ice__fail(err, errlen, ICE_ECONFLICT,
                         "iceberg: version %" PRId64 " is no longer current (the hint says %" PRId64
                         ")",
                         base ? base->version : 0, hint);
    version_key(key, sizeof key, new_version);
    int rc = store_put(s, key, json, len, STORE_IF_ABSENT, err, errlen);
    if (rc == STORE_EEXIST)
        return ice__fail(err, errlen, ICE_ECONFLICT,
                         "iceberg: %s exists: another writer committed first", key);
    if (rc) return ICE_EIO;
    lake_test_kill_at("metadata");
    char text[32];
    int n = snprintf(text, sizeof text, "%" PRId64 "\n", new_version);
    char ignored[256]; /* a lost hint only makes the next load probe further */
    store_put(s, ICE__HINT, text, (size_t)n, 0, ignored, sizeof ignored);
    lake_test_kill_at("version-hint");
    return ICE_OK;
}

const ice_catalog_ops ice_store_catalog_ops = {store_load, store_swap};
