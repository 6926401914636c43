/*
 * testkill.h - EVENTS_TEST_KILL_AT, a hook for tests only: a process whose
 * environment names one of the steps below raises SIGKILL when it reaches it,
 * so that a test can stop a compaction at each step of its commit and check what
 * the lake is left with (tests/test_s3.c). The steps, each once its writes are
 * done:
 *
 *   parquet        an hour's new Parquet files are in the lake (compact.c)
 *   manifest-list  the commit's manifests and manifest list are (iceberg_commit.c)
 *   metadata       the new metadata version is, version-hint.text not yet (iceberg.c)
 *   version-hint   version-hint.text names it (iceberg.c)
 *
 * Unset (always, outside tests) it costs a getenv at each of those steps.
 */
#ifndef EVENTS_TESTKILL_H
#define EVENTS_TESTKILL_H

#include <signal.h>
#include <stdlib.h>
#include <string.h>

static inline void lake_test_kill_at(const char *step)
{
    const char *at = getenv("EVENTS_TEST_KILL_AT");
    if (at && !strcmp(at, step)) raise(SIGKILL);
}

#endif
