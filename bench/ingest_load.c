/*
 * ingest_load.c - a load generator for POST /ingest, on libcurl's multi
 * interface.
 *
 * One thread drives N keep-alive connections. Each connection owns one easy
 * handle and one request body of B events built once at start; before every
 * request only the fixed-width digits of each event's id sequence number and
 * timestamp are patched in, so the generator spends its CPU on the socket,
 * not on formatting JSON (it shares the machine with the server it loads).
 *
 * Ids are "<prefix>-<connection>-<seq>" with seq zero-padded to ten digits
 * and counting up per connection, so they are unique across the run as long
 * as the prefix is unique per run. A request is acknowledged only when the
 * answer is 200 and says "accepted":B; only then are its ids written to
 * --ids-out (after the measurement, from a compact list of (connection, first
 * seq) pairs), so a caller can check that the lake holds exactly those ids.
 *
 * Latency is curl's own view of one request: from the first byte sent
 * (pretransfer) to the last byte of the answer, kept in a log-linear
 * histogram with under 1.6% error. With --rate the k-th request is due at
 * start + k/rate; a request that cannot start on time (every connection busy)
 * starts as soon as one is free, so the offered rate is an upper bound.
 *
 * Every loop is bounded: the run stops starting requests at --duration or
 * --max-requests, and waits for the ones in flight at most --timeout more.
 *
 * Exit: 0 every request acknowledged; 1 some were not (non-200, transport
 * error, or a short "accepted"); 2 usage; 3 setup or output failure.
 */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <zlib.h>

#define SEQ_DIGITS      10
#define TS_DIGITS       13
#define MAX_CONNECTIONS 4096
#define MAX_BATCH       10000
#define MAX_PREFIX      32

/* ---- options ------------------------------------------------------------- */

typedef struct options {
    const char *url;
    const char *token;
    const char *prefix;
    const char *ids_out;
    const char *unacked_out;
    long connections;
    long batch;
    double duration_s;
    double rate;           /* requests/s over all connections; 0: as fast as possible */
    uint64_t max_requests; /* 0: no limit */
    long timeout_s;
    int gzip;
} options;

static void usage(FILE *f)
{
    fputs("Usage: ingest_load --url http://HOST:PORT/ingest --connections N --batch B --duration "
          "SECONDS\n"
          "                   [--token T] [--gzip] [--id-prefix P] [--rate REQ_PER_S]\n"
          "                   [--max-requests N] [--timeout SECONDS] [--ids-out FILE] "
          "[--unacked-out FILE]\n"
          "\n"
          "Posts {\"events\":[...]} bodies of B events over N keep-alive connections for a fixed "
          "time\n"
          "and prints one line of figures (logfmt) on stdout.\n"
          "  --rate          total requests/s over all connections (default: as fast as possible)\n"
          "  --max-requests  also stop after starting this many requests\n"
          "  --timeout       per-request limit, and the longest wait for in-flight requests at the "
          "end (default 30)\n"
          "  --id-prefix     event ids are PREFIX-CONNECTION-SEQ (default \"load\"; "
          "[0-9A-Za-z_.:], at most 32)\n"
          "  --ids-out       write the ids of acknowledged events, one per line\n"
          "  --unacked-out   write the ids of events sent in requests that were not acknowledged\n"
          "  --gzip          send bodies gzip-compressed (zlib level 1, compressed per request)\n",
          f);
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

static int prefix_valid(const char *p)
{
    size_t n = strlen(p);
    if (n < 1 || n > MAX_PREFIX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '_' || c == '.' || c == ':'))
            return 0;
    }
    return 1;
}

