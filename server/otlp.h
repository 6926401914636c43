/*
 * otlp.h - POST /v1/logs: OpenTelemetry log records (OTLP/HTTP) as events.
 *
 * The body is an ExportLogsServiceRequest, in OTLP's JSON encoding or in
 * binary protobuf. Each log record becomes one event (the mapping is in
 * docs/http.md): its resource, its scope and its own fields as JSON members,
 * a type from the record or the request, `ts` from its time, and an id that
 * is a hash of all that, so that an exporter retrying a batch is answered
 * with duplicates rather than stored twice. Every event is handed to
 * ingest_add, the step /ingest takes for each element of its bodies, so the
 * event rules, the limits and the refusals are /ingest's own; a record that
 * cannot be an event is refused there, counted in the answer's
 * partialSuccess, and its neighbours go on. Only a body that cannot be read
 * as a request at all fails as a whole (400), or one over a limit (413).
 *
 * Like ingest.c, this module knows nothing of HTTP: server.c calls it, with
 * the body already inflated, and renders its answers with the status it
 * chooses.
 */
#ifndef EVENTS_OTLP_H
#define EVENTS_OTLP_H

#include "buf.h"
#include "event.h"
#include "ingest.h"

#include <stddef.h>

enum otlp_encoding { OTLP_NONE, OTLP_JSON, OTLP_PROTOBUF };

/* The type of an event made from a record that names none (docs/http.md). */
#define OTLP_DEFAULT_TYPE "otel.log"

/* The encoding a Content-Type names (parameters ignored), or OTLP_NONE; NULL is OTLP_NONE. */
enum otlp_encoding otlp_encoding_of(const char *content_type);

/* The Content-Type of answers in enc: application/x-protobuf, else application/json. */
const char *otlp_content_type(enum otlp_encoding enc);

/*
 * Parses an ExportLogsServiceRequest body into r (zeroed or reset), one event
 * per log record, as ingest_parse does for /ingest. default_type (NULL:
 * OTLP_DEFAULT_TYPE) is the type of records that name none; the caller has
 * checked it with event_type_valid. On a whole-body failure r->code is an
 * INGEST_E* code (ingest.h) and r->error says why.
 */
void otlp_logs_parse(event_ctx *ctx, enum otlp_encoding enc, const char *body, size_t n,
                     const char *default_type, const ingest_limits *lim, const ingest_options *opts,
                     ingest_result *r);

/*
 * Appends the 200 answer for a parsed body whose events are durable: an
 * ExportLogsServiceResponse in enc, with partialSuccess set only when records
 * were refused (their count, and the first one's reason). Returns 0 or -1.
 */
int otlp_logs_answer(enum otlp_encoding enc, const ingest_result *r, buf *out);

/*
 * Appends the body of a 4xx or 5xx answer: a google.rpc.Status in enc, whose
 * code is the gRPC code closest to the HTTP status. Returns 0 or -1.
 */
int otlp_status(enum otlp_encoding enc, unsigned http_status, const char *msg, buf *out);

#endif
