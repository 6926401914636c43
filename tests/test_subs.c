/*
 * test_subs.c - webhook subscriptions' records and dead letters in the lake
 * (lake/subs.h), on a directory and on the S3 test server, and their type
 * patterns (server/pattern.h). Two lake_subs handles on one store stand for
 * two servers of one lake.
 */
#include "harness.h"
#include "layout.h"
#include "pattern.h"
#include "subs.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct lake2 {
    char *dir;
    store *s;
    lake_subs *a, *b; /* two servers' handles */
} lake2;

static void open_store(lake2 *l, store *s)
{
    char err[512];
    l->s = s;
    CHECK_INT(0, lake_subs_open(s, &l->a, err, sizeof err));
    CHECK_INT(0, lake_subs_open(s, &l->b, err, sizeof err));
}

static void open_dir(lake2 *l)
{
    char err[512];
    store *s = NULL;
    l->dir = test_tmpdir("subs");
    REQUIRE_INT(0, store_open(l->dir, &s, err, sizeof err));
    open_store(l, s);
}

static void close2(lake2 *l)
{
    lake_subs_close(l->a);
    lake_subs_close(l->b);
    store_close(l->s);
    if (l->dir) test_rmtree(l->dir);
    free(l->dir);
}

static json_t *rec_of(const char *url)
{
    return json_pack("{s:s, s:s, s:s, s:i}", "pattern", "collection.*", "url", url, "cursor", "",
                     "batchSize", 100);
}

static int set_cursor(json_t *rec, void *ud, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    return json_object_set_new(rec, "cursor", json_string(ud)) ? -1 : 0;
}

static int set_url(json_t *rec, void *ud, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    return json_object_set_new(rec, "url", json_string(ud)) ? -1 : 0;
}

static int no_change(json_t *rec, void *ud, char *err, size_t errlen)
{
    (void)rec, (void)ud, (void)err, (void)errlen;
    return LAKE_SUBS_NOCHANGE;
}

static int refuse(json_t *rec, void *ud, char *err, size_t errlen)
{
    (void)rec, (void)ud;
    snprintf(err, errlen, "refused");
    return -42;
}

static const char *str_of(const lake_sub *s, const char *k)
{
    return json_string_value(json_object_get(s->rec, k));
}

static int count_one(const store_entry *e, void *ud)
{
    (void)e;
    (*(size_t *)ud)++;
    return 0;
}

static size_t count_keys(store *s, const char *prefix)
{
    size_t n = 0;
    char err[256];
    store_list(s, prefix, count_one, &n, err, sizeof err);
    return n;
}

/* What every backend must do: create, read from another handle, update, race, delete. */
static void records_behave(lake2 *l)
{
    char err[512];
    json_t *r = rec_of("http://127.0.0.1:9/a");
    lake_sub s = {0}, t = {0};
    REQUIRE_INT(0, lake_subs_create(l->a, "orders", r, &s, err, sizeof err));
    CHECK_INT(1, s.version);
    CHECK_STR("active", str_of(&s, "state"));
    CHECK_INT(LAKE_SUBS_EEXIST, lake_subs_create(l->b, "orders", r, NULL, err, sizeof err));
    CHECK(strstr(err, "exists") != NULL);
    /* the other server sees it, and its update wins over the first's stale base */
    REQUIRE_INT(0, lake_subs_get(l->b, "orders", &t, err, sizeof err));
    CHECK_STR("http://127.0.0.1:9/a", str_of(&t, "url"));
    lake_sub u = {0};
    REQUIRE_INT(0, lake_subs_update(l->b, "orders", &t, set_url, "http://127.0.0.1:9/b", &u, err,
                                    sizeof err));
    CHECK_INT(2, u.version);
    lake_sub v = {0};
    REQUIRE_INT(0, lake_subs_update(l->a, "orders", &s, set_cursor, "aaaaaaaa.0000000000000005", &v,
                                    err, sizeof err));
    CHECK_INT(3, v.version); /* lost the race for 2, read 2 and applied the edit to it */
    CHECK_STR("http://127.0.0.1:9/b", str_of(&v, "url"));
    CHECK_STR("aaaaaaaa.0000000000000005", str_of(&v, "cursor"));
    /* an edit that changes nothing writes nothing; an edit's own error stops the update */
    lake_sub w = {0};
    CHECK_INT(0, lake_subs_update(l->b, "orders", NULL, no_change, NULL, &w, err, sizeof err));
    CHECK_INT(3, w.version);
    CHECK_INT(-42, lake_subs_update(l->b, "orders", NULL, refuse, NULL, NULL, err, sizeof err));
    CHECK_STR("refused", err);
    /* listing from either handle */
    lake_sub *all = NULL;
    size_t n = 0;
    REQUIRE_INT(0, lake_subs_list(l->b, &all, &n, err, sizeof err));
    CHECK_INT(1, n);
    if (n) CHECK_STR("aaaaaaaa.0000000000000005", str_of(&all[0], "cursor"));
    lake_subs_free(all, n);
    /* delete: gone for get, list and update; create writes over the tombstone */
    CHECK_INT(0, lake_subs_delete(l->a, "orders", err, sizeof err));
    CHECK_INT(LAKE_SUBS_ENOENT, lake_subs_get(l->b, "orders", &t, err, sizeof err));
    CHECK_INT(LAKE_SUBS_ENOENT,
              lake_subs_update(l->b, "orders", NULL, no_change, NULL, NULL, err, sizeof err));
    REQUIRE_INT(0, lake_subs_list(l->a, &all, &n, err, sizeof err));
    CHECK_INT(0, n);
    lake_subs_free(all, n);
    lake_sub x = {0};
    REQUIRE_INT(0, lake_subs_create(l->b, "orders", r, &x, err, sizeof err));
    CHECK_INT(5, x.version);
    CHECK_STR("", str_of(&x, "cursor"));
    json_decref(r);
    lake_sub_free(&s), lake_sub_free(&t), lake_sub_free(&u), lake_sub_free(&v);
    lake_sub_free(&w), lake_sub_free(&x);
}

