/*
 * server_compact.c - the server's compactor thread.
 *
 * Every --compact-every, or every quarter of --table-lag when that is
 * shorter, the thread runs compact_run (compact.h) over the lake: hours that
 * ended long enough ago are compacted, the sealed segments of the others
 * appended to the table (with a lag), and what they replaced is deleted once
 * --compact-retain has passed. A quarter: an event is sealed within
 * --seal-age, appended by the next run and visible when that run commits, so
 * it is in the table within seal-age + lag / 4 + a run, inside the lag. One
 * run at a time, never on an HTTP thread; a run that fails is logged and
 * counted (/metrics) and the next one tries again. The first run, and one a
 * day, sweeps the whole lake; the others list the pending index and the hours
 * it names. At shutdown the thread is stopped between runs, or waited for
 * when a run is under way.
 */
#include "server_int.h"
#include "compact.h"
#include "evtime.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* What compactions killed with an earlier server left in the work directory (compact.h). */
static void compactor_clean(server__srv *s)
{
    uint64_t n = 0;
    char err[512];
    if (compact_clean(s->work, &n, err, sizeof err)) {
        log_msg(LOG_WARN, "cannot clean the compaction directory", "path", s->work, "error", err,
                LOG_END);
        return;
    }
    s->compact_leftovers += n;
    if (n) {
        char c[24];
        snprintf(c, sizeof c, "%llu", (unsigned long long)n);
        log_msg(LOG_INFO, "removed compaction leftovers", "path", s->work, "entries", c, LOG_END);
    }
}

/* How often a run lists the whole lake rather than the pending index (compact.h): the first run,
 * then once a day, for segments without a marker (a crash between the two) and leftovers. */
#define SWEEP_EVERY_MS (24 * 3600000LL)

static void *compactor_main(void *arg)
{
    server__srv *s = arg;
    compactor_clean(s);
    int64_t every = s->cfg.compact_every_ms, swept = 0; /* when the last sweep began */
    int has_swept = 0;
    if (s->cfg.table_lag_ms > 0 && s->cfg.table_lag_ms / 4 < every) every = s->cfg.table_lag_ms / 4;
    pthread_mutex_lock(&s->compact_mu);
    for (;;) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ns = (int64_t)ts.tv_nsec + (every % 1000) * 1000000;
        ts.tv_sec += (time_t)(every / 1000 + ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        while (!s->compact_stop &&
               pthread_cond_timedwait(&s->compact_cv, &s->compact_mu, &ts) == 0) {
        }
        if (s->compact_stop) break;
        pthread_mutex_unlock(&s->compact_mu);
        compact_config cc = {.store = s->store,
                             .cache = s->cache,
                             .work_dir = s->work,
                             .after_ms = s->cfg.compact_after_ms,
                             .open_hours = s->cfg.table_lag_ms > 0,
                             .sweep = !has_swept || evtime_mono_ms() - swept >= SWEEP_EVERY_MS,
                             .retain_ms = s->cfg.compact_retain_ms,
                             .memory_limit = s->cfg.compact_memory,
                             .chunk_bytes = s->cfg.compact_chunk,
                             .threads = 1};
        compact_stats st;
        char err[1024];
        int64_t t0 = evtime_mono_ms();
        int r = compact_run(&cc, &st, err, sizeof err);
        char ms[24], parts[24], files[24], rows[24], del[24], written[24], hist[24];
        snprintf(ms, sizeof ms, "%lld", (long long)(evtime_mono_ms() - t0));
        snprintf(parts, sizeof parts, "%llu", (unsigned long long)st.compacted);
        snprintf(files, sizeof files, "%llu", (unsigned long long)st.files_in);
        snprintf(rows, sizeof rows, "%llu", (unsigned long long)st.rows);
        snprintf(del, sizeof del, "%llu", (unsigned long long)st.deleted);
        snprintf(written, sizeof written, "%llu", (unsigned long long)st.files_out);
        snprintf(hist, sizeof hist, "%llu", (unsigned long long)st.histories);
        if (r == 0 && cc.sweep) swept = t0, has_swept = 1;
        if (r == 0) {
            s->compact_runs++;
            s->compact_partitions += st.compacted;
            s->compact_appended += st.appended;
            s->compact_rows += st.rows;
        }
        s->compact_deleted += st.deleted;
        s->compact_files += st.files_out;
        s->compact_leftovers += st.leftovers;
        s->compact_histories += st.histories;
        if (r < 0) s->compact_failures++;
        if (r < 0)
            log_msg(LOG_WARN, "compaction failed", "error", err, LOG_END);
        else if (r > 0)
            log_msg(LOG_DEBUG, "compaction skipped", "holder", st.holder, LOG_END);
        else if (st.compacted || st.deleted || st.histories || st.histories_deleted)
            log_msg(LOG_INFO, "compacted", "partitions", parts, "files", files, "rows", rows,
                    "parquet_files", written, "deleted", del, "history_files", hist, "ms", ms,
                    LOG_END);
        pthread_mutex_lock(&s->compact_mu);
    }
    pthread_mutex_unlock(&s->compact_mu);
    return NULL;
}

void server__compactor_start(server__srv *s)
{
    pthread_mutex_init(&s->compact_mu, NULL);
    pthread_cond_init(&s->compact_cv, NULL);
    if (!pthread_create(&s->compactor, NULL, compactor_main, s)) s->compactor_started = 1;
}

void server__compactor_stop(server__srv *s)
{
    if (!s->compactor_started) return;
    pthread_mutex_lock(&s->compact_mu);
    s->compact_stop = 1;
    pthread_cond_signal(&s->compact_cv);
    pthread_mutex_unlock(&s->compact_mu);
    pthread_join(s->compactor, NULL);
    s->compactor_started = 0;
}
