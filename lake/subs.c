/*
 * subs.c - webhook subscriptions' records and dead letters in the lake (subs.h).
 *
 * Reading a record is a listing of subscriptions/{id}/ (its few versions) to
 * find the largest, then a get of that version unless the cache already has
 * it: versions are immutable, so a cached (id, version) is the record for
 * good. Writing one is the read, the caller's edit on a copy, and a
 * conditional put of the next version; a lost race (STORE_EEXIST) starts
 * again from the read. After a write the version LAKE_SUBS_KEEP below it is
 * deleted, and a listing that sees more old versions than that deletes them
 * too, so an id holds about LAKE_SUBS_KEEP objects.
 *
 * The cache holds the last record read or written of each id; a listing of
 * the whole prefix drops the ids that are gone.
 */
#include "subs.h"
#include "evrand.h"
#include "evtime.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cached {
    char id[LAKE_SUB_ID_MAX + 1];
    uint64_t version;
    json_t *rec; /* NULL: a tombstone */
} cached;

struct lake_subs {
    store *s;
    int put_flags;      /* STORE_IF_ABSENT, and STORE_NOSYNC after lake_subs_unsynced */
    pthread_mutex_t mu; /* guards the cache: any thread reading or writing a record */
    cached *c;
    size_t n, cap;
};

/* ---- the cache ----------------------------------------------------------------------------- */

static cached *cache_find(lake_subs *h, const char *id)
{
    for (size_t i = 0; i < h->n; i++)
        if (!strcmp(h->c[i].id, id)) return &h->c[i];
    return NULL;
}

/* A copy of the cached record of (id, version): 1 and *rec (NULL for a tombstone), or 0. */
static int cache_get(lake_subs *h, const char *id, uint64_t version, json_t **rec)
{
    pthread_mutex_lock(&h->mu);
    cached *e = cache_find(h, id);
    int hit = e && e->version == version;
    if (hit) {
        *rec = e->rec ? json_deep_copy(e->rec) : NULL;
        hit = !e->rec || *rec; /* a failed copy: read it from the store */
    }
    pthread_mutex_unlock(&h->mu);
    return hit;
}

static int is_tombstone(const json_t *rec)
{
    const char *state = json_string_value(json_object_get(rec, "state"));
    return state && !strcmp(state, "deleted");
}

/* Keeps a copy of rec (NULL or deleted: a tombstone) as (id, version); a failure only costs a
 * later get. */
static void cache_put(lake_subs *h, const char *id, uint64_t version, const json_t *rec)
{
    if (rec && is_tombstone(rec)) rec = NULL;
    json_t *copy = rec ? json_deep_copy(rec) : NULL;
    if (rec && !copy) return;
    pthread_mutex_lock(&h->mu);
    cached *e = cache_find(h, id);
    if (!e && h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        cached *c = realloc(h->c, cap * sizeof *c);
        if (c) h->c = c, h->cap = cap;
    }
    if (!e && h->n < h->cap) {
        e = &h->c[h->n++];
        snprintf(e->id, sizeof e->id, "%s", id);
        e->rec = NULL;
        e->version = 0;
    }
    if (e && version >= e->version) {
        json_decref(e->rec);
        e->rec = copy, e->version = version, copy = NULL;
    }
    pthread_mutex_unlock(&h->mu);
    json_decref(copy);
}

/* put_version's answer when another writer put the version first: try again */
#define LOST_RACE 1

/* ---- versions ------------------------------------------------------------------------------ */

typedef struct versions {
    const char *id; /* NULL: every id (the listing of the whole prefix) */
    struct idv {
        char id[LAKE_SUB_ID_MAX + 1];
        uint64_t latest, oldest, count;
    } * v;
    size_t n, cap;
    int oom;
} versions;

