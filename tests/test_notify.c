/* test_notify.c - hs_notify against a fake systemd: a unix datagram socket
 * the test binds and names in $NOTIFY_SOCKET. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "notify.h"

/* The fake systemd: a bound datagram socket and how $NOTIFY_SOCKET names
 * it. */
typedef struct fake {
  char dir[64];   /* mkdtemp'd, for a path socket; "" for an abstract one */
  char name[108]; /* the value of $NOTIFY_SOCKET */
  int fd;
} fake;

static void fake_bind(fake *f, struct sockaddr_un *a, socklen_t len) {
  f->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  assert_true(f->fd >= 0);
  assert_int_equal(bind(f->fd, (struct sockaddr *)a, len), 0);
  assert_int_equal(setenv("NOTIFY_SOCKET", f->name, 1), 0);
}

/* A socket at <tmpdir>/notify, as systemd's /run/systemd/notify. */
static void fake_path(fake *f) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};

  snprintf(f->dir, sizeof(f->dir), "/tmp/hs-notify-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->name, sizeof(f->name), "%s/notify", f->dir);
  memcpy(a.sun_path, f->name, strlen(f->name) + 1);
  fake_bind(f, &a, sizeof(a));
}

/* An abstract socket "@hs-notify-<pid>", as systemd --user may use. */
static void fake_abstract(fake *f) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  int n;

  f->dir[0] = '\0';
  n = snprintf(f->name, sizeof(f->name), "@hs-notify-test-%ld",
               (long)getpid());
  memcpy(a.sun_path + 1, f->name + 1, (size_t)n - 1);
  fake_bind(f, &a,
            (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n));
}

static void fake_close(fake *f) {
  char path[128];

  close(f->fd);
  if (f->dir[0] != '\0') {
    snprintf(path, sizeof(path), "%s/notify", f->dir);
    unlink(path);
    rmdir(f->dir);
  }
  unsetenv("NOTIFY_SOCKET");
}

/* Receives one datagram without waiting (it was sent before): its text
 * into buf, an attached fd (or -1) into *fd. Returns its length. */
static size_t fake_recv(fake *f, char *buf, size_t size, int *fd) {
  union {
    char raw[CMSG_SPACE(4 * sizeof(int))];
    struct cmsghdr align;
  } ctl;
  struct iovec iov = {buf, size - 1};
  struct msghdr mh = {0};
  ssize_t n;

  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl.raw;
  mh.msg_controllen = sizeof(ctl.raw);
  n = recvmsg(f->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  assert_true(n >= 0);
  assert_int_equal(mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC), 0);
  buf[n] = '\0';
  if (fd != NULL)
    *fd = -1;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
      continue;
    assert_int_equal(c->cmsg_len, CMSG_LEN(sizeof(int)));
    assert_non_null(fd);
    memcpy(fd, CMSG_DATA(c), sizeof(int));
  }
  return (size_t)n;
}

/* Nothing more is waiting on the fake socket. */
static void fake_expect_empty(fake *f) {
  char b;
  assert_int_equal(recv(f->fd, &b, 1, MSG_DONTWAIT), -1);
  assert_int_equal(errno, EAGAIN);
}

static void test_notify_unset_is_a_noop(void **state) {
  hs_notify n;
  int fd = 0;

  (void)state;
  unsetenv("NOTIFY_SOCKET");
  assert_int_equal(hs_notify_init(&n), 0);
  assert_int_equal(hs_notify_active(&n), 0);
  assert_int_equal(hs_notify_send(&n, "READY=1"), 0);
  assert_int_equal(hs_notify_send_fds(&n, "FDSTORE=1", &fd, 1), 0);
  hs_notify_close(&n);
  hs_notify_close(&n);

  assert_int_equal(setenv("NOTIFY_SOCKET", "", 1), 0);
  assert_int_equal(hs_notify_init(&n), 0);
  assert_int_equal(hs_notify_active(&n), 0);
  hs_notify_close(&n);
  unsetenv("NOTIFY_SOCKET");
}

