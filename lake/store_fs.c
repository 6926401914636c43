/*
 * store_fs.c - the store on a local filesystem: one file per object.
 *
 * Durability is the point of this file. An object appears whole or not at
 * all: data goes to a hidden temporary file in the target directory, is
 * fsync'ed, then renamed (or linked, for a conditional put, so that exactly
 * one of two racing writers wins), and the directory is fsync'ed so that the
 * name survives a power cut. New directories are fsync'ed into their parents
 * for the same reason. Hidden names (".tmp-…", ".spool") are never listed.
 */
#include "store.h"
#include "evrand.h"
#include "files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct fs_store {
    store base;
    char *root;
} fs_store;

static int path_of(fs_store *fs, const char *key, char *out, size_t n, char *err, size_t errlen)
{
    if (!store_key_valid(key))
        return store_fail(err, errlen, STORE_EINVAL, "store: invalid key \"%s\"", key);
    if ((size_t)snprintf(out, n, "%s/%s", fs->root, key) >= n)
        return store_fail(err, errlen, STORE_EINVAL, "store: key too long \"%s\"", key);
    return STORE_OK;
}

/* Creates the directories of path's parent that are missing, each made durable. */
static int make_parents(const char *path, char *err, size_t errlen)
{
    char dir[4096], why[4400];
    if (files_parent(path, dir, sizeof dir, why, sizeof why))
        return store_fail(err, errlen, STORE_EINVAL, "store: %s", why);
    size_t n = strlen(dir);
    struct stat st;
    if (!stat(dir, &st)) return 0;
    for (size_t i = 1; i <= n; i++) {
        if (dir[i] != '/' && dir[i] != 0) continue;
        char save = dir[i];
        dir[i] = 0;
        if (!mkdir(dir, 0755)) {
            char *up = strrchr(dir, '/');
            *up = 0;
            int r = files_sync_dir(up == dir ? "/" : dir, why, sizeof why);
            *up = '/';
            if (r) return store_fail(err, errlen, STORE_EIO, "store: %s", why);
        } else if (errno != EEXIST) {
            return store_fail(err, errlen, STORE_EIO, "store: cannot create %s: %s", dir,
                              strerror(errno));
        }
        dir[i] = save;
    }
    return 0;
}

static int sync_parent(const char *path, char *err, size_t errlen)
{
    char dir[4096] = "", why[4400];
    if (files_parent(path, dir, sizeof dir, why, sizeof why) ||
        files_sync_dir(dir, why, sizeof why))
        return store_fail(err, errlen, STORE_EIO, "store: %s", why);
    return 0;
}

/* A temporary name beside path: dir/.tmp-XXXXXXXXXXXXXXXX */
static void tmp_path(const char *path, char *out, size_t n)
{
    const char *slash = strrchr(path, '/');
    snprintf(out, n, "%.*s/.tmp-%016llx", (int)(slash - path), path,
             (unsigned long long)evrand_u64());
}

/* Makes tmp (complete and synced) visible as path. */
static int publish(const char *tmp, const char *path, int flags, char *err, size_t errlen)
{
    if (flags & STORE_IF_ABSENT) {
        if (link(tmp, path)) {
            int e = errno;
            unlink(tmp);
            if (e == EEXIST) return store_fail(err, errlen, STORE_EEXIST, "store: %s exists", path);
            return store_fail(err, errlen, STORE_EIO, "store: cannot link %s: %s", path,
                              strerror(e));
        }
        unlink(tmp);
    } else if (rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return store_fail(err, errlen, STORE_EIO, "store: cannot rename to %s: %s", path,
                          strerror(e));
    }
    return (flags & STORE_NOSYNC) ? 0 : sync_parent(path, err, errlen);
}

static int fs_put(store *s, const char *key, const void *data, size_t len, int flags, char *err,
                  size_t errlen)
{
    fs_store *fs = (fs_store *)s;
    char path[4096], tmp[4200];
    int r = path_of(fs, key, path, sizeof path, err, errlen);
    if (r || (r = make_parents(path, err, errlen))) return r;
    tmp_path(path, tmp, sizeof tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return store_fail(err, errlen, STORE_EIO, "store: cannot create %s: %s", tmp,
                          strerror(errno));
    if (files_write_all(fd, data, len, FILES_AT_POSITION) ||
        (!(flags & STORE_NOSYNC) && fsync(fd))) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return store_fail(err, errlen, STORE_EIO, "store: cannot write %s: %s", path, strerror(e));
    }
    if (close(fd)) {
        int e = errno;
        unlink(tmp);
        return store_fail(err, errlen, STORE_EIO, "store: cannot write %s: %s", path, strerror(e));
    }
    return publish(tmp, path, flags, err, errlen);
}

