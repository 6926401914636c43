/*
 * deliver.h - the delivery engine of webhook subscriptions: events from the
 * durable stream log to each subscription's URL, signed, in order, at least
 * once (issue 16; the records are lake/subs.h's, the patterns server/pattern.h's).
 *
 * Who delivers. A subscription lives in the lake, so that every server of a
 * lake sees it; exactly one of them delivers it at a time: the holder of its
 * lease, the record's "owner" and "leaseUntil". The poller thread lists the
 * lake's subscriptions every --subscription-poll (lake_subs_list answers from
 * its cache when nothing changed) and takes the lease of an active
 * subscription whose lease is absent, expired or already its own: a
 * lake_subs_update, whose conditional put makes one winner of two servers.
 * The holder renews the lease at half term, with a cursor write or alone, and
 * delivers only while its lease runs; a write that finds another owner in the
 * record drops the subscription at once (what it had in flight is not
 * acknowledged, and the new owner delivers it again). At stop the leases are
 * given up (leaseUntil 0), so that another server takes over at its next poll.
 *
 * What it delivers. --deliver-connections worker threads, each with its own
 * libcurl easy handle (keep-alive to the receiver, CURLOPT_NOSIGNAL), take
 * the work of the subscriptions this server holds, one job at a time, under
 * one mutex (d->mu) that only guards the bookkeeping: never held over a read
 * of the stream, a request or a write to the store. A job is one of
 *   - dispatch: read the subscription's next batch with lake_stream_read (the
 *     server's reader, which sees the writer's unsealed segments too), from
 *     the in-memory read cursor, filtered by the pattern and the filters, at
 *     most batchSize events and --deliver-max-bytes; then its first attempt.
 *     With the window full (below), the next batch of the main stream is
 *     read ahead and kept, and attempted first when the window has room: its
 *     read overlaps the attempt and the cursor write before it, and as it
 *     was never sent, a crash only drops it;
 *   - attempt: a POST of a batch whose backoff has run out;
 *   - persist: the record's next version with the cursor after the batches
 *     acknowledged, the statistics and the lease (lake_subs_update with an
 *     edit, so that a concurrent PATCH is kept).
 * A batch shorter than batchSize whose oldest event is younger than maxWaitMs
 * is not sent yet: the subscription sleeps until that age, or until ingest
 * has committed enough events to fill it (deliver_notify, called when the
 * writer made a group durable; the poll is the fallback).
 *
 * Order and at least once. Batches of a subscription are read in stream
 * order, and at most `concurrency` of them are unrecorded: in flight, or
 * done (2xx, or dead-lettered) with their cursor not written yet. The
 * cursor in the record moves only over the prefix of batches that are done.
 * With concurrency 1 (the default) batch k+1 is read only once batch k is
 * done and its cursor written: in order, and a crash repeats at most the
 * batch in flight. With concurrency c, up to c batches are unrecorded and
 * cursor writes are coalesced (one per subscription at a time, carrying the
 * newest done cursor), so a fast receiver is not held to one store write
 * (two fsyncs) per batch; a crash repeats at most c batches.
 *
 * The request. POST url, Content-Type: application/json, the body
 *   {"type":"events.batch"|"events.replay"|"events.retry","timestamp":"<RFC 3339>",
 *    "data":{"subscription":"ID","events":[<stored lines as they are>],"from":"C","next":"C"}}
 * built once per batch (the lines are copied once, never parsed), signed per
 * attempt as Standard Webhooks says: webhook-id "msg_" + 32 hex of
 * sha256("ID\nTYPE\nFIRST\nLAST") (the same on every attempt of a batch),
 * webhook-timestamp (unix seconds), webhook-signature "v1," + base64 of
 * HMAC-SHA256(the secret's key, "{webhook-id}.{timestamp}.{body}"); the
 * batch's buffer keeps room for "{webhook-id}.{timestamp}." before the body,
 * so the HMAC runs once over one contiguous buffer.
 *
 * The answer. 2xx: done. 410: the subscription is disabled (state
 * "disabled", reason "receiver answered 410 Gone"); nothing more is sent.
 * Anything else (a status, a timeout, a refused connection): the attempt
 * failed; the batch waits min(5 min, 1 s * 2^(attempts-1)) with full jitter,
 * or what the answer's Retry-After says (seconds or an HTTP date, at most
 * 1 h), without holding a worker. After maxAttempts the batch becomes a dead
 * letter (lake_subs_dead_put: why, the last status, 1 KiB of the last
 * answer, its events) and counts as done.
 *
 * Replay and retry. A record's "replay" {from, to, cursor} is delivered
 * (events received in [from, to], the same pattern and filters) as
 * "events.replay" batches, its progress in replay.cursor; the main cursor is
 * untouched and main delivery waits. retryRequested > retryDone redelivers
 * the dead letters (all, or retryName), oldest first, as "events.retry",
 * each deleted on 2xx; then retryDone is set. Retry goes first, then replay,
 * then the stream; a switch happens when nothing is in flight.
 */
#ifndef EVENTS_DELIVER_H
#define EVENTS_DELIVER_H

#include "buf.h"
#include "store.h"
#include "stream.h"

#include <stddef.h>
#include <stdint.h>

/* Reads the stream as lake_stream_read does (the server adds its writer's local files). */
typedef int (*deliver_read_fn)(void *ud, const lake_stream_req *q, lake_stream_res *res, char *err,
                               size_t errlen);

typedef struct deliver_config {
    store *store;
    deliver_read_fn read;
    void *read_ud;
    unsigned connections;    /* worker threads, each one connection (--deliver-connections) */
    int64_t lease_ms;        /* a lease's term (--subscription-lease) */
    int64_t poll_ms;         /* the listing's period (--subscription-poll) */
    uint64_t max_bytes;      /* bytes of the events of one batch (--deliver-max-bytes) */
    int64_t backoff_base_ms; /* 0: 1 s */
    int64_t backoff_cap_ms;  /* 0: 5 min */
} deliver_config;

typedef struct deliver deliver;

/* Starts the poller and the workers. 0, or -1 with err. */
int deliver_start(const deliver_config *c, deliver **out, char *err, size_t errlen);
/* Ingest made `events` events durable: subscriptions waiting for events look again. */
void deliver_notify(deliver *d, size_t events);
/* Stops the threads (an attempt in progress is cut), gives up the leases, frees d (NULL: none). */
void deliver_stop(deliver *d);
/* The engine's metrics in Prometheus' text format (per subscription this server delivers). */
void deliver_metrics(deliver *d, buf *b);

#endif
