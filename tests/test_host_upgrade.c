/*
 * test_host_upgrade.c - the host upgrades itself (host/upgrade.c): a copy
 * of the hotswap binary in the test's tree runs the host, and the test
 * replaces that file. Plugins, their state, fds and timers must come
 * through every re-exec with the same pid; a new binary that is not
 * executable, not an executable at all, truncated, crashing, hanging or
 * unable to read the handoff is refused while the old host keeps serving;
 * a failing execve restores the plugins; an unreadable handoff stops the
 * new image loudly.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "hotswap.h"

#define UPGRADES 20

/* ---- the host binary under test ---------------------------------------- */

static void read_file(const char *path, char **data, size_t *size) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  assert_int_equal(fseek(f, 0, SEEK_END), 0);
  long n = ftell(f);
  assert_true(n > 0);
  rewind(f);
  *data = malloc((size_t)n + 64);
  assert_non_null(*data);
  assert_int_equal(fread(*data, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *size = (size_t)n;
}

/* Writes data as root/bin/hotswap with mode, through a temporary name and
 * a rename (as an install or a build does). */
static void put_binary(harness *h, const void *data, size_t size,
                       mode_t mode) {
  char tmp[PATH_MAX + 32];
  snprintf(tmp, sizeof(tmp), "%s/bin/.hotswap.new", h->root);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0700);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, data, size), (ssize_t)size);
  assert_int_equal(fchmod(fd, mode), 0);
  assert_int_equal(close(fd), 0);
  assert_int_equal(rename(tmp, h->bin), 0);
}

/* The real binary with a tag appended: a valid ELF (trailing bytes are
 * ignored) whose content differs for each tag. */
static void put_real_binary(harness *h, int tag) {
  char *data;
  size_t size;
  read_file(HS_TEST_BIN, &data, &size);
  if (tag)
    size += (size_t)snprintf(data + size, 64, "\nupgrade %d\n", tag);
  put_binary(h, data, size, 0755);
  free(data);
}

static void put_fixture_binary(harness *h, const char *name) {
  char path[PATH_MAX], *data;
  size_t size;
  snprintf(path, sizeof(path), "%s/%s", HS_TEST_FIXTURES, name);
  read_file(path, &data, &size);
  put_binary(h, data, size, 0755);
  free(data);
}

/* cmocka setup: a harness whose host runs root/bin/hotswap. */
static int setup(void **state) {
  if (harness_setup(state) != 0)
    return -1;
  harness *h = *state;
  char dir[PATH_MAX + 16];
  snprintf(dir, sizeof(dir), "%s/bin", h->root);
  if (strlen(h->root) + 16 > sizeof(h->bin))
    return -1;
  memcpy(h->bin, h->root, strlen(h->root));
  strcpy(h->bin + strlen(h->root), "/bin/hotswap");
  if (mkdir(dir, 0700) != 0)
    return -1;
  put_real_binary(h, 0);
  return 0;
}

/* ---- the http example, and a client that never stops asking ------------- */

static void install_http(harness *h) {
  char path[PATH_MAX], *text;
  size_t size;
  snprintf(path, sizeof(path), "%s/plugins/http.c", HS_TEST_SOURCE_DIR);
  read_file(path, &text, &size);
  text[size] = '\0';
  assert_int_equal(harness_install_text(h, "port = 0\n", "http.conf",
                                        HARNESS_WRITE_NEW),
                   0);
  assert_int_equal(harness_install_text(h, text, "http.c", HARNESS_RENAME), 0);
  free(text);
}

static int expect_port(harness *h) {
  char line[1024];
  assert_true(harness_wait(h, "http log: listening on 127.0.0.1:", line,
                           sizeof(line)) >= 0);
  int port = atoi(strrchr(line, ':') + 1);
  assert_true(port > 0 && port < 65536);
  return port;
}

