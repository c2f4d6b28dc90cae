/*
 * test_host_crash.c - crash containment in the real host: versions that
 * pass the sandbox and then crash live, with each signal (SIGSEGV, SIGBUS,
 * SIGFPE, SIGILL, SIGABRT) in each callback (tick, on_io, on_timer, a live
 * load, migrate, unload, on_config). Within the grace period the host rolls
 * back to the previous version on the exact state bytes saved before the
 * swap; later it quarantines the plugin until its file changes; a crash
 * loop holds it until the content changes; a hang is reported and then
 * interrupted; other plugins keep running; and a fatal signal that is not
 * a plugin's still kills the host with that signal.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

#define NSIGS 5
static const char *const sigs[NSIGS] = {"segv", "bus", "fpe", "ill", "abrt"};

/* What the log says of fixture crash_<cb>_<sig>'s fault, up to where it
 * is: the plugin's image for a fault of its own code, libc for abort(). */
static void fault_of(const char *sig, char *out, size_t size) {
  if (strcmp(sig, "segv") == 0)
    snprintf(out, size, "SIGSEGV (bad access to address 0x10) at segv.so+0x");
  else if (strcmp(sig, "bus") == 0)
    snprintf(out, size, "SIGBUS (bus error at address 0x");
  else if (strcmp(sig, "fpe") == 0)
    snprintf(out, size, "SIGFPE (integer divide by zero) at fpe.so+0x");
  else if (strcmp(sig, "ill") == 0)
    snprintf(out, size, "SIGILL (illegal instruction) at ill.so+0x");
  else
    snprintf(out, size, "SIGABRT (abort) at ");
}

static const char *signal_name(const char *sig) {
  static const char *const names[NSIGS] = {"SIGSEGV", "SIGBUS", "SIGFPE",
                                           "SIGILL", "SIGABRT"};
  for (int i = 0; i < NSIGS; i++)
    if (strcmp(sig, sigs[i]) == 0)
      return names[i];
  return "?";
}

/* Waits for every needle from h->offset on, in any order; leaves the
 * offset past the last of them. */
static void expect_any_order(harness *h, char needles[][512], int n) {
  long from = h->offset, end = from;
  for (int i = 0; i < n; i++) {
    h->offset = from;
    harness_expect_line(h, needles[i]);
    if (h->offset > end)
      end = h->offset;
  }
  h->offset = end;
}

/* Puts crash_v1 in the directory as each of the five signals' plugins (and
 * the working counter beside them), starts the host with args and waits
 * until all are loaded. */
static void start_five(harness *h, const char *const *args) {
  char want[NSIGS + 1][512], name[64];
  for (int i = 0; i < NSIGS; i++) {
    snprintf(name, sizeof(name), "%s.so", sigs[i]);
    assert_int_equal(
        harness_install(h, "crash_v1", name, HARNESS_WRITE_NEW, NULL), 0);
    snprintf(want[i], sizeof(want[i]),
             "%s loaded: version 1.0, state v1 (48 bytes), generation 1",
             sigs[i]);
  }
  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  snprintf(want[NSIGS], sizeof(want[NSIGS]), "counter loaded: version 1.0");
  assert_int_equal(harness_env(h, "FX_TICK_MS=20"), 0);
  assert_int_equal(harness_start(h, args), 0);
  expect_any_order(h, want, NSIGS + 1);
}

/* Replaces each signal's plugin with crash_<cb>_<sig>. */
static void swap_in_crashers(harness *h, const char *cb) {
  char fixture[64], name[64];
  for (int i = 0; i < NSIGS; i++) {
    snprintf(fixture, sizeof(fixture), "crash_%s_%s", cb, sigs[i]);
    snprintf(name, sizeof(name), "%s.so", sigs[i]);
    assert_int_equal(harness_install(h, fixture, name, HARNESS_RENAME, NULL),
                     0);
  }
}

/* The counter beside the crashing plugins still ticks. */
static void expect_counter_ticks(harness *h) {
  long from = h->offset;
  harness_expect_line(h, "counter log: tick ");
  harness_expect_line(h, "counter log: tick ");
  h->offset = from;
}

