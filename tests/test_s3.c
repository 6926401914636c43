/*
 * test_s3.c - the lake on S3-compatible object storage, against a real one:
 * Ceph's radosgw on loopback (scripts/s3-test-server), which checks
 * signatures, payload hashes and conditional writes as S3, R2 and MinIO do.
 *
 * The store contract runs here on both backends; then what only S3 has
 * (multipart, pagination, conditional races, refused credentials), and the
 * server on an s3 lake end to end, with faults and two servers on a bucket.
 */
#include "harness.h"
#include "store.h"
#include "test.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static int s3_ready(void)
{
    static int state; /* 0 unknown, 1 up, -1 failed */
    if (!state) state = s3_start() ? -1 : 1;
    return state == 1;
}

/* A store on a fresh prefix of the test bucket. */
static store *s3_store_open(const char *tag)
{
    static int n;
    char url[300], err[512];
    snprintf(url, sizeof url, "s3://%s/%s-%d-%d", getenv("EVENTS_S3_BUCKET"), tag, (int)getpid(), n++);
    store *s = NULL;
    if (store_open(url, &s, err, sizeof err)) test_fail(__FILE__, __LINE__, "%s", err);
    return s;
}

/* ---- the contract: both backends ------------------------------------------------------- */

typedef struct listed {
    char keys[64][128];
    uint64_t sizes[64];
    int n;
} listed;

static int on_list(const store_entry *e, void *ud)
{
    listed *l = ud;
    if (l->n < 64) {
        snprintf(l->keys[l->n], 128, "%s", e->key);
        l->sizes[l->n] = e->size;
        l->n++;
    }
    return 0;
}

