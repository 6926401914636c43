/*
 * announce.c - SPOOL/server.json: where a running server listens (announce.h).
 *
 * The server owns the file while it runs: it is written once the socket
 * listens, and removed first thing at a clean stop, while the spool's lock is
 * still held, so that a reader never finds a lock without the server behind
 * it answering (except for the moment of a shutdown, when it falls back to
 * the lake's files). The command line is the only reader.
 */
#include "announce.h"
#include "writer.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* "0.0.0.0:8080" -> "http://127.0.0.1:8080", "[::]:8080" -> "http://[::1]:8080". */
static void local_url(const char *addr, char *out, size_t cap)
{
    if (!strncmp(addr, "0.0.0.0:", 8))
        snprintf(out, cap, "http://127.0.0.1:%s", addr + 8);
    else if (!strncmp(addr, "[::]:", 5))
        snprintf(out, cap, "http://[::1]:%s", addr + 5);
    else
        snprintf(out, cap, "http://%s", addr);
}

int announce_write(const char *spool, const char *addr, const char *lake_url, char *err,
                   size_t errlen)
{
    char url[300], path[4200], tmp[4300];
    local_url(addr, url, sizeof url);
    json_t *o =
        json_pack("{s:s,s:s,s:I}", "url", url, "lake", lake_url, "pid", (json_int_t)getpid());
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!text) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(path, sizeof path, "%s/%s", spool, ANNOUNCE_FILE);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int rc = -1;
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
    } else {
        int bad = fprintf(f, "%s\n", text) < 0;
        bad |= fclose(f) != 0;
        if (bad || rename(tmp, path)) {
            snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
            unlink(tmp);
        } else {
            rc = 0;
        }
    }
    free(text);
    return rc;
}

void announce_remove(const char *spool)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", spool, ANNOUNCE_FILE);
    unlink(path);
}

/*
 * 1 if the announcement open on fd may be trusted: a file another user could have written may
 * point the reader, and its token, elsewhere. Else 0 with the reason in err.
 */
static int trusted(int fd, const char *path, const char *lock, char *err, size_t errlen)
{
    struct stat st, ls;
    if (fstat(fd, &st)) {
        snprintf(err, errlen, "cannot stat %s: %s", path, strerror(errno));
        return 0;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > 65536) {
        snprintf(err, errlen, "%s is not a regular file of at most 64 KiB", path);
        return 0;
    }
    if (st.st_mode & 022) {
        snprintf(err, errlen, "%s is writable by others than its owner", path);
        return 0;
    }
    if (stat(lock, &ls)) {
        snprintf(err, errlen, "cannot stat %s: %s", lock, strerror(errno));
        return 0;
    }
    if (ls.st_uid != st.st_uid) {
        snprintf(err, errlen, "%s is owned by another user than %s", path, lock);
        return 0;
    }
    return 1;
}

int announce_read(const char *spool, announce *out, char *err, size_t errlen)
{
    char path[4200], lock[4200];
    memset(out, 0, sizeof *out);
    snprintf(path, sizeof path, "%s/%s", spool, ANNOUNCE_FILE);
    snprintf(lock, sizeof lock, "%s/%s", spool, LAKE_WRITER_SPOOL_LOCK);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (!trusted(fd, path, lock, err, errlen)) {
        close(fd);
        return -1;
    }
    json_t *o = json_loadfd(fd, 0, NULL);
    close(fd);
    const char *url = json_string_value(json_object_get(o, "url"));
    const char *lake = json_string_value(json_object_get(o, "lake"));
    int rc = -1;
    if (url && lake && !strncmp(url, "http://", 7) && strlen(url) < sizeof out->url &&
        strlen(lake) < sizeof out->lake) {
        snprintf(out->url, sizeof out->url, "%s", url);
        snprintf(out->lake, sizeof out->lake, "%s", lake);
        out->pid = (long)json_integer_value(json_object_get(o, "pid"));
        rc = 0;
    } else {
        snprintf(err, errlen, "%s does not hold a server's url and lake", path);
    }
    json_decref(o);
    return rc;
}
