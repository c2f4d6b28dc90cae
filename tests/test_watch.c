/* test_watch.c - the directory watcher on real files in a temporary dir. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "hotswap.h"
#include "loop.h"
#include "watch.h"

#define MS 1000000ull

/* ---- fixture ----------------------------------------------------------- */

struct seen {
  char name[64]; /* "" for NULL */
  hs_watch_event ev;
  uint64_t at_ns;
};

struct env {
  char dir[64];
  hs_loop loop;
  hs_watch w;
  struct seen seen[32];
  int n;
  const char *want; /* the name whose events count for stop_at */
  int nwant;
  int stop_at;      /* stops the loop at this many events for want */
  int stop_watch;   /* the callback stops the watch */
};

static void on_event(hs_watch *w, const char *name, hs_watch_event ev) {
  struct env *e = w->data;
  struct seen *s;

  assert_true(e->n < (int)(sizeof(e->seen) / sizeof(e->seen[0])));
  s = &e->seen[e->n++];
  snprintf(s->name, sizeof(s->name), "%s", name != NULL ? name : "");
  s->ev = ev;
  s->at_ns = hs_now_ns();
  if (e->stop_watch)
    hs_watch_stop(w);
  if (e->want == NULL || strcmp(s->name, e->want) == 0)
    if (++e->nwant == e->stop_at)
      hs_loop_stop(w->loop);
}

static int setup(void **state) {
  struct env *e = calloc(1, sizeof(*e));

  if (e == NULL)
    return -1;
  snprintf(e->dir, sizeof(e->dir), "/tmp/hs-test-watch-XXXXXX");
  if (mkdtemp(e->dir) == NULL || hs_loop_init(&e->loop) < 0) {
    free(e);
    return -1;
  }
  e->w.ifd = -1; /* hs_watch_stop() is harmless before a start */
  *state = e;
  return 0;
}

static void rm_tree(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *de;

  if (d == NULL)
    return;
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno == EISDIR) {
      char sub[PATH_MAX];
      snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name);
      rm_tree(sub);
    }
  }
  closedir(d);
  rmdir(dir);
}

static int teardown(void **state) {
  struct env *e = *state;

  hs_watch_stop(&e->w);
  hs_loop_close(&e->loop);
  rm_tree(e->dir);
  free(e);
  return 0;
}

static void stop_loop(hs_timer *t) {
  hs_loop_stop(t->loop);
}

/* Runs the loop for ms, or less when the callback stops it. */
static void run_for(struct env *e, uint64_t ms) {
  hs_timer guard;

  hs_loop_timer_init(&guard, stop_loop, NULL);
  assert_int_equal(hs_loop_timer_start(&e->loop, &guard, ms * MS, 0), 0);
  assert_int_equal(hs_loop_run(&e->loop), 0);
  hs_loop_timer_stop(&guard);
}

/* Runs until n events for name (any name when NULL) were reported, for at
 * most guard_ms. */
static void run_until(struct env *e, const char *name, int n,
                      uint64_t guard_ms) {
  e->want = name;
  e->nwant = 0;
  e->stop_at = n;
  run_for(e, guard_ms);
  e->stop_at = 0;
}

static void path_of(const struct env *e, const char *name, char *buf,
                    size_t size) {
  snprintf(buf, size, "%s/%s", e->dir, name);
}

