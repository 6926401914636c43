/*
 * store_s3.c - the store on S3-compatible object storage (AWS S3, R2, MinIO,
 * Ceph radosgw), over libcurl.
 *
 * Requests are signed with libcurl's CURLOPT_AWS_SIGV4. Debian 12's libcurl
 * (7.88) leaves some of the signing to the caller, and a strict server says
 * 403 otherwise: every request carries x-amz-content-sha256 (the body's hash,
 * the empty string's for GET, HEAD and DELETE); the path and the query string
 * are signed as written, so keys are percent-encoded outside [A-Za-z0-9-._~/]
 * and query parameters sorted and RFC 3986-encoded; no blank header is set
 * (curl would sign and then drop it).
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
 * Failed requests (no answer, 500, 502, 503, 504, 429) are retried with
 * exponential backoff and jitter; connections are kept in a pool of curl
 * handles for reuse. Addressing is path-style (http://host/bucket/key) when
 * an endpoint is given (AWS_ENDPOINT_URL: MinIO, R2, radosgw), virtual-host
 * style (https://bucket.s3.REGION.amazonaws.com/key) for AWS itself;
 * EVENTS_S3_PATH_STYLE=0|1 overrides.
 */
#include "codec.h"
#include "evrand.h"
#include "evtime.h"
#include "store.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define POOL_MAX     16

typedef struct s3_store {
    store base;
    char *bucket, *prefix; /* prefix: "" or "a/b" (no slashes at the ends) */
    char *endpoint;        /* scheme://host[:port] */
    char *region, *access, *secret, *token;
    int path_style;
    uint64_t multipart_above, part_size;
    int retries;
    int list_page;   /* max-keys of a list request; 0: the server's (1,000) */
    long timeout_ms; /* a whole request without a body to send */
    pthread_mutex_t mu;
    CURL *pool[POOL_MAX];
    int npool;
} s3_store;

/* ---- small helpers -------------------------------------------------------------- */

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* Percent-encodes s; '/' kept when keep_slash. */
static void encode(buf *b, const char *s, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (unreserved(*p) || (keep_slash && *p == '/')) {
            buf_putc(b, (char)*p);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            buf_append(b, e, 3);
        }
    }
}

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

/*
 * URL of an object (key may be NULL: the bucket) with a query string (already
 * sorted and encoded).
 */
static void url_of(const s3_store *s, const char *object, const char *query, buf *out)
{
    out->len = 0;
    if (s->path_style) {
        buf_puts(out, s->endpoint);
        buf_putc(out, '/');
        buf_puts(out, s->bucket);
    } else {
        const char *host = strstr(s->endpoint, "://");
        buf_append(out, s->endpoint, (size_t)(host + 3 - s->endpoint));
        buf_puts(out, s->bucket);
        buf_putc(out, '.');
        buf_puts(out, host + 3);
    }
    buf_putc(out, '/');
    if (object) encode(out, object, 1);
    if (query && *query) {
        buf_putc(out, '?');
        buf_puts(out, query);
    }
    buf_cstr(out);
}

