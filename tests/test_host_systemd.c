/*
 * test_host_systemd.c - the host as a systemd Type=notify service, against
 * a fake systemd: a datagram socket in the test named by NOTIFY_SOCKET.
 * READY=1 after the first plugins are in, STATUS=, the control socket kept
 * in the fd store, taken back after a crash (connections made while no host
 * ran are served), and removed from the store at a clean stop. Plugins'
 * listening sockets likewise (hs_api.fd_keep, fd_take, ABI 3): kept as
 * "<plugin>.<name>", taken back at a restart, out of the store when the
 * plugin closes them or is removed; what no plugin takes is closed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "hotswap.h"

/* Receives one datagram (and the fd it carries, if any) within 20 s.
 * Returns its length, or -1 on timeout. */
static ssize_t recv_notify(int sock, char *buf, size_t len, int *fd) {
  union {
    char raw[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctl;
  struct iovec iov = {buf, len - 1};
  struct msghdr msg = {0};
  struct pollfd p = {sock, POLLIN, 0};

  *fd = -1;
  if (poll(&p, 1, 20000) != 1)
    return -1;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl.raw;
  msg.msg_controllen = sizeof(ctl.raw);
  ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0)
    return -1;
  buf[n] = '\0';
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
      memcpy(fd, CMSG_DATA(c), sizeof(int));
  return n;
}

/* Waits for a datagram containing needle; returns the fd it carried (-1
 * for none, -2 on timeout). Every datagram up to it, that one included, is
 * appended to seen (size bytes, "" at first) when seen is not NULL. */
static int collect_notify(int sock, const char *needle, char *seen,
                          size_t size) {
  char buf[4096];
  int fd;
  for (;;) {
    ssize_t n = recv_notify(sock, buf, sizeof(buf), &fd);
    if (n < 0) {
      fprintf(stderr, "no notification with \"%s\" within 20 s\n", needle);
      return -2;
    }
    if (seen)
      snprintf(seen + strlen(seen), size - strlen(seen), "%s\n--\n", buf);
    if (strstr(buf, needle))
      return fd;
    if (fd >= 0)
      close(fd);
  }
}

static int expect_notify(int sock, const char *needle) {
  return collect_notify(sock, needle, NULL, 0);
}

static int fake_systemd(harness *h, char *path, size_t len) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  snprintf(path, len, "%s/notify.sock", h->root);
  assert_true(strlen(path) < sizeof(addr.sun_path));
  memcpy(addr.sun_path, path, strlen(path) + 1);
  assert_true(sock >= 0);
  assert_int_equal(bind(sock, (struct sockaddr *)&addr, sizeof(addr)), 0);
  return sock;
}

/* Starts the host as systemd (re)starts a service: the stored fds on 3,
 * 4, ..., named by LISTEN_FDS/LISTEN_FDNAMES (names: "a:b"), for the pid it
 * is about to have. */
static void start_with_fds(harness *h, const int *fds, int nfds,
                           const char *names, const char *notify) {
  int log = open(h->log, O_WRONLY | O_APPEND | O_CLOEXEC);
  assert_true(log >= 0);
  assert_true(nfds <= 8);
  h->offset = harness_log_end(h);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    char me[32], count[16];
    int high[8];
    setpgid(0, 0);
    if (dup2(log, 2) != 2)
      _exit(126);
    /* Out of the way first: a stored fd may sit on 3 or 4 already. */
    for (int i = 0; i < nfds; i++)
      if ((high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 100)) < 0)
        _exit(126);
    for (int i = 0; i < nfds; i++)
      if (dup2(high[i], 3 + i) != 3 + i)
        _exit(126);
    snprintf(me, sizeof(me), "%d", (int)getpid());
    snprintf(count, sizeof(count), "%d", nfds);
    setenv("LISTEN_PID", me, 1);
    setenv("LISTEN_FDS", count, 1);
    setenv("LISTEN_FDNAMES", names, 1);
    setenv("NOTIFY_SOCKET", notify, 1);
    execl(HS_TEST_BIN, HS_TEST_BIN, "--control", h->control, "--cache-dir",
          h->cache, h->plugins, (char *)NULL);
    _exit(127);
  }
  close(log);
  h->pid = pid;
  h->pgid = pid;
  h->exited = 0;
}

