/* test_loop.c - the event loop: timers, io, signals and the idle sleep. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "hotswap.h"
#include "loop.h"

#define MS 1000000ull

/* ---- helpers ----------------------------------------------------------- */

static int setup(void **state) {
  hs_loop *loop = malloc(sizeof(*loop));

  if (loop == NULL || hs_loop_init(loop) < 0) {
    free(loop);
    return -1;
  }
  *state = loop;
  return 0;
}

/* Also after a failed test: restores the signal mask, frees the heap. */
static int teardown(void **state) {
  hs_loop_close(*state);
  free(*state);
  return 0;
}

static void stop_loop(hs_timer *t) {
  hs_loop_stop(t->loop);
}

/* Runs loop until a callback stops it, or for at most guard_ms. */
static void run_guarded(hs_loop *loop, uint64_t guard_ms) {
  hs_timer guard;

  hs_loop_timer_init(&guard, stop_loop, NULL);
  assert_int_equal(hs_loop_timer_start(loop, &guard, guard_ms * MS, 0), 0);
  assert_int_equal(hs_loop_run(loop), 0);
  hs_loop_timer_stop(&guard);
}

struct order {
  int seen[8];
  int n;
};

struct tagged {
  hs_timer t;
  int id;
  struct order *order;
  int stop_after; /* stops the loop when this many timers fired */
  hs_timer *victim; /* stopped by this timer's callback */
  int fired;
  uint64_t first_due;
  int aligned;     /* repeat dues stayed on the first due's grid */
  int was_active;  /* hs_loop_timer_active() inside the callback */
};

static void tagged_cb(hs_timer *t) {
  struct tagged *tg = t->data;

  tg->fired++;
  tg->was_active = hs_loop_timer_active(t);
  if (tg->order != NULL) {
    tg->order->seen[tg->order->n++] = tg->id;
    if (tg->order->n == tg->stop_after)
      hs_loop_stop(t->loop);
  }
  if (tg->victim != NULL)
    hs_loop_timer_stop(tg->victim);
}

static void tagged_init(struct tagged *tg, int id, struct order *o) {
  memset(tg, 0, sizeof(*tg));
  tg->id = id;
  tg->order = o;
  hs_loop_timer_init(&tg->t, tagged_cb, tg);
}

/* ---- timers ------------------------------------------------------------ */

static void test_loop_timers_fire_in_order(void **state) {
  hs_loop *loop = *state;
  struct order o = {{0}, 0};
  struct tagged a, b, c;
  uint64_t last = 0;
  int i;

  tagged_init(&a, 3, &o);
  tagged_init(&b, 1, &o);
  tagged_init(&c, 2, &o);
  a.stop_after = b.stop_after = c.stop_after = 3;
  assert_int_equal(hs_loop_timer_start(loop, &a.t, 30 * MS, 0), 0);
  assert_int_equal(hs_loop_timer_start(loop, &b.t, 10 * MS, 0), 0);
  assert_int_equal(hs_loop_timer_start(loop, &c.t, 20 * MS, 0), 0);
  run_guarded(loop, 2000);
  assert_int_equal(o.n, 3);
  /* In due order: 1, 2, 3 unless the machine stalled between the starts
   * for longer than their 10 ms spacing. */
  for (i = 0; i < 3; i++) {
    const struct tagged *tg = o.seen[i] == 1 ? &b : o.seen[i] == 2 ? &c : &a;
    assert_true(tg->t.due_ns >= last);
    last = tg->t.due_ns;
  }
  if (b.t.due_ns < c.t.due_ns && c.t.due_ns < a.t.due_ns) {
    assert_int_equal(o.seen[0], 1);
    assert_int_equal(o.seen[1], 2);
    assert_int_equal(o.seen[2], 3);
  }
  assert_false(hs_loop_timer_active(&a.t));
  assert_int_equal(loop->nheap, 0);
}

static void test_loop_timer_restart_moves_due(void **state) {
  hs_loop *loop = *state;
  struct order o = {{0}, 0};
  struct tagged a, b;

  tagged_init(&a, 1, &o);
  tagged_init(&b, 2, &o);
  a.stop_after = b.stop_after = 2;
  assert_int_equal(hs_loop_timer_start(loop, &a.t, 5 * MS, 0), 0);
  assert_int_equal(hs_loop_timer_start(loop, &b.t, 20 * MS, 0), 0);
  /* Re-arming a started timer moves it behind b. */
  assert_int_equal(hs_loop_timer_start(loop, &a.t, 40 * MS, 0), 0);
  assert_int_equal(loop->nheap, 2);
  run_guarded(loop, 2000);
  assert_int_equal(o.n, 2);
  assert_int_equal(o.seen[0], 2);
  assert_int_equal(o.seen[1], 1);
}