static int on_version(const store_entry *e, void *ud)
{
    versions *vs = ud;
    char id[LAKE_SUB_ID_MAX + 1];
    uint64_t ver;
    if (lake_parse_sub_key(e->key, id, &ver) || (vs->id && strcmp(id, vs->id))) return 0;
    /* listed in key order: an id's versions are together, so a new id is a new last entry */
    if (!vs->n || strcmp(vs->v[vs->n - 1].id, id)) {
        if (vs->n == vs->cap) {
            size_t cap = vs->cap ? vs->cap * 2 : 16;
            struct idv *v = realloc(vs->v, cap * sizeof *v);
            if (!v) return vs->oom = 1;
            vs->v = v, vs->cap = cap;
        }
        struct idv *nv = &vs->v[vs->n++];
        memcpy(nv->id, id, sizeof id);
        nv->latest = nv->oldest = ver;
        nv->count = 0;
    }
    struct idv *last = &vs->v[vs->n - 1];
    if (ver > last->latest) last->latest = ver;
    if (ver < last->oldest) last->oldest = ver;
    last->count++;
    return 0;
}

/* Lists the versions of id (NULL: of every id) into vs. 0 or LAKE_SUBS_EIO. */
static int list_versions(lake_subs *h, const char *id, versions *vs, char *err, size_t errlen)
{
    char prefix[LAKE_KEY_MAX], why[512];
    snprintf(prefix, sizeof prefix, LAKE_SUBS_PREFIX "%s%s", id ? id : "", id ? "/" : "");
    vs->id = id;
    if (store_list(h->s, prefix, on_version, vs, why, sizeof why) || vs->oom) {
        snprintf(err, errlen, "subscriptions: cannot list %s: %s", prefix,
                 vs->oom ? "out of memory" : why);
        return LAKE_SUBS_EIO;
    }
    return 0;
}

/* Deletes the versions of id from first up to, not including, below (best effort). */
static void trim(lake_subs *h, const char *id, uint64_t first, uint64_t below)
{
    for (uint64_t v = first; v < below; v++) {
        char key[LAKE_KEY_MAX], why[256];
        lake_sub_key(id, v, key);
        store_del(h->s, key, why, sizeof why);
    }
}

/* Version ver of id, from the cache or the store. 0 with *rec (NULL: a tombstone),
 * LAKE_SUBS_ENOENT (deleted meanwhile), LAKE_SUBS_EIO. */
static int load(lake_subs *h, const char *id, uint64_t ver, json_t **rec, char *err, size_t errlen)
{
    if (cache_get(h, id, ver, rec)) return 0;
    char key[LAKE_KEY_MAX], why[512];
    lake_sub_key(id, ver, key);
    buf b = BUF_INIT;
    int r = store_get(h->s, key, 0, 0, &b, why, sizeof why);
    if (r) {
        buf_free(&b);
        if (r == STORE_ENOENT) return LAKE_SUBS_ENOENT;
        snprintf(err, errlen, "subscriptions: cannot read %s: %s", key, why);
        return LAKE_SUBS_EIO;
    }
    json_error_t je;
    json_t *doc = json_loadb(b.p ? b.p : "", b.len, 0, &je);
    buf_free(&b);
    if (!json_is_object(doc)) {
        /* puts are whole (a temporary file linked in place), so this is what a machine crash
         * left of an unsynced write (lake_subs_unsynced): deleted, the version before it is
         * current again */
        json_decref(doc);
        if (!store_del(h->s, key, why, sizeof why)) return LAKE_SUBS_ENOENT;
        snprintf(err, errlen, "subscriptions: %s is not a JSON object", key);
        return LAKE_SUBS_EIO;
    }
    if (is_tombstone(doc)) json_decref(doc), doc = NULL;
    cache_put(h, id, ver, doc);
    *rec = doc;
    return 0;
}

/*
 * The current record of id: 0 with *rec (NULL: none or a tombstone) and
 * *ver (0: none), or LAKE_SUBS_EIO.
 */
