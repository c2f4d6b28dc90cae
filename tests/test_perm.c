/*
 * test_perm.c - who could have written a file: trusted and refused modes
 * and owners, each refusal's exact words, the path named through the
 * directory fd, and links to the plugin directory. Changing a file's owner
 * or group to someone else's needs root: those cases say they are skipped
 * otherwise.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "perm.h"

#define FIX "(or start hotswap with --allow-insecure)"
#define NO_GROUP 54321 /* a gid no group has, assumed */

typedef struct env {
  char dir[64];   /* mkdtemp'd, 0700 */
  char file[128]; /* dir/plugin.so, 0644 */
  int dirfd;
} env;

static int setup(void **state) {
  env *e = calloc(1, sizeof(*e));
  int fd;
  if (!e)
    return -1;
  snprintf(e->dir, sizeof(e->dir), "/tmp/hs-test-perm-XXXXXX");
  if (!mkdtemp(e->dir))
    return -1;
  snprintf(e->file, sizeof(e->file), "%s/plugin.so", e->dir);
  fd = open(e->file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    return -1;
  close(fd);
  if (chmod(e->file, 0644) != 0) /* whatever the umask */
    return -1;
  e->dirfd = open(e->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  *state = e;
  return e->dirfd >= 0 ? 0 : -1;
}

static int teardown(void **state) {
  env *e = *state;
  char link[160];
  snprintf(link, sizeof(link), "%s/link", e->dir);
  unlink(link);
  unlink(e->file);
  rmdir(e->dir);
  close(e->dirfd);
  free(e);
  return 0;
}

/* hs_perm_check_fd on the file, opened, named relative to the dir. */
static int check_file(env *e, hs_error *err) {
  int fd = openat(e->dirfd, "plugin.so", O_RDONLY | O_CLOEXEC);
  assert_true(fd >= 0);
  hs_error_clear(err);
  int rc = hs_perm_check_fd(fd, e->dirfd, "plugin.so", "copy", err);
  close(fd);
  return rc;
}

/* 1 if gid is our primary group and lists nobody but us. */
static int own_private_group(gid_t gid) {
  struct passwd *pw = getpwuid(geteuid());
  struct group *gr = getgrgid(gid);
  if (!pw || !gr || pw->pw_gid != gid)
    return 0;
  for (char **m = gr->gr_mem; *m; m++)
    if (strcmp(*m, pw->pw_name) != 0)
      return 0;
  return 1;
}

static void test_perm_accepts_own_file(void **state) {
  env *e = *state;
  hs_error err;

  assert_int_equal(check_file(e, &err), 0);
  assert_int_equal(chmod(e->file, 0755), 0);
  assert_int_equal(check_file(e, &err), 0);
  assert_int_equal(hs_perm_check_fd(e->dirfd, AT_FDCWD, NULL, "scan", &err),
                   0);
}

static void test_perm_refuses_world_writable(void **state) {
  env *e = *state;
  hs_error err;
  char want[512];

  assert_int_equal(chmod(e->file, 0666), 0);
  assert_int_equal(check_file(e, &err), HS_EINSECURE);
  assert_string_equal(err.stage, "copy");
  snprintf(want, sizeof(want),
           "%s is writable by other users (mode 0666): they could change "
           "the code hotswap runs; chmod go-w %s " FIX,
           e->file, e->file);
  assert_string_equal(err.msg, want);
}

static void test_perm_refuses_world_writable_dir_even_sticky(void **state) {
  env *e = *state;
  hs_error err;
  char want[512];

  assert_int_equal(chmod(e->dir, 01777), 0);
  assert_int_equal(hs_perm_check_fd(e->dirfd, AT_FDCWD, NULL, "scan", &err),
                   HS_EINSECURE);
  snprintf(want, sizeof(want),
           "%s is writable by other users (mode 1777): they could change "
           "the code hotswap runs; chmod go-w %s " FIX,
           e->dir, e->dir);
  assert_string_equal(err.msg, want);
  assert_int_equal(chmod(e->dir, 0700), 0);
}

/* Group-writable with the owner's own private group: what umask 002 makes
 * on systems with one group per user. */
static void test_perm_accepts_private_group_writable(void **state) {
  env *e = *state;
  hs_error err;

  if (!own_private_group(getegid())) {
    fprintf(stderr, "our primary group has other members: skipped\n");
    skip();
  }
  assert_int_equal(chown(e->file, (uid_t)-1, getegid()), 0);
  assert_int_equal(chmod(e->file, 0664), 0);
  assert_int_equal(check_file(e, &err), 0);
  assert_int_equal(chmod(e->dir, 0770), 0);
  assert_int_equal(hs_perm_check_fd(e->dirfd, AT_FDCWD, NULL, "scan", &err),
                   0);
  assert_int_equal(chmod(e->dir, 0700), 0);
}

static void test_perm_refuses_shared_group_writable(void **state) {
  env *e = *state;
  hs_error err;
  char want[512];

  if (geteuid() != 0) {
    fprintf(stderr, "needs root to give the file another group: skipped\n");
    skip();
  }
  assert_int_equal(chown(e->file, (uid_t)-1, NO_GROUP), 0);
  assert_int_equal(chmod(e->file, 0664), 0);
  assert_int_equal(check_file(e, &err), HS_EINSECURE);
  snprintf(want, sizeof(want),
           "%s is writable by group %d (mode 0664), which is not its "
           "owner's alone: its members could change the code hotswap runs; "
           "chmod g-w %s " FIX,
           e->file, NO_GROUP, e->file);
  assert_string_equal(err.msg, want);
  /* Not writable by that group: fine. */
  assert_int_equal(chmod(e->file, 0644), 0);
  assert_int_equal(check_file(e, &err), 0);
}

static void test_perm_refuses_other_owner(void **state) {
  env *e = *state;
  hs_error err;
  char want[512];
  struct stat st;

  if (geteuid() != 0) {
    fprintf(stderr, "needs root to give the file away: skipped\n");
    skip();
  }
  assert_int_equal(chown(e->file, 65534, (gid_t)-1), 0);
  assert_int_equal(check_file(e, &err), HS_EINSECURE);
  snprintf(want, sizeof(want), "%s is owned by uid 65534", e->file);
  assert_int_equal(strncmp(err.msg, want, strlen(want)), 0);
  assert_non_null(strstr(err.msg, ", neither you nor root: that user could "
                                  "change the code hotswap runs; use a copy "
                                  "of your own " FIX));
  /* Root's files are trusted. */
  assert_int_equal(chown(e->file, 0, (gid_t)-1), 0);
  assert_int_equal(check_file(e, &err), 0);
  /* hs_perm_check itself: a stat of another owner, 0644. */
  memset(&st, 0, sizeof(st));
  st.st_uid = 65534;
  st.st_mode = S_IFREG | 0644;
  assert_int_equal(hs_perm_check(&st, "x.so", "copy", &err), HS_EINSECURE);
}

static void test_perm_checks_links_to_the_directory(void **state) {
  env *e = *state;
  hs_error err;
  char link[160], slash[170];

  snprintf(link, sizeof(link), "%s/link", e->dir);
  snprintf(slash, sizeof(slash), "%s//", link);
  assert_int_equal(symlink("/tmp", link), 0);
  assert_int_equal(hs_perm_check_link(link, "scan", &err), 0);
  assert_int_equal(hs_perm_check_link(slash, "scan", &err), 0);
  assert_int_equal(hs_perm_check_link(e->dir, "scan", &err), 0);
  if (geteuid() != 0) {
    fprintf(stderr, "needs root to give the link away: skipped\n");
    return;
  }
  assert_int_equal(lchown(link, 65534, (gid_t)-1), 0);
  assert_int_equal(hs_perm_check_link(slash, "scan", &err), HS_EINSECURE);
  assert_string_equal(err.stage, "scan");
  assert_int_equal(strncmp(err.msg, link, strlen(link)), 0);
  assert_non_null(strstr(err.msg, " is a symbolic link owned by uid 65534"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_perm_accepts_own_file, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_perm_refuses_world_writable, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(
          test_perm_refuses_world_writable_dir_even_sticky, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_perm_accepts_private_group_writable, setup, teardown),
      cmocka_unit_test_setup_teardown(test_perm_refuses_shared_group_writable,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_perm_refuses_other_owner, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_perm_checks_links_to_the_directory,
                                      setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
