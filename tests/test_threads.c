/*
 * test_threads.c - the threads of this process from /proc/self/task:
 * snapshots, the threads started since one (and gone again once joined),
 * set arithmetic and the list in messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "threads.h"

#define WAIT_MS 20000

/* A thread that waits until it is told to go. */
typedef struct sleeper {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pid_t tid;
  int go;
} sleeper;

static void *sleeper_main(void *arg) {
  sleeper *s = arg;
  pthread_mutex_lock(&s->mu);
  s->tid = gettid();
  pthread_cond_broadcast(&s->cv);
  while (!s->go)
    pthread_cond_wait(&s->cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

static void sleeper_start(sleeper *s) {
  memset(s, 0, sizeof(*s));
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  assert_int_equal(pthread_create(&s->thread, NULL, sleeper_main, s), 0);
  pthread_mutex_lock(&s->mu);
  while (s->tid == 0)
    pthread_cond_wait(&s->cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
}

static void sleeper_stop(sleeper *s) {
  pthread_mutex_lock(&s->mu);
  s->go = 1;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  assert_int_equal(pthread_join(s->thread, NULL), 0);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
}

/* Waits until the threads since before are none (a joined thread may stay
 * listed for a moment). Returns 1 when they are. */
static int wait_none_since(const hs_threads *before) {
  for (int i = 0; i < WAIT_MS; i++) {
    hs_threads now;
    assert_int_equal(hs_threads_since(before, &now), 0);
    size_t n = now.n;
    hs_threads_free(&now);
    if (n == 0)
      return 1;
    usleep(1000);
  }
  return 0;
}

static void test_threads_snapshot_holds_this_thread(void **state) {
  hs_threads t;
  (void)state;

  assert_int_equal(hs_threads_snapshot(&t), 0);
  assert_true(t.n >= 1);
  assert_true(hs_threads_has(&t, gettid()));
  assert_true(hs_threads_has(&t, getpid())); /* the main thread */
  for (size_t i = 1; i < t.n; i++)
    assert_true(t.tids[i - 1] < t.tids[i]);
  assert_int_equal(hs_threads_count(), (int)t.n);
  hs_threads_free(&t);
  assert_null(t.tids);
  assert_int_equal(t.n, 0);
  hs_threads_free(&t); /* harmless twice */
}

static void test_threads_since_sees_a_new_thread_until_joined(
    void **state) {
  hs_threads before, since;
  sleeper s;
  (void)state;

  assert_int_equal(hs_threads_snapshot(&before), 0);
  int count = hs_threads_count();
  sleeper_start(&s);
  assert_int_equal(hs_threads_count(), count + 1);
  assert_int_equal(hs_threads_since(&before, &since), 0);
  assert_int_equal(since.n, 1);
  assert_int_equal(since.tids[0], s.tid);
  assert_false(hs_threads_has(&before, s.tid));
  hs_threads_free(&since);

  sleeper_stop(&s);
  assert_true(wait_none_since(&before));
  hs_threads_free(&before);
}

static void test_threads_remove_leaves_the_others(void **state) {
  pid_t a[] = {3, 5, 8, 13}, b[] = {5, 13, 21};
  hs_threads x = {malloc(sizeof(a)), 4}, y = {b, 3};
  (void)state;

  memcpy(x.tids, a, sizeof(a));
  hs_threads_remove(&x, &y);
  assert_int_equal(x.n, 2);
  assert_int_equal(x.tids[0], 3);
  assert_int_equal(x.tids[1], 8);
  assert_true(hs_threads_has(&x, 8));
  assert_false(hs_threads_has(&x, 5));
  hs_threads_remove(&x, &x); /* everything: empty and freed */
  assert_int_equal(x.n, 0);
  assert_null(x.tids);
}

static void test_threads_format_cuts_at_max(void **state) {
  pid_t a[] = {101, 102, 103};
  hs_threads t = {a, 3}, none = {NULL, 0};
  char buf[64];
  (void)state;

  assert_string_equal(hs_threads_format(&t, 8, buf, sizeof(buf)),
                      "101, 102, 103");
  assert_string_equal(hs_threads_format(&t, 2, buf, sizeof(buf)),
                      "101, 102, ...");
  assert_string_equal(hs_threads_format(&none, 8, buf, sizeof(buf)), "");
  assert_string_equal(hs_threads_format(&t, 8, buf, 6), "101, ");
}

/* More threads than one read of the directory holds (about 300): the
 * snapshot reads on, and misses none. */
static void test_threads_snapshot_sees_hundreds(void **state) {
  enum { N = 400 };
  sleeper *s = calloc(N, sizeof(*s));
  hs_threads before, after;
  (void)state;

  assert_non_null(s);
  assert_int_equal(hs_threads_snapshot(&before), 0);
  for (int i = 0; i < N; i++)
    sleeper_start(&s[i]);
  assert_int_equal(hs_threads_snapshot(&after), 0);
  assert_int_equal(after.n, before.n + N);
  for (int i = 0; i < N; i++)
    assert_true(hs_threads_has(&after, s[i].tid));
  assert_int_equal(hs_threads_count(), (int)(before.n + N));
  for (int i = 0; i < N; i++)
    sleeper_stop(&s[i]);
  hs_threads_free(&before);
  hs_threads_free(&after);
  free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_threads_snapshot_holds_this_thread),
      cmocka_unit_test(test_threads_since_sees_a_new_thread_until_joined),
      cmocka_unit_test(test_threads_remove_leaves_the_others),
      cmocka_unit_test(test_threads_format_cuts_at_max),
      cmocka_unit_test(test_threads_snapshot_sees_hundreds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
