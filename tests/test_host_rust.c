/*
 * test_host_rust.c - the Rust example (examples/rust) built with the
 * machine's cargo, offline, into temporary directories: its descriptor
 * matches the C ABI, and it loads in the real host and reloads live, with
 * its state, after a rebuild with another version string. Without cargo
 * every test is skipped with a message, never failed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dlfcn.h>
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
#include "hotswap.h"

#define CRATE_SRC HS_TEST_SOURCE_DIR "/examples/rust"
#define CARGO_TIMEOUT_S 240 /* a cold build under a loaded machine */
#define LIBRARY "release/librust_counter.so"

/* What the group setup found and built, shared by the tests. */
static struct {
  char cargo[PATH_MAX]; /* "" when cargo is not installed */
  char dir[PATH_MAX];   /* a mkdtemp'd directory: crate/ and target/ */
  char lib[PATH_MAX + 64]; /* the built library, "" when the build failed */
} g;

/* ---- helpers ----------------------------------------------------------- */

static void stop_clean(harness *h) {
  assert_int_equal(harness_stop(h), 0);
  harness_expect_line(h, "hotswap stopped: clean exit");
}

static int is_executable(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
         access(path, X_OK) == 0;
}

/* Finds cargo: $CARGO, then $PATH, then ~/.cargo/bin (rustup's default,
 * often missing from a service's $PATH). Returns 0 with out filled, or
 * -1. */
static int find_cargo(char *out, size_t size) {
  const char *env = getenv("CARGO"), *path = getenv("PATH");
  const char *home = getenv("HOME");

  if (env != NULL && is_executable(env)) {
    snprintf(out, size, "%s", env);
    return 0;
  }
  while (path != NULL && *path != '\0') {
    const char *end = strchr(path, ':');
    size_t len = end ? (size_t)(end - path) : strlen(path);
    if (len > 0 && (size_t)snprintf(out, size, "%.*s/cargo", (int)len,
                                    path) < size &&
        is_executable(out))
      return 0;
    path = end ? end + 1 : NULL;
  }
  if (home != NULL &&
      (size_t)snprintf(out, size, "%s/.cargo/bin/cargo", home) < size &&
      is_executable(out))
    return 0;
  out[0] = '\0';
  return -1;
}


/* Prints a file on stderr (a failed build's log). */
static void dump(const char *path) {
  char buf[4096];
  size_t n;
  FILE *f = fopen(path, "r");

  if (f == NULL)
    return;
  fprintf(stderr, "---- %s ----\n", path);
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
    fwrite(buf, 1, n, stderr);
  fprintf(stderr, "---- end ----\n");
  fclose(f);
}

/* Copies the file from into to (created with mode 0644). Returns 0 or
 * -1. */
static int copy_file(const char *from, const char *to) {
  char buf[65536];
  ssize_t n = 0;
  int in = open(from, O_RDONLY | O_CLOEXEC), out;

  if (in < 0)
    return -1;
  out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) {
    close(in);
    return -1;
  }
  while ((n = read(in, buf, sizeof(buf))) > 0)
    if (write(out, buf, (size_t)n) != n) {
      n = -1;
      break;
    }
  close(in);
  if (close(out) != 0)
    n = -1;
  return n < 0 ? -1 : 0;
}

/* Copies the crate (Cargo.toml, Cargo.lock, src/lib.rs) into dir/crate. */
static int copy_crate(const char *dir) {
  static const char *const files[] = {"Cargo.toml", "Cargo.lock",
                                      "src/lib.rs"};
  char from[PATH_MAX], to[PATH_MAX];

  snprintf(to, sizeof(to), "%s/crate", dir);
  if (mkdir(to, 0755) != 0)
    return -1;
  snprintf(to, sizeof(to), "%s/crate/src", dir);
  if (mkdir(to, 0755) != 0)
    return -1;
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    snprintf(from, sizeof(from), "%s/%s", CRATE_SRC, files[i]);
    snprintf(to, sizeof(to), "%s/crate/%s", dir, files[i]);
    if (copy_file(from, to) != 0) {
      fprintf(stderr, "cannot copy %s to %s: %s\n", from, to,
              strerror(errno));
      return -1;
    }
  }
  return 0;
}

/* cargo build --offline --release of dir/crate into dir/target, with a
 * 20 ms tick and warnings as errors. Returns 0, or -1 after printing the
 * build's output. */
