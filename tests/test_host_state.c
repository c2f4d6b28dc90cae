/*
 * test_host_state.c - the real host carries a plugin's state across
 * versions: the same bytes for the same layout, migrate() for a new one, a
 * rejection (or, with --allow-state-reset, a reset) when there is none.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* ---- helpers ----------------------------------------------------------- */

static void start_counter(harness *h, const char *const *args) {
  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(harness_start(h, args), 0);
  harness_expect_line(h, "counter log: load start version 1.0 loads=1");
  harness_expect_line(h, "counter loaded: version 1.0, state v1 (16 bytes), "
                 "generation 1, from counter.so");
}

/* counter_v1b over counter_v1: loads=2 in the state from here on. */
static void reload_v1b(harness *h) {
  assert_int_equal(harness_install(h, "counter_v1b", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter log: load reload version 1.1 loads=2");
  harness_expect_line(h, "counter reloaded: version 1.1, state v1 (16 bytes), "
                 "generation 2");
}

/*
 * Waits for the next "tick N" line of the live plugin and checks that N
 * continues the count of every tick logged before it: the tick counter in
 * the state went on across whatever happened since. Returns N.
 */
static long expect_next_tick(harness *h) {
  char line[1024];
  long at = harness_wait(h, "counter log: tick ", line, sizeof(line));
  assert_true(at >= 0);
  long n = strtol(strstr(line, "tick ") + 5, NULL, 10);
  int before = harness_count(h, 0, at, "counter log: tick ");
  assert_int_equal(n, (long)before + 1);
  return n;
}

static void stop_clean(harness *h) {
  assert_int_equal(harness_stop(h), 0);
  harness_expect_line(h, "hotswap stopped: clean exit");
}

/* ---- tests ------------------------------------------------------------- */

static void test_host_state_migrates_to_new_layout(void **state) {
  harness *h = *state;

  start_counter(h, NULL);
  reload_v1b(h);
  assert_int_equal(harness_install(h, "counter_v2", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  /* Tried first on a copy of the live state in the sandbox... */
  harness_expect_line(h, "counter sandbox: migrated v1 (16 bytes) to v2 loads=2");
  /* ...then for real: unload, migrate, load on the new state. */
  harness_expect_line(h, "counter log: unload reload version 1.1 loads=2");
  harness_expect_line(h, "counter log: migrated v1 (16 bytes) to v2 loads=2");
  harness_expect_line(h, "counter log: load reload version 2.0 loads=3");
  harness_expect_line(h, "counter reloaded: version 2.0, state v2 (24 bytes), "
                 "generation 3, from counter.so");
  harness_expect_status(h, "counter", "status", "live");
  harness_expect_status(h, "counter", "version", "2.0");
  harness_expect_status_num(h, "counter", "state_version", 2);
  harness_expect_status_num(h, "counter", "state_size", 24);
  harness_expect_status(h, "counter", "last_error", "null");
  assert_int_equal(harness_stop(h), 0);
  harness_expect_line(h, "counter log: unload shutdown version 2.0 loads=3");
  harness_expect_line(h, "counter unloaded: version 2.0 unloaded (shutdown)");
  harness_expect_line(h, "hotswap stopped: clean exit");
}

static void test_host_state_rejects_new_layout_without_migrate(void **state) {
  harness *h = *state;
  char line[1024], text[1024];

  start_counter(h, NULL);
  long from = h->offset;
  assert_int_equal(harness_install(h, "counter_v2_nomigrate", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  long at = harness_wait(h, "counter rejected: counter.so: stage migrate: ",
                         line, sizeof(line));
  assert_true(at >= 0);
  assert_true(harness_contains(line, "state changes from v1 (16 bytes) to "
                                     "v2 (24 bytes)"));
  assert_true(harness_contains(line, "counter.so has no migrate function"));
  assert_true(harness_contains(line, "--allow-state-reset"));
  assert_true(harness_contains(line, "(HS_ENOMIGRATE); version 1.0 keeps "
                                     "running"));
  /* Rejected in the sandbox: the live version was never stopped. */
  assert_int_equal(harness_count(h, from, at, "counter log: unload"), 0);
  harness_expect_status(h, "counter", "status", "live");
  harness_expect_status(h, "counter", "version", "1.0");
  harness_expect_status_num(h, "counter", "state_version", 1);
  harness_expect_status_num(h, "counter", "state_size", 16);
  harness_expect_status_num(h, "counter", "generation", 1);
  harness_expect_status(h, "counter", "last_error.code", "HS_ENOMIGRATE");
  harness_expect_status(h, "counter", "last_error.stage", "migrate");
  assert_int_equal(harness_status_get(h, "counter", "last_error.message",
                                      text, sizeof(text)),
                   0);
  assert_true(harness_contains(text, "no migrate function"));
  /* The old state is intact: the next version continues its count. */
  reload_v1b(h);
  harness_expect_status(h, "counter", "last_error", "null");
  stop_clean(h);
}

static void test_host_state_reset_allowed_by_option(void **state) {
  harness *h = *state;
  const char *const args[] = {"--allow-state-reset", NULL};

  start_counter(h, args);
  reload_v1b(h);
  assert_int_equal(harness_install(h, "counter_v2_nomigrate", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter log: unload reload version 1.1 loads=2");
  /* Zeroed state: the count starts again. */
  harness_expect_line(h, "counter log: load reload version 2.0-nomigrate loads=1");
  harness_expect_line(h, "counter warning: counter.so has no migrate function: its "
                 "state was reset to zero (--allow-state-reset)");
  harness_expect_line(h, "counter reloaded: version 2.0-nomigrate, state v2 (24 "
                 "bytes), generation 3");
  harness_expect_status(h, "counter", "status", "live");
  harness_expect_status(h, "counter", "version", "2.0-nomigrate");
  harness_expect_status_num(h, "counter", "state_version", 2);
  harness_expect_status_num(h, "counter", "state_size", 24);
  stop_clean(h);
}

static void test_host_state_ticks_continue_across_reloads(void **state) {
  harness *h = *state;

  assert_int_equal(harness_env(h, "FX_TICK_MS=20"), 0);
  start_counter(h, NULL);
  harness_expect_line(h, "counter log: tick 3");
  /* Same layout: the same bytes, the count goes on. */
  reload_v1b(h);
  assert_true(expect_next_tick(h) > 3);
  /* Migrated: migrate() copied the count. */
  assert_int_equal(harness_install(h, "counter_v2", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter reloaded: version 2.0, state v2 (24 bytes)");
  expect_next_tick(h);
  /* The validator never ticks: it has no loop. */
  assert_int_equal(harness_count(h, 0, -1, "counter sandbox: tick"), 0);
  stop_clean(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_host_state_migrates_to_new_layout,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_state_rejects_new_layout_without_migrate, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_state_reset_allowed_by_option,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_state_ticks_continue_across_reloads, harness_setup,
          harness_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
