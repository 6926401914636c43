/*
 * announce.h - where a running server of a lake listens, for the command line.
 *
 * A server writes SPOOL/server.json when it starts listening and removes it
 * when it stops cleanly:
 *
 *   {"url":"http://127.0.0.1:8080","lake":"file:///srv/lake","pid":1234}
 *
 * url is an address a local client can reach: a server listening on every
 * address (0.0.0.0, [::]) announces the loopback one. The file alone proves
 * nothing: a server killed with SIGKILL leaves it behind. A reader trusts it
 * only while the spool's lock is held (lake_writer_spool_held, writer.h), which goes
 * with the process that held it.
 */
#ifndef EVENTS_ANNOUNCE_H
#define EVENTS_ANNOUNCE_H

#include <stddef.h>

#define ANNOUNCE_FILE "server.json"

/*
 * Writes spool/server.json (through a temporary file and a rename) for a
 * server listening on addr ("127.0.0.1:8080", "[::]:8080") with the lake
 * lake_url. 0, or -1 with err set.
 */
int announce_write(const char *spool, const char *addr, const char *lake_url, char *err,
                   size_t errlen);

/* Removes spool/server.json. */
void announce_remove(const char *spool);

typedef struct announce {
    char url[300];
    char lake[4200];
    long pid;
} announce;

/*
 * Reads spool/server.json into out. 0, or -1 with the reason in err if there is
 * none or it is not one a reader may trust: not a regular file, writable by
 * others than its owner, owned by another user than the spool's lock file, or
 * malformed.
 */
int announce_read(const char *spool, announce *out, char *err, size_t errlen);

#endif
