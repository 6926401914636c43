/*
 * compact_gen.c - writes one hour of raw events for the compaction benchmark.
 *
 * The hour compaction finds hardest: events of a few hundred bytes mixed with
 * CDC events of large documents (collection.update with doc and prev of
 * 50-125 KB each, 100-250 KB a line), ts drawn at random over the hour (so the
 * sort has real work), and some events written twice (a batch retried through
 * another server: same id and content, a later receivedAt), which compaction
 * must fold into one. Lines are as the server writes them: {"id","type","ts",
 * "receivedAt",<rest>}.
 *
 * --bytes bounds what is written (the line that crosses it is the last);
 * files rotate at --file-bytes, as segments are sealed at --seal-bytes, and
 * the retried copies go to files of their own. Same options and seed, same
 * bytes: one xoshiro256** stream drives everything.
 *
 * It prints one logfmt line on stdout: what it wrote and the facts a check
 * compares the compacted hour with (distinct events, the sum of their
 * durationMs, large events).
 *
 * Exit: 0 written; 2 usage; 3 an I/O failure (the partial hour is left).
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

#define OUT_BUF   (4u << 20)
#define LARGE_MAX (1u << 20) /* --large-max at most: a line must fit a buffer */

/* ---- random numbers (rnd.h), drawn in [0, n) ------------------------------- */

static uint64_t below(uint64_t n)
{
    return rnd() % n;
}

/* ---- output files ------------------------------------------------------------ */

typedef struct out {
    int fd;
    char *buf;
    size_t len;
    uint64_t file_bytes; /* in the current file */
    char path[4096];
} out;

static char dir[4096];
static uint64_t nfiles;

static int out_flush(out *o)
{
    if (files_write_all(o->fd, o->buf, o->len, FILES_AT_POSITION)) {
        fprintf(stderr, "compact_gen: cannot write %s: %s\n", o->path, strerror(errno));
        return -1;
    }
    o->len = 0;
    return 0;
}

static int out_close(out *o)
{
    if (o->fd < 0) return 0;
    int r = out_flush(o);
    if (close(o->fd) && !r) {
        fprintf(stderr, "compact_gen: cannot close %s: %s\n", o->path, strerror(errno));
        r = -1;
    }
    o->fd = -1;
    return r;
}

