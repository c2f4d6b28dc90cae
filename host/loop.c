/*
 * loop.c - the host's event loop: epoll for fds, a binary min-heap of timers
 * and one signalfd for every routed signal.
 *
 * One iteration runs the due timers, sleeps in epoll_wait until the nearest
 * timer (forever when none is armed) and dispatches the batch of io events.
 * An io stopped during the batch has its later entries cleared, so it is
 * never called after hs_loop_io_stop().
 */
#include "loop.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/signalfd.h>

#include "hotswap.h"

uint64_t hs_now_ns(void) {
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int hs_loop_init(hs_loop *loop) {
  memset(loop, 0, sizeof(*loop));
  loop->sigfd = -1;
  loop->sigio.fd = -1;
  sigemptyset(&loop->sigmask);
  sigemptyset(&loop->sigorig);
  loop->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (loop->epfd < 0)
    return -errno;
  return 0;
}

void hs_loop_close(hs_loop *loop) {
  if (loop->sigfd >= 0) {
    sigset_t ours;
    int s;

    hs_loop_io_stop(&loop->sigio);
    close(loop->sigfd);
    loop->sigfd = -1;
    /* Unblock only what this loop blocked; signals that were blocked
     * before stay blocked. */
    sigemptyset(&ours);
    for (s = 1; s < NSIG; s++)
      if (sigismember(&loop->sigmask, s) == 1 &&
          sigismember(&loop->sigorig, s) != 1)
        sigaddset(&ours, s);
    sigprocmask(SIG_UNBLOCK, &ours, NULL);
    sigemptyset(&loop->sigmask);
    loop->nsigs = 0;
  }
  if (loop->epfd >= 0)
    close(loop->epfd);
  loop->epfd = -1;
  free(loop->heap);
  loop->heap = NULL;
  loop->nheap = loop->capheap = 0;
  loop->nevents = loop->cur = 0;
}

/* ---- timer heap -------------------------------------------------------- */

static void heap_set(hs_loop *loop, size_t i, hs_timer *t) {
  loop->heap[i] = t;
  t->heap_index = i;
}

static void heap_up(hs_loop *loop, size_t i) {
  hs_timer *t = loop->heap[i];

  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (loop->heap[parent]->due_ns <= t->due_ns)
      break;
    heap_set(loop, i, loop->heap[parent]);
    i = parent;
  }
  heap_set(loop, i, t);
}

static void heap_down(hs_loop *loop, size_t i) {
  hs_timer *t = loop->heap[i];

  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= loop->nheap)
      break;
    if (child + 1 < loop->nheap &&
        loop->heap[child + 1]->due_ns < loop->heap[child]->due_ns)
      child++;
    if (t->due_ns <= loop->heap[child]->due_ns)
      break;
    heap_set(loop, i, loop->heap[child]);
    i = child;
  }
  heap_set(loop, i, t);
}

/* Restores the heap order around i after its due time changed. */
static void heap_fix(hs_loop *loop, size_t i) {
  if (i > 0 && loop->heap[(i - 1) / 2]->due_ns > loop->heap[i]->due_ns)
    heap_up(loop, i);
  else
    heap_down(loop, i);
}

