/*
 * s3_request.c - the HTTP requests of the S3 store (s3_int.h), over libcurl:
 * how they are addressed, signed, sent, retried, and how S3's XML answers
 * are read. The store's operations are in store_s3.c.
 *
 * Requests are signed with libcurl's CURLOPT_AWS_SIGV4. Debian 12's libcurl
 * (7.88) leaves some of the signing to the caller, and a strict server says
 * 403 otherwise: every request carries x-amz-content-sha256 (the body's hash,
 * the empty string's for GET, HEAD and DELETE); the path and the query string
 * are signed as written, so keys are percent-encoded outside [A-Za-z0-9-._~/]
 * and query parameters sorted and RFC 3986-encoded; no blank header is set
 * (curl would sign and then drop it).
 *
 * Failed requests (no answer, 500, 502, 503, 504, 429) are retried with
 * exponential backoff and jitter; connections are kept in a pool of curl
 * handles for reuse.
 */
#include "s3_int.h"
#include "codec.h"
#include "evrand.h"

#include <openssl/evp.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* ---- addressing and answers ------------------------------------------------------ */

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

void s3__encode(buf *b, const char *s, int keep_slash)
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

void s3__url_of(const s3_store *s, const char *object, const char *query, buf *out)
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
    if (object) s3__encode(out, object, 1);
    if (query && *query) {
        buf_putc(out, '?');
        buf_puts(out, query);
    }
    buf_cstr(out);
}

int s3__xml_get(const char *xml, size_t n, const char *tag, buf *out, const char **after)
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

static size_t read_body(char *p, size_t size, size_t n, void *ud)
{
    s3_body *b = ud;
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
    s3_body *b = ud;
    if (origin != SEEK_SET || off < 0 || (uint64_t)off > b->len) return CURL_SEEKFUNC_FAIL;
    b->pos = (uint64_t)off;
    return CURL_SEEKFUNC_OK;
}

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    s3_response *r = ud;
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
    s3_response *r = ud;
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
    if (s->npool < S3_POOL_MAX) s->pool[s->npool++] = c, c = NULL;
    pthread_mutex_unlock(&s->mu);
    if (c) curl_easy_cleanup(c);
}

static int retryable(const s3_response *r)
{
    if (r->cc != CURLE_OK) return r->cc != CURLE_ABORTED_BY_CALLBACK && r->cc != CURLE_READ_ERROR;
    return r->status == 500 || r->status == 502 || r->status == 503 || r->status == 504 ||
           r->status == 429;
}

/* Clears what the last attempt left in r. 0, or -1 if a download cannot start again. */
static int attempt_start(s3_response *r, int attempt)
{
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
        snprintf(r->error, sizeof r->error, "cannot truncate the download: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* The headers every request carries, then extra. sha_h: "x-amz-content-sha256: …". */
static struct curl_slist *headers_of(const s3_store *s, const char *sha_h, const char *const *extra)
{
    char tok[4200];
    struct curl_slist *h = curl_slist_append(NULL, sha_h);
    if (s->token) {
        snprintf(tok, sizeof tok, "x-amz-security-token: %s", s->token);
        h = curl_slist_append(h, tok);
    }
    for (int i = 0; extra && extra[i]; i++) h = curl_slist_append(h, extra[i]);
    return h;
}

/* The options of every request: where, signed how, answered into r. */
static void set_common(CURL *c, const s3_store *s, const char *url, const char *auth,
                       struct curl_slist *h, s3_response *r)
{
    curl_easy_reset(c); /* options only: the connection stays */
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, auth);
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
}

/* The method's options: its body, and when it is given up. */
static void set_method(CURL *c, const s3_store *s, const char *method, s3_body *b)
{
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
}

/* Sends the request set on c and reads its outcome into r. */
static void perform(CURL *c, s3_response *r)
{
    r->cc = curl_easy_perform(c);
    if (r->cc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        curl_off_t cl = -1;
        curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
        r->content_length = cl > 0 ? (uint64_t)cl : 0;
    } else if (!r->error[0]) {
        snprintf(r->error, sizeof r->error, "%s", curl_easy_strerror(r->cc));
    }
}

/* Waits about *backoff_ms (jittered, half to all of it), and doubles it up to 4 s. */
static void backoff_wait(int64_t *backoff_ms)
{
    int64_t b = *backoff_ms;
    int64_t d = b / 2 + (int64_t)(evrand_u64() % (uint64_t)(b / 2 + 1));
    struct timespec ts = {(time_t)(d / 1000), (long)(d % 1000) * 1000000};
    nanosleep(&ts, NULL);
    if (b < 4000) *backoff_ms = b * 2;
}

void s3__request(s3_store *s, const char *method, const char *url, s3_body *b, const char *sha,
                 const char *const *extra, s3_response *r)
{
    char auth_s[80], sha_h[100];
    snprintf(auth_s, sizeof auth_s, "aws:amz:%s:s3", s->region);
    snprintf(sha_h, sizeof sha_h, "x-amz-content-sha256: %s", sha ? sha : EMPTY_SHA256);
    int64_t backoff = 100;
    for (int attempt = 0;; attempt++) {
        CURL *c = handle_get(s);
        if (attempt_start(r, attempt)) {
            if (c) handle_put(s, c);
            return;
        }
        if (!c) {
            r->cc = CURLE_OUT_OF_MEMORY;
            snprintf(r->error, sizeof r->error, "out of memory");
            return;
        }
        struct curl_slist *h = headers_of(s, sha_h, extra);
        set_common(c, s, url, auth_s, h, r);
        set_method(c, s, method, b);
        perform(c, r);
        curl_slist_free_all(h);
        if (r->cc == CURLE_OK)
            handle_put(s, c);
        else
            curl_easy_cleanup(c); /* a broken connection is not reused */
        if (attempt >= s->retries || !retryable(r)) return;
        backoff_wait(&backoff);
    }
}

int s3__fail(const s3_store *s, int code, const char *method, const char *object,
             const s3_response *r, char *err, size_t errlen)
{
    if (r->cc != CURLE_OK)
        return store_fail(err, errlen, code, "s3 %s %s/%s: %s", method, s->bucket, object,
                          r->error);
    buf c = BUF_INIT, m = BUF_INIT;
    int has_c = r->body.p && s3__xml_get(r->body.p, r->body.len, "Code", &c, NULL);
    int has_m = r->body.p && s3__xml_get(r->body.p, r->body.len, "Message", &m, NULL);
    int rc = store_fail(err, errlen, code, "s3 %s %s/%s: HTTP %ld%s%s%s%s", method, s->bucket,
                        object, r->status, has_c ? " " : "", has_c ? c.p : "",
                        has_m && m.len ? ": " : "", has_m && m.len ? m.p : "");
    buf_free(&c);
    buf_free(&m);
    return rc;
}

/* ---- payload hashes -------------------------------------------------------------- */

/*
 * Payload hashes through OpenSSL's libcrypto: with the CPU's SHA extensions it
 * hashes about 7x faster than lib/codec.c (1.5 GB/s against 0.2 GB/s here),
 * and every byte uploaded is hashed once (bench/README.md, the s3 benchmark).
 */
void s3__sha_hex(const void *p, size_t n, char out[65])
{
    unsigned char d[32];
    unsigned int dl = 0;
    EVP_Digest(p, n, d, &dl, EVP_sha256(), NULL);
    sha256_hex(d, out);
}

int s3__sha_file(int fd, uint64_t off, uint64_t len, char out[65])
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