/* A new file of the hour, named as a UUIDv7 (time-ordered, like the server's). */
static int out_open(out *o)
{
    uint64_t a = rnd(), b = rnd();
    snprintf(o->path, sizeof o->path, "%s/01a0%04x-%04x-7%03x-8%03x-%012" PRIx64 ".jsonl", dir,
             (unsigned)(nfiles & 0xffff), (unsigned)(a & 0xffff), (unsigned)((a >> 16) & 0xfff),
             (unsigned)((a >> 28) & 0xfff), (uint64_t)(b & 0xffffffffffffull));
    o->fd = open(o->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (o->fd < 0) {
        fprintf(stderr, "compact_gen: cannot create %s: %s\n", o->path, strerror(errno));
        return -1;
    }
    o->file_bytes = 0;
    nfiles++;
    return 0;
}

/* Room for n more bytes in o's buffer, in a new file past file_max. */
static int out_room(out *o, size_t n, uint64_t file_max)
{
    if (o->fd >= 0 && o->file_bytes + n > file_max && o->file_bytes) {
        if (out_close(o)) return -1;
    }
    if (o->fd < 0 && out_open(o)) return -1;
    if (o->len + n > OUT_BUF && out_flush(o)) return -1;
    return 0;
}

/* ---- events ---------------------------------------------------------------------- */

static const char *const WORDS[] = {
    "the",   "order",   "shipped", "customer", "address", "street", "invoice", "amount",
    "total", "pending", "review",  "comment",  "draft",   "page",   "section", "table",
    "row",   "column",  "value",   "updated",  "created", "owner",  "status",  "archive",
};
#define NWORDS (sizeof WORDS / sizeof *WORDS)

#define PUT(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) += sizeof(lit) - 1)

/* About n bytes of words (JSON-safe), as a large document's text is. */
static char *put_text(char *p, size_t n)
{
    char *end = p + n;
    while (p < end) {
        const char *w = WORDS[below(NWORDS)];
        size_t l = strlen(w);
        memcpy(p, w, l);
        p += l;
        *p++ = ' ';
    }
    return p;
}

static char *put_ts(char *p, int64_t ms)
{
    char t[EVTIME_LEN + 1];
    evtime_format(ms, t);
    memcpy(p, t, EVTIME_LEN);
    return p + EVTIME_LEN;
}

/*
 * Event k at ts into p (at least large_max + 1 KiB of room); returns the end,
 * the newline included. durationMs is k % 1000, the same in a retried copy.
 */
static char *put_event(char *p, uint64_t k, int64_t ts, int64_t received, int large,
                       size_t large_bytes)
{
    p += sprintf(p, "{\"id\":\"01%012" PRIx64 "%012" PRIx64 "\",\"type\":\"%s\",\"ts\":\"",
                 (uint64_t)ts, k, large ? "collection.update" : "rpc.call");
    p = put_ts(p, ts);
    PUT(p, "\",\"receivedAt\":\"");
    p = put_ts(p, received);
    p += sprintf(p, "\",\"do\":{\"id\":\"obj-%" PRIu64 "\",\"class\":\"%s\"},", k % 50,
                 large ? "Store" : "ChatRoom");
    if (large) {
        p += sprintf(p,
                     "\"collection\":\"docs\",\"docId\":\"doc_%06" PRIu64
                     "\",\"doc\":{\"rev\":%" PRIu64 ",\"body\":\"",
                     k % 997, k);
        p = put_text(p, large_bytes / 2);
        PUT(p, "\"},\"prev\":{\"rev\":");
        p += sprintf(p, "%" PRIu64 ",\"body\":\"", k ? k - 1 : 0);
        p = put_text(p, large_bytes / 2);
        p += sprintf(p, "\"},\"bookmark\":\"%016" PRIx64 "\",\"durationMs\":%" PRIu64 "}\n", k,
                     k % 1000);
    } else {
        p += sprintf(p, "\"method\":\"sendMessage\",\"durationMs\":%" PRIu64 ",\"success\":%s}\n",
                     k % 1000, below(20) ? "true" : "false");
    }
    return p;
}

/* ---- options ------------------------------------------------------------------- */

static int parse_size(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(s, &end, 10);
    if (errno || end == s) return -1;
    uint64_t mul = 1;
    if (!strcmp(end, "k") || !strcmp(end, "KiB"))
        mul = 1ull << 10;
    else if (!strcmp(end, "M") || !strcmp(end, "MiB"))
        mul = 1ull << 20;
    else if (!strcmp(end, "G") || !strcmp(end, "GiB"))
        mul = 1ull << 30;
    else if (*end)
        return -1;
    *v = n * mul;
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: compact_gen --out LAKE --bytes SIZE [--hour 2026-11-20T10] [--large-every N]\n"
            "                   [--large-min SIZE] [--large-max SIZE] [--dup-every N]\n"
            "                   [--file-bytes SIZE] [--seed N]\n"
            "One hour of raw events, about SIZE bytes: every Nth a large CDC event (default\n"
            "80, of 100KiB-250KiB), every dup-every-th written twice (default 50), files of\n"
            "file-bytes (default 64MiB).\n");
}

