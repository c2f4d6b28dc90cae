/* worker.c - the loader thread; see worker.h. */
#include "worker.h"

#include <errno.h>
#include <inttypes.h>
#include <link.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "dl.h"
#include "imagemap.h"
#include "log.h"

struct prefault_arg {
  uintptr_t base;
  volatile unsigned char sum;
};

static int prefault_cb(struct dl_phdr_info *info, size_t size, void *data) {
  struct prefault_arg *a = data;
  long page = sysconf(_SC_PAGESIZE);
  (void)size;
  if (info->dlpi_addr != a->base)
    return 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_R))
      continue;
    uintptr_t start = (info->dlpi_addr + ph->p_vaddr) & ~(uintptr_t)(page - 1);
    uintptr_t end = info->dlpi_addr + ph->p_vaddr + ph->p_filesz;
    for (uintptr_t p = start; p < end; p += (uintptr_t)page)
      a->sum += *(volatile const unsigned char *)p;
  }
  return 1;
}

/* Touches every file-backed page of the object, so that the first calls
 * into it from the loop do not fault. */
static void prefault(void *handle) {
  struct link_map *lm = NULL;
  struct prefault_arg a = {0, 0};
  if (dlinfo(handle, RTLD_DI_LINKMAP, &lm) != 0 || !lm)
    return;
  a.base = lm->l_addr;
  dl_iterate_phdr(prefault_cb, &a);
}

static void run_job(hs_open_job *job) {
  if (job->copying) {
    hs_error_clear(&job->err);
    job->rc = hs_cache_add(job->w->cache, job->dirfd, job->file, &job->copy,
                           &job->err);
    return;
  }
  if (job->closing) {
    job->rc = hs_loader_close(&job->img, job->copy.path) ? 0 : HS_EBUSY;
    /* What is left of it in the address space, before the copy goes. */
    job->leaked = hs_imagemap_mapped(job->copy.path);
    if (job->leaked)
      job->rc = HS_EBUSY;
    return;
  }
  hs_error_clear(&job->err);
  job->rc = hs_loader_open(&job->img, job->path, job->file, &job->err);
  if (job->rc == 0 && job->live && job->img.handle == job->live) {
    hs_loader_close(&job->img, job->path);
    job->rc = hs_error_set(&job->err, HS_EDLOPEN, "open",
                           "dlopen of %s returned the object already "
                           "loaded, not the new copy",
                           job->file);
  }
  if (job->rc == 0) {
    prefault(job->img.handle);
    /* Out of memory here is not an error: the swap allocates instead. */
    hs_state_prepare(&job->state, job->img.desc->state_version,
                     job->img.desc->state_size);
  }
}

static void *thread_main(void *arg) {
  hs_worker *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!w->todo && !w->quit)
      pthread_cond_wait(&w->cv, &w->mu);
    hs_open_job *job = w->todo;
    if (!job)
      break; /* quit, and nothing left */
    w->todo = job->next;
    if (!w->todo)
      w->todo_tail = NULL;
    pthread_mutex_unlock(&w->mu);

    run_job(job);

    pthread_mutex_lock(&w->mu);
    job->next = w->done;
    w->done = job;
    uint64_t one = 1;
    ssize_t n = write(w->efd, &one, sizeof(one));
    (void)n; /* the counter cannot overflow at one write per job */
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

static void finish(hs_worker *w, hs_open_job *job) {
  if (job->closing) {
    if (job->rc != 0) {
      uint64_t all = w->on_leak ? w->on_leak(w->leak_data, job->name,
                                              job->leaked)
                                : job->leaked;
      hs_log(HS_LOG_WARN, job->name, "warning",
             "%s: the old version stays mapped after dlclose: %s; this "
             "reload leaks %" PRIu64 " KiB (%" PRIu64 " KiB in all for %s)",
             job->file,
             job->copy.pins[0] ? job->copy.pins
                               : "the library pins itself (e.g. a "
                                 "thread-local destructor ran, or it is "
                                 "NODELETE)",
             (job->leaked + 1023) / 1024, (all + 1023) / 1024, job->name);
    }
    hs_cache_remove(w->cache, &job->copy);
  } else if (job->data) {
    job->cb(job);
  } else if (job->copying) {
    hs_cache_remove(w->cache, &job->copy); /* cancelled */
  } else if (job->rc == 0) {
    hs_loader_close(&job->img, job->path); /* cancelled */
  }
  hs_state_free(&job->state);
  free(job->path);
  free(job->file);
  free(job);
}

