/*
 * test_upgrade.c - finding the host's own executable (hs_upgrade_resolve):
 * the path it was started as, made absolute, or looked up in $PATH like the
 * shell did. The check and the re-exec run through the real binary in
 * test_host_upgrade.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "upgrade.h"

static void test_upgrade_resolve_absolute_and_relative(void **state) {
  char dir[] = "/tmp/test_upgrade.XXXXXX", cwd[PATH_MAX], want[PATH_MAX + 16];
  (void)state;

  assert_non_null(mkdtemp(dir));
  assert_non_null(getcwd(cwd, sizeof(cwd)));
  snprintf(want, sizeof(want), "%s/prog", dir);
  FILE *f = fopen(want, "w");
  assert_non_null(f);
  fclose(f);
  assert_int_equal(chmod(want, 0755), 0);

  char *p = hs_upgrade_resolve(want);
  assert_non_null(p);
  assert_string_equal(p, want);
  free(p);
  /* Started as "./prog" from its directory: absolute afterwards, so a
   * later chdir cannot change what is watched. */
  assert_int_equal(chdir(dir), 0);
  p = hs_upgrade_resolve("./prog");
  assert_int_equal(chdir(cwd), 0);
  assert_non_null(p);
  assert_string_equal(p, want);
  free(p);

  unlink(want);
  rmdir(dir);
}

static void test_upgrade_resolve_searches_path(void **state) {
  char dir[] = "/tmp/test_upgrade.XXXXXX", prog[PATH_MAX + 16];
  char *old = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
  (void)state;

  assert_non_null(mkdtemp(dir));
  snprintf(prog, sizeof(prog), "%s/hs-test-prog", dir);
  FILE *f = fopen(prog, "w");
  assert_non_null(f);
  fclose(f);
  assert_int_equal(chmod(prog, 0755), 0);
  char path[PATH_MAX + 32];
  snprintf(path, sizeof(path), "/nonexistent:%s", dir);
  setenv("PATH", path, 1);

  char *p = hs_upgrade_resolve("hs-test-prog");
  assert_non_null(p);
  assert_string_equal(p, prog);
  free(p);
  /* Not executable: not what the shell would have run. */
  assert_int_equal(chmod(prog, 0644), 0);
  assert_null(hs_upgrade_resolve("hs-test-prog"));
  assert_null(hs_upgrade_resolve("no-such-program-anywhere"));
  assert_null(hs_upgrade_resolve(""));

  if (old)
    setenv("PATH", old, 1);
  free(old);
  unlink(prog);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_upgrade_resolve_absolute_and_relative),
      cmocka_unit_test(test_upgrade_resolve_searches_path),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
