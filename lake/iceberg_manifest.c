/*
 * iceberg_manifest.c - Iceberg manifests and manifest lists as Avro container
 * files (iceberg_int.h), in the v2 schemas of Iceberg's spec with their field ids.
 *
 * Only the fields this table fills are in the schemas (readers project by field
 * id, so an absent optional field reads as null): no nan_value_counts (the lake's
 * doubles come from JSON, which has no NaN), no split offsets, no key metadata.
 * Maps keyed by int are Avro arrays of key/value records with logicalType "map",
 * as the spec asks; no named type is used twice (some readers cannot resolve a
 * reference), and every record name is distinct.
 */
#include "avro.h"
#include "iceberg_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* clang-format off */
#define KV(name, id, k, v, vt, rname)                                                              \
    "{\"name\":\"" name "\",\"type\":[\"null\",{\"type\":\"array\",\"items\":{\"type\":\"record\","\
    "\"name\":\"" rname "\",\"fields\":[{\"name\":\"key\",\"type\":\"int\",\"field-id\":" k "},"    \
    "{\"name\":\"value\",\"type\":\"" vt "\",\"field-id\":" v "}]},\"logicalType\":\"map\"}],"     \
    "\"default\":null,\"field-id\":" id "}"

static const char ice__entry_schema[] =
    "{\"type\":\"record\",\"name\":\"manifest_entry\",\"fields\":["
    "{\"name\":\"status\",\"type\":\"int\",\"field-id\":0},"
    "{\"name\":\"snapshot_id\",\"type\":[\"null\",\"long\"],\"default\":null,\"field-id\":1},"
    "{\"name\":\"sequence_number\",\"type\":[\"null\",\"long\"],\"default\":null,\"field-id\":3},"
    "{\"name\":\"file_sequence_number\",\"type\":[\"null\",\"long\"],\"default\":null,\"field-id\":4},"
    "{\"name\":\"data_file\",\"type\":{\"type\":\"record\",\"name\":\"r2\",\"fields\":["
    "{\"name\":\"content\",\"type\":\"int\",\"field-id\":134},"
    "{\"name\":\"file_path\",\"type\":\"string\",\"field-id\":100},"
    "{\"name\":\"file_format\",\"type\":\"string\",\"field-id\":101},"
    "{\"name\":\"partition\",\"type\":{\"type\":\"record\",\"name\":\"r102\",\"fields\":["
    "{\"name\":\"ts_hour\",\"type\":[\"null\",\"int\"],\"default\":null,\"field-id\":1000}]},"
    "\"field-id\":102},"
    "{\"name\":\"record_count\",\"type\":\"long\",\"field-id\":103},"
    "{\"name\":\"file_size_in_bytes\",\"type\":\"long\",\"field-id\":104},"
    KV("column_sizes", "108", "117", "118", "long", "k117_v118") ","
    KV("value_counts", "109", "119", "120", "long", "k119_v120") ","
    KV("null_value_counts", "110", "121", "122", "long", "k121_v122") ","
    KV("lower_bounds", "125", "126", "127", "bytes", "k126_v127") ","
    KV("upper_bounds", "128", "129", "130", "bytes", "k129_v130") ","
    "{\"name\":\"sort_order_id\",\"type\":[\"null\",\"int\"],\"default\":null,\"field-id\":140}"
    "]},\"field-id\":2}]}";

