/*
 * quantiles.h - the 0.5, 0.95 and 0.99 quantiles of rollups' sorted lists, as a DuckDB scalar
 * function.
 *
 *   _events_quantiles(LIST(LIST(DOUBLE))) -> DOUBLE[]
 *
 * For each row, the multiset of every non-NULL double of every sublist (a NULL sublist and a
 * NULL element are skipped); the result is what quantile_cont(x, [0.5, 0.95, 0.99]) returns
 * over that multiset: a list of 3 doubles, the same doubles bit for bit, with two exceptions
 * where DuckDB's order cannot tell values apart. A zero is returned as +0.0 (DuckDB counts -0.0
 * equal to 0.0 and returns whichever its selection left in place), and a NaN as the quiet NaN
 * 0x7ff8000000000000 (DuckDB counts every NaN equal, above +inf). The row's result is NULL when
 * the row is NULL or holds no value.
 *
 * It is meant for rollups that keep each part's values as list(x ORDER BY x): a sublist already
 * ascending in DuckDB's order is read in place, without a copy or a sort, and the quantiles of
 * many of them are found by bisection over the values' order (quantiles.c says how). Sublists
 * that are not ascending (or hold a NULL) are copied and sorted, or, when they are most of the
 * row, selected in like quantile_cont does.
 *
 * The aggregate _events_quantiles_agg(DOUBLE[]) -> DOUBLE[] gives the same over the lists of a
 * group's rows, each list one sublist, as rpc_latency takes them from rollups and rows: it keeps
 * each row's values in a block of its own (copied once) instead of DuckDB's list() of the lists,
 * which copies them element by element (on 2.75 M durations in 768 rows: 60 ms against 140).
 *
 * Threads: DuckDB calls the function from any of its threads, several at once; it keeps no
 * state between calls. Its memory is allocated and freed within a call; when an allocation
 * fails, the query fails with the error "_events_quantiles: out of memory …".
 */
#ifndef EVENTS_QUANTILES_H
#define EVENTS_QUANTILES_H

#include <duckdb.h>
#include <stddef.h>

/*
 * Registers _events_quantiles and _events_quantiles_agg on c: 0, or -1 with a message in err.
 * DuckDB keeps the function in its database's system catalog, so every connection of c's database
 * sees it from then on, and registering it a second time on the same database fails.
 */
int query_quantiles_register(duckdb_connection c, char *err, size_t errlen);

#endif
