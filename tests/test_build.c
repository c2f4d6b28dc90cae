/*
 * test_build.c - plugins from source: which files are source plugins, the
 * key of a build's inputs, the compiler's argv, the dependency file, the
 * outputs kept per plugin in the cache, and the build environment.
 *
 * Every test works on real files in a fresh directory from mkdtemp, with a
 * real cache created inside it. No compiler is run, except by the one test
 * that checks a real compiler's dependency file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "build.h"
#include "cache.h"

/* Each test gets a plugin directory, a cache inside it and an environment
 * whose strings live here (no hs_build_env_init, no compiler lookup). */
typedef struct fx {
  char dir[64];      /* the plugin directory */
  int dirfd;         /* O_DIRECTORY fd of dir */
  hs_cache cache;
  char cc[64];       /* env.cc */
  char inc[64];      /* env.include_dir */
  hs_build_env env;
  hs_build b;
} fx;

static void put(int dirfd, const char *name, const char *text) {
  int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  size_t len = strlen(text);

  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, len), (ssize_t)len);
  close(fd);
}

static int exists(int dirfd, const char *name) {
  return faccessat(dirfd, name, F_OK, 0) == 0;
}

/* Entries of a directory other than . and .. */
static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *de;
  int n = 0;

  assert_non_null(d);
  while ((de = readdir(d)) != NULL)
    if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
      n++;
  closedir(d);
  return n;
}

/* Removes dir and everything under it. */
static void remove_tree(int parentfd, const char *dir) {
  int fd = openat(parentfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC |
                                     O_NOFOLLOW);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  struct dirent *de;

  if (d == NULL) {
    if (fd >= 0)
      close(fd);
    return;
  }
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (unlinkat(dirfd(d), de->d_name, 0) != 0)
      remove_tree(dirfd(d), de->d_name);
  }
  closedir(d);
  unlinkat(parentfd, dir, AT_REMOVEDIR);
}

