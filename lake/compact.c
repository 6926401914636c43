/*
 * compact.c - compaction runs (compact.h): the lease, the work directory, the
 * run itself and the hours it compacts, their inputs made local. What a run
 * commits to the table, the conversion of a lake of manifests and expiry are
 * compact_table.c's; the pending index compact_pending.c's; what goes into an
 * hour's files compact_hour.c's.
 */
#include "compact_int.h"

#include "buf.h"
#include "evrand.h"
#include "evtime.h"
#include "layout.h"

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

static int on_lease(const store_entry *e, void *ud)
{
    latest *l = ud;
    uint64_t seq;
    if (lake_parse_lease_key(e->key, LEASE_NAME, &seq)) return 0;
    if (!l->n++) l->first = seq;
    if (seq > l->seq) l->seq = seq;
    return 0;
}

int compact__del(compact__run *r, const char *key)
{
    char why[512], rollup[LAKE_KEY_MAX];
    int rc = store_del(r->cfg->store, key, why, sizeof why) ? -1 : 0;
    for (int k = 0; k < LAKE_ROLLUP_KINDS; k++)
        if (!lake_rollup_key_of(key, k, rollup)) store_del(r->cfg->store, rollup, why, sizeof why);
    return rc;
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
int compact__lease_keep(lease *l, char *err, size_t errlen)
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

static int run_dir_open(compact__run *r)
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

static void run_dir_close(compact__run *r)
{
    remove_tree(r->dir);
    close(r->lock_fd); /* after: the directory is never unlocked while it exists */
}

static int duck_open(compact__run *r)
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

/* Deletes what died more than retain_ms ago. */
static void collect(compact__run *r, lake_partition *p)
{
    if (p->live) {
        compact__collect_table(r, p);
        return;
    }
    int64_t keep_after = r->now - (r->cfg->retain_ms > 0 ? r->cfg->retain_ms : 0);
    char why[512]; /* a file not deleted now is deleted by a later compact__run */
    for (size_t i = 0; i < p->n; i++) {
        lake_part_file *f = &p->f[i];
        if (f->live) continue;
        int64_t died = p->has_manifest ? lake_manifest_replaced_at(&p->m, f->name) : -1;
        /* dead without a manifest saying since when: a leftover parquet file */
        if (died < 0) died = f->mtime_ms;
        if (died <= keep_after && !compact__del(r, f->key)) r->st->deleted++;
    }
    if (p->has_manifest && p->m.created_ms <= keep_after)
        for (size_t i = 0; i < p->nold; i++)
            if (!store_del(r->cfg->store, p->old_manifests[i], why, sizeof why)) r->st->deleted++;
}

static int tick(void *ud, char *err, size_t errlen)
{
    compact__run *r = ud;
    return compact__lease_keep(&r->lease, err, errlen);
}

static void inputs_free(compact__run *r, inputs *in)
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

static int inputs_get(compact__run *r, lake_partition *p, inputs *in)
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

/* The hour's live files (fetched into in) compacted into res; keep_all: an append (compact_hour.h).
 * 0, or -1 (r->err). */
int compact__files(compact__run *r, lake_partition *p, int keep_all, inputs *in,
                   compact_hour_result *res)
{
    if (compact__lease_keep(&r->lease, r->err, r->errlen)) return -1;
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
                            .hour = p->hour,
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

void compact__files_free(compact__run *r, inputs *in, compact_hour_result *res)
{
    for (size_t i = 0; i < res->nout; i++) { /* if still there */
        unlink(res->out[i].path);
        for (int k = 0; k < LAKE_ROLLUP_KINDS; k++)
            if (res->out[i].rollup[k]) unlink(res->out[i].rollup[k]);
    }
    compact_hour_result_free(res);
    inputs_free(r, in);
}

/*
 * Compacted files an hour may have before it is compacted again once due: one, or any number of
 * large ones. A file is small below a sixteenth of a chunk on disk (Parquet of events is about a
 * tenth of their JSON): compact_hour_run then decides by the events' own size.
 */
static int has_small_files(const compact__run *r, const lake_partition *p)
{
    size_t small = 0;
    for (size_t i = 0; i < p->n; i++)
        small += p->f[i].live && p->f[i].parquet && p->f[i].size < r->chunk_bytes / 16;
    return small > 1;
}

/* The partition's next Parquet files and commit. 0 done or not needed, -1 error. */
static int compact_one(compact__run *r, lake_partition *p)
{
    int64_t after = r->cfg->after_ms > 0 ? r->cfg->after_ms : 0;
    int due = (p->hour + 1) * 3600000 + after <= r->now;
    size_t nraw = 0;
    for (size_t i = 0; i < p->n; i++) nraw += p->f[i].live && !p->f[i].parquet;
    if (due ? !nraw && !has_small_files(r, p) : !nraw || !r->cfg->open_hours) return 0;
    inputs in;
    compact_hour_result res;
    if (compact__files(r, p, !due, &in, &res)) return -1;
    int rc = 0;
    if (res.nout || nraw) {
        uint64_t before = r->st->compacted;
        rc = compact__publish(r, p, &in, &res);
        if (!due && r->st->compacted > before) r->st->appended++;
    }
    compact__files_free(r, &in, &res);
    return rc;
}

int compact__on_partition(lake_partition *p, void *ud)
{
    compact__run *r = ud;
    r->st->partitions++;
    r->now = evtime_now_ms();
    if (r->cfg->sweep) collect(r, p);
    int rc = compact_one(r, p);
    r->now = evtime_now_ms();
    compact__settle_markers(r, p->hour, p);
    return rc ? -1 : 0;
}

int compact_run(const compact_config *cfg, compact_stats *st, char *err, size_t errlen)
{
    memset(st, 0, sizeof *st);
    compact__run r;
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
        if (!rc && !r.lt.t) rc = compact__convert_lake(&r);
        r.now = evtime_now_ms();
        if (!rc && (cfg->sweep || !r.lt.t)) {
            /* a lake without a table yet is small, or has segments of no index: swept */
            rc = lake_live_load(cfg->store, &r.lt, INT64_MIN, INT64_MAX, &r.lv, m, sizeof m);
            if (!rc)
                rc = lake_partitions_list(cfg->store, &r.lv, LAKE_EVENTS_PREFIX,
                                          compact__on_partition, &r, m, sizeof m);
            st->listed++;
        } else if (!rc) {
            rc = compact__pending_run(&r, m, sizeof m);
        }
        if (!rc) rc = compact__expire_table(&r);
        /* a day becomes due when a due hour of it is committed, or with time: a sweep sees it */
        if (!rc && (cfg->sweep || st->compacted > st->appended)) rc = compact__history(&r);
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
