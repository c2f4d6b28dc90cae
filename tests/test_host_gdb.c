/*
 * test_host_gdb.c - debugging a plugin live: after a reload, gdb attached
 * to the running host (gdb -p PID, batch mode) lists the cache copy of the
 * new version among the shared libraries, not the old one, and resolves
 * the plugin's functions, source lines and data in the new version. The
 * host goes on running after gdb detaches. Skipped when gdb is missing or
 * the system does not let it attach (Yama ptrace_scope, no CAP_SYS_PTRACE).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define FIXTURE_SOURCE HS_TEST_SOURCE_DIR "/tests/fixtures/fixture.c"
#define GDB_TIMEOUT_S 120 /* reading the symbols of an ASan host is slow */

/* ---- helpers ----------------------------------------------------------- */

static void stop_clean(harness *h) {
  assert_int_equal(harness_stop(h), 0);
  harness_expect_line(h, "hotswap stopped: clean exit");
}

/* Finds prog in $PATH. Returns 0 with out filled, or -1. */
static int find_program(const char *prog, char *out, size_t size) {
  const char *path = getenv("PATH");

  if (path == NULL || path[0] == '\0')
    path = "/usr/local/bin:/usr/bin:/bin";
  while (path != NULL && *path != '\0') {
    const char *end = strchr(path, ':');
    size_t len = end ? (size_t)(end - path) : strlen(path);
    struct stat st;
    if (len > 0 &&
        (size_t)snprintf(out, size, "%.*s/%s", (int)len, path, prog) < size &&
        stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0)
      return 0;
    path = end ? end + 1 : NULL;
  }
  return -1;
}


/* Reads a whole file into a malloc'd string. */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  char *buf;
  long n;

  assert_non_null(f);
  assert_int_equal(fseek(f, 0, SEEK_END), 0);
  n = ftell(f);
  assert_true(n >= 0);
  rewind(f);
  buf = malloc((size_t)n + 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

/* The lines of fx_load in fixture.c: from its definition to the first
 * closing brace in column 0 after it. */
static void fx_load_lines(int *first, int *last) {
  char line[512];
  int n = 0;
  FILE *f = fopen(FIXTURE_SOURCE, "r");

  assert_non_null(f);
  *first = *last = 0;
  while (fgets(line, sizeof(line), f) != NULL) {
    n++;
    if (*first == 0 && strncmp(line, "static int fx_load(", 19) == 0)
      *first = n;
    else if (*first != 0 && strcmp(line, "}\n") == 0) {
      *last = n;
      break;
    }
  }
  fclose(f);
  assert_true(*first > 0 && *last > *first);
}

/* The absolute path of the only copy in the host's cache. */
static void only_copy(const harness *h, char *out, size_t size) {
  char dir[PATH_MAX + 256];
  DIR *top, *d;
  struct dirent *e;
  int found = 0;

  assert_int_equal(harness_cache_files(h), 1);
  top = opendir(h->cache);
  assert_non_null(top);
  while ((e = readdir(top)) != NULL) {
    if (strncmp(e->d_name, "hotswap-", 8) != 0)
      continue;
    snprintf(dir, sizeof(dir), "%s/%s", h->cache, e->d_name);
    d = opendir(dir);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.')
        continue;
      snprintf(out, size, "%s/%s", dir, e->d_name);
      found++;
    }
    closedir(d);
    break;
  }
  closedir(top);
  assert_int_equal(found, 1);
}

/* 1 when Yama forbids attaching to a process that is not our descendant
 * and we may not override it; the reason goes to stderr. */
static int ptrace_forbidden(void) {
  FILE *f = fopen("/proc/sys/kernel/yama/ptrace_scope", "r");
  int scope = 0;

  if (f == NULL)
    return 0; /* no Yama: plain uid rules */
  if (fscanf(f, "%d", &scope) != 1)
    scope = 0;
  fclose(f);
  if (scope >= 3) {
    fprintf(stderr, "kernel.yama.ptrace_scope is %d: no process may be "
                    "attached to; skipped\n",
            scope);
    return 1;
  }
  return 0; /* 1 and 2 may still work with CAP_SYS_PTRACE: gdb will say */
}