/* Runs the callbacks of finished jobs, oldest first. */
static void drain(hs_worker *w) {
  pthread_mutex_lock(&w->mu);
  hs_open_job *list = w->done;
  w->done = NULL;
  pthread_mutex_unlock(&w->mu);
  hs_open_job *rev = NULL;
  while (list) {
    hs_open_job *next = list->next;
    list->next = rev;
    rev = list;
    list = next;
  }
  while (rev) {
    hs_open_job *next = rev->next;
    finish(w, rev);
    rev = next;
  }
}

static void on_event(hs_io *io, uint32_t events) {
  hs_worker *w = io->data;
  uint64_t n;
  (void)events;
  if (read(w->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
    return;
  drain(w);
}

int hs_worker_start(hs_worker *w, hs_loop *loop, hs_cache *cache) {
  sigset_t all, old;
  int rc;

  memset(w, 0, sizeof(*w));
  w->loop = loop;
  w->cache = cache;
  w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (w->efd < 0)
    return -errno;
  rc = hs_loop_io_start(loop, &w->io, w->efd, EPOLLIN, on_event, w);
  if (rc != 0) {
    close(w->efd);
    return rc;
  }
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = -pthread_create(&w->thread, NULL, thread_main, w);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    hs_loop_io_stop(&w->io);
    close(w->efd);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    return rc;
  }
  w->started = 1;
  return 0;
}

void hs_worker_stop(hs_worker *w) {
  if (!w->started)
    return;
  pthread_mutex_lock(&w->mu);
  w->quit = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->thread, NULL);
  drain(w);
  hs_loop_io_stop(&w->io);
  close(w->efd);
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  w->started = 0;
}

static void submit(hs_worker *w, hs_open_job *job) {
  pthread_mutex_lock(&w->mu);
  if (w->todo_tail)
    w->todo_tail->next = job;
  else
    w->todo = job;
  w->todo_tail = job;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

hs_open_job *hs_worker_open(hs_worker *w, const char *path, const char *file,
                            void *live, hs_open_cb cb, void *data) {
  hs_open_job *job = calloc(1, sizeof(*job));
  if (!job)
    return NULL;
  job->w = w;
  job->path = strdup(path);
  job->file = strdup(file);
  if (!job->path || !job->file) {
    free(job->path);
    free(job->file);
    free(job);
    return NULL;
  }
  job->live = live;
  job->cb = cb;
  job->data = data;
  submit(w, job);
  return job;
}

hs_open_job *hs_worker_copy(hs_worker *w, int dirfd, const char *file,
                            hs_open_cb cb, void *data) {
  hs_open_job *job = calloc(1, sizeof(*job));
  if (!job)
    return NULL;
  job->w = w;
  job->copying = 1;
  job->dirfd = dirfd;
  job->file = strdup(file);
  if (!job->file) {
    free(job);
    return NULL;
  }
  job->cb = cb;
  job->data = data;
  submit(w, job);
  return job;
}

void hs_worker_close(hs_worker *w, const char *name, hs_image *img,
                     hs_cache_file *copy) {
  hs_open_job *job = calloc(1, sizeof(*job));
  const char *slash = copy->path ? strrchr(copy->path, '/') : NULL;
  if (job && w->started) {
    job->closing = 1;
    job->img = *img;
    job->copy = *copy;
    snprintf(job->name, sizeof(job->name), "%s", name);
    job->file = strdup(slash ? slash + 1 : "?");
    if (job->file) {
      memset(img, 0, sizeof(*img));
      memset(copy, 0, sizeof(*copy));
      submit(w, job);
      return;
    }
  }
  free(job);
  if (!hs_loader_close(img, copy->path))
    hs_log(HS_LOG_WARN, name, "warning",
           "the old version stays mapped after dlclose");
  hs_cache_remove(w->cache, copy);
}
