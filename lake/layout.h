/*
 * layout.h - where everything lives in the lake. The only module that builds
 * or parses lake keys and spool file names: every reader and writer goes
 * through it, so that they can never disagree about a prefix.
 *
 *   events/{yyyy}/{mm}/{dd}/{hh}/{uuid}.jsonl    raw events of one ts hour (UTC)
 *   events/{yyyy}/{mm}/{dd}/{hh}/{uuid}.parquet  compacted hour
 *   events/{yyyy}/{mm}/{dd}/{hh}/_manifest-{seq}.json  which files of the hour are live
 *                                                      (compaction.h), seq 10 digits
 *   rejected/{yyyy}/{mm}/{dd}/{hh}/{uuid}.jsonl  the quarantine: records ingest refused,
 *                                                of one receive hour (quarantine.h)
 *   snapshots/{source}/{bookmark}.db             database snapshots
 *   leases/{name}/{seq}.json                     a lease (compaction: one compactor)
 *   stream/{sid}/{first seq:016x}.jsonl          the stream log of one writer (sid): its
 *                                                stored lines in seq order, from first seq
 *   subscriptions/{id}/{version:010}.json        a webhook subscription's record (subs.h)
 *   deadletters/{id}/{failed ms:013}-{8 hex}.json a batch a subscription gave up on
 *   history/{yyyy}/{mm}/{dd}/{hash}-{k:03}-{n:03}.parquet  part k of n of one day's document
 *                                                changes, sorted by document, for doc_history
 *                                                (history.h); hash names the day's compacted
 *                                                files they were made of
 *
 * A spool segment (local, not yet in the lake) is named
 * {yyyymmddhh}-{uuid}.jsonl (events) or rejected-{yyyymmddhh}-{uuid}.jsonl
 * (the quarantine): its kind, its hour and the uuid of its final key. The
 * open and unsealed stream segments are stream-{sid}-{first seq:016x}.jsonl,
 * and the spool's stream id is kept in the file stream-id.
 */
#ifndef EVENTS_LAYOUT_H
#define EVENTS_LAYOUT_H

#include "events.h" /* EVENTS_BOOKMARK_LEN */

#include <stddef.h>
#include <stdint.h>

#define LAKE_KEY_MAX          512
#define LAKE_UUID_LEN         36
#define LAKE_EVENTS_PREFIX    "events/"
#define LAKE_SNAPSHOTS_PREFIX "snapshots/"
#define LAKE_REJECTED_PREFIX  "rejected/"
#define LAKE_STREAM_PREFIX    "stream/"
#define LAKE_PENDING_PREFIX   "pending/"
#define LAKE_SID_LEN          8           /* a stream id: [0-9a-z]{8} */
#define LAKE_SID_FILE         "stream-id" /* in the spool: the writer's stream id */
#define LAKE_SUBS_PREFIX      "subscriptions/"
#define LAKE_DEAD_PREFIX      "deadletters/"
#define LAKE_SUB_ID_MAX       64 /* a subscription id: [A-Za-z0-9_-]{1,64} */
#define LAKE_DEAD_NAME_LEN    27 /* "{ms:013}-{8 hex}.json" */

/* What a spool segment holds, and so where it is sealed to. */
enum lake_kind { LAKE_KIND_EVENTS = 0, LAKE_KIND_REJECTED = 1 };

/* The partition (hours since the epoch) of a time in ms. */
static inline int64_t lake_hour(int64_t ms)
{
    return ms / 3600000;
}

/* "events/yyyy/mm/dd/hh/" */
void lake_hour_prefix(int64_t hour, char out[LAKE_KEY_MAX]);

/* "events/yyyy/mm/dd/": the day (UTC) of an hour */
void lake_day_prefix(int64_t hour, char out[LAKE_KEY_MAX]);

/*
 * The pending index (docs/lake.md, "The pending index"): "pending/yyyy/mm/dd/hh/{uuid}.jsonl",
 * an empty object put before the segment "events/yyyy/mm/dd/hh/{uuid}.jsonl" goes into the
 * lake, deleted once the table has folded the segment in. lake_pending_key gives the marker of
 * a segment's key; lake_parse_pending_key the segment's key and hour of a marker's (-1: not one).
 */