static int setup(void **state) {
  fx *f = calloc(1, sizeof(*f));
  hs_error err;

  assert_non_null(f);
  snprintf(f->dir, sizeof(f->dir), "/tmp/hs-test-build-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  f->dirfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  assert_true(f->dirfd >= 0);
  assert_int_equal(hs_cache_init(&f->cache, f->dir, &err), 0);
  snprintf(f->cc, sizeof(f->cc), "cc");
  snprintf(f->inc, sizeof(f->inc), "/opt/hs/include");
  f->env.cc = f->cc;
  f->env.cc_id = 42;
  f->env.include_dir = f->inc;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;

  hs_build_free(&f->b, NULL);
  hs_cache_close(&f->cache);
  close(f->dirfd);
  remove_tree(AT_FDCWD, f->dir);
  free(f);
  return 0;
}

/* Sets b's dependencies to the given paths (NULL-terminated). */
static void set_deps(hs_build *b, ...) {
  va_list ap;
  const char *p;

  for (size_t i = 0; i < b->ndeps; i++)
    free(b->deps[i]);
  free(b->deps);
  b->deps = calloc(8, sizeof(*b->deps));
  b->ndeps = 0;
  assert_non_null(b->deps);
  va_start(ap, b);
  while ((p = va_arg(ap, const char *)) != NULL) {
    assert_true(b->ndeps < 8);
    b->deps[b->ndeps] = strdup(p);
    assert_non_null(b->deps[b->ndeps]);
    b->ndeps++;
  }
  va_end(ap);
}

static uint64_t key_of(fx *f, const char *stem, int is_dir) {
  uint64_t key = 0;
  hs_error err;

  hs_error_clear(&err);
  assert_int_equal(
      hs_build_key(&f->env, &f->b, f->dirfd, stem, is_dir, &key, &err), 0);
  assert_int_equal(err.code, 0);
  return key;
}

/* Compares argv with the expected words (NULL-terminated) one by one, so
 * that a failure names the first word that differs. */
static void expect_argv(char **argv, const char *const *want) {
  size_t i;

  assert_non_null(argv);
  for (i = 0; want[i]; i++) {
    if (argv[i] == NULL)
      fail_msg("argv ends at word %zu, want \"%s\"", i, want[i]);
    if (strcmp(argv[i], want[i]) != 0)
      fail_msg("argv[%zu] is \"%s\", want \"%s\"", i, argv[i], want[i]);
  }
  if (argv[i] != NULL)
    fail_msg("argv has extra word %zu: \"%s\"", i, argv[i]);
}

/* ---- which files are source plugins ----------------------------------- */

static void test_build_is_source_only_for_name_dot_c(void **state) {
  (void)state;
  assert_int_equal(hs_build_is_source("hello.c"), 1);
  assert_int_equal(hs_build_is_source("a.c"), 1);
  assert_int_equal(hs_build_is_source("two.parts.c"), 1);
  assert_int_equal(hs_build_is_source(".x.c"), 0);  /* hidden */
  assert_int_equal(hs_build_is_source(".c"), 0);
  assert_int_equal(hs_build_is_source("c"), 0);
  assert_int_equal(hs_build_is_source(""), 0);
  assert_int_equal(hs_build_is_source("x.h"), 0);
  assert_int_equal(hs_build_is_source("x.so"), 0);
  assert_int_equal(hs_build_is_source("x.cc"), 0);
  assert_int_equal(hs_build_is_source("x.c~"), 0);
  assert_int_equal(hs_build_is_source("x/c"), 0);
  assert_int_equal(hs_build_is_source("x/y.c"), 0); /* not in the dir */
}

static void test_build_is_dir_plugin_needs_a_c_file(void **state) {
  fx *f = *state;

  assert_int_equal(mkdirat(f->dirfd, "empty", 0700), 0);
  assert_int_equal(hs_build_is_dir_plugin(f->dirfd, "empty"), 0);

  assert_int_equal(mkdirat(f->dirfd, "headers", 0700), 0);
  put(f->dirfd, "headers/a.h", "int a;\n");
  put(f->dirfd, "headers/flags", "-lm\n");
  put(f->dirfd, "headers/.hidden.c", "int h;\n");
  assert_int_equal(hs_build_is_dir_plugin(f->dirfd, "headers"), 0);

  assert_int_equal(mkdirat(f->dirfd, "multi", 0700), 0);
  put(f->dirfd, "multi/main.c", "int m;\n");
  put(f->dirfd, "multi/util.h", "int u;\n");
  assert_int_equal(hs_build_is_dir_plugin(f->dirfd, "multi"), 1);

  put(f->dirfd, "file.c", "int x;\n");
  assert_int_equal(hs_build_is_dir_plugin(f->dirfd, "file.c"), 0);
  assert_int_equal(hs_build_is_dir_plugin(f->dirfd, "missing"), 0);
}

/* ---- the key of a build's inputs -------------------------------------- */

static void test_build_key_same_inputs_same_key(void **state) {
  fx *f = *state;
  uint64_t k;

  put(f->dirfd, "hello.c", "int x = 1;\n");
  k = key_of(f, "hello", 0);
  assert_int_equal(key_of(f, "hello", 0), k);
  /* Rewriting the same bytes is no change. */
  put(f->dirfd, "hello.c", "int x = 1;\n");
  assert_int_equal(key_of(f, "hello", 0), k);
}

static void test_build_key_changes_with_source(void **state) {
  fx *f = *state;
  uint64_t k1, k2;

  put(f->dirfd, "hello.c", "int x = 1;\n");
  k1 = key_of(f, "hello", 0);
  put(f->dirfd, "hello.c", "int x = 2;\n");
  k2 = key_of(f, "hello", 0);
  assert_int_not_equal(k1, k2);
  /* Going back to content built before finds the earlier key. */
  put(f->dirfd, "hello.c", "int x = 1;\n");
  assert_int_equal(key_of(f, "hello", 0), k1);
}

static void test_build_key_changes_with_flags_file(void **state) {
  fx *f = *state;
  uint64_t none, lm, lpthread;

  put(f->dirfd, "hello.c", "int x;\n");
  none = key_of(f, "hello", 0);
  put(f->dirfd, "hello.flags", "-lm\n");
  lm = key_of(f, "hello", 0);
  assert_int_not_equal(lm, none);
  put(f->dirfd, "hello.flags", "-lpthread\n");
  lpthread = key_of(f, "hello", 0);
  assert_int_not_equal(lpthread, lm);
  assert_int_not_equal(lpthread, none);
  /* An empty flags file is a state of its own, and removing it goes back. */
  put(f->dirfd, "hello.flags", "");
  assert_int_not_equal(key_of(f, "hello", 0), none);
  assert_int_equal(unlinkat(f->dirfd, "hello.flags", 0), 0);
  assert_int_equal(key_of(f, "hello", 0), none);
  /* Another plugin's flags file does not count. */
  put(f->dirfd, "other.flags", "-lm\n");
  assert_int_equal(key_of(f, "hello", 0), none);
}

static void test_build_key_changes_with_any_file_of_dir_plugin(void **state) {
  fx *f = *state;
  uint64_t k0, k;

  assert_int_equal(mkdirat(f->dirfd, "multi", 0700), 0);
  put(f->dirfd, "multi/main.c", "int m;\n");
  put(f->dirfd, "multi/util.c", "int u;\n");
  put(f->dirfd, "multi/util.h", "extern int u;\n");
  k0 = key_of(f, "multi", 1);
  assert_int_equal(key_of(f, "multi", 1), k0);

  put(f->dirfd, "multi/util.c", "int u = 3;\n");
  k = key_of(f, "multi", 1);
  assert_int_not_equal(k, k0);
  put(f->dirfd, "multi/util.c", "int u;\n");
  assert_int_equal(key_of(f, "multi", 1), k0);

  put(f->dirfd, "multi/util.h", "extern int u; /* edited */\n");
  assert_int_not_equal(key_of(f, "multi", 1), k0);
  put(f->dirfd, "multi/util.h", "extern int u;\n");
  assert_int_equal(key_of(f, "multi", 1), k0);

  put(f->dirfd, "multi/flags", "-lm\n");
  k = key_of(f, "multi", 1);
  assert_int_not_equal(k, k0);
  put(f->dirfd, "multi/flags", "-lpthread\n");
  assert_int_not_equal(key_of(f, "multi", 1), k);
  assert_int_equal(unlinkat(f->dirfd, "multi/flags", 0), 0);
  assert_int_equal(key_of(f, "multi", 1), k0);

  put(f->dirfd, "multi/notes.txt", "new file\n");
  assert_int_not_equal(key_of(f, "multi", 1), k0);
  assert_int_equal(unlinkat(f->dirfd, "multi/notes.txt", 0), 0);
  assert_int_equal(key_of(f, "multi", 1), k0);

  /* NAME.flags beside the directory is not a directory plugin's flags. */
  put(f->dirfd, "multi.flags", "-lm\n");
  assert_int_equal(key_of(f, "multi", 1), k0);
}

static void test_build_key_changes_with_dependency(void **state) {
  fx *f = *state;
  char hdr[PATH_MAX];
  uint64_t none, k1, k2;

  put(f->dirfd, "hello.c", "#include \"../inc/shared.h\"\n");
  assert_int_equal(mkdirat(f->dirfd, "inc", 0700), 0);
  put(f->dirfd, "inc/shared.h", "#define N 1\n");
  snprintf(hdr, sizeof(hdr), "%s/inc/shared.h", f->dir);
  none = key_of(f, "hello", 0);

  set_deps(&f->b, hdr, (char *)NULL);
  k1 = key_of(f, "hello", 0);
  assert_int_not_equal(k1, none);
  assert_int_equal(key_of(f, "hello", 0), k1);
  put(f->dirfd, "inc/shared.h", "#define N 2\n");
  k2 = key_of(f, "hello", 0);
  assert_int_not_equal(k2, k1);
  put(f->dirfd, "inc/shared.h", "#define N 1\n");
  assert_int_equal(key_of(f, "hello", 0), k1);
  /* A dependency that disappears is a change too. */
  assert_int_equal(unlinkat(f->dirfd, "inc/shared.h", 0), 0);
  assert_int_not_equal(key_of(f, "hello", 0), k1);
}

static void test_build_key_ignores_headers_under_usr(void **state) {
  fx *f = *state;
  uint64_t none;

  put(f->dirfd, "hello.c", "#include <stdio.h>\n");
  none = key_of(f, "hello", 0);
  /* Existing or not, a system header leaves the key alone (the
   * compiler's identity stands for it). */
  set_deps(&f->b, "/usr/include/stdio.h",
           "/usr/hs-test-no-such-dir/never.h", (char *)NULL);
  assert_int_equal(key_of(f, "hello", 0), none);
  /* The same missing file outside /usr does count. */
  set_deps(&f->b, "/opt/hs-test-no-such-dir/never.h", (char *)NULL);
  assert_int_not_equal(key_of(f, "hello", 0), none);
}

static void test_build_key_changes_with_werror(void **state) {
  fx *f = *state;
  uint64_t k0;

  put(f->dirfd, "hello.c", "int x;\n");
  k0 = key_of(f, "hello", 0);
  f->env.werror = 1;
  assert_int_not_equal(key_of(f, "hello", 0), k0);
  f->env.werror = 0;
  assert_int_equal(key_of(f, "hello", 0), k0);
  /* Another compiler, or another hotswap.h, is another build too. */
  f->env.cc_id = 43;
  assert_int_not_equal(key_of(f, "hello", 0), k0);
  f->env.cc_id = 42;
  snprintf(f->inc, sizeof(f->inc), "/opt/hs2/include");
  assert_int_not_equal(key_of(f, "hello", 0), k0);
}

static void test_build_key_fails_without_source(void **state) {
  fx *f = *state;
  uint64_t key = 7;
  hs_error err;

  hs_error_clear(&err);
  put(f->dirfd, "hello.flags", "-lm\n");
  assert_int_equal(
      hs_build_key(&f->env, &f->b, f->dirfd, "hello", 0, &key, &err),
      HS_ENOENT);
  assert_int_equal(err.code, HS_ENOENT);
  assert_string_equal(err.stage, "copy");
  assert_non_null(strstr(err.msg, "hello.c"));
  assert_int_equal(key, 7); /* untouched */

  /* A directory plugin without a .c file (or without the directory). */
  assert_int_equal(mkdirat(f->dirfd, "multi", 0700), 0);
  put(f->dirfd, "multi/util.h", "int u;\n");
  hs_error_clear(&err);
  assert_true(hs_build_key(&f->env, &f->b, f->dirfd, "multi", 1, &key,
                           &err) < 0);
  assert_string_equal(err.stage, "copy");
  assert_non_null(strstr(err.msg, "multi"));
  hs_error_clear(&err);
  assert_true(hs_build_key(&f->env, &f->b, f->dirfd, "gone", 1, &key, &err) <
              0);
  assert_string_equal(err.stage, "copy");
  assert_int_equal(key, 7);
}

/* Every input the key reads must be one other users could not write: the
 * source, the flags, a directory plugin and its files, the headers of the
 * last build and the plugin directory; unless allow_insecure. */
static void expect_insecure(fx *f, const char *stem, int is_dir,
                            const char *path) {
  uint64_t key = 7;
  hs_error err;
  char want[PATH_MAX + 64];

  hs_error_clear(&err);
  assert_int_equal(
      hs_build_key(&f->env, &f->b, f->dirfd, stem, is_dir, &key, &err),
      HS_EINSECURE);
  assert_string_equal(err.stage, "copy");
  snprintf(want, sizeof(want), "%s is writable by other users", path);
  if (strncmp(err.msg, want, strlen(want)) != 0)
    fail_msg("\"%s\" does not start with \"%s\"", err.msg, want);
  assert_int_equal(key, 7);
  f->env.allow_insecure = 1;
  key_of(f, stem, is_dir);
  f->env.allow_insecure = 0;
}

static void test_build_key_refuses_inputs_others_could_write(void **state) {
  fx *f = *state;
  char path[PATH_MAX];

  put(f->dirfd, "hello.c", "int x;\n");
  put(f->dirfd, "hello.flags", "-lm\n");
  put(f->dirfd, "hello.h", "int y;\n");
  key_of(f, "hello", 0);
  const char *const files[] = {"hello.c", "hello.flags", "hello.h"};
  snprintf(path, sizeof(path), "%s/hello.h", f->dir);
  set_deps(&f->b, path, (char *)NULL);
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(fchmodat(f->dirfd, files[i], 0666, 0), 0);
    snprintf(path, sizeof(path), "%s/%s", f->dir, files[i]);
    expect_insecure(f, "hello", 0, path);
    assert_int_equal(fchmodat(f->dirfd, files[i], 0644, 0), 0);
  }
  key_of(f, "hello", 0);

  assert_int_equal(mkdirat(f->dirfd, "multi", 0700), 0);
  put(f->dirfd, "multi/a.c", "int a;\n");
  key_of(f, "multi", 1);
  assert_int_equal(fchmodat(f->dirfd, "multi/a.c", 0606, 0), 0);
  snprintf(path, sizeof(path), "%s/multi/a.c", f->dir);
  expect_insecure(f, "multi", 1, path);
  assert_int_equal(fchmodat(f->dirfd, "multi/a.c", 0600, 0), 0);
  assert_int_equal(fchmodat(f->dirfd, "multi", 0777, 0), 0);
  snprintf(path, sizeof(path), "%s/multi", f->dir);
  expect_insecure(f, "multi", 1, path);
  assert_int_equal(fchmodat(f->dirfd, "multi", 0700, 0), 0);

  assert_int_equal(chmod(f->dir, 0757), 0);
  expect_insecure(f, "hello", 0, f->dir);
  assert_int_equal(chmod(f->dir, 0700), 0);
}

