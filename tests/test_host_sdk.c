/*
 * test_host_sdk.c - what plugins outside this repository build with:
 * `cmake --install` of the build tree into a temporary prefix, a plugin
 * built against it with pkg-config and one with find_package(hotswap), both
 * loaded by the installed host; and `hotswap new`, whose skeleton builds
 * with the command it prints, loads, reloads after an edit, and is never
 * overwritten.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "hotswap.h"

/* The flags the host's own code is built with: the skeleton must pass. */
#define STRICT_FLAGS                                                           \
  "-std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes "  \
  "-Wwrite-strings -Werror"

/* A plugin written outside the tree, against the installed header only. */
static const char oot_source[] =
    "#include \"hotswap.h\"\n"
    "\n"
    "static const hs_api *api;\n"
    "\n"
    "static int oot_load(hs_ctx *ctx, void *state, hs_load_reason reason) {\n"
    "  (void)state;\n"
    "  (void)reason;\n"
    "  if (!api->in_sandbox(ctx))\n"
    "    api->log(ctx, HS_LOG_INFO, \"built out of tree\");\n"
    "  return 0;\n"
    "}\n"
    "\n"
    "static void oot_unload(hs_ctx *ctx, void *state, hs_unload_reason r) {\n"
    "  (void)ctx;\n"
    "  (void)state;\n"
    "  (void)r;\n"
    "}\n"
    "\n"
    "static const hs_plugin oot_plugin = {\n"
    "    .abi_version = HS_ABI_VERSION,\n"
    "    .size = sizeof(hs_plugin),\n"
    "    .name = \"oot\",\n"
    "    .version = \"7.0\",\n"
    "    .state_version = 1,\n"
    "    .load = oot_load,\n"
    "    .unload = oot_unload,\n"
    "};\n"
    "\n"
    "HS_EXPORT const hs_plugin *hotswap_plugin_entry(const hs_api *a) {\n"
    "  api = a;\n"
    "  return &oot_plugin;\n"
    "}\n";

/* ---- helpers ----------------------------------------------------------- */

/* snprintf that fails the test rather than cut the text. */
static void fmt(char *out, size_t size, const char *f, ...) HS_PRINTF_(3, 4);
static void fmt(char *out, size_t size, const char *f, ...) {
  va_list ap;
  int n;

  va_start(ap, f);
  n = vsnprintf(out, size, f, ap);
  va_end(ap);
  assert_true(n >= 0 && (size_t)n < size);
}

/* Runs the printf-formatted command with sh -c, stdout and stderr into out
 * (cut to size). Returns its exit status (128 + N for signal N). On a
 * non-zero status prints the command and what it said. */
static int sh(char *out, size_t size, const char *f, ...) HS_PRINTF_(3, 4);
static int sh(char *out, size_t size, const char *f, ...) {
  char cmd[8192], drain[4096];
  va_list ap;
  FILE *p;
  size_t n = 0, r;
  int st, rc;

  va_start(ap, f);
  vsnprintf(cmd, sizeof(cmd) - 8, f, ap);
  va_end(ap);
  strcat(cmd, " 2>&1");
  p = popen(cmd, "r");
  assert_non_null(p);
  while (n + 1 < size && (r = fread(out + n, 1, size - 1 - n, p)) > 0)
    n += r;
  out[n] = '\0';
  while (fread(drain, 1, sizeof(drain), p) > 0) {
  } /* the rest, so that the command is not cut off with SIGPIPE */
  st = pclose(p);
  rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  if (rc != 0)
    fprintf(stderr, "sdk: exit %d: %.4000s\n%s\n", rc, cmd, out);
  return rc;
}

/* 1 if the program is on PATH. */
static int have(const char *prog) {
  char out[256];
  char cmd[128];
  fmt(cmd, sizeof(cmd), "command -v %s >/dev/null", prog);
  FILE *p = popen(cmd, "r");
  if (p == NULL)
    return 0;
  while (fgets(out, sizeof(out), p) != NULL) {
  }
  return pclose(p) == 0;
}

