/*
 * harness.c - server processes and HTTP for the integration tests.
 */
#include "harness.h"
#include "test.h"

#include <curl/curl.h>
#include <stdint.h>
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#ifndef EVENTS_BIN
#error "EVENTS_BIN must name the events binary"
#endif

int refusing_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) ||
        getsockname(fd, (struct sockaddr *)&sa, &len)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    return ntohs(sa.sin_port); /* fd stays open, bound, until the process exits */
}

const char *events_bin(void)
{
    const char *e = getenv("EVENTS_BIN");
    return e && *e ? e : EVENTS_BIN;
}

typedef struct drain {
    int fd;
    FILE *log;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int port; /* 0 until the listening line was seen, -1 at EOF */
} drain;

static void *drain_main(void *arg)
{
    drain *d = arg;
    char line[8192];
    size_t n = 0;
    for (;;) {
        char c;
        ssize_t r = read(d->fd, &c, 1);
        if (r <= 0) break;
        fputc(c, d->log);
        if (c != '\n' && n < sizeof line - 1) {
            line[n++] = c;
            continue;
        }
        line[n] = 0;
        n = 0;
        fflush(d->log);
        const char *a = strstr(line, "msg=\"listening\"");
        if (!a) a = strstr(line, "\"msg\":\"listening\"");
        const char *addr = a ? strstr(line, "127.0.0.1:") : NULL;
        if (addr) {
            pthread_mutex_lock(&d->mu);
            d->port = atoi(addr + 10);
            pthread_cond_broadcast(&d->cv);
            pthread_mutex_unlock(&d->mu);
        }
    }
    fflush(d->log);
    pthread_mutex_lock(&d->mu);
    if (d->port == 0) d->port = -1;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

void srv_dump_log(const srv *s)
{
    char *t = test_read_file(s->log, NULL);
    fprintf(stderr, "---- server log %s ----\n%s---- end ----\n", s->log, t ? t : "(none)\n");
    free(t);
}

/* Servers still running when the test process exits are killed, whatever failed. */
static pid_t live[64];

static void kill_live(void)
{
    for (int i = 0; i < 64; i++)
        if (live[i] > 0) kill(live[i], SIGKILL);
}

static void track(pid_t pid, int add)
{
    static int registered;
    if (!registered) {
        atexit(kill_live);
        registered = 1;
    }
    for (int i = 0; i < 64; i++)
        if (add ? live[i] == 0 : live[i] == pid) {
            live[i] = add ? pid : 0;
            return;
        }
}

int srv_start(srv *s, const char *lake, const char *const *args)
{
    if (lake != s->lake) snprintf(s->lake, sizeof s->lake, "%s", lake);
    if (!s->log[0]) snprintf(s->log, sizeof s->log, "%s.log", s->lake);
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC)) return -1;
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
    const char *argv[64] = {events_bin(), "serve", "--listen", listen, "--lake", s->lake};
    int n = 6;
    for (int i = 0; args && args[i] && n < 62; i++) argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(pfd[1], 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    track(pid, 1);
    drain *d = calloc(1, sizeof *d);
    d->fd = pfd[0];
    d->log = fopen(s->log, "a");
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    pthread_t t;
    pthread_create(&t, NULL, drain_main, d);
    s->pid = pid;
    s->drain = d;
    pthread_mutex_lock(&d->mu);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 30;
    while (d->port == 0)
        if (pthread_cond_timedwait(&d->cv, &d->mu, &dl) == ETIMEDOUT) break;
    int port = d->port;
    pthread_mutex_unlock(&d->mu);
    s->drain_thr = t;
    if (port <= 0) {
        fprintf(stderr, "server did not start\n");
        if (port == 0) kill(pid, SIGKILL);
        srv_stop(s, 0);
        srv_dump_log(s);
        return -1;
    }
    s->port = port;
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", port);
    return 0;
}

