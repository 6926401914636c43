/*
 * iceberg_commit.c - changes to the Iceberg table: commits of a snapshot,
 * listing the live files, expiring snapshots (iceberg.h).
 *
 * A commit is optimistic: everything new (manifests, the manifest list) is
 * written under fresh names first, then the new metadata version is proposed to
 * the catalog on the base it was built from. If another writer got there first,
 * the catalog says ICE_ECONFLICT and this attempt deletes what it wrote: the
 * files it added and the ones it meant to remove may have changed under it, so a
 * retry starts again from the new base (ice_commit_retry) rather than patching
 * the old attempt.
 *
 * The table keeps at most one manifest per UTC day of ts_hour, so that the
 * manifest list stays one entry a day however often compaction commits (a list
 * growing by one manifest a commit would make every commit and every query plan
 * read hundreds of thousands of entries within a few years). A commit rewrites
 * the manifest of each day it touches (days of added and of removed files): the
 * day's live files carried over as EXISTING with the snapshot id and sequence
 * numbers they had, the removed ones DELETED by this snapshot, the added ones
 * ADDED; the DELETED entries of earlier snapshots are dropped (the spec keeps a
 * deletion in the snapshot that made it). Other days' manifests are reused by
 * location with the list entry they had (their ADDED entries keep inheriting the
 * sequence number of the snapshot that wrote them). A base of another shape (a
 * manifest a commit, or one spanning several days) is folded into per-day
 * manifests as its days are touched.
 * EVENTS_TEST_KILL_AT=manifest-list stops the process once the manifests and
 * the manifest list are written (testkill.h).
 */
#include "evrand.h"
#include "iceberg_int.h"
#include "testkill.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ICE__PATH 2048

/* What one commit attempt has in hand. */
typedef struct attempt {
    const ice_catalog *cat;
    store *s;
    const ice_table *base;
    const ice_change *c;
    const char *location;
    int64_t now_ms, snapshot_id, parent_id, seq;
    char uuid[37];
    ice__manifest *ms; /* the new snapshot's manifests */
    size_t nms;
    char **written; /* keys written so far, deleted if the attempt fails */
    size_t nwritten;
    int64_t removed_files, removed_records, removed_bytes;
    int64_t *hours; /* the partitions the change touches, with repeats */
    size_t nhours;
    ice__manifest *bms; /* the base snapshot's manifests */
    size_t nb;
    ice__entry **be; /* the entries of bms[i] while LOADED */
    size_t *bne;
    char *bstate;  /* LOADED, TAKEN (replaced by this snapshot's per-day manifests) */
    int64_t *days; /* the touched days, sorted */
    size_t ndays, capdays;
    const char **rm; /* the keys to remove, sorted; found[k]: rm[k] is live in the base */
    char *found;
    size_t nrm;
} attempt;

enum { LOADED = 1, TAKEN = 2 };

static int note_hour(attempt *a, int64_t hour)
{
    int64_t *h = realloc(a->hours, (a->nhours + 1) * sizeof *h);
    if (!h) return -1;
    a->hours = h;
    h[a->nhours++] = hour;
    return 0;
}

