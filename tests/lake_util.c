/*
 * lake_util.c - the harness's part that needs the query engine (harness.h), apart from
 * harness.c, which the emitter's ThreadSanitizer build compiles without the lake.
 */
#include "harness.h"
#include "query.h"
#include "store.h"

#include <stdlib.h>
#include <string.h>

char *lake_query_csv(const char *lake, const char *sql, uint64_t *files)
{
    store *s;
    char err[512];
    if (store_open(lake, &s, err, sizeof err)) return strdup(err);
    query_config qc = {.store = s, .threads = 1};
    query_engine *e;
    if (query_engine_open(&qc, &e, err, sizeof err)) {
        store_close(s);
        return strdup(err);
    }
    query_conn *c = query_conn_new(e, err, sizeof err);
    query_request rq = {.sql = sql, .format = QUERY_CSV};
    buf out = BUF_INIT;
    query_outcome o;
    query_run_to_buf(c, &rq, &out, &o);
    char *t = strdup(o.code == QUERY_OK ? buf_cstr(&out) : o.error);
    if (files) *files = o.files;
    buf_free(&out);
    query_conn_free(c);
    query_engine_close(e);
    store_close(s);
    return t;
}
