/*
 * quarantine.h - the line the lake keeps for each record ingest refused.
 *
 * A record of a request that is not an acceptable event (event.h) is not
 * dropped: ingest writes it, why it was refused and where it came from as one
 * line, and the writer makes that line durable in the same group commit as the
 * request's accepted events, in a quarantine segment sealed under
 * rejected/yyyy/mm/dd/hh/ (the receive hour; layout.h). The line:
 *
 *   {"id":ULID,"receivedAt":TIME,"requestId":ULID,"index":N,"class":"type",
 *    "reason":"\"type\" is required","token":"shipper"|null,"route":"/ingest",
 *    "raw":"{\"log\":\"hello\"}"}
 *
 * raw is the record's bytes as a JSON string when they are valid UTF-8
 * without a NUL byte and that string's escapes make it at most twice as long
 * as the record (a record of control characters would be six times);
 * otherwise raw is null and rawBase64 holds the exact bytes (standard
 * base64). A line is thus at most twice its record and a few hundred bytes. "id" comes first, as in
 * an event line, so that spool recovery keeps quarantine lines by the same rule (writer_spool.c).
 * Ids of quarantine lines are the server's, never deduplicated.
 */
#ifndef EVENTS_QUARANTINE_H
#define EVENTS_QUARANTINE_H

#include "buf.h"

#include <stddef.h>
#include <stdint.h>

typedef struct lake_quarantine_rec {
    int64_t received_ms;      /* receive time: the line's id and receivedAt */
    const char *request_id;   /* the request's ULID */
    size_t index;             /* the record's position in the body */
    const char *reason_class; /* event_reason_name() */
    const char *reason;
    const char *token; /* the token's name; NULL: the server has no tokens */
    const char *route; /* the path the record came in by, "/ingest" */
    const char *raw;   /* the record as sent */
    size_t raw_len;
} lake_quarantine_rec;

/*
 * Appends the record's line, '\n' included, to out. *id_off is set to the
 * offset of the line's id in out. 0, or -1 with a message in err: out of
 * memory (out as it was).
 */
int lake_quarantine_line(buf *out, const lake_quarantine_rec *r, size_t *id_off, char *err,
                         size_t errlen);

/* 1 if raw[0..n) is kept as text ("raw"), 0 if as "rawBase64" (see above). */
int lake_quarantine_raw_is_text(const char *raw, size_t n);

#endif
