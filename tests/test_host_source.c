/*
 * test_host_source.c - plugins from source: the real host on a temporary
 * plugin directory holding NAME.c (and NAME.flags, headers, NAME/
 * directories) that it compiles itself. An edit is rebuilt and swapped in
 * with the state kept; a compile error leaves the old version running with
 * the compiler's words in the log and the status; going back costs no
 * compile; a header edit rebuilds exactly its dependents; a missing,
 * hanging or slow compiler is handled and leaves nothing behind.
 *
 * The sources are tests/fixtures/fixture.c with its FX_VERSION changed, or
 * small plugins written here. Where a test must hold a compile at a known
 * point it runs a fake $CC (a shell script in the test's tree) that runs
 * the real cc and then waits for a gate file before it exits: nothing here
 * depends on how long a compile takes.
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
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "hotswap.h"

#define FIXTURE_SOURCE HS_TEST_SOURCE_DIR "/tests/fixtures/fixture.c"
#define FIXTURE_VERSION_LINE "#define FX_VERSION \"0\""

/* Appended to a fixture source: a syntax error at column 17 of its own
 * line. */
#define BROKEN_LINE "int fx_broken = ;\n"

/* ---- small helpers ----------------------------------------------------- */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {0, (long)ms * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Reads a whole file, NUL-terminated; NULL if it cannot. The caller
 * frees. */
static char *read_text(const char *path) {
  FILE *f = fopen(path, "re");
  char *buf = NULL;
  size_t len = 0, cap = 0;
  if (f == NULL)
    return NULL;
  for (;;) {
    if (len + 4096 + 1 > cap) {
      cap = cap ? cap * 2 : 16384;
      char *b = realloc(buf, cap);
      if (b == NULL) {
        free(buf);
        fclose(f);
        return NULL;
      }
      buf = b;
    }
    size_t n = fread(buf + len, 1, cap - len - 1, f);
    len += n;
    if (n == 0)
      break;
  }
  fclose(f);
  buf[len] = '\0';
  return buf;
}

/* printf into a new string; the caller frees. Fails the test when out of
 * memory. */
__attribute__((format(printf, 1, 2))) static char *format(const char *fmt,
                                                          ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  assert_true(n >= 0);
  char *s = malloc((size_t)n + 1);
  assert_non_null(s);
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}

/* printf into out (size bytes); fails the test if it does not fit. */
__attribute__((format(printf, 3, 4))) static void format_to(char *out,
                                                           size_t size,
                                                           const char *fmt,
                                                           ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out, size, fmt, ap);
  va_end(ap);
  assert_true(n >= 0 && (size_t)n < size);
}

/* Writes text as h->plugins/rel (rel may be "dir/file") the way editors
 * save: a hidden temporary file in the same directory renamed over it. */
static void put_text(harness *h, const char *rel, const char *text) {
  char target[PATH_MAX], tmp[PATH_MAX + 32];
  const char *slash = strrchr(rel, '/');
  size_t dirlen = slash ? (size_t)(slash - rel) + 1 : 0;

  format_to(target, sizeof(target), "%s/%s", h->plugins, rel);
  format_to(tmp, sizeof(tmp), "%s/%.*s.%s.tmp", h->plugins, (int)dirlen, rel,
            rel + dirlen);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true(fd >= 0);
  size_t len = strlen(text);
  assert_int_equal(write(fd, text, len), (ssize_t)len);
  assert_int_equal(close(fd), 0);
  assert_int_equal(rename(tmp, target), 0);
}

/* Writes text into the file at path (absolute), mode mode. */
static void write_file(const char *path, const char *text, mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  assert_true(fd >= 0);
  size_t len = strlen(text);
  assert_int_equal(write(fd, text, len), (ssize_t)len);
  assert_int_equal(close(fd), 0);
}

/* Creates the empty file root/name (a gate of the fake compiler). */
static void touch_root(harness *h, const char *name) {
  char path[PATH_MAX];
  format_to(path, sizeof(path), "%s/%s", h->root, name);
  write_file(path, "", 0644);
}

static void remove_root(harness *h, const char *name) {
  char path[PATH_MAX];
  format_to(path, sizeof(path), "%s/%s", h->root, name);
  assert_int_equal(unlink(path), 0);
}

/* Waits until root/name exists; fails the test on timeout. */
static void wait_root_file(harness *h, const char *name) {
  char path[PATH_MAX];
  uint64_t deadline = now_ms() + HARNESS_TIMEOUT_MS;
  format_to(path, sizeof(path), "%s/%s", h->root, name);
  while (access(path, F_OK) != 0) {
    if (now_ms() >= deadline)
      fail_msg("%s did not appear within %d ms", path, HARNESS_TIMEOUT_MS);
    sleep_ms(5);
  }
}

/* fixture.c with FX_VERSION set to version and extra (or nothing)
 * appended. The caller frees. */
static char *fixture_source(const char *version, const char *extra) {
  char *text = read_text(FIXTURE_SOURCE);
  assert_non_null(text);
  char *at = strstr(text, FIXTURE_VERSION_LINE);
  assert_non_null(at);
  *at = '\0';
  char *out = format("%s#define FX_VERSION \"%s\"%s%s", text, version,
                     at + strlen(FIXTURE_VERSION_LINE), extra ? extra : "");
  free(text);
  return out;
}

/* Saves fixture.c with FX_VERSION version as plugins/file. */
static void put_fixture(harness *h, const char *file, const char *version) {
  char *src = fixture_source(version, NULL);
  put_text(h, file, src);
  free(src);
}

/* The line number of BROKEN_LINE when appended to fixture.c. */
static int broken_line_number(void) {
  char *text = read_text(FIXTURE_SOURCE);
  int lines = 0;
  assert_non_null(text);
  for (const char *p = text; *p; p++)
    lines += *p == '\n';
  free(text);
  return lines + 1;
}

/*
 * A small plugin of its own: prelude defines P_VERSION (a string) and
 * anything else it needs; body runs in load(), which then logs "load
 * <reason> version <P_VERSION>". State: 8 bytes, v1. The caller frees.
 */
