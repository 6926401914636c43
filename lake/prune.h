/*
 * prune.h - which hours of the lake a query can need.
 *
 * Raw JSONL files carry no statistics, so DuckDB cannot skip a file on a `ts`
 * filter by itself. Instead the query engine gives each query an `events`
 * view over only the hour partitions it can touch. This module finds them
 * from DuckDB's own parse tree of the query (json_serialize_sql): for every
 * reference to `events`, the conjuncts of its SELECT's WHERE that compare
 * `ts` with an expression free of columns and subqueries (a literal, $1,
 * now() - INTERVAL 1 HOUR) bound it below or above; events_between(a, b),
 * rpc_latency(since), event_counts(since), objects(since), their
 * _between(a, b) forms and collection_at(c, t) bound it by their arguments.
 *
 * The answer is always a superset: a reference it cannot bound (a `ts` test
 * under OR, a view hidden in a string passed to query(), a CTE named events)
 * makes the query unbounded, and then every file is read.
 *
 * It also tells whether the query can reach the whole event (`raw`): a column
 * named `_events_json`, a star, or the table itself used as a value (`SELECT e FROM
 * events e`). Queries that cannot are given a faster view without it.
 *
 * The same analysis bounds the quarantine's view, `rejected`, by its
 * `receivedAt` (prune_analyse_table): its files are partitioned by receive
 * hour. The engine's macros read only events.
 */
#ifndef EVENTS_PRUNE_H
#define EVENTS_PRUNE_H

#include <jansson.h>

#define PRUNE_MAX_BOUNDS 32

/* A bound: an expression from the parse tree (borrowed), and its sense. */
typedef struct prune_bound {
    json_t *expr;
    int strict; /* lower: ts > expr; upper: ts < expr (else >=, <=) */
} prune_bound;

/* The bounds on one reference to events: ts >= every lo, ts <= every hi. */
typedef struct prune_ref {
    prune_bound lo[PRUNE_MAX_BOUNDS], hi[PRUNE_MAX_BOUNDS];
    int nlo, nhi;
    /* a call of a macro that rollups can answer (layout.h, docs/lake.md): the rollups' kind + 1
     * (rpc_latency, rpc_latency_between: LAKE_ROLLUP_RPC; event_counts, event_counts_between:
     * LAKE_ROLLUP_COUNTS; objects, objects_between: LAKE_ROLLUP_OBJECTS), else 0;
     * between: the _between one (lo, hi), else lo is its since */
    int rollup, between;
    int history; /* a call of doc_history, which history files can answer (history.h) */
} prune_ref;

typedef struct prune_result {
    int raw;         /* the query can reach the whole event (the view's _events_json column) */
    int whole;       /* ... through a star or the table as a value: it reads every column */
    int unbounded;   /* some reference has no usable bound on one side: read everything */
    int no_events;   /* the query cannot reach events at all */
    prune_ref *refs; /* one per reference to events */
    int nrefs;
    const char *why; /* when unbounded: the reason, for logs and tests */
} prune_result;

/*
 * Analyses the output of json_serialize_sql() for one statement. Fills r;
 * the bounds borrow from ast, which must outlive r. Release with prune_free.
 */
void prune_analyse(json_t *ast, prune_result *r);

/* The same for the references to another view, table, bounded by its column column. */
void prune_analyse_table(json_t *ast, const char *table, const char *column, prune_result *r);
void prune_free(prune_result *r);

#endif
