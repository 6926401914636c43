/*
 * test_webhooks.c - the webhook module alone (server/webhooks.h): secrets and
 * their file, each provider's signature check and its refusals, the event of
 * a delivery (type mapping, dedup id, form bodies, Slack's challenge). The
 * providers' own libraries sign deliveries in tests/webhooks/providers.mjs.
 */
#include "codec.h"
#include "test.h"
#include "webhooks.h"

#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- deliveries: headers from a NULL-terminated name, value list ---- */

static const char *lookup(void *ud, const char *name)
{
    const char *const *h = ud;
    for (; h && h[0]; h += 2)
        if (!strcasecmp(h[0], name)) return h[1];
    return NULL;
}

static webhooks_delivery delivery(int provider, const char **headers, const char *body)
{
    return (webhooks_delivery){
        .provider = provider, .header = lookup, .ud = headers, .body = body, .n = strlen(body)};
}

static webhooks_secrets *secrets(int provider, const char *secret)
{
    webhooks_secrets *w = webhooks_secrets_new();
    char err[200];
    if (!w || webhooks_secrets_add(w, provider, secret, err, sizeof err)) abort();
    return w;
}

/* The hex HMAC of pre followed by body under key, into out[65]. */
static void sign_hex(const char *key, const char *pre, const char *body, char out[65])
{
    char msg[4096];
    snprintf(msg, sizeof msg, "%s%s", pre, body);
    unsigned char d[32];
    sha256_hmac(key, strlen(key), msg, strlen(msg), d);
    sha256_hex(d, out);
}

static const int64_t NOW = INT64_C(1795600800000); /* 2026-11-25T10:00:00Z */

/* ---- signatures ---- */

TEST(test_github_documented_example_verifies)
{
    /* GitHub's documentation's own example of X-Hub-Signature-256 */
    webhooks_secrets *w = secrets(WEBHOOKS_GITHUB, "It's a Secret to Everybody");
    const char *h[] = {"X-Hub-Signature-256",
                       "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
                       NULL};
    webhooks_delivery d = delivery(WEBHOOKS_GITHUB, h, "Hello, World!");
    char err[200] = "";
    CHECK_INT(0, webhooks_verify(&d, w, NOW, err, sizeof err));
    d.body = "Hello, World?";
    CHECK_INT(WEBHOOKS_EBAD, webhooks_verify(&d, w, NOW, err, sizeof err));
    webhooks_secrets_free(w);
}

TEST(test_any_secret_of_a_rotation_verifies)
{
    webhooks_secrets *w = secrets(WEBHOOKS_GITHUB, "new-secret");
    char err[200], sig[80] = "sha256=";
    CHECK_INT(0, webhooks_secrets_add(w, WEBHOOKS_GITHUB, "old-secret", err, sizeof err));
    sign_hex("old-secret", "", "{}", sig + 7);
    const char *h[] = {"X-Hub-Signature-256", sig, NULL};
    webhooks_delivery d = delivery(WEBHOOKS_GITHUB, h, "{}");
    CHECK_INT(0, webhooks_verify(&d, w, NOW, err, sizeof err));
    webhooks_secrets_free(w);
}

TEST(test_stripe_takes_any_v1_and_ignores_v0)
{
    webhooks_secrets *w = secrets(WEBHOOKS_STRIPE, "whsec_x");
    char good[65], hdr[300], err[200];
    long long t = NOW / 1000;
    char pre[32];
    snprintf(pre, sizeof pre, "%lld.", t);
    sign_hex("whsec_x", pre, "{}", good);
    snprintf(hdr, sizeof hdr, "t=%lld,v1=%064d,v0=%s,v1=%s", t, 0, good, good);
    const char *h[] = {"Stripe-Signature", hdr, NULL};
    webhooks_delivery d = delivery(WEBHOOKS_STRIPE, h, "{}");
    CHECK_INT(0, webhooks_verify(&d, w, NOW, err, sizeof err));
    snprintf(hdr, sizeof hdr, "t=%lld,v0=%s", t, good); /* v0 alone is no signature */
    CHECK_INT(WEBHOOKS_EBAD, webhooks_verify(&d, w, NOW, err, sizeof err));
    CHECK(strstr(err, "no v1=") != NULL);
    snprintf(hdr, sizeof hdr, "v1=%s", good);
    CHECK_INT(WEBHOOKS_EBAD, webhooks_verify(&d, w, NOW, err, sizeof err));
    CHECK(strstr(err, "no timestamp") != NULL);
    webhooks_secrets_free(w);
}

