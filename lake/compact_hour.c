/*
 * compact_hour.c - one hour's live files into Parquet files, in bounded memory
 * (compact_hour.h).
 *
 * Why chunks: DuckDB moves rows in vectors of 2048, whatever their width, and
 * to extract columns from JSON it keeps a parse arena as large as the JSON of
 * the vector it works on; a window or a sort holds all of its input, and the
 * Parquet writer a whole row group. One statement over a whole hour therefore
 * needs memory in proportion to the hour, and with large events (the CDC events
 * of big documents, 100-250 KB each) in proportion to their size too: an hour
 * of 24 MB needed 953 MB, and one of 4 GB still took 5.5 GB at a 4 GiB limit,
 * spilling to disk (bench/README.md): a vector of 2048 large rows is one
 * allocation, and a JSON parse is not spilled. So no statement here ever reads
 * more than chunk_bytes:
 *
 *   1. runs: the inputs, in the lake's order (segments by seal time, so a run
 *      covers a stretch of ts), are packed into chunks of at most chunk_bytes
 *      of JSON; a segment larger than a chunk is cut at line ends into pieces
 *      first. One statement per chunk writes one Parquet file of its rows, one
 *      per id, in QUERY_COMPACT_ORDER. A compacted input of at least half a chunk is
 *      kept as it is: it is deduplicated and sorted already, and a late event
 *      then does not rewrite the hour.
 *   2. across files: an id can still be in several files (a retry sealed into
 *      a later segment). Statements over the id and receivedAt columns of
 *      every file (never the events), each grouping at most key_rows ids (a
 *      class of their hashes), list for each id found in more than one file
 *      the rows that lose to the earliest receivedAt; each file holding such a
 *      row is written again without it, by one statement of its size.
 *
 * The events' columns come from one parse of each event (query_jsonl_select):
 * a parse per column, as the query view does, costs an arena per column.
 */
#include "compact_hour.h"

#include "buf.h"
#include "evrand.h"
#include "files.h"
#include "iceberg.h"
#include "partition.h"
#include "query.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COPY_BUF (1u << 20)
/* Row groups of 8192 rows (DuckDB's default is 122,880, a whole hour of most lakes): small
 * enough that their statistics let a document's history or a type skip most of a file
 * (QUERY_COMPACT_ORDER), large enough that a full scan does not notice them
 * (bench/README.md, "Queries on the compacted lake"). */
#define PARQUET_OPTS " (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 8192, %s)"

/* ---- statements ------------------------------------------------------------------ */

/* Runs sql; *count gets the first value (COPY: the rows written) if count is set. */
static int run_sql(duckdb_connection con, const char *sql, int64_t *count, const char *what,
                   char *err, size_t errlen)
{
    duckdb_result r;
    memset(&r, 0, sizeof r);
    if (duckdb_query(con, sql, &r) == DuckDBError) {
        snprintf(err, errlen, "compaction: %s: %s", what, duckdb_result_error(&r));
        duckdb_destroy_result(&r);
        return -1;
    }
    if (count) *count = duckdb_row_count(&r) ? duckdb_value_int64(&r, 0, 0) : 0;
    duckdb_destroy_result(&r);
    return 0;
}

/* Quoted paths, separated by commas. */
static void put_paths(buf *b, const char *const *paths, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i) buf_putc(b, ',');
        query_sql_quote(b, paths[i]);
    }
}

static void put_list(buf *b, const char *const *paths, size_t n)
{
    buf_putc(b, '[');
    put_paths(b, paths, n);
    buf_putc(b, ']');
}