static const char ice__list_schema[] =
    "{\"type\":\"record\",\"name\":\"manifest_file\",\"fields\":["
    "{\"name\":\"manifest_path\",\"type\":\"string\",\"field-id\":500},"
    "{\"name\":\"manifest_length\",\"type\":\"long\",\"field-id\":501},"
    "{\"name\":\"partition_spec_id\",\"type\":\"int\",\"field-id\":502},"
    "{\"name\":\"content\",\"type\":\"int\",\"field-id\":517},"
    "{\"name\":\"sequence_number\",\"type\":\"long\",\"field-id\":515},"
    "{\"name\":\"min_sequence_number\",\"type\":\"long\",\"field-id\":516},"
    "{\"name\":\"added_snapshot_id\",\"type\":\"long\",\"field-id\":503},"
    "{\"name\":\"added_files_count\",\"type\":\"int\",\"field-id\":504},"
    "{\"name\":\"existing_files_count\",\"type\":\"int\",\"field-id\":505},"
    "{\"name\":\"deleted_files_count\",\"type\":\"int\",\"field-id\":506},"
    "{\"name\":\"added_rows_count\",\"type\":\"long\",\"field-id\":512},"
    "{\"name\":\"existing_rows_count\",\"type\":\"long\",\"field-id\":513},"
    "{\"name\":\"deleted_rows_count\",\"type\":\"long\",\"field-id\":514},"
    "{\"name\":\"partitions\",\"type\":[\"null\",{\"type\":\"array\",\"items\":{\"type\":\"record\","
    "\"name\":\"r508\",\"fields\":["
    "{\"name\":\"contains_null\",\"type\":\"boolean\",\"field-id\":509},"
    "{\"name\":\"contains_nan\",\"type\":[\"null\",\"boolean\"],\"default\":null,\"field-id\":518},"
    "{\"name\":\"lower_bound\",\"type\":[\"null\",\"bytes\"],\"default\":null,\"field-id\":510},"
    "{\"name\":\"upper_bound\",\"type\":[\"null\",\"bytes\"],\"default\":null,\"field-id\":511}]},"
    "\"element-id\":508}],\"default\":null,\"field-id\":507}]}";
/* clang-format on */

/* ---- setting and getting fields of avro-c generic values ------------------------------- */

static int field(avro_value_t *rec, const char *name, avro_value_t *out)
{
    return avro_value_get_by_name(rec, name, out, NULL);
}

static int set_int(avro_value_t *rec, const char *name, int32_t v)
{
    avro_value_t f;
    return field(rec, name, &f) || avro_value_set_int(&f, v);
}

static int set_long(avro_value_t *rec, const char *name, int64_t v)
{
    avro_value_t f;
    return field(rec, name, &f) || avro_value_set_long(&f, v);
}

/* A ["null", T] union: its T branch into *out, or null when !present (1 then). */
static int set_union(avro_value_t *rec, const char *name, int present, avro_value_t *out)
{
    avro_value_t u, b;
    if (field(rec, name, &u) || avro_value_set_branch(&u, present ? 1 : 0, &b)) return -1;
    if (!present) return avro_value_set_null(&b) ? -1 : 1;
    *out = b;
    return 0;
}

static int set_opt_long(avro_value_t *rec, const char *name, int present, int64_t v)
{
    avro_value_t b;
    int rc = set_union(rec, name, present, &b);
    return rc < 0 ? -1 : rc == 1 ? 0 : avro_value_set_long(&b, v);
}

/* Appends {key, value} to the array a; value_long or value bytes. */
static int kv_append(avro_value_t *a, int key, int64_t value_long, const buf *bytes)
{
    avro_value_t e, k, v;
    if (avro_value_append(a, &e, NULL) || field(&e, "key", &k) || avro_value_set_int(&k, key) ||
        field(&e, "value", &v))
        return -1;
    if (bytes) return avro_value_set_bytes(&v, bytes->p ? bytes->p : "", bytes->len) ? -1 : 0;
    return avro_value_set_long(&v, value_long) ? -1 : 0;
}

enum { KV_SIZE, KV_VALUES, KV_NULLS, KV_LOWER, KV_UPPER };

static int set_kv(avro_value_t *df, const char *name, const ice_file *f, int which)
{
    avro_value_t a;
    int rc = set_union(df, name, f->ncols > 0, &a);
    if (rc) return rc < 0 ? -1 : 0;
    for (size_t i = 0; i < f->ncols; i++) {
        const ice_col_stats *c = &f->cols[i];
        int id = c->field_id;
        switch (which) {
        case KV_SIZE: rc = kv_append(&a, id, c->column_size, NULL); break;
        case KV_VALUES: rc = kv_append(&a, id, c->value_count, NULL); break;
        case KV_NULLS: rc = c->null_count < 0 ? 0 : kv_append(&a, id, c->null_count, NULL); break;
        case KV_LOWER: rc = c->has_bounds & 1 ? kv_append(&a, id, 0, &c->lower) : 0; break;
        default: rc = c->has_bounds & 2 ? kv_append(&a, id, 0, &c->upper) : 0; break;
        }
        if (rc) return -1;
    }
    return 0;
}

