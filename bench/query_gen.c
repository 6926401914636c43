/*
 * query_gen.c - writes a deterministic lake for the query benchmark.
 *
 * N events spread evenly over H hours, written straight into the lake's
 * layout (events/yyyy/mm/dd/hh/<uuid>.jsonl, F files per hour), each line
 * exactly as the server writes it: {"id","type","ts","receivedAt",<rest>}.
 * The mix is what a fleet of Durable Objects emits:
 *
 *   55%  rpc.call           3 classes, 50 objects, 8 methods (each owned by
 *                           one class), durationMs with a long tail, 5%
 *                           success:false with an "error"
 *   25%  collection.*       4 collections x 10,000 docIds; a document is
 *                           inserted, updated, sometimes deleted (then
 *                           inserted again); doc and prev are its versions,
 *                           bookmark a 16-hex-digit counter rising with ts
 *   10%  ws.message, 6% do.alarm, 4% ws.connect
 *
 * The same options and seed give the same bytes: one xoshiro256** stream
 * drives everything, ids are ULIDs built from ts and that stream, and file
 * names are UUIDs drawn from it. Within an hour, ts rises evenly and the
 * k-th event goes to file k mod F, so every file is in ts order.
 *
 * Speed is the point (5M events must not dominate a benchmark run): each
 * event is formatted by hand into a per-file 1 MiB buffer (no per-event
 * allocation, no stdio), and a buffer goes to the kernel in one write when
 * full. Nothing is fsynced: the lake is in the page cache afterwards, and the
 * benchmark reads it from there.
 *
 * It prints one logfmt line on stdout: what it wrote (events, files, bytes,
 * seconds) and the facts the benchmark checks answers against (the count of
 * each type, the middle hour and its count, a document of `users` and the
 * number of its changes).
 *
 * Exit: 0 written; 2 usage; 3 an I/O failure (the partial lake is left).
 */
#include "evtime.h"
#include "files.h"
#include "rnd.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILES_PER_HOUR 64
#define MAX_HOURS          (24 * 366)
#define OUT_BUF            (1u << 20)
#define MAX_EVENT          1024 /* no event is longer; a buffer is flushed when less is left */
#define OBJECTS            50
#define DOCS               10000

/* ---- random numbers (rnd.h), drawn in [0, n) ------------------------------- */

/* Uniform in [0, n) (Lemire's multiply-shift; the bias is below 2^-32 for our n). */
static inline uint32_t below(uint32_t n)
{
    return (uint32_t)(((rnd() >> 32) * (uint64_t)n) >> 32);
}

/* ---- the vocabulary -------------------------------------------------------- */

static const char *const CLASSES[] = {"ChatRoom", "UserSession", "Cart"};
static const char *const COLOS[] = {"AMS", "FRA", "LHR", "CDG", "IAD", "SJC", "NRT", "SIN"};

typedef struct method {
    const char *name;
    int cls;          /* the class whose objects serve it */
    uint32_t base_us; /* median duration */
    unsigned weight;  /* share of calls, out of 100 */
} method;

static const method METHODS[] = {
    {"sendMessage", 0, 4200, 24}, {"join", 0, 2600, 8},        {"leave", 0, 900, 6},
    {"heartbeat", 1, 350, 22},    {"getProfile", 1, 1800, 14}, {"setPresence", 1, 700, 10},
    {"updateCart", 2, 6500, 11},  {"checkout", 2, 48000, 5},
};
#define NMETHODS (sizeof METHODS / sizeof *METHODS)

static const char *const ERRORS[] = {
    "timeout after 30s", "overloaded", "storage quota exceeded", "unknown roomId", "object reset",
};

static const char *const COLLECTIONS[] = {"users", "orders", "carts", "sessions"};
static const char *const DOC_PREFIX[] = {"usr_", "ord_", "crt_", "ses_"};
#define NCOLL 4

