/*
 * test_registry.c - the pipeline without the command line: a registry on
 * a temporary plugin directory and a real loop, cache, sandbox pool and
 * worker. Files are put in place as a deploy does (write aside, rename),
 * then announced with hs_registry_scan/changed/removed as the watcher
 * would; the loop runs until the pipeline is idle again.
 *
 * The pool spawns its zygote from /proc/self/exe with argv[1] ==
 * HS_ZYGOTE_ARG. In a test, /proc/self/exe is this test binary, so main()
 * becomes the zygote when asked, as host/main.c does.
 *
 * This process's log and the validators' (fd 2, inherited by the zygote)
 * go to one memfd that tests read. Every wait is on an event with a
 * generous limit; no duration is asserted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "log.h"
#include "loop.h"
#include "registry.h"
#include "sandbox.h"
#include "fixtures/fixture_state.h"

#define MS 1000000ull
#define WAIT_MS 30000

/* The fixture's state layouts. */
typedef struct state_v1 v1;
typedef struct state_v2 v2;

typedef struct env {
  char tmp[64];     /* holds the plugin directory and the cache */
  char dir[96];     /* the plugin directory */
  int dirfd;
  int fixfd;        /* the fixtures */
  int logfd;        /* memfd: every log line */
  off_t mark;       /* where the current step's log begins */
  hs_loop loop;
  hs_cache cache;
  hs_registry reg;
  int open;         /* reg is initialized */
} env;

/* ---- files ----------------------------------------------------------- */

/* Puts fixture's bytes in the plugin directory as name: written beside it
 * under a hidden name, then renamed over it. */
static void put(env *e, const char *fixture, const char *name) {
  char src[128], tmp[128], buf[65536];
  ssize_t n;

  snprintf(src, sizeof(src), "%s.so", fixture);
  snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
  int in = openat(e->fixfd, src, O_RDONLY | O_CLOEXEC);
  int out = openat(e->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                   0644);
  assert_true(in >= 0);
  assert_true(out >= 0);
  while ((n = read(in, buf, sizeof(buf))) > 0)
    assert_int_equal(write(out, buf, (size_t)n), n);
  assert_int_equal(n, 0);
  close(in);
  close(out);
  assert_int_equal(renameat(e->dirfd, tmp, e->dirfd, name), 0);
}

static void rm(env *e, const char *name) {
  assert_int_equal(unlinkat(e->dirfd, name, 0), 0);
}

static int count_files(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *de;
  int n = 0;
  if (!d)
    return -1;
  while ((de = readdir(d)) != NULL)
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
      n++;
  closedir(d);
  return n;
}

/* ---- the log --------------------------------------------------------- */

static void mark(env *e) {
  struct stat st;
  assert_int_equal(fstat(e->logfd, &st), 0);
  e->mark = st.st_size;
}

/* What the log holds since the mark (the caller frees it). */
static char *since_mark(env *e) {
  struct stat st;
  assert_int_equal(fstat(e->logfd, &st), 0);
  size_t n = (size_t)(st.st_size - e->mark);
  char *buf = malloc(n + 1);
  assert_non_null(buf);
  assert_int_equal(pread(e->logfd, buf, n, e->mark), (ssize_t)n);
  buf[n] = '\0';
  return buf;
}

/* 1 if the log since the mark holds needle (else it says what it holds). */
static int logged(env *e, const char *needle) {
  char *buf = since_mark(e);
  int found = strstr(buf, needle) != NULL;
  if (!found)
    fprintf(stderr, "log lacks \"%s\"; since the mark it holds:\n%s", needle,
            buf);
  free(buf);
  return found;
}

/* 1 if the log since the mark does not hold needle (else it says where). */
static int not_logged(env *e, const char *needle) {
  char *buf = since_mark(e);
  const char *at = strstr(buf, needle);
  if (at)
    fprintf(stderr, "log holds \"%s\" since the mark:\n%s", needle, at);
  free(buf);
  return at == NULL;
}

/* ---- setup ----------------------------------------------------------- */

static int open_registry(env *e, int allow_reset) {
  hs_registry_opts opts = {
      .allow_state_reset = allow_reset,
      .limits = {WAIT_MS, 30, 0},
      .log_format = HS_LOG_TEXT,
      .log_level = HS_LOG_INFO,
  };
  hs_error err;
  int saved = dup(2), rc;

  dup2(e->logfd, 2); /* the zygote and its validators inherit it */
  rc = hs_registry_init(&e->reg, &e->loop, &e->cache, e->dir, &opts, &err);
  dup2(saved, 2);
  close(saved);
  if (rc != 0) {
    fprintf(stderr, "hs_registry_init: %s\n", err.msg);
    return -1;
  }
  e->open = 1;
  return 0;
}