static int copy_file(const char *from, const char *to, char *err, size_t errlen)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return store_fail(err, errlen, STORE_EIO, "store: cannot open %s: %s", from,
                          strerror(errno));
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
        int e = errno;
        close(in);
        return store_fail(err, errlen, STORE_EIO, "store: cannot create %s: %s", to, strerror(e));
    }
    char b[65536];
    int r = 0;
    for (;;) {
        ssize_t n = read(in, b, sizeof b);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            r = store_fail(err, errlen, STORE_EIO, "store: cannot read %s: %s", from,
                           strerror(errno));
            break;
        }
        if (n == 0) break;
        if (files_write_all(out, b, (size_t)n, FILES_AT_POSITION)) {
            r = store_fail(err, errlen, STORE_EIO, "store: cannot write %s: %s", to,
                           strerror(errno));
            break;
        }
    }
    if (!r && fsync(out))
        r = store_fail(err, errlen, STORE_EIO, "store: cannot sync %s: %s", to, strerror(errno));
    close(in);
    if (close(out) && !r)
        r = store_fail(err, errlen, STORE_EIO, "store: cannot write %s: %s", to, strerror(errno));
    if (r) unlink(to);
    return r;
}

static int fs_put_file(store *s, const char *key, const char *src, int flags, char *err,
                       size_t errlen)
{
    fs_store *fs = (fs_store *)s;
    char path[4096], tmp[4200];
    int r = path_of(fs, key, path, sizeof path, err, errlen);
    if (r || (r = make_parents(path, err, errlen))) return r;
    if (flags & STORE_MOVE) {
        /* the source is complete and synced: publish it under its new name directly */
        int ok = (flags & STORE_IF_ABSENT) ? link(src, path) : rename(src, path);
        if (!ok) {
            if (flags & STORE_IF_ABSENT) unlink(src);
            return sync_parent(path, err, errlen);
        }
        if (errno == EEXIST && (flags & STORE_IF_ABSENT))
            return store_fail(err, errlen, STORE_EEXIST, "store: %s exists", path);
        if (errno != EXDEV)
            return store_fail(err, errlen, STORE_EIO, "store: cannot move %s to %s: %s", src, path,
                              strerror(errno));
    }
    tmp_path(path, tmp, sizeof tmp);
    if ((r = copy_file(src, tmp, err, errlen))) return r;
    if ((r = publish(tmp, path, flags, err, errlen))) return r;
    if (flags & STORE_MOVE) unlink(src);
    return STORE_OK;
}

static int fs_get(store *s, const char *key, uint64_t off, uint64_t len, buf *out, char *err,
                  size_t errlen)
{
    fs_store *fs = (fs_store *)s;
    char path[4096];
    int r = path_of(fs, key, path, sizeof path, err, errlen);
    if (r) return r;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return store_fail(err, errlen, STORE_ENOENT, "store: %s: no such object", key);
        return store_fail(err, errlen, STORE_EIO, "store: cannot open %s: %s", path,
                          strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st)) {
        int e = errno;
        close(fd);
        return store_fail(err, errlen, STORE_EIO, "store: cannot stat %s: %s", path, strerror(e));
    }
    uint64_t size = (uint64_t)st.st_size;
    if (off > size) off = size;
    uint64_t want = size - off;
    if (len && len < want) want = len;
    if (buf_reserve(out, want)) {
        close(fd);
        return store_fail(err, errlen, STORE_EIO, "store: out of memory reading %s", key);
    }
    uint64_t got = 0;
    while (got < want) {
        ssize_t n = pread(fd, out->p + out->len + got, want - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            return store_fail(err, errlen, STORE_EIO, "store: cannot read %s: %s", path,
                              strerror(e));
        }
        if (n == 0) break;
        got += (uint64_t)n;
    }
    close(fd);
    out->len += got;
    return STORE_OK;
}

static int fs_head(store *s, const char *key, store_entry *e, char *err, size_t errlen)
{
    fs_store *fs = (fs_store *)s;
    char path[4096];
    int r = path_of(fs, key, path, sizeof path, err, errlen);
    if (r) return r;
    struct stat st;
    if (stat(path, &st)) {
        if (errno == ENOENT)
            return store_fail(err, errlen, STORE_ENOENT, "store: %s: no such object", key);
        return store_fail(err, errlen, STORE_EIO, "store: cannot stat %s: %s", path,
                          strerror(errno));
    }
    if (!S_ISREG(st.st_mode))
        return store_fail(err, errlen, STORE_ENOENT, "store: %s: no such object", key);
    e->key = key;
    e->size = (uint64_t)st.st_size;
    e->mtime_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
    return STORE_OK;
}

typedef struct name {
    char *s;
    int dir;
} name;

/* Orders names as full keys would sort: a directory compares as "name/". */
static int name_cmp(const void *a, const void *b)
{
    const name *x = a, *y = b;
    const unsigned char *p = (const unsigned char *)x->s, *q = (const unsigned char *)y->s;
    for (;; p++, q++) {
        unsigned cp = *p ? *p : (x->dir ? '/' : 0), cq = *q ? *q : (y->dir ? '/' : 0);
        if (cp != cq) return cp < cq ? -1 : 1;
        if (!*p || !*q) return 0;
    }
}

typedef struct walk {
    fs_store *fs;
    const char *prefix;
    size_t plen;
    store_list_fn fn;
    void *ud;
    int stop;
} walk;