static int cmp_hour(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

/* The number of distinct hours noted (sorts them). */
static int64_t distinct_hours(attempt *a)
{
    if (!a->nhours) return 0;
    qsort(a->hours, a->nhours, sizeof *a->hours, cmp_hour);
    int64_t n = 1;
    for (size_t i = 1; i < a->nhours; i++) n += a->hours[i] != a->hours[i - 1];
    return n;
}

static int64_t new_snapshot_id(void)
{
    int64_t id;
    do id = (int64_t)(evrand_u64() >> 1);
    while (id == 0);
    return id;
}

static int remember(attempt *a, const char *key)
{
    char **w = realloc(a->written, (a->nwritten + 1) * sizeof *w);
    if (!w) return -1;
    a->written = w;
    if (!(w[a->nwritten] = strdup(key))) return -1;
    a->nwritten++;
    return 0;
}

static void undo(attempt *a)
{
    char ignored[256]; /* an orphan left behind is harmless: nothing names it */
    for (size_t i = 0; i < a->nwritten; i++)
        store_del(a->s, a->written[i], ignored, sizeof ignored);
}

static int push_manifest(attempt *a, const ice__manifest *m)
{
    ice__manifest *ms = realloc(a->ms, (a->nms + 1) * sizeof *ms);
    if (!ms) return -1;
    a->ms = ms;
    ms[a->nms++] = *m;
    return 0;
}

/* Copies f (key and stats) into *to. */
static int copy_file(const ice_file *f, ice_file *to)
{
    *to = *f;
    to->key = strdup(f->key);
    to->cols = f->ncols ? calloc(f->ncols, sizeof *to->cols) : NULL;
    if (!to->key || (f->ncols && !to->cols)) goto fail;
    for (size_t i = 0; i < f->ncols; i++) {
        const ice_col_stats *c = &f->cols[i];
        ice_col_stats *d = &to->cols[i];
        *d = *c;
        memset(&d->lower, 0, sizeof d->lower);
        memset(&d->upper, 0, sizeof d->upper);
        if (buf_append(&d->lower, c->lower.p, c->lower.len) ||
            buf_append(&d->upper, c->upper.p, c->upper.len))
            goto fail;
    }
    return 0;
fail:
    ice_file_clear(to);
    return -1;
}

/* ---- the manifests of the new snapshot: one per day ---------------------------------------- */

/* The UTC day of an hour partition (floor division: hours before the epoch too). */
static int64_t day_of(int64_t hour)
{
    return hour >= 0 ? hour / 24 : -((-hour + 23) / 24);
}

/* The index of the first touched day >= d. */
static size_t day_lower(const attempt *a, int64_t d)
{
    size_t lo = 0, hi = a->ndays;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a->days[mid] < d)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Adds d to the touched days (kept sorted, without repeats). */
static int touch_day(attempt *a, int64_t d)
{
    size_t i = day_lower(a, d);
    if (i < a->ndays && a->days[i] == d) return 0;
    if (a->ndays == a->capdays) {
        size_t cap = a->capdays ? a->capdays * 2 : 16;
        int64_t *days = realloc(a->days, cap * sizeof *days);
        if (!days) return -1;
        a->days = days;
        a->capdays = cap;
    }
    memmove(&a->days[i + 1], &a->days[i], (a->ndays - i) * sizeof *a->days);
    a->days[i] = d;
    a->ndays++;
    return 0;
}

/* 1 if a touched day lies in [lo, hi]. */
static int meets_touched(const attempt *a, int64_t lo, int64_t hi)
{
    size_t i = day_lower(a, lo);
    return i < a->ndays && a->days[i] <= hi;
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* The position of key among the (sorted) keys to remove, or -1. */
static ptrdiff_t removal_of(const attempt *a, const char *key)
{
    if (!a->nrm) return -1;
    const char *const *p = bsearch(&key, a->rm, a->nrm, sizeof *a->rm, cmp_str);
    return p ? p - a->rm : -1;
}

static int has_live(const ice__manifest *m)
{
    return m->added_files + m->existing_files > 0;
}

/* Reads the entries of base manifest i, once. */
static int load_base(attempt *a, size_t i, char *err, size_t errlen)
{
    if (a->bstate[i] & LOADED) return ICE_OK;
    int rc = ice__manifest_read(a->s, a->location, &a->bms[i], &a->be[i], &a->bne[i], err, errlen);
    if (!rc) a->bstate[i] |= LOADED;
    return rc;
}

static void unload_base(attempt *a, size_t i)
{
    ice__entries_free(a->be[i], a->bne[i]);
    a->be[i] = NULL;
    a->bne[i] = 0;
    a->bstate[i] &= (char)~LOADED;
}

/* Takes base manifest i (loaded) out of the new list: the days of its live files are
 * touched, so that all of them are rewritten into per-day manifests. */
static int take_base(attempt *a, size_t i)
{
    a->bstate[i] |= TAKEN;
    for (size_t j = 0; j < a->bne[i]; j++)
        if (a->be[i][j].status != ICE__DELETED && touch_day(a, day_of(a->be[i][j].f.hour)))
            return -1;
    return 0;
}

/* The base's manifest list and the keys to remove, sorted for lookups. */
static int read_base(attempt *a, char *err, size_t errlen)
{
    const ice_change *c = a->c;
    if (c->nremove) {
        if (!(a->rm = malloc(c->nremove * sizeof *a->rm)) || !(a->found = calloc(c->nremove, 1)))
            return ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
        memcpy(a->rm, c->remove, c->nremove * sizeof *a->rm);
        a->nrm = c->nremove;
        qsort(a->rm, a->nrm, sizeof *a->rm, cmp_str);
    }
    if (!a->base || a->parent_id < 0) {
        if (c->nremove)
            return ice__fail(err, errlen, ICE_ESTALE,
                             "iceberg: cannot remove %s: the table has no live files",
                             c->remove[0]);
        return ICE_OK;
    }
    int rc = ice__snapshot_manifests(a->s, a->base, a->parent_id, &a->bms, &a->nb, err, errlen);
    if (rc) return rc;
    a->be = calloc(a->nb + 1, sizeof *a->be);
    a->bne = calloc(a->nb + 1, sizeof *a->bne);
    a->bstate = calloc(a->nb + 1, 1);
    if (!a->be || !a->bne || !a->bstate)
        return ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
    return ICE_OK;
}

/* Reads the base manifests that may hold removed files (those meeting the removed hours,
 * when known): the ones that hold some are taken. ICE_ESTALE when a key is not found. */
static int find_removed(attempt *a, char *err, size_t errlen)
{
    const ice_change *c = a->c;
    for (size_t i = 0; i < a->nb && a->nrm; i++) {
        const ice__manifest *m = &a->bms[i];
        if (!has_live(m)) continue;
        if (c->remove_hours_known && m->has_bounds &&
            (m->hi < c->remove_lo || m->lo > c->remove_hi))
            continue;
        int rc = load_base(a, i, err, errlen), holds = 0;
        if (rc) return rc;
        for (size_t j = 0; j < a->bne[i]; j++) {
            if (a->be[i][j].status == ICE__DELETED) continue;
            ptrdiff_t k = removal_of(a, a->be[i][j].f.key);
            if (k >= 0) a->found[k] = holds = 1;
        }
        if (!holds)
            unload_base(a, i);
        else if (take_base(a, i))
            return ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
    }
    for (size_t k = 0; k < a->nrm; k++)
        if (!a->found[k])
            return ice__fail(err, errlen, ICE_ESTALE,
                             "iceberg: cannot remove %s: it is not a live file of snapshot %" PRId64
                             " (replaced or removed by another writer)",
                             a->rm[k], a->parent_id);
    return ICE_OK;
}

/* Takes every base manifest with live files whose days meet a touched day, until none
 * is left: a day is rewritten from all of its manifests (several for one day, as older
 * commits wrote them, fold into one), and a manifest of several days is split into its
 * days (which touches them, hence the repeat). */
static int take_touched(attempt *a, char *err, size_t errlen)
{
    for (int more = 1; more;) {
        more = 0;
        for (size_t i = 0; i < a->nb; i++) {
            const ice__manifest *m = &a->bms[i];
            if ((a->bstate[i] & TAKEN) || !has_live(m)) continue;
            if (m->has_bounds && !meets_touched(a, day_of(m->lo), day_of(m->hi))) continue;
            int rc = load_base(a, i, err, errlen);
            if (rc) return rc;
            if (take_base(a, i))
                return ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
            more = 1;
        }
    }
    return ICE_OK;
}

static int by_day_then_key(const void *x, const void *y)
{
    const ice__entry *a = x, *b = y;
    int64_t da = day_of(a->f.hour), db = day_of(b->f.hour);
    if (da != db) return (da > db) - (da < db);
    return strcmp(a->f.key, b->f.key);
}

/* The entries of the touched days, sorted by day: the live entries of the taken
 * manifests (DELETED by this snapshot when removed, else EXISTING with the snapshot id
 * and sequence numbers they had), then the added files (ADDED). The taken manifests'
 * DELETED entries are dropped: they belonged to the snapshot that deleted them. */
static int gather(attempt *a, ice__entry **out, size_t *n, char *err, size_t errlen)
{
    const ice_change *c = a->c;
    size_t cap = c->nadd, k = 0;
    for (size_t i = 0; i < a->nb; i++)
        if (a->bstate[i] & TAKEN) cap += a->bne[i];
    ice__entry *all = calloc(cap + 1, sizeof *all);
    if (!all) return ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
    int rc = ICE_OK;
    for (size_t i = 0; i < a->nb; i++) {
        if (!(a->bstate[i] & TAKEN)) continue;
        for (size_t j = 0; j < a->bne[i]; j++) {
            ice__entry *e = &a->be[i][j];
            if (e->status == ICE__DELETED) continue;
            all[k] = *e;
            memset(&e->f, 0, sizeof e->f); /* now all's */
            if (removal_of(a, all[k].f.key) >= 0) {
                all[k].status = ICE__DELETED;
                all[k].f.snapshot_id = a->snapshot_id;
                a->removed_files++;
                a->removed_records += all[k].f.records;
                a->removed_bytes += all[k].f.bytes;
                if (note_hour(a, all[k].f.hour))
                    rc = ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
            } else {
                all[k].status = ICE__EXISTING;
            }
            k++;
        }
    }
    for (size_t i = 0; i < c->nadd; i++, k++) {
        all[k].status = ICE__ADDED;
        if (copy_file(&c->add[i], &all[k].f) || note_hour(a, c->add[i].hour))
            rc = ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
        all[k].f.snapshot_id = a->snapshot_id;
    }
    if (rc) {
        ice__entries_free(all, k);
        return rc;
    }
    qsort(all, k, sizeof *all, by_day_then_key);
    *out = all;
    *n = k;
    return ICE_OK;
}

/* Writes the manifest of the n entries e (one day's) as the k-th of this attempt. */
static int write_manifest(attempt *a, int k, const ice__entry *e, size_t n, char *err,
                          size_t errlen)
{
    char key[128];
    snprintf(key, sizeof key, "metadata/%s-m%d.avro", a->uuid, k);
    ice__manifest m = {0};
    m.seq = a->seq;
    m.added_snapshot_id = a->snapshot_id;
    if (remember(a, key)) return ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
    int rc = ice__manifest_write(a->s, a->location, key, e, n, &m, err, errlen);
    if (!rc && push_manifest(a, &m)) {
        free(m.path);
        rc = ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
    }
    return rc;
}

/* The list's order: by the partition summary's lower bound (none last), then path. */
static int by_lower_bound(const void *x, const void *y)
{
    const ice__manifest *a = x, *b = y;
    if (a->has_bounds != b->has_bounds) return b->has_bounds - a->has_bounds;
    if (a->has_bounds && a->lo != b->lo) return (a->lo > b->lo) - (a->lo < b->lo);
    return strcmp(a->path, b->path);
}

/*
 * The new snapshot's manifests: the days of the added and removed files are touched;
 * the base manifests that meet a touched day are taken and their days rewritten, one
 * manifest a day; the others (the untouched days') are reused as they are. Base
 * manifests with no live file (deletions recorded by an earlier snapshot) are dropped.
 */
static int build_manifests(attempt *a, char *err, size_t errlen)
{
    int rc = read_base(a, err, errlen);
    if (!rc) rc = find_removed(a, err, errlen);
    for (size_t i = 0; !rc && i < a->c->nadd; i++)
        if (touch_day(a, day_of(a->c->add[i].hour)))
            rc = ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
    if (!rc) rc = take_touched(a, err, errlen);
    ice__entry *all = NULL;
    size_t n = 0;
    if (!rc) rc = gather(a, &all, &n, err, errlen);
    int k = 0;
    for (size_t i = 0; !rc && i < n;) {
        size_t j = i + 1;
        while (j < n && day_of(all[j].f.hour) == day_of(all[i].f.hour)) j++;
        rc = write_manifest(a, k++, all + i, j - i, err, errlen);
        i = j;
    }
    ice__entries_free(all, n);
    for (size_t i = 0; !rc && i < a->nb; i++) {
        if ((a->bstate[i] & TAKEN) || !has_live(&a->bms[i])) continue;
        if (push_manifest(a, &a->bms[i]))
            rc = ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
        else
            a->bms[i].path = NULL; /* now a->ms's */
    }
    if (!rc && a->nms) qsort(a->ms, a->nms, sizeof *a->ms, by_lower_bound);
    return rc;
}

/* ---- the new metadata version -------------------------------------------------------- */

static int64_t summary_num(json_t *snap, const char *key)
{
    const char *v = json_string_value(json_object_get(json_object_get(snap, "summary"), key));
    return v ? strtoll(v, NULL, 10) : 0;
}

static int set_num(json_t *o, const char *key, int64_t v)
{
    char t[24];
    snprintf(t, sizeof t, "%" PRId64, v);
    return json_object_set_new(o, key, json_string(t));
}

static json_t *summary_json(attempt *a)
{
    const ice_change *c = a->c;
    int64_t add_rec = 0, add_bytes = 0;
    for (size_t i = 0; i < c->nadd; i++) {
        add_rec += c->add[i].records;
        add_bytes += c->add[i].bytes;
    }
    json_t *parent = a->base && a->parent_id >= 0 ? ice__snapshot(a->base, a->parent_id) : NULL;
    json_t *s = json_pack("{s:s}", "operation", c->operation);
    if (!s) return NULL;
    int bad = 0;
    if (c->nadd) {
        bad |= set_num(s, "added-data-files", (int64_t)c->nadd);
        bad |= set_num(s, "added-records", add_rec);
        bad |= set_num(s, "added-files-size", add_bytes);
    }
    if (c->nremove) {
        bad |= set_num(s, "deleted-data-files", a->removed_files);
        bad |= set_num(s, "deleted-records", a->removed_records);
        bad |= set_num(s, "removed-files-size", a->removed_bytes);
    }
    bad |= set_num(s, "total-records",
                   summary_num(parent, "total-records") + add_rec - a->removed_records);
    bad |= set_num(s, "total-files-size",
                   summary_num(parent, "total-files-size") + add_bytes - a->removed_bytes);
    bad |= set_num(s, "total-data-files",
                   summary_num(parent, "total-data-files") + (int64_t)c->nadd - a->removed_files);
    bad |= set_num(s, "changed-partition-count", distinct_hours(a));
    bad |= set_num(s, "total-delete-files", 0);
    bad |= set_num(s, "total-position-deletes", 0);
    bad |= set_num(s, "total-equality-deletes", 0);
    for (size_t i = 0; i < c->nsummary; i++)
        bad |= json_object_set_new(s, c->summary_keys[i], json_string(c->summary_values[i]));
    if (bad) {
        json_decref(s);
        return NULL;
    }
    return s;
}

/* The metadata of a new table: schema, spec, properties; no snapshot yet. */
static json_t *new_table_json(const char *location, int64_t now_ms)
{
    char uuid[37];
    unsigned char r[16];
    if (evrand_secure(r, sizeof r)) return NULL;
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40); /* version 4 */
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80); /* variant 10 */
    snprintf(uuid, sizeof uuid,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1],
             r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
             r[15]);
    char *mapping = ice__name_mapping();
    if (!mapping) return NULL;
    json_t *m = json_pack(
        "{s:i,s:s,s:s,s:I,s:I,s:i,s:i,s:[o],s:i,s:[{s:i,s:o}],s:i,s:i,s:[{s:i,s:[]}],"
        "s:{s:s,s:s,s:s,s:s},s:I,s:{},s:[],s:[],s:[],s:[]}",
        "format-version", 2, "table-uuid", uuid, "location", location, "last-sequence-number",
        (json_int_t)0, "last-updated-ms", (json_int_t)now_ms, "last-column-id", ICE__LAST_COLUMN,
        "current-schema-id", 0, "schemas", ice__schema_json(), "default-spec-id", 0,
        "partition-specs", "spec-id", 0, "fields", ice__spec_fields_json(), "last-partition-id",
        ICE__PART_FIELD, "default-sort-order-id", 0, "sort-orders", "order-id", 0, "fields",
        "properties", "write.format.default", "parquet", "write.parquet.compression-codec", "zstd",
        "write.metadata.previous-versions-max", "8", "schema.name-mapping.default", mapping,
        "current-snapshot-id", (json_int_t)-1, "refs", "snapshots", "snapshot-log", "metadata-log",
        "statistics");
    free(mapping);
    return m;
}

