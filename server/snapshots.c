/*
 * snapshots.c - see snapshots.h.
 */
#include "snapshots.h"
#include "codec.h"
#include "evrand.h"
#include "evtime.h"
#include "layout.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct snapshots_upload {
    int fd;
    char path[4200];
    char source[64], bookmark[EVENTS_BOOKMARK_LEN + 1];
    sha256 sha;
    uint64_t size;
    unsigned char head[16];
};

static int bookmark_valid(const char *s)
{
    if (strlen(s) != EVENTS_BOOKMARK_LEN) return 0;
    for (int i = 0; i < 16; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

int snapshots_parse_url(const char *url, char source[64], char bookmark[EVENTS_BOOKMARK_LEN + 1],
                        char *err, size_t errlen)
{
    if (!strcmp(url, "/snapshots") || !strcmp(url, "/snapshots/")) return 1;
    if (strncmp(url, "/snapshots/", 11)) return -2;
    const char *s = url + 11, *slash = strchr(s, '/');
    if (!slash || (size_t)(slash - s) >= 64) {
        snprintf(err, errlen, "expected /snapshots/{source}/{bookmark}");
        return -1;
    }
    memcpy(source, s, (size_t)(slash - s));
    source[slash - s] = 0;
    if (!lake_source_valid(source)) {
        snprintf(err, errlen, "source \"%.64s\" must be 1-32 characters of [0-9A-Za-z_.-]", source);
        return -1;
    }
    if (strlen(slash + 1) != EVENTS_BOOKMARK_LEN || !bookmark_valid(slash + 1)) {
        snprintf(err, errlen, "bookmark \"%.40s\" must be 16 lowercase hex digits", slash + 1);
        return -1;
    }
    memcpy(bookmark, slash + 1, EVENTS_BOOKMARK_LEN + 1);
    return 0;
}

snapshots_upload *snapshots_begin(const char *dir, const char *source, const char *bookmark,
                                  char *err, size_t errlen)
{
    snapshots_upload *u = calloc(1, sizeof *u);
    if (!u) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(u->path, sizeof u->path, "%s/snapshot-%016llx.tmp", dir,
             (unsigned long long)evrand_u64());
    u->fd = open(u->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (u->fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", u->path, strerror(errno));
        free(u);
        return NULL;
    }
    snprintf(u->source, sizeof u->source, "%s", source);
    snprintf(u->bookmark, sizeof u->bookmark, "%s", bookmark);
    sha256_init(&u->sha);
    return u;
}

int snapshots_write(snapshots_upload *u, const void *p, size_t n, char *err, size_t errlen)
{
    if (u->size < 16) {
        size_t k = 16 - u->size < n ? 16 - (size_t)u->size : n;
        memcpy(u->head + u->size, p, k);
    }
    sha256_update(&u->sha, p, n);
    for (const char *q = p; n;) {
        ssize_t w = write(u->fd, q, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            snprintf(err, errlen, "cannot write the upload: %s", strerror(errno));
            return -1;
        }
        q += w, n -= (size_t)w, u->size += (uint64_t)w;
    }
    return 0;
}

uint64_t snapshots_size(const snapshots_upload *u)
{
    return u->size;
}

void snapshots_abort(snapshots_upload *u)
{
    if (!u) return;
    if (u->fd >= 0) close(u->fd);
    unlink(u->path);
    free(u);
}

/* Writes the reason into err and returns code. */
static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return code;
}

/*
 * path as a SQLite URI that opens the file immutable: read-only, without locks,
 * and without the -wal and -shm files a database in WAL mode otherwise gets
 * beside it (the server is the only one with the file).
 */
static void immutable_uri(const char *path, buf *out)
{
    buf_puts(out, path[0] == '/' ? "file://" : "file:"); /* an empty authority, then the path */
    for (const char *p = path; *p; p++) {
        if (*p == '%' || *p == '?' || *p == '#')
            buf_printf(out, "%%%02X", (unsigned)(unsigned char)*p);
        else
            buf_putc(out, *p);
    }
    buf_puts(out, "?immutable=1");
}

/* The tables of the snapshot (not libevents' own) with their row counts; NULL if it is not a sound
 * database. */
static json_t *describe(const char *path, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    json_t *tables = NULL;
    buf uri = BUF_INIT;
    immutable_uri(path, &uri);
    if (!buf_cstr(&uri)) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int rc = sqlite3_open_v2(uri.p, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
    buf_free(&uri);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "not a SQLite database: %s", sqlite3_errmsg(db));
        goto out;
    }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW || strcmp((const char *)sqlite3_column_text(st, 0), "ok")) {
        snprintf(err, errlen, "the database is damaged: %s",
                 sqlite3_errcode(db) == SQLITE_ROW || sqlite3_errcode(db) == SQLITE_OK
                     ? (const char *)sqlite3_column_text(st, 0)
                     : sqlite3_errmsg(db));
        sqlite3_finalize(st);
        goto out;
    }
    sqlite3_finalize(st);
    tables = json_array();
    if (sqlite3_prepare_v2(
            db,
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE '\\_events\\_%' "
            "ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
            -1, &st, NULL) == SQLITE_OK)
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *name = (const char *)sqlite3_column_text(st, 0);
            if (!name) continue;
            char q[600];
            snprintf(q, sizeof q, "SELECT count(*) FROM \"%s\"", name);
            sqlite3_stmt *c = NULL;
            long long rows = -1;
            if (!strchr(name, '"') && sqlite3_prepare_v2(db, q, -1, &c, NULL) == SQLITE_OK &&
                sqlite3_step(c) == SQLITE_ROW)
                rows = sqlite3_column_int64(c, 0);
            if (!strchr(name, '"')) sqlite3_finalize(c);
            json_array_append_new(tables,
                                  json_pack("{s:s,s:I}", "name", name, "rows", (json_int_t)rows));
        }
    sqlite3_finalize(st);
