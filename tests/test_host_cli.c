/*
 * test_host_cli.c - the real binary's command line: --version, --help, bad
 * arguments, a missing plugin directory, a client with no host, a second
 * host on a busy control socket, and the JSON log.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "hotswap.h"

static void test_host_cli_version(void **state) {
  harness *h = *state;
  const char *const argv[] = {"--version", NULL};
  char out[1024], err[1024], want[128];

  assert_int_equal(harness_run(h, argv, out, sizeof(out), err, sizeof(err)),
                   0);
  snprintf(want, sizeof(want), "hotswap %s (plugin ABI %d)\n",
           HS_VERSION_STRING, HS_ABI_VERSION);
  assert_string_equal(out, want);
  assert_string_equal(err, "");
}

static void test_host_cli_help_lists_options(void **state) {
  harness *h = *state;
  const char *const argv[] = {"--help", NULL};
  static const char *const options[] = {
      "--control PATH",       "--cache-dir DIR",      "--allow-state-reset",
      "--log-format FORMAT",  "--log-level LEVEL",    "--settle MS",
      "--sandbox-timeout MS", "--sandbox-cpu S",      "--sandbox-mem MB",
      "--json",               "--version",            "--help",
      "status",               "reload NAME",
  };
  char out[16384], err[1024];

  assert_int_equal(harness_run(h, argv, out, sizeof(out), err, sizeof(err)),
                   0);
  assert_true(harness_contains(out, "Usage: hotswap [OPTIONS] PLUGIN_DIR"));
  for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++)
    assert_true(harness_contains(out, options[i]));
  assert_string_equal(err, "");
}

static void test_host_cli_bad_option_exits_2(void **state) {
  harness *h = *state;
  const char *const bogus[] = {"--bogus", h->plugins, NULL};
  const char *const settle[] = {"--settle", "soon", h->plugins, NULL};
  const char *const none[] = {NULL};
  char out[1024], err[1024];

  assert_int_equal(harness_run(h, bogus, out, sizeof(out), err, sizeof(err)),
                   2);
  assert_true(harness_contains(err, "hotswap: unknown option '--bogus'"));
  assert_true(harness_contains(err, "Try 'hotswap --help'."));
  assert_string_equal(out, "");

  assert_int_equal(harness_run(h, settle, out, sizeof(out), err, sizeof(err)),
                   2);
  assert_true(harness_contains(err, "--settle: 'soon' is not a number"));

  assert_int_equal(harness_run(h, none, out, sizeof(out), err, sizeof(err)),
                   2);
  assert_true(harness_contains(err, "missing PLUGIN_DIR"));
}

static void test_host_cli_missing_plugin_dir_names_it(void **state) {
  harness *h = *state;
  char missing[PATH_MAX + 16], out[1024], err[2048];
  snprintf(missing, sizeof(missing), "%s/no-such-dir", h->root);
  const char *const argv[] = {"--control", h->control, "--cache-dir",
                              h->cache, missing, NULL};

  assert_int_equal(harness_run(h, argv, out, sizeof(out), err, sizeof(err)),
                   1);
  assert_true(harness_contains(err, missing));
  assert_true(harness_contains(err, "No such file or directory"));
  /* It failed before creating anything. */
  assert_int_equal(harness_cache_dirs(h), 0);
}

static void test_host_cli_status_without_host_fails(void **state) {
  harness *h = *state;
  const char *const argv[] = {"status", "--json", "--control", h->control,
                              NULL};
  char out[1024], err[2048], want[PATH_MAX + 64];

  assert_int_equal(harness_run(h, argv, out, sizeof(out), err, sizeof(err)),
                   1);
  snprintf(want, sizeof(want), "no hotswap host is listening on %s",
           h->control);
  assert_true(harness_contains(err, want));
  assert_string_equal(out, "");
}

static void test_host_cli_second_host_on_same_control_fails(void **state) {
  harness *h = *state;
  const char *const argv[] = {"--control", h->control, "--cache-dir",
                              h->cache, h->plugins, NULL};
  char out[1024], err[4096], want[PATH_MAX + 128];
  struct stat st;
  long pid;

  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(harness_start(h, NULL), 0);
  harness_expect_line(h, "counter loaded: version 1.0");

  assert_int_equal(harness_run(h, argv, out, sizeof(out), err, sizeof(err)),
                   1);
  snprintf(want, sizeof(want),
           "control socket %s is in use by another hotswap (pid %d)",
           h->control, (int)h->pid);
  assert_true(harness_contains(err, want));
  /* It gave up before loading anything, and left no cache behind. */
  assert_true(harness_lacks(err, "loaded"));
  assert_int_equal(harness_cache_dirs(h), 1);

  /* The first host still owns its socket and runs on. */
  assert_int_equal(stat(h->control, &st), 0);
  assert_int_equal(harness_status_long(h, NULL, "pid", &pid), 0);
  assert_int_equal(pid, h->pid);
  assert_int_equal(harness_install(h, "counter_v1b", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter reloaded: version 1.1");
  assert_int_equal(harness_stop(h), 0);
  harness_expect_line(h, "hotswap stopped: clean exit");
}

static void test_host_cli_stale_control_socket_is_replaced(void **state) {
  harness *h = *state;
  struct stat st;
  long pid;

  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(harness_start(h, NULL), 0);
  harness_expect_line(h, "counter loaded: version 1.0");
  pid_t first = h->pid;
  /* A crash leaves the socket behind; nobody answers on it. */
  assert_int_equal(harness_kill(h), 0);
  assert_int_equal(stat(h->control, &st), 0);
  assert_true(S_ISSOCK(st.st_mode));

  assert_int_equal(harness_start(h, NULL), 0);
  harness_expect_line(h, "counter loaded: version 1.0");
  assert_true(h->pid != first);
  assert_int_equal(harness_status_long(h, NULL, "pid", &pid), 0);
  assert_int_equal(pid, h->pid);
  assert_int_equal(harness_stop(h), 0);
  harness_expect_line(h, "hotswap stopped: clean exit");
  /* Only the killed host's cache is left. */
  assert_int_equal(harness_cache_dirs(h), 1);
}

static void test_host_cli_json_log(void **state) {
  harness *h = *state;
  const char *const args[] = {"--log-format", "json", NULL};
  char line[2048];

  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(harness_start(h, args), 0);
  assert_true(harness_wait(h, "\"event\":\"loaded\"", line, sizeof(line)) >=
              0);
  assert_int_equal(line[0], '{');
  assert_int_equal(line[strlen(line) - 1], '}');
  assert_true(harness_contains(line, "\"level\":\"info\""));
  assert_true(harness_contains(line, "\"plugin\":\"counter\""));
  assert_true(harness_contains(line, "\"msg\":\"version 1.0, state v1 (16 "
                                     "bytes), generation 1"));
  assert_int_equal(harness_stop(h), 0);
  assert_true(harness_wait(h, "\"event\":\"stopped\"", line, sizeof(line)) >=
              0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_host_cli_version, harness_setup,
                                      harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_cli_help_lists_options,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_cli_bad_option_exits_2,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_cli_missing_plugin_dir_names_it, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_cli_status_without_host_fails,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_cli_second_host_on_same_control_fails, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_cli_stale_control_socket_is_replaced, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_cli_json_log, harness_setup,
                                      harness_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