/* ---- the compiler's argv ---------------------------------------------- */

static void test_build_argv_single_file(void **state) {
  fx *f = *state;
  char idir[128], out[256], dep[256];
  char **argv;

  put(f->dirfd, "hello.c", "int x;\n");
  snprintf(idir, sizeof(idir), "-I%s", f->dir);
  snprintf(out, sizeof(out), "%s/hello.1.so", f->cache.dir);
  snprintf(dep, sizeof(dep), "%s/hello.1.d", f->cache.dir);

  argv = hs_build_argv(&f->env, f->dirfd, f->dir, "hello", 0, out, dep);
  {
    const char *const want[] = {
        "cc", "-shared", "-fPIC", "-O2", "-g", "-Wall", "-fvisibility=hidden",
        "-MMD", "-I/opt/hs/include", idir, "-MF", dep, "-o", out, "hello.c",
        NULL};
    expect_argv(argv, want);
  }
  hs_build_argv_free(argv);

  /* The flags file's words come last; comments are skipped. */
  put(f->dirfd, "hello.flags",
      "# link with libm\n"
      "-lm   -DGREETING=hi # trailing comment -DNOT_THIS\n"
      "\t-DTAB=1\r\n"
      "#-DNOR_THIS\n"
      "-DLAST");
  argv = hs_build_argv(&f->env, f->dirfd, f->dir, "hello", 0, out, dep);
  {
    const char *const want[] = {
        "cc", "-shared", "-fPIC", "-O2", "-g", "-Wall", "-fvisibility=hidden",
        "-MMD", "-I/opt/hs/include", idir, "-MF", dep, "-o", out, "hello.c",
        "-lm", "-DGREETING=hi", "-DTAB=1", "-DLAST", NULL};
    expect_argv(argv, want);
  }
  hs_build_argv_free(argv);
}