TEST(test_timestamps_outside_the_tolerance_are_refused_both_ways)
{
    webhooks_secrets *w = secrets(WEBHOOKS_SLACK, "slack");
    char ts[32], sig[80] = "v0=", pre[48], err[200];
    const char *h[] = {"X-Slack-Request-Timestamp", ts, "X-Slack-Signature", sig, NULL};
    webhooks_delivery d = delivery(WEBHOOKS_SLACK, h, "{}");
    static const struct {
        int64_t off_s;
        int rc;
    } cases[] = {{0, 0}, {-300, 0}, {300, 0}, {-301, WEBHOOKS_ESTALE}, {301, WEBHOOKS_EFUTURE}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(ts, sizeof ts, "%lld", (long long)(NOW / 1000 + cases[i].off_s));
        snprintf(pre, sizeof pre, "v0:%s:", ts);
        sign_hex("slack", pre, "{}", sig + 3);
        CHECK_INT(cases[i].rc, webhooks_verify(&d, w, NOW, err, sizeof err));
    }
    CHECK_STR("X-Slack-Request-Timestamp is 301 s in the future, past the 300 s tolerance", err);
    webhooks_secrets_free(w);
}

TEST(test_workos_timestamp_is_in_milliseconds_within_180_s)
{
    webhooks_secrets *w = secrets(WEBHOOKS_WORKOS, "wos");
    char hdr[200], sig[65], pre[48], err[200];
    const char *h[] = {"WorkOS-Signature", hdr, NULL};
    webhooks_delivery d = delivery(WEBHOOKS_WORKOS, h, "{\"event\":\"x\"}");
    for (int late = 0; late < 2; late++) {
        long long t = NOW - (late ? 181000 : 179000);
        snprintf(pre, sizeof pre, "%lld.", t);
        sign_hex("wos", pre, d.body, sig);
        snprintf(hdr, sizeof hdr, "t=%lld, v1=%s", t, sig);
        CHECK_INT(late ? WEBHOOKS_ESTALE : 0, webhooks_verify(&d, w, NOW, err, sizeof err));
    }
    webhooks_secrets_free(w);
}

TEST(test_linear_reads_webhook_timestamp_from_the_body)
{
    webhooks_secrets *w = secrets(WEBHOOKS_LINEAR, "lin");
    char body[200], sig[65], err[200];
    const char *h[] = {"Linear-Signature", sig, NULL};
    snprintf(body, sizeof body, "{\"type\":\"Issue\",\"webhookTimestamp\":%lld}",
             (long long)(NOW - 61000));
    webhooks_delivery d = delivery(WEBHOOKS_LINEAR, h, body);
    sign_hex("lin", "", body, sig);
    CHECK_INT(WEBHOOKS_ESTALE, webhooks_verify(&d, w, NOW, err, sizeof err));
    CHECK_INT(0, webhooks_verify(&d, w, NOW - 2000, err, sizeof err));
    d = delivery(WEBHOOKS_LINEAR, h, "{\"type\":\"Issue\"}");
    sign_hex("lin", "", d.body, sig);
    CHECK_INT(WEBHOOKS_EMISSING, webhooks_verify(&d, w, NOW, err, sizeof err));
    webhooks_secrets_free(w);
}