static int exists(const char *dir, const char *rel) {
  char path[PATH_MAX];
  struct stat st;
  fmt(path, sizeof(path), "%s/%s", dir, rel);
  if (stat(path, &st) == 0)
    return 1;
  fprintf(stderr, "sdk: %s is missing\n", path);
  return 0;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f == NULL)
    fail_msg("cannot write %s: %s", path, strerror(errno));
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

/*
 * Starts bin (not HS_TEST_BIN: the installed host) the way harness_start
 * starts the host, on h's plugin directory, socket, cache and log, and
 * waits for its "started" line. It is h's host from then on: harness_wait,
 * harness_stop and harness_close apply.
 */
static void start_host(harness *h, const char *bin) {
  int fd = open(h->log, O_WRONLY | O_APPEND | O_CLOEXEC);
  pid_t pid;

  assert_true(fd >= 0);
  h->offset = harness_log_end(h);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int null = open("/dev/null", O_RDONLY);
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (null < 0 || dup2(null, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
      _exit(126);
    execl(bin, bin, "--control", h->control, "--cache-dir", h->cache,
          "--settle", "30", h->plugins, (char *)NULL);
    _exit(127);
  }
  setpgid(pid, pid);
  close(fd);
  h->pid = pid;
  h->pgid = pid;
  h->exited = 0;
  assert_true(harness_wait(h, "hotswap started:", NULL, 0) >= 0);
}

/* Skips the test, saying why, when a tool it drives is missing (./dev
 * installs them all). */
static void need(const char *prog) {
  if (!have(prog)) {
    fprintf(stderr,
            "sdk: %s is not installed (./dev installs it); "
            "skipped\n",
            prog);
    skip();
  }
}

/* ---- install, then build outside the tree ------------------------------ */

static void test_host_sdk_install_and_build_out_of_tree(void **state) {
  harness *h = *state;
  char prefix[PATH_MAX], real[PATH_MAX], bin[PATH_MAX + 16],
      path[PATH_MAX + 32], out[16384], line[1024], pc[PATH_MAX + 64];

  need("cmake");
  need("pkg-config");
  need("cc");
  fmt(prefix, sizeof(prefix), "%s/prefix", h->root);
  assert_int_equal(sh(out, sizeof(out), "cmake --install '%s' --prefix '%s'",
                      HS_TEST_BUILD_DIR, prefix),
                   0);
  assert_non_null(realpath(prefix, real));

  /* What is installed, and what is not. */
  assert_true(exists(prefix, "bin/hotswap"));
  assert_true(exists(prefix, "include/hotswap.h"));
  assert_true(exists(prefix, "share/man/man1/hotswap.1"));
  assert_true(exists(prefix, "share/doc/hotswap/README.md"));
  assert_true(exists(prefix, "share/doc/hotswap/docs/plugins.md"));
  assert_true(exists(prefix, "share/bash-completion/completions/hotswap"));
  assert_int_equal(sh(out, sizeof(out),
                      "cd '%s' && find . -name hotswap.pc -o -name "
                      "hotswapConfig.cmake -o -name "
                      "hotswapConfigVersion.cmake -o -name '*.so' | sort",
                      prefix),
                   0);
  assert_true(strstr(out, "/pkgconfig/hotswap.pc\n") != NULL);
  assert_true(strstr(out, "/cmake/hotswap/hotswapConfig.cmake\n") != NULL);
  assert_true(strstr(out, "/cmake/hotswap/hotswapConfigVersion.cmake\n") !=
              NULL);
  if (strstr(out, ".so\n") != NULL)
    fail_msg("plugins were installed: %s", out);

  fmt(bin, sizeof(bin), "%s/bin/hotswap", prefix);
  assert_int_equal(sh(out, sizeof(out), "'%s' --version", bin), 0);
  fmt(line, sizeof(line), "hotswap %s (plugin ABI %d)\n", HS_VERSION_STRING,
      HS_ABI_VERSION);
  assert_string_equal(out, line);

  /* pkg-config: the installed header, and nothing to link. */
  fmt(pc, sizeof(pc),
      "PKG_CONFIG_PATH=\"$(dirname \"$(find '%s' -name hotswap.pc)\")\"",
      prefix);
  assert_int_equal(
      sh(out, sizeof(out), "%s pkg-config --cflags --libs hotswap", pc), 0);
  fmt(line, sizeof(line), "-I%s/", prefix);
  assert_true(harness_contains(out, line));
  assert_int_equal(sh(out, sizeof(out),
                      "test \"$(%s pkg-config --variable=includedir hotswap)"
                      "/hotswap.h\" -ef '%s/include/hotswap.h'",
                      pc, prefix),
                   0);

  /* A plugin out of the tree, built as the issue shows it. */
  fmt(path, sizeof(path), "%s/oot.c", h->root);
  write_file(path, oot_source);
  assert_int_equal(sh(out, sizeof(out),
                      "cc $(%s pkg-config --cflags hotswap) " STRICT_FLAGS
                      " -shared -fPIC -fvisibility=hidden -o '%s/oot.so' '%s'",
                      pc, h->plugins, path),
                   0);

  /* The installed host loads it. */
  start_host(h, bin);
  assert_true(harness_wait(h, "oot log: built out of tree", NULL, 0) >= 0);
  assert_true(harness_wait(h, "oot loaded: version 7.0", NULL, 0) >= 0);

  /* The installed `hotswap new` points at the installed header. */
  fmt(path, sizeof(path), "%s/cm", h->root);
  assert_int_equal(mkdir(path, 0755), 0);
  assert_int_equal(sh(out, sizeof(out), "'%s' new zed --dir '%s'", bin, path),
                   0);
  fmt(line, sizeof(line), " -I%s/include ", real);
  assert_true(harness_contains(out, line));

  /* find_package(hotswap) + hotswap_add_plugin, built and renamed into
   * the running host's directory. */
  fmt(line, sizeof(line), "%s/CMakeLists.txt", path);
  write_file(line, "cmake_minimum_required(VERSION 3.18)\n"
                   "project(zed LANGUAGES C)\n"
                   "find_package(hotswap " HS_VERSION_STRING " REQUIRED)\n"
                   "hotswap_add_plugin(zed zed.c)\n"
                   "target_compile_options(zed PRIVATE -Wall -Wextra "
                   "-Werror)\n");
  assert_int_equal(sh(out, sizeof(out),
                      "cmake -S '%s' -B '%s/build' -DCMAKE_PREFIX_PATH='%s' "
                      "-DCMAKE_BUILD_TYPE=Release && "
                      "cmake --build '%s/build'",
                      path, path, prefix, path),
                   0);
  assert_int_equal(sh(out, sizeof(out),
                      "nm -D --defined-only '%s/build/zed.so' | "
                      "grep -c ' T '",
                      path),
                   0);
  assert_string_equal(out, "1\n"); /* only the entry symbol */
  assert_int_equal(sh(out, sizeof(out), "mv '%s/build/zed.so' '%s/zed.so'",
                      path, h->plugins),
                   0);
  assert_true(harness_wait(h, "zed loaded: version 0.1.0", NULL, 0) >= 0);
  assert_int_equal(harness_stop(h), 0);
}

/* ---- hotswap new ------------------------------------------------------- */

/* The build command `hotswap new` printed: its line starting "  cc ". */
static void build_command(const char *out, char *cmd, size_t size) {
  const char *p = strstr(out, "\n  cc ");
  assert_non_null(p);
  p += 3;
  fmt(cmd, size, "%.*s", (int)strcspn(p, "\n"), p);
}

static void test_host_sdk_new_builds_loads_and_reloads(void **state) {
  harness *h = *state;
  char src[PATH_MAX], file[PATH_MAX + 16], cmd[4096], out[8192], err[2048],
      want[PATH_MAX * 2 + 64], version[64];
  struct stat st;

  need("cc");
  fmt(src, sizeof(src), "%s/src", h->root);
  fmt(file, sizeof(file), "%s/demo.c", src);
  assert_int_equal(mkdir(src, 0755), 0);
  {
    const char *const argv[] = {"new", "demo", "--dir", src, NULL};
    assert_int_equal(harness_run(h, argv, out, sizeof(out), err, sizeof(err)),
                     0);
  }
  assert_string_equal(err, "");
  assert_int_equal(stat(file, &st), 0);
  fmt(want, sizeof(want), "wrote %s\n", file);
  assert_true(harness_contains(out, want));
  build_command(out, cmd, sizeof(cmd));
  fmt(want, sizeof(want), " -o %s/demo.so %s", src, file);
  assert_true(harness_contains(cmd, want));
  assert_true(harness_contains(cmd, "cc -std=c11 "));
  assert_true(harness_contains(cmd, " -fvisibility=hidden "));

  /* Warning-free under the host's own flags. */
  assert_int_equal(
      sh(out, sizeof(out), "%s " STRICT_FLAGS " -fsyntax-only", cmd), 0);
  /* The printed command, as it is; then into the host's directory. */
  assert_int_equal(sh(out, sizeof(out), "%s", cmd), 0);
  assert_int_equal(
      sh(out, sizeof(out), "mv '%s/demo.so' '%s/demo.so'", src, h->plugins), 0);
  assert_int_equal(harness_start(h, NULL), 0);
  assert_true(harness_wait(h, "demo log: version 0.1.0 up", NULL, 0) >= 0);
  assert_true(harness_wait(h, "demo loaded: version 0.1.0", NULL, 0) >= 0);

  /* An edit, the same command, a rename into place: a live reload. */
  assert_int_equal(sh(out, sizeof(out),
                      "sed -i 's/DEMO_VERSION \"0.1.0\"/DEMO_VERSION "
                      "\"0.2.0\"/' '%s' && grep -q '\"0.2.0\"' '%s'",
                      file, file),
                   0);
  assert_int_equal(sh(out, sizeof(out), "%s && mv '%s/demo.so' '%s/demo.so'",
                      cmd, src, h->plugins),
                   0);
  assert_true(harness_wait(h, "demo log: version 0.2.0 up", NULL, 0) >= 0);
  assert_true(harness_wait(h, "demo reloaded: version 0.2.0", NULL, 0) >= 0);
  assert_int_equal(
      harness_status_get(h, "demo", "version", version, sizeof(version)), 0);
  assert_string_equal(version, "0.2.0");

  /* Never overwritten: the edited file stays as it is. */
  {
    const char *const argv[] = {"new", "demo", "--dir", src, NULL};
    assert_int_equal(harness_run(h, argv, out, sizeof(out), err, sizeof(err)),
                     1);
  }
  fmt(want, sizeof(want), "hotswap: new: %s already exists; not overwriting it",
      file);
  assert_true(harness_contains(err, want));
  assert_string_equal(out, "");
  assert_int_equal(sh(out, sizeof(out), "grep -c '\"0.2.0\"' '%s'", file), 0);
  assert_string_equal(out, "1\n");
  assert_int_equal(harness_stop(h), 0);
}

static void test_host_sdk_new_errors(void **state) {
  harness *h = *state;
  char out[2048], err[2048], missing[PATH_MAX];

  fmt(missing, sizeof(missing), "%s/no-such-dir", h->root);
  {
    const char *const argv[] = {"new", "Demo", NULL};
    assert_int_equal(harness_run(h, argv, out, sizeof(out), err, sizeof(err)),
                     2);
    assert_true(harness_contains(err, "'Demo' is not a plugin NAME"));
    assert_true(harness_contains(err, "Try 'hotswap --help'."));
  }
  {
    const char *const argv[] = {"new", "demo", "--dir", missing, NULL};
    assert_int_equal(harness_run(h, argv, out, sizeof(out), err, sizeof(err)),
                     1);
    assert_true(harness_contains(err, "no-such-dir does not exist"));
  }
  {
    const char *const argv[] = {"new", NULL};
    assert_int_equal(harness_run(h, argv, out, sizeof(out), err, sizeof(err)),
                     2);
    assert_true(harness_contains(err, "new needs a plugin NAME"));
  }
  assert_string_equal(out, "");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_host_sdk_install_and_build_out_of_tree, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_sdk_new_builds_loads_and_reloads, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_sdk_new_errors, harness_setup,
                                      harness_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
