/*
 * stream_read.c - how fast GET /events' reader pages through the stream log.
 *
 * Lays out N events (default 1,000,000) as stream files of S sids (default 4)
 * in a fresh lake directory, FILE events per file (default 100,000), each line
 * a stored line of about 200 bytes ending with its "_events_pos", then pages
 * through all of them with lake_stream_read (limit L, default 10000) as
 * GET /events does, checks every event came once, and prints events/s.
 *
 *   build/bench/stream_read [N] [S] [L] [FILE]
 */
#include "evtime.h"
#include "layout.h"
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_files(const char *dir, const char *sid, uint64_t n, uint64_t per_file)
{
    char path[4096], key[LAKE_KEY_MAX];
    snprintf(path, sizeof path, "%s/stream/%s", dir, sid);
    mkdir(path, 0755);
    for (uint64_t first = 1; first <= n; first += per_file) {
        lake_stream_key(sid, first, key);
        snprintf(path, sizeof path, "%s/%s", dir, key);
        FILE *f = fopen(path, "wb");
        if (!f) return -1;
        for (uint64_t s = first; s < first + per_file && s <= n; s++) {
            char at[EVTIME_LEN + 1];
            evtime_format(INT64_C(1795000000000) + (int64_t)s * 3, at);
            fprintf(f,
                    "{\"id\":\"01J%s%015llu\",\"type\":\"shop.cart\",\"ts\":\"%s\",\"receivedAt\":"
                    "\"%s\",\"user\":\"u-%llu\",\"amount\":%llu,\"_events_pos\":\"%s.%016llx\"}\n",
                    sid, (unsigned long long)s, at, at, (unsigned long long)(s % 977),
                    (unsigned long long)(s * 7 % 10000), sid, (unsigned long long)s);
        }
        fclose(f);
    }
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    int sids = argc > 2 ? atoi(argv[2]) : 4;
    size_t limit = argc > 3 ? strtoull(argv[3], NULL, 10) : 10000;
    uint64_t per_file = argc > 4 ? strtoull(argv[4], NULL, 10) : 100000;
    char dir[] = "/tmp/stream-bench-XXXXXX", path[4200], err[1024];
    if (!mkdtemp(dir) || sids < 1 || sids > 26 || !limit || !per_file) return 2;
    snprintf(path, sizeof path, "%s/stream", dir);
    mkdir(path, 0755);
    for (int i = 0; i < sids; i++) {
        char sid[9];
        snprintf(sid, sizeof sid, "%c0000000", 'a' + i);
        if (write_files(dir, sid, n / (uint64_t)sids, per_file)) return 1;
    }
    store *s;
    lake_stream *st;
    if (store_fs_open(dir, &s, err, sizeof err) ||
        lake_stream_open(s, NULL, &st, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    lake_cursor cur = {0};
    uint64_t total = 0, pages = 0, bytes = 0;
    int64_t t0 = evtime_mono_ns();
    for (;;) {
        lake_stream_req q = {.after = &cur, .since_ms = -1, .limit = limit, .max_bytes = 8u << 20};
        lake_stream_res res = {0};
        if (lake_stream_read(st, &q, &res, err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        total += res.count, bytes += res.events.len, pages++;
        lake_cursor_free(&cur);
        cur = res.next;
        res.next = (lake_cursor){0};
        size_t got = res.count;
        lake_stream_res_free(&res);
        if (!got) break;
    }
    double secs = (double)(evtime_mono_ns() - t0) / 1e9;
    printf("stream_read: %llu events (%d sids, %llu per file), %llu pages of %zu: %.2f s, "
           "%.0f events/s, %.0f MB/s\n",
           (unsigned long long)total, sids, (unsigned long long)per_file, (unsigned long long)pages,
           limit, secs, (double)total / secs, (double)bytes / secs / 1e6);
    lake_cursor_free(&cur);
    lake_stream_close(st);
    store_close(s);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) return 1;
    return total == n / (uint64_t)sids * (uint64_t)sids ? 0 : 1;
}
