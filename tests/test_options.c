/* test_options.c - the command line: defaults, options, commands, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "options.h"
#include "scaffold.h"

/* Parses the NULL-terminated argument list after "hotswap". */
#define PARSE(o, err, ...)                                                     \
  parse_list((o), (err), (const char *[]){"hotswap", __VA_ARGS__, NULL})

static int parse_list(hs_options *o, hs_error *err, const char **args) {
  int argc = 0;

  while (args[argc] != NULL)
    argc++;
  /* getopt_long takes char **; in the order parse uses it never writes. */
  return hs_options_parse(o, argc, (char **)args, err);
}

/* Asserts that parsing fails with exactly msg. */
#define ASSERT_FAILS(want, ...)                                                \
  do {                                                                         \
    hs_options o_;                                                             \
    hs_error e_;                                                               \
    assert_int_equal(PARSE(&o_, &e_, __VA_ARGS__), HS_EINVAL);                 \
    assert_int_equal(e_.code, HS_EINVAL);                                      \
    assert_string_equal(e_.msg, (want));                                       \
  } while (0)

static void assert_defaults(const hs_options *o) {
  assert_null(o->control_path);
  assert_null(o->cache_parent);
  assert_int_equal(o->json, 0);
  assert_int_equal(o->allow_state_reset, 0);
  assert_int_equal(o->log_format, HS_LOG_TEXT);
  assert_int_equal(o->log_level, HS_LOG_INFO);
  assert_int_equal(o->settle_ms, 50);
  assert_int_equal(o->sandbox_timeout_ms, 5000);
  assert_int_equal(o->sandbox_cpu_s, 10);
  assert_int_equal(o->sandbox_mem_mb, 4096);
}

static void test_options_run_defaults(void **state) {
  hs_options o;
  hs_error e;

  (void)state;
  assert_int_equal(PARSE(&o, &e, "plugins/"), 0);
  assert_int_equal(o.command, HS_CMD_RUN);
  assert_string_equal(o.plugin_dir, "plugins/");
  assert_null(o.reload_name);
  assert_defaults(&o);
  assert_int_equal(e.code, 0);
  assert_string_equal(e.msg, "");
}

static void test_options_run_every_option(void **state) {
  hs_options o;
  hs_error e;

  (void)state;
  assert_int_equal(PARSE(&o, &e, "--control", "/run/h.sock", "--cache-dir",
                         "/var/tmp", "--allow-state-reset", "--log-format",
                         "json", "--log-level", "debug", "--settle", "0",
                         "--sandbox-timeout", "250", "--sandbox-cpu", "3",
                         "--sandbox-mem", "0", "dir"),
                   0);
  assert_int_equal(o.command, HS_CMD_RUN);
  assert_string_equal(o.plugin_dir, "dir");
  assert_string_equal(o.control_path, "/run/h.sock");
  assert_string_equal(o.cache_parent, "/var/tmp");
  assert_int_equal(o.allow_state_reset, 1);
  assert_int_equal(o.log_format, HS_LOG_JSON);
  assert_int_equal(o.log_level, HS_LOG_DEBUG);
  assert_int_equal(o.settle_ms, 0);
  assert_int_equal(o.sandbox_timeout_ms, 250);
  assert_int_equal(o.sandbox_cpu_s, 3);
  assert_int_equal(o.sandbox_mem_mb, 0);
}

static void test_options_run_equals_form_and_any_order(void **state) {
  hs_options o;
  hs_error e;

  (void)state;
  assert_int_equal(PARSE(&o, &e, "dir", "--settle=200", "--log-level=warn",
                         "--log-format", "text"),
                   0);
  assert_string_equal(o.plugin_dir, "dir");
  assert_int_equal(o.settle_ms, 200);
  assert_int_equal(o.log_level, HS_LOG_WARN);
  assert_int_equal(o.log_format, HS_LOG_TEXT);
}

static void test_options_run_last_value_wins(void **state) {
  hs_options o;
  hs_error e;

  (void)state;
  assert_int_equal(PARSE(&o, &e, "--settle", "1", "--settle", "2", "d"), 0);
  assert_int_equal(o.settle_ms, 2);
}