int main(int argc, char **argv)
{
    const char *lake = NULL, *hour_s = "2026-11-20T10";
    uint64_t bytes = 0, large_every = 80, large_min = 100 << 10, large_max = 250 << 10,
             dup_every = 50, file_bytes = 64ull << 20, seed = 11;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = !v;
        if (!bad && !strcmp(a, "--out"))
            lake = v;
        else if (!bad && !strcmp(a, "--hour"))
            hour_s = v;
        else if (!bad && !strcmp(a, "--bytes"))
            bad = parse_size(v, &bytes);
        else if (!bad && !strcmp(a, "--large-every"))
            bad = parse_size(v, &large_every);
        else if (!bad && !strcmp(a, "--large-min"))
            bad = parse_size(v, &large_min);
        else if (!bad && !strcmp(a, "--large-max"))
            bad = parse_size(v, &large_max);
        else if (!bad && !strcmp(a, "--dup-every"))
            bad = parse_size(v, &dup_every);
        else if (!bad && !strcmp(a, "--file-bytes"))
            bad = parse_size(v, &file_bytes);
        else if (!bad && !strcmp(a, "--seed"))
            bad = parse_size(v, &seed);
        else
            bad = 1;
        if (bad) {
            usage();
            return 2;
        }
    }
    char hbuf[32];
    int64_t hour_ms;
    snprintf(hbuf, sizeof hbuf, "%s:00:00.000Z", hour_s);
    if (!lake || !bytes || !large_every || !dup_every || large_min < 1024 ||
        large_max < large_min || large_max > LARGE_MAX || file_bytes < (1u << 20) ||
        strlen(hour_s) != 13 || evtime_parse(hbuf, strlen(hbuf), &hour_ms)) {
        usage();
        return 2;
    }
    snprintf(dir, sizeof dir, "%s/events/%.4s/%.2s/%.2s/%.2s", lake, hour_s, hour_s + 5, hour_s + 8,
             hour_s + 11);
    char why[4400];
    if (files_mkdirs(dir, why, sizeof why)) {
        fprintf(stderr, "compact_gen: %s\n", why);
        return 3;
    }
    rnd_seed(seed);

    out main_out = {.fd = -1}, dup_out = {.fd = -1};
    main_out.buf = malloc(OUT_BUF);
    dup_out.buf = malloc(OUT_BUF);
    if (!main_out.buf || !dup_out.buf) {
        fprintf(stderr, "compact_gen: out of memory\n");
        return 3;
    }
    uint64_t written = 0, lines = 0, events = 0, large = 0, dups = 0, dur_sum = 0;
    size_t room = large_max + 1024;
    for (uint64_t k = 0; written < bytes; k++) {
        int is_large = k % large_every == large_every - 1;
        size_t lb = is_large ? (size_t)(large_min + below(large_max - large_min + 1)) : 0;
        int64_t ts = hour_ms + (int64_t)below(3600000);
        int64_t received = ts + 20 + (int64_t)below(400);
        if (out_room(&main_out, room, file_bytes)) return 3;
        char *s = main_out.buf + main_out.len;
        char *e = put_event(s, k, ts, received, is_large, lb);
        size_t n = (size_t)(e - s);
        main_out.len += n, main_out.file_bytes += n, written += n;
        lines++, events++, dur_sum += k % 1000, large += (uint64_t)is_large;
        if (k % dup_every == dup_every - 1) {
            /* the retried copy: the same event, received again a few seconds later */
            if (out_room(&dup_out, room, file_bytes)) return 3;
            char *d = dup_out.buf + dup_out.len;
            memcpy(d, s, n);
            char t[EVTIME_LEN + 1];
            evtime_format(received + 3000, t);
            char *r = strstr(d, "\"receivedAt\":\"");
            memcpy(r + 14, t, EVTIME_LEN);
            dup_out.len += n, dup_out.file_bytes += n, written += n;
            lines++, dups++;
        }
    }
    if (out_close(&main_out) || out_close(&dup_out)) return 3;
    free(main_out.buf);
    free(dup_out.buf);
    printf("hour=%s files=%" PRIu64 " bytes=%" PRIu64 " lines=%" PRIu64 " events=%" PRIu64
           " large=%" PRIu64 " retried=%" PRIu64 " duration_sum=%" PRIu64 "\n",
           hour_s, nfiles, written, lines, events, large, dups, dur_sum);
    return 0;
}
