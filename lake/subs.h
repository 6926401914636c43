/*
 * subs.h - webhook subscriptions' records and dead letters, kept in the lake.
 *
 * A subscription lives with the lake, so that every server of a lake sees the
 * same ones. Objects of a store are immutable, so a subscription is a log of
 * versions, each the whole record:
 *
 *   subscriptions/{id}/{version:010}.json    the record; the largest version is current
 *   deadletters/{id}/{failed ms:013}-{n}.json a batch given up on, with why
 *
 * A change (a PATCH, a pause, the deliverer's cursor, its lease) is a
 * conditional put of the next version (STORE_IF_ABSENT), so that of two
 * writers of one version exactly one wins; the loser reads the new current
 * record, applies its edit to it again and puts the next one. The edit is a
 * function, so the rule lives once (lake_subs_update). Old versions are
 * deleted as new ones are written (the last LAKE_SUBS_KEEP stay): a writer
 * reads the current version just before it puts the next, so it could only
 * put into a deleted version's place if others wrote LAKE_SUBS_KEEP versions
 * in that moment. A deleted
 * subscription is a last version whose state is "deleted" (a tombstone):
 * gone for get and list; create may write over it.
 *
 * The record is a JSON object (jansson), in the lake as it is given. The
 * fields (the API's, server/server_subs.c, check what a client sends; the
 * deliverer, server/deliver.c, writes its own):
 *   id, pattern, filters {do.class, do.id, collection}, url, secret,
 *   batchSize, maxWaitMs, timeoutMs, maxAttempts, concurrency,
 *   state ("active", "paused", "disabled", "deleted"), reason,
 *   start ("oldest", or ms since the epoch), cursor (stream.h's text),
 *   replay {from, to, cursor} or null, retryRequested, retryDone,
 *   owner, leaseUntil (ms; the lease: who delivers it, until when),
 *   delivered, lagEvents, lagSeconds, lastError, lastErrorAt,
 *   createdAt, updatedAt (ms).
 * This module reads and writes "state", "createdAt" and "updatedAt" only;
 * the rest is its callers'.
 *
 * Thread-safe: a lake_subs handle may be used from several threads; its only
 * shared state is the cache of the records read (by id and version), behind
 * a mutex, so that a poll of an unchanged lake costs one listing.
 */
#ifndef EVENTS_SUBS_H
#define EVENTS_SUBS_H

#include "buf.h"
#include "layout.h"
#include "store.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define LAKE_SUBS_KEEP       8     /* versions kept of each record */
#define LAKE_SUBS_RETRIES    16    /* lost races of one update before it gives up */
#define LAKE_SUBS_MAX_RECORD 65536 /* bytes of one record */

enum {
    LAKE_SUBS_ENOENT = -1,   /* no such subscription (or deleted) / dead letter */
    LAKE_SUBS_EEXIST = -2,   /* create: a live subscription has the id */
    LAKE_SUBS_EIO = -3,      /* the store failed, or a record is malformed */
    LAKE_SUBS_EINVAL = -4,   /* a bad id, or a record too large */
    LAKE_SUBS_ECONFLICT = -5 /* an update lost LAKE_SUBS_RETRIES races in a row */
};

typedef struct lake_sub {
    char id[LAKE_SUB_ID_MAX + 1];
    uint64_t version; /* of the record (its key's) */
    json_t *rec;      /* the record, owned (lake_sub_free) */
} lake_sub;

typedef struct lake_subs lake_subs;

int lake_subs_open(store *s, lake_subs **out, char *err, size_t errlen);
void lake_subs_close(lake_subs *h); /* NULL is ignored */

/*
 * From now on the records h writes are put with STORE_NOSYNC: on a directory
 * lake they are not fsynced (a process crash keeps them, a machine crash may
 * lose the last seconds of them). For the deliverer's cursor and lease
 * writes, which it makes after every batch: a lost cursor write only repeats
 * deliveries (at least once holds), and two fsyncs per batch would bound a
 * subscription's delivery rate. Set before h is shared.
 */
