/*
 * layout.c - lake keys and spool names.
 */
#include "layout.h"
#include "evtime.h"

#include <stdio.h>
#include <string.h>

static void civil_of_hour(int64_t hour, evtime_civil *c)
{
    evtime_to_civil(hour * EVTIME_HOUR_MS, c);
}

void lake_hour_prefix(int64_t hour, char out[LAKE_KEY_MAX])
{
    evtime_civil c;
    civil_of_hour(hour, &c);
    snprintf(out, LAKE_KEY_MAX, "events/%04d/%02d/%02d/%02d/", c.year, c.month, c.day, c.hour);
}

void lake_day_prefix(int64_t hour, char out[LAKE_KEY_MAX])
{
    evtime_civil c;
    civil_of_hour(hour, &c);
    snprintf(out, LAKE_KEY_MAX, "events/%04d/%02d/%02d/", c.year, c.month, c.day);
}

void lake_raw_key(int64_t hour, const char *uuid, char out[LAKE_KEY_MAX])
{
    evtime_civil c;
    civil_of_hour(hour, &c);
    snprintf(out, LAKE_KEY_MAX, "events/%04d/%02d/%02d/%02d/%s.jsonl", c.year, c.month, c.day,
             c.hour, uuid);
}

void lake_spool_name(int64_t hour, const char *uuid, char out[LAKE_KEY_MAX])
{
    evtime_civil c;
    civil_of_hour(hour, &c);
    snprintf(out, LAKE_KEY_MAX, "%04d%02d%02d%02d-%s.jsonl", c.year, c.month, c.day, c.hour, uuid);
}

void lake_spool_name_of(int kind, int64_t hour, const char *uuid, char out[LAKE_KEY_MAX])
{
    char name[LAKE_KEY_MAX];
    lake_spool_name(hour, uuid, name);
    snprintf(out, LAKE_KEY_MAX, "%s%s", kind == LAKE_KIND_REJECTED ? "rejected-" : "", name);
}

static void prefixed_hour(const char *top, int64_t hour, int with_hour, char out[LAKE_KEY_MAX])
{
    evtime_civil c;
    civil_of_hour(hour, &c);
    if (with_hour)
        snprintf(out, LAKE_KEY_MAX, "%s%04d/%02d/%02d/%02d/", top, c.year, c.month, c.day, c.hour);
    else
        snprintf(out, LAKE_KEY_MAX, "%s%04d/%02d/%02d/", top, c.year, c.month, c.day);
}

void lake_rejected_hour_prefix(int64_t hour, char out[LAKE_KEY_MAX])
{
    prefixed_hour(LAKE_REJECTED_PREFIX, hour, 1, out);
}

void lake_rejected_day_prefix(int64_t hour, char out[LAKE_KEY_MAX])
{
    prefixed_hour(LAKE_REJECTED_PREFIX, hour, 0, out);
}

void lake_segment_key(int kind, int64_t hour, const char *uuid, char out[LAKE_KEY_MAX])
{
    if (kind != LAKE_KIND_REJECTED) {
        lake_raw_key(hour, uuid, out);
        return;
    }
    char prefix[LAKE_KEY_MAX];
    lake_rejected_hour_prefix(hour, prefix);
    snprintf(out, LAKE_KEY_MAX, "%s%s.jsonl", prefix, uuid);
}

static int num(const char *s, int n, int *v)
{
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        x = x * 10 + s[i] - '0';
    }
    *v = x;
    return 0;
}

static int hour_of(int y, int m, int d, int h, int64_t *hour)
{
    if (y < 1970 || m < 1 || m > 12 || d < 1 || d > 31 || h > 23) return -1;
    *hour = evtime_days_from_civil(y, m, d) * 24 + h;
    return 0;
}

