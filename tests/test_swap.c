/*
 * test_swap.c - the live swap transaction on a slot built by hand: what
 * each version's callbacks are called with, the state bytes each gets,
 * rollback, --allow-state-reset, generations, and swap out.
 *
 * swap.c reaches the registry only through slot->reg->worker, ->cache and
 * ->opts, so the registry here is a bare struct with a started worker and
 * a cache; images are opened with hs_loader_open on cache copies. The
 * plugin's callbacks are observed through its log lines ("load <reason>
 * version <v> loads=<n>", ...), captured in a memfd. The fixtures run in
 * this process: none of the ones used here crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "cache.h"
#include "dl.h"
#include "loader.h"
#include "log.h"
#include "loop.h"
#include "registry.h"
#include "state.h"
#include "swap.h"
#include "worker.h"
#include "fixtures/fixture_state.h"

#define MS 1000000ull
#define WAIT_MS 30000

/* The fixture's state layouts. */
typedef struct state_v1 v1;
typedef struct state_v2 v2;

typedef struct env {
  char tmp[64];
  int fixfd;      /* the fixtures directory */
  int logfd;      /* memfd: this process's log */
  off_t mark;     /* log offset where the current step began */
  hs_loop loop;
  hs_cache cache;
  hs_registry reg; /* only loop, cache, worker and opts are used */
  hs_slot *slot;
} env;

