/*
 * compact.c - compaction runs: the lease, the work directory, the partitions
 * due, and for each the files into the lake and the commit to the table that
 * makes them live; the conversion of a lake of manifests; deleting what died
 * and expiring old snapshots (compact.h). What goes into an hour's files is
 * compact_hour.c's. EVENTS_TEST_KILL_AT=parquet stops a run once an hour's
 * new files are put (testkill.h).
 */
#include "compact.h"

#include "buf.h"
#include "compact_hour.h"
#include "evrand.h"
#include "evtime.h"
#include "layout.h"
#include "partition.h"
#include "table.h"
#include "testkill.h"

#include <dirent.h>
#include <duckdb.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LEASE_NAME "compaction"

/* ---- the lease ------------------------------------------------------------- */

typedef struct lease {
    store *s;
    char owner[200];
    int64_t ttl_ms;
    uint64_t seq;       /* the last one we wrote */
    int64_t expires_ms; /* of the last one we wrote */
} lease;

typedef struct latest {
    uint64_t seq, first;
    uint64_t n;
} latest;

static int on_lease(const store_entry *e, void *ud)
{
    latest *l = ud;
    uint64_t seq;
    if (lake_parse_lease_key(e->key, LEASE_NAME, &seq)) return 0;
    if (!l->n++) l->first = seq;
    if (seq > l->seq) l->seq = seq;
    return 0;
}

/* Writes lease seq with an expiry; STORE_EEXIST if another contender wrote it first. */
static int lease_put(lease *l, uint64_t seq, int64_t expires_ms, char *err, size_t errlen)
{
    char key[LAKE_KEY_MAX], at[EVTIME_LEN + 1];
    lake_lease_key(LEASE_NAME, seq, key);
    evtime_format(expires_ms, at);
    json_t *o = json_pack("{s:s, s:I, s:s}", "owner", l->owner, "expiresAt", (json_int_t)expires_ms,
                          "expires", at);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text) return store_fail(err, errlen, STORE_EIO, "out of memory");
    int r = store_put(l->s, key, text, strlen(text), STORE_IF_ABSENT, err, errlen);
    free(text);
    if (!r) {
        l->seq = seq;
        l->expires_ms = expires_ms;
    }
    return r;
}

/* Deletes the lease objects before seq - 1 (kept: the two last, for the record). */
static void lease_trim(lease *l, uint64_t first)
{
    for (uint64_t s = first; s + 1 < l->seq; s++) {
        char key[LAKE_KEY_MAX];
        lake_lease_key(LEASE_NAME, s, key);
        char why[512];
        store_del(l->s, key, why, sizeof why);
    }
}

/* 0: taken; 1: held by another (holder says who); -1: error. */
static int lease_take(lease *l, char *holder, size_t cap, char *err, size_t errlen)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        latest lt = {0, 0, 0};
        char why[512];
        if (store_list(l->s, LAKE_LEASES_PREFIX LEASE_NAME "/", on_lease, &lt, why, sizeof why)) {
            snprintf(err, errlen, "compaction: cannot read the lease: %s", why);
            return -1;
        }
        int64_t now = evtime_now_ms();
        if (lt.n) {
            char key[LAKE_KEY_MAX];
            lake_lease_key(LEASE_NAME, lt.seq, key);
            buf text = BUF_INIT;
            int r = store_get(l->s, key, 0, 0, &text, why, sizeof why);
            json_t *doc = r ? NULL : json_loadb(text.p ? text.p : "", text.len, 0, NULL);
            buf_free(&text);
            if (r == STORE_ENOENT) continue; /* trimmed meanwhile: list again */
            if (r) {
                snprintf(err, errlen, "compaction: cannot read the lease: %s", why);
                return -1;
            }
            const char *owner = json_string_value(json_object_get(doc, "owner"));
            int64_t exp = json_integer_value(json_object_get(doc, "expiresAt"));
            if (exp > now && (!owner || strcmp(owner, l->owner))) {
                char at[EVTIME_LEN + 1];
                evtime_format(exp, at);
                snprintf(holder, cap, "%s until %s", owner ? owner : "?", at);
                json_decref(doc);
                return 1;
            }
            json_decref(doc);
        }
        int r = lease_put(l, lt.seq + 1, now + l->ttl_ms, why, sizeof why);
        if (!r) {
            if (lt.n) lease_trim(l, lt.first);
            return 0;
        }
        if (r != STORE_EEXIST) {
            snprintf(err, errlen, "compaction: cannot take the lease: %s", why);
            return -1;
        }
    }
    snprintf(holder, cap, "another compactor (the lease changed hands while we looked)");
    return 1;
}