static char *small_plugin(const char *name, const char *prelude,
                          const char *body) {
  return format(
      "/* %s: a plugin of test_host_source.c */\n"
      "#include \"hotswap.h\"\n"
      "%s\n"
      "static const hs_api *api;\n"
      "static int p_load(hs_ctx *ctx, void *state, hs_load_reason reason) {\n"
      "  (void)state;\n"
      "  %s\n"
      "  api->log(ctx, HS_LOG_INFO, \"load %%d version %%s\", (int)reason,\n"
      "           P_VERSION);\n"
      "  return 0;\n"
      "}\n"
      "static void p_unload(hs_ctx *ctx, void *state,\n"
      "                     hs_unload_reason reason) {\n"
      "  (void)ctx, (void)state, (void)reason;\n"
      "}\n"
      "static const hs_plugin descriptor = {\n"
      "    .abi_version = HS_ABI_VERSION,\n"
      "    .size = sizeof(hs_plugin),\n"
      "    .name = \"%s\",\n"
      "    .version = P_VERSION,\n"
      "    .state_version = 1,\n"
      "    .state_size = 8,\n"
      "    .load = p_load,\n"
      "    .unload = p_unload,\n"
      "};\n"
      "HS_EXPORT const hs_plugin *hotswap_plugin_entry(const hs_api *a) {\n"
      "  api = a;\n"
      "  return &descriptor;\n"
      "}\n",
      name, prelude, body ? body : "", name);
}

static void put_small(harness *h, const char *file, const char *name,
                      const char *prelude, const char *body) {
  char *src = small_plugin(name, prelude, body);
  put_text(h, file, src);
  free(src);
}

/* ---- the fake compiler ------------------------------------------------- */

/*
 * Writes root/fakecc and root/hang-helper and points $CC at fakecc. fakecc
 * records its pid, hangs in hang-helper while root/hang exists, runs the
 * real cc, creates root/done-SRC (SRC: the last *.c argument) and then
 * waits until root/open-all or root/open-SRC exists before exiting with
 * cc's status. hang-helper is a child that the compiler leaves running: it
 * must die with the compiler's process group.
 */
static void use_fake_cc(harness *h) {
  char path[PATH_MAX], env[sizeof(h->env[0])];
  char *script = format(
      "#!/bin/sh\n"
      "# the fake compiler of test_host_source.c\n"
      "root='%s'\n"
      "echo $$ >> \"$root/fakecc.pids\"\n"
      "src=\n"
      "for a; do case \"$a\" in *.c) src=\"$a\";; esac; done\n"
      "if [ -e \"$root/hang\" ]; then \"$root/hang-helper\"; fi\n"
      "cc \"$@\"\n"
      "rc=$?\n"
      ": > \"$root/done-$src\"\n"
      "while [ ! -e \"$root/open-all\" ] && [ ! -e \"$root/open-$src\" ]; do\n"
      "  sleep 0.02\n"
      "done\n"
      "exit $rc\n",
      h->root);
  format_to(path, sizeof(path), "%s/fakecc", h->root);
  write_file(path, script, 0755);
  free(script);
  format_to(path, sizeof(path), "%s/hang-helper", h->root);
  write_file(path,
             "#!/bin/sh\n"
             "# a compiler's child that never ends by itself\n"
             "while :; do sleep 1; done\n",
             0755);
  format_to(env, sizeof(env), "CC=%s/fakecc", h->root);
  assert_int_equal(harness_env(h, env), 0);
}

/* ---- processes --------------------------------------------------------- */

typedef struct proc_info {
  pid_t pid, ppid, pgrp;
  char state;          /* R, S, D, Z, ... */
  char cmdline[1024];  /* its argv joined by blanks */
} proc_info;

/* Reads /proc/PID; 0, or -1 when it is gone. */
static int proc_read(pid_t pid, proc_info *p) {
  char path[64], buf[1024];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0)
    return -1;
  buf[n] = '\0';
  char *rp = strrchr(buf, ')'); /* the command may hold blanks and ')' */
  int ppid, pgrp;
  if (rp == NULL || sscanf(rp + 1, " %c %d %d", &p->state, &ppid, &pgrp) != 3)
    return -1;
  p->pid = pid;
  p->ppid = ppid;
  p->pgrp = pgrp;
  snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  n = fd >= 0 ? read(fd, p->cmdline, sizeof(p->cmdline) - 1) : 0;
  if (fd >= 0)
    close(fd);
  if (n < 0)
    n = 0;
  for (ssize_t i = 0; i < n; i++)
    if (p->cmdline[i] == '\0')
      p->cmdline[i] = ' ';
  p->cmdline[n] = '\0';
  return 0;
}

/* Calls fn for every process there is; stops when fn returns non-zero. */
static void proc_each(int (*fn)(const proc_info *p, void *data), void *data) {
  DIR *d = opendir("/proc");
  struct dirent *e;
  proc_info p;
  if (d == NULL)
    return;
  while ((e = readdir(d)) != NULL) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0 || proc_read((pid_t)pid, &p) != 0)
      continue;
    if (fn(&p, data))
      break;
  }
  closedir(d);
}

/* What a scan looks for: live processes whose command line holds both
 * needles. */
typedef struct proc_query {
  const char *a, *b;
  int count;
  int kill;         /* SIGKILL each one found (cleanup) */
} proc_query;

static int match_cmdline(const proc_info *p, void *data) {
  proc_query *q = data;
  if (p->state != 'Z' && strstr(p->cmdline, q->a) &&
      strstr(p->cmdline, q->b)) {
    q->count++;
    if (q->kill)
      kill(p->pid, SIGKILL);
  }
  return 0;
}

/* Live processes started from this test's fake compiler scripts. */
static int fake_cc_procs(harness *h, const char *script) {
  proc_query q = {h->root, script, 0, 0};
  proc_each(match_cmdline, &q);
  return q.count;
}

/* Polls until count processes run script (fakecc, hang-helper); fails the
 * test on timeout. */
static void wait_fake_cc_procs(harness *h, const char *script, int count) {
  uint64_t deadline = now_ms() + HARNESS_TIMEOUT_MS;
  int n;
  while ((n = fake_cc_procs(h, script)) != count) {
    if (now_ms() >= deadline)
      fail_msg("%d processes run %s, not %d, after %d ms", n, script, count,
               HARNESS_TIMEOUT_MS);
    sleep_ms(10);
  }
}

/* Live processes in the process group pgrp. */
typedef struct group_query {
  pid_t pgrp;
  int count;
} group_query;

static int match_group(const proc_info *p, void *data) {
  group_query *q = data;
  if (p->state != 'Z' && p->pgrp == q->pgrp)
    q->count++;
  return 0;
}

/* Children of the host's zygote that are not the zygote's own forks
 * (validators and spares keep its argv): compilers still running. */
typedef struct zygote_query {
  pid_t host, zygote;
  int foreign;
} zygote_query;

static int find_zygote(const proc_info *p, void *data) {
  zygote_query *q = data;
  if (p->ppid == q->host && strncmp(p->cmdline, "hotswap-zygote", 14) == 0) {
    q->zygote = p->pid;
    return 1;
  }
  return 0;
}

static int match_foreign_child(const proc_info *p, void *data) {
  zygote_query *q = data;
  if (p->ppid == q->zygote && p->state != 'Z' &&
      strncmp(p->cmdline, "hotswap-zygote", 14) != 0)
    q->foreign++;
  return 0;
}