static void test_notify_sends_to_path_socket(void **state) {
  fake f;
  hs_notify n;
  char buf[256];

  (void)state;
  fake_path(&f);
  assert_int_equal(hs_notify_init(&n), 0);
  assert_int_equal(hs_notify_active(&n), 1);
  assert_int_equal(hs_notify_send(&n, "READY=1\nSTATUS=%d plugins live", 3),
                   0);
  assert_int_equal(fake_recv(&f, buf, sizeof(buf), NULL), 29);
  assert_string_equal(buf, "READY=1\nSTATUS=3 plugins live");
  /* One datagram per call, in order. */
  assert_int_equal(hs_notify_send(&n, "RELOADING=1"), 0);
  assert_int_equal(hs_notify_send(&n, "READY=1"), 0);
  fake_recv(&f, buf, sizeof(buf), NULL);
  assert_string_equal(buf, "RELOADING=1");
  fake_recv(&f, buf, sizeof(buf), NULL);
  assert_string_equal(buf, "READY=1");
  fake_expect_empty(&f);
  /* Kept for a re-executed host. */
  assert_string_equal(getenv("NOTIFY_SOCKET"), f.name);
  /* Not inherited by what the host executes. */
  assert_true(fcntl(n.fd, F_GETFD) & FD_CLOEXEC);
  hs_notify_close(&n);
  assert_int_equal(hs_notify_active(&n), 0);
  fake_close(&f);
}

static void test_notify_sends_to_abstract_socket(void **state) {
  fake f;
  hs_notify n;
  char buf[256];

  (void)state;
  fake_abstract(&f);
  assert_int_equal(hs_notify_init(&n), 0);
  assert_int_equal(hs_notify_active(&n), 1);
  assert_int_equal(hs_notify_send(&n, "STATUS=%s", "2 plugins live, 1 "
                                                  "rejected"),
                   0);
  fake_recv(&f, buf, sizeof(buf), NULL);
  assert_string_equal(buf, "STATUS=2 plugins live, 1 rejected");
  hs_notify_close(&n);
  fake_close(&f);
}

static void test_notify_sends_long_message(void **state) {
  fake f;
  hs_notify n;
  char big[3000], buf[4096];

  (void)state;
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  fake_path(&f);
  assert_int_equal(hs_notify_init(&n), 0);
  assert_int_equal(hs_notify_send(&n, "STATUS=%s", big), 0);
  assert_int_equal(fake_recv(&f, buf, sizeof(buf), NULL),
                   strlen("STATUS=") + sizeof(big) - 1);
  assert_int_equal(strncmp(buf, "STATUS=xxx", 10), 0);
  hs_notify_close(&n);
  fake_close(&f);
}

/* FDSTORE=1: the receiver gets a duplicate of our fd, which stays open. */
static void test_notify_passes_fds(void **state) {
  fake f;
  hs_notify n;
  char buf[256];
  int pipefd[2], got = -1;

  (void)state;
  fake_path(&f);
  assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
  assert_int_equal(hs_notify_init(&n), 0);
  assert_int_equal(hs_notify_send_fds(&n, "FDSTORE=1\nFDNAME=control",
                                      &pipefd[1], 1),
                   0);
  fake_recv(&f, buf, sizeof(buf), &got);
  assert_string_equal(buf, "FDSTORE=1\nFDNAME=control");
  assert_true(got >= 0);
  assert_true(got != pipefd[1]);
  /* The same pipe: what is written to the received fd comes out of ours. */
  assert_int_equal(write(got, "hi", 2), 2);
  assert_int_equal(read(pipefd[0], buf, sizeof(buf)), 2);
  assert_int_equal(memcmp(buf, "hi", 2), 0);
  assert_true(fcntl(pipefd[1], F_GETFD) >= 0); /* still ours */
  close(got);

  /* No fds: a plain message. */
  assert_int_equal(hs_notify_send_fds(&n, "FDSTORE=1", NULL, 0), 0);
  fake_recv(&f, buf, sizeof(buf), &got);
  assert_string_equal(buf, "FDSTORE=1");
  assert_int_equal(got, -1);
  fake_expect_empty(&f);
  hs_notify_close(&n);
  close(pipefd[0]);
  close(pipefd[1]);
  fake_close(&f);
}