static int setup(void **state) {
  env *e = calloc(1, sizeof(*e));
  hs_error err;

  if (!e)
    return -1;
  snprintf(e->tmp, sizeof(e->tmp), "/tmp/hs-test-registry-XXXXXX");
  if (!mkdtemp(e->tmp))
    return -1;
  snprintf(e->dir, sizeof(e->dir), "%s/plugins", e->tmp);
  if (mkdir(e->dir, 0700) != 0 || hs_loop_init(&e->loop) != 0 ||
      hs_cache_init(&e->cache, e->tmp, &err) != 0)
    return -1;
  e->dirfd = open(e->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  e->fixfd = open(HS_TEST_FIXTURES, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  e->logfd = memfd_create("test-registry-log", MFD_CLOEXEC);
  if (e->dirfd < 0 || e->fixfd < 0 || e->logfd < 0 ||
      fcntl(e->logfd, F_SETFL, O_APPEND) != 0)
    return -1;
  hs_log_init(HS_LOG_TEXT, HS_LOG_DEBUG, e->logfd);
  *state = e;
  return open_registry(e, 0);
}

/* The living children of this process (the zygote, while a pool lives). */
static int children(void) {
  DIR *d = opendir("/proc");
  struct dirent *de;
  int n = 0;
  while (d && (de = readdir(d)) != NULL) {
    char path[300], buf[512], st;
    int ppid;
    snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      continue;
    ssize_t len = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (len <= 0)
      continue;
    buf[len] = '\0';
    char *p = strrchr(buf, ')');
    if (p && sscanf(p + 1, " %c %d", &st, &ppid) == 2 && ppid == getpid() &&
        st != 'Z')
      n++;
  }
  if (d)
    closedir(d);
  return n;
}

static int teardown(void **state) {
  env *e = *state;
  DIR *d;
  struct dirent *de;
  int left = 0, kids;

  /* A test that failed while it held the worker up lets it go. */
  char fifo[128];
  snprintf(fifo, sizeof(fifo), "%s/stall.fifo", e->tmp);
  if (access(fifo, F_OK) == 0) {
    int fd = open(fifo, O_WRONLY | O_CLOEXEC);
    if (fd >= 0)
      close(fd);
    unlink(fifo);
  }
  if (e->open)
    hs_registry_close(&e->reg, HS_UNLOAD_SHUTDOWN);
  /* Every copy was removed: live ones at close, candidates on the way. */
  left = count_files(e->cache.dir);
  kids = children();
  hs_cache_close(&e->cache);
  if ((d = opendir(e->dir)) != NULL) {
    while ((de = readdir(d)) != NULL)
      if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
        unlinkat(e->dirfd, de->d_name, 0);
    closedir(d);
  }
  close(e->dirfd);
  rmdir(e->dir);
  rmdir(e->tmp);
  hs_loop_close(&e->loop);
  hs_log_init(HS_LOG_TEXT, HS_LOG_INFO, 2);
  close(e->logfd);
  close(e->fixfd);
  free(e);
  if (left != 0)
    fprintf(stderr, "%d files left in the cache\n", left);
  if (kids != 0)
    fprintf(stderr, "%d child processes left\n", kids);
  return left == 0 && kids == 0 ? 0 : -1;
}

/* ---- running the pipeline -------------------------------------------- */

/* 1 when no slot has anything under way. */
static int idle(env *e) {
  for (size_t i = 0; i < e->reg.nslots; i++) {
    hs_slot *s = e->reg.slots[i];
    if (s->sb || s->opening || s->queued)
      return 0;
  }
  return hs_registry_idle(&e->reg);
}

struct waiter {
  env *e;
  int (*cond)(env *e, const void *arg);
  const void *arg;
  uint64_t end;
};

static void on_poll(hs_timer *t) {
  struct waiter *w = t->data;
  if (w->cond(w->e, w->arg) || hs_now_ns() > w->end)
    hs_loop_stop(&w->e->loop);
}

/* Runs the loop until cond holds (checked every millisecond) or WAIT_MS
 * pass. Returns 1 if it held. */
static int run_until(env *e, int (*cond)(env *, const void *),
                     const void *arg) {
  struct waiter w = {e, cond, arg, hs_now_ns() + WAIT_MS * MS};
  hs_timer t;
  hs_loop_timer_init(&t, on_poll, &w);
  assert_int_equal(hs_loop_timer_start(&e->loop, &t, MS, MS), 0);
  while (!cond(e, arg) && hs_now_ns() <= w.end)
    assert_int_equal(hs_loop_run(&e->loop), 0);
  hs_loop_timer_stop(&t);
  return cond(e, arg);
}

/* The slot's candidate is in the sandbox (its copy into the cache runs on
 * a thread first). The loop checks every millisecond: a whole validation
 * can be shorter, so the tests that wait for it use counter_v1b_slow. */
static int validating(env *e, const void *slot) {
  (void)e;
  return ((const hs_slot *)slot)->sb != NULL;
}

static void run_until_validating(env *e, hs_slot *s) {
  if (!run_until(e, validating, s))
    fail_msg("%s is not validating after %d s", s->name, WAIT_MS / 1000);
}

/* No copy into the cache is under way. */
static int copies_done(env *e, const void *arg) {
  (void)arg;
  for (size_t i = 0; i < e->reg.nslots; i++)
    if (e->reg.slots[i]->copying)
      return 0;
  return 1;
}

/* Idle, and *flag set if flag is given. */
static int idle_and(env *e, const void *flag) {
  return idle(e) && (!flag || *(const int *)flag);
}

/* Runs the loop until the pipeline is idle (and *flag is set, if given). */
static void run_until_idle(env *e, const int *flag) {
  if (!run_until(e, idle_and, flag))
    fail_msg("the pipeline is still busy after %d s", WAIT_MS / 1000);
}

static void on_sentinel(hs_open_job *job) { (*(int *)job->data)++; }

/* Files in the cache once the worker has done every close queued so far
 * (it works in order: a last open's callback means all before it ran). */
static int cache_files(env *e) {
  int done = 0;
  assert_non_null(hs_worker_open(&e->reg.worker,
                                 HS_TEST_FIXTURES "/no_such_plugin.so",
                                 "none.so", NULL, on_sentinel, &done));
  run_until_idle(e, &done);
  return count_files(e->cache.dir);
}

static hs_slot *slot_of(env *e, const char *name) {
  hs_slot *s = hs_registry_find(&e->reg, name);
  if (!s)
    fail_msg("no slot named %s", name);
  return s;
}

static v1 state_v1(hs_slot *s) {
  v1 st;
  assert_int_equal(s->state.version, 1);
  assert_int_equal(s->state.size, sizeof(st));
  memcpy(&st, s->state.data, sizeof(st));
  return st;
}

/* counter.so with fixture, announced as the watcher would, run through. */
static void deploy(env *e, const char *fixture) {
  put(e, fixture, "counter.so");
  mark(e);
  hs_registry_changed(&e->reg, "counter.so");
  run_until_idle(e, NULL);
}

/* counter_v1 live, generation 1. */
static hs_slot *start_v1(env *e) {
  put(e, "counter_v1", "counter.so");
  mark(e);
  hs_registry_scan(&e->reg);
  hs_slot *s = slot_of(e, "counter");
  run_until_idle(e, NULL);
  assert_int_equal(s->loaded, 1);
  assert_string_equal(s->version, "1.0");
  assert_int_equal(s->generation, 1);
  return s;
}

typedef struct reloaded {
  int calls;
  hs_error err;
  uint32_t generation;
} reloaded;

static void on_reloaded(hs_slot *slot, const hs_error *err, void *data) {
  reloaded *r = data;
  r->calls++;
  r->err = *err;
  r->generation = slot->generation;
}

/* ---- tests ----------------------------------------------------------- */

static void test_registry_scan_loads_new_plugin(void **state) {
  env *e = *state;

  put(e, "counter_v1", "counter.so");
  mark(e);
  hs_registry_scan(&e->reg);
  hs_slot *s = slot_of(e, "counter");
  assert_non_null(s->copying); /* copied into the cache on a thread */
  assert_int_equal(s->loaded, 0); /* and validated before it loads */
  run_until_idle(e, NULL);

  assert_int_equal(s->loaded, 1);
  assert_string_equal(s->version, "1.0");
  assert_int_equal(s->generation, 1);
  assert_int_equal(s->reloads, 0);
  assert_int_equal(s->last_error.code, 0);
  v1 st = state_v1(s);
  assert_int_equal(st.loads, 1);
  assert_true(s->last.validated_ns > 0);
  assert_true(s->last.swapped_ns >= s->last.validated_ns);
  assert_true(s->last.pause_ns > 0);
  assert_true(logged(e, "counter sandbox: load start version 1.0 loads=0"));
  assert_true(logged(e, "counter log: load start version 1.0 loads=1"));
  assert_true(logged(e, "counter loaded: version 1.0, state v1 (16 bytes), "
                        "generation 1, from counter.so"));
  /* The live copy is the only file in the cache. */
  assert_int_equal(cache_files(e), 1);
}

static void test_registry_ignores_files_that_are_not_plugins(void **state) {
  env *e = *state;

  put(e, "counter_v1", ".hidden.so");
  put(e, "counter_v1", "counter.so.bak");
  put(e, "counter_v1", "notes.txt");
  hs_registry_scan(&e->reg);
  hs_registry_changed(&e->reg, ".hidden.so");
  hs_registry_changed(&e->reg, "notes.txt");
  assert_int_equal(e->reg.nslots, 0);
  assert_true(idle(e));
  rm(e, ".hidden.so");
  rm(e, "counter.so.bak");
  rm(e, "notes.txt");
}

/* The same bytes again (a new file, a new inode): nothing to do, decided
 * once the copy is hashed, without a validation. */
static void test_registry_unchanged_content_is_skipped(void **state) {
  env *e = *state;
  hs_slot *s = start_v1(e);

  put(e, "counter_v1", "counter.so");
  mark(e);
  hs_registry_changed(&e->reg, "counter.so");
  run_until_idle(e, NULL);
  assert_int_equal(s->generation, 1);
  assert_true(logged(e, "counter unchanged: counter.so: same content as "
                        "before; nothing to do"));
  hs_registry_scan(&e->reg);
  run_until_idle(e, NULL);
  assert_int_equal(s->generation, 1);
  assert_int_equal(state_v1(s).loads, 1);
  assert_int_equal(cache_files(e), 1);
}

static void test_registry_reload_forces_new_generation(void **state) {
  env *e = *state;
  hs_slot *s = start_v1(e);
  reloaded r = {0}, r2 = {0};

  assert_int_equal(hs_registry_reload(&e->reg, "nosuch", on_reloaded, &r2),
                   HS_ENOENT);
  mark(e);
  assert_int_equal(hs_registry_reload(&e->reg, "counter", on_reloaded, &r), 0);
  assert_int_equal(hs_registry_reload(&e->reg, "counter", on_reloaded, &r2),
                   HS_EBUSY);
  run_until_idle(e, &r.calls);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.err.code, 0);
  assert_int_equal(r.generation, 2);
  assert_int_equal(r2.calls, 0);
  assert_int_equal(s->generation, 2);
  assert_int_equal(s->reloads, 1);
  assert_string_equal(s->version, "1.0");
  assert_int_equal(state_v1(s).loads, 2);
  assert_true(logged(e, "counter log: unload reload version 1.0 loads=1"));
  assert_true(logged(e, "counter log: load reload version 1.0 loads=2"));
  assert_true(logged(e, "counter reloaded: version 1.0"));
  /* The previous copy is removed once the worker closed it. */
  assert_int_equal(cache_files(e), 1);
}

static void test_registry_rejected_file_keeps_old_live(void **state) {
  env *e = *state;
  hs_slot *s = start_v1(e);

  deploy(e, "bad_fail_load");
  assert_int_equal(s->last_error.code, HS_EINVAL);
  assert_string_equal(s->last_error.stage, "load");
  assert_string_equal(s->last_error.msg,
                      "load() of counter.so returned HS_EINVAL (invalid "
                      "argument)");
  assert_int_equal(s->loaded, 1);
  assert_string_equal(s->version, "1.0");
  assert_int_equal(s->generation, 1);
  assert_int_equal(state_v1(s).loads, 1);
  assert_true(logged(e, "counter rejected: counter.so: stage load: "));
  assert_true(logged(e, "version 1.0 keeps running"));

  /* The same bad bytes again: not validated again. */
  put(e, "bad_fail_load", "counter.so");
  mark(e);
  hs_registry_changed(&e->reg, "counter.so");
  run_until_idle(e, NULL);
  assert_true(not_logged(e, "counter rejected:"));
  assert_int_equal(s->generation, 1);

  /* A crash in the sandbox. */
  deploy(e, "bad_crash_load");
  assert_int_equal(s->last_error.code, HS_ECRASH);
  assert_string_equal(s->last_error.stage, "load");
  assert_non_null(strstr(s->last_error.msg, "SIGSEGV"));
  assert_string_equal(s->version, "1.0");

  /* A good version clears the error. */
  deploy(e, "counter_v1b");
  assert_int_equal(s->last_error.code, 0);
  assert_string_equal(s->version, "1.1");
  assert_int_equal(s->generation, 2);
  assert_int_equal(state_v1(s).loads, 2);
  assert_int_equal(cache_files(e), 1);
}

static void test_registry_rejected_first_version(void **state) {
  env *e = *state;

  put(e, "bad_abi", "counter.so");
  mark(e);
  hs_registry_scan(&e->reg);
  run_until_idle(e, NULL);
  hs_slot *s = slot_of(e, "counter");
  assert_int_equal(s->loaded, 0);
  assert_int_equal(s->generation, 0);
  assert_int_equal(s->last_error.code, HS_EABI);
  assert_string_equal(s->last_error.stage, "abi");
  assert_true(logged(e, "the plugin is not running"));

  deploy(e, "counter_v1");
  assert_int_equal(s->loaded, 1);
  assert_int_equal(s->generation, 1);
  assert_int_equal(s->last_error.code, 0);
  assert_true(logged(e, "counter log: load start version 1.0 loads=1"));
}

/* Passes the sandbox, fails in the live swap: rolled back. */
static void test_registry_live_failure_rolls_back(void **state) {
  env *e = *state;
  hs_slot *s = start_v1(e);

  deploy(e, "counter_v1_failreload");
  assert_int_equal(s->last_error.code, HS_EIO);
  assert_string_equal(s->last_error.stage, "load");
  assert_string_equal(s->last_error.msg,
                      "load() of the new counter.so returned HS_EIO (i/o "
                      "error)");
  assert_int_equal(s->loaded, 1);
  assert_string_equal(s->version, "1.0");
  assert_int_equal(s->generation, 1);
  assert_int_equal(state_v1(s).loads, 2); /* the rollback load counted */
  assert_true(logged(e, "counter sandbox: load reload version "
                        "1.0-failreload loads=1"));
  assert_true(logged(e, "counter log: refusing a live reload"));
  assert_true(logged(e, "counter log: load rollback version 1.0 loads=2"));
  assert_int_equal(cache_files(e), 1);

  /* Not retried while the bytes stay the same. */
  put(e, "counter_v1_failreload", "counter.so");
  hs_registry_changed(&e->reg, "counter.so");
  assert_null(s->sb);
}

static void test_registry_migrates_state_across_versions(void **state) {
  env *e = *state;
  hs_slot *s = start_v1(e);

  deploy(e, "counter_v1b");
  deploy(e, "counter_v2");
  assert_int_equal(s->last_error.code, 0);
  assert_string_equal(s->version, "2.0");
  assert_int_equal(s->generation, 3);
  assert_int_equal(s->state.version, 2);
  assert_int_equal(s->state.size, sizeof(v2));
  v2 st;
  memcpy(&st, s->state.data, sizeof(st));
  assert_int_equal(st.loads, 3);
  assert_int_equal(st.migrated_from, 1);
  assert_true(logged(e, "counter sandbox: migrated v1 (16 bytes) to v2 "
                        "loads=2"));
  assert_true(logged(e, "counter log: migrated v1 (16 bytes) to v2 "
                        "loads=2"));

  /* Back to a layout without migrate(): refused, v2 keeps running. */
  deploy(e, "counter_v1c");
  assert_int_equal(s->last_error.code, HS_ENOMIGRATE);
  assert_string_equal(s->version, "2.0");
}

static void test_registry_removed_unloads_and_drops_slot(void **state) {
  env *e = *state;
  start_v1(e);

  rm(e, "counter.so");
  mark(e);
  hs_registry_removed(&e->reg, "counter.so");
  assert_null(hs_registry_find(&e->reg, "counter"));
  assert_int_equal(e->reg.nslots, 0);
  assert_true(logged(e, "counter log: unload removed version 1.0 loads=1"));
  assert_true(logged(e, "counter unloaded: counter.so was removed; version "
                        "1.0 unloaded"));
  /* Unknown files: harmless. */
  hs_registry_removed(&e->reg, "counter.so");
  hs_registry_removed(&e->reg, "other.so");

  /* Back again: a new slot, a first load on a zeroed state. */
  deploy(e, "counter_v1");
  hs_slot *s = slot_of(e, "counter");
  assert_int_equal(s->generation, 1);
  assert_int_equal(state_v1(s).loads, 1);
}

static void test_registry_scan_unloads_vanished_file(void **state) {
  env *e = *state;
  start_v1(e);

  rm(e, "counter.so");
  mark(e);
  hs_registry_scan(&e->reg);
  assert_null(hs_registry_find(&e->reg, "counter"));
  assert_true(logged(e, "counter log: unload removed version 1.0"));
}

/* A change while the previous one is in the sandbox: the stale candidate
 * is dropped, and the newest content goes live. */
static void test_registry_change_during_validation_ends_with_newest(
    void **state) {
  env *e = *state;
  hs_slot *s = start_v1(e);

  put(e, "counter_v1b_slow", "counter.so");
  mark(e);
  hs_registry_changed(&e->reg, "counter.so");
  run_until_validating(e, s);
  put(e, "counter_v1c", "counter.so");
  hs_registry_changed(&e->reg, "counter.so");
  assert_int_equal(s->again, 1);
  run_until_idle(e, NULL);

  assert_int_equal(s->last_error.code, 0);
  assert_string_equal(s->version, "1.2");
  assert_int_equal(s->generation, 2); /* 1.1 never went live */
  assert_int_equal(s->again, 0);
  assert_int_equal(state_v1(s).loads, 2);
  assert_true(logged(e, "counter log: load reload version 1.2 loads=2"));
  assert_int_equal(cache_files(e), 1);
}

/* Removed while in the sandbox: the validation is cancelled, no callback
 * touches the dropped slot. */
static void test_registry_removed_during_validation(void **state) {
  env *e = *state;
  hs_slot *s = start_v1(e);

  put(e, "counter_v1b_slow", "counter.so");
  hs_registry_changed(&e->reg, "counter.so");
  run_until_validating(e, s);
  rm(e, "counter.so");
  hs_registry_removed(&e->reg, "counter.so");
  assert_null(hs_registry_find(&e->reg, "counter"));
  assert_true(hs_registry_idle(&e->reg));

  /* A first version removed while in the sandbox. */
  put(e, "counter_v1b_slow", "counter.so");
  hs_registry_changed(&e->reg, "counter.so");
  s = slot_of(e, "counter");
  run_until_validating(e, s);
  rm(e, "counter.so");
  hs_registry_removed(&e->reg, "counter.so");
  assert_true(hs_registry_idle(&e->reg));
  assert_int_equal(e->reg.nslots, 0);

  /* The pipeline still works. */
  deploy(e, "counter_v1c");
  s = slot_of(e, "counter");
  assert_string_equal(s->version, "1.2");
}

static void test_registry_forced_reload_reports_rejection(void **state) {
  env *e = *state;
  hs_slot *s = start_v1(e);
  reloaded r = {0};

  put(e, "bad_fail_selftest", "counter.so"); /* not announced */
  assert_int_equal(hs_registry_reload(&e->reg, "counter", on_reloaded, &r), 0);
  run_until_idle(e, &r.calls);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.err.code, HS_ESELFTEST);
  assert_string_equal(r.err.stage, "selftest");
  assert_int_equal(s->last_error.code, HS_ESELFTEST);
  assert_string_equal(s->version, "1.0");
  assert_int_equal(s->generation, 1);
}

