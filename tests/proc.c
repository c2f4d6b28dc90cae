/* proc.c - counts read from /proc; see proc.h. */
#include "proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int proc_maps_count(pid_t pid) {
  char path[64], buf[8192];
  int n = 0;
  snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  for (;;) {
    ssize_t r = read(fd, buf, sizeof(buf));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    for (ssize_t i = 0; i < r; i++)
      n += buf[i] == '\n';
  }
  close(fd);
  return n;
}

int proc_fd_count(pid_t pid) { return proc_fd_count_to(pid, NULL); }

int proc_fd_count_to(pid_t pid, const char *target) {
  char path[64], link[PATH_MAX];
  struct dirent *e;
  int n = 0;
  snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
  DIR *d = opendir(path);
  if (!d)
    return -1;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    if (target) {
      ssize_t len = readlinkat(dirfd(d), e->d_name, link, sizeof(link) - 1);
      if (len < 0)
        continue; /* closed meanwhile */
      link[len] = '\0';
      if (strcmp(link, target) != 0)
        continue;
    }
    n++;
  }
  closedir(d);
  return n;
}