/* Output order of the types is SQL's ORDER BY type, so the script can compare. */
enum { T_DELETE, T_INSERT, T_UPDATE, T_ALARM, T_RPC, T_CONNECT, T_MESSAGE, NTYPES };
static const char *const TYPES[NTYPES] = {
    "collection.delete", "collection.insert", "collection.update", "do.alarm",
    "rpc.call",          "ws.connect",        "ws.message"};

typedef struct object {
    char id[33];
    char name[24];
    int cls, colo;
} object;

static object objects[OBJECTS];
static int class_objects[3][OBJECTS], nclass_objects[3];
static uint8_t method_pick[100]; /* weight table: a uniform draw below 100 picks a method */

typedef struct doc_state {
    uint32_t version; /* of the current document; 0 never inserted */
    uint32_t changes; /* events written for this docId */
    uint8_t alive;
} doc_state;

static doc_state docs[NCOLL][DOCS];

/* ---- formatting ------------------------------------------------------------ */

#define PUT(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) += sizeof(lit) - 1)

static inline char *put_str(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

static inline char *put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do tmp[n++] = (char)('0' + v % 10), v /= 10;
    while (v);
    while (n) *p++ = tmp[--n];
    return p;
}

/* v as exactly `width` decimal digits, zero-padded */
static inline char *put_fixed(char *p, uint64_t v, int width)
{
    for (int i = width - 1; i >= 0; i--) p[i] = (char)('0' + v % 10), v /= 10;
    return p + width;
}

/* microseconds as milliseconds with three decimals: 12345 -> 12.345 */
static inline char *put_ms(char *p, uint64_t us)
{
    p = put_u64(p, us / 1000);
    *p++ = '.';
    return put_fixed(p, us % 1000, 3);
}

static inline char *put_hex(char *p, uint64_t v, int digits)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = digits - 1; i >= 0; i--) p[i] = hex[v & 15], v >>= 4;
    return p + digits;
}

/* "YYYY-MM-DDThh:" of one hour, cached: nearly every ts falls in the current hour. */
static int64_t cached_hour = -1;
static char hour_prefix[15];

static char *put_ts(char *p, int64_t ms)
{
    int64_t hour = ms / EVTIME_HOUR_MS;
    if (hour != cached_hour) {
        char full[EVTIME_LEN + 1];
        evtime_format(hour * EVTIME_HOUR_MS, full);
        memcpy(hour_prefix, full, 14);
        cached_hour = hour;
    }
    int64_t in = ms - hour * EVTIME_HOUR_MS;
    memcpy(p, hour_prefix, 14);
    p += 14;
    p = put_fixed(p, (uint64_t)(in / 60000), 2);
    *p++ = ':';
    p = put_fixed(p, (uint64_t)(in / 1000 % 60), 2);
    *p++ = '.';
    p = put_fixed(p, (uint64_t)(in % 1000), 3);
    *p++ = 'Z';
    return p;
}

/* A ULID: 48 bits of ms, then 80 random bits, in Crockford's base32. */
static char *put_ulid(char *p, int64_t ms)
{
    static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    uint64_t t = (uint64_t)ms, r1 = rnd(), r2 = rnd() & 0xFFFF;
    for (int i = 9; i >= 0; i--) p[i] = b32[t & 31], t >>= 5;
    /* 80 bits = 16 characters: the low 64 bits of r1 and 16 bits of r2 */
    for (int i = 25; i >= 10; i--) {
        p[i] = b32[r1 & 31];
        r1 = (r1 >> 5) | (r2 << 59);
        r2 >>= 5;
    }
    return p + 26;
}

