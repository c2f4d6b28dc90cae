/* test_status.c - the status report, on a registry built by hand. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "status.h"

#define LOADED_AT 1795564800 /* 2026-11-25T00:00:00Z */

/* ---- a tiny strict JSON checker ------------------------------------- */

static const char *json_value(const char *p);

static const char *json_ws(const char *p) {
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
    p++;
  return p;
}

static const char *json_string(const char *p) {
  if (*p++ != '"')
    return NULL;
  for (;;) {
    unsigned char c = (unsigned char)*p++;
    if (c == '"')
      return p;
    if (c < 0x20)
      return NULL; /* includes the end of the text */
    if (c == '\\') {
      c = (unsigned char)*p++;
      if (c == 'u') {
        for (int i = 0; i < 4; i++, p++)
          if (!strchr("0123456789abcdefABCDEF", *p) || *p == '\0')
            return NULL;
      } else if (!strchr("\"\\/bfnrt", c) || c == '\0') {
        return NULL;
      }
    }
  }
}

static const char *json_number(const char *p) {
  const char *start;

  if (*p == '-')
    p++;
  if (*p == '0')
    p++;
  else if (*p >= '1' && *p <= '9')
    while (*p >= '0' && *p <= '9')
      p++;
  else
    return NULL;
  if (*p == '.') {
    start = ++p;
    while (*p >= '0' && *p <= '9')
      p++;
    if (p == start)
      return NULL;
  }
  return p;
}

static const char *json_object(const char *p) {
  p = json_ws(p + 1);
  if (*p == '}')
    return p + 1;
  for (;;) {
    if (!(p = json_string(json_ws(p))))
      return NULL;
    p = json_ws(p);
    if (*p++ != ':')
      return NULL;
    if (!(p = json_value(p)))
      return NULL;
    p = json_ws(p);
    if (*p == '}')
      return p + 1;
    if (*p++ != ',')
      return NULL;
  }
}

static const char *json_array(const char *p) {
  p = json_ws(p + 1);
  if (*p == ']')
    return p + 1;
  for (;;) {
    if (!(p = json_value(p)))
      return NULL;
    p = json_ws(p);
    if (*p == ']')
      return p + 1;
    if (*p++ != ',')
      return NULL;
  }
}

static const char *json_value(const char *p) {
  p = json_ws(p);
  switch (*p) {
  case '{':
    return json_object(p);
  case '[':
    return json_array(p);
  case '"':
    return json_string(p);
  case 't':
    return strncmp(p, "true", 4) ? NULL : p + 4;
  case 'f':
    return strncmp(p, "false", 5) ? NULL : p + 5;
  case 'n':
    return strncmp(p, "null", 4) ? NULL : p + 4;
  default:
    return json_number(p);
  }
}

/* 1 if text is exactly one JSON object, then optional whitespace. */
static int json_valid_object(const char *text) {
  const char *p = json_ws(text);

  if (*p != '{')
    return 0;
  p = json_value(p);
  return p && *json_ws(p) == '\0';
}

/* ---- the registry ---------------------------------------------------- */

typedef struct fixture {
  hs_registry reg;
  hs_slot *slots[4];
  hs_slot live, rejected, validating, unloaded;
  hs_fdreg fds[2];        /* what "counter" registered */
  hs_timerreg timer;
  char names[4][16];
  char files[4][16];
  char dir[32];
  int fake_sandbox; /* stands for the validation's hs_sandbox */
} fixture;

