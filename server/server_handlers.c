/*
 * server_handlers.c - the endpoints besides ingest: /query, /snapshots,
 * /health, /metrics, /tail and the dashboard.
 *
 * Each handler is called once the request's body is whole and answers it,
 * or, for a query, hands it to a query worker (query_http.h) and suspends
 * the connection until the worker has its answer. A handler decides the
 * status of the answer from what the module below it returned.
 */
#include "server_int.h"
#include "evtime.h"
#include "log.h"
#include "web.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum MHD_Result server__handle_query(server__srv *s, server__req *r)
{
    const char *format = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "format");
    char err[256];
    int rc = query_http_submit(s->queries, r->conn, r->body.p ? r->body.p : "", r->body.len, format,
                               &r->job, err, sizeof err);
    buf_free(&r->body);
    if (rc)
        return server__send_error(r,
                                  rc == QUERY_HTTP_EBUSY    ? 429
                                  : rc == QUERY_HTTP_ENOMEM ? 503
                                                            : 400,
                                  "%s", err);
    r->state = SERVER__ST_WAITING;
    atomic_fetch_add(&s->waiting, 1);
    MHD_suspend_connection(r->conn);
    return MHD_YES;
}

/* A snapshot endpoint's answer: b's JSON, or the error {"ok":false,"error":err} when status
 * is not 2xx. */
static enum MHD_Result send_snapshot_answer(server__req *r, unsigned status, buf *b,
                                            const char *err)
{
    if (status >= 300) {
        b->len = 0;
        ingest_error_json(b, err);
    }
    enum MHD_Result ok = server__send_json(r, status, b, NULL, NULL);
    buf_free(b);
    return ok;
}

/* PUT /snapshots/S/B, its body whole: checked and stored. */
static enum MHD_Result finish_upload(server__srv *s, server__req *r)
{
    buf b = BUF_INIT;
    char err[600];
    int rc = snapshots_finish(r->snap, s->store, &b, err, sizeof err);
    r->snap = NULL;
    if (rc == 0)
        log_msg(LOG_INFO, "snapshot stored", "source", r->snap_source, "bookmark", r->snap_bookmark,
                LOG_END);
    unsigned status = rc == 0                  ? 201
                      : rc == 1                ? 200
                      : rc == SNAPSHOTS_EINVAL ? 422
                      : rc == SNAPSHOTS_EEXIST ? 409
                                               : 503;
    return send_snapshot_answer(r, status, &b, err);
}

/* GET /snapshots[?source=S]: the manifests. */
static enum MHD_Result list_snapshots(server__srv *s, server__req *r)
{
    buf b = BUF_INIT;
    char err[600];
    const char *src = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "source");
    int rc = snapshots_list(s->store, src && *src ? src : NULL, &b, err, sizeof err);
    return send_snapshot_answer(r, rc == 0 ? 200 : rc == SNAPSHOTS_EINVAL ? 400 : 503, &b, err);
}

/*
 * GET /snapshots/S/B: the file, streamed from a file, never held in memory: a
 * slow reader costs a descriptor and, for an object store, a temporary file;
 * their number is bounded.
 */
