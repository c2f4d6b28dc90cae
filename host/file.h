/* file.h - reading a whole file, or a whole range of one, without the
 * EINTR and short-read loop at every caller. */
#ifndef HS_FILE_H
#define HS_FILE_H

#include <stddef.h>
#include <sys/types.h>

/* Reads len bytes of fd at off into buf (pread: the file offset does not
 * move), retrying on EINTR and short reads. Returns the bytes read: len,
 * or fewer at the end of the file (errno 0) or at an error (errno set). */
size_t hs_file_read(int fd, void *buf, size_t len, off_t off);

#endif /* HS_FILE_H */