/* Returns 0, or 2 after printing why. */
static int parse_options(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->prefix = "load";
    o->timeout_s = 30;
    o->duration_s = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "--gzip")) {
            o->gzip = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ingest_load: %s needs a value (or is unknown)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        long l;
        if (!strcmp(a, "--url"))
            o->url = v;
        else if (!strcmp(a, "--token"))
            o->token = v;
        else if (!strcmp(a, "--id-prefix"))
            o->prefix = v;
        else if (!strcmp(a, "--ids-out"))
            o->ids_out = v;
        else if (!strcmp(a, "--unacked-out"))
            o->unacked_out = v;
        else if (!strcmp(a, "--connections")) {
            if (parse_long(v, 1, MAX_CONNECTIONS, &o->connections)) goto bad;
        } else if (!strcmp(a, "--batch")) {
            if (parse_long(v, 1, MAX_BATCH, &o->batch)) goto bad;
        } else if (!strcmp(a, "--duration")) {
            if (parse_double(v, 0.001, 86400, &o->duration_s)) goto bad;
        } else if (!strcmp(a, "--rate")) {
            if (parse_double(v, 0.001, 1e9, &o->rate)) goto bad;
        } else if (!strcmp(a, "--max-requests")) {
            if (parse_long(v, 1, 1000000000000L, &l)) goto bad;
            o->max_requests = (uint64_t)l;
        } else if (!strcmp(a, "--timeout")) {
            if (parse_long(v, 1, 3600, &o->timeout_s)) goto bad;
        } else {
            fprintf(stderr, "ingest_load: unknown option %s\n", a);
            return 2;
        }
        continue;
    bad:
        fprintf(stderr, "ingest_load: bad value \"%s\" for %s\n", v, a);
        return 2;
    }
    if (!o->url || !o->connections || !o->batch || o->duration_s < 0) {
        fprintf(stderr, "ingest_load: --url, --connections, --batch and --duration are required\n");
        usage(stderr);
        return 2;
    }
    if (!prefix_valid(o->prefix)) {
        fprintf(stderr, "ingest_load: --id-prefix must be 1-%d characters of [0-9A-Za-z_.:]\n",
                MAX_PREFIX);
        return 2;
    }
    return 0;
}

/* ---- small helpers ------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t epoch_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Writes v as exactly n decimal digits (the low ones). */
static void put_digits(char *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* A growable string; sb_printf returns -1 when out of memory. */
typedef struct sb {
    char *p;
    size_t len, cap;
} sb;

static int sb_reserve(sb *s, size_t more)
{
    if (s->len + more + 1 <= s->cap) return 0;
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < s->len + more + 1) cap *= 2;
    char *p = realloc(s->p, cap);
    if (!p) return -1;
    s->p = p, s->cap = cap;
    return 0;
}

__attribute__((format(printf, 2, 3))) static int sb_printf(sb *s, const char *fmt, ...)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(s->p ? s->p + s->len : NULL, s->p ? s->cap - s->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return -1;
        if (s->p && s->len + (size_t)n < s->cap) {
            s->len += (size_t)n;
            return 0;
        }
        if (sb_reserve(s, (size_t)n)) return -1;
    }
    return -1;
}

/* xorshift64*: deterministic content, so runs are comparable. */
static uint64_t rnd_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static unsigned rnd_below(uint64_t *s, unsigned n)
{
    return (unsigned)(rnd_next(s) % n);
}

/* ---- latency histogram --------------------------------------------------- */

/*
 * Log-linear: values below 128 us are exact; above, each power of two is
 * split into 64 buckets. Indexes stay below 64 * 64 for any uint64 below 2^62.
 */
#define H_SUB     64
#define H_BUCKETS (64 * H_SUB)

typedef struct histo {
    uint64_t b[H_BUCKETS];
    uint64_t count, max;
} histo;

static unsigned h_index(uint64_t v)
{
    if (v >= (1ULL << 62)) v = (1ULL << 62) - 1;
    if (v < 2 * H_SUB) return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - 6;
    return (shift + 1) * H_SUB + (unsigned)((v >> shift) - H_SUB);
}

/* The highest value that falls into bucket i. */
static uint64_t h_upper(unsigned i)
{
    if (i < 2 * H_SUB) return i;
    unsigned shift = i / H_SUB - 1;
    uint64_t sub = i % H_SUB + H_SUB;
    return ((sub + 1) << shift) - 1;
}

static void h_add(histo *h, uint64_t v)
{
    h->b[h_index(v)]++;
    h->count++;
    if (v > h->max) h->max = v;
}

static uint64_t h_quantile(const histo *h, double q)
{
    if (!h->count) return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->count), seen = 0;
    if (rank < 1) rank = 1;
    for (unsigned i = 0; i < H_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t u = h_upper(i);
            return u < h->max ? u : h->max;
        }
    }
    return h->max;
}

