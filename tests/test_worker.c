/*
 * test_worker.c - the loader thread: opens with their callbacks on the
 * loop, cancelled opens, close jobs, and hs_worker_stop draining the queue.
 *
 * Every test opens copies made by a real cache, so that each image has a
 * path of its own and hs_dl_is_loaded() tells whether it is still mapped.
 * The worker finishes jobs in order, so a job's callback means every job
 * queued before it is finished too: tests wait for a last "sentinel" open
 * instead of for a time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "dl.h"
#include "loader.h"
#include "log.h"
#include "loop.h"
#include "worker.h"

#define MS 1000000ull
#define WAIT_MS 30000

typedef struct env {
  char tmp[64];      /* parent of the cache */
  int fixfd;         /* O_DIRECTORY fd of the fixtures */
  int logfd;         /* memfd with this process's log */
  hs_loop loop;
  hs_cache cache;
  hs_worker w;
  pthread_t main;    /* the loop's thread */
} env;

static int setup(void **state) {
  env *e = calloc(1, sizeof(*e));
  hs_error err;

  if (!e)
    return -1;
  snprintf(e->tmp, sizeof(e->tmp), "/tmp/hs-test-worker-XXXXXX");
  if (!mkdtemp(e->tmp) || hs_loop_init(&e->loop) != 0 ||
      hs_cache_init(&e->cache, e->tmp, &err) != 0)
    return -1;
  e->fixfd = open(HS_TEST_FIXTURES, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  e->logfd = memfd_create("test-worker-log", MFD_CLOEXEC);
  if (e->fixfd < 0 || e->logfd < 0)
    return -1;
  hs_log_init(HS_LOG_TEXT, HS_LOG_DEBUG, e->logfd);
  if (hs_worker_start(&e->w, &e->loop, &e->cache) != 0)
    return -1;
  e->main = pthread_self();
  *state = e;
  return 0;
}

static int teardown(void **state) {
  env *e = *state;
  hs_worker_stop(&e->w); /* harmless when a test stopped it */
  hs_cache_close(&e->cache);
  rmdir(e->tmp);
  hs_loop_close(&e->loop);
  hs_log_init(HS_LOG_TEXT, HS_LOG_INFO, 2);
  close(e->logfd);
  close(e->fixfd);
  free(e);
  return 0;
}

static char *log_text(env *e) {
  struct stat st;
  assert_int_equal(fstat(e->logfd, &st), 0);
  char *buf = malloc((size_t)st.st_size + 1);
  assert_non_null(buf);
  assert_int_equal(pread(e->logfd, buf, (size_t)st.st_size, 0), st.st_size);
  buf[st.st_size] = '\0';
  return buf;
}

/* A fresh copy of a fixture in the cache, named after it. */
static void copy_fixture(env *e, const char *fixture, hs_cache_file *f) {
  char name[128];
  hs_error err;
  snprintf(name, sizeof(name), "%s.so", fixture);
  if (hs_cache_add(&e->cache, e->fixfd, name, f, &err) != 0)
    fail_msg("hs_cache_add %s: %s", name, err.msg);
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

/* ---- open results ---------------------------------------------------- */

typedef struct result {
  env *e;
  int calls;
  int order;         /* the value of *counter when it ran */
  int *counter;      /* shared among the results of one test */
  int rc;
  hs_image img;      /* taken over from the job */
  hs_error err;
  uint32_t state_version, state_size; /* of the prepared state */
  int state_zero;    /* its bytes were all zero */
  hs_open_job *job;
} result;

static void on_open(hs_open_job *job) {
  result *r = job->data;
  assert_ptr_equal(job, r->job);
  /* Callbacks run on the loop's thread, never on the worker's. */
  assert_true(pthread_equal(pthread_self(), r->e->main));
  r->calls++;
  if (r->counter)
    r->order = (*r->counter)++;
  r->rc = job->rc;
  r->err = job->err;
  r->img = job->img; /* ours now */
  memset(&job->img, 0, sizeof(job->img));
  /* The prepared state is left to the worker, which frees it. */
  r->state_version = job->state.version;
  r->state_size = job->state.size;
  r->state_zero = 1;
  for (uint32_t i = 0; i < job->state.size; i++)
    r->state_zero &= ((unsigned char *)job->state.data)[i] == 0;
}

static void open_job(env *e, const char *path, void *live, result *r) {
  memset(r, 0, sizeof(*r));
  r->e = e;
  r->job = hs_worker_open(&e->w, path, "counter.so", live, on_open, r);
  assert_non_null(r->job);
}

struct waiter {
  hs_loop *loop;
  int *flag;
  uint64_t end;
};

static void on_poll(hs_timer *t) {
  struct waiter *w = t->data;
  if (*w->flag || hs_now_ns() > w->end)
    hs_loop_stop(w->loop);
}

/* Runs the loop until r's callback ran (or WAIT_MS pass). */
static void wait_for(env *e, result *r) {
  struct waiter w = {&e->loop, &r->calls, hs_now_ns() + WAIT_MS * MS};
  hs_timer t;
  hs_loop_timer_init(&t, on_poll, &w);
  assert_int_equal(hs_loop_timer_start(&e->loop, &t, MS, MS), 0);
  while (!r->calls && hs_now_ns() <= w.end)
    assert_int_equal(hs_loop_run(&e->loop), 0);
  hs_loop_timer_stop(&t);
  assert_int_equal(r->calls, 1);
}

/* Queues an open that fails at once and waits for it: every job queued
 * before it is finished afterwards. */
static void settle(env *e) {
  result s;
  open_job(e, HS_TEST_FIXTURES "/no_such_plugin.so", NULL, &s);
  wait_for(e, &s);
  assert_int_equal(s.rc, HS_EDLOPEN);
}

/* ---- tests ----------------------------------------------------------- */

static void test_worker_open_returns_descriptor(void **state) {
  env *e = *state;
  hs_cache_file f;
  result r;

  copy_fixture(e, "counter_v1", &f);
  open_job(e, f.path, NULL, &r);
  wait_for(e, &r);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.err.code, 0);
  assert_non_null(r.img.handle);
  assert_non_null(r.img.desc);
  assert_string_equal(r.img.desc->name, "counter");
  assert_string_equal(r.img.desc->version, "1.0");
  assert_int_equal(r.img.desc->state_size, 16);
  assert_int_equal(hs_dl_is_loaded(f.path), 1);
  assert_int_equal(hs_loader_close(&r.img, f.path), 1);
  hs_cache_remove(&e->cache, &f);
}

/* An open of fixture comes with the zeroed state of its layout. */
static void expect_prepared(env *e, const char *fixture, uint32_t version,
                            uint32_t size) {
  hs_cache_file f;
  result r;

  copy_fixture(e, fixture, &f);
  open_job(e, f.path, NULL, &r);
  wait_for(e, &r);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.state_version, version);
  assert_int_equal(r.state_size, size);
  assert_int_equal(r.state_zero, 1);
  assert_int_equal(hs_loader_close(&r.img, f.path), 1);
  hs_cache_remove(&e->cache, &f);
}