/* The text of the first <tag>…</tag> in xml, entities decoded; 0 if absent. */
static int xml_get(const char *xml, size_t n, const char *tag, buf *out, const char **after)
{
    char open[64], close[64];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *p = memmem(xml, n, open, strlen(open));
    if (!p) return 0;
    p += strlen(open);
    const char *e = memmem(p, n - (size_t)(p - xml), close, strlen(close));
    if (!e) return 0;
    out->len = 0;
    for (const char *q = p; q < e; q++) {
        if (*q != '&') {
            buf_putc(out, *q);
            continue;
        }
        static const struct {
            const char *ent;
            char c;
        } ents[] = {
            {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
        int done = 0;
        for (size_t k = 0; k < sizeof ents / sizeof *ents && !done; k++) {
            size_t l = strlen(ents[k].ent);
            if ((size_t)(e - q) >= l && !memcmp(q, ents[k].ent, l)) {
                buf_putc(out, ents[k].c);
                q += l - 1;
                done = 1;
            }
        }
        if (!done && q + 2 < e && q[1] == '#') { /* &#NN; &#xNN; */
            const char *semi = memchr(q, ';', (size_t)(e - q));
            if (semi) {
                long v = q[2] == 'x' ? strtol(q + 3, NULL, 16) : strtol(q + 2, NULL, 10);
                if (v > 0 && v < 128) buf_putc(out, (char)v), done = 1, q = semi;
            }
        }
        if (!done) buf_putc(out, '&');
    }
    buf_cstr(out);
    if (after) *after = e + strlen(close);
    return 1;
}

/* ---- requests -------------------------------------------------------------------- */

typedef struct response {
    long status;
    buf body;
    uint64_t content_length;
    int64_t mtime_ms;
    char etag[160];
    char error[CURL_ERROR_SIZE];
    CURLcode cc;
    int attempts;
    int to_file; /* a 2xx answer's body goes to fd, not to body */
    int fd;
    int streaming; /* this attempt's answer is a 2xx going to fd */
    uint64_t written;
} response;

typedef struct body {
    const char *mem; /* or */
    int fd;
    uint64_t off, len, pos;
} body;

static size_t read_body(char *p, size_t size, size_t n, void *ud)
{
    body *b = ud;
    size_t want = size * n;
    if (b->len - b->pos < want) want = (size_t)(b->len - b->pos);
    if (!want) return 0;
    if (b->mem) {
        memcpy(p, b->mem + b->pos, want);
    } else {
        ssize_t r = pread(b->fd, p, want, (off_t)(b->off + b->pos));
        if (r <= 0) return CURL_READFUNC_ABORT;
        want = (size_t)r;
    }
    b->pos += want;
    return want;
}

static int seek_body(void *ud, curl_off_t off, int origin)
{
    body *b = ud;
    if (origin != SEEK_SET || off < 0 || (uint64_t)off > b->len) return CURL_SEEKFUNC_FAIL;
    b->pos = (uint64_t)off;
    return CURL_SEEKFUNC_OK;
}

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    response *r = ud;
    if (r->streaming) {
        ssize_t w = pwrite(r->fd, p, size * n, (off_t)r->written);
        if (w < 0 || (size_t)w != size * n) return 0;
        r->written += size * n;
        return size * n;
    }
    return buf_append(&r->body, p, size * n) ? 0 : size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    response *r = ud;
    size_t len = size * n;
    if (len > 9 && !strncmp(p, "HTTP/", 5)) {
        const char *sp = memchr(p, ' ', len);
        long code = sp ? strtol(sp + 1, NULL, 10) : 0;
        r->streaming = r->to_file && code >= 200 && code < 300;
    } else if (len > 5 && !strncasecmp(p, "ETag:", 5)) {
        const char *v = p + 5;
        while (*v == ' ') v++;
        size_t k = len - (size_t)(v - p);
        while (k && (v[k - 1] == '\r' || v[k - 1] == '\n')) k--;
        snprintf(r->etag, sizeof r->etag, "%.*s", (int)k, v);
    } else if (len > 14 && !strncasecmp(p, "Last-Modified:", 14)) {
        char v[128];
        snprintf(v, sizeof v, "%.*s", (int)(len - 14), p + 14);
        time_t t = curl_getdate(v, NULL);
        if (t > 0) r->mtime_ms = (int64_t)t * 1000;
    }
    return len;
}

static CURL *handle_get(s3_store *s)
{
    pthread_mutex_lock(&s->mu);
    CURL *c = s->npool ? s->pool[--s->npool] : NULL;
    pthread_mutex_unlock(&s->mu);
    return c ? c : curl_easy_init();
}

static void handle_put(s3_store *s, CURL *c)
{
    pthread_mutex_lock(&s->mu);
    if (s->npool < POOL_MAX) s->pool[s->npool++] = c, c = NULL;
    pthread_mutex_unlock(&s->mu);
    if (c) curl_easy_cleanup(c);
}

static int retryable(const response *r)
{
    if (r->cc != CURLE_OK) return r->cc != CURLE_ABORTED_BY_CALLBACK && r->cc != CURLE_READ_ERROR;
    return r->status == 500 || r->status == 502 || r->status == 503 || r->status == 504 ||
           r->status == 429;
}

/*
 * One request, retried. method: GET, HEAD, PUT, POST, DELETE. b: the body
 * (PUT, POST) or NULL; sha: its hex SHA-256 (NULL: the empty string's).
 * extra: more headers (NULL-terminated) or NULL.
 */
static void request(s3_store *s, const char *method, const char *url, body *b, const char *sha,
                    const char *const *extra, response *r)
{
    char auth_s[80], sha_h[100], tok[4200];
    snprintf(auth_s, sizeof auth_s, "aws:amz:%s:s3", s->region);
    snprintf(sha_h, sizeof sha_h, "x-amz-content-sha256: %s", sha ? sha : EMPTY_SHA256);
    int64_t backoff = 100;
    for (int attempt = 0;; attempt++) {
        CURL *c = handle_get(s);
        r->attempts = attempt + 1;
        r->body.len = 0;
        r->status = 0;
        r->content_length = 0;
        r->mtime_ms = 0;
        r->etag[0] = 0;
        r->error[0] = 0;
        r->streaming = 0;
        r->written = 0;
        if (r->to_file && ftruncate(r->fd, 0)) {
            r->cc = CURLE_WRITE_ERROR;
            snprintf(r->error, sizeof r->error, "cannot truncate the download: %s",
                     strerror(errno));
            if (c) handle_put(s, c);
            return;
        }
        if (!c) {
            r->cc = CURLE_OUT_OF_MEMORY;
            snprintf(r->error, sizeof r->error, "out of memory");
            return;
        }
        struct curl_slist *h = curl_slist_append(NULL, sha_h);
        if (s->token) {
            snprintf(tok, sizeof tok, "x-amz-security-token: %s", s->token);
            h = curl_slist_append(h, tok);
        }
        for (int i = 0; extra && extra[i]; i++) h = curl_slist_append(h, extra[i]);
        curl_easy_reset(c); /* options only: the connection stays */
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_AWS_SIGV4, auth_s);
        curl_easy_setopt(c, CURLOPT_USERNAME, s->access);
        curl_easy_setopt(c, CURLOPT_PASSWORD, s->secret);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->error);
        if (b) {
            b->pos = 0;
            if (!strcmp(method, "PUT")) {
                curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
                curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)b->len);
            } else {
                curl_easy_setopt(c, CURLOPT_POST, 1L);
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)b->len);
            }
            curl_easy_setopt(c, CURLOPT_READFUNCTION, read_body);
            curl_easy_setopt(c, CURLOPT_READDATA, b);
            curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, seek_body);
            curl_easy_setopt(c, CURLOPT_SEEKDATA, b);
            /* a stalled transfer is dropped; a slow one may take its time */
            curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
            curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME,
                             (long)(s->timeout_ms / 1000 ? s->timeout_ms / 1000 : 1));
        } else if (!strcmp(method, "GET")) {
            /* a download may be large (a compacted hour): dropped when it stalls, not when it
             * takes long */
            curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
            curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME,
                             (long)(s->timeout_ms / 1000 ? s->timeout_ms / 1000 : 1));
        } else {
            curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, s->timeout_ms);
            if (!strcmp(method, "HEAD"))
                curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
            else if (!strcmp(method, "DELETE"))
                curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
            else if (!strcmp(method, "POST")) {
                curl_easy_setopt(c, CURLOPT_POST, 1L);
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
            }
        }
        r->cc = curl_easy_perform(c);
        if (r->cc == CURLE_OK) {
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
            curl_off_t cl = -1;
            curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
            r->content_length = cl > 0 ? (uint64_t)cl : 0;
        } else if (!r->error[0]) {
            snprintf(r->error, sizeof r->error, "%s", curl_easy_strerror(r->cc));
        }
        curl_slist_free_all(h);
        if (r->cc == CURLE_OK)
            handle_put(s, c);
        else
            curl_easy_cleanup(c); /* a broken connection is not reused */
        if (attempt >= s->retries || !retryable(r)) return;
        int64_t d = backoff / 2 + (int64_t)(evrand_u64() % (uint64_t)(backoff / 2 + 1));
        struct timespec ts = {(time_t)(d / 1000), (long)(d % 1000) * 1000000};
        nanosleep(&ts, NULL);
        if (backoff < 4000) backoff *= 2;
    }
}