static int setup(void **state) {
  env *e = calloc(1, sizeof(*e));
  hs_error err;

  if (!e)
    return -1;
  snprintf(e->tmp, sizeof(e->tmp), "/tmp/hs-test-swap-XXXXXX");
  if (!mkdtemp(e->tmp) || hs_loop_init(&e->loop) != 0 ||
      hs_cache_init(&e->cache, e->tmp, &err) != 0)
    return -1;
  e->fixfd = open(HS_TEST_FIXTURES, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  e->logfd = memfd_create("test-swap-log", MFD_CLOEXEC);
  if (e->fixfd < 0 || e->logfd < 0)
    return -1;
  hs_log_init(HS_LOG_TEXT, HS_LOG_DEBUG, e->logfd);
  unsetenv("FX_TICK_MS");

  e->reg.loop = &e->loop;
  e->reg.cache = &e->cache;
  e->reg.dirfd = -1;
  if (hs_worker_start(&e->reg.worker, &e->loop, &e->cache) != 0)
    return -1;
  e->slot = calloc(1, sizeof(*e->slot));
  if (!e->slot)
    return -1;
  e->slot->reg = &e->reg;
  e->slot->name = strdup("counter");
  e->slot->file = strdup("counter.so");
  hs_api_ctx_init(&e->slot->ctx, e->slot->name, HS_TEST_FIXTURES, &e->loop,
                  0);
  *state = e;
  return 0;
}

/* Counts the files left in the cache directory. */
static int cache_files(env *e) {
  DIR *d = opendir(e->cache.dir);
  struct dirent *de;
  int n = 0;
  if (!d)
    return -1;
  while ((de = readdir(d)) != NULL)
    if (de->d_name[0] != '.')
      n++;
  closedir(d);
  return n;
}

static int teardown(void **state) {
  env *e = *state;
  int left;

  unsetenv("FX_TICK_MS");
  hs_swap_out(e->slot, HS_UNLOAD_SHUTDOWN);
  hs_worker_stop(&e->reg.worker); /* closes what is queued */
  left = cache_files(e);
  hs_state_free(&e->slot->state);
  hs_threads_free(&e->slot->threads);
  hs_threads_free(&e->slot->born);
  free(e->slot->name);
  free(e->slot->file);
  free(e->slot);
  hs_cache_close(&e->cache);
  rmdir(e->tmp);
  hs_loop_close(&e->loop);
  hs_log_init(HS_LOG_TEXT, HS_LOG_INFO, 2);
  close(e->logfd);
  close(e->fixfd);
  free(e);
  if (left != 0)
    fprintf(stderr, "%d copies left in the cache\n", left);
  return left == 0 ? 0 : -1;
}

/* ---- the log --------------------------------------------------------- */

static char *log_since(env *e, off_t from) {
  struct stat st;
  assert_int_equal(fstat(e->logfd, &st), 0);
  size_t n = (size_t)(st.st_size - from);
  char *buf = malloc(n + 1);
  assert_non_null(buf);
  assert_int_equal(pread(e->logfd, buf, n, from), (ssize_t)n);
  buf[n] = '\0';
  return buf;
}

static void mark(env *e) {
  struct stat st;
  assert_int_equal(fstat(e->logfd, &st), 0);
  e->mark = st.st_size;
}

/* The plugin's own lines since the mark ("counter log: MSG"), each MSG
 * followed by '\n', must be exactly want: the callbacks called, in order,
 * with their reasons and counts. */
static void expect_calls(env *e, const char *want) {
  char *text = log_since(e, e->mark), got[4096] = "";
  size_t len = 0;
  static const char tag[] = " counter log: ";
  for (char *l = text; l && *l;) {
    char *nl = strchr(l, '\n');
    char *t = strstr(l, tag);
    if (t && (!nl || t < nl)) {
      t += sizeof(tag) - 1;
      size_t n = nl ? (size_t)(nl - t) : strlen(t);
      if (len + n + 2 < sizeof(got)) {
        memcpy(got + len, t, n);
        len += n;
        got[len++] = '\n';
        got[len] = '\0';
      }
    }
    l = nl ? nl + 1 : NULL;
  }
  if (strcmp(got, want) != 0)
    fail_msg("plugin calls:\n%s\nexpected:\n%s\nlog:\n%s", got, want, text);
  free(text);
}

static int log_has(env *e, const char *needle) {
  char *text = log_since(e, e->mark);
  int found = strstr(text, needle) != NULL;
  if (!found)
    fprintf(stderr, "log lacks \"%s\":\n%s", needle, text);
  free(text);
  return found;
}

/* ---- the worker ------------------------------------------------------ */

static void on_sentinel(hs_open_job *job) { (*(int *)job->data)++; }

static void on_poll(hs_timer *t) {
  void **a = t->data;
  if (*(int *)a[1] || hs_now_ns() > *(uint64_t *)a[2])
    hs_loop_stop(a[0]);
}

/* Waits until the worker finished everything queued so far (it works in
 * order: a last open's callback means all before it are done). */
static void settle(env *e) {
  int done = 0;
  uint64_t end = hs_now_ns() + WAIT_MS * MS;
  void *a[3] = {&e->loop, &done, &end};
  hs_timer t;
  assert_non_null(hs_worker_open(&e->reg.worker,
                                 HS_TEST_FIXTURES "/no_such_plugin.so",
                                 "none.so", NULL, on_sentinel, &done));
  hs_loop_timer_init(&t, on_poll, a);
  assert_int_equal(hs_loop_timer_start(&e->loop, &t, MS, MS), 0);
  while (!done && hs_now_ns() <= end)
    assert_int_equal(hs_loop_run(&e->loop), 0);
  hs_loop_timer_stop(&t);
  assert_int_equal(done, 1);
}

/* ---- swaps ----------------------------------------------------------- */

typedef struct swap_result {
  int rc;
  hs_error err;
  uint64_t pause_ns;
  int was_reset;
  char copy[512];   /* the candidate's copy */
  void *spare;      /* the state bytes prepared for it, as the worker does */
} swap_result;

/* Opens a fresh cache copy of fixture and swaps it into the slot. */
static swap_result swap(env *e, const char *fixture) {
  char name[128];
  hs_cache_file cand;
  hs_image img;
  hs_state spare;
  hs_error err;
  swap_result r;

  memset(&r, 0, sizeof(r));
  snprintf(name, sizeof(name), "%s.so", fixture);
  if (hs_cache_add(&e->cache, e->fixfd, name, &cand, &err) != 0)
    fail_msg("hs_cache_add %s: %s", name, err.msg);
  snprintf(r.copy, sizeof(r.copy), "%s", cand.path);
  if (hs_loader_open(&img, cand.path, "counter.so", &err) != 0)
    fail_msg("hs_loader_open %s: %s", name, err.msg);
  assert_int_equal(hs_state_prepare(&spare, img.desc->state_version,
                                    img.desc->state_size),
                   0);
  r.spare = spare.data;
  mark(e);
  hs_error_clear(&r.err);
  r.was_reset = -1;
  r.rc = hs_swap_in(e->slot, &img, &cand, &spare, &r.pause_ns, &r.was_reset,
                    &r.err);
  /* img, cand and spare are taken over either way. */
  assert_null(img.handle);
  assert_null(cand.path);
  assert_null(spare.data);
  /* On success the live state is in the bytes prepared for it. */
  if (r.rc == 0 && r.spare)
    assert_ptr_equal(e->slot->state.data, r.spare);
  assert_true(r.pause_ns > 0);
  assert_true(r.was_reset == 0 || r.was_reset == 1);
  return r;
}

static void swap_ok(env *e, const char *fixture) {
  swap_result r = swap(e, fixture);
  if (r.rc != 0)
    fail_msg("swap to %s: %s (%s)", fixture, r.err.msg, hs_err_name(r.rc));
}

static v1 state_v1(env *e) {
  v1 s;
  assert_int_equal(e->slot->state.version, 1);
  assert_int_equal(e->slot->state.size, sizeof(v1));
  memcpy(&s, e->slot->state.data, sizeof(s));
  return s;
}

static void set_state_v1(env *e, uint64_t loads, uint64_t ticks) {
  v1 s = {loads, ticks};
  assert_int_equal(e->slot->state.size, sizeof(s));
  memcpy(e->slot->state.data, &s, sizeof(s));
}

static void test_swap_first_load_gets_zeroed_state_and_start(void **state) {
  env *e = *state;
  hs_slot *slot = e->slot;
  swap_result r = swap(e, "counter_v1");

  assert_int_equal(r.rc, 0);
  assert_int_equal(r.was_reset, 0);
  assert_int_equal(slot->loaded, 1);
  assert_int_equal(slot->generation, 1);
  assert_string_equal(slot->version, "1.0");
  assert_string_equal(slot->copy.path, r.copy);
  assert_non_null(slot->img.handle);
  assert_ptr_equal(slot->ctx.desc, slot->img.desc);
  assert_ptr_equal(slot->ctx.state, slot->state.data);
  v1 s = state_v1(e);
  assert_int_equal(s.loads, 1); /* zeroed, then counted by load() */
  assert_int_equal(s.ticks, 0);
  expect_calls(e, "load start version 1.0 loads=1\n");
}

/* Same state_version and size: the new version gets a copy of exactly
 * the old bytes. */
static void test_swap_same_layout_hands_the_same_bytes(void **state) {
  env *e = *state;
  hs_slot *slot = e->slot;

  swap_ok(e, "counter_v1");
  set_state_v1(e, 41, 0x1122334455667788ull);
  void *old_handle = slot->img.handle;
  char old_copy[512];
  snprintf(old_copy, sizeof(old_copy), "%s", slot->copy.path);

  swap_result r = swap(e, "counter_v1b");
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.was_reset, 0);
  expect_calls(e, "unload reload version 1.0 loads=41\n"
                  "load reload version 1.1 loads=42\n");
  v1 s = state_v1(e);
  assert_int_equal(s.loads, 42);
  assert_int_equal(s.ticks, 0x1122334455667788ull);
  assert_string_equal(slot->version, "1.1");
  assert_int_equal(slot->generation, 2);
  assert_true(slot->img.handle != old_handle);
  assert_string_equal(slot->copy.path, r.copy);
  /* The retired image is closed and its copy removed by the worker. */
  settle(e);
  assert_int_equal(access(old_copy, F_OK), -1);
  assert_int_equal(hs_dl_is_loaded(old_copy), 0);
  assert_int_equal(hs_dl_is_loaded(r.copy), 1);
}