/* A compacted file's rows and the bytes of its events (JSON, uncompressed), from its footer. */
static int parquet_facts(duckdb_connection con, const char *path, int layout, uint64_t *rows,
                         uint64_t *bytes, char *err, size_t errlen)
{
    buf sql = BUF_INIT;
    buf_puts(&sql, "SELECT (SELECT num_rows FROM parquet_file_metadata(");
    query_sql_quote(&sql, path);
    buf_puts(&sql, ")), (SELECT coalesce(sum(total_uncompressed_size), 0) FROM parquet_metadata(");
    query_sql_quote(&sql, path);
    buf_printf(&sql, ") WHERE path_in_schema = '%s')",
               layout == LAKE_LAYOUT_1 ? "event" : "_events_json");
    int rc = -1;
    duckdb_result r;
    memset(&r, 0, sizeof r);
    if (!buf_cstr(&sql)) {
        snprintf(err, errlen, "out of memory");
    } else if (duckdb_query(con, sql.p, &r) == DuckDBError) {
        snprintf(err, errlen, "compaction: cannot read the footer of %s: %s", path,
                 duckdb_result_error(&r));
    } else {
        *rows = (uint64_t)duckdb_value_int64(&r, 0, 0);
        *bytes = (uint64_t)duckdb_value_int64(&r, 1, 0);
        rc = 0;
    }
    duckdb_destroy_result(&r);
    buf_free(&sql);
    return rc;
}

/* ---- new files --------------------------------------------------------------------- */

static compact_hour_out *out_new(const compact_hour_job *job, compact_hour_result *res, char *err,
                                 size_t errlen)
{
    compact_hour_out *n = realloc(res->out, (res->nout + 1) * sizeof *n);
    if (!n) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    res->out = n;
    compact_hour_out *o = &n[res->nout];
    memset(o, 0, sizeof *o);
    evrand_uuid7(o->uuid);
    size_t len = strlen(job->dir) + 1 + LAKE_UUID_LEN + sizeof ".parquet";
    if (!(o->path = malloc(len))) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(o->path, len, "%s/%s.parquet", job->dir, o->uuid);
    res->nout++;
    return o;
}

/* Drops the last new file (written empty, or failed), and its rollup. */
static void out_drop_last(compact_hour_result *res)
{
    compact_hour_out *o = &res->out[--res->nout];
    unlink(o->path);
    free(o->path);
    for (int k = 0; k < LAKE_ROLLUP_KINDS; k++) {
        if (o->rollup[k]) unlink(o->rollup[k]);
        free(o->rollup[k]);
    }
}

/*
 * Finishes the statement that wrote `select` into a new file: runs it, and keeps the file if it
 * has rows (a chunk of torn lines has none).
 */
static int write_file(const compact_hour_job *job, buf *select, const char *what,
                      compact_hour_result *res, char *err, size_t errlen)
{
    compact_hour_out *o = out_new(job, res, err, errlen);
    if (!o) return -1;
    buf sql = BUF_INIT;
    buf_printf(&sql, "COPY (SELECT %s FROM (", QUERY_FILE_COLUMNS);
    buf_append(&sql, select->p, select->len);
    buf_puts(&sql, ")) TO ");
    query_sql_quote(&sql, o->path);
    buf_printf(&sql, PARQUET_OPTS, ice_duckdb_field_ids());
    int64_t rows = 0;
    int rc = buf_cstr(&sql) ? run_sql(job->con, sql.p, &rows, what, err, errlen) : -1;
    if (rc && !err[0]) snprintf(err, errlen, "out of memory");
    buf_free(&sql);
    if (rc || rows <= 0) {
        out_drop_last(res);
        return rc;
    }
    struct stat sb;
    o->rows = (uint64_t)rows;
    o->bytes = stat(o->path, &sb) ? 0 : (uint64_t)sb.st_size;
    res->statements++;
    return 0;
}