static void test_options_run_abbreviation(void **state) {
  hs_options o;
  hs_error e;

  (void)state;
  assert_int_equal(PARSE(&o, &e, "--sett", "7", "--allow-s", "d"), 0);
  assert_int_equal(o.settle_ms, 7);
  assert_int_equal(o.allow_state_reset, 1);
  assert_int_equal(o.allow_insecure, 0);
  assert_int_equal(PARSE(&o, &e, "--allow-i", "d"), 0);
  assert_int_equal(o.allow_insecure, 1);
  assert_int_equal(PARSE(&o, &e, "--allow", "d"), HS_EINVAL);
  assert_string_equal(e.msg, "ambiguous option '--allow' (could be "
                             "--allow-state-reset, --allow-insecure)");
}

static void test_options_run_limits(void **state) {
  hs_options o;
  hs_error e;

  (void)state;
  assert_int_equal(PARSE(&o, &e, "--settle", "60000", "--sandbox-timeout",
                         "1", "--sandbox-cpu", "86400", "--sandbox-mem",
                         "1048576", "d"),
                   0);
  assert_int_equal(o.settle_ms, 60000);
  assert_int_equal(o.sandbox_timeout_ms, 1);
  assert_int_equal(o.sandbox_cpu_s, 86400);
  assert_int_equal(o.sandbox_mem_mb, 1048576);
  assert_int_equal(PARSE(&o, &e, "--sandbox-timeout", "3600000", "d"), 0);
  assert_int_equal(o.sandbox_timeout_ms, 3600000);
}

static void test_options_run_dash_dash_ends_options(void **state) {
  hs_options o;
  hs_error e;

  (void)state;
  assert_int_equal(PARSE(&o, &e, "--settle", "5", "--", "-odd-dir"), 0);
  assert_string_equal(o.plugin_dir, "-odd-dir");
  assert_int_equal(o.settle_ms, 5);
}

static void test_options_run_dir_named_like_command(void **state) {
  hs_options o;
  hs_error e;

  (void)state;
  assert_int_equal(PARSE(&o, &e, "./status"), 0);
  assert_int_equal(o.command, HS_CMD_RUN);
  assert_string_equal(o.plugin_dir, "./status");
  /* Only argv[1] is a command. */
  assert_int_equal(PARSE(&o, &e, "--settle", "5", "reload"), 0);
  assert_int_equal(o.command, HS_CMD_RUN);
  assert_string_equal(o.plugin_dir, "reload");
}

static void test_options_status(void **state) {
  hs_options o;
  hs_error e;

  (void)state;
  assert_int_equal(PARSE(&o, &e, "status"), 0);
  assert_int_equal(o.command, HS_CMD_STATUS);
  assert_int_equal(o.json, 0);
  assert_null(o.control_path);
  assert_null(o.plugin_dir);
  assert_defaults(&o);
  assert_int_equal(PARSE(&o, &e, "status", "--json", "--control", "/s"), 0);
  assert_int_equal(o.command, HS_CMD_STATUS);
  assert_int_equal(o.json, 1);
  assert_string_equal(o.control_path, "/s");
}

static void test_options_reload(void **state) {
  hs_options o;
  hs_error e;

  (void)state;
  assert_int_equal(PARSE(&o, &e, "reload", "counter"), 0);
  assert_int_equal(o.command, HS_CMD_RELOAD);
  assert_string_equal(o.reload_name, "counter");
  assert_null(o.control_path);
  assert_int_equal(PARSE(&o, &e, "reload", "counter", "--control", "/s"), 0);
  assert_string_equal(o.reload_name, "counter");
  assert_string_equal(o.control_path, "/s");
  assert_int_equal(PARSE(&o, &e, "reload", "--control=/t", "meter"), 0);
  assert_string_equal(o.reload_name, "meter");
  assert_string_equal(o.control_path, "/t");
}

static void test_options_new(void **state) {
  hs_options o;
  hs_error e;

  (void)state;
  assert_int_equal(PARSE(&o, &e, "new", "demo"), 0);
  assert_int_equal(o.command, HS_CMD_NEW);
  assert_string_equal(o.new_name, "demo");
  assert_string_equal(o.new_dir, ".");
  assert_null(o.plugin_dir);
  assert_defaults(&o);
  assert_int_equal(PARSE(&o, &e, "new", "my_plugin2", "--dir", "/tmp/p"), 0);
  assert_string_equal(o.new_name, "my_plugin2");
  assert_string_equal(o.new_dir, "/tmp/p");
  assert_int_equal(PARSE(&o, &e, "new", "--dir=src", "x"), 0);
  assert_string_equal(o.new_name, "x");
  assert_string_equal(o.new_dir, "src");
  /* A directory named "new" is given as ./new. */
  assert_int_equal(PARSE(&o, &e, "./new"), 0);
  assert_int_equal(o.command, HS_CMD_RUN);
  assert_string_equal(o.plugin_dir, "./new");
  assert_int_equal(PARSE(&o, &e, "new", "--help"), 0);
  assert_int_equal(o.command, HS_CMD_HELP);
}

