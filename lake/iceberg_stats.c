/*
 * iceberg_stats.c - a data file's Iceberg metrics from its Parquet footer, read
 * through DuckDB (iceberg.h: ice_stats_from_parquet).
 *
 * parquet_schema() gives the field id of each leaf column in column order, so the
 * metrics are keyed by the ids the file was written with (the FIELD_IDS clause),
 * never by name. parquet_metadata() has a row per row group and column; sizes and
 * counts are summed, bounds are the min of the minimums and the max of the
 * maximums, taken in SQL with the column's type (DuckDB prints them as text) and
 * serialised here as Iceberg's single-value binary form. A column has bounds only
 * if every row group that is not all null has both.
 */
#include "iceberg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Iceberg's string bounds may be truncated; Java's default is 16 characters. */
#define ICE__STRING_BOUND 16

static int run(duckdb_connection con, const char *sql, duckdb_result *r, const char *path,
               char *err, size_t errlen)
{
    if (duckdb_query(con, sql, r) == DuckDBError) {
        ice__fail(err, errlen, ICE_EFORMAT, "iceberg: %s: %s", path, duckdb_result_error(r));
        duckdb_destroy_result(r);
        return ICE_EFORMAT;
    }
    return ICE_OK;
}

/* sql with every %s replaced by path as a SQL string literal (quotes doubled). */
static char *with_path(const char *sql, const char *path)
{
    buf q = BUF_INIT, lit = BUF_INIT;
    buf_putc(&lit, '\'');
    for (const char *p = path; *p; p++)
        if (*p == '\'' ? buf_puts(&lit, "''") : buf_putc(&lit, *p)) goto fail;
    if (buf_putc(&lit, '\'')) goto fail;
    for (const char *p = sql; *p; p++) {
        int rc = p[0] == '%' && p[1] == 's' ? buf_append(&q, lit.p, lit.len) : buf_putc(&q, *p);
        if (rc) goto fail;
        if (p[0] == '%' && p[1] == 's') p++;
    }
    if (!buf_cstr(&q)) goto fail;
    buf_free(&lit);
    return q.p;
fail:
    buf_free(&q);
    buf_free(&lit);
    return NULL;
}

static int put_le64(buf *b, uint64_t v)
{
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(v >> (8 * i));
    return buf_append(b, le, 8);
}

/* The length of the first n UTF-8 characters of s (all of it if shorter). */
static size_t utf8_prefix(const char *s, size_t n)
{
    size_t i = 0, chars = 0;
    for (; s[i]; i++) {
        if (((unsigned char)s[i] & 0xc0) != 0x80 && chars++ == n) break;
    }
    return i;
}

/* The bounds of column row i of the stats result for a field of type t. */
static int fill_bounds(duckdb_result *r, idx_t i, ice__type t, ice_col_stats *c)
{
    c->has_bounds = 0;
    if (!duckdb_value_boolean(r, 4, i)) return 0;
    if (t == ICE__STRING) {
        char *lo = duckdb_value_varchar(r, 5, i), *hi = duckdb_value_varchar(r, 6, i);
        int rc = !lo || !hi;
        if (!rc) { /* a prefix is a lower bound; a cut upper bound would need incrementing */
            rc = buf_append(&c->lower, lo, utf8_prefix(lo, ICE__STRING_BOUND));
            c->has_bounds = 1;
            if (!rc && hi[utf8_prefix(hi, ICE__STRING_BOUND)] == 0) {
                rc = buf_puts(&c->upper, hi);
                c->has_bounds |= 2;
            }
        }
        duckdb_free(lo);
        duckdb_free(hi);
        return rc ? -1 : 0;
    }
    int col = t == ICE__DOUBLE ? 7 : t == ICE__TSTZ ? 9 : 11;
    if (duckdb_value_is_null(r, col, i) || duckdb_value_is_null(r, col + 1, i)) return 0;
    if (t == ICE__BOOL) {
        char lo = duckdb_value_boolean(r, col, i), hi = duckdb_value_boolean(r, col + 1, i);
        if (buf_putc(&c->lower, lo ? 1 : 0) || buf_putc(&c->upper, hi ? 1 : 0)) return -1;
    } else if (t == ICE__DOUBLE) {
        double lo = duckdb_value_double(r, col, i), hi = duckdb_value_double(r, col + 1, i);
        uint64_t ul, uh;
        memcpy(&ul, &lo, 8);
        memcpy(&uh, &hi, 8);
        if (put_le64(&c->lower, ul) || put_le64(&c->upper, uh)) return -1;
    } else {
        if (put_le64(&c->lower, (uint64_t)duckdb_value_int64(r, col, i)) ||
            put_le64(&c->upper, (uint64_t)duckdb_value_int64(r, col + 1, i)))
            return -1;
    }
    c->has_bounds = 3;
    return 0;
}

