/*
 * store_s3.c - the store on S3-compatible object storage (AWS S3, R2, MinIO,
 * Ceph radosgw): which requests each operation makes and what their answers
 * mean, and opening the store from the environment. The requests themselves
 * (signing, retries, the curl handles) are s3_request.c's.
 *
 *   put         PUT, or a multipart upload above multipart_above bytes (parts
 *               of part_size); STORE_IF_ABSENT is If-None-Match: * (412 means
 *               the object exists; after a retry, an object with our bytes is
 *               our own earlier attempt)
 *   get         GET with Range
 *   head        HEAD
 *   list        ListObjectsV2, every page
 *   del         DELETE
 *
 * Addressing is path-style (http://host/bucket/key) when an endpoint is given
 * (AWS_ENDPOINT_URL: MinIO, R2, radosgw), virtual-host style
 * (https://bucket.s3.REGION.amazonaws.com/key) for AWS itself;
 * EVENTS_S3_PATH_STYLE=0|1 overrides.
 */
#include "s3_int.h"
#include "evtime.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The object name of a store key. */
static void object_name(const s3_store *s, const char *key, buf *out)
{
    out->len = 0;
    if (s->prefix[0]) {
        buf_puts(out, s->prefix);
        buf_putc(out, '/');
    }
    buf_puts(out, key);
    buf_cstr(out);
}

/* A single PUT of b. */
static int put_one(s3_store *s, const char *object, s3_body *b, const char *sha, int flags,
                   const char *key, char *err, size_t errlen)
{
    buf url = BUF_INIT;
    s3__url_of(s, object, NULL, &url);
    const char *extra[] = {flags & STORE_IF_ABSENT ? "If-None-Match: *" : NULL, NULL};
    s3_response r;
    memset(&r, 0, sizeof r);
    int rc = STORE_OK;
    s3__request(s, "PUT", url.p, b, sha, extra, &r);
    if (r.cc == CURLE_OK && r.status == 200) {
        /* stored */
    } else if (r.cc == CURLE_OK && r.status == 412 && (flags & STORE_IF_ABSENT)) {
        /* after a retry, the object there may be our own first attempt, whose answer was lost */
        int ours = 0;
        if (r.attempts > 1) {
            s3_response g;
            memset(&g, 0, sizeof g);
            s3__request(s, "GET", url.p, NULL, NULL, NULL, &g);
            char got[65];
            if (g.cc == CURLE_OK && g.status == 200) {
                s3__sha_hex(g.body.p ? g.body.p : "", g.body.len, got);
                ours = !strcmp(got, sha);
            }
            buf_free(&g.body);
        }
        if (!ours) rc = store_fail(err, errlen, STORE_EEXIST, "store: %s exists", key);
    } else {
        rc = s3__fail(s, STORE_EIO, "PUT", object, &r, err, errlen);
    }
    buf_free(&r.body);
    buf_free(&url);
    return rc;
}

