/*
 * test_host_systemd.c - the host as a systemd Type=notify service, against
 * a fake systemd: a datagram socket in the test named by NOTIFY_SOCKET.
 * READY=1 after the first plugins are in, STATUS=, the control socket kept
 * in the fd store, taken back after a crash (connections made while no host
 * ran are served), and removed from the store at a clean stop.
 */
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
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

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

/* Waits for a datagram containing needle; returns the fd it carried. */
static int expect_notify(int sock, const char *needle) {
  char buf[4096];
  int fd;
  for (;;) {
    ssize_t n = recv_notify(sock, buf, sizeof(buf), &fd);
    if (n < 0) {
      fprintf(stderr, "no notification with \"%s\" within 20 s\n", needle);
      return -2;
    }
    if (strstr(buf, needle))
      return fd;
    if (fd >= 0)
      close(fd);
  }
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

/* Starts the host as systemd restarts a service: stored fd on 3, named by
 * LISTEN_FDS/LISTEN_FDNAMES, for the pid it is about to have. */
static void restart_with_fd(harness *h, int stored, const char *notify) {
  int log = open(h->log, O_WRONLY | O_APPEND | O_CLOEXEC);
  assert_true(log >= 0);
  h->offset = harness_log_end(h);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    char me[32];
    setpgid(0, 0);
    if (dup2(stored, 3) != 3 || dup2(log, 2) != 2)
      _exit(126);
    snprintf(me, sizeof(me), "%d", (int)getpid());
    setenv("LISTEN_PID", me, 1);
    setenv("LISTEN_FDS", "1", 1);
    setenv("LISTEN_FDNAMES", "control", 1);
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

  restart_with_fd(h, stored, notify);
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_host_systemd_ready_store_and_restart, harness_setup,
          harness_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