static uint64_t add_sat(uint64_t a, uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

void hs_loop_timer_init(hs_timer *t, hs_timer_cb cb, void *data) {
  t->loop = NULL;
  t->due_ns = 0;
  t->repeat_ns = 0;
  t->cb = cb;
  t->data = data;
  t->heap_index = SIZE_MAX;
}

int hs_loop_timer_start(hs_loop *loop, hs_timer *t, uint64_t timeout_ns,
                        uint64_t repeat_ns) {
  if (t->heap_index != SIZE_MAX && t->loop != loop)
    hs_loop_timer_stop(t);
  t->due_ns = add_sat(hs_now_ns(), timeout_ns);
  t->repeat_ns = repeat_ns;
  if (t->heap_index != SIZE_MAX) {
    heap_fix(loop, t->heap_index);
    return 0;
  }
  if (loop->nheap == loop->capheap) {
    size_t cap = loop->capheap ? 2 * loop->capheap : 16;
    hs_timer **heap = realloc(loop->heap, cap * sizeof(*heap));
    if (heap == NULL)
      return HS_ENOMEM;
    loop->heap = heap;
    loop->capheap = cap;
  }
  t->loop = loop;
  heap_set(loop, loop->nheap++, t);
  heap_up(loop, t->heap_index);
  return 0;
}

void hs_loop_timer_stop(hs_timer *t) {
  hs_loop *loop = t->loop;
  size_t i = t->heap_index;

  if (i == SIZE_MAX)
    return;
  t->heap_index = SIZE_MAX;
  loop->nheap--;
  if (i == loop->nheap)
    return;
  heap_set(loop, i, loop->heap[loop->nheap]);
  heap_fix(loop, i);
}

int hs_loop_timer_active(const hs_timer *t) {
  return t->heap_index != SIZE_MAX;
}

/* Runs every timer due now. A repeating timer moves on by whole periods
 * from its due time, skipping periods it missed instead of bursting; a
 * one-shot timer is stopped before its callback, which may re-arm it. */
static void run_timers(hs_loop *loop) {
  uint64_t now = hs_now_ns();

  while (loop->nheap > 0 && !loop->stopping) {
    hs_timer *t = loop->heap[0];

    if (t->due_ns > now)
      break;
    if (t->repeat_ns > 0) {
      uint64_t missed = (now - t->due_ns) / t->repeat_ns;
      t->due_ns = add_sat(t->due_ns, (missed + 1) * t->repeat_ns);
      heap_down(loop, 0);
    } else {
      hs_loop_timer_stop(t);
    }
    t->cb(t);
  }
}

/* The epoll_wait timeout in ms: -1 without timers, else the time to the
 * nearest one rounded up, so that the loop never wakes before it is due. */
static int next_timeout(const hs_loop *loop) {
  uint64_t now, ms;

  if (loop->nheap == 0)
    return -1;
  now = hs_now_ns();
  if (loop->heap[0]->due_ns <= now)
    return 0;
  ms = (loop->heap[0]->due_ns - now + 999999u) / 1000000u;
  return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* ---- run --------------------------------------------------------------- */

int hs_loop_run(hs_loop *loop) {
  int rc = 0;

  while (!loop->stopping) {
    int n;

    run_timers(loop);
    if (loop->stopping)
      break;
    n = epoll_wait(loop->epfd, loop->events, HS_LOOP_MAX_EVENTS,
                   next_timeout(loop));
    loop->wakeups++;
    if (n < 0) {
      if (errno == EINTR)
        continue;
      rc = -errno;
      break;
    }
    loop->nevents = n;
    for (loop->cur = 0; loop->cur < n && !loop->stopping; loop->cur++) {
      hs_io *io = loop->events[loop->cur].data.ptr;
      if (io != NULL)
        io->cb(io, loop->events[loop->cur].events);
    }
    loop->nevents = loop->cur = 0;
  }
  loop->stopping = 0;
  return rc;
}

void hs_loop_stop(hs_loop *loop) {
  loop->stopping = 1;
}

/* ---- io ---------------------------------------------------------------- */

int hs_loop_io_start(hs_loop *loop, hs_io *io, int fd, uint32_t events,
                     hs_io_cb cb, void *data) {
  struct epoll_event ev;

  if (io->active)
    hs_loop_io_stop(io);
  memset(&ev, 0, sizeof(ev));
  ev.events = events;
  ev.data.ptr = io;
  if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
    return -errno;
  io->loop = loop;
  io->fd = fd;
  io->events = events;
  io->cb = cb;
  io->data = data;
  io->active = 1;
  return 0;
}

int hs_loop_io_modify(hs_io *io, uint32_t events) {
  struct epoll_event ev;

  if (!io->active)
    return HS_EINVAL;
  memset(&ev, 0, sizeof(ev));
  ev.events = events;
  ev.data.ptr = io;
  if (epoll_ctl(io->loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
    return -errno;
  io->events = events;
  return 0;
}

void hs_loop_io_stop(hs_io *io) {
  hs_loop *loop = io->loop;
  int i;

  if (!io->active)
    return;
  io->active = 0;
  /* Fails harmlessly when the caller already closed the fd. */
  epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
  for (i = loop->cur + 1; i < loop->nevents; i++)
    if (loop->events[i].data.ptr == io)
      loop->events[i].data.ptr = NULL;
}

/* ---- signals ----------------------------------------------------------- */

static void on_signalfd(hs_io *io, uint32_t events) {
  hs_loop *loop = io->data;
  struct signalfd_siginfo si;

  (void)events;
  while (!loop->stopping) {
    ssize_t n = read(io->fd, &si, sizeof(si));
    int i;

    if (n < 0 && errno == EINTR)
      continue;
    if (n != (ssize_t)sizeof(si))
      break; /* EAGAIN: drained */
    for (i = 0; i < loop->nsigs; i++)
      if (loop->sigs[i].signum == (int)si.ssi_signo) {
        loop->sigs[i].cb(loop, (int)si.ssi_signo, loop->sigs[i].data);
        break;
      }
  }
}

int hs_loop_signal_start(hs_loop *loop, int signum, hs_signal_cb cb,
                         void *data) {
  sigset_t one, mask;
  int i, fd, rc, was_blocked;

  if (signum <= 0 || signum >= NSIG || signum == SIGKILL ||
      signum == SIGSTOP || cb == NULL)
    return HS_EINVAL;
  for (i = 0; i < loop->nsigs; i++)
    if (loop->sigs[i].signum == signum) {
      loop->sigs[i].cb = cb;
      loop->sigs[i].data = data;
      return 0;
    }
  if (loop->nsigs == HS_LOOP_MAX_SIGNALS)
    return HS_ENOMEM;

  sigemptyset(&one);
  if (sigaddset(&one, signum) < 0)
    return -errno;
  mask = loop->sigmask;
  sigaddset(&mask, signum);

  if (loop->nsigs == 0 && sigprocmask(SIG_BLOCK, NULL, &loop->sigorig) < 0)
    return -errno;
  was_blocked = sigismember(&loop->sigorig, signum) == 1;
  if (sigprocmask(SIG_BLOCK, &one, NULL) < 0)
    return -errno;

  if (loop->sigfd < 0) {
    fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) {
      rc = -errno;
      goto fail;
    }
    rc = hs_loop_io_start(loop, &loop->sigio, fd, EPOLLIN, on_signalfd, loop);
    if (rc < 0) {
      close(fd);
      goto fail;
    }
    loop->sigfd = fd;
  } else if (signalfd(loop->sigfd, &mask, 0) < 0) {
    rc = -errno;
    goto fail;
  }

  loop->sigmask = mask;
  loop->sigs[loop->nsigs].signum = signum;
  loop->sigs[loop->nsigs].cb = cb;
  loop->sigs[loop->nsigs].data = data;
  loop->nsigs++;
  return 0;

fail:
  if (!was_blocked)
    sigprocmask(SIG_UNBLOCK, &one, NULL);
  return rc;
}
