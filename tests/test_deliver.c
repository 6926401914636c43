/*
 * test_deliver.c - the delivery engine of webhook subscriptions
 * (server/deliver.h) against a real server and a real receiver.
 *
 * The receiver is libmicrohttpd on loopback, in this process: it checks each
 * request's Standard Webhooks signature with lib/codec.h's HMAC and base64,
 * answers by a script (fail the next N requests, with or without a
 * Retry-After; answer 410 or 500 to all), and records the ids of the events
 * it acknowledged, in the order it acknowledged them. Subscriptions are
 * created directly in the lake (lake/subs.h), as the API would write them,
 * and their records are read back from it. Every wait is bounded.
 */
#include "codec.h"
#include "evtime.h"
#include "harness.h"
#include "subs.h"
#include "test.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WAIT_MS 20000

static const unsigned char KEY[24] = "0123456789abcdefghijklmn";

typedef struct rx {
    struct MHD_Daemon *d;
    char url[96];
    pthread_mutex_t mu;
    int fail_next;   /* answer 500 to the next N requests */
    int retry_after; /* with them: Retry-After, seconds (0: none) */
    int always;      /* answer this status to every request (0: 200) */
    int hang_ms;     /* hold every answer this long (a receiver that hangs) */
    int requests, bad_sig;
    json_t *ids;   /* ids of the events acknowledged, in order */
    json_t *types; /* the "type" of each request acknowledged */
    char msg_id[64];
    int64_t first_fail_ms, first_ok_ms;
} rx;

/* 1 if the request's webhook-signature is HMAC-SHA256(KEY, "id.ts.body"), base64, "v1,". */
static int signature_ok(struct MHD_Connection *c, const buf *body, char msg_id[64])
{
    const char *id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-id"),
               *ts = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-timestamp"),
               *sig = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-signature");
    if (!id || !ts || !sig || strlen(id) != 36 || strncmp(id, "msg_", 4)) return 0;
    snprintf(msg_id, 64, "%s", id);
    buf m = BUF_INIT, want = BUF_INIT;
    buf_printf(&m, "%s.%s.", id, ts);
    buf_append(&m, body->p, body->len);
    unsigned char mac[32];
    sha256_hmac(KEY, sizeof KEY, m.p, m.len, mac);
    buf_puts(&want, "v1,");
    base64_encode(&want, mac, sizeof mac);
    int ok = !strcmp(buf_cstr(&want), sig);
    buf_free(&m), buf_free(&want);
    return ok;
}

/* The status of the next answer, by the script (under rx->mu). */
static int scripted(rx *x, int *retry_after)
{
    *retry_after = 0;
    if (x->fail_next > 0) {
        x->fail_next--;
        *retry_after = x->retry_after;
        if (!x->first_fail_ms) x->first_fail_ms = evtime_now_ms();
        return 500;
    }
    return x->always ? x->always : 200;
}

/* Records an acknowledged request's events (under rx->mu). */
static void acknowledged(rx *x, const buf *body)
{
    json_t *j = json_loadb(body->p, body->len, 0, NULL);
    json_t *ev = json_object_get(json_object_get(j, "data"), "events");
    for (size_t i = 0; i < json_array_size(ev); i++)
        json_array_append(x->ids, json_object_get(json_array_get(ev, i), "id"));
    json_array_append(x->types, json_object_get(j, "type"));
    if (!x->first_ok_ms) x->first_ok_ms = evtime_now_ms();
    json_decref(j);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **state)
{
    (void)url, (void)method, (void)version;
    rx *x = cls;
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
    pthread_mutex_lock(&x->mu);
    int hang = x->hang_ms;
    pthread_mutex_unlock(&x->mu);
    if (hang) usleep((useconds_t)hang * 1000);
    pthread_mutex_lock(&x->mu);
    x->requests++;
    if (!signature_ok(c, body, x->msg_id)) x->bad_sig++;
    int ra, st = scripted(x, &ra);
    if (st / 100 == 2) acknowledged(x, body);
    pthread_mutex_unlock(&x->mu);
    const char *text = "{\"answer\":\"scripted\"}";
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    char v[16];
    snprintf(v, sizeof v, "%d", ra);
    if (ra) MHD_add_response_header(r, "Retry-After", v);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)st, r);
    MHD_destroy_response(r);
    return ok;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **state,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    buf *b = *state;
    if (b) buf_free(b), free(b), *state = NULL;
}