/* A multipart upload of b (parts of part_size). */
static int put_multipart(s3_store *s, const char *object, s3_body *whole, int flags,
                         const char *key, char *err, size_t errlen)
{
    /* no conditional completion everywhere: check first (racy, documented) */
    if (flags & STORE_IF_ABSENT) {
        buf u = BUF_INIT;
        s3__url_of(s, object, NULL, &u);
        s3_response hr;
        memset(&hr, 0, sizeof hr);
        s3__request(s, "HEAD", u.p, NULL, NULL, NULL, &hr);
        buf_free(&u);
        buf_free(&hr.body);
        if (hr.cc == CURLE_OK && hr.status == 200)
            return store_fail(err, errlen, STORE_EEXIST, "store: %s exists", key);
    }
    buf url = BUF_INIT, xml = BUF_INIT, id = BUF_INIT, q = BUF_INIT;
    s3_response r;
    memset(&r, 0, sizeof r);
    int rc = STORE_OK;
    s3__url_of(s, object, "uploads=", &url);
    s3__request(s, "POST", url.p, NULL, NULL, NULL, &r);
    if (r.cc != CURLE_OK || r.status != 200 ||
        !s3__xml_get(r.body.p, r.body.len, "UploadId", &id, NULL)) {
        rc = s3__fail(s, STORE_EIO, "POST (create multipart upload)", object, &r, err, errlen);
        goto out;
    }
    buf_puts(&xml, "<CompleteMultipartUpload>");
    uint64_t nparts = (whole->len + s->part_size - 1) / s->part_size;
    for (uint64_t i = 0; i < nparts && !rc; i++) {
        s3_body part = {whole->mem ? whole->mem + whole->off + i * s->part_size : NULL, whole->fd,
                        whole->mem ? 0 : whole->off + i * s->part_size, 0, 0};
        part.len = whole->len - i * s->part_size < s->part_size ? whole->len - i * s->part_size
                                                                : s->part_size;
        char sha[65];
        if (part.mem)
            s3__sha_hex(part.mem, (size_t)part.len, sha);
        else if (s3__sha_file(part.fd, part.off, part.len, sha)) {
            rc = store_fail(err, errlen, STORE_EIO, "store: cannot read the file for %s: %s", key,
                            strerror(errno));
            break;
        }
        q.len = 0;
        buf_printf(&q, "partNumber=%llu&uploadId=", (unsigned long long)i + 1);
        s3__encode(&q, id.p, 0);
        buf_cstr(&q);
        s3__url_of(s, object, q.p, &url);
        s3__request(s, "PUT", url.p, &part, sha, NULL, &r);
        if (r.cc != CURLE_OK || r.status != 200 || !r.etag[0]) {
            rc = s3__fail(s, STORE_EIO, "PUT (part)", object, &r, err, errlen);
            break;
        }
        buf_printf(&xml, "<Part><PartNumber>%llu</PartNumber><ETag>%s</ETag></Part>",
                   (unsigned long long)i + 1, r.etag);
    }
    q.len = 0;
    buf_puts(&q, "uploadId=");
    s3__encode(&q, id.p, 0);
    buf_cstr(&q);
    s3__url_of(s, object, q.p, &url);
    if (!rc) {
        buf_puts(&xml, "</CompleteMultipartUpload>");
        char sha[65];
        s3__sha_hex(xml.p, xml.len, sha);
        s3_body b = {xml.p, -1, 0, xml.len, 0};
        s3__request(s, "POST", url.p, &b, sha, NULL, &r);
        /* an error can come inside a 200 answer */
        buf code = BUF_INIT;
        if (r.cc != CURLE_OK || r.status != 200 ||
            (r.body.p && s3__xml_get(r.body.p, r.body.len, "Code", &code, NULL)))
            rc =
                s3__fail(s, STORE_EIO, "POST (complete multipart upload)", object, &r, err, errlen);
        buf_free(&code);
    }
    if (rc) { /* leave no parts behind */
        s3_response ar;
        memset(&ar, 0, sizeof ar);
        s3__request(s, "DELETE", url.p, NULL, NULL, NULL, &ar);
        buf_free(&ar.body);
    }
out:
    buf_free(&r.body);
    buf_free(&url);
    buf_free(&xml);
    buf_free(&id);
    buf_free(&q);
    return rc;
}

static int s3_put(store *st, const char *key, const void *data, size_t len, int flags, char *err,
                  size_t errlen)
{
    s3_store *s = (s3_store *)st;
    if (!store_key_valid(key))
        return store_fail(err, errlen, STORE_EINVAL, "store: invalid key \"%s\"", key);
    buf object = BUF_INIT;
    object_name(s, key, &object);
    s3_body b = {data ? data : "", -1, 0, len, 0};
    int rc;
    if (len > s->multipart_above) {
        rc = put_multipart(s, object.p, &b, flags, key, err, errlen);
    } else {
        char sha[65];
        s3__sha_hex(data ? data : "", len, sha);
        rc = put_one(s, object.p, &b, sha, flags, key, err, errlen);
    }
    buf_free(&object);
    return rc;
}

static int s3_put_file(store *st, const char *key, const char *path, int flags, char *err,
                       size_t errlen)
{
    s3_store *s = (s3_store *)st;
    if (!store_key_valid(key))
        return store_fail(err, errlen, STORE_EINVAL, "store: invalid key \"%s\"", key);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb)) {
        int e = errno;
        if (fd >= 0) close(fd);
        return store_fail(err, errlen, STORE_EIO, "store: cannot read %s: %s", path, strerror(e));
    }
    buf object = BUF_INIT;
    object_name(s, key, &object);
    s3_body b = {NULL, fd, 0, (uint64_t)sb.st_size, 0};
    int rc;
    if ((uint64_t)sb.st_size > s->multipart_above) {
        rc = put_multipart(s, object.p, &b, flags, key, err, errlen);
    } else {
        char sha[65];
        rc = s3__sha_file(fd, 0, b.len, sha)
                 ? store_fail(err, errlen, STORE_EIO, "store: cannot read %s: %s", path,
                              strerror(errno))
                 : put_one(s, object.p, &b, sha, flags, key, err, errlen);
    }
    close(fd);
    buf_free(&object);
    if (!rc && (flags & STORE_MOVE)) unlink(path);
    return rc;
}