static int get_long(avro_value_t *rec, const char *name, int64_t *v)
{
    avro_value_t f;
    return field(rec, name, &f) || avro_value_get_long(&f, v);
}

static int get_int(avro_value_t *rec, const char *name, int64_t *v)
{
    avro_value_t f;
    int32_t i;
    if (field(rec, name, &f) || avro_value_get_int(&f, &i)) return -1;
    *v = i;
    return 0;
}

/* A ["null", T] union: 1 and its branch in *out, 0 when null, -1 when not a union. */
static int get_union(avro_value_t *rec, const char *name, avro_value_t *out)
{
    avro_value_t u;
    int d;
    if (field(rec, name, &u) || avro_value_get_discriminant(&u, &d) ||
        avro_value_get_current_branch(&u, out))
        return -1;
    return d == 1 ? 1 : 0;
}

static int get_opt_long(avro_value_t *rec, const char *name, int64_t *v, int *present)
{
    avro_value_t b;
    int rc = get_union(rec, name, &b);
    *present = rc == 1;
    if (rc < 0) return -1;
    return rc == 1 ? avro_value_get_long(&b, v) : 0;
}

/* ---- manifests ----------------------------------------------------------------------- */

void ice__entries_free(ice__entry *e, size_t n)
{
    for (size_t i = 0; e && i < n; i++) ice_file_clear(&e[i].f);
    free(e);
}

void ice__manifests_free(ice__manifest *m, size_t n)
{
    for (size_t i = 0; m && i < n; i++) free(m[i].path);
    free(m);
}

static int fill_entry(avro_value_t *r, const char *location, const ice__entry *e)
{
    const ice_file *f = &e->f;
    int added = e->status == ICE__ADDED;
    avro_value_t df, part, h;
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", location, f->key);
    if (set_int(r, "status", e->status) || set_opt_long(r, "snapshot_id", 1, f->snapshot_id) ||
        set_opt_long(r, "sequence_number", !added, f->seq) ||
        set_opt_long(r, "file_sequence_number", !added, f->seq) || field(r, "data_file", &df))
        return -1;
    if (set_int(&df, "content", 0) || field(&df, "file_path", &h) ||
        avro_value_set_string(&h, path) || field(&df, "file_format", &h) ||
        avro_value_set_string(&h, "PARQUET") || field(&df, "partition", &part) ||
        set_union(&part, "ts_hour", 1, &h) || avro_value_set_int(&h, (int32_t)f->hour) ||
        set_long(&df, "record_count", f->records) ||
        set_long(&df, "file_size_in_bytes", f->bytes) || set_kv(&df, "column_sizes", f, KV_SIZE) ||
        set_kv(&df, "value_counts", f, KV_VALUES) ||
        set_kv(&df, "null_value_counts", f, KV_NULLS) || set_kv(&df, "lower_bounds", f, KV_LOWER) ||
        set_kv(&df, "upper_bounds", f, KV_UPPER) || set_union(&df, "sort_order_id", 1, &h) ||
        avro_value_set_int(&h, 0))
        return -1;
    return 0;
}

/* The counts and the hour range of the manifest's entries into m. */
static void summarise(const ice__entry *e, size_t n, ice__manifest *m)
{
    m->min_seq = INT64_MAX;
    for (size_t i = 0; i < n; i++) {
        const ice_file *f = &e[i].f;
        if (e[i].status == ICE__ADDED) {
            m->added_files++;
            m->added_rows += f->records;
        } else if (e[i].status == ICE__EXISTING) {
            m->existing_files++;
            m->existing_rows += f->records;
        } else {
            m->deleted_files++;
            m->deleted_rows += f->records;
        }
        int64_t seq = e[i].status == ICE__ADDED ? m->seq : f->seq;
        if (e[i].status != ICE__DELETED && seq < m->min_seq) m->min_seq = seq;
        if (!m->has_bounds || f->hour < m->lo) m->lo = f->hour;
        if (!m->has_bounds || f->hour > m->hi) m->hi = f->hour;
        m->has_bounds = 1;
    }
    if (m->min_seq == INT64_MAX) m->min_seq = m->seq;
}