static void test_notify_rejects_bad_fds(void **state) {
  fake f;
  hs_notify n;
  int fds[HS_NOTIFY_FDS_MAX + 1];
  int bad = -1, closed;

  (void)state;
  fake_path(&f);
  assert_int_equal(hs_notify_init(&n), 0);
  for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
    fds[i] = 0;
  assert_int_equal(hs_notify_send_fds(&n, "FDSTORE=1", fds,
                                      HS_NOTIFY_FDS_MAX + 1),
                   HS_EINVAL);
  assert_int_equal(hs_notify_send_fds(&n, "FDSTORE=1", &bad, 1), HS_EINVAL);
  closed = dup(0);
  assert_true(closed >= 0);
  close(closed);
  assert_int_equal(hs_notify_send_fds(&n, "FDSTORE=1", &closed, 1), -EBADF);
  fake_expect_empty(&f);
  hs_notify_close(&n);
  fake_close(&f);
}

static void test_notify_rejects_bad_address(void **state) {
  static const char *const bad[] = {"relative/notify", "@", "vsock:2:1234",
                                    "notify"};
  char longer[200];
  hs_notify n;

  (void)state;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(setenv("NOTIFY_SOCKET", bad[i], 1), 0);
    assert_int_equal(hs_notify_init(&n), HS_EINVAL);
    assert_int_equal(hs_notify_active(&n), 0);
    assert_int_equal(hs_notify_send(&n, "READY=1"), 0);
    hs_notify_close(&n);
  }
  /* One byte too long for sun_path, as a path (with its NUL) and as an
   * abstract name (without). */
  memset(longer, 'a', sizeof(longer));
  longer[0] = '/';
  longer[sizeof(((struct sockaddr_un *)0)->sun_path)] = '\0';
  assert_int_equal(setenv("NOTIFY_SOCKET", longer, 1), 0);
  assert_int_equal(hs_notify_init(&n), HS_EINVAL);
  longer[0] = '@';
  longer[sizeof(((struct sockaddr_un *)0)->sun_path)] = 'a';
  longer[sizeof(((struct sockaddr_un *)0)->sun_path) + 1] = '\0';
  assert_int_equal(setenv("NOTIFY_SOCKET", longer, 1), 0);
  assert_int_equal(hs_notify_init(&n), HS_EINVAL);
  /* The longest that fit. */
  longer[sizeof(((struct sockaddr_un *)0)->sun_path)] = '\0';
  assert_int_equal(setenv("NOTIFY_SOCKET", longer, 1), 0);
  assert_int_equal(hs_notify_init(&n), 0);
  assert_int_equal(n.addrlen, sizeof(struct sockaddr_un));
  hs_notify_close(&n);
  longer[0] = '/';
  longer[sizeof(((struct sockaddr_un *)0)->sun_path) - 1] = '\0';
  assert_int_equal(setenv("NOTIFY_SOCKET", longer, 1), 0);
  assert_int_equal(hs_notify_init(&n), 0);
  assert_int_equal(n.addrlen, sizeof(struct sockaddr_un));
  hs_notify_close(&n);
  unsetenv("NOTIFY_SOCKET");
}

/* systemd went away: the send fails with a code, nothing is raised. */
static void test_notify_reports_missing_listener(void **state) {
  fake f;
  hs_notify n;
  int rc;

  (void)state;
  fake_path(&f);
  assert_int_equal(hs_notify_init(&n), 0);
  fake_close(&f); /* the socket file is gone */
  rc = hs_notify_send(&n, "READY=1");
  assert_true(rc == HS_ENOENT || rc == -ECONNREFUSED);
  hs_notify_close(&n);
}