/* After the server exited with wait status st: forget it, join its log drain. */
static int reap(srv *s, int st)
{
    track(s->pid, 0);
    s->pid = 0;
    drain *d = s->drain;
    if (d) { /* the process is gone, so its stderr is closed: the drain thread ends */
        pthread_join(s->drain_thr, NULL);
        close(d->fd);
        fclose(d->log);
        pthread_mutex_destroy(&d->mu);
        pthread_cond_destroy(&d->cv);
        free(d);
        s->drain = NULL;
    }
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return WEXITSTATUS(st);
}

/* Waits for the server, SIGKILLing it after timeout_ms; a server that died of a signal it was
 * not sent (an abort, a sanitizer's report) or did not stop in time has its log shown. */
static int stop_within(srv *s, int sig, int timeout_ms)
{
    if (!s->pid) return -1;
    if (sig) kill(s->pid, sig);
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            if (WIFSIGNALED(st) && WTERMSIG(st) != sig) srv_dump_log(s);
            return reap(s, st);
        }
        usleep(10000);
    }
    fprintf(stderr, "server %d did not stop within %d ms: killed\n", (int)s->pid, timeout_ms);
    kill(s->pid, SIGKILL);
    int st = 0;
    waitpid(s->pid, &st, 0);
    srv_dump_log(s);
    reap(s, st);
    return -2;
}

int srv_stop(srv *s, int sig)
{
    return stop_within(s, sig, SRV_STOP_MAX_MS);
}

int srv_stop_within(srv *s, int sig, int timeout_ms)
{
    return stop_within(s, sig, timeout_ms);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    buf_append(ud, p, size * n);
    return size * n;
}

int http_do(const char *method, const char *url, const char *const *headers, const void *body,
            size_t len, long timeout_ms, resp *out)
{
    memset(out, 0, sizeof *out);
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    for (int i = 0; headers && headers[i]; i++) h = curl_slist_append(h, headers[i]);
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms ? timeout_ms : 10000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &out->head);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    if (!strcmp(method, "HEAD")) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    } else {
        snprintf(out->error, sizeof out->error, "%s", curl_easy_strerror(rc));
    }
    buf_cstr(&out->body);
    buf_cstr(&out->head);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc == CURLE_OK ? 0 : -1;
}

void resp_free(resp *r)
{
    buf_free(&r->body);
    buf_free(&r->head);
}

int http_ingest(const srv *s, const char *body, resp *out)
{
    char url[128];
    snprintf(url, sizeof url, "%s/ingest", s->url);
    const char *h[] = {"Content-Type: application/json", NULL};
    return http_do("POST", url, h, body, strlen(body), 0, out);
}

char *srv_lake_dir(const char *tag)
{
    char *d = test_tmpdir(tag);
    char *lake = malloc(strlen(d) + 8);
    sprintf(lake, "%s/lake", d);
    free(d);
    return lake;
}

void srv_lake_cleanup(srv *s, char *lake)
{
    if (s->pid) srv_stop(s, SIGKILL);
    if (test_failed_now()) srv_dump_log(s);
    char *slash = strrchr(lake, '/');
    *slash = 0;
    test_rmtree(lake);
    free(lake);
}

long long srv_metric(const srv *s, const char *name)
{
    char url[128];
    snprintf(url, sizeof url, "%s/metrics", s->url);
    resp r;
    long long v = -1;
    if (http_do("GET", url, NULL, NULL, 0, 0, &r) == 0 && r.status == 200 && r.body.p) {
        char key[256];
        snprintf(key, sizeof key, "\n%s ", name);
        const char *p = strstr(r.body.p, key);
        if (p) v = atoll(p + strlen(key));
    }
    resp_free(&r);
    return v;
}

void srv_tokens_file(const char *lake, const char *lines, char *path, size_t n)
{
    snprintf(path, n, "%s.tokens", lake);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(lines, f);
        fclose(f);
    }
}