TEST(test_svix_key_is_the_base64_after_whsec)
{
    /* key "0123456789abcdef" (base64 MDEyMzQ1Njc4OWFiY2RlZg==) */
    webhooks_secrets *w = secrets(WEBHOOKS_SVIX, "whsec_MDEyMzQ1Njc4OWFiY2RlZg==");
    char ts[32], pre[80], sig[300], err[200];
    snprintf(ts, sizeof ts, "%lld", (long long)(NOW / 1000));
    snprintf(pre, sizeof pre, "msg_1.%s.", ts);
    unsigned char dg[32];
    char msg[200];
    snprintf(msg, sizeof msg, "%s{}", pre);
    sha256_hmac("0123456789abcdef", 16, msg, strlen(msg), dg);
    buf b = BUF_INIT;
    base64_encode(&b, dg, 32);
    snprintf(sig, sizeof sig, "v1,AAAA v1,%.*s", (int)b.len, b.p);
    buf_free(&b);
    const char *svix[] = {"svix-id", "msg_1", "svix-timestamp", ts, "svix-signature", sig, NULL};
    webhooks_delivery d = delivery(WEBHOOKS_SVIX, svix, "{}");
    CHECK_INT(0, webhooks_verify(&d, w, NOW, err, sizeof err));
    const char *std[] = {"webhook-id", "msg_1", "webhook-timestamp", ts, "webhook-signature",
                         sig,          NULL};
    d.ud = std;
    CHECK_INT(0, webhooks_verify(&d, w, NOW, err, sizeof err));
    CHECK_INT(-1, webhooks_secrets_add(w, WEBHOOKS_SVIX, "whsec_not base64!", err, sizeof err));
    webhooks_secrets_free(w);
}

TEST(test_missing_headers_and_secrets_are_named)
{
    webhooks_secrets *w = secrets(WEBHOOKS_GITHUB, "s");
    char err[200];
    const char *none[] = {NULL};
    webhooks_delivery d = delivery(WEBHOOKS_GITHUB, none, "{}");
    CHECK_INT(WEBHOOKS_EMISSING, webhooks_verify(&d, w, NOW, err, sizeof err));
    CHECK_STR("missing header X-Hub-Signature-256", err);
    d.provider = WEBHOOKS_STRIPE;
    CHECK_INT(WEBHOOKS_ENOSECRET, webhooks_verify(&d, w, NOW, err, sizeof err));
    const char *bad[] = {"X-Hub-Signature-256", "sha256=zz", NULL};
    d = delivery(WEBHOOKS_GITHUB, bad, "{}");
    CHECK_INT(WEBHOOKS_EBAD, webhooks_verify(&d, w, NOW, err, sizeof err));
    webhooks_secrets_free(w);
}

/* ---- secrets: file, environment, unsigned ---- */

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

TEST(test_secrets_file_refuses_bad_lines_by_number)
{
    char path[] = "/tmp/events-webhook-secrets-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"# c\n\ngithub=a\ngitlab=b\n", ":4: unknown provider \"gitlab\""},
        {"github=a\nstripe\n", ":2: expected provider=secret"},
        {"svix=whsec_!!\n", ":1: the svix secret is not whsec_ followed by base64"},
        {"slack=\n", ":1: the slack secret is empty"},
        {"# only a comment\n", "has no secrets"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_file(path, cases[i].text, 0600);
        webhooks_secrets *w = webhooks_secrets_new();
        char warn[200], err[400] = "";
        CHECK_INT(-1, webhooks_secrets_load(w, path, warn, sizeof warn, err, sizeof err));
        if (!strstr(err, cases[i].want))
            test_fail(__FILE__, __LINE__, "%s: got %s", cases[i].want, err);
        webhooks_secrets_free(w);
    }
    unlink(path);
}

TEST(test_secrets_file_loads_and_warns_when_world_readable)
{
    char path[] = "/tmp/events-webhook-secrets-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    write_file(path, "  # rotation\ngithub = one\ngithub=two=with=equals\n\nlinear=l\n", 0644);
    webhooks_secrets *w = webhooks_secrets_new();
    char warn[200], err[400] = "";
    CHECK_INT(0, webhooks_secrets_load(w, path, warn, sizeof warn, err, sizeof err));
    CHECK(strstr(warn, "can be read by every user") != NULL);
    CHECK(webhooks_has_secret(w, WEBHOOKS_GITHUB) && webhooks_has_secret(w, WEBHOOKS_LINEAR));
    CHECK(!webhooks_has_secret(w, WEBHOOKS_SLACK));
    webhooks_secrets_free(w);
    w = webhooks_secrets_new();
    CHECK_INT(-1, webhooks_secrets_load(w, "/tmp", warn, sizeof warn, err, sizeof err));
    CHECK(strstr(err, "it is a directory") != NULL);
    webhooks_secrets_free(w);
    unlink(path);
}