static int connect_to(int port) {
  struct sockaddr_in sa;
  struct timeval tv = {10, 0};
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* GET / on fd. Returns the request number the page shows, or -1. */
static long get(int fd) {
  static const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  char buf[2048];
  size_t len = 0;
  if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(req) - 1)
    return -1;
  while (len + 1 < sizeof(buf)) {
    ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    len += (size_t)n;
    buf[len] = '\0';
    if (strstr(buf, "</p>\n"))
      break;
  }
  const char *at = strstr(buf, ", request ");
  return at ? atol(at + 10) : -1;
}

typedef struct client {
  pid_t pid;
  int stop;      /* write end: closing it stops the client */
  int report;    /* read end of the client's report */
} client;

/* The client: requests until told to stop, alternating a keep-alive
 * connection (opened once: it must survive every upgrade) and a fresh
 * connection per request. Every page must show the next request number. */
static void client_main(int port, int stop, int report) {
  long ok = 0, failed = 0, gaps = 0, last = -1, first = -1;
  int keep = connect_to(port);
  char line[256];
  fcntl(stop, F_SETFL, O_NONBLOCK);
  for (;;) {
    char c;
    ssize_t r = read(stop, &c, 1);
    if (r == 0)
      break;
    int fd = (ok + failed) % 2 ? connect_to(port) : keep;
    long n = fd >= 0 ? get(fd) : -1;
    if (fd >= 0 && fd != keep)
      close(fd);
    if (n < 0) {
      failed++;
      continue;
    }
    if (first < 0)
      first = n;
    else if (n != last + 1)
      gaps++;
    last = n;
    ok++;
  }
  int len = snprintf(line, sizeof(line), "ok=%ld failed=%ld gaps=%ld first=%ld "
                     "last=%ld\n", ok, failed, gaps, first, last);
  if (write(report, line, (size_t)len) != len)
    _exit(1);
  _exit(0);
}

static void client_start(client *c, int port) {
  int stop[2], report[2];
  assert_int_equal(pipe(stop), 0);
  assert_int_equal(pipe(report), 0);
  c->pid = fork();
  assert_true(c->pid >= 0);
  if (c->pid == 0) {
    close(stop[1]);
    close(report[0]);
    client_main(port, stop[0], report[1]);
  }
  close(stop[0]);
  close(report[1]);
  c->stop = stop[1];
  c->report = report[0];
}

/* Stops the client and reads its report into the counters. */
static void client_stop(client *c, long *ok, long *failed, long *gaps) {
  char line[256] = "";
  long first, last;
  int status;
  close(c->stop);
  ssize_t n = read(c->report, line, sizeof(line) - 1);
  close(c->report);
  assert_true(waitpid(c->pid, &status, 0) == c->pid);
  assert_true(n > 0);
  line[n] = '\0';
  print_message("client: %s", line);
  assert_int_equal(sscanf(line, "ok=%ld failed=%ld gaps=%ld first=%ld last=%ld",
                          ok, failed, gaps, &first, &last),
                   5);
}

/* counter_v1 installed, the host started (with args), its first load
 * seen. */
static void start_counter(harness *h, const char *const *args) {
  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_RENAME, NULL),
                   0);
  assert_int_equal(harness_start(h, args), 0);
  harness_expect_line(h, "counter log: load start version 1.0 loads=1");
}

/* The http example installed and the host started; returns its port. */
static int start_http(harness *h) {
  install_http(h);
  assert_int_equal(harness_start(h, NULL), 0);
  int port = expect_port(h);
  harness_expect_line(h, "http loaded: version");
  return port;
}

/* ---- tests ------------------------------------------------------------- */

