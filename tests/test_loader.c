/* test_loader.c - opening plugin images; each broken fixture pins its text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "dl.h"
#include "loader.h"

#define FIXTURE(name) HS_TEST_FIXTURES "/" name ".so"

/* Opens a broken fixture (named counter.so in messages) and expects code,
 * stage and message, with nothing left loaded. */
static void expect_rejected(const char *path, int code, const char *stage,
                            const char *msg) {
  hs_image img;
  hs_error err;

  hs_error_clear(&err);
  assert_int_equal(hs_loader_open(&img, path, "counter.so", &err), code);
  assert_int_equal(err.code, code);
  assert_string_equal(err.stage, stage);
  if (msg != NULL)
    assert_string_equal(err.msg, msg);
  assert_null(img.handle);
  assert_null(img.desc);
  assert_int_equal(hs_dl_is_loaded(path), 0);
}

static void test_loader_opens_counter_v1(void **state) {
  hs_image img;
  hs_error err;

  (void)state;
  hs_error_clear(&err);
  assert_int_equal(
      hs_loader_open(&img, FIXTURE("counter_v1"), "counter.so", &err), 0);
  assert_int_equal(err.code, 0);
  assert_non_null(img.handle);
  assert_non_null(img.desc);
  assert_int_equal(img.desc->abi_version, HS_ABI_VERSION);
  assert_int_equal(img.desc->size, sizeof(hs_plugin));
  assert_string_equal(img.desc->name, "counter");
  assert_string_equal(img.desc->version, "1.0");
  assert_int_equal(img.desc->state_version, 1);
  assert_int_equal(img.desc->state_size, 16);
  assert_non_null(img.desc->tick);
  assert_null(img.desc->migrate);
  assert_int_equal(hs_loader_close(&img, FIXTURE("counter_v1")), 1);
  assert_null(img.handle);
  assert_null(img.desc);
  assert_int_equal(hs_dl_is_loaded(FIXTURE("counter_v1")), 0);
  /* Closing a closed image is harmless. */
  assert_int_equal(hs_loader_close(&img, FIXTURE("counter_v1")), 1);
}

/* One path opened twice is one object: the same descriptor, and it stays
 * mapped until the second close. (The cache gives every version its own
 * path so that this never happens to two versions.) */
static void test_loader_same_path_twice_shares_image(void **state) {
  hs_image a, b;
  hs_error err;

  (void)state;
  assert_int_equal(
      hs_loader_open(&a, FIXTURE("counter_v2"), "counter.so", &err), 0);
  assert_int_equal(
      hs_loader_open(&b, FIXTURE("counter_v2"), "counter.so", &err), 0);
  assert_ptr_equal(a.handle, b.handle);
  assert_ptr_equal(a.desc, b.desc);
  assert_int_equal(hs_loader_close(&a, FIXTURE("counter_v2")), 0);
  assert_string_equal(b.desc->version, "2.0"); /* still mapped */
  assert_int_equal(hs_loader_close(&b, FIXTURE("counter_v2")), 1);
}

static void test_loader_rejects_unresolved(void **state) {
  hs_image img;
  hs_error err;
  const char *prefix = "cannot load counter.so: ";

  (void)state;
  expect_rejected(FIXTURE("bad_unresolved"), HS_EDLOPEN, "open", NULL);
  assert_int_equal(
      hs_loader_open(&img, FIXTURE("bad_unresolved"), "counter.so", &err),
      HS_EDLOPEN);
  assert_int_equal(strncmp(err.msg, prefix, strlen(prefix)), 0);
  /* dlerror()'s text follows whole: the cache path and the symbol. */
  assert_non_null(strstr(err.msg, FIXTURE("bad_unresolved")));
  assert_non_null(
      strstr(err.msg, "undefined symbol: fx_function_nobody_defines"));
}

static void test_loader_rejects_missing_entry(void **state) {
  (void)state;
  expect_rejected(FIXTURE("bad_noentry"), HS_ENOENTRY, "entry",
                  "counter.so does not export hotswap_plugin_entry");
}

static void test_loader_rejects_null_descriptor(void **state) {
  (void)state;
  expect_rejected(FIXTURE("bad_null"), HS_EDESC, "entry",
                  "hotswap_plugin_entry of counter.so returned NULL");
}