/* ---- requests ------------------------------------------------------------ */

/* The first seq of one request's events, on one connection. */
typedef struct sent {
    uint32_t conn;
    uint64_t seq0;
} sent;

typedef struct sent_list {
    sent *v;
    size_t n, cap;
} sent_list;

static int sent_push(sent_list *l, uint32_t conn, uint64_t seq0)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4096;
        sent *v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v, l->cap = cap;
    }
    l->v[l->n++] = (sent){conn, seq0};
    return 0;
}

typedef struct conn {
    uint32_t index;
    CURL *easy;
    int busy;
    uint64_t seq;      /* the next event's sequence number */
    uint64_t seq0;     /* the first seq of the request in flight */
    sb body;           /* the JSON body; ids and ts patched per request */
    uint32_t *seq_at;  /* offset of each event's seq digits in body */
    uint32_t *ts_at;   /* offset of each event's ts digits in body */
    unsigned char *gz; /* compressed body, with --gzip */
    size_t gz_len, gz_cap;
    size_t sent_len; /* body bytes of the request in flight, as sent */
    z_stream zs;
    int zs_ready;
    char resp[1024]; /* the start of the answer; accepted and duplicates come first */
    size_t resp_len;
} conn;

typedef struct run {
    options o;
    CURLM *multi;
    struct curl_slist *headers;
    conn *c;
    histo lat;
    uint64_t started, completed, acked_requests, acked_events, dup_requests, dup_events, short_ack;
    uint64_t transport_errors, connects, body_bytes, raw_bytes;
    long busy;            /* connections with a request in flight */
    uint64_t status[600]; /* status[0]: no HTTP answer */
    sent_list acked, unacked;
    char ts[TS_DIGITS];
} run;

static volatile sig_atomic_t stop_requested;
static void on_signal(int sig)
{
    (void)sig, stop_requested = 1;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    conn *c = ud;
    size_t len = size * n, room = sizeof c->resp - 1 - c->resp_len;
    size_t take = len < room ? len : room;
    memcpy(c->resp + c->resp_len, p, take);
    c->resp_len += take;
    c->resp[c->resp_len] = 0;
    return len;
}

static const char *const colos[] = {"AMS", "FRA", "LHR", "CDG", "IAD", "SJC", "NRT", "SIN"};
static const char *const methods[] = {"getProfile", "sendMessage", "listRooms", "updateCart",
                                      "checkout",   "heartbeat",   "fetchFeed", "setPresence"};
static const char *const namespaces[] = {"users", "chat", "rooms", "cart", "billing", "presence"};
static const char *const classes[] = {"ChatRoom", "UserSession", "Cart", "RateLimiter"};
static const char *const collections[] = {"messages", "orders", "profiles", "carts"};

/*
 * Builds c's body: B events of a realistic mix, each ~300 bytes, with
 * zeroed seq and ts digits whose offsets are remembered for patching.
 */