/* Polls until no compiler the fake cc ever started (its process groups,
 * from root/fakecc.pids) has a live process and the zygote has no child
 * but its own forks; fails the test on timeout, saying when (what). */
static void wait_no_compilers(harness *h, const char *what) {
  char path[PATH_MAX];
  uint64_t deadline = now_ms() + HARNESS_TIMEOUT_MS;
  format_to(path, sizeof(path), "%s/fakecc.pids", h->root);
  for (;;) {
    int live = 0;
    char *pids = read_text(path);
    for (char *p = pids; p && *p;) {
      char *end;
      long pgrp = strtol(p, &end, 10);
      if (end == p)
        break;
      group_query g = {(pid_t)pgrp, 0};
      proc_each(match_group, &g);
      live += g.count;
      p = end;
    }
    free(pids);
    zygote_query z = {h->pid, 0, 0};
    if (h->pid > 0) {
      proc_each(find_zygote, &z);
      if (z.zygote > 0)
        proc_each(match_foreign_child, &z);
    }
    if (live == 0 && z.foreign == 0 && fake_cc_procs(h, "/hang-helper") == 0)
      return;
    if (now_ms() >= deadline)
      fail_msg("%s: compilers still running after %d ms: %d processes in "
               "their process groups, %d children of the zygote",
               what, HARNESS_TIMEOUT_MS, live, z.foreign);
    sleep_ms(10);
  }
}

/* ---- the log and the status -------------------------------------------- */

/* The same, copying the line into line. */
static long expect_line_text(harness *h, const char *needle, char *line,
                             size_t size) {
  long at = harness_wait(h, needle, line, size);
  assert_true(at >= 0);
  return at;
}

/* Waits for every needle, in any order, from the current offset on; leaves
 * the offset past the last of them. */
static void expect_lines_any_order(harness *h, const char *const *needles,
                                   size_t n) {
  long from = h->offset, end = from;
  for (size_t i = 0; i < n; i++) {
    h->offset = from;
    harness_expect_line(h, needles[i]);
    if (h->offset > end)
      end = h->offset;
  }
  h->offset = end;
}

static void expect_status_has(harness *h, const char *plugin, const char *key,
                              const char *want) {
  char got[1024];
  assert_int_equal(harness_status_get(h, plugin, key, got, sizeof(got)), 0);
  assert_true(harness_contains(got, want));
}

/* Lines of the log from from on that contain needle. */
static int count_since(harness *h, long from, const char *needle) {
  int n = harness_count(h, from, -1, needle);
  assert_true(n >= 0);
  return n;
}

static void stop_clean(harness *h) {
  assert_int_equal(harness_stop(h), 0);
  harness_expect_line(h, "hotswap stopped: clean exit");
}

/* The fixture as alpha.c at version "1", the host started on it and its
 * first load seen. */
static void start_alpha(harness *h, const char *const *args) {
  put_fixture(h, "alpha.c", "1");
  assert_int_equal(harness_start(h, args), 0);
  harness_expect_line(h, "alpha compiling: alpha.c");
  harness_expect_line(h, "alpha log: load start version 1 loads=1");
  harness_expect_line(h, "alpha loaded: version 1, state v1 (16 bytes), generation "
                 "1, from alpha.c in ");
}

static const char *const debug_args[] = {"--log-level", "debug", NULL};

/* ---- setup ------------------------------------------------------------- */

/* The compiler's messages in English, whatever the machine's locale. */
static int source_setup(void **state) {
  if (harness_setup(state) != 0)
    return -1;
  return harness_env(*state, "LC_ALL=C");
}

/* Also ends what the fake compiler may have left running when a test
 * failed half-way (processes this test started, found by their script). */
static int source_teardown(void **state) {
  harness *h = *state;
  if (h != NULL && h->root[0] != '\0') {
    proc_query q = {h->root, "/hang-helper", 0, 1};
    proc_each(match_cmdline, &q);
    q.b = "/fakecc";
    proc_each(match_cmdline, &q);
  }
  return harness_teardown(state);
}

/* ---- tests: edit, error, revert ---------------------------------------- */

static void test_host_source_edit_rebuilds_and_keeps_state(void **state) {
  harness *h = *state;

  start_alpha(h, NULL);
  harness_expect_status(h, "alpha", "status", "live");
  harness_expect_status(h, "alpha", "file", "alpha.c");
  harness_expect_status(h, "alpha", "last_error", "null");

  /* Saved as editors save (rename over): compiled, validated, swapped, on
   * the same state. */
  put_fixture(h, "alpha.c", "2");
  harness_expect_line(h, "alpha compiling: alpha.c");
  harness_expect_line(h, "alpha log: unload reload version 1 loads=1");
  harness_expect_line(h, "alpha log: load reload version 2 loads=2");
  harness_expect_line(h, "alpha reloaded: version 2, state v1 (16 bytes), generation "
                 "2, from alpha.c in ");

  /* Written in place (cp, some editors): the same. */
  char *src = fixture_source("3", NULL);
  assert_int_equal(harness_install_text(h, src, "alpha.c", HARNESS_COPY_OVER),
                   0);
  free(src);
  harness_expect_line(h, "alpha compiling: alpha.c");
  harness_expect_line(h, "alpha log: load reload version 3 loads=3");
  harness_expect_line(h, "alpha reloaded: version 3, state v1 (16 bytes), generation "
                 "3, from alpha.c in ");
  harness_expect_status(h, "alpha", "status", "live");
  harness_expect_status(h, "alpha", "version", "3");
  harness_expect_status_num(h, "alpha", "generation", 3);
  harness_expect_status_num(h, "alpha", "reloads", 2);
  harness_expect_status(h, "alpha", "last_error", "null");
  stop_clean(h);
}