/* One chunk: its rows, one per id, in QUERY_COMPACT_ORDER, into a new file. */
static int write_chunk(const compact_hour_job *job, const char *const *json, size_t nj,
                       const char *const *pq, size_t np, compact_hour_result *res, char *err,
                       size_t errlen)
{
    if (!nj && !np) return 0;
    if (job->tick && job->tick(job->ud, err, errlen)) return -1;
    buf sel = BUF_INIT, json_list = BUF_INIT, pq_list = BUF_INIT;
    put_paths(&json_list, json, nj);
    put_paths(&pq_list, pq, np);
    /* a list cut short by a failed append would read fewer files: none, then */
    if ((nj && !buf_cstr(&json_list)) || (np && !buf_cstr(&pq_list))) {
        buf_free(&json_list);
        buf_free(&pq_list);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    buf_puts(&sel, "SELECT * FROM (");
    if (nj) query_jsonl_select(&sel, json_list.p, json_list.len);
    if (np) {
        if (nj) buf_puts(&sel, " UNION ALL BY NAME ");
        query_parquet_select(&sel, pq_list.p, pq_list.len, job->layout, 1);
    }
    buf_free(&json_list);
    buf_free(&pq_list);
    buf_puts(&sel, ") QUALIFY id IS NULL OR row_number() OVER (PARTITION BY id ORDER BY "
                   "receivedAt NULLS LAST) = 1 ORDER BY ");
    buf_puts(&sel, QUERY_COMPACT_ORDER);
    int rc = write_file(job, &sel, "writing a chunk", res, err, errlen);
    buf_free(&sel);
    return rc;
}

/* ---- a segment larger than a chunk ------------------------------------------------ */

/*
 * Copies the next piece of the segment fd from off into piece: it ends at the first line end past
 * target bytes if that comes within limit bytes, else at the last line end within limit, else (a
 * line longer than limit) at the end of that line. *next is where the piece ended.
 */
static int cut_piece(int fd, uint64_t off, uint64_t target, uint64_t limit, const char *piece,
                     char *copy, uint64_t *next, char *err, size_t errlen)
{
    int out = open(piece, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        snprintf(err, errlen, "compaction: cannot create %s: %s", piece, strerror(errno));
        return -1;
    }
    uint64_t n = 0, line_end = 0, cut = 0;
    int eof = 0, rc = -1;
    while (n < limit && !eof && !cut) {
        size_t want = limit - n < COPY_BUF ? (size_t)(limit - n) : COPY_BUF;
        ssize_t r = pread(fd, copy, want, (off_t)(off + n));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) goto io;
        if (r == 0) {
            eof = 1;
            break;
        }
        if (files_write_all(out, copy, (size_t)r, FILES_AT_POSITION)) goto io;
        /* a line end at index k of the buffer ends the piece at n + k + 1 */
        size_t from = n + 1 >= target ? 0 : (size_t)(target - n - 1);
        const char *nl = from < (size_t)r ? memchr(copy + from, '\n', (size_t)r - from) : NULL;
        if (nl) cut = n + (uint64_t)(nl - copy) + 1;
        nl = memrchr(copy, '\n', (size_t)r);
        if (nl) line_end = n + (uint64_t)(nl - copy) + 1;
        n += (uint64_t)r;
    }
    if (!cut && !eof) cut = line_end;
    if (cut) {
        /* the rest starts the next piece */
        if (ftruncate(out, (off_t)cut)) goto io;
        n = cut;
    } else if (!eof) {
        /* one line longer than limit: to its end */
        for (;;) {
            ssize_t r = pread(fd, copy, COPY_BUF, (off_t)(off + n));
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) goto io;
            if (r == 0) break;
            const char *nl = memchr(copy, '\n', (size_t)r);
            size_t take = nl ? (size_t)(nl - copy) + 1 : (size_t)r;
            if (files_write_all(out, copy, take, FILES_AT_POSITION)) goto io;
            n += take;
            if (nl) break;
        }
    }
    *next = off + n;
    rc = 0;
io:
    if (rc) snprintf(err, errlen, "compaction: cannot cut %s: %s", piece, strerror(errno));
    if (close(out) && !rc) {
        snprintf(err, errlen, "compaction: cannot write %s: %s", piece, strerror(errno));
        rc = -1;
    }
    return rc;
}

