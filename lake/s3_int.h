/*
 * s3_int.h - inside the S3 store: what the store's operations (store_s3.c)
 * share with the HTTP request machinery they run on (s3_request.c).
 *
 * s3_request.c knows S3's wire: how a URL and a query string are encoded so
 * that libcurl's SigV4 signs what the server checks, the curl handles kept
 * for reuse, the retries, payload hashes, and reading S3's XML answers.
 * store_s3.c knows the store: which requests an operation makes and what
 * their answers mean. Neither frees what the other owns: an s3_store is made
 * and closed by store_s3.c; a response's body is freed by whoever made it.
 */
#ifndef EVENTS_S3_INT_H
#define EVENTS_S3_INT_H

#include "store.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdint.h>

#define S3_POOL_MAX 16

typedef struct s3_store {
    store base;
    char *bucket, *prefix; /* prefix: "" or "a/b" (no slashes at the ends) */
    char *endpoint;        /* scheme://host[:port] */
    char *region, *access, *secret, *token;
    int path_style;
    uint64_t multipart_above, part_size;
    int retries;
    int list_page;      /* max-keys of a list request; 0: the server's (1,000) */
    long timeout_ms;    /* a whole request without a body to send */
    pthread_mutex_t mu; /* guards pool and npool, from any thread using the store */
    CURL *pool[S3_POOL_MAX];
    int npool;
} s3_store;

/* The answer to a request; zeroed by its maker, body freed by its maker. */
typedef struct s3_response {
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
} s3_response;

/* What a request sends: len bytes of mem, or of the file fd from off. */
typedef struct s3_body {
    const char *mem; /* or */
    int fd;
    uint64_t off, len, pos;
} s3_body;

/* Percent-encodes s onto b (RFC 3986); '/' kept when keep_slash. */
void s3__encode(buf *b, const char *s, int keep_slash);

/*
 * URL of an object (object may be NULL: the bucket) with a query string
 * (already sorted and encoded, or NULL), into out.
 */
void s3__url_of(const s3_store *s, const char *object, const char *query, buf *out);

/* The text of the first <tag>…</tag> in xml, entities decoded; 0 if absent. */
int s3__xml_get(const char *xml, size_t n, const char *tag, buf *out, const char **after);

/*
 * One request, retried. method: GET, HEAD, PUT, POST, DELETE. b: the body
 * (PUT, POST) or NULL; sha: its hex SHA-256 (NULL: the empty string's).
 * extra: more headers (NULL-terminated) or NULL. The outcome is in r: cc,
 * status, and error when cc is not CURLE_OK.
 */
void s3__request(s3_store *s, const char *method, const char *url, s3_body *b, const char *sha,
                 const char *const *extra, s3_response *r);

/*
 * Writes why the request failed into err, "s3 PUT bucket/key: HTTP 403
 * SignatureDoesNotMatch: message", and returns code.
 */
int s3__fail(const s3_store *s, int code, const char *method, const char *object,
             const s3_response *r, char *err, size_t errlen);

/* The hex SHA-256 of n bytes at p. */
void s3__sha_hex(const void *p, size_t n, char out[65]);

/* The hex SHA-256 of len bytes of fd at off: 0, or -1 (errno says why). */
int s3__sha_file(int fd, uint64_t off, uint64_t len, char out[65]);

#endif