static void test_swap_migrates_v1_to_v2(void **state) {
  env *e = *state;
  hs_slot *slot = e->slot;

  swap_ok(e, "counter_v1");
  set_state_v1(e, 5, 6);
  swap_result r = swap(e, "counter_v2");
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.was_reset, 0);
  expect_calls(e, "unload reload version 1.0 loads=5\n"
                  "migrated v1 (16 bytes) to v2 loads=5\n"
                  "load reload version 2.0 loads=6\n");
  assert_int_equal(slot->state.version, 2);
  assert_int_equal(slot->state.size, sizeof(v2));
  v2 s;
  memcpy(&s, slot->state.data, sizeof(s));
  assert_int_equal(s.loads, 6);
  assert_int_equal(s.ticks, 6);
  assert_int_equal(s.migrated_from, 1);
  assert_int_equal(s.padding_zero, 0);
  assert_string_equal(slot->version, "2.0");
  assert_int_equal(slot->generation, 2);
}

/* After a failed swap: the old version live again on its own bytes, the
 * candidate closed and its copy removed. */
static void expect_rolled_back(env *e, const swap_result *r, void *handle,
                               const char *version, uint32_t generation,
                               uint64_t loads, uint64_t ticks) {
  hs_slot *slot = e->slot;
  assert_int_equal(slot->loaded, 1);
  assert_ptr_equal(slot->img.handle, handle);
  assert_ptr_equal(slot->ctx.desc, slot->img.desc);
  assert_ptr_equal(slot->ctx.state, slot->state.data);
  assert_string_equal(slot->version, version);
  assert_int_equal(slot->generation, generation);
  /* Byte for byte: the old bytes, plus the count of the rollback load. */
  v1 want = {loads + 1, ticks};
  assert_int_equal(slot->state.version, 1);
  assert_int_equal(slot->state.size, sizeof(want));
  assert_memory_equal(slot->state.data, &want, sizeof(want));
  settle(e);
  assert_int_equal(access(r->copy, F_OK), -1);
  assert_int_equal(hs_dl_is_loaded(r->copy), 0);
}

