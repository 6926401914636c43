/*
 * iceberg.h - the lake's compacted Parquet files as an Apache Iceberg
 * format-v2 table (metadata only).
 *
 * The table lives in the lake's store: its location is store->url
 * ("file:///abs/dir" or "s3://bucket/prefix"), its data files are the lake's
 * compacted Parquet files (keys such as "events/2026/11/25/10/x.parquet"), and
 * its metadata is under the key prefix "metadata/":
 *
 *   metadata/v{N}.metadata.json        table metadata, N = 1, 2, …
 *   metadata/version-hint.text          N of the latest version (may lag)
 *   metadata/snap-{id}-{uuid}.avro      one manifest list per snapshot
 *   metadata/{uuid}-m{k}.avro           manifests
 *
 * Every location written into metadata and manifests is absolute: location "/" key.
 * The schema (ids 1-19, ts partitioned by hour into "ts_hour", field 1000) is
 * one table in iceberg.c; ice_duckdb_field_ids gives the FIELD_IDS clause with
 * which DuckDB writes data files of the same ids.
 *
 * The table keeps at most one manifest per UTC day of ts_hour. A change
 * (append, replace, delete) is one new snapshot: for each day it touches (days
 * of added and of removed files) a new manifest of that day's entries (the
 * day's live files EXISTING with their original snapshot id and sequence
 * numbers, the removed ones DELETED, the added ones ADDED with sequence numbers
 * null, inherited), the other days' manifests reused as they are, a new manifest
 * list with each manifest's partition summary (the range of ts_hour), then a new
 * metadata version committed through a catalog (ice_catalog_ops). A base of
 * several manifests a day, or of manifests spanning days, is folded into
 * per-day manifests as its days are touched. The first catalog keeps
 * the versions in the store itself, committed with the store's conditional put;
 * a REST catalog can be a second implementation of the same two operations.
 *
 * Use, by a compaction that has put its Parquet files into the store:
 *
 *     ice_catalog cat = ice_store_catalog(s);
 *     ice_file f = {.key = strdup("events/2026/11/25/10/x.parquet"),
 *                   .hour = ice_hour_of_us(ts_us)};
 *     rc = ice_stats_from_parquet(con, local_path_of_x, &f, err, sizeof err);
 *     ice_change c = {.operation = "replace", .add = &f, .nadd = 1,
 *                     .remove = replaced_keys, .nremove = n};
 *     rc = ice_commit_retry(&cat, s, &c, now_ms, 5, NULL, err, sizeof err);
 *     ice_file_clear(&f);
 *
 * (ICE_ESTALE there: another compactor replaced one of replaced_keys first, and
 * this change is not in the table); by a query: cat.ops->load(cat.cat, &t, …),
 * then ice_files(s, t, first_hour, last_hour, &files, &n, …).
 *
 * Errors: every function returns ICE_OK (0) or a negative ICE_E* code and writes
 * the reason into err (errlen bytes). Nothing here prints or exits; the only
 * static state is the FIELD_IDS text, built once. Handles are used by one thread
 * at a time.
 */
#ifndef EVENTS_ICEBERG_H
#define EVENTS_ICEBERG_H

#include "buf.h"
#include "store.h"

#include <duckdb.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

enum {
    ICE_OK = 0,
    ICE_EIO = -1,       /* the store failed (reading or writing metadata) */
    ICE_ENOTABLE = -2,  /* load: there is no table (no metadata version) */
    ICE_ECONFLICT = -3, /* commit: the base is no longer the current version */
    ICE_ESTALE = -4,    /* commit: a file to remove is not live (a racing writer replaced it) */
    ICE_EFORMAT = -5,   /* metadata, a manifest or a Parquet footer that cannot be read */
    ICE_EINVAL = -6,    /* a change or an argument that makes no sense */
    ICE_ENOMEM = -7
};

/* "ICE_ECONFLICT" and so on, for messages and tests. */
const char *ice_strerror(int code);

/* Statistics of one leaf column of a data file; bounds in Iceberg's single-value
 * binary serialization (timestamptz, double: 8 bytes little-endian; boolean: 1
 * byte; string: its UTF-8 bytes). has_bounds: ICE_LOWER | ICE_UPPER, which of
 * lower and upper hold a bound. null_count -1: unknown. */
enum { ICE_LOWER = 1, ICE_UPPER = 2 };
typedef struct ice_col_stats {
    int field_id;
    int64_t column_size, value_count, null_count;
    int has_bounds;
    buf lower, upper;
} ice_col_stats;

/* One data file. Filled by the caller (or ice_stats_from_parquet) for a commit;
 * by ice_files when listing, where everything belongs to the caller
 * (ice_files_free). */
typedef struct ice_file {
    char *key;    /* the data file's key in the store */
    int64_t hour; /* partition value: hour(ts), hours since the epoch */
    int64_t records, bytes;
    ice_col_stats *cols;
    size_t ncols;
    int64_t snapshot_id, seq; /* listed: the snapshot that added it, its data sequence number */
} ice_file;

/* Frees what f holds (key, stats) and zeroes it; f itself is the caller's. */
void ice_file_clear(ice_file *f);
void ice_files_free(ice_file *files, size_t n);

/* The hour partition of a timestamp in microseconds since the epoch (floor). */
int64_t ice_hour_of_us(int64_t us);

/*
 * Fills records, bytes and the column statistics of the Parquet file at
 * local_path from its footer, through DuckDB's parquet_metadata(),
 * parquet_file_metadata() and parquet_schema() on con: one ice_col_stats per leaf
 * column with a field id of the table's schema (do.id and the like included),
 * sizes and counts summed over row groups, bounds the min/max over row groups
 * (strings: the lower bound cut to 16 characters, no upper bound when longer).
 * Leaves key, hour and the listing fields alone. On error f's stats are cleared.
 */
