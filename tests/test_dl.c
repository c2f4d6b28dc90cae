/* test_dl.c - the dlopen wrappers: errors copied whole, "really gone". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dl.h"

#define FIXTURE(name) HS_TEST_FIXTURES "/" name ".so"

/* Copies src to a fresh file under /tmp; returns its malloc'd path. */
static char *copy_to_tmp(const char *src, const char *suffix) {
  char *path;
  char buf[65536];
  ssize_t n;
  int in, out;

  assert_true(asprintf(&path, "/tmp/hs-test-dl-XXXXXX%s", suffix) > 0);
  out = mkstemps(path, (int)strlen(suffix));
  assert_true(out >= 0);
  in = open(src, O_RDONLY | O_CLOEXEC);
  assert_true(in >= 0);
  while ((n = read(in, buf, sizeof(buf))) > 0)
    assert_int_equal(write(out, buf, (size_t)n), n);
  assert_int_equal(n, 0);
  close(in);
  fchmod(out, 0700);
  close(out);
  return path;
}

static void test_dl_open_and_close_fixture(void **state) {
  hs_error err;
  void *h;

  (void)state;
  hs_error_clear(&err);
  h = hs_dl_open(FIXTURE("counter_v1"), &err);
  assert_non_null(h);
  assert_int_equal(err.code, 0);
  assert_int_equal(hs_dl_is_loaded(FIXTURE("counter_v1")), 1);
  assert_int_equal(hs_dl_close(h, FIXTURE("counter_v1")), 1);
  assert_int_equal(hs_dl_is_loaded(FIXTURE("counter_v1")), 0);
}

static void test_dl_open_copies_dlerror(void **state) {
  hs_error err;

  (void)state;
  hs_error_clear(&err);
  assert_null(hs_dl_open(FIXTURE("bad_unresolved"), &err));
  assert_int_equal(err.code, HS_EDLOPEN);
  assert_string_equal(err.stage, "open");
  /* glibc's text names the file and the symbol; it is kept whole. */
  assert_non_null(strstr(err.msg, FIXTURE("bad_unresolved")));
  assert_non_null(
      strstr(err.msg, "undefined symbol: fx_function_nobody_defines"));
  assert_int_equal(hs_dl_is_loaded(FIXTURE("bad_unresolved")), 0);
}

static void test_dl_open_reports_missing_file(void **state) {
  hs_error err;

  (void)state;
  assert_null(hs_dl_open("/nonexistent/counter.so", &err));
  assert_int_equal(err.code, HS_EDLOPEN);
  assert_string_equal(err.stage, "open");
  assert_non_null(strstr(err.msg, "/nonexistent/counter.so"));
  assert_non_null(strstr(err.msg, "No such file or directory"));
}

static void test_dl_sym_names_symbol_and_file(void **state) {
  hs_error err;
  void *h;

  (void)state;
  h = hs_dl_open(FIXTURE("counter_v1"), &err);
  assert_non_null(h);
  assert_non_null(hs_dl_sym(h, "hotswap_plugin_entry", "counter.so",
                            HS_ENOENTRY, "entry", &err));
  hs_error_clear(&err);
  assert_null(
      hs_dl_sym(h, "fx_load", "counter.so", HS_ENOENTRY, "entry", &err));
  assert_int_equal(err.code, HS_ENOENTRY);
  assert_string_equal(err.stage, "entry");
  assert_string_equal(err.msg, "counter.so does not export fx_load");
  assert_null(hs_dl_sym(h, "x", "counter.so", HS_EINVAL, "selftest", &err));
  assert_int_equal(err.code, HS_EINVAL);
  assert_string_equal(err.stage, "selftest");
  assert_int_equal(hs_dl_close(h, FIXTURE("counter_v1")), 1);
}

/* Two opens of one path share the object: the first close leaves it. */
static void test_dl_close_sees_other_references(void **state) {
  hs_error err;
  void *a, *b;

  (void)state;
  a = hs_dl_open(FIXTURE("counter_v1b"), &err);
  b = hs_dl_open(FIXTURE("counter_v1b"), &err);
  assert_non_null(a);
  assert_ptr_equal(a, b);
  assert_int_equal(hs_dl_close(a, FIXTURE("counter_v1b")), 0);
  assert_int_equal(hs_dl_is_loaded(FIXTURE("counter_v1b")), 1);
  assert_int_equal(hs_dl_close(b, FIXTURE("counter_v1b")), 1);
  assert_int_equal(hs_dl_is_loaded(FIXTURE("counter_v1b")), 0);
}

/* Copies of one file at two paths are two objects (why the cache copies). */
static void test_dl_copies_are_separate_objects(void **state) {
  char *p1 = copy_to_tmp(FIXTURE("counter_v1"), ".so");
  char *p2 = copy_to_tmp(FIXTURE("counter_v1"), ".so");
  hs_error err;
  void *a, *b;

  (void)state;
  a = hs_dl_open(p1, &err);
  b = hs_dl_open(p2, &err);
  assert_non_null(a);
  assert_non_null(b);
  assert_ptr_not_equal(a, b);
  assert_ptr_not_equal(
      hs_dl_sym(a, "hotswap_plugin_entry", "a", HS_ENOENTRY, "entry", &err),
      hs_dl_sym(b, "hotswap_plugin_entry", "b", HS_ENOENTRY, "entry", &err));
  assert_int_equal(hs_dl_close(a, p1), 1);
  assert_int_equal(hs_dl_is_loaded(p2), 1);
  assert_int_equal(hs_dl_close(b, p2), 1);
  unlink(p1);
  unlink(p2);
  free(p1);
  free(p2);
}

/* A PIE executable passes the ELF check (it is ET_DYN) but the dynamic
 * loader refuses it. Runs in a child: it is a whole program. */
static void test_dl_refuses_executable(void **state) {
  char *exe = copy_to_tmp("/proc/self/exe", "");
  pid_t pid;
  int status;

  (void)state;
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    hs_error err;
    void *h = hs_dl_open(exe, &err);
    _exit(h == NULL && err.code == HS_EDLOPEN &&
                  strcmp(err.stage, "open") == 0 && strstr(err.msg, exe)
              ? 0
              : 1);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  unlink(exe);
  free(exe);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_dl_close_of_unknown_path(void **state) {
  (void)state;
  assert_int_equal(hs_dl_is_loaded("/nonexistent/counter.so"), 0);
  assert_int_equal(hs_dl_close(NULL, "/nonexistent/counter.so"), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dl_open_and_close_fixture),
      cmocka_unit_test(test_dl_open_copies_dlerror),
      cmocka_unit_test(test_dl_open_reports_missing_file),
      cmocka_unit_test(test_dl_sym_names_symbol_and_file),
      cmocka_unit_test(test_dl_close_sees_other_references),
      cmocka_unit_test(test_dl_copies_are_separate_objects),
      cmocka_unit_test(test_dl_refuses_executable),
      cmocka_unit_test(test_dl_close_of_unknown_path),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