static void test_registry_reload_of_vanished_file_reports_error(
    void **state) {
  env *e = *state;
  reloaded r = {0};
  start_v1(e);

  rm(e, "counter.so"); /* the watcher has not told yet */
  assert_int_equal(hs_registry_reload(&e->reg, "counter", on_reloaded, &r), 0);
  run_until_idle(e, &r.calls);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.err.code, HS_ENOENT);
  assert_string_equal(r.err.stage, "copy");
  assert_string_equal(slot_of(e, "counter")->version, "1.0");
}

/* More plugins than validators may run at once: the rest wait their turn,
 * and all go live. */
static void test_registry_validations_beyond_the_limit_wait(void **state) {
  env *e = *state;
  unsigned n = e->reg.max_running + 3;
  char name[32];

  assert_true(n <= 64);
  /* Slow self-tests: no validation may end before the queue is counted
   * (a fast one can end within the loop's 1 ms check). */
  for (unsigned i = 0; i < n; i++) {
    snprintf(name, sizeof(name), "p%u.so", i);
    put(e, "counter_v1b_slow", name);
  }
  hs_registry_scan(&e->reg);
  assert_int_equal(e->reg.nslots, n);
  assert_true(run_until(e, copies_done, NULL));
  assert_int_equal(e->reg.running, e->reg.max_running);
  unsigned queued = 0;
  for (size_t i = 0; i < e->reg.nslots; i++)
    queued += e->reg.slots[i]->queued != 0;
  assert_int_equal(queued, 3); /* copied, waiting for a validator */
  run_until_idle(e, NULL);
  for (unsigned i = 0; i < n; i++) {
    snprintf(name, sizeof(name), "p%u", i);
    hs_slot *s = slot_of(e, name);
    assert_int_equal(s->loaded, 1);
    assert_string_equal(s->version, "1.1");
    assert_int_equal(s->generation, 1);
  }
  assert_int_equal(cache_files(e), (int)n);
}