/* Writes text to dir/name with open flags (O_CREAT is added). */
static void write_file(const struct env *e, const char *name, int flags,
                       const char *text) {
  char path[PATH_MAX];
  int fd;

  path_of(e, name, path, sizeof(path));
  fd = open(path, flags | O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  assert_int_equal(close(fd), 0);
}

static void rename_in(const struct env *e, const char *from, const char *to) {
  char a[PATH_MAX], b[PATH_MAX];

  path_of(e, from, a, sizeof(a));
  path_of(e, to, b, sizeof(b));
  assert_int_equal(rename(a, b), 0);
}

static int count_for(const struct env *e, const char *name) {
  int i, n = 0;

  for (i = 0; i < e->n; i++)
    if (strcmp(e->seen[i].name, name) == 0)
      n++;
  return n;
}

static const struct seen *first_for(const struct env *e, const char *name) {
  int i;

  for (i = 0; i < e->n; i++)
    if (strcmp(e->seen[i].name, name) == 0)
      return &e->seen[i];
  return NULL;
}

static void start(struct env *e, uint64_t settle_ms) {
  assert_int_equal(
      hs_watch_start(&e->w, &e->loop, e->dir, settle_ms * MS, on_event, e), 0);
}

/* Nothing waits to settle, and the loop has no timer armed. */
static void assert_idle(const struct env *e) {
  assert_null(e->w.pending);
  assert_false(hs_loop_timer_active(&e->w.timer));
  assert_int_equal(e->loop.nheap, 0);
}

/* ---- tests ------------------------------------------------------------- */

static void test_watch_rename_into_place_reported_at_once(void **state) {
  struct env *e = *state;

  /* A settle time far longer than the guard: only an immediate report
   * can arrive in time. */
  start(e, 5000);
  write_file(e, ".plugin.so.tmp", 0, "v2");
  rename_in(e, ".plugin.so.tmp", "plugin.so");
  run_until(e, "plugin.so", 1, 2000);
  run_for(e, 100);
  assert_int_equal(e->n, 1);
  assert_string_equal(e->seen[0].name, "plugin.so");
  assert_int_equal(e->seen[0].ev, HS_WATCH_CHANGED);
  assert_idle(e);
}

static void test_watch_rename_drops_pending_name(void **state) {
  struct env *e = *state;

  /* A write in place, then a rename over it: the rename's report covers
   * the write, which must not be reported again later. */
  write_file(e, "plugin.so", 0, "v1");
  start(e, 5000);
  write_file(e, "plugin.so", O_APPEND, "more");
  write_file(e, ".new", 0, "v2");
  rename_in(e, ".new", "plugin.so");
  run_until(e, "plugin.so", 1, 2000);
  assert_int_equal(e->n, 1);
  assert_int_equal(e->seen[0].ev, HS_WATCH_CHANGED);
  assert_idle(e);
}

static void test_watch_write_in_place_reported_once_after_settle(
    void **state) {
  struct env *e = *state;
  uint64_t before;

  write_file(e, "plugin.so", 0, "v1");
  start(e, 50);
  before = hs_now_ns();
  write_file(e, "plugin.so", O_APPEND, "-part1");
  write_file(e, "plugin.so", O_APPEND, "-part2");
  run_until(e, "plugin.so", 1, 2000);
  run_for(e, 150);
  assert_int_equal(e->n, 1);
  assert_string_equal(e->seen[0].name, "plugin.so");
  assert_int_equal(e->seen[0].ev, HS_WATCH_CHANGED);
  /* Not before the name was quiet for the settle time. */
  assert_true(e->seen[0].at_ns - before >= 50 * MS);
  assert_idle(e);
}

/* A linker creates its output and writes it later, longer after than the
 * settle time: nothing is reported until the writer closes the file. */
static void test_watch_waits_for_writer_to_close(void **state) {
  struct env *e = *state;
  char path[PATH_MAX];

  start(e, 50);
  path_of(e, "plugin.so", path, sizeof(path));
  int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  assert_true(fd >= 0);
  run_for(e, 300); /* six settle times of silence, file still open */
  assert_int_equal(e->n, 0);
  assert_int_equal(write(fd, "elf", 3), 3);
  assert_int_equal(close(fd), 0);
  run_until(e, "plugin.so", 1, 2000);
  run_for(e, 150);
  assert_int_equal(e->n, 1);
  assert_string_equal(e->seen[0].name, "plugin.so");
  assert_int_equal(e->seen[0].ev, HS_WATCH_CHANGED);
  assert_idle(e);
}

/* Plugins built from a directory: entries one level down are seen, as
 * "sub/name", in subdirectories made before or after the start. */
static void test_watch_sees_into_subdirectories(void **state) {
  struct env *e = *state;
  char path[PATH_MAX];

  path_of(e, "old", path, sizeof(path));
  assert_int_equal(mkdir(path, 0755), 0);
  start(e, 20);
  path_of(e, "new", path, sizeof(path));
  assert_int_equal(mkdir(path, 0755), 0);
  run_until(e, "new", 1, 2000);
  write_file(e, "old/a.c", 0, "int a;");
  write_file(e, "new/b.c", 0, "int b;");
  run_until(e, "new/b.c", 1, 2000);
  run_for(e, 100);
  assert_int_equal(count_for(e, "old/a.c"), 1);
  assert_int_equal(count_for(e, "new/b.c"), 1);
  assert_int_equal(first_for(e, "new")->ev, HS_WATCH_CHANGED);
  path_of(e, "new/b.c", path, sizeof(path));
  assert_int_equal(unlink(path), 0);
  run_until(e, "new/b.c", 2, 2000);
  assert_int_equal(count_for(e, "new/b.c"), 2);
}

static void test_watch_truncating_write_reported_once(void **state) {
  struct env *e = *state;
  char path[PATH_MAX];
  int fd;

  write_file(e, "plugin.so", 0, "an old and longer version");
  start(e, 50);
  /* As cp does: truncate, then write in several pieces. */
  path_of(e, "plugin.so", path, sizeof(path));
  fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "new", 3), 3);
  assert_int_equal(write(fd, "-bytes", 6), 6);
  assert_int_equal(close(fd), 0);
  run_until(e, "plugin.so", 1, 2000);
  run_for(e, 150);
  assert_int_equal(e->n, 1);
  assert_int_equal(e->seen[0].ev, HS_WATCH_CHANGED);
  assert_idle(e);
}