void lake_pending_key(const char *segment_key, char out[LAKE_KEY_MAX]);
int lake_parse_pending_key(const char *key, int64_t *hour, char segment[LAKE_KEY_MAX]);

/* "events/yyyy/mm/dd/hh/{uuid}.jsonl" */
void lake_raw_key(int64_t hour, const char *uuid, char out[LAKE_KEY_MAX]);

/* "events/yyyy/mm/dd/hh/{uuid}.parquet" */
void lake_parquet_key(int64_t hour, const char *uuid, char out[LAKE_KEY_MAX]);

/*
 * A compacted file's rollups (docs/lake.md, "Rollups"), beside "{uuid}.parquet", each the file's
 * rows summed up for the macros that read them instead of the rows:
 *   LAKE_ROLLUP_RPC     "events/yyyy/mm/dd/hh/{uuid}.rollup", the rpc.call rows per class and
 *                       method (rpc_latency, rpc_latency_between);
 *   LAKE_ROLLUP_COUNTS  "events/yyyy/mm/dd/hh/{uuid}.counts", the rows counted per minute, type
 *                       and collection (event_counts, event_counts_between);
 *   LAKE_ROLLUP_OBJECTS "events/yyyy/mm/dd/hh/{uuid}.objects", the rows of each emitting
 *                       object, "do".class and "do".id (objects, objects_between).
 * lake_rollup_key_of gives a compacted file's rollup of a kind (-1: the key is not a compacted
 * file's); lake_parse_rollup_key the hour of a rollup's key and returns its kind (-1: not one).
 */
enum { LAKE_ROLLUP_RPC, LAKE_ROLLUP_COUNTS, LAKE_ROLLUP_OBJECTS, LAKE_ROLLUP_KINDS };
/* "rollup", "counts", "objects" */
extern const char *const lake_rollup_ext[LAKE_ROLLUP_KINDS];
int lake_rollup_key_of(const char *parquet_key, int kind, char out[LAKE_KEY_MAX]);
int lake_parse_rollup_key(const char *key, int64_t *hour);

#define LAKE_HISTORY_PREFIX "history/"
#define LAKE_HISTORY_HASH   16  /* hex digits */
#define LAKE_HISTORY_PARTS  999 /* a day's history files at most */

/* "history/yyyy/mm/dd/{hash}-{part:03}-{parts:03}.parquet", of the day (UTC) of an hour;
 * 1 <= part <= parts <= LAKE_HISTORY_PARTS */
void lake_history_key(int64_t hour, const char *hash, int part, int parts, char out[LAKE_KEY_MAX]);

/* The first hour of the day, the hash, the part and the parts of a history file's key: 0, or
 * -1 (not one). */
int lake_parse_history_key(const char *key, int64_t *day_hour, char hash[LAKE_HISTORY_HASH + 1],
                           int *part, int *parts);

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

/* Parses an events spool name. Returns 0, or -1 if name is not one. */
int lake_parse_spool_name(const char *name, int64_t *hour, char uuid[LAKE_UUID_LEN + 1]);

/* The spool name of a segment of either kind ("rejected-" before a quarantine segment's). */
void lake_spool_name_of(int kind, int64_t hour, const char *uuid, char out[LAKE_KEY_MAX]);

/* Parses a spool name of either kind. Returns 0 with *kind, *hour and uuid, or -1. */
int lake_parse_spool_name_of(const char *name, int *kind, int64_t *hour,
                             char uuid[LAKE_UUID_LEN + 1]);

/* "rejected/yyyy/mm/dd/hh/" */
void lake_rejected_hour_prefix(int64_t hour, char out[LAKE_KEY_MAX]);

/* "rejected/yyyy/mm/dd/": the day (UTC) of an hour */
void lake_rejected_day_prefix(int64_t hour, char out[LAKE_KEY_MAX]);