static void test_build_argv_dir_plugin(void **state) {
  fx *f = *state;
  char idir[128], isub[160], out[256], dep[256];
  char **argv;

  assert_int_equal(mkdirat(f->dirfd, "multi", 0700), 0);
  put(f->dirfd, "multi/zeta.c", "int z;\n");
  put(f->dirfd, "multi/alpha.c", "int a;\n");
  put(f->dirfd, "multi/main.c", "int m;\n");
  put(f->dirfd, "multi/util.h", "int u;\n");
  put(f->dirfd, "multi/.hidden.c", "int h;\n");
  put(f->dirfd, "multi/flags", "-lm # math\n-lpthread\n");
  put(f->dirfd, "multi.flags", "-DNOT_FOR_A_DIRECTORY\n");
  snprintf(idir, sizeof(idir), "-I%s", f->dir);
  snprintf(isub, sizeof(isub), "-I%s/multi", f->dir);
  snprintf(out, sizeof(out), "%s/multi.1.so", f->cache.dir);
  snprintf(dep, sizeof(dep), "%s/multi.1.d", f->cache.dir);

  argv = hs_build_argv(&f->env, f->dirfd, f->dir, "multi", 1, out, dep);
  {
    const char *const want[] = {
        "cc", "-shared", "-fPIC", "-O2", "-g", "-Wall", "-fvisibility=hidden",
        "-MMD", "-I/opt/hs/include", idir, "-MF", dep, "-o", out, isub,
        "multi/alpha.c", "multi/main.c", "multi/zeta.c", "-lm", "-lpthread",
        NULL};
    expect_argv(argv, want);
  }
  hs_build_argv_free(argv);

  /* No .c file: no argv. */
  assert_int_equal(mkdirat(f->dirfd, "headers", 0700), 0);
  put(f->dirfd, "headers/a.h", "int a;\n");
  assert_null(
      hs_build_argv(&f->env, f->dirfd, f->dir, "headers", 1, out, dep));
  assert_null(hs_build_argv(&f->env, f->dirfd, f->dir, "gone", 1, out, dep));
}