static void test_host_source_syntax_error_keeps_old_version(void **state) {
  harness *h = *state;
  char line[2048], want[128];
  int bad = broken_line_number();

  assert_int_equal(harness_env(h, "FX_TICK_MS=50"), 0);
  start_alpha(h, NULL);
  long from = h->offset;
  char *src = fixture_source("2", BROKEN_LINE);
  put_text(h, "alpha.c", src);
  free(src);
  harness_expect_line(h, "alpha compiling: alpha.c");
  /* The compiler's own words, as it printed them: file:line:col. */
  snprintf(want, sizeof(want), "alpha.c:%d:17: error: ", bad);
  expect_line_text(h, want, line, sizeof(line));
  assert_int_equal(line[0], 'a'); /* raw, not inside a log line */
  /* Then one summary line, naming the first error. */
  expect_line_text(h, "alpha rejected: ", line, sizeof(line));
  assert_true(harness_contains(
      line, "alpha rejected: alpha.c: stage compile: alpha.c does not "
            "compile (the compiler exited with status 1): "));
  assert_true(harness_contains(line, want));
  assert_true(harness_contains(line, "(HS_ECOMPILE); version 1 keeps "
                                     "running"));
  /* Not a terminal: no colours. */
  char *log = read_text(h->log);
  assert_non_null(log);
  assert_null(strchr(log + from, '\033'));
  free(log);

  /* The old version runs on: it ticks, and the status says so. */
  harness_expect_line(h, "alpha log: tick ");
  harness_expect_status(h, "alpha", "status", "live");
  harness_expect_status(h, "alpha", "version", "1");
  harness_expect_status_num(h, "alpha", "generation", 1);
  harness_expect_status(h, "alpha", "last_error.code", "HS_ECOMPILE");
  harness_expect_status(h, "alpha", "last_error.stage", "compile");
  expect_status_has(h, "alpha", "last_error.message",
                    "alpha.c does not compile (the compiler exited with "
                    "status 1): ");
  expect_status_has(h, "alpha", "last_error.message", want);
  assert_int_equal(count_since(h, from, "alpha log: unload"), 0);
  assert_int_equal(count_since(h, from, "alpha sandbox:"), 0);

  /* Fixed: built and swapped in, on the state the old version kept. */
  put_fixture(h, "alpha.c", "3");
  harness_expect_line(h, "alpha compiling: alpha.c");
  harness_expect_line(h, "alpha log: load reload version 3 loads=2");
  harness_expect_line(h, "alpha reloaded: version 3, state v1 (16 bytes), generation "
                 "2, from alpha.c in ");
  harness_expect_status(h, "alpha", "version", "3");
  harness_expect_status(h, "alpha", "last_error", "null");
  stop_clean(h);
}

static void test_host_source_revert_to_live_content_compiles_nothing(
    void **state) {
  harness *h = *state;

  start_alpha(h, debug_args);
  long from = h->offset;
  /* Saved again without a change. */
  put_fixture(h, "alpha.c", "1");
  harness_expect_line(h, "alpha unchanged: alpha.c: same sources as the live "
                 "version; nothing to do");
  /* A broken save, then back to what runs: nothing to build, and nothing
   * wrong any more. */
  char *src = fixture_source("2", BROKEN_LINE);
  put_text(h, "alpha.c", src);
  free(src);
  harness_expect_line(h, "alpha rejected: alpha.c: stage compile: ");
  harness_expect_status(h, "alpha", "last_error.code", "HS_ECOMPILE");
  long revert = h->offset;
  put_fixture(h, "alpha.c", "1");
  harness_expect_line(h, "alpha unchanged: alpha.c: same sources as the live "
                 "version; nothing to do");
  assert_int_equal(count_since(h, revert, "alpha compiling:"), 0);
  assert_int_equal(count_since(h, from, "alpha compiling:"), 1); /* broken */
  assert_int_equal(count_since(h, from, "alpha reloaded:"), 0);
  harness_expect_status(h, "alpha", "status", "live");
  harness_expect_status(h, "alpha", "version", "1");
  harness_expect_status(h, "alpha", "last_error", "null");
  harness_expect_status_num(h, "alpha", "generation", 1);
  stop_clean(h);
}

static void test_host_source_revert_to_older_build_is_cached(void **state) {
  harness *h = *state;

  start_alpha(h, debug_args);
  put_fixture(h, "alpha.c", "2");
  harness_expect_line(h, "alpha compiled: alpha.c compiled in ");
  harness_expect_line(h, "alpha reloaded: version 2, ");
  /* Back to version 1's sources: its build is found by its inputs. */
  long from = h->offset;
  put_fixture(h, "alpha.c", "1");
  harness_expect_line(h, "alpha cached: alpha.c: built before with the same inputs; "
                 "no compile");
  harness_expect_line(h, "alpha log: load reload version 1 loads=3");
  harness_expect_line(h, "alpha reloaded: version 1, state v1 (16 bytes), generation "
                 "3, from alpha.c in ");
  assert_int_equal(count_since(h, from, "alpha compiling:"), 0);
  assert_int_equal(count_since(h, from, "alpha compiled:"), 0);
  harness_expect_status(h, "alpha", "version", "1");
  harness_expect_status_num(h, "alpha", "generation", 3);
  /* And forward again: cached too. */
  put_fixture(h, "alpha.c", "2");
  harness_expect_line(h, "alpha cached: alpha.c: built before with the same inputs");
  harness_expect_line(h, "alpha reloaded: version 2, state v1 (16 bytes), generation "
                 "4, ");
  assert_int_equal(count_since(h, from, "alpha compiling:"), 0);
  stop_clean(h);
}

static void test_host_source_warnings_do_not_block(void **state) {
  harness *h = *state;
  char line[1024];

  put_small(h, "alpha.c", "alpha", "#define P_VERSION \"w1\"",
            "int p_unused_variable;");
  assert_int_equal(harness_start(h, NULL), 0);
  harness_expect_line(h, "alpha compiling: alpha.c");
  expect_line_text(h, ": warning: unused variable", line, sizeof(line));
  assert_true(harness_contains(line, "alpha.c:"));
  harness_expect_line(h, "alpha warning: alpha.c compiled with warnings (they do not "
                 "block; --plugin-werror makes them)");
  harness_expect_line(h, "alpha loaded: version w1, ");
  harness_expect_status(h, "alpha", "last_error", "null");
  stop_clean(h);
}

static void test_host_source_werror_makes_warnings_block(void **state) {
  harness *h = *state;
  const char *const args[] = {"--plugin-werror", NULL};
  char line[1024];

  put_small(h, "alpha.c", "alpha", "#define P_VERSION \"w1\"", NULL);
  assert_int_equal(harness_start(h, args), 0);
  harness_expect_line(h, "alpha loaded: version w1, ");
  put_small(h, "alpha.c", "alpha", "#define P_VERSION \"w2\"",
            "int p_unused_variable;");
  harness_expect_line(h, "alpha compiling: alpha.c");
  expect_line_text(h, "alpha rejected: ", line, sizeof(line));
  assert_true(harness_contains(
      line, "alpha rejected: alpha.c: stage compile: alpha.c does not "
            "compile (the compiler exited with status 1): alpha.c:"));
  assert_true(harness_contains(line, "unused variable"));
  assert_true(harness_contains(line, "(HS_ECOMPILE); version w1 keeps "
                                     "running"));
  harness_expect_status(h, "alpha", "version", "w1");
  harness_expect_status(h, "alpha", "last_error.code", "HS_ECOMPILE");
  stop_clean(h);
}

