/*
 * watch.c - the plugin directory's changes, from inotify, settled per name.
 *
 * A rename into place is reported at once. Every other event puts the name
 * on the pending list with a deadline settle_ns from now (or moves its
 * deadline); one loop timer is armed for the earliest deadline. When a
 * name's deadline passes, whether it exists decides CHANGED or REMOVED.
 * The callback may call hs_watch_stop(); w itself must outlive the call.
 */
#include "watch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/inotify.h>
#include <sys/stat.h>

#include "hotswap.h"

#define WATCH_MASK                                                             \
  (IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE |            \
   IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

struct hs_watch_pending {
  hs_watch_pending *next;
  uint64_t due_ns;  /* when the name has been quiet for settle_ns */
  uint64_t last_ns; /* its last event */
  int writing;      /* created or modified, and not closed yet */
  char name[];      /* NUL-terminated */
};

/* A file still open for writing is waited for until its writer closes it
 * (IN_CLOSE_WRITE), but at most this long after its last event: GNU ld,
 * for one, creates its output and writes it ~80 ms later, longer than any
 * sensible settle time. */
#define WRITER_WAIT_NS (2000u * 1000000u)

static int stopped(const hs_watch *w) {
  return w->ifd < 0;
}

static void pending_free_all(hs_watch_pending *p) {
  while (p != NULL) {
    hs_watch_pending *next = p->next;
    free(p);
    p = next;
  }
}

/* Unlinks and returns the pending entry for name, or NULL. */
static hs_watch_pending *pending_take(hs_watch *w, const char *name) {
  hs_watch_pending **pp;

  for (pp = &w->pending; *pp != NULL; pp = &(*pp)->next)
    if (strcmp((*pp)->name, name) == 0) {
      hs_watch_pending *p = *pp;
      *pp = p->next;
      p->next = NULL;
      return p;
    }
  return NULL;
}

/* Sets name's deadline to due_ns, adding it when new, and tracks whether
 * a writer has it open (mask: the inotify event). Returns 0 or
 * HS_ENOMEM. */
static int pending_touch(hs_watch *w, const char *name, uint64_t due_ns,
                         uint32_t mask) {
  hs_watch_pending *p;
  size_t len;

  for (p = w->pending; p != NULL; p = p->next)
    if (strcmp(p->name, name) == 0)
      break;
  if (p == NULL) {
    len = strlen(name);
    p = malloc(sizeof(*p) + len + 1);
    if (p == NULL)
      return HS_ENOMEM;
    memcpy(p->name, name, len + 1);
    p->writing = 0;
    p->next = w->pending;
    w->pending = p;
  }
  p->due_ns = due_ns;
  p->last_ns = due_ns - w->settle_ns;
  if (mask & IN_CLOSE_WRITE)
    p->writing = 0;
  else if ((mask & (IN_CREATE | IN_MODIFY)) && !(mask & IN_ISDIR))
    p->writing = 1;
  else if (mask & (IN_DELETE | IN_MOVED_FROM))
    p->writing = 0;
  return 0;
}

/* Arms the timer for the earliest deadline, or disarms it when nothing is
 * pending. */
static void rearm(hs_watch *w) {
  const hs_watch_pending *p;
  uint64_t first = UINT64_MAX, now;

  if (w->pending == NULL) {
    hs_loop_timer_stop(&w->timer);
    return;
  }
  for (p = w->pending; p != NULL; p = p->next)
    if (p->due_ns < first)
      first = p->due_ns;
  now = hs_now_ns();
  /* The heap has room for a timer that was started before; a first start
   * that fails for memory leaves the names pending until the next event. */
  (void)hs_loop_timer_start(w->loop, &w->timer, first > now ? first - now : 0,
                            0);
}

static void on_timer(hs_timer *t) {
  hs_watch *w = t->data;
  hs_watch_pending *due = NULL, **pp = &w->pending;
  uint64_t now = hs_now_ns();
  int dfd;

  /* Move every expired name to a list of our own first, so that the
   * callbacks may stop the watch or cause new events. */
  while (*pp != NULL) {
    hs_watch_pending *p = *pp;
    if (p->due_ns <= now && p->writing &&
        p->last_ns + WRITER_WAIT_NS > now) {
      p->due_ns = p->last_ns + WRITER_WAIT_NS; /* wait for the close */
      pp = &p->next;
    } else if (p->due_ns <= now) {
      *pp = p->next;
      p->next = due;
      due = p;
    } else {
      pp = &p->next;
    }
  }
  rearm(w);
  if (due == NULL)
    return;

  dfd = open(w->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  while (due != NULL) {
    hs_watch_pending *p = due;
    struct stat st;
    int exists;

    due = p->next;
    if (!stopped(w)) {
      exists = dfd >= 0 &&
               (fstatat(dfd, p->name, &st, AT_SYMLINK_NOFOLLOW) == 0 ||
                (errno != ENOENT && errno != ENOTDIR));
      w->cb(w, p->name, exists ? HS_WATCH_CHANGED : HS_WATCH_REMOVED);
    }
    free(p);
  }
  if (dfd >= 0)
    close(dfd);
}

/* Starts watching the subdirectory name (idempotent; errors ignored: a
 * subdirectory that cannot be watched is simply not seen inside). */
static void sub_add(hs_watch *w, const char *name) {
  char path[PATH_MAX];
  for (size_t i = 0; i < w->nsubs; i++)
    if (strcmp(w->subs[i].name, name) == 0)
      return;
  if (w->nsubs == w->capsubs) {
    size_t cap = w->capsubs ? w->capsubs * 2 : 8;
    struct hs_watch_sub *s = realloc(w->subs, cap * sizeof(*s));
    if (!s)
      return;
    w->subs = s;
    w->capsubs = cap;
  }
  snprintf(path, sizeof(path), "%s/%s", w->dir, name);
  int wd = inotify_add_watch(w->ifd, path, WATCH_MASK);
  char *copy = strdup(name);
  if (wd < 0 || !copy) {
    free(copy);
    return;
  }
  w->subs[w->nsubs].wd = wd;
  w->subs[w->nsubs].name = copy;
  w->nsubs++;
}

/* Forgets the subdirectory at index i (its watch is gone or dropped). */
static void sub_drop(hs_watch *w, size_t i, int rm) {
  if (rm)
    inotify_rm_watch(w->ifd, w->subs[i].wd);
  free(w->subs[i].name);
  w->subs[i] = w->subs[--w->nsubs];
}

static struct hs_watch_sub *sub_by_wd(hs_watch *w, int wd, size_t *at) {
  for (size_t i = 0; i < w->nsubs; i++)
    if (w->subs[i].wd == wd) {
      *at = i;
      return &w->subs[i];
    }
  return NULL;
}

/* Handles one inotify event. Returns 1 when the callback stopped w. */
static int handle_event(hs_watch *w, const struct inotify_event *ie,
                        uint64_t due_ns) {
  char name[2 * NAME_MAX + 2];
  size_t at;
  struct hs_watch_sub *sub = ie->wd == w->wd ? NULL : sub_by_wd(w, ie->wd, &at);

  if (ie->wd != w->wd && !sub && !(ie->mask & IN_Q_OVERFLOW))
    return 0; /* a subdirectory dropped a moment ago */
  if (ie->mask & IN_IGNORED) {
    if (sub)
      sub_drop(w, at, 0);
    else
      w->wd = -1; /* the directory is gone; the kernel dropped the watch */
    return 0;
  }
  if (sub && (ie->mask & (IN_DELETE_SELF | IN_MOVE_SELF)))
    return 0; /* reported through the parent's IN_DELETE / IN_MOVED_FROM */
  if (ie->mask & (IN_Q_OVERFLOW | IN_DELETE_SELF | IN_MOVE_SELF)) {
    w->cb(w, NULL, HS_WATCH_RESCAN);
    return stopped(w);
  }
  if (ie->len == 0 || ie->name[0] == '\0' || ie->name[0] == '.')
    return 0;
  if (!sub && (ie->mask & IN_ISDIR)) {
    if (ie->mask & (IN_CREATE | IN_MOVED_TO))
      sub_add(w, ie->name);
    else if (ie->mask & IN_MOVED_FROM)
      for (size_t i = 0; i < w->nsubs; i++)
        if (strcmp(w->subs[i].name, ie->name) == 0) {
          sub_drop(w, i, 1);
          break;
        }
  }
  if (sub)
    snprintf(name, sizeof(name), "%s/%s", sub->name, ie->name);
  else
    snprintf(name, sizeof(name), "%s", ie->name);
  if ((ie->mask & IN_MOVED_TO) && !(ie->mask & IN_ISDIR)) {
    free(pending_take(w, name));
    w->cb(w, name, HS_WATCH_CHANGED);
    return stopped(w);
  }
  if (pending_touch(w, name, due_ns, ie->mask) < 0) {
    /* Out of memory: the name cannot wait; have the caller look at all. */
    w->cb(w, NULL, HS_WATCH_RESCAN);
    return stopped(w);
  }
  return 0;
}

static void on_inotify(hs_io *io, uint32_t events) {
  hs_watch *w = io->data;
  _Alignas(struct inotify_event) char buf[16 * (sizeof(struct inotify_event) +
                                                NAME_MAX + 1)];

  (void)events;
  for (;;) {
    ssize_t n = read(w->ifd, buf, sizeof(buf));
    uint64_t due_ns;
    char *p;

    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break; /* EAGAIN: drained */
    due_ns = hs_now_ns() + w->settle_ns;
    for (p = buf; p < buf + n;) {
      const struct inotify_event *ie = (const struct inotify_event *)p;
      if (handle_event(w, ie, due_ns))
        return;
      p += sizeof(*ie) + ie->len;
    }
  }
  rearm(w);
}

int hs_watch_start(hs_watch *w, hs_loop *loop, const char *dir,
                   uint64_t settle_ns, hs_watch_cb cb, void *data) {
  int rc;

  memset(w, 0, sizeof(*w));
  w->loop = loop;
  w->ifd = -1;
  w->wd = -1;
  w->settle_ns = settle_ns;
  w->cb = cb;
  w->data = data;
  hs_loop_timer_init(&w->timer, on_timer, w);
  w->dir = strdup(dir);
  if (w->dir == NULL)
    return HS_ENOMEM;
  w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (w->ifd < 0) {
    rc = -errno;
    goto fail;
  }
  w->wd = inotify_add_watch(w->ifd, dir, WATCH_MASK);
  if (w->wd < 0) {
    rc = -errno;
    goto fail;
  }
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
      if (e->d_name[0] != '.' && e->d_type == DT_DIR)
        sub_add(w, e->d_name);
    closedir(d);
  }
  rc = hs_loop_io_start(loop, &w->io, w->ifd, EPOLLIN, on_inotify, w);
  if (rc < 0)
    goto fail;
  return 0;

fail:
  if (w->ifd >= 0)
    close(w->ifd);
  w->ifd = -1;
  w->wd = -1;
  free(w->dir);
  w->dir = NULL;
  return rc;
}

void hs_watch_stop(hs_watch *w) {
  if (stopped(w))
    return;
  hs_loop_io_stop(&w->io);
  hs_loop_timer_stop(&w->timer);
  close(w->ifd); /* also drops the watch descriptor */
  w->ifd = -1;
  w->wd = -1;
  pending_free_all(w->pending);
  w->pending = NULL;
  for (size_t i = 0; i < w->nsubs; i++)
    free(w->subs[i].name);
  free(w->subs);
  w->subs = NULL;
  w->nsubs = w->capsubs = 0;
  free(w->dir);
  w->dir = NULL;
}