static rx *rx_start(void)
{
    rx *x = calloc(1, sizeof *x);
    pthread_mutex_init(&x->mu, NULL);
    x->ids = json_array();
    x->types = json_array();
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    x->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                            NULL, NULL, on_request, x, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, x, MHD_OPTION_END);
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(x->d, MHD_DAEMON_INFO_BIND_PORT);
    snprintf(x->url, sizeof x->url, "http://127.0.0.1:%u/hook", (unsigned)i->port);
    return x;
}

static void rx_stop(rx *x)
{
    MHD_stop_daemon(x->d);
    json_decref(x->ids);
    json_decref(x->types);
    pthread_mutex_destroy(&x->mu);
    free(x);
}

/* Waits until the receiver acknowledged n events (at most WAIT_MS); how many it did. */
static size_t rx_wait(rx *x, size_t n)
{
    size_t got = 0;
    for (int i = 0; i < WAIT_MS / 20; i++) {
        pthread_mutex_lock(&x->mu);
        got = json_array_size(x->ids);
        pthread_mutex_unlock(&x->mu);
        if (got >= n) break;
        usleep(20000);
    }
    return got;
}

/* The id of the k-th event acknowledged, "" if none. */
static const char *rx_id(rx *x, size_t k)
{
    const char *s = json_string_value(json_array_get(x->ids, k));
    return s ? s : "";
}

/* ---- the lake's side ------------------------------------------------------------------- */

typedef struct lk {
    store *s;
    lake_subs *h;
} lk;

static void lk_open(lk *l, const char *lake)
{
    char err[512];
    mkdir(lake, 0755);
    REQUIRE_INT(0, store_open(lake, &l->s, err, sizeof err));
    REQUIRE_INT(0, lake_subs_open(l->s, &l->h, err, sizeof err));
}

static void lk_close(lk *l)
{
    lake_subs_close(l->h);
    store_close(l->s);
}

/* Creates subscription id to x with pattern; extra's members (may be NULL) added. */
static void sub_create(lk *l, const char *id, const char *pattern, const rx *x, json_t *extra)
{
    buf sec = BUF_INIT;
    buf_puts(&sec, "whsec_");
    base64_encode(&sec, KEY, sizeof KEY);
    json_t *r =
        json_pack("{s:s,s:s,s:s,s:s,s:i,s:i,s:i,s:i,s:i,s:s,s:s,s:n,s:i,s:i}", "id", id, "pattern",
                  pattern, "url", x->url, "secret", buf_cstr(&sec), "batchSize", 100, "maxWaitMs",
                  0, "timeoutMs", 5000, "maxAttempts", 8, "concurrency", 1, "start", "oldest",
                  "cursor", "", "replay", "retryRequested", 0, "retryDone", 0);
    if (extra) json_object_update(r, extra);
    char err[512];
    CHECK_INT(0, lake_subs_create(l->h, id, r, NULL, err, sizeof err));
    json_decref(r);
    json_decref(extra);
    buf_free(&sec);
}

/* The member name of subscription id's current record, as text ("" when absent, "null"). */
static void sub_field(lk *l, const char *id, const char *name, char *out, size_t n)
{
    lake_sub s = {0};
    char err[512];
    out[0] = 0;
    if (lake_subs_get(l->h, id, &s, err, sizeof err)) return;
    json_t *v = json_object_get(s.rec, name);
    if (json_is_string(v))
        snprintf(out, n, "%s", json_string_value(v));
    else if (v) {
        char *t = json_dumps(v, JSON_ENCODE_ANY);
        snprintf(out, n, "%s", t);
        free(t);
    }
    lake_sub_free(&s);
}

/* Waits until subscription id's member name is want (at most WAIT_MS): 1 if it came. */
static int sub_wait(lk *l, const char *id, const char *name, const char *want)
{
    char v[1024];
    for (int i = 0; i < WAIT_MS / 50; i++) {
        sub_field(l, id, name, v, sizeof v);
        if (!strcmp(v, want)) return 1;
        usleep(50000);
    }
    fprintf(stderr, "  %s.%s is \"%s\", not \"%s\"\n", id, name, v, want);
    return 0;
}

