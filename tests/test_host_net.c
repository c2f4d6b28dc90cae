/*
 * test_host_net.c - the shipped server examples, plugins/echo.c and
 * plugins/http.c, in the real host on a temporary plugin directory and
 * through real sockets on 127.0.0.1: replies carry the version; a
 * connection, a half-sent line or request and the counter survive a reload
 * (the copied source edited and saved, the host recompiles it); malformed
 * requests get a 400 and the server goes on; a changed NAME.conf moves the
 * listener.
 *
 * Every copy gets a NAME.conf with "port = 0", so tests never collide; the
 * port actually bound is read from the plugin's "listening on" log line.
 * Every socket wait is bounded by a receive timeout.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "harness.h"
#include "hotswap.h"

#define SOURCE_DIR HS_TEST_SOURCE_DIR "/plugins/"

/* ---- helpers ----------------------------------------------------------- */

/* plugins/NAME.c with its version macro ("#define ECHO_VERSION \"1.0\"")
 * set to version, put into the plugin directory as NAME.c. */
static void install_source(harness *h, const char *name, const char *macro,
                           const char *version) {
  char path[PATH_MAX], from[128], to[128], file[64];
  snprintf(path, sizeof(path), SOURCE_DIR "%s.c", name);
  FILE *f = fopen(path, "re");
  assert_non_null(f);
  static char text[131072];
  size_t n = fread(text, 1, sizeof(text) - 1, f);
  fclose(f);
  assert_true(n > 0 && n < sizeof(text) - 1);
  text[n] = '\0';
  snprintf(from, sizeof(from), "#define %s \"1.0\"\n", macro);
  snprintf(to, sizeof(to), "#define %s \"%s\"\n", macro, version);
  assert_int_equal(strlen(from), strlen(to)); /* edited in place */
  char *at = strstr(text, from);
  assert_non_null(at);
  memcpy(at, to, strlen(to));
  snprintf(file, sizeof(file), "%s.c", name);
  assert_int_equal(harness_install_text(h, text, file, HARNESS_RENAME), 0);
}

/* Waits for "NAME log: listening on 127.0.0.1:PORT" and returns PORT. */
static int expect_port(harness *h, const char *name) {
  char needle[128], line[1024];
  snprintf(needle, sizeof(needle), "%s log: listening on 127.0.0.1:", name);
  assert_true(harness_wait(h, needle, line, sizeof(line)) >= 0);
  const char *colon = strrchr(line, ':');
  assert_non_null(colon);
  int port = atoi(colon + 1);
  assert_true(port > 0 && port < 65536);
  return port;
}

/* NAME.c version 1.0 with "port = 0", the host started, the port. */
static int start_server(harness *h, const char *name, const char *macro) {
  char conf[64];
  snprintf(conf, sizeof(conf), "%s.conf", name);
  assert_int_equal(harness_install_text(h, "port = 0\n", conf,
                                        HARNESS_WRITE_NEW),
                   0);
  install_source(h, name, macro, "1.0");
  assert_int_equal(harness_start(h, NULL), 0);
  int port = expect_port(h, name);
  char want[128];
  snprintf(want, sizeof(want), "%s loaded: version 1.0", name);
  harness_expect_line(h, want);
  return port;
}

/* The source saved again as version, and its reload seen (the new
 * version's load() line comes first, then the host's). */
static void reload_as(harness *h, const char *name, const char *macro,
                      const char *version) {
  char want[128];
  install_source(h, name, macro, version);
  snprintf(want, sizeof(want), "%s log: version %s: serving 127.0.0.1:", name,
           version);
  harness_expect_line(h, want);
  snprintf(want, sizeof(want), "%s reloaded: version %s,", name, version);
  harness_expect_line(h, want);
}

/* A blocking connection to 127.0.0.1:port whose reads give up after the
 * harness's timeout. */
static int connect_to(int port) {
  struct sockaddr_in sa;
  struct timeval tv = {HARNESS_TIMEOUT_MS / 1000, 0};
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)),
                   0);
  assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)),
                   0);
  assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  return fd;
}

static void send_all(int fd, const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
      return; /* the server closed early: what it said is still readable */
    assert_true(n > 0);
    p += n;
    len -= (size_t)n;
  }
}

static void send_text(int fd, const char *text) {
  send_all(fd, text, strlen(text));
}

/* Reads into buf (size) until it holds needle, the peer closes (needle
 * NULL: until then) or the read times out. Returns the length read,
 * NUL-terminated. */
