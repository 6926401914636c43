/*
 * compact_int.h - the inside of a compaction run, shared by its files:
 * compact.c (the lease, the work directory, the run and its hours),
 * compact_table.c (commits to the table, the conversion of a lake of
 * manifests, expiry) and compact_pending.c (the pending index). Only
 * lake/compact*.c include it.
 */
#ifndef EVENTS_COMPACT_INT_H
#define EVENTS_COMPACT_INT_H

#include "compact.h"
#include "compact_hour.h"
#include "partition.h"
#include "table.h"

#include <duckdb.h>
#include <jansson.h>

/* The compaction lease as this run holds it (compact.c). */
typedef struct lease {
    store *s;
    char owner[200];
    int64_t ttl_ms;
    uint64_t seq;       /* the last one we wrote */
    int64_t expires_ms; /* of the last one we wrote */
} lease;

typedef struct latest {
    uint64_t seq, first;
    uint64_t n;
} latest;

/* One compaction run: what every step reads and counts into. */
typedef struct compact__run {
    const compact_config *cfg;
    compact_stats *st;
    lease lease;
    duckdb_database db;
    duckdb_connection con;
    char dir[4200]; /* this run's directory in work_dir */
    int lock_fd;    /* its lock, held while the directory exists; -1 before */
    uint64_t chunk_bytes;
    uint64_t key_rows; /* ids one statement groups, finding duplicates across files */
    char *err;
    size_t errlen;
    int64_t now;
    lake_table lt;               /* the table as the run began (table.h); lt.t NULL: none yet */
    lake_live lv;                /* its live files, every hour */
    struct compact__convert *cv; /* set while a lake without a table is converted */
    struct compact__pending *pd; /* the pending index, listed by a run that does not sweep */
} compact__run;

/* The partition's live files, made local: items[k] and hin[k] for the k-th live file. */
typedef struct inputs {
    lake_cache_item *items;
    compact_hour_in *hin;
    size_t *file; /* index in the partition */
    size_t n;
    int cached; /* items are pinned in the cache */
} inputs;

static inline int64_t compact__keep_after(const compact__run *r)
{
    return r->now - (r->cfg->retain_ms > 0 ? r->cfg->retain_ms : 0);
}

/* compact.c */
int compact__lease_keep(lease *l, char *err, size_t errlen);
/* Deletes a file of the lake and, for a compacted file, its rollups (docs/lake.md), whether or
 * not the file was there: 0, or -1 when the file could not be deleted (a rollup left behind goes
 * with its partition's next sweep, compact__collect_table). */
int compact__del(compact__run *r, const char *key);
/* compact_history.c: the history files of the due days written, the stale ones deleted
 * (history.h). 0, or -1 (r->err). */
int compact__history(compact__run *r);
int compact__files(compact__run *r, lake_partition *p, int keep_all, inputs *in,
                   compact_hour_result *res);
void compact__files_free(compact__run *r, inputs *in, compact_hour_result *res);
int compact__on_partition(lake_partition *p, void *ud);

/* compact_table.c */
void compact__collect_table(compact__run *r, lake_partition *p);
int compact__publish(compact__run *r, lake_partition *p, const inputs *in,
                     const compact_hour_result *res);
void compact__count_done(compact__run *r, const inputs *in, const compact_hour_result *res);
int compact__convert_lake(compact__run *r);
int compact__expire_table(compact__run *r);

/* compact_pending.c */
void compact__settle_markers(compact__run *r, int64_t hour, const lake_partition *p);
int compact__pending_run(compact__run *r, char *m, size_t mlen);

#endif