/* ---- tests ------------------------------------------------------------- */

static void test_host_gdb_sees_new_version(void **state) {
  harness *h = *state;
  char gdb[PATH_MAX], log[PATH_MAX + 16], pid[32];
  char old_copy[PATH_MAX + 512], new_copy[PATH_MAX + 512];
  char want[PATH_MAX + 520];
  char *out, *at;
  int first, last, line = 0;

  if (find_program("gdb", gdb, sizeof(gdb)) != 0) {
    fprintf(stderr, "gdb is not installed: skipped\n");
    skip();
  }
  if (ptrace_forbidden())
    skip();

  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(harness_start(h, NULL), 0);
  harness_expect_line(h, "counter loaded: version 1.0, state v1 (16 bytes), "
                 "generation 1");
  only_copy(h, old_copy, sizeof(old_copy));
  assert_int_equal(harness_install(h, "counter_v1b", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter reloaded: version 1.1, state v1 (16 bytes), "
                 "generation 2");
  /* The old version is closed and its copy deleted. */
  assert_int_equal(harness_wait_cache_files(h, 1), 0);
  only_copy(h, new_copy, sizeof(new_copy));
  assert_string_not_equal(new_copy, old_copy);

  snprintf(pid, sizeof(pid), "%ld", (long)h->pid);
  snprintf(log, sizeof(log), "%s/gdb.log", h->root);
  const char *const argv[] = {gdb,
                              "-nx",
                              "-batch",
                              "-iex", "set debuginfod enabled off",
                              "-ex", "info sharedlibrary",
                              "-ex", "info line fx_load",
                              "-ex", "print descriptor.version",
                              "-p", pid,
                              NULL};
  int rc = harness_exec(argv, NULL, log, GDB_TIMEOUT_S);
  out = slurp(log);
  if (strstr(out, "ptrace: Operation not permitted") != NULL ||
      strstr(out, "Could not attach to process") != NULL) {
    fprintf(stderr, "gdb may not attach here (ptrace refused; see "
                    "/proc/sys/kernel/yama/ptrace_scope): skipped\n%s",
            out);
    free(out);
    skip();
  }
  if (rc != 0)
    fprintf(stderr, "gdb exited with %d:\n%s", rc, out);

  /* The new copy is loaded, by its cache path; the old one is not. */
  snprintf(want, sizeof(want), "%s\n", new_copy);
  if (strstr(out, want) == NULL)
    fail_msg("gdb does not list %s:\n%s", new_copy, out);
  if (strstr(out, old_copy) != NULL)
    fail_msg("gdb still lists %s:\n%s", old_copy, out);

  /* fx_load resolves into the new copy, to a line of its source. */
  if (strstr(out, "No line number information") != NULL) {
    fprintf(stderr, "the fixtures have no debug information (a build "
                    "without -g): skipped\n%s",
            out);
    free(out);
    skip();
  }
  at = strstr(out, "\nLine ");
  if (at == NULL || sscanf(at, "\nLine %d of \"", &line) != 1)
    fail_msg("gdb did not resolve fx_load to a line:\n%s", out);
  fx_load_lines(&first, &last);
  if (line < first || line > last ||
      strstr(at, "tests/fixtures/fixture.c\" starts at address ") == NULL ||
      strstr(at, "<fx_load") == NULL)
    fail_msg("fx_load should be at fixture.c:%d..%d:\n%s", first, last,
             out);
  /* And its data is the new version's. */
  if (strstr(out, "\"1.1\"\n") == NULL)
    fail_msg("descriptor.version is not \"1.1\":\n%s", out);
  free(out);

  /* The host goes on: it answers and reloads after gdb detached. */
  assert_int_equal(harness_install(h, "counter_v1c", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter reloaded: version 1.2, state v1 (16 bytes), "
                 "generation 3");
  stop_clean(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_host_gdb_sees_new_version,
                                      harness_setup, harness_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