void lake_subs_unsynced(lake_subs *h);

/* The live subscriptions (tombstones left out), by id. 0, or LAKE_SUBS_EIO. */
int lake_subs_list(lake_subs *h, lake_sub **out, size_t *n, char *err, size_t errlen);
void lake_subs_free(lake_sub *v, size_t n);

/* The current record of id: 0, LAKE_SUBS_ENOENT (none, or deleted), LAKE_SUBS_EIO. */
int lake_subs_get(lake_subs *h, const char *id, lake_sub *out, char *err, size_t errlen);
void lake_sub_free(lake_sub *s); /* the record; s itself is the caller's */

/*
 * Writes a new subscription: rec (borrowed; "state" "active" unless it says
 * otherwise, createdAt and updatedAt set) as version 1, or as the version
 * after a tombstone. 0 and *out (may be NULL), LAKE_SUBS_EEXIST,
 * LAKE_SUBS_EINVAL, LAKE_SUBS_EIO.
 */
int lake_subs_create(lake_subs *h, const char *id, json_t *rec, lake_sub *out, char *err,
                     size_t errlen);

/*
 * An edit of a record (a copy, which it changes in place): 0 to write it,
 * LAKE_SUBS_NOCHANGE to write nothing, or a negative code of its own (err
 * set) to stop with it.
 */
#define LAKE_SUBS_NOCHANGE 1
typedef int (*lake_subs_edit_fn)(json_t *rec, void *ud, char *err, size_t errlen);

/*
 * Applies edit to the current record of id and writes it as the next
 * version; a lost race reads the new current record and applies edit again.
 * base (may be NULL) is the record the caller last had: with it the first
 * try puts base->version + 1 without reading. updatedAt is set. 0 and *out
 * (may be NULL: the record written, or the current one on
 * LAKE_SUBS_NOCHANGE); LAKE_SUBS_ENOENT, LAKE_SUBS_EIO, LAKE_SUBS_ECONFLICT,
 * LAKE_SUBS_EINVAL, or edit's own code.
 */
int lake_subs_update(lake_subs *h, const char *id, const lake_sub *base, lake_subs_edit_fn edit,
                     void *ud, lake_sub *out, char *err, size_t errlen);

/* Deletes id: a tombstone version, then its dead letters. 0, LAKE_SUBS_ENOENT, LAKE_SUBS_EIO. */
int lake_subs_delete(lake_subs *h, const char *id, char *err, size_t errlen);

/* ---- dead letters ------------------------------------------------------------------------ */

typedef struct lake_dead {
    char key[LAKE_KEY_MAX]; /* its name in the API: the part after deadletters/{id}/ */
    int64_t failed_ms;
    uint64_t bytes;
} lake_dead;

/*
 * Stores a dead letter of id: doc (JSON text, len bytes: the deliverer's,
 * with the batch's events and why it failed). 0 and its name in name_out,
 * or LAKE_SUBS_EIO / LAKE_SUBS_EINVAL.
 */
int lake_subs_dead_put(lake_subs *h, const char *id, int64_t failed_ms, const void *doc, size_t len,
                       char name_out[LAKE_KEY_MAX], char *err, size_t errlen);

/* The dead letters of id, oldest first, at most limit of them (*total: all). 0 or LAKE_SUBS_EIO. */
int lake_subs_dead_list(lake_subs *h, const char *id, size_t limit, lake_dead **out, size_t *n,
                        size_t *total, char *err, size_t errlen);

/* Appends dead letter name of id to out. 0, LAKE_SUBS_ENOENT, LAKE_SUBS_EINVAL, LAKE_SUBS_EIO. */
int lake_subs_dead_get(lake_subs *h, const char *id, const char *name, buf *out, char *err,
                       size_t errlen);

/* Deletes dead letter name of id (absent: 0). 0, LAKE_SUBS_EINVAL, LAKE_SUBS_EIO. */
int lake_subs_dead_del(lake_subs *h, const char *id, const char *name, char *err, size_t errlen);

#endif