static void test_host_systemd_ready_store_and_restart(void **state) {
  harness *h = *state;
  char notify[PATH_MAX + 16], env[PATH_MAX + 32], reply[4096];
  int sock = fake_systemd(h, notify, sizeof(notify));

  snprintf(env, sizeof(env), "NOTIFY_SOCKET=%s", notify);
  assert_int_equal(harness_env(h, env), 0);
  assert_int_equal(harness_install(h, "counter_v1", "counter.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(harness_start(h, NULL), 0);

  /* The control socket goes into the store as soon as it listens; READY=1
   * once the plugin is in, with a one-line status. */
  int stored = expect_notify(sock, "FDSTORE=1\nFDNAME=control");
  assert_true(stored >= 0);
  assert_true(expect_notify(sock, "READY=1\nSTATUS=1 plugin live, 0 "
                                  "rejected") != -2);

  /* The host crashes. The socket lives on in the store (here: stored), so a
   * client that connects now is queued, not refused. */
  assert_int_equal(harness_kill(h), 0);
  int early = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  assert_true(strlen(h->control) < sizeof(addr.sun_path));
  memcpy(addr.sun_path, h->control, strlen(h->control) + 1);
  assert_int_equal(connect(early, (struct sockaddr *)&addr, sizeof(addr)), 0);
  assert_int_equal(write(early, "status\n", 7), 7);

  start_with_fds(h, &stored, 1, "control", notify);
  assert_true(harness_wait(h, "took the control socket", NULL, 0) >= 0);
  assert_true(harness_wait(h, "counter loaded: version 1.0", NULL, 0) >= 0);
  /* The adopted socket is not stored twice. */
  assert_true(expect_notify(sock, "READY=1") != -2);

  /* The connection made while no host ran is answered by the new one. */
  struct pollfd p = {early, POLLIN, 0};
  assert_int_equal(poll(&p, 1, 20000), 1);
  size_t got = 0;
  ssize_t n;
  while (got < sizeof(reply) - 1 &&
         (n = read(early, reply + got, sizeof(reply) - 1 - got)) > 0)
    got += (size_t)n;
  reply[got] = '\0';
  close(early);
  assert_true(harness_contains(reply, "ok\n"));
  assert_true(harness_contains(reply, "counter"));

  /* A clean stop takes the socket out of the store: its path is gone. */
  assert_int_equal(harness_stop(h), 0);
  assert_true(expect_notify(sock, "FDSTOREREMOVE=1\nFDNAME=control") != -2);
  close(stored);
  close(sock);
}

/* ---- plugins' sockets (ABI 3) ------------------------------------------ */

/* A listening socket on 127.0.0.1, any port (into *port), as a host that
 * ran before would have left in the store. */
static int listen_local(int *port) {
  struct sockaddr_in sa = {.sin_family = AF_INET};
  socklen_t len = sizeof(sa);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(listen(fd, 16), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  *port = ntohs(sa.sin_port);
  return fd;
}

/* A connection to 127.0.0.1:port whose reads give up after 20 s. */
static int connect_local(int port) {
  struct sockaddr_in sa = {.sin_family = AF_INET};
  struct timeval tv = {HARNESS_TIMEOUT_MS / 1000, 0};
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)),
                   0);
  assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  return fd;
}

/* Sends text (may be NULL), half-closes, reads until the server closes;
 * closes fd. */
static void exchange(int fd, const char *text, char *buf, size_t size) {
  size_t got = 0;
  ssize_t n;
  if (text)
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  shutdown(fd, SHUT_WR);
  while (got < size - 1 && (n = read(fd, buf + got, size - 1 - got)) > 0)
    got += (size_t)n;
  buf[got] = '\0';
  close(fd);
}

/* 1 if the host's fd number fd is the same open socket as ours. */
static int host_has(harness *h, int fd, int ours) {
  char path[64];
  struct stat a, b;
  snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)h->pid, fd);
  if (stat(path, &a) != 0)
    return 0;
  assert_int_equal(fstat(ours, &b), 0);
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* A plugin's socket goes into the store as "<plugin>.<name>" once it
 * listens, the very socket it serves on; it leaves the store when the
 * plugin is removed. fd_keep and fd_take refuse misuse; in the sandbox they
 * do nothing. */