int ice__log_base(json_t *m, const ice_table *base)
{
    json_t *log = json_object_get(m, "metadata-log");
    json_t *prev = json_object_get(base->meta, "last-updated-ms");
    if (!json_is_array(log) ||
        json_array_append_new(log, json_pack("{s:O,s:s}", "timestamp-ms", prev, "metadata-file",
                                             base->metadata_file)))
        return -1;
    while (json_array_size(log) > ICE_KEEP_VERSIONS) json_array_remove(log, 0);
    return 0;
}

/* The new version's metadata: base's (or a new table's) with the new snapshot current. */
static json_t *next_metadata(attempt *a, const char *list_path)
{
    json_t *m = a->base ? json_deep_copy(a->base->meta) : new_table_json(a->location, a->now_ms);
    json_t *summary = summary_json(a);
    if (!m || !summary) goto fail;
    json_t *snap =
        json_pack("{s:I,s:I,s:I,s:s,s:o,s:i}", "snapshot-id", (json_int_t)a->snapshot_id,
                  "sequence-number", (json_int_t)a->seq, "timestamp-ms", (json_int_t)a->now_ms,
                  "manifest-list", list_path, "summary", summary, "schema-id", 0);
    summary = NULL;
    if (!snap) goto fail;
    if (a->parent_id >= 0)
        json_object_set_new(snap, "parent-snapshot-id", json_integer(a->parent_id));
    if (json_array_append_new(json_object_get(m, "snapshots"), snap) ||
        json_array_append_new(json_object_get(m, "snapshot-log"),
                              json_pack("{s:I,s:I}", "timestamp-ms", (json_int_t)a->now_ms,
                                        "snapshot-id", (json_int_t)a->snapshot_id)) ||
        json_object_set_new(m, "current-snapshot-id", json_integer(a->snapshot_id)) ||
        json_object_set_new(m, "refs",
                            json_pack("{s:{s:I,s:s}}", "main", "snapshot-id",
                                      (json_int_t)a->snapshot_id, "type", "branch")) ||
        json_object_set_new(m, "last-sequence-number", json_integer(a->seq)) ||
        json_object_set_new(m, "last-updated-ms", json_integer(a->now_ms)) ||
        (a->base && ice__log_base(m, a->base)))
        goto fail;
    return m;
fail:
    json_decref(summary);
    json_decref(m);
    return NULL;
}