/* Waits until the record's number `name` is at least `min` (an attempt can follow another
 * within the poll's 50 ms: a value can be passed over). */
static int sub_wait_min(lk *l, const char *id, const char *name, long min)
{
    char v[1024];
    for (int i = 0; i < WAIT_MS / 50; i++) {
        sub_field(l, id, name, v, sizeof v);
        if (*v && strtol(v, NULL, 10) >= min) return 1;
        usleep(50000);
    }
    fprintf(stderr, "  %s.%s is \"%s\", not %ld or more\n", id, name, v, min);
    return 0;
}

static int edit_set(json_t *rec, void *ud, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    json_object_update(rec, ud);
    return 0;
}

/* Sets members of subscription id's record (extra, taken), as the API would. */
static void sub_set(lk *l, const char *id, json_t *extra)
{
    char err[512];
    CHECK_INT(0, lake_subs_update(l->h, id, NULL, edit_set, extra, NULL, err, sizeof err));
    json_decref(extra);
}

/* A test's lake, its server (not started), its receiver and the lake's subscriptions. */
typedef struct fx {
    srv s;
    char *lake;
    rx *x;
    lk l;
} fx;

static void fx_open(fx *f)
{
    memset(f, 0, sizeof *f);
    f->lake = srv_lake_dir("deliver");
    f->x = rx_start();
    lk_open(&f->l, f->lake);
}

static void fx_close(fx *f)
{
    lk_close(&f->l);
    rx_stop(f->x);
    srv_lake_cleanup(&f->s, f->lake);
}

/* Ingests n events of type type, ids prefix-0.., with extra members (JSON text, "" none). */
static void ingest(const srv *s, const char *type, const char *prefix, int from, int n,
                   const char *extra)
{
    buf b = BUF_INIT;
    buf_putc(&b, '[');
    for (int i = 0; i < n; i++)
        buf_printf(&b, "%s{\"type\":\"%s\",\"id\":\"%s-%d\"%s}", i ? "," : "", type, prefix,
                   from + i, extra);
    buf_putc(&b, ']');
    resp r;
    http_ingest(s, buf_cstr(&b), &r);
    CHECK_INT(200, r.status);
    resp_free(&r);
    buf_free(&b);
}

static const char *const FAST[] = {"--subscription-poll", "100ms", "--subscription-lease", "2s",
                                   NULL};

TEST(delivers_every_event_in_order_signed)
{
    fx f;
    fx_open(&f);
    srv *s = &f.s;
    rx *x = f.x;
    lk *l = &f.l;
    sub_create(l, "orders", "order.*", x, NULL);
    REQUIRE_INT(0, srv_start(s, f.lake, FAST));
    for (int k = 0; k < 5; k++) ingest(s, "order.created", "e", k * 50, 50, "");
    ingest(s, "user.created", "u", 0, 10, ""); /* not the pattern's */
    CHECK_INT(250, (long)rx_wait(x, 250));
    pthread_mutex_lock(&x->mu);
    for (size_t i = 0; i < json_array_size(x->ids); i++) {
        char want[32];
        snprintf(want, sizeof want, "e-%zu", i);
        CHECK_STR(want, rx_id(x, i));
    }
    CHECK_INT(0, x->bad_sig);
    CHECK_STR("events.batch", json_string_value(json_array_get(x->types, 0)));
    pthread_mutex_unlock(&x->mu);
    CHECK(sub_wait(l, "orders", "delivered", "250"));
    CHECK_INT(250, srv_metric(s, "events_subscription_delivered_total{subscription=\"orders\"}"));
    CHECK_INT(0, srv_stop(s, SIGTERM));
    CHECK(sub_wait(l, "orders", "leaseUntil", "0"));
    fx_close(&f);
}

