/*
 * query_int.h - the query engine's inside: the engine's and a connection's
 * state and the functions its three files share (query.c says which file does
 * what). Only lake/query*.c include it.
 */
#ifndef EVENTS_QUERY_INT_H
#define EVENTS_QUERY_INT_H

#include "query.h"

#include <duckdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

typedef struct query__copies query__copies;
typedef struct query__copy query__copy;

struct query_engine {
    duckdb_database db;
    query__copies *copies; /* Parquet copies of raw files (query_copies.c); NULL: none */
    store *store;
    lake_writer *writer;
    lake_cache *cache;
    uint64_t max_rejected_line; /* query_config's */
    char *root;         /* the lake's directory, or NULL: an object store read through cache */
    char *volatile_fns; /* ",random,uuid,…,": DuckDB's volatile functions; read-only after open */
    pthread_mutex_t mu; /* conns, spare, and a conn's deadline_ms going to 0 (query_run) */
    query_conn *conns;
    /* DuckDB connections set up before the configuration was locked (a session setting cannot
     * be changed after), for query_conn_new to take and query_conn_free to give back */
    duckdb_connection *spare;
    int nspare;
    pthread_t watchdog;
    pthread_cond_t cv;
    int stop;
};

/* The hours a query can touch (query_view.c). */
/* The columns of each kind of rollup (docs/lake.md, "Rollups"), as compaction writes them and
 * the macros read them: LAKE_ROLLUP_RPC's (rpc_latency), LAKE_ROLLUP_COUNTS' (event_counts);
 * LAKE_ROLLUP_OBJECTS' are QUERY_OBJECTS_COLUMNS (query.h). */
#define QUERY_ROLLUP_COLUMNS "class, method, calls, errors, durations"
#define QUERY_COUNTS_COLUMNS "minute, type, collection, n"

typedef struct query__hours {
    int all;        /* every hour */
    int none;       /* the query cannot reach events */
    int raw;        /* the query can reach the whole event: the extracting view */
    int whole;      /* ... and reads every column of it (prune.h): one parse of each event */
    int64_t lo, hi; /* inclusive hour numbers */
    /* rollup: the query reads events only through one call of a macro that rollups answer
     * (prune.h), whose bounds are known to the microsecond: ts >= rollup_lo and ts < rollup_hi
     * (INT64_MAX: no upper bound). A compacted file of an hour wholly within is then read by its
     * rollup of that macro's kind (docs/lake.md, "Rollups"), rollup - 1; 0: none */
    int rollup;
    int64_t rollup_lo, rollup_hi;
    /* history: the query reads events only through one call of doc_history: a day's compacted
     * files are read by their history file when it holds exactly them (history.h) */
    int history;
} query__hours;

/*
 * A statement a connection runs for every query (the parse-tree helpers).
 * DuckDB 1.4 keeps every execution's result collector in a prepared
 * statement's plan until the statement is destroyed (about 600 bytes each;
 * duckdb/duckdb#21089), so one prepared statement run for every query grew
 * the server by that much per query, forever. It is therefore prepared again
 * after REUSE_MAX runs: at most REUSE_MAX collectors live per statement.
 */
typedef struct query__reused {
    const char *sql;
    duckdb_prepared_statement p; /* NULL until first needed */
    unsigned runs;
} query__reused;

/* The lake files a query reads (query_view.c). */
typedef struct query__live {
    const query__hours *h;
    lake_cache_item *it; /* key and size of each live file the query needs */
    unsigned char *parquet;
    size_t n, cap;
    query__copy **copies; /* the copies it reads instead of raw files, pinned; as many as it */
} query__live;

struct query_conn {
    query_engine *e;
    duckdb_connection c;
    query__reused serialize;     /* SELECT json_serialize_sql($1) */
    query__reused deserialize;   /* SELECT json_deserialize_sql($1::JSON) */
    json_t *eval_template;       /* parse tree of SELECT try(CAST(x AS TIMESTAMP)), … */
    _Atomic int64_t deadline_ms; /* monotonic; 0 when idle */
    _Atomic int timed_out;       /* the running query is to stop: set by the watchdog at its
                                  * deadline and by query_conn_interrupt, cleared at each start
                                  * unless stopped */
    _Atomic int stopped;         /* query_conn_interrupt was called (the server is stopping) */
    struct query__live fetched;  /* the lake files of the running query */
    query_conn *next;
};

/* query.c: DuckDB helpers every step uses */
int query__exec(duckdb_connection c, const char *sql, char *err, size_t errlen);
json_t *query__load_tree(const char *txt);
duckdb_prepared_statement query__reused_get(duckdb_connection c, query__reused *s);

/* query_view.c: the hours a query can touch and the views over their files */
query__hours query__hours_of(query_conn *q, json_t *ast, json_t *params, const char *table,
                             const char *column, int *aborted);
int query__make_view(query_conn *q, const query__hours *h, const query__hours *hr,
                     lake_writer_pins **pins, uint64_t *nfiles, char *err, size_t errlen);
void query__live_free(query_conn *q, query__live *l);

/* What a file of the live list is: an events JSONL file, a Parquet file of either layout, a
 * quarantine file, a rollup or a history file. */
enum {
    FILE_JSONL = 0,
    FILE_PARQUET = 1,
    FILE_REJECTED = 2,
    FILE_PARQUET_1 = 3,
    FILE_ROLLUP = 4,  /* a compacted file's rollup, read by a macro instead of the file */
    FILE_HISTORY = 5, /* a day's history file, read by doc_history instead of its files */
};
/* Adds a file to the live list: 0, or -2 out of memory. */
int query__live_add(query__live *l, const char *key, uint64_t size, int what);

/* query_history.c: a day's compacted files of l replaced by the day's history file, for every
 * day that has one made of exactly them (history.h). 0, or -1 with err. */
int query__history(query_engine *e, query__live *l, char *err, size_t errlen);

/*
 * query_copies.c: Parquet copies of the lake's raw files. query__copies_get pins the copy of the
 * raw file key of that size and gives its path, or gives NULL and has one made for later
 * queries (unless the file is under query_config.copies_min); query__copies_put unpins it (NULL is
 * ignored).
 */
int query__copies_open(query_engine *e, const char *dir, uint64_t max_bytes, uint64_t min_raw,
                       int64_t idle_ms, query__copies **out, char *err, size_t errlen);
void query__copies_close(query__copies *cp); /* NULL is ignored */
query__copy *query__copies_get(query__copies *cp, const char *key, uint64_t size,
                               const char **path);
void query__copies_put(query__copies *cp, query__copy *c);
void query__copies_stats_get(query__copies *cp, query_copies_stats *out);

/* query_run.c: one JSON value bound to parameter k of a statement */
duckdb_state query__bind_value(duckdb_prepared_statement p, idx_t k, json_t *v);

#endif