/* Each layout its prepared state. (The worker frees a prepared state
 * nobody took, cancelled or not: these tests run under ASan too.) */
static void test_worker_open_prepares_the_state(void **state) {
  env *e = *state;
  expect_prepared(e, "counter_v1", 1, 16);
  expect_prepared(e, "counter_v2", 2, 24);
}

static void expect_open_error(env *e, const char *fixture, int code,
                              const char *stage, const char *msg) {
  hs_cache_file f;
  result r;

  copy_fixture(e, fixture, &f);
  open_job(e, f.path, NULL, &r);
  wait_for(e, &r);
  assert_int_equal(r.rc, code);
  assert_int_equal(r.err.code, code);
  assert_string_equal(r.err.stage, stage);
  assert_string_equal(r.err.msg, msg);
  assert_null(r.img.handle);
  assert_null(r.img.desc);
  assert_int_equal(hs_dl_is_loaded(f.path), 0);
  hs_cache_remove(&e->cache, &f);
}

static void test_worker_open_bad_file_returns_loader_error(void **state) {
  env *e = *state;
  expect_open_error(e, "bad_noentry", HS_ENOENTRY, "entry",
                    "counter.so does not export hotswap_plugin_entry");
  expect_open_error(e, "bad_abi", HS_EABI, "abi",
                    "counter.so was built for plugin ABI 99; this host "
                    "speaks ABI 3");
  expect_open_error(e, "bad_null", HS_EDESC, "entry",
                    "hotswap_plugin_entry of counter.so returned NULL");
}