static int cargo_build(const char *dir) {
  char manifest[PATH_MAX], target[PATH_MAX], log[PATH_MAX];
  const char *const argv[] = {g.cargo,     "build",           "--offline",
                              "--release", "--manifest-path", manifest,
                              "--target-dir", target,         NULL};
  static const char *const env[] = {"RUST_COUNTER_TICK_MS=20",
                                    "RUSTFLAGS=-D warnings",
                                    "CARGO_TERM_COLOR=never", NULL};

  snprintf(manifest, sizeof(manifest), "%s/crate/Cargo.toml", dir);
  snprintf(target, sizeof(target), "%s/target", dir);
  snprintf(log, sizeof(log), "%s/cargo.log", dir);
  if (harness_exec(argv, env, log, CARGO_TIMEOUT_S) != 0) {
    fprintf(stderr, "cargo build of %s failed\n", manifest);
    dump(log);
    return -1;
  }
  return 0;
}

/* Replaces the first "from" in file with "to". Returns 0 or -1. */
static int edit_file(const char *file, const char *from, const char *to) {
  char buf[65536], *at;
  ssize_t n;
  int fd = open(file, O_RDONLY | O_CLOEXEC);

  if (fd < 0)
    return -1;
  n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0 || (size_t)n == sizeof(buf) - 1)
    return -1;
  buf[n] = '\0';
  if ((at = strstr(buf, from)) == NULL)
    return -1;
  fd = open(file, O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0)
    return -1;
  size_t head = (size_t)(at - buf), tail = strlen(at + strlen(from));
  int ok = write(fd, buf, head) == (ssize_t)head &&
           write(fd, to, strlen(to)) == (ssize_t)strlen(to) &&
           write(fd, at + strlen(from), tail) == (ssize_t)tail;
  return close(fd) == 0 && ok ? 0 : -1;
}

/* Puts the library lib into the plugin directory as name, by a rename. */
static void install_lib(harness *h, const char *lib, const char *name) {
  char tmp[PATH_MAX + 64], to[PATH_MAX + 64];

  snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", h->plugins, name);
  snprintf(to, sizeof(to), "%s/%s", h->plugins, name);
  assert_int_equal(copy_file(lib, tmp), 0);
  assert_int_equal(rename(tmp, to), 0);
}

static int rm_tree(const char *dir) {
  const char *const argv[] = {"/bin/rm", "-rf", dir, NULL};
  return harness_exec(argv, NULL, "/dev/null", 60);
}

/* Builds the example once for the whole group. Never fails the group: a
 * missing cargo or a failed build is reported by each test. */
static int group_setup(void **state) {
  const char *tmp = getenv("TMPDIR");
  const char *const version[] = {g.cargo, "--version", NULL};
  char log[PATH_MAX + 32];

  (void)state;
  memset(&g, 0, sizeof(g));
  if (find_cargo(g.cargo, sizeof(g.cargo)) != 0)
    return 0;
  snprintf(g.dir, sizeof(g.dir), "%s/hotswap-rust-XXXXXX",
           tmp != NULL && tmp[0] == '/' ? tmp : "/tmp");
  if (mkdtemp(g.dir) == NULL) {
    g.dir[0] = '\0';
    return 0;
  }
  snprintf(log, sizeof(log), "%s/version.log", g.dir);
  if (harness_exec(version, NULL, log, 60) != 0) {
    fprintf(stderr, "%s --version failed\n", g.cargo);
    dump(log);
    g.cargo[0] = '\0';
    return 0;
  }
  if (copy_crate(g.dir) == 0 && cargo_build(g.dir) == 0)
    snprintf(g.lib, sizeof(g.lib), "%s/target/" LIBRARY, g.dir);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  if (g.dir[0] != '\0')
    rm_tree(g.dir);
  return 0;
}

/* Skips without cargo; fails when cargo is there but the build failed. */
#define REQUIRE_BUILD()                                                        \
  do {                                                                         \
    if (g.cargo[0] == '\0') {                                                  \
      fprintf(stderr, "cargo is not installed (looked in $CARGO, $PATH and "   \
                      "~/.cargo/bin): the Rust plugin test is skipped\n");     \
      skip();                                                                  \
    }                                                                          \
    if (g.lib[0] == '\0')                                                      \
      fail_msg("the Rust example did not build (output above)");              \
  } while (0)

/* ---- tests ------------------------------------------------------------- */

/* The Rust mirrors of hs_api and hs_plugin (examples/rust/src/lib.rs)
 * against the C header. The crate is an ABI 1 plugin (no event services):
 * its descriptor is the ABI 1 part of hs_plugin, which every later host
 * still loads, and every member reads back as the crate set it. */