/* The check mode answers for itself: the formats it reads, or why not. */
static void test_upgrade_check_mode(void **state) {
  harness *h = *state;
  char out[1024], err[1024];
  const char *const ok[] = {"__upgrade-check", "1", NULL};
  const char *const newer[] = {"__upgrade-check", "99", NULL};

  assert_int_equal(harness_run(h, ok, out, sizeof(out), err, sizeof(err)), 0);
  assert_true(harness_contains(out, "hotswap-upgrade-check ok version="));
  char abi[32];
  snprintf(abi, sizeof(abi), " abi=%d ", HS_ABI_VERSION);
  assert_true(harness_contains(out, abi));
  /* Formats 1 to at least 2 (2: the plugins' crash records). */
  const char *formats = strstr(out, " handoff=1-");
  assert_non_null(formats);
  assert_true(atoi(formats + strlen(" handoff=1-")) >= 2);
  assert_int_equal(harness_run(h, newer, out, sizeof(out), err, sizeof(err)),
                   3);
  assert_true(harness_contains(out, "hands over format 99; this binary reads "
                                    "formats 1 to"));
}

/* The http example under a client loop while the host binary is replaced
 * 20 times: no failed request, the request counter continuous, the
 * keep-alive connection kept, one pid throughout. */
static void test_upgrade_keeps_serving(void **state) {
  harness *h = *state;
  client c;
  long ok, failed, gaps, reexecs;
  char want[64];

  int port = start_http(h);
  pid_t pid = h->pid;
  client_start(&c, port);
  for (int i = 1; i <= UPGRADES; i++) {
    put_real_binary(h, i);
    /* The plugin is loaded again before the new image says it is up. */
    harness_expect_line(h, "http log: version 1.0: serving 127.0.0.1:");
    snprintf(want, sizeof(want), ", upgrade %d: plugins paused", i);
    harness_expect_line(h, want);
  }
  client_stop(&c, &ok, &failed, &gaps);
  assert_int_equal(failed, 0);
  assert_int_equal(gaps, 0);
  assert_true(ok > UPGRADES);
  assert_int_equal(h->pid, pid);
  assert_int_equal(kill(pid, 0), 0);
  assert_int_equal(harness_status_long(h, NULL, "reexecs", &reexecs), 0);
  assert_int_equal(reexecs, UPGRADES);
  /* The listener was never opened again: one "listening" line only. */
  assert_int_equal(harness_count(h, 0, -1, "http log: listening on"), 1);
  assert_int_equal(harness_stop(h), 0);
}

/* Replaces the binary with something that must be refused, and checks the
 * refusal names the reason while the old host goes on serving. */
static void expect_refused(harness *h, int port, const char *reason) {
  char line[1024], err[1024];
  assert_true(harness_wait(h, "hotswap upgrade: refused: ", line,
                           sizeof(line)) >= 0);
  assert_true(harness_contains(line, h->bin));
  assert_true(harness_contains(line, reason));
  assert_true(harness_contains(line, "keeps running"));
  int fd = connect_to(port);
  assert_true(fd >= 0);
  assert_true(get(fd) > 0);
  close(fd);
  assert_int_equal(harness_status_get(h, NULL, "upgrade_error", err,
                                      sizeof(err)),
                   0);
  assert_true(harness_contains(err, reason));
}

static void test_upgrade_refuses_bad_binaries(void **state) {
  harness *h = *state;
  char *data;
  size_t size;
  long reexecs;

  int port = start_http(h);
  pid_t pid = h->pid;

  read_file(HS_TEST_BIN, &data, &size);
  put_binary(h, data, size - 1, 0644); /* differs: the last byte is gone */
  expect_refused(h, port, "is not executable (mode 0644)");
  put_binary(h, "echo I am a script\n", 19, 0755);
  expect_refused(h, port, "not an ELF, and no \"#!\" line");
  put_binary(h, data, 4096, 0755);
  assert_true(harness_wait(h, "hotswap upgrade: refused: ", NULL, 0) >= 0);
  free(data);
  put_fixture_binary(h, "fakehost_crash");
  expect_refused(h, port, "crashed in its check: SIGSEGV");
  put_fixture_binary(h, "fakehost_format");
  expect_refused(h, port, "this binary reads formats 7 to 9");
  put_fixture_binary(h, "fakehost_hang");
  expect_refused(h, port, "did not pass its check within 10000 ms");

  assert_int_equal(harness_status_long(h, NULL, "reexecs", &reexecs), 0);
  assert_int_equal(reexecs, 0);
  assert_int_equal(h->pid, pid);
  /* A good binary after all that goes in. */
  put_real_binary(h, 1);
  harness_expect_line(h, ", upgrade 1: plugins paused");
  assert_int_equal(harness_stop(h), 0);
}