/* One document version of a collection: a small object, the same for the same (c, d, v). */
static char *put_doc(char *p, int c, uint32_t d, uint32_t v)
{
    uint64_t h =
        (uint64_t)d * 0x9E3779B97F4A7C15ull ^ (uint64_t)v * 0xC2B2AE3D27D4EB4Full ^ (uint64_t)c;
    h ^= h >> 29;
    static const char *const plans[] = {"free", "pro", "team", "ent"};
    static const char *const status[] = {"pending", "paid", "shipped", "delivered"};
    static const char *const devices[] = {"ios", "android", "web", "desktop"};
    switch (c) {
    case 0:
        PUT(p, "{\"name\":\"user ");
        p = put_u64(p, d);
        PUT(p, "\",\"plan\":\"");
        p = put_str(p, plans[h % 4]);
        PUT(p, "\",\"visits\":");
        p = put_u64(p, v * 3 + h % 3);
        PUT(p, "}");
        break;
    case 1:
        PUT(p, "{\"status\":\"");
        p = put_str(p, status[v % 4]);
        PUT(p, "\",\"total\":");
        p = put_u64(p, 500 + (d * 37 + v * 11) % 30000);
        PUT(p, "}");
        break;
    case 2:
        PUT(p, "{\"items\":");
        p = put_u64(p, 1 + (v + d) % 9);
        PUT(p, ",\"total\":");
        p = put_u64(p, 990 + (h >> 8) % 20000);
        PUT(p, "}");
        break;
    default:
        PUT(p, "{\"device\":\"");
        p = put_str(p, devices[d % 4]);
        PUT(p, "\",\"seen\":");
        p = put_u64(p, v);
        PUT(p, "}");
        break;
    }
    return p;
}

/* ---- the generator ----------------------------------------------------------- */

typedef struct out {
    int fd;
    char *buf;
    size_t len;
    char path[4096];
} out;

typedef struct totals {
    uint64_t types[NTYPES];
    uint64_t bytes;
    uint64_t bookmark;
} totals;

static int flush_out(out *o)
{
    if (files_write_all(o->fd, o->buf, o->len, FILES_AT_POSITION)) {
        fprintf(stderr, "query_gen: cannot write %s: %s\n", o->path, strerror(errno));
        return -1;
    }
    o->len = 0;
    return 0;
}

static char *put_do(char *p, const object *ob)
{
    PUT(p, "\"do\":{\"id\":\"");
    p = put_str(p, ob->id);
    PUT(p, "\",\"name\":\"");
    p = put_str(p, ob->name);
    PUT(p, "\",\"class\":\"");
    p = put_str(p, CLASSES[ob->cls]);
    PUT(p, "\",\"colo\":\"");
    p = put_str(p, COLOS[ob->colo]);
    PUT(p, "\"}");
    return p;
}