static void test_build_argv_splits_cc_and_adds_werror_color(void **state) {
  fx *f = *state;
  char idir[128];
  char **argv;

  put(f->dirfd, "hello.c", "int x;\n");
  put(f->dirfd, "hello.flags", "-lm\n");
  snprintf(idir, sizeof(idir), "-I%s", f->dir);
  snprintf(f->cc, sizeof(f->cc), "ccache  cc\t-m64");
  f->env.werror = 1;
  f->env.color = 1;

  argv = hs_build_argv(&f->env, f->dirfd, f->dir, "hello", 0, "/c/o.so",
                       "/c/o.d");
  {
    const char *const want[] = {
        "ccache", "cc", "-m64", "-shared", "-fPIC", "-O2", "-g", "-Wall",
        "-fvisibility=hidden", "-MMD", "-fdiagnostics-color=always",
        "-Werror", "-I/opt/hs/include", idir, "-MF", "/c/o.d", "-o",
        "/c/o.so", "hello.c", "-lm", NULL};
    expect_argv(argv, want);
  }
  hs_build_argv_free(argv);

  /* Each on its own. */
  f->env.color = 0;
  argv = hs_build_argv(&f->env, f->dirfd, f->dir, "hello", 0, "/c/o.so",
                       "/c/o.d");
  assert_non_null(argv);
  for (char **a = argv; *a; a++)
    assert_string_not_equal(*a, "-fdiagnostics-color=always");
  assert_string_equal(argv[10], "-Werror");
  hs_build_argv_free(argv);
  f->env.color = 1;
  f->env.werror = 0;
  argv = hs_build_argv(&f->env, f->dirfd, f->dir, "hello", 0, "/c/o.so",
                       "/c/o.d");
  assert_non_null(argv);
  for (char **a = argv; *a; a++)
    assert_string_not_equal(*a, "-Werror");
  assert_string_equal(argv[10], "-fdiagnostics-color=always");
  hs_build_argv_free(argv);
}

/* ---- the dependency file ---------------------------------------------- */

static void test_build_read_deps_parses_make_rules(void **state) {
  fx *f = *state;
  char depfile[128], want[256];

  snprintf(depfile, sizeof(depfile), "%s/hello.d", f->dir);
  put(f->dirfd, "hello.d",
      "/cache/hello.1.so: hello.c /opt/inc/hotswap.h \\\n"
      "  sub/my\\ header.h \\\n"
      " /abs/with\\ two\\ spaces.h\t/abs/crlf.h \\\r\n"
      "  last.h\n");
  assert_int_equal(hs_build_read_deps(&f->b, depfile, f->dir), 0);
  assert_int_equal(f->b.ndeps, 6);
  snprintf(want, sizeof(want), "%s/hello.c", f->dir);
  assert_string_equal(f->b.deps[0], want);
  assert_string_equal(f->b.deps[1], "/opt/inc/hotswap.h");
  snprintf(want, sizeof(want), "%s/sub/my header.h", f->dir);
  assert_string_equal(f->b.deps[2], want);
  assert_string_equal(f->b.deps[3], "/abs/with two spaces.h");
  assert_string_equal(f->b.deps[4], "/abs/crlf.h");
  snprintf(want, sizeof(want), "%s/last.h", f->dir);
  assert_string_equal(f->b.deps[5], want);

  /* Reading again replaces the list. */
  put(f->dirfd, "hello.d", "x.so: only.h\n");
  assert_int_equal(hs_build_read_deps(&f->b, depfile, "/plugins"), 0);
  assert_int_equal(f->b.ndeps, 1);
  assert_string_equal(f->b.deps[0], "/plugins/only.h");

  /* A missing file is an error and keeps what was known. */
  snprintf(depfile, sizeof(depfile), "%s/missing.d", f->dir);
  assert_int_equal(hs_build_read_deps(&f->b, depfile, f->dir), HS_ENOENT);
  assert_int_equal(f->b.ndeps, 1);
  assert_string_equal(f->b.deps[0], "/plugins/only.h");
}

