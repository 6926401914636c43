/*
 * history.h - history files: one day's document changes, sorted by document
 * (docs/lake.md, "History files").
 *
 * doc_history(coll, id) reads a document's changes from every compacted file
 * of the lake: the files of an hour are sorted by document, but a document
 * changes in many hours, and each file costs its footer and a row group to
 * look in. Compaction therefore also writes, for each day whose hours are all
 * due, the rows of that day's compacted files that are document changes
 * (collection.insert, .update, .delete), sorted by collection and document,
 * as history/{yyyy}/{mm}/{dd}/{hash}-{k}-{n}.parquet (layout.h): n parts of
 * the day's documents, as many as keep each part's sort within compaction's
 * memory (one for most days). A query that reads events only through one
 * call of doc_history reads a day's history files instead of the day's
 * compacted files: one file per day, or per part.
 *
 * The hash names the exact set of compacted files the history was made of:
 * it is computed from their keys (FNV-1a, 64 bits, of LAKE_HISTORY_FORMAT and
 * the sorted keys, each ended by a newline). A query computes it from the day's live compacted
 * files and takes a history file only when the names agree, so a history
 * file is never read with, or instead of, anything but the files it holds:
 * once the day changes (an hour compacted again with late events), the query
 * reads the files until compaction writes the day's history again, and the
 * stale one is deleted --compact-retain after it was written.
 *
 * History files are not part of the Iceberg table: other engines never see
 * them, and a lake without any is read the same, only slower.
 */
#ifndef EVENTS_HISTORY_H
#define EVENTS_HISTORY_H

#include "layout.h"
#include "store.h"

#include <stddef.h>
#include <stdint.h>

/* What the hash begins with: changed with the columns or their order, it renames every file. */
#define LAKE_HISTORY_FORMAT "history 1\n"

/* The rows of the events view a history file holds. */
#define LAKE_HISTORY_TYPES "('collection.insert', 'collection.update', 'collection.delete')"

/* The hash of a day's compacted files, from their keys in any order (keys is sorted in
 * place): LAKE_HISTORY_HASH hex digits. */
void lake_history_hash(const char **keys, size_t n, char out[LAKE_HISTORY_HASH + 1]);

/* A history file listed. */
typedef struct lake_history_file {
    char *key;
    uint64_t size;
    int64_t mtime_ms;
    int64_t day; /* its day's first hour */
    char hash[LAKE_HISTORY_HASH + 1];
    int part, parts;
    int current; /* the caller's */
} lake_history_file;

typedef struct lake_history_list {
    lake_history_file *f;
    size_t n, cap;
    int oom;
} lake_history_list;

/* The lake's history files: 0, or -1 with err. Free with lake_history_list_free. */
int lake_history_load(store *s, lake_history_list *out, char *err, size_t errlen);
void lake_history_list_free(lake_history_list *l);

/* The number of parts of a whole set (every part listed) of history files of the day of hour
 * day named hash, or 0 if there is none. */
int lake_history_complete(const lake_history_list *l, int64_t day, const char *hash);

/* The first hour of the day of an hour (UTC). */
static inline int64_t lake_history_day(int64_t hour)
{
    return hour - hour % 24;
}

#endif