static void test_options_new_errors(void **state) {
  (void)state;
  ASSERT_FAILS("new needs a plugin NAME", "new");
  ASSERT_FAILS("new needs a plugin NAME", "new", "--dir", "d");
  ASSERT_FAILS("new needs a plugin NAME", "new", "");
  ASSERT_FAILS("unexpected argument 'b'", "new", "a", "b");
  ASSERT_FAILS("--dir: the path is empty", "new", "a", "--dir=");
  ASSERT_FAILS("option '--dir' needs a value", "new", "a", "--dir");
  ASSERT_FAILS("new: 'My' is not a plugin NAME: use lower-case letters, "
               "digits and '_', starting with a letter (e.g. 'my_plugin')",
               "new", "My");
  ASSERT_FAILS("new: '2x' is not a plugin NAME: use lower-case letters, "
               "digits and '_', starting with a letter (e.g. 'my_plugin')",
               "new", "2x");
  ASSERT_FAILS("new: '_x' is not a plugin NAME: use lower-case letters, "
               "digits and '_', starting with a letter (e.g. 'my_plugin')",
               "new", "_x");
  ASSERT_FAILS("new: 'a-b' is not a plugin NAME: use lower-case letters, "
               "digits and '_', starting with a letter (e.g. 'my_plugin')",
               "new", "a-b");
  ASSERT_FAILS("new: 'dir/x' is not a plugin NAME: use lower-case letters, "
               "digits and '_', starting with a letter (e.g. 'my_plugin')",
               "new", "dir/x");
  ASSERT_FAILS("new: 'hs_x' is not a plugin NAME: names 'hs' and 'hs_...' "
               "belong to hotswap.h",
               "new", "hs_x");
  ASSERT_FAILS("new: 'aaaaaaaaaaaaaaaaaaaa...' is too long for a plugin NAME "
               "(at most 64 characters)",
               "new",
               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
               "aaa");
  ASSERT_FAILS("option '--dir' is only for 'hotswap new'", "--dir", "d",
               "plugins");
  ASSERT_FAILS("option '--dir' is only for 'hotswap new'", "status", "--dir",
               "d");
  ASSERT_FAILS("option '--control' does not apply to 'hotswap new'", "new",
               "x", "--control", "/s");
  ASSERT_FAILS("option '--settle' does not apply to 'hotswap new'", "new",
               "x", "--settle", "5");
  ASSERT_FAILS("option '--json' is only for 'hotswap status'", "new", "x",
               "--json");
}

static void test_options_new_name_length(void **state) {
  hs_options o;
  hs_error e;
  char name[HS_SCAFFOLD_NAME_MAX + 1];

  (void)state;
  memset(name, 'a', HS_SCAFFOLD_NAME_MAX);
  name[HS_SCAFFOLD_NAME_MAX] = '\0';
  assert_int_equal(PARSE(&o, &e, "new", name), 0);
  assert_string_equal(o.new_name, name);
}

static void test_options_version_and_help(void **state) {
  hs_options o;
  hs_error e;

  (void)state;
  assert_int_equal(PARSE(&o, &e, "--version"), 0);
  assert_int_equal(o.command, HS_CMD_VERSION);
  assert_int_equal(PARSE(&o, &e, "--help"), 0);
  assert_int_equal(o.command, HS_CMD_HELP);
  assert_int_equal(PARSE(&o, &e, "-h"), 0);
  assert_int_equal(o.command, HS_CMD_HELP);
  /* They win over what follows, even over mistakes. */
  assert_int_equal(PARSE(&o, &e, "dir", "--help", "--bogus"), 0);
  assert_int_equal(o.command, HS_CMD_HELP);
  assert_int_equal(PARSE(&o, &e, "status", "--help"), 0);
  assert_int_equal(o.command, HS_CMD_HELP);
  assert_int_equal(PARSE(&o, &e, "reload", "-h"), 0);
  assert_int_equal(o.command, HS_CMD_HELP);
}

static void test_options_missing_operands(void **state) {
  (void)state;
  ASSERT_FAILS("missing PLUGIN_DIR", "--settle", "5");
  ASSERT_FAILS("PLUGIN_DIR is empty", "");
  ASSERT_FAILS("reload needs a plugin NAME", "reload");
  ASSERT_FAILS("reload needs a plugin NAME", "reload", "--control", "/s");
  ASSERT_FAILS("reload needs a plugin NAME", "reload", "");
}

