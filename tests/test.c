/*
 * test.c - the runner behind test.h.
 */
#define _XOPEN_SOURCE 700
#include "test.h"

#include <ftw.h>
#include <stdarg.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

typedef struct entry {
    const char *name;
    void (*fn)(void);
} entry;

static entry tests[512];
static int ntests, failed_now, failures;

void test_register(const char *name, void (*fn)(void))
{
    if (ntests < 512) tests[ntests++] = (entry){name, fn};
}

void test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "  FAIL %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    failed_now = 1;
}

int test_failed_now(void)
{
    return failed_now;
}

char *test_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/events-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    if (!mkdtemp(p)) {
        perror("mkdtemp");
        abort();
    }
    return p;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

void test_rmtree(const char *path)
{
    if (path) nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    size_t r;
    while ((r = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) b = realloc(b, cap *= 2);
    }
    fclose(f);
    b[n] = 0;
    if (len) *len = n;
    return b;
}

int main(int argc, char **argv)
{
    int ran = 0;
    for (int i = 0; i < ntests; i++) {
        if (argc > 1) {
            int want = 0;
            for (int k = 1; k < argc; k++) want |= strstr(tests[i].name, argv[k]) != NULL;
            if (!want) continue;
        }
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        failed_now = 0;
        tests[i].fn();
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        fprintf(stderr, "%s %s (%.0f ms)\n", failed_now ? "FAIL" : "ok  ", tests[i].name, ms);
        failures += failed_now;
        ran++;
    }
    fprintf(stderr, "%d tests, %d failed\n", ran, failures);
    return failures ? 1 : (ran ? 0 : 1);
}
