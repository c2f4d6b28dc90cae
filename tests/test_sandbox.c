/*
 * test_sandbox.c - validation in validators forked by the zygote: the
 * verdict on each fixture, migration on a real state, parallel
 * validations, cancel, the zygote's death, and no process left behind.
 *
 * The pool spawns its zygote from /proc/self/exe with argv[1] ==
 * HS_ZYGOTE_ARG. In a test, /proc/self/exe is this test binary, so main()
 * becomes the zygote when asked, as host/main.c does: a test binary that
 * opens a pool without that dispatch would run its tests again in the
 * "zygote".
 *
 * Every test gets a real loop and pool. The validators' log (their stderr,
 * inherited from the zygote) and this process's log go to one memfd, so
 * that the plugin's lines from the sandbox can be checked. Every wait is
 * on an event with a generous limit; no duration is asserted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "sandbox.h"
#include "state.h"
#include "fixtures/fixture_state.h"

#define FIXTURE(name) HS_TEST_FIXTURES "/" name ".so"
#define MS 1000000ull
#define WAIT_MS 30000 /* limit on any wait for something that must happen */

/* ---- processes, from /proc ------------------------------------------- */

/* Reads /proc/<pid>/stat: state letter, parent and user CPU ticks. Returns
 * 0, or -1 when the process is gone. */
static int proc_stat(pid_t pid, char *state, pid_t *ppid,
                     unsigned long *utime) {
  char path[64], buf[1024];
  int ppid_i = 0;
  unsigned long ut = 0;
  ssize_t n;
  int fd;

  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0)
    return -1;
  buf[n] = '\0';
  /* "pid (comm) S ppid ...": comm may hold anything, even ')'. */
  char *p = strrchr(buf, ')');
  if (!p || sscanf(p + 1,
                   " %c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu",
                   state, &ppid_i, &ut) != 3)
    return -1;
  if (ppid)
    *ppid = (pid_t)ppid_i;
  if (utime)
    *utime = ut;
  return 0;
}

/* 1 while pid exists and is not a zombie. */
static int alive(pid_t pid) {
  char st;
  return proc_stat(pid, &st, NULL, NULL) == 0 && st != 'Z' && st != 'X';
}

/* The living children of parent, up to max of them; returns how many. */
static int children_of(pid_t parent, pid_t *out, int max) {
  DIR *d = opendir("/proc");
  struct dirent *e;
  int n = 0;

  assert_non_null(d);
  while ((e = readdir(d)) != NULL) {
    char *end, st;
    pid_t pp;
    long pid = strtol(e->d_name, &end, 10);
    if (*end || pid <= 0)
      continue;
    if (proc_stat((pid_t)pid, &st, &pp, NULL) != 0 || pp != parent)
      continue;
    if (n < max)
      out[n] = (pid_t)pid;
    n++;
  }
  closedir(d);
  return n;
}

/* 1 if pid has a mapping whose path contains needle. */
static int maps_contain(pid_t pid, const char *needle) {
  char path[64], line[1024];
  int found = 0;
  FILE *f;

  snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
  if (!(f = fopen(path, "re")))
    return 0;
  while (!found && fgets(line, sizeof(line), f))
    found = strstr(line, needle) != NULL;
  fclose(f);
  return found;
}

