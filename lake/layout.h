/*
 * layout.h - where everything lives in the lake. The only module that builds
 * or parses lake keys and spool file names: every reader and writer goes
 * through it, so that they can never disagree about a prefix.
 *
 *   events/{yyyy}/{mm}/{dd}/{hh}/{uuid}.jsonl    raw events of one ts hour (UTC)
 *   events/{yyyy}/{mm}/{dd}/{hh}/{uuid}.parquet  compacted hour
 *   events/{yyyy}/{mm}/{dd}/{hh}/_manifest-{seq}.json  which files of the hour are live
 *                                                      (compaction.h), seq 10 digits
 *   snapshots/{source}/{bookmark}.db             database snapshots
 *   leases/{name}/{seq}.json                     a lease (compaction: one compactor)
 *
 * A spool segment (local, not yet in the lake) is named
 * {yyyymmddhh}-{uuid}.jsonl: its hour and the uuid of its final key.
 */
#ifndef EVENTS_LAYOUT_H
#define EVENTS_LAYOUT_H

#include <stdint.h>

#define LAKE_KEY_MAX          512
#define LAKE_UUID_LEN         36
#define LAKE_EVENTS_PREFIX    "events/"
#define LAKE_SNAPSHOTS_PREFIX "snapshots/"

/* The partition (hours since the epoch) of a time in ms. */
static inline int64_t lake_hour(int64_t ms)
{
    return ms / 3600000;
}

/* "events/yyyy/mm/dd/hh/" */
void lake_hour_prefix(int64_t hour, char out[LAKE_KEY_MAX]);

/* "events/yyyy/mm/dd/": the day (UTC) of an hour */
void lake_day_prefix(int64_t hour, char out[LAKE_KEY_MAX]);

/* "events/yyyy/mm/dd/hh/{uuid}.jsonl" */
void lake_raw_key(int64_t hour, const char *uuid, char out[LAKE_KEY_MAX]);

/* "events/yyyy/mm/dd/hh/{uuid}.parquet" */
void lake_parquet_key(int64_t hour, const char *uuid, char out[LAKE_KEY_MAX]);

/* "events/yyyy/mm/dd/hh/_manifest-{seq:010}.json" */
void lake_manifest_key(int64_t hour, uint64_t seq, char out[LAKE_KEY_MAX]);

/* Parses a manifest key. Returns 0 and sets *hour and *seq, or -1. */
int lake_parse_manifest_key(const char *key, int64_t *hour, uint64_t *seq);

#define LAKE_LEASES_PREFIX "leases/"

/* "leases/{name}/{seq:010}.json" */
void lake_lease_key(const char *name, uint64_t seq, char out[LAKE_KEY_MAX]);

/* Parses a lease key of the lease name. Returns 0 and *seq, or -1. */
int lake_parse_lease_key(const char *key, const char *name, uint64_t *seq);

/* "{yyyymmddhh}-{uuid}.jsonl" */
void lake_spool_name(int64_t hour, const char *uuid, char out[LAKE_KEY_MAX]);

/* Parses a spool name. Returns 0, or -1 if name is not one. */
int lake_parse_spool_name(const char *name, int64_t *hour, char uuid[LAKE_UUID_LEN + 1]);

/*
 * Parses "events/yyyy/mm/dd/hh/{name}.{ext}". Returns 0 and sets *hour and
 * *ext (pointing into key: "jsonl" or "parquet"), or -1.
 */
int lake_parse_event_key(const char *key, int64_t *hour, const char **ext);

/* 1 if s can name a snapshot source: 1-32 of [0-9A-Za-z_.-], not "." or "..". */
int lake_source_valid(const char *s);

/* "snapshots/{source}/{bookmark}.{ext}" (ext "db" or "json"). */
void lake_snapshot_key(const char *source, const char *bookmark, const char *ext,
                       char out[LAKE_KEY_MAX]);

/*
 * Parses "snapshots/{source}/{bookmark}.{ext}". Returns 0 and fills source,
 * bookmark (16 hex digits) and *ext (pointing into key), or -1.
 */
int lake_parse_snapshot_key(const char *key, char source[64], char bookmark[17], const char **ext);

#endif