static void slot_fill(fixture *f, hs_slot *s, int i, const char *name) {
  snprintf(f->names[i], sizeof f->names[i], "%s", name);
  snprintf(f->files[i], sizeof f->files[i], "%s.so", name);
  s->name = f->names[i];
  s->file = f->files[i];
  s->reg = &f->reg;
  f->slots[i] = s;
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  uint64_t now = hs_now_ns();

  assert_non_null(f);
  setenv("TZ", "UTC", 1);
  tzset();

  snprintf(f->dir, sizeof f->dir, "/srv/plugins");
  f->reg.dir = f->dir;
  f->reg.dirfd = -1;
  f->reg.started_at = LOADED_AT - 100;
  /* up 1h02m03.5s, when the clock has run that long */
  f->reg.started_ns = now > 3723500000000ull ? now - 3723500000000ull : 0;

  slot_fill(f, &f->live, 0, "counter");
  f->live.loaded = 1;
  snprintf(f->live.version, sizeof f->live.version, "1.0");
  f->live.state.version = 1;
  f->live.state.size = 16;
  f->live.generation = 2;
  f->live.reloads = 1;
  f->live.loaded_at = LOADED_AT;
  f->live.last.validated_ns = 3100000;
  f->live.last.swapped_ns = 3400000;
  f->live.last.pause_ns = 85000;
  /* Its listening socket and a connection, a timer, ticks. */
  f->fds[0].fd = 7;
  f->fds[0].events = HS_IO_READ;
  f->fds[0].token = 0;
  f->fds[0].next = &f->fds[1];
  f->fds[1].fd = 9;
  f->fds[1].events = HS_IO_READ | HS_IO_WRITE;
  f->fds[1].token = 3;
  snprintf(f->fds[1].name, sizeof(f->fds[1].name), "listen"); /* fd_keep */
  f->live.ctx.fds = &f->fds[0];
  f->timer.id = 1;
  f->timer.repeat_ms = 100;
  f->timer.token = 5;
  f->live.ctx.timers = &f->timer;
  f->live.ctx.tick_ms = 1000;

  slot_fill(f, &f->rejected, 1, "meter");
  hs_error_set(&f->rejected.last_error, HS_EABI, "abi",
               "meter.so was built for ABI 2, this host speaks ABI 2");

  slot_fill(f, &f->validating, 2, "slow");
  f->validating.loaded = 1;
  f->validating.sb = (hs_sandbox *)(void *)&f->fake_sandbox;
  snprintf(f->validating.version, sizeof f->validating.version, "0.9");
  f->validating.state.version = 3;
  f->validating.state.size = 0;
  f->validating.generation = 1;
  f->validating.loaded_at = LOADED_AT + 3661;

  slot_fill(f, &f->unloaded, 3, "gone");

  f->reg.slots = f->slots;
  f->reg.nslots = f->reg.capslots = 4;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  free(*state);
  unsetenv("TZ");
  tzset();
  return 0;
}

static hs_status_host host_of(void) {
  hs_status_host h = {.pid = 4242,
                      .plugin_dir = "/srv/plugins",
                      .cache_dir = "/tmp/hotswap-4242-abc",
                      .control_path = "/run/user/0/hotswap/control.sock"};
  return h;
}

static char *format(fixture *f, const hs_status_host *h, int json) {
  hs_buf b;
  char *s;

  hs_buf_init(&b);
  assert_int_equal(hs_status_format(&b, &f->reg, h, json), 0);
  assert_false(b.oom);
  assert_non_null(b.data);
  s = strdup(b.data);
  hs_buf_free(&b);
  assert_non_null(s);
  return s;
}

/* The block of plugin name in text, up to the next blank line. */
static char *text_block(const char *text, const char *name) {
  char key[64];
  const char *p, *end;
  char *block;

  snprintf(key, sizeof key, "\nname         %s\n", name);
  p = strstr(text, key);
  assert_non_null(p);
  p++;
  end = strstr(p, "\n\n");
  if (!end)
    end = p + strlen(p);
  block = strndup(p, (size_t)(end - p));
  assert_non_null(block);
  return block;
}

/* ---- text ------------------------------------------------------------ */

static void test_status_text_header(void **state) {
  fixture *f = *state;
  hs_status_host h = host_of();
  char *text = format(f, &h, 0);

  assert_non_null(strstr(text, "hotswap " HS_VERSION_STRING " (ABI 3), pid "
                               "4242, up "));
  assert_non_null(strstr(text, ", plugins in /srv/plugins\n"));
  assert_int_equal(strncmp(text, "hotswap ", 8), 0);
  if (f->reg.started_ns)
    assert_non_null(strstr(text, ", up 1h02m03s, "));
  free(text);
}