static int s3_get(store *st, const char *key, uint64_t off, uint64_t len, buf *out, char *err,
                  size_t errlen)
{
    s3_store *s = (s3_store *)st;
    if (!store_key_valid(key))
        return store_fail(err, errlen, STORE_EINVAL, "store: invalid key \"%s\"", key);
    buf object = BUF_INIT, url = BUF_INIT;
    object_name(s, key, &object);
    s3__url_of(s, object.p, NULL, &url);
    char range[80];
    if (len)
        snprintf(range, sizeof range, "Range: bytes=%llu-%llu", (unsigned long long)off,
                 (unsigned long long)(off + len - 1));
    else
        snprintf(range, sizeof range, "Range: bytes=%llu-", (unsigned long long)off);
    const char *extra[] = {off || len ? range : NULL, NULL};
    s3_response r;
    memset(&r, 0, sizeof r);
    s3__request(s, "GET", url.p, NULL, NULL, extra, &r);
    int rc = STORE_OK;
    if (r.cc == CURLE_OK && (r.status == 200 || r.status == 206)) {
        if (buf_append(out, r.body.p, r.body.len))
            rc = store_fail(err, errlen, STORE_EIO, "store: out of memory reading %s", key);
    } else if (r.cc == CURLE_OK && r.status == 416) {
        /* a range past the end: nothing */
    } else if (r.cc == CURLE_OK && r.status == 404) {
        rc = store_fail(err, errlen, STORE_ENOENT, "store: %s: no such object", key);
    } else {
        rc = s3__fail(s, STORE_EIO, "GET", object.p, &r, err, errlen);
    }
    buf_free(&r.body);
    buf_free(&object);
    buf_free(&url);
    return rc;
}

static int s3_get_file(store *st, const char *key, const char *path, char *err, size_t errlen)
{
    s3_store *s = (s3_store *)st;
    if (!store_key_valid(key))
        return store_fail(err, errlen, STORE_EINVAL, "store: invalid key \"%s\"", key);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return store_fail(err, errlen, STORE_EIO, "store: cannot create %s: %s", path,
                          strerror(errno));
    buf object = BUF_INIT, url = BUF_INIT;
    object_name(s, key, &object);
    s3__url_of(s, object.p, NULL, &url);
    s3_response r;
    memset(&r, 0, sizeof r);
    r.to_file = 1;
    r.fd = fd;
    s3__request(s, "GET", url.p, NULL, NULL, NULL, &r);
    int rc = STORE_OK;
    if (r.cc == CURLE_OK && r.status == 200) {
        if (r.content_length && r.written != r.content_length)
            rc = store_fail(err, errlen, STORE_EIO, "store: GET %s: %llu of %llu bytes", key,
                            (unsigned long long)r.written, (unsigned long long)r.content_length);
    } else if (r.cc == CURLE_OK && r.status == 404) {
        rc = store_fail(err, errlen, STORE_ENOENT, "store: %s: no such object", key);
    } else {
        rc = s3__fail(s, STORE_EIO, "GET", object.p, &r, err, errlen);
    }
    if (close(fd) && !rc)
        rc =
            store_fail(err, errlen, STORE_EIO, "store: cannot write %s: %s", path, strerror(errno));
    if (rc) unlink(path);
    buf_free(&r.body);
    buf_free(&object);
    buf_free(&url);
    return rc;
}

