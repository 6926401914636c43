/*
 * faultsrv.h - a misbehaving HTTP server for the libevents tests.
 *
 * It listens on a loopback port and answers each request by the next step
 * of a script: a status (500, 429, 413, ...), a delay, a Retry-After header,
 * or "pass", which forwards the request to a real `events serve` and relays
 * its answer (after the delay, if one is set: a server that stores a batch
 * and answers too slowly). When the script is done, every request passes.
 */
#ifndef EVENTS_FAULTSRV_H
#define EVENTS_FAULTSRV_H

#include <stddef.h>

typedef struct fault_step {
    int status;      /* answered without forwarding; 0: pass to the real server */
    int delay_ms;    /* wait before answering */
    int retry_after; /* seconds, for a Retry-After header; 0: none */
    /* pass only batches of at most this many events, answer 413 above (0: no limit) */
    int max_events;
} fault_step;

typedef struct faultsrv faultsrv;

/*
 * Starts on 127.0.0.1, forwarding to upstream ("http://127.0.0.1:PORT/ingest",
 * or NULL: no pass).
 */
faultsrv *faultsrv_start(const char *upstream, const fault_step *script, size_t n);
/* "http://127.0.0.1:PORT" */
const char *faultsrv_url(const faultsrv *f);
/* Requests answered so far, and how many of them were forwarded. */
int faultsrv_requests(faultsrv *f);
int faultsrv_forwarded(faultsrv *f);
void faultsrv_stop(faultsrv *f);

#endif