/* Proposes m (taken) as the version after base; on success *out (if out) is it.
 * *outcome: 0 not made, 1 made, -1 unknown (the catalog failed: the answer may be lost). */
int ice__swap(const ice_catalog *cat, const ice_table *base, json_t *m, const char *location,
              ice_table **out, int *outcome, char *err, size_t errlen)
{
    int64_t version = base ? base->version + 1 : 1;
    char *text = json_dumps(m, JSON_INDENT(2));
    if (!text) {
        json_decref(m);
        return ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
    }
    int rc = cat->ops->swap(cat->cat, base, version, text, strlen(text), err, errlen);
    free(text);
    *outcome = rc == ICE_OK ? 1 : rc == ICE_ECONFLICT ? 0 : -1;
    if (rc || !out) {
        json_decref(m);
        return rc;
    }
    char file[ICE__PATH];
    snprintf(file, sizeof file, "%s/metadata/v%" PRId64 ".metadata.json", location, version);
    return ice__table_new(m, version, file, out, err, errlen);
}

static int check_change(const ice_change *c, char *err, size_t errlen)
{
    if (!c->operation || (strcmp(c->operation, "append") && strcmp(c->operation, "replace") &&
                          strcmp(c->operation, "delete") && strcmp(c->operation, "overwrite")))
        return ice__fail(err, errlen, ICE_EINVAL,
                         "iceberg: operation %s is not one of append, "
                         "replace, overwrite, delete",
                         c->operation ? c->operation : "(none)");
    if (!c->nadd && !c->nremove)
        return ice__fail(err, errlen, ICE_EINVAL,
                         "iceberg: a change with no file to add or remove");
    for (size_t i = 0; i < c->nadd; i++)
        if (!c->add[i].key || !store_key_valid(c->add[i].key) || c->add[i].records < 0)
            return ice__fail(err, errlen, ICE_EINVAL,
                             "iceberg: added file %zu: %s is not a "
                             "valid key",
                             i, c->add[i].key ? c->add[i].key : "(null)");
    return ICE_OK;
}