static void test_watch_new_file_reported_changed(void **state) {
  struct env *e = *state;

  start(e, 50);
  write_file(e, "fresh.so", O_EXCL, "v1");
  run_until(e, "fresh.so", 1, 2000);
  run_for(e, 150);
  assert_int_equal(e->n, 1);
  assert_string_equal(e->seen[0].name, "fresh.so");
  assert_int_equal(e->seen[0].ev, HS_WATCH_CHANGED);
}

static void test_watch_delete_reported_removed(void **state) {
  struct env *e = *state;
  char path[PATH_MAX];

  write_file(e, "plugin.so", 0, "v1");
  start(e, 50);
  path_of(e, "plugin.so", path, sizeof(path));
  assert_int_equal(unlink(path), 0);
  run_until(e, "plugin.so", 1, 2000);
  run_for(e, 150);
  assert_int_equal(e->n, 1);
  assert_string_equal(e->seen[0].name, "plugin.so");
  assert_int_equal(e->seen[0].ev, HS_WATCH_REMOVED);
  assert_idle(e);
}

static void test_watch_backup_dance_is_one_changed(void **state) {
  struct env *e = *state;
  const struct seen *s;

  write_file(e, "plugin.so", 0, "v1");
  start(e, 100);
  /* An editor's save: move the original to a backup, write anew. */
  rename_in(e, "plugin.so", "plugin.so~");
  write_file(e, "plugin.so", O_EXCL, "v2");
  run_until(e, "plugin.so", 1, 2000);
  run_for(e, 250);
  assert_int_equal(count_for(e, "plugin.so"), 1);
  s = first_for(e, "plugin.so");
  assert_int_equal(s->ev, HS_WATCH_CHANGED);
  /* The backup's own name was renamed into place: reported, once. */
  assert_int_equal(count_for(e, "plugin.so~"), 1);
  assert_int_equal(e->n, 2);
  assert_idle(e);
}

static void test_watch_touch_reported_changed(void **state) {
  struct env *e = *state;
  char path[PATH_MAX];

  write_file(e, "plugin.so", 0, "v1");
  start(e, 50);
  path_of(e, "plugin.so", path, sizeof(path));
  assert_int_equal(utimensat(AT_FDCWD, path, NULL, 0), 0);
  run_until(e, "plugin.so", 1, 2000);
  run_for(e, 150);
  assert_int_equal(e->n, 1);
  assert_int_equal(e->seen[0].ev, HS_WATCH_CHANGED);
}