static int s3_head(store *st, const char *key, store_entry *out, char *err, size_t errlen)
{
    s3_store *s = (s3_store *)st;
    if (!store_key_valid(key))
        return store_fail(err, errlen, STORE_EINVAL, "store: invalid key \"%s\"", key);
    buf object = BUF_INIT, url = BUF_INIT;
    object_name(s, key, &object);
    s3__url_of(s, object.p, NULL, &url);
    s3_response r;
    memset(&r, 0, sizeof r);
    s3__request(s, "HEAD", url.p, NULL, NULL, NULL, &r);
    int rc = STORE_OK;
    if (r.cc == CURLE_OK && r.status == 200) {
        out->key = key;
        out->size = r.content_length;
        out->mtime_ms = r.mtime_ms;
    } else if (r.cc == CURLE_OK && r.status == 404) {
        rc = store_fail(err, errlen, STORE_ENOENT, "store: %s: no such object", key);
    } else {
        rc = s3__fail(s, STORE_EIO, "HEAD", object.p, &r, err, errlen);
    }
    buf_free(&r.body);
    buf_free(&object);
    buf_free(&url);
    return rc;
}

static int s3_list(store *st, const char *prefix, store_list_fn fn, void *ud, char *err,
                   size_t errlen)
{
    s3_store *s = (s3_store *)st;
    buf full = BUF_INIT, q = BUF_INIT, url = BUF_INIT, token = BUF_INIT, v = BUF_INIT, k = BUF_INIT;
    object_name(s, prefix, &full);
    size_t strip = s->prefix[0] ? strlen(s->prefix) + 1 : 0;
    s3_response r;
    memset(&r, 0, sizeof r);
    int rc = STORE_OK, more = 1, stop = 0;
    while (more && !rc && !stop) {
        q.len = 0; /* parameters in name order, as signed */
        if (token.len) {
            buf_puts(&q, "continuation-token=");
            s3__encode(&q, token.p, 0);
            buf_putc(&q, '&');
        }
        buf_puts(&q, "list-type=2");
        if (s->list_page) buf_printf(&q, "&max-keys=%d", s->list_page);
        buf_puts(&q, "&prefix=");
        s3__encode(&q, full.p, 0);
        buf_cstr(&q);
        s3__url_of(s, NULL, q.p, &url);
        s3__request(s, "GET", url.p, NULL, NULL, NULL, &r);
        if (r.cc != CURLE_OK || r.status != 200) {
            rc = r.cc == CURLE_OK && r.status == 404
                     ? s3__fail(s, STORE_ENOENT, "GET (list)", full.p, &r, err, errlen)
                     : s3__fail(s, STORE_EIO, "GET (list)", full.p, &r, err, errlen);
            break;
        }
        const char *p = r.body.p, *end = r.body.p + r.body.len;
        buf contents = BUF_INIT;
        while (!stop && p < end && s3__xml_get(p, (size_t)(end - p), "Contents", &contents, &p)) {
            if (!s3__xml_get(contents.p, contents.len, "Key", &k, NULL) || k.len < strip) continue;
            store_entry e = {k.p + strip, 0, 0};
            if (s3__xml_get(contents.p, contents.len, "Size", &v, NULL))
                e.size = strtoull(v.p, NULL, 10);
            int64_t ms;
            if (s3__xml_get(contents.p, contents.len, "LastModified", &v, NULL) &&
                !evtime_parse(v.p, v.len, &ms))
                e.mtime_ms = ms;
            if (fn(&e, ud)) stop = 1;
        }
        buf_free(&contents);
        more = s3__xml_get(r.body.p, r.body.len, "IsTruncated", &v, NULL) && !strcmp(v.p, "true") &&
               s3__xml_get(r.body.p, r.body.len, "NextContinuationToken", &token, NULL) &&
               token.len;
    }
    buf_free(&r.body);
    buf_free(&full);
    buf_free(&q);
    buf_free(&url);
    buf_free(&token);
    buf_free(&v);
    buf_free(&k);
    return rc;
}

static int s3_del(store *st, const char *key, char *err, size_t errlen)
{
    s3_store *s = (s3_store *)st;
    if (!store_key_valid(key))
        return store_fail(err, errlen, STORE_EINVAL, "store: invalid key \"%s\"", key);
    buf object = BUF_INIT, url = BUF_INIT;
    object_name(s, key, &object);
    s3__url_of(s, object.p, NULL, &url);
    s3_response r;
    memset(&r, 0, sizeof r);
    s3__request(s, "DELETE", url.p, NULL, NULL, NULL, &r);
    int rc = r.cc == CURLE_OK && (r.status == 204 || r.status == 200 || r.status == 404)
                 ? STORE_OK
                 : s3__fail(s, STORE_EIO, "DELETE", object.p, &r, err, errlen);
    buf_free(&r.body);
    buf_free(&object);
    buf_free(&url);
    return rc;
}

