/*
 * files.c - directories, whole writes, directory fsync.
 */
#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <limits.h>
#include <sys/uio.h>
#include <unistd.h>

/* mkdir of one directory, an existing one being fine. */
static int make_dir(const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0755) && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

int files_mkdirs(const char *path, char *err, size_t errlen)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp) {
        snprintf(err, errlen, "cannot create \"%.100s\": %s", path, strerror(ENAMETOOLONG));
        return -1;
    }
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (make_dir(tmp, err, errlen)) return -1;
        *p = '/';
    }
    return make_dir(tmp, err, errlen);
}

int files_sync_dir(const char *dir, char *err, size_t errlen)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd)) {
        snprintf(err, errlen, "cannot sync %s: %s", dir, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

int files_write_all(int fd, const void *data, size_t n, int64_t off)
{
    const char *p = data;
    while (n) {
        ssize_t r = off == FILES_AT_POSITION ? write(fd, p, n) : pwrite(fd, p, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) {
            errno = EIO;
            return -1;
        }
        p += r;
        n -= (size_t)r;
        if (off != FILES_AT_POSITION) off += r;
    }
    return 0;
}

int files_pwritev_all(int fd, struct iovec *iov, size_t n, int64_t off)
{
    while (n) {
        int k = n > IOV_MAX ? IOV_MAX : (int)n;
        ssize_t r = pwritev(fd, iov, k, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) {
            errno = EIO;
            return -1;
        }
        off += r;
        while (n && (size_t)r >= iov->iov_len) { /* whole buffers written */
            r -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n && r) { /* and part of the next */
            iov->iov_base = (char *)iov->iov_base + r;
            iov->iov_len -= (size_t)r;
        }
    }
    return 0;
}

int files_parent(const char *path, char *dir, size_t cap, char *err, size_t errlen)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n == 0 && slash) n = 1; /* "/x": the root */
    if (n >= cap) {
        snprintf(err, errlen, "path too long: %s", path);
        return -1;
    }
    if (!slash) {
        dir[0] = '.', dir[1] = 0;
        return 0;
    }
    memcpy(dir, path, n);
    dir[n] = 0;
    return 0;
}