static void test_loader_rejects_wrong_abi(void **state) {
  (void)state;
  expect_rejected(FIXTURE("bad_abi"), HS_EABI, "abi",
                  "counter.so was built for plugin ABI 99; this host speaks "
                  "ABI 3");
}

static void test_loader_rejects_short_descriptor(void **state) {
  char msg[128];

  (void)state;
  snprintf(msg, sizeof(msg),
           "descriptor of counter.so is 16 bytes; ABI 3 needs at least %zu",
           sizeof(hs_plugin));
  expect_rejected(FIXTURE("bad_size"), HS_EDESC, "abi", msg);
}

static void test_loader_rejects_missing_load(void **state) {
  (void)state;
  expect_rejected(FIXTURE("bad_noload"), HS_EDESC, "abi",
                  "descriptor of counter.so has no load callback");
}

static void test_loader_rejects_missing_file(void **state) {
  (void)state;
  expect_rejected(HS_TEST_FIXTURES "/no_such_plugin.so", HS_EDLOPEN, "open",
                  NULL);
}

/* Broken at run time, not at load: the loader does not call load() or
 * selftest(), so these open (the sandbox catches them). */
static void test_loader_opens_runtime_breakage(void **state) {
  static const char *const names[] = {
      FIXTURE("bad_crash_load"),     FIXTURE("bad_fpe_load"),
      FIXTURE("bad_abort_selftest"), FIXTURE("bad_hang_selftest"),
      FIXTURE("bad_fail_load"),      FIXTURE("bad_fail_selftest"),
      FIXTURE("bad_fail_migrate"),
  };
  hs_image img;
  hs_error err;

  (void)state;
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    assert_int_equal(hs_loader_open(&img, names[i], "counter.so", &err), 0);
    assert_int_equal(hs_loader_close(&img, names[i]), 1);
  }
}

/* ---- hs_loader_check on descriptors built here ---------------------- */

static int t_load(hs_ctx *ctx, void *s, hs_load_reason r) {
  (void)ctx, (void)s, (void)r;
  return 0;
}

static void t_unload(hs_ctx *ctx, void *s, hs_unload_reason r) {
  (void)ctx, (void)s, (void)r;
}

static hs_plugin good_desc(void) {
  hs_plugin d = {
      .abi_version = HS_ABI_VERSION,
      .size = sizeof(hs_plugin),
      .name = "t",
      .version = "1",
      .state_version = 1,
      .state_size = 8,
      .load = t_load,
      .unload = t_unload,
  };
  return d;
}

static void check_desc(const hs_plugin *d, int code, const char *msg) {
  hs_error err;

  hs_error_clear(&err);
  assert_int_equal(hs_loader_check(d, "t.so", &err), code);
  assert_int_equal(err.code, code);
  if (code != 0) {
    assert_string_equal(err.stage, "abi");
    assert_string_equal(err.msg, msg);
  }
}

static void test_loader_check_descriptors(void **state) {
  hs_plugin d = good_desc();

  (void)state;
  check_desc(&d, 0, NULL);
  d.state_size = 0; /* no state is fine */
  check_desc(&d, 0, NULL);
  d.state_size = HS_STATE_SIZE_MAX;
  check_desc(&d, 0, NULL);

  d = good_desc();
  d.abi_version = 0;
  check_desc(&d, HS_EABI,
               "t.so was built for plugin ABI 0; this host speaks ABI 3");
  d = good_desc();
  d.name = NULL;
  check_desc(&d, HS_EDESC, "descriptor of t.so has no name");
  d = good_desc();
  d.version = NULL;
  check_desc(&d, HS_EDESC, "descriptor of t.so has no version string");
  d = good_desc();
  d.unload = NULL;
  check_desc(&d, HS_EDESC, "descriptor of t.so has no unload callback");
  d = good_desc();
  d.state_version = 0;
  check_desc(&d, HS_EDESC,
               "descriptor of t.so has state_version 0; it must be 1 or "
               "more");
  d = good_desc();
  d.state_size = HS_STATE_SIZE_MAX + 1;
  check_desc(&d, HS_EDESC,
               "descriptor of t.so asks for 1073741825 bytes of state; the "
               "limit is 1073741824");
  /* A larger descriptor (from a newer build of ABI 1) is fine. */
  d = good_desc();
  d.size = sizeof(hs_plugin) + 16;
  check_desc(&d, 0, NULL);
}

