/*
 * parse_bench.c - cost of turning one event into its lake line: the ingest
 * scanner (lib/event.c) against jansson parsing the event into a tree and
 * serialising it again, on the same ~300-byte events in the same process.
 *
 *   build/bench/parse_bench [EVENTS]     (default 200000)
 */
#include "event.h"
#include "evtime.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double now_s(void)
{
    return (double)evtime_mono_ns() / 1e9;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 200000;
    if (n < 1000) n = 1000;
    /* a realistic mix, as bench/ingest_load.c sends */
    static const char *tmpl[] = {
        "{\"id\":\"01JDX3K8Q2ZP4W6V7N9B1C%04d\",\"type\":\"rpc.call\",\"ts\":\"2026-11-25T10:00:00."
        "123Z\","
        "\"do\":{\"id\":\"room-17\",\"name\":\"lobby\",\"class\":\"ChatRoom\",\"colo\":\"FRA\"},"
        "\"method\":\"sendMessage\",\"namespace\":\"chat\",\"durationMs\":12.5,\"success\":true}",
        "{\"id\":\"01JDX3K8Q2ZP4W6V7N9B1D%04d\",\"type\":\"collection.update\",\"ts\":\"2026-11-"
        "25T10:00:01.000Z\","
        "\"do\":{\"id\":\"room-17\",\"class\":\"ChatRoom\"},\"collection\":\"users\",\"docId\":\"u-"
        "42\","
        "\"doc\":{\"name\":\"Ann\",\"status\":\"away\",\"rooms\":[1,2,3]},\"prev\":{\"name\":"
        "\"Ann\","
        "\"status\":\"online\",\"rooms\":[1,2]},\"bookmark\":\"00000000000004d2\"}",
        "{\"id\":\"01JDX3K8Q2ZP4W6V7N9B1E%04d\",\"type\":\"ws.message\",\"ts\":\"2026-11-25T10:00:"
        "02.500Z\","
        "\"do\":{\"id\":\"room-17\",\"class\":\"ChatRoom\",\"colo\":\"FRA\"},\"connectionCount\":"
        "17,"
        "\"size\":512,\"text\":\"h\\u00e9llo \\\"world\\\"\"}",
    };
    char **ev = malloc((size_t)n * sizeof *ev);
    size_t *len = malloc((size_t)n * sizeof *len), bytes = 0;
    for (int i = 0; i < n; i++) {
        char b[1024];
        len[i] = (size_t)snprintf(b, sizeof b, tmpl[i % 3], i % 10000);
        ev[i] = strdup(b);
        bytes += len[i];
    }

    event_ctx c;
    event_ctx_init(&c);
    buf out = BUF_INIT;
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        jscan s = {0};
        event_info info;
        const char *next;
        char why[256];
        if (out.len > (1u << 24)) out.len = 0;
        if (event_normalise(&c, &s, ev[i], ev[i] + len[i], &next, &out, &info, why, sizeof why)) {
            fprintf(stderr, "parse_bench: event %d refused: %s\n", i, why);
            return 1;
        }
    }
    double scan_s = now_s() - t0;

    t0 = now_s();
    size_t sink = 0;
    for (int i = 0; i < n; i++) {
        json_error_t e;
        json_t *v = json_loadb(ev[i], len[i], 0, &e);
        if (!v) return 1;
        json_object_set_new(v, "receivedAt", json_string(c.now));
        char *line = json_dumps(v, JSON_COMPACT);
        sink += strlen(line);
        free(line);
        json_decref(v);
    }
    double jansson_s = now_s() - t0;

    printf("events: %d, %.0f bytes each on average\n", n, (double)bytes / n);
    printf("scanner  (lib/event.c):         %9.0f events/s  %7.1f MB/s  %6.0f ns/event\n",
           n / scan_s, bytes / scan_s / 1e6, scan_s / n * 1e9);
    printf("jansson  (parse, set, dump):    %9.0f events/s  %7.1f MB/s  %6.0f ns/event\n",
           n / jansson_s, bytes / jansson_s / 1e6, jansson_s / n * 1e9);
    printf("ratio: the scanner is %.1fx faster than the jansson round trip (same process, same "
           "events)\n",
           jansson_s / scan_s);
    (void)sink;
    buf_free(&out);
    event_ctx_free(&c);
    for (int i = 0; i < n; i++) free(ev[i]);
    free(ev);
    free(len);
    return 0;
}
