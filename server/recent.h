/*
 * recent.h - GET /recent: the latest acknowledged events, from memory.
 *
 * A bounded ring of the newest stored events, fed once an ingest is durable
 * and answered (duplicates, not stored, are not added), bounded both by a
 * count (--recent-events) and by the bytes of their lines (--recent-bytes):
 * the oldest go first. It costs no lake read, and ingest little: the lines
 * are copied outside the lock (only the last --recent-events of a big batch),
 * the lock is held only to swap them in, and evicted lines are freed after
 * it. The ring lives in memory only: after a restart it is empty until
 * events arrive (POST /query has everything).
 *
 * Threads: any (ingest's HTTP threads add, /recent's and /metrics' read).
 */
#ifndef EVENTS_RECENT_H
#define EVENTS_RECENT_H

#include "buf.h"
#include "glob.h"
#include "writer.h"

#include <stddef.h>
#include <stdint.h>

typedef struct recent recent;

/* A ring of at most max_events (above 0) events of at most max_bytes bytes; NULL out of memory. */
recent *recent_new(size_t max_events, uint64_t max_bytes);
void recent_free(recent *rc);

/*
 * The events of one answered batch, in order: lines holds their normalised
 * lines, ev[i] where each is; those the writer did not store (ev[i].stored 0,
 * the duplicates) are skipped. Copies what it keeps; nothing is taken over.
 * Out of memory, the batch is not added.
 */
void recent_add(recent *rc, const char *lines, const lake_event *ev, size_t n);

/*
 * Appends {"events":[…],"count":N,"bucket":"events/yyyy/mm/dd/hh"}: the
 * newest events first, at most limit, those whose type matches types; bucket
 * is the hour partition of the newest one's time, or of now_ms when none.
 * Returns 0, or -1 out of memory.
 */
int recent_render(recent *rc, size_t limit, const glob_list *types, int64_t now_ms, buf *out);

/* The events and bytes (of their lines) held now. */
void recent_stats(recent *rc, uint64_t *events, uint64_t *bytes);

#endif
