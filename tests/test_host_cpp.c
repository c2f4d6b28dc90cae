/*
 * test_host_cpp.c - C++ plugins in the real host: the C++ example
 * (examples/cpp/counter.cpp, built at build time in two versions) reloads
 * live with its state and leaves nothing mapped behind; the fixtures that
 * pin themselves (tests/fixtures/pinned.cpp) reload too, and the host warns
 * that the old version stays mapped.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

/* The worker's words when dlclose leaves an image mapped (host/worker.c),
 * before the cause the ELF file gave (host/elf.c). */
#define STAYS_MAPPED ": the old version stays mapped after dlclose: "
#define CAUSE_UNIQUE "it defines the STB_GNU_UNIQUE symbol "
#define FIX_UNIQUE                                                             \
  ", which is never unloaded (a C++ inline or template static; build with "    \
  "-fno-gnu-unique)"
#define CAUSE_TLS                                                              \
  "it has thread_local objects with destructors (__cxa_thread_atexit), and "   \
  "glibc keeps it mapped once one of them is constructed; use thread_local "   \
  "only for types with trivial destructors"

/* ---- helpers ----------------------------------------------------------- */

static void stop_clean(harness *h) {
  assert_int_equal(harness_stop(h), 0);
  harness_expect_line(h, "hotswap stopped: clean exit");
}

/* 1 when the build made the C++ fixtures; otherwise says why the test is
 * skipped and returns 0. A build that should have them fails instead. */
static int have_cxx_fixtures(void) {
  if (harness_fixture_size("cpp_counter_v1") >= 0)
    return 1;
#ifdef HS_TEST_CXX_FIXTURES
  fail_msg("the C++ fixtures are missing from %s", HS_TEST_FIXTURES);
#endif
  fprintf(stderr, "no C++ fixtures in this build (HOTSWAP_EXAMPLE_CXX off "
                  "or no C++ compiler): skipped\n");
  return 0;
}

/* The name of the only copy in the host's cache ("counter.1.so"). */
static void only_copy(const harness *h, char *out, size_t size) {
  char path[PATH_MAX + 256];
  DIR *top, *d;
  struct dirent *e;
  int found = 0;

  assert_int_equal(harness_cache_files(h), 1);
  top = opendir(h->cache);
  assert_non_null(top);
  while ((e = readdir(top)) != NULL) {
    if (strncmp(e->d_name, "hotswap-", 8) != 0)
      continue;
    snprintf(path, sizeof(path), "%s/%s", h->cache, e->d_name);
    d = opendir(path);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.')
        continue;
      snprintf(out, size, "%s", e->d_name);
      found++;
    }
    closedir(d);
    break;
  }
  closedir(top);
  assert_int_equal(found, 1);
}

/* 1 if a line of /proc/PID/maps ends with "/<copy>" followed by tail
 * ("" or " (deleted)"). */
static int mapped(pid_t pid, const char *copy, const char *tail) {
  char path[64], line[PATH_MAX + 256], want[PATH_MAX];
  FILE *f;
  int hit = 0;

  snprintf(path, sizeof(path), "/proc/%ld/maps", (long)pid);
  snprintf(want, sizeof(want), "/%s%s\n", copy, tail);
  f = fopen(path, "r");
  assert_non_null(f);
  while (!hit && fgets(line, sizeof(line), f) != NULL) {
    size_t n = strlen(line), w = strlen(want);
    hit = n >= w && strcmp(line + n - w, want) == 0;
  }
  fclose(f);
  return hit;
}

