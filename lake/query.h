/*
 * query.h - SQL over the lake with embedded DuckDB, sandboxed.
 *
 * One engine per process owns one in-memory DuckDB database. Before a query
 * runs, its connection gets a temporary view `events` over the lake files it
 * can need (prune.h: only the hour partitions its `ts` bounds allow) and,
 * when a writer is attached, over the spool segments not yet sealed, so that
 * an acknowledged event is visible at once. The macros doc_history,
 * collection_at, rpc_latency and events_between are defined over that view.
 * A second view, `rejected`, reads the quarantine (quarantine.h) the same way:
 * its files and spool segments of the hours its `receivedAt` bounds allow,
 * and none when the query does not name it.
 *
 * The sandbox: only SELECT and EXPLAIN statements run (checked on the
 * prepared statement's type), one statement per query; DuckDB may read only
 * the lake and the spool (allowed_directories, enable_external_access=false,
 * no extension loading), its configuration is locked, memory is limited, a
 * query is interrupted at its deadline (also while its answer is written),
 * and an answer stops at max_rows rows or max_bytes bytes.
 *
 * Threads: a query_conn runs one query at a time on the calling thread;
 * several conns run queries in parallel. query_conn_interrupt may be called
 * from any thread.
 */
#ifndef EVENTS_QUERY_H
#define EVENTS_QUERY_H

#include "buf.h"
#include "cache.h"
#include "store.h"
#include "writer.h"

#include <jansson.h>
#include <stdint.h>

/* The events view's columns as a select list over one JSON column `json`. */
extern const char QUERY_VIEW_COLUMNS[];

/*
 * Appends SELECT <the view's columns> FROM read_ndjson_objects([files]) for raw files, with the
 * same values as QUERY_VIEW_COLUMNS but from one parse of each event: files is a list of
 * quoted paths, len its length. A torn line, and a line with neither id nor type, is no event.
 * QUERY_VIEW_COLUMNS parses the event once per field, and DuckDB keeps a parse arena per field
 * for the whole chunk it works on; compaction, which writes every column of large events, needs
 * the memory of one, and a query of every column (a star) the time of one.
 */
void query_jsonl_select(buf *b, const char *files, size_t len);

/*
 * The order of a compacted file's rows, an ORDER BY list of the view's columns: a
 * collection's changes first, grouped by document, then the other events by type, each
 * type by ts. With small row groups, their min/max statistics on docId let a document's
 * history read one row group of a file, and those on type let a filter on type skip the
 * others'. A file's range of ts is the same in any order: a time filter still skips files.
 */
extern const char QUERY_COMPACT_ORDER[];

/*
 * An objects rollup's rows (docs/lake.md, "Rollups"), as compaction writes them from a file's
 * rows and objects() sums up the rows it reads, over the view's columns, grouped by
 * "do".class and "do".id: of each object, its latest name and colo, when it was last seen, its
 * latest lifecycle (do.*) event, its WebSocket connects, messages and closes, and its events.
 * A latest value is max({'ts': ts, 'v': value}): the one at the greatest ts, the greatest value
 * among equal ts, so that it is the same whatever the files and the order of the rows.
 */
#define QUERY_OBJECTS_SUMS                                                                         \
    "SELECT \"do\".\"class\" AS class, \"do\".id AS id, "                                          \
    "max({'ts': ts, 'v': \"do\".\"name\"}) FILTER (\"do\".\"name\" IS NOT NULL) AS name, "         \
    "max({'ts': ts, 'v': \"do\".colo}) FILTER (\"do\".colo IS NOT NULL) AS colo, "                 \
    "max(ts) AS last_seen, max({'ts': ts, 'v': type}) FILTER (type LIKE 'do.%') AS lifecycle, "    \
    "count(*) FILTER (type = 'ws.connect') AS connects, "                                          \
    "count(*) FILTER (type = 'ws.message') AS messages, "                                          \
    "count(*) FILTER (type IN ('ws.close', 'ws.error')) AS closes, count(*) AS events"