static int current(lake_subs *h, const char *id, json_t **rec, uint64_t *ver, char *err,
                   size_t errlen)
{
    for (int tries = 0; tries < LAKE_SUBS_RETRIES; tries++) {
        versions vs = {0};
        int r = list_versions(h, id, &vs, err, errlen);
        *rec = NULL, *ver = 0;
        if (!r && vs.n) {
            *ver = vs.v[0].latest;
            if (vs.v[0].count > LAKE_SUBS_KEEP + 2)
                trim(h, id, vs.v[0].oldest, vs.v[0].latest + 1 - LAKE_SUBS_KEEP);
            r = load(h, id, *ver, rec, err, errlen);
        }
        free(vs.v);
        if (r != LAKE_SUBS_ENOENT) return r;
    }
    snprintf(err, errlen, "subscriptions: %s changed on every read", id);
    return LAKE_SUBS_EIO;
}

/* Puts rec as version ver of id: 0, LOST_RACE, or LAKE_SUBS_EIO/EINVAL. */
static int put_version(lake_subs *h, const char *id, uint64_t ver, json_t *rec, char *err,
                       size_t errlen)
{
    char *text = json_dumps(rec, JSON_COMPACT);
    if (!text) {
        snprintf(err, errlen, "subscriptions: out of memory");
        return LAKE_SUBS_EIO;
    }
    size_t len = strlen(text);
    if (len > LAKE_SUBS_MAX_RECORD) {
        free(text);
        snprintf(err, errlen, "subscriptions: a record of %zu bytes, at most %d", len,
                 LAKE_SUBS_MAX_RECORD);
        return LAKE_SUBS_EINVAL;
    }
    char key[LAKE_KEY_MAX], why[512];
    lake_sub_key(id, ver, key);
    int r = store_put(h->s, key, text, len, h->put_flags, why, sizeof why);
    free(text);
    if (r == STORE_EEXIST) return LOST_RACE;
    if (r) {
        snprintf(err, errlen, "subscriptions: cannot write %s: %s", key, why);
        return LAKE_SUBS_EIO;
    }
    cache_put(h, id, ver, rec);
    if (ver > LAKE_SUBS_KEEP) trim(h, id, ver - LAKE_SUBS_KEEP, ver + 1 - LAKE_SUBS_KEEP);
    return 0;
}

static void set_out(lake_sub *out, const char *id, uint64_t ver, json_t *rec)
{
    if (!out) {
        json_decref(rec);
        return;
    }
    snprintf(out->id, sizeof out->id, "%s", id);
    out->version = ver;
    out->rec = rec;
}

/* ---- the API ------------------------------------------------------------------------------- */

int lake_subs_open(store *s, lake_subs **out, char *err, size_t errlen)
{
    lake_subs *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "subscriptions: out of memory");
        return LAKE_SUBS_EIO;
    }
    h->s = s;
    h->put_flags = STORE_IF_ABSENT;
    pthread_mutex_init(&h->mu, NULL);
    *out = h;
    return 0;
}

void lake_subs_unsynced(lake_subs *h)
{
    h->put_flags |= STORE_NOSYNC;
}

void lake_subs_close(lake_subs *h)
{
    if (!h) return;
    for (size_t i = 0; i < h->n; i++) json_decref(h->c[i].rec);
    free(h->c);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

void lake_sub_free(lake_sub *s)
{
    if (!s) return;
    json_decref(s->rec);
    s->rec = NULL;
}

void lake_subs_free(lake_sub *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) lake_sub_free(&v[i]);
    free(v);
}

/* Drops from the cache the ids a listing of every id no longer has. */
static void cache_keep_only(lake_subs *h, const versions *vs)
{
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < h->n;) {
        int listed = 0;
        for (size_t k = 0; k < vs->n && !listed; k++) listed = !strcmp(vs->v[k].id, h->c[i].id);
        if (listed) {
            i++;
            continue;
        }
        json_decref(h->c[i].rec);
        h->c[i] = h->c[--h->n];
    }
    pthread_mutex_unlock(&h->mu);
}