/* Writes one event at ts into p; returns the end (the '\n' included). */
static char *put_event(char *p, int64_t ts, totals *t)
{
    char *start = p;
    uint32_t pick = below(100);
    /* the type first: a collection event's depends on its document's state */
    int type, c = 0;
    uint32_t d = 0;
    doc_state *s = NULL;
    if (pick < 55) {
        type = T_RPC;
    } else if (pick < 80) {
        c = (int)below(NCOLL);
        d = below(DOCS);
        s = &docs[c][d];
        type = !s->alive ? T_INSERT : below(100) < 8 ? T_DELETE : T_UPDATE;
    } else {
        type = pick < 90 ? T_MESSAGE : pick < 96 ? T_ALARM : T_CONNECT;
    }
    PUT(p, "{\"id\":\"");
    p = put_ulid(p, ts);
    PUT(p, "\",\"type\":\"");
    p = put_str(p, TYPES[type]);
    PUT(p, "\",\"ts\":\"");
    p = put_ts(p, ts);
    PUT(p, "\",\"receivedAt\":\"");
    p = put_ts(p, ts + 15 + below(400));
    PUT(p, "\",");
    switch (type) {
    case T_RPC: {
        const method *m = &METHODS[method_pick[below(100)]];
        p = put_do(p, &objects[class_objects[m->cls][below((uint32_t)nclass_objects[m->cls])]]);
        /* body 0.5-1.5x the median; 8% slow (1.5-4x), 2% very slow (4-20x) */
        uint32_t tail = below(100);
        uint64_t permille = tail >= 98   ? 4000 + below(16000)
                            : tail >= 90 ? 1500 + below(2500)
                                         : 500 + below(1000);
        PUT(p, ",\"method\":\"");
        p = put_str(p, m->name);
        PUT(p, "\",\"durationMs\":");
        p = put_ms(p, (uint64_t)m->base_us * permille / 1000);
        if (below(100) >= 5) {
            PUT(p, ",\"success\":true}");
        } else {
            PUT(p, ",\"success\":false,\"error\":\"");
            p = put_str(p, ERRORS[below(sizeof ERRORS / sizeof *ERRORS)]);
            PUT(p, "\"}");
        }
        break;
    }
    case T_INSERT:
    case T_UPDATE:
    case T_DELETE: {
        /* collection writes come from the UserSession and Cart objects, each docId from one */
        int cls = 1 + (int)(d & 1);
        p = put_do(p, &objects[class_objects[cls][d % (uint32_t)nclass_objects[cls]]]);
        PUT(p, ",\"collection\":\"");
        p = put_str(p, COLLECTIONS[c]);
        PUT(p, "\",\"docId\":\"");
        p = put_str(p, DOC_PREFIX[c]);
        p = put_fixed(p, d, 6);
        PUT(p, "\",\"doc\":");
        if (type == T_DELETE)
            PUT(p, "null");
        else
            p = put_doc(p, c, d, s->version + 1);
        PUT(p, ",\"prev\":");
        if (type == T_INSERT)
            PUT(p, "null");
        else
            p = put_doc(p, c, d, s->version);
        PUT(p, ",\"bookmark\":\"");
        p = put_hex(p, ++t->bookmark, 16);
        PUT(p, "\"}");
        s->alive = type != T_DELETE;
        if (type != T_DELETE) s->version++;
        s->changes++;
        break;
    }
    case T_MESSAGE:
        p = put_do(p, &objects[class_objects[0][below((uint32_t)nclass_objects[0])]]);
        if (below(3))
            PUT(p, ",\"direction\":\"in\"");
        else
            PUT(p, ",\"direction\":\"out\"");
        PUT(p, ",\"opcode\":\"text\",\"bytes\":");
        p = put_u64(p, 16 + below(4000));
        PUT(p, ",\"socketId\":\"ws_");
        p = put_hex(p, below(1u << 20), 8);
        PUT(p, "\"}");
        break;
    case T_ALARM:
        p = put_do(p, &objects[below(OBJECTS)]);
        PUT(p, ",\"scheduledMs\":");
        p = put_u64(p, 1000 + below(60000));
        PUT(p, ",\"retryCount\":");
        p = put_u64(p, below(10) ? 0 : 1 + below(3));
        PUT(p, ",\"durationMs\":");
        p = put_ms(p, 200 + below(30000));
        PUT(p, ",\"outcome\":\"ok\"}");
        break;
    default: /* T_CONNECT */
        p = put_do(p, &objects[class_objects[0][below((uint32_t)nclass_objects[0])]]);
        PUT(p, ",\"socketId\":\"ws_");
        p = put_hex(p, below(1u << 20), 8);
        PUT(p, "\",\"clientIp\":\"10.");
        p = put_u64(p, below(256));
        *p++ = '.';
        p = put_u64(p, below(256));
        *p++ = '.';
        p = put_u64(p, 1 + below(254));
        PUT(p, "\",\"protocol\":\"chat.v2\"}");
        break;
    }
    *p++ = '\n';
    t->types[type]++;
    t->bytes += (uint64_t)(p - start);
    return p;
}

static void setup_vocabulary(void)
{
    for (int k = 0; k < OBJECTS; k++) {
        object *o = &objects[k];
        o->cls = k % 3;
        o->colo = (int)below(8);
        char *p = o->id;
        for (int i = 0; i < 2; i++) p = put_hex(p, rnd(), 16);
        *p = 0;
        snprintf(o->name, sizeof o->name, "%s-%d",
                 o->cls == 0   ? "room"
                 : o->cls == 1 ? "session"
                               : "cart",
                 k);
        class_objects[o->cls][nclass_objects[o->cls]++] = k;
    }
    int n = 0;
    for (size_t m = 0; m < NMETHODS; m++)
        for (unsigned w = 0; w < METHODS[m].weight; w++) method_pick[n++] = (uint8_t)m;
}