static void test_build_depends_on_exact_paths(void **state) {
  fx *f = *state;
  char depfile[128], path[256];

  assert_int_equal(hs_build_depends_on(&f->b, "/anything.h"), 0);
  snprintf(depfile, sizeof(depfile), "%s/hello.d", f->dir);
  put(f->dirfd, "hello.d",
      "hello.so: hello.c \\\n inc/shared.h /opt/x/my\\ lib.h\n");
  assert_int_equal(hs_build_read_deps(&f->b, depfile, f->dir), 0);
  snprintf(path, sizeof(path), "%s/hello.c", f->dir);
  assert_int_equal(hs_build_depends_on(&f->b, path), 1);
  snprintf(path, sizeof(path), "%s/inc/shared.h", f->dir);
  assert_int_equal(hs_build_depends_on(&f->b, path), 1);
  assert_int_equal(hs_build_depends_on(&f->b, "/opt/x/my lib.h"), 1);
  assert_int_equal(hs_build_depends_on(&f->b, "inc/shared.h"), 0);
  assert_int_equal(hs_build_depends_on(&f->b, "/opt/x/my"), 0);
  snprintf(path, sizeof(path), "%s/inc/other.h", f->dir);
  assert_int_equal(hs_build_depends_on(&f->b, path), 0);
}

/* Runs argv in dir, output to /dev/null. Returns the exit status, or -1. */
static int run_in(const char *dir, char **argv) {
  int status;
  pid_t pid = fork();

  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
      dup2(null, 1);
      dup2(null, 2);
    }
    if (chdir(dir) == 0)
      execvp(argv[0], argv);
    _exit(127);
  }
  if (pid < 0 || waitpid(pid, &status, 0) != pid)
    return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The one compile: the real compiler's dependency file, read back, names
 * the plugin's own header, and the key then follows that header. */
static void test_build_read_deps_of_real_compile(void **state) {
  fx *f = *state;
  char out[256], dep[256], hdr[256];
  char **argv;
  uint64_t k1;
  int rc;

  put(f->dirfd, "hello.c",
      "#include \"hello_conf.h\"\nint hello_n = HELLO_N;\n");
  put(f->dirfd, "hello_conf.h", "#define HELLO_N 1\n");
  snprintf(out, sizeof(out), "%s/hello.1.so", f->cache.dir);
  snprintf(dep, sizeof(dep), "%s/hello.1.d", f->cache.dir);
  argv = hs_build_argv(&f->env, f->dirfd, f->dir, "hello", 0, out, dep);
  assert_non_null(argv);
  rc = run_in(f->dir, argv);
  hs_build_argv_free(argv);
  if (rc == 127 || rc == -1)
    skip(); /* no compiler here */
  assert_int_equal(rc, 0);
  assert_int_equal(access(out, F_OK), 0);

  assert_int_equal(hs_build_read_deps(&f->b, dep, f->dir), 0);
  snprintf(hdr, sizeof(hdr), "%s/hello_conf.h", f->dir);
  assert_int_equal(hs_build_depends_on(&f->b, hdr), 1);
  k1 = key_of(f, "hello", 0);
  put(f->dirfd, "hello_conf.h", "#define HELLO_N 2\n");
  assert_int_not_equal(key_of(f, "hello", 0), k1);
}

/* ---- outputs kept per plugin ------------------------------------------ */

/* Stores key as "p.<n>.so", with its .so and .d made in the cache. */
static void store_output(fx *f, uint64_t key, int n) {
  char name[64], d[64];

  snprintf(name, sizeof(name), "p.%d.so", n);
  snprintf(d, sizeof(d), "p.%d.d", n);
  put(f->cache.dirfd, name, "so");
  put(f->cache.dirfd, d, "d");
  hs_build_store(&f->b, &f->cache, key, strdup(name));
}

static int output_exists(fx *f, int n) {
  char name[64], d[64];
  int so, dd;

  snprintf(name, sizeof(name), "p.%d.so", n);
  snprintf(d, sizeof(d), "p.%d.d", n);
  so = exists(f->cache.dirfd, name);
  dd = exists(f->cache.dirfd, d);
  assert_int_equal(so, dd); /* both or neither */
  return so;
}

static void test_build_store_maps_keys_to_names(void **state) {
  fx *f = *state;

  assert_null(hs_build_lookup(&f->b, 100));
  store_output(f, 100, 1);
  store_output(f, 200, 2);
  assert_string_equal(hs_build_lookup(&f->b, 100), "p.1.so");
  assert_string_equal(hs_build_lookup(&f->b, 200), "p.2.so");
  assert_null(hs_build_lookup(&f->b, 300));
  assert_int_equal(f->b.nout, 2);
  assert_true(output_exists(f, 1));
  assert_true(output_exists(f, 2));
}

static void test_build_store_evicts_oldest_after_keep(void **state) {
  fx *f = *state;

  for (int i = 1; i <= HS_BUILD_KEEP; i++)
    store_output(f, (uint64_t)i * 1000, i);
  assert_int_equal(f->b.nout, HS_BUILD_KEEP);
  for (int i = 1; i <= HS_BUILD_KEEP; i++) {
    assert_non_null(hs_build_lookup(&f->b, (uint64_t)i * 1000));
    assert_true(output_exists(f, i));
  }
  assert_int_equal(count_entries(f->cache.dir), 2 * HS_BUILD_KEEP);

  /* The 9th evicts the 1st, files and all. */
  store_output(f, 9000, 9);
  assert_int_equal(f->b.nout, HS_BUILD_KEEP);
  assert_null(hs_build_lookup(&f->b, 1000));
  assert_false(output_exists(f, 1));
  assert_string_equal(hs_build_lookup(&f->b, 9000), "p.9.so");
  for (int i = 2; i <= 9; i++) {
    assert_non_null(hs_build_lookup(&f->b, (uint64_t)i * 1000));
    assert_true(output_exists(f, i));
  }
  assert_int_equal(count_entries(f->cache.dir), 2 * HS_BUILD_KEEP);

  /* The 10th evicts the 2nd. */
  store_output(f, 10000, 10);
  assert_null(hs_build_lookup(&f->b, 2000));
  assert_false(output_exists(f, 2));
  assert_true(output_exists(f, 3));
  assert_string_equal(hs_build_lookup(&f->b, 10000), "p.10.so");
  assert_int_equal(count_entries(f->cache.dir), 2 * HS_BUILD_KEEP);
}