TEST(a_failing_receiver_gets_the_batch_again_until_it_answers_2xx)
{
    fx f;
    fx_open(&f);
    srv *s = &f.s;
    rx *x = f.x;
    lk *l = &f.l;
    x->fail_next = 3;
    sub_create(l, "orders", "order.created", x, NULL);
    REQUIRE_INT(0, srv_start(s, f.lake, FAST));
    ingest(s, "order.created", "e", 0, 20, "");
    CHECK_INT(20, (long)rx_wait(x, 20));
    CHECK_STR("e-0", rx_id(x, 0));
    pthread_mutex_lock(&x->mu);
    CHECK_INT(4, x->requests);
    CHECK_INT(0, x->bad_sig);
    pthread_mutex_unlock(&x->mu);
    CHECK(sub_wait(l, "orders", "failed", "3"));
    CHECK(sub_wait(l, "orders", "delivered", "20"));
    CHECK_INT(3, srv_metric(s, "events_subscription_failed_total{subscription=\"orders\"}"));
    fx_close(&f);
}

TEST(retry_after_is_waited_for)
{
    fx f;
    fx_open(&f);
    srv *s = &f.s;
    rx *x = f.x;
    lk *l = &f.l;
    x->fail_next = 1, x->retry_after = 2;
    sub_create(l, "orders", "order.created", x, NULL);
    REQUIRE_INT(0, srv_start(s, f.lake, FAST));
    ingest(s, "order.created", "e", 0, 5, "");
    CHECK_INT(5, (long)rx_wait(x, 5));
    pthread_mutex_lock(&x->mu);
    CHECK(x->first_ok_ms - x->first_fail_ms >= 1000); /* Retry-After 2 s: not before (seconds) */
    pthread_mutex_unlock(&x->mu);
    fx_close(&f);
}

TEST(answer_410_disables_the_subscription)
{
    fx f;
    fx_open(&f);
    srv *s = &f.s;
    rx *x = f.x;
    lk *l = &f.l;
    x->always = 410;
    sub_create(l, "orders", "order.created", x, NULL);
    REQUIRE_INT(0, srv_start(s, f.lake, FAST));
    ingest(s, "order.created", "e", 0, 5, "");
    CHECK(sub_wait(l, "orders", "state", "disabled"));
    CHECK(sub_wait(l, "orders", "reason", "receiver answered 410 Gone"));
    CHECK(sub_wait(l, "orders", "cursor", ""));
    ingest(s, "order.created", "e", 5, 5, "");
    usleep(300000);
    pthread_mutex_lock(&x->mu);
    CHECK_INT(1, x->requests);
    pthread_mutex_unlock(&x->mu);
    fx_close(&f);
}

/* The single dead letter of id: its document. */
static json_t *dead_letter(lk *l, const char *id, char name[LAKE_KEY_MAX])
{
    lake_dead *v = NULL;
    size_t n = 0, total = 0;
    char err[512];
    for (int i = 0; i < WAIT_MS / 50 && !n; i++) {
        free(v);
        v = NULL;
        CHECK_INT(0, lake_subs_dead_list(l->h, id, 10, &v, &n, &total, err, sizeof err));
        if (!n) usleep(50000);
    }
    CHECK_INT(1, (long)n);
    json_t *j = NULL;
    if (n) {
        buf b = BUF_INIT;
        CHECK_INT(0, lake_subs_dead_get(l->h, id, v[0].key, &b, err, sizeof err));
        j = json_loadb(b.p, b.len, 0, NULL);
        snprintf(name, LAKE_KEY_MAX, "%s", v[0].key);
        buf_free(&b);
    }
    free(v);
    return j;
}

