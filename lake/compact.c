/*
 * compact.c - compaction and its lease (compact.h).
 */
#include "compact.h"

#include "buf.h"
#include "evrand.h"
#include "evtime.h"
#include "layout.h"
#include "partition.h"
#include "query.h"

#include <duckdb.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
static int lease_put(lease *l, uint64_t seq, int64_t expires_ms)
{
    char key[LAKE_KEY_MAX], at[EVTIME_LEN + 1];
    lake_lease_key(LEASE_NAME, seq, key);
    evtime_format(expires_ms, at);
    json_t *o = json_pack("{s:s, s:I, s:s}", "owner", l->owner, "expiresAt", (json_int_t)expires_ms,
                          "expires", at);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text) return store_fail(STORE_EIO, "out of memory");
    int r = store_put(l->s, key, text, strlen(text), STORE_IF_ABSENT);
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
        store_del(l->s, key);
    }
}

/* 0: taken; 1: held by another (holder says who); -1: error. */
static int lease_take(lease *l, char *holder, size_t cap, char *err, size_t errlen)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        latest lt = {0, 0, 0};
        if (store_list(l->s, LAKE_LEASES_PREFIX LEASE_NAME "/", on_lease, &lt)) {
            snprintf(err, errlen, "compaction: cannot read the lease: %s", store_errmsg());
            return -1;
        }
        int64_t now = evtime_now_ms();
        if (lt.n) {
            char key[LAKE_KEY_MAX];
            lake_lease_key(LEASE_NAME, lt.seq, key);
            buf text = BUF_INIT;
            int r = store_get(l->s, key, 0, 0, &text);
            json_t *doc = r ? NULL : json_loadb(text.p ? text.p : "", text.len, 0, NULL);
            buf_free(&text);
            if (r == STORE_ENOENT) continue; /* trimmed meanwhile: list again */
            if (r) {
                snprintf(err, errlen, "compaction: cannot read the lease: %s", store_errmsg());
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
        int r = lease_put(l, lt.seq + 1, now + l->ttl_ms);
        if (!r) {
            if (lt.n) lease_trim(l, lt.first);
            return 0;
        }
        if (r != STORE_EEXIST) {
            snprintf(err, errlen, "compaction: cannot take the lease: %s", store_errmsg());
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
    int r = lease_put(l, l->seq + 1, now + l->ttl_ms);
    if (r == STORE_EEXIST) {
        snprintf(err, errlen, "compaction: the lease was taken over by another compactor");
        return -1;
    }
    if (r) {
        snprintf(err, errlen, "compaction: cannot renew the lease: %s", store_errmsg());
        return -1;
    }
    return 0;
}

static void lease_give_up(lease *l)
{
    /* a record that expired at once: the next compactor need not wait */
    if (!lease_put(l, l->seq + 1, 0)) lease_trim(l, l->seq > 3 ? l->seq - 3 : 1);
}

/* ---- one run ------------------------------------------------------------- */

typedef struct run {
    const compact_config *cfg;
    compact_stats *st;
    lease lease;
    duckdb_database db;
    duckdb_connection con;
    char *err;
    size_t errlen;
    int64_t now;
} run;

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
    duckdb_set_config(dc, "memory_limit", mem);
    duckdb_set_config(dc, "autoinstall_known_extensions", "false");
    duckdb_set_config(dc, "autoload_known_extensions", "false");
    duckdb_set_config(dc, "temp_directory", r->cfg->work_dir);
    if (r->cfg->threads > 0) {
        snprintf(threads, sizeof threads, "%d", r->cfg->threads);
        duckdb_set_config(dc, "threads", threads);
    }
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
static void collect(run *r, lake_partition *p)
{
    int64_t keep_after = r->now - (r->cfg->retain_ms > 0 ? r->cfg->retain_ms : 0);
    for (size_t i = 0; i < p->n; i++) {
        lake_part_file *f = &p->f[i];
        if (f->live) continue;
        int64_t died = p->has_manifest ? lake_manifest_replaced_at(&p->m, f->name) : -1;
        /* dead without a manifest saying since when: a leftover parquet file */
        if (died < 0) died = f->mtime_ms;
        if (died <= keep_after && !store_del(r->cfg->store, f->key)) r->st->deleted++;
    }
    if (p->has_manifest && p->m.created_ms <= keep_after)
        for (size_t i = 0; i < p->nold; i++)
            if (!store_del(r->cfg->store, p->old_manifests[i])) r->st->deleted++;
}

/* The partition's next Parquet file and manifest. 0 done or not needed, -1 error. */
static int compact_one(run *r, lake_partition *p)
{
    const compact_config *cfg = r->cfg;
    int64_t after = cfg->after_ms > 0 ? cfg->after_ms : 0;
    if ((p->hour + 1) * 3600000 + after > r->now) return 0; /* the hour is still open */
    size_t nraw = 0;
    for (size_t i = 0; i < p->n; i++) nraw += p->f[i].live && !p->f[i].parquet;
    if (!nraw) return 0;
    if (lease_keep(&r->lease, r->err, r->errlen)) return -1;

    /* the inputs, local */
    size_t nin = 0;
    lake_cache_item *in = calloc(p->n, sizeof *in);
    unsigned char *pq = calloc(p->n, 1);
    if (!in || !pq) {
        free(in), free(pq);
        snprintf(r->err, r->errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < p->n; i++)
        if (p->f[i].live) {
            in[nin].key = p->f[i].key;
            in[nin].size = p->f[i].size;
            pq[nin++] = (unsigned char)p->f[i].parquet;
            r->st->bytes_in += p->f[i].size;
        }
    int rc = -1;
    char m[1024];
    const char *root = cfg->store->ops->root(cfg->store);
    if (!root) {
        if (lake_cache_fetch(cfg->cache, cfg->store, in, nin, 8, m, sizeof m)) {
            snprintf(r->err, r->errlen, "compaction: cannot fetch the files of %.*s: %s",
                     (int)(strrchr(p->f[0].key, '/') - p->f[0].key), p->f[0].key, m);
            free(in), free(pq);
            return -1;
        }
    } else {
        for (size_t i = 0; i < nin; i++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", root, in[i].key);
            if (!(in[i].path = strdup(path))) {
                snprintf(r->err, r->errlen, "out of memory");
                for (size_t k = 0; k < i; k++) free(in[k].path);
                free(in), free(pq);
                return -1;
            }
        }
    }

    char uuid[LAKE_UUID_LEN + 1], out[4096], key[LAKE_KEY_MAX], mkey[LAKE_KEY_MAX];
    evrand_uuid7(uuid);
    snprintf(out, sizeof out, "%s/%s.parquet", cfg->work_dir, uuid);
    lake_parquet_key(p->hour, uuid, key);
    buf jl = BUF_INIT, pl = BUF_INIT, sql = BUF_INIT;
    size_t nj = 0, np = 0;
    for (size_t i = 0; i < nin; i++) {
        buf *l = pq[i] ? &pl : &jl;
        if (pq[i] ? np++ : nj++) buf_putc(l, ',');
        query_sql_quote(l, in[i].path ? in[i].path : "");
    }
    buf_puts(&sql, "COPY (SELECT * FROM (");
    buf_printf(&sql, "SELECT %s FROM read_ndjson_objects([", QUERY_VIEW_COLUMNS);
    buf_append(&sql, jl.p, jl.len);
    buf_puts(&sql, "], ignore_errors = true) WHERE json IS NOT NULL AND "
                   "((json->>'id') IS NOT NULL OR (json->>'type') IS NOT NULL)");
    if (np) {
        buf_puts(&sql, " UNION ALL BY NAME SELECT * FROM read_parquet([");
        buf_append(&sql, pl.p, pl.len);
        buf_puts(&sql, "])");
    }
    buf_puts(&sql, ") QUALIFY id IS NULL OR row_number() OVER (PARTITION BY id ORDER BY "
                   "receivedAt NULLS LAST) = 1 ORDER BY ts NULLS LAST, id) TO ");
    query_sql_quote(&sql, out);
    buf_puts(&sql, " (FORMAT parquet, COMPRESSION zstd)");
    duckdb_result res;
    if (!buf_cstr(&sql)) {
        snprintf(r->err, r->errlen, "out of memory");
        goto done;
    }
    if (duckdb_query(r->con, sql.p, &res) == DuckDBError) {
        snprintf(r->err, r->errlen, "compaction of %s: %s", key, duckdb_result_error(&res));
        duckdb_destroy_result(&res);
        unlink(out);
        goto done;
    }
    uint64_t rows = (uint64_t)duckdb_value_int64(&res, 0, 0);
    duckdb_destroy_result(&res);
    struct stat sb;
    uint64_t size = stat(out, &sb) ? 0 : (uint64_t)sb.st_size;

    /* the file, then the manifest that makes it live */
    if (store_put_file(cfg->store, key, out, STORE_MOVE)) {
        snprintf(r->err, r->errlen, "compaction: cannot put %s: %s", key, store_errmsg());
        unlink(out);
        goto done;
    }
    /* renewed first, so that the times below are when the manifest goes in (the work above may
     * have taken minutes): a reader of the old manifest keeps its files retain_ms from now */
    if (lease_keep(&r->lease, r->err, r->errlen)) {
        store_del(cfg->store, key); /* never named: no reader can have it */
        goto done;
    }
    int64_t now = evtime_now_ms();
    json_t *replaced = json_object(), *names = json_array();
    for (size_t i = 0; i < p->n; i++) {
        lake_part_file *f = &p->f[i];
        int64_t at = f->live ? now : lake_manifest_replaced_at(&p->m, f->name);
        if (at >= 0) json_object_set_new(replaced, f->name, json_integer(at));
    }
    json_array_append_new(names, json_string(strrchr(key, '/') + 1));
    uint64_t seq = p->has_manifest ? p->m.seq + 1 : 1;
    char created[EVTIME_LEN + 1];
    evtime_format(now, created);
    json_t *doc =
        json_pack("{s:i, s:I, s:o, s:o, s:I, s:I, s:s, s:s}", "version", 1, "seq", (json_int_t)seq,
                  "parquet", names, "replaced", replaced, "rows", (json_int_t)rows, "createdAt",
                  (json_int_t)now, "created", created, "compactor", r->lease.owner);
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(doc);
    lake_manifest_key(p->hour, seq, mkey);
    if (!text) {
        snprintf(r->err, r->errlen, "out of memory");
        store_del(cfg->store, key);
        goto done;
    }
    int put = store_put(cfg->store, mkey, text, strlen(text), STORE_IF_ABSENT);
    free(text);
    if (put == STORE_EEXIST) {
        /* another compactor won this seq: our file is named by no manifest */
        r->st->conflicts++;
        store_del(cfg->store, key);
        rc = 0;
        goto done;
    }
    if (put) {
        /* the put may have landed all the same (an answer lost after the write): the file
         * stays, and a later run deletes it after retain_ms if no manifest names it */
        snprintf(r->err, r->errlen, "compaction: cannot put %s: %s", mkey, store_errmsg());
        goto done;
    }
    r->st->compacted++;
    r->st->files_in += nin;
    r->st->rows += rows;
    r->st->bytes_out += size;
    rc = 0;
done:
    if (!root)
        lake_cache_unpin(cfg->cache, in, nin);
    else
        for (size_t i = 0; i < nin; i++) free(in[i].path);
    free(in);
    free(pq);
    buf_free(&jl);
    buf_free(&pl);
    buf_free(&sql);
    return rc;
}

static int on_partition(lake_partition *p, void *ud)
{
    run *r = ud;
    r->st->partitions++;
    r->now = evtime_now_ms();
    collect(r, p);
    return compact_one(r, p) ? -1 : 0;
}

int lake_compact(const compact_config *cfg, compact_stats *st, char *err, size_t errlen)
{
    memset(st, 0, sizeof *st);
    run r;
    memset(&r, 0, sizeof r);
    r.cfg = cfg, r.st = st, r.err = err, r.errlen = errlen;
    err[0] = 0;
    if (!cfg->store->ops->root(cfg->store) && !cfg->cache) {
        snprintf(err, errlen, "compaction: an object store needs a cache");
        return -1;
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
    int rc = duck_open(&r);
    if (!rc) {
        char m[1024] = "";
        rc = lake_partitions_list(cfg->store, LAKE_EVENTS_PREFIX, on_partition, &r, m, sizeof m);
        if (rc && !err[0]) snprintf(err, errlen, "compaction: %s", m);
        rc = rc ? -1 : 0;
        duckdb_disconnect(&r.con);
        duckdb_close(&r.db);
    }
    lease_give_up(&r.lease);
    return rc;
}