/* "s3 PUT bucket/key: HTTP 403 SignatureDoesNotMatch: message" */
static int fail(s3_store *s, int code, const char *method, const char *object, const response *r,
                char *err, size_t errlen)
{
    if (r->cc != CURLE_OK)
        return store_fail(err, errlen, code, "s3 %s %s/%s: %s", method, s->bucket, object,
                          r->error);
    buf c = BUF_INIT, m = BUF_INIT;
    int has_c = r->body.p && xml_get(r->body.p, r->body.len, "Code", &c, NULL);
    int has_m = r->body.p && xml_get(r->body.p, r->body.len, "Message", &m, NULL);
    int rc = store_fail(err, errlen, code, "s3 %s %s/%s: HTTP %ld%s%s%s%s", method, s->bucket,
                        object, r->status, has_c ? " " : "", has_c ? c.p : "",
                        has_m && m.len ? ": " : "", has_m && m.len ? m.p : "");
    buf_free(&c);
    buf_free(&m);
    return rc;
}

/*
 * Payload hashes through OpenSSL's libcrypto: with the CPU's SHA extensions it
 * hashes about 7x faster than lib/codec.c (1.5 GB/s against 0.2 GB/s here),
 * and every byte uploaded is hashed once (bench/README.md, the s3 benchmark).
 */