/* A segment larger than a chunk: a chunk per piece, the pieces of even size. */
static int write_pieces(const compact_hour_job *job, const compact_hour_in *in,
                        compact_hour_result *res, char *err, size_t errlen)
{
    uint64_t pieces = (in->size + job->chunk_bytes - 1) / job->chunk_bytes;
    uint64_t target = (in->size + pieces - 1) / pieces;
    int fd = open(in->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "compaction: cannot open %s: %s", in->path, strerror(errno));
        return -1;
    }
    char piece[4096] = "";
    char *copy = malloc(COPY_BUF);
    int rc = copy ? 0 : -1;
    if (!copy) snprintf(err, errlen, "out of memory");
    for (uint64_t off = 0, k = 0; !rc && off < in->size; k++) {
        /* a name per piece: DuckDB may keep what it read of a file by its name */
        snprintf(piece, sizeof piece, "%s/piece-%llu.jsonl", job->dir, (unsigned long long)k);
        uint64_t next = off;
        rc = cut_piece(fd, off, target, job->chunk_bytes, piece, copy, &next, err, errlen);
        if (rc || next == off) break; /* next == off: the file is shorter than listed */
        const char *one = piece;
        rc = write_chunk(job, &one, 1, NULL, 0, res, err, errlen);
        unlink(piece);
        off = next;
    }
    if (piece[0]) unlink(piece); /* after a failure */
    free(copy);
    close(fd);
    return rc;
}

/* ---- 1. runs ------------------------------------------------------------------------ */

typedef struct chunk {
    const char **json, **pq;
    size_t nj, np;
    uint64_t bytes;
} chunk;

static int chunk_flush(const compact_hour_job *job, chunk *c, compact_hour_result *res, char *err,
                       size_t errlen)
{
    int rc = write_chunk(job, c->json, c->nj, c->pq, c->np, res, err, errlen);
    c->nj = c->np = 0;
    c->bytes = 0;
    return rc;
}

/* weight[i]: the JSON bytes of input i (a compacted file's events, uncompressed). */
static int write_runs(const compact_hour_job *job, const uint64_t *weight, compact_hour_result *res,
                      char *err, size_t errlen)
{
    size_t cap = job->nin ? job->nin : 1;
    chunk c = {calloc(cap, sizeof(char *)), calloc(cap, sizeof(char *)), 0, 0, 0};
    int rc = c.json && c.pq ? 0 : -1;
    if (rc) snprintf(err, errlen, "out of memory");
    for (size_t i = 0; !rc && i < job->nin; i++) {
        const compact_hour_in *in = &job->in[i];
        if (in->kept) continue;
        if (!in->parquet && weight[i] > job->chunk_bytes) {
            rc = chunk_flush(job, &c, res, err, errlen);
            if (!rc) rc = write_pieces(job, in, res, err, errlen);
            continue;
        }
        if ((c.nj || c.np) && c.bytes + weight[i] > job->chunk_bytes)
            rc = chunk_flush(job, &c, res, err, errlen);
        if (in->parquet)
            c.pq[c.np++] = in->path;
        else
            c.json[c.nj++] = in->path;
        c.bytes += weight[i];
    }
    if (!rc) rc = chunk_flush(job, &c, res, err, errlen);
    free(c.json);
    free(c.pq);
    return rc;
}

/* ---- 2. one row per id across files ----------------------------------------------- */

/*
 * A file with rows that lose to another file's: written again without them, into a new file
 * that takes its place (a new file's old copy is unlinked; a kept input is kept no longer).
 */