static void repeat_cb(hs_timer *t) {
  struct tagged *tg = t->data;

  tg->fired++;
  /* Already moved on to the next due time, on the first one's grid (a
   * busy machine may skip periods, never shift them). */
  if (t->due_ns <= tg->first_due ||
      (t->due_ns - tg->first_due) % t->repeat_ns != 0)
    tg->aligned = 0;
  if (tg->fired == 5) {
    hs_loop_timer_stop(t);
    hs_loop_stop(t->loop);
  }
}

static void test_loop_timer_repeats_without_drift(void **state) {
  hs_loop *loop = *state;
  struct tagged tg;

  memset(&tg, 0, sizeof(tg));
  tg.aligned = 1;
  hs_loop_timer_init(&tg.t, repeat_cb, &tg);
  assert_int_equal(hs_loop_timer_start(loop, &tg.t, 2 * MS, 3 * MS), 0);
  tg.first_due = tg.t.due_ns;
  /* The timer stops itself and the loop at the fifth run. */
  run_guarded(loop, 2000);
  assert_int_equal(tg.fired, 5);
  assert_true(tg.aligned);
  assert_false(hs_loop_timer_active(&tg.t));
}

static void test_loop_timer_stop_from_callback(void **state) {
  hs_loop *loop = *state;
  struct tagged a, b;

  tagged_init(&a, 1, NULL);
  tagged_init(&b, 2, NULL);
  /* Both are due together: whichever runs first stops the other, also
   * when both expired in the same pass. */
  a.victim = &b.t;
  b.victim = &a.t;
  assert_int_equal(hs_loop_timer_start(loop, &a.t, 10 * MS, 0), 0);
  assert_int_equal(hs_loop_timer_start(loop, &b.t, 10 * MS, 0), 0);
  run_guarded(loop, 60);
  assert_int_equal(a.fired + b.fired, 1);
  assert_int_equal(loop->nheap, 0);
}

static void rearm_cb(hs_timer *t) {
  struct tagged *tg = t->data;

  tg->fired++;
  if (hs_loop_timer_active(t))
    tg->was_active = 1;
  if (tg->fired < 3)
    assert_int_equal(hs_loop_timer_start(t->loop, t, 1 * MS, 0), 0);
  else
    hs_loop_stop(t->loop);
}

static void test_loop_oneshot_rearms_from_callback(void **state) {
  hs_loop *loop = *state;
  struct tagged tg;

  memset(&tg, 0, sizeof(tg));
  hs_loop_timer_init(&tg.t, rearm_cb, &tg);
  assert_int_equal(hs_loop_timer_start(loop, &tg.t, 1 * MS, 0), 0);
  run_guarded(loop, 2000);
  assert_int_equal(tg.fired, 3);
  assert_int_equal(tg.was_active, 0); /* stopped before its callback */
  assert_false(hs_loop_timer_active(&tg.t));
}

static void test_loop_timer_heap_keeps_order(void **state) {
  enum { N = 40 };
  hs_loop *loop = *state;
  struct tagged tg[N];
  struct order o = {{0}, 0};
  int i;

  /* More timers than the first heap allocation; start them out of order
   * and stop every third, then check the heap still pops in due order. */
  for (i = 0; i < N; i++) {
    tagged_init(&tg[i], i, NULL);
    assert_int_equal(
        hs_loop_timer_start(loop, &tg[i].t, (uint64_t)((i * 7) % N + 1) * MS,
                            0),
        0);
  }
  for (i = 0; i < N; i += 3)
    hs_loop_timer_stop(&tg[i].t);
  for (i = 0; i < N; i++)
    assert_int_equal(hs_loop_timer_active(&tg[i].t), i % 3 != 0);
  {
    uint64_t last = 0;
    while (loop->nheap > 0) {
      hs_timer *t = loop->heap[0];
      assert_true(t->due_ns >= last);
      last = t->due_ns;
      hs_loop_timer_stop(t);
      o.n++;
    }
  }
  assert_int_equal(o.n, N - (N + 2) / 3);
}

/* ---- idle -------------------------------------------------------------- */