static int walk_dir(walk *w, char *key, size_t klen, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%.*s", w->fs->root, (int)klen, key);
    DIR *d = opendir(path);
    if (!d) {
        if (errno == ENOENT || errno == ENOTDIR) return STORE_OK;
        return store_fail(err, errlen, STORE_EIO, "store: cannot list %s: %s", path,
                          strerror(errno));
    }
    name *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int r = STORE_OK;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        int dir = de->d_type == DT_DIR;
        if (de->d_type == DT_UNKNOWN) {
            struct stat st;
            char p2[4200];
            snprintf(p2, sizeof p2, "%s/%s", path, de->d_name);
            dir = !stat(p2, &st) && S_ISDIR(st.st_mode);
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            name *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                r = store_fail(err, errlen, STORE_EIO, "store: out of memory listing %s", path);
                break;
            }
            v = nv;
        }
        if (!(v[n].s = strdup(de->d_name))) {
            r = store_fail(err, errlen, STORE_EIO, "store: out of memory listing %s", path);
            break;
        }
        v[n++].dir = dir;
    }
    closedir(d);
    if (!r && n) qsort(v, n, sizeof *v, name_cmp);
    for (size_t i = 0; i < n && !r && !w->stop; i++) {
        size_t nl = strlen(v[i].s);
        if (klen + nl + 2 >= 1024) continue;
        memcpy(key + klen, v[i].s, nl);
        size_t k2 = klen + nl;
        if (v[i].dir) {
            key[k2] = '/';
            /* descend only where the prefix can still match */
            size_t cmp = k2 + 1 < w->plen ? k2 + 1 : w->plen;
            if (!memcmp(key, w->prefix, cmp)) r = walk_dir(w, key, k2 + 1, err, errlen);
        } else {
            key[k2] = 0;
            if (k2 >= w->plen && !memcmp(key, w->prefix, w->plen)) {
                struct stat st;
                char p2[4200];
                snprintf(p2, sizeof p2, "%s/%s", w->fs->root, key);
                if (stat(p2, &st)) continue; /* removed meanwhile */
                store_entry e = {key, (uint64_t)st.st_size,
                                 (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000};
                if (w->fn(&e, w->ud)) w->stop = 1;
            }
        }
    }
    for (size_t i = 0; i < n; i++) free(v[i].s);
    free(v);
    return r;
}

static int fs_list(store *s, const char *prefix, store_list_fn fn, void *ud, char *err,
                   size_t errlen)
{
    walk w = {(fs_store *)s, prefix, strlen(prefix), fn, ud, 0};
    char key[1024];
    const char *slash = strrchr(prefix, '/');
    size_t klen = slash ? (size_t)(slash - prefix + 1) : 0;
    if (klen >= sizeof key) return store_fail(err, errlen, STORE_EINVAL, "store: prefix too long");
    memcpy(key, prefix, klen);
    return walk_dir(&w, key, klen, err, errlen);
}

static int fs_del(store *s, const char *key, char *err, size_t errlen)
{
    fs_store *fs = (fs_store *)s;
    char path[4096];
    int r = path_of(fs, key, path, sizeof path, err, errlen);
    if (r) return r;
    if (unlink(path) && errno != ENOENT) /* deleting what is not there is done, as on S3 */
        return store_fail(err, errlen, STORE_EIO, "store: cannot delete %s: %s", path,
                          strerror(errno));
    return STORE_OK;
}

static const char *fs_root(store *s)
{
    return ((fs_store *)s)->root;
}

static void fs_close(store *s)
{
    fs_store *fs = (fs_store *)s;
    free(fs->root);
    free(fs->base.url);
    free(fs);
}

static int fs_get_file(store *s, const char *key, const char *to, char *err, size_t errlen)
{
    fs_store *fs = (fs_store *)s;
    char path[4096];
    int r = path_of(fs, key, path, sizeof path, err, errlen);
    if (r) return r;
    if (access(path, F_OK))
        return store_fail(err, errlen, STORE_ENOENT, "store: %s: no such object", key);
    return copy_file(path, to, err, errlen);
}

static const store_ops fs_ops = {fs_put,  fs_put_file, fs_get,  fs_get_file, fs_head,
                                 fs_list, fs_del,      fs_root, fs_close};

int store_fs_open(const char *dir, store **out, char *err, size_t errlen)
{
    char *root = realpath(dir, NULL);
    if (!root) {
        snprintf(err, errlen, "lake %s: %s", dir, strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(root, &st) || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "lake %s: not a directory", dir);
        free(root);
        return -1;
    }
    fs_store *fs = calloc(1, sizeof *fs);
    size_t ul = strlen(root) + 8;
    char *url = malloc(ul);
    if (!fs || !url) {
        free(fs);
        free(url);
        free(root);
        snprintf(err, errlen, "lake %s: out of memory", dir);
        return -1;
    }
    snprintf(url, ul, "file://%s", root);
    fs->base.ops = &fs_ops;
    fs->base.url = url;
    fs->root = root;
    *out = &fs->base;
    return 0;
}
