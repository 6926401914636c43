/*
 * cdc_util.h - helpers for the change-log tests: a hash of a database's
 * tracked content, one-number queries.
 */
#ifndef EVENTS_CDC_UTIL_H
#define EVENTS_CDC_UTIL_H

#include <sqlite3.h>

/*
 * SHA-256 (hex) of every tracked table of db: names, columns, and rows in
 * order, each value with its type. The result lives in one of 8 rotating
 * buffers, so two calls can be compared in one expression.
 */
const char *db_hash(sqlite3 *db);

/* The first column of the first row as an integer, -1 on error. */
long long sql_int(sqlite3 *db, const char *sql);

/* 1 if libevents does not track the connection. */
int tracked_by_nobody(sqlite3 *db);

#endif
