/*
 * retain.h - the quarantine's retention: whole hours of rejected/ expire;
 * and the stream log's: whole files of stream/ expire (retain.c says how
 * a file's age is told).
 *
 * The quarantine (quarantine.h) keeps every refused record until an operator
 * says how long: with a retention, each hour of rejected/ whose end is more
 * than the retention ago is deleted, every file of it, on any store. Events
 * are never touched here. A server runs an expirer thread; several servers
 * of one lake may expire at once (deleting what is gone is not an error).
 */
#ifndef EVENTS_RETAIN_H
#define EVENTS_RETAIN_H

#include "store.h"

#include <stddef.h>
#include <stdint.h>

/*
 * Deletes the files of every hour of rejected/ that ended at or before
 * now_ms - retain_ms, adding the files and hours deleted to *files and
 * *hours. On a directory lake the emptied directories go too. 0, or -1 with
 * a message in err (what was deleted before the failure stays deleted).
 */
int lake_rejected_expire(store *s, int64_t now_ms, int64_t retain_ms, uint64_t *files,
                         uint64_t *hours, char *err, size_t errlen);

/*
 * Deletes every file of stream/ (every sid) last written at or before
 * now_ms - retain_ms, adding the files deleted to *files (unused: NULL or
 * not, untouched; the quarantine's hours). On a directory lake an emptied
 * stream/{sid}/ goes too. 0, or -1 with a message in err.
 */
int lake_stream_expire(store *s, int64_t now_ms, int64_t retain_ms, uint64_t *files,
                       uint64_t *unused, char *err, size_t errlen);

typedef struct lake_expirer lake_expirer;

typedef struct lake_expirer_stats {
    uint64_t runs, failures;
    uint64_t files, hours; /* deleted */
} lake_expirer_stats;

/*
 * Starts a thread that expires the quarantine at once and then every
 * min(retain_ms, 10 min) (at least every second). NULL when retain_ms is 0
 * (keep forever) or the thread cannot start (err says so when err[0] is set).
 * s is not owned and must outlive the expirer.
 */
lake_expirer *lake_expirer_start(store *s, int64_t retain_ms, char *err, size_t errlen);

/* The same for the stream log (lake_stream_expire); its stats' hours stay 0. */
lake_expirer *lake_stream_expirer_start(store *s, int64_t retain_ms, char *err, size_t errlen);

/* Stops the thread and frees the expirer. NULL is ignored. */
void lake_expirer_stop(lake_expirer *x);

/* Its counters so far; zeros for NULL. Any thread. */
void lake_expirer_stats_get(lake_expirer *x, lake_expirer_stats *st);

#endif
