/*
 * compact_table.c - what a compaction run commits to the table (compact.h):
 * an hour's new files, the compacted files they replace and the segments they
 * fold in, in one commit; the conversion of a lake of per-hour manifests, in
 * one commit that creates the table; and expiry, which deletes what expiring
 * snapshots folded in before it drops them. EVENTS_TEST_KILL_AT=parquet stops
 * a run once an hour's new files are put (testkill.h).
 */
#include "compact_int.h"

#include "evtime.h"
#include "layout.h"
#include "testkill.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 1 if a snapshot of the table other than the current one has the file (of the hour), 0 if
 * none has, -1 when that cannot be read. */
static int in_older_snapshot(compact__run *r, const char *key, int64_t hour)
{
    json_t *snaps = json_object_get(ice_table_json(r->lt.t), "snapshots");
    int64_t current = ice_table_snapshot_id(r->lt.t);
    size_t i;
    json_t *sn;
    json_array_foreach(snaps, i, sn)
    {
        int64_t id = json_integer_value(json_object_get(sn, "snapshot-id"));
        if (id == current) continue;
        ice_file *f;
        size_t n;
        char m[512];
        if (ice_snapshot_files(r->cfg->store, r->lt.t, id, hour, hour, &f, &n, m, sizeof m))
            return -1;
        int found = 0;
        for (size_t k = 0; k < n && !found; k++) found = !strcmp(f[k].key, key);
        ice_files_free(f, n);
        if (found) return 1;
    }
    return 0;
}

/*
 * With the table, in a sweep: a Parquet file no snapshot names (of a run that stopped before its
 * commit) goes once it is older than retain_ms. What snapshots folded in goes by its key
 * (collect_all_folded); the table's own Parquet files with the snapshots that name them
 * (expire_table).
 */
void compact__collect_table(compact__run *r, lake_partition *p)
{
    char why[512];
    for (size_t i = 0; i < p->n; i++) {
        lake_part_file *f = &p->f[i];
        if (f->live || !f->parquet || lake_table_folded_at(&r->lt, f->key) >= 0) continue;
        if (f->mtime_ms <= compact__keep_after(r) && !in_older_snapshot(r, f->key, p->hour) &&
            !compact__del(r, f->key))
            r->st->deleted++;
    }
    /* a rollup without its file (a run stopped between the two puts, or a delete of the rollup
     * that failed) */
    for (size_t i = 0; i < p->nrollups; i++)
        if (p->rollups[i].orphan && p->rollups[i].mtime_ms <= compact__keep_after(r) &&
            !store_del(r->cfg->store, p->rollups[i].key, why, sizeof why))
            r->st->deleted++;
}

/* ---- commits to the table ---------------------------------------------------------- */

/* A change to the table being gathered: files added, removed, and folded in (table.h). */
typedef struct change {
    ice_file *add;
    size_t nadd, cap;
    const char **remove; /* keys, owned by the partition listing */
    size_t nremove, rcap;
    json_t *folded; /* array of keys */
} change;

static void change_free(change *c)
{
    ice_files_free(c->add, c->nadd);
    free(c->remove);
    json_decref(c->folded);
    memset(c, 0, sizeof *c);
}

/* Adds the Parquet file at path (local), to be key in the lake, with its statistics. */
static int change_add(compact__run *r, change *c, const char *path, const char *key, int64_t hour)
{
    if (c->nadd == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 16;
        ice_file *na = realloc(c->add, nc * sizeof *na);
        if (!na) return snprintf(r->err, r->errlen, "out of memory"), -1;
        c->add = na, c->cap = nc;
    }
    ice_file *f = &c->add[c->nadd];
    memset(f, 0, sizeof *f);
    char m[1024];
    if (ice_stats_from_parquet(r->con, path, f, m, sizeof m)) {
        snprintf(r->err, r->errlen, "compaction: %s", m);
        return -1;
    }
    if (!(f->key = strdup(key))) {
        ice_file_clear(f);
        return snprintf(r->err, r->errlen, "out of memory"), -1;
    }
    f->hour = hour;
    c->nadd++;
    return 0;
}

static int change_remove(compact__run *r, change *c, const char *key)
{
    if (c->nremove == c->rcap) {
        size_t nc = c->rcap ? c->rcap * 2 : 16;
        const char **nr = realloc(c->remove, nc * sizeof *nr);
        if (!nr) return snprintf(r->err, r->errlen, "out of memory"), -1;
        c->remove = nr, c->rcap = nc;
    }
    c->remove[c->nremove++] = key;
    return 0;
}