int ice_stats_from_parquet(duckdb_connection con, const char *local_path, ice_file *f, char *err,
                           size_t errlen);

/*
 * The FIELD_IDS option of DuckDB's COPY for the table's schema, built from the
 * same table as the metadata: "FIELD_IDS {id: 1, type: 2, …, \"do\": {__duckdb_field_id:
 * 5, id: 6, …}, …}". A static string.
 */
const char *ice_duckdb_field_ids(void);

/* ---- table metadata ---------------------------------------------------------------- */

/* One parsed metadata version, immutable; ice_table_free. */
typedef struct ice_table ice_table;

void ice_table_free(ice_table *t);
int64_t ice_table_version(const ice_table *t);     /* N of v{N}.metadata.json */
int64_t ice_table_snapshot_id(const ice_table *t); /* the current snapshot, -1 when none */
const char *ice_table_location(const ice_table *t);
/* The metadata document itself (read only; lives as long as t). */
const json_t *ice_table_json(const ice_table *t);

/* ---- catalogs ---------------------------------------------------------------------- */

typedef struct ice_catalog_ops {
    /* The current version into *out (the caller frees it); ICE_ENOTABLE when none. */
    int (*load)(void *cat, ice_table **out, char *err, size_t errlen);
    /* Makes metadata_json version new_version, if base (NULL: no table yet) is still
     * the current version; ICE_ECONFLICT when it is not. */
    int (*swap)(void *cat, const ice_table *base, int64_t new_version, const char *metadata_json,
                size_t len, char *err, size_t errlen);
} ice_catalog_ops;

typedef struct ice_catalog {
    const ice_catalog_ops *ops;
    void *cat;
} ice_catalog;

/*
 * The catalog of metadata files in the store itself; cat is the store. load reads
 * version-hint.text, then probes v{N+1}, v{N+2}, … until one is absent (the hint
 * may lag); a missing or garbled hint: the largest N listed under metadata/.
 * swap puts metadata/v{N+1}.metadata.json with STORE_IF_ABSENT (taken: ICE_ECONFLICT),
 * then version-hint.text plainly (a failure there is not an error: load probes).
 */
extern const ice_catalog_ops ice_store_catalog_ops;

static inline ice_catalog ice_store_catalog(store *s)
{
    ice_catalog c = {&ice_store_catalog_ops, s};
    return c;
}

/* ---- changes ------------------------------------------------------------------------ */

typedef struct ice_change {
    const char *operation; /* "append", "replace" (adds and removes the same rows), "delete" */
    const ice_file *add;
    size_t nadd;
    const char *const *remove; /* keys of live data files to remove */
    size_t nremove;
    /* When remove_hours_known, every removed file's hour lies in [remove_lo, remove_hi]
     * and only the manifests whose partition summary meets that range are read to find
     * them; otherwise every manifest with live files is. */
    int remove_hours_known;
    int64_t remove_lo, remove_hi;
    const char *const *summary_keys, *const *summary_values; /* extra snapshot summary */
    size_t nsummary;
} ice_change;

/*
 * Applies the change on base (NULL: creates the table, and the change is the
 * first snapshot of v1) and commits the result through cat, writing manifests
 * and the manifest list into s. now_ms stamps the snapshot and the version.
 * On success *out (if out) is the new version. ICE_ECONFLICT: base is no longer
 * current; what this attempt wrote has been deleted, reload and call again.
 * ICE_ESTALE: a key of remove is not live in base (nothing was written).
 * ICE_EIO from the catalog's swap: the version may have been made (an answer
 * lost), so the manifests it names are left in place; reload to know.
 */
int ice_commit(const ice_catalog *cat, store *s, const ice_table *base, const ice_change *c,
               int64_t now_ms, ice_table **out, char *err, size_t errlen);

/* load, then ice_commit, until one wins or attempts are spent (ICE_ECONFLICT then). */
int ice_commit_retry(const ice_catalog *cat, store *s, const ice_change *c, int64_t now_ms,
                     int attempts, ice_table **out, char *err, size_t errlen);

/*
 * The live data files of t's current snapshot whose hour lies in [lo, hi]
 * (INT64_MIN, INT64_MAX: all), sorted by key, into *out (ice_files_free); none
 * without a snapshot. Manifests whose partition summary lies outside the range
 * are not read.
 */
int ice_files(store *s, const ice_table *t, int64_t lo, int64_t hi, ice_file **out, size_t *n,
              char *err, size_t errlen);

/* The same for any snapshot t keeps (snapshot_id; -1: none, so no files). */
int ice_snapshot_files(store *s, const ice_table *t, int64_t snapshot_id, int64_t lo, int64_t hi,
                       ice_file **out, size_t *n, char *err, size_t errlen);

/* Metadata versions an expiry keeps besides the new one (Iceberg's
 * write.metadata.previous-versions-max, also the metadata-log's length). */
#define ICE_KEEP_VERSIONS 8

/*
 * Expires snapshots: commits a new version of base that keeps the current
 * snapshot and every snapshot at or after older_than_ms, and returns in *keys
 * (*nkeys of them; ice_keys_free) what no kept snapshot names any more, for the
 * caller to delete: data files, manifests, manifest lists, and the metadata
 * versions older than the ICE_KEEP_VERSIONS before the new one. Conflicts as ice_commit.
 */
int ice_expire(const ice_catalog *cat, store *s, const ice_table *base, int64_t older_than_ms,
               int64_t now_ms, ice_table **out, char ***keys, size_t *nkeys, char *err,
               size_t errlen);

void ice_keys_free(char **keys, size_t n);

#endif