static void test_host_source_json_log_holds_compiler_output(void **state) {
  harness *h = *state;
  const char *const args[] = {"--log-format", "json", NULL};
  char line[4096], want[128];

  put_fixture(h, "alpha.c", "1");
  assert_int_equal(harness_start(h, args), 0);
  harness_expect_line(h, "\"plugin\":\"alpha\",\"event\":\"loaded\"");
  char *src = fixture_source("2", BROKEN_LINE);
  put_text(h, "alpha.c", src);
  free(src);
  /* One JSON line carries what the compiler printed; no raw lines. */
  long from = h->offset;
  expect_line_text(h, "\"plugin\":\"alpha\",\"event\":\"compiler\"", line,
                   sizeof(line));
  snprintf(want, sizeof(want), "alpha.c:%d:17: error: ",
           broken_line_number());
  assert_true(harness_contains(line, want));
  assert_true(harness_contains(line, "\"level\":\"error\""));
  expect_line_text(h, "\"plugin\":\"alpha\",\"event\":\"rejected\"", line,
                   sizeof(line));
  assert_true(harness_contains(line, "(HS_ECOMPILE); version 1 keeps "
                                     "running"));
  /* Every line since the save is a JSON object. */
  assert_int_equal(count_since(h, from, "{\"time\":"),
                   count_since(h, from, ""));
  assert_int_equal(harness_stop(h), 0);
  harness_expect_line(h, "\"plugin\":\"hotswap\",\"event\":\"stopped\"");
}

/* ---- tests: headers and flags ------------------------------------------ */

static void test_host_source_header_edit_rebuilds_its_dependents(void **state) {
  harness *h = *state;
  const char *with_header = "#include \"shared.h\"\n"
                            "#define P_VERSION PLUGIN_NAME \"-\" SHARED";

  put_text(h, "shared.h", "#define SHARED \"1\"\n");
  char *pre_one = format("#define PLUGIN_NAME \"one\"\n%s", with_header);
  char *pre_two = format("#define PLUGIN_NAME \"two\"\n%s", with_header);
  put_small(h, "one.c", "one", pre_one, NULL);
  put_small(h, "two.c", "two", pre_two, NULL);
  free(pre_one);
  free(pre_two);
  put_small(h, "three.c", "three", "#define P_VERSION \"three-1\"", NULL);
  assert_int_equal(harness_start(h, debug_args), 0);
  const char *const loaded[] = {"one loaded: version one-1, ",
                                "two loaded: version two-1, ",
                                "three loaded: version three-1, "};
  expect_lines_any_order(h, loaded, 3);

  /* The header changes: exactly the two plugins that include it are
   * compiled again and swapped. */
  long from = h->offset;
  put_text(h, "shared.h", "#define SHARED \"2\"\n");
  const char *const reloaded[] = {"one reloaded: version one-2, ",
                                  "two reloaded: version two-2, "};
  expect_lines_any_order(h, reloaded, 2);
  /* A barrier: three's own edit is the next thing it sees. */
  long barrier = harness_log_end(h);
  put_small(h, "three.c", "three", "#define P_VERSION \"three-2\"", NULL);
  harness_expect_line(h, "three reloaded: version three-2, ");
  assert_int_equal(harness_count(h, from, barrier, "one compiling:"), 1);
  assert_int_equal(harness_count(h, from, barrier, "two compiling:"), 1);
  assert_int_equal(harness_count(h, from, barrier, "three "), 0);
  assert_int_equal(count_since(h, barrier, "three compiling:"), 1);
  assert_int_equal(count_since(h, barrier, "one "), 0);
  assert_int_equal(count_since(h, barrier, "two "), 0);

  /* The header back as it was: both builds are found again. */
  from = h->offset;
  put_text(h, "shared.h", "#define SHARED \"1\"\n");
  const char *const back[] = {
      "one cached: one.c: built before with the same inputs",
      "two cached: two.c: built before with the same inputs",
      "one reloaded: version one-1, ", "two reloaded: version two-1, "};
  expect_lines_any_order(h, back, 4);
  assert_int_equal(count_since(h, from, " compiling:"), 0);
  harness_expect_status(h, "three", "version", "three-2");
  stop_clean(h);
}

static void test_host_source_flags_file_is_used(void **state) {
  harness *h = *state;
  char line[512];
  /* cbrt() from libm, through a volatile so that the call stays: the host
   * does not link libm, so without -lm the library would not load. */
  const char *prelude = "#include <math.h>\n"
                        "#ifndef P_FLAG\n"
                        "#error alpha.flags was not applied\n"
                        "#endif\n"
                        "#define P_STR_(x) #x\n"
                        "#define P_STR(x) P_STR_(x)\n"
                        "#define P_VERSION \"flag-\" P_STR(P_FLAG)";
  const char *body = "volatile double p_x = 27.0;\n"
                     "  api->log(ctx, HS_LOG_INFO, \"cbrt %.1f\", "
                     "cbrt(p_x));";

  put_text(h, "alpha.flags", "# libm for cbrt, and a define\n-lm\n"
                             "-DP_FLAG=1\n");
  put_small(h, "alpha.c", "alpha", prelude, body);
  assert_int_equal(harness_start(h, NULL), 0);
  harness_expect_line(h, "alpha compiling: alpha.c");
  harness_expect_line(h, "alpha log: cbrt 3.0");
  harness_expect_line(h, "alpha loaded: version flag-1, ");

  /* The flags file is an input: its edit rebuilds. */
  put_text(h, "alpha.flags", "-lm -DP_FLAG=2\n");
  harness_expect_line(h, "alpha compiling: alpha.c");
  harness_expect_line(h, "alpha reloaded: version flag-2, ");

  /* Without it the source does not compile; the old version stays. */
  assert_int_equal(harness_remove(h, "alpha.flags"), 0);
  harness_expect_line(h, "alpha compiling: alpha.c");
  expect_line_text(h, "alpha rejected: ", line, sizeof(line));
  assert_true(harness_contains(line, "alpha.flags was not applied"));
  assert_true(harness_contains(line, "(HS_ECOMPILE); version flag-2 keeps "
                                     "running"));
  harness_expect_status(h, "alpha", "version", "flag-2");
  stop_clean(h);
}

/* ---- tests: source beside prebuilt ------------------------------------- */