static void test_registry_close_unloads_every_plugin(void **state) {
  env *e = *state;
  start_v1(e);
  put(e, "counter_v2", "other.so");
  hs_registry_changed(&e->reg, "other.so");
  run_until_idle(e, NULL);
  put(e, "counter_v1b", "counter.so");
  hs_registry_changed(&e->reg, "counter.so"); /* still in the sandbox */

  mark(e);
  hs_registry_close(&e->reg, HS_UNLOAD_SHUTDOWN);
  e->open = 0;
  assert_true(logged(e, "counter log: unload shutdown version 1.0 loads=1"));
  assert_true(logged(e, "other log: unload shutdown version 2.0 loads=1"));
  assert_true(logged(e, "counter unloaded: version 1.0 unloaded "
                        "(shutdown)"));
  assert_int_equal(count_files(e->cache.dir), 0);
  assert_int_equal(children(), 0);
}

/* ---- changes while the worker opens the accepted copy ----------------- */

/* Holds the worker up: an open of a FIFO blocks in open(2) until a writer
 * comes (then dlopen fails, "file too short"). Jobs queued behind it wait;
 * the slot stays "opening" for as long as the test wants. */
typedef struct stall {
  char path[128];
  int done;
} stall;

static void stall_worker(env *e, stall *st) {
  snprintf(st->path, sizeof(st->path), "%s/stall.fifo", e->tmp);
  assert_int_equal(mkfifo(st->path, 0600), 0);
  st->done = 0;
  assert_non_null(hs_worker_open(&e->reg.worker, st->path, "stall.so", NULL,
                                 on_sentinel, &st->done));
}

