/*
 * test_host_soak.c - a thousand reloads on the real host: the state goes on
 * counting, and the host's file descriptors, mappings and cache copies stay
 * flat.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "harness.h"

#define SOAK_RELOADS 1000
#define SOAK_EARLY 10 /* resources are first measured after this reload */

/*
 * How many more lines /proc/PID/maps may have after the last reload than
 * after the early one. Every reload maps a new copy of the plugin and
 * unmaps the old one, so the plugin itself must not leave a line behind;
 * what may still move is the heap of the host's allocator (glibc's, or
 * ASan's, which maps its size classes and quarantine in chunks as they are
 * first used). A handful of lines covers that; a leaked plugin mapping
 * (4-5 lines per reload) or a leaked dlopen would exceed it by far.
 */
#define SOAK_MAPS_SLACK 8

typedef struct usage {
  int fds, maps, cache;
} usage;

static usage measure(harness *h) {
  char json[65536];
  usage u;
  /* The host retires the old version off its loop (dlclose, then the copy
   * is deleted): once one copy is left, the old image is unmapped. Then a
   * status round trip: the host has finished with the last validation by
   * the time it answers. */
  assert_int_equal(harness_wait_cache_files(h, 1), 0);
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  u.fds = harness_fd_count_settled(h);
  u.maps = harness_maps_count(h->pid);
  u.cache = harness_cache_files(h);
  assert_true(u.fds > 0 && u.maps > 0 && u.cache >= 0);
  return u;
}

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_host_soak_reloads_leak_nothing(void **state) {
  harness *h = *state;
  char want[256];
  usage early = {0, 0, 0}, late;
  double t0 = seconds();

  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(harness_start(h, NULL), 0);
  assert_true(harness_wait(h, "counter loaded: version 1.0", NULL, 0) >= 0);

  for (int i = 1; i <= SOAK_RELOADS; i++) {
    const char *fixture = i % 2 ? "counter_v1b" : "counter_v1c";
    const char *version = i % 2 ? "1.1" : "1.2";
    assert_int_equal(harness_install(h, fixture, "counter.so",
                                     HARNESS_RENAME, NULL),
                     0);
    /* Every reload is one more load on the same state. */
    snprintf(want, sizeof(want),
             "counter log: load reload version %s loads=%d", version, i + 1);
    assert_true(harness_wait(h, want, NULL, 0) >= 0);
    snprintf(want, sizeof(want),
             "counter reloaded: version %s, state v1 (16 bytes), generation "
             "%d,",
             version, i + 1);
    assert_true(harness_wait(h, want, NULL, 0) >= 0);
    if (i == SOAK_EARLY)
      early = measure(h);
  }
  late = measure(h);
  print_message("%d reloads in %.1f s; after reload %d / %d: fds %d / %d, "
                "maps %d / %d, cache files %d / %d\n",
                SOAK_RELOADS, seconds() - t0, SOAK_EARLY, SOAK_RELOADS,
                early.fds, late.fds, early.maps, late.maps, early.cache,
                late.cache);

  assert_int_equal(late.fds, early.fds);
  assert_int_equal(late.cache, early.cache);
  assert_int_equal(late.cache, 1); /* the live copy only */
  assert_true(late.maps <= early.maps + SOAK_MAPS_SLACK);

  assert_int_equal(harness_count(h, 0, -1, "counter reloaded:"),
                   SOAK_RELOADS);
  assert_int_equal(harness_count(h, 0, -1, "counter rejected:"), 0);
  assert_int_equal(harness_count(h, 0, -1, " warn  "), 0);
  assert_int_equal(harness_stop(h), 0);
  snprintf(want, sizeof(want), "counter log: unload shutdown version 1.2 "
                               "loads=%d",
           SOAK_RELOADS + 1);
  assert_true(harness_wait(h, want, NULL, 0) >= 0);
  assert_true(harness_wait(h, "hotswap stopped: clean exit", NULL, 0) >= 0);
  assert_int_equal(harness_cache_dirs(h), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_host_soak_reloads_leak_nothing,
                                      harness_setup, harness_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
