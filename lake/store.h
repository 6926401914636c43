/*
 * store.h - the one interface to where the lake lives.
 *
 * A store maps keys ("events/2026/11/25/10/….jsonl") to immutable objects. Two
 * backends implement it: the local filesystem (store_fs.c) and, later,
 * S3-compatible object storage. The writer, compaction, queries and snapshots
 * use only this interface, so they are written once.
 *
 * Every operation returns STORE_OK (0) or a negative STORE_E* code, and on an
 * error writes the reason into the caller's buffer, its last two parameters
 * err and errlen, naming the object and the reason ("store: cannot rename …:
 * No space left on device"). A store handle may be used from several threads
 * at once.
 */
#ifndef EVENTS_STORE_H
#define EVENTS_STORE_H

#include "buf.h"

#include <stdint.h>

enum {
    STORE_OK = 0,
    STORE_ENOENT = -1,   /* no such object */
    STORE_EEXIST = -2,   /* conditional put: the object exists */
    STORE_EIO = -3,      /* anything else: I/O, network, permission, full disk */
    STORE_EINVAL = -4,   /* a key the store cannot hold */
    STORE_EREADONLY = -5 /* a put or a del on a store opened read-only */
};

enum {
    STORE_IF_ABSENT = 1, /* put only if no object has the key (atomic) */
    STORE_MOVE = 2,      /* put_file may take the file away (rename) */
    STORE_NOSYNC = 4,    /* put: visible at once and kept if the process dies, but not synced to
                          * the disk (a machine crash may lose it): for what may be lost at a
                          * cost, never for an acknowledged event. A directory only; S3's put is
                          * durable anyway */
};

typedef struct store_entry {
    const char *key;
    uint64_t size;
    int64_t mtime_ms;
} store_entry;

/* Called for each listed object in key order; return nonzero to stop. */
typedef int (*store_list_fn)(const store_entry *e, void *ud);

typedef struct store store;

typedef struct store_ops {
    int (*put)(store *s, const char *key, const void *data, size_t len, int flags, char *err,
               size_t errlen);
    int (*put_file)(store *s, const char *key, const char *path, int flags, char *err,
                    size_t errlen);
    /* Reads len bytes at off (len 0: to the end) and appends them to out. */
    int (*get)(store *s, const char *key, uint64_t off, uint64_t len, buf *out, char *err,
               size_t errlen);
    /* Writes the whole object to a new file at path (streamed, not held in memory);
     * on failure no file is left at path. */
    int (*get_file)(store *s, const char *key, const char *path, char *err, size_t errlen);
    int (*head)(store *s, const char *key, store_entry *out, char *err, size_t errlen);
    int (*list)(store *s, const char *prefix, store_list_fn fn, void *ud, char *err, size_t errlen);
    /* an object that is not there: STORE_OK */
    int (*del)(store *s, const char *key, char *err, size_t errlen);
    /* Local path of the object if the store is a filesystem, else NULL. */
    const char *(*root)(store *s);
    void (*close)(store *s);
} store_ops;

struct store {
    const store_ops *ops;
    char *url;    /* canonical, e.g. "file:///srv/lake" */
    int readonly; /* opened by store_open_readonly: put, put_file and del are refused */
};

/*
 * Opens the store named by url: "file:///abs/dir", a plain directory path
 * (created if missing), or "s3://bucket/prefix". Returns 0 and *out, or -1
 * with a message in err.
 */
int store_open(const char *url, store **out, char *err, size_t errlen);

/*
 * Opens the store named by url for reading only, as SQLITE_OPEN_READONLY
 * does: a directory that does not exist is an error, and nothing is created;
 * put, put_file and del return STORE_EREADONLY.
 */
int store_open_readonly(const char *url, store **out, char *err, size_t errlen);

/* Writes why a write to the read-only store s is refused into err; returns STORE_EREADONLY. */
int store_refuse_write(const store *s, const char *key, char *err, size_t errlen);

static inline int store_put(store *s, const char *key, const void *d, size_t n, int flags,
                            char *err, size_t errlen)
{
    if (s->readonly) return store_refuse_write(s, key, err, errlen);
    return s->ops->put(s, key, d, n, flags, err, errlen);
}
static inline int store_put_file(store *s, const char *key, const char *path, int flags, char *err,
                                 size_t errlen)
{
    if (s->readonly) return store_refuse_write(s, key, err, errlen);
    return s->ops->put_file(s, key, path, flags, err, errlen);
}
static inline int store_get(store *s, const char *key, uint64_t off, uint64_t len, buf *out,
                            char *err, size_t errlen)
{
    return s->ops->get(s, key, off, len, out, err, errlen);
}
static inline int store_get_file(store *s, const char *key, const char *path, char *err,
                                 size_t errlen)
{
    return s->ops->get_file(s, key, path, err, errlen);
}
static inline int store_head(store *s, const char *key, store_entry *e, char *err, size_t errlen)
{
    return s->ops->head(s, key, e, err, errlen);
}
static inline int store_list(store *s, const char *prefix, store_list_fn fn, void *ud, char *err,
                             size_t errlen)
{
    return s->ops->list(s, prefix, fn, ud, err, errlen);
}
static inline int store_del(store *s, const char *key, char *err, size_t errlen)
{
    if (s->readonly) return store_refuse_write(s, key, err, errlen);
    return s->ops->del(s, key, err, errlen);
}
void store_close(store *s);

/* Writes the message into err (as snprintf) and returns code: a failure in one statement. */
int store_fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* 1 if key is acceptable to every backend: relative, no "..", no "//". */
int store_key_valid(const char *key);

/* The filesystem backend; dir must exist. */
int store_fs_open(const char *dir, store **out, char *err, size_t errlen);

/*
 * The S3 backend: "s3://bucket[/prefix]", credentials and endpoint from the
 * environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
 * AWS_REGION, AWS_ENDPOINT_URL). Checks them with one request before it
 * returns (a clear error for refused credentials or a missing bucket).
 */
int store_s3_open(const char *url, store **out, char *err, size_t errlen);

#endif
