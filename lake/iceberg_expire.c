/*
 * iceberg_expire.c - expiring old snapshots of the Iceberg table (iceberg.h).
 *
 * An expiry is a metadata-only commit: the new version lists fewer snapshots.
 * What it no longer names is returned, not deleted: the caller deletes it after
 * the commit won, so a reader of the previous version loses nothing before the
 * new version exists. A data file is returned only when no kept snapshot has it
 * live (ADDED or EXISTING in one of its manifests); a manifest only when no kept
 * snapshot's list holds it.
 */
#include "iceberg_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A set of strings: appended, then sorted once for lookups. */
typedef struct strset {
    char **v;
    size_t n, cap;
} strset;

static int set_add(strset *s, const char *str)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        char **v = realloc(s->v, cap * sizeof *v);
        if (!v) return -1;
        s->v = v;
        s->cap = cap;
    }
    if (!(s->v[s->n] = strdup(str))) return -1;
    s->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void set_sort(strset *s)
{
    if (s->n) qsort(s->v, s->n, sizeof *s->v, cmp_str);
}

static int set_has(const strset *s, const char *str)
{
    return s->n && bsearch(&str, s->v, s->n, sizeof *s->v, cmp_str) != NULL;
}

/* Adds str to s kept sorted: 1 when it was there already, -1 when memory runs out. */
static int set_insert(strset *s, const char *str)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->v[mid], str);
        if (!c) return 1;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (set_add(s, str)) return -1;
    char *added = s->v[s->n - 1];
    memmove(&s->v[lo + 1], &s->v[lo], (s->n - 1 - lo) * sizeof *s->v);
    s->v[lo] = added;
    return 0;
}

static void set_free(strset *s)
{
    ice_keys_free(s->v, s->n);
    memset(s, 0, sizeof *s);
}

/* What the kept and the expired snapshots name. */
typedef struct names {
    strset kept_manifests, kept_files; /* paths; keys of live data files */
    strset old_lists, old_manifests, old_files;
} names;

/* Adds the manifests of the snapshot's list to manifests and the keys of its files
 * (live ones only if live) to files; manifests already in seen are not read again. */
static int collect(store *s, const ice_table *t, int64_t id, strset *manifests, strset *files,
                   int live, strset *seen, char *err, size_t errlen)
{
    ice__manifest *ms;
    size_t n;
    int rc = ice__snapshot_manifests(s, t, id, &ms, &n, err, errlen);
    for (size_t i = 0; i < n && !rc; i++) {
        int dup = set_insert(seen, ms[i].path); /* sorted: a snapshot's list is a day each */
        if (dup == 1) continue;
        if (dup < 0 || (manifests != seen && set_add(manifests, ms[i].path))) {
            rc = ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
            break;
        }
        ice__entry *e;
        size_t ne;
        rc = ice__manifest_read(s, t->location, &ms[i], &e, &ne, err, errlen);
        if (rc) break;
        for (size_t j = 0; !rc && j < ne; j++)
            if ((!live || e[j].status != ICE__DELETED) && set_add(files, e[j].f.key))
                rc = ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
        ice__entries_free(e, ne);
    }
    ice__manifests_free(ms, n);
    return rc;
}

static int is_kept(json_t *snap, int64_t current, int64_t older_than_ms)
{
    int64_t id = json_integer_value(json_object_get(snap, "snapshot-id"));
    return id == current ||
           json_integer_value(json_object_get(snap, "timestamp-ms")) >= older_than_ms;
}

/* Reads what every snapshot names, into nm; the kept snapshots' into kept_ids. */
static int gather(store *s, const ice_table *t, int64_t older_than_ms, names *nm, char *err,
                  size_t errlen)
{
    json_t *snaps = json_object_get(t->meta, "snapshots"), *snap;
    size_t i;
    strset seen_kept = {0}, seen_old = {0};
    int rc = ICE_OK;
    json_array_foreach(snaps, i, snap)
    {
        if (rc || !is_kept(snap, t->snapshot_id, older_than_ms)) continue;
        int64_t id = json_integer_value(json_object_get(snap, "snapshot-id"));
        rc = collect(s, t, id, &nm->kept_manifests, &nm->kept_files, 1, &seen_kept, err, errlen);
    }
    json_array_foreach(snaps, i, snap)
    {
        if (rc || is_kept(snap, t->snapshot_id, older_than_ms)) continue;
        int64_t id = json_integer_value(json_object_get(snap, "snapshot-id"));
        const char *list = json_string_value(json_object_get(snap, "manifest-list"));
        if (list && set_add(&nm->old_lists, list))
            rc = ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
        if (!rc)
            rc = collect(s, t, id, &nm->old_manifests, &nm->old_files, 0, &seen_old, err, errlen);
    }
    set_free(&seen_kept);
    set_free(&seen_old);
    set_sort(&nm->kept_manifests);
    set_sort(&nm->kept_files);
    return rc;
}