static int build_body(run *r, conn *c)
{
    uint64_t rs = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)c->index * 0xBF58476D1CE4E5B9ULL);
    sb *b = &c->body;
    long n = r->o.batch;
    c->seq_at = calloc((size_t)n, sizeof *c->seq_at);
    c->ts_at = calloc((size_t)n, sizeof *c->ts_at);
    if (!c->seq_at || !c->ts_at) return -1;
    if (sb_printf(b, "{\"events\":[")) return -1;
    for (long i = 0; i < n; i++) {
        if (sb_printf(b, "%s{\"id\":\"%s-%u-", i ? "," : "", r->o.prefix, c->index)) return -1;
        c->seq_at[i] = (uint32_t)b->len;
        if (sb_printf(b, "%0*d", SEQ_DIGITS, 0)) return -1;
        unsigned kind =
            rnd_below(&rs, 10); /* 5 rpc.call, 2 collection.update, 2 ws.message, 1 do.alarm */
        const char *type = kind < 5   ? "rpc.call"
                           : kind < 7 ? "collection.update"
                           : kind < 9 ? "ws.message"
                                      : "do.alarm";
        if (sb_printf(b, "\",\"type\":\"%s\",\"ts\":", type)) return -1;
        c->ts_at[i] = (uint32_t)b->len;
        if (sb_printf(b, "%0*d", TS_DIGITS, 0)) return -1;
        unsigned cls = rnd_below(&rs, 4), obj = rnd_below(&rs, 64);
        uint64_t h1 = rnd_next(&rs), h2 = rnd_next(&rs);
        if (sb_printf(b,
                      ",\"do\":{\"id\":\"%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64
                      "\","
                      "\"name\":\"%s-%u\",\"class\":\"%s\",\"colo\":\"%s\"}",
                      h1, h2, h1 ^ h2, h2 * 31, classes[cls], obj, classes[cls],
                      colos[rnd_below(&rs, 8)]))
            return -1;
        int e;
        if (kind < 5) {
            unsigned ok = rnd_below(&rs, 50) != 0;
            e = sb_printf(
                b,
                ",\"method\":\"%s\",\"namespace\":\"%s\",\"durationMs\":%u.%u,\"success\":%s,"
                "\"requestId\":\"req_%08x\"}",
                methods[rnd_below(&rs, 8)], namespaces[rnd_below(&rs, 6)], rnd_below(&rs, 80),
                rnd_below(&rs, 10), ok ? "true" : "false", (unsigned)rnd_next(&rs));
        } else if (kind < 7) {
            unsigned total = rnd_below(&rs, 20000), items = 1 + rnd_below(&rs, 9);
            e = sb_printf(
                b,
                ",\"collection\":\"%s\",\"docId\":\"doc_%08x\","
                "\"doc\":{\"status\":\"paid\",\"total\":%u,\"items\":%u,\"note\":\"gift wrap\"},"
                "\"prev\":{\"status\":\"pending\",\"total\":%u,\"items\":%u},"
                "\"bookmark\":\"%08x-%08x-%08x\"}",
                collections[rnd_below(&rs, 4)], (unsigned)rnd_next(&rs), total, items, total, items,
                (unsigned)rnd_next(&rs), (unsigned)rnd_next(&rs), (unsigned)rnd_next(&rs));
        } else if (kind < 9) {
            e = sb_printf(
                b,
                ",\"direction\":\"%s\",\"opcode\":\"text\",\"bytes\":%u,\"socketId\":\"ws_%08x\","
                "\"tags\":[\"chat\",\"v2\"]}",
                rnd_below(&rs, 2) ? "in" : "out", 16 + rnd_below(&rs, 4000),
                (unsigned)rnd_next(&rs));
        } else {
            e = sb_printf(
                b, ",\"scheduledMs\":%u,\"retryCount\":%u,\"durationMs\":%u.%u,\"outcome\":\"ok\"}",
                1000 + rnd_below(&rs, 60000), rnd_below(&rs, 3), rnd_below(&rs, 30),
                rnd_below(&rs, 10));
        }
        if (e) return -1;
    }
    if (sb_printf(b, "]}")) return -1;
    if (b->len > UINT32_MAX) return -1;
    return 0;
}