static void test_status_text_live_plugin_fields(void **state) {
  fixture *f = *state;
  hs_status_host h = host_of();
  char *text = format(f, &h, 0);
  char *b = text_block(text, "counter");

  assert_string_equal(b, "name         counter\n"
                         "status       live\n"
                         "version      1.0\n"
                         "state        v1 (16 bytes)\n"
                         "generation   2\n"
                         "file         counter.so\n"
                         "loaded at    2026-11-25T00:00:00+00:00\n"
                         "reloads      1\n"
                         "last reload  validated 3.1 ms, swapped 3.4 ms, "
                         "pause 85 us\n"
                         "last error   none\n"
                         "crashes      none\n"
                         "fds          7 (read), 9 (read+write, kept as "
                         "counter.listen)\n"
                         "timers       #1 (every 100 ms), ticks every 1000 "
                         "ms");
  free(b);
  free(text);
}

static void test_status_text_rejected_plugin(void **state) {
  fixture *f = *state;
  hs_status_host h = host_of();
  char *text = format(f, &h, 0);
  char *b = text_block(text, "meter");

  assert_non_null(strstr(b, "status       rejected\n"));
  assert_non_null(strstr(b, "version      -\n"));
  assert_non_null(strstr(b, "loaded at    never\n"));
  assert_non_null(strstr(b, "last reload  none\n"));
  assert_non_null(strstr(b, "last error   HS_EABI in stage abi: meter.so was "
                            "built for ABI 2, this host speaks ABI 2"));
  free(b);
  free(text);
}

static void test_status_text_validating_and_unloaded(void **state) {
  fixture *f = *state;
  hs_status_host h = host_of();
  char *text = format(f, &h, 0);
  char *slow = text_block(text, "slow");
  char *gone = text_block(text, "gone");

  assert_non_null(strstr(slow, "status       validating\n"));
  assert_non_null(strstr(slow, "state        v3 (0 bytes)\n"));
  assert_non_null(strstr(slow, "loaded at    2026-11-25T01:01:01+00:00\n"));
  assert_non_null(strstr(gone, "status       unloaded\n"));
  assert_non_null(strstr(gone, "last error   none"));

  /* a loaded slot waiting for a validator is validating too */
  free(text);
  f->live.queued = 1;
  text = format(f, &h, 0);
  free(slow);
  slow = text_block(text, "counter");
  assert_non_null(strstr(slow, "status       validating\n"));
  f->live.queued = 0;

  free(slow);
  free(gone);
  free(text);
}

static void test_status_text_local_time(void **state) {
  fixture *f = *state;
  hs_status_host h = host_of();
  char *text;

  setenv("TZ", "CET-1", 1);
  tzset();
  text = format(f, &h, 0);
  assert_non_null(strstr(text, "loaded at    2026-11-25T01:00:00+01:00\n"));
  free(text);
}

static void test_status_text_no_plugins(void **state) {
  fixture *f = *state;
  hs_status_host h = host_of();
  char *text;

  f->reg.nslots = 0;
  text = format(f, &h, 0);
  assert_non_null(strstr(text, "\nno plugins\n"));
  free(text);
}

/* ---- JSON ------------------------------------------------------------ */

