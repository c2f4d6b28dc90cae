/* threads.c - the threads of this process; see threads.h. */
#include "threads.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"

static int by_tid(const void *a, const void *b) {
  pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
  return (x > y) - (x < y);
}

/* Adds tid to t. Returns 0 or HS_ENOMEM. */
static int add(hs_threads *t, size_t *cap, pid_t tid) {
  if (t->n == *cap) {
    size_t nc = *cap ? *cap * 2 : 16;
    pid_t *p = realloc(t->tids, nc * sizeof(*p));
    if (!p)
      return HS_ENOMEM;
    t->tids = p;
    *cap = nc;
  }
  t->tids[t->n++] = tid;
  return 0;
}

/*
 * One getdents64 call reads the whole directory whenever what it returns
 * leaves room for another entry: it stops only at the end or at an entry
 * that does not fit. So a snapshot costs three system calls (open, one
 * read, close), not opendir's five; it runs around every live load(),
 * inside the swap pause, where each one counts.
 */
int hs_threads_snapshot(hs_threads *t) {
  /* About 300 threads' entries; more take more calls. */
  char buf[8192] __attribute__((aligned(8)));
  size_t cap = 0;
  int rc = 0, fd;
  ssize_t n;

  t->tids = NULL;
  t->n = 0;
  fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  do {
    n = getdents64(fd, buf, sizeof(buf));
    if (n < 0) {
      rc = -errno;
      break;
    }
    for (ssize_t off = 0; off < n && rc == 0;) {
      const struct dirent64 *e = (const struct dirent64 *)(buf + off);
      char *end;
      long tid = strtol(e->d_name, &end, 10);
      off += e->d_reclen;
      if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && *end == '\0')
        rc = add(t, &cap, (pid_t)tid);
    }
  } while (rc == 0 && n > 0 &&
           (size_t)n + sizeof(struct dirent64) + 256 > sizeof(buf));
  close(fd);
  if (rc != 0) {
    hs_threads_free(t);
    return rc;
  }
  if (t->n > 1)
    qsort(t->tids, t->n, sizeof(*t->tids), by_tid);
  return 0;
}

void hs_threads_free(hs_threads *t) {
  free(t->tids);
  t->tids = NULL;
  t->n = 0;
}

int hs_threads_has(const hs_threads *t, pid_t tid) {
  return t->n > 0 &&
         bsearch(&tid, t->tids, t->n, sizeof(*t->tids), by_tid) != NULL;
}

void hs_threads_remove(hs_threads *t, const hs_threads *other) {
  size_t kept = 0;

  for (size_t i = 0; i < t->n; i++)
    if (!hs_threads_has(other, t->tids[i]))
      t->tids[kept++] = t->tids[i];
  t->n = kept;
  if (kept == 0)
    hs_threads_free(t);
}

int hs_threads_since(const hs_threads *before, hs_threads *out) {
  int rc = hs_threads_snapshot(out);

  if (rc == 0)
    hs_threads_remove(out, before);
  return rc;
}

int hs_threads_count(void) {
  hs_threads t;
  int rc = hs_threads_snapshot(&t);

  if (rc != 0)
    return rc;
  rc = (int)t.n;
  hs_threads_free(&t);
  return rc;
}

char *hs_threads_format(const hs_threads *t, size_t max, char *buf,
                        size_t len) {
  size_t used = 0;

  if (len == 0)
    return buf;
  buf[0] = '\0';
  for (size_t i = 0; i < t->n && used < len; i++) {
    int n = i < max ? snprintf(buf + used, len - used, "%s%ld",
                               i ? ", " : "", (long)t->tids[i])
                    : snprintf(buf + used, len - used, ", ...");
    if (n < 0)
      break;
    used += (size_t)n;
    if (i >= max)
      break;
  }
  return buf;
}
