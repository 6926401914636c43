/*
 * recent.c - the ring of the latest acknowledged events (recent.h).
 *
 * Each event is one allocation: a small header and its line (without the
 * newline), found again by its type (matched by /recent's patterns) and its
 * hour (the answer's bucket). The ring is an array of max_events pointers
 * used as a circular queue, oldest at head. recent_add builds a batch's
 * entries before it takes the lock, pushes them in under it (evicting the
 * oldest past either bound onto a list), and frees the evicted after it.
 * recent_render copies the matching lines into the answer under the lock:
 * an answer is at most --recent-bytes, and a reader holds the lock no longer
 * than that copy.
 */
#include "recent.h"
#include "layout.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    struct entry *next; /* on the evicted list */
    int64_t hour;
    uint32_t len; /* of line */
    uint16_t type_off, type_len;
    char line[];
} entry;

struct recent {
    size_t cap;     /* --recent-events */
    uint64_t limit; /* --recent-bytes */
    pthread_mutex_t mu;
    /* under mu: the ring (slot[(head + i) % cap], i < count: oldest first), its lines' bytes */
    entry **slot;
    size_t head, count;
    uint64_t bytes;
};

recent *recent_new(size_t max_events, uint64_t max_bytes)
{
    recent *rc = calloc(1, sizeof *rc);
    if (!rc || !(rc->slot = calloc(max_events, sizeof *rc->slot))) {
        free(rc);
        return NULL;
    }
    rc->cap = max_events;
    rc->limit = max_bytes;
    pthread_mutex_init(&rc->mu, NULL);
    return rc;
}

void recent_free(recent *rc)
{
    if (!rc) return;
    for (size_t i = 0; i < rc->count; i++) free(rc->slot[(rc->head + i) % rc->cap]);
    free(rc->slot);
    pthread_mutex_destroy(&rc->mu);
    free(rc);
}

/*
 * An entry for a stored line: {"id":"…","type":"…","ts":…}\n (event.h). NULL when it
 * is over the byte bound on its own, or out of memory.
 */
static entry *entry_of(const recent *rc, const char *lines, const lake_event *e)
{
    const char *line = lines + e->off;
    uint32_t len = e->len && line[e->len - 1] == '\n' ? e->len - 1 : e->len;
    size_t type_off = (size_t)(e->id_off - e->off) + e->id_len + strlen("\",\"type\":\"");
    if (len > rc->limit || type_off >= len) return NULL;
    const char *q = memchr(line + type_off, '"', len - type_off);
    entry *n = q ? malloc(sizeof *n + len) : NULL;
    if (!n) return NULL;
    memcpy(n->line, line, len);
    n->next = NULL;
    n->hour = e->hour;
    n->len = len;
    n->type_off = (uint16_t)type_off;
    n->type_len = (uint16_t)(q - (line + type_off));
    return n;
}

/* Takes the oldest entry off the ring onto *evicted. rc->mu held, the ring not empty. */
static void evict_oldest(recent *rc, entry **evicted)
{
    entry *old = rc->slot[rc->head];
    rc->slot[rc->head] = NULL;
    rc->head = (rc->head + 1) % rc->cap;
    rc->count--;
    rc->bytes -= old->len;
    old->next = *evicted;
    *evicted = old;
}

/* Pushes k entries, newest last, evicting past either bound; returns what it evicted. */
static entry *push(recent *rc, entry **fresh, size_t k)
{
    entry *evicted = NULL;
    pthread_mutex_lock(&rc->mu);
    for (size_t i = 0; i < k; i++) {
        if (!fresh[i]) continue;
        if (rc->count == rc->cap) evict_oldest(rc, &evicted);
        rc->slot[(rc->head + rc->count++) % rc->cap] = fresh[i];
        rc->bytes += fresh[i]->len;
        while (rc->bytes > rc->limit) evict_oldest(rc, &evicted);
    }
    pthread_mutex_unlock(&rc->mu);
    return evicted;
}

void recent_add(recent *rc, const char *lines, const lake_event *ev, size_t n)
{
    size_t k = 0, first = n;
    for (size_t i = n; i-- > 0 && k < rc->cap;) /* the last cap stored: the rest would go */
        if (ev[i].stored) k++, first = i;
    if (!k || !lines) return;
    entry **fresh = malloc(k * sizeof *fresh);
    if (!fresh) return;
    size_t m = 0;
    for (size_t i = first; i < n; i++)
        if (ev[i].stored) fresh[m++] = entry_of(rc, lines, &ev[i]);
    for (entry *e = push(rc, fresh, m), *next; e; e = next) {
        next = e->next;
        free(e);
    }
    free(fresh);
}

int recent_render(recent *rc, size_t limit, const glob_list *types, int64_t now_ms, buf *out)
{
    size_t count = 0;
    int64_t hour = lake_hour(now_ms);
    int bad = buf_puts(out, "{\"events\":[");
    pthread_mutex_lock(&rc->mu);
    for (size_t j = 0; j < rc->count && count < limit && !bad; j++) {
        const entry *e = rc->slot[(rc->head + rc->count - 1 - j) % rc->cap];
        if (!glob_list_match(types, e->line + e->type_off, e->type_len)) continue;
        if (!count++) hour = e->hour;
        bad = (count > 1 && buf_putc(out, ',')) || buf_append(out, e->line, e->len);
    }
    pthread_mutex_unlock(&rc->mu);
    char bucket[LAKE_KEY_MAX];
    lake_hour_prefix(hour, bucket);
    size_t bl = strlen(bucket);
    if (bl && bucket[bl - 1] == '/') bucket[--bl] = 0;
    return bad || buf_printf(out, "],\"count\":%zu,\"bucket\":\"%s\"}", count, bucket);
}

void recent_stats(recent *rc, uint64_t *events, uint64_t *bytes)
{
    pthread_mutex_lock(&rc->mu);
    *events = rc->count;
    *bytes = rc->bytes;
    pthread_mutex_unlock(&rc->mu);
}
