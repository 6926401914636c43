/*
 * sql_time.c - times SQL statements on the DuckDB library the server links, outside the
 * server: what a statement costs in the engine alone, without the view, the listing of the
 * lake or HTTP (bench/table_parts.sh runs it over a compacted lake's Parquet files).
 *
 *   sql_time RUNS STATEMENT...
 *
 * One in-memory database, 2 threads and the UTC time zone, as the server's engine has them.
 * Each statement is run RUNS times in order on one connection; a line per statement gives
 * the fastest run in milliseconds, the first value of the first row and the row count. A
 * statement that fails stops the program with its error (exit 1).
 */
#include <duckdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int run(duckdb_connection c, const char *sql)
{
    duckdb_result r;
    if (duckdb_query(c, sql, &r) == DuckDBError) {
        fprintf(stderr, "sql_time: %s\n  in: %s\n", duckdb_result_error(&r), sql);
        duckdb_destroy_result(&r);
        return -1;
    }
    duckdb_destroy_result(&r);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3 || atoi(argv[1]) < 1) {
        fprintf(stderr, "usage: sql_time RUNS STATEMENT...\n");
        return 2;
    }
    int runs = atoi(argv[1]);
    duckdb_database db;
    duckdb_connection c;
    if (duckdb_open(NULL, &db) == DuckDBError || duckdb_connect(db, &c) == DuckDBError) {
        fprintf(stderr, "sql_time: cannot open DuckDB\n");
        return 1;
    }
    int rc = run(c, "SET threads = 2") || run(c, "SET TimeZone = 'UTC'") ? 1 : 0;
    for (int a = 2; a < argc && !rc; a++) {
        double best = -1;
        char first[64] = "";
        unsigned long long rows = 0;
        for (int k = 0; k < runs && !rc; k++) {
            duckdb_result r;
            double t0 = now_ms();
            if (duckdb_query(c, argv[a], &r) == DuckDBError) {
                fprintf(stderr, "sql_time: %s\n  in: %s\n", duckdb_result_error(&r), argv[a]);
                rc = 1;
            } else {
                double t = now_ms() - t0;
                if (best < 0 || t < best) best = t;
                rows = (unsigned long long)duckdb_row_count(&r);
                char *v = rows && duckdb_column_count(&r) ? duckdb_value_varchar(&r, 0, 0) : NULL;
                snprintf(first, sizeof first, "%s", v ? v : "");
                duckdb_free(v);
            }
            duckdb_destroy_result(&r);
        }
        if (!rc) printf("%9.1f ms  rows=%-4llu first=%-20s  %.90s\n", best, rows, first, argv[a]);
    }
    duckdb_disconnect(&c);
    duckdb_close(&db);
    return rc;
}