static void test_options_missing_plugin_dir_alone(void **state) {
  hs_options o;
  hs_error e;

  (void)state;
  assert_int_equal(parse_list(&o, &e, (const char *[]){"hotswap", NULL}),
                   HS_EINVAL);
  assert_string_equal(e.msg, "missing PLUGIN_DIR");
}

static void test_options_unexpected_arguments(void **state) {
  (void)state;
  ASSERT_FAILS("unexpected argument 'x'", "dir", "x");
  ASSERT_FAILS("unexpected argument 'x'", "status", "x");
  ASSERT_FAILS("unexpected argument 'meter'", "reload", "counter", "meter");
  ASSERT_FAILS("unexpected argument '-x'", "dir", "--", "-x");
  ASSERT_FAILS("reload: 'plugins/counter.so' is not a plugin NAME (the file "
               "name without directory and '.so', e.g. 'counter')",
               "reload", "plugins/counter.so");
}

static void test_options_unknown_options(void **state) {
  (void)state;
  ASSERT_FAILS("unknown option '--foo'", "--foo", "dir");
  ASSERT_FAILS("unknown option '--foo'", "dir", "--foo=1");
  ASSERT_FAILS("unknown option '-x'", "-x", "dir");
  ASSERT_FAILS("unknown option '--bar'", "status", "--bar");
  ASSERT_FAILS("ambiguous option '--sandbox' (could be --sandbox-timeout, "
               "--sandbox-cpu, --sandbox-mem)",
               "--sandbox", "1", "dir");
}

static void test_options_value_errors(void **state) {
  (void)state;
  ASSERT_FAILS("option '--settle' needs a value", "dir", "--settle");
  ASSERT_FAILS("option '--control' needs a value", "status", "--control");
  ASSERT_FAILS("option '--allow-state-reset' takes no value",
               "--allow-state-reset=yes", "dir");
  ASSERT_FAILS("option '--json' takes no value", "status", "--json=1");
  ASSERT_FAILS("--control: the path is empty", "--control", "", "dir");
  ASSERT_FAILS("--cache-dir: the path is empty", "--cache-dir=", "dir");
  ASSERT_FAILS("--log-format: 'xml' is not one of text, json",
               "--log-format", "xml", "dir");
  ASSERT_FAILS("--log-level: 'loud' is not one of debug, info, warn, error",
               "--log-level", "loud", "dir");
}

static void test_options_number_errors(void **state) {
  (void)state;
  ASSERT_FAILS("--settle: 'abc' is not a number of milliseconds", "--settle",
               "abc", "dir");
  ASSERT_FAILS("--settle: '' is not a number of milliseconds", "--settle=",
               "dir");
  ASSERT_FAILS("--settle: '10ms' is not a number of milliseconds",
               "--settle", "10ms", "dir");
  ASSERT_FAILS("--settle: '-1' is not a number of milliseconds", "--settle",
               "-1", "dir");
  ASSERT_FAILS("--settle: '+1' is not a number of milliseconds", "--settle",
               "+1", "dir");
  ASSERT_FAILS("--settle: ' 1' is not a number of milliseconds", "--settle",
               " 1", "dir");
  ASSERT_FAILS("--settle: '0x10' is not a number of milliseconds",
               "--settle", "0x10", "dir");
  ASSERT_FAILS("--settle: '60001' is out of range (0 to 60000 milliseconds)",
               "--settle", "60001", "dir");
  ASSERT_FAILS("--settle: '99999999999999999999999' is out of range (0 to "
               "60000 milliseconds)",
               "--settle", "99999999999999999999999", "dir");
  ASSERT_FAILS("--sandbox-timeout: '0' is out of range (1 to 3600000 "
               "milliseconds)",
               "--sandbox-timeout", "0", "dir");
  ASSERT_FAILS("--sandbox-timeout: '1.5' is not a number of milliseconds",
               "--sandbox-timeout", "1.5", "dir");
  ASSERT_FAILS("--sandbox-cpu: '0' is out of range (1 to 86400 seconds)",
               "--sandbox-cpu", "0", "dir");
  ASSERT_FAILS("--sandbox-cpu: 'ten' is not a number of seconds",
               "--sandbox-cpu", "ten", "dir");
  ASSERT_FAILS("--sandbox-mem: '4096MB' is not a number of megabytes",
               "--sandbox-mem", "4096MB", "dir");
  ASSERT_FAILS("--sandbox-mem: '4294967296' is out of range (0 to 1048576 "
               "megabytes)",
               "--sandbox-mem", "4294967296", "dir");
}