static const char *s3_root(store *st)
{
    (void)st;
    return NULL;
}

static void s3_close(store *st)
{
    s3_store *s = (s3_store *)st;
    for (int i = 0; i < s->npool; i++) curl_easy_cleanup(s->pool[i]);
    pthread_mutex_destroy(&s->mu);
    free(s->bucket);
    free(s->prefix);
    free(s->endpoint);
    free(s->region);
    free(s->access);
    free(s->secret);
    free(s->token);
    free(s->base.url);
    free(s);
}

static const store_ops S3_OPS = {s3_put,  s3_put_file, s3_get,  s3_get_file, s3_head,
                                 s3_list, s3_del,      s3_root, s3_close};

/* ---- opening ------------------------------------------------------------------------- */

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* A whole number from the environment, or def when unset. 0, or -1 if it is not one in [lo, hi]. */
static int env_num(const char *name, long long def, long long lo, long long hi, long long *out)
{
    const char *v = env(name);
    if (!v) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi) return -1;
    *out = n;
    return 0;
}

/* The bucket (b, bl long) and prefix of url, where it is, from the environment's region,
 * credentials and endpoint. NULL if out of memory. */
static s3_store *s3_new(const char *b, size_t bl, const char *access, const char *secret)
{
    s3_store *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    pthread_mutex_init(&s->mu, NULL);
    s->base.ops = &S3_OPS;
    s->bucket = strndup(b, bl);
    const char *pre = b + bl;
    while (*pre == '/') pre++;
    s->prefix = strdup(pre);
    size_t pl = s->prefix ? strlen(s->prefix) : 0;
    while (pl && s->prefix[pl - 1] == '/') s->prefix[--pl] = 0;
    s->region = strdup(env("AWS_REGION")           ? env("AWS_REGION")
                       : env("AWS_DEFAULT_REGION") ? env("AWS_DEFAULT_REGION")
                                                   : "us-east-1");
    s->access = strdup(access);
    s->secret = strdup(secret);
    s->token = env("AWS_SESSION_TOKEN") ? strdup(env("AWS_SESSION_TOKEN")) : NULL;
    const char *ep =
        env("AWS_ENDPOINT_URL_S3") ? env("AWS_ENDPOINT_URL_S3") : env("AWS_ENDPOINT_URL");
    if (ep) {
        s->endpoint = strdup(ep);
        s->path_style = 1;
    } else if (s->region) {
        size_t n = strlen(s->region) + 40;
        if ((s->endpoint = malloc(n)))
            snprintf(s->endpoint, n, "https://s3.%s.amazonaws.com", s->region);
        s->path_style = 0;
    }
    if (env("EVENTS_S3_PATH_STYLE")) s->path_style = strcmp(env("EVENTS_S3_PATH_STYLE"), "0") != 0;
    if (s->endpoint) {
        size_t n = strlen(s->endpoint);
        while (n && s->endpoint[n - 1] == '/') s->endpoint[--n] = 0;
    }
    return s;
}

/* The sizes, retries and timeout from the environment (docs/s3.md). 0, or -1 with err. */
static int read_tuning(s3_store *s, const char *url, char *err, size_t errlen)
{
    long long mp, ps, re, lp, to;
    const char *bad = env_num("EVENTS_S3_MULTIPART_ABOVE", 32ll << 20, 1, 1ll << 40, &mp)
                          ? "EVENTS_S3_MULTIPART_ABOVE"
                      : env_num("EVENTS_S3_PART_SIZE", 8ll << 20, 5ll << 20, 5ll << 30, &ps)
                          ? "EVENTS_S3_PART_SIZE"
                      : env_num("EVENTS_S3_RETRIES", 4, 0, 100, &re)    ? "EVENTS_S3_RETRIES"
                      : env_num("EVENTS_S3_LIST_PAGE", 0, 0, 1000, &lp) ? "EVENTS_S3_LIST_PAGE"
                      : env_num("EVENTS_S3_TIMEOUT_MS", 30000, 100, 3600000, &to)
                          ? "EVENTS_S3_TIMEOUT_MS"
                          : NULL;
    if (bad) {
        snprintf(err, errlen,
                 "lake %s: %s must be a whole number in range (%s given); see docs/s3.md", url, bad,
                 env(bad));
        return -1;
    }
    s->multipart_above = (uint64_t)mp;
    s->part_size = (uint64_t)ps; /* at least S3's minimum part, 5 MiB */
    s->retries = (int)re;
    s->list_page = (int)lp;
    s->timeout_ms = (long)to;
    return 0;
}