static enum MHD_Result send_snapshot(server__srv *s, server__req *r)
{
    if (atomic_fetch_add(&s->snap_downloads, 1) >= s->cfg.snapshot_downloads) {
        atomic_fetch_sub(&s->snap_downloads, 1); /* before the answer: a client may look */
        s->snap_downloads_refused++;
        return server__send_error(r, 503,
                                  "%d snapshot downloads are running, the most this server takes "
                                  "(--snapshot-downloads)",
                                  s->cfg.snapshot_downloads);
    }
    r->snap_download = 1; /* counted until the request completes */
    int fd;
    uint64_t size;
    char err[600];
    int rc = snapshots_open(s->store, s->snap_tmp, r->snap_source, r->snap_bookmark, &fd, &size,
                            err, sizeof err);
    if (rc) {
        buf b = BUF_INIT;
        return send_snapshot_answer(r, rc == SNAPSHOTS_ENOENT ? 404 : 503, &b, err);
    }
    struct MHD_Response *resp = MHD_create_response_from_fd64(size, fd);
    if (!resp) {
        close(fd);
        return server__send_error(r, 503, "out of memory");
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/vnd.sqlite3");
    server__add_cors(resp, r);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ok = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    server__answered(r, 200);
    return ok;
}

enum MHD_Result server__handle_snapshots(server__srv *s, server__req *r)
{
    if (r->kind == SERVER__K_SNAP_PUT) return finish_upload(s, r);
    if (r->kind == SERVER__K_SNAP_LIST) return list_snapshots(s, r);
    return send_snapshot(s, r);
}

enum MHD_Result server__handle_health(server__srv *s, server__req *r)
{
    lake_writer_stats st;
    lake_writer_stats_get(s->writer, &st);
    int failing = lake_writer_failing(s->writer) || st.lost[0];
    buf b = BUF_INIT;
    buf_printf(&b, "{\"status\":\"%s\",\"version\":\"%s\",\"uptimeSeconds\":%.3f,\"lake\":",
               failing                                ? "failing"
               : st.sealing_failing || st.incident[0] ? "degraded"
                                                      : "ok",
               EVENTS_VERSION_STRING, (double)(evtime_mono_ms() - s->started_ms) / 1000.0);
    buf_json_str(&b, s->store->url, strlen(s->store->url));
    buf_printf(&b, ",\"spoolBytesPending\":%llu,\"segmentsOpen\":%llu,\"segmentsSealed\":%llu",
               (unsigned long long)st.spool_bytes, (unsigned long long)st.segments_open,
               (unsigned long long)st.segments_sealed);
    if (failing) {
        const char *e = lake_writer_failing(s->writer) ? st.last_error : st.lost;
        buf_puts(&b, ",\"error\":");
        buf_json_str(&b, e, strlen(e));
    }
    if (st.lost[0]) {
        buf_printf(&b, ",\"eventsLost\":%llu,\"lostError\":", (unsigned long long)st.events_lost);
        buf_json_str(&b, st.lost, strlen(st.lost));
    }
    if (st.incident[0]) {
        buf_puts(&b, ",\"spoolIncident\":");
        buf_json_str(&b, st.incident, strlen(st.incident));
    }
    if (st.sealing_failing) {
        buf_puts(&b, ",\"sealError\":");
        buf_json_str(&b, st.seal_error, strlen(st.seal_error));
    }
    buf_putc(&b, '}');
    enum MHD_Result ok = server__send_json(r, failing ? 503 : 200, &b, NULL, NULL);
    buf_free(&b);
    return ok;
}

enum MHD_Result server__handle_web(server__req *r, const char *url)
{
    const web_asset *a = web_find(url);
    if (!a) return server__send_error(r, 404, "no such file: %s", url);
    const char *inm =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    int same = inm && !strcmp(inm, a->etag);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(same ? 0 : a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", a->type);
    MHD_add_response_header(resp, "ETag", a->etag);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(
        resp, "Content-Security-Policy",
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:");
    enum MHD_Result ok = MHD_queue_response(r->conn, same ? 304 : 200, resp);
    MHD_destroy_response(resp);
    server__answered(r, same ? 304 : 200);
    return ok;
}

enum MHD_Result server__handle_tail(server__srv *s, server__req *r)
{
    const char *type = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "type");
    char err[256];
    if (tail_check_patterns(s->tail, type, err, sizeof err))
        return server__send_error(r, 400, "%s", err);
    tail_stats ts;
    tail_hub_stats(s->tail, &ts);
    if (ts.clients >= (uint64_t)s->cfg.tail_max_clients)
        return server__send_error(
            r, 503, "%d live tails are open, the most this server takes (--tail-max-clients)",
            s->cfg.tail_max_clients);
    if (server__tail_wants_stream(r)) return server__tail_after(s, r, type);
    struct MHD_Response *resp =
        atomic_load(&s->stopping) ? NULL : tail_response(s->tail, r->conn, type);
    if (!resp) return server__send_error(r, 503, "the server is stopping");
    server__add_cors(resp, r);
    enum MHD_Result ok = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    server__answered(r, 200);
    return ok;
}

/* GET /recent?limit=N&type=P: the latest stored events, newest first, from memory (recent.h). */
enum MHD_Result server__handle_recent(server__srv *s, server__req *r)
{
    if (!s->recent) return server__send_error(r, 404, "/recent is off (--recent-events 0)");
    const char *lim = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "limit");
    const char *type = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "type");
    size_t max = s->cfg.recent_events, limit = max < 100 ? max : 100;
    if (lim) {
        char *end;
        unsigned long long v = strtoull(lim, &end, 10);
        if (!*lim || *end || *lim < '0' || *lim > '9' || v < 1 || v > max)
            return server__send_error(
                r, 400, "limit=%.40s: must be a number from 1 to %zu (--recent-events)", lim, max);
        limit = (size_t)v;
    }
    char err[256];
    if (glob_list_check(type, s->cfg.tail_max_patterns, s->cfg.tail_pattern_bytes, err, sizeof err))
        return server__send_error(r, 400, "%s", err);
    glob_list types;
    buf b = BUF_INIT;
    int bad = glob_list_compile(type, &types) ||
              recent_render(s->recent, limit, &types, evtime_now_ms(), &b);
    glob_list_free(&types);
    enum MHD_Result ok = bad ? server__send_error(r, 503, "out of memory")
                             : server__send_json(r, 200, &b, NULL, NULL);
    buf_free(&b);
    return ok;
}