static void test_build_store_existing_key_replaces_name(void **state) {
  fx *f = *state;

  store_output(f, 100, 1);
  store_output(f, 200, 2);
  store_output(f, 100, 3);
  assert_int_equal(f->b.nout, 2);
  assert_string_equal(hs_build_lookup(&f->b, 100), "p.3.so");
  assert_string_equal(hs_build_lookup(&f->b, 200), "p.2.so");
  assert_false(output_exists(f, 1)); /* superseded, not left behind */
  assert_true(output_exists(f, 2));
  assert_true(output_exists(f, 3));
  assert_int_equal(count_entries(f->cache.dir), 4);
}

/* An output stored again under its key is the newest output, so the next
 * eviction takes the oldest other one, not the output just stored. */
static void test_build_store_replaced_key_is_newest(void **state) {
  fx *f = *state;

  for (int i = 1; i <= HS_BUILD_KEEP; i++)
    store_output(f, (uint64_t)i * 1000, i);
  store_output(f, 1000, 11); /* key 1000 built again: p.11.so */
  store_output(f, 9000, 9);  /* the oldest output is now key 2000's */
  assert_string_equal(hs_build_lookup(&f->b, 9000), "p.9.so");
  assert_non_null(hs_build_lookup(&f->b, 1000));
  assert_string_equal(hs_build_lookup(&f->b, 1000), "p.11.so");
  assert_true(output_exists(f, 11));
  assert_null(hs_build_lookup(&f->b, 2000));
  assert_false(output_exists(f, 2));
}

static void test_build_free_removes_every_output(void **state) {
  fx *f = *state;
  char depfile[128];

  put(f->cache.dirfd, "unrelated.so", "keep");
  for (int i = 1; i <= 3; i++)
    store_output(f, (uint64_t)i, i);
  snprintf(depfile, sizeof(depfile), "%s/hello.d", f->dir);
  put(f->dirfd, "hello.d", "hello.so: hello.c\n");
  assert_int_equal(hs_build_read_deps(&f->b, depfile, f->dir), 0);
  assert_int_equal(count_entries(f->cache.dir), 7);

  hs_build_free(&f->b, &f->cache);
  assert_int_equal(count_entries(f->cache.dir), 1);
  assert_true(exists(f->cache.dirfd, "unrelated.so"));
  assert_int_equal(f->b.nout, 0);
  assert_int_equal(f->b.ndeps, 0);
  assert_null(f->b.deps);
  assert_null(hs_build_lookup(&f->b, 1));
  hs_build_free(&f->b, &f->cache); /* harmless twice */
}

/* ---- the build environment -------------------------------------------- */

/* Environment variables a test changes, put back afterwards. */
typedef struct saved_env {
  char *cc, *include;
} saved_env;

static void save_env(saved_env *s) {
  const char *cc = getenv("CC"), *inc = getenv("HOTSWAP_INCLUDE");

  s->cc = cc ? strdup(cc) : NULL;
  s->include = inc ? strdup(inc) : NULL;
}

static void restore_env(saved_env *s) {
  if (s->cc)
    setenv("CC", s->cc, 1);
  else
    unsetenv("CC");
  if (s->include)
    setenv("HOTSWAP_INCLUDE", s->include, 1);
  else
    unsetenv("HOTSWAP_INCLUDE");
  free(s->cc);
  free(s->include);
}

static void test_build_env_init_uses_hotswap_include(void **state) {
  fx *f = *state;
  hs_sandbox_limits limits = {.timeout_ms = 1234, .cpu_s = 5, .mem_bytes = 0};
  hs_build_env env;
  hs_error err;
  saved_env saved;
  char inc[128], via[160], *real;
  int rc;

  assert_int_equal(mkdirat(f->dirfd, "inc", 0700), 0);
  put(f->dirfd, "inc/hotswap.h", "/* hotswap.h */\n");
  assert_int_equal(symlinkat("inc", f->dirfd, "link"), 0);
  snprintf(inc, sizeof(inc), "%s/inc", f->dir);
  /* A path with a symlink and a "..": include_dir is the real path. */
  snprintf(via, sizeof(via), "%s/link/../inc/", f->dir);
  real = realpath(inc, NULL);
  assert_non_null(real);

  save_env(&saved);
  setenv("HOTSWAP_INCLUDE", via, 1);
  unsetenv("CC");
  hs_error_clear(&err);
  rc = hs_build_env_init(&env, 1, 0, &limits, &err);
  restore_env(&saved);
  assert_int_equal(rc, 0);
  assert_string_equal(env.include_dir, real);
  assert_string_equal(env.cc, "cc");
  assert_int_equal(env.color, 1);
  assert_int_equal(env.werror, 0);
  assert_int_equal(env.limits.timeout_ms, 1234);
  assert_int_equal(env.limits.cpu_s, 5);
  hs_build_env_free(&env);
  assert_null(env.cc);
  assert_null(env.include_dir);
  free(real);
}