int ice_commit(const ice_catalog *cat, store *s, const ice_table *base, const ice_change *c,
               int64_t now_ms, ice_table **out, char *err, size_t errlen)
{
    int rc = check_change(c, err, errlen);
    if (rc) return rc;
    attempt a = {.cat = cat, .s = s, .base = base, .c = c, .now_ms = now_ms};
    a.location = base ? base->location : s->url;
    a.snapshot_id = new_snapshot_id();
    a.parent_id = base ? base->snapshot_id : -1;
    a.seq = base ? json_integer_value(json_object_get(base->meta, "last-sequence-number")) + 1 : 1;
    evrand_uuid7(a.uuid);
    rc = build_manifests(&a, err, errlen);
    char key[160], path[ICE__PATH];
    snprintf(key, sizeof key, "metadata/snap-%" PRId64 "-%s.avro", a.snapshot_id, a.uuid);
    snprintf(path, sizeof path, "%s/%s", a.location, key);
    if (!rc && remember(&a, key)) rc = ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
    if (!rc)
        rc = ice__list_write(s, key, a.ms, a.nms, a.snapshot_id, a.parent_id, a.seq, err, errlen);
    if (!rc) lake_test_kill_at("manifest-list");
    int outcome = 0;
    if (!rc) {
        json_t *m = next_metadata(&a, path);
        rc = m ? ice__swap(cat, base, m, a.location, out, &outcome, err, errlen)
               : ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
    }
    /* a version that was made, or may have been (a lost answer), keeps what it names */
    if (rc && outcome == 0) undo(&a);
    ice__manifests_free(a.ms, a.nms);
    ice_keys_free(a.written, a.nwritten);
    free(a.hours);
    for (size_t i = 0; a.be && a.bne && i < a.nb; i++) ice__entries_free(a.be[i], a.bne[i]);
    ice__manifests_free(a.bms, a.nb);
    free(a.be);
    free(a.bne);
    free(a.bstate);
    free(a.days);
    free(a.rm);
    free(a.found);
    return rc;
}