static int put_avro(store *s, const char *key, lake_avro_writer *w, int64_t *length, char *err,
                    size_t errlen)
{
    buf out = BUF_INIT;
    char aerr[256];
    int rc = ICE_OK;
    if (lake_avro_writer_finish(w, &out, aerr, sizeof aerr))
        rc = ice__fail(err, errlen, ICE_ENOMEM, "iceberg: %s: %s", key, aerr);
    else if (store_put(s, key, out.p, out.len, 0, err, errlen))
        rc = ICE_EIO;
    *length = (int64_t)out.len;
    buf_free(&out);
    return rc;
}

int ice__manifest_write(store *s, const char *location, const char *key, const ice__entry *e,
                        size_t n, ice__manifest *m, char *err, size_t errlen)
{
    json_t *schema = ice__schema_json(), *spec = ice__spec_fields_json();
    char *schema_s = schema ? json_dumps(schema, JSON_COMPACT) : NULL;
    char *spec_s = spec ? json_dumps(spec, JSON_COMPACT) : NULL;
    json_decref(schema);
    json_decref(spec);
    lake_avro_writer *w = NULL;
    char aerr[256];
    int rc = ICE_ENOMEM;
    if (!schema_s || !spec_s) {
        ice__fail(err, errlen, rc, "iceberg: out of memory");
        goto done;
    }
    const char *keys[] = {"schema",         "schema-id", "partition-spec", "partition-spec-id",
                          "format-version", "content"};
    const char *values[] = {schema_s, "0", spec_s, "0", "2", "data"};
    if (lake_avro_writer_new(ice__entry_schema, keys, values, 6, &w, aerr, sizeof aerr)) {
        rc = ice__fail(err, errlen, ICE_EINVAL, "iceberg: manifest %s: %s", key, aerr);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (fill_entry(lake_avro_writer_record(w), location, &e[i])) {
            rc = ice__fail(err, errlen, ICE_EINVAL,
                           "iceberg: manifest %s: cannot fill the entry "
                           "of %s: %s",
                           key, e[i].f.key, avro_strerror());
            goto done;
        }
        if (lake_avro_writer_append(w, aerr, sizeof aerr)) {
            rc = ice__fail(err, errlen, ICE_EINVAL, "iceberg: manifest %s: %s", key, aerr);
            goto done;
        }
    }
    rc = put_avro(s, key, w, &m->length, err, errlen);
    if (rc) goto done;
    summarise(e, n, m);
    if (!(m->path = malloc(strlen(location) + strlen(key) + 2))) {
        rc = ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
        goto done;
    }
    sprintf(m->path, "%s/%s", location, key);
done:
    lake_avro_writer_free(w);
    free(schema_s);
    free(spec_s);
    return rc;
}

/* Reads one map of the data file into the stats of f, adding columns as met. */
static int read_kv(avro_value_t *df, const char *name, ice_file *f, int which)
{
    avro_value_t a, e, k, v;
    int rc = get_union(df, name, &a);
    if (rc <= 0) return rc;
    size_t n;
    if (avro_value_get_size(&a, &n)) return -1;
    for (size_t i = 0; i < n; i++) {
        int32_t key;
        if (avro_value_get_by_index(&a, i, &e, NULL) || field(&e, "key", &k) ||
            avro_value_get_int(&k, &key) || field(&e, "value", &v))
            return -1;
        ice_col_stats *c = NULL;
        for (size_t j = 0; j < f->ncols && !c; j++)
            if (f->cols[j].field_id == key) c = &f->cols[j];
        if (!c) {
            ice_col_stats *cols = realloc(f->cols, (f->ncols + 1) * sizeof *cols);
            if (!cols) return -1;
            f->cols = cols;
            c = &cols[f->ncols++];
            memset(c, 0, sizeof *c);
            c->field_id = key;
            c->null_count = -1;
        }
        const void *p;
        size_t len;
        switch (which) {
        case KV_SIZE: rc = avro_value_get_long(&v, &c->column_size); break;
        case KV_VALUES: rc = avro_value_get_long(&v, &c->value_count); break;
        case KV_NULLS: rc = avro_value_get_long(&v, &c->null_count); break;
        default:
            rc = avro_value_get_bytes(&v, &p, &len);
            if (!rc) rc = buf_append(which == KV_LOWER ? &c->lower : &c->upper, p, len);
            c->has_bounds |= which == KV_LOWER ? 1 : 2;
            break;
        }
        if (rc) return -1;
    }
    return 0;
}

