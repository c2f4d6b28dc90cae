/*
 * watch.h - sees every change in the plugin directory through inotify.
 *
 * Whatever way a file is written, the watcher reports one CHANGED per name
 * once the writing is over, or REMOVED when the name is gone:
 *   - a rename into place (IN_MOVED_TO) is complete at once: reported
 *     immediately, with no settle delay;
 *   - anything else (IN_CREATE, IN_MODIFY, IN_CLOSE_WRITE, IN_ATTRIB,
 *     IN_DELETE, IN_MOVED_FROM) arms a per-name settle timer, restarted by
 *     each new event for that name. When it expires the name is reported
 *     CHANGED if it exists then and REMOVED if not, so an editor's backup
 *     dance (rename away, write anew) is one CHANGED, not REMOVED + CHANGED.
 * Subdirectories one level down are watched too (plugins built from a
 * directory of sources): their entries are reported as "sub/name", and the
 * subdirectory itself as "sub" when it appears or goes. The watcher reports
 * names only; deciding whether the content changed is the caller's (by
 * hash). Hidden names (starting with '.') are ignored. Idle, it arms no
 * timer.
 */
#ifndef HS_WATCH_H
#define HS_WATCH_H

#include <stdint.h>

#include "loop.h"

typedef enum {
  HS_WATCH_CHANGED = 1, /* name exists and may have new content */
  HS_WATCH_REMOVED = 2, /* name no longer exists */
  HS_WATCH_RESCAN = 3   /* events were lost (queue overflow); name is NULL */
} hs_watch_event;

typedef struct hs_watch hs_watch;
typedef void (*hs_watch_cb)(hs_watch *w, const char *name, hs_watch_event ev);

typedef struct hs_watch_pending hs_watch_pending; /* private */

struct hs_watch {
  hs_loop *loop;
  char *dir;                  /* owned copy of the watched directory */
  int ifd;                    /* inotify fd */
  int wd;                     /* watch descriptor of dir */
  uint64_t settle_ns;         /* quiet time before a non-rename is reported */
  hs_io io;
  hs_timer timer;             /* armed for the earliest pending name */
  hs_watch_pending *pending;  /* names waiting to settle */
  struct hs_watch_sub {
    int wd;                   /* watch descriptor of dir/name */
    char *name;               /* owned: the subdirectory's name */
  } *subs;                    /* watched subdirectories */
  size_t nsubs, capsubs;
  hs_watch_cb cb;
  void *data;                 /* the caller's */
};

/* Starts watching dir. Returns 0 or a negative code (-errno from
 * inotify_init1/inotify_add_watch: HS_ENOENT, HS_EACCES, ...). */
int hs_watch_start(hs_watch *w, hs_loop *loop, const char *dir,
                   uint64_t settle_ns, hs_watch_cb cb, void *data);
/* Stops watching and drops pending names without reporting them. */
void hs_watch_stop(hs_watch *w);

#endif /* HS_WATCH_H */