static void store_contract(store *s)
{
    buf b = BUF_INIT;
    CHECK_INT(STORE_OK, store_put(s, "events/2026/11/25/10/a.jsonl", "hello\n", 6, 0));
    CHECK_INT(STORE_OK, store_put(s, "events/2026/11/25/10/b.jsonl", "world!\n", 7, 0));
    CHECK_INT(STORE_OK, store_put(s, "events/2026/11/25/11/c.jsonl", "x", 1, 0));
    CHECK_INT(STORE_OK, store_put(s, "events-other/z", "z", 1, 0));
    CHECK_INT(STORE_OK, store_put(s, "snapshots/src/1.db", "db", 2, 0));
    CHECK_INT(STORE_OK, store_put(s, "odd/a b+c%=ü&.jsonl", "odd", 3, 0)); /* signed paths, encoded */
    CHECK_INT(STORE_OK, store_put(s, "empty/nothing", "", 0, 0));

    CHECK_INT(STORE_OK, store_get(s, "events/2026/11/25/10/a.jsonl", 0, 0, &b));
    CHECK(b.len == 6 && !memcmp(b.p, "hello\n", 6));
    b.len = 0;
    CHECK_INT(STORE_OK, store_get(s, "events/2026/11/25/10/b.jsonl", 2, 3, &b));
    CHECK(b.len == 3 && !memcmp(b.p, "rld", 3));
    b.len = 0;
    CHECK_INT(STORE_OK, store_get(s, "events/2026/11/25/10/b.jsonl", 4, 0, &b));
    CHECK(b.len == 3 && !memcmp(b.p, "d!\n", 3));
    b.len = 0;
    CHECK_INT(STORE_OK, store_get(s, "odd/a b+c%=ü&.jsonl", 0, 0, &b));
    CHECK(b.len == 3 && !memcmp(b.p, "odd", 3));
    b.len = 0;
    CHECK_INT(STORE_OK, store_get(s, "empty/nothing", 0, 0, &b));
    CHECK_INT(0, b.len);
    CHECK_INT(STORE_ENOENT, store_get(s, "events/none", 0, 0, &b));
    CHECK_CONTAINS("events/none", store_errmsg());

    store_entry e;
    CHECK_INT(STORE_OK, store_head(s, "events/2026/11/25/10/b.jsonl", &e));
    CHECK_INT(7, e.size);
    CHECK(e.mtime_ms > 0);
    CHECK_INT(STORE_ENOENT, store_head(s, "events/2026/11/25/10/zzz", &e));

    listed l = {0};
    CHECK_INT(STORE_OK, store_list(s, "events/", on_list, &l));
    REQUIRE_INT(3, l.n);
    CHECK_STR("events/2026/11/25/10/a.jsonl", l.keys[0]);
    CHECK_STR("events/2026/11/25/10/b.jsonl", l.keys[1]);
    CHECK_STR("events/2026/11/25/11/c.jsonl", l.keys[2]);
    CHECK_INT(7, l.sizes[1]);
    memset(&l, 0, sizeof l);
    CHECK_INT(STORE_OK, store_list(s, "events/2026/11/25/1", on_list, &l));
    CHECK_INT(3, l.n);
    memset(&l, 0, sizeof l);
    CHECK_INT(STORE_OK, store_list(s, "events", on_list, &l)); /* a prefix, not a directory */
    CHECK_INT(4, l.n);
    CHECK_STR("events-other/z", l.keys[0]); /* '-' sorts before '/' */
    memset(&l, 0, sizeof l);
    CHECK_INT(STORE_OK, store_list(s, "odd/", on_list, &l));
    CHECK_INT(1, l.n);
    CHECK_STR("odd/a b+c%=ü&.jsonl", l.keys[0]);
    memset(&l, 0, sizeof l);
    CHECK_INT(STORE_OK, store_list(s, "nothing/", on_list, &l));
    CHECK_INT(0, l.n);

    /* a conditional put: exactly one of two writers wins */
    CHECK_INT(STORE_OK, store_put(s, "leases/compact", "a", 1, STORE_IF_ABSENT));
    CHECK_INT(STORE_EEXIST, store_put(s, "leases/compact", "b", 1, STORE_IF_ABSENT));
    b.len = 0;
    CHECK_INT(STORE_OK, store_get(s, "leases/compact", 0, 0, &b));
    CHECK(b.len == 1 && b.p[0] == 'a');
    /* an unconditional put replaces */
    CHECK_INT(STORE_OK, store_put(s, "leases/compact", "bb", 2, 0));
    CHECK_INT(STORE_OK, store_head(s, "leases/compact", &e));
    CHECK_INT(2, e.size);

    CHECK_INT(STORE_OK, store_del(s, "events/2026/11/25/11/c.jsonl"));
    CHECK_INT(STORE_ENOENT, store_head(s, "events/2026/11/25/11/c.jsonl", &e));
    CHECK_INT(STORE_OK, store_del(s, "events/2026/11/25/11/c.jsonl")); /* again: nothing to do */

    CHECK_INT(STORE_EINVAL, store_put(s, "../escape", "x", 1, 0));
    CHECK_INT(STORE_EINVAL, store_put(s, "/abs", "x", 1, 0));
    CHECK_INT(STORE_EINVAL, store_put(s, "a//b", "x", 1, 0));

    /* put_file with STORE_MOVE takes the file */
    char *dir = test_tmpdir("contract");
    char src[4200];
    snprintf(src, sizeof src, "%s/src.tmp", dir);
    FILE *f = fopen(src, "w");
    fputs("moved\n", f);
    fclose(f);
    CHECK_INT(STORE_OK, store_put_file(s, "events/2026/01/01/00/m.jsonl", src, STORE_MOVE));
    CHECK(access(src, F_OK) != 0);
    b.len = 0;
    CHECK_INT(STORE_OK, store_get(s, "events/2026/01/01/00/m.jsonl", 0, 0, &b));
    CHECK(b.len == 6 && !memcmp(b.p, "moved\n", 6));
    /* a conditional put_file that loses keeps its file */
    f = fopen(src, "w");
    fputs("other\n", f);
    fclose(f);
    CHECK_INT(STORE_EEXIST, store_put_file(s, "events/2026/01/01/00/m.jsonl", src, STORE_MOVE | STORE_IF_ABSENT));
    CHECK(access(src, F_OK) == 0);
    test_rmtree(dir);
    free(dir);
    buf_free(&b);
}