/* Ticks, the state and a plugin changed while the host re-executes: the
 * new image loads the carried version (reason upgrade), then the changed
 * file migrates from the carried state. */
static void test_upgrade_migrates_a_changed_plugin(void **state) {
  harness *h = *state;
  const char *const args[] = {"--settle", "3000", "--no-upgrade-watch", NULL};
  const char *const upgrade[] = {"upgrade", "--control", h->control, NULL};
  char out[1024], err[1024];

  assert_int_equal(harness_env(h, "FX_TICK_MS=50"), 0);
  start_counter(h, args);
  harness_expect_line(h, "counter log: tick 3");
  /* Written in place: seen, but settles only after 3 s, by then the host
   * has re-executed. */
  assert_int_equal(harness_install(h, "counter_v2", "counter.so",
                                   HARNESS_COPY_OVER, NULL),
                   0);
  assert_int_equal(harness_run(h, upgrade, out, sizeof(out), err, sizeof(err)),
                   0);
  assert_true(harness_contains(out, "re-executing"));
  harness_expect_line(h, "counter log: unload upgrade version 1.0 loads=1");
  harness_expect_line(h, "counter log: load upgrade version 1.0 loads=2");
  harness_expect_line(h, ", upgrade 1: plugins paused");
  harness_expect_line(h, "counter log: migrated v1 (");
  harness_expect_line(h, "counter log: load reload version 2.0 loads=3");
  /* The tick count went on through both: the state is the same. */
  char line[512];
  assert_true(harness_wait(h, "counter log: tick ", line, sizeof(line)) >= 0);
  assert_true(atol(strstr(line, "tick ") + 5) > 3);
  harness_expect_status_num(h, "counter", "state_version", 2);
  assert_int_equal(harness_stop(h), 0);
}

/* A plugin quarantined by a crash is still quarantined after an upgrade,
 * with its crash record and last error; its fix then loads as before. */
static void test_upgrade_keeps_crash_records(void **state) {
  harness *h = *state;
  const char *const args[] = {"--crash-grace", "0", "--no-upgrade-watch",
                              NULL};
  const char *const upgrade[] = {"upgrade", "--control", h->control, NULL};
  char out[1024], err[1024], json[65536];

  assert_int_equal(harness_install(h, "crash_v1", "q.so", HARNESS_WRITE_NEW,
                                   NULL),
                   0);
  assert_int_equal(harness_start(h, args), 0);
  harness_expect_line(h, "q loaded: version 1.0");
  assert_int_equal(harness_install(h, "crash_timer_abrt", "q.so",
                                   HARNESS_RENAME, NULL),
                   0);
  harness_expect_line(h, "q crashed: on_timer() of version 2.0-timer-abrt");
  harness_expect_status(h, "q", "status", "quarantined");

  assert_int_equal(harness_run(h, upgrade, out, sizeof(out), err, sizeof(err)),
                   0);
  assert_true(harness_contains(out, "re-executing"));
  harness_expect_line(h, ", upgrade 1: plugins paused");
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  assert_true(harness_contains(json, "\"reexecs\":1"));
  assert_true(harness_contains(json, "\"status\":\"quarantined\""));
  assert_true(harness_contains(json, "\"crashes\":1,\"last_crash\":{"
                                     "\"callback\":\"on_timer\",\"version\":"
                                     "\"2.0-timer-abrt\",\"signal\":"
                                     "\"SIGABRT\""));
  assert_true(harness_contains(json, "\"action\":\"quarantine\""));
  assert_true(harness_contains(json, "\"code\":\"HS_ECRASH\",\"stage\":"
                                     "\"on_timer\""));

  /* The fix loads on the state the crash left, as without the upgrade. */
  assert_int_equal(harness_install(h, "crash_v1b", "q.so", HARNESS_RENAME,
                                   NULL),
                   0);
  harness_expect_line(h, "q log: load reload version 1.1");
  harness_expect_status(h, "q", "status", "live");
  assert_int_equal(harness_stop(h), 0);
}