static int uuid_ok(const char *u)
{
    for (int i = 0; i < LAKE_UUID_LEN; i++) {
        char c = u[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

int lake_parse_spool_name(const char *name, int64_t *hour, char uuid[LAKE_UUID_LEN + 1])
{
    int y, m, d, h;
    if (strlen(name) != 10 + 1 + LAKE_UUID_LEN + 6) return -1;
    if (num(name, 4, &y) || num(name + 4, 2, &m) || num(name + 6, 2, &d) || num(name + 8, 2, &h) ||
        name[10] != '-' || !uuid_ok(name + 11) || strcmp(name + 11 + LAKE_UUID_LEN, ".jsonl"))
        return -1;
    if (hour_of(y, m, d, h, hour)) return -1;
    memcpy(uuid, name + 11, LAKE_UUID_LEN);
    uuid[LAKE_UUID_LEN] = 0;
    return 0;
}

int lake_parse_spool_name_of(const char *name, int *kind, int64_t *hour,
                             char uuid[LAKE_UUID_LEN + 1])
{
    *kind = LAKE_KIND_EVENTS;
    if (!strncmp(name, "rejected-", 9)) {
        *kind = LAKE_KIND_REJECTED;
        name += 9;
    }
    return lake_parse_spool_name(name, hour, uuid);
}

int lake_parse_rejected_key(const char *key, int64_t *hour)
{
    int y, m, d, h;
    size_t pl = strlen(LAKE_REJECTED_PREFIX);
    if (strncmp(key, LAKE_REJECTED_PREFIX, pl)) return -1;
    const char *p = key + pl;
    if (num(p, 4, &y) || p[4] != '/' || num(p + 5, 2, &m) || p[7] != '/' || num(p + 8, 2, &d) ||
        p[10] != '/' || num(p + 11, 2, &h) || p[13] != '/')
        return -1;
    const char *name = p + 14;
    size_t n = strlen(name);
    if (n <= 6 || strchr(name, '/') || strcmp(name + n - 6, ".jsonl")) return -1;
    return hour_of(y, m, d, h, hour);
}

/* "events/yyyy/mm/dd/hh/{name}.{ext}" with any ext: 0, *hour and *ext (after the dot), or -1. */
static int parse_hour_file(const char *key, int64_t *hour, const char **ext)
{
    int y, m, d, h;
    if (strncmp(key, "events/", 7)) return -1;
    const char *p = key + 7;
    if (num(p, 4, &y) || p[4] != '/' || num(p + 5, 2, &m) || p[7] != '/' || num(p + 8, 2, &d) ||
        p[10] != '/' || num(p + 11, 2, &h) || p[13] != '/')
        return -1;
    const char *name = p + 14, *dot = strrchr(name, '.');
    if (!dot || dot == name || strchr(name, '/')) return -1;
    if (hour_of(y, m, d, h, hour)) return -1;
    *ext = dot + 1;
    return 0;
}

int lake_parse_event_key(const char *key, int64_t *hour, const char **ext)
{
    if (parse_hour_file(key, hour, ext)) return -1;
    return strcmp(*ext, "jsonl") && strcmp(*ext, "parquet") ? -1 : 0;
}

void lake_history_key(int64_t hour, const char *hash, int part, int parts, char out[LAKE_KEY_MAX])
{
    evtime_civil c;
    civil_of_hour(hour, &c);
    snprintf(out, LAKE_KEY_MAX, "history/%04d/%02d/%02d/%s-%03d-%03d.parquet", c.year, c.month,
             c.day, hash, part, parts);
}

int lake_parse_history_key(const char *key, int64_t *day_hour, char hash[LAKE_HISTORY_HASH + 1],
                           int *part, int *parts)
{
    int y, m, d;
    if (strncmp(key, LAKE_HISTORY_PREFIX, 8)) return -1;
    const char *p = key + 8, *h = p + 11, *n = h + LAKE_HISTORY_HASH;
    if (num(p, 4, &y) || p[4] != '/' || num(p + 5, 2, &m) || p[7] != '/' || num(p + 8, 2, &d) ||
        p[10] != '/' || strlen(h) != LAKE_HISTORY_HASH + 16 ||
        strspn(h, "0123456789abcdef") != LAKE_HISTORY_HASH || n[0] != '-' || num(n + 1, 3, part) ||
        n[4] != '-' || num(n + 5, 3, parts) || strcmp(n + 8, ".parquet") || *part < 1 ||
        *part > *parts)
        return -1;
    if (hour_of(y, m, d, 0, day_hour)) return -1;
    memcpy(hash, h, LAKE_HISTORY_HASH);
    hash[LAKE_HISTORY_HASH] = 0;
    return 0;
}

const char *const lake_rollup_ext[LAKE_ROLLUP_KINDS] = {"rollup", "counts", "objects"};

int lake_parse_rollup_key(const char *key, int64_t *hour)
{
    const char *ext;
    if (parse_hour_file(key, hour, &ext)) return -1;
    for (int k = 0; k < LAKE_ROLLUP_KINDS; k++)
        if (!strcmp(ext, lake_rollup_ext[k])) return k;
    return -1;
}

int lake_rollup_key_of(const char *parquet_key, int kind, char out[LAKE_KEY_MAX])
{
    int64_t hour;
    const char *ext;
    if (lake_parse_event_key(parquet_key, &hour, &ext) || strcmp(ext, "parquet")) return -1;
    size_t stem = (size_t)(ext - parquet_key), len = strlen(lake_rollup_ext[kind]);
    if (stem + len + 1 > LAKE_KEY_MAX) return -1;
    memcpy(out, parquet_key, stem);
    memcpy(out + stem, lake_rollup_ext[kind], len + 1);
    return 0;
}

void lake_pending_key(const char *segment_key, char out[LAKE_KEY_MAX])
{
    snprintf(out, LAKE_KEY_MAX, LAKE_PENDING_PREFIX "%s", segment_key + strlen(LAKE_EVENTS_PREFIX));
}

int lake_parse_pending_key(const char *key, int64_t *hour, char segment[LAKE_KEY_MAX])
{
    const char *ext;
    size_t n = strlen(LAKE_PENDING_PREFIX);
    if (strncmp(key, LAKE_PENDING_PREFIX, n)) return -1;
    snprintf(segment, LAKE_KEY_MAX, LAKE_EVENTS_PREFIX "%s", key + n);
    if (lake_parse_event_key(segment, hour, &ext) || strcmp(ext, "jsonl")) return -1;
    return 0;
}

void lake_parquet_key(int64_t hour, const char *uuid, char out[LAKE_KEY_MAX])
{
    char prefix[LAKE_KEY_MAX];
    lake_hour_prefix(hour, prefix);
    snprintf(out, LAKE_KEY_MAX, "%s%s.parquet", prefix, uuid);
}

void lake_manifest_key(int64_t hour, uint64_t seq, char out[LAKE_KEY_MAX])
{
    char prefix[LAKE_KEY_MAX];
    lake_hour_prefix(hour, prefix);
    snprintf(out, LAKE_KEY_MAX, "%s_manifest-%010llu.json", prefix, (unsigned long long)seq);
}

static int seq_of(const char *p, const char *suffix, uint64_t *seq)
{
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    if (strcmp(p + 10, suffix)) return -1;
    *seq = v;
    return 0;
}

int lake_parse_manifest_key(const char *key, int64_t *hour, uint64_t *seq)
{
    int y, m, d, h;
    if (strncmp(key, "events/", 7)) return -1;
    const char *p = key + 7;
    if (num(p, 4, &y) || p[4] != '/' || num(p + 5, 2, &m) || p[7] != '/' || num(p + 8, 2, &d) ||
        p[10] != '/' || num(p + 11, 2, &h) || p[13] != '/' || strncmp(p + 14, "_manifest-", 10))
        return -1;
    if (seq_of(p + 24, ".json", seq) || hour_of(y, m, d, h, hour)) return -1;
    return 0;
}

void lake_lease_key(const char *name, uint64_t seq, char out[LAKE_KEY_MAX])
{
    snprintf(out, LAKE_KEY_MAX, LAKE_LEASES_PREFIX "%s/%010llu.json", name,
             (unsigned long long)seq);
}

int lake_parse_lease_key(const char *key, const char *name, uint64_t *seq)
{
    size_t pl = strlen(LAKE_LEASES_PREFIX), nl = strlen(name);
    if (strncmp(key, LAKE_LEASES_PREFIX, pl) || strncmp(key + pl, name, nl) || key[pl + nl] != '/')
        return -1;
    return seq_of(key + pl + nl + 1, ".json", seq);
}

int lake_source_valid(const char *s)
{
    size_t n = strlen(s);
    if (!n || n > 32 || !strcmp(s, ".") || !strcmp(s, "..")) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= 'A' && s[i] <= 'Z') || s[i] == '_' || s[i] == '.' || s[i] == '-'))
            return 0;
    return 1;
}