static void release_worker(stall *st) {
  int fd = open(st->path, O_WRONLY | O_CLOEXEC); /* meets the worker */
  assert_true(fd >= 0);
  close(fd);
  unlink(st->path);
}

static int opening(env *e, const void *slot) {
  (void)e;
  return ((const hs_slot *)slot)->opening != NULL;
}

static void test_registry_change_during_open_ends_with_newest(void **state) {
  env *e = *state;
  hs_slot *s = start_v1(e);
  stall st;

  stall_worker(e, &st);
  put(e, "counter_v1b", "counter.so");
  hs_registry_changed(&e->reg, "counter.so");
  assert_true(run_until(e, opening, s)); /* accepted, waiting to be opened */
  put(e, "counter_v1c", "counter.so");
  mark(e);
  hs_registry_changed(&e->reg, "counter.so");
  assert_int_equal(s->again, 1);
  release_worker(&st);
  run_until_idle(e, &st.done);

  assert_int_equal(s->last_error.code, 0);
  assert_string_equal(s->version, "1.2");
  assert_int_equal(s->generation, 2);
  assert_int_equal(s->again, 0);
  assert_true(logged(e, "counter log: load reload version 1.2 loads=2"));
  assert_int_equal(cache_files(e), 1);
}

/* The same, when opening the accepted copy fails (here: its file vanished
 * from the cache): the change that arrived meanwhile must still be tried,
 * so that the newest content wins. */
