/*
 * stream_util.c - the tests' check of a lake's stream log (issue 16), for test_stream and
 * test_crash: harness.h declares it; it lives apart from harness.c, which some tests build
 * without the lake.
 */
#include "harness.h"
#include "layout.h"
#include "test.h"

#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A line of the lake and the seq of its position, for sorting by seq. */
typedef struct pos_line {
    char *text;
    uint64_t seq;
} pos_line;

static int cmp_seq(const void *a, const void *b)
{
    uint64_t x = ((const pos_line *)a)->seq, y = ((const pos_line *)b)->seq;
    return x < y ? -1 : x > y;
}

/* Splits t into its lines ('\n' kept, each NUL-terminated in a copy); the array grows
 * geometrically, for lakes of a hundred thousand lines. */
static char **split_lines(const char *t, size_t *n)
{
    char **v = NULL;
    size_t cap = 0;
    *n = 0;
    for (const char *nl; t && (nl = strchr(t, '\n')); t = nl + 1) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 1024;
            char **nv = realloc(v, cap * sizeof *v);
            if (!nv) break;
            v = nv;
        }
        v[(*n)++] = strndup(t, (size_t)(nl + 1 - t));
    }
    return v;
}

static void free_lines(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* The stream files of sid: contiguous seqs from 1, each file named by its first line's seq. */
static int stream_files_check(const char *lake, const char *sid, char **want, size_t nwant,
                              char *why, size_t cap)
{
    char dir[1300];
    snprintf(dir, sizeof dir, "%s/stream/%s", lake, sid);
    struct dirent **names;
    int nf = scandir(dir, &names, NULL, alphasort);
    uint64_t next = 1;
    size_t k = 0;
    int rc = 0;
    for (int f = 0; f < nf; f++) {
        char path[1700], fsid[LAKE_SID_LEN + 1], key[600];
        uint64_t first;
        snprintf(key, sizeof key, "stream/%s/%s", sid, names[f]->d_name);
        if (names[f]->d_name[0] == '.' || rc) continue;
        snprintf(path, sizeof path, "%s/%s", dir, names[f]->d_name);
        size_t len, n;
        char *t = test_read_file(path, &len);
        char **v = split_lines(t, &n);
        if (lake_parse_stream_key(key, fsid, &first) || first != next) {
            snprintf(why, cap, "%s: expected a stream file starting at seq %llu", key,
                     (unsigned long long)next);
            rc = -1;
        }
        for (size_t i = 0; i < n && !rc; i++, next++, k++) {
            if (k >= nwant || strcmp(v[i], want[k]))
                snprintf(why, cap, "%s line %zu: expected %s, got %s", key, i + 1,
                         k < nwant ? want[k] : "the end", v[i]);
            if (k >= nwant || strcmp(v[i], want[k])) rc = -1;
        }
        free_lines(v, n);
        free(t);
    }
    for (int f = 0; f < nf; f++) free(names[f]);
    if (nf > 0) free(names);
    if (!rc && k != nwant) {
        snprintf(why, cap, "the stream holds %zu events, the lake %zu", k, nwant);
        rc = -1;
    }
    return rc;
}

int lake_stream_check(const char *lake, char *why, size_t cap)
{
    char path[1200], sid[LAKE_SID_LEN + 1] = "";
    snprintf(path, sizeof path, "%s/.spool/" LAKE_SID_FILE, lake);
    size_t len, n;
    char *id = test_read_file(path, &len);
    if (id && len > LAKE_SID_LEN) memcpy(sid, id, LAKE_SID_LEN);
    free(id);
    buf all = BUF_INIT;
    lake_read_all(lake, &all, NULL);
    char **want = split_lines(all.p, &n);
    buf_free(&all);
    int rc = 0;
    pos_line *pl = n ? malloc(n * sizeof *pl) : NULL;
    if (n && !pl) {
        snprintf(why, cap, "out of memory for %zu lines", n);
        rc = -1;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        char s[LAKE_SID_LEN + 1];
        pl[i].text = want[i];
        if (lake_pos_parse(want[i], strlen(want[i]), s, &pl[i].seq) || strcmp(s, sid)) {
            snprintf(why, cap, "a stored line without a position of stream %s: %s", sid, want[i]);
            rc = -1;
        }
    }
    if (!rc && n) {
        qsort(pl, n, sizeof *pl, cmp_seq);
        for (size_t i = 0; i < n; i++) want[i] = pl[i].text;
    }
    free(pl);
    if (!rc) rc = stream_files_check(lake, sid, want, n, why, cap);
    free_lines(want, n);
    return rc;
}