static int rewrite_without_losers(const compact_hour_job *job, const char *path,
                                  compact_hour_result *res, char *err, size_t errlen)
{
    if (job->tick && job->tick(job->ud, err, errlen)) return -1;
    size_t was = res->nout;
    for (size_t i = 0; i < res->nout; i++)
        if (!strcmp(res->out[i].path, path)) was = i;
    compact_hour_in *kept = NULL;
    for (size_t i = 0; was == res->nout && i < job->nin; i++)
        if (job->in[i].kept && !strcmp(job->in[i].path, path)) kept = &job->in[i];
    if (was == res->nout && !kept) {
        snprintf(err, errlen, "compaction: DuckDB named a file it was not given: %s", path);
        return -1;
    }
    buf sel = BUF_INIT;
    buf_puts(&sel, "SELECT * FROM read_parquet(");
    query_sql_quote(&sel, path);
    buf_puts(&sel, ") p WHERE NOT EXISTS (SELECT 1 FROM compact_losers l WHERE l.filename = ");
    query_sql_quote(&sel, path);
    buf_puts(&sel, " AND l.id = p.id) ORDER BY ");
    buf_puts(&sel, QUERY_COMPACT_ORDER);
    int rc = write_file(job, &sel, "removing duplicates", res, err, errlen);
    buf_free(&sel);
    if (rc) return -1;
    if (kept) {
        kept->kept = 0;
    } else {
        /* the new copy (if it has rows) is last; the old one goes */
        unlink(res->out[was].path);
        free(res->out[was].path);
        memmove(&res->out[was], &res->out[was + 1], (res->nout - was - 1) * sizeof *res->out);
        res->nout--;
    }
    return 0;
}

/*
 * The rows that lose to another file's row of the same id into the table compact_losers
 * (filename, id). Grouping every id of the hour at once needs memory in proportion to the
 * hour: the ids are taken in passes, those whose hash falls in one of `passes` classes each.
 */
static int find_losers(const compact_hour_job *job, const char *const *all, size_t n,
                       uint64_t passes, char *err, size_t errlen)
{
    if (run_sql(job->con,
                "CREATE OR REPLACE TEMP TABLE compact_losers (filename VARCHAR, id VARCHAR)", NULL,
                "finding duplicates across files", err, errlen))
        return -1;
    for (uint64_t k = 0; k < passes; k++) {
        if (job->tick && job->tick(job->ud, err, errlen)) return -1;
        buf sql = BUF_INIT;
        buf_puts(&sql, "INSERT INTO compact_losers SELECT filename, id FROM (SELECT filename, id, "
                       "row_number() OVER (PARTITION BY id ORDER BY receivedAt NULLS LAST, "
                       "filename) AS rn FROM read_parquet(");
        put_list(&sql, all, n);
        buf_puts(&sql, ", filename = true) WHERE id IN (SELECT id FROM read_parquet(");
        put_list(&sql, all, n);
        buf_printf(&sql,
                   ") WHERE id IS NOT NULL AND hash(id) %% %llu = %llu GROUP BY id HAVING "
                   "count(*) > 1)) WHERE rn > 1",
                   (unsigned long long)passes, (unsigned long long)k);
        int rc = buf_cstr(&sql) ? run_sql(job->con, sql.p, NULL, "finding duplicates across files",
                                          err, errlen)
                                : -1;
        if (rc && !err[0]) snprintf(err, errlen, "out of memory");
        buf_free(&sql);
        if (rc) return -1;
    }
    return 0;
}

static int dedup_across(const compact_hour_job *job, compact_hour_result *res, char *err,
                        size_t errlen)
{
    size_t n = res->nout;
    uint64_t rows = 0;
    for (size_t i = 0; i < res->nout; i++) rows += res->out[i].rows;
    for (size_t i = 0; i < job->nin; i++)
        if (job->in[i].kept) n++, rows += job->in[i].rows;
    if (n < 2) return 0; /* ids are unique within a file */
    const char **all = malloc(n * sizeof *all);
    if (!all) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < res->nout; i++) all[k++] = res->out[i].path;
    for (size_t i = 0; i < job->nin; i++)
        if (job->in[i].kept) all[k++] = job->in[i].path;
    uint64_t per_pass = job->key_rows ? job->key_rows : 1;
    int rc = find_losers(job, all, n, rows / per_pass + 1, err, errlen);
    free(all);
    if (rc) return -1;

    /* the files to write again: a few names, whatever the number of duplicates */
    duckdb_result r;
    memset(&r, 0, sizeof r);
    if (duckdb_query(job->con, "SELECT DISTINCT filename FROM compact_losers ORDER BY 1", &r) ==
        DuckDBError) {
        snprintf(err, errlen, "compaction: finding duplicates across files: %s",
                 duckdb_result_error(&r));
        duckdb_destroy_result(&r);
        return -1;
    }
    idx_t nf = duckdb_row_count(&r);
    for (idx_t i = 0; !rc && i < nf; i++) {
        char *path = duckdb_value_varchar(&r, 0, i);
        rc = path ? rewrite_without_losers(job, path, res, err, errlen) : -1;
        if (!path) snprintf(err, errlen, "out of memory");
        duckdb_free(path);
    }
    duckdb_destroy_result(&r);
    if (!rc) rc = run_sql(job->con, "DROP TABLE compact_losers", NULL, "cleaning up", err, errlen);
    return rc;
}

