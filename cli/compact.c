/*
 * compact.c - `events compact`: one compaction run over a lake, as the server
 * runs it in the background (lake/compact.h).
 */
#include "cli.h"
#include "compact.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* What a run did, on one line. */
static void print_summary(const compact_stats *s)
{
    char appended[24], histories[64] = "";
    snprintf(appended, sizeof appended, "%llu", (unsigned long long)s->appended);
    if (s->histories || s->histories_deleted)
        snprintf(histories, sizeof histories, "; wrote %llu history files, deleted %llu stale ones",
                 (unsigned long long)s->histories, (unsigned long long)s->histories_deleted);
    printf("compacted %llu of %llu partitions: %llu files (%llu bytes) into %llu rows in %llu "
           "new Parquet files (%llu bytes); deleted %llu replaced files; removed %llu "
           "leftovers of killed runs%s%s%s%s\n",
           (unsigned long long)s->compacted, (unsigned long long)s->partitions,
           (unsigned long long)s->files_in, (unsigned long long)s->bytes_in,
           (unsigned long long)s->rows, (unsigned long long)s->files_out,
           (unsigned long long)s->bytes_out, (unsigned long long)s->deleted,
           (unsigned long long)s->leftovers,
           s->appended ? "; of those partitions, appended (not yet due): " : "",
           s->appended ? appended : "",
           s->conflicts ? "; some partitions were compacted by another compactor" : "", histories);
}

int cmd_compact(int argc, char **argv)
{
    const char *lake = "./events-lake", *cache_dir = NULL;
    uint64_t cache_max = 0, memory = 1ull << 30, chunk = 0;
    int64_t after = 600000, retain = 600000, lease = 120000;
    int open_hours = 0, pending_only = 0;
    const cli_option opts[] = {
        {"lake", "EVENTS_LAKE", OPT_STR, &lake, "DIR|URL",
         "the lake: a directory or s3://bucket/prefix (default ./events-lake)"},
        {"after", "EVENTS_COMPACT_AFTER", OPT_DURATION, &after, "DURATION",
         "compact an hour this long after it ends (default 10m)"},
        {"open-hours", NULL, OPT_FLAG, &open_hours, NULL,
         "also append the sealed segments of hours not yet due to the table (as the server's "
         "--table-lag does)"},
        {"pending-only", NULL, OPT_FLAG, &pending_only, NULL,
         "look only at the hours of the pending index and the recent ones, not the whole lake "
         "(as the server's runs between its daily sweeps)"},
        {"retain", "EVENTS_COMPACT_RETAIN", OPT_DURATION, &retain, "DURATION",
         "keep compacted-away files this long for running queries (default 10m)"},
        {"lease", NULL, OPT_DURATION, &lease, "DURATION",
         "the compaction lease's term (default 2m)"},
        {"memory", "EVENTS_COMPACT_MEMORY", OPT_SIZE, &memory, "SIZE",
         "DuckDB's memory limit, which bounds compaction's (default 1GiB, at least 128MiB)"},
        {"chunk", "EVENTS_COMPACT_CHUNK", OPT_SIZE, &chunk, "SIZE",
         "events read by one statement at most; a larger hour gives several files (default: "
         "(memory - 96MiB) / 32)"},
        CLI_CACHE_OPTIONS(&cache_dir, &cache_max),
        {NULL, NULL, 0, NULL, NULL, NULL},
    };
    int status;
    if (cli_options_take_no_args(
            "compact",
            "Usage: events compact [--lake DIR|URL] [OPTIONS]\n\n"
            "Compacts every closed hour of the lake into Parquet files (one per --chunk of the\n"
            "hour, each sorted by collection, docId, type and ts, one row per id in all of\n"
            "them), commits them to the lake's Iceberg table (with --open-hours, the sealed\n"
            "segments of the other hours too), deletes what earlier runs replaced and expires\n"
            "the table's snapshots once --retain has passed.\n"
            "One compactor runs at a time per lake: if another holds the lease, says who and\n"
            "exits with status 75.",
            opts, argc, argv, &status))
        return status;
    if (memory < (128u << 20) || (chunk && chunk < (1u << 20))) {
        fprintf(stderr, "events compact: --memory must be at least 128MiB (DuckDB's JSON reader "
                        "needs about 35 MiB), --chunk at least 1MiB\n");
        return 2;
    }
    if (after < 0 || retain < 0 || lease < 1000) {
        fprintf(stderr, "events compact: --after and --retain must not be negative, --lease at "
                        "least 1s\n");
        return 2;
    }
    store *st;
    lake_cache *cache;
    if (cli_lake_open("compact", lake, cache_dir, cache_max, CLI_LAKE_WRITE, &st, &cache)) return 1;
    char work[4096];
    snprintf(work, sizeof work, "%s/.compact", cache ? lake_cache_dir(cache) : st->ops->root(st));
    if (mkdir(work, 0755) && errno != EEXIST) {
        fprintf(stderr, "events compact: cannot create %s: %s\n", work, strerror(errno));
        lake_cache_close(cache);
        store_close(st);
        return 1;
    }
    compact_config cc = {.store = st,
                         .cache = cache,
                         .work_dir = work,
                         .after_ms = after,
                         .open_hours = open_hours,
                         .sweep = !pending_only,
                         .retain_ms = retain,
                         .lease_ms = lease,
                         .memory_limit = memory,
                         .chunk_bytes = chunk};
    compact_stats s;
    char err[1024];
    int r = compact_run(&cc, &s, err, sizeof err);
    int rc = 0;
    if (r < 0) {
        fprintf(stderr, "events compact: %s\n", err);
        rc = 1;
    } else if (r > 0) {
        fprintf(stderr, "events compact: another compactor holds the lease: %s\n", s.holder);
        rc = 75;
    }
    if (r <= 0) print_summary(&s);
    lake_cache_close(cache);
    store_close(st);
    return rc;
}