/* FDSTORE=1 / FDSTOREREMOVE=1 with a name, and the names systemd takes. */
static void test_notify_stores_and_unstores(void **state) {
  fake f;
  hs_notify n;
  char buf[512], name[300];
  int pipefd[2], got = -1;

  (void)state;
  fake_path(&f);
  assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
  assert_int_equal(hs_notify_init(&n), 0);
  assert_int_equal(hs_notify_store(&n, "http.listen", pipefd[1]), 0);
  fake_recv(&f, buf, sizeof(buf), &got);
  assert_string_equal(buf, "FDSTORE=1\nFDNAME=http.listen");
  assert_true(got >= 0);
  close(got);
  assert_int_equal(hs_notify_unstore(&n, "http.listen"), 0);
  fake_recv(&f, buf, sizeof(buf), &got);
  assert_string_equal(buf, "FDSTOREREMOVE=1\nFDNAME=http.listen");
  assert_int_equal(got, -1);

  /* Names systemd refuses are refused here, and nothing is sent. */
  assert_int_equal(hs_notify_store(&n, "a:b", pipefd[1]), HS_EINVAL);
  assert_int_equal(hs_notify_store(&n, "a\nREADY=1", pipefd[1]), HS_EINVAL);
  assert_int_equal(hs_notify_store(&n, "", pipefd[1]), HS_EINVAL);
  assert_int_equal(hs_notify_store(&n, "ok", -1), HS_EINVAL);
  assert_int_equal(hs_notify_unstore(&n, "a:b"), HS_EINVAL);
  memset(name, 'x', sizeof(name));
  name[HS_NOTIFY_FDNAME_MAX + 1] = '\0';
  assert_int_equal(hs_notify_fdname_valid(name), 0);
  assert_int_equal(hs_notify_store(&n, name, pipefd[1]), HS_EINVAL);
  name[HS_NOTIFY_FDNAME_MAX] = '\0';
  assert_int_equal(hs_notify_fdname_valid(name), 1);
  assert_int_equal(hs_notify_fdname_valid("my plugin.listen-2"), 1);
  fake_expect_empty(&f);
  hs_notify_close(&n);

  /* Inactive: a no-op, after the same name check. */
  unsetenv("NOTIFY_SOCKET");
  assert_int_equal(hs_notify_init(&n), 0);
  assert_int_equal(hs_notify_store(&n, "http.listen", pipefd[1]), 0);
  assert_int_equal(hs_notify_unstore(&n, "http.listen"), 0);
  assert_int_equal(hs_notify_store(&n, "a:b", pipefd[1]), HS_EINVAL);
  hs_notify_close(&n);
  close(pipefd[0]);
  close(pipefd[1]);
  fake_close(&f);
}

/* Fds 3 and 4 as systemd passes them: read ends of two pipes, the ones in
 * place before saved (at 100 and up) for restore_fds. Call before opening
 * anything else the test uses. */
static void pass_fds(int saved[2], int writers[2]) {
  for (int i = 0; i < 2; i++) {
    int p[2], rd;
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    rd = fcntl(p[0], F_DUPFD, 10);
    writers[i] = fcntl(p[1], F_DUPFD_CLOEXEC, 10);
    assert_true(rd >= 0 && writers[i] >= 0);
    close(p[0]);
    close(p[1]);
    saved[i] = fcntl(3 + i, F_DUPFD_CLOEXEC, 100);
    assert_int_equal(dup2(rd, 3 + i), 3 + i);
    close(rd);
  }
}

static void restore_fds(const int saved[2], const int writers[2]) {
  for (int i = 0; i < 2; i++) {
    close(writers[i]);
    if (saved[i] >= 0) {
      dup2(saved[i], 3 + i);
      close(saved[i]);
    } else {
      close(3 + i);
    }
  }
}

static void set_listen_env(long pid, const char *fds, const char *names) {
  char me[32];
  snprintf(me, sizeof(me), "%ld", pid);
  assert_int_equal(setenv("LISTEN_PID", me, 1), 0);
  assert_int_equal(setenv("LISTEN_FDS", fds, 1), 0);
  if (names)
    assert_int_equal(setenv("LISTEN_FDNAMES", names, 1), 0);
  else
    unsetenv("LISTEN_FDNAMES");
}

/* $LISTEN_FDS: adopted by name, each handed out once; the rest closed and
 * dropped from the store once everyone had the chance. */