static void test_registry_change_during_failed_open_is_not_lost(
    void **state) {
  env *e = *state;
  hs_slot *s = start_v1(e);
  stall st;

  stall_worker(e, &st);
  put(e, "counter_v1b", "counter.so");
  hs_registry_changed(&e->reg, "counter.so");
  assert_true(run_until(e, opening, s));
  assert_int_equal(unlink(s->candidate.path), 0); /* the open will fail */
  put(e, "counter_v1c", "counter.so");
  hs_registry_changed(&e->reg, "counter.so");
  assert_int_equal(s->again, 1);
  release_worker(&st);
  run_until_idle(e, &st.done);

  if (strcmp(s->version, "1.2") != 0)
    fail_msg("version %s live (last error: stage %s: %s, again=%d); the "
             "change that arrived during the failed open was dropped",
             s->version, s->last_error.stage, s->last_error.msg, s->again);
  assert_int_equal(s->again, 0);
  assert_int_equal(s->last_error.code, 0);
}

/* Removed while the worker opens the accepted copy: the open is
 * cancelled, nothing reaches the dropped slot, nothing stays loaded. */
static void test_registry_removed_while_opening(void **state) {
  env *e = *state;
  hs_slot *s = start_v1(e);
  reloaded r = {0};
  stall st;

  stall_worker(e, &st);
  put(e, "counter_v1b", "counter.so");
  assert_int_equal(hs_registry_reload(&e->reg, "counter", on_reloaded, &r), 0);
  assert_true(run_until(e, opening, s));
  rm(e, "counter.so");
  hs_registry_removed(&e->reg, "counter.so");
  assert_null(hs_registry_find(&e->reg, "counter"));
  /* The forced reload waiting on it is answered. */
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.err.code, HS_ENOENT);
  release_worker(&st);
  run_until_idle(e, &st.done);
  assert_int_equal(cache_files(e), 0);
}

