/*
 * compact_hour.h - one hour partition's live files into Parquet files, in
 * memory bounded by a chunk, whatever the size of the hour or of its events.
 *
 * Used by compaction (compact.c), which lists the partition, makes its files
 * local, puts what this writes into the lake and writes the manifest. This
 * module only reads local files and writes into its directory; it never
 * touches the lake.
 *
 * What comes out: Parquet files of the hour's live rows in layout 2, the
 * Iceberg table's columns (QUERY_FILE_COLUMNS with their field ids, query.h),
 * each in QUERY_COMPACT_ORDER, every id in exactly one of
 * them (the row with the earliest receivedAt; rows without an id are all
 * kept). Compacted inputs of at least half a chunk stay as they are (kept)
 * unless a duplicate in them loses to another file's row.
 */
#ifndef EVENTS_COMPACT_HOUR_H
#define EVENTS_COMPACT_HOUR_H

#include "layout.h"

#include <duckdb.h>
#include <stddef.h>
#include <stdint.h>

typedef struct compact_hour_in {
    const char *path; /* local, readable by DuckDB */
    uint64_t size;    /* bytes of the file */
    int parquet;      /* else JSON Lines */
    /* set by compact_hour_run */
    int kept;      /* a compacted file that stays live as it is */
    uint64_t rows; /* of a kept file */
} compact_hour_in;

typedef struct compact_hour_out {
    char uuid[LAKE_UUID_LEN + 1]; /* its name in the lake: {uuid}.parquet */
    char *path;                   /* in the job's directory (malloc'd) */
    /* its rollups, one per kind (layout.h, docs/lake.md), in the job's directory (malloc'd), or
     * NULL: none, as when a row it would sum up lies outside the hour */
    char *rollup[LAKE_ROLLUP_KINDS];
    uint64_t rows, bytes;
} compact_hour_out;

typedef struct compact_hour_result {
    compact_hour_out *out; /* the new files, in the order written */
    size_t nout;
    uint64_t rows;       /* live rows after: the new files' and the kept files' */
    uint64_t statements; /* DuckDB statements that wrote a file */
} compact_hour_result;

/*
 * Called before each statement that reads events (the caller renews its
 * lease there). Nonzero stops the work; the callback has set err.
 */
typedef int (*compact_hour_tick_fn)(void *ud, char *err, size_t errlen);

typedef struct compact_hour_job {
    duckdb_connection con; /* the compaction's own DuckDB, on this thread */
    const char *dir;       /* where pieces and new files are written; must exist */
    uint64_t chunk_bytes;  /* input of one statement at most (a longer line goes alone) */
    uint64_t key_rows;     /* ids one statement groups at most, to find duplicates across files */
    compact_hour_in *in;   /* the partition's live files, in the lake's order */
    size_t nin;
    int layout;   /* the columns of its compacted inputs (partition.h); of layout 1, none is kept */
    int keep_all; /* every compacted input of layout 2 is kept, however small (an append) */
    int64_t hour; /* the partition's hour: a rollup sums up only events of that hour */
    compact_hour_tick_fn tick;
    void *ud;
} compact_hour_job;

/*
 * Writes the hour's new files into job->dir and fills res (free it with
 * compact_hour_result_free; the files stay for the caller to move or unlink).
 * 0, or -1 with a message in err: then every file it wrote is gone again.
 */
int compact_hour_run(const compact_hour_job *job, compact_hour_result *res, char *err,
                     size_t errlen);

/* Frees res's memory (not its files). */
void compact_hour_result_free(compact_hour_result *res);

#endif