int lake_subs_list(lake_subs *h, lake_sub **out, size_t *n, char *err, size_t errlen)
{
    *out = NULL, *n = 0;
    versions vs = {0};
    int r = list_versions(h, NULL, &vs, err, errlen);
    lake_sub *v = r || !vs.n ? NULL : calloc(vs.n, sizeof *v);
    if (!r && vs.n && !v) {
        snprintf(err, errlen, "subscriptions: out of memory");
        r = LAKE_SUBS_EIO;
    }
    size_t k = 0;
    for (size_t i = 0; !r && i < vs.n; i++) {
        json_t *rec = NULL;
        uint64_t ver = vs.v[i].latest;
        r = load(h, vs.v[i].id, ver, &rec, err, errlen);
        if (r == LAKE_SUBS_ENOENT) /* rewritten since the listing: read it again */
            r = current(h, vs.v[i].id, &rec, &ver, err, errlen);
        if (!r && rec) set_out(&v[k++], vs.v[i].id, ver, rec);
    }
    if (!r) cache_keep_only(h, &vs);
    free(vs.v);
    if (r) {
        lake_subs_free(v, k);
        return r;
    }
    *out = v, *n = k;
    return 0;
}

int lake_subs_get(lake_subs *h, const char *id, lake_sub *out, char *err, size_t errlen)
{
    if (!lake_sub_id_valid(id)) {
        snprintf(err, errlen, "no subscription %s (an id is 1 to 64 of A-Z a-z 0-9 _ -)", id);
        return LAKE_SUBS_ENOENT;
    }
    json_t *rec;
    uint64_t ver;
    int r = current(h, id, &rec, &ver, err, errlen);
    if (r) return r;
    if (!rec) {
        snprintf(err, errlen, "no subscription %s", id);
        return LAKE_SUBS_ENOENT;
    }
    set_out(out, id, ver, rec);
    return 0;
}

int lake_subs_create(lake_subs *h, const char *id, json_t *rec, lake_sub *out, char *err,
                     size_t errlen)
{
    if (!lake_sub_id_valid(id)) {
        snprintf(err, errlen, "id: 1 to %d of A-Z a-z 0-9 _ -", LAKE_SUB_ID_MAX);
        return LAKE_SUBS_EINVAL;
    }
    for (int tries = 0; tries < LAKE_SUBS_RETRIES; tries++) {
        json_t *cur;
        uint64_t ver;
        int r = current(h, id, &cur, &ver, err, errlen);
        if (r) return r;
        if (cur) {
            json_decref(cur);
            snprintf(err, errlen, "subscription %s exists", id);
            return LAKE_SUBS_EEXIST;
        }
        json_t *doc = json_deep_copy(rec);
        int64_t now = evtime_now_ms();
        if (!doc || json_object_set_new(doc, "id", json_string(id)) ||
            (!json_object_get(doc, "state") &&
             json_object_set_new(doc, "state", json_string("active"))) ||
            json_object_set_new(doc, "createdAt", json_integer(now)) ||
            json_object_set_new(doc, "updatedAt", json_integer(now))) {
            json_decref(doc);
            snprintf(err, errlen, "subscriptions: out of memory");
            return LAKE_SUBS_EIO;
        }
        r = put_version(h, id, ver + 1, doc, err, errlen);
        if (!r) {
            set_out(out, id, ver + 1, doc);
            return 0;
        }
        json_decref(doc);
        if (r != LOST_RACE) return r;
    }
    snprintf(err, errlen, "subscriptions: %s: lost %d races to write it", id, LAKE_SUBS_RETRIES);
    return LAKE_SUBS_ECONFLICT;
}

