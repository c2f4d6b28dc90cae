/* test_log.c - the log's line formats, filtering and sanitising. */
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

#define TEXT_TIME "[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}"
#define JSON_TIME                                                              \
  "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"

/* The log writes into a SOCK_SEQPACKET pair: every write(2) arrives as one
 * record, so reading a record proves that a line was one write. */
typedef struct fixture {
  int rd, wr;
  char line[8192];
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof(*f));
  int sv[2];

  if (f == NULL || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) != 0) {
    free(f);
    return -1;
  }
  f->rd = sv[0];
  f->wr = sv[1];
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;

  hs_log_init(HS_LOG_TEXT, HS_LOG_INFO, 2);
  close(f->rd);
  close(f->wr);
  free(f);
  return 0;
}

/* Returns the next record (one write), or NULL when none is waiting. */
static const char *next_write(fixture *f) {
  ssize_t n = recv(f->rd, f->line, sizeof(f->line) - 1, MSG_DONTWAIT);

  if (n < 0) {
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    return NULL;
  }
  f->line[n] = '\0';
  return f->line;
}

static void assert_matches(const char *s, const char *pattern) {
  regex_t re;
  int r;

  assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
  r = regexec(&re, s, 0, NULL, 0);
  regfree(&re);
  if (r != 0)
    fail_msg("line '%s' does not match '%s'", s, pattern);
}

/* Asserts that exactly one write is waiting and that it matches. */
static void assert_line(fixture *f, const char *pattern) {
  const char *s = next_write(f);

  assert_non_null(s);
  assert_matches(s, pattern);
  assert_null(next_write(f));
}

static void test_log_text_line_shape(void **state) {
  fixture *f = *state;

  hs_log_init(HS_LOG_TEXT, HS_LOG_DEBUG, f->wr);
  hs_log(HS_LOG_INFO, "counter", "reloaded", "version %s, generation %d",
         "1.1", 2);
  assert_line(f, "^" TEXT_TIME
                 " info  counter reloaded: version 1\\.1, generation 2\n$");
}

static void test_log_text_levels_padded(void **state) {
  fixture *f = *state;

  hs_log_init(HS_LOG_TEXT, HS_LOG_DEBUG, f->wr);
  hs_log(HS_LOG_DEBUG, "p", "e", "m");
  assert_line(f, "^" TEXT_TIME " debug p e: m\n$");
  hs_log(HS_LOG_INFO, "p", "e", "m");
  assert_line(f, "^" TEXT_TIME " info  p e: m\n$");
  hs_log(HS_LOG_WARN, "p", "e", "m");
  assert_line(f, "^" TEXT_TIME " warn  p e: m\n$");
  hs_log(HS_LOG_ERROR, "p", "e", "m");
  assert_line(f, "^" TEXT_TIME " error p e: m\n$");
}

static void test_log_text_host_is_hotswap(void **state) {
  fixture *f = *state;

  hs_log_init(HS_LOG_TEXT, HS_LOG_INFO, f->wr);
  hs_log(HS_LOG_INFO, NULL, "started", "watching %s", "plugins/");
  assert_line(f, "^" TEXT_TIME " info  hotswap started: watching plugins/\n$");
}

static void test_log_text_has_no_colour_off_terminal(void **state) {
  fixture *f = *state;

  hs_log_init(HS_LOG_TEXT, HS_LOG_INFO, f->wr);
  hs_log(HS_LOG_ERROR, NULL, "error", "x");
  assert_non_null(next_write(f));
  assert_null(strchr(f->line, '\x1b'));
}

/* Opens a pseudo-terminal; returns the follower side's fd and sets *leader,
 * or -1 when the system has none to give. */
static int open_pty(int *leader) {
  int m = posix_openpt(O_RDWR | O_NOCTTY);
  int s;

  if (m < 0)
    return -1;
  if (grantpt(m) != 0 || unlockpt(m) != 0 ||
      (s = open(ptsname(m), O_RDWR | O_NOCTTY)) < 0) {
    close(m);
    return -1;
  }
  *leader = m;
  return s;
}

