/*
 * compact.h - compaction: the lake's segments into its Iceberg table.
 *
 * Every run commits to the table (table.h, iceberg.h), one snapshot per hour
 * it changes:
 *
 *   - an hour that ended more than after_ms ago and has live segments, or
 *     several small Parquet files, is compacted: new Parquet files of its live
 *     segments and small compacted files (large ones stay as they are), each
 *     in QUERY_COMPACT_ORDER, one row per id in all of them (compact_hour.h);
 *     the commit adds them, removes the files they rewrote and folds the
 *     segments in;
 *   - with open_hours, an hour not yet due that has live segments gets them
 *     appended as a new Parquet file, every compacted file of the hour kept
 *     (unless it holds a duplicate that loses to the new file's row): so the
 *     table holds every sealed event within a run, and the hour's small files
 *     are rewritten into few large ones once it is due.
 *
 * The new files are put first (no snapshot names them yet), then the commit,
 * so every event is in exactly one live file at every instant, also when a
 * run stops midway. Segments a snapshot folded in are deleted retain_ms after
 * it; then snapshots older than retain_ms are expired and the files only they
 * named deleted, so a query that loaded an older version still finds its
 * files. Parquet files no snapshot names (a run that stopped before its
 * commit) are deleted after retain_ms too, by a sweep. A lake of per-hour
 * manifests (of an earlier version) is converted by its next run (compact.c,
 * convert_lake).
 *
 * Which hours a run looks at: a sweep lists the whole lake; otherwise a run
 * lists the pending index (pending/, a marker per segment sealed and not yet
 * folded in, layout.h) and then only the hours it names and the recent ones
 * (those that may fall due or take appends), so that its cost follows the new
 * segments, not the age of the lake. Folded segments and expired snapshots'
 * files are deleted by their keys, from the table's metadata.
 *
 * Memory: DuckDB's memory_limit, and no statement reads more than a chunk of
 * the hour (chunk_bytes). A chunk of C MiB of events of 100-250 KB, the
 * costliest kind per byte, needed a limit of about 72 + 24 C MiB; the default
 * chunk, (memory_limit - 96 MiB) / 32, leaves a quarter of the limit spare
 * (bench/README.md). An hour of more than a chunk gives several files. The
 * ids of an hour's files are grouped key_rows at a time (by default 256 bytes
 * of the limit, less 96 MiB, each) to find those in more than one file.
 *
 * A run works in its own directory under work_dir (new files before they go
 * into the lake, DuckDB's spill files), locked while it lives; a run removes
 * what killed runs left there (compact_clean).
 *
 * One compactor at a time per lake: a run first takes the lease
 * leases/compaction/{seq}.json, a conditional put of the next seq that only
 * one contender can win, holding {owner, expiresAt}; it renews the lease (the
 * next seq again) as it goes, and gives it up at the end. An expired lease
 * (its holder died) is taken over the same way. The table's commit keeps two
 * compactors from both winning a partition even if their clocks disagree
 * about the lease: a commit whose base no longer has the files it removes
 * live, or has the segments it folds in folded in already, is lost (counted in
 * conflicts, its new files deleted).
 */
#ifndef EVENTS_COMPACT_H
#define EVENTS_COMPACT_H

#include "cache.h"
#include "store.h"

#include <stddef.h>
#include <stdint.h>

typedef struct compact_config {
    store *store;
    lake_cache *cache;     /* for an object store: where inputs are read from */
    const char *work_dir;  /* where runs work (their directories); must exist */
    int64_t after_ms;      /* compact an hour this long after it ends (the CLI's default: 10 min) */
    int open_hours;        /* also append the live segments of hours not yet due (the table lag) */
    int sweep;             /* list every hour of the lake (else: the pending index, compact.c) */
    int64_t retain_ms;     /* keep dead files this long (> any query's time; CLI: 10 min) */
    int64_t lease_ms;      /* the lease's term (default 2 min) */
    const char *owner;     /* who holds the lease (default host:pid) */
    uint64_t memory_limit; /* DuckDB's (default 1 GiB) */
    uint64_t chunk_bytes;  /* input of one statement at most (0: from memory_limit, above) */
    uint64_t key_rows; /* ids grouped at once to find them in several files (0: from the limit) */
    int threads;       /* DuckDB's (0: 1, what the chunk is sized for) */
} compact_config;

typedef struct compact_stats {
    uint64_t partitions; /* listed */
    uint64_t compacted;  /* hours committed (compacted or appended) */
    uint64_t appended;   /* of them: hours not yet due whose segments were appended */
    uint64_t listed;     /* hour directories (or the whole lake, in a sweep: 1) listed */
    uint64_t files_in;   /* files folded in (not the compacted files kept as they were) */
    uint64_t files_out;  /* Parquet files written */
    uint64_t chunks;     /* statements that wrote one (chunks, and files rewritten) */
    uint64_t bytes_in, bytes_out;
    uint64_t rows;              /* live in the partitions compacted */
    uint64_t deleted;           /* dead files, old manifests and leftovers removed */
    uint64_t conflicts;         /* partitions another compactor won first */
    uint64_t leftovers;         /* what killed runs had left in work_dir, removed */
    uint64_t histories;         /* history files written (history.h) */
    uint64_t histories_deleted; /* stale ones deleted */
    char holder[256];           /* when the lease is held elsewhere: by whom, until when */
} compact_stats;

/*
 * One compaction run over the whole lake. 0 when done, 1 when another
 * compactor holds the lease (st->holder says who), -1 with a message in err
 * (the partitions done before the error stay done; nothing is lost).
 */
int compact_run(const compact_config *cfg, compact_stats *st, char *err, size_t errlen);

/* The chunk a run with cfg uses. */
uint64_t compact_chunk(const compact_config *cfg);

/*
 * Removes from work_dir what killed runs left: every file, and every
 * directory whose run is not alive (its lock is free). *removed counts them.
 * 0 (also when work_dir does not exist), or -1 with a message in err if it
 * cannot be read. compact_run calls it once it holds
 * the lease; a server calls it when its compactor starts.
 */
int compact_clean(const char *work_dir, uint64_t *removed, char *err, size_t errlen);

#endif
