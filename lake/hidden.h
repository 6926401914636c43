/*
 * hidden.h - what a query may not name: the catalog functions and views that
 * show the server's configuration, its files and its user.
 *
 * DuckDB shows every setting to a query (duckdb_settings(), current_setting):
 * allowed_directories is the lake's and the spool's path, secret_directory
 * the server user's home; the definition of each query's events view
 * (duckdb_views(), sqlite_master, information_schema.views, pg_views) lists
 * the lake's files by path; duckdb_extensions() fails with the home
 * directory in its message. DuckDB 1.4 has no setting that hides them, and
 * the sandbox must lock the configuration, so the query engine refuses a
 * query whose parse tree names one of them, before anything is bound. A
 * string passed to query() or query_table() is SQL or a table name too: it
 * is parsed and checked the same way, and must be a constant.
 */
#ifndef EVENTS_HIDDEN_H
#define EVENTS_HIDDEN_H

#include <jansson.h>
#include <stddef.h>

/* Parses the SELECT text sql into a parse tree (json_serialize_sql's), or NULL. Caller frees. */
typedef json_t *(*hidden_parse_fn)(void *ud, const char *sql);

/*
 * 0 if the parse tree ast (NULL: nothing to check) names nothing hidden;
 * else -1 with the reason in err, naming what the query may not use.
 */
int hidden_check(json_t *ast, hidden_parse_fn parse, void *ud, char *err, size_t errlen);

#endif
