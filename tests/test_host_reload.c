/*
 * test_host_reload.c - the real host on a temporary plugin directory: every
 * way a plugin file changes (rename into place, cp over it, revert, touch,
 * quick rebuilds, delete, a new file, a forced reload) and the shutdown.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "hotswap.h"

/* ---- helpers ----------------------------------------------------------- */

/* counter_v1 as counter.so, the host started on it, its first load seen. */
static void start_counter(harness *h, const char *const *args) {
  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(harness_start(h, args), 0);
  harness_expect_line(h, "counter log: load start version 1.0 loads=1");
  harness_expect_line(h, "counter loaded: version 1.0, state v1 (16 bytes), "
                 "generation 1, from counter.so in ");
}

/* Waits for the live load and the "reloaded" line of one reload. */
static long expect_reload(harness *h, const char *version, int loads,
                          int generation) {
  char want[256];
  snprintf(want, sizeof(want), "counter log: load reload version %s loads=%d",
           version, loads);
  harness_expect_line(h, want);
  snprintf(want, sizeof(want),
           "counter reloaded: version %s, state v1 (16 bytes), generation "
           "%d, from counter.so in ",
           version, generation);
  return harness_expect_line(h, want);
}

static void stop_clean(harness *h) {
  assert_int_equal(harness_stop(h), 0);
  harness_expect_line(h, "hotswap stopped: clean exit");
}

/* ---- tests ------------------------------------------------------------- */