static void test_loop_idle_does_not_wake(void **state) {
  hs_loop *loop = *state;
  hs_timer t;

  hs_loop_timer_init(&t, stop_loop, NULL);
  assert_int_equal(hs_loop_timer_start(loop, &t, 100 * MS, 0), 0);
  assert_int_equal(hs_loop_run(loop), 0);
  assert_true(loop->wakeups >= 1);
  assert_true(loop->wakeups <= 2);
}

static void test_loop_stop_before_run_returns(void **state) {
  hs_loop *loop = *state;

  hs_loop_stop(loop);
  assert_int_equal(hs_loop_run(loop), 0);
  assert_int_equal(loop->wakeups, 0);
  assert_int_equal(loop->stopping, 0); /* the next run runs */
}

/* ---- io ---------------------------------------------------------------- */

struct pipe_io {
  hs_io io;
  int fds[2];
  int calls;
  uint32_t events;
  struct pipe_io *other; /* stopped by this io's callback */
};

static void pipe_cb(hs_io *io, uint32_t events) {
  struct pipe_io *p = io->data;
  char c;

  p->calls++;
  p->events = events;
  assert_int_equal(read(io->fd, &c, 1), 1);
  if (p->other != NULL)
    hs_loop_io_stop(&p->other->io);
}

static void pipe_open(struct pipe_io *p) {
  memset(p, 0, sizeof(*p));
  assert_int_equal(pipe2(p->fds, O_CLOEXEC), 0);
}

static void pipe_close(struct pipe_io *p) {
  close(p->fds[0]);
  close(p->fds[1]);
}

static void stop_cb(hs_io *io, uint32_t events) {
  struct pipe_io *p = io->data;

  p->calls++;
  p->events = events;
  hs_loop_stop(io->loop);
}

static void test_loop_io_readable(void **state) {
  hs_loop *loop = *state;
  struct pipe_io p;

  pipe_open(&p);
  assert_int_equal(
      hs_loop_io_start(loop, &p.io, p.fds[0], EPOLLIN, stop_cb, &p), 0);
  assert_true(p.io.active);
  assert_int_equal(p.io.fd, p.fds[0]);
  assert_int_equal(write(p.fds[1], "x", 1), 1);
  run_guarded(loop, 2000);
  assert_int_equal(p.calls, 1);
  assert_true(p.events & EPOLLIN);
  hs_loop_io_stop(&p.io);
  hs_loop_io_stop(&p.io); /* harmless twice */
  assert_false(p.io.active);
  pipe_close(&p);
}

static void test_loop_io_stop_of_pending_event_not_dispatched(void **state) {
  hs_loop *loop = *state;
  struct pipe_io a, b;

  pipe_open(&a);
  pipe_open(&b);
  a.other = &b;
  b.other = &a;
  assert_int_equal(write(a.fds[1], "x", 1), 1);
  assert_int_equal(write(b.fds[1], "x", 1), 1);
  assert_int_equal(
      hs_loop_io_start(loop, &a.io, a.fds[0], EPOLLIN, pipe_cb, &a), 0);
  assert_int_equal(
      hs_loop_io_start(loop, &b.io, b.fds[0], EPOLLIN, pipe_cb, &b), 0);
  /* Both are ready in the first batch; the first callback stops the other
   * io, whose entry later in the batch must be skipped. Its byte stays
   * unread, so a missed skip would show as a second call. */
  run_guarded(loop, 30);
  assert_int_equal(a.calls + b.calls, 1);
  assert_true(a.io.active != b.io.active);
  hs_loop_io_stop(&a.io);
  hs_loop_io_stop(&b.io);
  pipe_close(&a);
  pipe_close(&b);
}

static void test_loop_io_modify_changes_events(void **state) {
  hs_loop *loop = *state;
  struct pipe_io p;

  memset(&p, 0, sizeof(p));
  assert_int_equal(
      socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p.fds), 0);
  /* Nothing to read: EPOLLIN stays quiet. */
  assert_int_equal(
      hs_loop_io_start(loop, &p.io, p.fds[0], EPOLLIN, stop_cb, &p), 0);
  run_guarded(loop, 20);
  assert_int_equal(p.calls, 0);
  /* Writable at once. */
  assert_int_equal(hs_loop_io_modify(&p.io, EPOLLOUT), 0);
  assert_int_equal(p.io.events, EPOLLOUT);
  run_guarded(loop, 2000);
  assert_int_equal(p.calls, 1);
  assert_true(p.events & EPOLLOUT);
  hs_loop_io_stop(&p.io);
  assert_int_equal(hs_loop_io_modify(&p.io, EPOLLIN), HS_EINVAL);
  pipe_close(&p);
}

