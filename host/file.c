/* file.c - see file.h. */
#include "file.h"

#include <errno.h>
#include <unistd.h>

size_t hs_file_read(int fd, void *buf, size_t len, off_t off) {
  size_t got = 0;

  errno = 0;
  while (got < len) {
    ssize_t n = pread(fd, (char *)buf + got, len - got, off + (off_t)got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break; /* errno is 0 at the end of the file */
    got += (size_t)n;
  }
  return got;
}
