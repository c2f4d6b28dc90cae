/*
 * worker.h - a background thread for the slow parts of a reload: the copy
 * into the cache before validation, and both halves of a swap.
 *
 * dlopen and dlclose cost hundreds of microseconds (mmap, relocation, page
 * faults, munmap); done in the loop they would be most of the swap pause.
 * The worker opens a validated copy before the swap (entry symbol and
 * descriptor checked, pages prefaulted) and closes the retired image after
 * it, so the loop only runs the transaction itself: old unload -> state ->
 * new load. It also copies changed files into the cache (copy, hash, ELF
 * check: tens of milliseconds for a large plugin) before validation, and
 * prepares the state bytes a version it opened will need. Results come
 * back to the loop through an eventfd; callbacks always run on the loop
 * thread. Only copies the sandbox has accepted are ever opened here.
 */
#ifndef HS_WORKER_H
#define HS_WORKER_H

#include <pthread.h>

#include "cache.h"
#include "err.h"
#include "loader.h"
#include "loop.h"
#include "state.h"

typedef struct hs_worker hs_worker;
typedef struct hs_open_job hs_open_job;

/* Called on the loop thread when an open is done: rc 0 with img filled, or
 * a negative code with err filled. job->data is the caller's; set it to
 * NULL beforehand to cancel (the image is then closed by the worker). */
typedef void (*hs_open_cb)(hs_open_job *job);

struct hs_open_job {
  hs_worker *w;
  char *path;           /* owned: the copy to open */
  char *file;           /* owned: the watched file's name, for messages */
  void *live;           /* handle the result must differ from, or NULL */
  int rc;
  hs_image img;
  hs_error err;
  hs_open_cb cb;
  void *data;           /* the caller's; NULL = cancelled */
  int closing;          /* internal: a close job */
  int copying;          /* internal: a copy job (file relative to dirfd) */
  int dirfd;            /* copy jobs: the directory of file */
  hs_cache_file copy;   /* close jobs: the copy to remove; copy jobs: the
                           copy made (the callback takes it over) */
  hs_state state;       /* open jobs: the new version's zeroed state bytes,
                           every page touched (the callback may take them
                           over; freed after it) */
  char name[64];        /* close jobs: plugin name for the warning */
  uint64_t leaked;      /* close jobs: bytes of the image still mapped */
  hs_open_job *next;
};

struct hs_worker {
  hs_loop *loop;
  hs_cache *cache;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  hs_open_job *todo, *todo_tail; /* FIFO for the thread */
  hs_open_job *done;             /* for the loop */
  int efd;                       /* eventfd the thread signals */
  hs_io io;
  int quit;
  int started;
  /* Set after hs_worker_start, or NULL: called on the loop when a closed
   * image stays mapped (bytes of it); returns the plugin's total so far,
   * for the warning. */
  uint64_t (*on_leak)(void *data, const char *name, uint64_t bytes);
  void *leak_data;
};

/* Starts the thread (all signals blocked in it). Returns 0 or -errno. */
int hs_worker_start(hs_worker *w, hs_loop *loop, hs_cache *cache);

/* Finishes every queued job, runs the callbacks of finished opens on this
 * thread, and joins the thread. */
void hs_worker_stop(hs_worker *w);

/* Opens path (see hs_loader_open) on the worker and prepares the zeroed
 * state its descriptor asks for (job->state: the swap then copies into
 * pages already there); cb runs later on the loop. Returns the job (owned
 * by the worker; valid until cb returns) or NULL when out of memory. */
hs_open_job *hs_worker_open(hs_worker *w, const char *path, const char *file,
                            void *live, hs_open_cb cb, void *data);

/* Runs hs_cache_add(cache, dirfd, file) on the worker; cb runs on the
 * loop with job->rc, job->copy (the callback takes it over) and job->err.
 * dirfd must stay open until then. Returns the job or NULL when out of
 * memory. Cancel like an open (data = NULL): the copy is removed. */
hs_open_job *hs_worker_copy(hs_worker *w, int dirfd, const char *file,
                            hs_open_cb cb, void *data);

/* Closes img and then removes copy on the worker, and warns (naming name
 * and copy's file, why it pins itself (copy->pins) and the bytes it keeps
 * mapped, from /proc/self/maps) if the object stays mapped. img and copy
 * are taken over (emptied). On out of memory, does it inline. */
void hs_worker_close(hs_worker *w, const char *name, hs_image *img,
                     hs_cache_file *copy);

#endif /* HS_WORKER_H */