/* ---- 3. rollups ---------------------------------------------------------------------- */

/* Each kind's rows (layout.h), after the file's: which rows it sums up, then how. */
static const char *const ROLLUP_ROWS[LAKE_ROLLUP_KINDS] = {" WHERE type = 'rpc.call'", "",
                                                           " WHERE \"do\".id IS NOT NULL"};
static const char *const ROLLUP_SELECT[LAKE_ROLLUP_KINDS] = {
    "SELECT \"do\".\"class\" AS class, method, count(*) AS calls, "
    "count(*) FILTER (success IS FALSE OR error IS NOT NULL) AS errors, "
    "list(durationMs ORDER BY durationMs) FILTER (durationMs IS NOT NULL) AS durations",
    "SELECT date_trunc('minute', ts) AS minute, type, collection, count(*) AS n",
    QUERY_OBJECTS_SUMS};

/*
 * 1 in outside[k] when a row that the rollup of kind k would sum up lies outside the hour (or
 * has no ts): a bound could then not tell whether the rollup's rows are in range. The footer's
 * statistics on ts mostly answer it for every kind at once; else the rows, one by one.
 */
static int rollup_outside(const compact_hour_job *job, const char *path, const char *from,
                          int64_t outside[LAKE_ROLLUP_KINDS], char *err, size_t errlen)
{
    buf sql = BUF_INIT;
    long long lo = (long long)job->hour * 3600000000LL, hi = lo + 3600000000LL;
    buf_puts(&sql, "SELECT CASE WHEN sum(stats_null_count) = 0 AND "
                   "min(epoch_us(stats_min_value::TIMESTAMPTZ)) >= ");
    buf_printf(&sql,
               "%lld AND max(epoch_us(stats_max_value::TIMESTAMPTZ)) < %lld THEN 0 ELSE 1 "
               "END FROM parquet_metadata(",
               lo, hi);
    query_sql_quote(&sql, path);
    buf_puts(&sql, ") WHERE path_in_schema = 'ts'");
    int64_t any = 0;
    int rc = buf_cstr(&sql)
                 ? run_sql(job->con, sql.p, &any, "checking the rollups' hour", err, errlen)
                 : -1;
    for (int k = 0; !rc && k < LAKE_ROLLUP_KINDS; k++) {
        outside[k] = any;
        if (!any) continue;
        sql.len = 0;
        buf_printf(&sql,
                   "SELECT count(*) %s%s%s (ts IS NULL OR ts < make_timestamp(%lld) OR "
                   "ts >= make_timestamp(%lld))",
                   from, ROLLUP_ROWS[k], ROLLUP_ROWS[k][0] ? " AND" : " WHERE", lo, hi);
        rc = buf_cstr(&sql)
                 ? run_sql(job->con, sql.p, &outside[k], "checking the rollups' hour", err, errlen)
                 : -1;
    }
    if (rc && !err[0]) snprintf(err, errlen, "out of memory");
    buf_free(&sql);
    return rc;
}