static void test_host_rust_descriptor_matches_c_abi(void **state) {
  hs_api api;
  hs_entry_fn *entry;
  const hs_plugin *d;
  void *handle, *sym;

  (void)state;
  REQUIRE_BUILD();
  handle = dlopen(g.lib, RTLD_NOW | RTLD_LOCAL);
  if (handle == NULL)
    fail_msg("dlopen %s: %s", g.lib, dlerror());
  sym = dlsym(handle, HS_ENTRY_SYMBOL);
  assert_non_null(sym);
  memcpy(&entry, &sym, sizeof(entry));

  memset(&api, 0, sizeof(api));
  api.abi_version = HS_ABI_VERSION;
  api.size = sizeof(hs_api);
  d = entry(&api);
  assert_non_null(d);
  assert_int_equal(d->abi_version, 1);
  assert_int_equal(d->size, offsetof(hs_plugin, on_io));
  assert_string_equal(d->name, "rust_counter");
  assert_string_equal(d->version, "1.0");
  assert_int_equal(d->state_version, 1);
  assert_int_equal(d->state_size, 2 * sizeof(uint64_t));
  assert_non_null(d->load);
  assert_non_null(d->unload);
  assert_non_null(d->tick);
  assert_null(d->migrate);
  assert_non_null(d->selftest);

  /* A host table smaller than the crate's (ABI 1) mirror: refused. */
  api.size = offsetof(hs_api, io_watch) - sizeof(void *);
  assert_null(entry(&api));
  api.size = sizeof(hs_api);
  api.abi_version = 0;
  assert_null(entry(&api));
  assert_null(entry(NULL));
  dlclose(handle);
}

static void test_host_rust_reload_keeps_state(void **state) {
  harness *h = *state;
  char line[1024], lib[PATH_MAX + 64], src[PATH_MAX + 64], want[128];
  unsigned long long resumed = 0, load = 0;
  const char *at;

  REQUIRE_BUILD();
  install_lib(h, g.lib, "rust_counter.so");
  assert_int_equal(harness_start(h, NULL), 0);
  harness_expect_line(h, "rust_counter log: version 1.0 (start): counting from 0 "
                 "by 1");
  harness_expect_line(h, "rust_counter loaded: version 1.0, state v1 (16 bytes), "
                 "generation 1, from rust_counter.so in ");
  harness_expect_line(h, "rust_counter log: count 3");

  /* The crate again, with another version string, rebuilt while the old
   * version runs. */
  assert_int_equal(copy_crate(h->root), 0);
  snprintf(src, sizeof(src), "%s/crate/src/lib.rs", h->root);
  assert_int_equal(edit_file(src, "const VERSION: &CStr = c\"1.0\";",
                             "const VERSION: &CStr = c\"2.0\";"),
                   0);
  assert_int_equal(cargo_build(h->root), 0);
  snprintf(lib, sizeof(lib), "%s/target/" LIBRARY, h->root);
  install_lib(h, lib, "rust_counter.so");

  harness_expect_line(h, "rust_counter log: version 1.0 unloading (reload) at "
                 "count ");
  assert_true(harness_wait(h, "rust_counter log: version 2.0 (reload): "
                              "resuming at count ",
                           line, sizeof(line)) >= 0);
  at = strstr(line, "resuming at count ");
  assert_non_null(at);
  assert_int_equal(sscanf(at, "resuming at count %llu by 1, load %llu",
                          &resumed, &load),
                   2);
  assert_true(resumed >= 3); /* the count went on, not from zero */
  assert_int_equal(load, 2);
  harness_expect_line(h, "rust_counter reloaded: version 2.0, state v1 (16 bytes), "
                 "generation 2, from rust_counter.so in ");
  snprintf(want, sizeof(want), "rust_counter log: count %llu", resumed + 1);
  harness_expect_line(h, want);
  harness_expect_status(h, "rust_counter", "version", "2.0");
  harness_expect_status(h, "rust_counter", "status", "live");
  assert_int_equal(harness_wait_cache_files(h, 1), 0);
  stop_clean(h);
  /* Rust's std references __cxa_thread_atexit_impl, but registers nothing
   * here: the old version was unmapped. */
  assert_int_equal(harness_count(h, 0, -1, "stays mapped"), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_host_rust_descriptor_matches_c_abi),
      cmocka_unit_test_setup_teardown(test_host_rust_reload_keeps_state,
                                      harness_setup, harness_teardown),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