/* The version and size are checked before anything after them is read. */
static void test_loader_check_reads_only_declared_bytes(void **state) {
  struct {
    uint32_t abi_version, size;
  } small = {HS_ABI_VERSION, 8};
  hs_plugin *d;
  hs_error err;

  (void)state;
  d = malloc(sizeof(small)); /* ASan would see any read past 8 bytes */
  assert_non_null(d);
  memcpy(d, &small, sizeof(small));
  assert_int_equal(hs_loader_check(d, "t.so", &err), HS_EDESC);
  free(d);
}

/* ---- the table handed to the entry symbol ---------------------------- */

static int ticks;
static void t_tick(hs_ctx *ctx, void *s) {
  (void)ctx, (void)s;
  ticks++;
}

static void test_loader_api_table(void **state) {
  const hs_api *api = hs_api_get();
  hs_plugin d = good_desc();
  hs_ctx ctx;

  (void)state;
  assert_int_equal(api->abi_version, HS_ABI_VERSION);
  assert_int_equal(api->size, sizeof(hs_api));
  hs_api_ctx_init(&ctx, "t", "/plugins", NULL, 1);
  ctx.desc = &d;
  assert_string_equal(api->name(&ctx), "t");
  assert_string_equal(api->dir(&ctx), "/plugins");
  assert_int_equal(api->in_sandbox(&ctx), 1);
  assert_true(api->now_ns(&ctx) > 0);
  /* No tick(): refused; interval 0: refused. */
  assert_int_equal(api->tick_start(&ctx, 10), HS_EINVAL);
  d.tick = t_tick;
  assert_int_equal(api->tick_start(&ctx, 0), HS_EINVAL);
  /* In the sandbox the rate is only remembered. */
  assert_int_equal(api->tick_start(&ctx, 25), 0);
  assert_int_equal(ctx.tick_ms, 25);
  api->tick_stop(&ctx);
  assert_int_equal(ctx.tick_ms, 0);
  api->tick_stop(&ctx);
}

static void stop_loop(hs_timer *t) { hs_loop_stop(t->data); }

static void test_loader_api_ticks_in_live_loop(void **state) {
  const hs_api *api = hs_api_get();
  hs_plugin d = good_desc();
  hs_loop loop;
  hs_timer guard;
  hs_ctx ctx;

  (void)state;
  d.tick = t_tick;
  assert_int_equal(hs_loop_init(&loop), 0);
  hs_api_ctx_init(&ctx, "t", "/plugins", &loop, 0);
  ctx.desc = &d;
  assert_int_equal(api->in_sandbox(&ctx), 0);
  ticks = 0;
  assert_int_equal(api->tick_start(&ctx, 1), 0);
  assert_int_equal(ctx.tick_ms, 1);
  assert_int_equal(hs_loop_timer_active(&ctx.tick), 1);
  hs_loop_timer_init(&guard, stop_loop, &loop);
  assert_int_equal(hs_loop_timer_start(&loop, &guard, 30000000, 0), 0);
  assert_int_equal(hs_loop_run(&loop), 0);
  assert_true(ticks >= 3);
  hs_api_ctx_stop(&ctx);
  assert_int_equal(ctx.tick_ms, 0);
  assert_int_equal(hs_loop_timer_active(&ctx.tick), 0);
  hs_loop_close(&loop);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_loader_opens_counter_v1),
      cmocka_unit_test(test_loader_same_path_twice_shares_image),
      cmocka_unit_test(test_loader_rejects_unresolved),
      cmocka_unit_test(test_loader_rejects_missing_entry),
      cmocka_unit_test(test_loader_rejects_null_descriptor),
      cmocka_unit_test(test_loader_rejects_wrong_abi),
      cmocka_unit_test(test_loader_rejects_short_descriptor),
      cmocka_unit_test(test_loader_rejects_missing_load),
      cmocka_unit_test(test_loader_rejects_missing_file),
      cmocka_unit_test(test_loader_opens_runtime_breakage),
      cmocka_unit_test(test_loader_check_descriptors),
      cmocka_unit_test(test_loader_check_reads_only_declared_bytes),
      cmocka_unit_test(test_loader_api_table),
      cmocka_unit_test(test_loader_api_ticks_in_live_loop),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