static void test_host_source_wins_over_prebuilt(void **state) {
  harness *h = *state;

  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  put_fixture(h, "counter.c", "src1");
  assert_int_equal(harness_start(h, debug_args), 0);
  harness_expect_line(h, "counter compiling: counter.c");
  harness_expect_line(h, "counter log: load start version src1 loads=1");
  harness_expect_line(h, "counter loaded: version src1, state v1 (16 bytes), "
                 "generation 1, from counter.c in ");
  harness_expect_status(h, "counter", "file", "counter.c");
  /* The prebuilt file changes: ignored. */
  long from = h->offset;
  assert_int_equal(harness_install(h, "counter_v1b", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter ignored: counter.so is ignored: counter is built "
                 "from counter.c");
  put_fixture(h, "counter.c", "src2");
  harness_expect_line(h, "counter reloaded: version src2, ");
  assert_int_equal(count_since(h, 0, "counter log: load"), 2);
  assert_int_equal(count_since(h, 0, "version 1.0"), 0);
  assert_int_equal(count_since(h, from, "version 1.1"), 0);
  assert_int_equal(count_since(h, from, "counter reloaded:"), 1);
  harness_expect_status(h, "counter", "version", "src2");
  harness_expect_status(h, "counter", "file", "counter.c");
  stop_clean(h);
}

static void test_host_source_appears_beside_live_prebuilt(void **state) {
  harness *h = *state;

  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(harness_start(h, NULL), 0);
  harness_expect_line(h, "counter loaded: version 1.0, ");
  /* The source arrives: it takes over, on the live state. */
  put_fixture(h, "counter.c", "src1");
  harness_expect_line(h, "counter source: counter.c now builds counter; counter.so "
                 "is ignored");
  harness_expect_line(h, "counter compiling: counter.c");
  harness_expect_line(h, "counter log: load reload version src1 loads=2");
  harness_expect_line(h, "counter reloaded: version src1, state v1 (16 bytes), "
                 "generation 2, from counter.c in ");
  harness_expect_status(h, "counter", "file", "counter.c");
  /* The source goes: the prebuilt file is the plugin again. */
  assert_int_equal(harness_remove(h, "counter.c"), 0);
  harness_expect_line(h, "counter unloaded: counter.c was removed; version src1 "
                 "unloaded");
  harness_expect_line(h, "counter loaded: version 1.0, ");
  harness_expect_status(h, "counter", "file", "counter.so");
  harness_expect_status(h, "counter", "version", "1.0");
  stop_clean(h);
}

/* ---- tests: the compiler ----------------------------------------------- */

static void test_host_source_missing_compiler_is_clear_error(void **state) {
  harness *h = *state;
  char line[1024];

  assert_int_equal(harness_env(h, "CC=/nonexistent/cc"), 0);
  put_fixture(h, "alpha.c", "1");
  assert_int_equal(harness_start(h, NULL), 0);
  harness_expect_line(h, "alpha compiling: alpha.c");
  expect_line_text(h, "alpha rejected: ", line, sizeof(line));
  assert_true(harness_contains(
      line, "alpha rejected: alpha.c: stage compile: cannot run the compiler "
            "'/nonexistent/cc': No such file or directory (set $CC) "
            "(HS_ENOENT); the plugin is not running"));
  harness_expect_status(h, "alpha", "status", "rejected");
  harness_expect_status(h, "alpha", "last_error.code", "HS_ENOENT");
  harness_expect_status(h, "alpha", "last_error.stage", "compile");
  harness_expect_status(h, "alpha", "last_error.message",
                "cannot run the compiler '/nonexistent/cc': No such file or "
                "directory (set $CC)");
  /* The host runs on: prebuilt plugins load. */
  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter loaded: version 1.0, ");
  stop_clean(h);
}

static void test_host_source_missing_include_is_clear_error(void **state) {
  harness *h = *state;
  char line[1024];

  assert_int_equal(harness_env(h, "HOTSWAP_INCLUDE=/nonexistent/include"), 0);
  put_fixture(h, "alpha.c", "1");
  long start = harness_log_end(h);
  assert_int_equal(harness_start(h, NULL), 0);
  h->offset = start; /* the warning comes before "started" */
  harness_expect_line(h, "hotswap warning: plugin sources (*.c) will not be "
                 "compiled: cannot find hotswap.h for compiling plugins "
                 "(looked in /nonexistent/include; set HOTSWAP_INCLUDE)");
  expect_line_text(h, "alpha rejected: ", line, sizeof(line));
  assert_true(harness_contains(
      line, "alpha rejected: alpha.c: stage compile: alpha.c cannot be "
            "compiled: hotswap.h was not found (set HOTSWAP_INCLUDE) "
            "(HS_ENOENT); the plugin is not running"));
  assert_int_equal(count_since(h, start, "alpha compiling:"), 0);
  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter loaded: version 1.0, ");
  stop_clean(h);
}

static void test_host_source_include_without_header_is_clear_error(
    void **state) {
  harness *h = *state;
  char env[sizeof(h->env[0])];

  /* A directory that exists but holds no hotswap.h. */
  format_to(env, sizeof(env), "HOTSWAP_INCLUDE=%s", h->cache);
  assert_int_equal(harness_env(h, env), 0);
  put_fixture(h, "alpha.c", "1");
  long start = harness_log_end(h);
  assert_int_equal(harness_start(h, NULL), 0);
  h->offset = start;
  harness_expect_line(h, "hotswap warning: plugin sources (*.c) will not be "
                 "compiled: cannot find hotswap.h for compiling plugins "
                 "(looked in ");
  harness_expect_line(h, "alpha rejected: alpha.c: stage compile: alpha.c cannot be "
                 "compiled: hotswap.h was not found (set HOTSWAP_INCLUDE)");
  assert_int_equal(count_since(h, start, "alpha compiling:"), 0);
  stop_clean(h);
}

static void test_host_source_hanging_compiler_times_out(void **state) {
  harness *h = *state;
  const char *const args[] = {"--build-timeout", "1500", NULL};
  char line[1024];

  use_fake_cc(h);
  touch_root(h, "open-all");
  touch_root(h, "hang");
  put_fixture(h, "alpha.c", "1");
  assert_int_equal(harness_start(h, args), 0);
  harness_expect_line(h, "alpha compiling: alpha.c");
  expect_line_text(h, "alpha rejected: ", line, sizeof(line));
  assert_true(harness_contains(
      line, "alpha rejected: alpha.c: stage compile: the compiler timed out "
            "after 1500 ms on alpha.c (it was killed) (HS_ETIMEDOUT); the "
            "plugin is not running"));
  harness_expect_status(h, "alpha", "status", "rejected");
  harness_expect_status(h, "alpha", "last_error.code", "HS_ETIMEDOUT");
  harness_expect_status(h, "alpha", "last_error.stage", "compile");
  /* The compiler and what it started are gone. */
  wait_no_compilers(h, "after the timeout");
  /* The host runs on. */
  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter loaded: version 1.0, ");
  stop_clean(h);
}

static void test_host_source_compiler_dies_with_host(void **state) {
  harness *h = *state;

  use_fake_cc(h);
  touch_root(h, "open-all");
  touch_root(h, "hang");
  put_fixture(h, "alpha.c", "1");
  /* A clean stop while a compile hangs ends the compile. */
  assert_int_equal(harness_start(h, NULL), 0);
  harness_expect_line(h, "alpha compiling: alpha.c");
  wait_fake_cc_procs(h, "/hang-helper", 1);
  stop_clean(h);
  wait_no_compilers(h, "after a clean stop");
  /* So does the host's death. */
  assert_int_equal(harness_start(h, NULL), 0);
  harness_expect_line(h, "alpha compiling: alpha.c");
  wait_fake_cc_procs(h, "/hang-helper", 1);
  assert_int_equal(harness_kill(h), 0);
  wait_no_compilers(h, "after the host was killed");
}

static void test_host_source_removed_while_compiling_stops_compiler(
    void **state) {
  harness *h = *state;

  use_fake_cc(h);
  touch_root(h, "open-all");
  touch_root(h, "hang");
  put_fixture(h, "alpha.c", "1");
  assert_int_equal(harness_start(h, NULL), 0);
  harness_expect_line(h, "alpha compiling: alpha.c");
  wait_fake_cc_procs(h, "/hang-helper", 1);
  assert_int_equal(harness_remove(h, "alpha.c"), 0);
  wait_no_compilers(h, "after the source was removed");
  /* Nothing of alpha is left; the host runs on. */
  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "counter loaded: version 1.0, ");
  char json[16384], got[64];
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  assert_int_equal(harness_json_get(json, "alpha", "status", got, sizeof(got)),
                   -1);
  stop_clean(h);
}