/* The store's canonical URL, and a usable endpoint. 0, or -1 with err. */
static int check_endpoint(s3_store *s, const char *url, char *err, size_t errlen)
{
    size_t n = strlen(s->bucket ? s->bucket : "") + strlen(s->prefix ? s->prefix : "") + 8;
    if (s->bucket && s->prefix && (s->base.url = malloc(n)))
        snprintf(s->base.url, n, "s3://%s%s%s", s->bucket, *s->prefix ? "/" : "", s->prefix);
    if (!s->bucket || !s->prefix || !s->region || !s->access || !s->secret || !s->endpoint ||
        !s->base.url ||
        (strncmp(s->endpoint, "http://", 7) && strncmp(s->endpoint, "https://", 8))) {
        snprintf(err, errlen,
                 "lake %s: bad endpoint %s (AWS_ENDPOINT_URL: http://host:port or https://…)", url,
                 s->endpoint ? s->endpoint : "");
        return -1;
    }
    return 0;
}

/* Why the bucket could not be listed, from r, into err. */
static void access_refused(const s3_store *s, const s3_response *r, char *err, size_t errlen)
{
    buf c = BUF_INIT;
    int has = r->body.p && s3__xml_get(r->body.p, r->body.len, "Code", &c, NULL);
    if (r->cc != CURLE_OK)
        snprintf(err, errlen, "lake %s: cannot reach %s: %s", s->base.url, s->endpoint, r->error);
    else if (r->status == 403)
        snprintf(err, errlen,
                 "lake %s: the credentials are refused (HTTP 403%s%s): check AWS_ACCESS_KEY_ID, "
                 "AWS_SECRET_ACCESS_KEY and AWS_REGION",
                 s->base.url, has ? " " : "", has ? c.p : "");
    else if (r->status == 404)
        snprintf(err, errlen, "lake %s: no such bucket (HTTP 404%s%s)", s->base.url, has ? " " : "",
                 has ? c.p : "");
    else
        snprintf(err, errlen, "lake %s: HTTP %ld%s%s from %s", s->base.url, r->status,
                 has ? " " : "", has ? c.p : "", s->endpoint);
    buf_free(&c);
}

/* The credentials and the bucket, checked now rather than at the first seal. 0, or -1 with err. */
static int check_access(s3_store *s, char *err, size_t errlen)
{
    buf q = BUF_INIT, u = BUF_INIT;
    buf_puts(&q, "list-type=2&max-keys=1&prefix=");
    s3__encode(&q, s->prefix, 0);
    buf_cstr(&q);
    s3__url_of(s, NULL, q.p, &u);
    s3_response r;
    memset(&r, 0, sizeof r);
    s3__request(s, "GET", u.p, NULL, NULL, NULL, &r);
    int ok = r.cc == CURLE_OK && r.status == 200;
    if (!ok) access_refused(s, &r, err, errlen);
    buf_free(&r.body);
    buf_free(&q);
    buf_free(&u);
    return ok ? 0 : -1;
}

/* Set once, by the first open of any thread; pthread_once is its lock. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

int store_s3_open(const char *url, store **out, char *err, size_t errlen)
{
    pthread_once(&curl_once, curl_init);
    const char *b = url + 5; /* after s3:// */
    size_t bl = strcspn(b, "/");
    if (!bl || bl > 63) {
        snprintf(err, errlen, "lake %s: expected s3://bucket[/prefix]", url);
        return -1;
    }
    const char *access = env("AWS_ACCESS_KEY_ID"), *secret = env("AWS_SECRET_ACCESS_KEY");
    if (!access || !secret) {
        snprintf(err, errlen, "lake %s: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are required",
                 url);
        return -1;
    }
    s3_store *s = s3_new(b, bl, access, secret);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (read_tuning(s, url, err, errlen) || check_endpoint(s, url, err, errlen) ||
        check_access(s, err, errlen)) {
        s3_close(&s->base);
        return -1;
    }
    *out = &s->base;
    return 0;
}