/* An older build that reads handoff format 1 only passes the check and is
 * handed format 1, without the crash records it knows nothing of; the
 * host says what is left behind. */
static void test_upgrade_hands_an_older_build_format_1(void **state) {
  harness *h = *state;

  start_counter(h, NULL);
  put_fixture_binary(h, "fakehost_old");
  harness_expect_line(h, "reads handoff formats up to 1: the plugins' crash "
                         "records are not carried over");
  harness_expect_line(h, "fakehost_old: handed format 1");
}

/* execve fails after the check passed (the file lost its x bit while a
 * validation held the upgrade back): every plugin is loaded again on its
 * state, reason rollback, and the host goes on. */
static void test_upgrade_exec_failure_restores(void **state) {
  harness *h = *state;
  const char *const args[] = {"--no-upgrade-watch", "--sandbox-timeout",
                              "5000", NULL};
  const char *const upgrade[] = {"upgrade", "--control", h->control, NULL};
  char out[1024], err[1024];
  long reexecs;

  start_counter(h, args);
  /* A validation that takes the whole --sandbox-timeout (5 s). */
  assert_int_equal(harness_install(h, "bad_hang_selftest", "slow.so",
                                   HARNESS_RENAME, NULL),
                   0);
  assert_int_equal(harness_wait_status(h, "slow", "status", "validating"),
                   0);
  assert_int_equal(harness_run(h, upgrade, out, sizeof(out), err, sizeof(err)),
                   0);
  harness_expect_line(h, "re-executing once the reloads under way are done");
  assert_int_equal(chmod(h->bin, 0644), 0);
  char line[1024];
  assert_true(harness_wait(h, "hotswap upgrade: re-executing failed: ", line,
                           sizeof(line)) >= 0);
  assert_true(harness_contains(line, "is not executable (mode 0644)"));
  assert_true(harness_contains(line, "keeps running"));
  harness_expect_line(h, "counter log: load rollback version 1.0 loads=2");
  assert_int_equal(harness_status_long(h, NULL, "reexecs", &reexecs), 0);
  assert_int_equal(reexecs, 0);
  harness_expect_status(h, "counter", "status", "live");
  assert_int_equal(harness_stop(h), 0);
}

/* SIGUSR2 re-executes the same binary (forced); status counts it. */
static void test_upgrade_sigusr2(void **state) {
  harness *h = *state;
  long reexecs;

  start_counter(h, NULL);
  assert_int_equal(harness_signal(h, SIGUSR2), 0);
  harness_expect_line(h, "hotswap upgrade: checking");
  harness_expect_line(h, "counter log: load upgrade version 1.0 loads=2");
  harness_expect_line(h, ", upgrade 1: plugins paused");
  assert_int_equal(harness_status_long(h, NULL, "reexecs", &reexecs), 0);
  assert_int_equal(reexecs, 1);
  assert_int_equal(harness_stop(h), 0);
  harness_expect_line(h, "counter log: unload shutdown version 1.0 loads=2");
}

/* Waits for a datagram on the fake notify socket that contains needle;
 * every datagram read is appended to seen. Returns 0 or -1 on timeout. */