static size_t recv_until(int fd, char *buf, size_t size, const char *needle) {
  size_t len = 0;
  buf[0] = '\0';
  while (len + 1 < size && !(needle && strstr(buf, needle))) {
    ssize_t n = recv(fd, buf + len, size - 1 - len, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    len += (size_t)n;
    buf[len] = '\0';
  }
  return len;
}

/* Reads one whole HTTP response (head and Content-Length body) into buf. */
static void recv_response(int fd, char *buf, size_t size) {
  size_t len = recv_until(fd, buf, size, "\r\n\r\n");
  char *end = strstr(buf, "\r\n\r\n");
  assert_non_null(end);
  const char *cl = strcasestr(buf, "\r\nContent-Length:");
  assert_non_null(cl);
  size_t want = (size_t)(end + 4 - buf) + (size_t)atol(cl + 17);
  assert_true(want < size);
  while (len < want) {
    ssize_t n = recv(fd, buf + len, want - len, 0);
    if (n < 0 && errno == EINTR)
      continue;
    assert_true(n > 0);
    len += (size_t)n;
  }
  buf[len] = '\0';
}

/* GET / on fd; the response into buf. */
static void get(int fd, char *buf, size_t size) {
  send_text(fd, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  recv_response(fd, buf, size);
}

/* A port that was free a moment ago. */
static int free_port(void) {
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  close(fd);
  return ntohs(sa.sin_port);
}

static void stop_clean(harness *h) {
  assert_int_equal(harness_stop(h), 0);
  harness_expect_line(h, "hotswap stopped: clean exit");
}

/* ---- echo -------------------------------------------------------------- */

static void test_host_net_echo_replies_with_version(void **state) {
  harness *h = *state;
  char buf[4096];

  int port = start_server(h, "echo", "ECHO_VERSION");
  int fd = connect_to(port);
  send_text(fd, "abc\nde\r\n");
  recv_until(fd, buf, sizeof(buf), "1.0: de\n");
  assert_string_equal(buf, "1.0: abc\n1.0: de\n");
  close(fd);
  stop_clean(h);
}

static void test_host_net_echo_keeps_connection_and_half_line(void **state) {
  harness *h = *state;
  char buf[4096];

  int port = start_server(h, "echo", "ECHO_VERSION");
  int fd = connect_to(port);
  send_text(fd, "one\n");
  recv_until(fd, buf, sizeof(buf), "\n");
  assert_string_equal(buf, "1.0: one\n");
  /* Half a line before the reload, the rest after it: one connection. */
  send_text(fd, "ab");
  reload_as(h, "echo", "ECHO_VERSION", "2.0");
  send_text(fd, "c\n");
  recv_until(fd, buf, sizeof(buf), "\n");
  assert_string_equal(buf, "2.0: abc\n");
  send_text(fd, "two\n");
  recv_until(fd, buf, sizeof(buf), "\n");
  assert_string_equal(buf, "2.0: two\n");
  close(fd);
  stop_clean(h);
}

static void test_host_net_echo_line_too_long_closes(void **state) {
  harness *h = *state;
  char line[3000], buf[4096];

  int port = start_server(h, "echo", "ECHO_VERSION");
  int fd = connect_to(port);
  memset(line, 'x', sizeof(line) - 1);
  line[sizeof(line) - 1] = '\n';
  send_all(fd, line, sizeof(line));
  recv_until(fd, buf, sizeof(buf), NULL); /* to the close */
  assert_string_equal(buf, "1.0: error: line too long\n");
  close(fd);
  fd = connect_to(port);
  send_text(fd, "still here\n");
  recv_until(fd, buf, sizeof(buf), "\n");
  assert_string_equal(buf, "1.0: still here\n");
  close(fd);
  stop_clean(h);
}

/* ---- http -------------------------------------------------------------- */

static void test_host_net_http_get_and_keep_alive(void **state) {
  harness *h = *state;
  char buf[4096], json[16384];

  int port = start_server(h, "http", "HTTP_VERSION");
  /* Its listener has the name it keeps in systemd's fd store, shown also
   * without systemd. */
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  assert_true(harness_contains(json, "\"kept\":\"http.listen\"}"));
  int fd = connect_to(port);
  get(fd, buf, sizeof(buf));
  assert_true(harness_contains(buf, "HTTP/1.1 200 OK\r\n"));
  assert_true(harness_contains(buf, "hello from http 1.0, request 1<"));
  assert_true(harness_contains(buf, "Connection: keep-alive\r\n"));
  /* The same connection, again. */
  get(fd, buf, sizeof(buf));
  assert_true(harness_contains(buf, "hello from http 1.0, request 2<"));
  /* Two pipelined requests, the second asking to close. */
  send_text(fd, "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n"
                "Connection: close\r\n\r\n");
  /* Both responses, then the close (they may come in one read). */
  recv_until(fd, buf, sizeof(buf), NULL);
  char *second = strstr(buf, "request 3<");
  assert_non_null(second);
  assert_true(harness_contains(second, "HTTP/1.1 200 OK\r\n"));
  assert_true(harness_contains(second, "Connection: close\r\n"));
  assert_true(harness_contains(second, "request 4<"));
  close(fd);
  stop_clean(h);
}

static void test_host_net_http_counter_survives_reload(void **state) {
  harness *h = *state;
  char buf[4096];

  int port = start_server(h, "http", "HTTP_VERSION");
  int fd = connect_to(port);
  get(fd, buf, sizeof(buf));
  assert_true(harness_contains(buf, "hello from http 1.0, request 1<"));
  /* Half a request before the reload, the rest after it. */
  send_text(fd, "GET / HT");
  reload_as(h, "http", "HTTP_VERSION", "2.0");
  send_text(fd, "TP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  recv_response(fd, buf, sizeof(buf));
  assert_true(harness_contains(buf, "hello from http 2.0, request 2<"));
  get(fd, buf, sizeof(buf));
  assert_true(harness_contains(buf, "hello from http 2.0, request 3<"));
  close(fd);
  /* A new connection counts on. */
  fd = connect_to(port);
  get(fd, buf, sizeof(buf));
  assert_true(harness_contains(buf, "hello from http 2.0, request 4<"));
  close(fd);
  stop_clean(h);
}

static void test_host_net_http_rejects_malformed(void **state) {
  harness *h = *state;
  static char big[10000], header[6000], junk[256], buf[65536];
  const struct {
    const char *what;
    const char *data;
    size_t len;
  } bad[] = {
      {"garbage", "hello there\r\n\r\n", 15},
      {"no version", "GET /\r\n\r\n", 9},
      {"header too long", header, sizeof(header)},
      {"binary junk", junk, sizeof(junk)},
      {"no newline", big, sizeof(big)},
      {"a body", "GET / HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody", 41},
  };

  memcpy(header, "GET / HTTP/1.1\r\nX-Long: ", 24);
  memset(header + 24, 'a', sizeof(header) - 28);
  memcpy(header + sizeof(header) - 4, "\r\n\r\n", 4);
  for (size_t i = 0; i < sizeof(junk); i++)
    junk[i] = (char)(255 - i);
  memset(big, 'G', sizeof(big));

  int port = start_server(h, "http", "HTTP_VERSION");
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    print_message("%s\n", bad[i].what);
    int fd = connect_to(port);
    send_all(fd, bad[i].data, bad[i].len);
    recv_until(fd, buf, sizeof(buf), NULL); /* the server closes */
    assert_true(harness_contains(buf, "HTTP/1.1 400 Bad Request\r\n"));
    assert_true(harness_contains(buf, "Connection: close\r\n"));
    close(fd);
  }
  /* Not GET: 405. */
  int fd = connect_to(port);
  send_text(fd, "DELETE / HTTP/1.1\r\n\r\n");
  recv_until(fd, buf, sizeof(buf), NULL);
  assert_true(harness_contains(buf, "HTTP/1.1 405 Method Not Allowed\r\n"));
  close(fd);
  /* Still serving, still counting from 1: no 400 was counted. */
  fd = connect_to(port);
  get(fd, buf, sizeof(buf));
  assert_true(harness_contains(buf, "hello from http 1.0, request 1<"));
  close(fd);
  harness_expect_status(h, "http", "status", "live");
  stop_clean(h);
}

static void test_host_net_conf_change_moves_listener(void **state) {
  harness *h = *state;
  char buf[4096], conf[64];

  int port = start_server(h, "http", "HTTP_VERSION");
  int old = connect_to(port);
  get(old, buf, sizeof(buf));
  assert_true(harness_contains(buf, "request 1<"));
  int next = free_port();
  snprintf(conf, sizeof(conf), "port = %d\n", next);
  assert_int_equal(harness_install_text(h, conf, "http.conf", HARNESS_RENAME),
                   0);
  harness_expect_line(h, "http config: http.conf changed; on_config()");
  assert_int_equal(expect_port(h, "http"), next);
  int fd = connect_to(next);
  get(fd, buf, sizeof(buf));
  assert_true(harness_contains(buf, "hello from http 1.0, request 2<"));
  close(fd);
  /* The connection opened on the old port stays open. */
  get(old, buf, sizeof(buf));
  assert_true(harness_contains(buf, "hello from http 1.0, request 3<"));
  close(old);
  stop_clean(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_host_net_echo_replies_with_version,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_net_echo_keeps_connection_and_half_line, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_net_echo_line_too_long_closes,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_net_http_get_and_keep_alive,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_net_http_counter_survives_reload, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_net_http_rejects_malformed,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_net_conf_change_moves_listener,
                                      harness_setup, harness_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