static int change_fold(compact__run *r, change *c, const char *key)
{
    if ((!c->folded && !(c->folded = json_array())) ||
        json_array_append_new(c->folded, json_string(key)))
        return snprintf(r->err, r->errlen, "out of memory"), -1;
    return 0;
}

/* 1 if a kept snapshot of base has folded in one of the segments the change folds in. */
static int folded_already(const lake_table *base, const json_t *folded)
{
    size_t i;
    json_t *k;
    json_array_foreach(folded, i,
                       k) if (lake_table_folded_at(base, json_string_value(k)) >= 0) return 1;
    return 0;
}

/*
 * Commits the change on the table's current version (created if there is none), retrying on a
 * newer base; the files it removes are of the hour `hour` (INT64_MIN: of any). 0 committed, 1
 * lost: another compactor was first (two leases can overlap when clocks disagree), so a file
 * it removes is no longer live, or a segment it folds in is folded in already (its events are
 * in the other's files: committing ours too would make them live twice). -1 error (r->err).
 */
static int change_commit(compact__run *r, change *c, int64_t hour)
{
    const char *op = !c->nremove ? "append" : c->folded ? "overwrite" : "replace";
    char *folded = c->folded ? json_dumps(c->folded, JSON_COMPACT) : NULL;
    const char *key = LAKE_TABLE_FOLDED, *value = folded;
    ice_change ch = {.operation = op,
                     .add = c->add,
                     .nadd = c->nadd,
                     .remove = c->remove,
                     .nremove = c->nremove,
                     .summary_keys = folded ? &key : NULL,
                     .summary_values = folded ? &value : NULL,
                     .nsummary = folded ? 1 : 0,
                     .remove_hours_known = hour != INT64_MIN,
                     .remove_lo = hour,
                     .remove_hi = hour};
    if (c->folded && !folded) return snprintf(r->err, r->errlen, "out of memory"), -1;
    ice_catalog cat = ice_store_catalog(r->cfg->store);
    char m[1024];
    int64_t now = evtime_now_ms();
    int rc = ICE_ECONFLICT;
    for (int attempt = 0; attempt < 8 && rc == ICE_ECONFLICT; attempt++) {
        lake_table base;
        if (lake_table_load(r->cfg->store, &base, m, sizeof m)) {
            rc = ICE_EIO;
            break;
        }
        rc = c->folded && folded_already(&base, c->folded)
                 ? ICE_ESTALE
                 : ice_commit(&cat, r->cfg->store, base.t, &ch, now, NULL, m, sizeof m);
        lake_table_free(&base);
    }
    free(folded);
    if (rc == ICE_ESTALE) return 1;
    if (rc) {
        snprintf(r->err, r->errlen, "compaction: cannot commit to the table: %s", m);
        return -1;
    }
    return 0;
}

/* Deletes the first n new files and their rollups from the lake (never committed: no reader has
 * them). */
static void unput(compact__run *r, int64_t hour, const compact_hour_result *res, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char key[LAKE_KEY_MAX];
        lake_parquet_key(hour, res->out[i].uuid, key);
        compact__del(r, key);
    }
}

/* An hour's new files into c (with their statistics), then into the lake. 0 or -1. */
static int put_outputs(compact__run *r, lake_partition *p, const compact_hour_result *res,
                       change *c)
{
    char why[512];
    for (size_t i = 0; i < res->nout; i++) {
        char key[LAKE_KEY_MAX], rkey[LAKE_KEY_MAX];
        lake_parquet_key(p->hour, res->out[i].uuid, key);
        /* the rollups first: a listed file whose rollup is not there yet would be read whole */
        for (int k = 0; k < LAKE_ROLLUP_KINDS; k++)
            if (res->out[i].rollup[k] && !lake_rollup_key_of(key, k, rkey) &&
                store_put_file(r->cfg->store, rkey, res->out[i].rollup[k], STORE_MOVE, why,
                               sizeof why)) {
                snprintf(r->err, r->errlen, "compaction: cannot put %s: %s", rkey, why);
                unput(r, p->hour, res, i + 1);
                return -1;
            }
        if (change_add(r, c, res->out[i].path, key, p->hour) ||
            store_put_file(r->cfg->store, key, res->out[i].path, STORE_MOVE, why, sizeof why)) {
            if (!r->err[0]) snprintf(r->err, r->errlen, "compaction: cannot put %s: %s", key, why);
            unput(r, p->hour, res, i + 1);
            return -1;
        }
    }
    return 0;
}