/* ---- main --------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fputs("Usage: query_gen --events N --out DIR [--hours H] [--files-per-hour F]\n"
          "                 [--start 2026-11-23T00:00:00Z] [--seed S]\n"
          "\n"
          "Writes a deterministic lake of N events over H hours (default 48), F files per hour\n"
          "(default 4), starting at --start (on the hour; default 2026-11-23T00:00:00Z), into\n"
          "DIR/events/, which must not exist yet. Prints one logfmt line of what it wrote.\n",
          f);
}

static int parse_u64(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-') return -1;
    *v = x;
    return 0;
}

static double mono_s(void)
{
    return (double)evtime_mono_ns() / 1e9;
}

int main(int argc, char **argv)
{
    uint64_t n = 0, hours = 48, per_hour = 4, seed = 1;
    const char *dir = NULL, *start_s = "2026-11-23T00:00:00Z";
    for (int i = 1; i < argc; i += 2) { /* every option takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!v) {
            bad = 1;
        } else if (!strcmp(a, "--events")) {
            bad = parse_u64(v, &n);
        } else if (!strcmp(a, "--hours")) {
            bad = parse_u64(v, &hours);
        } else if (!strcmp(a, "--files-per-hour")) {
            bad = parse_u64(v, &per_hour);
        } else if (!strcmp(a, "--seed")) {
            bad = parse_u64(v, &seed);
        } else if (!strcmp(a, "--out")) {
            dir = v;
        } else if (!strcmp(a, "--start")) {
            start_s = v;
        } else {
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "query_gen: bad option %s%s%s\n", a, v ? " " : "", v ? v : "");
            usage(stderr);
            return 2;
        }
    }
    int64_t start;
    if (!dir || n == 0 || hours == 0 || hours > MAX_HOURS || per_hour == 0 ||
        per_hour > MAX_FILES_PER_HOUR) {
        fprintf(stderr,
                "query_gen: need --events N > 0, --out DIR, 1 <= --hours <= %d, 1 <= "
                "--files-per-hour <= %d\n",
                MAX_HOURS, MAX_FILES_PER_HOUR);
        return 2;
    }
    if (evtime_parse(start_s, strlen(start_s), &start) || start % EVTIME_HOUR_MS ||
        start + (int64_t)hours * EVTIME_HOUR_MS > EVTIME_MAX_MS) {
        fprintf(stderr, "query_gen: --start must be an RFC 3339 time on the hour, not %s\n",
                start_s);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/events", dir);
    struct stat st;
    if (!stat(path, &st)) {
        fprintf(stderr, "query_gen: %s exists: give a directory without a lake\n", path);
        return 2;
    }

    rnd_seed(seed);
    setup_vocabulary();
    out outs[MAX_FILES_PER_HOUR];
    for (uint64_t f = 0; f < per_hour; f++) {
        outs[f].fd = -1;
        outs[f].len = 0;
        if (!(outs[f].buf = malloc(OUT_BUF))) {
            fprintf(stderr, "query_gen: out of memory\n");
            return 3;
        }
    }

    totals t;
    memset(&t, 0, sizeof t);
    uint64_t files = 0, mid = hours / 2, mid_events = 0;
    double t0 = mono_s();
    for (uint64_t h = 0; h < hours; h++) {
        int64_t hour_ms = start + (int64_t)h * EVTIME_HOUR_MS;
        uint64_t nh = n / hours + (h < n % hours);
        if (h == mid) mid_events = nh;
        if (!nh) continue;
        char ts[EVTIME_LEN + 1];
        evtime_format(hour_ms, ts);
        /* events/yyyy/mm/dd/hh/ from "yyyy-mm-ddThh" */
        int dn = snprintf(path, sizeof path, "%s/events/%.4s/%.2s/%.2s/%.2s", dir, ts, ts + 5,
                          ts + 8, ts + 11);
        for (int k = 1; k <= dn; k++) {
            if (path[k] != '/' && path[k]) continue;
            char c = path[k];
            path[k] = 0;
            if (mkdir(path, 0755) && errno != EEXIST) {
                fprintf(stderr, "query_gen: cannot create %s: %s\n", path, strerror(errno));
                return 3;
            }
            path[k] = c;
        }
        uint64_t fh = nh < per_hour ? nh : per_hour;
        for (uint64_t f = 0; f < fh; f++) {
            uint64_t a = rnd(), b = rnd();
            a = (a & ~0xF000ull) | 0x4000ull;                        /* version 4 */
            b = (b & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull; /* variant 10 */
            char *p = outs[f].path + snprintf(outs[f].path, sizeof outs[f].path, "%s/", path);
            p = put_hex(p, a >> 32, 8), *p++ = '-';
            p = put_hex(p, a >> 16, 4), *p++ = '-';
            p = put_hex(p, a, 4), *p++ = '-';
            p = put_hex(p, b >> 48, 4), *p++ = '-';
            p = put_hex(p, b, 12);
            memcpy(p, ".jsonl", 7);
            outs[f].fd = open(outs[f].path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
            if (outs[f].fd < 0) {
                fprintf(stderr, "query_gen: cannot create %s: %s\n", outs[f].path, strerror(errno));
                return 3;
            }
            files++;
        }
        for (uint64_t k = 0; k < nh; k++) {
            out *o = &outs[k % fh];
            int64_t ts_ms = hour_ms + (int64_t)(k * (uint64_t)EVTIME_HOUR_MS / nh);
            o->len = (size_t)(put_event(o->buf + o->len, ts_ms, &t) - o->buf);
            if (o->len > OUT_BUF - MAX_EVENT && flush_out(o)) return 3;
        }
        for (uint64_t f = 0; f < fh; f++) {
            if (flush_out(&outs[f])) return 3;
            if (close(outs[f].fd)) {
                fprintf(stderr, "query_gen: cannot close %s: %s\n", outs[f].path, strerror(errno));
                return 3;
            }
            outs[f].fd = -1;
        }
    }
    double secs = mono_s() - t0;
    for (uint64_t f = 0; f < per_hour; f++) free(outs[f].buf);

    /* a users document with a typical history: the first at or after 4242 that has changes */
    uint32_t doc = 4242;
    while (!docs[0][doc].changes && doc + 1 < DOCS) doc++;
    char first[EVTIME_LEN + 1], last[EVTIME_LEN + 1], mid_ts[EVTIME_LEN + 1],
        mid_end[EVTIME_LEN + 1];
    evtime_format(start, first);
    evtime_format(start + (int64_t)hours * EVTIME_HOUR_MS, last);
    evtime_format(start + (int64_t)mid * EVTIME_HOUR_MS, mid_ts);
    evtime_format(start + (int64_t)(mid + 1) * EVTIME_HOUR_MS, mid_end);
    printf("events=%" PRIu64 " hours=%" PRIu64 " files=%" PRIu64 " files_per_hour=%" PRIu64
           " bytes=%" PRIu64 " mean_event_bytes=%.0f seconds=%.3f events_per_s=%.0f mb_per_s=%.1f "
           "start=%s end=%s mid_hour=%s mid_hour_end=%s"
           " mid_hour_events=%" PRIu64 " mid_hour_files=%" PRIu64
           " doc_collection=%s doc_id=%s%06u doc_changes=%u"
           " types=",
           n, hours, files, per_hour, t.bytes, (double)t.bytes / (double)n, secs, (double)n / secs,
           (double)t.bytes / 1e6 / secs, first, last, mid_ts, mid_end, mid_events,
           mid_events < per_hour ? mid_events : per_hour, COLLECTIONS[0], DOC_PREFIX[0], doc,
           docs[0][doc].changes);
    for (int k = 0, any = 0; k < NTYPES; k++)
        if (t.types[k]) printf("%s%s:%" PRIu64, any++ ? "," : "", TYPES[k], t.types[k]);
    putchar('\n');
    return fflush(stdout) ? 3 : 0;
}