/* The zygote: this process's only child. */
static pid_t zygote_pid(void) {
  pid_t kids[8];
  assert_int_equal(children_of(getpid(), kids, 8), 1);
  return kids[0];
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Polls cond (without running the loop) until it holds or limit_ms pass.
 * Returns 1 if it held. */
static int poll_until(int (*cond)(void *), void *arg, unsigned limit_ms) {
  uint64_t end = hs_now_ns() + limit_ms * MS;
  while (!cond(arg)) {
    if (hs_now_ns() > end)
      return 0;
    sleep_ms(2);
  }
  return 1;
}

static int pid_gone(void *arg) { return !alive(*(pid_t *)arg); }

/* The zygote's child that has mapped needle (a validator past "open"). */
struct finder {
  pid_t zygote;
  const char *needle;
  pid_t found;
};

static int find_validator(void *arg) {
  struct finder *f = arg;
  pid_t kids[64];
  int n = children_of(f->zygote, kids, 64);
  for (int i = 0; i < n && i < 64; i++)
    if (maps_contain(kids[i], f->needle)) {
      f->found = kids[i];
      return 1;
    }
  return 0;
}

/* The validator has spun in user space for a quarter of a second: it is
 * in the endless loop of bad_hang_selftest's selftest(), the only place
 * where it burns that much user CPU. */
static int spinning(void *arg) {
  unsigned long ut;
  char st;
  long hz = sysconf(_SC_CLK_TCK);
  return proc_stat(*(pid_t *)arg, &st, NULL, &ut) == 0 &&
         ut >= (unsigned long)(hz / 4);
}

/* ---- the environment of each test ------------------------------------ */

/* Snapshot memfds, one per request with a state, as each plugin has its
 * own (validations of one test may run at once); freed at teardown. */
static hs_state_snap g_snaps[16];
static unsigned g_nsnaps;

typedef struct env {
  hs_loop loop;
  hs_sandbox_pool *pool;
  int logfd; /* memfd: this process's log and the validators' */
} env;

/* Everything both this process and the validators have logged so far;
 * the caller frees it. */
static char *log_text(env *e) {
  struct stat st;
  assert_int_equal(fstat(e->logfd, &st), 0);
  char *buf = malloc((size_t)st.st_size + 1);
  assert_non_null(buf);
  assert_int_equal(pread(e->logfd, buf, (size_t)st.st_size, 0), st.st_size);
  buf[st.st_size] = '\0';
  return buf;
}

static int log_contains(env *e, const char *needle) {
  char *text = log_text(e);
  int found = strstr(text, needle) != NULL;
  if (!found)
    fprintf(stderr, "log lacks \"%s\"; it holds:\n%s", needle, text);
  free(text);
  return found;
}

/* Opens e->pool. The zygote inherits fd 2 and hands it on to its
 * validators: point it at the log meanwhile. */
static int open_pool(env *e) {
  hs_error err;
  int saved = dup(2), rc;

  dup2(e->logfd, 2);
  rc = hs_sandbox_pool_open(&e->pool, &e->loop, HS_LOG_TEXT, HS_LOG_INFO,
                            &err);
  dup2(saved, 2);
  close(saved);
  if (rc != 0)
    fprintf(stderr, "hs_sandbox_pool_open: %s\n", err.msg);
  return rc;
}

static int setup(void **state) {
  env *e = calloc(1, sizeof(*e));

  if (!e)
    return -1;
  e->logfd = memfd_create("test-sandbox-log", MFD_CLOEXEC);
  if (e->logfd < 0 || fcntl(e->logfd, F_SETFL, O_APPEND) != 0 ||
      hs_loop_init(&e->loop) != 0) {
    free(e);
    return -1;
  }
  hs_log_init(HS_LOG_TEXT, HS_LOG_INFO, e->logfd);
  *state = e;
  return open_pool(e) == 0 ? 0 : -1;
}

static int teardown(void **state) {
  env *e = *state;
  pid_t kids[8];

  hs_sandbox_pool_close(e->pool);
  while (g_nsnaps > 0)
    hs_state_snap_free(&g_snaps[--g_nsnaps]);
  /* No child of ours survives the pool: the zygote was reaped. */
  int n = children_of(getpid(), kids, 8);
  for (int i = 0; i < n && i < 8; i++) {
    /* Left behind by a bug: end it here, or the next tests count it. */
    fprintf(stderr, "child %d left after the pool closed\n", (int)kids[i]);
    kill(kids[i], SIGKILL);
    waitpid(kids[i], NULL, 0);
  }
  hs_loop_close(&e->loop);
  hs_log_init(HS_LOG_TEXT, HS_LOG_INFO, 2);
  close(e->logfd);
  free(e);
  return n == 0 ? 0 : -1;
}

/* ---- validations ----------------------------------------------------- */

typedef struct result {
  int done;      /* callbacks so far */
  hs_sandbox *sb;
  hs_verdict v;
} result;

static void on_verdict(hs_sandbox *sb, const hs_verdict *v, void *data) {
  result *r = data;
  assert_ptr_equal(sb, r->sb);
  r->done++;
  r->v = *v;
}

static hs_state_snap *new_snap(void) {
  assert_true(g_nsnaps < sizeof(g_snaps) / sizeof(g_snaps[0]));
  g_snaps[g_nsnaps] = (hs_state_snap)HS_STATE_SNAP_INIT;
  return &g_snaps[g_nsnaps++];
}

static hs_sandbox_req request(const char *path, const hs_state *st) {
  hs_sandbox_req req = {
      .snap = st ? new_snap() : NULL,
      .name = "counter",
      .dir = HS_TEST_FIXTURES,
      .file = "counter.so",
      .path = path,
      .state = st,
      .reason = st ? HS_LOAD_RELOAD : HS_LOAD_START,
      .allow_reset = 0,
      .limits = {WAIT_MS, 0, 0},
      .log_format = HS_LOG_TEXT,
      .log_level = HS_LOG_INFO,
  };
  return req;
}

/* hs_sandbox_start, with fd 2 pointed at the log: a zygote it spawns
 * again (after the first one died) logs there too. */
static int start_logged(env *e, const hs_sandbox_req *req, result *r,
                        hs_error *err) {
  int saved = dup(2);
  dup2(e->logfd, 2);
  int rc = hs_sandbox_start(&r->sb, e->pool, req, on_verdict, r, err);
  dup2(saved, 2);
  close(saved);
  return rc;
}

static void start(env *e, const hs_sandbox_req *req, result *r) {
  hs_error err;
  memset(r, 0, sizeof(*r));
  hs_error_clear(&err);
  int rc = start_logged(e, req, r, &err);
  if (rc != 0)
    fail_msg("hs_sandbox_start: %s (%s)", err.msg, hs_err_name(rc));
  assert_non_null(r->sb);
}

/* Runs the loop until cond(arg) holds, checked every millisecond, or
 * limit_ms pass. Returns 1 if it held. */
struct waiter {
  hs_loop *loop;
  int (*cond)(void *);
  void *arg;
  uint64_t end;
  int met;
};

static void on_poll(hs_timer *t) {
  struct waiter *w = t->data;
  if (w->cond(w->arg)) {
    w->met = 1;
    hs_loop_stop(w->loop);
  } else if (hs_now_ns() > w->end) {
    hs_loop_stop(w->loop);
  }
}

static int run_until(env *e, int (*cond)(void *), void *arg,
                     unsigned limit_ms) {
  struct waiter w = {&e->loop, cond, arg, hs_now_ns() + limit_ms * MS, 0};
  hs_timer t;
  if (cond(arg))
    return 1;
  hs_loop_timer_init(&t, on_poll, &w);
  assert_int_equal(hs_loop_timer_start(&e->loop, &t, MS, MS), 0);
  assert_int_equal(hs_loop_run(&e->loop), 0);
  hs_loop_timer_stop(&t);
  return w.met;
}

static int is_done(void *arg) { return ((result *)arg)->done > 0; }

/* Validates req and returns its verdict. */
static hs_verdict validate(env *e, const hs_sandbox_req *req) {
  result r;
  start(e, req, &r);
  assert_true(run_until(e, is_done, &r, WAIT_MS));
  assert_int_equal(r.done, 1);
  return r.v;
}

static void expect_verdict(const hs_verdict *v, int code, const char *stage,
                           const char *text) {
  if (v->err.code != code)
    fail_msg("verdict %s (stage %s: %s), expected %s", hs_err_name(v->err.code),
             v->err.stage, v->err.msg, hs_err_name(code));
  assert_string_equal(v->err.stage, stage);
  if (text && !strstr(v->err.msg, text))
    fail_msg("verdict message \"%s\" lacks \"%s\"", v->err.msg, text);
}

/* A state of layout v1 with these counts. */
static void state_v1(hs_state *st, uint64_t loads, uint64_t ticks) {
  struct state_v1 v = {loads, ticks};
  assert_int_equal(hs_state_init(st, 1, sizeof(v)), 0);
  memcpy(st->data, &v, sizeof(v));
}

/* ---- verdicts on each fixture ---------------------------------------- */

static void test_sandbox_accepts_counter_v1(void **state) {
  env *e = *state;
  hs_sandbox_req req = request(FIXTURE("counter_v1"), NULL);
  hs_verdict v = validate(e, &req);

  expect_verdict(&v, 0, "", NULL);
  assert_string_equal(v.version, "1.0");
  assert_int_equal(v.state_version, 1);
  assert_int_equal(v.state_size, 16);
  assert_true(v.elapsed_ns > 0);
  /* The validator ran load(START) and unload(RELOAD) on a zeroed state,
   * logging as the sandbox, and did not count the load. */
  assert_true(log_contains(e, "counter sandbox: load start version 1.0 "
                              "loads=0"));
  assert_true(log_contains(e, "counter sandbox: unload reload version 1.0 "
                              "loads=0"));
}

static void expect_rejected(env *e, const char *path, int code,
                            const char *stage, const char *text,
                            const char *version) {
  hs_sandbox_req req = request(path, NULL);
  hs_verdict v = validate(e, &req);
  expect_verdict(&v, code, stage, text);
  assert_string_equal(v.version, version);
}

static void test_sandbox_rejects_unresolved(void **state) {
  env *e = *state;
  hs_sandbox_req req = request(FIXTURE("bad_unresolved"), NULL);
  hs_verdict v = validate(e, &req);

  expect_verdict(&v, HS_EDLOPEN, "open", "cannot load counter.so: ");
  assert_non_null(strstr(v.err.msg, "fx_function_nobody_defines"));
  assert_string_equal(v.version, ""); /* the descriptor was never reached */
}

static void test_sandbox_rejects_missing_file(void **state) {
  expect_rejected(*state, HS_TEST_FIXTURES "/no_such_plugin.so", HS_EDLOPEN,
                  "open", "cannot load counter.so: ", "");
}

static void test_sandbox_rejects_missing_entry(void **state) {
  expect_rejected(*state, FIXTURE("bad_noentry"), HS_ENOENTRY, "entry",
                  "counter.so does not export hotswap_plugin_entry", "");
}

static void test_sandbox_rejects_null_descriptor(void **state) {
  expect_rejected(*state, FIXTURE("bad_null"), HS_EDESC, "entry",
                  "hotswap_plugin_entry of counter.so returned NULL", "");
}

static void test_sandbox_rejects_wrong_abi(void **state) {
  expect_rejected(*state, FIXTURE("bad_abi"), HS_EABI, "abi",
                  "counter.so was built for plugin ABI 99; this host speaks "
                  "ABI 3",
                  "");
}

static void test_sandbox_rejects_short_descriptor(void **state) {
  char text[128];
  snprintf(text, sizeof(text),
           "descriptor of counter.so is 16 bytes; ABI 3 needs at least %zu",
           sizeof(hs_plugin));
  expect_rejected(*state, FIXTURE("bad_size"), HS_EDESC, "abi", text, "");
}

static void test_sandbox_rejects_missing_load(void **state) {
  expect_rejected(*state, FIXTURE("bad_noload"), HS_EDESC, "abi",
                  "descriptor of counter.so has no load callback", "");
}

static void test_sandbox_rejects_crash_in_load(void **state) {
  env *e = *state;
  hs_sandbox_req req = request(FIXTURE("bad_crash_load"), NULL);
  hs_verdict v = validate(e, &req);

  expect_verdict(&v, HS_ECRASH, "load",
                 "counter.so crashed with SIGSEGV (");
  assert_non_null(strstr(v.err.msg, "in stage load"));
  /* Past the abi stage the descriptor is known. */
  assert_string_equal(v.version, "bad");
  assert_int_equal(v.state_version, 1);
  assert_int_equal(v.state_size, 16);
}

static void test_sandbox_rejects_fpe_in_load(void **state) {
  expect_rejected(*state, FIXTURE("bad_fpe_load"), HS_ECRASH, "load",
                  "counter.so crashed with SIGFPE (", "bad");
}

static void test_sandbox_rejects_abort_in_selftest(void **state) {
  expect_rejected(*state, FIXTURE("bad_abort_selftest"), HS_ECRASH,
                  "selftest", "counter.so crashed with SIGABRT (", "bad");
}

static void test_sandbox_rejects_failing_load(void **state) {
  env *e = *state;
  expect_rejected(e, FIXTURE("bad_fail_load"), HS_EINVAL, "load",
                  "load() of counter.so returned HS_EINVAL (invalid "
                  "argument)",
                  "bad");
  assert_true(log_contains(e, "counter sandbox: refusing to load"));
}

static void test_sandbox_rejects_failing_selftest(void **state) {
  expect_rejected(*state, FIXTURE("bad_fail_selftest"), HS_ESELFTEST,
                  "selftest",
                  "selftest() of counter.so returned HS_ESELFTEST (selftest "
                  "failed)",
                  "bad");
}

static void test_sandbox_times_out_hanging_selftest(void **state) {
  env *e = *state;
  hs_sandbox_req req = request(FIXTURE("bad_hang_selftest"), NULL);
  req.limits.timeout_ms = 300;
  hs_verdict v = validate(e, &req);

  expect_verdict(&v, HS_ETIMEDOUT, "selftest",
                 "counter.so timed out after 300 ms in stage selftest (the "
                 "validator was killed)");
}

/* ---- migration on a real state --------------------------------------- */

static void test_sandbox_same_layout_gets_the_live_bytes(void **state) {
  env *e = *state;
  hs_state st;
  state_v1(&st, 7, 9);
  hs_sandbox_req req = request(FIXTURE("counter_v1b"), &st);
  result r;
  start(e, &req, &r);
  assert_int_equal(req.snap->lent, 1); /* the validator reads it */
  assert_true(run_until(e, is_done, &r, WAIT_MS));
  assert_int_equal(req.snap->lent, 0); /* not after its verdict */
  hs_verdict v = r.v;

  expect_verdict(&v, 0, "", NULL);
  assert_string_equal(v.version, "1.1");
  /* load() saw the live counts (the sandbox does not add to them). */
  assert_true(log_contains(e, "counter sandbox: load reload version 1.1 "
                              "loads=7"));
  hs_state_free(&st);
}

static void test_sandbox_migrates_v1_state_to_v2(void **state) {
  env *e = *state;
  hs_state st;
  state_v1(&st, 7, 9);
  hs_sandbox_req req = request(FIXTURE("counter_v2"), &st);
  hs_verdict v = validate(e, &req);

  expect_verdict(&v, 0, "", NULL);
  assert_string_equal(v.version, "2.0");
  assert_int_equal(v.state_version, 2);
  assert_int_equal(v.state_size, 24);
  assert_true(log_contains(e, "counter sandbox: migrated v1 (16 bytes) to "
                              "v2 loads=7"));
  assert_true(log_contains(e, "counter sandbox: load reload version 2.0 "
                              "loads=7"));
  /* The live state is only read. */
  struct state_v1 live;
  memcpy(&live, st.data, sizeof(live));
  assert_int_equal(live.loads, 7);
  assert_int_equal(live.ticks, 9);
  hs_state_free(&st);
}

static void test_sandbox_rejects_missing_migrate(void **state) {
  env *e = *state;
  hs_state st;
  state_v1(&st, 7, 9);
  hs_sandbox_req req = request(FIXTURE("counter_v2_nomigrate"), &st);
  hs_verdict v = validate(e, &req);

  expect_verdict(&v, HS_ENOMIGRATE, "migrate",
                 "state changes from v1 (16 bytes) to v2 (24 bytes) and "
                 "counter.so has no migrate function; add one, or start "
                 "hotswap with --allow-state-reset to reset the state");
  assert_string_equal(v.version, "2.0-nomigrate");
  hs_state_free(&st);
}

static void test_sandbox_allow_reset_accepts_missing_migrate(void **state) {
  env *e = *state;
  hs_state st;
  state_v1(&st, 7, 9);
  hs_sandbox_req req = request(FIXTURE("counter_v2_nomigrate"), &st);
  req.allow_reset = 1;
  hs_verdict v = validate(e, &req);

  expect_verdict(&v, 0, "", NULL);
  assert_int_equal(v.state_version, 2);
  /* load() got a zeroed state. */
  assert_true(log_contains(e, "counter sandbox: load reload version "
                              "2.0-nomigrate loads=0"));
  hs_state_free(&st);
}

static void test_sandbox_rejects_failing_migrate(void **state) {
  env *e = *state;
  hs_state st;
  state_v1(&st, 7, 9);
  hs_sandbox_req req = request(FIXTURE("bad_fail_migrate"), &st);
  hs_verdict v = validate(e, &req);

  expect_verdict(&v, HS_EMIGRATE, "migrate",
                 "migrate() of counter.so from state v1 to v2 returned "
                 "HS_ERANGE (result out of range)");
  assert_true(log_contains(e, "counter sandbox: cannot migrate from v1"));
  assert_int_equal(req.snap->lent, 0); /* a failure ends the loan too */
  hs_state_free(&st);
}

/* ---- what makes a swap unsafe ---------------------------------------- */

/* The live version's ranges come with the request; a state word inside
 * one after load() rejects the candidate, naming offset and section. */
static void test_sandbox_rejects_pointer_into_old_image(void **state) {
  env *e = *state;
  hs_state st;
  hs_imagemap old = {0};
  state_v1(&st, 7, 0x7f0000001234); /* "ticks": load() leaves it */
  old.r[0] = (hs_imagemap_range){0x7f0000000000, 0x7f0000001000, ".text"};
  old.r[1] = (hs_imagemap_range){0x7f0000001000, 0x7f0000002000, ".rodata"};
  old.n = 2;
  hs_sandbox_req req = request(FIXTURE("counter_v1b"), &st);
  req.old_map = &old;
  req.old_version = "1.0";
  hs_verdict v = validate(e, &req);

  expect_verdict(&v, HS_ESTATEPTR, "pointers",
                 "state offset 8 points into counter.so .rodata "
                 "(0x7f0000001234) of version 1.0, which the swap unmaps: "
                 "store data, not pointers to string literals or constant "
                 "tables");
  assert_true(log_contains(e, "counter sandbox: load reload version 1.1"));

  /* Nothing in the ranges: accepted. */
  old.r[1].hi = 0x7f0000001200;
  v = validate(e, &req);
  expect_verdict(&v, 0, "", NULL);
  hs_state_free(&st);
}

static void test_sandbox_rejects_thread_left_after_unload(void **state) {
  expect_rejected(*state, FIXTURE("unsafe_thread"), HS_ETHREAD, "unload",
                  "unload() of counter.so left 1 thread running: stop and "
                  "join it in unload() (dlclose would unmap the code it "
                  "runs)",
                  "1.0-thread");
}

/* ---- many at once, cancel -------------------------------------------- */

static int all_done(void *arg) {
  result *r = arg;
  for (int i = 0; i < 8; i++)
    if (!r[i].done)
      return 0;
  return 1;
}

static void test_sandbox_parallel_validations_all_answered(void **state) {
  env *e = *state;
  static const struct {
    const char *path;
    int with_state;
    int code;
    const char *stage;
    const char *version;
  } cases[8] = {
      {FIXTURE("counter_v1"), 0, 0, "", "1.0"},
      {FIXTURE("bad_crash_load"), 0, HS_ECRASH, "load", "bad"},
      {FIXTURE("counter_v1b"), 1, 0, "", "1.1"},
      {FIXTURE("bad_fail_load"), 0, HS_EINVAL, "load", "bad"},
      {FIXTURE("counter_v2"), 1, 0, "", "2.0"},
      {FIXTURE("bad_abort_selftest"), 0, HS_ECRASH, "selftest", "bad"},
      {FIXTURE("counter_v1c"), 0, 0, "", "1.2"},
      {FIXTURE("counter_v2_nomigrate"), 1, HS_ENOMIGRATE, "migrate",
       "2.0-nomigrate"},
  };
  result r[8];
  hs_state st;

  state_v1(&st, 3, 4);
  for (int i = 0; i < 8; i++) {
    hs_sandbox_req req = request(cases[i].path,
                                 cases[i].with_state ? &st : NULL);
    start(e, &req, &r[i]);
  }
  assert_true(run_until(e, all_done, r, WAIT_MS));
  for (int i = 0; i < 8; i++) {
    assert_int_equal(r[i].done, 1);
    expect_verdict(&r[i].v, cases[i].code, cases[i].stage, NULL);
    assert_string_equal(r[i].v.version, cases[i].version);
  }
  hs_state_free(&st);
}

static int never(void *arg) {
  (void)arg;
  return 0;
}

/* The validator's pid reached the loop before the cancel. */
static void test_sandbox_cancel_kills_without_callback(void **state) {
  env *e = *state;
  hs_sandbox_req req = request(FIXTURE("bad_hang_selftest"), NULL);
  struct finder f = {zygote_pid(), "bad_hang_selftest.so", 0};
  result r;

  start(e, &req, &r);
  assert_true(run_until(e, find_validator, &f, WAIT_MS));
  /* Past "open", so its "pid" line came well before; one more turn of the
   * loop has read it for sure. */
  run_until(e, never, NULL, 20);
  hs_sandbox_cancel(r.sb);
  assert_true(poll_until(pid_gone, &f.found, WAIT_MS));
  /* Nothing reports it any more. */
  run_until(e, never, NULL, 50);
  assert_int_equal(r.done, 0);
}

/* Cancelled before the loop ever read the validator's report: it must be
 * killed all the same (here it spins with no CPU limit). */
static void test_sandbox_cancel_before_report_read_kills(void **state) {
  env *e = *state;
  hs_sandbox_req req = request(FIXTURE("bad_hang_selftest"), NULL);
  struct finder f = {zygote_pid(), "bad_hang_selftest.so", 0};
  result r;

  start(e, &req, &r);
  assert_true(poll_until(find_validator, &f, WAIT_MS));
  assert_true(poll_until(spinning, &f.found, WAIT_MS)); /* in selftest() */
  hs_sandbox_cancel(r.sb);
  if (!poll_until(pid_gone, &f.found, 10000))
    fail_msg("validator %d still runs 10 s after hs_sandbox_cancel",
             (int)f.found);
  assert_int_equal(r.done, 0);
}

/* ---- the zygote's death ---------------------------------------------- */

/* The pool reaped its zygote (it waits for it once it sees the end). */
static int no_children(void *arg) {
  pid_t kids[8];
  (void)arg;
  return children_of(getpid(), kids, 8) == 0;
}

static void test_sandbox_respawns_zygote_killed_while_idle(void **state) {
  env *e = *state;
  pid_t z = zygote_pid();
  hs_sandbox_req req = request(FIXTURE("counter_v1"), NULL);
  char text[128];

  assert_int_equal(kill(z, SIGKILL), 0);
  assert_true(run_until(e, no_children, NULL, WAIT_MS));
  snprintf(text, sizeof(text), "the validator zygote (pid %d) went away",
           (int)z);
  assert_true(log_contains(e, text));

  hs_verdict v = validate(e, &req);
  expect_verdict(&v, 0, "", NULL);
  assert_string_equal(v.version, "1.0");
  pid_t z2 = zygote_pid();
  assert_true(z2 != z);
  /* And again, on the new zygote. */
  v = validate(e, &req);
  expect_verdict(&v, 0, "", NULL);
  assert_int_equal(zygote_pid(), z2);
}

/* The zygote hands the host its spare; a spare that died before the
 * host heard of it (its request socket is closed) sends the validation
 * through the zygote instead, which forks a child for it. */
static void test_sandbox_dead_spare_goes_through_zygote(void **state) {
  env *e = *state;
  pid_t z = zygote_pid(), spare[4];
  hs_sandbox_req req = request(FIXTURE("counter_v1"), NULL);

  run_until(e, never, NULL, 100); /* the host takes the spare it was sent */
  assert_int_equal(children_of(z, spare, 4), 1);
  assert_int_equal(kill(spare[0], SIGKILL), 0);
  assert_true(poll_until(pid_gone, &spare[0], WAIT_MS));
  /* The zygote's "exit" is not read yet: the host still holds it. */
  hs_verdict v = validate(e, &req);
  expect_verdict(&v, 0, "", NULL);
  assert_string_equal(v.version, "1.0");
  assert_int_equal(zygote_pid(), z); /* the same zygote did it */
}

static int zombie(void *arg) {
  char st;
  return proc_stat(*(pid_t *)arg, &st, NULL, NULL) == 0 && st == 'Z';
}

/* The zygote died, and the loop has not yet run to notice: the next
 * validation must still work (the pool finds it dead and starts another),
 * not fail because the old zygote's socket is closed. */
static void test_sandbox_start_right_after_zygote_death(void **state) {
  env *e = *state;
  pid_t z = zygote_pid();
  hs_sandbox_req req = request(FIXTURE("counter_v1"), NULL);
  hs_error err;
  result r;

  assert_int_equal(kill(z, SIGKILL), 0);
  assert_true(poll_until(zombie, &z, WAIT_MS)); /* dead, its fds closed */
  memset(&r, 0, sizeof(r));
  hs_error_clear(&err);
  int rc = start_logged(e, &req, &r, &err);
  if (rc != 0)
    fail_msg("hs_sandbox_start after the zygote died: %s (%s)", err.msg,
             hs_err_name(rc));
  assert_true(run_until(e, is_done, &r, WAIT_MS));
  expect_verdict(&r.v, 0, "", NULL);
}

static void test_sandbox_zygote_death_during_validation(void **state) {
  env *e = *state;
  pid_t z = zygote_pid();
  hs_sandbox_req req = request(FIXTURE("bad_hang_selftest"), NULL);
  struct finder f = {z, "bad_hang_selftest.so", 0};
  result r;

  start(e, &req, &r);
  assert_true(run_until(e, find_validator, &f, WAIT_MS));
  assert_int_equal(kill(z, SIGKILL), 0);
  /* The answer comes from the zygote's end, long before the 30 s
   * timeout would give one. */
  assert_true(run_until(e, is_done, &r, WAIT_MS - 5000));
  assert_int_equal(r.done, 1);
  if (r.v.err.code != HS_ESANDBOX && r.v.err.code != HS_ECRASH)
    fail_msg("verdict %s (%s), expected HS_ESANDBOX or HS_ECRASH",
             hs_err_name(r.v.err.code), r.v.err.msg);
  assert_true(poll_until(pid_gone, &f.found, WAIT_MS));

  /* The next validation gets a new zygote. */
  req = request(FIXTURE("counter_v1"), NULL);
  hs_verdict v = validate(e, &req);
  expect_verdict(&v, 0, "", NULL);
  assert_true(zygote_pid() != z);
}

/* Closing the pool with validations under way: no callback, no child of
 * ours left (checked by teardown too), and the validators die with the
 * zygote. */
static void test_sandbox_pool_close_leaves_no_process(void **state) {
  env *e = *state;
  hs_sandbox_req req = request(FIXTURE("bad_hang_selftest"), NULL);
  pid_t z = zygote_pid(), kids[16], pid;
  result r[3];
  int n;

  for (int i = 0; i < 3; i++)
    start(e, &req, &r[i]);
  struct finder f = {z, "bad_hang_selftest.so", 0};
  assert_true(run_until(e, find_validator, &f, WAIT_MS));
  n = children_of(z, kids, 16);
  assert_true(n >= 1 && n <= 16);

  hs_sandbox_pool_close(e->pool);
  e->pool = NULL; /* (teardown's close is then harmless) */
  assert_true(no_children(NULL));
  assert_false(alive(z));
  for (int i = 0; i < n; i++) {
    pid = kids[i];
    if (!poll_until(pid_gone, &pid, WAIT_MS))
      fail_msg("zygote child %d outlived the pool", (int)pid);
  }
  for (int i = 0; i < 3; i++)
    assert_int_equal(r[i].done, 0);
}

/* A validation whose report ended and that waited for the zygote's word
 * on its exit when the zygote died; its callback starts another
 * validation (as the registry does for a plugin waiting its turn). The
 * next start finds the zygote dead: every validation must still get its
 * true verdict from a zygote that is watched, and no zygote may be left
 * behind (teardown counts the children). */
typedef struct chain {
  env *e;
  result *x, *y;
} chain;

static void on_verdict_then_start(hs_sandbox *sb, const hs_verdict *v,
                                  void *data) {
  chain *c = data;
  on_verdict(sb, v, c->x);
  hs_sandbox_req req = request(FIXTURE("bad_crash_load"), NULL);
  start(c->e, &req, c->y);
}

static int stopped(void *arg) {
  char st;
  return proc_stat(*(pid_t *)arg, &st, NULL, NULL) == 0 && st == 'T';
}

static int all_three(void *arg) {
  result *r = arg;
  return r[0].done && r[1].done && r[2].done;
}

static void test_sandbox_callback_starts_after_zygote_death(void **state) {
  env *e = *state;
  pid_t z = zygote_pid();
  struct finder f = {z, "bad_hang_selftest.so", 0};
  hs_sandbox_req req = request(FIXTURE("bad_hang_selftest"), NULL);
  result r[3]; /* x, y (started by x's callback), z */
  chain c = {e, &r[0], &r[1]};
  hs_error err;

  memset(r, 0, sizeof(r));
  assert_int_equal(
      hs_sandbox_start(&r[0].sb, e->pool, &req, on_verdict_then_start, &c,
                       &err),
      0);
  assert_true(run_until(e, find_validator, &f, WAIT_MS));
  run_until(e, never, NULL, 20); /* its pid line is read */

  /* The zygote cannot report the validator's end... */
  assert_int_equal(kill(z, SIGSTOP), 0);
  assert_true(poll_until(stopped, &z, WAIT_MS));
  assert_int_equal(kill(f.found, SIGKILL), 0);
  assert_true(poll_until(zombie, &f.found, WAIT_MS));
  run_until(e, never, NULL, 50); /* the host reads the report's end */
  assert_int_equal(r[0].done, 0);   /* and waits for the zygote's word */
  /* ...and dies. The loop has not heard. */
  assert_int_equal(kill(z, SIGKILL), 0);
  assert_true(poll_until(zombie, &z, WAIT_MS));

  req = request(FIXTURE("counter_v1"), NULL);
  start(e, &req, &r[2]);
  if (!run_until(e, all_three, r, WAIT_MS - 10000))
    fail_msg("answered: x %d, y %d, z %d (y: a crash, judged by the exit "
             "status its zygote reports)",
             r[0].done, r[1].done, r[2].done);
  if (r[0].v.err.code != HS_ESANDBOX && r[0].v.err.code != HS_ECRASH)
    fail_msg("x: %s (%s)", hs_err_name(r[0].v.err.code), r[0].v.err.msg);
  expect_verdict(&r[1].v, HS_ECRASH, "load", "SIGSEGV");
  expect_verdict(&r[2].v, 0, "", NULL);
}

int main(int argc, char **argv) {
  /* The pool's zygote runs /proc/self/exe, this binary: be it. */
  if (argc > 1 && strcmp(argv[1], HS_ZYGOTE_ARG) == 0)
    return hs_zygote_main(argc, argv);

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_sandbox_accepts_counter_v1),
      T(test_sandbox_rejects_unresolved),
      T(test_sandbox_rejects_missing_file),
      T(test_sandbox_rejects_missing_entry),
      T(test_sandbox_rejects_null_descriptor),
      T(test_sandbox_rejects_wrong_abi),
      T(test_sandbox_rejects_short_descriptor),
      T(test_sandbox_rejects_missing_load),
      T(test_sandbox_rejects_crash_in_load),
      T(test_sandbox_rejects_fpe_in_load),
      T(test_sandbox_rejects_abort_in_selftest),
      T(test_sandbox_rejects_failing_load),
      T(test_sandbox_rejects_failing_selftest),
      T(test_sandbox_times_out_hanging_selftest),
      T(test_sandbox_same_layout_gets_the_live_bytes),
      T(test_sandbox_migrates_v1_state_to_v2),
      T(test_sandbox_rejects_missing_migrate),
      T(test_sandbox_allow_reset_accepts_missing_migrate),
      T(test_sandbox_rejects_failing_migrate),
      T(test_sandbox_rejects_pointer_into_old_image),
      T(test_sandbox_rejects_thread_left_after_unload),
      T(test_sandbox_parallel_validations_all_answered),
      T(test_sandbox_cancel_kills_without_callback),
      T(test_sandbox_cancel_before_report_read_kills),
      T(test_sandbox_respawns_zygote_killed_while_idle),
      T(test_sandbox_dead_spare_goes_through_zygote),
      T(test_sandbox_start_right_after_zygote_death),
      T(test_sandbox_zygote_death_during_validation),
      T(test_sandbox_pool_close_leaves_no_process),
      T(test_sandbox_callback_starts_after_zygote_death),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