static void test_options_wrong_command(void **state) {
  (void)state;
  ASSERT_FAILS("option '--json' is only for 'hotswap status'", "--json",
               "dir");
  ASSERT_FAILS("option '--json' is only for 'hotswap status'", "reload",
               "counter", "--json");
  ASSERT_FAILS("option '--settle' does not apply to 'hotswap status'",
               "status", "--settle", "5");
  ASSERT_FAILS("option '--log-level' does not apply to 'hotswap reload'",
               "reload", "counter", "--log-level", "debug");
}

static void test_options_reparse_after_errors(void **state) {
  hs_options o;
  hs_error e;
  int i;

  (void)state;
  /* getopt's state is reset on every call: a parse stopped half-way, even
   * inside a cluster of short options, leaves nothing behind. */
  for (i = 0; i < 50; i++) {
    assert_int_equal(PARSE(&o, &e, "-xh", "dir"), HS_EINVAL);
    assert_string_equal(e.msg, "unknown option '-x'");
    assert_int_equal(PARSE(&o, &e, "--settle", "bad", "--settle", "1", "d"),
                     HS_EINVAL);
    assert_int_equal(PARSE(&o, &e, "reload", "c", "--control", "/s"), 0);
    assert_string_equal(o.reload_name, "c");
    assert_int_equal(PARSE(&o, &e, "d"), 0);
    assert_string_equal(o.plugin_dir, "d");
    assert_null(o.control_path);
    assert_int_equal(e.code, 0);
  }
}

static void test_options_usage_lists_everything(void **state) {
  static const char *const wanted[] = {
      "hotswap [OPTIONS] PLUGIN_DIR", "hotswap status", "hotswap reload NAME",
      "--version", "--help", "-h", "--control PATH", "--cache-dir DIR",
      "--allow-state-reset", "--log-format FORMAT", "--log-level LEVEL",
      "--settle MS", "--sandbox-timeout MS", "--sandbox-cpu S",
      "--sandbox-mem MB", "--json", "(default: 50)", "(default: 5000)",
      "(default: 10)", "(default: 4096)", "(default: text)",
      "(default: info)", "./status", "NO_COLOR", "hotswap new NAME",
      "--dir DIR", "(default: .)",
  };
  char *text = NULL;
  size_t size = 0, i;
  FILE *f;

  (void)state;
  f = open_memstream(&text, &size);
  assert_non_null(f);
  hs_options_usage(f);
  fclose(f);
  for (i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++)
    if (strstr(text, wanted[i]) == NULL)
      fail_msg("usage does not mention '%s'", wanted[i]);
  /* No line wider than 80 columns, so the man page can take it as it is. */
  for (char *line = text; *line != '\0';) {
    size_t n = strcspn(line, "\n");
    if (n > 79)
      fail_msg("usage line too long: '%.*s'", (int)n, line);
    line += n + (line[n] == '\n');
  }
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_options_run_defaults),
      cmocka_unit_test(test_options_run_every_option),
      cmocka_unit_test(test_options_run_equals_form_and_any_order),
      cmocka_unit_test(test_options_run_last_value_wins),
      cmocka_unit_test(test_options_run_abbreviation),
      cmocka_unit_test(test_options_run_limits),
      cmocka_unit_test(test_options_run_dash_dash_ends_options),
      cmocka_unit_test(test_options_run_dir_named_like_command),
      cmocka_unit_test(test_options_status),
      cmocka_unit_test(test_options_reload),
      cmocka_unit_test(test_options_new),
      cmocka_unit_test(test_options_new_errors),
      cmocka_unit_test(test_options_new_name_length),
      cmocka_unit_test(test_options_version_and_help),
      cmocka_unit_test(test_options_missing_operands),
      cmocka_unit_test(test_options_missing_plugin_dir_alone),
      cmocka_unit_test(test_options_unexpected_arguments),
      cmocka_unit_test(test_options_unknown_options),
      cmocka_unit_test(test_options_value_errors),
      cmocka_unit_test(test_options_number_errors),
      cmocka_unit_test(test_options_wrong_command),
      cmocka_unit_test(test_options_reparse_after_errors),
      cmocka_unit_test(test_options_usage_lists_everything),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