/* ---- tests: several at once, supersede --------------------------------- */

static void test_host_source_parallel_builds_swap_when_ready(void **state) {
  harness *h = *state;
  static const char *const names[] = {"p1", "p2", "p3", "p4"};
  enum { N = 4 };
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  int slots = ncpu > 1 ? (int)(ncpu < N ? ncpu : N) : 1;
  char file[16], want[128], line[512], first[16];

  use_fake_cc(h);
  touch_root(h, "open-all");
  for (int i = 0; i < N; i++) {
    snprintf(file, sizeof(file), "%s.c", names[i]);
    put_fixture(h, file, "1");
  }
  assert_int_equal(harness_start(h, debug_args), 0);
  for (int i = 0; i < N; i++) {
    long from = h->offset;
    snprintf(want, sizeof(want), "%s loaded: version 1, ", names[i]);
    harness_expect_line(h, want);
    h->offset = from;
  }
  h->offset = harness_log_end(h);

  /* All saved at once, with every compile held before it ends: as many
   * start as there are cores, the others wait. */
  remove_root(h, "open-all");
  long from = h->offset;
  for (int i = 0; i < N; i++) {
    snprintf(file, sizeof(file), "%s.c", names[i]);
    put_fixture(h, file, "2");
  }
  expect_line_text(h, " compiling: ", line, sizeof(line));
  char *name = strstr(line, " compiling: ") + strlen(" compiling: ");
  snprintf(first, sizeof(first), "%.*s", (int)strcspn(name, " "), name);
  for (int i = 1; i < slots; i++)
    harness_expect_line(h, " compiling: ");
  snprintf(want, sizeof(want), "%.*s", (int)strlen(first) - 2, first);
  harness_expect_status(h, want, "status", "compiling");

  /* The first one's compile ends: it is swapped in at once, while the
   * others are still held; then a waiting one starts. */
  char gate[32];
  snprintf(gate, sizeof(gate), "open-%s", first);
  touch_root(h, gate);
  snprintf(want, sizeof(want), "%.*s compiled: ", (int)strlen(first) - 2,
           first);
  long compiled = harness_expect_line(h, want);
  assert_int_equal(harness_count(h, from, compiled, " compiling: "), slots);
  snprintf(want, sizeof(want), "%.*s reloaded: version 2, ",
           (int)strlen(first) - 2, first);
  harness_expect_line(h, want);
  for (int i = 0; i < N; i++) {
    if (strncmp(first, names[i], strlen(names[i])) == 0)
      continue;
    harness_expect_status(h, names[i], "version", "1");
  }
  if (slots < N) {
    h->offset = compiled;
    harness_expect_line(h, " compiling: ");
  }

  /* Everything let go: all become live. */
  touch_root(h, "open-all");
  h->offset = from;
  for (int i = 0; i < N; i++) {
    snprintf(want, sizeof(want), "%s log: load reload version 2 loads=2",
             names[i]);
    harness_expect_line(h, want);
    h->offset = from;
    snprintf(want, sizeof(want), "%s reloaded: version 2, ", names[i]);
    harness_expect_line(h, want);
    h->offset = from;
  }
  for (int i = 0; i < N; i++) {
    snprintf(want, sizeof(want), "%s compiling: ", names[i]);
    assert_int_equal(count_since(h, from, want), 1);
    harness_expect_status(h, names[i], "version", "2");
  }
  h->offset = harness_log_end(h);
  stop_clean(h);
}