static void sha_hex(const void *p, size_t n, char out[65])
{
    unsigned char d[32];
    unsigned int dl = 0;
    EVP_Digest(p, n, d, &dl, EVP_sha256(), NULL);
    sha256_hex(d, out);
}

static int sha_file(int fd, uint64_t off, uint64_t len, char out[65])
{
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    unsigned char d[32];
    unsigned int dl = 0;
    enum { CHUNK = 1 << 18 };
    char *chunk = malloc(CHUNK);
    int rc = h && chunk && EVP_DigestInit_ex(h, EVP_sha256(), NULL) ? 0 : -1;
    for (uint64_t done = 0; !rc && done < len;) {
        size_t want = len - done < CHUNK ? (size_t)(len - done) : CHUNK;
        ssize_t r = pread(fd, chunk, want, (off_t)(off + done));
        if (r <= 0 || !EVP_DigestUpdate(h, chunk, (size_t)r))
            rc = -1;
        else
            done += (uint64_t)r;
    }
    if (!rc && !EVP_DigestFinal_ex(h, d, &dl)) rc = -1;
    EVP_MD_CTX_free(h);
    free(chunk);
    if (!rc) sha256_hex(d, out);
    return rc;
}

/* ---- the operations ------------------------------------------------------------------ */

/* A single PUT of b. */
static int put_one(s3_store *s, const char *object, body *b, const char *sha, int flags,
                   const char *key, char *err, size_t errlen)
{
    buf url = BUF_INIT;
    url_of(s, object, NULL, &url);
    const char *extra[] = {flags & STORE_IF_ABSENT ? "If-None-Match: *" : NULL, NULL};
    response r;
    memset(&r, 0, sizeof r);
    int rc = STORE_OK;
    request(s, "PUT", url.p, b, sha, extra, &r);
    if (r.cc == CURLE_OK && r.status == 200) {
        /* stored */
    } else if (r.cc == CURLE_OK && r.status == 412 && (flags & STORE_IF_ABSENT)) {
        /* after a retry, the object there may be our own first attempt, whose answer was lost */
        int ours = 0;
        if (r.attempts > 1) {
            response g;
            memset(&g, 0, sizeof g);
            request(s, "GET", url.p, NULL, NULL, NULL, &g);
            char got[65];
            if (g.cc == CURLE_OK && g.status == 200) {
                sha_hex(g.body.p ? g.body.p : "", g.body.len, got);
                ours = !strcmp(got, sha);
            }
            buf_free(&g.body);
        }
        if (!ours) rc = store_fail(err, errlen, STORE_EEXIST, "store: %s exists", key);
    } else {
        rc = fail(s, STORE_EIO, "PUT", object, &r, err, errlen);
    }
    buf_free(&r.body);
    buf_free(&url);
    return rc;
}