TEST(store_contract_fs)
{
    char *dir = test_tmpdir("store-fs");
    store *s;
    char err[256];
    REQUIRE_INT(0, store_open(dir, &s, err, sizeof err));
    store_contract(s);
    store_close(s);
    test_rmtree(dir);
    free(dir);
}

TEST(store_contract_s3)
{
    REQUIRE(s3_ready());
    store *s = s3_store_open("contract");
    REQUIRE(s);
    store_contract(s);
    CHECK(!strncmp(s->url, "s3://", 5) && strstr(s->url, getenv("EVENTS_S3_BUCKET")));
    store_close(s);
}

/* ---- what only S3 has ------------------------------------------------------------------------ */

TEST(s3_refuses_bad_credentials_and_buckets_clearly)
{
    REQUIRE(s3_ready());
    char url[300], err[512];
    store *s;
    char *saved = strdup(getenv("AWS_SECRET_ACCESS_KEY"));
    setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret", 1);
    snprintf(url, sizeof url, "s3://%s/x", getenv("EVENTS_S3_BUCKET"));
    CHECK_INT(-1, store_open(url, &s, err, sizeof err));
    CHECK_CONTAINS("the credentials are refused (HTTP 403 SignatureDoesNotMatch)", err);
    setenv("AWS_SECRET_ACCESS_KEY", saved, 1);
    free(saved);
    CHECK_INT(-1, store_open("s3://no-such-bucket-here/x", &s, err, sizeof err));
    CHECK_CONTAINS("no such bucket", err);
    char *key = strdup(getenv("AWS_ACCESS_KEY_ID"));
    unsetenv("AWS_ACCESS_KEY_ID");
    CHECK_INT(-1, store_open(url, &s, err, sizeof err));
    CHECK_CONTAINS("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are required", err);
    setenv("AWS_ACCESS_KEY_ID", key, 1);
    free(key);
    char *ep = strdup(getenv("AWS_ENDPOINT_URL"));
    setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1", 1);
    CHECK_INT(-1, store_open(url, &s, err, sizeof err));
    CHECK_CONTAINS("cannot reach http://127.0.0.1:1", err);
    setenv("AWS_ENDPOINT_URL", ep, 1);
    free(ep);
    CHECK_INT(-1, store_open("s3:///x", &s, err, sizeof err));
    CHECK_CONTAINS("expected s3://bucket", err);
}

/* The server is strict: a wrong payload hash is refused (so ours, which pass, are right). */
TEST(s3_server_checks_the_payload_hash)
{
    REQUIRE(s3_ready());
    char url[400];
    snprintf(url, sizeof url, "%s/%s/hash-check", getenv("AWS_ENDPOINT_URL"), getenv("EVENTS_S3_BUCKET"));
    int rc = sh("test \"$(curl -s -o /dev/null -w '%%{http_code}' --aws-sigv4 aws:amz:%s:s3 --user '%s:%s' "
                "-H 'x-amz-content-sha256: %s' -X PUT --data-binary hello '%s')\" -ge 400",
                getenv("AWS_REGION"), getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"),
                "0000000000000000000000000000000000000000000000000000000000000000", url);
    CHECK_INT(0, rc);
}

typedef struct racer {
    store *s;
    int id, rc;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    char v[16];
    snprintf(v, sizeof v, "writer-%d", r->id);
    r->rc = store_put(r->s, "leases/race", v, strlen(v), STORE_IF_ABSENT);
    return NULL;
}