static void expect_json(const char *json, const char *plugin,
                        const char *key, const char *want) {
  char got[1024];
  assert_int_equal(harness_json_get(json, plugin, key, got, sizeof(got)), 0);
  if (strcmp(got, want) != 0)
    fail_msg("%s.%s is \"%s\", wanted \"%s\"", plugin, key, got, want);
}

static void expect_json_num(const char *json, const char *plugin,
                            const char *key, long want) {
  long got = -1;
  assert_int_equal(harness_json_long(json, plugin, key, &got), 0);
  assert_int_equal(got, want);
}

/* Fills want with each plugin's "crashed: CALLBACK() of version
 * 2.0-CB-SIG: FAULT" line (cb: the fixture's variant, callback: the
 * callback's name). */
static void crashed_lines(char want[][512], const char *cb,
                          const char *callback) {
  char fault[128];
  for (int i = 0; i < NSIGS; i++) {
    fault_of(sigs[i], fault, sizeof(fault));
    snprintf(want[i], 512, "%s crashed: %s() of version 2.0-%s-%s: %s",
             sigs[i], callback, cb, sigs[i], fault);
  }
}

/*
 * A callback that runs outside the swap (tick, on_io, on_timer) crashes
 * with each signal right after the swap: each plugin rolls back to 1.0 on
 * its own, the others and the counter keep running.
 */
static void crash_in_callback_rolls_back(harness *h, const char *cb,
                                         const char *callback) {
  static const char *const args[] = {"--crash-grace", "600", NULL};
  char want[NSIGS][512], json[65536];

  start_five(h, args);
  swap_in_crashers(h, cb);
  crashed_lines(want, cb, callback);
  expect_any_order(h, want, NSIGS);
  for (int i = 0; i < NSIGS; i++)
    snprintf(want[i], sizeof(want[i]),
             "; rolled back to version 1.0 on the state saved before the "
             "swap; this content of %s.so is not tried again until the file "
             "changes",
             sigs[i]);
  h->offset = 0;
  expect_any_order(h, want, NSIGS);
  expect_counter_ticks(h);
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  for (int i = 0; i < NSIGS; i++) {
    char version[64];
    expect_json(json, sigs[i], "status", "live");
    expect_json(json, sigs[i], "version", "1.0");
    expect_json_num(json, sigs[i], "crashes", 1);
    expect_json(json, sigs[i], "last_crash.callback", callback);
    expect_json(json, sigs[i], "last_crash.signal", signal_name(sigs[i]));
    expect_json(json, sigs[i], "last_crash.action", "rollback");
    snprintf(version, sizeof(version), "2.0-%s-%s", cb, sigs[i]);
    expect_json(json, sigs[i], "last_crash.version", version);
    expect_json(json, sigs[i], "last_error.code", "HS_ECRASH");
    expect_json(json, sigs[i], "last_error.stage", callback);
  }
  expect_json(json, "counter", "status", "live");
  expect_json_num(json, "counter", "crashes", 0);
  /* The fds the first version registered still deliver to 1.0. */
  long from = h->offset;
  harness_expect_line(h, "segv log: io 1.0 events ");
  h->offset = from;
  assert_int_equal(harness_stop(h), 0);
  harness_expect_line(h, "hotswap stopped: clean exit");
}

static void test_host_crash_in_tick(void **state) {
  crash_in_callback_rolls_back(*state, "tick", "tick");
}

static void test_host_crash_in_fd_event(void **state) {
  crash_in_callback_rolls_back(*state, "io", "on_io");
}

static void test_host_crash_in_timer(void **state) {
  crash_in_callback_rolls_back(*state, "timer", "on_timer");
}

/* load() of the new version crashes in the live swap (it passed the
 * sandbox): the swap is undone, the old version keeps running. */
