/*
 * harness.h - integration tests against a real `events serve` process on a
 * loopback port, with a temporary lake, driven over HTTP with libcurl.
 */
#ifndef EVENTS_HARNESS_H
#define EVENTS_HARNESS_H

#include "buf.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct srv {
    pid_t pid;
    int port;     /* kept across restarts */
    char url[64]; /* "http://127.0.0.1:PORT" */
    char lake[1024];
    char log[1100]; /* the server's stderr, appended across restarts; default LAKE.log */
    int errfd;
    void *drain; /* state of the thread copying stderr to the log */
    pthread_t drain_thr;
} srv;

/*
 * Starts build/events serve --listen 127.0.0.1:PORT --lake LAKE [args...]
 * (port 0 the first time: the server picks one, and restarts reuse it) and
 * waits until it logs "listening". args ends with NULL. Returns 0, or -1 if
 * the server exited first (its log is printed). Servers still running when
 * the test process exits are killed.
 */
int srv_start(srv *s, const char *lake, const char *const *args);

/* Sends sig (none if 0) and waits for the exit, at most SRV_STOP_MAX_MS. Returns the exit
 * status, 128+signal if killed, -2 if it had to be SIGKILLed (its log is printed then, and when
 * it died of a signal it was not sent). */
#define SRV_STOP_MAX_MS 120000
int srv_stop(srv *s, int sig);

/* Like srv_stop, but SIGKILLs the server after timeout_ms and returns -2 then. */
int srv_stop_within(srv *s, int sig, int timeout_ms);

/* Prints the server's log to stderr (for a failing test). */
void srv_dump_log(const srv *s);

/* A loopback port that refuses connections at once: bound, never listened on, and kept bound
 * for the life of the process, so that no server of a test running beside it can take it (a
 * port bound and closed, or a stopped server's, can be given to one). -1 if it cannot. */
int refusing_port(void);

/* Path of the events binary under test. */
const char *events_bin(void);

typedef struct resp {
    long status; /* 0: no answer (connection failed) */
    buf body;    /* NUL-terminated */
    buf head;    /* the status line and header lines as received, NUL-terminated */
    char error[256];
} resp;

/*
 * One HTTP request. headers: NULL-terminated "Name: value" strings or NULL.
 * timeout_ms 0: 10 s. Returns 0 if an answer came, -1 otherwise (resp.error).
 */
int http_do(const char *method, const char *url, const char *const *headers, const void *body,
            size_t len, long timeout_ms, resp *out);
void resp_free(resp *r);

/* POST body to url/ingest with Content-Type: application/json. */
int http_ingest(const srv *s, const char *body, resp *out);

/* A new directory for a test's lake: "<tmpdir>/lake", the directory not yet made. Free it with
 * srv_lake_cleanup. */
char *srv_lake_dir(const char *tag);
/* Kills s if it still runs, shows its log if the test failed, removes the lake's directory and
 * frees lake. */
void srv_lake_cleanup(srv *s, char *lake);

/* The value of the /metrics line of s that starts with name (labels included); -1 if absent. */
long long srv_metric(const srv *s, const char *name);
/* Writes the tokens file LAKE.tokens (in the lake's directory: removed with it) with lines,
 * "name token scopes" each, and its path into path (n bytes). */
void srv_tokens_file(const char *lake, const char *lines, char *path, size_t n);
/* Gzip-compresses data. Caller frees *out. */
int gzip_bytes(const void *data, size_t n, buf *out);

/* Concatenated content of every file under dir/events (sorted by path). */
int lake_read_all(const char *lake, buf *out, int *files);
/* The same under dir/sub. */
int lake_read_under(const char *lake, const char *sub, buf *out, int *files);

/*
 * Checks the stream log of the lake's server (its sid in lake/.spool/stream-id) after it
 * stopped: every line under events/ ends with a position of that sid, and the files under
 * stream/{sid}/, in name order, hold exactly those lines in seq order, seqs 1, 2, … with no
 * gap, each file named by its first seq. 0, or -1 with the first difference in why.
 */
int lake_stream_check(const char *lake, char *why, size_t cap);

/*
 * Starts the project's S3 test server (scripts/s3-test-server: radosgw on
 * loopback) once per process and exports its AWS_* variables and
 * EVENTS_S3_BUCKET; it is stopped when the process exits. Returns 0, or -1
 * with the script's output printed.
 */
int s3_start(void);

/* Starts (up 1) or stops (up 0) the S3 test server's radosgw alone: an outage. 0 or -1. */
int s3_rgw(int up);

/* The CSV answer to sql on the lake (a directory) read through a query engine of its own, or
 * the error; *files (if files is set): the lake files its events view read. Free it.
 * (lake_util.c) */
char *lake_query_csv(const char *lake, const char *sql, uint64_t *files);

/* Runs a shell command; returns its exit status. */
int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Into sql: a statement whose one row is (the rows of the Parquet file at path, those out of
 * order, an ORDER BY list such as QUERY_COMPACT_ORDER), to be run on one thread (the rows
 * then come in the file's order). */
void parquet_order_sql(char *sql, size_t n, const char *path, const char *order);

#endif
