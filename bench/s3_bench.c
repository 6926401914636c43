/*
 * s3_bench.c - upload and download throughput of the lake's store (any
 * backend): puts N files of SIZE MiB with put_file (multipart above the
 * store's threshold), gets them back with get_file, and prints one line:
 *
 *   put_mb_s=... get_mb_s=... files=N size_mib=SIZE
 *
 * Usage: s3_bench URL DIR [SIZE_MIB [N]]   (DIR: scratch space for the files)
 */
#include "evtime.h"
#include "store.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: s3_bench URL DIR [SIZE_MIB [N]]\n");
        return 2;
    }
    int mib = argc > 3 ? atoi(argv[3]) : 64, n = argc > 4 ? atoi(argv[4]) : 4;
    if (mib < 1 || n < 1 || n > 64) {
        fprintf(stderr, "s3_bench: SIZE_MIB >= 1, 1 <= N <= 64\n");
        return 2;
    }
    store *s;
    char err[512];
    if (store_open(argv[1], &s, err, sizeof err)) {
        fprintf(stderr, "s3_bench: %s\n", err);
        return 1;
    }
    size_t size = (size_t)mib << 20;
    char *data = malloc(size);
    for (size_t i = 0; i < size; i++) data[i] = (char)('a' + (i * 7919) % 26);
    char path[4096], key[256];
    snprintf(path, sizeof path, "%s/s3_bench.data", argv[2]);
    int64_t put_ns = 0, get_ns = 0;
    for (int i = 0; i < n; i++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || write(fd, data, size) != (ssize_t)size || close(fd)) {
            fprintf(stderr, "s3_bench: cannot write %s\n", path);
            return 1;
        }
        snprintf(key, sizeof key, "bench/%d-%d.bin", (int)getpid(), i);
        int64_t t0 = evtime_mono_ns();
        if (store_put_file(s, key, path, 0, err, sizeof err)) {
            fprintf(stderr, "s3_bench: %s\n", err);
            return 1;
        }
        put_ns += evtime_mono_ns() - t0;
        unlink(path);
        t0 = evtime_mono_ns();
        if (store_get_file(s, key, path, err, sizeof err)) {
            fprintf(stderr, "s3_bench: %s\n", err);
            return 1;
        }
        get_ns += evtime_mono_ns() - t0;
        unlink(path);
        store_del(s, key, err, sizeof err);
    }
    double mb = (double)n * (double)mib * 1.048576;
    printf("put_mb_s=%.1f get_mb_s=%.1f files=%d size_mib=%d\n", mb / ((double)put_ns / 1e9),
           mb / ((double)get_ns / 1e9), n, mib);
    free(data);
    store_close(s);
    return 0;
}
