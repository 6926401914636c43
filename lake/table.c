/*
 * table.c - the lake's table as its readers need it (table.h): the current
 * version, the segments its kept snapshots folded in, and the live data files
 * of the hours a reader asks for.
 */
#include "table.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int by_folded_key(const void *a, const void *b)
{
    return strcmp(((const lake_folded *)a)->key, ((const lake_folded *)b)->key);
}

/* Adds the segments of one snapshot's summary. -1 out of memory, -2 a summary not ours. */
static int add_folded(lake_table *lt, size_t *cap, const char *text, int64_t at_ms)
{
    json_t *keys = json_loads(text, 0, NULL);
    if (!json_is_array(keys)) {
        json_decref(keys);
        return -2;
    }
    size_t i;
    json_t *k;
    int rc = 0;
    json_array_foreach(keys, i, k)
    {
        if (!json_is_string(k)) continue;
        if (lt->nfolded == *cap) {
            size_t nc = *cap ? *cap * 2 : 64;
            lake_folded *nf = realloc(lt->folded, nc * sizeof *nf);
            if (!nf) {
                rc = -1;
                break;
            }
            lt->folded = nf, *cap = nc;
        }
        if (!(lt->folded[lt->nfolded].key = strdup(json_string_value(k)))) {
            rc = -1;
            break;
        }
        lt->folded[lt->nfolded++].at_ms = at_ms;
    }
    json_decref(keys);
    return rc;
}

int lake_table_load(store *s, lake_table *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    ice_catalog cat = ice_store_catalog(s);
    int rc = cat.ops->load(cat.cat, &out->t, err, errlen);
    if (rc == ICE_ENOTABLE) {
        out->t = NULL;
        return 0;
    }
    if (rc) return -1;
    json_t *snaps = json_object_get(ice_table_json(out->t), "snapshots");
    size_t i, cap = 0;
    json_t *sn;
    json_array_foreach(snaps, i, sn)
    {
        const char *text =
            json_string_value(json_object_get(json_object_get(sn, "summary"), LAKE_TABLE_FOLDED));
        if (!text) continue;
        int64_t at = json_integer_value(json_object_get(sn, "timestamp-ms"));
        int r = add_folded(out, &cap, text, at);
        if (r == -1) {
            snprintf(err, errlen, "out of memory");
            lake_table_free(out);
            return -1;
        }
        if (r == -2) {
            snprintf(err, errlen, "table: snapshot %lld: %s is not an array of keys",
                     (long long)json_integer_value(json_object_get(sn, "snapshot-id")),
                     LAKE_TABLE_FOLDED);
            lake_table_free(out);
            return -1;
        }
    }
    if (out->nfolded) qsort(out->folded, out->nfolded, sizeof *out->folded, by_folded_key);
    return 0;
}

void lake_table_free(lake_table *lt)
{
    if (!lt) return;
    ice_table_free(lt->t);
    for (size_t i = 0; i < lt->nfolded; i++) free(lt->folded[i].key);
    free(lt->folded);
    memset(lt, 0, sizeof *lt);
}

int64_t lake_table_folded_at(const lake_table *lt, const char *key)
{
    if (!lt || !lt->nfolded) return -1;
    lake_folded want = {(char *)key, 0};
    const lake_folded *f =
        bsearch(&want, lt->folded, lt->nfolded, sizeof *lt->folded, by_folded_key);
    return f ? f->at_ms : -1;
}

int lake_live_load(store *s, const lake_table *lt, int64_t lo, int64_t hi, lake_live *out,
                   char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->lt = lt;
    if (!lt || !lt->t) return 0;
    return ice_files(s, lt->t, lo, hi, &out->files, &out->n, err, errlen) ? -1 : 0;
}

void lake_live_free(lake_live *l)
{
    if (!l) return;
    ice_files_free(l->files, l->n);
    memset(l, 0, sizeof *l);
}

static int by_file_key(const void *a, const void *b)
{
    return strcmp(((const ice_file *)a)->key, ((const ice_file *)b)->key);
}

const ice_file *lake_live_find(const lake_live *l, const char *key)
{
    if (!l || !l->n) return NULL;
    ice_file want;
    memset(&want, 0, sizeof want);
    want.key = (char *)key;
    return bsearch(&want, l->files, l->n, sizeof *l->files, by_file_key);
}