TEST(test_secrets_from_the_environment_and_unsigned_providers)
{
    webhooks_secrets *w = webhooks_secrets_new();
    char err[200];
    setenv("EVENTS_WEBHOOK_SECRET_WORKOS", "from-env", 1);
    CHECK_INT(0, webhooks_secrets_env(w, err, sizeof err));
    unsetenv("EVENTS_WEBHOOK_SECRET_WORKOS");
    CHECK(webhooks_has_secret(w, WEBHOOKS_WORKOS));
    CHECK_INT(0, webhooks_allow_unsigned(w, "slack,linear", err, sizeof err));
    CHECK(webhooks_unsigned_allowed(w, WEBHOOKS_LINEAR) &&
          !webhooks_unsigned_allowed(w, WEBHOOKS_GITHUB));
    CHECK_INT(-1, webhooks_allow_unsigned(w, "slack,gitlab", err, sizeof err));
    CHECK(strstr(err, "unknown provider \"gitlab\"") != NULL);
    webhooks_secrets_free(w);
}

/* ---- the event ---- */

TEST(test_type_mapping)
{
    static const struct {
        int p;
        const char *raw, *want;
    } cases[] = {
        {WEBHOOKS_GITHUB, "pull_request.opened", "webhook.github.pull_request.opened"},
        {WEBHOOKS_LINEAR, "IssueLabel.create", "webhook.linear.issue_label.create"},
        {WEBHOOKS_STRIPE, "customer.subscription.created",
         "webhook.stripe.customer.subscription.created"},
        {WEBHOOKS_SLACK, "appMention", "webhook.slack.app_mention"},
        {WEBHOOKS_SVIX, "HTTPServer v2Event", "webhook.svix.httpserver_v2_event"},
        {WEBHOOKS_SVIX, "a..b.", "webhook.svix.a.b"},
        {WEBHOOKS_SVIX, "x/y:z", "webhook.svix.x_y_z"},
        {WEBHOOKS_WORKOS, "", "webhook.workos.unknown"},
        {WEBHOOKS_WORKOS, "...", "webhook.workos.unknown"},
    };
    char out[EVENT_TYPE_MAX + 1];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        webhooks_map_type(cases[i].p, cases[i].raw, strlen(cases[i].raw), out);
        CHECK_STR(cases[i].want, out);
    }
    char longer[400];
    memset(longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = 0;
    webhooks_map_type(WEBHOOKS_GITHUB, longer, strlen(longer), out);
    CHECK_INT(EVENT_TYPE_MAX, strlen(out));
    CHECK(event_type_valid(out, strlen(out)));
}

