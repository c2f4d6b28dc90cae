/*
 * test_host_unsafe.c - what makes a reload unsafe, and what may not be
 * loaded at all, through the real host:
 *   - a new version whose state keeps a pointer into the version it
 *     replaces (a string literal, a function) is rejected in the sandbox
 *     with the offset and the section; the old version keeps running;
 *   - a version that leaves a thread running after unload() is rejected
 *     by the validator, and when it starts the thread only in the live
 *     host, its image is never unmapped and the host says so;
 *   - plugin files and a plugin directory other users could write are
 *     refused unless --allow-insecure, and umask 002's private group is
 *     not "other users".
 * Giving files to another owner or group needs root: those tests say they
 * are skipped otherwise.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define FIX "(or start hotswap with --allow-insecure)"
#define NO_GROUP 54321 /* a gid no group has, assumed */

/* ---- helpers ----------------------------------------------------------- */

static void stop_clean(harness *h) {
  assert_int_equal(harness_stop(h), 0);
  harness_expect_line(h, "hotswap stopped: clean exit");
}

/* fixture as unsafe.so, the host started on it, its first load seen. */
static void start_unsafe(harness *h, const char *fixture,
                         const char *version) {
  char want[256];
  assert_int_equal(harness_install(h, fixture, "unsafe.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(harness_start(h, NULL), 0);
  snprintf(want, sizeof(want),
           "unsafe loaded: version %s, state v1 (24 bytes), generation 1",
           version);
  harness_expect_line(h, want);
}

static void plugin_path(const harness *h, const char *name, char *out,
                        size_t size) {
  assert_true(snprintf(out, size, "%s/%s", h->plugins, name) < (int)size);
}

static void chmod_plugin(harness *h, const char *name, mode_t mode) {
  char path[PATH_MAX + 64];
  plugin_path(h, name, path, sizeof(path));
  assert_int_equal(chmod(path, mode), 0);
}

/* 1 if our primary group lists nobody but us: umask 002 then makes files
 * that are writable by that group and still trusted. */
static int own_private_group(void) {
  struct passwd *pw = getpwuid(geteuid());
  struct group *gr = getgrgid(getegid());
  if (!pw || !gr || pw->pw_gid != getegid())
    return 0;
  for (char **m = gr->gr_mem; *m; m++)
    if (strcmp(*m, pw->pw_name) != 0)
      return 0;
  return 1;
}

/* Lines of /proc/PID/maps naming a deleted copy in the host's cache. */
static int deleted_copies_mapped(pid_t pid) {
  char path[64], line[4096];
  int n = 0;
  snprintf(path, sizeof(path), "/proc/%ld/maps", (long)pid);
  FILE *f = fopen(path, "re");
  assert_non_null(f);
  while (fgets(line, sizeof(line), f))
    n += strstr(line, "/hotswap-") && strstr(line, "/unsafe.") &&
         strstr(line, ".so (deleted)");
  fclose(f);
  return n;
}

/* ---- pointers into the old image ------------------------------------- */

static void expect_pointer_rejected(harness *h, const char *old_fixture,
                                    const char *old_version,
                                    const char *section, const char *advice) {
  char line[2048], want[512];

  start_unsafe(h, old_fixture, old_version);
  /* Same state layout: the new version gets the same bytes, and its load()
   * leaves the pointer the old version stored. */
  assert_int_equal(harness_install(h, "unsafe_keep", "unsafe.so",
                                   HARNESS_RENAME, NULL),
                   0);
  assert_true(harness_wait(h, "unsafe rejected: unsafe.so: stage pointers: ",
                           line, sizeof(line)) >= 0);
  snprintf(want, sizeof(want), "state offset 16 points into unsafe.so %s (0x",
           section);
  assert_true(harness_contains(line, want));
  snprintf(want, sizeof(want),
           ") of version %s, which the swap unmaps: %s (HS_ESTATEPTR); "
           "version %s keeps running",
           old_version, advice, old_version);
  assert_true(harness_contains(line, want));
  harness_expect_status(h, "unsafe", "status", "live");
  harness_expect_status(h, "unsafe", "version", old_version);
  harness_expect_status(h, "unsafe", "last_error.code", "HS_ESTATEPTR");
  harness_expect_status(h, "unsafe", "last_error.stage", "pointers");

  /* A version that clears the pointer in load() goes in. */
  assert_int_equal(harness_install(h, "unsafe_fixed", "unsafe.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "unsafe reloaded: version 3.0-fixed");
  harness_expect_status(h, "unsafe", "last_error", "null");
  stop_clean(h);
}

static void test_host_unsafe_pointer_to_literal_rejected(void **state) {
  expect_pointer_rejected(*state, "unsafe_literal", "1.0-literal", ".rodata",
                          "store data, not pointers to string literals or "
                          "constant tables");
}

static void test_host_unsafe_pointer_to_function_rejected(void **state) {
  expect_pointer_rejected(*state, "unsafe_function", "1.0-function", ".text",
                          "store data, not function pointers (find the "
                          "function again in load())");
}

/* ---- threads left running --------------------------------------------- */

static void test_host_unsafe_thread_left_rejected_by_validator(void **state) {
  harness *h = *state;
  char line[2048];

  start_unsafe(h, "unsafe_fixed", "3.0-fixed");
  assert_int_equal(harness_install(h, "unsafe_thread", "unsafe.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "unsafe sandbox: started a thread");
  assert_true(harness_wait(h, "unsafe rejected: unsafe.so: stage unload: ",
                           line, sizeof(line)) >= 0);
  assert_true(harness_contains(
      line, "stage unload: unload() of unsafe.so left 1 thread running: "
            "stop and join it in unload() (dlclose would unmap the code it "
            "runs) (HS_ETHREAD); version 3.0-fixed keeps running"));
  harness_expect_status(h, "unsafe", "last_error.code", "HS_ETHREAD");
  harness_expect_status(h, "unsafe", "version", "3.0-fixed");
  stop_clean(h);
}

static void test_host_unsafe_thread_left_live_keeps_image(void **state) {
  harness *h = *state;
  char line[2048], json[65536], task[64];
  long tid = 0, leaked = 0;

  /* It starts its thread only outside the sandbox: the validator cannot
   * see it, the live host does. */
  start_unsafe(h, "unsafe_thread_live", "1.0-thread-live");
  harness_expect_status(h, "unsafe", "status", "live");
  assert_int_equal(harness_install(h, "unsafe_fixed", "unsafe.so",
                                   HARNESS_RENAME, NULL),
                   0);
  assert_true(harness_wait(h, "unsafe warning: version 1.0-thread-live left "
                              "1 thread running after it stopped (tid ",
                           line, sizeof(line)) >= 0);
  const char *at = strstr(line, "(tid ");
  assert_int_equal(sscanf(at, "(tid %ld)", &tid), 1);
  assert_true(harness_contains(
      line, "): its image is not unmapped, since the thread would run "
            "unmapped code; it keeps "));
  assert_true(harness_contains(line, " KiB in all for unsafe). Stop and join "
                                     "the plugin's threads in unload()"));
  harness_expect_line(h, "unsafe reloaded: version 3.0-fixed");

  /* The thread runs on, in code that is still mapped; its copy is gone
   * from the cache. */
  snprintf(task, sizeof(task), "/proc/%ld/task/%ld", (long)h->pid, tid);
  assert_int_equal(access(task, F_OK), 0);
  assert_int_equal(harness_wait_cache_files(h, 1), 0);
  assert_true(deleted_copies_mapped(h->pid) >= 1);
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  assert_int_equal(harness_json_long(json, "unsafe", "leaked.images", &leaked),
                   0);
  assert_int_equal(leaked, 1);
  assert_int_equal(harness_json_long(json, "unsafe", "leaked.bytes", &leaked),
                   0);
  assert_true(leaked >= 4096);
  assert_int_equal(harness_json_long(json, NULL, "leaked_bytes", &leaked), 0);
  assert_true(leaked >= 4096);
  stop_clean(h);
}

/* ---- files other users could write ------------------------------------ */

static void test_host_unsafe_world_writable_plugin_refused(void **state) {
  harness *h = *state;
  char path[PATH_MAX + 64], line[2048], want[3 * PATH_MAX];

  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  chmod_plugin(h, "counter.so", 0666);
  plugin_path(h, "counter.so", path, sizeof(path));
  assert_int_equal(harness_start(h, NULL), 0);
  assert_true(harness_wait(h, "counter rejected: ", line, sizeof(line)) >= 0);
  snprintf(want, sizeof(want),
           "counter rejected: counter.so: stage copy: %s is writable by "
           "other users (mode 0666): they could change the code hotswap "
           "runs; chmod go-w %s " FIX " (HS_EINSECURE); the plugin is not "
           "running",
           path, path);
  assert_true(harness_contains(line, want));
  harness_expect_status(h, "counter", "status", "rejected");
  harness_expect_status(h, "counter", "last_error.code", "HS_EINSECURE");

  /* The fix the message names; the change of mode is seen. */
  chmod_plugin(h, "counter.so", 0644);
  harness_expect_line(h, "counter loaded: version 1.0");
  stop_clean(h);
}

static void test_host_unsafe_insecure_new_version_keeps_old(void **state) {
  harness *h = *state;
  char line[2048];

  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(harness_start(h, NULL), 0);
  harness_expect_line(h, "counter loaded: version 1.0");
  /* A new version that anyone could have written: refused, the old one
   * keeps running. */
  assert_int_equal(harness_install(h, "counter_v1b", ".next.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  chmod_plugin(h, ".next.so", 0646);
  assert_int_equal(harness_move(h, ".next.so", "counter.so"), 0);
  assert_true(harness_wait(h, "counter rejected: ", line, sizeof(line)) >= 0);
  assert_true(harness_contains(line, "/counter.so is writable by other users "
                                     "(mode 0646)"));
  assert_true(harness_contains(line, "(HS_EINSECURE); version 1.0 keeps "
                                     "running"));
  harness_expect_status(h, "counter", "version", "1.0");
  harness_expect_status(h, "counter", "status", "live");
  stop_clean(h);
}

static void test_host_unsafe_allow_insecure_loads_it(void **state) {
  harness *h = *state;
  const char *const args[] = {"--allow-insecure", NULL};

  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  chmod_plugin(h, "counter.so", 0666);
  assert_int_equal(chmod(h->plugins, 0777), 0);
  assert_int_equal(harness_start(h, args), 0);
  harness_expect_line(h, "counter loaded: version 1.0");
  stop_clean(h);
  assert_int_equal(harness_count(h, 0, -1, "HS_EINSECURE"), 0);
  assert_int_equal(chmod(h->plugins, 0755), 0);
}

/* The host on a plugin directory it refuses: exits 1 at once, loading
 * nothing, with the reason on stderr. */
static void expect_dir_refused(harness *h, const char *want) {
  const char *const args[] = {"--control", h->control, "--cache-dir",
                              h->cache, h->plugins, NULL};
  char out[4096], err[8192];

  assert_int_equal(harness_run(h, args, out, sizeof(out), err, sizeof(err)),
                   1);
  assert_true(harness_contains(err, want));
  assert_true(harness_lacks(err, "counter loaded"));
  assert_true(harness_lacks(err, "hotswap started"));
}

static void test_host_unsafe_group_writable_dir_stops_host(void **state) {
  harness *h = *state;
  char want[3 * PATH_MAX];

  if (geteuid() != 0) {
    fprintf(stderr, "needs root to give the directory a shared group: "
                    "skipped\n");
    skip();
  }
  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(chown(h->plugins, (uid_t)-1, NO_GROUP), 0);
  assert_int_equal(chmod(h->plugins, 0775), 0);
  snprintf(want, sizeof(want),
           "hotswap error: plugins: %s is writable by group %d (mode 0775), "
           "which is not its owner's alone: its members could change the "
           "code hotswap runs; chmod g-w %s " FIX,
           h->plugins, NO_GROUP, h->plugins);
  expect_dir_refused(h, want);
  assert_int_equal(chmod(h->plugins, 0755), 0);
  assert_int_equal(harness_start(h, NULL), 0);
  harness_expect_line(h, "counter loaded: version 1.0");
  stop_clean(h);
}

static void test_host_unsafe_world_writable_dir_stops_host(void **state) {
  harness *h = *state;
  char want[3 * PATH_MAX];

  assert_int_equal(chmod(h->plugins, 01777), 0);
  snprintf(want, sizeof(want),
           "hotswap error: plugins: %s is writable by other users (mode "
           "1777)",
           h->plugins);
  expect_dir_refused(h, want);
  assert_int_equal(chmod(h->plugins, 0755), 0);
}

static void test_host_unsafe_other_owner_refused(void **state) {
  harness *h = *state;
  char line[2048], path[PATH_MAX + 64];

  if (geteuid() != 0) {
    fprintf(stderr, "needs root to give the plugin away: skipped\n");
    skip();
  }
  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  plugin_path(h, "counter.so", path, sizeof(path));
  assert_int_equal(chown(path, 65534, (gid_t)-1), 0);
  assert_int_equal(harness_start(h, NULL), 0);
  assert_true(harness_wait(h, "counter rejected: ", line, sizeof(line)) >= 0);
  assert_true(harness_contains(line, "/counter.so is owned by uid 65534"));
  assert_true(harness_contains(line, ", neither you nor root: that user "
                                     "could change the code hotswap runs; "
                                     "use a copy of your own " FIX
                                     " (HS_EINSECURE)"));
  stop_clean(h);
}

static void test_host_unsafe_world_writable_source_refused(void **state) {
  harness *h = *state;
  char line[2048], path[PATH_MAX + 64];
  static const char src[] =
      "#include \"hotswap.h\"\n"
      "static int ld(hs_ctx *c, void *s, hs_load_reason r) {\n"
      "  (void)c, (void)s, (void)r;\n"
      "  return 0;\n"
      "}\n"
      "static void ul(hs_ctx *c, void *s, hs_unload_reason r) {\n"
      "  (void)c, (void)s, (void)r;\n"
      "}\n"
      "static const hs_plugin d = {HS_ABI_VERSION, sizeof(hs_plugin), "
      "\"src\", \"s1\", 1, 8, ld, ul};\n"
      "HS_EXPORT const hs_plugin *hotswap_plugin_entry(const hs_api *a) {\n"
      "  (void)a;\n"
      "  return &d;\n"
      "}\n";

  assert_int_equal(harness_install_text(h, src, "src.c", HARNESS_WRITE_NEW),
                   0);
  chmod_plugin(h, "src.c", 0666);
  plugin_path(h, "src.c", path, sizeof(path));
  assert_int_equal(harness_start(h, NULL), 0);
  assert_true(harness_wait(h, "src rejected: ", line, sizeof(line)) >= 0);
  assert_true(harness_contains(line, "src rejected: src.c: stage copy: "));
  assert_true(harness_contains(line, path));
  assert_true(harness_contains(line, " is writable by other users (mode "
                                     "0666)"));
  assert_int_equal(harness_count(h, 0, -1, "src compiling"), 0);
  stop_clean(h);
}

/* What umask 002 makes on a system with one group per user: writable by
 * the owner's own group, and still the owner's alone. */
static void test_host_unsafe_private_group_writable_loads(void **state) {
  harness *h = *state;

  if (!own_private_group()) {
    fprintf(stderr, "our primary group has other members: skipped\n");
    skip();
  }
  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  chmod_plugin(h, "counter.so", 0664);
  assert_int_equal(chmod(h->plugins, 0775), 0);
  assert_int_equal(harness_start(h, NULL), 0);
  harness_expect_line(h, "counter loaded: version 1.0");
  stop_clean(h);
  assert_int_equal(harness_count(h, 0, -1, "HS_EINSECURE"), 0);
  assert_int_equal(chmod(h->plugins, 0755), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_host_unsafe_pointer_to_literal_rejected, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_unsafe_pointer_to_function_rejected, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_unsafe_thread_left_rejected_by_validator, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_unsafe_thread_left_live_keeps_image, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_unsafe_world_writable_plugin_refused, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_unsafe_insecure_new_version_keeps_old, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_unsafe_allow_insecure_loads_it,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_unsafe_group_writable_dir_stops_host, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_unsafe_world_writable_dir_stops_host, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_unsafe_other_owner_refused,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_unsafe_world_writable_source_refused, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_unsafe_private_group_writable_loads, harness_setup,
          harness_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