int gzip_bytes(const void *data, size_t n, buf *out)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) return -1;
    size_t cap = deflateBound(&z, (uLong)n) + 64;
    buf_reserve(out, cap);
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)n;
    z.next_out = (Bytef *)out->p + out->len;
    z.avail_out = (uInt)cap;
    int r = deflate(&z, Z_FINISH);
    out->len += cap - z.avail_out;
    deflateEnd(&z);
    return r == Z_STREAM_END ? 0 : -1;
}

static buf *collect;
static int collect_files;
static char **paths;
static size_t npaths, cappaths;

static int collect_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)ftw;
    if (flag != FTW_F) return 0;
    if (npaths == cappaths)
        paths = realloc(paths, (cappaths = cappaths ? cappaths * 2 : 64) * sizeof *paths);
    paths[npaths++] = strdup(path);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int lake_read_all(const char *lake, buf *out, int *files)
{
    return lake_read_under(lake, "events", out, files);
}

int lake_read_under(const char *lake, const char *sub, buf *out, int *files)
{
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/%s", lake, sub);
    collect = out;
    collect_files = 0;
    npaths = 0;
    nftw(dir, collect_one, 32, FTW_PHYS);
    if (npaths) qsort(paths, npaths, sizeof *paths, cmp_str);
    for (size_t i = 0; i < npaths; i++) {
        size_t n;
        char *t = test_read_file(paths[i], &n);
        if (t) buf_append(out, t, n);
        free(t);
        free(paths[i]);
        collect_files++;
    }
    free(paths);
    paths = NULL;
    npaths = cappaths = 0;
    if (files) *files = collect_files;
    buf_cstr(out);
    return 0;
}

int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- the S3 test server ------------------------------------------------------ */

static char s3_root[1024]; /* the test directory; the cluster lives in s3_root/rgw */

static void s3_stop(void)
{
    if (s3_root[0]) {
        sh("'%s/scripts/s3-test-server' stop '%s/rgw' >/dev/null 2>&1", EVENTS_SOURCE_DIR, s3_root);
        sh("rm -rf '%s'", s3_root);
        s3_root[0] = 0;
    }
}

int s3_start(void)
{
    if (s3_root[0]) return 0;
    char *d = test_tmpdir("s3");
    snprintf(s3_root, sizeof s3_root, "%s", d);
    free(d);
    atexit(s3_stop);
    char out[1200], envp[1200];
    snprintf(out, sizeof out, "%s/start.out", s3_root);
    snprintf(envp, sizeof envp, "%s/rgw/env", s3_root);
    int rc = sh("'%s/scripts/s3-test-server' start '%s/rgw' > '%s' 2>&1", EVENTS_SOURCE_DIR,
                s3_root, out);
    FILE *f = rc ? NULL : fopen(envp, "r");
    if (!f) {
        char *t = test_read_file(out, NULL);
        fprintf(stderr, "the S3 test server did not start:\n%s\n", t ? t : "");
        free(t);
        return -1;
    }
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *eq = strchr(line, '=');
        if (!eq) continue;
        *eq = 0;
        setenv(line, eq + 1, 1);
    }
    fclose(f);
    return 0;
}

int s3_rgw(int up)
{
    if (!s3_root[0]) return -1;
    return sh("'%s/scripts/s3-test-server' %s '%s/rgw' >> '%s/start.out' 2>&1", EVENTS_SOURCE_DIR,
              up ? "start-rgw" : "stop-rgw", s3_root, s3_root);
}

void parquet_order_sql(char *sql, size_t n, const char *path, const char *order)
{
    /* each row's place in the file beside its place in the order (ids are unique in a file) */
    snprintf(sql, n,
             "SELECT count(*), count(*) FILTER (WHERE pos <> rn) FROM (SELECT pos, row_number() "
             "OVER (ORDER BY %s) AS rn FROM (SELECT *, row_number() OVER () AS pos FROM "
             "read_parquet('%s')))",
             order, path);
}