/* Reads one entry into out: 0, or 1 when its hour lies outside [lo, hi] (out is left
 * without key or stats), -1 when it is not an entry of this table. */
static int read_entry(avro_value_t *r, const char *location, const ice__manifest *m, int64_t lo,
                      int64_t hi, ice__entry *out)
{
    avro_value_t df, part, h, hv;
    int64_t v, status;
    int present;
    const char *path;
    size_t plen;
    ice_file *f = &out->f;
    if (get_int(r, "status", &status) || status < 0 || status > 2) return -1;
    out->status = (int)status;
    if (get_opt_long(r, "snapshot_id", &v, &present)) return -1;
    f->snapshot_id = present ? v : m->added_snapshot_id;
    if (get_opt_long(r, "sequence_number", &v, &present)) return -1;
    if (!present && status != ICE__ADDED) return -1; /* the spec: only ADDED inherits */
    f->seq = present ? v : m->seq;
    int32_t hour;
    if (field(r, "data_file", &df) || field(&df, "partition", &part) ||
        get_union(&part, "ts_hour", &hv) != 1 || avro_value_get_int(&hv, &hour))
        return -1;
    f->hour = hour;
    if (hour < lo || hour > hi) return 1; /* the stats of a file not asked for are not copied */
    if (field(&df, "file_path", &h) || avro_value_get_string(&h, &path, &plen)) return -1;
    const char *key = ice__key_of(location, path);
    if (!key || !(f->key = strdup(key))) return -1;
    if (get_long(&df, "record_count", &f->records) ||
        get_long(&df, "file_size_in_bytes", &f->bytes))
        return -1;
    if (read_kv(&df, "column_sizes", f, KV_SIZE) || read_kv(&df, "value_counts", f, KV_VALUES) ||
        read_kv(&df, "null_value_counts", f, KV_NULLS) ||
        read_kv(&df, "lower_bounds", f, KV_LOWER) || read_kv(&df, "upper_bounds", f, KV_UPPER))
        return -1;
    return 0;
}

/* Gets the object at the absolute location path into b. */
static int get_abs(store *s, const char *location, const char *path, buf *b, char *err,
                   size_t errlen)
{
    const char *key = ice__key_of(location, path);
    if (!key)
        return ice__fail(err, errlen, ICE_EFORMAT, "iceberg: %s is outside the table at %s", path,
                         location);
    return store_get(s, key, 0, 0, b, err, errlen) ? ICE_EIO : ICE_OK;
}

int ice__manifest_read(store *s, const char *location, const ice__manifest *m, ice__entry **out,
                       size_t *n, char *err, size_t errlen)
{
    return ice__manifest_read_hours(s, location, m, INT64_MIN, INT64_MAX, out, n, err, errlen);
}

