/*
 * loop.h - the host's event loop: epoll for fds, a min-heap of timers, and
 * signalfd for signals. Single-threaded. When no timer is armed the loop
 * sleeps in epoll_wait(-1) and wakes up for nothing but events.
 *
 * Handles (hs_io, hs_timer) are owned by the caller and must stay in place
 * while started. Stopping a handle from any callback is safe, also one whose
 * event is still pending in the current batch: it is not dispatched.
 */
#ifndef HS_LOOP_H
#define HS_LOOP_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

typedef struct hs_loop hs_loop;
typedef struct hs_io hs_io;
typedef struct hs_timer hs_timer;

typedef void (*hs_io_cb)(hs_io *io, uint32_t events);
typedef void (*hs_timer_cb)(hs_timer *t);
typedef void (*hs_signal_cb)(hs_loop *loop, int signum, void *data);

struct hs_io {
  hs_loop *loop;   /* set by hs_loop_io_start */
  int fd;          /* watched fd; the caller owns and closes it */
  uint32_t events; /* EPOLLIN, EPOLLOUT, ... */
  hs_io_cb cb;
  void *data;      /* the caller's */
  int active;      /* 1 while started */
};

struct hs_timer {
  hs_loop *loop;      /* set by hs_loop_timer_start */
  uint64_t due_ns;    /* absolute, CLOCK_MONOTONIC */
  uint64_t repeat_ns; /* 0 for one-shot */
  hs_timer_cb cb;
  void *data;         /* the caller's */
  size_t heap_index;  /* position in the heap; SIZE_MAX when stopped */
};

#define HS_LOOP_MAX_EVENTS 64
#define HS_LOOP_MAX_SIGNALS 8

struct hs_loop {
  int epfd;
  int stopping;                /* set by hs_loop_stop */
  hs_timer **heap;             /* min-heap on due_ns */
  size_t nheap, capheap;
  struct epoll_event events[HS_LOOP_MAX_EVENTS]; /* current batch */
  int nevents, cur;            /* batch size and index being dispatched */
  int sigfd;                   /* signalfd, -1 until a signal is watched */
  hs_io sigio;
  sigset_t sigmask;            /* signals routed to sigfd (blocked) */
  sigset_t sigorig;            /* mask before the first signal was routed */
  struct {
    int signum;
    hs_signal_cb cb;
    void *data;
  } sigs[HS_LOOP_MAX_SIGNALS];
  int nsigs;
  uint64_t wakeups;            /* epoll_wait returns, for the idle bench */
};

/* Returns CLOCK_MONOTONIC in nanoseconds. */
uint64_t hs_now_ns(void);

/* Creates the epoll fd. Returns 0 or a negative code (-errno). */
int hs_loop_init(hs_loop *loop);
/* Closes the loop's own fds and frees the heap; the signal mask is
 * restored. Handles still started are simply forgotten. */
void hs_loop_close(hs_loop *loop);
/* Dispatches events until hs_loop_stop(). Returns 0, or a negative code
 * if epoll_wait fails for a reason other than EINTR. */
int hs_loop_run(hs_loop *loop);
/* Makes hs_loop_run return after the current callback. */
void hs_loop_stop(hs_loop *loop);

/* Watches fd for events; cb runs with the events epoll reported. Returns
 * 0 or a negative code (-errno from epoll_ctl). */
int hs_loop_io_start(hs_loop *loop, hs_io *io, int fd, uint32_t events,
                     hs_io_cb cb, void *data);
/* Changes the events of a started io. Returns 0 or -errno. */
int hs_loop_io_modify(hs_io *io, uint32_t events);
/* Stops watching; harmless on a stopped io. Does not close the fd. */
void hs_loop_io_stop(hs_io *io);

/* Prepares a timer; must be called once before the first start. */
void hs_loop_timer_init(hs_timer *t, hs_timer_cb cb, void *data);
/* Arms t to fire timeout_ns from now, then every repeat_ns if non-zero.
 * Re-arms a started timer. Returns 0 or HS_ENOMEM. */
int hs_loop_timer_start(hs_loop *loop, hs_timer *t, uint64_t timeout_ns,
                        uint64_t repeat_ns);
/* Disarms t; harmless on a stopped timer. */
void hs_loop_timer_stop(hs_timer *t);
/* Returns 1 while t is armed. */
int hs_loop_timer_active(const hs_timer *t);

/* Routes signum to cb through a signalfd (the signal is blocked for the
 * process). Returns 0, HS_ENOMEM when HS_LOOP_MAX_SIGNALS are taken, or
 * -errno. */
int hs_loop_signal_start(hs_loop *loop, int signum, hs_signal_cb cb,
                         void *data);

#endif /* HS_LOOP_H */
