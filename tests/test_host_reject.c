/*
 * test_host_reject.c - the real host refuses every broken version with the
 * stage and the detail that explain it, while the version already running
 * keeps running on its state; a plugin broken from the start is listed as
 * rejected until a good file arrives.
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

/* One broken version and what its rejection must say. */
typedef struct bad_case {
  const char *fixture;  /* NULL: the content is made by the test */
  const char *stage;
  const char *code;
  const char *detail;   /* in the rejection's message */
  const char *sandbox;  /* a line the plugin logs from the validator, or
                           NULL */
} bad_case;

static const bad_case bad_cases[] = {
    {"bad_unresolved", "open", "HS_EDLOPEN",
     "undefined symbol: fx_function_nobody_defines", NULL},
    {"bad_noentry", "entry", "HS_ENOENTRY",
     "counter.so does not export hotswap_plugin_entry", NULL},
    {"bad_abi", "abi", "HS_EABI",
     "counter.so was built for plugin ABI 99; this host speaks ABI 3", NULL},
    {"bad_size", "abi", "HS_EDESC",
     "descriptor of counter.so is 16 bytes; ABI 3 needs at least", NULL},
    {"bad_null", "entry", "HS_EDESC",
     "hotswap_plugin_entry of counter.so returned NULL", NULL},
    {"bad_noload", "abi", "HS_EDESC",
     "descriptor of counter.so has no load callback", NULL},
    {"bad_crash_load", "load", "HS_ECRASH",
     "counter.so crashed with SIGSEGV", NULL},
    {"bad_fpe_load", "load", "HS_ECRASH", "counter.so crashed with SIGFPE",
     NULL},
    {"bad_abort_selftest", "selftest", "HS_ECRASH",
     "counter.so crashed with SIGABRT", NULL},
    {"bad_hang_selftest", "selftest", "HS_ETIMEDOUT",
     "counter.so timed out after 1500 ms in stage selftest", NULL},
    {"bad_fail_load", "load", "HS_EINVAL",
     "load() of counter.so returned HS_EINVAL", "refusing to load"},
    {"bad_fail_selftest", "selftest", "HS_ESELFTEST",
     "selftest() of counter.so returned HS_ESELFTEST",
     "selftest: 2 + 2 is not 5"},
    {"bad_fail_migrate", "migrate", "HS_EMIGRATE",
     "migrate() of counter.so from state v1 to v2 returned HS_ERANGE",
     "cannot migrate from v1"},
};

/* ---- helpers ----------------------------------------------------------- */

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

/* What is live, as the test tracks it. */
typedef struct live {
  const char *version;
  int loads;      /* the plugin's own count of live loads */
  int generation;
  int next_good;  /* which good version goes in next: 0 v1b, 1 v1c */
} live;

/*
 * Installs content that must be rejected (a fixture, or made by install)
 * over the live version and checks the rejection line, that the live
 * version never stopped, and the status.
 */
static void expect_rejected(harness *h, const live *lv, const bad_case *c,
                            int (*install)(harness *h)) {
  char want[512], line[2048], json[65536], msg[1024];

  print_message("rejecting %s\n", c->fixture ? c->fixture : c->detail);
  long from = h->offset;
  if (install != NULL)
    assert_int_equal(install(h), 0);
  else
    assert_int_equal(harness_install(h, c->fixture, "counter.so",
                                     HARNESS_RENAME, NULL),
                     0);
  snprintf(want, sizeof(want), "counter rejected: counter.so: stage %s: ",
           c->stage);
  long at = harness_wait(h, want, line, sizeof(line));
  assert_true(at >= 0);
  assert_true(harness_contains(line, c->detail));
  snprintf(want, sizeof(want), "(%s); version %s keeps running", c->code,
           lv->version);
  assert_true(harness_contains(line, want));
  if (c->sandbox != NULL) {
    snprintf(want, sizeof(want), "counter sandbox: %s", c->sandbox);
    assert_int_equal(harness_count(h, from, at, want), 1);
  }
  /* The live version was never asked to stop, nor loaded again. */
  assert_int_equal(harness_count(h, from, at, "counter log: "), 0);

  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  expect_json(json, "counter", "status", "live");
  expect_json(json, "counter", "version", lv->version);
  expect_json_num(json, "counter", "state_version", 1);
  expect_json_num(json, "counter", "generation", lv->generation);
  expect_json(json, "counter", "last_error.code", c->code);
  expect_json(json, "counter", "last_error.stage", c->stage);
  assert_int_equal(harness_json_get(json, "counter", "last_error.message",
                                    msg, sizeof(msg)),
                   0);
  assert_true(harness_contains(msg, c->detail));
}

