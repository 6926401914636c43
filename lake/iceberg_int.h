/*
 * iceberg_int.h - what the files of the Iceberg module share (not public):
 * the schema table (iceberg.c), manifests and manifest lists in Avro
 * (iceberg_manifest.c), used by commits, listing and expiry (iceberg_commit.c)
 * and by the Parquet statistics (iceberg_stats.c).
 */
#ifndef EVENTS_ICEBERG_INT_H
#define EVENTS_ICEBERG_INT_H

#include "iceberg.h"

#include <stdarg.h>

typedef enum ice__type { ICE__STRING, ICE__TSTZ, ICE__DOUBLE, ICE__BOOL, ICE__STRUCT } ice__type;

/* A field of the table's schema; parent is the id of the enclosing struct, 0 at the top. */
typedef struct ice__field {
    int id;
    const char *name;
    ice__type type;
    int parent;
} ice__field;

#define ICE__TS_FIELD    3
#define ICE__PART_FIELD  1000
#define ICE__LAST_COLUMN 19

/* The field of that id, or NULL. */
const ice__field *ice__field_by_id(int id);

/* The schema (schema-id 0), the partition spec's fields array and the spec, as
 * Iceberg's JSON (new references; NULL when memory runs out). */
json_t *ice__schema_json(void);
json_t *ice__spec_fields_json(void);
/* The name mapping (property schema.name-mapping.default) as JSON text; free() it. */
char *ice__name_mapping(void);

struct ice_table {
    json_t *meta;
    int64_t version;
    char *location;      /* the table's location, no trailing slash */
    char *metadata_file; /* the absolute location this version was read from */
    int64_t snapshot_id; /* current, -1 when none */
};

/* Takes meta (also on failure) and makes the table of it. */
int ice__table_new(json_t *meta, int64_t version, const char *metadata_file, ice_table **out,
                   char *err, size_t errlen);

/* The snapshot object of id in t's metadata, or NULL. */
json_t *ice__snapshot(const ice_table *t, int64_t id);

/* One manifest as the manifest list records it. */
typedef struct ice__manifest {
    char *path; /* absolute location */
    int64_t length, seq, min_seq, added_snapshot_id;
    int64_t added_files, existing_files, deleted_files;
    int64_t added_rows, existing_rows, deleted_rows;
    int has_bounds; /* the partition summary's ts_hour range */
    int64_t lo, hi;
} ice__manifest;

void ice__manifests_free(ice__manifest *m, size_t n);

enum { ICE__EXISTING = 0, ICE__ADDED = 1, ICE__DELETED = 2 };

/* One manifest entry: f.snapshot_id and f.seq are the values after inheritance
 * when read; when written, an ADDED entry writes f.snapshot_id and null sequence
 * numbers, the others both explicitly. */
typedef struct ice__entry {
    int status;
    ice_file f;
} ice__entry;

void ice__entries_free(ice__entry *e, size_t n);

/* Writes the manifest of the n entries at key (absolute location location/key) and
 * fills m: path, length, counts, bounds; seq, min_seq and added_snapshot_id are the
 * caller's. */
int ice__manifest_write(store *s, const char *location, const char *key, const ice__entry *e,
                        size_t n, ice__manifest *m, char *err, size_t errlen);

/* Reads the entries of manifest m (inheriting its snapshot id and sequence number). */
int ice__manifest_read(store *s, const char *location, const ice__manifest *m, ice__entry **out,
                       size_t *n, char *err, size_t errlen);

/* The same, only the entries whose hour lies in [lo, hi] (the others are not copied). */
int ice__manifest_read_hours(store *s, const char *location, const ice__manifest *m, int64_t lo,
                             int64_t hi, ice__entry **out, size_t *n, char *err, size_t errlen);

/* Writes the manifest list of the snapshot at key. parent_id -1: none. */
int ice__list_write(store *s, const char *key, const ice__manifest *m, size_t n,
                    int64_t snapshot_id, int64_t parent_id, int64_t seq, char *err, size_t errlen);

/* Reads the manifest list at the absolute location path. */
int ice__list_read(store *s, const char *location, const char *path, ice__manifest **out, size_t *n,
                   char *err, size_t errlen);

/* Proposes m (taken) as the version after base; on success *out (if out) is it.
 * *outcome: 0 not made, 1 made, -1 unknown (the catalog failed: the answer may be lost). */
int ice__swap(const ice_catalog *cat, const ice_table *base, json_t *m, const char *location,
              ice_table **out, int *outcome, char *err, size_t errlen);

/* Adds base's metadata file to m's metadata-log, keeping the last ICE_KEEP_VERSIONS. */
int ice__log_base(json_t *m, const ice_table *base);

/* The manifests of snapshot_id of t (none when snapshot_id < 0). */
int ice__snapshot_manifests(store *s, const ice_table *t, int64_t snapshot_id, ice__manifest **ms,
                            size_t *n, char *err, size_t errlen);

/* The store key of an absolute location inside the table (a pointer into abs), or NULL. */
const char *ice__key_of(const char *location, const char *abs);

/* N of the key metadata/v{N}.metadata.json, 0 for any other key. */
int64_t ice__version_of_key(const char *key);

/* snprintf into err, returns code. */
int ice__fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