static void test_watch_hidden_files_ignored(void **state) {
  struct env *e = *state;
  char path[PATH_MAX];

  start(e, 20);
  write_file(e, ".hidden", 0, "x");
  rename_in(e, ".hidden", ".other");
  path_of(e, ".other", path, sizeof(path));
  assert_int_equal(unlink(path), 0);
  run_for(e, 100);
  assert_int_equal(e->n, 0);
  assert_idle(e);
}

static void test_watch_stop_drops_pending(void **state) {
  struct env *e = *state;

  start(e, 5000);
  write_file(e, "plugin.so", 0, "v1");
  run_for(e, 100);
  assert_int_equal(e->n, 0);
  assert_non_null(e->w.pending);
  assert_true(hs_loop_timer_active(&e->w.timer));
  hs_watch_stop(&e->w);
  assert_null(e->w.pending);
  assert_int_equal(e->loop.nheap, 0);
  assert_false(e->w.io.active);
  hs_watch_stop(&e->w); /* harmless twice */
}

static void test_watch_stop_from_callback(void **state) {
  struct env *e = *state;

  /* Two names settle together; the first report stops the watch, so the
   * second is dropped, not reported. */
  start(e, 30);
  e->stop_watch = 1;
  write_file(e, "a.so", 0, "a");
  write_file(e, "b.so", 0, "b");
  run_for(e, 200);
  assert_int_equal(e->n, 1);
  assert_int_equal(e->w.ifd, -1);
  assert_null(e->w.pending);
  assert_int_equal(e->loop.nheap, 0);
}

static void test_watch_dir_removed_asks_rescan(void **state) {
  struct env *e = *state;
  char sub[PATH_MAX];

  path_of(e, "sub", sub, sizeof(sub));
  assert_int_equal(mkdir(sub, 0755), 0);
  assert_int_equal(
      hs_watch_start(&e->w, &e->loop, sub, 20 * MS, on_event, e), 0);
  assert_int_equal(rmdir(sub), 0);
  run_until(e, "", 1, 2000);
  assert_int_equal(e->n, 1);
  assert_string_equal(e->seen[0].name, "");
  assert_int_equal(e->seen[0].ev, HS_WATCH_RESCAN);
}

static void test_watch_start_rejects_missing_dir_and_file(void **state) {
  struct env *e = *state;
  char path[PATH_MAX];

  path_of(e, "missing", path, sizeof(path));
  assert_int_equal(
      hs_watch_start(&e->w, &e->loop, path, 10 * MS, on_event, e), HS_ENOENT);
  assert_null(e->w.dir);
  assert_int_equal(e->w.ifd, -1);
  write_file(e, "file", 0, "x");
  path_of(e, "file", path, sizeof(path));
  assert_int_equal(
      hs_watch_start(&e->w, &e->loop, path, 10 * MS, on_event, e), -ENOTDIR);
  assert_null(e->w.dir);
}

#define WATCH_TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      WATCH_TEST(test_watch_rename_into_place_reported_at_once),
      WATCH_TEST(test_watch_rename_drops_pending_name),
      WATCH_TEST(test_watch_write_in_place_reported_once_after_settle),
      WATCH_TEST(test_watch_waits_for_writer_to_close),
      WATCH_TEST(test_watch_sees_into_subdirectories),
      WATCH_TEST(test_watch_truncating_write_reported_once),
      WATCH_TEST(test_watch_new_file_reported_changed),
      WATCH_TEST(test_watch_delete_reported_removed),
      WATCH_TEST(test_watch_backup_dance_is_one_changed),
      WATCH_TEST(test_watch_touch_reported_changed),
      WATCH_TEST(test_watch_hidden_files_ignored),
      WATCH_TEST(test_watch_stop_drops_pending),
      WATCH_TEST(test_watch_stop_from_callback),
      WATCH_TEST(test_watch_dir_removed_asks_rescan),
      WATCH_TEST(test_watch_start_rejects_missing_dir_and_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