/* fixture as NAME.so, the host started on it, its first load seen. */
static void start_with(harness *h, const char *fixture, const char *name,
                       const char *loaded) {
  char file[64];
  snprintf(file, sizeof(file), "%s.so", name);
  assert_int_equal(harness_install(h, fixture, file, HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(harness_start(h, NULL), 0);
  harness_expect_line(h, loaded);
}

/* ---- tests ------------------------------------------------------------- */

static void test_host_cpp_reload_keeps_state(void **state) {
  harness *h = *state;
  char line[1024], old_copy[256], new_copy[256], want[128];
  unsigned long long resumed = 0, load = 0;
  const char *at;

  if (!have_cxx_fixtures())
    skip();
  start_with(h, "cpp_counter_v1", "cpp_counter",
             "cpp_counter log: version 1.0 (start): counting from 0 by 1");
  harness_expect_line(h, "cpp_counter loaded: version 1.0, state v1 (16 bytes), "
                 "generation 1, from cpp_counter.so in ");
  harness_expect_line(h, "cpp_counter log: count 3");
  only_copy(h, old_copy, sizeof(old_copy));
  assert_true(mapped(h->pid, old_copy, ""));

  /* A rebuild with another version, renamed into place. */
  assert_int_equal(harness_install(h, "cpp_counter_v1b", "cpp_counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "cpp_counter log: version 1.0 unloading (reload) at count ");
  assert_true(harness_wait(h, "cpp_counter log: version 1.1 (reload): "
                              "resuming at count ",
                           line, sizeof(line)) >= 0);
  at = strstr(line, "resuming at count ");
  assert_non_null(at);
  assert_int_equal(sscanf(at, "resuming at count %llu by 1, load %llu",
                          &resumed, &load),
                   2);
  assert_true(resumed >= 3); /* the count went on, not from zero */
  assert_int_equal(load, 2);
  harness_expect_line(h, "cpp_counter reloaded: version 1.1, state v1 (16 bytes), "
                 "generation 2, from cpp_counter.so in ");
  snprintf(want, sizeof(want), "cpp_counter log: count %llu", resumed + 1);
  harness_expect_line(h, want);
  harness_expect_status(h, "cpp_counter", "version", "1.1");
  harness_expect_status(h, "cpp_counter", "status", "live");

  /* The old image is gone from the process: C++ need not pin. */
  assert_int_equal(harness_wait_cache_files(h, 1), 0);
  only_copy(h, new_copy, sizeof(new_copy));
  assert_string_not_equal(new_copy, old_copy);
  assert_true(mapped(h->pid, new_copy, ""));
  assert_false(mapped(h->pid, old_copy, ""));
  assert_false(mapped(h->pid, old_copy, " (deleted)"));
  stop_clean(h);
  assert_int_equal(harness_count(h, 0, -1, "stays mapped"), 0);
  assert_int_equal(harness_count(h, 0, -1, "cpp_counter log: version 1.1 "
                                           "unloading (shutdown) at count "),
                   1);
}

/* A pinned fixture loads and reloads: the host says ahead of time, from
 * the ELF file, that it cannot be unloaded, why and what to do (cause);
 * once the worker has closed the old image, that it is still there and
 * how much memory the reload leaked, and it is. */
static void expect_pinned_warning(harness *h, const char *fixture,
                                  const char *version, const char *cause,
                                  const char *fix) {
  const char *const reload[] = {"reload", "pinned", "--control", h->control,
                                NULL};
  char want[512], old_copy[256], out[1024], err[1024], line[2048];
  long leaked = 0;

  snprintf(want, sizeof(want), "pinned log: load start version %s loads=1",
           version);
  start_with(h, fixture, "pinned", want);
  snprintf(want, sizeof(want),
           "pinned loaded: version %s, state v1 (8 bytes), generation 1",
           version);
  harness_expect_line(h, want);
  only_copy(h, old_copy, sizeof(old_copy));
  assert_int_equal(harness_count(h, 0, -1, "pinned warning: pinned.so cannot "
                                           "be unloaded: "),
                   1);
  snprintf(want, sizeof(want), "%s; each reload keeps the old version in "
                               "memory",
           fix);
  assert_int_equal(harness_count(h, 0, -1, want), 1);

  assert_int_equal(harness_run(h, reload, out, sizeof(out), err, sizeof(err)),
                   0);
  snprintf(want, sizeof(want), "pinned log: load reload version %s loads=2",
           version);
  harness_expect_line(h, want);
  snprintf(want, sizeof(want), "pinned warning: %s" STAYS_MAPPED "%s",
           old_copy, cause);
  assert_true(harness_wait(h, want, line, sizeof(line)) >= 0);
  snprintf(want, sizeof(want), "%s; this reload leaks ", fix);
  assert_true(harness_contains(line, want));
  assert_true(harness_contains(line, " KiB in all for pinned)"));
  /* The copy is deleted from the cache, its image still in memory. */
  assert_int_equal(harness_wait_cache_files(h, 1), 0);
  assert_true(mapped(h->pid, old_copy, " (deleted)"));
  harness_expect_status(h, "pinned", "status", "live");
  harness_expect_status_num(h, "pinned", "leaked.images", 1);
  assert_int_equal(harness_status_long(h, "pinned", "leaked.bytes", &leaked),
                   0);
  assert_true(leaked >= 4096);
  stop_clean(h);
}

static void test_host_cpp_gnu_unique_pins(void **state) {
  if (!have_cxx_fixtures())
    skip();
  expect_pinned_warning(*state, "pinned_unique", "unique", CAUSE_UNIQUE,
                        FIX_UNIQUE);
}

static void test_host_cpp_thread_local_pins(void **state) {
  harness *h = *state;

  if (!have_cxx_fixtures())
    skip();
  /* Under ASan, LeakSanitizer's exit-time scan of dynamic TLS meets a
   * bogus entry after the pinned modules' thread_local blocks and crashes
   * the host ("Tracer caught signal 11", "DTLS 5 at 0x5a-..."). Its TLS
   * scan is off for this host; leak checking stays on. */
  assert_int_equal(harness_env(h, "LSAN_OPTIONS=use_tls=0"), 0);
  expect_pinned_warning(h, "pinned_tls", "tls", CAUSE_TLS, CAUSE_TLS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_host_cpp_reload_keeps_state,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_cpp_gnu_unique_pins,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_cpp_thread_local_pins,
                                      harness_setup, harness_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