static void test_worker_open_missing_file_fails_in_open(void **state) {
  env *e = *state;
  result r;

  open_job(e, HS_TEST_FIXTURES "/no_such_plugin.so", NULL, &r);
  wait_for(e, &r);
  assert_int_equal(r.rc, HS_EDLOPEN);
  assert_string_equal(r.err.stage, "open");
  assert_non_null(strstr(r.err.msg, "cannot load counter.so: "));
  assert_null(r.img.handle);
}

/* dlopen of a path already loaded returns the live object: refused, and
 * the live image stays mapped. */
static void test_worker_open_refuses_the_live_object(void **state) {
  env *e = *state;
  hs_cache_file f;
  hs_image live;
  hs_error err;
  result r;

  copy_fixture(e, "counter_v1", &f);
  assert_int_equal(hs_loader_open(&live, f.path, "counter.so", &err), 0);
  open_job(e, f.path, live.handle, &r);
  wait_for(e, &r);
  assert_int_equal(r.rc, HS_EDLOPEN);
  assert_string_equal(r.err.stage, "open");
  assert_string_equal(r.err.msg,
                      "dlopen of counter.so returned the object already "
                      "loaded, not the new copy");
  assert_null(r.img.handle);
  assert_int_equal(hs_dl_is_loaded(f.path), 1);
  assert_string_equal(live.desc->version, "1.0");
  assert_int_equal(hs_loader_close(&live, f.path), 1);
  hs_cache_remove(&e->cache, &f);
}

static void test_worker_callbacks_run_in_submission_order(void **state) {
  env *e = *state;
  static const char *const fx[] = {"counter_v1", "bad_noentry", "counter_v1b",
                                   "counter_v2", "counter_v1c"};
  hs_cache_file f[5];
  result r[5];
  int counter = 0;

  for (int i = 0; i < 5; i++)
    copy_fixture(e, fx[i], &f[i]);
  for (int i = 0; i < 5; i++) {
    open_job(e, f[i].path, NULL, &r[i]);
    r[i].counter = &counter;
  }
  wait_for(e, &r[4]);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(r[i].calls, 1);
    assert_int_equal(r[i].order, i);
    assert_int_equal(r[i].rc, i == 1 ? HS_ENOENTRY : 0);
    hs_loader_close(&r[i].img, f[i].path);
    assert_int_equal(hs_dl_is_loaded(f[i].path), 0);
    hs_cache_remove(&e->cache, &f[i]);
  }
}

/* A caller that no longer wants the result sets data to NULL: no
 * callback, and the worker closes what it opened. */
static void test_worker_cancelled_open_closes_image(void **state) {
  env *e = *state;
  hs_cache_file f;
  result r;

  copy_fixture(e, "counter_v1", &f);
  open_job(e, f.path, NULL, &r);
  r.job->data = NULL;
  settle(e);
  assert_int_equal(r.calls, 0);
  assert_int_equal(hs_dl_is_loaded(f.path), 0);
  /* The copy itself stays: it is the caller's. */
  assert_true(exists(f.path));
  hs_cache_remove(&e->cache, &f);
}

static void test_worker_close_removes_copy_and_unloads(void **state) {
  env *e = *state;
  hs_cache_file f;
  hs_image img;
  hs_error err;
  char path[512];

  copy_fixture(e, "counter_v1", &f);
  snprintf(path, sizeof(path), "%s", f.path);
  assert_int_equal(hs_loader_open(&img, f.path, "counter.so", &err), 0);
  hs_worker_close(&e->w, "counter", &img, &f);
  /* Taken over at once. */
  assert_null(img.handle);
  assert_null(img.desc);
  assert_null(f.path);
  settle(e);
  assert_false(exists(path));
  assert_int_equal(hs_dl_is_loaded(path), 0);
  char *log = log_text(e);
  assert_null(strstr(log, "stays mapped"));
  free(log);
}

/* on_leak of the worker: the bytes reported, a running total. */
static uint64_t leak_total;
static uint64_t count_leak(void *data, const char *name, uint64_t bytes) {
  assert_string_equal(name, "counter");
  (void)data;
  leak_total += bytes;
  return leak_total + 1024 * 1024; /* as if earlier reloads leaked 1 MiB */
}

/* An object the dynamic loader never unmaps: closed with a warning that
 * names the plugin and the copy, why it stays (from the ELF file) and what
 * it leaks, as on_leak counts it; the copy's file is removed anyway. */