/* The next good version (v1b and v1c alternate, so that it always differs
 * from the live one) reloads and continues the live state's count. */
static void expect_good_reload(harness *h, live *lv) {
  const char *fixture = lv->next_good ? "counter_v1c" : "counter_v1b";
  const char *version = lv->next_good ? "1.2" : "1.1";
  char want[256], json[65536];

  assert_int_equal(harness_install(h, fixture, "counter.so", HARNESS_RENAME,
                                   NULL),
                   0);
  snprintf(want, sizeof(want), "counter log: unload reload version %s loads=%d",
           lv->version, lv->loads);
  harness_expect_line(h, want);
  snprintf(want, sizeof(want), "counter log: load reload version %s loads=%d",
           version, lv->loads + 1);
  harness_expect_line(h, want);
  snprintf(want, sizeof(want),
           "counter reloaded: version %s, state v1 (16 bytes), generation %d",
           version, lv->generation + 1);
  harness_expect_line(h, want);
  lv->version = version;
  lv->loads++;
  lv->generation++;
  lv->next_good = !lv->next_good;
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  expect_json(json, "counter", "version", version);
  expect_json(json, "counter", "last_error", "null");
}

static void stop_clean(harness *h) {
  assert_int_equal(harness_stop(h), 0);
  harness_expect_line(h, "hotswap stopped: clean exit");
}

/* The first half of counter_v1b's bytes. */
static int install_truncated(harness *h) {
  long size = harness_fixture_size("counter_v1b");
  if (size <= 0)
    return -1;
  return harness_install_head(h, "counter_v1b", (size_t)size / 2,
                              "counter.so", HARNESS_RENAME);
}

/* A text file under a plugin's name. Renamed into place: written in
 * place, a slow write could show the host an empty file first, which would
 * be a second (correct, but uncounted) rejection. */
static int install_text(harness *h) {
  return harness_install_text(h, "this is not a plugin\n", "counter.so",
                              HARNESS_RENAME);
}

/* ---- tests ------------------------------------------------------------- */

/* bad_hang_selftest is killed after this long. */
static const char *const short_timeout[] = {"--sandbox-timeout", "1500",
                                            NULL};

static void test_host_rejects_broken_versions_and_keeps_running(void **state) {
  harness *h = *state;
  live lv = {"1.0", 1, 1, 0};
  char detail[128];

  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(harness_start(h, short_timeout), 0);
  harness_expect_line(h, "counter log: load start version 1.0 loads=1");
  harness_expect_line(h, "counter loaded: version 1.0, state v1 (16 bytes), "
                 "generation 1");

  for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
    expect_rejected(h, &lv, &bad_cases[i], NULL);
    expect_good_reload(h, &lv);
  }

  snprintf(detail, sizeof(detail), "counter.so is truncated: it has %ld bytes",
           harness_fixture_size("counter_v1b") / 2);
  const bad_case truncated = {NULL, "elf", "HS_ETRUNCATED", detail, NULL};
  expect_rejected(h, &lv, &truncated, install_truncated);
  expect_good_reload(h, &lv);

  const bad_case text = {NULL, "elf", "HS_ENOTELF",
                         "counter.so is not an ELF file", NULL};
  expect_rejected(h, &lv, &text, install_text);
  expect_good_reload(h, &lv);

  /* Every rejection left the one live version running: its count went up
   * by exactly one per good version, and it was loaded only that often. */
  assert_int_equal(lv.loads, 1 + 15);
  assert_int_equal(harness_count(h, 0, -1, "counter rejected:"), 15);
  assert_int_equal(harness_count(h, 0, -1, "counter log: load "), 16);
  assert_int_equal(harness_count(h, 0, -1, "rollback"), 0);
  stop_clean(h);
}

