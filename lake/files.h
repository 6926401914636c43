/*
 * files.h - the few POSIX file chores the lake repeats: directories made
 * whole, writes that survive short counts and EINTR, and directory fsync.
 *
 * Errors: the functions given a path return 0, or -1 with the reason in err
 * naming the path ("cannot create /srv/lake/spool: Permission denied"). The two
 * writers are given only a descriptor and stand for write(2) itself: they
 * return 0, or -1 with errno set, and their callers, which know the file's name
 * and their step (often a write, fsync and rename reported as one), write the
 * message.
 */
#ifndef EVENTS_FILES_H
#define EVENTS_FILES_H

#include <stddef.h>
#include <stdint.h>

/* mkdir -p: creates path and its missing parents (not made durable). The reason
 * names the directory that could not be made. */
int files_mkdirs(const char *path, char *err, size_t errlen);

/* fsync of a directory, so the names in it survive a power cut. */
int files_sync_dir(const char *dir, char *err, size_t errlen);

/* Writes all n bytes, retrying short writes and EINTR: at offset off (pwrite),
 * or at the file position when off is FILES_AT_POSITION (write). */
#define FILES_AT_POSITION INT64_C(-1)
int files_write_all(int fd, const void *p, size_t n, int64_t off);

/*
 * Writes the n buffers of iov whole at offset off (pwritev, at most IOV_MAX at a
 * time), retrying short writes and EINTR. iov is consumed: its entries are
 * advanced past what was written.
 */
struct iovec;
int files_pwritev_all(int fd, struct iovec *iov, size_t n, int64_t off);

/* Copies the directory part of path ("a/b/c" -> "a/b") into dir (cap bytes); -1 if it
 * does not fit. */
int files_parent(const char *path, char *dir, size_t cap, char *err, size_t errlen);

#endif