static void test_swap_missing_migrate_rolls_back(void **state) {
  env *e = *state;

  swap_ok(e, "counter_v1");
  set_state_v1(e, 5, 6);
  void *handle = e->slot->img.handle;
  swap_result r = swap(e, "counter_v2_nomigrate");
  assert_int_equal(r.rc, HS_ENOMIGRATE);
  assert_int_equal(r.err.code, HS_ENOMIGRATE);
  assert_string_equal(r.err.stage, "migrate");
  assert_string_equal(r.err.msg,
                      "state changes from v1 (16 bytes) to v2 (24 bytes) and "
                      "counter.so has no migrate function; add one, or start "
                      "hotswap with --allow-state-reset to reset the state");
  expect_calls(e, "unload reload version 1.0 loads=5\n"
                  "load rollback version 1.0 loads=6\n");
  expect_rolled_back(e, &r, handle, "1.0", 1, 5, 6);
}

static void test_swap_failing_migrate_rolls_back(void **state) {
  env *e = *state;

  swap_ok(e, "counter_v1");
  set_state_v1(e, 5, 6);
  void *handle = e->slot->img.handle;
  swap_result r = swap(e, "bad_fail_migrate");
  assert_int_equal(r.rc, HS_EMIGRATE);
  assert_string_equal(r.err.stage, "migrate");
  assert_string_equal(r.err.msg, "migrate() of counter.so from state v1 to v2 "
                                 "returned HS_ERANGE (result out of range)");
  expect_calls(e, "unload reload version 1.0 loads=5\n"
                  "cannot migrate from v1\n"
                  "load rollback version 1.0 loads=6\n");
  expect_rolled_back(e, &r, handle, "1.0", 1, 5, 6);
}

/* The new version passes the sandbox but its live load() fails, after
 * scribbling over the bytes it was handed: the old version comes back on
 * its own bytes, untouched. */
static void test_swap_failed_live_load_rolls_back_exact_bytes(void **state) {
  env *e = *state;

  swap_ok(e, "counter_v1");
  set_state_v1(e, 5, 6);
  void *handle = e->slot->img.handle;
  swap_result r = swap(e, "counter_v1_failreload");
  assert_int_equal(r.rc, HS_EIO);
  assert_int_equal(r.err.code, HS_EIO);
  assert_string_equal(r.err.stage, "load");
  assert_string_equal(r.err.msg,
                      "load() of the new counter.so returned HS_EIO (i/o "
                      "error)");
  expect_calls(e, "unload reload version 1.0 loads=5\n"
                  "refusing a live reload\n"
                  "load rollback version 1.0 loads=6\n");
  expect_rolled_back(e, &r, handle, "1.0", 1, 5, 6);
}

