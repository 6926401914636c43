/*
 * partition.h - the live files of the lake's hour partitions.
 *
 * An hour partition holds raw segments ({uuid}.jsonl, written by the servers),
 * compacted files ({uuid}.parquet) and manifests (_manifest-{seq}.json,
 * written by compaction). The manifest with the highest seq decides:
 *
 *   live = the parquet files it names
 *        + every jsonl file it does not name as replaced
 *
 * A partition without a manifest has only its jsonl files live (a parquet
 * file there is the leftover of a compaction that stopped before its
 * manifest). Compaction writes a new parquet file, then the next manifest
 * (a conditional put: two compactors cannot both win a seq), and deletes the
 * files it replaced only once they have been dead longer than any query can
 * run, so a reader that listed the partition under an older manifest still
 * finds every file it was told about. Every event is thus in exactly one live
 * file at every instant, also when compaction stops midway.
 */
#ifndef EVENTS_PARTITION_H
#define EVENTS_PARTITION_H

#include "layout.h"
#include "store.h"
#include "table.h"

#include <jansson.h>
#include <stdint.h>

/*
 * The columns of a compacted file (docs/lake.md, "Compacted files"): layout 1, the first
 * one, had derived do_id, do_name, do_class and do_colo and the whole event as `event`,
 * names an event's own members can have; layout 2 is the Iceberg table's, with the whole
 * event as `_events_json` (a reserved name) and Iceberg's field ids. A manifest's "version"
 * says which its files have (1: layout 1); a compaction of an hour whose files have layout 1
 * writes them all again.
 */
enum { LAKE_LAYOUT_1 = 1, LAKE_LAYOUT_2 = 2 };

typedef struct lake_manifest {
    uint64_t seq;
    int64_t created_ms;
    uint64_t rows;
    int layout;       /* the columns of its parquet files: LAKE_LAYOUT_1 or LAKE_LAYOUT_2 */
    json_t *doc;      /* the whole manifest */
    json_t *parquet;  /* array of file names (in doc) */
    json_t *replaced; /* object: file name -> ms when it stopped being live (in doc) */
} lake_manifest;

typedef struct lake_part_file {
    char *key;
    const char *name; /* in key, after the hour prefix */
    uint64_t size;
    int64_t mtime_ms;
    int parquet; /* else jsonl */
    int live;
    unsigned rollups; /* a compacted file's rollups listed too: bit k for kind k (layout.h) */
    uint64_t rollup_size[LAKE_ROLLUP_KINDS];
} lake_part_file;

/* A rollup listed in the partition; one whose file was not listed (an orphan) is swept. */
typedef struct lake_part_rollup {
    char *key;
    uint64_t size;
    int64_t mtime_ms;
    int kind;   /* LAKE_ROLLUP_RPC, ... (layout.h) */
    int orphan; /* no compacted file of its name was listed */
} lake_part_rollup;

typedef struct lake_partition {
    int64_t hour;
    lake_part_file *f;
    size_t n, cap;
    lake_part_rollup *rollups; /* the rollups listed, matched with their files when flushed */
    size_t nrollups, caprollups;
    uint64_t nmanifests;  /* manifests listed (the latest is in m) */
    char **old_manifests; /* keys of the manifests before the latest */
    size_t nold;
    int has_manifest; /* read by a manifest (a lake without a table) */
    lake_manifest m;
    const lake_live *live; /* read by the table (table.h), which then decides alone */
} lake_partition;

/*
 * Called for each partition, in hour order, with the live flags set. Return
 * nonzero to stop (lake_partitions_list then returns that value).
 */
typedef int (*lake_partition_fn)(lake_partition *p, void *ud);

/*
 * Lists the partitions under prefix (LAKE_EVENTS_PREFIX, a day's or an hour's
 * prefix). With a table (live->lt->t set; live holds its files of at least the
 * hours listed), the table decides which files are live and manifests are
 * ignored; without one, each hour's latest manifest does. 0, the callback's
 * nonzero value, or -1 with a message in err.
 */
int lake_partitions_list(store *s, const lake_live *live, const char *prefix, lake_partition_fn fn,
                         void *ud, char *err, size_t errlen);

/* Parses a manifest's text. 0, or -1 with a message in err. */
int lake_manifest_parse(const char *text, size_t len, uint64_t seq, lake_manifest *m, char *err,
                        size_t errlen);
void lake_manifest_free(lake_manifest *m);

/* When the file stopped being live under m, or -1 if m does not replace it. */
int64_t lake_manifest_replaced_at(const lake_manifest *m, const char *name);

#endif