/* Renews the lease when half its term is gone. 0, or -1 (lost or unreachable). */
static int lease_keep(lease *l, char *err, size_t errlen)
{
    int64_t now = evtime_now_ms();
    if (l->expires_ms - now > l->ttl_ms / 2) return 0;
    if (now >= l->expires_ms) {
        snprintf(err, errlen, "compaction: the lease expired before it could be renewed");
        return -1;
    }
    char why[512];
    int r = lease_put(l, l->seq + 1, now + l->ttl_ms, why, sizeof why);
    if (r == STORE_EEXIST) {
        snprintf(err, errlen, "compaction: the lease was taken over by another compactor");
        return -1;
    }
    if (r) {
        snprintf(err, errlen, "compaction: cannot renew the lease: %s", why);
        return -1;
    }
    return 0;
}

static void lease_give_up(lease *l)
{
    /* a record that expired at once: the next compactor need not wait */
    char why[512];
    if (!lease_put(l, l->seq + 1, 0, why, sizeof why)) lease_trim(l, l->seq > 3 ? l->seq - 3 : 1);
}

/* ---- the work directory ------------------------------------------------------- */

/*
 * Each run works in its own directory, work_dir/run-{uuid}, holding an flock on run-{uuid}/lock
 * while it lives: its chunk files, its new Parquet files before they go into the lake, and
 * DuckDB's spill files. What a killed run leaves is found by the next one: a directory whose
 * lock nobody holds, or a loose file (the layout before runs had directories). A run makes its
 * directory as .new-{uuid}, takes the lock in it, and only then renames it run-{uuid}: a
 * run-{uuid} directory is never without its lock while its run lives, whatever another
 * server's cleaning sees. A .new- directory unlocked and a minute old is a run killed in
 * those few microseconds.
 */
