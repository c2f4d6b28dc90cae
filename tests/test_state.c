/* test_state.c - state bytes, migration rules, and the memfd hand-over. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "loader.h"
#include "log.h"
#include "state.h"
#include "fixtures/fixture_state.h"

#define FIXTURE(name) HS_TEST_FIXTURES "/" name ".so"


/* A v1 state as counter_v1 leaves it: loads=3, ticks=7. */
static void old_v1(hs_state *s) {
  struct state_v1 v = {3, 7};

  assert_int_equal(hs_state_init(s, 1, sizeof(v)), 0);
  memcpy(s->data, &v, sizeof(v));
}

static void open_fixture(hs_image *img, const char *path) {
  hs_error err;

  assert_int_equal(hs_loader_open(img, path, "counter.so", &err), 0);
}

/* Log lines go to a pipe the tests read. */
static int log_pipe[2] = {-1, -1};

static int group_setup(void **state) {
  (void)state;
  if (pipe2(log_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
    return -1;
  hs_log_init(HS_LOG_TEXT, HS_LOG_DEBUG, log_pipe[1]);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  hs_log_init(HS_LOG_TEXT, HS_LOG_INFO, 2);
  close(log_pipe[0]);
  close(log_pipe[1]);
  return 0;
}

/* Everything logged since the last call, NUL-terminated, in buf. */
static const char *read_log(char *buf, size_t len) {
  ssize_t n = read(log_pipe[0], buf, len - 1);

  buf[n > 0 ? n : 0] = '\0';
  return buf;
}

static void test_state_init_zeroes(void **state) {
  hs_state s;
  unsigned char zero[32] = {0};

  (void)state;
  assert_int_equal(hs_state_init(&s, 4, sizeof(zero)), 0);
  assert_int_equal(s.version, 4);
  assert_int_equal(s.size, sizeof(zero));
  assert_memory_equal(s.data, zero, sizeof(zero));
  hs_state_free(&s);
  assert_null(s.data);
  assert_int_equal(s.size, 0);
  hs_state_free(&s); /* harmless twice */

  assert_int_equal(hs_state_init(&s, 1, 0), 0);
  assert_null(s.data);
  hs_state_free(&s);
}

static void test_state_copy_and_move(void **state) {
  hs_state a, b, c;

  (void)state;
  old_v1(&a);
  assert_int_equal(hs_state_copy(&b, &a), 0);
  assert_ptr_not_equal(a.data, b.data);
  assert_int_equal(b.version, 1);
  assert_int_equal(b.size, a.size);
  assert_memory_equal(a.data, b.data, a.size);
  ((struct state_v1 *)b.data)->loads = 99;
  assert_int_equal(((struct state_v1 *)a.data)->loads, 3);

  assert_int_equal(hs_state_init(&c, 9, 8), 0);
  hs_state_move(&c, &b); /* frees c's old bytes */
  assert_null(b.data);
  assert_int_equal(b.size, 0);
  assert_int_equal(c.version, 1);
  assert_int_equal(((struct state_v1 *)c.data)->loads, 99);
  hs_state_free(&a);
  hs_state_free(&c);
}

static void test_state_compatible_copies_bytes(void **state) {
  hs_image img;
  hs_state old, out;
  hs_ctx ctx;
  hs_error err;
  int reset = -1;

  (void)state;
  old_v1(&old);
  open_fixture(&img, FIXTURE("counter_v1b"));
  assert_int_equal(hs_state_compatible(&old, img.desc), 1);
  hs_api_ctx_init(&ctx, "counter", HS_TEST_FIXTURES, NULL, 0);
  ctx.desc = img.desc;
  assert_int_equal(hs_state_migrate(&old, img.desc, &ctx, 0, "counter.so",
                                    NULL, &out, &reset, &err),
                   0);
  assert_int_equal(reset, 0);
  assert_ptr_not_equal(out.data, old.data);
  assert_int_equal(out.version, 1);
  assert_int_equal(out.size, old.size);
  assert_memory_equal(out.data, old.data, old.size);
  hs_state_free(&out);
  hs_state_free(&old);
  hs_loader_close(&img, FIXTURE("counter_v1b"));
}

static void test_state_prepare_zeroes_every_page(void **state) {
  hs_state s;
  (void)state;
  assert_int_equal(hs_state_prepare(&s, 4, 3 * 4096 + 5), 0);
  assert_int_equal(s.version, 4);
  assert_int_equal(s.size, 3 * 4096 + 5);
  for (size_t i = 0; i < s.size; i++)
    if (((unsigned char *)s.data)[i] != 0)
      fail_msg("byte %zu is %u", i, ((unsigned char *)s.data)[i]);
  hs_state_free(&s);
  assert_int_equal(hs_state_prepare(&s, 1, 0), 0);
  assert_null(s.data);
}

/* A spare that fits the layout becomes the new state's bytes; one that
 * does not is freed, and so is one given to a migration that fails (ASan
 * would report either left behind). */
static void test_state_migrate_takes_over_the_spare(void **state) {
  hs_image img;
  hs_state old, out, spare;
  hs_ctx ctx;
  hs_error err;

  (void)state;
  old_v1(&old);
  open_fixture(&img, FIXTURE("counter_v1b"));
  hs_api_ctx_init(&ctx, "counter", HS_TEST_FIXTURES, NULL, 0);
  ctx.desc = img.desc;

  assert_int_equal(hs_state_prepare(&spare, 1, 16), 0);
  void *bytes = spare.data;
  assert_int_equal(hs_state_migrate(&old, img.desc, &ctx, 0, "counter.so",
                                    &spare, &out, NULL, &err),
                   0);
  assert_ptr_equal(out.data, bytes);
  assert_null(spare.data);
  assert_memory_equal(out.data, old.data, 16);
  hs_state_free(&out);

  assert_int_equal(hs_state_prepare(&spare, 1, 8), 0); /* too small */
  bytes = spare.data;
  assert_int_equal(hs_state_migrate(&old, img.desc, &ctx, 0, "counter.so",
                                    &spare, &out, NULL, &err),
                   0);
  assert_ptr_not_equal(out.data, bytes);
  assert_null(spare.data);
  assert_memory_equal(out.data, old.data, 16);
  hs_state_free(&out);
  hs_loader_close(&img, FIXTURE("counter_v1b"));

  open_fixture(&img, FIXTURE("counter_v2_nomigrate"));
  ctx.desc = img.desc;
  assert_int_equal(hs_state_prepare(&spare, 2, 24), 0);
  assert_int_equal(hs_state_migrate(&old, img.desc, &ctx, 0, "counter.so",
                                    &spare, &out, NULL, &err),
                   HS_ENOMIGRATE);
  assert_null(spare.data);
  assert_null(out.data);
  hs_loader_close(&img, FIXTURE("counter_v2_nomigrate"));
  hs_state_free(&old);
}

static void test_state_migrates_with_counter_v2(void **state) {
  hs_image img;
  hs_state old, out;
  hs_ctx ctx;
  hs_error err;
  char log[4096];
  struct state_v2 *v2;
  int reset = -1;

  (void)state;
  old_v1(&old);
  open_fixture(&img, FIXTURE("counter_v2"));
  assert_int_equal(hs_state_compatible(&old, img.desc), 0);
  hs_api_ctx_init(&ctx, "counter", HS_TEST_FIXTURES, NULL, 0);
  ctx.desc = img.desc;
  read_log(log, sizeof(log));
  assert_int_equal(hs_state_migrate(&old, img.desc, &ctx, 0, "counter.so",
                                    NULL, &out, &reset, &err),
                   0);
  assert_int_equal(reset, 0);
  assert_int_equal(out.version, 2);
  assert_int_equal(out.size, sizeof(struct state_v2));
  v2 = out.data;
  assert_int_equal(v2->loads, 3);
  assert_int_equal(v2->ticks, 7);
  assert_int_equal(v2->migrated_from, 1);
  assert_int_equal(v2->padding_zero, 0);
  assert_non_null(strstr(read_log(log, sizeof(log)),
                         "migrated v1 (16 bytes) to v2 loads=3"));
  assert_null(ctx.state); /* put back after migrate() */
  /* old is untouched: the previous version may still need it. */
  assert_int_equal(((struct state_v1 *)old.data)->loads, 3);
  hs_state_free(&out);
  hs_state_free(&old);
  hs_loader_close(&img, FIXTURE("counter_v2"));
}

static void test_state_nomigrate_names_versions(void **state) {
  hs_image img;
  hs_state old, out;
  hs_ctx ctx;
  hs_error err;

  (void)state;
  old_v1(&old);
  open_fixture(&img, FIXTURE("counter_v2_nomigrate"));
  hs_api_ctx_init(&ctx, "counter", HS_TEST_FIXTURES, NULL, 0);
  hs_error_clear(&err);
  memset(&out, 0x5a, sizeof(out));
  assert_int_equal(hs_state_migrate(&old, img.desc, &ctx, 0, "counter.so",
                                    NULL, &out, NULL, &err),
                   HS_ENOMIGRATE);
  assert_int_equal(err.code, HS_ENOMIGRATE);
  assert_string_equal(err.stage, "migrate");
  assert_string_equal(err.msg,
                      "state changes from v1 (16 bytes) to v2 (24 bytes) and "
                      "counter.so has no migrate function; add one, or start "
                      "hotswap with --allow-state-reset to reset the state");
  assert_null(out.data);
  assert_int_equal(out.size, 0);
  hs_state_free(&old);
  hs_loader_close(&img, FIXTURE("counter_v2_nomigrate"));
}

/* Going back from v2 to v1 (counter_v1 has no migrate) is refused too. */
static void test_state_nomigrate_backwards(void **state) {
  hs_image img;
  hs_state old, out;
  hs_error err;

  (void)state;
  assert_int_equal(hs_state_init(&old, 2, sizeof(struct state_v2)), 0);
  open_fixture(&img, FIXTURE("counter_v1"));
  assert_int_equal(hs_state_migrate(&old, img.desc, NULL, 0, "counter.so",
                                    NULL, &out, NULL, &err),
                   HS_ENOMIGRATE);
  assert_string_equal(err.msg,
                      "state changes from v2 (24 bytes) to v1 (16 bytes) and "
                      "counter.so has no migrate function; add one, or start "
                      "hotswap with --allow-state-reset to reset the state");
  hs_state_free(&old);
  hs_loader_close(&img, FIXTURE("counter_v1"));
}

static void test_state_allow_reset_zeroes(void **state) {
  hs_image img;
  hs_state old, out;
  hs_ctx ctx;
  hs_error err;
  unsigned char zero[sizeof(struct state_v2)] = {0};
  int reset = 0;

  (void)state;
  old_v1(&old);
  open_fixture(&img, FIXTURE("counter_v2_nomigrate"));
  hs_api_ctx_init(&ctx, "counter", HS_TEST_FIXTURES, NULL, 0);
  assert_int_equal(hs_state_migrate(&old, img.desc, &ctx, 1, "counter.so",
                                    NULL, &out, &reset, &err),
                   0);
  assert_int_equal(reset, 1);
  assert_int_equal(out.version, 2);
  assert_int_equal(out.size, sizeof(zero));
  assert_memory_equal(out.data, zero, sizeof(zero));
  hs_state_free(&out);
  /* allow_reset does not skip a migrate function that exists */
  hs_loader_close(&img, FIXTURE("counter_v2_nomigrate"));
  open_fixture(&img, FIXTURE("counter_v2"));
  assert_int_equal(hs_state_migrate(&old, img.desc, &ctx, 1, "counter.so",
                                    NULL, &out, &reset, &err),
                   0);
  assert_int_equal(reset, 0);
  assert_int_equal(((struct state_v2 *)out.data)->loads, 3);
  hs_state_free(&out);
  hs_state_free(&old);
  hs_loader_close(&img, FIXTURE("counter_v2"));
}

static int t_load(hs_ctx *ctx, void *s, hs_load_reason r) {
  (void)ctx, (void)s, (void)r;
  return 0;
}

static void t_unload(hs_ctx *ctx, void *s, hs_unload_reason r) {
  (void)ctx, (void)s, (void)r;
}

static hs_plugin desc_v1(uint32_t size) {
  hs_plugin d = {
      .abi_version = HS_ABI_VERSION,
      .size = sizeof(hs_plugin),
      .name = "t",
      .version = "1",
      .state_version = 1,
      .state_size = size,
      .load = t_load,
      .unload = t_unload,
  };
  return d;
}

static void test_state_size_change_needs_new_version(void **state) {
  hs_plugin d = desc_v1(24);
  hs_state old, out;
  hs_error err;

  (void)state;
  old_v1(&old);
  assert_int_equal(hs_state_compatible(&old, &d), 0);
  assert_int_equal(
      hs_state_migrate(&old, &d, NULL, 0, "counter.so", NULL, &out, NULL, &err),
      HS_ENOMIGRATE);
  assert_string_equal(err.stage, "migrate");
  assert_string_equal(err.msg,
                      "state v1 changes size from 16 to 24 bytes without a "
                      "new state_version; bump state_version and add a "
                      "migrate function");
  assert_null(out.data);
  hs_state_free(&old);
}

static void *seen_ctx_state, *seen_new_state;
static int t_migrate_record(hs_ctx *ctx, void *new_state,
                            const void *old_state, uint32_t old_version,
                            uint32_t old_size) {
  (void)old_state;
  seen_ctx_state = ctx->state;
  seen_new_state = new_state;
  return old_version == 1 && old_size == 16 ? 0 : HS_EINVAL;
}

static int t_migrate_positive(hs_ctx *ctx, void *new_state,
                              const void *old_state, uint32_t old_version,
                              uint32_t old_size) {
  (void)ctx, (void)new_state, (void)old_state, (void)old_version,
      (void)old_size;
  return 7;
}

/* migrate() runs also for a size change within one state_version, with
 * ctx->state on the new bytes; the ctx gets its old pointer back. */
static void test_state_migrate_sees_new_state_in_ctx(void **state) {
  hs_plugin d = desc_v1(32);
  hs_state old, out;
  hs_ctx ctx;
  hs_error err;
  int marker;

  (void)state;
  d.migrate = t_migrate_record;
  old_v1(&old);
  hs_api_ctx_init(&ctx, "t", "/", NULL, 0);
  ctx.state = &marker;
  assert_int_equal(
      hs_state_migrate(&old, &d, &ctx, 0, "t.so", NULL, &out, NULL, &err), 0);
  assert_ptr_equal(seen_ctx_state, out.data);
  assert_ptr_equal(seen_new_state, out.data);
  assert_ptr_equal(ctx.state, &marker);
  assert_int_equal(out.size, 32);
  hs_state_free(&out);

  d.migrate = t_migrate_positive;
  assert_int_equal(
      hs_state_migrate(&old, &d, &ctx, 0, "t.so", NULL, &out, NULL, &err),
      HS_EMIGRATE);
  assert_string_equal(err.msg, "migrate() of t.so from state v1 to v1 "
                               "returned 7 (not a hotswap code)");
  assert_null(out.data);
  assert_ptr_equal(ctx.state, &marker);
  hs_state_free(&old);
}

static void test_state_migrate_failure_names_code(void **state) {
  hs_image img;
  hs_state old, out;
  hs_ctx ctx;
  hs_error err;
  char log[4096];

  (void)state;
  old_v1(&old);
  open_fixture(&img, FIXTURE("bad_fail_migrate"));
  hs_api_ctx_init(&ctx, "counter", HS_TEST_FIXTURES, NULL, 0);
  ctx.desc = img.desc;
  read_log(log, sizeof(log));
  hs_error_clear(&err);
  assert_int_equal(hs_state_migrate(&old, img.desc, &ctx, 1, "counter.so",
                                    NULL, &out, NULL, &err),
                   HS_EMIGRATE);
  assert_int_equal(err.code, HS_EMIGRATE);
  assert_string_equal(err.stage, "migrate");
  assert_string_equal(err.msg, "migrate() of counter.so from state v1 to v2 "
                               "returned HS_ERANGE (result out of range)");
  assert_null(out.data);
  assert_non_null(strstr(read_log(log, sizeof(log)), "cannot migrate from v1"));
  hs_state_free(&old);
  hs_loader_close(&img, FIXTURE("bad_fail_migrate"));
}

/* The inode behind fd. */
static ino_t inode(int fd) {
  struct stat st;
  assert_int_equal(fstat(fd, &st), 0);
  return st.st_ino;
}

static void test_state_snap_readers_cannot_write(void **state) {
  hs_state_snap snap = HS_STATE_SNAP_INIT;
  hs_state s, back;
  int fd;

  (void)state;
  old_v1(&s);
  fd = hs_state_snap_write(&snap, &s);
  assert_true(fd >= 0);
  assert_true(fd != snap.fd);
  assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  assert_int_equal(fcntl(fd, F_GET_SEALS), F_SEAL_SHRINK | F_SEAL_GROW |
                                               F_SEAL_FUTURE_WRITE |
                                               F_SEAL_SEAL);
  assert_int_equal(lseek(fd, 0, SEEK_END), 16);
  assert_int_equal(pwrite(fd, "x", 1, 0), -1);
  assert_int_equal(errno, EPERM);
  assert_int_equal(ftruncate(fd, 0), -1);
  assert_true(mmap(NULL, 16, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) ==
              MAP_FAILED);
  assert_int_equal(errno, EPERM);

  assert_int_equal(hs_state_map_fd(&back, fd, 1, 16), 0);
  assert_int_equal(back.version, 1);
  assert_int_equal(back.size, 16);
  assert_int_equal(back.mapped, 1);
  assert_memory_equal(back.data, s.data, 16);
  /* The private copy is writable, and its writes stay in it. */
  memset(back.data, 0xee, 16);
  hs_state_free(&back);
  assert_int_equal(hs_state_map_fd(&back, fd, 1, 16), 0);
  assert_memory_equal(back.data, s.data, 16);
  hs_state_free(&back);
  /* Fewer bytes than asked for is an error, leaving back empty. */
  assert_int_equal(hs_state_map_fd(&back, fd, 1, 17), HS_EIO);
  assert_null(back.data);
  close(fd);
  hs_state_snap_free(&snap);
  assert_int_equal(snap.fd, -1);
  hs_state_free(&s);
}

/* While a snapshot is lent, the next one goes to a new memfd and the
 * reader keeps its bytes; once it is done, the memfd is reused (and a map
 * of it shows the new bytes: why a reader must be done first). */
static void test_state_snap_lent_until_done(void **state) {
  hs_state_snap snap = HS_STATE_SNAP_INIT;
  hs_state s, first, second;
  unsigned char was[16];
  int fd1, fd2, fd3;

  (void)state;
  old_v1(&s);
  memcpy(was, s.data, 16);
  fd1 = hs_state_snap_write(&snap, &s);
  assert_true(fd1 >= 0);
  assert_int_equal(snap.lent, 1);
  assert_int_equal(hs_state_map_fd(&first, fd1, 1, 16), 0);

  memset(s.data, 0x5a, 16);
  fd2 = hs_state_snap_write(&snap, &s);
  assert_true(fd2 >= 0);
  assert_true(inode(fd2) != inode(fd1));
  assert_memory_equal(first.data, was, 16);
  assert_int_equal(hs_state_map_fd(&second, fd2, 1, 16), 0);
  assert_memory_equal(second.data, s.data, 16);
  /* A reader's writes stay in its own copy. */
  memset(first.data, 0xee, 16);
  hs_state_free(&first);
  assert_int_equal(hs_state_map_fd(&first, fd1, 1, 16), 0);
  assert_memory_equal(first.data, was, 16);

  hs_state_snap_done(&snap);
  assert_int_equal(snap.lent, 0);
  memset(s.data, 0x33, 16);
  fd3 = hs_state_snap_write(&snap, &s);
  assert_true(fd3 >= 0);
  assert_true(inode(fd3) == inode(fd2));
  assert_memory_equal(second.data, s.data, 16);

  /* A new size: a new memfd, done or not; the old one stays whole. */
  hs_state_snap_done(&snap);
  hs_state bigger;
  assert_int_equal(hs_state_init(&bigger, 2, 24), 0);
  memset(bigger.data, 0x11, 24);
  int fd4 = hs_state_snap_write(&snap, &bigger);
  assert_true(fd4 >= 0);
  assert_true(inode(fd4) != inode(fd2));
  assert_int_equal(lseek(fd4, 0, SEEK_END), 24);
  assert_int_equal(lseek(fd2, 0, SEEK_END), 16);

  close(fd1);
  close(fd2);
  close(fd3);
  close(fd4);
  hs_state_free(&first);
  hs_state_free(&second);
  hs_state_free(&bigger);
  hs_state_free(&s);
  hs_state_snap_free(&snap);
}

static void test_state_snap_empty(void **state) {
  hs_state_snap snap = HS_STATE_SNAP_INIT;
  hs_state s, back;
  int fd;

  (void)state;
  assert_int_equal(hs_state_init(&s, 3, 0), 0);
  fd = hs_state_snap_write(&snap, &s);
  assert_true(fd >= 0);
  assert_null(snap.map);
  assert_int_equal(lseek(fd, 0, SEEK_END), 0);
  assert_int_equal(hs_state_map_fd(&back, fd, 3, 0), 0);
  assert_null(back.data);
  assert_int_equal(back.version, 3);
  close(fd);
  hs_state_snap_free(&snap);
  assert_int_equal(hs_state_map_fd(&back, -1, 3, 8), HS_EIO);
  assert_null(back.data);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_state_init_zeroes),
      cmocka_unit_test(test_state_copy_and_move),
      cmocka_unit_test(test_state_compatible_copies_bytes),
      cmocka_unit_test(test_state_prepare_zeroes_every_page),
      cmocka_unit_test(test_state_migrate_takes_over_the_spare),
      cmocka_unit_test(test_state_migrates_with_counter_v2),
      cmocka_unit_test(test_state_nomigrate_names_versions),
      cmocka_unit_test(test_state_nomigrate_backwards),
      cmocka_unit_test(test_state_allow_reset_zeroes),
      cmocka_unit_test(test_state_size_change_needs_new_version),
      cmocka_unit_test(test_state_migrate_sees_new_state_in_ctx),
      cmocka_unit_test(test_state_migrate_failure_names_code),
      cmocka_unit_test(test_state_snap_readers_cannot_write),
      cmocka_unit_test(test_state_snap_lent_until_done),
      cmocka_unit_test(test_state_snap_empty),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