TEST(test_dedup_id_is_the_delivery_id_or_its_hash)
{
    char out[EVENT_ID_MAX + 1];
    webhooks_dedup_id(WEBHOOKS_GITHUB, "72d3162e-cc78-11e3", 18, out);
    CHECK_STR("wh_github_72d3162e-cc78-11e3", out);
    const char *odd = "evt with spaces/and slashes";
    webhooks_dedup_id(WEBHOOKS_STRIPE, odd, strlen(odd), out);
    CHECK_INT(strlen("wh_stripe_") + 32, strlen(out));
    CHECK(event_id_valid(out, strlen(out)));
    char longer[100];
    memset(longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = 0;
    webhooks_dedup_id(WEBHOOKS_SVIX, longer, strlen(longer), out);
    CHECK_INT(strlen("wh_svix_") + 32, strlen(out));
}

TEST(test_event_of_a_github_delivery)
{
    const char *h[] = {"X-GitHub-Event", "issues", "X-GitHub-Delivery", "d-1", NULL};
    webhooks_delivery d = delivery(WEBHOOKS_GITHUB, h, " {\"action\":\"closed\"} ");
    webhooks_event ev = {.json = BUF_INIT};
    char err[200];
    CHECK_INT(0, webhooks_make_event(&d, 1, NOW, &ev, err, sizeof err));
    CHECK_STR("wh_github_d-1", ev.id);
    CHECK_STR("webhook.github.issues.closed", ev.type);
    CHECK_STR("{\"id\":\"wh_github_d-1\",\"type\":\"webhook.github.issues.closed\",\"webhook\":{"
              "\"provider\":\"github\",\"deliveryId\":\"d-1\",\"verified\":true,\"receivedAt\":"
              "\"2026-11-25T10:00:00.000Z\"},\"payload\": {\"action\":\"closed\"} }",
              buf_cstr(&ev.json));
    buf_free(&ev.json);
}

TEST(test_event_of_a_form_body_and_refused_bodies)
{
    const char *none[] = {NULL};
    webhooks_delivery d =
        delivery(WEBHOOKS_SLACK, none, "payload=%7B%22type%22%3A%22block_actions%22%7D&x=a+b");
    d.form = 1;
    webhooks_event ev = {.json = BUF_INIT};
    char err[200];
    CHECK_INT(0, webhooks_make_event(&d, 0, NOW, &ev, err, sizeof err));
    CHECK_STR("webhook.slack.block_actions", ev.type);
    CHECK_STR("", ev.id); /* no event_id: the server's own id */
    CHECK(strstr(buf_cstr(&ev.json),
                 "\"payload\":{\"payload\":{\"type\":\"block_actions\"},\"x\":\"a b\"}") != NULL);
    buf_free(&ev.json);
    d = delivery(WEBHOOKS_SLACK, none, "x=%zz");
    d.form = 1;
    CHECK_INT(WEBHOOKS_EBODY, webhooks_make_event(&d, 0, NOW, &ev, err, sizeof err));
    d = delivery(WEBHOOKS_SLACK, none, "{\"a\":1} trailing");
    CHECK_INT(WEBHOOKS_EBODY, webhooks_make_event(&d, 0, NOW, &ev, err, sizeof err));
    CHECK_STR("the body is not JSON", err);
    buf_free(&ev.json);
}

TEST(test_slack_url_verification_is_answered_its_challenge)
{
    const char *none[] = {NULL};
    webhooks_delivery d =
        delivery(WEBHOOKS_SLACK, none, "{\"type\":\"url_verification\",\"challenge\":\"c1\"}");
    webhooks_event ev = {.json = BUF_INIT};
    char err[200];
    CHECK_INT(0, webhooks_make_event(&d, 1, NOW, &ev, err, sizeof err));
    CHECK_INT(1, ev.challenge);
    CHECK_STR("{\"challenge\":\"c1\"}", buf_cstr(&ev.json));
    buf_free(&ev.json);
}

TEST(test_linear_without_delivery_header_gets_an_id_from_the_body)
{
    const char *none[] = {NULL};
    webhooks_delivery d = delivery(WEBHOOKS_LINEAR, none,
                                   "{\"type\":\"Issue\",\"action\":\"update\",\"webhookId\":\"w1\","
                                   "\"data\":{\"id\":\"i1\"},\"createdAt\":\"2026-01-01T00:00Z\"}");
    webhooks_event ev = {.json = BUF_INIT};
    char err[200];
    CHECK_INT(0, webhooks_make_event(&d, 1, NOW, &ev, err, sizeof err));
    CHECK_STR("wh_linear_w1:i1:2026-01-01T00:00Z", ev.id);
    CHECK_STR("webhook.linear.issue.update", ev.type);
    buf_free(&ev.json);
}

/* SHA-256 of a million 'a' (FIPS 180-2's long example), fed whole and in pieces that split
 * blocks every way: the x86 SHA extensions' path and the portable one agree with it. */
TEST(sha256_of_a_million_a_in_any_pieces)
{
    static char a[1000000];
    memset(a, 'a', sizeof a);
    static const size_t pieces[] = {1000000, 1, 63, 64, 65, 1000};
    for (size_t k = 0; k < sizeof pieces / sizeof *pieces; k++) {
        sha256 s;
        sha256_init(&s);
        for (size_t i = 0; i < sizeof a; i += pieces[k])
            sha256_update(&s, a + i, i + pieces[k] < sizeof a ? pieces[k] : sizeof a - i);
        unsigned char d[32];
        char hex[65];
        sha256_final(&s, d);
        sha256_hex(d, hex);
        CHECK_STR("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", hex);
    }
}
