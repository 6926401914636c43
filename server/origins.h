/*
 * origins.h - which web pages may call the server: the Host check and CORS.
 *
 * A browser sends the server's answers to any page that asks, if the answer
 * says so (CORS), and sends requests to whatever address a name resolves to,
 * including a name that an attacker's DNS points at 127.0.0.1 (DNS rebinding).
 * A server without tokens has nothing else between a web page and the lake, so:
 *
 *  - Host: without tokens, a request is answered only if its Host header names
 *    a loopback address (127.0.0.0/8, ::1) or name (localhost, *.localhost),
 *    or a host given with --allowed-hosts; with tokens, only when
 *    --allowed-hosts is given (then the same rule). No Host header at all
 *    (HTTP/1.0 tools) passes: a browser always sends one.
 *  - Origin: a request from a web page (an Origin header) that is neither the
 *    server's own origin (the dashboard: Origin is http://HOST of the request)
 *    nor listed in --cors-origins is refused, so another page can neither read
 *    an answer nor have a request carried out; a listed origin gets
 *    Access-Control-Allow-Origin with its own name. With tokens and no
 *    --cors-origins (or with --cors-origins '*'), any origin may call, and
 *    every answer carries Access-Control-Allow-Origin: * (a bearer token is
 *    not sent by the browser on its own, unlike a cookie, so CORS gives a page
 *    nothing it does not already hold).
 *
 * The object is read-only after origins_new, so any thread may use it.
 */
#ifndef EVENTS_ORIGINS_H
#define EVENTS_ORIGINS_H

#include <stddef.h>

typedef struct origins origins;

/*
 * hosts and cors: comma-separated lists, from --allowed-hosts and
 * --cors-origins (NULL or "": not given). tokens: whether the server has
 * tokens. Returns NULL with err set (naming the flag and the entry) when a list
 * has an entry that is not a host name or address (hosts) or an origin
 * "http[s]://host[:port]" or "*" (cors).
 */
origins *origins_new(const char *hosts, const char *cors, int tokens, char *err, size_t errlen);
void origins_free(origins *o);

/* 1 if a request with this Host header (NULL: none) may be answered. */
int origins_host_ok(const origins *o, const char *host);

/*
 * For a request with this Origin header (NULL: none) and Host header (may be
 * NULL): the value of Access-Control-Allow-Origin to answer with ("*", the
 * origin itself, which lives as long as the header, or NULL for none), and
 * *refused = 1 when the request must be refused instead.
 */
const char *origins_allow(const origins *o, const char *origin, const char *host, int *refused);

/* 1 if every origin is allowed (--cors-origins '*', or tokens without --cors-origins). */
int origins_any(const origins *o);

#endif