/* One try of an update on (cur, ver): 0, LOST_RACE to try again, or a code to stop with. */
static int update_once(lake_subs *h, const char *id, json_t *cur, uint64_t ver,
                       lake_subs_edit_fn edit, void *ud, lake_sub *out, char *err, size_t errlen)
{
    int r = edit(cur, ud, err, errlen);
    if (r == LAKE_SUBS_NOCHANGE) {
        set_out(out, id, ver, json_incref(cur));
        return 0;
    }
    if (r) return r;
    if (json_object_set_new(cur, "updatedAt", json_integer(evtime_now_ms()))) {
        snprintf(err, errlen, "subscriptions: out of memory");
        return LAKE_SUBS_EIO;
    }
    r = put_version(h, id, ver + 1, cur, err, errlen);
    if (!r) set_out(out, id, ver + 1, json_incref(cur));
    return r;
}

int lake_subs_update(lake_subs *h, const char *id, const lake_sub *base, lake_subs_edit_fn edit,
                     void *ud, lake_sub *out, char *err, size_t errlen)
{
    for (int tries = 0; tries < LAKE_SUBS_RETRIES; tries++) {
        json_t *cur;
        uint64_t ver;
        if (base && !tries) {
            cur = json_deep_copy(base->rec), ver = base->version;
            if (!cur) {
                snprintf(err, errlen, "subscriptions: out of memory");
                return LAKE_SUBS_EIO;
            }
        } else {
            int r = current(h, id, &cur, &ver, err, errlen);
            if (r) return r;
            if (!cur) {
                snprintf(err, errlen, "no subscription %s", id);
                return LAKE_SUBS_ENOENT;
            }
        }
        int r = update_once(h, id, cur, ver, edit, ud, out, err, errlen);
        json_decref(cur);
        if (r != LOST_RACE) return r;
    }
    snprintf(err, errlen, "subscriptions: %s: lost %d races to write it", id, LAKE_SUBS_RETRIES);
    return LAKE_SUBS_ECONFLICT;
}

static int edit_delete(json_t *rec, void *ud, char *err, size_t errlen)
{
    (void)ud;
    if (json_object_set_new(rec, "state", json_string("deleted"))) {
        snprintf(err, errlen, "subscriptions: out of memory");
        return LAKE_SUBS_EIO;
    }
    return 0;
}

typedef struct dead_names {
    lake_dead *d;
    size_t n, cap, total, limit;
    size_t plen;
    int oom;
} dead_names;

static int on_dead(const store_entry *e, void *ud)
{
    dead_names *dn = ud;
    int64_t ms;
    const char *name = e->key + dn->plen;
    if (lake_parse_dead_name(name, &ms)) return 0;
    dn->total++;
    if (dn->n >= dn->limit) return 0;
    if (dn->n == dn->cap) {
        size_t cap = dn->cap ? dn->cap * 2 : 16;
        lake_dead *d = realloc(dn->d, cap * sizeof *d);
        if (!d) return dn->oom = 1;
        dn->d = d, dn->cap = cap;
    }
    lake_dead *d = &dn->d[dn->n++];
    snprintf(d->key, sizeof d->key, "%s", name);
    d->failed_ms = ms;
    d->bytes = e->size;
    return 0;
}

int lake_subs_delete(lake_subs *h, const char *id, char *err, size_t errlen)
{
    if (!lake_sub_id_valid(id)) {
        snprintf(err, errlen, "no subscription %s", id);
        return LAKE_SUBS_ENOENT;
    }
    int r = lake_subs_update(h, id, NULL, edit_delete, NULL, NULL, err, errlen);
    if (r) return r;
    lake_dead *d = NULL;
    size_t n = 0, total = 0;
    if (!lake_subs_dead_list(h, id, SIZE_MAX, &d, &n, &total, err, errlen))
        for (size_t i = 0; i < n; i++) lake_subs_dead_del(h, id, d[i].key, err, errlen);
    free(d);
    return 0;
}

/* ---- dead letters -------------------------------------------------------------------------- */