/* The sealed key of a segment: lake_raw_key for events, "rejected/yyyy/mm/dd/hh/{uuid}.jsonl". */
void lake_segment_key(int kind, int64_t hour, const char *uuid, char out[LAKE_KEY_MAX]);

/* Parses "rejected/yyyy/mm/dd/hh/{name}.jsonl". Returns 0 and *hour, or -1. */
int lake_parse_rejected_key(const char *key, int64_t *hour);

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
int lake_parse_snapshot_key(const char *key, char source[64],
                            char bookmark[EVENTS_BOOKMARK_LEN + 1], const char **ext);

/*
 * A stored line's position, its last member, fixed width so that the writer
 * fills it in place: ,"_events_pos":"{sid}.{seq:016x}"}\n. The server ends
 * every normalised line with LAKE_POS_PLACEHOLDER (before its '\n').
 */
#define LAKE_POS_LEN         (LAKE_SID_LEN + 1 + 16) /* "{sid}.{seq:016x}" */
#define LAKE_POS_PLACEHOLDER ",\"_events_pos\":\"00000000.0000000000000000\"}"
#define LAKE_POS_TAIL        (sizeof LAKE_POS_PLACEHOLDER - 1) /* bytes before the '\n' */

/* The LAKE_POS_LEN characters of the position of the line [p, p + n) ('\n' included), or NULL
 * if it does not end with a position member. */
char *lake_pos_find(const char *p, size_t n);

/* Writes "{sid}.{seq:016x}" at pos (LAKE_POS_LEN characters, no NUL). */
void lake_pos_write(char *pos, const char *sid, uint64_t seq);

/* Parses the position of the line [p, p + n). 0 with sid and *seq, or -1 (none). */
int lake_pos_parse(const char *p, size_t n, char sid[LAKE_SID_LEN + 1], uint64_t *seq);

/* 1 if sid is a stream id: LAKE_SID_LEN characters of [0-9a-z]. */
int lake_sid_valid(const char *sid);

/* "stream/{sid}/" */
void lake_stream_prefix(const char *sid, char out[LAKE_KEY_MAX]);

/* "stream/{sid}/{first:016x}.jsonl" */
void lake_stream_key(const char *sid, uint64_t first, char out[LAKE_KEY_MAX]);

/* Parses a stream key. Returns 0 with sid and *first, or -1. */
int lake_parse_stream_key(const char *key, char sid[LAKE_SID_LEN + 1], uint64_t *first);

/* The spool name of a stream segment: "stream-{sid}-{first:016x}.jsonl" */
void lake_stream_spool_name(const char *sid, uint64_t first, char out[LAKE_KEY_MAX]);

/* Parses a stream segment's spool name. Returns 0 with sid and *first, or -1. */
int lake_parse_stream_spool_name(const char *name, char sid[LAKE_SID_LEN + 1], uint64_t *first);

/* The value of the 16 lowercase hex digits at p (a stream seq): 0, or -1 if they are not. */
int lake_parse_hex16(const char *p, uint64_t *out);

/* 1 if id is a subscription id: [A-Za-z0-9_-]{1,64}. */
int lake_sub_id_valid(const char *id);

/* "subscriptions/{id}/{version:010}.json" */
void lake_sub_key(const char *id, uint64_t version, char out[LAKE_KEY_MAX]);

/* Parses a subscription record's key: 0 with id and *version, or -1. */
int lake_parse_sub_key(const char *key, char id[LAKE_SUB_ID_MAX + 1], uint64_t *version);

/* "deadletters/{id}/" */
void lake_dead_prefix(const char *id, char out[LAKE_KEY_MAX]);

/* A dead letter's name, "{failed ms:013}-{8 hex of tag}.json" (LAKE_DEAD_NAME_LEN). */
void lake_dead_name(int64_t failed_ms, uint32_t tag, char out[LAKE_DEAD_NAME_LEN + 1]);

/* 0 with *failed_ms if name is a dead letter's name, else -1. */
int lake_parse_dead_name(const char *name, int64_t *failed_ms);

#endif