static void test_status_json_exact(void **state) {
  fixture *f = *state;
  hs_status_host h = host_of();
  static const char head[] = "{\"host\":{\"pid\":4242,\"version\":\"0.1.0\","
                             "\"abi\":3,\"uptime_s\":";
  char *json = format(f, &h, 1);
  const char *plugins;

  assert_true(json_valid_object(json));
  assert_int_equal(strncmp(json, head, sizeof head - 1), 0);
  if (f->reg.started_ns)
    assert_non_null(strstr(json, "\"uptime_s\":3723.5"));
  plugins = strstr(json, ",\"plugin_dir\":");
  assert_non_null(plugins);
  assert_string_equal(
      plugins,
      ",\"plugin_dir\":\"/srv/plugins\","
      "\"cache_dir\":\"/tmp/hotswap-4242-abc\","
      "\"control\":\"/run/user/0/hotswap/control.sock\","
      "\"reexecs\":0,\"reexec_at\":0,\"reexec_pause_us\":0,"
      "\"upgrade_error\":null},"
      "\"plugins\":["
      "{\"name\":\"counter\",\"status\":\"live\",\"version\":\"1.0\","
      "\"state_version\":1,\"state_size\":16,\"generation\":2,"
      "\"file\":\"counter.so\",\"loaded_at\":\"2026-11-25T00:00:00Z\","
      "\"reloads\":1,\"last_error\":null,"
      "\"last_reload\":{\"validated_us\":3100,\"swapped_us\":3400,"
      "\"pause_us\":85},\"crashes\":0,\"last_crash\":null,"
      "\"fds\":[{\"fd\":7,\"events\":\"read\",\"token\":0,\"kept\":null},"
      "{\"fd\":9,\"events\":\"read+write\",\"token\":3,"
      "\"kept\":\"counter.listen\"}],"
      "\"timers\":[{\"id\":1,\"repeat_ms\":100,\"token\":5}],"
      "\"tick_ms\":1000},"
      "{\"name\":\"meter\",\"status\":\"rejected\",\"version\":null,"
      "\"state_version\":0,\"state_size\":0,\"generation\":0,"
      "\"file\":\"meter.so\",\"loaded_at\":null,\"reloads\":0,"
      "\"last_error\":{\"code\":\"HS_EABI\",\"stage\":\"abi\","
      "\"message\":\"meter.so was built for ABI 2, this host speaks ABI 2\"},"
      "\"last_reload\":null,\"crashes\":0,\"last_crash\":null,"
      "\"fds\":[],\"timers\":[],\"tick_ms\":0},"
      "{\"name\":\"slow\",\"status\":\"validating\",\"version\":\"0.9\","
      "\"state_version\":3,\"state_size\":0,\"generation\":1,"
      "\"file\":\"slow.so\",\"loaded_at\":\"2026-11-25T01:01:01Z\","
      "\"reloads\":0,\"last_error\":null,\"last_reload\":null,"
      "\"crashes\":0,\"last_crash\":null,"
      "\"fds\":[],\"timers\":[],\"tick_ms\":0},"
      "{\"name\":\"gone\",\"status\":\"unloaded\",\"version\":null,"
      "\"state_version\":0,\"state_size\":0,\"generation\":0,"
      "\"file\":\"gone.so\",\"loaded_at\":null,\"reloads\":0,"
      "\"last_error\":null,\"last_reload\":null,"
      "\"crashes\":0,\"last_crash\":null,"
      "\"fds\":[],\"timers\":[],\"tick_ms\":0}"
      "]}\n");
  free(json);
}

static void test_status_json_utc_whatever_the_zone(void **state) {
  fixture *f = *state;
  hs_status_host h = host_of();
  char *json;

  setenv("TZ", "EST5", 1);
  tzset();
  json = format(f, &h, 1);
  assert_non_null(strstr(json, "\"loaded_at\":\"2026-11-25T00:00:00Z\""));
  free(json);
}

static void test_status_json_escapes(void **state) {
  fixture *f = *state;
  hs_status_host h = host_of();
  char *json;

  h.plugin_dir = "/srv/\"odd\"\\dir\n";
  h.control_path = NULL;
  hs_error_set(&f->rejected.last_error, HS_EDLOPEN, "open",
               "meter.so: \"undefined symbol\"\tfoo\x01");
  snprintf(f->live.version, sizeof f->live.version, "1.0 \"beta\"");
  json = format(f, &h, 1);

  assert_true(json_valid_object(json));
  assert_non_null(
      strstr(json, "\"plugin_dir\":\"/srv/\\\"odd\\\"\\\\dir\\n\""));
  assert_non_null(strstr(json, "\"control\":null,"));
  assert_non_null(strstr(json, "\"version\":\"1.0 \\\"beta\\\"\""));
  assert_non_null(strstr(json, "{\"code\":\"HS_EDLOPEN\",\"stage\":\"open\","
                               "\"message\":\"meter.so: \\\"undefined "
                               "symbol\\\"\\tfoo\\u0001\"}"));
  free(json);
}

