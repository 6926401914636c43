/*
 * table.h - the lake's one record of which files are live: its Iceberg table
 * (iceberg.h), read the same way by compaction, the query view (and so restore
 * from the lake) and `events table`.
 *
 *   live Parquet  = the data files of the table's current snapshot;
 *   live segments = every .jsonl under events/ that no snapshot the table keeps
 *                   has folded in. A snapshot's summary names, under
 *                   "events.folded", the segments whose events its new files
 *                   hold (a JSON array of keys).
 *
 * A snapshot is expired only after the segments it folded in are deleted, so a
 * segment that still exists and is dead is always named by a kept snapshot.
 * Parquet files in the lake that the current snapshot does not name are not
 * read: an older snapshot's, or a run's that stopped before its commit.
 *
 * A lake without a table (new, or compacted by an earlier version) is read by
 * its per-hour manifests (partition.h) until compaction converts it: one commit
 * takes in every hour's live files, and the manifests are deleted after it.
 *
 * Readers load the table first and list the hours second: a file committed in
 * between is not in the loaded version and is not read; a segment folded in
 * between is still live in it, and is deleted only --compact-retain later.
 */
#ifndef EVENTS_TABLE_H
#define EVENTS_TABLE_H

#include "iceberg.h"
#include "store.h"

#include <stdint.h>

/* Summary property of a snapshot: the keys of the segments it folded in (a JSON array). */
#define LAKE_TABLE_FOLDED "events.folded"

typedef struct lake_folded {
    char *key;
    int64_t at_ms; /* when the snapshot that folded it in was committed */
} lake_folded;

typedef struct lake_table {
    ice_table *t;        /* NULL: the lake has no table */
    lake_folded *folded; /* sorted by key */
    size_t nfolded;
} lake_table;

/* Loads the current version (out->t NULL when there is none). 0, or -1 with err. */
int lake_table_load(store *s, lake_table *out, char *err, size_t errlen);
void lake_table_free(lake_table *lt);

/* When a kept snapshot folded the segment in, or -1: it is not folded in. */
int64_t lake_table_folded_at(const lake_table *lt, const char *key);

/* The table's live data files of the hours [lo, hi], sorted by key. */
typedef struct lake_live {
    const lake_table *lt;
    ice_file *files;
    size_t n;
} lake_live;

/* 0, or -1 with err. With no table, out is empty and lt is kept. */
int lake_live_load(store *s, const lake_table *lt, int64_t lo, int64_t hi, lake_live *out,
                   char *err, size_t errlen);
void lake_live_free(lake_live *l);
/* The file of l with this key, or NULL. */
const ice_file *lake_live_find(const lake_live *l, const char *key);

#endif