static void test_host_loads_plugin_at_start(void **state) {
  harness *h = *state;
  char json[65536], text[PATH_MAX], real[PATH_MAX];
  long n;

  start_counter(h, NULL);
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);

  assert_int_equal(harness_json_long(json, NULL, "pid", &n), 0);
  assert_int_equal(n, h->pid);
  assert_int_equal(harness_json_long(json, NULL, "abi", &n), 0);
  assert_int_equal(n, HS_ABI_VERSION);
  assert_int_equal(harness_json_get(json, NULL, "version", text, sizeof(text)),
                   0);
  assert_string_equal(text, HS_VERSION_STRING);
  assert_int_equal(
      harness_json_get(json, NULL, "plugin_dir", text, sizeof(text)), 0);
  assert_non_null(realpath(h->plugins, real));
  assert_string_equal(text, real);
  assert_int_equal(harness_json_get(json, NULL, "control", text, sizeof(text)),
                   0);
  assert_string_equal(text, h->control);

  assert_int_equal(harness_json_get(json, "counter", "status", text,
                                    sizeof(text)),
                   0);
  assert_string_equal(text, "live");
  assert_int_equal(harness_json_get(json, "counter", "version", text,
                                    sizeof(text)),
                   0);
  assert_string_equal(text, "1.0");
  assert_int_equal(harness_json_get(json, "counter", "file", text,
                                    sizeof(text)),
                   0);
  assert_string_equal(text, "counter.so");
  assert_int_equal(harness_json_long(json, "counter", "state_version", &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(harness_json_long(json, "counter", "state_size", &n), 0);
  assert_int_equal(n, 16);
  assert_int_equal(harness_json_long(json, "counter", "generation", &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(harness_json_long(json, "counter", "reloads", &n), 0);
  assert_int_equal(n, 0);
  assert_int_equal(harness_json_get(json, "counter", "last_error", text,
                                    sizeof(text)),
                   0);
  assert_string_equal(text, "null");
  assert_int_equal(harness_json_get(json, "counter", "loaded_at", text,
                                    sizeof(text)),
                   0);
  assert_true(strlen(text) == 20 && text[19] == 'Z'); /* ISO 8601, UTC */
  /* One copy in the cache: the live one. */
  assert_int_equal(harness_wait_cache_files(h, 1), 0);
  stop_clean(h);
}

static void test_host_rename_same_state_keeps_state(void **state) {
  harness *h = *state;

  start_counter(h, NULL);
  assert_int_equal(harness_install(h, "counter_v1b", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  /* The old version is asked to stop, the new one gets the same bytes. */
  harness_expect_line(h, "counter log: unload reload version 1.0 loads=1");
  expect_reload(h, "1.1", 2, 2);
  harness_expect_status(h, "counter", "status", "live");
  harness_expect_status(h, "counter", "version", "1.1");
  harness_expect_status_num(h, "counter", "generation", 2);
  harness_expect_status_num(h, "counter", "reloads", 1);
  harness_expect_status(h, "counter", "last_error", "null");
  char text[256];
  assert_int_equal(harness_status_get(h, "counter", "last_reload.pause_us",
                                      text, sizeof(text)),
                   0);
  assert_int_equal(harness_wait_cache_files(h, 1), 0);
  stop_clean(h);
}

static void test_host_copy_over_loaded_plugin_reloads(void **state) {
  harness *h = *state;

  start_counter(h, NULL);
  /* Written in place, as cp does: the live code runs from the host's own
   * copy, so the host survives the file changing under it. */
  assert_int_equal(harness_install(h, "counter_v1b", "counter.so",
                                   HARNESS_COPY_OVER, NULL),
                   0);
  expect_reload(h, "1.1", 2, 2);
  assert_int_equal(harness_install(h, "counter_v1c", "counter.so",
                                   HARNESS_COPY_OVER, NULL),
                   0);
  expect_reload(h, "1.2", 3, 3);
  harness_expect_status(h, "counter", "status", "live");
  harness_expect_status(h, "counter", "version", "1.2");
  assert_int_equal(harness_wait_cache_files(h, 1), 0);
  stop_clean(h);
}

static void test_host_revert_to_older_file_reloads(void **state) {
  harness *h = *state;
  struct timespec before, older, after;

  start_counter(h, NULL);
  assert_int_equal(harness_install(h, "counter_v1b", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  expect_reload(h, "1.1", 2, 2);
  /* Back to 1.0, with a modification time older than the current file's:
   * what decides is the content, not the time. */
  assert_int_equal(harness_mtime(h, "counter.so", &before), 0);
  older = before;
  older.tv_sec -= 3600;
  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_RENAME, &older),
                   0);
  assert_int_equal(harness_mtime(h, "counter.so", &after), 0);
  assert_true(after.tv_sec < before.tv_sec);
  expect_reload(h, "1.0", 3, 3);
  harness_expect_status(h, "counter", "version", "1.0");
  harness_expect_status_num(h, "counter", "generation", 3);
  stop_clean(h);
}

static void test_host_touch_does_not_reload(void **state) {
  harness *h = *state;
  const char *const args[] = {"--log-level", "debug", NULL};
  struct timespec old = {1000000000, 0};

  start_counter(h, args);
  long from = h->offset;
  /* The touch is seen (the debug line) and found unchanged. */
  assert_int_equal(harness_touch(h, "counter.so", NULL), 0);
  harness_expect_line(h, "counter unchanged: counter.so: same content as before");
  assert_int_equal(harness_touch(h, "counter.so", &old), 0);
  harness_expect_line(h, "counter unchanged: counter.so: same content as before");
  /* A real change as a barrier: it is the next and only reload, and the
   * only validation, since the touches. */
  assert_int_equal(harness_install(h, "counter_v1c", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  long at = expect_reload(h, "1.2", 2, 2);
  assert_int_equal(harness_count(h, from, at + 1, "counter reloaded:"), 1);
  assert_int_equal(harness_count(h, from, at, "counter sandbox: load "), 1);
  assert_int_equal(harness_count(h, from, at, "counter log: unload "), 1);
  harness_expect_status_num(h, "counter", "generation", 2);
  stop_clean(h);
}

static void test_host_builds_in_same_second_both_load(void **state) {
  harness *h = *state;
  struct timespec t, got;

  /* Same size and same mtime: only the content tells the builds apart. */
  assert_int_equal(harness_fixture_size("counter_v1b"),
                   harness_fixture_size("counter_v1c"));
  start_counter(h, NULL);
  assert_int_equal(harness_mtime(h, "counter.so", &t), 0);
  t.tv_nsec = 0;
  assert_int_equal(harness_install(h, "counter_v1b", "counter.so",
                                   HARNESS_COPY_OVER, &t),
                   0);
  expect_reload(h, "1.1", 2, 2);
  assert_int_equal(harness_install(h, "counter_v1c", "counter.so",
                                   HARNESS_COPY_OVER, &t),
                   0);
  assert_int_equal(harness_mtime(h, "counter.so", &got), 0);
  assert_int_equal(got.tv_sec, t.tv_sec);
  assert_int_equal(got.tv_nsec, t.tv_nsec);
  expect_reload(h, "1.2", 3, 3);
  harness_expect_status(h, "counter", "version", "1.2");
  stop_clean(h);
}

static void test_host_quick_rebuilds_last_wins(void **state) {
  harness *h = *state;
  char line[1024], want[64];
  long generation = 0, reloads;

  start_counter(h, NULL);
  long from = h->offset;
  /* Two builds back to back: the second lands while the first may still be
   * in the sandbox. The newest content must end up live. */
  assert_int_equal(harness_install(h, "counter_v1b", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  assert_int_equal(harness_install(h, "counter_v1c", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  assert_true(harness_wait(h, "counter reloaded: version 1.2,", line,
                           sizeof(line)) >= 0);
  long end = h->offset;
  /* "live", not "validating": nothing is pending that could still win. */
  harness_expect_status(h, "counter", "status", "live");
  harness_expect_status(h, "counter", "version", "1.2");
  assert_int_equal(harness_status_long(h, "counter", "generation",
                                       &generation),
                   0);
  /* 1.1 was either skipped or loaded before 1.2; never after it. */
  reloads = harness_count(h, from, end, "counter reloaded:");
  assert_true(reloads == 1 || reloads == 2);
  assert_int_equal(generation, 1 + reloads);
  assert_int_equal(harness_count(h, from, end, "reloaded: version 1.1,"),
                   reloads - 1);
  snprintf(want, sizeof(want), "generation %ld,", generation);
  assert_true(harness_contains(line, want));
  snprintf(want, sizeof(want), "load reload version 1.2 loads=%ld",
           1 + reloads);
  assert_int_equal(harness_count(h, from, end, want), 1);
  stop_clean(h);
  assert_int_equal(harness_count(h, end, -1, "reloaded:"), 0);
}

static void test_host_burst_of_changes_newest_wins(void **state) {
  harness *h = *state;
  const char *const reload[] = {"reload", "counter", "--control", h->control,
                                NULL};
  char out[1024], err[1024], want[128];
  long generation;

  start_counter(h, NULL);
  long from = h->offset;
  /* 51 builds as fast as they can be written, the last one 1.2. */
  for (int i = 0; i < 51; i++)
    assert_int_equal(harness_install(h, i % 2 ? "counter_v1b" : "counter_v1c",
                                      "counter.so", HARNESS_RENAME, NULL),
                     0);
  assert_int_equal(harness_wait_status(h, "counter", "version", "1.2"), 0);
  /* Whatever was skipped, the newest content is what runs: a forced
   * reload (queued behind anything still in flight) confirms it. */
  assert_int_equal(harness_run(h, reload, out, sizeof(out), err, sizeof(err)),
                   0);
  assert_true(harness_contains(out, "counter: version 1.2 live"));
  harness_expect_status(h, "counter", "status", "live");
  harness_expect_status(h, "counter", "version", "1.2");
  /* And the state saw every load that happened, in order. */
  assert_int_equal(harness_status_long(h, "counter", "generation",
                                       &generation),
                   0);
  int reloads = harness_count(h, from, -1, "counter reloaded:");
  assert_int_equal(generation, 1 + reloads);
  snprintf(want, sizeof(want), "load reload version 1.2 loads=%ld",
           generation);
  assert_int_equal(harness_count(h, from, -1, want), 1);
  assert_int_equal(harness_count(h, from, -1, "counter rejected:"), 0);
  stop_clean(h);
}

static void test_host_delete_unloads(void **state) {
  harness *h = *state;
  char json[65536];

  start_counter(h, NULL);
  assert_int_equal(harness_install(h, "counter_v1b", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  expect_reload(h, "1.1", 2, 2);
  assert_int_equal(harness_remove(h, "counter.so"), 0);
  harness_expect_line(h, "counter log: unload removed version 1.1 loads=2");
  harness_expect_line(h, "counter unloaded: counter.so was removed; version 1.1 "
                 "unloaded");
  /* The registry drops the plugin, and its copy is gone from the cache. */
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  assert_true(harness_contains(json, "\"plugins\":[]"));
  assert_int_equal(harness_wait_cache_files(h, 0), 0);
  /* Back again: a new plugin, a fresh state. */
  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  harness_expect_line(h, "counter log: load start version 1.0 loads=1");
  harness_expect_line(h, "counter loaded: version 1.0, state v1 (16 bytes), "
                 "generation 1, from counter.so");
  harness_expect_status(h, "counter", "status", "live");
  stop_clean(h);
}

static void test_host_moved_file_becomes_new_plugin(void **state) {
  harness *h = *state;
  char json[65536];

  start_counter(h, NULL);
  /* mv counter.so renamed.so: the old name is gone, a new one appears. */
  assert_int_equal(harness_move(h, "counter.so", "renamed.so"), 0);
  harness_expect_line(h, "renamed log: load start version 1.0 loads=1");
  harness_expect_line(h, "renamed loaded: version 1.0, state v1 (16 bytes), "
                 "generation 1, from renamed.so");
  h->offset = 0; /* the two plugins' lines may come in either order */
  harness_expect_line(h, "counter unloaded: counter.so was removed; version 1.0 "
                 "unloaded");
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  assert_true(harness_lacks(json, "\"name\":\"counter\""));
  assert_true(harness_contains(json, "\"name\":\"renamed\""));
  assert_int_equal(harness_wait_cache_files(h, 1), 0);
  stop_clean(h);
}

static void test_host_new_file_loads(void **state) {
  harness *h = *state;
  char json[65536];
  long n;

  start_counter(h, NULL);
  long from = h->offset;
  /* Not plugins: ignored. */
  assert_int_equal(harness_install_text(h, "notes\n", "notes.txt",
                                        HARNESS_WRITE_NEW),
                   0);
  assert_int_equal(harness_install(h, "counter_v1", ".hidden.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(harness_install(h, "counter_v1b", "second.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  harness_expect_line(h, "second log: load start version 1.1 loads=1");
  harness_expect_line(h, "second loaded: version 1.1, state v1 (16 bytes), "
                 "generation 1, from second.so");
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  assert_int_equal(harness_json_long(json, "second", "generation", &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(harness_json_long(json, "counter", "generation", &n), 0);
  assert_int_equal(n, 1);
  assert_true(harness_lacks(json, "hidden"));
  assert_true(harness_lacks(json, "notes"));
  assert_int_equal(harness_wait_cache_files(h, 2), 0);
  stop_clean(h);
  assert_int_equal(harness_count(h, from, -1, "notes"), 0);
  assert_int_equal(harness_count(h, from, -1, "hidden"), 0);
  assert_int_equal(harness_count(h, from, -1, "second unloaded: version 1.1 "
                                              "unloaded (shutdown)"),
                   1);
}

static void test_host_many_new_files_all_load(void **state) {
  harness *h = *state;
  char name[32], want[128], json[65536];
  enum { N = 12 }; /* more than the validators run at once (2 per core) */

  /* Present at start, and arriving all at once later: those beyond the
   * validators running at once wait their turn, none is lost. */
  for (int i = 0; i < N; i++) {
    snprintf(name, sizeof(name), "early%02d.so", i);
    assert_int_equal(harness_install(h, "counter_v1", name, HARNESS_WRITE_NEW,
                                     NULL),
                     0);
  }
  assert_int_equal(harness_start(h, NULL), 0);
  for (int i = 0; i < N; i++) {
    snprintf(name, sizeof(name), "late%02d.so", i);
    assert_int_equal(harness_install(h, "counter_v1b", name, HARNESS_RENAME,
                                     NULL),
                     0);
  }
  for (int i = 0; i < N; i++) {
    long from = h->offset;
    snprintf(want, sizeof(want), "early%02d loaded: version 1.0, state v1 "
                                 "(16 bytes), generation 1",
             i);
    assert_true(harness_wait(h, want, NULL, 0) >= 0);
    h->offset = from; /* the order of the loads is the host's business */
    snprintf(want, sizeof(want), "late%02d loaded: version 1.1, state v1 "
                                 "(16 bytes), generation 1",
             i);
    assert_true(harness_wait(h, want, NULL, 0) >= 0);
    h->offset = from;
  }
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  for (int i = 0; i < N; i++) {
    char status[32];
    snprintf(name, sizeof(name), "late%02d", i);
    assert_int_equal(harness_json_get(json, name, "status", status,
                                      sizeof(status)),
                     0);
    assert_string_equal(status, "live");
  }
  assert_int_equal(harness_count(h, 0, -1, " loaded: "), 2 * N);
  assert_int_equal(harness_count(h, 0, -1, " rejected: "), 0);
  assert_int_equal(harness_wait_cache_files(h, 2 * N), 0);
  stop_clean(h);
  assert_int_equal(harness_count(h, 0, -1, "unloaded (shutdown)"), 2 * N);
}

static void test_host_forced_reload_from_cli(void **state) {
  harness *h = *state;
  char out[1024], err[1024];
  const char *const reload[] = {"reload", "counter", "--control", h->control,
                                NULL};
  const char *const unknown[] = {"reload", "nope", "--control", h->control,
                                 NULL};

  start_counter(h, NULL);
  /* Unchanged content, reloaded anyway; the state goes along. */
  assert_int_equal(harness_run(h, reload, out, sizeof(out), err, sizeof(err)),
                   0);
  assert_true(harness_contains(out, "counter: version 1.0 live, generation 2"));
  expect_reload(h, "1.0", 2, 2);
  harness_expect_status_num(h, "counter", "reloads", 1);

  assert_int_equal(harness_run(h, unknown, out, sizeof(out), err, sizeof(err)),
                   1);
  assert_true(harness_contains(err, "no plugin named 'nope'"));
  stop_clean(h);
}

/* Flags that keep a validation of bad_hang_selftest running until it is
 * cancelled: no wall-clock timeout, no CPU limit to speak of. */
static const char *const hang_forever[] = {"--sandbox-timeout", "3600000",
                                           "--sandbox-cpu", "86400", NULL};

/*
 * With counter_v1 live and bad_hang_selftest hanging in the sandbox, sends
 * two forced reloads at once. Exactly one is refused at once ("already
 * waiting"): the validation never ends by itself, so the first client to
 * exit is the refused one, and the other's reload is then known to be
 * registered and waiting. Returns the waiting client in *pending.
 */
static void start_pending_reload(harness *h, harness_proc *pending) {
  const char *const reload[] = {"reload", "counter", "--control", h->control,
                                NULL};
  harness_proc a, b;
  char out[1024], err[1024];

  start_counter(h, hang_forever);
  assert_int_equal(harness_install(h, "bad_hang_selftest", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter sandbox: load reload version bad loads=1");
  assert_int_equal(harness_run_start(h, reload, &a), 0);
  assert_int_equal(harness_run_start(h, reload, &b), 0);
  struct timespec tick = {0, 2000000};
  int waited = 0;
  while (!harness_run_done(h, &a) && !harness_run_done(h, &b)) {
    assert_true(waited++ < HARNESS_TIMEOUT_MS / 2);
    nanosleep(&tick, NULL);
  }
  harness_proc *refused = harness_run_done(h, &a) ? &a : &b;
  *pending = refused == &a ? b : a;
  assert_int_equal(harness_run_wait(h, refused, out, sizeof(out), err,
                                    sizeof(err)),
                   1);
  assert_true(harness_contains(err, "a reload of 'counter' is already "
                                    "waiting"));
  assert_false(harness_run_done(h, pending));
  /* The old version runs on while the candidate is tried. */
  harness_expect_status(h, "counter", "status", "validating");
  harness_expect_status(h, "counter", "version", "1.0");
}

static void test_host_forced_reload_answered_when_file_removed(void **state) {
  harness *h = *state;
  harness_proc pending;
  char out[1024], err[1024];

  start_pending_reload(h, &pending);
  assert_int_equal(harness_remove(h, "counter.so"), 0);
  harness_expect_line(h, "counter unloaded: counter.so was removed; version 1.0 "
                 "unloaded");
  assert_int_equal(harness_run_wait(h, &pending, out, sizeof(out), err,
                                    sizeof(err)),
                   1);
  assert_true(harness_contains(err, "counter.so was removed"));
  /* Whatever it says, it names no empty stage ("in stage : "). */
  assert_true(harness_lacks(err, "stage :"));
  stop_clean(h);
}

static void test_host_forced_reload_answered_at_shutdown(void **state) {
  harness *h = *state;
  harness_proc pending;
  char out[1024], err[1024];

  start_pending_reload(h, &pending);
  /* The hanging validation does not hold up the shutdown. */
  assert_int_equal(harness_stop(h), 0);
  harness_expect_line(h, "counter unloaded: version 1.0 unloaded (shutdown)");
  harness_expect_line(h, "hotswap stopped: clean exit");
  assert_int_equal(harness_run_wait(h, &pending, out, sizeof(out), err,
                                    sizeof(err)),
                   1);
  assert_true(harness_contains(err, "counter"));
  /* The file is still there: the answer must not say it was removed. */
  struct timespec mtime;
  assert_int_equal(harness_mtime(h, "counter.so", &mtime), 0);
  assert_true(harness_lacks(err, "was removed"));
  assert_true(harness_lacks(err, "stage :"));
}

static void test_host_sighup_rescans(void **state) {
  harness *h = *state;
  const char *const args[] = {"--log-level", "debug", NULL};

  start_counter(h, args);
  long from = h->offset;
  assert_int_equal(harness_signal(h, SIGHUP), 0);
  harness_expect_line(h, "hotswap rescan: SIGHUP: rescanning ");
  harness_expect_line(h, "counter unchanged: counter.so: same content as before");
  assert_int_equal(harness_count(h, from, -1, "counter sandbox:"), 0);
  harness_expect_status_num(h, "counter", "generation", 1);
  stop_clean(h);
}

static void test_host_sigterm_unloads_and_cleans_up(void **state) {
  harness *h = *state;
  char cache_dir[PATH_MAX];
  struct stat st;

  start_counter(h, NULL);
  assert_int_equal(harness_status_get(h, NULL, "cache_dir", cache_dir,
                                      sizeof(cache_dir)),
                   0);
  assert_int_equal(strncmp(cache_dir, h->cache, strlen(h->cache)), 0);
  assert_int_equal(stat(cache_dir, &st), 0);
  assert_int_equal(harness_wait_cache_files(h, 1), 0);
  assert_int_equal(stat(h->control, &st), 0);

  assert_int_equal(harness_stop(h), 0);
  harness_expect_line(h, "hotswap stopping: TERM: unloading every plugin");
  harness_expect_line(h, "counter log: unload shutdown version 1.0 loads=1");
  harness_expect_line(h, "counter unloaded: version 1.0 unloaded (shutdown)");
  harness_expect_line(h, "hotswap stopped: clean exit");
  /* The private cache and the socket are gone; --cache-dir itself stays. */
  assert_int_equal(stat(cache_dir, &st), -1);
  assert_int_equal(errno, ENOENT);
  assert_int_equal(harness_cache_dirs(h), 0);
  assert_int_equal(stat(h->cache, &st), 0);
  assert_int_equal(stat(h->control, &st), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_host_loads_plugin_at_start,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_rename_same_state_keeps_state,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_copy_over_loaded_plugin_reloads, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_revert_to_older_file_reloads,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_touch_does_not_reload,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_builds_in_same_second_both_load, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_quick_rebuilds_last_wins,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_burst_of_changes_newest_wins,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_delete_unloads, harness_setup,
                                      harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_moved_file_becomes_new_plugin,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_new_file_loads, harness_setup,
                                      harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_many_new_files_all_load,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_forced_reload_from_cli,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_forced_reload_answered_when_file_removed, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_forced_reload_answered_at_shutdown, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_sighup_rescans, harness_setup,
                                      harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_sigterm_unloads_and_cleans_up,
                                      harness_setup, harness_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
