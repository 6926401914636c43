/*
 * result.h - DuckDB result values as JSON and CSV text.
 *
 * Query answers are written straight from DuckDB's data chunks: a renderer is
 * built once per result column from its logical type (nested types included),
 * then each value is appended to a buf without going through DuckDB's own
 * string conversion. Times are UTC in the events' format
 * ("2026-11-25T10:00:00.123Z"); JSON-typed columns are embedded as JSON.
 */
#ifndef EVENTS_RESULT_H
#define EVENTS_RESULT_H

#include "buf.h"

#include <duckdb.h>

typedef struct result_type result_type;

/*
 * Builds the renderer of a column type. Returns NULL with a message in err
 * when a type (or a nested one) cannot be rendered: UNION, BIT, TIME WITH TIME
 * ZONE, BIGNUM and TIME_NS, which a query can CAST to VARCHAR.
 */
result_type *result_type_new(duckdb_logical_type t, char *err, size_t errlen);
void result_type_free(result_type *rt);

/* The type's SQL name ("BIGINT", "STRUCT(id VARCHAR, n INTEGER)", "JSON"). */
const char *result_type_name(const result_type *rt);

/*
 * What the renderers return: 0 when the value was appended, -1 when memory
 * ran out, RESULT_OVER when the value would take out->len past `limit`. A
 * string or blob is measured before it is copied, and a nested value after
 * each element, so out never grows more than a few bytes past limit however
 * large the value is (its size is bounded only by DuckDB's memory). After -1
 * or RESULT_OVER, out holds part of the value: the caller cuts it back.
 */
#define RESULT_OVER 1

/* Appends row `row` of vector v as a JSON value (null for NULL). */
int result_json(buf *out, const result_type *rt, duckdb_vector v, idx_t row, size_t limit);

/*
 * Appends row `row` as a CSV field (RFC 4180 quoting; strings as they are,
 * nested values as JSON, NULL as an empty field).
 */
int result_csv(buf *out, const result_type *rt, duckdb_vector v, idx_t row, size_t limit);

#endif