TEST(after_max_attempts_a_batch_is_a_dead_letter_and_a_retry_delivers_it)
{
    fx f;
    fx_open(&f);
    srv *s = &f.s;
    rx *x = f.x;
    lk *l = &f.l;
    x->fail_next = 2;
    sub_create(l, "orders", "order.created", x, json_pack("{s:i}", "maxAttempts", 2));
    REQUIRE_INT(0, srv_start(s, f.lake, FAST));
    ingest(s, "order.created", "e", 0, 3, "");
    char name[LAKE_KEY_MAX] = "";
    json_t *d = dead_letter(l, "orders", name);
    CHECK_INT(500, json_integer_value(json_object_get(d, "status")));
    CHECK_INT(2, json_integer_value(json_object_get(d, "attempts")));
    CHECK_INT(3, json_integer_value(json_object_get(d, "count")));
    CHECK_CONTAINS("scripted", json_string_value(json_object_get(d, "excerpt")));
    CHECK_STR("e-2", json_string_value(
                         json_object_get(json_array_get(json_object_get(d, "events"), 2), "id")));
    CHECK(sub_wait(l, "orders", "deadLettered", "3"));
    json_decref(d);
    /* the cursor moved past it: the next events are delivered */
    ingest(s, "order.created", "e", 3, 2, "");
    CHECK_INT(2, (long)rx_wait(x, 2));
    CHECK_STR("e-3", rx_id(x, 0));
    sub_set(l, "orders", json_pack("{s:i}", "retryRequested", 1));
    CHECK_INT(5, (long)rx_wait(x, 5));
    CHECK_STR("e-0", rx_id(x, 2));
    CHECK_STR("e-2", rx_id(x, 4));
    CHECK_STR("events.retry",
              json_string_value(json_array_get(x->types, json_array_size(x->types) - 1)));
    CHECK(sub_wait(l, "orders", "retryDone", "1"));
    lake_dead *v = NULL;
    size_t n = 9, total = 0;
    char err[512];
    CHECK_INT(0, lake_subs_dead_list(l->h, "orders", 10, &v, &n, &total, err, sizeof err));
    CHECK_INT(0, (long)n);
    free(v);
    fx_close(&f);
}

/* Now, after a pause that puts it in a millisecond of its own. */
static int64_t mark(void)
{
    usleep(20000);
    int64_t t = evtime_now_ms();
    usleep(20000);
    return t;
}

TEST(replay_delivers_exactly_the_range)
{
    fx f;
    fx_open(&f);
    srv *s = &f.s;
    rx *x = f.x;
    lk *l = &f.l;
    sub_create(l, "orders", "order.created", x, NULL);
    REQUIRE_INT(0, srv_start(s, f.lake, FAST));
    ingest(s, "order.created", "a", 0, 30, "");
    int64_t t1 = mark();
    ingest(s, "order.created", "b", 0, 20, "");
    ingest(s, "order.other", "x", 0, 5, "");
    int64_t t2 = mark();
    ingest(s, "order.created", "c", 0, 10, "");
    CHECK_INT(60, (long)rx_wait(x, 60));
    sub_set(l, "orders",
            json_pack("{s:{s:I,s:I,s:s}}", "replay", "from", (json_int_t)t1, "to", (json_int_t)t2,
                      "cursor", ""));
    CHECK(sub_wait(l, "orders", "replay", "null"));
    CHECK_INT(80, (long)rx_wait(x, 80));
    usleep(300000);
    pthread_mutex_lock(&x->mu);
    CHECK_INT(80, (long)json_array_size(x->ids));
    CHECK_STR("b-0", rx_id(x, 60));
    CHECK_STR("b-19", rx_id(x, 79));
    CHECK_STR("events.replay",
              json_string_value(json_array_get(x->types, json_array_size(x->types) - 1)));
    pthread_mutex_unlock(&x->mu);
    fx_close(&f);
}

TEST(a_leading_wildcard_pattern_matches)
{
    fx f;
    fx_open(&f);
    srv *s = &f.s;
    rx *x = f.x;
    lk *l = &f.l;
    sub_create(l, "pushes", "**.push", x, NULL);
    REQUIRE_INT(0, srv_start(s, f.lake, FAST));
    ingest(s, "webhook.github.push", "g", 0, 2, "");
    ingest(s, "push.pull", "n", 0, 2, "");
    ingest(s, "push", "p", 0, 1, "");
    CHECK_INT(3, (long)rx_wait(x, 3));
    CHECK_STR("g-0", rx_id(x, 0));
    CHECK_STR("p-0", rx_id(x, 2));
    fx_close(&f);
}