out:
    sqlite3_close(db);
    return tables;
}

int snapshots_finish(snapshots_upload *u, store *st, buf *answer, char *err, size_t errlen)
{
    int ret = SNAPSHOTS_EIO;
    char key[LAKE_KEY_MAX], mkey[LAKE_KEY_MAX], hex[65];
    unsigned char d[32];
    sha256_final(&u->sha, d);
    sha256_hex(d, hex);
    if (fsync(u->fd) || close(u->fd)) {
        u->fd = -1;
        ret = fail(err, errlen, SNAPSHOTS_EIO, "cannot store the upload: %s", strerror(errno));
        goto out;
    }
    u->fd = -1;
    if (u->size < 512 || memcmp(u->head, "SQLite format 3", 16)) {
        ret = fail(err, errlen, SNAPSHOTS_EINVAL, "the body is not a SQLite database (%llu bytes)",
                   (unsigned long long)u->size);
        goto out;
    }
    json_t *tables = describe(u->path, err, errlen);
    if (!tables) {
        ret = SNAPSHOTS_EINVAL;
        goto out;
    }
    lake_snapshot_key(u->source, u->bookmark, "db", key);
    lake_snapshot_key(u->source, u->bookmark, "json", mkey);
    char now[EVTIME_LEN + 1];
    evtime_format(evtime_now_ms(), now);
    json_t *m =
        json_pack("{s:s,s:s,s:s,s:I,s:s,s:o}", "source", u->source, "bookmark", u->bookmark,
                  "createdAt", now, "size", (json_int_t)u->size, "sha256", hex, "tables", tables);
    char *text = json_dumps(m, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(m);
    char why[512];
    int rc = store_put_file(st, key, u->path, STORE_IF_ABSENT | STORE_MOVE, why, sizeof why);
    if (rc == STORE_EEXIST) { /* the same file again is fine; another one is not */
        buf old = BUF_INIT;
        json_t *om = NULL;
        if (store_get(st, mkey, 0, 0, &old, why, sizeof why) == STORE_OK)
            om = json_loadb(old.p, old.len, 0, NULL);
        const char *osha = json_string_value(json_object_get(om, "sha256"));
        if (osha && !strcmp(osha, hex)) {
            answer->len = 0;
            buf_append(answer, old.p, old.len);
            ret = 1;
        } else {
            ret = fail(err, errlen, SNAPSHOTS_EEXIST,
                       "snapshot %s/%s exists with other content (sha256 %s)", u->source,
                       u->bookmark, osha ? osha : "unknown");
        }
        json_decref(om);
        buf_free(&old);
    } else if (rc || store_put(st, mkey, text, strlen(text), 0, why, sizeof why)) {
        ret = fail(err, errlen, SNAPSHOTS_EIO, "cannot store the snapshot: %s", why);
    } else {
        answer->len = 0;
        buf_puts(answer, text);
        ret = 0;
    }
    free(text);
out:
    snapshots_abort(u);
    return ret;
}

typedef struct lister {
    store *st;
    const char *source;
    json_t *list;
} lister;

static int list_one(const store_entry *e, void *ud)
{
    lister *l = ud;
    char source[64], bm[EVENTS_BOOKMARK_LEN + 1];
    const char *ext;
    if (lake_parse_snapshot_key(e->key, source, bm, &ext) || strcmp(ext, "json")) return 0;
    if (l->source && strcmp(l->source, source)) return 0;
    buf b = BUF_INIT;
    char why[512]; /* a snapshot whose record cannot be read is not listed */
    if (store_get(l->st, e->key, 0, 0, &b, why, sizeof why) == STORE_OK) {
        json_t *m = json_loadb(b.p, b.len, 0, NULL);
        if (m) json_array_append_new(l->list, m);
    }
    buf_free(&b);
    return 0;
}

int snapshots_list(store *st, const char *source, buf *answer, char *err, size_t errlen)
{
    if (source && !lake_source_valid(source))
        return fail(err, errlen, SNAPSHOTS_EINVAL,
                    "source \"%.64s\" must be 1-32 characters of [0-9A-Za-z_.-]", source);
    char prefix[LAKE_KEY_MAX];
    if (source)
        snprintf(prefix, sizeof prefix, LAKE_SNAPSHOTS_PREFIX "%s/", source);
    else
        snprintf(prefix, sizeof prefix, LAKE_SNAPSHOTS_PREFIX);
    lister l = {st, source, json_array()};
    char why[512];
    int rc = store_list(st, prefix, list_one, &l, why, sizeof why);
    if (rc && rc != STORE_ENOENT) {
        json_decref(l.list);
        return fail(err, errlen, SNAPSHOTS_EIO, "cannot list the snapshots: %s", why);
    }
    json_t *out = json_pack("{s:o}", "snapshots", l.list);
    char *text = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(out);
    answer->len = 0;
    buf_puts(answer, text);
    free(text);
    return 0;
}

int snapshots_open(store *st, const char *tmp_dir, const char *source, const char *bookmark,
                   int *fd, uint64_t *size, char *err, size_t errlen)
{
    char key[LAKE_KEY_MAX], path[4200];
    lake_snapshot_key(source, bookmark, "db", key);
    *fd = -1;
    const char *root = st->ops->root(st);
    int tmp = !root;
    if (root) { /* the lake's own file */
        snprintf(path, sizeof path, "%s/%s", root, key);
    } else { /* a copy, streamed to local disk, not memory */
        snprintf(path, sizeof path, "%s/snapshot-get-%016llx.tmp", tmp_dir,
                 (unsigned long long)evrand_u64());
        char why[512];
        int rc = store_get_file(st, key, path, why, sizeof why);
        if (rc == STORE_ENOENT)
            return fail(err, errlen, SNAPSHOTS_ENOENT, "no snapshot %s/%s", source, bookmark);
        if (rc) return fail(err, errlen, SNAPSHOTS_EIO, "cannot read the snapshot: %s", why);
    }
    int f = open(path, O_RDONLY | O_CLOEXEC);
    int e = errno;
    if (tmp) unlink(path); /* the descriptor keeps it until the answer is sent */
    if (f < 0 && e == ENOENT)
        return fail(err, errlen, SNAPSHOTS_ENOENT, "no snapshot %s/%s", source, bookmark);
    if (f < 0)
        return fail(err, errlen, SNAPSHOTS_EIO, "cannot read the snapshot %s/%s: %s", source,
                    bookmark, strerror(e));
    struct stat sb;
    if (fstat(f, &sb) || !S_ISREG(sb.st_mode)) {
        close(f);
        return fail(err, errlen, SNAPSHOTS_ENOENT, "no snapshot %s/%s", source, bookmark);
    }
    *fd = f;
    *size = (uint64_t)sb.st_size;
    return 0;
}

int snapshots_clean(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len > 13 && !strncmp(de->d_name, "snapshot-", 9) &&
            !strcmp(de->d_name + len - 4, ".tmp") && !unlinkat(dirfd(d), de->d_name, 0))
            n++;
    }
    closedir(d);
    return n;
}
