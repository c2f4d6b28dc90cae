/*
 * test_host_rollback.c - versions that pass the sandbox but fail in the
 * live swap: the real host rolls back to the previous version on its own,
 * untouched state; when even that fails, the state is kept for the next
 * good version. And a version the dynamic loader never unmaps.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "harness.h"

static void expect_json(const char *json, const char *plugin,
                        const char *key, const char *want) {
  char got[1024];
  assert_int_equal(harness_json_get(json, plugin, key, got, sizeof(got)), 0);
  assert_string_equal(got, want);
}

static void expect_json_num(const char *json, const char *plugin,
                            const char *key, long want) {
  long got = -1;
  assert_int_equal(harness_json_long(json, plugin, key, &got), 0);
  assert_int_equal(got, want);
}

static void start_with(harness *h, const char *fixture, const char *version) {
  char want[128];
  assert_int_equal(harness_install(h, fixture, "counter.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(harness_start(h, NULL), 0);
  snprintf(want, sizeof(want), "counter log: load start version %s loads=1",
           version);
  harness_expect_line(h, want);
  snprintf(want, sizeof(want), "counter loaded: version %s, state v1 (16 "
                               "bytes), generation 1",
           version);
  harness_expect_line(h, want);
}

static void stop_clean(harness *h) {
  assert_int_equal(harness_stop(h), 0);
  harness_expect_line(h, "hotswap stopped: clean exit");
}

/* ---- tests ------------------------------------------------------------- */

static void test_host_rollback_after_live_load_fails(void **state) {
  harness *h = *state;
  char line[2048], json[65536];

  start_with(h, "counter_v1", "1.0");
  assert_int_equal(harness_install(h, "counter_v1_failreload", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  /* The sandbox passes it; the live load refuses, after scribbling over
   * the state it was handed. */
  harness_expect_line(h, "counter sandbox: load reload version 1.0-failreload "
                 "loads=1");
  harness_expect_line(h, "counter log: unload reload version 1.0 loads=1");
  harness_expect_line(h, "counter log: refusing a live reload");
  /* The old version comes back on its own bytes: loads=1 + this load. */
  harness_expect_line(h, "counter log: load rollback version 1.0 loads=2");
  assert_true(harness_wait(h, "counter rejected: counter.so: stage load: ",
                           line, sizeof(line)) >= 0);
  assert_true(harness_contains(line, "load() of the new counter.so returned "
                                     "HS_EIO"));
  assert_true(harness_contains(line, "(HS_EIO); version 1.0 keeps running"));
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  expect_json(json, "counter", "status", "live");
  expect_json(json, "counter", "version", "1.0");
  expect_json_num(json, "counter", "generation", 1);
  expect_json(json, "counter", "last_error.code", "HS_EIO");
  expect_json(json, "counter", "last_error.stage", "load");
  assert_int_equal(harness_wait_cache_files(h, 1), 0);

  /* The state was never the scribbled copy: the count goes on. */
  assert_int_equal(harness_install(h, "counter_v1b", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter log: load reload version 1.1 loads=3");
  harness_expect_line(h, "counter reloaded: version 1.1, state v1 (16 bytes), "
                 "generation 2");
  stop_clean(h);
}

static void test_host_rollback_after_migrated_load_fails(void **state) {
  harness *h = *state;
  char json[65536];

  start_with(h, "counter_v1", "1.0");
  assert_int_equal(harness_install(h, "counter_v2_failreload", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter log: migrated v1 (16 bytes) to v2 loads=1");
  harness_expect_line(h, "counter log: refusing a live reload");
  harness_expect_line(h, "counter log: load rollback version 1.0 loads=2");
  harness_expect_line(h, "counter rejected: counter.so: stage load: ");
  /* Back on the v1 layout. */
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  expect_json(json, "counter", "status", "live");
  expect_json(json, "counter", "version", "1.0");
  expect_json_num(json, "counter", "state_version", 1);
  expect_json_num(json, "counter", "state_size", 16);

  assert_int_equal(harness_install(h, "counter_v2", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter log: migrated v1 (16 bytes) to v2 loads=2");
  harness_expect_line(h, "counter log: load reload version 2.0 loads=3");
  harness_expect_line(h, "counter reloaded: version 2.0, state v2 (24 bytes), "
                 "generation 2");
  stop_clean(h);
}

static void test_host_failed_rollback_keeps_state(void **state) {
  harness *h = *state;
  char line[2048], json[65536];

  start_with(h, "counter_v1_norollback", "1.0-norollback");
  assert_int_equal(harness_install(h, "counter_v1_failreload", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter log: refusing a live reload");
  harness_expect_line(h, "counter log: refusing to roll back");
  harness_expect_line(h, "counter error: rollback: load() of the previous version "
                 "1.0-norollback returned HS_EPERM; the plugin is not running "
                 "(its state is kept)");
  assert_true(harness_wait(h, "counter rejected: counter.so: stage load: ",
                           line, sizeof(line)) >= 0);
  assert_true(harness_contains(line, "the plugin is not running"));
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  expect_json(json, "counter", "status", "rejected");
  expect_json(json, "counter", "last_error.code", "HS_EIO");
  assert_int_equal(harness_wait_cache_files(h, 0), 0);

  /* The next good version starts on the kept state, as a reload. */
  assert_int_equal(harness_install(h, "counter_v1b", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter log: load reload version 1.1 loads=2");
  /* ("loaded" or "reloaded": the host's word; the generation goes on.) */
  harness_expect_line(h, "version 1.1, state v1 (16 bytes), generation 2, from "
                 "counter.so");
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  expect_json(json, "counter", "status", "live");
  expect_json(json, "counter", "version", "1.1");
  expect_json(json, "counter", "last_error", "null");
  stop_clean(h);
}

static void test_host_pinned_old_version_is_reported(void **state) {
  harness *h = *state;

  start_with(h, "counter_v1", "1.0");
  assert_int_equal(harness_install(h, "counter_v1_nodelete", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter reloaded: version 1.0-nodelete");
  /* Known from the ELF before it ever had to be unloaded. */
  assert_int_equal(harness_count(h, 0, -1,
                                 "counter.so cannot be unloaded: it is marked "
                                 "NODELETE"),
                   1);
  assert_int_equal(harness_install(h, "counter_v1b", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter reloaded: version 1.1");
  /* Retiring the NODELETE image leaves it mapped: said once, and the host
   * goes on. */
  harness_expect_line(h, "counter warning: ");
  assert_int_equal(harness_count(h, 0, -1, "the old version stays mapped "
                                           "after dlclose"),
                   1);
  assert_int_equal(harness_install(h, "counter_v1c", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter log: load reload version 1.2 loads=4");
  assert_int_equal(harness_wait_cache_files(h, 1), 0);
  stop_clean(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_host_rollback_after_live_load_fails,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_rollback_after_migrated_load_fails, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_failed_rollback_keeps_state,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_pinned_old_version_is_reported,
                                      harness_setup, harness_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