/* GET /recent's gauges: what its ring holds (0 when it is off). */
static void recent_metrics(server__srv *s, buf *b)
{
    uint64_t events = 0, bytes = 0;
    if (s->recent) recent_stats(s->recent, &events, &bytes);
    metrics_gauge(b, "events_recent_events", "Events GET /recent holds (--recent-events).",
                  (long long)events);
    metrics_gauge(b, "events_recent_bytes",
                  "Bytes of the events GET /recent holds (--recent-bytes).", (long long)bytes);
}

/* The compactor's counters. */
static void compaction_metrics(server__srv *s, buf *b)
{
    metrics_counter(b, "events_compaction_runs_total", "Compaction runs done by this server.",
                    s->compact_runs);
    metrics_counter(b, "events_compaction_failures_total", "Compaction runs that failed.",
                    s->compact_failures);
    metrics_counter(b, "events_compaction_partitions_total",
                    "Hour partitions given new Parquet files (a commit to the table each).",
                    s->compact_partitions);
    metrics_counter(b, "events_compaction_appended_total",
                    "Of them, hours not yet due whose sealed segments were appended (--table-lag).",
                    s->compact_appended);
    metrics_counter(b, "events_compaction_rows_total", "Rows written to Parquet by compaction.",
                    s->compact_rows);
    metrics_counter(b, "events_compaction_deleted_total",
                    "Replaced files, expired snapshots' files and leftovers deleted.",
                    s->compact_deleted);
    metrics_counter(
        b, "events_compaction_files_written_total",
        "Parquet files written by compaction (an hour larger than a chunk gives several).",
        s->compact_files);
    metrics_counter(b, "events_compaction_leftovers_removed_total",
                    "Files and directories that killed compactions had left in the work directory.",
                    s->compact_leftovers);
    metrics_counter(b, "events_compaction_history_files_total",
                    "History files written: a day's document changes, for doc_history.",
                    s->compact_histories);
}

/* The query workers' counters and the memory they are held to. */
static void query_metrics(server__srv *s, buf *b)
{
    query_http_stats qs;
    query_http_stats_get(s->queries, &qs);
    metrics_counter(b, "events_query_out_of_memory_total",
                    "Queries that failed for memory (--query-memory, --memory-max).",
                    qs.out_of_memory);
    metrics_gauge(b, "events_memory_max_bytes",
                  "The server's memory limit (--memory-max); 0: none.",
                  (long long)s->cfg.memory_max);
    metrics_gauge(b, "process_resident_memory_bytes", "Resident memory of the server.",
                  (long long)server__resident_bytes());
    metrics_counter(b, "events_query_answers_cut_total", "Query answers cut at --query-max-bytes.",
                    qs.over_bytes);
    metrics_counter(b, "events_query_timeouts_total",
                    "Queries stopped at --query-timeout, while running or writing their answer.",
                    qs.timeouts);
    metrics_counter(b, "events_query_client_gone_total",
                    "Queries stopped, or not run, because their client had gone.", qs.gone);
    metrics_counter(b, "events_query_skipped_total",
                    "Queued queries not run because their client had gone.", qs.skipped);
    metrics_counter(b, "events_query_answer_bytes_total", "Bytes of query answers produced.",
                    qs.bytes);
    metrics_gauge(b, "events_query_running", "Queries running now.", qs.running);
    metrics_gauge(b, "events_query_queued", "Queries waiting for a query worker.", qs.queued);
}