static void test_status_json_no_plugins(void **state) {
  fixture *f = *state;
  hs_status_host h = host_of();
  char *json;

  f->reg.nslots = 0;
  json = format(f, &h, 1);
  assert_true(json_valid_object(json));
  assert_non_null(strstr(json, "},\"plugins\":[]}\n"));
  free(json);
}

static void test_status_json_checker_rejects_broken(void **state) {
  (void)state;
  /* the checker itself must not be too lenient */
  assert_true(json_valid_object("{\"a\":[1,2.5,null,\"x\\n\"]}"));
  assert_false(json_valid_object("{\"a\":1"));
  assert_false(json_valid_object("{\"a\":\"x\ny\"}"));
  assert_false(json_valid_object("{\"a\":\"\\q\"}"));
  assert_false(json_valid_object("{\"a\":1,}"));
  assert_false(json_valid_object("{\"a\":1}}"));
}

/* A plugin quarantined after a crash: its status word, the count and the
 * last crash, in text and JSON. */
static void test_status_quarantined_after_crash(void **state) {
  fixture *f = *state;
  hs_status_host h = host_of();
  hs_crash *c = &f->unloaded.crash;

  c->quarantined = 1;
  c->count = 2;
  c->last.signo = SIGSEGV;
  c->last.code = 1;
  c->last.addr = 0x10;
  c->last.callback = "tick";
  snprintf(c->last_version, sizeof c->last_version, "2.0");
  snprintf(c->last_what, sizeof c->last_what,
           "SIGSEGV (bad access to address 0x10) at gone.so+0x1139");
  snprintf(c->last_where, sizeof c->last_where, "gone.so+0x1139");
  c->last_action = "quarantine";
  snprintf(c->last_detail, sizeof c->last_detail, "quarantined");
  c->last_at = LOADED_AT;
  char *text = format(f, &h, 0);
  char *b = text_block(text, "gone");
  assert_non_null(strstr(b, "status       quarantined\n"));
  assert_non_null(strstr(b, "crashes      2; the last at "
                            "2026-11-25T00:00:00+00:00: tick() of version "
                            "2.0: SIGSEGV (bad access to address 0x10) at "
                            "gone.so+0x1139; quarantined\n"));
  free(b);
  free(text);
  char *json = format(f, &h, 1);
  assert_non_null(json_value(json));
  assert_non_null(strstr(
      json, "\"status\":\"quarantined\""));
  assert_non_null(strstr(
      json, "\"crashes\":2,\"last_crash\":{\"callback\":\"tick\","
            "\"version\":\"2.0\",\"signal\":\"SIGSEGV\",\"code\":1,"
            "\"address\":\"0x10\",\"where\":\"gone.so+0x1139\","
            "\"fault\":\"SIGSEGV (bad access to address 0x10) at "
            "gone.so+0x1139\",\"action\":\"quarantine\","
            "\"detail\":\"quarantined\",\"at\":\"2026-11-25T00:00:00Z\"}"));
  free(json);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_status_text_header, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_status_text_live_plugin_fields,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_status_text_rejected_plugin, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_status_text_validating_and_unloaded,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_status_text_local_time, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_status_text_no_plugins, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_status_json_exact, setup, teardown),
      cmocka_unit_test_setup_teardown(test_status_json_utc_whatever_the_zone,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_status_json_escapes, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_status_json_no_plugins, setup,
                                      teardown),
      cmocka_unit_test(test_status_json_checker_rejects_broken),
      cmocka_unit_test_setup_teardown(test_status_quarantined_after_crash,
                                      setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