static void test_worker_close_warns_when_object_stays_mapped(void **state) {
  env *e = *state;
  hs_cache_file f;
  hs_image img;
  hs_error err;
  char path[512], want[512];

  copy_fixture(e, "counter_v1_nodelete", &f);
  snprintf(path, sizeof(path), "%s", f.path);
  assert_non_null(strstr(f.pins, "NODELETE"));
  assert_int_equal(hs_loader_open(&img, f.path, "counter.so", &err), 0);
  leak_total = 0;
  e->w.on_leak = count_leak;
  hs_worker_close(&e->w, "counter", &img, &f);
  settle(e);
  assert_false(exists(path));
  assert_true(leak_total >= 4096);
  snprintf(want, sizeof(want),
           "counter warning: %s: the old version stays mapped after "
           "dlclose: it is marked NODELETE (DF_1_NODELETE, from linking "
           "with -z nodelete), so dlclose never unmaps it; link it without "
           "-z nodelete; this reload leaks %llu KiB (%llu KiB in all for "
           "counter)\n",
           strrchr(path, '/') + 1,
           (unsigned long long)(leak_total + 1023) / 1024,
           (unsigned long long)(leak_total + 1023) / 1024 + 1024);
  char *log = log_text(e);
  if (!strstr(log, want))
    fail_msg("log lacks \"%s\":\n%s", want, log);
  free(log);
}

/* hs_worker_stop finishes every queued job and runs the callbacks on the
 * calling thread, without the loop ever running. */
static void test_worker_stop_drains(void **state) {
  env *e = *state;
  hs_cache_file f[4], closing;
  hs_image img;
  hs_error err;
  result r[4];
  char closing_path[512];

  for (int i = 0; i < 4; i++)
    copy_fixture(e, i % 2 ? "counter_v1b" : "counter_v1", &f[i]);
  copy_fixture(e, "counter_v1c", &closing);
  snprintf(closing_path, sizeof(closing_path), "%s", closing.path);
  assert_int_equal(hs_loader_open(&img, closing.path, "counter.so", &err), 0);

  open_job(e, f[0].path, NULL, &r[0]);
  open_job(e, f[1].path, NULL, &r[1]);
  hs_worker_close(&e->w, "counter", &img, &closing);
  open_job(e, f[2].path, NULL, &r[2]);
  r[2].job->data = NULL; /* cancelled */
  open_job(e, f[3].path, NULL, &r[3]);
  hs_worker_stop(&e->w);

  assert_int_equal(r[0].calls, 1);
  assert_int_equal(r[1].calls, 1);
  assert_int_equal(r[2].calls, 0);
  assert_int_equal(r[3].calls, 1);
  assert_false(exists(closing_path));
  assert_int_equal(hs_dl_is_loaded(closing_path), 0);
  assert_int_equal(hs_dl_is_loaded(f[2].path), 0);
  for (int i = 0; i < 4; i++) {
    if (i != 2) {
      assert_int_equal(r[i].rc, 0);
      assert_int_equal(hs_loader_close(&r[i].img, f[i].path), 1);
    }
    hs_cache_remove(&e->cache, &f[i]);
  }
  /* Stopping twice is harmless. */
  hs_worker_stop(&e->w);
}

/* With the thread stopped, a close is done at once, on the caller. */
static void test_worker_close_after_stop_is_inline(void **state) {
  env *e = *state;
  hs_cache_file f;
  hs_image img;
  hs_error err;
  char path[512];

  hs_worker_stop(&e->w);
  copy_fixture(e, "counter_v1", &f);
  snprintf(path, sizeof(path), "%s", f.path);
  assert_int_equal(hs_loader_open(&img, f.path, "counter.so", &err), 0);
  hs_worker_close(&e->w, "counter", &img, &f);
  assert_null(img.handle);
  assert_null(f.path);
  assert_false(exists(path));
  assert_int_equal(hs_dl_is_loaded(path), 0);
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_worker_open_returns_descriptor),
      T(test_worker_open_prepares_the_state),
      T(test_worker_open_bad_file_returns_loader_error),
      T(test_worker_open_missing_file_fails_in_open),
      T(test_worker_open_refuses_the_live_object),
      T(test_worker_callbacks_run_in_submission_order),
      T(test_worker_cancelled_open_closes_image),
      T(test_worker_close_removes_copy_and_unloads),
      T(test_worker_close_warns_when_object_stays_mapped),
      T(test_worker_stop_drains),
      T(test_worker_close_after_stop_is_inline),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
