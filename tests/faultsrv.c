/*
 * faultsrv.c - see faultsrv.h.
 */
#include "faultsrv.h"
#include "buf.h"
#include "harness.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct faultsrv {
    struct MHD_Daemon *d;
    char url[64];
    char *upstream;
    fault_step *script;
    size_t n, next;
    int requests, forwarded;
    pthread_mutex_t mu;
};

/* Events in a {"events":[...]} body: top-level commas of the array, roughly (tests send small
 * objects). */
static int count_events(const char *p, size_t n)
{
    int depth = 0, in_str = 0, count = 0, any = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        if (c == '"')
            in_str = 1;
        else if (c == '{' || c == '[') {
            depth++;
            if (depth == 3 && c == '{') any = 1;
        } else if (c == '}' || c == ']')
            depth--;
        else if (c == ',' && depth == 2)
            count++;
    }
    return any ? count + 1 : 0;
}

static enum MHD_Result answer(struct MHD_Connection *c, int status, const char *body,
                              int retry_after)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (retry_after) {
        char v[16];
        snprintf(v, sizeof v, "%d", retry_after);
        MHD_add_response_header(r, "Retry-After", v);
    }
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **state)
{
    faultsrv *f = cls;
    buf *body = *state;
    if (!body) {
        *state = calloc(1, sizeof(buf));
        return MHD_YES;
    }
    if (*upload_size) {
        buf_append(body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    fault_step step = {0};
    pthread_mutex_lock(&f->mu);
    if (f->next < f->n) step = f->script[f->next++];
    f->requests++;
    pthread_mutex_unlock(&f->mu);

    const char *enc = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Encoding");
    if (step.max_events && !enc && count_events(body->p, body->len) > step.max_events) {
        pthread_mutex_lock(&f->mu);
        f->next--; /* this step holds until a batch fits */
        pthread_mutex_unlock(&f->mu);
        return answer(c, 413, "{\"error\":\"too many events in one request\"}", 0);
    }
    if (step.status) {
        if (step.delay_ms) usleep((useconds_t)step.delay_ms * 1000);
        return answer(c, step.status, "{\"error\":\"injected fault\"}", step.retry_after);
    }
    if (!f->upstream) return answer(c, 502, "{\"error\":\"no upstream\"}", 0);
    const char *h[4] = {"Content-Type: application/json", NULL, NULL, NULL};
    char enc_h[64], auth_h[512];
    int k = 1;
    if (enc) {
        snprintf(enc_h, sizeof enc_h, "Content-Encoding: %s", enc);
        h[k++] = enc_h;
    }
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (auth) {
        snprintf(auth_h, sizeof auth_h, "Authorization: %s", auth);
        h[k++] = auth_h;
    }
    resp r;
    http_do("POST", f->upstream, h, body->p, body->len, 10000, &r);
    pthread_mutex_lock(&f->mu);
    f->forwarded++;
    pthread_mutex_unlock(&f->mu);
    if (step.delay_ms) usleep((useconds_t)step.delay_ms * 1000);
    enum MHD_Result ret =
        answer(c, r.status ? (int)r.status : 502, r.status ? buf_cstr(&r.body) : "{}", 0);
    resp_free(&r);
    return ret;
}

static void completed(void *cls, struct MHD_Connection *c, void **state,
                      enum MHD_RequestTerminationCode toe)
{
    buf *body = *state;
    if (body) {
        buf_free(body);
        free(body);
        *state = NULL;
    }
}

faultsrv *faultsrv_start(const char *upstream, const fault_step *script, size_t n)
{
    faultsrv *f = calloc(1, sizeof *f);
    f->upstream = upstream ? strdup(upstream) : NULL;
    f->script = calloc(n ? n : 1, sizeof *script);
    if (n) memcpy(f->script, script, n * sizeof *script);
    f->n = n;
    pthread_mutex_init(&f->mu, NULL);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                            NULL, NULL, handler, f, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
    if (!f->d) {
        faultsrv_stop(f);
        return NULL;
    }
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%u", (unsigned)i->port);
    return f;
}

const char *faultsrv_url(const faultsrv *f)
{
    return f->url;
}

int faultsrv_requests(faultsrv *f)
{
    pthread_mutex_lock(&f->mu);
    int n = f->requests;
    pthread_mutex_unlock(&f->mu);
    return n;
}

int faultsrv_forwarded(faultsrv *f)
{
    pthread_mutex_lock(&f->mu);
    int n = f->forwarded;
    pthread_mutex_unlock(&f->mu);
    return n;
}

void faultsrv_stop(faultsrv *f)
{
    if (!f) return;
    if (f->d) MHD_stop_daemon(f->d);
    pthread_mutex_destroy(&f->mu);
    free(f->upstream);
    free(f->script);
    free(f);
}