static void test_host_crash_in_load_after_swap(void **state) {
  harness *h = *state;
  char want[NSIGS][512], fault[128], json[65536];

  start_five(h, NULL);
  swap_in_crashers(h, "load");
  crashed_lines(want, "load", "load");
  expect_any_order(h, want, NSIGS);
  for (int i = 0; i < NSIGS; i++) {
    fault_of(sigs[i], fault, sizeof(fault));
    snprintf(want[i], sizeof(want[i]),
             "%s rejected: %s.so: stage load: load() of the new %s.so "
             "crashed: %s",
             sigs[i], sigs[i], sigs[i], fault);
  }
  h->offset = 0;
  expect_any_order(h, want, NSIGS);
  for (int i = 0; i < NSIGS; i++)
    snprintf(want[i], sizeof(want[i]),
             "%s log: load rollback version 1.0 got ", sigs[i]);
  h->offset = 0;
  expect_any_order(h, want, NSIGS);
  assert_int_equal(harness_count(h, 0, -1, "the reload is undone: version "
                                           "1.0 keeps running"),
                   NSIGS);
  expect_counter_ticks(h);
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  for (int i = 0; i < NSIGS; i++) {
    expect_json(json, sigs[i], "status", "live");
    expect_json(json, sigs[i], "version", "1.0");
    expect_json(json, sigs[i], "last_error.code", "HS_ECRASH");
    expect_json(json, sigs[i], "last_error.stage", "load");
    expect_json(json, sigs[i], "last_crash.callback", "load");
    expect_json(json, sigs[i], "last_crash.action", "swap-failed");
  }
  assert_int_equal(harness_stop(h), 0);
}

/* migrate() crashes in the live swap: the swap is undone. */
static void test_host_crash_in_migrate(void **state) {
  harness *h = *state;
  char want[NSIGS][512], fault[128], json[65536];

  start_five(h, NULL);
  swap_in_crashers(h, "migrate");
  crashed_lines(want, "migrate", "migrate");
  expect_any_order(h, want, NSIGS);
  for (int i = 0; i < NSIGS; i++) {
    fault_of(sigs[i], fault, sizeof(fault));
    snprintf(want[i], sizeof(want[i]),
             "%s rejected: %s.so: stage migrate: migrate() of %s.so from "
             "state v1 to v2 crashed: %s",
             sigs[i], sigs[i], sigs[i], fault);
  }
  h->offset = 0;
  expect_any_order(h, want, NSIGS);
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  for (int i = 0; i < NSIGS; i++) {
    expect_json(json, sigs[i], "status", "live");
    expect_json(json, sigs[i], "version", "1.0");
    expect_json_num(json, sigs[i], "state_version", 1);
    expect_json(json, sigs[i], "last_error.stage", "migrate");
    expect_json(json, sigs[i], "last_crash.callback", "migrate");
  }
  assert_int_equal(harness_stop(h), 0);
}

/* unload() of the old version crashes during a reload: the reload goes
 * on; at removal, the plugin is unloaded all the same. */
