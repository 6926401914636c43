/*
 * cdc.h - the change log of a tracked database, as the rest of the project
 * sees it: bookmarks, the schema hash, changesets and snapshots, used by the
 * command line (cli/pitr.c), the lake's PITR (lake/pitr.c) and the tests.
 *
 * A tracker hangs on one SQLite connection (events_track). Its preupdate hook
 * notes, for every row of a table with a PRIMARY KEY that a write touches,
 * the row as it was before the first touch; when a transaction made through
 * libevents is about to commit, the tracker reads those rows as they are now
 * and writes the difference as one changeset (SQLite's session format) in
 * _events_changes, under the next bookmark, together with one outbox row
 * that the sender expands into the sqlite.changeset and collection.* events.
 * Reading the rows at commit, rather than trusting what the hook saw, is what
 * makes statement rollbacks, ROLLBACK TO and no-op updates come out right.
 *
 * What libevents' own files share about the tracker is in cdc_int.h.
 */
#ifndef EVENTS_CDC_H
#define EVENTS_CDC_H

#include "events.h"

#include <sqlite3.h>
#include <stdint.h>

/* A schema hash: 16 lowercase hex digits. */
#define CDC_SCHEMA_HASH_LEN 16

/* Bookmarks: 16 lowercase hex digits (EVENTS_BOOKMARK_LEN). */
void cdc_bookmark_format(uint64_t b, char out[EVENTS_BOOKMARK_LEN + 1]);
int cdc_bookmark_parse(const char *s, uint64_t *out);

/* The schema hash of the tracked tables of any connection. */
int cdc_schema_hash(sqlite3 *db, char out[CDC_SCHEMA_HASH_LEN + 1]);

/* A SELECT on the tracked tables of db, in name order, for hashing them (tests, restore checks). */
int cdc_tables(sqlite3 *db, char ***names, int *n);

/* Adds the rows a changeset inserts, updates and deletes to the three counts. */
void cdc_changeset_count(const void *p, int n, uint64_t *inserted, uint64_t *updated,
                         uint64_t *deleted);

/*
 * The conflict handler of sqlite3changeset_apply_v2 for a changeset that must fit exactly
 * (a restore, a replay of the change log): it aborts at the first conflict and notes in the
 * cdc_conflict given as ud which table and what (`in table accounts, a row is missing`).
 */
typedef struct cdc_conflict {
    char what[300]; /* "" until a conflict is met */
} cdc_conflict;
struct sqlite3_changeset_iter; /* sqlite3.h declares it under SQLITE_ENABLE_SESSION */
int cdc_on_conflict(void *ud, int kind, struct sqlite3_changeset_iter *it);

/*
 * The source name of a tracked connection, or NULL if it is not tracked. The string is the
 * tracker's: valid while the caller's events_track holds it.
 */
const char *cdc_source(sqlite3 *db);

/* A snapshot of db into path (restore.c), as events_snapshot_file without pruning. */
int cdc_snapshot_take(sqlite3 *db, const char *path, uint64_t *bookmark);
/* PUT file to base_url/snapshots/source/bookmark; auth_header may be NULL. */
int cdc_snapshot_upload(const char *file, const char *base_url, const char *auth_header,
                        const char *source, const char *bookmark);

#endif