TEST(s3_conditional_puts_have_one_winner)
{
    REQUIRE(s3_ready());
    store *s = s3_store_open("race");
    REQUIRE(s);
    for (int round = 0; round < 3; round++) {
        store_del(s, "leases/race");
        racer r[8];
        pthread_t t[8];
        for (int i = 0; i < 8; i++) r[i] = (racer){s, i, 99}, pthread_create(&t[i], NULL, race, &r[i]);
        int won = -1, wins = 0, lost = 0;
        for (int i = 0; i < 8; i++) {
            pthread_join(t[i], NULL);
            if (r[i].rc == STORE_OK) wins++, won = i;
            if (r[i].rc == STORE_EEXIST) lost++;
        }
        CHECK_INT(1, wins);
        CHECK_INT(7, lost);
        buf b = BUF_INIT;
        CHECK_INT(STORE_OK, store_get(s, "leases/race", 0, 0, &b));
        char want[16];
        snprintf(want, sizeof want, "writer-%d", won);
        CHECK(b.len == strlen(want) && !memcmp(b.p, want, b.len));
        buf_free(&b);
    }
    store_close(s);
}

typedef struct order {
    int seen, ordered;
    char prev[128];
} order;

static int in_order(const store_entry *e, void *ud)
{
    order *o = ud;
    if (o->seen && strcmp(o->prev, e->key) >= 0) o->ordered = 0;
    snprintf(o->prev, sizeof o->prev, "%s", e->key);
    o->seen++;
    return 0;
}

TEST(s3_multipart_and_pagination)
{
    REQUIRE(s3_ready());
    setenv("EVENTS_S3_MULTIPART_ABOVE", "6000000", 1);
    setenv("EVENTS_S3_LIST_PAGE", "50", 1);
    store *s = s3_store_open("multipart");
    unsetenv("EVENTS_S3_MULTIPART_ABOVE");
    unsetenv("EVENTS_S3_LIST_PAGE");
    REQUIRE(s);
    /* 12 MiB + 3 bytes: three parts of 5 MiB (the minimum), the last short */
    size_t n = (12u << 20) + 3;
    char *data = malloc(n);
    for (size_t i = 0; i < n; i++) data[i] = (char)(i * 131 + (i >> 20));
    CHECK_INT(STORE_OK, store_put(s, "big/one.bin", data, n, 0));
    char *dir = test_tmpdir("mp");
    char path[1200];
    snprintf(path, sizeof path, "%s/f.bin", dir);
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
    CHECK_INT(STORE_OK, store_put_file(s, "big/two.bin", path, STORE_MOVE));
    CHECK(access(path, F_OK) != 0);
    store_entry e;
    CHECK_INT(STORE_OK, store_head(s, "big/two.bin", &e));
    CHECK_INT(n, e.size);
    buf b = BUF_INIT;
    CHECK_INT(STORE_OK, store_get(s, "big/one.bin", 0, 0, &b));
    CHECK(b.len == n && !memcmp(b.p, data, n));
    b.len = 0;
    CHECK_INT(STORE_OK, store_get(s, "big/two.bin", (5u << 20) - 10, 20, &b)); /* across a part boundary */
    CHECK(b.len == 20 && !memcmp(b.p, data + (5u << 20) - 10, 20));
    b.len = 0;
    CHECK_INT(STORE_EEXIST, store_put(s, "big/one.bin", data, n, STORE_IF_ABSENT));
    /* 130 keys in pages of 50 */
    for (int i = 0; i < 130; i++) {
        char k[64];
        snprintf(k, sizeof k, "many/k%03d", i);
        CHECK_INT(STORE_OK, store_put(s, k, "v", 1, 0));
    }
    order o = {0, 1, ""};
    CHECK_INT(STORE_OK, store_list(s, "many/", in_order, &o));
    CHECK_INT(130, o.seen);
    CHECK(o.ordered);
    buf_free(&b);
    free(data);
    test_rmtree(dir);
    free(dir);
    store_close(s);
}

