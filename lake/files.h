/*
 * files.h - the few POSIX file chores the lake repeats: directories made
 * whole, writes that survive short counts and EINTR, and directory fsync.
 * Every function returns 0, or -1 with errno set.
 */
#ifndef EVENTS_FILES_H
#define EVENTS_FILES_H

#include <stddef.h>
#include <stdint.h>

/* mkdir -p: creates path and its missing parents (not made durable). */
int files_mkdirs(const char *path);

/* fsync of a directory, so the names in it survive a power cut. */
int files_sync_dir(const char *dir);

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

/* Copies the directory part of path ("a/b/c" -> "a/b") into dir (cap bytes). */
int files_parent(const char *path, char *dir, size_t cap);

#endif