TEST(filters_select_on_do_and_collection)
{
    fx f;
    fx_open(&f);
    srv *s = &f.s;
    rx *x = f.x;
    lk *l = &f.l;
    sub_create(l, "o1", "collection.*", x,
               json_pack("{s:{s:s,s:s,s:s}}", "filters", "do.class", "Orders", "do.id", "o-1",
                         "collection", "orders"));
    REQUIRE_INT(0, srv_start(s, f.lake, FAST));
    ingest(s, "collection.insert", "no", 0, 2, ",\"collection\":\"orders\"");
    ingest(s, "collection.insert", "other", 0, 2,
           ",\"collection\":\"orders\",\"do\":{\"class\":\"Orders\",\"id\":\"o-2\"}");
    ingest(s, "collection.insert", "yes", 0, 2,
           ",\"collection\":\"orders\",\"do\":{\"class\":\"Orders\",\"id\":\"o-1\"}");
    ingest(s, "collection.insert", "coll", 0, 2,
           ",\"collection\":\"users\",\"do\":{\"class\":\"Orders\",\"id\":\"o-1\"}");
    CHECK_INT(2, (long)rx_wait(x, 2));
    usleep(300000);
    pthread_mutex_lock(&x->mu);
    CHECK_INT(2, (long)json_array_size(x->ids));
    CHECK_STR("yes-0", rx_id(x, 0));
    pthread_mutex_unlock(&x->mu);
    fx_close(&f);
}

TEST(the_cursor_stays_on_failure_and_a_restart_delivers_the_batch_again)
{
    fx f;
    fx_open(&f);
    srv *s = &f.s;
    rx *x = f.x;
    lk *l = &f.l;
    x->always = 500;
    sub_create(l, "orders", "order.created", x, json_pack("{s:i}", "maxAttempts", 100));
    REQUIRE_INT(0, srv_start(s, f.lake, FAST));
    ingest(s, "order.created", "e", 0, 7, "");
    CHECK(sub_wait_min(l, "orders", "failed", 1));
    CHECK_INT(0, srv_stop(s, SIGTERM));
    CHECK(sub_wait(l, "orders", "cursor", ""));
    x->always = 0;
    REQUIRE_INT(0, srv_start(s, f.lake, FAST));
    CHECK_INT(7, (long)rx_wait(x, 7));
    CHECK_STR("e-0", rx_id(x, 0));
    CHECK(sub_wait(l, "orders", "delivered", "7"));
    fx_close(&f);
}

/* The pid in a record's owner "host:pid:xxxx"; 0 if none. */
static long owner_pid(lk *l, const char *id)
{
    char o[256];
    sub_field(l, id, "owner", o, sizeof o);
    const char *p = strchr(o, ':');
    return p ? strtol(p + 1, NULL, 10) : 0;
}

TEST(one_server_delivers_and_the_other_takes_over_when_it_stops)
{
    fx f;
    fx_open(&f);
    srv *a = &f.s, b = {0};
    rx *x = f.x;
    lk *l = &f.l;
    sub_create(l, "orders", "order.created", x, NULL);
    char spool_b[1200];
    snprintf(spool_b, sizeof spool_b, "%s/spool-b", f.lake);
    const char *args_a[] = {
        "--subscription-poll", "100ms", "--subscription-lease", "2s", "--seal-age", "200ms", NULL};
    const char *args_b[] = {"--subscription-poll",
                            "100ms",
                            "--subscription-lease",
                            "2s",
                            "--seal-age",
                            "200ms",
                            "--spool",
                            spool_b,
                            NULL};
    REQUIRE_INT(0, srv_start(a, f.lake, args_a));
    REQUIRE_INT(0, srv_start(&b, f.lake, args_b));
    ingest(a, "order.created", "e", 0, 10, "");
    CHECK_INT(10, (long)rx_wait(x, 10));
    long first = owner_pid(l, "orders");
    CHECK(first == a->pid || first == b.pid);
    srv *owner = first == a->pid ? a : &b, *other = first == a->pid ? &b : a;
    CHECK_INT(-1,
              srv_metric(other, "events_subscription_delivered_total{subscription=\"orders\"}"));
    CHECK_INT(0, srv_stop(owner, SIGTERM));
    ingest(other, "order.created", "e", 10, 10, "");
    CHECK_INT(20, (long)rx_wait(x, 20));
    CHECK_INT(other->pid, owner_pid(l, "orders"));
    pthread_mutex_lock(&x->mu);
    for (size_t i = 0; i < json_array_size(x->ids); i++) {
        char want[32];
        snprintf(want, sizeof want, "e-%zu", i);
        CHECK_STR(want, rx_id(x, i));
    }
    pthread_mutex_unlock(&x->mu);
    srv_stop(other, SIGTERM);
    fx_close(&f);
}