static const char ice__stats_sql[] =
    "SELECT column_id, sum(total_compressed_size), sum(num_values),"
    " CASE WHEN count(stats_null_count) = count(*) THEN sum(stats_null_count) END,"
    " count(stats_min_value) > 0 AND count(*) = count(CASE WHEN (stats_min_value IS NOT NULL AND"
    "  stats_max_value IS NOT NULL) OR stats_null_count = num_values THEN 1 END),"
    " min(stats_min_value), max(stats_max_value),"
    " min(TRY_CAST(stats_min_value AS DOUBLE)), max(TRY_CAST(stats_max_value AS DOUBLE)),"
    " epoch_us(min(TRY_CAST(stats_min_value AS TIMESTAMPTZ))),"
    " epoch_us(max(TRY_CAST(stats_max_value AS TIMESTAMPTZ))),"
    " bool_and(TRY_CAST(stats_min_value AS BOOLEAN)), bool_or(TRY_CAST(stats_max_value AS BOOLEAN))"
    " FROM parquet_metadata(%s) GROUP BY column_id ORDER BY column_id";

/* The leaf columns' field ids in column order into ids (at most max), their count in *n. */
static int leaf_ids(duckdb_connection con, const char *path, int *ids, size_t max, size_t *n,
                    char *err, size_t errlen)
{
    char *sql =
        with_path("SELECT field_id FROM parquet_schema(%s) WHERE num_children IS NULL", path);
    if (!sql) return ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
    duckdb_result r;
    int rc = run(con, sql, &r, path, err, errlen);
    free(sql);
    if (rc) return rc;
    *n = duckdb_row_count(&r);
    if (*n > max) *n = max;
    for (idx_t i = 0; i < *n; i++)
        ids[i] = duckdb_value_is_null(&r, 0, i) ? 0 : duckdb_value_int32(&r, 0, i);
    duckdb_destroy_result(&r);
    return ICE_OK;
}

static int file_facts(duckdb_connection con, const char *path, ice_file *f, char *err,
                      size_t errlen)
{
    char *sql = with_path("SELECT num_rows, file_size_bytes FROM parquet_file_metadata(%s)", path);
    if (!sql) return ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
    duckdb_result r;
    int rc = run(con, sql, &r, path, err, errlen);
    free(sql);
    if (rc) return rc;
    if (duckdb_row_count(&r) != 1) {
        duckdb_destroy_result(&r);
        return ice__fail(err, errlen, ICE_EFORMAT, "iceberg: %s: no Parquet footer", path);
    }
    f->records = duckdb_value_int64(&r, 0, 0);
    f->bytes = duckdb_value_int64(&r, 1, 0);
    duckdb_destroy_result(&r);
    return ICE_OK;
}

static void clear_stats(ice_file *f)
{
    for (size_t i = 0; i < f->ncols; i++) {
        buf_free(&f->cols[i].lower);
        buf_free(&f->cols[i].upper);
    }
    free(f->cols);
    f->cols = NULL;
    f->ncols = 0;
}

int ice_stats_from_parquet(duckdb_connection con, const char *local_path, ice_file *f, char *err,
                           size_t errlen)
{
    int ids[64];
    size_t nids = 0;
    clear_stats(f);
    int rc = file_facts(con, local_path, f, err, errlen);
    if (!rc) rc = leaf_ids(con, local_path, ids, 64, &nids, err, errlen);
    if (rc) return rc;
    char *sql = with_path(ice__stats_sql, local_path);
    if (!sql) return ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
    duckdb_result r;
    rc = run(con, sql, &r, local_path, err, errlen);
    free(sql);
    if (rc) return rc;
    idx_t rows = duckdb_row_count(&r);
    if (rows && !(f->cols = calloc(rows, sizeof *f->cols))) {
        duckdb_destroy_result(&r);
        return ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
    }
    for (idx_t i = 0; i < rows && !rc; i++) {
        int64_t col = duckdb_value_int64(&r, 0, i);
        const ice__field *fd = col >= 0 && (size_t)col < nids ? ice__field_by_id(ids[col]) : NULL;
        if (!fd || fd->type == ICE__STRUCT) continue; /* a column outside the schema */
        ice_col_stats *c = &f->cols[f->ncols++];
        c->field_id = fd->id;
        c->column_size = duckdb_value_int64(&r, 1, i);
        c->value_count = duckdb_value_int64(&r, 2, i);
        c->null_count = duckdb_value_is_null(&r, 3, i) ? -1 : duckdb_value_int64(&r, 3, i);
        if (fill_bounds(&r, i, fd->type, c))
            rc = ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
    }
    duckdb_destroy_result(&r);
    if (rc) clear_stats(f);
    return rc;
}