void lake_snapshot_key(const char *source, const char *bookmark, const char *ext,
                       char out[LAKE_KEY_MAX])
{
    snprintf(out, LAKE_KEY_MAX, LAKE_SNAPSHOTS_PREFIX "%s/%s.%s", source, bookmark, ext);
}

int lake_parse_snapshot_key(const char *key, char source[64],
                            char bookmark[EVENTS_BOOKMARK_LEN + 1], const char **ext)
{
    size_t pl = strlen(LAKE_SNAPSHOTS_PREFIX);
    if (strncmp(key, LAKE_SNAPSHOTS_PREFIX, pl)) return -1;
    const char *s = key + pl, *slash = strchr(s, '/');
    if (!slash || (size_t)(slash - s) >= 64) return -1;
    memcpy(source, s, (size_t)(slash - s));
    source[slash - s] = 0;
    if (!lake_source_valid(source)) return -1;
    const char *b = slash + 1;
    for (int i = 0; i < EVENTS_BOOKMARK_LEN; i++)
        if (!((b[i] >= '0' && b[i] <= '9') || (b[i] >= 'a' && b[i] <= 'f'))) return -1;
    if (b[EVENTS_BOOKMARK_LEN] != '.') return -1;
    memcpy(bookmark, b, EVENTS_BOOKMARK_LEN);
    bookmark[EVENTS_BOOKMARK_LEN] = 0;
    *ext = b + EVENTS_BOOKMARK_LEN + 1;
    return strchr(*ext, '/') ? -1 : 0;
}