void compact__count_done(compact__run *r, const inputs *in, const compact_hour_result *res)
{
    r->st->compacted++;
    r->st->rows += res->rows;
    r->st->files_out += res->nout;
    for (size_t k = 0; k < in->n; k++) r->st->files_in += !in->hin[k].kept;
    for (size_t i = 0; i < res->nout; i++) r->st->bytes_out += res->out[i].bytes;
}

/* Deletes the markers of the pending index (layout.h) of the segments a commit folded in. */
static void unmark(compact__run *r, json_t *folded)
{
    size_t i;
    json_t *k;
    char pkey[LAKE_KEY_MAX], why[512];
    json_array_foreach(folded, i, k)
    {
        int64_t hour;
        const char *ext;
        const char *key = json_string_value(k);
        if (!key || lake_parse_event_key(key, &hour, &ext) || strcmp(ext, "jsonl")) continue;
        lake_pending_key(key, pkey);
        store_del(r->cfg->store, pkey, why, sizeof why);
    }
}

/*
 * The new files into the lake, then one commit that makes them live, removes the compacted
 * files they replace and folds in the segments they hold. 0 or -1.
 */
int compact__publish(compact__run *r, lake_partition *p, const inputs *in,
                     const compact_hour_result *res)
{
    change c;
    memset(&c, 0, sizeof c);
    int rc = put_outputs(r, p, res, &c);
    if (!rc) lake_test_kill_at("parquet");
    for (size_t k = 0; !rc && k < in->n; k++) {
        const lake_part_file *f = &p->f[in->file[k]];
        if (!f->parquet)
            rc = change_fold(r, &c, f->key);
        else if (!in->hin[k].kept)
            rc = change_remove(r, &c, f->key);
    }
    /* renewed first: the work above may have taken minutes */
    if (!rc) rc = compact__lease_keep(&r->lease, r->err, r->errlen);
    if (rc) {
        unput(r, p->hour, res, res->nout);
        change_free(&c);
        return -1;
    }
    rc = change_commit(r, &c, p->hour);
    if (!rc && c.folded) unmark(r, c.folded);
    change_free(&c);
    if (rc == 1) {
        /* another compactor replaced these files first: ours are named by no snapshot */
        r->st->conflicts++;
        unput(r, p->hour, res, res->nout);
        return 0;
    }
    /* an error: the commit may have landed all the same (an answer lost after the write), so
     * the files stay */
    if (rc) return -1;
    compact__count_done(r, in, res);
    return 0;
}

/* ---- a lake of the manifests' time, converted once --------------------------------- */

/*
 * A lake compacted before the table has a manifest per compacted hour (partition.h). It is
 * converted by one commit that creates the table (so that readers switch from every manifest
 * to the table at once): each such hour is compacted again, its files of the first layout
 * written anew and its other files kept, all of them added; its live segments, the files its
 * manifests had replaced and the manifests themselves are folded in, deleted --compact-retain
 * later. Hours without a manifest (segments only) need nothing: their segments are live as
 * they are.
 */
typedef struct compact__convert {
    change c;
    uint64_t hours;
} compact__convert;

static int convert_hour(compact__run *r, lake_partition *p, compact__convert *cv)
{
    inputs in;
    compact_hour_result res;
    if (compact__files(r, p, 0, &in, &res)) return -1;
    int rc = put_outputs(r, p, &res, &cv->c);
    for (size_t k = 0; !rc && k < in.n; k++) {
        const lake_part_file *f = &p->f[in.file[k]];
        if (!f->parquet)
            rc = change_fold(r, &cv->c, f->key);
        else if (in.hin[k].kept)
            rc = change_add(r, &cv->c, in.hin[k].path, f->key, p->hour);
    }
    char mkey[LAKE_KEY_MAX];
    lake_manifest_key(p->hour, p->m.seq, mkey);
    if (!rc) rc = change_fold(r, &cv->c, mkey);
    for (size_t i = 0; !rc && i < p->nold; i++) rc = change_fold(r, &cv->c, p->old_manifests[i]);
    for (size_t i = 0; !rc && i < p->n; i++)
        if (!p->f[i].live) rc = change_fold(r, &cv->c, p->f[i].key);
    if (!rc) compact__count_done(r, &in, &res);
    compact__files_free(r, &in, &res);
    cv->hours++;
    return rc;
}