static void test_build_env_init_fails_without_hotswap_h(void **state) {
  fx *f = *state;
  hs_sandbox_limits limits = {0};
  hs_build_env env;
  hs_error err;
  saved_env saved;
  char inc[128];
  int rc;

  assert_int_equal(mkdirat(f->dirfd, "inc", 0700), 0);
  put(f->dirfd, "inc/other.h", "int x;\n");
  snprintf(inc, sizeof(inc), "%s/inc", f->dir);

  save_env(&saved);
  setenv("HOTSWAP_INCLUDE", inc, 1);
  hs_error_clear(&err);
  rc = hs_build_env_init(&env, 0, 1, &limits, &err);
  restore_env(&saved);
  assert_int_equal(rc, HS_ENOENT);
  assert_int_equal(err.code, HS_ENOENT);
  assert_string_equal(err.stage, "compile");
  assert_non_null(strstr(err.msg, "cannot find hotswap.h"));
  assert_non_null(strstr(err.msg, inc));
  assert_null(env.cc); /* nothing left to free */
  assert_null(env.include_dir);
  hs_build_env_free(&env); /* harmless after a failed init */
}

static void test_build_env_init_honours_cc(void **state) {
  fx *f = *state;
  hs_sandbox_limits limits = {0};
  hs_build_env a, b, c;
  hs_error err;
  saved_env saved;
  char inc[128];
  int ra, rb, rc;

  assert_int_equal(mkdirat(f->dirfd, "inc", 0700), 0);
  put(f->dirfd, "inc/hotswap.h", "/* hotswap.h */\n");
  snprintf(inc, sizeof(inc), "%s/inc", f->dir);

  save_env(&saved);
  setenv("HOTSWAP_INCLUDE", inc, 1);
  setenv("CC", "ccache cc", 1);
  ra = hs_build_env_init(&a, 0, 0, &limits, &err);
  setenv("CC", "", 1); /* empty: the default */
  rb = hs_build_env_init(&b, 0, 0, &limits, &err);
  setenv("CC", "/hs-test/no/such/compiler", 1);
  rc = hs_build_env_init(&c, 0, 0, &limits, &err);
  restore_env(&saved);
  assert_int_equal(ra, 0);
  assert_int_equal(rb, 0);
  assert_int_equal(rc, 0);

  assert_string_equal(a.cc, "ccache cc");
  assert_string_equal(b.cc, "cc");
  assert_string_equal(c.cc, "/hs-test/no/such/compiler");
  /* Another compiler is another identity. */
  assert_int_not_equal(a.cc_id, b.cc_id);
  assert_int_not_equal(b.cc_id, c.cc_id);
  hs_build_env_free(&a);
  hs_build_env_free(&b);
  hs_build_env_free(&c);
}

/* Without $HOTSWAP_INCLUDE the directory found holds hotswap.h. */
static void test_build_env_init_finds_default_include(void **state) {
  hs_sandbox_limits limits = {0};
  hs_build_env env;
  hs_error err;
  saved_env saved;
  char probe[PATH_MAX + 16];
  int rc;

  (void)state;
  save_env(&saved);
  unsetenv("HOTSWAP_INCLUDE");
  rc = hs_build_env_init(&env, 0, 0, &limits, &err);
  restore_env(&saved);
  assert_int_equal(rc, 0);
  assert_non_null(env.include_dir);
  assert_true(env.include_dir[0] == '/');
  snprintf(probe, sizeof(probe), "%s/hotswap.h", env.include_dir);
  assert_int_equal(access(probe, R_OK), 0);
  hs_build_env_free(&env);
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_build_is_source_only_for_name_dot_c),
      T(test_build_is_dir_plugin_needs_a_c_file),
      T(test_build_key_same_inputs_same_key),
      T(test_build_key_changes_with_source),
      T(test_build_key_changes_with_flags_file),
      T(test_build_key_changes_with_any_file_of_dir_plugin),
      T(test_build_key_changes_with_dependency),
      T(test_build_key_ignores_headers_under_usr),
      T(test_build_key_changes_with_werror),
      T(test_build_key_fails_without_source),
      T(test_build_key_refuses_inputs_others_could_write),
      T(test_build_argv_single_file),
      T(test_build_argv_dir_plugin),
      T(test_build_argv_splits_cc_and_adds_werror_color),
      T(test_build_read_deps_parses_make_rules),
      T(test_build_depends_on_exact_paths),
      T(test_build_read_deps_of_real_compile),
      T(test_build_store_maps_keys_to_names),
      T(test_build_store_evicts_oldest_after_keep),
      T(test_build_store_existing_key_replaces_name),
      T(test_build_store_replaced_key_is_newest),
      T(test_build_free_removes_every_output),
      T(test_build_env_init_uses_hotswap_include),
      T(test_build_env_init_fails_without_hotswap_h),
      T(test_build_env_init_honours_cc),
      cmocka_unit_test(test_build_env_init_finds_default_include),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