/*
 * A new file's rollups (docs/lake.md, "Rollups"), read back from the file through the query
 * view's columns, so that a macro over whole hours reads them instead of the events and gives
 * the same answer:
 *   - rpc: its rpc.call events per class and method, with their count, their errors as
 *     rpc_latency counts them and their non-NULL durations in order (rpc_latency);
 *   - counts: its events counted per minute, type and collection (event_counts);
 *   - objects: its events per emitting object (objects, QUERY_OBJECTS_SUMS).
 * None of a kind when a row it sums up lies outside the partition's hour (rollup_outside). A
 * file without such rows gets an empty rollup, which says so.
 */
static int write_rollups(const compact_hour_job *job, compact_hour_out *o, char *err, size_t errlen)
{
    buf from = BUF_INIT, sql = BUF_INIT, q = BUF_INIT;
    buf_puts(&from, "FROM (");
    query_sql_quote(&q, o->path);
    query_parquet_select(&from, q.p ? q.p : "", q.len, LAKE_LAYOUT_2, 0);
    buf_free(&q);
    buf_putc(&from, ')');
    int64_t outside[LAKE_ROLLUP_KINDS];
    int rc = buf_cstr(&from) ? rollup_outside(job, o->path, from.p, outside, err, errlen) : -1;
    for (int k = 0; !rc && k < LAKE_ROLLUP_KINDS; k++) {
        if (outside[k]) continue;
        size_t len = strlen(job->dir) + 2 + LAKE_UUID_LEN + strlen(lake_rollup_ext[k]) + 1;
        if (!(o->rollup[k] = malloc(len))) {
            rc = -1;
            break;
        }
        snprintf(o->rollup[k], len, "%s/%s.%s", job->dir, o->uuid, lake_rollup_ext[k]);
        sql.len = 0;
        buf_printf(&sql, "COPY (%s %s%s GROUP BY ALL ORDER BY ALL) TO ", ROLLUP_SELECT[k], from.p,
                   ROLLUP_ROWS[k]);
        query_sql_quote(&sql, o->rollup[k]);
        buf_puts(&sql, " (FORMAT parquet, COMPRESSION zstd)");
        rc = buf_cstr(&sql) ? run_sql(job->con, sql.p, NULL, "writing a rollup", err, errlen) : -1;
    }
    if (rc && !err[0]) snprintf(err, errlen, "out of memory");
    buf_free(&sql);
    buf_free(&from);
    return rc;
}

/* ---- the hour ------------------------------------------------------------------------ */

int compact_hour_run(const compact_hour_job *job, compact_hour_result *res, char *err,
                     size_t errlen)
{
    memset(res, 0, sizeof *res);
    err[0] = 0;
    uint64_t *weight = calloc(job->nin ? job->nin : 1, sizeof *weight);
    if (!weight) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; !rc && i < job->nin; i++) {
        compact_hour_in *in = &job->in[i];
        in->kept = 0;
        in->rows = 0;
        weight[i] = in->size;
        if (in->parquet) {
            rc = parquet_facts(job->con, in->path, job->layout, &in->rows, &weight[i], err, errlen);
            in->kept = !rc && job->layout == LAKE_LAYOUT_2 &&
                       (job->keep_all || weight[i] >= job->chunk_bytes / 2);
        }
    }
    if (!rc) rc = write_runs(job, weight, res, err, errlen);
    if (!rc) rc = dedup_across(job, res, err, errlen);
    for (size_t i = 0; !rc && i < res->nout; i++)
        rc = write_rollups(job, &res->out[i], err, errlen);
    free(weight);
    if (rc) {
        while (res->nout) out_drop_last(res);
        compact_hour_result_free(res);
        return -1;
    }
    for (size_t i = 0; i < res->nout; i++) res->rows += res->out[i].rows;
    for (size_t i = 0; i < job->nin; i++)
        if (job->in[i].kept) res->rows += job->in[i].rows;
    return 0;
}

void compact_hour_result_free(compact_hour_result *res)
{
    for (size_t i = 0; i < res->nout; i++) {
        free(res->out[i].path);
        for (int k = 0; k < LAKE_ROLLUP_KINDS; k++) free(res->out[i].rollup[k]);
    }
    free(res->out);
    memset(res, 0, sizeof *res);
}