static void test_host_systemd_plugin_socket_kept(void **state) {
  harness *h = *state;
  char notify[PATH_MAX + 16], env[PATH_MAX + 32], line[1024], want[512];
  char seen[16384] = "", reply[256];
  int sock = fake_systemd(h, notify, sizeof(notify));

  snprintf(env, sizeof(env), "NOTIFY_SOCKET=%s", notify);
  assert_int_equal(harness_env(h, env), 0);
  assert_int_equal(harness_install(h, "listener", "listener.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  assert_int_equal(harness_start(h, NULL), 0);
  snprintf(want, sizeof(want), "listener sandbox: sandbox keep 0 take %d",
           HS_ENOENT);
  harness_expect_line(h, want);
  assert_true(harness_wait(h, "listener log: listening on 127.0.0.1:", line,
                           sizeof(line)) >= 0);
  assert_true(harness_contains(line, " (new), keep 0"));
  int port = atoi(strrchr(line, ':') + 1);
  assert_true(port > 0 && port < 65536);
  snprintf(want, sizeof(want),
           "listener log: checks keep-unwatched %d keep-badname %d "
           "keep-empty %d keep-long %d keep-twice %d take-badname %d "
           "take-none %d",
           HS_EBADF, HS_EINVAL, HS_EINVAL, HS_EINVAL, HS_EEXIST, HS_EINVAL,
           HS_ENOENT);
  harness_expect_line(h, want);

  /* The store got the listening socket itself. */
  int kept = collect_notify(sock, "FDNAME=listener.listen", seen,
                            sizeof(seen));
  assert_true(harness_contains(seen, "FDSTORE=1\nFDNAME=listener.listen\n"));
  assert_true(kept >= 0);
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  int listening = 0;
  socklen_t ilen = sizeof(listening);
  assert_int_equal(getsockname(kept, (struct sockaddr *)&sa, &len), 0);
  assert_int_equal(sa.sin_family, AF_INET);
  assert_int_equal(ntohs(sa.sin_port), port);
  assert_int_equal(
      getsockopt(kept, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ilen), 0);
  assert_int_equal(listening, 1);
  assert_true(collect_notify(sock, "READY=1", seen, sizeof(seen)) != -2);
  /* Misuse changed nothing in the store. */
  assert_true(harness_lacks(seen, "FDSTOREREMOVE"));
  /* Status names the fd as the store does. */
  char json[16384];
  assert_int_equal(harness_status(h, json, sizeof(json)), 0);
  assert_true(harness_contains(json, "\"kept\":\"listener.listen\"}"));

  snprintf(want, sizeof(want), "listener l1 %d\n", port);
  exchange(connect_local(port), NULL, reply, sizeof(reply));
  assert_string_equal(reply, want);

  /* Removed: its socket leaves the store (the plugin io_close()d it). */
  assert_int_equal(harness_remove(h, "listener.so"), 0);
  harness_expect_line(h, "listener unloaded: listener.so was removed");
  assert_true(expect_notify(sock, "FDSTOREREMOVE=1\nFDNAME=listener.listen") !=
              -2);
  assert_int_equal(harness_stop(h), 0);
  close(kept);
  close(sock);
}

/* systemd restarts a crashed host with the plugin's socket (and one that
 * no plugin asks for): the plugin takes it back and serves the connection
 * that waited meanwhile; the other is closed and leaves the store. */
static void test_host_systemd_plugin_takes_socket_back(void **state) {
  harness *h = *state;
  char notify[PATH_MAX + 16], want[512], seen[16384] = "", reply[256];
  int sock = fake_systemd(h, notify, sizeof(notify));
  int port, ghost_port;
  int stored = listen_local(&port), ghost = listen_local(&ghost_port);

  assert_int_equal(harness_install(h, "listener", "listener.so",
                                   HARNESS_WRITE_NEW, NULL),
                   0);
  /* No host runs: this client waits in the socket's backlog. */
  int early = connect_local(port);
  int fds[2] = {stored, ghost};
  start_with_fds(h, fds, 2, "listener.listen:ghost.listen", notify);

  harness_expect_line(h, "listener fdstore: took listener.listen (fd 3) back "
                         "from systemd's fd store");
  snprintf(want, sizeof(want),
           "listener log: listening on 127.0.0.1:%d (taken), keep 0", port);
  harness_expect_line(h, want);
  harness_expect_line(h, "hotswap fdstore: closed ghost.listen (fd 4) from "
                         "systemd's fd store: nobody took it");
  assert_true(collect_notify(sock, "READY=1", seen, sizeof(seen)) != -2);
  assert_true(harness_contains(seen, "FDSTORE=1\nFDNAME=listener.listen\n"));
  assert_true(
      harness_contains(seen, "FDSTOREREMOVE=1\nFDNAME=ghost.listen\n"));
  assert_true(harness_lacks(seen, "FDSTOREREMOVE=1\nFDNAME=listener."));

  /* The host serves on our socket (no other was bound), the waiting
   * client first; the unclaimed one is closed, the taken one not. */
  snprintf(want, sizeof(want), "listener l1 %d\n", port);
  exchange(early, NULL, reply, sizeof(reply));
  assert_string_equal(reply, want);
  exchange(connect_local(port), NULL, reply, sizeof(reply));
  assert_string_equal(reply, want);
  assert_true(host_has(h, 3, stored));
  assert_false(host_has(h, 4, ghost));

  /* A clean stop: the plugin closes its socket, which leaves the store. */
  assert_int_equal(harness_stop(h), 0);
  assert_true(expect_notify(sock, "FDSTOREREMOVE=1\nFDNAME=listener.listen") !=
              -2);
  close(stored);
  close(ghost);
  close(sock);
}

/* The shipped servers, from source: after a restart each takes its
 * listening socket back from the store and serves on it. */
static void test_host_systemd_servers_take_sockets_back(void **state) {
  harness *h = *state;
  char notify[PATH_MAX + 16], want[512], seen[16384] = "", reply[4096];
  int sock = fake_systemd(h, notify, sizeof(notify));
  int http_port, echo_port;
  int http_fd = listen_local(&http_port), echo_fd = listen_local(&echo_port);

  for (int i = 0; i < 2; i++) {
    static const char *const names[] = {"http", "echo"};
    char path[PATH_MAX], file[32];
    static char text[131072];
    snprintf(path, sizeof(path), HS_TEST_SOURCE_DIR "/plugins/%s.c",
             names[i]);
    FILE *f = fopen(path, "re");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    assert_true(n > 0 && n < sizeof(text) - 1);
    text[n] = '\0';
    snprintf(file, sizeof(file), "%s.c", names[i]);
    assert_int_equal(harness_install_text(h, text, file, HARNESS_WRITE_NEW),
                     0);
    snprintf(file, sizeof(file), "%s.conf", names[i]);
    assert_int_equal(harness_install_text(h, "port = 0\n", file,
                                          HARNESS_WRITE_NEW),
                     0);
  }
  int fds[2] = {http_fd, echo_fd};
  start_with_fds(h, fds, 2, "http.listen:echo.listen", notify);
  long from = h->offset;
  snprintf(want, sizeof(want),
           "http log: listening on 127.0.0.1:%d (the socket from systemd's "
           "fd store)",
           http_port);
  harness_expect_line(h, want);
  h->offset = from; /* the two load in either order */
  snprintf(want, sizeof(want),
           "echo log: listening on 127.0.0.1:%d (the socket from systemd's "
           "fd store)",
           echo_port);
  harness_expect_line(h, want);
  assert_true(collect_notify(sock, "READY=1\nSTATUS=2 plugins live", seen,
                             sizeof(seen)) != -2);
  assert_true(harness_contains(seen, "FDSTORE=1\nFDNAME=http.listen\n"));
  assert_true(harness_contains(seen, "FDSTORE=1\nFDNAME=echo.listen\n"));
  assert_true(harness_lacks(seen, "FDSTOREREMOVE"));

  exchange(connect_local(http_port), "GET / HTTP/1.0\r\n\r\n", reply,
           sizeof(reply));
  assert_true(harness_contains(reply, "hello from http 1.0, request 1"));
  exchange(connect_local(echo_port), "abc\n", reply, sizeof(reply));
  assert_string_equal(reply, "1.0: abc\n");
  assert_true(host_has(h, 3, http_fd));
  assert_true(host_has(h, 4, echo_fd));
  assert_int_equal(harness_stop(h), 0);
  close(http_fd);
  close(echo_fd);
  close(sock);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_host_systemd_ready_store_and_restart, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(test_host_systemd_plugin_socket_kept,
                                      harness_setup, harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_systemd_plugin_takes_socket_back, harness_setup,
          harness_teardown),
      cmocka_unit_test_setup_teardown(
          test_host_systemd_servers_take_sockets_back, harness_setup,
          harness_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