/* A multipart upload of b (parts of part_size). */
static int put_multipart(s3_store *s, const char *object, body *whole, int flags, const char *key,
                         char *err, size_t errlen)
{
    /* no conditional completion everywhere: check first (racy, documented) */
    if (flags & STORE_IF_ABSENT) {
        buf u = BUF_INIT;
        url_of(s, object, NULL, &u);
        response hr;
        memset(&hr, 0, sizeof hr);
        request(s, "HEAD", u.p, NULL, NULL, NULL, &hr);
        buf_free(&u);
        buf_free(&hr.body);
        if (hr.cc == CURLE_OK && hr.status == 200)
            return store_fail(err, errlen, STORE_EEXIST, "store: %s exists", key);
    }
    buf url = BUF_INIT, xml = BUF_INIT, id = BUF_INIT, q = BUF_INIT;
    response r;
    memset(&r, 0, sizeof r);
    int rc = STORE_OK;
    url_of(s, object, "uploads=", &url);
    request(s, "POST", url.p, NULL, NULL, NULL, &r);
    if (r.cc != CURLE_OK || r.status != 200 ||
        !xml_get(r.body.p, r.body.len, "UploadId", &id, NULL)) {
        rc = fail(s, STORE_EIO, "POST (create multipart upload)", object, &r, err, errlen);
        goto out;
    }
    buf_puts(&xml, "<CompleteMultipartUpload>");
    uint64_t nparts = (whole->len + s->part_size - 1) / s->part_size;
    for (uint64_t i = 0; i < nparts && !rc; i++) {
        body part = {whole->mem ? whole->mem + whole->off + i * s->part_size : NULL, whole->fd,
                     whole->mem ? 0 : whole->off + i * s->part_size, 0, 0};
        part.len = whole->len - i * s->part_size < s->part_size ? whole->len - i * s->part_size
                                                                : s->part_size;
        char sha[65];
        if (part.mem)
            sha_hex(part.mem, (size_t)part.len, sha);
        else if (sha_file(part.fd, part.off, part.len, sha)) {
            rc = store_fail(err, errlen, STORE_EIO, "store: cannot read the file for %s: %s", key,
                            strerror(errno));
            break;
        }
        q.len = 0;
        buf_printf(&q, "partNumber=%llu&uploadId=", (unsigned long long)i + 1);
        encode(&q, id.p, 0);
        buf_cstr(&q);
        url_of(s, object, q.p, &url);
        request(s, "PUT", url.p, &part, sha, NULL, &r);
        if (r.cc != CURLE_OK || r.status != 200 || !r.etag[0]) {
            rc = fail(s, STORE_EIO, "PUT (part)", object, &r, err, errlen);
            break;
        }
        buf_printf(&xml, "<Part><PartNumber>%llu</PartNumber><ETag>%s</ETag></Part>",
                   (unsigned long long)i + 1, r.etag);
    }
    q.len = 0;
    buf_puts(&q, "uploadId=");
    encode(&q, id.p, 0);
    buf_cstr(&q);
    url_of(s, object, q.p, &url);
    if (!rc) {
        buf_puts(&xml, "</CompleteMultipartUpload>");
        char sha[65];
        sha_hex(xml.p, xml.len, sha);
        body b = {xml.p, -1, 0, xml.len, 0};
        request(s, "POST", url.p, &b, sha, NULL, &r);
        /* an error can come inside a 200 answer */
        buf code = BUF_INIT;
        if (r.cc != CURLE_OK || r.status != 200 ||
            (r.body.p && xml_get(r.body.p, r.body.len, "Code", &code, NULL)))
            rc = fail(s, STORE_EIO, "POST (complete multipart upload)", object, &r, err, errlen);
        buf_free(&code);
    }
    if (rc) { /* leave no parts behind */
        response ar;
        memset(&ar, 0, sizeof ar);
        request(s, "DELETE", url.p, NULL, NULL, NULL, &ar);
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
    body b = {data ? data : "", -1, 0, len, 0};
    int rc;
    if (len > s->multipart_above) {
        rc = put_multipart(s, object.p, &b, flags, key, err, errlen);
    } else {
        char sha[65];
        sha_hex(data ? data : "", len, sha);
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
    body b = {NULL, fd, 0, (uint64_t)sb.st_size, 0};
    int rc;
    if ((uint64_t)sb.st_size > s->multipart_above) {
        rc = put_multipart(s, object.p, &b, flags, key, err, errlen);
    } else {
        char sha[65];
        rc = sha_file(fd, 0, b.len, sha)
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
    url_of(s, object.p, NULL, &url);
    char range[80];
    if (len)
        snprintf(range, sizeof range, "Range: bytes=%llu-%llu", (unsigned long long)off,
                 (unsigned long long)(off + len - 1));
    else
        snprintf(range, sizeof range, "Range: bytes=%llu-", (unsigned long long)off);
    const char *extra[] = {off || len ? range : NULL, NULL};
    response r;
    memset(&r, 0, sizeof r);
    request(s, "GET", url.p, NULL, NULL, extra, &r);
    int rc = STORE_OK;
    if (r.cc == CURLE_OK && (r.status == 200 || r.status == 206)) {
        if (buf_append(out, r.body.p, r.body.len))
            rc = store_fail(err, errlen, STORE_EIO, "store: out of memory reading %s", key);
    } else if (r.cc == CURLE_OK && r.status == 416) {
        /* a range past the end: nothing */
    } else if (r.cc == CURLE_OK && r.status == 404) {
        rc = store_fail(err, errlen, STORE_ENOENT, "store: %s: no such object", key);
    } else {
        rc = fail(s, STORE_EIO, "GET", object.p, &r, err, errlen);
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
    url_of(s, object.p, NULL, &url);
    response r;
    memset(&r, 0, sizeof r);
    r.to_file = 1;
    r.fd = fd;
    request(s, "GET", url.p, NULL, NULL, NULL, &r);
    int rc = STORE_OK;
    if (r.cc == CURLE_OK && r.status == 200) {
        if (r.content_length && r.written != r.content_length)
            rc = store_fail(err, errlen, STORE_EIO, "store: GET %s: %llu of %llu bytes", key,
                            (unsigned long long)r.written, (unsigned long long)r.content_length);
    } else if (r.cc == CURLE_OK && r.status == 404) {
        rc = store_fail(err, errlen, STORE_ENOENT, "store: %s: no such object", key);
    } else {
        rc = fail(s, STORE_EIO, "GET", object.p, &r, err, errlen);
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
    url_of(s, object.p, NULL, &url);
    response r;
    memset(&r, 0, sizeof r);
    request(s, "HEAD", url.p, NULL, NULL, NULL, &r);
    int rc = STORE_OK;
    if (r.cc == CURLE_OK && r.status == 200) {
        out->key = key;
        out->size = r.content_length;
        out->mtime_ms = r.mtime_ms;
    } else if (r.cc == CURLE_OK && r.status == 404) {
        rc = store_fail(err, errlen, STORE_ENOENT, "store: %s: no such object", key);
    } else {
        rc = fail(s, STORE_EIO, "HEAD", object.p, &r, err, errlen);
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
    response r;
    memset(&r, 0, sizeof r);
    int rc = STORE_OK, more = 1, stop = 0;
    while (more && !rc && !stop) {
        q.len = 0; /* parameters in name order, as signed */
        if (token.len) {
            buf_puts(&q, "continuation-token=");
            encode(&q, token.p, 0);
            buf_putc(&q, '&');
        }
        buf_puts(&q, "list-type=2");
        if (s->list_page) buf_printf(&q, "&max-keys=%d", s->list_page);
        buf_puts(&q, "&prefix=");
        encode(&q, full.p, 0);
        buf_cstr(&q);
        url_of(s, NULL, q.p, &url);
        request(s, "GET", url.p, NULL, NULL, NULL, &r);
        if (r.cc != CURLE_OK || r.status != 200) {
            rc = r.cc == CURLE_OK && r.status == 404
                     ? fail(s, STORE_ENOENT, "GET (list)", full.p, &r, err, errlen)
                     : fail(s, STORE_EIO, "GET (list)", full.p, &r, err, errlen);
            break;
        }
        const char *p = r.body.p, *end = r.body.p + r.body.len;
        buf contents = BUF_INIT;
        while (!stop && p < end && xml_get(p, (size_t)(end - p), "Contents", &contents, &p)) {
            if (!xml_get(contents.p, contents.len, "Key", &k, NULL) || k.len < strip) continue;
            store_entry e = {k.p + strip, 0, 0};
            if (xml_get(contents.p, contents.len, "Size", &v, NULL))
                e.size = strtoull(v.p, NULL, 10);
            int64_t ms;
            if (xml_get(contents.p, contents.len, "LastModified", &v, NULL) &&
                !evtime_parse(v.p, v.len, &ms))
                e.mtime_ms = ms;
            if (fn(&e, ud)) stop = 1;
        }
        buf_free(&contents);
        more = xml_get(r.body.p, r.body.len, "IsTruncated", &v, NULL) && !strcmp(v.p, "true") &&
               xml_get(r.body.p, r.body.len, "NextContinuationToken", &token, NULL) && token.len;
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
    url_of(s, object.p, NULL, &url);
    response r;
    memset(&r, 0, sizeof r);
    request(s, "DELETE", url.p, NULL, NULL, NULL, &r);
    int rc = r.cc == CURLE_OK && (r.status == 204 || r.status == 200 || r.status == 404)
                 ? STORE_OK
                 : fail(s, STORE_EIO, "DELETE", object.p, &r, err, errlen);
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

static const char *env(const char *name);

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

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

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
    s3_store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&s->mu, NULL);
    s->base.ops = &S3_OPS;
    s->bucket = strndup(b, bl);
    const char *pre = b + bl;
    while (*pre == '/') pre++;
    s->prefix = strdup(pre);
    size_t pl = strlen(s->prefix);
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
    } else {
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
        s3_close(&s->base);
        return -1;
    }
    s->multipart_above = (uint64_t)mp;
    s->part_size = (uint64_t)ps; /* at least S3's minimum part, 5 MiB */
    s->retries = (int)re;
    s->list_page = (int)lp;
    s->timeout_ms = (long)to;
    size_t n = strlen(s->bucket) + strlen(s->prefix) + 8;
    if ((s->base.url = malloc(n)))
        snprintf(s->base.url, n, "s3://%s%s%s", s->bucket, *s->prefix ? "/" : "", s->prefix);
    if (!s->bucket || !s->prefix || !s->region || !s->access || !s->secret || !s->endpoint ||
        !s->base.url ||
        (strncmp(s->endpoint, "http://", 7) && strncmp(s->endpoint, "https://", 8))) {
        snprintf(err, errlen,
                 "lake %s: bad endpoint %s (AWS_ENDPOINT_URL: http://host:port or https://…)", url,
                 s->endpoint ? s->endpoint : "");
        s3_close(&s->base);
        return -1;
    }
    /* the credentials and the bucket, checked now rather than at the first seal */
    buf q = BUF_INIT, u = BUF_INIT;
    buf_puts(&q, "list-type=2&max-keys=1&prefix=");
    encode(&q, s->prefix, 0);
    buf_cstr(&q);
    url_of(s, NULL, q.p, &u);
    response r;
    memset(&r, 0, sizeof r);
    request(s, "GET", u.p, NULL, NULL, NULL, &r);
    int ok = r.cc == CURLE_OK && r.status == 200;
    if (!ok) {
        buf c = BUF_INIT;
        int has = r.body.p && xml_get(r.body.p, r.body.len, "Code", &c, NULL);
        if (r.cc != CURLE_OK)
            snprintf(err, errlen, "lake %s: cannot reach %s: %s", s->base.url, s->endpoint,
                     r.error);
        else if (r.status == 403)
            snprintf(
                err, errlen,
                "lake %s: the credentials are refused (HTTP 403%s%s): check AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY and AWS_REGION",
                s->base.url, has ? " " : "", has ? c.p : "");
        else if (r.status == 404)
            snprintf(err, errlen, "lake %s: no such bucket (HTTP 404%s%s)", s->base.url,
                     has ? " " : "", has ? c.p : "");
        else
            snprintf(err, errlen, "lake %s: HTTP %ld%s%s from %s", s->base.url, r.status,
                     has ? " " : "", has ? c.p : "", s->endpoint);
        buf_free(&c);
    }
    buf_free(&r.body);
    buf_free(&q);
    buf_free(&u);
    if (!ok) {
        s3_close(&s->base);
        return -1;
    }
    *out = &s->base;
    return 0;
}