int ice__manifest_read_hours(store *s, const char *location, const ice__manifest *m, int64_t lo,
                             int64_t hi, ice__entry **out, size_t *n, char *err, size_t errlen)
{
    buf b = BUF_INIT;
    lake_avro_reader *r = NULL;
    ice__entry *e = NULL;
    size_t ne = 0, cap = 0;
    char aerr[256];
    int rc = get_abs(s, location, m->path, &b, err, errlen);
    if (rc) goto done;
    if (lake_avro_reader_new(b.p, b.len, &r, aerr, sizeof aerr)) {
        rc = ice__fail(err, errlen, ICE_EFORMAT, "iceberg: manifest %s: %s", m->path, aerr);
        goto done;
    }
    avro_value_t *rec;
    int more;
    while ((more = lake_avro_reader_next(r, &rec, aerr, sizeof aerr)) == 1) {
        if (ne == cap) {
            cap = cap ? cap * 2 : 16;
            ice__entry *ne2 = realloc(e, cap * sizeof *e);
            if (!ne2) {
                rc = ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
                goto done;
            }
            e = ne2;
        }
        memset(&e[ne], 0, sizeof e[ne]);
        ne++;
        int got = read_entry(rec, location, m, lo, hi, &e[ne - 1]);
        if (got == 1) {
            ne--;
            continue;
        }
        if (got) {
            rc = ice__fail(err, errlen, ICE_EFORMAT,
                           "iceberg: manifest %s: entry %zu is not a v2 data file entry of this "
                           "table",
                           m->path, ne);
            goto done;
        }
    }
    if (more < 0)
        rc = ice__fail(err, errlen, ICE_EFORMAT, "iceberg: manifest %s: %s", m->path, aerr);
done:
    lake_avro_reader_free(r);
    buf_free(&b);
    if (rc) {
        ice__entries_free(e, ne);
        return rc;
    }
    *out = e;
    *n = ne;
    return ICE_OK;
}

/* ---- manifest lists -------------------------------------------------------------------- */

static int put_hour(avro_value_t *rec, const char *name, int64_t hour)
{
    avro_value_t b;
    unsigned char le[4];
    uint32_t u = (uint32_t)(int32_t)hour;
    for (int i = 0; i < 4; i++) le[i] = (unsigned char)(u >> (8 * i));
    return set_union(rec, name, 1, &b) || avro_value_set_bytes(&b, le, 4);
}

static int fill_manifest(avro_value_t *r, const ice__manifest *m)
{
    avro_value_t h, a, fs;
    if (field(r, "manifest_path", &h) || avro_value_set_string(&h, m->path) ||
        set_long(r, "manifest_length", m->length) || set_int(r, "partition_spec_id", 0) ||
        set_int(r, "content", 0) || set_long(r, "sequence_number", m->seq) ||
        set_long(r, "min_sequence_number", m->min_seq) ||
        set_long(r, "added_snapshot_id", m->added_snapshot_id) ||
        set_int(r, "added_files_count", (int32_t)m->added_files) ||
        set_int(r, "existing_files_count", (int32_t)m->existing_files) ||
        set_int(r, "deleted_files_count", (int32_t)m->deleted_files) ||
        set_long(r, "added_rows_count", m->added_rows) ||
        set_long(r, "existing_rows_count", m->existing_rows) ||
        set_long(r, "deleted_rows_count", m->deleted_rows) || set_union(r, "partitions", 1, &a) ||
        avro_value_append(&a, &fs, NULL) || field(&fs, "contains_null", &h) ||
        avro_value_set_boolean(&h, 0) || set_union(&fs, "contains_nan", 1, &h) ||
        avro_value_set_boolean(&h, 0))
        return -1;
    if (!m->has_bounds)
        return set_union(&fs, "lower_bound", 0, &h) < 0 || set_union(&fs, "upper_bound", 0, &h) < 0;
    return put_hour(&fs, "lower_bound", m->lo) || put_hour(&fs, "upper_bound", m->hi);
}

int ice__list_write(store *s, const char *key, const ice__manifest *m, size_t n,
                    int64_t snapshot_id, int64_t parent_id, int64_t seq, char *err, size_t errlen)
{
    char sid[24], pid[24], sq[24], aerr[256];
    snprintf(sid, sizeof sid, "%" PRId64, snapshot_id);
    if (parent_id >= 0)
        snprintf(pid, sizeof pid, "%" PRId64, parent_id);
    else
        snprintf(pid, sizeof pid, "null");
    snprintf(sq, sizeof sq, "%" PRId64, seq);
    const char *keys[] = {"snapshot-id", "parent-snapshot-id", "sequence-number", "format-version"};
    const char *values[] = {sid, pid, sq, "2"};
    lake_avro_writer *w = NULL;
    if (lake_avro_writer_new(ice__list_schema, keys, values, 4, &w, aerr, sizeof aerr))
        return ice__fail(err, errlen, ICE_EINVAL, "iceberg: manifest list %s: %s", key, aerr);
    int rc = ICE_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        if (fill_manifest(lake_avro_writer_record(w), &m[i]))
            rc = ice__fail(err, errlen, ICE_EINVAL, "iceberg: manifest list %s: %s: %s", key,
                           m[i].path, avro_strerror());
        else if (lake_avro_writer_append(w, aerr, sizeof aerr))
            rc = ice__fail(err, errlen, ICE_EINVAL, "iceberg: manifest list %s: %s", key, aerr);
    }
    int64_t len;
    if (!rc) rc = put_avro(s, key, w, &len, err, errlen);
    lake_avro_writer_free(w);
    return rc;
}