static int on_convert(lake_partition *p, void *ud)
{
    compact__run *r = ud;
    r->now = evtime_now_ms();
    if (!p->has_manifest) return 0;
    return convert_hour(r, p, r->cv) ? -1 : 0;
}

/* Converts a lake without a table that has manifests. 0 (also: nothing to convert), or -1. */
int compact__convert_lake(compact__run *r)
{
    compact__convert cv;
    memset(&cv, 0, sizeof cv);
    r->cv = &cv;
    char m[1024] = "";
    int rc =
        lake_partitions_list(r->cfg->store, NULL, LAKE_EVENTS_PREFIX, on_convert, r, m, sizeof m);
    if (rc && !r->err[0]) snprintf(r->err, r->errlen, "compaction: %s", m);
    if (!rc && cv.hours) {
        rc = compact__lease_keep(&r->lease, r->err, r->errlen);
        if (!rc) rc = change_commit(r, &cv.c, INT64_MIN);
        /* another compactor converted the lake first: its table stands, our files are named by
         * no snapshot */
        if (rc == 1) r->st->conflicts++, rc = 0;
        if (!rc) {
            lake_table_free(&r->lt);
            rc = lake_table_load(r->cfg->store, &r->lt, r->err, r->errlen);
        }
    }
    /* on failure the new files are named by no snapshot: a later run deletes them */
    change_free(&cv.c);
    r->cv = NULL;
    return rc ? -1 : 0;
}

/* ---- expiry -------------------------------------------------------------------------- */

/*
 * Deletes what an expiring snapshot folded in (its segments; at the conversion, the manifests
 * and the files they had replaced): by key, from the table's metadata, without listing the
 * lake. 0, or -1 when some key could not be deleted.
 */
static int delete_folded(compact__run *r, json_t *snap)
{
    const char *text =
        json_string_value(json_object_get(json_object_get(snap, "summary"), LAKE_TABLE_FOLDED));
    json_t *keys = text ? json_loads(text, 0, NULL) : NULL;
    size_t i;
    json_t *k;
    int rc = 0;
    char why[512];
    json_array_foreach(keys, i, k)
    {
        const char *key = json_string_value(k);
        if (!key || !store_key_valid(key)) continue;
        if (store_del(r->cfg->store, key, why, sizeof why))
            rc = -1;
        else
            r->st->deleted++;
    }
    json_decref(keys);
    return rc;
}

/*
 * Expires the snapshots older than --compact-retain (the current one is kept) and deletes what
 * no kept snapshot names. First what they folded in is deleted: a dead segment must not outlive
 * the snapshot that says it is dead (table.h); if one cannot be, nothing expires this run.
 */
int compact__expire_table(compact__run *r)
{
    lake_table cur;
    char m[1024];
    if (lake_table_load(r->cfg->store, &cur, m, sizeof m) || !cur.t) {
        lake_table_free(&cur);
        return 0; /* a later run tries again */
    }
    r->now = evtime_now_ms();
    int64_t cutoff = compact__keep_after(r), current = ice_table_snapshot_id(cur.t);
    json_t *snaps = json_object_get(ice_table_json(cur.t), "snapshots");
    size_t i, old = 0;
    int failed = 0;
    json_t *sn;
    json_array_foreach(snaps, i, sn)
    {
        if (json_integer_value(json_object_get(sn, "snapshot-id")) == current ||
            json_integer_value(json_object_get(sn, "timestamp-ms")) >= cutoff)
            continue;
        old++;
        failed |= delete_folded(r, sn) != 0;
    }
    if (!old || failed) {
        lake_table_free(&cur);
        return 0;
    }
    ice_catalog cat = ice_store_catalog(r->cfg->store);
    char **keys = NULL;
    size_t n = 0;
    int rc = ice_expire(&cat, r->cfg->store, cur.t, cutoff, r->now, NULL, &keys, &n, m, sizeof m);
    lake_table_free(&cur);
    if (rc == ICE_ECONFLICT) return 0; /* a later run tries again */
    if (rc) {
        snprintf(r->err, r->errlen, "compaction: cannot expire the table's snapshots: %s", m);
        return -1;
    }
    for (size_t k = 0; k < n; k++)
        if (!compact__del(r, keys[k])) r->st->deleted++;
    ice_keys_free(keys, n);
    return 0;
}