/* Patches c's next ids and the current time into its body, compresses it if asked. */
static int prepare_body(run *r, conn *c, const char **body, size_t *len)
{
    long n = r->o.batch;
    c->seq0 = c->seq;
    for (long i = 0; i < n; i++) {
        put_digits(c->body.p + c->seq_at[i], c->seq++, SEQ_DIGITS);
        memcpy(c->body.p + c->ts_at[i], r->ts, TS_DIGITS);
    }
    if (!r->o.gzip) {
        *body = c->body.p, *len = c->body.len;
        return 0;
    }
    if (!c->zs_ready) {
        if (deflateInit2(&c->zs, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return -1;
        c->zs_ready = 1;
        c->gz_cap = deflateBound(&c->zs, c->body.len) + 64;
        c->gz = malloc(c->gz_cap);
        if (!c->gz) return -1;
    } else if (deflateReset(&c->zs) != Z_OK) {
        return -1;
    }
    c->zs.next_in = (unsigned char *)c->body.p;
    c->zs.avail_in = (uInt)c->body.len;
    c->zs.next_out = c->gz;
    c->zs.avail_out = (uInt)c->gz_cap;
    if (deflate(&c->zs, Z_FINISH) != Z_STREAM_END) return -1;
    c->gz_len = c->gz_cap - c->zs.avail_out;
    *body = (const char *)c->gz, *len = c->gz_len;
    return 0;
}

static int start_request(run *r, conn *c)
{
    const char *body;
    size_t len;
    if (prepare_body(r, c, &body, &len)) {
        fprintf(stderr, "ingest_load: cannot prepare a body (out of memory or zlib failure)\n");
        return -1;
    }
    c->resp_len = 0;
    c->resp[0] = 0;
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    CURLMcode mc = curl_multi_add_handle(r->multi, c->easy);
    if (mc != CURLM_OK) {
        fprintf(stderr, "ingest_load: curl_multi_add_handle: %s\n", curl_multi_strerror(mc));
        return -1;
    }
    c->busy = 1;
    r->busy++;
    r->started++;
    c->sent_len = len;
    return 0;
}

/* Reads a non-negative integer after key in s; -1 when absent. */
static long long json_number(const char *s, const char *key)
{
    const char *p = strstr(s, key);
    if (!p) return -1;
    p += strlen(key);
    if (*p < '0' || *p > '9') return -1;
    return strtoll(p, NULL, 10);
}

static int finish_request(run *r, conn *c, CURLcode result)
{
    long status = 0;
    curl_off_t pre = 0, total = 0;
    long connects = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(c->easy, CURLINFO_PRETRANSFER_TIME_T, &pre);
    curl_easy_getinfo(c->easy, CURLINFO_TOTAL_TIME_T, &total);
    curl_easy_getinfo(c->easy, CURLINFO_NUM_CONNECTS, &connects);
    curl_multi_remove_handle(r->multi, c->easy);
    c->busy = 0;
    r->busy--;
    r->completed++;
    r->connects += (uint64_t)connects;

    int acked = 0;
    if (result != CURLE_OK) {
        r->transport_errors++;
        r->status[0]++;
        if (r->transport_errors <= 5)
            fprintf(stderr, "ingest_load: connection %u: %s\n", c->index,
                    curl_easy_strerror(result));
    } else {
        r->status[status > 0 && status < 600 ? status : 0]++;
        r->body_bytes += c->sent_len;
        r->raw_bytes += c->body.len;
        h_add(&r->lat, total > pre ? (uint64_t)(total - pre) : 0);
        if (status == 200) {
            long long acc = json_number(c->resp, "\"accepted\":");
            long long dup = json_number(c->resp, "\"duplicates\":");
            if (acc == r->o.batch) {
                acked = 1;
                r->acked_requests++;
                r->acked_events += (uint64_t)acc;
            } else {
                r->short_ack++;
                if (r->short_ack <= 5)
                    fprintf(stderr, "ingest_load: 200 without \"accepted\":%ld: %.300s\n",
                            r->o.batch, c->resp);
            }
            if (dup > 0) r->dup_requests++, r->dup_events += (uint64_t)dup;
        } else {
            if (r->completed - r->status[200] <= 5)
                fprintf(stderr, "ingest_load: HTTP %ld: %.300s\n", status, c->resp);
        }
    }
    sent_list *l = acked ? &r->acked : &r->unacked;
    if ((acked && r->o.ids_out) || (!acked && r->o.unacked_out)) {
        if (sent_push(l, c->index, c->seq0)) {
            fprintf(stderr, "ingest_load: out of memory\n");
            return -1;
        }
    }
    return 0;
}

static int write_ids(const run *r, const sent_list *l, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "ingest_load: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[MAX_PREFIX + 32];
    for (size_t i = 0; i < l->n; i++) {
        int k = snprintf(line, sizeof line, "%s-%u-", r->o.prefix, l->v[i].conn);
        for (long j = 0; j < r->o.batch; j++) {
            put_digits(line + k, l->v[i].seq0 + (uint64_t)j, SEQ_DIGITS);
            line[k + SEQ_DIGITS] = '\n';
            fwrite(line, 1, (size_t)k + SEQ_DIGITS + 1, f);
        }
    }
    if (ferror(f) | fclose(f)) {
        fprintf(stderr, "ingest_load: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int setup(run *r)
{
    r->multi = curl_multi_init();
    if (!r->multi) return -1;
    long n = r->o.connections;
    curl_multi_setopt(r->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, n);
    curl_multi_setopt(r->multi, CURLMOPT_MAXCONNECTS, n);
    curl_multi_setopt(r->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);

    const char *hdrs[] = {"Content-Type: application/json",
                          "Expect:", r->o.gzip ? "Content-Encoding: gzip" : NULL};
    for (size_t i = 0; i < sizeof hdrs / sizeof *hdrs; i++) {
        if (!hdrs[i]) continue;
        struct curl_slist *h = curl_slist_append(r->headers, hdrs[i]);
        if (!h) return -1;
        r->headers = h;
    }
    if (r->o.token) {
        char auth[1024];
        if ((size_t)snprintf(auth, sizeof auth, "Authorization: Bearer %s", r->o.token) >=
            sizeof auth)
            return -1;
        struct curl_slist *h = curl_slist_append(r->headers, auth);
        if (!h) return -1;
        r->headers = h;
    }

    r->c = calloc((size_t)n, sizeof *r->c);
    if (!r->c) return -1;
    for (long i = 0; i < n; i++) {
        conn *c = &r->c[i];
        c->index = (uint32_t)i;
        if (build_body(r, c)) return -1;
        c->easy = curl_easy_init();
        if (!c->easy) return -1;
        curl_easy_setopt(c->easy, CURLOPT_URL, r->o.url);
        curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, r->headers);
        curl_easy_setopt(c->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
        curl_easy_setopt(c->easy, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c->easy, CURLOPT_TIMEOUT, r->o.timeout_s);
        curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT, 10L);
        curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c);
    }
    return 0;
}

static void teardown(run *r)
{
    if (r->c) {
        for (long i = 0; i < r->o.connections; i++) {
            conn *c = &r->c[i];
            if (c->easy) {
                if (c->busy) curl_multi_remove_handle(r->multi, c->easy);
                curl_easy_cleanup(c->easy);
            }
            if (c->zs_ready) deflateEnd(&c->zs);
            free(c->gz);
            free(c->body.p);
            free(c->seq_at);
            free(c->ts_at);
        }
        free(r->c);
    }
    if (r->multi) curl_multi_cleanup(r->multi);
    curl_slist_free_all(r->headers);
    free(r->acked.v);
    free(r->unacked.v);
}

/* Collects finished transfers. Returns -1 on a fatal error. */
static int reap(run *r)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(r->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        char *priv = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        conn *c = (conn *)priv;
        CURLcode result = m->data.result;
        if (!c || finish_request(r, c, result)) return -1;
    }
    return 0;
}

static int drive(run *r)
{
    const options *o = &r->o;
    double t0 = now_s(), deadline = t0 + o->duration_s;
    int64_t ts_ms = -1;
    long n = o->connections;
    long next_idle = 0;
    int running = 0;
    for (;;) {
        double t = now_s();
        int starting =
            !stop_requested && t < deadline && (!o->max_requests || r->started < o->max_requests);
        if (!starting) break;
        int64_t ms = epoch_ms();
        if (ms != ts_ms) put_digits(r->ts, (uint64_t)ms, TS_DIGITS), ts_ms = ms;

        /* start what is due on idle connections; at most n per pass */
        for (long k = 0; k < n; k++) {
            if (o->max_requests && r->started >= o->max_requests) break;
            if (o->rate > 0 && (double)r->started / o->rate > t - t0) break;
            conn *c = &r->c[next_idle];
            next_idle = (next_idle + 1) % n;
            if (c->busy) continue;
            if (start_request(r, c)) return -1;
        }

        int wait_ms = (int)((deadline - t) * 1000) + 1;
        if (o->rate > 0 && r->busy < n) { /* when every connection is busy, only an answer helps */
            double due = t0 + (double)r->started / o->rate - t;
            int w = due <= 0 ? 0 : (int)(due * 1000) + 1;
            if (w < wait_ms) wait_ms = w;
        }
        if (wait_ms > 100) wait_ms = 100;
        CURLMcode mc = curl_multi_poll(r->multi, NULL, 0, wait_ms, NULL);
        if (mc == CURLM_OK) mc = curl_multi_perform(r->multi, &running);
        if (mc != CURLM_OK) {
            fprintf(stderr, "ingest_load: curl multi: %s\n", curl_multi_strerror(mc));
            return -1;
        }
        if (reap(r)) return -1;
    }

    /* drain: the requests in flight may finish, within the per-request limit */
    double drain_until = now_s() + (double)o->timeout_s + 1;
    while (r->completed < r->started && now_s() < drain_until) {
        CURLMcode mc = curl_multi_poll(r->multi, NULL, 0, 100, NULL);
        if (mc == CURLM_OK) mc = curl_multi_perform(r->multi, &running);
        if (mc != CURLM_OK) {
            fprintf(stderr, "ingest_load: curl multi: %s\n", curl_multi_strerror(mc));
            return -1;
        }
        if (reap(r)) return -1;
    }
    if (r->completed < r->started)
        fprintf(stderr,
                "ingest_load: %" PRIu64
                " requests still in flight after the drain; counted as unanswered\n",
                r->started - r->completed);
    return 0;
}

int main(int argc, char **argv)
{
    run *r = calloc(1, sizeof *r);
    if (!r) return 3;
    int rc = parse_options(argc, argv, &r->o);
    if (rc) {
        free(r);
        return rc;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "ingest_load: curl_global_init failed\n");
        free(r);
        return 3;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    rc = 3;
    if (setup(r)) {
        fprintf(stderr, "ingest_load: setup failed (out of memory or curl init)\n");
        goto out;
    }
    fprintf(stderr,
            "ingest_load: %ld connections, %ld events per request, %.0f bytes per event on "
            "average%s%s\n",
            r->o.connections, r->o.batch, (double)r->c[0].body.len / (double)r->o.batch,
            r->o.gzip ? ", gzip" : "", r->o.rate > 0 ? ", rate-limited" : "");

    double t0 = now_s();
    if (drive(r)) goto out;
    double el = now_s() - t0;
    uint64_t unanswered = r->started - r->completed;
    for (long i = 0; i < r->o.connections; i++) {
        conn *c = &r->c[i];
        if (c->busy && r->o.unacked_out && sent_push(&r->unacked, c->index, c->seq0)) goto out;
    }

    uint64_t non200 = r->completed - r->status[200] + unanswered;
    printf("requests=%" PRIu64 " seconds=%.2f req_per_s=%.0f events_per_s=%.0f mb_per_s=%.2f",
           r->completed, el, (double)r->completed / el, (double)r->acked_events / el,
           (double)r->body_bytes / el / 1e6);
    if (r->o.gzip) printf(" raw_mb_per_s=%.2f", (double)r->raw_bytes / el / 1e6);
    printf(" p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f non200=%" PRIu64
           " transport_errors=%" PRIu64 " unanswered=%" PRIu64 " short_acks=%" PRIu64
           " duplicates=%" PRIu64 " acked_events=%" PRIu64 " connects=%" PRIu64,
           (double)h_quantile(&r->lat, 0.50) / 1000, (double)h_quantile(&r->lat, 0.90) / 1000,
           (double)h_quantile(&r->lat, 0.99) / 1000, (double)r->lat.max / 1000, non200,
           r->transport_errors, unanswered, r->short_ack, r->dup_events, r->acked_events,
           r->connects);
    struct rusage ru;
    if (!getrusage(RUSAGE_SELF, &ru))
        printf(" client_cpu_s=%.2f", (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                                         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
    for (int s = 1; s < 600; s++)
        if (s != 200 && r->status[s]) printf(" status_%d=%" PRIu64, s, r->status[s]);
    printf("\n");
    fflush(stdout);

    if (r->o.ids_out && write_ids(r, &r->acked, r->o.ids_out)) goto out;
    if (r->o.unacked_out && write_ids(r, &r->unacked, r->o.unacked_out)) goto out;
    rc = (non200 || r->short_ack) ? 1 : 0;
out:
    teardown(r);
    curl_global_cleanup();
    free(r);
    return rc;
}