static void test_host_source_newer_save_supersedes_build(void **state) {
  harness *h = *state;

  use_fake_cc(h);
  touch_root(h, "open-all");
  start_alpha(h, NULL);
  long from = h->offset;
  /* Version 2 is compiled, and held before the compiler exits... */
  remove_root(h, "open-all");
  remove_root(h, "done-alpha.c");
  put_fixture(h, "alpha.c", "2");
  harness_expect_line(h, "alpha compiling: alpha.c");
  wait_root_file(h, "done-alpha.c");
  harness_expect_status(h, "alpha", "status", "compiling");
  harness_expect_status(h, "alpha", "version", "1");
  /* ...when version 3 is saved. A prebuilt plugin saved after it is a
   * barrier: once it is loaded, the host has seen version 3. */
  put_fixture(h, "alpha.c", "3");
  assert_int_equal(harness_install(h, "counter_v1", "beta.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "beta loaded: version 1.0, ");
  touch_root(h, "open-all");
  /* Version 3 is built and goes live; version 2 never does. */
  harness_expect_line(h, "alpha log: load reload version 3 loads=2");
  harness_expect_line(h, "alpha reloaded: version 3, state v1 (16 bytes), generation "
                 "2, ");
  assert_int_equal(count_since(h, from, "alpha compiling: alpha.c"), 2);
  assert_int_equal(count_since(h, from, "version 2"), 0);
  assert_int_equal(count_since(h, from, "alpha reloaded:"), 1);
  harness_expect_status(h, "alpha", "version", "3");
  harness_expect_status_num(h, "alpha", "generation", 2);
  stop_clean(h);
}

/* ---- tests: directory plugins ------------------------------------------ */

/*
 * Writes the directory plugin NAME/ under dir: main.c (the entry, includes
 * util.h), util.c (the version string "<util>-" UTIL_TAG), util.h
 * (UTIL_TAG tag) and flags (-DDIR_FLAG=flag). Its version is the util
 * string; load logs "load <reason> version <v>" and "flag <flag>".
 */
static void write_dir_plugin(const char *dir, const char *name,
                             const char *util, const char *tag, int flag) {
  char path[PATH_MAX];
  format_to(path, sizeof(path), "%s/%s", dir, name);
  assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
  char *main_c = small_plugin(
      name,
      "#include \"util.h\"\n"
      "#ifndef DIR_FLAG\n"
      "#error the flags file was not applied\n"
      "#endif\n"
      "#define P_VERSION dir_util_version",
      "api->log(ctx, HS_LOG_INFO, \"flag %d\", DIR_FLAG);");
  format_to(path, sizeof(path), "%s/%s/main.c", dir, name);
  write_file(path, main_c, 0644);
  free(main_c);
  char *text = format("#ifndef UTIL_H\n#define UTIL_H\n"
                      "#define UTIL_TAG \"%s\"\n"
                      "extern const char dir_util_version[];\n"
                      "#endif\n",
                      tag);
  format_to(path, sizeof(path), "%s/%s/util.h", dir, name);
  write_file(path, text, 0644);
  free(text);
  text = format("#include \"util.h\"\n"
                "const char dir_util_version[] = \"%s-\" UTIL_TAG;\n",
                util);
  format_to(path, sizeof(path), "%s/%s/util.c", dir, name);
  write_file(path, text, 0644);
  free(text);
  text = format("-DDIR_FLAG=%d\n", flag);
  format_to(path, sizeof(path), "%s/%s/flags", dir, name);
  write_file(path, text, 0644);
  free(text);
}

static void test_host_source_dir_plugin_loads(void **state) {
  harness *h = *state;
  char from_path[PATH_MAX], to_path[PATH_MAX];

  write_dir_plugin(h->plugins, "multi", "u1", "t1", 7);
  assert_int_equal(harness_start(h, NULL), 0);
  harness_expect_line(h, "multi compiling: multi/");
  harness_expect_line(h, "multi log: flag 7");
  harness_expect_line(h, "multi log: load 1 version u1-t1");
  harness_expect_line(h, "multi loaded: version u1-t1, state v1 (8 bytes), "
                 "generation 1, ");
  harness_expect_status(h, "multi", "status", "live");
  harness_expect_status(h, "multi", "file", "multi/");
  harness_expect_status(h, "multi", "last_error", "null");
  /* A directory plugin moved in while the host runs loads too. */
  write_dir_plugin(h->root, "other", "o1", "t1", 8);
  format_to(from_path, sizeof(from_path), "%s/other", h->root);
  format_to(to_path, sizeof(to_path), "%s/other", h->plugins);
  assert_int_equal(rename(from_path, to_path), 0);
  harness_expect_line(h, "other compiling: other/");
  harness_expect_line(h, "other log: flag 8");
  harness_expect_line(h, "other loaded: version o1-t1, ");
  stop_clean(h);
}

static void test_host_source_dir_plugin_edit_rebuilds(void **state) {
  harness *h = *state;

  write_dir_plugin(h->plugins, "multi", "u1", "t1", 7);
  assert_int_equal(harness_start(h, NULL), 0);
  harness_expect_line(h, "multi loaded: version u1-t1, ");
  /* One of its sources changes. */
  put_text(h, "multi/util.c", "#include \"util.h\"\n"
                              "const char dir_util_version[] = \"u2-\" "
                              "UTIL_TAG;\n");
  harness_expect_line(h, "multi compiling: multi/");
  harness_expect_line(h, "multi log: load 2 version u2-t1");
  harness_expect_line(h, "multi reloaded: version u2-t1, state v1 (8 bytes), "
                 "generation 2, ");
  /* Its flags change. */
  put_text(h, "multi/flags", "-DDIR_FLAG=9\n");
  harness_expect_line(h, "multi compiling: multi/");
  harness_expect_line(h, "multi log: flag 9");
  harness_expect_line(h, "multi reloaded: version u2-t1, state v1 (8 bytes), "
                 "generation 3, ");
  harness_expect_status_num(h, "multi", "generation", 3);
  stop_clean(h);
}

static void test_host_source_dir_header_edit_rebuilds_only_it(void **state) {
  harness *h = *state;

  write_dir_plugin(h->plugins, "multi", "u1", "t1", 7);
  write_dir_plugin(h->plugins, "other", "o1", "t1", 8);
  put_fixture(h, "alpha.c", "1");
  assert_int_equal(harness_start(h, NULL), 0);
  const char *const loaded[] = {"multi loaded: version u1-t1, ",
                                "other loaded: version o1-t1, ",
                                "alpha loaded: version 1, "};
  expect_lines_any_order(h, loaded, 3);
  /* multi's own util.h changes; other has a util.h of its own. */
  long from = h->offset;
  put_text(h, "multi/util.h", "#ifndef UTIL_H\n#define UTIL_H\n"
                              "#define UTIL_TAG \"t2\"\n"
                              "extern const char dir_util_version[];\n"
                              "#endif\n");
  harness_expect_line(h, "multi reloaded: version u1-t2, ");
  long barrier = harness_log_end(h);
  put_text(h, "other/util.c", "#include \"util.h\"\n"
                              "const char dir_util_version[] = \"o2-\" "
                              "UTIL_TAG;\n");
  harness_expect_line(h, "other reloaded: version o2-t1, ");
  assert_int_equal(harness_count(h, from, barrier, "multi compiling:"), 1);
  assert_int_equal(harness_count(h, from, barrier, "other "), 0);
  assert_int_equal(count_since(h, from, "alpha "), 0);
  stop_clean(h);
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, source_setup, source_teardown)
  const struct CMUnitTest tests[] = {
      T(test_host_source_edit_rebuilds_and_keeps_state),
      T(test_host_source_syntax_error_keeps_old_version),
      T(test_host_source_revert_to_live_content_compiles_nothing),
      T(test_host_source_revert_to_older_build_is_cached),
      T(test_host_source_warnings_do_not_block),
      T(test_host_source_werror_makes_warnings_block),
      T(test_host_source_json_log_holds_compiler_output),
      T(test_host_source_header_edit_rebuilds_its_dependents),
      T(test_host_source_flags_file_is_used),
      T(test_host_source_wins_over_prebuilt),
      T(test_host_source_appears_beside_live_prebuilt),
      T(test_host_source_missing_compiler_is_clear_error),
      T(test_host_source_missing_include_is_clear_error),
      T(test_host_source_include_without_header_is_clear_error),
      T(test_host_source_hanging_compiler_times_out),
      T(test_host_source_compiler_dies_with_host),
      T(test_host_source_removed_while_compiling_stops_compiler),
      T(test_host_source_parallel_builds_swap_when_ready),
      T(test_host_source_newer_save_supersedes_build),
      T(test_host_source_dir_plugin_loads),
      T(test_host_source_dir_plugin_edit_rebuilds),
      T(test_host_source_dir_header_edit_rebuilds_only_it),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