#define QUERY_OBJECTS_COLUMNS                                                                      \
    "class, id, name, colo, last_seen, lifecycle, connects, messages, closes, events"

/*
 * A compacted file's columns (layout 2, partition.h), the Iceberg table's, as a select list
 * over the view's columns (ice_duckdb_field_ids, iceberg.h, gives their field ids). The
 * whole event is the column _events_json, a name ingest refuses as a member, so that no
 * column hides a member an event carries.
 */
extern const char QUERY_FILE_COLUMNS[];

/*
 * Appends SELECT <the view's columns> FROM read_parquet([files]) for compacted files of the
 * layout (LAKE_LAYOUT_1 or _2): files is a list of quoted paths, len its length; whole: with
 * _events_json.
 */
void query_parquet_select(buf *b, const char *files, size_t len, int layout, int whole);
/* read_parquet's schema option for a compacted file of layout 2: its columns by field id. */
extern const char QUERY_PARQUET_SCHEMA[];

/* Appends s as a SQL string literal ('…', quotes doubled). */
void query_sql_quote(buf *b, const char *s);

typedef struct query_engine query_engine;
typedef struct query_conn query_conn;

typedef struct query_config {
    store *store;          /* the lake */
    lake_writer *writer;   /* its unsealed segments are read too; NULL: sealed files only */
    uint64_t memory_limit; /* DuckDB memory_limit in bytes; 0: 1 GiB */
    int threads;           /* DuckDB threads; 0: DuckDB's default (one per CPU) */
    lake_cache *cache;     /* where an object store's files are read from; NULL for a directory */
    int conns;             /* query_conns that may exist at once; 0: 4 */
    /* the longest quarantine line the lake can hold: twice the largest request body the
     * servers take, and a little (quarantine.h); 0: that of the default 8 MiB */
    uint64_t max_rejected_line;
    /* Parquet copies of the raw files queries read, made by a thread of the engine and read by
     * later queries instead (lake/query_copies.c), in this directory (emptied at open; it must
     * be one the sandbox lets DuckDB write: within the spool, the lake's directory or the
     * cache), copies_max bytes at most.
     * NULL or 0: none */
    const char *copies_dir;
    uint64_t copies_max;
    int64_t copies_idle_ms; /* a copy not read for this long may go for another; 0: a minute */
    uint64_t copies_min;    /* raw files smaller than this are always read raw; 0: none */
} query_config;

/* What the copies of raw files hold and have done (query_config.copies_dir). */
typedef struct query_copies_stats {
    uint64_t files, bytes, max_bytes;
    uint64_t hits;   /* raw files a query read from their copy */
    uint64_t misses; /* raw files a query read raw */
    uint64_t made, evicted;
    uint64_t failed;  /* raw files that could not be copied (gone, unreadable), and copies found
                       * missing or changed on the disk (the raw file is read instead) */
    uint64_t dropped; /* copies not made: no room (the copies at the limit were all read within
                       * copies_idle_ms), or the queue was full */
} query_copies_stats;

int query_engine_open(const query_config *cfg, query_engine **out, char *err, size_t errlen);
void query_engine_close(query_engine *e); /* NULL is ignored; no conn may be running */
/* The copies' figures; 0 when the engine makes none. */
void query_engine_copies_stats(query_engine *e, query_copies_stats *out);

/*
 * A connection for one query at a time. NULL with a message on failure, also
 * when query_config.conns of them exist already (DuckDB's connections are set
 * up when the engine opens: its configuration is locked after).
 */
query_conn *query_conn_new(query_engine *e, char *err, size_t errlen);
void query_conn_free(query_conn *c);

/* Stops the query running on c (from any thread): it ends with QUERY_ETIMEDOUT, its error
 * "query stopped: the server is shutting down". */