static void test_host_crash_in_unload(void **state) {
  harness *h = *state;
  char want[NSIGS][512], fault[128], name[64], line[2048], json[65536];

  start_five(h, NULL);
  swap_in_crashers(h, "unload");
  for (int i = 0; i < NSIGS; i++)
    snprintf(want[i], sizeof(want[i]), "%s reloaded: version 2.0-unload-%s",
             sigs[i], sigs[i]);
  expect_any_order(h, want, NSIGS);
  for (int i = 0; i < NSIGS; i++) {
    snprintf(name, sizeof(name), "%s.so", sigs[i]);
    assert_int_equal(harness_install(h, "crash_v1b", name, HARNESS_RENAME,
                                     NULL),
                     0);
  }
  crashed_lines(want, "unload", "unload");
  long from = h->offset;
  expect_any_order(h, want, NSIGS);
  for (int i = 0; i < NSIGS; i++)
    snprintf(want[i], sizeof(want[i]), "%s reloaded: version 1.1", sigs[i]);
  h->offset = from;
  expect_any_order(h, want, NSIGS);
  assert_int_equal(harness_count(h, from, -1,
                                 "; the reload goes on: the new version "
                                 "gets the state as unload() left it"),
                   NSIGS);
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  for (int i = 0; i < NSIGS; i++) {
    expect_json(json, sigs[i], "status", "live");
    expect_json(json, sigs[i], "version", "1.1");
    expect_json(json, sigs[i], "last_crash.callback", "unload");
    expect_json(json, sigs[i], "last_crash.action", "continued");
  }
  /* Removed while a version whose unload() crashes is live. */
  assert_int_equal(harness_install(h, "crash_unload_segv", "segv.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "segv reloaded: version 2.0-unload-segv");
  assert_int_equal(harness_remove(h, "segv.so"), 0);
  fault_of("segv", fault, sizeof(fault));
  snprintf(want[0], sizeof(want[0]),
           "segv crashed: unload() of version 2.0-unload-segv: %s", fault);
  assert_true(harness_wait(h, want[0], line, sizeof(line)) >= 0);
  assert_true(harness_contains(line, "; it is unloaded all the same"));
  harness_expect_line(h, "segv unloaded: segv.so was removed");
  assert_int_equal(harness_stop(h), 0);
  harness_expect_line(h, "hotswap stopped: clean exit");
}

/* Returns the hex state in the line after marker, in out. */
static void state_after(const char *line, const char *marker, char *out,
                        size_t size) {
  const char *p = strstr(line, marker);
  assert_non_null(p);
  snprintf(out, size, "%s", p + strlen(marker));
}

/* The rolled-back version gets exactly the bytes its unload() left before
 * the swap: not the crashed version's scribbles, not its counts. */
static void test_host_crash_rollback_restores_exact_state(void **state) {
  harness *h = *state;
  static const char *const args[] = {"--crash-grace", "600", NULL};
  char line[2048], left[256], got[256];

  assert_int_equal(harness_install(h, "crash_v1", "solo.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(harness_start(h, args), 0);
  harness_expect_line(h, "solo loaded: version 1.0");
  harness_expect_line(h, "solo log: tick 11 version 1.0");
  assert_int_equal(harness_install(h, "crash_io_segv", "solo.so",
                                   HARNESS_RENAME, NULL),
                   0);
  assert_true(harness_wait(h, "solo log: unload reload version 1.0 left ",
                           line, sizeof(line)) >= 0);
  state_after(line, " left ", left, sizeof(left));
  assert_int_equal(strlen(left), 96);
  harness_expect_line(h, "solo log: crashing in on_io with SIGSEGV");
  assert_true(harness_wait(h, "solo log: load rollback version 1.0 got ",
                           line, sizeof(line)) >= 0);
  state_after(line, " got ", got, sizeof(got));
  assert_string_equal(got, left);
  assert_true(harness_lacks(got, "abababababababab"));
  harness_expect_line(h, "solo crashed: on_io() of version 2.0-io-segv: ");
  /* The bad content is not tried again, also when it is written again. */
  assert_int_equal(harness_install(h, "crash_io_segv", "solo.so",
                                   HARNESS_RENAME, NULL),
                   0);
  assert_int_equal(harness_install(h, "crash_v1b", "solo.so", HARNESS_RENAME,
                                   NULL),
                   0);
  harness_expect_line(h, "solo reloaded: version 1.1");
  assert_int_equal(harness_count(h, 0, -1, "solo sandbox: load reload "
                                           "version 2.0-io-segv"),
                   1);
  harness_expect_status_num(h, "solo", "crashes", 1);
  assert_int_equal(harness_stop(h), 0);
}

/* Outside the grace period a crash quarantines the plugin: not running,
 * its state and fds kept; the fixed version then loads on that state. */
static void test_host_crash_quarantine_then_fix(void **state) {
  harness *h = *state;
  static const char *const args[] = {"--crash-grace", "0", NULL};
  char line[2048], json[65536];

  assert_int_equal(harness_install(h, "crash_v1", "q.so", HARNESS_WRITE_NEW,
                                   NULL),
                   0);
  assert_int_equal(harness_start(h, args), 0);
  harness_expect_line(h, "q loaded: version 1.0");
  assert_int_equal(harness_install(h, "crash_timer_abrt", "q.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "q reloaded: version 2.0-timer-abrt");
  assert_true(harness_wait(h, "q crashed: on_timer() of version "
                              "2.0-timer-abrt: SIGABRT (abort) at ",
                           line, sizeof(line)) >= 0);
  assert_true(harness_contains(line, "; quarantined: the plugin is not "
                                     "running, its state, fds and timers "
                                     "are kept until q.so changes"));
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  expect_json(json, "q", "status", "quarantined");
  expect_json(json, "q", "last_crash.action", "quarantine");
  expect_json(json, "q", "last_crash.signal", "SIGABRT");
  expect_json(json, "q", "last_error.code", "HS_ECRASH");
  expect_json(json, "q", "last_error.stage", "on_timer");
  assert_true(harness_contains(json, "\"fds\":[{\"fd\":"));
  assert_int_equal(harness_wait_cache_files(h, 0), 0);

  /* The fix: a reload on the state the crash left (its scribble too). */
  assert_int_equal(harness_install(h, "crash_v1b", "q.so", HARNESS_RENAME,
                                   NULL),
                   0);
  assert_true(harness_wait(h, "q log: load reload version 1.1 got ", line,
                           sizeof(line)) >= 0);
  assert_true(harness_contains(line, "abababababababab"));
  harness_expect_line(h, "q reloaded: version 1.1");
  harness_expect_line(h, "q log: io 1.1 events ");
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  expect_json(json, "q", "status", "live");
  expect_json(json, "q", "last_error", "null");
  expect_json_num(json, "q", "crashes", 1);
  assert_int_equal(harness_stop(h), 0);
}

/* After --crash-limit crashes the plugin waits for different content:
 * forced reloads of the same bytes are refused. */
static void test_host_crash_loop_is_bounded(void **state) {
  harness *h = *state;
  static const char *const args[] = {"--crash-grace", "0", "--crash-limit",
                                     "2", NULL};
  const char *reload[] = {"reload", "loop", "--control", h->control, NULL};
  char out[4096], err[4096], line[2048];

  assert_int_equal(harness_install(h, "crash_tick_ill", "loop.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(harness_start(h, args), 0);
  assert_true(harness_wait(h, "loop crashed: tick() of version 2.0-tick-ill: "
                              "SIGILL (illegal instruction) at loop.so+0x",
                           line, sizeof(line)) >= 0);
  assert_true(harness_contains(line, "; quarantined: the plugin is not "
                                     "running"));
  harness_expect_status(h, "loop", "status", "quarantined");
  /* A forced reload retries a plain quarantine. */
  assert_int_equal(harness_run(h, reload, out, sizeof(out), err, sizeof(err)),
                   0);
  assert_true(harness_contains(out, "loop: version 2.0-tick-ill live"));
  assert_true(harness_wait(h, "loop crashed: tick() of version 2.0-tick-ill: ",
                           line, sizeof(line)) >= 0);
  assert_true(harness_contains(line, "; quarantined after 2 crashes in 60 s: "
                                     "loop.so is not tried again until its "
                                     "content changes"));
  harness_expect_status(h, "loop", "last_crash.action", "crash-loop");
  /* Now the same bytes are refused, even forced. */
  assert_int_equal(harness_run(h, reload, out, sizeof(out), err, sizeof(err)),
                   1);
  assert_true(harness_contains(err, "loop: rejected in stage crash: loop "
                                    "crashed 2 times within 60 s; the same "
                                    "content is not tried again until "
                                    "loop.so changes (HS_ECRASH)"));
  harness_expect_status(h, "loop", "status", "quarantined");
  /* Different content is tried. */
  assert_int_equal(harness_install(h, "crash_v1", "loop.so", HARNESS_RENAME,
                                   NULL),
                   0);
  harness_expect_line(h, "loop reloaded: version 1.0");
  harness_expect_status(h, "loop", "status", "live");
  harness_expect_status_num(h, "loop", "crashes", 2);
  assert_int_equal(harness_stop(h), 0);
}

/* A callback that never returns is reported with plugin and callback,
 * then interrupted and treated as a crash. */
static void test_host_crash_hang_is_interrupted(void **state) {
  harness *h = *state;
  static const char *const args[] = {"--crash-grace", "600",
                                     "--callback-budget", "100", NULL};
  char json[65536], line[2048];

  assert_int_equal(harness_install(h, "crash_v1", "slow.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(harness_start(h, args), 0);
  harness_expect_line(h, "slow loaded: version 1.0");
  assert_int_equal(harness_install(h, "crash_hang_tick", "slow.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "slow log: crashing in tick with a hang");
  assert_true(harness_wait(h, "slow warning: tick() has been running for ",
                           line, sizeof(line)) >= 0);
  assert_true(harness_contains(line, "longer than the callback budget (100 "
                                     "ms); at 500 ms it is interrupted"));
  assert_true(harness_wait(h, "slow crashed: tick() of version 2.0-hang: a "
                              "hang: interrupted after ",
                           line, sizeof(line)) >= 0);
  assert_true(harness_contains(line, "; rolled back to version 1.0 on the "
                                     "state saved before the swap"));
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  expect_json(json, "slow", "status", "live");
  expect_json(json, "slow", "version", "1.0");
  expect_json(json, "slow", "last_crash.signal", "hang");
  expect_json(json, "slow", "last_crash.callback", "tick");
  harness_expect_line(h, "slow log: tick ");
  assert_int_equal(harness_stop(h), 0);
}

/* on_config() crashes when NAME.conf changes. */
static void test_host_crash_in_config(void **state) {
  harness *h = *state;
  static const char *const args[] = {"--crash-grace", "600", NULL};
  char line[2048];

  assert_int_equal(harness_install(h, "crash_v1", "conf.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(harness_start(h, args), 0);
  harness_expect_line(h, "conf loaded: version 1.0");
  assert_int_equal(harness_install(h, "crash_config_segv", "conf.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "conf reloaded: version 2.0-config-segv");
  assert_int_equal(harness_install_text(h, "x = 1\n", "conf.conf",
                                        HARNESS_WRITE_NEW),
                   0);
  assert_true(harness_wait(h, "conf crashed: on_config() of version "
                              "2.0-config-segv: SIGSEGV (bad access to "
                              "address 0x10) at conf.so+0x",
                           line, sizeof(line)) >= 0);
  assert_true(harness_contains(line, "; rolled back to version 1.0"));
  harness_expect_status(h, "conf", "last_crash.callback", "on_config");
  assert_int_equal(harness_install_text(h, "x = 2\n", "conf.conf",
                                        HARNESS_RENAME),
                   0);
  harness_expect_line(h, "conf log: config 1.0");
  assert_int_equal(harness_stop(h), 0);
}

/* A fatal signal that is not a plugin's fault (sent by another process)
 * still kills the host with that signal. */
static void test_host_crash_foreign_signal_kills(void **state) {
  harness *h = *state;

  assert_int_equal(harness_install(h, "crash_v1", "x.so", HARNESS_WRITE_NEW,
                                   NULL),
                   0);
  assert_int_equal(harness_start(h, NULL), 0);
  harness_expect_line(h, "x loaded: version 1.0");
  assert_int_equal(harness_signal(h, SIGSEGV), 0);
  assert_int_equal(harness_stop(h), 128 + SIGSEGV);
  assert_int_equal(harness_count(h, 0, -1, "crashed:"), 0);
}

/* The options' ranges, as --help gives them. */
static void test_host_crash_options_are_checked(void **state) {
  harness *h = *state;
  const char *limit[] = {"--crash-limit", "0", h->plugins, NULL};
  const char *grace[] = {"--crash-grace", "3601", h->plugins, NULL};
  const char *budget[] = {"--callback-budget", "-1", h->plugins, NULL};
  char out[1024], err[1024];

  assert_int_equal(harness_run(h, limit, out, sizeof(out), err, sizeof(err)),
                   2);
  assert_true(harness_contains(err, "--crash-limit: '0' is out of range (1 "
                                    "to 100 crashes)"));
  assert_int_equal(harness_run(h, grace, out, sizeof(out), err, sizeof(err)),
                   2);
  assert_true(harness_contains(err, "--crash-grace: '3601' is out of range "
                                    "(0 to 3600 seconds)"));
  assert_int_equal(harness_run(h, budget, out, sizeof(out), err, sizeof(err)),
                   2);
  assert_true(harness_contains(err, "--callback-budget: '-1' is not a number "
                                    "of milliseconds"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_host_crash_in_tick, harness_setup,
                                      harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_crash_in_fd_event,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_crash_in_timer, harness_setup,
                                      harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_crash_in_load_after_swap,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_crash_in_migrate,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_crash_in_unload,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_crash_rollback_restores_exact_state, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_crash_quarantine_then_fix,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_crash_loop_is_bounded,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_crash_hang_is_interrupted,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_crash_in_config,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_crash_foreign_signal_kills,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_crash_options_are_checked,
                                      harness_setup, harness_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