/* The same after a migration: the old layout and bytes come back. */
static void test_swap_failed_load_after_migrate_rolls_back(void **state) {
  env *e = *state;

  swap_ok(e, "counter_v1");
  set_state_v1(e, 5, 6);
  void *handle = e->slot->img.handle;
  swap_result r = swap(e, "counter_v2_failreload");
  assert_int_equal(r.rc, HS_EIO);
  assert_string_equal(r.err.stage, "load");
  expect_calls(e, "unload reload version 1.0 loads=5\n"
                  "migrated v1 (16 bytes) to v2 loads=5\n"
                  "refusing a live reload\n"
                  "load rollback version 1.0 loads=6\n");
  expect_rolled_back(e, &r, handle, "1.0", 1, 5, 6);
}

static void test_swap_allow_state_reset_zeroes_state(void **state) {
  env *e = *state;
  hs_slot *slot = e->slot;

  e->reg.opts.allow_state_reset = 1;
  swap_ok(e, "counter_v1");
  set_state_v1(e, 5, 6);
  swap_result r = swap(e, "counter_v2_nomigrate");
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.was_reset, 1);
  expect_calls(e, "unload reload version 1.0 loads=5\n"
                  "load reload version 2.0-nomigrate loads=1\n");
  v2 want = {1, 0, 0, 0};
  assert_int_equal(slot->state.version, 2);
  assert_int_equal(slot->state.size, sizeof(want));
  assert_memory_equal(slot->state.data, &want, sizeof(want));
  assert_string_equal(slot->version, "2.0-nomigrate");
  assert_int_equal(slot->generation, 2);
}

static void test_swap_counts_generations(void **state) {
  env *e = *state;
  hs_slot *slot = e->slot;

  swap_ok(e, "counter_v1");
  assert_int_equal(slot->generation, 1);
  swap_ok(e, "counter_v1b");
  assert_int_equal(slot->generation, 2);
  assert_int_equal(swap(e, "counter_v1_failreload").rc, HS_EIO);
  assert_int_equal(slot->generation, 2);
  assert_string_equal(slot->version, "1.1");
  swap_ok(e, "counter_v1c");
  assert_int_equal(slot->generation, 3);
  assert_int_equal(swap(e, "counter_v2_nomigrate").rc, HS_ENOMIGRATE);
  assert_int_equal(slot->generation, 3);
  swap_ok(e, "counter_v2");
  assert_int_equal(slot->generation, 4);
  assert_string_equal(slot->version, "2.0");
  /* Six live loads: one per swap in, one per rollback. */
  v2 s;
  memcpy(&s, slot->state.data, sizeof(s));
  assert_int_equal(s.loads, 6);
}

static void test_swap_out_unloads_and_keeps_state(void **state) {
  env *e = *state;
  hs_slot *slot = e->slot;

  swap_ok(e, "counter_v1");
  set_state_v1(e, 5, 6);
  char copy[512];
  snprintf(copy, sizeof(copy), "%s", slot->copy.path);
  mark(e);
  hs_swap_out(slot, HS_UNLOAD_REMOVED);
  expect_calls(e, "unload removed version 1.0 loads=5\n");
  assert_int_equal(slot->loaded, 0);
  assert_null(slot->img.handle);
  assert_null(slot->copy.path);
  assert_null(slot->ctx.desc);
  v1 want = {5, 6};
  assert_memory_equal(slot->state.data, &want, sizeof(want));
  settle(e);
  assert_int_equal(access(copy, F_OK), -1);
  assert_int_equal(hs_dl_is_loaded(copy), 0);
  /* Nothing live: harmless. */
  mark(e);
  hs_swap_out(slot, HS_UNLOAD_SHUTDOWN);
  expect_calls(e, "");
}

/* The old version cannot come back either: nothing is live, both images
 * are closed, and the state is kept for the next version, which loads on
 * it with reason RELOAD. */