/* The old version cannot come back after a failed swap: nothing runs, the
 * state is kept, and the next version gets it (reason RELOAD). */
static void test_registry_failed_rollback_keeps_state_for_next(
    void **state) {
  env *e = *state;

  put(e, "counter_v1_norollback", "counter.so");
  hs_registry_scan(&e->reg);
  run_until_idle(e, NULL);
  hs_slot *s = slot_of(e, "counter");
  assert_int_equal(s->generation, 1);

  deploy(e, "counter_v1_failreload");
  assert_int_equal(s->loaded, 0);
  assert_int_equal(s->last_error.code, HS_EIO);
  assert_true(logged(e, "counter log: refusing to roll back"));
  assert_int_equal(state_v1(s).loads, 1);
  assert_int_equal(cache_files(e), 0);

  deploy(e, "counter_v1");
  assert_int_equal(s->loaded, 1);
  assert_int_equal(s->last_error.code, 0);
  assert_string_equal(s->version, "1.0");
  assert_int_equal(s->generation, 2);
  assert_true(logged(e, "counter sandbox: load reload version 1.0 loads=1"));
  assert_true(logged(e, "counter log: load reload version 1.0 loads=2"));
  assert_int_equal(state_v1(s).loads, 2);
}

int main(int argc, char **argv) {
  /* The pool's zygote runs /proc/self/exe, this binary: be it. */
  if (argc > 1 && strcmp(argv[1], HS_ZYGOTE_ARG) == 0)
    return hs_zygote_main(argc, argv);

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_registry_scan_loads_new_plugin),
      T(test_registry_ignores_files_that_are_not_plugins),
      T(test_registry_unchanged_content_is_skipped),
      T(test_registry_reload_forces_new_generation),
      T(test_registry_rejected_file_keeps_old_live),
      T(test_registry_rejected_first_version),
      T(test_registry_live_failure_rolls_back),
      T(test_registry_migrates_state_across_versions),
      T(test_registry_removed_unloads_and_drops_slot),
      T(test_registry_scan_unloads_vanished_file),
      T(test_registry_change_during_validation_ends_with_newest),
      T(test_registry_removed_during_validation),
      T(test_registry_change_during_open_ends_with_newest),
      T(test_registry_change_during_failed_open_is_not_lost),
      T(test_registry_removed_while_opening),
      T(test_registry_failed_rollback_keeps_state_for_next),
      T(test_registry_forced_reload_reports_rejection),
      T(test_registry_reload_of_vanished_file_reports_error),
      T(test_registry_validations_beyond_the_limit_wait),
      T(test_registry_close_unloads_every_plugin),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