int lake_subs_dead_put(lake_subs *h, const char *id, int64_t failed_ms, const void *doc, size_t len,
                       char name_out[LAKE_KEY_MAX], char *err, size_t errlen)
{
    if (!lake_sub_id_valid(id)) {
        snprintf(err, errlen, "no subscription %s", id);
        return LAKE_SUBS_EINVAL;
    }
    for (int tries = 0; tries < 4; tries++) {
        char name[LAKE_DEAD_NAME_LEN + 1], key[LAKE_KEY_MAX], why[512];
        lake_dead_name(failed_ms, (uint32_t)evrand_u64(), name);
        lake_dead_prefix(id, key);
        snprintf(key + strlen(key), sizeof key - strlen(key), "%s", name);
        int r = store_put(h->s, key, doc, len, STORE_IF_ABSENT, why, sizeof why);
        if (!r) {
            snprintf(name_out, LAKE_KEY_MAX, "%s", name);
            return 0;
        }
        if (r != STORE_EEXIST) {
            snprintf(err, errlen, "subscriptions: cannot write %s: %s", key, why);
            return LAKE_SUBS_EIO;
        }
    }
    snprintf(err, errlen, "subscriptions: no free dead letter name for %s", id);
    return LAKE_SUBS_EIO;
}

int lake_subs_dead_list(lake_subs *h, const char *id, size_t limit, lake_dead **out, size_t *n,
                        size_t *total, char *err, size_t errlen)
{
    *out = NULL, *n = 0, *total = 0;
    char prefix[LAKE_KEY_MAX], why[512];
    lake_dead_prefix(id, prefix);
    dead_names dn = {.limit = limit, .plen = strlen(prefix)};
    if (store_list(h->s, prefix, on_dead, &dn, why, sizeof why) || dn.oom) {
        free(dn.d);
        snprintf(err, errlen, "subscriptions: cannot list %s: %s", prefix,
                 dn.oom ? "out of memory" : why);
        return LAKE_SUBS_EIO;
    }
    *out = dn.d, *n = dn.n, *total = dn.total;
    return 0;
}

/* The key of dead letter name of id: 0, or LAKE_SUBS_EINVAL (err set). */
static int dead_key(const char *id, const char *name, char key[LAKE_KEY_MAX], char *err,
                    size_t errlen)
{
    int64_t ms;
    if (!lake_sub_id_valid(id) || lake_parse_dead_name(name, &ms)) {
        snprintf(err, errlen, "no dead letter %s of %s (a name is {ms:013}-{8 hex}.json)", name,
                 id);
        return LAKE_SUBS_EINVAL;
    }
    lake_dead_prefix(id, key);
    snprintf(key + strlen(key), LAKE_KEY_MAX - strlen(key), "%s", name);
    return 0;
}

int lake_subs_dead_get(lake_subs *h, const char *id, const char *name, buf *out, char *err,
                       size_t errlen)
{
    char key[LAKE_KEY_MAX], why[512];
    int r = dead_key(id, name, key, err, errlen);
    if (r) return r;
    r = store_get(h->s, key, 0, 0, out, why, sizeof why);
    if (r == STORE_ENOENT) {
        snprintf(err, errlen, "no dead letter %s of %s", name, id);
        return LAKE_SUBS_ENOENT;
    }
    if (r) {
        snprintf(err, errlen, "subscriptions: cannot read %s: %s", key, why);
        return LAKE_SUBS_EIO;
    }
    return 0;
}

int lake_subs_dead_del(lake_subs *h, const char *id, const char *name, char *err, size_t errlen)
{
    char key[LAKE_KEY_MAX], why[512];
    int r = dead_key(id, name, key, err, errlen);
    if (r) return r;
    if (store_del(h->s, key, why, sizeof why)) {
        snprintf(err, errlen, "subscriptions: cannot delete %s: %s", key, why);
        return LAKE_SUBS_EIO;
    }
    return 0;
}