TEST(a_record_that_cannot_be_delivered_is_left_alone_and_the_others_go_on)
{
    fx f;
    fx_open(&f);
    sub_create(&f.l, "nokey", "order.created", f.x, json_pack("{s:s}", "secret", "not-whsec"));
    sub_create(&f.l, "nourl", "order.created", f.x, json_pack("{s:s}", "url", "ftp://x/"));
    sub_create(&f.l, "orders", "order.created", f.x, json_pack("{s:s}", "cursor", "bad cursor"));
    REQUIRE_INT(0, srv_start(&f.s, f.lake, FAST));
    ingest(&f.s, "order.created", "e", 0, 4, "");
    CHECK_INT(4, (long)rx_wait(f.x, 4)); /* a malformed cursor: from the start, logged */
    CHECK(sub_wait(&f.l, "orders", "delivered", "4"));
    char owner[256];
    sub_field(&f.l, "nokey", "owner", owner, sizeof owner);
    CHECK_STR("", owner);
    sub_field(&f.l, "nourl", "owner", owner, sizeof owner);
    CHECK_STR("", owner);
    fx_close(&f);
}

TEST(bad_delivery_flags_stop_the_server_before_it_starts)
{
    char *lake = srv_lake_dir("deliver");
    const char *bad[] = {"--deliver-connections 257", "--subscription-lease 500ms",
                         "--subscription-poll 20s", "--subscription-poll 10ms",
                         "--deliver-max-bytes 0"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_INT(2, sh("%s serve --listen 127.0.0.1:0 --lake '%s' %s >/dev/null 2>&1",
                        events_bin(), lake, bad[i]));
    srv s = {0};
    srv_lake_cleanup(&s, lake);
}

TEST(concurrency_pipelines_batches_and_every_event_arrives_once)
{
    fx f;
    fx_open(&f);
    sub_create(&f.l, "orders", "order.created", f.x,
               json_pack("{s:i,s:i}", "concurrency", 4, "batchSize", 10));
    REQUIRE_INT(0, srv_start(&f.s, f.lake, FAST));
    for (int k = 0; k < 10; k++) ingest(&f.s, "order.created", "e", k * 100, 100, "");
    CHECK_INT(1000, (long)rx_wait(f.x, 1000));
    CHECK(sub_wait(&f.l, "orders", "delivered", "1000"));
    pthread_mutex_lock(&f.x->mu);
    static char seen[1000];
    for (size_t i = 0; i < json_array_size(f.x->ids); i++) {
        int k = atoi(rx_id(f.x, i) + 2);
        CHECK(k >= 0 && k < 1000 && !seen[k]);
        if (k >= 0 && k < 1000) seen[k] = 1;
    }
    CHECK_INT(1000, (long)json_array_size(f.x->ids));
    pthread_mutex_unlock(&f.x->mu);
    fx_close(&f);
}

/* A receiver that hangs past every timeout holds its own subscription back, not the others'
 * nor ingest: the healthy one gets every event while the other has acknowledged none. */
TEST(a_hanging_receiver_slows_no_other_subscription)
{
    fx f;
    fx_open(&f);
    srv *s = &f.s;
    rx *stuck = f.x, *fine = rx_start();
    stuck->hang_ms = 3000;
    lk *l = &f.l;
    sub_create(l, "stuck", "**", stuck,
               json_pack("{s:i,s:i}", "timeoutMs", 500, "maxAttempts", 100));
    sub_create(l, "fine", "**", fine, NULL);
    REQUIRE_INT(0, srv_start(s, f.lake, FAST));
    for (int k = 0; k < 6; k++) ingest(s, "order.created", "h", k * 50, 50, ""); /* all 200 */
    CHECK_INT(300, (long)rx_wait(fine, 300));
    pthread_mutex_lock(&stuck->mu);
    CHECK_INT(0, (long)json_array_size(stuck->ids));
    pthread_mutex_unlock(&stuck->mu);
    long failed = 0; /* its attempts time out (500 ms) and are counted as failures */
    for (int i = 0; i < WAIT_MS / 50 && failed < 2; i++, usleep(50000))
        failed = srv_metric(s, "events_subscription_failed_total{subscription=\"stuck\"}");
    CHECK(failed >= 2);
    CHECK_INT(0, srv_stop(s, SIGTERM));
    rx_stop(fine);
    fx_close(&f);
}
