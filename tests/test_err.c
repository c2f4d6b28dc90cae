/* test_err.c - hs_strerror, hs_err_name and hs_error. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"

/* The table is scanned by value, so that this test does not restate it:
 * errno mirrors live in (-4000, 0), hotswap's own codes from -4001 on. */
#define LOWEST_CODE (-4200)

static void test_err_every_code_has_name_and_message(void **state) {
  int code, other, named = 0, own = 0;
  const char *name, *msg;

  (void)state;
  for (code = -1; code >= LOWEST_CODE; code--) {
    name = hs_err_name(code);
    assert_non_null(name);
    if (strcmp(name, "HS_EUNKNOWN") == 0)
      continue;
    named++;
    assert_int_equal(strncmp(name, "HS_E", 4), 0);
    msg = hs_strerror(code);
    assert_non_null(msg);
    assert_true(msg[0] != '\0');
    assert_null(strstr(msg, "Unknown error"));
    if (code > -4000) {
      /* An errno mirror is named after, and valued as, the real errno. */
      assert_string_equal(name + 3, strerrorname_np(-code));
    } else {
      own++;
    }
    for (other = code - 1; other >= LOWEST_CODE; other--)
      assert_string_not_equal(name, hs_err_name(other));
  }
  assert_true(named >= 12);
  assert_true(own >= 14);
}

static void test_err_own_codes_are_contiguous(void **state) {
  int code;

  (void)state;
  /* From -4001 every code is named up to the last one, then none is. */
  for (code = -4001; strcmp(hs_err_name(code), "HS_EUNKNOWN") != 0; code--)
    ;
  for (; code >= LOWEST_CODE; code--)
    assert_string_equal(hs_err_name(code), "HS_EUNKNOWN");
}

static void test_err_known_entries(void **state) {
  (void)state;
  assert_string_equal(hs_err_name(HS_EABI), "HS_EABI");
  assert_string_equal(hs_strerror(HS_EABI), "incompatible plugin ABI");
  assert_string_equal(hs_err_name(HS_ENOMEM), "HS_ENOMEM");
  assert_int_equal(HS_ENOMEM, -ENOMEM);
  assert_string_equal(hs_strerror(HS_ENOENTRY),
                      "entry symbol hotswap_plugin_entry not found");
  assert_string_equal(hs_err_name(HS_ENOTLOADED), "HS_ENOTLOADED");
}

static void test_err_ok_is_success(void **state) {
  (void)state;
  assert_string_equal(hs_strerror(0), "success");
  assert_string_equal(hs_err_name(0), "HS_OK");
}

static void test_err_errno_passes_through(void **state) {
  (void)state;
  /* EPIPE is not in the table: strerror's text, no name. */
  assert_string_equal(hs_strerror(-EPIPE), strerror(EPIPE));
  assert_string_equal(hs_err_name(-EPIPE), "HS_EUNKNOWN");
  assert_string_equal(hs_strerror(-ECONNREFUSED), strerror(ECONNREFUSED));
}

static void test_err_unknown_codes(void **state) {
  const char *s;

  (void)state;
  s = hs_strerror(-3999);
  assert_non_null(s);
  assert_true(s[0] != '\0');
  assert_string_equal(hs_err_name(-3999), "HS_EUNKNOWN");
  assert_string_equal(hs_strerror(7), "unknown error 7");
  assert_string_equal(hs_err_name(7), "HS_EUNKNOWN");
  assert_string_equal(hs_strerror(INT_MIN), "unknown error -2147483648");
  assert_string_equal(hs_err_name(INT_MIN), "HS_EUNKNOWN");
  assert_string_equal(hs_err_name(INT_MAX), "HS_EUNKNOWN");
}

static void test_err_set_fills_and_returns_code(void **state) {
  hs_error e;

  (void)state;
  assert_int_equal(hs_error_set(&e, HS_EABI, "abi",
                                "%s: built for ABI %d, host speaks %d",
                                "counter.so", 2, 1),
                   HS_EABI);
  assert_int_equal(e.code, HS_EABI);
  assert_string_equal(e.stage, "abi");
  assert_string_equal(e.msg, "counter.so: built for ABI 2, host speaks 1");
}

static void test_err_clear(void **state) {
  hs_error e;

  (void)state;
  hs_error_set(&e, HS_EIO, "copy", "x");
  hs_error_clear(&e);
  assert_int_equal(e.code, 0);
  assert_string_equal(e.stage, "");
  assert_string_equal(e.msg, "");
}

static void test_err_set_zero_clears(void **state) {
  hs_error e;

  (void)state;
  hs_error_set(&e, HS_EIO, "copy", "x");
  assert_int_equal(hs_error_set(&e, 0, "copy", "ignored"), 0);
  assert_int_equal(e.code, 0);
  assert_string_equal(e.stage, "");
  assert_string_equal(e.msg, "");
}

static void test_err_set_null_stage_and_error(void **state) {
  hs_error e;

  (void)state;
  hs_error_set(&e, HS_EINVAL, NULL, "bad");
  assert_string_equal(e.stage, "");
  assert_string_equal(e.msg, "bad");
  assert_int_equal(hs_error_set(NULL, HS_EINVAL, "x", "y"), HS_EINVAL);
}

static void test_err_set_truncates(void **state) {
  char big[2000];
  hs_error e;

  (void)state;
  memset(big, 'm', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  hs_error_set(&e, HS_EIO, "a-stage-name-far-too-long", "%s", big);
  assert_int_equal(strlen(e.stage), sizeof(e.stage) - 1);
  assert_int_equal(strncmp(e.stage, "a-stage-name-far", sizeof(e.stage) - 1),
                   0);
  assert_int_equal(strlen(e.msg), sizeof(e.msg) - 1);
}

static void test_err_set_wraps_own_message(void **state) {
  hs_error e;

  (void)state;
  hs_error_set(&e, HS_EIO, "copy", "read failed");
  hs_error_set(&e, e.code, e.stage, "counter.so: %s (stage %s)", e.msg,
               e.stage);
  assert_string_equal(e.msg, "counter.so: read failed (stage copy)");
  assert_string_equal(e.stage, "copy");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_err_every_code_has_name_and_message),
      cmocka_unit_test(test_err_own_codes_are_contiguous),
      cmocka_unit_test(test_err_known_entries),
      cmocka_unit_test(test_err_ok_is_success),
      cmocka_unit_test(test_err_errno_passes_through),
      cmocka_unit_test(test_err_unknown_codes),
      cmocka_unit_test(test_err_set_fills_and_returns_code),
      cmocka_unit_test(test_err_clear),
      cmocka_unit_test(test_err_set_zero_clears),
      cmocka_unit_test(test_err_set_null_stage_and_error),
      cmocka_unit_test(test_err_set_truncates),
      cmocka_unit_test(test_err_set_wraps_own_message),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