int ice_commit_retry(const ice_catalog *cat, store *s, const ice_change *c, int64_t now_ms,
                     int attempts, ice_table **out, char *err, size_t errlen)
{
    int rc = ICE_ECONFLICT;
    for (int i = 0; i < attempts && rc == ICE_ECONFLICT; i++) {
        ice_table *base = NULL;
        rc = cat->ops->load(cat->cat, &base, err, errlen);
        if (rc && rc != ICE_ENOTABLE) return rc;
        rc = ice_commit(cat, s, base, c, now_ms, out, err, errlen);
        ice_table_free(base);
    }
    return rc;
}

/* ---- listing ---------------------------------------------------------------------------- */

static int by_key(const void *x, const void *y)
{
    return strcmp(((const ice_file *)x)->key, ((const ice_file *)y)->key);
}

int ice__snapshot_manifests(store *s, const ice_table *t, int64_t snapshot_id, ice__manifest **ms,
                            size_t *n, char *err, size_t errlen)
{
    *ms = NULL;
    *n = 0;
    if (snapshot_id < 0) return ICE_OK;
    const char *list =
        json_string_value(json_object_get(ice__snapshot(t, snapshot_id), "manifest-list"));
    if (!list)
        return ice__fail(err, errlen, ICE_EFORMAT,
                         "iceberg: %s: snapshot %" PRId64 " has no manifest-list", t->metadata_file,
                         snapshot_id);
    return ice__list_read(s, t->location, list, ms, n, err, errlen);
}