TEST(records_are_versioned_and_races_are_won_once)
{
    lake2 l = {0};
    open_dir(&l);
    records_behave(&l);
    close2(&l);
}

TEST(an_s3_lake_keeps_records_too)
{
    REQUIRE_INT(0, s3_start());
    char url[300], err[512];
    snprintf(url, sizeof url, "s3://%s/subs-%d", getenv("EVENTS_S3_BUCKET"), (int)getpid());
    store *s = NULL;
    REQUIRE_INT(0, store_open(url, &s, err, sizeof err));
    lake2 l = {0};
    open_store(&l, s);
    records_behave(&l);
    close2(&l);
}

TEST(old_versions_are_deleted_as_new_ones_are_written)
{
    lake2 l = {0};
    open_dir(&l);
    char err[512], cur[64];
    json_t *r = rec_of("http://127.0.0.1:9/a");
    lake_sub s = {0};
    REQUIRE_INT(0, lake_subs_create(l.a, "busy", r, &s, err, sizeof err));
    for (int i = 0; i < 50; i++) {
        lake_sub t = {0};
        snprintf(cur, sizeof cur, "aaaaaaaa.%016x", i + 1);
        REQUIRE_INT(0, lake_subs_update(l.a, "busy", &s, set_cursor, cur, &t, err, sizeof err));
        lake_sub_free(&s);
        s = t;
    }
    CHECK_INT(51, s.version);
    CHECK(count_keys(l.s, LAKE_SUBS_PREFIX "busy/") <= LAKE_SUBS_KEEP);
    lake_sub g = {0};
    REQUIRE_INT(0, lake_subs_get(l.b, "busy", &g, err, sizeof err));
    CHECK_STR(cur, str_of(&g, "cursor"));
    json_decref(r);
    lake_sub_free(&s), lake_sub_free(&g);
    close2(&l);
}

TEST(bad_ids_are_refused)
{
    lake2 l = {0};
    open_dir(&l);
    char err[512];
    json_t *r = rec_of("http://127.0.0.1:9/a");
    const char *bad[] = {
        "",    "a/b", "..",
        "a b", "é",   "0123456789012345678901234567890123456789012345678901234567890123456789"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_INT(LAKE_SUBS_EINVAL, lake_subs_create(l.a, bad[i], r, NULL, err, sizeof err));
        lake_sub s = {0};
        CHECK_INT(LAKE_SUBS_ENOENT, lake_subs_get(l.a, bad[i], &s, err, sizeof err));
    }
    CHECK_INT(0, count_keys(l.s, ""));
    json_decref(r);
    close2(&l);
}

TEST(a_record_too_large_is_refused)
{
    lake2 l = {0};
    open_dir(&l);
    char err[512];
    char *big = malloc(LAKE_SUBS_MAX_RECORD + 1);
    memset(big, 'x', LAKE_SUBS_MAX_RECORD);
    big[LAKE_SUBS_MAX_RECORD] = 0;
    json_t *r = rec_of(big);
    CHECK_INT(LAKE_SUBS_EINVAL, lake_subs_create(l.a, "big", r, NULL, err, sizeof err));
    CHECK(strstr(err, "at most") != NULL);
    json_decref(r);
    free(big);
    close2(&l);
}

