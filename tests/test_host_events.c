/*
 * test_host_events.c - the ABI 2 event services through the real host:
 * fds and timers registered by one version deliver their events to the
 * next, NAME.conf reaches config_get and on_config, a removed plugin's fds
 * are closed by the host, and ABI 1 and ABI 2 plugins still load.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

/* Counts occurrences of needle in s. */
static int count(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

static void test_host_events_survive_reload(void **state) {
  harness *h = *state;
  char json[16384];

  assert_int_equal(harness_install_text(h, "greeting = hi\n", "ev.conf",
                                        HARNESS_WRITE_NEW),
                   0);
  assert_int_equal(harness_install(h, "ev_1", "ev.so", HARNESS_WRITE_NEW,
                                   NULL),
                   0);
  assert_int_equal(harness_start(h, NULL), 0);
  /* load() read the config, in the sandbox and live. */
  harness_expect_line(h, "ev sandbox: load e1 reason 1 greeting=hi");
  harness_expect_line(h, "ev log: load e1 reason 1 greeting=hi");
  harness_expect_line(h, "ev log: io e1 fd-token 42 total 1");
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  assert_int_equal(count(json, "\"fd\":"), 2);
  assert_true(harness_contains(json, "\"repeat_ms\":20,\"token\":7"));
  /* The two ends of its socketpair, as the host holds them. */
  char sock[2][64];
  const char *at = json;
  for (int i = 0; i < 2; i++) {
    at = strstr(at, "\"fd\":") + 5;
    assert_int_equal(harness_fd_target(h->pid, atoi(at), sock[i],
                                       sizeof(sock[i])),
                     0);
    assert_true(strncmp(sock[i], "socket:[", 8) == 0);
  }

  /* The new version gets the events of the socket and timer the old one
   * made, and the count in the state goes on. */
  assert_int_equal(harness_install(h, "ev_2", "ev.so", HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "ev reloaded: version e2");
  harness_expect_line(h, "ev log: io e2 fd-token 42 total");
  assert_true(harness_count(h, 0, -1, "ev log: io e2 fd-token 42 total 1\n") ==
              0);
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  assert_int_equal(count(json, "\"fd\":"), 2);

  /* A changed ev.conf is told to on_config, with no reload. */
  assert_int_equal(harness_install_text(h, "greeting = hello\n", "ev.conf",
                                        HARNESS_RENAME),
                   0);
  harness_expect_line(h, "ev log: config e2 greeting=hello");
  harness_expect_status_num(h, "ev", "generation", 2);

  /* Removed: the host closes the two fds of the socketpair (by the time
   * it answers a status request, it has). */
  assert_int_equal(harness_holds(h->pid, sock[0]), 1);
  assert_int_equal(harness_holds(h->pid, sock[1]), 1);
  assert_int_equal(harness_remove(h, "ev.so"), 0);
  harness_expect_line(h, "ev unloaded: ev.so was removed");
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  assert_int_equal(harness_holds(h->pid, sock[0]), 0);
  assert_int_equal(harness_holds(h->pid, sock[1]), 0);
  assert_int_equal(harness_stop(h), 0);
}

/* A plugin built against ABI 1 (a smaller descriptor, no event members)
 * loads and runs in this host. */
static void test_host_events_abi1_plugin_loads(void **state) {
  harness *h = *state;

  assert_int_equal(harness_install(h, "ev_abi1", "old.so", HARNESS_WRITE_NEW,
                                   NULL),
                   0);
  assert_int_equal(harness_start(h, NULL), 0);
  harness_expect_line(h, "old log: load old reason 1");
  harness_expect_line(h, "old loaded: version old");
  harness_expect_status(h, "old", "status", "live");
  assert_int_equal(harness_stop(h), 0);
}

/* A plugin built against ABI 2 (before fd_keep and fd_take) loads, and
 * its event services work. */
static void test_host_events_abi2_plugin_loads(void **state) {
  harness *h = *state;

  assert_int_equal(harness_install(h, "ev_abi2", "mid.so", HARNESS_WRITE_NEW,
                                   NULL),
                   0);
  assert_int_equal(harness_start(h, NULL), 0);
  harness_expect_line(h, "mid loaded: version abi2");
  harness_expect_line(h, "mid log: io abi2 fd-token 42 total ");
  harness_expect_status(h, "mid", "status", "live");
  assert_int_equal(harness_stop(h), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_host_events_survive_reload,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_events_abi1_plugin_loads,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_events_abi2_plugin_loads,
                                      harness_setup, harness_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
