/* test_buf.c - the growable buffer and its JSON strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"

static void test_buf_starts_empty(void **state) {
  hs_buf b;

  (void)state;
  hs_buf_init(&b);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.oom, 0);
  hs_buf_free(&b); /* harmless on an empty buffer */
  assert_null(b.data);
}

static void test_buf_append_keeps_nul(void **state) {
  hs_buf b;

  (void)state;
  hs_buf_init(&b);
  assert_int_equal(hs_buf_append(&b, "abcdef", 3), 0);
  assert_int_equal(b.len, 3);
  assert_string_equal(b.data, "abc");
  assert_int_equal(hs_buf_puts(&b, "de"), 0);
  assert_string_equal(b.data, "abcde");
  assert_int_equal(hs_buf_append(&b, "", 0), 0);
  assert_int_equal(b.len, 5);
  assert_true(b.cap > b.len);
  hs_buf_free(&b);
}

static void test_buf_empty_append_allocates(void **state) {
  hs_buf b;

  (void)state;
  hs_buf_init(&b);
  assert_int_equal(hs_buf_append(&b, NULL, 0), 0);
  assert_non_null(b.data);
  assert_string_equal(b.data, "");
  hs_buf_free(&b);
}

static void test_buf_grows(void **state) {
  hs_buf b;
  size_t i;

  (void)state;
  hs_buf_init(&b);
  for (i = 0; i < 10000; i++)
    assert_int_equal(hs_buf_append(&b, "x", 1), 0);
  assert_int_equal(b.len, 10000);
  assert_int_equal(strlen(b.data), 10000);
  assert_true(b.cap > 10000);
  hs_buf_free(&b);
}

static void test_buf_printf(void **state) {
  char big[3000];
  hs_buf b;

  (void)state;
  hs_buf_init(&b);
  assert_int_equal(hs_buf_printf(&b, "%d-%s", 42, "x"), 0);
  assert_string_equal(b.data, "42-x");
  /* Longer than what is allocated: vprintf grows and formats again. */
  memset(big, 'y', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  assert_int_equal(hs_buf_printf(&b, "[%s]", big), 0);
  assert_int_equal(b.len, 4 + 2 + sizeof(big) - 1);
  assert_int_equal(strlen(b.data), b.len);
  assert_int_equal(b.data[4], '[');
  assert_int_equal(b.data[b.len - 1], ']');
  hs_buf_free(&b);
}

static void test_buf_reset_keeps_allocation(void **state) {
  hs_buf b;
  char *data;
  size_t cap;

  (void)state;
  hs_buf_init(&b);
  hs_buf_puts(&b, "hello");
  data = b.data;
  cap = b.cap;
  hs_buf_reset(&b);
  assert_ptr_equal(b.data, data);
  assert_int_equal(b.cap, cap);
  assert_int_equal(b.len, 0);
  assert_string_equal(b.data, "");
  hs_buf_puts(&b, "again");
  assert_string_equal(b.data, "again");
  hs_buf_free(&b);
}

static void test_buf_oom_is_sticky(void **state) {
  hs_buf b;

  (void)state;
  hs_buf_init(&b);
  hs_buf_puts(&b, "kept");
  /* A size that cannot be allocated fails without touching the data. */
  assert_int_equal(hs_buf_append(&b, "", SIZE_MAX - 2), HS_ENOMEM);
  assert_int_equal(b.oom, 1);
  assert_string_equal(b.data, "kept");
  /* Later appends are ignored, so callers check oom once at the end. */
  assert_int_equal(hs_buf_puts(&b, "more"), HS_ENOMEM);
  assert_int_equal(hs_buf_printf(&b, "%d", 1), HS_ENOMEM);
  assert_int_equal(hs_buf_json_str(&b, "s"), HS_ENOMEM);
  assert_string_equal(b.data, "kept");
  assert_int_equal(b.len, 4);
  /* A reset starts afresh. */
  hs_buf_reset(&b);
  assert_int_equal(b.oom, 0);
  assert_int_equal(hs_buf_puts(&b, "new"), 0);
  assert_string_equal(b.data, "new");
  hs_buf_free(&b);
}

static void assert_json(const char *in, const char *want) {
  hs_buf b;

  hs_buf_init(&b);
  assert_int_equal(hs_buf_json_str(&b, in), 0);
  assert_string_equal(b.data, want);
  assert_int_equal(b.len, strlen(want));
  hs_buf_free(&b);
}

static void test_buf_json_plain(void **state) {
  (void)state;
  assert_json("counter", "\"counter\"");
  assert_json("", "\"\"");
  assert_json(NULL, "null");
}

static void test_buf_json_escapes(void **state) {
  (void)state;
  assert_json("say \"hi\"", "\"say \\\"hi\\\"\"");
  assert_json("C:\\dir\\", "\"C:\\\\dir\\\\\"");
  assert_json("a\nb\tc\rd\be\ff", "\"a\\nb\\tc\\rd\\be\\ff\"");
  assert_json("\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\"");
  assert_json("\x1b[31m", "\"\\u001b[31m\"");
}

static void test_buf_json_passes_utf8(void **state) {
  (void)state;
  /* Bytes >= 0x80 pass through unchanged, valid UTF-8 or not. */
  assert_json("caf\xc3\xa9 \xe2\x9c\x93", "\"caf\xc3\xa9 \xe2\x9c\x93\"");
  assert_json("\xff\xfe", "\"\xff\xfe\"");
}

static void test_buf_json_appends(void **state) {
  hs_buf b;

  (void)state;
  hs_buf_init(&b);
  hs_buf_puts(&b, "{\"name\":");
  hs_buf_json_str(&b, "a\"b");
  hs_buf_puts(&b, "}");
  assert_string_equal(b.data, "{\"name\":\"a\\\"b\"}");
  hs_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_buf_starts_empty),
      cmocka_unit_test(test_buf_append_keeps_nul),
      cmocka_unit_test(test_buf_empty_append_allocates),
      cmocka_unit_test(test_buf_grows),
      cmocka_unit_test(test_buf_printf),
      cmocka_unit_test(test_buf_reset_keeps_allocation),
      cmocka_unit_test(test_buf_oom_is_sticky),
      cmocka_unit_test(test_buf_json_plain),
      cmocka_unit_test(test_buf_json_escapes),
      cmocka_unit_test(test_buf_json_passes_utf8),
      cmocka_unit_test(test_buf_json_appends),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