static void test_host_rejected_first_load_then_good_loads(void **state) {
  harness *h = *state;
  char json[65536], line[2048];

  assert_int_equal(harness_start(h, NULL), 0);
  assert_int_equal(harness_install(h, "bad_crash_load", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  assert_true(harness_wait(h, "counter rejected: counter.so: stage load: ",
                           line, sizeof(line)) >= 0);
  assert_true(harness_contains(line, "counter.so crashed with SIGSEGV"));
  assert_true(harness_contains(line, "(HS_ECRASH); the plugin is not "
                                     "running"));
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  expect_json(json, "counter", "status", "rejected");
  expect_json(json, "counter", "version", "null");
  expect_json_num(json, "counter", "generation", 0);
  expect_json(json, "counter", "loaded_at", "null");
  expect_json(json, "counter", "last_error.code", "HS_ECRASH");
  expect_json(json, "counter", "last_error.stage", "load");
  assert_int_equal(harness_wait_cache_files(h, 0), 0);

  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter log: load start version 1.0 loads=1");
  harness_expect_line(h, "counter loaded: version 1.0, state v1 (16 bytes), "
                 "generation 1");
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  expect_json(json, "counter", "status", "live");
  expect_json(json, "counter", "version", "1.0");
  expect_json(json, "counter", "last_error", "null");
  stop_clean(h);
}

static void test_host_rejected_content_waits_for_new_content(void **state) {
  harness *h = *state;
  const char *const args[] = {"--log-level", "debug", NULL};
  const char *const reload[] = {"reload", "counter", "--control", h->control,
                                NULL};
  char out[1024], err[1024];

  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(harness_start(h, args), 0);
  harness_expect_line(h, "counter loaded: version 1.0");
  long from = h->offset;
  assert_int_equal(harness_install(h, "bad_abi", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter rejected: counter.so: stage abi: ");
  /* The same rejected bytes again: not validated again. */
  assert_int_equal(harness_install(h, "bad_abi", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter unchanged: counter.so: same content as before");
  assert_int_equal(harness_count(h, from, -1, "counter rejected:"), 1);
  /* Unless asked to: a forced reload tries it, and reports the outcome. */
  assert_int_equal(harness_run(h, reload, out, sizeof(out), err, sizeof(err)),
                   1);
  assert_true(harness_contains(err, "counter: rejected in stage abi: "
                                    "counter.so was built for plugin ABI 99"));
  assert_true(harness_contains(err, "(HS_EABI)"));
  harness_expect_line(h, "counter rejected: counter.so: stage abi: ");
  assert_int_equal(harness_count(h, from, -1, "counter rejected:"), 2);
  assert_int_equal(harness_count(h, from, -1, "counter log: "), 0);
  stop_clean(h);
}

static void test_host_rejected_non_elf_file_touched_stays_quiet(void **state) {
  harness *h = *state;
  const char *const args[] = {"--log-level", "debug", NULL};

  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(harness_start(h, args), 0);
  harness_expect_line(h, "counter loaded: version 1.0");
  long from = h->offset;
  assert_int_equal(install_text(h), 0);
  harness_expect_line(h, "counter rejected: counter.so: stage elf: counter.so is not "
                 "an ELF file");
  /* Touched, not changed: like any rejected content (and like a touched
   * live file), it is seen to be the same and not rejected again. */
  assert_int_equal(harness_touch(h, "counter.so", NULL), 0);
  harness_expect_line(h, "counter unchanged: counter.so: same content as before");
  assert_int_equal(harness_count(h, from, -1, "counter rejected:"), 1);
  stop_clean(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_host_rejects_broken_versions_and_keeps_running, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_rejected_first_load_then_good_loads, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_rejected_content_waits_for_new_content, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_rejected_non_elf_file_touched_stays_quiet, harness_setup,
          harness_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