static void test_log_text_colours_level_on_terminal(void **state) {
  char out[512];
  ssize_t n;
  int m = -1, s;

  (void)state;
  s = open_pty(&m);
  if (s < 0)
    skip();
  unsetenv("NO_COLOR");
  hs_log_init(HS_LOG_TEXT, HS_LOG_INFO, s);
  hs_log(HS_LOG_WARN, "counter", "warning", "careful");
  n = read(m, out, sizeof(out) - 1);
  assert_true(n > 0);
  out[n] = '\0';
  assert_non_null(
      strstr(out, " \x1b[33mwarn\x1b[0m  counter warning: careful"));

  /* NO_COLOR, set and not empty, turns colours off. */
  setenv("NO_COLOR", "1", 1);
  hs_log_init(HS_LOG_TEXT, HS_LOG_INFO, s);
  hs_log(HS_LOG_WARN, "counter", "warning", "careful");
  n = read(m, out, sizeof(out) - 1);
  assert_true(n > 0);
  out[n] = '\0';
  assert_null(strchr(out, '\x1b'));
  assert_non_null(strstr(out, " warn  counter warning: careful"));
  unsetenv("NO_COLOR");

  /* JSON is never coloured. */
  hs_log_init(HS_LOG_JSON, HS_LOG_INFO, s);
  hs_log(HS_LOG_WARN, "counter", "warning", "careful");
  n = read(m, out, sizeof(out) - 1);
  assert_true(n > 0);
  out[n] = '\0';
  assert_null(strchr(out, '\x1b'));
  hs_log_init(HS_LOG_TEXT, HS_LOG_INFO, 2);
  close(s);
  close(m);
}

static void test_log_min_level_filters(void **state) {
  fixture *f = *state;

  hs_log_init(HS_LOG_TEXT, HS_LOG_WARN, f->wr);
  hs_log(HS_LOG_DEBUG, NULL, "x", "debug");
  hs_log(HS_LOG_INFO, NULL, "x", "info");
  assert_null(next_write(f));
  hs_log(HS_LOG_WARN, NULL, "x", "warn");
  assert_line(f, "^" TEXT_TIME " warn  hotswap x: warn\n$");
  hs_log(HS_LOG_ERROR, NULL, "x", "error");
  assert_line(f, "^" TEXT_TIME " error hotswap x: error\n$");

  hs_log_init(HS_LOG_JSON, HS_LOG_ERROR, f->wr);
  hs_log(HS_LOG_WARN, NULL, "x", "warn");
  assert_null(next_write(f));
}

static void test_log_text_replaces_newlines(void **state) {
  fixture *f = *state;

  hs_log_init(HS_LOG_TEXT, HS_LOG_INFO, f->wr);
  hs_log(HS_LOG_INFO, "p", "log", "one\ntwo\r\nthree\n");
  assert_line(f, "^" TEXT_TIME " info  p log: one two  three\n$");
  /* Other control characters cannot reach the terminal either. */
  hs_log(HS_LOG_INFO, "p", "log", "a\x1b[2Jb\tc");
  assert_line(f, "^" TEXT_TIME " info  p log: a\\?\\[2Jb\tc\n$");
}

static void test_log_json_line_shape(void **state) {
  fixture *f = *state;
  char want[512];

  hs_log_init(HS_LOG_JSON, HS_LOG_INFO, f->wr);
  hs_log(HS_LOG_INFO, "counter", "loaded", "version %s", "1.0");
  snprintf(want, sizeof(want),
           "^\\{\"time\":\"" JSON_TIME "\",\"level\":\"info\",\"pid\":%ld,"
           "\"plugin\":\"counter\",\"event\":\"loaded\","
           "\"msg\":\"version 1\\.0\"\\}\n$",
           (long)getpid());
  assert_line(f, want);

  hs_log(HS_LOG_ERROR, NULL, "stopped", "bye");
  snprintf(want, sizeof(want),
           "^\\{\"time\":\"" JSON_TIME "\",\"level\":\"error\",\"pid\":%ld,"
           "\"plugin\":\"hotswap\",\"event\":\"stopped\",\"msg\":\"bye\"\\}\n$",
           (long)getpid());
  assert_line(f, want);
}

static void test_log_json_levels_unpadded(void **state) {
  fixture *f = *state;

  hs_log_init(HS_LOG_JSON, HS_LOG_DEBUG, f->wr);
  hs_log(HS_LOG_DEBUG, NULL, "e", "m");
  assert_line(f, "\"level\":\"debug\",");
  hs_log(HS_LOG_INFO, NULL, "e", "m");
  assert_line(f, "\"level\":\"info\",");
  hs_log(HS_LOG_WARN, NULL, "e", "m");
  assert_line(f, "\"level\":\"warn\",");
  hs_log(HS_LOG_ERROR, NULL, "e", "m");
  assert_line(f, "\"level\":\"error\",");
}

