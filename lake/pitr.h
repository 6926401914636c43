/*
 * pitr.h - restoring a database from the lake alone.
 *
 * A tracked database leaves in the lake everything needed to rebuild it:
 * snapshots (snapshots/{source}/{bookmark}.db, uploaded by events_snapshot)
 * and one sqlite.changeset event per recorded transaction, in parts. To
 * rebuild the state at bookmark B: the newest snapshot at or before B,
 * then every changeset after it up to B, applied forward in bookmark order,
 * in one transaction (triggers and foreign-key actions held off, as in a
 * local restore, so that the result is the same database).
 *
 * Refused, with the reason: no snapshot at or before B; a bookmark the lake
 * has no changeset for between the snapshot and B (not delivered yet); a
 * changeset recorded under another schema than the snapshot's; a change that
 * does not fit the rows it finds.
 */
#ifndef EVENTS_PITR_H
#define EVENTS_PITR_H

#include "cdc.h" /* CDC_SCHEMA_HASH_LEN */
#include "query.h"
#include "store.h"

#include <stdint.h>

/* The changesets of a source between two bookmarks, joined from their parts, in order. */
typedef struct pitr_changes {
    size_t n;
    uint64_t *bookmark;
    char (*schema)[CDC_SCHEMA_HASH_LEN + 1];
    buf *changeset;
    int64_t *ts_ms;
} pitr_changes;

void pitr_changes_free(pitr_changes *c);

/*
 * Reads from the lake (through the engine) the changesets of source with
 * bookmarks in (after, upto]; upto UINT64_MAX: all. Checks that every
 * bookmark is there with all its parts. Returns 0, or -1 with err.
 */
int pitr_load_changes(query_conn *qc, const char *source, uint64_t after, uint64_t upto,
                      pitr_changes *out, char *err, size_t errlen);

/* The bookmark of the last transaction recorded at or before at_ms; 0 if none. -1 on error. */
int pitr_bookmark_at(query_conn *qc, const char *source, int64_t at_ms, uint64_t *bookmark,
                     char *err, size_t errlen);

/* The snapshots of a source in the store, oldest first (bookmarks). */
int pitr_snapshots(store *st, const char *source, uint64_t **bookmarks, size_t *n, char *err,
                   size_t errlen);

typedef struct pitr_report {
    uint64_t snapshot;     /* the snapshot started from */
    uint64_t bookmark;     /* the state restored */
    uint64_t transactions; /* changesets applied */
    uint64_t inserted, updated, deleted;
} pitr_report;

/*
 * Copies the snapshot `snap` of source to path (which must not exist) and
 * applies changes[0..k) where k covers bookmarks up to `upto`. progress (may
 * be NULL) is called after each changeset. force: path may exist and is
 * replaced (atomically, once the result is whole). dry_run: counts only,
 * writes nothing. Returns 0, or -1 with err.
 */
int pitr_apply(store *st, const char *source, uint64_t snap, const pitr_changes *changes,
               uint64_t upto, const char *path, int force, int dry_run,
               void (*progress)(void *ud, uint64_t done, uint64_t total), void *ud,
               pitr_report *rep, char *err, size_t errlen);

#endif