static int remove_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)type, (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(const char *path)
{
    nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* 1 if the directory's lock is held by a running compaction. */
static int dir_in_use(const char *dir)
{
    char lock[4200];
    snprintf(lock, sizeof lock, "%s/lock", dir);
    int fd = open(lock, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    int busy = flock(fd, LOCK_EX | LOCK_NB) && errno == EWOULDBLOCK;
    close(fd); /* releases the lock if we took it */
    return busy;
}

int compact_clean(const char *work_dir, uint64_t *removed, char *err, size_t errlen)
{
    *removed = 0;
    DIR *d = opendir(work_dir);
    if (!d && errno == ENOENT) return 0;
    if (!d) {
        snprintf(err, errlen, "compact: cannot read %s: %s", work_dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char path[4200];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", work_dir, e->d_name);
        if (lstat(path, &sb)) continue;
        if (S_ISDIR(sb.st_mode)) {
            if (dir_in_use(path)) continue;
            if (!strncmp(e->d_name, ".new-", 5) && time(NULL) - sb.st_mtime < 60) continue;
            remove_tree(path);
        } else if (unlink(path)) {
            continue;
        }
        ++*removed;
    }
    closedir(d);
    return 0;
}

/* ---- one run ------------------------------------------------------------- */

typedef struct run {
    const compact_config *cfg;
    compact_stats *st;
    lease lease;
    duckdb_database db;
    duckdb_connection con;
    char dir[4200]; /* this run's directory in work_dir */
    int lock_fd;    /* its lock, held while the directory exists; -1 before */
    uint64_t chunk_bytes;
    uint64_t key_rows; /* ids one statement groups, finding duplicates across files */
    char *err;
    size_t errlen;
    int64_t now;
    lake_table lt;      /* the table as the run began (table.h); lt.t NULL: none yet */
    lake_live lv;       /* its live files, every hour */
    struct convert *cv; /* set while a lake without a table is converted */
    struct pending *pd; /* the pending index, listed by a run that does not sweep */
} run;

static int run_dir_open(run *r)
{
    char uuid[LAKE_UUID_LEN + 1], lock[4300], fresh[4200];
    evrand_uuid7(uuid);
    snprintf(r->dir, sizeof r->dir, "%s/run-%s", r->cfg->work_dir, uuid);
    snprintf(fresh, sizeof fresh, "%s/.new-%s", r->cfg->work_dir, uuid);
    snprintf(lock, sizeof lock, "%s/lock", fresh);
    r->lock_fd = -1;
    if (mkdir(fresh, 0700) || (r->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0 ||
        flock(r->lock_fd, LOCK_EX) || rename(fresh, r->dir)) {
        snprintf(r->err, r->errlen, "compaction: cannot create %s: %s", r->dir, strerror(errno));
        if (r->lock_fd >= 0) close(r->lock_fd);
        r->lock_fd = -1;
        remove_tree(fresh);
        return -1;
    }
    return 0;
}

static void run_dir_close(run *r)
{
    remove_tree(r->dir);
    close(r->lock_fd); /* after: the directory is never unlocked while it exists */
}

static int duck_open(run *r)
{
    duckdb_config dc;
    char mem[32], threads[16], *open_err = NULL;
    snprintf(mem, sizeof mem, "%lluB",
             (unsigned long long)(r->cfg->memory_limit ? r->cfg->memory_limit : (1ull << 30)));
    if (duckdb_create_config(&dc) == DuckDBError) {
        snprintf(r->err, r->errlen, "compaction: cannot configure DuckDB");
        return -1;
    }
    /* one thread: the chunk is sized for the memory of one (compact.h) */
    snprintf(threads, sizeof threads, "%d", r->cfg->threads > 0 ? r->cfg->threads : 1);
    duckdb_set_config(dc, "memory_limit", mem);
    duckdb_set_config(dc, "threads", threads);
    duckdb_set_config(dc, "autoinstall_known_extensions", "false");
    duckdb_set_config(dc, "autoload_known_extensions", "false");
    duckdb_set_config(dc, "temp_directory", r->dir);
    int rc = duckdb_open_ext(NULL, &r->db, dc, &open_err);
    duckdb_destroy_config(&dc);
    if (rc == DuckDBError) {
        snprintf(r->err, r->errlen, "compaction: cannot open DuckDB: %s",
                 open_err ? open_err : "?");
        duckdb_free(open_err);
        return -1;
    }
    if (duckdb_connect(r->db, &r->con) == DuckDBError) {
        duckdb_close(&r->db);
        snprintf(r->err, r->errlen, "compaction: cannot connect to DuckDB");
        return -1;
    }
    duckdb_result res;
    duckdb_query(r->con, "SET TimeZone = 'UTC'", &res);
    duckdb_destroy_result(&res);
    return 0;
}

static int64_t keep_after(const run *r)
{
    return r->now - (r->cfg->retain_ms > 0 ? r->cfg->retain_ms : 0);
}

/* 1 if a snapshot of the table other than the current one has the file (of the hour), 0 if
 * none has, -1 when that cannot be read. */
static int in_older_snapshot(run *r, const char *key, int64_t hour)
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
static void collect_table(run *r, lake_partition *p)
{
    char why[512];
    for (size_t i = 0; i < p->n; i++) {
        lake_part_file *f = &p->f[i];
        if (f->live || !f->parquet || lake_table_folded_at(&r->lt, f->key) >= 0) continue;
        if (f->mtime_ms <= keep_after(r) && !in_older_snapshot(r, f->key, p->hour) &&
            !store_del(r->cfg->store, f->key, why, sizeof why))
            r->st->deleted++;
    }
}

/* Deletes what died more than retain_ms ago. */
static void collect(run *r, lake_partition *p)
{
    if (p->live) {
        collect_table(r, p);
        return;
    }
    int64_t keep_after = r->now - (r->cfg->retain_ms > 0 ? r->cfg->retain_ms : 0);
    char why[512]; /* a file not deleted now is deleted by a later run */
    for (size_t i = 0; i < p->n; i++) {
        lake_part_file *f = &p->f[i];
        if (f->live) continue;
        int64_t died = p->has_manifest ? lake_manifest_replaced_at(&p->m, f->name) : -1;
        /* dead without a manifest saying since when: a leftover parquet file */
        if (died < 0) died = f->mtime_ms;
        if (died <= keep_after && !store_del(r->cfg->store, f->key, why, sizeof why))
            r->st->deleted++;
    }
    if (p->has_manifest && p->m.created_ms <= keep_after)
        for (size_t i = 0; i < p->nold; i++)
            if (!store_del(r->cfg->store, p->old_manifests[i], why, sizeof why)) r->st->deleted++;
}

static int tick(void *ud, char *err, size_t errlen)
{
    run *r = ud;
    return lease_keep(&r->lease, err, errlen);
}

/* The partition's live files, made local: items[k] and hin[k] for the k-th live file. */
typedef struct inputs {
    lake_cache_item *items;
    compact_hour_in *hin;
    size_t *file; /* index in the partition */
    size_t n;
    int cached; /* items are pinned in the cache */
} inputs;

static void inputs_free(run *r, inputs *in)
{
    if (in->cached)
        lake_cache_unpin(r->cfg->cache, in->items, in->n);
    else
        for (size_t i = 0; i < in->n; i++) free(in->items[i].path);
    free(in->items);
    free(in->hin);
    free(in->file);
    memset(in, 0, sizeof *in);
}

static int inputs_get(run *r, lake_partition *p, inputs *in)
{
    const compact_config *cfg = r->cfg;
    memset(in, 0, sizeof *in);
    in->items = calloc(p->n, sizeof *in->items);
    in->hin = calloc(p->n, sizeof *in->hin);
    in->file = calloc(p->n, sizeof *in->file);
    if (!in->items || !in->hin || !in->file) {
        inputs_free(r, in);
        snprintf(r->err, r->errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < p->n; i++)
        if (p->f[i].live) {
            in->items[in->n].key = p->f[i].key;
            in->items[in->n].size = p->f[i].size;
            in->hin[in->n].size = p->f[i].size;
            in->hin[in->n].parquet = p->f[i].parquet;
            in->file[in->n++] = i;
        }
    const char *root = cfg->store->ops->root(cfg->store);
    if (!root) {
        char m[1024];
        if (lake_cache_fetch(cfg->cache, cfg->store, in->items, in->n, 8, m, sizeof m)) {
            snprintf(r->err, r->errlen, "compaction: cannot fetch the files of %.*s: %s",
                     (int)(strrchr(p->f[0].key, '/') - p->f[0].key), p->f[0].key, m);
            in->n = 0;
            inputs_free(r, in);
            return -1;
        }
        in->cached = 1;
    } else {
        for (size_t i = 0; i < in->n; i++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", root, in->items[i].key);
            if (!(in->items[i].path = strdup(path))) {
                inputs_free(r, in);
                snprintf(r->err, r->errlen, "out of memory");
                return -1;
            }
        }
    }
    for (size_t i = 0; i < in->n; i++) in->hin[i].path = in->items[i].path;
    return 0;
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
static int change_add(run *r, change *c, const char *path, const char *key, int64_t hour)
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

static int change_remove(run *r, change *c, const char *key)
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

static int change_fold(run *r, change *c, const char *key)
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
static int change_commit(run *r, change *c, int64_t hour)
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

/* Deletes the first n new files from the lake (never committed: no reader has them). */
static void unput(run *r, int64_t hour, const compact_hour_result *res, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char key[LAKE_KEY_MAX];
        lake_parquet_key(hour, res->out[i].uuid, key);
        char why[512];
        store_del(r->cfg->store, key, why, sizeof why);
    }
}

/* An hour's new files into c (with their statistics), then into the lake. 0 or -1. */
static int put_outputs(run *r, lake_partition *p, const compact_hour_result *res, change *c)
{
    char why[512];
    for (size_t i = 0; i < res->nout; i++) {
        char key[LAKE_KEY_MAX];
        lake_parquet_key(p->hour, res->out[i].uuid, key);
        if (change_add(r, c, res->out[i].path, key, p->hour) ||
            store_put_file(r->cfg->store, key, res->out[i].path, STORE_MOVE, why, sizeof why)) {
            if (!r->err[0]) snprintf(r->err, r->errlen, "compaction: cannot put %s: %s", key, why);
            unput(r, p->hour, res, i);
            return -1;
        }
    }
    return 0;
}

static void count_done(run *r, const inputs *in, const compact_hour_result *res)
{
    r->st->compacted++;
    r->st->rows += res->rows;
    r->st->files_out += res->nout;
    for (size_t k = 0; k < in->n; k++) r->st->files_in += !in->hin[k].kept;
    for (size_t i = 0; i < res->nout; i++) r->st->bytes_out += res->out[i].bytes;
}

/* Deletes the markers of the pending index (layout.h) of the segments a commit folded in. */
static void unmark(run *r, json_t *folded)
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
static int publish(run *r, lake_partition *p, const inputs *in, const compact_hour_result *res)
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
    if (!rc) rc = lease_keep(&r->lease, r->err, r->errlen);
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
    count_done(r, in, res);
    return 0;
}

/* The hour's live files (fetched into in) compacted into res; keep_all: an append (compact_hour.h).
 * 0, or -1 (r->err). */
static int compact_files(run *r, lake_partition *p, int keep_all, inputs *in,
                         compact_hour_result *res)
{
    if (lease_keep(&r->lease, r->err, r->errlen)) return -1;
    if (inputs_get(r, p, in)) return -1;
    for (size_t i = 0; i < in->n; i++) r->st->bytes_in += in->items[i].size;
    compact_hour_job job = {.con = r->con,
                            .dir = r->dir,
                            .chunk_bytes = r->chunk_bytes,
                            .key_rows = r->key_rows,
                            .in = in->hin,
                            .nin = in->n,
                            .layout = p->has_manifest ? p->m.layout : LAKE_LAYOUT_2,
                            .keep_all = keep_all,
                            .tick = tick,
                            .ud = r};
    char m[1024];
    if (compact_hour_run(&job, res, m, sizeof m)) {
        char key[LAKE_KEY_MAX];
        lake_hour_prefix(p->hour, key);
        snprintf(r->err, r->errlen, "%s (%s)", m, key);
        inputs_free(r, in);
        return -1;
    }
    r->st->chunks += res->statements;
    return 0;
}

static void compacted_free(run *r, inputs *in, compact_hour_result *res)
{
    for (size_t i = 0; i < res->nout; i++) unlink(res->out[i].path); /* if still there */
    compact_hour_result_free(res);
    inputs_free(r, in);
}

/*
 * Compacted files an hour may have before it is compacted again once due: one, or any number of
 * large ones. A file is small below a sixteenth of a chunk on disk (Parquet of events is about a
 * tenth of their JSON): compact_hour_run then decides by the events' own size.
 */
static int has_small_files(const run *r, const lake_partition *p)
{
    size_t small = 0;
    for (size_t i = 0; i < p->n; i++)
        small += p->f[i].live && p->f[i].parquet && p->f[i].size < r->chunk_bytes / 16;
    return small > 1;
}

/* The partition's next Parquet files and commit. 0 done or not needed, -1 error. */
static int compact_one(run *r, lake_partition *p)
{
    int64_t after = r->cfg->after_ms > 0 ? r->cfg->after_ms : 0;
    int due = (p->hour + 1) * 3600000 + after <= r->now;
    size_t nraw = 0;
    for (size_t i = 0; i < p->n; i++) nraw += p->f[i].live && !p->f[i].parquet;
    if (due ? !nraw && !has_small_files(r, p) : !nraw || !r->cfg->open_hours) return 0;
    inputs in;
    compact_hour_result res;
    if (compact_files(r, p, !due, &in, &res)) return -1;
    int rc = 0;
    if (res.nout || nraw) {
        uint64_t before = r->st->compacted;
        rc = publish(r, p, &in, &res);
        if (!due && r->st->compacted > before) r->st->appended++;
    }
    compacted_free(r, &in, &res);
    return rc;
}

/* ---- the pending index --------------------------------------------------------------- */

/* A marker of the pending index (layout.h), as listed. */
typedef struct marker {
    char *key, *segment;
    int64_t hour, mtime_ms;
    int settled; /* its hour was looked at */
} marker;

typedef struct pending {
    marker *m; /* in key order, so by hour */
    size_t n, cap;
    int oom;
} pending;

static int on_marker(const store_entry *e, void *ud)
{
    pending *pd = ud;
    int64_t hour;
    char seg[LAKE_KEY_MAX];
    if (lake_parse_pending_key(e->key, &hour, seg)) return 0;
    if (pd->n == pd->cap) {
        size_t nc = pd->cap ? pd->cap * 2 : 64;
        marker *nm = realloc(pd->m, nc * sizeof *nm);
        if (!nm) return pd->oom = 1;
        pd->m = nm, pd->cap = nc;
    }
    marker *m = &pd->m[pd->n];
    memset(m, 0, sizeof *m);
    m->key = strdup(e->key);
    m->segment = strdup(seg);
    if (!m->key || !m->segment) {
        free(m->key), free(m->segment);
        return pd->oom = 1;
    }
    m->hour = hour, m->mtime_ms = e->mtime_ms;
    pd->n++;
    return 0;
}

static void pending_free(pending *pd)
{
    for (size_t i = 0; i < pd->n; i++) free(pd->m[i].key), free(pd->m[i].segment);
    free(pd->m);
    memset(pd, 0, sizeof *pd);
}

/* How long a marker may wait for its segment (a sealer retrying against an unreachable lake). */
#define MARKER_WAIT_MS (24 * 3600000LL)

/*
 * After an hour was looked at: the markers of its segments that are no longer live (folded in,
 * by this run or an earlier one that stopped before deleting them), and of segments that never
 * came, are deleted. p is NULL when the hour's listing was empty.
 */
static void settle_markers(run *r, int64_t hour, const lake_partition *p)
{
    pending *pd = r->pd;
    char why[512];
    for (size_t i = 0; pd && i < pd->n; i++) {
        marker *m = &pd->m[i];
        if (m->hour != hour || m->settled) continue;
        m->settled = 1;
        const lake_part_file *f = NULL;
        for (size_t k = 0; p && k < p->n && !f; k++)
            if (!strcmp(p->f[k].key, m->segment)) f = &p->f[k];
        int gone = f ? !f->live
                     : lake_table_folded_at(&r->lt, m->segment) >= 0 ||
                           m->mtime_ms + MARKER_WAIT_MS <= r->now;
        if (gone) store_del(r->cfg->store, m->key, why, sizeof why);
    }
}

static int on_partition(lake_partition *p, void *ud)
{
    run *r = ud;
    r->st->partitions++;
    r->now = evtime_now_ms();
    if (r->cfg->sweep) collect(r, p);
    int rc = compact_one(r, p);
    r->now = evtime_now_ms();
    settle_markers(r, p->hour, p);
    return rc ? -1 : 0;
}

static int cmp_hour(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/*
 * A run that does not sweep: the hours of the pending index and the recent ones (the current
 * hour back to the last one that can fall due: --compact-after and an hour more), each listed on
 * its own with the table's files of that hour.
 */
static int pending_run(run *r, char *m, size_t mlen)
{
    pending pd;
    memset(&pd, 0, sizeof pd);
    int rc = store_list(r->cfg->store, LAKE_PENDING_PREFIX, on_marker, &pd, m, mlen);
    if (rc == STORE_ENOENT) rc = 0;
    if (pd.oom) snprintf(m, mlen, "out of memory");
    r->st->listed++;
    int64_t now_hour = lake_hour(r->now), back = r->cfg->after_ms / 3600000 + 2;
    size_t nh = 0;
    int64_t *hours = rc || pd.oom ? NULL : malloc((pd.n + (size_t)back + 1) * sizeof *hours);
    if (!rc && !pd.oom && !hours) snprintf(m, mlen, "out of memory");
    if (!hours) rc = -1;
    for (size_t i = 0; !rc && i < pd.n; i++)
        if (!nh || hours[nh - 1] != pd.m[i].hour) hours[nh++] = pd.m[i].hour;
    for (int64_t h = now_hour - back; !rc && h <= now_hour; h++) hours[nh++] = h;
    if (!rc) qsort(hours, nh, sizeof *hours, cmp_hour);
    r->pd = &pd;
    for (size_t i = 0; !rc && i < nh; i++) {
        if (i && hours[i] == hours[i - 1]) continue;
        lake_live lv;
        char prefix[LAKE_KEY_MAX];
        lake_hour_prefix(hours[i], prefix);
        rc = lake_live_load(r->cfg->store, &r->lt, hours[i], hours[i], &lv, m, mlen);
        if (!rc) rc = lake_partitions_list(r->cfg->store, &lv, prefix, on_partition, r, m, mlen);
        lake_live_free(&lv);
        r->st->listed++;
        if (!rc) settle_markers(r, hours[i], NULL); /* an hour with nothing listed */
    }
    r->pd = NULL;
    free(hours);
    pending_free(&pd);
    return rc ? -1 : 0;
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
typedef struct convert {
    change c;
    uint64_t hours;
} convert;

static int convert_hour(run *r, lake_partition *p, convert *cv)
{
    inputs in;
    compact_hour_result res;
    if (compact_files(r, p, 0, &in, &res)) return -1;
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
    if (!rc) count_done(r, &in, &res);
    compacted_free(r, &in, &res);
    cv->hours++;
    return rc;
}

static int on_convert(lake_partition *p, void *ud)
{
    run *r = ud;
    r->now = evtime_now_ms();
    if (!p->has_manifest) return 0;
    return convert_hour(r, p, r->cv) ? -1 : 0;
}

/* Converts a lake without a table that has manifests. 0 (also: nothing to convert), or -1. */
static int convert_lake(run *r)
{
    convert cv;
    memset(&cv, 0, sizeof cv);
    r->cv = &cv;
    char m[1024] = "";
    int rc =
        lake_partitions_list(r->cfg->store, NULL, LAKE_EVENTS_PREFIX, on_convert, r, m, sizeof m);
    if (rc && !r->err[0]) snprintf(r->err, r->errlen, "compaction: %s", m);
    if (!rc && cv.hours) {
        rc = lease_keep(&r->lease, r->err, r->errlen);
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
static int delete_folded(run *r, json_t *snap)
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
static int expire_table(run *r)
{
    lake_table cur;
    char m[1024];
    if (lake_table_load(r->cfg->store, &cur, m, sizeof m) || !cur.t) {
        lake_table_free(&cur);
        return 0; /* a later run tries again */
    }
    r->now = evtime_now_ms();
    int64_t cutoff = keep_after(r), current = ice_table_snapshot_id(cur.t);
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
        if (!store_del(r->cfg->store, keys[k], m, sizeof m)) r->st->deleted++;
    ice_keys_free(keys, n);
    return 0;
}

int compact_run(const compact_config *cfg, compact_stats *st, char *err, size_t errlen)
{
    memset(st, 0, sizeof *st);
    run r;
    memset(&r, 0, sizeof r);
    r.cfg = cfg, r.st = st, r.err = err, r.errlen = errlen;
    r.lock_fd = -1;
    err[0] = 0;
    if (!cfg->store->ops->root(cfg->store) && !cfg->cache) {
        snprintf(err, errlen, "compaction: an object store needs a cache");
        return -1;
    }
    r.chunk_bytes = compact_chunk(cfg);
    if (!(r.key_rows = cfg->key_rows)) {
        /* 1.5 M ids grouped in one statement needed a limit of at most 192 MiB: 256 bytes each
         * leaves room */
        uint64_t mem = cfg->memory_limit ? cfg->memory_limit : (1ull << 30);
        r.key_rows = mem > (96ull << 20) ? (mem - (96ull << 20)) / 256 : 1;
    }
    r.lease.s = cfg->store;
    r.lease.ttl_ms = cfg->lease_ms > 0 ? cfg->lease_ms : 120000;
    if (cfg->owner) {
        snprintf(r.lease.owner, sizeof r.lease.owner, "%s", cfg->owner);
    } else {
        char host[128] = "?";
        gethostname(host, sizeof host - 1);
        snprintf(r.lease.owner, sizeof r.lease.owner, "%s:%ld:%04x", host, (long)getpid(),
                 (unsigned)(evrand_u64() & 0xffff));
    }
    int t = lease_take(&r.lease, st->holder, sizeof st->holder, err, errlen);
    if (t) return t;
    /* what killed runs left: no other compactor of this lake is at work now */
    char cm[512]; /* best effort: what it cannot remove, a later run tries again */
    compact_clean(cfg->work_dir, &st->leftovers, cm, sizeof cm);
    int rc = run_dir_open(&r);
    if (!rc && !(rc = duck_open(&r))) {
        char m[1024] = "";
        rc = lake_table_load(cfg->store, &r.lt, m, sizeof m);
        if (!rc && !r.lt.t) rc = convert_lake(&r);
        r.now = evtime_now_ms();
        if (!rc && (cfg->sweep || !r.lt.t)) {
            /* a lake without a table yet is small, or has segments of no index: swept */
            rc = lake_live_load(cfg->store, &r.lt, INT64_MIN, INT64_MAX, &r.lv, m, sizeof m);
            if (!rc)
                rc = lake_partitions_list(cfg->store, &r.lv, LAKE_EVENTS_PREFIX, on_partition, &r,
                                          m, sizeof m);
            st->listed++;
        } else if (!rc) {
            rc = pending_run(&r, m, sizeof m);
        }
        if (!rc) rc = expire_table(&r);
        if (rc && !err[0]) snprintf(err, errlen, "compaction: %s", m);
        rc = rc ? -1 : 0;
        lake_live_free(&r.lv);
        lake_table_free(&r.lt);
        duckdb_disconnect(&r.con);
        duckdb_close(&r.db);
    }
    if (r.lock_fd >= 0) run_dir_close(&r);
    lease_give_up(&r.lease);
    return rc;
}

uint64_t compact_chunk(const compact_config *cfg)
{
    if (cfg->chunk_bytes) return cfg->chunk_bytes;
    uint64_t mem = cfg->memory_limit ? cfg->memory_limit : (1ull << 30);
    /* a chunk of C MiB needed a limit of 72 + 24 C MiB (compact.h): a quarter more, spare */
    uint64_t chunk = mem > (96ull << 20) ? (mem - (96ull << 20)) / 32 : 0;
    return chunk < (1u << 20) ? (1u << 20) : chunk;
}