void query_conn_interrupt(query_conn *c);

enum query_format { QUERY_JSON, QUERY_CSV, QUERY_NDJSON };

#define QUERY_MAX_BYTES_DEFAULT (32ull << 20)

typedef struct query_request {
    const char *sql;
    json_t *params; /* JSON array of strings, numbers, booleans, null; or NULL */
    enum query_format format;
    uint64_t max_rows;  /* 0: 100,000 */
    int64_t timeout_ms; /* 0: 30 s */
    uint64_t max_bytes; /* the answer's rows at most this many bytes; 0: 32 MiB */
} query_request;

/*
 * Where the answer goes, in pieces as DuckDB produces the rows: the first is
 * handed over once 64 KiB are rendered (or the answer ended before), so that
 * a query failing before then still gets an error answer, and from then on
 * every 64 KiB. begin is called once, before the first write, when the answer
 * is known to be rows, not an error. write hands over the next bytes; it may
 * wait while the client is behind, but not past deadline_ms (monotonic), and
 * not at all when deadline_ms is 0 (the few bytes that end an answer). Either
 * returns nonzero to stop the query: the client left, or the deadline passed.
 */
typedef struct query_sink {
    int (*begin)(void *ud, const char *content_type);
    int (*write)(void *ud, const char *p, size_t n, int64_t deadline_ms);
    void *ud;
} query_sink;

/*
 * How a query ended (query_outcome.code): QUERY_OK or a negative code. What
 * answer each makes is the caller's to decide; server/query_http.c maps them
 * to HTTP statuses.
 */
enum {
    QUERY_OK = 0,
    /* refused (not one read statement, something the sandbox forbids, bad params, a column
     * type that cannot be sent) or failed in DuckDB, out of its memory limit included:
     * the statement is the client's to change */
    QUERY_EREFUSED = -1,
    /* the client left: the sink's begin or write said stop before the deadline */
    QUERY_EGONE = -2,
    /* the engine failed around the query: a step before it (its transaction, its views),
     * or memory to render the answer */
    QUERY_EINTERNAL = -3,
    /* the time limit passed (query_request.timeout_ms), also while the client was slow
     * to take the answer */
    QUERY_ETIMEDOUT = -4
};

/*
 * How an answer ended. An answer that began (`streamed`) may still end
 * early, after its first rows were sent (`cut`): at max_bytes, or because the
 * query failed on the way (code then says how, and error why). A JSON answer
 * then stays valid JSON: its rows so far, "truncated":true and "error":"…"; an
 * NDJSON answer ends with a line {"error":"…"}; CSV has no place for it, so a
 * CSV stream must end without its last chunk. When the client did not take
 * the rows in time (or left), the answer is `broken`: cut in the middle of a
 * write, with no marker, and every format's stream must end without its last
 * chunk.
 */
typedef struct query_outcome {
    int code;          /* QUERY_OK, or a QUERY_E* code above */
    char error[1024];  /* when code != QUERY_OK, and why a cut answer was cut */
    int streamed;      /* begin was called */
    int cut;           /* ended early after it began, with the marker described above */
    int broken;        /* ended in the middle of a write: no marker */
    uint64_t rows;     /* rows sent */
    int truncated;     /* fewer rows were sent than the query made (max_rows, max_bytes, cut) */
    int over_bytes;    /* max_bytes was reached */
    int out_of_memory; /* DuckDB ran out of memory (its limit, or the process's) */
    uint64_t bytes;    /* bytes handed to the sink */
    uint64_t files;    /* lake files and spool segments the events view read from */
    double elapsed_ms;
} query_outcome;

/* Runs one query. The outcome says how it ended. */
void query_run(query_conn *c, const query_request *req, const query_sink *sink, query_outcome *out);

/* Convenience for the command line and tests: the whole answer into a buf. */
void query_run_to_buf(query_conn *c, const query_request *req, buf *answer, query_outcome *out);

#endif