/* base's metadata with only the kept snapshots (and their log entries). */
static json_t *expired_metadata(const ice_table *base, int64_t older_than_ms, int64_t now_ms)
{
    json_t *m = json_deep_copy(base->meta);
    json_t *kept = json_array(), *log = json_array(), *snap;
    size_t i;
    if (!m || !kept || !log) goto fail;
    json_array_foreach(json_object_get(m, "snapshots"), i, snap)
    {
        if (is_kept(snap, base->snapshot_id, older_than_ms) && json_array_append(kept, snap))
            goto fail;
    }
    json_array_foreach(json_object_get(m, "snapshot-log"), i, snap)
    {
        int64_t id = json_integer_value(json_object_get(snap, "snapshot-id"));
        size_t j;
        json_t *k;
        json_array_foreach(kept, j, k)
        {
            if (json_integer_value(json_object_get(k, "snapshot-id")) == id) {
                if (json_array_append(log, snap)) goto fail;
                break;
            }
        }
    }
    if (json_object_set_new(m, "snapshots", kept) || json_object_set_new(m, "snapshot-log", log) ||
        json_object_set_new(m, "last-updated-ms", json_integer(now_ms)) || ice__log_base(m, base)) {
        json_decref(m);
        return NULL;
    }
    return m;
fail:
    json_decref(kept);
    json_decref(log);
    json_decref(m);
    return NULL;
}

/* Appends to out the keys of the old snapshots' files that nothing kept names. */
static int unnamed(const ice_table *t, const names *nm, strset *out)
{
    for (size_t i = 0; i < nm->old_lists.n; i++) {
        const char *key = ice__key_of(t->location, nm->old_lists.v[i]);
        if (key && set_add(out, key)) return -1;
    }
    for (size_t i = 0; i < nm->old_manifests.n; i++) {
        const char *key = ice__key_of(t->location, nm->old_manifests.v[i]);
        if (key && !set_has(&nm->kept_manifests, nm->old_manifests.v[i]) && set_add(out, key))
            return -1;
    }
    strset files = nm->old_files;
    set_sort(&files);
    for (size_t i = 0; i < files.n; i++)
        if ((i == 0 || strcmp(files.v[i], files.v[i - 1])) &&
            !set_has(&nm->kept_files, files.v[i]) && set_add(out, files.v[i]))
            return -1;
    return 0;
}

typedef struct old_versions {
    int64_t below;
    strset *out;
    int oom;
} old_versions;

static int list_old_version(const store_entry *e, void *ud)
{
    old_versions *o = ud;
    int64_t v = ice__version_of_key(e->key);
    if (v > 0 && v < o->below && set_add(o->out, e->key)) o->oom = 1;
    return o->oom;
}

int ice_expire(const ice_catalog *cat, store *s, const ice_table *base, int64_t older_than_ms,
               int64_t now_ms, ice_table **out, char ***keys, size_t *nkeys, char *err,
               size_t errlen)
{
    names nm = {0};
    strset del = {0};
    int outcome = 0;
    int rc = gather(s, base, older_than_ms, &nm, err, errlen);
    if (rc) goto done;
    if (unnamed(base, &nm, &del)) {
        rc = ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
        goto done;
    }
    json_t *m = expired_metadata(base, older_than_ms, now_ms);
    if (!m) {
        rc = ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
        goto done;
    }
    rc = ice__swap(cat, base, m, base->location, out, &outcome, err, errlen);
    if (rc) goto done;
    old_versions o = {base->version + 1 - ICE_KEEP_VERSIONS, &del, 0};
    if (store_list(s, "metadata/", list_old_version, &o, err, errlen) || o.oom) {
        /* the expiry is committed; the old versions are left for the next one */
        if (o.oom) rc = ice__fail(err, errlen, ICE_ENOMEM, "iceberg: out of memory");
    }
done:
    if (rc && outcome == 1 && out) { /* committed, but the keys are not to be had */
        ice_table_free(*out);
        *out = NULL;
    }
    set_free(&nm.kept_manifests);
    set_free(&nm.kept_files);
    set_free(&nm.old_lists);
    set_free(&nm.old_manifests);
    set_free(&nm.old_files);
    if (rc) {
        set_free(&del);
        return rc;
    }
    *keys = del.v;
    *nkeys = del.n;
    return ICE_OK;
}