int lake_parse_hex16(const char *p, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = p[i];
        if (c >= '0' && c <= '9')
            v = v << 4 | (uint64_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = v << 4 | (uint64_t)(c - 'a' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

int lake_sid_valid(const char *sid)
{
    for (int i = 0; i < LAKE_SID_LEN; i++)
        if (!((sid[i] >= '0' && sid[i] <= '9') || (sid[i] >= 'a' && sid[i] <= 'z'))) return 0;
    return sid[LAKE_SID_LEN] == 0;
}

void lake_stream_prefix(const char *sid, char out[LAKE_KEY_MAX])
{
    snprintf(out, LAKE_KEY_MAX, LAKE_STREAM_PREFIX "%s/", sid);
}

void lake_stream_key(const char *sid, uint64_t first, char out[LAKE_KEY_MAX])
{
    snprintf(out, LAKE_KEY_MAX, LAKE_STREAM_PREFIX "%s/%016llx.jsonl", sid,
             (unsigned long long)first);
}

/* "{sid}{sep}{first:016x}.jsonl" at p: the sid and the first seq. 0, or -1. */
static int sid_and_first(const char *p, char sep, char sid[LAKE_SID_LEN + 1], uint64_t *first)
{
    if (strlen(p) != LAKE_SID_LEN + 1 + 16 + 6 || p[LAKE_SID_LEN] != sep ||
        strcmp(p + LAKE_SID_LEN + 17, ".jsonl"))
        return -1;
    memcpy(sid, p, LAKE_SID_LEN);
    sid[LAKE_SID_LEN] = 0;
    if (!lake_sid_valid(sid)) return -1;
    return lake_parse_hex16(p + LAKE_SID_LEN + 1, first);
}

int lake_parse_stream_key(const char *key, char sid[LAKE_SID_LEN + 1], uint64_t *first)
{
    size_t pl = strlen(LAKE_STREAM_PREFIX);
    if (strncmp(key, LAKE_STREAM_PREFIX, pl)) return -1;
    return sid_and_first(key + pl, '/', sid, first);
}

void lake_stream_spool_name(const char *sid, uint64_t first, char out[LAKE_KEY_MAX])
{
    snprintf(out, LAKE_KEY_MAX, "stream-%s-%016llx.jsonl", sid, (unsigned long long)first);
}

int lake_parse_stream_spool_name(const char *name, char sid[LAKE_SID_LEN + 1], uint64_t *first)
{
    if (strncmp(name, "stream-", 7)) return -1;
    return sid_and_first(name + 7, '-', sid, first);
}

char *lake_pos_find(const char *p, size_t n)
{
    static const char member[] = ",\"_events_pos\":\"";
    size_t ml = sizeof member - 1;
    if (n < LAKE_POS_TAIL + 1 || p[n - 1] != '\n' || p[n - 2] != '}' || p[n - 3] != '"')
        return NULL;
    const char *m = p + n - 1 - LAKE_POS_TAIL;
    if (memcmp(m, member, ml)) return NULL;
    return (char *)(uintptr_t)(m + ml);
}

void lake_pos_write(char *pos, const char *sid, uint64_t seq)
{
    static const char hex[] = "0123456789abcdef";
    memcpy(pos, sid, LAKE_SID_LEN);
    pos[LAKE_SID_LEN] = '.';
    for (int i = 15; i >= 0; i--, seq >>= 4) pos[LAKE_SID_LEN + 1 + i] = hex[seq & 15];
}

int lake_pos_parse(const char *p, size_t n, char sid[LAKE_SID_LEN + 1], uint64_t *seq)
{
    const char *pos = lake_pos_find(p, n);
    if (!pos || pos[LAKE_SID_LEN] != '.') return -1;
    char name[LAKE_SID_LEN + 1 + 16 + 7];
    memcpy(name, pos, LAKE_POS_LEN);
    memcpy(name + LAKE_POS_LEN, ".jsonl", 7);
    return sid_and_first(name, '.', sid, seq);
}

int lake_sub_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (!n || n > LAKE_SUB_ID_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z') ||
              (id[i] >= 'A' && id[i] <= 'Z') || id[i] == '_' || id[i] == '-'))
            return 0;
    return 1;
}

void lake_sub_key(const char *id, uint64_t version, char out[LAKE_KEY_MAX])
{
    snprintf(out, LAKE_KEY_MAX, LAKE_SUBS_PREFIX "%s/%010llu.json", id,
             (unsigned long long)version);
}

int lake_parse_sub_key(const char *key, char id[LAKE_SUB_ID_MAX + 1], uint64_t *version)
{
    size_t pl = strlen(LAKE_SUBS_PREFIX);
    if (strncmp(key, LAKE_SUBS_PREFIX, pl)) return -1;
    const char *slash = strchr(key + pl, '/');
    size_t n = slash ? (size_t)(slash - key - pl) : 0;
    if (!n || n > LAKE_SUB_ID_MAX) return -1;
    memcpy(id, key + pl, n);
    id[n] = 0;
    if (!lake_sub_id_valid(id)) return -1;
    return seq_of(slash + 1, ".json", version);
}

void lake_dead_prefix(const char *id, char out[LAKE_KEY_MAX])
{
    snprintf(out, LAKE_KEY_MAX, LAKE_DEAD_PREFIX "%s/", id);
}

void lake_dead_name(int64_t failed_ms, uint32_t tag, char out[LAKE_DEAD_NAME_LEN + 1])
{
    snprintf(out, LAKE_DEAD_NAME_LEN + 1, "%013lld-%08x.json", (long long)failed_ms, (unsigned)tag);
}

int lake_parse_dead_name(const char *name, int64_t *failed_ms)
{
    if (strlen(name) != LAKE_DEAD_NAME_LEN || name[13] != '-' || strcmp(name + 22, ".json"))
        return -1;
    int64_t v = 0;
    for (int i = 0; i < 13; i++) {
        if (name[i] < '0' || name[i] > '9') return -1;
        v = v * 10 + (name[i] - '0');
    }
    for (int i = 14; i < 22; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f'))) return -1;
    *failed_ms = v;
    return 0;
}
