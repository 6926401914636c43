/*
 * compact_pending.c - the hours a run that does not sweep looks at: those of
 * the pending index (pending/, a marker per segment sealed and not yet folded
 * in, layout.h) and the recent ones; and the markers settled once their hour
 * was looked at (compact.h).
 */
#include "compact_int.h"

#include "evtime.h"
#include "layout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the pending index --------------------------------------------------------------- */

/* A marker of the pending index (layout.h), as listed. */
typedef struct marker {
    char *key, *segment;
    int64_t hour, mtime_ms;
    int settled; /* its hour was looked at */
} marker;

typedef struct compact__pending {
    marker *m; /* in key order, so by hour */
    size_t n, cap;
    int oom;
} compact__pending;

static int on_marker(const store_entry *e, void *ud)
{
    compact__pending *pd = ud;
    int64_t hour;
    char seg[LAKE_KEY_MAX];
    if (lake_parse_pending_key(e->key, &hour, seg)) return 0;
    if (pd->n == pd->cap) {
        size_t nc = pd->cap ? pd->cap * 2 : 64;
        marker *nm = realloc(pd->m, nc * sizeof *nm);
        if (!nm) return pd->oom = 1;
        pd->m = nm, pd->cap = nc;
    }
    marker *m = &pd->m[pd->n];
    memset(m, 0, sizeof *m);
    m->key = strdup(e->key);
    m->segment = strdup(seg);
    if (!m->key || !m->segment) {
        free(m->key), free(m->segment);
        return pd->oom = 1;
    }
    m->hour = hour, m->mtime_ms = e->mtime_ms;
    pd->n++;
    return 0;
}

static void pending_free(compact__pending *pd)
{
    for (size_t i = 0; i < pd->n; i++) free(pd->m[i].key), free(pd->m[i].segment);
    free(pd->m);
    memset(pd, 0, sizeof *pd);
}

/* How long a marker may wait for its segment (a sealer retrying against an unreachable lake). */
#define MARKER_WAIT_MS (24 * 3600000LL)

/*
 * After an hour was looked at: the markers of its segments that are no longer live (folded in,
 * by this run or an earlier one that stopped before deleting them), and of segments that never
 * came, are deleted. p is NULL when the hour's listing was empty.
 */
void compact__settle_markers(compact__run *r, int64_t hour, const lake_partition *p)
{
    compact__pending *pd = r->pd;
    char why[512];
    for (size_t i = 0; pd && i < pd->n; i++) {
        marker *m = &pd->m[i];
        if (m->hour != hour || m->settled) continue;
        m->settled = 1;
        const lake_part_file *f = NULL;
        for (size_t k = 0; p && k < p->n && !f; k++)
            if (!strcmp(p->f[k].key, m->segment)) f = &p->f[k];
        int gone = f ? !f->live
                     : lake_table_folded_at(&r->lt, m->segment) >= 0 ||
                           m->mtime_ms + MARKER_WAIT_MS <= r->now;
        if (gone) store_del(r->cfg->store, m->key, why, sizeof why);
    }
}

static int cmp_hour(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/*
 * A run that does not sweep: the hours of the pending index and the recent ones (the current
 * hour back to the last one that can fall due: --compact-after and an hour more), each listed on
 * its own with the table's files of that hour.
 */
int compact__pending_run(compact__run *r, char *m, size_t mlen)
{
    /* on the heap: the run holds it while the hours are looked at (compact__settle_markers) */
    compact__pending *pd = calloc(1, sizeof *pd);
    if (!pd) return snprintf(m, mlen, "out of memory"), -1;
    int rc = store_list(r->cfg->store, LAKE_PENDING_PREFIX, on_marker, pd, m, mlen);
    if (rc == STORE_ENOENT) rc = 0;
    if (pd->oom) snprintf(m, mlen, "out of memory");
    r->st->listed++;
    int64_t now_hour = lake_hour(r->now), back = r->cfg->after_ms / 3600000 + 2;
    size_t nh = 0;
    int64_t *hours = rc || pd->oom ? NULL : malloc((pd->n + (size_t)back + 1) * sizeof *hours);
    if (!rc && !pd->oom && !hours) snprintf(m, mlen, "out of memory");
    if (!hours) rc = -1;
    for (size_t i = 0; !rc && i < pd->n; i++)
        if (!nh || hours[nh - 1] != pd->m[i].hour) hours[nh++] = pd->m[i].hour;
    for (int64_t h = now_hour - back; !rc && h <= now_hour; h++) hours[nh++] = h;
    if (!rc) qsort(hours, nh, sizeof *hours, cmp_hour);
    r->pd = pd;
    for (size_t i = 0; !rc && i < nh; i++) {
        if (i && hours[i] == hours[i - 1]) continue;
        lake_live lv;
        char prefix[LAKE_KEY_MAX];
        lake_hour_prefix(hours[i], prefix);
        rc = lake_live_load(r->cfg->store, &r->lt, hours[i], hours[i], &lv, m, mlen);
        if (!rc)
            rc =
                lake_partitions_list(r->cfg->store, &lv, prefix, compact__on_partition, r, m, mlen);
        lake_live_free(&lv);
        r->st->listed++;
        if (!rc) compact__settle_markers(r, hours[i], NULL); /* an hour with nothing listed */
    }
    r->pd = NULL;
    free(hours);
    pending_free(pd);
    free(pd);
    return rc ? -1 : 0;
}