static int get_hour(avro_value_t *rec, const char *name, int64_t *hour)
{
    avro_value_t b;
    const void *p;
    size_t len;
    if (get_union(rec, name, &b) != 1 || avro_value_get_bytes(&b, &p, &len) || len != 4) return -1;
    const unsigned char *u = p;
    *hour = (int32_t)((uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 |
                      (uint32_t)u[3] << 24);
    return 0;
}

static int read_manifest(avro_value_t *r, ice__manifest *m)
{
    avro_value_t h, a, fs;
    const char *path;
    size_t len, n;
    int64_t content;
    if (field(r, "manifest_path", &h) || avro_value_get_string(&h, &path, &len) ||
        !(m->path = strdup(path)) || get_long(r, "manifest_length", &m->length) ||
        get_int(r, "content", &content) || content != 0 ||
        get_long(r, "sequence_number", &m->seq) ||
        get_long(r, "min_sequence_number", &m->min_seq) ||
        get_long(r, "added_snapshot_id", &m->added_snapshot_id) ||
        get_int(r, "added_files_count", &m->added_files) ||
        get_int(r, "existing_files_count", &m->existing_files) ||
        get_int(r, "deleted_files_count", &m->deleted_files) ||
        get_long(r, "added_rows_count", &m->added_rows) ||
        get_long(r, "existing_rows_count", &m->existing_rows) ||
        get_long(r, "deleted_rows_count", &m->deleted_rows))
        return -1;
    int rc = get_union(r, "partitions", &a);
    if (rc < 0) return -1;
    if (rc == 1 && !avro_value_get_size(&a, &n) && n == 1 &&
        !avro_value_get_by_index(&a, 0, &fs, NULL))
        m->has_bounds =
            !get_hour(&fs, "lower_bound", &m->lo) && !get_hour(&fs, "upper_bound", &m->hi);
    return 0;
}

int ice__list_read(store *s, const char *location, const char *path, ice__manifest **out, size_t *n,
                   char *err, size_t errlen)
{
    buf b = BUF_INIT;
    lake_avro_reader *r = NULL;
    ice__manifest *m = NULL;
    size_t nm = 0, cap = 0;
    char aerr[256];
    int rc = get_abs(s, location, path, &b, err, errlen);
    if (rc) goto done;
    if (lake_avro_reader_new(b.p, b.len, &r, aerr, sizeof aerr)) {
        rc = ice__fail(err, errlen, ICE_EFORMAT, "iceberg: manifest list %s: %s", path, aerr);
        goto done;
    }
    avro_value_t *rec;
    int more;
    while ((more = lake_avro_reader_next(r, &rec, aerr, sizeof aerr)) == 1) {
        if (nm == cap) {
            cap = cap ? cap * 2 : 8;
            ice__manifest *m2 = realloc(m, cap * sizeof *m);
            if (!m2) {
                rc = ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
                goto done;
            }
            m = m2;
        }
        memset(&m[nm], 0, sizeof m[nm]);
        nm++;
        if (read_manifest(rec, &m[nm - 1])) {
            rc = ice__fail(err, errlen, ICE_EFORMAT,
                           "iceberg: manifest list %s: entry %zu is not a v2 data manifest", path,
                           nm);
            goto done;
        }
    }
    if (more < 0)
        rc = ice__fail(err, errlen, ICE_EFORMAT, "iceberg: manifest list %s: %s", path, aerr);
done:
    lake_avro_reader_free(r);
    buf_free(&b);
    if (rc) {
        ice__manifests_free(m, nm);
        return rc;
    }
    *out = m;
    *n = nm;
    return ICE_OK;
}