TEST(dead_letters_are_kept_listed_and_deleted)
{
    lake2 l = {0};
    open_dir(&l);
    char err[512], name[LAKE_KEY_MAX], first[LAKE_KEY_MAX];
    json_t *r = rec_of("http://127.0.0.1:9/a");
    REQUIRE_INT(0, lake_subs_create(l.a, "d", r, NULL, err, sizeof err));
    const char *doc = "{\"status\":500,\"events\":[]}";
    for (int i = 0; i < 3; i++) {
        REQUIRE_INT(0, lake_subs_dead_put(l.a, "d", 1765000000000 + i, doc, strlen(doc), name, err,
                                          sizeof err));
        if (!i) snprintf(first, sizeof first, "%s", name);
    }
    lake_dead *d = NULL;
    size_t n = 0, total = 0;
    REQUIRE_INT(0, lake_subs_dead_list(l.b, "d", 2, &d, &n, &total, err, sizeof err));
    CHECK_INT(2, n);
    CHECK_INT(3, total);
    if (n) {
        CHECK_STR(first, d[0].key); /* oldest first */
        CHECK_INT(1765000000000, d[0].failed_ms);
    }
    free(d);
    buf b = BUF_INIT;
    CHECK_INT(0, lake_subs_dead_get(l.b, "d", first, &b, err, sizeof err));
    CHECK_INT((long long)strlen(doc), (long long)b.len);
    buf_free(&b);
    CHECK_INT(LAKE_SUBS_EINVAL, lake_subs_dead_get(l.b, "d", "../../x.json", &b, err, sizeof err));
    CHECK_INT(0, lake_subs_dead_del(l.b, "d", first, err, sizeof err));
    CHECK_INT(LAKE_SUBS_ENOENT, lake_subs_dead_get(l.b, "d", first, &b, err, sizeof err));
    buf_free(&b);
    /* deleting the subscription deletes its dead letters */
    CHECK_INT(0, lake_subs_delete(l.a, "d", err, sizeof err));
    CHECK_INT(0, count_keys(l.s, LAKE_DEAD_PREFIX));
    json_decref(r);
    close2(&l);
}

static int m(const char *p, const char *t)
{
    return pattern_match(p, t, strlen(t));
}

TEST(patterns_match_segments)
{
    CHECK(m("collection.*", "collection.insert"));
    CHECK(!m("collection.*", "collection"));
    CHECK(!m("collection.*", "collection.a.b"));
    CHECK(m("rpc.call", "rpc.call"));
    CHECK(!m("rpc.call", "rpc.calls"));
    CHECK(m("webhook.github.**", "webhook.github"));
    CHECK(m("webhook.github.**", "webhook.github.push"));
    CHECK(m("webhook.github.**", "webhook.github.pull_request.opened"));
    CHECK(!m("webhook.github.**", "webhook.stripe.charge"));
    CHECK(m("*.call", "rpc.call")); /* leading wildcards */
    CHECK(!m("*.call", "a.rpc.call"));
    CHECK(m("**.push", "webhook.github.push"));
    CHECK(m("**.push", "push"));
    CHECK(m("**", "anything.at.all"));
    CHECK(m("a.**.z", "a.z"));
    CHECK(m("a.**.z", "a.b.c.z"));
    CHECK(!m("a.**.z", "a.b.c.y"));
    CHECK(m("**.b.**.d", "x.b.y.b.z.d"));
    CHECK(m("a.*.**", "a.b"));
    CHECK(!m("a.*.**", "a"));
    CHECK(m("ws.*,rpc.call", "rpc.call"));
    CHECK(m("ws.*,rpc.call", "ws.open"));
    CHECK(!m("ws.*,rpc.call", "lifecycle.start"));
}

TEST(bad_patterns_are_named)
{
    char err[256];
    CHECK_INT(0, pattern_check("collection.*,**.push,rpc.call", err, sizeof err));
    CHECK_INT(-1, pattern_check("", err, sizeof err));
    CHECK_INT(-1, pattern_check("a..b", err, sizeof err));
    CHECK(strstr(err, "empty segment") != NULL);
    CHECK_INT(-1, pattern_check("a,,b", err, sizeof err));
    CHECK(strstr(err, "pattern 2 is empty") != NULL);
    CHECK_INT(-1, pattern_check("rpc.Call", err, sizeof err));
    CHECK_INT(-1, pattern_check("rpc.c*", err, sizeof err));
    CHECK_INT(-1, pattern_check("***", err, sizeof err));
    CHECK_INT(-1, pattern_check("a.", err, sizeof err));
    char many[200] = "a";
    for (int i = 0; i < PATTERN_MAX_LIST; i++) strcat(many, ",a");
    CHECK_INT(-1, pattern_check(many, err, sizeof err));
    char longp[PATTERN_MAX_BYTES + 2];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = 0;
    CHECK_INT(-1, pattern_check(longp, err, sizeof err));
}
