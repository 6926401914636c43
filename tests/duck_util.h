/*
 * duck_util.h - a helper for the tests that talk to DuckDB directly.
 */
#ifndef EVENTS_DUCK_UTIL_H
#define EVENTS_DUCK_UTIL_H

#include <duckdb.h>
#include <stdarg.h>
#include <stdio.h>

/* Runs the statement printf makes of fmt on c: 0, or -1 with DuckDB's error on stderr. */
static inline int duck_exec(duckdb_connection c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline int duck_exec(duckdb_connection c, const char *fmt, ...)
{
    char sql[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    duckdb_result r;
    int bad = duckdb_query(c, sql, &r) == DuckDBError;
    if (bad) fprintf(stderr, "duckdb: %s\n  in %s\n", duckdb_result_error(&r), sql);
    duckdb_destroy_result(&r);
    return bad ? -1 : 0;
}

#endif
