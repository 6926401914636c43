/*
 * snapshots.h - database snapshots in the lake.
 *
 *   PUT /snapshots/{source}/{bookmark}   a SQLite database file as the body
 *   GET /snapshots[?source=S]            the manifests, oldest first
 *   GET /snapshots/{source}/{bookmark}   the file, streamed from disk
 *
 * An upload is written to a temporary file in the spool while its SHA-256 is
 * computed, checked (a SQLite database that passes quick_check), then moved
 * into the lake as snapshots/{source}/{bookmark}.db with its manifest
 * snapshots/{source}/{bookmark}.json: source, bookmark, createdAt, size,
 * sha256, tables (name and row count). The same upload again is answered
 * with the existing manifest; a different file under the same name is 409.
 */
#ifndef EVENTS_SNAPSHOTS_H
#define EVENTS_SNAPSHOTS_H

#include "buf.h"
#include "events.h" /* EVENTS_BOOKMARK_LEN */
#include "store.h"

#include <stdint.h>

typedef struct snapshots_upload snapshots_upload;

/*
 * Parses "/snapshots/{source}/{bookmark}". Returns 0 and fills source and
 * bookmark, 1 if url is "/snapshots", -1 if it is another path under
 * /snapshots (err says what is wrong), -2 if it is not under /snapshots.
 */
int snapshots_parse_url(const char *url, char source[64], char bookmark[EVENTS_BOOKMARK_LEN + 1],
                        char *err, size_t errlen);

/* Starts an upload into a temporary file in dir. NULL and err on failure. */
snapshots_upload *snapshots_begin(const char *dir, const char *source, const char *bookmark,
                                  char *err, size_t errlen);
/* Returns 0, or -1 (err set) when the file cannot be written. */
int snapshots_write(snapshots_upload *u, const void *p, size_t n, char *err, size_t errlen);
uint64_t snapshots_size(const snapshots_upload *u);
/* The failures of snapshots_finish, snapshots_list and snapshots_open. */
#define SNAPSHOTS_EINVAL                                                                           \
    (-1) /* the upload is not a SQLite database, or a source name is not valid */
#define SNAPSHOTS_ENOENT (-2) /* no such snapshot */
#define SNAPSHOTS_EEXIST (-3) /* a snapshot of that name exists with other content */
#define SNAPSHOTS_EIO    (-4) /* the store or the local disk failed */

/*
 * Checks and stores the upload and writes its manifest (JSON) into answer.
 * Returns 0 when it is stored, 1 when the same upload was already there, or
 * a code above with err set. Frees u.
 */
int snapshots_finish(snapshots_upload *u, store *st, buf *answer, char *err, size_t errlen);
void snapshots_abort(snapshots_upload *u);

/* The manifests (of one source, or all) into answer: {"snapshots":[…]}. 0, or a code with err. */
int snapshots_list(store *st, const char *source, buf *answer, char *err, size_t errlen);

/*
 * Opens the file of a snapshot to be streamed: *fd (the caller closes it, or
 * hands it to libmicrohttpd) and *size. A directory lake's file is opened
 * where it is; an object store's is first copied to a temporary file in
 * tmp_dir (streamed, never whole in memory), unlinked as soon as it is open,
 * so that nothing is left behind whatever happens. Returns 0, or a code
 * above with err set and *fd -1.
 */
int snapshots_open(store *st, const char *tmp_dir, const char *source, const char *bookmark,
                   int *fd, uint64_t *size, char *err, size_t errlen);

/* Removes what uploads and downloads cut short by a crash left in dir; returns how many. */
int snapshots_clean(const char *dir);

#endif