static void test_log_json_escapes(void **state) {
  fixture *f = *state;

  hs_log_init(HS_LOG_JSON, HS_LOG_INFO, f->wr);
  hs_log(HS_LOG_INFO, "we\"ird", "log", "a \"q\" \\ b\nc\td\x01 caf\xc3\xa9\n");
  assert_non_null(next_write(f));
  assert_non_null(strstr(f->line, "\"plugin\":\"we\\\"ird\","));
  assert_non_null(strstr(
      f->line, "\"msg\":\"a \\\"q\\\" \\\\ b\\nc\\td\\u0001 caf\xc3\xa9\"}\n"));
  /* One line: the only raw newline is the last byte. */
  assert_ptr_equal(strchr(f->line, '\n'), f->line + strlen(f->line) - 1);
}

static void test_log_long_message_truncated(void **state) {
  fixture *f = *state;
  char *big = malloc(10000);
  size_t len;

  assert_non_null(big);
  memset(big, 'z', 9999);
  big[9999] = '\0';

  hs_log_init(HS_LOG_TEXT, HS_LOG_INFO, f->wr);
  hs_log(HS_LOG_INFO, NULL, "log", "%s", big);
  assert_non_null(next_write(f));
  len = strlen(f->line);
  assert_true(len <= 4096);
  assert_string_equal(f->line + len - 4, "...\n");
  assert_matches(f->line, "^" TEXT_TIME " info  hotswap log: z+\\.\\.\\.\n$");

  /* In JSON, escapes may not be cut in half and the line stays valid. */
  memset(big, '"', 9999);
  hs_log_init(HS_LOG_JSON, HS_LOG_INFO, f->wr);
  hs_log(HS_LOG_INFO, NULL, "log", "%s", big);
  assert_non_null(next_write(f));
  len = strlen(f->line);
  assert_true(len <= 4096);
  assert_matches(f->line, "\"msg\":\"(\\\\\")+\\.\\.\\.\"\\}\n$");
  free(big);
}

static void test_log_keeps_errno(void **state) {
  fixture *f = *state;

  hs_log_init(HS_LOG_TEXT, HS_LOG_INFO, f->wr);
  errno = ENOSPC;
  hs_log(HS_LOG_INFO, NULL, "e", "m");
  assert_int_equal(errno, ENOSPC);
  /* Even when the write fails. */
  hs_log_init(HS_LOG_TEXT, HS_LOG_INFO, -1);
  errno = ENOSPC;
  hs_log(HS_LOG_INFO, NULL, "e", "m");
  assert_int_equal(errno, ENOSPC);
}

static void test_log_level_parse(void **state) {
  hs_log_level lv = HS_LOG_INFO;

  (void)state;
  assert_int_equal(hs_log_level_parse("debug", &lv), 0);
  assert_int_equal(lv, HS_LOG_DEBUG);
  assert_int_equal(hs_log_level_parse("info", &lv), 0);
  assert_int_equal(lv, HS_LOG_INFO);
  assert_int_equal(hs_log_level_parse("warn", &lv), 0);
  assert_int_equal(lv, HS_LOG_WARN);
  assert_int_equal(hs_log_level_parse("error", &lv), 0);
  assert_int_equal(lv, HS_LOG_ERROR);
  assert_int_equal(hs_log_level_parse("loud", &lv), HS_EINVAL);
  assert_int_equal(hs_log_level_parse("", &lv), HS_EINVAL);
  assert_int_equal(hs_log_level_parse("info ", &lv), HS_EINVAL);
  assert_int_equal(hs_log_level_parse(NULL, &lv), HS_EINVAL);
  assert_int_equal(lv, HS_LOG_ERROR); /* unchanged by failures */
}

static void test_log_format_parse(void **state) {
  hs_log_format fmt = HS_LOG_TEXT;

  (void)state;
  assert_int_equal(hs_log_format_parse("json", &fmt), 0);
  assert_int_equal(fmt, HS_LOG_JSON);
  assert_int_equal(hs_log_format_parse("text", &fmt), 0);
  assert_int_equal(fmt, HS_LOG_TEXT);
  assert_int_equal(hs_log_format_parse("xml", &fmt), HS_EINVAL);
  assert_int_equal(hs_log_format_parse(NULL, &fmt), HS_EINVAL);
  assert_int_equal(fmt, HS_LOG_TEXT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_log_text_line_shape, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_log_text_levels_padded, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_log_text_host_is_hotswap, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_log_text_has_no_colour_off_terminal,
                                      setup, teardown),
      cmocka_unit_test(test_log_text_colours_level_on_terminal),
      cmocka_unit_test_setup_teardown(test_log_min_level_filters, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_log_text_replaces_newlines, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_log_json_line_shape, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_log_json_levels_unpadded, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_log_json_escapes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_log_long_message_truncated, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_log_keeps_errno, setup, teardown),
      cmocka_unit_test(test_log_level_parse),
      cmocka_unit_test(test_log_format_parse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