static void test_notify_takes_passed_fds(void **state) {
  fake f;
  hs_notify n;
  char buf[256];
  int saved[2], writers[2];

  (void)state;
  pass_fds(saved, writers);
  fake_path(&f);
  set_listen_env((long)getpid(), "2", "control:http.listen");
  assert_int_equal(hs_notify_init(&n), 0);
  assert_int_equal(hs_notify_listen_fds(&n), 2);
  /* Read once: a re-executed host (same pid) must not adopt them again. */
  assert_null(getenv("LISTEN_PID"));
  assert_null(getenv("LISTEN_FDS"));
  assert_null(getenv("LISTEN_FDNAMES"));
  assert_true(fcntl(3, F_GETFD) & FD_CLOEXEC);
  assert_true(fcntl(4, F_GETFD) & FD_CLOEXEC);

  assert_int_equal(hs_notify_take(&n, "http.listen"), 4);
  assert_int_equal(hs_notify_take(&n, "http.listen"), HS_ENOENT);
  assert_int_equal(hs_notify_take(&n, "http"), HS_ENOENT);
  assert_int_equal(hs_notify_take(&n, "echo.listen"), HS_ENOENT);
  fake_expect_empty(&f);

  /* control was not taken: closed, and out of the store. */
  assert_int_equal(hs_notify_drop_untaken(&n), 1);
  assert_int_equal(fcntl(3, F_GETFD), -1);
  assert_int_equal(errno, EBADF);
  fake_recv(&f, buf, sizeof(buf), NULL);
  assert_string_equal(buf, "FDSTOREREMOVE=1\nFDNAME=control");
  assert_int_equal(hs_notify_drop_untaken(&n), 0);
  assert_int_equal(hs_notify_take(&n, "control"), HS_ENOENT);
  fake_expect_empty(&f);
  /* The taken one is the caller's: still open, after close too. */
  hs_notify_close(&n);
  assert_true(fcntl(4, F_GETFD) >= 0);
  restore_fds(saved, writers);
  fake_close(&f);
}

/* Fds for another process, or without names, and the close of fds nobody
 * took at hs_notify_close (quietly: the store keeps them). */
static void test_notify_passed_fds_edge_cases(void **state) {
  fake f;
  hs_notify n;
  int saved[2], writers[2];

  (void)state;
  pass_fds(saved, writers);
  fake_path(&f);

  /* $LISTEN_PID names another process: not ours, untouched, but unset. */
  set_listen_env((long)getpid() + 1, "2", "a:b");
  assert_int_equal(hs_notify_init(&n), 0);
  assert_int_equal(hs_notify_listen_fds(&n), 0);
  assert_null(getenv("LISTEN_FDS"));
  assert_int_equal(fcntl(3, F_GETFD) & FD_CLOEXEC, 0);
  assert_int_equal(hs_notify_take(&n, "a"), HS_ENOENT);
  hs_notify_close(&n);
  assert_true(fcntl(3, F_GETFD) >= 0);

  /* No names: "unknown", as sd_listen_fds_with_names says. */
  set_listen_env((long)getpid(), "1", NULL);
  assert_int_equal(hs_notify_init(&n), 0);
  assert_int_equal(hs_notify_listen_fds(&n), 1);
  assert_int_equal(hs_notify_take(&n, "unknown"), 3);
  hs_notify_close(&n);
  assert_true(fcntl(3, F_GETFD) >= 0);

  /* Closed at hs_notify_close when nobody took them; nothing is sent. */
  set_listen_env((long)getpid(), "2", "x.listen:y.listen");
  assert_int_equal(hs_notify_init(&n), 0);
  assert_int_equal(hs_notify_listen_fds(&n), 2);
  hs_notify_close(&n);
  assert_int_equal(fcntl(3, F_GETFD), -1);
  assert_int_equal(fcntl(4, F_GETFD), -1);
  fake_expect_empty(&f);

  /* Nothing passed at all. */
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  assert_int_equal(hs_notify_init(&n), 0);
  assert_int_equal(hs_notify_listen_fds(&n), 0);
  assert_int_equal(hs_notify_drop_untaken(&n), 0);
  hs_notify_close(&n);
  restore_fds(saved, writers);
  fake_close(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_notify_unset_is_a_noop),
      cmocka_unit_test(test_notify_sends_to_path_socket),
      cmocka_unit_test(test_notify_sends_to_abstract_socket),
      cmocka_unit_test(test_notify_sends_long_message),
      cmocka_unit_test(test_notify_passes_fds),
      cmocka_unit_test(test_notify_rejects_bad_fds),
      cmocka_unit_test(test_notify_rejects_bad_address),
      cmocka_unit_test(test_notify_reports_missing_listener),
      cmocka_unit_test(test_notify_stores_and_unstores),
      cmocka_unit_test(test_notify_takes_passed_fds),
      cmocka_unit_test(test_notify_passed_fds_edge_cases),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