static void test_loop_io_start_rejects_bad_fd(void **state) {
  hs_loop *loop = *state;
  hs_io io;

  memset(&io, 0, sizeof(io));
  assert_int_equal(hs_loop_io_start(loop, &io, -1, EPOLLIN, NULL, NULL),
                   -EBADF);
  assert_false(io.active);
}

/* ---- signals ----------------------------------------------------------- */

struct sig_seen {
  int signum;
  int calls;
};

static void sig_cb(hs_loop *loop, int signum, void *data) {
  struct sig_seen *s = data;

  s->signum = signum;
  s->calls++;
  hs_loop_stop(loop);
}

static int blocked(int signum) {
  sigset_t cur;

  assert_int_equal(sigprocmask(SIG_BLOCK, NULL, &cur), 0);
  return sigismember(&cur, signum);
}

static void test_loop_signal_delivered(void **state) {
  hs_loop *loop = *state;
  struct sig_seen s = {0, 0};

  assert_int_equal(blocked(SIGUSR1), 0);
  assert_int_equal(hs_loop_signal_start(loop, SIGUSR1, sig_cb, &s), 0);
  assert_int_equal(blocked(SIGUSR1), 1);
  assert_true(loop->sigfd >= 0);
  assert_int_equal(raise(SIGUSR1), 0);
  run_guarded(loop, 2000);
  assert_int_equal(s.calls, 1);
  assert_int_equal(s.signum, SIGUSR1);
  hs_loop_close(loop); /* teardown's close is then a no-op */
  /* The mask is what it was. */
  assert_int_equal(blocked(SIGUSR1), 0);
}

static void test_loop_signal_keeps_blocked_signal_blocked(void **state) {
  hs_loop *loop = *state;
  struct sig_seen s1 = {0, 0}, s2 = {0, 0};
  sigset_t one;

  sigemptyset(&one);
  sigaddset(&one, SIGUSR2);
  assert_int_equal(sigprocmask(SIG_BLOCK, &one, NULL), 0);
  assert_int_equal(hs_loop_signal_start(loop, SIGUSR2, sig_cb, &s2), 0);
  assert_int_equal(hs_loop_signal_start(loop, SIGUSR1, sig_cb, &s1), 0);
  assert_int_equal(loop->nsigs, 2);
  assert_int_equal(raise(SIGUSR2), 0);
  run_guarded(loop, 2000);
  assert_int_equal(s2.calls, 1);
  assert_int_equal(s1.calls, 0);
  hs_loop_close(loop);
  assert_int_equal(blocked(SIGUSR1), 0);
  assert_int_equal(blocked(SIGUSR2), 1); /* blocked before the loop */
  assert_int_equal(sigprocmask(SIG_UNBLOCK, &one, NULL), 0);
}

static void test_loop_signal_rejects_bad_signals(void **state) {
  hs_loop *loop = *state;
  struct sig_seen s = {0, 0};

  assert_int_equal(hs_loop_signal_start(loop, SIGKILL, sig_cb, &s),
                   HS_EINVAL);
  assert_int_equal(hs_loop_signal_start(loop, 0, sig_cb, &s), HS_EINVAL);
  assert_int_equal(hs_loop_signal_start(loop, NSIG, sig_cb, &s), HS_EINVAL);
  assert_int_equal(loop->sigfd, -1);
}

#define LOOP_TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      LOOP_TEST(test_loop_timers_fire_in_order),
      LOOP_TEST(test_loop_timer_restart_moves_due),
      LOOP_TEST(test_loop_timer_repeats_without_drift),
      LOOP_TEST(test_loop_timer_stop_from_callback),
      LOOP_TEST(test_loop_oneshot_rearms_from_callback),
      LOOP_TEST(test_loop_timer_heap_keeps_order),
      LOOP_TEST(test_loop_idle_does_not_wake),
      LOOP_TEST(test_loop_stop_before_run_returns),
      LOOP_TEST(test_loop_io_readable),
      LOOP_TEST(test_loop_io_stop_of_pending_event_not_dispatched),
      LOOP_TEST(test_loop_io_modify_changes_events),
      LOOP_TEST(test_loop_io_start_rejects_bad_fd),
      LOOP_TEST(test_loop_signal_delivered),
      LOOP_TEST(test_loop_signal_keeps_blocked_signal_blocked),
      LOOP_TEST(test_loop_signal_rejects_bad_signals),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