static int notify_wait(int fd, const char *needle, char *seen, size_t size) {
  for (int i = 0; i < 100; i++) {
    char msg[1024];
    ssize_t n = recv(fd, msg, sizeof(msg) - 1, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -1; /* the socket's receive timeout */
    msg[n] = '\0';
    size_t len = strlen(seen);
    snprintf(seen + len, size - len, "%s|", msg);
    if (strstr(msg, needle))
      return 0;
  }
  return -1;
}

/* Under systemd (a fake NOTIFY_SOCKET): RELOADING=1 before the re-exec,
 * READY=1 from the new image once its plugins are loaded. */
static void test_upgrade_tells_systemd(void **state) {
  harness *h = *state;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  struct timeval tv = {HARNESS_TIMEOUT_MS / 1000, 0};
  char env[sizeof(sa.sun_path) + 32], seen[8192] = "";

  if (strlen(h->root) + sizeof("/notify.sock") > sizeof(sa.sun_path))
    skip(); /* a $TMPDIR too long for a unix socket's name */
  strcpy(sa.sun_path, h->root);
  strcat(sa.sun_path, "/notify.sock");
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)),
                   0);
  snprintf(env, sizeof(env), "NOTIFY_SOCKET=%s", sa.sun_path);
  assert_int_equal(harness_env(h, env), 0);
  start_counter(h, NULL);
  assert_int_equal(notify_wait(fd, "READY=1", seen, sizeof(seen)), 0);
  seen[0] = '\0';
  assert_int_equal(harness_signal(h, SIGUSR2), 0);
  assert_int_equal(notify_wait(fd, "RELOADING=1", seen, sizeof(seen)), 0);
  assert_true(harness_contains(seen, "MONOTONIC_USEC="));
  assert_int_equal(notify_wait(fd, "READY=1", seen, sizeof(seen)), 0);
  assert_true(harness_contains(seen, "STATUS=1 plugin live"));
  harness_expect_line(h, ", upgrade 1: plugins paused");
  assert_int_equal(harness_stop(h), 0);
  close(fd);
}

/* An image started with a handoff it cannot read exits 1 saying why. */
static void test_upgrade_bad_handoff_fails_loudly(void **state) {
  harness *h = *state;
  char path[PATH_MAX + 32], log[PATH_MAX + 32], env[64], text[4096];
  static const char *const bodies[] = {
      "not a handoff at all",
      /* a header promising 16 bytes, and none */
      "HSHANDOF\x01\0\0\0\x10\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
  };
  static const char *const reasons[] = {"is not a hotswap handoff",
                                        "the handoff is truncated"};

  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof(path), "%s/handoff%d", h->root, i);
    snprintf(log, sizeof(log), "%s/handoff%d.log", h->root, i);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    size_t n = i == 0 ? strlen(bodies[i]) : 28;
    assert_int_equal(write(fd, bodies[i], n), (ssize_t)n);
    /* At a number the child keeps: not close-on-exec. */
    assert_int_equal(dup2(fd, 9), 9);
    close(fd);
    snprintf(env, sizeof(env), "HOTSWAP_HANDOFF=9");
    const char *const argv[] = {HS_TEST_BIN, "--control", h->control,
                                "--cache-dir", h->cache, h->plugins, NULL};
    const char *const envs[] = {env, NULL};
    assert_int_equal(harness_exec(argv, envs, log, 30), 1);
    close(9);
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    size_t len = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[len] = '\0';
    assert_true(harness_contains(text, "cannot take over from the previous "
                                       "image: "));
    assert_true(harness_contains(text, reasons[i]));
    assert_true(harness_lacks(text, "hotswap started"));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_upgrade_check_mode, setup,
                                      harness_teardown),
      cmocka_unit_test_setup_teardown(test_upgrade_keeps_serving, setup,
                                      harness_teardown),
      cmocka_unit_test_setup_teardown(test_upgrade_refuses_bad_binaries,
                                      setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_upgrade_migrates_a_changed_plugin,
                                      setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_upgrade_keeps_crash_records, setup,
                                      harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_upgrade_hands_an_older_build_format_1, setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_upgrade_exec_failure_restores,
                                      setup, harness_teardown),
      cmocka_unit_test_setup_teardown(test_upgrade_sigusr2, setup,
                                      harness_teardown),
      cmocka_unit_test_setup_teardown(test_upgrade_tells_systemd, setup,
                                      harness_teardown),
      cmocka_unit_test_setup_teardown(test_upgrade_bad_handoff_fails_loudly,
                                      setup, harness_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