enum MHD_Result server__handle_metrics(server__srv *s, server__req *r)
{
    lake_writer_stats st;
    lake_writer_stats_get(s->writer, &st);
    buf b = BUF_INIT;
    metrics_render(&b, &st);
    compaction_metrics(s, &b);
    lake_expirer_stats xs;
    lake_expirer_stats_get(s->expirer, &xs);
    metrics_counter(&b, "events_quarantine_expired_files_total",
                    "Quarantine files deleted for --rejected-retain.", xs.files);
    metrics_counter(&b, "events_quarantine_expire_failures_total",
                    "Runs of the quarantine's expiry that failed (retried at the next run).",
                    xs.failures);
    lake_expirer_stats_get(s->stream_expirer, &xs);
    metrics_counter(&b, "events_stream_expired_files_total",
                    "Stream log files deleted for --stream-retain.", xs.files);
    metrics_counter(&b, "events_stream_expire_failures_total",
                    "Runs of the stream log's expiry that failed (retried at the next run).",
                    xs.failures);
    query_metrics(s, &b);
    tail_stats ts;
    tail_hub_stats(s->tail, &ts);
    metrics_gauge(&b, "events_tail_clients", "Clients of GET /tail.", (long long)ts.clients);
    metrics_counter(&b, "events_tail_dropped_total",
                    "Clients of GET /tail dropped for falling behind.", ts.dropped);
    metrics_counter(&b, "events_tail_refused_total",
                    "GET /tail refused for its patterns (--tail-max-patterns, "
                    "--tail-max-pattern-bytes).",
                    ts.refused);
    metrics_counter(&b, "events_tail_lost_total",
                    "Accepted events not sent to live tails: the tail queue (--tail-queue) was "
                    "full.",
                    ts.lost);
    metrics_gauge(&b, "events_tail_queue_bytes", "Bytes of events waiting for the tail thread.",
                  (long long)ts.queue_bytes);
    recent_metrics(s, &b);
    server__events_metrics(s, &b);
    deliver_metrics(s->deliver, &b);
    server__subs_metrics(s, &b);
    metrics_gauge(&b, "events_snapshot_downloads", "GET /snapshots/S/B answers being sent.",
                  (long long)atomic_load(&s->snap_downloads));
    metrics_counter(&b, "events_snapshot_downloads_refused_total",
                    "GET /snapshots/S/B refused: --snapshot-downloads were running.",
                    s->snap_downloads_refused);
    if (s->cache) {
        lake_cache_stats cs;
        lake_cache_stats_get(s->cache, &cs);
        metrics_gauge(&b, "events_cache_bytes", "Bytes of lake files in the local cache.",
                      (long long)cs.bytes);
        metrics_gauge(&b, "events_cache_max_bytes", "The cache's limit (--cache-max).",
                      (long long)cs.max_bytes);
        metrics_counter(&b, "events_cache_hits_total", "Lake files a query found in the cache.",
                        cs.hits);
        metrics_counter(&b, "events_cache_misses_total", "Lake files fetched from the store.",
                        cs.misses);
        metrics_counter(&b, "events_cache_fetched_bytes_total", "Bytes fetched from the store.",
                        cs.fetched_bytes);
        metrics_counter(&b, "events_cache_evicted_total", "Files evicted from the cache.",
                        cs.evicted);
    }
    query_copies_stats qs;
    query_engine_copies_stats(s->engine, &qs);
    metrics_gauge(&b, "events_query_copies_files",
                  "Parquet copies of raw lake files that queries read instead (--query-copies).",
                  (long long)qs.files);
    metrics_gauge(&b, "events_query_copies_bytes", "Bytes of those copies, in the spool.",
                  (long long)qs.bytes);
    metrics_gauge(&b, "events_query_copies_max_bytes", "Their limit (--query-copies).",
                  (long long)qs.max_bytes);
    metrics_counter(&b, "events_query_copies_hits_total", "Raw files a query read from a copy.",
                    qs.hits);
    metrics_counter(&b, "events_query_copies_misses_total",
                    "Raw files a query read raw, having no copy yet.", qs.misses);
    metrics_counter(&b, "events_query_copies_made_total", "Copies of raw files written.", qs.made);
    metrics_counter(
        &b, "events_query_copies_failed_total",
        "Raw files that could not be copied (gone, unreadable), and copies lost from the disk.",
        qs.failed);
    metrics_counter(&b, "events_query_copies_evicted_total",
                    "Copies deleted to keep within the limit.", qs.evicted);
    metrics_counter(&b, "events_query_copies_dropped_total",
                    "Copies not made: no room (the copies at the limit were all read in the last "
                    "minute), or the queue was full.",
                    qs.dropped);
    enum MHD_Result ok = server__send_response(r, 200, "text/plain; version=0.0.4", b.p ? b.p : "",
                                               b.len, NULL, NULL);
    buf_free(&b);
    return ok;
}