int ice_files(store *s, const ice_table *t, int64_t lo, int64_t hi, ice_file **out, size_t *n,
              char *err, size_t errlen)
{
    return ice_snapshot_files(s, t, t->snapshot_id, lo, hi, out, n, err, errlen);
}

int ice_snapshot_files(store *s, const ice_table *t, int64_t snapshot_id, int64_t lo, int64_t hi,
                       ice_file **out, size_t *n, char *err, size_t errlen)
{
    ice__manifest *ms;
    size_t nm, nf = 0, cap = 0;
    ice_file *files = NULL;
    *out = NULL;
    *n = 0;
    int rc = ice__snapshot_manifests(s, t, snapshot_id, &ms, &nm, err, errlen);
    if (rc) return rc;
    for (size_t i = 0; i < nm && !rc; i++) {
        if (ms[i].has_bounds && (ms[i].hi < lo || ms[i].lo > hi)) continue;
        if (ms[i].added_files + ms[i].existing_files == 0) continue;
        ice__entry *e;
        size_t ne;
        rc = ice__manifest_read_hours(s, t->location, &ms[i], lo, hi, &e, &ne, err, errlen);
        if (rc) break;
        for (size_t j = 0; !rc && j < ne; j++) {
            if (e[j].status == ICE__DELETED || e[j].f.hour < lo || e[j].f.hour > hi) continue;
            if (nf == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                ice_file *f2 = realloc(files, ncap * sizeof *files);
                if (!f2) {
                    rc = ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
                    break;
                }
                files = f2;
                cap = ncap;
            }
            files[nf++] = e[j].f;
            memset(&e[j].f, 0, sizeof e[j].f); /* now files' */
        }
        ice__entries_free(e, ne);
    }
    ice__manifests_free(ms, nm);
    if (rc) {
        ice_files_free(files, nf);
        return rc;
    }
    if (nf) qsort(files, nf, sizeof *files, by_key);
    *out = files;
    *n = nf;
    return ICE_OK;
}