static void test_swap_failed_rollback_leaves_nothing_live(void **state) {
  env *e = *state;
  hs_slot *slot = e->slot;

  swap_ok(e, "counter_v1_norollback");
  set_state_v1(e, 5, 6);
  char old_copy[512];
  snprintf(old_copy, sizeof(old_copy), "%s", slot->copy.path);
  swap_result r = swap(e, "counter_v1_failreload");
  assert_int_equal(r.rc, HS_EIO);
  assert_string_equal(r.err.stage, "load");
  expect_calls(e, "unload reload version 1.0-norollback loads=5\n"
                  "refusing a live reload\n"
                  "refusing to roll back\n");
  assert_true(log_has(e, "counter error: rollback: load() of the previous "
                         "version 1.0-norollback returned HS_EPERM; the "
                         "plugin is not running (its state is kept)"));
  assert_int_equal(slot->loaded, 0);
  assert_null(slot->img.handle);
  assert_null(slot->ctx.desc);
  assert_int_equal(slot->generation, 1);
  v1 want = {5, 6};
  assert_int_equal(slot->state.version, 1);
  assert_memory_equal(slot->state.data, &want, sizeof(want));
  settle(e);
  assert_int_equal(access(old_copy, F_OK), -1);
  assert_int_equal(access(r.copy, F_OK), -1);
  assert_int_equal(hs_dl_is_loaded(old_copy), 0);
  assert_int_equal(hs_dl_is_loaded(r.copy), 0);

  swap_ok(e, "counter_v1");
  expect_calls(e, "load reload version 1.0 loads=6\n");
  assert_int_equal(slot->generation, 2);
  v1 s = state_v1(e);
  assert_int_equal(s.ticks, 6);
}

/* Ticks belong to the live version: stopped at every unload, restarted by
 * whichever version loads (the rolled-back one included). */
static int ticks_reached(env *e, uint64_t n) {
  return state_v1(e).ticks >= n;
}

static void on_tick_poll(hs_timer *t) {
  void **a = t->data;
  env *e = a[0];
  if (ticks_reached(e, *(uint64_t *)a[1]) || hs_now_ns() > *(uint64_t *)a[2])
    hs_loop_stop(&e->loop);
}

static void run_until_ticks(env *e, uint64_t n) {
  uint64_t end = hs_now_ns() + WAIT_MS * MS;
  void *a[3] = {e, &n, &end};
  hs_timer t;
  hs_loop_timer_init(&t, on_tick_poll, a);
  assert_int_equal(hs_loop_timer_start(&e->loop, &t, MS, MS), 0);
  while (!ticks_reached(e, n) && hs_now_ns() <= end)
    assert_int_equal(hs_loop_run(&e->loop), 0);
  hs_loop_timer_stop(&t);
  assert_true(ticks_reached(e, n));
}

static void test_swap_ticks_follow_the_live_version(void **state) {
  env *e = *state;
  hs_slot *slot = e->slot;

  setenv("FX_TICK_MS", "2", 1);
  swap_ok(e, "counter_v1");
  assert_int_equal(slot->ctx.tick_ms, 2);
  run_until_ticks(e, 3);
  swap_ok(e, "counter_v1b");
  assert_int_equal(hs_loop_timer_active(&slot->ctx.tick), 1);
  uint64_t before = state_v1(e).ticks;
  run_until_ticks(e, before + 3); /* the count carried on */
  assert_int_equal(swap(e, "counter_v1_failreload").rc, HS_EIO);
  assert_int_equal(hs_loop_timer_active(&slot->ctx.tick), 1);
  before = state_v1(e).ticks;
  run_until_ticks(e, before + 3);
  hs_swap_out(slot, HS_UNLOAD_SHUTDOWN);
  assert_int_equal(hs_loop_timer_active(&slot->ctx.tick), 0);
  assert_int_equal(slot->ctx.tick_ms, 0);
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_swap_first_load_gets_zeroed_state_and_start),
      T(test_swap_same_layout_hands_the_same_bytes),
      T(test_swap_migrates_v1_to_v2),
      T(test_swap_missing_migrate_rolls_back),
      T(test_swap_failing_migrate_rolls_back),
      T(test_swap_failed_live_load_rolls_back_exact_bytes),
      T(test_swap_failed_load_after_migrate_rolls_back),
      T(test_swap_allow_state_reset_zeroes_state),
      T(test_swap_counts_generations),
      T(test_swap_out_unloads_and_keeps_state),
      T(test_swap_failed_rollback_leaves_nothing_live),
      T(test_swap_ticks_follow_the_live_version),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
